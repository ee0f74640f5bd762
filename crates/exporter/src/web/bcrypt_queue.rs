//! Basic auth's bcrypt turns: one verification at a time, shared fairly between source
//! addresses, so that a wrong-password flood from some addresses cannot lock out a scraper on
//! another.
//!
//! bcrypt is slow on purpose, which makes it a CPU lever: checks run one at a time (at most one
//! core, whatever the flood). Who goes next decides whether the real scraper gets through:
//! - each source address waits in its own line, at most [`MAX_WAITING_PER_SOURCE`] deep; more
//!   get `429` at once;
//! - turns go round-robin across addresses, so that N busy addresses delay a check by at most N
//!   checks, however many requests each sends;
//! - an address with no failed check in the last [`SUSPECT_FOR`] goes before addresses with one,
//!   and among those, one with a single check waiting before one with several (a flood sends
//!   many at once, a scraper one): a scraper whose credentials are right waits for at most the
//!   check already running, even at start, before the flood has a record;
//! - addresses with a recent failure hold at most [`MAX_WAITING_SUSPECT`] waiting checks
//!   altogether: each waiting check holds a connection, and a flood must not hold them all.
//!
//! The queue is about addresses, not users: it outlives reloads of `[server.basic_auth]`, so a
//! flood's record survives them and two queues never run bcrypt side by side.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Checks one source address may have waiting; more are answered 429 at once.
pub const MAX_WAITING_PER_SOURCE: usize = 4;
/// Checks that addresses with a recent failed check may have waiting, all together.
pub const MAX_WAITING_SUSPECT: usize = 32;
/// How long a failed check puts its address behind the others.
pub const SUSPECT_FOR: Duration = Duration::from_secs(60);
/// Addresses whose last failure is remembered; beyond it the oldest are forgotten.
const FAILURE_MEMORY: usize = 4096;

/// The bcrypt slot and who waits for it.
#[derive(Default)]
pub(crate) struct BcryptQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// A check holds the slot (a [`Turn`] is alive).
    running: bool,
    /// Per address, its waiting checks in arrival order.
    lines: HashMap<IpAddr, VecDeque<Waiter>>,
    /// Addresses with waiting checks, in turn order.
    ring: VecDeque<IpAddr>,
    suspect_waiting: usize,
    next_id: u64,
    /// When each address last failed a check.
    failures: HashMap<IpAddr, Instant>,
}

struct Waiter {
    id: u64,
    /// Counted in `suspect_waiting`.
    suspect: bool,
    wake: oneshot::Sender<()>,
}

/// The bcrypt slot, held for one verification; dropping it hands the slot to the next waiter.
pub(crate) struct Turn {
    queue: Arc<BcryptQueue>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.queue.state().pass_on(Instant::now());
    }
}

/// A place in a line; dropped before its turn came (the client left), it leaves the line, and
/// dropped with a turn granted but not taken, it passes the turn on.
struct Ticket {
    queue: Arc<BcryptQueue>,
    source: IpAddr,
    id: u64,
    granted: oneshot::Receiver<()>,
    taken: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut state = self.queue.state();
        // Under the lock no turn can be granted meanwhile: either it was (and is passed on), or
        // the waiter is still in its line.
        self.granted.close();
        if self.granted.try_recv().is_ok() {
            state.pass_on(Instant::now());
        } else {
            state.leave(self.source, self.id);
        }
    }
}

impl BcryptQueue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        // The lines stay consistent whatever a panicking holder did (nothing here panics).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for `source`'s turn at the bcrypt slot; `None` when its line (or the suspects'
    /// share) is full: answer 429.
    pub(crate) async fn turn(self: &Arc<Self>, source: IpAddr) -> Option<Turn> {
        let (id, granted) = {
            let mut state = self.state();
            if !state.running {
                state.running = true;
                return Some(Turn {
                    queue: Arc::clone(self),
                });
            }
            state.join(source, Instant::now())?
        };
        let mut ticket = Ticket {
            queue: Arc::clone(self),
            source,
            id,
            granted,
            taken: false,
        };
        // The sender is dropped only after a grant or with the ticket's own removal.
        (&mut ticket.granted).await.ok()?;
        ticket.taken = true;
        Some(Turn {
            queue: Arc::clone(self),
        })
    }

    /// Records the outcome of a check from `source`: a failure puts it behind the others for
    /// [`SUSPECT_FOR`], a success clears that.
    pub(crate) fn record(&self, source: IpAddr, ok: bool, now: Instant) {
        let mut state = self.state();
        if ok {
            state.failures.remove(&source);
            return;
        }
        if state.failures.len() >= FAILURE_MEMORY && !state.failures.contains_key(&source) {
            state
                .failures
                .retain(|_, at| now.saturating_duration_since(*at) < SUSPECT_FOR);
            if state.failures.len() >= FAILURE_MEMORY {
                state.failures.clear();
            }
        }
        state.failures.insert(source, now);
    }

    /// Checks waiting now.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.state().lines.values().map(VecDeque::len).sum()
    }
}

impl QueueState {
    fn suspect(&self, source: &IpAddr, now: Instant) -> bool {
        self.failures
            .get(source)
            .is_some_and(|at| now.saturating_duration_since(*at) < SUSPECT_FOR)
    }

    /// Puts a check from `source` in its line, unless a cap says 429.
    fn join(&mut self, source: IpAddr, now: Instant) -> Option<(u64, oneshot::Receiver<()>)> {
        let suspect = self.suspect(&source, now);
        let queued = self.lines.get(&source).map_or(0, VecDeque::len);
        if queued >= MAX_WAITING_PER_SOURCE
            || (suspect && self.suspect_waiting >= MAX_WAITING_SUSPECT)
        {
            return None;
        }
        let (wake, granted) = oneshot::channel();
        let id = self.next_id;
        self.next_id += 1;
        if queued == 0 {
            self.ring.push_back(source);
        }
        self.suspect_waiting += usize::from(suspect);
        self.lines
            .entry(source)
            .or_default()
            .push_back(Waiter { id, suspect, wake });
        Some((id, granted))
    }

    /// Removes a waiter that gave up.
    fn leave(&mut self, source: IpAddr, id: u64) {
        let Some(line) = self.lines.get_mut(&source) else {
            return;
        };
        if let Some(at) = line.iter().position(|w| w.id == id) {
            if let Some(waiter) = line.remove(at) {
                self.suspect_waiting -= usize::from(waiter.suspect);
            }
        }
        if line.is_empty() {
            self.lines.remove(&source);
            self.ring.retain(|ip| *ip != source);
        }
    }

    /// The next waiter: the first address in turn order without a recent failure and with one
    /// check waiting, else the first without a recent failure, else the first address; that
    /// address goes to the back of the ring.
    fn next(&mut self, now: Instant) -> Option<Waiter> {
        let single = |ip: &IpAddr| self.lines.get(ip).is_some_and(|line| line.len() == 1);
        let at = (self.ring.iter())
            .position(|ip| !self.suspect(ip, now) && single(ip))
            .or_else(|| self.ring.iter().position(|ip| !self.suspect(ip, now)))
            .unwrap_or(0);
        let source = self.ring.remove(at)?;
        let line = self.lines.get_mut(&source)?;
        let waiter = line.pop_front()?;
        if line.is_empty() {
            self.lines.remove(&source);
        } else {
            self.ring.push_back(source);
        }
        self.suspect_waiting -= usize::from(waiter.suspect);
        Some(waiter)
    }

    /// Hands the slot to the next waiter still there, or frees it.
    fn pass_on(&mut self, now: Instant) {
        while let Some(waiter) = self.next(now) {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        self.running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// Joins `source` and returns the task waiting for its turn.
    fn waiter(
        queue: &Arc<BcryptQueue>,
        source: IpAddr,
        order: &Arc<Mutex<Vec<IpAddr>>>,
    ) -> tokio::task::JoinHandle<bool> {
        let queue = Arc::clone(queue);
        let order = Arc::clone(order);
        tokio::spawn(async move {
            let Some(turn) = queue.turn(source).await else {
                return false;
            };
            order.lock().unwrap().push(source);
            drop(turn);
            true
        })
    }

    /// Lets the spawned waiters run until `expected` of them wait (on this current-thread
    /// runtime a yield runs them); fails rather than spins if they never do.
    async fn settle(queue: &BcryptQueue, expected: usize) {
        for _ in 0..10_000 {
            if queue.waiting() == expected {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} waiting, not {expected}", queue.waiting());
    }

    #[tokio::test]
    async fn a_clean_address_goes_first_and_addresses_take_turns() {
        let queue = Arc::new(BcryptQueue::default());
        let now = Instant::now();
        for flooder in [1, 2] {
            queue.record(ip(flooder), false, now);
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let running = queue.turn(ip(1)).await.expect("the free slot");
        // Address 1 queues four checks, address 2 two, then the scraper (address 9) one.
        let mut tasks = Vec::new();
        for (source, count) in [(1, 4), (2, 2), (9, 1)] {
            for _ in 0..count {
                tasks.push(waiter(&queue, ip(source), &order));
                settle(&queue, tasks.len()).await;
            }
        }
        // A fifth from address 1 is over its line's cap.
        assert!(queue.turn(ip(1)).await.is_none());
        drop(running);
        for task in tasks {
            assert!(task.await.unwrap());
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(
            order,
            vec![ip(9), ip(1), ip(2), ip(1), ip(2), ip(1), ip(1)],
            "the clean scraper first, then the flooding addresses in turn"
        );
        assert!(!queue.state().running);
        assert_eq!(queue.state().suspect_waiting, 0);
    }

    #[tokio::test]
    async fn before_any_failure_a_single_check_goes_before_an_address_sending_several() {
        let queue = Arc::new(BcryptQueue::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let running = queue.turn(ip(1)).await.unwrap();
        // Just after start: flooding addresses have no record yet, but send several at once.
        let mut tasks = Vec::new();
        for source in [1, 1, 2, 2, 9, 3, 3] {
            tasks.push(waiter(&queue, ip(source), &order));
            settle(&queue, tasks.len()).await;
        }
        drop(running);
        for task in tasks {
            assert!(task.await.unwrap());
        }
        assert_eq!(order.lock().unwrap()[0], ip(9));
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_neither_blocks_nor_leaks_the_slot() {
        let queue = Arc::new(BcryptQueue::default());
        let running = queue.turn(ip(1)).await.unwrap();
        let gone = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { queue.turn(ip(2)).await.is_some() })
        };
        settle(&queue, 1).await;
        gone.abort();
        let _ = gone.await;
        assert_eq!(queue.waiting(), 0);
        assert!(queue.state().ring.is_empty());
        drop(running);
        assert!(!queue.state().running, "no one waits: the slot is free");
        // Granted but dropped before taking the turn: the slot passes on.
        let running = queue.turn(ip(1)).await.unwrap();
        let (id, granted) = queue.state().join(ip(3), Instant::now()).unwrap();
        let ticket = Ticket {
            queue: Arc::clone(&queue),
            source: ip(3),
            id,
            granted,
            taken: false,
        };
        drop(running);
        assert!(queue.state().running, "granted to the ticket");
        drop(ticket);
        assert!(!queue.state().running, "passed on by the dropped ticket");
    }

    #[tokio::test]
    async fn suspect_addresses_share_a_bounded_number_of_places() {
        let queue = Arc::new(BcryptQueue::default());
        let now = Instant::now();
        let _running = queue.turn(ip(0)).await.unwrap();
        let mut held = Vec::new();
        for n in 0..(MAX_WAITING_SUSPECT as u8 + 8) {
            queue.record(ip(n + 10), false, now);
            if let Some(place) = queue.state().join(ip(n + 10), now) {
                held.push(place);
            }
        }
        assert_eq!(held.len(), MAX_WAITING_SUSPECT);
        // An address without failures still gets a place.
        assert!(queue.state().join(ip(1), now).is_some());
        // A success clears the record.
        queue.record(ip(10), true, now);
        assert!(!queue.state().suspect(&ip(10), now));
        assert!(queue.state().suspect(&ip(11), now));
        assert!(!queue.state().suspect(&ip(11), now + SUSPECT_FOR));
    }
}
