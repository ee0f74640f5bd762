//! Scripted history and live activity for `--demo` mode, so the exporter can be shown (and
//! eyeballed) without AWS: three named datastores with a realistic export and import history,
//! then a loop that moves jobs through their lifecycle (import progress counters grow tick by
//! tick), submits new ones, and now and then takes one datastore through ACTIVE → UPDATING →
//! ACTIVE so the datastore-health metrics and alert have something to show.
//!
//! The history ends with an export that FAILED a few minutes before the demo starts, so the
//! failure alert's series is there from the exporter's first poll on. Jobs keep HealthLake's
//! physics: an account runs one export and one import at a time per region and queues the rest
//! in submission order, so the two datastores in us-east-1 wait for each other.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::store::{fnv1a, Job};
use super::wire::{export_output_uri, role_arn, EXPORT_ROLE};
use super::{FakeDatastore, FakeHealthLake, FakeImportJob, FakeJob, FakeProgress};

/// One demo datastore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoDatastore {
    /// 32 lowercase hex characters, like a real id.
    pub id: &'static str,
    pub name: &'static str,
    /// The region it lives in (the fake answers only requests signed for it).
    pub region: &'static str,
}

/// The demo's datastores.
pub const DEMO_DATASTORES: [DemoDatastore; 3] = [
    DemoDatastore {
        id: "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e",
        name: "patient-records-prod",
        region: "us-east-1",
    },
    DemoDatastore {
        id: "c4e8a2f6b0d4c8e2a6f0b4d8c2e6a0f4",
        name: "claims-analytics",
        region: "us-east-1",
    },
    DemoDatastore {
        id: "19b5d3f7e1a9c5b3d7f1e9a5c3b7d1f9",
        name: "research-sandbox",
        region: "us-west-2",
    },
];

/// The export of "patient-records-prod" that failed shortly before the demo starts: the
/// failure alert fires for it from the first scrape.
pub const RECENT_FAILURE_NAME: &str = "cohort-export";
/// How many seconds before the demo starts [`RECENT_FAILURE_NAME`] ended (well within the
/// exporter's default one-hour ended-job window).
pub const RECENT_FAILURE_AGE: f64 = 240.0;

/// Jobs still moving through the pipeline.
const ACTIVE: [&str; 3] = ["SUBMITTED", "QUEUED", "IN_PROGRESS"];

/// Past jobs kept per datastore while the demo runs; older finished jobs are dropped.
const MAX_JOBS_PER_DATASTORE: usize = 200;

/// The demo datastore that goes ACTIVE → UPDATING → ACTIVE now and then ("claims-analytics").
const FLAPPING_DATASTORE: &str = DEMO_DATASTORES[1].id;

/// Per tick: chance that the flapping datastore starts an update, and that an update finishes.
const UPDATE_START_CHANCE: f64 = 0.04;
const UPDATE_FINISH_CHANCE: f64 = 0.3;

/// Average size of one demo import input file, and resources per file.
const MB_PER_FILE: f64 = 2.5;
const RESOURCES_PER_FILE: i64 = 240;

/// Smallest tick accepted by [`run_demo_script`] (a zero interval would spin).
const MIN_TICK: Duration = Duration::from_millis(10);

const HOUR: f64 = 3600.0;
const DAY: f64 = 24.0 * HOUR;

/// Seeds the demo datastores, each pinned to its region, with a realistic history (completed,
/// completed-with-errors and failed jobs, one export that failed [`RECENT_FAILURE_AGE`] seconds
/// before `now`, one running and one queued behind it) and returns them.
pub fn seed_demo(fake: &FakeHealthLake, now: f64) -> &'static [DemoDatastore] {
    for (n, ds) in DEMO_DATASTORES.iter().enumerate() {
        let created = now - (400.0 - 90.0 * n as f64) * DAY;
        fake.set_datastore(
            ds.id,
            FakeDatastore::new(ds.name)
                .created(created)
                .in_region(ds.region),
        );
    }
    for (datastore, job) in run_queues(export_history(now), now) {
        fake.add_job(datastore, job);
    }
    for (datastore, job) in run_queues(import_history(now), now) {
        fake.add_import_job(datastore, job);
    }
    &DEMO_DATASTORES
}

/// A job of the demo history before its region's queue has run it: `job` as it ends (or, for
/// one still running at the start, with status `IN_PROGRESS`), and how long it runs once started.
struct Seed<J> {
    datastore: usize,
    job: J,
    run: f64,
}

/// Export job `k` of a demo datastore: a stable 32-hex id.
fn export_id(datastore: &str, k: u64) -> String {
    hex_id(fnv1a(datastore.as_bytes()) ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Import job `k` of a demo datastore.
fn import_id(datastore: &str, k: u64) -> String {
    hex_id(fnv1a(datastore.as_bytes()) ^ k.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
}

/// The export history: a week of nightly exports per datastore, mostly fine, and a few ad-hoc
/// ones (see [`seed_demo`]).
fn export_history(now: f64) -> Vec<Seed<FakeJob>> {
    let mut seeds = Vec::new();
    for (n, ds) in DEMO_DATASTORES.iter().enumerate() {
        for day in 1..=7u64 {
            let submit = now - day as f64 * DAY + 0.25 * n as f64;
            let mut job = FakeJob::new(export_id(ds.id, day), "COMPLETED", submit)
                .named(format!("nightly-export-d{day}"));
            if (day + n as u64).is_multiple_of(5) {
                job.status = "COMPLETED_WITH_ERRORS".to_owned();
                job.message = Some("Export completed: 12 resources could not be exported".into());
            }
            let run = 900.0 + 300.0 * n as f64 + 37.5 * day as f64;
            seeds.push(Seed {
                datastore: n,
                job,
                run,
            });
        }
    }
    let seed = |datastore: usize, k: u64, status: &str, ago: f64, run: f64| Seed {
        datastore,
        job: FakeJob::new(
            export_id(DEMO_DATASTORES[datastore].id, k),
            status,
            now - ago,
        ),
        run,
    };
    let mut adhoc = seed(0, 100, "FAILED", 3.0 * HOUR, 42.5);
    adhoc.job = adhoc
        .job
        .named("adhoc-export")
        .with_message("Export failed: access denied to the output S3 bucket");
    // Started at once, it failed RECENT_FAILURE_AGE ago; the next export waited for it.
    let recent_run = 300.0;
    let mut recent = seed(
        0,
        102,
        "FAILED",
        RECENT_FAILURE_AGE + recent_run,
        recent_run,
    );
    let output = export_output_uri(DEMO_DATASTORES[0].id, &recent.job.id);
    recent.job = recent.job.named(RECENT_FAILURE_NAME).with_message(format!(
        "Export failed: {} is not authorized to perform s3:PutObject on {output}",
        role_arn(EXPORT_ROLE)
    ));
    let hourly = seed(
        0,
        101,
        "IN_PROGRESS",
        RECENT_FAILURE_AGE + 120.0,
        2.0 * HOUR,
    );
    let mut backfill = seed(1, 100, "COMPLETED_WITH_ERRORS", 5.0 * HOUR, HOUR);
    backfill.job = backfill
        .job
        .named("claims-backfill")
        .with_message("Export completed: 3 resources failed validation");
    let mut kms = seed(2, 100, "FAILED", 26.0 * HOUR, 7.0);
    kms.job = kms.job.with_message("Export failed: KMS key is disabled");
    seeds.extend([adhoc, recent, kms, backfill]);
    seeds.push(Seed {
        job: hourly.job.named("hourly-export"),
        ..hourly
    });
    let delta = seed(1, 101, "IN_PROGRESS", 120.0, HOUR);
    seeds.push(Seed {
        job: delta.job.named("claims-delta"),
        ..delta
    });
    seeds
}

/// The import history: finished weekly bulk loads with their final progress report, one failed
/// load, and (on the first datastore) one import still running.
fn import_history(now: f64) -> Vec<Seed<FakeImportJob>> {
    let mut seeds = Vec::new();
    for (n, ds) in DEMO_DATASTORES.iter().enumerate() {
        for week in 1..=3u64 {
            let submit = now - (7 * week) as f64 * DAY + 1.5 * n as f64;
            let job = FakeImportJob::new(import_id(ds.id, week), "COMPLETED", submit)
                .named(format!("weekly-load-w{week}"))
                .with_validation_level("strict")
                .with_progress(progress_for(
                    100 + 20 * week as i64 + 10 * n as i64,
                    0,
                    310.0,
                ));
            let run = 2400.0 + 600.0 * n as f64;
            seeds.push(Seed {
                datastore: n,
                job,
                run,
            });
        }
        let mut job = FakeImportJob::new(import_id(ds.id, 100), "FAILED", now - 2.0 * DAY)
            .named("partner-feed")
            .with_message("Import failed: 3 files are not valid FHIR ndjson")
            .with_progress(progress_for(3, 3, 0.0));
        if n == 1 {
            job.status = "COMPLETED_WITH_ERRORS".to_owned();
            job.message = Some("Import completed: 412 resources failed validation".into());
            let mut progress = progress_for(40, 0, 280.0);
            progress.total_number_of_resources_with_customer_error = 412;
            progress.total_number_of_resources_imported = progress
                .total_number_of_resources_imported
                .saturating_sub(412);
            job.progress = Some(progress);
        }
        seeds.push(Seed {
            datastore: n,
            job,
            run: 95.0,
        });
    }
    let running = FakeImportJob::new(
        import_id(DEMO_DATASTORES[0].id, 101),
        "IN_PROGRESS",
        now - 900.0,
    )
    .named("daily-load")
    .with_validation_level("strict")
    .with_progress(progress_for(12, 0, 295.0));
    seeds.push(Seed {
        datastore: 0,
        job: running,
        run: 2.0 * HOUR,
    });
    seeds
}

/// Runs the seeded jobs through their regions' queues, as HealthLake does: one job at a time per
/// region, in submission order (then id), each starting when it is submitted or when the one
/// before it ends, whichever is later. A job that has ended by `now` gets its end time; one
/// running at `now` is `IN_PROGRESS`, one still waiting `QUEUED` (neither with a message).
fn run_queues<J: Job>(mut seeds: Vec<Seed<J>>, now: f64) -> Vec<(&'static str, J)> {
    seeds.sort_by(|a, b| {
        a.job
            .submit_time()
            .total_cmp(&b.job.submit_time())
            .then_with(|| a.job.id().cmp(b.job.id()))
    });
    let mut free_at: BTreeMap<&str, f64> = BTreeMap::new();
    let mut jobs = Vec::with_capacity(seeds.len());
    for Seed {
        datastore,
        mut job,
        run,
    } in seeds
    {
        let ds = &DEMO_DATASTORES[datastore];
        let free = free_at.entry(ds.region).or_insert(f64::NEG_INFINITY);
        let start = job.submit_time().max(*free);
        let end = start + run;
        *free = end;
        if end <= now {
            let status = job.status().to_owned();
            job.set_status(&status, Some(end));
        } else {
            let status = if start <= now {
                "IN_PROGRESS"
            } else {
                "QUEUED"
            };
            job.set_status(status, None);
            job.clear_message();
        }
        jobs.push((ds.id, job));
    }
    jobs
}

/// A progress report for `files` scanned input files, `bad_files` of them unreadable.
fn progress_for(files: i64, bad_files: i64, throughput: f64) -> FakeProgress {
    let good = files.saturating_sub(bad_files).max(0);
    FakeProgress {
        total_number_of_scanned_files: files,
        total_size_of_scanned_files_in_mb: files as f64 * MB_PER_FILE,
        total_number_of_imported_files: good,
        total_number_of_resources_scanned: good.saturating_mul(RESOURCES_PER_FILE),
        total_number_of_resources_imported: good.saturating_mul(RESOURCES_PER_FILE),
        total_number_of_resources_with_customer_error: 0,
        total_number_of_files_read_with_customer_error: bad_files,
        throughput,
        ..FakeProgress::default()
    }
}

/// Input files of a demo import: derived from its id so the job's size is stable across ticks.
fn import_size(job_id: &str) -> i64 {
    40 + (fnv1a(job_id.as_bytes()) % 120) as i64
}

/// Forever: every `tick`, advances jobs SUBMITTED→QUEUED→IN_PROGRESS→COMPLETED /
/// COMPLETED_WITH_ERRORS / FAILED (setting EndTime when terminal) and now and then submits a new
/// job, so a user watching `/metrics` sees changes. Import jobs do the same, their progress
/// counters growing while IN_PROGRESS. Works on whatever datastores the fake has; the
/// "claims-analytics" demo datastore, if present, is updated (UPDATING) now and then.
pub async fn run_demo_script(fake: FakeHealthLake, tick: Duration) {
    // `sleep` (unlike `interval`) copes with absurdly large ticks; drift does not matter here.
    let tick = tick.max(MIN_TICK);
    let mut rng = fastrand::Rng::new();
    loop {
        tokio::time::sleep(tick).await;
        demo_step(&fake, &mut rng, now_epoch());
    }
}

/// One tick of the demo script; separate from the timer so it can be tested deterministically.
pub(crate) fn demo_step(fake: &FakeHealthLake, rng: &mut fastrand::Rng, now: f64) {
    for datastores in by_region(fake) {
        export_step(fake, &datastores, rng, now);
        import_step(fake, &datastores, rng, now);
    }
    flap_datastore(fake, rng);
}

/// The fake's datastores grouped by region (those in no fixed region each on their own): the
/// groups whose jobs queue behind each other.
fn by_region(fake: &FakeHealthLake) -> Vec<Vec<String>> {
    let mut regions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in fake.datastore_ids() {
        let region = fake.datastore(&id).and_then(|d| d.region);
        let key = region.map_or_else(|| format!("datastore {id}"), |r| format!("region {r}"));
        regions.entry(key).or_default().push(id);
    }
    regions.into_values().collect()
}

/// The job allowed to start this tick, if any: the first job in submission order (then id) that
/// has not ended, when it is `QUEUED` and no job of the region is `IN_PROGRESS`.
fn next_in_queue<'a, J: Job + 'a>(jobs: impl Iterator<Item = &'a J>) -> Option<String> {
    let waiting: Vec<&J> = jobs.filter(|j| ACTIVE.contains(&j.status())).collect();
    if waiting.iter().any(|j| j.status() == "IN_PROGRESS") {
        return None;
    }
    waiting
        .into_iter()
        .min_by(|a, b| {
            a.submit_time()
                .total_cmp(&b.submit_time())
                .then_with(|| a.id().cmp(b.id()))
        })
        .filter(|j| j.status() == "QUEUED")
        .map(|j| j.id().to_owned())
}

/// One tick for the export jobs of one region's datastores.
fn export_step(fake: &FakeHealthLake, region: &[String], rng: &mut fastrand::Rng, now: f64) {
    let all: Vec<(&String, Vec<FakeJob>)> = region.iter().map(|ds| (ds, fake.jobs(ds))).collect();
    let next = next_in_queue(all.iter().flat_map(|(_, jobs)| jobs));
    for (datastore, jobs) in &all {
        let mut active = 0;
        for job in jobs.iter().filter(|j| ACTIVE.contains(&j.status.as_str())) {
            active += 1;
            let may_start = next.as_deref() == Some(job.id.as_str());
            if let Some(after) = advance(job, rng, now, may_start) {
                if !ACTIVE.contains(&after.status.as_str()) {
                    active -= 1;
                }
                fake.add_job(datastore, after);
            }
        }
        if active < 2 && rng.f64() < 0.35 {
            let job = FakeJob::new(hex_id(rng.u64(..)), "SUBMITTED", now)
                .named(format!("export-{}", now as u64));
            fake.add_job(datastore, job);
        }
        let finished = jobs.len().saturating_sub(MAX_JOBS_PER_DATASTORE);
        for old in jobs
            .iter()
            .filter(|j| !ACTIVE.contains(&j.status.as_str()))
            .take(finished)
        {
            fake.remove_job(datastore, &old.id);
        }
    }
}

/// Moves the flapping datastore ACTIVE → UPDATING → ACTIVE, a step at a time.
fn flap_datastore(fake: &FakeHealthLake, rng: &mut fastrand::Rng) {
    let Some(datastore) = fake.datastore(FLAPPING_DATASTORE) else {
        return;
    };
    let next = match datastore.status.as_str() {
        "ACTIVE" if rng.f64() < UPDATE_START_CHANCE => "UPDATING",
        "UPDATING" if rng.f64() < UPDATE_FINISH_CHANCE => "ACTIVE",
        _ => return,
    };
    fake.set_datastore_status(FLAPPING_DATASTORE, next);
}

/// One tick for the import jobs of one region's datastores.
fn import_step(fake: &FakeHealthLake, region: &[String], rng: &mut fastrand::Rng, now: f64) {
    let all: Vec<(&String, Vec<FakeImportJob>)> =
        region.iter().map(|ds| (ds, fake.import_jobs(ds))).collect();
    let next = next_in_queue(all.iter().flat_map(|(_, jobs)| jobs));
    for (datastore, jobs) in &all {
        let mut active = 0;
        for job in jobs.iter().filter(|j| ACTIVE.contains(&j.status.as_str())) {
            let may_start = next.as_deref() == Some(job.id.as_str());
            let after = advance_import(job, rng, now, may_start);
            if ACTIVE.contains(&after.status.as_str()) {
                active += 1;
            }
            if after != *job {
                fake.add_import_job(datastore, after);
            }
        }
        if active == 0 && rng.f64() < 0.12 {
            let job = FakeImportJob::new(hex_id(rng.u64(..)), "SUBMITTED", now)
                .named(format!("load-{}", now as u64))
                .with_validation_level("strict");
            fake.add_import_job(datastore, job);
        }
        let finished = jobs.len().saturating_sub(MAX_JOBS_PER_DATASTORE);
        for old in jobs
            .iter()
            .filter(|j| !ACTIVE.contains(&j.status.as_str()))
            .take(finished)
        {
            fake.remove_import_job(datastore, &old.id);
        }
    }
}

/// The import job after this tick: submitted jobs queue, the queued one `may_start` starts,
/// running ones scan a few more files and finish once all input is scanned.
fn advance_import(
    job: &FakeImportJob,
    rng: &mut fastrand::Rng,
    now: f64,
    may_start: bool,
) -> FakeImportJob {
    let mut next = job.clone();
    match job.status.as_str() {
        "SUBMITTED" if rng.f64() < 0.7 => next.status = "QUEUED".into(),
        "QUEUED" if may_start && rng.f64() < 0.5 => {
            next.status = "IN_PROGRESS".into();
            next.progress = Some(progress_for(0, 0, 0.0));
        }
        "IN_PROGRESS" => {
            let total = import_size(&job.id);
            let before = job.progress.clone().unwrap_or_default();
            let files = before
                .total_number_of_scanned_files
                .saturating_add(rng.i64(2..=9))
                .min(total);
            let bad = before
                .total_number_of_files_read_with_customer_error
                .saturating_add(i64::from(rng.f64() < 0.05));
            let mut progress = progress_for(files, bad.min(files), 150.0 + rng.f64() * 250.0);
            let new_errors = if rng.f64() < 0.2 { rng.i64(1..=30) } else { 0 };
            progress.total_number_of_resources_with_customer_error = before
                .total_number_of_resources_with_customer_error
                .saturating_add(new_errors);
            progress.total_number_of_resources_imported = progress
                .total_number_of_resources_imported
                .saturating_sub(progress.total_number_of_resources_with_customer_error)
                .max(0);
            if files >= total {
                progress.throughput = 0.0;
                let clean = progress.total_number_of_files_read_with_customer_error == 0
                    && progress.total_number_of_resources_with_customer_error == 0;
                let (status, message) = if clean {
                    ("COMPLETED", None)
                } else if rng.f64() < 0.85 {
                    (
                        "COMPLETED_WITH_ERRORS",
                        Some("Import completed: some resources failed validation"),
                    )
                } else {
                    (
                        "FAILED",
                        Some("Import failed: internal error during import"),
                    )
                };
                next.status = status.into();
                next.message = message.map(Into::into);
                next.end_time = Some(now.max(job.submit_time));
            }
            next.progress = Some(progress);
        }
        _ => {}
    }
    next
}

/// The job's next state, or `None` if it stays put this tick: submitted jobs queue, the queued
/// one `may_start` starts, running ones end now and then.
fn advance(job: &FakeJob, rng: &mut fastrand::Rng, now: f64, may_start: bool) -> Option<FakeJob> {
    let mut next = job.clone();
    match job.status.as_str() {
        "SUBMITTED" if rng.f64() < 0.7 => next.status = "QUEUED".into(),
        "QUEUED" if may_start && rng.f64() < 0.5 => next.status = "IN_PROGRESS".into(),
        "IN_PROGRESS" if rng.f64() < 0.3 => {
            let roll = rng.f64();
            let (status, message) = if roll < 0.7 {
                ("COMPLETED", None)
            } else if roll < 0.85 {
                (
                    "COMPLETED_WITH_ERRORS",
                    Some("Export completed: some resources could not be exported"),
                )
            } else {
                (
                    "FAILED",
                    Some("Export failed: internal error during export"),
                )
            };
            next.status = status.into();
            next.message = message.map(Into::into);
            next.end_time = Some(now.max(job.submit_time));
        }
        _ => return None,
    }
    Some(next)
}

/// 32 lowercase hex characters derived from `seed`.
fn hex_id(seed: u64) -> String {
    let second = fnv1a(&seed.to_le_bytes());
    format!("{seed:016x}{second:016x}")
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hex32(s: &str) -> bool {
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn seed_has_realistic_history() {
        let fake = FakeHealthLake::new();
        let now = 1_705_314_600.0;
        let seeded = seed_demo(&fake, now);
        assert_eq!(seeded.len(), 3);
        let mut statuses = Vec::new();
        for DemoDatastore { id, name, .. } in seeded {
            assert!(is_hex32(id), "{id}");
            assert!(!name.is_empty());
            for job in fake.jobs(id) {
                assert!(is_hex32(&job.id), "{}", job.id);
                assert!(job.submit_time < now);
                let terminal = !ACTIVE.contains(&job.status.as_str());
                assert_eq!(terminal, job.end_time.is_some(), "{job:?}");
                statuses.push(job.status);
            }
        }
        for wanted in [
            "COMPLETED",
            "COMPLETED_WITH_ERRORS",
            "FAILED",
            "IN_PROGRESS",
            "QUEUED",
        ] {
            assert!(statuses.iter().any(|s| s == wanted), "missing {wanted}");
        }
        let mut import_statuses = Vec::new();
        for DemoDatastore { id, name, region } in seeded {
            let ds = fake.datastore(id).expect("seeded datastore");
            assert_eq!(&ds.name, name);
            assert_eq!(ds.region.as_deref(), Some(*region));
            assert_eq!(ds.status, "ACTIVE");
            assert!(ds.created_at < now);
            for job in fake.import_jobs(id) {
                assert!(is_hex32(&job.id), "{}", job.id);
                let terminal = !ACTIVE.contains(&job.status.as_str());
                assert_eq!(terminal, job.end_time.is_some(), "{job:?}");
                assert!(job.progress.is_some(), "{job:?}");
                import_statuses.push(job.status);
            }
        }
        for wanted in [
            "COMPLETED",
            "COMPLETED_WITH_ERRORS",
            "FAILED",
            "IN_PROGRESS",
        ] {
            assert!(
                import_statuses.iter().any(|s| s == wanted),
                "missing import {wanted}"
            );
        }
    }

    #[test]
    fn imports_progress_monotonically_and_datastore_flaps() {
        let fake = FakeHealthLake::new();
        let start = 1_705_314_600.0;
        seed_demo(&fake, start);
        let mut rng = fastrand::Rng::with_seed(11);
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        let (mut grew, mut finished_new, mut statuses) = (false, false, Vec::new());
        for step in 0..600 {
            demo_step(&fake, &mut rng, start + f64::from(step) * 10.0);
            for DemoDatastore { id, .. } in DEMO_DATASTORES {
                for job in fake.import_jobs(id) {
                    let terminal = !ACTIVE.contains(&job.status.as_str());
                    assert_eq!(terminal, job.end_time.is_some(), "{job:?}");
                    let p = job.progress.clone().unwrap_or_default();
                    assert!(p.total_number_of_resources_imported >= 0);
                    assert!(p.total_number_of_imported_files <= p.total_number_of_scanned_files);
                    let scanned = p.total_number_of_scanned_files;
                    if let Some(before) = last.insert(job.id.clone(), scanned) {
                        assert!(scanned >= before, "{job:?}");
                        grew |= scanned > before;
                    }
                    finished_new |= terminal && job.submit_time >= start;
                }
                assert!(fake.import_jobs(id).len() <= MAX_JOBS_PER_DATASTORE + 3);
            }
            let status = fake.datastore(FLAPPING_DATASTORE).unwrap().status;
            if statuses.last() != Some(&status) {
                statuses.push(status);
            }
        }
        assert!(grew, "running imports make progress");
        assert!(finished_new, "new imports finish");
        assert!(
            statuses.starts_with(&["ACTIVE".into(), "UPDATING".into(), "ACTIVE".into()]),
            "{statuses:?}"
        );
        for DemoDatastore { id, .. } in &DEMO_DATASTORES[..1] {
            assert_eq!(fake.datastore(id).unwrap().status, "ACTIVE", "others stay");
        }
    }

    #[test]
    fn demo_step_survives_extreme_progress() {
        let fake = FakeHealthLake::new();
        let mut progress = progress_for(0, 0, 0.0);
        progress.total_number_of_scanned_files = i64::MAX;
        progress.total_number_of_files_read_with_customer_error = i64::MAX;
        progress.total_number_of_resources_with_customer_error = i64::MAX;
        fake.add_import_job(
            "x",
            FakeImportJob::new("j", "IN_PROGRESS", f64::NAN).with_progress(progress),
        );
        fake.add_import_job("x", FakeImportJob::new("k", "IN_PROGRESS", -1.0));
        let mut rng = fastrand::Rng::with_seed(1);
        for step in 0..50 {
            demo_step(&fake, &mut rng, f64::from(step));
        }
        let jobs = fake.import_jobs("x");
        // "j" had scanned everything, with errors: it ended at the first step, its end time the
        // step's clock (not its NaN submit time), its counters capped or saturated, never wrapped.
        let j = jobs.iter().find(|job| job.id == "j").expect("j kept");
        assert!(
            ["COMPLETED_WITH_ERRORS", "FAILED"].contains(&j.status.as_str()),
            "{j:?}"
        );
        assert_eq!(j.end_time, Some(0.0), "{j:?}");
        let p = j.progress.clone().expect("progress");
        assert_eq!(p.total_number_of_scanned_files, import_size("j"));
        assert_eq!(p.total_number_of_resources_with_customer_error, i64::MAX);
        assert_eq!(p.total_number_of_resources_imported, 0);
        // "k" (no progress report, submitted before the epoch) went on like any other job.
        for job in &jobs {
            let p = job.progress.clone().unwrap_or_default();
            assert!(p.total_number_of_scanned_files >= 0, "{job:?}");
            assert!(
                p.total_number_of_imported_files <= p.total_number_of_scanned_files,
                "{job:?}"
            );
            if let Some(end) = job.end_time {
                assert!(end.is_finite() && end >= 0.0, "{job:?}");
            }
        }
    }

    #[test]
    fn script_moves_jobs_to_terminal_states_and_submits_new_ones() {
        let fake = FakeHealthLake::new();
        let start = 1_705_314_600.0;
        seed_demo(&fake, start);
        let before: usize = DEMO_DATASTORES
            .iter()
            .map(|ds| fake.jobs(ds.id).len())
            .sum();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen_failed_new = false;
        for step in 0..500 {
            demo_step(&fake, &mut rng, start + f64::from(step) * 10.0);
            for DemoDatastore { id, .. } in DEMO_DATASTORES {
                for job in fake.jobs(id) {
                    let terminal = !ACTIVE.contains(&job.status.as_str());
                    assert_eq!(terminal, job.end_time.is_some(), "{job:?}");
                    if job.status == "FAILED" && job.submit_time >= start {
                        seen_failed_new = true;
                    }
                }
                assert!(fake.jobs(id).len() <= MAX_JOBS_PER_DATASTORE + 3);
            }
        }
        let after: usize = DEMO_DATASTORES
            .iter()
            .map(|ds| fake.jobs(ds.id).len())
            .sum();
        assert!(after > before, "new jobs were submitted");
        assert!(seen_failed_new, "some new jobs fail");
    }

    #[test]
    fn seed_ends_with_an_export_that_failed_minutes_ago() {
        let fake = FakeHealthLake::new();
        let now = 1_705_314_600.0;
        let first = seed_demo(&fake, now)[0];
        let within_an_hour: Vec<FakeJob> = DEMO_DATASTORES
            .iter()
            .flat_map(|ds| fake.jobs(ds.id))
            .filter(|j| j.status == "FAILED" && j.end_time.is_some_and(|e| e > now - HOUR))
            .collect();
        assert_eq!(within_an_hour.len(), 1, "{within_an_hour:?}");
        let recent = &within_an_hour[0];
        assert_eq!(recent.name.as_deref(), Some(RECENT_FAILURE_NAME));
        assert_eq!(recent.end_time, Some(now - RECENT_FAILURE_AGE));
        assert!(fake.jobs(first.id).contains(recent), "on {}", first.name);
        let message = recent.message.as_deref().unwrap_or_default();
        assert_eq!(
            message,
            format!(
                "Export failed: arn:aws:iam::123456789012:role/HealthLakeExportRole is not \
                 authorized to perform s3:PutObject on \
                 s3://healthlake-export-123456789012/{}/{}/",
                first.id, recent.id
            )
        );
    }

    /// HealthLake's `Message`: 1 to 2,048 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-%@]`.
    fn is_model_message(text: &str) -> bool {
        let allowed = |c: char| {
            c.is_alphanumeric()
                || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '%' | '@')
                || (c.is_whitespace() && !c.is_control())
        };
        (1..=2048).contains(&text.chars().count()) && text.chars().all(allowed)
    }

    /// In each region and job kind, as HealthLake runs them: in submission order (then id), the
    /// jobs that ended come first, each after it was submitted and none before the one ahead of
    /// it; then the others, of which only the first may be running. Active jobs carry no message
    /// and every message is one HealthLake could send.
    fn assert_one_at_a_time_per_region(fake: &FakeHealthLake, when: &str) {
        for region in by_region(fake) {
            let exports = region.iter().flat_map(|ds| fake.jobs(ds));
            assert_fifo(exports.collect(), when);
            let imports = region.iter().flat_map(|ds| fake.import_jobs(ds));
            assert_fifo(imports.collect(), when);
        }
    }

    fn assert_fifo<J: Job + std::fmt::Debug>(mut jobs: Vec<J>, when: &str) {
        jobs.sort_by(|a, b| {
            a.submit_time()
                .total_cmp(&b.submit_time())
                .then_with(|| a.id().cmp(b.id()))
        });
        let waiting = jobs.iter().position(|j| ACTIVE.contains(&j.status()));
        let (ended, active) = jobs.split_at(waiting.unwrap_or(jobs.len()));
        let mut last_end = f64::NEG_INFINITY;
        for job in ended {
            let end = job.end_time().expect("an ended job has an end time");
            assert!(
                end >= job.submit_time() && end >= last_end,
                "{when}: {job:?} ended before the job ahead of it (at {last_end})"
            );
            last_end = end;
        }
        for (n, job) in active.iter().enumerate() {
            assert!(
                ACTIVE.contains(&job.status()),
                "{when}: {job:?} ended out of turn"
            );
            assert!(
                n == 0 || job.status() != "IN_PROGRESS",
                "{when}: {job:?} runs while {:?} waits or runs",
                active[0]
            );
        }
    }

    #[test]
    fn jobs_run_one_at_a_time_per_region_in_submission_order() {
        let fake = FakeHealthLake::new();
        let start = 1_705_314_600.0;
        seed_demo(&fake, start);
        assert_one_at_a_time_per_region(&fake, "seeded");
        let mut rng = fastrand::Rng::with_seed(5);
        let mut both_in_east_ran = (false, false);
        for step in 0..600 {
            let now = start + f64::from(step) * 5.0;
            demo_step(&fake, &mut rng, now);
            assert_one_at_a_time_per_region(&fake, &format!("step {step}"));
            let ran = |ds: &DemoDatastore| {
                fake.jobs(ds.id)
                    .iter()
                    .any(|j| j.submit_time > start && j.end_time.is_some())
            };
            both_in_east_ran = (ran(&DEMO_DATASTORES[0]), ran(&DEMO_DATASTORES[1]));
        }
        assert_eq!(both_in_east_ran, (true, true), "the queue moves for both");
        for ds in DEMO_DATASTORES {
            let messages = fake.jobs(ds.id).into_iter().map(|j| (j.status, j.message));
            let import_messages = fake
                .import_jobs(ds.id)
                .into_iter()
                .map(|j| (j.status, j.message));
            for (status, message) in messages.chain(import_messages) {
                let Some(message) = message else { continue };
                assert!(is_model_message(&message), "{message:?}");
                assert!(!ACTIVE.contains(&status.as_str()), "{status}: {message}");
            }
        }
    }

    /// Every job of the demo datastores, for telling whether the script took a step.
    fn snapshot(fake: &FakeHealthLake) -> Vec<(Vec<FakeJob>, Vec<FakeImportJob>)> {
        DEMO_DATASTORES
            .iter()
            .map(|ds| (fake.jobs(ds.id), fake.import_jobs(ds.id)))
            .collect()
    }

    // Paused time: the script's ticks pass as fast as it can take them, the same on any machine.
    #[tokio::test(start_paused = true)]
    async fn run_demo_script_survives_zero_and_huge_ticks() {
        let fake = FakeHealthLake::new();
        seed_demo(&fake, 0.0);
        let seeded = snapshot(&fake);
        // A zero tick is raised to MIN_TICK: a second is 100 steps, and the script goes on.
        let task = tokio::spawn(run_demo_script(fake.clone(), Duration::ZERO));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!task.is_finished());
        assert_ne!(snapshot(&fake), seeded, "the script took steps");
        task.abort();
        // A tick past what an Instant holds: no overflow panic, and no step within a day.
        let stepped = snapshot(&fake);
        let huge = tokio::spawn(run_demo_script(fake.clone(), Duration::MAX));
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(!huge.is_finished(), "no overflow panic");
        assert_eq!(snapshot(&fake), stepped);
        huge.abort();
    }
}
