//! The one door out of the component: every `wasi:http` request passes [`OutboundHooks`], which
//! allows only the manifest's origins and the ones the operator configured, and caps timeouts.
//!
//! The URL is checked after wasmtime-wasi-http parsed it into scheme, host and port; the guest
//! cannot set `Host` (a forbidden header), so a relative URL cannot be steered elsewhere.

use super::connections::ConnectionPool;
use http::uri::Scheme;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// `scheme://host:port`, compared exactly (host case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses `https://host`, `http://host:8080`, or a whole URL (path and query are ignored).
    pub fn parse(s: &str) -> Result<Origin, String> {
        let uri: http::Uri = s.trim().parse().map_err(|_| "not a URL".to_string())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("must start with http:// or https://".into()),
        };
        let authority = uri.authority().ok_or("has no host")?;
        if authority.as_str().contains('@') {
            return Err("must not carry user information".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("has no host".into());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Origin { https, host, port })
    }

    fn of_request(uri: &http::Uri) -> Option<Origin> {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Origin { https, host, port })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Answers an allowed request in-process (benchmarks and tests measure the component without
/// sockets); `None` sends it for real.
pub type Responder = Arc<dyn Fn(&http::Uri) -> Option<(u16, bytes::Bytes)> + Send + Sync>;

/// Which origins the component may reach, and what it tried.
pub struct OutboundPolicy {
    allowed: std::sync::RwLock<Vec<Origin>>,
    responder: std::sync::RwLock<Option<Responder>>,
    pub sent: AtomicU64,
    pub denied: AtomicU64,
    /// Upper bound for the guest's connect / first-byte / between-bytes timeouts.
    pub max_timeout: Duration,
    /// Keep-alive connections to the allowed origins.
    connections: Arc<ConnectionPool>,
}

impl OutboundPolicy {
    pub fn new(allowed: Vec<Origin>, max_timeout: Duration) -> Arc<Self> {
        Arc::new(OutboundPolicy {
            allowed: std::sync::RwLock::new(allowed),
            responder: std::sync::RwLock::new(None),
            sent: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            max_timeout,
            connections: ConnectionPool::new(),
        })
    }

    /// Adds an origin (from a URL the operator configured, e.g. a merchant's `gateway_url`).
    pub fn allow(&self, origin: Origin) {
        // Called on every request for the merchant's URLs: the common case only reads.
        if self.allows(&origin) {
            return;
        }
        let mut list = self.allowed.write().expect("policy lock");
        if !list.contains(&origin) {
            list.push(origin);
        }
    }

    pub fn allows(&self, origin: &Origin) -> bool {
        self.allowed.read().expect("policy lock").contains(origin)
    }

    pub fn allowed(&self) -> Vec<Origin> {
        self.allowed.read().expect("policy lock").clone()
    }

    /// Answers allowed requests in-process (after the allow-list check, like a real send).
    pub fn set_responder(&self, responder: Option<Responder>) {
        *self.responder.write().expect("policy lock") = responder;
    }
}

impl std::fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundPolicy")
            .field("allowed", &self.allowed())
            .finish()
    }
}

/// The `wasi:http` hooks of one store.
pub struct OutboundHooks {
    pub policy: Arc<OutboundPolicy>,
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

fn cap(value: Option<Duration>, max: Duration) -> Option<Duration> {
    Some(value.map_or(max, |v| v.min(max)))
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let _ = fut;
        let policy = self.policy.clone();
        let origin = Origin::of_request(request.uri());
        let allowed = origin.as_ref().is_some_and(|o| policy.allows(o));
        if !allowed {
            policy.denied.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "payhost::sandbox",
                uri = %request.uri(),
                "denied an outbound request of the payment component: origin not in the allowed hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        policy.sent.fetch_add(1, Ordering::Relaxed);
        let canned = policy
            .responder
            .read()
            .expect("policy lock")
            .as_ref()
            .and_then(|r| r(request.uri()));
        if let Some((status, body)) = canned {
            return Box::new(async move {
                use http_body_util::{BodyExt, Full};
                // Read what the guest sends, as a server would, so its body write completes.
                let _ = request.into_body().collect().await;
                let body = Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                let response = http::Response::builder()
                    .status(status)
                    .body(body)
                    .map_err(|_| HttpError::InternalError(Some("bad canned response".into())))?;
                Ok((
                    response,
                    Box::new(async { Ok(()) })
                        as Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
                ))
            });
        }
        let max = policy.max_timeout;
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(options.connect_timeout, max),
            first_byte_timeout: cap(options.first_byte_timeout, max),
            between_bytes_timeout: cap(options.between_bytes_timeout, max),
        };
        let pool = policy.connections.clone();
        let origin = origin.expect("checked above");
        Box::new(async move {
            let response = pool
                .send(
                    origin,
                    request,
                    options.connect_timeout.unwrap_or(max),
                    options.first_byte_timeout.unwrap_or(max),
                )
                .await?;
            Ok((
                response,
                Box::new(async { Ok(()) })
                    as Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_and_compare_exactly() {
        let a = Origin::parse("https://wappaygw.alipay.com").unwrap();
        assert_eq!(
            a,
            Origin::parse("https://WAPPAYGW.alipay.com:443/service/rest.htm?x=1").unwrap()
        );
        assert_ne!(a, Origin::parse("http://wappaygw.alipay.com").unwrap());
        assert_ne!(
            a,
            Origin::parse("https://wappaygw.alipay.com:8443").unwrap()
        );
        assert_ne!(
            a,
            Origin::parse("https://wappaygw.alipay.com.evil.example").unwrap()
        );
        assert_eq!(Origin::parse("http://127.0.0.1:9/").unwrap().port, 9);
        for bad in [
            "ftp://x",
            "wappaygw.alipay.com",
            "https://user@host",
            "",
            "https://",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
