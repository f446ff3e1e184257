//! The primitives of [`rules::NotifyTx`] inside a PostgreSQL transaction.

use super::{payment_from_row, PAYMENT_COLUMNS};
use crate::store::rules::{NotifyTx, PaymentState};
use crate::store::*;

pub(super) struct PgTx<'a>(pub(super) &'a deadpool_postgres::Transaction<'a>);

impl NotifyTx for PgTx<'_> {
    async fn insert_raw(&mut self, raw: &RawNotification<'_>) -> Result<i64> {
        let st = self.0
            .prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES ($1, $2, $3, $4) RETURNING id")
            .await?;
        let row = self
            .0
            .query_one(
                &st,
                &[&raw.merchant_id, &now_rfc3339(), &raw.remote, &raw.body],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn insert_refused(&mut self, r: &RefusedRecord) -> Result<i64> {
        let st = self.0
            .prepare_cached("INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body, refused, body_size, body_sha256)
                 VALUES ($1, $2, $3, $4, true, $5, $6) RETURNING id")
            .await?;
        let row = self
            .0
            .query_one(
                &st,
                &[
                    &r.merchant_id,
                    &now_rfc3339(),
                    &r.remote,
                    &r.head,
                    &r.size,
                    &r.sha256,
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn insert_result(&mut self, rec: &NotificationRecord) -> Result<()> {
        let st = self.0
            .prepare_cached("INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .await?;
        self.0
            .execute(
                &st,
                &[
                    &rec.raw_id,
                    &rec.merchant_id,
                    &rec.notify_id,
                    &rec.out_trade_no,
                    &rec.trade_status,
                    &rec.outcome,
                    &rec.detail,
                    &now_rfc3339(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn load_payment_for_update(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<Payment>> {
        // The row lock serialises every notification of this payment across replicas.
        let st = self.0
            .prepare_cached(&format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2 FOR UPDATE"
            ))
            .await?;
        self.0
            .query_opt(&st, &[&merchant, &out_trade_no])
            .await?
            .map(|r| payment_from_row(&r))
            .transpose()
    }

    async fn claim_notification(
        &mut self,
        merchant: &str,
        notify_id: &str,
        out_trade_no: &str,
        at: &str,
    ) -> Result<bool> {
        let st = self.0
            .prepare_cached("INSERT INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .await?;
        let claimed = self
            .0
            .execute(&st, &[&merchant, &notify_id, &out_trade_no, &at])
            .await?;
        Ok(claimed == 1)
    }

    async fn write_payment_state(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        s: &PaymentState<'_>,
    ) -> Result<()> {
        let st = self.0
            .prepare_cached("UPDATE payments SET status = $3, trade_no = COALESCE($4, trade_no), buyer_email = COALESCE($5, buyer_email),
                 paid_at = $6, updated_at = $7 WHERE merchant_id = $1 AND out_trade_no = $2")
            .await?;
        self.0
            .execute(
                &st,
                &[
                    &merchant,
                    &out_trade_no,
                    &s.status,
                    &s.trade_no,
                    &s.buyer_email,
                    &s.paid_at,
                    &s.updated_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn enqueue_webhook(
        &mut self,
        merchant: &str,
        w: &PlannedWebhook,
        at_ms: i64,
    ) -> Result<()> {
        let st = self.0
            .prepare_cached("INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES ($1, $2, $3, $4, $5, $5, $6)")
            .await?;
        self.0
            .execute(
                &st,
                &[&w.event_id, &merchant, &w.url, &w.body, &at_ms, &w.kind],
            )
            .await?;
        Ok(())
    }

    async fn refused_beyond(&mut self, merchant: &str, keep: u32) -> Result<Option<i64>> {
        Ok(self.0
            .query_opt(
                "SELECT id FROM raw_notifications WHERE merchant_id = $1 AND refused ORDER BY id DESC LIMIT 1 OFFSET $2",
                &[&merchant, &(keep as i64)],
            )
            .await?
            .map(|r| r.get(0)))
    }

    async fn delete_refused_through(&mut self, merchant: &str, id: i64) -> Result<()> {
        self.0
            .execute(
                "DELETE FROM notification_results WHERE raw_id IN
                 (SELECT id FROM raw_notifications WHERE merchant_id = $1 AND refused AND id <= $2)",
                &[&merchant, &id],
            )
            .await?;
        self.0
            .execute(
                "DELETE FROM raw_notifications WHERE merchant_id = $1 AND refused AND id <= $2",
                &[&merchant, &id],
            )
            .await?;
        Ok(())
    }
}
