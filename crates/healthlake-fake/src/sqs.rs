//! The fake's Amazon SQS: standard queues with visibility timeouts, receive counts, a dead-letter
//! redrive and long polling, served on the fake HealthLake's port (see `sqs_wire` for the
//! protocol). It exists so the exporter's event consumer runs against the real `aws-sdk-sqs`
//! client, and so tests and the demo can queue HealthLake-shaped EventBridge events (by hand, or
//! automatically whenever the fake's jobs or datastores change: [`FakeHealthLake::set_event_queues`]).
//!
//! The queue logic ([`Queues`]) is pure and takes `now` as an argument, so visibility and redrive
//! are unit tested without sleeping.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::{FakeHealthLake, Fault};

/// A queue's default visibility timeout (SQS's own default).
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most messages one `ReceiveMessage` returns (SQS's limit).
pub const MAX_RECEIVE_MESSAGES: usize = 10;
/// Longest `WaitTimeSeconds` SQS accepts.
pub const MAX_WAIT_TIME: Duration = Duration::from_secs(20);
/// Largest message body SQS accepts (256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Fake AWS account in queue URLs (the same as in the fake's ARNs).
pub const QUEUE_ACCOUNT_ID: &str = "123456789012";

/// The SQS operations the fake implements (`X-Amz-Target: AmazonSQS.<name>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SqsOperation {
    ReceiveMessage,
    DeleteMessage,
    DeleteMessageBatch,
    SendMessage,
    GetQueueAttributes,
    ChangeMessageVisibility,
    ChangeMessageVisibilityBatch,
}

impl SqsOperation {
    /// Every implemented operation.
    pub const ALL: [SqsOperation; 7] = [
        SqsOperation::ReceiveMessage,
        SqsOperation::DeleteMessage,
        SqsOperation::DeleteMessageBatch,
        SqsOperation::SendMessage,
        SqsOperation::GetQueueAttributes,
        SqsOperation::ChangeMessageVisibility,
        SqsOperation::ChangeMessageVisibilityBatch,
    ];

    /// The operation's name (the part after `AmazonSQS.`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ReceiveMessage => "ReceiveMessage",
            Self::DeleteMessage => "DeleteMessage",
            Self::DeleteMessageBatch => "DeleteMessageBatch",
            Self::SendMessage => "SendMessage",
            Self::GetQueueAttributes => "GetQueueAttributes",
            Self::ChangeMessageVisibility => "ChangeMessageVisibility",
            Self::ChangeMessageVisibilityBatch => "ChangeMessageVisibilityBatch",
        }
    }

    /// Parses `AmazonSQS.<name>` or `<name>`.
    pub fn from_name(target: &str) -> Option<Self> {
        let name = target.strip_prefix("AmazonSQS.").unwrap_or(target);
        Self::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// How a queue is created with [`FakeHealthLake::create_queue_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeQueue {
    /// `VisibilityTimeout`: how long a received message stays hidden unless deleted.
    pub visibility_timeout: Duration,
    /// `RedrivePolicy`: after this many receives a message moves to the named queue instead of
    /// being delivered again (`maxReceiveCount`, dead-letter queue name).
    pub dead_letter: Option<(String, u32)>,
}

impl Default for FakeQueue {
    fn default() -> Self {
        Self {
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            dead_letter: None,
        }
    }
}

/// One message as the fake holds it (a snapshot for tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeMessage {
    /// `MessageId`.
    pub id: String,
    /// `Body`, verbatim.
    pub body: String,
    /// `ApproximateReceiveCount`.
    pub receive_count: u32,
    /// `false` while received and not yet deleted nor past its visibility timeout.
    pub visible: bool,
}

/// What happened to one queue's messages so far, for tests that must prove "delivered once,
/// deleted once" (see [`FakeHealthLake::queue_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages handed out by `ReceiveMessage`, each delivery counted.
    pub deliveries: u64,
    /// Deliveries of a message that had been received before (its `ApproximateReceiveCount`
    /// above 1): its visibility timeout ran out without a delete.
    pub redeliveries: u64,
    /// Messages deleted.
    pub deleted: u64,
    /// Deletes with a receipt handle this fake issued but that deletes nothing: one of an earlier
    /// receive of a message received again since, or of a message already deleted. SQS answers
    /// them with success, so the client never learns its delete was lost.
    pub stale_deletes: u64,
    /// Successful visibility changes (`ChangeMessageVisibility[Batch]` entries).
    pub visibility_changes: u64,
    /// Visibility changes refused: stale or unknown handle, message not in flight, or past the
    /// 12-hour limit.
    pub failed_visibility_changes: u64,
    /// The highest `ApproximateReceiveCount` any message of the queue reached.
    pub max_receive_count: u32,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: u64,
}

#[derive(Clone, Debug)]
struct Message {
    id: String,
    body: String,
    sent_at: SystemTime,
    first_received_at: Option<SystemTime>,
    /// When the first receive happened, for SQS's 12-hour limit on a message's visibility.
    first_received: Option<Instant>,
    visible_at: Instant,
    receive_count: u32,
    /// The receipt handle of the newest receive: only that one deletes the message.
    receipt: Option<String>,
}

#[derive(Debug)]
struct Queue {
    settings: FakeQueue,
    messages: VecDeque<Message>,
    stats: QueueStats,
}

/// A message as one `ReceiveMessage` hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) id: String,
    pub(crate) receipt: String,
    pub(crate) body: String,
    pub(crate) sent_at: SystemTime,
    pub(crate) first_received_at: SystemTime,
    pub(crate) receive_count: u32,
}

/// Why a queue operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum QueueError {
    NoSuchQueue,
}

/// Outcome of deleting one receipt handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeleteOutcome {
    /// The message is gone (or the handle was stale: SQS answers success and keeps the message).
    Ok,
    /// Not a receipt handle this fake issued.
    InvalidHandle,
}

/// Longest a message may stay hidden, counted from its first receive (SQS's limit, 12 hours).
pub(crate) const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// Outcome of changing one message's visibility, as SQS answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum VisibilityOutcome {
    Ok,
    /// Not a receipt handle this fake issued (`ReceiptHandleIsInvalid`).
    InvalidHandle,
    /// A handle of an earlier receive, or of a deleted message (`InvalidParameterValue`: "Message
    /// does not exist or is not available for visibility timeout change").
    Stale,
    /// The newest handle, but the message's visibility timeout has run out
    /// (`AWS.SimpleQueueService.MessageNotInflight`).
    NotInFlight,
    /// Hidden for longer than 12 hours after its first receive (`InvalidParameterValue`).
    TooLong,
}

/// All queues, their messages and the SQS faults. Pure: time comes in as arguments.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    queues: BTreeMap<String, Queue>,
    next_message: u64,
    next_receipt: u64,
    /// Faults for every SQS operation, then per operation (which win).
    fault: Option<Fault>,
    operation_faults: HashMap<SqsOperation, Fault>,
    counts: HashMap<SqsOperation, usize>,
    /// Queues that get an event whenever the fake's jobs or datastores change.
    event_queues: Vec<String>,
}

impl Queues {
    pub(crate) fn create(&mut self, name: &str, settings: FakeQueue) {
        self.queues
            .entry(name.to_owned())
            .and_modify(|q| q.settings = settings.clone())
            .or_insert_with(|| Queue {
                settings,
                messages: VecDeque::new(),
                stats: QueueStats::default(),
            });
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.queues.contains_key(name)
    }

    pub(crate) fn visibility_timeout(&self, name: &str) -> Result<Duration, QueueError> {
        self.queues
            .get(name)
            .map(|q| q.settings.visibility_timeout)
            .ok_or(QueueError::NoSuchQueue)
    }

    pub(crate) fn send(
        &mut self,
        name: &str,
        body: String,
        delay: Duration,
        now: Instant,
    ) -> Result<String, QueueError> {
        let queue = self.queues.get_mut(name).ok_or(QueueError::NoSuchQueue)?;
        self.next_message += 1;
        let id = message_id(self.next_message);
        queue.messages.push_back(Message {
            id: id.clone(),
            body,
            sent_at: SystemTime::now(),
            first_received_at: None,
            first_received: None,
            visible_at: now + delay,
            receive_count: 0,
            receipt: None,
        });
        Ok(id)
    }

    /// Hands out up to `max` visible messages, oldest first, hiding each for `visibility` (the
    /// queue's own timeout when `None`). Messages past their queue's `maxReceiveCount` move to
    /// the dead-letter queue instead (when it exists).
    pub(crate) fn receive(
        &mut self,
        name: &str,
        max: usize,
        visibility: Option<Duration>,
        now: Instant,
    ) -> Result<Vec<Received>, QueueError> {
        let queue = self.queues.get_mut(name).ok_or(QueueError::NoSuchQueue)?;
        let visibility = visibility.unwrap_or(queue.settings.visibility_timeout);
        let redrive = queue.settings.dead_letter.clone();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut index = 0;
        while index < queue.messages.len() && out.len() < max {
            let message = &mut queue.messages[index];
            if message.visible_at > now {
                index += 1;
                continue;
            }
            if let Some((_, max_receives)) = &redrive {
                if message.receive_count >= *max_receives {
                    if let Some(message) = queue.messages.remove(index) {
                        dead.push(message);
                        queue.stats.dead_lettered += 1;
                    }
                    continue;
                }
            }
            self.next_receipt += 1;
            let receipt = receipt_handle(&message.id, self.next_receipt);
            message.receive_count += 1;
            message.visible_at = now + visibility;
            message.receipt = Some(receipt.clone());
            message.first_received.get_or_insert(now);
            let first = *message
                .first_received_at
                .get_or_insert_with(SystemTime::now);
            let stats = &mut queue.stats;
            stats.deliveries += 1;
            if message.receive_count > 1 {
                stats.redeliveries += 1;
            }
            stats.max_receive_count = stats.max_receive_count.max(message.receive_count);
            out.push(Received {
                id: message.id.clone(),
                receipt,
                body: message.body.clone(),
                sent_at: message.sent_at,
                first_received_at: first,
                receive_count: message.receive_count,
            });
            index += 1;
        }
        if let Some((dlq, _)) = redrive {
            if let Some(dlq) = self.queues.get_mut(&dlq) {
                for mut message in dead {
                    message.receive_count = 0;
                    message.receipt = None;
                    message.first_received = None;
                    message.visible_at = now;
                    dlq.messages.push_back(message);
                }
            }
        }
        Ok(out)
    }

    /// When the next hidden message of the queue becomes visible again (`None`: none hidden).
    pub(crate) fn next_visible(&self, name: &str, now: Instant) -> Option<Instant> {
        self.queues
            .get(name)?
            .messages
            .iter()
            .map(|m| m.visible_at)
            .filter(|t| *t > now)
            .min()
    }

    pub(crate) fn delete(
        &mut self,
        name: &str,
        receipt: &str,
    ) -> Result<DeleteOutcome, QueueError> {
        let queue = self.queues.get_mut(name).ok_or(QueueError::NoSuchQueue)?;
        let Some(message_id) = message_id_of_receipt(receipt) else {
            return Ok(DeleteOutcome::InvalidHandle);
        };
        match queue
            .messages
            .iter()
            .position(|m| m.id == message_id && m.receipt.as_deref() == Some(receipt))
        {
            Some(index) => {
                queue.messages.remove(index);
                queue.stats.deleted += 1;
            }
            None => queue.stats.stale_deletes += 1,
        }
        Ok(DeleteOutcome::Ok)
    }

    /// `ChangeMessageVisibility`: hides the message for `timeout` from `now`, if `receipt` is
    /// its newest handle and it is in flight, as SQS does.
    pub(crate) fn change_visibility(
        &mut self,
        name: &str,
        receipt: &str,
        timeout: Duration,
        now: Instant,
    ) -> Result<VisibilityOutcome, QueueError> {
        let queue = self.queues.get_mut(name).ok_or(QueueError::NoSuchQueue)?;
        let outcome = match message_id_of_receipt(receipt) {
            None => VisibilityOutcome::InvalidHandle,
            Some(message_id) => match queue
                .messages
                .iter_mut()
                .find(|m| m.id == message_id && m.receipt.as_deref() == Some(receipt))
            {
                None => VisibilityOutcome::Stale,
                Some(message) if message.visible_at <= now => VisibilityOutcome::NotInFlight,
                Some(message)
                    if message
                        .first_received
                        .is_some_and(|first| now + timeout > first + MAX_VISIBILITY) =>
                {
                    VisibilityOutcome::TooLong
                }
                Some(message) => {
                    message.visible_at = now + timeout;
                    VisibilityOutcome::Ok
                }
            },
        };
        if outcome == VisibilityOutcome::Ok {
            queue.stats.visibility_changes += 1;
        } else {
            queue.stats.failed_visibility_changes += 1;
        }
        Ok(outcome)
    }

    fn stats(&self, name: &str) -> QueueStats {
        self.queues.get(name).map(|q| q.stats).unwrap_or_default()
    }

    /// `(visible, in flight)` message counts.
    pub(crate) fn depth(&self, name: &str, now: Instant) -> Result<(usize, usize), QueueError> {
        let queue = self.queues.get(name).ok_or(QueueError::NoSuchQueue)?;
        let visible = queue
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .count();
        Ok((visible, queue.messages.len() - visible))
    }

    fn messages(&self, name: &str, now: Instant) -> Vec<FakeMessage> {
        self.queues
            .get(name)
            .map(|q| {
                q.messages
                    .iter()
                    .map(|m| FakeMessage {
                        id: m.id.clone(),
                        body: m.body.clone(),
                        receive_count: m.receive_count,
                        visible: m.visible_at <= now,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn fault(&self, op: SqsOperation) -> Option<Fault> {
        self.operation_faults
            .get(&op)
            .or(self.fault.as_ref())
            .cloned()
    }

    pub(crate) fn count(&mut self, op: SqsOperation) {
        *self.counts.entry(op).or_default() += 1;
    }
}

fn message_id(n: u64) -> String {
    // UUID layout like SQS's message ids; the sequence number keeps them unique.
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        super::store::fnv1a(&n.to_le_bytes()) as u32,
        (n >> 16) & 0xffff,
        n & 0xfff,
        (n >> 12) & 0xfff,
        n
    )
}

/// Receipt handles are opaque to clients; this one is `<message id>.<receive sequence>` plus a
/// check digest, so the fake can tell its own (possibly stale) handles from garbage.
fn receipt_handle(message_id: &str, seq: u64) -> String {
    let payload = format!("{message_id}.{seq}");
    let check = super::store::fnv1a(payload.as_bytes());
    format!("AQEB{payload}.{check:016x}")
}

fn message_id_of_receipt(receipt: &str) -> Option<&str> {
    let rest = receipt.strip_prefix("AQEB")?;
    let (payload, check) = rest.rsplit_once('.')?;
    if format!("{:016x}", super::store::fnv1a(payload.as_bytes())) != check {
        return None;
    }
    payload.rsplit_once('.').map(|(id, _)| id)
}

/// The SQS side of a [`FakeHealthLake`]: queues behind a mutex (held only for short synchronous
/// sections), a notifier that wakes long polls when a message is sent, and how many receives are
/// being answered.
#[derive(Debug, Default)]
pub(crate) struct SqsShared {
    queues: Mutex<Queues>,
    pub(crate) sent: Notify,
    receiving: AtomicUsize,
}

impl SqsShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a `ReceiveMessage` as in flight until the returned guard is dropped (answered, or
    /// abandoned with its connection).
    pub(crate) fn receiving(self: &Arc<Self>) -> Receiving {
        self.receiving.fetch_add(1, Ordering::SeqCst);
        Receiving(Arc::clone(self))
    }
}

/// A `ReceiveMessage` being answered (see [`SqsShared::receiving`]).
pub(crate) struct Receiving(Arc<SqsShared>);

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.receiving.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `http://<fake address>/123456789012/<name>` and `https://sqs.<region>.amazonaws.com/…/<name>`
/// both name the queue `<name>`: the fake routes by the last path segment only.
pub(crate) fn queue_name_of_url(url: &str) -> Option<&str> {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (_, path) = path.split_once('/')?;
    let name = path.trim_end_matches('/').rsplit('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// SQS methods of the fake. They live here rather than next to the HealthLake ones so the
/// protocol-specific state stays in one module.
impl FakeHealthLake {
    pub(crate) fn sqs_shared(&self) -> &Arc<SqsShared> {
        &self.sqs
    }

    /// Creates a queue with default settings (30 s visibility, no dead-letter queue); an
    /// existing queue keeps its messages.
    pub fn create_queue(&self, name: &str) {
        self.create_queue_with(name, FakeQueue::default());
    }

    /// Creates a queue, or changes an existing queue's settings (its messages are kept).
    pub fn create_queue_with(&self, name: &str, settings: FakeQueue) {
        self.sqs.lock().create(name, settings);
    }

    /// Sends a message as `SendMessage` would; `None` when the queue does not exist.
    pub fn send_message(&self, queue: &str, body: impl Into<String>) -> Option<String> {
        let id = self
            .sqs
            .lock()
            .send(queue, body.into(), Duration::ZERO, Instant::now())
            .ok()?;
        self.sqs.sent.notify_waiters();
        Some(id)
    }

    /// The queue's messages, oldest first (empty when the queue does not exist).
    pub fn queue_messages(&self, queue: &str) -> Vec<FakeMessage> {
        self.sqs.lock().messages(queue, Instant::now())
    }

    /// What happened to the queue's messages so far: deliveries, redeliveries, deletes (and
    /// stale ones, which SQS answers with success but which delete nothing), visibility changes,
    /// the highest receive count (all zero when the queue does not exist).
    pub fn queue_stats(&self, queue: &str) -> QueueStats {
        self.sqs.lock().stats(queue)
    }

    /// Routes HealthLake events to these queues (each gets a copy, like one EventBridge rule with
    /// several targets or an SNS topic fanning out): from now on every change of a job's or a
    /// datastore's status made through this handle sends a HealthLake-shaped EventBridge event
    /// (see [`super::events`]). Statuses HealthLake sends no event for (cancellations) send none.
    /// Missing queues are created. An empty list stops the events.
    pub fn set_event_queues(&self, queues: &[&str]) {
        let mut sqs = self.sqs.lock();
        for name in queues {
            if !sqs.exists(name) {
                sqs.create(name, FakeQueue::default());
            }
        }
        sqs.event_queues = queues.iter().map(|q| (*q).to_owned()).collect();
    }

    /// Sends one event body to every event queue (see [`FakeHealthLake::set_event_queues`]).
    pub fn publish_event(&self, body: &str) {
        let mut sqs = self.sqs.lock();
        let now = Instant::now();
        for queue in sqs.event_queues.clone() {
            let _ = sqs.send(&queue, body.to_owned(), Duration::ZERO, now);
        }
        drop(sqs);
        self.sqs.sent.notify_waiters();
    }

    pub(crate) fn events_enabled(&self) -> bool {
        !self.sqs.lock().event_queues.is_empty()
    }

    /// Injects (or with `None` clears) a fault for every SQS operation. The HealthLake variants
    /// map to SQS's own errors: `Throttling` → `RequestThrottled`, `InternalError` → 500
    /// `InternalFailure`, `AccessDenied` → 403 `AccessDenied`, `NotFound` →
    /// `QueueDoesNotExist`, `Validation` → `InvalidParameterValue`; `Delay`, `Hang`,
    /// `MalformedJson`, `ConnectionReset`, `ExpiredToken`, `UnknownError` and `Oversized` (a
    /// successful answer padded to that many bytes, streamed) behave as for HealthLake;
    /// `NextTokenLoop` and `DuplicateJobs` have no effect.
    pub fn set_sqs_fault(&self, fault: Option<Fault>) {
        self.sqs.lock().fault = fault;
    }

    /// Injects (or clears) a fault for one SQS operation; it wins over [`Self::set_sqs_fault`].
    pub fn set_sqs_fault_for(&self, operation: SqsOperation, fault: Option<Fault>) {
        let mut sqs = self.sqs.lock();
        match fault {
            Some(fault) => {
                sqs.operation_faults.insert(operation, fault);
            }
            None => {
                sqs.operation_faults.remove(&operation);
            }
        }
    }

    /// `ReceiveMessage` calls being answered right now, long polls waiting for a message
    /// included. A test waits on it instead of sleeping: to know that a long poll is in flight,
    /// or that one abandoned by a stopped client has ended.
    pub fn sqs_receives_in_flight(&self) -> usize {
        self.sqs.receiving.load(Ordering::SeqCst)
    }

    /// Calls of one SQS operation received so far (faulted and rejected ones included, once the
    /// request is signed for `sqs`).
    pub fn sqs_request_count(&self, operation: SqsOperation) -> usize {
        self.sqs.lock().counts.get(&operation).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "events";

    fn queues() -> Queues {
        let mut q = Queues::default();
        q.create(Q, FakeQueue::default());
        q
    }

    #[test]
    fn received_message_hides_until_visibility_timeout() {
        let mut q = queues();
        let t0 = Instant::now();
        q.send(Q, "a".into(), Duration::ZERO, t0).unwrap();
        let first = q.receive(Q, 10, Some(Duration::from_secs(5)), t0).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert!(q
            .receive(Q, 10, None, t0 + Duration::from_secs(4))
            .unwrap()
            .is_empty());
        assert_eq!(q.next_visible(Q, t0), Some(t0 + Duration::from_secs(5)));
        let again = q.receive(Q, 10, None, t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].receipt, first[0].receipt);
    }

    #[test]
    fn only_newest_receipt_deletes_and_garbage_is_invalid() {
        let mut q = queues();
        let t0 = Instant::now();
        q.send(Q, "a".into(), Duration::ZERO, t0).unwrap();
        let old = q.receive(Q, 1, Some(Duration::ZERO), t0).unwrap().remove(0);
        let new = q.receive(Q, 1, None, t0).unwrap().remove(0);
        // A stale handle succeeds but deletes nothing, as on SQS.
        assert_eq!(q.delete(Q, &old.receipt), Ok(DeleteOutcome::Ok));
        assert_eq!(q.depth(Q, t0).unwrap(), (0, 1));
        assert_eq!(q.delete(Q, "garbage"), Ok(DeleteOutcome::InvalidHandle));
        let mut forged = new.receipt.clone();
        forged.push('0');
        assert_eq!(q.delete(Q, &forged), Ok(DeleteOutcome::InvalidHandle));
        assert_eq!(q.delete(Q, &new.receipt), Ok(DeleteOutcome::Ok));
        assert_eq!(q.depth(Q, t0).unwrap(), (0, 0));
        assert_eq!(q.delete("nope", &new.receipt), Err(QueueError::NoSuchQueue));
    }

    #[test]
    fn visibility_changes_need_the_newest_handle_of_a_message_in_flight() {
        let mut q = queues();
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        q.send(Q, "a".into(), Duration::ZERO, t0).unwrap();
        let old = q.receive(Q, 1, Some(secs(10)), t0).unwrap().remove(0);
        // Extended before it ran out: still hidden past the first timeout.
        assert_eq!(
            q.change_visibility(Q, &old.receipt, secs(10), t0 + secs(5)),
            Ok(VisibilityOutcome::Ok)
        );
        assert!(q.receive(Q, 1, None, t0 + secs(12)).unwrap().is_empty());
        // Not extended again: it comes back, and the old handle goes stale.
        let new = q
            .receive(Q, 1, Some(secs(10)), t0 + secs(15))
            .unwrap()
            .remove(0);
        assert_eq!(new.receive_count, 2);
        let at = t0 + secs(16);
        assert_eq!(
            q.change_visibility(Q, &old.receipt, secs(10), at),
            Ok(VisibilityOutcome::Stale)
        );
        assert_eq!(
            q.change_visibility(Q, "garbage", secs(10), at),
            Ok(VisibilityOutcome::InvalidHandle)
        );
        assert_eq!(
            q.change_visibility(Q, &new.receipt, secs(10), t0 + secs(30)),
            Ok(VisibilityOutcome::NotInFlight)
        );
        assert_eq!(
            q.change_visibility(Q, &new.receipt, MAX_VISIBILITY, at),
            Ok(VisibilityOutcome::TooLong)
        );
        assert_eq!(
            q.change_visibility(Q, &new.receipt, secs(10), at),
            Ok(VisibilityOutcome::Ok)
        );
        // The old handle's delete is answered with success and deletes nothing; the new one's
        // deletes; deleting again is stale too.
        assert_eq!(q.delete(Q, &old.receipt), Ok(DeleteOutcome::Ok));
        assert_eq!(q.depth(Q, at).unwrap(), (0, 1));
        assert_eq!(q.delete(Q, &new.receipt), Ok(DeleteOutcome::Ok));
        assert_eq!(q.delete(Q, &new.receipt), Ok(DeleteOutcome::Ok));
        assert_eq!(
            q.change_visibility(Q, &new.receipt, secs(10), at),
            Ok(VisibilityOutcome::Stale)
        );
        assert_eq!(
            q.stats(Q),
            QueueStats {
                deliveries: 2,
                redeliveries: 1,
                deleted: 1,
                stale_deletes: 2,
                visibility_changes: 2,
                failed_visibility_changes: 5,
                max_receive_count: 2,
                dead_lettered: 0,
            }
        );
        assert_eq!(q.stats("nope"), QueueStats::default());
    }

    #[test]
    fn receive_is_oldest_first_and_capped() {
        let mut q = queues();
        let t0 = Instant::now();
        for i in 0..15 {
            q.send(Q, format!("m{i}"), Duration::ZERO, t0).unwrap();
        }
        let first = q.receive(Q, MAX_RECEIVE_MESSAGES, None, t0).unwrap();
        let bodies: Vec<_> = first.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"]
        );
        assert_eq!(q.receive(Q, 10, None, t0).unwrap().len(), 5);
        assert_eq!(q.depth(Q, t0).unwrap(), (0, 15));
    }

    #[test]
    fn poison_message_moves_to_dead_letter_queue() {
        let mut q = Queues::default();
        q.create("dlq", FakeQueue::default());
        q.create(
            Q,
            FakeQueue {
                visibility_timeout: Duration::ZERO,
                dead_letter: Some(("dlq".into(), 2)),
            },
        );
        let t0 = Instant::now();
        q.send(Q, "poison".into(), Duration::ZERO, t0).unwrap();
        assert_eq!(q.receive(Q, 1, None, t0).unwrap().len(), 1);
        assert_eq!(q.receive(Q, 1, None, t0).unwrap().len(), 1);
        assert!(q.receive(Q, 1, None, t0).unwrap().is_empty());
        assert_eq!(q.depth(Q, t0).unwrap(), (0, 0));
        assert_eq!(q.messages("dlq", t0)[0].body, "poison");
        let stats = q.stats(Q);
        assert_eq!((stats.dead_lettered, stats.max_receive_count), (1, 2));
    }

    #[test]
    fn queue_url_names_the_queue() {
        for url in [
            "http://127.0.0.1:4566/123456789012/events",
            "https://sqs.us-east-1.amazonaws.com/123456789012/events/",
            "127.0.0.1:1/000000000000/events",
        ] {
            assert_eq!(queue_name_of_url(url), Some("events"), "{url}");
        }
        for url in ["", "http://host", "http://host/", "events"] {
            assert_eq!(queue_name_of_url(url), None, "{url}");
        }
    }

    #[test]
    fn operation_names_round_trip() {
        for op in SqsOperation::ALL {
            assert_eq!(SqsOperation::from_name(op.name()), Some(op));
            assert_eq!(
                SqsOperation::from_name(&format!("AmazonSQS.{}", op.name())),
                Some(op)
            );
        }
        assert_eq!(SqsOperation::from_name("AmazonSQS.PurgeQueue"), None);
    }
}
