//! How an event becomes a refresh: the same incremental listing a scheduled poll does
//! (`poll::poll_jobs`), through the datastore's own client, request budget, timeout, guards and
//! State, so every metric keeps its meaning and the listing stays the only source of truth. A
//! refresh and a scheduled poll of the same feed wait for each other (the datastore's feed lock).
//! A refresh lists only what can still change (one listing per job kind); the old unfinished
//! jobs, which take a listing per status they are in, are followed on the polling schedule, and
//! by a refresh only when its event names one of them.
//!
//! The view of what this replica follows (configured, discovered, narrowed to its shard) is
//! replaced by the supervisor whenever that changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use super::consumer::{BoxFuture, Refresher};
use super::message::{HealthLakeEvent, Scope};
use crate::aws::Clients;
use crate::config::{Config, DatastoreConfig};
use crate::model::JobKind;
use crate::poll::{log_finished, poll_description, poll_jobs, PollFailure, PollSettings, Trigger};
use crate::state::{Datastore, State};

/// `follow_every` of a refresh that leaves the old unfinished jobs to the polling schedule.
const NEVER: u32 = u32::MAX;

/// What this replica follows, as of the last configuration change.
struct Followed {
    datastores: HashMap<String, (DatastoreConfig, Arc<Datastore>)>,
    clients: Arc<Clients>,
    settings: PollSettings,
    datastore_health: bool,
}

/// The exporter's [`Refresher`].
pub struct StateRefresher {
    view: RwLock<Arc<Followed>>,
    /// Refreshes running at once (`polling.concurrency`, on top of the scheduled polls: both
    /// still share each account's request budget).
    semaphore: Arc<Semaphore>,
    /// Bumped to make the discovery tasks list now; `None` without `[[discovery]]`.
    rediscover: Option<Arc<watch::Sender<u64>>>,
}

fn followed(config: &Config, clients: Arc<Clients>, state: &State) -> Followed {
    let list = state.datastores();
    let by_id: HashMap<&str, &Arc<Datastore>> = list.iter().map(|d| (d.id.as_str(), d)).collect();
    let datastores = config
        .datastores
        .iter()
        .filter_map(|ds| {
            let record = by_id.get(ds.id.as_str())?;
            Some((ds.id.clone(), (ds.clone(), Arc::clone(record))))
        })
        .collect();
    Followed {
        datastores,
        clients,
        settings: PollSettings::of(config),
        datastore_health: config.polling.datastore_health,
    }
}

impl StateRefresher {
    pub fn new(
        config: &Config,
        clients: Arc<Clients>,
        state: &State,
        rediscover: Option<Arc<watch::Sender<u64>>>,
    ) -> StateRefresher {
        StateRefresher {
            view: RwLock::new(Arc::new(followed(config, clients, state))),
            semaphore: Arc::new(Semaphore::new(config.polling.concurrency)),
            rediscover,
        }
    }

    /// Follows what `config` (already applied to `state`) says from now on.
    pub fn update(&self, config: &Config, clients: Arc<Clients>, state: &State) {
        let next = Arc::new(followed(config, clients, state));
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    fn view(&self) -> Arc<Followed> {
        Arc::clone(&self.view.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Refresher for StateRefresher {
    fn follows(&self, datastore_id: &str) -> bool {
        self.view().datastores.contains_key(datastore_id)
    }

    fn names_old_job(&self, datastore_id: &str, scope: Scope, event: &HealthLakeEvent) -> bool {
        let view = self.view();
        let Some((_, datastore)) = view.datastores.get(datastore_id) else {
            return false;
        };
        let record = datastore.record();
        [
            (JobKind::Export, scope.exports),
            (JobKind::Import, scope.imports),
        ]
        .into_iter()
        .filter(|(_, wanted)| *wanted)
        .filter_map(|(kind, _)| record.track(kind))
        .any(|track| event.names(|word| track.is_straggler(word)))
    }

    fn spacing(&self) -> Duration {
        self.view().settings.timeout
    }

    fn refresh(&self, datastore_id: String, scope: Scope) -> BoxFuture<'static, ()> {
        let view = self.view();
        let semaphore = Arc::clone(&self.semaphore);
        Box::pin(async move {
            let Some((config, datastore)) = view.datastores.get(&datastore_id) else {
                return;
            };
            let Some(client) = view.clients.for_target(&config.target) else {
                return;
            };
            let Ok(_permit) = semaphore.acquire().await else {
                return;
            };
            // An event about an old unfinished job (one stuck for weeks that finally fails)
            // follows those jobs now, so its change shows within seconds, not at the next
            // scheduled follow-up (every `FOLLOW_EVERY` polls); any other event leaves them be.
            let settings = PollSettings {
                follow_every: if scope.old_jobs { 1 } else { NEVER },
                ..view.settings.clone()
            };
            let kinds = [
                (JobKind::Export, scope.exports && config.jobs.export),
                (JobKind::Import, scope.imports && config.jobs.import),
            ];
            for (kind, wanted) in kinds {
                if !wanted {
                    continue;
                }
                match poll_jobs(client, datastore, kind, &settings).await {
                    Ok(outcome) => log_finished(
                        datastore,
                        kind,
                        &outcome,
                        Trigger::Event,
                        settings.job_name_label,
                    ),
                    Err(PollFailure { error, .. }) => {
                        tracing::debug!(datastore_id = %config.id, operation = kind.operation(), reason = %error.reason, error = %error.message, "refresh after an event failed; the next poll retries");
                    }
                }
            }
            if scope.datastore && view.datastore_health {
                if let Err(PollFailure { error, .. }) =
                    poll_description(client, datastore, &view.settings).await
                {
                    tracing::debug!(datastore_id = %config.id, operation = "DescribeFHIRDatastore", reason = %error.reason, error = %error.message, "refresh after an event failed; the next poll retries");
                }
            }
        })
    }

    fn rediscover(&self) -> bool {
        match &self.rediscover {
            Some(kick) => {
                kick.send_modify(|n| *n = n.wrapping_add(1));
                true
            }
            None => false,
        }
    }
}
