//! Rendering: the templates (`host/templates/admin/`, compiled into the binary, HTML auto-escaped),
//! the language (Chinese first; `?lang=en` or the `payhost_lang` cookie switch to English), the
//! status words, and the one-shot message a page shows after the redirect that follows a post.

use minijinja::{context, Environment, State, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// A payment status in words.
pub fn status_word(lang: Lang, status: &str) -> &str {
    let (zh, en) = match status {
        "WAIT_BUYER_PAY" => ("待付款", "Awaiting payment"),
        "TRADE_SUCCESS" => ("已支付", "Paid"),
        "TRADE_FINISHED" => ("已支付（已完结）", "Paid (final)"),
        "PARTIALLY_REFUNDED" => ("部分退款", "Partly refunded"),
        "REFUNDED" => ("已退款", "Refunded"),
        "TRADE_CLOSED" => ("已关闭", "Closed"),
        // The list's filter of payments with a refund not yet confirmed.
        "REFUND_PENDING" => ("退款处理中", "Refund pending"),
        other => (other, other),
    };
    lang.pick(zh, en)
}

/// A refund status in words.
pub fn refund_status_word(lang: Lang, status: &str) -> &str {
    let (zh, en) = match status {
        "PENDING" => ("处理中", "Pending"),
        "SUCCESS" => ("退款成功", "Refunded"),
        "FAILED" => ("失败", "Failed"),
        other => (other, other),
    };
    lang.pick(zh, en)
}

/// Who gave up a refund (放弃: a legacy refund the seller never confirmed), read from the words
/// stored with it, or None for any other refund. The API and the store keep those words as they
/// are (a FAILED refund); only the admin's pages tell it apart from one the provider failed.
pub fn given_up_by<'a>(status: &str, detail: Option<&'a str>) -> Option<&'a str> {
    if status != crate::domain::refunds::FAILED {
        return None;
    }
    let rest = detail?.strip_prefix(crate::domain::refunds::GIVEN_UP)?;
    Some(
        rest.strip_suffix(": the seller never confirmed it")
            .unwrap_or(rest),
    )
}

/// A refund's status in words, one given up here apart from one the provider failed.
pub fn refund_word(lang: Lang, status: &str, detail: Option<&str>) -> String {
    match given_up_by(status, detail) {
        Some(_) => lang
            .pick("已放弃（卖家未确认）", "Given up (never confirmed)")
            .to_owned(),
        None => refund_status_word(lang, status).to_owned(),
    }
}

/// Whether the provider finished the trade while its status says otherwise (a partly refunded
/// trade Alipay then finished): said beside the status, on the payment's page and in the list.
pub fn finished_beside_status(p: &crate::store::Payment) -> bool {
    p.is_finished() && p.status != crate::store::TRADE_FINISHED
}

/// Why a refund failed, when the provider (or a person) said, in the page's words; none for one
/// given up here (its own note says so).
pub fn refund_failed_why(lang: Lang, status: &str, detail: Option<&str>) -> Option<String> {
    (status == crate::domain::refunds::FAILED && given_up_by(status, detail).is_none())
        .then_some(detail)
        .flatten()
        .filter(|d| !d.is_empty())
        .map(|d| super::words::provider_message(lang, d))
}

/// What a refund given up here says: who gave it up, and that it is no word of the provider's.
pub fn given_up_note(lang: Lang, by: &str) -> String {
    let by = super::words::who(lang, by);
    match lang {
        Lang::Zh => format!("由 {by} 在 payhost 放弃（卖家一直没有在支付宝确认，不是支付宝的结果）"),
        Lang::En => format!("given up in payhost by {by} (the seller never confirmed it; not the provider's answer)"),
    }
}

/// What the next page shows once: a result, values shown once (a new token), and a refused
/// form's errors per field with what was typed (never a secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
    #[serde(default)]
    pub secrets: Vec<ShownOnce>,
    /// `secrets` sealed while the message waits in the session's row (shown_once.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// Field name → why it was refused.
    #[serde(default)]
    pub field_errors: BTreeMap<String, String>,
    /// Errors not tied to a field on the page (listed under the message).
    #[serde(default)]
    pub errors: Vec<ListedError>,
    /// Field name → what was typed (secrets are never kept).
    #[serde(default)]
    pub typed: BTreeMap<String, String>,
    /// Several values of one field (checkboxes).
    #[serde(default)]
    pub typed_lists: BTreeMap<String, Vec<String>>,
    /// The page it is for (the post's redirect): another page of the same session (a second
    /// tab) leaves it for that page, so a refund asked on one order is never confirmed on
    /// another. And when it was kept (seconds since the epoch): one waiting longer is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default)]
    pub kept_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShownOnce {
    pub id: String,
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListedError {
    pub field: String,
    /// What the page calls the field, in the page's language (empty: only its name is known).
    #[serde(default)]
    pub label: String,
    pub message: String,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            ok: true,
            text: text.into(),
            ..Flash::default()
        }
    }

    pub fn err(text: impl Into<String>) -> Flash {
        Flash {
            ok: false,
            text: text.into(),
            ..Flash::default()
        }
    }
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../templates/admin/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates!(
    "base.html",
    "login.html",
    "error.html",
    "overview.html",
    "payments.html",
    "payment.html",
    "refunds.html",
    "reconcile.html",
    "merchants.html",
    "merchant.html",
    "dead_letters.html",
    "webhooks.html",
    "users.html",
    "audit.html",
);

/// The text of every inline `<script>` of the templates. Each is static (no template syntax
/// inside), so the admin's policy allows each by its SHA-256 rather than any inline script.
pub fn inline_scripts() -> impl Iterator<Item = &'static str> {
    inline_elements("<script>", "</script>")
}

/// The text of every `<style>` element of the templates, static like the scripts: the policy
/// allows each by its SHA-256 (the templates carry no `style` attributes, which no hash allows).
pub fn inline_styles() -> impl Iterator<Item = &'static str> {
    inline_elements("<style>", "</style>")
}

fn inline_elements(open: &'static str, close: &'static str) -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().flat_map(move |(_, text)| {
        text.split(open)
            .skip(1)
            .filter_map(move |s| s.split_once(close).map(|(inner, _)| inner))
    })
}

fn lang_of(state: &State<'_, '_>) -> Lang {
    match state.lookup("lang").as_ref().and_then(Value::as_str) {
        Some("en") => Lang::En,
        _ => Lang::Zh,
    }
}

fn write_html_escaped(out: &mut minijinja::Output<'_>, s: &str) -> Result<(), minijinja::Error> {
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let rep = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#x27;",
            _ => continue,
        };
        out.write_str(&s[last..i])
            .and_then(|_| out.write_str(rep))
            .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "admin page"))?;
        last = i + 1;
    }
    out.write_str(&s[last..])
        .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "admin page"))
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // `.html` templates escape every value (the default for that extension), said here too.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // minijinja's HTML escape also turns `/` into `&#x2f;`; the notify URL an owner copies from
        // the page source or a script reads should stay as typed (`/` needs no escape in HTML).
        // A value not there yet (an unpaid order's paid time, a webhook attempt without error)
        // is an empty cell, not the word `none`.
        env.set_formatter(|out, state, value| {
            if value.is_none() {
                return Ok(());
            }
            if state.auto_escape() == minijinja::AutoEscape::Html && !value.is_safe() {
                if let Some(s) = value.as_str() {
                    return write_html_escaped(out, s);
                }
            }
            minijinja::escape_formatter(out, state, value)
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("admin template {name}: {e}"));
        }
        env.add_function("t", |state: &State<'_, '_>, zh: String, en: String| {
            lang_of(state).pick(&zh, &en).to_owned()
        });
        env.add_function("status", |state: &State<'_, '_>, s: String| {
            status_word(lang_of(state), &s).to_owned()
        });
        env.add_function("refund_status", |state: &State<'_, '_>, s: String| {
            refund_status_word(lang_of(state), &s).to_owned()
        });
        env
    })
}

/// What every page of a session shows.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    pub lang: &'static str,
    pub lang_url: String,
    pub csrf: String,
    pub who: Option<WhoView>,
    pub section: &'static str,
    pub zone: String,
    /// The zone's days are Beijing's: the date filters and the 30 days need no note.
    pub zone_is_beijing: bool,
    pub flash: Option<FlashView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WhoView {
    pub name: String,
    pub operator: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlashView {
    pub ok: bool,
    pub text: String,
    pub secrets: Vec<ShownOnce>,
    pub errors: Vec<ListedError>,
}

impl From<&Flash> for FlashView {
    fn from(f: &Flash) -> Self {
        FlashView {
            ok: f.ok,
            text: f.text.clone(),
            secrets: f.secrets.clone(),
            errors: f.errors.clone(),
        }
    }
}

/// Renders `name` with the frame's values and the page's own.
pub fn render(name: &str, frame: &Frame, page: Value) -> Result<String, String> {
    let tmpl = env().get_template(name).map_err(|e| e.to_string())?;
    tmpl.render(context! { ..Value::from_serialize(frame), ..page })
        .map_err(|e| {
            // The chain of causes names the template line.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lang: &'static str) -> Frame {
        Frame {
            lang,
            lang_url: "?lang=en".into(),
            csrf: "c".into(),
            who: None,
            section: "",
            zone: "Asia/Shanghai".into(),
            zone_is_beijing: true,
            flash: None,
        }
    }

    #[test]
    fn every_template_renders_and_escapes() {
        for (name, _) in TEMPLATES {
            render(name, &frame("zh"), context! {}).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let html = render(
            "error.html",
            &frame("en"),
            context! { heading => "<script>x</script>", message => "a & b" },
        )
        .unwrap();
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
        assert!(html.contains("a &amp; b"));
        assert!(html.contains("lang=\"en\""));
    }

    #[test]
    fn every_pem_file_picker_has_an_accessible_name() {
        let field = |name: &str, label: &str| {
            context! { name, label, label_other => "x", rule => "r", kind => "pem", placeholder => "" }
        };
        let html = render(
            "merchant.html",
            &frame("zh"),
            context! { id => "m", fields => vec![field("private_key", "应用私钥"), field("alipay_public_key", "支付宝公钥")] },
        )
        .unwrap();
        let pickers: Vec<&str> = html
            .split("<input type=\"file\"")
            .skip(1)
            .map(|rest| rest.split('>').next().unwrap_or(""))
            .collect();
        assert_eq!(pickers.len(), 2, "{html}");
        for (picker, label) in pickers.iter().zip(["应用私钥", "支付宝公钥"]) {
            assert!(
                picker.contains(&format!("aria-label=\"{label}：从文件读取\"")),
                "{picker}"
            );
        }
    }

    #[test]
    fn the_refund_confirmation_says_what_follows_for_each_api() {
        let confirm = |waits: bool| {
            render(
                "payment.html",
                &frame("zh"),
                context! {
                    p => context! { url => "/admin/merchants/m/payments/A", out_trade_no => "A", refundable_fen => 100 },
                    typed => context! { confirm => "1", amount => "1.00" },
                    refund_waits_for_seller => waits,
                },
            )
            .unwrap()
        };
        let open = confirm(false);
        assert!(
            open.contains("确认后退款会提交给支付宝，退回买家的钱无法撤回。"),
            "{open}"
        );
        assert!(!open.contains("支付密码"), "{open}");
        // Legacy (api = mapi): the seller's password makes it, and it can be given up till then.
        let legacy = confirm(true);
        assert!(
            legacy.contains("要卖家在支付宝页面输入支付密码后才会退款"),
            "{legacy}"
        );
        assert!(legacy.contains("这笔退款可以放弃"), "{legacy}");
        assert!(!legacy.contains("确认后退款会提交给支付宝"), "{legacy}");
    }

    #[test]
    fn a_refund_given_up_here_is_not_a_failure_of_the_provider() {
        let detail = "given up by admin:alice: the seller never confirmed it";
        assert_eq!(given_up_by("FAILED", Some(detail)), Some("admin:alice"));
        assert_eq!(
            refund_word(Lang::Zh, "FAILED", Some(detail)),
            "已放弃（卖家未确认）"
        );
        assert_eq!(
            given_up_note(Lang::Zh, "admin:alice"),
            "由 管理员 alice 在 payhost 放弃（卖家一直没有在支付宝确认，不是支付宝的结果）"
        );
        // The provider's own failure, and anything not FAILED, keep their words.
        assert_eq!(given_up_by("FAILED", Some("ACQ.TRADE_HAS_FINISHED")), None);
        assert_eq!(given_up_by("PENDING", Some(detail)), None);
        assert_eq!(refund_word(Lang::Zh, "FAILED", None), "失败");
        assert_eq!(refund_word(Lang::Zh, "SUCCESS", Some(detail)), "退款成功");
    }

    #[test]
    fn statuses_in_words() {
        assert_eq!(status_word(Lang::Zh, "PARTIALLY_REFUNDED"), "部分退款");
        assert_eq!(status_word(Lang::Zh, "WAIT_BUYER_PAY"), "待付款");
        assert_eq!(status_word(Lang::Zh, "TRADE_CLOSED"), "已关闭");
        assert_eq!(status_word(Lang::En, "REFUNDED"), "Refunded");
    }
}
