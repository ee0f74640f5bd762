//! One connection's life and bounds: its slot under `server.max_connections` (an idle connection
//! gives its slot up to a new one at the cap), the TLS handshake, the write-stall timeout, and
//! marking the connection busy while a response is in flight.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use super::routes::{route, Body};
use super::HttpContext;

/// One connection: the TLS handshake if configured, then HTTP/1.1 until the client leaves, a
/// timeout strikes, the slot is taken for a newer connection, or the server stops.
pub(super) async fn connection(
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

pub(super) async fn drive<I>(
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

/// The connections held, for the cap and for choosing which idle one to close at the cap.
pub(super) struct Slots {
    max: usize,
    table: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// Orders "became idle" events; smaller means idle for longer.
    clock: AtomicU64,
    /// Signalled when a slot is released or a connection becomes idle.
    pub(super) room: Notify,
}

pub(super) struct Slot {
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
    pub(super) fn new(max: usize) -> Slots {
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
    pub(super) fn admit(self: &Arc<Self>) -> Option<SlotGuard> {
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
    pub(super) async fn drained(&self) {
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
pub(super) struct SlotGuard {
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
pub(super) struct Busy {
    slots: Arc<Slots>,
    slot: Arc<Slot>,
}

impl Busy {
    pub(super) fn new(slots: Arc<Slots>, slot: Arc<Slot>) -> Busy {
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
pub(super) struct ResponseBody {
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
pub(super) struct WriteTimeout<IO> {
    io: IO,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> WriteTimeout<IO> {
    pub(super) fn new(io: IO, limit: Duration) -> Self {
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
