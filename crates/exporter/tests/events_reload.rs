//! A reload that changes `[events]` is applied (issue 18, finding 10): the consumer stops reading
//! the old queue and reads the new one; adding or removing the section starts or stops it. The
//! exporter's real SQS and HealthLake clients against the fake, with `polling.interval = "10m"`
//! wherever a change seen within seconds must have come through an event.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeHealthLake, FakeJob, FakeServer, SqsOperation};

const DS: &str = "0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(15);

/// The config: polling every `interval`, and `[events]` on `queue` when given.
fn config(server: &FakeServer, interval: &str, queue: Option<&str>) -> String {
    let endpoint = server.endpoint_url();
    let mut text = config_text(&endpoint, "", &[(DS, "main")])
        .replace("interval = \"1s\"", &format!("interval = \"{interval}\""));
    if let Some(queue) = queue {
        text.push_str(&format!(
            "[events]\nqueue_url = \"{endpoint}/123456789012/{queue}\"\nendpoint_url = \"{endpoint}\"\nwait_time = \"1s\"\n"
        ));
    }
    text
}

async fn seeded() -> (FakeHealthLake, FakeServer) {
    let (fake, server) = start_fake().await;
    fake.add_datastore(DS);
    for job in ["job-1", "job-2", "job-3"] {
        fake.add_job(DS, FakeJob::new(job, "IN_PROGRESS", now() - 120.0));
    }
    fake.create_queue("queue-a");
    fake.create_queue("queue-b");
    (fake, server)
}

async fn reload_to(exporter: &Exporter, path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    exporter.reload_handle().reload().await.unwrap();
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        1.0
    );
}

/// Waits until /metrics shows `n` FAILED export jobs.
async fn failed_jobs(exporter: &Exporter, n: f64, what: &str) -> Metrics {
    let series = key("healthlake_export_jobs", DS, "main", "status=\"FAILED\"");
    eventually(WAIT, what, || async {
        let metrics = scrape(exporter.local_addr()).await;
        (metrics.get(&series) == Some(n)).then_some(metrics)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_new_queue_consumes_it_and_no_longer_reads_the_old_one() {
    let (fake, server) = seeded().await;
    fake.set_event_queues(&["queue-a"]);
    let dir = TestDir::new("events-reload");
    let path = dir.write("new-queue.toml", config(&server, "10m", Some("queue-a")));
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    first_poll(&exporter).await;
    assert!(fake.set_job_status(DS, "job-1", "FAILED", Some(now())));
    failed_jobs(&exporter, 1.0, "job-1 FAILED through queue-a").await;

    fake.set_event_queues(&["queue-b"]);
    reload_to(&exporter, &path, &config(&server, "10m", Some("queue-b"))).await;
    // The old consumer's long poll in flight at the reload (1 s) is abandoned, and whatever it is
    // handed comes back after the visibility timeout, as on SQS. Three receives after the reload
    // (a short one, then 1 s long polls of queue-b) outlast it.
    let receives = fake.sqs_request_count(SqsOperation::ReceiveMessage);
    eventually(WAIT, "three receives after the reload", || async {
        (fake.sqs_request_count(SqsOperation::ReceiveMessage) >= receives + 3).then_some(())
    })
    .await;
    // A message left on the old queue, then an event on the new one.
    fake.send_message("queue-a", "left on the old queue")
        .unwrap();
    assert!(fake.set_job_status(DS, "job-2", "FAILED", Some(now())));
    let metrics = failed_jobs(&exporter, 2.0, "job-2 FAILED through queue-b").await;
    assert_eq!(metrics.value("healthlake_feed_up{feed=\"events\"}"), 1.0);
    eventually(WAIT, "the queue-b event deleted", || async {
        fake.queue_messages("queue-b").is_empty().then_some(())
    })
    .await;
    // One more event through queue-b: by then the consumer has received several times, none of
    // them from queue-a.
    assert!(fake.set_job_status(DS, "job-3", "FAILED", Some(now())));
    let metrics = failed_jobs(&exporter, 3.0, "job-3 FAILED through queue-b").await;
    assert_eq!(metrics.value("healthlake_events_applied_total"), 3.0);
    let old = fake.queue_messages("queue-a");
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0].receive_count, 0, "the old queue is no longer read");
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adding_or_removing_events_starts_or_stops_the_consumer() {
    let (fake, server) = seeded().await;
    fake.set_event_queues(&["queue-a"]);
    let dir = TestDir::new("events-reload");
    let path = dir.write("add-remove.toml", config(&server, "10m", None));
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    first_poll(&exporter).await;
    assert!(scrape(exporter.local_addr())
        .await
        .get("healthlake_feed_up{feed=\"events\"}")
        .is_none());

    // Added: events from queue-a are applied within seconds (polling every 10 minutes).
    reload_to(&exporter, &path, &config(&server, "10m", Some("queue-a"))).await;
    assert!(fake.set_job_status(DS, "job-1", "FAILED", Some(now())));
    let metrics = failed_jobs(&exporter, 1.0, "job-1 FAILED through the added [events]").await;
    assert_eq!(metrics.value("healthlake_feed_up{feed=\"events\"}"), 1.0);
    eventually(WAIT, "the event deleted", || async {
        fake.queue_messages("queue-a").is_empty().then_some(())
    })
    .await;

    // Removed: the families go, and the queue is no longer read while polls go on (every 1 s).
    // Three scheduled polls (2 s or more) outlast the long poll abandoned at the reload (1 s).
    reload_to(&exporter, &path, &config(&server, "1s", None)).await;
    let lists = fake.request_count(DS);
    eventually(WAIT, "three scheduled polls", || async {
        (fake.request_count(DS) >= lists + 3).then_some(())
    })
    .await;
    let receives = fake.sqs_request_count(SqsOperation::ReceiveMessage);
    assert!(fake.set_job_status(DS, "job-2", "FAILED", Some(now())));
    let metrics = failed_jobs(&exporter, 2.0, "job-2 FAILED by polling").await;
    assert!(
        metrics
            .series("healthlake_feed_up", &[("feed", "events")])
            .is_empty(),
        "no event families without [events]:\n{}",
        metrics.text
    );
    assert_eq!(
        fake.sqs_request_count(SqsOperation::ReceiveMessage),
        receives,
        "no receive after [events] was removed"
    );
    let waiting = fake.queue_messages("queue-a");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].receive_count, 0);

    // Added again: the waiting event is received, and the counters go on.
    reload_to(&exporter, &path, &config(&server, "10m", Some("queue-a"))).await;
    eventually(WAIT, "the waiting event applied", || async {
        let metrics = scrape(exporter.local_addr()).await;
        (metrics.get("healthlake_events_applied_total") == Some(2.0)).then_some(())
    })
    .await;
    exporter.shutdown().await;
}

/// An `[events]` that cannot start (one queue for several shards) refuses the reload visibly, and
/// what ran before keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_events_that_cannot_start_is_refused() {
    let (_fake, server) = seeded().await;
    let sharded = |text: String| text.replace("[polling]\n", "[polling]\nshard = \"0/2\"\n");
    let dir = TestDir::new("events-reload");
    let path = dir.write("refused.toml", sharded(config(&server, "10m", None)));
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    std::fs::write(&path, sharded(config(&server, "10m", Some("queue-a")))).unwrap();
    let error = exporter.reload_handle().reload().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("[events] queue_url has no {shard} but this replica is shard 0/2"),
        "{error}"
    );
    let metrics = scrape(exporter.local_addr()).await;
    assert_eq!(
        metrics.value("healthlake_exporter_config_last_reload_successful"),
        0.0
    );
    assert!(metrics.get("healthlake_feed_up{feed=\"events\"}").is_none());
    exporter.shutdown().await;
}
