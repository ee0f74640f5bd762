//! Property test: merging listings incrementally, page by page, shows what merging a full listing
//! every time does.
//!
//! Two job feeds follow one generated history, poll after poll (a minute apart). Feed A lists
//! everything every time. Feed B lists what its history plans: everything at its first poll, then
//! only the jobs submitted after its settled point, and follows its old unfinished jobs (with a
//! listing per status and one of the submit-time range of those not found) at every poll. Both
//! merge their listings page by page, in random page sizes and orders.
//!
//! **Equal** means, after every poll: the same [`JobSummary`] (jobs per status, the
//! `job_series_limit` newest jobs with every field, the oldest active job's submit time, the
//! ended-job series with their end times), the same finished counters per status, and the same
//! jobs counted as finishing in that poll (in any order). So that both cannot be wrong alike, A is
//! also checked against the generated history itself: its jobs per status, newest jobs and oldest
//! active job are those of the jobs the poll could see, and its finished counters count each job
//! once in its terminal status, unless it was already there at the first poll.
//!
//! **Inside the settle rules**, which the generated histories keep:
//! - A job keeps its SubmitTime; its status moves from unfinished to unfinished, or to a terminal
//!   status (with or without an EndTime), and a terminal status never changes.
//! - A job first appears submitted after B's settled point (later than every job listed so far, or
//!   late by up to [`LATE_JOB_WINDOW`], but never behind the point): a job that appears behind it
//!   is only caught by the next full listing.
//! - A listing may return a job twice: the same copy again, or, for a job of the window that
//!   finished since the last poll, its old unfinished copy besides the finished one.
//! - A listing may miss (for one poll or more) a finished job of the window that the settled
//!   point does not pass meanwhile and that is not among the `job_series_limit` newest: B cannot
//!   tell a job settled while it was missing from one that never existed, and A shows the next
//!   newest job in a missing one's place, which B has not kept.
//! - Bursts of 260 jobs within seconds exercise [`LATE_JOB_LIMIT`].

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::feed::{FinishedJob, JobFeed, PollOutcome, Retention};
use super::history::{Cut, Listing, PollPlan, LATE_JOB_LIMIT, LATE_JOB_WINDOW};
use super::merge::ListingMerge;
use super::JobSummary;
use crate::model::{Job, JobKind, JobStatus, RecentJob};

const UNFINISHED: [&str; 6] = [
    "SUBMITTED",
    "QUEUED",
    "IN_PROGRESS",
    "CANCEL_SUBMITTED",
    "CANCEL_IN_PROGRESS",
    // A status outside the API model: not terminal.
    "ARCHIVING",
];
const FINISHED: [&str; 5] = [
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "CANCEL_COMPLETED",
    "CANCEL_FAILED",
];

/// A status: unfinished for 0..6, finished for 6..11.
fn status(n: u8) -> JobStatus {
    let n = usize::from(n) % (UNFINISHED.len() + FINISHED.len());
    JobStatus::parse(
        UNFINISHED
            .get(n)
            .unwrap_or_else(|| &FINISHED[n - UNFINISHED.len()]),
    )
}

#[derive(Clone, Debug)]
struct NewJob {
    /// Seconds after the newest job; negative: listed late by that much.
    gap: f64,
    status: u8,
    /// A finished job carries an EndTime.
    with_end: bool,
    named: bool,
}

#[derive(Clone, Debug)]
struct Change {
    /// Which job (modulo the number of jobs).
    job: usize,
    status: u8,
    with_end: bool,
}

#[derive(Clone, Debug)]
struct Step {
    new_jobs: Vec<NewJob>,
    burst: bool,
    changes: Vec<Change>,
    /// Jobs listed twice (modulo the number of jobs), and jobs missing, if the rules allow.
    duplicates: Vec<usize>,
    missing: Vec<usize>,
    order: u64,
    full_page: usize,
    incremental_page: usize,
}

fn new_job() -> impl Strategy<Value = NewJob> {
    let gap = prop_oneof![
        3 => 1.0..7200.0,
        1 => 0.001..5.0,
        1 => -(LATE_JOB_WINDOW - 1.0)..0.0,
    ];
    (gap, 0..11u8, any::<bool>(), any::<bool>()).prop_map(|(gap, status, with_end, named)| NewJob {
        gap,
        status,
        with_end,
        named,
    })
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(new_job(), 0..6),
        prop::bool::weighted(0.05),
        prop::collection::vec((any::<usize>(), 0..11u8, any::<bool>()), 0..6),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec(any::<usize>(), 0..4),
        any::<u64>(),
        1..600usize,
        1..600usize,
    )
        .prop_map(
            |(
                new_jobs,
                burst,
                changes,
                duplicates,
                missing,
                order,
                full_page,
                incremental_page,
            )| {
                Step {
                    new_jobs,
                    burst,
                    changes: changes
                        .into_iter()
                        .map(|(job, status, with_end)| Change {
                            job,
                            status,
                            with_end,
                        })
                        .collect(),
                    duplicates,
                    missing,
                    order,
                    full_page,
                    incremental_page,
                }
            },
        )
}

/// The jobs as HealthLake has them, and what the two feeds made of them.
struct World {
    jobs: Vec<Job>,
    /// Per job, its unfinished status of the previous poll, if it finished since.
    finished_since: Vec<Option<JobStatus>>,
    /// Per job: seen finished at the first poll; seen finished at a later one (so counted).
    finished_at_first: Vec<bool>,
    counted: Vec<bool>,
    now: f64,
    retention: Retention,
    full: JobFeed,
    incremental: JobFeed,
}

impl World {
    fn settled(&self) -> f64 {
        self.incremental
            .history()
            .settled_at()
            .unwrap_or(f64::NEG_INFINITY)
    }

    fn newest(&self) -> f64 {
        self.jobs
            .iter()
            .map(|j| j.submitted)
            .fold(self.now - 86_400.0 * 30.0, f64::max)
    }

    fn add(&mut self, new: &NewJob) {
        let submitted = (self.newest() + new.gap)
            .max(self.settled() + 0.5)
            .min(self.now - 0.5);
        let status = status(new.status);
        let n = self.jobs.len();
        self.jobs.push(Job {
            id: format!("{:032x}", n * 7919 + 13),
            name: new.named.then(|| format!("export-{n}")),
            ended: (status.is_terminal() && new.with_end).then_some(self.now - 0.25),
            status,
            submitted,
            progress: None,
            message: None,
        });
        self.finished_since.push(None);
        self.finished_at_first.push(false);
        self.counted.push(false);
    }

    fn change(&mut self, change: &Change) {
        let Some(k) = change.job.checked_rem(self.jobs.len()) else {
            return;
        };
        let job = &mut self.jobs[k];
        if job.status.is_terminal() {
            return;
        }
        let next = status(change.status);
        if next.is_terminal() {
            self.finished_since[k] = Some(job.status.clone());
            job.ended = change.with_end.then_some(self.now - 0.25);
        }
        job.status = next;
    }

    /// The jobs a listing sees in this poll, in the step's order, with its duplicates.
    fn visible(&self, step: &Step) -> Vec<Job> {
        let missing = self.missing(step);
        let mut out: Vec<Job> = Vec::new();
        for (k, job) in self.jobs.iter().enumerate() {
            if missing.contains(&k) {
                continue;
            }
            out.push(job.clone());
            if step.duplicates.iter().any(|d| d % self.jobs.len() == k) {
                let mut copy = job.clone();
                // An old unfinished copy only of window jobs (see the module docs).
                if let (Some(old), true) = (&self.finished_since[k], job.submitted > self.settled())
                {
                    copy.status = old.clone();
                    copy.ended = None;
                }
                out.push(copy);
            }
        }
        fastrand::Rng::with_seed(step.order).shuffle(&mut out);
        out
    }

    /// The jobs the step's `missing` picks that the rules allow to miss: finished window jobs
    /// the settled point cannot pass in this poll, not among the newest kept.
    fn missing(&self, step: &Step) -> Vec<usize> {
        let settled = self.settled();
        let mut cut = Cut::default();
        for job in self.jobs.iter().filter(|j| j.submitted > settled) {
            cut.add(job.submitted);
        }
        let passes = cut.point().unwrap_or(settled).max(settled);
        let mut newest: Vec<&Job> = self.jobs.iter().collect();
        newest.sort_by(|a, b| b.submitted.total_cmp(&a.submitted).then(a.id.cmp(&b.id)));
        let kept: Vec<&str> = newest
            .iter()
            .take(self.retention.job_series_limit)
            .map(|j| j.id.as_str())
            .collect();
        step.missing
            .iter()
            .filter_map(|m| m.checked_rem(self.jobs.len()))
            .filter(|&k| {
                let job = &self.jobs[k];
                job.status.is_terminal()
                    && job.submitted > passes
                    && !kept.contains(&job.id.as_str())
            })
            .collect()
    }
}

/// What HealthLake returns for a listing with these filters, widened by a second on each side as
/// `aws::list_jobs` asks (the merge filters exactly).
fn list(
    visible: &[Job],
    after: Option<f64>,
    before: Option<f64>,
    status: Option<&JobStatus>,
) -> Vec<Job> {
    visible
        .iter()
        .filter(|j| after.is_none_or(|t| j.submitted > t.floor() - 1.0))
        .filter(|j| before.is_none_or(|t| j.submitted < t.ceil() + 1.0))
        .filter(|j| status.is_none_or(|s| j.status == *s))
        .cloned()
        .collect()
}

fn pages(jobs: Vec<Job>, size: usize) -> Vec<Vec<Job>> {
    jobs.chunks(size.max(1)).map(<[Job]>::to_vec).collect()
}

/// One poll of `feed` as `plan` says, against `visible`, merged page by page.
fn poll(
    feed: &mut JobFeed,
    plan: PollPlan,
    visible: &[Job],
    page: usize,
    world: (Retention, f64),
) -> PollOutcome {
    let (retention, now) = world;
    let mut merge = ListingMerge::start(JobKind::Export, Some(feed), plan.clone(), retention, now);
    let after = match plan.listing {
        Listing::Full => None,
        Listing::SubmittedAfter(after) => Some(after),
    };
    for jobs in pages(list(visible, after, None, None), page) {
        merge.stage_page(Some(feed), jobs);
    }
    if let Some(follow) = &plan.follow {
        merge.start_follow_up();
        for status in &follow.statuses {
            for jobs in pages(list(visible, None, Some(follow.before), Some(status)), page) {
                merge.stage_follow_up_page(Some(feed), jobs);
            }
        }
        if let Some((first, last)) = merge.missing_range() {
            for jobs in pages(
                list(visible, Some(first - 1.0), Some(last + 1.0), None),
                page,
            ) {
                merge.stage_follow_up_page(Some(feed), jobs);
            }
        }
    }
    merge
        .commit(feed, 0.1, now)
        .expect("nothing else changed the feed")
}

impl World {
    /// Notes which jobs poll `n` saw, as the finished counter counts them.
    fn saw(&mut self, n: usize, visible: &[Job]) {
        for (k, job) in self.jobs.iter().enumerate() {
            if !job.status.is_terminal() || !visible.iter().any(|v| v.id == job.id) {
                continue;
            }
            if n == 0 {
                self.finished_at_first[k] = true;
            } else if !self.finished_at_first[k] {
                self.counted[k] = true;
            }
        }
    }

    /// What feed A must show, from the history itself: jobs per status, the newest jobs, the
    /// oldest active one, the finished counters.
    fn expected(&self, visible: &[Job]) -> Expected {
        let seen: Vec<&Job> = self
            .jobs
            .iter()
            .filter(|j| visible.iter().any(|v| v.id == j.id))
            .collect();
        let mut counts: BTreeMap<JobStatus, u64> =
            JobStatus::KNOWN.iter().map(|s| (s.clone(), 0)).collect();
        for job in &seen {
            *counts.entry(job.status.clone()).or_insert(0) += 1;
        }
        let mut newest = seen.clone();
        newest.sort_by(|a, b| b.submitted.total_cmp(&a.submitted).then(a.id.cmp(&b.id)));
        let recent = newest
            .iter()
            .take(self.retention.job_series_limit)
            .map(|j| RecentJob::from(*j))
            .collect();
        let oldest = seen
            .iter()
            .filter(|j| j.is_active())
            .map(|j| j.submitted)
            .min_by(f64::total_cmp);
        let mut finished: BTreeMap<JobStatus, u64> =
            JobStatus::TERMINAL.iter().map(|s| (s.clone(), 0)).collect();
        for (job, _) in self.jobs.iter().zip(&self.counted).filter(|(_, c)| **c) {
            *finished.entry(job.status.clone()).or_insert(0) += 1;
        }
        Expected {
            counts,
            recent,
            oldest,
            finished,
        }
    }
}

/// See [`World::expected`].
struct Expected {
    counts: BTreeMap<JobStatus, u64>,
    recent: Vec<RecentJob>,
    oldest: Option<f64>,
    finished: BTreeMap<JobStatus, u64>,
}

fn sorted(mut finished: Vec<FinishedJob>) -> Vec<FinishedJob> {
    finished.sort();
    finished
}

fn shown(feed: &JobFeed) -> (&Option<JobSummary>, &BTreeMap<JobStatus, u64>) {
    (&feed.jobs, &feed.finished)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// See the module docs: what "equal" means, and the rules the histories keep.
    #[test]
    fn incremental_merging_equals_a_full_listing(
        steps in prop::collection::vec(step(), 1..24),
        job_series_limit in 0..8usize,
        ended_window in 120.0..7200.0f64,
    ) {
        let mut world = World {
            jobs: Vec::new(),
            finished_since: Vec::new(),
            finished_at_first: Vec::new(),
            counted: Vec::new(),
            now: 1_700_000_000.0,
            retention: Retention::new(job_series_limit, ended_window),
            full: JobFeed::new(),
            incremental: JobFeed::new(),
        };
        for (n, step) in steps.iter().enumerate() {
            world.now += 60.0;
            world.finished_since.iter_mut().for_each(|f| *f = None);
            for change in &step.changes {
                world.change(change);
            }
            for new in &step.new_jobs {
                world.add(new);
            }
            if step.burst {
                for _ in 0..=LATE_JOB_LIMIT + 10 {
                    world.add(&NewJob { gap: 0.01, status: 6, with_end: true, named: true });
                }
            }
            let visible = world.visible(step);
            let at = (world.retention, world.now);
            let full_plan = world.full.next_poll(Duration::ZERO, 1, 0);
            prop_assert_eq!(&full_plan.listing, &Listing::Full);
            let full = poll(&mut world.full, full_plan, &visible, step.full_page, at);
            let plan = world.incremental.next_poll(Duration::from_secs(1 << 30), 1, 0);
            let incremental = poll(&mut world.incremental, plan, &visible, step.incremental_page, at);
            prop_assert_eq!(shown(&world.incremental), shown(&world.full), "after poll {}", n);
            prop_assert_eq!(sorted(incremental.finished), sorted(full.finished), "poll {}", n);
            world.saw(n, &visible);
            let expected = world.expected(&visible);
            let summary = world.full.jobs.as_ref().expect("a successful poll");
            prop_assert_eq!(&summary.counts, &expected.counts, "poll {}", n);
            prop_assert_eq!(&summary.recent, &expected.recent, "poll {}", n);
            prop_assert_eq!(summary.oldest_active_submitted, expected.oldest, "poll {}", n);
            prop_assert_eq!(&world.full.finished, &expected.finished, "poll {}", n);
        }
    }
}
