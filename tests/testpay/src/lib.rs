//! TestPay: a tiny payment component for a made-up provider, next to the Alipay one. It implements
//! the `payment-plugin` world of `wit/v0.2.0/payment.wit` with its own provider id (`testpay`) and
//! its own settings, so it proves that the host knows no provider: it loads, gets its admin form,
//! its notify path and passes `payhost conformance --component` without any change to the host.
//!
//! # Settings
//! | name          | kind   | rule                                                        |
//! |---------------|--------|-------------------------------------------------------------|
//! | `merchant_no` | text   | required; 1–32 letters or digits                            |
//! | `api_secret`  | secret | required; at least 16 characters                            |
//! | `endpoint`    | url    | optional, default `https://pay.testpay.example`             |
//! | `mode`        | select | `redirect` (default) or `post`                              |
//!
//! `validate-settings` reports every failing field by name and returns the settings normalised
//! (trimmed, trailing `/` of the endpoint dropped, defaults filled in).
//!
//! # Protocol
//! The **canonical string** of a set of fields is their `key=value` pairs (raw values, not
//! URL-encoded), sorted by key (bytewise), joined with `&`; the field `sign` is left out. The
//! **signature** `sign` is the lowercase hex HMAC-SHA256 of the canonical string with the merchant's
//! `api_secret` as the key. A field may appear once only.
//!
//! - **Payment** (`start-payment`, any product but `app`): no provider call. The buyer goes to
//!   `{endpoint}/pay` with the fields `merchant_no`, `out_trade_no`, `amount` (the order's
//!   total-fee, positive with at most two decimals, normalised to two: `1.5` → `1.50`),
//!   `notify_url`, `return_url` and `sign`: a GET redirect (`mode = redirect`) or a form posted
//!   to the same address (`mode = post`; the redirect URL then carries the same fields as a query).
//! - **Notification** (POSTed form to the host's notify URL): `merchant_no`, `out_trade_no`,
//!   `amount`, `status`, `notify_id` are required, `trade_no` and `notify_time` optional, `sign`
//!   over all the others. `status` is `PAID` (event paid), `WAITING` (waiting) or `CLOSED`
//!   (closed). There is no confirmation call: a good signature is enough. The host answers `OK`
//!   once it has stored the result, `RETRY` to have it sent again.
//! - **Return** (the buyer's browser on the host's return URL): `merchant_no`, `out_trade_no`,
//!   optional `trade_no` and `status`, `sign` over all the others.
//! - Channel lists, trade queries and app results do not exist at TestPay: those calls answer a
//!   `malformed` plugin error saying so (they never trap).
//!
//! Inputs are bounded (field count, key and value lengths): anything larger is an error, never a
//! trap. The protocol logic lives in [`protocol`] (plain Rust, tested natively); `component` is the
//! WIT glue (wasm32 only).

pub mod protocol;

#[cfg(target_arch = "wasm32")]
mod component;
