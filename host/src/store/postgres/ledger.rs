//! [`Ledger`] on PostgreSQL. The refund rules are [`refund_rules`]'s, each run in one
//! transaction over the primitives of [`RefundTx`] below, with the payment row locked
//! (`FOR UPDATE`), so two replicas never both start a refund past the paid amount.

use super::tx::{in_tx, PgTx};
use super::{payment_from_row, PostgresStore, PAYMENT_COLUMNS};
use crate::store::ledger::*;
use crate::store::ledger_sql::{refund_totals_sql, totals_sql, Dialect, ListQuery, SqlValue};
use crate::store::refund_rules::{self, RefundRow, RefundTx};
use crate::store::{now_rfc3339, Payment, PlannedWebhook};
use anyhow::Result;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

/// The database's clock now, as payhost stores times (`YYYY-MM-DDTHH:MM:SSZ`, UTC).
const DB_NOW: &str =
    r#"to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#;
/// The database's clock `$3` seconds ago, in the same form.
const DB_QUIET_BEFORE: &str = r#"to_char((clock_timestamp() - make_interval(secs => $3::float8)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#;
use tokio_postgres::Row;

/// The payment list's query ([`ListQuery`]) in PostgreSQL's words: `$n`, and ILIKE (its
/// escape is `\` by default).
struct Postgres;

impl Dialect for Postgres {
    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    fn like(column: &str, placeholder: &str) -> String {
        format!("{column} ILIKE {placeholder}")
    }
}

const PAID: &str = "('TRADE_SUCCESS','TRADE_FINISHED','PARTIALLY_REFUNDED','REFUNDED')";

fn refund_from_row(r: &Row) -> Result<Refund> {
    Ok(Refund {
        id: r.try_get("id")?,
        merchant_id: r.try_get("merchant_id")?,
        out_trade_no: r.try_get("out_trade_no")?,
        request_no: r.try_get("request_no")?,
        refund_key: r.try_get("refund_key")?,
        amount_fen: r.try_get::<_, i64>("amount_fen")? as u64,
        reason: r.try_get("reason")?,
        started_by: r.try_get("started_by")?,
        status: r.try_get("status")?,
        confirm_url: r.try_get("confirm_url")?,
        detail: r.try_get("detail")?,
        created_at: r.try_get("created_at")?,
        completed_at: r.try_get("completed_at")?,
    })
}

fn ledger_from_row(r: &Row) -> Result<LedgerPayment> {
    Ok(LedgerPayment {
        payment: payment_from_row(r)?,
        refunded_fen: r.try_get::<_, i64>("refunded_fen")? as u64,
    })
}

fn attempt_from_row(r: &Row) -> Result<WebhookAttempt> {
    Ok(WebhookAttempt {
        webhook_id: r.try_get(0)?,
        event_type: r.try_get(1)?,
        at: r.try_get(2)?,
        http_status: r.try_get::<_, Option<i32>>(3)?.map(|s| s as u16),
        error: r.try_get(4)?,
    })
}

/// A refund's columns, named: the statements below are prepared once per connection, and a
/// prepared `*` would break once a later migration adds a column (a rolling upgrade).
macro_rules! refund_columns {
    () => {
        "id, merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason, started_by, status, confirm_url, detail, created_at, completed_at"
    };
}
const REFUNDS_OF: &str = concat!(
    "SELECT ",
    refund_columns!(),
    " FROM refunds WHERE merchant_id = $1 AND out_trade_no = $2 ORDER BY id"
);
const REFUND_BY_ID: &str = concat!(
    "SELECT ",
    refund_columns!(),
    " FROM refunds WHERE merchant_id = $1 AND id = $2"
);
const INSERT_REFUND: &str = concat!(
    "INSERT INTO refunds (merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason, started_by, status, detail, created_at, completed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
    refund_columns!()
);

async fn ledger_payment_in(
    c: &impl GenericClient,
    merchant: &str,
    no: &str,
) -> Result<Option<LedgerPayment>> {
    c.query_opt(
        &format!("SELECT {PAYMENT_COLUMNS}, refunded_fen FROM payments WHERE merchant_id = $1 AND out_trade_no = $2"),
        &[&merchant, &no],
    )
    .await?
    .as_ref()
    .map(ledger_from_row)
    .transpose()
}

async fn events_in(c: &impl GenericClient, merchant: &str, no: &str) -> Result<Vec<PaymentEvent>> {
    c.query(
        "SELECT at, kind, detail FROM payment_events WHERE merchant_id = $1 AND out_trade_no = $2 ORDER BY id",
        &[&merchant, &no],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(PaymentEvent {
            at: r.try_get(0)?,
            kind: r.try_get(1)?,
            detail: r.try_get(2)?,
        })
    })
    .collect()
}

async fn attempts_in(
    c: &impl GenericClient,
    merchant: &str,
    no: &str,
) -> Result<Vec<WebhookAttempt>> {
    c.query(
        "SELECT webhook_id, event_type, at, http_status, error FROM webhook_attempts WHERE merchant_id = $1 AND out_trade_no = $2 ORDER BY id",
        &[&merchant, &no],
    )
    .await?
    .iter()
    .map(attempt_from_row)
    .collect()
}

async fn refunds_in(c: &impl GenericClient, merchant: &str, no: &str) -> Result<Vec<Refund>> {
    c.query(REFUNDS_OF, &[&merchant, &no])
        .await?
        .iter()
        .map(refund_from_row)
        .collect()
}

async fn refund_in(c: &impl GenericClient, merchant: &str, id: i64) -> Result<Option<Refund>> {
    c.query_opt(REFUND_BY_ID, &[&merchant, &id])
        .await?
        .as_ref()
        .map(refund_from_row)
        .transpose()
}

impl RefundTx for PgTx {
    async fn refunds_of(&mut self, merchant: &str, no: &str) -> Result<Vec<Refund>> {
        self.query(REFUNDS_OF, &[&merchant, &no])
            .await?
            .iter()
            .map(refund_from_row)
            .collect()
    }

    async fn refund_by_id(&mut self, merchant: &str, id: i64) -> Result<Option<Refund>> {
        self.query_opt(REFUND_BY_ID, &[&merchant, &id])
            .await?
            .as_ref()
            .map(refund_from_row)
            .transpose()
    }

    async fn insert_refund(&mut self, r: &RefundRow<'_>) -> Result<Refund> {
        let row = self
            .query_one(
                INSERT_REFUND,
                &[
                    &r.merchant_id,
                    &r.out_trade_no,
                    &r.request_no,
                    &r.refund_key,
                    &(r.amount_fen as i64),
                    &r.reason,
                    &r.started_by,
                    &r.status,
                    &r.detail,
                    &r.created_at,
                    &r.completed_at,
                ],
            )
            .await?;
        refund_from_row(&row)
    }

    async fn end_refund(
        &mut self,
        merchant: &str,
        id: i64,
        status: &str,
        completed_at: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        self.execute(
            "UPDATE refunds SET status = $3, completed_at = $4, detail = CASE WHEN $3 = 'SUCCESS' AND detail LIKE 'given up by %' THEN REPLACE(detail, ': the seller never confirmed it', ' (then the seller confirmed it on the provider''s page)') || COALESCE('; ' || $5::text, '') WHEN $3 = 'SUCCESS' THEN $5 ELSE COALESCE($5, detail) END WHERE merchant_id = $1 AND id = $2",
            &[&merchant, &id, &status, &completed_at, &detail],
        )
        .await?;
        Ok(())
    }

    async fn name_refund(&mut self, merchant: &str, id: i64, request_no: &str) -> Result<()> {
        self.execute(
            "UPDATE refunds SET request_no = $3 WHERE merchant_id = $1 AND id = $2",
            &[&merchant, &id, &request_no],
        )
        .await?;
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
        self.execute(
            "UPDATE payments SET status = $3, refunded_fen = $4, updated_at = $5 WHERE merchant_id = $1 AND out_trade_no = $2",
            &[&merchant, &no, &status, &(refunded_fen as i64), &updated_at],
        )
        .await?;
        Ok(())
    }

    async fn flag_payment(
        &mut self,
        merchant: &str,
        no: &str,
        reason: &str,
        at: &str,
    ) -> Result<()> {
        self.execute(
            "UPDATE payments SET review = $3, updated_at = $4 WHERE merchant_id = $1 AND out_trade_no = $2",
            &[&merchant, &no, &reason, &at],
        )
        .await?;
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
        self.execute(
            "UPDATE payments SET trade_no = COALESCE(trade_no, NULLIF($3, '')), buyer_email = COALESCE(buyer_email, NULLIF($4, '')), paid_at = COALESCE(paid_at, NULLIF($5, '')), finished_at = COALESCE(finished_at, $6) WHERE merchant_id = $1 AND out_trade_no = $2",
            &[&merchant, &no, &paid.trade_no, &paid.buyer_email, &paid.paid_at, &finished_at],
        )
        .await?;
        Ok(())
    }

    async fn enqueue_webhook_once(
        &mut self,
        merchant: &str,
        w: &PlannedWebhook,
        at_ms: i64,
    ) -> Result<bool> {
        let n = self
            .execute(
                "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (event_id) DO NOTHING",
                &[&w.event_id, &merchant, &w.url, &w.body, &at_ms, &w.kind],
            )
            .await?;
        Ok(n == 1)
    }
}

/// A rendered query's values as tokio-postgres binds them.
fn bound(values: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| match v {
            SqlValue::Text(s) => s as &(dyn ToSql + Sync),
            SqlValue::Int(i) => i,
        })
        .collect()
}

#[async_trait]
impl Ledger for PostgresStore {
    async fn list_payments(&self, f: &PaymentFilter) -> Result<Vec<LedgerPayment>> {
        let q = ListQuery::payments(f).render::<Postgres>();
        self.run(|pool| async move {
            let sql = format!(
                "SELECT {PAYMENT_COLUMNS}, refunded_fen FROM payments{}",
                q.sql
            );
            let c = pool.get().await?;
            c.query(&sql, &bound(&q.values))
                .await?
                .iter()
                .map(ledger_from_row)
                .collect()
        })
        .await
    }

    async fn filter_totals(&self, f: &PaymentFilter) -> Result<FilterTotals> {
        let q = ListQuery::payment_totals(f).render_conditions::<Postgres>();
        self.run(|pool| async move {
            let sql = totals_sql(PAID, "::BIGINT", &q.sql);
            let c = pool.get().await?;
            let r = c.query_one(&sql, &bound(&q.values)).await?;
            let mut cols = [0i64; 5];
            for (i, v) in cols.iter_mut().enumerate() {
                *v = r.try_get(i)?;
            }
            Ok(FilterTotals::from_columns(cols))
        })
        .await
    }

    async fn ledger_payment(&self, merchant: &str, no: &str) -> Result<Option<LedgerPayment>> {
        ledger_payment_in(&self.client().await?, merchant, no).await
    }

    async fn payment_by_trade_no(&self, merchant: &str, trade_no: &str) -> Result<Option<Payment>> {
        let (m, t) = (merchant.to_owned(), trade_no.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.query_opt(
                &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE trade_no = $2 AND merchant_id = $1 LIMIT 1"),
                &[&m, &t],
            )
            .await?
            .as_ref()
            .map(payment_from_row)
            .transpose()
        })
        .await
    }

    async fn merchant_counts(&self) -> Result<Vec<MerchantCounts>> {
        self.run(|pool| async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT m.id, COUNT(p.out_trade_no)::BIGINT,
                            COUNT(*) FILTER (WHERE p.status IN {PAID})::BIGINT,
                            COUNT(*) FILTER (WHERE p.status IN ('PARTIALLY_REFUNDED','REFUNDED'))::BIGINT,
                            COUNT(*) FILTER (WHERE p.status = 'WAIT_BUYER_PAY')::BIGINT,
                            COALESCE(SUM(p.total_fen) FILTER (WHERE p.status IN {PAID}), 0)::BIGINT,
                            COALESCE(SUM(p.refunded_fen), 0)::BIGINT
                         FROM merchants m LEFT JOIN payments p ON p.merchant_id = m.id
                         GROUP BY m.id ORDER BY m.id"
                    ),
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(MerchantCounts {
                        id: r.try_get(0)?,
                        payments: r.try_get::<_, i64>(1)? as u64,
                        paid: r.try_get::<_, i64>(2)? as u64,
                        refunded: r.try_get::<_, i64>(3)? as u64,
                        waiting: r.try_get::<_, i64>(4)? as u64,
                        paid_fen: r.try_get::<_, i64>(5)? as u64,
                        refunded_fen: r.try_get::<_, i64>(6)? as u64,
                    })
                })
                .collect()
        })
        .await
    }

    async fn daily_totals(
        &self,
        merchant: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<DayTotal>> {
        let (m, from, to) = (merchant.map(str::to_owned), from.to_owned(), to.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT to_char(created_at::timestamp + interval '8 hours', 'YYYY-MM-DD') AS day,
                                COUNT(*)::BIGINT, SUM(total_fen)::BIGINT, SUM(refunded_fen)::BIGINT
                         FROM payments
                         WHERE created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR merchant_id = $3) AND status IN {PAID}
                         GROUP BY day ORDER BY day"
                    ),
                    &[&from, &to, &m],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(DayTotal {
                        date: r.try_get(0)?,
                        paid_count: r.try_get::<_, i64>(1)? as u64,
                        paid_fen: r.try_get::<_, i64>(2)? as u64,
                        refunded_fen: r.try_get::<_, i64>(3)? as u64,
                    })
                })
                .collect()
        })
        .await
    }

    async fn refunds_for(&self, merchant: &str, no: &str) -> Result<Vec<Refund>> {
        let (m, n) = (merchant.to_owned(), no.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            refunds_in(&c, &m, &n).await
        })
        .await
    }

    async fn payment_record(&self, merchant: &str, no: &str) -> Result<Option<PaymentRecord>> {
        let (m, n) = (merchant.to_owned(), no.to_owned());
        self.tx(move |t| {
            Box::pin(async move {
                // One snapshot for every read below (READ COMMITTED takes one per statement).
                t.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?;
                let Some(ledger) = ledger_payment_in(t, &m, &n).await? else {
                    return Ok(None);
                };
                Ok(Some(PaymentRecord {
                    ledger,
                    notifications: super::notifications::notifications_in(t, &m, &n).await?,
                    refunds: refunds_in(t, &m, &n).await?,
                    events: events_in(t, &m, &n).await?,
                    webhook_attempts: attempts_in(t, &m, &n).await?,
                }))
            })
        })
        .await
    }

    async fn refund(&self, merchant: &str, id: i64) -> Result<Option<Refund>> {
        refund_in(&self.client().await?, merchant, id).await
    }

    async fn claim_first_refund_send(&self, merchant: &str, id: i64) -> Result<bool> {
        let claimed = self
            .client()
            .await?
            .execute(
                &format!("UPDATE refunds SET last_sent_at = {DB_NOW} WHERE merchant_id = $1 AND id = $2 AND status = 'PENDING' AND last_sent_at IS NULL"),
                &[&merchant, &id],
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn claim_refund_send(&self, merchant: &str, id: i64, quiet_s: u64) -> Result<bool> {
        // The database's clock, as the webhook outbox's leases: a replica whose clock runs ahead
        // must not find a send still on its way elsewhere quiet already.
        let quiet = quiet_s as f64;
        let claimed = self
            .client()
            .await?
            .execute(
                &format!("UPDATE refunds SET last_sent_at = {DB_NOW} WHERE merchant_id = $1 AND id = $2 AND status = 'PENDING' AND confirm_url IS NULL AND created_at < {DB_QUIET_BEFORE} AND (last_sent_at IS NULL OR last_sent_at < {DB_QUIET_BEFORE})"),
                &[&merchant, &id, &quiet],
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn pending_refunds(
        &self,
        after_id: i64,
        before: &str,
        limit: u32,
    ) -> Result<Vec<Refund>> {
        let (before, limit) = (before.to_owned(), i64::from(limit));
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.query(
                "SELECT * FROM refunds WHERE status = 'PENDING' AND id > $1 AND created_at < $2 ORDER BY id LIMIT $3",
                &[&after_id, &before, &limit],
            )
            .await?
            .iter()
            .map(refund_from_row)
            .collect()
        })
        .await
    }

    async fn list_refunds(&self, f: &RefundFilter) -> Result<Vec<Refund>> {
        let q = ListQuery::refunds(f).render::<Postgres>();
        self.run(|pool| async move {
            let sql = format!("SELECT * FROM refunds{}", q.sql);
            let c = pool.get().await?;
            c.query(&sql, &bound(&q.values))
                .await?
                .iter()
                .map(refund_from_row)
                .collect()
        })
        .await
    }

    async fn refund_totals(&self, f: &RefundFilter) -> Result<RefundTotals> {
        let q = ListQuery::refund_totals(f).render_conditions::<Postgres>();
        self.run(|pool| async move {
            let sql = refund_totals_sql("::BIGINT", &q.sql);
            let c = pool.get().await?;
            let r = c.query_one(&sql, &bound(&q.values)).await?;
            let mut cols = [0i64; RefundTotals::COLUMNS];
            for (i, v) in cols.iter_mut().enumerate() {
                *v = r.try_get(i)?;
            }
            Ok(RefundTotals::from_columns(cols))
        })
        .await
    }

    async fn refunds_completed(&self, merchant: &str, from: &str, to: &str) -> Result<Vec<Refund>> {
        let (m, from, to) = (merchant.to_owned(), from.to_owned(), to.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.query(
                "SELECT * FROM refunds WHERE merchant_id = $1 AND status = 'SUCCESS' AND completed_at >= $2 AND completed_at < $3 ORDER BY id",
                &[&m, &from, &to],
            )
            .await?
            .iter()
            .map(refund_from_row)
            .collect()
        })
        .await
    }

    async fn begin_refund(&self, new: &NewRefund) -> Result<RefundBegun> {
        in_tx!(self, |tx| refund_rules::begin_refund(tx, new))
    }

    async fn refund_started(
        &self,
        merchant: &str,
        id: i64,
        request_no: &str,
        confirm_url: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let (m, no, cu, d) = (
            merchant.to_owned(),
            request_no.to_owned(),
            confirm_url.map(str::to_owned),
            detail.map(str::to_owned),
        );
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "UPDATE refunds SET confirm_url = COALESCE($3, confirm_url), detail = COALESCE($4, detail) WHERE merchant_id = $1 AND id = $2 AND status = 'PENDING' AND request_no = $5",
                &[&m, &id, &cu, &d, &no],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn discard_refund(&self, merchant: &str, id: i64) -> Result<bool> {
        let m = merchant.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            let n = c
                .execute(
                    "DELETE FROM refunds WHERE merchant_id = $1 AND id = $2 AND status = 'PENDING'",
                    &[&m, &id],
                )
                .await?;
            Ok(n == 1)
        })
        .await
    }

    async fn renumber_refund(&self, merchant: &str, id: i64, request_no: &str) -> Result<bool> {
        let (m, no) = (merchant.to_owned(), request_no.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            let n = c
                .execute(
                    "UPDATE refunds SET request_no = $3 WHERE merchant_id = $1 AND id = $2 AND status = 'PENDING' AND confirm_url IS NULL",
                    &[&m, &id, &no],
                )
                .await?;
            Ok(n == 1)
        })
        .await
    }

    async fn settle_refund(&self, r: &RefundResult<'_>) -> Result<RefundApplied> {
        in_tx!(self, |tx| refund_rules::settle_refund(tx, r))
    }

    async fn apply_refund_report(&self, e: &ReportEffect<'_>) -> Result<RefundApplied> {
        in_tx!(self, |tx| refund_rules::apply_refund_report(tx, e))
    }

    async fn keep_finish(&self, merchant: &str, no: &str, trade_no: &str) -> Result<bool> {
        in_tx!(self, |tx| refund_rules::keep_finish(
            tx, merchant, no, trade_no
        ))
    }

    async fn close_payment(
        &self,
        merchant: &str,
        no: &str,
        webhook_url: Option<&str>,
    ) -> Result<bool> {
        in_tx!(self, |tx| refund_rules::close_payment(
            tx,
            merchant,
            no,
            webhook_url
        ))
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
        self.tx(move |tx| {
            Box::pin(async move {
                let now = now_rfc3339();
                let cleared = tx
                    .execute(
                        "UPDATE payments SET review = NULL, updated_at = $4 WHERE merchant_id = $1 AND out_trade_no = $2 AND review = $3 AND updated_at = $5",
                        &[&args.0, &args.1, &args.2, &now, &args.4],
                    )
                    .await?;
                if cleared == 1 {
                    tx.execute(
                        "INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) VALUES ($1, $2, $3, 'review', $4)",
                        &[&args.0, &args.1, &now, &args.3],
                    )
                    .await?;
                }
                Ok(cleared == 1)
            })
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
        self.run(|pool| async move {
            let mut c = pool.get().await?;
            let values: [&(dyn ToSql + Sync); 5] =
                [&args.0, &args.1, &now_rfc3339(), &args.2, &args.3];
            if !once {
                c.execute(
                    "INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) VALUES ($1, $2, $3, $4, $5)",
                    &values,
                )
                .await?;
                return Ok(());
            }
            // Two replicas keeping the same event at once would each find none (READ COMMITTED):
            // the payment's row, locked first as every writer of a payment's rows does, puts
            // them one after the other, and the second finds the first's.
            let tx = c.transaction().await?;
            tx.execute(
                "SELECT 1 FROM payments WHERE merchant_id = $1 AND out_trade_no = $2 FOR NO KEY UPDATE",
                &[&args.0, &args.1],
            )
            .await?;
            tx.execute(
                "INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM payment_events WHERE merchant_id = $1 AND out_trade_no = $2 AND kind = $4 AND detail IS NOT DISTINCT FROM $5)",
                &values,
            )
            .await?;
            anyhow::Context::context(tx.commit().await, "the database could not commit")?;
            Ok(())
        })
        .await
    }

    async fn events_for(&self, merchant: &str, no: &str) -> Result<Vec<PaymentEvent>> {
        events_in(&self.client().await?, merchant, no).await
    }

    async fn record_webhook_attempt(
        &self,
        merchant: &str,
        no: &str,
        a: &WebhookAttempt,
    ) -> Result<()> {
        let (m, n, a) = (merchant.to_owned(), no.to_owned(), a.clone());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "INSERT INTO webhook_attempts (webhook_id, merchant_id, out_trade_no, event_type, at, http_status, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&a.webhook_id, &m, &n, &a.event_type, &a.at, &a.http_status.map(i32::from), &a.error],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn webhook_attempts_for(&self, merchant: &str, no: &str) -> Result<Vec<WebhookAttempt>> {
        attempts_in(&self.client().await?, merchant, no).await
    }
}
