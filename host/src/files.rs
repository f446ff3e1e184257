//! Rewriting a file the operator keeps (payhost.toml by `payhost admin-password --config`,
//! plugin.toml by `payhost pin-component`) all at once: a crash or a full disk leaves the old
//! file or the new one, never half of one, and a file holding secrets never becomes readable by
//! more users than before.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path`'s contents with `text`: written beside it with the old file's permissions,
/// synced, renamed over it, and the directory synced. A symbolic link is followed: the file it
/// points to is replaced, the link stays.
pub fn replace(path: &Path, text: &str) -> Result<()> {
    let target =
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))?;
    let permissions = std::fs::metadata(&target)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions();
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let new = dir.join(format!(".{name}.{}.new", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        // Readable by the owner alone until it has the old file's permissions.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&new)?;
        f.set_permissions(permissions)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&new, &target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&new);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_is_replaced_whole_with_its_permissions_and_no_leftover() {
        let dir = std::env::temp_dir().join(format!("payhost-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("payhost.toml");
        std::fs::write(&path, "old = 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.join("link.toml");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link).unwrap();

        replace(&link, "new = 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new = 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(replace(&dir.join("missing.toml"), "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
