//! The TOML configuration: its schema, its defaults and its validation.
//!
//! The file is read and checked once, up front, so that every later module works with values that
//! are known to be good. Every error names the file, the key and (where TOML tells us) the line,
//! and says how to fix it: a typo must never pass silently and must never become a panic.

mod events;
mod raw;
pub mod shard;
mod summary;
mod validate;
mod web_config;

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::aws::AwsTarget;
pub use crate::web::settings::ServerConfig;
pub use events::{region_of_queue_url, EventsConfig, CALL_TIMEOUT_MARGIN, SHARD_PLACEHOLDER};
pub use web_config::ConfigFiles;

use crate::aws::ClientSettings;
use crate::files::FileProblem;
use crate::model::{JobKinds, JobNameLabel};
use crate::state::Roster;
use raw::RawConfig;
use shard::Shard;
use validate::{describe_toml_error, TlsFiles, Validator};

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_CONCURRENCY: usize = 8;
pub(crate) const DEFAULT_JOB_SERIES_LIMIT: usize = 100;
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Half of HealthLake's ListFHIRExportJobs quota (10 per second per account and region), leaving
/// the rest to the team's own tools.
pub(crate) const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 5.0;
/// 200 pages of 500 jobs: far beyond any real export history, short of an endless token loop.
pub(crate) const DEFAULT_MAX_PAGES: usize = 200;
/// How often a poll lists a datastore's whole history instead of only its unsettled jobs.
pub(crate) const DEFAULT_FULL_RESYNC_INTERVAL: Duration = Duration::from_secs(3600);
/// How long a job that ended FAILED (or COMPLETED_WITH_ERRORS, CANCEL_FAILED) keeps its
/// end-timestamp series: the time its alert fires for.
pub(crate) const DEFAULT_ENDED_JOB_WINDOW: Duration = Duration::from_secs(3600);
/// Bounds of `polling.ended_job_window`: at least a minute (an alert needs a few evaluations), at
/// most a day (the series of every job that ended within it are kept in memory).
pub(crate) const MIN_ENDED_JOB_WINDOW: Duration = Duration::from_secs(60);
pub(crate) const MAX_ENDED_JOB_WINDOW: Duration = Duration::from_secs(86_400);
/// Bounds of every interval (`polling.interval`, `full_resync_interval`, `datastore_interval`,
/// `discovery[].interval`): at least a second (anything shorter is a busy loop against a quota of
/// a few requests per second), at most a day (the data would be stale for longer than any alert
/// waits). Bounding them keeps every sum and product of times the poller computes far from
/// overflow: no accepted value can panic a task.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Bounds of `polling.timeout`: a second to ten minutes. A poll is a few paged calls paced at a few
/// per second; longer than ten minutes is a hang, and it would hold a concurrency slot and the
/// event queue's visibility (2 x timeout) that long.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// `polling.max_requests_per_second`: a finite rate from one request every 100 s to 1000 a second.
pub(crate) const MIN_REQUESTS_PER_SECOND: f64 = 0.01;
pub(crate) const MAX_REQUESTS_PER_SECOND: f64 = 1000.0;
/// HealthLake's own limit on a datastore name, applied to `datastores[].name` and
/// `discovery[].name_prefix` (both become label values or request parameters).
pub(crate) const MAX_NAME_CHARS: usize = 256;
pub(crate) const MAX_MAX_ATTEMPTS: usize = 10;
pub(crate) const MAX_MAX_PAGES: usize = 100_000;
pub(crate) const MAX_CONCURRENCY: usize = 256;
pub(crate) const MAX_JOB_SERIES_LIMIT: usize = 10_000;

/// A configuration that has passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub polling: PollingConfig,
    /// The datastores listed in the file (discovered ones are added at run time).
    pub datastores: Vec<DatastoreConfig>,
    /// `[[discovery]]`: where to find more datastores with `ListFHIRDatastores`.
    pub discovery: Vec<DiscoveryConfig>,
    /// `[events]`: HealthLake's EventBridge events through SQS (`None`: polling only).
    pub events: Option<EventsConfig>,
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

pub(crate) const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(600);
pub(crate) const DEFAULT_DATASTORE_INTERVAL: Duration = Duration::from_secs(300);

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
    /// What the `job_name` label carries: the name, a hash of it, or nothing.
    pub job_name_label: JobNameLabel,
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
        "cannot read config file {path}: it is {kind}, not a regular file\n  \
         hint: point --config (or the symlink it names) at a regular file"
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(
        "cannot read config file {path}: it is larger than {limit_kib} KiB, the limit for a configuration file\n  \
         hint: check that --config names the configuration file (10,000 datastores take well under the limit)"
    )]
    TooLarge { path: PathBuf, limit_kib: u64 },
    #[error(
        "cannot read config file {path}: reading it took longer than {seconds} s (a hung network filesystem?)\n  \
         hint: check the filesystem that holds it; the exporter keeps serving meanwhile"
    )]
    ReadTimedOut { path: PathBuf, seconds: f64 },
    #[error(
        "{path}: the file is not valid UTF-8 (first bad byte at offset {offset}); save it as UTF-8"
    )]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error(
        "cannot read web config file {path}: {problem}\n  \
         hint: point --web.config.file (or HEALTHLAKE_EXPORTER_WEB_CONFIG_FILE) at exporter-toolkit's web config file, a regular UTF-8 file of at most 1 MiB"
    )]
    WebConfigRead { path: PathBuf, problem: String },
    #[error(
        "{toml}: {section} is set, and so is --web.config.file {web_config}: TLS and basic auth are configured in one place\n  \
         hint: move them into the web config file (tls_server_config, basic_auth_users) and remove [server.tls] and [server.basic_auth] from {toml}, or drop --web.config.file",
        toml = toml.display(), web_config = web_config.display()
    )]
    BothWebConfigs {
        toml: PathBuf,
        section: &'static str,
        web_config: PathBuf,
    },
    #[error("{location}: {message}")]
    Invalid {
        /// `file:line:column`, or just the file where TOML gives no position.
        location: String,
        message: String,
    },
}

impl ConfigError {
    /// An error at `span` of `source`: the location says file, line and column. No excerpt of the
    /// line is shown: it may hold a secret (a bcrypt hash, or a password pasted by mistake), and
    /// messages go to the terminal, the log and the `/-/reload` response alike.
    pub(crate) fn at(
        path: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: String,
    ) -> Self {
        let mut location = path.display().to_string();
        if let Some(span) = span {
            let (line, column) = line_and_column(source, span.start);
            let _ = write!(location, ":{line}:{column}");
        }
        ConfigError::Invalid { location, message }
    }
}

pub(crate) fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The largest configuration file read. A configuration is a few KiB (10,000 datastores take
/// about 300 KiB); anything larger is the wrong file, and reading it whole would only fill memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the configuration file: a regular file (symlinks followed, as a Kubernetes ConfigMap's
/// `..data` link is), at most [`MAX_CONFIG_FILE_BYTES`], UTF-8. Nothing else is ever opened for
/// reading: a FIFO would block the read until a writer comes, a device (`/dev/zero`) never ends.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes =
        crate::files::read_bounded(path, MAX_CONFIG_FILE_BYTES).map_err(
            |problem| match problem {
                FileProblem::Io(source) => ConfigError::Read {
                    path: path.to_owned(),
                    source,
                },
                FileProblem::NotAFile(kind) => ConfigError::NotAFile {
                    path: path.to_owned(),
                    kind,
                },
                FileProblem::TooLarge { limit_kib } => ConfigError::TooLarge {
                    path: path.to_owned(),
                    limit_kib,
                },
            },
        )?;
    String::from_utf8(bytes).map_err(|e| ConfigError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_text(path)?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` only names the file in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with(text, path, TlsFiles::Check)
    }

    /// Reads and validates the file at `path` for a reload: like [`Config::load`], except that
    /// the `[server.tls]` files are left to the web module (see `web::Web::prepare`).
    pub fn load_for_reload(path: &Path) -> Result<Config, ConfigError> {
        let text = read_text(path)?;
        Config::parse_with(&text, path, TlsFiles::Defer)
    }

    fn parse_with(text: &str, path: &Path, tls_files: TlsFiles) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = describe_toml_error(text, &e);
            ConfigError::at(path, text, e.span(), message)
        })?;
        Validator {
            path,
            text,
            tls_files,
        }
        .validate(raw)
    }

    /// Keeps only the datastores `polling.shard` owns (all of them for "0/1") and returns how many
    /// the file lists. Applied wherever a configuration is put to work (start and every reload),
    /// after any `--shard` override, so the rest of the exporter never sees another replica's
    /// datastores. The file itself must still list at least one datastore; a shard may own none.
    pub(crate) fn retain_shard(&mut self) -> usize {
        let configured = self.datastores.len();
        let shard = self.polling.shard;
        self.datastores.retain(|d| shard.owns(&d.id));
        configured
    }
}

/// What State keeps records for, as this configuration says.
impl From<&Config> for Roster {
    fn from(config: &Config) -> Roster {
        Roster {
            datastores: config
                .datastores
                .iter()
                .map(|d| (d.id.clone(), d.name.clone(), d.jobs))
                .collect(),
            datastore_health: config.polling.datastore_health,
            discovery_regions: config
                .discovery
                .iter()
                .map(|entry| {
                    entry
                        .target
                        .region
                        .clone()
                        .unwrap_or_else(|| "default".to_owned())
                })
                .collect(),
        }
    }
}

/// What the AWS clients are built for, as this configuration says.
impl From<&Config> for ClientSettings {
    fn from(config: &Config) -> ClientSettings {
        let users = config
            .datastores
            .iter()
            .map(|d| (d.target.clone(), format!("datastore {}", d.id)))
            .chain(
                config
                    .discovery
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (d.target.clone(), format!("discovery[{i}]"))),
            )
            .collect();
        // Every datastore names its region: the first one's is the SDK's default region.
        let region_everywhere = config.datastores.iter().all(|d| d.target.region.is_some());
        let region = config
            .datastores
            .first()
            .and_then(|d| d.target.region.clone())
            .filter(|_| region_everywhere);
        ClientSettings {
            users,
            region,
            // Validated to 10 minutes at most; clamped again because the SDK panics on a timeout
            // near `Duration::MAX` (a configuration built in code skips validation).
            timeout: config.polling.timeout.min(MAX_TIMEOUT),
            max_attempts: config.polling.max_attempts,
            max_requests_per_second: config.polling.max_requests_per_second,
        }
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
            ("[polling]\nconcurrency = \"8\"\n", "test.toml:2:15: key `polling.concurrency`: invalid type: a string (value not shown), expected a whole number"),
            ("[polling]\nconcurrency = 0\n", "test.toml:2:15: polling.concurrency: out of range; use a whole number from 1 to 256"),
            ("[polling]\njob_series_limit = -1\n", "polling.job_series_limit: out of range; use a whole number from 0 to 10000"),
            ("[polling]\nended_job_window = \"30s\"\n", "test.toml:2:20: polling.ended_job_window: out of range; use a duration from 1m to 1day"),
            ("[polling]\nended_job_window = \"2d\"\n", "polling.ended_job_window: out of range"),
            ("[polling]\nmax_attempts = 0\n", "polling.max_attempts: out of range; use a whole number from 1 to 10"),
            ("[polling]\nmax_pages = 0\n", "polling.max_pages: out of range"),
            ("[polling]\nmax_requests_per_second = 0\n", "polling.max_requests_per_second: out of range; use a number of requests per second from 0.01 to 1000"),
            ("[polling]\nmax_requests_per_second = nan\n", "polling.max_requests_per_second: out of range"),
            ("[polling]\nmax_requests_per_second = inf\n", "polling.max_requests_per_second: out of range"),
            ("[polling]\nmax_requests_per_second = \"fast\"\n", "max_requests_per_second"),
            ("[polling]\ninterval = \"0s\"\n", "test.toml:2:12: polling.interval: out of range; use a duration from 1s to 1day"),
            ("[polling]\ninterval = \"25h\"\n", "test.toml:2:12: polling.interval: out of range; use a duration from 1s to 1day"),
            ("[polling]\ninterval = \"500ms\"\n", "polling.interval: out of range"),
            ("[polling]\ntimeout = \"500000000000y\"\n", "test.toml:2:11: polling.timeout: out of range; use a duration from 1s to 10m"),
            ("[polling]\ntimeout = \"99999999999999999999999s\"\n", "polling.timeout: not a duration (a number too large)"),
            ("[polling]\ntimeout = \"soon\"\n", "test.toml:2:11: polling.timeout: not a duration (a number is missing at position 1); write it like \"30s\", \"5m\" or \"1h\", from 1s to 10m"),
            ("[polling]\ninterval = \"60\"\n", "polling.interval: not a duration (an unknown unit at position 3; units are ms, s, m, h and d)"),
            ("[polling]\nfull_resync_interval = \"8d\"\n", "polling.full_resync_interval: out of range; use a duration from 1s to 1day"),
            ("[polling]\ndatastore_interval = \"2days\"\n", "polling.datastore_interval: out of range; use a duration from 1s to 1day"),
            ("[polling]\njob_name_label = \"x\"\n", "test.toml:2:18: polling.job_name_label: is not a mode of the job_name label; use \"keep\", \"hash\" or \"drop\""),
            ("[polling]\njobs = [\"exports\"]\n", "test.toml:2:8: polling.jobs: lists something other than a job kind"),
            ("[server]\nlisten_address = \"localhost\"\n", "test.toml:2:18: server.listen_address: is not an IP address and port"),
            ("[server]\nmax_connections = 0\n", "test.toml:2:19: server.max_connections: out of range; use a whole number from 1 to 10000"),
            ("[aws]\nendpoint_url = \"ftp://x\"\n", "test.toml:2:16: aws.endpoint_url: must start with http:// or https://"),
            ("[aws]\nendpoint_url = \"not a url\"\n", "aws.endpoint_url: is not a URL"),
            ("[aws]\nendpoint_url = \"https://me:pw@example.com\"\n", "test.toml:2:16: aws.endpoint_url: must not contain a user name or password"),
            ("[aws]\nrole_arn = \"arn:aws:iam::123:role/x\"\n", "test.toml:2:12: aws.role_arn: is not an IAM role ARN"),
            ("[aws]\nrole_arn = \"arn:aws:iam::123456789012:user/x\"\n", "is not an IAM role ARN"),
            ("[aws]\nregion = \"US East\"\n", "test.toml:2:10: aws.region: is not an AWS region name"),
            ("[[datastores]]\nid = \"\"\n", "test.toml:2:6: datastores[0].id: has 0 characters"),
            ("[[datastores]]\nid = \"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e\"\n", "datastores[0].id: has 33 characters"),
            ("[[datastores]]\nid = \"bad!id\"\n", "datastores[0].id: character 4 is one HealthLake does not allow"),
            ("[[datastores]]\nid = \"x\"\n[[datastores]]\nid = \"x\"\n", "test.toml:4:6: datastores[1].id: this datastore id is listed twice (first on line 2)"),
            ("[[datastores]]\nid = \"x\"\nname = \" \"\n", "datastores[0].name: must not be empty"),
            ("[[datastores]]\nid = \"x\"\nregoin = \"us-east-1\"\n", "test.toml:3:1: unknown field `regoin`"),
            ("[[datastores]]\nid = \"x\"\nrole_arn = \"nope\"\n", "test.toml:3:12: datastores[0].role_arn: is not an IAM role ARN"),
            ("[[datastores]]\nid = \"x\"\njobs = []\n", "test.toml:3:8: datastores[0].jobs: is empty"),
            ("[[discovery]]\nstatus = \"ON\"\n", "test.toml:2:10: discovery[0].status: not a datastore status"),
            ("[[discovery]]\ninterval = \"1w\"\n", "test.toml:2:12: discovery[0].interval: out of range; use a duration from 1s to 1day"),
            ("[[discovery]]\nname_prefix = \"\"\n", "test.toml:2:15: discovery[0].name_prefix: must not be empty"),
            ("[[datastores]\nid = \"x\"\n", "test.toml:1:"),
            ("[[datastores]]\nname = \"x\"\n", "missing field `id`"),
        ];
        for (text, expected) in cases {
            let with_store = if text.contains("[[datastores]")
                || text.contains("[[discovery]]")
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

    /// A text marker and a number marker, each put into a bad value of every key.
    const MARK: &str = "Zq7Marker";
    const NUMBER_MARK: &str = "987654321";

    /// Every key with a bad value that carries a marker: (file text, the key as the error names
    /// it). Each bad value is on the last line of the text that holds a marker.
    fn bad_value_of_every_key() -> Vec<(String, &'static str)> {
        let mut cases = Cases(Vec::new());
        bad_server_values(&mut cases);
        bad_polling_values(&mut cases);
        bad_target_values(&mut cases);
        bad_datastore_and_discovery_values(&mut cases);
        bad_events_values(&mut cases);
        cases.0
    }

    /// (file text, the key the error names).
    struct Cases(Vec<(String, &'static str)>);

    impl Cases {
        fn add(&mut self, text: String, key: &'static str) {
            self.0.push((text, key));
        }

        /// `key` made from parts: leaked, as the cases live as long as the test.
        fn add_key(&mut self, text: String, key: String) {
            self.add(text, Box::leak(key.into_boxed_str()));
        }
    }

    fn bad_server_values(cases: &mut Cases) {
        let (m, n) = (MARK, NUMBER_MARK);
        cases.add(
            format!("[server]\nlisten_address = \"{m}:9469\"\n"),
            "server.listen_address",
        );
        for key in ["max_connections", "max_connections_per_ip"] {
            cases.add_key(format!("[server]\n{key} = {n}\n"), format!("server.{key}"));
            cases.add_key(
                format!("[server]\n{key} = \"{m}\"\n"),
                format!("server.{key}"),
            );
        }
        cases.add(
            format!("[server]\nenable_reload = \"{m}\"\n"),
            "server.enable_reload",
        );
        for (value, key) in [
            (format!("[\"{m} bad\"]"), "server.reload_allowed_hosts[0]"),
            (format!("\"{m}\""), "server.reload_allowed_hosts"),
        ] {
            cases.add(format!("[server]\nreload_allowed_hosts = {value}\n"), key);
        }
        for users in [
            format!("alice = \"{m}\""),
            format!("alice = \"$2y$10${m}\""),
            format!("\"{m}:pw\" = \"$2y$10$\""),
            format!("alice = {n}"),
        ] {
            cases.add(
                format!("[server.basic_auth]\nusers = {{ {users} }}\n"),
                "server.basic_auth.users",
            );
        }
    }

    fn bad_polling_values(cases: &mut Cases) {
        let (m, n) = (MARK, NUMBER_MARK);
        for key in [
            "interval",
            "timeout",
            "full_resync_interval",
            "ended_job_window",
            "datastore_interval",
        ] {
            for value in [format!("\"5{m}\""), format!("\"{n}d\""), n.to_owned()] {
                cases.add_key(
                    format!("[polling]\n{key} = {value}\n"),
                    format!("polling.{key}"),
                );
            }
        }
        for key in [
            "concurrency",
            "job_series_limit",
            "max_attempts",
            "max_pages",
        ] {
            for value in [n.to_owned(), format!("-{n}"), format!("\"{m}\"")] {
                cases.add_key(
                    format!("[polling]\n{key} = {value}\n"),
                    format!("polling.{key}"),
                );
            }
        }
        // Not TOML values at all, or of another type: the parser's messages do not quote them.
        for value in [
            m.to_owned(),
            format!("\"{m}"),
            format!("1{m}"),
            format!("[\"{m}\"]"),
            format!("{{ a = \"{m}\" }}"),
            format!("'{m}'"),
        ] {
            cases.add(
                format!("[polling]\ninterval = {value}\n"),
                "polling.interval",
            );
        }
        for (key, value) in [
            ("max_requests_per_second", format!("{n}.5")),
            ("max_requests_per_second", n.to_owned()),
            ("max_requests_per_second", format!("\"{m}\"")),
            ("shard", format!("\"{m}/2\"")),
            ("shard", format!("\"{n}/2\"")),
            ("shard", format!("\"1/{n}\"")),
            ("jobs", format!("[\"{m}\"]")),
            ("datastore_health", format!("\"{m}\"")),
            ("job_name_label", format!("\"{m}\"")),
        ] {
            cases.add_key(
                format!("[polling]\n{key} = {value}\n"),
                format!("polling.{key}"),
            );
        }
    }

    /// Region, endpoint and role of `[aws]`, a datastore, a discovery entry and `[events]`.
    fn bad_target_values(cases: &mut Cases) {
        let (m, n) = (MARK, NUMBER_MARK);
        for (section, prefix) in [
            ("[aws]", "aws"),
            ("[[datastores]]\nid = \"x\"", "datastores[0]"),
            ("[[discovery]]", "discovery[0]"),
            ("[events]\nqueue_url = \"https://h/1/q\"", "events"),
        ] {
            for (key, value) in [
                ("region", format!("\"{m}-1\"")),
                ("endpoint_url", format!("\"https://user:{m}@example.com\"")),
                ("endpoint_url", format!("\"ftp://{m}.example.com\"")),
                ("endpoint_url", format!("\"{m} is not a URL\"")),
                ("endpoint_url", format!("\"https://example.com/?{m}\"")),
                (
                    "role_arn",
                    format!("\"arn:aws:iam::123456789012:user/{m}\""),
                ),
                ("role_arn", format!("\"{m}\"")),
                ("region", n.to_string()),
            ] {
                cases.add_key(
                    format!("{section}\n{key} = {value}\n"),
                    format!("{prefix}.{key}"),
                );
            }
        }
    }

    fn bad_datastore_and_discovery_values(cases: &mut Cases) {
        let (m, n) = (MARK, NUMBER_MARK);
        let long = format!("{m}{}", "x".repeat(300));
        for (text, key) in [
            (format!("id = \"{m}!\"\n"), "datastores[0].id"),
            (format!("id = \"{long}\"\n"), "datastores[0].id"),
            (
                format!("id = \"{m}\"\n[[datastores]]\nid = \"{m}\"\n"),
                "datastores[1].id",
            ),
            (format!("id = {n}\n"), "datastores[0].id"),
            (
                format!("id = \"x\"\nname = \"{long}\"\n"),
                "datastores[0].name",
            ),
            (
                format!("id = \"x\"\njobs = [\"export\", \"{m}\"]\n"),
                "datastores[0].jobs",
            ),
        ] {
            cases.add(format!("[[datastores]]\n{text}"), key);
        }
        for (key, value) in [
            ("name_prefix", format!("\"{long}\"")),
            ("status", format!("\"{m}\"")),
            ("interval", format!("\"{m}\"")),
            ("interval", format!("\"{n}h\"")),
        ] {
            cases.add_key(
                format!("[[discovery]]\n{key} = {value}\n"),
                format!("discovery[0].{key}"),
            );
        }
    }

    fn bad_events_values(cases: &mut Cases) {
        let (m, n) = (MARK, NUMBER_MARK);
        for url in [
            format!("https://user:{m}@sqs.us-east-1.amazonaws.com/123456789012/q"),
            format!("https://{m}@sqs.us-east-1.amazonaws.com/123456789012/q"),
            format!("https://sqs.us-east-1.amazonaws.com/123456789012/{m}!"),
            format!("https://sqs.us-east-1.amazonaws.com/{m}/q"),
            format!("https://sqs.us-east-1.amazonaws.com/1/q?{m}"),
            format!("https://sqs.us-east-1.amazonaws.com/1/q-{{{m}}}"),
            format!("{m}://sqs.us-east-1.amazonaws.com/1/q"),
            format!("{m} not a url"),
        ] {
            cases.add(
                format!("[events]\nqueue_url = \"{url}\"\n"),
                "events.queue_url",
            );
        }
        for wait in [m.to_owned(), format!("{n}s"), format!("1{m}")] {
            cases.add(
                format!("[events]\nqueue_url = \"https://h/1/q\"\nwait_time = \"{wait}\"\n"),
                "events.wait_time",
            );
        }
    }

    /// Finding 9: whatever key holds a bad value, the error names the file, the line and the key,
    /// and never repeats the value (it may be a secret, and it goes to the terminal, the log and
    /// the `/-/reload` response alike). `[server.tls]` paths are the one exception, documented:
    /// their errors say which file could not be read.
    #[test]
    fn errors_name_the_key_and_the_line_never_the_value() {
        let cases = bad_value_of_every_key();
        assert!(cases.len() > 90, "{} cases", cases.len());
        let mut failures = Vec::new();
        for (text, key) in cases {
            let lines: Vec<&str> = text.lines().collect();
            let line = lines
                .iter()
                .rposition(|l| l.contains(MARK) || l.contains(NUMBER_MARK))
                .expect("a marked line")
                + 1;
            let with_store = if text.contains("[[datastores]]") || text.contains("[[discovery]]") {
                text.clone()
            } else {
                format!("{text}{ONE}")
            };
            let message = parse(&with_store).expect_err(&text);
            let problems = [
                (message.contains(MARK) || message.contains(NUMBER_MARK))
                    .then_some("repeats the value"),
                (!message.starts_with(&format!("test.toml:{line}:")))
                    .then_some("does not name the line"),
                (![":", ".", "`"]
                    .iter()
                    .any(|end| message.contains(&format!("{key}{end}"))))
                .then_some("does not name the key"),
            ];
            for problem in problems.into_iter().flatten() {
                failures.push(format!(
                    "{problem} (line {line}, key {key})\n  config: {text:?}\n  error: {message}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn read_errors_name_the_file_and_the_fix() {
        let message = Config::load(Path::new("/nonexistent/config.toml"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("cannot read config file /nonexistent/config.toml"));
        assert!(message.contains("--config"));

        let temp = tempfile::Builder::new()
            .prefix("hle-config-")
            .tempdir()
            .unwrap();
        let dir = temp.path();
        let file = dir.join("latin1.toml");
        std::fs::write(&file, b"[[datastores]]\nid = \"caf\xe9\"\n").unwrap();
        let message = Config::load(&file).unwrap_err().to_string();
        assert!(
            message.contains("not valid UTF-8 (first bad byte at offset 24)"),
            "{message}"
        );
    }

    /// Only a regular file (symlinks followed) of at most 1 MiB is read; a FIFO is never opened.
    #[cfg(unix)]
    #[test]
    fn only_a_regular_file_within_the_limit_is_read() {
        let temp = tempfile::Builder::new()
            .prefix("hle-config-input-")
            .tempdir()
            .unwrap();
        let dir = temp.path();
        let good = dir.join("good.toml");
        std::fs::write(&good, ONE).unwrap();
        let link = dir.join("config.toml");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(Config::load(&link).is_ok(), "a symlink to a regular file");

        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let big = dir.join("big.toml");
        let mut text = ONE.to_owned();
        text.push_str(&"# padding\n".repeat(MAX_CONFIG_FILE_BYTES as usize / 10));
        std::fs::write(&big, text).unwrap();
        let cases = [
            (
                fifo.as_path(),
                "it is a FIFO (named pipe), not a regular file",
            ),
            (
                Path::new("/dev/zero"),
                "it is a character device, not a regular file",
            ),
            (dir, "it is a directory, not a regular file"),
            (big.as_path(), "it is larger than 1024 KiB"),
        ];
        for (path, expected) in cases {
            // Behind a symlink too, as a ConfigMap's `..data` swapped to another target.
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(path, &link).unwrap();
            for target in [path, link.as_path()] {
                let message = Config::load(target).unwrap_err().to_string();
                assert!(
                    message.starts_with(&format!(
                        "cannot read config file {}: {expected}",
                        target.display()
                    )),
                    "{message}"
                );
                assert!(message.contains("hint:"), "{message}");
            }
        }
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
            .filter(|id| shard::owner(id, 2) == 1)
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
                "test.toml:2:9: polling.shard: has an index not below the count",
            ),
            (
                "\"0/0\"",
                "polling.shard: has a count out of range; use 1 to 1000 replicas",
            ),
            (
                "\"first\"",
                "polling.shard: is not a shard; write it as \"INDEX/COUNT\"",
            ),
            ("1", "key `polling.shard`: invalid type: an integer (value not shown), expected a string"),
        ] {
            let message = parse(&format!("[polling]\nshard = {value}\n{ONE}")).unwrap_err();
            assert!(message.contains(expected), "{value}: {message}");
            if !value.starts_with('1') {
                assert!(message.contains("--shard"), "{message}");
            }
        }
    }
}
