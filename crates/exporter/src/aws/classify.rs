//! Sorting SDK failures into our short, stable `reason` labels, with a one-line message fit for a
//! log (never credentials); the response size cap whose breach is one of those failures; and the
//! bound on any message from outside that we keep (an error's text, a job's `Message`), so that a
//! 200 KB message is not held per feed.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_healthlake::config::http::HttpResponse;
use aws_sdk_healthlake::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_healthlake::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_healthlake::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::body::SdkBody;

use crate::logging::{cut_text, MAX_FIELD_BYTES};
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

/// The longest message from outside we keep, in bytes, cut marker included: an API error's text
/// ([`PollError::message`]) and a job's `Message` (HealthLake's are at most 2,048 characters; what
/// an operator needs is at their start). It stays below the log format's cut
/// ([`MAX_FIELD_BYTES`]), so a log line shows a kept message whole, marker included (unless the
/// text format's escapes lengthen a verbatim one).
pub const MAX_MESSAGE_BYTES: usize = MAX_FIELD_BYTES - 64;

/// Room kept for the cut marker: `…(18446744073709551615 bytes more)` is 36 bytes.
const MARKER_ROOM: usize = 40;

/// How [`bound_message`] writes a message: as it is, or on one line with every control character,
/// line separator and bidi override escaped (`\n`, `\u{1b}`), as the text log format writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escaping {
    Verbatim,
    OneLine,
}

/// `text` written as `escaping` says and cut, on a character boundary, to at most
/// [`MAX_MESSAGE_BYTES`] bytes; a cut message ends with `…(N bytes more)`, N counting the bytes of
/// `text` left out. The escapes and the cut are the log format's ([`cut_text`]).
pub(crate) fn bound_message(text: &str, escaping: Escaping) -> String {
    cut_text(
        text,
        escaping == Escaping::OneLine,
        MAX_MESSAGE_BYTES - MARKER_ROOM,
    )
}

/// Sorts an SDK failure into one of our reasons, with a message fit for a log line.
pub(super) fn classify<E>(error: SdkError<E, HttpResponse>) -> PollError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    classify_for("HealthLake", error)
}

/// [`classify`] for another service's SDK (`service_name` names it in messages: "SQS"). The
/// SDKs share the error and response types, and SQS's codes are in [`reason_for_code`]. The
/// message is bounded ([`MAX_MESSAGE_BYTES`]): State keeps it per feed.
pub(super) fn classify_for<E>(service_name: &str, error: SdkError<E, HttpResponse>) -> PollError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let mut error = classify_unbounded(service_name, error);
    if error.message.len() > MAX_MESSAGE_BYTES {
        error.message = bound_message(&error.message, Escaping::Verbatim);
    }
    error
}

/// [`classify_for`] before the message is bounded.
fn classify_unbounded<E>(service_name: &str, error: SdkError<E, HttpResponse>) -> PollError
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

    /// An access-denied answer whose message is 200 KB (a policy document quoted back, a proxy's
    /// error page): the kept message is cut at its start to [`MAX_MESSAGE_BYTES`], says how much
    /// was left out, and is otherwise the message as sent (the log format escapes it when written).
    #[test]
    fn a_huge_error_message_is_kept_bounded() {
        use aws_sdk_healthlake::error::ErrorMetadata;
        use aws_sdk_healthlake::operation::list_fhir_export_jobs::ListFHIRExportJobsError;

        let huge = format!(
            "User: arn:aws:sts::1:assumed-role/r is not authorized\n{}",
            "x".repeat(200 * 1024)
        );
        let denied = |message: &str| {
            let meta = ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message(message)
                .build();
            let response = HttpResponse::new(403.try_into().unwrap(), SdkBody::empty());
            SdkError::service_error(ListFHIRExportJobsError::generic(meta), response)
        };
        let error = classify(denied(&huge));
        assert_eq!(error.reason, ErrorReason::AccessDenied);
        assert!(
            error.message.len() <= MAX_MESSAGE_BYTES,
            "{}",
            error.message.len()
        );
        let kept = error.message.split('…').next().unwrap();
        let prefix = "HTTP 403 AccessDeniedException: User: arn:aws:sts::1:assumed-role/r is not authorized\n";
        assert!(kept.starts_with(prefix), "{kept}");
        let full_len = "HTTP 403 AccessDeniedException: ".len() + huge.len();
        assert!(
            error
                .message
                .ends_with(&format!("…({} bytes more)", full_len - kept.len())),
            "{}",
            &error.message[kept.len()..]
        );
        // A message that fits is kept whole.
        let short = classify(denied("not authorized"));
        assert_eq!(
            short.message,
            "HTTP 403 AccessDeniedException: not authorized"
        );
    }

    #[test]
    fn bound_message_escapes_one_line_messages_and_cuts_on_a_character_boundary() {
        let hostile = format!("bad\n\r\t\u{1b}[31mred\u{202e}{}", "é".repeat(2_000));
        let one_line = bound_message(&hostile, Escaping::OneLine);
        assert!(
            one_line.starts_with("bad\\n\\r\\t\\u{1b}[31mred\\u{202e}é"),
            "{one_line}"
        );
        assert!(!one_line.chars().any(char::is_control), "{one_line}");
        assert!(one_line.len() <= MAX_MESSAGE_BYTES);
        assert!(one_line.ends_with(" bytes more)"), "{one_line}");
        let verbatim = bound_message(&hostile, Escaping::Verbatim);
        assert!(verbatim.starts_with("bad\n\r\t\u{1b}[31mred"), "{verbatim}");
        assert!(verbatim.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(bound_message("short", Escaping::OneLine), "short");
    }
}
