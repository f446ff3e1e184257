//! `plugin.toml`: the payment component's manifest (identity, contract version, component file and
//! checksum, settings schema, outbound hosts, resource limits). See the comments in `plugin.toml`.

mod shape;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The contract versions this host can load, newest first.
/// v0.1.0 (the component did its own `wasi:http` I/O) is retired: see CHANGELOG.md.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = crate::runtime::VERSIONS;
pub const WIT_PACKAGE: &str = "payhost:payment";
/// The contract's one world (every version names it so).
pub const WIT_WORLD: &str = "payment-plugin";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub wit: WitRef,
    pub component: ComponentRef,
    #[serde(default)]
    pub settings: Vec<SettingDoc>,
    pub outbound: Outbound,
    #[serde(default)]
    pub limits: Limits,
    /// The folder of the manifest file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The manifest file as the operator named it, so that messages name their own file
    /// (`alipay.toml says …`), not always `plugin.toml`.
    #[serde(skip)]
    pub file: PathBuf,
    /// Made up for a bare component (`payhost conformance --component X.wasm` without a
    /// manifest): identity and settings are taken from the component's `describe`.
    #[serde(skip)]
    pub synthetic: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitRef {
    pub package: String,
    pub version: String,
    pub world: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    pub path: PathBuf,
    pub sha256: String,
}

/// A settings field as documented in the manifest. The component's own `describe` is the
/// authority; the host checks the two agree when it loads the component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingDoc {
    pub name: String,
    pub label_zh: String,
    pub label_en: String,
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    pub rule: String,
    /// The rule in Chinese, for shop owners (optional).
    #[serde(default)]
    pub rule_zh: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// Origins (`scheme://host[:port]`) the component may call.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest linear memory of one instance, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// Wall-clock budget of one call, outbound HTTP included, in milliseconds.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// CPU budget of one call, in wasm instructions (wasmtime fuel); waiting on HTTP costs none.
    #[serde(default = "default_fuel_per_call")]
    pub fuel_per_call: u64,
    /// Largest number of instances alive at once (the pooling allocator's slots).
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
}

fn default_memory_mib() -> u32 {
    16
}
fn default_call_timeout_ms() -> u64 {
    15_000
}
fn default_fuel_per_call() -> u64 {
    2_000_000_000
}
fn default_max_instances() -> u32 {
    128
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: default_memory_mib(),
            call_timeout_ms: default_call_timeout_ms(),
            fuel_per_call: default_fuel_per_call(),
            max_instances: default_max_instances(),
        }
    }
}

/// Reads a manifest's text: TOML, then its shape (every missing key, wrong type and unknown key
/// listed at once), then its fields.
fn parse(text: &str, path: &Path) -> Result<Manifest> {
    let doc: toml::Table = toml::from_str(text)
        .with_context(|| format!("{} is not a valid plugin manifest", path.display()))?;
    let problems = shape::problems(&doc);
    if !problems.is_empty() {
        bail!(
            "{} is not a valid plugin manifest: {} problem(s):\n  - {}",
            path.display(),
            problems.len(),
            problems.join("\n  - ")
        );
    }
    Manifest::deserialize(doc)
        .with_context(|| format!("{} is not a valid plugin manifest", path.display()))
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plugin manifest {}", path.display()))?;
        let mut m = parse(&text, path)?;
        m.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        m.file = path.to_path_buf();
        m.check()?;
        Ok(m)
    }

    /// A manifest for a bare component file: its checksum, default limits (the contract version
    /// is the newest the component exports, found when it is loaded),
    /// no outbound origins; identity and settings come from the component itself.
    pub fn synthetic(component: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(component)
            .with_context(|| format!("cannot read the component {}", component.display()))?;
        let path = std::path::absolute(component)?;
        Ok(Manifest {
            id: String::new(),
            name: String::new(),
            version: String::new(),
            description: String::new(),
            wit: WitRef {
                package: WIT_PACKAGE.into(),
                version: SUPPORTED_WIT_VERSIONS[0].into(),
                world: WIT_WORLD.into(),
            },
            component: ComponentRef {
                path,
                sha256: sha256_hex(&bytes),
            },
            settings: Vec::new(),
            outbound: Outbound {
                allowed_hosts: Vec::new(),
            },
            limits: Limits::default(),
            base_dir: PathBuf::from("/"),
            file: PathBuf::from("the manifest made from the component's describe"),
            synthetic: true,
        })
    }

    /// Problems that make the manifest unusable, all at once.
    fn check(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.wit.package != WIT_PACKAGE {
            problems.push(format!(
                "wit.package is {:?}; this host implements {WIT_PACKAGE}",
                self.wit.package
            ));
        }
        if self.wit.world != WIT_WORLD {
            problems.push(format!(
                "wit.world is {:?}; every version of {WIT_PACKAGE} has one world, {WIT_WORLD}",
                self.wit.world
            ));
        }
        if !SUPPORTED_WIT_VERSIONS.contains(&self.wit.version.as_str()) {
            problems.push(format!(
                "wit.version {} is not supported; this host loads {}",
                self.wit.version,
                SUPPORTED_WIT_VERSIONS.join(", ")
            ));
        }
        if self.component.sha256.len() != 64
            || !self.component.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            problems.push("component.sha256 must be 64 hex digits".into());
        }
        for h in &self.outbound.allowed_hosts {
            if let Err(e) = crate::net::Origin::parse(h) {
                problems.push(format!("outbound.allowed_hosts entry {h:?}: {e}"));
            }
        }
        if self.limits.memory_mib == 0 || self.limits.memory_mib > 4096 {
            problems.push("limits.memory_mib must be between 1 and 4096".into());
        }
        if self.limits.call_timeout_ms == 0 || self.limits.fuel_per_call == 0 {
            problems
                .push("limits.call_timeout_ms and limits.fuel_per_call must be positive".into());
        }
        if self.limits.max_instances == 0 {
            problems.push("limits.max_instances must be positive".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "{} is not a usable plugin manifest: {} problem(s):\n  - {}",
                self.file.display(),
                problems.len(),
                problems.join("\n  - ")
            )
        }
    }

    /// Where the component file may be: a relative path into `target/` (cargo's default target
    /// directory, also as `../../target/…` from a manifest deeper in the workspace) is looked
    /// for first under `CARGO_TARGET_DIR` when that is set (a build with a relocated target
    /// directory), then beside the manifest as written (a copy installed with it).
    pub fn component_paths(&self) -> Vec<PathBuf> {
        let path = Path::new(&self.component.path);
        let plain = self.base_dir.join(path);
        let ups = path
            .components()
            .take_while(|c| matches!(c, std::path::Component::ParentDir))
            .count();
        let below: PathBuf = path.components().skip(ups).collect();
        if let (Ok(rest), Some(dir)) = (
            below.strip_prefix("target"),
            std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()),
        ) {
            // A relative CARGO_TARGET_DIR is relative to the workspace root, which is where
            // the manifest's `../..` lead.
            let mut root = self.base_dir.clone();
            for _ in 0..ups {
                root.pop();
            }
            let relocated = root.join(dir).join(rest);
            if relocated != plain {
                return vec![relocated, plain];
            }
        }
        vec![plain]
    }

    /// The component file: the first of [`Manifest::component_paths`] whose file has the pinned
    /// sha256, else the first that exists, else the first (what [`Manifest::read_component`]
    /// reads, and names in its errors).
    pub fn component_path(&self) -> PathBuf {
        let paths = self.component_paths();
        let found: Vec<(PathBuf, Vec<u8>)> = paths
            .iter()
            .filter_map(|p| std::fs::read(p).ok().map(|b| (p.clone(), b)))
            .collect();
        self.pick(&found)
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| paths[0].clone())
    }

    /// Of the files found, the first with the pinned sha256, else the first.
    fn pick<'a>(&self, found: &'a [(PathBuf, Vec<u8>)]) -> Option<&'a (PathBuf, Vec<u8>)> {
        found
            .iter()
            .find(|(_, b)| sha256_hex(b).eq_ignore_ascii_case(&self.component.sha256))
            .or(found.first())
    }

    /// Reads the component and checks its checksum and binary header. Of the places it may be
    /// ([`Manifest::component_paths`]), the first whose file has the pinned sha256 is taken; a
    /// build under `CARGO_TARGET_DIR` passed over for the pinned copy beside the manifest is
    /// said in the log (a rebuild not pinned yet runs the older copy).
    pub fn read_component(&self) -> Result<Vec<u8>> {
        let paths = self.component_paths();
        let found: Vec<(PathBuf, Vec<u8>)> = paths
            .iter()
            .filter_map(|p| std::fs::read(p).ok().map(|b| (p.clone(), b)))
            .collect();
        let relocated = if paths.len() > 1 {
            format!(
                " (looked for under CARGO_TARGET_DIR, {}, first)",
                paths[0].display()
            )
        } else {
            String::new()
        };
        let Some((path, bytes)) = self.pick(&found) else {
            let path = paths.last().expect("one path at least");
            let e = std::fs::read(path).err().unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "it appeared meanwhile")
            });
            return Err(anyhow::Error::new(e)).with_context(|| {
                format!(
                    "cannot read the component {}{relocated} (the path is relative to {}: copy the .wasm there with the manifest, or build it, e.g. `cargo build --release --target wasm32-wasip2 -p <its package>`; a build of unchanged source matches the pinned sha256)",
                    path.display(),
                    self.file.display()
                )
            });
        };
        if let Some((skipped, _)) = found.first().filter(|(p, _)| p != path) {
            tracing::warn!(
                used = %path.display(),
                skipped = %skipped.display(),
                manifest = %self.file.display(),
                "the component under CARGO_TARGET_DIR is not the one the manifest pins: the pinned copy beside the manifest runs (after a deliberate rebuild, `payhost pin-component`)"
            );
        }
        let (path, bytes) = (path.clone(), bytes.clone());
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&self.component.sha256) {
            bail!(
                "the component {}{relocated} has sha256 {actual}, but {} pins {}: this is not the file the manifest was published with (copy that file here, or build it from the source the manifest came with); `payhost pin-component` is only for your own deliberate change to that source",
                path.display(),
                self.file.display(),
                self.component.sha256
            );
        }
        if !is_component(&bytes) {
            if bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
                bail!(
                    "{} is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or make a component of it with `wasm-tools component new`)",
                    path.display()
                );
            }
            bail!(
                "{} is not a WebAssembly component (wrong binary header)",
                path.display()
            );
        }
        Ok(bytes)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The component-model binary header: magic, then version 0x0d and layer 1.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

/// Rewrites the `sha256 = "…"` line of the manifest's `[component]` table to the component's
/// current checksum. Returns the new checksum.
pub fn pin_component(manifest_path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest_path).with_context(|| {
        format!(
            "cannot read the plugin manifest {}",
            manifest_path.display()
        )
    })?;
    let mut m = parse(&text, manifest_path)?;
    m.base_dir = manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    // The newest build: under CARGO_TARGET_DIR when it is there (not the pinned copy).
    let paths = m.component_paths();
    let path = paths
        .iter()
        .find(|p| p.is_file())
        .unwrap_or(&paths[0])
        .clone();
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !is_component(&bytes) {
        bail!(
            "{} is not a WebAssembly component",
            m.component.path.display()
        );
    }
    // A cut-short or damaged file would be pinned and then refused by every start: said now.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&bytes)
        .map_err(|e| {
            anyhow::anyhow!(
                "{} is not a whole, valid WebAssembly component ({e}); nothing was pinned: build it again",
                path.display()
            )
        })?;
    let sum = sha256_hex(&bytes);
    let old = format!("sha256 = \"{}\"", m.component.sha256);
    if !text.contains(&old) {
        bail!("cannot find the line {old} in {}", manifest_path.display());
    }
    let new_text = text.replacen(&old, &format!("sha256 = \"{sum}\""), 1);
    crate::files::replace(manifest_path, &new_text)?;
    Ok(sum)
}

#[cfg(test)]
mod tests {
    /// A file that starts as a component but is cut short (a copy interrupted, a build killed) is
    /// refused, and the manifest keeps its checksum.
    #[test]
    fn a_cut_short_component_is_not_pinned() {
        let dir = std::env::temp_dir().join(format!("payhost-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend_from_slice(&[0x01, 0x40, 0x00]); // a section cut off in its middle
        std::fs::write(dir.join("cut.wasm"), &bytes).unwrap();
        let manifest = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testpay/plugin.toml"),
        )
        .unwrap();
        let start = manifest.find("path = ").unwrap();
        let end = start + manifest[start..].find('\n').unwrap();
        let manifest = format!(
            "{}path = \"cut.wasm\"{}",
            &manifest[..start],
            &manifest[end..]
        );
        std::fs::write(dir.join("plugin.toml"), &manifest).unwrap();
        let e = super::pin_component(&dir.join("plugin.toml")).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a whole, valid WebAssembly component"),
            "{e:#}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("plugin.toml")).unwrap(),
            manifest
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
