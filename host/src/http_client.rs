//! Outbound HTTP for payhost's tools (the embedding example, `host/examples/embed.rs`):
//! one request, whole response, through [`net`](crate::net) with the destination allowed
//! explicitly, since the tool was told where to send. The host's own calls (provider requests,
//! shop webhooks) go through `net` under a merchant's policy instead.

use crate::net::{self, Client, Origin, Policy};
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

fn client() -> &'static Arc<Client> {
    static CLIENT: OnceLock<Arc<Client>> = OnceLock::new();
    CLIENT.get_or_init(Client::new)
}

/// Sends `method url` with headers and body; errors are one readable line.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, String> {
    let origin = Origin::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let mut policy = Policy::default();
    policy.allow_explicitly(origin);
    let request = net::Request {
        method: if method.eq_ignore_ascii_case("POST") {
            net::Method::Post
        } else {
            net::Method::Get
        },
        url: url.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        body,
    };
    let limits = net::Limits {
        connect_timeout: timeout,
        answer_timeout: timeout * 2,
        max_response_bytes: 4 << 20,
        truncate: false,
    };
    let r = client()
        .send(&policy, &request, limits)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Answer {
        status: r.status,
        body: r.body,
    })
}
