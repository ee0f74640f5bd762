//! Import jobs, datastore health and datastore discovery, against the fake through the real SDK
//! client: the values a user alerts on, and each new API call's failures isolated.

mod common;

use std::time::Duration;

use common::*;
use healthlake_exporter::state::Feed;
use healthlake_exporter::Exporter;
use healthlake_fake::{FakeDatastore, FakeImportJob, FakeJob, FakeProgress, Fault};

const WAIT: Duration = Duration::from_secs(30);

fn progress(files: i64, mb: f64, scanned: i64, imported: i64, failed: i64) -> FakeProgress {
    FakeProgress {
        total_number_of_scanned_files: files,
        total_size_of_scanned_files_in_mb: mb,
        total_number_of_imported_files: files - 1,
        total_number_of_resources_scanned: scanned,
        total_number_of_resources_imported: imported,
        total_number_of_resources_with_customer_error: failed,
        total_number_of_files_read_with_customer_error: 1,
        throughput: 12.5,
        ..FakeProgress::default()
    }
}

#[tokio::test]
async fn import_jobs_counts_durations_progress_and_isolated_failures() {
    let (fake, server) = start_fake().await;
    let t = now();
    fake.add_job(
        "both",
        FakeJob::new("e1", "COMPLETED", t - 900.0).ended(t - 300.0),
    );
    fake.add_import_job(
        "both",
        FakeImportJob::new("i-old", "FAILED", t - 7200.0).ended(t - 7000.0),
    );
    fake.add_import_job(
        "both",
        FakeImportJob::new("i-done", "COMPLETED", t - 3600.0)
            .named("weekly")
            .ended(t - 3000.0),
    );
    fake.add_import_job(
        "both",
        FakeImportJob::new("i-run", "IN_PROGRESS", t - 600.0)
            .named("claims")
            .with_progress(progress(40, 2.5, 10_000, 9_000, 3)),
    );
    fake.add_job(
        "exports-only",
        FakeJob::new("e2", "COMPLETED", t - 900.0).ended(t - 300.0),
    );
    let text = config_text(
        &server.endpoint_url(),
        "jobs = [\"export\", \"import\"]",
        &[("both", "both")],
    ) + "[[datastores]]\nid = \"exports-only\"\njobs = [\"export\"]\n";
    let exporter = start_exporter(&text).await;
    polled(&exporter, "both", Feed::IMPORTS, 1).await;
    polled(&exporter, "both", Feed::EXPORTS, 1).await;
    polled(&exporter, "exports-only", Feed::EXPORTS, 1).await;
    let m = scrape(exporter.local_addr()).await;

    let k = |name: &str, extra: &str| key(name, "both", "both", extra);
    assert_eq!(
        m.value(&k("healthlake_import_jobs", "status=\"FAILED\"")),
        1.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_jobs", "status=\"COMPLETED\"")),
        1.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_jobs", "status=\"IN_PROGRESS\"")),
        1.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_jobs", "status=\"QUEUED\"")),
        0.0
    );
    assert_eq!(
        m.value(&k("healthlake_export_jobs", "status=\"COMPLETED\"")),
        1.0,
        "exports still polled"
    );
    assert_eq!(
        m.value(&k(
            "healthlake_import_job_duration_seconds",
            "job_id=\"i-done\",job_name=\"weekly\",status=\"COMPLETED\""
        )),
        600.0
    );
    let age = m.value(&k("healthlake_import_oldest_active_job_age_seconds", ""));
    assert!((600.0..620.0).contains(&age), "{age}");
    assert_eq!(
        m.value(&k(
            "healthlake_import_jobs_finished_total",
            "status=\"FAILED\""
        )),
        0.0
    );
    let job = "job_id=\"i-run\",job_name=\"claims\"";
    assert_eq!(
        m.value(&k("healthlake_import_job_scanned_files", job)),
        40.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_job_scanned_bytes", job)),
        2_500_000.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_job_imported_files", job)),
        39.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_job_scanned_resources", job)),
        10_000.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_job_imported_resources", job)),
        9_000.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_job_failed_resources", job)),
        3.0
    );
    assert_eq!(m.value(&k("healthlake_import_job_failed_files", job)), 1.0);
    assert!(
        m.series(
            "healthlake_import_job_scanned_files",
            &[("job_id", "i-done")]
        )
        .is_empty(),
        "progress only for running jobs"
    );
    assert!(m
        .series(
            "healthlake_import_jobs",
            &[("datastore_id", "exports-only")]
        )
        .is_empty());
    assert_eq!(m.value(&k("healthlake_feed_up", "feed=\"import\"")), 1.0);

    // Progress moves and the import finishes; then ListFHIRImportJobs alone is throttled: the
    // import series keep their values, exports stay up.
    fake.set_import_progress("both", "i-run", progress(80, 5.0, 20_000, 19_990, 3));
    let m = eventually(WAIT, "progress", || async {
        let m = scrape(exporter.local_addr()).await;
        (m.get(&k("healthlake_import_job_scanned_files", job)) == Some(80.0)).then_some(m)
    })
    .await;
    assert_eq!(
        m.value(&k("healthlake_import_job_imported_resources", job)),
        19_990.0
    );
    fake.set_import_job_status("both", "i-run", "FAILED", Some(now()));
    eventually(WAIT, "the import failure counted", || async {
        let m = scrape(exporter.local_addr()).await;
        (m.get(&k(
            "healthlake_import_jobs_finished_total",
            "status=\"FAILED\"",
        )) == Some(1.0))
        .then_some(())
    })
    .await;
    fake.set_fault_for("ListFHIRImportJobs", "both", Some(Fault::Throttling));
    let m = eventually(WAIT, "the import poll to fail", || async {
        let m = scrape(exporter.local_addr()).await;
        (m.get(&k("healthlake_feed_up", "feed=\"import\"")) == Some(0.0)).then_some(m)
    })
    .await;
    assert!(
        m.value(&k(
            "healthlake_feed_errors_total",
            "feed=\"import\",reason=\"throttled\""
        )) >= 1.0
    );
    assert_eq!(
        m.value(&k("healthlake_import_jobs", "status=\"FAILED\"")),
        2.0,
        "last-known values kept"
    );
    assert_eq!(
        m.value(&k("healthlake_feed_up", "feed=\"export\"")),
        1.0,
        "exports unaffected"
    );
    assert_eq!(
        m.value(&k(
            "healthlake_feed_errors_total",
            "feed=\"export\",reason=\"throttled\""
        )),
        0.0
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn datastore_status_changes_are_reflected_and_describe_failures_isolated() {
    let (fake, server) = start_fake().await;
    fake.set_datastore("ds1", FakeDatastore::new("patients-prod"));
    fake.add_job(
        "ds1",
        FakeJob::new("e1", "COMPLETED", now() - 900.0).ended(now() - 300.0),
    );
    let polling = "datastore_health = true\ndatastore_interval = \"1s\"";
    let exporter = start_exporter(&config_text(
        &server.endpoint_url(),
        polling,
        &[("ds1", "prod")],
    ))
    .await;
    polled(&exporter, "ds1", Feed::Datastore, 1).await;
    let status = |m: &Metrics, s: &str| {
        m.value(&key(
            "healthlake_datastore_status",
            "ds1",
            "prod",
            &format!("status=\"{s}\""),
        ))
    };
    let m = scrape(exporter.local_addr()).await;
    for s in [
        "CREATING",
        "DELETING",
        "DELETED",
        "CREATE_FAILED",
        "UPDATING",
        "UPDATE_FAILED",
    ] {
        assert_eq!(status(&m, s), 0.0, "{s}");
    }
    assert_eq!(status(&m, "ACTIVE"), 1.0);
    let info = m.series("healthlake_datastore_info", &[("datastore_id", "ds1")]);
    assert_eq!(info.len(), 1);
    assert!(info[0].0.contains("fhir_version=\"R4\""), "{}", info[0].0);
    assert!(
        info[0]
            .0
            .contains("arn=\"arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/ds1\""),
        "{}",
        info[0].0
    );
    assert_eq!(info[0].1, 1.0);

    fake.set_datastore_status("ds1", "UPDATING");
    let m = eventually(WAIT, "UPDATING", || async {
        let m = scrape(exporter.local_addr()).await;
        (status(&m, "UPDATING") == 1.0).then_some(m)
    })
    .await;
    assert_eq!(status(&m, "ACTIVE"), 0.0);
    fake.set_datastore_status("ds1", "ACTIVE");
    eventually(WAIT, "ACTIVE again", || async {
        let m = scrape(exporter.local_addr()).await;
        (status(&m, "ACTIVE") == 1.0 && status(&m, "UPDATING") == 0.0).then_some(())
    })
    .await;

    // DescribeFHIRDatastore denied: its own health goes down; last status kept; exports unaffected.
    fake.set_fault_for("DescribeFHIRDatastore", "ds1", Some(Fault::AccessDenied));
    let m = eventually(WAIT, "the describe failure", || async {
        let m = scrape(exporter.local_addr()).await;
        (m.get(&key(
            "healthlake_feed_up",
            "ds1",
            "prod",
            "feed=\"describe\"",
        )) == Some(0.0))
        .then_some(m)
    })
    .await;
    assert!(
        m.value(&key(
            "healthlake_feed_errors_total",
            "ds1",
            "prod",
            "feed=\"describe\",reason=\"access_denied\""
        )) >= 1.0
    );
    assert_eq!(status(&m, "ACTIVE"), 1.0);
    assert_eq!(
        m.value(&key("healthlake_feed_up", "ds1", "prod", "feed=\"export\"")),
        1.0
    );
    exporter.shutdown().await;
}

#[tokio::test]
async fn discovery_adds_and_drops_datastores_and_configured_entries_win() {
    let (fake, server) = start_fake().await;
    let t = now();
    fake.set_datastore("d-prod-a", FakeDatastore::new("prod-a"));
    fake.set_datastore(
        "d-prod-b",
        FakeDatastore::new("prod-b").with_status("CREATING"),
    );
    fake.set_datastore("d-test", FakeDatastore::new("test-1"));
    fake.set_datastore("d-named", FakeDatastore::new("prod-configured"));
    for id in ["d-prod-a", "d-prod-b", "d-test", "d-named"] {
        fake.add_job(
            id,
            FakeJob::new(format!("{id}-j"), "COMPLETED", t - 100.0).ended(t - 50.0),
        );
    }
    // Only discovery, no [[datastores]] (plus one configured entry in the second file).
    let discovery = format!(
        "[polling]\ninterval = \"1s\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[server]\nlisten_address = \"127.0.0.1:0\"\n[[discovery]]\nname_prefix = \"prod-\"\ninterval = \"1s\"\n",
        server.endpoint_url()
    );
    let dir = TestDir::new("beyond");
    let path = dir.write("discovery.toml", &discovery);
    let exporter = Exporter::start_from_file(&path, None, test_options())
        .await
        .unwrap();
    let up = |m: &Metrics, id: &str, name: &str| {
        m.get(&key("healthlake_feed_up", id, name, "feed=\"export\""))
    };
    let m = eventually(WAIT, "discovered datastores polled", || async {
        let m = scrape(exporter.local_addr()).await;
        (up(&m, "d-prod-a", "prod-a") == Some(1.0)
            && up(&m, "d-named", "prod-configured") == Some(1.0))
        .then_some(m)
    })
    .await;
    assert!(
        m.series(
            "healthlake_feed_up",
            &[("feed", "export"), ("datastore_id", "d-test")]
        )
        .is_empty(),
        "name_prefix filters"
    );
    assert!(
        m.series(
            "healthlake_feed_up",
            &[("feed", "export"), ("datastore_id", "d-prod-b")]
        )
        .is_empty(),
        "status ACTIVE filters"
    );
    assert_eq!(
        m.value("healthlake_feed_up{discovery=\"0\",region=\"us-east-1\",feed=\"discovery\"}"),
        1.0
    );
    assert_eq!(
        m.value("healthlake_discovery_datastores{discovery=\"0\",region=\"us-east-1\"}"),
        2.0
    );
    assert_eq!(
        (http_request(exporter.local_addr(), "GET", "/readyz", &[]).await).0,
        200
    );

    // A new ACTIVE datastore appears; one is deleted: added and dropped with its series.
    fake.set_datastore_status("d-prod-b", "ACTIVE");
    fake.remove_datastore("d-prod-a");
    let m = eventually(WAIT, "the discovery change", || async {
        let m = scrape(exporter.local_addr()).await;
        (up(&m, "d-prod-b", "prod-b") == Some(1.0)
            && m.series(
                "healthlake_feed_up",
                &[("feed", "export"), ("datastore_id", "d-prod-a")],
            )
            .is_empty())
        .then_some(m)
    })
    .await;
    assert!(m
        .series("healthlake_export_jobs", &[("datastore_id", "d-prod-a")])
        .is_empty());

    // A discovered datastore that is UPDATING stays polled (it did not disappear).
    fake.set_datastore_status("d-prod-b", "UPDATING");
    let listed = fake.request_count_for("ListFHIRDatastores", "");
    eventually(WAIT, "two more discovery listings", || async {
        (fake.request_count_for("ListFHIRDatastores", "") >= listed + 2).then_some(())
    })
    .await;
    let m = scrape(exporter.local_addr()).await;
    assert_eq!(
        up(&m, "d-prod-b", "prod-b"),
        Some(1.0),
        "UPDATING keeps its series"
    );
    assert_eq!(
        m.value("healthlake_discovery_datastores{discovery=\"0\",region=\"us-east-1\"}"),
        2.0
    );

    // A discovery failure keeps what was found; it is counted under its reason.
    fake.set_list_datastores_fault(Some(Fault::Throttling));
    let m = eventually(WAIT, "the discovery failure", || async {
        let m = scrape(exporter.local_addr()).await;
        (m.get("healthlake_feed_up{discovery=\"0\",region=\"us-east-1\",feed=\"discovery\"}")
            == Some(0.0))
        .then_some(m)
    })
    .await;
    assert!(m.value("healthlake_feed_errors_total{discovery=\"0\",region=\"us-east-1\",feed=\"discovery\",reason=\"throttled\"}") >= 1.0);
    assert_eq!(
        up(&m, "d-prod-b", "prod-b"),
        Some(1.0),
        "discovered datastores stay while discovery fails"
    );
    fake.set_list_datastores_fault(None);

    // A configured entry for a discovered id wins (its name, its settings).
    std::fs::write(
        &path,
        format!("{discovery}[[datastores]]\nid = \"d-named\"\nname = \"from-config\"\n"),
    )
    .unwrap();
    exporter.reload_handle().reload().await.unwrap();
    let m = eventually(WAIT, "the configured name", || async {
        let m = scrape(exporter.local_addr()).await;
        (up(&m, "d-named", "from-config") == Some(1.0)).then_some(m)
    })
    .await;
    assert_eq!(
        m.series(
            "healthlake_feed_up",
            &[("feed", "export"), ("datastore_id", "d-named")]
        )
        .len(),
        1,
        "each datastore once"
    );
    exporter.shutdown().await;
}
