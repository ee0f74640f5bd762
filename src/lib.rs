//! healthlake-exporter: Amazon HealthLake FHIR export jobs as Prometheus metrics.
//!
//! The flow is one-way: config → HealthLake clients → poller → state → metrics → HTTP. The scrape
//! path never waits on AWS: `/metrics` encodes what State holds now. `Exporter` wires the modules
//! together; `main.rs` only parses the command line and maps errors to exit codes.

pub mod cli;
pub mod config;
pub mod demo;
pub mod fake;
pub mod healthlake;
pub mod http;
pub mod job;
pub mod metrics;
pub mod poller;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::healthlake::{ClientError, ClientOptions, Clients};
use crate::state::State;

/// What can stop the exporter from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Clients(#[from] ClientError),
    #[error("cannot listen on {address}: {source}\n  hint: pick another port with --listen-address or server.listen_address")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A running exporter: polling tasks plus the HTTP server.
pub struct Exporter {
    local_addr: SocketAddr,
    state: Arc<State>,
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<()>,
    pollers: tokio::task::JoinSet<()>,
}

impl Exporter {
    /// Builds the clients, binds the listen address and starts polling and serving.
    pub async fn start(config: Config, options: ClientOptions) -> Result<Exporter, StartError> {
        let clients = Arc::new(Clients::build(&config, &options).await?);
        let address = config.server.listen_address;
        let listener = http::bind(address)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        let local_addr = listener.local_addr().unwrap_or(address);
        let state = Arc::new(State::new(&config));
        let (stop_http, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(http::serve(listener, Arc::clone(&state), async {
            let _ = stopped.await;
        }));
        let pollers = poller::spawn(&config, clients, Arc::clone(&state));
        tracing::info!(
            listen_address = %local_addr,
            datastores = config.datastores.len(),
            interval = %humantime::format_duration(config.polling.interval),
            "healthlake-exporter started"
        );
        Ok(Exporter {
            local_addr,
            state,
            stop_http,
            http,
            pollers,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops polling, stops accepting connections, and lets responses in flight finish.
    pub async fn shutdown(mut self) {
        self.pollers.shutdown().await;
        let _ = self.stop_http.send(());
        let _ = self.http.await;
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
