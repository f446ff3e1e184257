//! `payhost:payment@0.4.0`: as 0.3.0, with refunds (`start-refund`, `query-refund`,
//! `resume-refund`, a notification's `refund` report), closing a trade (`close-trade`,
//! `resume-close`), the day's bill (`locate-bill`, `resume-bill`, `parse-bill`) and settings shown
//! per family (`setting-field.shown-when`). The exports 0.3.0 has come from `contract_version!`
//! (`bindings/mod.rs`); the new ones are written here, in host types.

wasmtime::component::bindgen!({
    path: "../wit/v0.4.0",
    world: "payhost:payment/payment-plugin",
    exports: { default: async },
});

/// The contract version these bindings load (`[wit] version` in a manifest).
pub const VERSION: &str = "0.4.0";

contract_version!(refund);

fn continuation_in(c: &api::Continuation) -> String {
    c.to_text()
}

/// Settings, forms and queries cross as one form-encoded string (`form-pairs`).
fn form_in(p: &[(String, String)]) -> String {
    api::encode_form(p)
}

/// Settings encoded once by the caller cross as they are.
#[allow(clippy::owned_cow)] // the generated export calls take `&String`
fn settings_in(s: &(impl SettingsInput + ?Sized)) -> std::borrow::Cow<'_, String> {
    s.form()
}

fn shown_when_out(f: &types::SettingField) -> Option<api::ShownWhen> {
    f.shown_when.as_ref().map(|s| api::ShownWhen {
        setting: s.setting.clone(),
        values: s.values.clone(),
    })
}

fn refund_out(n: &mut types::Notification) -> Option<api::RefundReport> {
    n.refund.take().map(|r| api::RefundReport {
        request_no: r.request_no,
        amount: r.amount,
        refunded_total: r.refunded_total,
        succeeded: r.succeeded,
        detail: r.detail,
        time: r.time,
    })
}

impl From<&api::RefundReport> for types::RefundReport {
    fn from(r: &api::RefundReport) -> Self {
        types::RefundReport {
            request_no: r.request_no.clone(),
            amount: r.amount.clone(),
            refunded_total: r.refunded_total.clone(),
            succeeded: r.succeeded,
            detail: r.detail.clone(),
            time: r.time.clone(),
        }
    }
}

impl From<&api::RefundRequest> for types::RefundRequest {
    fn from(r: &api::RefundRequest) -> Self {
        types::RefundRequest {
            out_trade_no: r.out_trade_no.clone(),
            trade_no: r.trade_no.clone(),
            amount: r.amount.clone(),
            total_fee: r.total_fee.clone(),
            reason: r.reason.clone(),
            request_no: r.request_no.clone(),
            request_time: r.request_time.clone(),
            notify_url: r.notify_url.clone(),
        }
    }
}

impl From<types::RefundState> for api::RefundState {
    fn from(s: types::RefundState) -> Self {
        api::RefundState {
            request_no: s.request_no,
            status: match s.status {
                types::RefundStatus::Pending => api::RefundStatus::Pending,
                types::RefundStatus::Succeeded => api::RefundStatus::Succeeded,
                types::RefundStatus::Failed => api::RefundStatus::Failed,
            },
            confirm: s.confirm.map(|r| api::Redirect {
                url: r.url,
                method: r.method.into(),
                action: r.action,
                fields: pairs_out(r.fields),
            }),
            refunded_total: s.refunded_total,
            fund_change: s.fund_change,
            detail: s.detail,
        }
    }
}

impl From<types::TradeClosed> for api::TradeClosed {
    fn from(c: types::TradeClosed) -> Self {
        api::TradeClosed {
            at_provider: c.at_provider,
            trade_no: c.trade_no,
            detail: c.detail,
        }
    }
}

impl From<types::BillLocation> for api::BillLocation {
    fn from(b: types::BillLocation) -> Self {
        api::BillLocation {
            url: b.url,
            empty: b.empty,
        }
    }
}

impl From<types::BillEntry> for api::BillEntry {
    fn from(e: types::BillEntry) -> Self {
        api::BillEntry {
            kind: match e.kind {
                types::BillEntryKind::Payment => api::BillEntryKind::Payment,
                types::BillEntryKind::Refund => api::BillEntryKind::Refund,
                types::BillEntryKind::Other => api::BillEntryKind::Other,
            },
            out_trade_no: e.out_trade_no,
            trade_no: e.trade_no,
            amount: e.amount,
            request_no: e.request_no,
            finished_at: e.finished_at,
        }
    }
}

step_from!(RefundStep, api::RefundState);
step_from!(CloseStep, api::TradeClosed);
step_from!(BillStep, api::BillLocation);

pub async fn start_refund(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    settings: &(impl SettingsInput + ?Sized),
    refund: &api::RefundRequest,
) -> Answer<api::Step<api::RefundState>> {
    let refund = types::RefundRequest::from(refund);
    let r = g
        .payhost_payment_plugin()
        .call_start_refund(store, &settings_in(settings), &refund)
        .await?;
    Ok(answer(r))
}

pub async fn query_refund(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    settings: &(impl SettingsInput + ?Sized),
    out_trade_no: &str,
    request_no: &str,
) -> Answer<api::Step<api::RefundState>> {
    let r = g
        .payhost_payment_plugin()
        .call_query_refund(store, &settings_in(settings), out_trade_no, request_no)
        .await?;
    Ok(answer(r))
}

pub async fn resume_refund(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    settings: &(impl SettingsInput + ?Sized),
    continuation: &api::Continuation,
    response: &Result<api::IncomingResponse, api::SendFailure>,
) -> Answer<api::Step<api::RefundState>> {
    let (c, r) = (continuation_in(continuation), response_in(response));
    let r = g
        .payhost_payment_plugin()
        .call_resume_refund(store, &settings_in(settings), &c, r.as_ref())
        .await?;
    Ok(answer(r))
}

pub async fn close_trade(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    settings: &(impl SettingsInput + ?Sized),
    out_trade_no: &str,
) -> Answer<api::Step<api::TradeClosed>> {
    let r = g
        .payhost_payment_plugin()
        .call_close_trade(store, &settings_in(settings), out_trade_no)
        .await?;
    Ok(answer(r))
}

pub async fn resume_close(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    settings: &(impl SettingsInput + ?Sized),
    continuation: &api::Continuation,
    response: &Result<api::IncomingResponse, api::SendFailure>,
) -> Answer<api::Step<api::TradeClosed>> {
    let (c, r) = (continuation_in(continuation), response_in(response));
    let r = g
        .payhost_payment_plugin()
        .call_resume_close(store, &settings_in(settings), &c, r.as_ref())
        .await?;
    Ok(answer(r))
}

pub async fn locate_bill(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    settings: &(impl SettingsInput + ?Sized),
    date: &str,
) -> Answer<api::Step<api::BillLocation>> {
    let r = g
        .payhost_payment_plugin()
        .call_locate_bill(store, &settings_in(settings), date)
        .await?;
    Ok(answer(r))
}

pub async fn resume_bill(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    settings: &(impl SettingsInput + ?Sized),
    continuation: &api::Continuation,
    response: &Result<api::IncomingResponse, api::SendFailure>,
) -> Answer<api::Step<api::BillLocation>> {
    let (c, r) = (continuation_in(continuation), response_in(response));
    let r = g
        .payhost_payment_plugin()
        .call_resume_bill(store, &settings_in(settings), &c, r.as_ref())
        .await?;
    Ok(answer(r))
}

pub async fn parse_bill(
    g: &PaymentPlugin,
    store: &mut Store<HostState>,
    files: &[api::BillFile],
) -> Answer<Vec<api::BillEntry>> {
    let files: Vec<types::BillFile> = files
        .iter()
        .map(|f| types::BillFile {
            name: f.name.clone(),
            content: f.content.clone(),
        })
        .collect();
    let r = g
        .payhost_payment_plugin()
        .call_parse_bill(store, &files)
        .await?;
    Ok(r.map(|v| v.into_iter().map(Into::into).collect())
        .map_err(api::PluginError::from))
}
