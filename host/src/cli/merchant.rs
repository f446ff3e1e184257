//! `payhost merchant add`: a merchant slot for a shop, with least privilege.

use super::{fail, runtime};
use anyhow::{anyhow, bail, Result};
use payhost::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Merchant slots: `merchant add` connects a shop with least privilege.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Creates a merchant slot before any provider settings exist: the component that pays for
    /// it, the shop origins it may use, and its per-merchant API token and shop secret, printed
    /// once. The shop saves its own provider settings with that token (PUT /v1/merchants/<id>):
    /// the token reads (masked) and replaces this merchant's provider settings and webhook, and
    /// creates, reads, refunds, closes and syncs its payments, with its notifications,
    /// reconciliation and CSV; never another merchant, the plugin or the shop origins. Webhook
    /// URLs, return URLs and cancel links must be on the shop origins. The shop secret signs
    /// returns and webhooks until the shop saves a shop_webhook_secret of its own.
    Add {
        /// The merchant id (1 to 64 letters, digits, '_' or '-'), e.g. ecshop-<partner ID>.
        id: String,
        /// The component that pays for it (`[plugins.<id>]`, or the manifest id of `[plugin]`);
        /// may be left out when the configuration has one component.
        #[arg(long, value_name = "ID")]
        plugin: Option<String>,
        /// An origin of the shop (https://shop.example), repeatable; at least one.
        #[arg(long = "shop-origin", value_name = "ORIGIN", required = true)]
        shop_origins: Vec<String>,
        /// A label for the token (e.g. "ecshop").
        #[arg(long, default_value = "")]
        label: String,
        /// The configuration file (its database keeps the merchant).
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
}

pub fn run(Args { action }: Args) -> ExitCode {
    match runtime().block_on(add(action)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The ids of the configured components (`[plugins.<id>]` keys, the manifest id of `[plugin]`).
fn plugin_ids(config: &Config) -> Result<Vec<String>> {
    config
        .plugins
        .iter()
        .map(|p| match &p.id {
            Some(id) => Ok(id.clone()),
            None => payhost::manifest::Manifest::load(&p.manifest).map(|m| m.id),
        })
        .collect()
}

async fn add(action: Action) -> Result<()> {
    let Action::Add {
        id,
        plugin,
        shop_origins,
        label,
        config,
    } = action;
    let path = config;
    let config = Config::load(&path)?;
    // `payhost serve` applies a configured merchant's table over its slot at every start: a
    // slot made here for it would be replaced without a word (its origins, its settings).
    if config.merchants.contains_key(&id) {
        bail!(
            "ID (the merchant id): {id} is configured in {} ([merchants.{id}]), which `payhost serve` applies over any slot made here; edit its shop_origins and settings there, or remove that table to manage {id} with `merchant add` and the API",
            path.display()
        );
    }
    let ids = plugin_ids(&config)?;
    let plugin = match (plugin, ids.as_slice()) {
        (Some(p), _) if ids.contains(&p) => p,
        (Some(p), _) => bail!(
            "--plugin {p:?}: not configured (configured: {})",
            ids.join(", ")
        ),
        (None, [only]) => only.clone(),
        (None, _) => bail!(
            "--plugin: is required with several components (one of {})",
            ids.join(", ")
        ),
    };
    let store = super::open_store_creating(&config).await?;
    let m = payhost::onboarding::add_merchant(
        store.as_ref(),
        &id,
        &plugin,
        &shop_origins,
        &label,
        "payhost merchant",
    )
    .await
    .map_err(|e| anyhow!("{}", in_flag_terms(&id, &e)))?;
    eprintln!(
        "merchant {id} created (plugin {plugin}, shop origins {}). Shown only this once: put both into the shop's payment settings; the operator's api_token stays here.",
        m.shop_origins.join(", ")
    );
    let shown = super::write_line(format_args!("token: {}", m.token.expose()))
        .and_then(|()| super::write_line(format_args!("shop_secret: {}", m.shop_secret.expose())));
    if let Err(e) = shown {
        // The secrets exist only in this output: a merchant nobody can use is not kept.
        match store.delete_merchant(&id, false).await {
            Ok(payhost::store::MerchantRemoval::Removed { .. }) => {}
            other => {
                let why = match other {
                    Err(d) => format!("{d:#}"),
                    Ok(r) => format!("{r:?}"),
                };
                bail!("cannot write the merchant's token and shop secret to standard output ({e}), and cannot remove merchant {id} again ({why}); remove it with the API and run this again");
            }
        }
        bail!("cannot write the merchant's token and shop secret to standard output ({e}); merchant {id} was not kept: run this again where its output can be read");
    }
    // In the audit log as the admin's and the API's merchants are.
    super::audit(
        store.as_ref(),
        "payhost merchant",
        "merchant.connect",
        Some(&id),
        &format!("token #{}", m.token_id),
    )
    .await;
    Ok(())
}

/// The onboarding rules name the API's fields (`id`, `merchants.<id>.shop_origins`); on the
/// command line the same rule names what was typed: the ID argument and the flags.
fn in_flag_terms(id: &str, problems: &str) -> String {
    problems
        .split("; ")
        .map(|p| {
            if let Some(rest) = p.strip_prefix("id: ") {
                format!("ID (the merchant id): {rest}")
            } else if let Some(rest) = p.strip_prefix("plugin: ") {
                format!("--plugin: {rest}")
            } else if let Some(rest) = p.strip_prefix(&format!("merchants.{id}.shop_origins")) {
                format!("--shop-origin{rest}")
            } else {
                p.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn problems_name_the_flags_typed() {
        assert_eq!(
            super::in_flag_terms(
                "m2",
                "merchants.m2.shop_origins: \"shop.example\" is not an origin such as https://shop.example"
            ),
            "--shop-origin: \"shop.example\" is not an origin such as https://shop.example"
        );
        assert_eq!(
            super::in_flag_terms("bad id", "id: \"bad id\" must be 1 to 64 letters"),
            "ID (the merchant id): \"bad id\" must be 1 to 64 letters"
        );
        assert_eq!(super::in_flag_terms("m", "other"), "other");
    }
}
