//! Merging a listing into a job feed, page by page.
//!
//! A [`ListingMerge`] stages each page as it arrives, against the feed's history as it was when the
//! listing started, in compact form: jobs of the window and stragglers by id, settled finished jobs
//! as counts (and their ids until the listing ends, so that a job listed twice counts once), the
//! newest jobs up to `job_series_limit`. Window jobs that the settled point will pass for sure are
//! settled while staging, so a first poll, which lists the whole history, holds about as little as
//! any later one. Nothing of the feed changes until [`ListingMerge::commit`]: a listing that fails
//! half-way is dropped with its staging, and the feed keeps its last-known values.
//!
//! The result is the same as merging the whole listing at once: settled jobs are counted from the
//! settled counts, the others from the listings (`tests` below, and a property test against full
//! listings in `proptest`).

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use super::feed::{JobFeed, JobSummary, PollOutcome, Retention};
use super::finished::{counts_as_finished, Outcomes};
use super::history::{Cut, FullListing, History, KnownJob, Listing, PollPlan};
use crate::model::{Job, JobKind, JobStatus, RecentJob};

/// A listing of one job feed being merged (see the module docs).
#[derive(Debug)]
pub struct ListingMerge {
    kind: JobKind,
    plan: PollPlan,
    retention: Retention,
    /// The feed had no successful poll before: jobs already finished are not counted as finishing.
    first_success: bool,
    /// The feed's commits when the listing started (`None`: no feed yet). A listing staged against
    /// a feed that has changed since is dropped, not committed.
    commits: Option<u64>,
    main: MainStage,
    /// With a follow-up of the stragglers (see [`ListingMerge::start_follow_up`]).
    follow_up: Option<FollowStage>,
    outcomes: Outcomes,
}

/// The main listing (everything, or the window), staged.
#[derive(Debug, Default)]
struct MainStage {
    copies: Copies,
    /// A full listing's jobs at or before the settled point, and the window; an incremental
    /// listing's window.
    full: FullListing,
    /// The settled point the window implies (see [`Cut`]).
    cut: Cut,
    /// Window jobs settled while staging: finished ones per status, unfinished ones by id.
    early_counts: BTreeMap<JobStatus, u64>,
    early_stragglers: HashMap<Box<str>, KnownJob>,
    /// Listed jobs the history had as gone.
    back: Vec<Box<str>>,
    newest: NewestJobs,
}

/// The follow-up of the stragglers, staged.
#[derive(Debug, Default)]
struct FollowStage {
    copies: Copies,
    /// Old stragglers some follow-up listing returned (the others are looked for by submit time).
    found: HashSet<Box<str>>,
    /// Unfinished jobs at or before the settled point, as listed now: the stragglers from now on.
    kept: HashMap<Box<str>, KnownJob>,
    /// The followed jobs as listed now (finished or not): their series replace the old ones.
    refreshed: Vec<RecentJob>,
    /// Old stragglers found finished, per status.
    finished: BTreeMap<JobStatus, u64>,
}

impl ListingMerge {
    /// Starts merging a listing of `kind` jobs made after `plan`, into `feed` as it is now (`None`:
    /// not polled yet). `now` (Unix seconds) is when the listing starts.
    pub(super) fn start(
        kind: JobKind,
        feed: Option<&JobFeed>,
        plan: PollPlan,
        retention: Retention,
        now: f64,
    ) -> ListingMerge {
        let old_ended = feed
            .and_then(|f| f.jobs.as_ref())
            .map(|s| s.ended.as_slice());
        ListingMerge {
            kind,
            main: MainStage {
                newest: NewestJobs::new(retention.job_series_limit),
                ..MainStage::default()
            },
            first_success: feed.is_none_or(|f| f.jobs.is_none()),
            commits: feed.map(JobFeed::commits),
            follow_up: None,
            outcomes: Outcomes::new(
                old_ended.unwrap_or_default(),
                now - retention.ended_window,
                feed.is_none_or(|f| f.jobs.is_none()),
            ),
            plan,
            retention,
        }
    }

    pub fn kind(&self) -> JobKind {
        self.kind
    }

    pub fn plan(&self) -> &PollPlan {
        &self.plan
    }

    /// Whether the feed existed when the listing started.
    pub(super) fn started_on_a_feed(&self) -> bool {
        self.commits.is_some()
    }

    /// Whether `feed` is the one this listing started on, unchanged since.
    fn matches(&self, feed: Option<&JobFeed>) -> bool {
        feed.map(JobFeed::commits) == self.commits
    }

    /// Stages one page of the main listing.
    pub(super) fn stage_page(&mut self, feed: Option<&JobFeed>, page: Vec<Job>) {
        if !self.matches(feed) {
            return;
        }
        let empty = History::default();
        let history = feed.map_or(&empty, JobFeed::history);
        let after = match self.plan.listing {
            Listing::Full => None,
            Listing::SubmittedAfter(after) => Some(after),
        };
        for job in page {
            // A server may include the boundary (or we asked a little early): settled jobs are
            // already counted.
            if after.is_some_and(|after| job.submitted <= after) {
                continue;
            }
            self.stage_main_job(history, job);
        }
        self.main.settle_early(history);
    }

    /// Stages one job of the main listing: a window job, or (full listings) a settled one.
    fn stage_main_job(&mut self, history: &History, job: Job) {
        let main = &mut self.main;
        match main.copies.admit(&job) {
            Copy::Again => return,
            Copy::Replaces => main.forget(&job.id),
            Copy::First => {}
        }
        let before = history.status_of(&job.id);
        if history.gone.contains_key(job.id.as_str()) {
            main.back.push(job.id.as_str().into());
        }
        main.newest.offer(&job);
        let settled = history.settled_at();
        let is_full = self.plan.listing == Listing::Full;
        if is_full && settled.is_some_and(|at| job.submitted <= at) {
            self.stage_settled(before.cloned(), job);
            return;
        }
        let counted = counts_as_finished(&job, before, self.first_success);
        self.outcomes.saw(&job, counted);
        if !main.full.window.contains_key(job.id.as_str()) {
            main.cut.add(job.submitted);
        }
        let known = KnownJob::from(&job);
        main.full.window.insert(job.id.into(), known);
    }

    /// Stages one job of a full listing at or before the settled point: unfinished, a straggler;
    /// finished, a count (and counted as finishing now only if the history knew it by id, `before`).
    fn stage_settled(&mut self, before: Option<JobStatus>, job: Job) {
        let full = &mut self.main.full;
        if !job.status.is_terminal() {
            full.stragglers
                .insert(job.id.as_str().into(), KnownJob::from(&job));
            return;
        }
        let counted =
            before.is_some() && counts_as_finished(&job, before.as_ref(), self.first_success);
        if before.is_some() {
            *full.settled_by_id.entry(job.status.clone()).or_insert(0) += 1;
        }
        self.outcomes.saw(&job, counted);
        *full.settled_seen.entry(job.status).or_insert(0) += 1;
    }

    /// Starts the follow-up of the stragglers (the plan's [`Follow`](super::Follow)): the
    /// stragglers are what its listings return from now on, even if they return nothing.
    pub fn start_follow_up(&mut self) {
        if self.plan.follow.is_some() {
            self.follow_up.get_or_insert_with(FollowStage::default);
        }
    }

    /// Stages one page of a follow-up listing (see [`ListingMerge::start_follow_up`]).
    pub(super) fn stage_follow_up_page(&mut self, feed: Option<&JobFeed>, page: Vec<Job>) {
        let Some(before) = self.plan.follow.as_ref().map(|f| f.before) else {
            return;
        };
        if !self.matches(feed) {
            return;
        }
        let Some(history) = feed.map(JobFeed::history) else {
            return;
        };
        self.start_follow_up();
        let Some(stage) = self.follow_up.as_mut() else {
            return;
        };
        for job in page {
            let old = history.stragglers.get(job.id.as_str());
            if old.is_some() {
                stage.found.insert(job.id.as_str().into());
            }
            if job.submitted > before {
                continue;
            }
            match stage.copies.admit(&job) {
                Copy::Again => continue,
                Copy::Replaces => stage.forget(&job.id),
                Copy::First => {}
            }
            if job.status.is_terminal() {
                // Settled history, already counted, unless it is a straggler that finished.
                let Some(old) = old else { continue };
                let counted = counts_as_finished(&job, Some(&old.status), self.first_success);
                self.outcomes.saw(&job, counted);
                *stage.finished.entry(job.status.clone()).or_insert(0) += 1;
            } else {
                // Still unfinished, or unfinished and listed late: followed.
                stage
                    .kept
                    .insert(job.id.as_str().into(), KnownJob::from(&job));
            }
            stage.refreshed.push(RecentJob::from(&job));
        }
    }

    /// The submit-time range of the stragglers no follow-up listing has returned so far.
    pub fn missing_range(&self) -> Option<(f64, f64)> {
        let found = self.follow_up.as_ref().map(|s| &s.found);
        self.plan
            .follow
            .as_ref()?
            .missing_range(|id| found.is_some_and(|f| f.contains(id)))
    }

    /// Commits the staged listing into `feed`, taken `poll_seconds` long and ending at `now` (Unix
    /// seconds). `None` when the feed changed since the listing started (a reload replaced it):
    /// then nothing changes.
    pub(super) fn commit(
        self,
        feed: &mut JobFeed,
        poll_seconds: f64,
        now: f64,
    ) -> Option<PollOutcome> {
        if self.started_on_a_feed() && !self.matches(Some(feed)) {
            return None;
        }
        let recovered = !feed.health.up;
        let old_recent = feed.jobs.take().map(|s| s.recent).unwrap_or_default();
        let history = feed.history_mut();
        let old_window = std::mem::take(&mut history.window);
        history.forget_gone(&self.main.back);
        let unnamed = match self.plan.listing {
            Listing::Full => history.take_full_listing(
                self.main.full,
                self.plan.follow_offset,
                self.first_success,
            ),
            Listing::SubmittedAfter(_) => {
                history.window = self.main.full.window;
                BTreeMap::new()
            }
        };
        let followed = self.follow_up.map(|stage| {
            let retired = history.take_follow_up(stage.kept, stage.finished);
            (retired, stage.refreshed)
        });
        if followed.is_none() {
            history.skip_follow_up();
        }
        history.remember_gone(&old_window);
        history.settle(self.main.cut.point());
        history.take_settled_early(self.main.early_counts, self.main.early_stragglers);
        let newest = self.main.newest.into_newest_first();
        let recent = match self.plan.listing {
            Listing::Full => newest,
            Listing::SubmittedAfter(_) => {
                let (retired, refreshed) = followed.unzip();
                let relisted = |id: &str| {
                    old_window.contains_key(id)
                        || self.main.copies.contains(id)
                        || retired.as_ref().is_some_and(|r| r.contains_key(id))
                };
                let listed = newest.into_iter().chain(refreshed.into_iter().flatten());
                merge_newest(old_recent, relisted, listed)
            }
        };
        let recent = newest_first_limited(recent, self.retention.job_series_limit);
        let (finished, ended) = self.outcomes.finish(now, self.retention.ended_window);
        feed.count_finished(&finished, unnamed, self.first_success);
        let history = feed.history_mut();
        let summary = JobSummary {
            counts: history.counts_by_status(),
            recent,
            oldest_active_submitted: history.oldest_active(),
            ended,
        };
        feed.set_summary(summary, poll_seconds, now);
        Some(PollOutcome {
            recovered,
            finished,
        })
    }
}

/// An incremental listing's newest jobs: the old ones, but for those the history has anew
/// (`relisted`: the window as listed, the stragglers as followed), and the `listed` ones.
fn merge_newest(
    old: Vec<RecentJob>,
    relisted: impl Fn(&str) -> bool,
    listed: impl Iterator<Item = RecentJob>,
) -> Vec<RecentJob> {
    let mut recent: Vec<RecentJob> = old.into_iter().filter(|j| !relisted(j.id())).collect();
    recent.extend(listed);
    recent
}

impl MainStage {
    /// Drops the unfinished first copy of a job a finished copy replaces.
    fn forget(&mut self, id: &str) {
        self.full.window.remove(id);
        self.full.stragglers.remove(id);
        self.early_stragglers.remove(id);
        self.newest.remove(id);
    }

    /// Settles, as the commit would, the staged window jobs at or before the settled point the
    /// window implies so far (it only moves forward, see [`Cut`]), so that the window of a listing
    /// of the whole history stays small while it is staged. Jobs the history had in its window stay
    /// until the commit, which tells the gone ones from them.
    fn settle_early(&mut self, history: &History) {
        let Some(cut) = self.cut.point() else {
            return;
        };
        let (counts, stragglers) = (&mut self.early_counts, &mut self.early_stragglers);
        self.full.window.retain(|id, job| {
            if job.submitted > cut || history.window.contains_key(id) {
                return true;
            }
            if job.status.is_terminal() {
                *counts.entry(job.status.clone()).or_insert(0) += 1;
            } else {
                stragglers.insert(id.clone(), job.clone());
            }
            false
        });
    }
}

impl FollowStage {
    /// Drops the unfinished first copy of a job a finished copy replaces.
    fn forget(&mut self, id: &str) {
        self.kept.remove(id);
        self.refreshed.retain(|job| job.id() != id);
    }
}

/// Whether a listed copy of a job is its first, one that replaces the first, or one to ignore.
enum Copy {
    First,
    /// A finished copy after an unfinished one: the finished one counts.
    Replaces,
    Again,
}

/// The job ids a listing returned, and whether as finished: one copy per id counts, since a
/// listing whose pages shifted while it was read may return a job twice (in different statuses if
/// it changed meanwhile). A finished copy wins over an unfinished one; otherwise the first wins.
#[derive(Debug, Default)]
struct Copies(HashMap<Box<str>, bool>);

impl Copies {
    fn admit(&mut self, job: &Job) -> Copy {
        let finished = job.status.is_terminal();
        match self.0.get_mut(job.id.as_str()) {
            None => {
                self.0.insert(job.id.as_str().into(), finished);
                Copy::First
            }
            Some(seen) if finished && !*seen => {
                *seen = true;
                Copy::Replaces
            }
            Some(_) => Copy::Again,
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }
}

/// Newest submitted first; ties by id, so the order is stable.
fn newest_first(a: &RecentJob, b: &RecentJob) -> std::cmp::Ordering {
    b.submitted
        .total_cmp(&a.submitted)
        .then_with(|| a.id().cmp(b.id()))
}

/// `jobs` newest first, the newest `limit` of them.
fn newest_first_limited(mut jobs: Vec<RecentJob>, limit: usize) -> Vec<RecentJob> {
    jobs.sort_unstable_by(newest_first);
    jobs.truncate(limit);
    jobs.shrink_to_fit();
    jobs
}

/// The newest jobs of a listing, up to a limit: a heap whose top is the one to drop next, so
/// only the jobs kept are copied, never the whole listing.
#[derive(Debug, Default)]
struct NewestJobs {
    limit: usize,
    heap: BinaryHeap<ByAge>,
}

/// A job ordered by [`newest_first`]: the greatest is the oldest.
#[derive(Debug)]
struct ByAge(RecentJob);

impl PartialEq for ByAge {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for ByAge {}

impl PartialOrd for ByAge {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByAge {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        newest_first(&self.0, &other.0)
    }
}

impl NewestJobs {
    fn new(limit: usize) -> NewestJobs {
        NewestJobs {
            limit,
            heap: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, job: &Job) {
        if self.limit == 0 {
            return;
        }
        if self.heap.len() >= self.limit {
            let Some(oldest) = self.heap.peek() else {
                return;
            };
            let newer = job
                .submitted
                .total_cmp(&oldest.0.submitted)
                .then_with(|| oldest.0.id().cmp(&job.id))
                .is_gt();
            if !newer {
                return;
            }
            self.heap.pop();
        }
        self.heap.push(ByAge(RecentJob::from(job)));
    }

    fn remove(&mut self, id: &str) {
        self.heap.retain(|job| job.0.id() != id);
    }

    fn into_newest_first(self) -> Vec<RecentJob> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|j| j.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HOUR: f64 = 3600.0;

    fn job(id: &str, status: &str, submitted: f64) -> Job {
        let status = JobStatus::parse(status);
        let ended = status.is_terminal().then_some(submitted + 60.0);
        Job {
            id: id.into(),
            name: Some(format!("name-{id}")),
            status,
            submitted,
            ended,
            progress: None,
            message: None,
        }
    }

    /// `n` jobs an hour apart ending at `newest`, every 7th unfinished, every 11th failed.
    fn history(n: usize, newest: f64) -> Vec<Job> {
        (0..n)
            .map(|k| {
                let status = match k {
                    _ if k % 7 == 3 => "IN_PROGRESS",
                    _ if k % 11 == 5 => "FAILED",
                    _ => "COMPLETED",
                };
                job(
                    &format!("j{k:05}"),
                    status,
                    newest - (n - 1 - k) as f64 * HOUR,
                )
            })
            .collect()
    }

    fn retention() -> Retention {
        Retention::new(20, 2.0 * HOUR)
    }

    /// Merges `pages` of `plan` (the feed's next plan when `None`) into `feed`.
    fn merge(feed: &mut JobFeed, pages: Vec<Vec<Job>>, now: f64) -> PollOutcome {
        let plan = feed.next_poll(Duration::from_secs(86_400), 1, 0);
        let mut merge = ListingMerge::start(JobKind::Export, Some(feed), plan, retention(), now);
        for page in pages {
            merge.stage_page(Some(feed), page);
        }
        merge
            .commit(feed, 0.1, now)
            .expect("the feed did not change")
    }

    fn shown(feed: &JobFeed) -> (Option<JobSummary>, BTreeMap<JobStatus, u64>) {
        (feed.jobs.clone(), feed.finished.clone())
    }

    #[test]
    fn a_listing_staged_page_by_page_equals_one_staged_at_once() {
        let now = 1_000_000.0;
        let jobs = history(3000, now - 60.0);
        let (mut whole, mut paged) = (JobFeed::new(), JobFeed::new());
        merge(&mut whole, vec![jobs.clone()], now);
        let mut reversed = jobs.clone();
        reversed.reverse();
        merge(
            &mut paged,
            reversed.chunks(7).map(<[Job]>::to_vec).collect(),
            now,
        );
        assert_eq!(shown(&paged), shown(&whole));
        let summary = whole.jobs.as_ref().unwrap();
        assert_eq!(summary.counts[&JobStatus::InProgress], 429);
        assert_eq!(summary.recent.len(), 20);
        assert_eq!(summary.recent[0].id(), "j02999");
        assert_eq!(whole.history().settled, paged.history().settled);
        assert_eq!(whole.history().stragglers, paged.history().stragglers);
    }

    #[test]
    fn the_window_of_a_first_listing_stays_small_while_it_is_staged() {
        let now = 1_000_000.0;
        let feed = JobFeed::new();
        let mut merge = ListingMerge::start(
            JobKind::Export,
            Some(&feed),
            PollPlan::FULL,
            retention(),
            now,
        );
        for page in history(10_000, now).chunks(500) {
            merge.stage_page(Some(&feed), page.to_vec());
            // Jobs an hour apart: only the newest is within the late-job window.
            assert!(
                merge.main.full.window.len() <= 1,
                "{}",
                merge.main.full.window.len()
            );
            assert!(merge.main.newest.heap.len() <= 20);
        }
        let early: u64 = merge.main.early_counts.values().sum();
        assert_eq!(early as usize + merge.main.early_stragglers.len(), 9_999);
    }

    #[test]
    fn a_finished_copy_wins_over_an_unfinished_one_in_any_order_across_pages() {
        let now = 1_000_000.0;
        for finished_first in [false, true] {
            let mut feed = JobFeed::new();
            merge(
                &mut feed,
                vec![vec![job("a", "IN_PROGRESS", now - 10.0)]],
                now,
            );
            let (running, failed) = (
                job("a", "IN_PROGRESS", now - 10.0),
                job("a", "FAILED", now - 10.0),
            );
            let pages = match finished_first {
                true => vec![
                    vec![failed],
                    vec![job("b", "COMPLETED", now - 5.0)],
                    vec![running],
                ],
                false => vec![
                    vec![running],
                    vec![job("b", "COMPLETED", now - 5.0)],
                    vec![failed],
                ],
            };
            let mut finished = merge(&mut feed, pages, now + 60.0).finished;
            finished.sort();
            let finished: Vec<(String, JobStatus)> =
                finished.into_iter().map(|j| (j.id, j.status)).collect();
            assert_eq!(
                finished,
                [
                    ("a".into(), JobStatus::Failed),
                    ("b".into(), JobStatus::Completed)
                ]
            );
            let summary = feed.jobs.as_ref().unwrap();
            assert_eq!(summary.counts[&JobStatus::Failed], 1);
            assert_eq!(summary.counts[&JobStatus::InProgress], 0);
            assert_eq!(
                summary.recent.iter().map(RecentJob::id).collect::<Vec<_>>(),
                ["b", "a"]
            );
            assert_eq!(summary.recent[1].status, JobStatus::Failed);
            assert_eq!(summary.oldest_active_submitted, None);
        }
    }

    /// A job of the window that settles in the listing that lists it again is accounted for once
    /// (settled while staging or at the commit, never both, nor as gone): a settled job that a
    /// later full listing finds beyond those accounted for is still counted as finished.
    #[test]
    fn a_window_job_settled_by_the_listing_that_lists_it_again_is_accounted_for_once() {
        let now = 1_000_000.0;
        let mut feed = JobFeed::new();
        merge(
            &mut feed,
            vec![vec![job("old", "COMPLETED", now - 10.0)]],
            now,
        );
        let newer = job("new", "COMPLETED", now + 2.0 * HOUR);
        let full = |feed: &mut JobFeed, jobs: Vec<Job>, at: f64| {
            let mut listing =
                ListingMerge::start(JobKind::Export, Some(feed), PollPlan::FULL, retention(), at);
            for page in jobs {
                listing.stage_page(Some(feed), vec![page]);
            }
            listing.commit(feed, 0.1, at).unwrap()
        };
        full(
            &mut feed,
            vec![newer.clone(), job("old", "COMPLETED", now - 10.0)],
            now + 3.0 * HOUR,
        );
        let settled = feed.history().settled.as_ref().unwrap();
        assert_eq!(settled.known[&JobStatus::Completed], 1, "{settled:?}");
        assert!(feed.history().gone.is_empty());
        // A settled job no listing showed before (listed late, behind the settled point): counted.
        let late = job("late", "COMPLETED", now - 20.0);
        let newest = job("newest", "COMPLETED", now + 4.0 * HOUR);
        let outcome = full(
            &mut feed,
            vec![newest, newer, job("old", "COMPLETED", now - 10.0), late],
            now + 5.0 * HOUR,
        );
        assert!(
            outcome.finished.iter().all(|j| j.id != "late"),
            "counted by number only"
        );
        assert_eq!(
            feed.finished[&JobStatus::Completed],
            3,
            "new, newest and late"
        );
    }

    #[test]
    fn a_listing_dropped_before_its_commit_leaves_the_feed_as_it_was() {
        let now = 1_000_000.0;
        let mut feed = JobFeed::new();
        merge(&mut feed, vec![history(600, now)], now);
        let before = shown(&feed);
        // A full listing fails after two pages: its staging is dropped.
        let mut listing = ListingMerge::start(
            JobKind::Export,
            Some(&feed),
            PollPlan::FULL,
            retention(),
            now + 60.0,
        );
        let mut changed = history(600, now + 60.0);
        for job in &mut changed {
            job.status = JobStatus::Failed;
        }
        for page in changed.chunks(250).take(2) {
            listing.stage_page(Some(&feed), page.to_vec());
        }
        drop(listing);
        assert_eq!(shown(&feed), before);
        assert_eq!(feed.commits(), 1);
    }

    #[test]
    fn a_listing_started_on_a_feed_that_changed_since_is_not_committed() {
        let now = 1_000_000.0;
        let mut feed = JobFeed::new();
        let stale = ListingMerge::start(
            JobKind::Export,
            Some(&feed),
            PollPlan::FULL,
            retention(),
            now,
        );
        merge(&mut feed, vec![vec![job("a", "COMPLETED", now)]], now);
        let before = shown(&feed);
        assert!(stale.commit(&mut feed, 0.1, now).is_none());
        assert_eq!(shown(&feed), before);
    }

    #[test]
    fn the_newest_jobs_are_kept_newest_first_with_ties_by_id() {
        let mut newest = NewestJobs::new(3);
        for (id, t) in [
            ("c", 5.0),
            ("a", 9.0),
            ("x", 1.0),
            ("b", 9.0),
            ("d", 7.0),
            ("e", 2.0),
        ] {
            newest.offer(&job(id, "COMPLETED", t));
        }
        let ids: Vec<String> = newest
            .into_newest_first()
            .iter()
            .map(|j| j.id().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b", "d"]);
        let mut none = NewestJobs::new(0);
        none.offer(&job("a", "COMPLETED", 1.0));
        assert!(none.into_newest_first().is_empty());
    }

    #[test]
    fn a_job_first_seen_failed_without_an_end_time_ends_at_the_commit() {
        let now = 1_000_000.0;
        let mut feed = JobFeed::new();
        merge(
            &mut feed,
            vec![vec![job("a", "IN_PROGRESS", now - 100.0)]],
            now,
        );
        let mut failed = job("a", "FAILED", now - 100.0);
        failed.ended = None;
        let plan = feed.next_poll(Duration::from_secs(86_400), 1, 0);
        let mut listing =
            ListingMerge::start(JobKind::Export, Some(&feed), plan, retention(), now + 10.0);
        listing.stage_page(Some(&feed), vec![failed]);
        listing.commit(&mut feed, 5.0, now + 15.0).unwrap();
        let ended = &feed.jobs.as_ref().unwrap().ended;
        assert_eq!((ended[0].id.as_str(), ended[0].ended), ("a", now + 15.0));
    }
}
