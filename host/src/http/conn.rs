//! Connections: the accept loop with its connection limit, each connection's header, body and
//! idle deadlines, graceful shutdown, and the separate `/metrics` listener.

use super::api::ledger;
use super::body::set_body_deadline;
use super::error::not_found;
use super::probes::metrics;
use super::router::handle;
use crate::service::App;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A connection's socket with an idle deadline: when no request is being handled and nothing
/// was read or written for `idle`, the next read fails and hyper closes the connection (the
/// keep-alive idle timeout; a request that is being handled has its own body deadline). And a
/// write deadline: a write the client leaves waiting (it does not read) for `write_stall` fails,
/// and hyper closes the connection; without it, a client that pipelines requests and never reads
/// their answers held its connection for ever (hyper reads nothing while its answers wait).
struct GuardedIo {
    inner: tokio::net::TcpStream,
    idle: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    busy: Arc<ConnState>,
    write: WriteDeadline,
    /// hyper's bare answer to a request it could not parse, being written in its JSON version
    /// (`parse_errors`).
    swapped: Option<Swapped>,
}

/// What is written in place of a head hyper asked to write: `bytes`, of which `sent` are out;
/// hyper is told its own `replaces` bytes were written once all of them are.
struct Swapped {
    bytes: Vec<u8>,
    sent: usize,
    replaces: usize,
}

/// How long a write may wait for the client to read before the connection fails.
const WRITE_STALL: Duration = Duration::from_secs(30);

impl GuardedIo {
    fn new(
        inner: tokio::net::TcpStream,
        idle: Duration,
        busy: Arc<ConnState>,
        write_stall: Duration,
    ) -> GuardedIo {
        GuardedIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            write: WriteDeadline {
                stall: write_stall,
                sleep: Box::pin(tokio::time::sleep(write_stall)),
                armed: false,
                conn: busy.clone(),
                unwritten: None,
            },
            busy,
            swapped: None,
        }
    }

    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        // A connection shed to make room is closed at once: it held nothing being answered.
        use std::sync::atomic::Ordering;
        if !self.busy.shed_closed.load(Ordering::Acquire) {
            linger_if_unread(&self.inner, self.busy.body_unread.load(Ordering::Acquire));
        }
    }
}

/// How much of a request left unread a closing connection still reads, and for how long.
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER_FOR: Duration = Duration::from_secs(2);
/// Sockets lingering at once, at most: beyond, a connection closes at once as before (clients
/// that never close their side cannot pile up open sockets).
const MAX_LINGERING: usize = 256;
static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One lingering socket counted while it lingers.
struct Lingering;

impl Lingering {
    fn start() -> Option<Lingering> {
        use std::sync::atomic::Ordering;
        LINGERING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_LINGERING).then_some(n + 1)
            })
            .ok()
            .map(|_| Lingering)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A connection closed while its client still sends (a body refused for its size, or not read
/// because its request was answered early) is reset by the kernel when the next bytes arrive,
/// and the reset can overtake the answer still on its way: behind a balancer the client then got
/// no answer at all instead of its 413. So when bytes wait, or a body was refused unread
/// (`body_unread`: more may be on the way) and the client has not closed its side, the socket
/// outlives this handle (a second descriptor of it): its sending side is shut (the answer, then
/// the end), and what the client still sends is read and thrown away until it closes too (at
/// most [`LINGER_BYTES`] within [`LINGER_FOR`]), as web servers' "lingering close" does. Any
/// other connection (an idle one closed, a `Connection: close` answered) closes at once.
fn linger_if_unread(stream: &tokio::net::TcpStream, body_unread: bool) {
    use std::os::fd::AsFd;
    let Ok(fd) = stream.as_fd().try_clone_to_owned() else {
        return;
    };
    let socket = std::net::TcpStream::from(fd);
    // The descriptor shares the connection's non-blocking mode: a client that closed reads as
    // 0 bytes (nothing to wait for); one still there as bytes or WouldBlock.
    match socket.peek(&mut [0u8; 1]) {
        Ok(n) if n > 0 => {}
        Err(e) if body_unread && e.kind() == std::io::ErrorKind::WouldBlock => {}
        _ => return,
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(counted) = Lingering::start() else {
        return;
    };
    runtime.spawn(async move {
        let _counted = counted;
        let _ = socket.shutdown(std::net::Shutdown::Write);
        let Ok(mut socket) = tokio::net::TcpStream::from_std(socket) else {
            return;
        };
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = LINGER_BYTES;
        let _ = tokio::time::timeout(LINGER_FOR, async {
            use tokio::io::AsyncReadExt;
            while left > 0 {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    });
}

/// The write deadline: armed when a write first waits, disarmed by any progress.
struct WriteDeadline {
    stall: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    conn: Arc<ConnState>,
    /// While a write waits, the connection counts as having a request in flight: hyper drops
    /// an answer's body once it has queued its bytes, not once they are written, and an answer
    /// still being written to a slow reader is never shed nor idle.
    unwritten: Option<Busy>,
}

impl WriteDeadline {
    /// What a write or flush answers: progress disarms the deadline; a wait arms it (once) and
    /// polls it, so the task is woken when it passes and the next poll fails.
    fn guard<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        use std::task::Poll;
        if r.is_ready() {
            self.armed = false;
            self.unwritten = None;
            return r;
        }
        if !self.armed {
            self.armed = true;
            self.unwritten = Some(Busy::new(&self.conn));
            let at = tokio::time::Instant::now() + self.stall;
            self.sleep.as_mut().reset(at);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing within the write deadline",
            )));
        }
        Poll::Pending
    }
}

impl tokio::io::AsyncRead for GuardedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.busy.in_flight() == 0 && self.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle connection closed",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl tokio::io::AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        // Only a 4xx head is looked at; hyper's parse-error answer is the connection's last.
        if this.swapped.is_none() && super::parse_errors::is_4xx_head(buf) {
            if let Some(bytes) = super::parse_errors::with_json_body(buf) {
                this.swapped = Some(Swapped {
                    bytes,
                    sent: 0,
                    replaces: buf.len(),
                });
            }
        }
        if let Some(swap) = this.swapped.as_mut() {
            while swap.sent < swap.bytes.len() {
                let r =
                    std::pin::Pin::new(&mut this.inner).poll_write(cx, &swap.bytes[swap.sent..]);
                match this.write.guard(cx, r) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => swap.sent += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let replaces = swap.replaces;
            this.swapped = None;
            this.touch();
            return Poll::Ready(Ok(replaces));
        }
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        let r = this.write.guard(cx, r);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // A head alone (hyper writes its parse-error answer as one buffer) goes the way above,
        // and so does everything once a swapped head is being written.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        match (filled.next(), filled.next()) {
            (Some(first), _) if self.swapped.is_some() => return self.poll_write(cx, first),
            (Some(only), None) if super::parse_errors::is_4xx_head(only) => {
                return self.poll_write(cx, only)
            }
            _ => {}
        }
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let r = self.write.guard(cx, r);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.write.guard(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One open connection as the accept loop sees it: its requests in flight, since when it has
/// had none, since when its request's body is being read, and the signal that closes it when
/// the connections run out ([`Open::shed_waiting`]).
struct ConnState {
    busy: std::sync::atomic::AtomicUsize,
    /// Milliseconds since [`clock_ms`]'s start when its last request ended (or it was accepted).
    waiting_since_ms: std::sync::atomic::AtomicU64,
    /// Since when (as above, plus one) its request has been waiting ([`WaitingRequest`]: for its
    /// body, or for its turn); 0 when it is not.
    body_since_ms: std::sync::atomic::AtomicU64,
    shed: tokio::sync::Notify,
    /// Set when it is closed to make room (no lingering close for it).
    shed_closed: std::sync::atomic::AtomicBool,
    /// Set when a request's body was refused unread ([`body_left_unread`]).
    body_unread: std::sync::atomic::AtomicBool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            busy: std::sync::atomic::AtomicUsize::new(0),
            waiting_since_ms: std::sync::atomic::AtomicU64::new(clock_ms()),
            body_since_ms: std::sync::atomic::AtomicU64::new(0),
            shed: tokio::sync::Notify::new(),
            shed_closed: std::sync::atomic::AtomicBool::new(false),
            body_unread: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn in_flight(&self) -> usize {
        self.busy.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Since when its request's body is being read, if one is.
    fn body_since(&self) -> Option<u64> {
        match self
            .body_since_ms
            .load(std::sync::atomic::Ordering::Acquire)
        {
            0 => None,
            at => Some(at - 1),
        }
    }

    /// Since when it may be shed: it has no request in flight, or its one request is still
    /// waiting (for its body, or for its turn). `None` while a request is being handled or
    /// answered.
    fn sheddable_since(&self) -> Option<u64> {
        match self.in_flight() {
            0 => Some(
                self.waiting_since_ms
                    .load(std::sync::atomic::Ordering::Acquire),
            ),
            1 => self.body_since(),
            _ => None,
        }
    }
}

tokio::task_local! {
    /// The connection whose request the current task is handling (set around the router).
    static CONNECTION: Arc<ConnState>;
}

/// A request waiting, marked on its connection until dropped: for its body to arrive, or for
/// its turn (a provider's notification waiting for a permit, nothing done for it yet). One that
/// has waited [`SHED_AFTER_MS`] may be shed like a stalled head when every slot is taken: else
/// a few addresses keeping a queued notification on each of their connections would hold every
/// slot for as long as they like.
pub(super) struct WaitingRequest(Option<Arc<ConnState>>);

impl WaitingRequest {
    /// Marks the current connection's request as waiting (nothing outside a connection's task:
    /// a unit test).
    pub(super) fn start() -> WaitingRequest {
        let conn = CONNECTION.try_with(Arc::clone).ok();
        if let Some(c) = &conn {
            c.body_since_ms
                .store(clock_ms() + 1, std::sync::atomic::Ordering::Release);
        }
        WaitingRequest(conn)
    }
}

/// Awaits `turn` (a permit, nothing done for the request yet) with the current connection's
/// request marked as waiting: sheddable meanwhile when every slot is taken.
pub(super) async fn waiting_for_turn<F: std::future::Future>(turn: F) -> F::Output {
    let waiting = WaitingRequest::start();
    let got = turn.await;
    drop(waiting);
    got
}

impl Drop for WaitingRequest {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.body_since_ms
                .store(0, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Marks the current connection as answering a request whose body it leaves unread (refused for
/// its size): it closes with a lingering close ([`linger_if_unread`]).
pub(super) fn body_left_unread() {
    if let Ok(c) = CONNECTION.try_with(Arc::clone) {
        c.body_unread
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Milliseconds on a monotonic clock started at the first call.
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// An answer's body that keeps its request counted as in flight ([`Busy`]) until hyper has
/// taken all of it (or dropped it); bytes hyper has taken but not yet written keep it counted
/// through [`WriteDeadline`]. So a long answer (a CSV export to a slow reader) is never shed.
struct InFlightBody {
    body: ledger::ServerBody,
    _busy: Busy,
}

impl hyper::body::Body for InFlightBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts a request as in flight on its connection while it lives.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(conn: &Arc<ConnState>) -> Busy {
        conn.busy.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self
            .0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0
                .waiting_since_ms
                .store(clock_ms(), std::sync::atomic::Ordering::Release);
        }
    }
}

/// How long a connection must have been without a request before it may be shed.
const SHED_AFTER_MS: u64 = 1_000;
/// The most connections shed at once (nginx drains its reusable connections 32 at a time).
const SHED_AT_ONCE: usize = 32;

/// The open connections, for shedding when there is no slot left.
#[derive(Clone, Default)]
struct Open {
    conns: Arc<std::sync::Mutex<std::collections::HashMap<u64, Arc<ConnState>>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

/// A connection's entry in [`Open`], removed when dropped.
struct Listed {
    id: u64,
    open: Open,
}

impl Drop for Listed {
    fn drop(&mut self) {
        let mut conns = self.open.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(&self.id);
    }
}

impl Open {
    fn list(&self, state: Arc<ConnState>) -> Listed {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.insert(id, state);
        Listed {
            id,
            open: self.clone(),
        }
    }

    /// Every slot is taken: closes up to [`SHED_AT_ONCE`] connections that have had no request
    /// in flight, or a request still waiting for its body or its turn, for [`SHED_AFTER_MS`] or
    /// more, the longest waiting first. Those are keep-alive connections between requests,
    /// connections whose request head is still not complete (a client stalling or dripping its
    /// headers), requests whose body has not arrived (a provider's notification arrives in one
    /// piece) and notifications or returns queued for their turn (nothing done for them yet):
    /// what nginx closes when it runs out of connections, and the slow bodies and queues that
    /// would otherwise hold a slot. A client sending its request at once, and
    /// every request being handled or answered, is never shed. How many were shed.
    fn shed_waiting(&self) -> usize {
        let now = clock_ms();
        let mut waiting: Vec<(u64, Arc<ConnState>)> = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns
                .values()
                .filter_map(|c| c.sheddable_since().map(|since| (since, c.clone())))
                .filter(|(since, _)| now.saturating_sub(*since) >= SHED_AFTER_MS)
                .collect()
        };
        waiting.sort_by_key(|(since, _)| *since);
        waiting.truncate(SHED_AT_ONCE);
        for (_, c) in &waiting {
            c.shed.notify_one();
        }
        waiting.len()
    }
}

/// The most a request line and its headers may take (431 past it). Browsers send at most about
/// 16 KiB of headers and providers far less; without it, hyper read up to its buffer's limit
/// (about 400 KiB) per connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Open connections by client address (an IPv6 client per /64).
type OpenByAddress = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// Open connections per client address (`[limits] max_connections_per_ip`).
#[derive(Clone)]
struct PerClient {
    max: usize,
    open: OpenByAddress,
}

/// One connection counted for its client address until dropped.
struct Held {
    key: std::net::IpAddr,
    open: OpenByAddress,
}

impl PerClient {
    fn new(max: usize) -> PerClient {
        PerClient {
            max,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `peer`; `None` when its address already holds the most it
    /// may. A trusted proxy's connections, and every connection when the limit is off, are
    /// held without a count (a proxy's are counted per request instead: [`PerClient::hold`]).
    fn admit(&self, app: &App, peer: std::net::IpAddr) -> Option<Option<Held>> {
        if self.max == 0 || app.config.trusted_proxies.iter().any(|c| c.contains(peer)) {
            return Some(None);
        }
        self.hold(crate::proxy::limit_key(peer)).map(Some)
    }

    /// Counts one more for `key` (a [`crate::proxy::limit_key`]); `None` when it already holds
    /// the most it may. The map holds only keys with something counted, so it is never larger
    /// than the connections open.
    fn hold(&self, key: std::net::IpAddr) -> Option<Held> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Held {
            key,
            open: self.open.clone(),
        })
    }
}

/// The answer to a request through a trusted proxy from a client that already has
/// `max_connections_per_ip` requests in flight: 429 with the standard JSON error.
fn too_many_in_flight(app: &App) -> http::Response<super::body::Body> {
    app.metrics.rate_limited.inc();
    static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(10_000);
    if let Some(unsaid) = SAY.allow() {
        tracing::warn!(
            max_connections_per_ip = app.config.limits.max_connections_per_ip,
            unsaid,
            "a client behind a trusted proxy reached its limit of requests in flight; its next ones are answered 429 ([limits] max_connections_per_ip)"
        );
    }
    let mut r = super::error::too_many("too many requests in flight from this client address", 1);
    let headers = r.headers_mut();
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (up to 30 s).
///
/// Each connection has a header deadline (`[limits] header_read_timeout_ms`), a body deadline
/// (`body_read_timeout_ms`, in [`super::read_body`]) and an idle deadline between requests
/// (`keep_alive_idle_ms`); at most `max_connections` are open at once: past that, connections
/// without a request, or whose request's body is still arriving, for a second are shed
/// ([`Open::shed_waiting`]) and new connections wait in the listen backlog until one closes
/// (logged). One client address holds at
/// most `max_connections_per_ip` of them: past that, its new connections are closed (logged).
/// Behind a trusted proxy, whose connections every client shares, one client (its address from
/// `X-Forwarded-For`; IPv6 per /64) has at most `max_connections_per_ip` requests in flight: past
/// that, its requests are answered 429 (logged), so a client sending slow bodies through the
/// balancer cannot hold every connection.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = app.config.limits.clone();
    set_body_deadline(limits.body_read_timeout_ms);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut last_full_log: Option<std::time::Instant> = None;
    let mut last_client_log: Option<std::time::Instant> = None;
    let per_client = PerClient::new(limits.max_connections_per_ip);
    let in_flight = PerClient::new(limits.max_connections_per_ip);
    let open = Open::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors keeps failing every 50 ms: said once a minute,
                    // with what to do.
                    static SAY: crate::log_limit::Every = crate::log_limit::Every::ms(60_000);
                    if let Some(unsaid) = SAY.allow() {
                        let hint = if e.raw_os_error() == Some(24) {
                            " (the process's open-files limit is reached: raise it, e.g. LimitNOFILE= in the systemd unit, above [limits] max_connections)"
                        } else {
                            ""
                        };
                        tracing::warn!(error = %e, unsaid, "accept failed{hint} (said again every minute while it lasts)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(held) = per_client.admit(&app, remote.ip()) else {
            // Closed at once: one address does not hold the slots everybody shares.
            app.metrics.connections_refused.inc();
            if last_client_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(client = %remote.ip(), max_connections_per_ip = limits.max_connections_per_ip, "a client address reached its connection limit; its new connections are closed ([limits] max_connections_per_ip)");
                last_client_log = Some(std::time::Instant::now());
            }
            continue;
        };
        // A slot for the connection just accepted. None free: connections without a request
        // are shed (only now, when a client is waiting), and this one waits while the next
        // ones wait in the listen backlog.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                app.metrics.connections_waited.inc();
                let shed = open.shed_waiting();
                if last_full_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        shed,
                        "connection limit reached: {} connections open; connections without a request (or still sending its body, or a notification or return waiting for its turn) for 1 s are closed, new connections wait until one closes ([limits] max_connections)",
                        limits.max_connections
                    );
                    last_full_log = Some(std::time::Instant::now());
                }
                // Shedding again every 250 ms while no slot frees up.
                loop {
                    tokio::select! {
                        p = slots.clone().acquire_owned() => break p.expect("the semaphore is never closed"),
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            open.shed_waiting();
                        }
                        _ = &mut shutdown => return finish(listener, graceful).await,
                    }
                }
            }
        };
        let app = app.clone();
        let in_flight = in_flight.clone();
        let from_proxy = in_flight.max > 0
            && app
                .config
                .trusted_proxies
                .iter()
                .any(|c| c.contains(remote.ip()));
        let state = Arc::new(ConnState::new());
        let listed = open.list(state.clone());
        let idle = Duration::from_millis(limits.keep_alive_idle_ms);
        let io = GuardedIo::new(stream, idle, state.clone(), WRITE_STALL);
        let busy = state.clone();
        let metrics_of_task = app.clone();
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            let busy = busy.clone();
            // In flight until its answer's body is written (or dropped): never shed meanwhile,
            // unless it is still waiting for its body or its turn ([`WaitingRequest`]).
            let guard = Busy::new(&busy);
            // Counted until its answer is made (its body read): a client's requests through
            // the proxy, as its connections are counted when direct.
            let slot = from_proxy.then(|| {
                let ip = super::caller::client_ip(&app, remote, &req);
                in_flight.hold(crate::proxy::limit_key(ip)).ok_or(())
            });
            async move {
                let r = match slot {
                    Some(Err(())) => too_many_in_flight(&app),
                    _ => {
                        CONNECTION
                            .scope(busy.clone(), handle(app.clone(), remote, req))
                            .await
                    }
                };
                drop(slot);
                Ok::<_, Infallible>(
                    ledger::streaming(&app, r).map(|body| InFlightBody { body, _busy: guard }),
                )
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    _ = &mut conn => break,
                    // Dropping the connection closes its socket. The count and the body mark
                    // are exact here: both change only inside this task's poll of `conn`, so a
                    // request marked as reading its body has done nothing else yet and is
                    // dropped whole (its client sees the connection closed). A request whose
                    // bytes arrived but are not parsed yet is lost with it, as with any
                    // keep-alive connection a server closes; its client sends it again.
                    _ = state.shed.notified() => if state.sheddable_since().is_some() {
                        state.shed_closed.store(true, std::sync::atomic::Ordering::Release);
                        metrics_of_task.metrics.connections_shed.inc();
                        break;
                    },
                }
            }
            drop(listed);
            drop(held);
            drop(permit);
        });
    }
    finish(listener, graceful).await
}

/// Stops accepting and lets in-flight requests finish (up to 30 s).
async fn finish(
    listener: TcpListener,
    graceful: hyper_util::server::graceful::GracefulShutdown,
) -> anyhow::Result<()> {
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all requests finished"),
        _ = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("gave up waiting for in-flight requests after 30 s"),
    }
    Ok(())
}

/// Serves `GET /metrics` alone, without a token, on `metrics_listen` (an address only the
/// monitoring system reaches).
pub async fn serve_metrics(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let app = app.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let app = app.clone();
                    async move {
                        Ok::<_, Infallible>(if req.uri().path() == "/metrics" {
                            metrics(&app).await
                        } else {
                            not_found(req.method(), req.uri().path())
                        })
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ConnState, GuardedIo};

    #[test]
    fn lingering_sockets_are_bounded() {
        let held: Vec<super::Lingering> = std::iter::from_fn(super::Lingering::start)
            .take(super::MAX_LINGERING + 10)
            .collect();
        assert_eq!(held.len(), super::MAX_LINGERING);
        drop(held);
        assert!(super::Lingering::start().is_some(), "counted back down");
    }

    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(stall: Duration) -> (GuardedIo, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // A request in flight: the idle deadline does not apply, the write deadline does.
        let busy = Arc::new(ConnState::new());
        busy.busy.store(1, std::sync::atomic::Ordering::Release);
        let io = GuardedIo::new(server, Duration::from_secs(600), busy, stall);
        (io, client)
    }

    #[tokio::test]
    async fn a_client_that_never_reads_fails_the_write_at_the_deadline() {
        let (mut io, _client) = pair(Duration::from_millis(300)).await;
        let chunk = vec![b'x'; 64 * 1024];
        let started = std::time::Instant::now();
        let failed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Err(e) = io.write_all(&chunk).await {
                    return e;
                }
            }
        })
        .await
        .expect("the write deadline woke the writer and failed the write");
        assert_eq!(failed.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn an_answer_waiting_for_the_client_to_read_counts_as_in_flight() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let state = Arc::new(ConnState::new());
        let mut io = GuardedIo::new(
            server,
            Duration::from_secs(600),
            state.clone(),
            Duration::from_secs(600),
        );
        // Written until the socket's buffers are full and the write waits.
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while tokio::time::timeout(Duration::from_millis(200), io.write_all(&chunk))
            .await
            .is_ok()
        {
            written += chunk.len();
        }
        assert_eq!(state.in_flight(), 1, "a waiting write is in flight");
        // The client reads it all: the next write goes through and nothing is in flight.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0;
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), client.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                got += n;
            }
            got
        });
        io.write_all(b"end").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(state.in_flight(), 0, "written: nothing in flight");
        assert!(reader.await.unwrap() >= written);
    }

    #[tokio::test]
    async fn a_client_reading_slowly_but_steadily_is_served() {
        let (mut io, mut client) = pair(Duration::from_millis(500)).await;
        let total = 4 * 1024 * 1024;
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0;
            while got < total {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => got += n,
                }
            }
            got
        });
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..total / chunk.len() {
            io.write_all(&chunk).await.unwrap();
        }
        io.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), total);
    }
}
