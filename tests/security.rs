//! The hardening issue's findings, each reproduced over real sockets against payhost (in the
//! test process, `TestHost`; the release binary where a restart or the process is under test),
//! with the fix asserted: SSRF through provider and webhook URLs, unauthenticated disk
//! filling, oversized and too-frequent
//! notifies, stalled bodies, colliding webhook ids, invisible refunds, admin sessions (logout,
//! CSRF, throttling), per-merchant tokens, /metrics, return_url origins, dead-lettered webhooks and
//! the compile cache's integrity check. See docs/SECURITY.md.

use conformance::alipay::{self, AlipayStub, Trade, MD5_KEY};
use conformance::host::{
    admin_login, admin_post, config_head, free_port, get, post_form, request, request_from,
    send_json, temp_dir, Payhost, ADMIN_PASSWORD,
};
use conformance::stub::{Seen, StubServer};
use conformance::testhost::{Served, TestHost};
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const TOKEN: &str = "security-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";
const HOOK_SECRET: &str = "shop-webhook-secret-0123";

struct World<H = TestHost> {
    host: H,
    alipay: AlipayStub,
    shop: StubServer,
}

/// A host in the test process with merchants `shop`, `a` and `a_b` (all webhooking to the stub
/// shop), plus `top` top-level lines and `tables`.
async fn world(name: &str, top: &str, tables: &str) -> World {
    let alipay = AlipayStub::start().await;
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let dir = temp_dir(name);
    let host = TestHost::start(&dir, |port| config(port, top, tables, &alipay, &shop)).await;
    World { host, alipay, shop }
}

/// [`world`] with payhost as a process (`payhost serve`), for a test that restarts it.
async fn process_world(name: &str, top: &str, tables: &str) -> World<Payhost> {
    let alipay = AlipayStub::start().await;
    let shop = StubServer::start(|_: &Seen| (200, b"ok".to_vec())).await;
    let dir = temp_dir(name);
    let host = Payhost::start(&dir, &config(free_port(), top, tables, &alipay, &shop));
    World { host, alipay, shop }
}

fn config(port: u16, top: &str, tables: &str, alipay: &AlipayStub, shop: &StubServer) -> String {
    let mut config = config_head(port, TOKEN, "");
    // Top-level keys go before the first table.
    config = config.replacen("\n[plugin]", &format!("\n{top}\n[plugin]"), 1);
    for (id, hook) in [("shop", "/hook"), ("a", "/hook-a"), ("a_b", "/hook-a_b")] {
        config.push_str(&format!(
            r#"
[merchants.{id}]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{gw}"
notify_verify_url = "{verify}"
paychannel_url = "{verify}"
shop_webhook_url = "{hook}"
shop_webhook_secret = "{HOOK_SECRET}"
"#,
            gw = alipay.gateway_url(),
            verify = alipay.verify_url(),
            hook = shop.url(hook),
        ));
    }
    config.push_str(tables);
    config
}

fn trade<'a>(no: &'a str, notify_id: &'a str, status: &'a str) -> Trade<'a> {
    Trade {
        out_trade_no: no,
        total_fee: "1.00",
        notify_id,
        seller_email: SELLER,
        seller_id: PARTNER,
        trade_status: status,
    }
}

async fn create<H: Served>(w: &World<H>, merchant: &str, no: &str) {
    let r = send_json(
        "POST",
        &w.host.url(&format!("/v1/merchants/{merchant}/payments")),
        Some(TOKEN),
        &json!({"out_trade_no": no, "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn notify<H: Served>(w: &World<H>, merchant: &str, body: &str) -> conformance::host::Reply {
    post_form(&w.host.url(&format!("/alipay/{merchant}/notify")), body).await
}

async fn status<H: Served>(w: &World<H>, merchant: &str, no: &str) -> String {
    get(
        &w.host
            .url(&format!("/v1/merchants/{merchant}/payments/{no}")),
        Some(TOKEN),
    )
    .await
    .json()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The shared poll ([`conformance::wait_for`]) of a plain check, with this file's 15 s.
async fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    conformance::wait_for(what, Duration::from_secs(15), async || f()).await
}

fn events<H>(w: &World<H>, path: &str) -> Vec<serde_json::Value> {
    w.shop
        .requests()
        .into_iter()
        .filter(|s| s.path == path)
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect()
}

fn db_bytes<H: Served>(w: &World<H>) -> u64 {
    ["payhost.db", "payhost.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(w.host.dir().join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn raw_count<H: Served>(w: &World<H>) -> i64 {
    let db = rusqlite::Connection::open(w.host.dir().join("payhost.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM raw_notifications", [], |r| r.get(0))
        .unwrap()
}

/// Finding 2: notifies for unknown merchants are refused before anything is stored; a body
/// over 32 KiB is a 413 and is not stored either.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_merchants_and_oversized_bodies_store_nothing() {
    let w = world("sec-disk", "", "").await;
    let before = db_bytes(&w);
    let body = "x".repeat(30 * 1024);
    for i in 0..100 {
        let r = notify(&w, &format!("no-such-merchant-{i}"), &body).await;
        assert_eq!(r.status, 404);
    }
    let grown = db_bytes(&w).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "100 unknown-merchant notifies grew the database by {grown} bytes"
    );
    assert_eq!(raw_count(&w), 0);
    let r = notify(&w, "shop", &"x".repeat(33 * 1024)).await;
    assert_eq!(r.status, 413);
    assert_eq!(raw_count(&w), 0, "an oversized body is not stored");
}

/// A declared length above a route's limit is refused at once, before any of the body is sent
/// (a client asking `Expect: 100-continue` is not told to go on), on the provider and the API
/// routes; an admin form that large is a 413 page, not a wrong password that counts against the
/// address.
#[tokio::test(flavor = "multi_thread")]
async fn declared_oversized_bodies_are_refused_before_they_are_sent() {
    let w = world("sec-declared", "", "").await;
    let head_only = |head: String| {
        let addr = w.host.addr;
        async move {
            tokio::task::spawn_blocking(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.write_all(head.as_bytes()).unwrap();
                let mut got = [0u8; 512];
                let n = s.read(&mut got).unwrap_or(0);
                String::from_utf8_lossy(&got[..n]).into_owned()
            })
            .await
            .unwrap()
        }
    };
    for (path, length, extra) in [
        ("/notify/shop", 40_000, ""),
        ("/notify/shop", 10_000_000, "Expect: 100-continue\r\n"),
        (
            "/v1/merchants/shop/payments",
            1_000_000,
            "Content-Type: application/json\r\n",
        ),
    ] {
        let extra = if path.starts_with("/v1/") {
            format!("{extra}Authorization: Bearer {TOKEN}\r\n")
        } else {
            extra.to_owned()
        };
        let started = Instant::now();
        let answer = head_only(format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n"
        ))
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{path} with Content-Length {length}: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(raw_count(&w), 0);
    // Six oversized login forms: each a 413, none counted (five failures would lock it).
    let big = format!("password={}", "x".repeat(300 * 1024));
    for _ in 0..6 {
        let r = post_form(&w.host.url("/admin/login"), &big).await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.text().contains("表单内容超过 256 KiB"), "{}", r.text());
    }
    let login = post_form(
        &w.host.url("/admin/login"),
        &format!("password={ADMIN_PASSWORD}"),
    )
    .await;
    assert!(login.header("set-cookie").is_some(), "{}", login.text());
}

/// The login form has no CSRF token: a browser post without `Origin` is still refused when its
/// `Sec-Fetch-Site` or `Referer` says another site sent it.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_posted_from_another_site_without_origin_is_refused() {
    let w = world("sec-login-site", "", "").await;
    let url = w.host.url("/admin/login");
    let own = w.host.url("/admin/login");
    let body = format!("password={ADMIN_PASSWORD}").into_bytes();
    let form = ("content-type", "application/x-www-form-urlencoded");
    for headers in [
        vec![form, ("sec-fetch-site", "cross-site")],
        vec![form, ("sec-fetch-site", "same-site")],
        vec![form, ("referer", "http://evil.example/login.html")],
        vec![form, ("referer", "not a url")],
    ] {
        let r = request("POST", &url, &headers, body.clone()).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text());
        assert!(r.header("set-cookie").is_none(), "{headers:?}");
    }
    for headers in [
        vec![form, ("sec-fetch-site", "same-origin")],
        vec![form, ("referer", own.as_str())],
        vec![form],
    ] {
        let r = request("POST", &url, &headers, body.clone()).await;
        assert!(
            r.header("set-cookie").is_some(),
            "{headers:?}: {} {}",
            r.status,
            r.text()
        );
    }
}

/// Finding 2: per-IP rate limit (configured low here) answers 429 with Retry-After.
#[tokio::test(flavor = "multi_thread")]
async fn notify_rate_limit_answers_429() {
    let w = world("sec-rate", "", "\n[limits]\nnotify_per_ip_per_s = 5\n").await;
    let mut limited = 0;
    for _ in 0..30 {
        let r = notify(&w, "shop", "garbage=1").await;
        if r.status == 429 {
            limited += 1;
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        }
    }
    assert!(limited >= 20, "only {limited} of 30 were limited");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_ne!(
        notify(&w, "shop", "garbage=1").await.status,
        429,
        "refilled"
    );
}

/// The admin's own limit (`admin_per_ip_per_s`) answers a shop owner's browser with a page in
/// their language that says to wait, not the API's JSON; `Retry-After` as everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_rate_limit_is_a_page_in_the_owners_words() {
    let w = world("sec-admin-rate", "", "\n[limits]\nadmin_per_ip_per_s = 3\n").await;
    let mut limited = None;
    for _ in 0..30 {
        let r = get(&w.host.url("/admin/login"), None).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("30 quick admin pages from one address: one is limited");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    assert!(text.contains("请求太频繁"), "{text}");
    assert!(!text.contains("rate_limited"), "{text}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_ne!(get(&w.host.url("/admin/login"), None).await.status, 429);
}

/// Finding 3: connections whose body never arrives are closed at the body deadline, the
/// connection cap is logged when reached, and /healthz keeps answering.
/// One address holds at most `max_connections_per_ip` connections: its next one is closed at once,
/// and another address is still served.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_hold_every_connection() {
    let w = world(
        "sec-per-ip",
        "",
        "\n[limits]\nmax_connections_per_ip = 5\nheader_read_timeout_ms = 5000\n",
    )
    .await;
    // Five silent connections: the address's share.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(std::net::TcpStream::connect(w.host.addr).unwrap());
    }
    // Let the host accept them before the sixth.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sixth = std::net::TcpStream::connect(w.host.addr).unwrap();
    sixth
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::task::spawn_blocking(move || sixth.read_to_end(&mut buf).map(|_| buf))
        .await
        .unwrap();
    assert!(
        closed.as_ref().is_ok_and(|b| b.is_empty()),
        "the sixth connection is closed at once: {closed:?}"
    );
    // Another address is served meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(w.host.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    other.read_to_end(&mut answer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(w.host.log_text().contains("max_connections_per_ip"));
    // Once one of the five closes, the address may connect again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&w.host.url("/healthz"), None).await.status, 200);
    // Counted for the operator: the sixth, closed at once.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = get(&w.host.url("/metrics"), Some(TOKEN)).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("payhost_connections_refused_total ")
                && l != "payhost_connections_refused_total 0"),
        "{metrics}"
    );
}

/// A connection from `127.0.0.<last>` to the host.
async fn connect_from(w: &World, last: u8) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("127.0.0.{last}:0").parse().unwrap())
        .unwrap();
    socket.connect(w.host.addr).await.unwrap()
}

/// `GET /healthz` on a connection kept open: the first read of its answer (empty when closed).
async fn healthz_kept_alive(c: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).await.unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Every slot taken by connections that never finish their request head, from several
/// addresses (each within its own cap) and each dripping a header line every 300 ms, beside
/// idle keep-alive connections: a new client finds no slot, and the host closes connections
/// that have had no request for a second or more, so it is served at once rather than at the
/// 30 s header deadline. A request in flight is never closed for it.
#[tokio::test(flavor = "multi_thread")]
async fn connections_without_a_request_are_shed_when_the_slots_run_out() {
    use tokio::io::AsyncWriteExt;
    let w = world(
        "sec-shed",
        "",
        "\n[limits]\nmax_connections = 20\nmax_connections_per_ip = 5\nheader_read_timeout_ms = 30000\nkeep_alive_idle_ms = 60000\nbody_read_timeout_ms = 60000\n",
    )
    .await;
    // One request being handled: a notification whose verification takes six seconds.
    let mut busy = notification_being_verified(&w, 9, "SHED1").await;
    // Two idle keep-alive connections, each after one answered request.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(&w, 8).await;
        let answer = healthz_kept_alive(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        idle.push(c);
    }
    // Seventeen stalling heads from four addresses, dripping: the twenty slots are taken.
    let mut drippers = Vec::new();
    for i in 0..17u8 {
        let mut c = connect_from(&w, 2 + i % 4).await;
        drippers.push(tokio::spawn(async move {
            if c.write_all(b"POST /notify/shop HTTP/1.1\r\nHost: x\r\n")
                .await
                .is_err()
            {
                return;
            }
            for n in 0..200 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if c.write_all(format!("X-Drip-{n}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Every slot taken and nobody waiting: nothing is shed (an idle keep-alive connection still
    // takes a request).
    let answer = tokio::time::timeout(Duration::from_secs(5), healthz_kept_alive(&mut idle[0]))
        .await
        .expect("the idle connection answers");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "an idle connection was shed with no client waiting: {answer:?}"
    );
    let started = Instant::now();
    new_client_served_within(
        &w,
        Duration::from_secs(5),
        "a new client is served while stalling connections hold every slot",
    )
    .await;
    eprintln!("served after {:?}", started.elapsed());
    // The request being handled was not closed: it is answered.
    assert_answered_success(&mut busy).await;
    assert!(w.host.log_text().contains("connection limit reached"));
    for d in drippers {
        d.abort();
    }
}

/// A new client (127.0.0.10) asks `/healthz` and is answered 200 within `limit` (else `what`
/// fails the test).
async fn new_client_served_within(w: &World, limit: Duration, what: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = tokio::time::timeout(limit, async {
        let mut c = connect_from(w, 10).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).await.unwrap();
        answer
    })
    .await
    .expect(what);
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// A second and a half after every other slot was taken, a new client is served within three
/// seconds (before the notification being verified, six seconds, could free a slot), and that
/// notification (`busy`) is still answered `success`: nothing being handled was shed for it.
async fn served_while_busy_is_answered(w: &World, busy: &mut tokio::net::TcpStream, what: &str) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    new_client_served_within(w, Duration::from_secs(3), what).await;
    assert_answered_success(busy).await;
}

/// A signed notification for a new payment `no`, sent whole from 127.0.0.`last` while the
/// stub's `notify_verify` answers six seconds late: a request being handled for that long.
async fn notification_being_verified(w: &World, last: u8, no: &str) -> tokio::net::TcpStream {
    create(w, "shop", no).await;
    let nid = format!("n-{no}");
    w.alipay.issue(&nid);
    w.alipay.server.delay(Duration::from_secs(6));
    let body = alipay::md5_notify_body(&trade(no, &nid, "TRADE_SUCCESS"), MD5_KEY);
    notify_sent_whole(w, last, &body).await
}

/// A connection from 127.0.0.`last` that sent merchant `shop`'s notification `body` whole.
async fn notify_sent_whole(w: &World, last: u8, body: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut c = connect_from(w, last).await;
    c.write_all(
        format!(
            "POST /notify/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    c
}

/// The answer on `c` is a 200 whose body is `success` (within 8 s).
async fn assert_answered_success(c: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(8), async {
        while !answer.ends_with(b"success") {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("success"),
        "the request being handled was not answered `success`: {text:?}"
    );
}

/// Every slot but one held by shop API requests whose body is dripped a byte every 300 ms, from four
/// addresses (each within its own cap), the body deadline a minute away, and one notification
/// being verified: a new client finds no slot, and the host closes the requests whose body has
/// been arriving for a second or more, so it is served at once. The notification being handled
/// is not closed for it.
#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_are_shed_when_the_slots_run_out() {
    use tokio::io::AsyncWriteExt;
    let w = world(
        "sec-shed-body",
        "",
        "\n[limits]\nmax_connections = 20\nmax_connections_per_ip = 5\nheader_read_timeout_ms = 30000\nkeep_alive_idle_ms = 60000\nbody_read_timeout_ms = 60000\n",
    )
    .await;
    let mut busy = notification_being_verified(&w, 9, "SHED2").await;
    let mut drippers = Vec::new();
    for i in 0..19u8 {
        let mut c = connect_from(&w, 2 + i % 4).await;
        drippers.push(tokio::spawn(async move {
            // The shop API's payment creation, authorized: its body is read under the body
            // deadline (a notification past the merchant's admission would be refused before).
            let head = format!("POST /v1/merchants/shop/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{");
            if c.write_all(head.as_bytes()).await.is_err() {
                return false;
            }
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if c.write_all(b"x").await.is_err() {
                    return true;
                }
            }
            false
        }));
    }
    served_while_busy_is_answered(
        &w,
        &mut busy,
        "a new client is served while slow bodies hold every other slot",
    )
    .await;
    let mut closed = 0;
    for d in drippers {
        d.abort();
        closed += usize::from(matches!(d.await, Ok(true)));
    }
    assert!(closed > 0, "no slow body was closed");
}

/// A merchant under a flood of refused notifications admits one at a time, and the rest queue
/// for their turn. Every slot but one held by such queued notifications, from four addresses
/// (each within its own cap), while the one admitted is being verified: a new client finds no
/// slot, and the host closes connections whose notification has waited for its turn a second
/// or more (nothing was done for them; the provider sends them again), so it is served at once.
/// Before, a notification waiting for its turn was never shed: a few addresses keeping one
/// queued on each connection held every slot (the security probe of session 34).
#[tokio::test(flavor = "multi_thread")]
async fn notifications_waiting_for_their_turn_are_shed_when_the_slots_run_out() {
    use tokio::io::AsyncReadExt;
    let w = world(
        "sec-shed-turn",
        "",
        "\n[limits]\nmax_connections = 20\nmax_connections_per_ip = 5\nheader_read_timeout_ms = 30000\nkeep_alive_idle_ms = 60000\nbody_read_timeout_ms = 60000\n",
    )
    .await;
    // Three refused: the merchant is suspect, one notification at a time.
    for i in 0..3 {
        let forged = alipay::md5_notify_body(
            &trade("SHED3", &format!("n-forged-{i}"), "TRADE_SUCCESS"),
            "20000000000000000000000000000000",
        );
        assert_eq!(notify(&w, "shop", &forged).await.text(), "fail");
    }
    let mut busy = notification_being_verified(&w, 9, "SHED3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut queued = Vec::new();
    for i in 0..19u8 {
        let body = alipay::md5_notify_body(
            &trade("SHED3", &format!("n-queued-{i}"), "TRADE_SUCCESS"),
            MD5_KEY,
        );
        queued.push(notify_sent_whole(&w, 2 + i % 4, &body).await);
    }
    served_while_busy_is_answered(
        &w,
        &mut busy,
        "a new client is served while queued notifications hold every other slot",
    )
    .await;
    let mut closed = 0;
    for mut c in queued {
        let mut buf = [0u8; 256];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(closed > 0, "no queued notification's connection was closed");
    // The operator sees it on /metrics, not only in the log.
    let metrics = get(&w.host.url("/metrics"), Some(TOKEN)).await.text();
    let counted = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name}: {metrics}"))
    };
    assert!(
        counted("payhost_connections_shed_total") >= closed,
        "{metrics}"
    );
    assert!(counted("payhost_connections_waited_total") > 0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_are_closed_and_healthz_answers() {
    let w = world(
        "sec-slow",
        "",
        "\n[limits]\nbody_read_timeout_ms = 500\nkeep_alive_idle_ms = 1000\nheader_read_timeout_ms = 1000\nmax_connections = 40\n",
    )
    .await;
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut s = std::net::TcpStream::connect(w.host.addr).unwrap();
        s.write_all(b"POST /alipay/shop/notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\nnotify")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stalled.push(s);
    }
    // An idle connection that sends nothing at all.
    let mut idle = std::net::TcpStream::connect(w.host.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let h = tokio::time::timeout(Duration::from_secs(5), get(&w.host.url("/healthz"), None))
        .await
        .expect("/healthz answers while 50 bodies stall");
    assert_eq!(h.status, 200);
    let answered = started.elapsed();
    let stalled = tokio::task::spawn_blocking(move || {
        for mut s in stalled {
            let mut buf = Vec::new();
            // The host answers 408 and closes: read_to_end ends (no timeout error).
            s.read_to_end(&mut buf)
                .expect("closed by the host, not by our timeout");
            let text = String::from_utf8_lossy(&buf);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{text}"
            );
        }
        let mut buf = Vec::new();
        idle.read_to_end(&mut buf)
            .expect("the idle connection is closed");
    });
    stalled.await.unwrap();
    eprintln!(
        "healthz answered after {answered:?}; every stalled connection closed after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(w.host.log_text().contains("connection limit reached"));
    assert_eq!(get(&w.host.url("/healthz"), None).await.status, 200);
}

/// Finding 4: merchant `a` / order `b_c` and merchant `a_b` / order `c` both get their webhook,
/// with different event ids.
#[tokio::test(flavor = "multi_thread")]
async fn colliding_ids_both_shops_get_their_webhook() {
    let w = world("sec-collide", "", "").await;
    for (m, no, nid) in [("a", "b_c", "n-a"), ("a_b", "c", "n-ab")] {
        create(&w, m, no).await;
        w.alipay.issue(nid);
        let r = notify(
            &w,
            m,
            &alipay::md5_notify_body(&trade(no, nid, "TRADE_SUCCESS"), MD5_KEY),
        )
        .await;
        assert_eq!(r.text(), "success");
    }
    wait_for(
        || events(&w, "/hook-a").len() == 1 && events(&w, "/hook-a_b").len() == 1,
        "both shops' webhooks",
    )
    .await;
    let (a, ab) = (&events(&w, "/hook-a")[0], &events(&w, "/hook-a_b")[0]);
    assert_eq!(a["type"], "payment.paid");
    assert_eq!(ab["type"], "payment.paid");
    assert_eq!(
        (a["out_trade_no"].as_str(), ab["out_trade_no"].as_str()),
        (Some("b_c"), Some("c"))
    );
    assert_ne!(a["id"], ab["id"]);
    assert!(a["id"].as_str().unwrap().starts_with("evt_"));
}

/// Finding 5: a partial refund and a full refund after payment reach the shop; the payment ends
/// REFUNDED (never unpaid) and a later TRADE_FINISHED changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn refunds_reach_the_shop() {
    let w = world("sec-refund", "", "").await;
    create(&w, "shop", "R1").await;
    let send = |nid: &'static str, st: &'static str, refund: bool| {
        w.alipay.issue(nid);
        let extra: &[(&str, &str)] = if refund {
            &[
                ("refund_status", "REFUND_SUCCESS"),
                ("gmt_refund", "2014-01-02 10:00:00"),
            ]
        } else {
            &[]
        };
        alipay::md5_notify_body_extra(&trade("R1", nid, st), MD5_KEY, extra)
    };
    let paid = send("n-R1-paid", "TRADE_SUCCESS", false);
    assert_eq!(notify(&w, "shop", &paid).await.text(), "success");
    let partial = send("n-R1-partial", "TRADE_SUCCESS", true);
    assert_eq!(notify(&w, "shop", &partial).await.text(), "success");
    assert_eq!(status(&w, "shop", "R1").await, "PARTIALLY_REFUNDED");
    let full = send("n-R1-full", "TRADE_CLOSED", true);
    assert_eq!(notify(&w, "shop", &full).await.text(), "success");
    assert_eq!(status(&w, "shop", "R1").await, "REFUNDED");
    // Duplicates change nothing; TRADE_FINISHED after the refund undoes nothing.
    assert_eq!(notify(&w, "shop", &full).await.text(), "success");
    let finished = send("n-R1-finished", "TRADE_FINISHED", false);
    assert_eq!(notify(&w, "shop", &finished).await.text(), "success");
    assert_eq!(status(&w, "shop", "R1").await, "REFUNDED");
    wait_for(|| events(&w, "/hook").len() >= 3, "three webhooks").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Due events are delivered concurrently: compare them as a set, one of each.
    let mut types: Vec<String> = events(&w, "/hook")
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "payment.paid",
            "payment.partially_refunded",
            "payment.refunded"
        ]
    );
    let refunded = events(&w, "/hook")
        .into_iter()
        .find(|e| e["type"] == "payment.refunded")
        .unwrap();
    assert_eq!(refunded["status"], "REFUNDED");
    assert_eq!(refunded["previous_status"], "PARTIALLY_REFUNDED");
    assert_eq!(refunded["refund_status"], "REFUND_SUCCESS");
}

/// A partly refunded trade that Alipay then finishes takes no refund here any more (the provider
/// refuses them): its status stays PARTIALLY_REFUNDED, `finished_at` says so, and a refund is
/// `409 not_refundable`. Both ways the finish arrives: a bare `TRADE_FINISHED`, and one carrying
/// its refund (`refund_status`, `refund_fee`), which takes the refund report's path.
#[tokio::test(flavor = "multi_thread")]
async fn a_partly_refunded_trade_once_finished_takes_no_refund() {
    let w = world("sec-finished", "", "").await;
    for (no, finish_extra) in [
        ("FIN1", &[][..]),
        (
            "FIN2",
            &[
                ("refund_status", "REFUND_SUCCESS"),
                ("refund_fee", "0.30"),
                ("gmt_refund", "2014-01-02 10:00:00"),
            ][..],
        ),
    ] {
        create(&w, "shop", no).await;
        let send = |nid: String, st: &'static str, extra: &[(&str, &str)]| {
            w.alipay.issue(&nid);
            alipay::md5_notify_body_extra(&trade(no, &nid, st), MD5_KEY, extra)
        };
        let paid = send(format!("n-{no}-paid"), "TRADE_SUCCESS", &[]);
        assert_eq!(notify(&w, "shop", &paid).await.text(), "success");
        let partial = send(
            format!("n-{no}-partial"),
            "TRADE_SUCCESS",
            &[
                ("refund_status", "REFUND_SUCCESS"),
                ("gmt_refund", "2014-01-02 10:00:00"),
            ],
        );
        assert_eq!(notify(&w, "shop", &partial).await.text(), "success");
        assert_eq!(status(&w, "shop", no).await, "PARTIALLY_REFUNDED");
        assert!(payment_json(&w, no).await["finished_at"].is_null());
        let finished = send(format!("n-{no}-finished"), "TRADE_FINISHED", finish_extra);
        assert_eq!(notify(&w, "shop", &finished).await.text(), "success");
        let p = payment_json(&w, no).await;
        assert_eq!(p["status"], "PARTIALLY_REFUNDED", "{no}: {p}");
        assert!(p["finished_at"].is_string(), "{no}: {p}");
        // The finishing notification says so, whichever path applied it.
        let said = p["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["notify_id"] == format!("n-{no}-finished"))
            .unwrap_or_else(|| panic!("{no}: {p}"));
        assert!(
            said["detail"]
                .as_str()
                .is_some_and(|d| d.contains("no more refunds")),
            "{no}: {said}"
        );
        let more = send_json(
            "POST",
            &w.host
                .url(&format!("/v1/merchants/shop/payments/{no}/refunds")),
            Some(TOKEN),
            &json!({"amount": "0.10", "refund_key": format!("k-{no}")}),
        )
        .await;
        assert_eq!(more.status, 409, "{no}: {}", more.text());
        assert_eq!(more.json()["error"]["code"], "not_refundable", "{no}");
    }
}

/// A trade closed after it was paid here, its message showing neither the payment nor a refund (a
/// bare `TRADE_CLOSED`, which the component reports as a close): refunded in full, the whole paid
/// amount recorded refunded and nothing left to refund. Before, the payment went REFUNDED with
/// 0.00 refunded, and a new refund of the whole amount was still accepted and sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_bare_close_of_a_paid_order_is_a_full_refund() {
    let w = world("sec-bare-close", "", "").await;
    let (p, closed) = paid_then_closed(&w, "BC1", &[], &["gmt_payment"]).await;
    assert_eq!(p["status"], "REFUNDED", "{p}");
    assert_eq!(p["refunded_amount"], "1.00", "{p}");
    let more = send_json(
        "POST",
        &w.host.url("/v1/merchants/shop/payments/BC1/refunds"),
        Some(TOKEN),
        &json!({"amount": "0.50", "refund_key": "k-bc1"}),
    )
    .await;
    assert_eq!(
        more.status / 100,
        4,
        "nothing is left to refund: {}",
        more.text()
    );
    // The same close again changes nothing.
    assert_eq!(notify(&w, "shop", &closed).await.text(), "success");
    let again = payment_json(&w, "BC1").await;
    assert_eq!(again["refunded_amount"], "1.00", "{again}");
}

/// Payment `no` (1.00) created, paid by a notification without the `paid_without` elements of its
/// `notify_data`, then closed by a `TRADE_CLOSED` without the `closed_without` ones: the payment
/// as the API reads it, and the close's body.
async fn paid_then_closed(
    w: &World,
    no: &str,
    paid_without: &[&str],
    closed_without: &[&str],
) -> (serde_json::Value, String) {
    create(w, "shop", no).await;
    // One notify of `status` for the order, issued by the stub, without the fields `without`.
    let send = async |status: &str, without: &[&str]| {
        let id = format!("n-{no}-{status}");
        w.alipay.issue(&id);
        let body = alipay::md5_notify_body_without(&trade(no, &id, status), MD5_KEY, without);
        assert_eq!(notify(w, "shop", &body).await.text(), "success");
        body
    };
    send("TRADE_SUCCESS", paid_without).await;
    let closed = send("TRADE_CLOSED", closed_without).await;
    (payment_json(w, no).await, closed)
}

async fn payment_json(w: &World, no: &str) -> serde_json::Value {
    get(
        &w.host.url(&format!("/v1/merchants/shop/payments/{no}")),
        Some(TOKEN),
    )
    .await
    .json()
}

/// A close naming no trade, for an order paid by a trade (an earlier cashier page of the same
/// order, never paid, expired after the order was paid through another): nothing changes. It is
/// not the paid trade's refund, which names its trade; recorded as such, the shop would be told
/// the money went back, and nothing would be left to refund.
#[tokio::test(flavor = "multi_thread")]
async fn a_close_naming_no_trade_leaves_a_paid_order_paid() {
    let w = world("sec-close-no-trade", "", "").await;
    let (p, _) = paid_then_closed(&w, "BC2", &[], &["gmt_payment", "trade_no"]).await;
    assert_eq!(p["status"], "TRADE_SUCCESS", "{p}");
    assert_eq!(p["refunded_amount"], "0.00", "{p}");
    let told: Vec<String> = events(&w, "/hook")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!told.iter().any(|t| t.contains("refund")), "{told:?}");
    // An order paid by a notify that named no trade: a close naming one cannot be told to be its
    // refund, so it is held for review, the order left paid.
    let (p, _) = paid_then_closed(&w, "BC3", &["trade_no"], &["gmt_payment"]).await;
    assert_eq!(p["status"], "TRADE_SUCCESS", "{p}");
    assert_eq!(p["refunded_amount"], "0.00", "{p}");
    assert!(
        p["review"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be told"),
        "{p}"
    );
}

/// A refund's report of a trade that is not this order's (another amount) does not make the order
/// paid: after the pay notification of a 0.10 trade under the 1.00 order's number is held for
/// review, its full refund (TRADE_CLOSED + REFUND_SUCCESS) is held too — not REFUNDED with 1.00
/// "refunded" and a `payment.paid` sent. A refund report that arrives before its payment's own
/// notification, of the order's own trade, records the payment with the trade's number, buyer and
/// payment time.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_report_of_another_trade_never_pays_the_order() {
    let w = world("sec-refund-foreign", "", "").await;
    create(&w, "shop", "F1").await;
    let body =
        |no: &'static str, fee: &'static str, nid: &'static str, st: &'static str, refund: bool| {
            w.alipay.issue(nid);
            let mut t = trade(no, nid, st);
            t.total_fee = fee;
            let extra: &[(&str, &str)] = if refund {
                &[
                    ("refund_status", "REFUND_SUCCESS"),
                    ("gmt_refund", "2014-01-02 10:00:00"),
                ]
            } else {
                &[]
            };
            alipay::md5_notify_body_extra(&t, MD5_KEY, extra)
        };
    notify(
        &w,
        "shop",
        &body("F1", "0.10", "n-F1-paid", "TRADE_SUCCESS", false),
    )
    .await;
    assert_eq!(status(&w, "shop", "F1").await, "WAIT_BUYER_PAY");
    let refunded = body("F1", "0.10", "n-F1-refund", "TRADE_CLOSED", true);
    notify(&w, "shop", &refunded).await;
    let p = get(&w.host.url("/v1/merchants/shop/payments/F1"), Some(TOKEN))
        .await
        .json();
    assert_eq!(p["status"], "WAIT_BUYER_PAY", "{p}");
    assert_eq!(p["refunded_amount"], "0.00", "{p}");
    assert!(
        p["review"].as_str().unwrap_or("").contains("total_fee"),
        "{p}"
    );
    let outcomes: Vec<&str> = p["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["mismatch", "mismatch"], "{p}");

    // The order's own trade, its refund first: paid and refunded, the payment's facts kept.
    create(&w, "shop", "F2").await;
    let first = body("F2", "1.00", "n-F2-refund", "TRADE_CLOSED", true);
    assert_eq!(notify(&w, "shop", &first).await.text(), "success");
    let p = get(&w.host.url("/v1/merchants/shop/payments/F2"), Some(TOKEN))
        .await
        .json();
    assert_eq!(p["status"], "REFUNDED", "{p}");
    assert_eq!(p["refunded_amount"], "1.00", "{p}");
    assert_eq!(p["trade_no"], "2014F2", "{p}");
    assert_eq!(p["buyer_email"], "buyer@example.com", "{p}");
    assert_eq!(p["paid_at"], "2014-01-01T04:00:10Z", "{p}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shop_heard: Vec<(String, String)> = events(&w, "/hook")
        .iter()
        .map(|e| {
            (
                e["out_trade_no"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        shop_heard.iter().all(|(no, _)| no == "F2"),
        "nothing of F1 reached the shop: {shop_heard:?}"
    );
    // The shop's webhooks say what the refund's report told of the payment.
    wait_for(
        || {
            events(&w, "/hook")
                .iter()
                .any(|e| e["type"] == "payment.refunded")
        },
        "the refund's webhook",
    )
    .await;
    for e in events(&w, "/hook") {
        assert_eq!(e["trade_no"], "2014F2", "{e}");
        assert_eq!(e["paid_at"], "2014-01-01T04:00:10Z", "{e}");
    }
}

/// Finding 6: sessions are revoked at logout, posts need the CSRF token and a same-site
/// Origin, failed logins are throttled, the cookie is HttpOnly/SameSite=Strict (Secure only
/// behind a trusted https proxy).
#[tokio::test(flavor = "multi_thread")]
async fn admin_sessions_csrf_and_throttling() {
    let w = world("sec-admin", "", "").await;
    let base = w.host.url("");
    let login = post_form(
        &w.host.url("/admin/login"),
        &format!("password={ADMIN_PASSWORD}"),
    )
    .await;
    let set = login.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "plain http, no trusted proxy: {set}"
    );
    // Without trust_proxy, X-Forwarded-Proto is not believed.
    let spoofed = request(
        "POST",
        &w.host.url("/admin/login"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-proto", "https"),
        ],
        format!("password={ADMIN_PASSWORD}").into_bytes(),
    )
    .await;
    assert!(!spoofed.header("set-cookie").unwrap().contains("Secure"));

    let (cookie, csrf) = admin_login(&base, ADMIN_PASSWORD).await;
    let post = |body: String, origin: Option<&'static str>| {
        let cookie = cookie.clone();
        let url = w.host.url("/admin/merchants");
        async move {
            let mut headers = vec![
                ("cookie", cookie.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            if let Some(o) = origin {
                headers.push(("origin", o));
            }
            request("POST", &url, &headers, body.into_bytes()).await
        }
    };
    assert_eq!(
        post("id=new1".into(), None).await.status,
        403,
        "no CSRF token"
    );
    assert_eq!(
        post(format!("csrf={csrf}x&id=new1"), None).await.status,
        403,
        "wrong CSRF token"
    );
    assert_eq!(
        post(format!("csrf={csrf}&id=new1"), Some("null"))
            .await
            .status,
        403,
        "Origin: null"
    );
    let other = post(format!("csrf={csrf}&id=new1"), Some("https://evil.example")).await;
    assert_eq!(other.status, 403);
    // The page says which address to open it at (a tunnel or the server's IP is the usual
    // cause), and the log says so too.
    // The caller's origin is not repeated (another site's page would have the owner set
    // public_url to it).
    let said = other.text();
    assert!(
        said.contains("跨站表单提交被拒绝")
            && said.contains("public_url")
            && !said.contains("evil.example"),
        "{said}"
    );
    assert!(w
        .host
        .log_text()
        .contains("refused an admin post from another origin"));
    assert_eq!(post(format!("csrf={csrf}&id=new1"), None).await.status, 303);

    // Logging out takes the form's post: a GET (which any same-site page can make the browser
    // send) or a post without the token leaves the session alive; the form's post revokes it
    // server-side, so the copied cookie is worthless afterwards.
    let logout = |method: &'static str, body: String| {
        let (cookie, url) = (cookie.clone(), w.host.url("/admin/logout"));
        async move {
            let headers = [
                ("cookie", cookie.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            let r = request(method, &url, &headers, body.into_bytes()).await;
            (r.status, r.header("set-cookie"))
        }
    };
    let logged_in = || {
        let (cookie, url) = (cookie.clone(), w.host.url("/admin"));
        async move {
            let page = request("GET", &url, &[("cookie", cookie.as_str())], Vec::new()).await;
            !page.text().contains("name=\"password\"")
        }
    };
    for (method, body) in [("GET", ""), ("POST", "csrf=wrong")] {
        assert_eq!(logout(method, body.into()).await.0, 303, "{method}");
        assert!(logged_in().await, "{method} {body} logged out");
    }
    // A post of another login's form does nothing, and says so by keeping the cookie: it used
    // to clear the browser's cookie while the session stayed alive on the server.
    assert_eq!(
        logout("POST", "csrf=an-older-pages-token".into()).await,
        (303, None)
    );
    let (status, cleared) = logout("POST", format!("csrf={csrf}")).await;
    assert_eq!(status, 303);
    assert!(cleared.is_some_and(|c| c.contains("Max-Age=0")));
    assert!(!logged_in().await, "back to the login page");
    // A logout with the cookie of a session that is gone already clears the cookie.
    let (_, cleared) = logout("POST", "csrf=whatever".into()).await;
    assert!(cleared.is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(post(format!("csrf={csrf}&id=new2"), None).await.status, 401);

    // Throttling: 5 failures a minute, then 429 with Retry-After, even for the right password.
    for _ in 0..5 {
        assert_eq!(
            post_form(&w.host.url("/admin/login"), "password=wrong")
                .await
                .status,
            401
        );
    }
    let throttled = post_form(
        &w.host.url("/admin/login"),
        &format!("password={ADMIN_PASSWORD}"),
    )
    .await;
    assert_eq!(throttled.status, 429);
    let wait: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
}

/// Guesses sent at once each count from their start: twenty together get no more password checks
/// than the limit, and a login of one's own from the same address does not clear the others'
/// failures.
#[tokio::test(flavor = "multi_thread")]
async fn login_guesses_at_once_get_no_more_checks_than_the_limit() {
    let w = world("sec-login-burst", "", "").await;
    let url = w.host.url("/admin/login");
    let guesses = (0..20).map(|i| {
        let url = url.clone();
        tokio::spawn(async move { post_form(&url, &format!("password=guess{i}")).await.status })
    });
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, throttled), (5, 15), "{statuses:?}");
    // A guesser writes no log of its own: refusals are said once a second, with a count.
    let said = w
        .host
        .log_text()
        .lines()
        .filter(|l| l.contains("admin login refused") || l.contains("admin login throttled"))
        .count();
    assert!(said <= 4, "{said} lines for 20 guesses");

    let w = world("sec-login-own", "", "").await;
    let url = w.host.url("/admin/login");
    for _ in 0..4 {
        assert_eq!(post_form(&url, "password=wrong").await.status, 401);
    }
    let own = post_form(&url, &format!("password={ADMIN_PASSWORD}")).await;
    assert_eq!(own.status, 303);
    assert_eq!(post_form(&url, "password=wrong").await.status, 401);
    assert_eq!(
        post_form(&url, "password=wrong").await.status,
        429,
        "the failures before the success still count"
    );
}

/// Behind a proxy the operator trusts, `X-Forwarded-Proto: https` makes the cookie Secure.
#[tokio::test(flavor = "multi_thread")]
async fn secure_cookie_behind_a_trusted_proxy() {
    let w = world("sec-proxy", "trust_proxy = true", "").await;
    let r = request(
        "POST",
        &w.host.url("/admin/login"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-proto", "https"),
        ],
        format!("password={ADMIN_PASSWORD}").into_bytes(),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("; Secure"));
}

/// Per-merchant tokens reach their own merchant only; the CLI makes them too; revoked tokens
/// stop working. /metrics needs the operator token.
#[tokio::test(flavor = "multi_thread")]
async fn merchant_tokens_are_scoped_and_metrics_need_the_token() {
    let w = world("sec-tokens", "", "").await;
    let made = send_json(
        "POST",
        &w.host.url("/v1/merchants/shop/tokens"),
        Some(TOKEN),
        &json!({"label": "ecshop"}),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let token = made.json()["token"].as_str().unwrap().to_owned();
    let tid = made.json()["id"].as_i64().unwrap();
    let t = Some(token.as_str());
    assert_eq!(
        get(&w.host.url("/v1/merchants/shop/notifications"), t)
            .await
            .status,
        200
    );
    let r = send_json(
        "POST",
        &w.host.url("/v1/merchants/shop/payments"),
        t,
        &json!({"out_trade_no": "T1", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        get(&w.host.url("/v1/merchants/shop/payments/T1"), t)
            .await
            .status,
        200
    );
    for (method, path) in [
        ("GET", "/v1/merchants/a/notifications"),
        ("GET", "/v1/merchants/a/payments/T1"),
        // Its own settings it may read and replace (tests/adapters.rs); another merchant's not.
        ("GET", "/v1/merchants/a"),
        ("PUT", "/v1/merchants/a"),
        ("POST", "/v1/merchants/shop/tokens"),
    ] {
        let r = send_json(method, &w.host.url(path), t, &json!({})).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    assert_eq!(get(&w.host.url("/metrics"), t).await.status, 401);
    assert_eq!(get(&w.host.url("/metrics"), None).await.status, 401);
    // Two credentials: neither is believed, in either order.
    let operator = format!("Bearer {TOKEN}");
    for pair in [
        [operator.as_str(), "Bearer x"],
        ["Bearer x", operator.as_str()],
    ] {
        let r = request(
            "GET",
            &w.host.url("/v1/merchants"),
            &[("authorization", pair[0]), ("authorization", pair[1])],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, 401, "{pair:?}: {}", r.text());
    }
    let m = get(&w.host.url("/metrics"), Some(TOKEN)).await;
    assert_eq!(m.status, 200);
    assert!(m.text().contains("payhost_http_requests_total"));
    // The admin and /metrics answer their own paths only: another way of writing them
    // (`//admin`, `/admin/%75sers`, a trailing slash) would walk around a balancer's
    // `path_beg /admin` access list, so it is a 404.
    for path in ["//metrics", "/metrics/"] {
        assert_eq!(
            get(&w.host.url(path), Some(TOKEN)).await.status,
            404,
            "{path}"
        );
    }
    let (cookie, _) = admin_login(&w.host.url(""), ADMIN_PASSWORD).await;
    for (path, status) in [
        ("/admin/users", 200),
        ("//admin/users", 404),
        ("/admin//users", 404),
        ("/admin/%75sers", 404),
        ("/admin/users/", 404),
        ("//admin", 404),
    ] {
        let r = request("GET", &w.host.url(path), &[("cookie", &cookie)], Vec::new()).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }

    // The CLI: printed once, usable at once (the running host reads the same database).
    let out = std::process::Command::new(conformance::host::payhost_binary())
        .args(["token", "create", "--merchant", "a", "--config"])
        .arg(&w.host.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(cli_token.starts_with("phm_"));
    assert_eq!(
        get(
            &w.host.url("/v1/merchants/a/notifications"),
            Some(&cli_token)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        get(
            &w.host.url("/v1/merchants/shop/notifications"),
            Some(&cli_token)
        )
        .await
        .status,
        403
    );

    let revoked = request(
        "DELETE",
        &w.host.url(&format!("/v1/merchants/shop/tokens/{tid}")),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        get(&w.host.url("/v1/merchants/shop/notifications"), t)
            .await
            .status,
        401
    );
    // The database holds hashes only.
    let db = rusqlite::Connection::open(w.host.dir.join("payhost.db")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM api_tokens WHERE token_sha256 = ?1 OR token_sha256 = ?2",
            [&token, &cli_token],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

/// `metrics_listen`: /metrics without a token on its own address.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_on_a_separate_address() {
    let port = free_port();
    let w = world(
        "sec-metrics",
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
        "",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = get(&format!("http://127.0.0.1:{port}/metrics"), None).await;
    assert_eq!(m.status, 200);
    assert!(m.text().contains("payhost_webhooks_pending"));
    assert_eq!(get(&w.host.url("/metrics"), None).await.status, 401);
}

/// Finding 7: return_url is restricted to the merchant's shop_origins when set.
#[tokio::test(flavor = "multi_thread")]
async fn return_url_must_be_on_a_shop_origin() {
    let w = world("sec-origins", "", "").await;
    let alipay_gw = w.alipay.gateway_url();
    let verify = w.alipay.verify_url();
    let r = send_json(
        "PUT",
        &w.host.url("/v1/merchants/limited"),
        Some(TOKEN),
        &json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER, "gateway_url": alipay_gw,
                "notify_verify_url": verify, "shop_origins": ["https://shop.example", "http://127.0.0.1:8000/"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pay = |url: &str, no: &str| {
        let (target, body) = (
            w.host.url("/v1/merchants/limited/payments"),
            json!({"out_trade_no": no, "subject": "s", "total_fee": "1.00", "return_url": url}),
        );
        async move { send_json("POST", &target, Some(TOKEN), &body).await }
    };
    let bad = pay("https://evil.example/r", "O1").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "return_url");
    assert_eq!(
        pay("https://shop.example.evil.example/r", "O1")
            .await
            .status,
        400
    );
    assert_eq!(
        pay("https://shop.example/return?x=1", "O1").await.status,
        201
    );
    assert_eq!(pay("http://127.0.0.1:8000/r", "O2").await.status, 201);
    let bad_origin = send_json(
        "PUT",
        &w.host.url("/v1/merchants/limited"),
        Some(TOKEN),
        &json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER, "shop_origins": ["https://shop.example/path"]}),
    )
    .await;
    assert_eq!(bad_origin.status, 400);
}

/// A shop refusing its webhooks is shown on the admin pages while they are retried, not only
/// once they are given up on (3 days by default): the overview says so, and the dead letters'
/// page and the merchant's page list each with its order and the shop's answer.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_being_retried_are_shown_before_they_are_given_up() {
    let w = world(
        "sec-retrying",
        "",
        "\n[webhooks]\nretry_base_ms = 60000\nretry_max_ms = 60000\n",
    )
    .await;
    w.shop.answer(|_: &Seen| (500, b"down".to_vec()));
    create(&w, "shop", "R1").await;
    w.alipay.issue("n-R1");
    let r = notify(
        &w,
        "shop",
        &alipay::md5_notify_body(&trade("R1", "n-R1", "TRADE_SUCCESS"), MD5_KEY),
    )
    .await;
    assert_eq!(r.text(), "success");
    wait_for(|| !events(&w, "/hook").is_empty(), "the first attempt").await;
    let (cookie, csrf) = admin_login(&w.host.url(""), ADMIN_PASSWORD).await;
    let page = async |path: &str| {
        request("GET", &w.host.url(path), &[("cookie", &cookie)], Vec::new())
            .await
            .text()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut overview = page("/admin").await;
    while !overview.contains("id=\"webhooks-retrying\"") {
        assert!(Instant::now() < deadline, "never shown: {overview}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        overview = page("/admin").await;
    }
    assert!(overview.contains("/admin/webhooks#retrying"), "{overview}");
    for path in ["/admin/webhooks", "/admin/merchants/shop"] {
        let text = page(path).await;
        let table = text
            .split("id=\"retrying-webhooks\"")
            .nth(1)
            .unwrap_or_else(|| panic!("{path}: {text}"));
        assert!(
            table.contains(">R1</a>")
                && table.contains("payment.paid")
                && table.contains("HTTP 500")
                && table.contains("id=\"retry-now\""),
            "{path}: {table}"
        );
    }
    // The owner of another merchant sees none of it.
    payhost::admin_users::add(
        w.host.app().store.as_ref(),
        &payhost::admin_users::NewUser {
            name: "owner-a",
            role: "owner",
            merchants: &["a".to_owned()],
            password: "owner-a-password-0123",
            created_by: "test",
            configured: &[],
        },
    )
    .await
    .unwrap();
    let (other, _) =
        conformance::host::admin_login_as(&w.host.url(""), "owner-a", "owner-a-password-0123")
            .await;
    for path in ["/admin", "/admin/webhooks"] {
        let text = request("GET", &w.host.url(path), &[("cookie", &other)], Vec::new())
            .await
            .text();
        assert!(
            !text.contains("webhooks-retrying")
                && !text.contains("retrying-webhooks")
                && !text.contains("R1"),
            "{path}: {text}"
        );
    }
    // Another merchant's owner cannot make them due.
    let other_page = request(
        "GET",
        &w.host.url("/admin/webhooks"),
        &[("cookie", &other)],
        Vec::new(),
    )
    .await
    .text();
    let other_csrf = other_page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("no csrf: {other_page}"))
        .to_owned();
    let refused = request(
        "POST",
        &w.host.url("/admin/webhooks/retry-now"),
        &[
            ("cookie", &other),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={other_csrf}&merchant=shop").into_bytes(),
    )
    .await;
    assert_eq!(refused.status, 404, "{}", refused.text());
    // Once the shop is fixed, "send now" delivers them (the next interval is a minute away),
    // and they are no longer listed.
    w.shop.answer(|_: &Seen| (200, b"ok".to_vec()));
    let sent = admin_post(
        &w.host.url(""),
        "/admin/webhooks/retry-now",
        &cookie,
        &format!("csrf={csrf}&merchant=shop"),
    )
    .await;
    assert!(sent.contains("立即重发的通知数： 1"), "{sent}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while page("/admin").await.contains("id=\"webhooks-retrying\"") {
        assert!(Instant::now() < deadline, "still shown once delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finding 7: failed webhooks are retried for the configured window, then dead-lettered and
/// listed on the admin page, where "resend" queues them again; a huge answer is not read whole.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_dead_lettered_then_resent_from_the_admin_page() {
    let w = world(
        "sec-dead",
        "",
        "\n[webhooks]\nretry_base_ms = 50\nretry_max_ms = 100\ngive_up_after_ms = 400\n",
    )
    .await;
    w.shop.answer(|_: &Seen| (500, b"down".to_vec()));
    create(&w, "shop", "W1").await;
    w.alipay.issue("n-W1");
    let r = notify(
        &w,
        "shop",
        &alipay::md5_notify_body(&trade("W1", "n-W1", "TRADE_SUCCESS"), MD5_KEY),
    )
    .await;
    assert_eq!(r.text(), "success");
    let (cookie, csrf) = admin_login(&w.host.url(""), ADMIN_PASSWORD).await;
    let page = || async {
        request(
            "GET",
            &w.host.url("/admin/merchants/shop"),
            &[("cookie", &cookie)],
            Vec::new(),
        )
        .await
        .text()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = page().await;
    while !text.contains("/resend") {
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = page().await;
    }
    let attempts = events(&w, "/hook").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events(&w, "/hook").len(),
        attempts,
        "no retries after the dead letter"
    );
    let wid = text
        .split("/webhooks/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // The shop is back, answering 200 with 1 MiB: delivered, the answer not read whole.
    w.shop.answer(|_: &Seen| (200, vec![b'x'; 1 << 20]));
    let resent = admin_post(
        &w.host.url(""),
        &format!("/admin/merchants/shop/webhooks/{wid}/resend"),
        &cookie,
        &format!("csrf={csrf}"),
    )
    .await;
    assert!(resent.contains("已重新排队"), "{resent}");
    let db = rusqlite::Connection::open(w.host.dir.join("payhost.db")).unwrap();
    wait_for(
        || {
            db.query_row(
                "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                == 1
        },
        "the resent webhook delivered",
    )
    .await;
}

/// "Resend all" resends all: the page lists 500 dead letters at most, and the button went
/// through only those (a second click for the rest, and the count said 500).
#[tokio::test(flavor = "multi_thread")]
async fn resend_all_resends_more_than_one_page_of_dead_letters() {
    let w = world("sec-dead-many", "", "").await;
    w.shop.answer(|_: &Seen| (200, b"ok".to_vec()));
    let db = rusqlite::Connection::open(w.host.dir.join("payhost.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let url = w.shop.url("/hook");
    let tx = db.unchecked_transaction().unwrap();
    for i in 0..510 {
        tx.execute(
            "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, attempts, next_attempt_ms, last_error, created_ms, dead_at, event_type)
             VALUES (?1, 'shop', ?2, '{}', 3, 0, 'down', 0, '2026-12-01T00:00:00Z', 'payment.paid')",
            rusqlite::params![format!("evt_many_{i}"), url],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let dead = || {
        db.query_row(
            "SELECT COUNT(*) FROM webhook_outbox WHERE dead_at IS NOT NULL AND delivered_at IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    assert_eq!(dead(), 510);
    let (cookie, csrf) = admin_login(&w.host.url(""), ADMIN_PASSWORD).await;
    let said = admin_post(
        &w.host.url(""),
        "/admin/webhooks/resend-all",
        &cookie,
        &format!("csrf={csrf}&merchant=shop"),
    )
    .await;
    assert_eq!(dead(), 0, "{said}");
    assert!(said.contains("510"), "{said}");
}

/// Finding 7: the compile cache is deserialised only when it matches the sha256 beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_compile_cache_is_recompiled_not_loaded() {
    let alipay = AlipayStub::start().await;
    let dir = temp_dir("sec-cache");
    let cache = dir.join("cache");
    let port = free_port();
    let shared = conformance::target_dir().join("payhost-test-cache");
    let config = config_head(port, TOKEN, "").replace(
        &format!("cache_dir = \"{}\"", shared.display()),
        &format!("cache_dir = \"{}\"", cache.display()),
    ) + &format!(
        "\n[merchants.shop]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"{SELLER}\"\ngateway_url = \"{}\"\n",
        alipay.gateway_url()
    );
    let mut host = Payhost::start(&dir, &config);
    host.terminate();
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cached artifact");
    assert!(std::path::Path::new(&format!("{}.sha256", artifact.display())).exists());
    let mut bytes = std::fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&artifact, bytes).unwrap();
    let mut host = Payhost::start(&dir, &config);
    assert!(
        host.log_text().contains("integrity check"),
        "{}",
        host.log_text()
    );
    assert_eq!(get(&host.url("/healthz"), None).await.status, 200);
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/shop/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "C1", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
    )
    .await;
    assert_eq!(
        r.status,
        201,
        "the recompiled component works: {}",
        r.text()
    );
    host.terminate();
}

/// Finding 1: SSRF with the answer read back. Provider URLs that arrive through the API must use
/// an origin the operator allowed; a loopback service nobody allowed receives nothing, whether it
/// is named as a provider URL or as a shop webhook; and what an upstream answered is never echoed
/// to the API caller.
#[tokio::test(flavor = "multi_thread")]
async fn provider_and_webhook_urls_cannot_reach_internal_services() {
    // The "internal service" (a metadata endpoint) on loopback, holding a secret.
    let internal =
        StubServer::start(|_: &Seen| (200, b"SECRET-INSTANCE-CREDENTIALS".to_vec())).await;
    // `internal` below is written in payhost.toml by the operator: it may reach the stub.
    let operator_table = format!(
        "\n[merchants.internal]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"{SELLER}\"\npaychannel_url = \"{}\"\n",
        internal.url("/latest/meta-data/")
    );
    let w = world("sec-ssrf", "", &operator_table).await;
    let internal_other_port = StubServer::start(|_: &Seen| (200, b"SECRET-2".to_vec())).await;

    // 1. Through the API, provider URLs to origins nobody allowed are refused, naming the field.
    for (field, url) in [
        (
            "paychannel_url",
            internal_other_port.url("/latest/meta-data/"),
        ),
        (
            "notify_verify_url",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ),
        ("gateway_url", internal_other_port.url("/gw")),
    ] {
        let mut body = json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER});
        body[field] = json!(url);
        let r = send_json("PUT", &w.host.url("/v1/merchants/evil"), Some(TOKEN), &body).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert!(
            r.text().contains(field) && r.text().contains("allowed_origins"),
            "{}",
            r.text()
        );
    }
    // Every bad field in one answer: the URL outside the policy and what the component refuses.
    let body = json!({"partner": "123", "key": "short", "seller_email": SELLER,
        "gateway_url": internal_other_port.url("/gw")});
    let r = send_json("PUT", &w.host.url("/v1/merchants/evil"), Some(TOKEN), &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let fields: Vec<String> = r.json()["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.text()))
        .iter()
        .map(|f| f["field"].as_str().unwrap_or_default().to_owned())
        .collect();
    for field in ["gateway_url", "partner", "key"] {
        assert!(fields.iter().any(|f| f == field), "{field}: {}", r.text());
    }
    assert!(internal_other_port.requests().is_empty());

    // 2. An operator-configured URL may reach loopback, but what it answered is not echoed.
    let r = get(&w.host.url("/v1/merchants/internal/channels"), Some(TOKEN)).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains("SECRET"), "{}", r.text());
    assert!(r.text().contains("correlation id"), "{}", r.text());
    assert_eq!(
        internal.requests().len(),
        1,
        "the operator allowed this one"
    );

    // 3. A shop webhook URL on a loopback address the operator did not allow is refused when
    //    saved (the sender would refuse every delivery: the owner sees why now, not in 3 days)...
    let mut hooked = json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER,
            "gateway_url": w.alipay.gateway_url(), "notify_verify_url": w.alipay.verify_url(),
            "shop_webhook_url": internal_other_port.url("/hook"),
            "shop_webhook_secret": HOOK_SECRET});
    let r = send_json(
        "PUT",
        &w.host.url("/v1/merchants/hooked"),
        Some(TOKEN),
        &hooked,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["error"]["field"],
        "shop_webhook_url",
        "{}",
        r.text()
    );
    assert!(r.text().contains("non-public"), "{}", r.text());
    // The same address in the older numeric spellings the system resolver still reads without a
    // lookup (inet_aton's): refused as well, not accepted to fail at every send.
    let port = internal_other_port.addr.port();
    for host in [
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.0.0.01",
    ] {
        let mut spelled = hooked.clone();
        spelled["shop_webhook_url"] = json!(format!("http://{host}:{port}/hook"));
        let r = send_json(
            "PUT",
            &w.host.url("/v1/merchants/hooked"),
            Some(TOKEN),
            &spelled,
        )
        .await;
        assert_eq!(r.status, 400, "{host}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "shop_webhook_url", "{host}");
        assert!(r.text().contains("non-public"), "{host}: {}", r.text());
    }
    // ...and one that reaches loopback all the same (a name resolving there, or a row saved
    //    before this rule: written into the store here) is refused at connect time: the payment
    //    is applied, the stub receives nothing.
    hooked["shop_webhook_url"] = serde_json::Value::Null;
    let r = send_json(
        "PUT",
        &w.host.url("/v1/merchants/hooked"),
        Some(TOKEN),
        &hooked,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let store = &w.host.app().store;
    let mut m = store.merchant("hooked").await.unwrap().unwrap();
    m.shop_webhook_url = Some(internal_other_port.url("/hook"));
    store
        .save_merchant("hooked", &m, payhost::store::Expected::Anything)
        .await
        .unwrap();
    create(&w, "hooked", "SSRF1").await;
    w.alipay.issue("n-SSRF1");
    let body = alipay::md5_notify_body(&trade("SSRF1", "n-SSRF1", "TRADE_SUCCESS"), MD5_KEY);
    assert_eq!(notify(&w, "hooked", &body).await.text(), "success");
    let db = w.host.dir.join("payhost.db");
    wait_for(
        || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.query_row(
                "SELECT last_error FROM webhook_outbox WHERE merchant_id = 'hooked'",
                [],
                |r| r.get::<_, Option<String>>(0),
            )
            .ok()
            .flatten()
            .is_some_and(|e| e.contains("non-public"))
        },
        "the refused webhook attempt",
    )
    .await;
    assert!(
        internal_other_port.requests().is_empty(),
        "no request reached the internal service"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 22: the black-box probe's findings.

/// A host behind haproxy (`option forwardfor`), as the README suggests: `top` lines and `tables`
/// are added to the host's configuration.
fn behind_haproxy(
    name: &str,
    top: &str,
    tables: &str,
) -> (Payhost, conformance::postgres::Balancer) {
    let dir = temp_dir(name);
    let port = free_port();
    let lb = conformance::postgres::Balancer::start(name, &[port]);
    let config = config_head(port, TOKEN, "")
        .replacen("\n[plugin]", &format!("\n{top}\n[plugin]"), 1)
        + &format!(
            "\n[merchants.shop]\npartner = \"{PARTNER}\"\nkey = \"{MD5_KEY}\"\nseller_email = \"{SELLER}\"\n{tables}"
        );
    let host = Payhost::start(&dir, &config);
    lb.wait_ready("/readyz");
    (host, lb)
}

/// A notify refused for its declared size (413) behind haproxy: the answer reaches the client.
/// Closed with the body unread, the connection was reset under the answer, and haproxy often
/// passed on nothing at all (an empty reply instead of the 413). After the answer, what the
/// client still sends is read (up to a bound) and thrown away before the connection closes.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_notify_behind_haproxy_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_host, lb) = behind_haproxy("sec-413", "", "");
    for size in [70 * 1024, 300 * 1024] {
        for attempt in 0..8 {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", lb.port))
                .await
                .unwrap();
            let head = format!(
                "POST /notify/shop HTTP/1.1\r\nHost: pay.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            // The client sends its whole body (as a real client does), whatever comes back.
            let _ = s.write_all(&vec![b'a'; size]).await;
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                s.read_to_end(&mut answer),
            )
            .await;
            let text = String::from_utf8_lossy(&answer);
            assert!(
                text.starts_with("HTTP/1.1 413"),
                "{size} bytes, attempt {attempt}: {text:?}"
            );
        }
    }
}

/// Finding 1 (issue 22): forged notifies to a known merchant are kept as bounded records (first
/// 1 KiB, size, SHA-256, reason, source address), at most the quota per merchant (the newest).
#[tokio::test(flavor = "multi_thread")]
async fn forged_notifies_to_a_known_merchant_are_bounded_records() {
    let mut w = process_world("sec-forged", "", "").await;
    let body = format!(
        "notify_id=forged&out_trade_no=F1&trade_status=TRADE_SUCCESS&sign=00&sign_type=MD5&pad={}",
        "x".repeat(30 * 1024)
    );
    for _ in 0..100 {
        let r = notify(&w, "shop", &body).await;
        assert_eq!(r.status, 400, "{}", r.text());
    }
    let db = rusqlite::Connection::open(w.host.dir.join("payhost.db")).unwrap();
    let stored = |db: &rusqlite::Connection| -> (i64, i64) {
        db.query_row(
            "SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM raw_notifications WHERE merchant_id = 'shop'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(
        stored(&db),
        (100, 100 * 1024),
        "1 KiB of each 30 KiB forged body"
    );
    let (size, digest, remote): (i64, String, String) = db
        .query_row(
            "SELECT MAX(body_size), MAX(body_sha256), MAX(remote_addr) FROM raw_notifications WHERE merchant_id = 'shop'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(size, body.len() as i64);
    use sha2::Digest;
    assert_eq!(digest, hex::encode(sha2::Sha256::digest(body.as_bytes())));
    assert_eq!(remote, "127.0.0.1");
    // Still listed for the operator, with the reason.
    let list = get(
        &w.host.url("/v1/merchants/shop/notifications?limit=1000"),
        Some(TOKEN),
    )
    .await
    .json();
    let list = list["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 100);
    assert!(
        list.iter().all(|n| n["outcome"] == "bad_signature"),
        "{list:?}"
    );

    // With a quota of 20 the newest 20 stay, whatever keeps coming.
    let config = std::fs::read_to_string(&w.host.config).unwrap()
        + "\n[retention]\nrefused_notifications_per_merchant = 20\n";
    std::fs::write(&w.host.config, config).unwrap();
    w.host.restart();
    for _ in 0..30 {
        assert_eq!(notify(&w, "shop", &body).await.status, 400);
    }
    assert_eq!(stored(&db), (20, 20 * 1024));
    // A genuine notify afterwards is kept whole, outside the quota.
    create(&w, "shop", "G1").await;
    w.alipay.issue("n-G1");
    let genuine = alipay::md5_notify_body(&trade("G1", "n-G1", "TRADE_SUCCESS"), MD5_KEY);
    assert_eq!(notify(&w, "shop", &genuine).await.text(), "success");
    let whole: i64 = db
        .query_row(
            "SELECT length(body) FROM raw_notifications WHERE refused = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(whole, genuine.len() as i64);
}

/// Finding 2 (issue 22): behind haproxy, a client's own `X-Forwarded-For` does not make it
/// another address: login throttling and the recorded source address see the real client.
#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_written_by_the_client_is_not_believed_behind_haproxy() {
    let (host, lb) = behind_haproxy(
        "sec-xff",
        "trusted_proxies = [\"127.0.0.1/32\"]",
        "[admin]\nlogin_failures_per_minute = 3\n",
    );
    let login = lb.base() + "/admin/login";
    for i in 0..3 {
        let forged = format!("203.0.113.{i}");
        let (status, _, _) = request_from(
            "127.0.0.2",
            &login,
            "POST",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-for", &forged),
            ],
            "password=wrong",
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, head, _) = request_from(
        "127.0.0.2",
        &login,
        "POST",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-for", "198.51.100.77"),
        ],
        &format!("password={ADMIN_PASSWORD}"),
    )
    .await;
    assert_eq!(
        status, 429,
        "a forged X-Forwarded-For escaped the throttle: {head}"
    );
    // Another client (127.0.0.3) is not throttled: the limit is the client's, not haproxy's.
    let (status, _, _) = request_from(
        "127.0.0.3",
        &login,
        "POST",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("password={ADMIN_PASSWORD}"),
    )
    .await;
    assert_eq!(status, 303);
    // The notify's recorded source is the client haproxy saw.
    let (status, _, _) = request_from(
        "127.0.0.2",
        &(lb.base() + "/notify/shop"),
        "POST",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
        "sign=00&notify_id=x",
    )
    .await;
    assert_eq!(status, 400);
    let db = rusqlite::Connection::open(host.dir.join("payhost.db")).unwrap();
    let remote: String = db
        .query_row("SELECT remote_addr FROM raw_notifications", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(remote, "127.0.0.2");
}

/// Finding 5 (issue 22): merchant ids that break the rule are 404 before anything else, made-up
/// ids never reach the per-merchant limiter, and an IPv6 caller is limited by its /64 (the
/// caller's address arrives from a trusted proxy on loopback: `trust_proxy = true`).
#[tokio::test(flavor = "multi_thread")]
async fn merchant_ids_are_checked_first_and_ipv6_callers_are_limited_per_64() {
    let w = world(
        "sec-ids",
        "trust_proxy = true",
        "\n[limits]\nnotify_per_merchant_per_s = 2\napi_per_ip_per_s = 5\n",
    )
    .await;
    // Unknown (valid) and over-long ids: 404 every time, never 429.
    let long = "m".repeat(200);
    for id in ["nosuch", long.as_str(), "bad%20id"] {
        for _ in 0..10 {
            let r = post_form(&w.host.url(&format!("/notify/{id}")), "a=b").await;
            assert_eq!(r.status, 404, "{id}: {}", r.text());
        }
    }
    // The known merchant is still limited.
    let limited = {
        let mut n = 0;
        for _ in 0..10 {
            if notify(&w, "shop", "a=b").await.status == 429 {
                n += 1;
            }
        }
        n
    };
    assert!(limited >= 5, "only {limited} of 10 limited");
    // An id of 65 characters on the API: 404 before the token is even looked at.
    let id65 = "a".repeat(65);
    for (method, token) in [("GET", None), ("PUT", Some(TOKEN))] {
        let r = send_json(
            method,
            &w.host.url(&format!("/v1/merchants/{id65}")),
            token,
            &json!({"partner": PARTNER, "key": MD5_KEY, "seller_email": SELLER}),
        )
        .await;
        assert_eq!(r.status, 404, "{method}: {}", r.text());
    }
    // 20 addresses of one /64: one bucket of 5.
    let mut refused = 0;
    for i in 0..20 {
        let xff = format!("2001:db8:1:2::{:x}", i + 1);
        let r = request(
            "GET",
            &w.host.url("/v1/merchants/shop/payments/none"),
            &[
                ("authorization", &format!("Bearer {TOKEN}")),
                ("x-forwarded-for", &xff),
            ],
            Vec::new(),
        )
        .await;
        if r.status == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 14, "only {refused} of 20 limited");
    // Another /64 has its own bucket.
    let other = request(
        "GET",
        &w.host.url("/v1/merchants/shop/payments/none"),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("x-forwarded-for", "2001:db8:1:3::1"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(other.status, 404, "{}", other.text());
}

/// Finding 6 (issue 22): behind haproxy the request's Host is the balancer's; `public_url`
/// decides the cookie's `Secure` and the admin's Origin check.
#[tokio::test(flavor = "multi_thread")]
async fn public_url_decides_secure_cookies_and_the_admin_origin_behind_haproxy() {
    let (host, lb) = behind_haproxy("sec-public", "", "");
    let config = std::fs::read_to_string(&host.config).unwrap();
    drop(host);
    let port = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let public = config.replace(
        &format!("public_url = \"http://127.0.0.1:{port}\""),
        "public_url = \"https://pay.example.com\"",
    );
    let dir = temp_dir("sec-public-2");
    let _host = Payhost::start(&dir, &public);
    lb.wait_ready("/readyz");
    let base = lb.base();
    let login = post_form(
        &format!("{base}/admin/login"),
        &format!("password={ADMIN_PASSWORD}"),
    )
    .await;
    assert_eq!(login.status, 303, "{}", login.text());
    let set = login.header("set-cookie").unwrap();
    assert!(set.contains("; Secure"), "public_url is https: {set}");
    let (cookie, csrf) = admin_login(&base, ADMIN_PASSWORD).await;
    let post = |origin: String, id: &'static str| {
        let (cookie, url) = (cookie.clone(), format!("{base}/admin/merchants"));
        let body = format!("csrf={csrf}&id={id}");
        async move {
            request(
                "POST",
                &url,
                &[
                    ("cookie", cookie.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("origin", origin.as_str()),
                ],
                body.into_bytes(),
            )
            .await
            .status
        }
    };
    assert_eq!(post("https://pay.example.com".into(), "m1").await, 303);
    // The balancer's own address (what Host says) is not the public origin.
    assert_eq!(post(base.clone(), "m2").await, 403);
    assert_eq!(post("http://pay.example.com".into(), "m3").await, 403);
    assert_eq!(
        post("https://pay.example.com.evil.example".into(), "m4").await,
        403
    );
}

/// Finding 7 (issue 22): routes that do not exist are 404 for every caller (a merchant token
/// learns nothing from a 403), a path that exists asked with another method 405 for every caller
/// (the router's answer, before any token is read); routes that exist but are not its own stay
/// 403.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_404_for_every_caller() {
    let w = world("sec-routes", "", "").await;
    let made = send_json(
        "POST",
        &w.host.url("/v1/merchants/shop/tokens"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    let token = made.json()["token"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("GET", "/v1/merchants/shop/secret-route"),
        ("GET", "/v1/nothing"),
        ("POST", "/v1/merchants/shop/payments/x/refund"),
    ] {
        for t in [Some(token.as_str()), Some(TOKEN), None] {
            let r = send_json(method, &w.host.url(path), t, &json!({})).await;
            assert_eq!(r.status, 404, "{method} {path} ({t:?}): {}", r.text());
        }
    }
    for (method, path, allow) in [
        (
            "PATCH",
            "/v1/merchants/shop",
            "PUT, GET, HEAD, DELETE, OPTIONS",
        ),
        (
            "DELETE",
            "/v1/merchants/shop/payments/x",
            "GET, HEAD, OPTIONS",
        ),
    ] {
        for t in [Some(token.as_str()), Some(TOKEN), None] {
            let r = send_json(method, &w.host.url(path), t, &json!({})).await;
            assert_eq!(r.status, 405, "{method} {path} ({t:?}): {}", r.text());
            assert_eq!(r.header("allow").as_deref(), Some(allow), "{method} {path}");
        }
    }
    // HEAD is a GET without its body (RFC 9110 section 9.3.2); OPTIONS names a path's methods (a
    // balancer's plain `option httpchk` sends `OPTIONS /`).
    for path in ["/healthz", "/readyz", "/admin"] {
        let got = request("GET", &w.host.url(path), &[], vec![]).await;
        let head = request("HEAD", &w.host.url(path), &[], vec![]).await;
        assert_eq!(head.status, got.status, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} has no body");
        assert_eq!(
            head.header("content-type"),
            got.header("content-type"),
            "HEAD {path}"
        );
    }
    let head = request("HEAD", &w.host.url("/notify/shop"), &[], vec![]).await;
    assert_eq!(head.status, 405);
    assert_eq!(head.header("allow").as_deref(), Some("POST, OPTIONS"));
    for (path, allow) in [
        ("/", "GET, HEAD, OPTIONS"),
        ("/notify/shop", "POST, OPTIONS"),
        ("/admin/payments", "GET, HEAD, POST, OPTIONS"),
    ] {
        let r = request("OPTIONS", &w.host.url(path), &[], vec![]).await;
        assert_eq!(r.status, 204, "OPTIONS {path}");
        assert_eq!(r.header("allow").as_deref(), Some(allow), "OPTIONS {path}");
    }
    let r = request("OPTIONS", &w.host.url("/nothing-here"), &[], vec![]).await;
    assert_eq!(r.status, 404);
    for method in ["PUT", "DELETE", "TRACE", "FOO"] {
        let r = request(method, &w.host.url("/admin"), &[], vec![]).await;
        assert_eq!(r.status, 405, "{method} /admin");
        assert_eq!(
            r.header("allow").as_deref(),
            Some("GET, HEAD, POST, OPTIONS")
        );
    }
    // An HTTP/1.1 request names its host exactly once.
    for head in [
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        // An absolute-form target needs its Host all the same.
        "GET http://a/healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(w.host.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
    }
    let mut s = std::net::TcpStream::connect(w.host.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "HTTP/1.0 needs no Host: {answer}"
    );
    let mut s = std::net::TcpStream::connect(w.host.addr).unwrap();
    s.write_all(b"GET http://a/healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "absolute-form with Host: {answer}"
    );
    // Requests hyper cannot parse get its status with payhost's one error body.
    let long_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    for (head, status, code) in [
        ("GARBAGE\r\n\r\n", "400", "bad_request"),
        ("GET /healthz HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", "400", "bad_request"),
        (
            "POST /notify/shop HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
            "400",
            "bad_request",
        ),
        (long_head.as_str(), "431", "headers_too_large"),
    ] {
        let mut s = std::net::TcpStream::connect(w.host.addr).unwrap();
        let _ = s.write_all(head.as_bytes());
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        let (top, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(top.contains("content-type: application/json"), "{top}");
        // The headers every answer carries, hyper's included.
        assert!(
            top.contains("x-content-type-options: nosniff") && top.contains("cache-control: no-store"),
            "{top}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect(body);
        assert_eq!(json["error"]["code"], code, "{body}");
    }
    // A body framed by another transfer coding than `chunked` alone is refused with 501 and the
    // connection closed: what follows that body is never taken for a request of its own.
    let smuggled = "0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    for (coding, host) in [
        ("gzip, chunked", "Host: a\r\n"),
        ("identity, chunked", "Host: a\r\n"),
        ("Gzip , CHUNKED", "Host: a\r\n"),
        // Before the Host rule, whose 400 would keep the connection.
        ("gzip, chunked", ""),
    ] {
        let mut s = std::net::TcpStream::connect(w.host.addr).unwrap();
        s.write_all(
            format!(
                "POST /notify/shop HTTP/1.1\r\n{host}Transfer-Encoding: {coding}\r\n\r\n{smuggled}"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 501"), "{coding}: {answer}");
        assert!(answer.contains("\"code\":\"not_implemented\""), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{coding}: {answer}");
    }
    // `chunked` alone is read as usual (a notify with an empty body: 400, not 501).
    let mut s = std::net::TcpStream::connect(w.host.addr).unwrap();
    s.write_all(
        b"POST /notify/shop HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    // The notify's own refusal of an empty form: the provider's reply word.
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nfail"), "{answer}");
    // Headers past 64 KiB are refused before anything is routed.
    let big = "a".repeat(100 * 1024);
    let r = request("GET", &w.host.url("/healthz"), &[("x-big", &big)], vec![]).await;
    assert_eq!(r.status, 431);
    let fine = "a".repeat(16 * 1024);
    let r = request("GET", &w.host.url("/healthz"), &[("x-big", &fine)], vec![]).await;
    assert_eq!(r.status, 200);
    let r = get(&w.host.url("/v1/merchants/shop/tokens"), Some(&token)).await;
    assert_eq!(r.status, 403, "an existing route, not the token's");
    // Removing a merchant is the operator's (`DELETE /v1/merchants/{id}` exists): 403 for the
    // merchant's own token.
    let r = send_json(
        "DELETE",
        &w.host.url("/v1/merchants/shop"),
        Some(&token),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
}

/// Finding 4 (issue 22): the compile cache is used only when it is private to payhost's user, and
/// the demo's lives in a per-user directory, never a fixed path under $TMPDIR.
#[tokio::test(flavor = "multi_thread")]
async fn the_compile_cache_must_be_private_and_the_demo_uses_a_per_user_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("sec-cache-owner");
    let cache = dir.join("cache");
    let port = free_port();
    let shared = conformance::target_dir().join("payhost-test-cache");
    let config = config_head(port, TOKEN, "").replace(
        &format!("cache_dir = \"{}\"", shared.display()),
        &format!("cache_dir = \"{}\"", cache.display()),
    );
    let mut host = Payhost::start(&dir, &config);
    host.terminate();
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let mut again = Payhost::start(&dir, &config);
    assert!(
        again.log_text().contains("compile=[Cache]"),
        "{}",
        again.log_text()
    );
    again.terminate();
    // Another user could have written this directory: the valid artifact in it is not loaded.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(&again.log, "").unwrap();
    let mut opened = Payhost::start(&dir, &config);
    let log = opened.log_text();
    assert!(log.contains("not private to this user"), "{log}");
    assert!(log.contains("compile=[Compiled]"), "{log}");
    assert!(!log.contains("compile=[Cache]"), "{log}");
    opened.terminate();

    // The demo: HOME and TMPDIR of its own; nothing under $TMPDIR/payhost-demo-cache.
    let home = dir.join("home");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let port = free_port();
    let log_path = dir.join("demo.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(conformance::host::payhost_binary())
        .current_dir(conformance::repo_root())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database")
        .arg(dir.join("demo.db"))
        .env("HOME", &home)
        .env_remove("XDG_CACHE_HOME")
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .unwrap();
    conformance::host::wait_port(port, &mut child, &log_path);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !tmp.join("payhost-demo-cache").exists(),
        "a fixed path under $TMPDIR"
    );
    let own = home.join(".cache/payhost/demo");
    let md = std::fs::metadata(&own).expect("the demo's per-user cache");
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    assert!(std::fs::read_dir(&own).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "cwasm")));
}

/// Conformance (a): an `app` payment for an MD5 merchant is bad input: 400 naming `sign_type`
/// and its rule, not a 500.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_payment_for_an_md5_merchant_is_a_400_naming_sign_type() {
    let w = world("sec-app-md5", "", "").await;
    let r = send_json(
        "POST",
        &w.host.url("/v1/merchants/shop/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "A1", "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r", "product": "app"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["field"], "sign_type");
    assert_eq!(e["code"], "invalid_request");
    assert!(
        e["message"].as_str().unwrap().contains("must be RSA"),
        "{e}"
    );
}

/// A merchant slot (made for a shop that has not saved its Alipay settings yet) is not a server
/// fault: its notifications are answered as for an unknown merchant (404, nothing stored: nothing
/// can be genuine), and the API's provider routes say what to do (409
/// `merchant_not_configured`), not 500 or 503. Every answer, JSON and text alike, is kept by no
/// cache and not sniffed.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_without_settings_is_not_a_server_fault() {
    let w = world("sec-slot", "", "").await;
    let base = w.host.url("");
    let (cookie, csrf) = admin_login(&base, ADMIN_PASSWORD).await;
    let page = admin_post(
        &base,
        "/admin/slots",
        &cookie,
        &format!("csrf={csrf}&id=slot&shop_origins=https%3A%2F%2Fshop.example&label=t"),
    )
    .await;
    let token = page
        .split("<code id=\"new-token\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| panic!("no token shown: {page}"))
        .to_owned();

    let before = raw_count(&w);
    for path in ["/alipay/slot/notify", "/notify/slot"] {
        let r = post_form(&w.host.url(path), "notify_id=1&sign=x&sign_type=MD5").await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    assert_eq!(raw_count(&w), before, "nothing stored for a slot");

    let v1 = |p: &str| w.host.url(&format!("/v1/merchants/slot{p}"));
    let order = json!({"out_trade_no": "S1", "subject": "x", "total_fee": "1.00",
        "return_url": "https://shop.example/return"});
    for (method, url, body) in [
        ("GET", v1("/channels"), None),
        ("GET", v1("/reconciliation?date=2026-12-01"), None),
        ("POST", v1("/payments"), Some(&order)),
    ] {
        let r = match body {
            Some(b) => send_json(method, &url, Some(&token), b).await,
            None => get(&url, Some(&token)).await,
        };
        assert_eq!(r.status, 409, "{method} {url}: {}", r.text());
        assert_eq!(
            r.json()["error"]["code"],
            "merchant_not_configured",
            "{url}"
        );
        assert_eq!(r.json()["error"]["field"], "settings", "{url}");
    }

    // Headers on answers that are not pages: a token shown once, an error, a notify's word.
    let made = send_json(
        "POST",
        &w.host.url("/v1/merchants/shop/tokens"),
        Some(TOKEN),
        &json!({"label": "probe"}),
    )
    .await;
    let refused = get(&w.host.url("/v1/merchants/shop"), Some("wrong-token")).await;
    let word = notify(&w, "shop", "notify_id=1&sign=x").await;
    for (what, r) in [("token", &made), ("error", &refused), ("notify", &word)] {
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{what}"
        );
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{what}"
        );
    }
}

/// `payhost demo --listen 0.0.0.0:PORT` alone would hand browsers `http://0.0.0.0:PORT/…` (the
/// shop's pages, the sandbox's redirects) and refuse every admin login from a real address: it
/// is refused before it starts, saying to add `--public-url`.
#[test]
fn the_demo_on_every_address_without_a_public_url_says_to_give_one() {
    let mut child = std::process::Command::new(conformance::host::payhost_binary())
        .current_dir(conformance::repo_root())
        .args(["demo", "--listen", &format!("0.0.0.0:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Refused before it builds anything: a demo that started serving instead is killed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("payhost demo on 0.0.0.0 without --public-url was not refused: it ran");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("add --public-url http://<this machine's address>:")
            && err.contains("127.0.0.1:"),
        "{err}"
    );
}

/// `payhost demo --public-url --trusted-proxy` behind a real balancer (haproxy, `option
/// forwardfor`): the login throttle counts each client, not the balancer; a browser's login
/// through the balancer's origin is accepted; the URLs the demo prints and hands out are the
/// balancer's.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_behind_a_balancer_sees_each_client() {
    use conformance::host::{payhost_binary, wait_port};
    let dir = temp_dir("sec-demo-balancer");
    let listen = free_port();
    let lb = conformance::postgres::Balancer::start("demo", &[listen]);
    let public = lb.base();
    let log = dir.join("payhost.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(payhost_binary())
        .current_dir(conformance::repo_root())
        .args(["demo", "--listen", &format!("127.0.0.1:{listen}")])
        .args(["--public-url", &public, "--trusted-proxy", "127.0.0.1/32"])
        .args(["--admin-password", ADMIN_PASSWORD, "--api-token", TOKEN])
        .arg("--database")
        .arg(dir.join("demo.db"))
        .stdout(std::process::Stdio::from(out.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(out))
        .spawn()
        .unwrap();
    wait_port(listen, &mut child, &log);
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    lb.wait_ready("/readyz");
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(printed.contains(&format!("{public}/admin")), "{printed}");

    // One login through the balancer from `from` (a loopback address of its own).
    let login = |from: &'static str, password: &'static str| {
        let (port, origin) = (lb.port, public.clone());
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
            let mut s = socket
                .connect(format!("127.0.0.1:{port}").parse().unwrap())
                .await
                .unwrap();
            let body = format!("password={password}");
            let head = format!(
                "POST /admin/login HTTP/1.1\r\nHost: lb\r\nOrigin: {origin}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            answer
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(0)
        }
    };
    let mut last = 0;
    for _ in 0..12 {
        last = login("127.0.0.2", "wrong-password").await;
        if last == 429 {
            break;
        }
        assert_eq!(last, 401);
    }
    assert_eq!(last, 429, "the guessing client is throttled");
    // Another client through the same balancer is not, and the balancer's origin is accepted.
    assert_eq!(login("127.0.0.3", ADMIN_PASSWORD).await, 303);

    // The pay URL the shop gets is the balancer's.
    let created = send_json(
        "POST",
        &format!("{public}/v1/merchants/demo/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "LB-1", "subject": "x", "total_fee": "1.00",
            "return_url": format!("{public}/shop/return")}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let pay_url = created.json()["pay_url"].as_str().unwrap().to_owned();
    assert!(pay_url.starts_with(&format!("{public}/")), "{pay_url}");

    // The sandbox's controls (lost notifies, back-office refunds, every trade's state) answer
    // this machine only: a client of the balancer's elsewhere (as the balancer, the trusted
    // proxy, forwards it) gets 403; the buyer's cashier is still everybody's.
    let direct = format!("http://127.0.0.1:{listen}");
    let remote = [("x-forwarded-for", "203.0.113.9")];
    for (method, path) in [
        ("GET", "/sandbox/state"),
        ("POST", "/sandbox/faults"),
        ("POST", "/sandbox/refund"),
        ("POST", "/sandbox/finish"),
        ("POST", "/sandbox/openapi/refund"),
        ("POST", "/sandbox/openapi/bill-extra"),
    ] {
        let r =
            conformance::host::request(method, &format!("{direct}{path}"), &remote, b"{}".to_vec())
                .await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(r.text().contains("only this machine"), "{}", r.text());
    }
    let cashier = conformance::host::request(
        "POST",
        &format!("{direct}/sandbox/cashier/pay"),
        &remote,
        Vec::new(),
    )
    .await;
    assert_ne!(cashier.status, 403, "{}", cashier.text());
    let here = get(&format!("{direct}/sandbox/state"), None).await;
    assert_eq!(here.status, 200, "{}", here.text());
    assert!(here.text().contains("LB-1"), "{}", here.text());
}

/// A `sign_type` with a newline in it, quoted by the component in its refusal, cannot forge a
/// log line: the host escapes what the component says before it is logged. The buyer's page
/// does not show the component's text, and a burst of refusals is one line a second.
#[tokio::test(flavor = "multi_thread")]
async fn refusal_text_cannot_forge_log_lines_or_reach_the_buyer() {
    let w = world("sec-log-forge", "", "").await;
    let forged = "2026-12-04T00:00:00Z INFO payhost::server: FAKE";
    let sign_type = format!("FOO\n{forged}");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("notify_id", "n1")
        .append_pair("out_trade_no", "F1")
        .append_pair("trade_status", "TRADE_SUCCESS")
        .append_pair("sign_type", &sign_type)
        .append_pair("sign", "0123456789abcdef")
        .finish();
    let r = notify(&w, "shop", &body).await;
    assert_ne!(r.status, 200, "{}", r.text());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("out_trade_no", "F1")
        .append_pair("result", "success")
        .append_pair("sign_type", &sign_type)
        .append_pair("sign", "0123456789abcdef")
        .finish();
    let r = get(&w.host.url(&format!("/alipay/shop/return?{query}")), None).await;
    assert_eq!(r.status, 400);
    let page = r.text();
    assert!(page.contains("支付结果无法确认"), "{page}");
    assert!(
        !page.contains("FAKE") && !page.contains("FOO"),
        "the buyer's page shows the component's text: {page}"
    );
    let log = w.host.log_text();
    assert!(
        log.contains("notification refused") && log.contains("refused a return"),
        "{log}"
    );
    assert!(
        log.contains(r"FOO\n2026"),
        "the detail is logged, escaped: {log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a forged line in the log: {log}"
    );

    // A burst of refused notifies and returns: at most one line of each a second.
    let started = Instant::now();
    for _ in 0..20 {
        notify(&w, "shop", &body).await;
        get(&w.host.url(&format!("/alipay/shop/return?{query}")), None).await;
    }
    let seconds = started.elapsed().as_secs() as usize + 2;
    let log = w.host.log_text();
    for line in ["notification refused", "refused a return"] {
        let said = log.lines().filter(|l| l.contains(line)).count();
        assert!(
            said <= seconds,
            "{said} {line:?} lines in {seconds} s: {log}"
        );
    }
    assert!(log.contains("unsaid="), "{log}");
}

/// Behind a trusted proxy every client shares the proxy's connections: one client (by its
/// `X-Forwarded-For` address) has at most `max_connections_per_ip` requests in flight, so slow
/// bodies sent through the balancer cannot hold every connection; the next is a 429 in the API's
/// JSON, another client is served, and a finished request frees its place.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_behind_the_proxy_cannot_hold_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world(
        "sec-proxy-in-flight",
        "trusted_proxies = [\"127.0.0.1/32\"]",
        "\n[limits]\nmax_connections_per_ip = 4\nbody_read_timeout_ms = 20000\n",
    )
    .await;
    let slow_body = |client: &'static str| {
        let addr = w.host.addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!(
                    "POST /alipay/shop/notify HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nab"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            s
        }
    };
    // Four slow bodies from one client (its IPv6 /64): its share.
    let mut held = Vec::new();
    for i in 1..=4 {
        held.push(
            slow_body(if i % 2 == 0 {
                "2001:db8:1:2::1"
            } else {
                "2001:db8:1:2::2"
            })
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = w.host.url("/healthz");
    let from = async |client: &str| {
        request_from("127.0.0.1", &url, "GET", &[("X-Forwarded-For", client)], "").await
    };
    let (status, head, body) = from("2001:db8:1:2::99").await;
    assert_eq!(status, 429, "{head}\n{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // Another client through the same proxy is served.
    assert_eq!(from("203.0.113.7").await.0, 200);
    assert!(
        w.host.log_text().contains("requests in flight"),
        "{}",
        w.host.log_text()
    );
    // One slow request ends (its body completed): the client has a place again.
    let mut first = held.remove(0);
    first.write_all(&[b'a'; 998]).await.unwrap();
    let mut answer = [0u8; 12];
    first.read_exact(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 "), "{answer:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(from("2001:db8:1:2::99").await.0, 200);
}

/// The admin pages read each path segment percent-decoded: the merchant id check before
/// anything else sees the id they would (`/admin/%6derchants/..%2F..` names `../..`), so such a
/// path is a 404 with or without a session, never a page or a login form.
#[tokio::test(flavor = "multi_thread")]
async fn encoded_admin_paths_get_the_merchant_id_check_first() {
    let w = world("sec-admin-encoded", "", "").await;
    let base = w.host.url("");
    let paths = [
        "/admin/%6derchants/..%2F..",
        "/admin/merchants/%2E%2E",
        "/admin/%6derchants/..%2F../payments/x",
    ];
    for path in paths {
        let r = get(&w.host.url(path), None).await;
        assert_eq!(r.status, 404, "{path} without a session: {}", r.text());
        // Spelled to get around an access list: nothing of the admin, not even its 404 page.
        assert!(!r.text().contains("找不到"), "{path}: {}", r.text());
    }
    // A merchant id typed wrong into the admin's own spelling: the admin's 404 page, in the
    // owner's language, not the API's JSON.
    let r = get(&w.host.url("/admin/merchants/a%20b"), None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("找不到"), "{}", r.text());
    let (cookie, csrf) = admin_login(&base, ADMIN_PASSWORD).await;
    for path in paths {
        let r = request("GET", &w.host.url(path), &[("cookie", &cookie)], Vec::new()).await;
        assert_eq!(r.status, 404, "GET {path}: {}", r.text());
        let r = request(
            "POST",
            &w.host.url(path),
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", &base),
            ],
            format!("csrf={csrf}").into_bytes(),
        )
        .await;
        assert_eq!(r.status, 404, "POST {path}: {}", r.text());
    }
    // A valid path spelled with escapes of letters is not the admin's own spelling (a
    // balancer's access list on `/admin/merchants` would not see it): a 404 too.
    let r = request(
        "GET",
        &w.host.url("/admin/%6derchants/shop"),
        &[("cookie", &cookie)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = request(
        "GET",
        &w.host.url("/admin/merchants/shop"),
        &[("cookie", &cookie)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Password checks (argon2, ≈ 19 MiB each) run at most `MAX_PASSWORD_CHECKS` at once: logins
/// from many addresses at once, each within its own throttle, past that are answered 503 with
/// the login page saying so, and once they are done the right password logs in.
#[tokio::test(flavor = "multi_thread")]
async fn logins_at_once_from_many_addresses_share_a_few_password_checks() {
    let w = world("sec-login-many", "trusted_proxies = [\"127.0.0.1/32\"]", "").await;
    let url = w.host.url("/admin/login");
    let logins = (0..40).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            let xff = format!("198.51.100.{}", i / 5 + 1);
            let r = request(
                "POST",
                &url,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("x-forwarded-for", &xff),
                ],
                format!("password=guess{i}").into_bytes(),
            )
            .await;
            (r.status, r.text())
        })
    });
    // All sent before any answer is awaited.
    let logins: Vec<_> = logins.collect();
    let mut answers = Vec::new();
    for l in logins {
        answers.push(l.await.unwrap());
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    let busy: Vec<&String> = answers
        .iter()
        .filter(|a| a.0 == 503)
        .map(|a| &a.1)
        .collect();
    assert!(!busy.is_empty(), "{statuses:?}");
    assert!(busy[0].contains("登录的人太多，请稍后再试"), "{}", busy[0]);
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    let own = request(
        "POST",
        &url,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-for", "198.51.100.200"),
        ],
        format!("password={ADMIN_PASSWORD}").into_bytes(),
    )
    .await;
    assert_eq!(own.status, 303, "{}", own.text());
}

/// Changing payhost.toml's admin password (a leaked one is rotated) ends the sessions made with
/// the old one at the next start, and removing it ends them too; they used to live on until
/// their TTL (8 hours by default).
#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_admin_password_ends_its_sessions() {
    let w = world("sec-rotate", "", "").await;
    let (alipay, shop) = (&w.alipay, &w.shop);
    let (cookie, _) = admin_login(&w.host.url(""), ADMIN_PASSWORD).await;
    let users = async |host: &TestHost| {
        request(
            "GET",
            &host.url("/admin/users"),
            &[("cookie", cookie.as_str())],
            Vec::new(),
        )
        .await
        .status
    };
    assert_eq!(users(&w.host).await, 200);
    // The same password after a restart: still logged in.
    let host = w
        .host
        .restart(|port| config(port, "", "", alipay, shop))
        .await;
    assert_eq!(users(&host).await, 200);
    let rotated = payhost::auth::hash_password("a-new-admin-password-4567").unwrap();
    let host = host
        .restart(|port| {
            config(port, "", "", alipay, shop)
                .replace(&conformance::host::admin_password_hash(), &rotated)
        })
        .await;
    assert_ne!(users(&host).await, 200, "a session of the old password");
    let (fresh, _) = admin_login(&host.url(""), "a-new-admin-password-4567").await;
    let fresh_users = request(
        "GET",
        &host.url("/admin/users"),
        &[("cookie", fresh.as_str())],
        Vec::new(),
    )
    .await;
    assert_eq!(fresh_users.status, 200);
    // Removed: the login is off, and no session of it is an operator.
    let host = host
        .restart(|port| {
            config(port, "", "", alipay, shop)
                .lines()
                .filter(|l| !l.starts_with("admin_password_hash"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .await;
    let gone = request(
        "GET",
        &host.url("/admin/users"),
        &[("cookie", fresh.as_str())],
        Vec::new(),
    )
    .await;
    assert_ne!(gone.status, 200);
}
