//! The supervisor task: the one owner of the configuration, the clients and the polling tasks.
//! Reloads and discovery listings arrive as [`Control`] requests and are applied one at a time,
//! so that two changes never race; a change that cannot be applied leaves the previous one
//! running.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::aws::{ClientError, ClientOptions, Clients};
use crate::config::{Config, ConfigFiles, DatastoreConfig};
use crate::model::{unix_now, DatastoreInfo, PollError};
use crate::poll::discovery;
use crate::poll::{PollerChanges, Pollers};
use crate::state::{Roster, State};
use crate::web::HttpContext;

use super::config_read::{load_off_thread, ConfigRead};
use super::events_runtime::EventsRuntime;
use super::{Control, Overrides, ReloadError};

/// Owns the configuration, the clients and the polling tasks; applies reloads and discovery
/// results one at a time.
pub(super) struct Supervisor {
    /// The configuration file as loaded (overrides applied, every datastore).
    pub(super) file: Config,
    /// Per `[[discovery]]` entry, the datastores its last successful listing found.
    pub(super) discovered: Vec<Vec<DatastoreConfig>>,
    /// Bumped by every reload, so that a listing made under an older configuration is ignored.
    pub(super) generation: u64,
    /// What is being polled: the file's datastores and the discovered ones, narrowed to the shard.
    pub(super) config: Config,
    /// The files reloads re-read (`None`: started from a `Config` built in code).
    pub(super) config_files: Option<ConfigFiles>,
    pub(super) overrides: Overrides,
    pub(super) options: ClientOptions,
    pub(super) clients: Arc<Clients>,
    pub(super) pollers: Pollers,
    pub(super) discoverers: tokio::task::JoinSet<()>,
    pub(super) control: mpsc::Sender<Control>,
    pub(super) state: Arc<State>,
    /// The event consumer, with `[events]` (restarted by a reload that changes the section).
    pub(super) events: Option<EventsRuntime>,
    /// The HTTP endpoint, whose `[server]` settings a reload applies.
    pub(super) web: Arc<HttpContext>,
    /// A read of the configuration file that timed out and has not ended yet: no other read
    /// starts until it does, so a hung filesystem cannot pile up blocked threads.
    pub(super) unfinished_read: Option<ConfigRead>,
}

impl Supervisor {
    pub(super) async fn run(mut self, mut requests: mpsc::Receiver<Control>) {
        while let Some(request) = requests.recv().await {
            match request {
                Control::Reload(reply) => {
                    let result = self.reload().await;
                    self.state
                        .reload_status()
                        .record(result.is_ok(), unix_now());
                    if let Err(error) = &result {
                        tracing::error!(%error, "configuration reload failed; the previous configuration keeps running");
                    }
                    let _ = reply.send(result);
                }
                Control::Discovered(d) if d.generation == self.generation => {
                    self.discovered(d.index, d.result, d.poll_seconds).await;
                }
                Control::Discovered(_) => {}
            }
        }
        self.discoverers.shutdown().await;
        self.pollers.shutdown().await;
        if let Some(events) = self.events.take() {
            events.stop().await;
        }
    }

    /// The configuration to poll: the file's datastores, then discovered ones the file does not
    /// list (a configured entry wins; among discoveries the first entry wins), narrowed to the shard.
    fn effective(&self) -> (Config, usize) {
        let mut config = self.file.clone();
        let mut known: std::collections::HashSet<String> =
            config.datastores.iter().map(|d| d.id.clone()).collect();
        for found in &self.discovered {
            for ds in found {
                if known.insert(ds.id.clone()) {
                    config.datastores.push(ds.clone());
                }
            }
        }
        let configured = config.retain_shard();
        (config, configured)
    }

    /// Switches the pollers and State to `config`, restarting only the polling tasks whose
    /// settings changed.
    async fn apply(&mut self, config: Config) -> Result<PollerChanges, ClientError> {
        let clients =
            Arc::new(Clients::rebuild(&config, &self.options, Some(&self.clients)).await?);
        let changes = self
            .pollers
            .update(&config, Arc::clone(&clients), &self.state)
            .await;
        if let Some(events) = &self.events {
            events
                .refresher
                .update(&config, Arc::clone(&clients), &self.state);
        }
        self.config = config;
        self.clients = clients;
        Ok(changes)
    }

    /// Reads the configuration file for a reload (off the async workers, one read at a time)
    /// and applies the command line's overrides.
    async fn read_file(&mut self) -> Result<Config, ReloadError> {
        let files = self.config_files.clone().ok_or(ReloadError::NoConfigFile)?;
        if self
            .unfinished_read
            .as_ref()
            .is_some_and(|read| !read.is_finished())
        {
            return Err(ReloadError::StillReading { path: files.config });
        }
        self.unfinished_read = None;
        match load_off_thread(&files, ConfigFiles::load_for_reload).await {
            Ok(mut file) => {
                self.overrides.apply(&mut file);
                Ok(file)
            }
            Err((error, unfinished)) => {
                self.unfinished_read = unfinished;
                Err(error.into())
            }
        }
    }

    /// What each `[[discovery]]` entry of `file` starts with: entries that did not change keep
    /// what they found until they list again, the others start empty.
    fn kept_discoveries(&self, file: &Config) -> Vec<Vec<DatastoreConfig>> {
        file.discovery
            .iter()
            .enumerate()
            .map(|(i, entry)| match self.file.discovery.get(i) {
                Some(old) if old == entry => self.discovered[i]
                    .iter()
                    .map(|ds| DatastoreConfig {
                        jobs: file.polling.jobs,
                        ..ds.clone()
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    async fn reload(&mut self) -> Result<(), ReloadError> {
        let file = self.read_file().await?;
        if file == self.file {
            // Nothing to do: pollers, clients and polls in flight stay as they are. The
            // certificate files are looked at (they may have rotated under the same paths).
            self.web.commit(self.web.prepare(&file.server)?);
            tracing::info!("configuration reloaded: the file has not changed, nothing to apply");
            return Ok(());
        }
        // `[server]` first: a change that needs a restart, or TLS files that cannot be used under
        // new paths, refuse the whole reload before anything else changes.
        let web = self.web.prepare(&file.server)?;
        // A changed `[events]` restarts the consumer. The new queue's client is built first, so
        // that one which cannot start refuses the reload before anything changed.
        let events_changed = file.events != self.file.events;
        let next_queue = match (&file.events, events_changed) {
            (Some(settings), true) => {
                Some(EventsRuntime::queue(&file, settings, &self.clients, &self.options).await?)
            }
            _ => None,
        };
        let discovered = self.kept_discoveries(&file);
        let previous_file = std::mem::replace(&mut self.file, file);
        let previous_discovered = std::mem::replace(&mut self.discovered, discovered);
        let (config, configured) = self.effective();
        let (added, removed) = changed_ids(&self.config, &config);
        let (added, removed) = (added.len(), removed.len());
        let pollers = match self.apply(config).await {
            Ok(changes) => changes,
            Err(error) => {
                self.file = previous_file;
                self.discovered = previous_discovered;
                return Err(error.into());
            }
        };
        self.web.commit(web);
        if events_changed {
            self.restart_events(next_queue).await;
        }
        self.generation += 1;
        self.state.follow_discovery(&Roster::from(&self.file), true);
        self.discoverers.shutdown().await;
        self.spawn_discoverers();
        if self.file.discovery.is_empty() {
            warn_if_shard_is_empty(&self.config, configured);
        }
        tracing::info!(
            datastores = self.config.datastores.len(),
            configured,
            shard = %self.config.polling.shard,
            added,
            removed,
            pollers_kept = pollers.kept,
            pollers_restarted = pollers.started,
            pollers_stopped = pollers.stopped,
            interval = %humantime::format_duration(self.config.polling.interval),
            "configuration reloaded"
        );
        Ok(())
    }

    /// Applies one discovery listing: datastores that appeared start polling, those that
    /// disappeared stop and lose their series. A failed listing changes nothing but its status.
    async fn discovered(
        &mut self,
        index: usize,
        result: Result<Vec<DatastoreInfo>, PollError>,
        poll_seconds: f64,
    ) {
        let Some(entry) = self.file.discovery.get(index) else {
            return;
        };
        let region = entry
            .target
            .region
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let found = match result {
            Ok(found) => found,
            Err(error) => {
                if self
                    .state
                    .record_discovery(index, Err(&error), poll_seconds, unix_now())
                {
                    tracing::warn!(discovery = index, region, reason = %error.reason, error = %error.message, "datastore discovery failed; keeping the datastores found before");
                }
                return;
            }
        };
        let datastores = discovery::datastores_to_poll(
            entry,
            &self.discovered[index],
            found,
            self.file.polling.jobs,
        );
        if self
            .state
            .record_discovery(index, Ok(datastores.len()), poll_seconds, unix_now())
        {
            tracing::info!(
                discovery = index,
                region,
                found = datastores.len(),
                "datastore discovery succeeded"
            );
        }
        if self.discovered.get(index) == Some(&datastores) {
            return;
        }
        let previous = std::mem::replace(&mut self.discovered[index], datastores);
        let (config, _) = self.effective();
        let (added, removed) = changed_ids(&self.config, &config);
        let (added, removed) = (added.join(","), removed.join(","));
        match self.apply(config).await {
            Ok(_) => tracing::info!(
                discovery = index,
                region,
                added,
                removed,
                datastores = self.config.datastores.len(),
                "discovered datastores changed"
            ),
            Err(error) => {
                self.discovered[index] = previous;
                tracing::error!(discovery = index, %error, "cannot poll the discovered datastores");
            }
        }
    }

    /// Stops the event consumer, if one runs, and starts one on `queue` when the configuration
    /// file has `[events]` (before the discovery tasks restart: they follow its datastore events).
    async fn restart_events(&mut self, queue: Option<crate::aws::sqs::SqsQueue>) {
        let stopped = match self.events.take() {
            Some(old) => {
                old.stop().await;
                true
            }
            None => false,
        };
        match (&self.file.events, queue) {
            (Some(settings), Some(queue)) => {
                let settings = settings.clone();
                self.events = Some(EventsRuntime::start(
                    &self.config,
                    &settings,
                    queue,
                    &self.clients,
                    &self.state,
                ));
                tracing::info!(
                    previous_consumer_stopped = stopped,
                    "[events] changed: the event consumer reads the new queue; messages the previous one had not deleted come back after their visibility timeout"
                );
            }
            _ => {
                self.state.disable_events();
                tracing::info!("[events] removed: the event consumer has stopped; polling.interval schedules every poll again");
            }
        }
    }

    /// Starts the `[[discovery]]` listings of the current configuration file.
    pub(super) fn spawn_discoverers(&mut self) {
        self.discoverers = discovery::spawn(
            &self.file,
            &self.clients,
            self.generation,
            self.control.clone(),
            self.events.as_ref().and_then(|e| e.rediscover.as_deref()),
        );
    }
}

/// The datastore ids `after` adds to `before`, and those it removes, each sorted.
fn changed_ids(before: &Config, after: &Config) -> (Vec<String>, Vec<String>) {
    let ids = |c: &Config| -> std::collections::BTreeSet<String> {
        c.datastores.iter().map(|d| d.id.clone()).collect()
    };
    let (before, after) = (ids(before), ids(after));
    (
        after.difference(&before).cloned().collect(),
        before.difference(&after).cloned().collect(),
    )
}

/// A replica whose shard owns nothing still runs (it stays ready and serves its own health
/// metrics), but the operator has more replicas than the datastores need.
pub(super) fn warn_if_shard_is_empty(config: &Config, configured: usize) {
    if config.datastores.is_empty() {
        tracing::warn!(
            shard = %config.polling.shard,
            configured,
            "this replica's shard owns none of the configured datastores: it serves only its own health metrics; fewer replicas would do"
        );
    }
}
