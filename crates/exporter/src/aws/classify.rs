//! Sorting SDK failures into our short, stable `reason` labels, with a one-line message fit for a
//! log (never credentials); and the response size cap whose breach is one of those failures.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_healthlake::config::http::HttpResponse;
use aws_sdk_healthlake::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_healthlake::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_healthlake::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::body::SdkBody;

use crate::model::{ErrorReason, PollError};

/// A page of 500 jobs is a few hundred KiB; anything past this is not a HealthLake answer.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Caps the size of a response body before the SDK reads it into memory.
#[derive(Debug)]
pub(super) struct ResponseSizeLimit {
    pub(super) max_bytes: usize,
}

/// A response declared larger than `MAX_RESPONSE_BYTES`.
#[derive(Debug, thiserror::Error)]
#[error("the response is larger than {max_bytes} bytes")]
struct ResponseTooLarge {
    max_bytes: usize,
}

impl Intercept for ResponseSizeLimit {
    fn name(&self) -> &'static str {
        "ResponseSizeLimit"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn StdError + Send + Sync>> {
        let response = context.response_mut();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_bytes as u64) {
            return Err(Box::new(ResponseTooLarge {
                max_bytes: self.max_bytes,
            }));
        }
        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, self.max_bytes));
        Ok(())
    }
}

/// Sorts an SDK failure into one of our reasons, with a message fit for a log line.
pub(super) fn classify<E>(error: SdkError<E, HttpResponse>) -> PollError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    classify_for("HealthLake", error)
}

/// [`classify`] for another service's SDK (`service_name` names it in messages: "SQS"). The
/// SDKs share the error and response types, and SQS's codes are in [`reason_for_code`].
pub(super) fn classify_for<E>(service_name: &str, error: SdkError<E, HttpResponse>) -> PollError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let declared = find_source::<ResponseTooLarge>(&error).map(|e| e.max_bytes);
    if declared.is_some() || find_source::<http_body_util::LengthLimitError>(&error).is_some() {
        // The limit is only known from a declared length; a streamed body hit the same cap.
        let cap = declared.map_or_else(|| "its size cap".to_owned(), |b| format!("{b} bytes"));
        return PollError::new(
            ErrorReason::ServerError,
            format!("oversized response from {service_name}: larger than {cap}"),
        );
    }
    if let Some(credentials) = find_source::<CredentialsError>(&error) {
        return PollError::new(
            ErrorReason::Credentials,
            format!("could not load AWS credentials: {}", one_line(credentials)),
        );
    }
    match &error {
        SdkError::TimeoutError(_) => PollError::new(ErrorReason::Timeout, "the request timed out"),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => PollError::new(
            ErrorReason::Timeout,
            format!("timed out: {}", one_line(&error)),
        ),
        SdkError::DispatchFailure(failure) if failure.is_user() => PollError::new(
            ErrorReason::Other,
            format!("request failed: {}", one_line(&error)),
        ),
        SdkError::DispatchFailure(_) => PollError::new(
            ErrorReason::Network,
            format!("could not reach {service_name}: {}", one_line(&error)),
        ),
        SdkError::ResponseError(_) => PollError::new(
            ErrorReason::ServerError,
            format!(
                "malformed response from {service_name}: {}",
                one_line(&error)
            ),
        ),
        SdkError::ServiceError(service) if service.raw().status().is_success() => {
            // A 2xx answer whose body could not be read as the model says: a malformed response.
            PollError::new(
                ErrorReason::ServerError,
                format!(
                    "malformed response from {service_name}: {}",
                    one_line(&error)
                ),
            )
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let inner = service.err();
            let code = inner.code().unwrap_or("");
            let message = inner.message().unwrap_or("no message");
            // Every operation's modelled errors carry their shape name as the code.
            let reason = reason_for_code(code, status);
            let code = if code.is_empty() {
                "no error code"
            } else {
                code
            };
            PollError::new(reason, format!("HTTP {status} {code}: {message}"))
        }
        _ => PollError::new(ErrorReason::Other, one_line(&error)),
    }
}

/// Error codes the model does not list but AWS's front door returns.
fn reason_for_code(code: &str, status: u16) -> ErrorReason {
    match code {
        "ExpiredTokenException"
        | "ExpiredToken"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignatureException" => ErrorReason::Credentials,
        "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "KMS.ThrottlingException" => ErrorReason::Throttled,
        "AccessDeniedException" | "AccessDenied" | "KMS.AccessDeniedException" => {
            ErrorReason::AccessDenied
        }
        // SQS's query-compatible codes (the SDK reports them from `x-amzn-query-error`).
        "ResourceNotFoundException" | "AWS.SimpleQueueService.NonExistentQueue" => {
            ErrorReason::NotFound
        }
        "ValidationException" | "InvalidParameterValue" | "MissingParameter" | "InvalidAddress" => {
            ErrorReason::Validation
        }
        "InternalServerException" => ErrorReason::ServerError,
        "ServiceUnavailableException" | "InternalFailure" | "ServiceUnavailable" => {
            ErrorReason::ServerError
        }
        _ => match status {
            429 => ErrorReason::Throttled,
            403 => ErrorReason::AccessDenied,
            404 => ErrorReason::NotFound,
            500..=599 => ErrorReason::ServerError,
            _ => ErrorReason::Other,
        },
    }
}

pub(super) fn find_source<'a, T: StdError + 'static>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The error and its causes on one line, as `a: b: c`, without repeats.
fn one_line(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmodelled_codes_and_statuses_get_the_right_reason() {
        assert_eq!(
            reason_for_code("ExpiredTokenException", 400),
            ErrorReason::Credentials
        );
        assert_eq!(
            reason_for_code("UnrecognizedClientException", 403),
            ErrorReason::Credentials
        );
        assert_eq!(
            reason_for_code("TooManyRequestsException", 400),
            ErrorReason::Throttled
        );
        assert_eq!(
            reason_for_code("SomethingNew", 503),
            ErrorReason::ServerError
        );
        assert_eq!(reason_for_code("SomethingNew", 429), ErrorReason::Throttled);
        assert_eq!(reason_for_code("SomethingNew", 400), ErrorReason::Other);
        assert_eq!(
            reason_for_code("RequestThrottled", 400),
            ErrorReason::Throttled
        );
        assert_eq!(
            reason_for_code("AWS.SimpleQueueService.NonExistentQueue", 400),
            ErrorReason::NotFound
        );
        assert_eq!(
            reason_for_code("AccessDenied", 403),
            ErrorReason::AccessDenied
        );
        assert_eq!(
            reason_for_code("InvalidParameterValue", 400),
            ErrorReason::Validation
        );
    }
}
