//! `payhost serve`: payhost with a configuration file, until SIGTERM, SIGINT or SIGHUP.

use super::{fail, init_logging, runtime};
use payhost::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serves shops and payment providers with the given configuration until SIGTERM, SIGINT or SIGHUP (each stops it gracefully).
///
/// Once listening it prints the admin page's URL and each merchant's notify URL (sent with every
/// payment: nothing to enter at the provider; it must be reachable from there), and warns when neither an admin password nor an admin user exists.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (payhost.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

pub fn run(Args { config: path }: Args) -> ExitCode {
    init_logging();
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let _serving = match serve_lock(&config) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    runtime().block_on(async {
        // Reserved before the database is opened (and perhaps made): a busy port changes
        // nothing. Listening only once payhost can serve.
        let listen = config.listen;
        let socket = match payhost::server::reserve(listen) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let store = config.store_description();
        let app = match payhost::server::build_app(config).await {
            Ok(a) => a,
            // The database's own problem (a migration refused, say) is not the file's.
            Err(e) if e.is::<payhost::server::DatabaseError>() => return fail(e),
            Err(e) if payhost::store::is_unavailable(&e) => {
                return fail(e.context(format!(
                    "the database ({store}) cannot be written now: make room on its file system, end the other process holding it, or give payhost more memory, then start payhost again"
                )))
            }
            // Its problems are the file's keys: the file is named, as check-config names it.
            Err(e) => return fail(e.context(format!("in {}", path.display()))),
        };
        let listener = match socket.listen(1024) {
            Ok(l) => l,
            Err(e) => return fail(anyhow::anyhow!("cannot listen on {listen}: {e}")),
        };
        let running =
            match payhost::server::start_on(app, listener, payhost::server::termination_signal())
                .await
            {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
        let merchants = running.app.store.merchant_ids().await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot list the merchants");
            Vec::new()
        });
        // An admin user (`payhost admin-user add`) logs in as well as the configured password.
        let admin_users = match running.app.store.admin_users().await {
            Ok(users) => !users.is_empty(),
            Err(e) => {
                tracing::error!(error = %e, "cannot list the admin users");
                false
            }
        };
        let admin_login = running.app.config.admin_password_hash.is_some() || admin_users;
        if !admin_login {
            tracing::warn!("{NO_ADMIN_LOGIN}");
        }
        warn_of_a_low_open_files_limit(running.app.config.limits.max_connections);
        // A server keeps serving when nobody reads its start-up summary (stdout closed).
        let _ = super::write_line(format_args!(
            "{}",
            summary(
                &running.app.config.public_url,
                running.addr,
                &merchants,
                admin_login,
                &path
            )
        ));
        match running.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

/// The SQLite file's lock, held until the process ends (`store::sqlite::serve_lock`); PostgreSQL
/// is served by replicas, side by side by design.
pub(super) fn serve_lock(
    config: &Config,
) -> anyhow::Result<Option<payhost::store::sqlite::serve_lock::ServeLock>> {
    match config.database_url {
        Some(_) => Ok(None),
        None => {
            let lock = payhost::store::sqlite::serve_lock::ServeLock::acquire(&config.database)?;
            if !config.database.exists() {
                tracing::info!(
                    database = %config.database.display(),
                    "no database at this path yet: a new, empty one will be made once the configuration is checked"
                );
            }
            // Then what `check-config` says of the file (a folder this user cannot write in, a
            // file that is not SQLite, a newer schema), clearer than SQLite's "unable to open
            // database file"; read once no other payhost can be writing it.
            payhost::store::sqlite::check_file(&config.database).map_err(anyhow::Error::msg)?;
            Ok(Some(lock))
        }
    }
}

const NO_ADMIN_LOGIN: &str =
    "no admin password is set (admin_password_hash) and there is no admin user: nobody can log into the admin page";

/// What the operator needs once payhost listens: where the admin page is, the notify URL of each
/// merchant (sent with every payment; the provider must reach it), where those URLs come from, and whether the admin
/// page can be logged into. No secret is in it.
fn summary(
    public_url: &str,
    addr: SocketAddr,
    merchants: &[String],
    admin_login: bool,
    config: &std::path::Path,
) -> String {
    let (base, source) = if public_url.is_empty() {
        (
            format!("http://{addr}"),
            "from the listen address: set public_url to the address the provider reaches",
        )
    } else {
        (public_url.to_owned(), "from public_url")
    };
    // Under a path (`https://shop.example/pay`) the admin's own links and forms, which start at
    // `/admin`, would miss it: said here as well as in the warning.
    let under_a_path = base
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .is_some_and(|(_, path)| !path.trim_matches('/').is_empty());
    let mut out = if under_a_path {
        format!("\npayhost is listening on {addr}.\n  Admin: {base}/admin (not under a path: open it at the server's own origin, http://{addr}/admin through an SSH tunnel, or serve payhost at a domain's root)\n")
    } else {
        format!("\npayhost is listening on {addr}.\n  Admin: {base}/admin\n")
    };
    if merchants.is_empty() {
        out.push_str("  No merchant yet: add one in payhost.toml, the admin page or `payhost merchant add`.\n");
    } else {
        out.push_str(&format!(
            "  Notify URL of each merchant, sent with every payment (nothing to enter at Alipay; it must be reachable from the provider) ({source}):\n"
        ));
        for m in merchants {
            out.push_str(&format!("    {m}: {base}/notify/{m}\n"));
        }
    }
    if !admin_login {
        out.push_str(&format!(
            "  Warning: {NO_ADMIN_LOGIN}; make one with `payhost admin-password --config {0}` or `payhost admin-user add NAME --role operator --config {0}`.\n",
            config.display()
        ));
    }
    out
}

/// Every connection is a file descriptor, and so are the database, its readers and the
/// outbound connections: a limit below `max_connections` turns connections away with EMFILE
/// before payhost's own limit does.
fn warn_of_a_low_open_files_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let needed = max_connections as u64 + 256;
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed {
        tracing::warn!(
            open_files_limit = limit.rlim_cur,
            max_connections,
            "the process's open-files limit is below [limits] max_connections plus payhost's own files ({needed}): connections past it are refused by the system, not by payhost; raise it (LimitNOFILE= in the systemd unit, or ulimit -n)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::summary;
    use std::path::Path;

    #[test]
    fn the_summary_names_the_admin_and_notify_urls_and_their_source() {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let merchants = ["shop".to_owned(), "rsa".to_owned()];
        let s = summary(
            "https://pay.example.com",
            addr,
            &merchants,
            true,
            Path::new("payhost.toml"),
        );
        assert!(s.contains("Admin: https://pay.example.com/admin"), "{s}");
        assert!(s.contains("(from public_url)"), "{s}");
        assert!(
            s.contains("shop: https://pay.example.com/notify/shop"),
            "{s}"
        );
        assert!(s.contains("rsa: https://pay.example.com/notify/rsa"), "{s}");
        assert!(!s.contains("Warning"), "{s}");
        assert!(!s.contains("not under a path"), "{s}");
        let s = summary(
            "https://shop.example.com/pay",
            addr,
            &merchants,
            true,
            Path::new("payhost.toml"),
        );
        assert!(
            s.contains("Admin: https://shop.example.com/pay/admin (not under a path: open it at the server's own origin, http://127.0.0.1:8080/admin"),
            "{s}"
        );
        let s = summary("", addr, &merchants, false, Path::new("/etc/payhost.toml"));
        assert!(s.contains("Admin: http://127.0.0.1:8080/admin"), "{s}");
        assert!(s.contains("from the listen address"), "{s}");
        assert!(
            s.contains("Warning: no admin password is set")
                && s.contains("payhost admin-password --config /etc/payhost.toml"),
            "{s}"
        );
    }
}
