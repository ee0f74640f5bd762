//! Starting, reloading and stopping the exporter: [`Exporter`] wires config, clients, State, the
//! pollers and the HTTP server together; its supervisor task owns the configuration and applies
//! reloads (SIGHUP, `POST /-/reload`) and discovery results one at a time; signals end it.
//!
//! This module is the public face (errors, [`Overrides`], [`ReloadHandle`], [`Exporter`]); the
//! supervisor task itself is in `task`, the bounded configuration read in `config_read`, and the
//! running `[events]` path in `events_runtime`.

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
use crate::config::{Config, ConfigError, ConfigFiles};
use crate::model::unix_now;
use crate::poll::discovery::Discovered;
use crate::poll::Pollers;
use crate::state::State;
use crate::web::{self, HttpContext, ReloadOutcome};

mod config_read;
mod events_runtime;
mod task;

use config_read::load_off_thread;
use events_runtime::EventsRuntime;
use task::{warn_if_shard_is_empty, Supervisor};

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
    /// `--check-config` shows); `Config::retain_shard` then narrows it when the config is used.
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
