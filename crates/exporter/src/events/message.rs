//! What one SQS message says, as pure functions: is it a HealthLake EventBridge event (or an SNS
//! notification wrapping one), something else, or garbage; which followed datastores it names;
//! what it asks to refresh.
//!
//! The consumer must not depend on `detail` member names, which the documentation does not pin
//! down: the datastore is found by matching the ids this process follows against every string in
//! the event's `resources` and `detail` (whole, and split at `/` and `:` so that ARNs match).
//! The documented `detail-type` only narrows what to refresh; an unknown one refreshes all. Old
//! unfinished jobs are found the same way: an event names one when any of its strings is that
//! job's id (see [`HealthLakeEvent::names`]).

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde_json::Value;

/// The `source` of HealthLake's events.
pub const HEALTHLAKE_SOURCE: &str = "aws.healthlake";

/// Most strings looked at in one event; a hostile 256 KiB message cannot make matching costly.
const MAX_CANDIDATE_STRINGS: usize = 4096;

/// What an event asks to refresh for the datastores it names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// The export job listing.
    pub exports: bool,
    /// The import job listing.
    pub imports: bool,
    /// The datastore's status and discovery.
    pub datastore: bool,
    /// The old unfinished jobs too (the event names one of them): otherwise they are followed on
    /// the polling schedule only, so that an event costs one listing.
    pub old_jobs: bool,
}

impl Scope {
    /// Every listing (an event whose detail-type this version does not know); old unfinished
    /// jobs only when the event names one.
    pub const ALL: Scope = Scope {
        exports: true,
        imports: true,
        datastore: true,
        old_jobs: false,
    };

    /// Both scopes' refreshes.
    pub fn union(self, other: Scope) -> Scope {
        Scope {
            exports: self.exports || other.exports,
            imports: self.imports || other.imports,
            datastore: self.datastore || other.datastore,
            old_jobs: self.old_jobs || other.old_jobs,
        }
    }

    /// From the documented detail-types: "Export Job …", "Import Job …", "Data Store …".
    pub fn of_detail_type(detail_type: &str) -> Scope {
        let lower = detail_type.to_ascii_lowercase();
        if lower.starts_with("export job") {
            Scope {
                exports: true,
                ..Scope::default()
            }
        } else if lower.starts_with("import job") {
            Scope {
                imports: true,
                ..Scope::default()
            }
        } else if lower.starts_with("data store") || lower.starts_with("datastore") {
            Scope {
                datastore: true,
                ..Scope::default()
            }
        } else {
            Scope::ALL
        }
    }
}

/// Why a message is not an event at all (the `reason` of the malformed counter in logs).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("no `source` string: not an EventBridge event")]
    NoSource,
    #[error("no `detail-type` string: not an EventBridge event")]
    NoDetailType,
}

/// A HealthLake event, reduced to what the consumer uses.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthLakeEvent {
    /// `detail-type`, e.g. "Export Job Failed".
    pub detail_type: String,
    /// `time` (when HealthLake emitted it), if present and RFC 3339.
    pub time: Option<SystemTime>,
    /// Every string of `resources` and `detail`, to match datastore ids against.
    strings: Vec<String>,
}

/// One message, classified.
#[derive(Clone, Debug, PartialEq)]
pub enum Classified {
    HealthLake(HealthLakeEvent),
    /// A well-formed event from another source (the rule should not send these; counted and
    /// dropped).
    Foreign {
        source: String,
    },
    Malformed(Malformed),
}

/// Classifies an SQS message body: an EventBridge event as a rule puts it in the queue, or an SNS
/// notification whose `Message` is one (SNS fan-out without raw message delivery).
pub fn classify(body: &str) -> Classified {
    let value: Value = match serde_json::from_str(body) {
        Ok(value) => value,
        Err(error) => return Classified::Malformed(Malformed::NotJson(error.to_string())),
    };
    let value = unwrap_sns(value);
    let Value::Object(mut event) = value else {
        return Classified::Malformed(Malformed::NotAnObject);
    };
    let Some(source) = event.get("source").and_then(Value::as_str) else {
        return Classified::Malformed(Malformed::NoSource);
    };
    if source != HEALTHLAKE_SOURCE {
        return Classified::Foreign {
            source: source.chars().take(64).collect(),
        };
    }
    let Some(detail_type) = event.get("detail-type").and_then(Value::as_str) else {
        return Classified::Malformed(Malformed::NoDetailType);
    };
    let detail_type = detail_type.chars().take(128).collect();
    let time = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    let mut strings = Vec::new();
    for key in ["resources", "detail"] {
        if let Some(value) = event.remove(key) {
            collect_strings(value, &mut strings);
        }
    }
    Classified::HealthLake(HealthLakeEvent {
        detail_type,
        time,
        strings,
    })
}

/// An SNS notification (`"Type": "Notification"`, `Message` a JSON string) becomes its message;
/// anything else is returned unchanged.
fn unwrap_sns(value: Value) -> Value {
    let is_sns = value.get("Type").and_then(Value::as_str) == Some("Notification");
    if let (true, Some(Value::String(inner))) = (is_sns, value.get("Message")) {
        if let Ok(inner) = serde_json::from_str::<Value>(inner) {
            return inner;
        }
    }
    value
}

fn collect_strings(value: Value, out: &mut Vec<String>) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        if out.len() >= MAX_CANDIDATE_STRINGS {
            return;
        }
        match value {
            Value::String(s) => out.push(s),
            Value::Array(items) => stack.extend(items),
            Value::Object(members) => stack.extend(members.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

impl HealthLakeEvent {
    /// What the event asks to refresh.
    pub fn scope(&self) -> Scope {
        Scope::of_detail_type(&self.detail_type)
    }

    /// The followed datastores this event names (sorted, each once).
    pub fn datastores(&self, followed: impl Fn(&str) -> bool) -> Vec<String> {
        let found: BTreeSet<&str> = self.words().filter(|w| followed(w)).collect();
        found.into_iter().map(str::to_owned).collect()
    }

    /// Whether any of the event's words is one that `wanted` looks for (a job id, say).
    pub fn names(&self, wanted: impl Fn(&str) -> bool) -> bool {
        self.words().any(wanted)
    }

    /// Every string of `resources` and `detail`, whole, then split at `/` and `:` (so that the
    /// parts of an ARN match too).
    fn words(&self) -> impl Iterator<Item = &str> {
        self.strings.iter().flat_map(|s| {
            let parts = s
                .contains(['/', ':'])
                .then(|| s.split(['/', ':']).filter(|p| !p.is_empty()));
            std::iter::once(s.as_str()).chain(parts.into_iter().flatten())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const DS: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn event(detail_type: &str, resources: &str, detail: &str) -> String {
        format!(
            r#"{{"version":"0","id":"e1","detail-type":"{detail_type}","source":"aws.healthlake","account":"123456789012","time":"2026-11-30T01:00:00Z","region":"us-east-1","resources":{resources},"detail":{detail}}}"#
        )
    }

    fn healthlake(body: &str) -> HealthLakeEvent {
        match classify(body) {
            Classified::HealthLake(event) => event,
            other => panic!("not a HealthLake event: {other:?}"),
        }
    }

    fn followed(ids: &[&str]) -> impl Fn(&str) -> bool {
        let set: HashSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        move |id| set.contains(id)
    }

    #[test]
    fn finds_the_datastore_in_the_resource_arn() {
        let body = event(
            "Export Job Failed",
            &format!(r#"["arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/{DS}"]"#),
            r#"{"jobId":"j1"}"#,
        );
        let event = healthlake(&body);
        assert_eq!(event.datastores(followed(&[DS, OTHER])), [DS]);
        assert_eq!(
            event.scope(),
            Scope {
                exports: true,
                ..Scope::default()
            }
        );
        assert_eq!(
            event.time,
            Some(UNIX_EPOCH + Duration::from_secs(1_796_000_400))
        );
    }

    #[test]
    fn finds_the_datastore_in_any_detail_value_whatever_its_name() {
        // No resources; the id sits in a nested member with a name the docs never promised.
        let body = event(
            "Import Job Completed",
            "[]",
            &format!(r#"{{"someday":{{"renamed":[1,true,null,"{DS}"]}},"jobId":"{OTHER}x"}}"#),
        );
        let event = healthlake(&body);
        assert_eq!(event.datastores(followed(&[DS, OTHER])), [DS]);
        assert_eq!(
            event.scope(),
            Scope {
                imports: true,
                ..Scope::default()
            }
        );
    }

    #[test]
    fn unfollowed_datastores_and_partial_matches_are_not_found() {
        let body = event(
            "Data Store Active",
            &format!(r#"["arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/{DS}"]"#),
            &format!(
                r#"{{"datastoreName":"{OTHER}-copy","prefix":"{}"}}"#,
                &OTHER[..16]
            ),
        );
        let event = healthlake(&body);
        assert!(event.datastores(followed(&[OTHER])).is_empty());
        assert_eq!(
            event.scope(),
            Scope {
                datastore: true,
                ..Scope::default()
            }
        );
    }

    #[test]
    fn an_event_naming_two_followed_datastores_refreshes_both_once() {
        let body = event(
            "Export Job Completed",
            &format!(r#"["arn:aws:healthlake:us-east-1:1:datastore/fhir/{DS}","{OTHER}"]"#),
            &format!(r#"{{"datastoreId":"{DS}"}}"#),
        );
        assert_eq!(
            healthlake(&body).datastores(followed(&[DS, OTHER])),
            [DS, OTHER]
        );
    }

    #[test]
    fn an_event_names_a_job_by_any_of_its_strings() {
        let body = event(
            "Export Job Failed",
            &format!(r#"["arn:aws:healthlake:us-east-1:1:datastore/fhir/{DS}"]"#),
            r#"{"jobId":"4f1a","deep":["s3://bucket/x/7e2b/"]}"#,
        );
        let event = healthlake(&body);
        assert!(event.names(|w| w == "4f1a"));
        assert!(event.names(|w| w == "7e2b"), "a part of a path");
        assert!(!event.names(|w| w == "4f1"));
        assert!(!Scope::of_detail_type("Export Job Failed").old_jobs);
    }

    #[test]
    fn unknown_detail_types_refresh_everything() {
        let body = event("HealthLake Thing Happened", "[]", "{}");
        assert_eq!(healthlake(&body).scope(), Scope::ALL);
    }

    #[test]
    fn sns_notifications_are_unwrapped() {
        let inner = event("Export Job Failed", &format!(r#"["{DS}"]"#), "{}");
        let sns = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:1:healthlake",
            "Message": inner,
        })
        .to_string();
        assert_eq!(healthlake(&sns).datastores(followed(&[DS])), [DS]);
    }

    #[test]
    fn foreign_and_malformed_messages_are_told_apart() {
        assert_eq!(
            classify(r#"{"source":"aws.s3","detail-type":"Object Created","detail":{}}"#),
            Classified::Foreign {
                source: "aws.s3".into()
            }
        );
        assert!(matches!(
            classify("not json"),
            Classified::Malformed(Malformed::NotJson(_))
        ));
        assert_eq!(
            classify("[1]"),
            Classified::Malformed(Malformed::NotAnObject)
        );
        assert_eq!(classify("{}"), Classified::Malformed(Malformed::NoSource));
        assert_eq!(
            classify(r#"{"source":"aws.healthlake"}"#),
            Classified::Malformed(Malformed::NoDetailType)
        );
        assert_eq!(
            classify(r#"{"source":7,"detail-type":"x"}"#),
            Classified::Malformed(Malformed::NoSource)
        );
        // A bad time is not fatal: the event still refreshes.
        let body =
            event("Export Job Failed", "[]", "{}").replace("2026-11-30T01:00:00Z", "yesterday");
        assert_eq!(healthlake(&body).time, None);
        // Deep nesting is rejected by the JSON parser, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            classify(&deep),
            Classified::Malformed(Malformed::NotJson(_))
        ));
    }

    #[test]
    fn hostile_events_cost_bounded_work() {
        let many: Vec<String> = (0..20_000).map(|i| format!("s{i}")).collect();
        let body = event(
            "Export Job Failed",
            &serde_json::to_string(&many).unwrap(),
            "{}",
        );
        let event = healthlake(&body);
        assert!(event.strings.len() <= MAX_CANDIDATE_STRINGS);
        assert!(event.datastores(followed(&[DS])).is_empty());
    }
}
