//! The TOML configuration: its schema, its defaults and its validation.
//!
//! The file is read and checked once, up front, so that every later module works with values that
//! are known to be good. Every error names the file, the key and (where TOML tells us) the line,
//! and says how to fix it: a typo must never pass silently and must never become a panic.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::shard::Shard;

/// Where the exporter listens when neither the file nor `--listen-address` says otherwise: 9469 is
/// free in Prometheus' default port allocations list, so it does not collide with other exporters.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9469";
/// Enough for several Prometheus replicas, probes and a person with curl; small enough that idle
/// connections cannot exhaust file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
const MAX_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_JOB_SERIES_LIMIT: usize = 100;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Half of HealthLake's ListFHIRExportJobs quota (10 per second per account and region), leaving
/// the rest to the team's own tools.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 5.0;
/// 200 pages of 500 jobs: far beyond any real export history, short of an endless token loop.
pub const DEFAULT_MAX_PAGES: usize = 200;
/// How often a poll lists a datastore's whole history instead of only its unsettled jobs.
pub const DEFAULT_FULL_RESYNC_INTERVAL: Duration = Duration::from_secs(3600);
/// How long a job that ended FAILED (or COMPLETED_WITH_ERRORS, CANCEL_FAILED) keeps its
/// end-timestamp series: the time its alert fires for.
pub const DEFAULT_ENDED_JOB_WINDOW: Duration = Duration::from_secs(3600);
/// Bounds of `polling.ended_job_window`: at least a minute (an alert needs a few evaluations), at
/// most a day (the series of every job that ended within it are kept in memory).
pub const MIN_ENDED_JOB_WINDOW: Duration = Duration::from_secs(60);
pub const MAX_ENDED_JOB_WINDOW: Duration = Duration::from_secs(86_400);
const MAX_MAX_ATTEMPTS: usize = 10;
const MAX_MAX_PAGES: usize = 100_000;
const MAX_CONCURRENCY: usize = 256;
const MAX_JOB_SERIES_LIMIT: usize = 10_000;

/// A configuration that has passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub polling: PollingConfig,
    /// The datastores listed in the file (discovered ones are added at run time).
    pub datastores: Vec<DatastoreConfig>,
    /// `[[discovery]]`: where to find more datastores with `ListFHIRDatastores`.
    pub discovery: Vec<DiscoveryConfig>,
}

/// Which job lists a datastore's polls cover (`jobs = ["export", "import"]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobKinds {
    pub export: bool,
    pub import: bool,
}

impl Default for JobKinds {
    /// Export jobs only: import polling needs `healthlake:ListFHIRImportJobs` and is opt-in.
    fn default() -> Self {
        JobKinds {
            export: true,
            import: false,
        }
    }
}

/// One `[[discovery]]` entry: datastores of one region (and role) found with `ListFHIRDatastores`.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveryConfig {
    pub target: AwsTarget,
    /// Only datastores whose name starts with this.
    pub name_prefix: Option<String>,
    /// Only datastores in this status (default ACTIVE).
    pub status: String,
    pub interval: Duration,
}

/// The DatastoreStatus values of the API model.
pub const DATASTORE_STATUSES: [&str; 7] = [
    "CREATING",
    "ACTIVE",
    "DELETING",
    "DELETED",
    "CREATE_FAILED",
    "UPDATING",
    "UPDATE_FAILED",
];
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(600);
pub const DEFAULT_DATASTORE_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub listen_address: SocketAddr,
    /// Connections held open at once; see `http.rs` for what happens at the cap.
    pub max_connections: usize,
    /// `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// `None`: no credentials asked for.
    pub basic_auth: Option<BasicAuthConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen_address: SocketAddr::from(([0, 0, 0, 0], 9469)),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
            basic_auth: None,
        }
    }
}

/// `[server.tls]`: paths already resolved against the config file's directory and checked to hold
/// a matching certificate and key (and CA certificates) when the config was validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by one of these CAs (except on the probe
    /// routes `/healthz` and `/readyz`).
    pub client_ca_file: Option<PathBuf>,
}

/// `[server.basic_auth]`: user name → bcrypt hash. `Debug` leaves the hashes out: a hash is not a
/// password, but it lets whoever reads it guess passwords offline.
#[derive(Clone, PartialEq)]
pub struct BasicAuthConfig {
    pub users: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for BasicAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuthConfig")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PollingConfig {
    /// Time between the starts of two polls of one datastore.
    pub interval: Duration,
    /// Bound on one datastore's whole poll, all pages and retries included.
    pub timeout: Duration,
    /// Datastores polled at once.
    pub concurrency: usize,
    /// Per datastore, how many of the most recently submitted jobs get a duration series.
    pub job_series_limit: usize,
    /// Attempts per API call, the first included (the SDK's standard retry with backoff and jitter).
    pub max_attempts: u32,
    /// API requests per second shared by all datastores of one account and region.
    pub max_requests_per_second: f64,
    /// A listing longer than this many pages ends the poll as an error.
    pub max_pages: usize,
    /// How often a datastore's whole history is listed; in between, only unsettled jobs are.
    pub full_resync_interval: Duration,
    /// How long a job that ended in an alerted status keeps its end-timestamp series.
    pub ended_job_window: Duration,
    /// The part of `datastores` this replica polls (`polling.shard`, overridden by `--shard`);
    /// see `shard.rs`. The default, "0/1", polls every datastore.
    pub shard: Shard,
    /// Job lists polled for every datastore that does not say otherwise.
    pub jobs: JobKinds,
    /// Poll `DescribeFHIRDatastore` for each datastore (off by default: it needs another IAM action).
    pub datastore_health: bool,
    /// How often `DescribeFHIRDatastore` is called per datastore.
    pub datastore_interval: Duration,
}

/// One datastore to watch.
#[derive(Clone, Debug, PartialEq)]
pub struct DatastoreConfig {
    pub id: String,
    /// The `datastore_name` label: the configured name, or the id.
    pub name: String,
    pub target: AwsTarget,
    pub jobs: JobKinds,
}

/// Where and as whom a datastore is reached. Datastores with equal targets share one SDK client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AwsTarget {
    /// `None`: the SDK's region chain (AWS_REGION, profile, IMDS) decides.
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub role_arn: Option<String>,
}

/// What can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}\n  \
         hint: pass --config PATH or set HEALTHLAKE_EXPORTER_CONFIG; config.example.toml shows every key"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: the file is not valid UTF-8 (first bad byte at offset {offset}); save it as UTF-8"
    )]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{location}: {message}")]
    Invalid {
        /// `file:line:column`, or just the file where TOML gives no position.
        location: String,
        message: String,
    },
}

impl ConfigError {
    fn at(path: &Path, source: &str, span: Option<Range<usize>>, message: String) -> Self {
        let mut location = path.display().to_string();
        let mut message = message;
        if let Some(span) = span {
            let (line, column) = line_and_column(source, span.start);
            let _ = write!(location, ":{line}:{column}");
            if let Some(text) = source.lines().nth(line - 1) {
                let _ = write!(message, "\n  {line} | {}", text.trim_end());
            }
        }
        ConfigError::Invalid { location, message }
    }
}

fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

// ---- the file as written (every key optional but `datastores`, unknown keys rejected) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    polling: RawPolling,
    #[serde(default)]
    aws: RawTarget,
    datastores: Option<Spanned<Vec<RawDatastore>>>,
    discovery: Option<Vec<RawDiscovery>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen_address: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    tls: Option<RawTls>,
    basic_auth: Option<RawBasicAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Spanned<String>,
    key_file: Spanned<String>,
    client_ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    users: Spanned<std::collections::BTreeMap<String, Spanned<String>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolling {
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    job_series_limit: Option<Spanned<i64>>,
    max_attempts: Option<Spanned<i64>>,
    max_requests_per_second: Option<Spanned<Number>>,
    max_pages: Option<Spanned<i64>>,
    full_resync_interval: Option<Spanned<String>>,
    ended_job_window: Option<Spanned<String>>,
    shard: Option<Spanned<String>>,
    jobs: Option<Spanned<Vec<String>>>,
    datastore_health: Option<bool>,
    datastore_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    region: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
    name_prefix: Option<Spanned<String>>,
    status: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

/// TOML has integers and floats; a rate may be written as either.
#[derive(Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Number {
    Integer(i64),
    Float(f64),
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    region: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatastore {
    id: Spanned<String>,
    name: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
    jobs: Option<Spanned<Vec<String>>>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::NotUtf8 {
            path: path.to_owned(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` only names the file in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = describe_toml_error(text, &e);
            ConfigError::at(path, text, e.span(), message)
        })?;
        Validator { path, text }.validate(raw)
    }

    /// Keeps only the datastores `polling.shard` owns (all of them for "0/1") and returns how many
    /// the file lists. Applied wherever a configuration is put to work (start and every reload),
    /// after any `--shard` override, so the rest of the exporter never sees another replica's
    /// datastores. The file itself must still list at least one datastore; a shard may own none.
    pub fn retain_shard(&mut self) -> usize {
        let configured = self.datastores.len();
        let shard = self.polling.shard;
        self.datastores.retain(|d| shard.owns(&d.id));
        configured
    }

    /// A one-screen summary for `--check-config`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let p = &self.polling;
        let _ = writeln!(out, "listen_address   {}", self.server.listen_address);
        let server = &self.server;
        let _ = writeln!(
            out,
            "server           max_connections {}, tls {}, basic_auth {}",
            server.max_connections,
            match &server.tls {
                None => "off".to_owned(),
                Some(t) if t.client_ca_file.is_some() => {
                    format!(
                        "on ({}, client certificates required)",
                        t.cert_file.display()
                    )
                }
                Some(t) => format!("on ({})", t.cert_file.display()),
            },
            match &server.basic_auth {
                None => "off".to_owned(),
                Some(a) => format!("{} user(s)", a.users.len()),
            }
        );
        let _ = writeln!(
            out,
            "polling          every {}, timeout {}, concurrency {}, job_series_limit {}",
            humantime::format_duration(p.interval),
            humantime::format_duration(p.timeout),
            p.concurrency,
            p.job_series_limit
        );
        let _ = writeln!(
            out,
            "aws requests     max_attempts {}, max_requests_per_second {} per account and region, max_pages {}",
            p.max_attempts, p.max_requests_per_second, p.max_pages
        );
        let kinds = |k: JobKinds| match (k.export, k.import) {
            (true, true) => "export, import",
            (false, true) => "import",
            _ => "export",
        };
        let _ = writeln!(
            out,
            "polls            jobs [{}], datastore_health {}{}",
            kinds(p.jobs),
            p.datastore_health,
            if p.datastore_health {
                format!(
                    " every {}",
                    humantime::format_duration(p.datastore_interval)
                )
            } else {
                String::new()
            }
        );
        for (i, d) in self.discovery.iter().enumerate() {
            let _ = writeln!(
                out,
                "discovery[{i}]     region={} status={} name_prefix={} every {}",
                d.target.region.as_deref().unwrap_or("(SDK default chain)"),
                d.status,
                d.name_prefix.as_deref().unwrap_or("(any)"),
                humantime::format_duration(d.interval)
            );
        }
        let _ = writeln!(out, "datastores       {}", self.datastores.len());
        let shard = p.shard;
        if !shard.is_all() {
            let owned = self.datastores.iter().filter(|d| shard.owns(&d.id)).count();
            let _ = writeln!(
                out,
                "shard            {shard}: {owned} of {} datastores{}",
                self.datastores.len(),
                if owned == 0 {
                    " (this replica would serve only its own health metrics)"
                } else {
                    ""
                }
            );
        }
        for ds in &self.datastores {
            let t = &ds.target;
            let _ = write!(out, "  {}  name={}", ds.id, ds.name);
            let _ = write!(
                out,
                "  region={}",
                t.region.as_deref().unwrap_or("(SDK default chain)")
            );
            if let Some(url) = &t.endpoint_url {
                let _ = write!(out, "  endpoint_url={url}");
            }
            if let Some(role) = &t.role_arn {
                let _ = write!(out, "  role_arn={role}");
            }
            if !shard.is_all() {
                let _ = write!(
                    out,
                    "  shard={}/{}",
                    crate::shard::owner(&ds.id, shard.count()),
                    shard.count()
                );
            }
            out.push('\n');
        }
        out
    }
}

/// serde's messages say what was wrong; add which key, taken from the line it points at.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().to_owned();
    let Some(span) = error.span() else {
        return message;
    };
    let (line, _) = line_and_column(text, span.start);
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match key {
        Some(key) if !message.contains(key) => format!("key `{key}`: {message}"),
        _ => message,
    }
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl AsRef<str>,
    ) -> ConfigError {
        ConfigError::at(
            self.path,
            self.text,
            span,
            format!("{key}: {}", message.as_ref()),
        )
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let listen_address = match raw.server.listen_address {
            None => DEFAULT_LISTEN_ADDRESS
                .parse()
                .expect("the default listen address parses"),
            Some(value) => parse_listen_address(value.get_ref())
                .map_err(|m| self.error(Some(value.span()), "server.listen_address", m))?,
        };

        let polling = PollingConfig {
            interval: self.duration(raw.polling.interval, "polling.interval", DEFAULT_INTERVAL)?,
            timeout: self.duration(raw.polling.timeout, "polling.timeout", DEFAULT_TIMEOUT)?,
            concurrency: self.count(
                raw.polling.concurrency,
                "polling.concurrency",
                DEFAULT_CONCURRENCY,
                1..=MAX_CONCURRENCY,
            )?,
            job_series_limit: self.count(
                raw.polling.job_series_limit,
                "polling.job_series_limit",
                DEFAULT_JOB_SERIES_LIMIT,
                0..=MAX_JOB_SERIES_LIMIT,
            )?,
            max_attempts: self.count(
                raw.polling.max_attempts,
                "polling.max_attempts",
                DEFAULT_MAX_ATTEMPTS as usize,
                1..=MAX_MAX_ATTEMPTS,
            )? as u32,
            max_requests_per_second: self.rate(
                raw.polling.max_requests_per_second,
                "polling.max_requests_per_second",
            )?,
            max_pages: self.count(
                raw.polling.max_pages,
                "polling.max_pages",
                DEFAULT_MAX_PAGES,
                1..=MAX_MAX_PAGES,
            )?,
            full_resync_interval: self.duration(
                raw.polling.full_resync_interval,
                "polling.full_resync_interval",
                DEFAULT_FULL_RESYNC_INTERVAL,
            )?,
            ended_job_window: self.bounded_duration(
                raw.polling.ended_job_window,
                "polling.ended_job_window",
                DEFAULT_ENDED_JOB_WINDOW,
                MIN_ENDED_JOB_WINDOW..=MAX_ENDED_JOB_WINDOW,
            )?,
            shard: self.shard(raw.polling.shard)?,
            jobs: match raw.polling.jobs {
                Some(kinds) => self.job_kinds(kinds, "polling.jobs")?,
                None => JobKinds::default(),
            },
            datastore_health: raw.polling.datastore_health.unwrap_or(false),
            datastore_interval: self.duration(
                raw.polling.datastore_interval,
                "polling.datastore_interval",
                DEFAULT_DATASTORE_INTERVAL,
            )?,
        };

        let defaults = self.target(&raw.aws, None, "aws")?;

        let mut discovery = Vec::new();
        for (index, entry) in raw.discovery.unwrap_or_default().into_iter().enumerate() {
            discovery.push(self.discovery(entry, &defaults, index)?);
        }
        let datastores = match raw.datastores {
            Some(datastores) if datastores.get_ref().is_empty() && discovery.is_empty() => {
                return Err(self.error(
                    Some(datastores.span()),
                    "datastores",
                    "the list is empty; add at least one [[datastores]] table with an `id`, or a [[discovery]] table",
                ));
            }
            Some(datastores) => datastores.into_inner(),
            None if discovery.is_empty() => {
                return Err(self.error(
                    None,
                    "datastores",
                    "no datastores configured; add at least one [[datastores]] table with an `id`, or a [[discovery]] table",
                ));
            }
            None => Vec::new(),
        };

        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(datastores.len());
        for (index, ds) in datastores.into_iter().enumerate() {
            let key = format!("datastores[{index}]");
            let id = ds.id.get_ref().clone();
            check_datastore_id(&id)
                .map_err(|m| self.error(Some(ds.id.span()), &format!("{key}.id"), m))?;
            if let Some(first) = seen.insert(id.clone(), ds.id.span().start) {
                let (line, _) = line_and_column(self.text, first);
                return Err(self.error(
                    Some(ds.id.span()),
                    &format!("{key}.id"),
                    format!("datastore id {id:?} is listed twice (first on line {line}); each datastore may appear once"),
                ));
            }
            let name = match ds.name {
                Some(name) if name.get_ref().trim().is_empty() => {
                    return Err(self.error(
                        Some(name.span()),
                        &format!("{key}.name"),
                        "must not be empty; leave it out to use the id as the name",
                    ))
                }
                Some(name) => name.into_inner(),
                None => id.clone(),
            };
            let own = RawTarget {
                region: ds.region,
                endpoint_url: ds.endpoint_url,
                role_arn: ds.role_arn,
            };
            let target = self.target(&own, Some(&defaults), &key)?;
            let jobs = match ds.jobs {
                Some(kinds) => self.job_kinds(kinds, &format!("{key}.jobs"))?,
                None => polling.jobs,
            };
            out.push(DatastoreConfig {
                id,
                name,
                target,
                jobs,
            });
        }

        Ok(Config {
            server: self.server(
                listen_address,
                raw.server.max_connections,
                raw.server.tls,
                raw.server.basic_auth,
            )?,
            polling,
            datastores: out,
            discovery,
        })
    }

    fn job_kinds(&self, value: Spanned<Vec<String>>, key: &str) -> Result<JobKinds, ConfigError> {
        let mut kinds = JobKinds {
            export: false,
            import: false,
        };
        for kind in value.get_ref() {
            match kind.as_str() {
                "export" => kinds.export = true,
                "import" => kinds.import = true,
                other => {
                    return Err(self.error(
                        Some(value.span()),
                        key,
                        format!("{other:?} is not a job kind; write [\"export\"], [\"import\"] or [\"export\", \"import\"]"),
                    ))
                }
            }
        }
        if !kinds.export && !kinds.import {
            return Err(self.error(
                Some(value.span()),
                key,
                "is empty; list at least one of \"export\" and \"import\"",
            ));
        }
        Ok(kinds)
    }

    fn discovery(
        &self,
        raw: RawDiscovery,
        defaults: &AwsTarget,
        index: usize,
    ) -> Result<DiscoveryConfig, ConfigError> {
        let key = format!("discovery[{index}]");
        let own = RawTarget {
            region: raw.region,
            endpoint_url: raw.endpoint_url,
            role_arn: raw.role_arn,
        };
        let target = self.target(&own, Some(defaults), &key)?;
        let name_prefix = match raw.name_prefix {
            Some(prefix) if prefix.get_ref().is_empty() => {
                return Err(self.error(
                    Some(prefix.span()),
                    &format!("{key}.name_prefix"),
                    "must not be empty; leave it out to discover every datastore",
                ))
            }
            Some(prefix) => Some(prefix.into_inner()),
            None => None,
        };
        let status = match raw.status {
            Some(status) if !DATASTORE_STATUSES.contains(&status.get_ref().as_str()) => {
                return Err(self.error(
                    Some(status.span()),
                    &format!("{key}.status"),
                    format!(
                        "{:?} is not a datastore status; use one of {}",
                        status.get_ref(),
                        DATASTORE_STATUSES.join(", ")
                    ),
                ))
            }
            Some(status) => status.into_inner(),
            None => "ACTIVE".to_owned(),
        };
        let interval = self.duration(
            raw.interval,
            &format!("{key}.interval"),
            DEFAULT_DISCOVERY_INTERVAL,
        )?;
        Ok(DiscoveryConfig {
            target,
            name_prefix,
            status,
            interval,
        })
    }

    fn duration(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let text = value.get_ref().trim();
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Err(self.error(
                Some(value.span()),
                key,
                format!("{text:?} is zero; use a positive duration such as \"60s\""),
            )),
            Ok(d) => Ok(d),
            Err(e) => Err(self.error(
                Some(value.span()),
                key,
                format!(
                    "{text:?} is not a duration ({e}); write it like \"30s\", \"5m\" or \"1h\""
                ),
            )),
        }
    }

    /// A duration within `range` (or `default` when absent).
    fn bounded_duration(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let span = value.as_ref().map(|v| v.span());
        let duration = self.duration(value, key, default)?;
        if range.contains(&duration) {
            return Ok(duration);
        }
        Err(self.error(
            span,
            key,
            format!(
                "{} is out of range; use a duration from {} to {}",
                humantime::format_duration(duration),
                humantime::format_duration(*range.start()),
                humantime::format_duration(*range.end())
            ),
        ))
    }

    fn count(
        &self,
        value: Option<Spanned<i64>>,
        key: &str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        usize::try_from(*value.get_ref())
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                self.error(
                    Some(value.span()),
                    key,
                    format!(
                        "{} is out of range; use a whole number from {} to {}",
                        value.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    fn shard(&self, value: Option<Spanned<String>>) -> Result<Shard, ConfigError> {
        let Some(value) = value else {
            return Ok(Shard::ALL);
        };
        value
            .get_ref()
            .parse()
            .map_err(|e: crate::shard::ShardError| {
                self.error(
                    Some(value.span()),
                    "polling.shard",
                    format!("{e}; or set it per replica with --shard / HEALTHLAKE_EXPORTER_SHARD"),
                )
            })
    }

    fn rate(&self, value: Option<Spanned<Number>>, key: &str) -> Result<f64, ConfigError> {
        let Some(value) = value else {
            return Ok(DEFAULT_MAX_REQUESTS_PER_SECOND);
        };
        let rate = match *value.get_ref() {
            Number::Integer(n) => n as f64,
            Number::Float(f) => f,
        };
        if rate.is_finite() && (0.01..=1000.0).contains(&rate) {
            Ok(rate)
        } else {
            Err(self.error(
                Some(value.span()),
                key,
                format!("{rate} is out of range; use a number of requests per second from 0.01 to 1000 (HealthLake allows 10 per account and region)"),
            ))
        }
    }

    /// The rest of `[server]`: the connection cap, TLS files (read and checked now, so that
    /// `--check-config` and a reload catch a wrong path or a key that does not match) and basic
    /// auth users.
    fn server(
        &self,
        listen_address: SocketAddr,
        max_connections: Option<Spanned<i64>>,
        tls: Option<RawTls>,
        basic_auth: Option<RawBasicAuth>,
    ) -> Result<ServerConfig, ConfigError> {
        let max_connections = self.count(
            max_connections,
            "server.max_connections",
            DEFAULT_MAX_CONNECTIONS,
            1..=MAX_MAX_CONNECTIONS,
        )?;
        let tls = match tls {
            None => None,
            Some(raw) => {
                let file = |value: &Spanned<String>, key: &str| {
                    self.file_path(value)
                        .map_err(|m| self.error(Some(value.span()), key, m))
                };
                let config = TlsConfig {
                    cert_file: file(&raw.cert_file, "server.tls.cert_file")?,
                    key_file: file(&raw.key_file, "server.tls.key_file")?,
                    client_ca_file: match &raw.client_ca_file {
                        Some(v) => Some(file(v, "server.tls.client_ca_file")?),
                        None => None,
                    },
                };
                if let Err(e) = crate::http::tls::check_files(&config) {
                    let span = match e.file_key() {
                        crate::http::tls::FileKey::Cert => raw.cert_file.span(),
                        crate::http::tls::FileKey::Key => raw.key_file.span(),
                        crate::http::tls::FileKey::ClientCa => raw
                            .client_ca_file
                            .as_ref()
                            .map_or(raw.cert_file.span(), Spanned::span),
                    };
                    return Err(ConfigError::at(
                        self.path,
                        self.text,
                        Some(span),
                        e.to_string(),
                    ));
                }
                Some(config)
            }
        };
        let basic_auth = match basic_auth {
            None => None,
            Some(raw) => {
                if raw.users.get_ref().is_empty() {
                    return Err(self.error(
                        Some(raw.users.span()),
                        "server.basic_auth.users",
                        "no users; add one like `alice = \"$2y$10$...\"`, or remove [server.basic_auth] to serve without credentials",
                    ));
                }
                let mut users = std::collections::BTreeMap::new();
                for (name, hash) in raw.users.into_inner() {
                    let key = format!("server.basic_auth.users.{name}");
                    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                        return Err(self.error(
                            Some(hash.span()),
                            &key,
                            "a user name must be non-empty and contain no `:` or control characters (HTTP basic auth cannot carry them)",
                        ));
                    }
                    if let Err(problem) = crate::http::auth::check_bcrypt_hash(hash.get_ref()) {
                        // No source excerpt: the value may be a password pasted by mistake.
                        let (line, column) = line_and_column(self.text, hash.span().start);
                        return Err(ConfigError::Invalid {
                            location: format!("{}:{line}:{column}", self.path.display()),
                            message: format!(
                                "{key}: {problem}; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` (the value is not shown here, in case it is a password)"
                            ),
                        });
                    }
                    users.insert(name, hash.into_inner());
                }
                Some(BasicAuthConfig { users })
            }
        };
        Ok(ServerConfig {
            listen_address,
            max_connections,
            tls,
            basic_auth,
        })
    }

    /// A path from the file, relative ones taken from the config file's directory (as Prometheus'
    /// web config does), so that the config works wherever the exporter is started from.
    fn file_path(&self, value: &Spanned<String>) -> Result<PathBuf, String> {
        let text = value.get_ref();
        if text.trim().is_empty() {
            return Err("must not be empty; give the path of a PEM file".to_owned());
        }
        let path = Path::new(text);
        Ok(match self.path.parent() {
            Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_owned(),
        })
    }

    /// A datastore's target: its own keys, falling back to `[aws]`.
    fn target(
        &self,
        own: &RawTarget,
        defaults: Option<&AwsTarget>,
        section: &str,
    ) -> Result<AwsTarget, ConfigError> {
        let region = match &own.region {
            Some(v) => Some(
                check_region(v.get_ref())
                    .map(|()| v.get_ref().clone())
                    .map_err(|m| self.error(Some(v.span()), &format!("{section}.region"), m))?,
            ),
            None => defaults.and_then(|d| d.region.clone()),
        };
        let endpoint_url = match &own.endpoint_url {
            Some(v) => Some(
                check_endpoint_url(v.get_ref())
                    .map(|()| v.get_ref().trim_end_matches('/').to_owned())
                    .map_err(|m| {
                        self.error(Some(v.span()), &format!("{section}.endpoint_url"), m)
                    })?,
            ),
            None => defaults.and_then(|d| d.endpoint_url.clone()),
        };
        let role_arn = match &own.role_arn {
            Some(v) => Some(
                check_role_arn(v.get_ref())
                    .map(|()| v.get_ref().clone())
                    .map_err(|m| self.error(Some(v.span()), &format!("{section}.role_arn"), m))?,
            ),
            None => defaults.and_then(|d| d.role_arn.clone()),
        };
        Ok(AwsTarget {
            region,
            endpoint_url,
            role_arn,
        })
    }
}

/// Parses `HOST:PORT` where HOST is an IP address (`0.0.0.0`, `127.0.0.1`, `[::]`).
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("{text:?} is not an IP address and port; write it like \"0.0.0.0:9469\", \"127.0.0.1:9469\" or \"[::]:9469\"")
    })
}

/// HealthLake's datastore id rule: 1–32 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-%@]`.
fn check_datastore_id(id: &str) -> Result<(), String> {
    let length = id.chars().count();
    if !(1..=32).contains(&length) {
        return Err(format!(
            "{id:?} has {length} characters; a HealthLake datastore id has 1 to 32 (copy it from `aws healthlake list-fhir-datastores`)"
        ));
    }
    let allowed = |c: char| {
        c.is_alphanumeric()
            || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '%' | '@')
            || (c.is_whitespace() && !c.is_control())
    };
    match id.chars().find(|c| !allowed(*c)) {
        Some(bad) => Err(format!(
            "{id:?} contains {bad:?}, which HealthLake does not allow in a datastore id"
        )),
        None => Ok(()),
    }
}

fn check_region(region: &str) -> Result<(), String> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region name; write it like \"us-east-1\""
        ))
    }
}

fn check_endpoint_url(url: &str) -> Result<(), String> {
    let hint =
        "write it like \"https://healthlake.us-east-1.amazonaws.com\" or \"http://127.0.0.1:4566\"";
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL ({e}); {hint}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "{url:?} must start with http:// or https://; {hint}"
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host; {hint}"));
    }
    if uri.query().is_some() {
        return Err(format!("{url:?} must not have a query string; {hint}"));
    }
    Ok(())
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
fn check_role_arn(arn: &str) -> Result<(), String> {
    let hint = "write it like \"arn:aws:iam::123456789012:role/healthlake-exporter\"";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && matches!(
            parts[1],
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
        )
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty() && !name.ends_with('/'));
    if ok {
        Ok(())
    } else {
        Err(format!("{arn:?} is not an IAM role ARN; {hint}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("test.toml")).map_err(|e| e.to_string())
    }

    const ONE: &str = "[[datastores]]\nid = \"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4\"\n";

    #[test]
    fn defaults_fill_every_optional_section() {
        let config = parse(ONE).unwrap();
        assert_eq!(config.server.listen_address.to_string(), "0.0.0.0:9469");
        assert_eq!(config.polling.interval, Duration::from_secs(60));
        assert_eq!(config.polling.timeout, Duration::from_secs(30));
        assert_eq!(config.polling.concurrency, 8);
        assert_eq!(config.polling.job_series_limit, 100);
        assert_eq!(config.polling.max_attempts, 3);
        assert_eq!(config.polling.max_requests_per_second, 5.0);
        assert_eq!(config.polling.max_pages, 200);
        let ds = &config.datastores[0];
        assert_eq!(ds.name, ds.id);
        assert_eq!(ds.target, AwsTarget::default());
    }

    #[test]
    fn datastore_keys_override_aws_defaults() {
        let config = parse(
            r#"
[server]
listen_address = "127.0.0.1:9999"
[polling]
interval = "5m"
timeout = "45s"
concurrency = 2
job_series_limit = 0
max_attempts = 5
max_requests_per_second = 2.5
max_pages = 10
full_resync_interval = "30m"
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:4566/"
role_arn = "arn:aws:iam::123456789012:role/reader"
[[datastores]]
id = "one"
name = "prod"
[[datastores]]
id = "two"
region = "eu-west-1"
role_arn = "arn:aws:iam::210987654321:role/path/other"
"#,
        )
        .unwrap();
        assert_eq!(config.polling.interval, Duration::from_secs(300));
        assert_eq!(config.polling.job_series_limit, 0);
        assert_eq!(config.polling.max_attempts, 5);
        assert_eq!(config.polling.max_requests_per_second, 2.5);
        assert_eq!(config.polling.max_pages, 10);
        assert_eq!(
            config.polling.full_resync_interval,
            Duration::from_secs(1800)
        );
        assert_eq!(config.datastores[0].name, "prod");
        assert_eq!(
            config.datastores[0].target,
            AwsTarget {
                region: Some("us-east-1".into()),
                endpoint_url: Some("http://127.0.0.1:4566".into()),
                role_arn: Some("arn:aws:iam::123456789012:role/reader".into()),
            }
        );
        assert_eq!(
            config.datastores[1].target.region.as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            config.datastores[1].target.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert!(config.summary().contains("name=prod"));
    }

    /// Each bad file gives a message naming the file, the line, the key and the fix.
    #[test]
    fn every_validation_error_names_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            ("", "test.toml: datastores: no datastores configured"),
            ("datastores = []\n", "test.toml:1:14: datastores: the list is empty"),
            ("[polling]\nintervl = \"60s\"\n", "test.toml:2:1: unknown field `intervl`"),
            ("[polling]\nconcurrency = \"8\"\n", "test.toml:2:15: key `concurrency`: invalid type: string \"8\""),
            ("[polling]\nconcurrency = 0\n", "test.toml:2:15: polling.concurrency: 0 is out of range"),
            ("[polling]\njob_series_limit = -1\n", "polling.job_series_limit: -1 is out of range"),
            ("[polling]\nmax_attempts = 0\n", "polling.max_attempts: 0 is out of range; use a whole number from 1 to 10"),
            ("[polling]\nmax_pages = 0\n", "polling.max_pages: 0 is out of range"),
            ("[polling]\nmax_requests_per_second = 0\n", "polling.max_requests_per_second: 0 is out of range"),
            ("[polling]\nmax_requests_per_second = \"fast\"\n", "max_requests_per_second"),
            ("[polling]\ninterval = \"0s\"\n", "test.toml:2:12: polling.interval: \"0s\" is zero"),
            ("[polling]\ntimeout = \"soon\"\n", "test.toml:2:11: polling.timeout: \"soon\" is not a duration"),
            ("[polling]\ninterval = \"60\"\n", "polling.interval: \"60\" is not a duration"),
            ("[server]\nlisten_address = \"localhost\"\n", "test.toml:2:18: server.listen_address: \"localhost\" is not an IP address and port"),
            ("[aws]\nendpoint_url = \"ftp://x\"\n", "test.toml:2:16: aws.endpoint_url: \"ftp://x\" must start with http:// or https://"),
            ("[aws]\nendpoint_url = \"not a url\"\n", "aws.endpoint_url: \"not a url\" is not a URL"),
            ("[aws]\nrole_arn = \"arn:aws:iam::123:role/x\"\n", "test.toml:2:12: aws.role_arn: \"arn:aws:iam::123:role/x\" is not an IAM role ARN"),
            ("[aws]\nrole_arn = \"arn:aws:iam::123456789012:user/x\"\n", "is not an IAM role ARN"),
            ("[aws]\nregion = \"US East\"\n", "aws.region: \"US East\" is not an AWS region name"),
            ("[[datastores]]\nid = \"\"\n", "test.toml:2:6: datastores[0].id: \"\" has 0 characters"),
            ("[[datastores]]\nid = \"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e\"\n", "datastores[0].id: \"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e\" has 33 characters"),
            ("[[datastores]]\nid = \"bad!id\"\n", "datastores[0].id: \"bad!id\" contains '!'"),
            ("[[datastores]]\nid = \"x\"\n[[datastores]]\nid = \"x\"\n", "test.toml:4:6: datastores[1].id: datastore id \"x\" is listed twice (first on line 2)"),
            ("[[datastores]]\nid = \"x\"\nname = \" \"\n", "datastores[0].name: must not be empty"),
            ("[[datastores]]\nid = \"x\"\nregoin = \"us-east-1\"\n", "test.toml:3:1: unknown field `regoin`"),
            ("[[datastores]]\nid = \"x\"\nrole_arn = \"nope\"\n", "test.toml:3:12: datastores[0].role_arn: \"nope\" is not an IAM role ARN"),
            ("[[datastores]\nid = \"x\"\n", "test.toml:1:"),
            ("[[datastores]]\nname = \"x\"\n", "missing field `id`"),
        ];
        for (text, expected) in cases {
            let with_store = if text.contains("[[datastores]]")
                || text.contains("datastores =")
                || text.is_empty()
            {
                text.to_string()
            } else {
                format!("{text}{ONE}")
            };
            let message = parse(&with_store).expect_err(text);
            assert!(
                message.contains(expected),
                "config {text:?}\nexpected to contain: {expected}\ngot: {message}"
            );
        }
    }

    #[test]
    fn read_errors_name_the_file_and_the_fix() {
        let message = Config::load(Path::new("/nonexistent/config.toml"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("cannot read config file /nonexistent/config.toml"));
        assert!(message.contains("--config"));

        let dir = std::env::temp_dir().join(format!("hle-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("latin1.toml");
        std::fs::write(&file, b"[[datastores]]\nid = \"caf\xe9\"\n").unwrap();
        let message = Config::load(&file).unwrap_err().to_string();
        assert!(
            message.contains("not valid UTF-8 (first bad byte at offset 24)"),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn polling_shard_is_parsed_checked_and_applied() {
        let config = parse(ONE).unwrap();
        assert_eq!(config.polling.shard, Shard::ALL);
        assert!(!config.summary().contains("shard"));

        let two = "[polling]\nshard = \"1/2\"\n[[datastores]]\nid = \"one\"\n[[datastores]]\nid = \"two\"\n[[datastores]]\nid = \"three\"\n";
        let mut config = parse(two).unwrap();
        assert_eq!(config.polling.shard, Shard::new(1, 2).unwrap());
        let owned: Vec<String> = ["one", "two", "three"]
            .into_iter()
            .filter(|id| crate::shard::owner(id, 2) == 1)
            .map(str::to_owned)
            .collect();
        let summary = config.summary();
        assert!(
            summary.contains(&format!(
                "shard            1/2: {} of 3 datastores",
                owned.len()
            )),
            "{summary}"
        );
        assert!(summary.contains("shard=0/2") || summary.contains("shard=1/2"));
        assert_eq!(config.retain_shard(), 3);
        let kept: Vec<String> = config.datastores.iter().map(|d| d.id.clone()).collect();
        assert_eq!(kept, owned);

        for (value, expected) in [
            (
                "\"3/2\"",
                "test.toml:2:9: polling.shard: \"3/2\": the index 3 must be below the count 2",
            ),
            (
                "\"0/0\"",
                "polling.shard: \"0/0\": the count 0 is out of range; use 1 to 1000 replicas",
            ),
            (
                "\"first\"",
                "polling.shard: \"first\" is not a shard; write it as \"INDEX/COUNT\"",
            ),
            ("1", "key `shard`: invalid type: integer"),
        ] {
            let message = parse(&format!("[polling]\nshard = {value}\n{ONE}")).unwrap_err();
            assert!(message.contains(expected), "{value}: {message}");
            if !value.starts_with('1') {
                assert!(message.contains("--shard"), "{message}");
            }
        }
    }
}
