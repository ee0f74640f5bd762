//! The SQS calls of the event consumer, with `aws-sdk-sqs` (the only place that touches its
//! types): long-poll `ReceiveMessage`, `ChangeMessageVisibilityBatch` (keeping messages hidden
//! while their refresh waits and runs), `DeleteMessageBatch`, and the start-up
//! `GetQueueAttributes` that reads the queue's visibility timeout. The client is built from the
//! HealthLake clients' base configuration (one HTTP connection pool, one credentials chain), with
//! its own region, endpoint and role from `[events]`, a timeout of the long-poll wait plus a
//! margin so a long poll is never cut short — nor left hanging — and a cap on response bodies
//! (an endpoint that answers with hundreds of megabytes is an error, not an allocation). What it
//! needs from `[events]` comes in as [`QueueSettings`]; the consumer (`events`) adapts it to its
//! own queue interface.

use std::time::Duration;

use aws_config::Region;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;

use super::classify::{classify_for, ResponseSizeLimit};
use super::{
    region_of, role_credentials, AwsTarget, ClientError, ClientOptions, Clients, CONNECT_TIMEOUT,
};
use crate::model::{ErrorReason, PollError};

/// The AssumeRole session name of the SQS client.
pub(crate) const SESSION_NAME: &str = "healthlake-exporter-events";
/// Most messages one `ReceiveMessage` returns (SQS's limit).
const MAX_MESSAGES: i32 = 10;
/// Most entries one `DeleteMessageBatch` or `ChangeMessageVisibilityBatch` takes (SQS's limit).
pub const DELETE_BATCH_SIZE: usize = 10;
/// Largest SQS answer read: ten messages of SQS's default 256 KiB maximum, JSON-escaped, with
/// their attributes fit several times over. A larger answer fails the call (reason
/// `server_error`) without being read into memory.
pub const MAX_SQS_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// What the queue client is built for (from `[events]`, by the config module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// This replica's queue (`{shard}` already replaced).
    pub queue_url: String,
    /// SQS's own region, endpoint and role.
    pub target: AwsTarget,
    /// `WaitTimeSeconds` of a long poll.
    pub wait_time: Duration,
    /// The timeout of one call: the wait plus a margin.
    pub call_timeout: Duration,
}

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsMessage {
    /// `MessageId`: the same for every delivery of one message.
    pub message_id: String,
    /// What deletes it, or changes its visibility: only the newest receive's handle does.
    pub receipt: String,
    pub body: String,
    /// `ApproximateReceiveCount`: above 1 when this is a redelivery (1 when SQS did not say).
    pub receive_count: u32,
}

/// One replica's event queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    wait_time: Duration,
}

/// Sends one `…Batch` call of `entries` to `queue`'s URL and counts the entries that failed
/// (logged as `what`). `ChangeMessageVisibilityBatch` and `DeleteMessageBatch` have the same
/// shape under other type names: the call is spelled once.
macro_rules! send_batch {
    ($queue:expr, $operation:ident, $entries:expr, $what:expr) => {{
        let output = $queue
            .client
            .$operation()
            .queue_url(&$queue.queue_url)
            .set_entries(Some($entries))
            .send()
            .await
            .map_err(|e| classify_for("SQS", e))?;
        Ok(count_failed(output.failed(), $what))
    }};
}

impl SqsQueue {
    /// The client for `queue_url` (the replica's, `{shard}` already replaced). Makes no call.
    pub async fn build(
        settings: QueueSettings,
        clients: &Clients,
        options: &ClientOptions,
    ) -> Result<SqsQueue, ClientError> {
        let base = clients.base_config(options).await;
        let region = region_of(
            &settings.target,
            &base,
            "[events] (set events.region, or a region in the queue URL)",
        )?;
        let call_timeout = settings.call_timeout;
        let mut builder = aws_sdk_sqs::config::Builder::from(&base)
            .region(region.clone())
            .interceptor(ResponseSizeLimit {
                max_bytes: MAX_SQS_RESPONSE_BYTES,
            })
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(call_timeout)
                    .operation_timeout(call_timeout)
                    .build(),
            );
        if let Some(url) = &settings.target.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(role_arn) = &settings.target.role_arn {
            let role = role_credentials(role_arn, SESSION_NAME, region, &base).await;
            builder = builder.credentials_provider(role);
        }
        Ok(SqsQueue {
            client: Client::from_conf(builder.build()),
            queue_url: settings.queue_url,
            wait_time: settings.wait_time,
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The region the client signs for (the preflight names it, and checks the queue URL's).
    pub fn region(&self) -> Option<Region> {
        self.client.config().region().cloned()
    }

    /// The queue's `VisibilityTimeout` (`GetQueueAttributes`).
    pub async fn visibility_timeout(&self) -> Result<Duration, PollError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| classify_for("SQS", e))?;
        output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| {
                PollError::new(
                    ErrorReason::ServerError,
                    "GetQueueAttributes answered without a VisibilityTimeout",
                )
            })
    }

    /// One `ReceiveMessage` of up to 10 messages, hidden for `visibility` from then on: a long
    /// poll of the plan's wait time, or with `long_poll = false` an immediate answer.
    pub async fn receive(
        &self,
        long_poll: bool,
        visibility: Duration,
    ) -> Result<Vec<SqsMessage>, PollError> {
        let wait = if long_poll {
            self.wait_time
        } else {
            Duration::ZERO
        };
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(MAX_MESSAGES)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(whole_seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify_for("SQS", e))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                // A message without a receipt handle could never be deleted: SQS always sends one.
                let receipt = m.receipt_handle?;
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                Some(SqsMessage {
                    // SQS always sends one; without it, the handle keys this delivery alone.
                    message_id: m.message_id.unwrap_or_else(|| receipt.clone()),
                    receipt,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    /// `ChangeMessageVisibilityBatch` of up to [`DELETE_BATCH_SIZE`] receipts: each message stays
    /// hidden for `visibility` from now. Returns how many entries failed.
    pub async fn extend(
        &self,
        receipts: Vec<String>,
        visibility: Duration,
    ) -> Result<usize, PollError> {
        let seconds = whole_seconds(visibility);
        let entries = batch(receipts, |id, receipt| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(receipt)
                .visibility_timeout(seconds)
                .build()
        });
        send_batch!(
            self,
            change_message_visibility_batch,
            entries,
            "event queue: visibility not extended"
        )
    }

    /// `DeleteMessageBatch` of up to [`DELETE_BATCH_SIZE`] receipts; returns how many failed.
    pub async fn delete(&self, receipts: Vec<String>) -> Result<usize, PollError> {
        let entries = batch(receipts, |id, receipt| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(receipt)
                .build()
        });
        send_batch!(
            self,
            delete_message_batch,
            entries,
            "event queue: message not deleted"
        )
    }
}

/// The entries of a batch call, one per receipt, with their index as the entry id.
fn batch<T, E>(receipts: Vec<String>, entry: impl Fn(String, String) -> Result<T, E>) -> Vec<T> {
    debug_assert!(receipts.len() <= DELETE_BATCH_SIZE);
    receipts
        .into_iter()
        .enumerate()
        .filter_map(|(i, receipt)| entry(i.to_string(), receipt).ok())
        .collect()
}

/// Logs (at debug) each entry a batch call failed, with `what` happened; returns how many.
fn count_failed(failed: &[BatchResultErrorEntry], what: &str) -> usize {
    for entry in failed {
        tracing::debug!(
            code = entry.code(),
            message = entry.message().unwrap_or(""),
            "{what}"
        );
    }
    failed.len()
}

/// A visibility timeout as SQS takes it: whole seconds, at most 12 hours.
fn whole_seconds(visibility: Duration) -> i32 {
    visibility.min(MAX_VISIBILITY).as_secs() as i32
}
