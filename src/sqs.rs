//! The SQS calls of the event consumer, with `aws-sdk-sqs` (the only place that touches its
//! types): long-poll `ReceiveMessage`, `DeleteMessageBatch`, and the start-up
//! `GetQueueAttributes` that checks the queue's visibility timeout. The client is built from the
//! HealthLake clients' base configuration (one HTTP connection pool, one credentials chain), with
//! its own region, endpoint and role from `[events]`, and a timeout of the long-poll wait plus a
//! margin so a long poll is never cut short — nor left hanging.

use std::time::Duration;

use aws_config::Region;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use aws_sdk_sqs::Client;

use crate::config::{Config, EventsConfig};
use crate::events::consumer::{BoxFuture, Queue, QueueMessage, DELETE_BATCH_SIZE};
use crate::healthlake::{
    classify_for, ClientError, ClientOptions, Clients, ErrorReason, PollError,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SESSION_NAME: &str = "healthlake-exporter-events";
/// Most messages one `ReceiveMessage` returns (SQS's limit).
const MAX_MESSAGES: i32 = 10;

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
        config: &Config,
        events: &EventsConfig,
        queue_url: String,
        clients: &Clients,
        options: &ClientOptions,
    ) -> Result<SqsQueue, ClientError> {
        let base = clients.base_config(config, options).await;
        let region = events
            .target
            .region
            .clone()
            .map(Region::new)
            .or_else(|| base.region().cloned())
            .ok_or_else(|| ClientError::NoRegion {
                user: "[events] (set events.region, or a region in the queue URL)".to_owned(),
            })?;
        let call_timeout = events.call_timeout();
        let mut builder = aws_sdk_sqs::config::Builder::from(&base)
            .region(region.clone())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(call_timeout)
                    .operation_timeout(call_timeout)
                    .build(),
            );
        if let Some(url) = &events.target.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(role_arn) = &events.target.role_arn {
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
            queue_url,
            wait_time: events.wait_time,
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

    async fn receive_messages(&self, long_poll: bool) -> Result<Vec<QueueMessage>, PollError> {
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
                Some(QueueMessage {
                    receipt,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn delete_messages(&self, receipts: Vec<String>) -> Result<usize, PollError> {
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

impl Queue for SqsQueue {
    fn receive(&self, long_poll: bool) -> BoxFuture<'_, Result<Vec<QueueMessage>, PollError>> {
        Box::pin(self.receive_messages(long_poll))
    }

    fn delete(&self, receipts: Vec<String>) -> BoxFuture<'_, Result<usize, PollError>> {
        Box::pin(self.delete_messages(receipts))
    }
}
