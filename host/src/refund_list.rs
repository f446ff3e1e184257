//! The back office's list of refunds, independent of HTTP: the filters of `GET /v1/refunds`
//! checked (every bad one named, by the payment list's rules where they are the same), a page of
//! it, and the CSV export's rows. A bookkeeper finds here every refund of a month — started in
//! the admin, by the shop's API or in Alipay's own back office — without opening each order.

use crate::domain::{clock, refunds};
use crate::ledger::{
    bad, csv_field, filter_pairs, limit_value, merchant_value, merchants_within, parse_time,
    q_value, range_and_owner, yuan, DEFAULT_PAGE,
};
use crate::service::{ApiError, App};
use crate::store::ledger::{Refund, RefundFilter};

/// The statuses a refund can have, as the `status` filter takes them.
pub const STATUSES: [&str; 3] = [refunds::PENDING, refunds::SUCCESS, refunds::FAILED];

/// The filter's parameters, named in the refusal of an unknown one.
const PARAMETERS: &str = "merchant, status, from, to, completed_from, completed_to, q";

/// The filters of `GET /v1/refunds` (and `/v1/refunds.csv`) from the query string. `own` is a
/// merchant token's merchant: it sees only its own (another `merchant` is a 403).
pub fn parse_filter(query: Option<&str>, own: Option<&str>) -> Result<RefundFilter, ApiError> {
    let mut f = RefundFilter {
        limit: DEFAULT_PAGE,
        ..RefundFilter::default()
    };
    for (k, v) in filter_pairs(query)? {
        match k.as_str() {
            "merchant" => f.merchant = Some(merchant_value(v)?),
            "status" => {
                let s = v.to_ascii_uppercase();
                if !STATUSES.contains(&s.as_str()) {
                    return Err(bad(
                        "status",
                        &format!("must be one of {}", STATUSES.join(", ")),
                    ));
                }
                f.status = Some(s);
            }
            "from" => f.from = Some(parse_time("from", &v, false)?),
            "to" => f.to = Some(parse_time("to", &v, true)?),
            // When it ended, as Alipay's bill of a day counts a refund (a date is a Beijing day).
            "completed_from" => f.completed_from = Some(parse_time("completed_from", &v, false)?),
            "completed_to" => f.completed_to = Some(parse_time("completed_to", &v, true)?),
            "q" => f.q = Some(q_value(v)?),
            "limit" => f.limit = limit_value(&v)?,
            "cursor" => {
                f.before_id = Some(
                    decode_cursor(&v)
                        .ok_or_else(|| bad("cursor", "is not a next_cursor this API handed out"))?,
                )
            }
            other => {
                return Err(bad(
                    other,
                    &format!(
                        "unknown filter of the refund list ({PARAMETERS}{})",
                        crate::ledger::PAGING
                    ),
                ))
            }
        }
    }
    if let (Some(a), Some(b)) = (&f.completed_from, &f.completed_to) {
        if a >= b {
            return Err(bad("completed_from", "must be before completed_to"));
        }
    }
    f.merchant = range_and_owner(&f.from, &f.to, f.merchant.take(), own)?;
    Ok(f)
}

/// A checked filter limited to `mine`, a shop owner's merchants (as
/// [`crate::ledger::within`] does for payments).
pub fn within(mut f: RefundFilter, mine: &[String]) -> Result<RefundFilter, ApiError> {
    f.merchants = merchants_within(f.merchant.as_deref(), mine)?;
    Ok(f)
}

/// Where the next page starts: the last row's id, as the text the API hands out (`r` and the
/// id, so that a payment list's cursor is never taken for one).
pub fn encode_cursor(id: i64) -> String {
    format!("r{id}")
}

pub fn decode_cursor(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('r')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|id| *id > 0)
}

/// One row of the refund list's JSON: the refund as a payment's page shows it, with its order.
pub fn refund_row_json(r: &Refund) -> serde_json::Value {
    let mut v = crate::refunds::refund_json(r);
    v["merchant_id"] = serde_json::json!(r.merchant_id);
    v["out_trade_no"] = serde_json::json!(r.out_trade_no);
    v
}

/// A page of the refund list: the refunds and where the next page starts.
pub async fn page(app: &App, f: &RefundFilter) -> Result<serde_json::Value, ApiError> {
    let mut ask = f.clone();
    ask.limit = f.limit + 1;
    let mut rows = app
        .store
        .list_refunds(&ask)
        .await
        .map_err(ApiError::internal)?;
    let more = rows.len() > f.limit as usize;
    rows.truncate(f.limit as usize);
    let next = more
        .then(|| rows.last().map(|r| encode_cursor(r.id)))
        .flatten();
    Ok(serde_json::json!({
        "refunds": rows.iter().map(refund_row_json).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}

/// The refund CSV's columns, in order (documented in docs/LEDGER.md).
pub const CSV_COLUMNS: [&str; 13] = [
    "merchant_id",
    "out_trade_no",
    "request_no",
    "amount",
    "status",
    "reason",
    "started_by",
    "created_at_beijing",
    "created_at_utc",
    "completed_at_beijing",
    "completed_at_utc",
    "refund_id",
    "detail",
];

/// The refund CSV's first bytes: the UTF-8 byte-order mark (so Excel reads UTF-8) and the header.
pub fn csv_header() -> String {
    format!("\u{feff}{}\r\n", CSV_COLUMNS.join(","))
}

/// One refund as a CSV line (CRLF-terminated). `admin_names`: the admin's own export, which says
/// which admin started or gave up a refund (`admin:alice`), as its pages do; the API's says `admin`.
pub fn csv_row(out: &mut String, r: &Refund, admin_names: bool) {
    let shown = |words: &str| -> String {
        if admin_names {
            words.to_owned()
        } else {
            crate::domain::refunds::without_admin_names(words).into_owned()
        }
    };
    let beijing = |utc: Option<&str>| utc.and_then(clock::stored_to_beijing).unwrap_or_default();
    let cells: [(String, bool); 13] = [
        (r.merchant_id.clone(), true),
        (r.out_trade_no.clone(), true),
        (r.request_no.clone(), true),
        (yuan(r.amount_fen), false),
        (r.status.clone(), false),
        (r.reason.clone(), true),
        (shown(&r.started_by), true),
        (beijing(Some(&r.created_at)), false),
        (r.created_at.clone(), false),
        (beijing(r.completed_at.as_deref()), false),
        (r.completed_at.clone().unwrap_or_default(), false),
        (r.id.to_string(), false),
        (r.detail.as_deref().map(shown).unwrap_or_default(), true),
    ];
    for (i, (v, text)) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, v, *text);
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_the_bad_field() {
        let f = parse_filter(
            Some("merchant=m1&status=success&from=2024-05-01&to=2024-05-31&q=R_1&limit=10&cursor=r42"),
            None,
        )
        .unwrap();
        assert_eq!(f.merchant.as_deref(), Some("m1"));
        assert_eq!(f.status.as_deref(), Some("SUCCESS"));
        assert_eq!(f.from.as_deref(), Some("2024-04-30T16:00:00Z"));
        assert_eq!(f.to.as_deref(), Some("2024-05-31T16:00:00Z"));
        assert_eq!(
            (f.q.as_deref(), f.limit, f.before_id),
            (Some("R_1"), 10, Some(42))
        );
        for (q, field) in [
            ("status=TRADE_SUCCESS", "status"),
            ("status=REFUNDED", "status"),
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("from=2024-02-30", "from"),
            ("from=2024-05-02&to=2024-05-01", "from"),
            ("cursor=42", "cursor"),
            ("cursor=r", "cursor"),
            ("cursor=r-1", "cursor"),
            ("cursor=r0", "cursor"),
            ("cursor=r99999999999999999999", "cursor"),
            ("merchant=a%20b", "merchant"),
            ("min_amount=1", "min_amount"),
            ("q=1&q=2", "q"),
        ] {
            let e = parse_filter(Some(q), None).unwrap_err();
            assert_eq!((e.status, e.field.as_deref()), (400, Some(field)), "{q}");
        }
        let long = format!("q={}", "订".repeat(129));
        assert_eq!(
            parse_filter(Some(&long), None)
                .unwrap_err()
                .field
                .as_deref(),
            Some("q")
        );
        // A merchant token sees its own refunds only.
        assert_eq!(
            parse_filter(None, Some("own")).unwrap().merchant.as_deref(),
            Some("own")
        );
        let other = parse_filter(Some("merchant=other"), Some("own")).unwrap_err();
        assert_eq!(
            (other.status, other.field.as_deref()),
            (403, Some("merchant"))
        );
    }

    #[test]
    fn cursors_round_trip_and_a_payment_cursor_is_not_one() {
        assert_eq!(decode_cursor(&encode_cursor(7)), Some(7));
        let payment = crate::store::ledger::Cursor {
            created_at: "2024-01-01T00:00:00Z".into(),
            merchant_id: "m".into(),
            out_trade_no: "1".into(),
        };
        assert_eq!(decode_cursor(&payment.encode()), None);
    }

    #[test]
    fn an_owners_filter_is_all_of_their_merchants_unless_one_of_them_is_named() {
        let mine = ["m1".to_owned(), "m2".to_owned()];
        let all = within(parse_filter(None, None).unwrap(), &mine).unwrap();
        assert_eq!(all.merchants, Some(mine.to_vec()));
        let one = within(parse_filter(Some("merchant=m2"), None).unwrap(), &mine).unwrap();
        assert_eq!((one.merchant.as_deref(), one.merchants), (Some("m2"), None));
        assert_eq!(
            within(parse_filter(Some("merchant=m3"), None).unwrap(), &mine)
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn csv_rows_hold_every_column_and_guard_text() {
        let r = Refund {
            id: 9,
            merchant_id: "m1".into(),
            out_trade_no: "A,1".into(),
            request_no: "R1".into(),
            refund_key: None,
            amount_fen: 1005,
            reason: "=cmd()".into(),
            started_by: "admin:alice".into(),
            status: "SUCCESS".into(),
            confirm_url: None,
            detail: None,
            created_at: "2024-05-01T00:00:00Z".into(),
            completed_at: Some("2024-05-01T00:01:00Z".into()),
        };
        let mut out = String::new();
        csv_row(&mut out, &r, false);
        assert_eq!(
            out,
            // An admin's refund says `admin` (its login name stays in the admin's pages).
            "m1,\"A,1\",R1,10.05,SUCCESS,'=cmd(),admin,2024-05-01 08:00:00,2024-05-01T00:00:00Z,\
             2024-05-01 08:01:00,2024-05-01T00:01:00Z,9,\r\n"
        );
        // The admin's own export names the admin, as its pages do.
        let mut own = String::new();
        csv_row(&mut own, &r, true);
        assert!(own.contains(",'=cmd(),admin:alice,"), "{own}");
        assert_eq!(
            out.trim_end().split(',').count(),
            CSV_COLUMNS.len() + 1,
            "one column more: the quoted order number holds a comma"
        );
        assert!(csv_header().starts_with('\u{feff}'));
    }
}
