//! Shared helpers of the conformance tests: where the repository is, a stub HTTP server on
//! 127.0.0.1 that records what it receives, and the test keys.

pub mod alipay;
pub mod child;
pub mod host;
pub mod orders;
pub mod postgres;
pub mod stub;
pub mod testhost;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it holds; fails the test naming `what` once `within` has passed.
pub async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the repository), else
/// `<repo>/target`. Built binaries and components are found here.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => repo_root().join(d),
        _ => repo_root().join("target"),
    }
}

/// The public 1024-bit test key pair of the protocol reference's vectors.
pub const TEST_PRIVATE_KEY: &str = include_str!("../../plugin/testdata/test_priv.pem");
pub const TEST_PUBLIC_KEY: &str = include_str!("../../plugin/testdata/test_pub.pem");
