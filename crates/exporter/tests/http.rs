//! HTTP routes, status codes, content negotiation and readiness.

mod common;

use std::time::Duration;

use common::*;
use healthlake_fake::{FakeJob, Fault};

#[tokio::test]
async fn routes_answer_with_the_right_status_and_type() {
    let (fake, server) = start_fake().await;
    fake.add_job(
        "ds1",
        FakeJob::new("j", "COMPLETED", now() - 10.0).ended(now()),
    );
    let text = config_text(&server.endpoint_url(), "", &[("ds1", "<prod & 'co'>")]);
    let exporter = start_exporter(&text).await;
    let addr = exporter.local_addr();
    eventually(Duration::from_secs(20), "readiness", || async {
        (http_request(addr, "GET", "/readyz", &[]).await.0 == 200).then_some(())
    })
    .await;

    let (status, head, body) = http_request(addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(body.contains("# TYPE healthlake_export_jobs_finished_total counter"));
    assert!(body.contains("# HELP healthlake_export_jobs Export jobs in each status, as last listed; from the exporter's own polling"));
    assert!(!body.contains("# EOF"));
    assert!(body.contains("healthlake_exporter_build_info{version=\""));

    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, head, body) = http_request(addr, "GET", "/metrics", &[("Accept", accept)]).await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE healthlake_export_jobs_finished counter"));
    assert!(body.contains("# UNIT healthlake_feed_last_poll_duration_seconds seconds"));

    let (status, head, body) = http_request(addr, "HEAD", "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"));
    assert!(body.is_empty());

    assert_eq!(http_request(addr, "GET", "/healthz", &[]).await.0, 200);
    assert_eq!(http_request(addr, "GET", "/readyz", &[]).await.0, 200);

    let (status, head, body) = http_request(addr, "GET", "/", &[]).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"));
    assert!(body.contains("href=\"/metrics\""));
    assert!(
        body.contains("<td>ds1</td><td>&lt;prod &amp; &#39;co&#39;&gt;</td><td>up</td><td>not polled</td><td>not polled</td>"),
        "{body}"
    );

    let (status, _, body) = http_request(addr, "GET", "/nope", &[]).await;
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"));
    let (status, head, _) =
        http_request(addr, "POST", "/metrics", &[("Content-Length", "0")]).await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));
    assert_eq!(http_request(addr, "DELETE", "/", &[]).await.0, 405);
    exporter.shutdown().await;
}

#[tokio::test]
async fn label_values_are_escaped_in_the_exposition() {
    let (fake, server) = start_fake().await;
    fake.add_job(
        "ds1",
        FakeJob::new("j", "COMPLETED", now() - 10.0)
            .named("a\"b\\c")
            .ended(now()),
    );
    let exporter = start_exporter(&config_text(&server.endpoint_url(), "", &[("ds1", "x")])).await;
    let addr = exporter.local_addr();
    let metrics = eventually(Duration::from_secs(20), "a poll", || async {
        let m = scrape(addr).await;
        (!m.series("healthlake_export_job_duration_seconds", &[])
            .is_empty())
        .then_some(m)
    })
    .await;
    assert!(
        metrics.text.contains(r#"job_name="a\"b\\c""#),
        "{}",
        metrics.text
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn readiness_waits_for_the_first_attempt_but_not_for_aws() {
    let (fake, server) = start_fake().await;
    fake.add_datastore("ds1");
    fake.set_fault("ds1", Some(Fault::Delay(Duration::from_secs(2))));
    let exporter = start_exporter(&config_text(&server.endpoint_url(), "", &[("ds1", "x")])).await;
    let addr = exporter.local_addr();
    let (status, _, body) = http_request(addr, "GET", "/readyz", &[]).await;
    assert_eq!(status, 503, "not ready while the first poll is under way");
    assert!(body.contains("first poll"));
    // Liveness and metrics answer at once, before any poll finished.
    assert_eq!(http_request(addr, "GET", "/healthz", &[]).await.0, 200);
    let metrics = scrape(addr).await;
    assert_eq!(
        metrics.value(&key("healthlake_feed_up", "ds1", "x", "feed=\"export\"")),
        0.0
    );

    // A failing API still makes the exporter ready: readiness never depends on AWS.
    fake.set_fault("ds1", Some(Fault::AccessDenied));
    eventually(Duration::from_secs(20), "readiness", || async {
        (http_request(addr, "GET", "/readyz", &[]).await.0 == 200).then_some(())
    })
    .await;
    exporter.shutdown().await;
}
