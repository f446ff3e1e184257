//! `payhost token create|list|revoke`: per-merchant API tokens.

use super::{fail, runtime};
use anyhow::{bail, Result};
use payhost::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Per-merchant API tokens (a shop adapter gets one instead of the operator's api_token).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Creates a token for one merchant and prints it once (only its hash is stored).
    Create {
        /// The merchant it is for (configured in payhost.toml or through the API).
        #[arg(long, value_name = "ID")]
        merchant: String,
        /// A label to recognise it by (e.g. "ecshop").
        #[arg(long, default_value = "")]
        label: String,
        /// The configuration file (its database holds the tokens).
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Lists the tokens, one a line: id, merchant, label, created, when revoked (or `live`), and
    /// who made it (an admin user's name, `admin_password`, `api:…`, a command; `-` when made by
    /// an older payhost), separated by tabs. Removing an admin user revokes the tokens they made.
    List {
        /// Only this merchant's tokens.
        #[arg(long, value_name = "ID")]
        merchant: Option<String>,
        /// The configuration file (its database holds the tokens).
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Revokes a live token by its id (as `token list` shows it).
    Revoke {
        /// The token's id (the first column of `payhost token list`).
        #[arg(long, value_name = "ID")]
        id: i64,
        /// The configuration file (its database holds the tokens).
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
}

pub fn run(Args { action }: Args) -> ExitCode {
    match runtime().block_on(token(action)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn token(action: Action) -> Result<()> {
    let (Action::Create { config, .. }
    | Action::List { config, .. }
    | Action::Revoke { config, .. }) = &action;
    // Checked before anything is opened or made.
    if let Action::Create { label, .. } = &action {
        if let Some(rule) = payhost::auth::token_label_refused(label) {
            bail!("--label: {rule}");
        }
    }
    let config = Config::load(config)?;
    let store = match action {
        // A token is made for a merchant that may so far exist only in payhost.toml.
        Action::Create { .. } => super::open_store_creating(&config).await?,
        Action::List { .. } | Action::Revoke { .. } => super::open_existing_store(&config).await?,
    };
    match action {
        Action::Create {
            merchant, label, ..
        } => {
            let stored = store.merchant(&merchant).await.ok().flatten().is_some();
            if !stored && !config.merchants.contains_key(&merchant) {
                let mut known: Vec<String> = store.merchant_ids().await.unwrap_or_default();
                known.extend(config.merchants.keys().cloned());
                known.sort();
                known.dedup();
                let hint = if known.is_empty() {
                    "there is none yet: add one with `payhost merchant add` or a [merchants.<id>] table in payhost.toml".to_owned()
                } else {
                    format!("the merchants are: {}", known.join(", "))
                };
                bail!("--merchant {merchant:?}: no such merchant ({hint})");
            }
            let token = payhost::auth::new_merchant_token();
            let hash = payhost::auth::token_hash(&token);
            let id = if stored {
                store
                    .create_token(&merchant, &hash, label.trim(), "payhost token")
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("merchant {merchant:?} was removed meanwhile"))?
            } else {
                store
                    .create_token_for_configured(&merchant, &hash, label.trim(), "payhost token")
                    .await?
            };
            eprintln!("token #{id} for merchant {merchant} (shown only this once):");
            if let Err(e) = super::write_line(format_args!("{token}")) {
                // Shown nowhere else: a token nobody could read is not left live.
                store.revoke_token(id, None).await.map_err(|d| {
                    anyhow::anyhow!("cannot write the token to standard output ({e}), and cannot revoke token #{id} ({d:#}): revoke it with payhost token revoke --id {id}")
                })?;
                bail!("cannot write the token to standard output ({e}); token #{id} was revoked: run this again where its output can be read");
            }
            super::audit(
                store.as_ref(),
                "payhost token",
                "token.create",
                Some(&merchant),
                &format!("token #{id} {}", label.trim()),
            )
            .await;
        }
        Action::List { merchant, .. } => {
            if let Some(m) = merchant.as_deref() {
                let known = store.merchant(m).await?.is_some() || config.merchants.contains_key(m);
                if !known {
                    bail!("--merchant {m:?}: no such merchant (payhost token list without --merchant lists every merchant's tokens)");
                }
            }
            for t in store.tokens(merchant.as_deref()).await? {
                say!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.merchant_id,
                    t.label,
                    t.created_at,
                    t.revoked_at.as_deref().unwrap_or("live"),
                    t.created_by.as_deref().unwrap_or("-")
                );
            }
        }
        Action::Revoke { id, .. } => {
            let merchant = store
                .tokens(None)
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|t| t.id == id))
                .map(|t| t.merchant_id);
            if !store.revoke_token(id, None).await? {
                bail!("no live token #{id}");
            }
            say!("token #{id} revoked");
            super::audit(
                store.as_ref(),
                "payhost token",
                "token.revoke",
                merchant.as_deref(),
                &format!("token #{id}"),
            )
            .await;
        }
    }
    Ok(())
}
