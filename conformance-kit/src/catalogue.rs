//! Every case the kit knows, with a one-line description and the cases it needs (`--list`), and
//! the selection of a run (`--only` / `--skip`).

use crate::cases::{component_alipay, flows};
use std::collections::BTreeSet;

/// One case of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseInfo {
    /// Stable id, e.g. `notify.paid_once`.
    pub id: String,
    /// What it checks, in one line.
    pub about: String,
    /// The cases that must run first for it to run at all (they run when it is selected).
    pub needs: Vec<&'static str>,
}

fn about_fixed(id: &str) -> &'static str {
    match id {
        "describe.call" => "describe answers (every other component case needs it)",
        "describe.identity" => "id, name, version, provider and the notify ack/retry bodies are well formed; ack differs from retry",
        "describe.setting_names" => "setting names are non-empty, [a-z0-9_] and unique",
        "describe.labels" => "every setting has label_zh and label_en",
        "describe.kinds" => "kinds are text, secret, select, pem or url; kind secret is flagged secret",
        "describe.select_options" => "select settings have distinct, non-empty options and a default among them",
        "describe.stable" => "a second describe answers the same",
        "settings.empty_names_required" => "empty settings are refused naming every required setting without a default",
        "settings.example_accepted" => "the example settings are accepted, and their normalised form again unchanged",
        "settings.trimmed" => "values pasted with spaces and a line break normalise like the bare values",
        "settings.unknown_refused" => "a setting the component does not describe is refused and named",
        "settings.garbage_refused" => "a bad select value, a URL that is not one, a blank required value: each refused and named",
        "start.example_order" => "start-payment of a one-cent order with the example settings: each call within the limit, every request to an origin its manifest or settings name, a redirect at the end (an Alipay component: through the kit's sandbox)",
        "start.request_failures" => "the order's provider request failing (timeout, refusal, connection failure, HTTP 500, an empty, non-UTF-8 or 1 MiB body): refused every time, never a redirect, never a trap",
        "start.bad_amounts_refused" => "total_fee 0.00, -1.00, 1.001, 1e2, empty, abc, 0x10, NaN: each refused before any request is asked for",
        "start.foreign_continuation_refused" => "resume-payment with an empty, a made-up and a 64 KiB garbage continuation: refused, never a trap",
        "alipay.notify.unconfirmed_refused" => "a genuine notify whose notify_verify fails, times out, answers HTTP 500, false, empty, invalid or truex is refused; true confirms it",
        "hostile.notify.no_settings" => "a notification-shaped form with no settings at all is refused",
        "limits.call_limit" => "64 KiB in every setting and a 1 MiB return query: no trap, within the call limit",
        "alipay.notify.genuine_asks_notify_verify" => "a genuine WAP notify makes the component ask notify_verify at the configured URL",
        "alipay.notify.wrong_key_refused" => "a notify signed with another key is refused before anything is sent",
        "alipay.notify.sorted_signature_refused" => "a notify signed over sorted parameters is refused",
        "alipay.notify.tampered_refused" => "a notify whose amount changed after signing is refused",
        "alipay.return.genuine_verified" => "a genuine call-back query verifies",
        "alipay.return.tampered_refused" => "a call-back naming another order, or without sign, is refused",
        "host.started" => "payhost starts around the component, allowing the kit's origin (the flow cases need it)",
        "merchant.settings_refused" => "PUT of a merchant with partner 1234 → 400 naming partner; nothing stored",
        "merchant.configured" => "the kit's merchant is saved (200) and shown with its secrets masked (the flow cases need it)",
        "payment.created" => "201 with a pay_url, WAIT_BUYER_PAY and exact amounts; bad total_fee → 400 naming it",
        "payment.same_order_again" => "the same order again → 200; another amount → 409; the amount is unchanged",
        "notify.paid_once" => "the buyer pays in the sandbox: applied once, acknowledged, one signed payment.paid webhook",
        "return.verified_redirect" => "the signed call-back → 302 to the shop's return_url with a valid shop sign",
        "return.never_marks_paid" => "a genuine call-back of an unpaid trade leaves it unpaid",
        "return.tampered_refused" => "a call-back for another order or with a wrong sign → 4xx, nothing paid",
        "rsa.paid_once" => "an RSA merchant: private key never shown; paid through the encrypted notify, one webhook",
        "notify.replayed_once" => "a genuine notify replayed, half concurrently: all acknowledged, one transition, one webhook",
        "notify.forged_refused" => "notifies signed with another key or over sorted parameters: not acknowledged, not paid",
        "notify.amount_mismatch_not_paid" => "a confirmed notify for 0.01 on an order of 56.78: the host's own refusal (not a rate limit), not paid, no webhook; the same notify with the order's amount then pays it once",
        "notify.unconfirmed_not_paid" => "correctly signed, but notify_verify answers false: the host's own refusal, not acknowledged, not paid; the notify Alipay issued then pays it once",
        "notify.unknown_merchant_404" => "a notify for a merchant that does not exist → 404, nothing created or stored",
        "notify.oversized_413" => "a 64 KiB notify body → 413",
        "sync.lost_notify_recovered" => "every notify lost: sync finds the paid trade and applies it once",
        "openapi.settings.app_id_refused" => "open-platform settings with app_id 12345 → 400 naming app_id; not stored",
        "openapi.settings.own_public_key_refused" => "the app's own public key as alipay_public_key → 400 naming alipay_public_key",
        "openapi.settings.bad_private_key_refused" => "an app_private_key that does not parse → 400 naming it, the key never echoed",
        "openapi.merchant.configured" => "the kit's open-platform merchant (APPID + RSA2, the kit's gateway) is saved; its private key never shown",
        "openapi.pay.products" => "wap and pc answers carry a pay_url and a POST pay_form the gateway accepts; app an order_string",
        "openapi.notify.forged_refused" => "notifies signed with the app's key, tampered after signing, or for another app_id: the host's own refusal (not a rate limit), not acknowledged, not paid",
        "openapi.notify.paid_once" => "a notify the kit signs as Alipay (V1 rule, RSA2) → success, paid once, one payment.paid webhook",
        "openapi.notify.partial_refund_not_a_payment" => "a partial refund's notify → success, one refund webhook, still paid once at the same amount",
        "openapi.sync.lost_notify_recovered" => "every notify lost: sync (alipay.trade.query) finds the paid trade and applies it once",
        "openapi.refund.partial_once" => "POST …/refunds of part of a paid order: one refund at the gateway, a retry returns it, more than is left → 409",
        "openapi.close.unpaid_only" => "POST …/close: an order the gateway never saw is closed here (said so), one waiting there is closed there, a paid one → 409",
        "openapi.bill.reconciled" => "GET …/reconciliation?date= of today: the gateway-paid order and its refund matched, a planted bill row only_alipay, a planted other amount amount_mismatch, a notified refund only_payhost",
        "webhooks.exactly_once" => "each order got exactly the payment.paid webhooks its case expects, all signed",
        _ => "",
    }
}

/// The cases a case needs (besides `describe.call` for the component cases and `host.started`
/// for the flow cases, added by [`cases`]).
fn needs_fixed(id: &str) -> &'static [&'static str] {
    match id {
        "settings.trimmed" => &["settings.example_accepted"],
        "payment.same_order_again" | "notify.paid_once" | "return.verified_redirect" => {
            &["payment.created"]
        }
        "return.tampered_refused" => &["payment.created", "return.never_marks_paid"],
        "openapi.pay.products"
        | "openapi.sync.lost_notify_recovered"
        | "openapi.close.unpaid_only" => &["openapi.merchant.configured"],
        "openapi.bill.reconciled" => &[
            "openapi.merchant.configured",
            "openapi.sync.lost_notify_recovered",
            "openapi.refund.partial_once",
        ],
        "openapi.refund.partial_once" => &[
            "openapi.merchant.configured",
            "openapi.sync.lost_notify_recovered",
        ],
        "openapi.notify.forged_refused" | "openapi.notify.paid_once" => {
            &["openapi.merchant.configured", "openapi.pay.products"]
        }
        "openapi.notify.partial_refund_not_a_payment" => &[
            "openapi.merchant.configured",
            "openapi.pay.products",
            "openapi.notify.paid_once",
        ],
        _ => &[],
    }
}

/// Every case, in the order a run meets them: the contract suite, the Alipay component cases,
/// `host.started`, the flow suite.
pub fn cases() -> Vec<CaseInfo> {
    let mut out = Vec::new();
    for id in crate::contract_cases() {
        let about = match id.split_once("hostile.") {
            Some((_, rest)) if about_fixed(&id).is_empty() => {
                let (call, input) = rest.split_once('.').unwrap_or((rest, ""));
                let call = if call == "notify" {
                    "notification"
                } else {
                    call
                };
                format!("verify-{call} with the {input} input is refused (never verified, never a trap)")
            }
            _ => about_fixed(&id).to_owned(),
        };
        let mut needs = needs_fixed(&id).to_vec();
        if id != "describe.call" {
            needs.insert(0, "describe.call");
        }
        out.push(CaseInfo { id, about, needs });
    }
    for id in component_alipay::CASES {
        out.push(CaseInfo {
            id: (*id).to_owned(),
            about: about_fixed(id).to_owned(),
            needs: vec!["describe.call"],
        });
    }
    out.push(CaseInfo {
        id: "host.started".into(),
        about: about_fixed("host.started").to_owned(),
        needs: vec!["describe.call"],
    });
    for id in flows::CASES {
        // With --component the flow suite runs in a host the kit started; with --against these
        // two are never run, so needing them costs nothing.
        let mut needs = vec!["describe.call", "host.started"];
        if *id != "merchant.settings_refused" && *id != "merchant.configured" {
            needs.push("merchant.configured");
        }
        needs.extend_from_slice(needs_fixed(id));
        out.push(CaseInfo {
            id: (*id).to_owned(),
            about: about_fixed(id).to_owned(),
            needs,
        });
    }
    out
}

/// What a run meets: [`crate::run_component`] every case (the contract suite, the Alipay cases,
/// `host.started`, the flow suite), [`crate::run_against`] only the flow suite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// `--component`: every case of the catalogue.
    #[default]
    Component,
    /// `--against`: the flow cases only.
    Against,
}

/// The cases a run in `mode` can meet, in order (`--list`): [`cases`], or for
/// [`Mode::Against`] only the flow cases, each needing only the flow cases it needs.
pub fn cases_of(mode: Mode) -> Vec<CaseInfo> {
    let mut all = cases();
    if mode == Mode::Against {
        all.retain(|c| flows::CASES.contains(&c.id.as_str()));
        for c in &mut all {
            c.needs.retain(|n| flows::CASES.contains(n));
        }
    }
    all
}

/// Whether `name` selects `id`: the exact id, or a prefix of whole parts (`notify.` or
/// `notify`, `hostile.notify`).
fn matches(name: &str, id: &str) -> bool {
    if name == id {
        return true;
    }
    let prefix = name.trim_end_matches('.');
    !prefix.is_empty() && id.strip_prefix(prefix).is_some_and(|r| r.starts_with('.'))
}

/// Which cases a run runs (by default all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Cases of the catalogue left out; any other id (e.g. `kit.sandbox`) is always reported.
    excluded: BTreeSet<String>,
    /// Cases that run only because a selected case needs them.
    needed_only: BTreeSet<String>,
}

impl Selection {
    /// `only` (empty: every case) minus `skip`, plus what the remaining cases need. A name that
    /// selects no case is an error naming it.
    pub fn new(only: &[String], skip: &[String]) -> Result<Selection, String> {
        let all = cases();
        for name in only.iter().chain(skip) {
            if !all.iter().any(|c| matches(name, &c.id)) {
                return Err(format!(
                    "{name:?} is not a case or a prefix of one (see --list)"
                ));
            }
        }
        let mut chosen: BTreeSet<String> = all
            .iter()
            .filter(|c| only.is_empty() || only.iter().any(|n| matches(n, &c.id)))
            .filter(|c| !skip.iter().any(|n| matches(n, &c.id)))
            .map(|c| c.id.clone())
            .collect();
        let named = chosen.clone();
        // What the chosen cases need runs too, however it was named.
        loop {
            let needed: Vec<String> = all
                .iter()
                .filter(|c| chosen.contains(&c.id))
                .flat_map(|c| c.needs.iter().map(|n| (*n).to_owned()))
                .filter(|n| !chosen.contains(n))
                .collect();
            if needed.is_empty() {
                break;
            }
            chosen.extend(needed);
        }
        Ok(Selection {
            needed_only: chosen.difference(&named).cloned().collect(),
            excluded: all
                .into_iter()
                .map(|c| c.id)
                .filter(|id| !chosen.contains(id))
                .collect(),
        })
    }

    /// [`Selection::new`] for a run in `mode`. Against a host, an `only` name that selects cases
    /// but no flow case is an error saying so (the run would test nothing); a `skip` name may
    /// name any case (leaving out a case the run never meets changes nothing).
    pub fn for_mode(only: &[String], skip: &[String], mode: Mode) -> Result<Selection, String> {
        if mode == Mode::Against {
            let all = cases();
            let flow = cases_of(Mode::Against);
            for name in only {
                let known = all.iter().any(|c| matches(name, &c.id));
                if known && !flow.iter().any(|c| matches(name, &c.id)) {
                    return Err(format!(
                        "{name:?} is not a flow case: a run against a host (--against) runs only the flow suite (--list with --against lists its cases)"
                    ));
                }
            }
        }
        Selection::new(only, skip)
    }

    /// Whether the case runs (and is reported).
    pub fn includes(&self, id: &str) -> bool {
        !self.excluded.contains(id)
    }

    /// Whether the case was asked for (by default every case is), not only run because a case
    /// that was needs it: a run tested something only if such a case passed.
    pub fn asked_for(&self, id: &str) -> bool {
        self.includes(id) && !self.needed_only.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_case_has_a_description_and_known_needs() {
        let all = cases();
        let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
        for c in &all {
            assert!(!c.about.is_empty(), "{} has no description", c.id);
            assert!(!c.about.contains('\n'), "{}", c.id);
            for n in &c.needs {
                let at = ids.iter().position(|i| i == n).expect(n);
                let me = ids.iter().position(|i| *i == c.id).unwrap();
                assert!(at < me, "{} needs {n}, which runs later", c.id);
            }
        }
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn names_select_by_id_or_prefix_and_pull_in_what_they_need() {
        let s = Selection::new(&names(&["notify.paid_once"]), &[]).unwrap();
        for id in [
            "describe.call",
            "host.started",
            "merchant.configured",
            "payment.created",
            "notify.paid_once",
        ] {
            assert!(s.includes(id), "{id}");
        }
        assert!(!s.includes("notify.replayed_once"));
        assert!(!s.includes("describe.identity"));
        assert!(
            s.includes("kit.sandbox"),
            "pseudo-cases are always reported"
        );
        assert!(s.asked_for("notify.paid_once") && !s.asked_for("payment.created"));
        assert!(Selection::default().asked_for("payment.created"));

        let s = Selection::new(&names(&["notify."]), &names(&["notify.oversized_413"])).unwrap();
        assert!(s.includes("notify.forged_refused") && s.includes("notify.unknown_merchant_404"));
        assert!(!s.includes("notify.oversized_413"));
        assert!(
            !s.includes("hostile.notify.empty"),
            "a prefix is of whole parts"
        );

        let s = Selection::new(&[], &names(&["hostile"])).unwrap();
        assert!(!s.includes("hostile.return.huge") && s.includes("limits.call_limit"));

        assert!(!matches("notif", "notify.paid_once"));
        let e = Selection::new(&names(&["nope.case"]), &[]).unwrap_err();
        assert!(e.contains("\"nope.case\""), "{e}");
        assert!(Selection::new(&[], &names(&["notif"])).is_err());
    }

    #[test]
    fn a_run_against_a_host_meets_only_the_flow_cases() {
        let flow = cases_of(Mode::Against);
        let ids: Vec<&str> = flow.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            flows::CASES,
            "every flow case, in order, and nothing else"
        );
        for c in &flow {
            for n in &c.needs {
                assert!(flows::CASES.contains(n), "{} needs {n}", c.id);
            }
        }
        let paid = flow.iter().find(|c| c.id == "notify.paid_once").unwrap();
        assert_eq!(paid.needs, ["merchant.configured", "payment.created"]);
        assert_eq!(cases_of(Mode::Component), cases());

        // --only: a name of cases the run never meets is refused, saying why.
        for name in ["describe", "host.started", "hostile.notify", "alipay."] {
            let e = Selection::for_mode(&names(&[name]), &[], Mode::Against).unwrap_err();
            assert!(
                e.starts_with(&format!("{name:?} is not a flow case")),
                "{e}"
            );
            assert!(Selection::for_mode(&names(&[name]), &[], Mode::Component).is_ok());
        }
        // A name that is no case at all says that, as in every mode.
        let e = Selection::for_mode(&names(&["nope"]), &[], Mode::Against).unwrap_err();
        assert!(e.contains("is not a case or a prefix of one"), "{e}");
        // Each name must select a flow case; --skip may name any case.
        let e = Selection::for_mode(&names(&["notify", "describe.call"]), &[], Mode::Against)
            .unwrap_err();
        assert!(e.starts_with("\"describe.call\" is not a flow case"), "{e}");
        let s = Selection::for_mode(&names(&["notify.paid_once"]), &[], Mode::Against).unwrap();
        assert!(s.includes("payment.created") && !s.includes("notify.replayed_once"));
        assert!(Selection::for_mode(&[], &names(&["hostile"]), Mode::Against).is_ok());
    }
}
