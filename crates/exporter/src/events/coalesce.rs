//! Coalescing of event-driven refreshes, as pure bookkeeping (time comes in as an argument):
//! events for one datastore that arrive together (one `ReceiveMessage` batch) or while a refresh
//! of that datastore is running become one refresh (the next one), a datastore never has two
//! refreshes in flight nor two starts closer than the spacing it is given (`polling.timeout`: a
//! flood of events on one datastore costs at most one refresh per spacing and leaves the request
//! budget to the others), and a message becomes deletable only once every refresh it asked for
//! has finished — so an event is never lost between "received" and "applied".
//!
//! Messages are known by their SQS `MessageId`, the same for every delivery of one message: a
//! copy that arrives while the message still waits is not a new event.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use super::message::Scope;

/// No spacing is longer: validation keeps `polling.timeout` within minutes, and this keeps
/// `Instant + spacing` from overflowing for any other value.
const LONGEST_SPACING: Duration = Duration::from_secs(365 * 86_400);

/// A refresh to run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub datastore: String,
    pub scope: Scope,
}

/// What finishing a refresh released.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    /// Messages (ids) whose every refresh has now finished: delete them.
    pub deletable: Vec<String>,
    /// Events the finished refresh applied.
    pub applied: usize,
    /// The newest `time` among them.
    pub newest_event: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Group {
    scope: Scope,
    messages: Vec<String>,
    newest_event: Option<SystemTime>,
}

impl Group {
    fn add(&mut self, scope: Scope, message: &str, time: Option<SystemTime>) {
        self.scope = self.scope.union(scope);
        self.messages.push(message.to_owned());
        self.newest_event = self.newest_event.max(time);
    }
}

/// Pending and running refreshes, when each datastore's last one started, and the messages
/// waiting for them.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: BTreeMap<String, Group>,
    running: BTreeMap<String, Group>,
    /// When each datastore's newest refresh started (pruned once older than any spacing asked).
    started: HashMap<String, Instant>,
    /// Message id, and how many refreshes it still waits for.
    waiting: HashMap<String, usize>,
}

impl Coalescer {
    /// Records message `id` asking to refresh `datastores` (each once). Returns whether it now
    /// waits: `false` for a message naming none (nothing to wait for: delete it). A message
    /// that already waits (a redelivered copy) is not recorded again.
    pub fn add(
        &mut self,
        id: &str,
        datastores: &[String],
        scope: Scope,
        time: Option<SystemTime>,
    ) -> bool {
        if datastores.is_empty() {
            return false;
        }
        if self.waiting.contains_key(id) {
            return true;
        }
        self.waiting.insert(id.to_owned(), datastores.len());
        for datastore in datastores {
            self.pending
                .entry(datastore.clone())
                .or_default()
                .add(scope, id, time);
        }
        true
    }

    /// When the refresh of `datastore` may start: `spacing` after its previous start.
    fn ready_at(&self, datastore: &str, spacing: Duration) -> Option<Instant> {
        let spacing = spacing.min(LONGEST_SPACING);
        self.started.get(datastore).map(|t| *t + spacing)
    }

    /// Starts, as of `now`, every pending refresh whose datastore has none running and whose
    /// previous one started at least `spacing` ago.
    pub fn start_ready(&mut self, now: Instant, spacing: Duration) -> Vec<Refresh> {
        let ready: Vec<String> = self
            .pending
            .keys()
            .filter(|d| !self.running.contains_key(*d))
            .filter(|d| self.ready_at(d, spacing).is_none_or(|at| at <= now))
            .cloned()
            .collect();
        self.started
            .retain(|_, at| *at + spacing.min(LONGEST_SPACING) > now);
        ready
            .into_iter()
            .filter_map(|datastore| {
                let group = self.pending.remove(&datastore)?;
                let scope = group.scope;
                self.started.insert(datastore.clone(), now);
                self.running.insert(datastore.clone(), group);
                Some(Refresh { datastore, scope })
            })
            .collect()
    }

    /// The earliest time a pending refresh that only waits for its spacing may start (`None`:
    /// none does; a refresh waiting for a running one starts when that one finishes).
    pub fn next_start(&self, spacing: Duration) -> Option<Instant> {
        self.pending
            .keys()
            .filter(|d| !self.running.contains_key(*d))
            .filter_map(|d| self.ready_at(d, spacing))
            .min()
    }

    /// Marks a datastore's running refresh finished (successfully or not: reconciliation stays
    /// the truth) and releases the messages that waited only for it.
    pub fn finish(&mut self, datastore: &str) -> Finished {
        let Some(group) = self.running.remove(datastore) else {
            return Finished {
                deletable: Vec::new(),
                applied: 0,
                newest_event: None,
            };
        };
        let applied = group.messages.len();
        let mut deletable = Vec::new();
        for id in group.messages {
            let done = match self.waiting.get_mut(&id) {
                Some(waiting) => {
                    *waiting -= 1;
                    *waiting == 0
                }
                None => false,
            };
            if done {
                self.waiting.remove(&id);
                deletable.push(id);
            }
        }
        Finished {
            deletable,
            applied,
            newest_event: group.newest_event,
        }
    }

    /// Refreshes running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Messages received and not yet deletable.
    pub fn waiting_messages(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const EXPORTS: Scope = Scope {
        exports: true,
        imports: false,
        datastore: false,
        old_jobs: false,
    };
    const IMPORTS: Scope = Scope {
        exports: false,
        imports: true,
        datastore: false,
        old_jobs: false,
    };
    const SPACING: Duration = Duration::from_secs(5);

    fn ds(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn events_of_one_batch_coalesce_into_one_refresh() {
        let mut c = Coalescer::default();
        let now = Instant::now();
        assert!(c.add("m1", &ds(&["a"]), EXPORTS, at(10)));
        assert!(c.add("m2", &ds(&["a"]), IMPORTS, at(30)));
        assert!(c.add("m3", &ds(&["a"]), EXPORTS, at(20)));
        let started = c.start_ready(now, SPACING);
        assert_eq!(
            started,
            [Refresh {
                datastore: "a".into(),
                scope: EXPORTS.union(IMPORTS)
            }]
        );
        let finished = c.finish("a");
        assert_eq!(finished.deletable, ["m1", "m2", "m3"]);
        assert_eq!(finished.applied, 3);
        assert_eq!(finished.newest_event, at(30));
        assert_eq!(c.waiting_messages(), 0);
    }

    #[test]
    fn events_during_a_refresh_wait_for_the_next_one_and_its_spacing() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        c.add("m1", &ds(&["a"]), EXPORTS, None);
        assert_eq!(c.start_ready(t0, SPACING).len(), 1);
        // Arrives while "a" is being listed: that listing may have missed its change.
        c.add("m2", &ds(&["a"]), EXPORTS, None);
        c.add("m3", &ds(&["a"]), EXPORTS, None);
        assert!(
            c.start_ready(t0, SPACING).is_empty(),
            "never two refreshes of one datastore"
        );
        assert_eq!(c.next_start(SPACING), None, "waits for the running one");
        assert_eq!(c.finish("a").deletable, ["m1"]);
        // Finished after 1 s: the next one waits for the spacing, not for the next event.
        let t1 = t0 + Duration::from_secs(1);
        assert!(c.start_ready(t1, SPACING).is_empty());
        assert_eq!(c.next_start(SPACING), Some(t0 + SPACING));
        assert_eq!(c.start_ready(t0 + SPACING, SPACING).len(), 1);
        assert_eq!(c.finish("a").deletable, ["m2", "m3"]);
        assert_eq!(c.running(), 0);
    }

    #[test]
    fn a_flood_on_one_datastore_costs_one_refresh_per_spacing_and_others_go_at_once() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let mut refreshes_of_a = 0;
        let mut id = 0;
        // 40 events per second on "a" for 12 s; each refresh takes 100 ms.
        for tick in 0..480u32 {
            let now = t0 + Duration::from_millis(25) * tick;
            id += 1;
            c.add(&format!("a{id}"), &ds(&["a"]), EXPORTS, None);
            if tick == 100 {
                c.add("b", &ds(&["b"]), EXPORTS, None);
                let started = c.start_ready(now, SPACING);
                assert!(started.iter().any(|r| r.datastore == "b"), "not held back");
            }
            for refresh in c.start_ready(now, SPACING) {
                if refresh.datastore == "a" {
                    refreshes_of_a += 1;
                }
            }
            if tick % 4 == 3 {
                c.finish("a");
                c.finish("b");
            }
        }
        // Starts at 0, 5 and 10 s.
        assert_eq!(refreshes_of_a, 3);
    }

    #[test]
    fn a_message_naming_two_datastores_waits_for_both() {
        let mut c = Coalescer::default();
        c.add("m1", &ds(&["a", "b"]), EXPORTS, None);
        assert_eq!(c.start_ready(Instant::now(), SPACING).len(), 2);
        assert!(c.finish("b").deletable.is_empty());
        assert_eq!(c.finish("a").deletable, ["m1"]);
    }

    #[test]
    fn a_redelivered_copy_of_a_waiting_message_is_not_a_new_event() {
        let mut c = Coalescer::default();
        let now = Instant::now();
        assert!(c.add("m1", &ds(&["a"]), EXPORTS, None));
        assert_eq!(c.start_ready(now, SPACING).len(), 1);
        assert!(c.add("m1", &ds(&["a"]), EXPORTS, None), "still waits");
        let finished = c.finish("a");
        assert_eq!(finished.deletable, ["m1"]);
        assert_eq!(finished.applied, 1);
        assert!(
            c.start_ready(now + SPACING, SPACING).is_empty(),
            "no second refresh"
        );
    }

    #[test]
    fn messages_for_no_followed_datastore_are_released_at_once() {
        let mut c = Coalescer::default();
        assert!(!c.add("m1", &[], EXPORTS, None));
        assert!(c.start_ready(Instant::now(), SPACING).is_empty());
        assert_eq!(c.waiting_messages(), 0);
    }

    /// A spacing past what an `Instant` holds (a configuration built past validation) waits
    /// forever instead of overflowing: found by tests/config_property.rs.
    #[test]
    fn a_spacing_past_what_an_instant_holds_saturates() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        c.add("m1", &ds(&["a"]), EXPORTS, None);
        assert_eq!(c.start_ready(t0, Duration::MAX).len(), 1);
        c.finish("a");
        c.add("m2", &ds(&["a"]), EXPORTS, None);
        let later = t0 + Duration::from_secs(86_400);
        assert!(c.start_ready(later, Duration::MAX).is_empty());
        assert!(c.next_start(Duration::MAX).is_some_and(|at| at > later));
    }

    #[test]
    fn finishing_an_unknown_datastore_is_harmless() {
        let mut c = Coalescer::default();
        let finished = c.finish("nope");
        assert!(finished.deletable.is_empty());
        assert_eq!(finished.applied, 0);
    }
}
