//! The only module that speaks the AWS SDK: building HealthLake clients and calling HealthLake.
//!
//! It turns configured targets into SDK clients (one per distinct region, endpoint and role, all on
//! one shared HTTP connection pool and one credentials chain), paces requests per account and
//! region (`budget`), follows `NextToken` to the end (`list`), and turns SDK results into our own
//! types or a `PollError` with a short, stable `reason` (`classify`). `sqs` holds the event
//! consumer's SQS calls, built on the same HTTP client and credentials chain. `probe` and `sts`
//! hold the preflight's calls (one cheap request per thing a configuration needs, and who the
//! credentials belong to).

mod budget;
mod classify;
mod list;
pub mod probe;
pub mod sqs;
pub mod sts;
mod target;
mod usage;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_healthlake::config::retry::RetryConfig;
use aws_sdk_healthlake::config::timeout::TimeoutConfig;
use aws_sdk_healthlake::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use budget::RequestBudget;
pub use classify::MAX_MESSAGE_BYTES;
pub use list::{describe_datastore, list_datastores, list_jobs, JobFilter, PAGE_SIZE};
pub use target::AwsTarget;
pub use usage::{api_usage, ApiUsage, OPERATIONS, RESULTS};

pub(crate) use target::{check_endpoint_url, check_region, check_role_arn, has_user_info};

use classify::{ResponseSizeLimit, MAX_RESPONSE_BYTES};

/// How long opening a connection may take, for every client this module builds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The AssumeRole session name of HealthLake clients (the SQS client has its own).
pub(crate) const SESSION_NAME: &str = "healthlake-exporter";

/// What can stop the clients from being built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no AWS region for {user}: set `region` in [aws] or on the entry, or set AWS_REGION")]
    NoRegion {
        /// "datastore ID" or "discovery\[N\]".
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
    by_target: HashMap<AwsTarget, PacedClient>,
    /// The shared HTTP client, credentials chain and retry settings the clients were built from
    /// (`None` until a client needed it); the SQS client of `[events]` is built from it too.
    base: Option<SdkConfig>,
    /// The plan's region (for building `base` later).
    region: Option<String>,
    /// What the clients were built with: a reload with other values builds them anew.
    settings: SdkSettings,
}

/// A datastore's way to HealthLake: its SDK client, paced by the request budget of its account and
/// region (every call takes a budget slot first). Which one a datastore uses is its [`AwsTarget`].
#[derive(Clone, Debug)]
pub struct PacedClient {
    pub sdk: Client,
    pub budget: Arc<RequestBudget>,
}

/// What the clients are built for: every target in use, named for error messages, and the
/// settings of `[polling]` that shape the SDK's behaviour. Built from a `Config` by the config
/// module (`impl From<&Config>`), so this module never reads the configuration itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSettings {
    /// Each target with who uses it: "datastore ID" or "discovery\[N\]".
    pub users: Vec<(AwsTarget, String)>,
    /// The region every configured datastore names, when they all name one: the SDK's region
    /// chain (and its IMDS lookup) is skipped then.
    pub region: Option<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_requests_per_second: f64,
}

/// The part of [`ClientSettings`] (and [`ClientOptions`]) the SDK clients are built with: when it
/// changes, a reload builds every client anew.
#[derive(Clone, Debug, PartialEq)]
struct SdkSettings {
    timeout: Duration,
    max_attempts: u32,
    max_requests_per_second: f64,
}

impl SdkSettings {
    fn of(settings: &ClientSettings, options: &ClientOptions) -> SdkSettings {
        SdkSettings {
            timeout: settings.timeout,
            max_attempts: options.max_attempts.unwrap_or(settings.max_attempts),
            max_requests_per_second: settings.max_requests_per_second,
        }
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
    /// Builds a client for every target the settings use (a `&Config` gives them). Only
    /// AssumeRole providers are set up here; no network call is made until the first poll.
    pub async fn build(
        settings: impl Into<ClientSettings>,
        options: &ClientOptions,
    ) -> Result<Clients, ClientError> {
        Clients::rebuild(settings, options, None).await
    }

    /// Like `build`, but keeps the clients (and their cached credentials) of `previous` for the
    /// targets still in use, when the settings they were built with have not changed.
    pub(crate) async fn rebuild(
        settings: impl Into<ClientSettings>,
        options: &ClientOptions,
        previous: Option<&Clients>,
    ) -> Result<Clients, ClientError> {
        let settings = settings.into();
        let sdk = SdkSettings::of(&settings, options);
        let previous = previous.filter(|p| p.settings == sdk);
        let mut base: Option<SdkConfig> = previous.and_then(|p| p.base.clone());
        let mut budgets: HashMap<(String, String), Arc<RequestBudget>> = HashMap::new();
        let mut by_target = HashMap::new();
        for (target, user) in &settings.users {
            if by_target.contains_key(target) {
                continue;
            }
            if let Some(kept) = previous.and_then(|p| p.by_target.get(target)) {
                let key = budget_key(target, kept.sdk.config().region());
                budgets.insert(key, Arc::clone(&kept.budget));
                by_target.insert(target.clone(), kept.clone());
                continue;
            }
            let base = match base {
                Some(ref base) => base,
                None => {
                    base.insert(base_sdk_config(settings.region.as_deref(), &sdk, options).await)
                }
            };
            let region = region_of(target, base, user)?;
            let mut builder = aws_sdk_healthlake::config::Builder::from(base)
                .region(region.clone())
                .interceptor(ResponseSizeLimit {
                    max_bytes: MAX_RESPONSE_BYTES,
                });
            if let Some(url) = &target.endpoint_url {
                builder = builder.endpoint_url(url);
            }
            if let Some(role_arn) = &target.role_arn {
                let role = role_credentials(role_arn, SESSION_NAME, region.clone(), base).await;
                builder = builder.credentials_provider(role);
            }
            let budget = budgets
                .entry(budget_key(target, Some(&region)))
                .or_insert_with(|| Arc::new(RequestBudget::per_second(sdk.max_requests_per_second)))
                .clone();
            let client = Client::from_conf(builder.build());
            by_target.insert(
                target.clone(),
                PacedClient {
                    sdk: client,
                    budget,
                },
            );
        }
        Ok(Clients {
            by_target,
            base,
            region: settings.region.clone(),
            settings: sdk,
        })
    }

    /// The base SDK configuration (shared HTTP client and credentials chain), built now if no
    /// HealthLake client needed it yet (a shard that owns no datastore).
    pub async fn base_config(&self, options: &ClientOptions) -> SdkConfig {
        match &self.base {
            Some(base) => base.clone(),
            None => base_sdk_config(self.region.as_deref(), &self.settings, options).await,
        }
    }

    pub fn for_target(&self, target: &AwsTarget) -> Option<&PacedClient> {
        self.by_target.get(target)
    }
}

/// The region a client for `target` calls: its own, or the base configuration's (the SDK's region
/// chain). `user` names who needs it in the error ("datastore ID", "discovery[N]", "[events] ...").
fn region_of(target: &AwsTarget, base: &SdkConfig, user: &str) -> Result<Region, ClientError> {
    target
        .region
        .clone()
        .map(Region::new)
        .or_else(|| base.region().cloned())
        .ok_or_else(|| ClientError::NoRegion {
            user: user.to_owned(),
        })
}

/// The credentials of `role_arn`, assumed on top of `base`'s chain through STS in `region`: how
/// every client with a `role_arn` signs (and what the preflight asks STS about).
pub(crate) async fn role_credentials(
    role_arn: &str,
    session_name: &str,
    region: Region,
    base: &SdkConfig,
) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(
        aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name(session_name)
            .region(region)
            .configure(base)
            .build()
            .await,
    )
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
    region: Option<&str>,
    settings: &SdkSettings,
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
    if let Some(region) = region {
        // Every datastore names its region: skip the region chain (and its IMDS lookup).
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(credentials) = &options.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    loader.load().await
}
