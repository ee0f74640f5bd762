//! Wire-level tests of the fake SQS: the real `aws-sdk-sqs` client over loopback HTTP, on the
//! same port as the fake HealthLake. If these pass, the exporter's event consumer meets the same
//! protocol (awsJson 1.0, query-compatible errors, long polling, visibility) as against AWS.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;
use common::{raw, serve, sqs_config, DS};
use healthlake_fake::wait::eventually;
use healthlake_fake::{
    FakeHealthLake, FakeJob, FakeQueue, FakeServer, Fault, QueueStats, SqsOperation,
};

const Q: &str = "healthlake-events";

async fn start() -> (FakeHealthLake, FakeServer) {
    let fake = FakeHealthLake::new();
    fake.create_queue(Q);
    serve(fake).await
}

/// Client without retries, so each call is exactly one request and errors surface unchanged.
fn client(server: &FakeServer) -> Client {
    Client::from_conf(
        sqs_config(server)
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

/// [`start`], with [`Q`] hiding a received message for 1 s; a client and the queue's URL.
async fn start_with_one_second_visibility() -> (FakeHealthLake, FakeServer, Client, String) {
    let (fake, server) = start().await;
    fake.create_queue_with(
        Q,
        FakeQueue {
            visibility_timeout: Duration::from_secs(1),
            dead_letter: None,
        },
    );
    let sqs = client(&server);
    let queue = url(&server, Q);
    (fake, server, sqs, queue)
}

fn url(server: &FakeServer, queue: &str) -> String {
    format!("{}/123456789012/{queue}", server.endpoint_url())
}

#[tokio::test]
async fn send_receive_delete_round_trip() {
    let (fake, server) = start().await;
    let sqs = client(&server);
    let queue = url(&server, Q);
    let sent = sqs
        .send_message()
        .queue_url(&queue)
        .message_body("hello")
        .send()
        .await
        .expect("send");
    let out = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let messages = out.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body(), Some("hello"));
    assert_eq!(messages[0].message_id(), sent.message_id());
    let attributes = messages[0].attributes().expect("attributes requested");
    assert_eq!(
        attributes[&MessageSystemAttributeName::ApproximateReceiveCount],
        "1"
    );
    let entries = vec![
        DeleteMessageBatchRequestEntry::builder()
            .id("0")
            .receipt_handle(messages[0].receipt_handle().unwrap())
            .build()
            .unwrap(),
        DeleteMessageBatchRequestEntry::builder()
            .id("1")
            .receipt_handle("not-a-handle")
            .build()
            .unwrap(),
    ];
    let deleted = sqs
        .delete_message_batch()
        .queue_url(&queue)
        .set_entries(Some(entries))
        .send()
        .await
        .expect("delete batch");
    assert_eq!(deleted.successful().len(), 1);
    assert_eq!(deleted.failed().len(), 1);
    assert_eq!(deleted.failed()[0].code(), "ReceiptHandleIsInvalid");
    assert!(fake.queue_messages(Q).is_empty());
    assert_eq!(fake.sqs_request_count(SqsOperation::DeleteMessageBatch), 1);
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_a_message_arrives() {
    let (fake, server) = start().await;
    let sqs = client(&server);
    let queue = url(&server, Q);
    let receive = {
        let (sqs, queue) = (sqs.clone(), queue.clone());
        tokio::spawn(async move {
            sqs.receive_message()
                .queue_url(&queue)
                .wait_time_seconds(20)
                .send()
                .await
        })
    };
    // The long poll is waiting on the empty queue when the message is sent.
    eventually(
        Duration::from_secs(10),
        "the long poll in flight",
        || async { (fake.sqs_receives_in_flight() == 1).then_some(()) },
    )
    .await;
    assert!(
        !receive.is_finished(),
        "an empty queue is not answered at once"
    );
    let sent = Instant::now();
    fake.send_message(Q, "late");
    let out = receive.await.unwrap().expect("receive");
    assert_eq!(out.messages().len(), 1);
    // Coarse (a loaded CI machine may take seconds): well before the 20 s wait time ends.
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(fake.sqs_receives_in_flight(), 0);

    // An empty queue makes a long poll wait the full time and answer with no messages.
    let started = Instant::now();
    let out = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    assert!(out.messages().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn undeleted_message_comes_back_after_visibility_timeout() {
    let (fake, _server, sqs, queue) = start_with_one_second_visibility().await;
    fake.send_message(Q, "again");
    let first = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap();
    assert_eq!(first.messages().len(), 1);
    let hidden = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap();
    assert!(hidden.messages().is_empty());
    // The long poll wakes when the message becomes visible again (after 1 s): coarse, for a
    // loaded CI machine, and well before the 20 s wait ends.
    let started = Instant::now();
    let second = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(20)
        .send()
        .await
        .unwrap();
    assert_eq!(second.messages().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(fake.queue_messages(Q)[0].receive_count, 2);
}

#[tokio::test]
async fn errors_reach_the_sdk_with_sqs_codes() {
    let (fake, server) = start().await;
    let sqs = client(&server);
    let missing = sqs
        .receive_message()
        .queue_url(url(&server, "nope"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing.as_service_error(),
            Some(ReceiveMessageError::QueueDoesNotExist(_))
        ),
        "{missing:?}"
    );
    let queue = url(&server, Q);
    let bad = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(21)
        .send()
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some("InvalidParameterValue"));

    fake.set_sqs_fault_for(SqsOperation::ReceiveMessage, Some(Fault::Throttling));
    let throttled = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            throttled.as_service_error(),
            Some(ReceiveMessageError::RequestThrottled(_))
        ),
        "{throttled:?}"
    );
    fake.set_sqs_fault(Some(Fault::InternalError));
    fake.set_sqs_fault_for(SqsOperation::ReceiveMessage, None);
    let internal = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap_err();
    assert_eq!(internal.code(), Some("InternalFailure"));
    assert_eq!(
        internal.raw_response().map(|r| r.status().as_u16()),
        Some(500)
    );
    fake.set_sqs_fault(Some(Fault::AccessDenied));
    let denied = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Some("AccessDenied"));
    fake.set_sqs_fault(Some(Fault::ConnectionReset));
    let reset = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(reset, SdkError::DispatchFailure(_)), "{reset:?}");
    fake.set_sqs_fault(None);
    assert!(sqs.receive_message().queue_url(&queue).send().await.is_ok());
}

#[tokio::test]
async fn sdk_retries_throttling_like_on_aws() {
    let (fake, server) = start().await;
    let config = sqs_config(&server)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .build();
    let sqs = Client::from_conf(config);
    fake.set_sqs_fault(Some(Fault::Throttling));
    let error = sqs
        .get_queue_attributes()
        .queue_url(url(&server, Q))
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("RequestThrottled"));
    // Classified as throttling, so the SDK retried it.
    assert_eq!(fake.sqs_request_count(SqsOperation::GetQueueAttributes), 3);
}

/// Headers of a raw `ReceiveMessage` signed for `service`.
fn receive_headers(service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/x-amz-json-1.0".to_owned()),
        ("x-amz-target", "AmazonSQS.ReceiveMessage".to_owned()),
        (
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=AKID/20240115/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"),
        ),
    ]
}

/// A raw `ReceiveMessage` of [`Q`] signed for `service`.
async fn raw_receive(server: &FakeServer, service: &str) -> common::RawResponse {
    let headers = receive_headers(service);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = format!(r#"{{"QueueUrl":"{}"}}"#, url(server, Q));
    raw(server, "POST", "/", &headers, body.as_bytes()).await
}

#[tokio::test]
async fn requests_signed_for_another_service_are_refused() {
    let (_fake, server) = start().await;
    // A raw request signed for HealthLake (not `sqs`).
    let answer = raw_receive(&server, "healthlake").await;
    assert_eq!(answer.status, 403);
    let body = String::from_utf8_lossy(&answer.body);
    assert!(body.contains("'sqs', not 'healthlake'"), "{body}");
}

#[tokio::test]
async fn job_changes_publish_healthlake_events_to_every_queue() {
    let (fake, server) = start().await;
    fake.add_datastore(DS);
    fake.set_event_queues(&["shard-0", "shard-1"]);
    fake.add_job(DS, FakeJob::new("job1", "IN_PROGRESS", 1_700_000_000.0));
    fake.set_job_status(DS, "job1", "FAILED", Some(1_700_000_100.0));
    // Same status again, and a cancellation: no event.
    fake.set_job_status(DS, "job1", "FAILED", Some(1_700_000_100.0));
    fake.add_job(
        DS,
        FakeJob::new("job2", "CANCEL_SUBMITTED", 1_700_000_000.0),
    );
    fake.set_datastore_status(DS, "DELETING");
    let sqs = client(&server);
    for queue in ["shard-0", "shard-1"] {
        let out = sqs
            .receive_message()
            .queue_url(url(&server, queue))
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let types: Vec<String> = out
            .messages()
            .iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
                assert_eq!(v["source"], "aws.healthlake");
                v["detail-type"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            types,
            [
                "Export Job In Progress",
                "Export Job Failed",
                "Data Store Deleting"
            ],
            "{queue}"
        );
    }
}

fn visibility_entry(
    id: &str,
    receipt: &str,
    seconds: i32,
) -> ChangeMessageVisibilityBatchRequestEntry {
    ChangeMessageVisibilityBatchRequestEntry::builder()
        .id(id)
        .receipt_handle(receipt)
        .visibility_timeout(seconds)
        .build()
        .unwrap()
}

/// What a consumer that keeps messages hidden while it works relies on: a batch visibility
/// change with the newest receipt handle keeps a message hidden past the queue's timeout; once it
/// comes back, its old handle goes stale (a visibility change with it fails, a delete with it
/// succeeds and deletes nothing, as on SQS), and `ApproximateReceiveCount` tells the redelivery.
#[tokio::test]
async fn visibility_batch_extends_and_stale_handles_delete_nothing() {
    let (fake, _server, sqs, queue) = start_with_one_second_visibility().await;
    fake.send_message(Q, "kept");
    fake.send_message(Q, "lapsed");
    let receive = || {
        sqs.receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
    };
    let first = receive().await.unwrap();
    let handle = |out: &aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput,
                  body: &str| {
        out.messages()
            .iter()
            .find(|m| m.body() == Some(body))
            .and_then(|m| m.receipt_handle().map(str::to_owned))
            .unwrap()
    };
    let (kept, lapsed) = (handle(&first, "kept"), handle(&first, "lapsed"));
    let changed = sqs
        .change_message_visibility_batch()
        .queue_url(&queue)
        .entries(visibility_entry("k", &kept, 30))
        .entries(visibility_entry("bad", "not-a-handle", 30))
        .send()
        .await
        .expect("batch accepted");
    assert_eq!(changed.successful().len(), 1);
    assert_eq!(changed.successful()[0].id(), "k");
    assert_eq!(changed.failed()[0].code(), "ReceiptHandleIsInvalid");

    // The lapsed one comes back after its 1 s; the extended one does not.
    let again = sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .wait_time_seconds(5)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap();
    assert_eq!(again.messages().len(), 1);
    let message = &again.messages()[0];
    assert_eq!(message.body(), Some("lapsed"));
    assert_eq!(
        message.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount],
        "2"
    );
    let newest = message.receipt_handle().unwrap().to_owned();
    let stale = sqs
        .change_message_visibility()
        .queue_url(&queue)
        .receipt_handle(&lapsed)
        .visibility_timeout(30)
        .send()
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Some("InvalidParameterValue"));
    let stale_delete = sqs
        .delete_message_batch()
        .queue_url(&queue)
        .entries(
            DeleteMessageBatchRequestEntry::builder()
                .id("0")
                .receipt_handle(&lapsed)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stale_delete.successful().len(), 1, "SQS reports success");
    assert_eq!(fake.queue_messages(Q).len(), 2, "and deletes nothing");
    for receipt in [&kept, &newest] {
        sqs.delete_message()
            .queue_url(&queue)
            .receipt_handle(receipt)
            .send()
            .await
            .unwrap();
    }
    assert!(fake.queue_messages(Q).is_empty());
    assert_eq!(
        fake.queue_stats(Q),
        QueueStats {
            deliveries: 3,
            redeliveries: 1,
            deleted: 2,
            stale_deletes: 1,
            visibility_changes: 1,
            failed_visibility_changes: 2,
            max_receive_count: 2,
            dead_lettered: 0,
        }
    );
    assert_eq!(
        fake.sqs_request_count(SqsOperation::ChangeMessageVisibilityBatch),
        1
    );

    // Batch rules as for deletes: at most ten entries.
    let too_many = (0..11).fold(
        sqs.change_message_visibility_batch().queue_url(&queue),
        |call, i| call.entries(visibility_entry(&i.to_string(), &kept, 1)),
    );
    let error = too_many.send().await.unwrap_err();
    assert_eq!(
        error.code(),
        Some("AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
    );
}

/// A hostile or broken endpoint: the fake can answer any SQS call with a huge (streamed) body.
#[tokio::test]
async fn oversized_fault_pads_sqs_answers() {
    let (fake, server) = start().await;
    fake.send_message(Q, "hello");
    fake.set_sqs_fault_for(
        SqsOperation::ReceiveMessage,
        Some(Fault::Oversized(3 << 20)),
    );
    let out = client(&server)
        .receive_message()
        .queue_url(url(&server, Q))
        .send()
        .await
        .expect("a padded answer is still a valid answer");
    assert_eq!(out.messages()[0].body(), Some("hello"));
    let answer = raw_receive(&server, "sqs").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), 3 << 20);
}
