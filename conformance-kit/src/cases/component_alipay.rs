//! An Alipay component's signature rules, called directly with messages the kit signs itself
//! (the sandbox's wire code): a genuine notify goes on to `notify_verify`, a forged, wrongly
//! sorted or tampered one is refused before anything is sent; a genuine return verifies, a
//! tampered one does not.

use super::contract::timed;
use crate::alipay::{self, NotifyTrade, Signing};
use crate::api::{CallOutcome, ComponentUnderTest, FlowStep, KitAnswer};
use crate::receiver::unix_now;
use crate::runner::{Runner, Stop, Verdict};
use crate::sandbox_setup::KitEnv;

pub const CASES: &[&str] = &[
    "alipay.notify.genuine_asks_notify_verify",
    "alipay.notify.wrong_key_refused",
    "alipay.notify.sorted_signature_refused",
    "alipay.notify.tampered_refused",
    "alipay.return.genuine_verified",
    "alipay.return.tampered_refused",
    "alipay.notify.unconfirmed_refused",
];

const NOT_DRIVEN: &str = "the component under test cannot be driven step by step here (ComponentUnderTest::notification_step)";

fn trade(env: &KitEnv) -> NotifyTrade {
    NotifyTrade {
        partner: env.md5.partner.clone(),
        out_trade_no: "conformance-direct-1".into(),
        trade_no: "2026112500000000000001".into(),
        subject: "conformance".into(),
        total_fee: "12.34".into(),
        seller_email: env.md5.seller_email.clone(),
        trade_status: "TRADE_SUCCESS".into(),
        notify_id: "conformancedirect0000000000000001".into(),
    }
}

pub async fn run(runner: &mut Runner, cut: &dyn ComponentUnderTest, env: &KitEnv) {
    let settings = env.md5_settings();
    let limit = cut.call_limit();
    let key = env.md5.key.clone();
    let notify = |signing| {
        alipay::form_pairs(&alipay::md5_notify_body(
            &key,
            &trade(env),
            signing,
            unix_now(),
        ))
    };
    let verify_url = format!("{}/mapi", env.sandbox_url());

    runner
        .case(CASES[0], async {
            let (outcome, _) = timed(limit, cut.verify_notification(&settings, &notify(Signing::Genuine))).await?;
            match outcome {
                CallOutcome::WantsToSend { url } if url.starts_with(&verify_url) && url.contains("notify_verify") => Ok(()),
                CallOutcome::WantsToSend { url } => Err(format!(
                    "a genuine notify asked for {url}, not notify_verify at the configured notify_verify_url {verify_url}"
                )
                .into()),
                other => Err(format!(
                    "a genuine, correctly signed notify was not sent on to notify_verify: {other:?}"
                )
                .into()),
            }
        })
        .await;
    for (id, signing, what) in [
        (
            CASES[1],
            Signing::WrongKey,
            "a notify signed with another key",
        ),
        (
            CASES[2],
            Signing::Sorted,
            "a notify signed over sorted parameters (the fixed order is the rule)",
        ),
    ] {
        runner
            .case(id, async {
                let (outcome, _) =
                    timed(limit, cut.verify_notification(&settings, &notify(signing))).await?;
                must_refuse(what, outcome)
            })
            .await;
    }
    runner
        .case(CASES[3], async {
            // Signed for 12.34, then the amount changed on the way.
            let form: Vec<(String, String)> = notify(Signing::Genuine)
                .into_iter()
                .map(|(k, v)| {
                    let v = if k == "notify_data" {
                        v.replace(
                            "<total_fee>12.34</total_fee>",
                            "<total_fee>0.01</total_fee>",
                        )
                    } else {
                        v
                    };
                    (k, v)
                })
                .collect();
            let (outcome, _) = timed(limit, cut.verify_notification(&settings, &form)).await?;
            must_refuse("a notify whose amount was changed after signing", outcome)
        })
        .await;
    runner
        .case(CASES[4], async {
            let query =
                alipay::md5_return_query(&key, "conformance-direct-1", "2026112500000000000001");
            let (outcome, _) = timed(limit, cut.verify_return(&settings, &query)).await?;
            match outcome {
                CallOutcome::Verified => Ok(()),
                other => {
                    Err(format!("a genuine call-back query was not verified: {other:?}").into())
                }
            }
        })
        .await;
    runner
        .case(CASES[5], async {
            let genuine =
                alipay::md5_return_query(&key, "conformance-direct-1", "2026112500000000000001");
            let other_order: Vec<(String, String)> = genuine
                .iter()
                .map(|(k, v)| {
                    let v = if k == "out_trade_no" {
                        "conformance-direct-2".to_owned()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect();
            let unsigned: Vec<(String, String)> = genuine
                .iter()
                .filter(|(k, _)| k != "sign")
                .cloned()
                .collect();
            for (what, query) in [
                (
                    "a call-back query whose out_trade_no was changed",
                    other_order,
                ),
                ("a call-back query without its sign", unsigned),
            ] {
                let (outcome, _) = timed(limit, cut.verify_return(&settings, &query)).await?;
                must_refuse(what, outcome)?;
            }
            Ok(())
        })
        .await;
    runner
        .case(CASES[6], async {
            let form = notify(Signing::Genuine);
            let (first, _) = timed(limit, cut.notification_step(&settings, &form)).await?;
            let continuation = match first.ok_or_else(|| Stop::Skip(NOT_DRIVEN.into()))? {
                FlowStep::Send { continuation, .. } => continuation,
                other => {
                    return Err(format!(
                        "a genuine, correctly signed notify was not sent on to notify_verify: {other:?}"
                    )
                    .into())
                }
            };
            let answer = |status: u16, body: &[u8]| KitAnswer::Response {
                status,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: body.to_vec(),
            };
            let mut problems = Vec::new();
            for (what, reply) in [
                ("no answer in time", KitAnswer::Timeout("the kit's timeout".into())),
                ("the outbound policy's refusal", KitAnswer::Refused("not allowed".into())),
                ("a connection failure", KitAnswer::Failed("connection reset".into())),
                ("HTTP 500 whose body says true", answer(500, b"true")),
                ("false", answer(200, b"false")),
                ("an empty body", answer(200, b"")),
                ("invalid", answer(200, b"invalid")),
                ("truex", answer(200, b"truex")),
                ("bytes that are not UTF-8", answer(200, &[0xff, 0x74, 0x72, 0x75, 0x65])),
            ] {
                let (step, _) =
                    timed(limit, cut.resume_notification(&settings, &continuation, &reply)).await?;
                match step.ok_or_else(|| Stop::Skip(NOT_DRIVEN.into()))? {
                    FlowStep::Refused(_) => {}
                    FlowStep::Done(_) => problems.push(format!(
                        "notify_verify answering {what} confirmed the notify: only a 200 whose body is true may"
                    )),
                    FlowStep::Send { request, .. } => problems.push(format!(
                        "notify_verify answering {what} made it ask again ({})",
                        request.url
                    )),
                    FlowStep::Trapped(why) => {
                        problems.push(format!("notify_verify answering {what} trapped it: {why}"))
                    }
                }
            }
            // The positive control: the same continuation with Alipay's confirmation verifies.
            let (step, _) = timed(
                limit,
                cut.resume_notification(&settings, &continuation, &answer(200, b"true")),
            )
            .await?;
            match step.ok_or_else(|| Stop::Skip(NOT_DRIVEN.into()))? {
                FlowStep::Done(_) => {}
                other => problems.push(format!(
                    "notify_verify answering true did not confirm the genuine notify: {other:?}"
                )),
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(Stop::Fail(problems.join("; ")))
            }
        })
        .await;
}

fn must_refuse(what: &str, outcome: CallOutcome) -> Verdict {
    match outcome {
        CallOutcome::Refused(_) => Ok(()),
        CallOutcome::Verified => Err(format!("{what} was verified").into()),
        CallOutcome::WantsToSend { url } => Err(format!(
            "{what} was not refused: the component went on to ask {url} (the signature must be checked first)"
        )
        .into()),
        CallOutcome::Trapped(why) => Err(format!("{what} trapped the component: {why}").into()),
    }
}
