//! `payhost:payment@0.2.0`: the pure contract. The component imports nothing of its own; the host
//! sends every request a flow asks for.

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "payhost:payment/payment-plugin",
    exports: { default: async },
});

pub use payhost::payment::types;
