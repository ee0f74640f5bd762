//! What `[[discovery]]` takes from `ListFHIRDatastores` is bounded (issue 18, finding 5): a 3 MB
//! datastore name becomes a bounded label (before: a 99 MB `/metrics`), and a datastore whose id is
//! not a HealthLake datastore id is never polled nor exported.

mod common;

use std::time::Duration;

use common::*;
use healthlake_exporter::model::MAX_LABEL_BYTES;
use healthlake_fake::{FakeDatastore, LIST_FHIR_DATASTORES_TARGET};
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(30);
const HUGE: &str = "d-huge";
const OK: &str = "d-ok";
/// Ids the API model does not allow: too long, a `#`, a newline and an ESC.
const BAD_IDS: [&str; 3] = [
    "a0123456789abcdef0123456789abcdef",
    "ds#1",
    "bad\n2026-01-01T00:00:00Z ERROR x\u{1b}[31m",
];

/// The label a name longer than `MAX_LABEL_BYTES` becomes, written out here (not computed by the
/// exporter's own function): its first 96 bytes, then `…[truncated:` and the first 8 hex digits
/// of its SHA-256, so that two long names with one prefix stay two series.
fn bounded_label(name: &str) -> String {
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}…[truncated:{hex}]", &name[..96])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_names_are_bounded_and_invalid_ids_are_never_polled() {
    let (fake, server) = start_fake().await;
    let huge_name = format!("prod-{}", "n".repeat(3_000_000));
    fake.set_datastore(HUGE, FakeDatastore::new(huge_name.as_str()));
    fake.set_datastore(OK, FakeDatastore::new("prod-ok"));
    for id in BAD_IDS {
        fake.set_datastore(id, FakeDatastore::new("prod-bad"));
    }
    let config = format!(
        "[polling]\ninterval = \"1s\"\ndatastore_health = true\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[server]\nlisten_address = \"127.0.0.1:0\"\n[[discovery]]\nname_prefix = \"prod-\"\ninterval = \"1s\"\n",
        server.endpoint_url()
    );
    let exporter = start_exporter(&config).await;
    let label = bounded_label(&huge_name);
    assert!(label.len() <= MAX_LABEL_BYTES);
    let huge_up = key("healthlake_feed_up", HUGE, &label, "feed=\"export\"");
    let ok_up = key("healthlake_feed_up", OK, "prod-ok", "feed=\"export\"");

    // Both valid datastores polled and described, and two listings later still nothing of the
    // bad ones.
    let body = eventually(WAIT, "the discovered datastores polled", || async {
        let (_, _, body) = http_request(exporter.local_addr(), "GET", "/metrics", &[]).await;
        let polled = |id: &str| {
            body.lines().any(|l| {
                l.starts_with(&format!("healthlake_feed_up{{datastore_id=\"{id}\","))
                    && l.contains("feed=\"export\"")
                    && l.rsplit_once(' ').map(|(_, v)| v.parse::<f64>()) == Some(Ok(1.0))
            })
        };
        let described = body.contains(&format!(
            "healthlake_datastore_info{{datastore_id=\"{HUGE}\""
        ));
        (polled(HUGE) && polled(OK) && described).then_some(body)
    })
    .await;
    let listed = fake.request_count_for(LIST_FHIR_DATASTORES_TARGET, "");
    eventually(WAIT, "two more discovery listings", || async {
        (fake.request_count_for(LIST_FHIR_DATASTORES_TARGET, "") >= listed + 2).then_some(())
    })
    .await;

    assert!(
        body.len() < 200_000,
        "/metrics is {} bytes with a 3 MB datastore name",
        body.len()
    );
    assert!(
        body.contains(&format!("{huge_up} 1")),
        "the name label is the name, bounded"
    );
    assert!(body.contains(&format!("{ok_up} 1")));
    let longest = body.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1024, "a {longest} byte /metrics line");
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value(&huge_up),
        1.0,
        "the name label is the name, bounded"
    );
    assert_eq!(metrics.value(&ok_up), 1.0);
    assert_eq!(
        metrics.value("healthlake_discovery_datastores{discovery=\"0\",region=\"us-east-1\"}"),
        2.0,
        "the datastores with invalid ids are not counted as found"
    );
    for id in BAD_IDS {
        assert_eq!(fake.request_count(id), 0, "{id:?} was polled");
    }
    let mut exported: Vec<&str> = metrics
        .samples
        .keys()
        .filter_map(|k| k.split("datastore_id=\"").nth(1)?.split('"').next())
        .collect();
    exported.sort_unstable();
    exported.dedup();
    assert_eq!(exported, [HUGE, OK], "only the valid ids are exported");
    // DescribeFHIRDatastore answered the 3 MB name too: the datastore's info series is there,
    // and no line of /metrics is long (checked above).
    let info = metrics.series("healthlake_datastore_info", &[("datastore_id", HUGE)]);
    assert_eq!(info.len(), 1, "{}", metrics.text);
    exporter.shutdown().await;
}
