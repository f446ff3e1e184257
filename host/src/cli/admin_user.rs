//! `payhost admin-user add NAME --role operator|owner [--merchant ID…]`: an admin login of its
//! own (`remove NAME` ends it, `password NAME` replaces its password; both end its sessions). An operator sees every merchant, the admin users and the audit log; an owner sees and acts
//! on the merchants given here only. The password is read from standard input (one line) or made
//! with `--generate` and printed once; only its argon2 hash is stored.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AdminUserAction {
    /// Adds an admin user (the password: one line on standard input, or --generate).
    Add(AddArgs),
    /// Removes an admin user; every session of theirs ends at once.
    Remove {
        /// The login name.
        name: String,
        /// The configuration file (its database holds the admin users).
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Gives an admin user a new password (one line on standard input, or --generate); every
    /// session of theirs ends at once.
    Password {
        /// The login name.
        name: String,
        /// Make a random password (printed once) instead of reading one from standard input.
        #[arg(long)]
        generate: bool,
        /// The configuration file (its database holds the admin users).
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
    /// Lists the admin users (name, role, merchants, created).
    List {
        /// The configuration file (its database holds the admin users).
        #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// The login name (1 to 64 letters, digits, '_', '.', '@' or '-').
    name: String,
    /// operator (every merchant, users, audit log) or owner (the --merchant ones only).
    #[arg(long, value_name = "ROLE", value_parser = ["operator", "owner"])]
    role: String,
    /// A merchant an owner sees (repeatable; required for an owner).
    #[arg(long = "merchant", value_name = "ID")]
    merchants: Vec<String>,
    /// Make a random password (printed once) instead of reading one from standard input.
    #[arg(long)]
    generate: bool,
    /// The configuration file (its database holds the admin users).
    #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
    config: PathBuf,
}

/// A password made here (`--generate`), or one line of standard input.
fn new_password(generate: bool) -> Result<String, ExitCode> {
    if generate {
        return Ok(payhost::auth::random_token()[..20].to_owned());
    }
    super::password_input::read_password(
        "密码（至少 12 个字符，输入时不显示）Password (12+ characters, not shown): ",
    )
    .map_err(|_| fail("cannot read the password from standard input"))
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Admin logins of their own: operators (every merchant) and shop owners (their merchants only).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: AdminUserAction,
}

pub fn run(Args { action }: Args) -> ExitCode {
    super::runtime().block_on(admin_user(action))
}

async fn admin_user(action: AdminUserAction) -> ExitCode {
    let path = match &action {
        AdminUserAction::Add(a) => a.config.clone(),
        AdminUserAction::List { config }
        | AdminUserAction::Remove { config, .. }
        | AdminUserAction::Password { config, .. } => config.clone(),
    };
    let config = match payhost::config::Config::load(&path) {
        Ok(c) => c,
        // `payhost demo` writes no configuration: its users are added on its own admin page.
        Err(e) if !path.exists() => {
            return fail(format!(
                "{e:#}\n(payhost demo has no configuration file: add the demo's admin users on its admin page, 管理员 / Admin users)"
            ))
        }
        Err(e) => return fail(format!("{e:#}")),
    };
    let opened = match action {
        AdminUserAction::Add(_) => super::open_store_creating(&config).await,
        // Listing or changing admin users of a database that does not exist is a mistake.
        _ => super::open_existing_store(&config).await,
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => return fail(format!("{e:#}")),
    };
    match action {
        AdminUserAction::Remove { name, .. } => {
            match payhost::admin_users::remove(store.as_ref(), &name, "payhost admin-user").await {
                Ok(Some(tokens)) => {
                    eprintln!("admin user {name} removed; their sessions have ended");
                    if !tokens.is_empty() {
                        eprintln!(
                            "revoked the API token(s) they made: {}; a shop that used one needs a new token (payhost token create --merchant ID, or the merchant's admin page)",
                            payhost::admin_users::token_list(&tokens)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Ok(None) => fail(format!(
                    "NAME: no admin user {name:?} (payhost admin-user list shows them)"
                )),
                Err(e) => fail(format!("{e:#}")),
            }
        }
        AdminUserAction::Password { name, generate, .. } => {
            let password = match new_password(generate) {
                Ok(p) => p,
                Err(code) => return code,
            };
            // A generated password is shown only for a user that exists.
            if generate && matches!(store.admin_user(name.trim()).await, Ok(None)) {
                return fail(format!(
                    "NAME: no admin user {name:?} (payhost admin-user list shows them)"
                ));
            }
            if let Err(code) = show_generated(generate, &password) {
                return code;
            }
            match payhost::admin_users::set_password(
                store.as_ref(),
                &name,
                &password,
                "payhost admin-user",
            )
            .await
            {
                Ok(()) => {
                    eprintln!("admin user {name}: new password set; their sessions have ended");
                    ExitCode::SUCCESS
                }
                Err(p) => fail(format!(
                    "{}: {}{}",
                    if p.field == "name" {
                        "NAME"
                    } else {
                        "password"
                    },
                    p.message,
                    not_set(generate)
                )),
            }
        }
        AdminUserAction::List { .. } => match store.admin_users().await {
            Ok(users) => {
                for u in users {
                    say!(
                        "{}\t{}\t{}\t{}",
                        u.name,
                        u.role.as_str(),
                        u.merchants.join(","),
                        u.created_at
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{e:#}")),
        },
        AdminUserAction::Add(a) => {
            let password = match new_password(a.generate) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let configured: Vec<String> = config.merchants.keys().cloned().collect();
            let new = payhost::admin_users::NewUser {
                name: &a.name,
                role: &a.role,
                merchants: &a.merchants,
                password: &password,
                created_by: "payhost admin-user",
                configured: &configured,
            };
            // A generated password is shown only for a user that will be added.
            let problems = if a.generate {
                payhost::admin_users::problems_of(store.as_ref(), &new).await
            } else {
                Vec::new()
            };
            if !problems.is_empty() {
                print_problems(problems);
                return ExitCode::from(2);
            }
            if let Err(code) = show_generated(a.generate, &password) {
                return code;
            }
            match payhost::admin_users::add(store.as_ref(), &new).await {
                Ok(user) => {
                    eprintln!(
                        "admin user {} added ({}{})",
                        user.name,
                        user.role.as_str(),
                        if user.merchants.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", user.merchants.join(", "))
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    print_problems(problems);
                    if a.generate {
                        eprintln!("error: {}", not_set(true).trim_start_matches("; "));
                    }
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Each refusal of `add`, naming its flag.
fn print_problems(problems: Vec<payhost::admin_users::FieldProblem>) {
    for p in problems {
        let flag = match p.field {
            "name" => "NAME",
            "role" => "--role",
            "merchants" => "--merchant",
            _ => "password",
        };
        eprintln!("error: {flag}: {}", p.message);
    }
}

/// What a refusal adds when a generated password was already shown: it was not set.
fn not_set(generated: bool) -> &'static str {
    if generated {
        "; the password printed above was NOT set (nothing was changed)"
    } else {
        ""
    }
}

/// A generated password is shown before it is set: when standard output cannot take it, nothing
/// is changed (a password nobody saw would lock its user out).
fn show_generated(generate: bool, password: &str) -> Result<(), ExitCode> {
    if !generate {
        return Ok(());
    }
    super::write_line(format_args!("password: {password}")).map_err(|e| {
        fail(format!(
            "cannot write the generated password to standard output ({e}); nothing was changed"
        ))
    })
}
