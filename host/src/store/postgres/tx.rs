//! One PostgreSQL transaction on a pooled connection, and the primitives of
//! [`NotifyTx`](crate::store::rules::NotifyTx) inside it.
//!
//! Each round trip wakes the server and payhost, and on a shared machine those wake-ups are a large
//! part of what a notification costs (docs/PERFORMANCE.md, "Round 3, session 7"). So BEGIN is never
//! sent alone: it goes out with the transaction's first statement, the payment's lock goes with its
//! claim, and a notification's last writes carry the COMMIT. A notification's transaction is two
//! round trips instead of one per statement (seven or more). Statements sent together run in
//! order, as if sent one by one; the first error aborts the transaction and is the one returned.
//!
//! A transaction dropped before its end (a cancelled request) is rolled back before its
//! connection serves anyone else: a ROLLBACK is queued behind whatever was already sent, and the
//! connection goes back to the pool once it is answered. What was sent still runs; when that
//! included the COMMIT, the transaction commits whole and the ROLLBACK finds nothing to undo.

use super::{payment_from_row, PAYMENT_COLUMNS};
use crate::store::rules::{webhook_conflict, NotifyTx, PaymentMove, PaymentState};
use crate::store::*;
use anyhow::Context;
use deadpool_postgres::{ClientWrapper, Object};
use std::future::Future;
use std::sync::LazyLock;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Nothing sent yet: BEGIN goes in front of the first statement.
    Idle,
    /// BEGIN sent; neither COMMIT nor ROLLBACK answered.
    Open,
    /// Committed or rolled back.
    Ended,
}

pub(in crate::store) struct PgTx {
    conn: Option<Object>,
    state: State,
}

/// Runs `$rule` (an expression awaiting over `$tx: &mut PgTx`) in one transaction of `$store`:
/// committed when it returns Ok (unless its last step carried the COMMIT), rolled back otherwise.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $rule:expr) => {{
        let mut pg_tx = $crate::store::postgres::tx::PgTx::new($store.client().await?);
        let result = {
            let $tx = &mut pg_tx;
            $rule.await
        };
        pg_tx.end(result).await
    }};
}
pub(super) use in_tx;

impl PgTx {
    pub(super) fn new(conn: Object) -> PgTx {
        PgTx {
            conn: Some(conn),
            state: State::Idle,
        }
    }

    fn conn(&self) -> &ClientWrapper {
        self.conn
            .as_ref()
            .expect("a transaction's connection is held until drop")
    }

    /// The connection, and whether BEGIN must go out in front of what is sent next; from here on
    /// the transaction counts as open, so call it only once everything to send is prepared
    /// (what is sent then goes out on the next poll). An error after the transaction's end: a
    /// statement there would run outside it.
    fn next(&mut self) -> Result<(&ClientWrapper, bool)> {
        let begin = match self.state {
            State::Idle => true,
            State::Open => false,
            State::Ended => anyhow::bail!("a statement after its transaction ended"),
        };
        self.state = State::Open;
        Ok((self.conn(), begin))
    }

    /// Commits after `result` is Ok (rolls back otherwise) and returns it.
    pub(super) async fn end<R>(mut self, result: Result<R>) -> Result<R> {
        let word = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if self.state == State::Open {
            let ended = self.conn().batch_execute(word).await;
            match (ended, &result) {
                (Ok(()), _) => self.state = State::Ended,
                (Err(e), Ok(_)) => {
                    return Err(anyhow::Error::new(e).context("the database could not commit"))
                }
                // The rule's error is the one to tell; Drop rolls back again or closes.
                (Err(_), Err(_)) => {}
            }
        }
        result
    }

    pub(super) async fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let st = self.conn().prepare_cached(sql).await?;
        let (c, begin) = self.next()?;
        after_begin(c, begin, c.query(&st, params)).await
    }

    pub(super) async fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let st = self.conn().prepare_cached(sql).await?;
        let (c, begin) = self.next()?;
        after_begin(c, begin, c.query_opt(&st, params)).await
    }

    pub(super) async fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row> {
        let st = self.conn().prepare_cached(sql).await?;
        let (c, begin) = self.next()?;
        after_begin(c, begin, c.query_one(&st, params)).await
    }

    pub(super) async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        let st = self.conn().prepare_cached(sql).await?;
        let (c, begin) = self.next()?;
        after_begin(c, begin, c.execute(&st, params)).await
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.state != State::Open {
            return;
        }
        let Some(conn) = self.conn.take() else {
            return;
        };
        // The connection stays out of the pool (its slot taken) until the ROLLBACK is answered;
        // one that cannot roll back is closed, and the server rolls back then.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(conn));
                    }
                });
            }
            Err(_) => drop(Object::take(conn)),
        }
    }
}

/// `q`, with BEGIN sent in the same round trip in front of it when `begin`.
async fn after_begin<T>(
    c: &ClientWrapper,
    begin: bool,
    q: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    let (_, t) = tokio::try_join!(biased; begin_if(c, begin), q)?;
    Ok(t)
}

async fn begin_if(c: &ClientWrapper, begin: bool) -> Result<(), tokio_postgres::Error> {
    if begin {
        c.batch_execute("BEGIN").await?;
    }
    Ok(())
}

/// The payment, locked until the transaction ends.
static LOCK_PAYMENT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2 FOR UPDATE")
});

/// The payment locked and the claim of a notify_id for it, in one statement: the claim is made
/// only from the locked row, so an unknown order claims nothing (two statements would each see
/// the database afresh, and a payment committed between them would be claimed yet reported
/// unknown). A duplicate on another replica waits for the lock, then finds the first claim.
static LOCK_AND_CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH p AS (SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND out_trade_no = $2 FOR UPDATE),
              c AS (INSERT INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at)
                    SELECT merchant_id, $3, out_trade_no, $4 FROM p ON CONFLICT DO NOTHING RETURNING 1)
         SELECT p.*, EXISTS (SELECT 1 FROM c) AS claimed FROM p"
    )
});

const WRITE_PAYMENT_STATE: &str = "UPDATE payments SET status = $3, trade_no = COALESCE($4, trade_no), buyer_email = COALESCE($5, buyer_email),
     paid_at = $6, updated_at = $7, review = COALESCE($8, review), finished_at = COALESCE(finished_at, $9) WHERE merchant_id = $1 AND out_trade_no = $2";

/// [`WRITE_PAYMENT_STATE`]'s arguments.
fn state_args<'a>(
    merchant: &'a &'a str,
    out_trade_no: &'a &'a str,
    s: &'a PaymentState<'a>,
) -> [&'a (dyn ToSql + Sync); 9] {
    [
        merchant,
        out_trade_no,
        &s.status,
        &s.trade_no,
        &s.buyer_email,
        &s.paid_at,
        &s.updated_at,
        &s.review,
        &s.finished_at,
    ]
}

const ENQUEUE_WEBHOOK: &str = "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type) VALUES ($1, $2, $3, $4, $5, $5, $6)";

/// Several webhooks in one statement, queued in the order given.
const ENQUEUE_WEBHOOKS: &str = "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, next_attempt_ms, created_ms, event_type)
     SELECT w.event_id, $1, w.url, w.body, $2, $2, w.kind
     FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS w(event_id, url, body, kind, n)
     ORDER BY w.n";

const INSERT_RAW: &str = "INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES ($1, $2, $3, $4) RETURNING id";

const INSERT_RESULT: &str = "INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The notification as received and its result, in one statement (the result needs the raw
/// row's id).
const INSERT_RAW_AND_RESULT: &str = "WITH raw AS (
         INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body) VALUES ($1, $2, $3, $4) RETURNING id)
     INSERT INTO notification_results (raw_id, merchant_id, notify_id, out_trade_no, trade_status, outcome, detail, processed_at)
     SELECT id, $1, $5, $6, $7, $8, $9, $10 FROM raw
     RETURNING raw_id";

impl NotifyTx for PgTx {
    async fn insert_raw(&mut self, raw: &RawNotification<'_>, received_at: &str) -> Result<i64> {
        let row = self
            .query_one(
                INSERT_RAW,
                &[&raw.merchant_id, &received_at, &raw.remote, &raw.body],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn insert_refused(&mut self, r: &RefusedRecord) -> Result<i64> {
        let row = self
            .query_one(
                "INSERT INTO raw_notifications (merchant_id, received_at, remote_addr, body, refused, body_size, body_sha256)
                 VALUES ($1, $2, $3, $4, true, $5, $6) RETURNING id",
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
        self.execute(
            INSERT_RESULT,
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
        self.query_opt(&LOCK_PAYMENT, &[&merchant, &out_trade_no])
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
        let claimed = self
            .execute(
                "INSERT INTO applied_notifications (merchant_id, notify_id, out_trade_no, applied_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&merchant, &notify_id, &out_trade_no, &at],
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn release_claim(&mut self, merchant: &str, notify_id: &str) -> Result<()> {
        self.execute(
            "DELETE FROM applied_notifications WHERE merchant_id = $1 AND notify_id = $2",
            &[&merchant, &notify_id],
        )
        .await?;
        Ok(())
    }

    async fn write_payment_state(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        s: &PaymentState<'_>,
    ) -> Result<()> {
        self.execute(
            WRITE_PAYMENT_STATE,
            &state_args(&merchant, &out_trade_no, s),
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
        self.execute(
            ENQUEUE_WEBHOOK,
            &[&w.event_id, &merchant, &w.url, &w.body, &at_ms, &w.kind],
        )
        .await?;
        Ok(())
    }

    async fn refused_beyond(&mut self, merchant: &str, keep: u32) -> Result<Option<i64>> {
        Ok(self
            .query_opt(
                "SELECT id FROM raw_notifications WHERE merchant_id = $1 AND refused ORDER BY id DESC LIMIT 1 OFFSET $2",
                &[&merchant, &(keep as i64)],
            )
            .await?
            .map(|r| r.get(0)))
    }

    async fn delete_refused_through(&mut self, merchant: &str, id: i64) -> Result<()> {
        self.execute(
            "DELETE FROM notification_results WHERE raw_id IN
             (SELECT id FROM raw_notifications WHERE merchant_id = $1 AND refused AND id <= $2)",
            &[&merchant, &id],
        )
        .await?;
        self.execute(
            "DELETE FROM raw_notifications WHERE merchant_id = $1 AND refused AND id <= $2",
            &[&merchant, &id],
        )
        .await?;
        Ok(())
    }

    /// BEGIN, the lock and the claim in one round trip.
    async fn lock_and_claim(
        &mut self,
        merchant: &str,
        out_trade_no: &str,
        notify_id: &str,
        at: &str,
    ) -> Result<Option<(Payment, bool)>> {
        let Some(row) = self
            .query_opt(
                &LOCK_AND_CLAIM,
                &[&merchant, &out_trade_no, &notify_id, &at],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((payment_from_row(&row)?, row.try_get("claimed")?)))
    }

    /// The payment's new state, its webhooks, the notification with its result and the COMMIT
    /// (BEGIN too, when nothing came before) in one round trip.
    async fn finish_notification(
        &mut self,
        moved: Option<&PaymentMove<'_>>,
        raw: &RawNotification<'_>,
        received_at: &str,
        record: &NotificationRecord,
    ) -> Result<i64> {
        let state = self.conn().prepare_cached(WRITE_PAYMENT_STATE).await?;
        let hooks = self.conn().prepare_cached(ENQUEUE_WEBHOOKS).await?;
        let stored = self.conn().prepare_cached(INSERT_RAW_AND_RESULT).await?;
        let (c, begin) = self.next()?;
        let write_state = async {
            if let Some(m) = moved {
                c.execute(&state, &state_args(&m.merchant, &m.out_trade_no, &m.state))
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        };
        let enqueue = async {
            let Some(m) = moved.filter(|m| !m.webhooks.is_empty()) else {
                return Ok(());
            };
            let column = |f: fn(&PlannedWebhook) -> &str| -> Vec<&str> {
                m.webhooks.iter().map(f).collect()
            };
            let (ids, urls, bodies, kinds) = (
                column(|w| &w.event_id),
                column(|w| &w.url),
                column(|w| &w.body),
                column(|w| w.kind),
            );
            c.execute(
                &hooks,
                &[&m.merchant, &m.at_ms, &ids, &urls, &bodies, &kinds],
            )
            .await
            .with_context(|| webhook_conflict(m, m.webhooks))?;
            Ok(())
        };
        let processed_at = now_rfc3339();
        let (_, (), (), row, ()) = tokio::try_join!(
            biased;
            async { Ok::<_, anyhow::Error>(begin_if(c, begin).await?) },
            write_state,
            enqueue,
            async {
                Ok::<_, anyhow::Error>(
                    c.query_one(
                        &stored,
                        &[
                            &raw.merchant_id,
                            &received_at,
                            &raw.remote,
                            &raw.body,
                            &record.notify_id,
                            &record.out_trade_no,
                            &record.trade_status,
                            &record.outcome,
                            &record.detail,
                            &processed_at,
                        ],
                    )
                    .await?,
                )
            },
            async {
                c.batch_execute("COMMIT")
                    .await
                    .context("the database could not commit")
            },
        )?;
        self.state = State::Ended;
        Ok(row.get(0))
    }
}
