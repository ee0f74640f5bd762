//! `sts:GetCallerIdentity` with the credentials a client signs with: who the exporter runs as
//! (the pod's role, a user, the session of a `role_arn`). The preflight names that principal in
//! its report and in the grants it suggests. The STS client is built from the same base
//! configuration as every other client (one HTTP connection pool, one credentials chain, the
//! same timeouts), in the region of the client whose credentials it checks. The call needs no
//! permission: it fails only when the credentials cannot be loaded (an AssumeRole refused
//! included) or STS cannot be reached.

use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;

use super::classify::{classify_for, find_source, ResponseSizeLimit};
use crate::model::{ErrorReason, PollError};

/// An STS answer is well under a kilobyte.
const MAX_STS_RESPONSE_BYTES: usize = 64 * 1024;

/// Who a set of credentials belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    /// `arn:aws:iam::123456789012:user/NAME`, `arn:aws:sts::123456789012:assumed-role/NAME/SESSION`.
    pub arn: String,
    pub account: String,
}

/// `GetCallerIdentity` through STS in `region`, signed with `credentials` (the base chain's
/// when `None`).
pub async fn caller_identity(
    base: &SdkConfig,
    region: Option<Region>,
    credentials: Option<SharedCredentialsProvider>,
) -> Result<CallerIdentity, PollError> {
    let mut builder = aws_sdk_sts::config::Builder::from(base).interceptor(ResponseSizeLimit {
        max_bytes: MAX_STS_RESPONSE_BYTES,
    });
    if let Some(region) = region {
        builder = builder.region(region);
    }
    if let Some(credentials) = credentials {
        builder = builder.credentials_provider(credentials);
    }
    let client = aws_sdk_sts::Client::from_conf(builder.build());
    let output = client
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| assume_role_refused(&e).unwrap_or_else(|| classify_for("STS", e)))?;
    match (output.arn, output.account) {
        (Some(arn), Some(account)) => Ok(CallerIdentity { arn, account }),
        _ => Err(PollError::new(
            ErrorReason::ServerError,
            "GetCallerIdentity answered without an Arn or an Account",
        )),
    }
}

/// The credentials of a `role_arn` failed because STS refused the AssumeRole: its code and
/// message, as STS gave them (the credentials error around them prints them as debug output).
fn assume_role_refused<E>(error: &SdkError<E, HttpResponse>) -> Option<PollError>
where
    E: std::error::Error + 'static,
{
    let refused = find_source::<SdkError<AssumeRoleError, HttpResponse>>(error)?;
    let code = refused.code()?;
    let message = refused.message().unwrap_or("no message");
    Some(PollError::new(
        ErrorReason::Credentials,
        format!("STS refused the AssumeRole: {code}: {message}"),
    ))
}
