//! `[[discovery]]`: datastores found with `ListFHIRDatastores` instead of listed in the file.
//!
//! One task per entry lists the datastores now, then every `interval` (backing off while it fails),
//! and hands each result to the supervisor, which owns the configuration and decides what is
//! polled. [`datastores_to_poll`] says which datastores found an entry adds.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::backoff::backoff;
use crate::aws::{list_datastores, Clients};
use crate::config::{Config, DatastoreConfig, DiscoveryConfig};
use crate::model::{DatastoreInfo, ErrorReason, JobKinds, PollError};

/// One listing of entry `index`, made under configuration `generation`.
#[derive(Debug)]
pub struct Discovered {
    pub generation: u64,
    pub index: usize,
    pub result: Result<Vec<DatastoreInfo>, PollError>,
    pub poll_seconds: f64,
}

/// Starts one listing task per `[[discovery]]` entry of `config`, each sending its results on
/// `results` until the receiver is gone. Dropping or aborting the returned set stops them.
pub fn spawn<C>(
    config: &Config,
    clients: &Clients,
    generation: u64,
    results: mpsc::Sender<C>,
) -> JoinSet<()>
where
    C: From<Discovered> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for (index, entry) in config.discovery.iter().enumerate() {
        let Some(target) = clients.for_target(&entry.target).cloned() else {
            continue;
        };
        let results = results.clone();
        let entry = entry.clone();
        let timeout = config.polling.timeout;
        let max_pages = config.polling.max_pages;
        tasks.spawn(async move {
            let mut failures = 0u32;
            loop {
                let started = Instant::now();
                let result = tokio::time::timeout(
                    timeout,
                    list_datastores(&target, entry.name_prefix.as_deref(), max_pages),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(PollError::new(
                        ErrorReason::Timeout,
                        "ListFHIRDatastores took longer than polling.timeout",
                    ))
                });
                failures = if result.is_ok() { 0 } else { failures + 1 };
                let message = Discovered {
                    generation,
                    index,
                    result,
                    poll_seconds: started.elapsed().as_secs_f64(),
                };
                if results.send(message.into()).await.is_err() {
                    return;
                }
                let wait = backoff(entry.interval, failures);
                tokio::time::sleep_until((started + wait).into()).await;
            }
        });
    }
    tasks
}

/// The datastores `entry` makes the exporter poll, from what its listing `found`: those in the
/// entry's status (ACTIVE by default), and those it already polls (`known`) whatever their status
/// until they are deleted or gone, so an UPDATING datastore keeps its series. Each polls `jobs`.
pub fn datastores_to_poll(
    entry: &DiscoveryConfig,
    known: &[DatastoreConfig],
    found: Vec<DatastoreInfo>,
    jobs: JobKinds,
) -> Vec<DatastoreConfig> {
    found
        .into_iter()
        .filter(|info| {
            info.status == entry.status
                || (known.iter().any(|d| d.id == info.id)
                    && !matches!(info.status.as_str(), "DELETING" | "DELETED"))
        })
        .map(|info| DatastoreConfig {
            name: info.name.unwrap_or_else(|| info.id.clone()),
            id: info.id,
            target: entry.target.clone(),
            jobs,
        })
        .collect()
}
