//! The shop owner's words for what the API refuses: the API's errors are English and name its
//! parameters (`min_amount`), the admin page names its fields (最小金额) and says what to type.
//! Only the admin's own forms are translated here; anything else keeps the API's message.

use super::view::Lang;
use crate::domain::amount::{Amount, AmountError};
use crate::http::error::ApiError;

/// Who started something (a refund's `started_by`, a user's creator) in the owner's words:
/// `admin:admin_password` read as a password shown, and `api:operator` as a code.
pub fn who(lang: Lang, by: &str) -> String {
    let t = |zh: &str, en: &str| match lang {
        Lang::Zh => zh.to_owned(),
        Lang::En => en.to_owned(),
    };
    let password = crate::http::admin::session::PASSWORD_OPERATOR;
    match by.split_once(':') {
        _ if by == password => t("运营者（主密码登录）", "the operator (admin password)"),
        Some(("admin", name)) if name == password => {
            t("运营者（主密码登录）", "the operator (admin password)")
        }
        Some(("admin", name)) => format!("{}{name}", t("管理员 ", "admin user ")),
        Some(("api", "operator")) => t("运营者（API）", "the operator (API)"),
        Some(("api", rest)) => match rest.strip_prefix("merchant:") {
            Some(m) => format!("{}{m}{}", t("商城（", "the shop ("), t("）", ")")),
            None => by.to_owned(),
        },
        // A command run on the server (`payhost token`, `payhost merchant`, `payhost admin-user`).
        _ if by.starts_with("payhost ") => format!(
            "{}{by}{}",
            t("运营者（命令行 ", "the operator (command line: "),
            t("）", ")")
        ),
        _ if by == crate::domain::refunds::STARTED_BY_GATEWAY => t(
            "支付宝（在 payhost 之外发起）",
            "Alipay (started outside payhost)",
        ),
        _ => by.to_owned(),
    }
}

/// `typed` with full-width ASCII (`ＡＢ１２`, U+FF01–U+FF5E) and the ideographic space as
/// their half-width selves; everything else (Chinese words) as typed.
pub fn half_width(typed: &str) -> String {
    typed
        .chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect()
}

/// An amount as a Chinese keyboard types it: full-width digits and point (`０.５`, `１２．３`) are
/// the same number as their half-width forms. Nothing else is changed, so every other mistake
/// still reaches the amount rule and is named there.
pub fn half_width_amount(typed: &str) -> String {
    typed
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            '．' | '。' => '.',
            other => other,
        })
        .collect()
}

/// What an amount that is not a plain decimal looks like, for a message that says what is wrong
/// with it rather than repeat the whole rule.
#[derive(Debug, PartialEq, Eq)]
enum AmountShape {
    /// `-1`, `-0.5`: a number with a minus sign.
    Negative,
    /// `+1`.
    Plus,
    /// `1.`, `.5`: digits with a point at an end.
    PointAtEnd,
    /// `1.2.3`.
    TwoPoints,
    /// Anything else (`¥1`, `1,00`, `abc`).
    Other,
}

fn amount_shape(typed: &str) -> AmountShape {
    let plain = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
    if let Some(rest) = typed.strip_prefix('-') {
        if plain(rest) {
            return AmountShape::Negative;
        }
    }
    if let Some(rest) = typed.strip_prefix('+') {
        if plain(rest) && Amount::parse(rest).is_ok() {
            return AmountShape::Plus;
        }
    }
    if !plain(typed) || !typed.contains(|c: char| c.is_ascii_digit()) {
        return AmountShape::Other;
    }
    if typed.matches('.').count() > 1 {
        AmountShape::TwoPoints
    } else {
        AmountShape::PointAtEnd
    }
}

/// Why an amount was refused, in the owner's words.
fn amount_rule(lang: Lang, typed: &str) -> String {
    let (zh, en) = match Amount::parse(typed) {
        Err(AmountError::Empty) => ("请填写金额，如 12.50", "must not be empty"),
        Err(AmountError::NotDecimal) => match amount_shape(typed) {
            AmountShape::Negative => ("必须大于 0，如 12.50", "must be more than 0, such as 12.50"),
            AmountShape::Plus => ("不要带 + 号，如 12.50", "write it without '+', such as 12.50"),
            AmountShape::PointAtEnd => (
                "小数点前后都要有数字，如 1.50 或 0.50",
                "needs digits on both sides of the point, such as 1.50 or 0.50",
            ),
            AmountShape::TwoPoints => ("只能有一个小数点，如 12.50", "may have one point only, such as 12.50"),
            AmountShape::Other => (
                "请只填写半角数字和小数点，如 12.50（不要带 ¥、元或逗号）",
                "must be a plain decimal number such as 12.50 (digits, at most one '.', no sign or exponent)",
            ),
        },
        Err(AmountError::TooManyDecimals) => (
            "最多两位小数（精确到分），如 12.50",
            "must have at most two decimal places",
        ),
        Err(AmountError::OutOfRange) => (
            "金额须在 0.01 到 100000000.00 元之间",
            "must be between 0.01 and 100000000.00",
        ),
        Ok(_) => ("金额不对", "is not accepted"),
    };
    lang.pick(zh, en).to_owned()
}

/// A refund's amount refused, naming the field. One out of range (0, -1, more than any
/// payment) says what a refund may be: more than 0, at most what is left to refund.
pub fn refund_amount_refusal(lang: Lang, typed: &str, refundable_fen: u64) -> String {
    let out_of_range = match Amount::parse(typed) {
        Err(AmountError::OutOfRange) => true,
        Err(AmountError::NotDecimal) => amount_shape(typed) == AmountShape::Negative,
        _ => false,
    };
    if out_of_range {
        let left = super::yuan(refundable_fen);
        return match lang {
            Lang::Zh => format!("退款金额必须大于 0，最多 ¥{left}"),
            Lang::En => format!("amount: must be more than 0 and at most {left}"),
        };
    }
    format!(
        "{}{}",
        lang.pick("退款金额：", "amount: "),
        amount_rule(lang, typed)
    )
}

/// The headline of a refund refused before it started, with the reason beside its field: on a
/// phone the page opens at the form, and the headline at the top must say why on its own.
pub fn refund_not_started(lang: Lang, why: &str) -> String {
    // A field's label reads as the sentence's subject: 退款金额：请… → 退款金额请….
    let why = ["退款金额：", "退款原因："]
        .iter()
        .find_map(|label| {
            let rest = why.strip_prefix(label)?;
            Some(format!("{}{rest}", label.trim_end_matches('：')))
        })
        .unwrap_or_else(|| why.to_owned());
    format!(
        "{}{why}",
        lang.pick("未发起退款：", "The refund was not started: ")
    )
}

/// The longest refund reason (Alipay's `refund_reason`, as `refunds.rs` and the component keep).
const MAX_REASON: usize = 256;

/// Why a refund reason would be refused (the refund's and the component's rules: at most 256
/// characters, no control character such as a tab or a line break), or None.
pub fn reason_refusal(lang: Lang, reason: &str) -> Option<String> {
    let reason = reason.trim();
    let (zh, en) = if reason.chars().any(char::is_control) {
        (
            "退款原因：不能包含换行、制表符等控制字符，请写成一行",
            "reason: must have no control characters (tabs, line breaks): write it on one line",
        )
    } else if reason.chars().count() > MAX_REASON {
        ("退款原因：最多 256 个字", "reason: at most 256 characters")
    } else {
        return None;
    };
    Some(lang.pick(zh, en).to_owned())
}

/// Whether `typed` has the shape of a date (`2026-02-30`: four, two and two digits) even if no
/// such day exists.
fn looks_like_a_date(typed: &str) -> bool {
    let b = typed.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Why a date was refused, after its field's `label`: the format, or a day that does not exist.
fn date_rule(label: &str, typed: &str) -> String {
    if looks_like_a_date(typed) && crate::domain::clock::parse_date(typed).is_none() {
        format!("{label}：没有 {typed} 这一天（请检查月份和日期，如 2 月没有 30 日）")
    } else {
        format!("{label}：请按 年-月-日 填写，如 2026-12-04")
    }
}

/// A date filter's name as the pages label it (payments' 下单日期从, refunds' 发起日期从 and
/// 完成日期从): the refund list has two pairs of dates, so a refusal says which. `dates` is the
/// list's first pair (下单日期 or 发起日期).
fn date_label(field: &str, dates: &str) -> String {
    match field {
        "from" => format!("{dates}从"),
        "to" => format!("{dates}到"),
        "completed_from" => "完成日期从".into(),
        _ => "完成日期到".into(),
    }
}

/// The first pair of dates of a list, as its page labels it: payments' 下单日期, refunds' 发起日期.
pub const PAYMENT_DATES: &str = "下单日期";
pub const REFUND_DATES: &str = "发起日期";

/// A refused filter of a list, naming the field as the page labels it (`dates`: the list's
/// first pair of dates, [`PAYMENT_DATES`] or [`REFUND_DATES`]).
pub fn filter_error(
    lang: Lang,
    e: &ApiError,
    typed: &dyn Fn(&str) -> String,
    dates: &str,
) -> String {
    if lang == Lang::En {
        return e.message.clone();
    }
    let field = e.field.as_deref().unwrap_or_default();
    match field {
        "min_amount" | "max_amount" => {
            let label = if field == "min_amount" {
                "最小金额"
            } else {
                "最大金额"
            };
            let value = typed(field);
            if Amount::parse(&value).is_ok() {
                if field == "min_amount" {
                    format!("{label}：不能大于最大金额 ¥{}", typed("max_amount"))
                } else {
                    format!("{label}：不能小于最小金额 ¥{}", typed("min_amount"))
                }
            } else {
                format!("{label}：{}", amount_rule(lang, &value))
            }
        }
        "from" | "to" | "completed_from" | "completed_to" => {
            // The ledger's one rule between the two (`ledger::parse_filter`).
            if e.message.ends_with("must be before to") {
                format!("{dates}从：不能晚于{dates}到")
            } else if e.message.ends_with("must be before completed_to") {
                "完成日期从：不能晚于完成日期到".to_owned()
            } else {
                date_rule(&date_label(field, dates), &typed(field))
            }
        }
        "status" => "状态：请从列表中选择".to_owned(),
        "review" => "需要人工核对：请从列表中选择".to_owned(),
        "merchant" => "商户：请从列表中选择".to_owned(),
        "q" if e.message.contains("control") => "搜索：不能包含换行、制表符等控制字符".to_owned(),
        "q" => "搜索：最多 128 个字".to_owned(),
        "cursor" => "翻页链接已失效，请回到第一页重新翻页".to_owned(),
        "limit" => "导出：CSV 包含全部符合条件的支付，不需要 limit 参数，请去掉它".to_owned(),
        _ => e.message.clone(),
    }
}

/// Codes after which a refund may have reached the provider (no answer, or one not understood):
/// see `refunds.rs`, which keeps such a refund PENDING.
pub const UNKNOWN_OUTCOME: [&str; 4] = [
    "gateway_unreachable",
    "gateway_timeout",
    "gateway_malformed",
    "gateway_bad_signature",
];

/// Codes that say for sure the refund was not made: refused before anything was sent, or by the
/// provider itself (`gateway_…` other than [`UNKNOWN_OUTCOME`]).
const NOT_STARTED: [&str; 10] = [
    "invalid_request",
    "invalid_order",
    "refund_key_reused",
    "refund_exceeds_paid",
    "not_refundable",
    "unknown_payment",
    "unknown_merchant",
    "merchant_not_configured",
    "not_supported",
    "forbidden",
];

/// Whether a refund refused with `code` may still have reached the provider: no answer, an
/// answer not understood, or an error this page cannot tell (the refund stays 处理中 with its
/// amount held). The owner must then not refund again, here or in Alipay's portal.
pub fn refund_outcome_unknown(code: &str) -> bool {
    if NOT_STARTED.contains(&code) {
        return false;
    }
    !code.starts_with("gateway_") || UNKNOWN_OUTCOME.contains(&code)
}

/// Whether the provider itself refused the refund (nothing was refunded): after such a refusal
/// payhost asks about the trade by itself ([`crate::trade_queries`]).
pub fn refused_by_provider(code: &str) -> bool {
    code.starts_with("gateway_") && !refund_outcome_unknown(code)
}

/// What the page adds to a provider's refusal while payhost asks about the trade.
pub fn asking_about_the_trade(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "。payhost 正在向支付宝查询这笔交易（例如是否已在支付宝后台退过款），查到的结果稍后显示在本页",
        Lang::En => ". payhost is asking Alipay about this trade now (was it refunded in Alipay's back office meanwhile?); this page shows what it finds in a moment",
    }
}

/// The payment as the page reads it after a refused refund.
#[derive(Debug, Clone, Copy)]
pub struct PaymentNow<'a> {
    pub status: &'a str,
    /// The provider reported the trade finished (whatever the status says now).
    pub finished: bool,
    /// What is left to refund (paid, less refunded and being refunded).
    pub refundable_fen: u64,
}

/// Why nothing can be refunded any more, or None while something can.
pub fn nothing_left_to_refund(lang: Lang, now: PaymentNow<'_>) -> Option<String> {
    if now.refundable_fen > 0 {
        return None;
    }
    let (zh, en) = if now.status == crate::domain::state::REFUNDED {
        (
            "这笔订单已全额退款，不能再退款".to_owned(),
            "This order is fully refunded: nothing is left to refund".to_owned(),
        )
    } else if crate::domain::state::is_paid(now.status) && !now.finished {
        (
            "这笔订单的金额已全部退款或正在退款中，不能再退款（处理中的退款失败或放弃后才能重新退款）".to_owned(),
            "The whole amount is refunded or being refunded: nothing is left to refund".to_owned(),
        )
    } else {
        return None;
    };
    Some(lang.pick(&zh, &en).to_owned())
}

/// A refund's field refused by the component's rules (`invalid_order`: nothing was sent to the
/// provider), named as the page labels it.
fn refund_field_rule(field: &str, typed_amount: &str, e: &ApiError, now: PaymentNow<'_>) -> String {
    match field {
        "reason" => "退款原因：不能包含换行、制表符等控制字符，最多 256 个字".to_owned(),
        "amount" if Amount::parse(typed_amount).is_err() => {
            refund_amount_refusal(Lang::Zh, typed_amount, now.refundable_fen)
        }
        "amount" => "退款金额：不能超过这笔订单的实付金额".to_owned(),
        "out_trade_no" => {
            "订单号不符合支付宝的规则（1 到 64 位字母、数字、_ 或 -），这笔订单不能在这里退款"
                .to_owned()
        }
        "total_fee" => {
            "订单金额不符合支付宝的规则，这笔订单不能在这里退款，请联系运营者（运行 payhost 的人）"
                .to_owned()
        }
        other => format!(
            "退款的“{other}”不符合支付宝接口的规则，没有退款（{}）",
            e.message
        ),
    }
}

/// Why a refund was not started, with what to do, for the refund form.
/// `now` is the payment as the page now reads it.
pub fn refund_error(lang: Lang, e: &ApiError, typed_amount: &str, now: PaymentNow<'_>) -> String {
    if lang == Lang::En {
        // The API's words, with what to do next where the provider is concerned (as the
        // Chinese page says it).
        let code = e.code.as_str();
        if refund_outcome_unknown(code) {
            return format!(
                "The refund's outcome is unknown (Alipay did not answer, or its answer was not understood); it stays “being processed”: do not start it again, nor refund by hand in Alipay's back office; reload this page later, or press “Sync with the provider” ({})",
                e.message
            );
        }
        if code.starts_with("gateway_") {
            return format!(
                "Alipay refused this refund; nothing was refunded. Press “Sync with the provider” to see the trade as Alipay has it now ({})",
                e.message
            );
        }
        return e.message.clone();
    }
    match (e.code.as_str(), e.field.as_deref()) {
        ("invalid_request", Some("amount")) => {
            refund_amount_refusal(lang, typed_amount, now.refundable_fen)
        }
        ("invalid_request", Some("reason")) => {
            "退款原因：最多 256 个字，写在一行内，不能包含换行、制表符等控制字符".to_owned()
        }
        ("invalid_request", Some("refund_key")) => {
            "这个退款表单已失效，请重新打开页面再退款".to_owned()
        }
        ("refund_key_reused", _) => {
            "这个退款编号已用于另一笔金额不同的退款；请重新打开页面再退款".to_owned()
        }
        ("refund_exceeds_paid" | "not_refundable", _)
            if nothing_left_to_refund(lang, now).is_some() =>
        {
            nothing_left_to_refund(lang, now).unwrap_or_default()
        }
        ("refund_exceeds_paid", _) => format!(
            "退款金额超过了可退金额：最多还能退 ¥{}（已退款和退款处理中的金额不能再退）",
            super::yuan(now.refundable_fen)
        ),
        ("not_refundable", _) if now.finished => {
            "这笔交易已完结（TRADE_FINISHED），支付宝不再接受退款".to_owned()
        }
        ("not_refundable", _) => format!(
            "这笔订单{}，不能退款：只有已支付且未全额退款的订单可以退款",
            super::view::status_word(lang, now.status)
        ),
        ("unknown_payment", _) => "没有这笔支付，请回到支付列表重新查找".to_owned(),
        ("unknown_merchant", _) => "没有这个商户，请回到支付列表重新查找".to_owned(),
        ("merchant_not_configured", _) => {
            "这个商户还没有保存支付宝设置，不能退款：请先在商户页面保存设置".to_owned()
        }
        ("not_supported", _) => format!(
            "这个商户的支付接口不支持在这里退款（{}）",
            provider_message(lang, &e.message)
        ),
        // The component's own rules for what it sends: nothing reached the provider.
        ("invalid_order", field) => {
            refund_field_rule(field.unwrap_or_default(), typed_amount, e, now)
        }
        // The provider's own refusal: nothing was refunded.
        (code, _) if refused_by_provider(code) => {
            format!(
                "支付宝拒绝了这笔退款，没有退款。可以点“向支付平台查询”核对这笔交易在支付宝的最新状态（{}）",
                provider_message(lang, &e.message)
            )
        }
        // Not answered, or not understood: the refund may have reached Alipay. It stays 处理中
        // with its amount held; starting another would refund twice.
        _ => format!(
            "退款结果未知（支付宝没有回应或回应无法识别），这笔退款保持“处理中”：请不要重复发起，也不要到支付宝后台手工退款；稍后刷新本页查看退款记录，或点“向支付平台查询”（{}）",
            provider_message(lang, &e.message)
        ),
    }
}

/// An API error's message about the provider, in the page's language: the API's fixed English
/// sentences (`service::provider_unreachable`, `upstream_error`, the gateway's refusal) said in
/// Chinese, the support number kept; what Alipay itself said (its `sub_msg`, often Chinese) stays.
pub fn provider_message(lang: Lang, message: &str) -> String {
    if lang == Lang::En {
        return message.to_owned();
    }
    // A refund whose outcome is unknown: the API's instruction to the shop (refund_key, request
    // it again) is not the owner's; what it means for them is.
    if let Some((head, tail)) = message.split_once(" The refund's outcome is unknown:") {
        let id: String = tail
            .split("kept as refund ")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        return format!(
            "{}；退款结果未知：可能已到达支付宝，已记为退款 #{id}（处理中），等支付宝的通知或查询确定结果。请不要为它再发起退款。",
            provider_message(lang, head.trim_end_matches('.'))
        );
    }
    let mut out = message.to_owned();
    for (en, zh) in [
        (
            "the payment provider refused the request: ",
            "支付宝拒绝了请求：",
        ),
        ("the provider did not answer in time", "支付宝没有及时回应"),
        (
            "the provider could not be reached (no connection, or its name did not resolve)",
            "连不上支付宝（没有网络连接，或域名无法解析）",
        ),
        (
            "the provider's answer could not be understood",
            "支付宝的回应无法识别",
        ),
        (
            "the provider's answer carries a signature that does not match the configured keys",
            "支付宝回应的签名与设置的密钥不符",
        ),
        ("the provider answered HTTP ", "支付宝回应了 HTTP "),
        (
            "; the detail is in the payhost log)",
            "；需要时请把编号发给运营者，详情在 payhost 日志里）",
        ),
        ("Business Failed", "业务处理失败"),
        (" (correlation id ", "（技术支持编号 "),
    ] {
        out = out.replace(en, zh);
    }
    // A support number without the log's words ends with the half-width parenthesis.
    if out.contains("（技术支持编号 ") && out.ends_with(')') {
        out.pop();
        out.push('）');
    }
    // Alipay's refusal code, said after it in words the owner need not look up: "(CODE：…)" inside
    // the parenthesis it came in, "CODE（…）" on its own. Tokens are runs of the codes' characters,
    // each found where it is (a code inside a longer word is not one).
    let is_code_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut found = None;
    let mut start = None;
    for (i, c) in out.char_indices().chain(std::iter::once((out.len(), ' '))) {
        match (is_code_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                let token = out[from..i].trim_end_matches('.');
                if let Some(meaning) = provider_code_meaning(token) {
                    found = Some((from + token.len(), meaning));
                    break;
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some((at, meaning)) = found {
        let said = if out[at..].starts_with(')') {
            format!("：{meaning}")
        } else {
            format!("（{meaning}）")
        };
        out.insert_str(at, &said);
    }
    out
}

/// What one of Alipay's refusal codes of a refund or a trade means for the owner ([OPENAPI §7.3]'s
/// `ACQ.*` sub-codes; a legacy refund's result says the same words without `ACQ.`).
fn provider_code_meaning(code: &str) -> Option<&'static str> {
    Some(match code.strip_prefix("ACQ.").unwrap_or(code) {
        "TRADE_STATUS_ERROR" => {
            "交易状态不允许这样操作，例如已全额退款、已关闭或已经付款；请点“向支付平台查询”核对"
        }
        "TRADE_NOT_EXIST" => "支付宝没有这笔交易",
        "TRADE_HAS_FINISHED" => "交易已结束，超过了可退款的期限，不能再退款",
        "TRADE_NOT_ALLOW_REFUND" => "这笔交易不允许退款",
        "SELLER_BALANCE_NOT_ENOUGH" => "商户的支付宝账户余额不足，充值后再退款",
        "DISCORDANT_REPEAT_REQUEST" => "同一个退款单号以前退过不同的金额或内容",
        "REASON_TRADE_BEEN_FREEZEN" => "交易已被支付宝冻结",
        "REFUND_AMT_NOT_EQUAL_TOTAL" | "REASON_TRADE_REFUND_FEE_ERR" | "REFUND_FEE_ERROR" => {
            "退款金额不对，可能超过了可退的金额"
        }
        "SYSTEM_ERROR" => "支付宝系统繁忙，稍后再试",
        _ => return None,
    })
}

/// The audit log's actions, as the page's action filter offers them.
pub const AUDIT_ACTIONS: &[&str] = &[
    "login",
    "settings.save",
    "merchant.connect",
    "merchant.remove",
    "refund.start",
    "refund.abandon",
    "payment.sync",
    "payment.close",
    "payment.review_cleared",
    "token.create",
    "token.revoke",
    "user.add",
    "user.remove",
    "user.password",
    "webhook.resend",
    "webhook.resend_all",
    "webhook.retry_now",
];

/// An audit log action in words (the action's code stays beside it for support).
pub fn audit_action(lang: Lang, action: &str) -> &str {
    let (zh, en) = match action {
        "login" => ("登录", "logged in"),
        "settings.save" => ("保存设置", "settings saved"),
        "merchant.connect" => ("连接商城", "shop connected"),
        "merchant.remove" => ("删除商户", "merchant removed"),
        "refund.start" => ("发起退款", "refund started"),
        "refund.abandon" => ("放弃退款", "refund given up"),
        "payment.sync" => ("向支付平台查询", "synced with the provider"),
        "payment.close" => ("关闭订单", "order closed"),
        "payment.review_cleared" => ("核对完毕，取消标记", "review flag cleared"),
        "token.create" => ("新建令牌", "token created"),
        "token.revoke" => ("吊销令牌", "token revoked"),
        "user.add" => ("添加管理员", "admin user added"),
        "user.remove" => ("删除管理员", "admin user removed"),
        "user.password" => ("更换管理员密码", "admin password changed"),
        "webhook.resend" => ("重发商城通知", "webhook resent"),
        "webhook.resend_all" => ("全部重发商城通知", "all webhooks resent"),
        "webhook.retry_now" => ("立即重试商城通知", "webhooks retried now"),
        other => (other, other),
    };
    lang.pick(zh, en)
}

/// A login's detail when the browser holds no proof of an earlier login to the account with its
/// present password (device.rs): new to it, or the password was changed since.
pub const NEW_BROWSER: &str = "; a browser new to this account";

/// An audit entry's detail in the owner's words. The details are written in a fixed English form
/// when the action is logged; on the Chinese page only the words payhost wrote are said in
/// Chinese, by their place in each action's form — what someone typed (a label, a name, an order
/// number, a review reason) stays exactly as recorded.
pub fn audit_detail(lang: Lang, action: &str, detail: &str) -> String {
    if lang == Lang::En {
        return detail.to_owned();
    }
    // `{no}: …`: the order number is never translated.
    let after_order = |f: &dyn Fn(&str) -> String| match detail.split_once(": ") {
        Some((no, rest)) => format!("{no}：{}", f(rest)),
        None => detail.to_owned(),
    };
    let first_word = |zh: &str| match detail.split_once(' ') {
        Some((_, rest)) => format!("{zh} {rest}"),
        None => detail.to_owned(),
    };
    match action {
        // `from {address}`, and `; a browser new to this account` the first time.
        "login" => detail.replacen("from ", "来自 ", 1).replace(
            NEW_BROWSER,
            "（新浏览器：此前没有登录过这个账号，或账号换过密码）",
        ),
        // `{no}: ¥1.00 #3 SUCCESS`: the refund's status, last.
        "refund.start" => after_order(&|rest| match rest.rsplit_once(' ') {
            Some((head, status)) => {
                format!("{head} {}", super::view::refund_status_word(lang, status))
            }
            None => rest.to_owned(),
        }),
        // `{no}: WAIT_BUYER_PAY`: the payment's status.
        "payment.sync" => after_order(&|rest| super::view::status_word(lang, rest).to_owned()),
        "refund.abandon" | "payment.review_cleared" => after_order(&str::to_owned),
        // `plugin {id}; changed: key, shop_webhook_url` (a save through the API).
        "settings.save" if detail.starts_with("plugin ") => first_word("插件")
            .replace("; changed: nothing", "；没有改动")
            .replace("; new merchant", "；新商户")
            .replace("; changed: ", "；改动："),
        "merchant.remove" => match detail.strip_suffix(" test payment(s) removed") {
            Some(n) => format!("同时删除 {n} 笔测试支付"),
            None => detail.to_owned(),
        },
        "token.create" | "token.revoke" | "merchant.connect" if detail.starts_with("token ") => {
            first_word("令牌")
        }
        "webhook.resend" if detail.starts_with("webhook ") => first_word("商城通知"),
        "webhook.resend_all" | "webhook.retry_now" => match detail.strip_suffix(" webhook(s)") {
            Some(n) => format!("{n} 条商城通知"),
            None => detail.to_owned(),
        },
        // `{name} {role} {merchants…}`: the role, second.
        "user.add" => {
            let mut words: Vec<String> = detail.split(' ').map(str::to_owned).collect();
            if let Some(role) = words.get_mut(1) {
                match role.as_str() {
                    "owner" => *role = "店主".to_owned(),
                    "operator" => *role = "运营者".to_owned(),
                    _ => {}
                }
            }
            words.join(" ")
        }
        _ => detail.to_owned(),
    }
}

/// Why a payment is held for review (需要人工核对), explained for the owner with what to do. The
/// reasons are written in English by the money rules (`domain::refunds`, the notification's
/// match), some bilingual (`中文 / English`); the page shows the original beside this for
/// support.
pub fn review_explained(lang: Lang, raw: &str) -> String {
    // A note holds one reason per line (`domain::review`): each explained on its own line.
    crate::domain::review::reasons(raw)
        .map(|reason| reason_explained(lang, reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One reason of a review note, explained.
fn reason_explained(lang: Lang, raw: &str) -> String {
    let raw = raw.trim();
    // A bilingual reason: its own half in the page's language.
    if let Some((zh, en)) = raw.split_once(" / ") {
        if zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) {
            return lang.pick(zh.trim(), en.trim()).to_owned();
        }
    }
    const CHECK: &str = "请到支付宝商家后台核对这笔交易的退款，核对后如需更正请联系运营者（运行 payhost 的人），并把订单页上的原文发给他";
    let known: Option<(String, &str)> = if raw.starts_with("refund ")
        && raw.contains("reported succeeded after failing would exceed the paid")
    {
        Some((
            format!("一笔先前失败或已放弃的退款，支付宝后来又报告退款成功；计入它会超过实付金额，所以没有记入。{CHECK}"),
            "A refund that had failed (or was given up) was later reported succeeded; counting it would exceed the amount paid, so it was not applied. Check the trade's refunds in Alipay's merchant portal.",
        ))
    } else if raw.starts_with("refund ") && raw.contains("was reported succeeded, now failed") {
        Some((
            format!("一笔已经报告成功的退款，支付宝又报告为失败，没有记入。{CHECK}"),
            "A refund reported succeeded was later reported failed; nothing was changed. Check it in Alipay's merchant portal.",
        ))
    } else if raw.starts_with("refund ")
        && raw.contains("the provider reports")
        && raw.contains("was started")
    {
        Some((
            format!("支付宝报告的退款金额与这里发起的金额不一致，没有记入。{CHECK}"),
            "Alipay reports another amount than the refund started here; it was not applied. Check it in Alipay's merchant portal.",
        ))
    } else if raw.starts_with("a refund report that names neither") {
        Some((
            "支付宝的退款通知既没有退款金额也没有已退总额，无法记入：请点“向支付平台查询”，仍不清楚时到支付宝商家后台核对".to_owned(),
            "A refund report named neither its amount nor the refunded total: press Sync, or check the trade in Alipay's merchant portal.",
        ))
    } else if raw.starts_with("refund ") && raw.contains("still pending here no longer fit") {
        // `domain::refunds::success_fit`: applied, with other refunds left that cannot all
        // succeed beside it.
        Some((
            format!("一笔退款在支付宝退款成功（包括先前失败或已在这里放弃、卖家后来又确认的），已经记入；这里还在处理中的其他退款加上它会超过实付金额，支付宝应会拒绝它们。{CHECK}"),
            "A refund succeeded at Alipay (one that had failed or was given up here included, later confirmed by the seller) and was applied; the refunds still pending here would exceed the amount paid beside it, so Alipay should refuse them. Check the trade's refunds in Alipay's merchant portal.",
        ))
    } else if raw.starts_with("the provider reports") && raw.contains("still pending here") {
        Some((
            "支付宝报告的已退款总额无法分辨是否包含这里还在处理中的退款，所以没有记入。请先在订单页点“向支付平台查询”：处理中的退款会先向支付宝查询；还在等卖家确认的退款，若在支付宝商家后台看到它并没有退成（例如交易已全额退款或已关闭），在订单页的退款记录里点它的“放弃”，再查询一次，支付宝的已退总额就会记入。".to_owned(),
            "Alipay's refunded total may or may not include the refunds still pending here, so it was not applied. Press Sync first: pending refunds are asked about first; for one still waiting for the seller that Alipay's merchant portal shows was not made (the trade was refunded in full or closed, say), press its Give up below, then Sync again, and Alipay's refunded total is applied.",
        ))
    } else if raw.starts_with("the provider reports a refund of") {
        Some((
            format!("支付宝报告了一笔退款，计入它会超过实付金额，所以没有记入。{CHECK}"),
            "Alipay reports a refund that would exceed the amount paid; it was not applied. Check the trade's refunds in Alipay's merchant portal.",
        ))
    } else {
        // The notification's match against its order (`field: reason; …`).
        let parts: Vec<&str> = raw
            .split("; ")
            .filter_map(|part| match part.split_once(": ")?.0 {
                "total_fee" => Some("金额不一致"),
                "seller_email" | "seller_id" => Some("收款账号不一致"),
                "out_trade_no" => Some("订单号不一致"),
                _ => None,
            })
            .collect();
        (!parts.is_empty()).then(|| {
            (
                format!(
                    "支付宝的付款通知与这笔订单不符（{}），没有按已支付处理：请到支付宝商家后台核对这笔交易，确认收到的金额和收款账号",
                    parts.join("、")
                ),
                "Alipay's payment notification does not match this order, so it was not taken as paid. Check the trade in Alipay's merchant portal.",
            )
        })
    };
    match known {
        Some((zh, en)) => lang.pick(&zh, en).to_owned(),
        None => lang
            .pick(
                "这笔支付有异常，需要人工核对：请到支付宝商家后台核对这笔交易，必要时把订单页上的原文发给运营者（运行 payhost 的人）",
                "This payment needs a person to check it in Alipay's merchant portal; send the original text below to support if needed.",
            )
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The action filter offers every action in words, and a login's detail reads in Chinese.
    #[test]
    fn every_audit_action_the_filter_offers_is_said_in_words() {
        for a in AUDIT_ACTIONS {
            assert_ne!(audit_action(Lang::Zh, a), *a, "{a}");
            assert_ne!(audit_action(Lang::En, a), *a, "{a}");
        }
        assert_eq!(
            audit_detail(Lang::Zh, "login", &format!("from 192.0.2.7{NEW_BROWSER}")),
            "来自 192.0.2.7（新浏览器：此前没有登录过这个账号，或账号换过密码）"
        );
        assert_eq!(
            audit_detail(Lang::En, "login", "from 192.0.2.7"),
            "from 192.0.2.7"
        );
        // A command run on the server is the operator's.
        assert_eq!(
            who(Lang::Zh, "payhost token"),
            "运营者（命令行 payhost token）"
        );
        assert_eq!(
            who(Lang::En, "payhost admin-user"),
            "the operator (command line: payhost admin-user)"
        );
    }

    /// The API's fixed provider sentences read in Chinese on a Chinese page, support number and
    /// Alipay's own words kept; the English page keeps the API's.
    #[test]
    fn a_bare_refusal_code_is_said_in_words() {
        let said = provider_message(Lang::Zh, "TRADE_STATUS_ERROR");
        assert!(
            said.starts_with("TRADE_STATUS_ERROR（交易状态不允许这样操作")
                && said.ends_with("核对）"),
            "{said}"
        );
        assert_eq!(
            provider_message(Lang::En, "TRADE_STATUS_ERROR"),
            "TRADE_STATUS_ERROR"
        );
        assert_eq!(
            provider_message(Lang::Zh, "SOMETHING_ELSE"),
            "SOMETHING_ELSE"
        );
        // A code inside a longer word is not that code; one before a full stop is.
        assert_eq!(
            provider_message(Lang::Zh, "(isp.SYSTEM_ERROR_RETRY) x"),
            "(isp.SYSTEM_ERROR_RETRY) x"
        );
        let said = provider_message(Lang::Zh, "(isp.X) ACQ.TRADE_NOT_EXIST.");
        assert_eq!(said, "(isp.X) ACQ.TRADE_NOT_EXIST（支付宝没有这笔交易）.");
    }

    #[test]
    fn provider_messages_are_chinese_on_a_chinese_page() {
        for (api, zh) in [
            (
                "the provider answered HTTP 500 (correlation id ab12; the detail is in the payhost log)",
                "支付宝回应了 HTTP 500（技术支持编号 ab12；需要时请把编号发给运营者，详情在 payhost 日志里）",
            ),
            (
                "the payment provider refused the request: Business Failed (ACQ.TRADE_STATUS_ERROR) 交易状态不合法 (correlation id cd34)",
                "支付宝拒绝了请求：业务处理失败 (ACQ.TRADE_STATUS_ERROR：交易状态不允许这样操作，例如已全额退款、已关闭或已经付款；请点“向支付平台查询”核对) 交易状态不合法（技术支持编号 cd34）",
            ),
            (
                "the provider did not answer in time (correlation id ef56; the detail is in the payhost log)",
                "支付宝没有及时回应（技术支持编号 ef56；需要时请把编号发给运营者，详情在 payhost 日志里）",
            ),
        ] {
            assert_eq!(provider_message(Lang::Zh, api), zh);
            assert_eq!(provider_message(Lang::En, api), api);
        }
        // A refund of unknown outcome: what it means for the owner, not the shop's instruction.
        let unknown = "the provider answered HTTP 500 (correlation id ab12; the detail is in the payhost log). The refund's outcome is unknown: it may have reached the provider, so it is kept as refund 4 (request_no r4, PENDING) and settled by the provider's report or a query. Do not start another refund for it: read the payment later, or send this request again with the same refund_key";
        let said = provider_message(Lang::Zh, unknown);
        assert!(
            said.starts_with("支付宝回应了 HTTP 500（技术支持编号 ab12")
                && said.contains("已记为退款 #4（处理中）")
                && said.ends_with("请不要为它再发起退款。")
                && !said.contains("refund_key"),
            "{said}"
        );
    }

    #[test]
    fn full_width_letters_and_digits_are_ascii() {
        assert_eq!(half_width("ＯＰ１２０５０００５１"), "OP120500051");
        assert_eq!(half_width("　ａｂ－１"), " ab-1");
        assert_eq!(half_width("手工剪纸"), "手工剪纸");
    }

    #[test]
    fn full_width_amounts_are_the_same_number() {
        assert_eq!(half_width_amount(" ０.５ "), "0.5");
        assert_eq!(half_width_amount("１２．３０"), "12.30");
        assert_eq!(half_width_amount("1。5"), "1.5");
        // Everything else is left for the amount rule to refuse.
        assert_eq!(half_width_amount("¥1"), "¥1");
        assert_eq!(half_width_amount("1,00"), "1,00");
    }

    #[test]
    fn amount_refusals_say_what_to_type() {
        assert!(amount_rule(Lang::Zh, "abc").contains("半角数字"));
        assert!(amount_rule(Lang::Zh, "0.001").contains("两位小数"));
        assert!(amount_rule(Lang::Zh, "").contains("请填写金额"));
        assert!(amount_rule(Lang::Zh, "0").contains("0.01"));
        assert_eq!(
            amount_rule(Lang::En, "0.001"),
            "must have at most two decimal places"
        );
    }

    #[test]
    fn filter_errors_name_the_pages_field() {
        let e = ApiError::field(400, "invalid_request", "min_amount", "min_amount: x");
        let typed = |f: &str| {
            if f == "min_amount" {
                "abc".into()
            } else {
                String::new()
            }
        };
        assert!(filter_error(Lang::Zh, &e, &typed, PAYMENT_DATES).starts_with("最小金额："));
        // The ledger's own refusals, as the page gets them.
        let order =
            crate::ledger::parse_filter(Some("from=2026-12-05&to=2026-12-01"), None).unwrap_err();
        let none = |_: &str| String::new();
        assert_eq!(
            filter_error(Lang::Zh, &order, &none, PAYMENT_DATES),
            "下单日期从：不能晚于下单日期到"
        );
        assert_eq!(
            filter_error(Lang::En, &order, &none, PAYMENT_DATES),
            order.message
        );
        let bad_date = crate::ledger::parse_filter(Some("from=yesterday"), None).unwrap_err();
        assert!(filter_error(Lang::Zh, &bad_date, &none, PAYMENT_DATES).contains("年-月-日"));
        // Which of the four dates: the refunds list has two pairs.
        let typed_abc = |_: &str| "abc".to_owned();
        for (query, said) in [
            ("completed_to=abc", "完成日期到：请按 年-月-日"),
            ("to=abc", "下单日期到：请按 年-月-日"),
        ] {
            let e = crate::refund_list::parse_filter(Some(query), None).unwrap_err();
            assert!(
                filter_error(Lang::Zh, &e, &typed_abc, PAYMENT_DATES).starts_with(said),
                "{query}: {}",
                filter_error(Lang::Zh, &e, &typed_abc, PAYMENT_DATES)
            );
        }
        let completed = crate::refund_list::parse_filter(
            Some("completed_from=2026-12-08&completed_to=2026-12-01"),
            None,
        )
        .unwrap_err();
        assert_eq!(
            filter_error(Lang::Zh, &completed, &none, PAYMENT_DATES),
            "完成日期从：不能晚于完成日期到"
        );
    }

    fn now(status: &str, refundable_fen: u64) -> PaymentNow<'_> {
        PaymentNow {
            status,
            finished: status == crate::domain::state::TRADE_FINISHED,
            refundable_fen,
        }
    }

    #[test]
    fn refund_refusals_say_why() {
        let not_paid = ApiError::new(409, "not_refundable", "the payment is not paid");
        assert!(
            refund_error(Lang::Zh, &not_paid, "1", now("WAIT_BUYER_PAY", 0))
                .contains("这笔订单待付款")
        );
        let done = ApiError::new(409, "not_refundable", "the payment is not paid");
        assert!(refund_error(Lang::Zh, &done, "1", now("REFUNDED", 0)).contains("已全额退款"));
        let finished = ApiError::new(409, "not_refundable", "finished");
        assert!(
            refund_error(Lang::Zh, &finished, "1", now("TRADE_FINISHED", 0))
                .contains("TRADE_FINISHED")
        );
        let over = ApiError::field(409, "refund_exceeds_paid", "amount", "amount: 5 > 4");
        let said = refund_error(Lang::Zh, &over, "5", now("TRADE_SUCCESS", 400));
        assert!(
            said.contains("可退金额") && said.contains("¥4.00"),
            "{said}"
        );
        // Refused by Alipay: nothing refunded. No answer: unknown, do not start another.
        let refused = ApiError::new(502, "gateway_ACQ.TRADE_HAS_CLOSE", "closed");
        assert!(
            refund_error(Lang::Zh, &refused, "1", now("TRADE_SUCCESS", 100)).contains("没有退款")
        );
        assert!(!refund_outcome_unknown("gateway_ACQ.TRADE_HAS_CLOSE"));
        for code in [
            "gateway_timeout",
            "gateway_unreachable",
            "gateway_malformed",
            "gateway_bad_signature",
            "plugin_failed",
            "internal",
        ] {
            let e = ApiError::new(502, code, "x");
            let said = refund_error(Lang::Zh, &e, "1", now("TRADE_SUCCESS", 100));
            assert!(
                said.contains("结果未知") && said.contains("不要重复"),
                "{code}: {said}"
            );
            assert!(refund_outcome_unknown(code), "{code}");
            // The English page says the same: unknown, do not start it again.
            let en = refund_error(Lang::En, &e, "1", now("TRADE_SUCCESS", 100));
            assert!(
                en.contains("outcome is unknown") && en.contains("do not start it again"),
                "{code}: {en}"
            );
        }
        let en = refund_error(Lang::En, &refused, "1", now("TRADE_SUCCESS", 100));
        assert!(
            en.contains("nothing was refunded") && en.contains("Sync with the provider"),
            "{en}"
        );
        assert_eq!(
            refund_error(Lang::En, &over, "5", now("TRADE_SUCCESS", 400)),
            over.message,
            "the API's own words where the provider is not concerned"
        );
        for code in [
            "invalid_request",
            "invalid_order",
            "refund_exceeds_paid",
            "not_refundable",
        ] {
            assert!(!refund_outcome_unknown(code), "{code}");
        }
    }

    #[test]
    fn a_fully_refunded_order_says_so_rather_than_exceeds() {
        // Refunded in parts until nothing is left: the store says the amount exceeds.
        let over = ApiError::field(409, "refund_exceeds_paid", "amount", "amount: 1 > 0");
        let said = refund_error(Lang::Zh, &over, "1.00", now("REFUNDED", 0));
        assert!(said.contains("这笔订单已全额退款"), "{said}");
        assert!(!said.contains("超过了可退金额"), "{said}");
        // The rest is being refunded (a refund still 处理中): nothing is left either.
        let said = refund_error(Lang::Zh, &over, "1.00", now("PARTIALLY_REFUNDED", 0));
        assert!(said.contains("正在退款中"), "{said}");
    }

    #[test]
    fn component_refusals_name_the_refunds_field_in_chinese() {
        // What the component answers for a reason with a tab (plugin/src/connector.rs).
        let e = ApiError::field(
            400,
            "invalid_order",
            "reason",
            "reason: must be at most 256 characters with no control characters",
        );
        let said = refund_error(Lang::Zh, &e, "1.00", now("TRADE_SUCCESS", 100));
        assert!(said.starts_with("退款原因："), "{said}");
        assert!(said.contains("控制字符"), "{said}");
        assert!(
            !said.contains("支付宝不接受") && !said.contains("must"),
            "{said}"
        );
        let e = ApiError::field(
            400,
            "invalid_order",
            "amount",
            "amount: must be at most the amount paid (1.00)",
        );
        let said = refund_error(Lang::Zh, &e, "2.00", now("TRADE_SUCCESS", 100));
        assert!(
            said.starts_with("退款金额：") && !said.contains("must"),
            "{said}"
        );
        let e = ApiError::field(
            400,
            "invalid_order",
            "out_trade_no",
            "out_trade_no: must be …",
        );
        assert!(refund_error(Lang::Zh, &e, "1", now("TRADE_SUCCESS", 100)).starts_with("订单号"));
    }

    #[test]
    fn a_refund_of_nothing_says_more_than_0_and_what_is_left() {
        for typed in ["0", "0.00", "-1", "100000000.01"] {
            assert_eq!(
                refund_amount_refusal(Lang::Zh, typed, 888),
                "退款金额必须大于 0，最多 ¥8.88",
                "{typed}"
            );
        }
        assert_eq!(
            refund_amount_refusal(Lang::En, "0", 888),
            "amount: must be more than 0 and at most 8.88"
        );
        // Other mistakes keep their own words.
        assert!(refund_amount_refusal(Lang::Zh, "abc", 888).contains("半角数字"));
        // …as does the API's refusal of the same amount.
        let e = ApiError::field(400, "invalid_request", "amount", "amount: out of range");
        assert_eq!(
            refund_error(Lang::Zh, &e, "0", now("TRADE_SUCCESS", 888)),
            "退款金额必须大于 0，最多 ¥8.88"
        );
    }

    #[test]
    fn a_refused_refunds_headline_says_why() {
        assert_eq!(
            refund_not_started(Lang::Zh, "退款金额：请只填写半角数字和小数点，如 12.50"),
            "未发起退款：退款金额请只填写半角数字和小数点，如 12.50"
        );
        assert_eq!(
            refund_not_started(Lang::Zh, "退款原因：最多 256 个字"),
            "未发起退款：退款原因最多 256 个字"
        );
        assert_eq!(
            refund_not_started(Lang::Zh, "这笔订单已全额退款，不能再退款"),
            "未发起退款：这笔订单已全额退款，不能再退款"
        );
        assert_eq!(
            refund_not_started(Lang::En, "amount: must not be empty"),
            "The refund was not started: amount: must not be empty"
        );
    }

    #[test]
    fn amounts_of_digits_and_points_say_what_is_wrong() {
        assert!(amount_rule(Lang::Zh, "-1").contains("必须大于 0"));
        assert!(amount_rule(Lang::Zh, "-0.50").contains("必须大于 0"));
        for typed in ["1.", ".5"] {
            let said = amount_rule(Lang::Zh, typed);
            assert!(
                said.contains("小数点前后都要有数字") && said.contains("1.50"),
                "{typed}: {said}"
            );
            assert!(!said.contains("半角"), "{typed}: {said}");
        }
        assert!(amount_rule(Lang::Zh, "1.2.3").contains("一个小数点"));
        assert!(amount_rule(Lang::Zh, "+1").contains("+ 号"));
        assert!(amount_rule(Lang::Zh, "¥1").contains("半角数字"));
        assert!(amount_rule(Lang::Zh, ".").contains("半角数字"));
        assert_eq!(
            amount_rule(Lang::En, "-1"),
            "must be more than 0, such as 12.50"
        );
    }

    #[test]
    fn a_date_that_does_not_exist_is_named() {
        let e = crate::ledger::parse_filter(Some("from=2026-02-30"), None).unwrap_err();
        let typed = |f: &str| {
            if f == "from" {
                "2026-02-30".into()
            } else {
                String::new()
            }
        };
        let said = filter_error(Lang::Zh, &e, &typed, PAYMENT_DATES);
        assert!(said.contains("没有 2026-02-30 这一天"), "{said}");
        assert!(!said.contains("请按 年-月-日"), "{said}");
        // A wrong shape still gets the format.
        let e = crate::ledger::parse_filter(Some("from=2026/02/03"), None).unwrap_err();
        assert!(
            filter_error(Lang::Zh, &e, &|_: &str| "2026/02/03".into(), PAYMENT_DATES)
                .contains("年-月-日")
        );
    }

    #[test]
    fn review_reasons_are_explained_in_chinese() {
        let raw = "refund 2026120400000000000000001 reported succeeded after failing would exceed the paid 1.00";
        let said = review_explained(Lang::Zh, raw);
        assert!(
            said.contains("超过实付金额") && said.contains("支付宝商家后台"),
            "{said}"
        );
        assert!(!said.contains("refund"), "{said}");
        let bilingual = "关闭后又收到付款（支付宝交易号 2026），已按已支付处理：请发货或退款 / paid after it was closed here (trade 2026): now paid; fulfil or refund it";
        assert!(review_explained(Lang::Zh, bilingual).starts_with("关闭后又收到付款"));
        assert!(review_explained(Lang::En, bilingual).starts_with("paid after"));
        // A refund given up here, then confirmed by the seller: applied, the others held.
        let given_up = "refund 2026120400000000000000006 succeeded at the provider after it had failed or been given up here; refunds of 10.00 still pending here no longer fit the paid 10.00 beside it: the provider should refuse them, check them in its portal";
        let said = review_explained(Lang::Zh, given_up);
        assert!(
            said.contains("已在这里放弃") && said.contains("已经记入"),
            "{said}"
        );
        let mismatch = "total_fee: the notification says 1.00 but the order is 2.00; seller_email: the notification pays a / b but the order's seller is c";
        let said = review_explained(Lang::Zh, mismatch);
        assert!(said.contains("金额不一致、收款账号不一致"), "{said}");
        for raw in [
            "refund 1: the provider reports 2.00 refunded, 1.00 was started",
            "refund 1 was reported succeeded, now failed: x",
            "a refund report that names neither its amount nor the refunded total",
            "the provider reports 1.00 refunded in all; refunds of 0.50 still pending here may or may not be part of it: check",
            "the provider reports a refund of 2.00 on a payment of 1.00 with 0.00 already refunded or being refunded",
            "something new",
        ] {
            let said = review_explained(Lang::Zh, raw);
            assert!(said.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{raw}: {said}");
            assert!(!said.contains("provider"), "{raw}: {said}");
        }
        // A note of two reasons: each explained, on its own line, in order.
        let note = crate::domain::review::with_reason(Some(bilingual), raw);
        let said = review_explained(Lang::Zh, &note);
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(lines.len(), 2, "{said}");
        assert!(lines[0].starts_with("关闭后又收到付款"), "{said}");
        assert!(lines[1].contains("超过实付金额"), "{said}");
    }
}

#[cfg(test)]
mod who_tests {
    use super::*;

    #[test]
    fn who_started_a_refund_is_said_in_words_never_as_a_password_name() {
        assert_eq!(
            who(Lang::Zh, "admin:admin_password"),
            "运营者（主密码登录）"
        );
        assert_eq!(who(Lang::Zh, "admin_password"), "运营者（主密码登录）");
        // (language, action, detail as recorded, as shown). What someone typed or wrote is kept
        // as recorded: a review reason, a token's label, a user named like a role, an order
        // numbered like a status.
        for (lang, action, recorded, shown) in [
            (
                Lang::Zh,
                "refund.start",
                "DEMO1: ¥20.00 #9 SUCCESS",
                "DEMO1：¥20.00 #9 退款成功",
            ),
            (
                Lang::Zh,
                "payment.sync",
                "DEMO1: WAIT_BUYER_PAY",
                "DEMO1：待付款",
            ),
            (
                Lang::Zh,
                "settings.save",
                "plugin alipay-wap",
                "插件 alipay-wap",
            ),
            (
                Lang::Zh,
                "webhook.resend_all",
                "3 webhook(s)",
                "3 条商城通知",
            ),
            (
                Lang::Zh,
                "user.add",
                "zhangsan owner market",
                "zhangsan 店主 market",
            ),
            (
                Lang::Zh,
                "payment.review_cleared",
                "DEMO1: TRADE_CLOSED paid",
                "DEMO1：TRADE_CLOSED paid",
            ),
            (
                Lang::Zh,
                "token.create",
                "token #2 owner SUCCESS",
                "令牌 #2 owner SUCCESS",
            ),
            (Lang::Zh, "user.remove", "operator", "operator"),
            (Lang::Zh, "payment.close", "REFUNDED", "REFUNDED"),
            (
                Lang::Zh,
                "user.add",
                "owner owner market",
                "owner 店主 market",
            ),
            (
                Lang::En,
                "refund.start",
                "DEMO1: ¥20.00 #9 SUCCESS",
                "DEMO1: ¥20.00 #9 SUCCESS",
            ),
        ] {
            assert_eq!(
                audit_detail(lang, action, recorded),
                shown,
                "{action}: {recorded}"
            );
        }
        assert_eq!(who(Lang::Zh, "admin:alice"), "管理员 alice");
        assert_eq!(who(Lang::En, "api:operator"), "the operator (API)");
        assert_eq!(who(Lang::Zh, "api:merchant:shop1"), "商城（shop1）");
        assert_eq!(who(Lang::Zh, "gateway"), "支付宝（在 payhost 之外发起）");
        assert_eq!(who(Lang::En, "something"), "something");
    }
}
