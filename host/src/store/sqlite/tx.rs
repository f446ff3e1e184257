//! The primitives of [`rules::NotifyTx`] on the writer's connection, inside the job's savepoint of
//! the group transaction, and the runner of a rule there.

use super::payment_from_row;
use crate::store::rules::{NotifyTx, PaymentState};
use crate::store::*;
use anyhow::anyhow;
use rusqlite::{params, Connection, OptionalExtension};
use std::future::Future;
use std::task::{Context, Poll, Waker};

pub(super) struct SqliteTx<'c>(pub(super) &'c Connection);

/// Runs a rule to its end on the writer's thread. SQLite's statements never wait, so the rule's
/// future completes on its first poll; one that did not would be a bug, answered as an error (its
/// savepoint rolled back) rather than spun on.
pub(super) fn run_rule<R>(rule: impl Future<Output = Result<R>>) -> Result<R> {
    let rule = std::pin::pin!(rule);
    match rule.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(anyhow!("a SQLite transaction step waited")),
    }
}

impl NotifyTx for SqliteTx<'_> {
    async fn insert_raw(&mut self, raw: &RawNotification<'_>, received_at: &str) -> Result<i64> {
        self.0.prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![raw.merchant_id, received_at, raw.remote, raw.body])?;
        Ok(self.0.last_insert_rowid())
    }

    async fn insert_refused(&mut self, r: &RefusedRecord) -> Result<i64> {
        self.0.prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body, refused, body_size, body_sha256)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)")?
            .execute(params![r.merchant_id, now_rfc3339(), r.remote, r.head, r.size, r.sha256])?;
        Ok(self.0.last_insert_rowid())
    }

    async fn insert_result(&mut self, rec: &NotificationRecord) -> Result<()> {
        self.0.prepare_cached("INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
            .execute(params![
                rec.raw_id,
                rec.merchant_id,
                rec.notify_id,
                rec.out_trade_no,
                rec.trade_status,
                rec.outcome,
                rec.detail,
                now_rfc3339()
            ])?;
        Ok(())
    }

    async fn load_payment_for_update(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<Payment>> {
        // The writer is the only one writing: no lock needed.
        Ok(self
            .0
            .prepare_cached("SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
            .query_row(params![merchant, out_trade_no], payment_from_row)
            .optional()?)
    }

    async fn claim_notification(
        &mut self,
        merchant: &str,
        notify_id: &str,
        out_trade_no: &str,
        at: &str,
    ) -> Result<bool> {
        let claimed = self.0.prepare_cached("INSERT OR IGNORE INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![merchant, notify_id, out_trade_no, at])?;
        Ok(claimed == 1)
    }

    async fn release_claim(&mut self, merchant: &str, notify_id: &str) -> Result<()> {
        self.0
            .prepare_cached(
                "DELETE FROM applied_notifications WHERE merchant_id = ?1 AND notify_id = ?2",
            )?
            .execute(params![merchant, notify_id])?;
        Ok(())
    }

    async fn write_payment_state(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        s: &PaymentState<'_>,
    ) -> Result<()> {
        self.0.prepare_cached("UPDATE payments SET status = ?3, trade_no = COALESCE(?4, trade_no), buyer_email = COALESCE(?5, buyer_email),
             paid_at = ?6, updated_at = ?7, review = COALESCE(?8, review), finished_at = COALESCE(finished_at, ?9) WHERE merchant_id = ?1 AND out_trade_no = ?2")?
            .execute(params![merchant, out_trade_no, s.status, s.trade_no, s.buyer_email, s.paid_at, s.updated_at, s.review, s.finished_at])?;
        Ok(())
    }

    async fn enqueue_webhook(
        &mut self,
        merchant: &str,
        w: &PlannedWebhook,
        at_ms: i64,
    ) -> Result<()> {
        self.0.prepare_cached("INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)")?
            .execute(params![w.event_id, merchant, w.url, w.body, at_ms, w.kind])?;
        Ok(())
    }

    async fn refused_beyond(&mut self, merchant: &str, keep: u32) -> Result<Option<i64>> {
        Ok(self.0
            .prepare_cached("SELECT id FROM raw_notifications WHERE merchant_id = ?1 AND refused = 1 ORDER BY id DESC LIMIT 1 OFFSET ?2")?
            .query_row(params![merchant, keep], |r| r.get(0))
            .optional()?)
    }

    async fn delete_refused_through(&mut self, merchant: &str, id: i64) -> Result<()> {
        self.0.prepare_cached("DELETE FROM notification_results WHERE raw_id IN
             (SELECT id FROM raw_notifications WHERE merchant_id = ?1 AND refused = 1 AND id <= ?2)")?
            .execute(params![merchant, id])?;
        self.0
            .prepare_cached(
                "DELETE FROM raw_notifications WHERE merchant_id = ?1 AND refused = 1 AND id <= ?2",
            )?
            .execute(params![merchant, id])?;
        Ok(())
    }
}
