//! What a listing finds about finished jobs while it is merged: the jobs counted as finishing
//! now (the finished counters, and the poller's log lines), and the ended-job series of the jobs
//! that ended in an alerted status within `polling.ended_job_window`.

use std::collections::HashMap;

use super::feed::{EndedJob, FinishedJob, ALERTED_STATUSES, MAX_ENDED_JOBS};
use crate::model::{Job, JobStatus};

/// Whether `job`, last known in status `before` (if known at all), is to be counted as having
/// entered its terminal status now: at most once per id and terminal status, never at the first
/// successful poll.
pub(super) fn counts_as_finished(
    job: &Job,
    before: Option<&JobStatus>,
    first_success: bool,
) -> bool {
    job.status.is_terminal() && before != Some(&job.status) && !first_success
}

/// When an alerted job ended: its EndTime (or another known time), or, for a job first seen
/// finished without one, the time the listing is committed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum EndStamp {
    At(f64),
    AtCommit,
}

/// An ended-job series being rebuilt.
#[derive(Clone, Debug)]
struct Ended {
    name: Option<String>,
    status: JobStatus,
    at: EndStamp,
}

/// What a listing finds about finished jobs: those counted as finishing now, and the ended-job
/// series (see [`ALERTED_STATUSES`]), starting from the feed's.
#[derive(Debug)]
pub(super) struct Outcomes {
    finished: Vec<FinishedJob>,
    ended: HashMap<Box<str>, Ended>,
    /// Series that ended at or before this Unix time are not kept (as of the listing's start; the
    /// commit applies its own, later horizon).
    horizon: f64,
    /// The feed had no successful poll before (see [`Outcomes::note_ended`]).
    first_success: bool,
}

impl Outcomes {
    /// Starts from the feed's ended-job series `old_ended`; series that ended at or before
    /// `horizon` are not kept; `first_success`: see [`Outcomes::note_ended`].
    pub(super) fn new(old_ended: &[EndedJob], horizon: f64, first_success: bool) -> Outcomes {
        Outcomes {
            finished: Vec::new(),
            ended: Outcomes::series_of(old_ended),
            horizon,
            first_success,
        }
    }

    /// The ended-job series `old_ended`, by id.
    fn series_of(old_ended: &[EndedJob]) -> HashMap<Box<str>, Ended> {
        old_ended
            .iter()
            .map(|e| {
                let series = Ended {
                    name: e.name.clone(),
                    status: e.status.clone(),
                    at: EndStamp::At(e.ended),
                };
                (e.id.as_str().into(), series)
            })
            .collect()
    }

    /// Notes a listed job, `counted` if it entered its terminal status now.
    pub(super) fn saw(&mut self, job: &Job, counted: bool) {
        if counted {
            self.finished.push(FinishedJob::from(job));
        }
        self.note_ended(job, counted);
    }

    /// Notes a listed job: one in an alerted status that ended after the horizon gets (or keeps)
    /// its series. Its end is its EndTime; without one, the time the exporter first saw it
    /// finished (the commit's, when `counted` says that is this poll); at the first poll, when
    /// that time is unknown, its SubmitTime, so that a fresh start does not page for old failures.
    fn note_ended(&mut self, job: &Job, counted: bool) {
        if !ALERTED_STATUSES.contains(&job.status) {
            return;
        }
        let known = self
            .ended
            .get(job.id.as_str())
            .filter(|e| e.status == job.status)
            .map(|e| e.at);
        let stamp = job.ended.map(EndStamp::At).or(known).or(if counted {
            Some(EndStamp::AtCommit)
        } else if self.first_success {
            Some(EndStamp::At(job.submitted))
        } else {
            None
        });
        let keep = match stamp {
            Some(EndStamp::At(ended)) => ended > self.horizon,
            Some(EndStamp::AtCommit) => true,
            None => false,
        };
        if let (true, Some(at)) = (keep, stamp) {
            let series = Ended {
                name: job.name.clone(),
                status: job.status.clone(),
                at,
            };
            self.ended.insert(job.id.as_str().into(), series);
        }
    }

    /// The jobs counted as finished, and the ended-job series within `ended_window` seconds of
    /// `now`, most recent first.
    pub(super) fn finish(self, now: f64, ended_window: f64) -> (Vec<FinishedJob>, Vec<EndedJob>) {
        let horizon = now - ended_window;
        let mut ended: Vec<EndedJob> = self
            .ended
            .into_iter()
            .map(|(id, e)| EndedJob {
                id: id.into(),
                name: e.name,
                status: e.status,
                ended: match e.at {
                    EndStamp::At(at) => at,
                    EndStamp::AtCommit => now,
                },
            })
            .filter(|e| e.ended > horizon)
            .collect();
        ended.sort_unstable_by(|a, b| b.ended.total_cmp(&a.ended).then_with(|| a.id.cmp(&b.id)));
        ended.truncate(MAX_ENDED_JOBS);
        ended.shrink_to_fit();
        (self.finished, ended)
    }
}
