//! Request bodies (read with a size limit and a deadline) and the answers' builders.

use crate::service::ApiError;
use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub type Body = Full<Bytes>;

/// A provider's notification is a few KiB; anything above this is refused (413).
pub const MAX_NOTIFY_BODY: usize = 32 * 1024;
/// The buyer's return carries a dozen short fields in its query; a longer one is refused (414).
pub const MAX_RETURN_QUERY: usize = 8 * 1024;
/// API bodies carry PEM keys at most.
pub const MAX_API_BODY: usize = 256 * 1024;

/// How long a request body may take to arrive (`[limits] body_read_timeout_ms`; set by
/// [`super::conn::serve`]).
static BODY_DEADLINE_MS: AtomicU64 = AtomicU64::new(10_000);

pub(super) fn set_body_deadline(ms: u64) {
    BODY_DEADLINE_MS.store(ms, Ordering::Relaxed);
}

fn body_deadline() -> Duration {
    Duration::from_millis(BODY_DEADLINE_MS.load(Ordering::Relaxed))
}

/// Reads the body up to `limit` bytes within the body deadline; a larger one is a 413, a late one
/// a 408 (and the connection is closed, the rest of the body unread).
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    // A declared length above the limit is refused before a byte is read (nor is a client that
    // asked `Expect: 100-continue` told to send it).
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        super::conn::body_left_unread();
        return Err(too_large(limit));
    }
    // Marked on its connection while it arrives: a body that has not arrived after a second
    // may be shed when every connection slot is taken (`conn::Open::shed_waiting`).
    let reading = super::conn::WaitingRequest::start();
    let read = tokio::time::timeout(body_deadline(), Limited::new(body, limit).collect()).await;
    drop(reading);
    let Ok(read) = read else {
        return Err(ApiError::new(
            408,
            "body_timeout",
            format!(
                "the request body did not arrive within {} ms",
                body_deadline().as_millis()
            ),
        ));
    };
    match read {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            super::conn::body_left_unread();
            Err(too_large(limit))
        }
        Err(e) => Err(ApiError::new(
            400,
            "bad_body",
            format!("cannot read the request body: {e}"),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "body_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// A JSON body as `T`: refused with `400 invalid_json`, `what` (the object expected) and serde's
/// reason, naming the field refused (its path: `refund_key`, `settings.partner`, an unknown
/// key) where serde can tell. `quiet` leaves the refused value out of the message (it may be
/// a secret).
pub fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
    quiet: bool,
) -> Result<T, ApiError> {
    let said = |reason: String| match quiet {
        true => crate::config::unquoted(&plain_reason(&reason)),
        false => plain_reason(&reason),
    };
    // serde also reads a struct from a list of its fields in order: every body here is an
    // object, and a list is refused as one, not as its first element's type.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            400,
            "invalid_json",
            format!("the body is not {what}: a list was sent, a JSON object is expected"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let reason = said(e.inner().to_string());
        let path = e.path().to_string();
        // The path names the refused value, an unknown key included. No field when it starts
        // at no key: "." is the object itself, `[0]` a list given for it, and a `?` segment a
        // syntax error before any key was read (a trailing comma).
        let keyed = path.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        // A key given twice is refused at the object ("."): serde names it in its reason.
        let twice = e
            .inner()
            .to_string()
            .strip_prefix("duplicate field `")
            .and_then(|r| r.split('`').next())
            .map(|k| match path.as_str() {
                "." => k.to_owned(),
                p => format!("{p}.{k}"),
            });
        let field = (keyed && !path.contains('?')).then_some(path).or(twice);
        let message = format!("the body is not {what}: {reason}");
        match field {
            Some(f) => ApiError::field(400, "invalid_json", &f, format!("{f}: {message}")),
            None => ApiError::new(400, "invalid_json", message),
        }
    })?;
    // Anything after the object (a second one, stray text).
    de.end().map_err(|e| {
        ApiError::new(
            400,
            "invalid_json",
            format!("the body is not {what}: {}", said(e.to_string())),
        )
    })?;
    Ok(value)
}

/// serde's reason in the API's words: what is expected, not the Rust type behind it
/// (`expected struct CreatePayment with 11 elements`, `expected u32`).
fn plain_reason(reason: &str) -> String {
    let Some((head, expected)) = reason.split_once("expected ") else {
        return reason.to_owned();
    };
    // The rest after the type: serde_json's " at line 1 column 7".
    let (ty, rest) = match expected.find(" at line ") {
        Some(at) => expected.split_at(at),
        None => (expected, ""),
    };
    let said = if ty.starts_with("struct ") || ty == "map" {
        "a JSON object"
    } else if matches!(ty, "u8" | "u16" | "u32" | "u64" | "usize") {
        "a whole number, 0 or more"
    } else if matches!(ty, "i8" | "i16" | "i32" | "i64" | "isize") {
        "a whole number"
    } else {
        return reason.to_owned();
    };
    let head = head
        .replace("invalid type: sequence", "invalid type: a list")
        .replace("invalid type: map", "invalid type: an object");
    format!("{head}expected {said}{rest}")
}

pub fn text(status: u16, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())))
        .expect("valid response")
}

/// A page payhost renders (the admin's, and the buyer's page for a return that could not be
/// confirmed): no cache keeps it and no other site learns its address; `csp` is its policy
/// (`admin::content_security_policy` or `admin::page_security_policy`).
pub fn html(status: u16, body: String, csp: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "same-origin")
        .header("content-security-policy", csp)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

pub fn json(status: u16, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}

pub fn redirect(location: &str) -> Response<Body> {
    Response::builder()
        .status(302)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        out_trade_no: String,
    }

    #[test]
    fn a_refused_body_names_its_field_and_a_syntax_error_none() {
        let field = |body: &str| {
            super::parse_json::<Order>(body.as_bytes(), "an order", false)
                .unwrap_err()
                .field
        };
        assert_eq!(
            field(r#"{"out_trade_no":5}"#).as_deref(),
            Some("out_trade_no")
        );
        assert_eq!(
            field(r#"{"out_trade_no":"A","currency":"USD"}"#).as_deref(),
            Some("currency")
        );
        // A key twice: named, as its message names it.
        assert_eq!(
            field(r#"{"out_trade_no":"A","out_trade_no":"B"}"#).as_deref(),
            Some("out_trade_no")
        );
        assert_eq!(field(r#"{"out_trade_no":"A",}"#), None);
        assert_eq!(field(r#"{"out_trade_no":"A"} x"#), None);
        assert_eq!(field("[1]"), None);
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Expiring {
        pay_expire: Option<u32>,
    }

    /// What is refused is said as the API's caller knows it, not as the Rust type behind it.
    #[test]
    fn a_refused_body_names_no_rust_type() {
        let message = |body: &str| {
            super::parse_json::<Expiring>(body.as_bytes(), "a payment", false)
                .unwrap_err()
                .message
        };
        for (body, said) in [
            (r#"["a"]"#, "a list was sent, a JSON object is expected"),
            (r#""a""#, "expected a JSON object"),
            (
                r#"{"pay_expire":"abc"}"#,
                "expected a whole number, 0 or more",
            ),
            (r#"{"pay_expire":-5}"#, "expected a whole number, 0 or more"),
            // serde's own words stay where they are already plain.
            (r#"{"pay_expire":1"#, "EOF while parsing"),
        ] {
            let m = message(body);
            assert!(m.contains(said), "{body}: {m}");
            assert!(!m.contains("Expiring") && !m.contains("u32"), "{body}: {m}");
        }
    }
}
