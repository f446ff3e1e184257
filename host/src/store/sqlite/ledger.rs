//! [`Ledger`] on SQLite: reads on the reader pool, every write one job of the writer's group
//! commit (the refund rules and the payment's move in one savepoint).

use super::{payment_from_row, SqliteStore};
use crate::domain::refunds;
use crate::store::ledger::*;
use crate::store::{now_ms, now_rfc3339, Payment};
use anyhow::Result;
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

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

fn refunds_in(conn: &Connection, merchant: &str, no: &str) -> Result<Vec<Refund>> {
    let mut st = conn.prepare_cached(
        "SELECT * FROM refunds WHERE merchant_id = ?1 AND out_trade_no = ?2 ORDER BY id",
    )?;
    let rows = st
        .query_map(params![merchant, no], refund_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn payment_in(conn: &Connection, merchant: &str, no: &str) -> Result<Option<Payment>> {
    Ok(conn
        .prepare_cached("SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
        .query_row(params![merchant, no], payment_from_row)
        .optional()?)
}

fn flag(conn: &Connection, merchant: &str, no: &str, reason: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE payments SET review = ?3, updated_at = ?4 WHERE merchant_id = ?1 AND out_trade_no = ?2",
    )?
    .execute(params![merchant, no, reason, now_rfc3339()])?;
    Ok(())
}

/// Applies a planned write inside the writer's transaction: the refund row, then (for a success)
/// the payment's refunded total, status and webhooks.
fn apply_write(
    conn: &Connection,
    payment: &Payment,
    write: RefundWrite,
    completed_at: Option<&str>,
    detail: Option<&str>,
    request_no: &str,
    webhook_url: Option<&str>,
) -> Result<RefundApplied> {
    let now = now_rfc3339();
    let done_at = completed_at.unwrap_or(&now).to_owned();
    let (id, status) = match write {
        RefundWrite::Nothing => return Ok(RefundApplied::Known),
        RefundWrite::Flag(reason) => {
            flag(conn, &payment.merchant_id, &payment.out_trade_no, &reason)?;
            return Ok(RefundApplied::Mismatch(reason));
        }
        RefundWrite::Update { id, status } => {
            conn.prepare_cached(
                "UPDATE refunds SET status = ?3, completed_at = ?4, detail = COALESCE(?5, detail) WHERE merchant_id = ?1 AND id = ?2",
            )?
            .execute(params![payment.merchant_id, id, status, done_at, detail])?;
            (id, status)
        }
        RefundWrite::Insert { amount_fen } => {
            let no = if request_no.is_empty() {
                format!("gateway-{}", now_ms())
            } else {
                request_no.to_owned()
            };
            conn.prepare_cached(
                "INSERT INTO refunds (merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason, started_by, status, detail, created_at, completed_at)
                 VALUES (?1, ?2, ?3, NULL, ?4, '', ?5, 'SUCCESS', ?6, ?7, ?8)",
            )?
            .execute(params![
                payment.merchant_id,
                payment.out_trade_no,
                no,
                amount_fen as i64,
                refunds::STARTED_BY_GATEWAY,
                detail,
                now,
                done_at
            ])?;
            (conn.last_insert_rowid(), refunds::SUCCESS)
        }
    };
    let all = refunds_in(conn, &payment.merchant_id, &payment.out_trade_no)?;
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
    conn.prepare_cached(
        "UPDATE payments SET status = ?3, refunded_fen = ?4, updated_at = ?5 WHERE merchant_id = ?1 AND out_trade_no = ?2",
    )?
    .execute(params![
        payment.merchant_id,
        payment.out_trade_no,
        next,
        succeeded as i64,
        now
    ])?;
    for w in &hooks {
        conn.prepare_cached("INSERT OR IGNORE INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)")?
            .execute(params![w.event_id, payment.merchant_id, w.url, w.body, now_ms(), w.kind])?;
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
impl Ledger for SqliteStore {
    async fn list_payments(&self, f: &PaymentFilter) -> Result<Vec<LedgerPayment>> {
        let mut sql = String::from("SELECT * FROM payments WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(m) = &f.merchant {
            arg(&mut sql, " AND merchant_id = ?", Value::Text(m.clone()));
        }
        if let Some(s) = &f.status {
            arg(&mut sql, " AND status = ?", Value::Text(s.clone()));
        }
        if let Some(v) = &f.from {
            arg(&mut sql, " AND created_at >= ?", Value::Text(v.clone()));
        }
        if let Some(v) = &f.to {
            arg(&mut sql, " AND created_at < ?", Value::Text(v.clone()));
        }
        if let Some(v) = f.min_fen {
            arg(&mut sql, " AND total_fen >= ?", Value::Integer(v as i64));
        }
        if let Some(v) = f.max_fen {
            arg(&mut sql, " AND total_fen <= ?", Value::Integer(v as i64));
        }
        if let Some(q) = &f.q {
            let p = Value::Text(like_pattern(q));
            arg(&mut sql, " AND (out_trade_no LIKE ? ESCAPE '\\'", p.clone());
            arg(&mut sql, " OR trade_no LIKE ? ESCAPE '\\'", p.clone());
            arg(&mut sql, " OR buyer_email LIKE ? ESCAPE '\\')", p);
        }
        if let Some(c) = &f.cursor {
            if f.merchant.is_some() {
                arg(
                    &mut sql,
                    " AND (created_at, out_trade_no) < (?",
                    Value::Text(c.created_at.clone()),
                );
                arg(&mut sql, ", ?)", Value::Text(c.out_trade_no.clone()));
            } else {
                arg(
                    &mut sql,
                    " AND (created_at, merchant_id, out_trade_no) < (?",
                    Value::Text(c.created_at.clone()),
                );
                arg(&mut sql, ", ?", Value::Text(c.merchant_id.clone()));
                arg(&mut sql, ", ?)", Value::Text(c.out_trade_no.clone()));
            }
        }
        arg(
            &mut sql,
            " ORDER BY created_at DESC, merchant_id DESC, out_trade_no DESC LIMIT ?",
            Value::Integer(i64::from(f.limit)),
        );
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&sql)?;
            let rows = st
                .query_map(params_from_iter(args), ledger_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn ledger_payment(&self, merchant: &str, no: &str) -> Result<Option<LedgerPayment>> {
        let (merchant, no) = (merchant.to_owned(), no.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2",
                )?
                .query_row(params![merchant, no], ledger_from_row)
                .optional()?)
        })
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

    async fn refund(&self, merchant: &str, id: i64) -> Result<Option<Refund>> {
        let merchant = merchant.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT * FROM refunds WHERE merchant_id = ?1 AND id = ?2")?
                .query_row(params![merchant, id], refund_from_row)
                .optional()?)
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
        self.write(move |conn| {
            let Some(p) = payment_in(conn, &new.merchant_id, &new.out_trade_no)? else {
                return Ok(RefundBegun::UnknownPayment);
            };
            let existing = refunds_in(conn, &new.merchant_id, &new.out_trade_no)?;
            if let Some(key) = &new.refund_key {
                if let Some(r) = existing.iter().find(|r| r.refund_key.as_ref() == Some(key)) {
                    return Ok(RefundBegun::Existing(r.clone()));
                }
            }
            let lines: Vec<_> = existing.iter().map(Refund::line).collect();
            if let Err(why) = refunds::check_start(&p.status, p.total_fen, &lines, new.amount_fen) {
                return Ok(RefundBegun::Refused(why));
            }
            conn.prepare_cached(
                "INSERT INTO refunds (merchant_id, out_trade_no, request_no, refund_key, amount_fen, reason, started_by, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'PENDING', ?8)",
            )?
            .execute(params![
                new.merchant_id,
                new.out_trade_no,
                new.request_no,
                new.refund_key,
                new.amount_fen as i64,
                new.reason,
                new.started_by,
                now_rfc3339()
            ])?;
            let id = conn.last_insert_rowid();
            let r = conn
                .prepare_cached("SELECT * FROM refunds WHERE id = ?1")?
                .query_row([id], refund_from_row)?;
            Ok(RefundBegun::New(r))
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
        let (m, c, d) = (
            merchant.to_owned(),
            confirm_url.map(str::to_owned),
            detail.map(str::to_owned),
        );
        self.write(move |conn| {
            conn.prepare_cached("UPDATE refunds SET confirm_url = COALESCE(?3, confirm_url), detail = COALESCE(?4, detail) WHERE merchant_id = ?1 AND id = ?2")?
                .execute(params![m, id, c, d])?;
            Ok(())
        })
        .await
    }

    async fn settle_refund(&self, r: &RefundResult<'_>) -> Result<RefundApplied> {
        let (merchant, id, status) = (r.merchant_id.to_owned(), r.refund_id, r.status);
        let detail = r.detail.map(str::to_owned);
        let completed = r.completed_at.map(str::to_owned);
        let hook = r.webhook_url.map(str::to_owned);
        self.write(move |conn| {
            let Some(refund) = conn
                .prepare_cached("SELECT * FROM refunds WHERE merchant_id = ?1 AND id = ?2")?
                .query_row(params![merchant, id], refund_from_row)
                .optional()?
            else {
                return Ok(RefundApplied::UnknownPayment);
            };
            let Some(p) = payment_in(conn, &merchant, &refund.out_trade_no)? else {
                return Ok(RefundApplied::UnknownPayment);
            };
            let lines: Vec<_> = refunds_in(conn, &merchant, &refund.out_trade_no)?
                .iter()
                .map(Refund::line)
                .collect();
            let write = plan_result(&lines, p.total_fen, id, status);
            apply_write(
                conn,
                &p,
                write,
                None.or(completed.as_deref()),
                detail.as_deref(),
                &refund.request_no,
                hook.as_deref(),
            )
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
        self.write(move |conn| {
            let Some(p) = payment_in(conn, &merchant, &no)? else {
                return Ok(RefundApplied::UnknownPayment);
            };
            let claimed = conn.prepare_cached("INSERT OR IGNORE INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![merchant, notify_id, no, now_rfc3339()])?;
            if claimed == 0 {
                return Ok(RefundApplied::Known);
            }
            if !trade_no.is_empty() {
                conn.prepare_cached("UPDATE payments SET trade_no = COALESCE(trade_no, ?3) WHERE merchant_id = ?1 AND out_trade_no = ?2")?
                    .execute(params![merchant, no, trade_no])?;
            }
            let lines: Vec<_> = refunds_in(conn, &merchant, &no)?.iter().map(Refund::line).collect();
            let write = plan_report(&lines, p.total_fen, &report);
            let detail = (!report.detail.is_empty()).then_some(report.detail.as_str());
            apply_write(conn, &p, write, Some(completed.as_deref().unwrap_or(&now_rfc3339())), detail, &report.request_no, hook.as_deref())
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
            let Some(p) = payment_in(conn, &merchant, &no)? else {
                return Ok(false);
            };
            let t = crate::domain::state::transition(&p.status, crate::domain::state::TradeEvent::Closed);
            let Some(next) = t.to.filter(|_| p.status == crate::domain::state::WAIT_BUYER_PAY) else {
                return Ok(false);
            };
            let now = now_rfc3339();
            conn.prepare_cached("UPDATE payments SET status = ?3, updated_at = ?4 WHERE merchant_id = ?1 AND out_trade_no = ?2")?
                .execute(params![merchant, no, next, now])?;
            if let Some(url) = hook {
                for ev in &t.events {
                    let kind = ev.name();
                    let event_id = crate::domain::events::event_id(&merchant, &no, kind, None);
                    let body = serde_json::json!({
                        "id": event_id, "type": kind, "merchant_id": merchant, "out_trade_no": no,
                        "subject": p.subject, "status": next, "previous_status": p.status,
                        "total_fee": p.total_fee(), "seller_email": p.seller, "trade_no": p.trade_no,
                        "created_at": now,
                    }).to_string();
                    conn.prepare_cached("INSERT OR IGNORE INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)")?
                        .execute(params![event_id, merchant, url, body, now_ms(), kind])?;
                }
            }
            Ok(true)
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
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO payment_events (merchant_id, out_trade_no, at, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![args.0, args.1, now_rfc3339(), args.2, args.3])?;
            Ok(())
        })
        .await
    }

    async fn events_for(&self, merchant: &str, no: &str) -> Result<Vec<PaymentEvent>> {
        let merchant = merchant.to_owned();
        let no = no.to_owned();
        self.read(move |conn| {
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
        self.write(move |conn| {
            conn.prepare_cached("INSERT INTO webhook_attempts (webhook_id, merchant_id, out_trade_no, event_type, at, http_status, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
                .execute(params![a.webhook_id, m, n, a.event_type, a.at, a.http_status, a.error])?;
            Ok(())
        })
        .await
    }

    async fn webhook_attempts_for(&self, merchant: &str, no: &str) -> Result<Vec<WebhookAttempt>> {
        let merchant = merchant.to_owned();
        let no = no.to_owned();
        self.read(move |conn| {
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
        })
        .await
    }
}
