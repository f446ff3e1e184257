//! Sandbox escapes: a hostile component (`tests/hostile`) loops, hoards memory, asks for requests to
//! a host it may not reach (once, or without end), reads a file, or panics. The runtime stops each within the manifest's limits, answers a clear error, and
//! keeps serving other calls. Measured times are printed (`--no-capture`).

use conformance::host::temp_dir;
use conformance::target_dir;
use payhost::manifest::{sha256_hex, Manifest};
use payhost::runtime::plugin_api as types;
use payhost::runtime::{pairs, CallError, PluginRuntime};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

async fn runtime(fuel: u64, timeout_ms: u64) -> PluginRuntime {
    let wasm = target_dir().join("wasm32-wasip2/release/hostile_plugin.wasm");
    let bytes = std::fs::read(&wasm)
        .expect("build it: cargo build --release --target wasm32-wasip2 -p hostile-plugin");
    let dir = temp_dir("hostile");
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "id = \"hostile\"\nname = \"hostile\"\nversion = \"0.1.0\"\n[wit]\npackage = \"payhost:payment\"\nversion = \"0.2.0\"\nworld = \"payment-plugin\"\n\
             [component]\npath = \"{}\"\nsha256 = \"{}\"\n[outbound]\nallowed_hosts = [\"https://example.invalid\"]\n\
             [limits]\nmemory_mib = 16\ncall_timeout_ms = {timeout_ms}\nfuel_per_call = {fuel}\nmax_instances = 16\n",
            wasm.display(),
            sha256_hex(&bytes)
        ),
    )
    .unwrap();
    let manifest = Manifest::load(&dir.join("plugin.toml")).unwrap();
    PluginRuntime::load(
        &manifest,
        Some(&target_dir().join("payhost-test-cache")),
        payhost::net::Client::new(),
    )
    .await
    .unwrap()
}

fn order() -> types::PaymentRequest {
    types::PaymentRequest {
        product: types::Product::Wap,
        out_trade_no: "H1".into(),
        subject: "s".into(),
        total_fee: "1.00".into(),
        seller: None,
        return_url: "http://shop.example/r".into(),
        notify_url: "http://shop.example/n".into(),
        merchant_url: None,
        pay_expire: None,
        out_user: None,
        cashier_code: None,
        request_id: "h1".into(),
    }
}

async fn call(
    rt: &PluginRuntime,
    how: &str,
) -> (
    Result<Result<types::PaymentStarted, types::PluginError>, CallError>,
    Duration,
) {
    let started = Instant::now();
    let mut s = rt.session().await.unwrap();
    let policy = rt.base_policy();
    let r = s
        .start_payment(&policy, &pairs([("hostile", how)]), &order())
        .await;
    (r, started.elapsed())
}

async fn still_serves(rt: &PluginRuntime) {
    let (r, took) = call(rt, "ok").await;
    assert_eq!(r.unwrap().unwrap().redirect.url, "behaved");
    assert!(took < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_is_stopped_by_the_fuel_budget() {
    let rt = runtime(200_000_000, 10_000).await;
    let (r, took) = call(&rt, "loop").await;
    eprintln!("endless loop stopped after {took:?} (fuel_per_call = 200M)");
    assert!(matches!(r, Err(CallError::Cpu(200_000_000))), "{r:?}");
    assert!(took < Duration::from_secs(5));
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_is_stopped_by_the_wall_clock_when_fuel_is_plenty() {
    let rt = runtime(u64::MAX / 2, 300).await;
    let (r, took) = call(&rt, "loop").await;
    eprintln!("endless loop stopped after {took:?} (call_timeout_ms = 300)");
    assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
    assert!(
        // The deadline is counted from the instance's creation and tokio's timer wheel has 1 ms
        // steps: "about 300 ms", not "at least 300.000 ms" (a run stopped at 299.99 ms once).
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4_gib_allocation_hits_the_memory_cap() {
    let rt = runtime(2_000_000_000, 10_000).await;
    let (r, took) = call(&rt, "alloc").await;
    eprintln!("4 GiB allocation stopped after {took:?} (memory_mib = 16)");
    assert!(matches!(r, Err(CallError::Memory(16))), "{r:?}");
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_to_a_host_not_allowed_is_refused_before_a_socket() {
    let rt = runtime(200_000_000, 10_000).await;
    let (r, took) = call(&rt, "outbound").await;
    eprintln!("outbound request refused after {took:?}");
    match r {
        Ok(Err(types::PluginError::Transport(m))) => {
            assert!(
                m.contains("refused") && m.contains("not an allowed origin"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rt.net().refused.load(Ordering::Relaxed), 1);
    assert_eq!(rt.net().sent.load(Ordering::Relaxed), 0);
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flow_that_asks_for_requests_without_end_is_cut_off() {
    let rt = runtime(200_000_000, 10_000).await;
    let (r, _) = call(&rt, "endless").await;
    assert!(
        matches!(&r, Err(CallError::Protocol(m)) if m.contains("more than 4")),
        "{r:?}"
    );
    assert_eq!(rt.net().sent.load(Ordering::Relaxed), 0);
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_links_no_filesystem() {
    let rt = runtime(200_000_000, 10_000).await;
    let (r, _) = call(&rt, "fs").await;
    // The filesystem imports are linked to traps: reading a file ends the call, never succeeds.
    match r {
        Err(CallError::Trap(_)) => {}
        Ok(Err(types::PluginError::Transport(m))) => assert!(m.contains("no file"), "{m}"),
        other => panic!("the component must not read a file: {other:?}"),
    }
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_a_clear_error() {
    let rt = runtime(200_000_000, 10_000).await;
    let (r, _) = call(&rt, "panic").await;
    match r {
        Err(CallError::Trap(m)) => assert!(m.contains("panics on purpose"), "{m}"),
        other => panic!("{other:?}"),
    }
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_calls_are_served_while_one_runs_away() {
    let rt = std::sync::Arc::new(runtime(u64::MAX / 2, 1_500).await);
    let rt2 = rt.clone();
    let runaway = tokio::spawn(async move { call(&rt2, "loop").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..20 {
        still_serves(&rt).await;
    }
    assert!(
        !runaway.is_finished(),
        "the runaway call is still running while others are served"
    );
    let (r, _) = runaway.await.unwrap();
    assert!(matches!(r, Err(CallError::Timeout(_))));
}
