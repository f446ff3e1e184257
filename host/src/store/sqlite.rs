//! The embedded SQLite store: WAL journal, `synchronous=FULL` (a commit survives power loss), one
//! connection behind a mutex (SQLite has one writer anyway), migrations from `host/migrations`.

use super::*;
use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

/// Migrations, in order; the version is the position + 1.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/0001_init.sql")];

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The database holds merchant keys: readable by the owner only.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<SqliteStore> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<SqliteStore> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if mode != "wal" && mode != "memory" {
            bail!("the database cannot use WAL journaling (journal_mode is {mode})");
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")?;
        let current: i64 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        if current as usize > MIGRATIONS.len() {
            bail!("the database schema (version {current}) is newer than this payhost knows; upgrade payhost");
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![i as i64 + 1, now_rfc3339()],
            )?;
            tx.commit()?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (it rolls back on
        // drop), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn payment_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Payment> {
    Ok(Payment {
        merchant_id: r.get("merchant_id")?,
        out_trade_no: r.get("out_trade_no")?,
        subject: r.get("subject")?,
        total_fen: r.get::<_, i64>("total_fen")? as u64,
        seller: r.get("seller")?,
        return_url: r.get("return_url")?,
        status: r.get("status")?,
        request_token: r.get("request_token")?,
        pay_url: r.get("pay_url")?,
        trade_no: r.get("trade_no")?,
        buyer_email: r.get("buyer_email")?,
        paid_at: r.get("paid_at")?,
        review: r.get("review")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

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

const NOTIFICATION_SELECT: &str = "SELECT n.id, n.merchant_id, n.received_at, r.notify_id, r.out_trade_no, r.trade_status, r.outcome, r.detail
     FROM raw_notifications n LEFT JOIN notification_results r ON r.raw_id = n.id";

impl Store for SqliteStore {
    fn merchant(&self, id: &str) -> Result<Option<MerchantSettings>> {
        let json: Option<String> = self
            .conn()
            .query_row("SELECT settings FROM merchants WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        json.map(|j| serde_json::from_str(&j).context("stored merchant settings are corrupt"))
            .transpose()
    }

    fn merchant_ids(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM merchants ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn save_merchant(&self, id: &str, settings: &MerchantSettings) -> Result<()> {
        let json = serde_json::to_string(settings)?;
        self.conn().execute(
            "INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, ?2, 'api', NULL, ?3)
             ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, source = 'api', updated_at = excluded.updated_at",
            params![id, json, now_rfc3339()],
        )?;
        Ok(())
    }

    fn seed_merchant(
        &self,
        id: &str,
        settings: &MerchantSettings,
        config_hash: &str,
    ) -> Result<bool> {
        let json = serde_json::to_string(settings)?;
        let changed = self.conn().execute(
            "INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, ?2, 'config', ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, source = 'config',
                 config_hash = excluded.config_hash, updated_at = excluded.updated_at
             WHERE merchants.config_hash IS NOT excluded.config_hash",
            params![id, json, config_hash, now_rfc3339()],
        )?;
        Ok(changed > 0)
    }

    fn insert_payment(&self, p: &Payment) -> Result<Inserted> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status,
                 request_token, pay_url, trade_no, buyer_email, paid_at, review, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, NULL, NULL, ?10, ?10)",
            params![
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
            ],
        )?;
        if n == 1 {
            return Ok(Inserted::New);
        }
        let existing = conn
            .query_row(
                "SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2",
                params![p.merchant_id, p.out_trade_no],
                payment_from_row,
            )
            .context("payment vanished while inserting")?;
        Ok(Inserted::Existing(Box::new(existing)))
    }

    fn set_payment_token(
        &self,
        merchant: &str,
        out_trade_no: &str,
        token: &str,
        pay_url: &str,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE payments SET request_token = ?3, pay_url = ?4, updated_at = ?5
             WHERE merchant_id = ?1 AND out_trade_no = ?2 AND status = 'WAIT_BUYER_PAY'",
            params![merchant, out_trade_no, token, pay_url, now_rfc3339()],
        )?;
        Ok(())
    }

    fn payment(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Payment>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2",
                params![merchant, out_trade_no],
                payment_from_row,
            )
            .optional()?)
    }

    fn recent_payments(&self, merchant: Option<&str>, limit: u32) -> Result<Vec<Payment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT * FROM payments WHERE (?1 IS NULL OR merchant_id = ?1) ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![merchant, limit], payment_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn flag_for_review(&self, merchant: &str, out_trade_no: &str, reason: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE payments SET review = ?3, updated_at = ?4 WHERE merchant_id = ?1 AND out_trade_no = ?2",
            params![merchant, out_trade_no, reason, now_rfc3339()],
        )?;
        Ok(())
    }

    fn record_raw_notification(
        &self,
        merchant: &str,
        remote: Option<&str>,
        body: &[u8],
    ) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES (?1, ?2, ?3, ?4)",
            params![merchant, now_rfc3339(), remote, body],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn record_notification_result(&self, rec: &NotificationRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                rec.raw_id,
                rec.merchant_id,
                rec.notify_id,
                rec.out_trade_no,
                rec.trade_status,
                rec.outcome,
                rec.detail,
                now_rfc3339()
            ],
        )?;
        Ok(())
    }

    fn notifications_for(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Vec<NotificationRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{NOTIFICATION_SELECT} WHERE r.merchant_id = ?1 AND r.out_trade_no = ?2 ORDER BY n.id"
        ))?;
        let rows = stmt
            .query_map(params![merchant, out_trade_no], notification_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn recent_notifications(
        &self,
        merchant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{NOTIFICATION_SELECT} WHERE (?1 IS NULL OR n.merchant_id = ?1) ORDER BY n.id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![merchant, limit], notification_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn raw_notification_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM raw_notifications", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn apply_notification(&self, e: &NotificationEffect<'_>) -> Result<Applied> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let payment = tx
            .query_row(
                "SELECT * FROM payments WHERE merchant_id = ?1 AND out_trade_no = ?2",
                params![e.merchant_id, e.out_trade_no],
                payment_from_row,
            )
            .optional()?;
        let Some(payment) = payment else {
            return Ok(Applied::UnknownOrder);
        };
        let now = now_rfc3339();
        let claimed = tx.execute(
            "INSERT OR IGNORE INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![e.merchant_id, e.notify_id, e.out_trade_no, now],
        )?;
        if claimed == 0 {
            return Ok(Applied::Duplicate);
        }
        let Some(next) = next_status(&payment.status, e.trade_status) else {
            tx.commit()?;
            return Ok(Applied::NoChange);
        };
        let paid_at = if next == TRADE_CLOSED {
            None
        } else {
            Some(
                payment
                    .paid_at
                    .clone()
                    .unwrap_or_else(|| e.paid_at.map(str::to_owned).unwrap_or_else(|| now.clone())),
            )
        };
        tx.execute(
            "UPDATE payments SET status = ?3, trade_no = COALESCE(?4, trade_no), buyer_email = COALESCE(?5, buyer_email),
                 paid_at = ?6, updated_at = ?7 WHERE merchant_id = ?1 AND out_trade_no = ?2",
            params![
                e.merchant_id,
                e.out_trade_no,
                next,
                Some(e.trade_no).filter(|t| !t.is_empty()),
                e.buyer_email,
                paid_at,
                now
            ],
        )?;
        if let Some(url) = e.webhook_url {
            let kind = match next {
                TRADE_SUCCESS => "payment.paid",
                TRADE_FINISHED => "payment.finished",
                _ => "payment.closed",
            };
            let event_id = format!(
                "evt_{}_{}_{}",
                e.merchant_id,
                e.out_trade_no,
                next.to_ascii_lowercase()
            );
            let body = serde_json::json!({
                "id": event_id,
                "type": kind,
                "merchant_id": e.merchant_id,
                "out_trade_no": e.out_trade_no,
                "subject": payment.subject,
                "status": next,
                "previous_status": payment.status,
                "total_fee": payment.total_fee(),
                "seller_email": payment.seller,
                "trade_no": Some(e.trade_no).filter(|t| !t.is_empty()).or(payment.trade_no.as_deref()),
                "buyer_email": e.buyer_email.or(payment.buyer_email.as_deref()),
                "paid_at": paid_at,
                "created_at": now,
            })
            .to_string();
            tx.execute(
                "INSERT OR IGNORE INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![event_id, e.merchant_id, url, body, now_ms()],
            )?;
        }
        tx.commit()?;
        Ok(Applied::Changed {
            from: payment.status,
            to: next.to_owned(),
        })
    }

    fn due_webhooks(&self, now_ms: i64, limit: u32) -> Result<Vec<WebhookJob>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, event_id, merchant_id, url, body, attempts FROM webhook_outbox
             WHERE delivered_at IS NULL AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![now_ms, limit], |r| {
                Ok(WebhookJob {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    merchant_id: r.get(2)?,
                    url: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get::<_, i64>(5)? as u32,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn webhook_delivered(&self, id: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE webhook_outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
            params![id, now_rfc3339()],
        )?;
        Ok(())
    }

    fn webhook_failed(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
            params![id, next_attempt_ms, error],
        )?;
        Ok(())
    }

    fn pending_webhooks(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(no: &str) -> Payment {
        Payment {
            merchant_id: "m1".into(),
            out_trade_no: no.into(),
            subject: "s".into(),
            total_fen: 1,
            seller: "s@example.com".into(),
            return_url: "https://shop/r".into(),
            status: WAIT_BUYER_PAY.into(),
            request_token: Some("t".into()),
            pay_url: Some("https://pay".into()),
            trade_no: None,
            buyer_email: None,
            paid_at: None,
            review: None,
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
        }
    }

    fn effect<'a>(notify_id: &'a str, status: &'a str) -> NotificationEffect<'a> {
        NotificationEffect {
            merchant_id: "m1",
            notify_id,
            out_trade_no: "o1",
            trade_status: status,
            trade_no: "2014",
            buyer_email: Some("b@example.com"),
            paid_at: Some("2014-01-01 12:00:10"),
            webhook_url: Some("https://shop/hook"),
        }
    }

    #[test]
    fn one_transition_per_notify_id_and_one_webhook() {
        let dir = std::env::temp_dir().join(format!("payhost-store-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let s = SqliteStore::open(&dir).unwrap();
        assert!(matches!(
            s.insert_payment(&payment("o1")).unwrap(),
            Inserted::New
        ));
        assert!(matches!(
            s.insert_payment(&payment("o1")).unwrap(),
            Inserted::Existing(_)
        ));
        assert_eq!(
            s.apply_notification(&effect("n1", "TRADE_SUCCESS"))
                .unwrap(),
            Applied::Changed {
                from: WAIT_BUYER_PAY.into(),
                to: TRADE_SUCCESS.into()
            }
        );
        assert_eq!(
            s.apply_notification(&effect("n1", "TRADE_SUCCESS"))
                .unwrap(),
            Applied::Duplicate
        );
        assert_eq!(
            s.apply_notification(&effect("n2", "TRADE_SUCCESS"))
                .unwrap(),
            Applied::NoChange
        );
        assert!(matches!(
            s.apply_notification(&effect("n3", "TRADE_FINISHED"))
                .unwrap(),
            Applied::Changed { .. }
        ));
        let mut e = effect("n4", "TRADE_SUCCESS");
        e.out_trade_no = "nope";
        assert_eq!(s.apply_notification(&e).unwrap(), Applied::UnknownOrder);
        let p = s.payment("m1", "o1").unwrap().unwrap();
        assert_eq!(p.status, TRADE_FINISHED);
        assert_eq!(p.paid_at.as_deref(), Some("2014-01-01 12:00:10"));
        let jobs = s.due_webhooks(now_ms() + 1, 10).unwrap();
        assert_eq!(jobs.len(), 2);
        s.webhook_delivered(jobs[0].id).unwrap();
        assert_eq!(s.pending_webhooks().unwrap(), 1);
        // Reopening keeps everything (migrations are not applied twice).
        drop(s);
        let s = SqliteStore::open(&dir).unwrap();
        assert_eq!(
            s.payment("m1", "o1").unwrap().unwrap().status,
            TRADE_FINISHED
        );
        let _ = std::fs::remove_file(&dir);
    }
}
