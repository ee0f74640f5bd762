//! Coalescing of event-driven refreshes, as pure bookkeeping: events for one datastore that
//! arrive together (one `ReceiveMessage` batch) or while a refresh of that datastore is running
//! become one refresh (the next one), a datastore never has two refreshes in flight, and a message
//! becomes deletable only once every refresh it asked for has finished — so an event is never
//! lost between "received" and "applied", and a burst of N events costs at most two listings.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::message::Scope;

/// A refresh to run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub datastore: String,
    pub scope: Scope,
}

/// What finishing a refresh released.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished<M> {
    /// Messages whose every refresh has now finished: delete them.
    pub deletable: Vec<M>,
    /// Events the finished refresh applied.
    pub applied: usize,
    /// The newest `time` among them.
    pub newest_event: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Group {
    scope: Scope,
    messages: Vec<u64>,
    newest_event: Option<SystemTime>,
}

impl Group {
    fn add(&mut self, scope: Scope, message: u64, time: Option<SystemTime>) {
        self.scope = self.scope.union(scope);
        self.messages.push(message);
        self.newest_event = self.newest_event.max(time);
    }
}

/// Pending and running refreshes, and the messages waiting for them. `M` is whatever the
/// consumer needs to delete a message (its receipt handle).
#[derive(Debug)]
pub struct Coalescer<M> {
    pending: BTreeMap<String, Group>,
    running: BTreeMap<String, Group>,
    /// Message, and how many refreshes it still waits for.
    messages: HashMap<u64, (M, usize)>,
    next: u64,
}

impl<M> Default for Coalescer<M> {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
            running: BTreeMap::new(),
            messages: HashMap::new(),
            next: 0,
        }
    }
}

impl<M> Coalescer<M> {
    /// Records a message asking to refresh `datastores` (each once). A message naming none is
    /// handed back at once: nothing to wait for, delete it.
    pub fn add(
        &mut self,
        message: M,
        datastores: &[String],
        scope: Scope,
        time: Option<SystemTime>,
    ) -> Option<M> {
        if datastores.is_empty() {
            return Some(message);
        }
        let id = self.next;
        self.next += 1;
        self.messages.insert(id, (message, datastores.len()));
        for datastore in datastores {
            self.pending
                .entry(datastore.clone())
                .or_default()
                .add(scope, id, time);
        }
        None
    }

    /// Starts every pending refresh whose datastore has none running.
    pub fn start_ready(&mut self) -> Vec<Refresh> {
        let ready: Vec<String> = self
            .pending
            .keys()
            .filter(|d| !self.running.contains_key(*d))
            .cloned()
            .collect();
        ready
            .into_iter()
            .filter_map(|datastore| {
                let group = self.pending.remove(&datastore)?;
                let scope = group.scope;
                self.running.insert(datastore.clone(), group);
                Some(Refresh { datastore, scope })
            })
            .collect()
    }

    /// Marks a datastore's running refresh finished (successfully or not: reconciliation stays
    /// the truth) and releases the messages that waited only for it.
    pub fn finish(&mut self, datastore: &str) -> Finished<M> {
        let Some(group) = self.running.remove(datastore) else {
            return Finished {
                deletable: Vec::new(),
                applied: 0,
                newest_event: None,
            };
        };
        let mut deletable = Vec::new();
        for id in &group.messages {
            let done = match self.messages.get_mut(id) {
                Some((_, waiting)) => {
                    *waiting -= 1;
                    *waiting == 0
                }
                None => false,
            };
            if done {
                if let Some((message, _)) = self.messages.remove(id) {
                    deletable.push(message);
                }
            }
        }
        Finished {
            deletable,
            applied: group.messages.len(),
            newest_event: group.newest_event,
        }
    }

    /// Refreshes running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Messages received and not yet deletable.
    pub fn waiting_messages(&self) -> usize {
        self.messages.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const EXPORTS: Scope = Scope {
        exports: true,
        imports: false,
        datastore: false,
    };
    const IMPORTS: Scope = Scope {
        exports: false,
        imports: true,
        datastore: false,
    };

    fn ds(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn events_of_one_batch_coalesce_into_one_refresh() {
        let mut c = Coalescer::default();
        assert_eq!(c.add("m1", &ds(&["a"]), EXPORTS, at(10)), None);
        assert_eq!(c.add("m2", &ds(&["a"]), IMPORTS, at(30)), None);
        assert_eq!(c.add("m3", &ds(&["a"]), EXPORTS, at(20)), None);
        let started = c.start_ready();
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
    fn events_during_a_refresh_wait_for_the_next_one() {
        let mut c = Coalescer::default();
        c.add("m1", &ds(&["a"]), EXPORTS, None);
        assert_eq!(c.start_ready().len(), 1);
        // Arrives while "a" is being listed: that listing may have missed its change.
        c.add("m2", &ds(&["a"]), EXPORTS, None);
        c.add("m3", &ds(&["a"]), EXPORTS, None);
        assert!(
            c.start_ready().is_empty(),
            "never two refreshes of one datastore"
        );
        assert_eq!(c.finish("a").deletable, ["m1"]);
        assert_eq!(c.start_ready().len(), 1);
        assert_eq!(c.finish("a").deletable, ["m2", "m3"]);
        assert_eq!(c.running(), 0);
    }

    #[test]
    fn a_message_naming_two_datastores_waits_for_both() {
        let mut c = Coalescer::default();
        c.add("m1", &ds(&["a", "b"]), EXPORTS, None);
        assert_eq!(c.start_ready().len(), 2);
        assert!(c.finish("b").deletable.is_empty());
        assert_eq!(c.finish("a").deletable, ["m1"]);
    }

    #[test]
    fn messages_for_no_followed_datastore_are_released_at_once() {
        let mut c: Coalescer<&str> = Coalescer::default();
        assert_eq!(c.add("m1", &[], EXPORTS, None), Some("m1"));
        assert!(c.start_ready().is_empty());
        assert_eq!(c.waiting_messages(), 0);
    }

    #[test]
    fn finishing_an_unknown_datastore_is_harmless() {
        let mut c: Coalescer<&str> = Coalescer::default();
        let finished = c.finish("nope");
        assert!(finished.deletable.is_empty());
        assert_eq!(finished.applied, 0);
    }
}
