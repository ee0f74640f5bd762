//! `[[discovery]]`: datastores found with `ListFHIRDatastores` instead of listed in the file.
//!
//! One task per entry lists the datastores now, then every `interval` (backing off while it fails),
//! and hands each result to the supervisor, which owns the configuration and decides what is
//! polled. [`datastores_to_poll`] says which datastores found an entry adds.
//!
//! What a listing says is bounded before it goes further: names (and every other string) like job
//! labels (`aws::list_datastores`), and a datastore whose id is not a HealthLake datastore id is
//! dropped here, logged once per change ([`without_invalid_ids`]), never polled nor exported.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::backoff::backoff;
use super::within;
use crate::aws::{list_datastores, Clients};
use crate::config::{Config, DatastoreConfig, DiscoveryConfig};
use crate::model::{check_datastore_id, DatastoreInfo, JobKinds, PollError};

/// One listing of entry `index`, made under configuration `generation`.
#[derive(Debug)]
pub struct Discovered {
    pub generation: u64,
    pub index: usize,
    pub result: Result<Vec<DatastoreInfo>, PollError>,
    pub poll_seconds: f64,
}

/// Datastore events make discovery list again, but never more often than this.
const MIN_REDISCOVER_GAP: Duration = Duration::from_secs(5);

/// Starts one listing task per `[[discovery]]` entry of `config`, each sending its results on
/// `results` until the receiver is gone. Dropping or aborting the returned set stops them. A
/// change of `rediscover` (a datastore event, with `[events]`) makes every entry list at once.
pub fn spawn<C>(
    config: &Config,
    clients: &Clients,
    generation: u64,
    results: mpsc::Sender<C>,
    rediscover: Option<&watch::Sender<u64>>,
) -> JoinSet<()>
where
    C: From<Discovered> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for (index, entry) in config.discovery.iter().enumerate() {
        let Some(client) = clients.for_target(&entry.target).cloned() else {
            continue;
        };
        let results = results.clone();
        let entry = entry.clone();
        let timeout = config.polling.timeout;
        let max_pages = config.polling.max_pages;
        let mut rediscover = rediscover.map(watch::Sender::subscribe);
        tasks.spawn(async move {
            let mut failures = 0u32;
            let mut invalid_ids = Vec::new();
            loop {
                let started = Instant::now();
                let result = within(
                    timeout,
                    "ListFHIRDatastores",
                    list_datastores(&client, entry.name_prefix.as_deref(), max_pages),
                )
                .await;
                let result = result.map(|found| without_invalid_ids(found, index, &mut invalid_ids));
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
                let sleep = tokio::time::sleep_until((started + wait).into());
                match rediscover.as_mut() {
                    Some(kick) => {
                        kick.mark_unchanged();
                        tokio::select! {
                            () = sleep => {}
                            _ = kick.changed() => {
                                tokio::time::sleep_until((started + MIN_REDISCOVER_GAP).into()).await;
                            }
                        }
                    }
                    None => sleep.await,
                }
            }
        });
    }
    tasks
}

/// `found` without the datastores whose id is not a HealthLake datastore id (a broken or hostile
/// endpoint may list anything): they are never polled nor exported. They are logged (how many,
/// the first id and why) when they differ from `logged`, the ids skipped by the entry's last
/// listing, which this updates; ids are bounded already, and the log escapes them.
fn without_invalid_ids(
    found: Vec<DatastoreInfo>,
    index: usize,
    logged: &mut Vec<String>,
) -> Vec<DatastoreInfo> {
    let mut valid = Vec::with_capacity(found.len());
    let mut invalid = Vec::new();
    for info in found {
        match check_datastore_id(&info.id) {
            Ok(()) => valid.push(info),
            Err(why) => invalid.push((info.id, why)),
        }
    }
    if !invalid.iter().map(|(id, _)| id).eq(logged.iter()) {
        if let Some((first, why)) = invalid.first() {
            tracing::warn!(
                discovery = index,
                skipped = invalid.len(),
                datastore_id = %first,
                reason = %why,
                "ListFHIRDatastores listed datastores whose id is not a HealthLake datastore id: they are not polled"
            );
        }
        *logged = invalid.into_iter().map(|(id, _)| id).collect();
    }
    valid
}

/// The datastores `entry` makes the exporter poll, from what its listing `found`: those in the
/// entry's status (ACTIVE by default), and those it already polls (`known`) whatever their status
/// until they are deleted or gone, so an UPDATING datastore keeps its series. Each polls `jobs`.
pub(crate) fn datastores_to_poll(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> DatastoreInfo {
        DatastoreInfo {
            id: id.to_owned(),
            name: None,
            status: "ACTIVE".to_owned(),
            arn: String::new(),
            fhir_version: "R4".to_owned(),
        }
    }

    #[test]
    fn datastores_with_invalid_ids_are_dropped_and_remembered_until_they_change() {
        let long = "a".repeat(33);
        let found = || vec![info("d-ok"), info("ds#1"), info(&long), info("0123")];
        let mut logged = Vec::new();
        let kept = without_invalid_ids(found(), 0, &mut logged);
        let kept: Vec<&str> = kept.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(kept, ["d-ok", "0123"]);
        assert_eq!(logged, ["ds#1", long.as_str()]);
        assert_eq!(without_invalid_ids(found(), 0, &mut logged).len(), 2);
        assert_eq!(logged, ["ds#1", long.as_str()]);
        assert_eq!(
            without_invalid_ids(vec![info("d-ok")], 0, &mut logged).len(),
            1
        );
        assert!(logged.is_empty());
    }
}
