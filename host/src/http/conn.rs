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
/// keep-alive idle timeout; a request that is being handled has its own body deadline).
struct GuardedIo {
    inner: tokio::net::TcpStream,
    idle: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    busy: Arc<std::sync::atomic::AtomicUsize>,
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

impl GuardedIo {
    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
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
                if self.busy.load(std::sync::atomic::Ordering::Acquire) == 0
                    && self.deadline.as_mut().poll(cx).is_ready()
                {
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
                match std::pin::Pin::new(&mut this.inner).poll_write(cx, &swap.bytes[swap.sent..]) {
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
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request as in flight on its connection while it lives.
struct Busy(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Busy {
        counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(counter.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
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
    /// held without a count.
    fn admit(&self, app: &App, peer: std::net::IpAddr) -> Option<Option<Held>> {
        if self.max == 0 || app.config.trusted_proxies.iter().any(|c| c.contains(peer)) {
            return Some(None);
        }
        let key = crate::proxy::limit_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Some(Held {
            key,
            open: self.open.clone(),
        }))
    }
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
/// (`keep_alive_idle_ms`); at most `max_connections` are open at once: past that, new
/// connections wait in the listen backlog until one closes (logged). One client address holds at
/// most `max_connections_per_ip` of them: past that, its new connections are closed (logged).
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
    tokio::pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                app.metrics.connections_refused.inc();
                if last_full_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: {} connections open; new connections wait until one closes ([limits] max_connections)",
                        limits.max_connections
                    );
                    last_full_log = Some(std::time::Instant::now());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
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
                let app = app.clone();
                let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let idle = Duration::from_millis(limits.keep_alive_idle_ms);
                let io = GuardedIo {
                    inner: stream,
                    idle,
                    deadline: Box::pin(tokio::time::sleep(idle)),
                    busy: busy.clone(),
                    swapped: None,
                };
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    let guard = Busy::new(&busy);
                    async move {
                        let r = handle(app.clone(), remote, req).await;
                        drop(guard);
                        Ok::<_, Infallible>(ledger::streaming(&app, r))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
                    .max_header_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(io), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(held);
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
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
