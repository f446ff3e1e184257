//! The payment contract as the host sees it: host-owned types that every contract version's
//! bindings convert into (`bindings::v0_2_0`, `v0_3_0` and `v0_4_0`, their `From` impls shared in
//! `bindings/mod.rs`). Nothing outside `runtime` sees a generated type, so a new contract version
//! adds one bindings module, not changes across the host.
//!
//! The provider's own vocabulary (its trade statuses, its error codes) is mapped into these
//! types by the component: the host reads [`TradeEvent`], never a provider's status string.

/// A component's settings, as `name = value` pairs in the order the schema gives them.
pub type Settings = Vec<(String, String)>;

/// Settings (or a notification's form) as a call takes them: the pairs (contract 0.2.0 passes
/// `list<pair>`) and their form-encoded text (0.3.0 on, one `form-pairs` string). Plain pairs are
/// encoded per call; [`EncodedSettings`] carries the text encoded once, for settings used again
/// and again (a merchant's, cached by the notify path); [`ReceivedForm`] carries a form's text as
/// it arrived.
pub trait SettingsInput: Sync {
    fn pairs(&self) -> &[(String, String)];
    /// A `String` (not `str`): the generated export calls take `&String`.
    #[allow(clippy::owned_cow)]
    fn form(&self) -> std::borrow::Cow<'_, String>;
}

/// Pairs form-encoded (`application/x-www-form-urlencoded`), in order.
pub fn encode_form(pairs: &[(String, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

impl SettingsInput for [(String, String)] {
    fn pairs(&self) -> &[(String, String)] {
        self
    }
    fn form(&self) -> std::borrow::Cow<'_, String> {
        std::borrow::Cow::Owned(encode_form(self))
    }
}

impl<const N: usize> SettingsInput for [(String, String); N] {
    fn pairs(&self) -> &[(String, String)] {
        self
    }
    fn form(&self) -> std::borrow::Cow<'_, String> {
        std::borrow::Cow::Owned(encode_form(self))
    }
}

impl SettingsInput for Vec<(String, String)> {
    fn pairs(&self) -> &[(String, String)] {
        self
    }
    fn form(&self) -> std::borrow::Cow<'_, String> {
        std::borrow::Cow::Owned(encode_form(self))
    }
}

/// A form as it was received (`application/x-www-form-urlencoded` bytes, a notification's body).
/// A 0.3.0 or later component gets the text as it arrived instead of the host's parse of it encoded
/// again: the component's own parse of either yields the same pairs. The pairs are parsed here
/// only for a 0.2.0 component. A body that is not UTF-8 (a WIT string must be) is parsed and
/// encoded once.
pub struct ReceivedForm {
    form: String,
    pairs: std::sync::OnceLock<Settings>,
}

impl ReceivedForm {
    pub fn new(body: &[u8]) -> ReceivedForm {
        let form = match std::str::from_utf8(body) {
            Ok(text) => text.to_owned(),
            Err(_) => encode_form(&parse_form(body)),
        };
        ReceivedForm {
            form,
            pairs: std::sync::OnceLock::new(),
        }
    }
}

fn parse_form(bytes: &[u8]) -> Settings {
    form_urlencoded::parse(bytes).into_owned().collect()
}

impl SettingsInput for ReceivedForm {
    fn pairs(&self) -> &[(String, String)] {
        self.pairs.get_or_init(|| parse_form(self.form.as_bytes()))
    }
    fn form(&self) -> std::borrow::Cow<'_, String> {
        std::borrow::Cow::Borrowed(&self.form)
    }
}

/// Settings with their form-encoded text computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedSettings {
    pairs: Settings,
    form: String,
}

impl EncodedSettings {
    pub fn new(pairs: Settings) -> EncodedSettings {
        let form = encode_form(&pairs);
        EncodedSettings { pairs, form }
    }
}

impl std::fmt::Debug for EncodedSettings {
    // Settings hold keys and passwords: their names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl SettingsInput for EncodedSettings {
    fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
    fn form(&self) -> std::borrow::Cow<'_, String> {
        std::borrow::Cow::Borrowed(&self.form)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Secret,
    Select,
    Pem,
    Url,
}

impl FieldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Secret => "secret",
            FieldKind::Select => "select",
            FieldKind::Pem => "pem",
            FieldKind::Url => "url",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectOption {
    pub value: String,
    pub label_zh: String,
    pub label_en: String,
}

/// One merchant setting, as the component describes it (the admin form is built from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingField {
    pub name: String,
    pub label_zh: String,
    pub label_en: String,
    pub kind: FieldKind,
    pub required: bool,
    pub secret: bool,
    pub rule: String,
    /// The rule in Chinese, from the manifest's `rule_zh` (the contract carries one language;
    /// the manifest is the component's packaging, read by the host only): shown to shop owners.
    pub rule_zh: Option<String>,
    pub options: Vec<SelectOption>,
    pub default_value: Option<String>,
    /// Shown (and validated) only when another setting has one of some values (0.4.0; None from
    /// older components and for settings always shown).
    pub shown_when: Option<ShownWhen>,
}

/// A condition on another setting's value (`api` is `openapi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownWhen {
    pub setting: String,
    pub values: Vec<String>,
}

/// What a component says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    /// The provider's name, for people (the admin page's titles).
    pub provider: String,
    pub settings: Vec<SettingField>,
    /// The body that acknowledges a notification, and the one that asks for it again.
    pub notify_ack: String,
    pub notify_retry: String,
}

impl PluginInfo {
    pub fn field(&self, name: &str) -> Option<&SettingField> {
        self.settings.iter().find(|f| f.name == name)
    }

    /// Names of the settings of one kind.
    pub fn names_of_kind(&self, kind: FieldKind) -> impl Iterator<Item = &str> {
        self.settings
            .iter()
            .filter(move |f| f.kind == kind)
            .map(|f| f.name.as_str())
    }

    /// Whether a setting is masked wherever it is shown (secret flag, or kind secret or pem).
    pub fn is_secret(&self, name: &str) -> bool {
        self.field(name)
            .is_some_and(|f| f.secret || matches!(f.kind, FieldKind::Secret | FieldKind::Pem))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Which of the provider's products pays an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// The phone browser cashier.
    Wap,
    /// The desktop browser cashier.
    Pc,
    /// The provider's app SDK.
    App,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Wap => "wap",
            Product::Pc => "pc",
            Product::App => "app",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub product: Product,
    pub out_trade_no: String,
    pub subject: String,
    /// Exact decimal text (yuan), as the shop sent it.
    pub total_fee: String,
    pub seller: Option<String>,
    pub return_url: String,
    pub notify_url: String,
    pub merchant_url: Option<String>,
    pub pay_expire: Option<u32>,
    pub out_user: Option<String>,
    pub cashier_code: Option<String>,
    /// Unique per merchant, from the host.
    pub request_id: String,
}

/// A form's or a request's method: the host's own ([`crate::net::Method`]).
pub use crate::net::Method as HttpMethod;

/// Where the buyer's browser goes to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub url: String,
    pub method: HttpMethod,
    pub action: String,
    pub fields: Settings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentStarted {
    pub redirect: Redirect,
    pub token: String,
    pub request_id: String,
    pub total_fee: String,
    /// The seller the provider will name in its notification (matched against it).
    pub seller: String,
    /// App pay: what the shop's app hands to the provider's SDK.
    pub order_string: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReturn {
    pub out_trade_no: String,
    pub trade_no: String,
    pub result: String,
    pub request_token: String,
    pub raw: Settings,
}

/// The host's own view of a provider's trade status (the component maps its provider's
/// statuses into it).
pub use crate::domain::state::TradeEvent;

/// A verified (and, where the provider asks for it, confirmed) notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub out_trade_no: String,
    pub trade_no: String,
    /// The provider's own status text (stored and shown; decisions use `event`).
    pub trade_status: String,
    pub event: TradeEvent,
    pub total_fee: String,
    pub refund_fee: Option<String>,
    pub seller_email: Option<String>,
    pub seller_id: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_id: Option<String>,
    pub notify_id: String,
    pub notify_time: Option<String>,
    pub gmt_create: Option<String>,
    pub gmt_payment: Option<String>,
    pub gmt_close: Option<String>,
    pub paid: bool,
    pub fields: Settings,
    /// What the provider must receive to stop resending.
    pub reply: String,
    /// What the provider reports about one refund (0.4.0; None from older components and for
    /// notifications about no refund). The event of a legacy batch-refund report is always
    /// `PartiallyRefunded`: the host decides full or partial from its own amounts.
    pub refund: Option<RefundReport>,
}

/// One refund as the provider reports it (a notification's `refund`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReport {
    /// The refund's number as the host made it (legacy `batch_no`, OpenAPI `out_biz_no`); empty
    /// when the provider names none.
    pub request_no: String,
    /// This refund's amount, when the provider says it (two decimals).
    pub amount: Option<String>,
    /// The trade's refunded total so far, when the provider says it (two decimals).
    pub refunded_total: Option<String>,
    pub succeeded: bool,
    /// The provider's words when it did not succeed, else empty.
    pub detail: String,
    /// When the provider completed it, as sent (Beijing time).
    pub time: Option<String>,
}

impl Notification {
    /// A field of the notification, by name (empty counts as absent).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderExpectation {
    pub out_trade_no: String,
    pub total_fee: String,
    pub seller: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayChannel {
    pub name: String,
    pub cashier_code: String,
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelList {
    pub channels: Vec<PayChannel>,
    pub last_used: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub code: String,
    pub sub_code: String,
    pub msg: String,
    /// The component's plain-language help for this error, if it has any.
    pub detail: String,
}

/// An error the component answered with (as opposed to a failed call, [`super::CallError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    InvalidSettings(Vec<FieldError>),
    InvalidOrder(FieldError),
    Gateway(GatewayError),
    BadSignature(String),
    NotifyNotConfirmed(String),
    Transport(String),
    Timeout(String),
    Malformed(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use PluginError as E;
        match self {
            E::InvalidSettings(fields) => write!(
                f,
                "invalid settings: {}",
                fields
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            E::InvalidOrder(e) => write!(f, "invalid order: {}: {}", e.field, e.reason),
            E::Gateway(g) => write!(
                f,
                "gateway error {} ({}): {} {}",
                g.code, g.sub_code, g.msg, g.detail
            ),
            E::BadSignature(m) => write!(f, "bad signature: {m}"),
            E::NotifyNotConfirmed(m) => write!(f, "notification not confirmed: {m}"),
            E::Transport(m) => write!(f, "transport failure: {m}"),
            E::Timeout(m) => write!(f, "timeout: {m}"),
            E::Malformed(m) => write!(f, "malformed provider data: {m}"),
        }
    }
}

/// What the provider's trade query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeQuery {
    pub found: bool,
    pub out_trade_no: String,
    pub trade_no: String,
    pub trade_status: String,
    pub event: TradeEvent,
    pub total_fee: String,
    pub refund_fee: Option<String>,
    pub seller_email: Option<String>,
    pub seller_id: Option<String>,
    pub buyer_email: Option<String>,
    pub gmt_payment: Option<String>,
    pub signature_verified: bool,
    pub fields: Settings,
    /// The query's answer as a notification, to apply through the notification path.
    pub notification: Option<Notification>,
}

/// An app SDK's synchronous result, verified (a hint, never a payment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppResult {
    pub result_status: String,
    pub memo: String,
    pub partner: String,
    pub out_trade_no: String,
    pub total_fee: String,
    pub seller_id: String,
    pub fields: Settings,
}

/// A refund to start (0.4.0). The host stores it, with its `request_no`, before it asks the
/// component, so a retry sends the same number and the provider refunds at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub out_trade_no: String,
    /// The provider's trade number (empty when never learnt).
    pub trade_no: String,
    /// This refund's amount, exact decimal text.
    pub amount: String,
    /// What the buyer paid.
    pub total_fee: String,
    pub reason: String,
    /// Digits only, at most 32, unique per merchant (legacy `batch_no`: Beijing date `YYYYMMDD`
    /// and 3–24 digits).
    pub request_no: String,
    /// The host's clock, Beijing time `YYYY-MM-DD HH:MM:SS`.
    pub request_time: String,
    pub notify_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// Started; the result comes later (a notification, or `query_refund`).
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }
}

/// Where a refund stands after `start_refund` or `query_refund`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundState {
    pub request_no: String,
    pub status: RefundStatus,
    /// Where the seller confirms the refund (legacy: the payment-password page); None when the
    /// provider refunds without the seller.
    pub confirm: Option<Redirect>,
    pub refunded_total: Option<String>,
    /// True when this call moved money (OpenAPI `fund_change` = `Y`).
    pub fund_change: bool,
    pub detail: String,
}

/// The result of closing an unpaid trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeClosed {
    /// False when the provider never saw the trade or the product has no close call: the host
    /// closes it locally.
    pub at_provider: bool,
    pub trade_no: String,
    pub detail: String,
}

/// Where the provider's bill of a day can be downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLocation {
    /// A URL to GET under the merchant's outbound policy; empty when `empty`.
    pub url: String,
    /// The provider says the day had no business.
    pub empty: bool,
}

/// One file of a downloaded bill (the host unpacks the archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillFile {
    pub name: String,
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillEntryKind {
    Payment,
    Refund,
    /// Fees, adjustments: reported, never matched.
    Other,
}

/// One line of the provider's bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillEntry {
    pub kind: BillEntryKind,
    pub out_trade_no: String,
    pub trade_no: String,
    /// Positive, two decimals (a refund's amount is not negated).
    pub amount: String,
    /// The refund's request number (refund lines), else empty.
    pub request_no: String,
    /// As written in the bill.
    pub finished_at: String,
}

/// A request a flow asks the host to send is the host's outgoing request itself: one type from
/// the component's bindings to the socket ([`crate::net::Client::send`] adds `Content-Length` and
/// `Host`), its answer and failure the client's own.
pub use crate::net::{
    Request as OutgoingRequest, Response as IncomingResponse, SendError as SendFailure,
};

/// A flow's continuation, as the component's contract version made it (0.2.0: bytes, 0.3.0: a
/// string). Opaque: the host hands it back to the same component, never reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuation {
    Bytes(Vec<u8>),
    Text(String),
}

impl From<Vec<u8>> for Continuation {
    fn from(b: Vec<u8>) -> Self {
        Continuation::Bytes(b)
    }
}

impl From<String> for Continuation {
    fn from(s: String) -> Self {
        Continuation::Text(s)
    }
}

impl Continuation {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Continuation::Bytes(b) => b.clone(),
            Continuation::Text(s) => s.clone().into_bytes(),
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            Continuation::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Continuation::Text(s) => s.clone(),
        }
    }
}

/// A request to send, and what to resume the flow with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub request: OutgoingRequest,
    pub continuation: Continuation,
}

/// A flow's step: finished, or a request to send first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    Send(Pending),
    Done(T),
}

#[cfg(test)]
mod received_form_tests {
    use super::*;

    #[test]
    fn a_received_form_reads_as_the_hosts_parse_of_it_encoded_again() {
        let bodies: [&[u8]; 9] = [
            b"notify_id=1&total_fee=0.01&sign=ab%2Bc%3D",
            b"subject=a+b%20c&x=%E4%B8%AD%E6%96%87",
            b"a&&=x&b=",
            b"bad=%FF%FE&pct=%zz&trail=%",
            b"dup=1&dup=2",
            "raw=中文&plus=+".as_bytes(),
            // GBK bytes sent unencoded: not UTF-8.
            b"subject=\xd6\xd0&notify_id=2",
            b"subject=\xd6\xd0\xce\xc4",
            b"",
        ];
        for body in bodies {
            let received = ReceivedForm::new(body);
            let before = encode_form(&parse_form(body));
            assert_eq!(
                parse_form(received.form().as_bytes()),
                parse_form(before.as_bytes()),
                "{body:?}"
            );
            assert_eq!(received.pairs(), parse_form(body).as_slice(), "{body:?}");
            if let Ok(text) = std::str::from_utf8(body) {
                assert_eq!(received.form().as_str(), text, "crosses as it arrived");
            }
        }
    }
}
