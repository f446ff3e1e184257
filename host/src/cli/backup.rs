//! `payhost backup`: an online copy of the SQLite database, safe while `payhost serve` runs.

use super::fail;
use anyhow::{bail, Result};
use payhost::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Copies the SQLite database to a file, safely while `payhost serve` runs.
///
/// Takes one consistent snapshot of the live database (including the commits still in its -wal)
/// with SQLite's online backup API, through a read connection: `payhost serve` keeps running and
/// writing. The copy is written to a temporary file in FILE's folder, readable by its owner only
/// (mode 0600: the database holds merchant keys and shop secrets), fsynced, checked with `PRAGMA
/// integrity_check`, and renamed to FILE; then one line is printed: FILE, its size, its number of
/// payments and the newest payment's creation time. An existing FILE is refused unless --force;
/// the live database and its -wal, -shm, -journal and .lock files are always refused. With a
/// PostgreSQL `database` it copies nothing and exits 2: back that up with pg_dump. Restoring:
/// README.md, "Deployment: backup and restore".
#[derive(clap::Args)]
pub struct Args {
    /// The backup file to write (a new file: see --force).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// Replace FILE if it exists (it is replaced only once the new copy is complete and checked).
    #[arg(long)]
    force: bool,
    /// The configuration file (its `database` is copied).
    #[arg(long, default_value = "payhost.toml", value_name = "FILE")]
    config: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    match backup(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn backup(Args { to, force, config }: Args) -> Result<()> {
    let config = Config::load(&config)?;
    if config.database_url.is_some() {
        bail!(
            "数据库是 PostgreSQL：payhost backup 只复制 SQLite 文件，请用 pg_dump 备份（pg_restore 恢复）/ the database is PostgreSQL: payhost backup copies only an SQLite file; back it up with pg_dump (e.g. `pg_dump --format=custom --file payhost.dump <the database URL>`) and restore it with pg_restore"
        );
    }
    let s = payhost::store::sqlite::backup::backup(&config.database, &to, force)?;
    say!(
        "{}: {} bytes, {} payment(s), newest payment created {}",
        s.path.display(),
        s.bytes,
        s.payments,
        s.newest_payment.as_deref().unwrap_or("(none)")
    );
    Ok(())
}
