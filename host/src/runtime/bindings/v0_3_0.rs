//! `payhost:payment@0.3.0`: as 0.2.0, with the continuation a `string` (one copy into and out of a
//! dynamic language's runtime, where 0.2.0's `list<u8>` went byte by byte), settings, forms and
//! queries passed as one form-encoded string each (one copy, where a `pair` record costs a type
//! lookup per field in wasmtime-py), and `validate-settings` documented as returning every
//! defaulted setting. The conversions into the host's own types
//! (`runtime::plugin_api`) and the export calls come from `contract_version!` (`bindings/mod.rs`).

wasmtime::component::bindgen!({
    path: "../wit/v0.3.0",
    world: "payhost:payment/payment-plugin",
    exports: { default: async },
});

/// The contract version these bindings load (`[wit] version` in a manifest).
pub const VERSION: &str = "0.3.0";

contract_version!();
without_0_4_exports!();

fn continuation_in(c: &api::Continuation) -> String {
    c.to_text()
}

/// Settings, forms and queries cross as one form-encoded string (`form-pairs`).
fn form_in(p: &[(String, String)]) -> String {
    api::encode_form(p)
}

/// Settings encoded once by the caller cross as they are.
#[allow(clippy::owned_cow)] // the generated export calls take `&String`
fn settings_in(s: &(impl SettingsInput + ?Sized)) -> std::borrow::Cow<'_, String> {
    s.form()
}

/// Settings are always shown before 0.4.0.
fn shown_when_out(_: &types::SettingField) -> Option<api::ShownWhen> {
    None
}

/// Notifications report no refund before 0.4.0.
fn refund_out(_: &mut types::Notification) -> Option<api::RefundReport> {
    None
}
