//! Scripted history and live activity for `--demo` mode, so the exporter can be shown (and
//! eyeballed) without AWS: three datastores with a realistic job history, then a loop that moves
//! jobs through their lifecycle and submits new ones.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::store::fnv1a;
use super::{FakeHealthLake, FakeJob};

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

/// Smallest tick accepted by [`run_demo_script`] (a zero interval would spin).
const MIN_TICK: Duration = Duration::from_millis(10);

/// Seeds three datastores for `--demo` with a realistic history (completed,
/// completed-with-errors, a failed one, one in progress) and returns `(id, name)` pairs.
pub fn seed_demo(fake: &FakeHealthLake, now: f64) -> Vec<(String, String)> {
    const HOUR: f64 = 3600.0;
    const DAY: f64 = 24.0 * HOUR;
    for (n, (id, _name)) in DEMO_DATASTORES.iter().enumerate() {
        fake.add_datastore(id);
        let job_id = |k: u64| hex_id(fnv1a(id.as_bytes()) ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // A week of nightly exports, mostly fine; durations differ per datastore.
        for day in 1..=7u64 {
            let submit = now - day as f64 * DAY + 0.25 * n as f64;
            let duration = 900.0 + 300.0 * n as f64 + 37.5 * day as f64;
            let mut job = FakeJob::new(job_id(day), "COMPLETED", submit)
                .named(format!("nightly-export-d{day}"))
                .ended(submit + duration);
            if (day + n as u64) % 5 == 0 {
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

/// Forever: every `tick`, advances jobs SUBMITTED→QUEUED→IN_PROGRESS→COMPLETED /
/// COMPLETED_WITH_ERRORS / FAILED (setting EndTime when terminal) and now and then submits a new
/// job, so a user watching `/metrics` sees changes. Works on whatever datastores the fake has.
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
    }
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

    #[tokio::test]
    async fn run_demo_script_survives_zero_tick() {
        let fake = FakeHealthLake::new();
        seed_demo(&fake, 0.0);
        let task = tokio::spawn(run_demo_script(fake.clone(), Duration::ZERO));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished());
        task.abort();
        let huge = tokio::spawn(run_demo_script(fake, Duration::MAX));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!huge.is_finished(), "no overflow panic");
        huge.abort();
    }
}
