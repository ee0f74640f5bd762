//! Wire-level tests of the fake's import-job, datastore-health and discovery operations
//! (`ListFHIRImportJobs`, `DescribeFHIRDatastore`, `ListFHIRDatastores`) through the real
//! `aws-sdk-healthlake` client, so exporter tests built on them exercise what AWS would send:
//! every member and type the SDK reads, paging, filters, and faults isolated per operation.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_healthlake::config::retry::RetryConfig;
use aws_sdk_healthlake::config::timeout::TimeoutConfig;
use aws_sdk_healthlake::config::Builder;
use aws_sdk_healthlake::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_healthlake::operation::describe_fhir_datastore::DescribeFHIRDatastoreError;
use aws_sdk_healthlake::operation::list_fhir_datastores::{
    ListFHIRDatastoresError, ListFhirDatastoresOutput,
};
use aws_sdk_healthlake::operation::list_fhir_import_jobs::{
    ListFHIRImportJobsError, ListFhirImportJobsOutput,
};
use aws_sdk_healthlake::primitives::DateTime;
use aws_sdk_healthlake::types::{
    AuthorizationStrategy, CmkType, DatastoreFilter, DatastoreStatus, ErrorCategory, FhirVersion,
    JobStatus, ValidationLevel,
};
use aws_sdk_healthlake::Client;
use common::{healthlake_config, start_with_datastore as start, DS};
use healthlake_fake::{
    FakeDatastore, FakeImportJob, FakeJob, FakeProgress, FakeServer, Fault,
    DEFAULT_DATASTORE_CREATED_AT, DEFAULT_MAX_RESULTS, DESCRIBE_FHIR_DATASTORE_TARGET,
    LIST_FHIR_DATASTORES_TARGET, LIST_FHIR_IMPORT_JOBS_TARGET,
};

const REGION: &str = "us-west-2";

type ImportResult = Result<ListFhirImportJobsOutput, SdkError<ListFHIRImportJobsError>>;
type DatastoresResult = Result<ListFhirDatastoresOutput, SdkError<ListFHIRDatastoresError>>;

fn config(server: &FakeServer, region: &str) -> Builder {
    healthlake_config(server, region).retry_config(RetryConfig::disabled())
}

/// Client without retries, so each call is exactly one request and errors surface unchanged.
fn client(server: &FakeServer) -> Client {
    Client::from_conf(config(server, REGION).build())
}

fn client_in(server: &FakeServer, region: &str) -> Client {
    Client::from_conf(config(server, region).build())
}

/// The HTTP status and the error code of a failed call.
fn status_and_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> (Option<u16>, Option<String>) {
    (
        err.raw_response().map(|r| r.status().as_u16()),
        err.as_service_error()
            .and_then(ProvideErrorMetadata::code)
            .map(str::to_owned),
    )
}

/// A truncated 200: an error of the service, with no code.
fn assert_truncated<E: ProvideErrorMetadata + std::fmt::Debug>(err: &SdkError<E>) {
    assert!(matches!(err, SdkError::ServiceError(_)), "{err:?}");
    assert_eq!(status_and_code(err), (Some(200), None));
}

/// A dropped connection: no answer at all.
fn assert_no_answer<E: std::fmt::Debug>(err: &SdkError<E>) {
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{err:?}"
    );
}

async fn imports(client: &Client, max: Option<i32>, token: Option<&str>) -> ImportResult {
    client
        .list_fhir_import_jobs()
        .datastore_id(DS)
        .set_max_results(max)
        .set_next_token(token.map(str::to_owned))
        .send()
        .await
}

async fn datastores(
    client: &Client,
    filter: Option<DatastoreFilter>,
    max: Option<i32>,
    token: Option<&str>,
) -> DatastoresResult {
    client
        .list_fhir_datastores()
        .set_filter(filter)
        .set_max_results(max)
        .set_next_token(token.map(str::to_owned))
        .send()
        .await
}

/// Every datastore id a filtered listing returns, following `NextToken` to the end.
async fn all_datastore_ids(
    client: &Client,
    filter: Option<DatastoreFilter>,
    max: Option<i32>,
) -> (Vec<String>, usize) {
    let mut token: Option<String> = None;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let out = datastores(client, filter.clone(), max, token.as_deref())
            .await
            .expect("page");
        pages += 1;
        ids.extend(
            out.datastore_properties_list()
                .iter()
                .map(|d| d.datastore_id().to_owned()),
        );
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return (ids, pages),
        }
    }
}

fn full_progress(i: i64) -> FakeProgress {
    FakeProgress {
        total_number_of_scanned_files: 10 + i,
        total_size_of_scanned_files_in_mb: 25.5 + i as f64,
        total_number_of_imported_files: 9 + i,
        total_number_of_resources_scanned: 2_400 + i,
        total_number_of_resources_imported: 2_390 + i,
        total_number_of_resources_with_customer_error: 10,
        total_number_of_files_read_with_customer_error: 1,
        throughput: 312.25,
        total_number_of_scanned_non_fhir_files: Some(3),
        total_size_of_scanned_non_fhir_files_in_mb: Some(0.75),
        total_number_of_imported_non_fhir_files: Some(2),
        total_number_of_non_fhir_resources_scanned: Some(30),
        total_number_of_non_fhir_resources_imported: Some(29),
        total_number_of_non_fhir_resources_with_customer_error: Some(1),
        total_number_of_non_fhir_files_read_with_customer_error: Some(1),
        total_files_converted: Some(4),
        total_resources_generated: Some(400),
    }
}

#[tokio::test]
async fn import_jobs_page_1234_in_three_pages_with_every_field() {
    let (fake, server) = start().await;
    let statuses = [
        "COMPLETED",
        "FAILED",
        "IN_PROGRESS",
        "COMPLETED_WITH_ERRORS",
    ];
    let mut expected = HashMap::new();
    for i in 0..1234u32 {
        let submit = 1_705_314_600.0 + f64::from(i) * 60.0 + if i % 2 == 0 { 0.5 } else { 0.0 };
        let mut job = FakeImportJob::new(format!("imp{i:04}"), statuses[i as usize % 4], submit);
        if i % 4 != 2 {
            job = job.ended(submit + 30.25);
        }
        if i % 10 == 0 {
            job = job.named(format!("load-{i}"));
        }
        if i % 3 == 0 {
            job = job.with_progress(full_progress(i64::from(i)));
        } else if i % 3 == 1 {
            job = job.with_progress(FakeProgress {
                total_number_of_scanned_files: i64::from(i),
                ..FakeProgress::default()
            });
        }
        if i % 7 == 0 {
            job = job
                .with_input(format!("s3://my-input-bucket/batch-{i}/"))
                .with_validation_level("structure-only")
                .with_message("Import failed: bad ndjson");
        }
        expected.insert(job.id.clone(), job.clone());
        fake.add_import_job(DS, job);
    }
    // Export jobs are a separate list.
    fake.add_job(DS, FakeJob::new("export-only", "COMPLETED", 1.0));
    let client = client(&server);
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        let out = imports(&client, Some(500), token.as_deref())
            .await
            .expect("page");
        pages.push(out.import_job_properties_list().len());
        for job in out.import_job_properties_list() {
            let want = &expected[job.job_id()];
            assert_eq!(job.job_status().as_str(), want.status);
            assert_eq!(job.submit_time().as_secs_f64(), want.submit_time);
            assert_eq!(job.end_time().map(DateTime::as_secs_f64), want.end_time);
            assert_eq!(job.job_name(), want.name.as_deref());
            assert_eq!(job.datastore_id(), DS);
            assert_eq!(job.message(), want.message.as_deref());
            let input = job
                .input_data_config()
                .and_then(|c| c.as_s3_uri().ok())
                .expect("InputDataConfig.S3Uri");
            match &want.input_s3_uri {
                Some(uri) => assert_eq!(input, uri),
                None => assert_eq!(
                    input,
                    &format!("s3://healthlake-import-123456789012/{DS}/{}/", want.id)
                ),
            }
            let s3 = job
                .job_output_data_config()
                .and_then(|c| c.as_s3_configuration().ok())
                .expect("JobOutputDataConfig.S3Configuration");
            assert!(s3.s3_uri().starts_with("s3://"));
            assert!(s3.kms_key_id().starts_with("arn:aws:kms:us-west-2:"));
            assert!(job
                .data_access_role_arn()
                .is_some_and(|a| a.starts_with("arn:aws:iam::123456789012:role/")));
            assert_eq!(
                job.validation_level().map(ValidationLevel::as_str),
                want.validation_level.as_deref()
            );
            assert_eq!(
                job.validation_level().is_some(),
                matches!(job.validation_level(), Some(ValidationLevel::StructureOnly))
            );
            match (&want.progress, job.job_progress_report()) {
                (None, None) => {}
                (Some(p), Some(r)) => {
                    assert_eq!(
                        r.total_number_of_scanned_files(),
                        Some(p.total_number_of_scanned_files)
                    );
                    assert_eq!(
                        r.total_size_of_scanned_files_in_mb(),
                        Some(p.total_size_of_scanned_files_in_mb)
                    );
                    assert_eq!(
                        r.total_number_of_imported_files(),
                        Some(p.total_number_of_imported_files)
                    );
                    assert_eq!(
                        r.total_number_of_resources_scanned(),
                        Some(p.total_number_of_resources_scanned)
                    );
                    assert_eq!(
                        r.total_number_of_resources_imported(),
                        Some(p.total_number_of_resources_imported)
                    );
                    assert_eq!(
                        r.total_number_of_resources_with_customer_error(),
                        Some(p.total_number_of_resources_with_customer_error)
                    );
                    assert_eq!(
                        r.total_number_of_files_read_with_customer_error(),
                        Some(p.total_number_of_files_read_with_customer_error)
                    );
                    assert_eq!(r.throughput(), Some(p.throughput));
                    assert_eq!(
                        r.total_number_of_scanned_non_fhir_files(),
                        p.total_number_of_scanned_non_fhir_files
                    );
                    assert_eq!(
                        r.total_size_of_scanned_non_fhir_files_in_mb(),
                        p.total_size_of_scanned_non_fhir_files_in_mb
                    );
                    assert_eq!(
                        r.total_number_of_imported_non_fhir_files(),
                        p.total_number_of_imported_non_fhir_files
                    );
                    assert_eq!(
                        r.total_number_of_non_fhir_resources_scanned(),
                        p.total_number_of_non_fhir_resources_scanned
                    );
                    assert_eq!(
                        r.total_number_of_non_fhir_resources_imported(),
                        p.total_number_of_non_fhir_resources_imported
                    );
                    assert_eq!(
                        r.total_number_of_non_fhir_resources_with_customer_error(),
                        p.total_number_of_non_fhir_resources_with_customer_error
                    );
                    assert_eq!(
                        r.total_number_of_non_fhir_files_read_with_customer_error(),
                        p.total_number_of_non_fhir_files_read_with_customer_error
                    );
                    assert_eq!(r.total_files_converted(), p.total_files_converted);
                    assert_eq!(r.total_resources_generated(), p.total_resources_generated);
                }
                (want, got) => panic!(
                    "progress mismatch for {}: {want:?} vs {got:?}",
                    job.job_id()
                ),
            }
            assert!(
                seen.insert(job.job_id().to_owned()),
                "duplicate {}",
                job.job_id()
            );
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, [500, 500, 234]);
    assert_eq!(seen.len(), 1234);
    assert_eq!(fake.request_count_for("ListFHIRImportJobs", DS), 3);
    assert_eq!(fake.request_count_for(LIST_FHIR_IMPORT_JOBS_TARGET, DS), 3);
    assert_eq!(
        fake.request_count(DS),
        0,
        "request_count counts exports only"
    );
}

#[tokio::test]
async fn import_paging_bounds_filters_and_errors() {
    let (fake, server) = start().await;
    for i in 0..30u32 {
        let status = if i % 3 == 0 { "FAILED" } else { "COMPLETED" };
        let mut job = FakeImportJob::new(format!("j{i:02}"), status, 1000.0 + f64::from(i));
        if i < 5 {
            job = job.named("nightly");
        }
        fake.add_import_job(DS, job);
    }
    let client = client(&server);
    let out = imports(&client, None, None).await.expect("default page");
    assert_eq!(out.import_job_properties_list().len(), DEFAULT_MAX_RESULTS);
    assert!(out.next_token().is_some());
    for bad in [0, 501, -1] {
        let err = imports(&client, Some(bad), None).await.unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(ListFHIRImportJobsError::ValidationException(_))
            ),
            "{bad}"
        );
    }
    let err = imports(&client, None, Some("garbage")).await.unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ListFHIRImportJobsError::ValidationException(_))
    ));
    let err = client
        .list_fhir_import_jobs()
        .datastore_id("ffffffffffffffffffffffffffffffff")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ListFHIRImportJobsError::ResourceNotFoundException(_))
    ));

    let ids = |out: ListFhirImportJobsOutput| -> BTreeSet<String> {
        out.import_job_properties_list()
            .iter()
            .map(|j| j.job_id().to_owned())
            .collect()
    };
    let failed = client
        .list_fhir_import_jobs()
        .datastore_id(DS)
        .job_status(JobStatus::Failed)
        .max_results(100)
        .send()
        .await
        .expect("status filter");
    assert_eq!(failed.import_job_properties_list().len(), 10);
    assert!(failed
        .import_job_properties_list()
        .iter()
        .all(|j| j.job_status() == &JobStatus::Failed));
    let named = client
        .list_fhir_import_jobs()
        .datastore_id(DS)
        .job_name("nightly")
        .max_results(100)
        .send()
        .await
        .expect("name filter");
    assert_eq!(ids(named).len(), 5);
    let window = client
        .list_fhir_import_jobs()
        .datastore_id(DS)
        .submitted_after(DateTime::from_secs_f64(1010.0))
        .submitted_before(DateTime::from_secs_f64(1014.0))
        .max_results(100)
        .send()
        .await
        .expect("time window");
    assert_eq!(
        ids(window),
        ["j11", "j12", "j13"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[tokio::test]
async fn import_status_changes_and_unknown_status_strings() {
    let (fake, server) = start().await;
    fake.add_import_job(DS, FakeImportJob::new("a", "IN_PROGRESS", 100.0));
    assert!(fake.set_import_progress(DS, "a", full_progress(1)));
    assert!(fake.set_import_job_status(DS, "a", "ARCHIVED", Some(200.5)));
    assert!(!fake.set_import_job_status(DS, "missing", "FAILED", None));
    assert!(!fake.set_import_progress("nope", "a", FakeProgress::default()));
    let out = imports(&client(&server), None, None).await.expect("list");
    let job = &out.import_job_properties_list()[0];
    #[allow(deprecated)] // matching `Unknown` directly is exactly what this test is about
    let unknown = matches!(job.job_status(), JobStatus::Unknown(_));
    assert!(unknown, "{:?}", job.job_status());
    assert_eq!(job.job_status().as_str(), "ARCHIVED");
    assert_eq!(job.end_time().map(DateTime::as_secs_f64), Some(200.5));
    assert_eq!(
        job.job_progress_report()
            .and_then(|r| r.total_number_of_scanned_files()),
        Some(11)
    );
    assert_eq!(fake.import_jobs(DS).len(), 1);
    assert!(fake.remove_import_job(DS, "a"));
    let out = imports(&client(&server), None, None).await.expect("list");
    assert!(out.import_job_properties_list().is_empty());
}

#[tokio::test]
async fn describe_active_updating_unknown_and_invalid() {
    let (fake, server) = start().await;
    let client = client(&server);
    let describe = |id: &str| client.describe_fhir_datastore().datastore_id(id).send();

    let out = describe(DS).await.expect("describe");
    let p = out.datastore_properties().expect("DatastoreProperties");
    assert_eq!(p.datastore_id(), DS);
    assert_eq!(p.datastore_name(), Some(DS), "name defaults to the id");
    assert_eq!(p.datastore_status(), &DatastoreStatus::Active);
    assert_eq!(
        p.created_at().map(DateTime::as_secs_f64),
        Some(DEFAULT_DATASTORE_CREATED_AT)
    );
    assert_eq!(p.datastore_type_version(), &FhirVersion::R4);
    assert_eq!(
        p.datastore_arn(),
        format!("arn:aws:healthlake:us-west-2:123456789012:datastore/fhir/{DS}")
    );
    assert_eq!(
        p.datastore_endpoint(),
        format!("https://healthlake.us-west-2.amazonaws.com/datastore/{DS}/r4/")
    );
    assert_eq!(
        p.sse_configuration()
            .and_then(|s| s.kms_encryption_config())
            .map(|k| k.cmk_type()),
        Some(&CmkType::AoCmk)
    );
    assert_eq!(
        p.identity_provider_configuration()
            .map(|i| i.authorization_strategy()),
        Some(&AuthorizationStrategy::AwsAuth)
    );
    assert!(p.error_cause().is_none());

    fake.set_datastore(
        DS,
        FakeDatastore::new("patients")
            .with_status("UPDATING")
            .created(1_705_314_600.25),
    );
    let out = describe(DS).await.expect("describe");
    let p = out.datastore_properties().expect("DatastoreProperties");
    assert_eq!(p.datastore_name(), Some("patients"));
    assert_eq!(p.datastore_status(), &DatastoreStatus::Updating);
    assert_eq!(
        p.created_at().map(DateTime::as_secs_f64),
        Some(1_705_314_600.25)
    );

    assert!(fake.set_datastore_status(DS, "HIBERNATING"));
    assert!(fake.set_datastore_name(DS, "renamed"));
    assert!(!fake.set_datastore_status("nope", "ACTIVE"));
    assert!(!fake.set_datastore_name("nope", "x"));
    let out = describe(DS).await.expect("describe");
    let p = out.datastore_properties().expect("DatastoreProperties");
    #[allow(deprecated)] // matching `Unknown` directly is exactly what this test is about
    let unknown = matches!(p.datastore_status(), DatastoreStatus::Unknown(_));
    assert!(unknown, "{:?}", p.datastore_status());
    assert_eq!(p.datastore_status().as_str(), "HIBERNATING");
    assert_eq!(p.datastore_name(), Some("renamed"));

    fake.set_datastore(
        DS,
        FakeDatastore::new("broken")
            .with_status("UPDATE_FAILED")
            .with_error("KMS key is disabled", "NON_RETRYABLE_ERROR"),
    );
    let out = describe(DS).await.expect("describe");
    let cause = out
        .datastore_properties()
        .and_then(|p| p.error_cause())
        .expect("ErrorCause");
    assert_eq!(cause.error_message(), Some("KMS key is disabled"));
    assert_eq!(
        cause.error_category(),
        Some(&ErrorCategory::NonRetryableError)
    );

    let err = describe("ffffffffffffffffffffffffffffffff")
        .await
        .unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(DescribeFHIRDatastoreError::ResourceNotFoundException(_))
    ));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    let err = describe(&"a".repeat(33)).await.unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(DescribeFHIRDatastoreError::ValidationException(_))
    ));
    fake.remove_datastore(DS);
    let err = describe(DS).await.unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(DescribeFHIRDatastoreError::ResourceNotFoundException(_))
    ));
    assert_eq!(
        fake.request_count_for(DESCRIBE_FHIR_DATASTORE_TARGET, DS),
        5
    );
}

#[tokio::test]
async fn regional_datastores_are_only_seen_from_their_region() {
    let (fake, server) = start().await;
    let east = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    fake.set_datastore(east, FakeDatastore::new("east").in_region("us-east-1"));
    fake.add_import_job(east, FakeImportJob::new("i", "COMPLETED", 1.0).ended(2.0));
    let west = client(&server);
    let east_client = client_in(&server, "us-east-1");
    let err = west
        .describe_fhir_datastore()
        .datastore_id(east)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(DescribeFHIRDatastoreError::ResourceNotFoundException(_))
    ));
    let err = west
        .list_fhir_import_jobs()
        .datastore_id(east)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ListFHIRImportJobsError::ResourceNotFoundException(_))
    ));
    let out = east_client
        .describe_fhir_datastore()
        .datastore_id(east)
        .send()
        .await
        .expect("own region");
    assert!(out
        .datastore_properties()
        .is_some_and(|p| p.datastore_arn().contains(":us-east-1:")));
    let (west_ids, _) = all_datastore_ids(&west, None, None).await;
    let (east_ids, _) = all_datastore_ids(&east_client, None, None).await;
    assert_eq!(west_ids, [DS]);
    assert_eq!(
        east_ids.into_iter().collect::<BTreeSet<_>>(),
        [DS, east].map(String::from).into_iter().collect()
    );
}

#[tokio::test]
async fn list_datastores_pages_1100_and_applies_each_filter() {
    let (fake, server) = start().await;
    fake.remove_datastore(DS);
    let statuses = ["ACTIVE", "ACTIVE", "CREATING", "UPDATING", "DELETED"];
    for i in 0..1100u32 {
        let name = if i % 100 == 0 {
            "prod-patients".to_owned()
        } else {
            format!("ds-{i}")
        };
        fake.set_datastore(
            &format!("{i:032x}"),
            FakeDatastore::new(name)
                .with_status(statuses[i as usize % 5])
                .created(1_700_000_000.0 + f64::from(i) * 3600.0),
        );
    }
    let client = client(&server);
    let (ids, pages) = all_datastore_ids(&client, None, Some(500)).await;
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 1100);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 1100);
    let first = datastores(&client, None, None, None)
        .await
        .expect("default");
    assert_eq!(first.datastore_properties_list().len(), DEFAULT_MAX_RESULTS);
    for p in first.datastore_properties_list() {
        let want = fake.datastore(p.datastore_id()).expect("exists");
        assert_eq!(p.datastore_name(), Some(want.name.as_str()));
        assert_eq!(p.datastore_status().as_str(), want.status);
        assert_eq!(
            p.created_at().map(DateTime::as_secs_f64),
            Some(want.created_at)
        );
        assert_eq!(p.datastore_type_version(), &FhirVersion::R4);
        assert!(p.datastore_endpoint().ends_with("/r4/"));
    }

    let filter = DatastoreFilter::builder();
    let by_status = filter
        .clone()
        .datastore_status(DatastoreStatus::Creating)
        .build();
    let (ids, _) = all_datastore_ids(&client, Some(by_status), Some(100)).await;
    assert_eq!(ids.len(), 220);
    assert!(ids
        .iter()
        .all(|id| fake.datastore(id).is_some_and(|d| d.status == "CREATING")));
    let by_name = filter.clone().datastore_name("prod-patients").build();
    let (ids, _) = all_datastore_ids(&client, Some(by_name), None).await;
    assert_eq!(ids.len(), 11);
    let by_prefix = filter.clone().datastore_name("prod").build();
    let (ids, _) = all_datastore_ids(&client, Some(by_prefix), None).await;
    assert!(ids.is_empty(), "the name filter is exact, not a prefix");
    let after = filter
        .clone()
        .created_after(DateTime::from_secs_f64(1_700_000_000.0 + 1095.0 * 3600.0))
        .build();
    let (ids, _) = all_datastore_ids(&client, Some(after), None).await;
    assert_eq!(ids.len(), 4, "strictly after: 1096..=1099");
    let before = filter
        .clone()
        .created_before(DateTime::from_secs_f64(1_700_000_000.0 + 3.0 * 3600.0))
        .build();
    let (ids, _) = all_datastore_ids(&client, Some(before), None).await;
    assert_eq!(ids.len(), 3, "strictly before: 0..=2");
    let combined = filter
        .datastore_status(DatastoreStatus::Active)
        .datastore_name("prod-patients")
        .created_after(DateTime::from_secs_f64(1_700_000_000.0))
        .build();
    let (ids, _) = all_datastore_ids(&client, Some(combined), None).await;
    // i % 100 == 0 and i % 5 in {0, 1}: all of 100..=1000 step 100 (i=0 is not strictly after).
    assert_eq!(ids.len(), 10);

    for bad in [0, 501] {
        let err = datastores(&client, None, Some(bad), None)
            .await
            .unwrap_err();
        assert!(matches!(
            err.as_service_error(),
            Some(ListFHIRDatastoresError::ValidationException(_))
        ));
    }
    let err = datastores(&client, None, None, Some("garbage"))
        .await
        .unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ListFHIRDatastoresError::ValidationException(_))
    ));
    let empty_name = DatastoreFilter::builder().datastore_name("").build();
    let err = datastores(&client, Some(empty_name), None, None)
        .await
        .unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ListFHIRDatastoresError::ValidationException(_))
    ));
    // 3 + 1 + 3 + 1 + 1 + 1 + 1 + 1 listing pages above, plus 4 rejected calls.
    assert_eq!(fake.request_count_for(LIST_FHIR_DATASTORES_TARGET, ""), 16);
}

#[tokio::test]
async fn unknown_datastore_status_and_empty_listing() {
    let (fake, server) = start().await;
    let client = client(&server);
    fake.remove_datastore(DS);
    let out = datastores(&client, None, None, None).await.expect("empty");
    assert!(out.datastore_properties_list().is_empty());
    assert!(out.next_token().is_none());
    fake.set_datastore(DS, FakeDatastore::new("x").with_status("RESTORING"));
    let out = datastores(&client, None, None, None).await.expect("one");
    let status = out.datastore_properties_list()[0].datastore_status();
    #[allow(deprecated)] // matching `Unknown` directly is exactly what this test is about
    let unknown = matches!(status, DatastoreStatus::Unknown(_));
    assert!(unknown, "{status:?}");
    assert_eq!(status.as_str(), "RESTORING");
    let filter = DatastoreFilter::builder()
        .datastore_status(DatastoreStatus::from("RESTORING"))
        .build();
    let (ids, _) = all_datastore_ids(&client, Some(filter), None).await;
    assert_eq!(ids, [DS]);
}

/// One operation faulted: the others on the same datastore keep working.
#[tokio::test]
async fn per_operation_faults_are_isolated() {
    let (fake, server) = start().await;
    fake.add_job(DS, FakeJob::new("e", "COMPLETED", 1.0).ended(2.0));
    fake.add_import_job(DS, FakeImportJob::new("i", "COMPLETED", 1.0).ended(2.0));
    let client = client(&server);
    let export = || client.list_fhir_export_jobs().datastore_id(DS).send();
    let import = || client.list_fhir_import_jobs().datastore_id(DS).send();
    let describe = || client.describe_fhir_datastore().datastore_id(DS).send();
    let list = || client.list_fhir_datastores().send();

    assert!(fake.set_fault_for("DescribeFHIRDatastore", DS, Some(Fault::Throttling)));
    let err = describe().await.unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(DescribeFHIRDatastoreError::ThrottlingException(_))
    ));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(429));
    export().await.expect("exports unaffected");
    import().await.expect("imports unaffected");
    list().await.expect("discovery unaffected");

    assert!(fake.set_fault_for(
        "HealthLake.ListFHIRImportJobs",
        DS,
        Some(Fault::InternalError)
    ));
    let err = import().await.unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ListFHIRImportJobsError::InternalServerException(_))
    ));
    export().await.expect("exports unaffected");

    fake.set_list_datastores_fault(Some(Fault::Throttling));
    let err = list().await.unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ListFHIRDatastoresError::ThrottlingException(_))
    ));
    export()
        .await
        .expect("exports unaffected by the account-level fault");
    fake.set_list_datastores_fault(None);
    list().await.expect("cleared");

    // The datastore-wide fault covers every per-datastore operation but loses to the specific one.
    fake.set_fault(DS, Some(Fault::AccessDenied));
    assert!(matches!(
        export().await.unwrap_err().as_service_error(),
        Some(aws_sdk_healthlake::operation::list_fhir_export_jobs::ListFHIRExportJobsError::AccessDeniedException(_))
    ));
    assert!(matches!(
        import().await.unwrap_err().as_service_error(),
        Some(ListFHIRImportJobsError::InternalServerException(_))
    ));
    list()
        .await
        .expect("account-level call unaffected by datastore faults");
    assert!(fake.set_fault_for("ListFHIRImportJobs", DS, None));
    assert!(fake.set_fault_for("DescribeFHIRDatastore", DS, None));
    assert!(matches!(
        import().await.unwrap_err().as_service_error(),
        Some(ListFHIRImportJobsError::AccessDeniedException(_))
    ));
    // AccessDenied is not in DescribeFHIRDatastore's model: the SDK keeps the code.
    let err = describe().await.unwrap_err();
    let service = err.as_service_error().expect("service error");
    assert!(
        !service.is_throttling_exception()
            && !service.is_resource_not_found_exception()
            && !service.is_validation_exception()
            && !service.is_internal_server_exception(),
        "unmodeled: {service:?}"
    );
    assert_eq!(service.code(), Some("AccessDeniedException"));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert!(service
        .message()
        .is_some_and(|m| m.contains("healthlake:DescribeFHIRDatastore")));
    fake.set_fault(DS, None);
    describe().await.expect("cleared");
    assert!(!fake.set_fault_for("ListFHIRDatastores", DS, Some(Fault::Hang)));
    assert!(!fake.set_fault_for("DeleteFHIRDatastore", DS, Some(Fault::Hang)));
    list()
        .await
        .expect("rejected set_fault_for changed nothing");
}

#[tokio::test]
async fn error_faults_map_to_each_operations_variants() {
    let (fake, server) = start().await;
    let client = client(&server);
    let cases: [(Fault, u16, &str); 7] = [
        (Fault::Throttling, 429, "ThrottlingException"),
        (Fault::InternalError, 500, "InternalServerException"),
        (Fault::AccessDenied, 403, "AccessDeniedException"),
        (Fault::NotFound, 404, "ResourceNotFoundException"),
        (Fault::Validation, 400, "ValidationException"),
        (Fault::ExpiredToken, 400, "ExpiredTokenException"),
        (Fault::UnknownError, 400, "SomethingNewException"),
    ];
    for (fault, status, code) in cases {
        fake.set_fault(DS, Some(fault.clone()));
        fake.set_list_datastores_fault(Some(fault.clone()));

        let err = client
            .list_fhir_import_jobs()
            .datastore_id(DS)
            .send()
            .await
            .unwrap_err();
        assert_eq!(status_and_code(&err), (Some(status), Some(code.to_owned())));
        let e = err.as_service_error().expect("service error");
        let modeled = matches!(
            e,
            ListFHIRImportJobsError::ThrottlingException(_)
                | ListFHIRImportJobsError::AccessDeniedException(_)
                | ListFHIRImportJobsError::ResourceNotFoundException(_)
                | ListFHIRImportJobsError::ValidationException(_)
                | ListFHIRImportJobsError::InternalServerException(_)
        );
        assert_eq!(
            modeled,
            status != 400 || code == "ValidationException",
            "{code}"
        );

        let err = client
            .describe_fhir_datastore()
            .datastore_id(DS)
            .send()
            .await
            .unwrap_err();
        assert_eq!(status_and_code(&err), (Some(status), Some(code.to_owned())));
        let e = err.as_service_error().expect("service error");
        let modeled = matches!(
            e,
            DescribeFHIRDatastoreError::ThrottlingException(_)
                | DescribeFHIRDatastoreError::ResourceNotFoundException(_)
                | DescribeFHIRDatastoreError::ValidationException(_)
                | DescribeFHIRDatastoreError::InternalServerException(_)
        );
        let in_model = [
            "ThrottlingException",
            "ResourceNotFoundException",
            "ValidationException",
            "InternalServerException",
        ];
        assert_eq!(modeled, in_model.contains(&code), "{code}");

        let err = client.list_fhir_datastores().send().await.unwrap_err();
        assert_eq!(status_and_code(&err), (Some(status), Some(code.to_owned())));
        let e = err.as_service_error().expect("service error");
        let modeled = matches!(
            e,
            ListFHIRDatastoresError::ThrottlingException(_)
                | ListFHIRDatastoresError::ValidationException(_)
                | ListFHIRDatastoresError::InternalServerException(_)
        );
        let in_model = [
            "ThrottlingException",
            "ValidationException",
            "InternalServerException",
        ];
        assert_eq!(modeled, in_model.contains(&code), "{code}");
    }
}

#[tokio::test]
async fn transport_faults_apply_to_the_new_operations() {
    let (fake, server) = start().await;
    for i in 0..30u32 {
        fake.add_import_job(DS, FakeImportJob::new(format!("j{i}"), "COMPLETED", 1.0));
        fake.add_datastore(&format!("{i:032x}"));
    }
    let client = client(&server);
    let import = || client.list_fhir_import_jobs().datastore_id(DS).send();
    let describe = || client.describe_fhir_datastore().datastore_id(DS).send();
    let list = || client.list_fhir_datastores().send();

    // A truncated 200 is an unhandled service error with no code; a reset has no response.
    fake.set_fault(DS, Some(Fault::MalformedJson));
    fake.set_list_datastores_fault(Some(Fault::MalformedJson));
    assert_truncated(&import().await.unwrap_err());
    assert_truncated(&describe().await.unwrap_err());
    assert_truncated(&list().await.unwrap_err());

    fake.set_fault(DS, Some(Fault::ConnectionReset));
    fake.set_list_datastores_fault(Some(Fault::ConnectionReset));
    assert_no_answer(&import().await.unwrap_err());
    assert_no_answer(&describe().await.unwrap_err());
    assert_no_answer(&list().await.unwrap_err());

    fake.set_fault(DS, Some(Fault::NextTokenLoop));
    fake.set_list_datastores_fault(Some(Fault::NextTokenLoop));
    let first = import().await.expect("page");
    let again = client
        .list_fhir_import_jobs()
        .datastore_id(DS)
        .set_next_token(first.next_token().map(str::to_owned))
        .send()
        .await
        .expect("page");
    assert_eq!(first.next_token(), again.next_token());
    let first = list().await.expect("page");
    let again = datastores(&client, None, None, first.next_token())
        .await
        .expect("page");
    assert!(first.next_token().is_some());
    assert_eq!(first.next_token(), again.next_token());
    describe()
        .await
        .expect("NextTokenLoop does not affect Describe");

    let size = 200_000;
    fake.set_fault(DS, Some(Fault::Oversized(size)));
    fake.set_list_datastores_fault(Some(Fault::Oversized(size)));
    let out = describe().await.expect("padded describe still parses");
    assert!(out.datastore_properties().is_some());
    let out = import().await.expect("padded import list still parses");
    assert_eq!(out.import_job_properties_list().len(), DEFAULT_MAX_RESULTS);
    let out = list().await.expect("padded datastore list still parses");
    assert_eq!(out.datastore_properties_list().len(), DEFAULT_MAX_RESULTS);

    let timeout_client = Client::from_conf(
        config(&server, REGION)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(300))
                    .build(),
            )
            .build(),
    );
    fake.set_fault(DS, None);
    fake.set_fault_for("DescribeFHIRDatastore", DS, Some(Fault::Hang));
    fake.set_list_datastores_fault(Some(Fault::Delay(Duration::from_secs(3))));
    let e = timeout_client
        .describe_fhir_datastore()
        .datastore_id(DS)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(e, SdkError::TimeoutError(_)), "{e:?}");
    let e = timeout_client
        .list_fhir_datastores()
        .send()
        .await
        .unwrap_err();
    assert!(matches!(e, SdkError::TimeoutError(_)), "{e:?}");
    timeout_client
        .list_fhir_import_jobs()
        .datastore_id(DS)
        .send()
        .await
        .expect("imports unaffected by the Describe hang");
}

#[tokio::test]
async fn request_counts_are_per_operation_and_datastore() {
    let (fake, server) = start().await;
    let client = client(&server);
    client
        .list_fhir_export_jobs()
        .datastore_id(DS)
        .send()
        .await
        .expect("export");
    for _ in 0..2 {
        let _ = client.list_fhir_import_jobs().datastore_id(DS).send().await;
    }
    fake.set_fault_for("DescribeFHIRDatastore", DS, Some(Fault::Throttling));
    for _ in 0..3 {
        let _ = client
            .describe_fhir_datastore()
            .datastore_id(DS)
            .send()
            .await;
    }
    for _ in 0..4 {
        let _ = client.list_fhir_datastores().send().await;
    }
    assert_eq!(fake.request_count(DS), 1);
    assert_eq!(fake.request_count_for("ListFHIRExportJobs", DS), 1);
    assert_eq!(fake.request_count_for("ListFHIRImportJobs", DS), 2);
    assert_eq!(fake.request_count_for("DescribeFHIRDatastore", DS), 3);
    assert_eq!(fake.request_count_for("ListFHIRDatastores", ""), 4);
    assert_eq!(fake.request_count_for("ListFHIRImportJobs", "other"), 0);
    assert_eq!(fake.request_count_for("NoSuchOperation", DS), 0);
    let targets: Vec<String> = fake.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets.len(), 10);
    assert_eq!(
        targets
            .iter()
            .filter(|t| *t == LIST_FHIR_DATASTORES_TARGET)
            .count(),
        4
    );
    fake.clear_requests();
    assert_eq!(fake.request_count_for("DescribeFHIRDatastore", DS), 0);
}
