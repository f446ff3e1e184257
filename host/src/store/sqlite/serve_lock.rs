//! One serving payhost per SQLite file. Two `payhost serve` processes on one file would both
//! drain the webhook outbox (events delivered twice) and both run the recovery queries; a
//! leftover process after a sloppy restart is the usual way to get there. The lock is an
//! advisory lock on `<database>.lock`, released by the kernel when the process ends however it
//! ends (`kill -9` included). The CLI commands that change the store while payhost serves
//! (`merchant`, `token`, `admin-user`) do not take it: they are meant to run beside it.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Held while payhost serves the database; dropping it releases the lock.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

impl ServeLock {
    /// Takes the lock of `database`, or says which process-level conflict stops the start.
    pub fn acquire(database: &Path) -> Result<ServeLock> {
        let path = lock_path(database);
        if let Some(dir) = database
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
        {
            // A mistyped folder would otherwise hold a new, empty store.
            bail!(
                "数据库所在的文件夹 {0} 不存在 / the database's folder {0} does not exist: create it (owned by the user payhost runs as) or correct `database`",
                dir.display()
            );
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = match options.open(&path) {
            Ok(file) => file,
            // The lock file exists and is another user's (payhost once run as root): that file,
            // not the folder, is what to give back.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && path.exists() => bail!(
                "运行 payhost 的用户不能写锁文件 {lock}（它属于另一个用户，比如曾以 root 运行过 payhost）/ this user cannot write the lock file {lock} (another user's, e.g. from running payhost as root once): give it to the user payhost runs as (chown), as the database and its -wal and -shm files",
                lock = path.display()
            ),
            // Most often the folder is not this user's: said as such, with what to do.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "运行 payhost 的用户不能在 {dir} 中写文件 / this user cannot write in {dir} (the lock file {lock}, the database and its journal live there): make the folder and the database owned by the user payhost runs as (chown), or correct `database`",
                dir = path.parent().unwrap_or(Path::new(".")).display(),
                lock = path.display()
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the lock file {}", path.display()))
            }
        };
        match file.try_lock() {
            Ok(()) => Ok(ServeLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "另一个 payhost 正在使用数据库 {db}：请先停止它 / another payhost already serves the database {db} (it holds {lock}): stop it first; two on one SQLite file would deliver every webhook twice",
                db = database.display(),
                lock = path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// `<database>.lock` beside the database's real file: resolved, so a second name for the same
/// file (a symbolic link, `./x/../payhost.db`) finds the same lock.
fn lock_path(database: &Path) -> PathBuf {
    let real = std::fs::canonicalize(database).unwrap_or_else(|_| {
        match (database.parent(), database.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .map(|d| d.join(name))
            .unwrap_or_else(|_| database.to_path_buf()),
            _ => database.to_path_buf(),
        }
    });
    let mut p = real.into_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::ServeLock;

    #[test]
    fn a_second_server_of_one_file_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("payhost-serve-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("payhost.db");
        let first = ServeLock::acquire(&db).unwrap();
        let second = ServeLock::acquire(&db).unwrap_err().to_string();
        assert!(
            second.contains("another payhost already serves"),
            "{second}"
        );
        // Another name for the same file finds the same lock.
        std::fs::write(&db, b"").unwrap();
        let link = dir.join("link.db");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&db, &link).unwrap();
        assert!(ServeLock::acquire(&link).is_err());
        drop(first);
        ServeLock::acquire(&db).expect("free again once the first one ends");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
