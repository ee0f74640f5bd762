//! From a failed call to the line a user acts on: what went wrong in words (access denied, not
//! found in this region but in that one, throttled, the endpoint's host does not resolve, nothing
//! listens there) and the fix (the IAM action, the resource ARN and the principal to grant it to;
//! the region to set; the endpoint to check). Pure functions of the error and its context, so
//! every wording is unit tested.

use std::time::Duration;

use aws_config::{Region, SdkConfig};

use super::identity::Principal;
use super::report::{aws_message, Check, Status};
use crate::aws::probe::{endpoint_of, Service};
use crate::aws::AwsTarget;
use crate::model::{ErrorReason, PollError};

/// Where a call went and as whom: what a fix must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// Who to grant to: "the role arn:…", "the user NAME in account N", "the exporter's role".
    pub grantee: String,
    /// The account the resources belong to (the signer's), or `ACCOUNT` when unknown.
    pub account: String,
    pub partition: String,
    pub region: String,
}

impl Place {
    /// Calls signed by `principal`, the credentials of `role_arn` or of the base chain.
    pub fn new(principal: &Principal, role_arn: Option<&str>, region: &str) -> Place {
        let known = match principal {
            Principal::Known(identity) => Some(identity),
            _ => None,
        };
        let arn = role_arn.or(known.map(|id| id.arn.as_str()));
        let account = role_arn
            .and_then(|arn| arn_part(arn, 4))
            .or(known.map(|id| id.account.as_str()))
            .unwrap_or("ACCOUNT");
        Place {
            grantee: match (role_arn, known) {
                (Some(role), _) => format!("the role {role}"),
                (None, Some(identity)) => describe_principal(&identity.arn),
                (None, None) => "the exporter's role".to_owned(),
            },
            account: account.to_owned(),
            partition: arn
                .and_then(|arn| arn_part(arn, 1))
                .unwrap_or("aws")
                .to_owned(),
            region: region.to_owned(),
        }
    }

    /// An AssumeRole of `role_arn` by the base chain's principal.
    pub fn role(base: &Principal, role_arn: &str, region: &Region) -> Place {
        let mut place = Place::new(base, None, region.as_ref());
        place.account = arn_part(role_arn, 4).unwrap_or("ACCOUNT").to_owned();
        place
    }

    pub fn datastore_arn(&self, datastore_id: &str) -> String {
        format!(
            "arn:{}:healthlake:{}:{}:datastore/fhir/{datastore_id}",
            self.partition, self.region, self.account
        )
    }
}

/// Field `index` of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`), when not empty.
fn arn_part(arn: &str, index: usize) -> Option<&str> {
    arn.splitn(6, ':')
        .nth(index)
        .filter(|part| !part.is_empty())
}

/// A principal as a grant names it: `the role NAME in account N` for a role session (its ARN
/// does not show the role's path), `the user NAME in account N`, else the ARN.
fn describe_principal(arn: &str) -> String {
    let account = arn_part(arn, 4).unwrap_or("?");
    let resource = arn_part(arn, 5).unwrap_or("");
    if let Some(role) = resource.strip_prefix("assumed-role/") {
        let name = role.split('/').next().unwrap_or(role);
        return format!("the role {name} in account {account}");
    }
    if let Some(user) = resource.strip_prefix("user/") {
        let name = user.rsplit('/').next().unwrap_or(user);
        return format!("the user {name} in account {account}");
    }
    arn.to_owned()
}

/// The endpoint a call went to, for the advice on a failure to reach it.
pub struct Endpoint {
    /// The URL (or "the SQS endpoint for REGION" when the SDK would not name one).
    pub url: String,
    /// The configuration key that sets it (`endpoint_url` of the datastore, `events.endpoint_url`).
    pub key: &'static str,
}

impl Endpoint {
    pub async fn of(
        service: Service,
        region: &str,
        configured: Option<&str>,
        key: &'static str,
        base: &SdkConfig,
    ) -> Endpoint {
        let url = endpoint_of(service, region, configured, base)
            .await
            .unwrap_or_else(|| format!("the {service:?} endpoint for {region}"));
        Endpoint { url, key }
    }
}

/// The outcome and fix of a call that did not reach its service, or got no answer in time.
pub fn transport(error: &PollError, endpoint: &Endpoint, timeout: Duration) -> (String, String) {
    let url = &endpoint.url;
    let key = endpoint.key;
    let message = &error.message;
    if error.reason == ErrorReason::Timeout {
        return (
            format!("no answer from {url} within {}", humantime::format_duration(timeout)),
            format!("check the network path to {url} (egress to port 443, security groups, a VPC endpoint's security group), or raise polling.timeout"),
        );
    }
    if message.contains("dns error") || message.contains("failed to lookup address") {
        return (
            format!("the host of {url} does not resolve (DNS)"),
            format!("check {key}: a VPC endpoint's name is its DNS name (vpce-….vpce.amazonaws.com), or enable its private DNS and remove {key}"),
        );
    }
    if message.contains("Connection refused") {
        return (
            format!("nothing accepts connections at {url} (connection refused)"),
            format!("check the host and port of {key}"),
        );
    }
    (
        format!("cannot reach {url} ({})", aws_message(message)),
        format!("check {key} and the network path to it (egress to port 443, proxies, TLS interception)"),
    )
}

/// `Some((outcome, fix))` for the failures every call shares: transport, credentials, server
/// errors. `None` for those whose advice depends on the call (access denied, not found,
/// throttled, refused as invalid).
pub fn common(
    error: &PollError,
    endpoint: &Endpoint,
    timeout: Duration,
    place: &Place,
) -> Option<(String, String)> {
    let message = aws_message(&error.message);
    match error.reason {
        ErrorReason::Network | ErrorReason::Timeout => Some(transport(error, endpoint, timeout)),
        ErrorReason::Credentials => Some((
            format!("the credentials were refused or could not be loaded ({message})"),
            format!("check the credentials of {}: expired or revoked session keys, a clock far off, or an AssumeRole refused", place.grantee),
        )),
        ErrorReason::ServerError => Some((
            format!("the service failed ({message})"),
            format!("retry later; if it persists, see the AWS Health Dashboard for {}", place.region),
        )),
        ErrorReason::Throttled
        | ErrorReason::AccessDenied
        | ErrorReason::NotFound
        | ErrorReason::Validation => None,
        ErrorReason::Interrupted | ErrorReason::Stale | ErrorReason::Other => Some((
            format!("failed ({message})"),
            format!("check {} and the network path to it", endpoint.key),
        )),
    }
}

/// A HealthLake call and the resource it needs the action on.
pub struct HealthLakeCall<'a> {
    /// `healthlake:ListFHIRExportJobs`.
    pub action: &'a str,
    /// The resource to grant the action on: a datastore ARN, or `"*"`.
    pub resource: String,
}

/// A failed HealthLake call other than "not found" ([`datastore_not_found`]).
pub fn healthlake_failure(
    subject: &str,
    call: &HealthLakeCall<'_>,
    error: &PollError,
    place: &Place,
    endpoint: &Endpoint,
    timeout: Duration,
    max_requests_per_second: f64,
) -> Check {
    let message = aws_message(&error.message);
    let (outcome, fix) = match error.reason {
        ErrorReason::AccessDenied => (
            format!("access denied ({message})"),
            format!(
                "allow {} on {} to {}",
                call.action, call.resource, place.grantee
            ),
        ),
        ErrorReason::Throttled => (
            format!("throttled, so the permission is not proven ({message})"),
            format!(
                "run the preflight again in a minute; HealthLake's request quota of account {} in {} is shared with your other tools (the exporter keeps to polling.max_requests_per_second, {max_requests_per_second}/s)",
                place.account, place.region
            ),
        ),
        ErrorReason::Validation => (
            format!("refused as invalid ({message})"),
            "check the datastore id: 32 letters and digits, the last part of its ARN".to_owned(),
        ),
        ErrorReason::NotFound => (
            format!("not found in {} ({message})", place.region),
            "check the datastore id and its region".to_owned(),
        ),
        _ => common(error, endpoint, timeout, place)
            .unwrap_or_else(|| (format!("failed ({message})"), String::new())),
    };
    Check::new(Status::Fail, subject, call.action, outcome).with_fix(fix)
}

/// A datastore that the configured region does not have: `found_in` is where the preflight
/// found it instead (`None`: in no HealthLake region, as this principal sees them through the
/// target's endpoint).
pub fn datastore_not_found(
    subject: &str,
    action: &str,
    place: &Place,
    found_in: Option<&str>,
    target: &AwsTarget,
) -> Check {
    let region = &place.region;
    if let Some(other) = found_in {
        return Check::new(
            Status::Fail,
            subject,
            action,
            format!("not found in {region}, but in {other}"),
        )
        .with_fix(format!(
            "set region = \"{other}\" on this datastore (a [[datastores]] entry's region wins over [aws].region)"
        ));
    }
    let account = &place.account;
    let (outcome, beyond) = match &target.endpoint_url {
        // Requests for other regions went to the same endpoint_url: a regional VPC endpoint
        // answers none of them.
        Some(url) => (
            format!("not found in {region}, nor in another HealthLake region of account {account} through {url}"),
            "; a datastore of another region needs that region's endpoint_url",
        ),
        None => (
            format!("not found in {region}, nor in any other HealthLake region of account {account}"),
            "",
        ),
    };
    Check::new(Status::Fail, subject, action, outcome).with_fix(format!(
        "check the id: it is the last part of the datastore's ARN (aws healthlake list-fhir-datastores --region {region}){beyond}"
    ))
}

/// The base chain found no credentials (or they were refused before any call).
pub fn no_credentials(subject: &str, action: &str, error: &PollError) -> Check {
    Check::new(
        Status::Fail,
        subject,
        action,
        format!("no usable AWS credentials ({})", aws_message(&error.message)),
    )
    .with_fix("give the exporter an identity: on EKS, IRSA (the eks.amazonaws.com/role-arn annotation on its ServiceAccount) or an EKS Pod Identity association; elsewhere AWS_PROFILE, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance role")
}

/// An AssumeRole of a `role_arn` refused (or its credentials unusable).
pub fn assume_role_failed(subject: &str, error: &PollError, place: &Place) -> Check {
    let role = subject.strip_prefix("role ").unwrap_or(subject);
    Check::new(
        Status::Fail,
        subject,
        "sts:AssumeRole",
        format!("cannot assume the role ({})", aws_message(&error.message)),
    )
    .with_fix(format!(
        "allow {} sts:AssumeRole on {role}, and let the role's trust policy trust it",
        place.grantee
    ))
}

/// STS did not answer `GetCallerIdentity` although the credentials loaded: the principal stays
/// unnamed. A warning: HealthLake and SQS may still work (STS is needed only for a `role_arn`
/// and for IRSA's own token exchange, which would have failed as credentials).
pub async fn sts_unreachable(
    subject: &str,
    action: &str,
    error: &PollError,
    base: &SdkConfig,
    region: &Region,
) -> Check {
    let endpoint = Endpoint::of(
        Service::Sts,
        region.as_ref(),
        None,
        "AWS_ENDPOINT_URL_STS",
        base,
    )
    .await;
    let (outcome, fix) = match error.reason {
        ErrorReason::Network | ErrorReason::Timeout => {
            transport(error, &endpoint, Duration::from_secs(0))
        }
        _ => (
            format!("failed ({})", aws_message(&error.message)),
            "retry later".to_owned(),
        ),
    };
    Check::new(
        Status::Warn,
        subject,
        action,
        format!("the principal could not be named: {outcome}"),
    )
    .with_fix(format!(
        "{fix}; STS is needed only for role_arn and IRSA, so the checks below go on"
    ))
}

/// The event queue as the preflight reads it: what its URL says, and where the client signs.
pub struct Queue<'a> {
    pub url: &'a str,
    /// The region the SQS client signs for.
    pub region: &'a str,
    /// The region the URL's host names (`sqs.REGION.amazonaws.com`), if it names one.
    pub url_region: Option<String>,
}

impl Queue<'_> {
    /// `(account, name)`: the URL's last two path segments (validated with the configuration).
    fn account_and_name(&self) -> (&str, &str) {
        let mut segments = self.url.trim_end_matches('/').rsplit('/');
        let name = segments.next().unwrap_or("");
        let account = segments.next().unwrap_or("ACCOUNT");
        (account, name)
    }

    fn arn(&self, partition: &str) -> String {
        let (account, name) = self.account_and_name();
        let region = self.url_region.as_deref().unwrap_or(self.region);
        format!("arn:{partition}:sqs:{region}:{account}:{name}")
    }
}

/// What the consumer needs of the queue that no call can prove without taking messages.
pub const UNPROVEN_SQS_ACTIONS: &str =
    "sqs:ReceiveMessage, sqs:ChangeMessageVisibility and sqs:DeleteMessage";

/// A failed `GetQueueAttributes` on the event queue.
pub fn queue_failure(
    subject: &str,
    queue: &Queue<'_>,
    error: &PollError,
    place: &Place,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Check {
    let action = "sqs:GetQueueAttributes";
    let message = aws_message(&error.message);
    let wrong_region = queue
        .url_region
        .as_deref()
        .filter(|url_region| *url_region != queue.region);
    let (outcome, fix) = match (error.reason, wrong_region) {
        (ErrorReason::AccessDenied, _) => {
            let (queue_account, _) = queue.account_and_name();
            let mut fix = format!(
                "allow sqs:GetQueueAttributes, {UNPROVEN_SQS_ACTIONS} on {} to {}",
                queue.arn(&place.partition),
                place.grantee
            );
            if place.account != "ACCOUNT" && queue_account != place.account {
                fix.push_str(&format!(
                    "; the queue is in account {queue_account} and the exporter runs in account {}: the queue's access policy must allow {} as well",
                    place.account, place.grantee
                ));
            }
            (format!("access denied ({message})"), fix)
        }
        (ErrorReason::NotFound | ErrorReason::Validation, Some(url_region)) => (
            format!("no such queue in {} ({message})", queue.region),
            format!("the queue URL names {url_region}: set events.region = \"{url_region}\" (or leave events.region and [aws].region unset to take the URL's)"),
        ),
        (ErrorReason::NotFound | ErrorReason::Validation, None) => (
            format!("no such queue in {} ({message})", queue.region),
            "check events.queue_url: the CloudFormation stack's QueueUrl output (deploy/aws/healthlake-events.yaml), with {shard} where each replica has its own queue".to_owned(),
        ),
        (ErrorReason::Throttled, _) => (
            format!("throttled, so the permission is not proven ({message})"),
            "run the preflight again in a minute".to_owned(),
        ),
        _ => common(error, endpoint, timeout, place)
            .unwrap_or_else(|| (format!("failed ({message})"), String::new())),
    };
    Check::new(Status::Fail, subject, action, outcome).with_fix(fix)
}

/// The queue answered: its visibility timeout against the consumer's minimum, and what stays
/// unproven.
pub fn queue_answered(subject: &str, visibility: Duration, minimum: Duration, url: &str) -> Check {
    let action = "sqs:GetQueueAttributes";
    let shown = humantime::format_duration(visibility);
    let least = humantime::format_duration(minimum);
    if visibility < minimum {
        return Check::new(
            Status::Fail,
            subject,
            action,
            format!("allowed, but the queue's VisibilityTimeout is {shown}, below the {least} the consumer needs to keep a message hidden while its refresh runs"),
        )
        .with_fix(format!(
            "aws sqs set-queue-attributes --queue-url {url} --attributes VisibilityTimeout=30"
        ));
    }
    Check::new(
        Status::Ok,
        subject,
        action,
        format!("allowed; VisibilityTimeout {shown} (at least {least}); not proven: {UNPROVEN_SQS_ACTIONS}, which SQS cannot test without receiving messages: grant them as deploy/iam-policy-all-features.json does"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::sts::CallerIdentity;

    fn known(arn: &str) -> Principal {
        Principal::Known(CallerIdentity {
            arn: arn.to_owned(),
            account: arn_part(arn, 4).unwrap().to_owned(),
        })
    }

    #[test]
    fn grants_name_the_signer_and_the_resource_account() {
        let user = known("arn:aws:iam::123456789012:user/ops/alice");
        let place = Place::new(&user, None, "us-east-1");
        assert_eq!(place.grantee, "the user alice in account 123456789012");
        assert_eq!(
            place.datastore_arn("d1"),
            "arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/d1"
        );
        let pod =
            known("arn:aws-us-gov:sts::111122223333:assumed-role/app-role/botocore-session-1");
        let place = Place::new(&pod, None, "us-gov-west-1");
        assert_eq!(place.grantee, "the role app-role in account 111122223333");
        assert_eq!(
            place.datastore_arn("d1"),
            "arn:aws-us-gov:healthlake:us-gov-west-1:111122223333:datastore/fhir/d1"
        );
        // With a role_arn, the role signs: its account owns the datastore.
        let place = Place::new(
            &known("arn:aws:sts::210987654321:assumed-role/reader/healthlake-exporter"),
            Some("arn:aws:iam::210987654321:role/reader"),
            "eu-west-1",
        );
        assert_eq!(
            place.grantee,
            "the role arn:aws:iam::210987654321:role/reader"
        );
        assert_eq!(place.account, "210987654321");
        let unknown = Place::new(&Principal::Unknown, None, "us-east-1");
        assert_eq!(unknown.grantee, "the exporter's role");
        assert_eq!(
            unknown.datastore_arn("d1"),
            "arn:aws:healthlake:us-east-1:ACCOUNT:datastore/fhir/d1"
        );
    }

    #[test]
    fn transport_failures_name_the_endpoint_and_the_key() {
        let endpoint = Endpoint {
            url: "https://vpce-1.healthlake.us-east-1.vpce.amazonaws.com".to_owned(),
            key: "endpoint_url",
        };
        let timeout = Duration::from_secs(30);
        let dns = PollError::new(
            ErrorReason::Network,
            "could not reach HealthLake: dispatch failure: io error: client error (Connect): dns error: failed to lookup address information: Name or service not known",
        );
        let (outcome, fix) = transport(&dns, &endpoint, timeout);
        assert_eq!(
            outcome,
            "the host of https://vpce-1.healthlake.us-east-1.vpce.amazonaws.com does not resolve (DNS)"
        );
        assert!(fix.starts_with("check endpoint_url: "), "{fix}");
        let refused = PollError::new(
            ErrorReason::Network,
            "io error: Connection refused (os error 111)",
        );
        assert_eq!(
            transport(&refused, &endpoint, timeout).0,
            "nothing accepts connections at https://vpce-1.healthlake.us-east-1.vpce.amazonaws.com (connection refused)"
        );
        let slow = PollError::new(ErrorReason::Timeout, "the request timed out");
        assert_eq!(
            transport(&slow, &endpoint, timeout).0,
            "no answer from https://vpce-1.healthlake.us-east-1.vpce.amazonaws.com within 30s"
        );
    }

    #[test]
    fn queue_advice_names_the_region_the_account_and_the_policy() {
        let place = Place::new(
            &known("arn:aws:iam::123456789012:user/ops"),
            None,
            "us-west-2",
        );
        let endpoint = Endpoint {
            url: "https://sqs.us-west-2.amazonaws.com".to_owned(),
            key: "events.endpoint_url",
        };
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/events-0";
        let queue = Queue {
            url,
            region: "us-west-2",
            url_region: Some("us-east-1".to_owned()),
        };
        let missing = PollError::new(
            ErrorReason::NotFound,
            "HTTP 400 AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.",
        );
        let line = queue_failure(
            "events queue q",
            &queue,
            &missing,
            &place,
            &endpoint,
            Duration::from_secs(5),
        );
        assert_eq!(
            line.fix.as_deref(),
            Some("the queue URL names us-east-1: set events.region = \"us-east-1\" (or leave events.region and [aws].region unset to take the URL's)")
        );
        let other_account = Queue {
            url: "https://sqs.us-west-2.amazonaws.com/999999999999/events-0",
            region: "us-west-2",
            url_region: Some("us-west-2".to_owned()),
        };
        let denied = PollError::new(ErrorReason::AccessDenied, "HTTP 403 AccessDenied: denied");
        let line = queue_failure(
            "events queue q",
            &other_account,
            &denied,
            &place,
            &endpoint,
            Duration::from_secs(5),
        );
        assert_eq!(
            line.fix.as_deref(),
            Some("allow sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:ChangeMessageVisibility and sqs:DeleteMessage on arn:aws:sqs:us-west-2:999999999999:events-0 to the user ops in account 123456789012; the queue is in account 999999999999 and the exporter runs in account 123456789012: the queue's access policy must allow the user ops in account 123456789012 as well")
        );
        let ok = queue_answered(
            "events queue q",
            Duration::from_secs(10),
            Duration::from_secs(10),
            url,
        );
        assert_eq!(ok.status, Status::Ok);
        let short = queue_answered(
            "events queue q",
            Duration::from_secs(9),
            Duration::from_secs(10),
            url,
        );
        assert_eq!(short.status, Status::Fail);
    }
}
