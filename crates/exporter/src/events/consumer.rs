//! The event consumer loop: long-polls the queue, classifies each message, runs one refresh per
//! named datastore at a time (coalescing the rest), and deletes messages in batches once the
//! refreshes they asked for have finished, successfully or not (reconciliation stays the truth).
//! Malformed, foreign and unfollowed messages are counted and deleted at once, never retried.
//!
//! Receiving runs in its own task so that a long poll in flight is never cancelled by a refresh
//! finishing (a cancelled `ReceiveMessage` would hide its messages for the visibility timeout).
//! The consumer is stopped by aborting its task set: an in-flight long poll is dropped with it,
//! and messages not yet deleted come back after their visibility timeout.
//!
//! The queue and the refreshes are traits, so the loop is tested here without HTTP; the SQS
//! implementation lives with the other AWS calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::coalesce::Coalescer;
use super::message::{classify, Classified, Scope};
use crate::aws::sqs::{SqsMessage, SqsQueue};
use crate::model::{ErrorReason, PollError};
use crate::state::EventStats;

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use crate::aws::sqs::DELETE_BATCH_SIZE;
/// Stop receiving while this many messages wait for their refreshes (back-pressure: they stay
/// in the queue, hidden or not, instead of in memory).
const MAX_WAITING_MESSAGES: usize = 1000;
/// First pause after a failed receive; doubles up to `MAX_RECEIVE_BACKOFF`.
const RECEIVE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(30);

/// One received message.
pub type QueueMessage = SqsMessage;

/// The queue, as the consumer uses it.
pub trait Queue: Send + Sync + 'static {
    /// One receive of up to 10 messages: a long poll (none after the configured wait time), or
    /// with `long_poll = false` an immediate answer (the first call, and calls after a failure,
    /// so that `up` tells the truth within a second).
    fn receive(&self, long_poll: bool) -> BoxFuture<'_, Result<Vec<QueueMessage>, PollError>>;
    /// Deletes up to [`DELETE_BATCH_SIZE`] messages; returns how many could not be deleted.
    fn delete(&self, receipts: Vec<String>) -> BoxFuture<'_, Result<usize, PollError>>;
}

/// What an event makes the exporter do.
pub trait Refresher: Send + Sync + 'static {
    /// Whether this process follows the datastore (configured or discovered, and owned by this
    /// replica's shard).
    fn follows(&self, datastore_id: &str) -> bool;
    /// Lists `scope` of the datastore now, through the same budget, guards and state as a poll.
    /// Failures are recorded like a poll's; the consumer only waits for the end.
    fn refresh(&self, datastore_id: String, scope: Scope) -> BoxFuture<'static, ()>;
    /// Runs discovery soon (a datastore was created or deleted); `false` without discovery.
    fn rediscover(&self) -> bool;
}

impl Queue for SqsQueue {
    fn receive(&self, long_poll: bool) -> BoxFuture<'_, Result<Vec<QueueMessage>, PollError>> {
        Box::pin(SqsQueue::receive(self, long_poll))
    }

    fn delete(&self, receipts: Vec<String>) -> BoxFuture<'_, Result<usize, PollError>> {
        Box::pin(SqsQueue::delete(self, receipts))
    }
}

/// Starts the consumer (a receiving task and a handling task). Abort the set to stop it.
pub fn spawn<Q: Queue, R: Refresher>(
    queue: Arc<Q>,
    refresher: Arc<R>,
    stats: Arc<EventStats>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    // One batch in hand at a time: the receiver waits for the handler before polling again.
    let (tx, rx) = mpsc::channel(1);
    let (room_tx, room_rx) = tokio::sync::watch::channel(true);
    tasks.spawn(receive_loop(
        Arc::clone(&queue),
        Arc::clone(&stats),
        tx,
        room_rx,
    ));
    tasks.spawn(handle_loop(queue, refresher, stats, rx, room_tx));
    tasks
}

async fn receive_loop<Q: Queue>(
    queue: Arc<Q>,
    stats: Arc<EventStats>,
    tx: mpsc::Sender<Vec<QueueMessage>>,
    mut room: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        if room.wait_for(|has_room| *has_room).await.is_err() {
            return;
        }
        let long_poll = stats.up.load(Ordering::Relaxed);
        match queue.receive(long_poll).await {
            Ok(messages) => {
                if !stats.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("event queue: receiving");
                }
                failures = 0;
                if messages.is_empty() {
                    continue;
                }
                if tx.send(messages).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                stats.error(error.reason);
                let was_up = stats.up.swap(false, Ordering::Relaxed);
                if was_up || failures == 0 {
                    tracing::warn!(reason = %error.reason, error = %error.message, "event queue: ReceiveMessage failed; scheduled polls continue");
                } else {
                    tracing::debug!(reason = %error.reason, error = %error.message, "event queue: ReceiveMessage failed again");
                }
                failures = failures.saturating_add(1);
                let pause = RECEIVE_BACKOFF
                    .saturating_mul(2u32.saturating_pow(failures.min(6) - 1))
                    .min(MAX_RECEIVE_BACKOFF);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn handle_loop<Q: Queue, R: Refresher>(
    queue: Arc<Q>,
    refresher: Arc<R>,
    stats: Arc<EventStats>,
    mut rx: mpsc::Receiver<Vec<QueueMessage>>,
    room: tokio::sync::watch::Sender<bool>,
) {
    let mut coalescer: Coalescer<String> = Coalescer::default();
    let mut running: JoinSet<String> = JoinSet::new();
    let mut deletable: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { return };
                for message in batch {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(done) = handle_message(&*refresher, &stats, &mut coalescer, message) {
                        deletable.push(done);
                    }
                }
            }
            Some(finished) = running.join_next(), if !running.is_empty() => {
                // A refresh task that panicked has lost its datastore id; its messages come back
                // after the visibility timeout. Refreshes do not panic, so this stays theoretical.
                let Ok(datastore) = finished else { continue };
                let finished = coalescer.finish(&datastore);
                stats.applied.fetch_add(finished.deletable.len() as u64, Ordering::Relaxed);
                if let Some(time) = finished.newest_event {
                    stats.applied_event_at(time);
                }
                deletable.extend(finished.deletable);
            }
        }
        for refresh in coalescer.start_ready() {
            stats.refreshes.fetch_add(1, Ordering::Relaxed);
            let datastore = refresh.datastore.clone();
            let work = refresher.refresh(refresh.datastore, refresh.scope);
            running.spawn(async move {
                work.await;
                datastore
            });
        }
        while !deletable.is_empty() {
            let take = deletable.len().min(DELETE_BATCH_SIZE);
            let batch: Vec<String> = deletable.drain(..take).collect();
            delete(&*queue, &stats, batch).await;
        }
        let _ = room.send(coalescer.waiting_messages() < MAX_WAITING_MESSAGES);
    }
}

/// Classifies one message; returns its receipt when it can be deleted right away.
fn handle_message<R: Refresher>(
    refresher: &R,
    stats: &EventStats,
    coalescer: &mut Coalescer<String>,
    message: QueueMessage,
) -> Option<String> {
    match classify(&message.body) {
        Classified::Malformed(why) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %why, "event queue: malformed message deleted");
            Some(message.receipt)
        }
        Classified::Foreign { source } => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%source, "event queue: event from another source deleted; the rule should match source aws.healthlake only");
            Some(message.receipt)
        }
        Classified::HealthLake(event) => {
            let scope = event.scope();
            let datastores = event.datastores(|id| refresher.follows(id));
            let rediscovered = scope.datastore && refresher.rediscover();
            if datastores.is_empty() {
                if rediscovered {
                    stats.applied.fetch_add(1, Ordering::Relaxed);
                    if let Some(time) = event.time {
                        stats.applied_event_at(time);
                    }
                } else {
                    stats.ignored.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(detail_type = %event.detail_type, "event for a datastore this process does not follow: ignored");
                }
                return Some(message.receipt);
            }
            tracing::debug!(detail_type = %event.detail_type, datastores = ?datastores, "event: refreshing");
            coalescer.add(message.receipt, &datastores, scope, event.time)
        }
    }
}

async fn delete<Q: Queue>(queue: &Q, stats: &EventStats, receipts: Vec<String>) {
    let count = receipts.len() as u64;
    match queue.delete(receipts).await {
        Ok(failed) => {
            stats
                .deleted
                .fetch_add(count - failed as u64, Ordering::Relaxed);
            if failed > 0 {
                stats.error(ErrorReason::Other);
                tracing::warn!(
                    failed,
                    "event queue: some messages could not be deleted; they come back after the visibility timeout and are handled again"
                );
            }
        }
        Err(error) => {
            stats.error(error.reason);
            tracing::warn!(reason = %error.reason, error = %error.message, "event queue: DeleteMessageBatch failed; the messages come back after the visibility timeout");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet, VecDeque};
    use std::sync::Mutex;

    use super::*;

    const DS: &str = "0123456789abcdef0123456789abcdef";

    #[derive(Default)]
    struct MemoryQueue {
        batches: Mutex<VecDeque<Result<Vec<QueueMessage>, PollError>>>,
        deleted: Mutex<Vec<String>>,
    }

    impl Queue for MemoryQueue {
        fn receive(&self, _long_poll: bool) -> BoxFuture<'_, Result<Vec<QueueMessage>, PollError>> {
            Box::pin(async move {
                let next = self.batches.lock().unwrap().pop_front();
                match next {
                    Some(result) => result,
                    None => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(Vec::new())
                    }
                }
            })
        }

        fn delete(&self, receipts: Vec<String>) -> BoxFuture<'_, Result<usize, PollError>> {
            assert!(receipts.len() <= DELETE_BATCH_SIZE);
            self.deleted.lock().unwrap().extend(receipts);
            Box::pin(async { Ok(0) })
        }
    }

    #[derive(Default)]
    struct Recorder {
        followed: HashSet<String>,
        refreshed: Mutex<Vec<(String, Scope)>>,
        /// Messages deleted when each refresh started (must not include its own).
        deleted_at_start: Mutex<Vec<Vec<String>>>,
        queue: Mutex<Option<Arc<MemoryQueue>>>,
    }

    impl Refresher for Recorder {
        fn follows(&self, id: &str) -> bool {
            self.followed.contains(id)
        }

        fn refresh(&self, datastore_id: String, scope: Scope) -> BoxFuture<'static, ()> {
            self.refreshed.lock().unwrap().push((datastore_id, scope));
            if let Some(q) = &*self.queue.lock().unwrap() {
                self.deleted_at_start
                    .lock()
                    .unwrap()
                    .push(q.deleted.lock().unwrap().clone());
            }
            Box::pin(tokio::time::sleep(Duration::from_millis(50)))
        }

        fn rediscover(&self) -> bool {
            false
        }
    }

    fn message(receipt: &str, body: &str) -> QueueMessage {
        QueueMessage {
            receipt: receipt.into(),
            body: body.into(),
        }
    }

    fn failed_event() -> String {
        format!(
            r#"{{"source":"aws.healthlake","detail-type":"Export Job Failed","time":"2026-11-30T01:00:00Z","resources":["arn:aws:healthlake:us-east-1:1:datastore/fhir/{DS}"],"detail":{{}}}}"#
        )
    }

    async fn run_until(stats: &EventStats, what: impl Fn(&EventStats) -> bool) {
        for _ in 0..200 {
            if what(stats) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("consumer did not get there: {stats:?}");
    }

    #[tokio::test]
    async fn events_refresh_once_then_delete_and_junk_is_deleted_at_once() {
        let queue = Arc::new(MemoryQueue::default());
        queue.batches.lock().unwrap().push_back(Ok(vec![
            message("r1", &failed_event()),
            message("r2", &failed_event()),
            message("r3", "garbage"),
            message("r4", r#"{"source":"aws.s3","detail-type":"x"}"#),
            message(
                "r5",
                &failed_event().replace(DS, "ffffffffffffffffffffffffffffffff"),
            ),
        ]));
        let refresher = Arc::new(Recorder {
            followed: HashSet::from([DS.to_owned()]),
            ..Recorder::default()
        });
        *refresher.queue.lock().unwrap() = Some(Arc::clone(&queue));
        let stats = Arc::new(EventStats::default());
        let _tasks = spawn(
            Arc::clone(&queue),
            Arc::clone(&refresher),
            Arc::clone(&stats),
        );
        run_until(&stats, |s| s.deleted.load(Ordering::Relaxed) == 5).await;
        assert_eq!(stats.received.load(Ordering::Relaxed), 5);
        assert_eq!(stats.applied.load(Ordering::Relaxed), 2);
        assert_eq!(stats.malformed.load(Ordering::Relaxed), 2);
        assert_eq!(stats.ignored.load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.refreshes.load(Ordering::Relaxed),
            1,
            "two events, one refresh"
        );
        assert_eq!(
            *refresher.refreshed.lock().unwrap(),
            [(
                DS.to_owned(),
                Scope {
                    exports: true,
                    ..Scope::default()
                }
            )]
        );
        // Junk went first; the events only after their refresh.
        let at_start = refresher.deleted_at_start.lock().unwrap().clone();
        assert_eq!(at_start.len(), 1);
        assert!(
            !at_start[0].iter().any(|r| r == "r1" || r == "r2"),
            "{at_start:?}"
        );
        let deleted = queue.deleted.lock().unwrap().clone();
        assert_eq!(&deleted[3..], ["r1", "r2"]);
        assert_eq!(stats.newest_applied(), Some(1_796_000_400.0));
        assert!(stats.up.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn receive_errors_are_counted_and_the_consumer_goes_on() {
        let queue = Arc::new(MemoryQueue::default());
        {
            let mut batches = queue.batches.lock().unwrap();
            batches.push_back(Err(PollError::new(ErrorReason::Throttled, "slow down")));
            batches.push_back(Ok(vec![message("r1", &failed_event())]));
        }
        let refresher = Arc::new(Recorder {
            followed: HashSet::from([DS.to_owned()]),
            ..Recorder::default()
        });
        let stats = Arc::new(EventStats::default());
        let _tasks = spawn(Arc::clone(&queue), refresher, Arc::clone(&stats));
        run_until(&stats, |s| s.deleted.load(Ordering::Relaxed) == 1).await;
        assert_eq!(
            stats.errors(),
            BTreeMap::from([(ErrorReason::Throttled, 1)])
        );
        assert!(stats.up.load(Ordering::Relaxed));
    }
}
