//! `[events]`: where HealthLake's EventBridge events arrive (an SQS queue) and how to reach it.
//! Validated with the rest of the file, so a typo in the queue URL or a wait time SQS would
//! refuse is reported with its line before the exporter starts.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::shard::Shard;
use super::validate::Validator;
use super::{AwsTarget, ConfigError};
use crate::aws::sqs::QueueSettings;
use crate::aws::{check_endpoint_url, check_region, check_role_arn, has_user_info};

/// SQS's longest long poll, and the default: the fewest calls for the same latency.
pub const DEFAULT_WAIT_TIME: Duration = Duration::from_secs(20);
const MIN_WAIT_TIME: Duration = Duration::from_secs(1);
const MAX_WAIT_TIME: Duration = Duration::from_secs(20);
/// An SQS call may take this much longer than its long-poll wait before it counts as timed out.
pub const CALL_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// The placeholder replaced by the replica's shard index.
pub const SHARD_PLACEHOLDER: &str = "{shard}";

/// A validated `[events]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// As written; may contain `{shard}` (see [`EventsConfig::queue_url_for`]).
    pub queue_url: String,
    /// SQS's endpoint, its own (a VPC endpoint or a local fake); never taken from `[aws]`.
    /// Region and role default to `[aws]`'s, the region else to the queue URL's.
    pub target: AwsTarget,
    /// `WaitTimeSeconds` of each `ReceiveMessage` (1–20 s, whole seconds).
    pub wait_time: Duration,
}

impl EventsConfig {
    /// The queue this replica reads: `{shard}` replaced by its shard index (0 when not sharded).
    pub fn queue_url_for(&self, shard: Shard) -> String {
        self.queue_url
            .replace(SHARD_PLACEHOLDER, &shard.index().to_string())
    }

    /// Whether each replica gets its own queue.
    pub fn per_shard(&self) -> bool {
        self.queue_url.contains(SHARD_PLACEHOLDER)
    }

    /// The timeout of one SQS call: the long-poll wait plus a margin.
    pub fn call_timeout(&self) -> Duration {
        self.long_poll_wait() + CALL_TIMEOUT_MARGIN
    }

    /// `wait_time`, validated to 1–20 s; clamped into that range here too, so that no value built
    /// in code reaches the SDK, which panics on timeouts near `Duration::MAX`.
    fn long_poll_wait(&self) -> Duration {
        self.wait_time.clamp(MIN_WAIT_TIME, MAX_WAIT_TIME)
    }

    /// What the SQS client of replica `shard` is built for.
    pub fn queue_settings(&self, shard: Shard) -> QueueSettings {
        QueueSettings {
            queue_url: self.queue_url_for(shard),
            target: self.target.clone(),
            wait_time: self.long_poll_wait(),
            call_timeout: self.call_timeout(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    queue_url: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
    wait_time: Option<Spanned<String>>,
}

/// `https://sqs.<region>.amazonaws.com/<account>/<name>` (or `.amazonaws.com.cn`, or the legacy
/// `<region>.queue.amazonaws.com`): the region, when the host says it.
pub fn region_of_queue_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', ':']).next()?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .or_else(|| host.strip_suffix(".queue.amazonaws.com"))?;
    check_region(region).ok().map(|()| region.to_owned())
}

/// A queue URL: `http(s)://host/<account>/<name>`, with `{shard}` as the only placeholder and no
/// user-info (`user:password@`): SQS requests are signed with AWS credentials, so one there is a
/// secret pasted by mistake. Messages never repeat the URL.
fn check_queue_url(url: &str) -> Result<(), String> {
    let hint = "write it like \"https://sqs.us-east-1.amazonaws.com/123456789012/healthlake-exporter-events-{shard}\" (the CloudFormation stack's QueueUrl output)";
    if has_user_info(url) {
        return Err(format!(
            "must not contain a user name or password (`user:password@`); AWS credentials come from the SDK's chain; {hint}"
        ));
    }
    let without = url.replace(SHARD_PLACEHOLDER, "0");
    if without.contains(['{', '}']) {
        return Err(format!(
            "has a placeholder other than {SHARD_PLACEHOLDER}; {hint}"
        ));
    }
    let uri: hyper::Uri = without
        .parse()
        .map_err(|_| format!("is not a URL; {hint}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "must start with https:// (or http:// for a local fake) and name a host; {hint}"
        ));
    }
    if uri.query().is_some() {
        return Err(format!("must not have a query string; {hint}"));
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let ok = match segments.as_slice() {
        [account, name] => {
            !account.is_empty()
                && account.bytes().all(|b| b.is_ascii_digit())
                && (1..=80).contains(&name.len())
                && name
                    .trim_end_matches(".fifo")
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        _ => false,
    };
    if !ok {
        return Err(format!(
            "does not end in /<account id>/<queue name>; {hint}"
        ));
    }
    Ok(())
}

impl Validator<'_> {
    pub(super) fn events(
        &self,
        raw: Spanned<RawEvents>,
        aws: &AwsTarget,
    ) -> Result<EventsConfig, ConfigError> {
        let section = raw.span();
        let raw = raw.into_inner();
        let Some(queue_url) = raw.queue_url else {
            return Err(self.error(
                Some(section),
                "events.queue_url",
                "is required in [events]; set it to the queue the EventBridge rule feeds (deploy/aws/healthlake-events.yaml), or remove [events] to poll only",
            ));
        };
        let queue_url = {
            let text = queue_url.get_ref().trim();
            check_queue_url(text)
                .map_err(|m| self.error(Some(queue_url.span()), "events.queue_url", m))?;
            text.to_owned()
        };
        let endpoint_url = match raw.endpoint_url {
            Some(v) => Some(
                check_endpoint_url(v.get_ref())
                    .map(|()| v.get_ref().trim_end_matches('/').to_owned())
                    .map_err(|m| self.error(Some(v.span()), "events.endpoint_url", m))?,
            ),
            None => None,
        };
        let region = match raw.region {
            Some(v) => Some(
                check_region(v.get_ref())
                    .map(|()| v.get_ref().clone())
                    .map_err(|m| self.error(Some(v.span()), "events.region", m))?,
            ),
            None => aws
                .region
                .clone()
                .or_else(|| region_of_queue_url(&queue_url)),
        };
        let role_arn = match raw.role_arn {
            Some(v) => Some(
                check_role_arn(v.get_ref())
                    .map(|()| v.get_ref().clone())
                    .map_err(|m| self.error(Some(v.span()), "events.role_arn", m))?,
            ),
            None => aws.role_arn.clone(),
        };
        let wait_span = raw.wait_time.as_ref().map(Spanned::span);
        let wait_time = self.duration(
            raw.wait_time,
            "events.wait_time",
            DEFAULT_WAIT_TIME,
            MIN_WAIT_TIME..=MAX_WAIT_TIME,
        )?;
        if wait_time.subsec_nanos() != 0 {
            return Err(self.error(
                wait_span,
                "events.wait_time",
                "is not a whole number of seconds; SQS long polls last whole seconds from 1s to 20s",
            ));
        }
        Ok(EventsConfig {
            queue_url,
            target: AwsTarget {
                region,
                endpoint_url,
                role_arn,
            },
            wait_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const BASE: &str = "[[datastores]]\nid = \"0123456789abcdef0123456789abcdef\"\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_section_takes_defaults_and_the_region_from_the_url() {
        let config = parse(
            "[events]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/healthlake-events-{shard}\"\n",
        )
        .unwrap();
        let events = config.events.unwrap();
        assert_eq!(events.wait_time, Duration::from_secs(20));
        assert_eq!(events.call_timeout(), Duration::from_secs(30));
        assert_eq!(events.target.region.as_deref(), Some("eu-west-1"));
        assert_eq!(events.target.endpoint_url, None);
        assert!(events.per_shard());
        assert_eq!(
            events.queue_url_for(Shard::new(2, 3).unwrap()),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/healthlake-events-2"
        );
        assert_eq!(
            events.queue_url_for(Shard::ALL),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/healthlake-events-0"
        );
        assert!(parse("").unwrap().events.is_none());
    }

    #[test]
    fn region_and_role_default_to_aws_but_the_endpoint_never_does() {
        let config = parse(
            "[aws]\nregion = \"us-west-2\"\nendpoint_url = \"http://127.0.0.1:1\"\nrole_arn = \"arn:aws:iam::123456789012:role/r\"\n\
             [events]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/q\"\nwait_time = \"5s\"\n",
        )
        .unwrap();
        let events = config.events.unwrap();
        assert_eq!(events.target.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            events.target.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/r")
        );
        assert_eq!(events.target.endpoint_url, None);
        assert_eq!(events.wait_time, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_the_key_and_the_line() {
        let cases = [
            ("[events]\nwait_time = \"5s\"\n", "test.toml:3:1: events.queue_url: is required in [events]"),
            ("[events]\nqueue_url = \"sqs/q\"\n", "test.toml:4:13: events.queue_url: is not a URL"),
            ("[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/q\"\n", "does not end in /<account id>/<queue name>"),
            ("[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q-{replica}\"\n", "has a placeholder other than {shard}"),
            ("[events]\nqueue_url = \"https://user:pw@sqs.us-east-1.amazonaws.com/1/q\"\n", "test.toml:4:13: events.queue_url: must not contain a user name or password"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nwait_time = \"21s\"\n", "test.toml:5:13: events.wait_time: out of range; use a duration from 1s to 20s"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nwait_time = \"0s\"\n", "out of range"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nwait_time = \"1500ms\"\n", "test.toml:5:13: events.wait_time: is not a whole number of seconds"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nwait_time = \"soon\"\n", "events.wait_time: not a duration"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nregion = \"US East\"\n", "events.region: is not an AWS region name"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nendpoint_url = \"ftp://x\"\n", "events.endpoint_url"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nendpoint_url = \"http://a:b@127.0.0.1:1\"\n", "test.toml:5:16: events.endpoint_url: must not contain a user name or password"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nrole_arn = \"admin\"\n", "events.role_arn"),
            ("[events]\nqueue_url = \"https://h/1/q\"\nqueue = \"x\"\n", "unknown field `queue`"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(
                error.contains(expected),
                "{text:?}\n  gave: {error}\n  want: {expected}"
            );
        }
    }

    #[test]
    fn queue_url_regions() {
        for (url, region) in [
            ("https://sqs.us-east-1.amazonaws.com/1/q", Some("us-east-1")),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/1/q",
                Some("cn-north-1"),
            ),
            (
                "https://eu-west-1.queue.amazonaws.com/1/q",
                Some("eu-west-1"),
            ),
            ("https://vpce-1.sqs.us-east-1.vpce.amazonaws.com/1/q", None),
            ("http://127.0.0.1:4566/000000000000/q", None),
        ] {
            assert_eq!(region_of_queue_url(url).as_deref(), region, "{url}");
        }
    }
}
