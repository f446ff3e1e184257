//! The HTTP server, one module per responsibility:
//! - [`router`]: the routing table (which handler answers a method and path; 404 vs 405);
//! - [`api`]: the shop API (`/v1`), one module per resource;
//! - [`provider`]: the provider's notify and the buyer's return (`/notify`, `/return`; the
//!   `/alipay/…` aliases);
//! - [`admin`]: the admin pages (`/admin`, templates in `host/templates/admin/`);
//! - [`probes`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`conn`]: the accept loop, the connection limit and deadlines, graceful shutdown (on SIGTERM
//!   or SIGINT the listener closes and in-flight requests finish);
//! - [`error`]: the one error type and its JSON shape; [`body`]: reading bodies, building answers;
//!   [`caller`]: who a request comes from; [`mount`]: an embedder's handlers beside these.

pub mod admin;
pub mod api;
pub mod body;
pub mod caller;
pub mod conn;
pub mod error;
pub mod mount;
mod parse_errors;
pub mod probes;
pub mod provider;
pub mod router;

// The names the rest of the host and the admin pages use.
pub use api::tokens::new_merchant_token;
pub use api::{ledger, merchant_removal};
pub use body::{
    html, json, read_body, redirect, text, Body, MAX_API_BODY, MAX_NOTIFY_BODY, MAX_RETURN_QUERY,
};
pub use caller::{client_ip, is_operator_token, Caller};
pub use conn::{serve, serve_metrics};
pub use error::{error, too_many, ApiError};
pub use probes::metrics;
pub use router::handle;
pub(crate) use router::percent_decode;
