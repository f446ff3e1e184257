//! Contract 0.4.0 against the sandbox, the component driven directly through payhost's runtime
//! (wasmtime): the legacy seller-confirmed refund (start-refund → the sandbox's password page →
//! the signed batch notify → verify-notification with its refund report), and the open
//! platform's refund, refund query, close and bill (downloaded, unpacked, parsed). The sandbox
//! runs in-process on 127.0.0.1 and signs with its own code, never the component's.

use conformance::alipay::cashier_token;
use conformance::host::{get, post_form};
use conformance::repo_root;
use conformance::stub::{Seen, StubServer};
use payhost::manifest::Manifest;
use payhost::net::{Origin, Policy};
use payhost::runtime::plugin_api::{self as api, PluginError};
use payhost::runtime::{pairs, CallError, Pairs, PluginRuntime};
use payhost_sandbox::openapi::OpenApiApp;
use payhost_sandbox::wire::Keys;
use payhost_sandbox::{Sandbox, SandboxMerchant};
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTNER: &str = "2088101122136241";
const KEY: &str = "10000000000000000000000000000000";
const APP_ID: &str = "2021000000000001";
const SELLER_ID: &str = "2088000000000002";

async fn runtime() -> PluginRuntime {
    let manifest = Manifest::load(&repo_root().join("plugin.toml")).expect("plugin.toml loads");
    PluginRuntime::load(&manifest, None, payhost::net::Client::new())
        .await
        .expect("the component loads")
}

fn testdata(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join("plugin/testdata/openapi").join(rel)).unwrap()
}

/// The sandbox on a free loopback port, with an MD5 legacy merchant and an OpenAPI app (the
/// reference's test keys), delivering notifies.
async fn sandbox() -> (Arc<Sandbox>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/sandbox", listener.local_addr().unwrap());
    let sb = Sandbox::new("/sandbox", &base, 1.0);
    sb.add_merchant(SandboxMerchant {
        partner: PARTNER.into(),
        keys: Keys::Md5(KEY.into()),
        privileged: true,
    });
    sb.add_openapi_app(OpenApiApp {
        app_id: APP_ID.into(),
        seller_id: SELLER_ID.into(),
        app_public: rsa::RsaPublicKey::from_public_key_pem(&testdata("keys/app_test_public.pem"))
            .unwrap(),
        alipay_private: rsa::RsaPrivateKey::from_pkcs8_pem(&testdata(
            "keys/alipay_test_private_pkcs8.pem",
        ))
        .unwrap(),
    });
    sb.start_delivery();
    conformance::testhost::spawn_sandbox(sb.clone(), listener);
    (sb, base)
}

fn policy(rt: &PluginRuntime, base: &str) -> Policy {
    let mut p = rt.base_policy();
    p.allow_explicitly(Origin::parse(base).unwrap());
    p
}

fn mapi_settings(base: &str) -> Pairs {
    pairs([
        ("partner", PARTNER),
        ("key", KEY),
        ("seller_email", "seller@example.com"),
        ("gateway_url", &format!("{base}/gateway")),
        ("notify_verify_url", &format!("{base}/mapi")),
        ("mapi_url", &format!("{base}/mapi")),
    ])
}

fn openapi_settings(base: &str) -> Pairs {
    pairs([
        ("api", "openapi"),
        ("app_id", APP_ID),
        (
            "app_private_key",
            &testdata("keys/app_test_private_pkcs8.pem"),
        ),
        (
            "alipay_public_key",
            &testdata("keys/alipay_test_public.pem"),
        ),
        ("seller_id", SELLER_ID),
        ("gateway", &format!("{base}/openapi/gateway.do")),
    ])
}

fn order(notify_url: &str, out_trade_no: &str, request_id: &str) -> api::PaymentRequest {
    api::PaymentRequest {
        product: api::Product::Wap,
        out_trade_no: out_trade_no.into(),
        subject: "退款测试".into(),
        total_fee: "25.00".into(),
        seller: None,
        return_url: "https://shop.example/return".into(),
        notify_url: notify_url.into(),
        merchant_url: None,
        pay_expire: Some(30),
        out_user: None,
        cashier_code: None,
        request_id: request_id.into(),
    }
}

/// The `name="…" value="…"` of a page's hidden input.
fn hidden(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in: {page}"))
        .to_owned()
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Today in Beijing, `YYYY-MM-DD` (the sandbox stamps its open-platform trades so).
fn beijing_today() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 8 * 3600;
    let days = t.div_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Legacy: pay through the sandbox's WAP cashier, refund part of it on the seller's password
/// page, and verify the batch notify the sandbox posts; the trade query shows the refund, and a
/// batch number already processed is refused.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_refund_through_the_password_page_and_the_batch_notify() {
    let rt = runtime().await;
    let (_sb, base) = sandbox().await;
    // The shop's notify endpoint: it answers neither `success` nor `fail` so the sandbox's
    // notify_verify keeps confirming the notify_id for this test.
    let shop = StubServer::start(|_: &Seen| (200, b"received".to_vec())).await;
    let settings = mapi_settings(&base);
    let policy = policy(&rt, &base);
    let mut s = rt.session().await.unwrap();
    let started = s
        .start_payment(
            &policy,
            &settings,
            &order(&shop.url("/notify"), "LR1", "lr1"),
        )
        .await
        .unwrap()
        .unwrap();
    let cashier = get(&started.redirect.url, None).await;
    let token = cashier_token(&cashier.text());
    let paid = post_form(&format!("{base}/cashier/pay"), &format!("token={token}")).await;
    assert_eq!(paid.status, 302, "{}", paid.text());
    let back = paid.header("location").unwrap();
    let trade_no: String = form_urlencoded::parse(back.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "trade_no")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    let refund = api::RefundRequest {
        out_trade_no: "LR1".into(),
        trade_no: trade_no.clone(),
        amount: "10.00".into(),
        total_fee: "25.00".into(),
        reason: "协商退款".into(),
        request_no: "20261203001".into(),
        request_time: "2026-12-03 10:00:00".into(),
        notify_url: shop.url("/refund-notify"),
    };
    let state = s
        .start_refund(&policy, &settings, &refund)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.status, api::RefundStatus::Pending);
    let confirm = state
        .confirm
        .expect("a legacy refund is confirmed by the seller");
    // The seller's page: signature checked by the sandbox, the password asked (demo: 123456).
    let page = get(&confirm.url, None).await;
    let text = page.text();
    assert_eq!(page.status, 200, "{text}");
    assert!(
        text.contains("支付密码") && text.contains("123456"),
        "{text}"
    );
    assert!(text.contains(&trade_no) && text.contains("10.00"), "{text}");
    let page_token = hidden(&text, "token");
    let wrong = post_form(
        &format!("{base}/mapi/refund/confirm"),
        &format!("token={page_token}&password=000000"),
    )
    .await;
    // A wrong password is refused on the same page: the seller still sees what is refunded.
    let again = wrong.text();
    assert!(again.contains("支付密码不正确"), "{again}");
    assert!(
        again.contains(&trade_no) && again.contains("LR1") && again.contains("10.00"),
        "{again}"
    );
    let done = post_form(
        &format!("{base}/mapi/refund/confirm"),
        &format!("token={page_token}&password=123456"),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.text().contains("退款已提交"), "{}", done.text());

    // The batch notify reaches notify_url; the component verifies it (sorted MD5 +
    // notify_verify at the sandbox) into a refund report.
    let seen = wait_for("the batch notify", || {
        shop.requests()
            .into_iter()
            .find(|r| r.path == "/refund-notify")
    })
    .await;
    let form = seen.params();
    assert!(form.contains(&("notify_type".into(), "batch_refund_notify".into())));
    let n = s
        .verify_notification(&policy, &settings, &form)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.out_trade_no, "");
    assert_eq!(n.trade_no, trade_no);
    assert_eq!(n.event, api::TradeEvent::PartiallyRefunded);
    assert_eq!(n.reply, "success");
    let report = n.refund.expect("the batch notify reports the refund");
    assert_eq!(report.request_no, "20261203001");
    assert_eq!(report.amount.as_deref(), Some("10.00"));
    assert!(report.succeeded, "{report:?}");
    // A forged copy (another amount) is refused.
    let forged: Pairs = form
        .iter()
        .map(|(k, v)| {
            let v = if k == "result_details" {
                v.replace("^10.00^", "^25.00^")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    assert!(matches!(
        s.verify_notification(&policy, &settings, &forged)
            .await
            .unwrap(),
        Err(PluginError::BadSignature(_))
    ));

    // single_trade_query shows the refund.
    let q = s
        .query_trade(&policy, &settings, "LR1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.refund_fee.as_deref(), Some("10.00"));
    assert_eq!(q.event, api::TradeEvent::PartiallyRefunded);

    // The same batch_no again: the sandbox refuses it, as Alipay does.
    let again = get(&confirm.url, None).await;
    assert!(
        again.text().contains("DUPLICATE_BATCH_NO"),
        "{}",
        again.text()
    );

    // The legacy API has no refund query, no close call, no bill here.
    match s
        .query_refund(&policy, &settings, "LR1", "20261203001")
        .await
        .unwrap()
    {
        Err(PluginError::InvalidOrder(e)) => assert_eq!(e.field, "request_no"),
        other => panic!("{other:?}"),
    }
    let closed = s
        .close_trade(&policy, &settings, "LR1")
        .await
        .unwrap()
        .unwrap();
    assert!(!closed.at_provider);
    match s
        .locate_bill(&policy, &settings, "2026-12-03")
        .await
        .unwrap()
    {
        Err(PluginError::InvalidSettings(e)) => assert_eq!(e[0].field, "api"),
        other => panic!("{other:?}"),
    }
}

/// Unpacks a zip the host downloaded (the host's job, not the component's).
fn unzip(bytes: &[u8]) -> Vec<api::BillFile> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut content = Vec::new();
            f.read_to_end(&mut content).unwrap();
            api::BillFile {
                name: f.name().unwrap().into_owned(),
                content,
            }
        })
        .collect()
}

/// Open platform: refund, its replay and discordant repeat, the refund query, close (paid,
/// unpaid, never seen), the day's bill with the payment and the refund, and a planted mismatch.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_refund_close_and_bill_against_the_sandbox() {
    let rt = runtime().await;
    let (_sb, base) = sandbox().await;
    let shop = StubServer::start(|_: &Seen| (200, b"success".to_vec())).await;
    let settings = openapi_settings(&base);
    let policy = policy(&rt, &base);
    let mut s = rt.session().await.unwrap();
    let open = async |no: &str| -> String {
        let started = rt
            .session()
            .await
            .unwrap()
            .start_payment(&policy, &settings, &order(&shop.url("/notify"), no, "x1"))
            .await
            .unwrap()
            .unwrap();
        let page = get(&started.redirect.url, None).await;
        assert_eq!(page.status, 200, "{}", page.text());
        cashier_token(&page.text())
    };
    let token = open("OR1").await;
    let paid = post_form(
        &format!("{base}/openapi/cashier/pay"),
        &format!("token={token}"),
    )
    .await;
    assert_eq!(paid.status, 302, "{}", paid.text());

    let refund = |amount: &str| api::RefundRequest {
        out_trade_no: "OR1".into(),
        trade_no: String::new(),
        amount: amount.into(),
        total_fee: "25.00".into(),
        reason: "部分退款".into(),
        request_no: "20261203000001".into(),
        request_time: "2026-12-03 10:00:00".into(),
        notify_url: String::new(),
    };
    let first = s
        .start_refund(&policy, &settings, &refund("10.00"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, api::RefundStatus::Succeeded);
    assert!(first.fund_change);
    assert_eq!(first.refunded_total.as_deref(), Some("10.00"));
    // The same request number again moves no money: pending, and the query confirms it.
    let replay = s
        .start_refund(&policy, &settings, &refund("10.00"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replay.status, api::RefundStatus::Pending);
    assert!(!replay.fund_change);
    let queried = s
        .query_refund(&policy, &settings, "OR1", "20261203000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queried.status, api::RefundStatus::Succeeded);
    let unknown = s
        .query_refund(&policy, &settings, "OR1", "20261203000009")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unknown.status, api::RefundStatus::Pending);
    // The same number with another amount is refused by the gateway.
    match s
        .start_refund(&policy, &settings, &refund("11.00"))
        .await
        .unwrap()
    {
        Err(PluginError::Gateway(g)) => assert_eq!(g.sub_code, "ACQ.DISCORDANT_REPEAT_REQUEST"),
        other => panic!("{other:?}"),
    }

    // Close: an unpaid trade closes at Alipay; one Alipay never saw is closed locally; a paid
    // one is refused by the gateway.
    open("OR2").await;
    let c = s
        .close_trade(&policy, &settings, "OR2")
        .await
        .unwrap()
        .unwrap();
    assert!(c.at_provider);
    let c = s
        .close_trade(&policy, &settings, "NEVER-SEEN")
        .await
        .unwrap()
        .unwrap();
    assert!(!c.at_provider && !c.detail.is_empty());
    assert!(matches!(
        s.close_trade(&policy, &settings, "OR1").await.unwrap(),
        Err(PluginError::Gateway(_))
    ));

    // The day's bill: located, downloaded (the host's GET), unpacked, parsed by the component.
    let today = beijing_today();
    let bill = async |s: &mut payhost::runtime::Session<'_>| -> Vec<api::BillEntry> {
        let at = s
            .locate_bill(&policy, &settings, &today)
            .await
            .unwrap()
            .unwrap();
        assert!(!at.empty);
        let zip = get(&at.url, None).await;
        assert_eq!(zip.status, 200);
        let files = unzip(&zip.body);
        assert_eq!(files.len(), 2);
        assert!(files
            .iter()
            .any(|f| f.name.ends_with("_业务明细(汇总).csv")));
        s.parse_bill(&files).await.unwrap().unwrap()
    };
    let entries = bill(&mut s).await;
    let mine: Vec<_> = entries.iter().filter(|e| e.out_trade_no == "OR1").collect();
    assert_eq!(mine.len(), 2, "{entries:?}");
    assert_eq!(mine[0].kind, api::BillEntryKind::Payment);
    assert_eq!(mine[0].amount, "25.00");
    assert_eq!(mine[1].kind, api::BillEntryKind::Refund);
    assert_eq!(mine[1].amount, "10.00");
    assert_eq!(mine[1].request_no, "20261203000001");
    assert_eq!(mine[0].trade_no, mine[1].trade_no);
    // A planted row the sandbox's trades do not have: the next bill shows it.
    let planted = post_form(
        &format!("{base}/openapi/bill-extra"),
        &format!("app_id={APP_ID}&bill_date={today}&trade_no=2026000000000000000000000099&out_trade_no=GHOST1&amount=9.99"),
    )
    .await;
    assert_eq!(planted.status, 200, "{}", planted.text());
    let entries = bill(&mut s).await;
    let ghost = entries.iter().find(|e| e.out_trade_no == "GHOST1").unwrap();
    assert_eq!(
        (ghost.kind, ghost.amount.as_str()),
        (api::BillEntryKind::Payment, "9.99")
    );
    // A day without business.
    let empty = s
        .locate_bill(&policy, &settings, "2016-01-01")
        .await
        .unwrap()
        .unwrap();
    assert!(empty.empty && empty.url.is_empty());
}

/// A component of an older contract has no refunds: the host says so before calling anything.
#[tokio::test]
async fn an_older_contract_has_no_refunds() {
    let manifest = Manifest::load(&repo_root().join("tests/testpay/plugin.toml")).unwrap();
    let testpay = PluginRuntime::load(&manifest, None, payhost::net::Client::new())
        .await
        .expect("TestPay (0.2.0) loads");
    let mut s = testpay.session().await.unwrap();
    assert!(!s.has_0_4_exports());
    let refund = api::RefundRequest {
        out_trade_no: "T1".into(),
        trade_no: String::new(),
        amount: "1.00".into(),
        total_fee: "1.00".into(),
        reason: String::new(),
        request_no: "1".into(),
        request_time: "2026-12-03 10:00:00".into(),
        notify_url: String::new(),
    };
    let policy = testpay.base_policy();
    let err = s
        .start_refund(&policy, &[], &refund)
        .await
        .expect_err("0.2.0 has no refunds");
    assert!(
        matches!(
            err,
            CallError::Unsupported {
                version: "0.2.0",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("contract version 0.2.0 has no refunds"),
        "{err}"
    );
    assert!(matches!(
        s.parse_bill(&[]).await,
        Err(CallError::Unsupported { .. })
    ));
}

/// A busy merchant's bill is read within the component's 16 MiB (plugin.toml's limits): lines
/// are decoded one at a time, never the whole file. 40,000 lines (about 7 MiB of GBK) used to
/// trap on memory; about 44,000 is the limit now (docs/EMBEDDING.md).
#[tokio::test]
async fn a_large_bill_is_read_within_the_components_memory() {
    const HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";
    let lines = 40_000;
    let mut text = format!("#支付宝业务明细查询\r\n{HEADER}\r\n");
    for i in 0..lines {
        text.push_str(&format!(
            "2024052022001400000{i:09}\t,ECS2024052{i:08}\t,交易,测试商品,2024-05-20 10:31:02,2024-05-20 10:31:05,,,,,tes***@example.com,88.88,88.88,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.53,0.00,\r\n"
        ));
    }
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    assert!(gbk.len() > 3 << 20, "{} bytes", gbk.len());
    let rt = runtime().await;
    let mut s = rt.session().await.unwrap();
    let entries = s
        .parse_bill(&[api::BillFile {
            name: "20880000000000020156_20240520_业务明细.csv".into(),
            content: gbk.into_owned(),
        }])
        .await
        .expect("no trap")
        .expect("a bill");
    assert_eq!(entries.len(), lines);
    assert_eq!(
        entries[lines - 1].out_trade_no,
        format!("ECS2024052{:08}", lines - 1)
    );
}
