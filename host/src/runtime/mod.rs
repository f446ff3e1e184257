//! Payment components inside wasmtime: engine and compile cache, versioned bindings converted
//! into the host's own types (`plugin_api`), per-request sessions with limits that drive the
//! components' flows (sending their requests through `net`), and the set of loaded components.

// Generated types stop here: the rest of the host sees `plugin_api`'s.
mod bindings;
pub mod engine;
pub mod plugin;
pub mod plugin_api;

pub use bindings::VERSIONS;
pub use plugin::{pairs, CallError, Pairs, PluginRuntime, Session};

use crate::config::MerchantSettings;

/// The components a host loaded, in the order configured; each merchant names one by id.
pub struct Plugins {
    list: Vec<PluginRuntime>,
    net: std::sync::Arc<crate::net::Client>,
}

impl Plugins {
    /// `net` is the client the components' requests go through (also the shop webhooks').
    pub fn new(list: Vec<PluginRuntime>, net: std::sync::Arc<crate::net::Client>) -> Plugins {
        Plugins { list, net }
    }

    pub fn net(&self) -> &std::sync::Arc<crate::net::Client> {
        &self.net
    }

    pub fn get(&self, id: &str) -> Option<&PluginRuntime> {
        self.list.iter().find(|p| p.info.id == id)
    }

    /// The first configured component (merchants stored before hosts had several use it).
    pub fn first(&self) -> Option<&PluginRuntime> {
        self.list.first()
    }

    /// The component a merchant names (the first when it names none).
    pub fn for_merchant(&self, m: &MerchantSettings) -> Option<&PluginRuntime> {
        if m.plugin_id.is_empty() {
            self.first()
        } else {
            self.get(&m.plugin_id)
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.list.iter().map(|p| p.info.id.clone()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PluginRuntime> {
        self.list.iter()
    }
}
