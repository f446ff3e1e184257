//! The ledger's routes: `GET /v1/payments` and `GET /v1/refunds` (filtered, cursor-paged), their
//! CSVs (streamed), `GET /v1/merchants` (the operator's), refunds, close and reconciliation.

use crate::http::body::{json, read_body, Body, MAX_API_BODY};
use crate::http::caller::Caller;
use crate::http::error::error;
use crate::ledger::{self, CSV_BATCH};
use crate::refund_list;
use crate::service::{ApiError, App};
use crate::store::ledger::{Cursor, PaymentFilter, RefundFilter};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt};
use hyper::body::{Frame, Incoming};
use std::sync::Arc;

fn own(who: &Caller) -> Option<&str> {
    match who {
        Caller::Operator => None,
        Caller::Merchant(m) => Some(m),
    }
}

/// `GET /v1/payments`.
pub async fn list_payments(app: &App, who: &Caller, req: &Request<Incoming>) -> Response<Body> {
    let r = match ledger::parse_filter(req.uri().query(), own(who)) {
        Ok(f) => ledger::page(app, &f).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(v) => json(200, &v),
        Err(e) => error(&e),
    }
}

/// Marks a response whose body [`streaming`] writes: the CSV of this filter.
#[derive(Clone)]
enum CsvExport {
    Payments(PaymentFilter),
    /// And whether it names the admins (the admin's own export).
    Refunds(RefundFilter, bool),
    /// The admin's audit log.
    Audit(crate::store::admin::AuditQuery),
}

impl CsvExport {
    /// What the file starts with: the byte-order mark and the columns.
    fn header(&self) -> String {
        match self {
            CsvExport::Payments(_) => ledger::csv_header(),
            CsvExport::Refunds(..) => refund_list::csv_header(),
            CsvExport::Audit(_) => crate::http::admin::audit_csv_header(),
        }
    }

    /// The next batch's lines, and whether another batch may follow (the filter's cursor moved
    /// past this one).
    async fn batch(&mut self, app: &App) -> anyhow::Result<(String, bool)> {
        let mut chunk = String::new();
        let more = match self {
            CsvExport::Payments(f) => {
                let rows = app.store.list_payments(f).await?;
                chunk.reserve(rows.len() * 200);
                for row in &rows {
                    ledger::csv_row(&mut chunk, row);
                }
                let more = rows.len() == f.limit as usize;
                f.cursor = rows.last().map(|last| Cursor::of(&last.payment));
                more
            }
            CsvExport::Refunds(f, admin_names) => {
                let rows = app.store.list_refunds(f).await?;
                chunk.reserve(rows.len() * 160);
                for row in &rows {
                    refund_list::csv_row(&mut chunk, row, *admin_names);
                }
                let more = rows.len() == f.limit as usize;
                f.before_id = rows.last().map(|last| last.id);
                more
            }
            CsvExport::Audit(q) => {
                let rows = app.store.audit_log(q).await?;
                chunk.reserve(rows.len() * 120);
                for row in &rows {
                    crate::http::admin::audit_csv_row(&mut chunk, row);
                }
                let more = rows.len() == q.limit as usize;
                q.before = rows.last().map(|last| last.id);
                more
            }
        };
        Ok((chunk, more))
    }
}

/// `GET /v1/payments.csv`: checked here; the rows are streamed by [`streaming`].
pub fn payments_csv(who: &Caller, req: &Request<Incoming>) -> Response<Body> {
    match csv_filter(who, req.uri().query()) {
        Ok(f) => csv_export(f, req.uri().query()),
        Err(e) => error(&e),
    }
}

/// `GET /v1/refunds`.
pub async fn list_refunds(app: &App, who: &Caller, req: &Request<Incoming>) -> Response<Body> {
    let r = match refund_list::parse_filter(req.uri().query(), own(who)) {
        Ok(f) => refund_list::page(app, &f).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(v) => json(200, &v),
        Err(e) => error(&e),
    }
}

/// `GET /v1/refunds.csv`: checked here; the rows are streamed by [`streaming`].
pub fn refunds_csv(who: &Caller, req: &Request<Incoming>) -> Response<Body> {
    match refunds_csv_filter(who, req.uri().query()) {
        Ok(f) => refunds_csv_export(f, req.uri().query(), false),
        Err(e) => error(&e),
    }
}

/// The CSV's file name: what it holds, for a folder of exports (`payments-demo-2026-12-01_2026-12-05.csv`,
/// `refunds-….csv`). Only a merchant id and dates the filter accepted go into it.
fn csv_file_name(what: &str, merchant: Option<&str>, query: Option<&str>) -> String {
    let mut name = what.to_owned();
    if let Some(m) = merchant.filter(|m| crate::config::valid_merchant_id(m)) {
        name.push('-');
        name.push_str(m);
    }
    let typed = |key: &str| {
        form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
    };
    match (typed("from"), typed("to")) {
        (Some(from), Some(to)) => name.push_str(&format!("-{from}_{to}")),
        (Some(from), None) => name.push_str(&format!("-from-{from}")),
        (None, Some(to)) => name.push_str(&format!("-to-{to}")),
        (None, None) => {}
    }
    name.push_str(".csv");
    name
}

/// A CSV holds every row of its filter: a page's `cursor` or `limit` is refused, named (an
/// empty `cursor=` is no cursor, as in the list).
fn refuse_paging(query: Option<&str>, what: &str) -> Result<(), ApiError> {
    for name in ["cursor", "limit"] {
        let given = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .any(|(k, v)| k == name && (name == "limit" || !v.trim().is_empty()));
        if given {
            return Err(ApiError::field(
                400,
                "invalid_request",
                name,
                format!("{name}: the CSV holds every matching {what}; leave {name} out"),
            ));
        }
    }
    Ok(())
}

/// A filter's refusal as the CSV says it: its list of known filters without the paging.
fn without_paging(mut e: ApiError) -> ApiError {
    e.message = e.message.replace(ledger::PAGING, "");
    e
}

/// The CSV export's filter from the query, for this caller (the admin's link shows its own
/// refusal as a page).
pub fn csv_filter(who: &Caller, query: Option<&str>) -> Result<PaymentFilter, ApiError> {
    refuse_paging(query, "payment")?;
    let mut f = ledger::parse_filter(query, own(who)).map_err(without_paging)?;
    f.limit = CSV_BATCH;
    Ok(f)
}

/// The refund CSV's filter from the query, for this caller.
pub fn refunds_csv_filter(who: &Caller, query: Option<&str>) -> Result<RefundFilter, ApiError> {
    refuse_paging(query, "refund")?;
    let mut f = refund_list::parse_filter(query, own(who)).map_err(without_paging)?;
    f.limit = CSV_BATCH;
    Ok(f)
}

/// The CSV's answer for a checked filter; its rows are streamed by [`streaming`].
pub fn csv_export(f: PaymentFilter, query: Option<&str>) -> Response<Body> {
    let name = csv_file_name("payments", f.merchant.as_deref(), query);
    export_response(CsvExport::Payments(f), &name)
}

/// The refund CSV's answer for a checked filter; its rows are streamed by [`streaming`].
/// `admin_names`: the admin's own export (admins named, as its pages name them).
pub fn refunds_csv_export(
    f: RefundFilter,
    query: Option<&str>,
    admin_names: bool,
) -> Response<Body> {
    let name = csv_file_name("refunds", f.merchant.as_deref(), query);
    export_response(CsvExport::Refunds(f, admin_names), &name)
}

/// The admin's audit log as CSV, for a checked query; its rows are streamed by [`streaming`].
pub fn audit_csv_export(q: crate::store::admin::AuditQuery) -> Response<Body> {
    let name = csv_file_name("audit", q.merchant.as_deref(), None);
    export_response(CsvExport::Audit(q), &name)
}

fn export_response(export: CsvExport, file_name: &str) -> Response<Body> {
    let mut r = Response::builder()
        .status(200)
        .header("content-type", "text/csv; charset=utf-8")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{file_name}\""),
        )
        .header("cache-control", "no-store")
        .body(Body::default())
        .expect("valid response");
    r.extensions_mut().insert(export);
    r
}

/// The body type the server answers with: whole bodies, or the CSV's stream.
pub type ServerBody = BoxBody<Bytes, std::io::Error>;

/// A body fed by a channel (the CSV's batches); an error ends the response abruptly, so a
/// truncated export never looks complete.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Turns a response into the server's body type; a CSV export starts streaming here.
pub fn streaming(app: &Arc<App>, mut r: Response<Body>) -> Response<ServerBody> {
    let Some(mut export) = r.extensions_mut().remove::<CsvExport>() else {
        return r.map(|b| b.map_err(|never| match never {}).boxed());
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let app = app.clone();
    // The export is a task of its own; the channel's bound holds it back while the client
    // reads slowly.
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from(export.header()))).await.is_err() {
            return;
        }
        loop {
            let (chunk, more) = match export.batch(&app).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "the CSV export stopped: cannot read the ledger");
                    let _ = tx.send(Err(std::io::Error::other("store failed"))).await;
                    return;
                }
            };
            if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return; // the client went away
            }
            if !more {
                return;
            }
        }
    });
    r.map(|_| ChannelBody(rx).boxed())
}

/// `GET /v1/merchants` (the operator's): every merchant with its component, mode and counts.
pub async fn list_merchants(app: &App) -> Result<Response<Body>, ApiError> {
    let counts = app
        .store
        .merchant_counts()
        .await
        .map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(counts.len());
    for c in counts {
        let Some(m) = app
            .store
            .merchant(&c.id)
            .await
            .map_err(ApiError::internal)?
        else {
            continue;
        };
        let plugin = app
            .plugins
            .for_merchant(&m)
            .map(|p| p.info.id.clone())
            .unwrap_or_else(|| m.plugin_id.clone());
        out.push(serde_json::json!({
            "id": c.id,
            "plugin": plugin,
            "mode": m.get("mode").unwrap_or(""),
            "api": m.get("api").unwrap_or("mapi"),
            "payments": c.payments,
            "paid": c.paid,
            "refunded": c.refunded,
            "waiting": c.waiting,
            "paid_amount": format!("{}.{:02}", c.paid_fen / 100, c.paid_fen % 100),
            "refunded_amount": format!("{}.{:02}", c.refunded_fen / 100, c.refunded_fen % 100),
        }));
    }
    Ok(json(200, &serde_json::json!({"merchants": out})))
}

/// `POST /v1/merchants/{id}/payments/{no}/refunds`.
pub async fn create_refund(
    app: &Arc<App>,
    who: &Caller,
    id: &str,
    no: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_body(req.into_body(), MAX_API_BODY).await?;
    let cmd: crate::refunds::RefundCommand = crate::http::body::parse_json(
        &body,
        "the expected JSON object {\"amount\", \"reason\"?, \"refund_key\"?}",
        false,
    )?;
    // The token's holder, as the audit log names it.
    let started_by = super::audit::actor(who);
    let asked = cmd
        .amount
        .as_ref()
        .and_then(|a| a.as_str())
        .and_then(|a| crate::domain::amount::Amount::parse(a.trim()).ok())
        .map(|a| format!(" ¥{a}"))
        .unwrap_or_default();
    match app.start_refund(id, no, cmd, &started_by).await {
        Ok((status, refund)) => {
            // A refund asked again under its key (200) was audited when it started.
            if status == 201 {
                let detail = format!(
                    "{no}: ¥{} #{} {}",
                    refund.amount(),
                    refund.id,
                    refund.status
                );
                super::audit::record(app, who, "refund.start", id, &detail).await;
            }
            Ok(json(status, &crate::refunds::refund_json(&refund)))
        }
        Err(e) => {
            // A refund kept though its answer was lost (money may have gone out) is audited too.
            if let Some(("refund", kept)) = e.about.as_deref().map(|(k, v)| (*k, v)) {
                let detail = format!(
                    "{no}: ¥{} #{} {}",
                    kept["amount"].as_str().unwrap_or_default(),
                    kept["id"],
                    kept["status"].as_str().unwrap_or_default()
                );
                super::audit::record(app, who, "refund.start", id, &detail).await;
            } else if e.code.starts_with("gateway_")
                && !crate::http::admin::UNKNOWN_OUTCOME.contains(&e.code.as_str())
            {
                // Refused by the provider: the refund is kept FAILED (nothing moved), and the
                // attempt is the token's all the same.
                let detail = format!("{no}:{asked} ({}) FAILED", e.code);
                super::audit::record(app, who, "refund.start", id, &detail).await;
            }
            Err(e)
        }
    }
}

/// `POST /v1/merchants/{id}/payments/{no}/refunds/{rid}/abandon`: gives up a legacy refund the
/// seller never confirmed on the provider's page (the admin's 放弃), its amount refundable again.
pub async fn abandon_refund(
    app: &Arc<App>,
    who: &Caller,
    id: &str,
    no: &str,
    rid: &str,
) -> Result<Response<Body>, ApiError> {
    let unknown = || {
        ApiError::new(
            404,
            "unknown_refund",
            format!("no refund {rid:?} of {no:?}"),
        )
    };
    let rid = rid.parse::<i64>().map_err(|_| unknown())?;
    match app
        .abandon_refund(id, no, rid, &super::audit::actor(who))
        .await
    {
        Ok(refund) => {
            let detail = format!("{no}: ¥{} #{}", refund.amount(), refund.id);
            super::audit::record(app, who, "refund.abandon", id, &detail).await;
            Ok(json(200, &crate::refunds::refund_json(&refund)))
        }
        // Asked again (its answer was lost): the refund as the first ask left it.
        Err(e) if e.code == "not_abandonable" => match app
            .store
            .refund(id, rid)
            .await
            .map_err(ApiError::internal)?
            .filter(|r| {
                r.out_trade_no == no
                    && r.status == crate::domain::refunds::FAILED
                    && r.detail
                        .as_deref()
                        .is_some_and(|d| d.starts_with(crate::domain::refunds::GIVEN_UP))
            }) {
            Some(given_up) => Ok(json(200, &crate::refunds::refund_json(&given_up))),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// `POST /v1/merchants/{id}/payments/{no}/close`.
pub async fn close(
    app: &Arc<App>,
    who: &Caller,
    id: &str,
    no: &str,
) -> Result<Response<Body>, ApiError> {
    let closed = app.close_payment(id, no).await?;
    super::audit::record(app, who, "payment.close", id, no).await;
    Ok(json(200, &closed))
}

/// `GET /v1/merchants/{id}/reconciliation?date=YYYY-MM-DD`.
pub async fn reconciliation(
    app: &Arc<App>,
    id: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mut date = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        let refused =
            |rule: &str| ApiError::field(400, "invalid_request", &k, format!("{k}: {rule}"));
        match k.as_ref() {
            "date" if date.is_some() => return Err(refused("given more than once")),
            "date" => date = Some(v.into_owned()),
            _ => {
                return Err(refused(
                    "is not a parameter of the reconciliation (only date)",
                ))
            }
        }
    }
    Ok(json(
        200,
        &app.reconcile(id, date.unwrap_or_default().trim()).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CSV's refusal names what it takes: paging is the list's, so an unknown filter's
    /// message leaves it out, and a page's `limit` or `cursor` is refused as such.
    #[test]
    fn a_csv_names_the_filters_it_takes() {
        let e = csv_filter(&Caller::Operator, Some("page=2")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("page"));
        assert!(e.message.contains("review)"), "{}", e.message);
        assert!(!e.message.contains("limit"), "{}", e.message);
        let e = refunds_csv_filter(&Caller::Operator, Some("page=2")).unwrap_err();
        assert!(e.message.contains("completed_to, q)"), "{}", e.message);
        assert!(!e.message.contains("cursor"), "{}", e.message);
        for q in ["limit=0", "limit=50", "cursor=zzz"] {
            let e = csv_filter(&Caller::Operator, Some(q)).unwrap_err();
            assert!(
                e.message.contains("the CSV holds every"),
                "{q}: {}",
                e.message
            );
        }
        // The list itself still names its paging.
        let e = ledger::parse_filter(Some("page=2"), None).unwrap_err();
        assert!(
            e.message.contains("review, limit, cursor)"),
            "{}",
            e.message
        );
    }
}
