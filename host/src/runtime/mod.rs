//! The payment component inside wasmtime: engine and compile cache, versioned bindings, and
//! per-request sessions with limits that drive the component's flows, sending their requests
//! through `net`.

pub mod bindings;
pub mod engine;
pub mod plugin;

pub use bindings::v0_2_0::types;
pub use plugin::{pairs, CallError, Pairs, PluginRuntime, Session};
