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
//! Prints throughput, p50/p90/p99/max latency, the host's RSS idle and under load, and the
//! number of paid orders the store holds. Options: `--seconds N`, `--concurrency 1,16,64`,
//! `--only notify|payments|php`, `--php`, `--database sqlite,postgres` (each store in turn, in the
//! same run; PostgreSQL is a cluster the benchmark starts, as the tests do) and `--replicas 1,2`
//! (with PostgreSQL: that many `payhost serve` replicas, behind haproxy when more than one).

use bytes::Bytes;
use conformance::alipay::{md5_notify_body, Trade, MD5_KEY};
use conformance::host::{config_head, free_port, spawn_payhost, temp_dir, wait_port, Payhost};
use conformance::repo_root;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let o = options();
    let duration = Duration::from_secs(o.seconds);
    let dir = temp_dir("load");
    let verify = verify_stub().await;
    println!(
        "machine: {} cores; {} s per level; stores: {} (replicas with PostgreSQL: {:?})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.seconds,
        o.databases.join(", "),
        o.replicas
    );

    if o.notify || o.payments {
        let sandbox = spawn_payhost(
            &dir,
            &["sandbox", "--md5-merchant", &format!("{PARTNER}:{MD5_KEY}")],
        );
        // Enough unpaid orders for 3,000 notifies/s at every level.
        let seeded = 3_000 * o.seconds * o.concurrency.len() as u64 + 1_000;
        let pg = o
            .databases
            .iter()
            .any(|d| d == "postgres")
            .then(|| conformance::postgres::PgCluster::start("load"));
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
                run_legs(&o, &setup, seeded, duration).await;
            }
        }
        drop(sandbox);
    }

    if o.php {
        php_peer(&dir, verify, &o).await;
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
        let tables = format!(
            r#"
[merchants.load]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{sandbox}/sandbox/gateway"
notify_verify_url = "http://{verify}/gateway.do"
"#
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

/// The notify and payments legs against one setup.
async fn run_legs(o: &Options, setup: &Setup, seeded: u64, duration: Duration) {
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
            assert!(sent >= stats.ok);
        }
        let confirmed = (setup.paid)();
        println!("store: {confirmed} orders paid by the notifies above (each exactly once)");
    }
    if o.payments {
        let next = Arc::new(AtomicU64::new(0));
        for &c in &o.concurrency {
            let make: MakeRequest = Arc::new(move |n| {
                let body = format!(
                    r#"{{"out_trade_no":"P{n:08}","subject":"压测","total_fee":"0.01","return_url":"https://shop.example/r"}}"#
                );
                Some(
                    http::Request::post("/v1/merchants/load/payments")
                        .header("host", addr.to_string())
                        .header("content-type", "application/json")
                        .header("authorization", format!("Bearer {TOKEN}"))
                        .body(Full::new(Bytes::from(body)))
                        .unwrap(),
                )
            });
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
}

/// The same notifies against the PHP peer under `php -S`.
async fn php_peer(dir: &std::path::Path, verify: SocketAddr, o: &Options) {
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
    }
    // The whole group: the workers outlive a killed parent otherwise.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}
