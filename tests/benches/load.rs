//! The load benchmark: `cargo bench -p conformance --bench load [-- OPTIONS]`.
//!
//! Starts the release `payhost serve` (store on disk, `synchronous=FULL`), a `payhost sandbox`
//! gateway and a local `notify_verify` stub, then drives closed-loop load over keep-alive
//! connections at each concurrency (default 1, 16, 64), each for `--seconds` (default 5):
//!
//! * `notify`: `POST /notify/load` with distinct, correctly signed MD5 notifies, each for
//!   its own unpaid order (seeded into the database before the host starts); counted as confirmed
//!   only when the host answers `success` and, at the end, the store shows that many paid orders.
//! * `payments`: `POST /v1/merchants/load/payments` against the sandbox gateway (create.direct
//!   with a signed, parsed token answer).
//! * `--php`: the same notifies against the PHP peer (`tests/php/peer/notify.php`, `php -S` with
//!   `PHP_CLI_SERVER_WORKERS`), for the ratio.
//!
//! * `--floor`: the same notifies against a minimal native handler inside the benchmark (hyper,
//!   the MD5 check, one `notify_verify` call to the same stub, one SQLite `synchronous=FULL`
//!   commit with group commit; no component, no dedupe rules, no outbox), for payhost/floor.
//! * `--rsa-flood`: the shop API's payment creation (one at a time) idle, then while 64
//!   connections send garbage RSA notifies (`notify_data` of 32 RSA blocks, or `--flood-blocks
//!   N`; a signature that never verifies) to an RSA merchant; prints both p50/p99/max and the goal (p99 ≤ 2× idle, no
//!   call over 1 s). SQLite only.
//!
//! Prints throughput, p50/p90/p99/max latency, the host's RSS idle and under load, the number of
//! paid orders the store holds, and the notify ratios payhost/PHP and payhost/floor per level.
//! Options: `--seconds N`, `--concurrency 1,16,64`, `--only notify|payments|php|floor|rsa-flood`,
//! `--php`, `--floor`, `--rsa-flood`, `--flood-blocks N`, `--database sqlite,postgres` (each store in turn, in the
//! same run; PostgreSQL is a cluster the benchmark starts, as the tests do) and `--replicas 1,2`
//! (with PostgreSQL: that many `payhost serve` replicas, behind haproxy when more than one).
//! CI runs the short form `--seconds 1 --concurrency 16 --floor --rsa-flood` (scripts/test): a
//! benchmark run, not a timed assertion.

use bytes::Bytes;
use conformance::alipay::{encrypt_to_test_key, form_encode, md5_notify_body, Trade, MD5_KEY};
use conformance::host::{config_head, free_port, spawn_payhost, temp_dir, wait_port, Payhost};
use conformance::repo_root;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "load-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";

struct Options {
    seconds: u64,
    concurrency: Vec<usize>,
    notify: bool,
    payments: bool,
    php: bool,
    floor: bool,
    rsa_flood: bool,
    /// `--flood-blocks N`: RSA blocks in each flood notify's `notify_data` (default 32, over the
    /// component's cap of 16; 16 is the most it decrypts).
    flood_blocks: usize,
    /// `--database sqlite,postgres`: the stores to measure, one after the other in this run.
    databases: Vec<String>,
    /// `--replicas 1,2`: with PostgreSQL, how many replicas (more than one: behind haproxy).
    replicas: Vec<usize>,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 5,
        concurrency: vec![1, 16, 64],
        notify: true,
        payments: true,
        php: false,
        floor: false,
        rsa_flood: false,
        flood_blocks: 32,
        databases: vec!["sqlite".into()],
        replicas: vec![1],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => {
                o.seconds = value().parse().expect("--seconds: a whole number");
                i += 1;
            }
            "--concurrency" => {
                o.concurrency = value()
                    .split(',')
                    .map(|c| c.trim().parse().expect("--concurrency: e.g. 1,16,64"))
                    .collect();
                i += 1;
            }
            "--php" => o.php = true,
            "--floor" => o.floor = true,
            "--rsa-flood" => o.rsa_flood = true,
            "--flood-blocks" => {
                o.flood_blocks = value().parse().expect("--flood-blocks: a whole number");
                i += 1;
            }
            "--database" => {
                o.databases = value().split(',').map(|d| d.trim().to_owned()).collect();
                assert!(
                    o.databases.iter().all(|d| d == "sqlite" || d == "postgres"),
                    "--database: sqlite, postgres or both (sqlite,postgres)"
                );
                i += 1;
            }
            "--replicas" => {
                o.replicas = value()
                    .split(',')
                    .map(|c| c.trim().parse().expect("--replicas: e.g. 1,2"))
                    .collect();
                i += 1;
            }
            "--only" => {
                let v = value();
                o.notify = v == "notify";
                o.payments = v == "payments";
                o.php = v == "php";
                o.floor = v == "floor";
                o.rsa_flood = v == "rsa-flood";
                i += 1;
            }
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
        i += 1;
    }
    o
}

/// What one load level measured.
struct Stats {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }

    fn line(&self, what: &str, c: usize) -> String {
        format!(
            "{what:<9} c={c:<3} {:>8.0} ok/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} ok, {} failed in {:.1} s)",
            self.ok as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
            self.percentile(1.0),
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64()
        )
    }
}

type MakeRequest = Arc<dyn Fn(u64) -> Option<http::Request<Full<Bytes>>> + Send + Sync>;
type IsOk = fn(u16, &[u8]) -> bool;

/// Closed loop: `concurrency` workers, one keep-alive connection each, until `duration` is over or
/// `make` has nothing more to send.
async fn drive(
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    next: Arc<AtomicU64>,
    make: MakeRequest,
    is_ok: IsOk,
) -> Stats {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, make) = (next.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
            while Instant::now() < deadline {
                let Some(req) = make(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    stream.set_nodelay(true).unwrap();
                    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let t = Instant::now();
                let result = sender.as_mut().unwrap().send_request(req).await;
                match result {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        lat.push(t.elapsed().as_micros() as u32);
                        match body {
                            Ok(b) if is_ok(status, &b) => ok += 1,
                            _ => failed += 1,
                        }
                    }
                    Err(_) => {
                        failed += 1;
                        sender = None;
                    }
                }
            }
            (ok, failed, lat)
        }));
    }
    let mut stats = Stats {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for w in workers {
        let (ok, failed, lat) = w.await.unwrap();
        stats.ok += ok;
        stats.failed += failed;
        stats.latencies_us.extend(lat);
    }
    stats.elapsed = started.elapsed();
    stats.latencies_us.sort_unstable();
    stats
}

/// `notify_verify` answered `true` for every id, as fast as hyper can.
async fn verify_stub() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"true"),
                    )))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn order_no(n: u64) -> String {
    format!("L{n:08}")
}

/// Unpaid orders L00000000… written straight into the database before payhost opens it.
fn seed_orders(db: &std::path::Path, count: u64) {
    drop(payhost::store::sqlite::SqliteStore::open(db).expect("create the schema"));
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA synchronous=OFF").unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, created_at, updated_at)
                 VALUES ('load', ?1, 'load test', 1, ?2, 'https://shop.example/r', 'WAIT_BUYER_PAY', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            )
            .unwrap();
        for n in 0..count {
            stmt.execute(rusqlite::params![order_no(n), SELLER])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn notify_request(addr: SocketAddr, path: &str, n: u64) -> http::Request<Full<Bytes>> {
    let no = order_no(n);
    let notify_id = format!("nid-{n}");
    let body = md5_notify_body(
        &Trade {
            out_trade_no: &no,
            total_fee: "0.01",
            notify_id: &notify_id,
            seller_email: SELLER,
            seller_id: PARTNER,
            trade_status: "TRADE_SUCCESS",
        },
        MD5_KEY,
    );
    http::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn paid_orders(db: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM payments WHERE merchant_id = 'load' AND status = 'TRADE_SUCCESS' AND out_trade_no LIKE 'L%'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// Notify throughput per (who, concurrency): `payhost` (the first store measured), `php`, `floor`.
type Rates = BTreeMap<(&'static str, usize), f64>;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let o = options();
    let duration = Duration::from_secs(o.seconds);
    let dir = temp_dir("load");
    let verify = verify_stub().await;
    let mut rates = Rates::new();
    println!(
        "machine: {} cores; {} s per level; stores: {} (replicas with PostgreSQL: {:?})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.seconds,
        o.databases.join(", "),
        o.replicas
    );

    if o.notify || o.payments || o.rsa_flood {
        let sandbox = spawn_payhost(
            &dir,
            &["sandbox", "--md5-merchant", &format!("{PARTNER}:{MD5_KEY}")],
        );
        // Enough unpaid orders for 10,000 notifies/s at every level.
        let seeded = 10_000 * o.seconds * o.concurrency.len() as u64 + 1_000;
        let pg = o
            .databases
            .iter()
            .any(|d| d == "postgres")
            .then(|| conformance::postgres::PgCluster::start("load"));
        let mut first = true;
        for database in &o.databases {
            let replicas: &[usize] = if database == "postgres" {
                &o.replicas
            } else {
                &[1]
            };
            for &n in replicas {
                let setup = Setup::start(
                    &dir,
                    database,
                    n,
                    pg.as_ref(),
                    seeded,
                    &sandbox.base,
                    verify,
                )
                .await;
                println!("== {}", setup.label);
                let measured = run_legs(&o, &setup, seeded, duration).await;
                if first {
                    for (c, rate) in measured {
                        rates.insert(("payhost", c), rate);
                    }
                    first = false;
                }
                if o.rsa_flood && database == "sqlite" {
                    rsa_flood(&setup, duration, o.flood_blocks).await;
                }
            }
        }
        drop(sandbox);
    }

    if o.floor {
        floor(&dir, verify, &o, &mut rates).await;
    }
    if o.php {
        php_peer(&dir, verify, &o, &mut rates).await;
    }
    print_ratios(&o, &rates);
}

/// payhost's notify throughput against the PHP peer's and the floor's, per level.
fn print_ratios(o: &Options, rates: &Rates) {
    for &c in &o.concurrency {
        let Some(ours) = rates.get(&("payhost", c)) else {
            continue;
        };
        for other in ["php", "floor"] {
            if let Some(theirs) = rates.get(&(other, c)).filter(|r| **r > 0.0) {
                println!(
                    "ratio     c={c:<3} payhost/{other} = {:.2} ({ours:.0} / {theirs:.0} ok/s)",
                    ours / theirs
                );
            }
        }
    }
}

/// One store configuration under load: SQLite and one host, or PostgreSQL and `n` replicas
/// (behind haproxy when more than one).
struct Setup {
    label: String,
    addr: SocketAddr,
    hosts: Vec<Payhost>,
    _balancer: Option<conformance::postgres::Balancer>,
    paid: Box<dyn Fn() -> u64>,
}

impl Setup {
    async fn start(
        dir: &std::path::Path,
        database: &str,
        n: usize,
        pg: Option<&conformance::postgres::PgCluster>,
        seeded: u64,
        sandbox: &str,
        verify: SocketAddr,
    ) -> Setup {
        // The RSA merchant (`--rsa-flood`'s target) reads the test key pair from files.
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(
            keys.join("merchant_private.pem"),
            conformance::TEST_PRIVATE_KEY,
        )
        .unwrap();
        std::fs::write(keys.join("alipay_public.pem"), conformance::TEST_PUBLIC_KEY).unwrap();
        let tables = format!(
            r#"
[merchants.load]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{sandbox}/sandbox/gateway"
notify_verify_url = "http://{verify}/gateway.do"

[merchants.rsa]
partner = "{PARTNER}"
sign_type = "RSA"
seller_email = "{SELLER}"
private_key_file = "{private}"
alipay_public_key_file = "{public}"
gateway_url = "{sandbox}/sandbox/gateway"
notify_verify_url = "http://{verify}/gateway.do"
"#,
            private = keys.join("merchant_private.pem").display(),
            public = keys.join("alipay_public.pem").display(),
        );
        if database == "sqlite" {
            let dir = dir.join("sqlite");
            std::fs::create_dir_all(&dir).unwrap();
            let db = dir.join("payhost.db");
            seed_orders(&db, seeded);
            let port = free_port();
            let config = config_head(port, TOKEN, "") + &tables;
            // Logging as in production (info), not the tests' debug.
            let host = Payhost::start_logging(&dir, &config, "info,wasmtime=warn,cranelift=warn");
            return Setup {
                label: format!("SQLite, 1 replica ({}, synchronous=FULL)", db.display()),
                addr: host.addr,
                hosts: vec![host],
                _balancer: None,
                paid: Box::new(move || paid_orders(&db)),
            };
        }
        let pg = pg.expect("a PostgreSQL cluster");
        let name = format!("load_r{n}");
        let url = pg.create_database(&name);
        // The schema, then the orders straight into the database.
        drop(
            payhost::store::postgres::PostgresStore::open(&url, &Default::default())
                .await
                .expect("create the schema"),
        );
        pg.psql(
            &name,
            &format!(
                "INSERT INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, created_at, updated_at)
                 SELECT 'load', 'L' || lpad(g::text, 8, '0'), 'load test', 1, '{SELLER}', 'https://shop.example/r', 'WAIT_BUYER_PAY', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'
                 FROM generate_series(0, {}) g",
                seeded - 1
            ),
        );
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let balancer = (n > 1).then(|| conformance::postgres::Balancer::start("load", &ports));
        let mut hosts = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let dir = dir.join(format!("pg-r{n}-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = config_head(*port, TOKEN, "").replace(
                "database = \"payhost.db\"",
                &format!("database = \"{url}\"\ntrust_proxy = true"),
            ) + &tables;
            hosts.push(Payhost::start_logging(
                &dir,
                &config,
                "info,wasmtime=warn,cranelift=warn",
            ));
        }
        let addr = match &balancer {
            Some(b) => {
                b.wait_ready("/readyz");
                SocketAddr::from(([127, 0, 0, 1], b.port))
            }
            None => hosts[0].addr,
        };
        let (pg_port, psql_name) = (pg.port, name.clone());
        let count_sql = "SELECT COUNT(*) FROM payments WHERE merchant_id = 'load' AND status = 'TRADE_SUCCESS' AND out_trade_no LIKE 'L%'";
        let pg_dir = pg.dir.clone();
        Setup {
            label: format!(
                "PostgreSQL, {n} replica{}{} (synchronous_commit=on, fsync=on, same machine)",
                if n > 1 { "s" } else { "" },
                if n > 1 { " behind haproxy" } else { "" }
            ),
            addr,
            hosts,
            _balancer: balancer,
            paid: Box::new(move || {
                let out = std::process::Command::new(conformance::postgres::pg_bin().join("psql"))
                    .current_dir(&pg_dir)
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &pg_port.to_string(),
                        "-U",
                        "payhost",
                    ])
                    .args(["-d", &psql_name, "-X", "-A", "-t", "-c", count_sql])
                    .output()
                    .expect("psql");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            }),
        }
    }

    /// RSS of every replica, summed (now, peak).
    fn rss_kib(&self) -> (u64, u64) {
        self.hosts
            .iter()
            .filter_map(|h| h.pid())
            .map(rss_kib)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }
}

/// The notify and payments legs against one setup; the notify throughput per level.
async fn run_legs(
    o: &Options,
    setup: &Setup,
    seeded: u64,
    duration: Duration,
) -> Vec<(usize, f64)> {
    let mut rates = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle, _) = setup.rss_kib();
    println!("payhost RSS idle: {:.1} MiB", idle as f64 / 1024.0);
    let addr = setup.addr;
    if o.notify {
        let next = Arc::new(AtomicU64::new(0));
        let path = "/notify/load";
        for &c in &o.concurrency {
            let make: MakeRequest =
                Arc::new(move |n| (n < seeded).then(|| notify_request(addr, path, n)));
            let before = next.load(Ordering::Relaxed);
            // Read from the one host only: behind the balancer each replica counts its own.
            let one_host = setup.hosts.len() == 1;
            let steps_before = if one_host {
                Some(step_times(addr).await)
            } else {
                None
            };
            let stats = drive(addr, c, duration, next.clone(), make, |s, b| {
                s == 200 && b == b"success"
            })
            .await;
            let sent = next.load(Ordering::Relaxed) - before;
            let (rss, hwm) = setup.rss_kib();
            println!(
                "{}  RSS {:.1} MiB (peak {:.1})",
                stats.line("notify", c),
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            );
            // A payhost before these counters (an older binary swapped in for an A/B) has none.
            if let Some(steps_before) = steps_before.filter(|s| !s.is_empty()) {
                println!("{}", step_line(c, &steps_before, &step_times(addr).await));
            }
            assert!(sent >= stats.ok);
            rates.push((c, stats.rate()));
        }
        let confirmed = (setup.paid)();
        println!("store: {confirmed} orders paid by the notifies above (each exactly once)");
    }
    if o.payments {
        let next = Arc::new(AtomicU64::new(0));
        for &c in &o.concurrency {
            let make: MakeRequest =
                Arc::new(move |n| Some(payment_request(addr, &format!("P{n:08}"))));
            let stats = drive(addr, c, duration, next.clone(), make, |s, _| s == 201).await;
            let (rss, hwm) = setup.rss_kib();
            println!(
                "{}  RSS {:.1} MiB (peak {:.1})",
                stats.line("payments", c),
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            );
        }
    }
    rates
}

/// payhost's `/metrics` counters of where notifications spend their time: per step (and the
/// component's requests to the provider) the seconds and the count, by metric name and label.
async fn step_times(addr: SocketAddr) -> BTreeMap<String, f64> {
    let reply = conformance::host::get(&format!("http://{addr}/metrics"), Some(TOKEN)).await;
    assert_eq!(reply.status, 200, "GET /metrics");
    String::from_utf8_lossy(&reply.body)
        .lines()
        .filter(|l| {
            l.starts_with("payhost_notification_step") || l.starts_with("payhost_component_request")
        })
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(name, v)| Some((name.to_owned(), v.parse().ok()?)))
        .collect()
}

/// The average time per notification of each step during one level: the verification (of which
/// the provider's confirmation), the order read, the match and the commit.
fn step_line(c: usize, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let per = |step: &str| {
        let n = delta(&format!(
            "payhost_notification_steps_total{{step=\"{step}\"}}"
        ));
        let secs = delta(&format!(
            "payhost_notification_step_seconds_total{{step=\"{step}\"}}"
        ));
        if n > 0.0 {
            secs / n * 1e6
        } else {
            0.0
        }
    };
    let verified = delta("payhost_notification_steps_total{step=\"verify\"}");
    let confirm = if verified > 0.0 {
        delta("payhost_component_request_seconds_total") / verified * 1e6
    } else {
        0.0
    };
    format!(
        "steps     c={c:<4} per notify: verify {:.0} µs (of which the provider's confirmation {confirm:.0} µs), order read {:.0} µs, match {:.0} µs, commit {:.0} µs",
        per("verify"),
        per("payment_read"),
        per("match"),
        per("commit"),
    )
}

/// The shop API's payment creation for `out_trade_no` (merchant `load`, MD5, sandbox gateway).
fn payment_request(addr: SocketAddr, out_trade_no: &str) -> http::Request<Full<Bytes>> {
    let body = format!(
        r#"{{"out_trade_no":"{out_trade_no}","subject":"压测","total_fee":"0.01","return_url":"https://shop.example/r"}}"#
    );
    http::Request::post("/v1/merchants/load/payments")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A notification for the RSA merchant nobody can have sent: `notify_data` of `blocks` RSA blocks
/// (real ciphertext to the merchant key, so the component decrypts every block it accepts) and a
/// signature that never verifies.
fn garbage_rsa_notify(blocks: usize) -> Bytes {
    // 117 plaintext bytes per block of the 1024-bit test key.
    let data = encrypt_to_test_key(&"x".repeat(blocks * 117));
    Bytes::from(form_encode(&[
        ("service".into(), "alipay.wap.trade.create.direct".into()),
        ("sign".into(), "AAAA".repeat(43)),
        ("sec_id".into(), "0001".into()),
        ("v".into(), "1.0".into()),
        ("notify_data".into(), data),
    ]))
}

/// `--rsa-flood`: payment creation one at a time idle, then under 64 connections of garbage
/// RSA notifies to the RSA merchant.
async fn rsa_flood(setup: &Setup, duration: Duration, blocks: usize) {
    const FLOOD: usize = 64;
    let addr = setup.addr;
    let next = Arc::new(AtomicU64::new(0));
    let make: MakeRequest = Arc::new(move |n| Some(payment_request(addr, &format!("F{n:08}"))));
    let idle = drive(addr, 1, duration, next.clone(), make.clone(), |s, _| {
        s == 201
    })
    .await;
    println!("{}", idle.line("pay idle", 1));
    let body = garbage_rsa_notify(blocks);
    let flood_make: MakeRequest = Arc::new(move |_| {
        Some(
            http::Request::post("/notify/rsa")
                .header("host", addr.to_string())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(body.clone()))
                .unwrap(),
        )
    });
    // The flood runs a little longer than the measurement, which starts once it is under way.
    let flood = tokio::spawn(drive(
        addr,
        FLOOD,
        duration + Duration::from_millis(800),
        Arc::new(AtomicU64::new(0)),
        flood_make,
        // Refused (bad signature) is the expected answer; anything else is counted as failed.
        |s, _| s == 400,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = drive(addr, 1, duration, next, make, |s, _| s == 201).await;
    let flood = flood.await.unwrap();
    println!("{}", loaded.line("pay flood", 1));
    println!("{}", flood.line("rsa flood", FLOOD));
    let (p99_idle, p99_flood, max) = (
        idle.percentile(0.99),
        loaded.percentile(0.99),
        loaded.percentile(1.0),
    );
    println!(
        "rsa-flood: payment p99 {p99_flood:.2} ms under the flood vs {p99_idle:.2} ms idle ({:.1}x; goal <= 2x: {}), max {max:.2} ms (goal <= 1000 ms: {})",
        p99_flood / p99_idle.max(0.001),
        if p99_flood <= 2.0 * p99_idle { "met" } else { "missed" },
        if max <= 1000.0 { "met" } else { "missed" },
    );
}

/// `--floor`: the same notifies against a minimal native handler in this process (its own
/// executor with as many threads as cores, as payhost has): hyper, the MD5 check, one
/// `notify_verify` call to the same stub over kept-alive connections, one SQLite commit
/// (`synchronous=FULL`, WAL, one writer thread committing whatever is queued at once).
async fn floor(dir: &std::path::Path, verify: SocketAddr, o: &Options, rates: &mut Rates) {
    let db = dir.join("floor.db");
    let (commits, queued) = std::sync::mpsc::channel();
    let writer_db = db.clone();
    std::thread::spawn(move || floor_writer(&writer_db, queued));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let state = Arc::new(Floor {
                verify,
                idle: Mutex::new(Vec::new()),
                commits: Mutex::new(commits),
            });
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| floor_notify(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    let addr: SocketAddr = addr_rx.recv().unwrap();
    println!("floor: a native handler (hyper + MD5 + notify_verify + one SQLite FULL commit)");
    let next = Arc::new(AtomicU64::new(0));
    for &c in &o.concurrency {
        let make: MakeRequest = Arc::new(move |n| Some(notify_request(addr, "/notify", n)));
        let stats = drive(
            addr,
            c,
            Duration::from_secs(o.seconds),
            next.clone(),
            make,
            |s, b| s == 200 && b == b"success",
        )
        .await;
        println!("{}", stats.line("floor", c));
        rates.insert(("floor", c), stats.rate());
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM notified", [], |r| r.get(0))
        .unwrap();
    println!("floor store: {stored} notifications committed");
}

/// What the floor's handlers share.
struct Floor {
    verify: SocketAddr,
    /// Kept-alive connections to the `notify_verify` stub.
    idle: Mutex<Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
    commits: Mutex<std::sync::mpsc::Sender<Commit>>,
}

struct Commit {
    notify_id: String,
    out_trade_no: String,
    trade_status: String,
    done: tokio::sync::oneshot::Sender<bool>,
}

/// The floor's one writer: every commit queued while the last one was on disk goes in the next.
fn floor_writer(db: &std::path::Path, queued: std::sync::mpsc::Receiver<Commit>) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS notified (notify_id TEXT PRIMARY KEY, out_trade_no TEXT NOT NULL, trade_status TEXT NOT NULL);",
    )
    .unwrap();
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        batch.extend(queued.try_iter());
        let tx = conn.transaction().unwrap();
        let mut ok = true;
        for c in &batch {
            ok &= tx
                .execute(
                    "INSERT OR IGNORE INTO notified VALUES (?1, ?2, ?3)",
                    rusqlite::params![c.notify_id, c.out_trade_no, c.trade_status],
                )
                .is_ok();
        }
        ok &= tx.commit().is_ok();
        for c in batch {
            let _ = c.done.send(ok);
        }
    }
}

/// The text of `<name>…</name>` in flat XML.
fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..end])
}

async fn floor_notify(
    state: Arc<Floor>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    use md5::{Digest, Md5};
    use subtle::ConstantTimeEq;
    let reply = |status: u16, body: &'static str| {
        let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        Ok(r)
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let content = format!(
        "service={}&v={}&sec_id={}&notify_data={}{MD5_KEY}",
        get("service"),
        get("v"),
        get("sec_id"),
        get("notify_data")
    );
    let expected = hex::encode(Md5::digest(content.as_bytes()));
    let sign = get("sign").to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(sign.as_bytes())) {
        return reply(400, "fail");
    }
    let data = get("notify_data");
    let (Some(notify_id), Some(out_trade_no), Some(trade_status)) = (
        xml_field(data, "notify_id"),
        xml_field(data, "out_trade_no"),
        xml_field(data, "trade_status"),
    ) else {
        return reply(400, "fail");
    };
    let path = format!(
        "/gateway.do?service=notify_verify&partner={PARTNER}&notify_id={}",
        form_urlencoded::byte_serialize(notify_id.as_bytes()).collect::<String>()
    );
    if !floor_verify(&state, &path).await {
        return reply(503, "fail");
    }
    let (done, committed) = tokio::sync::oneshot::channel();
    let commit = Commit {
        notify_id: notify_id.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        trade_status: trade_status.to_owned(),
        done,
    };
    let _ = state.commits.lock().unwrap().send(commit);
    match committed.await {
        Ok(true) => reply(200, "success"),
        _ => reply(500, "fail"),
    }
}

/// One `notify_verify` GET on a kept-alive connection: true when the stub answers `true`.
async fn floor_verify(state: &Floor, path: &str) -> bool {
    let kept = state.idle.lock().unwrap().pop();
    let mut sender = match kept.filter(|s| !s.is_closed()) {
        Some(s) => s,
        None => {
            let Ok(stream) = tokio::net::TcpStream::connect(state.verify).await else {
                return false;
            };
            let _ = stream.set_nodelay(true);
            let Ok((s, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return false;
            };
            tokio::spawn(conn);
            s
        }
    };
    if sender.ready().await.is_err() {
        return false;
    }
    let request = http::Request::get(path)
        .header("host", state.verify.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let confirmed = match sender.send_request(request).await {
        Ok(r) => r
            .into_body()
            .collect()
            .await
            .is_ok_and(|b| b.to_bytes().as_ref() == b"true"),
        Err(_) => false,
    };
    state.idle.lock().unwrap().push(sender);
    confirmed
}

/// The same notifies against the PHP peer under `php -S`.
async fn php_peer(dir: &std::path::Path, verify: SocketAddr, o: &Options, rates: &mut Rates) {
    let port = free_port();
    let workers = std::env::var("PHP_CLI_SERVER_WORKERS").unwrap_or_else(|_| "8".into());
    let log = dir.join("php.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new("php")
        .args(["-S", &format!("127.0.0.1:{port}"), "-t"])
        .arg(repo_root().join("tests/php/peer"))
        .env("PHP_CLI_SERVER_WORKERS", &workers)
        .env("PEER_KEY", MD5_KEY)
        .env("PEER_PARTNER", PARTNER)
        .env("PEER_VERIFY_URL", format!("http://{verify}/gateway.do"))
        .env("PEER_LOG", dir.join("php-notify.log"))
        .stdout(std::process::Stdio::from(f.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(f))
        // Its own process group: the server forks PHP_CLI_SERVER_WORKERS workers.
        .process_group(0)
        .spawn()
        .expect("php -S (install php-cli)");
    wait_port(port, &mut child, &log);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    println!("php peer: php -S with PHP_CLI_SERVER_WORKERS={workers}");
    let next = Arc::new(AtomicU64::new(0));
    for &c in &o.concurrency {
        let make: MakeRequest = Arc::new(move |n| Some(notify_request(addr, "/notify.php", n)));
        let stats = drive(
            addr,
            c,
            Duration::from_secs(o.seconds),
            next.clone(),
            make,
            |s, b| s == 200 && b == b"success",
        )
        .await;
        println!("{}", stats.line("php", c));
        rates.insert(("php", c), stats.rate());
    }
    // The whole group: the workers outlive a killed parent otherwise.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}
