//! The cases: `contract` calls the component directly (any provider), `component_alipay` checks
//! an Alipay component's signature rules with messages the kit signs itself, `flows` drives a
//! running host through the kit's sandbox over HTTP only, `start` drives a component's payment
//! flow step by step, answering its requests itself.

pub mod component_alipay;
pub mod contract;
pub mod flows;
pub mod start;

use crate::api::PluginInfo;

/// Whether the component speaks Alipay (its provider, or an id such as `alipay-wap`).
pub fn is_alipay(info: &PluginInfo) -> bool {
    info.provider.eq_ignore_ascii_case("alipay")
        || info.id.to_ascii_lowercase().starts_with("alipay")
}
