//! `payhost:payment@0.2.0`: the first pure contract, still loaded (TestPay and components built
//! against it). Its continuations are `list<u8>`. The conversions into the host's own types
//! (`runtime::plugin_api`) and the export calls come from `contract_version!` (`bindings/mod.rs`).

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "payhost:payment/payment-plugin",
    exports: { default: async },
});

/// The contract version these bindings load (`[wit] version` in a manifest).
pub const VERSION: &str = "0.2.0";

contract_version!();
without_0_4_exports!();

fn continuation_in(c: &api::Continuation) -> Vec<u8> {
    c.to_bytes()
}

/// Settings, forms and queries cross as `list<pair>`.
fn form_in(p: &[(String, String)]) -> Vec<types::Pair> {
    pairs_in(p)
}

fn settings_in(s: &(impl SettingsInput + ?Sized)) -> Vec<types::Pair> {
    pairs_in(s.pairs())
}

/// Settings are always shown before 0.4.0.
fn shown_when_out(_: &types::SettingField) -> Option<api::ShownWhen> {
    None
}

/// Notifications report no refund before 0.4.0.
fn refund_out(_: &mut types::Notification) -> Option<api::RefundReport> {
    None
}
