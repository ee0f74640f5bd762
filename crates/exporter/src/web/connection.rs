//! One connection's life and bounds: its slot under `server.max_connections` and
//! `server.max_connections_per_ip` (at the cap a connection that is not using its slot gives it up
//! to a new one: see [`Slots::admit`]), the TLS handshake, the write-stall timeout, and marking the
//! connection busy while a response is in flight.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    let io = WriteTimeout::new(stream, context.limits.write_timeout)
        .reporting_to(Arc::clone(&slot.slots), Arc::clone(&slot.slot));
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
                let response = route(&request, &context, client_certificate, peer.ip()).await;
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
                if !slot.slot.is_busy() || slot.slot.cut.load(Ordering::SeqCst) {
                    tracing::debug!(%peer, "connection limit reached: closing this connection to make room");
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
    /// Every slot serves a request that makes progress, and its address already holds one:
    /// closed at once, so that addresses holding none (a probe) do not wait behind it.
    FullForThisAddress,
    /// Every slot serves a request that makes progress: wait for room.
    Full,
}

/// How long a response write may make no progress before, at the cap, its connection is closed
/// to make room (it is closed anyway after the write timeout). A client reading its response
/// never stalls this long; one that stopped reading holds a slot for nothing.
pub(super) const STALLED_WRITE: Duration = Duration::from_secs(1);
/// How long a new connection that has sent nothing yet is kept at the cap within its grace
/// period: its client sends the request head as soon as it is connected, which may reach the
/// server a moment after the connection is accepted.
pub(super) const SILENT_GRACE: Duration = Duration::from_millis(50);

/// The connections held, for the caps and for choosing which one to close at the cap.
pub(super) struct Slots {
    /// `server.max_connections` (changed by a reload).
    pub(super) max: AtomicUsize,
    /// `server.max_connections_per_ip`, 0 = off (changed by a reload).
    pub(super) max_per_ip: AtomicUsize,
    /// How long a new connection is given to handshake and send its first request head before it
    /// is the first choice to close at the cap.
    pub(super) grace: Duration,
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// Orders "became idle" events; smaller means idle for longer.
    clock: AtomicU64,
    /// The origin of the write-stall times kept in each slot.
    epoch: Instant,
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
    /// Since when (nanoseconds after [`Slots::epoch`], plus one) a write has been waiting for the
    /// client to read; 0 while writes make progress.
    stalled_since: AtomicU64,
    /// Taken at the cap while busy (a stalled writer): close at once, do not finish the response.
    cut: AtomicBool,
    /// The client has sent some bytes (of a TLS handshake or a request head).
    got_bytes: AtomicBool,
    /// The last read found nothing more to read: with `got_bytes` and no request in progress,
    /// the client sent part of a head and stopped.
    read_all_sent: AtomicBool,
    evict: Notify,
}

impl Slot {
    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    fn has_served(&self) -> bool {
        self.served.load(Ordering::SeqCst) > 0
    }
}

/// Which connection, if any, gives its slot up at the cap: the order of [`Slots::admit`].
fn choose_victim(table: &Table, slots: &Slots, now: Instant) -> Option<u64> {
    let age = |s: &Slot| now.saturating_duration_since(s.admitted);
    let without_head = |s: &&Arc<Slot>| !s.is_busy() && !s.has_served();
    let half_sent = |s: &&Arc<Slot>| {
        s.got_bytes.load(Ordering::SeqCst) && s.read_all_sent.load(Ordering::SeqCst)
    };
    let silent = |s: &&Arc<Slot>| !s.got_bytes.load(Ordering::SeqCst) && age(s) >= SILENT_GRACE;
    let oldest = |keep: &dyn Fn(&&Arc<Slot>) -> bool| {
        (table.slots.iter())
            .filter(|(_, s)| without_head(s) && keep(s))
            .min_by_key(|(_, s)| s.admitted)
            .map(|(id, _)| *id)
    };
    let idle_served = || {
        (table.slots.iter())
            .filter(|(_, s)| !s.is_busy() && s.has_served())
            .min_by_key(|(_, s)| s.idle_since.load(Ordering::SeqCst))
            .map(|(id, _)| *id)
    };
    let stalled_writer = || {
        let stalled_before = slots
            .nanos(now)
            .saturating_sub(STALLED_WRITE.as_nanos() as u64);
        (table.slots.iter())
            .filter(|(_, s)| s.is_busy())
            .map(|(id, s)| (id, s.stalled_since.load(Ordering::SeqCst)))
            .filter(|(_, since)| *since != 0 && *since <= stalled_before)
            .min_by_key(|(_, since)| *since)
            .map(|(id, _)| *id)
    };
    idle_served()
        .or_else(|| oldest(&|s| age(s) >= slots.grace))
        .or_else(stalled_writer)
        .or_else(|| oldest(&half_sent))
        .or_else(|| oldest(&silent))
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
            epoch: Instant::now(),
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

    /// `at` as nanoseconds after the epoch, plus one (so that 0 can mean "not stalled").
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
            + 1
    }

    /// A slot for a new connection from `ip`: a free one, or another connection's, which is told
    /// to close. At the cap the first of these gives its slot up:
    /// 1. the keep-alive connection idle longest after serving a request;
    /// 2. the oldest connection that sent no request head within its grace period;
    /// 3. the connection whose response write has made no progress for longest, if at least
    ///    [`STALLED_WRITE`] (a client that stopped reading);
    /// 4. the oldest connection whose client sent part of a request head (or of a TLS handshake)
    ///    and stopped, even in its grace period;
    /// 5. the oldest connection whose client has sent nothing for [`SILENT_GRACE`].
    ///
    /// So a new connection never waits behind connections that send nothing (however many, from
    /// however few addresses), and a connection serving a request to a client that reads it is
    /// never cut. A client sends its head as soon as it is connected, so the connections that go
    /// by rules 4 and 5 are the ones that keep a head half-sent or send nothing. Only when every slot serves a request that makes progress is there
    /// no room: with a per-address cap, a connection from an address that already holds a slot
    /// is then closed at once (a wave of connections from the addresses holding the slots would
    /// otherwise stand in the accept backlog before a probe from elsewhere), and one from an
    /// address holding none waits.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<SlotGuard, Refusal> {
        let ip = ip.to_canonical();
        let mut table = self.table();
        let per_ip = self.max_per_ip.load(Ordering::SeqCst);
        if per_ip > 0 && table.per_ip.get(&ip).copied().unwrap_or(0) >= per_ip {
            return Err(Refusal::PerIp);
        }
        while table.slots.len() >= self.max.load(Ordering::SeqCst) {
            let Some(victim) = choose_victim(&table, self, now) else {
                return Err(if per_ip > 0 && table.per_ip.contains_key(&ip) {
                    Refusal::FullForThisAddress
                } else {
                    Refusal::Full
                });
            };
            if let Some(slot) = table.slots.remove(&victim) {
                release_ip(&mut table.per_ip, slot.ip);
                slot.cut.store(slot.is_busy(), Ordering::SeqCst);
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
            stalled_since: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            got_bytes: AtomicBool::new(false),
            read_all_sent: AtomicBool::new(false),
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
/// hyper's header-read timeout bounds those. With a slot to report to, it also records since when
/// a write has been waiting, so that the connection can be closed earlier at the cap.
pub(super) struct WriteTimeout<IO> {
    io: IO,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    report: Option<(Arc<Slots>, Arc<Slot>)>,
}

impl<IO> WriteTimeout<IO> {
    pub(super) fn new(io: IO, limit: Duration) -> Self {
        WriteTimeout {
            io,
            limit,
            stalled: None,
            report: None,
        }
    }

    /// Records write stalls in `slot` (see [`STALLED_WRITE`]).
    pub(super) fn reporting_to(mut self, slots: Arc<Slots>, slot: Arc<Slot>) -> Self {
        self.report = Some((slots, slot));
        self
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            if self.stalled.take().is_some() {
                if let Some((_, slot)) = &self.report {
                    slot.stalled_since.store(0, Ordering::SeqCst);
                }
            }
            return poll;
        }
        if self.stalled.is_none() {
            if let Some((slots, slot)) = &self.report {
                let since = slots.nanos(Instant::now());
                slot.stalled_since.store(since, Ordering::SeqCst);
            }
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
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Some((slots, slot)) = &self.report {
            if poll.is_pending() {
                // With part of a head sent, a new connection waiting at the cap may take this slot.
                let was = slot.read_all_sent.swap(true, Ordering::SeqCst);
                if !was && slot.got_bytes.load(Ordering::SeqCst) && !slot.has_served() {
                    slots.room.notify_one();
                }
            } else {
                // Until hyper has parsed what came, this connection may hold a whole head.
                slot.read_all_sent.store(false, Ordering::SeqCst);
                if buf.filled().len() > before {
                    slot.got_bytes.store(true, Ordering::SeqCst);
                }
            }
        }
        poll
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
    fn connections_without_a_request_head_make_room_in_order() {
        let grace = Duration::from_secs(3);
        let slots = Arc::new(Slots::new(3, 0, grace));
        let t0 = Instant::now();
        let oldest = slots.admit(ip(1), t0).unwrap();
        let middle = slots.admit(ip(2), t0 + Duration::from_secs(1)).unwrap();
        let newest = slots.admit(ip(3), t0 + Duration::from_secs(2)).unwrap();
        // All in their grace period; `middle` has sent part of a head and waits: it goes first.
        let during = t0 + Duration::from_millis(2500);
        for flag in [&middle.slot.got_bytes, &middle.slot.read_all_sent] {
            flag.store(true, Ordering::SeqCst);
        }
        let a = slots.admit(ip(4), during).unwrap();
        assert!(!slots.table().slots.contains_key(&middle.id));
        // Then those that sent nothing for a moment, the oldest first.
        let b = slots
            .admit(ip(5), during + Duration::from_millis(1))
            .unwrap();
        assert!(!slots.table().slots.contains_key(&oldest.id));
        let soon = during + SILENT_GRACE / 2;
        let _c = slots.admit(ip(6), soon).unwrap();
        assert!(!slots.table().slots.contains_key(&newest.id));
        // `a` and `b` were just admitted and have sent nothing yet: they get their moment.
        assert_eq!(slots.admit(ip(7), soon).err(), Some(Refusal::Full));
        // Past the grace period, the oldest goes first whatever it sent.
        let later = during + grace;
        let _d = slots.admit(ip(7), later).unwrap();
        let table = slots.table();
        assert!(!table.slots.contains_key(&a.id));
        assert!(table.slots.contains_key(&b.id));
        assert_eq!(table.slots.len(), 3);
    }

    #[test]
    fn idle_connections_that_served_a_request_go_first_and_busy_ones_never() {
        let slots = Arc::new(Slots::new(2, 0, Duration::from_secs(3)));
        let t0 = Instant::now();
        let fresh = slots.admit(ip(1), t0).unwrap();
        let served = slots.admit(ip(2), t0).unwrap();
        // `served` answered a request and is idle (keep-alive): it goes before `fresh`, which has
        // not sent its first request yet.
        drop(Busy::new(Arc::clone(&slots), Arc::clone(&served.slot)));
        let newcomer = slots.admit(ip(3), t0).unwrap();
        let table = slots.table();
        assert!(table.slots.contains_key(&fresh.id));
        assert!(!table.slots.contains_key(&served.id));
        drop(table);
        // Connections serving a request are never cut, however old: the newcomer waits.
        let _busy = Busy::new(Arc::clone(&slots), Arc::clone(&fresh.slot));
        let _busy_too = Busy::new(Arc::clone(&slots), Arc::clone(&newcomer.slot));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(slots.admit(ip(4), later).err(), Some(Refusal::Full));
    }

    #[test]
    fn when_every_slot_serves_only_addresses_holding_none_wait() {
        let slots = Arc::new(Slots::new(2, 2, Duration::from_secs(3)));
        let t0 = Instant::now();
        let a = slots.admit(ip(1), t0).unwrap();
        let b = slots.admit(ip(2), t0).unwrap();
        let _busy = [&a, &b].map(|g| Busy::new(Arc::clone(&slots), Arc::clone(&g.slot)));
        assert_eq!(
            slots.admit(ip(1), t0).err(),
            Some(Refusal::FullForThisAddress)
        );
        assert_eq!(slots.admit(ip(3), t0).err(), Some(Refusal::Full));
        // Without a per-address cap (behind a mesh, one address for all), everyone waits.
        slots.set_limits(2, 0);
        assert_eq!(slots.admit(ip(1), t0).err(), Some(Refusal::Full));
    }

    #[test]
    fn a_writer_stalled_for_a_second_makes_room_and_is_cut() {
        let slots = Arc::new(Slots::new(2, 0, Duration::from_secs(3)));
        let t0 = Instant::now();
        let reader = slots.admit(ip(1), t0).unwrap();
        let stalled = slots.admit(ip(2), t0).unwrap();
        let _reading = Busy::new(Arc::clone(&slots), Arc::clone(&reader.slot));
        let _stuck = Busy::new(Arc::clone(&slots), Arc::clone(&stalled.slot));
        let since = slots.nanos(t0 + Duration::from_secs(1));
        stalled.slot.stalled_since.store(since, Ordering::SeqCst);
        // Stalled for half a second: not yet.
        let soon = t0 + Duration::from_millis(1500);
        assert_eq!(slots.admit(ip(3), soon).err(), Some(Refusal::Full));
        // A second without progress: it gives its slot up and is told to close at once.
        let later = t0 + Duration::from_millis(2100);
        let _probe = slots.admit(ip(3), later).unwrap();
        let table = slots.table();
        assert!(table.slots.contains_key(&reader.id));
        assert!(!table.slots.contains_key(&stalled.id));
        assert!(stalled.slot.cut.load(Ordering::SeqCst));
        assert!(!reader.slot.cut.load(Ordering::SeqCst));
    }

    // Paused time: the 50 ms below pass only once the write is truly stuck, on any machine.
    #[tokio::test(start_paused = true)]
    async fn write_stalls_are_reported_to_the_slot() {
        let slots = Arc::new(Slots::new(2, 0, Duration::from_secs(3)));
        let slot = slots.admit(ip(1), Instant::now()).unwrap();
        // A pipe whose reader never reads: writes stall once its buffer is full.
        let (client, server) = tokio::io::duplex(64);
        let mut writer = WriteTimeout::new(server, Duration::from_secs(30))
            .reporting_to(Arc::clone(&slots), Arc::clone(&slot.slot));
        use tokio::io::AsyncWriteExt as _;
        writer.write_all(&[0; 64]).await.unwrap();
        assert_eq!(slot.slot.stalled_since.load(Ordering::SeqCst), 0);
        let blocked = writer.write_all(&[0; 64]);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), blocked)
                .await
                .is_err(),
            "the write waits for the reader"
        );
        assert_ne!(slot.slot.stalled_since.load(Ordering::SeqCst), 0);
        // The reader reads: the next write makes progress and clears the mark.
        let mut client = client;
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 64];
        client.read_exact(&mut buf).await.unwrap();
        writer.write_all(&[0; 16]).await.unwrap();
        assert_eq!(slot.slot.stalled_since.load(Ordering::SeqCst), 0);
    }
}
