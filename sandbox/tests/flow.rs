//! The sandbox in-process, through its public API only (as the conformance kit uses it): a signed
//! create call, the cashier, paying, the signed return, and the notify delivered to a merchant
//! server and retried until it answers `success`.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use payhost_sandbox::wire::{self, Keys};
use payhost_sandbox::{Faults, Sandbox, SandboxMerchant};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTNER: &str = "2088000000000042";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz012345";

async fn call(
    sandbox: &Arc<Sandbox>,
    method: &str,
    uri: &str,
    body: String,
) -> (u16, String, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let r = sandbox.handle(req).await;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn form(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn parse(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// A merchant's notify endpoint: records each body, answers `fail` to the first `fails`.
async fn merchant_server(fails: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = {
                                let mut v = s.lock().unwrap();
                                v.push(String::from_utf8_lossy(&body).into_owned());
                                v.len()
                            };
                            let answer = if n <= fails { "fail" } else { "success" };
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(answer),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_pay_return_and_notify_with_retries() {
    let keys = Keys::Md5(KEY.into());
    // Fast clock: the first retry (2 sandbox minutes) comes after 12 ms.
    let sandbox = Sandbox::new("/sandbox", "http://127.0.0.1:9/sandbox", 10_000.0);
    sandbox.add_merchant(SandboxMerchant {
        partner: PARTNER.into(),
        keys: keys.clone(),
        privileged: true,
    });
    let (notify_url, seen) = merchant_server(1).await;
    sandbox.start_delivery();

    let req_data = format!(
        "<direct_trade_create_req><subject>茶 &amp; 杯</subject><out_trade_no>T1</out_trade_no><total_fee>12.5</total_fee>\
         <seller_account_name>s@example.com</seller_account_name><call_back_url>http://shop.example/cb</call_back_url>\
         <notify_url>{notify_url}</notify_url></direct_trade_create_req>"
    );
    let mut params = create_params(&req_data);
    // A wrong signature is refused with 0007.
    let mut forged = params.clone();
    forged.push(("sign".into(), "0".repeat(32)));
    let (_, _, body) = call(&sandbox, "POST", "/sandbox/gateway", form(&forged)).await;
    assert!(
        get(&parse(&body), "res_error").contains("<code>0007</code>"),
        "{body}"
    );

    let sign = wire::sign_as_alipay(&keys, wire::presign_sorted(&params).as_bytes());
    params.push(("sign".into(), sign));
    let (status, _, body) = call(&sandbox, "POST", "/sandbox/gateway", form(&params)).await;
    assert_eq!(status, 200);
    let answer = parse(&body);
    let signed: Vec<(String, String)> = answer
        .iter()
        .filter(|(k, _)| k != "sign")
        .cloned()
        .collect();
    assert!(wire::verify_merchant(
        &keys,
        &wire::presign_sorted(&signed),
        get(&answer, "sign")
    ));
    let res_data =
        wire::parse_req_data(get(&answer, "res_data"), "direct_trade_create_res").unwrap();
    let token = res_data[0].1.clone();
    assert_eq!(sandbox.trade(&token).unwrap().total_fee, "12.50");

    // The buyer pays: a signed return to call_back_url, and the notify goes out.
    let (status, location, _) = call(
        &sandbox,
        "POST",
        "/sandbox/cashier/pay",
        format!("token={token}&buyer=13900001111"),
    )
    .await;
    assert_eq!(status, 302);
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, "http://shop.example/cb");
    let back = parse(query);
    assert_eq!(get(&back, "out_trade_no"), "T1");
    assert!(wire::verify_merchant(
        &keys,
        &wire::presign_sorted(&back),
        get(&back, "sign")
    ));

    let deadline = Instant::now() + Duration::from_secs(10);
    while !sandbox.state()["notifies"][0]["acknowledged"]
        .as_bool()
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "{}", sandbox.state());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "one `fail`, then the retry acknowledged");
    assert_eq!(sent[0], sent[1], "a retry resends the same notify");
    let notify = parse(&sent[0]);
    let data = get(&notify, "notify_data");
    assert!(data.contains("<trade_status>TRADE_SUCCESS</trade_status>"));
    assert!(wire::verify_merchant(
        &keys,
        &wire::presign_notify("alipay.wap.trade.create.direct", "1.0", "MD5", data),
        get(&notify, "sign")
    ));

    // Fault switches work in-process as over HTTP.
    sandbox.set_faults(Faults {
        drop_all_notifies: true,
        ..Faults::default()
    });
    assert!(sandbox.faults().drop_all_notifies);
    let (_, _, body) = call(&sandbox, "GET", "/sandbox/state", String::new()).await;
    assert!(body.contains("\"drop_all_notifies\":true"), "{body}");
}

/// The unsigned parameters of an `alipay.wap.trade.create.direct` call carrying `req_data`, with
/// a `req_id` of its own (the gateway refuses one it has seen).
fn create_params(req_data: &str) -> Vec<(String, String)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let req_id = format!(
        "r{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    [
        ("service", "alipay.wap.trade.create.direct"),
        ("format", "xml"),
        ("v", "2.0"),
        ("partner", PARTNER),
        ("req_id", req_id.as_str()),
        ("sec_id", "MD5"),
        ("req_data", req_data),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A signed `alipay.wap.trade.create.direct` for `out_trade_no`: the token, or the error code.
async fn create(
    sandbox: &Arc<Sandbox>,
    out_trade_no: &str,
    fee: &str,
    seller: &str,
) -> Result<String, String> {
    let req_data = format!(
        "<direct_trade_create_req><subject>tea</subject><out_trade_no>{out_trade_no}</out_trade_no>\
         <total_fee>{fee}</total_fee><seller_account_name>{seller}</seller_account_name>\
         <call_back_url>http://shop.example/cb</call_back_url></direct_trade_create_req>"
    );
    let mut params = create_params(&req_data);
    let keys = Keys::Md5(KEY.into());
    let sign = wire::sign_as_alipay(&keys, wire::presign_sorted(&params).as_bytes());
    params.push(("sign".into(), sign));
    let (_, _, body) = call(sandbox, "POST", "/sandbox/gateway", form(&params)).await;
    let answer = parse(&body);
    let error = get(&answer, "res_error");
    if !error.is_empty() {
        let code = error
            .split("<code>")
            .nth(1)
            .and_then(|c| c.split('<').next());
        return Err(code.unwrap_or(error).to_owned());
    }
    let res_data = wire::parse_req_data(get(&answer, "res_data"), "direct_trade_create_res")
        .unwrap_or_else(|e| panic!("{e}: {body}"));
    Ok(res_data[0].1.clone())
}

/// [WAP §2]: a partner's `req_id` is unique; a create call that repeats one is refused (0001),
/// also with another order in it, and the first one's token is unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_req_id_is_refused() {
    let sandbox = Sandbox::new("/sandbox", "http://127.0.0.1:9/sandbox", 1.0);
    sandbox.add_merchant(SandboxMerchant {
        partner: PARTNER.into(),
        keys: Keys::Md5(KEY.into()),
        privileged: true,
    });
    let keys = Keys::Md5(KEY.into());
    let signed = |out_trade_no: &str| {
        let req_data = format!(
            "<direct_trade_create_req><subject>tea</subject><out_trade_no>{out_trade_no}</out_trade_no>\
             <total_fee>1.00</total_fee><seller_account_name>s@example.com</seller_account_name>\
             <call_back_url>http://shop.example/cb</call_back_url></direct_trade_create_req>"
        );
        let mut params = create_params(&req_data);
        for p in params.iter_mut().filter(|(k, _)| k == "req_id") {
            p.1 = "same-id".into();
        }
        let sign = wire::sign_as_alipay(&keys, wire::presign_sorted(&params).as_bytes());
        params.push(("sign".into(), sign));
        form(&params)
    };
    for (no, refused) in [("R1", false), ("R2", true), ("R1", true)] {
        let (_, _, body) = call(&sandbox, "POST", "/sandbox/gateway", signed(no)).await;
        let error = get(&parse(&body), "res_error").to_owned();
        assert_eq!(!error.is_empty(), refused, "{no}: {body}");
        if refused {
            assert!(error.contains("<code>0001</code>"), "{error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_is_created_again_only_with_its_amount_and_seller_and_only_until_paid() {
    let sandbox = Sandbox::new("/sandbox", "http://127.0.0.1:9/sandbox", 1.0);
    sandbox.add_merchant(SandboxMerchant {
        partner: PARTNER.into(),
        keys: Keys::Md5(KEY.into()),
        privileged: true,
    });
    // Many other orders first: the lookup of an order's earlier trades is by order, not a scan.
    for n in 0..200 {
        create(&sandbox, &format!("other-{n}"), "1.00", "s@example.com")
            .await
            .unwrap();
    }
    let first = create(&sandbox, "T2", "12.50", "s@example.com")
        .await
        .unwrap();
    let again = create(&sandbox, "T2", "12.5", "s@example.com")
        .await
        .unwrap();
    assert_ne!(first, again, "each create answers a new token");
    assert_eq!(
        create(&sandbox, "T2", "13.00", "s@example.com").await,
        Err("0010".into()),
        "another amount for the same out_trade_no"
    );
    assert_eq!(
        create(&sandbox, "T2", "12.50", "t@example.com").await,
        Err("0010".into()),
        "another seller for the same out_trade_no"
    );
    let (status, _, _) = call(
        &sandbox,
        "POST",
        "/sandbox/cashier/pay",
        format!("token={again}&buyer=13900001111"),
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(
        create(&sandbox, "T2", "12.50", "s@example.com").await,
        Err("0010".into()),
        "a paid order cannot be created again, whichever token paid it"
    );
    // The order's query reports the trade that was paid, not the other token's.
    let mut query: Vec<(String, String)> = [
        ("service", "single_trade_query"),
        ("partner", PARTNER),
        ("_input_charset", "utf-8"),
        ("out_trade_no", "T2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sign = wire::sign_as_alipay(
        &Keys::Md5(KEY.into()),
        wire::presign_sorted(&query).as_bytes(),
    );
    query.push(("sign".into(), sign));
    query.push(("sign_type".into(), "MD5".into()));
    let (status, _, body) = call(
        &sandbox,
        "GET",
        &format!("/sandbox/mapi?{}", form(&query)),
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<trade_status>TRADE_SUCCESS</trade_status>"),
        "{body}"
    );
    assert!(create(&sandbox, "T3", "12.50", "s@example.com")
        .await
        .is_ok());
}
