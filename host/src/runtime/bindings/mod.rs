//! Generated bindings, one module per contract version (as Zed does for its extension API).
//! Generated types stop at `runtime`: the rest of the host uses them through `runtime::types`.
//!
//! v0.1.0 (the component did its own `wasi:http` I/O) is retired: no published component uses it
//! (see CHANGELOG.md).

pub mod v0_2_0;
