//! The HealthLake calls the exporter makes: job listings (export and import, one path), datastore
//! descriptions and listings. Each turns SDK output into our own types, every string bounded like a
//! label (see [`bound_label`]), a job's `Message` like a message
//! ([`MAX_MESSAGE_BYTES`](super::MAX_MESSAGE_BYTES)); every listing follows `NextToken` through one
//! pagination helper, paced by the client's request budget, and hands over its items page by page,
//! so that no caller has to hold a whole listing.

use std::collections::HashSet;
use std::future::Future;

use aws_sdk_healthlake::types::{ExportJobProperties, ImportJobProperties};
use aws_smithy_types::DateTime;

use super::classify::{bound_message, classify, Escaping};
use super::usage::api_usage;
use super::PacedClient;
use crate::model::{
    bound_label, DatastoreInfo, ErrorReason, ImportProgress, Job, JobKind, JobStatus, PollError,
};

/// HealthLake's largest page: fewer calls against a low per-account request quota.
pub const PAGE_SIZE: i32 = 500;

/// One page of a listing: its items and the token of the next page.
type Page<T> = (Vec<T>, Option<String>);

/// Follows `NextToken` to the end, each page paced by `client`'s request budget and handed to
/// `each_page` as it arrives. More than `max_pages` pages, or a token seen twice, ends the listing
/// as an error: a loop must not keep a poll (and the API quota) busy forever. The pages handed over
/// before an error are the caller's to discard.
async fn paginate<T, F, Fut>(
    client: &PacedClient,
    operation: &'static str,
    max_pages: usize,
    mut page: F,
    mut each_page: impl FnMut(Vec<T>),
) -> Result<(), PollError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, PollError>>,
{
    let mut next_token: Option<String> = None;
    let mut seen_tokens = HashSet::new();
    for _page in 0..max_pages {
        client.budget.acquire().await;
        let result = page(next_token.take()).await;
        api_usage().record(operation, &result);
        let (batch, token) = result?;
        each_page(batch);
        match token {
            Some(token) if !token.is_empty() => {
                if !seen_tokens.insert(token.clone()) {
                    return Err(PollError::new(
                        ErrorReason::ServerError,
                        format!("{operation} returned a NextToken it had already returned (pagination loop)"),
                    ));
                }
                next_token = Some(token);
            }
            _ => return Ok(()),
        }
    }
    Err(PollError::new(
        ErrorReason::ServerError,
        format!("{operation} did not finish within polling.max_pages ({max_pages}) pages"),
    ))
}

/// Which jobs a listing asks for: `ListFHIRExportJobs`' and `ListFHIRImportJobs`' filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFilter {
    /// Jobs submitted after this Unix time.
    pub submitted_after: Option<f64>,
    /// Jobs submitted before this Unix time.
    pub submitted_before: Option<f64>,
    /// Jobs in this status.
    pub status: Option<JobStatus>,
}

/// Lists the `kind` jobs of a datastore that `filter` selects, handing them to `each_page` a page
/// at a time; see `paginate` for paging and its limits.
pub async fn list_jobs(
    client: &PacedClient,
    kind: JobKind,
    datastore_id: &str,
    filter: &JobFilter,
    max_pages: usize,
    each_page: impl FnMut(Vec<Job>),
) -> Result<(), PollError> {
    // Whole seconds, one second wider on each side: the caller filters exactly, and no rounding
    // on the way may hide a job.
    let submitted_after = filter
        .submitted_after
        .map(|t| DateTime::from_secs(t.floor() as i64 - 1));
    let submitted_before = filter
        .submitted_before
        .map(|t| DateTime::from_secs(t.ceil() as i64 + 1));
    let status = filter
        .status
        .as_ref()
        .map(|s| aws_sdk_healthlake::types::JobStatus::from(s.as_str()));
    let status = &status;
    let sdk = &client.sdk;
    // The two operations have the same input and output shapes under other type names: one
    // request-and-convert path, spelled once, for both.
    macro_rules! page {
        ($request:expr, $next_token:expr, $list:ident, $progress:expr) => {{
            let output = $request
                .datastore_id(datastore_id)
                .max_results(PAGE_SIZE)
                .set_submitted_after(submitted_after)
                .set_submitted_before(submitted_before)
                .set_job_status(status.clone())
                .set_next_token($next_token)
                .send()
                .await
                .map_err(classify)?;
            let jobs = output.$list().iter().map(|p| {
                let job = Job {
                    id: bound_label(p.job_id()).into_owned(),
                    name: p.job_name().map(|name| bound_label(name).into_owned()),
                    status: JobStatus::parse(&bound_label(p.job_status().as_str())),
                    submitted: p.submit_time().as_secs_f64(),
                    ended: p.end_time().map(DateTime::as_secs_f64),
                    progress: $progress(p).map(Box::new),
                    message: None,
                };
                with_message(job, p.message())
            });
            Ok((jobs.collect(), output.next_token))
        }};
    }
    paginate(
        client,
        kind.operation(),
        max_pages,
        |next_token| async move {
            match kind {
                JobKind::Export => page!(
                    sdk.list_fhir_export_jobs(),
                    next_token,
                    export_job_properties_list,
                    |_: &ExportJobProperties| None
                ),
                JobKind::Import => page!(
                    sdk.list_fhir_import_jobs(),
                    next_token,
                    import_job_properties_list,
                    |p: &ImportJobProperties| p.job_progress_report().map(import_progress)
                ),
            }
        },
        each_page,
    )
    .await
}

/// `job` with HealthLake's `Message`, bounded and on one line, if the job has ended: what the
/// log line of a job seen finishing says. A running job's message is dropped (none is logged), so
/// a page keeps messages only where they may be needed.
fn with_message(mut job: Job, message: Option<&str>) -> Job {
    if !job.is_active() {
        job.message = message.map(|m| bound_message(m, Escaping::OneLine).into_boxed_str());
    }
    job
}

/// An import job's `JobProgressReport` in base units (MB → bytes).
fn import_progress(r: &aws_sdk_healthlake::types::JobProgressReport) -> ImportProgress {
    ImportProgress {
        files_scanned: r.total_number_of_scanned_files().unwrap_or(0) as f64,
        scanned_bytes: r.total_size_of_scanned_files_in_mb().unwrap_or(0.0) * 1_000_000.0,
        files_imported: r.total_number_of_imported_files().unwrap_or(0) as f64,
        resources_scanned: r.total_number_of_resources_scanned().unwrap_or(0) as f64,
        resources_imported: r.total_number_of_resources_imported().unwrap_or(0) as f64,
        resources_failed: r
            .total_number_of_resources_with_customer_error()
            .unwrap_or(0) as f64,
        files_failed: r
            .total_number_of_files_read_with_customer_error()
            .unwrap_or(0) as f64,
    }
}

/// A datastore as listed or described, every string bounded like a job's labels (a 3 MB name
/// must not become a 3 MB label and log line). The id is checked where it is used (discovery).
fn datastore_info(p: &aws_sdk_healthlake::types::DatastoreProperties) -> DatastoreInfo {
    let bounded = |value: &str| bound_label(value).into_owned();
    DatastoreInfo {
        id: bounded(p.datastore_id()),
        name: p.datastore_name().filter(|n| !n.is_empty()).map(bounded),
        status: bounded(p.datastore_status().as_str()),
        arn: bounded(p.datastore_arn()),
        fhir_version: bounded(p.datastore_type_version().as_str()),
    }
}

/// `DescribeFHIRDatastore`: the datastore's status, ARN and FHIR version.
pub async fn describe_datastore(
    client: &PacedClient,
    datastore_id: &str,
) -> Result<DatastoreInfo, PollError> {
    client.budget.acquire().await;
    let output = client
        .sdk
        .describe_fhir_datastore()
        .datastore_id(datastore_id)
        .send()
        .await
        .map_err(classify);
    api_usage().record("DescribeFHIRDatastore", &output);
    let output = output?;
    output
        .datastore_properties()
        .map(datastore_info)
        .ok_or_else(|| {
            PollError::new(
                ErrorReason::ServerError,
                "DescribeFHIRDatastore answered without DatastoreProperties",
            )
        })
}

/// `ListFHIRDatastores` (all pages, every status) whose name starts with `name_prefix`; the prefix
/// is applied here, as the API only filters by exact name. The caller filters by status, so that a
/// datastore it already polls stays while it is, say, UPDATING.
pub async fn list_datastores(
    client: &PacedClient,
    name_prefix: Option<&str>,
    max_pages: usize,
) -> Result<Vec<DatastoreInfo>, PollError> {
    let sdk = &client.sdk;
    let mut found = Vec::new();
    paginate(
        client,
        "ListFHIRDatastores",
        max_pages,
        |next_token| async move {
            let output = sdk
                .list_fhir_datastores()
                .max_results(PAGE_SIZE)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(classify)?;
            // The prefix is matched against the whole name, before it is bounded.
            let found = output
                .datastore_properties_list()
                .iter()
                .filter(|p| {
                    name_prefix.is_none_or(|prefix| {
                        p.datastore_name().is_some_and(|n| n.starts_with(prefix))
                    })
                })
                .map(datastore_info);
            Ok((found.collect(), output.next_token))
        },
        |page| found.extend(page),
    )
    .await?;
    Ok(found)
}
