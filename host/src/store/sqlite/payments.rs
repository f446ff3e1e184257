//! [`Payments`] on SQLite.

use super::{payment_from_row, SqliteStore};
use crate::domain::review;
use crate::store::*;
use rusqlite::{params, OptionalExtension};

#[async_trait]
impl Payments for SqliteStore {
    async fn insert_payment(&self, p: &Payment) -> Result<Inserted> {
        let p = p.clone();
        self.write(move |conn| {
            // Only while its merchant exists: a merchant removed after the payment's start read
            // it would leave a payment (and a buyer's money) nobody's notification can reach.
            let n = conn.prepare_cached("INSERT OR IGNORE INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status,
                     request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, NULL, NULL, ?10, ?10
                 WHERE EXISTS (SELECT 1 FROM merchants WHERE id = ?1)")?
                .execute(params![
                    p.merchant_id,
                    p.out_trade_no,
                    p.subject,
                    p.total_fen as i64,
                    p.seller,
                    p.return_url,
                    p.status,
                    p.request_token,
                    p.pay_url,
                    p.created_at
                ])?;
            if n == 1 {
                return Ok(Inserted::New);
            }
            let existing = conn
                .prepare_cached("SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
                .query_row(params![p.merchant_id, p.out_trade_no], payment_from_row)
                .optional()?;
            match existing {
                Some(existing) => Ok(Inserted::Existing(Box::new(existing))),
                None => {
                    let merchant: bool = conn
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM merchants WHERE id = ?1)")?
                        .query_row(params![p.merchant_id], |r| r.get(0))?;
                    // OR IGNORE skips a CHECK's refusal too: that is an error, not a removal.
                    anyhow::ensure!(!merchant, "the payment was refused by the schema's checks");
                    Ok(Inserted::UnknownMerchant)
                }
            }
        })
        .await
    }

    async fn set_payment_token(
        &self,
        merchant: &str,
        out_trade_no: &str,
        token: &str,
        pay_url: &str,
    ) -> Result<()> {
        let args = [merchant, out_trade_no, token, pay_url].map(str::to_owned);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE payments SET request_token = ?3, pay_url = ?4, updated_at = ?5
                 WHERE merchant_id = ?1 AND out_trade_no = ?2 AND status = 'WAIT_BUYER_PAY'",
            )?
            .execute(params![args[0], args[1], args[2], args[3], now_rfc3339()])?;
            Ok(())
        })
        .await
    }

    async fn payment(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Payment>> {
        let args = [merchant, out_trade_no].map(str::to_owned);
        self.read_here(move |c| {
            Ok(c.prepare_cached(
                "SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2",
            )?
            .query_row(params![args[0], args[1]], payment_from_row)
            .optional()?)
        })
        .await
    }

    async fn recent_payments(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<Payment>> {
        let merchant = merchant.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT * FROM payments WHERE (?1 IS NULL OR merchant_id = ?1) ORDER BY created_at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![merchant, limit], payment_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn waiting_payments(
        &self,
        created_after: &str,
        created_before: &str,
        limit: u32,
    ) -> Result<Vec<Payment>> {
        let args = [created_after, created_before].map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT * FROM payments WHERE status = 'WAIT_BUYER_PAY' AND created_at >= ?1 AND created_at <= ?2 ORDER BY created_at, rowid LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![args[0], args[1], limit], payment_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn flag_for_review(
        &self,
        merchant: &str,
        out_trade_no: &str,
        reason: &str,
    ) -> Result<()> {
        let args = [merchant, out_trade_no, reason].map(str::to_owned);
        self.write(move |conn| {
            // The writer is alone: nothing changes the note between this read and the write.
            let Some(note) = conn
                .prepare_cached("SELECT review FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2")?
                .query_row(params![args[0], args[1]], |r| r.get::<_, Option<String>>(0))
                .optional()?
            else {
                return Ok(());
            };
            let note = review::with_reason(note.as_deref(), &args[2]);
            conn.prepare_cached("UPDATE payments SET review = ?3, updated_at = ?4 WHERE merchant_id = ?1 AND out_trade_no = ?2")?
                .execute(params![args[0], args[1], note, now_rfc3339()])?;
            Ok(())
        })
        .await
    }
}
