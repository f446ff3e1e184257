//! The sans-IO shape of a flow: a step either finishes or asks the embedder to send one request,
//! carrying a continuation the next step resumes from. The continuation is the component's own
//! UTF-8 text (a tag line, then each key and value as `<byte length>:<text>`, so it crosses the WIT
//! boundary as a `string`); the host passes it back untouched, on any instance.

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
    /// An answer longer than any of the provider's (`component::MAX_ANSWER`): not read, and
    /// not a network problem.
    TooLarge(String),
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
        /// This refund's amount (refund calls; empty for a query): an answer whose refunded
        /// total is below it cannot include it.
        amount: String,
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

// Every tag is TAG_LEN bytes. Version 2: length-prefixed fields (version 1 was form-encoded,
// and its escaping and parsing back into owned strings were half of a notification's work in
// the component; docs/PERFORMANCE.md, "Round 3, session 5").
const PAYMENT: &str = "payhost-alipay/2/payment     \n";
const NOTIFICATION: &str = "payhost-alipay/2/notification\n";
const CHANNELS: &str = "payhost-alipay/2/channels    \n";
const QUERY: &str = "payhost-alipay/2/query       \n";
const REFUND: &str = "payhost-alipay/2/refund      \n";
const CLOSE: &str = "payhost-alipay/2/close       \n";
const BILL: &str = "payhost-alipay/2/bill        \n";
const TAG_LEN: usize = NOTIFICATION.len();
const _: () = {
    let tags = [PAYMENT, NOTIFICATION, CHANNELS, QUERY, REFUND, CLOSE, BILL];
    let mut i = 0;
    while i < tags.len() {
        assert!(tags[i].len() == TAG_LEN, "every tag is TAG_LEN bytes");
        i += 1;
    }
};
/// Prefix of a notification's own fields, kept in document order.
const FIELD: &str = "f:";

/// A continuation's fields as it is written: each key and value as `<byte length>:<text>`.
struct Fields(Vec<u8>);

impl Fields {
    /// `<byte length>:` of a text `len` bytes long.
    fn length(&mut self, len: usize) {
        let mut digits = [0u8; 20];
        let (mut n, mut at) = (len, digits.len());
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.0.extend_from_slice(&digits[at..]);
        self.0.push(b':');
    }

    fn text(&mut self, t: &str) {
        self.length(t.len());
        self.0.extend_from_slice(t.as_bytes());
    }

    fn pair(&mut self, k: &str, v: &str) {
        self.text(k);
        self.text(v);
    }

    /// One of a notification's own fields (its key prefixed with [`FIELD`]).
    fn field(&mut self, k: &str, v: &str) {
        self.length(FIELD.len() + k.len());
        self.0.extend_from_slice(FIELD.as_bytes());
        self.0.extend_from_slice(k.as_bytes());
        self.text(v);
    }
}

/// The pairs [`Fields`] wrote, borrowed from `bytes`; `None` for anything else.
fn read_pairs(mut bytes: &[u8]) -> Option<Vec<(&str, &str)>> {
    fn text<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
        let colon = bytes.iter().take(20).position(|&b| b == b':')?;
        let digits = &bytes[..colon];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let rest = &bytes[colon + 1..];
        if rest.len() < len {
            return None;
        }
        let (t, after) = rest.split_at(len);
        *bytes = after;
        std::str::from_utf8(t).ok()
    }
    let mut pairs = Vec::with_capacity(24);
    while !bytes.is_empty() {
        let k = text(&mut bytes)?;
        let v = text(&mut bytes)?;
        pairs.push((k, v));
    }
    Some(pairs)
}

pub(crate) fn foreign_continuation(call: &str) -> PluginError {
    PluginError::Malformed(format!(
        "{call}: the continuation is not one this component made for this flow"
    ))
}

impl Continuation {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Fields(Vec::with_capacity(512));
        // The tag's place, filled in once the variant is known.
        out.0.extend_from_slice(&[0; TAG_LEN]);
        let tag = match self {
            Continuation::Payment {
                request_id,
                total_fee,
                seller,
            } => {
                out.pair("request_id", request_id);
                out.pair("total_fee", total_fee);
                out.pair("seller", seller);
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
                        out.pair(k, v);
                    }
                }
                out.pair("paid", if n.paid { "1" } else { "0" });
                for (k, v) in &n.fields {
                    out.field(k, v);
                }
                NOTIFICATION
            }
            Continuation::Channels => CHANNELS,
            Continuation::Query { out_trade_no } => {
                out.pair("out_trade_no", out_trade_no);
                QUERY
            }
            Continuation::Refund {
                out_trade_no,
                request_no,
                query,
                total_fee,
                amount,
            } => {
                out.pair("out_trade_no", out_trade_no);
                out.pair("request_no", request_no);
                out.pair("query", if *query { "1" } else { "0" });
                out.pair("total_fee", total_fee);
                out.pair("amount", amount);
                REFUND
            }
            Continuation::Close { out_trade_no } => {
                out.pair("out_trade_no", out_trade_no);
                CLOSE
            }
            Continuation::Bill { date } => {
                out.pair("date", date);
                BILL
            }
        };
        let mut bytes = out.0;
        bytes[..TAG_LEN].copy_from_slice(tag.as_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Continuation, PluginError> {
        let bad = || foreign_continuation("resume");
        if bytes.len() < TAG_LEN {
            return Err(bad());
        }
        let (tag, rest) = bytes.split_at(TAG_LEN);
        let tag = std::str::from_utf8(tag).map_err(|_| bad())?;
        let pairs = read_pairs(rest).ok_or_else(bad)?;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| (*v).to_owned())
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
                    .filter_map(|(k, v)| {
                        k.strip_prefix(FIELD)
                            .map(|k| (k.to_owned(), (*v).to_owned()))
                    })
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
                amount: get("amount").unwrap_or_default(),
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
                amount: String::new(),
            },
            Continuation::Refund {
                out_trade_no: "ECS1".into(),
                request_no: "20240521002".into(),
                query: false,
                total_fee: "88.88".into(),
                amount: "10.00".into(),
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
                std::str::from_utf8(&encoded).is_ok(),
                "a continuation must be a valid WIT string"
            );
            assert_eq!(Continuation::decode(&encoded).unwrap(), c);
        }
        let payment = Continuation::Payment {
            request_id: "r1".into(),
            total_fee: "1.00".into(),
            seller: "2088".into(),
        }
        .encode();
        // "10:request_id" read as "90:…": longer than what is left.
        let mut wrong_length = payment.clone();
        assert_eq!(&wrong_length[TAG_LEN..TAG_LEN + 3], b"10:");
        wrong_length[TAG_LEN] = b'9';
        for bad in [
            &b""[..],
            b"x\n",
            // Version 1 (form-encoded), from a component before this one.
            b"payhost-alipay/payment/1\nrequest_id=1&total_fee=1.00&seller=2088",
            b"\xff\n",
            &payment[..payment.len() - 1],
            &wrong_length,
            b"payhost-alipay/2/payment     \n10:request_id",
            b"payhost-alipay/2/payment     \nx:request_id2:r1",
            b"payhost-alipay/2/payment     \n2:\xff\xfe",
        ] {
            assert!(matches!(
                Continuation::decode(bad),
                Err(PluginError::Malformed(_))
            ));
        }
    }
}
