//! The shop owner's words for what the API refuses: the API's errors are English and name its
//! parameters (`min_amount`), the admin page names its fields (最小金额) and says what to type.
//! Only the admin's own forms are translated here; anything else keeps the API's message.

use super::view::Lang;
use crate::domain::amount::{Amount, AmountError};
use crate::http::error::ApiError;

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

/// Why an amount was refused, in the owner's words.
fn amount_rule(lang: Lang, typed: &str) -> String {
    let zh = match Amount::parse(typed) {
        Err(AmountError::Empty) => "请填写金额，如 12.50",
        Err(AmountError::NotDecimal) => "请只填写半角数字和小数点，如 12.50（不要带 ¥、元或逗号）",
        Err(AmountError::TooManyDecimals) => "最多两位小数（精确到分），如 12.50",
        Err(AmountError::OutOfRange) => "金额须在 0.01 到 100000000.00 元之间",
        Ok(_) => "金额不对",
    };
    let en = match Amount::parse(typed) {
        Err(e) => e.to_string(),
        Ok(_) => "is not accepted".to_owned(),
    };
    lang.pick(zh, &en).to_owned()
}

/// A refused filter of the payments list, naming the field as the page labels it.
pub fn filter_error(lang: Lang, e: &ApiError, typed: &dyn Fn(&str) -> String) -> String {
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
                format!("{label}：最小金额不能大于最大金额")
            } else {
                format!("{label}：{}", amount_rule(lang, &value))
            }
        }
        "from" | "to" => {
            // The ledger's one rule between the two (`ledger::parse_filter`).
            if e.message.ends_with("must be before to") {
                "日期：开始日期不能晚于结束日期".to_owned()
            } else {
                "日期：请按 年-月-日 填写，如 2026-12-04".to_owned()
            }
        }
        "status" => "状态：请从列表中选择".to_owned(),
        "merchant" => "商户：请从列表中选择".to_owned(),
        "q" => "搜索：最多 128 个字".to_owned(),
        "cursor" => "翻页链接已失效，请回到第一页重新翻页".to_owned(),
        _ => e.message.clone(),
    }
}

/// Codes after which a refund may have reached the provider (no answer, or one not understood):
/// see `refunds.rs`, which keeps such a refund PENDING.
const UNKNOWN_OUTCOME: [&str; 4] = [
    "gateway_unreachable",
    "gateway_timeout",
    "gateway_malformed",
    "gateway_bad_signature",
];

/// Why a refund was not started, with what to do, for the refund form.
/// `status` is the payment's status as the page now reads it.
pub fn refund_error(lang: Lang, e: &ApiError, typed_amount: &str, status: &str) -> String {
    if lang == Lang::En {
        return e.message.clone();
    }
    match (e.code.as_str(), e.field.as_deref()) {
        ("invalid_request", Some("amount")) => {
            format!("退款金额：{}", amount_rule(lang, typed_amount))
        }
        ("invalid_request", Some("reason")) => "退款原因：最多 256 个字".to_owned(),
        ("refund_key_reused", _) => {
            "这个退款编号已用于另一笔金额不同的退款；请重新打开页面再退款".to_owned()
        }
        ("refund_exceeds_paid", _) => {
            "退款金额超过了可退金额（已退款和退款处理中的金额不能再退），请按页面上的“最多”金额填写"
                .to_owned()
        }
        ("not_refundable", _) if status == crate::domain::state::TRADE_FINISHED => {
            "这笔交易已完结（TRADE_FINISHED），支付宝不再接受退款".to_owned()
        }
        ("not_refundable", _) => format!(
            "这笔订单{}，不能退款：只有已支付且未全额退款的订单可以退款",
            super::view::status_word(lang, status)
        ),
        ("unknown_payment", _) => "没有这笔支付，请回到支付列表重新查找".to_owned(),
        ("merchant_not_configured", _) => {
            "这个商户还没有保存支付宝设置，不能退款：请先在商户页面保存设置".to_owned()
        }
        ("not_supported", _) => format!("这个商户的支付接口不支持在这里退款（{}）", e.message),
        // The provider's own refusal: nothing was refunded.
        ("invalid_order", _) => format!("支付宝不接受这笔退款的参数（{}）", e.message),
        (code, _) if code.starts_with("gateway_") && !UNKNOWN_OUTCOME.contains(&code) => {
            format!("支付宝拒绝了这笔退款，没有退款（{}）", e.message)
        }
        // Not answered, or not understood: the refund may have reached Alipay. It stays 处理中
        // with its amount held; starting another would refund twice.
        _ => format!(
            "退款结果未知（支付宝没有回应或回应无法识别），这笔退款保持“处理中”：请不要重复发起，稍后刷新本页查看退款记录，或点“向支付平台查询”（{}）",
            e.message
        ),
    }
}

/// An audit log action in words (the action's code stays beside it for support).
pub fn audit_action(lang: Lang, action: &str) -> &str {
    let (zh, en) = match action {
        "settings.save" => ("保存设置", "settings saved"),
        "merchant.connect" => ("连接商城", "shop connected"),
        "refund.start" => ("发起退款", "refund started"),
        "refund.abandon" => ("放弃退款", "refund given up"),
        "payment.sync" => ("向支付平台查询", "synced with the provider"),
        "payment.close" => ("关闭订单", "order closed"),
        "token.create" => ("新建令牌", "token created"),
        "token.revoke" => ("吊销令牌", "token revoked"),
        "user.add" => ("添加管理员", "admin user added"),
        "user.remove" => ("删除管理员", "admin user removed"),
        "user.password" => ("更换管理员密码", "admin password changed"),
        "webhook.resend" => ("重发商城通知", "webhook resent"),
        "webhook.resend_all" => ("全部重发商城通知", "all webhooks resent"),
        other => (other, other),
    };
    lang.pick(zh, en)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(filter_error(Lang::Zh, &e, &typed).starts_with("最小金额："));
        // The ledger's own refusals, as the page gets them.
        let order =
            crate::ledger::parse_filter(Some("from=2026-12-05&to=2026-12-01"), None).unwrap_err();
        let none = |_: &str| String::new();
        assert!(filter_error(Lang::Zh, &order, &none).contains("不能晚于"));
        assert_eq!(filter_error(Lang::En, &order, &none), order.message);
        let bad_date = crate::ledger::parse_filter(Some("from=yesterday"), None).unwrap_err();
        assert!(filter_error(Lang::Zh, &bad_date, &none).contains("年-月-日"));
    }

    #[test]
    fn refund_refusals_say_why() {
        let not_paid = ApiError::new(409, "not_refundable", "the payment is not paid");
        assert!(refund_error(Lang::Zh, &not_paid, "1", "WAIT_BUYER_PAY").contains("这笔订单待付款"));
        let done = ApiError::new(409, "not_refundable", "the payment is not paid");
        assert!(refund_error(Lang::Zh, &done, "1", "REFUNDED").contains("这笔订单已退款"));
        let finished = ApiError::new(409, "not_refundable", "finished");
        assert!(refund_error(Lang::Zh, &finished, "1", "TRADE_FINISHED").contains("TRADE_FINISHED"));
        let over = ApiError::field(409, "refund_exceeds_paid", "amount", "amount: 5 > 4");
        assert!(refund_error(Lang::Zh, &over, "5", "TRADE_SUCCESS").contains("可退金额"));
        // Refused by Alipay: nothing refunded. No answer: unknown, do not start another.
        let refused = ApiError::new(502, "gateway_ACQ.TRADE_HAS_CLOSE", "closed");
        assert!(refund_error(Lang::Zh, &refused, "1", "TRADE_SUCCESS").contains("没有退款"));
        for code in [
            "gateway_timeout",
            "gateway_unreachable",
            "plugin_failed",
            "internal",
        ] {
            let e = ApiError::new(502, code, "x");
            let said = refund_error(Lang::Zh, &e, "1", "TRADE_SUCCESS");
            assert!(
                said.contains("结果未知") && said.contains("不要重复"),
                "{code}: {said}"
            );
        }
    }
}
