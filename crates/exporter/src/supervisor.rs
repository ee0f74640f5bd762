//! Starting, reloading and stopping the exporter: [`Exporter`] wires config, clients, State, the
//! pollers and the HTTP server together; its supervisor task owns the configuration and applies
//! reloads (SIGHUP, `POST /-/reload`) and discovery results one at a time; signals end it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::aws::{ClientError, ClientOptions, Clients};
use crate::config::shard::Shard;
use crate::config::{Config, ConfigError, ConfigFiles, DatastoreConfig};
use crate::model::{unix_now, DatastoreInfo, PollError};
use crate::poll::discovery::{self, Discovered};
use crate::poll::{PollerChanges, Pollers};
use crate::state::{Roster, State};
use crate::web::{self, HttpContext, ReloadOutcome};

/// What can stop the exporter from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Clients(#[from] ClientError),
    #[error(transparent)]
    Http(#[from] web::HttpError),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("cannot listen on {address}: {source}\n  hint: pick another port with --listen-address or server.listen_address")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Why a config reload was rejected (the previous configuration keeps running).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("nothing to reload: the exporter was started without a configuration file")]
    NoConfigFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Clients(#[from] ClientError),
    #[error(transparent)]
    Http(#[from] web::HttpError),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("the exporter is shutting down")]
    ShuttingDown,
    #[error("cannot read config file {}: the previous read has not finished yet (a hung filesystem?)\n  hint: check the filesystem that holds it; the previous configuration keeps running", path.display())]
    StillReading { path: PathBuf },
}

/// Why the event consumer of an `[events]` section cannot start (at start, or on a reload that
/// changes the section: the reload is then refused and the previous consumer keeps running).
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("[events] queue_url has no {{shard}} but this replica is shard {shard}: replicas sharing one queue would take each other's events\n  hint: give each replica its own queue (deploy/aws/healthlake-events.yaml, ReplicaCount) and write {{shard}} in queue_url")]
    SharedQueue { shard: Shard },
    #[error(transparent)]
    Clients(#[from] ClientError),
}

/// What the command line overrides in the configuration file. Applied to the file's contents at
/// start and again on every reload, so that a reload never undoes a flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen-address`: wins over `server.listen_address`.
    pub listen_address: Option<SocketAddr>,
    /// `--shard`: wins over `polling.shard`.
    pub shard: Option<Shard>,
}

impl Overrides {
    /// Writes the overridden keys into `config`. The datastore list stays whole (what
    /// `--check-config` shows); [`Config::retain_shard`] then narrows it when the config is used.
    pub fn apply(&self, config: &mut Config) {
        if let Some(address) = self.listen_address {
            config.server.listen_address = address;
        }
        if let Some(shard) = self.shard {
            config.polling.shard = shard;
        }
    }
}

/// A request to the supervisor task, which owns the configuration and the pollers.
enum Control {
    Reload(oneshot::Sender<Result<(), ReloadError>>),
    /// A discovery task's listing.
    Discovered(Discovered),
}

impl From<Discovered> for Control {
    fn from(discovered: Discovered) -> Control {
        Control::Discovered(discovered)
    }
}

/// Asks a running exporter to re-read its configuration file (cheap to clone).
#[derive(Clone, Debug)]
pub struct ReloadHandle {
    control: mpsc::Sender<Control>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Reload(_) => f.write_str("Control::Reload"),
            Control::Discovered(d) => write!(f, "Control::Discovered({})", d.index),
        }
    }
}

impl ReloadHandle {
    /// Re-reads the configuration file and applies it; on error the previous one keeps running.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Reload(reply))
            .await
            .map_err(|_| ReloadError::ShuttingDown)?;
        answer.await.map_err(|_| ReloadError::ShuttingDown)?
    }
}

/// `POST /-/reload` goes through the same handle as SIGHUP.
impl web::Reload for ReloadHandle {
    fn reload(&self) -> Pin<Box<dyn Future<Output = ReloadOutcome> + Send + '_>> {
        Box::pin(async move {
            match ReloadHandle::reload(self).await {
                Ok(()) => ReloadOutcome::Applied,
                Err(error @ ReloadError::ShuttingDown) => {
                    ReloadOutcome::Unavailable(error.to_string())
                }
                Err(error) => ReloadOutcome::Rejected(error.to_string()),
            }
        })
    }
}

/// A running exporter: polling tasks, the HTTP server and the supervisor that applies reloads.
pub struct Exporter {
    local_addr: SocketAddr,
    state: Arc<State>,
    reload: ReloadHandle,
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<()>,
    supervisor: JoinHandle<()>,
}

impl Exporter {
    /// Starts with an already validated configuration (no reloads: there is no file to re-read).
    pub async fn start(config: Config, options: ClientOptions) -> Result<Exporter, StartError> {
        Exporter::launch(config, None, Overrides::default(), options).await
    }

    /// Loads the configuration file and starts; `SIGHUP`, `POST /-/reload` and
    /// [`ReloadHandle::reload`] re-read it later. `listen_override` wins over the file.
    pub async fn start_from_file(
        path: &Path,
        listen_override: Option<SocketAddr>,
        options: ClientOptions,
    ) -> Result<Exporter, StartError> {
        let overrides = Overrides {
            listen_address: listen_override,
            shard: None,
        };
        Exporter::start_from_file_with(path, overrides, options).await
    }

    /// Like [`Exporter::start_from_file`], with every command-line override (`--shard` too).
    pub async fn start_from_file_with(
        path: &Path,
        overrides: Overrides,
        options: ClientOptions,
    ) -> Result<Exporter, StartError> {
        Exporter::start_from_files(ConfigFiles::toml(path), overrides, options).await
    }

    /// Like [`Exporter::start_from_file_with`], with exporter-toolkit's web config file
    /// (`--web.config.file`) too: reloads re-read both files.
    pub async fn start_from_files(
        files: ConfigFiles,
        overrides: Overrides,
        options: ClientOptions,
    ) -> Result<Exporter, StartError> {
        let mut config = load_off_thread(&files, ConfigFiles::load)
            .await
            .map_err(|(e, _)| e)?;
        overrides.apply(&mut config);
        Exporter::launch(config, Some(files), overrides, options).await
    }

    async fn launch(
        file: Config,
        config_files: Option<ConfigFiles>,
        overrides: Overrides,
        options: ClientOptions,
    ) -> Result<Exporter, StartError> {
        // The one place a started exporter narrows its datastores to its shard (reloads and
        // discoveries: `Supervisor::effective`).
        let mut config = file.clone();
        let configured = config.retain_shard();
        if config.discovery.is_empty() {
            warn_if_shard_is_empty(&config, configured);
        }
        let clients = Arc::new(Clients::build(&config, &options).await?);
        let address = config.server.listen_address;
        let listener = web::bind(address)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        let local_addr = listener.local_addr().unwrap_or(address);
        let state = Arc::new(State::new(&config, unix_now()));
        state.arm_readiness(readiness_deadline(&config));
        let (stop_http, stopped) = oneshot::channel::<()>();
        let (control, requests) = mpsc::channel(4);
        let reload = ReloadHandle { control };
        let context = Arc::new(
            HttpContext::new(Arc::clone(&state), &config.server)?.with_reload(reload.clone()),
        );
        let http = tokio::spawn(web::serve(listener, Arc::clone(&context), async {
            let _ = stopped.await;
        }));
        let events = match &config.events {
            Some(settings) => {
                let queue = EventsRuntime::queue(&config, settings, &clients, &options).await?;
                Some(EventsRuntime::start(
                    &config, settings, queue, &clients, &state,
                ))
            }
            None => None,
        };
        let pollers = Pollers::start(&config, Arc::clone(&clients), &state);
        tracing::info!(
            listen_address = %local_addr,
            datastores = config.datastores.len(),
            configured,
            shard = %config.polling.shard,
            interval = %humantime::format_duration(config.polling.interval),
            "healthlake-exporter started"
        );
        let discovered = vec![Vec::new(); file.discovery.len()];
        let mut supervisor = Supervisor {
            file,
            discovered,
            generation: 0,
            config,
            config_files,
            overrides,
            options,
            clients,
            pollers,
            discoverers: tokio::task::JoinSet::new(),
            control: reload.control.clone(),
            state: Arc::clone(&state),
            events,
            web: context,
            unfinished_read: None,
        };
        supervisor.spawn_discoverers();
        let supervisor = tokio::spawn(supervisor.run(requests));
        Ok(Exporter {
            local_addr,
            state,
            reload,
            stop_http,
            http,
            supervisor,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// Serves until SIGTERM or SIGINT, re-reading the configuration on SIGHUP, then shuts down.
    pub async fn run_until_terminated(self) {
        let terminated = termination_signal();
        tokio::pin!(terminated);
        #[cfg(unix)]
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            tokio::select! {
                () = &mut terminated => break,
                () = hangup => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    // The outcome is logged by the supervisor.
                    let _ = self.reload.reload().await;
                }
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }

    /// Stops polling, stops accepting connections, and lets responses in flight finish.
    pub async fn shutdown(self) {
        drop(self.reload);
        // The supervisor stops its pollers once every reload handle is gone; HTTP holds none, so
        // abort instead of waiting on handles held elsewhere.
        self.supervisor.abort();
        let _ = self.supervisor.await;
        let _ = self.stop_http.send(());
        let _ = self.http.await;
    }
}

/// Owns the configuration, the clients and the polling tasks; applies reloads and discovery
/// results one at a time.
struct Supervisor {
    /// The configuration file as loaded (overrides applied, every datastore).
    file: Config,
    /// Per `[[discovery]]` entry, the datastores its last successful listing found.
    discovered: Vec<Vec<DatastoreConfig>>,
    /// Bumped by every reload, so that a listing made under an older configuration is ignored.
    generation: u64,
    /// What is being polled: the file's datastores and the discovered ones, narrowed to the shard.
    config: Config,
    /// The files reloads re-read (`None`: started from a `Config` built in code).
    config_files: Option<ConfigFiles>,
    overrides: Overrides,
    options: ClientOptions,
    clients: Arc<Clients>,
    pollers: Pollers,
    discoverers: tokio::task::JoinSet<()>,
    control: mpsc::Sender<Control>,
    state: Arc<State>,
    /// The event consumer, with `[events]` (restarted by a reload that changes the section).
    events: Option<EventsRuntime>,
    /// The HTTP endpoint, whose `[server]` settings a reload applies.
    web: Arc<HttpContext>,
    /// A read of the configuration file that timed out and has not ended yet: no other read
    /// starts until it does, so a hung filesystem cannot pile up blocked threads.
    unfinished_read: Option<ConfigRead>,
}

/// A read of the configuration file on the blocking pool.
type ConfigRead = JoinHandle<Result<Config, ConfigError>>;

/// How long reading and validating the configuration file may take: a regular file of at most
/// `MAX_CONFIG_FILE_BYTES` takes milliseconds; longer means a hung filesystem.
const CONFIG_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the configuration files (the TOML file, and the web config file when given) with `load`
/// on the blocking pool, never on the async workers that serve HTTP, within
/// [`CONFIG_READ_TIMEOUT`]. On a timeout the read goes on in the background; it is handed back so
/// that the caller can wait for it before reading again.
async fn load_off_thread(
    files: &ConfigFiles,
    load: fn(&ConfigFiles) -> Result<Config, ConfigError>,
) -> Result<Config, (ConfigError, Option<ConfigRead>)> {
    load_within(files, load, CONFIG_READ_TIMEOUT).await
}

async fn load_within(
    files: &ConfigFiles,
    load: fn(&ConfigFiles) -> Result<Config, ConfigError>,
    limit: Duration,
) -> Result<Config, (ConfigError, Option<ConfigRead>)> {
    let owned = files.clone();
    let path = files.config.as_path();
    let mut read = tokio::task::spawn_blocking(move || load(&owned));
    match tokio::time::timeout(limit, &mut read).await {
        Ok(Ok(loaded)) => loaded.map_err(|e| (e, None)),
        Ok(Err(failed)) => Err((
            ConfigError::Read {
                path: path.to_owned(),
                source: std::io::Error::other(format!("the reading task failed: {failed}")),
            },
            None,
        )),
        Err(_) => Err((
            ConfigError::ReadTimedOut {
                path: path.to_owned(),
                seconds: limit.as_secs_f64(),
            },
            Some(read),
        )),
    }
}

/// The running event path: the consumer tasks, the refresher they call, and the signal that makes
/// discovery list now.
struct EventsRuntime {
    refresher: Arc<crate::events::refresh::StateRefresher>,
    rediscover: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    consumer: tokio::task::JoinSet<()>,
}

impl EventsRuntime {
    /// The queue client of `settings` for this replica's shard (`config.polling.shard`); makes no
    /// call. Fails, changing nothing, when the queue is shared between shards or has no region.
    async fn queue(
        config: &Config,
        settings: &crate::config::EventsConfig,
        clients: &Clients,
        options: &ClientOptions,
    ) -> Result<crate::aws::sqs::SqsQueue, EventsError> {
        let shard = config.polling.shard;
        if !shard.is_all() && !settings.per_shard() {
            return Err(EventsError::SharedQueue { shard });
        }
        Ok(
            crate::aws::sqs::SqsQueue::build(settings.queue_settings(shard), clients, options)
                .await?,
        )
    }

    /// Starts consuming `queue` for the datastores of `config` (the counters carry on across
    /// restarts; `healthlake_feed_up{feed="events"}` starts again at 0 until the new queue answers).
    fn start(
        config: &Config,
        settings: &crate::config::EventsConfig,
        queue: crate::aws::sqs::SqsQueue,
        clients: &Arc<Clients>,
        state: &Arc<State>,
    ) -> EventsRuntime {
        let stats = state.enable_events();
        stats.up.store(false, std::sync::atomic::Ordering::Relaxed);
        let rediscover =
            (!config.discovery.is_empty()).then(|| Arc::new(tokio::sync::watch::channel(0u64).0));
        let refresher = Arc::new(crate::events::refresh::StateRefresher::new(
            config,
            Arc::clone(clients),
            state,
            rediscover.clone(),
        ));
        // The queue's visibility timeout is read (and checked) by the consumer itself: it hides
        // the messages it holds for that long, and extends it while their refresh waits.
        tracing::info!(
            queue_url = queue.queue_url(),
            wait_time = %humantime::format_duration(settings.wait_time),
            "consuming HealthLake events; polling.interval is now the reconciliation interval"
        );
        let consumer =
            crate::events::consumer::spawn(Arc::new(queue), Arc::clone(&refresher), stats);
        EventsRuntime {
            refresher,
            rediscover,
            consumer,
        }
    }

    /// Stops consuming: a receive in flight is dropped, and messages not yet deleted come back
    /// after their visibility timeout (to the next consumer, or to this queue's next reader).
    async fn stop(mut self) {
        self.consumer.shutdown().await;
    }
}

impl Supervisor {
    async fn run(mut self, mut requests: mpsc::Receiver<Control>) {
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
    fn spawn_discoverers(&mut self) {
        self.discoverers = discovery::spawn(
            &self.file,
            &self.clients,
            self.generation,
            self.control.clone(),
            self.events.as_ref().and_then(|e| e.rediscover.as_deref()),
        );
    }
}

/// Beyond the longest first poll, the time the exporter takes to record it.
const READINESS_GRACE: Duration = Duration::from_secs(2);

/// How long after start readiness closes at the latest: a first poll starts within the start
/// spread (at most 5 s, whatever the number of datastores) and ends within `polling.timeout`,
/// unless it waits for a slot of `polling.concurrency` or of the request budget, which is why
/// the deadline does not wait for every first poll.
fn readiness_deadline(config: &Config) -> Duration {
    config
        .polling
        .timeout
        .saturating_add(crate::poll::longest_start_spread(config))
        .saturating_add(READINESS_GRACE)
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
fn warn_if_shard_is_empty(config: &Config, configured: usize) {
    if config.datastores.is_empty() {
        tracing::warn!(
            shard = %config.polling.shard,
            configured,
            "this replica's shard owns none of the configured datastores: it serves only its own health metrics; fewer replicas would do"
        );
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that outlasts its limit is refused with the file named, and handed back running,
    /// so that the next reload waits for it instead of starting another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_hangs_is_refused_and_handed_back() {
        fn hung(_: &ConfigFiles) -> Result<Config, ConfigError> {
            std::thread::sleep(Duration::from_millis(500));
            Config::parse("[[datastores]]\nid = \"ds\"\n", Path::new("t.toml"))
        }
        let files = ConfigFiles::toml("/etc/healthlake-exporter/config.toml");
        let started = std::time::Instant::now();
        let (error, read) = load_within(&files, hung, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(
            error.to_string().lines().next().unwrap(),
            "cannot read config file /etc/healthlake-exporter/config.toml: reading it took longer than 0.05 s (a hung network filesystem?)"
        );
        let read = read.expect("the read in flight is handed back");
        assert!(!read.is_finished());
        assert!(read.await.unwrap().is_ok(), "and it ends on its own");
    }
}
