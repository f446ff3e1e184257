//! The shop's webhook events for a state change, built here and stored by the store in the same
//! transaction as the change. Pure: the same for every store.

use crate::store::{NotificationEffect, Payment};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The payment moved from one status to another; a webhook was queued if configured.
    Changed { from: String, to: String },
    /// The status stays, but an event was recorded (a partial refund); webhooks queued.
    Recorded { status: String, events: Vec<String> },
    /// The status stays (a refund moved it on), but the provider finished the trade: no refund
    /// can start any more. No webhook: the shop's status is unchanged.
    Finished { status: String },
    /// Genuine and new, but it does not move the payment (e.g. TRADE_SUCCESS after TRADE_FINISHED).
    NoChange,
    /// This notify_id was applied before: nothing changed.
    Duplicate,
    /// The payment does not exist.
    UnknownOrder,
    /// The notification is of another trade than the one the payment recorded: the order was
    /// paid twice (two trades of one order number). Nothing moves; the payment is flagged.
    OtherTrade { recorded: String, other: String },
}

/// What a notification that finished the trade says in its detail (after the status in
/// [`Applied::Finished`]'s; the admin's timeline words it).
pub const FINISHED_WORDS: &str = "trade finished (TRADE_FINISHED), no more refunds";

/// Why a payment is flagged when a trade other than its recorded one reports on it.
pub fn other_trade_reason(recorded: &str, other: &str) -> String {
    format!(
        "另一笔支付宝交易 {other} 也报告了这个订单（已记录的交易是 {recorded}）：订单可能被支付了两次，请在支付宝核对两笔交易并退回多收的一笔 / another trade ({other}) reports on this order, whose recorded trade is {recorded}: it may have been paid twice; check both in the provider's portal and refund the extra one"
    )
}

/// The trade that paid `payment` when `trade_no` (a notification's, non-empty) is another. Only a
/// trade that paid counts: an unpaid trade closed by the provider records its number too, and
/// the order's other cashier page may still be paid (a close, then money: paid, and flagged as
/// such by the state machine).
pub fn other_trade<'a>(payment: &'a Payment, trade_no: &str) -> Option<&'a str> {
    let paid = payment.paid_at.is_some() || crate::domain::state::is_paid(&payment.status);
    payment.trade_no.as_deref().filter(|recorded| {
        paid && !recorded.is_empty() && !trade_no.is_empty() && *recorded != trade_no
    })
}

impl Applied {
    /// The outcome and detail recorded for the notification (the label is the notify
    /// pipeline's, `notify::NotifyOutcome::label`).
    pub fn outcome(&self) -> (&'static str, Option<String>) {
        let label = crate::notify::NotifyOutcome::from_applied(self).label();
        let detail = match self {
            Applied::Changed { from, to } => Some(format!("{from} -> {to}")),
            Applied::Recorded { status, events } => {
                Some(format!("{status}: {}", events.join(", ")))
            }
            Applied::Finished { status } => Some(format!("{status}: {FINISHED_WORDS}")),
            Applied::OtherTrade { recorded, other } => Some(format!(
                "held for review: {}",
                other_trade_reason(recorded, other)
            )),
            Applied::NoChange | Applied::Duplicate | Applied::UnknownOrder => None,
        };
        (label, detail)
    }
}

/// A webhook to queue with a state change.
#[derive(Debug, Clone)]
pub struct PlannedWebhook {
    pub event_id: String,
    pub kind: &'static str,
    pub url: String,
    pub body: String,
}

/// What a new, genuine notification does to its payment (the same for every store).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The payment's status afterwards.
    pub next: String,
    pub paid_at: Option<String>,
    pub webhooks: Vec<PlannedWebhook>,
    pub applied: Applied,
    /// Why the owner must look at the payment, written with the move: money for an order closed
    /// here (a close that reached only payhost leaves the buyer's open cashier payable).
    pub review: Option<String>,
    /// When the trade was reported finished, written with the move (once: a stored time stays).
    pub finished_at: Option<String>,
}

/// The transition of `payment` by the notification `e` (whose notify_id was just claimed), with
/// the webhooks to queue; None when it does not move the payment.
pub fn plan_notification(payment: &Payment, e: &NotificationEffect<'_>, now: &str) -> Option<Plan> {
    // Checked here too, under the payment's lock: two trades' notifications read before either
    // committed both found no trade recorded.
    if let Some(recorded) = other_trade(payment, e.trade_no) {
        return Some(Plan {
            next: payment.status.clone(),
            paid_at: payment.paid_at.clone(),
            webhooks: Vec::new(),
            applied: Applied::OtherTrade {
                recorded: recorded.to_owned(),
                other: e.trade_no.to_owned(),
            },
            review: Some(super::review::with_reason(
                payment.review.as_deref(),
                &other_trade_reason(recorded, e.trade_no),
            )),
            finished_at: None,
        });
    }
    let t = crate::domain::state::transition(&payment.status, e.event);
    // Finished is a fact apart from the status: a trade partly refunded, then finished, stays
    // PARTIALLY_REFUNDED and takes no refund any more (nor does a finished trade whose earlier
    // partial refund is reported late). A fully refunded one has nothing left to refund.
    let finished_at = (e.event == crate::domain::state::TradeEvent::Finished
        && payment.finished_at.is_none()
        && super::state::keeps_finish(&payment.status))
    .then(|| now.to_owned());
    if t.is_none() {
        return finished_at.map(|finished_at| Plan {
            next: payment.status.clone(),
            paid_at: payment.paid_at.clone(),
            webhooks: Vec::new(),
            applied: Applied::Finished {
                status: payment.status.clone(),
            },
            review: None,
            finished_at: Some(finished_at),
        });
    }
    let next = t.to.unwrap_or(payment.status.as_str()).to_owned();
    let paid_at = if next == super::state::TRADE_CLOSED {
        None
    } else {
        Some(payment.paid_at.clone().unwrap_or_else(|| {
            e.paid_at
                .map(str::to_owned)
                .unwrap_or_else(|| now.to_owned())
        }))
    };
    let mut webhooks = Vec::new();
    // One time for all of this notification's events (they say the same status).
    let at_ms = super::clock::event_ms(now);
    if let Some(url) = e.webhook_url {
        for event in &t.events {
            let kind = event.name();
            let event_id = event_id(
                e.merchant_id,
                e.out_trade_no,
                kind,
                event.repeatable().then_some(e.notify_id),
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
                // As the API shows it (UTC ISO 8601), whatever form the provider gave.
                "paid_at": paid_at.as_deref().map(super::clock::shown_utc_or_as_is),
                "refund_status": e.refund_status,
                "gmt_refund": e.gmt_refund,
                "created_at": now,
                // Orders two events of one payment made in the same second (a shop lets the
                // later win); one notification's two events share it and say the same status.
                "created_at_ms": at_ms,
            })
            .to_string();
            webhooks.push(PlannedWebhook {
                event_id,
                kind,
                url: url.to_owned(),
                body,
            });
        }
    }
    let applied = match t.to {
        Some(to) => Applied::Changed {
            from: payment.status.clone(),
            to: to.to_owned(),
        },
        None => Applied::Recorded {
            status: payment.status.clone(),
            events: t.events.iter().map(|e| e.name().to_owned()).collect(),
        },
    };
    let review = (payment.status == super::state::TRADE_CLOSED && next != payment.status).then(|| {
        super::review::with_reason(
            payment.review.as_deref(),
            &format!(
                "关闭后又收到付款（支付宝交易号 {0}），已按已支付处理：请发货或退款 / paid after it was closed here (trade {0}): now paid; fulfil or refund it",
                e.trade_no
            ),
        )
    });
    Some(Plan {
        next,
        paid_at,
        webhooks,
        applied,
        review,
        finished_at,
    })
}

/// `evt_` and the hex SHA-256 over the length-prefixed merchant id, order number, event type and
/// (for events that may repeat, such as partial refunds) the notify_id: unique by construction,
/// whatever characters the parts contain.
pub fn event_id(merchant: &str, out_trade_no: &str, kind: &str, notify_id: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [Some(merchant), Some(out_trade_no), Some(kind), notify_id]
        .into_iter()
        .flatten()
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("evt_{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::{TradeEvent, TRADE_CLOSED, WAIT_BUYER_PAY};

    fn payment(status: &str) -> Payment {
        Payment {
            merchant_id: "m".into(),
            out_trade_no: "o1".into(),
            subject: "s".into(),
            total_fen: 100,
            seller: "seller@example.com".into(),
            return_url: String::new(),
            status: status.into(),
            request_token: None,
            pay_url: None,
            trade_no: None,
            buyer_email: None,
            paid_at: None,
            review: None,
            created_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
        }
    }

    fn paid() -> NotificationEffect<'static> {
        NotificationEffect {
            merchant_id: "m",
            notify_id: "n1",
            out_trade_no: "o1",
            trade_status: "TRADE_SUCCESS",
            event: TradeEvent::Paid,
            trade_no: "2026120422001",
            buyer_email: None,
            paid_at: None,
            webhook_url: Some("http://shop.example/hook"),
            refund_status: None,
            gmt_refund: None,
        }
    }

    #[test]
    fn a_webhook_s_paid_at_is_utc_as_the_api_shows_it() {
        let beijing = NotificationEffect {
            paid_at: Some("2026-12-05 10:58:30"),
            ..paid()
        };
        for (effect, now, want) in [
            (beijing, "2026-12-05T03:00:00Z", "2026-12-05T02:58:30Z"),
            // No payment time from the provider: the time it was applied here.
            (paid(), "2026-12-05T03:00:00Z", "2026-12-05T03:00:00Z"),
        ] {
            let plan = plan_notification(&payment(WAIT_BUYER_PAY), &effect, now).unwrap();
            let body: serde_json::Value = serde_json::from_str(&plan.webhooks[0].body).unwrap();
            assert_eq!(body["paid_at"], want, "{body}");
            assert_eq!(body["created_at"], now);
        }
    }

    #[test]
    fn another_trade_is_held_only_once_a_trade_paid_the_order() {
        // Paid by trade 1999…: trade 2026… paying it too is held, nothing moves.
        let mut p = payment(crate::domain::state::TRADE_SUCCESS);
        p.trade_no = Some("1999".into());
        p.paid_at = Some("2026-12-06T00:00:00Z".into());
        let plan = plan_notification(&p, &paid(), "now").expect("a plan");
        assert_eq!(plan.next, p.status);
        assert!(plan.webhooks.is_empty());
        assert!(matches!(plan.applied, Applied::OtherTrade { .. }));
        assert!(plan.review.is_some_and(|r| r.contains("1999")));
        // Closed by the provider while unpaid (its trade number recorded), then paid through
        // the order's other page: paid, as money after a close is.
        let mut closed = payment(TRADE_CLOSED);
        closed.trade_no = Some("1999".into());
        let plan = plan_notification(&closed, &paid(), "now").expect("moves");
        assert!(
            matches!(plan.applied, Applied::Changed { .. }),
            "{:?}",
            plan.applied
        );
        assert_eq!(plan.webhooks.len(), 1);
    }

    #[test]
    fn money_for_an_order_closed_here_is_paid_and_held_for_review_in_the_same_plan() {
        let plan = plan_notification(&payment(TRADE_CLOSED), &paid(), "now").expect("moves");
        assert_ne!(plan.next, TRADE_CLOSED);
        let review = plan
            .review
            .expect("a review reason is written with the move");
        assert!(
            review.contains("2026120422001") && review.contains("关闭后又收到付款"),
            "{review}"
        );
        assert_eq!(plan.webhooks.len(), 1);
    }

    #[test]
    fn a_finished_trade_is_a_fact_kept_once_apart_from_the_status() {
        use crate::domain::state::{PARTIALLY_REFUNDED, REFUNDED, TRADE_FINISHED, TRADE_SUCCESS};
        let finished = NotificationEffect {
            trade_status: "TRADE_FINISHED",
            event: TradeEvent::Finished,
            ..paid()
        };
        // Moved to TRADE_FINISHED, with the fact.
        let plan = plan_notification(&payment(TRADE_SUCCESS), &finished, "t1").expect("moves");
        assert_eq!(
            (plan.next.as_str(), plan.finished_at.as_deref()),
            (TRADE_FINISHED, Some("t1"))
        );
        // Partly refunded, then finished: the status stays, the fact is written, no webhook.
        let plan = plan_notification(&payment(PARTIALLY_REFUNDED), &finished, "t2").expect("kept");
        assert_eq!(plan.next, PARTIALLY_REFUNDED);
        assert_eq!(plan.finished_at.as_deref(), Some("t2"));
        assert!(plan.webhooks.is_empty());
        assert_eq!(
            plan.applied,
            Applied::Finished {
                status: PARTIALLY_REFUNDED.into()
            }
        );
        // Known already, or nothing left to refund: nothing to write.
        let mut known = payment(PARTIALLY_REFUNDED);
        known.finished_at = Some("t0".into());
        assert!(plan_notification(&known, &finished, "t3").is_none());
        assert!(plan_notification(&payment(REFUNDED), &finished, "t3").is_none());
        // Another event writes no finish.
        let paid_plan = plan_notification(&payment(WAIT_BUYER_PAY), &paid(), "t4").expect("moves");
        assert_eq!(paid_plan.finished_at, None);
    }

    #[test]
    fn an_ordinary_payment_needs_no_review() {
        let plan = plan_notification(&payment(WAIT_BUYER_PAY), &paid(), "now").expect("moves");
        assert!(plan.review.is_none());
    }
}
