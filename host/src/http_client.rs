//! The host's own outbound HTTP (shop webhooks, the sandbox's notifications): one request, whole
//! response, http or https, with a timeout. Built on wasmtime-wasi-http's sender, which payhost
//! already links for the component.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Sends `method url` with headers and body; errors are one readable line.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, String> {
    send_limited(method, url, headers, body, timeout, 16 << 20).await
}

/// [`send`], reading at most `max_body` bytes of the answer (a longer answer's body is dropped
/// unread: the status still counts).
pub async fn send_limited(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, String> {
    let mut builder = http::Request::builder().method(method).uri(url);
    builder = builder.header("user-agent", concat!("payhost/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        builder = builder.header(*k, v.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::from(body)).map_err(|never| match never {}))
        .map_err(|e| format!("bad request to {url}: {e}"))?;
    let options = wasmtime_wasi_http::RequestOptions {
        connect_timeout: Some(timeout),
        first_byte_timeout: Some(timeout),
        between_bytes_timeout: Some(timeout),
    };
    let attempt = async {
        let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let worker = tokio::spawn(io);
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .or_else(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    // The status has arrived; the rest of an over-long answer is not read.
                    Ok(Bytes::new())
                } else {
                    Err(format!("reading the answer: {e:?}"))
                }
            });
        worker.abort();
        Ok(Answer {
            status,
            body: body?,
        })
    };
    tokio::time::timeout(timeout * 2, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer from {url} within {timeout:?}")))
}
