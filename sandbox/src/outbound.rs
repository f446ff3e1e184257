//! The sandbox's and the demo shop's own outbound HTTP/1.1: one request on a fresh connection
//! (TLS for https, checked against the Mozilla roots), the whole answer read within a deadline.
//! It goes wherever it is told: the sandbox sends notifies to the `notify_url` a merchant gave it,
//! as Alipay does, and the shop calls the payhost it was configured with.

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// Answers larger than this are refused.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn tls() -> Arc<rustls::ClientConfig> {
    static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    })
    .clone()
}

/// Sends `method url` with `headers` and `body`; the answer, or one readable line saying what
/// failed. `timeout` bounds the whole exchange.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, String> {
    match tokio::time::timeout(timeout, exchange(method, url, headers, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{method} {url}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url:?}: only http and https URLs are supported")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut builder = Request::builder()
        .method(method.to_ascii_uppercase().as_str())
        .uri(target)
        .header("host", authority)
        .header("user-agent", "payhost-sandbox")
        .header("connection", "close");
    for (k, v) in headers {
        builder = builder.header(*k, v.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{url}: cannot build the request: {e}"))?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        over(TokioIo::new(stream), request, url).await
    } else {
        over(TokioIo::new(tcp), request, url).await
    }
}

async fn over<IO>(io: IO, request: Request<Full<Bytes>>, url: &str) -> Result<Answer, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = answer.status().as_u16();
    let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("{url}: cannot read the answer: {e}"))?
        .to_bytes();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_and_reads_the_whole_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service =
                hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let host = req.headers()["host"].to_str().unwrap().to_owned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(201)
                            .body(Full::new(Bytes::from(format!(
                                "{host} {}",
                                String::from_utf8_lossy(&body)
                            ))))
                            .unwrap(),
                    )
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let a = send(
            "POST",
            &format!("http://{addr}/notify?x=1"),
            &[("content-type", "text/plain".into())],
            b"success?".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(a.status, 201);
        assert_eq!(a.text(), format!("{addr} success?"));
    }

    #[tokio::test]
    async fn says_what_failed() {
        let e = send("GET", "ftp://x/", &[], Vec::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("only http and https"), "{e}");
        // Nothing listens on port 9 of the loopback.
        let e = send(
            "GET",
            "http://127.0.0.1:9/",
            &[],
            Vec::new(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.contains("cannot connect to 127.0.0.1:9"), "{e}");
    }
}
