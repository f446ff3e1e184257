//! Per-call cost of the protocol, natively and through the component.
//!
//! "native": the plugin crate's logic compiled for the host, its flow driven by a loop that answers
//! each request in-process. "component": a fresh instance from the `InstancePre` (pooling
//! allocator) plus every step of the flow, as payhost does per request; the requests the flow asks
//! for go through payhost's `net` policy check and an in-process responder (no loopback HTTP).
//! "component_warm": the same steps on one instance kept across iterations: the wasm code alone.
//! "instantiate": a fresh instance and nothing else.
//!
//! Run: `cargo bench -p conformance --bench plugin_calls` (after building the component).

use alipay_wap_plugin::connector::{self, HttpRequest, HttpResponse, SendFailure, Step};
use alipay_wap_plugin::sign;
use criterion::{criterion_group, criterion_main, Criterion};
use payhost::manifest::Manifest;
use payhost::runtime::{pairs, PluginRuntime};
use std::path::Path;
use std::sync::Arc;

const KEY: &str = "10000000000000000000000000000000";
const PRIV: &str = include_str!("../../plugin/testdata/test_priv.pem");
const PUB: &str = include_str!("../../plugin/testdata/test_pub.pem");
const CIPHER: &str = include_str!("../../plugin/testdata/notify_cipher.b64");

/// Drives a native flow: answers the create call with `create_reply`, anything else with `true`.
fn drive<T>(
    first: Result<Step<T>, alipay_wap_plugin::model::PluginError>,
    create_reply: &[u8],
    resume: impl Fn(
        &[u8],
        Result<HttpResponse, SendFailure>,
    ) -> Result<Step<T>, alipay_wap_plugin::model::PluginError>,
) -> T {
    let mut step = first.unwrap();
    loop {
        match step {
            Step::Done(d) => return d,
            Step::Send(p) => {
                let body = answer(&p.request, create_reply);
                step = resume(
                    &p.continuation,
                    Ok(HttpResponse {
                        status: 200,
                        headers: Vec::new(),
                        body,
                    }),
                )
                .unwrap();
            }
        }
    }
}

fn answer(r: &HttpRequest, create_reply: &[u8]) -> Vec<u8> {
    if r.url.contains("rest.htm") {
        create_reply.to_vec()
    } else {
        b"true".to_vec()
    }
}

/// The gateway's answer to create.direct: MD5-signed, or RSA-signed with res_data encrypted to
/// the merchant's (test) key.
fn create_reply(rsa: bool) -> Vec<u8> {
    let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><direct_trade_create_res><request_token>20100830e8085e3e0868a466b822350ede5886e8</request_token></direct_trade_create_res>";
    let sec_id = if rsa { "0001" } else { "MD5" };
    let mut params: Vec<(String, String)> = [
        ("res_data", xml),
        ("service", "alipay.wap.trade.create.direct"),
        ("sec_id", sec_id),
        ("partner", "2088101122136241"),
        ("req_id", "1"),
        ("v", "2.0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let content = sign::sorted_link_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let signature = if rsa {
        sign::rsa_sign(&content, &sign::parse_private_key(PRIV).unwrap()).unwrap()
    } else {
        sign::md5_sign(&content, KEY)
    };
    if rsa {
        use base64::Engine as _;
        use rsa::pkcs8::DecodePublicKey;
        let key = rsa::RsaPublicKey::from_public_key_pem(PUB).unwrap();
        let mut out = Vec::new();
        for chunk in xml.as_bytes().chunks(117) {
            out.extend(
                key.encrypt(&mut rand_core::OsRng, rsa::Pkcs1v15Encrypt, chunk)
                    .unwrap(),
            );
        }
        params[0].1 = base64::engine::general_purpose::STANDARD.encode(out);
    }
    params.push(("sign".into(), signature));
    alipay_wap_plugin::transformers::form_encode(&params).into_bytes()
}

fn order() -> alipay_wap_plugin::model::PaymentRequest {
    alipay_wap_plugin::model::PaymentRequest {
        product: alipay_wap_plugin::model::Product::Wap,
        out_trade_no: "20140101000001".into(),
        subject: "测试商品".into(),
        total_fee: "0.01".into(),
        seller: None,
        return_url: "https://pay.example/alipay/shop/return".into(),
        notify_url: "https://pay.example/alipay/shop/notify".into(),
        merchant_url: None,
        pay_expire: None,
        out_user: None,
        cashier_code: None,
        request_id: "1".into(),
    }
}

fn wit_order() -> payhost::runtime::plugin_api::PaymentRequest {
    let o = order();
    payhost::runtime::plugin_api::PaymentRequest {
        product: payhost::runtime::plugin_api::Product::Wap,
        out_trade_no: o.out_trade_no,
        subject: o.subject,
        total_fee: o.total_fee,
        seller: o.seller,
        return_url: o.return_url,
        notify_url: o.notify_url,
        merchant_url: o.merchant_url,
        pay_expire: o.pay_expire,
        out_user: o.out_user,
        cashier_code: o.cashier_code,
        request_id: o.request_id,
    }
}

fn notify_data() -> String {
    "<notify><payment_type>1</payment_type><subject>测试商品</subject><trade_no>2014010100001000000000000001</trade_no><buyer_email>buyer@example.com</buyer_email><gmt_create>2014-01-01 12:00:00</gmt_create><notify_type>trade_status_sync</notify_type><quantity>1</quantity><out_trade_no>20140101000001</out_trade_no><notify_time>2014-01-01 12:00:10</notify_time><seller_id>1000000000000000</seller_id><trade_status>TRADE_FINISHED</trade_status><is_total_fee_adjust>N</is_total_fee_adjust><total_fee>0.01</total_fee><gmt_payment>2014-01-01 12:00:10</gmt_payment><seller_email>seller@example.com</seller_email><gmt_close>2014-01-01 12:00:10</gmt_close><price>0.01</price><buyer_id>2088000000000000</buyer_id><notify_id>0123456789abcdef0123456789abcdef00</notify_id><use_coupon>N</use_coupon></notify>".to_owned()
}

fn settings_md5() -> Vec<(String, String)> {
    [
        ("partner", "2088101122136241"),
        ("key", KEY),
        ("seller_email", "seller@example.com"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn settings_rsa() -> Vec<(String, String)> {
    [
        ("partner", "2088101122136241"),
        ("sign_type", "RSA"),
        ("seller_email", "seller@example.com"),
        ("private_key", PRIV),
        ("alipay_public_key", PUB),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn md5_form() -> Vec<(String, String)> {
    let data = notify_data();
    let content = sign::notify_link_string("alipay.wap.trade.create.direct", "1.0", "MD5", &data);
    vec![
        ("service".into(), "alipay.wap.trade.create.direct".into()),
        ("sign".into(), sign::md5_sign(&content, KEY)),
        ("sec_id".into(), "MD5".into()),
        ("v".into(), "1.0".into()),
        ("notify_data".into(), data),
    ]
}

fn rsa_form() -> Vec<(String, String)> {
    let data = notify_data();
    let content = sign::notify_link_string("alipay.wap.trade.create.direct", "1.0", "0001", &data);
    let key = sign::parse_private_key(PRIV).unwrap();
    vec![
        ("service".into(), "alipay.wap.trade.create.direct".into()),
        ("sign".into(), sign::rsa_sign(&content, &key).unwrap()),
        ("sec_id".into(), "0001".into()),
        ("v".into(), "1.0".into()),
        ("notify_data".into(), CIPHER.trim().to_owned()),
    ]
}

fn return_query() -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = [
        ("out_trade_no", "20140101000001"),
        ("request_token", "requestToken"),
        ("result", "success"),
        ("trade_no", "2014010100001000000000000001"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s = sign::sorted_link_string(q.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    q.push(("sign".into(), sign::md5_sign(&s, KEY)));
    q
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = Manifest::load(&root.join("plugin.toml")).expect("plugin.toml");
    let runtime = rt
        .block_on(PluginRuntime::load(
            &manifest,
            Some(&root.join("target/payhost-test-cache")),
            payhost::net::Client::new(),
        ))
        .expect("build the component first");
    let create_answer = Arc::new(std::sync::Mutex::new(bytes::Bytes::new()));
    let canned = create_answer.clone();
    runtime
        .net()
        .set_responder(Some(Arc::new(move |r: &payhost::net::Request| {
            if r.url.contains("rest.htm") {
                Some((200, canned.lock().unwrap().clone()))
            } else {
                Some((200, bytes::Bytes::from_static(b"true")))
            }
        })));
    // The manifest's origins (the production gateways the settings default to).
    let policy = runtime.base_policy();

    c.bench_function("instantiate/component", |b| {
        b.iter(|| rt.block_on(async { runtime.session().await.unwrap() }))
    });

    let (md5, md5_f, rsa, rsa_f, ret) = (
        settings_md5(),
        md5_form(),
        settings_rsa(),
        rsa_form(),
        return_query(),
    );
    // Signing alone (native only: the component exports whole protocol steps, not a sign call)…
    let content = sign::sorted_link_string(md5_f.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c.bench_function("md5_sign/native", |b| {
        b.iter(|| sign::md5_sign(&content, KEY))
    });
    let private = sign::parse_private_key(PRIV).unwrap();
    c.bench_function("rsa_sign/native", |b| {
        b.iter(|| sign::rsa_sign(&content, &private).unwrap())
    });

    // …and the protocol step that signs: start-payment = sign the create call, verify (and for
    // RSA decrypt) the token answer, sign the authAndExecute redirect.
    let wo = wit_order();
    for (name, settings, rsa) in [
        ("start_payment_md5", &md5, false),
        ("start_payment_rsa", &rsa, true),
    ] {
        let reply = create_reply(rsa);
        *create_answer.lock().unwrap() = bytes::Bytes::from(reply.clone());
        let mut g = c.benchmark_group(name);
        if rsa {
            g.sample_size(20);
        }
        let o = order();
        g.bench_function("native", |b| {
            b.iter(|| {
                drive(connector::start_payment(settings, &o), &reply, |c, r| {
                    connector::resume_payment(settings, c, r)
                })
            })
        });
        let ws = pairs(settings.clone());
        g.bench_function("component", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut s = runtime.session().await.unwrap();
                    s.start_payment(&policy, &ws, &wo).await.unwrap().unwrap()
                })
            })
        });
        g.finish();
    }

    let mut g = c.benchmark_group("verify_notify_md5");
    g.bench_function("native", |b| {
        b.iter(|| {
            drive(connector::verify_notification(&md5, &md5_f), b"", |c, r| {
                connector::resume_notification(&md5, c, r)
            })
        })
    });
    let (wm, wf) = (pairs(md5.clone()), pairs(md5_f.clone()));
    g.bench_function("component", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = runtime.session().await.unwrap();
                s.verify_notification(&policy, &wm, &wf)
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
    });
    let mut warm = rt.block_on(runtime.session()).unwrap();
    g.bench_function("component_warm", |b| {
        b.iter(|| {
            rt.block_on(async {
                warm.verify_notification(&policy, &wm, &wf)
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("verify_return_md5");
    g.bench_function("native", |b| {
        b.iter(|| connector::verify_return(&md5, &ret).unwrap())
    });
    let wr = pairs(ret.clone());
    g.bench_function("component", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = runtime.session().await.unwrap();
                s.verify_return(&wm, &wr).await.unwrap().unwrap()
            })
        })
    });
    // A fresh warm session: a session's wall-clock deadline counts from its creation.
    let mut warm = rt.block_on(runtime.session()).unwrap();
    g.bench_function("component_warm", |b| {
        b.iter(|| rt.block_on(async { warm.verify_return(&wm, &wr).await.unwrap().unwrap() }))
    });
    g.finish();

    let mut g = c.benchmark_group("verify_notify_rsa_7_blocks");
    g.sample_size(20);
    g.bench_function("native", |b| {
        b.iter(|| {
            drive(connector::verify_notification(&rsa, &rsa_f), b"", |c, r| {
                connector::resume_notification(&rsa, c, r)
            })
        })
    });
    let (wrs, wrf) = (pairs(rsa.clone()), pairs(rsa_f.clone()));
    g.bench_function("component", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = runtime.session().await.unwrap();
                s.verify_notification(&policy, &wrs, &wrf)
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(plugin_calls, benches);
criterion_main!(plugin_calls);
