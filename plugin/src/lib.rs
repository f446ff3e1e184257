//! Alipay mobile-website pay (WAP pay, `wappaygw`) as a payment plugin, with PC instant pay
//! (`create_direct_pay_by_user`), app secure pay (`mobile.securitypay.pay`) and
//! `single_trade_query` (rules in docs/protocol/EXTRA.md; wire format in [`mapi`]).
//!
//! The protocol (docs/protocol/WAP.md): `alipay.wap.trade.create.direct`
//! for a `request_token`, the signed `alipay.wap.auth.authAndExecute` redirect, the synchronous
//! `call_back_url` return, the asynchronous notify with its fixed-order signature and
//! `notify_verify`, and the `mobile.merchant.paychannel` query. MD5 and RSA (`sec_id=0001`).
//!
//! Layout: the wire format lives in [`transformers`] (with [`sign`], [`xml`], [`amount`]); the
//! flows in [`connector`]; the WIT glue in `component` (wasm32 only). Everything but the glue
//! compiles natively so the host can benchmark and fuzz the same code.

pub mod amount;
pub mod bill;
pub mod channels;
pub mod connector;
pub mod flow;
pub mod gbk;
// The conformance kit's broken build skips the flat notify check, leaving `settings` unused there.
#[cfg_attr(feature = "conformance-broken-notify-check", allow(unused_variables))]
pub mod mapi;
pub mod model;
pub mod openapi;
pub mod settings;
pub mod sign;
pub mod transformers;
pub mod xml;

#[cfg(target_arch = "wasm32")]
mod component;

#[cfg(test)]
mod broken_notify_tests;
