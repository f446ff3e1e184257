//! Plain Rust types of the payment contract. They mirror the WIT records one to one, so the
//! protocol code runs natively (tests, benchmarks, fuzzing) and the component glue only converts.

/// A field that was refused, and why (the reason reads after the field name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// An error reported by the provider's gateway (`res_error` of the create call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayError {
    pub code: String,
    pub sub_code: String,
    pub msg: String,
    pub detail: String,
}

impl GatewayError {
    /// Plain-language help for the gateway errors shop owners meet ([WAP §3.2], [EXTRA §3.3],
    /// [OPENAPI §7.3]), appended to `detail`: the host shows it as it is and knows nothing of
    /// Alipay's codes. Each family's codes are matched whole: an open-platform merchant has no
    /// MD5 key, and `ILLEGAL_PARTNER` is not a missing permission.
    pub fn hint(&self) -> &'static str {
        let code = self.code.to_ascii_uppercase();
        let sub = self.sub_code.as_str();
        let msg = self.msg.to_ascii_lowercase();
        let open_platform = sub.starts_with("isv.")
            || sub.starts_with("ACQ.")
            || sub.starts_with("aop.")
            || (code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit()));
        if open_platform {
            match sub {
                "isv.invalid-signature" => "— 签名被拒绝：应用私钥与 APPID 不匹配，或上传到开放平台的不是它的公钥 (the signature was refused: the app private key does not belong to this APPID, or its public half is not the one uploaded to the app).",
                "isv.invalid-app-id" => "— APPID 不正确或应用未上线 (the APPID is not an app of this Alipay account, or the app is not online yet).",
                "isv.invalid-timestamp" => "— 请求时间被拒绝：请校准本服务器的时钟 (the request's time was refused: check this server's clock).",
                _ if code == "40006" => "— 应用未签约该产品，或未在应用中添加该功能 (the app has not signed for this product, or the product is not added to the app).",
                _ => "",
            }
        } else if code == "ILLEGAL_PARTNER" || sub.eq_ignore_ascii_case("ILLEGAL_PARTNER") {
            "— 合作者身份ID不正确：请从支付宝商家服务重新复制以 2088 开头的 16 位合作者身份ID (PID) (the partner ID is not an Alipay partner: copy the 16-digit PID, starting 2088, from the merchant service again)."
        } else if code.contains("HAS_NO_PRIVILEGE")
            || msg.contains("partner illegal")
            || code == "0005"
        {
            "— 该合作者身份ID没有开通这个接口：请在支付宝商家服务的合同列表中确认签约的接口类型，并确认合作者身份ID就是该合同的合作者身份ID (the partner ID has no permission for this interface: check the signed contract type in the merchant service and that the partner ID is the contract's)."
        } else if code.contains("SIGN")
            || sub.to_ascii_uppercase().contains("SIGN")
            || msg.contains("sign")
        {
            "— 签名被拒绝：交易安全校验码 (key) 与合作者身份ID不匹配，或粘贴时带了多余的字符 (the signature was refused: the key does not belong to this partner ID, or it was pasted with extra characters)."
        } else if code == "0001" || msg.contains("params illegal") {
            "— 缺少必填参数或参数格式不正确 (a required parameter was missing or malformed)."
        } else {
            ""
        }
    }
}

/// At most `max` characters of `s` (a text the provider chose), cut with `…`.
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some((at, _)) => format!("{}…", &s[..at]).into(),
    }
}

/// Every way a plugin call can fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginError {
    InvalidSettings(Vec<FieldError>),
    InvalidOrder(FieldError),
    Gateway(GatewayError),
    BadSignature(String),
    NotifyNotConfirmed(String),
    Transport(String),
    Timeout(String),
    /// The provider's data could not be understood (malformed XML, missing fields).
    Malformed(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::InvalidSettings(errs) => {
                f.write_str("invalid settings: ")?;
                for (i, e) in errs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            PluginError::InvalidOrder(e) => write!(f, "invalid order: {e}"),
            PluginError::Gateway(g) => write!(
                f,
                "gateway error {} (sub_code {}): {} {}",
                g.code, g.sub_code, g.msg, g.detail
            ),
            PluginError::BadSignature(m) => write!(f, "bad signature: {m}"),
            PluginError::NotifyNotConfirmed(m) => write!(f, "notification not confirmed: {m}"),
            PluginError::Transport(m) => write!(f, "transport failure: {m}"),
            PluginError::Timeout(m) => write!(f, "timeout: {m}"),
            PluginError::Malformed(m) => write!(f, "malformed provider data: {m}"),
        }
    }
}

/// How a setting is entered in an admin form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Secret,
    Select,
    Pem,
    Url,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectOption {
    pub value: String,
    pub label_zh: String,
    pub label_en: String,
}

/// One field of the settings schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingField {
    pub name: String,
    pub label_zh: String,
    pub label_en: String,
    pub kind: FieldKind,
    pub required: bool,
    pub secret: bool,
    /// The validation rule in words (English), as shown next to the field.
    pub rule: String,
    pub options: Vec<SelectOption>,
    pub default_value: Option<String>,
    /// Shown only when another setting has one of some values (the family's settings).
    pub shown_when: Option<ShownWhen>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownWhen {
    pub setting: String,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    pub provider: String,
    pub settings: Vec<SettingField>,
    /// Body to answer a notification that was verified and processed.
    pub notify_ack: String,
    /// Body to answer a notification that must be sent again.
    pub notify_retry: String,
}

/// Which Alipay product pays an order (WIT `payment-product`). The host resolves "auto" (WAP for
/// phones, PC for desktops, by User-Agent) itself; the component always gets a concrete one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Product {
    /// Mobile-website pay (`alipay.wap.trade.create.direct` + `alipay.wap.auth.authAndExecute`).
    #[default]
    Wap,
    /// PC instant pay (`create_direct_pay_by_user`): a signed redirect, no provider call.
    Pc,
    /// App secure pay (`mobile.securitypay.pay`): a signed order string for the app SDK.
    App,
}

/// An order to pay, as the shop gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The product that pays it.
    pub product: Product,
    pub out_trade_no: String,
    pub subject: String,
    pub total_fee: String,
    /// C2C: the seller receiving this order's money (email, mobile or 2088… id).
    pub seller: Option<String>,
    /// Where the provider sends the buyer's browser after paying (`call_back_url`).
    pub return_url: String,
    /// Where the provider posts the asynchronous notification (`notify_url`).
    pub notify_url: String,
    /// Where the buyer goes when leaving the cashier midway (`merchant_url`).
    pub merchant_url: Option<String>,
    /// Minutes until an unpaid trade is closed (`pay_expire`).
    pub pay_expire: Option<u32>,
    pub out_user: Option<String>,
    pub cashier_code: Option<String>,
    /// Unique per merchant, made by the embedder: 1 to 32 characters of `[0-9a-z]`.
    pub request_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// Where to send the buyer: a URL, or equivalently a form of `fields` sent with `method` to `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub url: String,
    pub method: HttpMethod,
    pub action: String,
    pub fields: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentStarted {
    pub redirect: Redirect,
    /// The provider's token for this payment (`request_token`).
    pub token: String,
    /// The request id sent with the create call (`req_id`).
    pub request_id: String,
    /// The normalised amount sent (`total_fee`, two decimals).
    pub total_fee: String,
    /// The seller the money goes to.
    pub seller: String,
    /// App pay: the signed order string to hand to the app SDK (`redirect.url` is then empty).
    pub order_string: Option<String>,
}

/// A verified synchronous return (`call_back_url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReturn {
    pub out_trade_no: String,
    pub trade_no: String,
    pub result: String,
    pub request_token: String,
    pub raw: Vec<(String, String)>,
}

/// A verified, confirmed asynchronous notification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    pub out_trade_no: String,
    pub trade_no: String,
    pub trade_status: String,
    /// Normalised to two decimals.
    pub total_fee: String,
    pub seller_email: Option<String>,
    pub seller_id: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_id: Option<String>,
    pub notify_id: String,
    pub notify_time: Option<String>,
    pub gmt_create: Option<String>,
    pub gmt_payment: Option<String>,
    pub gmt_close: Option<String>,
    /// True for `TRADE_SUCCESS` and `TRADE_FINISHED`.
    pub paid: bool,
    /// The (decrypted) `notify_data` elements, in document order.
    pub fields: Vec<(String, String)>,
    /// The exact body to answer the provider with.
    pub reply: String,
}

/// What the shop expects a notification to match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderExpectation {
    pub out_trade_no: String,
    pub total_fee: String,
    /// The seller the order was created for (B2C: the configured account).
    pub seller: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayChannel {
    pub name: String,
    pub cashier_code: String,
    /// The top-level channel's cashier code, for second-level channels (banks).
    pub parent: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelList {
    pub channels: Vec<PayChannel>,
    pub last_used: Option<String>,
}

/// What a notification means for the payment, in the embedder's terms (WIT `trade-event`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TradeEvent {
    #[default]
    Waiting,
    Paid,
    Finished,
    Closed,
    Refunded,
    PartiallyRefunded,
}

impl Notification {
    /// A field's value; an empty one counts as absent, as the signature rules count it (they
    /// leave empty values out, so an added `gmt_refund=` must not change what a notification says).
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Alipay's statuses in the embedder's terms ([EXTRA §4.4]):
    /// `TRADE_CLOSED` + `refund_status=REFUND_SUCCESS` is a full refund, `TRADE_SUCCESS` +
    /// `REFUND_SUCCESS` a partial one, `TRADE_FINISHED` is final whatever refund field it carries,
    /// a `TRADE_CLOSED` that shows a payment (`gmt_payment`, or a `to_buyer_fee` above zero as
    /// `single_trade_query` reports it, [EXTRA §3.4]) a full refund too, a bare `TRADE_CLOSED` a close
    /// (the embedder treats it as a refund when the order was paid). The same for every product
    /// (WAP, PC and app notifies, and the query).
    pub fn event(&self) -> TradeEvent {
        let refunded = self.shows_refund();
        let was_paid = self.gmt_payment.as_deref().is_some_and(|g| !g.is_empty())
            || self.field("gmt_payment").is_some_and(|g| !g.is_empty())
            || self
                .field("to_buyer_fee")
                .and_then(|v| crate::amount::Amount::parse(v).ok())
                .is_some();
        if self.is_batch_refund() {
            // The batch names no trade status; full or partial is the host's call from its own
            // amounts (the report carries this refund's amount).
            return TradeEvent::PartiallyRefunded;
        }
        match self.trade_status.as_str() {
            "TRADE_SUCCESS" if refunded => TradeEvent::PartiallyRefunded,
            "TRADE_SUCCESS" => TradeEvent::Paid,
            "TRADE_FINISHED" => TradeEvent::Finished,
            "TRADE_CLOSED" if refunded || was_paid => TradeEvent::Refunded,
            "TRADE_CLOSED" => TradeEvent::Closed,
            _ => TradeEvent::Waiting,
        }
    }

    /// Whether the trade notification shows a refund: legacy `refund_status=REFUND_SUCCESS`, or
    /// an OpenAPI partial refund's notify, which stays `TRADE_SUCCESS` and carries the refund
    /// (`refund_fee` above zero with `gmt_refund` or `out_biz_no`; [OPENAPI §6.6]). [`Self::event`]
    /// and [`Self::refund`] both read it, so a refund event always comes with its report.
    fn shows_refund(&self) -> bool {
        self.field("refund_status") == Some("REFUND_SUCCESS")
            || (self.refund_fee().is_some()
                && (self.field("gmt_refund").is_some() || self.field("out_biz_no").is_some()))
    }

    /// A legacy batch-refund notify (`refund_fastpay_by_platform_pwd`, [EXTRA §4.2]): it names
    /// no order and no trade status, only the batch and its result details.
    pub fn is_batch_refund(&self) -> bool {
        self.field("batch_no").is_some_and(|b| !b.is_empty())
            && self.field("result_details").is_some()
    }

    /// What the notification reports about one refund, derived from its fields (like
    /// [`Notification::event`]), so a notification that crossed the WIT boundary and came back
    /// says the same:
    /// * a legacy batch-refund notify: `batch_no` and the first `trade_no^amount^result` of
    ///   `result_details` ([EXTRA §4.2]);
    /// * an OpenAPI partial-refund notify: `out_biz_no`, cumulative `refund_fee`, `gmt_refund`
    ///   ([OPENAPI §6.6]);
    /// * a legacy `trade_status_sync` notify with `refund_status=REFUND_SUCCESS`: no number, no
    ///   amount (the legacy notify carries none, [EXTRA §4.2]).
    pub fn refund(&self) -> Option<RefundReport> {
        let two = |v: &str| {
            crate::amount::Amount::parse(v.trim())
                .ok()
                .map(|a| a.to_string())
        };
        let time = self
            .field("gmt_refund")
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if self.is_batch_refund() {
            let detail = batch_detail(self.field("result_details").unwrap_or(""));
            let succeeded = detail.result == "SUCCESS";
            return Some(RefundReport {
                request_no: self.field("batch_no").unwrap_or("").to_owned(),
                amount: two(detail.amount),
                refunded_total: None,
                succeeded,
                detail: if succeeded {
                    String::new()
                } else {
                    detail.result.to_owned()
                },
                time,
            });
        }
        if let Some(out_biz_no) = self.field("out_biz_no").filter(|v| !v.is_empty()) {
            if self.refund_fee().is_some() {
                return Some(RefundReport {
                    request_no: out_biz_no.to_owned(),
                    amount: None,
                    refunded_total: self.refund_fee(),
                    succeeded: true,
                    detail: String::new(),
                    time,
                });
            }
        }
        if self.shows_refund() {
            return Some(RefundReport {
                request_no: String::new(),
                amount: None,
                refunded_total: self.refund_fee(),
                succeeded: true,
                detail: String::new(),
                time,
            });
        }
        None
    }

    pub fn refund_fee(&self) -> Option<String> {
        self.field("refund_fee")
            .and_then(|v| crate::amount::Amount::parse(v).ok())
            .map(|a| a.to_string())
    }
}

/// What `single_trade_query` says about one order (WIT `trade-query`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TradeQuery {
    /// False when Alipay answered `TRADE_NOT_EXIST` (the buyer never reached the cashier, or
    /// another partner's order): every other field is then empty.
    pub found: bool,
    pub out_trade_no: String,
    pub trade_no: String,
    pub trade_status: String,
    pub event: TradeEvent,
    /// Normalised to two decimals (empty when not found).
    pub total_fee: String,
    pub refund_fee: Option<String>,
    pub seller_email: Option<String>,
    pub seller_id: Option<String>,
    pub buyer_email: Option<String>,
    pub gmt_payment: Option<String>,
    /// True when the answer carried a `<sign>` that matched the sorted rule over `<trade>`; an
    /// answer whose `<sign>` does not match is refused (`bad-signature`), one without a `<sign>`
    /// is accepted on its cross-checks ([EXTRA §3.2]).
    pub signature_verified: bool,
    /// The `<trade>` elements in document order.
    pub fields: Vec<(String, String)>,
    /// The same trade as a notification, for the host's match-order + transition path, with the
    /// synthetic, stable `notify_id` `query:<trade_no>:<trade_status>` (plus
    /// `:<refund_status>:<refund_fee>` when a refund is shown). `None` when not found.
    pub notification: Option<Notification>,
}

/// A verified app SDK result string (WIT `app-result`): Alipay signed it, so it is a hint that the
/// buyer paid; the notify (or the query) stays authoritative.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppResult {
    /// `resultStatus`, e.g. `9000` (paid), `8000` (being confirmed).
    pub result_status: String,
    pub memo: String,
    pub partner: String,
    pub out_trade_no: String,
    /// Normalised to two decimals.
    pub total_fee: String,
    /// `seller_id` (or the 2011 SDK's `seller`).
    pub seller_id: String,
    /// The signed content's fields, quotes removed, in the received order.
    pub fields: Vec<(String, String)>,
}

/// One `trade_no^amount^result` detail of a batch-refund notify's `result_details` (the first;
/// `refund_fastpay_by_platform_pwd` requests from this component carry one, `batch_num=1`).
pub struct BatchDetail<'a> {
    pub trade_no: &'a str,
    pub amount: &'a str,
    pub result: &'a str,
}

/// Splits the first detail of `result_details` (`trade_no^amount^result#…`, [EXTRA §4.2]). A
/// merchant whose fee is refunded too gets `trade_no^amount^result$account^id^fee^result`: the
/// refund's own result ends at the `$`.
pub fn batch_detail(result_details: &str) -> BatchDetail<'_> {
    let first = result_details.split('#').next().unwrap_or("");
    let first = first.split('$').next().unwrap_or("");
    let mut parts = first.split('^');
    let trade_no = parts.next().unwrap_or("").trim();
    let amount = parts.next().unwrap_or("").trim();
    let result = parts.next().unwrap_or("").trim();
    BatchDetail {
        trade_no,
        amount,
        result,
    }
}

/// One refund as the provider reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefundReport {
    pub request_no: String,
    pub amount: Option<String>,
    pub refunded_total: Option<String>,
    pub succeeded: bool,
    pub detail: String,
    pub time: Option<String>,
}

/// A refund to start (the WIT `refund-request`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefundRequest {
    pub out_trade_no: String,
    pub trade_no: String,
    pub amount: String,
    pub total_fee: String,
    pub reason: String,
    pub request_no: String,
    pub request_time: String,
    pub notify_url: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RefundStatus {
    #[default]
    Pending,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundState {
    pub request_no: String,
    pub status: RefundStatus,
    pub confirm: Option<Redirect>,
    pub refunded_total: Option<String>,
    pub fund_change: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TradeClosed {
    pub at_provider: bool,
    pub trade_no: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BillLocation {
    pub url: String,
    pub empty: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BillFile {
    pub name: String,
    pub content: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillEntryKind {
    Payment,
    Refund,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillEntry {
    pub kind: BillEntryKind,
    pub out_trade_no: String,
    pub trade_no: String,
    pub amount: String,
    pub request_no: String,
    pub finished_at: String,
}

#[cfg(test)]
mod tests {
    use super::GatewayError;

    fn hint(code: &str, sub_code: &str, msg: &str) -> &'static str {
        GatewayError {
            code: code.into(),
            sub_code: sub_code.into(),
            msg: msg.into(),
            detail: String::new(),
        }
        .hint()
    }

    #[test]
    fn hints_match_each_familys_codes_whole() {
        // Legacy: an unknown partner is not a missing permission.
        assert!(hint("ILLEGAL_PARTNER", "ILLEGAL_PARTNER", "").contains("合作者身份ID不正确"));
        assert!(hint("HAS_NO_PRIVILEGE", "", "").contains("合同列表"));
        assert!(hint("0005", "", "partner illegal").contains("合同列表"));
        assert!(hint("ILLEGAL_SIGN", "ILLEGAL_SIGN", "").contains("交易安全校验码"));
        // The open platform has no MD5 key: its signature hint names the app key.
        let open_sign = hint("40002", "isv.invalid-signature", "Invalid Arguments");
        assert!(open_sign.contains("应用私钥") && !open_sign.contains("交易安全校验码"));
        assert!(hint("40002", "isv.invalid-app-id", "").contains("APPID"));
        assert!(hint("40006", "isv.insufficient-isv-permissions", "").contains("签约"));
        assert_eq!(hint("40004", "ACQ.TRADE_NOT_EXIST", "Business Failed"), "");
    }
}
