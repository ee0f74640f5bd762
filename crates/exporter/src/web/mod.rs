//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and a landing page, on hyper 1, with
//! optional TLS ([`tls`]) and basic auth ([`auth`]).
//!
//! Handlers only read State, so a scrape never waits on AWS. The endpoint often sits on a shared pod
//! network, so it is built to stay answerable when something there misbehaves:
//! - **Header-read timeout.** A client gets `header_read_timeout` (10 s) to send a whole request
//!   head. hyper 1 starts this timer whenever it waits for a head: on a new connection *and* on a
//!   kept-alive one between requests, so it is also the idle timeout; a connection that sends
//!   nothing, or dribbles a header byte now and then (slow loris), is closed when it runs out.
//!   The TLS handshake gets the same bound, which hyper cannot see.
//! - **Write-stall timeout.** A response write that makes no progress for `write_timeout` (a
//!   client that stopped reading) ends the connection.
//! - **Connection cap.** At most `server.max_connections` connections are held. When a new one
//!   arrives at the cap, the connection that has waited longest *without a request in progress*
//!   (idle keep-alive, slow loris, stalled TLS handshake) is closed to make room, as nginx reuses
//!   idle keep-alive connections when it runs out. So connections that only hold a slot can never
//!   lock a scrape out, whatever their number, and a connection serving a request is never cut.
//!   Only when every held connection is mid-request (each takes microseconds, a response being
//!   rendered) does a new one wait, in the kernel's accept backlog, until one finishes.
//! - **No request bodies.** No route reads one; hyper discards an unread body by closing the
//!   connection after the response, so nothing is ever buffered. Read routes take GET and HEAD.
//! - **Credentials.** With TLS client certificates or basic auth configured, every route but the
//!   probes `/healthz` and `/readyz` asks for them: kubelet probes cannot carry credentials, and the
//!   probes reveal nothing but "alive" and "ready".
//!
//! The module owns its settings (`settings`: `[server]`, TLS files, basic auth users) and their
//! checks; the config module reads them from the file and calls those checks, never the reverse.

pub mod auth;
mod connection;
mod landing;
mod routes;
pub mod settings;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::auth::BasicAuth;
use self::connection::{connection, Slots};
use self::settings::ServerConfig;
use self::tls::Tls;
use crate::metrics::MetricsCache;
use crate::state::State;

/// How long a client may take to send a request head, and how long a kept-alive connection may
/// sit idle between requests.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response write may make no progress before the connection is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for responses in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// The server's limits. [`Limits::new`] gives the production values for a `[server]` section;
/// tests shorten the timeouts to stay fast (the fields are deliberately not config keys).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// How often, at most, TLS certificate files are looked at for a rotation.
    pub cert_check_interval: Duration,
}

impl Limits {
    pub fn new(server: &ServerConfig) -> Limits {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: server.max_connections.max(1),
            cert_check_interval: tls::DEFAULT_CERT_CHECK_INTERVAL,
        }
    }
}

/// What can stop the HTTP endpoint from being set up (after the config validated: a TLS file
/// changed or vanished in between).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("server.basic_auth.users: no users configured; add one or remove [server.basic_auth]")]
    NoUsers,
}

/// How `POST /-/reload` asks for the configuration file to be re-read (the supervisor answers).
pub trait Reload: Send + Sync + 'static {
    fn reload(&self) -> Pin<Box<dyn Future<Output = ReloadOutcome> + Send + '_>>;
}

/// The answer to a reload request, with the reason when it was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    /// The new configuration was refused; the previous one keeps running.
    Rejected(String),
    /// Nothing can be reloaded now (the exporter is shutting down).
    Unavailable(String),
}

/// Everything a request handler needs: the State it reads, the limits, TLS and basic auth.
pub struct HttpContext {
    state: Arc<State>,
    limits: Limits,
    tls: Option<Tls>,
    auth: Option<BasicAuth>,
    /// `POST /-/reload` asks the supervisor through this; `None` answers 503.
    reload: Option<Box<dyn Reload>>,
    /// What `/metrics` encoded before, reused until State changes.
    metrics: MetricsCache,
}

impl HttpContext {
    /// The endpoint as `server` configures it, with the production limits.
    pub fn new(state: Arc<State>, server: &ServerConfig) -> Result<HttpContext, HttpError> {
        HttpContext::with_limits(state, server, Limits::new(server))
    }

    /// Like [`HttpContext::new`] with explicit limits (`server.max_connections` is ignored).
    pub fn with_limits(
        state: Arc<State>,
        server: &ServerConfig,
        limits: Limits,
    ) -> Result<HttpContext, HttpError> {
        let tls = match &server.tls {
            Some(config) => Some(Tls::new(config, limits.cert_check_interval)?),
            None => None,
        };
        let auth = match &server.basic_auth {
            Some(config) => Some(BasicAuth::new(config).ok_or(HttpError::NoUsers)?),
            None => None,
        };
        Ok(HttpContext {
            state,
            limits,
            tls,
            auth,
            reload: None,
            metrics: MetricsCache::new(),
        })
    }

    /// Lets `POST /-/reload` re-read the configuration file.
    pub fn with_reload(mut self, reload: impl Reload) -> HttpContext {
        self.reload = Some(Box::new(reload));
        self
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, then drains them.
pub async fn serve(
    listener: TcpListener,
    context: Arc<HttpContext>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Slots::new(context.limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(context.limits.header_read_timeout);
    tracing::info!(
        tls = context.tls.is_some(),
        client_certificates = context.tls.as_ref().is_some_and(Tls::client_auth),
        basic_auth = context.auth.is_some(),
        max_connections = context.limits.max_connections,
        "serving HTTP"
    );
    tokio::pin!(shutdown);
    'accept: loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = loop {
            let room = slots.room.notified();
            if let Some(slot) = slots.admit() {
                break slot;
            }
            // Every held connection is mid-request: wait for one to finish (others queue in the
            // kernel's backlog meanwhile).
            tokio::select! {
                () = room => {},
                () = &mut shutdown => break 'accept,
            }
        };
        let context = Arc::clone(&context);
        let builder = builder.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            connection(stream, peer, context, slot, stopped, builder).await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.drained())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections did not finish within the shutdown grace period");
    }
}

/// Binds the listen address, saying which address failed and why.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}
