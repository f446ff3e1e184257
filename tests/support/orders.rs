//! Many orders at once, as the load-style suites need them (crash storms, lost-notify recovery,
//! replicas): created through the API by a few concurrent "shops", paid in the sandbox cashier by a
//! few concurrent "buyers".

use crate::alipay::cashier_token;
use crate::host::{get, post_form, send_json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Creates `count` payments `{prefix}00000…` (amounts 1.00, 1.01, …) for `merchant` through the API
/// at `base` with `workers` concurrent callers; returns their pay URLs in order.
pub async fn create_many(
    base: &str,
    merchant: &str,
    token: &str,
    prefix: &str,
    count: usize,
    workers: usize,
) -> Vec<String> {
    let pay_urls = Arc::new(Mutex::new(vec![String::new(); count]));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (pay_urls, next) = (pay_urls.clone(), next.clone());
        let (url, token, prefix) = (
            format!("{base}/v1/merchants/{merchant}/payments"),
            token.to_owned(),
            prefix.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let r = send_json(
                    "POST",
                    &url,
                    Some(&token),
                    &serde_json::json!({"out_trade_no": format!("{prefix}{i:05}"), "subject": "批量", "total_fee": format!("{}.{:02}", 1 + i / 100, i % 100), "return_url": "https://shop.example/r"}),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.text());
                pay_urls.lock().unwrap()[i] = r.json()["pay_url"].as_str().unwrap().to_owned();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(pay_urls)
        .expect("every worker finished")
        .into_inner()
        .unwrap()
}

/// Pays every pay URL in the sandbox cashier at `sandbox_base` with `workers` concurrent buyers,
/// each pausing `pace` between payments (so a storm can outlast its kills).
pub async fn pay_all(sandbox_base: &str, pay_urls: &[String], workers: usize, pace: Duration) {
    let pay_urls = Arc::new(pay_urls.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (pay_urls, next) = (pay_urls.clone(), next.clone());
        let cashier = format!("{sandbox_base}/sandbox/cashier/pay");
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pay_urls.len() {
                    return;
                }
                let page = get(&pay_urls[i], None).await;
                assert_eq!(page.status, 200, "{}", page.text());
                let token = cashier_token(&page.text());
                let r = post_form(&cashier, &format!("token={token}&buyer=13900001111")).await;
                assert!(r.status == 302 || r.status == 303, "{}", r.text());
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
