//! payhost: the host of the payment component. It loads the component in wasmtime, keeps orders
//! and notifications durably, and serves the shop API, the provider's return and notify endpoints,
//! and an admin page.

pub mod manifest;
pub mod runtime;
