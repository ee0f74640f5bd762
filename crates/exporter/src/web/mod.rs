//! The HTTP server: `/metrics`, `/healthz`, `/readyz` and a landing page, on hyper 1, with
//! optional TLS (`tls`) and basic auth (`auth`).
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
//! - **Connection caps.** At most `server.max_connections` connections are held, and at most
//!   `server.max_connections_per_ip` from one source address (0 = no per-address cap; by default
//!   a quarter of `max_connections`, so that two or three addresses cannot take every slot): a
//!   connection beyond the per-address cap is closed at once, so one address flooding connects
//!   neither holds the slots nor keeps others waiting in the accept backlog. When a new
//!   connection arrives at the global cap, one that is not using its slot is closed to make room
//!   (the order is in `connection::Slots::admit`): an idle keep-alive connection, then one that
//!   sent no request head within its grace period ([`DEFAULT_EVICTION_GRACE`]), then one whose
//!   response write made no progress for a second (a client that stopped reading), then the
//!   oldest that sent half a head and stopped, or nothing for 50 ms. A connection serving a
//!   client that reads is never cut; while every slot serves such a client, a new connection from an address that
//!   holds a slot is closed and one from another address waits (in the kernel's accept backlog)
//!   until one finishes or stalls. Behind a service mesh sidecar every connection, kubelet probes
//!   included, arrives from loopback: there the per-address cap applies to all clients together,
//!   and the order at the cap is what keeps a scrape from waiting behind half-sent requests. The
//!   accept queue is deep enough ([`bind`]) that a burst of connections does not overflow it.
//! - **No request bodies.** No route reads one; hyper discards an unread body by closing the
//!   connection after the response, so nothing is ever buffered. Read routes take GET and HEAD.
//! - **Credentials.** With TLS client certificates or basic auth configured, every route but the
//!   probes `/healthz` and `/readyz` asks for them: kubelet probes cannot carry credentials, and the
//!   probes reveal nothing but "alive" and "ready". bcrypt runs one check at a time, with turns
//!   shared fairly between source addresses (see `auth`).
//! - **Reload.** `POST /-/reload` works only with `server.enable_reload` (403 otherwise), after
//!   the credentials above, never for a request a browser marks as coming from another site, and
//!   only for a `Host` that is an IP address, `localhost` or in `server.reload_allowed_hosts` (a
//!   page on a rebound DNS name cannot reload).
//!   A reload applies `[server]` too: TLS, basic auth and the caps ([`HttpContext::prepare`]).
//! - **Headers.** exporter-toolkit's web config file (`--web.config.file`, `toolkit`) may add
//!   a few security headers to every response; nothing else can be added.
//!
//! The module owns its settings (`settings`: `[server]`, TLS files, basic auth users, response
//! headers) and their checks, and reads exporter-toolkit's web config file into them
//! (`toolkit`); the config module reads the files and calls those checks, never the reverse.

pub(crate) mod auth;
mod bcrypt_queue;
mod connection;
mod landing;
mod routes;
pub mod settings;
pub(crate) mod tls;
pub(crate) mod toolkit;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use self::auth::BasicAuth;
use self::connection::{connection, Refusal, Slots};
use self::settings::ServerConfig;
use self::tls::Tls;
use crate::metrics::MetricsCache;
use crate::state::State;

/// How long a client may take to send a request head, and how long a kept-alive connection may
/// sit idle between requests.
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response write may make no progress before the connection is dropped.
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for responses in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a new connection may handshake and send its first request head before it is the
/// first to close to make room for another (rule 2 of the order at the cap; see the module docs).
pub const DEFAULT_EVICTION_GRACE: Duration = Duration::from_secs(3);
/// How often a new connection that found every slot taken looks again for one that may give its
/// slot up (a write stalled, a silent connection's moment passed).
const FULL_RETRY: Duration = Duration::from_millis(20);
/// The kernel's accept queue (capped by `net.core.somaxconn`). The standard library's 128 is
/// soon full when hundreds of clients connect at once (a flood behind a mesh): then the kernel
/// drops new connections, and a scraper's connect waits a second for its SYN to be resent.
const LISTEN_BACKLOG: u32 = 4096;

/// The server's limits. [`Limits::new`] gives the production values for a `[server]` section;
/// tests shorten the timeouts to stay fast (the timeouts are deliberately not config keys).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// 0 = off.
    pub max_connections_per_ip: usize,
    /// See [`DEFAULT_EVICTION_GRACE`].
    pub eviction_grace: Duration,
    /// How often, at most, TLS certificate files are looked at for a rotation.
    pub cert_check_interval: Duration,
}

impl Limits {
    pub fn new(server: &ServerConfig) -> Limits {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: server.max_connections.max(1),
            max_connections_per_ip: server.max_connections_per_ip,
            eviction_grace: DEFAULT_EVICTION_GRACE,
            cert_check_interval: tls::DEFAULT_CERT_CHECK_INTERVAL,
        }
    }
}

/// What can stop the HTTP endpoint from being set up or reconfigured.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("server.basic_auth.users: no users configured; add one or remove [server.basic_auth]")]
    NoUsers,
    #[error("{key} changed: this takes a restart; the reload is refused (restore the previous value, or restart the exporter)")]
    NeedsRestart { key: &'static str },
    /// The TLS files a web config file names cannot be used (its keys named as it names them).
    #[error("{}: {message}", path.display())]
    WebConfigTls { path: PathBuf, message: String },
    #[error("http_server_config.headers: the value of {name} is not a valid header value")]
    Header { name: String },
}

/// The settings a reload may change: `[server]` as last applied, with the TLS acceptor and the
/// basic-auth users built from it. Each request takes the current one.
pub(crate) struct Web {
    server: ServerConfig,
    tls: Option<Arc<Tls>>,
    auth: Option<Arc<BasicAuth>>,
    /// `server.headers`, ready to add to every response.
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// A reloaded `[server]` section, checked and built, ready to [`HttpContext::commit`].
pub struct PreparedWeb(Web);

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
    web: RwLock<Arc<Web>>,
    slots: Arc<Slots>,
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

    /// Like [`HttpContext::new`] with explicit limits (`server.max_connections` and
    /// `max_connections_per_ip` are ignored until a reload changes them).
    pub fn with_limits(
        state: Arc<State>,
        server: &ServerConfig,
        limits: Limits,
    ) -> Result<HttpContext, HttpError> {
        let web = build_web(&state, server, None, limits.cert_check_interval)?;
        Ok(HttpContext {
            slots: Arc::new(Slots::new(
                limits.max_connections,
                limits.max_connections_per_ip,
                limits.eviction_grace,
            )),
            state,
            limits,
            web: RwLock::new(Arc::new(web)),
            reload: None,
            metrics: MetricsCache::with_process_metrics(),
        })
    }

    /// Lets `POST /-/reload` re-read the configuration file.
    pub fn with_reload(mut self, reload: impl Reload) -> HttpContext {
        self.reload = Some(Box::new(reload));
        self
    }

    pub(crate) fn web(&self) -> Arc<Web> {
        Arc::clone(&self.web.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks and builds a reloaded `[server]` section without applying it: a changed
    /// `listen_address`, or TLS files that cannot be used under changed `[server.tls]` paths,
    /// refuse the reload. Unchanged TLS paths keep the running certificate, which follows its
    /// files on its own: a pair caught mid-rotation does not block the reload.
    pub fn prepare(&self, server: &ServerConfig) -> Result<PreparedWeb, HttpError> {
        let current = self.web();
        if server.listen_address != current.server.listen_address {
            return Err(HttpError::NeedsRestart {
                key: "server.listen_address",
            });
        }
        let web = build_web(
            &self.state,
            server,
            Some(&current),
            self.limits.cert_check_interval,
        )?;
        Ok(PreparedWeb(web))
    }

    /// Applies a prepared `[server]` section: new requests and handshakes use it at once.
    pub fn commit(&self, prepared: PreparedWeb) {
        let web = prepared.0;
        let current = self.web();
        if web.server != current.server {
            let s = &web.server;
            tracing::info!(
                tls = web.tls.is_some(),
                client_certificates = web.tls.as_ref().is_some_and(|t| t.client_auth()),
                basic_auth = web.auth.is_some(),
                headers = web.headers.len(),
                max_connections = s.max_connections,
                max_connections_per_ip = s.max_connections_per_ip,
                enable_reload = s.enable_reload,
                "HTTP settings reloaded"
            );
        }
        self.slots.set_limits(
            web.server.max_connections,
            web.server.max_connections_per_ip,
        );
        self.state
            .certificate_status()
            .set(web.tls.as_ref().map(|t| t.refresh_now()));
        *self.web.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(web);
    }
}

/// TLS and basic auth for `server`. With `current`, unchanged parts are reused: the running TLS
/// acceptor when the paths did not change, the basic-auth users when they did not (changed users
/// keep the caches and the bcrypt turns, see [`auth`]).
fn build_web(
    state: &Arc<State>,
    server: &ServerConfig,
    current: Option<&Web>,
    cert_check_interval: Duration,
) -> Result<Web, HttpError> {
    let tls = match (&server.tls, current) {
        (None, _) => None,
        (Some(config), Some(current))
            if current.server.tls.as_ref() == Some(config) && current.tls.is_some() =>
        {
            current.tls.clone()
        }
        (Some(config), _) => Some(Arc::new(
            Tls::new(config, cert_check_interval, Arc::clone(state)).map_err(|e| match &server
                .web_config_file
            {
                Some(path) => HttpError::WebConfigTls {
                    path: path.clone(),
                    message: e.toolkit_message(),
                },
                None => HttpError::Tls(e),
            })?,
        )),
    };
    let auth = match (&server.basic_auth, current) {
        (None, _) => None,
        (Some(config), Some(current))
            if current.server.basic_auth.as_ref() == Some(config) && current.auth.is_some() =>
        {
            current.auth.clone()
        }
        (Some(config), current) => {
            let previous = current.and_then(|c| c.auth.as_deref());
            Some(Arc::new(
                BasicAuth::new(config, previous).ok_or(HttpError::NoUsers)?,
            ))
        }
    };
    let headers = server
        .headers
        .0
        .iter()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes()).ok();
            match (header, HeaderValue::from_str(value)) {
                (Some(header), Ok(value)) => Ok((header, value)),
                _ => Err(HttpError::Header { name: name.clone() }),
            }
        })
        .collect::<Result<_, _>>()?;
    if current.is_none() {
        state.certificate_status().set(tls.as_ref().map(|_| true));
    }
    Ok(Web {
        server: server.clone(),
        tls,
        auth,
        headers,
    })
}

/// Accepts connections on `listener` until `shutdown` resolves, then drains them.
pub async fn serve(
    listener: TcpListener,
    context: Arc<HttpContext>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::clone(&context.slots);
    let (stop, stopped) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(context.limits.header_read_timeout);
    {
        let web = context.web();
        tracing::info!(
            tls = web.tls.is_some(),
            client_certificates = web.tls.as_ref().is_some_and(|t| t.client_auth()),
            basic_auth = web.auth.is_some(),
            headers = web.headers.len(),
            web_config_file = web
                .server
                .web_config_file
                .as_ref()
                .map(|p| p.display().to_string()),
            max_connections = slots.max.load(Ordering::SeqCst),
            max_connections_per_ip = slots.max_per_ip.load(Ordering::SeqCst),
            enable_reload = web.server.enable_reload,
            "serving HTTP"
        );
    }
    tokio::pin!(shutdown);
    loop {
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
        let slot = match admit(&slots, peer.ip(), shutdown.as_mut()).await {
            Admission::Slot(slot) => slot,
            Admission::Refused(refusal) => {
                tracing::debug!(%peer, ?refusal, "no slot for this address: connection closed");
                drop(stream);
                continue;
            }
            Admission::ShuttingDown => break,
        };
        let context = Arc::clone(&context);
        let builder = builder.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            connection(stream, peer, context, slot, stopped, builder).await;
        });
        // Let the new connection read the request head it has (most likely) already sent before
        // the next admission may close connections without one.
        tokio::task::yield_now().await;
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

enum Admission {
    Slot(connection::SlotGuard),
    /// Close the connection at once.
    Refused(Refusal),
    ShuttingDown,
}

/// A slot for a new connection from `ip`, waiting while every slot serves a request that makes
/// progress (others queue in the kernel's backlog meanwhile). Refused at once beyond the
/// per-address cap, or when full and its address already holds a slot, so that one address
/// flooding connections neither holds slots nor keeps other clients waiting in the backlog.
async fn admit(
    slots: &Arc<Slots>,
    ip: std::net::IpAddr,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Admission {
    loop {
        let room = slots.room.notified();
        match slots.admit(ip, Instant::now()) {
            Ok(slot) => return Admission::Slot(slot),
            Err(Refusal::Full) => {}
            Err(refusal) => return Admission::Refused(refusal),
        }
        // Wait for one to finish, or to stall long enough to give its slot up.
        tokio::select! {
            () = room => {},
            () = tokio::time::sleep(FULL_RETRY) => {},
            () = &mut shutdown => return Admission::ShuttingDown,
        }
    }
}

/// Binds the listen address with a `LISTEN_BACKLOG`-deep accept queue.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As tokio's own bind does: a restarted exporter can bind again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}
