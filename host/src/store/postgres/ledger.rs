//! [`Ledger`] on PostgreSQL: every refund decision runs in one transaction with the payment row
//! locked (`FOR UPDATE`), so two replicas never both start a refund past the paid amount.

use super::{payment_from_row, PostgresStore, Tx, PAYMENT_COLUMNS};
use crate::domain::refunds;
use crate::store::ledger::*;
use crate::store::{now_ms, now_rfc3339, Payment};
use anyhow::Result;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

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

async fn refunds_in(c: &impl GenericClient, merchant: &str, no: &str) -> Result<Vec<Refund>> {
    c.query(
        "SELECT * FROM refunds WHERE merchant_id = $1 AND out_trade_no = $2 ORDER BY id",
        &[&merchant, &no],
    )
    .await?
    .iter()
    .map(refund_from_row)
    .collect()
}

/// The payment, its row locked for the rest of the transaction.
async fn payment_locked(tx: &Tx<'_>, merchant: &str, no: &str) -> Result<Option<Payment>> {
    tx.query_opt(
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2 FOR UPDATE"),
        &[&merchant, &no],
    )
    .await?
    .as_ref()
    .map(payment_from_row)
    .transpose()
}

/// See the SQLite store's `apply_write`: the same steps, in this transaction.
async fn apply_write(
    tx: &Tx<'_>,
    payment: &Payment,
    write: RefundWrite,
    completed_at: Option<&str>,
    detail: Option<&str>,
    request_no: &str,
    webhook_url: Option<&str>,
) -> Result<RefundApplied> {
    let now = now_rfc3339();
    let done_at = completed_at.unwrap_or(&now).to_owned();
    let (m, no) = (&payment.merchant_id, &payment.out_trade_no);
    let (id, status) = match write {
        RefundWrite::Nothing => return Ok(RefundApplied::Known),
        RefundWrite::Flag(reason) => {
            tx.execute(
                "UPDATE payments SET review = $3, updated_at = $4 WHERE merchant_id = $1 AND out_trade_no = $2",
                &[m, no, &reason, &now],
            )
            .await?;
            return Ok(RefundApplied::Mismatch(reason));
        }
        RefundWrite::Update { id, status } => {
            tx.execute(
                "UPDATE refunds SET status = $3, completed_at = $4, detail = COALESCE($5, detail) WHERE merchant_id = $1 AND id = $2",
                &[m, &id, &status, &done_at, &detail],
            )
            .await?;
            (id, status)
        }
        RefundWrite::Insert { amount_fen } => {
            let rno = if request_no.is_empty() {
                format!("gateway-{}", now_ms())
            } else {
                request_no.to_owned()
            };
            let row = tx
                .query_one(
                    "INSERT INTO refunds (merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason, started_by, status, detail, created_at, completed_at)
                     VALUES ($1, $2, $3, NULL, $4, '', $5, 'SUCCESS', $6, $7, $8) RETURNING id",
                    &[m, no, &rno, &(amount_fen as i64), &refunds::STARTED_BY_GATEWAY, &detail, &now, &done_at],
                )
                .await?;
            (row.get::<_, i64>(0), refunds::SUCCESS)
        }
    };
    let all = refunds_in(tx, m, no).await?;
    if status != refunds::SUCCESS {
        return Ok(RefundApplied::Settled {
            refund_id: id,
            status: status.to_owned(),
            payment_status: payment.status.clone(),
        });
    }
    let refund = all
        .iter()
        .find(|r| r.id == id)
        .expect("just written")
        .clone();
    let succeeded =
        refunds::Totals::of(&all.iter().map(Refund::line).collect::<Vec<_>>()).succeeded;
    let (next, hooks) = after_success(payment, &refund, succeeded, &now, webhook_url);
    tx.execute(
        "UPDATE payments SET status = $3, refunded_fen = $4, updated_at = $5 WHERE merchant_id = $1 AND out_trade_no = $2",
        &[m, no, &next, &(succeeded as i64), &now],
    )
    .await?;
    for w in &hooks {
        tx.execute(
            "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT DO NOTHING",
            &[&w.event_id, m, &w.url, &w.body, &now_ms(), &w.kind],
        )
        .await?;
    }
    Ok(
        if refund.started_by == refunds::STARTED_BY_GATEWAY && completed_at.is_some() {
            RefundApplied::Recorded {
                refund_id: id,
                payment_status: next,
            }
        } else {
            RefundApplied::Settled {
                refund_id: id,
                status: status.to_owned(),
                payment_status: next,
            }
        },
    )
}

#[async_trait]
impl Ledger for PostgresStore {
    async fn list_payments(&self, f: &PaymentFilter) -> Result<Vec<LedgerPayment>> {
        let f = f.clone();
        self.run(|pool| async move {
            let mut sql =
                format!("SELECT {PAYMENT_COLUMNS}, refunded_fen FROM payments WHERE TRUE");
            let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("${}", args.len())));
            };
            if let Some(m) = &f.merchant {
                arg(&mut sql, " AND merchant_id = ?", Box::new(m.clone()));
            }
            if let Some(s) = &f.status {
                arg(&mut sql, " AND status = ?", Box::new(s.clone()));
            }
            if let Some(v) = &f.from {
                arg(&mut sql, " AND created_at >= ?", Box::new(v.clone()));
            }
            if let Some(v) = &f.to {
                arg(&mut sql, " AND created_at < ?", Box::new(v.clone()));
            }
            if let Some(v) = f.min_fen {
                arg(&mut sql, " AND total_fen >= ?", Box::new(v as i64));
            }
            if let Some(v) = f.max_fen {
                arg(&mut sql, " AND total_fen <= ?", Box::new(v as i64));
            }
            if let Some(q) = &f.q {
                let p = like_pattern(q);
                arg(&mut sql, " AND (out_trade_no ILIKE ?", Box::new(p.clone()));
                arg(&mut sql, " OR trade_no ILIKE ?", Box::new(p.clone()));
                arg(&mut sql, " OR buyer_email ILIKE ?)", Box::new(p));
            }
            if let Some(c) = &f.cursor {
                if f.merchant.is_some() {
                    arg(
                        &mut sql,
                        " AND (created_at, out_trade_no) < (?",
                        Box::new(c.created_at.clone()),
                    );
                    arg(&mut sql, ", ?)", Box::new(c.out_trade_no.clone()));
                } else {
                    arg(
                        &mut sql,
                        " AND (created_at, merchant_id, out_trade_no) < (?",
                        Box::new(c.created_at.clone()),
                    );
                    arg(&mut sql, ", ?", Box::new(c.merchant_id.clone()));
                    arg(&mut sql, ", ?)", Box::new(c.out_trade_no.clone()));
                }
            }
            arg(
                &mut sql,
                " ORDER BY created_at DESC, merchant_id DESC, out_trade_no DESC LIMIT ?",
                Box::new(i64::from(f.limit)),
            );
            let c = pool.get().await?;
            let refs: Vec<&(dyn ToSql + Sync)> = args
                .iter()
                .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                .collect();
            c.query(&sql, &refs)
                .await?
                .iter()
                .map(ledger_from_row)
                .collect()
        })
        .await
    }

    async fn ledger_payment(&self, merchant: &str, no: &str) -> Result<Option<LedgerPayment>> {
        let (m, n) = (merchant.to_owned(), no.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.query_opt(
                &format!("SELECT {PAYMENT_COLUMNS}, refunded_fen FROM payments WHERE merchant_id = $1 AND out_trade_no = $2"),
                &[&m, &n],
            )
            .await?
            .as_ref()
            .map(ledger_from_row)
            .transpose()
        })
        .await
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

    async fn refund(&self, merchant: &str, id: i64) -> Result<Option<Refund>> {
        let m = merchant.to_owned();
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.query_opt(
                "SELECT * FROM refunds WHERE merchant_id = $1 AND id = $2",
                &[&m, &id],
            )
            .await?
            .as_ref()
            .map(refund_from_row)
            .transpose()
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
        let new = new.clone();
        self.tx(move |tx| {
            Box::pin(async move {
                let Some(p) = payment_locked(tx, &new.merchant_id, &new.out_trade_no).await? else {
                    return Ok(RefundBegun::UnknownPayment);
                };
                let existing = refunds_in(tx, &new.merchant_id, &new.out_trade_no).await?;
                if let Some(key) = &new.refund_key {
                    if let Some(r) = existing.iter().find(|r| r.refund_key.as_ref() == Some(key)) {
                        return Ok(RefundBegun::Existing(r.clone()));
                    }
                }
                let lines: Vec<_> = existing.iter().map(Refund::line).collect();
                if let Err(why) = refunds::check_start(&p.status, p.total_fen, &lines, new.amount_fen) {
                    return Ok(RefundBegun::Refused(why));
                }
                let row = tx
                    .query_one(
                        "INSERT INTO refunds (merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason, started_by, status, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', $8) RETURNING *",
                        &[
                            &new.merchant_id,
                            &new.out_trade_no,
                            &new.request_no,
                            &new.refund_key,
                            &(new.amount_fen as i64),
                            &new.reason,
                            &new.started_by,
                            &now_rfc3339(),
                        ],
                    )
                    .await?;
                Ok(RefundBegun::New(refund_from_row(&row)?))
            })
        })
        .await
    }

    async fn refund_started(
        &self,
        merchant: &str,
        id: i64,
        confirm_url: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let (m, cu, d) = (
            merchant.to_owned(),
            confirm_url.map(str::to_owned),
            detail.map(str::to_owned),
        );
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "UPDATE refunds SET confirm_url = COALESCE($3, confirm_url), detail = COALESCE($4, detail) WHERE merchant_id = $1 AND id = $2",
                &[&m, &id, &cu, &d],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn settle_refund(&self, r: &RefundResult<'_>) -> Result<RefundApplied> {
        let (merchant, id, status) = (r.merchant_id.to_owned(), r.refund_id, r.status);
        let detail = r.detail.map(str::to_owned);
        let completed = r.completed_at.map(str::to_owned);
        let hook = r.webhook_url.map(str::to_owned);
        self.tx(move |tx| {
            Box::pin(async move {
                let Some(row) = tx
                    .query_opt(
                        "SELECT * FROM refunds WHERE merchant_id = $1 AND id = $2",
                        &[&merchant, &id],
                    )
                    .await?
                else {
                    return Ok(RefundApplied::UnknownPayment);
                };
                let refund = refund_from_row(&row)?;
                let Some(p) = payment_locked(tx, &merchant, &refund.out_trade_no).await? else {
                    return Ok(RefundApplied::UnknownPayment);
                };
                let lines: Vec<_> = refunds_in(tx, &merchant, &refund.out_trade_no)
                    .await?
                    .iter()
                    .map(Refund::line)
                    .collect();
                let write = plan_result(&lines, p.total_fen, id, status);
                apply_write(
                    tx,
                    &p,
                    write,
                    completed.as_deref(),
                    detail.as_deref(),
                    &refund.request_no,
                    hook.as_deref(),
                )
                .await
            })
        })
        .await
    }

    async fn apply_refund_report(&self, e: &ReportEffect<'_>) -> Result<RefundApplied> {
        let (merchant, no, notify_id) = (
            e.merchant_id.to_owned(),
            e.out_trade_no.to_owned(),
            e.notify_id.to_owned(),
        );
        let report = e.report.clone();
        let completed = e.completed_at.map(str::to_owned);
        let hook = e.webhook_url.map(str::to_owned);
        let trade_no = e.trade_no.to_owned();
        self.tx(move |tx| {
            Box::pin(async move {
                let Some(p) = payment_locked(tx, &merchant, &no).await? else {
                    return Ok(RefundApplied::UnknownPayment);
                };
                let claimed = tx
                    .execute(
                        "INSERT INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&merchant, &notify_id, &no, &now_rfc3339()],
                    )
                    .await?;
                if claimed == 0 {
                    return Ok(RefundApplied::Known);
                }
                if !trade_no.is_empty() {
                    tx.execute(
                        "UPDATE payments SET trade_no = COALESCE(trade_no, $3) WHERE merchant_id = $1 AND out_trade_no = $2",
                        &[&merchant, &no, &trade_no],
                    )
                    .await?;
                }
                let lines: Vec<_> = refunds_in(tx, &merchant, &no).await?.iter().map(Refund::line).collect();
                let write = plan_report(&lines, p.total_fen, &report);
                let detail = (!report.detail.is_empty()).then_some(report.detail.as_str());
                let done = completed.unwrap_or_else(now_rfc3339);
                apply_write(tx, &p, write, Some(&done), detail, &report.request_no, hook.as_deref()).await
            })
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
        self.tx(move |tx| {
            Box::pin(async move {
                let Some(p) = payment_locked(tx, &merchant, &no).await? else {
                    return Ok(false);
                };
                let t = crate::domain::state::transition(&p.status, crate::domain::state::TradeEvent::Closed);
                let Some(next) = t.to.filter(|_| p.status == crate::domain::state::WAIT_BUYER_PAY) else {
                    return Ok(false);
                };
                let now = now_rfc3339();
                tx.execute(
                    "UPDATE payments SET status = $3, updated_at = $4 WHERE merchant_id = $1 AND out_trade_no = $2",
                    &[&merchant, &no, &next, &now],
                )
                .await?;
                if let Some(url) = hook {
                    for ev in &t.events {
                        let kind = ev.name();
                        let event_id = crate::domain::events::event_id(&merchant, &no, kind, None);
                        let body = serde_json::json!({
                            "id": event_id, "type": kind, "merchant_id": merchant, "out_trade_no": no,
                            "subject": p.subject, "status": next, "previous_status": p.status,
                            "total_fee": p.total_fee(), "seller_email": p.seller, "trade_no": p.trade_no,
                            "created_at": now,
                        })
                        .to_string();
                        tx.execute(
                            "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT DO NOTHING",
                            &[&event_id, &merchant, &url, &body, &now_ms(), &kind],
                        )
                        .await?;
                    }
                }
                Ok(true)
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
    ) -> Result<()> {
        let args = (
            merchant.to_owned(),
            no.to_owned(),
            kind.to_owned(),
            detail.map(str::to_owned),
        );
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.execute(
                "INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) VALUES ($1, $2, $3, $4, $5)",
                &[&args.0, &args.1, &now_rfc3339(), &args.2, &args.3],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn events_for(&self, merchant: &str, no: &str) -> Result<Vec<PaymentEvent>> {
        let (m, n) = (merchant.to_owned(), no.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.query(
                "SELECT at, kind, detail FROM payment_events WHERE merchant_id = $1 AND out_trade_no = $2 ORDER BY id",
                &[&m, &n],
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
        })
        .await
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
        let (m, n) = (merchant.to_owned(), no.to_owned());
        self.run(|pool| async move {
            let c = pool.get().await?;
            c.query(
                "SELECT webhook_id, event_type, at, http_status, error FROM webhook_attempts WHERE merchant_id = $1 AND out_trade_no = $2 ORDER BY id",
                &[&m, &n],
            )
            .await?
            .iter()
            .map(attempt_from_row)
            .collect()
        })
        .await
    }
}
