//! Two `payhost serve` replicas on one PostgreSQL, behind haproxy, all real processes on loopback
//! started by the test (`support::postgres`): the shop API and Alipay's notify through the
//! balancer, duplicate notifies spread over both replicas applied once, each webhook delivered
//! once by whichever replica leased it, merchants, admin sessions and merchant tokens made on one
//! replica used on the other, `/readyz` following the database; and the crash storm: 1,000
//! orders paid through the balancer while one replica is killed with `kill -9` again and again.

use conformance::alipay::{self, AlipayStub, Trade, MD5_KEY};
use conformance::host::{
    admin_login, config_head, free_port, get, post_form, request, send_json, spawn_payhost,
    temp_dir, Payhost, ADMIN_PASSWORD,
};
use conformance::postgres::{Balancer, PgCluster};
use conformance::stub::{Seen, StubServer};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "replica-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";
const HOOK_SECRET: &str = "shop-webhook-secret-0123";

/// PostgreSQL, haproxy and `n` replicas. The replicas' `public_url` is the balancer, as in a
/// deployment (Alipay's notifies come through it).
struct Replicas {
    pg: PgCluster,
    db: String,
    lb: Balancer,
    hosts: Vec<Payhost>,
}

impl Replicas {
    /// `tables`: the merchant (and other) tables after the head of each replica's config.
    fn start(name: &str, n: usize, tables: impl Fn(&str) -> String) -> Replicas {
        let pg = PgCluster::start(name);
        let db = name.replace('-', "_");
        let url = pg.create_database(&db);
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let lb = Balancer::start(name, &ports);
        let lb_base = lb.base();
        let mut hosts = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let dir = temp_dir(&format!("{name}-r{i}"));
            let config = config_head(*port, TOKEN, "")
                .replace(
                    "database = \"payhost.db\"",
                    &format!("database = \"{url}\"\ntrust_proxy = true"),
                )
                .replace(
                    &format!("public_url = \"http://127.0.0.1:{port}\""),
                    &format!("public_url = \"{lb_base}\""),
                )
                + &tables(&lb_base);
            hosts.push(Payhost::start(&dir, &config));
        }
        lb.wait_ready("/readyz");
        Replicas { pg, db, lb, hosts }
    }

    fn lb(&self, path: &str) -> String {
        format!("{}{path}", self.lb.base())
    }

    fn count(&self, sql: &str) -> i64 {
        self.pg.psql(&self.db, sql).parse().unwrap()
    }
}

fn trade<'a>(no: &'a str, fee: &'a str, notify_id: &'a str) -> Trade<'a> {
    Trade {
        out_trade_no: no,
        total_fee: fee,
        notify_id,
        seller_email: SELLER,
        seller_id: PARTNER,
        trade_status: "TRADE_SUCCESS",
    }
}

fn order(no: &str, fee: &str) -> serde_json::Value {
    json!({"out_trade_no": no, "subject": "测试商品", "total_fee": fee, "return_url": "https://shop.example/return"})
}

/// The shared poll ([`conformance::wait_for`]) of a plain check, with this file's 20 s.
async fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    conformance::wait_for(what, Duration::from_secs(20), async || f()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_behind_haproxy_on_postgres() {
    let alipay = AlipayStub::start().await;
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let (gw, verify, hook) = (alipay.gateway_url(), alipay.verify_url(), shop.url("/hook"));
    let r = Replicas::start("replicas", 2, |_| {
        format!(
            r#"
[webhooks]
retry_base_ms = 50
retry_max_ms = 400
timeout_ms = 2000

[merchants.shop]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{gw}"
notify_verify_url = "{verify}"
shop_webhook_url = "{hook}"
shop_webhook_secret = "{HOOK_SECRET}"
"#
        )
    });
    let (a, b) = (&r.hosts[0], &r.hosts[1]);
    for h in [a, b] {
        assert_eq!(get(&h.url("/readyz"), None).await.status, 200);
        assert_eq!(get(&h.url("/healthz"), None).await.status, 200);
    }
    assert_eq!(r.count("SELECT COUNT(*) FROM schema_migrations"), 8);

    // Create through the balancer; the same order again (the other replica) finds it.
    let created = send_json(
        "POST",
        &r.lb("/v1/merchants/shop/payments"),
        Some(TOKEN),
        &order("R1", "12.50"),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    for h in [a, b] {
        let again = send_json(
            "POST",
            &h.url("/v1/merchants/shop/payments"),
            Some(TOKEN),
            &order("R1", "12.50"),
        )
        .await;
        assert_eq!(again.status, 200, "{}", again.text());
    }

    // 64 concurrent duplicates: 16 straight to each replica, 32 through the balancer.
    alipay.issue("n-R1");
    let body = alipay::md5_notify_body(&trade("R1", "12.50", "n-R1"), MD5_KEY);
    let urls = [
        a.url("/alipay/shop/notify"),
        b.url("/alipay/shop/notify"),
        r.lb("/alipay/shop/notify"),
        r.lb("/alipay/shop/notify"),
    ];
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (url, body) = (urls[i % 4].clone(), body.clone());
        tasks.push(tokio::spawn(async move { post_form(&url, &body).await }));
    }
    for t in tasks {
        let reply = t.await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (200, "success"));
    }
    for h in [a, b] {
        let p = get(&h.url("/v1/merchants/shop/payments/R1"), Some(TOKEN))
            .await
            .json();
        assert_eq!(p["status"], "TRADE_SUCCESS", "seen by every replica");
        let outcomes: Vec<&str> = p["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes.len(), 64, "every notification stored");
        assert_eq!(outcomes.iter().filter(|o| **o == "applied").count(), 1);
        assert_eq!(outcomes.iter().filter(|o| **o == "duplicate").count(), 63);
    }
    assert_eq!(r.count("SELECT COUNT(*) FROM applied_notifications"), 1);

    // One transition, one webhook, delivered once by whichever replica leased it.
    let hooks = || {
        shop.requests()
            .into_iter()
            .filter(|s| s.path == "/hook")
            .collect::<Vec<_>>()
    };
    wait_for(|| !hooks().is_empty(), "the webhook").await;
    // More orders paid through the balancer: each event delivered exactly once.
    for i in 2..=20 {
        let no = format!("R{i}");
        let c = send_json(
            "POST",
            &r.lb("/v1/merchants/shop/payments"),
            Some(TOKEN),
            &order(&no, "1.00"),
        )
        .await;
        assert_eq!(c.status, 201);
        let nid = format!("n-{no}");
        alipay.issue(&nid);
        let n = post_form(
            &r.lb("/alipay/shop/notify"),
            &alipay::md5_notify_body(&trade(&no, "1.00", &nid), MD5_KEY),
        )
        .await;
        assert_eq!(n.text(), "success");
    }
    wait_for(|| hooks().len() >= 20, "20 webhooks").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ids: Vec<String> = hooks()
        .iter()
        .map(|s| s.header("x-payhost-event-id").unwrap())
        .collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 20, "one event per order");
    assert_eq!(ids.len(), 20, "each event delivered once: {ids:?}");
    assert_eq!(
        r.count("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL OR lease_until IS NOT NULL"),
        0
    );

    // A merchant saved through one replica is used by the other at once.
    let saved = send_json(
        "PUT",
        &a.url("/v1/merchants/newshop"),
        Some(TOKEN),
        &json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": "a@b.cn",
                "gateway_url": gw, "notify_verify_url": verify}),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.text());
    let seen = get(&b.url("/v1/merchants/newshop"), Some(TOKEN)).await;
    assert_eq!(seen.status, 200, "{}", seen.text());
    assert_eq!(seen.json()["seller_email"], "a@b.cn");
    let c = send_json(
        "POST",
        &b.url("/v1/merchants/newshop/payments"),
        Some(TOKEN),
        &order("N1", "3.00"),
    )
    .await;
    assert_eq!(
        c.status,
        201,
        "the other replica pays with it: {}",
        c.text()
    );

    // A merchant token made on one replica works on the other; revoked on the other, refused on
    // the first.
    let t = send_json(
        "POST",
        &a.url("/v1/merchants/shop/tokens"),
        Some(TOKEN),
        &json!({"label": "ecshop"}),
    )
    .await;
    assert_eq!(t.status, 201, "{}", t.text());
    let (tid, token) = (
        t.json()["id"].as_i64().unwrap(),
        t.json()["token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        get(&b.url("/v1/merchants/shop/payments/R1"), Some(&token))
            .await
            .status,
        200
    );
    let revoked = request(
        "DELETE",
        &b.url(&format!("/v1/merchants/shop/tokens/{tid}")),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Vec::new(),
    )
    .await;
    assert!(revoked.status < 300, "{}", revoked.text());
    assert_eq!(
        get(&a.url("/v1/merchants/shop/payments/R1"), Some(&token))
            .await
            .status,
        401
    );

    // `payhost token create` against the PostgreSQL config: usable through the balancer at once.
    let out = std::process::Command::new(conformance::host::payhost_binary())
        .args(["token", "create", "--merchant", "shop", "--config"])
        .arg(&a.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(cli_token.starts_with("phm_"), "{cli_token}");
    for _ in 0..2 {
        assert_eq!(
            get(&r.lb("/v1/merchants/shop/payments/R1"), Some(&cli_token))
                .await
                .status,
            200
        );
    }

    // An admin session made on one replica is valid on the other (sessions are in the database).
    let (cookie, _csrf) = admin_login(&a.url(""), ADMIN_PASSWORD).await;
    let page = request("GET", &b.url("/admin"), &[("cookie", &cookie)], Vec::new()).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"csrf\""), "logged in on B too");

    // The database hangs (frozen: a network black hole, a stuck server): /readyz says so within
    // its 1.5 s, where it waited for as long as the database hung; then answers again.
    let postmaster: String = std::fs::read_to_string(r.pg.dir.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    // The postmaster and its children (read from /proc: no pkill on a bare machine).
    let signal = |sig: &str| {
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid …: the comm may hold spaces, so read after its ')'.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        std::process::Command::new("kill")
            .arg(sig)
            .args(&pids)
            .status()
            .unwrap();
    };
    signal("-STOP");
    for h in &r.hosts {
        let asked = std::time::Instant::now();
        let status = get(&h.url("/readyz"), None).await.status;
        let took = asked.elapsed();
        assert_eq!(status, 503, "a frozen database is not ready");
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
    }
    signal("-CONT");
    for h in &r.hosts {
        conformance::wait_for("ready again", Duration::from_secs(20), async || {
            get(&h.url("/readyz"), None).await.status == 200
        })
        .await;
    }

    // The database goes away: /readyz says so (the balancer stops sending), /healthz still ok.
    let mut r = r;
    r.pg.stop();
    for h in &r.hosts {
        assert_eq!(get(&h.url("/readyz"), None).await.status, 503);
        assert_eq!(get(&h.url("/healthz"), None).await.status, 200);
        // The API says the database cannot be reached (come back), not that payhost failed.
        let r = get(&h.url("/v1/merchants/shop/payments/R-1"), Some(TOKEN)).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(
            r.json()["error"]["code"],
            "database_unavailable",
            "{}",
            r.text()
        );
    }
}

/// A small deterministic generator, seeded from the clock (the seed is printed to replay a run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

async fn retrying_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up on {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const ORDERS: usize = 1_000;
const KILLS: usize = 6;

/// The crash storm on PostgreSQL: 1,000 orders paid through the balancer (the sandbox gateway, a
/// separate process, sends the notifies to the balancer and retries them on Alipay's schedule,
/// sped up) while one replica is killed with `kill -9` at random moments (at least six times, and
/// for as long as the buyers pay) and restarted.
/// Afterwards: every order paid exactly once, every acknowledged notify stored, one webhook event
/// per order delivered (duplicates counted and bounded), nothing left in the outbox or leased.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_storm_on_postgres_behind_haproxy() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("replica crash storm seed {seed}");
    let dir = temp_dir("pg-storm-sandbox");
    let sandbox = spawn_payhost(
        &dir,
        &[
            "sandbox",
            "--md5-merchant",
            &format!("{PARTNER}:{MD5_KEY}"),
            "--speed",
            "600",
        ],
    );
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let (sb, hook) = (sandbox.base.clone(), shop.url("/hook"));
    let r = Replicas::start("pg-storm", 2, |_| {
        format!(
            r#"
[webhooks]
retry_base_ms = 50
retry_max_ms = 500
timeout_ms = 2000

[merchants.storm]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{sb}/sandbox/gateway"
notify_verify_url = "{sb}/sandbox/mapi"
shop_webhook_url = "{hook}"
shop_webhook_secret = "storm-webhook-secret"
"#
        )
    });
    let lb = r.lb("");
    let started = Instant::now();

    // 1. The shop creates 1,000 orders through the balancer.
    let pay_urls = conformance::orders::create_many(&lb, "storm", TOKEN, "S", ORDERS, 16).await;
    eprintln!(
        "{ORDERS} orders created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 2. Buyers pay all of them while one replica is killed and restarted, again and again.
    let Replicas {
        pg,
        db,
        lb: balancer,
        mut hosts,
    } = r;
    let mut victim = hosts.pop().unwrap();
    let survivor = hosts.pop().unwrap();
    let paying = Arc::new(AtomicBool::new(true));
    let killer = {
        let paying = paying.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = Lcg(seed);
            let (mut kills, mut while_paying) = (0, 0);
            // At least KILLS, and on while the buyers pay (bounded).
            while kills < KILLS || (paying.load(Ordering::Relaxed) && kills < 40) {
                std::thread::sleep(Duration::from_millis(100 + rng.next(400)));
                if paying.load(Ordering::Relaxed) {
                    while_paying += 1;
                }
                victim.kill9();
                kills += 1;
                std::thread::sleep(Duration::from_millis(rng.next(300)));
                victim.restart();
            }
            (victim, kills, while_paying)
        })
    };
    // Buyers are paced so the storm outlasts several kills.
    conformance::orders::pay_all(&sandbox.base, &pay_urls, 4, Duration::from_millis(15)).await;
    paying.store(false, Ordering::Relaxed);
    let (victim, kills, while_paying) = killer.await.unwrap();
    eprintln!(
        "{kills} kill -9s of one replica, {while_paying} while buyers were paying ({:.1} s in)",
        started.elapsed().as_secs_f64()
    );
    assert!(while_paying >= 5, "{while_paying} kills while paying");
    let count = |sql: &str| -> i64 { pg.psql(&db, sql).parse().unwrap() };

    // 3. Every order paid, exactly once.
    retrying_for("every order paid", Duration::from_secs(120), async || {
        (count("SELECT COUNT(*) FROM payments WHERE merchant_id = 'storm' AND status = 'TRADE_SUCCESS'")
            as usize
            == ORDERS)
            .then_some(())
    })
    .await;
    eprintln!(
        "all {ORDERS} paid {:.1} s in",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM applied_notifications"),
        ORDERS as i64
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM notification_results WHERE outcome = 'applied'"),
        ORDERS as i64,
        "exactly one applied notification per order"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM (SELECT out_trade_no FROM notification_results WHERE outcome = 'applied' GROUP BY out_trade_no HAVING COUNT(*) = 1) x"),
        ORDERS as i64
    );

    // Every notify the sandbox got `success` for is stored.
    let (notifies, acknowledged) = retrying_for(
        "every notify acknowledged",
        Duration::from_secs(120),
        async || {
            let state = get(&format!("{}/sandbox/state", sandbox.base), None)
                .await
                .json();
            let notifies = state["notifies"].as_array()?.clone();
            let acknowledged = notifies
                .iter()
                .filter(|n| n["acknowledged"] == true)
                .count();
            (acknowledged == ORDERS).then_some((notifies, acknowledged))
        },
    )
    .await;
    let sends: u64 = notifies.iter().map(|n| n["sends"].as_u64().unwrap()).sum();
    let stored = count("SELECT COUNT(*) FROM raw_notifications");
    eprintln!(
        "sandbox: {} notifies, {sends} sends, {acknowledged} acknowledged; stored {stored}",
        notifies.len()
    );
    assert!(stored as usize >= acknowledged);

    // One webhook event per order, nothing stuck (the dead replica's leases expire).
    retrying_for(
        "every webhook delivered",
        Duration::from_secs(60),
        async || {
            (count("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL") == 0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        count("SELECT COUNT(*) FROM webhook_outbox WHERE lease_until IS NOT NULL OR dead_at IS NOT NULL"),
        0,
        "no event leased or dead after the storm"
    );
    let mut per_event: HashMap<String, usize> = HashMap::new();
    let mut per_order: HashMap<String, HashSet<String>> = HashMap::new();
    for s in shop.requests() {
        let id = s.header("x-payhost-event-id").unwrap();
        let event: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(event["id"], id.as_str());
        assert_eq!(event["type"], "payment.paid");
        per_order
            .entry(event["out_trade_no"].as_str().unwrap().to_owned())
            .or_default()
            .insert(id.clone());
        *per_event.entry(id).or_default() += 1;
    }
    let deliveries: usize = per_event.values().sum();
    eprintln!(
        "webhooks: {} events, {deliveries} deliveries ({} repeated: a kill between the shop's 2xx and the commit) — {:.1} s in",
        per_event.len(),
        deliveries - per_event.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(per_event.len(), ORDERS, "one webhook event per order");
    assert!(per_order.values().all(|ids| ids.len() == 1));
    assert!(deliveries - per_event.len() <= 16 * kills);
    drop((victim, survivor, balancer));
}
