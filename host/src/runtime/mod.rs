//! The payment component inside wasmtime: engine and compile cache, the outbound-HTTP door, and
//! per-request sessions with limits.

pub mod connections;
pub mod engine;
pub mod outbound;
pub mod plugin;

pub use plugin::{pairs, CallError, Pairs, PluginRuntime, Session};
