//! Who the exporter runs as: `sts:GetCallerIdentity` with the base credentials chain, then with
//! each `role_arn` of the configuration (which also proves the AssumeRole). Checked first, so
//! that every later line can name the principal and the account to grant to, and so that calls
//! whose credentials cannot be loaded are skipped with one clear reason instead of failing
//! one by one.

use std::collections::BTreeMap;

use aws_config::{Region, SdkConfig};

use super::advice::{self, Place};
use super::report::{Check, Status};
use crate::aws::sts::{caller_identity, CallerIdentity};
use crate::aws::{role_credentials, sqs, SESSION_NAME};
use crate::model::ErrorReason;

/// What the preflight knows about one set of credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// STS named it.
    Known(CallerIdentity),
    /// The credentials loaded but STS could not say whose they are (unreachable): the calls go
    /// ahead, and their advice names no principal.
    Unknown,
    /// The credentials could not be loaded: calls made with them are skipped, citing `subject`.
    Failed { subject: String },
}

/// The principal of the base chain and of each `role_arn`.
#[derive(Clone, Debug)]
pub struct Identities {
    base: Principal,
    roles: BTreeMap<String, Principal>,
}

/// A role the configuration names, where it is first used, and the session name of that use.
pub struct RoleUse {
    pub role_arn: String,
    pub region: Region,
    pub events: bool,
}

impl Identities {
    /// Checks the base chain (in `region`, the first client's) and then every role, each line
    /// passed to `report` as it is known.
    pub async fn check(
        base: &SdkConfig,
        region: Option<Region>,
        roles: Vec<RoleUse>,
        report: &mut dyn FnMut(Check),
    ) -> Identities {
        let (check, base_principal) = check_base(base, region).await;
        report(check);
        let mut identities = Identities {
            base: base_principal,
            roles: BTreeMap::new(),
        };
        for role in roles {
            if identities.roles.contains_key(&role.role_arn) {
                continue;
            }
            let (check, principal) = identities.check_role(base, &role).await;
            report(check);
            identities.roles.insert(role.role_arn, principal);
        }
        identities
    }

    /// The principal whose credentials sign calls for `role_arn` (the base chain's for `None`).
    pub fn of(&self, role_arn: Option<&str>) -> &Principal {
        match role_arn.and_then(|arn| self.roles.get(arn)) {
            Some(principal) => principal,
            None => &self.base,
        }
    }

    async fn check_role(&self, base: &SdkConfig, role: &RoleUse) -> (Check, Principal) {
        let subject = format!("role {}", role.role_arn);
        let action = "sts:AssumeRole";
        if let Principal::Failed { subject: failed } = &self.base {
            let check = Check::new(Status::Skip, &subject, action, skipped_because(failed));
            return (check, Principal::Failed { subject });
        }
        let session = if role.events {
            sqs::SESSION_NAME
        } else {
            SESSION_NAME
        };
        let credentials =
            role_credentials(&role.role_arn, session, role.region.clone(), base).await;
        let result = caller_identity(base, Some(role.region.clone()), Some(credentials)).await;
        match result {
            Ok(identity) => {
                let outcome = format!("assumed as {}", identity.arn);
                (
                    Check::new(Status::Ok, &subject, action, outcome),
                    Principal::Known(identity),
                )
            }
            Err(error) if error.reason == ErrorReason::Credentials => {
                let place = Place::role(&self.base, &role.role_arn, &role.region);
                let check = advice::assume_role_failed(&subject, &error, &place);
                (check, Principal::Failed { subject })
            }
            Err(error) => (
                advice::sts_unreachable(&subject, action, &error, base, &role.region).await,
                Principal::Unknown,
            ),
        }
    }
}

/// The line of a call not tried because the credentials it needs failed.
pub fn skipped_because(subject: &str) -> String {
    format!("not tried: the credentials of {subject} failed (see above)")
}

async fn check_base(base: &SdkConfig, region: Option<Region>) -> (Check, Principal) {
    let subject = "identity";
    let action = "sts:GetCallerIdentity";
    match caller_identity(base, region.clone(), None).await {
        Ok(identity) => {
            let outcome = format!("{} (account {})", identity.arn, identity.account);
            (
                Check::new(Status::Ok, subject, action, outcome),
                Principal::Known(identity),
            )
        }
        Err(error) if error.reason == ErrorReason::Credentials => (
            advice::no_credentials(subject, action, &error),
            Principal::Failed {
                subject: subject.to_owned(),
            },
        ),
        Err(error) => {
            let region = region.unwrap_or_else(|| Region::new("us-east-1"));
            (
                advice::sts_unreachable(subject, action, &error, base, &region).await,
                Principal::Unknown,
            )
        }
    }
}
