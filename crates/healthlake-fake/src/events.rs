//! HealthLake-shaped EventBridge events, as an EventBridge rule on `source: aws.healthlake` puts
//! them into an SQS queue (the message body is the event itself). The fake sends one whenever a
//! job's or a datastore's status changes through [`FakeHealthLake`] and event queues are set
//! ([`FakeHealthLake::set_event_queues`]); tests build their own with [`job_event`] and
//! [`datastore_event`].
//!
//! The shape follows the EventBridge envelope (`version`, `id`, `detail-type`, `source`,
//! `account`, `time`, `region`, `resources`, `detail`) and the detail-types HealthLake documents
//! ("Export Job Failed", "Data Store Active", ...). HealthLake sends no event for cancellations,
//! so neither does the fake. The `detail` members mirror the documented patterns
//! (`datastoreId`, `jobId`, `submitTime`, ...), but the exporter must not depend on them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::server::random_uuid;
use super::FakeHealthLake;

/// Which listing a job belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventJobKind {
    Export,
    Import,
}

/// Region in the events of datastores without a fixed region.
pub const DEFAULT_EVENT_REGION: &str = "us-east-1";
const ACCOUNT_ID: &str = "123456789012";

/// The detail-type HealthLake sends when a job reaches `status`; `None` for statuses without an
/// event (`CANCEL_*` and unknown ones).
pub fn job_detail_type(kind: EventJobKind, status: &str) -> Option<String> {
    let state = match status {
        "SUBMITTED" => "Submitted",
        "QUEUED" => "Queued",
        "IN_PROGRESS" => "In Progress",
        "COMPLETED" => "Completed",
        "COMPLETED_WITH_ERRORS" => "Completed With Errors",
        "FAILED" => "Failed",
        _ => return None,
    };
    let kind = match kind {
        EventJobKind::Export => "Export",
        EventJobKind::Import => "Import",
    };
    Some(format!("{kind} Job {state}"))
}

/// The detail-type HealthLake sends when a datastore reaches `status`.
pub fn datastore_detail_type(status: &str) -> Option<&'static str> {
    Some(match status {
        "CREATING" => "Data Store Creating",
        "CREATE_FAILED" => "Data Store Creation Failed",
        "ACTIVE" => "Data Store Active",
        "DELETING" => "Data Store Deleting",
        "DELETED" => "Data Store Deleted",
        _ => return None,
    })
}

fn rfc3339(epoch_seconds: f64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs_f64(epoch_seconds.max(0.0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn datastore_arn(region: &str, datastore_id: &str) -> String {
    format!("arn:aws:healthlake:{region}:{ACCOUNT_ID}:datastore/fhir/{datastore_id}")
}

fn envelope(detail_type: &str, region: &str, datastore_id: &str, detail: Value) -> String {
    json!({
        "version": "0",
        "id": random_uuid(),
        "detail-type": detail_type,
        "source": "aws.healthlake",
        "account": ACCOUNT_ID,
        "time": now_rfc3339(),
        "region": region,
        "resources": [datastore_arn(region, datastore_id)],
        "detail": detail,
    })
    .to_string()
}

/// The event HealthLake sends when a job reaches `status` (`None`: no event for that status).
pub fn job_event(
    kind: EventJobKind,
    region: &str,
    datastore_id: &str,
    job_id: &str,
    status: &str,
    submit_time: f64,
) -> Option<String> {
    let detail_type = job_detail_type(kind, status)?;
    let s3 = format!("s3://healthlake-{ACCOUNT_ID}/{datastore_id}/{job_id}/");
    let mut detail = json!({
        "datastoreId": datastore_id,
        "jobId": job_id,
        "jobStatus": status,
        "submitTime": rfc3339(submit_time),
    });
    let config = match kind {
        EventJobKind::Export => "outputDataConfig",
        EventJobKind::Import => "inputDataConfig",
    };
    detail[config] = json!({ "s3Uri": s3 });
    Some(envelope(&detail_type, region, datastore_id, detail))
}

/// The event HealthLake sends when a datastore reaches `status` (`None`: no event for it).
pub fn datastore_event(
    region: &str,
    datastore_id: &str,
    name: &str,
    status: &str,
) -> Option<String> {
    let detail_type = datastore_detail_type(status)?;
    let detail = json!({
        "datastoreId": datastore_id,
        "datastoreName": name,
        "datastoreStatus": status,
        "datastoreTypeVersion": "R4",
    });
    Some(envelope(detail_type, region, datastore_id, detail))
}

/// Automatic events: called by the fake's mutators with the status before the change.
impl FakeHealthLake {
    fn event_region(&self, datastore_id: &str) -> String {
        self.datastore(datastore_id)
            .and_then(|d| d.region)
            .unwrap_or_else(|| DEFAULT_EVENT_REGION.to_owned())
    }

    /// A job's status now (`None`: no such job), only looked up when events are on.
    pub(crate) fn job_status_for_events(
        &self,
        kind: EventJobKind,
        datastore_id: &str,
        job_id: &str,
    ) -> Option<(String, f64)> {
        if !self.events_enabled() {
            return None;
        }
        match kind {
            EventJobKind::Export => self
                .jobs(datastore_id)
                .into_iter()
                .find(|j| j.id == job_id)
                .map(|j| (j.status, j.submit_time)),
            EventJobKind::Import => self
                .import_jobs(datastore_id)
                .into_iter()
                .find(|j| j.id == job_id)
                .map(|j| (j.status, j.submit_time)),
        }
    }

    /// Publishes the job's event if its status differs from `before`.
    pub(crate) fn job_changed(
        &self,
        kind: EventJobKind,
        datastore_id: &str,
        job_id: &str,
        before: Option<String>,
    ) {
        let Some((status, submit_time)) = self.job_status_for_events(kind, datastore_id, job_id)
        else {
            return;
        };
        if before.as_deref() == Some(status.as_str()) {
            return;
        }
        let region = self.event_region(datastore_id);
        if let Some(event) = job_event(kind, &region, datastore_id, job_id, &status, submit_time) {
            self.publish_event(&event);
        }
    }

    /// A datastore's status now, only looked up when events are on.
    pub(crate) fn datastore_status_for_events(&self, datastore_id: &str) -> Option<String> {
        if !self.events_enabled() {
            return None;
        }
        self.datastore(datastore_id).map(|d| d.status)
    }

    /// Publishes the datastore's event if its status differs from `before` (a removed datastore
    /// sends "Data Store Deleted").
    pub(crate) fn datastore_changed(&self, datastore_id: &str, before: Option<String>) {
        if !self.events_enabled() {
            return;
        }
        let (status, name, region) = match self.datastore(datastore_id) {
            Some(d) => (
                d.status,
                d.name,
                d.region.unwrap_or_else(|| DEFAULT_EVENT_REGION.to_owned()),
            ),
            None if before.is_some() => (
                "DELETED".to_owned(),
                datastore_id.to_owned(),
                DEFAULT_EVENT_REGION.to_owned(),
            ),
            None => return,
        };
        if before.as_deref() == Some(status.as_str()) {
            return;
        }
        if let Some(event) = datastore_event(&region, datastore_id, &name, &status) {
            self.publish_event(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_events_have_the_eventbridge_envelope() {
        let body = job_event(
            EventJobKind::Export,
            "eu-west-1",
            "ds1",
            "job1",
            "FAILED",
            1_700_000_000.0,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["source"], "aws.healthlake");
        assert_eq!(v["detail-type"], "Export Job Failed");
        assert_eq!(v["region"], "eu-west-1");
        assert_eq!(
            v["resources"][0],
            "arn:aws:healthlake:eu-west-1:123456789012:datastore/fhir/ds1"
        );
        assert_eq!(v["detail"]["jobId"], "job1");
        assert_eq!(v["detail"]["submitTime"], "2023-11-14T22:13:20Z");
        assert!(humantime::parse_rfc3339(v["time"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn cancellations_and_unknown_statuses_send_nothing() {
        for status in [
            "CANCEL_SUBMITTED",
            "CANCEL_IN_PROGRESS",
            "CANCEL_COMPLETED",
            "ARCHIVED",
        ] {
            assert_eq!(job_detail_type(EventJobKind::Import, status), None);
        }
        assert_eq!(
            job_detail_type(EventJobKind::Import, "COMPLETED_WITH_ERRORS").as_deref(),
            Some("Import Job Completed With Errors")
        );
        assert_eq!(
            datastore_detail_type("CREATE_FAILED"),
            Some("Data Store Creation Failed")
        );
        assert_eq!(datastore_detail_type("UPDATING"), None);
    }
}
