//! Keep-alive connections for the component's outbound HTTP.
//!
//! Every notify asks Alipay's `notify_verify`; opening a TCP (and TLS) connection for each one
//! costs more than the verification itself. The pool keeps idle HTTP/1.1 connections per origin
//! and hands one out only when hyper says it is ready for a new request and it has been idle for
//! less than [`MAX_IDLE`] (well under the keep-alive of common servers, so a reused connection is
//! not one the server is closing). A connection goes back to the pool only after its response
//! body has been read to the end.

use super::outbound::Origin;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// Idle connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 64;
/// A connection idle for longer is closed rather than reused.
const MAX_IDLE: Duration = Duration::from_secs(2);

struct Idle {
    sender: SendRequest<WasiBody>,
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

    /// Sends `request` to `origin` on an idle connection or a new one.
    pub async fn send(
        self: &Arc<Self>,
        origin: Origin,
        mut request: http::Request<WasiBody>,
        connect_timeout: Duration,
        first_byte_timeout: Duration,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let mut sender = match self.take(&origin) {
            Some(s) => s,
            None => self.connect(&origin, connect_timeout).await?,
        };
        // On the wire the request line carries the path only (no proxy in between).
        *request.uri_mut() = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)?
            .map_err(HttpError::from)?;
        let pool = self.clone();
        Ok(response.map(|incoming| {
            http_body_util::BodyExt::boxed_unsync(PooledBody {
                incoming,
                give_back: Some((pool, origin, sender)),
            })
        }))
    }

    fn take(&self, origin: &Origin) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(origin)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < MAX_IDLE && c.sender.is_ready() {
                return Some(c.sender);
            }
        }
        None
    }

    fn give_back(&self, origin: Origin, sender: SendRequest<WasiBody>) {
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
        timeout: Duration,
    ) -> Result<SendRequest<WasiBody>, HttpError> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((origin.host.as_str(), origin.port))
                .await
                .map_err(HttpError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = if origin.https {
                let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                    .map_err(HttpError::InvalidDnsNameError)?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(HttpError::Tls)?;
                Box::new(tls)
            } else {
                Box::new(tcp)
            };
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(HttpError::from)?;
            // The connection task ends when the connection closes (or the pool drops it).
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(sender)
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
    }
}

/// A response body that returns its connection to the pool once read to the end.
struct PooledBody {
    incoming: Incoming,
    give_back: Option<(Arc<ConnectionPool>, Origin, SendRequest<WasiBody>)>,
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
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
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
                Poll::Ready(Some(Err(HttpError::from(e))))
            }
            other => other.map(|f| f.map(|r| r.map_err(HttpError::from))),
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
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn get(url: &str) -> http::Request<WasiBody> {
        http::Request::get(url)
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap()
    }

    /// A plain HTTP/1.1 server answering `ok` with keep-alive; counts accepted connections.
    async fn server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
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
        (port, accepted)
    }

    #[tokio::test]
    async fn connections_are_reused_after_the_body_is_read() {
        let (port, accepted) = server().await;
        let pool = ConnectionPool::new();
        let origin = Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        for _ in 0..5 {
            let r = pool
                .send(
                    origin.clone(),
                    get(&format!("http://127.0.0.1:{port}/gateway.do?x=1")),
                    Duration::from_secs(2),
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
        let (port, _) = server().await;
        let pool = ConnectionPool::new();
        let origin = Origin::parse(&format!("https://127.0.0.1:{port}")).unwrap();
        let r = pool
            .send(
                origin,
                get(&format!("https://127.0.0.1:{port}/")),
                Duration::from_secs(2),
                Duration::from_secs(2),
            )
            .await;
        assert!(matches!(r, Err(HttpError::Tls(_))), "{r:?}");
    }
}
