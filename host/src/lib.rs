//! payhost: the host of the payment component. It loads the component in wasmtime, keeps orders
//! and notifications durably, and serves the shop API, the provider's return and notify endpoints,
//! and an admin page.

pub mod admin_users;
pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod http_client;
pub mod ledger;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod onboarding;
pub mod proxy;
pub mod reconciliation;
pub mod recovery;
pub mod refunds;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;
pub mod webhooks;
