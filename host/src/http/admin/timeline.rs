//! A payment's timeline as its page shows it: the ledger's entries (the API's `timeline`, whose
//! codes and notes stay as they are) in the page's language. Every line has an event name — a
//! refund's batch notify, which names no trade status, is a refund notify — statuses and
//! notification outcomes are words, the host's own notes are said again in words, and nothing
//! empty is joined. The provider's free text is shown where it is the point (why a refund
//! failed), after a label.

use super::view::{given_up_by, given_up_note, refund_status_word, refund_word, status_word, Lang};
use crate::domain::zone::Zone;
use crate::notify::amountless;
use minijinja::{context, Value};

/// The page's timeline: one line per entry, except that a webhook refused the same way several
/// times in a row (a shop down for a day is dozens of attempts) is one line, counted, with its
/// first and last time.
pub fn lines(lang: Lang, zone: &Zone, entries: &[serde_json::Value]) -> Vec<Value> {
    let same_failure = |a: &serde_json::Value, b: &serde_json::Value| {
        a["kind"] == "webhook"
            && b["kind"] == "webhook"
            && a["webhook_id"] == b["webhook_id"]
            && a["http_status"] == b["http_status"]
            && a["error"] == b["error"]
            && a["http_status"]
                .as_u64()
                .is_none_or(|h| !(200..300).contains(&h))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let first = &entries[i];
        let mut n = 1;
        while i + n < entries.len() && same_failure(first, &entries[i + n]) {
            n += 1;
        }
        let (kind, mut detail) = words(lang, first);
        if n > 1 {
            let last = entries[i + n - 1]["at"]
                .as_str()
                .map(|t| zone.show(t))
                .unwrap_or_default();
            detail.push_str(&match lang {
                Lang::Zh => format!(" · 共 {n} 次，最后一次 {last}"),
                Lang::En => format!(" · {n} times, the last at {last}"),
            });
        }
        out.push(context! {
            at => first["at"].as_str().map(|t| zone.show(t)).unwrap_or_default(),
            kind,
            detail,
        });
        i += n;
    }
    out
}

/// The event's name and its details, in `lang`.
fn words(lang: Lang, e: &serde_json::Value) -> (String, String) {
    let t = |zh: &str, en: &str| lang.pick(zh, en).to_owned();
    let text = |k: &str| e[k].as_str().filter(|s| !s.is_empty());
    let kind = text("kind").unwrap_or_default();
    let trade_status = text("trade_status");
    let status = text("status");
    let name = match kind {
        "created" => t("创建", "created"),
        // The legacy batch refund notify names no trade status; an open-platform refund notice
        // names the trade's, and its result the refund.
        "notify"
            if trade_status.is_none()
                || text("detail").is_some_and(|d| d.starts_with("refund ")) =>
        {
            t("退款通知", "refund notify")
        }
        "notify" => t("支付平台通知", "provider notify"),
        "query" => t("向支付平台查询", "query"),
        "refund" => t("退款", "refund"),
        "webhook" => t("商城通知", "shop webhook"),
        "redirect" => t("跳转收银台", "to the cashier"),
        "return" => t("买家返回", "buyer returned"),
        "close" | "closed" => t("关闭", "closed"),
        "review" => t("人工核对", "review"),
        crate::ledger::REFUND_GIVEN_UP => t("放弃退款", "refund given up"),
        other => format!("{} {other}", t("记录", "entry")),
    };
    // A refund given up here (放弃) is stored FAILED with the host's words, not the provider's.
    let given_up = status
        .filter(|_| kind == "refund")
        .and_then(|s| given_up_by(s, text("detail")));
    let mut parts: Vec<String> = Vec::new();
    // A refund's number, as its table and the refund list give it: two of one amount apart.
    match (e["refund_id"].as_i64(), text("amount")) {
        (Some(id), Some(a)) => parts.push(format!("#{id} ¥{a}")),
        (_, Some(a)) => parts.push(format!("¥{a}")),
        _ => {}
    }
    if let Some(s) = status {
        parts.push(refund_word(
            lang,
            s,
            text("detail").filter(|_| kind == "refund"),
        ));
    }
    if let Some(s) = trade_status {
        parts.push(status_word(lang, s).to_owned());
    }
    if let Some(o) = text("outcome") {
        parts.push(outcome_word(lang, o));
    }
    if let Some(ev) = text("event") {
        // As the page's webhook table says it: the owner's word, the shop's name beside it.
        parts.push(super::merchants::event_words(lang, ev));
    }
    if let Some(who) = text("started_by") {
        parts.push(format!(
            "{}{}",
            t("发起人 ", "by "),
            super::words::who(lang, who)
        ));
    }
    match (kind, text("detail")) {
        _ if given_up.is_some() => parts.extend(given_up.map(|by| given_up_note(lang, by))),
        // A refund's stored words are the provider's: its instruction while pending (stale once
        // ended), its reason when it failed.
        ("refund", Some(d)) if status == Some("FAILED") => {
            parts.push(format!(
                "{}{}",
                t("支付平台说明：", "provider: "),
                super::words::provider_message(lang, d)
            ));
        }
        ("refund", _) | (_, None) => {}
        (crate::ledger::REFUND_GIVEN_UP, Some(d)) => {
            // `#<id> <amount> <who>`
            let mut it = d.splitn(3, ' ');
            if let (Some(_), Some(amount), Some(by)) = (it.next(), it.next(), it.next()) {
                parts.push(format!("¥{amount}"));
                parts.push(given_up_note(lang, by));
            }
        }
        ("return", Some(d)) => parts.push(status_word(lang, d).to_owned()),
        // The cashier's signed URL runs to a dozen lines on a phone and tells the owner nothing
        // but where the buyer was sent: its origin.
        ("redirect", Some(d)) => parts.push(cashier_origin(d)),
        (_, Some(d)) => parts.extend(note_words(lang, d)),
    }
    if let Some(h) = e["http_status"].as_u64() {
        parts.push(format!("HTTP {h}"));
    }
    if let Some(err) = text("error") {
        if kind == "webhook" {
            parts.push(webhook_failure_words(lang, err, false));
        } else {
            parts.push(format!("{}{err}", t("错误：", "error: ")));
        }
    }
    (name, parts.join(" · "))
}

/// Why a webhook did not reach the shop, in the owner's words with what to do; the sender's own
/// words on the English page, and for a cause not known here. `dead`: payhost gave up on it (a
/// dead letter), so nothing is retried unless someone resends it.
pub(super) fn webhook_failure_words(lang: Lang, error: &str, dead: bool) -> String {
    if lang == Lang::En {
        return error.to_owned();
    }
    let has = |s: &str| error.contains(s);
    // What happened, and what to do while it is retried (None: nothing; the retry is said).
    let (what, todo): (String, Option<&str>) =
        if let Some(rest) = error.strip_prefix("the shop answered HTTP ") {
            let (status, asked) = match rest.split_once(" (Retry-After: ") {
                Some((status, after)) => (status, after.strip_suffix(" s)")),
                None => (rest, None),
            };
            match asked {
                Some(after) => (
                    format!("商城暂时忙（HTTP {status}，要求 {after} 秒后再发）"),
                    None,
                ),
                None => (
                    format!("商城拒收（HTTP {status}）"),
                    Some("请检查商城通知地址和商城的密钥设置，修好后点“重发”"),
                ),
            }
        } else if has("webhook URL was removed") {
            (
                "商城通知地址已删除，没有发送".to_owned(),
                Some("重新填写地址后点“重发”"),
            )
        } else if has("merchant no longer exists") {
            ("商户已删除，没有发送".to_owned(), Some(""))
        } else if has("cannot read the merchant") {
            ("读不到商户设置（数据库出错），没有发送".to_owned(), None)
        } else if has("Connection refused") {
            (
                "连不上商城（连接被拒绝）".to_owned(),
                Some("请确认商城网站在运行，修好后点“重发”"),
            )
        } else if has("no answer in time") || has("timed out") {
            (
                "商城没有及时回应".to_owned(),
                Some("请确认商城网站在运行、不太慢"),
            )
        } else if has("non-public address") || has("refused by the outbound policy") {
            (
                "商城地址指向内网或不允许的地址，没有发送".to_owned(),
                Some("请改成商城的公网地址"),
            )
        } else if has("resolve") || has("lookup") {
            (
                "商城域名无法解析".to_owned(),
                Some("请检查商城通知地址里的域名"),
            )
        } else {
            return format!("错误：{error}");
        };
    let then = match (dead, todo) {
        // A dead letter is sent again only by 重发.
        (true, Some("")) => String::new(),
        (true, Some(todo)) if todo.contains("重发") => format!("：{todo}"),
        (true, Some(todo)) => format!("：{todo}，修好后点“重发”"),
        (true, None) => "：已放弃，商城恢复后点“重发”".to_owned(),
        (false, Some("")) => String::new(),
        (false, Some(todo)) if todo.contains("重发") => format!("：{todo}"),
        (false, Some(todo)) => format!("：{todo}，稍后会自动重试"),
        (false, None) => "：稍后会自动重试".to_owned(),
    };
    format!("{what}{then}（{error}）")
}

/// Where a redirect went: `scheme://host/…`, or the text as it is when it is no URL.
fn cashier_origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!("{scheme}://{host}/…")
        }
        None => url.to_owned(),
    }
}

/// A notification's outcome (`notify::NotifyOutcome::label`) in words.
pub(super) fn outcome_word(lang: Lang, outcome: &str) -> String {
    let (zh, en) = match outcome {
        "applied" => ("已处理", "applied"),
        "duplicate" => ("重复通知", "duplicate"),
        "no_change" => ("无变化", "no change"),
        "unknown_order" => ("未知订单", "unknown order"),
        "mismatch" => ("待人工核对", "held for review"),
        "not_confirmed" => ("未确认，等待重发", "not confirmed, awaiting a resend"),
        "verify_unreachable" => ("无法验证，等待重发", "cannot verify, awaiting a resend"),
        "merchant_misconfigured" => ("商户设置有误", "merchant misconfigured"),
        "plugin_failed" => ("支付组件出错", "the component failed"),
        "store_failed" => (
            "保存失败，等待重发",
            "could not be stored, awaiting a resend",
        ),
        // Refused before anything changed: said so, and what it usually means.
        "bad_signature" => (
            "签名不符，已拒收（订单没有改变；反复出现请核对密钥，不是支付宝发来的可以不管）",
            "bad signature, refused (nothing changed; if it repeats, check the keys)",
        ),
        "malformed" => (
            "格式不对，已拒收（订单没有改变）",
            "malformed, refused (nothing changed)",
        ),
        "unknown_merchant" => ("商户不存在，已拒收", "no such merchant, refused"),
        "rate_limited" => (
            "来得太频繁，已拒收（支付宝会稍后重发）",
            "too many at once, refused (Alipay sends it again)",
        ),
        "refused_body" => (
            "内容太大或不是表单，已拒收",
            "body too large or not a form, refused",
        ),
        other => return other.to_owned(),
    };
    lang.pick(zh, en).to_owned()
}

/// The host's notes on a timeline entry (a close, a query, a notification's effect) in words;
/// anything else as it is.
pub(super) fn note_words(lang: Lang, note: &str) -> Vec<String> {
    let t = |zh: &str, en: &str| vec![lang.pick(zh, en).to_owned()];
    // A close's note is one sentence (the component's reason may hold "; ").
    if note.starts_with("closed here only") {
        // The component's reason is its own (English) words: the English page keeps them.
        return t("仅在本地关闭，支付平台未关闭", note);
    }
    match note {
        "closed at the provider" => return t("已在支付平台关闭", note),
        "the provider has no such trade" => return t("支付平台没有这笔交易", note),
        "the provider has no such trade: closed here only" => {
            return t("支付平台没有这笔交易，仅在本地关闭", note)
        }
        _ => {}
    }
    let t = |zh: &str, en: &str| lang.pick(zh, en).to_owned();
    let mut out = Vec::new();
    // A reason for review is last and one sentence (it may hold "; " itself), explained as the
    // payment's review note is.
    let (note, held) = match note.split_once("held for review: ") {
        Some((head, why)) => (head, Some(why)),
        None => (note, None),
    };
    for part in note.split("; ") {
        // The query line says it came from a query already.
        if part.is_empty() || part.starts_with("source: ") {
            continue;
        }
        let finished = t(
            "交易已完结（TRADE_FINISHED），不能再退款",
            crate::domain::events::FINISHED_WORDS,
        );
        let word = if part == crate::domain::events::FINISHED_WORDS {
            finished
        } else if let Some(status) = part
            .strip_suffix(crate::domain::events::FINISHED_WORDS)
            .and_then(|s| s.strip_suffix(": "))
        {
            format!("{}{}{finished}", status_word(lang, status), t("；", ": "))
        } else if let Some((from, to)) = part.split_once(" -> ") {
            format!("{} → {}", status_word(lang, from), status_word(lang, to))
        } else if let Some(p) = part.strip_prefix("payment ") {
            format!("{}{}", t("订单", "payment "), status_word(lang, p))
        } else if let Some(r) = part.strip_prefix("refund ") {
            match r.split_once(' ') {
                Some((id, "started outside payhost recorded")) => format!(
                    "{}{id}",
                    t(
                        "记录了在别处发起的退款 #",
                        "recorded refund started elsewhere #"
                    )
                ),
                Some((id, s)) if id.parse::<u64>().is_ok() => format!(
                    "{}{id} {}",
                    t("退款 #", "refund #"),
                    refund_status_word(lang, s)
                ),
                _ if r == "already known" => t("退款已记录过", "refund already known"),
                _ => part.to_owned(),
            }
        } else if let Some(total) = part
            .strip_prefix(amountless::RECORDED_TOTAL)
            .and_then(|rest| rest.strip_suffix(amountless::RECORDED_SINCE))
        {
            match lang {
                Lang::Zh => format!("没有金额的部分退款：交易查询的已退总额 ¥{total} 这里已记入，最后一笔在这笔退款之后记入"),
                Lang::En => part.to_owned(),
            }
        } else {
            match part {
                "the trade is still waiting" => t("交易仍在等待付款", part),
                "unknown order" => t("未知订单", part),
                amountless::APPLIED => t("没有金额的部分退款：已按交易查询的已退总额记入", part),
                amountless::LEARNED_BEFORE => t("没有金额的部分退款：此前已按交易查询记入", part),
                amountless::ON_FINISH => t(
                    "交易完结时报告的部分退款（没有金额）：交易查询显示交易已完结，它的已退总额这里已记入",
                    part,
                ),
                _ => part.to_owned(),
            }
        };
        out.push(word);
    }
    // The outcome (mismatch) says it is held for review already: this says why.
    if let Some(why) = held {
        out.push(super::words::review_explained(lang, why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A failure still being retried promises the retry; a dead letter never does (only 重发
    /// sends it again), and a shop's Retry-After is said as it asked.
    #[test]
    fn webhook_failures_promise_a_retry_only_while_there_is_one() {
        let busy = "the shop answered HTTP 503 (Retry-After: 120 s)";
        let retrying = webhook_failure_words(Lang::Zh, busy, false);
        assert!(
            retrying.starts_with("商城暂时忙（HTTP 503，要求 120 秒后再发）：稍后会自动重试"),
            "{retrying}"
        );
        let dead = webhook_failure_words(Lang::Zh, busy, true);
        assert!(
            dead.starts_with(
                "商城暂时忙（HTTP 503，要求 120 秒后再发）：已放弃，商城恢复后点“重发”"
            ),
            "{dead}"
        );
        let slow = webhook_failure_words(Lang::Zh, "no answer in time: 10 s", true);
        assert!(
            !slow.contains("自动重试") && slow.contains("重发"),
            "{slow}"
        );
        let slow = webhook_failure_words(Lang::Zh, "no answer in time: 10 s", false);
        assert!(slow.contains("稍后会自动重试"), "{slow}");
        let refused = webhook_failure_words(Lang::Zh, "the shop answered HTTP 404", true);
        assert!(
            refused.starts_with("商城拒收（HTTP 404）：请检查商城通知地址"),
            "{refused}"
        );
        assert_eq!(webhook_failure_words(Lang::En, busy, true), busy);
    }

    /// The ledger's timeline of a legacy payment refunded in part (as `payhost demo` records it:
    /// paid, returned, a refund confirmed on the seller's page, its batch notify, the webhooks).
    fn refunded_in_part() -> Vec<serde_json::Value> {
        vec![
            json!({"at": "2026-12-03T16:56:34Z", "kind": "created", "detail": "8.88 手工剪纸"}),
            json!({"at": "2026-12-03T16:56:34Z", "kind": "return", "detail": "TRADE_SUCCESS"}),
            json!({"at": "2026-12-03T16:56:34Z", "kind": "notify", "detail": "WAIT_BUYER_PAY -> TRADE_SUCCESS",
                "notify_id": "n1", "outcome": "applied", "trade_status": "TRADE_SUCCESS"}),
            json!({"at": "2026-12-03T16:56:34Z", "kind": "webhook", "error": null, "event": "payment.paid",
                "http_status": 200, "webhook_id": 1}),
            json!({"at": "2026-12-03T16:56:38Z", "kind": "refund", "amount": "1.88", "refund_id": 1,
                "request_no": "2026120465", "started_by": "api:operator", "status": "PENDING"}),
            json!({"at": "2026-12-03T16:56:42Z", "kind": "notify",
                "detail": "refund 1 SUCCESS; payment PARTIALLY_REFUNDED",
                "notify_id": "n2", "outcome": "applied", "trade_status": ""}),
            json!({"at": "2026-12-03T16:56:42Z", "kind": "refund", "amount": "1.88", "refund_id": 1,
                "detail": "the seller confirms the refund on Alipay's page with the payment password; the result comes as a notification",
                "started_by": "api:operator", "status": "SUCCESS"}),
            json!({"at": "2026-12-03T16:56:42Z", "kind": "webhook", "error": null,
                "event": "payment.partially_refunded", "http_status": 200, "webhook_id": 2}),
        ]
    }

    fn lines(lang: Lang, entries: &[serde_json::Value]) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let (kind, detail) = words(lang, e);
                format!("{kind} | {detail}")
            })
            .collect()
    }

    #[test]
    fn repeated_webhook_failures_are_one_line() {
        let fail = |at: &str, id: u64, err: &str| {
            json!({"at": at, "kind": "webhook", "event": "payment.paid", "http_status": null,
                "error": err, "webhook_id": id})
        };
        let mut entries =
            vec![json!({"at": "2026-12-03T16:00:00Z", "kind": "created", "detail": "1.00 s"})];
        for m in 0..5 {
            entries.push(fail(
                &format!("2026-12-03T16:0{m}:10Z"),
                1,
                "connection refused",
            ));
        }
        entries.push(fail("2026-12-03T16:06:10Z", 1, "timeout"));
        entries.push(
            json!({"at": "2026-12-03T16:07:10Z", "kind": "webhook", "event": "payment.paid",
            "http_status": 200, "error": null, "webhook_id": 1}),
        );
        entries.push(
            json!({"at": "2026-12-03T16:08:10Z", "kind": "webhook", "event": "payment.paid",
            "http_status": 200, "error": null, "webhook_id": 1}),
        );
        let zone = Zone::parse("UTC").unwrap();
        let shown: Vec<String> = super::lines(Lang::Zh, &zone, &entries)
            .iter()
            .map(|v| {
                format!(
                    "{} | {} | {}",
                    v.get_attr("at").unwrap(),
                    v.get_attr("kind").unwrap(),
                    v.get_attr("detail").unwrap()
                )
            })
            .collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(
            shown[1].contains("错误：connection refused · 共 5 次，最后一次 "),
            "{shown:#?}"
        );
        assert!(
            shown[1].contains(&zone.show("2026-12-03T16:04:10Z")),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with(&zone.show("2026-12-03T16:00:10Z")),
            "{shown:#?}"
        );
        assert!(shown[2].ends_with("错误：timeout"), "{shown:#?}");
        // A delivery is never folded: each is its own line.
        assert!(
            shown[3].ends_with("HTTP 200") && shown[4].ends_with("HTTP 200"),
            "{shown:#?}"
        );
    }

    #[test]
    fn a_refunded_payment_reads_in_chinese() {
        assert_eq!(
            lines(Lang::Zh, &refunded_in_part()),
            [
                "创建 | 8.88 手工剪纸",
                "买家返回 | 已支付",
                "支付平台通知 | 已支付 · 已处理 · 待付款 → 已支付",
                "商城通知 | 已付款 (payment.paid) · HTTP 200",
                "退款 | #1 ¥1.88 · 处理中 · 发起人 运营者（API）",
                "退款通知 | 已处理 · 退款 #1 退款成功 · 订单部分退款",
                "退款 | #1 ¥1.88 · 退款成功 · 发起人 运营者（API）",
                "商城通知 | 部分退款 (payment.partially_refunded) · HTTP 200",
            ]
        );
    }

    /// The cashier's signed URL is named by its origin (a dozen lines on a phone otherwise).
    #[test]
    fn a_redirect_names_the_cashiers_origin() {
        let e = [json!({"at": "2026-12-03T16:00:00Z", "kind": "redirect",
            "detail": "https://mapi.alipay.com/gateway.do?service=x&sign=abc"})];
        assert_eq!(
            lines(Lang::Zh, &e),
            ["跳转收银台 | https://mapi.alipay.com/…"]
        );
    }

    #[test]
    fn a_refunded_payment_reads_in_english() {
        assert_eq!(
            lines(Lang::En, &refunded_in_part()),
            [
                "created | 8.88 手工剪纸",
                "buyer returned | Paid",
                "provider notify | Paid · applied · Awaiting payment → Paid",
                "shop webhook | paid (payment.paid) · HTTP 200",
                "refund | #1 ¥1.88 · Pending · by the operator (API)",
                "refund notify | applied · refund #1 Refunded · payment Partly refunded",
                "refund | #1 ¥1.88 · Refunded · by the operator (API)",
                "shop webhook | partly refunded (payment.partially_refunded) · HTTP 200",
            ]
        );
    }

    /// A partly refunded trade that the provider then finished: said in the owner's words.
    #[test]
    fn a_finished_trade_is_said_in_words() {
        let e = [
            json!({"at": "t", "kind": "notify", "trade_status": "TRADE_FINISHED",
            "outcome": "no_change",
            "detail": format!("PARTIALLY_REFUNDED: {}", crate::domain::events::FINISHED_WORDS)}),
            json!({"at": "t", "kind": "notify", "trade_status": "TRADE_FINISHED",
            "outcome": "duplicate",
            "detail": format!("refund already known; {}", crate::domain::events::FINISHED_WORDS)}),
        ];
        let zh = lines(Lang::Zh, &e).join("\n");
        assert_eq!(
            zh.matches("交易已完结（TRADE_FINISHED），不能再退款")
                .count(),
            2,
            "{zh}"
        );
        assert!(!zh.contains("no more refunds"), "{zh}");
        let en = lines(Lang::En, &e).join("\n");
        assert!(en.contains("no more refunds"), "{en}");
    }

    /// A legacy partial refund reported without its amount: what became of it, in the owner's
    /// words (an owner's walk found the English sentences and a status in brackets).
    #[test]
    fn an_amountless_partial_refund_is_said_in_words() {
        let e = [
            json!({"at": "t", "kind": "notify", "trade_status": "TRADE_SUCCESS", "outcome": "applied",
            "detail": format!("{}; payment PARTIALLY_REFUNDED", amountless::APPLIED)}),
            json!({"at": "t", "kind": "notify", "trade_status": "TRADE_SUCCESS", "outcome": "duplicate",
            "detail": amountless::LEARNED_BEFORE}),
            json!({"at": "t", "kind": "notify", "trade_status": "TRADE_FINISHED", "outcome": "duplicate",
            "detail": format!("{}; {}", amountless::ON_FINISH, crate::domain::events::FINISHED_WORDS)}),
            json!({"at": "t", "kind": "notify", "trade_status": "TRADE_SUCCESS", "outcome": "duplicate",
            "detail": format!("{}3.00{}", amountless::RECORDED_TOTAL, amountless::RECORDED_SINCE)}),
            // Finished while its refund is held: both said.
            json!({"at": "t", "kind": "notify", "trade_status": "TRADE_FINISHED", "outcome": "mismatch",
            "detail": format!("{}; held for review: 支付宝报告了一笔部分退款但没有金额 / a partial refund was reported without its amount", crate::domain::events::FINISHED_WORDS)}),
        ];
        let zh = lines(Lang::Zh, &e).join("\n");
        for want in [
            "没有金额的部分退款：已按交易查询的已退总额记入",
            "订单部分退款",
            "没有金额的部分退款：此前已按交易查询记入",
            "交易查询显示交易已完结",
            "交易已完结（TRADE_FINISHED），不能再退款",
            "交易查询的已退总额 ¥3.00 这里已记入",
            "支付宝报告了一笔部分退款但没有金额",
        ] {
            assert!(zh.contains(want), "{want}: {zh}");
        }
        assert_eq!(
            zh.matches("交易已完结（TRADE_FINISHED）").count(),
            2,
            "{zh}"
        );
        for english in [
            "partial refund",
            "PARTIALLY_REFUNDED)",
            "trade query",
            "no more refunds",
        ] {
            assert!(!zh.contains(english), "{english}: {zh}");
        }
    }

    #[test]
    fn queries_closes_failures_and_errors_are_labelled() {
        let entries = [
            json!({"at": "t", "kind": "query", "detail": "the provider has no such trade"}),
            json!({"at": "t", "kind": "query", "detail": "source: query; WAIT_BUYER_PAY -> TRADE_SUCCESS",
                "outcome": "applied", "trade_status": "TRADE_SUCCESS"}),
            json!({"at": "t", "kind": "query", "detail": "source: query; the trade is still waiting",
                "outcome": "no_change", "trade_status": "WAIT_BUYER_PAY"}),
            json!({"at": "t", "kind": "close", "detail": "closed here only: the legacy API (api = mapi) has no close call for this product: close the order locally; an unpaid trade closes at Alipay when its pay_expire / it_b_pay runs out"}),
            json!({"at": "t", "kind": "close", "detail": "closed at the provider"}),
            json!({"at": "t", "kind": "notify", "trade_status": "",  "outcome": "mismatch",
                "detail": "held for review: refund 42 was reported succeeded, now failed: x"}),
            json!({"at": "t", "kind": "refund", "amount": "2.00", "status": "FAILED",
                "started_by": "admin", "detail": "ACQ.TRADE_HAS_FINISHED"}),
            json!({"at": "t", "kind": "webhook", "event": "payment.paid", "http_status": null,
                "error": "connection refused"}),
            json!({"at": "t", "kind": "refund", "amount": "1.00", "status": "FAILED",
                "started_by": "admin:alice",
                "detail": "given up by admin:alice: the seller never confirmed it"}),
        ];
        let held = format!(
            "退款通知 | 待人工核对 · {}",
            super::super::words::review_explained(
                Lang::Zh,
                "refund 42 was reported succeeded, now failed: x"
            )
        );
        assert!(held.contains("支付宝又报告为失败"), "{held}");
        assert_eq!(
            lines(Lang::Zh, &entries),
            [
                "向支付平台查询 | 支付平台没有这笔交易",
                "向支付平台查询 | 已支付 · 已处理 · 待付款 → 已支付",
                "向支付平台查询 | 待付款 · 无变化 · 交易仍在等待付款",
                "关闭 | 仅在本地关闭，支付平台未关闭",
                "关闭 | 已在支付平台关闭",
                held.as_str(),
                "退款 | ¥2.00 · 失败 · 发起人 admin · 支付平台说明：ACQ.TRADE_HAS_FINISHED（交易已结束，超过了可退款的期限，不能再退款）",
                "商城通知 | 已付款 (payment.paid) · 错误：connection refused",
                "退款 | ¥1.00 · 已放弃（卖家未确认） · 发起人 管理员 alice · 由 管理员 alice 在 payhost 放弃（卖家一直没有在支付宝确认，不是支付宝的结果）",
            ]
        );
        // The English page keeps the component's reason for closing here only.
        assert!(
            words(Lang::En, &entries[3])
                .1
                .starts_with("closed here only: the legacy API (api = mapi)"),
            "{:?}",
            words(Lang::En, &entries[3])
        );
        // Nothing empty is joined, on any line, in either language.
        for lang in [Lang::Zh, Lang::En] {
            for l in lines(lang, &entries)
                .iter()
                .chain(&lines(lang, &refunded_in_part()))
            {
                let (kind, detail) = l.split_once(" | ").unwrap();
                assert!(!kind.trim().is_empty(), "{l}");
                assert!(
                    !detail.starts_with('·') && !detail.contains("·  ·") && !detail.ends_with('·'),
                    "{l}"
                );
            }
        }
    }
}
