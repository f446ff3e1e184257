//! The payment state machine: from (the payment's status, the notification's `trade_status`,
//! its `refund_status`) to the new status and the shop webhook events. Pure: the store applies
//! what it says inside the notification's transaction.
//!
//! It follows the protocol reference's handling rules (ALIPAY_EXTRA_PROTOCOLS.md §4.4): a full
//! refund arrives as `TRADE_CLOSED` with `refund_status=REFUND_SUCCESS`, a partial one as
//! `TRADE_SUCCESS` with `refund_status=REFUND_SUCCESS`; `TRADE_CLOSED` without refund fields on
//! an unpaid order is the timeout close. A paid order never becomes unpaid.
//!
//! | current          | trade_status     | refund_status    | new status       | events                                  |
//! |------------------|------------------|------------------|------------------|-----------------------------------------|
//! | `WAIT_BUYER_PAY` | `TRADE_SUCCESS`  | —                | `TRADE_SUCCESS`  | `payment.paid`                          |
//! | `WAIT_BUYER_PAY` | `TRADE_SUCCESS`  | `REFUND_SUCCESS` | `TRADE_SUCCESS`  | `payment.paid`, `payment.partially_refunded` |
//! | `WAIT_BUYER_PAY` | `TRADE_FINISHED` | any              | `TRADE_FINISHED` | `payment.finished`                      |
//! | `WAIT_BUYER_PAY` | `TRADE_CLOSED`   | —                | `TRADE_CLOSED`   | `payment.closed` (timeout close)        |
//! | `WAIT_BUYER_PAY` | `TRADE_CLOSED`   | `REFUND_SUCCESS` | `REFUNDED`       | `payment.refunded`                      |
//! | `TRADE_SUCCESS`  | `TRADE_SUCCESS`  | —                | (unchanged)      | —                                       |
//! | `TRADE_SUCCESS`  | `TRADE_SUCCESS`  | `REFUND_SUCCESS` | (unchanged)      | `payment.partially_refunded`            |
//! | `TRADE_SUCCESS`  | `TRADE_FINISHED` | any              | `TRADE_FINISHED` | `payment.finished`                      |
//! | `TRADE_SUCCESS`  | `TRADE_CLOSED`   | any              | `REFUNDED`       | `payment.refunded` (paid, then closed)  |
//! | `TRADE_FINISHED` | `TRADE_SUCCESS`  | `REFUND_SUCCESS` | (unchanged)      | `payment.partially_refunded` (late)     |
//! | `TRADE_FINISHED` | `TRADE_CLOSED`   | any              | `REFUNDED`       | `payment.refunded`                      |
//! | `TRADE_FINISHED` | other            | any              | (unchanged)      | —                                       |
//! | `TRADE_CLOSED`   | any              | any              | (unchanged)      | — (an unpaid, closed order stays closed) |
//! | `REFUNDED`       | any              | any              | (unchanged)      | — (`TRADE_FINISHED` after a refund undoes nothing) |
//! | any              | `WAIT_BUYER_PAY` or unknown | any   | (unchanged)      | —                                       |
//!
//! `refund_status` values other than `REFUND_SUCCESS` (`REFUND_CLOSED`, `WAIT_ALIPAY_REFUND`, …)
//! count as "no refund".

pub const WAIT_BUYER_PAY: &str = "WAIT_BUYER_PAY";
pub const TRADE_SUCCESS: &str = "TRADE_SUCCESS";
pub const TRADE_FINISHED: &str = "TRADE_FINISHED";
pub const TRADE_CLOSED: &str = "TRADE_CLOSED";
/// Paid, then fully refunded (Alipay closed the trade after the refund).
pub const REFUNDED: &str = "REFUNDED";

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

/// Whether a status counts as paid (money was received at some point).
pub fn is_paid(status: &str) -> bool {
    matches!(status, TRADE_SUCCESS | TRADE_FINISHED | REFUNDED)
}

/// The transition for a verified notification (see the table in the module documentation).
pub fn transition(current: &str, trade_status: &str, refund_status: Option<&str>) -> Transition {
    use Event::*;
    let refunded = refund_status.is_some_and(|r| r.trim() == "REFUND_SUCCESS");
    match (current, trade_status) {
        (WAIT_BUYER_PAY, TRADE_SUCCESS) if refunded => {
            Transition::to(TRADE_SUCCESS, &[Paid, PartiallyRefunded])
        }
        (WAIT_BUYER_PAY, TRADE_SUCCESS) => Transition::to(TRADE_SUCCESS, &[Paid]),
        (WAIT_BUYER_PAY, TRADE_FINISHED) => Transition::to(TRADE_FINISHED, &[Finished]),
        (WAIT_BUYER_PAY, TRADE_CLOSED) if refunded => Transition::to(REFUNDED, &[Refunded]),
        (WAIT_BUYER_PAY, TRADE_CLOSED) => Transition::to(TRADE_CLOSED, &[Closed]),
        (TRADE_SUCCESS | TRADE_FINISHED, TRADE_SUCCESS) if refunded => {
            Transition::stay(&[PartiallyRefunded])
        }
        (TRADE_SUCCESS, TRADE_FINISHED) => Transition::to(TRADE_FINISHED, &[Finished]),
        (TRADE_SUCCESS | TRADE_FINISHED, TRADE_CLOSED) => Transition::to(REFUNDED, &[Refunded]),
        _ => Transition::none(),
    }
}

#[cfg(test)]
mod tests {
    use super::Event::*;
    use super::*;

    const R: Option<&str> = Some("REFUND_SUCCESS");

    #[test]
    fn every_row_of_the_table() {
        // (current, trade_status, refund_status, new status, events)
        type Row<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a [Event],
        );
        let rows: &[Row<'_>] = &[
            (
                WAIT_BUYER_PAY,
                TRADE_SUCCESS,
                None,
                Some(TRADE_SUCCESS),
                &[Paid],
            ),
            (
                WAIT_BUYER_PAY,
                TRADE_SUCCESS,
                R,
                Some(TRADE_SUCCESS),
                &[Paid, PartiallyRefunded],
            ),
            (
                WAIT_BUYER_PAY,
                TRADE_FINISHED,
                None,
                Some(TRADE_FINISHED),
                &[Finished],
            ),
            (
                WAIT_BUYER_PAY,
                TRADE_FINISHED,
                R,
                Some(TRADE_FINISHED),
                &[Finished],
            ),
            (
                WAIT_BUYER_PAY,
                TRADE_CLOSED,
                None,
                Some(TRADE_CLOSED),
                &[Closed],
            ),
            (WAIT_BUYER_PAY, TRADE_CLOSED, R, Some(REFUNDED), &[Refunded]),
            (
                WAIT_BUYER_PAY,
                TRADE_CLOSED,
                Some("REFUND_CLOSED"),
                Some(TRADE_CLOSED),
                &[Closed],
            ),
            (TRADE_SUCCESS, TRADE_SUCCESS, None, None, &[]),
            (TRADE_SUCCESS, TRADE_SUCCESS, R, None, &[PartiallyRefunded]),
            (
                TRADE_SUCCESS,
                TRADE_SUCCESS,
                Some("REFUND_CLOSED"),
                None,
                &[],
            ),
            (
                TRADE_SUCCESS,
                TRADE_FINISHED,
                None,
                Some(TRADE_FINISHED),
                &[Finished],
            ),
            (
                TRADE_SUCCESS,
                TRADE_FINISHED,
                R,
                Some(TRADE_FINISHED),
                &[Finished],
            ),
            (
                TRADE_SUCCESS,
                TRADE_CLOSED,
                None,
                Some(REFUNDED),
                &[Refunded],
            ),
            (TRADE_SUCCESS, TRADE_CLOSED, R, Some(REFUNDED), &[Refunded]),
            (TRADE_FINISHED, TRADE_SUCCESS, None, None, &[]),
            (TRADE_FINISHED, TRADE_SUCCESS, R, None, &[PartiallyRefunded]),
            (TRADE_FINISHED, TRADE_FINISHED, None, None, &[]),
            (TRADE_FINISHED, TRADE_CLOSED, R, Some(REFUNDED), &[Refunded]),
            (
                TRADE_FINISHED,
                TRADE_CLOSED,
                None,
                Some(REFUNDED),
                &[Refunded],
            ),
            (TRADE_CLOSED, TRADE_SUCCESS, None, None, &[]),
            (TRADE_CLOSED, TRADE_FINISHED, None, None, &[]),
            (TRADE_CLOSED, TRADE_CLOSED, R, None, &[]),
            (REFUNDED, TRADE_FINISHED, None, None, &[]),
            (REFUNDED, TRADE_FINISHED, R, None, &[]),
            (REFUNDED, TRADE_SUCCESS, R, None, &[]),
            (REFUNDED, TRADE_CLOSED, R, None, &[]),
            (WAIT_BUYER_PAY, WAIT_BUYER_PAY, None, None, &[]),
            (TRADE_SUCCESS, "SOMETHING_NEW", R, None, &[]),
        ];
        for (current, trade, refund, to, events) in rows {
            assert_eq!(
                transition(current, trade, *refund),
                Transition {
                    to: *to,
                    events: events.to_vec()
                },
                "{current} + {trade} + {refund:?}"
            );
        }
    }

    #[test]
    fn a_paid_order_never_becomes_unpaid() {
        for current in [TRADE_SUCCESS, TRADE_FINISHED, REFUNDED] {
            for trade in [WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_FINISHED, TRADE_CLOSED] {
                for refund in [None, R] {
                    if let Some(to) = transition(current, trade, refund).to {
                        assert!(is_paid(to), "{current} + {trade} → {to}");
                    }
                }
            }
        }
        assert_eq!(Refunded.name(), "payment.refunded");
        assert_eq!(PartiallyRefunded.name(), "payment.partially_refunded");
    }
}
