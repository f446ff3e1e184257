//! payhost: the host of the payment component. It loads the component in wasmtime, keeps orders
//! and notifications durably, and serves the shop API, the provider's return and notify endpoints,
//! and an admin page.

pub mod admin_users;
pub mod admission;
pub mod auth;
pub mod config;
pub mod demo;
pub mod domain;
pub mod files;
pub mod http;
pub mod http_client;
pub mod ledger;
pub mod log_limit;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod onboarding;
pub mod order_locks;
pub mod proxy;
pub mod reconciliation;
pub mod recovery;
pub mod refund_list;
pub mod refunds;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;
pub mod trade_queries;
pub mod webhooks;

/// payhost inside the calling program (tests, embedders): builds it from `config` and serves on
/// `listener`, bound already so that its port (an ephemeral one) can be in `public_url`. It runs
/// on the caller's tokio runtime until [`server::Running::shutdown`] (or `stop`); the address and
/// the app are in the returned handle.
pub async fn serve_in_process(
    config: config::Config,
    listener: std::net::TcpListener,
) -> anyhow::Result<server::Running> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = server::build_app(config).await?;
    server::start_on(app, listener, std::future::pending()).await
}
