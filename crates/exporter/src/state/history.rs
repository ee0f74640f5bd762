//! The settled history of one job feed: what lets a poll list only the jobs that can still change.
//!
//! The history is cut at the *settled point*: jobs submitted after it (the *window*) are listed by
//! every poll; jobs at or before it are never listed again until the next full listing. Finished
//! jobs there live on only as counts ([`Settled`]); unfinished ones (*stragglers*: a stuck job, a
//! queue of old jobs) are kept by id and followed by a few filtered listings every
//! [`FOLLOW_EVERY`] polls, so an old unfinished job no longer holds the cut back (which made every
//! poll list the whole history). [`History::next_poll`] says what the next poll lists (its
//! [`PollPlan`]); `merge` stages a listing against the history and commits it with the steps here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::model::{Job, JobStatus, MAX_UNKNOWN_STATUSES, OTHER_STATUS};

/// How far behind the newest job a listing still looks, for jobs that HealthLake lists a little
/// after jobs submitted later than them. A job that appears later still is caught by the next full
/// listing (`polling.full_resync_interval`).
pub const LATE_JOB_WINDOW: f64 = 15.0 * 60.0;

/// At most this many of the newest jobs stay in the late-job window: a burst of submissions
/// settles as soon as newer ones follow it, so its pages are listed once, not for 15 minutes (the
/// incremental listing stays one page of 500).
pub const LATE_JOB_LIMIT: usize = 250;

/// Stragglers are followed every this many polls: a weeks-old job's transition shows within this
/// many intervals, for a few calls per datastore every this many polls.
pub const FOLLOW_EVERY: u32 = 8;

/// The settled history of one job feed (see the module docs).
#[derive(Debug, Default)]
pub struct History {
    /// Jobs submitted after the settled point: every job the incremental listing returns. Only
    /// what merging needs of each (their series live in the feed's newest jobs).
    pub(super) window: HashMap<Box<str>, KnownJob>,
    /// Unfinished jobs submitted at or before the settled point, followed by filtered listings.
    pub(super) stragglers: HashMap<Box<str>, KnownJob>,
    /// Finished jobs of the window that a listing stopped returning: remembered until they settle,
    /// so that one coming back is not counted twice.
    pub(super) gone: HashMap<Box<str>, KnownJob>,
    /// The settled point and the finished jobs at or before it; `None` until a window first settles.
    pub(super) settled: Option<Settled>,
    /// When the last full listing was, and how long since the stragglers were followed.
    pub(super) schedule: Schedule,
}

/// The part of a history at or before its settled point.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Settled {
    /// Jobs submitted at or before this Unix time are settled. Only moves forward.
    pub(super) at: f64,
    /// Per status, the finished jobs at or before `at` (stragglers excluded).
    pub(super) counts: BTreeMap<JobStatus, u64>,
    /// Per status, the settled jobs already accounted for by the finished counter (counted, or
    /// finished before the first poll): a full listing counts only settled jobs beyond these, so a
    /// settled job missing from one full listing and back in the next is not counted again. Never
    /// decreases.
    pub(super) known: BTreeMap<JobStatus, u64>,
}

impl Settled {
    /// Notes one more finished job at or before the settled point.
    pub(super) fn add_finished(&mut self, status: &JobStatus, n: u64) {
        for counts in [&mut self.counts, &mut self.known] {
            *counts.entry(status.clone()).or_insert(0) += n;
        }
    }
}

/// When a feed's listings are full, and when they follow the stragglers.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    /// When the last full listing was committed.
    pub(super) last_full: Option<Instant>,
    /// Incremental polls since the stragglers were last followed (or listed in full).
    pub(super) polls_since_follow: u32,
}

/// What the history keeps of a job it knows by id (in the window, a straggler, or gone): only what
/// merging and following need. Its series, if it is among the newest, are a
/// [`RecentJob`](crate::model::RecentJob).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct KnownJob {
    pub(super) status: JobStatus,
    pub(super) submitted: f64,
    /// See [`Job::is_active`].
    pub(super) active: bool,
}

impl From<&Job> for KnownJob {
    fn from(job: &Job) -> KnownJob {
        KnownJob {
            status: job.status.clone(),
            submitted: job.submitted,
            active: job.is_active(),
        }
    }
}

/// How much of a datastore's history a poll lists.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Listing {
    /// Every job: the first poll, and now and then to catch anything an incremental poll missed.
    Full,
    /// Only jobs submitted after this Unix time: every job that is not settled.
    SubmittedAfter(f64),
}

/// What one poll of a job feed asks HealthLake for: the poll plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PollPlan {
    pub listing: Listing,
    /// Follow the old unfinished jobs in this poll as well.
    pub follow: Option<Follow>,
    /// After a full listing: polls counted as done towards the first follow-up. Datastores get
    /// different offsets, so they follow their old jobs in different polls, not all in the same
    /// one (a burst of listings, and of memory, every `FOLLOW_EVERY` polls).
    pub follow_offset: u32,
}

impl PollPlan {
    /// A full listing.
    pub const FULL: PollPlan = PollPlan {
        listing: Listing::Full,
        follow: None,
        follow_offset: 0,
    };
}

/// How a poll follows the stragglers: one listing per status they are in, of jobs submitted
/// before `before` (`JobStatus` + `SubmittedBefore`), then, for stragglers none of those listings
/// returned (their status changed), one listing of the submit-time range they span.
#[derive(Clone, Debug, PartialEq)]
pub struct Follow {
    /// The settled point: every straggler was submitted at or before it.
    pub before: f64,
    /// The distinct statuses of the stragglers, in order.
    pub statuses: Vec<JobStatus>,
    /// Each straggler's id and submit time.
    pub stragglers: Vec<(String, f64)>,
}

impl Follow {
    /// The submit-time range (first, last) of the stragglers that no listing has `found`, if any.
    pub fn missing_range(&self, found: impl Fn(&str) -> bool) -> Option<(f64, f64)> {
        self.stragglers
            .iter()
            .filter(|(id, _)| !found(id))
            .map(|(_, submitted)| *submitted)
            .fold(None, |range, t| match range {
                None => Some((t, t)),
                Some((lo, hi)) => Some((f64::min(lo, t), f64::max(hi, t))),
            })
    }
}

/// The settled point a window implies, tracked while the window is staged job by job:
/// [`LATE_JOB_WINDOW`] behind its newest job, or its [`LATE_JOB_LIMIT`]+1-th newest job if that is
/// later. It only moves forward as jobs are added, so a job at or before it now will be settled.
#[derive(Debug, Default)]
pub(super) struct Cut {
    newest: Option<f64>,
    /// The submit times of the newest `LATE_JOB_LIMIT + 1` jobs, the oldest of them on top.
    newest_times: BinaryHeap<Reverse<Time>>,
}

/// A submit time ordered by `f64::total_cmp`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Time(f64);

impl Eq for Time {}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Time {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Cut {
    /// Notes one more job of the window.
    pub(super) fn add(&mut self, submitted: f64) {
        self.newest = Some(self.newest.map_or(submitted, |n| n.max(submitted)));
        self.newest_times.push(Reverse(Time(submitted)));
        if self.newest_times.len() > LATE_JOB_LIMIT + 1 {
            self.newest_times.pop();
        }
    }

    /// The settled point the window noted so far implies (`None`: no job yet).
    pub(super) fn point(&self) -> Option<f64> {
        let newest = self.newest?;
        let by_count = (self.newest_times.len() > LATE_JOB_LIMIT)
            .then(|| self.newest_times.peek().map(|Reverse(t)| t.0))
            .flatten();
        Some(by_count.map_or(newest - LATE_JOB_WINDOW, |t| {
            t.max(newest - LATE_JOB_WINDOW)
        }))
    }
}

impl History {
    /// The settled point, if the history has one.
    pub(super) fn settled_at(&self) -> Option<f64> {
        self.settled.as_ref().map(|s| s.at)
    }

    /// The status this history last knew for job `id`, if it knows the job by id.
    pub(super) fn status_of(&self, id: &str) -> Option<&JobStatus> {
        self.window
            .get(id)
            .or_else(|| self.stragglers.get(id))
            .or_else(|| self.gone.get(id))
            .map(|job| &job.status)
    }

    /// What the next poll lists (see [`PollPlan`]): everything when the feed has no data yet
    /// (`listed_before` false) or `full_resync` has passed since the last full listing, otherwise
    /// the window; every `follow_every` polls, the stragglers too. `spread` sets the phase of a
    /// datastore's follow-ups.
    pub(super) fn next_poll(
        &self,
        listed_before: bool,
        full_resync: Duration,
        follow_every: u32,
        spread: u32,
    ) -> PollPlan {
        let full = PollPlan {
            follow_offset: spread % follow_every.max(1),
            ..PollPlan::FULL
        };
        let (Some(settled), Some(last_full)) = (self.settled_at(), self.schedule.last_full) else {
            return full;
        };
        if !listed_before || last_full.elapsed() >= full_resync {
            return full;
        }
        let due = self.schedule.polls_since_follow.saturating_add(1) >= follow_every;
        PollPlan {
            listing: Listing::SubmittedAfter(settled),
            follow: (due && !self.stragglers.is_empty()).then(|| self.follow(settled)),
            follow_offset: 0,
        }
    }

    /// The follow-up of the stragglers, settled at `before`.
    fn follow(&self, before: f64) -> Follow {
        let statuses: BTreeSet<&JobStatus> = self.stragglers.values().map(|s| &s.status).collect();
        Follow {
            before,
            statuses: statuses.into_iter().cloned().collect(),
            stragglers: self
                .stragglers
                .iter()
                .map(|(id, s)| (id.to_string(), s.submitted))
                .collect(),
        }
    }

    /// Takes a full listing's result: its window and stragglers, and the finished jobs it found
    /// at or before the settled point (`seen`, per status; `by_id`, those of them the history
    /// knew by id, which the finished counter has counted). Returns, per status, the settled jobs
    /// to count as finished by number only: those beyond the ones already accounted for (none at
    /// the first poll, `first_success`).
    pub(super) fn take_full_listing(
        &mut self,
        listed: FullListing,
        follow_offset: u32,
        first_success: bool,
    ) -> BTreeMap<JobStatus, u64> {
        let FullListing {
            window,
            stragglers,
            settled_seen,
            settled_by_id,
        } = listed;
        let mut unnamed = BTreeMap::new();
        if let Some(settled) = self.settled.as_mut() {
            for (status, n) in settled_by_id {
                *settled.known.entry(status).or_insert(0) += n;
            }
            for (status, seen) in &settled_seen {
                let known = settled.known.entry(status.clone()).or_insert(0);
                if *seen > *known {
                    if !first_success {
                        unnamed.insert(status.clone(), seen - *known);
                    }
                    *known = *seen;
                }
            }
            settled.counts = settled_seen;
        }
        self.window = window;
        self.stragglers = stragglers;
        self.schedule.last_full = Some(Instant::now());
        self.schedule.polls_since_follow = follow_offset;
        unnamed
    }

    /// Takes a follow-up's result: the stragglers as listed now (`kept`) replace the old ones,
    /// and those found finished join the settled counts. Returns the old stragglers: their old
    /// series go (one that no listing returned has vanished from HealthLake).
    pub(super) fn take_follow_up(
        &mut self,
        kept: HashMap<Box<str>, KnownJob>,
        finished: BTreeMap<JobStatus, u64>,
    ) -> HashMap<Box<str>, KnownJob> {
        if let Some(settled) = self.settled.as_mut() {
            for (status, n) in &finished {
                settled.add_finished(status, *n);
            }
        }
        self.schedule.polls_since_follow = 0;
        std::mem::replace(&mut self.stragglers, kept)
    }

    /// Counts an incremental poll that did not follow the stragglers.
    pub(super) fn skip_follow_up(&mut self) {
        self.schedule.polls_since_follow = self.schedule.polls_since_follow.saturating_add(1);
    }

    /// Remembers the finished jobs of `old_window` that the new window lacks (no listing returned
    /// them): until they settle, so that one coming back is not counted again.
    pub(super) fn remember_gone(&mut self, old_window: &HashMap<Box<str>, KnownJob>) {
        for (id, job) in old_window {
            if job.status.is_terminal() && !self.window.contains_key(id) {
                self.gone.insert(id.clone(), job.clone());
            }
        }
    }

    /// Forgets that the jobs `back` (listed again) were gone.
    pub(super) fn forget_gone(&mut self, back: &[Box<str>]) {
        for id in back {
            self.gone.remove(id);
        }
    }

    /// Moves the jobs that the incremental listing no longer needs out of the window: those at or
    /// before `cut` (the point the window implied before any of it was settled early, see
    /// [`Cut`]), or the settled point if later. Finished ones become counts, unfinished ones
    /// stragglers. `cut` is `None` when the window was empty: the settled point stays.
    pub(super) fn settle(&mut self, cut: Option<f64>) {
        if let Some(cut) = cut {
            let settled = self.settled.get_or_insert_with(|| Settled {
                at: cut,
                ..Settled::default()
            });
            settled.at = settled.at.max(cut);
            let at = settled.at;
            let stragglers = &mut self.stragglers;
            self.window.retain(|id, job| {
                if job.submitted > at {
                    return true;
                }
                settle_one(settled, stragglers, id, job);
                false
            });
        }
        self.prune_gone();
        // After a full listing the window may have held much of the history: give that back.
        self.window.shrink_to_fit();
        self.stragglers.shrink_to_fit();
    }

    /// Takes jobs of the window that were settled while the listing was staged (see
    /// `merge::MainStage::settle_early`): finished ones as counts, unfinished ones as stragglers.
    pub(super) fn take_settled_early(
        &mut self,
        counts: BTreeMap<JobStatus, u64>,
        stragglers: HashMap<Box<str>, KnownJob>,
    ) {
        if let Some(settled) = self.settled.as_mut() {
            for (status, n) in &counts {
                settled.add_finished(status, *n);
            }
        }
        self.stragglers.extend(stragglers);
    }

    /// Forgets vanished jobs that have settled: they stay accounted for in the settled `known`.
    fn prune_gone(&mut self) {
        let Some(settled) = self.settled.as_mut() else {
            return;
        };
        self.gone.retain(|_, job| {
            if job.submitted > settled.at {
                return true;
            }
            *settled.known.entry(job.status.clone()).or_insert(0) += 1;
            false
        });
        self.gone.shrink_to_fit();
    }

    /// Jobs per status: the ten known statuses always (0 when none), unknown ones when present,
    /// folded beyond [`MAX_UNKNOWN_STATUSES`] (see [`fold_unknown_statuses`]).
    pub(super) fn counts_by_status(&self) -> BTreeMap<JobStatus, u64> {
        let mut counts: BTreeMap<JobStatus, u64> =
            JobStatus::KNOWN.iter().map(|s| (s.clone(), 0)).collect();
        for (status, n) in self.settled.iter().flat_map(|s| &s.counts) {
            *counts.entry(status.clone()).or_insert(0) += n;
        }
        for job in self.window.values().chain(self.stragglers.values()) {
            *counts.entry(job.status.clone()).or_insert(0) += 1;
        }
        counts.retain(|status, n| *n > 0 || !matches!(status, JobStatus::Unknown(_)));
        fold_unknown_statuses(&mut counts);
        counts
    }

    /// Submit time of the oldest job still running: in the window, or a straggler.
    pub(super) fn oldest_active(&self) -> Option<f64> {
        self.window
            .values()
            .filter(|j| j.active)
            .map(|j| j.submitted)
            .chain(self.stragglers.values().map(|s| s.submitted))
            .min_by(f64::total_cmp)
    }
}

/// A full listing, staged: its window, its stragglers, and the finished jobs it found at or before
/// the settled point per status (`settled_seen`), of which `settled_by_id` the history knew by id.
#[derive(Debug, Default)]
pub(super) struct FullListing {
    pub(super) window: HashMap<Box<str>, KnownJob>,
    pub(super) stragglers: HashMap<Box<str>, KnownJob>,
    pub(super) settled_seen: BTreeMap<JobStatus, u64>,
    pub(super) settled_by_id: BTreeMap<JobStatus, u64>,
}

/// One job leaving the window: finished, it becomes a count; unfinished, a straggler.
pub(super) fn settle_one(
    settled: &mut Settled,
    stragglers: &mut HashMap<Box<str>, KnownJob>,
    id: &str,
    job: &KnownJob,
) {
    if job.status.is_terminal() {
        settled.add_finished(&job.status, 1);
    } else {
        stragglers.insert(id.into(), job.clone());
    }
}

/// Keeps the first [`MAX_UNKNOWN_STATUSES`] statuses outside the API model (in name order, so the
/// choice is stable) and counts the jobs of any further ones under [`OTHER_STATUS`]: however
/// many statuses a listing holds, a datastore has a bounded number of `status` series.
fn fold_unknown_statuses(counts: &mut BTreeMap<JobStatus, u64>) {
    let extra: Vec<JobStatus> = counts
        .keys()
        .filter(|s| matches!(s, JobStatus::Unknown(_)))
        .skip(MAX_UNKNOWN_STATUSES)
        .cloned()
        .collect();
    if extra.is_empty() {
        return;
    }
    let mut folded = 0;
    for status in extra {
        folded += counts.remove(&status).unwrap_or(0);
    }
    *counts
        .entry(JobStatus::Unknown(OTHER_STATUS.to_owned()))
        .or_insert(0) += folded;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(status: JobStatus, submitted: f64) -> KnownJob {
        let active = !status.is_terminal();
        KnownJob {
            status,
            submitted,
            active,
        }
    }

    fn ids(map: &HashMap<Box<str>, KnownJob>) -> Vec<&str> {
        let mut ids: Vec<&str> = map.keys().map(|id| &**id).collect();
        ids.sort_unstable();
        ids
    }

    fn history(window: &[(&str, JobStatus, f64)]) -> History {
        History {
            window: window
                .iter()
                .map(|(id, status, t)| ((*id).into(), known(status.clone(), *t)))
                .collect(),
            ..History::default()
        }
    }

    #[test]
    fn the_cut_trails_the_newest_job_or_the_251st_newest_and_never_goes_back() {
        let mut cut = Cut::default();
        assert_eq!(cut.point(), None);
        cut.add(10_000.0);
        cut.add(5_000.0);
        assert_eq!(cut.point(), Some(10_000.0 - LATE_JOB_WINDOW));
        // 300 jobs within a minute: the 251st newest settles the rest.
        let mut burst = Cut::default();
        for n in 0..300 {
            burst.add(20_000.0 + f64::from(n) * 0.1);
        }
        assert_eq!(burst.point(), Some(20_000.0 + 49.0 * 0.1));
        let before = burst.point();
        burst.add(0.0);
        assert_eq!(burst.point(), before, "an older job never moves it back");
    }

    #[test]
    fn settling_counts_finished_jobs_and_keeps_unfinished_ones_by_id() {
        let mut h = history(&[
            ("old-done", JobStatus::Completed, 100.0),
            ("old-stuck", JobStatus::InProgress, 200.0),
            ("new", JobStatus::InProgress, 2_000.0),
        ]);
        h.settle(Some(1_000.0));
        assert_eq!(h.settled_at(), Some(1_000.0));
        assert_eq!(ids(&h.window), ["new"]);
        assert_eq!(ids(&h.stragglers), ["old-stuck"]);
        let settled = h.settled.as_ref().unwrap();
        assert_eq!(settled.counts[&JobStatus::Completed], 1);
        assert_eq!(settled.known[&JobStatus::Completed], 1);
        // The settled point only moves forward; `None` (an empty window) leaves it.
        h.settle(Some(500.0));
        assert_eq!(h.settled_at(), Some(1_000.0));
        h.settle(None);
        assert_eq!(h.settled_at(), Some(1_000.0));
        assert_eq!(ids(&h.window), ["new"]);
    }

    #[test]
    fn gone_jobs_are_remembered_until_they_settle_then_known_as_counted() {
        let old_window = history(&[
            ("done", JobStatus::Failed, 100.0),
            ("later", JobStatus::Completed, 3_000.0),
            ("running", JobStatus::InProgress, 150.0),
        ])
        .window;
        let mut h = history(&[("relisted", JobStatus::Completed, 4_000.0)]);
        h.remember_gone(&old_window);
        assert_eq!(
            ids(&h.gone),
            ["done", "later"],
            "unfinished jobs are not gone"
        );
        assert_eq!(h.status_of("done"), Some(&JobStatus::Failed));
        h.settle(Some(1_000.0));
        assert_eq!(ids(&h.gone), ["later"]);
        assert_eq!(h.settled.as_ref().unwrap().known[&JobStatus::Failed], 1);
        assert_eq!(
            h.settled.as_ref().unwrap().counts.get(&JobStatus::Failed),
            None,
            "a gone job is accounted for, not shown"
        );
        h.forget_gone(&["later".into()]);
        assert!(h.gone.is_empty());
    }

    #[test]
    fn a_full_listing_counts_settled_jobs_only_beyond_those_accounted_for() {
        let mut h = History {
            settled: Some(Settled {
                at: 1_000.0,
                counts: BTreeMap::from([(JobStatus::Completed, 5)]),
                known: BTreeMap::from([(JobStatus::Completed, 5)]),
            }),
            ..History::default()
        };
        let listing = |completed: u64, by_id: u64| FullListing {
            settled_seen: BTreeMap::from([(JobStatus::Completed, completed)]),
            settled_by_id: BTreeMap::from([(JobStatus::Completed, by_id)]),
            ..FullListing::default()
        };
        // One settled job missing from a listing, then back: never counted again.
        assert!(h.take_full_listing(listing(4, 0), 3, false).is_empty());
        assert_eq!(h.settled.as_ref().unwrap().counts[&JobStatus::Completed], 4);
        assert!(h.take_full_listing(listing(5, 0), 3, false).is_empty());
        // Two more than ever known, one of them counted by id already: one more by number.
        let unnamed = h.take_full_listing(listing(7, 1), 3, false);
        assert_eq!(unnamed, BTreeMap::from([(JobStatus::Completed, 1)]));
        assert_eq!(h.settled.as_ref().unwrap().known[&JobStatus::Completed], 7);
        // At the first poll nothing counts as finishing.
        assert!(h.take_full_listing(listing(9, 0), 3, true).is_empty());
        assert_eq!(h.schedule.polls_since_follow, 3);
        assert!(h.schedule.last_full.is_some());
    }

    #[test]
    fn a_follow_up_replaces_the_stragglers_and_settles_the_finished_ones() {
        let mut h = history(&[]);
        h.settled = Some(Settled {
            at: 1_000.0,
            ..Settled::default()
        });
        h.stragglers = history(&[
            ("stuck", JobStatus::InProgress, 10.0),
            ("done", JobStatus::Queued, 20.0),
        ])
        .window;
        h.skip_follow_up();
        h.skip_follow_up();
        assert_eq!(h.schedule.polls_since_follow, 2);
        let kept = history(&[("stuck", JobStatus::InProgress, 10.0)]).window;
        let retired = h.take_follow_up(kept, BTreeMap::from([(JobStatus::Failed, 1)]));
        assert_eq!(ids(&retired), ["done", "stuck"]);
        assert_eq!(ids(&h.stragglers), ["stuck"]);
        assert_eq!(h.schedule.polls_since_follow, 0);
        let settled = h.settled.as_ref().unwrap();
        assert_eq!(
            (
                settled.counts[&JobStatus::Failed],
                settled.known[&JobStatus::Failed]
            ),
            (1, 1)
        );
    }

    #[test]
    fn jobs_settled_early_join_the_counts_and_the_stragglers() {
        let mut h = history(&[("new", JobStatus::Completed, 5_000.0)]);
        h.settle(Some(1_000.0));
        h.take_settled_early(
            BTreeMap::from([(JobStatus::Completed, 3)]),
            history(&[("early-stuck", JobStatus::Submitted, 10.0)]).window,
        );
        assert_eq!(h.settled.as_ref().unwrap().counts[&JobStatus::Completed], 3);
        assert_eq!(ids(&h.stragglers), ["early-stuck"]);
        let counts = h.counts_by_status();
        assert_eq!(counts[&JobStatus::Completed], 4);
        assert_eq!(counts[&JobStatus::Submitted], 1);
        assert_eq!(h.oldest_active(), Some(10.0));
    }

    #[test]
    fn counts_show_every_known_status_and_fold_unknown_ones_beyond_ten() {
        let unknown: Vec<(String, JobStatus, f64)> = (0..12)
            .map(|n| {
                (
                    format!("j{n}"),
                    JobStatus::Unknown(format!("NEW_{n:02}")),
                    1.0,
                )
            })
            .collect();
        let window: Vec<(&str, JobStatus, f64)> = unknown
            .iter()
            .map(|(id, s, t)| (id.as_str(), s.clone(), *t))
            .collect();
        let counts = history(&window).counts_by_status();
        assert_eq!(counts[&JobStatus::Failed], 0);
        assert_eq!(counts[&JobStatus::Unknown("NEW_00".into())], 1);
        assert_eq!(counts[&JobStatus::Unknown(OTHER_STATUS.into())], 2);
        assert_eq!(
            counts.len(),
            JobStatus::KNOWN.len() + MAX_UNKNOWN_STATUSES + 1
        );
    }

    #[test]
    fn the_next_poll_lists_in_full_until_settled_then_the_window_and_follows_when_due() {
        let hour = Duration::from_secs(3600);
        let mut h = history(&[]);
        assert_eq!(h.next_poll(false, hour, 4, 6).listing, Listing::Full);
        assert_eq!(h.next_poll(false, hour, 4, 6).follow_offset, 2);
        h.settled = Some(Settled {
            at: 1_000.0,
            ..Settled::default()
        });
        h.schedule.last_full = Some(Instant::now());
        assert_eq!(
            h.next_poll(false, hour, 4, 6).listing,
            Listing::Full,
            "no data yet"
        );
        let plan = h.next_poll(true, hour, 4, 6);
        assert_eq!(plan.listing, Listing::SubmittedAfter(1_000.0));
        assert_eq!(plan.follow, None, "no stragglers");
        h.stragglers = history(&[
            ("a", JobStatus::Queued, 10.0),
            ("b", JobStatus::InProgress, 20.0),
            ("c", JobStatus::Queued, 30.0),
        ])
        .window;
        h.schedule.polls_since_follow = 2;
        assert_eq!(h.next_poll(true, hour, 4, 6).follow, None, "not due yet");
        h.schedule.polls_since_follow = 3;
        let follow = h.next_poll(true, hour, 4, 6).follow.unwrap();
        assert_eq!(follow.before, 1_000.0);
        assert_eq!(follow.statuses, [JobStatus::Queued, JobStatus::InProgress]);
        assert_eq!(follow.stragglers.len(), 3);
        assert_eq!(follow.missing_range(|id| id == "b"), Some((10.0, 30.0)));
        assert_eq!(follow.missing_range(|_| true), None);
        assert_eq!(
            h.next_poll(true, Duration::ZERO, 4, 6).listing,
            Listing::Full
        );
    }

    #[test]
    fn the_status_of_a_job_is_looked_up_in_the_window_the_stragglers_and_the_gone() {
        let mut h = history(&[("w", JobStatus::InProgress, 1.0)]);
        h.stragglers = history(&[("s", JobStatus::Queued, 1.0)]).window;
        h.gone = history(&[("g", JobStatus::Failed, 1.0)]).window;
        assert_eq!(h.status_of("w"), Some(&JobStatus::InProgress));
        assert_eq!(h.status_of("s"), Some(&JobStatus::Queued));
        assert_eq!(h.status_of("g"), Some(&JobStatus::Failed));
        assert_eq!(h.status_of("x"), None);
    }
}
