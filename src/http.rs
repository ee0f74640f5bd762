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

pub mod auth;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CACHE_CONTROL,
    CONTENT_ENCODING, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::config::ServerConfig;
use crate::job::JobKind;
use crate::metrics::{self, Format, MetricsCache};
use crate::poller::unix_now;
use crate::state::{Feed, State};
use crate::{ReloadError, ReloadHandle};

use self::auth::BasicAuth;
use self::tls::Tls;

/// How long a client may take to send a request head, and how long a kept-alive connection may
/// sit idle between requests.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response write may make no progress before the connection is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for responses in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// `WWW-Authenticate` for a 401.
const BASIC_CHALLENGE: &str = "Basic realm=\"healthlake-exporter\"";

/// A response body: one buffer, or `/metrics` streamed from the cache.
enum Body {
    Full(Full<Bytes>),
    Metrics(metrics::MetricsBody),
}

impl Body {
    fn new(bytes: Bytes) -> Body {
        Body::Full(Full::new(bytes))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(cx),
            // Each chunk is made from memory, in well under a millisecond: no need to yield.
            Body::Metrics(body) => Poll::Ready(match body.next() {
                Some(Ok(chunk)) => Some(Ok(Frame::data(chunk))),
                Some(Err(error)) => {
                    // Too late for an error status: end the body short, so the client sees a
                    // truncated response (its length was announced) rather than wrong data.
                    tracing::error!(%error, "streaming /metrics failed; closing the response");
                    None
                }
                None => None,
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Metrics(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Metrics(body) => SizeHint::with_exact(body.len()),
        }
    }
}

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

/// Everything a request handler needs: the State it reads, the limits, TLS and basic auth.
pub struct HttpContext {
    state: Arc<State>,
    limits: Limits,
    tls: Option<Tls>,
    auth: Option<BasicAuth>,
    /// `POST /-/reload` asks the supervisor through this; `None` answers 503.
    reload: Option<ReloadHandle>,
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
    pub fn with_reload(mut self, reload: ReloadHandle) -> HttpContext {
        self.reload = Some(reload);
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

/// One connection: the TLS handshake if configured, then HTTP/1.1 until the client leaves, a
/// timeout strikes, the slot is taken for a newer connection, or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    context: Arc<HttpContext>,
    slot: SlotGuard,
    mut stopped: watch::Receiver<bool>,
    builder: http1::Builder,
) {
    let _ = stream.set_nodelay(true);
    let io = WriteTimeout::new(stream, context.limits.write_timeout);
    let Some(tls) = &context.tls else {
        drive(io, peer, false, &context, &slot, &mut stopped, &builder).await;
        return;
    };
    let handshake = tokio::time::timeout(
        context.limits.header_read_timeout,
        tls.acceptor().accept(io),
    );
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = slot.evicted() => return,
        _ = stopped.wait_for(|stop| *stop) => return,
    };
    let client_certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|certs| !certs.is_empty());
    let context = Arc::clone(&context);
    drive(
        stream,
        peer,
        client_certificate,
        &context,
        &slot,
        &mut stopped,
        &builder,
    )
    .await;
}

async fn drive<I>(
    io: I,
    peer: SocketAddr,
    client_certificate: bool,
    context: &Arc<HttpContext>,
    slot: &SlotGuard,
    stopped: &mut watch::Receiver<bool>,
    builder: &http1::Builder,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let context = Arc::clone(context);
        let slots = Arc::clone(&slot.slots);
        let this = Arc::clone(&slot.slot);
        service_fn(move |request| {
            let context = Arc::clone(&context);
            let busy = Busy::new(Arc::clone(&slots), Arc::clone(&this));
            async move {
                let response = route(&request, &context, client_certificate).await;
                Ok::<_, Infallible>(response.map(|body| ResponseBody {
                    inner: body,
                    _busy: busy,
                }))
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                }
                return;
            }
            () = slot.evicted(), if !closing => {
                if !slot.slot.is_busy() {
                    tracing::debug!(%peer, "connection limit reached: closing this idle connection to make room");
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stopped.wait_for(|stop| *stop), if !closing => {
                if !slot.slot.is_busy() {
                    return;
                }
                // Let the response in flight finish, then close.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The routes that stay open without credentials: kubelet probes cannot send any.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Where Prometheus' own lifecycle API reloads: tools that know one know the other.
const RELOAD_PATH: &str = "/-/reload";

/// `POST` (or `PUT`) `/-/reload`: re-read the configuration file; 200 when applied, 500 with the
/// reason when rejected (the previous configuration keeps running).
async fn reload(request: &Request<Incoming>, context: &HttpContext) -> Response<Body> {
    if request.method() != Method::POST && request.method() != Method::PUT {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST to reload the configuration\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST, PUT"));
        return response;
    }
    let Some(handle) = &context.reload else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available\n",
        );
    };
    let (status, message) = match handle.reload().await {
        Ok(()) => (StatusCode::OK, "configuration reloaded\n".to_owned()),
        Err(error @ ReloadError::ShuttingDown) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n"))
        }
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("configuration not reloaded, the previous one keeps running: {error}\n"),
        ),
    };
    let mut response = Response::new(Body::new(Bytes::from(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn route(
    request: &Request<Incoming>,
    context: &HttpContext,
    client_certificate: bool,
) -> Response<Body> {
    let path = request.uri().path();
    if !is_probe(path) {
        if context.tls.as_ref().is_some_and(Tls::client_auth) && !client_certificate {
            return text(
                StatusCode::FORBIDDEN,
                "forbidden: present a TLS client certificate signed by the CA in server.tls.client_ca_file\n",
            );
        }
        if let Some(auth) = &context.auth {
            if !auth.check(request.headers().get(AUTHORIZATION)).await {
                let mut response = text(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: send a user name and password configured in server.basic_auth (HTTP basic auth)\n",
                );
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
                return response;
            }
        }
    }
    let state = &context.state;
    if path == RELOAD_PATH {
        return reload(request, context).await;
    }
    let known = matches!(path, "/" | "/metrics" | "/healthz" | "/readyz");
    if !known {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or HEAD\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            metrics_response(context, format, accepts_gzip(request.headers()))
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.first_cycle_attempted() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the first poll of every datastore has not been attempted yet\n",
                )
            }
        }
        _ => landing_page(state),
    }
}

/// `/metrics` from the cache, gzip-compressed when the client accepts it. Should the cache fail
/// (a bug), the uncached encoder answers, uncompressed, so scrapes keep working.
fn metrics_response(context: &HttpContext, format: Format, gzip: bool) -> Response<Body> {
    let now = unix_now();
    let (body, gzip) = match context.metrics.body(&context.state, now, format, gzip) {
        Ok(body) => (Body::Metrics(body), gzip),
        Err(error) => {
            tracing::warn!(%error, "cached metrics encoding failed; encoding without the cache");
            let body = metrics::render_uncached(&context.state, now, format);
            (Body::new(Bytes::from(body)), false)
        }
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // Caches must not hand a gzip body to a client that did not ask for one, or the reverse.
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): `gzip` (or `x-gzip`) listed with a
/// non-zero weight, or `*` with a non-zero weight when gzip is not listed. A weight that does not
/// parse counts as a refusal.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let mut weight = 1.0_f32;
            for parameter in parts {
                if let Some((name, q)) = parameter.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        weight = q.trim().parse().unwrap_or(0.0);
                    }
                }
            }
            let accepted = weight > 0.0;
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(gzip.unwrap_or(false) || accepted);
            } else if coding == "*" {
                any = Some(any.unwrap_or(false) || accepted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

// ---- connection slots ----

/// The connections held, for the cap and for choosing which idle one to close at the cap.
struct Slots {
    max: usize,
    table: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// Orders "became idle" events; smaller means idle for longer.
    clock: AtomicU64,
    /// Signalled when a slot is released or a connection becomes idle.
    room: Notify,
}

struct Slot {
    /// Requests in progress: from a parsed head until the response body is handed to hyper.
    busy: AtomicUsize,
    idle_since: AtomicU64,
    evict: Notify,
}

impl Slot {
    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            room: Notify::new(),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // Entries are plain data; a panicking holder cannot leave them half-written.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// A slot for a new connection: a free one, or the longest-idle connection's, which is told to
    /// close. `None` when every held connection is mid-request.
    fn admit(self: &Arc<Self>) -> Option<SlotGuard> {
        let mut table = self.table();
        if table.len() >= self.max {
            let victim = table
                .iter()
                .filter(|(_, slot)| !slot.is_busy())
                .min_by_key(|(_, slot)| slot.idle_since.load(Ordering::SeqCst))
                .map(|(id, _)| *id)?;
            if let Some(slot) = table.remove(&victim) {
                slot.evict.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let slot = Arc::new(Slot {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.tick()),
            evict: Notify::new(),
        });
        table.insert(id, Arc::clone(&slot));
        Some(SlotGuard {
            slots: Arc::clone(self),
            id,
            slot,
        })
    }

    /// Resolves once every connection has ended.
    async fn drained(&self) {
        loop {
            let room = self.room.notified();
            if self.table().is_empty() {
                return;
            }
            room.await;
        }
    }
}

/// A held slot; dropping it (the connection ended) frees it.
struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    slot: Arc<Slot>,
}

impl SlotGuard {
    /// Resolves when a newer connection took this slot.
    async fn evicted(&self) {
        self.slot.evict.notified().await;
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.table().remove(&self.id);
        self.slots.room.notify_one();
    }
}

/// Marks a request in progress on its connection until dropped with the response body.
struct Busy {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl Busy {
    fn new(slots: Arc<Slots>, slot: Arc<Slot>) -> Busy {
        slot.busy.fetch_add(1, Ordering::SeqCst);
        Busy { slots, slot }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slot
            .idle_since
            .store(self.slots.tick(), Ordering::SeqCst);
        self.slot.busy.fetch_sub(1, Ordering::SeqCst);
        self.slots.room.notify_one();
    }
}

/// A response body that keeps its connection marked busy until hyper has taken all of it.
struct ResponseBody {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---- write-stall timeout ----

/// Fails writes that make no progress for `limit`: a client that stopped reading its response
/// would otherwise hold its connection forever (hyper has no write timeout). Reads pass through;
/// hyper's header-read timeout bounds those.
struct WriteTimeout<IO> {
    io: IO,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> WriteTimeout<IO> {
    fn new(io: IO, limit: Duration) -> Self {
        WriteTimeout {
            io,
            limit,
            stalled: None,
        }
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading: a write made no progress within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.track(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.track(cx, poll)
    }
}

// ---- responses ----

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn landing_page(state: &State) -> Response<Body> {
    let mut html = String::from(concat!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>healthlake-exporter</title></head>\n",
        "<body><h1>healthlake-exporter ",
        env!("CARGO_PKG_VERSION"),
        "</h1>\n<p>Amazon HealthLake FHIR export and import jobs and datastores, as Prometheus metrics.</p>\n",
        "<p><a href=\"/metrics\">/metrics</a> &middot; <a href=\"/healthz\">/healthz</a> &middot; <a href=\"/readyz\">/readyz</a></p>\n",
        "<table border=\"1\" cellpadding=\"4\"><tr><th>datastore_id</th><th>datastore_name</th>",
        "<th>export jobs</th><th>import jobs</th><th>datastore</th></tr>\n"
    ));
    for ds in state.datastores().iter() {
        let record = ds.record();
        let cell = |feed: Feed| match record.health(feed) {
            None => "not polled".to_owned(),
            Some(health) if health.attempts == 0 => "not polled yet".to_owned(),
            Some(health) if health.up => "up".to_owned(),
            Some(health) => format!(
                "down: {}",
                health.last_error.as_ref().map_or("", |e| e.reason.as_str())
            ),
        };
        let mut datastore = cell(Feed::Datastore);
        if let Some(info) = record.datastore.as_ref().and_then(|d| d.info.as_ref()) {
            datastore = format!("{datastore} ({})", escape(&info.status));
        }
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{datastore}</td></tr>",
            escape(&ds.id),
            escape(&ds.name),
            cell(Feed::Jobs(JobKind::Export)),
            cell(Feed::Jobs(JobKind::Import)),
        );
    }
    html.push_str("</table></body></html>\n");
    let mut response = Response::new(Body::new(Bytes::from(html)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_only_when_the_client_accepts_it() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["deflate, GZIP;q=0.5"]));
        assert!(accepts(&["identity", "x-gzip"]));
        assert!(accepts(&["br;q=1.0, *;q=0.1"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip; q=0.000, *"]));
        assert!(!accepts(&["*;q=0"]));
        assert!(!accepts(&["gzip;q=nonsense"]));
        assert!(!accepts(&["gzipx, br"]));
    }
}
