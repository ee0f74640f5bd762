//! The messages the consumer holds (received, not yet deleted) and when each one's visibility
//! must be extended, as pure bookkeeping (time comes in as an argument).
//!
//! A received message stays hidden only for the visibility timeout; its refresh may wait far
//! longer (behind `polling.concurrency`, the request budget, the datastore's spacing). So the
//! consumer extends the visibility of every message it holds when half of it is left, for as
//! long as it holds it: a message comes back only if the exporter stopped, or SQS refused to
//! keep it hidden. Messages are keyed by `MessageId`; a copy SQS delivers again replaces the old
//! receipt handle (only the newest one deletes the message or changes its visibility).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after a failed `ChangeMessageVisibilityBatch` its messages are tried again.
pub const RETRY_EXTEND: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct HeldMessage {
    receipt: String,
    /// When to extend its visibility: half of it before it runs out.
    renew_at: Instant,
}

/// The messages held, by `MessageId`.
#[derive(Debug)]
pub struct Held {
    messages: HashMap<String, HeldMessage>,
    /// How long a receive or an extension hides a message.
    visibility: Duration,
}

impl Held {
    pub fn new(visibility: Duration) -> Held {
        Held {
            messages: HashMap::new(),
            visibility,
        }
    }

    /// How long a receive or an extension hides a message.
    pub fn visibility(&self) -> Duration {
        self.visibility
    }

    /// From now on, receives and extensions hide messages for `visibility`.
    pub fn set_visibility(&mut self, visibility: Duration) {
        self.visibility = visibility;
    }

    /// When a message hidden at `from` is to be extended.
    fn renew_at(&self, from: Instant) -> Instant {
        from + self.visibility / 2
    }

    /// If message `id` is held (a copy delivered again while its refresh waits), takes its new
    /// receipt handle, hidden from `received_at`, and returns `true`.
    pub fn redelivered(&mut self, id: &str, receipt: &str, received_at: Instant) -> bool {
        let renew_at = self.renew_at(received_at);
        match self.messages.get_mut(id) {
            Some(held) => {
                held.receipt = receipt.to_owned();
                held.renew_at = renew_at;
                true
            }
            None => false,
        }
    }

    /// Holds message `id`, received (hidden) at `received_at`.
    pub fn hold(&mut self, id: &str, receipt: String, received_at: Instant) {
        let renew_at = self.renew_at(received_at);
        self.messages
            .insert(id.to_owned(), HeldMessage { receipt, renew_at });
    }

    /// Lets message `id` go; returns its newest receipt handle, to delete it with.
    pub fn release(&mut self, id: &str) -> Option<String> {
        self.messages.remove(id).map(|held| held.receipt)
    }

    /// The messages whose visibility is to be extended now: `(id, newest receipt)`.
    pub fn due(&self, now: Instant) -> Vec<(String, String)> {
        self.messages
            .iter()
            .filter(|(_, held)| held.renew_at <= now)
            .map(|(id, held)| (id.clone(), held.receipt.clone()))
            .collect()
    }

    /// Notes that the messages `ids` were extended by a call made at `at` (or, with
    /// `succeeded = false`, that the call failed: they are tried again [`RETRY_EXTEND`] later).
    /// A message whose handle changed meanwhile keeps the newer schedule.
    pub fn extended(&mut self, batch: &[(String, String)], at: Instant, succeeded: bool) {
        let renew_at = if succeeded {
            self.renew_at(at)
        } else {
            at + RETRY_EXTEND
        };
        for (id, receipt) in batch {
            if let Some(held) = self.messages.get_mut(id) {
                if held.receipt == *receipt {
                    held.renew_at = renew_at;
                }
            }
        }
    }

    /// When the next extension is due (`None`: nothing held).
    pub fn next_due(&self) -> Option<Instant> {
        self.messages.values().map(|held| held.renew_at).min()
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Duration = Duration::from_secs(10);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn held_messages_are_extended_at_half_their_visibility_for_as_long_as_held() {
        let t0 = Instant::now();
        let mut held = Held::new(V);
        held.hold("m1", "r1".into(), t0);
        held.hold("m2", "r2".into(), t0 + secs(2));
        assert!(held.due(t0 + secs(4)).is_empty());
        assert_eq!(held.next_due(), Some(t0 + secs(5)));
        let due = held.due(t0 + secs(5));
        assert_eq!(due, [("m1".to_owned(), "r1".to_owned())]);
        held.extended(&due, t0 + secs(5), true);
        assert_eq!(held.next_due(), Some(t0 + secs(7)));
        // Twenty seconds on, both are still due in turn: the waiting has no limit of its own.
        let mut extensions = 0;
        for s in 5..=25 {
            let now = t0 + secs(s);
            let due = held.due(now);
            extensions += due.len();
            held.extended(&due, now, true);
        }
        assert_eq!(extensions, 8, "every 5 s each");
        assert_eq!(held.release("m1"), Some("r1".into()));
        assert_eq!(held.release("m1"), None);
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn a_redelivered_copy_replaces_the_handle() {
        let t0 = Instant::now();
        let mut held = Held::new(V);
        assert!(!held.redelivered("m1", "r1", t0), "not held yet");
        held.hold("m1", "r1".into(), t0);
        let due = held.due(t0 + secs(5));
        assert!(held.redelivered("m1", "r1-new", t0 + secs(6)));
        // The extension made with the old handle does not move the new handle's schedule.
        held.extended(&due, t0 + secs(6), true);
        assert_eq!(held.next_due(), Some(t0 + secs(11)));
        assert_eq!(held.due(t0 + secs(11))[0].1, "r1-new");
        assert_eq!(held.release("m1"), Some("r1-new".into()));
    }

    #[test]
    fn a_failed_extension_is_retried_soon() {
        let t0 = Instant::now();
        let mut held = Held::new(V);
        held.hold("m1", "r1".into(), t0);
        let due = held.due(t0 + secs(5));
        held.extended(&due, t0 + secs(5), false);
        assert_eq!(held.next_due(), Some(t0 + secs(5) + RETRY_EXTEND));
        assert!(!held.is_empty());
    }
}
