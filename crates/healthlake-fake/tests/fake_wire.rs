//! Wire-level tests of the fake HealthLake server: the real `aws-sdk-healthlake` client (and a raw
//! TCP client for what the SDK cannot send) over loopback HTTP. If these pass, tests of the
//! exporter built on the fake exercise the same code paths as against AWS.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_healthlake::config::retry::RetryConfig;
use aws_sdk_healthlake::config::timeout::TimeoutConfig;
use aws_sdk_healthlake::config::{Builder, Region};
use aws_sdk_healthlake::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_healthlake::operation::list_fhir_export_jobs::{
    ListFHIRExportJobsError, ListFhirExportJobsOutput,
};
use aws_sdk_healthlake::primitives::DateTime;
use aws_sdk_healthlake::types::JobStatus;
use aws_sdk_healthlake::Client;
use common::{healthlake_config, raw, read_response, start_with_datastore, DS};
use healthlake_fake::wait::eventually;
use healthlake_fake::{
    FakeHealthLake, FakeJob, FakeServer, Fault, DEFAULT_MAX_RESULTS, LIST_FHIR_EXPORT_JOBS_TARGET,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-west-2/healthlake/aws4_request, SignedHeaders=content-type;host;x-amz-target, Signature=0a1b2c3d";

type ListResult = Result<ListFhirExportJobsOutput, SdkError<ListFHIRExportJobsError>>;

async fn start() -> (FakeHealthLake, FakeServer) {
    start_with_datastore().await
}

fn config(server: &FakeServer) -> Builder {
    healthlake_config(server, "us-west-2")
}

/// Client without retries, so each call is exactly one request and errors surface unchanged.
fn client(server: &FakeServer) -> Client {
    Client::from_conf(config(server).retry_config(RetryConfig::disabled()).build())
}

async fn list(client: &Client, max: Option<i32>, token: Option<&str>) -> ListResult {
    client
        .list_fhir_export_jobs()
        .datastore_id(DS)
        .set_max_results(max)
        .set_next_token(token.map(str::to_owned))
        .send()
        .await
}

fn ids(out: &ListFhirExportJobsOutput) -> Vec<String> {
    out.export_job_properties_list()
        .iter()
        .map(|j| j.job_id().to_owned())
        .collect()
}

/// `true` for the error variants the model defines for `ListFHIRExportJobs`.
fn modeled(e: &ListFHIRExportJobsError) -> bool {
    matches!(
        e,
        ListFHIRExportJobsError::ThrottlingException(_)
            | ListFHIRExportJobsError::AccessDeniedException(_)
            | ListFHIRExportJobsError::ResourceNotFoundException(_)
            | ListFHIRExportJobsError::ValidationException(_)
            | ListFHIRExportJobsError::InternalServerException(_)
    )
}

fn status_of(err: &SdkError<ListFHIRExportJobsError>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn pages_1234_jobs_in_three_pages_with_exact_fields() {
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
        let mut job = FakeJob::new(format!("job{i:04}"), statuses[i as usize % 4], submit);
        if i % 4 != 2 {
            job = job.ended(submit + 30.25);
        }
        if i % 10 == 0 {
            job = job.named(format!("name-{i}"));
        }
        expected.insert(job.id.clone(), job.clone());
        fake.add_job(DS, job);
    }
    let client = client(&server);
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    let mut seen = Vec::new();
    loop {
        let out = list(&client, Some(500), token.as_deref())
            .await
            .expect("page");
        pages.push(out.export_job_properties_list().len());
        for job in out.export_job_properties_list() {
            let want = &expected[job.job_id()];
            assert_eq!(job.job_status().as_str(), want.status);
            assert_eq!(
                job.submit_time().as_secs_f64(),
                want.submit_time,
                "{}",
                want.id
            );
            assert_eq!(job.end_time().map(DateTime::as_secs_f64), want.end_time);
            assert_eq!(job.job_name(), want.name.as_deref());
            assert_eq!(job.datastore_id(), DS);
            let s3 = job
                .output_data_config()
                .and_then(|c| c.as_s3_configuration().ok())
                .expect("S3Configuration");
            assert!(s3.s3_uri().starts_with("s3://"));
            assert!(!s3.kms_key_id().is_empty());
            assert!(job.data_access_role_arn().is_some());
            seen.push(job.job_id().to_owned());
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, vec![500, 500, 234]);
    let listed = seen.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1234, "every job exactly once");
    let mut submission_order = listed.clone();
    submission_order.sort();
    assert_ne!(
        listed, submission_order,
        "order must not be submission order"
    );

    assert_eq!(fake.request_count(DS), 3);
    let recorded = fake.requests();
    assert_eq!(recorded.len(), 3);
    for r in &recorded {
        assert_eq!(r.target, LIST_FHIR_EXPORT_JOBS_TARGET);
        assert_eq!(r.region.as_deref(), Some("us-west-2"));
        assert_eq!(r.datastore_id.as_deref(), Some(DS));
        assert_eq!(r.max_results, Some(500));
    }
    assert_eq!(recorded[0].next_token, None);
    assert!(recorded[1].next_token.is_some());
}

#[tokio::test]
async fn default_page_size_applies_without_max_results() {
    let (fake, server) = start().await;
    for i in 0..(DEFAULT_MAX_RESULTS + 5) {
        fake.add_job(
            DS,
            FakeJob::new(format!("j{i}"), "COMPLETED", 1.0e9 + i as f64),
        );
    }
    let client = client(&server);
    let first = list(&client, None, None).await.expect("first page");
    assert_eq!(
        first.export_job_properties_list().len(),
        DEFAULT_MAX_RESULTS
    );
    let token = first.next_token().expect("more pages");
    let second = list(&client, None, Some(token)).await.expect("second page");
    assert_eq!(second.export_job_properties_list().len(), 5);
    assert_eq!(second.next_token(), None);
    assert_eq!(fake.requests()[0].max_results, None);
}

#[tokio::test]
async fn max_results_bounds_are_enforced_server_side() {
    let (fake, server) = start().await;
    fake.add_job(DS, FakeJob::new("a", "COMPLETED", 1.0e9));
    let client = client(&server);
    for bad in [0, 501, -1] {
        let err = list(&client, Some(bad), None)
            .await
            .expect_err("out of range");
        assert_eq!(status_of(&err), Some(400));
        assert!(
            matches!(
                err.into_service_error(),
                ListFHIRExportJobsError::ValidationException(_)
            ),
            "MaxResults {bad}"
        );
    }
    for good in [1, 500] {
        assert!(
            list(&client, Some(good), None).await.is_ok(),
            "MaxResults {good}"
        );
    }
}

#[tokio::test]
async fn garbage_next_token_and_unknown_datastore_are_modeled_errors() {
    let (_fake, server) = start().await;
    let client = client(&server);
    let err = list(&client, None, Some("not-a-token"))
        .await
        .expect_err("bad token");
    let err = err.into_service_error();
    assert!(matches!(
        err,
        ListFHIRExportJobsError::ValidationException(_)
    ));
    assert_eq!(err.message(), Some("invalid NextToken"));

    let err = client
        .list_fhir_export_jobs()
        .datastore_id("ffffffffffffffffffffffffffffffff")
        .send()
        .await
        .expect_err("unknown datastore");
    assert_eq!(status_of(&err), Some(404));
    assert!(matches!(
        err.into_service_error(),
        ListFHIRExportJobsError::ResourceNotFoundException(_)
    ));
}

#[tokio::test]
async fn removed_datastore_becomes_not_found() {
    let (fake, server) = start().await;
    let client = client(&server);
    assert!(list(&client, None, None).await.is_ok());
    fake.remove_datastore(DS);
    let err = list(&client, None, None).await.expect_err("removed");
    assert!(matches!(
        err.into_service_error(),
        ListFHIRExportJobsError::ResourceNotFoundException(_)
    ));
}

#[tokio::test]
async fn error_faults_map_to_sdk_variants_and_statuses() {
    let (fake, server) = start().await;
    let client = client(&server);
    type Check = fn(&ListFHIRExportJobsError) -> bool;
    let cases: [(Fault, u16, Check); 5] = [
        (Fault::Throttling, 429, |e| {
            matches!(e, ListFHIRExportJobsError::ThrottlingException(_))
        }),
        (Fault::InternalError, 500, |e| {
            matches!(e, ListFHIRExportJobsError::InternalServerException(_))
        }),
        (Fault::AccessDenied, 403, |e| {
            matches!(e, ListFHIRExportJobsError::AccessDeniedException(_))
        }),
        (Fault::NotFound, 404, |e| {
            matches!(e, ListFHIRExportJobsError::ResourceNotFoundException(_))
        }),
        (Fault::Validation, 400, |e| {
            matches!(e, ListFHIRExportJobsError::ValidationException(_))
        }),
    ];
    for (fault, status, check) in cases {
        fake.set_fault(DS, Some(fault.clone()));
        for _ in 0..2 {
            // Faults persist until cleared.
            let err = list(&client, None, None).await.expect_err("fault");
            assert_eq!(status_of(&err), Some(status), "{fault:?}");
            let err = err.into_service_error();
            assert!(check(&err), "{fault:?} gave {err:?}");
        }
    }
    fake.set_fault(DS, None);
    assert!(list(&client, None, None).await.is_ok());
}

#[tokio::test]
async fn unmodeled_error_codes_surface_as_codes() {
    let (fake, server) = start().await;
    let client = client(&server);
    for (fault, code) in [
        (Fault::ExpiredToken, "ExpiredTokenException"),
        (Fault::UnknownError, "SomethingNewException"),
    ] {
        fake.set_fault(DS, Some(fault));
        let err = list(&client, None, None).await.expect_err("fault");
        assert_eq!(status_of(&err), Some(400));
        let err = err.into_service_error();
        assert!(!modeled(&err), "{err:?}");
        assert_eq!(err.code(), Some(code));
    }
}

#[tokio::test]
async fn malformed_json_and_connection_reset_are_not_modeled_errors() {
    let (fake, server) = start().await;
    let client = client(&server);

    fake.set_fault(DS, Some(Fault::MalformedJson));
    let err = list(&client, None, None).await.expect_err("malformed");
    // The SDK reports an undeserialisable 200 as an *unhandled service* error (not a
    // ResponseError): `SdkError::ServiceError`, raw status 200, no error code, a deserialize source.
    assert!(matches!(err, SdkError::ServiceError(_)), "{err:?}");
    assert_eq!(status_of(&err), Some(200));
    let service = err.into_service_error();
    assert_eq!(service.code(), None, "{service:?}");
    assert!(!modeled(&service), "{service:?}");
    let context = format!("{}", DisplayErrorContext(&service));
    assert!(context.contains("UnexpectedEos"), "{context}");

    fake.set_fault(DS, Some(Fault::ConnectionReset));
    let err = list(&client, None, None).await.expect_err("reset");
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{err:?}"
    );
    assert_eq!(status_of(&err), None);

    fake.set_fault(DS, None);
    assert!(
        list(&client, None, None).await.is_ok(),
        "recovers after fault"
    );
}

#[tokio::test]
async fn delay_and_hang_hit_the_operation_timeout() {
    let (fake, server) = start().await;
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(Duration::from_millis(300))
        .build();
    let client = Client::from_conf(
        config(&server)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .build(),
    );
    fake.set_fault(DS, Some(Fault::Delay(Duration::from_millis(50))));
    assert!(
        list(&client, None, None).await.is_ok(),
        "short delay answers"
    );

    for fault in [Fault::Delay(Duration::from_secs(60)), Fault::Hang] {
        fake.set_fault(DS, Some(fault.clone()));
        let started = std::time::Instant::now();
        let err = list(&client, None, None).await.expect_err("timeout");
        assert!(
            matches!(err, SdkError::TimeoutError(_)),
            "{fault:?}: {err:?}"
        );
        // Coarse, for a loaded CI machine: the 0.3 s timeout, not the fault, ended the call.
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[tokio::test]
async fn next_token_loop_repeats_the_same_token() {
    let (fake, server) = start().await;
    for i in 0..30 {
        fake.add_job(DS, FakeJob::new(format!("j{i}"), "COMPLETED", 1.0e9));
    }
    fake.set_fault(DS, Some(Fault::NextTokenLoop));
    let client = client(&server);
    let first = list(&client, Some(10), None).await.expect("page");
    let token = first.next_token().expect("token").to_owned();
    for _ in 0..3 {
        let again = list(&client, Some(10), Some(&token)).await.expect("page");
        assert_eq!(again.next_token(), Some(token.as_str()));
        assert_eq!(ids(&again), ids(&first));
    }
    // Even a garbage token is accepted while looping.
    assert!(list(&client, Some(10), Some("garbage")).await.is_ok());
}

#[tokio::test]
async fn oversized_body_has_exact_length_and_still_parses() {
    let (fake, server) = start().await;
    fake.add_job(
        DS,
        FakeJob::new("big", "COMPLETED", 1.0e9).ended(1.0e9 + 5.0),
    );
    let size = 300_000;
    fake.set_fault(DS, Some(Fault::Oversized(size)));
    let response = raw(
        &server,
        "POST",
        "/",
        &json_headers(),
        br#"{"DatastoreId":"0123456789abcdef0123456789abcdef"}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get("content-length"),
        Some(&size.to_string())
    );
    assert_eq!(response.body.len(), size);
    let v: serde_json::Value = serde_json::from_slice(&response.body).expect("valid JSON");
    assert_eq!(v["ExportJobPropertiesList"][0]["JobId"], "big");

    let out = list(&client(&server), None, None)
        .await
        .expect("SDK parses padded body");
    assert_eq!(ids(&out), vec!["big"]);
}

#[tokio::test]
async fn filters_status_name_and_submit_window() {
    let (fake, server) = start().await;
    for i in 0..40u32 {
        let status = if i % 4 == 0 { "FAILED" } else { "COMPLETED" };
        let mut job = FakeJob::new(format!("j{i:02}"), status, 1000.0 + f64::from(i));
        if i % 8 == 0 {
            job = job.named("nightly");
        }
        fake.add_job(DS, job);
    }
    let client = client(&server);
    let collect = |out: ListFhirExportJobsOutput| {
        let mut v = ids(&out);
        v.sort();
        v
    };

    let out = client
        .list_fhir_export_jobs()
        .datastore_id(DS)
        .job_status(JobStatus::Failed)
        .max_results(500)
        .send()
        .await
        .expect("status filter");
    assert_eq!(collect(out).len(), 10);

    let out = client
        .list_fhir_export_jobs()
        .datastore_id(DS)
        .submitted_after(DateTime::from_secs_f64(1010.5))
        .submitted_before(DateTime::from_secs(1014))
        .send()
        .await
        .expect("time filter");
    assert_eq!(collect(out), vec!["j11", "j12", "j13"]);

    // Both bounds are exclusive: jobs submitted exactly at 1012 or 1015 are left out.
    let out = client
        .list_fhir_export_jobs()
        .datastore_id(DS)
        .submitted_after(DateTime::from_secs(1012))
        .submitted_before(DateTime::from_secs(1015))
        .send()
        .await
        .expect("exclusive bounds");
    assert_eq!(collect(out), vec!["j13", "j14"]);

    let out = client
        .list_fhir_export_jobs()
        .datastore_id(DS)
        .submitted_after(DateTime::from_secs(1030))
        .job_status(JobStatus::Failed)
        .job_name("nightly")
        .send()
        .await
        .expect("combined filter");
    assert_eq!(collect(out), vec!["j32"]);

    let recorded = fake.requests();
    assert_eq!(recorded[0].job_status.as_deref(), Some("FAILED"));
    assert_eq!(recorded[1].submitted_after, Some(1010.5));
    assert_eq!(recorded[2].submitted_after, Some(1012.0));
    assert_eq!(recorded[3].submitted_after, Some(1030.0));
}

#[tokio::test]
async fn filters_apply_before_paging() {
    let (fake, server) = start().await;
    for i in 0..50u32 {
        let status = if i % 2 == 0 { "FAILED" } else { "COMPLETED" };
        fake.add_job(
            DS,
            FakeJob::new(format!("j{i:02}"), status, 1000.0 + f64::from(i)),
        );
    }
    let client = client(&server);
    let mut token: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let out = client
            .list_fhir_export_jobs()
            .datastore_id(DS)
            .job_status(JobStatus::Failed)
            .max_results(10)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("page");
        assert!(out
            .export_job_properties_list()
            .iter()
            .all(|j| j.job_status() == &JobStatus::Failed));
        all.extend(ids(&out));
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(all.len(), 25);
    assert_eq!(fake.request_count(DS), 3);
}

#[tokio::test]
async fn unknown_status_string_arrives_as_unknown_variant() {
    let (fake, server) = start().await;
    fake.add_job(
        DS,
        FakeJob::new("old", "COMPLETED", 1.0e9).ended(1.0e9 + 1.0),
    );
    assert!(fake.set_job_status(DS, "old", "ARCHIVED", Some(1.0e9 + 2.0)));
    let out = list(&client(&server), None, None).await.expect("list");
    let job = &out.export_job_properties_list()[0];
    #[allow(deprecated)] // matching `Unknown` directly is exactly what this test is about
    let unknown = matches!(job.job_status(), JobStatus::Unknown(_));
    assert!(unknown, "{:?}", job.job_status());
    assert_eq!(job.job_status().as_str(), "ARCHIVED");
    assert_eq!(job.end_time().map(DateTime::as_secs_f64), Some(1.0e9 + 2.0));
}

#[tokio::test]
async fn each_client_region_is_recorded() {
    let (fake, server) = start().await;
    let other = "fedcba9876543210fedcba9876543210";
    fake.add_datastore(other);
    let eu = Client::from_conf(
        config(&server)
            .region(Region::new("eu-west-1"))
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    list(&client(&server), None, None).await.expect("us");
    eu.list_fhir_export_jobs()
        .datastore_id(other)
        .send()
        .await
        .expect("eu");
    let regions: HashMap<_, _> = fake
        .requests()
        .into_iter()
        .map(|r| (r.datastore_id.expect("id"), r.region.expect("region")))
        .collect();
    assert_eq!(regions[DS], "us-west-2");
    assert_eq!(regions[other], "eu-west-1");
    assert_eq!((fake.request_count(DS), fake.request_count(other)), (1, 1));
    fake.clear_requests();
    assert_eq!((fake.requests().len(), fake.request_count(DS)), (0, 0));
}

// ---- raw HTTP: what the SDK cannot be made to send ----

fn json_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", "HealthLake.ListFHIRExportJobs"),
        ("Authorization", SIGNED),
    ]
}

fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    json_headers()
        .into_iter()
        .filter(|(k, _)| *k != name)
        .collect()
}

fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut h = without(name);
    h.push((name, value));
    h
}

/// Request headers, body, expected status and expected error code of one raw case.
type RawCase = (
    Vec<(&'static str, &'static str)>,
    &'static [u8],
    u16,
    &'static str,
);

const BODY: &[u8] = br#"{"DatastoreId":"0123456789abcdef0123456789abcdef"}"#;

#[tokio::test]
async fn raw_signed_request_succeeds() {
    let (fake, server) = start().await;
    fake.add_job(DS, FakeJob::new("a", "COMPLETED", 1_705_314_600.5));
    let r = raw(&server, "POST", "/", &json_headers(), BODY).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/x-amz-json-1.0")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        v["ExportJobPropertiesList"][0]["SubmitTime"],
        1_705_314_600.5
    );
    assert!(v.get("NextToken").is_none(), "last page omits NextToken");
}

#[tokio::test]
async fn raw_auth_failures_are_403() {
    let (fake, server) = start().await;
    let r = raw(&server, "POST", "/", &without("Authorization"), BODY).await;
    assert_eq!(r.status, 403);
    assert!(r
        .error_type()
        .ends_with("#MissingAuthenticationTokenException"));
    assert_eq!(fake.requests()[0].region, None);

    let wrong_service = SIGNED.replace("/healthlake/", "/s3/");
    let wrong_service: &'static str = Box::leak(wrong_service.into_boxed_str());
    for header in [
        wrong_service,
        "Bearer token",
        "AWS4-HMAC-SHA256 Credential=x",
    ] {
        let r = raw(&server, "POST", "/", &with("Authorization", header), BODY).await;
        assert_eq!(r.status, 403, "{header}");
        assert!(
            r.error_type().ends_with("#InvalidSignatureException"),
            "{header}"
        );
    }
}

#[tokio::test]
async fn raw_protocol_errors() {
    let (_fake, server) = start().await;
    let cases: Vec<RawCase> = vec![
        (
            with("X-Amz-Target", "HealthLake.DeleteFHIRDatastore"),
            BODY,
            400,
            "UnknownOperationException",
        ),
        (
            with("X-Amz-Target", "Other.ListFHIRExportJobs"),
            BODY,
            400,
            "UnknownOperationException",
        ),
        (
            without("X-Amz-Target"),
            BODY,
            400,
            "UnknownOperationException",
        ),
        (
            with("Content-Type", "application/json"),
            BODY,
            400,
            "UnsupportedMediaTypeException",
        ),
        (
            without("Content-Type"),
            BODY,
            400,
            "UnsupportedMediaTypeException",
        ),
        (
            json_headers(),
            b"{\"DatastoreId\":",
            400,
            "SerializationException",
        ),
        (json_headers(), b"\xff\xfe", 400, "SerializationException"),
        (
            json_headers(),
            br#"{"DatastoreId":"x","SubmittedAfter":"2024-01-15T10:30:00Z"}"#,
            400,
            "SerializationException",
        ),
        (json_headers(), b"{}", 400, "ValidationException"),
        (json_headers(), b"", 400, "ValidationException"),
        (
            json_headers(),
            br#"{"DatastoreId":"0123456789abcdef0123456789abcdef0"}"#,
            400,
            "ValidationException",
        ),
    ];
    for (headers, body, status, code) in cases {
        let r = raw(&server, "POST", "/", &headers, body).await;
        assert_eq!(r.status, status, "{code} {headers:?}");
        assert!(
            r.error_type().ends_with(&format!("#{code}")),
            "{}",
            r.error_type()
        );
    }
    let r = raw(&server, "GET", "/", &json_headers(), b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").map(String::as_str), Some("POST"));
    assert!(r.error_type().contains('#'));
    let r = raw(&server, "POST", "/v1/jobs", &json_headers(), BODY).await;
    assert_eq!(r.status, 404);
    assert!(r.error_type().contains('#'));
}

#[tokio::test]
async fn raw_oversized_requests_get_413() {
    let (_fake, server) = start().await;
    // Declared length over the cap: rejected before the body is read.
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        4 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    assert_eq!(read_response(&mut stream).await.status, 413);

    // Chunked body without a length that grows past the cap.
    let stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head =
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..24 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                return; // the server stopped reading: expected
            }
        }
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut buf)).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 413"),
        "{:?}",
        String::from_utf8_lossy(&buf[..buf.len().min(80)])
    );
    writer.abort();
}

#[tokio::test]
async fn shutdown_closes_listener_and_hung_connections() {
    let (fake, server) = start().await;
    fake.set_fault(DS, Some(Fault::Hang));
    let addr = server.local_addr();
    let mut hung = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: HealthLake.ListFHIRExportJobs\r\nAuthorization: {SIGNED}\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    hung.write_all(request.as_bytes()).await.expect("write");
    hung.write_all(BODY).await.expect("write body");
    // The request is in; wait until the fake has seen it.
    eventually(Duration::from_secs(10), "the request recorded", || async {
        (fake.request_count(DS) == 1).then_some(())
    })
    .await;
    server.shutdown();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), hung.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "hung connection closed by shutdown");
    assert!(buf.is_empty(), "no response was written");
    // The abort is asynchronous: the port is released once the runtime drops the task.
    eventually(Duration::from_secs(10), "the listener closed", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn hostile_inputs_leave_the_server_serving() {
    const NEST: usize = 100_000;
    let (fake, server) = start().await;
    let nested = format!("{}{}", "[".repeat(NEST), "]".repeat(NEST));
    let huge_header = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe garbage \r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: \xff\xfe\r\nX-Amz-Target: \xff\r\nContent-Type: \xff\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {SIGNED}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: HealthLake.ListFHIRExportJobs\r\nContent-Length: {}\r\n\r\n{nested}",
            nested.len()
        )
        .into_bytes(),
        huge_header.into_bytes(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Da".to_vec(), // then hang up
    ];
    for input in inputs {
        let mut stream = TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        let _ = stream.write_all(&input).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut sink)).await;
    }
    let nested_status = fake
        .requests()
        .iter()
        .any(|r| r.target == LIST_FHIR_EXPORT_JOBS_TARGET);
    assert!(
        nested_status,
        "the deeply nested body was received and recorded"
    );
    assert!(list(&client(&server), None, None).await.is_ok());
}
