//! [`Payments`] on PostgreSQL.

use super::*;
use crate::domain::review;

#[async_trait]
impl Payments for PostgresStore {
    async fn insert_payment(&self, p: &Payment) -> Result<Inserted> {
        let p = p.clone();
        {
            let c = self.client().await?;
            // Only while its merchant exists. The key-share lock waits for a removal in progress
            // (it locks the merchant's row FOR UPDATE first) and sees its outcome; a removal that
            // comes after waits for this insert, and then counts the payment. A settings save
            // (an UPDATE of no key) does not wait for it, nor it for one.
            let st = c.prepare_cached("INSERT INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status,
                     request_token, pay_url, created_at, updated_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10
                 WHERE EXISTS (SELECT 1 FROM merchants WHERE id = $1 FOR KEY SHARE)
                 ON CONFLICT DO NOTHING").await?;
            let n = c
                .execute(
                    &st,
                    &[
                        &p.merchant_id,
                        &p.out_trade_no,
                        &p.subject,
                        &(p.total_fen as i64),
                        &p.seller,
                        &p.return_url,
                        &p.status,
                        &p.request_token,
                        &p.pay_url,
                        &p.created_at,
                    ],
                )
                .await?;
            if n == 1 {
                return Ok(Inserted::New);
            }
            let st = c
                .prepare_cached(&format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2"
                ))
                .await?;
            match c.query_opt(&st, &[&p.merchant_id, &p.out_trade_no]).await? {
                Some(row) => Ok(Inserted::Existing(Box::new(payment_from_row(&row)?))),
                None => Ok(Inserted::UnknownMerchant),
            }
        }
    }

    async fn set_payment_token(
        &self,
        merchant: &str,
        out_trade_no: &str,
        token: &str,
        pay_url: &str,
    ) -> Result<()> {
        let args = [merchant, out_trade_no, token, pay_url].map(str::to_owned);
        {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "UPDATE payments SET request_token = $3, pay_url = $4, updated_at = $5
                 WHERE merchant_id = $1 AND out_trade_no = $2 AND status = 'WAIT_BUYER_PAY'",
                )
                .await?;
            c.execute(
                &st,
                &[&args[0], &args[1], &args[2], &args[3], &now_rfc3339()],
            )
            .await?;
            Ok(())
        }
    }

    async fn payment(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Payment>> {
        let args = [merchant, out_trade_no].map(str::to_owned);
        {
            let c = self.client().await?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2"
                ))
                .await?;
            c.query_opt(&st, &[&args[0], &args[1]])
                .await?
                .map(|r| payment_from_row(&r))
                .transpose()
        }
    }

    async fn recent_payments(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<Payment>> {
        let merchant = merchant.map(str::to_owned);
        {
            let c = self.client().await?;
            let st = c.prepare_cached(&format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments WHERE ($1::text IS NULL OR merchant_id = $1) ORDER BY created_at DESC, seq DESC LIMIT $2"
            )).await?;
            c.query(&st, &[&merchant, &(limit as i64)])
                .await?
                .iter()
                .map(payment_from_row)
                .collect()
        }
    }

    async fn waiting_payments(
        &self,
        created_after: &str,
        created_before: &str,
        limit: u32,
    ) -> Result<Vec<Payment>> {
        let (after, before) = (created_after.to_owned(), created_before.to_owned());
        {
            let c = self.client().await?;
            let st = c.prepare_cached(&format!(
                "SELECT {PAYMENT_COLUMNS} FROM payments WHERE status = 'WAIT_BUYER_PAY' AND created_at >= $1 AND created_at <= $2 ORDER BY created_at, seq LIMIT $3"
            )).await?;
            c.query(&st, &[&after, &before, &(limit as i64)])
                .await?
                .iter()
                .map(payment_from_row)
                .collect()
        }
    }

    async fn flag_for_review(
        &self,
        merchant: &str,
        out_trade_no: &str,
        reason: &str,
    ) -> Result<()> {
        let args = [merchant, out_trade_no, reason].map(str::to_owned);
        self.tx(move |tx| {
            Box::pin(async move {
                let Some(row) = tx
                    .query_opt(
                        "SELECT review FROM payments WHERE merchant_id = $1 AND out_trade_no = $2 FOR UPDATE",
                        &[&args[0], &args[1]],
                    )
                    .await?
                else {
                    return Ok(());
                };
                let note = review::with_reason(row.get::<_, Option<String>>(0).as_deref(), &args[2]);
                tx.execute(
                    "UPDATE payments SET review = $3, updated_at = $4 WHERE merchant_id = $1 AND out_trade_no = $2",
                    &[&args[0], &args[1], &note, &now_rfc3339()],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }
}
