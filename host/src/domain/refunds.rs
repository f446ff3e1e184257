//! The money rules of refunds, the same for every store: a refund may be started only on a paid
//! trade that can still be refunded, and the refunded total (succeeded + pending) never exceeds
//! the paid amount; a provider's refund report is matched to the refund started here by its
//! request number, recorded as one started elsewhere, or held for review when it would exceed
//! the paid amount. Pure: the stores apply what these functions decide inside one transaction.

use super::state::{self, TradeEvent};

pub const PENDING: &str = "PENDING";
pub const SUCCESS: &str = "SUCCESS";
pub const FAILED: &str = "FAILED";

/// `started_by` of a refund the provider reported without one started here.
pub const STARTED_BY_GATEWAY: &str = "gateway";

/// How the detail of a refund given up here (FAILED without the provider saying so) begins.
pub const GIVEN_UP: &str = "given up by ";

/// Stored words as shops see them (the API, its CSV, webhooks): every `admin:<name>` (a refund's
/// `started_by`, a refund given up, a review cleared: "given up by admin:alice: …") says `admin`
/// alone. The admin's login name is half of a credential, and not the shop's business; the
/// admin's pages and audit log keep it.
pub fn without_admin_names(detail: &str) -> std::borrow::Cow<'_, str> {
    const ADMIN: &str = "admin:";
    if !detail.contains(ADMIN) {
        return detail.into();
    }
    let mut out = String::with_capacity(detail.len());
    let mut rest = detail;
    while let Some(at) = rest.find(ADMIN) {
        out.push_str(&rest[..at]);
        out.push_str("admin");
        let after = &rest[at + ADMIN.len()..];
        // The name runs to the next ':' or white space (names have neither).
        let end = after
            .find(|c: char| c == ':' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out.into()
}

/// How the request number begins of a refund recorded from a report that named none (a trade's
/// refunded total): the number is made here.
pub const UNNAMED: &str = "gateway-";

/// What a stored refund contributes to the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundLine {
    pub id: i64,
    pub request_no: String,
    pub amount_fen: u64,
    pub status: String,
    /// FAILED because the owner gave it up unconfirmed, not because the provider refused it:
    /// the seller may still confirm it.
    pub given_up: bool,
    /// Recorded from a report that named no request number ([`UNNAMED`]): a later report of
    /// the same refund, with its number, is this one.
    pub unnamed: bool,
}

/// The refunded amounts of one payment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub succeeded: u64,
    pub pending: u64,
}

impl Totals {
    pub fn of(lines: &[RefundLine]) -> Totals {
        let mut t = Totals::default();
        for l in lines {
            match l.status.as_str() {
                SUCCESS => t.succeeded += l.amount_fen,
                PENDING => t.pending += l.amount_fen,
                _ => {}
            }
        }
        t
    }

    /// What is committed: succeeded and still pending.
    pub fn committed(self) -> u64 {
        self.succeeded + self.pending
    }
}

/// Why a refund cannot be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The payment was never paid (or was closed unpaid).
    NotPaid { status: String },
    /// The provider allows no refund of a finished trade.
    Finished,
    /// The amount is more than what is left to refund.
    Exceeds {
        paid: u64,
        committed: u64,
        asked: u64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yuan = |v: u64| format!("{}.{:02}", v / 100, v % 100);
        match self {
            Refusal::NotPaid { status } => write!(f, "the payment is not paid (status {status})"),
            Refusal::Finished => f.write_str(
                "the provider reported the trade finished (TRADE_FINISHED): it accepts no refund of it",
            ),
            Refusal::Exceeds {
                paid,
                committed,
                asked,
            } => write!(
                f,
                "amount: {} is more than the {} left to refund ({} paid, {} refunded or being refunded)",
                yuan(*asked),
                yuan(paid.saturating_sub(*committed)),
                yuan(*paid),
                yuan(*committed)
            ),
        }
    }
}

/// Whether a refund of `amount` may start on a payment of `status` (`finished` when the provider
/// reported the trade finished, whatever its status now) and `total` with `lines`.
pub fn check_start(
    status: &str,
    finished: bool,
    total: u64,
    lines: &[RefundLine],
    amount: u64,
) -> Result<(), Refusal> {
    if finished || status == state::TRADE_FINISHED {
        return Err(Refusal::Finished);
    }
    if !state::is_paid(status) {
        return Err(Refusal::NotPaid {
            status: status.to_owned(),
        });
    }
    let committed = Totals::of(lines).committed();
    if committed + amount > total {
        return Err(Refusal::Exceeds {
            paid: total,
            committed,
            asked: amount,
        });
    }
    Ok(())
}

/// The event a payment goes through once `succeeded` of its `total` is refunded.
pub fn event_after(total: u64, succeeded: u64) -> TradeEvent {
    if succeeded >= total {
        TradeEvent::Refunded
    } else {
        TradeEvent::PartiallyRefunded
    }
}

/// One refund as a provider reports it (the contract's `refund-report`, amounts in fen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub request_no: String,
    pub amount: Option<u64>,
    pub refunded_total: Option<u64>,
    pub succeeded: bool,
    pub detail: String,
}

/// What a report does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The refund started here (`id`) ends with `status`.
    Settle { id: i64, status: &'static str },
    /// The refund started here (`id`) succeeded, and refunds still pending here no longer fit
    /// beside it: settled, and the payment held for review with `reason` ([`success_fit`]).
    SettleFlagged { id: i64, reason: String },
    /// A refund started elsewhere, of `amount`, succeeded: recorded (`started_by` gateway).
    Record { amount: u64 },
    /// The refund `id`, recorded earlier from a total without a number of its own, is the one
    /// reported: it takes the report's request number (when it names one); nothing else changes.
    Name { id: i64 },
    /// Nothing new: the refund is already known in this state (or a failure of nothing started
    /// here).
    Known,
    /// It would take the refunded total past the paid amount, or contradicts the refund started
    /// here: kept for review, not applied.
    Mismatch { reason: String },
}

/// Matches a report against the payment's refunds (see the module documentation).
pub fn decide(total: u64, lines: &[RefundLine], report: &Report) -> Decision {
    let totals = Totals::of(lines);
    let yuan = |v: u64| format!("{}.{:02}", v / 100, v % 100);
    let own = (!report.request_no.is_empty())
        .then(|| lines.iter().find(|l| l.request_no == report.request_no))
        .flatten();
    if let Some(line) = own {
        if let Some(a) = report.amount.filter(|a| *a != line.amount_fen) {
            return Decision::Mismatch {
                reason: format!(
                    "refund {}: the provider reports {} refunded, {} was started",
                    line.request_no,
                    yuan(a),
                    yuan(line.amount_fen)
                ),
            };
        }
        return match (line.status.as_str(), report.succeeded) {
            (PENDING, false) => Decision::Settle {
                id: line.id,
                status: FAILED,
            },
            (PENDING | FAILED, true) => settle_success(lines, total, line),
            (SUCCESS, false) => Decision::Mismatch {
                reason: format!(
                    "refund {} was reported succeeded, now failed: {}",
                    line.request_no, report.detail
                ),
            },
            _ => Decision::Known,
        };
    }
    if !report.succeeded {
        return Decision::Known;
    }
    // A total alone (a legacy trade query: the provider's state now) below what is counted
    // here: payhost counts money the provider says it did not refund. A person looks.
    if let (None, Some(t), true) = (
        report.amount,
        report.refunded_total,
        report.request_no.is_empty(),
    ) {
        if t < totals.succeeded {
            return Decision::Mismatch {
                reason: format!(
                    "the provider reports {} refunded in all, {} is counted here as refunded: check the trade's refunds in the provider's portal",
                    yuan(t),
                    yuan(totals.succeeded)
                ),
            };
        }
    }
    let amount = match (report.amount, report.refunded_total) {
        (Some(a), _) => a,
        (None, Some(t)) => t.saturating_sub(totals.succeeded),
        (None, None) => {
            return Decision::Mismatch {
                reason: "a refund report that names neither its amount nor the refunded total"
                    .into(),
            }
        }
    };
    // A refund named by a number not started here, reported with the trade's total only (an
    // open-platform partial-refund notify: `out_biz_no`, cumulative `refund_fee`): its amount is
    // the total less what is counted here only when nothing is pending here and the total goes
    // past what is counted. Otherwise (a pending refund may be in the total, or the total is older
    // than refunds counted since) its amount cannot be told: held for review, never recorded
    // as a guess, never dropped as known.
    if report.amount.is_none() && !report.request_no.is_empty() {
        let reported = report.refunded_total.unwrap_or_default();
        if totals.pending > 0 {
            return Decision::Mismatch {
                reason: format!(
                    "the provider reports refund {} with {} refunded in all; refunds of {} still pending here may or may not be part of it: check the trade's refunds in the provider's portal",
                    report.request_no,
                    yuan(reported),
                    yuan(totals.pending)
                ),
            };
        }
        if amount == 0 {
            return Decision::Mismatch {
                reason: format!(
                    "the provider reports refund {}, not recorded here, with {} refunded in all, and {} is counted here already: its amount cannot be told; check the trade's refunds in the provider's portal",
                    report.request_no,
                    yuan(reported),
                    yuan(totals.succeeded)
                ),
            };
        }
    }
    if amount == 0 {
        return Decision::Known;
    }
    // A refund recorded from a total had no number then: a report of the same amount is that
    // refund reported again (recorded twice, it would count money that left once); a smaller
    // one may be part of it, which a person decides.
    if report.amount.is_some() {
        let unnamed = || lines.iter().filter(|l| l.unnamed && l.status == SUCCESS);
        if let Some(l) = unnamed().find(|l| l.amount_fen == amount) {
            return Decision::Name { id: l.id };
        }
        if let Some(l) = unnamed().find(|l| l.amount_fen > amount) {
            return Decision::Mismatch {
                reason: format!(
                    "the provider reports a refund of {} that the {} recorded from the trade's refunded total may include: check the trade's refunds in the provider's portal",
                    yuan(amount),
                    yuan(l.amount_fen)
                ),
            };
        }
    }
    // A total (a query, a legacy trade notification: no request number) settles by amount the
    // one refund started here it can only mean: the one still pending, else one given up here
    // unconfirmed that the seller confirmed after all, when it still fits (never recorded a
    // second time as a refund started elsewhere).
    if report.amount.is_none() && report.request_no.is_empty() {
        let only = |wanted: &dyn Fn(&RefundLine) -> bool| {
            let mut same = lines.iter().filter(|l| wanted(l) && l.amount_fen == amount);
            match (same.next(), same.next()) {
                (Some(l), None) => Some(l.id),
                _ => None,
            }
        };
        // A pending refund and one given up unconfirmed, both of this amount: either may be the
        // one the seller confirmed; taking one could count both once the other's own report
        // comes. Neither is taken (held below, as any total beside a pending refund).
        // Nor is a pending refund of the amount when other pending refunds add up to it too
        // (5.00 pending, and 2.00 and 3.00 confirmed: Alipay's 5.00 is theirs).
        let pending = only(&|l| l.status == PENDING)
            .filter(|id| !others_pending_add_up_to(lines, *id, amount));
        let given_up = only(&|l| l.status == FAILED && l.given_up);
        let settled = match (pending, given_up) {
            (Some(_), Some(_)) => None,
            (p, g) => p.or(g),
        }
        .and_then(|id| lines.iter().find(|l| l.id == id))
        .map(|l| settle_success(lines, total, l))
        .filter(|d| !matches!(d, Decision::Mismatch { .. }));
        if let Some(decision) = settled {
            return decision;
        }
        // With refunds still pending, which of them the total counts cannot be told: recording
        // the rest as a refund started elsewhere could count one twice once it settles.
        if totals.pending > 0 {
            return Decision::Mismatch {
                reason: format!(
                    "the provider reports {} refunded in all; refunds of {} still pending here may or may not be part of it: check the trade in the provider's portal",
                    yuan(report.refunded_total.unwrap_or_default()),
                    yuan(totals.pending)
                ),
            };
        }
    }
    if totals.committed() + amount > total {
        return Decision::Mismatch {
            reason: format!(
                "the provider reports a refund of {} on a payment of {} with {} already refunded or being refunded",
                yuan(amount),
                yuan(total),
                yuan(totals.committed())
            ),
        };
    }
    Decision::Record { amount }
}

/// Whether a success the provider reports for `line` (PENDING or FAILED here) can be applied.
/// Money moved at the provider, so it is applied whenever the succeeded total stays within the
/// paid amount, even when refunds still pending here no longer fit beside it (a refund given up
/// here that the seller confirmed after all, with another one started meanwhile): the provider
/// never refunds more than was paid, so it refuses those, and the payment is held for review
/// (`Ok(Some(reason))`) so a person watches them. `Err(reason)`: the succeeded total would pass
/// the paid amount; nothing is applied.
pub fn success_fit(
    lines: &[RefundLine],
    total: u64,
    line: &RefundLine,
) -> Result<Option<String>, String> {
    let yuan = |v: u64| format!("{}.{:02}", v / 100, v % 100);
    let totals = Totals::of(lines);
    let succeeded = totals.succeeded + line.amount_fen;
    let pending_others = totals.pending
        - if line.status == PENDING {
            line.amount_fen
        } else {
            0
        };
    let was = if line.status == FAILED {
        // FAILED here is also a refund the owner gave up (its detail says which).
        "after it had failed or been given up here"
    } else {
        "as started"
    };
    if succeeded > total {
        return Err(format!(
            "refund {} reported succeeded {was} would take the refunded total to {} of the paid {}",
            line.request_no,
            yuan(succeeded),
            yuan(total)
        ));
    }
    if succeeded + pending_others > total {
        return Ok(Some(format!(
            "refund {} succeeded at the provider {was}; refunds of {} still pending here no longer fit the paid {} beside it: the provider should refuse them, check them in its portal",
            line.request_no,
            yuan(pending_others),
            yuan(total)
        )));
    }
    Ok(None)
}

/// The decision for a success the provider reports for `line` ([`success_fit`]).
/// Whether some of the pending refunds other than `except` add up to `amount` (so a total of
/// `amount` may be theirs). More than 16 of them are taken to (too many to try).
fn others_pending_add_up_to(lines: &[RefundLine], except: i64, amount: u64) -> bool {
    let others: Vec<u64> = lines
        .iter()
        .filter(|l| l.status == PENDING && l.id != except)
        .map(|l| l.amount_fen)
        .collect();
    if others.len() > 16 {
        return true;
    }
    (1u32..(1 << others.len())).any(|mask| {
        others
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, a)| a)
            .sum::<u64>()
            == amount
    })
}

fn settle_success(lines: &[RefundLine], total: u64, line: &RefundLine) -> Decision {
    match success_fit(lines, total, line) {
        Ok(None) => Decision::Settle {
            id: line.id,
            status: SUCCESS,
        },
        Ok(Some(reason)) => Decision::SettleFlagged {
            id: line.id,
            reason,
        },
        Err(reason) => Decision::Mismatch { reason },
    }
}

/// A refund number the providers accept: the Beijing date `YYYYMMDD` of `unix` and 16 random
/// digits (24 digits; Alipay's legacy `batch_no` wants the date first, at most 32 digits).
pub fn new_request_no(unix: i64) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let tail: String = (0..16)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    format!("{}{tail}", super::clock::beijing_compact_date(unix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shops_never_see_an_admins_name() {
        assert_eq!(without_admin_names("admin:ops.alice"), "admin");
        assert_eq!(without_admin_names("api:operator"), "api:operator");
        assert_eq!(
            without_admin_names("given up by admin:ops.alice: the seller never confirmed it"),
            "given up by admin: the seller never confirmed it"
        );
        assert_eq!(without_admin_names("refused: ACQ.X"), "refused: ACQ.X");
        assert_eq!(
            without_admin_names("cleared by admin:ops.alice: checked with the buyer"),
            "cleared by admin: checked with the buyer"
        );
        assert_eq!(without_admin_names("admin:bob"), "admin");
    }

    fn line(id: i64, no: &str, amount: u64, status: &str) -> RefundLine {
        RefundLine {
            id,
            request_no: no.into(),
            amount_fen: amount,
            status: status.into(),
            given_up: false,
            unnamed: no.starts_with(UNNAMED),
        }
    }

    fn given_up(id: i64, no: &str, amount: u64) -> RefundLine {
        RefundLine {
            given_up: true,
            ..line(id, no, amount, FAILED)
        }
    }

    fn report(no: &str, amount: Option<u64>, total: Option<u64>, ok: bool) -> Report {
        Report {
            request_no: no.into(),
            amount,
            refunded_total: total,
            succeeded: ok,
            detail: String::new(),
        }
    }

    #[test]
    fn the_refunded_total_never_exceeds_the_paid_amount() {
        let lines = [line(1, "a", 300, SUCCESS), line(2, "b", 200, PENDING)];
        assert_eq!(
            check_start("TRADE_SUCCESS", false, 1000, &lines, 500),
            Ok(())
        );
        assert_eq!(
            check_start("PARTIALLY_REFUNDED", false, 1000, &lines, 501),
            Err(Refusal::Exceeds {
                paid: 1000,
                committed: 500,
                asked: 501
            })
        );
        // A failed refund gives its amount back.
        let lines = [line(1, "a", 1000, FAILED)];
        assert_eq!(
            check_start("TRADE_SUCCESS", false, 1000, &lines, 1000),
            Ok(())
        );
        assert!(matches!(
            check_start("WAIT_BUYER_PAY", false, 1000, &[], 1),
            Err(Refusal::NotPaid { .. })
        ));
        assert!(matches!(
            check_start("TRADE_CLOSED", false, 1000, &[], 1),
            Err(Refusal::NotPaid { .. })
        ));
        assert_eq!(
            check_start("TRADE_FINISHED", false, 1000, &[], 1),
            Err(Refusal::Finished)
        );
        // Partly refunded, then finished: the provider refuses any more, and so does payhost.
        assert_eq!(
            check_start("PARTIALLY_REFUNDED", false, 1000, &[], 1),
            Ok(())
        );
        assert_eq!(
            check_start("PARTIALLY_REFUNDED", true, 1000, &[], 1),
            Err(Refusal::Finished)
        );
        assert!(check_start("REFUNDED", false, 1000, &[line(1, "a", 1000, SUCCESS)], 1).is_err());
        assert_eq!(event_after(1000, 1000), TradeEvent::Refunded);
        assert_eq!(event_after(1000, 1), TradeEvent::PartiallyRefunded);
    }

    /// A refund given up unconfirmed, and its replacement of the same amount pending: a trade's
    /// total of that amount may be either (the seller may have confirmed the old one after
    /// all). Taking the pending one counted both once the old one's own report came: 6.00 of a
    /// trade refunded 3.00. Neither is taken; the total is held for a person.
    #[test]
    fn a_total_that_fits_a_given_up_refund_and_its_replacement_settles_neither() {
        let lines = [given_up(1, "old", 300), line(2, "new", 300, PENDING)];
        assert!(matches!(
            decide(1000, &lines, &report("", None, Some(300), true)),
            Decision::Mismatch { .. }
        ));
        // The old one's own report settles it; the replacement stays pending.
        assert!(matches!(
            decide(1000, &lines, &report("old", Some(300), None, true)),
            Decision::Settle { id: 1, .. } | Decision::SettleFlagged { id: 1, .. }
        ));
    }

    #[test]
    fn a_refund_given_up_here_and_confirmed_later_settles_instead_of_a_second_one() {
        // A legacy full refund, given up unconfirmed (FAILED here); the seller confirms it after
        // all and the trade's status notification (no request number, the refunded total)
        // arrives before the batch notification.
        let lines = [given_up(1, "a", 1000)];
        let total_only = report("", None, Some(1000), true);
        assert_eq!(
            decide(1000, &lines, &total_only),
            Decision::Settle {
                id: 1,
                status: SUCCESS
            }
        );
        // The batch notification that follows names it, now settled: nothing new.
        let settled = [line(1, "a", 1000, SUCCESS)];
        assert_eq!(
            decide(1000, &settled, &report("a", Some(1000), None, true)),
            Decision::Known
        );
        // One the provider refused stays refused: the same amount refunded by hand in the
        // portal is a refund of its own.
        let refused = [line(1, "a", 400, FAILED)];
        assert_eq!(
            decide(1000, &refused, &report("", None, Some(400), true)),
            Decision::Record { amount: 400 }
        );
        // Two given up of that amount: which one is unknown, so it is recorded on its own.
        let two = [given_up(1, "a", 400), given_up(2, "b", 400)];
        assert_eq!(
            decide(1000, &two, &report("", None, Some(400), true)),
            Decision::Record { amount: 400 }
        );
        // A given-up one that no longer fits (refunded again meanwhile) is held, never applied.
        let again = [given_up(1, "a", 1000), line(2, "b", 1000, SUCCESS)];
        assert!(matches!(
            decide(1000, &again, &report("", None, Some(2000), true)),
            Decision::Mismatch { .. }
        ));
    }

    #[test]
    fn a_success_the_provider_reports_is_applied_beside_pending_refunds_that_no_longer_fit() {
        // 1.00 paid. Refund a was given up unconfirmed, b of 1.00 started meanwhile; the seller
        // confirms a after all: the money moved, so a settles (the payment held for review: b
        // no longer fits and the provider refuses it), never left FAILED with 1.00 gone.
        let lines = [given_up(1, "a", 100), line(2, "b", 100, PENDING)];
        match decide(100, &lines, &report("a", Some(100), None, true)) {
            Decision::SettleFlagged { id: 1, reason } => {
                assert!(reason.contains("1.00 still pending"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // The same through the refunded total (no request number): a or b, it cannot tell;
        // held (taking b counted a twice once a's own report came).
        assert!(matches!(
            decide(100, &lines, &report("", None, Some(100), true)),
            Decision::Mismatch { .. }
        ));
        let only_given_up = [given_up(1, "a", 100), line(2, "b", 60, PENDING)];
        assert!(matches!(
            decide(100, &only_given_up, &report("", None, Some(100), true)),
            Decision::SettleFlagged { id: 1, .. }
        ));
        // b's refusal then settles b; b reported succeeded beside a is held, never applied.
        let after = [line(1, "a", 100, SUCCESS), line(2, "b", 100, PENDING)];
        assert_eq!(
            decide(100, &after, &report("b", None, None, false)),
            Decision::Settle {
                id: 2,
                status: FAILED
            }
        );
        assert!(matches!(
            decide(100, &after, &report("b", Some(100), None, true)),
            Decision::Mismatch { .. }
        ));
        // Pending refunds that still fit beside it: settled, nothing to review.
        let fits = [given_up(1, "a", 40), line(2, "b", 60, PENDING)];
        assert_eq!(
            decide(100, &fits, &report("a", Some(40), None, true)),
            Decision::Settle {
                id: 1,
                status: SUCCESS
            }
        );
    }

    #[test]
    fn a_total_that_pending_refunds_may_be_part_of_is_held_not_counted_twice() {
        // A pending refund and a given-up one of the same amount: the total may be either.
        let both = [given_up(1, "a", 400), line(2, "b", 400, PENDING)];
        assert!(matches!(
            decide(1000, &both, &report("", None, Some(400), true)),
            Decision::Mismatch { .. }
        ));
        // 5.00, 2.00 and 3.00 pending, 5.00 in all: the 2.00 and 3.00 together, or the 5.00.
        let three = [
            line(1, "a", 500, PENDING),
            line(2, "b", 200, PENDING),
            line(3, "c", 300, PENDING),
        ];
        assert!(matches!(
            decide(1000, &three, &report("", None, Some(500), true)),
            Decision::Mismatch { .. }
        ));
        // A pending refund alone of the amount is the one the total names.
        let pending = [line(2, "b", 400, PENDING)];
        assert_eq!(
            decide(1000, &pending, &report("", None, Some(400), true)),
            Decision::Settle {
                id: 2,
                status: SUCCESS
            }
        );
        // 3.00 pending here, the provider reports 5.00 in all: 3.00 + 2.00 elsewhere, or 5.00
        // elsewhere with 3.00 still to come? Recording 5.00 would make 8.00 once 3.00 settles.
        let pending = [line(1, "a", 300, PENDING)];
        match decide(1000, &pending, &report("", None, Some(500), true)) {
            Decision::Mismatch { reason } => {
                assert!(
                    reason.contains("5.00") && reason.contains("3.00"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_are_matched_recorded_or_held() {
        let lines = [line(1, "a", 300, PENDING)];
        assert_eq!(
            decide(1000, &lines, &report("a", None, Some(300), true)),
            Decision::Settle {
                id: 1,
                status: SUCCESS
            }
        );
        assert_eq!(
            decide(1000, &lines, &report("a", None, None, false)),
            Decision::Settle {
                id: 1,
                status: FAILED
            }
        );
        assert!(matches!(
            decide(1000, &lines, &report("a", Some(301), None, true)),
            Decision::Mismatch { .. }
        ));
        // A query's total (no request number) settles the one pending refund of that amount.
        assert_eq!(
            decide(1000, &lines, &report("", None, Some(300), true)),
            Decision::Settle {
                id: 1,
                status: SUCCESS
            }
        );
        // Started elsewhere: recorded when it fits, held when it would exceed.
        assert_eq!(
            decide(1000, &lines, &report("zz", Some(700), None, true)),
            Decision::Record { amount: 700 }
        );
        assert!(matches!(
            decide(1, &[], &report("", Some(500), None, true)),
            Decision::Mismatch { .. }
        ));
        let done = [line(1, "a", 300, SUCCESS)];
        assert_eq!(
            decide(1000, &done, &report("a", None, Some(300), true)),
            Decision::Known
        );
        assert_eq!(
            decide(1000, &done, &report("", None, Some(300), true)),
            Decision::Known
        );
        assert_eq!(
            decide(1000, &done, &report("", None, Some(500), true)),
            Decision::Record { amount: 200 }
        );
        let no = new_request_no(1_388_577_610);
        assert!(no.starts_with("20140101") && no.len() == 24);
        assert!(!no.starts_with(UNNAMED));
        assert!(no.bytes().all(|b| b.is_ascii_digit()));
    }

    /// An open-platform partial-refund notify of a refund made elsewhere (its `out_biz_no` not
    /// one of ours) carries the trade's cumulative total, not its own amount: the total less
    /// what is counted here is its amount only with nothing pending here and a total past what
    /// is counted. Otherwise it was recorded as a guess (a pending 3.00 counted twice once it
    /// settled) or dropped as known (a total older than a refund counted since).
    #[test]
    fn a_refund_named_elsewhere_with_only_a_total_is_recorded_only_when_it_can_be_told() {
        // Nothing pending, the total past what is counted: recorded with the difference.
        assert_eq!(
            decide(
                1000,
                &[line(1, "a", 300, SUCCESS)],
                &report("PORTAL1", None, Some(500), true)
            ),
            Decision::Record { amount: 200 }
        );
        // 3.00 pending here, 2.00 refunded in the portal: the total 5.00 may include the 3.00.
        match decide(
            1000,
            &[line(1, "a", 300, PENDING)],
            &report("PORTAL1", None, Some(500), true),
        ) {
            Decision::Mismatch { reason } => {
                assert!(
                    reason.contains("PORTAL1") && reason.contains("3.00"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // The portal's 2.00, its notify late, after 3.00 of ours succeeded: a total of 2.00
        // says nothing new by arithmetic, but the refund is not counted here.
        match decide(
            1000,
            &[line(1, "a", 300, SUCCESS)],
            &report("PORTAL1", None, Some(200), true),
        ) {
            Decision::Mismatch { reason } => {
                assert!(
                    reason.contains("PORTAL1") && reason.contains("2.00"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // The same refund reported again once recorded under its number: known.
        assert_eq!(
            decide(
                1000,
                &[line(1, "PORTAL1", 200, SUCCESS)],
                &report("PORTAL1", None, Some(200), true)
            ),
            Decision::Known
        );
        // A total without a number (a query: the provider's state now) below what is counted
        // here: held for a person, never taken as nothing new.
        assert!(matches!(
            decide(
                1000,
                &[line(1, "a", 300, SUCCESS)],
                &report("", None, Some(200), true)
            ),
            Decision::Mismatch { .. }
        ));
    }

    /// A refund recorded from the trade's refunded total had no number; the provider's later
    /// report of it (its batch notification, say) names one: the same refund, never recorded a
    /// second time.
    #[test]
    fn a_report_of_a_refund_recorded_from_a_total_is_not_recorded_again() {
        let from_total = [
            line(1, "a", 300, SUCCESS),
            line(2, "gateway-1764900000000", 200, SUCCESS),
        ];
        assert_eq!(
            decide(
                1000,
                &from_total,
                &report("2026120500001", Some(200), None, true)
            ),
            Decision::Name { id: 2 }
        );
        // Without a number either, it is still the same refund.
        assert_eq!(
            decide(1000, &from_total, &report("", Some(200), None, true)),
            Decision::Name { id: 2 }
        );
        // A smaller one may be part of the total: held for a person, not recorded.
        match decide(
            1000,
            &from_total,
            &report("2026120500002", Some(50), None, true),
        ) {
            Decision::Mismatch { reason } => assert!(reason.contains("0.50"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A larger one cannot be it: recorded as started elsewhere.
        assert_eq!(
            decide(
                1000,
                &from_total,
                &report("2026120500003", Some(400), None, true)
            ),
            Decision::Record { amount: 400 }
        );
        // A refund started elsewhere with its own number is not taken for one from a total.
        let named = [line(1, "elsewhere-1", 200, SUCCESS)];
        assert_eq!(
            decide(
                1000,
                &named,
                &report("2026120500004", Some(200), None, true)
            ),
            Decision::Record { amount: 200 }
        );
    }
}
