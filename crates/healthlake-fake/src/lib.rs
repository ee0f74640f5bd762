//! In-process fake of the Amazon HealthLake control plane (awsJson 1.0 over HTTP/1.1 on loopback).
//!
//! Exists so tests, `--demo` mode and benchmarks can drive the real `aws-sdk-healthlake` client
//! (via `endpoint_url`) against a server whose datastores, jobs, faults and request log are fully
//! scriptable. The operations the exporter calls are implemented as the API model
//! (`healthlake-2017-07-01`) defines them: `ListFHIRExportJobs`, `ListFHIRImportJobs`,
//! `DescribeFHIRDatastore` and `ListFHIRDatastores`. Every other operation answers
//! `UnknownOperationException`, so a client calling something unexpected fails loudly.
//!
//! Faults are scriptable per datastore (all operations, or one operation only) and, for the
//! account-level `ListFHIRDatastores`, per fake, so tests can prove that a failure of one call
//! stays isolated from the others.
//!
//! A crate of its own so that the exporter ships none of it: the exporter uses it as a
//! dev-dependency and, for `--demo`, behind its default `demo` feature. Export and import jobs
//! share one code path here too (`store::Job`), as in the exporter.
//!
//! The same port also serves a fake Amazon SQS (`X-Amz-Target: AmazonSQS.*`, SigV4 scoped to
//! `sqs`) for the exporter's event consumer; with event queues set, every job or datastore status
//! change made through [`FakeHealthLake`] queues a HealthLake-shaped EventBridge event. And a
//! fake STS (`GetCallerIdentity`, `AssumeRole`: form-encoded awsQuery requests, SigV4 scoped to
//! `sts`), so that credentials, roles and the principal they name can be tested too.
//!
//! Layout: `store` holds datastores, jobs, faults and the request log (pure, unit tested), `wire`
//! knows the protocol (auth scope, JSON shapes, error bodies), `server` is the hyper plumbing,
//! `fault` what an injected fault does to a call of either protocol, and `scenario` scripts the
//! demo; `main.rs` is the standalone fake the scale benchmark starts; `sqs` holds the queues,
//! `sqs_wire` speaks SQS's protocol and `events` builds the EventBridge events, `sts` is the fake STS; `wait` waits on a
//! condition with a deadline, for the tests of both crates.

pub mod events;
mod fault;
pub mod scenario;
mod server;
pub mod sqs;
mod sqs_wire;
mod store;
pub mod sts;
pub mod wait;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use store::{
    sort_in_listing_order, DEFAULT_MAX_RESULTS, MAX_MAX_RESULTS, MAX_RECORDED_REQUESTS,
};
pub use wire::MAX_REQUEST_BODY_BYTES;

use events::EventJobKind;
use sqs::SqsShared;
pub use sqs::{FakeMessage, FakeQueue, QueueStats, SqsOperation};
use store::Store;
use sts::StsShared;
pub use sts::{StsAction, DEFAULT_CALLER_ARN};

/// Handle to the fake service state. Cheap to clone; all clones share the same store.
///
/// The state lives behind a `std::sync::Mutex` that is only held for short, synchronous sections
/// (never across an `.await`), so the methods below can be called from sync or async code.
#[derive(Clone, Default)]
pub struct FakeHealthLake {
    store: Arc<Mutex<Store>>,
    /// The fake SQS on the same port (see `sqs`).
    sqs: Arc<SqsShared>,
    /// The fake STS on the same port (see `sts`).
    sts: Arc<StsShared>,
}

impl FakeHealthLake {
    /// Creates an empty fake with no datastores.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `addr` (use `127.0.0.1:0` for an ephemeral port) and serves in a spawned tokio task.
    ///
    /// The server keeps running until the returned [`FakeServer`] is shut down or dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<FakeServer> {
        server::bind(self.clone(), addr).await
    }

    /// Registers an (empty) datastore with [`FakeDatastore::new`]`(datastore_id)` properties:
    /// named after its id, `ACTIVE`, created at [`DEFAULT_DATASTORE_CREATED_AT`], visible in every
    /// region. An existing datastore is left unchanged (properties and jobs).
    ///
    /// Like the real service, requests are rejected with `ValidationException` when the id is
    /// longer than 32 characters, so such a datastore is unreachable over the wire.
    pub fn add_datastore(&self, datastore_id: &str) {
        let before = self.datastore_status_for_events(datastore_id);
        self.lock().add_datastore(datastore_id);
        self.datastore_changed(datastore_id, before);
    }

    /// Creates the datastore or replaces its properties; its jobs are kept.
    pub fn set_datastore(&self, datastore_id: &str, datastore: FakeDatastore) {
        let before = self.datastore_status_for_events(datastore_id);
        self.lock().set_datastore(datastore_id, datastore);
        self.datastore_changed(datastore_id, before);
    }

    /// Properties of a datastore, `None` if it does not exist.
    pub fn datastore(&self, datastore_id: &str) -> Option<FakeDatastore> {
        self.lock().datastore(datastore_id)
    }

    /// Sets a datastore's status (any string, also ones the SDK does not know, e.g. `ARCHIVED`).
    /// Returns `false` when the datastore does not exist.
    pub fn set_datastore_status(&self, datastore_id: &str, status: &str) -> bool {
        let before = self.datastore_status_for_events(datastore_id);
        let found = self
            .lock()
            .update_datastore(datastore_id, |d| status.clone_into(&mut d.status));
        self.datastore_changed(datastore_id, before);
        found
    }

    /// Renames a datastore. Returns `false` when the datastore does not exist.
    pub fn set_datastore_name(&self, datastore_id: &str, name: &str) -> bool {
        self.lock()
            .update_datastore(datastore_id, |d| name.clone_into(&mut d.name))
    }

    /// Removes a datastore and its jobs; further requests for it get `ResourceNotFoundException`.
    /// Faults set for the id are kept until cleared with [`FakeHealthLake::set_fault`] /
    /// [`FakeHealthLake::set_fault_for`].
    pub fn remove_datastore(&self, datastore_id: &str) {
        let before = self.datastore_status_for_events(datastore_id);
        self.lock().remove_datastore(datastore_id);
        self.datastore_changed(datastore_id, before);
    }

    /// Ids of all datastores, sorted.
    pub fn datastore_ids(&self) -> Vec<String> {
        self.lock().datastore_ids()
    }

    /// Adds an export job, creating the datastore if missing. A job with the same id is replaced.
    pub fn add_job(&self, datastore_id: &str, job: FakeJob) {
        self.add_any(EventJobKind::Export, datastore_id, job);
    }

    /// Removes an export job; returns whether it existed.
    pub fn remove_job(&self, datastore_id: &str, job_id: &str) -> bool {
        self.lock().remove::<FakeJob>(datastore_id, job_id)
    }

    /// Sets an export job's status (any string, also ones the SDK does not know) and its end time
    /// (`None` clears it). Returns `false` when the datastore or job does not exist.
    pub fn set_job_status(
        &self,
        datastore_id: &str,
        job_id: &str,
        status: &str,
        end_time: Option<f64>,
    ) -> bool {
        self.set_status_any::<FakeJob>(EventJobKind::Export, datastore_id, job_id, status, end_time)
    }

    /// Export jobs of a datastore ordered by submit time, then id (empty if the datastore is
    /// unknown). This is *not* the order in which the wire API returns them.
    pub fn jobs(&self, datastore_id: &str) -> Vec<FakeJob> {
        self.lock().all(datastore_id)
    }

    /// Adds an import job, creating the datastore if missing. A job with the same id is replaced.
    pub fn add_import_job(&self, datastore_id: &str, job: FakeImportJob) {
        self.add_any(EventJobKind::Import, datastore_id, job);
    }

    /// Removes an import job; returns whether it existed.
    pub fn remove_import_job(&self, datastore_id: &str, job_id: &str) -> bool {
        self.lock().remove::<FakeImportJob>(datastore_id, job_id)
    }

    /// Sets an import job's status (any string) and end time (`None` clears it). Returns `false`
    /// when the datastore or job does not exist.
    pub fn set_import_job_status(
        &self,
        datastore_id: &str,
        job_id: &str,
        status: &str,
        end_time: Option<f64>,
    ) -> bool {
        self.set_status_any::<FakeImportJob>(
            EventJobKind::Import,
            datastore_id,
            job_id,
            status,
            end_time,
        )
    }

    /// Adds (or replaces) a job of either kind and publishes the change as an event.
    fn add_any<J: store::Job>(&self, kind: EventJobKind, datastore_id: &str, job: J) {
        let job_id = job.id().to_owned();
        let before = self.job_status_for_events(kind, datastore_id, &job_id);
        self.lock().add(datastore_id, job);
        self.job_changed(kind, datastore_id, &job_id, before.map(|b| b.0));
    }

    /// Sets a job's status and end time, whatever its kind, and publishes the change as an event.
    fn set_status_any<J: store::Job>(
        &self,
        kind: EventJobKind,
        datastore_id: &str,
        job_id: &str,
        status: &str,
        end_time: Option<f64>,
    ) -> bool {
        let before = self.job_status_for_events(kind, datastore_id, job_id);
        let found = self.lock().update(datastore_id, job_id, |job: &mut J| {
            job.set_status(status, end_time)
        });
        self.job_changed(kind, datastore_id, job_id, before.map(|b| b.0));
        found
    }

    /// Replaces an import job's `JobProgressReport`. Returns `false` when the datastore or job
    /// does not exist.
    pub fn set_import_progress(
        &self,
        datastore_id: &str,
        job_id: &str,
        progress: FakeProgress,
    ) -> bool {
        self.lock()
            .update(datastore_id, job_id, |job: &mut FakeImportJob| {
                job.progress = Some(progress)
            })
    }

    /// Import jobs of a datastore ordered by submit time, then id (empty if the datastore is
    /// unknown). This is *not* the order in which the wire API returns them.
    pub fn import_jobs(&self, datastore_id: &str) -> Vec<FakeImportJob> {
        self.lock().all(datastore_id)
    }

    /// Injects (or with `None` clears) a fault for every operation naming this datastore
    /// (`ListFHIRExportJobs`, `ListFHIRImportJobs`, `DescribeFHIRDatastore`). The fault persists
    /// until cleared and applies even if the datastore does not exist. A fault set for one
    /// operation with [`FakeHealthLake::set_fault_for`] takes precedence over this one.
    pub fn set_fault(&self, datastore_id: &str, fault: Option<Fault>) {
        self.lock().set_fault(datastore_id, fault);
    }

    /// Injects (or with `None` clears) a fault for one operation on one datastore, e.g.
    /// `set_fault_for("DescribeFHIRDatastore", ds, Some(Fault::Throttling))` while export listings
    /// keep working. `target` is the operation name, with or without the `HealthLake.` prefix.
    /// Returns `false` (and changes nothing) unless `target` is one of the per-datastore
    /// operations above; `ListFHIRDatastores` has its own
    /// [`FakeHealthLake::set_list_datastores_fault`].
    pub fn set_fault_for(&self, target: &str, datastore_id: &str, fault: Option<Fault>) -> bool {
        self.lock().set_fault_for(target, datastore_id, fault)
    }

    /// Injects (or with `None` clears) a fault for every `ListFHIRDatastores` call (an
    /// account-level operation: it names no datastore, so per-datastore faults never apply).
    pub fn set_list_datastores_fault(&self, fault: Option<Fault>) {
        self.lock().set_list_datastores_fault(fault);
    }

    /// Requests received so far (oldest first), including rejected ones. At most
    /// [`MAX_RECORDED_REQUESTS`] are kept; older entries are discarded.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests()
    }

    /// Number of `ListFHIRExportJobs` calls naming this datastore since the last
    /// [`FakeHealthLake::clear_requests`] (not limited by [`MAX_RECORDED_REQUESTS`]).
    /// Same as `request_count_for("ListFHIRExportJobs", datastore_id)`.
    pub fn request_count(&self, datastore_id: &str) -> usize {
        self.request_count_for(LIST_FHIR_EXPORT_JOBS_TARGET, datastore_id)
    }

    /// Number of calls of one implemented operation (name with or without the `HealthLake.`
    /// prefix) naming this datastore since the last [`FakeHealthLake::clear_requests`], rejected
    /// and faulted ones included. `ListFHIRDatastores` names no datastore: count it with `""`.
    /// Unknown operations count 0.
    pub fn request_count_for(&self, target: &str, datastore_id: &str) -> usize {
        self.lock().request_count(target, datastore_id)
    }

    /// Forgets recorded requests and resets the per-datastore counters.
    pub fn clear_requests(&self) {
        self.lock().clear_requests();
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store inconsistent in a way that
        // matters for a fake, so poisoning is ignored rather than propagated.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake server. Stops (listener and all open connections) on [`FakeServer::shutdown`]
/// or when dropped.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for the SDK's `endpoint_url`, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and aborts all connections (including hung ones).
    ///
    /// The abort is asynchronous: the port is released once the runtime drops the task.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // The accept loop owns the JoinSet of connection tasks, so aborting it aborts them too.
        self.task.abort();
    }
}

/// One export job as stored by the fake.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeJob {
    /// Job id (real ones are 32 lowercase hex characters).
    pub id: String,
    /// Optional job name.
    pub name: Option<String>,
    /// Status string, served verbatim (unknown values such as `ARCHIVED` are allowed).
    pub status: String,
    /// Submit time, epoch seconds.
    pub submit_time: f64,
    /// End time, epoch seconds.
    pub end_time: Option<f64>,
    /// Optional message (e.g. why a job failed).
    pub message: Option<String>,
}

impl FakeJob {
    /// A job without name, end time or message.
    pub fn new(id: impl Into<String>, status: &str, submit_time: f64) -> Self {
        Self {
            id: id.into(),
            name: None,
            status: status.to_owned(),
            submit_time,
            end_time: None,
            message: None,
        }
    }
}

/// The builder methods export and import jobs share (one definition for both kinds).
macro_rules! job_builders {
    ($t:ty) => {
        impl $t {
            /// Sets the job name.
            pub fn named(mut self, name: impl Into<String>) -> Self {
                self.name = Some(name.into());
                self
            }

            /// Sets the end time (epoch seconds).
            pub fn ended(mut self, end_time: f64) -> Self {
                self.end_time = Some(end_time);
                self
            }

            /// Sets the message.
            pub fn with_message(mut self, message: impl Into<String>) -> Self {
                self.message = Some(message.into());
                self
            }
        }
    };
}
job_builders!(FakeJob);
job_builders!(FakeImportJob);

/// `CreatedAt` of datastores registered with [`FakeHealthLake::add_datastore`] (2023-11-14).
pub const DEFAULT_DATASTORE_CREATED_AT: f64 = 1_700_000_000.0;

/// Properties of one datastore as served by `DescribeFHIRDatastore` and `ListFHIRDatastores`.
///
/// The ARN (`arn:aws:healthlake:<region>:123456789012:datastore/fhir/<id>`) and the endpoint
/// (`https://healthlake.<region>.amazonaws.com/datastore/<id>/r4/`) are derived from the id and
/// the region, so they cannot disagree with them.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeDatastore {
    /// `DatastoreName`.
    pub name: String,
    /// `DatastoreStatus`, served verbatim (unknown values are allowed).
    pub status: String,
    /// `CreatedAt`, epoch seconds.
    pub created_at: f64,
    /// The datastore's region. `None`: it is visible from every region and its ARN/endpoint use
    /// the region the request was signed for. `Some(r)`: like on AWS, requests signed for any
    /// other region do not see it (404 / not listed).
    pub region: Option<String>,
    /// `DatastoreTypeVersion` (the model's only value is `R4`).
    pub type_version: String,
    /// `ErrorCause.ErrorMessage` (e.g. for `CREATE_FAILED`); omitted when `None`.
    pub error_message: Option<String>,
    /// `ErrorCause.ErrorCategory` (`RETRYABLE_ERROR` / `NON_RETRYABLE_ERROR`); only sent together
    /// with `error_message`.
    pub error_category: Option<String>,
}

impl FakeDatastore {
    /// An `ACTIVE` R4 datastore created at [`DEFAULT_DATASTORE_CREATED_AT`], in no fixed region.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: "ACTIVE".to_owned(),
            created_at: DEFAULT_DATASTORE_CREATED_AT,
            region: None,
            type_version: "R4".to_owned(),
            error_message: None,
            error_category: None,
        }
    }

    /// Sets the status.
    pub fn with_status(mut self, status: &str) -> Self {
        status.clone_into(&mut self.status);
        self
    }

    /// Sets the creation time (epoch seconds).
    pub fn created(mut self, created_at: f64) -> Self {
        self.created_at = created_at;
        self
    }

    /// Pins the datastore to a region.
    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets `ErrorCause` (message and category).
    pub fn with_error(mut self, message: impl Into<String>, category: &str) -> Self {
        self.error_message = Some(message.into());
        self.error_category = Some(category.to_owned());
        self
    }
}

/// `JobProgressReport` of an import job. The eight counters every import reports are plain
/// numbers; the non-FHIR and transformation counters (newer, only some jobs have them) are
/// omitted from the wire when `None`. Field names follow the SDK's getters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeProgress {
    /// `TotalNumberOfScannedFiles`.
    pub total_number_of_scanned_files: i64,
    /// `TotalSizeOfScannedFilesInMB`.
    pub total_size_of_scanned_files_in_mb: f64,
    /// `TotalNumberOfImportedFiles`.
    pub total_number_of_imported_files: i64,
    /// `TotalNumberOfResourcesScanned`.
    pub total_number_of_resources_scanned: i64,
    /// `TotalNumberOfResourcesImported`.
    pub total_number_of_resources_imported: i64,
    /// `TotalNumberOfResourcesWithCustomerError`.
    pub total_number_of_resources_with_customer_error: i64,
    /// `TotalNumberOfFilesReadWithCustomerError`.
    pub total_number_of_files_read_with_customer_error: i64,
    /// `Throughput` (transactions per second).
    pub throughput: f64,
    /// `TotalNumberOfScannedNonFhirFiles`.
    pub total_number_of_scanned_non_fhir_files: Option<i64>,
    /// `TotalSizeOfScannedNonFhirFilesInMB`.
    pub total_size_of_scanned_non_fhir_files_in_mb: Option<f64>,
    /// `TotalNumberOfImportedNonFhirFiles`.
    pub total_number_of_imported_non_fhir_files: Option<i64>,
    /// `TotalNumberOfNonFhirResourcesScanned`.
    pub total_number_of_non_fhir_resources_scanned: Option<i64>,
    /// `TotalNumberOfNonFhirResourcesImported`.
    pub total_number_of_non_fhir_resources_imported: Option<i64>,
    /// `TotalNumberOfNonFhirResourcesWithCustomerError`.
    pub total_number_of_non_fhir_resources_with_customer_error: Option<i64>,
    /// `TotalNumberOfNonFhirFilesReadWithCustomerError`.
    pub total_number_of_non_fhir_files_read_with_customer_error: Option<i64>,
    /// `TotalFilesConverted`.
    pub total_files_converted: Option<i64>,
    /// `TotalResourcesGenerated`.
    pub total_resources_generated: Option<i64>,
}

/// One import job as stored by the fake.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeImportJob {
    /// Job id (real ones are 32 lowercase hex characters).
    pub id: String,
    /// Optional job name.
    pub name: Option<String>,
    /// Status string, served verbatim (unknown values are allowed).
    pub status: String,
    /// Submit time, epoch seconds.
    pub submit_time: f64,
    /// End time, epoch seconds.
    pub end_time: Option<f64>,
    /// Optional message (e.g. why a job failed).
    pub message: Option<String>,
    /// `JobProgressReport`; omitted when `None` (e.g. a job still `SUBMITTED`).
    pub progress: Option<FakeProgress>,
    /// `InputDataConfig.S3Uri`; `None` serves
    /// `s3://healthlake-import-123456789012/<datastore>/<job>/`.
    pub input_s3_uri: Option<String>,
    /// `ValidationLevel` (`strict`, `structure-only`, `minimal`); omitted when `None`.
    pub validation_level: Option<String>,
}

impl FakeImportJob {
    /// A job without name, end time, message, progress or validation level.
    pub fn new(id: impl Into<String>, status: &str, submit_time: f64) -> Self {
        Self {
            id: id.into(),
            name: None,
            status: status.to_owned(),
            submit_time,
            end_time: None,
            message: None,
            progress: None,
            input_s3_uri: None,
            validation_level: None,
        }
    }

    /// Sets the progress report.
    pub fn with_progress(mut self, progress: FakeProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Sets the input S3 URI.
    pub fn with_input(mut self, s3_uri: impl Into<String>) -> Self {
        self.input_s3_uri = Some(s3_uri.into());
        self
    }

    /// Sets the validation level.
    pub fn with_validation_level(mut self, level: &str) -> Self {
        self.validation_level = Some(level.to_owned());
        self
    }
}

/// A fault injected for a datastore's operations (or for `ListFHIRDatastores`). Error faults are
/// answered after auth/protocol checks and the `DatastoreId` check, before any other validation
/// of the request parameters. They are sent even for operations whose model does not list that
/// error (e.g. `AccessDeniedException` for `DescribeFHIRDatastore`), as IAM and the front end do
/// on AWS; the SDK then surfaces them as unhandled errors carrying the code.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 `ThrottlingException`.
    Throttling,
    /// 500 `InternalServerException`.
    InternalError,
    /// 403 `AccessDeniedException`.
    AccessDenied,
    /// 403 `AccessDeniedException` (SQS: `AccessDenied`) whose message is this text, verbatim:
    /// what a hostile endpoint may say (control characters, a huge message).
    AccessDeniedWith(String),
    /// 404 `ResourceNotFoundException`.
    NotFound,
    /// 400 `ValidationException`.
    Validation,
    /// 400 `ExpiredTokenException`.
    ExpiredToken,
    /// 400 with a code the SDK has no variant for (`SomethingNewException`).
    UnknownError,
    /// Sleep, then answer normally.
    Delay(Duration),
    /// Never answer; the connection stays open until the client gives up or the server stops.
    Hang,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// Close the connection without writing a response.
    ConnectionReset,
    /// Always answer with the first page and the same `NextToken`, whatever token was sent.
    /// (No effect on `DescribeFHIRDatastore`, which does not page.)
    NextTokenLoop,
    /// 200 with a valid JSON body padded (an extra `Padding` string member) to exactly this many
    /// bytes; if the natural body is already larger it is sent unpadded. Streamed, not buffered.
    Oversized(usize),
    /// Answer normally, but every page of a job listing repeats its first job at its end, as a
    /// listing whose pages shifted under it (jobs submitted meanwhile) does. (No effect on
    /// operations that do not list jobs.)
    DuplicateJobs,
}

/// What the fake saw of one request (fields are best effort: absent when unparseable).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `X-Amz-Target` header value (empty when missing).
    pub target: String,
    /// `DatastoreId` from the body.
    pub datastore_id: Option<String>,
    /// Region from a well-formed SigV4 credential scope for service `healthlake`.
    pub region: Option<String>,
    /// `MaxResults` from the body.
    pub max_results: Option<i64>,
    /// `NextToken` from the body.
    pub next_token: Option<String>,
    /// `SubmittedAfter` from the body (epoch seconds).
    pub submitted_after: Option<f64>,
    /// `JobStatus` from the body.
    pub job_status: Option<String>,
}

/// `X-Amz-Target` of `ListFHIRExportJobs`.
pub const LIST_FHIR_EXPORT_JOBS_TARGET: &str = "HealthLake.ListFHIRExportJobs";
/// `X-Amz-Target` of `ListFHIRImportJobs`.
pub const LIST_FHIR_IMPORT_JOBS_TARGET: &str = "HealthLake.ListFHIRImportJobs";
/// `X-Amz-Target` of `DescribeFHIRDatastore`.
pub const DESCRIBE_FHIR_DATASTORE_TARGET: &str = "HealthLake.DescribeFHIRDatastore";
/// `X-Amz-Target` of `ListFHIRDatastores`.
pub const LIST_FHIR_DATASTORES_TARGET: &str = "HealthLake.ListFHIRDatastores";
