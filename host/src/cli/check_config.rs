//! `payhost check-config`: every problem of a configuration, in one run.

use super::{fail, runtime, FAILED};
use payhost::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Checks a configuration, its components and its merchants' settings; lists every problem.
///
/// Reads the file, loads each plugin manifest and component, has the settings of each merchant
/// validated by its component (the file's, and those the database holds: added with `payhost
/// merchant add` or the API), and reaches the database without changing it; lists every problem in one run (each naming the key and the rule)
/// and exits 2 if there is any, 0 (printing `configuration OK`) if none.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (payhost.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

pub fn run(Args { config: path }: Args) -> ExitCode {
    // Only a file that cannot be read or is not TOML stops here; the rest is collected.
    let checked = match Config::load_checked(&path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut problems = checked.problems;
    let mut config = checked.config;
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    for source in &config.plugins {
        let manifest = payhost::manifest::Manifest::load(&source.manifest);
        if let Some(w) = manifest
            .ok()
            .and_then(|m| payhost::server::looser_timeout(source, &m))
        {
            eprintln!("warning: {w}");
        }
    }
    runtime().block_on(async {
        let (plugins, plugin_problems) = payhost::server::load_plugins_checked(&config).await;
        // The component's problem first: the merchants it leaves unchecked follow from it.
        let unloaded = !plugin_problems.is_empty();
        problems.extend(plugin_problems);
        if unloaded {
            // A merchant whose component did not load cannot have its settings checked.
            config.merchants.retain(|id, m| {
                let loaded = plugins.for_merchant(m).is_some();
                if !loaded {
                    problems.push(format!(
                        "merchants.{id}: its settings were not checked: its component did not load"
                    ));
                }
                loaded
            });
        }
        problems.extend(payhost::server::check_merchants(&config, &plugins).await);
        // The database is reached, not changed: no file is created, no migration runs. Not when
        // its key has a problem already (a URL that does not parse would be said twice).
        let database_said = problems.iter().any(|p| p.starts_with("database"));
        let upgrade = match database_said {
            true => None,
            false => match payhost::store::check_reachable(&config).await {
                Ok(note) => note,
                Err(p) => {
                    problems.push(p);
                    None
                }
            },
        };
        // The merchants the database holds beyond the file's (`payhost merchant add`, the API, a
        // restored backup): each checked by its component as stored, since a new component may
        // refuse settings an older one took. Of an older schema they are counted only (`serve`
        // migrates them first).
        let stored: Option<Vec<_>> = match problems.iter().any(|p| p.starts_with("database")) {
            true => None,
            false => payhost::store::stored_merchants(&config).await.map(|all| {
                all.into_iter()
                    .map(|(id, text)| {
                        let m = payhost::store::parse_merchant(&text).map_err(|e| format!("{e:#}"));
                        (id, m)
                    })
                    .collect()
            }),
        };
        if let (Some(stored), None, false) = (&stored, &upgrade, unloaded) {
            for (id, m) in stored.iter().filter(|(id, _)| !config.merchants.contains_key(id)) {
                problems.extend(check_stored(id, m, &plugins).await);
            }
        }
        // Not a problem of the file, but `payhost serve` says the same when nobody can log in:
        // no admin password, and no admin user in the database (read, not changed).
        if config.admin_password_hash.is_none() {
            match payhost::store::has_admin_user(&config).await {
                Some(true) => {}
                Some(false) => eprintln!(
                    "warning: admin_password_hash: not set and the database has no admin user: nobody can log into the admin page: set a password with `payhost admin-password --config {0}` or add a user with `payhost admin-user add NAME --role operator --config {0}`",
                    path.display()
                ),
                None => eprintln!(
                    "warning: admin_password_hash: not set; unless the database has an admin user (`payhost admin-user list --config {0}`), nobody can log into the admin page: set one with `payhost admin-password --config {0}`",
                    path.display()
                ),
            }
        }
        if problems.is_empty() {
            let components: Vec<String> = plugins
                .iter()
                .map(|p| format!("{} {}", p.info.id, p.info.version))
                .collect();
            // The file's merchants, and the database's (those added with `payhost merchant add`
            // or the API live only there: a restored database has them).
            let stored = stored
                .map(|all| {
                    let waiting = all
                        .iter()
                        .filter(|(_, m)| m.as_ref().is_ok_and(|m| m.settings.is_empty()))
                        .count();
                    match waiting {
                        0 => format!(" (the database holds {} merchant(s))", all.len()),
                        w => format!(
                            " (the database holds {} merchant(s), {w} waiting for their shop's settings)",
                            all.len()
                        ),
                    }
                })
                .unwrap_or_default();
            say!(
                "configuration OK: {} merchant(s) in {}{stored}, component(s) {}",
                config.merchants.len(),
                path.display(),
                components.join(", ")
            );
            if let Some(note) = upgrade {
                say!("{note}");
            }
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "error: {} problem(s) in {}:\n  - {}",
                problems.len(),
                path.display(),
                problems.join("\n  - ")
            );
            ExitCode::from(FAILED)
        }
    })
}

/// The problems of a merchant the database holds, as its component judges its stored settings
/// (named as stored, with where to fix them).
async fn check_stored(
    id: &str,
    m: &Result<payhost::config::MerchantSettings, String>,
    plugins: &payhost::runtime::Plugins,
) -> Vec<String> {
    let fix = format!(
        "save its settings again on the admin page (/admin/merchants/{id}) or with PUT /v1/merchants/{id}"
    );
    let m = match m {
        Ok(m) => m,
        Err(e) => return vec![format!("merchant {id} (in the database): {e}")],
    };
    // A slot `payhost merchant add` made, waiting for its shop's settings: nothing to check.
    if m.settings.is_empty() {
        return Vec::new();
    }
    let Some(plugin) = plugins.for_merchant(m) else {
        return vec![format!(
            "merchant {id} (in the database): its component {:?} is not configured (configured: {}); configure it, or remove the merchant",
            m.plugin_id,
            plugins.ids().join(", ")
        )];
    };
    let mut session = match plugin.session().await {
        Ok(s) => s,
        Err(e) => return vec![format!("merchant {id} (in the database): {e}")],
    };
    match session.validate_settings(&m.settings).await {
        Ok(Ok(_)) => Vec::new(),
        Ok(Err(fields)) => fields
            .iter()
            .map(|f| {
                format!(
                    "merchant {id} (in the database): {}: {} ({} refuses its stored settings: {fix})",
                    f.field, f.reason, plugin.info.id
                )
            })
            .collect(),
        Err(e) => vec![format!("merchant {id} (in the database): {e}")],
    }
}
