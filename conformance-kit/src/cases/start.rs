//! The payment flow, for any component: `start-payment` and `resume-payment` driven step by step
//! by the kit, which answers every request the component asks for itself. A request is sent
//! for real only to the kit's own sandbox (an Alipay component with the kit's settings); any
//! other is answered as a host's outbound policy would refuse it. The cases check what a host
//! cannot repair afterwards: a request to an origin nobody configured, a redirect after the
//! provider's create call failed (a buyer sent to pay a trade that does not exist), an order
//! with a bad amount started at all, a continuation that is not one, a trap, a call past the
//! limit, a flow that never ends.

use super::contract::{timed, Context};
use crate::api::{AskedRequest, ComponentUnderTest, FlowStep, KitAnswer, KitOrder, PluginInfo};
use crate::client;
use crate::runner::{Runner, Stop, Verdict};
use crate::sandbox_setup::KitEnv;
use std::time::Duration;

pub const CASES: &[&str] = &[
    "start.example_order",
    "start.request_failures",
    "start.bad_amounts_refused",
    "start.foreign_continuation_refused",
];

/// A host cuts a flow off after this many requests (payhost: 4); the kit allows one more step
/// to see that the component would go on.
pub const MAX_REQUESTS: usize = 4;

/// Amounts no component may start a payment for: zero, negative, three places, not decimal.
pub const BAD_AMOUNTS: &[&str] = &["0.00", "-1.00", "1.001", "1e2", "", "abc", "0x10", "NaN"];

const NO_SETTINGS: &str =
    "no example settings (give --setting NAME=VALUE for its required settings)";
const NOT_DRIVEN: &str =
    "the component under test cannot be driven step by step here (ComponentUnderTest::start_payment)";

/// How a payment flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Started(String),
    Refused(String),
    Trapped(String),
    /// It asked for more than [`MAX_REQUESTS`] requests.
    Endless,
}

/// A driven flow: the requests asked for, in order, and how it ended.
struct Run {
    asked: Vec<AskedRequest>,
    end: End,
}

/// Who answers the requests a flow asks for.
#[derive(Clone, Copy)]
enum Answers<'a> {
    /// Sent for real when the origin is the kit's sandbox; anything else refused as a host's
    /// outbound policy would.
    Sandbox(Option<&'a KitEnv>),
    /// Every request gets this answer.
    Always(&'a KitAnswer),
}

impl Answers<'_> {
    async fn answer(self, request: &AskedRequest) -> KitAnswer {
        match self {
            Answers::Always(a) => a.clone(),
            Answers::Sandbox(env) => {
                // Only the sandbox's own paths: the kit's webhook receiver and shop pages on
                // the same listener are not the provider's.
                let ours = env.is_some_and(|env| {
                    client::origin_of(&request.url) == client::origin_of(&env.origin)
                        && request
                            .url
                            .strip_prefix(&env.sandbox_url())
                            .is_some_and(|rest| rest.starts_with('/'))
                });
                if !ours {
                    return KitAnswer::Refused(format!(
                        "the conformance kit sends a component's requests only to its own sandbox, not {}",
                        request.url
                    ));
                }
                let headers: Vec<(&str, &str)> = request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                match client::send(
                    &request.method,
                    &request.url,
                    &headers,
                    request.body.clone(),
                    Duration::from_secs(10),
                )
                .await
                {
                    Ok(r) => KitAnswer::Response {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    },
                    Err(e) => KitAnswer::Failed(e),
                }
            }
        }
    }
}

/// Drives `start-payment` with `order` to its end, each call within the component's limit.
async fn drive(
    cut: &dyn ComponentUnderTest,
    settings: &[(String, String)],
    order: &KitOrder,
    answers: Answers<'_>,
) -> Result<Run, Stop> {
    let limit = cut.call_limit();
    let (first, _) = timed(limit, cut.start_payment(settings, order)).await?;
    let mut step = first.ok_or_else(|| Stop::Skip(NOT_DRIVEN.into()))?;
    let mut asked = Vec::new();
    loop {
        let (request, continuation) = match step {
            FlowStep::Done(to) => {
                return Ok(Run {
                    asked,
                    end: End::Started(to),
                })
            }
            FlowStep::Refused(why) => {
                return Ok(Run {
                    asked,
                    end: End::Refused(why),
                })
            }
            FlowStep::Trapped(why) => {
                return Ok(Run {
                    asked,
                    end: End::Trapped(why),
                })
            }
            FlowStep::Send {
                request,
                continuation,
            } => (request, continuation),
        };
        asked.push(request.clone());
        if asked.len() > MAX_REQUESTS {
            return Ok(Run {
                asked,
                end: End::Endless,
            });
        }
        let answer = answers.answer(&request).await;
        let (next, _) = timed(limit, cut.resume_payment(settings, &continuation, &answer)).await?;
        step = next.ok_or_else(|| Stop::Skip(NOT_DRIVEN.into()))?;
    }
}

/// The kit's order: a one-cent phone-browser payment, its numbers new in every run.
pub fn example_order(env: Option<&KitEnv>) -> KitOrder {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let (return_url, notify_url) = match env {
        Some(env) => (
            env.shop_return_url(),
            format!("{}/notify/conformance-start", env.origin),
        ),
        None => (
            "https://shop.example/return".to_owned(),
            "https://payhost.example/notify/conformance".to_owned(),
        ),
    };
    KitOrder {
        product: "wap".into(),
        out_trade_no: format!("conformance-start-{n}"),
        subject: "conformance start".into(),
        total_fee: "0.01".into(),
        seller: None,
        return_url,
        notify_url,
        request_id: format!("kitstart{n:x}").chars().take(32).collect(),
    }
}

/// The origins a component may ask for: its manifest's hosts and every URL its settings name
/// (the schema's URL defaults included).
fn allowed_origins(
    cut: &dyn ComponentUnderTest,
    info: &PluginInfo,
    settings: &[(String, String)],
) -> Vec<String> {
    let mut out: Vec<String> = cut
        .allowed_hosts()
        .iter()
        .filter_map(|h| client::origin_of(h))
        .collect();
    let defaults = info
        .settings
        .iter()
        .filter(|f| f.kind == "url")
        .filter_map(|f| f.default_value.as_ref());
    for url in settings.iter().map(|(_, v)| v).chain(defaults) {
        out.extend(client::origin_of(url));
    }
    out
}

/// Fails unless every request went to an allowed origin.
fn origins_allowed(asked: &[AskedRequest], allowed: &[String]) -> Verdict {
    for r in asked {
        let origin = client::origin_of(&r.url).ok_or_else(|| {
            Stop::Fail(format!(
                "the component asked for {:?}, which is not an absolute http(s) URL",
                r.url
            ))
        })?;
        if !allowed.contains(&origin) {
            return Err(Stop::Fail(format!(
                "the component asked for {} {}: {origin} is neither in its manifest's outbound.allowed_hosts nor named by a setting, so a host refuses it (allowed here: {})",
                r.method,
                r.url,
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// The `start.*` cases. `env` is the kit's sandbox when the component speaks Alipay: its
/// example order must then reach a redirect (the positive control).
pub async fn cases(
    runner: &mut Runner,
    ctx: &Context<'_>,
    info: &PluginInfo,
    env: Option<&KitEnv>,
) {
    let Some(settings) = ctx.example.clone() else {
        for id in CASES {
            runner.skip(id, NO_SETTINGS);
        }
        return;
    };
    let cut = ctx.cut;
    let settings = &settings;
    runner
        .case(CASES[0], async {
            let run = drive(cut, settings, &example_order(env), Answers::Sandbox(env)).await?;
            origins_allowed(&run.asked, &allowed_origins(cut, info, settings))?;
            match run.end {
                End::Started(to) if to.trim().is_empty() => Err(
                    "the example order's redirect has no URL and no form action: the buyer has nowhere to go".into(),
                ),
                End::Started(_) => Ok(()),
                End::Refused(why) if ctx.example_is_sandbox => Err(format!(
                    "the example order, with the kit's sandbox merchant, was refused: {why}"
                )
                .into()),
                // Without the provider's sandbox (or with the caller's own settings, whose
                // requests go to their provider, not sent from here) a refusal after its request
                // (refused here) is all a component can answer; one before any request says the
                // kit's order is not one it takes, which shows nothing.
                End::Refused(why) if run.asked.is_empty() => Err(Stop::Skip(format!(
                    "the component refused the kit's example order before asking anything: {}",
                    cut_text(&why, 200)
                ))),
                End::Refused(_) => Ok(()),
                End::Trapped(why) => Err(format!("start-payment trapped: {why}").into()),
                End::Endless => Err(endless(&run.asked)),
            }
        })
        .await;

    let failures: Vec<(&str, KitAnswer)> = vec![
        (
            "no answer in time",
            KitAnswer::Timeout("the kit's timeout".into()),
        ),
        (
            "the outbound policy's refusal",
            KitAnswer::Refused("not allowed by the kit".into()),
        ),
        (
            "a connection failure",
            KitAnswer::Failed("connection reset by the kit".into()),
        ),
        (
            "HTTP 500 with an HTML page",
            response(
                500,
                b"<html><body>Internal Server Error</body></html>".to_vec(),
            ),
        ),
        ("HTTP 200 with an empty body", response(200, Vec::new())),
        (
            "HTTP 200 with bytes that are not UTF-8",
            response(200, vec![0xff, 0xfe, 0x00, 0x9f, 0x3c, 0x3f]),
        ),
        (
            "HTTP 200 with 1 MiB of x",
            response(200, vec![b'x'; 1 << 20]),
        ),
    ];
    runner
        .case(CASES[1], async {
            // Whether the example order asks for anything at all.
            let probe = KitAnswer::Failed("probe".into());
            let run = drive(cut, settings, &example_order(env), Answers::Always(&probe)).await?;
            if run.asked.is_empty() {
                return Err(Stop::Skip(
                    "the example order asks for no request: there is nothing to fail".into(),
                ));
            }
            let allowed = allowed_origins(cut, info, settings);
            let mut problems = Vec::new();
            for (what, answer) in &failures {
                let run = drive(cut, settings, &example_order(env), Answers::Always(answer)).await?;
                if let Err(Stop::Fail(why)) = origins_allowed(&run.asked, &allowed) {
                    problems.push(format!("after {what}: {why}"));
                }
                match run.end {
                    End::Refused(_) => {}
                    End::Started(to) => problems.push(format!(
                        "after {what}, it answered a redirect ({}): a buyer would be sent to pay a trade the provider never created",
                        cut_text(&to, 120)
                    )),
                    End::Trapped(why) => problems.push(format!("{what} trapped it: {why}")),
                    End::Endless => problems.push(format!(
                        "after {what}, it kept asking: {}",
                        endless_text(&run.asked)
                    )),
                }
            }
            joined(problems)
        })
        .await;

    runner
        .case(CASES[2], async {
            // A component that refuses the kit's good order outright refuses every order: its
            // refusing these shows nothing.
            let baseline = drive(cut, settings, &example_order(env), Answers::Sandbox(env)).await?;
            if let (End::Refused(why), true) = (&baseline.end, baseline.asked.is_empty()) {
                return Err(Stop::Skip(format!(
                    "the component refuses the kit's example order too, so a refusal of a bad amount shows nothing: {}",
                    cut_text(why, 200)
                )));
            }
            let mut problems = Vec::new();
            for amount in BAD_AMOUNTS {
                let order = KitOrder {
                    total_fee: (*amount).to_owned(),
                    ..example_order(env)
                };
                let refused = KitAnswer::Refused("the kit sends nothing for a bad amount".into());
                let run = drive(cut, settings, &order, Answers::Always(&refused)).await?;
                if let Some(r) = run.asked.first() {
                    problems.push(format!(
                        "total_fee {amount:?} was not refused before sending: it asked for {} {}",
                        r.method, r.url
                    ));
                    continue;
                }
                match run.end {
                    End::Refused(_) => {}
                    End::Trapped(why) => {
                        problems.push(format!("total_fee {amount:?} trapped it: {why}"))
                    }
                    End::Started(_) | End::Endless => {
                        problems.push(format!("total_fee {amount:?} was started"))
                    }
                }
            }
            joined(problems)
        })
        .await;

    runner
        .case(CASES[3], async {
            let limit = cut.call_limit();
            let mut problems = Vec::new();
            let answer = response(200, b"<ok/>".to_vec());
            for (what, continuation) in [
                ("an empty continuation", String::new()),
                (
                    "a continuation that is not one",
                    "conformance-kit".to_owned(),
                ),
                ("64 KiB of garbage", "\u{1}Z".repeat(32 << 10)),
            ] {
                let (step, _) =
                    timed(limit, cut.resume_payment(settings, &continuation, &answer)).await?;
                match step.ok_or_else(|| Stop::Skip(NOT_DRIVEN.into()))? {
                    FlowStep::Refused(_) => {}
                    FlowStep::Trapped(why) => problems.push(format!("{what} trapped it: {why}")),
                    FlowStep::Done(to) => problems.push(format!(
                        "{what} finished the payment (to {})",
                        cut_text(&to, 120)
                    )),
                    FlowStep::Send { request, .. } => problems.push(format!(
                        "{what} made it ask for {} {}",
                        request.method, request.url
                    )),
                }
            }
            joined(problems)
        })
        .await;
}

fn response(status: u16, body: Vec<u8>) -> KitAnswer {
    KitAnswer::Response {
        status,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body,
    }
}

fn endless_text(asked: &[AskedRequest]) -> String {
    let urls: Vec<&str> = asked.iter().map(|r| r.url.as_str()).collect();
    format!(
        "more than {MAX_REQUESTS} requests ({}); a host cuts such a flow off",
        urls.join(", ")
    )
}

fn endless(asked: &[AskedRequest]) -> Stop {
    Stop::Fail(format!("the flow asked for {}", endless_text(asked)))
}

fn cut_text(s: &str, n: usize) -> String {
    let cut: String = s.chars().take(n).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

fn joined(problems: Vec<String>) -> Verdict {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Stop::Fail(problems.join("; ")))
    }
}
