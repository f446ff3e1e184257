//! What the kit needs from its caller: the component under test (direct calls into a loaded
//! component), a way to start a host around it, and the options of a run. Kit-owned types only:
//! payhost implements the traits over its wasmtime runtime; the kit knows neither.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed future that may borrow (the traits' methods return it, so they stay object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Key/value pairs in order (settings, form fields, query parameters).
pub type Pairs = [(String, String)];

/// What `validate-settings` answers: the normalised settings, or every bad field.
pub type Validated = Result<Vec<(String, String)>, Vec<FieldError>>;

/// The component, called directly (no host in between). Every call is one fresh call of the
/// component's export; a trap is reported as [`CallOutcome::Trapped`] or `Err`, never a panic.
pub trait ComponentUnderTest: Send + Sync {
    /// `describe()`; `Err` when the call trapped or failed.
    fn info(&self) -> BoxFuture<'_, Result<PluginInfo, String>>;
    /// `validate-settings`: the normalised settings, or every bad field. A trap is `Err` with one
    /// [`FieldError`] whose field is empty.
    fn validate_settings<'a>(&'a self, settings: &'a Pairs) -> BoxFuture<'a, Validated>;
    /// The first step of `verify-notification` with this form (the body's fields): done → `Verified`,
    /// a request to send → `WantsToSend`, a plugin error → `Refused`, a trap → `Trapped`.
    fn verify_notification<'a>(
        &'a self,
        settings: &'a Pairs,
        form: &'a Pairs,
    ) -> BoxFuture<'a, CallOutcome>;
    /// `verify-return` with this query: verified → `Verified`, a plugin error → `Refused`, a trap →
    /// `Trapped`.
    fn verify_return<'a>(
        &'a self,
        settings: &'a Pairs,
        query: &'a Pairs,
    ) -> BoxFuture<'a, CallOutcome>;
    /// The wall-clock limit of one call (the manifest's `limits.call_timeout_ms`, or the host's
    /// tighter one): no call may take longer.
    fn call_limit(&self) -> Duration;

    /// The origins the component's manifest lets it call (`outbound.allowed_hosts`), besides the
    /// URLs its settings name. A request to any other origin would be refused by a host.
    fn allowed_hosts(&self) -> Vec<String> {
        Vec::new()
    }

    /// `start-payment` with this order: one call, nothing sent. `None`: this implementation
    /// cannot drive flows step by step (the `start.*` cases are skipped).
    fn start_payment<'a>(
        &'a self,
        _settings: &'a Pairs,
        _order: &'a KitOrder,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async { None })
    }

    /// `resume-payment` with a continuation [`FlowStep::Send`] returned and the kit's answer.
    fn resume_payment<'a>(
        &'a self,
        _settings: &'a Pairs,
        _continuation: &'a str,
        _answer: &'a KitAnswer,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async { None })
    }

    /// The first step of `verify-notification`, with the continuation when it asks to send
    /// (the cases that answer the provider's confirmation themselves). `None`: not supported.
    fn notification_step<'a>(
        &'a self,
        _settings: &'a Pairs,
        _form: &'a Pairs,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async { None })
    }

    /// `resume-notification` with a continuation and the kit's answer.
    fn resume_notification<'a>(
        &'a self,
        _settings: &'a Pairs,
        _continuation: &'a str,
        _answer: &'a KitAnswer,
    ) -> BoxFuture<'a, Option<FlowStep>> {
        Box::pin(async { None })
    }
}

/// An order for `start-payment`, in the kit's terms (the contract's `payment-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitOrder {
    /// `wap`, `pc` or `app`.
    pub product: String,
    pub out_trade_no: String,
    pub subject: String,
    /// Decimal text, as a shop sends it (the cases also send bad ones).
    pub total_fee: String,
    pub seller: Option<String>,
    pub return_url: String,
    pub notify_url: String,
    /// At most 32 characters of `[0-9a-z]`.
    pub request_id: String,
}

/// A request a flow asks the host to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedRequest {
    /// `GET` or `POST`.
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the kit gives a flow's `resume-*` call in place of a sent request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KitAnswer {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `send-failure.timeout`.
    Timeout(String),
    /// `send-failure.refused`: the host's outbound policy refused the destination.
    Refused(String),
    /// `send-failure.failed`: connection, TLS or protocol failure.
    Failed(String),
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowStep {
    /// The component asks for `request`, then `resume-*` with `continuation` (opaque, passed
    /// back unchanged).
    Send {
        request: AskedRequest,
        continuation: String,
    },
    /// The flow finished: for a payment where the buyer goes (the redirect's URL, or its form's
    /// action; the order string for `app`), for a notification its trade status.
    Done(String),
    /// A plugin error, with its reason.
    Refused(String),
    /// The call trapped, ran out of fuel or time.
    Trapped(String),
}

/// What one call into the component concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The input was accepted as genuine.
    Verified,
    /// The component asks the host to send a request first (e.g. Alipay's `notify_verify`).
    WantsToSend { url: String },
    /// The component refused the input (a plugin error), with its reason.
    Refused(String),
    /// The call trapped, ran out of fuel or time.
    Trapped(String),
}

/// `describe()`, in the kit's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    /// The provider the component speaks to (`alipay`).
    pub provider: String,
    pub settings: Vec<SettingField>,
    pub notify_ack: String,
    pub notify_retry: String,
}

/// One setting of the component's schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingField {
    pub name: String,
    pub label_zh: String,
    pub label_en: String,
    /// `text`, `secret`, `select`, `pem` or `url`.
    pub kind: String,
    pub required: bool,
    pub secret: bool,
    pub rule: String,
    /// The values of a `select` field.
    pub options: Vec<String>,
    pub default_value: Option<String>,
}

/// A bad setting and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// Starts a payhost around the component under test, for the flow suite.
pub trait HostLauncher: Send + Sync {
    /// Starts a host serving the component with an operator token, allowing these origins as
    /// `[outbound] allowed_origins` does (the kit's sandbox gateway and webhook receiver).
    fn start(
        &self,
        extra_allowed_origins: Vec<String>,
    ) -> BoxFuture<'_, Result<RunningHost, String>>;
}

/// A host the launcher started; dropping `guard` stops it.
pub struct RunningHost {
    /// e.g. `http://127.0.0.1:41234`, without a trailing slash.
    pub base_url: String,
    /// The operator's API token.
    pub token: String,
    pub guard: Box<dyn Send + Sync>,
}

/// Called with each case's result as soon as it is known (e.g. to print lines as they come).
pub type OnCase = Arc<dyn Fn(&crate::report::CaseResult) + Send + Sync>;

/// How a run goes.
#[derive(Clone)]
pub struct Options {
    /// Where the kit's sandbox gateway and webhook receiver listen (default `127.0.0.1:0`: any
    /// free port). The host must be allowed to reach this origin.
    pub sandbox_listen: SocketAddr,
    /// The origin the host reaches them at, when not the listen address (e.g. the kit runs
    /// behind NAT, or listens on `0.0.0.0`): `http://kit.example:8099`.
    pub sandbox_public_url: Option<String>,
    /// The merchant id the kit configures on the host (`conformance`), with `<ID>-rsa` and
    /// `<ID>-openapi`. They must not exist there unless the kit made them (an earlier run's):
    /// the flow suite refuses to touch anyone else's merchant.
    pub merchant: String,
    /// Each case's limit; a case past it fails and the next one runs.
    pub case_timeout: Duration,
    /// How many times a notify is replayed (`notify.replay_once`), half of them concurrently.
    pub replays: usize,
    /// Settings the component accepts, for the contract cases that need valid settings (the
    /// kit uses its sandbox merchant's for Alipay components, else the schema's defaults).
    pub example_settings: Option<Vec<(String, String)>>,
    /// Called as each case finishes.
    pub on_case: Option<OnCase>,
    /// Called with the kit's origin (`http://127.0.0.1:41234`) once its sandbox and webhook
    /// receiver listen, before any case runs: the origin the host must allow.
    pub on_sandbox_ready: Option<OnSandboxReady>,
    /// The cases to run (`--only` / `--skip`); every case by default.
    pub selection: crate::Selection,
    /// Leave the merchants (and their payments) the flow suite made in the host it tested
    /// (`--keep`); by default they are removed at the end (see [`crate::Report::cleanup`]).
    pub keep: bool,
    /// Once this turns `true` (e.g. nobody reads the output any more) the case under way is
    /// abandoned, the rest are reported as skipped, and the run cleans up and returns.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// See [`Options::on_sandbox_ready`].
pub type OnSandboxReady = Arc<dyn Fn(&str) + Send + Sync>;

impl Default for Options {
    fn default() -> Self {
        Options {
            sandbox_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sandbox_public_url: None,
            merchant: "conformance".into(),
            case_timeout: Duration::from_secs(30),
            replays: 6,
            example_settings: None,
            on_case: None,
            on_sandbox_ready: None,
            selection: crate::Selection::default(),
            keep: false,
            stop: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("sandbox_listen", &self.sandbox_listen)
            .field("sandbox_public_url", &self.sandbox_public_url)
            .field("merchant", &self.merchant)
            .field("case_timeout", &self.case_timeout)
            .field("replays", &self.replays)
            .field(
                "example_settings",
                &self.example_settings.as_ref().map(|s| s.len()),
            )
            .field("selection", &self.selection)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}
