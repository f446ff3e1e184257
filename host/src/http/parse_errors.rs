//! hyper's own answers to a request it cannot parse (a malformed request line or header, a
//! request head over the limit, a URI too long): it writes the status with an empty body and
//! closes the connection, before any of payhost's routes sees the request. The connection's
//! writer ([`super::conn`]) swaps that bare head for the same status with payhost's one error
//! body (`{"error":{"code":…,"message":…,"field":null}}`), so every error a program gets from
//! payhost reads the same way.

use super::error::ApiError;

/// The statuses hyper 1.x answers by itself (`proto::h1::role::Server::on_error`).
fn described(status: u16) -> Option<ApiError> {
    let (code, message) = match status {
        400 => (
            "bad_request",
            "the request is not valid HTTP/1.1: its request line or a header could not be read",
        ),
        414 => ("uri_too_long", "the request's URI is too long"),
        431 => (
            "headers_too_large",
            "the request line and headers are too large (over 64 KiB) or too many (over 100)",
        ),
        _ => return None,
    };
    Some(ApiError::new(status, code, message))
}

/// The JSON version of `head` when it is one of hyper's bare parse-error answers: a `4xx`
/// status line with exactly `content-length: 0`, `date` and (HTTP/1.1) `connection: close`,
/// nothing else (payhost's own answers always carry a `content-type`). `None` for anything else.
pub fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > 512 || !is_4xx_head(head) || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    // After an HTTP/1.0 keep-alive request hyper answers in HTTP/1.0, without `connection`.
    let http10 = head.starts_with(b"HTTP/1.0");
    let text = std::str::from_utf8(&head[..head.len() - 4]).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    let (mut close, mut empty, mut date) = (false, false, None);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "connection" if value.eq_ignore_ascii_case("close") && !close => close = true,
            "content-length" if value == "0" && !empty => empty = true,
            "date" if date.is_none() => date = Some(value),
            _ => return None,
        }
    }
    if !(empty && (close || http10)) {
        return None;
    }
    let body = described(status)?.body().to_string();
    let mut out = format!(
        // The two headers every other answer carries (router::handle).
        "{status_line}\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(date) = date {
        out.push_str("date: ");
        out.push_str(date);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

/// A status line of a 4xx answer (what [`with_json_body`] looks further at).
pub fn is_4xx_head(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HTTP/1.1 4") || bytes.starts_with(b"HTTP/1.0 4")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Fri, 04 Dec 2026 15:56:42 GMT";

    #[test]
    fn hypers_bare_answers_get_the_error_body() {
        for (status, code) in [
            ("400 Bad Request", "bad_request"),
            ("414 URI Too Long", "uri_too_long"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
        ] {
            let head = format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n\r\n"
            );
            let out = String::from_utf8(with_json_body(head.as_bytes()).unwrap()).unwrap();
            let (top, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(top.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{top}");
            assert!(
                top.contains("\r\ncontent-type: application/json\r\n"),
                "{top}"
            );
            assert!(top.contains("\r\nconnection: close\r\n"), "{top}");
            assert!(
                top.contains("\r\nx-content-type-options: nosniff\r\n")
                    && top.contains("\r\ncache-control: no-store\r\n"),
                "{top}"
            );
            assert!(top.ends_with(DATE), "{top}");
            assert!(top.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"]["code"], code);
            assert!(json["error"]["field"].is_null());
            assert!(json["error"]["message"].as_str().unwrap().len() > 10);
        }
        // HTTP/1.0 (after a keep-alive HTTP/1.0 request): no `connection` header of hyper's.
        let head = format!("HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n{DATE}\r\n\r\n");
        let out = String::from_utf8(with_json_body(head.as_bytes()).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.0 400 Bad Request\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n"), "{out}");
        assert!(out.ends_with("}"), "{out}");
    }

    #[test]
    fn payhosts_own_answers_and_anything_else_pass_unchanged() {
        for head in [
            // payhost's own error: it has a content type and a body.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 52\r\n{DATE}\r\n\r\n"),
            // An empty answer that keeps the connection (a redirect's, a 204's) is not hyper's.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{DATE}\r\n\r\n"),
            format!("HTTP/1.1 204 No Content\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n\r\n"),
            format!("HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n\r\n"),
            // A status hyper does not send by itself.
            format!("HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n\r\n"),
            // A head with a body behind it, or cut short.
            format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n\r\nx"),
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\n".to_owned(),
            format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ncontent-length: 0\r\n{DATE}\r\n\r\n"),
        ] {
            assert_eq!(with_json_body(head.as_bytes()), None, "{head:?}");
        }
    }
}
