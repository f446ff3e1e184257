//! The wasmtime engine: pooling allocator, epoch interruption, and the on-disk cache of the
//! compiled component (the next start deserialises instead of compiling).

use anyhow::Result;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; CPU deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Linear memories per component instance (a wasip2 component has its main module's, and room
/// for one more).
const MEMORIES_PER_INSTANCE: u64 = 2;

pub fn new_engine(memory_bytes: usize, max_instances: u32) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        // A wasip2 component built by Rust has one main module plus small shims.
        .max_core_instances_per_component(16)
        .total_core_instances(max_instances * 16)
        .max_memories_per_component(MEMORIES_PER_INSTANCE as u32)
        .total_memories(max_instances * MEMORIES_PER_INSTANCE as u32)
        .max_tables_per_component(4)
        .total_tables(max_instances * 4)
        .total_stacks(max_instances)
        .max_memory_size(memory_bytes)
        // Reset freed slots in batches: one madvise round (and one TLB shootdown) per 32 slots
        // instead of one per request, which measurably lowers kernel time under load.
        .decommit_batch_size(32);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let slot = memory_slot(max_instances);
    let built = with_memory_slot(&mut config, slot, memory_bytes);
    match built {
        Err(e) if slot == WHOLE_MEMORY => {
            // An address-space limit (`ulimit -v`, some hosting plans) can refuse the pool's
            // reservation: the component then runs with bounds checks rather than not at all.
            tracing::warn!(error = %format!("{e:#}"), "the address space for whole-memory reservations was refused (is `ulimit -v` set?); the component runs with bounds checks, about 15 % slower");
            with_memory_slot(&mut config, CHECKED_MEMORY, memory_bytes).map_err(|e| {
                let pool_mib = u64::from(max_instances) * MEMORIES_PER_INSTANCE
                    * (memory_bytes as u64 >> 20);
                e.context(format!(
                    "the address-space limit (ulimit -v) is too low even for bounds-checked memories: the pool reserves {pool_mib} MiB ([limits] max_instances {max_instances} × {MEMORIES_PER_INSTANCE} memories × memory_mib {}); lower max_instances in plugin.toml (the reservation shrinks with it) or raise the limit",
                    memory_bytes >> 20
                ))
            })
        }
        built => built,
    }
    .map_err(|e| wt(e, "cannot create the wasmtime engine"))
}

fn with_memory_slot(
    config: &mut Config,
    (reservation, guard): (u64, u64),
    memory_bytes: usize,
) -> wasmtime::Result<Engine> {
    config.memory_reservation(reservation.max(memory_bytes as u64));
    config.memory_guard_size(guard);
    Engine::new(config)
}

/// A 32-bit linear memory reserved whole (4 GiB) with a guard behind it needs no bounds check
/// on its loads and stores: the guard pages trap instead. That is 12–17 % less time per component
/// call (`plugin_calls`, docs/PERFORMANCE.md). It is address space only: the slots stay
/// inaccessible until used, and `max_memory_size` still caps what a guest can grow to.
const WHOLE_MEMORY: (u64, u64) = (4 << 30, 32 << 20);

/// Explicit bounds checks with a small slot: for a pool so large that whole reservations would
/// take more than [`ADDRESS_BUDGET`].
const CHECKED_MEMORY: (u64, u64) = (0, 64 << 10);

/// The address space the pool's memories may reserve: a 16th of x86_64's 128 TiB user space.
const ADDRESS_BUDGET: u64 = 8 << 40;

/// The (reservation, guard) of each of the pool's memory slots.
fn memory_slot(max_instances: u32) -> (u64, u64) {
    let memories = u64::from(max_instances) * MEMORIES_PER_INSTANCE;
    let (reservation, guard) = WHOLE_MEMORY;
    if memories.saturating_mul(reservation + guard) <= ADDRESS_BUDGET {
        WHOLE_MEMORY
    } else {
        CHECKED_MEMORY
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as the engine lives.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("payhost-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("spawn the epoch thread");
}

fn cache_file(engine: &Engine, cache_dir: &Path, component_sha256: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    cache_dir.join(format!(
        "{}-{:016x}.cwasm",
        &component_sha256[..16],
        h.finish()
    ))
}

/// Where the compiled component came from, for logs and start-up measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    Compiled,
    Cache,
}

/// Makes sure `dir` may hold native code this process will load: a missing one is created
/// owner-only (0700); an existing one must be a directory owned by this user that nobody else
/// can write to (else another local user could put code there first). Refused otherwise.
pub fn private_cache_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let md = std::fs::metadata(dir)?;
        if !md.is_dir() {
            anyhow::bail!("{} is not a directory", dir.display());
        }
        owned_by_this_user(dir, &md)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// A cache file or directory must belong to this process's user and be writable by it alone.
#[cfg(unix)]
fn owned_by_this_user(path: &Path, md: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me {
        anyhow::bail!(
            "{} belongs to uid {}, not to this user (uid {me})",
            path.display(),
            md.uid()
        );
    }
    if md.mode() & 0o022 != 0 {
        anyhow::bail!(
            "{} is writable by other users (mode {:o}); make it owner-only (chmod 700)",
            path.display(),
            md.mode() & 0o7777
        );
    }
    Ok(())
}

/// Compiles the component, or loads it from `cache_dir` when a compatible artifact exists. A
/// cache directory that is not private to this user is not used at all (compiled every start).
pub fn load_component(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<(Component, CompileSource)> {
    let cache_dir = cache_dir.filter(|dir| match private_cache_dir(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "not using the compile cache: it is not private to this user");
            false
        }
    });
    if let Some(dir) = cache_dir {
        let path = cache_file(engine, dir, sha256);
        if path.exists() {
            // The artifact is native code: it is deserialised only when its bytes match the
            // sha256 written beside it, and from those very bytes (no second read of the file).
            match verified_cache(&path) {
                Ok(bytes) => {
                    // SAFETY: the bytes were written by `Component::serialize` of an engine with
                    // the same compatibility hash and match their recorded sha256.
                    match unsafe { Component::deserialize(engine, &bytes) } {
                        Ok(c) => return Ok((c, CompileSource::Cache)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable compile cache entry")
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring a compile cache entry that fails its integrity check")
                }
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| wt(e, "cannot compile the component"))?;
        if let Err(e) = write_cache(&component, &path) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the compile cache");
        }
        return Ok((component, CompileSource::Compiled));
    }
    Ok((
        Component::new(engine, bytes).map_err(|e| wt(e, "cannot compile the component"))?,
        CompileSource::Compiled,
    ))
}

/// `<artifact>.sha256`: the hex sha256 of the artifact's bytes.
fn sum_file(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".sha256");
    PathBuf::from(p)
}

/// The artifact's bytes, if they match the sha256 stored beside them.
fn verified_cache(path: &Path) -> Result<Vec<u8>> {
    use sha2::{Digest, Sha256};
    #[cfg(unix)]
    for p in [path.to_path_buf(), sum_file(path)] {
        owned_by_this_user(&p, &std::fs::symlink_metadata(&p)?)?;
    }
    let expected = std::fs::read_to_string(sum_file(path))
        .map_err(|e| anyhow::anyhow!("no readable {}: {e}", sum_file(path).display()))?;
    let bytes = std::fs::read(path)?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != expected.trim() {
        anyhow::bail!(
            "sha256 {actual} differs from the recorded {}",
            expected.trim()
        );
    }
    Ok(bytes)
}

/// Writes a file owner-only (0600 whatever the umask: a group-writable artifact is refused).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)?;
    Ok(())
}

/// Writes the artifact and its sum into the cache directory (checked private by
/// `load_component`).
fn write_cache(component: &Component, path: &Path) -> Result<()> {
    use sha2::{Digest, Sha256};
    let bytes = component
        .serialize()
        .map_err(|e| wt(e, "cannot serialise the component"))?;
    let sum = hex::encode(Sha256::digest(&bytes));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let tmp_sum = path.with_extension(format!("sumtmp{}", std::process::id()));
    write_private(&tmp, &bytes)?;
    write_private(&tmp_sum, sum.as_bytes())?;
    // The sum first: a reader that sees the new artifact also sees its sum (a reader that sees
    // the new sum with the old artifact recompiles, which is safe).
    std::fs::rename(&tmp_sum, sum_file(path))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// wasmtime's own error type, as an `anyhow` error with context.
pub fn wt(e: wasmtime::Error, context: &str) -> anyhow::Error {
    anyhow::anyhow!("{context}: {e:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_within_the_address_budget_reserves_whole_memories_and_a_larger_one_checks_bounds() {
        assert_eq!(memory_slot(128), WHOLE_MEMORY);
        assert_eq!(memory_slot(1_000), WHOLE_MEMORY);
        assert_eq!(memory_slot(1_100), CHECKED_MEMORY);
        assert_eq!(memory_slot(u32::MAX), CHECKED_MEMORY);
    }

    #[test]
    fn an_engine_with_whole_memories_still_caps_a_guests_memory() {
        // The pool refuses a memory larger than its cap whatever the reservation.
        let grow_by_64_pages = |cap: usize| {
            let engine = new_engine(cap, 4).expect("engine");
            // (module (memory (export "m") 1)
            //   (func (export "grow") (result i32) (memory.grow (i32.const 64))))
            let wasm: &[u8] = &[
                0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
                0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
                0x03, 0x02, 0x01, 0x00, // function 0 has type 0
                0x05, 0x03, 0x01, 0x00, 0x01, // memory: min 1 page
                0x07, 0x0c, 0x02, 0x01, b'm', 0x02, 0x00, 0x04, b'g', b'r', b'o', b'w', 0x00, 0x00,
                // code: i32.const 64, memory.grow, end
                0x0a, 0x09, 0x01, 0x07, 0x00, 0x41, 0xc0, 0x00, 0x40, 0x00, 0x0b,
            ];
            let module = wasmtime::Module::new(&engine, wasm).expect("module");
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_fuel(1_000_000).expect("fuel");
            store.set_epoch_deadline(1_000);
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
            let grow = instance
                .get_typed_func::<(), i32>(&mut store, "grow")
                .expect("grow");
            grow.call(&mut store, ()).expect("call")
        };
        // 1 page + 64 pages = 4.06 MiB: over a 1 MiB cap memory.grow answers -1; under an 8 MiB
        // one it answers the old size.
        assert_eq!(grow_by_64_pages(1 << 20), -1);
        assert_eq!(grow_by_64_pages(8 << 20), 1);
    }
}
