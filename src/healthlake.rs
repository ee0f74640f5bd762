//! The only module that speaks the AWS SDK: building HealthLake clients and listing export jobs.
//!
//! It turns configured targets into SDK clients (one per distinct region, endpoint and role, all on
//! one shared HTTP connection pool and one credentials chain), follows `NextToken` to the end, and
//! turns SDK results into our own `Job`s or a `PollError` with a short, stable `reason`.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_healthlake::config::http::HttpResponse;
use aws_sdk_healthlake::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_healthlake::config::retry::RetryConfig;
use aws_sdk_healthlake::config::timeout::TimeoutConfig;
use aws_sdk_healthlake::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_healthlake::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_healthlake::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::DateTime;

use crate::config::{AwsTarget, Config};
use crate::job::{ImportProgress, Job, JobKind, JobStatus};

/// HealthLake's largest page: fewer calls against a low per-account request quota.
pub const PAGE_SIZE: i32 = 500;
/// A page of 500 jobs is a few hundred KiB; anything past this is not a HealthLake answer.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SESSION_NAME: &str = "healthlake-exporter";

/// Why a poll failed: the `reason` label of `healthlake_poll_errors_total`. The set is closed so
/// that every reason can be exported at 0 from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorReason {
    Throttled,
    AccessDenied,
    NotFound,
    Validation,
    ServerError,
    Timeout,
    Network,
    Credentials,
    Other,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 9] = [
        ErrorReason::Throttled,
        ErrorReason::AccessDenied,
        ErrorReason::NotFound,
        ErrorReason::Validation,
        ErrorReason::ServerError,
        ErrorReason::Timeout,
        ErrorReason::Network,
        ErrorReason::Credentials,
        ErrorReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Throttled => "throttled",
            ErrorReason::AccessDenied => "access_denied",
            ErrorReason::NotFound => "not_found",
            ErrorReason::Validation => "validation",
            ErrorReason::ServerError => "server_error",
            ErrorReason::Timeout => "timeout",
            ErrorReason::Network => "network",
            ErrorReason::Credentials => "credentials",
            ErrorReason::Other => "other",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed poll: the classified reason and a one-line message for logs (never credentials).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct PollError {
    pub reason: ErrorReason,
    pub message: String,
}

impl PollError {
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        PollError {
            reason,
            message: message.into(),
        }
    }
}

/// What can stop the clients from being built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no AWS region for {user}: set `region` in [aws] or on the entry, or set AWS_REGION")]
    NoRegion {
        /// "datastore ID" or "discovery[N]".
        user: String,
    },
}

/// Options that the daemon leaves at their defaults and the demo and tests set.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Use these credentials instead of the default chain (the demo's static keys, tests').
    pub credentials: Option<SharedCredentialsProvider>,
    /// Overrides `polling.max_attempts` (tests use 1 to see each fault at once).
    pub max_attempts: Option<u32>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "** redacted **"),
            )
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// One SDK client per distinct target, all sharing one HTTP client and one base credentials chain;
/// one request budget per account and region.
pub struct Clients {
    by_target: HashMap<AwsTarget, Target>,
    /// What the clients were built with: a reload with other values builds them anew.
    settings: ClientSettings,
}

/// A datastore's way to HealthLake: its SDK client and the request budget of its account and region.
#[derive(Clone, Debug)]
pub struct Target {
    pub client: Client,
    pub budget: Arc<RequestBudget>,
}

#[derive(Clone, Debug, PartialEq)]
struct ClientSettings {
    timeout: Duration,
    max_attempts: u32,
    max_requests_per_second: f64,
}

impl ClientSettings {
    fn of(config: &Config, options: &ClientOptions) -> ClientSettings {
        ClientSettings {
            timeout: config.polling.timeout,
            max_attempts: options.max_attempts.unwrap_or(config.polling.max_attempts),
            max_requests_per_second: config.polling.max_requests_per_second,
        }
    }
}

/// The exporter's own use of the HealthLake API, for `healthlake_api_requests_total` and
/// `healthlake_api_budget_wait_seconds_total`: users share the quota with their own tools and
/// should see what the exporter spends of it. Process-wide (like a process's CPU counters): every
/// client and budget of the process adds to the one [`api_usage`].
#[derive(Debug, Default)]
pub struct ApiUsage {
    /// Calls by operation and result ("success" or an [`ErrorReason`]).
    requests: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// Seconds spent waiting for a request budget slot, as f64 bits.
    wait_seconds: std::sync::atomic::AtomicU64,
    /// Bumped on every change: lets the metrics cache reuse what it encoded.
    version: std::sync::atomic::AtomicU64,
}

/// Every operation the exporter calls, in the order `healthlake_api_requests_total` lists them.
pub const OPERATIONS: [&str; 4] = [
    "ListFHIRExportJobs",
    "ListFHIRImportJobs",
    "DescribeFHIRDatastore",
    "ListFHIRDatastores",
];

impl ApiUsage {
    /// Notes one call of `operation` and how it ended.
    pub fn record<T>(&self, operation: &'static str, result: &Result<T, PollError>) {
        let result = match result {
            Ok(_) => "success",
            Err(error) => error.reason.as_str(),
        };
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((operation, result))
            .or_insert(0) += 1;
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    fn waited(&self, seconds: f64) {
        let mut current = self.wait_seconds.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + seconds).to_bits();
            match self.wait_seconds.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `operation` that ended with `result` ("success" or a reason) so far.
    pub fn requests(&self, operation: &str, result: &str) -> u64 {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|((o, r), _)| *o == operation && *r == result)
            .map_or(0, |(_, n)| *n)
    }

    /// Seconds spent waiting for request budget slots so far.
    pub fn wait_seconds(&self) -> f64 {
        f64::from_bits(self.wait_seconds.load(Ordering::Relaxed))
    }

    /// Changes whenever a count changes.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
}

/// The process's API usage.
pub fn api_usage() -> &'static ApiUsage {
    static USAGE: std::sync::OnceLock<ApiUsage> = std::sync::OnceLock::new();
    USAGE.get_or_init(ApiUsage::default)
}

/// Paces the API requests of one account and region so that many datastores never throttle each
/// other: each request takes the next free slot, `1 / rate` seconds after the previous one.
#[derive(Debug)]
pub struct RequestBudget {
    spacing: Duration,
    next_slot: Mutex<Option<Instant>>,
}

impl RequestBudget {
    pub fn per_second(rate: f64) -> RequestBudget {
        RequestBudget {
            spacing: Duration::from_secs_f64(1.0 / rate),
            next_slot: Mutex::new(None),
        }
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.spacing);
            slot
        };
        let wait = slot.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            api_usage().waited(wait.as_secs_f64());
        }
        tokio::time::sleep_until(slot.into()).await;
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("targets", &self.by_target.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Clients {
    /// Builds a client for every target the config uses. Only AssumeRole providers are set up
    /// here; no network call is made until the first poll.
    pub async fn build(config: &Config, options: &ClientOptions) -> Result<Clients, ClientError> {
        Clients::rebuild(config, options, None).await
    }

    /// Like `build`, but keeps the clients (and their cached credentials) of `previous` for the
    /// targets still in use, when the settings they were built with have not changed.
    pub async fn rebuild(
        config: &Config,
        options: &ClientOptions,
        previous: Option<&Clients>,
    ) -> Result<Clients, ClientError> {
        let settings = ClientSettings::of(config, options);
        let previous = previous.filter(|p| p.settings == settings);
        let mut base: Option<SdkConfig> = None;
        let mut budgets: HashMap<(String, String), Arc<RequestBudget>> = HashMap::new();
        let mut by_target = HashMap::new();
        let users = config
            .datastores
            .iter()
            .map(|d| (&d.target, format!("datastore {}", d.id)))
            .chain(
                config
                    .discovery
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (&d.target, format!("discovery[{i}]"))),
            );
        for (target, user) in users {
            if by_target.contains_key(target) {
                continue;
            }
            if let Some(kept) = previous.and_then(|p| p.by_target.get(target)) {
                let key = budget_key(target, kept.client.config().region());
                budgets.insert(key, Arc::clone(&kept.budget));
                by_target.insert(target.clone(), kept.clone());
                continue;
            }
            let base = match base {
                Some(ref base) => base,
                None => base.insert(base_sdk_config(config, &settings, options).await),
            };
            let region = target
                .region
                .clone()
                .map(Region::new)
                .or_else(|| base.region().cloned())
                .ok_or_else(|| ClientError::NoRegion { user: user.clone() })?;
            let mut builder = aws_sdk_healthlake::config::Builder::from(base)
                .region(region.clone())
                .interceptor(ResponseSizeLimit {
                    max_bytes: MAX_RESPONSE_BYTES,
                });
            if let Some(url) = &target.endpoint_url {
                builder = builder.endpoint_url(url);
            }
            if let Some(role_arn) = &target.role_arn {
                let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
                    .session_name(SESSION_NAME)
                    .region(region.clone())
                    .configure(base)
                    .build()
                    .await;
                builder = builder.credentials_provider(provider);
            }
            let budget = budgets
                .entry(budget_key(target, Some(&region)))
                .or_insert_with(|| {
                    Arc::new(RequestBudget::per_second(settings.max_requests_per_second))
                })
                .clone();
            let client = Client::from_conf(builder.build());
            by_target.insert(target.clone(), Target { client, budget });
        }
        Ok(Clients {
            by_target,
            settings,
        })
    }

    pub fn for_target(&self, target: &AwsTarget) -> Option<&Target> {
        self.by_target.get(target)
    }
}

/// HealthLake's quota is per account and region: the account is the role's, or the base identity's.
fn budget_key(target: &AwsTarget, region: Option<&Region>) -> (String, String) {
    let account = target
        .role_arn
        .as_deref()
        .and_then(|arn| arn.split(':').nth(4))
        .unwrap_or("")
        .to_owned();
    (region.map(|r| r.to_string()).unwrap_or_default(), account)
}

async fn base_sdk_config(
    config: &Config,
    settings: &ClientSettings,
    options: &ClientOptions,
) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    // Each attempt gets a share of the poll's budget, so a hung connection leaves room to retry.
    let attempt_timeout = (settings.timeout / 2).max(Duration::from_secs(1));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(attempt_timeout)
                .operation_timeout(settings.timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts));
    let region_everywhere = config.datastores.iter().all(|d| d.target.region.is_some());
    if let Some(region) = config
        .datastores
        .first()
        .and_then(|d| d.target.region.clone())
    {
        if region_everywhere {
            // Every datastore names its region: skip the region chain (and its IMDS lookup).
            loader = loader.region(Region::new(region));
        }
    }
    if let Some(credentials) = &options.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    loader.load().await
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

/// Lists the export or import jobs of a datastore that `filter` selects, following `NextToken`
/// to the end, each page paced by the target's request budget. More than `max_pages` pages, or a
/// token seen twice, ends the poll as an error: a loop must not keep a poll (and the API quota)
/// busy forever.
pub async fn list_jobs(
    target: &Target,
    kind: JobKind,
    datastore_id: &str,
    filter: &JobFilter,
    max_pages: usize,
) -> Result<Vec<Job>, PollError> {
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
    let operation = kind.operation();
    let mut jobs = Vec::new();
    let mut next_token: Option<String> = None;
    let mut seen_tokens = HashSet::new();
    for _page in 0..max_pages {
        target.budget.acquire().await;
        let page_token = match kind {
            JobKind::Export => {
                let output = target
                    .client
                    .list_fhir_export_jobs()
                    .datastore_id(datastore_id)
                    .max_results(PAGE_SIZE)
                    .set_submitted_after(submitted_after)
                    .set_submitted_before(submitted_before)
                    .set_job_status(status.clone())
                    .set_next_token(next_token.take())
                    .send()
                    .await
                    .map_err(classify);
                api_usage().record(operation, &output);
                let output = output?;
                jobs.extend(output.export_job_properties_list().iter().map(|p| Job {
                    id: p.job_id().to_owned(),
                    name: p.job_name().map(str::to_owned),
                    status: JobStatus::parse(p.job_status().as_str()),
                    submitted: p.submit_time().as_secs_f64(),
                    ended: p.end_time().map(|t| t.as_secs_f64()),
                    progress: None,
                }));
                output.next_token
            }
            JobKind::Import => {
                let output = target
                    .client
                    .list_fhir_import_jobs()
                    .datastore_id(datastore_id)
                    .max_results(PAGE_SIZE)
                    .set_submitted_after(submitted_after)
                    .set_submitted_before(submitted_before)
                    .set_job_status(status.clone())
                    .set_next_token(next_token.take())
                    .send()
                    .await
                    .map_err(classify);
                api_usage().record(operation, &output);
                let output = output?;
                jobs.extend(output.import_job_properties_list().iter().map(|p| Job {
                    id: p.job_id().to_owned(),
                    name: p.job_name().map(str::to_owned),
                    status: JobStatus::parse(p.job_status().as_str()),
                    submitted: p.submit_time().as_secs_f64(),
                    ended: p.end_time().map(|t| t.as_secs_f64()),
                    progress: p.job_progress_report().map(|r| {
                        Box::new(ImportProgress {
                            files_scanned: r.total_number_of_scanned_files().unwrap_or(0) as f64,
                            scanned_bytes: r.total_size_of_scanned_files_in_mb().unwrap_or(0.0)
                                * 1_000_000.0,
                            files_imported: r.total_number_of_imported_files().unwrap_or(0) as f64,
                            resources_scanned: r.total_number_of_resources_scanned().unwrap_or(0)
                                as f64,
                            resources_imported: r.total_number_of_resources_imported().unwrap_or(0)
                                as f64,
                            resources_failed: r
                                .total_number_of_resources_with_customer_error()
                                .unwrap_or(0) as f64,
                            files_failed: r
                                .total_number_of_files_read_with_customer_error()
                                .unwrap_or(0) as f64,
                        })
                    }),
                }));
                output.next_token
            }
        };
        match page_token {
            Some(token) if !token.is_empty() => {
                if !seen_tokens.insert(token.clone()) {
                    return Err(PollError::new(
                        ErrorReason::ServerError,
                        format!("{operation} returned a NextToken it had already returned (pagination loop)"),
                    ));
                }
                next_token = Some(token);
            }
            _ => return Ok(jobs),
        }
    }
    Err(PollError::new(
        ErrorReason::ServerError,
        format!("{operation} did not finish within polling.max_pages ({max_pages}) pages"),
    ))
}

/// A datastore as `DescribeFHIRDatastore` or `ListFHIRDatastores` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct DatastoreInfo {
    pub id: String,
    pub name: Option<String>,
    /// As HealthLake spells it (a newer API's value is kept as is).
    pub status: String,
    pub arn: String,
    pub fhir_version: String,
}

impl DatastoreInfo {
    fn from_sdk(p: &aws_sdk_healthlake::types::DatastoreProperties) -> DatastoreInfo {
        DatastoreInfo {
            id: p.datastore_id().to_owned(),
            name: p.datastore_name().map(str::to_owned),
            status: p.datastore_status().as_str().to_owned(),
            arn: p.datastore_arn().to_owned(),
            fhir_version: p.datastore_type_version().as_str().to_owned(),
        }
    }
}

/// `DescribeFHIRDatastore`: the datastore's status, ARN and FHIR version.
pub async fn describe_datastore(
    target: &Target,
    datastore_id: &str,
) -> Result<DatastoreInfo, PollError> {
    target.budget.acquire().await;
    let output = target
        .client
        .describe_fhir_datastore()
        .datastore_id(datastore_id)
        .send()
        .await
        .map_err(classify);
    api_usage().record("DescribeFHIRDatastore", &output);
    let output = output?;
    output
        .datastore_properties()
        .map(DatastoreInfo::from_sdk)
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
    target: &Target,
    name_prefix: Option<&str>,
    max_pages: usize,
) -> Result<Vec<DatastoreInfo>, PollError> {
    let mut found = Vec::new();
    let mut next_token: Option<String> = None;
    let mut seen_tokens = HashSet::new();
    for _page in 0..max_pages {
        target.budget.acquire().await;
        let output = target
            .client
            .list_fhir_datastores()
            .max_results(PAGE_SIZE)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(classify);
        api_usage().record("ListFHIRDatastores", &output);
        let output = output?;
        found.extend(
            output
                .datastore_properties_list()
                .iter()
                .map(DatastoreInfo::from_sdk)
                .filter(|d| {
                    name_prefix.is_none_or(|prefix| {
                        d.name.as_deref().is_some_and(|n| n.starts_with(prefix))
                    })
                }),
        );
        match output.next_token {
            Some(token) if !token.is_empty() => {
                if !seen_tokens.insert(token.clone()) {
                    return Err(PollError::new(
                        ErrorReason::ServerError,
                        "ListFHIRDatastores returned a NextToken it had already returned (pagination loop)",
                    ));
                }
                next_token = Some(token);
            }
            _ => return Ok(found),
        }
    }
    Err(PollError::new(
        ErrorReason::ServerError,
        format!("ListFHIRDatastores did not finish within polling.max_pages ({max_pages}) pages"),
    ))
}

/// Caps the size of a response body before the SDK reads it into memory.
#[derive(Debug)]
struct ResponseSizeLimit {
    max_bytes: usize,
}

/// A response declared larger than `MAX_RESPONSE_BYTES`.
#[derive(Debug, thiserror::Error)]
#[error("the response is larger than {max_bytes} bytes")]
struct ResponseTooLarge {
    max_bytes: usize,
}

impl Intercept for ResponseSizeLimit {
    fn name(&self) -> &'static str {
        "ResponseSizeLimit"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn StdError + Send + Sync>> {
        let response = context.response_mut();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_bytes as u64) {
            return Err(Box::new(ResponseTooLarge {
                max_bytes: self.max_bytes,
            }));
        }
        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, self.max_bytes));
        Ok(())
    }
}

/// Sorts an SDK failure into one of our reasons, with a message fit for a log line.
fn classify<E>(error: SdkError<E, HttpResponse>) -> PollError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    if find_source::<ResponseTooLarge>(&error).is_some()
        || find_source::<http_body_util::LengthLimitError>(&error).is_some()
    {
        return PollError::new(
            ErrorReason::ServerError,
            format!("oversized response: larger than {MAX_RESPONSE_BYTES} bytes"),
        );
    }
    if let Some(credentials) = find_source::<CredentialsError>(&error) {
        return PollError::new(
            ErrorReason::Credentials,
            format!("could not load AWS credentials: {}", one_line(credentials)),
        );
    }
    match &error {
        SdkError::TimeoutError(_) => PollError::new(ErrorReason::Timeout, "the request timed out"),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => PollError::new(
            ErrorReason::Timeout,
            format!("timed out: {}", one_line(&error)),
        ),
        SdkError::DispatchFailure(failure) if failure.is_user() => PollError::new(
            ErrorReason::Other,
            format!("request failed: {}", one_line(&error)),
        ),
        SdkError::DispatchFailure(_) => PollError::new(
            ErrorReason::Network,
            format!("could not reach HealthLake: {}", one_line(&error)),
        ),
        SdkError::ResponseError(_) => PollError::new(
            ErrorReason::ServerError,
            format!("malformed response from HealthLake: {}", one_line(&error)),
        ),
        SdkError::ServiceError(service) if service.raw().status().is_success() => {
            // A 2xx answer whose body could not be read as the model says: a malformed response.
            PollError::new(
                ErrorReason::ServerError,
                format!("malformed response from HealthLake: {}", one_line(&error)),
            )
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let inner = service.err();
            let code = inner.code().unwrap_or("");
            let message = inner.message().unwrap_or("no message");
            // Every operation's modelled errors carry their shape name as the code.
            let reason = reason_for_code(code, status);
            let code = if code.is_empty() {
                "no error code"
            } else {
                code
            };
            PollError::new(reason, format!("HTTP {status} {code}: {message}"))
        }
        _ => PollError::new(ErrorReason::Other, one_line(&error)),
    }
}

/// Error codes the model does not list but AWS's front door returns.
fn reason_for_code(code: &str, status: u16) -> ErrorReason {
    match code {
        "ExpiredTokenException"
        | "ExpiredToken"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignatureException" => ErrorReason::Credentials,
        "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            ErrorReason::Throttled
        }
        "AccessDeniedException" => ErrorReason::AccessDenied,
        "ResourceNotFoundException" => ErrorReason::NotFound,
        "ValidationException" => ErrorReason::Validation,
        "InternalServerException" => ErrorReason::ServerError,
        "ServiceUnavailableException" | "InternalFailure" | "ServiceUnavailable" => {
            ErrorReason::ServerError
        }
        _ => match status {
            429 => ErrorReason::Throttled,
            403 => ErrorReason::AccessDenied,
            404 => ErrorReason::NotFound,
            500..=599 => ErrorReason::ServerError,
            _ => ErrorReason::Other,
        },
    }
}

fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The error and its causes on one line, as `a: b: c`, without repeats.
fn one_line(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmodelled_codes_and_statuses_get_the_right_reason() {
        assert_eq!(
            reason_for_code("ExpiredTokenException", 400),
            ErrorReason::Credentials
        );
        assert_eq!(
            reason_for_code("UnrecognizedClientException", 403),
            ErrorReason::Credentials
        );
        assert_eq!(
            reason_for_code("TooManyRequestsException", 400),
            ErrorReason::Throttled
        );
        assert_eq!(
            reason_for_code("SomethingNew", 503),
            ErrorReason::ServerError
        );
        assert_eq!(reason_for_code("SomethingNew", 429), ErrorReason::Throttled);
        assert_eq!(reason_for_code("SomethingNew", 400), ErrorReason::Other);
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let labels: HashSet<_> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), ErrorReason::ALL.len());
    }
}
