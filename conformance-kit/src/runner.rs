//! Runs cases one after another: each within its time limit, a panic or a timeout failing that
//! case only, and the result appended to the report (and handed to `on_case`).

use crate::api::{OnCase, Options};
use crate::catalogue::Selection;
use crate::report::{CaseResult, Outcome, Report};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why a case did not pass: it failed, or it could not run (and says why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Fail(String),
    Skip(String),
}

impl From<String> for Stop {
    fn from(why: String) -> Self {
        Stop::Fail(why)
    }
}

impl From<&str> for Stop {
    fn from(why: &str) -> Self {
        Stop::Fail(why.to_owned())
    }
}

/// What a case returns.
pub type Verdict = Result<(), Stop>;

/// Fails with `why` unless `ok`.
pub fn ensure(ok: bool, why: impl FnOnce() -> String) -> Verdict {
    if ok {
        Ok(())
    } else {
        Err(Stop::Fail(why()))
    }
}

/// Why the cases after a stop are not run.
pub(crate) const STOPPED: &str =
    "the run was stopped (its output was closed, or it was interrupted)";

pub struct Runner {
    report: Report,
    case_timeout: Duration,
    on_case: Option<OnCase>,
    selection: Selection,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Runner {
    pub fn new(opts: &Options) -> Runner {
        Runner {
            report: Report::default(),
            case_timeout: opts.case_timeout,
            on_case: opts.on_case.clone(),
            selection: opts.selection.clone(),
            stop: opts.stop.clone(),
        }
    }

    /// Whether the case is selected for this run (a case left out is neither run nor reported).
    pub fn selected(&self, id: &str) -> bool {
        self.selection.includes(id)
    }

    /// Whether any of these cases is selected.
    pub fn selected_any(&self, ids: &[&str]) -> bool {
        ids.iter().any(|id| self.selected(id))
    }

    /// Whether the run was told to stop.
    pub fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Runs one case and records its result; returns whether it passed. A case left out of the
    /// selection does not run (false); after a stop, cases are recorded as skipped.
    pub async fn case<F>(&mut self, id: &str, case: F) -> bool
    where
        F: Future<Output = Verdict> + Send,
    {
        if !self.selected(id) {
            return false;
        }
        if self.stopped() {
            self.skip(id, STOPPED);
            return false;
        }
        let started = Instant::now();
        let stopped = stop_said(self.stop.clone());
        let limited = tokio::time::timeout(self.case_timeout, CatchUnwind(Box::pin(case)));
        let result = tokio::select! {
            r = limited => r,
            _ = stopped => Ok(Ok(Err(Stop::Skip(STOPPED.into())))),
        };
        let outcome = match result {
            Err(_) => Outcome::Failed(format!(
                "did not finish within {} s",
                self.case_timeout.as_secs_f64()
            )),
            Ok(Err(panic)) => Outcome::Failed(format!("the case panicked: {panic}")),
            Ok(Ok(Ok(()))) => Outcome::Passed,
            Ok(Ok(Err(Stop::Fail(why)))) => Outcome::Failed(why),
            Ok(Ok(Err(Stop::Skip(why)))) => Outcome::Skipped(why),
        };
        let passed = outcome == Outcome::Passed;
        self.push(CaseResult {
            id: id.to_owned(),
            outcome,
            elapsed: started.elapsed(),
        });
        passed
    }

    /// Awaits `f` (work between the cases), or `None` when the run is told to stop first.
    pub async fn unless_stopped<F: Future>(&self, f: F) -> Option<F::Output> {
        if self.stopped() {
            return None;
        }
        tokio::select! {
            v = f => Some(v),
            _ = stop_said(self.stop.clone()) => None,
        }
    }

    /// Records a case that does not run (when it is selected). After a stop the reason is the
    /// stop: "needs openapi.merchant.configured" would read as if that case had failed.
    pub fn skip(&mut self, id: &str, why: &str) {
        if !self.selected(id) {
            return;
        }
        let why = if self.stopped() { STOPPED } else { why };
        self.push(CaseResult {
            id: id.to_owned(),
            outcome: Outcome::Skipped(why.to_owned()),
            elapsed: Duration::ZERO,
        });
    }

    fn push(&mut self, result: CaseResult) {
        if let Some(f) = &self.on_case {
            f(&result);
        }
        self.report.cases.push(result);
    }

    /// Records what became of the merchants the run made in the host it tested.
    pub fn set_cleanup(&mut self, cleanup: crate::report::Cleanup) {
        self.report.cleanup = Some(cleanup);
    }

    /// Records that the run could not start, and why (see [`Report::not_started`]).
    pub fn not_started(&mut self, why: String) {
        self.report.not_started = Some(why);
    }

    pub fn finish(self) -> Report {
        self.report
    }
}

/// Resolves once the run is told to stop (never without a stop channel, or when its sender went
/// away without saying stop).
async fn stop_said(mut stop: Option<tokio::sync::watch::Receiver<bool>>) {
    match stop.as_mut() {
        Some(s) => {
            if s.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// A future whose panic is returned as an error (the panic's message) instead of unwinding.
struct CatchUnwind<'a, T>(Pin<Box<dyn Future<Output = T> + Send + 'a>>);

impl<T> Future for CatchUnwind<'_, T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_panicking_or_slow_case_never_stops_the_others() {
        let opts = Options {
            case_timeout: Duration::from_millis(200),
            ..Options::default()
        };
        let mut r = Runner::new(&opts);
        assert!(r.case("a.ok", async { Ok(()) }).await);
        assert!(!r.case("a.fail", async { Err("broken".into()) }).await);
        assert!(
            !r.case("a.panic", async {
                let v: Vec<u8> = Vec::new();
                ensure(v[3] == 0, || "unreachable".into())
            })
            .await
        );
        assert!(
            !r.case("a.slow", async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .await
        );
        assert!(
            !r.case("a.skip", async { Err(Stop::Skip("why".into())) })
                .await
        );
        assert!(r.case("a.after", async { Ok(()) }).await);
        let report = r.finish();
        let lines: Vec<String> = report.cases.iter().map(|c| c.line()).collect();
        assert!(lines[0].starts_with("ok   a.ok ("), "{lines:?}");
        assert_eq!(lines[1], "FAIL a.fail: broken");
        assert!(
            lines[2].starts_with("FAIL a.panic: the case panicked: index out of bounds"),
            "{lines:?}"
        );
        assert_eq!(lines[3], "FAIL a.slow: did not finish within 0.2 s");
        assert_eq!(lines[4], "skip a.skip: why");
        assert!(lines[5].starts_with("ok   a.after ("));
        assert_eq!(report.summary(), "2 passed, 3 failed, 1 skipped");
    }

    #[tokio::test]
    async fn a_stop_abandons_the_case_under_way_and_skips_the_rest() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let opts = Options {
            stop: Some(rx),
            ..Options::default()
        };
        let mut r = Runner::new(&opts);
        assert!(r.case("a.ok", async { Ok(()) }).await);
        let started = Instant::now();
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send_replace(true);
        };
        let (passed, ()) = tokio::join!(
            r.case("a.long", async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                Ok(())
            }),
            stopper
        );
        assert!(!passed);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!r.case("a.after", async { Ok(()) }).await);
        let lines: Vec<String> = r.finish().cases.iter().map(|c| c.line()).collect();
        assert_eq!(lines[1], format!("skip a.long: {STOPPED}"));
        assert_eq!(lines[2], format!("skip a.after: {STOPPED}"));
    }

    #[tokio::test]
    async fn a_case_left_out_is_neither_run_nor_reported() {
        let opts = Options {
            selection: Selection::new(&["describe.identity".into()], &[]).unwrap(),
            ..Options::default()
        };
        let mut r = Runner::new(&opts);
        let ran = std::sync::atomic::AtomicBool::new(false);
        assert!(
            !r.case("describe.labels", async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await
        );
        r.skip("describe.kinds", "why");
        assert!(r.case("describe.call", async { Ok(()) }).await, "needed");
        r.skip(
            "kit.sandbox",
            "not a case of the catalogue: always reported",
        );
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        let ids: Vec<String> = r.finish().cases.into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["describe.call", "kit.sandbox"]);
    }
}
