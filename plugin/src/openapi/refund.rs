//! Refunds, closing a trade and the day's bill on the open platform ([OPENAPI §7.5]–[OPENAPI §7.8]):
//! each a signed server call through [`query::call`], each answer read only after its signature
//! verified over the raw response node ([`query::read_response`], [OPENAPI §7.2]).

use super::query::{call, read_answer, read_response, Answer};
use super::request::BizContent;
use super::settings::OpenApiSettings;
use crate::amount::Amount;
use crate::flow::HttpRequest;
use crate::model::{
    BillLocation, GatewayError, PluginError, RefundRequest, RefundState, RefundStatus, TradeClosed,
};

pub const REFUND: &str = "alipay.trade.refund";
pub const REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";
pub const CLOSE: &str = "alipay.trade.close";
pub const BILL: &str = "alipay.data.dataservice.bill.downloadurl.query";

type Node = serde_json::Map<String, serde_json::Value>;

fn text(node: &Node, key: &str) -> Option<String> {
    node.get(key)
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn amount(node: &Node, key: &str) -> Option<String> {
    text(node, key)
        .and_then(|v| Amount::parse(&v).ok())
        .map(|a| a.to_string())
}

/// The answer must be about the order asked for (a signed answer about another order is a
/// mix-up, never acted on).
fn same_order(method: &str, node: &Node, out_trade_no: &str) -> Result<(), PluginError> {
    match text(node, "out_trade_no") {
        Some(o) if o != out_trade_no => Err(PluginError::Malformed(format!(
            "{method}: asked about {out_trade_no} but the answer is about {o:?}"
        ))),
        _ => Ok(()),
    }
}

/// `alipay.trade.refund` ([OPENAPI §7.5]): `out_request_no` is the host's request number, so a
/// retry with the same number refunds at most once.
pub fn refund_request(
    settings: &OpenApiSettings,
    r: &RefundRequest,
    amount: Amount,
    now: i64,
) -> Result<HttpRequest, PluginError> {
    let biz = BizContent::default()
        .field("out_trade_no", &r.out_trade_no)
        .field("refund_amount", &amount.to_string())
        .field("out_request_no", &r.request_no)
        .maybe("refund_reason", Some(r.reason.trim()))
        .finish();
    call(settings, REFUND, biz, now)
}

/// The refund call's answer. `fund_change` `Y` means this call moved money: succeeded. `N` is a
/// replay or a refund still being processed ([OPENAPI §7.5]); it counts as succeeded only when
/// the cumulative `refund_fee` shows the whole trade refunded (nothing of it can still be
/// pending), else it is pending and the host asks `query-refund`. `20000` and `ACQ.SYSTEM_ERROR`
/// leave it pending (the outcome is unknown), and so does an unsigned business refusal (Alipay
/// signs those, [OPENAPI §7.3]; nothing is decided on an unsigned body, [OPENAPI §7.2] step 6).
/// Any other refusal (`ACQ.DISCORDANT_REPEAT_REQUEST`, `ACQ.TRADE_HAS_FINISHED`, …) is a gateway
/// error: the refund was refused, nothing moved.
pub fn read_refund(
    settings: &OpenApiSettings,
    out_trade_no: &str,
    request_no: &str,
    total_fee: Option<Amount>,
    this_refund: Option<Amount>,
    body: &[u8],
) -> Result<RefundState, PluginError> {
    let node = match read_answer(settings, REFUND, body)? {
        Answer::Success(node) => node,
        // "Outcome unknown: retry with the same out_request_no" ([OPENAPI §7.3], [OPENAPI §7.5]): the
        // refund may have been made. Pending, never failed (a failure frees its amount here).
        Answer::Refused { error, signed } if outcome_unknown(&error, signed) => {
            return Ok(RefundState {
                request_no: request_no.to_owned(),
                status: RefundStatus::Pending,
                confirm: None,
                refunded_total: None,
                fund_change: false,
                // Alipay's words bounded (an embedder stores and shows this detail).
                detail: format!(
                    "Alipay answered {} {} ({}): the outcome is unknown; ask again under the same request number",
                    crate::model::cut(&error.code, 64),
                    crate::model::cut(&error.sub_code, 64),
                    crate::model::cut(&error.msg, 512)
                ),
            });
        }
        Answer::Refused { error, .. } => return Err(PluginError::Gateway(error)),
    };
    same_order(REFUND, &node, out_trade_no)?;
    let fund_change = text(&node, "fund_change").as_deref() == Some("Y");
    let refunded_total = amount(&node, "refund_fee");
    let whole_trade = match (&refunded_total, total_fee) {
        (Some(t), Some(total)) => Amount::parse(t).is_ok_and(|t| t >= total),
        _ => false,
    };
    // The trade's refunded total below this refund's own amount: the answer cannot include this
    // refund (an earlier refund's answer, replayed). Pending, to be asked again by its number.
    if let (Some(t), Some(this)) = (&refunded_total, this_refund) {
        if Amount::parse(t).is_ok_and(|t| t < this) {
            return Ok(RefundState {
                request_no: request_no.to_owned(),
                status: RefundStatus::Pending,
                confirm: None,
                refunded_total: None,
                fund_change: false,
                detail: format!(
                    "Alipay's answer counts {t} refunded on this trade, less than this refund's {this}: it is not this refund's answer; ask again under the same request number"
                ),
            });
        }
    }
    Ok(RefundState {
        request_no: request_no.to_owned(),
        status: if fund_change || whole_trade {
            RefundStatus::Succeeded
        } else {
            RefundStatus::Pending
        },
        confirm: None,
        refunded_total,
        fund_change,
        detail: String::new(),
    })
}

/// Gateway answers after which a call may or may not have taken effect: `20000` (service
/// currently unavailable) and `ACQ.SYSTEM_ERROR` ([OPENAPI §7.3]: "retry with identical params"),
/// and an unsigned refusal other than the gateway's own (missing or invalid arguments, app
/// conditions, call limits, permissions: refused before any trade is looked at, and unsigned).
fn outcome_unknown(error: &GatewayError, signed: bool) -> bool {
    const BEFORE_ANY_TRADE: [&str; 6] = ["20001", "40001", "40002", "40003", "40005", "40006"];
    error.code == "20000"
        || error.sub_code == "ACQ.SYSTEM_ERROR"
        || (!signed && !BEFORE_ANY_TRADE.contains(&error.code.as_str()))
}

/// `alipay.trade.fastpay.refund.query` ([OPENAPI §7.6]).
pub fn refund_query_request(
    settings: &OpenApiSettings,
    out_trade_no: &str,
    request_no: &str,
    now: i64,
) -> Result<HttpRequest, PluginError> {
    let biz = BizContent::default()
        .field("out_trade_no", out_trade_no)
        .field("out_request_no", request_no)
        .finish();
    call(settings, REFUND_QUERY, biz, now)
}

/// The refund query's answer: `refund_status=REFUND_SUCCESS` is succeeded; without it the refund
/// was not received or is still being processed: pending ([OPENAPI §7.6]: "the query returned
/// data" is not success).
pub fn read_refund_query(
    settings: &OpenApiSettings,
    out_trade_no: &str,
    request_no: &str,
    body: &[u8],
) -> Result<RefundState, PluginError> {
    let node = read_response(settings, REFUND_QUERY, body)?;
    same_order(REFUND_QUERY, &node, out_trade_no)?;
    if let Some(r) = text(&node, "out_request_no").filter(|r| r != request_no) {
        return Err(PluginError::Malformed(format!(
            "{REFUND_QUERY}: asked about refund {request_no} but the answer is about {r:?}"
        )));
    }
    let succeeded = text(&node, "refund_status").as_deref() == Some("REFUND_SUCCESS");
    Ok(RefundState {
        request_no: request_no.to_owned(),
        status: if succeeded {
            RefundStatus::Succeeded
        } else {
            RefundStatus::Pending
        },
        confirm: None,
        refunded_total: None,
        fund_change: false,
        detail: if succeeded {
            String::new()
        } else {
            "Alipay has no successful refund with this number yet (not received, or still being processed)".into()
        },
    })
}

/// `alipay.trade.close` ([OPENAPI §7.7]).
pub fn close_request(
    settings: &OpenApiSettings,
    out_trade_no: &str,
    now: i64,
) -> Result<HttpRequest, PluginError> {
    let biz = BizContent::default()
        .field("out_trade_no", out_trade_no)
        .finish();
    call(settings, CLOSE, biz, now)
}

/// The close call's answer. `ACQ.TRADE_NOT_EXIST`: the buyer never opened the cashier, so the
/// trade does not exist at Alipay yet; the host closes it locally. The buyer may still open the
/// cashier and pay until the order's `time_expire` ([OPENAPI §7.7]; none if the order had none),
/// so a later paid notification is one for the host to review.
pub fn read_close(
    settings: &OpenApiSettings,
    out_trade_no: &str,
    body: &[u8],
) -> Result<TradeClosed, PluginError> {
    let node = match read_answer(settings, CLOSE, body)? {
        // Closing here on the provider's word needs its signature ([OPENAPI §7.2] step 6): an
        // unsigned "no such trade" leaves the order as it is, with the gateway's error.
        Answer::Refused { error, signed: true } if error.sub_code == "ACQ.TRADE_NOT_EXIST" => {
            return Ok(TradeClosed {
                at_provider: false,
                trade_no: String::new(),
                detail: "Alipay has no such trade (the buyer never opened the cashier): close it locally; the buyer can still pay until the order's time_expire (if it had one), so treat a later paid notification as one to review".into(),
            })
        }
        Answer::Refused { error, .. } => return Err(PluginError::Gateway(error)),
        Answer::Success(node) => node,
    };
    same_order(CLOSE, &node, out_trade_no)?;
    Ok(TradeClosed {
        at_provider: true,
        trade_no: text(&node, "trade_no").unwrap_or_default(),
        detail: String::new(),
    })
}

/// `alipay.data.dataservice.bill.downloadurl.query` for the trade bill of one day ([OPENAPI §7.8]).
pub fn bill_request(
    settings: &OpenApiSettings,
    date: &str,
    now: i64,
) -> Result<HttpRequest, PluginError> {
    let biz = BizContent::default()
        .field("bill_type", "trade")
        .field("bill_date", date)
        .finish();
    call(settings, BILL, biz, now)
}

/// The bill call's answer: the download URL, or `empty` when Alipay says the day had no business
/// (`bill_file_code` `EMPTY_DATA_WITH_BILL_FILE`).
pub fn read_bill(settings: &OpenApiSettings, body: &[u8]) -> Result<BillLocation, PluginError> {
    let node = read_response(settings, BILL, body)?;
    if text(&node, "bill_file_code").as_deref() == Some("EMPTY_DATA_WITH_BILL_FILE") {
        return Ok(BillLocation {
            url: String::new(),
            empty: true,
        });
    }
    let url = text(&node, "bill_download_url").ok_or_else(|| {
        PluginError::Malformed(format!("{BILL}: the answer has no bill_download_url"))
    })?;
    if !crate::settings::is_http_url(&url) {
        return Err(PluginError::Malformed(format!(
            "{BILL}: bill_download_url is not an http(s) URL"
        )));
    }
    Ok(BillLocation { url, empty: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HttpMethod;
    use crate::openapi::settings::{tests::settings_pairs, validate};
    use crate::openapi::sign::{request_sign_content, verify, SignType};
    use crate::openapi::testdata;
    use crate::sign::parse_public_key;

    fn params_of(req: &HttpRequest) -> Vec<(String, String)> {
        let (_, query) = req.url.split_once('?').unwrap();
        let mut all: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        all.extend(form_urlencoded::parse(&req.body).into_owned());
        all
    }

    fn get<'a>(p: &'a [(String, String)], k: &str) -> &'a str {
        &p.iter().find(|(key, _)| key == k).unwrap().1
    }

    fn vector_refund() -> RefundRequest {
        RefundRequest {
            out_trade_no: "ECS20240520000123".into(),
            trade_no: "2024052022001400000000000001".into(),
            amount: "10.00".into(),
            total_fee: "88.88".into(),
            reason: "部分退款".into(),
            request_no: "RF20240521001".into(),
            request_time: "2024-05-20 10:30:00".into(),
            notify_url: "https://shop.example.com/notify".into(),
        }
    }

    /// The request's signing string and signature are the reference's known answer
    /// (`trade_refund_request`: same parameters, same `biz_content` bytes, RSA2 is deterministic).
    #[test]
    fn refund_request_matches_the_vector() {
        let v = testdata::vectors();
        let want = &v.json["trade_refund_request"];
        let (s, _) = validate(&settings_pairs()).unwrap();
        let req = refund_request(
            &s,
            &vector_refund(),
            Amount::parse("10.00").unwrap(),
            1_716_172_200,
        )
        .unwrap();
        assert_eq!(req.method, HttpMethod::Post);
        let params = params_of(&req);
        assert_eq!(
            get(&params, "biz_content"),
            want["params"]["biz_content"].as_str().unwrap()
        );
        let content = request_sign_content(
            params
                .iter()
                .filter(|(k, _)| k != "sign")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(content, want["sign_content"].as_str().unwrap());
        assert_eq!(get(&params, "sign"), want["sign"].as_str().unwrap());
        let app_pub = parse_public_key(v.key("app_public")).unwrap();
        assert!(verify(
            content.as_bytes(),
            get(&params, "sign"),
            &app_pub,
            SignType::Rsa2
        )
        .unwrap());
    }

    #[test]
    fn refund_answers() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let total = Amount::parse("88.88").ok();
        // This order's refund answers, read as `resume-refund` reads them.
        let answer = |request_no: &str, total, this, body: &[u8]| {
            read_refund(&s, "ECS20240520000123", request_no, total, this, body)
        };
        let ok = answer(
            "RF20240521001",
            total,
            None,
            &testdata::read("responses/refund_success.json"),
        )
        .unwrap();
        assert_eq!(ok.status, RefundStatus::Succeeded);
        assert!(ok.fund_change);
        assert_eq!(ok.refunded_total.as_deref(), Some("10.00"));
        // The same answer for a refund of 10.00 is its own; for a later refund of 20.00 (the
        // first refund's answer replayed) it cannot be: pending, to be asked again.
        let mine = answer(
            "RF20240521001",
            total,
            Amount::parse("10.00").ok(),
            &testdata::read("responses/refund_success.json"),
        )
        .unwrap();
        assert_eq!(mine.status, RefundStatus::Succeeded);
        let stale = answer(
            "RF20240521002",
            total,
            Amount::parse("20.00").ok(),
            &testdata::read("responses/refund_success.json"),
        )
        .unwrap();
        assert_eq!(stale.status, RefundStatus::Pending);
        assert!(!stale.fund_change && stale.refunded_total.is_none());
        assert!(
            stale.detail.contains("not this refund's answer"),
            "{}",
            stale.detail
        );
        // A replay moves no money: pending until the query confirms it…
        let replay_body = testdata::read("responses/refund_replay_same_out_request_no.json");
        let replay = answer("RF20240521001", total, None, &replay_body).unwrap();
        assert_eq!(replay.status, RefundStatus::Pending);
        assert!(!replay.fund_change);
        // …unless the cumulative total shows the whole trade refunded.
        let whole = answer(
            "RF20240521001",
            Amount::parse("10.00").ok(),
            None,
            &replay_body,
        )
        .unwrap();
        assert_eq!(whole.status, RefundStatus::Succeeded);
        match answer(
            "RF20240521001",
            total,
            None,
            &testdata::read("responses/refund_discordant_repeat.json"),
        ) {
            Err(PluginError::Gateway(g)) => {
                assert_eq!(g.code, "40004");
                assert_eq!(g.sub_code, "ACQ.DISCORDANT_REPEAT_REQUEST");
            }
            other => panic!("{other:?}"),
        }
        // "Outcome unknown" (ACQ.SYSTEM_ERROR, 20000): pending under its number, never failed
        // (signed here with the reference's Alipay test key; an unsigned 20000 alike).
        let unknown = answer(
            "RF20240521001",
            total,
            None,
            &testdata::read("responses/refund_system_error.json"),
        )
        .unwrap();
        assert_eq!(unknown.status, RefundStatus::Pending);
        assert!(
            unknown.detail.contains("ACQ.SYSTEM_ERROR"),
            "{}",
            unknown.detail
        );
        let busy = br#"{"alipay_trade_refund_response":{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"x"}}"#;
        let busy = answer("RF20240521001", total, None, busy).unwrap();
        assert_eq!(busy.status, RefundStatus::Pending);
        // An unsigned business refusal decides nothing ([OPENAPI §7.2] step 6): Alipay signs
        // those, so the refund may have been made; pending. The gateway's own refusals (here a
        // bad signature of ours) come unsigned and before any trade: refused, nothing moved.
        let discordant =
            String::from_utf8(testdata::read("responses/refund_discordant_repeat.json")).unwrap();
        let node_end = discordant.rfind(",\"sign\"").unwrap();
        let unsigned = format!("{}}}", &discordant[..node_end]);
        let unsigned = answer("RF20240521001", total, None, unsigned.as_bytes()).unwrap();
        assert_eq!(unsigned.status, RefundStatus::Pending);
        assert!(
            unsigned.detail.contains("ACQ.DISCORDANT_REPEAT_REQUEST"),
            "{}",
            unsigned.detail
        );
        let gateway = br#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"x"}}"#;
        match answer("RF20240521001", total, None, gateway) {
            Err(PluginError::Gateway(g)) => assert_eq!(g.sub_code, "isv.invalid-signature"),
            other => panic!("{other:?}"),
        }
        // A forged answer and an answer about another order are refused.
        let forged = String::from_utf8(testdata::read("responses/refund_success.json"))
            .unwrap()
            .replace("\"10.00\"", "\"88.88\"");
        assert!(matches!(
            answer("RF20240521001", total, None, forged.as_bytes()),
            Err(PluginError::BadSignature(_))
        ));
        assert!(matches!(
            read_refund(
                &s,
                "OTHER",
                "RF20240521001",
                total,
                None,
                &testdata::read("responses/refund_success.json")
            ),
            Err(PluginError::Malformed(_))
        ));
    }

    #[test]
    fn refund_query_answers() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let body = testdata::read("responses/refund_query_success.json");
        let q = read_refund_query(&s, "ECS20240520000123", "RF20240521001", &body).unwrap();
        assert_eq!(q.status, RefundStatus::Succeeded);
        assert!(matches!(
            read_refund_query(&s, "ECS20240520000123", "RF20240521999", &body),
            Err(PluginError::Malformed(_))
        ));
        let req =
            refund_query_request(&s, "ECS20240520000123", "RF20240521001", 1_716_172_200).unwrap();
        let params = params_of(&req);
        assert_eq!(get(&params, "method"), REFUND_QUERY);
        assert_eq!(
            get(&params, "biz_content"),
            r#"{"out_trade_no":"ECS20240520000123","out_request_no":"RF20240521001"}"#
        );
    }

    #[test]
    fn close_answers() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let c = read_close(
            &s,
            "ECS20240520000123",
            &testdata::read("responses/close_success.json"),
        )
        .unwrap();
        assert!(c.at_provider);
        assert_eq!(c.trade_no, "2024052022001400000000000001");
        let req = close_request(&s, "ECS20240520000123", 1_716_172_200).unwrap();
        assert_eq!(get(&params_of(&req), "method"), CLOSE);
        // "No such trade" closes locally only when Alipay signed it ([OPENAPI §7.2] step 6).
        let node = r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在"}"#;
        let alipay = crate::sign::parse_private_key(&String::from_utf8_lossy(&testdata::read(
            "keys/alipay_test_private_pkcs8.pem",
        )))
        .unwrap();
        let sig = super::super::sign::sign(node.as_bytes(), &alipay, s.sign_type).unwrap();
        let signed = format!(r#"{{"alipay_trade_close_response":{node},"sign":"{sig}"}}"#);
        let c = read_close(&s, "ECS20240520000123", signed.as_bytes()).unwrap();
        assert!(!c.at_provider);
        let unsigned = format!(r#"{{"alipay_trade_close_response":{node}}}"#);
        match read_close(&s, "ECS20240520000123", unsigned.as_bytes()) {
            Err(PluginError::Gateway(g)) => assert_eq!(g.sub_code, "ACQ.TRADE_NOT_EXIST"),
            other => panic!("an unsigned report closed the order: {other:?}"),
        }
    }

    #[test]
    fn bill_answers() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        // Alipay escapes `/` as `\/` and has signed either form ([OPENAPI §7.2] step 4).
        for file in [
            "responses/bill_url_slash_signed_escaped.json",
            "responses/bill_url_slash_signed_unescaped.json",
        ] {
            let b = read_bill(&s, &testdata::read(file)).unwrap();
            assert!(!b.empty);
            assert!(
                b.url
                    .starts_with("http://dwbillcenter.alipay.com/downloadBillFile.resource?"),
                "{file}: {}",
                b.url
            );
        }
        let req = bill_request(&s, "2024-05-19", 1_716_172_200).unwrap();
        assert_eq!(
            get(&params_of(&req), "biz_content"),
            r#"{"bill_type":"trade","bill_date":"2024-05-19"}"#
        );
    }
}

#[cfg(test)]
mod flow_tests {
    use crate::connector;
    use crate::flow::{HttpResponse, Step};
    use crate::model::{RefundRequest, RefundStatus, TradeEvent};
    use crate::openapi::settings::tests::settings_pairs;
    use crate::openapi::testdata;

    fn answer(file: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: testdata::read(file),
        }
    }

    /// Refund, refund query, close and bill through the plugin's entry points, as the component
    /// glue calls them.
    #[test]
    fn openapi_refund_close_and_bill_through_the_connector() {
        let pairs = settings_pairs();
        let r = RefundRequest {
            out_trade_no: "ECS20240520000123".into(),
            trade_no: String::new(),
            amount: "10.00".into(),
            total_fee: "88.88".into(),
            reason: "部分退款".into(),
            request_no: "RF20240521001".into(),
            request_time: "2024-05-21 09:00:00".into(),
            notify_url: String::new(),
        };
        let Step::Send(p) = connector::start_refund(&pairs, &r).unwrap() else {
            panic!("an OpenAPI refund is a server call");
        };
        let Step::Done(s) = connector::resume_refund(
            &pairs,
            &p.continuation,
            Ok(answer("responses/refund_success.json")),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(s.status, RefundStatus::Succeeded);
        let Step::Send(p) =
            connector::query_refund(&pairs, "ECS20240520000123", "RF20240521001").unwrap()
        else {
            panic!()
        };
        // The refund call's continuation cannot resume with the query's answer and back.
        let Step::Done(q) = connector::resume_refund(
            &pairs,
            &p.continuation,
            Ok(answer("responses/refund_query_success.json")),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(q.status, RefundStatus::Succeeded);
        assert!(connector::resume_refund(
            &pairs,
            &p.continuation,
            Ok(answer("responses/refund_success.json"))
        )
        .is_err());
        let Step::Send(p) = connector::close_trade(&pairs, "ECS20240520000123").unwrap() else {
            panic!()
        };
        let Step::Done(c) = connector::resume_close(
            &pairs,
            &p.continuation,
            Ok(answer("responses/close_success.json")),
        )
        .unwrap() else {
            panic!()
        };
        assert!(c.at_provider);
        let Step::Send(p) = connector::locate_bill(&pairs, "2024-05-19").unwrap() else {
            panic!()
        };
        let Step::Done(b) = connector::resume_bill(
            &pairs,
            &p.continuation,
            Ok(answer("responses/bill_url_slash_signed_escaped.json")),
        )
        .unwrap() else {
            panic!()
        };
        assert!(b.url.starts_with("http://dwbillcenter.alipay.com/"));
        assert!(connector::locate_bill(&pairs, "2024-5-19").is_err());
        // Days the calendar does not have are refused before any request is built.
        for date in [
            "2026-02-30",
            "2026-02-29",
            "2026-04-31",
            "2026-00-10",
            "2026-13-01",
        ] {
            match connector::locate_bill(&pairs, date) {
                Err(crate::model::PluginError::InvalidOrder(e)) => {
                    assert_eq!(e.field, "date", "{date}")
                }
                other => panic!("{date}: {other:?}"),
            }
        }
        for date in ["2024-02-29", "2000-02-29", "2026-12-31"] {
            assert!(connector::locate_bill(&pairs, date).is_ok(), "{date}");
        }
    }

    /// The partial-refund notify ([OPENAPI §6.6]) carries its refund: `out_biz_no`, the
    /// cumulative `refund_fee`, `gmt_refund`.
    #[test]
    fn partial_refund_notify_reports_the_refund() {
        let form: Vec<(String, String)> =
            form_urlencoded::parse(&testdata::read("notify/partial_refund.txt"))
                .into_owned()
                .collect();
        let Step::Done(n) = connector::verify_notification(&settings_pairs(), &form).unwrap()
        else {
            panic!()
        };
        assert_eq!(n.event(), TradeEvent::PartiallyRefunded);
        let r = n.refund().unwrap();
        assert_eq!(r.request_no, "RF20240521001");
        assert_eq!(r.refunded_total.as_deref(), Some("10.00"));
        assert_eq!(r.amount, None);
        assert_eq!(r.time.as_deref(), Some("2024-05-21 09:00:01"));
        assert!(r.succeeded);

        // Empty copies of the refund's fields in front keep the signature (empties are not
        // signed) but are refused: without the refusal the notify read as a plain payment.
        let mut forged: Vec<(String, String)> = ["refund_fee", "gmt_refund", "out_biz_no"]
            .iter()
            .map(|k| (k.to_string(), String::new()))
            .collect();
        forged.extend(form.iter().cloned());
        match crate::connector::verify_notification(&settings_pairs(), &forged) {
            Err(crate::model::PluginError::Malformed(m)) => {
                assert!(m.contains("more than once"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
