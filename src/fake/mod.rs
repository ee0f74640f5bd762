//! In-process fake of the Amazon HealthLake control plane (awsJson 1.0 over HTTP/1.1 on loopback).
//!
//! Exists so tests, `--demo` mode and benchmarks can drive the real `aws-sdk-healthlake` client
//! (via `endpoint_url`) against a server whose jobs, faults and request log are fully scriptable.
//! Only `ListFHIRExportJobs` is implemented; every other operation answers `UnknownOperationException`.
//!
//! Layout: `store` holds jobs, faults and the request log (pure, unit tested), `wire` knows the
//! protocol (auth scope, JSON shapes, error bodies), `server` is the hyper plumbing and
//! `scenario` scripts the demo.

pub mod scenario;
mod server;
mod store;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use store::{DEFAULT_MAX_RESULTS, MAX_MAX_RESULTS, MAX_RECORDED_REQUESTS};
pub use wire::MAX_REQUEST_BODY_BYTES;

use store::Store;

/// Handle to the fake service state. Cheap to clone; all clones share the same store.
///
/// The state lives behind a `std::sync::Mutex` that is only held for short, synchronous sections
/// (never across an `.await`), so the methods below can be called from sync or async code.
#[derive(Clone, Default)]
pub struct FakeHealthLake {
    store: Arc<Mutex<Store>>,
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

    /// Registers an (empty) datastore. Existing datastores keep their jobs.
    ///
    /// Like the real service, requests are rejected with `ValidationException` when the id is
    /// longer than 32 characters, so such a datastore is unreachable over the wire.
    pub fn add_datastore(&self, datastore_id: &str) {
        self.lock().add_datastore(datastore_id);
    }

    /// Removes a datastore and its jobs; further requests for it get `ResourceNotFoundException`.
    /// Faults set for the id are kept until cleared with [`FakeHealthLake::set_fault`].
    pub fn remove_datastore(&self, datastore_id: &str) {
        self.lock().remove_datastore(datastore_id);
    }

    /// Ids of all datastores, sorted.
    pub fn datastore_ids(&self) -> Vec<String> {
        self.lock().datastore_ids()
    }

    /// Adds a job, creating the datastore if missing. A job with the same id is replaced.
    pub fn add_job(&self, datastore_id: &str, job: FakeJob) {
        self.lock().add_job(datastore_id, job);
    }

    /// Removes a job; returns whether it existed.
    pub fn remove_job(&self, datastore_id: &str, job_id: &str) -> bool {
        self.lock().remove_job(datastore_id, job_id)
    }

    /// Sets a job's status (any string, also ones the SDK does not know) and its end time
    /// (`None` clears it). Returns `false` when the datastore or job does not exist.
    pub fn set_job_status(
        &self,
        datastore_id: &str,
        job_id: &str,
        status: &str,
        end_time: Option<f64>,
    ) -> bool {
        self.lock()
            .set_job_status(datastore_id, job_id, status, end_time)
    }

    /// Jobs of a datastore ordered by submit time, then id (empty if the datastore is unknown).
    /// This is *not* the order in which the wire API returns them.
    pub fn jobs(&self, datastore_id: &str) -> Vec<FakeJob> {
        self.lock().jobs(datastore_id)
    }

    /// Injects (or with `None` clears) a fault for every `ListFHIRExportJobs` call naming this
    /// datastore. The fault persists until cleared and applies even if the datastore does not exist.
    pub fn set_fault(&self, datastore_id: &str, fault: Option<Fault>) {
        self.lock().set_fault(datastore_id, fault);
    }

    /// Requests received so far (oldest first), including rejected ones. At most
    /// [`MAX_RECORDED_REQUESTS`] are kept; older entries are discarded.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests()
    }

    /// Number of `ListFHIRExportJobs` calls naming this datastore since the last
    /// [`FakeHealthLake::clear_requests`] (not limited by [`MAX_RECORDED_REQUESTS`]).
    pub fn request_count(&self, datastore_id: &str) -> usize {
        self.lock().request_count(datastore_id)
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

/// A fault injected for one datastore. Error faults are answered after auth/protocol checks and
/// before any validation of the request parameters.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 `ThrottlingException`.
    Throttling,
    /// 500 `InternalServerException`.
    InternalError,
    /// 403 `AccessDeniedException`.
    AccessDenied,
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
    NextTokenLoop,
    /// 200 with a valid JSON body padded (an extra `Padding` string member) to exactly this many
    /// bytes; if the natural body is already larger it is sent unpadded. Streamed, not buffered.
    Oversized(usize),
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

/// Protocol constant: the only operation the fake implements.
pub const LIST_FHIR_EXPORT_JOBS_TARGET: &str = "HealthLake.ListFHIRExportJobs";
