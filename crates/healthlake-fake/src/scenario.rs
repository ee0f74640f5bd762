//! Scripted history and live activity for `--demo` mode, so the exporter can be shown (and
//! eyeballed) without AWS: three named datastores with a realistic export and import history,
//! then a loop that moves jobs through their lifecycle (import progress counters grow tick by
//! tick), submits new ones, and now and then takes one datastore through ACTIVE → UPDATING →
//! ACTIVE so the datastore-health metrics and alert have something to show.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::store::fnv1a;
use super::{FakeDatastore, FakeHealthLake, FakeImportJob, FakeJob, FakeProgress};

/// Demo datastores: 32-lowercase-hex ids like real ones, with display names.
pub const DEMO_DATASTORES: [(&str, &str); 3] = [
    ("7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e", "patient-records-prod"),
    ("c4e8a2f6b0d4c8e2a6f0b4d8c2e6a0f4", "claims-analytics"),
    ("19b5d3f7e1a9c5b3d7f1e9a5c3b7d1f9", "research-sandbox"),
];

/// Jobs still moving through the pipeline.
const ACTIVE: [&str; 3] = ["SUBMITTED", "QUEUED", "IN_PROGRESS"];

/// Past jobs kept per datastore while the demo runs; older finished jobs are dropped.
const MAX_JOBS_PER_DATASTORE: usize = 200;

/// The demo datastore that goes ACTIVE → UPDATING → ACTIVE now and then ("claims-analytics").
const FLAPPING_DATASTORE: &str = DEMO_DATASTORES[1].0;

/// Per tick: chance that the flapping datastore starts an update, and that an update finishes.
const UPDATE_START_CHANCE: f64 = 0.04;
const UPDATE_FINISH_CHANCE: f64 = 0.3;

/// Average size of one demo import input file, and resources per file.
const MB_PER_FILE: f64 = 2.5;
const RESOURCES_PER_FILE: i64 = 240;

/// Smallest tick accepted by [`run_demo_script`] (a zero interval would spin).
const MIN_TICK: Duration = Duration::from_millis(10);

/// Seeds three datastores for `--demo` with a realistic history (completed,
/// completed-with-errors, a failed one, one in progress) and returns `(id, name)` pairs.
pub fn seed_demo(fake: &FakeHealthLake, now: f64) -> Vec<(String, String)> {
    const HOUR: f64 = 3600.0;
    const DAY: f64 = 24.0 * HOUR;
    for (n, (id, name)) in DEMO_DATASTORES.iter().enumerate() {
        let created = now - (400.0 - 90.0 * n as f64) * DAY;
        fake.set_datastore(id, FakeDatastore::new(*name).created(created));
        seed_imports(fake, id, n, now);
        let job_id = |k: u64| hex_id(fnv1a(id.as_bytes()) ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // A week of nightly exports, mostly fine; durations differ per datastore.
        for day in 1..=7u64 {
            let submit = now - day as f64 * DAY + 0.25 * n as f64;
            let duration = 900.0 + 300.0 * n as f64 + 37.5 * day as f64;
            let mut job = FakeJob::new(job_id(day), "COMPLETED", submit)
                .named(format!("nightly-export-d{day}"))
                .ended(submit + duration);
            if (day + n as u64).is_multiple_of(5) {
                job.status = "COMPLETED_WITH_ERRORS".to_owned();
                job.message = Some("Export completed: 12 resources could not be exported".into());
            }
            fake.add_job(id, job);
        }
        match n {
            0 => {
                fake.add_job(
                    id,
                    FakeJob::new(job_id(100), "FAILED", now - 3.0 * HOUR)
                        .named("adhoc-export")
                        .ended(now - 3.0 * HOUR + 42.5)
                        .with_message("Export failed: access denied to the output S3 bucket"),
                );
                fake.add_job(
                    id,
                    FakeJob::new(job_id(101), "IN_PROGRESS", now - 600.0).named("hourly-export"),
                );
            }
            1 => {
                fake.add_job(
                    id,
                    FakeJob::new(job_id(100), "COMPLETED_WITH_ERRORS", now - 5.0 * HOUR)
                        .named("claims-backfill")
                        .ended(now - 4.0 * HOUR)
                        .with_message("Export completed: 3 resources failed validation"),
                );
                fake.add_job(
                    id,
                    FakeJob::new(job_id(101), "QUEUED", now - 120.0).named("claims-delta"),
                );
            }
            _ => {
                fake.add_job(
                    id,
                    FakeJob::new(job_id(100), "FAILED", now - 26.0 * HOUR)
                        .ended(now - 26.0 * HOUR + 7.0)
                        .with_message("Export failed: KMS key is disabled"),
                );
            }
        }
    }
    DEMO_DATASTORES
        .iter()
        .map(|(id, name)| ((*id).to_owned(), (*name).to_owned()))
        .collect()
}

/// Import history of one demo datastore: finished bulk loads with their final progress report,
/// one failed load, and (on the first datastore) one import still running.
fn seed_imports(fake: &FakeHealthLake, id: &str, n: usize, now: f64) {
    const DAY: f64 = 24.0 * 3600.0;
    let job_id = |k: u64| hex_id(fnv1a(id.as_bytes()) ^ k.wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    for week in 1..=3u64 {
        let submit = now - (7 * week) as f64 * DAY + 1.5 * n as f64;
        let job = FakeImportJob::new(job_id(week), "COMPLETED", submit)
            .named(format!("weekly-load-w{week}"))
            .ended(submit + 2400.0 + 600.0 * n as f64)
            .with_validation_level("strict")
            .with_progress(progress_for(
                100 + 20 * week as i64 + 10 * n as i64,
                0,
                310.0,
            ));
        fake.add_import_job(id, job);
    }
    let failed = now - 2.0 * DAY;
    let mut job = FakeImportJob::new(job_id(100), "FAILED", failed)
        .named("partner-feed")
        .ended(failed + 95.0)
        .with_message("Import failed: 3 files are not valid FHIR ndjson")
        .with_progress(progress_for(3, 3, 0.0));
    if n == 1 {
        job.status = "COMPLETED_WITH_ERRORS".to_owned();
        job.message = Some("Import completed: 412 resources failed validation".into());
        job.progress = Some(progress_for(40, 0, 280.0));
        if let Some(p) = job.progress.as_mut() {
            p.total_number_of_resources_with_customer_error = 412;
            p.total_number_of_resources_imported =
                p.total_number_of_resources_imported.saturating_sub(412);
        }
    }
    fake.add_import_job(id, job);
    if n == 0 {
        let running = FakeImportJob::new(job_id(101), "IN_PROGRESS", now - 900.0)
            .named("daily-load")
            .with_validation_level("strict")
            .with_progress(progress_for(12, 0, 295.0));
        fake.add_import_job(id, running);
    }
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
    for datastore in fake.datastore_ids() {
        let jobs = fake.jobs(&datastore);
        let mut active = 0;
        for job in &jobs {
            if !ACTIVE.contains(&job.status.as_str()) {
                continue;
            }
            active += 1;
            if let Some(next) = advance(job, rng, now) {
                if !ACTIVE.contains(&next.status.as_str()) {
                    active -= 1;
                }
                fake.add_job(&datastore, next);
            }
        }
        if active < 2 && rng.f64() < 0.35 {
            let job = FakeJob::new(hex_id(rng.u64(..)), "SUBMITTED", now)
                .named(format!("export-{}", now as u64));
            fake.add_job(&datastore, job);
        }
        let finished = jobs.len().saturating_sub(MAX_JOBS_PER_DATASTORE);
        for old in jobs
            .iter()
            .filter(|j| !ACTIVE.contains(&j.status.as_str()))
            .take(finished)
        {
            fake.remove_job(&datastore, &old.id);
        }
        import_step(fake, &datastore, rng, now);
    }
    flap_datastore(fake, rng);
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

/// One tick for the import jobs of one datastore.
fn import_step(fake: &FakeHealthLake, datastore: &str, rng: &mut fastrand::Rng, now: f64) {
    let jobs = fake.import_jobs(datastore);
    let mut active = 0;
    for job in &jobs {
        if !ACTIVE.contains(&job.status.as_str()) {
            continue;
        }
        let next = advance_import(job, rng, now);
        if ACTIVE.contains(&next.status.as_str()) {
            active += 1;
        }
        if next != *job {
            fake.add_import_job(datastore, next);
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

/// The import job after this tick: queued jobs start, running ones scan a few more files and
/// finish once all input is scanned.
fn advance_import(job: &FakeImportJob, rng: &mut fastrand::Rng, now: f64) -> FakeImportJob {
    let mut next = job.clone();
    match job.status.as_str() {
        "SUBMITTED" if rng.f64() < 0.7 => next.status = "QUEUED".into(),
        "QUEUED" if rng.f64() < 0.5 => {
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

/// The job's next state, or `None` if it stays put this tick.
fn advance(job: &FakeJob, rng: &mut fastrand::Rng, now: f64) -> Option<FakeJob> {
    let mut next = job.clone();
    match job.status.as_str() {
        "SUBMITTED" if rng.f64() < 0.7 => next.status = "QUEUED".into(),
        "QUEUED" if rng.f64() < 0.5 => next.status = "IN_PROGRESS".into(),
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
        for (id, name) in &seeded {
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
        ] {
            assert!(statuses.iter().any(|s| s == wanted), "missing {wanted}");
        }
        let mut import_statuses = Vec::new();
        for (id, name) in &seeded {
            let ds = fake.datastore(id).expect("seeded datastore");
            assert_eq!(&ds.name, name);
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
            for (id, _) in DEMO_DATASTORES {
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
        for (id, _) in &DEMO_DATASTORES[..1] {
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
            .map(|(id, _)| fake.jobs(id).len())
            .sum();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen_failed_new = false;
        for step in 0..500 {
            demo_step(&fake, &mut rng, start + f64::from(step) * 10.0);
            for (id, _) in DEMO_DATASTORES {
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
            .map(|(id, _)| fake.jobs(id).len())
            .sum();
        assert!(after > before, "new jobs were submitted");
        assert!(seen_failed_new, "some new jobs fail");
    }

    /// Every job of the demo datastores, for telling whether the script took a step.
    fn snapshot(fake: &FakeHealthLake) -> Vec<(Vec<FakeJob>, Vec<FakeImportJob>)> {
        DEMO_DATASTORES
            .iter()
            .map(|(id, _)| (fake.jobs(id), fake.import_jobs(id)))
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
