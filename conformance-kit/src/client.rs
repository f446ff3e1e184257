//! The kit's HTTP client: one connection per request (plain or TLS with the web's roots), the
//! whole answer read, redirects not followed (the cases look at them), a deadline on everything.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// Every request's deadline, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `status` and the start of the body, for failure messages.
    pub fn brief(&self) -> String {
        let text = self.text();
        // payhost's error says what to do at its end: said whole, not cut mid-word.
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let message = v["error"]["message"].as_str()?;
                Some(match v["error"]["code"].as_str() {
                    Some(code) => format!("{code}: {message}"),
                    None => message.to_owned(),
                })
            })
            .filter(|m| m.len() <= 2000);
        let (cut, more) = match message {
            Some(m) => (m, ""),
            None => {
                let cut: String = text.chars().take(300).collect();
                let more = if cut.len() < text.len() { "…" } else { "" };
                (cut, more)
            }
        };
        let hint = if self.status == 429 {
            " (a rate limit answered before the host judged the request: raise the host's [limits], such as notify_per_ip_per_s and notify_per_merchant_per_s, for the kit's run)"
        } else {
            ""
        };
        format!("HTTP {} {}{more}{hint}", self.status, cut.trim())
    }

    /// Whether the host judged the request, rather than a rate limit or a missing route turning
    /// it away first: a refusal that is one of those proves nothing. (A `5xx` can be a verdict: a
    /// host may answer an unconfirmed notify `503` so that the provider sends it again.)
    pub fn is_verdict(&self) -> bool {
        self.status != 429 && self.status != 404
    }
}

/// Sends one request; `Err` says what went wrong on the way (no answer is not a status).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, String> {
    match tokio::time::timeout(timeout, send_now(method, url, headers, body)).await {
        Ok(r) => r.map_err(|e| format!("{method} {url}: {e}")),
        Err(_) => Err(format!(
            "{method} {url}: no answer within {} s",
            timeout.as_secs_f64()
        )),
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    send("GET", url, headers, Vec::new(), DEFAULT_TIMEOUT).await
}

pub async fn post_form(url: &str, body: &str) -> Result<Reply, String> {
    send(
        "POST",
        url,
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        body.as_bytes().to_vec(),
        DEFAULT_TIMEOUT,
    )
    .await
}

async fn send_now(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Reply, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("only http and https URLs".into()),
    };
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let stream = TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("user-agent", "payhost-conformance");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    if tls {
        let name = rustls::pki_types::ServerName::try_from(bare_host)
            .map_err(|e| format!("bad TLS server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(|e| {
                // A plain-HTTP server answers TLS's hello with HTTP: the URL's scheme is wrong.
                if e.to_string().contains("InvalidContentType") {
                    format!("TLS: {e}: the server does not speak TLS; if it serves plain HTTP (payhost does unless a proxy in front adds TLS), use http://")
                } else {
                    format!("TLS: {e}")
                }
            })?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(stream), request).await
    }
}

async fn exchange<T>(io: T, request: http::Request<Full<Bytes>>) -> Result<Reply, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Whether a TCP connection to the URL's host and port opens (within `timeout`); `Err` says how
/// it failed in a few words (`connection refused`, `no answer within 10 s`, …).
pub async fn connects(url: &str, timeout: Duration) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("only http:// and https:// URLs".into()),
    };
    let host = uri.host().ok_or("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(io_words(&e)),
    }
}

/// An I/O error in a few words, without the OS error number.
pub fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "timed out".into(),
        K::AddrNotAvailable => "address not available".into(),
        K::PermissionDenied => "permission denied".into(),
        K::AddrInUse => "address in use".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// `s` as one URL path segment: every byte but letters, digits and `-._~` percent-encoded, so an
/// id never reaches another path or a query.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/merchants/{id}{rest}` with the id encoded (`rest` is the kit's own, e.g. `/payments`).
pub fn merchant_path(id: &str, rest: &str) -> String {
    format!("/merchants/{}{rest}", segment(id))
}

/// An http(s) origin as the kit takes it (`--against`, `--sandbox-public-url`): scheme, host and
/// port only, without a trailing slash. `Err` says what is wrong in a few words; `what` names the
/// URL in it (`the host's`).
pub fn origin(url: &str, what: &str) -> Result<String, String> {
    let no_host =
        |scheme: &str| format!("the URL has no host: give {what} URL as {scheme}://host:port");
    let Some((scheme, rest)) = url.split_once("://") else {
        // `http:` or `https:/x`: a scheme without its `//`, not a host to put one in front of.
        if let Some((scheme, _)) = url.split_once(':') {
            if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
                return Err(no_host(scheme));
            }
        }
        let url = url.trim_end_matches('/');
        if url.is_empty() {
            return Err(format!("give {what} URL, such as http://127.0.0.1:8080"));
        }
        return Err(format!(
            "give {what} URL with its scheme, such as http://{url} or https://{url}"
        ));
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(format!("the scheme must be http or https, not {scheme}"));
    }
    if rest.trim_end_matches('/').is_empty() {
        return Err(no_host(scheme));
    }
    let url = url.trim_end_matches('/');
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err("the URL has no host".into());
    };
    let bare = format!("{scheme}://{authority}");
    if url != bare {
        return Err(format!(
            "give {what} base URL without a path or query, e.g. {bare}"
        ));
    }
    Ok(bare)
}

/// The origin a request to `url` goes to, `scheme://host[:port]` in lower case (a default port
/// left out, user info dropped); `None` when `url` is not an absolute http(s) URL with a host.
pub fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = uri.authority()?;
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The shop API of one host, as the operator (or a shop) calls it.
#[derive(Clone)]
pub struct HostApi {
    /// Without a trailing slash.
    pub base: String,
    token: String,
}

impl HostApi {
    pub fn new(base: &str, token: &str) -> HostApi {
        HostApi {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `/v1` call with the bearer token and an optional JSON body.
    pub async fn v1(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, String> {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        send(
            method,
            &self.url(&format!("/v1{path}")),
            &headers,
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            DEFAULT_TIMEOUT,
        )
        .await
    }

    /// Posts a provider notification to `url` (a path of this host or a full URL).
    pub async fn post_notify(&self, url: &str, body: Vec<u8>) -> Result<Reply, String> {
        send(
            "POST",
            url,
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    /// Posts to the host's notify endpoint of `merchant`: `/notify/{merchant}`, or the older
    /// `/alipay/{merchant}/notify` when the host has no such route (an answer of 404 that is the
    /// host's "no route" JSON, not the notify endpoint's refusal).
    pub async fn post_notify_to(&self, merchant: &str, body: Vec<u8>) -> Result<Reply, String> {
        let merchant = segment(merchant);
        let r = self
            .post_notify(&self.url(&format!("/notify/{merchant}")), body.clone())
            .await?;
        if r.status == 404 && is_no_route(&r) {
            return self
                .post_notify(&self.url(&format!("/alipay/{merchant}/notify")), body)
                .await;
        }
        Ok(r)
    }
}

/// Whether a 404 is the host saying it has no such route (its JSON error `not_found`).
pub fn is_no_route(r: &Reply) -> bool {
    r.status == 404 && r.json()["error"]["code"].as_str() == Some("not_found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_what_is_wrong_with_them() {
        assert_eq!(
            origin("http://127.0.0.1:8099/", "the kit's").unwrap(),
            "http://127.0.0.1:8099"
        );
        assert_eq!(
            origin("https://kit.example", "the kit's").unwrap(),
            "https://kit.example"
        );
        assert_eq!(
            origin("127.0.0.1:1", "the host's").unwrap_err(),
            "give the host's URL with its scheme, such as http://127.0.0.1:1 or https://127.0.0.1:1"
        );
        assert!(origin("http://h:1/kit", "the kit's")
            .unwrap_err()
            .contains("without a path or query, e.g. http://h:1"));
        assert!(origin("ftp://h", "the kit's")
            .unwrap_err()
            .contains("must be http or https, not ftp"));
        // A scheme and nothing else: no host, said so (it was "such as http://http: or
        // https://http:").
        for url in ["http://", "https:///", "http:", "HTTPS:", "http:/"] {
            let e = origin(url, "the kit's").unwrap_err();
            assert!(
                e.starts_with("the URL has no host: give the kit's URL as "),
                "{url}: {e}"
            );
            assert!(!e.contains("://http"), "{url}: {e}");
        }
        assert_eq!(
            origin("", "the kit's").unwrap_err(),
            "give the kit's URL, such as http://127.0.0.1:8080"
        );
    }
}
