//! The ledger with many payments: seeds N payments (default 1,000,000) over 20 merchants, 30
//! days and every status into a fresh SQLite store (payhost's migrations and indexes), then
//! reports the p50/p95 of a filtered page (`GET /v1/payments`'s store query: merchant + status +
//! a 7-day range, 50 rows; the same deep in the cursor; a search by order number; all merchants
//! newest first) and the CSV export's rate (the batches and the row formatting the streamed
//! `GET /v1/payments.csv` does, for one merchant's rows).
//!
//! Run: `cargo bench -p conformance --bench ledger` (1,000,000 payments), or
//! `cargo bench -p conformance --bench ledger -- --payments 20000` (what scripts/test runs).

use payhost::ledger::{csv_header, csv_row, CSV_BATCH};
use payhost::store::format_unix;
use payhost::store::ledger::{Cursor, Ledger, PaymentFilter};
use payhost::store::sqlite::SqliteStore;
use std::time::{Duration, Instant};

const MERCHANTS: u64 = 20;
const STATUSES: [&str; 6] = [
    "TRADE_SUCCESS",
    "TRADE_SUCCESS",
    "TRADE_SUCCESS",
    "WAIT_BUYER_PAY",
    "TRADE_CLOSED",
    "PARTIALLY_REFUNDED",
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn seed(path: &std::path::Path, n: u64, end: u64) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA synchronous=OFF").unwrap();
    let tx = conn.transaction().unwrap();
    for m in 0..MERCHANTS {
        tx.execute(
            "INSERT INTO merchants (id, settings, source, config_hash, updated_at) VALUES (?1, '{\"plugin\":[]}', 'api', NULL, ?2)",
            rusqlite::params![format!("m{m}"), format_unix(end)],
        )
        .unwrap();
    }
    {
        let mut st = tx
            .prepare(
                "INSERT INTO payments (merchant_id, out_trade_no, subject, total_fen, seller, return_url, status, trade_no, buyer_email, paid_at, created_at, updated_at, refunded_fen)
                 VALUES (?1, ?2, '商品', ?3, 's@example.com', 'https://shop.example/r', ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
            )
            .unwrap();
        let span = 30 * 86_400;
        for i in 0..n {
            let m = i % MERCHANTS;
            let status = STATUSES[(i / MERCHANTS % STATUSES.len() as u64) as usize];
            let at = format_unix(end - span + i * span / n);
            let fen = 100 + (i * 7919) % 100_000;
            let paid = status != "WAIT_BUYER_PAY" && status != "TRADE_CLOSED";
            st.execute(rusqlite::params![
                format!("m{m}"),
                format!("ORD{i:09}"),
                fen as i64,
                status,
                paid.then(|| format!("2024{i:012}")),
                paid.then(|| format!("buyer{}@example.com", i % 5000)),
                paid.then(|| at.clone()),
                at,
                if status == "PARTIALLY_REFUNDED" {
                    50i64
                } else {
                    0
                },
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("ANALYZE").unwrap();
}

fn time<F: FnMut()>(runs: usize, mut f: F) -> (Duration, Duration) {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    (percentile(&mut v, 0.5), percentile(&mut v, 0.95))
}

fn main() {
    let n: u64 = arg("--payments")
        .map(|v| v.parse().expect("--payments N"))
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("payhost-ledger-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    let end = 1_714_521_600; // 2024-05-01T00:00:00Z
                             // The store is async: one runtime for the bench, its reads timed through block_on.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = rt.enter();
    drop(SqliteStore::open(&path).unwrap()); // the migrations and indexes
    let t = Instant::now();
    seed(&path, n, end);
    println!(
        "seeded {n} payments over {MERCHANTS} merchants and 30 days in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let store = SqliteStore::open(&path).unwrap();
    let week = PaymentFilter {
        merchant: Some("m7".into()),
        status: Some("TRADE_SUCCESS".into()),
        from: Some(format_unix(end - 14 * 86_400)),
        to: Some(format_unix(end - 7 * 86_400)),
        limit: 51,
        ..PaymentFilter::default()
    };
    let runs = 200;
    let (p50, p95) = time(runs, || {
        assert!(!rt.block_on(store.list_payments(&week)).unwrap().is_empty());
    });
    println!(
        "filtered page (merchant + status + 7 days, 50 rows): p50 {:.2} ms, p95 {:.2} ms",
        ms(p50),
        ms(p95)
    );
    // Deep in the cursor: the 100th page of the same filter without the range.
    let mut deep = week.clone();
    deep.from = None;
    deep.to = None;
    // (the short form's 20,000 payments hold fewer pages: it stops at the last full one)
    let mut page = 1;
    while page < 100 {
        let rows = rt.block_on(store.list_payments(&deep)).unwrap();
        if rows.len() < 51 {
            break;
        }
        deep.cursor = Some(Cursor::of(&rows[49].payment));
        page += 1;
    }
    let (p50, p95) = time(runs, || {
        assert!(!rt.block_on(store.list_payments(&deep)).unwrap().is_empty());
    });
    println!(
        "page {page} by cursor (merchant + status): p50 {:.2} ms, p95 {:.2} ms",
        ms(p50),
        ms(p95)
    );
    let all = PaymentFilter {
        limit: 51,
        ..PaymentFilter::default()
    };
    let (p50, p95) = time(runs, || {
        assert_eq!(rt.block_on(store.list_payments(&all)).unwrap().len(), 51);
    });
    println!(
        "all merchants, newest first (50 rows): p50 {:.2} ms, p95 {:.2} ms",
        ms(p50),
        ms(p95)
    );
    let search = PaymentFilter {
        merchant: Some("m7".into()),
        q: Some(format!("ORD{:09}", n / 2 / MERCHANTS * MERCHANTS + 7)),
        limit: 51,
        ..PaymentFilter::default()
    };
    let (p50, p95) = time(20, || {
        assert_eq!(rt.block_on(store.list_payments(&search)).unwrap().len(), 1);
    });
    println!(
        "search by order number (q, one merchant): p50 {:.2} ms, p95 {:.2} ms",
        ms(p50),
        ms(p95)
    );
    // The CSV of one merchant: its batches and rows, as the stream writes them.
    let t = Instant::now();
    let mut f = PaymentFilter {
        merchant: Some("m3".into()),
        limit: CSV_BATCH,
        ..PaymentFilter::default()
    };
    let (mut rows, mut bytes) = (0usize, csv_header().len());
    loop {
        let batch = rt.block_on(store.list_payments(&f)).unwrap();
        let mut chunk = String::new();
        for r in &batch {
            csv_row(&mut chunk, r);
        }
        rows += batch.len();
        bytes += chunk.len();
        match batch.last() {
            Some(last) if batch.len() == CSV_BATCH as usize => {
                f.cursor = Some(Cursor::of(&last.payment))
            }
            _ => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "CSV of one merchant: {rows} rows, {:.1} MB in {secs:.2} s = {:.0} rows/s",
        bytes as f64 / 1e6,
        rows as f64 / secs
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
