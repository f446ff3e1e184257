//! [`Ledger`] on SQLite: reads on the reader pool, every write one job of the writer's group
//! commit. The refund rules are [`refund_rules`]'s, run in the job's savepoint over the
//! primitives of [`RefundTx`] below.

use super::tx::{run_rule, SqliteTx};
use super::{payment_from_row, SqliteStore};
use crate::store::ledger::*;
use crate::store::ledger_sql::{refund_totals_sql, totals_sql, Dialect, ListQuery, SqlValue};
use crate::store::refund_rules::{self, RefundRow, RefundTx};
use crate::store::{now_rfc3339, OwnedRaw, Payment, PlannedWebhook};
use anyhow::Result;
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

/// The payment list's query ([`ListQuery`]) in SQLite's words: `?n`, and LIKE (which ignores
/// ASCII case) with its escape named.
struct Sqlite;

impl Dialect for Sqlite {
    fn placeholder(n: usize) -> String {
        format!("?{n}")
    }

    fn like(column: &str, placeholder: &str) -> String {
        format!("{column} LIKE {placeholder} ESCAPE '\\'")
    }
}

const PAID: &str = "('TRADE_SUCCESS','TRADE_FINISHED','PARTIALLY_REFUNDED','REFUNDED')";

fn refund_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Refund> {
    Ok(Refund {
        id: r.get("id")?,
        merchant_id: r.get("merchant_id")?,
        out_trade_no: r.get("out_trade_no")?,
        request_no: r.get("request_no")?,
        refund_key: r.get("refund_key")?,
        amount_fen: r.get::<_, i64>("amount_fen")? as u64,
        reason: r.get("reason")?,
        started_by: r.get("started_by")?,
        status: r.get("status")?,
        confirm_url: r.get("confirm_url")?,
        detail: r.get("detail")?,
        created_at: r.get("created_at")?,
        completed_at: r.get("completed_at")?,
    })
}

fn ledger_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerPayment> {
    Ok(LedgerPayment {
        payment: payment_from_row(r)?,
        refunded_fen: r.get::<_, i64>("refunded_fen")? as u64,
    })
}

/// [`Ledger::pending_refunds`](crate::store::ledger::Ledger::pending_refunds).
const PENDING_REFUNDS: &str = "SELECT * FROM refunds WHERE status = 'PENDING' AND id > ?1 AND created_at < ?2 ORDER BY id LIMIT ?3";

/// [`Ledger::claim_refund_send`](crate::store::ledger::Ledger::claim_refund_send).
const CLAIM_REFUND_SEND: &str = "UPDATE refunds SET last_sent_at = ?4 WHERE merchant_id = ?1 AND id = ?2 AND status = 'PENDING' AND confirm_url IS NULL AND created_at < ?3 AND (last_sent_at IS NULL OR last_sent_at < ?3)";

/// [`Ledger::claim_first_refund_send`](crate::store::ledger::Ledger::claim_first_refund_send).
const CLAIM_FIRST_REFUND_SEND: &str = "UPDATE refunds SET last_sent_at = ?3 WHERE merchant_id = ?1 AND id = ?2 AND status = 'PENDING' AND last_sent_at IS NULL";

fn ledger_payment_in(conn: &Connection, merchant: &str, no: &str) -> Result<Option<LedgerPayment>> {
    Ok(conn
        .prepare_cached("SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
        .query_row(params![merchant, no], ledger_from_row)
        .optional()?)
}

fn events_in(conn: &Connection, merchant: &str, no: &str) -> Result<Vec<PaymentEvent>> {
    let mut st = conn.prepare_cached("SELECT at, kind, detail FROM payment_events WHERE merchant_id = ?1 AND out_trade_no = ?2 ORDER BY id")?;
    let rows = st
        .query_map(params![merchant, no], |r| {
            Ok(PaymentEvent {
                at: r.get(0)?,
                kind: r.get(1)?,
                detail: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn attempts_in(conn: &Connection, merchant: &str, no: &str) -> Result<Vec<WebhookAttempt>> {
    let mut st = conn.prepare_cached("SELECT webhook_id, event_type, at, http_status, error FROM webhook_attempts WHERE merchant_id = ?1 AND out_trade_no = ?2 ORDER BY id")?;
    let rows = st
        .query_map(params![merchant, no], |r| {
            Ok(WebhookAttempt {
                webhook_id: r.get(0)?,
                event_type: r.get(1)?,
                at: r.get(2)?,
                http_status: r.get(3)?,
                error: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn refunds_in(conn: &Connection, merchant: &str, no: &str) -> Result<Vec<Refund>> {
    let mut st = conn.prepare_cached(
        "SELECT * FROM refunds WHERE merchant_id = ?1 AND out_trade_no = ?2 ORDER BY id",
    )?;
    let rows = st
        .query_map(params![merchant, no], refund_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn refund_in(conn: &Connection, merchant: &str, id: i64) -> Result<Option<Refund>> {
    Ok(conn
        .prepare_cached("SELECT * FROM refunds WHERE merchant_id = ?1 AND id = ?2")?
        .query_row(params![merchant, id], refund_from_row)
        .optional()?)
}

impl RefundTx for SqliteTx<'_> {
    async fn refunds_of(&mut self, merchant: &str, no: &str) -> Result<Vec<Refund>> {
        refunds_in(self.0, merchant, no)
    }

    async fn refund_by_id(&mut self, merchant: &str, id: i64) -> Result<Option<Refund>> {
        refund_in(self.0, merchant, id)
    }

    async fn insert_refund(&mut self, r: &RefundRow<'_>) -> Result<Refund> {
        self.0.prepare_cached(
            "INSERT INTO refunds (merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason, started_by, status, detail, created_at, completed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            r.merchant_id,
            r.out_trade_no,
            r.request_no,
            r.refund_key,
            r.amount_fen as i64,
            r.reason,
            r.started_by,
            r.status,
            r.detail,
            r.created_at,
            r.completed_at
        ])?;
        let id = self.0.last_insert_rowid();
        Ok(self
            .0
            .prepare_cached("SELECT * FROM refunds WHERE id = ?1")?
            .query_row([id], refund_from_row)?)
    }

    async fn end_refund(
        &mut self,
        merchant: &str,
        id: i64,
        status: &str,
        completed_at: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        self.0.prepare_cached(
            "UPDATE refunds SET status = ?3, completed_at = ?4, detail = CASE WHEN ?3 = 'SUCCESS' AND detail LIKE 'given up by %' THEN REPLACE(detail, ': the seller never confirmed it', ' (then the seller confirmed it on the provider''s page)') || COALESCE('; ' || ?5, '') WHEN ?3 = 'SUCCESS' THEN ?5 ELSE COALESCE(?5, detail) END WHERE merchant_id = ?1 AND id = ?2",
        )?
        .execute(params![merchant, id, status, completed_at, detail])?;
        Ok(())
    }

    async fn name_refund(&mut self, merchant: &str, id: i64, request_no: &str) -> Result<()> {
        self.0
            .prepare_cached(
                "UPDATE refunds SET request_no = ?3 WHERE merchant_id = ?1 AND id = ?2",
            )?
            .execute(params![merchant, id, request_no])?;
        Ok(())
    }

    async fn write_refunded(
        &mut self,
        merchant: &str,
        no: &str,
        status: &str,
        refunded_fen: u64,
        updated_at: &str,
    ) -> Result<()> {
        self.0.prepare_cached(
            "UPDATE payments SET status = ?3, refunded_fen = ?4, updated_at = ?5 WHERE merchant_id = ?1 AND out_trade_no = ?2",
        )?
        .execute(params![merchant, no, status, refunded_fen as i64, updated_at])?;
        Ok(())
    }

    async fn flag_payment(
        &mut self,
        merchant: &str,
        no: &str,
        reason: &str,
        at: &str,
    ) -> Result<()> {
        self.0.prepare_cached(
            "UPDATE payments SET review = ?3, updated_at = ?4 WHERE merchant_id = ?1 AND out_trade_no = ?2",
        )?
        .execute(params![merchant, no, reason, at])?;
        Ok(())
    }

    async fn fill_paid(
        &mut self,
        merchant: &str,
        no: &str,
        paid: &PaidFacts<'_>,
        at: &str,
    ) -> Result<()> {
        let finished_at = paid.finished.then_some(at);
        self.0.prepare_cached(
            "UPDATE payments SET trade_no = COALESCE(trade_no, NULLIF(?3, '')), buyer_email = COALESCE(buyer_email, NULLIF(?4, '')), paid_at = COALESCE(paid_at, NULLIF(?5, '')), finished_at = COALESCE(finished_at, ?6) WHERE merchant_id = ?1 AND out_trade_no = ?2",
        )?
        .execute(params![merchant, no, paid.trade_no, paid.buyer_email, paid.paid_at, finished_at])?;
        Ok(())
    }

    async fn enqueue_webhook_once(
        &mut self,
        merchant: &str,
        w: &PlannedWebhook,
        at_ms: i64,
    ) -> Result<bool> {
        let n = self.0.prepare_cached(
            "INSERT OR IGNORE INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
        )?
        .execute(params![w.event_id, merchant, w.url, w.body, at_ms, w.kind])?;
        Ok(n == 1)
    }
}

/// A rendered query's values as rusqlite binds them.
fn bound(values: Vec<SqlValue>) -> impl Iterator<Item = Value> {
    values.into_iter().map(|v| match v {
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Int(i) => Value::Integer(i),
    })
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn list_payments(&self, f: &PaymentFilter) -> Result<Vec<LedgerPayment>> {
        let q = ListQuery::payments(f).render::<Sqlite>();
        let sql = format!("SELECT * FROM payments{}", q.sql);
        let args = bound(q.values);
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&sql)?;
            let rows = st
                .query_map(params_from_iter(args), ledger_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn filter_totals(&self, f: &PaymentFilter) -> Result<FilterTotals> {
        let q = ListQuery::payment_totals(f).render_conditions::<Sqlite>();
        let sql = totals_sql(PAID, "", &q.sql);
        let args = bound(q.values);
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args), |r| {
                    let mut c = [0i64; 5];
                    for (i, v) in c.iter_mut().enumerate() {
                        *v = r.get(i)?;
                    }
                    Ok(FilterTotals::from_columns(c))
                })?)
        })
        .await
    }

    async fn ledger_payment(&self, merchant: &str, no: &str) -> Result<Option<LedgerPayment>> {
        let (merchant, no) = (merchant.to_owned(), no.to_owned());
        self.read(move |conn| ledger_payment_in(conn, &merchant, &no))
            .await
    }

    async fn payment_by_trade_no(&self, merchant: &str, trade_no: &str) -> Result<Option<Payment>> {
        let (merchant, trade_no) = (merchant.to_owned(), trade_no.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT * FROM payments WHERE trade_no = ?2 AND merchant_id = ?1 LIMIT 1",
                )?
                .query_row(params![merchant, trade_no], payment_from_row)
                .optional()?)
        })
        .await
    }

    async fn merchant_counts(&self) -> Result<Vec<MerchantCounts>> {
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT m.id, COUNT(p.out_trade_no),
                    COALESCE(SUM(p.status IN {PAID}), 0),
                    COALESCE(SUM(p.status IN ('PARTIALLY_REFUNDED','REFUNDED')), 0),
                    COALESCE(SUM(p.status = 'WAIT_BUYER_PAY'), 0),
                    COALESCE(SUM(CASE WHEN p.status IN {PAID} THEN p.total_fen ELSE 0 END), 0),
                    COALESCE(SUM(p.refunded_fen), 0)
             FROM merchants m LEFT JOIN payments p ON p.merchant_id = m.id
             GROUP BY m.id ORDER BY m.id"
            ))?;
            let rows = st
                .query_map([], |r| {
                    Ok(MerchantCounts {
                        id: r.get(0)?,
                        payments: r.get::<_, i64>(1)? as u64,
                        paid: r.get::<_, i64>(2)? as u64,
                        refunded: r.get::<_, i64>(3)? as u64,
                        waiting: r.get::<_, i64>(4)? as u64,
                        paid_fen: r.get::<_, i64>(5)? as u64,
                        refunded_fen: r.get::<_, i64>(6)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn daily_totals(
        &self,
        merchant: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<DayTotal>> {
        let (merchant, from, to) = (merchant.map(str::to_owned), from.to_owned(), to.to_owned());
        self.read(move |conn| {
        let mut st = conn.prepare_cached(&format!(
            "SELECT date(created_at, '+8 hours') AS day, COUNT(*), SUM(total_fen), SUM(refunded_fen)
             FROM payments
             WHERE created_at >= ?1 AND created_at < ?2 AND (?3 IS NULL OR merchant_id = ?3) AND status IN {PAID}
             GROUP BY day ORDER BY day"
        ))?;
        let rows = st
            .query_map(params![from, to, merchant], |r| {
                Ok(DayTotal {
                    date: r.get(0)?,
                    paid_count: r.get::<_, i64>(1)? as u64,
                    paid_fen: r.get::<_, i64>(2)? as u64,
                    refunded_fen: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
        })
        .await
    }

    async fn refunds_for(&self, merchant: &str, no: &str) -> Result<Vec<Refund>> {
        let (merchant, no) = (merchant.to_owned(), no.to_owned());
        self.read(move |conn| refunds_in(conn, &merchant, &no))
            .await
    }

    async fn payment_record(&self, merchant: &str, no: &str) -> Result<Option<PaymentRecord>> {
        let (merchant, no) = (merchant.to_owned(), no.to_owned());
        self.read(move |conn| {
            // One read transaction: WAL gives it one snapshot, whatever commits meanwhile.
            let tx = conn.unchecked_transaction()?;
            let Some(ledger) = ledger_payment_in(&tx, &merchant, &no)? else {
                return Ok(None);
            };
            let record = PaymentRecord {
                ledger,
                notifications: super::notifications::notifications_in(&tx, &merchant, &no)?,
                refunds: refunds_in(&tx, &merchant, &no)?,
                events: events_in(&tx, &merchant, &no)?,
                webhook_attempts: attempts_in(&tx, &merchant, &no)?,
            };
            tx.finish()?;
            Ok(Some(record))
        })
        .await
    }

    async fn refund(&self, merchant: &str, id: i64) -> Result<Option<Refund>> {
        let merchant = merchant.to_owned();
        self.read(move |conn| refund_in(conn, &merchant, id)).await
    }

    async fn claim_first_refund_send(&self, merchant: &str, id: i64) -> Result<bool> {
        let merchant = merchant.to_owned();
        self.write(move |conn| {
            // One process owns an SQLite store: its clock is the store's.
            let claimed = conn
                .prepare_cached(CLAIM_FIRST_REFUND_SEND)?
                .execute(params![merchant, id, crate::store::now_rfc3339()])?;
            Ok(claimed == 1)
        })
        .await
    }

    async fn claim_refund_send(&self, merchant: &str, id: i64, quiet_s: u64) -> Result<bool> {
        let merchant = merchant.to_owned();
        self.write(move |conn| {
            let now = u64::try_from(crate::domain::clock::now_unix()).unwrap_or(0);
            let quiet_before = crate::store::format_unix(now.saturating_sub(quiet_s));
            let claimed = conn.prepare_cached(CLAIM_REFUND_SEND)?.execute(params![
                merchant,
                id,
                quiet_before,
                crate::store::format_unix(now)
            ])?;
            Ok(claimed == 1)
        })
        .await
    }

    async fn pending_refunds(
        &self,
        after_id: i64,
        before: &str,
        limit: u32,
    ) -> Result<Vec<Refund>> {
        let before = before.to_owned();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(PENDING_REFUNDS)?;
            let rows = st
                .query_map(params![after_id, before, limit], refund_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn list_refunds(&self, f: &RefundFilter) -> Result<Vec<Refund>> {
        let q = ListQuery::refunds(f).render::<Sqlite>();
        let sql = format!("SELECT * FROM refunds{}", q.sql);
        let args = bound(q.values);
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&sql)?;
            let rows = st
                .query_map(params_from_iter(args), refund_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn refund_totals(&self, f: &RefundFilter) -> Result<RefundTotals> {
        let q = ListQuery::refund_totals(f).render_conditions::<Sqlite>();
        let sql = refund_totals_sql("", &q.sql);
        let args = bound(q.values);
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args), |r| {
                    let mut c = [0i64; RefundTotals::COLUMNS];
                    for (i, v) in c.iter_mut().enumerate() {
                        *v = r.get(i)?;
                    }
                    Ok(RefundTotals::from_columns(c))
                })?)
        })
        .await
    }

    async fn refunds_completed(&self, merchant: &str, from: &str, to: &str) -> Result<Vec<Refund>> {
        let merchant = merchant.to_owned();
        let from = from.to_owned();
        let to = to.to_owned();
        self.read(move |conn| {
        let mut st = conn.prepare_cached(
            "SELECT * FROM refunds WHERE merchant_id = ?1 AND status = 'SUCCESS' AND completed_at >= ?2 AND completed_at < ?3 ORDER BY id",
        )?;
        let rows = st
            .query_map(params![merchant, from, to], refund_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
        })
        .await
    }

    async fn begin_refund(&self, new: &NewRefund) -> Result<RefundBegun> {
        let new = new.clone();
        self.write(move |conn| run_rule(refund_rules::begin_refund(&mut SqliteTx(conn), &new)))
            .await
    }

    async fn refund_started(
        &self,
        merchant: &str,
        id: i64,
        request_no: &str,
        confirm_url: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let (m, no, c, d) = (
            merchant.to_owned(),
            request_no.to_owned(),
            confirm_url.map(str::to_owned),
            detail.map(str::to_owned),
        );
        self.write(move |conn| {
            conn.prepare_cached("UPDATE refunds SET confirm_url = COALESCE(?3, confirm_url), detail = COALESCE(?4, detail) WHERE merchant_id = ?1 AND id = ?2 AND status = 'PENDING' AND request_no = ?5")?
                .execute(params![m, id, c, d, no])?;
            Ok(())
        })
        .await
    }

    async fn discard_refund(&self, merchant: &str, id: i64) -> Result<bool> {
        let m = merchant.to_owned();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM refunds WHERE merchant_id = ?1 AND id = ?2 AND status = 'PENDING'",
                )?
                .execute(params![m, id])?;
            Ok(n == 1)
        })
        .await
    }

    async fn renumber_refund(&self, merchant: &str, id: i64, request_no: &str) -> Result<bool> {
        let (m, no) = (merchant.to_owned(), request_no.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE refunds SET request_no = ?3 WHERE merchant_id = ?1 AND id = ?2 AND status = 'PENDING' AND confirm_url IS NULL",
                )?
                .execute(params![m, id, no])?;
            Ok(n == 1)
        })
        .await
    }

    async fn settle_refund(&self, r: &RefundResult<'_>) -> Result<RefundApplied> {
        let (merchant, id, status) = (r.merchant_id.to_owned(), r.refund_id, r.status);
        let detail = r.detail.map(str::to_owned);
        let completed = r.completed_at.map(str::to_owned);
        let hook = r.webhook_url.map(str::to_owned);
        self.write(move |conn| {
            let r = RefundResult {
                merchant_id: &merchant,
                refund_id: id,
                status,
                detail: detail.as_deref(),
                completed_at: completed.as_deref(),
                webhook_url: hook.as_deref(),
            };
            run_rule(refund_rules::settle_refund(&mut SqliteTx(conn), &r))
        })
        .await
    }

    async fn apply_refund_report(&self, e: &ReportEffect<'_>) -> Result<RefundApplied> {
        let strings =
            [e.merchant_id, e.out_trade_no, e.notify_id, e.paid.trade_no].map(str::to_owned);
        let (buyer, paid_at, finished) = (
            e.paid.buyer_email.map(str::to_owned),
            e.paid.paid_at.map(str::to_owned),
            e.paid.finished,
        );
        let report = e.report.clone();
        let completed = e.completed_at.map(str::to_owned);
        let hook = e.webhook_url.map(str::to_owned);
        let record = e.record.as_ref().map(|r| {
            (
                OwnedRaw::new(&r.raw),
                r.record.clone(),
                r.finished,
                r.source.map(str::to_owned),
            )
        });
        self.write(move |conn| {
            let [merchant, no, notify_id, trade_no] = &strings;
            let record = record
                .as_ref()
                .map(|(raw, record, finished, source)| ReportRecord {
                    raw: raw.borrow(),
                    record: record.clone(),
                    finished: *finished,
                    source: source.as_deref(),
                });
            let e = ReportEffect {
                merchant_id: merchant,
                out_trade_no: no,
                report,
                notify_id,
                paid: PaidFacts {
                    trade_no,
                    buyer_email: buyer.as_deref(),
                    paid_at: paid_at.as_deref(),
                    finished,
                },
                completed_at: completed.as_deref(),
                webhook_url: hook.as_deref(),
                record,
            };
            run_rule(refund_rules::apply_refund_report(&mut SqliteTx(conn), &e))
        })
        .await
    }

    async fn keep_finish(&self, merchant: &str, no: &str, trade_no: &str) -> Result<bool> {
        let args = [merchant, no, trade_no].map(str::to_owned);
        self.write(move |conn| {
            let [merchant, no, trade_no] = &args;
            run_rule(refund_rules::keep_finish(
                &mut SqliteTx(conn),
                merchant,
                no,
                trade_no,
            ))
        })
        .await
    }

    async fn close_payment(
        &self,
        merchant: &str,
        no: &str,
        webhook_url: Option<&str>,
    ) -> Result<bool> {
        let (merchant, no, hook) = (
            merchant.to_owned(),
            no.to_owned(),
            webhook_url.map(str::to_owned),
        );
        self.write(move |conn| {
            run_rule(refund_rules::close_payment(
                &mut SqliteTx(conn),
                &merchant,
                &no,
                hook.as_deref(),
            ))
        })
        .await
    }

    async fn clear_review(
        &self,
        merchant: &str,
        no: &str,
        seen: &ReviewSeen,
        by: &str,
    ) -> Result<bool> {
        let args = (
            merchant.to_owned(),
            no.to_owned(),
            seen.reason.clone(),
            format!("cleared by {by}: {}", seen.reason),
            seen.updated_at.clone(),
        );
        self.write(move |conn| {
            let now = now_rfc3339();
            let cleared = conn
                .prepare_cached("UPDATE payments SET review = NULL, updated_at = ?4 WHERE merchant_id = ?1 AND out_trade_no = ?2 AND review = ?3 AND updated_at = ?5")?
                .execute(params![args.0, args.1, args.2, now, args.4])?;
            if cleared == 1 {
                conn.prepare_cached("INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) VALUES (?1, ?2, ?3, 'review', ?4)")?
                    .execute(params![args.0, args.1, now, args.3])?;
            }
            Ok(cleared == 1)
        })
        .await
    }

    async fn record_event(
        &self,
        merchant: &str,
        no: &str,
        kind: &str,
        detail: Option<&str>,
        once: bool,
    ) -> Result<()> {
        let args = (
            merchant.to_owned(),
            no.to_owned(),
            kind.to_owned(),
            detail.map(str::to_owned),
        );
        self.write(move |conn| {
            let sql = if once {
                "INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM payment_events WHERE merchant_id = ?1 AND out_trade_no = ?2 AND kind = ?4 AND detail IS ?5)"
            } else {
                "INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)"
            };
            conn.prepare_cached(sql)?
                .execute(params![args.0, args.1, now_rfc3339(), args.2, args.3])?;
            Ok(())
        })
        .await
    }

    async fn events_for(&self, merchant: &str, no: &str) -> Result<Vec<PaymentEvent>> {
        let (merchant, no) = (merchant.to_owned(), no.to_owned());
        self.read(move |conn| events_in(conn, &merchant, &no)).await
    }

    async fn record_webhook_attempt(
        &self,
        merchant: &str,
        no: &str,
        a: &WebhookAttempt,
    ) -> Result<()> {
        let (m, n, a) = (merchant.to_owned(), no.to_owned(), a.clone());
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO webhook_attempts (webhook_id, merchant_id, out_trade_no, event_type, at, http_status, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
                .execute(params![a.webhook_id, m, n, a.event_type, a.at, a.http_status, a.error])?;
            Ok(())
        })
        .await
    }

    async fn webhook_attempts_for(&self, merchant: &str, no: &str) -> Result<Vec<WebhookAttempt>> {
        let (merchant, no) = (merchant.to_owned(), no.to_owned());
        self.read(move |conn| attempts_in(conn, &merchant, &no))
            .await
    }
}
