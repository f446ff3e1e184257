//! [`Notifications`] on SQLite: the writes are the rules of [`crate::store::rules`], run by the
//! writer inside the job's savepoint.

use super::tx::{run_rule, SqliteTx};
use super::SqliteStore;
use crate::store::*;
use rusqlite::{params, Connection};

const NOTIFICATION_SELECT: &str = "SELECT n.id, n.merchant_id, n.received_at, r.notify_id, r.out_trade_no, r.trade_status, r.outcome, r.detail
     FROM raw_notifications n LEFT JOIN notification_results r ON r.raw_id = n.id";

fn notification_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotificationRecord> {
    Ok(NotificationRecord {
        raw_id: r.get("id")?,
        merchant_id: r.get("merchant_id")?,
        received_at: r.get("received_at")?,
        notify_id: r.get("notify_id")?,
        out_trade_no: r.get("out_trade_no")?,
        trade_status: r.get("trade_status")?,
        outcome: r.get("outcome")?,
        detail: r.get("detail")?,
    })
}

#[async_trait]
impl Notifications for SqliteStore {
    async fn record_notification(
        &self,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<i64> {
        let (raw, record) = (OwnedRaw::new(raw), record.clone());
        self.write(move |conn| {
            run_rule(rules::record_notification(
                &mut SqliteTx(conn),
                &raw.borrow(),
                &record,
            ))
        })
        .await
    }

    async fn record_refused_notification(&self, refused: RefusedRecord, quota: u32) -> Result<i64> {
        self.write(move |conn| {
            run_rule(rules::record_refused_notification(
                &mut SqliteTx(conn),
                &refused,
                quota,
            ))
        })
        .await
    }

    async fn apply_notification(
        &self,
        effect: &NotificationEffect<'_>,
        raw: &RawNotification<'_>,
        record: &NotificationRecord,
    ) -> Result<Applied> {
        let (effect, raw, record) = (OwnedEffect::new(effect), OwnedRaw::new(raw), record.clone());
        self.write(move |conn| {
            run_rule(rules::apply_notification(
                &mut SqliteTx(conn),
                &effect.borrow(),
                &raw.borrow(),
                &record,
            ))
        })
        .await
    }

    async fn notifications_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<NotificationRecord>> {
        let [m, no] = [merchant, out_trade_no].map(str::to_owned);
        self.read(move |c| notifications_in(c, &m, &no)).await
    }

    async fn recent_notifications(
        &self,
        merchant: Option<&str>,
        outcome: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        let (merchant, outcome) = (merchant.map(str::to_owned), outcome.map(str::to_owned));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{NOTIFICATION_SELECT} WHERE (?1 IS NULL OR n.merchant_id = ?1) AND (?3 IS NULL OR r.outcome = ?3) ORDER BY n.id DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![merchant, limit, outcome], notification_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn raw_notification_count(&self) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM raw_notifications")?
                .query_row([], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn prune_raw_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        self.write(move |conn| {
            // The oldest rows first (ids grow with time): the batch costs the same however large
            // the table is.
            let ids: Vec<i64> = conn
                .prepare_cached(
                    "SELECT id, received_at FROM raw_notifications ORDER BY id LIMIT ?1",
                )?
                .query_map(params![batch], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .take_while(|(_, at)| at.as_str() < before.as_str())
                .map(|(id, _)| id)
                .collect();
            let Some(last) = ids.last().copied() else {
                return Ok(0);
            };
            let first = ids[0];
            conn.prepare_cached("DELETE FROM notification_results WHERE raw_id BETWEEN ?1 AND ?2")?
                .execute(params![first, last])?;
            let n = conn
                .prepare_cached("DELETE FROM raw_notifications WHERE id BETWEEN ?1 AND ?2")?
                .execute(params![first, last])?;
            Ok(n as u64)
        })
        .await
    }

    async fn prune_refused_notifications(&self, before: &str, batch: u32) -> Result<u64> {
        let before = before.to_owned();
        self.write(move |conn| {
            let ids: Vec<i64> = conn
                .prepare_cached("SELECT id FROM raw_notifications WHERE refused = 1 AND received_at < ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![before, batch], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for id in &ids {
                conn.prepare_cached("DELETE FROM notification_results WHERE raw_id = ?1")?
                    .execute([id])?;
                conn.prepare_cached("DELETE FROM raw_notifications WHERE id = ?1")?
                    .execute([id])?;
            }
            Ok(ids.len() as u64)
        })
        .await
    }
}

/// A payment's notifications, oldest first.
pub(super) fn notifications_in(
    c: &Connection,
    merchant: &str,
    out_trade_no: &str,
) -> Result<Vec<NotificationRecord>> {
    let mut stmt = c.prepare_cached(&format!(
        "{NOTIFICATION_SELECT} WHERE r.merchant_id = ?1 AND r.out_trade_no = ?2 ORDER BY n.id"
    ))?;
    let rows = stmt
        .query_map(params![merchant, out_trade_no], notification_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
