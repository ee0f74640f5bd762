//! Amazon SQS's awsJson 1.0 protocol as `aws-sdk-sqs` speaks it today: `POST /` with
//! `X-Amz-Target: AmazonSQS.<Operation>`, `Content-Type: application/x-amz-json-1.0`, SigV4
//! scoped to `sqs`, the queue named by the body's `QueueUrl`. Errors carry the JSON
//! `{"__type", "message"}` body plus the `x-amzn-query-error: <code>;<Sender|Receiver>` header
//! SQS sends for compatibility with its older query protocol: the SDK takes the error code from
//! that header first (e.g. `AWS.SimpleQueueService.NonExistentQueue`), so the fake sends both.
//!
//! `ReceiveMessage` long-polls: with `WaitTimeSeconds` it waits until a message is sent or a
//! hidden one becomes visible again, and returns at once when there is one.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::fault::{self, ErrorFault, Protocol, Reply};
use super::server::{error_response, json_response, DropConnection, FakeBody};
use super::sqs::{
    queue_name_of_url, DeleteOutcome, QueueError, SqsOperation, VisibilityOutcome,
    MAX_MESSAGE_BYTES, MAX_RECEIVE_MESSAGES, MAX_VISIBILITY, MAX_WAIT_TIME, QUEUE_ACCOUNT_ID,
};
use super::wire::{
    check_authorization_for, is_json_content_type, parse_body, ApiError, ErrorCode,
    CONTENT_TYPE as AMZ_JSON,
};
use super::FakeHealthLake;

/// `X-Amz-Target` prefix of every SQS operation.
pub(crate) const TARGET_PREFIX: &str = "AmazonSQS.";

/// Longest `VisibilityTimeout` SQS accepts (12 hours).
const MAX_VISIBILITY_SECONDS: i64 = MAX_VISIBILITY.as_secs() as i64;
/// Longest `DelaySeconds` SQS accepts (15 minutes).
const MAX_DELAY_SECONDS: i64 = 900;
/// Most entries in one batch request.
const MAX_BATCH_ENTRIES: usize = 10;

/// An SQS error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SqsError {
    status: u16,
    /// The JSON body's `__type`.
    type_name: &'static str,
    /// The query-compatible code (`x-amzn-query-error`), the one the SDK reports.
    query_code: &'static str,
    /// `true`: the caller's fault (`Sender`), else SQS's (`Receiver`).
    sender: bool,
    message: String,
}

impl SqsError {
    fn new(
        status: u16,
        type_name: &'static str,
        query_code: &'static str,
        sender: bool,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            type_name,
            query_code,
            sender,
            message: message.into(),
        }
    }

    fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "com.amazon.coral.validate#ValidationException",
            "InvalidParameterValue",
            true,
            message,
        )
    }

    fn missing_parameter(name: &str) -> Self {
        Self::new(
            400,
            "com.amazon.coral.validate#ValidationException",
            "MissingParameter",
            true,
            format!("The request must contain the parameter {name}."),
        )
    }

    fn no_such_queue() -> Self {
        Self::new(
            400,
            "com.amazonaws.sqs#QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            true,
            "The specified queue does not exist.",
        )
    }

    fn access_denied(message: impl Into<String>) -> Self {
        Self::new(
            403,
            "com.amazon.coral.service#AccessDeniedException",
            "AccessDenied",
            true,
            message,
        )
    }

    fn batch(type_name: &'static str, query_code: &'static str, message: &str) -> Self {
        Self::new(400, type_name, query_code, true, message)
    }

    fn response(&self) -> Response<FakeBody> {
        let body = json!({ "__type": self.type_name, "message": self.message });
        let body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = json_response(status, FakeBody::full(body.into()));
        let kind = if self.sender { "Sender" } else { "Receiver" };
        if let Ok(value) = HeaderValue::from_str(&format!("{};{kind}", self.query_code)) {
            response.headers_mut().insert("x-amzn-query-error", value);
        }
        response
    }
}

impl From<QueueError> for SqsError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::NoSuchQueue => Self::no_such_queue(),
        }
    }
}

impl From<SqsError> for Reply {
    fn from(error: SqsError) -> Self {
        Self::answer(error.response())
    }
}

impl From<QueueError> for Reply {
    fn from(error: QueueError) -> Self {
        SqsError::from(error).into()
    }
}

/// Answers one SQS request (the body is already read and size-checked).
pub(crate) async fn handle(
    fake: &FakeHealthLake,
    target: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<FakeBody>, DropConnection> {
    let header = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    if let Err(error) = check_authorization_for(header(AUTHORIZATION.as_str()), "sqs") {
        return Ok(error_response(&error));
    }
    if !is_json_content_type(header(CONTENT_TYPE.as_str())) {
        return Ok(error_response(&ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {AMZ_JSON}"),
        )));
    }
    let Some(operation) = SqsOperation::from_name(target) else {
        return Ok(error_response(&ApiError::new(
            ErrorCode::UnknownOperation,
            format!("unknown or unsupported operation {target:?}"),
        )));
    };
    let shared = fake.sqs_shared().clone();
    let fault = {
        let mut queues = shared.lock();
        queues.count(operation);
        queues.fault(operation)
    };
    let answer = async {
        let tweaks = fault::apply(fault, &Sqs).await?;
        let value = dispatch(fake, operation, parse_body(body)?).await?;
        let body = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
        Ok(tweaks.respond(body))
    };
    answer.await.or_else(Reply::into_response)
}

/// SQS's words for the error faults. (`NextTokenLoop` and `DuplicateJobs` change nothing here:
/// no SQS answer pages or lists jobs.)
struct Sqs;

impl Protocol for Sqs {
    fn error(&self, fault: ErrorFault<'_>) -> Response<FakeBody> {
        let error = match fault {
            ErrorFault::Throttling => SqsError::new(
                400,
                "com.amazonaws.sqs#RequestThrottled",
                "RequestThrottled",
                true,
                "Rate exceeded",
            ),
            ErrorFault::InternalError => SqsError::new(
                500,
                "com.amazon.coral.service#InternalFailure",
                "InternalFailure",
                false,
                "We encountered an internal error. Please try again.",
            ),
            ErrorFault::AccessDenied => SqsError::access_denied(
                "Access to the resource https://sqs.us-east-1.amazonaws.com/ is denied.",
            ),
            ErrorFault::AccessDeniedWith(message) => SqsError::access_denied(message),
            ErrorFault::NotFound => SqsError::no_such_queue(),
            ErrorFault::Validation => SqsError::invalid_parameter("Injected validation error"),
            // SQS answers an expired token as every AWS front end does.
            ErrorFault::ExpiredToken => {
                return error_response(&ApiError::new(
                    ErrorCode::ExpiredToken,
                    "The security token included in the request is expired",
                ))
            }
            ErrorFault::UnknownError => SqsError::new(
                400,
                "com.amazonaws.sqs#SomethingNew",
                "AWS.SimpleQueueService.SomethingNew",
                true,
                "An error the SDK does not know",
            ),
        };
        error.response()
    }

    fn malformed_body(&self) -> &'static [u8] {
        b"{\"Messages\":[{\"MessageId\":\"tru"
    }
}

async fn dispatch(
    fake: &FakeHealthLake,
    operation: SqsOperation,
    value: Value,
) -> Result<Value, Reply> {
    match operation {
        SqsOperation::ReceiveMessage => receive(fake, request(value)?).await,
        SqsOperation::DeleteMessage => delete(fake, request(value)?),
        SqsOperation::DeleteMessageBatch => delete_batch(fake, request(value)?),
        SqsOperation::SendMessage => send(fake, request(value)?),
        SqsOperation::GetQueueAttributes => attributes(fake, request(value)?),
        SqsOperation::ChangeMessageVisibility => change_visibility(fake, request(value)?),
        SqsOperation::ChangeMessageVisibilityBatch => {
            change_visibility_batch(fake, request(value)?)
        }
    }
}

fn request<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Reply> {
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::Serialization,
            "request body must be a JSON object",
        )
        .into());
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(ErrorCode::Serialization, format!("invalid request: {e}")).into()
    })
}

/// The queue a request names; SQS checks the parameter before anything else.
fn queue_name(url: Option<&str>) -> Result<String, SqsError> {
    let url = url.ok_or_else(|| SqsError::missing_parameter("QueueUrl"))?;
    queue_name_of_url(url).map(str::to_owned).ok_or_else(|| {
        SqsError::new(
            400,
            "com.amazonaws.sqs#InvalidAddress",
            "InvalidAddress",
            true,
            "The address is not valid for this endpoint.",
        )
    })
}

/// An optional integer parameter within `range`, with SQS's wording when it is not.
fn bounded(name: &str, value: Option<i64>, min: i64, max: i64) -> Result<Option<i64>, SqsError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(SqsError::invalid_parameter(format!(
            "Value {v} for parameter {name} is invalid. Reason: Must be between {min} and {max}, if provided."
        ))),
        other => Ok(other),
    }
}

fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

fn epoch_millis(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveRequest {
    queue_url: Option<String>,
    max_number_of_messages: Option<i64>,
    visibility_timeout: Option<i64>,
    wait_time_seconds: Option<i64>,
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
}

async fn receive(fake: &FakeHealthLake, request: ReceiveRequest) -> Result<Value, Reply> {
    let name = queue_name(request.queue_url.as_deref())?;
    let max = bounded(
        "MaxNumberOfMessages",
        request.max_number_of_messages,
        1,
        MAX_RECEIVE_MESSAGES as i64,
    )?
    .map_or(1, |n| n as usize);
    let visibility = bounded(
        "VisibilityTimeout",
        request.visibility_timeout,
        0,
        MAX_VISIBILITY_SECONDS,
    )?
    .map(seconds);
    let wait = bounded(
        "WaitTimeSeconds",
        request.wait_time_seconds,
        0,
        MAX_WAIT_TIME.as_secs() as i64,
    )?
    .map_or(Duration::ZERO, seconds);
    let wanted: HashSet<&str> = request
        .attribute_names
        .iter()
        .chain(&request.message_system_attribute_names)
        .map(String::as_str)
        .collect();

    let shared = fake.sqs_shared().clone();
    let _in_flight = shared.receiving();
    let deadline = Instant::now() + wait;
    let received = loop {
        // Registered before looking, so a message sent in between still wakes this poll.
        let notified = shared.sent.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        let (received, next_visible) = {
            let mut queues = shared.lock();
            let received = queues.receive(&name, max, visibility, now)?;
            (received, queues.next_visible(&name, now))
        };
        if !received.is_empty() || now >= deadline {
            break received;
        }
        let wake = next_visible.map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    };
    if received.is_empty() {
        // SQS answers an empty receive with an empty object.
        return Ok(json!({}));
    }
    let all = wanted.contains("All");
    let messages: Vec<Value> = received
        .into_iter()
        .map(|m| {
            let mut attributes = serde_json::Map::new();
            let mut put = |key: &str, value: String| {
                if all || wanted.contains(key) {
                    attributes.insert(key.to_owned(), Value::String(value));
                }
            };
            put("SentTimestamp", epoch_millis(m.sent_at));
            put("ApproximateReceiveCount", m.receive_count.to_string());
            put(
                "ApproximateFirstReceiveTimestamp",
                epoch_millis(m.first_received_at),
            );
            put("SenderId", "AIDAFAKEEVENTBRIDGE".to_owned());
            let mut message = json!({
                "MessageId": m.id,
                "ReceiptHandle": m.receipt,
                "Body": m.body,
            });
            if !attributes.is_empty() {
                message["Attributes"] = Value::Object(attributes);
            }
            message
        })
        .collect();
    Ok(json!({ "Messages": messages }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteRequest {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
}

fn invalid_receipt(handle: &str) -> SqsError {
    SqsError::new(
        400,
        "com.amazonaws.sqs#ReceiptHandleIsInvalid",
        "ReceiptHandleIsInvalid",
        true,
        format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
    )
}

fn delete(fake: &FakeHealthLake, request: DeleteRequest) -> Result<Value, Reply> {
    let name = queue_name(request.queue_url.as_deref())?;
    let handle = request
        .receipt_handle
        .ok_or_else(|| SqsError::missing_parameter("ReceiptHandle"))?;
    match fake.sqs_shared().lock().delete(&name, &handle)? {
        DeleteOutcome::Ok => Ok(json!({})),
        DeleteOutcome::InvalidHandle => Err(invalid_receipt(&handle).into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchEntry {
    id: Option<String>,
    receipt_handle: Option<String>,
    /// `ChangeMessageVisibilityBatch` only.
    visibility_timeout: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchRequest {
    queue_url: Option<String>,
    entries: Option<Vec<BatchEntry>>,
}

/// Batch entry ids: 1..=80 characters of letters, digits, `-` and `_`.
fn valid_entry_id(id: &str) -> bool {
    (1..=80).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The queue and entries of a batch request, checked as SQS checks them before touching any
/// message: 1 to 10 entries, valid and distinct ids. `entry_name` names the entry type in
/// messages (`DeleteMessageBatchRequestEntry`).
fn batch_entries(
    request: BatchRequest,
    entry_name: &str,
) -> Result<(String, Vec<BatchEntry>), Reply> {
    let name = queue_name(request.queue_url.as_deref())?;
    let entries = request.entries.unwrap_or_default();
    if entries.is_empty() {
        return Err(SqsError::batch(
            "com.amazonaws.sqs#EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            &format!("There should be at least one {entry_name} in the request."),
        )
        .into());
    }
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(SqsError::batch(
            "com.amazonaws.sqs#TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            &format!(
                "Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {}.",
                entries.len()
            ),
        )
        .into());
    }
    let mut seen = HashSet::new();
    for entry in &entries {
        let id = entry.id.as_deref().unwrap_or("");
        if !valid_entry_id(id) {
            return Err(SqsError::batch(
                "com.amazonaws.sqs#InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            )
            .into());
        }
        if !seen.insert(id) {
            return Err(SqsError::batch(
                "com.amazonaws.sqs#BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                &format!("Id {id} repeated."),
            )
            .into());
        }
    }
    Ok((name, entries))
}

/// One failed entry of a batch answer.
fn failed_entry(id: &str, error: &SqsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": error.sender,
        "Code": error.query_code,
        "Message": error.message,
    })
}

fn delete_batch(fake: &FakeHealthLake, request: BatchRequest) -> Result<Value, Reply> {
    let (name, entries) = batch_entries(request, "DeleteMessageBatchRequestEntry")?;
    let mut queues = fake.sqs_shared().lock();
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        let id = entry.id.unwrap_or_default();
        let handle = entry.receipt_handle.unwrap_or_default();
        match queues.delete(&name, &handle)? {
            DeleteOutcome::Ok => successful.push(json!({ "Id": id })),
            DeleteOutcome::InvalidHandle => {
                failed.push(failed_entry(&id, &invalid_receipt(&handle)))
            }
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendRequest {
    queue_url: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<i64>,
}

fn send(fake: &FakeHealthLake, request: SendRequest) -> Result<Value, Reply> {
    let name = queue_name(request.queue_url.as_deref())?;
    let body = request
        .message_body
        .filter(|b| !b.is_empty())
        .ok_or_else(|| SqsError::missing_parameter("MessageBody"))?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(SqsError::invalid_parameter(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {MAX_MESSAGE_BYTES} bytes."
        ))
        .into());
    }
    let delay = bounded("DelaySeconds", request.delay_seconds, 0, MAX_DELAY_SECONDS)?
        .map_or(Duration::ZERO, seconds);
    let shared = fake.sqs_shared();
    let id = shared.lock().send(&name, body, delay, Instant::now())?;
    shared.sent.notify_waiters();
    Ok(json!({ "MessageId": id }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributesRequest {
    queue_url: Option<String>,
    #[serde(default)]
    attribute_names: Vec<String>,
}

fn attributes(fake: &FakeHealthLake, request: AttributesRequest) -> Result<Value, Reply> {
    let name = queue_name(request.queue_url.as_deref())?;
    let queues = fake.sqs_shared().lock();
    let (visible, in_flight) = queues.depth(&name, Instant::now())?;
    let visibility = queues.visibility_timeout(&name)?;
    drop(queues);
    let known: BTreeMap<&str, String> = [
        ("ApproximateNumberOfMessages", visible.to_string()),
        (
            "ApproximateNumberOfMessagesNotVisible",
            in_flight.to_string(),
        ),
        ("VisibilityTimeout", visibility.as_secs().to_string()),
        (
            "QueueArn",
            format!("arn:aws:sqs:us-east-1:{QUEUE_ACCOUNT_ID}:{name}"),
        ),
    ]
    .into_iter()
    .collect();
    let all = request.attribute_names.iter().any(|n| n == "All");
    let mut out = serde_json::Map::new();
    for wanted in &request.attribute_names {
        if wanted == "All" {
            continue;
        }
        match known.get(wanted.as_str()) {
            Some(value) => {
                out.insert(wanted.clone(), Value::String(value.clone()));
            }
            None => {
                return Err(SqsError::new(
                    400,
                    "com.amazonaws.sqs#InvalidAttributeName",
                    "InvalidAttributeName",
                    true,
                    format!("Unknown Attribute {wanted}."),
                )
                .into())
            }
        }
    }
    if all {
        for (key, value) in known {
            out.insert(key.to_owned(), Value::String(value));
        }
    }
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": out }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeVisibilityRequest {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<i64>,
}

/// SQS's answer to a refused visibility change.
fn visibility_error(outcome: &VisibilityOutcome, handle: &str) -> Option<SqsError> {
    match outcome {
        VisibilityOutcome::Ok => None,
        VisibilityOutcome::InvalidHandle => Some(invalid_receipt(handle)),
        VisibilityOutcome::Stale => Some(SqsError::invalid_parameter(format!(
            "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."
        ))),
        VisibilityOutcome::NotInFlight => Some(SqsError::new(
            400,
            "com.amazonaws.sqs#MessageNotInflight",
            "AWS.SimpleQueueService.MessageNotInflight",
            true,
            "The message referred to is not in flight.",
        )),
        VisibilityOutcome::TooLong => Some(SqsError::invalid_parameter(format!(
            "Value {handle} for parameter ReceiptHandle is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [{MAX_VISIBILITY_SECONDS} seconds]."
        ))),
    }
}

/// A `VisibilityTimeout` parameter: required, 0 to 12 hours.
fn visibility_timeout(value: Option<i64>) -> Result<Duration, SqsError> {
    bounded("VisibilityTimeout", value, 0, MAX_VISIBILITY_SECONDS)?
        .map(seconds)
        .ok_or_else(|| SqsError::missing_parameter("VisibilityTimeout"))
}

fn change_visibility(
    fake: &FakeHealthLake,
    request: ChangeVisibilityRequest,
) -> Result<Value, Reply> {
    let name = queue_name(request.queue_url.as_deref())?;
    let handle = request
        .receipt_handle
        .ok_or_else(|| SqsError::missing_parameter("ReceiptHandle"))?;
    let timeout = visibility_timeout(request.visibility_timeout)?;
    let outcome =
        fake.sqs_shared()
            .lock()
            .change_visibility(&name, &handle, timeout, Instant::now())?;
    match visibility_error(&outcome, &handle) {
        None => Ok(json!({})),
        Some(error) => Err(error.into()),
    }
}

fn change_visibility_batch(fake: &FakeHealthLake, request: BatchRequest) -> Result<Value, Reply> {
    let (name, entries) = batch_entries(request, "ChangeMessageVisibilityBatchRequestEntry")?;
    let mut queues = fake.sqs_shared().lock();
    let now = Instant::now();
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        let id = entry.id.unwrap_or_default();
        let Some(handle) = entry.receipt_handle else {
            failed.push(failed_entry(
                &id,
                &SqsError::missing_parameter("ReceiptHandle"),
            ));
            continue;
        };
        let timeout = match visibility_timeout(entry.visibility_timeout) {
            Ok(timeout) => timeout,
            Err(error) => {
                failed.push(failed_entry(&id, &error));
                continue;
            }
        };
        let outcome = queues.change_visibility(&name, &handle, timeout, now)?;
        match visibility_error(&outcome, &handle) {
            None => successful.push(json!({ "Id": id })),
            Some(error) => failed.push(failed_entry(&id, &error)),
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_query_compatible_code() {
        let response = SqsError::no_such_queue().response();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-query-error"],
            "AWS.SimpleQueueService.NonExistentQueue;Sender"
        );
    }

    #[test]
    fn entry_ids_follow_sqs_rules() {
        assert!(valid_entry_id("0"));
        assert!(valid_entry_id("a-b_C9"));
        assert!(!valid_entry_id(""));
        assert!(!valid_entry_id("a b"));
        assert!(!valid_entry_id(&"x".repeat(81)));
    }

    #[test]
    fn bounds_use_sqs_wording() {
        let error = bounded("WaitTimeSeconds", Some(21), 0, 20).unwrap_err();
        assert_eq!(error.query_code, "InvalidParameterValue");
        assert!(error
            .message
            .contains("Value 21 for parameter WaitTimeSeconds is invalid"));
        assert_eq!(bounded("WaitTimeSeconds", Some(20), 0, 20), Ok(Some(20)));
        assert_eq!(bounded("WaitTimeSeconds", None, 0, 20), Ok(None));
    }
}
