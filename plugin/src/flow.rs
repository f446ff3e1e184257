//! The sans-IO shape of a flow: a step either finishes or asks the embedder to send one request,
//! carrying a continuation the next step resumes from. The continuation is the component's own
//! ASCII text (a tag line and form-encoded fields, so it crosses the WIT boundary as a `string`);
//! the host passes it back untouched, on any instance.

use crate::model::{HttpMethod, Notification, PluginError};

/// One request for the embedder to send. The embedder adds `Content-Length` and `Host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The whole answer to an [`HttpRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why the embedder has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendFailure {
    Timeout(String),
    Refused(String),
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub request: HttpRequest,
    pub continuation: Vec<u8>,
}

/// A flow's next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<T> {
    Send(Pending),
    Done(T),
}

/// What a flow must remember between its request and the answer.
/// One lives per flow, briefly: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Continuation {
    Payment {
        request_id: String,
        total_fee: String,
        seller: String,
    },
    Notification(Box<Notification>),
    Channels,
    /// `single_trade_query` for this order.
    Query {
        out_trade_no: String,
    },
    /// A refund call (`alipay.trade.refund`) or a refund query
    /// (`alipay.trade.fastpay.refund.query`, `query` true) for this order and request number.
    Refund {
        out_trade_no: String,
        request_no: String,
        query: bool,
        /// What the buyer paid (refund calls; empty for a query).
        total_fee: String,
    },
    /// `alipay.trade.close` for this order.
    Close {
        out_trade_no: String,
    },
    /// `alipay.data.dataservice.bill.downloadurl.query` for this day.
    Bill {
        date: String,
    },
}

const PAYMENT: &str = "payhost-alipay/payment/1\n";
const NOTIFICATION: &str = "payhost-alipay/notification/1\n";
const CHANNELS: &str = "payhost-alipay/channels/1\n";
const QUERY: &str = "payhost-alipay/query/1\n";
const REFUND: &str = "payhost-alipay/refund/1\n";
const CLOSE: &str = "payhost-alipay/close/1\n";
const BILL: &str = "payhost-alipay/bill/1\n";
/// Prefix of a notification's own fields, kept in document order.
const FIELD: &str = "f:";

pub(crate) fn foreign_continuation(call: &str) -> PluginError {
    PluginError::Malformed(format!(
        "{call}: the continuation is not one this component made for this flow"
    ))
}

impl Continuation {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let tag = match self {
            Continuation::Payment {
                request_id,
                total_fee,
                seller,
            } => {
                out.append_pair("request_id", request_id);
                out.append_pair("total_fee", total_fee);
                out.append_pair("seller", seller);
                PAYMENT
            }
            Continuation::Notification(n) => {
                let scalars = [
                    ("out_trade_no", Some(&n.out_trade_no)),
                    ("trade_no", Some(&n.trade_no)),
                    ("trade_status", Some(&n.trade_status)),
                    ("total_fee", Some(&n.total_fee)),
                    ("seller_email", n.seller_email.as_ref()),
                    ("seller_id", n.seller_id.as_ref()),
                    ("buyer_email", n.buyer_email.as_ref()),
                    ("buyer_id", n.buyer_id.as_ref()),
                    ("notify_id", Some(&n.notify_id)),
                    ("notify_time", n.notify_time.as_ref()),
                    ("gmt_create", n.gmt_create.as_ref()),
                    ("gmt_payment", n.gmt_payment.as_ref()),
                    ("gmt_close", n.gmt_close.as_ref()),
                    ("reply", Some(&n.reply)),
                ];
                for (k, v) in scalars {
                    if let Some(v) = v {
                        out.append_pair(k, v);
                    }
                }
                out.append_pair("paid", if n.paid { "1" } else { "0" });
                for (k, v) in &n.fields {
                    out.append_pair(&format!("{FIELD}{k}"), v);
                }
                NOTIFICATION
            }
            Continuation::Channels => CHANNELS,
            Continuation::Query { out_trade_no } => {
                out.append_pair("out_trade_no", out_trade_no);
                QUERY
            }
            Continuation::Refund {
                out_trade_no,
                request_no,
                query,
                total_fee,
            } => {
                out.append_pair("out_trade_no", out_trade_no);
                out.append_pair("request_no", request_no);
                out.append_pair("query", if *query { "1" } else { "0" });
                out.append_pair("total_fee", total_fee);
                REFUND
            }
            Continuation::Close { out_trade_no } => {
                out.append_pair("out_trade_no", out_trade_no);
                CLOSE
            }
            Continuation::Bill { date } => {
                out.append_pair("date", date);
                BILL
            }
        };
        let mut bytes = tag.as_bytes().to_vec();
        bytes.extend_from_slice(out.finish().as_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Continuation, PluginError> {
        let bad = || foreign_continuation("resume");
        let split = bytes.iter().position(|&b| b == b'\n').ok_or_else(bad)? + 1;
        let (tag, rest) = bytes.split_at(split);
        let tag = std::str::from_utf8(tag).map_err(|_| bad())?;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(rest).into_owned().collect();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let need = |k: &str| get(k).ok_or_else(bad);
        match tag {
            PAYMENT => Ok(Continuation::Payment {
                request_id: need("request_id")?,
                total_fee: need("total_fee")?,
                seller: need("seller")?,
            }),
            NOTIFICATION => Ok(Continuation::Notification(Box::new(Notification {
                out_trade_no: need("out_trade_no")?,
                trade_no: need("trade_no")?,
                trade_status: need("trade_status")?,
                total_fee: need("total_fee")?,
                seller_email: get("seller_email"),
                seller_id: get("seller_id"),
                buyer_email: get("buyer_email"),
                buyer_id: get("buyer_id"),
                notify_id: need("notify_id")?,
                notify_time: get("notify_time"),
                gmt_create: get("gmt_create"),
                gmt_payment: get("gmt_payment"),
                gmt_close: get("gmt_close"),
                paid: need("paid")? == "1",
                fields: pairs
                    .iter()
                    .filter_map(|(k, v)| k.strip_prefix(FIELD).map(|k| (k.to_owned(), v.clone())))
                    .collect(),
                reply: need("reply")?,
            }))),
            CHANNELS => Ok(Continuation::Channels),
            QUERY => Ok(Continuation::Query {
                out_trade_no: need("out_trade_no")?,
            }),
            REFUND => Ok(Continuation::Refund {
                out_trade_no: need("out_trade_no")?,
                request_no: need("request_no")?,
                query: need("query")? == "1",
                total_fee: need("total_fee")?,
            }),
            CLOSE => Ok(Continuation::Close {
                out_trade_no: need("out_trade_no")?,
            }),
            BILL => Ok(Continuation::Bill {
                date: need("date")?,
            }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_round_trip_and_foreign_bytes_are_refused() {
        let n = Notification {
            out_trade_no: "A&1=2".into(),
            trade_no: "2014".into(),
            trade_status: "TRADE_SUCCESS".into(),
            total_fee: "0.01".into(),
            seller_email: Some("s@example.com".into()),
            notify_id: "n1".into(),
            paid: true,
            fields: vec![
                ("payment_type".into(), "1".into()),
                ("subject".into(), "测试 f:x".into()),
                ("payment_type".into(), "2".into()),
            ],
            reply: "success".into(),
            ..Default::default()
        };
        for c in [
            Continuation::Notification(Box::new(n)),
            Continuation::Payment {
                request_id: "r1".into(),
                total_fee: "1.00".into(),
                seller: "2088".into(),
            },
            Continuation::Channels,
            Continuation::Query {
                out_trade_no: "20140101000001".into(),
            },
            Continuation::Refund {
                out_trade_no: "ECS1".into(),
                request_no: "20240521001".into(),
                query: true,
                total_fee: String::new(),
            },
            Continuation::Close {
                out_trade_no: "ECS1".into(),
            },
            Continuation::Bill {
                date: "2024-05-20".into(),
            },
        ] {
            let encoded = c.encode();
            assert!(
                encoded.is_ascii(),
                "a continuation must be a valid WIT string"
            );
            assert_eq!(Continuation::decode(&encoded).unwrap(), c);
        }
        for bad in [
            &b""[..],
            b"x\n",
            b"payhost-alipay/payment/1\nrequest_id=1",
            b"\xff\n",
        ] {
            assert!(matches!(
                Continuation::decode(bad),
                Err(PluginError::Malformed(_))
            ));
        }
    }
}
