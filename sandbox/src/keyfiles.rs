//! The RSA keys of `payhost sandbox`'s RSA merchants and open-platform apps, kept as PEM files:
//! made on the first start and read back on the next, so the keys a vendor gave its component
//! stay valid across restarts of the sandbox.
//!
//! One folder per merchant or app: `<signer>_private.pem` / `<signer>_public.pem` (the merchant's
//! or app's pair: the private key goes into the component's settings) and `alipay_private.pem` /
//! `alipay_public.pem` (the sandbox's own "Alipay" pair: the public key goes into the settings).

use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use std::path::{Path, PathBuf};

/// A signer's key pair and the sandbox's pair facing it, with where they are kept.
pub struct KeyPairs {
    pub signer: RsaPrivateKey,
    pub alipay: RsaPrivateKey,
    /// The signer's private key (PKCS#8 PEM), for the component's settings.
    pub signer_private_file: PathBuf,
    /// The sandbox's public key (SPKI PEM), for the component's settings.
    pub alipay_public_file: PathBuf,
}

/// Reads the pairs kept in `dir` (named `signer`_…, e.g. `merchant` or `app`), or makes them
/// (`bits` long) when none is there yet. A folder holding only some of the files is an error
/// that names the missing one, never silently new keys.
pub fn load_or_make(dir: &Path, signer: &str, bits: usize) -> Result<KeyPairs, String> {
    let file = |name: &str| dir.join(name);
    let names = [
        format!("{signer}_private.pem"),
        format!("{signer}_public.pem"),
        "alipay_private.pem".to_owned(),
        "alipay_public.pem".to_owned(),
    ];
    let present: Vec<bool> = names.iter().map(|n| file(n).exists()).collect();
    let pairs = if present.iter().all(|p| *p) {
        let read = |name: &str| {
            let path = file(name);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|pem| {
                    crate::wire::rsa_private_from_pem(&pem)
                        .map_err(|e| format!("{}: {e}", path.display()))
                })
        };
        (read(&names[0])?, read(&names[2])?)
    } else if let Some(i) = present.iter().position(|p| *p) {
        let missing = present.iter().position(|p| !*p).unwrap_or(0);
        return Err(format!(
            "{} holds {} but not {}: remove the folder to make new keys, or put the file back",
            dir.display(),
            names[i],
            names[missing]
        ));
    } else {
        let make = || {
            RsaPrivateKey::new(&mut rand_core::OsRng, bits)
                .map_err(|e| format!("cannot make an RSA key: {e}"))
        };
        let (signer_key, alipay_key) = (make()?, make()?);
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write_pair(&file(&names[0]), &file(&names[1]), &signer_key)?;
        write_pair(&file(&names[2]), &file(&names[3]), &alipay_key)?;
        (signer_key, alipay_key)
    };
    Ok(KeyPairs {
        signer: pairs.0,
        alipay: pairs.1,
        signer_private_file: file(&names[0]),
        alipay_public_file: file(&names[3]),
    })
}

/// The private key readable by its owner only, the public key by anyone.
fn write_pair(private: &Path, public: &Path, key: &RsaPrivateKey) -> Result<(), String> {
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot write an RSA key as PEM: {e}"))?;
    write_file(private, pem.as_bytes(), 0o600)?;
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("cannot write an RSA key as PEM: {e}"))?;
    write_file(public, public_pem.as_bytes(), 0o644)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::load_or_make;

    #[test]
    fn keys_are_made_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("sandbox-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let made = load_or_make(&dir.join("p"), "merchant", 1024).unwrap();
        let again = load_or_make(&dir.join("p"), "merchant", 1024).unwrap();
        assert_eq!(made.signer, again.signer);
        assert_eq!(made.alipay, again.alipay);
        assert_ne!(made.signer, made.alipay);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&made.signer_private_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "a private key readable by others");
        }
        // A folder with a file missing: an error naming it, not new keys.
        std::fs::remove_file(dir.join("p/alipay_public.pem")).unwrap();
        let err = load_or_make(&dir.join("p"), "merchant", 1024)
            .err()
            .unwrap();
        assert!(err.contains("not alipay_public.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
