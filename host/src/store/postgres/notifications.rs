//! [`Notifications`] on PostgreSQL.

use super::tx::in_tx;
use super::*;

const NOTIFICATION_SELECT: &str = "SELECT n.id, n.merchant_id, n.received_at, r.notify_id, r.out_trade_no, r.trade_status, r.outcome, r.detail
     FROM raw_notifications n LEFT JOIN notification_results r ON r.raw_id = n.id";

fn notification_from_row(r: &Row) -> Result<NotificationRecord> {
    Ok(NotificationRecord {
        raw_id: r.try_get("id")?,
        merchant_id: r.try_get("merchant_id")?,
        received_at: r.try_get("received_at")?,
        notify_id: r.try_get("notify_id")?,
        out_trade_no: r.try_get("out_trade_no")?,
        trade_status: r.try_get("trade_status")?,
        outcome: r.try_get("outcome")?,
        detail: r.try_get("detail")?,
    })
}

#[async_trait]
impl Notifications for PostgresStore {
    async fn record_notification(
        &self,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<i64> {
        in_tx!(self, |tx| rules::record_notification(tx, raw, record))
    }

    async fn record_refused_notification(&self, refused: RefusedRecord, quota: u32) -> Result<i64> {
        in_tx!(self, |tx| rules::record_refused_notification(
            tx, &refused, quota
        ))
    }

    async fn notifications_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<NotificationRecord>> {
        notifications_in(&self.client().await?, merchant, out_trade_no).await
    }

    async fn recent_notifications(
        &self,
        merchant: Option<&str>,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        {
            let c = self.client().await?;
            let st = c
                .prepare_cached(&format!(
                    "{NOTIFICATION_SELECT} WHERE ($1::text IS NULL OR n.merchant_id = $1) AND ($3::text IS NULL OR r.outcome = $3) ORDER BY n.id DESC LIMIT $2"
                ))
                .await?;
            c.query(&st, &[&merchant, &(limit as i64), &outcome])
                .await?
                .iter()
                .map(notification_from_row)
                .collect()
        }
    }

    async fn raw_notification_count(&self) -> Result<u64> {
        {
            let c = self.client().await?;
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM raw_notifications", &[])
                .await?
                .get(0);
            Ok(n as u64)
        }
    }

    async fn apply_notification(
        &self,
        effect: &NotificationEffect<'_>,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<Applied> {
        in_tx!(self, |tx| rules::apply_notification(
            tx, effect, raw, record
        ))
    }

    async fn prune_raw_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let r: Result<_> = async {
            // The oldest rows first (ids grow with time).
            let rows = tx
                .query(
                    "SELECT id, received_at FROM raw_notifications ORDER BY id LIMIT $1",
                    &[&(batch as i64)],
                )
                .await?;
            let ids: Vec<i64> = rows
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                .take_while(|(_, at)| at.as_str() < before.as_str())
                .map(|(id, _)| id)
                .collect();
            let Some(last) = ids.last().copied() else {
                return Ok(0);
            };
            let first = ids[0];
            tx.execute(
                "DELETE FROM notification_results WHERE raw_id BETWEEN $1 AND $2",
                &[&first, &last],
            )
            .await?;
            let n = tx
                .execute(
                    "DELETE FROM raw_notifications WHERE id BETWEEN $1 AND $2",
                    &[&first, &last],
                )
                .await?;
            Ok(n)
        }
        .await;
        let r = r?;
        tx.commit().await.context("the database could not commit")?;
        Ok(r)
    }

    async fn prune_refused_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let r: Result<_> = async {
                let ids: Vec<i64> = tx
                    .query(
                        "SELECT id FROM raw_notifications WHERE refused AND received_at < $1 ORDER BY id LIMIT $2",
                        &[&before, &(batch as i64)],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                tx.execute(
                    "DELETE FROM notification_results WHERE raw_id = ANY($1)",
                    &[&ids],
                )
                .await?;
                tx.execute("DELETE FROM raw_notifications WHERE id = ANY($1)", &[&ids])
                    .await?;
                Ok(ids.len() as u64)
            }
        .await;
        let r = r?;
        tx.commit().await.context("the database could not commit")?;
        Ok(r)
    }
}

/// A payment's notifications, oldest first.
pub(super) async fn notifications_in(
    c: &impl deadpool_postgres::GenericClient,
    merchant: &str,
    out_trade_no: &str,
) -> Result<Vec<NotificationRecord>> {
    let st = c
        .prepare_cached(&format!(
            "{NOTIFICATION_SELECT} WHERE r.merchant_id = $1 AND r.out_trade_no = $2 ORDER BY n.id"
        ))
        .await?;
    c.query(&st, &[&merchant, &out_trade_no])
        .await?
        .iter()
        .map(notification_from_row)
        .collect()
}
