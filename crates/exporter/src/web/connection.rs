//! One connection's life and bounds: its slot under `server.max_connections` and
//! `server.max_connections_per_ip` (an idle keep-alive connection, or one past its grace period
//! without a request, gives its slot up to a new one at the cap), the TLS handshake, the
//! write-stall timeout, and marking the connection busy while a response is in flight.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
    let Some(tls) = context.web().tls.clone() else {
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

/// Why a new connection cannot be admitted now.
#[derive(Debug, PartialEq)]
pub(super) enum Refusal {
    /// Its source address already holds `max_connections_per_ip`: closed at once.
    PerIp,
    /// Every slot is taken by a connection that may not be evicted: wait for room.
    Full,
}

/// The connections held, for the caps and for choosing which one to close at the cap.
pub(super) struct Slots {
    /// `server.max_connections` (changed by a reload).
    pub(super) max: AtomicUsize,
    /// `server.max_connections_per_ip`, 0 = off (changed by a reload).
    pub(super) max_per_ip: AtomicUsize,
    /// How long a new connection is protected from eviction while it handshakes and sends its
    /// first request head.
    pub(super) grace: Duration,
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// Orders "became idle" events; smaller means idle for longer.
    clock: AtomicU64,
    /// Signalled when a slot is released or a connection becomes idle.
    pub(super) room: Notify,
}

#[derive(Default)]
struct Table {
    slots: HashMap<u64, Arc<Slot>>,
    per_ip: HashMap<IpAddr, usize>,
}

pub(super) struct Slot {
    ip: IpAddr,
    admitted: Instant,
    /// Requests in progress: from a parsed head until the response body is handed to hyper.
    busy: AtomicUsize,
    /// Requests answered on this connection.
    served: AtomicU64,
    idle_since: AtomicU64,
    evict: Notify,
}

impl Slot {
    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }
}

impl Slots {
    pub(super) fn new(max: usize, max_per_ip: usize, grace: Duration) -> Slots {
        Slots {
            max: AtomicUsize::new(max.max(1)),
            max_per_ip: AtomicUsize::new(max_per_ip),
            grace,
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            room: Notify::new(),
        }
    }

    /// Applies reloaded caps; connections above a lowered cap end as they are evicted or finish.
    pub(super) fn set_limits(&self, max: usize, max_per_ip: usize) {
        self.max.store(max.max(1), Ordering::SeqCst);
        self.max_per_ip.store(max_per_ip, Ordering::SeqCst);
        self.room.notify_one();
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Entries are plain data; a panicking holder cannot leave them half-written.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// A slot for a new connection from `ip`: a free one, or an evictable connection's, which is
    /// told to close. Evictable are, first, idle keep-alive connections that already served a
    /// request (longest idle first), then connections that sent no request within the grace
    /// period (oldest first). A connection in its grace period (TLS handshake, first request
    /// head) or mid-request is never cut.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<SlotGuard, Refusal> {
        let ip = ip.to_canonical();
        let mut table = self.table();
        let per_ip = self.max_per_ip.load(Ordering::SeqCst);
        if per_ip > 0 && table.per_ip.get(&ip).copied().unwrap_or(0) >= per_ip {
            return Err(Refusal::PerIp);
        }
        while table.slots.len() >= self.max.load(Ordering::SeqCst) {
            let idle_served = table
                .slots
                .iter()
                .filter(|(_, s)| !s.is_busy() && s.served.load(Ordering::SeqCst) > 0)
                .min_by_key(|(_, s)| s.idle_since.load(Ordering::SeqCst))
                .map(|(id, _)| *id);
            let stale_new = || {
                table
                    .slots
                    .iter()
                    .filter(|(_, s)| {
                        !s.is_busy()
                            && s.served.load(Ordering::SeqCst) == 0
                            && now.saturating_duration_since(s.admitted) >= self.grace
                    })
                    .min_by_key(|(_, s)| s.admitted)
                    .map(|(id, _)| *id)
            };
            let Some(victim) = idle_served.or_else(stale_new) else {
                return Err(Refusal::Full);
            };
            if let Some(slot) = table.slots.remove(&victim) {
                release_ip(&mut table.per_ip, slot.ip);
                slot.evict.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let slot = Arc::new(Slot {
            ip,
            admitted: now,
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(self.tick()),
            evict: Notify::new(),
        });
        table.slots.insert(id, Arc::clone(&slot));
        *table.per_ip.entry(ip).or_insert(0) += 1;
        Ok(SlotGuard {
            slots: Arc::clone(self),
            id,
            slot,
        })
    }

    /// Resolves once every connection has ended.
    pub(super) async fn drained(&self) {
        loop {
            let room = self.room.notified();
            if self.table().slots.is_empty() {
                return;
            }
            room.await;
        }
    }
}

fn release_ip(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(count) = per_ip.get_mut(&ip) {
        *count -= 1;
        if *count == 0 {
            per_ip.remove(&ip);
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
        let mut table = self.slots.table();
        // An evicted slot was already removed (and its address released) by `admit`.
        if table.slots.remove(&self.id).is_some() {
            release_ip(&mut table.per_ip, self.slot.ip);
        }
        drop(table);
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
        self.slot.served.fetch_add(1, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let slots = Arc::new(Slots::new(8, 2, Duration::from_secs(3)));
        let now = Instant::now();
        let a1 = slots.admit(ip(1), now).unwrap();
        let _a2 = slots.admit(ip(1), now).unwrap();
        assert_eq!(slots.admit(ip(1), now).err(), Some(Refusal::PerIp));
        // Another address is admitted, and IPv4-mapped IPv6 counts as the same address.
        let _b = slots.admit(ip(2), now).unwrap();
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(slots.admit(mapped, now).err(), Some(Refusal::PerIp));
        drop(a1);
        assert!(
            slots.admit(ip(1), now).is_ok(),
            "a closed connection frees its address"
        );
        // 0 turns the per-address cap off.
        slots.set_limits(8, 0);
        assert!(slots.admit(ip(1), now).is_ok());
    }

    #[test]
    fn new_connections_are_protected_during_their_grace_period() {
        let grace = Duration::from_secs(3);
        let slots = Arc::new(Slots::new(2, 0, grace));
        let t0 = Instant::now();
        let _probe = slots.admit(ip(1), t0).unwrap();
        let _other = slots.admit(ip(2), t0).unwrap();
        // Both are handshaking or sending their first head: nobody is cut for a newcomer.
        let during = t0 + Duration::from_secs(1);
        assert_eq!(slots.admit(ip(3), during).err(), Some(Refusal::Full));
        assert_eq!(slots.table().slots.len(), 2);
        // Past the grace period without a request, the oldest makes room.
        let after = t0 + grace + Duration::from_millis(1);
        let third = slots.admit(ip(3), after);
        assert!(third.is_ok());
        assert_eq!(slots.table().slots.len(), 2);
    }

    #[test]
    fn idle_connections_that_served_a_request_go_first_and_busy_ones_never() {
        let slots = Arc::new(Slots::new(2, 0, Duration::from_secs(3)));
        let t0 = Instant::now();
        let fresh = slots.admit(ip(1), t0).unwrap();
        let served = slots.admit(ip(2), t0).unwrap();
        // `served` answered a request and is idle (keep-alive): it is evicted even in its grace
        // period, while `fresh`, which has not sent its first request yet, stays.
        drop(Busy::new(Arc::clone(&slots), Arc::clone(&served.slot)));
        let _newcomer = slots.admit(ip(3), t0).unwrap();
        let table = slots.table();
        assert!(table.slots.contains_key(&fresh.id));
        assert!(!table.slots.contains_key(&served.id));
        drop(table);
        // A connection mid-request is never cut, however old.
        let _busy = Busy::new(Arc::clone(&slots), Arc::clone(&fresh.slot));
        let later = t0 + Duration::from_secs(60);
        let newest = slots.admit(ip(4), later);
        assert!(
            newest.is_ok(),
            "the unserved newcomer past its grace period makes room"
        );
        assert!(slots.table().slots.contains_key(&fresh.id));
    }
}
