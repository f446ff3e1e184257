//! Counters for `GET /metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A step of a notification's processing, timed for `/metrics`
/// (`payhost_notification_step_seconds_total` and `payhost_notification_steps_total`): where a
/// notification's time goes, in production as in the load benchmark (docs/PERFORMANCE.md).
#[derive(Debug, Clone, Copy)]
pub enum NotifyStep {
    /// The component's verification, with the provider's confirmation it asked for.
    Verify,
    /// The order read to match the notification against.
    PaymentRead,
    /// The component's match of the notification against the order.
    Match,
    /// The store's commit of the notification with its effect (durable when it ends).
    Commit,
}

impl NotifyStep {
    const ALL: [NotifyStep; 4] = [
        NotifyStep::Verify,
        NotifyStep::PaymentRead,
        NotifyStep::Match,
        NotifyStep::Commit,
    ];

    fn label(self) -> &'static str {
        match self {
            NotifyStep::Verify => "verify",
            NotifyStep::PaymentRead => "payment_read",
            NotifyStep::Match => "match",
            NotifyStep::Commit => "commit",
        }
    }
}

/// The time spent in one step and how often it ran.
#[derive(Debug, Default)]
struct StepTime {
    micros: AtomicU64,
    count: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    notify_steps: [StepTime; 4],
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    notifies: Mutex<BTreeMap<&'static str, u64>>,
    returns: Mutex<BTreeMap<&'static str, u64>>,
    pub payments_created: Counter,
    pub webhooks_delivered: Counter,
    pub webhooks_failed: Counter,
    pub webhooks_dead: Counter,
    pub rate_limited: Counter,
    /// Connections closed at once: their client address held `max_connections_per_ip`.
    pub connections_refused: Counter,
    /// Connections that found every slot (`max_connections`) taken and waited for one.
    pub connections_waited: Counter,
    /// Connections closed to make room for those ([`crate::http::conn`]'s shedding), counted as
    /// each closes (one asked to close that started a request meanwhile is not).
    pub connections_shed: Counter,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry((route.to_owned(), status))
            .or_default() += 1;
    }

    pub fn notify(&self, outcome: &'static str) {
        *self.notifies.lock().unwrap().entry(outcome).or_default() += 1;
    }

    pub fn returns(&self, outcome: &'static str) {
        *self.returns.lock().unwrap().entry(outcome).or_default() += 1;
    }

    /// Counts `step` as having taken the time since `started`.
    pub fn notify_step(&self, step: NotifyStep, started: std::time::Instant) {
        let t = &self.notify_steps[step as usize];
        t.micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        t.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Count of notifications that ended with this outcome.
    pub fn notify_count(&self, outcome: &str) -> u64 {
        self.notifies
            .lock()
            .unwrap()
            .get(outcome)
            .copied()
            .unwrap_or(0)
    }

    pub fn render(
        &self,
        components: &[&crate::runtime::plugin::CallStats],
        pending_webhooks: u64,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP payhost_http_requests_total HTTP requests by route and status.\n# TYPE payhost_http_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap().iter() {
            out.push_str(&format!(
                "payhost_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP payhost_notifications_total Provider notifications by outcome.\n# TYPE payhost_notifications_total counter\n");
        for (outcome, n) in self.notifies.lock().unwrap().iter() {
            out.push_str(&format!(
                "payhost_notifications_total{{outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP payhost_returns_total Buyer returns by outcome.\n# TYPE payhost_returns_total counter\n");
        for (outcome, n) in self.returns.lock().unwrap().iter() {
            out.push_str(&format!(
                "payhost_returns_total{{outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP payhost_notification_step_seconds_total Time notifications spent in each step of their processing.\n# TYPE payhost_notification_step_seconds_total counter\n");
        for step in NotifyStep::ALL {
            let t = &self.notify_steps[step as usize];
            out.push_str(&format!(
                "payhost_notification_step_seconds_total{{step=\"{}\"}} {:.6}\n",
                step.label(),
                t.micros.load(Ordering::Relaxed) as f64 / 1e6
            ));
        }
        out.push_str("# HELP payhost_notification_steps_total Steps of notifications timed, by step.\n# TYPE payhost_notification_steps_total counter\n");
        for step in NotifyStep::ALL {
            let t = &self.notify_steps[step as usize];
            out.push_str(&format!(
                "payhost_notification_steps_total{{step=\"{}\"}} {}\n",
                step.label(),
                t.count.load(Ordering::Relaxed)
            ));
        }
        // Summed over the loaded components.
        let sum = |f: fn(&crate::runtime::plugin::CallStats) -> u64| -> u64 {
            components.iter().map(|c| f(c)).sum()
        };
        let calls = sum(|c| c.calls.load(Ordering::Relaxed));
        let micros = sum(|c| c.total_micros.load(Ordering::Relaxed));
        let failures = sum(|c| c.failures.load(Ordering::Relaxed));
        let sent = sum(|c| c.requests_sent.load(Ordering::Relaxed));
        let sent_micros = sum(|c| c.request_micros.load(Ordering::Relaxed));
        out.push_str(&format!(
            "# HELP payhost_component_calls_total Calls into the payment components.\n# TYPE payhost_component_calls_total counter\npayhost_component_calls_total {calls}\n\
             # HELP payhost_component_call_failures_total Calls that trapped, timed out or ran out of fuel or memory.\n# TYPE payhost_component_call_failures_total counter\npayhost_component_call_failures_total {}\n\
             # HELP payhost_component_call_seconds_total Time spent in component calls.\n# TYPE payhost_component_call_seconds_total counter\npayhost_component_call_seconds_total {:.6}\n",
            failures,
            micros as f64 / 1e6
        ));
        out.push_str(&format!(
            "# HELP payhost_component_requests_total Requests the components asked the host to send to their providers.\n# TYPE payhost_component_requests_total counter\npayhost_component_requests_total {sent}\n\
             # HELP payhost_component_request_seconds_total Time from sending those requests to their answers (or failures).\n# TYPE payhost_component_request_seconds_total counter\npayhost_component_request_seconds_total {:.6}\n",
            sent_micros as f64 / 1e6
        ));
        out.push_str(&format!(
            "# TYPE payhost_payments_created_total counter\npayhost_payments_created_total {}\n\
             # TYPE payhost_webhooks_delivered_total counter\npayhost_webhooks_delivered_total {}\n\
             # TYPE payhost_webhook_attempts_failed_total counter\npayhost_webhook_attempts_failed_total {}\n\
             # TYPE payhost_webhooks_pending gauge\npayhost_webhooks_pending {pending_webhooks}\n\
             # TYPE payhost_webhooks_dead_total counter\npayhost_webhooks_dead_total {}\n\
             # TYPE payhost_rate_limited_total counter\npayhost_rate_limited_total {}\n",
            self.payments_created.get(),
            self.webhooks_delivered.get(),
            self.webhooks_failed.get(),
            self.webhooks_dead.get(),
            self.rate_limited.get()
        ));
        out.push_str(&format!(
            "# HELP payhost_connections_refused_total Connections closed at once: their client address held max_connections_per_ip.\n# TYPE payhost_connections_refused_total counter\npayhost_connections_refused_total {}\n\
             # HELP payhost_connections_waited_total Connections that found every slot (max_connections) taken and waited for one.\n# TYPE payhost_connections_waited_total counter\npayhost_connections_waited_total {}\n\
             # HELP payhost_connections_shed_total Connections closed to make room: idle, still sending their request, or a notification or return waiting for its turn.\n# TYPE payhost_connections_shed_total counter\npayhost_connections_shed_total {}\n",
            self.connections_refused.get(),
            self.connections_waited.get(),
            self.connections_shed.get()
        ));
        out
    }
}
