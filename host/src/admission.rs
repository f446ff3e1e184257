//! Admission per class of work, and where the provider's notifications run.
//!
//! Four classes never wait on each other: the shop API (payments, refunds, trade queries),
//! the buyer's returns, the provider's notifications (a limit overall and a smaller one per
//! merchant, so one merchant's flood leaves room for the others), and the operator's merchant
//! configuration.
//! Inside a class, requests wait in arrival order: more at once only adds thread hand-offs and
//! lengthens the tail.
//!
//! A notification starts on the thread that read it and moves to its own small thread pool, at a
//! lower CPU priority, once it has used [`INLINE_BUDGET`] of CPU there (or goes there at once
//! when its merchant's recent notifications were mostly refused: a flood of cheap garbage then
//! competes with the shop API only at the pool's priority, as expensive work does): an unauthenticated caller
//! can make a notification expensive (an RSA merchant's `notify_data` costs private-key work
//! before anything is known to be genuine), and that work must not take the cores from the shop
//! API's requests. A cheap one (an MD5 merchant's, a few hundred microseconds in all) finishes
//! where it started: a hand-off to the pool and back costs two thread wake-ups, more than the
//! work itself (docs/PERFORMANCE.md, "Round 3, session 3"). The component yields every
//! `runtime::plugin::YIELD_FUEL` instructions (≈ 1 ms) and at every epoch tick, which bounds
//! how long one poll can hold the request's thread; notifications inside the pool share it
//! fairly too.
//!
//! A buyer's return is unauthenticated work of the same kind (anyone may send one, and checking
//! it runs the component, an RSA verification for some merchants): it has its own class and
//! runs where notifications do, so a flood of returns neither holds the shop API's permits nor
//! takes its cores.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// CPU time a notification may spend on the thread that read it before the rest of its work
/// moves to the notification pool. An MD5 notification's whole processing takes a few hundred
/// microseconds of polling; one RSA block alone takes several milliseconds.
pub const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// The classes of work admitted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The shop API.
    Shop,
    /// The buyer's return (unauthenticated).
    Return,
    /// The operator's merchant configuration (API and admin page).
    Admin,
}

/// How many requests of each class are worked on at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub shop: usize,
    pub notify: usize,
    pub notify_per_merchant: usize,
    /// Of a merchant whose recent notifications were mostly refused (a flood): one at a time,
    /// whatever the core count, so the flood's garbage mostly waits for a permit, which costs
    /// nothing, instead of being read, recorded and answered at the rate a genuine merchant's
    /// notifications are. Each refused one is a write in the store's commit group, where the
    /// shop API's payments wait behind it. Under 64 connections of garbage RSA notifies the
    /// shop API's payment p99 was 3.0–3.2× its idle p99 at 4 per core, 1.7–1.8× at one per core
    /// (two here) and 1.2–1.4× at one (docs/PERFORMANCE.md, "Round 3, session 6"). One at a time still
    /// answers over a thousand a second here, far above one shop's genuine rate.
    pub notify_suspect_per_merchant: usize,
    pub returns: usize,
    pub admin: usize,
}

impl Limits {
    /// The shop API: 8 per core, enough to overlap one request's outbound call with another's
    /// computation. Notifications: 32 per core overall and half of those for one merchant's —
    /// a notification spends most of its time waiting, not computing (the provider's
    /// confirmation, then the commit's turn in the writer's group and its sync: ≈ 2 ms of its
    /// ≈ 2.3 ms at c=16), so with 8 per core the permits, not the cores, were the limit: 16 →
    /// 64 in flight raised a single merchant's notify rate from ≈ 3,300 to ≈ 4,400/s at c=16
    /// and from ≈ 3,100 to ≈ 5,000/s at c=64, with a lower p99 (docs/PERFORMANCE.md, "Round 3,
    /// session 4"). Each one in flight holds a component instance, so they stay at most
    /// [`MAX_NOTIFY`], leaving the rest of a manifest's `max_instances` (128 in plugin.toml) to
    /// the shop API; expensive ones wait in the notification pool, whose threads, not the
    /// permits, bound their CPU. Returns: 4 per core (a genuine one is a buyer's browser, a
    /// few per payment). Configuration: 2 per core.
    pub fn for_this_machine() -> Limits {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let notify = (cores * 32).min(MAX_NOTIFY);
        Limits {
            shop: cores * 8,
            notify,
            notify_per_merchant: notify / 2,
            notify_suspect_per_merchant: 1,
            returns: (cores * 4).min(MAX_RETURNS),
            admin: cores * 2,
        }
    }
}

/// The longest a provider's notification or a buyer's return waits for its turn
/// ([`Admission::enter_notify`], [`Admission::enter_return`]): far above a genuine one's wait
/// under load (milliseconds), and below the provider's and a browser's patience; a refused one
/// is sent (or opened) again later.
pub const TURN_WAIT: Duration = Duration::from_secs(10);

/// Most notifications in flight at once, however many cores.
pub const MAX_NOTIFY: usize = 64;

/// Most returns being checked at once, however many cores: each holds a component instance, and
/// with the notifications' [`MAX_NOTIFY`] they leave most of a manifest's `max_instances` to the
/// shop API.
pub const MAX_RETURNS: usize = 16;

/// A notification's admission: its merchant's permit and the overall one.
pub struct NotifyPermit {
    _merchant: OwnedSemaphorePermit,
    _overall: OwnedSemaphorePermit,
}

pub struct Admission {
    shop: Arc<Semaphore>,
    returns: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    notify: Arc<Semaphore>,
    notify_per_merchant: usize,
    /// Permits of its merchant's semaphore one notification of a suspect merchant takes.
    suspect_weight: u32,
    /// One semaphore per merchant with notifications in flight (dropped when none are).
    merchants: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Where notifications are processed (component calls and store work).
    notify_pool: Pool,
}

impl Admission {
    pub fn new(limits: Limits) -> std::io::Result<Admission> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Admission {
            shop: Arc::new(Semaphore::new(limits.shop)),
            returns: Arc::new(Semaphore::new(limits.returns)),
            admin: Arc::new(Semaphore::new(limits.admin)),
            notify: Arc::new(Semaphore::new(limits.notify)),
            notify_per_merchant: limits.notify_per_merchant,
            suspect_weight: limits
                .notify_per_merchant
                .div_ceil(limits.notify_suspect_per_merchant.max(1))
                .max(1) as u32,
            merchants: Mutex::new(HashMap::new()),
            // PAYHOST_NOTIFY_INLINE=1 runs notifications on the request's own executor threads,
            // PAYHOST_NOTIFY_POOL=1 sends every one to the pool at once, PAYHOST_NOTIFY_NICE sets
            // the pool's nice value: the comparisons docs/PERFORMANCE.md measures, not settings
            // for production.
            notify_pool: if env_is("PAYHOST_NOTIFY_INLINE") {
                Pool {
                    runtime: None,
                    budget: Duration::ZERO,
                }
            } else {
                let nice = std::env::var("PAYHOST_NOTIFY_NICE")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(NOTIFY_NICE);
                let mut pool = Pool::new("payhost-notify", cores, nice)?;
                if env_is("PAYHOST_NOTIFY_POOL") {
                    pool.budget = Duration::ZERO;
                }
                pool
            },
        })
    }

    /// Waits for a buyer's return's permit, at most [`TURN_WAIT`] (`None` past it: nothing was
    /// done for it).
    pub async fn enter_return(&self) -> Option<OwnedSemaphorePermit> {
        self.enter_return_within(TURN_WAIT).await
    }

    /// [`Self::enter_return`], waiting at most `wait`.
    async fn enter_return_within(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(wait, self.enter(Class::Return))
            .await
            .ok()
    }

    /// Waits for a permit of `class`.
    pub async fn enter(&self, class: Class) -> OwnedSemaphorePermit {
        let semaphore = match class {
            Class::Shop => &self.shop,
            Class::Return => &self.returns,
            Class::Admin => &self.admin,
        };
        semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("admission semaphores are never closed")
    }

    /// Waits for a notification permit: the merchant's first (a flood for one merchant waits
    /// there, not in front of the others), then the overall one. A `suspect` one (its merchant's
    /// recent notifications were mostly refused) takes several of its merchant's permits, so at
    /// most [`Limits::notify_suspect_per_merchant`] of them are in flight. `None` after
    /// [`TURN_WAIT`]: nothing was done for it, and the provider sends it again.
    pub async fn enter_notify(&self, merchant_id: &str, suspect: bool) -> Option<NotifyPermit> {
        self.enter_notify_within(merchant_id, suspect, TURN_WAIT)
            .await
    }

    /// [`Self::enter_notify`], waiting at most `wait`.
    async fn enter_notify_within(
        &self,
        merchant_id: &str,
        suspect: bool,
        wait: Duration,
    ) -> Option<NotifyPermit> {
        tokio::time::timeout(wait, self.wait_notify(merchant_id, suspect))
            .await
            .ok()
    }

    async fn wait_notify(&self, merchant_id: &str, suspect: bool) -> NotifyPermit {
        let mine = {
            let mut merchants = self.merchants.lock().unwrap_or_else(|e| e.into_inner());
            // Semaphores nobody holds or waits on any more are dropped: merchants removed since
            // leave nothing behind.
            merchants.retain(|_, s| Arc::strong_count(s) > 1);
            merchants
                .entry(merchant_id.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.notify_per_merchant)))
                .clone()
        };
        let weight = if suspect { self.suspect_weight } else { 1 };
        let merchant = mine
            .acquire_many_owned(weight)
            .await
            .expect("admission semaphores are never closed");
        let overall = self
            .notify
            .clone()
            .acquire_owned()
            .await
            .expect("admission semaphores are never closed");
        NotifyPermit {
            _merchant: merchant,
            _overall: overall,
        }
    }

    /// Runs a notification's processing: here until it has used [`INLINE_BUDGET`] of CPU, then
    /// in the notification pool (all of it in the pool unless `may_start_here`: its merchant's
    /// recent notifications were mostly refused, the mark of a flood); `None` when the pool
    /// stopped before it finished (payhost is shutting down).
    pub async fn run_notify<F, T>(&self, work: F, may_start_here: bool) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.notify_pool.run(work, may_start_here).await
    }

    /// Runs a buyer's return's check where notifications run: here while it stays cheap (an
    /// MD5 merchant's), in the notification pool once it proves expensive (an RSA one's).
    pub async fn run_return<F, T>(&self, work: F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.notify_pool.run(work, true).await
    }
}

/// The notification pool's nice value (0 normal … 19 lowest): under CPU contention the kernel
/// gives the shop API's threads about 10× the CPU time of a notification thread; on an idle
/// machine it changes nothing.
const NOTIFY_NICE: i32 = 10;

fn env_is(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// A few threads with their own executor, at a given CPU priority, for work that used up its
/// budget where it was awaited (no runtime: all of it runs where it is awaited).
struct Pool {
    runtime: Option<tokio::runtime::Runtime>,
    /// CPU time work may take where it is awaited before it moves to the pool.
    budget: Duration,
}

impl Pool {
    fn new(name: &str, threads: usize, nice: i32) -> std::io::Result<Pool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        Ok(Pool {
            runtime: Some(runtime),
            budget: INLINE_BUDGET,
        })
    }

    async fn run<F, T>(&self, work: F, may_start_here: bool) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = self.runtime.as_ref() else {
            return Some(work.await);
        };
        // Polled here while it stays cheap; a pinned box moves to the pool as it is (a future
        // may be polled from another thread, and its next poll registers the pool's waker).
        let mut work = Box::pin(work);
        let mut spent = Duration::ZERO;
        let budget = if may_start_here {
            self.budget
        } else {
            Duration::ZERO
        };
        let here = std::future::poll_fn(|cx| {
            if budget.is_zero() {
                return Poll::Ready(None);
            }
            let started = Instant::now();
            let poll = work.as_mut().poll(cx);
            spent += started.elapsed();
            match poll {
                Poll::Ready(v) => Poll::Ready(Some(v)),
                Poll::Pending if spent >= budget => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if let Some(v) = here {
            return Some(v);
        }
        match runtime.spawn(work).await {
            Ok(v) => Some(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropped from inside another executor (tests, the demo): a blocking shutdown would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's CPU priority (Linux: the nice value is per thread).
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory-safety preconditions; who = 0 is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            shop: 1,
            notify: 4,
            notify_per_merchant: 2,
            notify_suspect_per_merchant: 1,
            returns: 1,
            admin: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooded_merchant_has_fewer_notifications_in_flight() {
        let admission = Admission::new(limits()).unwrap();
        let suspect = admission.enter_notify("a", true).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), admission.enter_notify("a", true))
                .await
                .is_err(),
            "one suspect notification of merchant a at a time"
        );
        drop(suspect);
        let _g1 = admission.enter_notify("a", false).await;
        let _g2 = admission.enter_notify("a", false).await;
        tokio::time::timeout(Duration::from_secs(1), admission.enter_notify("b", true))
            .await
            .expect("another merchant's permits are its own");
    }

    /// A notification waits for its turn a bounded time: behind a suspect one of its merchant
    /// held for good, it gives up after its wait (`TURN_WAIT` when it comes from the
    /// provider), not before; another merchant's gets in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_notification_waits_for_its_turn_a_bounded_time() {
        let admission = Admission::new(limits()).unwrap();
        let _held = admission.enter_notify("a", true).await.expect("first in");
        let wait = Duration::from_millis(300);
        let started = Instant::now();
        assert!(admission
            .enter_notify_within("a", true, wait)
            .await
            .is_none());
        assert!(started.elapsed() >= wait);
        assert!(admission
            .enter_notify_within("b", true, wait)
            .await
            .is_some());
        assert_eq!(TURN_WAIT, Duration::from_secs(10));
    }

    /// A buyer's return waits for its turn as long as a notification does, no longer: then it is
    /// answered 503 (nothing was done for it), and the next one is let in once a turn frees.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_return_waits_for_its_turn_a_bounded_time() {
        let admission = Admission::new(limits()).unwrap();
        let held = admission.enter_return().await.expect("first in");
        let wait = Duration::from_millis(300);
        let started = Instant::now();
        assert!(admission.enter_return_within(wait).await.is_none());
        assert!(started.elapsed() >= wait);
        drop(held);
        assert!(admission.enter_return_within(wait).await.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_returns_does_not_hold_up_the_shop_api() {
        let admission = Admission::new(limits()).unwrap();
        let _returns = admission.enter(Class::Return).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), admission.enter(Class::Return))
                .await
                .is_err(),
            "the return limit holds"
        );
        let _shop = tokio::time::timeout(Duration::from_secs(1), admission.enter(Class::Shop))
            .await
            .expect("the shop API does not wait on returns");
        // An expensive return's work moves off the thread that read it.
        let here = std::thread::current().id();
        let ran_on = admission
            .run_return(async {
                // One poll that spends twice the budget, then a yield: the next poll is the pool's.
                let spin = Instant::now();
                while spin.elapsed() < INLINE_BUDGET * 2 {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
                std::thread::current().id()
            })
            .await
            .unwrap();
        assert_ne!(
            ran_on, here,
            "an expensive return stayed on the request's thread"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_notify_class_does_not_hold_up_the_shop_api() {
        let admission = Admission::new(limits()).unwrap();
        let mut held = Vec::new();
        for m in ["a", "a", "b", "b"] {
            held.push(admission.enter_notify(m, false).await);
        }
        // Every notification permit is taken; the shop API and admin still get in at once.
        let _shop = tokio::time::timeout(Duration::from_secs(1), admission.enter(Class::Shop))
            .await
            .expect("the shop API does not wait on notifications");
        let _admin = tokio::time::timeout(Duration::from_secs(1), admission.enter(Class::Admin))
            .await
            .expect("admin does not wait on notifications");
        assert!(
            tokio::time::timeout(
                Duration::from_millis(50),
                admission.enter_notify("c", false)
            )
            .await
            .is_err(),
            "the overall notification limit holds"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_merchants_flood_leaves_room_for_another_merchant() {
        let admission = Admission::new(limits()).unwrap();
        let _a1 = admission.enter_notify("a", false).await;
        let _a2 = admission.enter_notify("a", false).await;
        assert!(
            tokio::time::timeout(
                Duration::from_millis(50),
                admission.enter_notify("a", false)
            )
            .await
            .is_err(),
            "merchant a is at its own limit"
        );
        tokio::time::timeout(Duration::from_secs(1), admission.enter_notify("b", false))
            .await
            .expect("merchant b is not held up by merchant a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cheap_notification_stays_an_expensive_one_moves_to_the_pool() {
        let admission = Admission::new(limits()).unwrap();
        let thread = || std::thread::current().name().map(str::to_owned);
        let cheap = admission
            .run_notify(async move { thread() }, true)
            .await
            .unwrap();
        assert_ne!(cheap.as_deref(), Some("payhost-notify"), "no hand-off");
        let suspect = admission
            .run_notify(async move { thread() }, false)
            .await
            .unwrap();
        assert_eq!(
            suspect.as_deref(),
            Some("payhost-notify"),
            "not started here"
        );
        // Busy for longer than the budget, then yielding (as the component does every
        // YIELD_FUEL instructions): the rest runs in the pool, at its lower priority.
        let expensive = admission
            .run_notify(
                async move {
                    let started = Instant::now();
                    while started.elapsed() < INLINE_BUDGET * 2 {
                        std::hint::spin_loop();
                    }
                    tokio::task::yield_now().await;
                    thread()
                },
                true,
            )
            .await
            .unwrap();
        assert_eq!(expensive.as_deref(), Some("payhost-notify"));
    }
}
