//! When Alipay is down, slow or answers garbage: payhost (its real router, in the test process)
//! answers every request with a clear error within the configured time limit, stores every notification, asks Alipay
//! to retry what it could not confirm, and keeps serving.

use conformance::alipay::{md5_notify_body, signed_create_reply, Trade, MD5_KEY};
use conformance::host::{config_head, free_port, get, post_form, send_json, temp_dir, Reply};
use conformance::stub::{Seen, StubServer};
use conformance::testhost::TestHost;
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "faults-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";
/// `[plugin] call_timeout_ms` of these tests: outbound waits end at 4/5 of it.
const CALL_TIMEOUT_MS: u64 = 1_000;

struct World {
    host: TestHost,
    gateway: StubServer,
}

/// A gateway that answers create calls and `notify_verify` correctly.
fn healthy(seen: &Seen) -> (u16, Vec<u8>) {
    if seen.path == "/gateway.do" {
        return (200, b"true".to_vec());
    }
    let params = seen.params();
    let req_id = seen.param("req_id").unwrap_or_default();
    (
        200,
        signed_create_reply(&params, &format!("token-{req_id}"), MD5_KEY),
    )
}

async fn world(name: &str) -> World {
    let gateway = StubServer::start(healthy).await;
    let closed = free_port();
    let dir = temp_dir(name);
    let config = |port| {
        config_head(port, TOKEN, &format!("call_timeout_ms = {CALL_TIMEOUT_MS}"))
            + &format!(
                r#"
[merchants.shop]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{gw}"
notify_verify_url = "{verify}"

[merchants.down]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "http://127.0.0.1:{closed}/service/rest.htm"
notify_verify_url = "http://127.0.0.1:{closed}/gateway.do"
"#,
                gw = gateway.url("/service/rest.htm"),
                verify = gateway.url("/gateway.do"),
            )
    };
    World {
        host: TestHost::start(&dir, config).await,
        gateway,
    }
}

async fn create(w: &World, merchant: &str, no: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let r = send_json(
        "POST",
        &w.host.url(&format!("/v1/merchants/{merchant}/payments")),
        Some(TOKEN),
        &json!({"out_trade_no": no, "subject": "故障", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
    )
    .await;
    (r, started.elapsed())
}

fn error_code(r: &Reply) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_owned()
}

fn message(r: &Reply) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn notify(w: &World, merchant: &str, no: &str, notify_id: &str) -> (Reply, Duration) {
    let body = md5_notify_body(
        &Trade {
            out_trade_no: no,
            total_fee: "1.00",
            notify_id,
            seller_email: SELLER,
            seller_id: PARTNER,
            trade_status: "TRADE_SUCCESS",
        },
        MD5_KEY,
    );
    let started = Instant::now();
    let r = post_form(&w.host.url(&format!("/alipay/{merchant}/notify")), &body).await;
    (r, started.elapsed())
}

async fn status(w: &World, merchant: &str, no: &str) -> String {
    get(
        &w.host
            .url(&format!("/v1/merchants/{merchant}/payments/{no}")),
        Some(TOKEN),
    )
    .await
    .json()["status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_that_is_down_fails_fast_and_clearly() {
    let w = world("gw-down").await;
    let (r, took) = create(&w, "down", "D1").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(error_code(&r), "gateway_unreachable", "{}", r.text());
    assert!(!message(&r).is_empty());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    eprintln!(
        "gateway down: 502 gateway_unreachable in {took:?}: {}",
        message(&r)
    );

    // A notify whose notify_verify cannot be reached: stored, not acknowledged (Alipay retries).
    let (r, took) = notify(&w, "down", "D1", "n-down").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_ne!(r.text(), "success");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let n = get(&w.host.url("/v1/merchants/down/notifications"), Some(TOKEN))
        .await
        .json();
    assert_eq!(
        n["notifications"][0]["outcome"], "verify_unreachable",
        "{n}"
    );

    // The rest of the host is unaffected.
    let (r, _) = create(&w, "shop", "OK1").await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_gateway_times_out_within_the_limit_and_nothing_hangs() {
    let w = world("gw-slow").await;
    w.gateway.delay(Duration::from_millis(3 * CALL_TIMEOUT_MS));
    // 16 shops at once against the slow gateway: each gets a 504 near the limit.
    let mut calls = Vec::new();
    for i in 0..16 {
        let url = w.host.url("/v1/merchants/shop/payments");
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = send_json(
                "POST",
                &url,
                Some(TOKEN),
                &json!({"out_trade_no": format!("SLOW{i}"), "subject": "慢", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
            )
            .await;
            (r, started.elapsed())
        }));
    }
    // Meanwhile the host answers other requests at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(get(&w.host.url("/healthz"), None).await.status, 200);
    let health = started.elapsed();
    assert!(
        health < Duration::from_millis(300),
        "healthz took {health:?}"
    );
    let mut slowest = Duration::ZERO;
    for c in calls {
        let (r, took) = c.await.unwrap();
        assert_eq!(r.status, 504, "{}", r.text());
        assert_eq!(error_code(&r), "gateway_timeout", "{}", r.text());
        assert!(
            took >= Duration::from_millis(CALL_TIMEOUT_MS * 7 / 10)
                && took < Duration::from_millis(CALL_TIMEOUT_MS * 2),
            "took {took:?}"
        );
        slowest = slowest.max(took);
    }
    eprintln!(
        "slow gateway: 16 × 504 gateway_timeout, slowest {slowest:?}, healthz meanwhile {health:?}"
    );

    // A slow notify_verify: the notify is stored and Alipay asked to retry; once the gateway is
    // quick again the retry pays the order, once.
    w.gateway.delay(Duration::ZERO);
    let (r, _) = create(&w, "shop", "SLOWN").await;
    assert_eq!(r.status, 201, "{}", r.text());
    w.gateway.delay(Duration::from_millis(3 * CALL_TIMEOUT_MS));
    let (r, took) = notify(&w, "shop", "SLOWN", "n-slow").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        took < Duration::from_millis(CALL_TIMEOUT_MS * 2),
        "took {took:?}"
    );
    assert_eq!(status(&w, "shop", "SLOWN").await, "WAIT_BUYER_PAY");
    w.gateway.delay(Duration::ZERO);
    let (r, _) = notify(&w, "shop", "SLOWN", "n-slow").await;
    assert_eq!((r.status, r.text().as_str()), (200, "success"));
    assert_eq!(status(&w, "shop", "SLOWN").await, "TRADE_SUCCESS");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_from_the_gateway_is_a_clear_502_never_a_crash() {
    let w = world("gw-garbage").await;
    let huge = vec![b'a'; 4 << 20];
    let cases: Vec<(&str, u16, Vec<u8>)> = vec![
        ("random bytes", 200, (0..=255u8).cycle().take(3000).collect()),
        ("an HTML error page", 200, b"<html><body>502 Bad Gateway</body></html>".to_vec()),
        ("truncated XML", 200, b"res_data=%3C%3Fxml+version%3D%221.0%22%3F%3E%3Cdirect_trade_create_res%3E%3Crequest_tok".to_vec()),
        ("an empty body", 200, Vec::new()),
        ("4 MiB of nothing", 200, huge),
        ("an unsigned token", 200, b"res_data=%3Cdirect_trade_create_res%3E%3Crequest_token%3Et%3C%2Frequest_token%3E%3C%2Fdirect_trade_create_res%3E&sign=00000000000000000000000000000000".to_vec()),
        // No sign at all (Alipay signs every successful answer): anybody's token.
        ("a token without a sign", 200, b"res_data=%3Cdirect_trade_create_res%3E%3Crequest_token%3Et%3C%2Frequest_token%3E%3C%2Fdirect_trade_create_res%3E&v=2.0".to_vec()),
        ("HTTP 500", 500, b"Internal Server Error".to_vec()),
        ("HTTP 503", 503, Vec::new()),
    ];
    for (i, (what, status, body)) in cases.into_iter().enumerate() {
        w.gateway.answer(move |_: &Seen| (status, body.clone()));
        let (r, took) = create(&w, "shop", &format!("G{i}")).await;
        assert_eq!(r.status, 502, "{what}: {}", r.text());
        let code = error_code(&r);
        assert!(
            code.starts_with("gateway_") || code == "plugin_failed",
            "{what}: {code}"
        );
        assert!(!message(&r).is_empty(), "{what}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
        eprintln!("{what}: 502 {code} in {took:?}: {}", message(&r));
    }

    // notify_verify answering anything but `true`: not confirmed, stored, retried later.
    w.gateway.answer(healthy);
    let (r, _) = create(&w, "shop", "GN").await;
    assert_eq!(r.status, 201, "{}", r.text());
    for (i, answer) in ["<html>error</html>", "", "TRUE but not quite", "false"]
        .into_iter()
        .enumerate()
    {
        w.gateway.answer(move |s: &Seen| {
            if s.path == "/gateway.do" {
                (200, answer.as_bytes().to_vec())
            } else {
                healthy(s)
            }
        });
        let (r, _) = notify(&w, "shop", "GN", &format!("n-garbage-{i}")).await;
        assert_eq!(r.status, 503, "{answer:?}: {}", r.text());
        assert_eq!(status(&w, "shop", "GN").await, "WAIT_BUYER_PAY");
    }
    let n = get(&w.host.url("/v1/merchants/shop/notifications"), Some(TOKEN))
        .await
        .json();
    let outcomes: Vec<&str> = n["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 4, "every notification stored: {n}");
    assert!(
        outcomes.iter().all(|o| *o == "not_confirmed"),
        "{outcomes:?}"
    );

    // And the host is fine afterwards.
    w.gateway.answer(healthy);
    let (r, _) = create(&w, "shop", "AFTER").await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(get(&w.host.url("/healthz"), None).await.status, 200);
}
