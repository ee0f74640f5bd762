//! Checking the file, one function per section: every error names the file, the line and column,
//! the key, and how to fix it. The web and AWS modules own their settings' checks; this module
//! calls them and adds the location.
//!
//! The `[server]` checks, which read files, are in `server`; making the TOML parser's own
//! messages safe to print is in `toml_error`.

use std::collections::HashMap;
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::raw::{Number, RawConfig, RawDatastore, RawDiscovery, RawPolling, RawTarget};
use super::shard::{Shard, ShardError};
use super::{
    line_and_column, Config, ConfigError, DatastoreConfig, DiscoveryConfig, PollingConfig,
    DEFAULT_CONCURRENCY, DEFAULT_DATASTORE_INTERVAL, DEFAULT_DISCOVERY_INTERVAL,
    DEFAULT_ENDED_JOB_WINDOW, DEFAULT_FULL_RESYNC_INTERVAL, DEFAULT_INTERVAL,
    DEFAULT_JOB_SERIES_LIMIT, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_PAGES,
    DEFAULT_MAX_REQUESTS_PER_SECOND, DEFAULT_TIMEOUT, MAX_CONCURRENCY, MAX_ENDED_JOB_WINDOW,
    MAX_INTERVAL, MAX_JOB_SERIES_LIMIT, MAX_MAX_ATTEMPTS, MAX_MAX_PAGES, MAX_NAME_CHARS,
    MAX_REQUESTS_PER_SECOND, MAX_TIMEOUT, MIN_ENDED_JOB_WINDOW, MIN_INTERVAL,
    MIN_REQUESTS_PER_SECOND, MIN_TIMEOUT,
};
use crate::aws::{check_endpoint_url, check_region, check_role_arn, AwsTarget};
use crate::model::{
    check_datastore_id, InvalidDatastoreId, JobKinds, JobNameLabel, DATASTORE_STATUSES,
};
use crate::web::settings::{parse_listen_address, DEFAULT_LISTEN_ADDRESS};

mod server;
mod toml_error;

pub(super) use toml_error::describe_toml_error;

/// Checks one file's raw sections; knows the file's path and text for error locations.
pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) tls_files: TlsFiles,
}

/// Whether validation reads the `[server.tls]` files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TlsFiles {
    /// Start and `--check-config`: the files must hold a usable pair now.
    Check,
    /// A reload: the web module loads them when the paths changed, and otherwise keeps the
    /// certificate in service, which follows its files (a pair caught mid-rotation must not
    /// refuse unrelated changes).
    Defer,
}

impl Validator<'_> {
    pub(super) fn error(
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

    /// The whole file, section by section. The order is fixed (the listen address, `[polling]`,
    /// `[aws]`, `[[discovery]]`, `[[datastores]]`, the rest of `[server]`), so a file with several
    /// mistakes always reports the same one first.
    pub(super) fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let listen_address = match &raw.server.listen_address {
            None => DEFAULT_LISTEN_ADDRESS,
            Some(value) => parse_listen_address(value.get_ref())
                .map_err(|m| self.error(Some(value.span()), "server.listen_address", m))?,
        };

        let polling = self.polling(raw.polling)?;
        let defaults = self.target(&raw.aws, None, "aws")?;
        let events = match raw.events {
            Some(section) => Some(self.events(section, &defaults)?),
            None => None,
        };

        let mut discovery = Vec::new();
        for (index, entry) in raw.discovery.unwrap_or_default().into_iter().enumerate() {
            discovery.push(self.discovery(entry, &defaults, index)?);
        }
        let datastores = self.datastores(raw.datastores, &discovery, &defaults, polling.jobs)?;
        Ok(Config {
            server: self.server(listen_address, raw.server)?,
            polling,
            datastores,
            discovery,
            events,
        })
    }

    /// `[polling]`.
    fn polling(&self, raw: RawPolling) -> Result<PollingConfig, ConfigError> {
        Ok(PollingConfig {
            interval: self.duration(
                raw.interval,
                "polling.interval",
                DEFAULT_INTERVAL,
                MIN_INTERVAL..=MAX_INTERVAL,
            )?,
            timeout: self.duration(
                raw.timeout,
                "polling.timeout",
                DEFAULT_TIMEOUT,
                MIN_TIMEOUT..=MAX_TIMEOUT,
            )?,
            concurrency: self.count(
                raw.concurrency,
                "polling.concurrency",
                DEFAULT_CONCURRENCY,
                1..=MAX_CONCURRENCY,
            )?,
            job_series_limit: self.count(
                raw.job_series_limit,
                "polling.job_series_limit",
                DEFAULT_JOB_SERIES_LIMIT,
                0..=MAX_JOB_SERIES_LIMIT,
            )?,
            max_attempts: self.count(
                raw.max_attempts,
                "polling.max_attempts",
                DEFAULT_MAX_ATTEMPTS as usize,
                1..=MAX_MAX_ATTEMPTS,
            )? as u32,
            max_requests_per_second: self.rate(
                raw.max_requests_per_second,
                "polling.max_requests_per_second",
            )?,
            max_pages: self.count(
                raw.max_pages,
                "polling.max_pages",
                DEFAULT_MAX_PAGES,
                1..=MAX_MAX_PAGES,
            )?,
            full_resync_interval: self.duration(
                raw.full_resync_interval,
                "polling.full_resync_interval",
                DEFAULT_FULL_RESYNC_INTERVAL,
                MIN_INTERVAL..=MAX_INTERVAL,
            )?,
            ended_job_window: self.duration(
                raw.ended_job_window,
                "polling.ended_job_window",
                DEFAULT_ENDED_JOB_WINDOW,
                MIN_ENDED_JOB_WINDOW..=MAX_ENDED_JOB_WINDOW,
            )?,
            shard: self.shard(raw.shard)?,
            jobs: match raw.jobs {
                Some(kinds) => self.job_kinds(kinds, "polling.jobs")?,
                None => JobKinds::default(),
            },
            datastore_health: raw.datastore_health.unwrap_or(false),
            datastore_interval: self.duration(
                raw.datastore_interval,
                "polling.datastore_interval",
                DEFAULT_DATASTORE_INTERVAL,
                MIN_INTERVAL..=MAX_INTERVAL,
            )?,
            job_name_label: match raw.job_name_label {
                None => JobNameLabel::Keep,
                Some(value) => JobNameLabel::parse(value.get_ref()).ok_or_else(|| {
                    self.error(
                        Some(value.span()),
                        "polling.job_name_label",
                        "is not a mode of the job_name label; use \"keep\", \"hash\" or \"drop\"",
                    )
                })?,
            },
        })
    }

    /// `[[datastores]]`: each id checked and listed once, each target filled from `[aws]`, each
    /// job list from `polling.jobs` unless the entry names its own.
    fn datastores(
        &self,
        datastores: Option<Spanned<Vec<RawDatastore>>>,
        discovery: &[DiscoveryConfig],
        defaults: &AwsTarget,
        jobs: JobKinds,
    ) -> Result<Vec<DatastoreConfig>, ConfigError> {
        let datastores = match datastores {
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
            check_configured_datastore_id(&id)
                .map_err(|m| self.error(Some(ds.id.span()), &format!("{key}.id"), m))?;
            if let Some(first) = seen.insert(id.clone(), ds.id.span().start) {
                let (line, _) = line_and_column(self.text, first);
                return Err(self.error(
                    Some(ds.id.span()),
                    &format!("{key}.id"),
                    format!("this datastore id is listed twice (first on line {line}); each datastore may appear once"),
                ));
            }
            let name = match ds.name {
                Some(name) => {
                    check_name(name.get_ref(), "leave it out to use the id as the name")
                        .map_err(|m| self.error(Some(name.span()), &format!("{key}.name"), m))?;
                    name.into_inner()
                }
                None => id.clone(),
            };
            let own = RawTarget {
                region: ds.region,
                endpoint_url: ds.endpoint_url,
                role_arn: ds.role_arn,
            };
            let target = self.target(&own, Some(defaults), &key)?;
            let jobs = match ds.jobs {
                Some(kinds) => self.job_kinds(kinds, &format!("{key}.jobs"))?,
                None => jobs,
            };
            out.push(DatastoreConfig {
                id,
                name,
                target,
                jobs,
            });
        }

        Ok(out)
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
                _ => {
                    return Err(self.error(
                        Some(value.span()),
                        key,
                        "lists something other than a job kind; write [\"export\"], [\"import\"] or [\"export\", \"import\"]",
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
            Some(prefix) => {
                check_name(prefix.get_ref(), "leave it out to discover every datastore").map_err(
                    |m| self.error(Some(prefix.span()), &format!("{key}.name_prefix"), m),
                )?;
                Some(prefix.into_inner())
            }
            None => None,
        };
        let status = match raw.status {
            Some(status) if !DATASTORE_STATUSES.contains(&status.get_ref().as_str()) => {
                return Err(self.error(
                    Some(status.span()),
                    &format!("{key}.status"),
                    format!(
                        "not a datastore status; use one of {}",
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
            MIN_INTERVAL..=MAX_INTERVAL,
        )?;
        Ok(DiscoveryConfig {
            target,
            name_prefix,
            status,
            interval,
        })
    }

    /// A duration within `range` (or `default` when absent), written like "30s", "5m" or "1h".
    pub(super) fn duration(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let allowed = format!(
            "from {} to {}",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
        );
        let problem = match humantime::parse_duration(value.get_ref().trim()) {
            Ok(duration) if range.contains(&duration) => return Ok(duration),
            Ok(_) => format!("out of range; use a duration {allowed}"),
            Err(e) => format!(
                "not a duration ({}); write it like \"30s\", \"5m\" or \"1h\", {allowed}",
                duration_problem(&e)
            ),
        };
        Err(self.error(Some(value.span()), key, problem))
    }

    fn count(
        &self,
        value: Option<Spanned<i64>>,
        key: &str,
        default: usize,
        range: RangeInclusive<usize>,
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
                        "out of range; use a whole number from {} to {}",
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
        value.get_ref().parse().map_err(|e: ShardError| {
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
        if rate.is_finite() && (MIN_REQUESTS_PER_SECOND..=MAX_REQUESTS_PER_SECOND).contains(&rate) {
            Ok(rate)
        } else {
            Err(self.error(
                Some(value.span()),
                key,
                format!("out of range; use a number of requests per second from {MIN_REQUESTS_PER_SECOND} to {MAX_REQUESTS_PER_SECOND} (HealthLake allows 10 per account and region)"),
            ))
        }
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

/// HealthLake's datastore id rule ([`check_datastore_id`]), with how to fix it. The id is not
/// repeated: the line and column say where it is.
fn check_configured_datastore_id(id: &str) -> Result<(), String> {
    check_datastore_id(id).map_err(|why| match why {
        InvalidDatastoreId::Length(_) => {
            format!("{why} (copy it from `aws healthlake list-fhir-datastores`)")
        }
        InvalidDatastoreId::Character(_) => {
            format!("{why}; copy the id from `aws healthlake list-fhir-datastores`")
        }
    })
}

/// A datastore name or name prefix: not blank, at most HealthLake's [`MAX_NAME_CHARS`] (it
/// becomes a label value or a request parameter; either escapes what it must).
fn check_name(name: &str, when_blank: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("must not be empty; {when_blank}"));
    }
    let length = name.chars().count();
    if length > MAX_NAME_CHARS {
        return Err(format!(
            "has {length} characters; HealthLake allows at most {MAX_NAME_CHARS} in a datastore name"
        ));
    }
    Ok(())
}

/// What is wrong with a duration, without quoting it (humantime's own message repeats the unit).
fn duration_problem(error: &humantime::DurationError) -> String {
    match error {
        humantime::DurationError::InvalidCharacter(at) => {
            format!("an unexpected character at position {}", at + 1)
        }
        humantime::DurationError::NumberExpected(at) => {
            format!("a number is missing at position {}", at + 1)
        }
        humantime::DurationError::UnknownUnit { start, .. } => format!(
            "an unknown unit at position {}; units are ms, s, m, h and d",
            start + 1
        ),
        humantime::DurationError::NumberOverflow => "a number too large".to_owned(),
        humantime::DurationError::Empty => "it is empty".to_owned(),
    }
}
