//! Keep-alive connections for outbound HTTP.
//!
//! A notify may ask the provider to confirm it (a request per notify); opening a TCP (and TLS) connection for each one
//! costs more than the verification itself. The pool keeps idle HTTP/1.1 connections per origin
//! and hands one out only when hyper says it is ready for a new request and it has been idle for
//! less than [`MAX_IDLE`] (well under the keep-alive of common servers, so a reused connection is
//! not one the server is closing). A connection goes back to the pool only after its response
//! body has been read to the end.

use super::{Origin, SendError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// Idle connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 64;
/// A connection idle for longer is closed rather than reused.
const MAX_IDLE: Duration = Duration::from_secs(2);

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

pub struct ConnectionPool {
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
    tls: Arc<rustls::ClientConfig>,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

impl ConnectionPool {
    pub fn new() -> Arc<ConnectionPool> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(ConnectionPool {
            idle: Mutex::default(),
            tls: Arc::new(tls),
        })
    }

    /// Sends `request` (its URI the path only) to `origin` on an idle connection or a new one
    /// to one of `addresses` (already resolved and checked by the policy).
    pub async fn send(
        self: &Arc<Self>,
        origin: &Origin,
        addresses: &[SocketAddr],
        request: http::Request<Full<Bytes>>,
        connect_timeout: Duration,
    ) -> Result<http::Response<PooledBody>, SendError> {
        let mut sender = match self.take(origin) {
            Some(s) => s,
            None => self.connect(origin, addresses, connect_timeout).await?,
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Failed(format!("{origin}: {e}")))?;
        let pool = self.clone();
        let origin = origin.clone();
        Ok(response.map(|incoming| PooledBody {
            incoming,
            give_back: Some((pool, origin, sender)),
        }))
    }

    fn take(&self, origin: &Origin) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(origin)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < MAX_IDLE && c.sender.is_ready() {
                return Some(c.sender);
            }
        }
        None
    }

    fn give_back(&self, origin: Origin, sender: SendRequest<Full<Bytes>>) {
        if !sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(origin).or_default();
        list.retain(|c| c.since.elapsed() < MAX_IDLE && !c.sender.is_closed());
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(
        &self,
        origin: &Origin,
        addresses: &[SocketAddr],
        timeout: Duration,
    ) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let failed = |what: String| SendError::Failed(format!("{origin}: {what}"));
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addresses)
                .await
                .map_err(|e| failed(format!("connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = if origin.https {
                let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                    .map_err(|e| failed(format!("TLS name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| failed(format!("TLS: {e}")))?;
                Box::new(tls)
            } else {
                Box::new(tcp)
            };
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| failed(format!("handshake: {e}")))?;
            // The connection task ends when the connection closes (or the pool drops it).
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(sender)
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| SendError::Timeout(format!("connecting to {origin}")))?
    }
}

/// A response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    incoming: Incoming,
    give_back: Option<(Arc<ConnectionPool>, Origin, SendRequest<Full<Bytes>>)>,
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Read to the end without polling past it (Content-Length reached): still reusable.
        if self.incoming.is_end_stream() {
            if let Some((pool, origin, sender)) = self.give_back.take() {
                pool.give_back(origin, sender);
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.incoming).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                if let Some((pool, origin, sender)) = self.give_back.take() {
                    pool.give_back(origin, sender);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // A broken response: the connection is not reused.
                self.give_back = None;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn get(path: &str) -> http::Request<Full<Bytes>> {
        http::Request::get(path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// A plain HTTP/1.1 server answering `ok` with keep-alive; counts accepted connections.
    async fn server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn connections_are_reused_after_the_body_is_read() {
        let (addr, accepted) = server().await;
        let pool = ConnectionPool::new();
        let origin = Origin::parse(&format!("http://{addr}")).unwrap();
        for _ in 0..5 {
            let r = pool
                .send(
                    &origin,
                    &[addr],
                    get("/gateway.do?x=1"),
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn https_origins_speak_tls() {
        // A plain-text server behind an https origin: the pool must attempt TLS and fail with a
        // TLS error, never send the request in clear text.
        let (addr, _) = server().await;
        let pool = ConnectionPool::new();
        let origin = Origin::parse(&format!("https://{addr}")).unwrap();
        let r = pool
            .send(&origin, &[addr], get("/"), Duration::from_secs(2))
            .await;
        assert!(
            matches!(&r, Err(SendError::Failed(m)) if m.contains("TLS")),
            "{:?}",
            r.err()
        );
    }
}
