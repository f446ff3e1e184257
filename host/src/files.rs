//! Rewriting a file the operator keeps (payhost.toml by `payhost admin-password --config`,
//! plugin.toml by `payhost pin-component`) all at once where the folder allows it: a crash or a
//! full disk leaves the old file or the new one, never half of one, and the file keeps its owner,
//! group and permissions, so it never becomes readable by more users than before.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Replaces `path`'s contents with `text`. A file this user may not write is refused, as a
/// plain write would be. The new text is written beside it with the old file's permissions,
/// owner and group, synced and renamed over it; where that cannot be done (a folder this user
/// may not write in, an owner it cannot give) the file is rewritten in place and synced. A
/// symbolic link is followed: the file it points to is replaced, the link stays. (ACLs and
/// extended attributes are kept only by the rewrite in place.)
pub fn replace(path: &Path, text: &str) -> Result<()> {
    let target =
        std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))?;
    // Opened for writing without truncating: the same refusal a plain write would meet.
    let existing = std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let meta = existing
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    drop(existing);
    if replace_by_rename(&target, &meta, text).is_ok() {
        return Ok(());
    }
    rewrite_in_place(&target, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The new text in a file beside `target` with its mode, owner and group, renamed over it.
fn replace_by_rename(target: &Path, meta: &std::fs::Metadata, text: &str) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let new = dir.join(format!(".{name}.{}.new", std::process::id()));
    let written = (|| {
        // Readable by this user alone until it has the old file's owner and permissions.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&new)?;
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        f.set_permissions(meta.permissions())?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&new, target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&new);
        return written;
    }
    // The rename is done; a folder that cannot be synced changes nothing for the caller.
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

fn rewrite_in_place(target: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(target)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_is_replaced_whole_with_its_permissions_and_no_leftover() {
        let dir = std::env::temp_dir().join(format!("payhost-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("payhost.toml");
        std::fs::write(&path, "old = 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();

        replace(&link, "new = 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new = 2\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_ne!(meta.ino(), inode, "replaced by a rename, not rewritten");
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
        assert!(replace(&dir, "x").is_err(), "a folder is not a file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
