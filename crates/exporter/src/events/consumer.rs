//! The event consumer loop: long-polls the queue, classifies each message, runs one refresh per
//! named datastore at a time (coalescing the rest, at most one start per datastore per
//! `polling.timeout`), keeps the messages it holds hidden for as long as their refresh waits and
//! runs (extending their visibility at half of it), and deletes them in batches, with their
//! newest receipt handle, once the refreshes they asked for have finished, successfully or not
//! (reconciliation stays the truth). Malformed, foreign and unfollowed messages are counted and
//! deleted at once, never retried. So a message comes back only if the exporter stopped, or SQS
//! refused a delete or an extension — never because the exporter was busy.
//!
//! Receiving runs in its own task so that a long poll in flight is never cancelled by a refresh
//! finishing (a cancelled `ReceiveMessage` would hide its messages for the visibility timeout).
//! The consumer is stopped by aborting its task set: an in-flight long poll is dropped with it,
//! and messages not yet deleted come back after their visibility timeout.
//!
//! The queue and the refreshes are traits, so the loop is tested here without HTTP; the SQS
//! implementation lives with the other AWS calls.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::coalesce::Coalescer;
use super::held::Held;
use super::message::{classify, Classified, HealthLakeEvent, Scope};
use crate::aws::sqs::{SqsMessage, SqsQueue};
use crate::model::{ErrorReason, PollError};
use crate::state::{plausible_event_time, EventStats};

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use crate::aws::sqs::DELETE_BATCH_SIZE;
/// Stop receiving while this many messages wait for their refreshes (back-pressure: they stay
/// in the queue, hidden or not, instead of in memory).
const MAX_WAITING_MESSAGES: usize = 1000;
/// First pause after a failed receive; doubles up to `MAX_RECEIVE_BACKOFF`.
const RECEIVE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(30);
/// The shortest visibility timeout the consumer works with. It extends a held message's
/// visibility when half of it is left, so half of it must cover one `ChangeMessageVisibilityBatch`
/// call; a queue with a shorter `VisibilityTimeout` gets this one on every receive instead.
pub const MIN_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(10);
/// The visibility timeout used when the queue's cannot be read (no `sqs:GetQueueAttributes`):
/// SQS's own default.
pub const FALLBACK_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// One received message.
pub type QueueMessage = SqsMessage;

/// The queue, as the consumer uses it.
pub trait Queue: Send + Sync + 'static {
    /// The queue's `VisibilityTimeout` attribute.
    fn visibility_timeout(&self) -> BoxFuture<'_, Result<Duration, PollError>>;
    /// One receive of up to 10 messages, each hidden for `visibility`: a long poll (none after
    /// the configured wait time), or with `long_poll = false` an immediate answer (the first
    /// call, and calls after a failure, so that `up` tells the truth within a second).
    fn receive(
        &self,
        long_poll: bool,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, PollError>>;
    /// Hides up to [`DELETE_BATCH_SIZE`] messages for `visibility` from now; returns how many
    /// could not be.
    fn extend(
        &self,
        receipts: Vec<String>,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<usize, PollError>>;
    /// Deletes up to [`DELETE_BATCH_SIZE`] messages; returns how many could not be deleted.
    fn delete(&self, receipts: Vec<String>) -> BoxFuture<'_, Result<usize, PollError>>;
}

/// What an event makes the exporter do.
pub trait Refresher: Send + Sync + 'static {
    /// Whether this process follows the datastore (configured or discovered, and owned by this
    /// replica's shard).
    fn follows(&self, datastore_id: &str) -> bool;
    /// Whether `event` names an old unfinished job of the datastore, in the job lists of
    /// `scope` (its refresh then follows those jobs too).
    fn names_old_job(&self, datastore_id: &str, scope: Scope, event: &HealthLakeEvent) -> bool;
    /// The least time between the starts of two refreshes of one datastore (`polling.timeout`).
    fn spacing(&self) -> Duration;
    /// Lists `scope` of the datastore now, through the same budget, guards and state as a poll.
    /// Failures are recorded like a poll's; the consumer only waits for the end.
    fn refresh(&self, datastore_id: String, scope: Scope) -> BoxFuture<'static, ()>;
    /// Runs discovery soon (a datastore was created or deleted); `false` without discovery.
    fn rediscover(&self) -> bool;
}

impl Queue for SqsQueue {
    fn visibility_timeout(&self) -> BoxFuture<'_, Result<Duration, PollError>> {
        Box::pin(SqsQueue::visibility_timeout(self))
    }

    fn receive(
        &self,
        long_poll: bool,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<Vec<QueueMessage>, PollError>> {
        Box::pin(SqsQueue::receive(self, long_poll, visibility))
    }

    fn extend(
        &self,
        receipts: Vec<String>,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<usize, PollError>> {
        Box::pin(SqsQueue::extend(self, receipts, visibility))
    }

    fn delete(&self, receipts: Vec<String>) -> BoxFuture<'_, Result<usize, PollError>> {
        Box::pin(SqsQueue::delete(self, receipts))
    }
}

/// One `ReceiveMessage` answer, as the handler gets it.
struct Batch {
    messages: Vec<QueueMessage>,
    /// When it arrived: its messages are hidden for `visibility` from about then.
    received_at: Instant,
    visibility: Duration,
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
    let (room_tx, room_rx) = watch::channel(true);
    tasks.spawn(receive_loop(
        Arc::clone(&queue),
        Arc::clone(&stats),
        tx,
        room_rx,
    ));
    tasks.spawn(handle_loop(queue, refresher, stats, rx, room_tx));
    tasks
}

/// How long received messages are hidden: the queue's visibility timeout, at least
/// [`MIN_VISIBILITY_TIMEOUT`]; [`FALLBACK_VISIBILITY_TIMEOUT`] when it cannot be read.
async fn visibility_of<Q: Queue>(queue: &Q) -> Duration {
    let minimum = humantime::format_duration(MIN_VISIBILITY_TIMEOUT);
    match queue.visibility_timeout().await {
        Ok(visibility) if visibility >= MIN_VISIBILITY_TIMEOUT => visibility,
        Ok(visibility) => {
            tracing::warn!(
                visibility_timeout = %humantime::format_duration(visibility),
                %minimum,
                "the event queue's visibility timeout is shorter than the exporter needs to extend it in time: the messages it receives are hidden for {minimum} instead; raise VisibilityTimeout to at least {minimum}"
            );
            MIN_VISIBILITY_TIMEOUT
        }
        Err(error) => {
            tracing::warn!(
                reason = %error.reason,
                error = %error.message,
                "cannot read the event queue's visibility timeout (needs sqs:GetQueueAttributes): the messages this exporter receives are hidden for {} and kept hidden while their refresh waits",
                humantime::format_duration(FALLBACK_VISIBILITY_TIMEOUT)
            );
            FALLBACK_VISIBILITY_TIMEOUT
        }
    }
}

async fn receive_loop<Q: Queue>(
    queue: Arc<Q>,
    stats: Arc<EventStats>,
    tx: mpsc::Sender<Batch>,
    mut room: watch::Receiver<bool>,
) {
    let visibility = visibility_of(&*queue).await;
    let mut failures = 0u32;
    loop {
        if room.wait_for(|has_room| *has_room).await.is_err() {
            return;
        }
        let long_poll = stats.up.load(Ordering::Relaxed);
        let started = Instant::now();
        let received = queue.receive(long_poll, visibility).await;
        let seconds = started.elapsed().as_secs_f64();
        let success_at = received.is_ok().then(crate::model::unix_now);
        stats.receive_ended(seconds, success_at);
        match received {
            Ok(messages) => {
                let received_at = Instant::now();
                if !stats.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("event queue: receiving");
                }
                failures = 0;
                if messages.is_empty() {
                    continue;
                }
                let batch = Batch {
                    messages,
                    received_at,
                    visibility,
                };
                if tx.send(batch).await.is_err() {
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

/// The handling task's state: what waits for which refresh, the messages it holds, and the
/// receipts to delete.
struct Handler<Q, R> {
    queue: Arc<Q>,
    refresher: Arc<R>,
    stats: Arc<EventStats>,
    coalescer: Coalescer,
    held: Held,
    /// Receipts to delete (handled messages).
    deletable: Vec<String>,
}

/// The refreshes running, and the datastore of each (also known when its task panicked).
#[derive(Default)]
struct Running {
    tasks: JoinSet<()>,
    datastores: HashMap<tokio::task::Id, String>,
}

async fn handle_loop<Q: Queue, R: Refresher>(
    queue: Arc<Q>,
    refresher: Arc<R>,
    stats: Arc<EventStats>,
    mut rx: mpsc::Receiver<Batch>,
    room: watch::Sender<bool>,
) {
    let mut handler = Handler {
        queue,
        refresher,
        stats,
        coalescer: Coalescer::default(),
        held: Held::new(FALLBACK_VISIBILITY_TIMEOUT),
        deletable: Vec::new(),
    };
    let mut running = Running::default();
    loop {
        let wake = handler.next_wake();
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { return };
                handler.take(batch);
            }
            Some(finished) = running.tasks.join_next_with_id(), if !running.tasks.is_empty() => {
                // A refresh that panicked ended too: like a failed one, its messages go.
                let id = finished.map_or_else(|error| error.id(), |(id, ())| id);
                if let Some(datastore) = running.datastores.remove(&id) {
                    handler.finished(&datastore);
                }
            }
            () = sleep_until(wake), if wake.is_some() => {}
        }
        handler.start_refreshes(&mut running);
        handler.delete_handled().await;
        handler.extend_due().await;
        let _ = room.send(handler.coalescer.waiting_messages() < MAX_WAITING_MESSAGES);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl<Q: Queue, R: Refresher> Handler<Q, R> {
    /// When the loop must act without news: a refresh's spacing ends, or an extension is due.
    fn next_wake(&self) -> Option<Instant> {
        let start = self.coalescer.next_start(self.refresher.spacing());
        match (start, self.held.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes a received batch: a copy of a message still held only renews its handle; the
    /// others are classified, and held until their refreshes finish or deleted at once.
    fn take(&mut self, batch: Batch) {
        self.held.set_visibility(batch.visibility);
        for message in batch.messages {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            if message.receive_count > 1 {
                self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            let id = message.message_id.clone();
            if self
                .held
                .redelivered(&id, &message.receipt, batch.received_at)
            {
                tracing::debug!(message_id = %id, "event queue: a message still being handled was delivered again; its new receipt handle replaces the old");
                continue;
            }
            let receipt = message.receipt.clone();
            if handle_message(&*self.refresher, &self.stats, &mut self.coalescer, message) {
                self.held.hold(&id, receipt, batch.received_at);
            } else {
                self.deletable.push(receipt);
            }
        }
    }

    /// A datastore's refresh ended: the messages that waited only for it are to be deleted.
    fn finished(&mut self, datastore: &str) {
        let finished = self.coalescer.finish(datastore);
        self.stats
            .applied
            .fetch_add(finished.deletable.len() as u64, Ordering::Relaxed);
        if let Some(time) = finished.newest_event {
            self.stats.applied_event_at(time);
        }
        for id in finished.deletable {
            if let Some(receipt) = self.held.release(&id) {
                self.deletable.push(receipt);
            }
        }
    }

    fn start_refreshes(&mut self, running: &mut Running) {
        let ready = self
            .coalescer
            .start_ready(Instant::now(), self.refresher.spacing());
        for refresh in ready {
            self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
            let datastore = refresh.datastore.clone();
            let work = self.refresher.refresh(refresh.datastore, refresh.scope);
            let id = running.tasks.spawn(work).id();
            running.datastores.insert(id, datastore);
        }
    }

    async fn delete_handled(&mut self) {
        while !self.deletable.is_empty() {
            let take = self.deletable.len().min(DELETE_BATCH_SIZE);
            let batch: Vec<String> = self.deletable.drain(..take).collect();
            delete(&*self.queue, &self.stats, batch).await;
        }
    }

    /// Extends the visibility of every held message that is due, in batches.
    async fn extend_due(&mut self) {
        let due = self.held.due(Instant::now());
        let visibility = self.held.visibility();
        let (mut refused, mut failed_calls) = (0usize, Vec::new());
        for batch in due.chunks(DELETE_BATCH_SIZE) {
            let at = Instant::now();
            let receipts = batch.iter().map(|(_, receipt)| receipt.clone()).collect();
            match self.queue.extend(receipts, visibility).await {
                Ok(failed) => {
                    self.held.extended(batch, at, true);
                    refused += failed;
                }
                Err(error) => {
                    self.held.extended(batch, at, false);
                    self.stats.error(error.reason);
                    failed_calls.push(error);
                }
            }
        }
        if refused > 0 {
            self.stats.error(ErrorReason::Other);
            tracing::warn!(
                refused,
                "event queue: SQS did not extend the visibility of some messages (deleted, or delivered again meanwhile); a copy delivered again is handled as the same message"
            );
        }
        if let Some(error) = failed_calls.first() {
            tracing::warn!(calls = failed_calls.len(), reason = %error.reason, error = %error.message, "event queue: ChangeMessageVisibilityBatch failed; retrying in a second (the messages come back if it keeps failing)");
        }
    }
}

/// Classifies one message; returns whether it waits for refreshes (else it can be deleted
/// right away).
fn handle_message<R: Refresher>(
    refresher: &R,
    stats: &EventStats,
    coalescer: &mut Coalescer,
    message: QueueMessage,
) -> bool {
    match classify(&message.body) {
        Classified::Malformed(why) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %why, "event queue: malformed message deleted");
            false
        }
        Classified::Foreign { source } => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%source, "event queue: event from another source deleted; the rule should match source aws.healthlake only");
            false
        }
        Classified::HealthLake(event) => {
            let mut scope = event.scope();
            let time = event_time(&event);
            let datastores = event.datastores(|id| refresher.follows(id));
            let rediscovered = scope.datastore && refresher.rediscover();
            if datastores.is_empty() {
                if rediscovered {
                    stats.applied.fetch_add(1, Ordering::Relaxed);
                    if let Some(time) = time {
                        stats.applied_event_at(time);
                    }
                } else {
                    stats.ignored.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(detail_type = %event.detail_type, "event for a datastore this process does not follow: ignored");
                }
                return false;
            }
            scope.old_jobs = datastores
                .iter()
                .any(|d| refresher.names_old_job(d, scope, &event));
            tracing::debug!(detail_type = %event.detail_type, datastores = ?datastores, old_jobs = scope.old_jobs, "event: refreshing");
            coalescer.add(&message.message_id, &datastores, scope, time)
        }
    }
}

/// The event's `time`, unless it is too far in the future to be true (see
/// [`plausible_event_time`]): the event still applies, its time is not used.
fn event_time(event: &HealthLakeEvent) -> Option<SystemTime> {
    let time = event.time?;
    let plausible = plausible_event_time(time, SystemTime::now());
    if plausible.is_none() {
        tracing::warn!(
            detail_type = %event.detail_type,
            unix_time = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "event time is more than 5 minutes ahead of this host's clock: not used for healthlake_events_newest_applied_event_timestamp_seconds"
        );
    }
    plausible
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

    use healthlake_fake::wait::within;

    use super::*;

    const DS: &str = "0123456789abcdef0123456789abcdef";

    #[derive(Default)]
    struct MemoryQueue {
        batches: Mutex<VecDeque<Result<Vec<QueueMessage>, PollError>>>,
        deleted: Mutex<Vec<String>>,
        /// The visibility each receive asked for.
        visibility: Mutex<Vec<Duration>>,
    }

    impl Queue for MemoryQueue {
        fn visibility_timeout(&self) -> BoxFuture<'_, Result<Duration, PollError>> {
            Box::pin(async { Ok(Duration::from_secs(3)) })
        }

        fn receive(
            &self,
            _long_poll: bool,
            visibility: Duration,
        ) -> BoxFuture<'_, Result<Vec<QueueMessage>, PollError>> {
            self.visibility.lock().unwrap().push(visibility);
            Box::pin(async move {
                let next = self.batches.lock().unwrap().pop_front();
                match next {
                    Some(result) => result,
                    None => {
                        // An empty long poll's duration, as SQS's: not a wait.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(Vec::new())
                    }
                }
            })
        }

        fn extend(
            &self,
            receipts: Vec<String>,
            _visibility: Duration,
        ) -> BoxFuture<'_, Result<usize, PollError>> {
            assert!(receipts.len() <= DELETE_BATCH_SIZE);
            Box::pin(async { Ok(0) })
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
        /// When set, each refresh runs until the test adds a permit; else it takes 50 ms.
        gate: Option<Arc<tokio::sync::Semaphore>>,
    }

    impl Recorder {
        /// A refresher of the datastore the test events name ([`DS`]).
        fn following_ds() -> Recorder {
            Recorder {
                followed: HashSet::from([DS.to_owned()]),
                ..Recorder::default()
            }
        }
    }

    /// Starts consuming `queue` with `refresher`: the consumer's counters, and its tasks (which
    /// stop when dropped).
    fn consume(
        queue: &Arc<MemoryQueue>,
        refresher: &Arc<Recorder>,
    ) -> (Arc<EventStats>, JoinSet<()>) {
        let stats = Arc::new(EventStats::default());
        let tasks = spawn(Arc::clone(queue), Arc::clone(refresher), Arc::clone(&stats));
        (stats, tasks)
    }

    impl Refresher for Recorder {
        fn follows(&self, id: &str) -> bool {
            self.followed.contains(id)
        }

        fn names_old_job(&self, _: &str, _: Scope, event: &HealthLakeEvent) -> bool {
            event.names(|word| word == "old-job")
        }

        fn spacing(&self) -> Duration {
            Duration::from_millis(10)
        }

        fn refresh(&self, datastore_id: String, scope: Scope) -> BoxFuture<'static, ()> {
            self.refreshed.lock().unwrap().push((datastore_id, scope));
            if let Some(q) = &*self.queue.lock().unwrap() {
                self.deleted_at_start
                    .lock()
                    .unwrap()
                    .push(q.deleted.lock().unwrap().clone());
            }
            let gate = self.gate.clone();
            Box::pin(async move {
                match gate {
                    Some(gate) => gate.acquire().await.expect("gate open").forget(),
                    // A refresh's duration: part of what the consumer handles, not a wait.
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            })
        }

        fn rediscover(&self) -> bool {
            false
        }
    }

    fn message(receipt: &str, body: &str) -> QueueMessage {
        QueueMessage {
            message_id: format!("id-{receipt}"),
            receipt: receipt.into(),
            body: body.into(),
            receive_count: 1,
        }
    }

    fn failed_event() -> String {
        format!(
            r#"{{"source":"aws.healthlake","detail-type":"Export Job Failed","time":"2024-11-30T01:00:00Z","resources":["arn:aws:healthlake:us-east-1:1:datastore/fhir/{DS}"],"detail":{{}}}}"#
        )
    }

    /// Waits (generously: the machine may be loaded) until `what` holds of the consumer's stats.
    /// Real time, not paused: the consumer schedules with `std::time::Instant`.
    async fn run_until(stats: &EventStats, what: impl Fn(&EventStats) -> bool) {
        let reached = within(Duration::from_secs(30), || async {
            what(stats).then_some(())
        });
        if reached.await.is_none() {
            panic!("consumer did not get there: {stats:?}");
        }
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
        let refresher = Arc::new(Recorder::following_ds());
        *refresher.queue.lock().unwrap() = Some(Arc::clone(&queue));
        let (stats, _tasks) = consume(&queue, &refresher);
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
        assert_eq!(
            *queue.visibility.lock().unwrap().first().unwrap(),
            MIN_VISIBILITY_TIMEOUT,
            "a queue timeout too short to extend in time is raised"
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
        assert_eq!(stats.newest_applied(), Some(1_732_928_400.0));
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
        let refresher = Arc::new(Recorder::following_ds());
        let (stats, _tasks) = consume(&queue, &refresher);
        run_until(&stats, |s| s.deleted.load(Ordering::Relaxed) == 1).await;
        assert_eq!(
            stats.errors(),
            BTreeMap::from([(ErrorReason::Throttled, 1)])
        );
        assert!(stats.up.load(Ordering::Relaxed));
    }

    /// A message delivered again while its refresh waits is the same event: no second refresh,
    /// and it is deleted once, with the newest receipt handle (the old one would delete nothing).
    #[tokio::test]
    async fn a_copy_delivered_again_while_waiting_replaces_the_handle() {
        let queue = Arc::new(MemoryQueue::default());
        let mut copy = message("r1-new", &failed_event());
        copy.message_id = "id-r1".into();
        copy.receive_count = 2;
        {
            let mut batches = queue.batches.lock().unwrap();
            batches.push_back(Ok(vec![message("r1", &failed_event())]));
            batches.push_back(Ok(vec![copy]));
        }
        // The refresh runs until the copy has arrived.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let refresher = Arc::new(Recorder {
            followed: HashSet::from([DS.to_owned()]),
            gate: Some(Arc::clone(&gate)),
            ..Recorder::default()
        });
        let (stats, _tasks) = consume(&queue, &refresher);
        run_until(&stats, |s| s.received.load(Ordering::Relaxed) == 2).await;
        assert_eq!(stats.deleted.load(Ordering::Relaxed), 0, "still refreshing");
        gate.add_permits(1);
        run_until(&stats, |s| s.deleted.load(Ordering::Relaxed) == 1).await;
        // Two more receives: the consumer went on after the delete, and deleted nothing else.
        let receives = queue.visibility.lock().unwrap().len();
        let went_on = within(Duration::from_secs(30), || async {
            (queue.visibility.lock().unwrap().len() >= receives + 2).then_some(())
        });
        assert!(went_on.await.is_some(), "the consumer stopped receiving");
        assert_eq!(*queue.deleted.lock().unwrap(), ["r1-new"]);
        assert_eq!(stats.received.load(Ordering::Relaxed), 2);
        assert_eq!(stats.redelivered.load(Ordering::Relaxed), 1);
        assert_eq!(stats.applied.load(Ordering::Relaxed), 1);
        assert_eq!(refresher.refreshed.lock().unwrap().len(), 1);
    }

    /// Only an event naming an old unfinished job makes its refresh follow those jobs.
    #[tokio::test]
    async fn old_jobs_are_followed_only_for_an_event_naming_one() {
        let queue = Arc::new(MemoryQueue::default());
        let naming = failed_event().replace(r#""detail":{}"#, r#""detail":{"jobId":"old-job"}"#);
        queue
            .batches
            .lock()
            .unwrap()
            .push_back(Ok(vec![message("r1", &failed_event())]));
        let refresher = Arc::new(Recorder::following_ds());
        let (stats, _tasks) = consume(&queue, &refresher);
        run_until(&stats, |s| s.deleted.load(Ordering::Relaxed) == 1).await;
        queue
            .batches
            .lock()
            .unwrap()
            .push_back(Ok(vec![message("r2", &naming)]));
        run_until(&stats, |s| s.deleted.load(Ordering::Relaxed) == 2).await;
        let old_jobs: Vec<bool> = refresher
            .refreshed
            .lock()
            .unwrap()
            .iter()
            .map(|(_, scope)| scope.old_jobs)
            .collect();
        assert_eq!(old_jobs, [false, true]);
    }
}
