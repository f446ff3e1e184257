//! The JSON inside the pay-channel response's `<result>` ([WAP §9]).
//!
//! `{"payChannleResult":{"supportedPayChannelList":{"supportTopPayChannel":[{"name","cashierCode",
//! "supportSecPayChannelList":{"supportSecPayChannel":[…]}}]}, "lastestPayChannel"?:{…}}}`
//! (Alipay's own misspelling). A list with one entry may arrive as a bare object.

use crate::model::{ChannelList, PayChannel, PluginError};
use serde_json::Value;

fn as_list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => Vec::new(),
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

pub fn parse(json: &str) -> Result<ChannelList, PluginError> {
    let root: Value = serde_json::from_str(json)
        .map_err(|e| PluginError::Malformed(format!("pay-channel result is not JSON: {e}")))?;
    let result = root
        .get("payChannleResult")
        .or_else(|| root.get("payChannelResult"))
        .ok_or_else(|| {
            PluginError::Malformed("pay-channel result has no payChannleResult".into())
        })?;
    let mut out = ChannelList::default();
    let top = result
        .get("supportedPayChannelList")
        .and_then(|l| l.get("supportTopPayChannel"));
    for t in as_list(top) {
        let code = text(t, "cashierCode");
        out.channels.push(PayChannel {
            name: text(t, "name"),
            cashier_code: code.clone(),
            parent: None,
        });
        let second = t
            .get("supportSecPayChannelList")
            .and_then(|l| l.get("supportSecPayChannel"));
        for s in as_list(second) {
            out.channels.push(PayChannel {
                name: text(s, "name"),
                cashier_code: text(s, "cashierCode"),
                parent: Some(code.clone()),
            });
        }
    }
    for key in ["lastestPayChannel", "latestPayChannel"] {
        if let Some(last) = result.get(key) {
            let code = text(last, "cashierCode");
            if !code.is_empty() {
                out.last_used = Some(code);
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_sample_and_single_object_lists() {
        let sample = r#"{"payChannleResult":{"supportedPayChannelList":{"supportTopPayChannel":[{"name":"信用卡快捷支付","cashierCode":"CREDITCARD","supportSecPayChannelList":{"supportSecPayChannel":[{"name":"建行","cashierCode":"CREDITCARD_CCB"},{"name":"工行","cashierCode":"CREDITCARD_ICBC"}]}},{"name":"借记卡快捷支付","cashierCode":"DEBITCARD","supportSecPayChannelList":{"supportSecPayChannel":{"name":"工行","cashierCode":"DEBITCARD_ICBC"}}}]},"lastestPayChannel":{"name":"工行","cashierCode":"DEBITCARD_ICBC"}}}"#;
        let list = parse(sample).unwrap();
        let codes: Vec<_> = list
            .channels
            .iter()
            .map(|c| c.cashier_code.as_str())
            .collect();
        assert_eq!(
            codes,
            [
                "CREDITCARD",
                "CREDITCARD_CCB",
                "CREDITCARD_ICBC",
                "DEBITCARD",
                "DEBITCARD_ICBC"
            ]
        );
        assert_eq!(list.channels[1].parent.as_deref(), Some("CREDITCARD"));
        assert_eq!(list.channels[0].name, "信用卡快捷支付");
        assert_eq!(list.last_used.as_deref(), Some("DEBITCARD_ICBC"));
        assert!(parse("{}").is_err());
        assert!(parse("not json").is_err());
        // serde_json's recursion limit refuses absurd nesting.
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse(&deep).is_err());
    }
}
