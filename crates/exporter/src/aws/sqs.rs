//! The SQS calls of the event consumer, with `aws-sdk-sqs` (the only place that touches its
//! types): long-poll `ReceiveMessage`, `DeleteMessageBatch`, and the start-up
//! `GetQueueAttributes` that checks the queue's visibility timeout. The client is built from the
//! HealthLake clients' base configuration (one HTTP connection pool, one credentials chain), with
//! its own region, endpoint and role from `[events]`, and a timeout of the long-poll wait plus a
//! margin so a long poll is never cut short — nor left hanging. What it needs from `[events]`
//! comes in as a [`QueuePlan`]; the consumer (`events`) adapts it to its own queue interface.

use std::time::Duration;

use aws_config::Region;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use aws_sdk_sqs::Client;

use super::classify::classify_for;
use super::{AwsTarget, ClientError, ClientOptions, Clients};
use crate::model::{ErrorReason, PollError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SESSION_NAME: &str = "healthlake-exporter-events";
/// Most messages one `ReceiveMessage` returns (SQS's limit).
const MAX_MESSAGES: i32 = 10;
/// Most entries one `DeleteMessageBatch` takes (SQS's limit).
pub const DELETE_BATCH_SIZE: usize = 10;

/// What the queue client is built for (from `[events]`, by the config module).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePlan {
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
    /// What deletes it.
    pub receipt: String,
    pub body: String,
}

/// One replica's event queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    wait_time: Duration,
}

impl SqsQueue {
    /// The client for `queue_url` (the replica's, `{shard}` already replaced). Makes no call.
    pub async fn build(
        plan: QueuePlan,
        clients: &Clients,
        options: &ClientOptions,
    ) -> Result<SqsQueue, ClientError> {
        let base = clients.base_config(options).await;
        let region = plan
            .target
            .region
            .clone()
            .map(Region::new)
            .or_else(|| base.region().cloned())
            .ok_or_else(|| ClientError::NoRegion {
                user: "[events] (set events.region, or a region in the queue URL)".to_owned(),
            })?;
        let call_timeout = plan.call_timeout;
        let mut builder = aws_sdk_sqs::config::Builder::from(&base)
            .region(region.clone())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(call_timeout)
                    .operation_timeout(call_timeout)
                    .build(),
            );
        if let Some(url) = &plan.target.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(role_arn) = &plan.target.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
                .session_name(SESSION_NAME)
                .region(region)
                .configure(&base)
                .build()
                .await;
            builder = builder.credentials_provider(provider);
        }
        Ok(SqsQueue {
            client: Client::from_conf(builder.build()),
            queue_url: plan.queue_url,
            wait_time: plan.wait_time,
        })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
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

    /// One `ReceiveMessage` of up to 10 messages: a long poll of the plan's wait time, or with
    /// `long_poll = false` an immediate answer.
    pub async fn receive(&self, long_poll: bool) -> Result<Vec<SqsMessage>, PollError> {
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
                Some(SqsMessage {
                    receipt,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// `DeleteMessageBatch` of up to [`DELETE_BATCH_SIZE`] receipts; returns how many failed.
    pub async fn delete(&self, receipts: Vec<String>) -> Result<usize, PollError> {
        debug_assert!(receipts.len() <= DELETE_BATCH_SIZE);
        let entries = receipts
            .into_iter()
            .enumerate()
            .filter_map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify_for("SQS", e))?;
        for failed in output.failed() {
            tracing::debug!(
                code = failed.code(),
                message = failed.message().unwrap_or(""),
                "event queue: message not deleted"
            );
        }
        Ok(output.failed().len())
    }
}
