//! Request pacing per AWS account and region: HealthLake's quota is shared by every datastore of an
//! account and region, so their polls take turns instead of throttling each other.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest gap between two requests: that of the lowest rate validation accepts (0.01/s).
const MAX_SPACING: Duration = Duration::from_secs(100);

/// Paces the API requests of one account and region so that many datastores never throttle each
/// other: each request takes the next free slot, `1 / rate` seconds after the previous one.
#[derive(Debug)]
pub struct RequestBudget {
    spacing: Duration,
    next_slot: Mutex<Option<Instant>>,
}

impl RequestBudget {
    /// `rate` is validated (0.01 to 1000); any other value, NaN and infinities included, is
    /// clamped into that range's spacing instead of panicking.
    pub(crate) fn per_second(rate: f64) -> RequestBudget {
        RequestBudget {
            spacing: Duration::try_from_secs_f64(1.0 / rate)
                .map_or(MAX_SPACING, |spacing| spacing.min(MAX_SPACING)),
            next_slot: Mutex::new(None),
        }
    }

    /// Waits for this request's slot.
    pub(crate) async fn acquire(&self) {
        let slot = {
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.spacing);
            slot
        };
        let wait = slot.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            super::usage::api_usage().waited(wait);
        }
        tokio::time::sleep_until(slot.into()).await;
    }
}
