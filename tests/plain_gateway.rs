//! payhost against an independent gateway that reads request bodies by `Content-Length` only:
//! `tests/clients/plain_gateway.py` (Python's http.server, HTTP/1.0, written from the protocol
//! reference alone, MD5 signing of its own). It plays the gateway and `notify_verify`: create,
//! the cashier, pay, notify — all must work, and every create call must arrive with
//! `Content-Length` and a body (a chunked upload reads as an empty body there).

use conformance::child::PortServer;
use conformance::host::{config_head, get, send_json, temp_dir};
use conformance::repo_root;
use conformance::testhost::TestHost;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "plain-gateway-token-0123456789";
const PARTNER: &str = "2088101122136241";
const KEY: &str = "plain000000000000000000000000000";

fn start_gateway() -> PortServer {
    let mut command = Command::new("python3");
    command
        .arg(repo_root().join("tests/clients/plain_gateway.py"))
        .args(["--partner", PARTNER, "--key", KEY]);
    PortServer::spawn(command, "the plain Python gateway")
}

#[tokio::test(flavor = "multi_thread")]
async fn create_pay_and_notify_through_a_content_length_only_gateway() {
    let gw = start_gateway();
    let dir = temp_dir("plain-gw");
    let config = |port| {
        config_head(port, TOKEN, "")
            + &format!(
                r#"
[merchants.plain]
partner = "{PARTNER}"
key = "{KEY}"
seller_email = "seller@example.com"
gateway_url = "{gw}/service/rest.htm"
notify_verify_url = "{gw}/gateway.do"
"#,
                gw = gw.base
            )
    };
    let host = TestHost::start(&dir, config).await;

    for (i, fee) in ["0.01", "12.50", "99999.99"].iter().enumerate() {
        let no = format!("PLAIN{i}");
        let r = send_json(
            "POST",
            &host.url("/v1/merchants/plain/payments"),
            Some(TOKEN),
            &serde_json::json!({"out_trade_no": no, "subject": "纯文本 & <网关>", "total_fee": fee, "return_url": "https://shop.example/r"}),
        )
        .await;
        assert_eq!(
            r.status,
            201,
            "create through the plain gateway: {}",
            r.text()
        );
        let pay_url = r.json()["pay_url"].as_str().unwrap().to_owned();
        assert!(pay_url.starts_with(&gw.base), "{pay_url}");
        // The cashier (authAndExecute, its signature checked by the gateway), then pay.
        let cashier = get(&pay_url, None).await;
        assert_eq!(cashier.status, 200, "{}", cashier.text());
        let token = cashier
            .text()
            .split("token=")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a pay link")
            .to_owned();
        let paid = get(&format!("{}/pay?token={token}", gw.base), None).await;
        assert!(paid.text().contains("success"), "{}", paid.text());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = get(
                &host.url(&format!("/v1/merchants/plain/payments/{no}")),
                Some(TOKEN),
            )
            .await
            .json();
            if p["status"] == "TRADE_SUCCESS" {
                assert_eq!(p["total_fee"], *fee);
                break;
            }
            assert!(Instant::now() < deadline, "not paid: {p}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let log = get(&format!("{}/log", gw.base), None).await.json();
    eprintln!("plain gateway saw: {log}");
    assert_eq!(log["create_calls"], 3);
    assert_eq!(
        log["content_length_seen"], 3,
        "every create call has Content-Length"
    );
    assert_eq!(log["chunked_seen"], 0);
    assert_eq!(log["create_bodies_empty"], 0);
    assert_eq!(log["verify_calls"], 3);
    assert_eq!(log["notifies_acknowledged"], 3);
}
