//! Server-to-server calls ([OPENAPI §7]): the request, and the answer read only
//! after its signature verified over the raw response node. `alipay.trade.query` lives here;
//! the refund, close and bill calls share [`call`] and [`read_response`].

use super::request::{self, BizContent};
use super::response::{check_signature, extract, SignatureCheck};
use super::settings::OpenApiSettings;
use crate::amount::Amount;
use crate::flow::HttpRequest;
use crate::model::{GatewayError, HttpMethod, Notification, PluginError, TradeQuery};

pub const QUERY: &str = "alipay.trade.query";

/// A signed call of `method` with `biz_content`, as the host must send it ([OPENAPI §7.1]).
pub fn call(
    settings: &OpenApiSettings,
    method: &str,
    biz_content: String,
    now: i64,
) -> Result<HttpRequest, PluginError> {
    let params = request::common_params(settings, method, &request::beijing_time(now), None, None);
    let params = request::signed(settings, params, biz_content)?;
    let (url, body) = request::server_call(&settings.gateway, &params);
    Ok(HttpRequest {
        method: HttpMethod::Post,
        url,
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded;charset=utf-8".into(),
        )],
        body,
    })
}

/// The query for one order.
pub fn query_request(
    settings: &OpenApiSettings,
    out_trade_no: &str,
    now: i64,
) -> Result<HttpRequest, PluginError> {
    call(
        settings,
        QUERY,
        BizContent::default()
            .field("out_trade_no", out_trade_no)
            .finish(),
        now,
    )
}

/// A verified response node, parsed; or the gateway's error. `code` `10000` is success;
/// anything else is the gateway's [`GatewayError`] (code, sub_code, msg, sub_msg as detail).
pub fn read_response(
    settings: &OpenApiSettings,
    method: &str,
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, PluginError> {
    match read_answer(settings, method, body)? {
        Answer::Success(node) => Ok(node),
        Answer::Refused { error, .. } => Err(PluginError::Gateway(error)),
    }
}

/// What the gateway answered, once its signature is checked.
pub enum Answer {
    /// `code` `10000`, signed and verified.
    Success(serde_json::Map<String, serde_json::Value>),
    /// Any other code. `signed`: the report carried a signature that verified, so what it says
    /// (`ACQ.TRADE_NOT_EXIST`) may be acted on; an unsigned one is a report only ([OPENAPI §7.2]
    /// step 6: never act on the fields of an unsigned body).
    Refused { error: GatewayError, signed: bool },
}

/// [`read_response`], telling a signed refusal from an unsigned one.
pub fn read_answer(
    settings: &OpenApiSettings,
    method: &str,
    body: &[u8],
) -> Result<Answer, PluginError> {
    let raw =
        extract(body, method).map_err(|e| PluginError::Malformed(format!("{method}: {e}")))?;
    if let (Some(mode), Some(sn)) = (&settings.cert_mode, raw.alipay_cert_sn.as_deref()) {
        if sn != mode.alipay_cert_sn {
            return Err(PluginError::BadSignature(format!(
                "{method}: the answer is signed by Alipay certificate {sn}, not the configured one ({}): install Alipay's new certificate (alipay_cert)",
                mode.alipay_cert_sn
            )));
        }
    }
    let check = check_signature(&raw, &settings.alipay_key, settings.sign_type);
    if raw.encrypted {
        return Err(PluginError::Malformed(format!(
            "{method}: the answer is AES-encrypted, which this merchant has not configured"
        )));
    }
    let node: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw.node)
        .map_err(|e| {
            PluginError::Malformed(format!("{method}: the {} node: {e}", raw.node_name))
        })?;
    let text = |k: &str| {
        node.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    match check {
        // An unsigned body is an error report at best ([OPENAPI §7.2] step 6): its business fields are
        // never used; its code is passed on.
        SignatureCheck::Unsigned if text("code") != "10000" && !text("code").is_empty() => {
            return Ok(Answer::Refused {
                error: gateway_error(&node),
                signed: false,
            })
        }
        SignatureCheck::Unsigned => {
            return Err(PluginError::BadSignature(format!("{method}: the answer is not signed")))
        }
        SignatureCheck::Bad => {
            return Err(PluginError::BadSignature(format!(
                "{method}: the answer's signature does not verify with the configured Alipay public key"
            )))
        }
        SignatureCheck::Verified | SignatureCheck::VerifiedUnescapedSlash => {}
    }
    if text("code") != "10000" {
        return Ok(Answer::Refused {
            error: gateway_error(&node),
            signed: true,
        });
    }
    Ok(Answer::Success(node))
}

fn gateway_error(node: &serde_json::Map<String, serde_json::Value>) -> GatewayError {
    let text = |k: &str| {
        node.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    GatewayError {
        code: text("code"),
        sub_code: text("sub_code"),
        msg: text("msg"),
        detail: text("sub_msg"),
    }
}

/// The query's answer as a [`TradeQuery`]: `found: false` for `ACQ.TRADE_NOT_EXIST` (the buyer
/// has not reached the cashier yet: the order stays pending, [OPENAPI §7.4]), the trade otherwise, with
/// its notification view (synthetic `notify_id` `query:<trade_no>:<trade_status>`).
pub fn read_query(
    settings: &OpenApiSettings,
    out_trade_no: &str,
    body: &[u8],
) -> Result<TradeQuery, PluginError> {
    let node = match read_answer(settings, QUERY, body)? {
        // Nothing is acted on (the order stays pending either way); whether the report was
        // signed is said, as for any queried trade.
        Answer::Refused { error, signed } if error.sub_code == "ACQ.TRADE_NOT_EXIST" => {
            return Ok(TradeQuery {
                found: false,
                out_trade_no: out_trade_no.to_owned(),
                signature_verified: signed,
                ..Default::default()
            })
        }
        Answer::Refused { error, .. } => return Err(PluginError::Gateway(error)),
        Answer::Success(node) => node,
    };
    let text = |k: &str| {
        node.get(k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let answered_no = text("out_trade_no").unwrap_or_default();
    if answered_no != out_trade_no {
        return Err(PluginError::Malformed(format!(
            "{QUERY}: asked about {out_trade_no} but the answer is about {answered_no:?}"
        )));
    }
    let total_fee = text("total_amount")
        .and_then(|a| Amount::parse(&a).ok())
        .map(|a| a.to_string())
        .ok_or_else(|| {
            PluginError::Malformed(format!("{QUERY}: the answer has no valid total_amount"))
        })?;
    let trade_no = text("trade_no").unwrap_or_default();
    let trade_status = text("trade_status").unwrap_or_default();
    let fields: Vec<(String, String)> = node
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect();
    let mut notification = Notification {
        out_trade_no: out_trade_no.to_owned(),
        trade_no: trade_no.clone(),
        trade_status: trade_status.clone(),
        total_fee: total_fee.clone(),
        buyer_email: text("buyer_logon_id"),
        buyer_id: text("buyer_user_id").or_else(|| text("buyer_open_id")),
        notify_id: format!("query:{trade_no}:{trade_status}"),
        gmt_payment: text("send_pay_date"),
        paid: matches!(trade_status.as_str(), "TRADE_SUCCESS" | "TRADE_FINISHED"),
        fields: fields.clone(),
        ..Default::default()
    };
    // The answer names no seller; it is Alipay's signed answer about this app's own order,
    // whose seller the app itself signed when the trade was made (see `match_order`).
    notification.seller_id = None;
    Ok(TradeQuery {
        found: true,
        out_trade_no: out_trade_no.to_owned(),
        trade_no,
        trade_status,
        event: notification.event(),
        total_fee,
        refund_fee: notification.refund_fee(),
        seller_email: None,
        seller_id: None,
        buyer_email: notification.buyer_email.clone(),
        gmt_payment: notification.gmt_payment.clone(),
        signature_verified: true,
        fields,
        notification: Some(notification),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TradeEvent;
    use crate::openapi::settings::{tests::settings_pairs, validate};
    use crate::openapi::sign::{request_sign_content, verify, SignType};
    use crate::openapi::testdata;
    use crate::sign::parse_public_key;

    #[test]
    fn query_request_matches_the_vector() {
        let v = testdata::vectors();
        let (s, _) = validate(&settings_pairs()).unwrap();
        let req = query_request(&s, "ECS20240520000123", 1_716_172_200).unwrap();
        let http = &v.json["trade_query_request"]["http"];
        assert_eq!(req.method, HttpMethod::Post);
        let decode = |q: &str| -> Vec<(String, String)> {
            let mut p: Vec<_> = form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            p.sort();
            p
        };
        let (url, query) = req.url.split_once('?').unwrap();
        let (vurl, vquery) = http["url"].as_str().unwrap().split_once('?').unwrap();
        assert_eq!(url, vurl);
        assert_eq!(decode(query), decode(vquery));
        assert_eq!(
            decode(std::str::from_utf8(&req.body).unwrap()),
            decode(http["body"].as_str().unwrap())
        );
        let mut all = decode(query);
        all.extend(decode(std::str::from_utf8(&req.body).unwrap()));
        let content = request_sign_content(all.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let sign = &all.iter().find(|(k, _)| k == "sign").unwrap().1;
        let app_pub = parse_public_key(v.key("app_public")).unwrap();
        assert!(verify(content.as_bytes(), sign, &app_pub, SignType::Rsa2).unwrap());
    }

    #[test]
    fn query_answers() {
        let (s, _) = validate(&settings_pairs()).unwrap();
        let body = testdata::read("responses/query_success_utf8.json");
        let q = read_query(&s, "ECS20240520000123", &body).unwrap();
        assert!(q.found && q.signature_verified);
        assert_eq!(q.event, TradeEvent::Paid);
        assert_eq!(q.total_fee, "88.88");
        let n = q.notification.unwrap();
        assert_eq!(
            n.notify_id,
            "query:2024052022001400000000000001:TRADE_SUCCESS"
        );
        // `}` inside a string value and certificate mode's extra member change nothing.
        for file in [
            "responses/query_brace_in_string.json",
            "responses/query_cert_mode.json",
        ] {
            assert!(
                read_query(&s, "ECS20240520000123", &testdata::read(file))
                    .unwrap()
                    .found,
                "{file}"
            );
        }
        // Not there yet: found false, the order stays pending.
        let q = read_query(
            &s,
            "ECS20240520000123",
            &testdata::read("responses/query_trade_not_exist.json"),
        )
        .unwrap();
        assert!(!q.found);
        // An answer about another order, an unsigned success and a forged one are refused.
        assert!(matches!(
            read_query(&s, "OTHER", &body),
            Err(PluginError::Malformed(_))
        ));
        let text = String::from_utf8(body.clone()).unwrap();
        let unsigned = text.split(",\"sign\"").next().unwrap().to_owned() + "}";
        assert!(matches!(
            read_query(&s, "ECS20240520000123", unsigned.as_bytes()),
            Err(PluginError::BadSignature(_))
        ));
        let forged = text.replace("88.88", "0.01");
        assert!(matches!(
            read_query(&s, "ECS20240520000123", forged.as_bytes()),
            Err(PluginError::BadSignature(_))
        ));
        // An unsigned error report is passed on with its codes.
        match read_query(
            &s,
            "ECS20240520000123",
            &testdata::read("responses/error_response_unsigned.json"),
        ) {
            Err(PluginError::Gateway(g)) => assert_eq!(g.code, "40002"),
            other => panic!("{other:?}"),
        }
        // "No such trade": signed, it is verified; the same report unsigned is said to be so.
        let q = read_query(
            &s,
            "ECS20240520000123",
            &testdata::read("responses/query_trade_not_exist.json"),
        )
        .unwrap();
        assert!(!q.found && q.signature_verified);
        let unsigned = br#"{"alipay_trade_query_response":{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"x"}}"#;
        let q = read_query(&s, "ECS20240520000123", unsigned).unwrap();
        assert!(!q.found && !q.signature_verified);
    }
}
