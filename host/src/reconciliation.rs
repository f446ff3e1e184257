//! Reconciliation of one Beijing day: the component says where the provider's bill is
//! (`locate-bill`), the host downloads it through `net/` under the merchant's outbound policy
//! (with a larger size cap than a provider's API answer: [`MAX_BILL_BYTES`]), unpacks the zip
//! (a generic format, so the host's, not the component's), the component reads the files
//! (`parse-bill`), and the host compares the entries with its own payments and refunds of that
//! day.

use crate::domain::{clock, state};
use crate::net;
use crate::runtime::plugin_api::{BillEntry, BillEntryKind, BillFile};
use crate::service::{plugin_error_to_api, ApiError, App};
use crate::store::ledger::PaymentFilter;
use std::collections::HashMap;
use std::io::Read;

/// The largest bill download: a busy merchant's day is a few MiB zipped.
pub const MAX_BILL_BYTES: usize = 32 << 20;
/// The largest a bill may unpack to, in all (a zip bomb stops here).
pub const MAX_UNZIPPED_BYTES: u64 = 256 << 20;
/// The most files one bill archive may hold.
const MAX_FILES: usize = 64;
/// How long before its bill day a payment may have been created: an unpaid trade closes at most
/// 15 days after it was made (`pay_expire`, `time_expire`: [OPENAPI §4.1]), plus a day for the
/// Beijing day starting 8 hours before UTC's.
const CREATED_BEFORE_PAID_S: i64 = 16 * 86_400;

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Unpacks a bill: a zip's files, or the body itself when it is not a zip.
pub fn unpack(body: &[u8]) -> Result<Vec<BillFile>, String> {
    if !body.starts_with(b"PK") {
        return Ok(vec![BillFile {
            name: "bill".into(),
            content: body.to_vec(),
        }]);
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body))
        .map_err(|e| format!("the bill is not a readable zip: {e}"))?;
    if zip.len() > MAX_FILES {
        return Err(format!(
            "the bill holds {} files (at most {MAX_FILES})",
            zip.len()
        ));
    }
    let mut files = Vec::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let f = zip
            .by_index(i)
            .map_err(|e| format!("the bill's file {i} cannot be read: {e}"))?;
        if f.is_dir() {
            continue;
        }
        let name = f.name().to_owned();
        let mut content = Vec::new();
        let left = MAX_UNZIPPED_BYTES - total;
        f.take(left + 1)
            .read_to_end(&mut content)
            .map_err(|e| format!("the bill's file {name:?} cannot be unpacked: {e}"))?;
        total += content.len() as u64;
        if total > MAX_UNZIPPED_BYTES {
            return Err(format!(
                "the bill unpacks to more than {MAX_UNZIPPED_BYTES} bytes"
            ));
        }
        files.push(BillFile { name, content });
    }
    Ok(files)
}

/// How many of a day's bill lines payhost did not count are looked up among its own.
const KNOWN_ORDERS_LOOKED_UP: usize = 500;

/// One side of a comparison row.
#[derive(Debug, Clone)]
struct Line {
    kind: &'static str,
    out_trade_no: String,
    trade_no: String,
    request_no: String,
    fen: u64,
}

fn row(kind: &str, ours: Option<&Line>, theirs: Option<&Line>) -> serde_json::Value {
    let any = ours.or(theirs).expect("one side");
    let mut v = serde_json::json!({
        "kind": kind,
        "out_trade_no": any.out_trade_no,
        "trade_no": ours.map(|l| l.trade_no.as_str()).filter(|t| !t.is_empty())
            .or(theirs.map(|l| l.trade_no.as_str())).unwrap_or(""),
        "payhost_amount": ours.map(|l| yuan(l.fen)),
        "gateway_amount": theirs.map(|l| yuan(l.fen)),
    });
    if !any.request_no.is_empty() {
        v["request_no"] = serde_json::json!(any.request_no);
    }
    v
}

/// The comparison of the host's lines with the bill's.
pub struct Comparison {
    pub matched: Vec<serde_json::Value>,
    pub only_payhost: Vec<serde_json::Value>,
    pub only_gateway: Vec<serde_json::Value>,
    pub amount_mismatch: Vec<serde_json::Value>,
}

/// Matches payments by order number, refunds by request number and order (or, when the bill
/// names no number, by order number and amount).
fn compare(
    ours: Vec<Line>,
    theirs: Vec<Line>,
    issued: &std::collections::HashSet<String>,
) -> Comparison {
    let mut c = Comparison {
        matched: Vec::new(),
        only_payhost: Vec::new(),
        only_gateway: Vec::new(),
        amount_mismatch: Vec::new(),
    };
    let key = |l: &Line| -> (String, String) {
        if l.kind == "refund" && !l.request_no.is_empty() {
            (format!("refund:{}", l.request_no), String::new())
        } else {
            (format!("{}:{}", l.kind, l.out_trade_no), String::new())
        }
    };
    let mut mine: HashMap<(String, String), Vec<Line>> = HashMap::new();
    for l in ours {
        mine.entry(key(&l)).or_default().push(l);
    }
    // The bill's numbered refunds first: an unnumbered one (older layouts) takes whatever refund
    // of its order and amount is left, never one a numbered line of the same bill names.
    let mut theirs = theirs;
    theirs.sort_by_key(|t| t.kind == "refund" && t.request_no.is_empty());
    for t in theirs {
        let mut k = key(&t);
        // A refund line without its number: the order's refund of the same amount.
        if t.kind == "refund" && t.request_no.is_empty() {
            let found = mine
                .iter()
                .find(|(_, v)| {
                    v.iter().any(|l| {
                        l.kind == "refund" && l.out_trade_no == t.out_trade_no && l.fen == t.fen
                    })
                })
                .map(|(k, _)| k.clone());
            if let Some(f) = found {
                k = f;
            }
        }
        // A refund payhost learned of from a trade's refunded total (a query, a back-office
        // refund) has a number made here (`gateway-…`): the bill's refund of that order and
        // amount is it.
        if t.kind == "refund"
            && !issued.contains(&t.request_no)
            && mine.get(&k).is_none_or(|v| v.is_empty())
        {
            let unnamed = mine
                .iter()
                .find(|(_, v)| {
                    v.iter().any(|l| {
                        l.kind == "refund"
                            && l.request_no.starts_with(crate::domain::refunds::UNNAMED)
                            && l.out_trade_no == t.out_trade_no
                            && l.fen == t.fen
                    })
                })
                .map(|(k, _)| k.clone());
            if let Some(f) = unnamed {
                k = f;
            }
        }
        // Request numbers are unique per trade, not per merchant (another system may number
        // two trades' refunds both "1"): a bill refund that names its order is only that
        // order's refund, never another's under the same number.
        let ours = mine.get_mut(&k).and_then(|v| {
            let same_order = |l: &Line| l.out_trade_no == t.out_trade_no;
            let i = if t.kind == "refund" && !t.out_trade_no.is_empty() {
                v.iter()
                    .position(|l| same_order(l) && l.fen == t.fen)
                    .or_else(|| v.iter().position(same_order))
            } else {
                v.iter()
                    .position(|l| l.fen == t.fen)
                    .or((!v.is_empty()).then_some(0))
            };
            i.map(|i| v.remove(i))
        });
        match ours {
            Some(o) if o.fen == t.fen => c.matched.push(row(t.kind, Some(&o), Some(&t))),
            Some(o) => c.amount_mismatch.push(row(t.kind, Some(&o), Some(&t))),
            None => c.only_gateway.push(row(t.kind, None, Some(&t))),
        }
    }
    let mut rest: Vec<Line> = mine.into_values().flatten().collect();
    rest.sort_by(|a, b| (a.kind, &a.out_trade_no).cmp(&(b.kind, &b.out_trade_no)));
    for o in rest {
        c.only_payhost.push(row(o.kind, Some(&o), None));
    }
    c
}

/// The component's refusal to locate a bill as an API error: a merchant whose API family has no
/// bill (the legacy `mapi`) gets `409 not_supported` naming `api`, never a 500.
fn bill_refusal(e: crate::runtime::plugin_api::PluginError) -> ApiError {
    crate::service::not_offered_by_api_family(&e).unwrap_or_else(|| plugin_error_to_api(e))
}

/// A bill's day (Beijing time) from `date`: a date, today or before.
fn bill_day(date: &str) -> Result<i64, ApiError> {
    let bad = |m: &str| ApiError::field(400, "invalid_request", "date", format!("date: {m}"));
    let day =
        clock::parse_date(date).ok_or_else(|| bad("must be a date YYYY-MM-DD (Beijing time)"))?;
    if day > clock::beijing_day(clock::now_unix()) {
        return Err(bad(
            "is in the future (Beijing time); a bill exists only for a day up to today",
        ));
    }
    Ok(day)
}

impl App {
    /// `GET /v1/merchants/{id}/reconciliation?date=`: see the module documentation.
    pub async fn reconcile(
        &self,
        merchant_id: &str,
        date: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let day = bill_day(date)?;
        let merchant = self.merchant(merchant_id).await?;
        let plugin = self.plugin_for(&merchant)?;
        let policy = self.merchant_policy(&merchant);
        let mut session = plugin.session().await?;
        let location = session
            .locate_bill(&policy, &merchant.settings, date)
            .await?
            .map_err(bill_refusal)?;
        let entries: Vec<BillEntry> = if location.empty {
            Vec::new()
        } else {
            let answer = self
                .plugins
                .net()
                .send(
                    &policy,
                    &net::Request {
                        method: net::Method::Get,
                        url: location.url.clone(),
                        headers: Vec::new(),
                        body: Vec::new(),
                    },
                    net::Limits {
                        connect_timeout: std::time::Duration::from_secs(10),
                        answer_timeout: std::time::Duration::from_secs(120),
                        max_response_bytes: MAX_BILL_BYTES,
                        truncate: false,
                    },
                )
                .await
                .map_err(|e| match e {
                    net::SendError::Timeout(m) => {
                        ApiError::new(504, "gateway_timeout", format!("the bill download: {m}"))
                    }
                    net::SendError::Refused(m) => ApiError::new(
                        502,
                        "outbound_refused",
                        format!("the bill's URL is outside this merchant's outbound policy: {m}"),
                    ),
                    net::SendError::Failed(m) => ApiError::new(
                        502,
                        "gateway_unreachable",
                        format!("the bill download failed: {m}"),
                    ),
                })?;
            if !(200..300).contains(&answer.status) {
                return Err(ApiError::new(
                    502,
                    "gateway_error",
                    format!("the bill download answered HTTP {}", answer.status),
                ));
            }
            let files = unpack(&answer.body).map_err(|m| {
                crate::service::upstream_error(
                    502,
                    "gateway_malformed",
                    "the bill could not be unpacked",
                    &m,
                )
            })?;
            let unpacked: usize = files.iter().map(|f| f.content.len()).sum();
            session
                .parse_bill(&files)
                .await
                .map_err(|e| match e {
                    // The one limit a big day meets: said with what to change.
                    crate::runtime::CallError::Memory(mib) => ApiError::new(
                        502,
                        "plugin_failed",
                        format!(
                            "the day's bill ({unpacked} bytes unpacked) is more than the component can read within its memory limit of {mib} MiB: raise [limits] memory_mib in its plugin.toml (Alipay's component needs about 1 MiB per 3,000 lines of the bill) and restart"
                        ),
                    ),
                    e => e.into(),
                })?
                .map_err(plugin_error_to_api)?
        };
        let ours = self.day_of(merchant_id, day).await?;
        let fen = |a: &str| crate::service::amount_minor(a).unwrap_or(0);
        let theirs: Vec<Line> = entries
            .iter()
            .filter_map(|e| {
                let kind = match e.kind {
                    BillEntryKind::Payment => "payment",
                    BillEntryKind::Refund => "refund",
                    BillEntryKind::Other => return None,
                };
                Some(Line {
                    kind,
                    out_trade_no: e.out_trade_no.clone(),
                    trade_no: e.trade_no.clone(),
                    request_no: e.request_no.clone(),
                    fen: fen(&e.amount),
                })
            })
            .collect();
        let sum = |v: &[Line], k: &str| yuan(v.iter().filter(|l| l.kind == k).map(|l| l.fen).sum());
        let totals = serde_json::json!({
            "payhost_paid": sum(&ours, "payment"),
            "payhost_refunded": sum(&ours, "refund"),
            "gateway_paid": sum(&theirs, "payment"),
            "gateway_refunded": sum(&theirs, "refund"),
            "other_lines": entries.iter().filter(|e| e.kind == BillEntryKind::Other).count(),
        });
        // The bill's refund numbers payhost issued itself, for the orders where payhost also has
        // a refund it numbered itself: such a bill line is that refund of payhost's (perhaps still
        // pending here), never the self-numbered one.
        let mut issued = std::collections::HashSet::new();
        let unnamed_orders: std::collections::HashSet<&str> = ours
            .iter()
            .filter(|l| {
                l.kind == "refund" && l.request_no.starts_with(crate::domain::refunds::UNNAMED)
            })
            .map(|l| l.out_trade_no.as_str())
            .collect();
        for order in unnamed_orders {
            for r in self
                .store
                .refunds_for(merchant_id, order)
                .await
                .map_err(ApiError::internal)?
            {
                issued.insert(r.request_no);
            }
        }
        let mut c = compare(ours, theirs, &issued);
        self.known_orders(merchant_id, date, &mut c.only_gateway)
            .await?;
        Ok(serde_json::json!({
            "date": date,
            "matched": c.matched,
            "only_payhost": c.only_payhost,
            "only_alipay": c.only_gateway,
            "only_gateway": c.only_gateway,
            "amount_mismatch": c.amount_mismatch,
            "bill_empty": location.empty,
            "totals": totals,
        }))
    }

    /// Of the bill's lines payhost did not count that day, those it has: a payment's order or a
    /// refund under the bill's number, with its status there (`payhost_status`, `payhost_review`)
    /// and the Beijing day payhost counts it on (`payhost_day`: a payment paid, or a refund
    /// settled, on another day; a refund whose answer came after midnight). So a payment held
    /// for review, or a line counted on another day, reads as such and not as unknown. At most
    /// [`KNOWN_ORDERS_LOOKED_UP`] are looked up.
    async fn known_orders(
        &self,
        merchant_id: &str,
        date: &str,
        only_gateway: &mut [serde_json::Value],
    ) -> Result<(), ApiError> {
        // The day payhost counts a line on, when it counts it and not on this one.
        let day_of = |stored: &str| {
            clock::shown_utc(stored)
                .and_then(|t| clock::parse_rfc3339(&t))
                .map(|t| clock::format_date(clock::beijing_day(t)))
                .filter(|day| day != date)
        };
        for r in only_gateway.iter_mut().take(KNOWN_ORDERS_LOOKED_UP) {
            let Some(no) = r["out_trade_no"].as_str().filter(|n| !n.is_empty()) else {
                continue;
            };
            let no = no.to_owned();
            if r["kind"] == "payment" {
                if let Some(p) = self
                    .store
                    .payment(merchant_id, &no)
                    .await
                    .map_err(ApiError::internal)?
                {
                    r["payhost_status"] = serde_json::json!(p.status);
                    if let Some(review) = p.review {
                        r["payhost_review"] = serde_json::json!(review);
                    }
                    if let Some(day) = p
                        .paid_at
                        .as_deref()
                        .filter(|_| state::is_paid(&p.status))
                        .and_then(day_of)
                    {
                        r["payhost_day"] = serde_json::json!(day);
                    }
                }
                continue;
            }
            let Some(request_no) = r["request_no"].as_str().filter(|n| !n.is_empty()) else {
                continue;
            };
            let request_no = request_no.to_owned();
            let refunds = self
                .store
                .refunds_for(merchant_id, &no)
                .await
                .map_err(ApiError::internal)?;
            if let Some(refund) = refunds.iter().find(|x| x.request_no == request_no) {
                r["payhost_status"] = serde_json::json!(refund.status);
                if let Some(day) = refund
                    .completed_at
                    .as_deref()
                    .filter(|_| refund.status == crate::domain::refunds::SUCCESS)
                    .and_then(day_of)
                {
                    r["payhost_day"] = serde_json::json!(day);
                }
            } else if let Some(p) = self
                .store
                .payment(merchant_id, &no)
                .await
                .map_err(ApiError::internal)?
            {
                // A refund payhost never heard of, of an order it has (made in Alipay's
                // portal): the order's status, so the page links it and says to sync it.
                r["payhost_order_status"] = serde_json::json!(p.status);
            }
        }
        Ok(())
    }

    /// The host's paid payments (by when they were paid, else created) and succeeded refunds of
    /// the Beijing day starting at `start`.
    /// payhost's own lines of a Beijing day: payments by the day they were paid, refunds by the
    /// day they were made.
    async fn day_of(&self, merchant_id: &str, day: i64) -> Result<Vec<Line>, ApiError> {
        let start = clock::beijing_day_start(day);
        let (from, to) = (
            crate::store::format_unix(start.max(0) as u64),
            crate::store::format_unix((start + 86_400).max(0) as u64),
        );
        self.day_lines(merchant_id, start, &from, &to).await
    }

    /// payhost's own totals of a Beijing day, for a merchant whose provider has no bill to
    /// download (the legacy API): what to compare by hand with the bill from Alipay's back
    /// office. Paid and refunded amounts and how many of each.
    pub async fn day_totals(
        &self,
        merchant_id: &str,
        date: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let day = bill_day(date)?;
        self.merchant(merchant_id).await?;
        let ours = self.day_of(merchant_id, day).await?;
        let (mut paid, mut refunded) = ((0u64, 0usize), (0u64, 0usize));
        for l in &ours {
            let sum = if l.kind == "payment" {
                &mut paid
            } else {
                &mut refunded
            };
            sum.0 += l.fen;
            sum.1 += 1;
        }
        Ok(serde_json::json!({
            "payhost_paid": yuan(paid.0),
            "payhost_refunded": yuan(refunded.0),
            "payments": paid.1,
            "refunds": refunded.1,
        }))
    }

    async fn day_lines(
        &self,
        merchant_id: &str,
        start: i64,
        from: &str,
        to: &str,
    ) -> Result<Vec<Line>, ApiError> {
        let mut lines = Vec::new();
        // Paid that day may have been created up to a pay window before.
        let mut f = PaymentFilter {
            merchant: Some(merchant_id.to_owned()),
            from: Some(crate::store::format_unix(
                (start - CREATED_BEFORE_PAID_S).max(0) as u64,
            )),
            to: Some(to.to_owned()),
            limit: 1000,
            ..PaymentFilter::default()
        };
        loop {
            let rows = self
                .store
                .list_payments(&f)
                .await
                .map_err(ApiError::internal)?;
            for r in &rows {
                let p = &r.payment;
                if !state::is_paid(&p.status) {
                    continue;
                }
                let when = crate::ledger::paid_at_utc(p).unwrap_or_else(|| p.created_at.clone());
                if when.as_str() < from || when.as_str() >= to {
                    continue;
                }
                lines.push(Line {
                    kind: "payment",
                    out_trade_no: p.out_trade_no.clone(),
                    trade_no: p.trade_no.clone().unwrap_or_default(),
                    request_no: String::new(),
                    fen: p.total_fen,
                });
            }
            match rows.last() {
                Some(last) if rows.len() == f.limit as usize => {
                    f.cursor = Some(crate::store::ledger::Cursor::of(&last.payment))
                }
                _ => break,
            }
        }
        for r in self
            .store
            .refunds_completed(merchant_id, from, to)
            .await
            .map_err(ApiError::internal)?
        {
            lines.push(Line {
                kind: "refund",
                out_trade_no: r.out_trade_no.clone(),
                trade_no: String::new(),
                request_no: r.request_no.clone(),
                fen: r.amount_fen,
            });
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(kind: &'static str, no: &str, req: &str, fen: u64) -> Line {
        Line {
            kind,
            out_trade_no: no.into(),
            trade_no: String::new(),
            request_no: req.into(),
            fen,
        }
    }

    #[test]
    fn one_planted_mismatch_is_found() {
        let ours = vec![
            l("payment", "A", "", 100),
            l("payment", "B", "", 200),
            l("payment", "C", "", 300),
            l("refund", "A", "2024050100000001", 50),
        ];
        let theirs = vec![
            l("payment", "A", "", 100),
            l("payment", "B", "", 201),
            l("payment", "D", "", 400),
            l("refund", "A", "", 50),
        ];
        let c = compare(ours, theirs, &Default::default());
        assert_eq!(c.matched.len(), 2, "{:?}", c.matched);
        assert_eq!(c.amount_mismatch.len(), 1);
        assert_eq!(c.amount_mismatch[0]["out_trade_no"], "B");
        assert_eq!(c.amount_mismatch[0]["payhost_amount"], "2.00");
        assert_eq!(c.amount_mismatch[0]["gateway_amount"], "2.01");
        assert_eq!(c.only_gateway.len(), 1);
        assert_eq!(c.only_gateway[0]["out_trade_no"], "D");
        assert_eq!(c.only_payhost.len(), 1);
        assert_eq!(c.only_payhost[0]["out_trade_no"], "C");
    }

    /// A refund recorded from a trade's refunded total has a number made here: it matches the
    /// bill's refund of the same order and amount instead of being listed on both sides.
    #[test]
    fn a_refund_payhost_numbered_itself_matches_the_bills() {
        let ours = vec![
            l("payment", "P", "", 25_600),
            l("refund", "P", "gateway-1796484431157", 25_600),
            l("refund", "Q", "gateway-1796484431158", 100),
        ];
        let theirs = vec![
            l("payment", "P", "", 25_600),
            l("refund", "P", "portalP", 25_600),
            l("refund", "Q", "portalQ", 200),
        ];
        let c = compare(ours.clone(), theirs.clone(), &Default::default());
        assert_eq!(c.matched.len(), 2, "{:?}", c.matched);
        // Another amount is not it: both sides say so.
        assert_eq!(c.only_gateway.len(), 1, "{:?}", c.only_gateway);
        assert_eq!(c.only_payhost.len(), 1, "{:?}", c.only_payhost);
        // A bill refund payhost numbered (one still pending here) is that refund, never the
        // self-numbered one.
        let issued = ["portalP".to_owned()].into_iter().collect();
        let c = compare(ours, theirs, &issued);
        assert_eq!(c.matched.len(), 1, "{:?}", c.matched);
        assert_eq!(c.only_gateway.len(), 2, "{:?}", c.only_gateway);
    }

    /// Two trades' refunds under the same number (another system's `out_request_no` "1"):
    /// each bill refund is its own order's, never the other's.
    #[test]
    fn refunds_of_two_trades_under_one_number_match_their_own_orders() {
        let ours = vec![l("refund", "or1", "R1", 200), l("refund", "or2", "R1", 200)];
        // The bill's lines carry their trade numbers: a match shows the bill's.
        let billed = |no: &str| Line {
            trade_no: format!("T-{no}"),
            ..l("refund", no, "R1", 200)
        };
        let theirs = vec![billed("or2"), billed("or1")];
        let c = compare(ours, theirs, &Default::default());
        assert_eq!(c.matched.len(), 2, "{:?}", c.matched);
        for m in &c.matched {
            assert_eq!(
                m["trade_no"].as_str().unwrap(),
                format!("T-{}", m["out_trade_no"].as_str().unwrap()),
                "{m}"
            );
        }
        assert!(c.only_gateway.is_empty() && c.only_payhost.is_empty());
        // Only the other order's refund under that number on the bill: one on each side, not
        // a match across two orders.
        let c = compare(
            vec![l("refund", "or1", "R1", 200)],
            vec![billed("or2")],
            &Default::default(),
        );
        assert!(c.matched.is_empty(), "{:?}", c.matched);
        assert_eq!(c.only_gateway[0]["out_trade_no"], "or2");
        assert_eq!(c.only_payhost[0]["out_trade_no"], "or1");
    }

    /// An unnumbered bill refund before a numbered one of the same order and amount: the
    /// numbered one is payhost's refund, and the unnumbered one is listed as the bill's alone.
    #[test]
    fn an_unnumbered_bill_refund_never_takes_a_refund_the_bill_names() {
        let ours = vec![l("payment", "R2", "", 500), l("refund", "R2", "A", 300)];
        for theirs in [
            vec![l("refund", "R2", "", 300), l("refund", "R2", "A", 300)],
            vec![l("refund", "R2", "A", 300), l("refund", "R2", "", 300)],
        ] {
            let c = compare(ours.clone(), theirs, &Default::default());
            assert_eq!(c.matched.len(), 1, "{:?}", c.matched);
            assert_eq!(c.matched[0]["request_no"], "A");
            assert_eq!(c.only_gateway.len(), 1, "{:?}", c.only_gateway);
            assert!(
                c.only_gateway[0].get("request_no").is_none(),
                "{:?}",
                c.only_gateway
            );
            assert_eq!(c.only_payhost.len(), 1, "the payment: {:?}", c.only_payhost);
        }
    }

    #[test]
    fn a_plain_body_is_one_file_and_a_zip_is_unpacked() {
        assert_eq!(unpack(b"a,b\n").unwrap()[0].content, b"a,b\n");
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file::<_, ()>("x.csv", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"hello").unwrap();
            w.finish().unwrap();
        }
        let files = unpack(buf.get_ref()).unwrap();
        assert_eq!(
            (files[0].name.as_str(), files[0].content.as_slice()),
            ("x.csv", &b"hello"[..])
        );
        assert!(unpack(b"PK\x03\x04garbage").is_err());
    }
}
