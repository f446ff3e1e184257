//! `payhost backup` against a running `payhost serve` (the release binary), and the restore
//! README.md describes ("Deployment: backup and restore"): the copy holds the commits still in the
//! WAL, is private (0600), never overwrites a file or the live database unasked, and a restored
//! copy serves what it held; an order created after the backup is unknown to the restored host,
//! and its notification is stored as `unknown_order` with an ALERT line.

use conformance::alipay::{self, AlipayStub, Trade, MD5_KEY};
use conformance::host::{
    config_head, free_port, get, payhost_binary, post_form, send_json, temp_dir, Payhost,
};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const TOKEN: &str = "backup-api-token-0123456789";
const PARTNER: &str = "2088101122136241";
const SELLER: &str = "seller@example.com";

fn config(port: u16, alipay: &AlipayStub) -> String {
    config_head(port, TOKEN, "")
        + &format!(
            r#"
[merchants.shop]
partner = "{PARTNER}"
key = "{MD5_KEY}"
seller_email = "{SELLER}"
gateway_url = "{gw}"
notify_verify_url = "{verify}"
paychannel_url = "{verify}"
"#,
            gw = alipay.gateway_url(),
            verify = alipay.verify_url(),
        )
}

fn payhost(args: &[&str], config: &Path) -> Output {
    Command::new(payhost_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run payhost")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn backup(config: &Path, to: &Path, force: bool) -> Output {
    let mut args = vec!["backup", "--to", to.to_str().unwrap()];
    if force {
        args.push("--force");
    }
    payhost(&args, config)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The payments of an SQLite file, by order number.
fn orders(db: &Path) -> Vec<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT out_trade_no, status FROM payments ORDER BY out_trade_no")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

async fn create(host: &Payhost, no: &str) {
    let r = send_json(
        "POST",
        &host.url("/v1/merchants/shop/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": no, "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn notify_paid(host: &Payhost, alipay: &AlipayStub, no: &str) -> String {
    let nid = format!("n-{no}");
    alipay.issue(&nid);
    let trade = Trade {
        out_trade_no: no,
        total_fee: "1.00",
        notify_id: &nid,
        seller_email: SELLER,
        seller_id: PARTNER,
        trade_status: "TRADE_SUCCESS",
    };
    post_form(
        &host.url("/alipay/shop/notify"),
        &alipay::md5_notify_body(&trade, MD5_KEY),
    )
    .await
    .text()
}

async fn status(host: &Payhost, no: &str) -> (u16, serde_json::Value) {
    let r = get(
        &host.url(&format!("/v1/merchants/shop/payments/{no}")),
        Some(TOKEN),
    )
    .await;
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_online_backup_is_private_complete_and_restores() {
    let alipay = AlipayStub::start().await;
    let dir = temp_dir("backup");
    let mut host = Payhost::start(&dir, &config(free_port(), &alipay));
    let config = host.config.clone();

    // Rows of every kind the backup must carry: payments (one paid), and a merchant added with
    // the CLI beside the running server (its settings hold the shop secret in plain text).
    for no in ["B1", "B2", "B3"] {
        create(&host, no).await;
    }
    assert_eq!(notify_paid(&host, &alipay, "B2").await, "success");
    let added = payhost(
        &[
            "merchant",
            "add",
            "connected",
            "--shop-origin",
            "https://shop.example",
        ],
        &config,
    );
    assert!(added.status.success(), "{}", text(&added));
    let stdout = String::from_utf8_lossy(&added.stdout).into_owned();
    let line = |label: &str| conformance::host::output_value(&stdout, label);
    let (merchant_token, shop_secret) = (line("token: "), line("shop_secret: "));

    // The commits are in the WAL: the database file alone (what `cp payhost.db` copies) lacks them.
    let live = dir.join("payhost.db");
    let wal = dir.join("payhost.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let plain = dir.join("plain-copy.db");
    std::fs::copy(&live, &plain).unwrap();
    let in_plain = rusqlite::Connection::open(&plain)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM payments", [], |r| r.get::<_, i64>(0))
        .unwrap_or(0);
    assert!(in_plain < 3, "the plain copy has {in_plain} payments");

    // The backup, while payhost serves.
    let backups = dir.join("backups");
    std::fs::create_dir(&backups).unwrap();
    let to = backups.join("payhost-1.db");
    let out = backup(&config, &to, false);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(said.lines().count(), 1, "{said}");
    let size = std::fs::metadata(&to).unwrap().len();
    assert!(
        said.starts_with(&format!(
            "{}: {size} bytes, 3 payment(s), newest payment created 20",
            to.display()
        )),
        "{said}"
    );
    assert_eq!(mode(&to), 0o600);
    assert_eq!(
        orders(&to),
        [
            ("B1".to_owned(), "WAIT_BUYER_PAY".to_owned()),
            ("B2".to_owned(), "TRADE_SUCCESS".to_owned()),
            ("B3".to_owned(), "WAIT_BUYER_PAY".to_owned()),
        ]
    );
    let settings: String = rusqlite::Connection::open(&to)
        .unwrap()
        .query_row(
            "SELECT settings FROM merchants WHERE id = 'connected'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(settings.contains(&shop_secret), "{settings}");
    // A copy on its own: nothing but the file was left in the folder.
    let names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["payhost-1.db"]);

    // Again without --force: refused, the file untouched.
    let before = (
        std::fs::read(&to).unwrap(),
        std::fs::metadata(&to).unwrap().modified().unwrap(),
    );
    let again = backup(&config, &to, false);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("--force"), "{}", text(&again));
    assert_eq!(
        (
            std::fs::read(&to).unwrap(),
            std::fs::metadata(&to).unwrap().modified().unwrap()
        ),
        before
    );

    // The live database and its companions are never a target, --force or not.
    for name in ["payhost.db", "payhost.db-wal", "payhost.db-shm"] {
        let out = backup(&config, &dir.join(name), true);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains("live database"), "{}", text(&out));
    }
    assert_eq!(
        status(&host, "B1").await.0,
        200,
        "the live database still serves"
    );
    // A missing folder, and a folder, are said in Chinese first, as the other refusals.
    for (to, said) in [
        (dir.join("no-such-folder/x.db"), "不存在，请先创建"),
        (backups.clone(), "这是一个文件夹"),
    ] {
        let out = backup(&config, &to, false);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(said), "{}", text(&out));
    }

    // --force replaces a file (here not even a database) with a checked copy.
    let junk = backups.join("junk.db");
    std::fs::write(&junk, "not a database").unwrap();
    let forced = backup(&config, &junk, true);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(orders(&junk).len(), 3);
    assert_eq!(mode(&junk), 0o600);

    // A backup while payments are being created: it finishes, passes its integrity check, and
    // holds a snapshot between the two states; the writes all succeed.
    let writes = {
        let url = host.url("/v1/merchants/shop/payments");
        tokio::spawn(async move {
            for i in 0..40 {
                let r = send_json(
                    "POST",
                    &url,
                    Some(TOKEN),
                    &json!({"out_trade_no": format!("C{i:02}"), "subject": "s", "total_fee": "1.00", "return_url": "https://shop.example/r"}),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.text());
            }
        })
    };
    let during = backups.join("during.db");
    let (config2, during2) = (config.clone(), during.clone());
    let out = tokio::task::spawn_blocking(move || backup(&config2, &during2, false))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    writes.await.unwrap();
    let n = orders(&during).len();
    assert!((3..=43).contains(&n), "{n} payments in the copy");

    // PostgreSQL is pg_dump's job.
    let pg_config = dir.join("pg.toml");
    std::fs::write(
        &pg_config,
        std::fs::read_to_string(&config).unwrap().replace(
            "database = \"payhost.db\"",
            "database = \"postgres://payhost@127.0.0.1:1/payhost\"",
        ),
    )
    .unwrap();
    let pg = backup(&pg_config, &backups.join("pg.db"), false);
    assert_eq!(pg.status.code(), Some(2), "{}", text(&pg));
    assert!(text(&pg).contains("pg_dump"), "{}", text(&pg));
    assert!(!backups.join("pg.db").exists());

    // An order created after the backup: lost by restoring it.
    create(&host, "AFTER").await;

    // The restore, as README.md says: stop payhost, move the database and its -wal and -shm away,
    // put the backup in place as payhost.db (0600), start.
    assert!(host.terminate().success(), "{}", host.log_text());
    // After a clean stop the database file alone holds every commit (payhost checkpoints it as it
    // stops): a copy of payhost.db without its -wal misses nothing, and a -wal left is empty.
    let alone = dir.join("alone.db");
    std::fs::copy(&live, &alone).unwrap();
    assert!(
        orders(&alone).iter().any(|(no, _)| no == "AFTER"),
        "the last order is only in the -wal after a clean stop: {:?}",
        orders(&alone)
    );
    let wal = dir.join("payhost.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "a -wal with pages in it after a clean stop"
    );
    let old = dir.join("old");
    std::fs::create_dir(&old).unwrap();
    for name in ["payhost.db", "payhost.db-wal", "payhost.db-shm"] {
        if dir.join(name).exists() {
            std::fs::rename(dir.join(name), old.join(name)).unwrap();
        }
    }
    std::fs::copy(&to, &live).unwrap();
    std::fs::set_permissions(&live, std::fs::Permissions::from_mode(0o600)).unwrap();
    host.restart();

    let (code, b2) = status(&host, "B2").await;
    assert_eq!(
        (code, b2["status"].as_str()),
        (200, Some("TRADE_SUCCESS")),
        "{b2}"
    );
    let (code, b1) = status(&host, "B1").await;
    assert_eq!(
        (code, b1["status"].as_str()),
        (200, Some("WAIT_BUYER_PAY")),
        "{b1}"
    );
    assert_eq!(status(&host, "AFTER").await.0, 404);
    // The merchant added before the backup, with its token.
    let r = get(&host.url("/v1/merchants/connected"), Some(&merchant_token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mode(&live), 0o600);

    // The order created after the backup is paid: Alipay is answered success (nothing to
    // retry), the notification is stored as unknown_order with an ALERT line, and the
    // notifications list shows it.
    assert_eq!(notify_paid(&host, &alipay, "AFTER").await, "success");
    let list = get(
        &host.url("/v1/merchants/shop/notifications?limit=10"),
        Some(TOKEN),
    )
    .await
    .json();
    let after = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["out_trade_no"] == "AFTER")
        .unwrap_or_else(|| panic!("no notification for AFTER: {list}"))
        .clone();
    assert_eq!(after["outcome"], "unknown_order", "{after}");
    // However many notifications came since: the list of that outcome alone.
    let unknown = get(
        &host.url("/v1/merchants/shop/notifications?outcome=unknown_order"),
        Some(TOKEN),
    )
    .await
    .json();
    let unknown = unknown["notifications"].as_array().unwrap().clone();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0]["out_trade_no"], "AFTER");
    let typo = get(
        &host.url("/v1/merchants/shop/notifications?outcome=unknown"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(typo.status, 400, "{}", typo.text());
    assert_eq!(typo.json()["error"]["field"], "outcome");
    assert!(
        host.log_text()
            .contains("ALERT: a confirmed notification names an unknown order"),
        "{}",
        host.log_text()
    );
}
