//! The sample functions of the families that need more than a line (the table in `families`
//! holds the others): each writes one family's samples of one part of the snapshot, with the
//! values of the family's labels in the order the table names them.

use super::encode::{Fmt, Scope, Sink};
use super::snapshot::{
    feed_name, Description, EventQueue, Exporter, FeedHealth, JobList, Snapshot,
};
use crate::aws::{OPERATIONS, RESULTS};
use crate::model::{ErrorReason, ImportProgress, DATASTORE_STATUSES};

/// `status`: jobs per status, as last listed.
pub(super) fn job_counts(m: &mut Sink<'_, '_>, ds: &Scope<'_>, jobs: &JobList) -> Fmt {
    let Some(shown) = &jobs.shown else {
        return Ok(());
    };
    for (status, count) in &shown.counts {
        m.gauge(ds, &[status.as_str()], *count as f64)?;
    }
    Ok(())
}

/// `job_id`, `job_name`, `status`: each recent job's duration; a running one's as of the scrape.
pub(super) fn job_durations(m: &mut Sink<'_, '_>, ds: &Scope<'_>, jobs: &JobList) -> Fmt {
    let Some(shown) = &jobs.shown else {
        return Ok(());
    };
    for job in &shown.recent {
        let Some(seconds) = job.duration_seconds(m.now()) else {
            continue;
        };
        let name = jobs.job_name_label.label(job.name());
        let labels = [job.id(), name.as_ref(), job.status.as_str()];
        // A job without an end time that has a duration is running (`duration_seconds`).
        match job.ended {
            None => m.elapsed(ds, &labels, job.submitted)?,
            Some(_) => m.gauge(ds, &labels, seconds)?,
        }
    }
    Ok(())
}

/// `job_id`, `job_name`, `status`: the end time of each job that ended in an alerted status
/// within the ended-job window.
pub(super) fn ended_jobs(m: &mut Sink<'_, '_>, ds: &Scope<'_>, jobs: &JobList) -> Fmt {
    let Some(shown) = &jobs.shown else {
        return Ok(());
    };
    for job in &shown.ended {
        let name = jobs.job_name_label.label(job.name.as_deref());
        m.gauge(
            ds,
            &[&job.id, name.as_ref(), job.status.as_str()],
            job.ended,
        )?;
    }
    Ok(())
}

/// `status`: jobs seen entering each terminal status.
pub(super) fn finished_jobs(m: &mut Sink<'_, '_>, ds: &Scope<'_>, jobs: &JobList) -> Fmt {
    for (status, count) in &jobs.finished {
        m.counter(ds, &[status.as_str()], *count)?;
    }
    Ok(())
}

/// The age of the oldest unfinished job as of the scrape, 0 when none.
pub(super) fn oldest_active_job(m: &mut Sink<'_, '_>, ds: &Scope<'_>, jobs: &JobList) -> Fmt {
    match jobs.shown.as_ref().map(|s| s.oldest_active_submitted) {
        Some(Some(submitted)) => m.elapsed(ds, &[], submitted),
        Some(None) => m.gauge(ds, &[], 0.0),
        None => Ok(()),
    }
}

/// `job_id`, `job_name`: one value of each running import job's progress report.
pub(super) fn progress(
    m: &mut Sink<'_, '_>,
    ds: &Scope<'_>,
    jobs: &JobList,
    value: fn(&ImportProgress) -> f64,
) -> Fmt {
    let Some(shown) = &jobs.shown else {
        return Ok(());
    };
    for job in shown.recent.iter().filter(|j| j.is_active()) {
        let Some(progress) = &job.progress else {
            continue;
        };
        let name = jobs.job_name_label.label(job.name());
        m.gauge(ds, &[job.id(), name.as_ref()], value(progress))?;
    }
    Ok(())
}

/// `status`: 1 for the datastore's status, 0 for every other known one.
pub(super) fn datastore_status(m: &mut Sink<'_, '_>, ds: &Scope<'_>, d: &Description) -> Fmt {
    let Some(info) = &d.info else {
        return Ok(());
    };
    for status in DATASTORE_STATUSES {
        m.flag(ds, &[status], info.status == status)?;
    }
    if !DATASTORE_STATUSES.contains(&info.status.as_str()) {
        m.gauge(ds, &[info.status.as_str()], 1.0)?;
    }
    Ok(())
}

/// `fhir_version`, `arn`: always 1.
pub(super) fn datastore_info(m: &mut Sink<'_, '_>, ds: &Scope<'_>, d: &Description) -> Fmt {
    match &d.info {
        Some(info) => m.gauge(ds, &[&info.fhir_version, &info.arn], 1.0),
        None => Ok(()),
    }
}

/// Calls `write` for every feed of `snapshot`, with its scope: each datastore's job listings and
/// description, each `[[discovery]]` entry (`discovery`: its position in the file, `region`), the
/// event consumer.
pub(super) fn each_feed(
    m: &mut Sink<'_, '_>,
    snapshot: &Snapshot,
    write: fn(&mut Sink<'_, '_>, &Scope<'_>, &FeedHealth<'_>) -> Fmt,
) -> Fmt {
    for ds in &snapshot.datastores {
        let scope = ds.scope();
        for feed in ds.feeds() {
            write(m, &scope, &feed)?;
        }
    }
    let Some(exporter) = &snapshot.exporter else {
        return Ok(());
    };
    for d in &exporter.discovery {
        let index = d.index.to_string();
        let scope = [("discovery", index.as_str()), ("region", d.region.as_str())];
        write(m, &scope, &FeedHealth::discovery(&d.health))?;
    }
    match &exporter.events {
        Some(events) => write(m, &[], &FeedHealth::events(&events.health)),
        None => Ok(()),
    }
}

/// `feed`: 1 if its last poll succeeded. A description's appears with its first call; every
/// other feed's is 0 until then.
pub(super) fn feed_up(m: &mut Sink<'_, '_>, scope: &Scope<'_>, feed: &FeedHealth<'_>) -> Fmt {
    if feed.name == feed_name::DESCRIBE && feed.health.attempts == 0 {
        return Ok(());
    }
    m.flag(scope, &[feed.name], feed.health.up)
}

/// `feed`, `reason`: failed polls, every reason (0 included).
pub(super) fn feed_errors(m: &mut Sink<'_, '_>, scope: &Scope<'_>, feed: &FeedHealth<'_>) -> Fmt {
    for reason in ErrorReason::ALL {
        let count = feed.health.errors.get(&reason).copied().unwrap_or(0);
        m.counter(scope, &[feed.name, reason.as_str()], count)?;
    }
    Ok(())
}

/// `feed`: the wall time of its last poll, once there was one.
pub(super) fn feed_last_poll_duration(
    m: &mut Sink<'_, '_>,
    scope: &Scope<'_>,
    feed: &FeedHealth<'_>,
) -> Fmt {
    match feed.health.last_poll_seconds {
        Some(seconds) => m.gauge(scope, &[feed.name], seconds),
        None => Ok(()),
    }
}

/// `feed`: when its last successful poll ended, once there was one.
pub(super) fn feed_last_success(
    m: &mut Sink<'_, '_>,
    scope: &Scope<'_>,
    feed: &FeedHealth<'_>,
) -> Fmt {
    match feed.health.last_success {
        Some(at) => m.gauge(scope, &[feed.name], at),
        None => Ok(()),
    }
}

/// Per `[[discovery]]` entry (`discovery`: its position in the file, `region`): the datastores
/// its last successful listing found.
pub(super) fn discovery_datastores(m: &mut Sink<'_, '_>, e: &Exporter) -> Fmt {
    for d in &e.discovery {
        let index = d.index.to_string();
        let scope = [("discovery", index.as_str()), ("region", d.region.as_str())];
        m.gauge(&scope, &[], d.found as f64)?;
    }
    Ok(())
}

/// `operation`, `result`: every combination, 0 included.
pub(super) fn api_requests(m: &mut Sink<'_, '_>, e: &Exporter) -> Fmt {
    for (operation, row) in OPERATIONS.iter().zip(&e.api_requests) {
        for (result, count) in RESULTS.iter().zip(row) {
            m.counter(&[], &[operation, result], *count)?;
        }
    }
    Ok(())
}

/// With `[server.tls]` only.
pub(super) fn certificate_loaded(m: &mut Sink<'_, '_>, e: &Exporter) -> Fmt {
    match e.certificate_loaded {
        Some(loaded) => m.flag(&[], &[], loaded),
        None => Ok(()),
    }
}

/// `version`, `revision`, `rustc_version`: always 1.
pub(super) fn build_info(m: &mut Sink<'_, '_>, _: &Exporter) -> Fmt {
    let build = [
        env!("CARGO_PKG_VERSION"),
        env!("HEALTHLAKE_EXPORTER_REVISION"),
        env!("HEALTHLAKE_EXPORTER_RUSTC_VERSION"),
    ];
    m.gauge(&[], &build, 1.0)
}

/// Absent until an event was applied.
pub(super) fn newest_applied_event(m: &mut Sink<'_, '_>, q: &EventQueue) -> Fmt {
    match q.newest_applied {
        Some(time) => m.gauge(&[], &[], time),
        None => Ok(()),
    }
}
