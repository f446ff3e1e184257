//! The back office's ledger, independent of HTTP: the filters of `GET /v1/payments` checked
//! (every bad one named), a payment as the ledger shows it, its timeline, and the CSV export's
//! rows. The HTTP layer only translates.

use crate::domain::amount::Amount;
use crate::domain::{clock, state};
use crate::service::{ApiError, App};
use crate::store::ledger::{Cursor, LedgerPayment, PaymentFilter, MAX_PAGE};
use crate::store::Payment;

/// The `status` filter of payments with a refund not yet confirmed (whatever their own status).
pub const REFUND_PENDING: &str = "REFUND_PENDING";

/// The page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;
/// Rows read per batch while the CSV streams.
pub const CSV_BATCH: u32 = 1000;

pub(crate) fn bad(field: &str, rule: &str) -> ApiError {
    ApiError::field(400, "invalid_request", field, format!("{field}: {rule}"))
}

/// An instant or a Beijing date; `end` makes a date mean the start of the next day.
pub(crate) fn parse_time(field: &str, v: &str, end: bool) -> Result<String, ApiError> {
    if let Some(days) = clock::parse_date(v) {
        let day = if end { days + 1 } else { days };
        return Ok(crate::store::format_unix(
            clock::beijing_day_start(day).max(0) as u64,
        ));
    }
    // An unencoded `+` of a query string reads as a space: `…T08:00:00+08:00` typed into a URL
    // arrives as `…T08:00:00 08:00`, and means the offset.
    let offset_restored = v
        .rsplit_once(' ')
        .filter(|(_, off)| off.len() == 5 && off.as_bytes()[2] == b':')
        .map(|(t, off)| format!("{t}+{off}"));
    match clock::parse_rfc3339(v)
        .or_else(|| offset_restored.as_deref().and_then(clock::parse_rfc3339))
    {
        Some(t) if t >= 0 => Ok(crate::store::format_unix(t as u64)),
        _ => Err(bad(
            field,
            "must be a date YYYY-MM-DD (Beijing time) or an RFC 3339 time such as 2024-05-01T08:00:00Z",
        )),
    }
}

/// A list's query as pairs, each value trimmed: a name given twice is refused (named), an empty
/// value is no filter (a form's empty field).
pub(crate) fn filter_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut pairs = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !seen.insert(k.to_string()) {
            return Err(bad(&k, "given more than once"));
        }
        let v = v.trim();
        if !v.is_empty() {
            pairs.push((k.into_owned(), v.to_owned()));
        }
    }
    Ok(pairs)
}

/// `merchant`: a merchant id.
pub(crate) fn merchant_value(v: String) -> Result<String, ApiError> {
    if crate::config::valid_merchant_id(&v) {
        Ok(v)
    } else {
        Err(bad("merchant", "1 to 64 letters, digits, '_' or '-'"))
    }
}

/// `q`: a search text of at most 128 characters, without control characters (a NUL matched
/// every row).
pub(crate) fn q_value(v: String) -> Result<String, ApiError> {
    if v.chars().count() > 128 {
        Err(bad("q", "at most 128 characters"))
    } else if v.chars().any(char::is_control) {
        Err(bad("q", "must not contain control characters"))
    } else {
        Ok(v)
    }
}

/// The end of a list's known filters: its paging, which a CSV (every row) does not take.
pub(crate) const PAGING: &str = ", limit, cursor";

/// `limit`: a page size, 1 to [`MAX_PAGE`].
pub(crate) fn limit_value(v: &str) -> Result<u32, ApiError> {
    match v.parse::<u32>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(bad("limit", "must be a whole number from 1 to 200")),
    }
}

/// The filters of `GET /v1/payments` (and `/v1/payments.csv`) from the query string. `own` is a
/// merchant token's merchant: it sees only its own (another `merchant` is a 403).
pub fn parse_filter(query: Option<&str>, own: Option<&str>) -> Result<PaymentFilter, ApiError> {
    let mut f = PaymentFilter {
        limit: DEFAULT_PAGE,
        ..PaymentFilter::default()
    };
    for (k, v) in filter_pairs(query)? {
        match k.as_str() {
            "merchant" => f.merchant = Some(merchant_value(v)?),
            "status" => {
                let s = v.to_ascii_uppercase();
                if s == REFUND_PENDING {
                    f.refund_pending = true;
                } else if !state::STATUSES.contains(&s.as_str()) {
                    return Err(bad(
                        "status",
                        &format!(
                            "must be one of {}, or {REFUND_PENDING} (a refund not yet confirmed)",
                            state::STATUSES.join(", ")
                        ),
                    ));
                } else {
                    f.status = Some(s);
                }
            }
            "from" => f.from = Some(parse_time("from", &v, false)?),
            "to" => f.to = Some(parse_time("to", &v, true)?),
            "q" => f.q = Some(q_value(v)?),
            "min_amount" | "max_amount" => {
                let a = Amount::parse(&v).map_err(|e| bad(&k, &e.to_string()))?;
                if k == "min_amount" {
                    f.min_fen = Some(a.minor());
                } else {
                    f.max_fen = Some(a.minor());
                }
            }
            "review" => {
                f.review = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(bad("review", "must be 1 (only payments held for review) or 0")),
                }
            }
            "limit" => f.limit = limit_value(&v)?,
            "cursor" => {
                f.cursor = Some(Cursor::decode(&v).ok_or_else(|| {
                    bad("cursor", "is not a next_cursor this API handed out")
                })?)
            }
            other => {
                return Err(bad(
                    other,
                    &format!("unknown filter (merchant, status, from, to, q, min_amount, max_amount, review{PAGING})"),
                ))
            }
        }
    }
    if let (Some(a), Some(b)) = (f.min_fen, f.max_fen) {
        if a > b {
            return Err(bad("min_amount", "must not be more than max_amount"));
        }
    }
    f.merchant = range_and_owner(&f.from, &f.to, f.merchant.take(), own)?;
    Ok(f)
}

/// What every list checks last: `from` before `to`, and a merchant token's own merchant (the
/// list's merchant: its own when it names none, another is a 403).
pub(crate) fn range_and_owner(
    from: &Option<String>,
    to: &Option<String>,
    merchant: Option<String>,
    own: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if let (Some(a), Some(b)) = (from, to) {
        if a >= b {
            return Err(bad("from", "must be before to"));
        }
    }
    match (own, merchant) {
        (Some(own), Some(m)) if m != own => Err(another_merchant()),
        (Some(own), _) => Ok(Some(own.to_owned())),
        (None, m) => Ok(m),
    }
}

pub(crate) fn another_merchant() -> ApiError {
    ApiError::field(
        403,
        "forbidden",
        "merchant",
        "this token belongs to another merchant",
    )
}

/// A checked filter limited to `mine`, a shop owner's merchants (the admin's list, totals and
/// CSV): a `merchant` of theirs narrows to it, another's is a 403 as for a merchant token, and
/// none means every one of theirs (never only the first).
pub fn within(mut f: PaymentFilter, mine: &[String]) -> Result<PaymentFilter, ApiError> {
    f.merchants = merchants_within(f.merchant.as_deref(), mine)?;
    Ok(f)
}

/// The set of merchants a shop owner's list holds ([`within`]'s rule, for every list): None
/// when `merchant` (one of theirs) narrows it already, all of `mine` when none is named.
pub(crate) fn merchants_within(
    merchant: Option<&str>,
    mine: &[String],
) -> Result<Option<Vec<String>>, ApiError> {
    match merchant {
        Some(m) if !mine.iter().any(|x| x == m) => Err(another_merchant()),
        Some(_) => Ok(None),
        None => Ok(Some(mine.to_vec())),
    }
}

pub(crate) fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// `paid_at` as stored UTC ISO 8601: stored UTC as it is, a provider's Beijing wall-clock text
/// (`gmt_payment`) converted.
pub fn paid_at_utc(p: &Payment) -> Option<String> {
    clock::shown_utc(p.paid_at.as_deref()?)
}

/// One row of the ledger's JSON.
pub fn payment_json(lp: &LedgerPayment) -> serde_json::Value {
    let p = &lp.payment;
    serde_json::json!({
        "merchant_id": p.merchant_id,
        "out_trade_no": p.out_trade_no,
        "subject": p.subject,
        "status": p.status,
        "total_fee": p.total_fee(),
        "refunded_amount": yuan(lp.refunded_fen),
        "trade_no": p.trade_no,
        "buyer_email": p.buyer_email,
        "paid_at": paid_at_utc(p),
        "review": p.review,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "finished_at": p.finished_at,
    })
}

/// A page of the ledger: the payments and where the next page starts.
pub async fn page(app: &App, f: &PaymentFilter) -> Result<serde_json::Value, ApiError> {
    let mut ask = f.clone();
    ask.limit = f.limit + 1;
    let mut rows = app
        .store
        .list_payments(&ask)
        .await
        .map_err(ApiError::internal)?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    let next = more
        .then(|| rows.last().map(|r| Cursor::of(&r.payment).encode()))
        .flatten();
    Ok(serde_json::json!({
        "payments": rows.iter().map(payment_json).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}

/// The CSV's columns, in order (documented in docs/LEDGER.md).
pub const CSV_COLUMNS: [&str; 14] = [
    "merchant_id",
    "out_trade_no",
    "trade_no",
    "subject",
    "status",
    "total_fee",
    "refunded_amount",
    "buyer",
    "created_at_beijing",
    "created_at_utc",
    "paid_at_beijing",
    "paid_at_utc",
    "review",
    "updated_at_utc",
];

/// A CSV field: quoted when it must be; text a spreadsheet would run as a formula (`=`, `+`,
/// `-`, `@`, tab, CR) gets a leading `'`.
pub(crate) fn csv_field(out: &mut String, v: &str, text: bool) {
    let guarded;
    let v = if text && v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{v}");
        guarded.as_str()
    } else {
        v
    };
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// The CSV's first bytes: the UTF-8 byte-order mark (so Excel reads UTF-8) and the header.
pub fn csv_header() -> String {
    format!("\u{feff}{}\r\n", CSV_COLUMNS.join(","))
}

/// One payment as a CSV line (CRLF-terminated).
pub fn csv_row(out: &mut String, lp: &LedgerPayment) {
    let p = &lp.payment;
    let paid = paid_at_utc(p);
    let beijing = |utc: Option<&str>| utc.and_then(clock::stored_to_beijing).unwrap_or_default();
    let cells: [(String, bool); 14] = [
        (p.merchant_id.clone(), true),
        (p.out_trade_no.clone(), true),
        (p.trade_no.clone().unwrap_or_default(), true),
        (p.subject.clone(), true),
        (p.status.clone(), false),
        (p.total_fee(), false),
        (yuan(lp.refunded_fen), false),
        (p.buyer_email.clone().unwrap_or_default(), true),
        (beijing(Some(&p.created_at)), false),
        (p.created_at.clone(), false),
        (beijing(paid.as_deref()), false),
        (paid.unwrap_or_default(), false),
        (p.review.clone().unwrap_or_default(), true),
        (p.updated_at.clone(), false),
    ];
    for (i, (v, text)) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, v, *text);
    }
    out.push_str("\r\n");
}

/// A person marks a payment held for review as checked: its flag is cleared when the payment is
/// still as they read it (`seen`; a flag raised again meanwhile stays for them to read), with a
/// timeline entry naming `by`. 409 `review_changed` (field `review`) otherwise.
pub async fn clear_review(
    app: &App,
    merchant: &str,
    out_trade_no: &str,
    seen: &crate::store::ledger::ReviewSeen,
    by: &str,
) -> Result<(), ApiError> {
    // A form sends a text's line breaks back as CRLF.
    let seen = crate::store::ledger::ReviewSeen {
        reason: seen.reason.replace("\r\n", "\n"),
        updated_at: seen.updated_at.clone(),
    };
    let cleared = app
        .store
        .clear_review(merchant, out_trade_no, &seen, by)
        .await
        .map_err(ApiError::internal)?;
    if !cleared {
        return Err(ApiError::field(
            409,
            "review_changed",
            "review",
            "review: the payment is no longer held for the reason shown (cleared, or held again meanwhile); reload the page",
        ));
    }
    tracing::info!(merchant, out_trade_no, by, "review cleared");
    Ok(())
}

/// The timeline entry of a refund given up here: its detail is `#<refund id> <amount> <who>`.
pub const REFUND_GIVEN_UP: &str = "refund_given_up";

/// Adds an entry to a payment's timeline; a failure is logged, never the request's.
pub async fn note(app: &App, merchant: &str, out_trade_no: &str, kind: &str, detail: Option<&str>) {
    record(app, merchant, out_trade_no, kind, detail, false).await
}

/// [`note`], only when the payment has no entry of this kind and detail yet: for what anyone
/// holding a link can repeat (a buyer's return), one row, not one per replay.
pub async fn note_once(
    app: &App,
    merchant: &str,
    out_trade_no: &str,
    kind: &str,
    detail: Option<&str>,
) {
    record(app, merchant, out_trade_no, kind, detail, true).await
}

async fn record(
    app: &App,
    merchant: &str,
    out_trade_no: &str,
    kind: &str,
    detail: Option<&str>,
    once: bool,
) {
    if let Err(e) = app
        .store
        .record_event(merchant, out_trade_no, kind, detail, once)
        .await
    {
        tracing::warn!(merchant, out_trade_no, kind, error = %e, "cannot record a timeline entry");
    }
}

/// A payment's timeline, oldest first: created, each redirect, every notification with its
/// outcome, returns, query syncs, closes, refunds and each webhook attempt.
pub fn timeline(record: &crate::store::ledger::PaymentRecord) -> Vec<serde_json::Value> {
    let p = &record.ledger.payment;
    let mut items: Vec<(String, u8, serde_json::Value)> = vec![(
        p.created_at.clone(),
        0,
        serde_json::json!({"at": p.created_at, "kind": "created", "detail": format!("{} {}", p.total_fee(), p.subject)}),
    )];
    for e in &record.events {
        items.push((
            e.at.clone(),
            1,
            serde_json::json!({"at": e.at, "kind": e.kind, "detail": e.detail}),
        ));
    }
    for n in &record.notifications {
        let query = n
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("source: query"));
        // A refund's report within the second its refund started comes after that start, as it
        // did: a legacy batch notify names no trade status, an open-platform refund notice names
        // the trade's (TRADE_SUCCESS), and the result of either names the refund.
        let refund_report = n.trade_status.is_none()
            || n.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("refund "));
        let rank = if refund_report { 4 } else { 2 };
        items.push((
            n.received_at.clone(),
            rank,
            serde_json::json!({
                "at": n.received_at,
                "kind": if query { "query" } else { "notify" },
                "trade_status": n.trade_status,
                "outcome": n.outcome,
                "detail": n.detail,
                "notify_id": n.notify_id,
            }),
        ));
    }
    for r in &record.refunds {
        items.push((
            r.created_at.clone(),
            3,
            serde_json::json!({"at": r.created_at, "kind": "refund", "refund_id": r.id, "amount": r.amount(),
                "status": crate::domain::refunds::PENDING, "started_by": r.started_by, "request_no": r.request_no}),
        ));
        if let Some(done) = &r.completed_at {
            items.push((
                done.clone(),
                4,
                serde_json::json!({"at": done, "kind": "refund", "refund_id": r.id, "amount": r.amount(),
                    "status": r.status, "started_by": r.started_by, "detail": r.detail}),
            ));
        }
    }
    for a in &record.webhook_attempts {
        items.push((
            a.at.clone(),
            5,
            serde_json::json!({"at": a.at, "kind": "webhook", "event": a.event_type, "http_status": a.http_status,
                "error": a.error, "webhook_id": a.webhook_id}),
        ));
    }
    items.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    items.into_iter().map(|(_, _, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open-platform refund's notice (it names the trade's status) in the second its refund
    /// started comes after that start, as a legacy batch notify (no trade status) does; a paid
    /// notice of that second stays before it.
    #[test]
    fn a_refunds_report_follows_its_start_in_one_second() {
        use crate::store::{ledger::*, NotificationRecord, Payment};
        let at = "2026-12-07T10:00:00Z".to_owned();
        let note = |id: i64, status: Option<&str>, detail: &str| NotificationRecord {
            raw_id: id,
            merchant_id: "m".into(),
            received_at: at.clone(),
            notify_id: Some(format!("n{id}")),
            out_trade_no: Some("O1".into()),
            trade_status: status.map(str::to_owned),
            outcome: Some("applied".into()),
            detail: Some(detail.into()),
        };
        let record = PaymentRecord {
            ledger: LedgerPayment {
                payment: Payment {
                    merchant_id: "m".into(),
                    out_trade_no: "O1".into(),
                    subject: "s".into(),
                    total_fen: 1000,
                    seller: "s".into(),
                    return_url: String::new(),
                    status: "PARTIALLY_REFUNDED".into(),
                    request_token: None,
                    pay_url: None,
                    trade_no: None,
                    buyer_email: None,
                    paid_at: None,
                    review: None,
                    created_at: at.clone(),
                    updated_at: at.clone(),
                    finished_at: None,
                },
                refunded_fen: 200,
            },
            notifications: vec![
                note(1, Some("TRADE_SUCCESS"), "WAIT_BUYER_PAY -> TRADE_SUCCESS"),
                note(
                    2,
                    Some("TRADE_SUCCESS"),
                    "refund 2 SUCCESS; payment PARTIALLY_REFUNDED",
                ),
                note(3, None, "refund already known"),
            ],
            refunds: vec![Refund {
                id: 2,
                merchant_id: "m".into(),
                out_trade_no: "O1".into(),
                request_no: "r2".into(),
                refund_key: None,
                amount_fen: 200,
                reason: String::new(),
                started_by: "admin:alice".into(),
                status: "SUCCESS".into(),
                confirm_url: None,
                detail: None,
                created_at: at.clone(),
                completed_at: Some(at.clone()),
            }],
            events: Vec::new(),
            webhook_attempts: Vec::new(),
        };
        let order: Vec<String> = timeline(&record)
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["kind"].as_str().unwrap(),
                    e["detail"].as_str().or(e["status"].as_str()).unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                "created 10.00 s",
                "notify WAIT_BUYER_PAY -> TRADE_SUCCESS",
                "refund PENDING",
                "notify refund 2 SUCCESS; payment PARTIALLY_REFUNDED",
                "notify refund already known",
                "refund SUCCESS",
            ]
        );
    }

    #[test]
    fn filters_name_the_bad_field() {
        let f = parse_filter(
            Some("merchant=m1&status=trade_success&from=2024-05-01&to=2024-05-01&min_amount=1&max_amount=9.99&limit=10&q=A%25"),
            None,
        )
        .unwrap();
        assert_eq!(f.merchant.as_deref(), Some("m1"));
        assert_eq!(f.status.as_deref(), Some("TRADE_SUCCESS"));
        assert_eq!(f.from.as_deref(), Some("2024-04-30T16:00:00Z"));
        assert_eq!(f.to.as_deref(), Some("2024-05-01T16:00:00Z"));
        assert_eq!((f.min_fen, f.max_fen, f.limit), (Some(100), Some(999), 10));
        assert_eq!(f.q.as_deref(), Some("A%"));
        assert!(!f.review);
        assert!(parse_filter(Some("review=1"), None).unwrap().review);
        assert!(parse_filter(Some("review=TRUE"), None).unwrap().review);
        assert!(!parse_filter(Some("review=0"), None).unwrap().review);
        let e = parse_filter(Some("q=%00"), None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("q"));
        // LEDGER.md's example typed into a URL as it is: its `+` arrives as a space.
        for q in [
            "from=2026-12-06T08:00:00+08:00",
            "from=2026-12-06T08:00:00%2B08:00",
        ] {
            let f = parse_filter(Some(q), None).unwrap();
            assert_eq!(f.from.as_deref(), Some("2026-12-06T00:00:00Z"), "{q}");
        }
        for (q, field) in [
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("status=PAID", "status"),
            ("from=2024-02-30", "from"),
            ("to=yesterday", "to"),
            ("min_amount=1.001", "min_amount"),
            ("min_amount=5&max_amount=1", "min_amount"),
            ("cursor=zzz", "cursor"),
            ("merchant=a%20b", "merchant"),
            ("sort=asc", "sort"),
            ("limit=1&limit=2", "limit"),
            ("review=maybe", "review"),
        ] {
            let e = parse_filter(Some(q), None).unwrap_err();
            assert_eq!((e.status, e.field.as_deref()), (400, Some(field)), "{q}");
        }
        assert_eq!(
            parse_filter(Some("merchant=other"), Some("own"))
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            parse_filter(None, Some("own")).unwrap().merchant.as_deref(),
            Some("own")
        );
    }

    #[test]
    fn an_owners_filter_is_all_of_their_merchants_unless_one_of_them_is_named() {
        let mine = ["m1".to_owned(), "m2".to_owned()];
        let all = within(parse_filter(Some("q=A"), None).unwrap(), &mine).unwrap();
        assert_eq!((all.merchant, all.merchants), (None, Some(mine.to_vec())));
        let one = within(parse_filter(Some("merchant=m2"), None).unwrap(), &mine).unwrap();
        assert_eq!((one.merchant.as_deref(), one.merchants), (Some("m2"), None));
        let other = within(parse_filter(Some("merchant=m3"), None).unwrap(), &mine).unwrap_err();
        assert_eq!(
            (other.status, other.field.as_deref()),
            (403, Some("merchant"))
        );
        // No merchant at all: no row, never every merchant's.
        let none = within(parse_filter(None, None).unwrap(), &[]).unwrap();
        assert_eq!(none.merchants, Some(Vec::new()));
    }

    #[test]
    fn csv_rows_quote_and_guard() {
        let mut out = String::new();
        csv_field(&mut out, "a,\"b\"", true);
        out.push('|');
        csv_field(&mut out, "=HYPERLINK(1)", true);
        out.push('|');
        csv_field(&mut out, "-1.00", false);
        assert_eq!(out, "\"a,\"\"b\"\"\"|'=HYPERLINK(1)|-1.00");
        assert!(csv_header().starts_with('\u{feff}'));
    }
}
