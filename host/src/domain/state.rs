//! The payment state machine: from (the payment's status, the provider's event as the component
//! reported it) to the new status and the shop webhook events. Pure: the store applies what it
//! says inside the notification's transaction. A paid payment never becomes unpaid.
//!
//! Components map their provider's statuses into [`TradeEvent`] (a full refund usually arrives as
//! a closed trade with a refund, a partial one as a paid trade with a refund); the host decides
//! with the event alone.
//!
//! | current              | event               | new status           | events                                       |
//! |----------------------|---------------------|----------------------|----------------------------------------------|
//! | `WAIT_BUYER_PAY`     | paid                | `TRADE_SUCCESS`      | `payment.paid`                               |
//! | `WAIT_BUYER_PAY`     | partially-refunded  | `PARTIALLY_REFUNDED` | `payment.paid`, `payment.partially_refunded` |
//! | `WAIT_BUYER_PAY`     | finished            | `TRADE_FINISHED`     | `payment.finished`                           |
//! | `WAIT_BUYER_PAY`     | closed              | `TRADE_CLOSED`       | `payment.closed` (closed unpaid)             |
//! | `WAIT_BUYER_PAY`     | refunded            | `REFUNDED`           | `payment.refunded`                           |
//! | `TRADE_SUCCESS`      | paid                | (unchanged)          | —                                            |
//! | `TRADE_SUCCESS`      | partially-refunded  | `PARTIALLY_REFUNDED` | `payment.partially_refunded`                 |
//! | `TRADE_SUCCESS`      | finished            | `TRADE_FINISHED`     | `payment.finished`                           |
//! | `TRADE_SUCCESS`      | closed or refunded  | `REFUNDED`           | `payment.refunded` (paid, then closed)       |
//! | `TRADE_FINISHED`     | partially-refunded  | `PARTIALLY_REFUNDED` | `payment.partially_refunded` (late)          |
//! | `TRADE_FINISHED`     | closed or refunded  | `REFUNDED`           | `payment.refunded`                           |
//! | `TRADE_FINISHED`     | other               | (unchanged)          | —                                            |
//! | `PARTIALLY_REFUNDED` | partially-refunded  | (unchanged)          | `payment.partially_refunded` (another one)   |
//! | `PARTIALLY_REFUNDED` | closed or refunded  | `REFUNDED`           | `payment.refunded` (the rest refunded)       |
//! | `PARTIALLY_REFUNDED` | other               | (unchanged)          | —                                            |
//! | `TRADE_CLOSED`       | paid                | `TRADE_SUCCESS`      | `payment.paid` (paid after a close here: the |
//! |                      |                     |                      | legacy API has no close call; `notify` flags |
//! |                      |                     |                      | it for review)                               |
//! | `TRADE_CLOSED`       | partially-refunded  | `PARTIALLY_REFUNDED` | `payment.paid`, `payment.partially_refunded` |
//! | `TRADE_CLOSED`       | finished            | `TRADE_FINISHED`     | `payment.finished`                           |
//! | `TRADE_CLOSED`       | refunded            | `REFUNDED`           | `payment.refunded` (paid after a close here, |
//! |                      |                     |                      | then refunded: a late "paid" changes nothing)|
//! | `TRADE_CLOSED`       | other               | (unchanged)          | — (an unpaid, closed order stays closed)     |
//! | `REFUNDED`           | any                 | (unchanged)          | — (a late "finished" undoes nothing)         |
//! | any                  | waiting             | (unchanged)          | —                                            |
//!
//! The status names are the shop API's (`status` of a payment and of a webhook).
//!
//! "Finished" is also kept apart from the status (`finished_at`, written by
//! `domain::events::plan_notification`): a partial refund reported before or after it moves the
//! status on, and the trade still takes no refund (`domain::refunds::check_start`).

pub const WAIT_BUYER_PAY: &str = "WAIT_BUYER_PAY";
pub const TRADE_SUCCESS: &str = "TRADE_SUCCESS";
pub const TRADE_FINISHED: &str = "TRADE_FINISHED";
pub const TRADE_CLOSED: &str = "TRADE_CLOSED";
/// Paid, then fully refunded (the provider closed the trade after the refund).
pub const REFUNDED: &str = "REFUNDED";
/// Paid, and part of the amount refunded (the rest stays paid; more refunds may follow).
pub const PARTIALLY_REFUNDED: &str = "PARTIALLY_REFUNDED";

/// Every status a payment can have, in the order a shop owner meets them.
pub const STATUSES: [&str; 6] = [
    WAIT_BUYER_PAY,
    TRADE_SUCCESS,
    TRADE_FINISHED,
    PARTIALLY_REFUNDED,
    REFUNDED,
    TRADE_CLOSED,
];

/// What a provider says happened to a trade, in the host's words (components map into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeEvent {
    Waiting,
    Paid,
    Finished,
    Closed,
    Refunded,
    PartiallyRefunded,
}

/// A shop webhook event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Paid,
    Finished,
    Closed,
    Refunded,
    PartiallyRefunded,
}

impl Event {
    /// The webhook's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Event::Paid => "payment.paid",
            Event::Finished => "payment.finished",
            Event::Closed => "payment.closed",
            Event::Refunded => "payment.refunded",
            Event::PartiallyRefunded => "payment.partially_refunded",
        }
    }

    /// Whether the event can happen more than once for one order (then its id also covers the
    /// notification that reported it).
    pub fn repeatable(self) -> bool {
        matches!(self, Event::PartiallyRefunded)
    }
}

/// What a notification does to a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new status, or None when the status stays.
    pub to: Option<&'static str>,
    /// The webhook events to queue, in order.
    pub events: Vec<Event>,
}

impl Transition {
    fn none() -> Self {
        Transition {
            to: None,
            events: Vec::new(),
        }
    }

    fn to(status: &'static str, events: &[Event]) -> Self {
        Transition {
            to: Some(status),
            events: events.to_vec(),
        }
    }

    fn stay(events: &[Event]) -> Self {
        Transition {
            to: None,
            events: events.to_vec(),
        }
    }

    /// Nothing happens.
    pub fn is_none(&self) -> bool {
        self.to.is_none() && self.events.is_empty()
    }
}

/// Whether the provider's finish of a trade is kept on a payment of `status` (`finished_at`): not
/// on a fully refunded one, which has nothing left to refund.
pub fn keeps_finish(status: &str) -> bool {
    status != REFUNDED
}

/// Whether a status counts as paid (money was received at some point).
pub fn is_paid(status: &str) -> bool {
    matches!(
        status,
        TRADE_SUCCESS | TRADE_FINISHED | PARTIALLY_REFUNDED | REFUNDED
    )
}

/// The transition for a verified notification (see the table in the module documentation).
pub fn transition(current: &str, event: TradeEvent) -> Transition {
    use Event::*;
    use TradeEvent as T;
    match (current, event) {
        // Money that arrives is a payment, also for an order closed here (the legacy API has no
        // close call, so the cashier the buyer had open still takes it).
        (WAIT_BUYER_PAY | TRADE_CLOSED, T::Paid) => Transition::to(TRADE_SUCCESS, &[Paid]),
        (WAIT_BUYER_PAY | TRADE_CLOSED, T::PartiallyRefunded) => {
            Transition::to(PARTIALLY_REFUNDED, &[Paid, PartiallyRefunded])
        }
        (WAIT_BUYER_PAY | TRADE_CLOSED, T::Finished) => Transition::to(TRADE_FINISHED, &[Finished]),
        (WAIT_BUYER_PAY, T::Closed) => Transition::to(TRADE_CLOSED, &[Closed]),
        // A refund of an order closed here: the buyer paid in a cashier still open, and the
        // money went back. Refunded, so the "paid" notification arriving late moves nothing.
        (WAIT_BUYER_PAY | TRADE_CLOSED, T::Refunded) => Transition::to(REFUNDED, &[Refunded]),
        (TRADE_SUCCESS | TRADE_FINISHED, T::PartiallyRefunded) => {
            Transition::to(PARTIALLY_REFUNDED, &[PartiallyRefunded])
        }
        (PARTIALLY_REFUNDED, T::PartiallyRefunded) => Transition::stay(&[PartiallyRefunded]),
        (TRADE_SUCCESS, T::Finished) => Transition::to(TRADE_FINISHED, &[Finished]),
        (TRADE_SUCCESS | TRADE_FINISHED | PARTIALLY_REFUNDED, T::Closed | T::Refunded) => {
            Transition::to(REFUNDED, &[Refunded])
        }
        _ => Transition::none(),
    }
}

#[cfg(test)]
mod tests {
    use super::Event::*;
    use super::*;
    use TradeEvent as T;

    #[test]
    fn every_row_of_the_table() {
        type Row<'a> = (&'a str, TradeEvent, Option<&'a str>, &'a [Event]);
        let rows: &[Row<'_>] = &[
            (WAIT_BUYER_PAY, T::Paid, Some(TRADE_SUCCESS), &[Paid]),
            (
                WAIT_BUYER_PAY,
                T::PartiallyRefunded,
                Some(PARTIALLY_REFUNDED),
                &[Paid, PartiallyRefunded],
            ),
            (
                WAIT_BUYER_PAY,
                T::Finished,
                Some(TRADE_FINISHED),
                &[Finished],
            ),
            (WAIT_BUYER_PAY, T::Closed, Some(TRADE_CLOSED), &[Closed]),
            (WAIT_BUYER_PAY, T::Refunded, Some(REFUNDED), &[Refunded]),
            (WAIT_BUYER_PAY, T::Waiting, None, &[]),
            (TRADE_SUCCESS, T::Paid, None, &[]),
            (
                TRADE_SUCCESS,
                T::PartiallyRefunded,
                Some(PARTIALLY_REFUNDED),
                &[PartiallyRefunded],
            ),
            (
                TRADE_SUCCESS,
                T::Finished,
                Some(TRADE_FINISHED),
                &[Finished],
            ),
            (TRADE_SUCCESS, T::Closed, Some(REFUNDED), &[Refunded]),
            (TRADE_SUCCESS, T::Refunded, Some(REFUNDED), &[Refunded]),
            (TRADE_SUCCESS, T::Waiting, None, &[]),
            (TRADE_FINISHED, T::Paid, None, &[]),
            (
                TRADE_FINISHED,
                T::PartiallyRefunded,
                Some(PARTIALLY_REFUNDED),
                &[PartiallyRefunded],
            ),
            (
                PARTIALLY_REFUNDED,
                T::PartiallyRefunded,
                None,
                &[PartiallyRefunded],
            ),
            (PARTIALLY_REFUNDED, T::Refunded, Some(REFUNDED), &[Refunded]),
            (PARTIALLY_REFUNDED, T::Closed, Some(REFUNDED), &[Refunded]),
            (PARTIALLY_REFUNDED, T::Finished, None, &[]),
            (PARTIALLY_REFUNDED, T::Paid, None, &[]),
            (TRADE_FINISHED, T::Finished, None, &[]),
            (TRADE_FINISHED, T::Refunded, Some(REFUNDED), &[Refunded]),
            (TRADE_FINISHED, T::Closed, Some(REFUNDED), &[Refunded]),
            (TRADE_CLOSED, T::Paid, Some(TRADE_SUCCESS), &[Paid]),
            (
                TRADE_CLOSED,
                T::PartiallyRefunded,
                Some(PARTIALLY_REFUNDED),
                &[Paid, PartiallyRefunded],
            ),
            (TRADE_CLOSED, T::Finished, Some(TRADE_FINISHED), &[Finished]),
            (TRADE_CLOSED, T::Refunded, Some(REFUNDED), &[Refunded]),
            (TRADE_CLOSED, T::Closed, None, &[]),
            (REFUNDED, T::Finished, None, &[]),
            (REFUNDED, T::PartiallyRefunded, None, &[]),
            (REFUNDED, T::Refunded, None, &[]),
            (REFUNDED, T::Closed, None, &[]),
        ];
        for (current, event, to, events) in rows {
            assert_eq!(
                transition(current, *event),
                Transition {
                    to: *to,
                    events: events.to_vec()
                },
                "{current} + {event:?}"
            );
        }
    }

    #[test]
    fn a_paid_order_never_becomes_unpaid() {
        let all = [
            T::Waiting,
            T::Paid,
            T::Finished,
            T::Closed,
            T::Refunded,
            T::PartiallyRefunded,
        ];
        for current in [TRADE_SUCCESS, TRADE_FINISHED, PARTIALLY_REFUNDED, REFUNDED] {
            for event in all {
                if let Some(to) = transition(current, event).to {
                    assert!(is_paid(to), "{current} + {event:?} → {to}");
                }
            }
        }
        assert_eq!(Refunded.name(), "payment.refunded");
        assert_eq!(PartiallyRefunded.name(), "payment.partially_refunded");
    }
}
