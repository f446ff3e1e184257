//! The one door out of payhost: every outbound request (the component's provider calls, shop
//! webhooks, `http_client`'s) is sent here, under a [`Policy`] checked in one place before any
//! socket is opened.
//!
//! - Only the policy's origins are reached (scheme, host and port compared exactly).
//! - The destination is resolved once and every address checked: loopback, private, link-local
//!   and other non-public addresses are refused unless the operator allowed that origin
//!   explicitly (`payhost.toml`), so a URL that arrives through the API cannot reach the host's
//!   own network. The checked address is the one connected to (no second lookup to rebind).
//! - Every request with a body carries `Content-Length` (hyper sets it from the full body), as
//!   legacy gateways and WAFs that read by length expect.
//! - Connect and answer timeouts, a response size cap, keep-alive reuse (see [`pool`]).

mod address;
pub mod pool;

pub use address::{is_public, numeric_host};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pool::ConnectionPool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// `scheme://host:port`, compared exactly (host case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

/// Whether the port an authority writes is one a browser reads the same way: none, empty (the
/// scheme's default), or a number from 1 to 65535. The URI parser takes `host:443.evil.example`
/// and `host:99999` as a host without a port, where a browser refuses the URL or reads another
/// host: a URL payhost stores and a browser follows must mean one thing.
pub fn port_is_plain(authority: &http::uri::Authority) -> bool {
    let text = authority.as_str();
    let after_user = text.rsplit_once('@').map_or(text, |(_, h)| h);
    let port = match after_user.strip_prefix('[') {
        // An IPv6 literal keeps its own colons inside the brackets, and brackets hold nothing
        // else (`[127.0.0.1]` is no URL to a browser, though some clients read it).
        Some(rest) => match rest.split_once(']') {
            Some((addr, _)) if addr.parse::<std::net::Ipv6Addr>().is_err() => return false,
            Some((_, "")) => None,
            Some((_, tail)) => match tail.strip_prefix(':') {
                Some(port) => Some(port),
                // `[::1]x:8080`: no port, but no host a browser reads either.
                None => return false,
            },
            None => return false,
        },
        None => after_user.split_once(':').map(|(_, p)| p),
    };
    match port {
        None | Some("") => true,
        Some(p) => {
            p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
        }
    }
}

impl Origin {
    /// Parses `https://host`, `http://host:8080`, or a whole URL (path and query are ignored).
    pub fn parse(s: &str) -> Result<Origin, String> {
        let uri: http::Uri = s.trim().parse().map_err(|_| "not a URL".to_string())?;
        Origin::of_uri(&uri)
    }

    /// An origin written alone (`https://host[:port]`, a trailing `/` allowed), as an allow-list
    /// holds it. A path, query or fragment is refused: only the origin would count, so
    /// `https://a.example/alipay` would allow more than it reads as allowing.
    pub fn parse_bare(s: &str) -> Result<Origin, String> {
        let t = s.trim();
        let uri: http::Uri = t.parse().map_err(|_| "not a URL".to_string())?;
        if t.contains('#') || uri.query().is_some() || !matches!(uri.path(), "" | "/") {
            return Err("must be scheme://host[:port] only, with no path, query or fragment (e.g. https://openapi.alipay.com)".into());
        }
        let origin = Origin::of_uri(&uri)?;
        let host_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_');
        if !origin.host.chars().all(host_chars) {
            return Err("must name a host (letters, digits, '-' and '.', or an IP address)".into());
        }
        Ok(origin)
    }

    pub fn of_uri(uri: &http::Uri) -> Result<Origin, String> {
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
        if !port_is_plain(authority) {
            return Err("has a port that is not a number from 1 to 65535".into());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Origin { https, host, port })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Where one request may go: the origins it may reach, and which of those the operator allowed
/// explicitly (only those may resolve to non-public addresses).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allowed: Vec<Origin>,
    explicit: Vec<Origin>,
}

impl Policy {
    /// Allows `origin` for public addresses only (e.g. the manifest's provider gateways).
    pub fn allow(&mut self, origin: Origin) {
        if !self.allowed.contains(&origin) {
            self.allowed.push(origin);
        }
    }

    /// Allows `origin` wherever it resolves: the operator wrote it in `payhost.toml`.
    pub fn allow_explicitly(&mut self, origin: Origin) {
        if !self.explicit.contains(&origin) {
            self.explicit.push(origin.clone());
        }
        self.allow(origin);
    }

    pub fn allows(&self, origin: &Origin) -> bool {
        self.allowed.contains(origin)
    }

    pub fn allows_any_address(&self, origin: &Origin) -> bool {
        self.explicit.contains(origin)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One request: the URL, extra headers (not `Host`, `Content-Length`, `Transfer-Encoding`, which
/// the client sets), the whole body. A component's flow asks for one of these too
/// (`runtime::plugin_api::OutgoingRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a request has no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no answer in time: {0}")]
    Timeout(String),
    #[error("refused by the outbound policy: {0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// Limits of one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// From the request written to the whole response read.
    pub answer_timeout: Duration,
    pub max_response_bytes: usize,
    /// Past `max_response_bytes`: false fails the request; true keeps the status and what was
    /// read, and reads no further (a shop's webhook reply: only its status matters).
    pub truncate: bool,
}

/// Answers an allowed request in-process (benchmarks and tests measure the rest of the path
/// without sockets); `None` sends it for real.
pub type Responder = Arc<dyn Fn(&Request) -> Option<(u16, Bytes)> + Send + Sync>;

/// The pooled client and its counters.
pub struct Client {
    pool: Arc<ConnectionPool>,
    responder: RwLock<Option<Responder>>,
    pub sent: AtomicU64,
    pub refused: AtomicU64,
}

/// Headers the client owns: a caller cannot set them.
const OWNED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

impl Client {
    pub fn new() -> Arc<Client> {
        Arc::new(Client {
            pool: ConnectionPool::new(),
            responder: RwLock::new(None),
            sent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    pub fn set_responder(&self, responder: Option<Responder>) {
        *self.responder.write().expect("responder lock") = responder;
    }

    /// Sends `request` if `policy` allows its destination; reads the whole response.
    pub async fn send(
        &self,
        policy: &Policy,
        request: &Request,
        limits: Limits,
    ) -> Result<Response, SendError> {
        let uri: http::Uri = request
            .url
            .parse()
            .map_err(|_| self.refuse(format!("{:?} is not a URL", shown_url(&request.url))))?;
        let origin = Origin::of_uri(&uri)
            .map_err(|e| self.refuse(format!("{}: {e}", shown_url(&request.url))))?;
        if !policy.allows(&origin) {
            return Err(self.refuse(format!("{origin} is not an allowed origin")));
        }
        let canned = self
            .responder
            .read()
            .expect("responder lock")
            .as_ref()
            .and_then(|r| r(request));
        if let Some((status, body)) = canned {
            self.sent.fetch_add(1, Ordering::Relaxed);
            return Ok(Response {
                status,
                headers: Vec::new(),
                body,
            });
        }
        let addresses = tokio::time::timeout(
            limits.connect_timeout,
            resolve(&origin, policy.allows_any_address(&origin)),
        )
        .await
        .map_err(|_| SendError::Timeout(format!("resolving {}", origin.host)))?
        .map_err(|e| match e {
            SendError::Refused(m) => self.refuse(m),
            other => other,
        })?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut builder = http::Request::builder()
            .method(match request.method {
                Method::Get => http::Method::GET,
                Method::Post => http::Method::POST,
            })
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(http::header::HOST, host_header(&origin))
            .header(
                http::header::USER_AGENT,
                concat!("payhost/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &request.headers {
            if OWNED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                continue;
            }
            builder = builder.header(k.as_str(), v.as_str());
        }
        let http_request = builder
            .body(Full::new(Bytes::from(request.body.clone())))
            .map_err(|e| SendError::Failed(format!("bad request: {e}")))?;
        let exchange = async {
            let response = self
                .pool
                .send(&origin, &addresses, http_request, limits.connect_timeout)
                .await?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let body =
                match http_body_util::Limited::new(response.into_body(), limits.max_response_bytes)
                    .collect()
                    .await
                {
                    Ok(b) => b.to_bytes(),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() && limits.truncate => {
                        Bytes::new()
                    }
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                        return Err(SendError::Failed(format!(
                            "the answer is larger than {} bytes",
                            limits.max_response_bytes
                        )))
                    }
                    Err(e) => return Err(SendError::Failed(format!("reading the answer: {e}"))),
                };
            Ok(Response {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(limits.answer_timeout, exchange)
            .await
            .map_err(|_| {
                SendError::Timeout(format!(
                    "no answer from {origin} within {:?}",
                    limits.answer_timeout
                ))
            })?
    }

    fn refuse(&self, why: String) -> SendError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target: "payhost::outbound", reason = %crate::log_limit::clean(&why), "refused an outbound request");
        SendError::Refused(why)
    }
}

/// A URL as a refusal may say it (log lines, error answers, the admin's tables): a user name and
/// password in it as `***`, the query and fragment (signed parameters) left out.
pub fn shown_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

fn host_header(origin: &Origin) -> String {
    let default = if origin.https { 443 } else { 80 };
    let host = if origin.host.contains(':') {
        format!("[{}]", origin.host)
    } else {
        origin.host.clone()
    };
    if origin.port == default {
        host
    } else {
        format!("{host}:{}", origin.port)
    }
}

/// Resolves `origin`; every address must be public unless `any_address`.
async fn resolve(origin: &Origin, any_address: bool) -> Result<Vec<SocketAddr>, SendError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((origin.host.as_str(), origin.port))
        .await
        .map_err(|e| SendError::Failed(format!("cannot resolve {}: {e}", origin.host)))?
        .collect();
    if found.is_empty() {
        return Err(SendError::Failed(format!("{} has no address", origin.host)));
    }
    if !any_address {
        if let Some(bad) = found.iter().find(|a| !is_public(a.ip())) {
            return Err(SendError::Refused(format!(
                "{origin} resolves to the non-public address {}; allow the origin in payhost.toml ([outbound] allowed_origins) to reach it",
                bad.ip()
            )));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod shown_url_tests {
    use super::shown_url;

    #[test]
    fn a_refused_url_is_said_without_its_password_or_query() {
        assert_eq!(
            shown_url("http://hookuser:HOOKPASS123@127.0.0.1:19620/fail/shop2?a=1#f"),
            "http://***@127.0.0.1:19620/fail/shop2"
        );
        assert_eq!(shown_url("https://a.example"), "https://a.example");
        assert_eq!(shown_url("not a url?x"), "not a url");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_a_browser_would_read_otherwise_is_refused() {
        for bad in [
            "http://127.0.0.1:47101.evil.example/",
            "https://gw.partner.example:443.x/",
            "https://shop.example:99999/r",
            "https://shop.example:0/r",
            "https://[::1]:7x/",
            "http://[::1]x:8080/",
            "http://[127.0.0.1]:8080/",
            "https://[shop.example]/r",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
            assert_eq!(crate::config::origin_of(bad), None, "{bad}");
            assert!(!crate::config::is_http_url(bad), "{bad}");
        }
        for good in [
            "https://shop.example/r",
            "https://shop.example:/r",
            "https://shop.example:8443/r",
            "http://[::1]:8080/",
            "http://[::1]/",
        ] {
            assert!(Origin::parse(good).is_ok(), "{good}");
            assert!(crate::config::origin_of(good).is_some(), "{good}");
            assert!(crate::config::is_http_url(good), "{good}");
        }
    }

    #[test]
    fn origins_parse_and_compare_exactly() {
        let a = Origin::parse("https://gateway.pay.example").unwrap();
        assert_eq!(
            a,
            Origin::parse("https://GATEWAY.pay.example:443/service/rest.htm?x=1").unwrap()
        );
        assert_ne!(a, Origin::parse("http://gateway.pay.example").unwrap());
        assert_ne!(
            a,
            Origin::parse("https://gateway.pay.example:8443").unwrap()
        );
        assert_ne!(
            a,
            Origin::parse("https://gateway.pay.example.evil.example").unwrap()
        );
        assert_eq!(Origin::parse("http://127.0.0.1:9/").unwrap().port, 9);
        for bad in [
            "ftp://x",
            "gateway.pay.example",
            "https://user@host",
            "",
            "https://",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    fn limits() -> Limits {
        Limits {
            connect_timeout: Duration::from_secs(2),
            answer_timeout: Duration::from_secs(2),
            max_response_bytes: 1 << 20,
            truncate: false,
        }
    }

    /// A listener that counts the connections it accepts (and answers nothing).
    async fn counting_listener() -> (u16, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn a_refused_origin_opens_no_socket() {
        let (port, accepted) = counting_listener().await;
        let client = Client::new();
        let url = format!("http://127.0.0.1:{port}/latest/meta-data/");
        let request = Request {
            method: Method::Get,
            url: url.clone(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        // Not allowed at all.
        let r = client.send(&Policy::default(), &request, limits()).await;
        assert!(matches!(r, Err(SendError::Refused(_))), "{r:?}");
        // Allowed, but only for public addresses: loopback is refused before connecting.
        let mut policy = Policy::default();
        policy.allow(Origin::parse(&url).unwrap());
        let r = client.send(&policy, &request, limits()).await;
        assert!(
            matches!(&r, Err(SendError::Refused(m)) if m.contains("non-public")),
            "{r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no socket was opened");
        assert_eq!(client.refused.load(Ordering::Relaxed), 2);
        // Explicitly allowed by the operator: it connects.
        let mut policy = Policy::default();
        policy.allow_explicitly(Origin::parse(&url).unwrap());
        let _ = client.send(&policy, &request, limits()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bodies_go_out_with_content_length() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8_lossy(&head).to_ascii_lowercase()
        });
        let url = format!("http://127.0.0.1:{port}/gateway");
        let mut policy = Policy::default();
        policy.allow_explicitly(Origin::parse(&url).unwrap());
        let r = Client::new()
            .send(
                &policy,
                &Request {
                    method: Method::Post,
                    url,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: b"a=1&b=2".to_vec(),
                },
                limits(),
            )
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        let head = seen.await.unwrap();
        assert!(head.contains("content-length: 7\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
    }
}
