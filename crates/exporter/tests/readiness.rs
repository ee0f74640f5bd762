//! Readiness is a latch (issue 18, finding 1): `/readyz` turns 200 once every first poll was
//! attempted or at `polling.timeout` + the start spread + 2 s, whichever comes first, and never
//! turns 503 again: not when a reload or discovery adds datastores, not when the API hangs.
//! Datastores still waiting for their first poll show in `healthlake_exporter_first_polls_pending`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use healthlake_exporter::state::Feed;
use healthlake_exporter::Exporter;
use healthlake_fake::Fault;

const WAIT: Duration = Duration::from_secs(30);
const PENDING: &str = "healthlake_exporter_first_polls_pending";

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:05}")).collect()
}

fn with_datastores(base: &str, ids: &[String]) -> String {
    let mut text = base.to_owned();
    for id in ids {
        text.push_str(&format!("[[datastores]]\nid = \"{id}\"\n"));
    }
    text
}

async fn readyz(exporter: &Exporter) -> u16 {
    http_request(exporter.local_addr(), "GET", "/readyz", &[])
        .await
        .0
}

async fn until_ready(exporter: &Exporter) {
    eventually(WAIT, "/readyz 200", || async {
        (readyz(exporter).await == 200).then_some(())
    })
    .await;
}

/// Datastores in State whose export jobs have not had a poll attempted.
fn unpolled(exporter: &Exporter) -> usize {
    exporter
        .state()
        .datastores()
        .iter()
        .filter(|ds| ds.record().attempts(Feed::EXPORTS) == 0)
        .count()
}

/// Probes `/readyz` until `/metrics` shows no first poll pending: every probe must be 200. Returns
/// the most first polls seen pending meanwhile.
async fn ready_throughout(exporter: &Exporter, what: &str, done: impl Fn(&Metrics) -> bool) -> f64 {
    let most_pending = std::cell::Cell::new(0.0_f64);
    eventually(Duration::from_secs(60), what, || async {
        assert_eq!(readyz(exporter).await, 200, "/readyz while {what}");
        let metrics = scrape(exporter.local_addr()).await;
        // (Read with `get`: the probes above are the point, whatever the family shows.)
        let pending = metrics.get(PENDING);
        most_pending.set(most_pending.get().max(pending.unwrap_or(0.0)));
        (pending == Some(0.0) && done(&metrics)).then_some(())
    })
    .await;
    most_pending.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adding_50_datastores_keeps_readyz_200() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("first");
    let base = config_text(&server.endpoint_url(), "", &[("first", "first")]);
    let dir = TestDir::new("readiness");
    let path = dir.write("reload-50.toml", &base);
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    until_ready(&exporter).await;

    let added = ids("added", 50);
    for id in &added {
        fake.add_datastore(id);
    }
    std::fs::write(&path, with_datastores(&base, &added)).unwrap();
    exporter.reload_handle().reload().await.unwrap();
    // 50 first polls at 5 requests per second (the default budget): several seconds of them.
    let most = ready_throughout(&exporter, "50 added datastores are polled", |m| {
        m.series("healthlake_feed_up", &[("feed", "export")]).len() == 51
    })
    .await;
    assert!(most >= 1.0, "the reload added first polls to wait for");
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finding_50_new_datastores_keeps_readyz_200() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("seed");
    let text = format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\n[polling]\ninterval = \"1s\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[[discovery]]\ninterval = \"1s\"\n",
        server.endpoint_url()
    );
    let dir = TestDir::new("readiness");
    let path = dir.write("discovery-50.toml", &text);
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    until_ready(&exporter).await;

    for id in ids("found", 50) {
        fake.add_datastore(&id);
    }
    let found = "healthlake_discovery_datastores{discovery=\"0\",region=\"us-east-1\"}";
    let most = ready_throughout(&exporter, "50 discovered datastores are polled", |m| {
        m.get(found) == Some(51.0)
            && m.series("healthlake_feed_up", &[("feed", "export")]).len() == 51
    })
    .await;
    assert!(most >= 1.0, "discovery added first polls to wait for");
    exporter.shutdown().await;
}

/// 60 datastores whose API never answers, polled one at a time with a 1 s timeout: their first
/// polls take a minute, but readiness closes at 1 s + 0.5 s (half the interval) + 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_api_at_start_is_ready_within_the_deadline() {
    let (fake, server) = start_fake().await;
    let hanging = ids("hang", 60);
    for id in &hanging {
        fake.set_fault(id, Some(Fault::Hang));
    }
    let base = config_text(&server.endpoint_url(), "concurrency = 1", &[])
        .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let started = Instant::now();
    let exporter = Exporter::start(
        healthlake_exporter::config::Config::parse(
            &with_datastores(&base, &hanging),
            std::path::Path::new("hang.toml"),
        )
        .unwrap(),
        test_options(),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(20),
        "/readyz 200 despite the hanging API",
        || async { (readyz(&exporter).await == 200).then_some(()) },
    )
    .await;
    let ready_after = started.elapsed();
    let metrics = scrape(exporter.local_addr()).await;
    assert!(
        metrics.value(PENDING) >= 30.0,
        "the deadline, not the polls, made it ready ({ready_after:?}):\n{}",
        metrics.text
    );
    assert!(unpolled(&exporter) >= 30);
    assert_eq!(readyz(&exporter).await, 200);
    exporter.shutdown().await;
}

/// 10,000 datastores added at once: their first polls would take over half an hour at the
/// request budget; `/readyz` stays 200 all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adding_10000_datastores_keeps_readyz_200() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("first");
    let base = config_text(&server.endpoint_url(), "", &[("first", "first")]);
    let dir = TestDir::new("readiness");
    let path = dir.write("reload-10000.toml", &base);
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    until_ready(&exporter).await;

    let added = ids("many", 10_000);
    std::fs::write(&path, with_datastores(&base, &added)).unwrap();
    exporter.reload_handle().reload().await.unwrap();
    assert_eq!(exporter.state().datastores().len(), 10_001);
    // Probe for a few seconds, past the start spread of the added datastores.
    let probing = Instant::now();
    let mut probes = 0;
    while probing.elapsed() < Duration::from_secs(3) || probes < 20 {
        assert_eq!(
            readyz(&exporter).await,
            200,
            "/readyz after {probes} probes"
        );
        probes += 1;
        // The probes' pace over the seconds under test (a kubelet's, faster): not a wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        unpolled(&exporter) >= 9_000,
        "the probes ran while first polls were pending"
    );
    exporter.shutdown().await;
}
