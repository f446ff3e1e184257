//! The admin pages over real sockets on what `payhost demo` and `payhost serve` start (in-process:
//! `TestHost`): admin users (from the operator's page and the `payhost admin-user add` binary),
//! shop owners limited to their merchants (404 for another's pages and actions, 403 for the
//! operator's), 303 after every post (a reload creates nothing), refused forms that keep what was
//! typed, the audit log, Test connection for a C2C merchant, the CSV of the session's filter, and
//! the language switch.

use conformance::host::{
    admin_login, admin_login_as, admin_post, admin_post_location, csp_directive, csrf_of, get,
    inline_elements_allowed, payhost_binary, request, send_json, temp_dir, ADMIN_PASSWORD,
};
use conformance::testhost::TestHost;
use serde_json::json;
use std::io::Write;

const TOKEN: &str = "admin-pages-token-0123456789";

/// `payhost demo --api-token TOKEN --admin-password ADMIN_PASSWORD`, in-process.
async fn demo(name: &str) -> TestHost {
    TestHost::demo(&temp_dir(name), TOKEN, 1.0).await
}

/// A GET of `path` with the session `cookie`: the whole answer.
async fn get_page(base: &str, path: &str, cookie: &str) -> conformance::host::Reply {
    request(
        "GET",
        &format!("{base}{path}"),
        &[("cookie", cookie)],
        Vec::new(),
    )
    .await
}

async fn page(base: &str, path: &str, cookie: &str) -> (u16, String) {
    let r = get_page(base, path, cookie).await;
    (r.status, r.text())
}

async fn post_status(base: &str, path: &str, cookie: &str, body: &str) -> u16 {
    request(
        "POST",
        &format!("{base}{path}"),
        &[
            ("cookie", cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes().to_vec(),
    )
    .await
    .status
}

/// The text of a page's one-shot message (its first line).
fn flash_of(html: &str) -> String {
    html.split("id=\"flash\">")
        .nth(1)
        .and_then(|f| f.split(['\n', '<']).next())
        .unwrap_or_else(|| panic!("no message: {html}"))
        .to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A payment made through the API (subject 测试); its JSON (the `pay_url` to pay it).
async fn create_payment(
    base: &str,
    merchant: &str,
    no: &str,
    fee: &str,
    seller: Option<&str>,
) -> serde_json::Value {
    let mut order = json!({"out_trade_no": no, "subject": "测试", "total_fee": fee, "return_url": format!("{base}/shop/return")});
    if let Some(s) = seller {
        order["seller_email"] = json!(s);
    }
    let r = send_json(
        "POST",
        &format!("{base}/v1/merchants/{merchant}/payments"),
        Some(TOKEN),
        &order,
    )
    .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_see_their_merchants_only_and_every_action_is_audited() {
    let d = demo("admin-owners").await;
    let base = d.url("");
    let base = base.as_str();
    create_payment(base, "market", "MKT-ADMIN-1", "8.88", Some("13800138000")).await;
    create_payment(base, "demo", "DEMO-ADMIN-1", "1.00", None).await;

    // The operator (payhost.toml's password) adds two owners from the page. A refused add keeps
    // the name and the chosen merchant, shows each error beside its field, never the password.
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let refused = admin_post(
        base,
        "/admin/users",
        &op,
        &form(&[
            ("csrf", &csrf),
            ("name", "o-market"),
            ("role", "owner"),
            ("password", "short-pw"),
        ]),
    )
    .await;
    assert!(refused.contains("id=\"password-error\""), "{refused}");
    assert!(refused.contains("id=\"merchants-error\""), "{refused}");
    assert!(
        refused.contains("value=\"o-market\""),
        "the name is kept: {refused}"
    );
    assert!(
        !refused.contains("short-pw"),
        "the password is never echoed"
    );
    for (name, merchant) in [("o-market", "market"), ("o-demo", "demo")] {
        let added = admin_post(
            base,
            "/admin/users",
            &op,
            &form(&[
                ("csrf", &csrf),
                ("name", name),
                ("role", "owner"),
                ("merchant", merchant),
                ("password", "owner-password-0123"),
            ]),
        )
        .await;
        assert!(added.contains(&format!("已添加管理员 {name}")), "{added}");
    }

    let (own, own_csrf) = admin_login_as(base, "o-market", "owner-password-0123").await;
    let (other, other_csrf) = admin_login_as(base, "o-demo", "owner-password-0123").await;
    // A wrong password for a user is a 401, like an unknown user.
    for (user, pw) in [
        ("o-market", "wrong-password-000"),
        ("nobody", "owner-password-0123"),
    ] {
        let r = request(
            "POST",
            &format!("{base}/admin/login"),
            &[("content-type", "application/x-www-form-urlencoded")],
            form(&[("user", user), ("password", pw)]).into_bytes(),
        )
        .await;
        assert_eq!(r.status, 401, "{user}");
    }

    // The owner finds their order; the other owner finds nothing and may open none of it.
    let (s, list) = page(base, "/admin/payments?q=MKT-ADMIN", &own).await;
    assert_eq!(s, 200);
    assert!(list.contains("id=\"page-of\">第 1 / 1 页<"), "{list}");
    assert!(
        list.contains("MKT-ADMIN-1") && !list.contains("DEMO-ADMIN-1"),
        "{list}"
    );
    let (_, list) = page(base, "/admin/payments?q=ADMIN", &other).await;
    assert!(
        list.contains("DEMO-ADMIN-1") && !list.contains("MKT-ADMIN-1"),
        "{list}"
    );
    let (_, list) = page(base, "/admin/payments?merchant=market", &other).await;
    assert!(
        !list.contains("MKT-ADMIN-1"),
        "asking for another merchant: {list}"
    );
    assert!(list.contains("id=\"merchant-notice\""), "told so: {list}");
    for path in [
        "/admin/merchants/market",
        "/admin/merchants/market/payments/MKT-ADMIN-1",
    ] {
        assert_eq!(page(base, path, &other).await.0, 404, "{path}");
        assert_eq!(page(base, path, &own).await.0, 200, "{path}");
    }
    assert_eq!(page(base, "/admin/users", &other).await.0, 403);
    // The CSV: another merchant's is refused (the ledger's rule), their own holds only theirs.
    let refused_csv = get_page(base, "/admin/payments.csv?merchant=market", &other).await;
    assert_eq!(refused_csv.status, 403);
    assert!(!refused_csv.text().contains("MKT-ADMIN-1"));
    // …as an admin page, not the API's JSON.
    assert!(
        refused_csv
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "{:?}",
        refused_csv.header("content-type")
    );
    assert!(
        refused_csv.text().contains("无法导出"),
        "{}",
        refused_csv.text()
    );
    // …in the words of a logged-in owner: their own merchant, not the API's token.
    let said = refused_csv.text();
    assert!(
        said.contains("只能导出你自己的商户（demo）") && said.contains("market"),
        "{said}"
    );
    assert!(!said.contains("token") && !said.contains("令牌"), "{said}");
    let csv = page(base, "/admin/payments.csv", &other).await.1;
    assert!(
        !csv.contains("MKT-ADMIN-1") && csv.contains("DEMO-ADMIN-1"),
        "{csv}"
    );
    // Actions on another merchant are refused on the server, and nothing happens.
    let c = format!("csrf={other_csrf}");
    for path in [
        "/admin/merchants/market/tokens",
        "/admin/merchants/market/test",
        "/admin/merchants/market/payments/MKT-ADMIN-1/sync",
        "/admin/merchants/market/payments/MKT-ADMIN-1/close",
        "/admin/merchants/market/payments/MKT-ADMIN-1/refunds",
        "/admin/merchants/market",
    ] {
        assert_eq!(post_status(base, path, &other, &c).await, 404, "{path}");
    }
    for path in ["/admin/users", "/admin/merchants", "/admin/slots"] {
        assert_eq!(post_status(base, path, &other, &c).await, 403, "{path}");
    }
    let tokens = get(&format!("{base}/v1/merchants/market/tokens"), Some(TOKEN)).await;
    assert_eq!(
        tokens.json()["tokens"].as_array().map(Vec::len),
        Some(0),
        "{}",
        tokens.text()
    );

    // The owner's own token: a 303, shown once; reloading the page creates no second one.
    let r = request(
        "POST",
        &format!("{base}/admin/merchants/market/tokens"),
        &[
            ("cookie", &own),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form(&[("csrf", &own_csrf), ("label", "ecshop")]).into_bytes(),
    )
    .await;
    assert_eq!(r.status, 303);
    // Until the page shows it, the session's row holds the token sealed, never in the clear.
    let waiting: Vec<String> = {
        let db = rusqlite::Connection::open(d.dir.join("demo.db")).unwrap();
        let mut q = db
            .prepare("SELECT flash FROM admin_sessions WHERE flash IS NOT NULL")
            .unwrap();
        let rows = q.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert!(
        waiting.iter().any(|f| f.contains("\"sealed\""))
            && !waiting.iter().any(|f| f.contains("phm_")),
        "{waiting:?}"
    );
    let to = r.header("location").unwrap();
    let (_, first) = page(base, &to, &own).await;
    assert!(first.contains("id=\"new-token\">phm_"), "{first}");
    let (_, again) = page(base, &to, &own).await;
    assert!(!again.contains("id=\"new-token\""), "shown only once");
    let tokens = get(&format!("{base}/v1/merchants/market/tokens"), Some(TOKEN)).await;
    assert_eq!(tokens.json()["tokens"].as_array().map(Vec::len), Some(1));

    // Test connection works for the C2C merchant (it has no default seller).
    let tested = admin_post(
        base,
        "/admin/merchants/market/test",
        &own,
        &format!("csrf={own_csrf}"),
    )
    .await;
    assert!(tested.contains("连接正常"), "{tested}");
    // Alipay's gateway failing (HTTP 500) was reached: it is not this server's network, and the
    // settings need no change.
    let r = send_json(
        "POST",
        &format!("{base}/sandbox/faults"),
        None,
        &json!({"answer_500": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let failing = admin_post(
        base,
        "/admin/merchants/market/test",
        &own,
        &format!("csrf={own_csrf}"),
    )
    .await;
    assert!(
        failing.contains("支付宝网关暂时出错：设置无需修改")
            && !failing.contains("连不上支付宝网关"),
        "{failing}"
    );
    let r = send_json(
        "POST",
        &format!("{base}/sandbox/faults"),
        None,
        &json!({"answer_500": false}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The operator's audit log: who, what, which merchant.
    let (s, audit) = page(base, "/admin/audit", &op).await;
    assert_eq!(s, 200);
    for want in [
        "user.add",
        "token.create",
        "o-market",
        "运营者（主密码登录）",
    ] {
        assert!(audit.contains(want), "{want} missing: {audit}");
    }
    assert!(!audit.contains("phm_"), "no token in the audit log");
    // Every login is there, with its address; a browser's first login to an account says so.
    // The table's rows (the action filter above it names every action).
    let rows = |page: &str| {
        page.split("id=\"audit\"")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    let logins = rows(&page(base, "/admin/audit?action=login", &op).await.1);
    for want in [
        "o-market",
        "o-demo",
        "来自 127.0.0.1",
        "新浏览器：此前没有登录过这个账号",
    ] {
        assert!(logins.contains(want), "{want} missing: {logins}");
    }
    assert!(
        !logins.contains("token.create"),
        "filtered by action: {logins}"
    );
    // A name is a link to everything that account did (by its stored name).
    assert!(
        logins.contains("href=\"/admin/audit?who=admin_password\">运营者（主密码登录）<"),
        "{logins}"
    );
    let by_owner = rows(&page(base, "/admin/audit?who=o-market", &op).await.1);
    assert!(
        by_owner.contains("o-market")
            && !by_owner.contains("o-demo")
            && !by_owner.contains("运营者"),
        "{by_owner}"
    );
    // A shop owner reads their merchants' entries and their own logins, nobody else's.
    let (s, whole) = page(base, "/admin/audit", &own).await;
    assert_eq!(s, 200, "{whole}");
    assert!(!whole.contains("id=\"nav-users\""), "{whole}");
    let theirs = rows(&whole);
    assert!(
        theirs.contains("token.create") && theirs.contains("o-market"),
        "{theirs}"
    );
    for other_entry in ["o-demo", "user.add", "运营者（主密码登录）"] {
        assert!(
            !theirs.contains(other_entry),
            "{other_entry} shown to an owner: {theirs}"
        );
    }
    let (_, asked) = page(base, "/admin/audit?merchant=demo", &own).await;
    assert!(
        asked.contains("id=\"merchant-notice\"") && !rows(&asked).contains("o-demo"),
        "{asked}"
    );
    // A session cookie planted ahead of the real one (another site of the domain, a longer
    // path) does not hide it.
    let tossed = format!("payhost_admin=planted-by-a-sibling; {op}");
    assert_eq!(page(base, "/admin/audit", &tossed).await.0, 200);
    // Two live ones (another account's session planted ahead): neither is used, rather than
    // the operator working in an owner's session unknowingly.
    let two = format!("{own}; {op}");
    let (s, both) = page(base, "/admin/users", &two).await;
    assert_eq!(s, 401, "{both}");
    // A bad filter is named, and nothing is listed.
    let (_, bad) = page(base, "/admin/audit?action=DROP%20TABLE", &op).await;
    assert!(
        bad.contains("id=\"filter-error\"") && bad.contains("操作：请从列表中选择"),
        "{bad}"
    );
    // The CSV holds what the page finds, every page of it, for the same reader.
    let csv = get_page(base, "/admin/audit.csv", &own).await;
    assert_eq!(csv.status, 200);
    let text = csv.text();
    assert!(
        text.starts_with("\u{feff}id,at_utc,at_beijing,actor,action,merchant_id,detail\r\n"),
        "{text}"
    );
    assert!(
        text.contains(",o-market,login,,from 127.0.0.1") && text.contains(",token.create,market,"),
        "{text}"
    );
    assert!(
        !text.contains("o-demo") && !text.contains("user.add"),
        "{text}"
    );
    let refused = get_page(base, "/admin/audit.csv?merchant=demo", &own).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused
            .text()
            .contains("你的账号不能导出商户 demo 的操作日志"),
        "{}",
        refused.text()
    );
    let csv = get_page(base, "/admin/audit.csv?action=user.add", &op)
        .await
        .text();
    assert_eq!(
        csv.lines().count(),
        3,
        "the header and the two owners added: {csv}"
    );
    let long_who = format!("/admin/audit.csv?who={}", "x".repeat(201));
    let refused = get_page(base, &long_who, &op).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("操作人：最多 200 个字符"),
        "{}",
        refused.text()
    );

    // 吊销 asks first (one tap on a phone revoked a shop's token); the token works until the
    // owner confirms.
    let value = first
        .split("id=\"new-token\">")
        .nth(1)
        .and_then(|v| v.split('<').next())
        .unwrap()
        .to_owned();
    let tid = tokens.json()["tokens"][0]["id"].as_i64().unwrap();
    let works = || async {
        get(&format!("{base}/v1/merchants/market"), Some(&value))
            .await
            .status
    };
    assert_eq!(works().await, 200);
    let revoke = format!("/admin/merchants/market/tokens/{tid}/revoke");
    let asked = admin_post(base, &revoke, &own, &format!("csrf={own_csrf}")).await;
    assert!(asked.contains("id=\"revoke-confirm\""), "{asked}");
    assert!(asked.contains("吊销不能撤回"), "{asked}");
    assert_eq!(works().await, 200, "not revoked before the confirmation");
    let done = admin_post(base, &revoke, &own, &format!("csrf={own_csrf}&confirm=1")).await;
    assert!(done.contains("令牌已吊销"), "{done}");
    assert_eq!(works().await, 401, "revoked once confirmed");

    // English on request (kept in a cookie), Chinese by default; statuses in words.
    let r = request(
        "GET",
        &format!("{base}/admin/payments?lang=en"),
        &[("cookie", &own)],
        Vec::new(),
    )
    .await;
    assert!(r.text().contains("Awaiting payment"), "{}", r.text());
    assert!(r
        .header("set-cookie")
        .is_some_and(|c| c.contains("payhost_lang=en")));
    let (_, zh) = page(base, "/admin/payments", &own).await;
    assert!(zh.contains("待付款"), "{zh}");
}

/// The rows of a page's payments list: each order number shown.
fn listed(html: &str) -> Vec<String> {
    html.split("class=\"order-link\" href=\"")
        .skip(1)
        .filter_map(|r| r.split_once("\">")?.1.split('<').next())
        .map(str::to_owned)
        .collect()
}

/// The list's 合计 line.
fn totals_of(html: &str) -> String {
    html.split("id=\"totals\">")
        .nth(1)
        .and_then(|t| t.split("</p>").next())
        .unwrap_or_else(|| panic!("no totals: {html}"))
        .to_owned()
}

/// A shop owner of several merchants: the list's 全部 (no merchant chosen) is every one of
/// theirs — the list, its 合计 and the CSV — never only the first, and never another owner's;
/// one of theirs chosen is that one; another's asked for is ignored (and said so) on the list,
/// refused on the CSV. An operator's 全部 is every merchant.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_of_two_merchants_finds_the_payments_of_both() {
    let d = demo("admin-two-merchants").await;
    let base = d.url("");
    let base = base.as_str();
    create_payment(base, "demo", "TWO-DEMO-1", "1.00", None).await;
    create_payment(base, "market", "TWO-MKT-1", "2.00", Some("13800138000")).await;
    create_payment(base, "rsa-shop", "TWO-RSA-1", "4.00", None).await;
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let added = admin_post(
        base,
        "/admin/users",
        &op,
        &form(&[
            ("csrf", &csrf),
            ("name", "o-two"),
            ("role", "owner"),
            ("merchant", "demo"),
            ("merchant", "market"),
            ("password", "owner-password-0123"),
        ]),
    )
    .await;
    assert!(added.contains("已添加管理员 o-two"), "{added}");
    let (own, _) = admin_login_as(base, "o-two", "owner-password-0123").await;

    // The second merchant's order, searched with 全部.
    let (status, html) = page(base, "/admin/payments?q=TWO-MKT-1&merchant=", &own).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(listed(&html), ["TWO-MKT-1"], "{html}");
    assert!(!html.contains("没有符合条件的支付"), "{html}");
    // 退款处理中 lists the payments with a refund not yet confirmed: none here.
    let (status, html) = page(base, "/admin/payments?status=REFUND_PENDING", &own).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<option value=\"REFUND_PENDING\" selected>退款处理中</option>")
            && html.contains("没有符合条件的支付"),
        "{html}"
    );
    // Typed with a Chinese input method's full-width letters: the same order.
    let full_width: String =
        form_urlencoded::byte_serialize("ＴＷＯ－ＭＫＴ－１".as_bytes()).collect();
    let (_, html) = page(
        base,
        &format!("/admin/payments?q={full_width}&merchant="),
        &own,
    )
    .await;
    assert_eq!(listed(&html), ["TWO-MKT-1"], "{html}");
    // Both merchants' orders and 合计, never another owner's merchant.
    let (_, html) = page(base, "/admin/payments?q=TWO-", &own).await;
    let mut rows = listed(&html);
    rows.sort();
    assert_eq!(rows, ["TWO-DEMO-1", "TWO-MKT-1"], "{html}");
    let totals = totals_of(&html);
    assert!(
        totals.contains("<b>2</b>") && totals.contains("¥3.00"),
        "{totals}"
    );
    assert!(html.contains("<option value=\"\">全部</option>"), "{html}");
    assert!(
        !html.contains(" selected>demo<") && !html.contains(" selected>market<"),
        "{html}"
    );
    // One of theirs chosen: that one only.
    let (_, html) = page(base, "/admin/payments?q=TWO-&merchant=market", &own).await;
    assert_eq!(listed(&html), ["TWO-MKT-1"], "{html}");
    assert!(html.contains("value=\"market\" selected"), "{html}");
    // Another owner's merchant asked for: their own merchants instead, and said so.
    let (_, html) = page(base, "/admin/payments?q=TWO-&merchant=rsa-shop", &own).await;
    let mut rows = listed(&html);
    rows.sort();
    assert_eq!(rows, ["TWO-DEMO-1", "TWO-MKT-1"], "{html}");
    assert!(html.contains("id=\"merchant-notice\""), "{html}");
    assert!(!html.contains("TWO-RSA-1"), "{html}");

    // The CSV of 全部: both merchants' rows, not another's.
    let csv = get_page(base, "/admin/payments.csv?q=TWO-", &own).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    let csv = csv.text();
    assert!(
        csv.contains("TWO-DEMO-1") && csv.contains("TWO-MKT-1") && !csv.contains("TWO-RSA-1"),
        "{csv}"
    );
    let (_, csv) = page(base, "/admin/payments.csv?q=TWO-&merchant=market", &own).await;
    assert!(
        csv.contains("TWO-MKT-1") && !csv.contains("TWO-DEMO-1"),
        "{csv}"
    );
    let refused = get_page(base, "/admin/payments.csv?merchant=rsa-shop", &own).await;
    assert_eq!(refused.status, 403);
    let said = refused.text();
    assert!(
        said.contains("只能导出你自己的商户（demo、market）") && !said.contains("TWO-RSA-1"),
        "{said}"
    );

    // The operator's 全部 is every merchant's.
    let (_, html) = page(base, "/admin/payments?q=TWO-&merchant=", &op).await;
    let mut rows = listed(&html);
    rows.sort();
    assert_eq!(rows, ["TWO-DEMO-1", "TWO-MKT-1", "TWO-RSA-1"], "{html}");
    let (_, csv) = page(base, "/admin/payments.csv?q=TWO-", &op).await;
    assert!(
        csv.contains("TWO-RSA-1") && csv.contains("TWO-DEMO-1"),
        "{csv}"
    );
}

/// 退款记录: every refund of the filter with its 合计, whoever started it, linked to its order;
/// a shop owner sees their own merchants' refunds only, and their CSV; the operator every one.
#[tokio::test(flavor = "multi_thread")]
async fn the_refund_list_finds_every_refund_with_its_totals() {
    let d = demo("admin-refund-list").await;
    let base = d.url("");
    let base = base.as_str();
    let mut pay_urls = Vec::new();
    for no in ["RL-1", "RL-2"] {
        let created = send_json(
            "POST",
            &format!("{base}/v1/merchants/demo/payments"),
            Some(TOKEN),
            &json!({"out_trade_no": no, "subject": "退款记录", "total_fee": "5.00",
                "return_url": format!("{base}/shop/return")}),
        )
        .await
        .json();
        pay_urls.push(created["pay_url"].as_str().unwrap().to_owned());
    }
    conformance::orders::pay_all(base, &pay_urls, 1, std::time::Duration::ZERO).await;
    let refund = async |no: &str, amount: &str, key: &str| {
        for _ in 0..50 {
            let r = send_json(
                "POST",
                &format!("{base}/v1/merchants/demo/payments/{no}/refunds"),
                Some(TOKEN),
                &json!({"amount": amount, "reason": "协商退款", "refund_key": key}),
            )
            .await;
            if r.status == 201 {
                return;
            }
            // Not paid yet: the sandbox's notification is on its way.
            if r.status != 409 {
                let p = get(
                    &format!("{base}/v1/merchants/demo/payments/{no}"),
                    Some(TOKEN),
                )
                .await;
                panic!(
                    "{no}: {}\nPAYMENT {}\nLOG {}",
                    r.text(),
                    p.text(),
                    d.log_text()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{no} was never paid");
    };
    refund("RL-1", "1.25", "rl-a").await;
    refund("RL-1", "0.75", "rl-b").await;
    refund("RL-2", "5.00", "rl-c").await;
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;

    let (status, html) = page(base, "/admin/refunds?q=RL-", &op).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"nav-refunds\""), "{html}");
    // Newest first, each linked to its order's page.
    assert_eq!(listed(&html), ["RL-2", "RL-1", "RL-1"], "{html}");
    // To the refund's own line on its payment's page.
    let rl2 = html
        .split("href=\"/admin/merchants/demo/payments/RL-2#refund-")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("{html}"))
        .to_owned();
    let (_, payment_page) = page(base, "/admin/merchants/demo/payments/RL-2", &op).await;
    assert!(
        payment_page.contains(&format!("<tr id=\"refund-{rl2}\">")),
        "{payment_page}"
    );
    assert!(
        html.contains("运营者（API）") && html.contains("协商退款"),
        "{html}"
    );
    let totals = totals_of(&html);
    assert!(
        totals.contains("共 <b>3</b> 笔：退款成功 <b>0</b> 笔 ¥0.00，处理中 <b>3</b> 笔 ¥7.00，失败（没有退款）<b>0</b> 笔 ¥0.00"),
        "{totals}"
    );
    // A status filter, and a date the refunds were not started on.
    let (_, html) = page(base, "/admin/refunds?q=RL-1&status=PENDING", &op).await;
    let (_, none) = page(base, "/admin/refunds?q=RL-&to=2000-01-01", &op).await;
    assert!(none.contains("id=\"no-refunds\""), "{none}");
    // By the day they ended: these wait for the seller, so none has ended.
    let today = payhost::domain::clock::format_date(payhost::domain::clock::beijing_day(
        payhost::domain::clock::now_unix(),
    ));
    let (_, ended) = page(
        base,
        &format!("/admin/refunds?q=RL-&completed_from={today}&completed_to={today}"),
        &op,
    )
    .await;
    assert!(ended.contains("id=\"no-refunds\""), "{ended}");
    assert!(
        ended.contains(&format!(
            "id=\"f-completed-from\" name=\"completed_from\" type=\"date\" value=\"{today}\""
        )),
        "{ended}"
    );
    let (_, bad) = page(base, "/admin/refunds?completed_to=2026-02-30", &op).await;
    assert!(bad.contains("没有 2026-02-30 这一天"), "{bad}");
    // The demo's merchant is the legacy API's: its refunds wait for the seller's password.
    assert_eq!(listed(&html), ["RL-1", "RL-1"], "{html}");
    assert!(
        totals_of(&html).contains("处理中 <b>2</b> 笔 ¥2.00"),
        "{html}"
    );
    let (_, html) = page(base, "/admin/refunds?q=RL-&status=SUCCESS", &op).await;
    assert!(listed(&html).is_empty(), "{html}");
    // A bad filter is named in the owner's words, and lists nothing.
    let (_, bad) = page(base, "/admin/refunds?from=yesterday", &op).await;
    assert!(
        bad.contains("年-月-日") && bad.contains("请先修正上面的筛选条件"),
        "{bad}"
    );

    // The CSV of the filter.
    let csv = get_page(base, "/admin/refunds.csv?q=RL-", &op).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(
        csv.header("content-disposition").as_deref(),
        Some("attachment; filename=\"refunds.csv\"")
    );
    let text = csv.text();
    assert_eq!(
        text.matches("\r\n").count(),
        4,
        "header and three refunds: {text}"
    );
    assert!(text.contains(",RL-2,") && text.contains(",5.00,"), "{text}");
    // The page's language switch (`lang=`) is the admin's, not a filter of the export.
    for path in [
        "/admin/refunds.csv?q=RL-&lang=en",
        "/admin/payments.csv?lang=en",
    ] {
        let r = get_page(base, path, &op).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    // A shop owner of another merchant: none of these, and the CSV of demo refused.
    let added = admin_post(
        base,
        "/admin/users",
        &op,
        &form(&[
            ("csrf", &csrf),
            ("name", "o-market"),
            ("role", "owner"),
            ("merchant", "market"),
            ("password", "owner-password-0123"),
        ]),
    )
    .await;
    assert!(added.contains("已添加管理员 o-market"), "{added}");
    let (own, _) = admin_login_as(base, "o-market", "owner-password-0123").await;
    let (status, html) = page(base, "/admin/refunds?q=RL-", &own).await;
    assert_eq!(status, 200, "{html}");
    assert!(listed(&html).is_empty(), "{html}");
    let (_, html) = page(base, "/admin/refunds?merchant=demo", &own).await;
    assert!(
        listed(&html).is_empty() && html.contains("id=\"merchant-notice\""),
        "{html}"
    );
    let refused = get_page(base, "/admin/refunds.csv?merchant=demo", &own).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.text().contains("不能导出商户 demo 的退款记录"),
        "{}",
        refused.text()
    );
    let (_, csv) = page(base, "/admin/refunds.csv", &own).await;
    assert!(!csv.contains("RL-"), "{csv}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_user_add_from_the_command_line_logs_in_as_an_owner() {
    let dir = temp_dir("admin-cli");
    let toml = |port| {
        conformance::host::config_head(port, TOKEN, "")
            + "\n[merchants.shop]\npartner = \"2088101122136241\"\nkey = \"0123456789abcdef0123456789abcdef\"\nseller_email = \"s@example.com\"\n"
    };
    // The command line edits the database payhost.toml names before payhost runs; the host
    // then starts in-process on the same folder (and database).
    let config = dir.join("payhost.toml");
    std::fs::write(&config, toml(conformance::host::free_port())).unwrap();
    let add = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(payhost_binary())
            .arg("admin-user")
            .args(args)
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // Every problem at once, each naming its flag.
    let bad = add(
        &["add", "bad name!", "--role", "owner", "--merchant", "nope"],
        "short\n",
    );
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    for flag in ["NAME", "--merchant", "password"] {
        assert!(err.contains(&format!("error: {flag}:")), "{flag}: {err}");
    }
    // A generated password is shown only for a user that will be added: a refused one prints
    // none (it would look set), naming the flag.
    let refused = add(&["add", "no-merchant", "--role", "owner", "--generate"], "");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        refused.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("error: --merchant:"), "{err}");
    let nobody = add(&["password", "nobody", "--generate"], "");
    assert_eq!(nobody.status.code(), Some(2));
    assert!(
        nobody.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&nobody.stdout)
    );
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("NAME: no admin user"));
    let ok = add(
        &["add", "shop-owner", "--role", "owner", "--merchant", "shop"],
        "shop-owner-password-1\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let list = add(&["list"], "");
    assert!(String::from_utf8_lossy(&list.stdout).contains("shop-owner\towner\tshop"));

    let host = TestHost::start(&dir, toml).await;
    let base = host.url("");
    let base = base.trim_end_matches('/');
    let (cookie, _) = admin_login_as(base, "shop-owner", "shop-owner-password-1").await;
    let (s, body) = page(base, "/admin/merchants/shop", &cookie).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("shop-owner"));
    assert_eq!(page(base, "/admin/users", &cookie).await.0, 403);
    let _ = csrf_of(&body);

    // A new password ends the owner's sessions; the old one no longer logs in.
    let changed = add(&["password", "shop-owner"], "shop-owner-password-2\n");
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    assert_eq!(page(base, "/admin/merchants/shop", &cookie).await.0, 401);
    let old = request(
        "POST",
        &format!("{base}/admin/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        form(&[
            ("user", "shop-owner"),
            ("password", "shop-owner-password-1"),
        ])
        .into_bytes(),
    )
    .await;
    assert_eq!(old.status, 401);
    let (cookie, owner_csrf) = admin_login_as(base, "shop-owner", "shop-owner-password-2").await;
    let made = admin_post(
        base,
        "/admin/merchants/shop/tokens",
        &cookie,
        &form(&[("csrf", &owner_csrf), ("label", "owners-shop")]),
    )
    .await;
    assert!(made.contains("id=\"new-token\">phm_"), "{made}");
    // Removed: logged out at once, gone from the list, the token they made revoked (said); a
    // second removal names the problem.
    let removed = add(&["remove", "shop-owner"], "");
    assert!(removed.status.success(), "{removed:?}");
    let said = String::from_utf8_lossy(&removed.stderr);
    assert!(
        said.contains("revoked the API token(s) they made: #")
            && said.contains("(shop, owners-shop)"),
        "{said}"
    );
    assert_eq!(page(base, "/admin/merchants/shop", &cookie).await.0, 401);
    assert!(!String::from_utf8_lossy(&add(&["list"], "").stdout).contains("shop-owner"));
    let again = add(&["remove", "shop-owner"], "");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no admin user \"shop-owner\""));
}

/// An operator removes an admin user on the page: the user's session ends at once, the audit
/// log says who did it; an operator cannot remove the user they are logged in as.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_removes_an_admin_user_on_the_page() {
    let d = demo("admin-remove-user").await;
    let base = d.url("");
    let base = base.as_str();
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    for (name, role) in [("leaver", "owner"), ("ops-2", "operator")] {
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("name", name),
            ("role", role),
            ("password", "a-long-password-0123"),
        ];
        if role == "owner" {
            fields.push(("merchant", "demo"));
        }
        admin_post(base, "/admin/users", &op, &form(&fields)).await;
    }
    let (leaver, leaver_csrf) = admin_login_as(base, "leaver", "a-long-password-0123").await;
    assert_eq!(page(base, "/admin/merchants/demo", &leaver).await.0, 200);
    // The owner makes a token for their shop; the operator makes one too. The list says whose
    // each is.
    let made = |who: String, csrf: String, label: &'static str| async move {
        let page = admin_post(
            base,
            "/admin/merchants/demo/tokens",
            &who,
            &form(&[("csrf", &csrf), ("label", label)]),
        )
        .await;
        page.split("id=\"new-token\">")
            .nth(1)
            .and_then(|v| v.split('<').next())
            .unwrap_or_else(|| panic!("{page}"))
            .to_owned()
    };
    let leavers = made(leaver.clone(), leaver_csrf.clone(), "leaver-shop").await;
    let operators = made(op.clone(), csrf.clone(), "ops-shop").await;
    let works = |token: String| async move {
        get(&format!("{base}/v1/merchants/demo"), Some(&token))
            .await
            .status
    };
    assert_eq!(works(leavers.clone()).await, 200);
    let listed = page(base, "/admin/merchants/demo", &op).await.1;
    assert!(
        listed.contains(">leaver</td>") && listed.contains("运营者（主密码登录）"),
        "each token's maker: {listed}"
    );
    let (ops2, ops2_csrf) = admin_login_as(base, "ops-2", "a-long-password-0123").await;
    let users = page(base, "/admin/users", &ops2).await.1;
    assert!(
        users.contains("action=\"/admin/users/leaver/remove\"")
            && !users.contains("action=\"/admin/users/ops-2/remove\""),
        "a remove button for others only: {users}"
    );
    // The button says what removing the owner also does.
    assert!(
        users.contains("删除（并吊销其创建的 1 个 API 令牌）"),
        "{users}"
    );
    let after = admin_post(
        base,
        "/admin/users/leaver/remove",
        &ops2,
        &form(&[("csrf", &ops2_csrf)]),
    )
    .await;
    assert!(after.contains("已删除管理员 leaver"), "{after}");
    assert_eq!(page(base, "/admin/merchants/demo", &leaver).await.0, 401);
    // The token the owner made ends with their login (it could refund); the operator's stays.
    assert!(
        after.contains("其创建的 API 令牌已吊销") && after.contains("(demo, leaver-shop)"),
        "{after}"
    );
    assert_eq!(works(leavers).await, 401);
    assert_eq!(works(operators).await, 200);
    let mine = admin_post(
        base,
        "/admin/users/ops-2/remove",
        &ops2,
        &form(&[("csrf", &ops2_csrf)]),
    )
    .await;
    assert!(mine.contains("不能删除当前登录的自己"), "{mine}");
    // Not an owner's to do.
    let (owner, owner_csrf) = {
        admin_post(
            base,
            "/admin/users",
            &op,
            &form(&[
                ("csrf", &csrf),
                ("name", "o2"),
                ("role", "owner"),
                ("merchant", "demo"),
                ("password", "a-long-password-0123"),
            ]),
        )
        .await;
        admin_login_as(base, "o2", "a-long-password-0123").await
    };
    assert_eq!(
        post_status(
            base,
            "/admin/users/ops-2/remove",
            &owner,
            &form(&[("csrf", &owner_csrf)])
        )
        .await,
        403
    );
    let audit = page(base, "/admin/audit", &op).await.1;
    assert!(audit.contains("user.remove"), "{audit}");
    assert!(audit.contains("made by leaver, removed"), "{audit}");
    // The audit log's name for payhost.toml's password is nobody's user name.
    let taken = admin_post(
        base,
        "/admin/users",
        &op,
        &form(&[
            ("csrf", &csrf),
            ("name", "admin_password"),
            ("role", "operator"),
            ("password", "a-long-password-0123"),
        ]),
    )
    .await;
    assert!(taken.contains("id=\"name-error\""), "{taken}");
    // A name padded with spaces is still the operator's own.
    let padded = admin_post(
        base,
        "/admin/users/%20ops-2/remove",
        &ops2,
        &form(&[("csrf", &ops2_csrf)]),
    )
    .await;
    assert!(padded.contains("不能删除当前登录的自己"), "{padded}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_open_platform_sandbox_gateway_is_one_click_on_the_merchant_page() {
    let d = demo("admin-gateway-presets").await;
    let base = d.url("");
    let base = base.as_str();
    let (cookie, _) = admin_login(base, ADMIN_PASSWORD).await;
    let (status, html) = page(base, "/admin/merchants/open-shop", &cookie).await;
    assert_eq!(status, 200, "{html}");
    // The component offers the production and the sandbox gateway as the `gateway` field's
    // one-click values; the page renders them as buttons filling that field.
    let presets = html
        .split("id=\"gateway-presets\"")
        .nth(1)
        .and_then(|rest| rest.split("</div>").next())
        .unwrap_or_else(|| panic!("no gateway presets on the page:\n{html}"));
    for (value, label) in [
        (
            "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
            "支付宝沙箱环境",
        ),
        ("https://openapi.alipay.com/gateway.do", "正式环境"),
    ] {
        assert!(
            presets.contains(&format!(
                "data-target=\"gateway\" data-value=\"{value}\">{label}"
            )),
            "{value} missing from {presets}"
        );
    }
    // The legacy family's URL fields have no presets.
    assert!(!html.contains("id=\"gateway_url-presets\""));
    // A Chinese page names each setting in Chinese, with its key beside it (what payhost.toml
    // calls it), not the English label.
    for english in [
        "Seller mode",
        "Signature type",
        "Alipay seller account",
        "App private key",
    ] {
        assert!(!html.contains(english), "{english} on the Chinese page");
    }
    assert!(
        html.contains("<span class=\"rule\">mode — "),
        "the mode field's key is shown beside its label"
    );
}

/// The rows of the payment page's timeline: event and detail of each, as the page shows them.
fn timeline_rows(html: &str) -> Vec<(String, String)> {
    let table = html
        .split("id=\"timeline\"")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("no timeline on the page:\n{html}"));
    let cell = |td: &str| {
        td.split_once('>')
            .map(|(_, rest)| rest.split("</td>").next().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    table
        .split("<tr>")
        .skip(2)
        .map(|row| {
            let tds: Vec<&str> = row.split("<td").skip(1).collect();
            (cell(tds[1]), cell(tds[2]))
        })
        .collect()
}

/// A value that is not there yet (an unpaid order's buyer, trade number and paid time) is an
/// empty cell on the payment page, never the template engine's word for nothing. Synced and
/// closed from the page, its timeline reads in the page's language.
#[tokio::test(flavor = "multi_thread")]
async fn an_unpaid_payment_page_shows_empty_cells() {
    let demo = demo("admin-unpaid").await;
    let base = &demo.url("");
    create_payment(base, "demo", "UNPAID-1", "3.00", None).await;
    let (op, _) = admin_login(base, ADMIN_PASSWORD).await;
    let (status, html) = page(base, "/admin/merchants/demo/payments/UNPAID-1", &op).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("UNPAID-1"), "{html}");
    for word in ["none", "None", "null", "undefined"] {
        assert!(
            !html.contains(&format!(">{word}<")),
            "the page shows {word}: {html}"
        );
    }
    let paid = html
        .split("id=\"paid-at\">")
        .nth(1)
        .and_then(|rest| rest.split_once('<'))
        .map(|(cell, _)| cell);
    assert_eq!(paid, Some(""), "{html}");

    // Asked at the provider (still waiting: said as what it means), then closed here (the
    // legacy API has no close) once confirmed.
    let path = "/admin/merchants/demo/payments/UNPAID-1";
    let csrf = csrf_of(&html);
    let synced = admin_post(base, &format!("{path}/sync"), &op, &format!("csrf={csrf}")).await;
    assert_eq!(
        flash_of(&synced),
        "查询完成 UNPAID-1：支付宝上这笔交易仍在等待买家付款（买家还没有付款），订单仍是待付款"
    );
    let to =
        admin_post_location(base, &format!("{path}/close"), &op, &format!("csrf={csrf}")).await;
    assert_eq!(to, format!("{path}#close-confirm-card"));
    let (_, asked) = page(base, &to, &op).await;
    assert!(asked.contains("id=\"close-confirm-card\""), "{asked}");
    assert!(
        asked.contains("title=\"WAIT_BUYER_PAY\">待付款"),
        "nothing closed yet: {asked}"
    );
    let closed = admin_post(
        base,
        &format!("{path}/close"),
        &op,
        &format!("csrf={csrf}&confirm=1"),
    )
    .await;
    assert!(
        flash_of(&closed).starts_with("订单已关闭 UNPAID-1"),
        "{closed}"
    );
    assert!(!closed.contains("id=\"close-confirm-card\""), "{closed}");
    let (_, zh) = page(base, path, &op).await;
    let rows = timeline_rows(&zh);
    let kinds: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    for want in ["创建", "跳转收银台", "向支付平台查询", "关闭"] {
        assert!(kinds.contains(&want), "{want} missing: {rows:?}");
    }
    let detail_of = |rows: &[(String, String)], kind: &str| {
        rows.iter()
            .find(|(k, _)| k == kind)
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        detail_of(&rows, "向支付平台查询"),
        "待付款 · 无变化 · 交易仍在等待付款",
        "{rows:?}"
    );
    assert_eq!(
        detail_of(&rows, "关闭"),
        "仅在本地关闭，支付平台未关闭",
        "{rows:?}"
    );
    for (kind, detail) in &rows {
        assert!(!detail.starts_with('·'), "{kind}: {detail}");
    }
    // Switched to English: the same lines in English.
    let (_, en) = page(base, &format!("{path}?lang=en"), &op).await;
    let rows = timeline_rows(&en);
    assert_eq!(
        detail_of(&rows, "query"),
        "Awaiting payment · no change · the trade is still waiting",
        "{rows:?}"
    );
    assert!(
        detail_of(&rows, "closed").starts_with("closed here only: "),
        "{rows:?}"
    );
}

/// What the provider answered reads in words first, its codes kept in the cells' titles: a query
/// of an order the open platform never saw, and the merchant page's recent notifications. The
/// pages name an empty icon, so no browser asks for a `/favicon.ico` payhost does not serve.
#[tokio::test(flavor = "multi_thread")]
async fn provider_answers_read_in_words_first() {
    let d = demo("admin-words-first").await;
    let base = d.url("");
    let base = base.as_str();
    let login = get_page(base, "/admin", "").await;
    assert!(
        login.text().contains("<link rel=\"icon\" href=\"data:,\">"),
        "{}",
        login.text()
    );
    let csp = login
        .header("content-security-policy")
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp_directive(&csp, "img-src")
            .split_whitespace()
            .any(|s| s == "data:"),
        "the icon is allowed: {csp}"
    );
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;

    // Never seen by the provider: an answer (Alipay has no such trade), not a failure.
    create_payment(base, "open-shop", "WORDS-OPEN-1", "1.00", None).await;
    let synced = admin_post(
        base,
        "/admin/merchants/open-shop/payments/WORDS-OPEN-1/sync",
        &op,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(
        flash_of(&synced),
        "查询完成 WORDS-OPEN-1：支付宝没有这笔交易（买家还没有付款），订单仍是待付款"
    );
    assert!(
        synced.contains("class=\"card ok\" id=\"flash\""),
        "{synced}"
    );

    // A paid order's notification on the merchant page.
    let paid = send_json(
        "POST",
        &format!("{base}/v1/merchants/demo/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "WORDS-NOTIFIED", "subject": "测试", "total_fee": "1.00",
            "return_url": format!("{base}/shop/return")}),
    )
    .await
    .json();
    let pay_url = paid["pay_url"].as_str().expect("a pay_url").to_owned();
    conformance::orders::pay_all(base, &[pay_url], 1, std::time::Duration::ZERO).await;
    let mut table = String::new();
    for _ in 0..50 {
        let (_, html) = page(base, "/admin/merchants/demo", &op).await;
        table = html
            .split("id=\"notifications\"")
            .nth(1)
            .and_then(|t| t.split("</table>").next())
            .unwrap_or_default()
            .to_owned();
        if table.contains("WORDS-NOTIFIED") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for want in [
        "title=\"TRADE_SUCCESS\">已支付",
        "title=\"applied\">已处理",
        "title=\"WAIT_BUYER_PAY -&gt; TRADE_SUCCESS\">待付款 → 已支付",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    // No code shown as the text of a cell: only in titles.
    let mut shown = table.clone();
    while let Some(at) = shown.find(" title=\"") {
        let end = shown[at + 8..]
            .find('"')
            .map_or(shown.len(), |e| at + 8 + e + 1);
        shown.replace_range(at..end, "");
    }
    for code in ["TRADE_SUCCESS", "WAIT_BUYER_PAY", "applied", "-&gt;"] {
        assert!(!shown.contains(code), "{code} shown: {shown}");
    }
}

/// Admin pages (the login page and a merchant's, which shows a new API token once) are kept by
/// no cache, name no referrer to other sites, cannot be framed and post only to payhost.
#[tokio::test(flavor = "multi_thread")]
async fn admin_pages_are_not_cached_framed_or_posted_elsewhere() {
    let demo = demo("admin-headers").await;
    let base = &demo.url("");
    let (op, _) = admin_login(base, ADMIN_PASSWORD).await;
    for (path, cookie) in [
        ("/admin", ""),
        ("/admin", op.as_str()),
        ("/admin/merchants", op.as_str()),
        ("/admin/merchants/demo", op.as_str()),
        ("/admin/users", op.as_str()),
    ] {
        let r = get_page(base, path, cookie).await;
        assert_eq!(r.status, 200, "{path}");
        let header = |name: &str| r.header(name).unwrap_or_default();
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("form-action 'self';"), "{path}: {csp}");
        // No inline script runs and no inline style applies but the page's own, each allowed by
        // its SHA-256; no `style` attribute, which no hash allows.
        let body = r.text();
        for (directive, open, close) in [
            ("script-src", "<script>", "</script>"),
            ("style-src", "<style>", "</style>"),
        ] {
            let allowed = csp_directive(&csp, directive);
            assert!(!allowed.contains("unsafe-inline"), "{path}: {csp}");
            assert!(
                inline_elements_allowed(&body, open, close, &allowed),
                "{path}: an inline {open} not allowed by {csp}"
            );
        }
        assert!(!body.contains(" style="), "{path}: a style attribute");
        if path.starts_with("/admin/merchants/") {
            assert!(
                body.contains("<script>"),
                "the merchant page has its script"
            );
        }
    }
}

/// What a shop owner types wrong is refused in the page's words (Chinese first), naming the
/// field as the page labels it, and nothing the owner did not ask for is shown instead: a bad
/// filter shows no list (not every merchant's payments), a refused refund says why even when
/// no refund form is left to show it beside. Full-width digits from a Chinese keyboard are the
/// same amount. The same refund form sent twice starts one refund and says so.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_say_why_in_the_owners_words() {
    let d = demo("admin-refusals").await;
    let base = d.url("");
    let base = base.as_str();
    create_payment(base, "demo", "WORDS-UNPAID", "3.00", None).await;
    create_payment(base, "demo", "WORDS-PAID", "2.00", None).await;
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;

    // A bad filter: its field named in Chinese with what to type, and no list at all.
    let (status, html) = page(base, "/admin/payments?merchant=market&min_amount=abc", &op).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("最小金额："), "{html}");
    assert!(html.contains("半角数字"), "{html}");
    assert!(html.contains("请先修正上面的筛选条件"), "{html}");
    assert!(
        !html.contains("WORDS-UNPAID"),
        "a bad filter listed payments: {html}"
    );
    // The refused field, and only it, is marked in the form (red, and read out with its error).
    let marked = |html: &str| -> Vec<String> {
        html.split("<div class=\"has-error\"><label for=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next().map(str::to_owned))
            .collect()
    };
    assert_eq!(marked(&html), ["f-min"], "{html}");
    assert!(
        html.contains(
            r#"id="f-min" name="min_amount" aria-invalid="true" aria-describedby="filter-error""#
        ) && html.contains(r#"<div class="field-error" id="filter-error">最小金额："#),
        "{html}"
    );
    let (_, html) = page(base, "/admin/payments?from=2026-12-05&to=2026-12-01", &op).await;
    assert!(html.contains("下单日期从：不能晚于下单日期到"), "{html}");
    assert_eq!(marked(&html), ["f-from"], "{html}");
    // The refund list's first pair is when a refund was started, as its page labels it.
    let (_, html) = page(base, "/admin/refunds?from=2026-12-08&to=2026-12-01", &op).await;
    assert!(html.contains("发起日期从：不能晚于发起日期到"), "{html}");
    let (_, html) = page(base, "/admin/refunds?completed_to=2026-02-30", &op).await;
    assert_eq!(marked(&html), ["f-completed-to"], "{html}");
    // English pages keep the API's words.
    let (_, html) = page(base, "/admin/payments?min_amount=abc&lang=en", &op).await;
    assert!(html.contains("min_amount: "), "{html}");
    // Full-width digits filter as the same number.
    let (_, html) = page(
        base,
        &format!("/admin/payments?q=WORDS&min_amount={}", enc("０.５")),
        &op,
    )
    .await;
    assert!(!html.contains("class=\"field-error\""), "{html}");
    assert!(marked(&html).is_empty(), "{html}");
    assert!(html.contains("WORDS-UNPAID"), "{html}");
    // The filter's 合计, every page of it.
    let totals = html
        .split("id=\"totals\">")
        .nth(1)
        .and_then(|t| t.split("</p>").next())
        .unwrap_or_else(|| panic!("no totals: {html}"));
    assert!(
        totals.contains("<b>2</b>") && totals.contains("¥5.00"),
        "{totals}"
    );
    // The CSV of the same filter typed full-width by hand (a bookmarked link) exports those
    // rows too (it refused the amount, and found nothing for the search).
    let (status, csv) = page(
        base,
        &format!(
            "/admin/payments.csv?q={}&min_amount={}",
            enc("ＷＯＲＤＳ"),
            enc("０.５")
        ),
        &op,
    )
    .await;
    assert_eq!(status, 200, "{csv}");
    assert!(
        csv.contains("WORDS-UNPAID") && csv.contains("WORDS-PAID"),
        "{csv}"
    );

    // A refund of an unpaid order: no form is drawn, the reason is.
    let unpaid = "/admin/merchants/demo/payments/WORDS-UNPAID";
    let after = admin_post(
        base,
        &format!("{unpaid}/refunds"),
        &op,
        &form(&[
            ("csrf", &csrf),
            ("amount", "1.00"),
            ("refund_key", "k-unpaid"),
        ]),
    )
    .await;
    assert!(after.contains("id=\"amount-error\""), "{after}");
    assert!(after.contains("这笔订单待付款，不能退款"), "{after}");

    // Paid in the sandbox, then refunded in full-width digits, the same form twice.
    let paid = send_json(
        "POST",
        &format!("{base}/v1/merchants/demo/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "WORDS-PAID", "subject": "测试", "total_fee": "2.00",
            "return_url": format!("{base}/shop/return")}),
    )
    .await
    .json();
    let pay_url = paid["pay_url"].as_str().expect("a pay_url").to_owned();
    conformance::orders::pay_all(base, &[pay_url], 1, std::time::Duration::ZERO).await;
    let path = "/admin/merchants/demo/payments/WORDS-PAID";
    for _ in 0..50 {
        if page(base, path, &op).await.1.contains("id=\"refund-form\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refund = |amount: &'static str, key: &'static str| {
        form(&[
            ("csrf", &csrf),
            ("amount", amount),
            ("refund_key", key),
            ("reason", "测试"),
        ])
    };
    // Refused before anything is asked, each naming the field and what is wrong with it, the
    // headline saying it too.
    for (amount, want) in [
        ("abc", "退款金额：请只填写半角数字"),
        ("0.001", "最多两位小数"),
        ("9.00", "超过了可退金额：最多还能退 ¥2.00"),
        ("-1", "退款金额必须大于 0，最多 ¥2.00"),
        ("0", "退款金额必须大于 0，最多 ¥2.00"),
        ("1.", "小数点前后都要有数字"),
        (".5", "小数点前后都要有数字"),
    ] {
        let after = admin_post(
            base,
            &format!("{path}/refunds"),
            &op,
            &refund(amount, "k-bad"),
        )
        .await;
        assert!(after.contains(want), "{amount}: {after}");
        let headline = flash_of(&after);
        assert!(headline.starts_with("未发起退款："), "{amount}: {headline}");
        assert!(
            headline.contains(&want.replacen("退款金额：", "退款金额", 1)),
            "{amount}: {headline}"
        );
        assert!(
            !after.contains("id=\"refund-confirm\""),
            "{amount}: {after}"
        );
    }
    assert_eq!(
        flash_of(
            &admin_post(
                base,
                &format!("{path}/refunds"),
                &op,
                &refund("abc", "k-bad")
            )
            .await
        ),
        "未发起退款：退款金额请只填写半角数字和小数点，如 12.50（不要带 ¥、元或逗号）"
    );
    // On a phone the refund's cards are far down the page: the answer opens at them.
    let to =
        admin_post_location(base, &format!("{path}/refunds"), &op, &refund("0", "k-bad")).await;
    assert_eq!(to, format!("{path}#refund-card"));
    let to = admin_post_location(
        base,
        &format!("{path}/refunds"),
        &op,
        &refund("0.50", "k-bad"),
    )
    .await;
    assert_eq!(to, format!("{path}#refund-confirm-card"));
    // A reason with a tab: refused on the form, in Chinese, naming the field.
    let tabbed = form(&[
        ("csrf", &csrf),
        ("amount", "0.10"),
        ("refund_key", "k-tab"),
        ("reason", "尺码\t不合"),
    ]);
    let after = admin_post(base, &format!("{path}/refunds"), &op, &tabbed).await;
    assert!(after.contains("id=\"reason-error\""), "{after}");
    assert!(
        after.contains("退款原因：不能包含换行、制表符等控制字符"),
        "{after}"
    );
    // Confirmed all the same (a crafted post): the component's refusal is named the same way,
    // never blamed on Alipay, never in English.
    let after = admin_post(
        base,
        &format!("{path}/refunds"),
        &op,
        &format!("{tabbed}&confirm=1"),
    )
    .await;
    let said = after
        .split("id=\"reason-error\">")
        .nth(1)
        .and_then(|e| e.split("</div>").next())
        .unwrap_or_else(|| panic!("no reason error: {after}"));
    assert!(
        said.starts_with("退款原因：") && said.contains("控制字符"),
        "{said}"
    );
    assert!(
        !said.contains("支付宝") && !said.contains("must be"),
        "{said}"
    );
    assert!(after.contains("未发起退款"), "{after}");

    // The form asks first: the amount and the order, nothing refunded yet.
    let asked = admin_post(
        base,
        &format!("{path}/refunds"),
        &op,
        &refund("０.５", "k-1"),
    )
    .await;
    assert!(asked.contains("id=\"refund-confirm-card\""), "{asked}");
    assert!(
        asked.contains("id=\"confirm-amount\" class=\"big\">¥0.50"),
        "{asked}"
    );
    assert!(asked.contains("id=\"confirm-order\">WORDS-PAID"), "{asked}");
    assert!(
        asked.contains("name=\"refund_key\" value=\"k-1\""),
        "{asked}"
    );
    assert!(asked.contains("name=\"confirm\" value=\"1\""), "{asked}");
    // A legacy merchant's refund waits for the seller's password, and may be given up till then.
    assert!(
        asked.contains("要卖家在支付宝页面输入支付密码后才会退款") && asked.contains("可以放弃"),
        "{asked}"
    );
    assert!(!asked.contains("确认后退款会提交给支付宝"), "{asked}");
    let view = get(
        &format!("{base}/v1/merchants/demo/payments/WORDS-PAID"),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(
        view["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] != "FAILED")
            .count(),
        0,
        "nothing refunded before the confirmation: {view}"
    );
    // A double tap on 发起退款: its second tap lands on 确认退款 as the page comes up. Asked
    // again, nothing refunded; a confirmation after a pause goes through.
    let asked = admin_post(
        base,
        &format!("{path}/refunds"),
        &op,
        &refund("0.50", "k-1"),
    )
    .await;
    let tapped = admin_post(
        base,
        &format!("{path}/refunds"),
        &op,
        &format!(
            "{}&confirm=1&asked_at={}",
            refund("0.50", "k-1"),
            asked_at(&asked)
        ),
    )
    .await;
    assert!(tapped.contains("确认来得太快"), "{tapped}");
    assert!(tapped.contains("id=\"refund-confirm\""), "{tapped}");
    let refunds = get(
        &format!(
            "{base}{}",
            path.replace("/admin/merchants/", "/v1/merchants/")
        ),
        Some(TOKEN),
    )
    .await
    .json();
    assert!(
        refunds["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "FAILED"),
        "nothing refunded by the double tap: {refunds}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let confirm = format!(
        "{}&confirm=1&asked_at={}",
        refund("0.50", "k-1"),
        asked_at(&tapped)
    );
    let first = admin_post(base, &format!("{path}/refunds"), &op, &confirm).await;
    assert!(first.contains("已发起退款 ¥0.50"), "{first}");
    // The confirmation sent again (a double click, a reload): the same refund, said as done
    // (the answer of the second tap is the one the owner sees).
    let again = admin_post(base, &format!("{path}/refunds"), &op, &confirm).await;
    assert!(
        again.contains("已发起退款 ¥0.50") && again.contains("确认点了两次，只退了一次"),
        "{again}"
    );
    // The first form sent again (the back button): the same words, not a new refund's checks.
    let back_again = admin_post(
        base,
        &format!("{path}/refunds"),
        &op,
        &refund("0.50", "k-1"),
    )
    .await;
    assert!(
        back_again.contains("这笔退款已经发起过，没有重复退款：#"),
        "{back_again}"
    );
    let (_, audit) = page(base, "/admin/audit", &op).await;
    assert_eq!(
        audit.matches("WORDS-PAID：¥0.50").count(),
        1,
        "one refund, one audit line: {audit}"
    );
    // Shops see that an admin started it, never the admin's login name.
    for url in [
        format!(
            "{base}{}",
            path.replace("/admin/merchants/", "/v1/merchants/")
        ),
        format!("{base}/v1/refunds"),
        format!("{base}/v1/refunds.csv"),
    ] {
        let seen = get(&url, Some(TOKEN)).await.text();
        assert!(
            seen.contains("\"started_by\":\"admin\"") || seen.contains(",admin,"),
            "{url}: {seen}"
        );
        assert!(
            seen.match_indices("admin:")
                .all(|(i, _)| seen[i + "admin:".len()..].starts_with(' ')),
            "no login name after admin: {url}: {seen}"
        );
    }

    // 全额退款: what is left, asked like any other; 返回修改 goes back to the form as typed.
    let full = form(&[
        ("csrf", &csrf),
        ("amount", ""),
        ("refund_key", "k-full"),
        ("full", "1"),
    ]);
    let asked = admin_post(base, &format!("{path}/refunds"), &op, &full).await;
    assert!(!asked.contains("没有使用"), "{asked}");
    // Pressed with an amount typed: said that the amount is not used.
    let typed_too = form(&[
        ("csrf", &csrf),
        ("amount", "0.10"),
        ("refund_key", "k-full"),
        ("full", "1"),
    ]);
    let said = admin_post(base, &format!("{path}/refunds"), &op, &typed_too).await;
    assert!(
        said.contains("你填写的 0.10 没有使用：全额退款是全部可退金额"),
        "{said}"
    );
    assert!(
        asked.contains("id=\"confirm-amount\" class=\"big\">¥1.50"),
        "{asked}"
    );
    assert!(asked.contains("id=\"confirm-full\""), "{asked}");
    let edit = form(&[
        ("csrf", &csrf),
        ("amount", "1.50"),
        ("refund_key", "k-full"),
        ("edit", "1"),
    ]);
    let back = admin_post(base, &format!("{path}/refunds"), &op, &edit).await;
    assert!(back.contains("id=\"refund-form\""), "{back}");
    assert!(
        back.contains("id=\"refund-amount\" name=\"amount\" inputmode=\"decimal\" value=\"1.50\""),
        "{back}"
    );
    assert!(back.contains("id=\"refund-full\""), "{back}");
    // The form keeps its refund_key: a confirmation whose answer was lost is the same refund.
    assert!(
        back.contains("name=\"refund_key\" value=\"k-full\""),
        "{back}"
    );

    // The legacy refund waits for the seller on Alipay's page; given up, its amount is free again.
    let (_, html) = page(base, path, &op).await;
    assert!(html.contains("id=\"refundable\">¥1.50"), "{html}");
    // The amount waiting for the seller is shown beside what is left: the sums add up.
    assert!(html.contains("id=\"refund-pending\">¥0.50"), "{html}");
    let abandon = html
        .split("action=\"")
        .filter_map(|a| a.split('"').next())
        .find(|a| a.ends_with("/abandon"))
        .unwrap_or_else(|| panic!("no 放弃 on a pending refund: {html}"))
        .to_owned();
    // Asked first: the risk is said, and nothing is given up until confirmed.
    let asked = admin_post(base, &abandon, &op, &form(&[("csrf", &csrf)])).await;
    assert!(asked.contains("还没有放弃"), "{asked}");
    assert!(asked.contains("id=\"abandon-confirm-card\""), "{asked}");
    assert!(asked.contains("再退一次就会退两次"), "{asked}");
    assert!(asked.contains("id=\"refundable\">¥1.50"), "{asked}");
    let after = admin_post(
        base,
        &abandon,
        &op,
        &form(&[("csrf", &csrf), ("confirm", "1")]),
    )
    .await;
    assert!(after.contains("已放弃退款"), "{after}");
    assert!(after.contains("id=\"refundable\">¥2.00"), "{after}");
    assert!(
        !after.contains("/abandon\""),
        "nothing left to give up: {after}"
    );
    let again = admin_post(
        base,
        &abandon,
        &op,
        &form(&[("csrf", &csrf), ("confirm", "1")]),
    )
    .await;
    assert!(again.contains("只有等待卖家确认的退款可以放弃"), "{again}");
    // The page calls it given up, by whom, not a failure the provider explained…
    for want in [
        "已放弃（卖家未确认）",
        "由 运营者（主密码登录） 在 payhost 放弃",
    ] {
        assert!(again.contains(want), "{want}: {again}");
    }
    assert!(!again.contains("支付平台说明：given up"), "{again}");
    // The timeline keeps the give-up as a step of its own (a later confirmation ends the
    // refund's row SUCCESS).
    let timeline = again
        .split("id=\"timeline\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no timeline: {again}"));
    assert!(
        timeline.contains("\">放弃退款</td><td data-label=\"说明\">¥0.50 · 由 运营者（主密码登录） 在 payhost 放弃"),
        "{timeline}"
    );
    // …while the API keeps what it said.
    let view = get(
        &format!("{base}/v1/merchants/demo/payments/WORDS-PAID"),
        Some(TOKEN),
    )
    .await
    .json();
    let given_up = view["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["amount"] == "0.50")
        .unwrap_or_else(|| panic!("{view}"));
    assert_eq!(given_up["status"], "FAILED", "{view}");
    assert!(
        given_up["detail"]
            .as_str()
            // Who, as the API shows it: an admin, never the admin's login name.
            .is_some_and(|d| d == "given up by admin: the seller never confirmed it"),
        "{view}"
    );

    // A path typed with doubled slashes is not the admin's (a balancer's access list on
    // `/admin` would not see it): a 404 that links nowhere, never a page whose language switch
    // (`//admin…`) would lead to another host.
    let (status, html) = page(base, "//admin//payments", &op).await;
    assert_eq!(status, 404);
    assert!(!html.contains("href=\"//"), "{html}");
}

/// In the demo, a merchant added on the admin page can be an open-platform one: the sandbox's
/// open-platform gateway is its default, and the legacy family's sandbox URLs (the default of
/// every legacy merchant) are neither saved nor reported against it.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_demo_merchant_can_be_an_open_platform_one() {
    let d = demo("admin-new-openapi").await;
    let base = d.url("");
    let base = base.as_str();
    let value = |k: &str| demo_setting(&d, "open-shop", k);
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let after = admin_post(
        base,
        "/admin/merchants/newshop",
        &op,
        &form(&[
            ("csrf", &csrf),
            ("api", "openapi"),
            ("app_id", &value("app_id")),
            ("app_private_key", &value("app_private_key")),
            ("alipay_public_key", &value("alipay_public_key")),
            ("seller_id", &value("seller_id")),
        ]),
    )
    .await;
    assert!(after.contains("已保存并校验"), "{after}");
    let view = get(&format!("{base}/v1/merchants/newshop"), Some(TOKEN))
        .await
        .json();
    assert_eq!(view["api"], "openapi", "{view}");
    assert_eq!(view["gateway"], value("gateway"), "{view}");
    assert!(view.get("gateway_url").is_none(), "{view}");
    // It pays in the sandbox like open-shop.
    create_payment(base, "newshop", "NEW-OPEN-1", "1.00", None).await;
}

/// One setting of a demo merchant, as the demo's payhost.toml holds it.
fn demo_setting(d: &TestHost, merchant: &str, key: &str) -> String {
    let config: toml::Table = std::fs::read_to_string(d.dir.join("payhost.toml"))
        .unwrap()
        .parse()
        .unwrap();
    config["merchants"][merchant]["settings"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} of {merchant}"))
        .to_owned()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A legacy-API order closed here only (the legacy API has no close call) can still be paid in
/// the cashier the buyer already opened. The money is not lost from sight: the payment becomes
/// paid (the shop gets `payment.paid`) and is flagged for review with the reason, which its page
/// shows.
#[tokio::test(flavor = "multi_thread")]
async fn a_payment_after_a_close_here_is_held_for_review() {
    let d = demo("admin-closed-paid").await;
    let base = d.url("");
    let base = base.as_str();
    let created = send_json(
        "POST",
        &format!("{base}/v1/merchants/demo/payments"),
        Some(TOKEN),
        &json!({"out_trade_no": "CLOSED-PAID", "subject": "测试", "total_fee": "1.00",
            "return_url": format!("{base}/shop/return")}),
    )
    .await
    .json();
    let cashier = get(created["pay_url"].as_str().unwrap(), None).await.text();
    let token = conformance::alipay::cashier_token(&cashier);
    let closed = send_json(
        "POST",
        &format!("{base}/v1/merchants/demo/payments/CLOSED-PAID/close"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(closed.status, 200, "{}", closed.text());
    assert_eq!(closed.json()["closed_at_provider"], false);
    let paid = conformance::host::post_form(
        &format!("{base}/sandbox/cashier/pay"),
        &format!("token={token}&buyer=13900001111"),
    )
    .await;
    assert!(paid.status == 302 || paid.status == 303, "{}", paid.text());
    let url = format!("{base}/v1/merchants/demo/payments/CLOSED-PAID");
    let mut view = serde_json::Value::Null;
    for _ in 0..100 {
        view = get(&url, Some(TOKEN)).await.json();
        if view["review"].as_str().is_some_and(|r| !r.is_empty())
            && view["status"] == "TRADE_SUCCESS"
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(view["status"], "TRADE_SUCCESS", "{view}");
    let review = view["review"].as_str().unwrap_or_default();
    assert!(review.contains("after it was closed here"), "{view}");
    assert!(review.contains("关闭后又收到付款"), "{view}");
    let outcomes: Vec<&str> = view["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["outcome"].as_str())
        .collect();
    assert!(outcomes.contains(&"applied"), "{view}");
    let (op, _) = admin_login(base, ADMIN_PASSWORD).await;
    let (_, html) = page(base, "/admin/merchants/demo/payments/CLOSED-PAID", &op).await;
    assert!(html.contains("id=\"review\""), "{html}");
    // Shown on the page, not in a tooltip: the Chinese explanation, the original beside it.
    let explained = html
        .split("id=\"review-explained\">")
        .nth(1)
        .and_then(|r| r.split("</p>").next())
        .unwrap_or_else(|| panic!("no explanation: {html}"));
    assert!(explained.starts_with("关闭后又收到付款"), "{explained}");
    assert!(!explained.contains("paid after"), "{explained}");
    assert!(html.contains("id=\"review-raw\">"), "{html}");
    // The list's rows (a phone's cards) say it too.
    let (_, list) = page(base, "/admin/payments?q=CLOSED-PAID", &op).await;
    let note = list
        .split("class=\"review-note\"")
        .nth(1)
        .and_then(|r| r.split("</div>").next())
        .unwrap_or_else(|| panic!("no review note in the list: {list}"));
    assert!(
        note.contains("需要人工核对") && note.contains("关闭后又收到付款"),
        "{note}"
    );
    // A second reason joins the first, never replaces it: the note keeps both, in order, and
    // the page explains each on its own line.
    let mismatch = "total_fee: the notification says 2.00 but the order is 1.00";
    d.app()
        .store
        .flag_for_review("demo", "CLOSED-PAID", mismatch)
        .await
        .unwrap();
    let view = get(&url, Some(TOKEN)).await.json();
    let review = view["review"].as_str().unwrap_or_default().to_owned();
    let reasons: Vec<&str> = review.lines().collect();
    assert_eq!(reasons.len(), 2, "{view}");
    assert!(reasons[0].contains("关闭后又收到付款"), "{view}");
    assert_eq!(reasons[1], mismatch, "{view}");
    let (_, html) = page(base, "/admin/merchants/demo/payments/CLOSED-PAID", &op).await;
    let explained = html
        .split("id=\"review-explained\">")
        .nth(1)
        .and_then(|r| r.split("</p>").next())
        .unwrap_or_else(|| panic!("no explanation: {html}"));
    let lines: Vec<&str> = explained.lines().collect();
    assert_eq!(lines.len(), 2, "{explained}");
    assert!(lines[0].starts_with("关闭后又收到付款"), "{explained}");
    assert!(lines[1].contains("金额"), "{explained}");
    // Found by the review filter (and only it), then marked as checked: the flag goes, the
    // timeline and the audit say who; a stale page's reason clears nothing.
    create_payment(base, "demo", "NOT-HELD", "1.00", None).await;
    let (_, held) = page(base, "/admin/payments?review=1", &op).await;
    assert!(held.contains("CLOSED-PAID"), "{held}");
    assert!(!held.contains("NOT-HELD"), "{held}");
    let (_, html) = page(base, "/admin/merchants/demo/payments/CLOSED-PAID", &op).await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let updated_at = html
        .split("name=\"updated_at\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let action = "/admin/merchants/demo/payments/CLOSED-PAID/review";
    let stale = admin_post(
        base,
        action,
        &op,
        &form(&[
            ("csrf", &csrf),
            ("review", "an older reason"),
            ("updated_at", &updated_at),
        ]),
    )
    .await;
    assert!(stale.contains("核对原因已经变了"), "{stale}");
    assert!(get(&url, Some(TOKEN)).await.json()["review"].is_string());
    let cleared = admin_post(
        base,
        action,
        &op,
        &form(&[
            ("csrf", &csrf),
            // A browser sends the hidden field's line break back as CRLF.
            ("review", &review.replace('\n', "\r\n")),
            ("updated_at", &updated_at),
        ]),
    )
    .await;
    assert!(cleared.contains("已标记为已核对"), "{cleared}");
    assert!(!cleared.contains("id=\"review\""), "{cleared}");
    let view = get(&url, Some(TOKEN)).await.json();
    assert!(view["review"].is_null(), "{view}");
    assert!(
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "review"),
        "{view}"
    );
    let (_, held) = page(base, "/admin/payments?review=1", &op).await;
    assert!(!held.contains("CLOSED-PAID"), "{held}");
    let (_, audit) = page(base, "/admin/audit", &op).await;
    assert!(audit.contains("核对完毕，取消标记"), "{audit}");
}

/// A session that ended while the owner was working (expired, or a post without one): the
/// login page says so in Chinese (and English), and the login returns to the page they were on,
/// never to another site; the post itself is never replayed.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_says_so_and_returns_to_the_page() {
    let d = demo("admin-expired").await;
    let base = d.url("");
    let base = base.as_str();
    create_payment(base, "demo", "EXPIRED-1", "1.00", None).await;
    let stale = "payhost_admin=a-session-that-expired-long-ago";
    let payment = "/admin/merchants/demo/payments/EXPIRED-1";
    let r = request(
        "POST",
        &format!("{base}{payment}/refunds"),
        &[
            ("cookie", stale),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form(&[("csrf", "x"), ("amount", "1.00"), ("refund_key", "k")]).into_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    let html = r.text();
    assert!(html.contains("id=\"login-notice\""), "{html}");
    assert!(html.contains("登录已过期，请重新登录"), "{html}");
    assert!(
        html.contains(&format!("name=\"next\" value=\"{payment}\"")),
        "{html}"
    );
    // A page opened with an old cookie: the same, back to that page and its filters.
    let (status, html) = page(base, "/admin/payments?q=EXPIRED&lang=en", stale).await;
    assert_eq!(status, 401);
    assert!(html.contains("Your login has expired"), "{html}");
    assert!(
        html.contains("name=\"next\" value=\"/admin/payments?q=EXPIRED\""),
        "{html}"
    );
    // A first visit is no expiry.
    let (status, html) = page(base, "/admin", "").await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("login-notice") && !html.contains("name=\"next\""),
        "{html}"
    );
    // Logged in again: back to the page (the refund was not made).
    let login = |next: &str| {
        let body = form(&[("user", ""), ("password", ADMIN_PASSWORD), ("next", next)]);
        async move { conformance::host::post_form(&format!("{base}/admin/login"), &body).await }
    };
    let r = login(payment).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some(payment));
    let view = get(
        &format!("{base}/v1/merchants/demo/payments/EXPIRED-1"),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(view["refunds"].as_array().map(Vec::len), Some(0), "{view}");
    // Never to another site.
    for evil in [
        "//evil.example/admin",
        "/\\evil.example",
        "https://evil.example/admin",
        "/admin//evil.example",
        "/admin/\r\nx",
    ] {
        let r = login(evil).await;
        assert_eq!(r.status, 303, "{evil:?}");
        assert_eq!(r.header("location").as_deref(), Some("/admin"), "{evil:?}");
    }
}

/// A session ends `[admin] session_idle_s` (30 min) after its last page, not 8 h after login:
/// a login lasts 30 min, a page opened moves its end on, and an unused one asks to log in again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unused_session_ends_and_a_used_one_lives_on() {
    let d = demo("admin-idle").await;
    let base = d.url("");
    let base = base.trim_end_matches('/');
    let store = &d.app().store;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    const IDLE_MS: i64 = 30 * 60 * 1000;

    // A login lasts the idle time, not the whole 8 h.
    let (cookie, _) = admin_login(base, ADMIN_PASSWORD).await;
    let id = cookie.trim_start_matches("payhost_admin=");
    let s = store
        .admin_session(&payhost::auth::token_hash(id), now())
        .await
        .unwrap()
        .expect("the login's session");
    assert!(
        (s.expires_ms - s.created_ms - IDLE_MS).abs() < 1_000,
        "{s:?}"
    );

    // A session of payhost.toml's password carries its hash's mark at the end of its CSRF
    // token (a rotated password ends it): the sessions made here carry the login's.
    let csrf = s.csrf.clone();
    // A session about to end (29.5 min unused) is moved on by the page the owner opens.
    let (id, hash) = (
        "idle-session-in-use",
        payhost::auth::token_hash("idle-session-in-use"),
    );
    store
        .create_user_session(&hash, &csrf, now() + 30_000, None)
        .await
        .unwrap();
    let (status, html) = page(base, "/admin/payments", &format!("payhost_admin={id}")).await;
    assert_eq!(status, 200, "{html}");
    let s = store
        .admin_session(&hash, now())
        .await
        .unwrap()
        .expect("still live");
    assert!(s.expires_ms > now() + IDLE_MS - 60_000, "{s:?}");
    // The next page within the minute writes nothing (the end stays where it was).
    let before = s.expires_ms;
    assert_eq!(
        page(base, "/admin/payments", &format!("payhost_admin={id}"))
            .await
            .0,
        200
    );
    let s = store.admin_session(&hash, now()).await.unwrap().unwrap();
    assert_eq!(s.expires_ms, before);

    // One left unused past its end asks to log in again, and stays ended.
    let (id, hash) = (
        "idle-session-left",
        payhost::auth::token_hash("idle-session-left"),
    );
    store
        .create_user_session(&hash, &csrf, now() + 300, None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (status, html) = page(base, "/admin/payments", &format!("payhost_admin={id}")).await;
    assert_eq!(status, 401);
    assert!(html.contains("登录已过期，请重新登录"), "{html}");
    store
        .extend_admin_session(&hash, now(), now() + IDLE_MS)
        .await
        .unwrap();
    assert!(store.admin_session(&hash, now()).await.unwrap().is_none());
}

/// An open-platform payment of 2.00 `no` created and paid in the sandbox's cashier; its admin
/// page's path, once the page offers a refund.
async fn open_shop_paid(base: &str, op: &str, no: &str) -> String {
    pay_in_open_cashier(base, no, "2.00").await;
    let path = format!("/admin/merchants/open-shop/payments/{no}");
    for _ in 0..100 {
        if page(base, &path, op).await.1.contains("id=\"refund-form\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    path
}

/// The open platform's own back office refunds `amount` of open-shop's order `no` (payhost is not
/// told: the sandbox's portal control).
async fn portal_refund(d: &TestHost, no: &str, amount: &str, request_no: &str) {
    let app_id = demo_setting(d, "open-shop", "app_id");
    let r = conformance::host::post_form(
        &d.url("/sandbox/openapi/refund"),
        &format!(
            "app_id={app_id}&out_trade_no={no}&refund_amount={amount}&out_request_no={request_no}"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The `asked_at` of a refund's confirmation card (the time its first tap was answered).
fn asked_at(page: &str) -> String {
    page.split("name=\"asked_at\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("no confirmation card: {page}"))
        .to_owned()
}

/// A refund asked on the page of a trade the owner already refunded in full in the open
/// platform's own back office (which sends payhost no notification): Alipay refuses it, the page
/// says so and that payhost is asking Alipay about the trade, and the payment turns 已退款 by
/// itself, the 2.00 counted as refunded there, without the owner pressing 向支付平台查询.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_refused_for_a_trade_refunded_in_alipay_is_followed_by_a_query() {
    let d = demo("admin-refused-closed").await;
    let base = d.url("");
    let base = base.as_str();
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let path = open_shop_paid(base, &op, "CLOSED-THERE-1").await;
    portal_refund(&d, "CLOSED-THERE-1", "2.00", "PORTAL-ALL").await;
    let refund = form(&[
        ("csrf", &csrf),
        ("amount", "0.50"),
        ("refund_key", "k-closed"),
        ("reason", "测试"),
    ]);
    let asked = admin_post(base, &format!("{path}/refunds"), &op, &refund).await;
    let asked_at = asked_at(&asked);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let said = admin_post(
        base,
        &format!("{path}/refunds"),
        &op,
        &format!("{refund}&confirm=1&asked_at={asked_at}"),
    )
    .await;
    let headline = flash_of(&said);
    assert!(
        said.contains("支付宝拒绝了这笔退款") && said.contains("payhost 正在向支付宝查询这笔交易"),
        "{headline}\n{said}"
    );
    let api = format!("{base}/v1/merchants/open-shop/payments/CLOSED-THERE-1");
    let mut p = serde_json::Value::Null;
    for _ in 0..100 {
        p = get(&api, Some(TOKEN)).await.json();
        if p["status"] == "REFUNDED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(p["status"], "REFUNDED", "{p}");
    assert_eq!(p["refunded_amount"], "2.00", "{p}");
    assert_eq!(
        conformance::host::refund_rows(&p),
        [
            ("0.50".to_owned(), "FAILED".to_owned(), "admin".to_owned()),
            (
                "2.00".to_owned(),
                "SUCCESS".to_owned(),
                "gateway".to_owned()
            )
        ],
        "{p}"
    );
    let (_, html) = page(base, &path, &op).await;
    assert!(html.contains("已退款"), "{html}");
    assert!(
        !html.contains("id=\"refund-form\""),
        "nothing left to refund: {html}"
    );
}

/// What a token changes through the API is in the audit log, as what someone does on the pages
/// is: a shop server taken over is found out by what its token did (SECURITY.md). Each line
/// names the token's holder and the merchant, and a settings save names the fields that changed,
/// never a value.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_token_changes_through_the_api_is_audited() {
    let d = demo("admin-api-audit").await;
    let base = d.url("");
    let base = base.as_str();
    let (op, _) = admin_login(base, ADMIN_PASSWORD).await;
    let merchant = format!("{base}/v1/merchants/audited");
    let settings = |key: &str| json!({"partner": "2088101122136241", "key": key, "seller_email": "seller@example.com"});
    let old_key = "50000000000000000000000000000abc";
    let new_key = "60000000000000000000000000000def";
    let r = send_json("PUT", &merchant, Some(TOKEN), &settings(old_key)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send_json(
        "POST",
        &format!("{merchant}/tokens"),
        Some(TOKEN),
        &json!({"label": "shop server"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let (tid, shop_token) = (
        r.json()["id"].as_i64().unwrap(),
        r.json()["token"].as_str().unwrap().to_owned(),
    );
    // The shop's own token replaces the key (a stolen one could).
    let r = send_json("PUT", &merchant, Some(&shop_token), &settings(new_key)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        "DELETE",
        &format!("{merchant}/tokens/{tid}"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A refund and a close through the API.
    let path = open_shop_paid(base, &op, "API-AUDIT-1").await;
    assert!(path.ends_with("API-AUDIT-1"));
    let r = send_json(
        "POST",
        &format!("{base}/v1/merchants/open-shop/payments/API-AUDIT-1/refunds"),
        Some(TOKEN),
        &json!({"amount": "0.50", "reason": "api"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // The rest refunded in the open platform's own back office (payhost not told): the next
    // refund through the API is refused by the provider, and still audited.
    portal_refund(&d, "API-AUDIT-1", "1.50", "PORTAL-AUDIT").await;
    let r = send_json(
        "POST",
        &format!("{base}/v1/merchants/open-shop/payments/API-AUDIT-1/refunds"),
        Some(TOKEN),
        &json!({"amount": "0.20", "reason": "api"}),
    )
    .await;
    assert_eq!(r.status, 502, "{}", r.text());
    let refused_code = r.json()["error"]["code"].as_str().unwrap().to_owned();
    assert!(refused_code.starts_with("gateway_"), "{}", r.text());
    create_payment(base, "demo", "API-AUDIT-2", "1.00", None).await;
    let r = send_json(
        "POST",
        &format!("{base}/v1/merchants/demo/payments/API-AUDIT-2/close"),
        Some(TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The refund the provider refused says why on its row of the payment's page, as on the
    // refund list (an owner's walk found only 失败 there).
    for at in [path.as_str(), "/admin/refunds?q=API-AUDIT-1"] {
        let (_, html) = page(base, at, &op).await;
        let why = html
            .split("class=\"muted failed-why\">")
            .nth(1)
            .and_then(|w| w.split('<').next())
            .unwrap_or_else(|| panic!("no reason for the failed refund on {at}: {html}"));
        assert!(why.starts_with("支付宝"), "{at}: {why}");
    }
    let (_, audit) = page(base, "/admin/audit?lang=en", &op).await;
    for want in [
        "plugin alipay-wap; new merchant",
        "the shop (audited)",
        "plugin alipay-wap; changed: key",
        &format!("token #{tid} shop server"),
        &format!("token #{tid}<"),
        "API-AUDIT-1: ¥0.50 #",
        &format!("API-AUDIT-1: ¥0.20 ({refused_code}) FAILED"),
        "API-AUDIT-2",
        "the operator (API)",
    ] {
        assert!(audit.contains(want), "{want} missing: {audit}");
    }
    for secret in [old_key, new_key, shop_token.as_str()] {
        assert!(
            !audit.contains(secret),
            "a secret in the audit log: {audit}"
        );
    }
    let (_, zh) = page(base, "/admin/audit", &op).await;
    assert!(zh.contains("插件 alipay-wap；改动：key"), "{zh}");
    assert!(
        zh.contains(&format!("API-AUDIT-1：¥0.20 ({refused_code}) 失败")),
        "{}",
        zh.split("API-AUDIT-1").nth(2).unwrap_or(&zh)
    );
}

/// A refund asked on one order (its confirmation card to come) while another page of the same
/// login is loaded first (a second tab): that page shows no card and nothing of the refund, and
/// the order it was asked on still asks. Before, whichever page came next took the question and
/// drew the card for its own order: confirming it refunded the wrong order.
#[tokio::test(flavor = "multi_thread")]
async fn a_refund_asked_on_one_order_is_never_confirmed_on_another() {
    let d = demo("admin-refund-other-tab").await;
    let base = d.url("");
    let base = base.as_str();
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let asked_on = open_shop_paid(base, &op, "TAB-A").await;
    let other = open_shop_paid(base, &op, "TAB-B").await;
    let ask = form(&[
        ("csrf", &csrf),
        ("amount", "0.30"),
        ("refund_key", "k-tab-a"),
        ("reason", "给A的退款"),
    ]);
    let to = admin_post_location(base, &format!("{asked_on}/refunds"), &op, &ask).await;
    let (_, elsewhere) = page(base, &other, &op).await;
    assert!(
        !elsewhere.contains("refund-confirm-card") && !elsewhere.contains("给A的退款"),
        "another order's page took the refund's question: {elsewhere}"
    );
    let to = to.split('#').next().unwrap();
    assert_eq!(to, asked_on);
    let (_, own) = page(base, to, &op).await;
    assert!(
        own.contains("id=\"refund-confirm-card\"")
            && own.contains("给A的退款")
            && own.contains("¥0.30")
            && own.contains("TAB-A"),
        "the order the refund was asked on asks for its confirmation: {own}"
    );
    // Shown once: loaded again, the page asks nothing.
    let (_, again) = page(base, to, &op).await;
    assert!(!again.contains("refund-confirm-card"), "{again}");
}

/// An open-platform refund whose answer is lost (the sandbox makes it, then answers HTTP 500):
/// the page says the outcome is unknown and not to refund again, never "not started", and the
/// form keeps its refund_key (sent again, it is the same refund). An order refunded in full
/// says so, not that the amount is too large.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_refund_outcome_is_never_called_not_started() {
    let d = demo("admin-refund-unknown").await;
    let base = d.url("");
    let base = base.as_str();
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let mut paths = Vec::new();
    for no in ["OPEN-LOST-1", "OPEN-FULL-1"] {
        paths.push(open_shop_paid(base, &op, no).await);
    }
    let faults = send_json(
        "POST",
        &format!("{base}/sandbox/faults"),
        None,
        &json!({"refund_answers_lost": 1}),
    )
    .await;
    assert_eq!(faults.status, 200, "{}", faults.text());
    let lost = form(&[
        ("csrf", &csrf),
        ("amount", "0.50"),
        ("refund_key", "k-lost"),
        ("reason", "测试"),
        ("confirm", "1"),
    ]);
    let after = admin_post(base, &format!("{}/refunds", paths[0]), &op, &lost).await;
    let flash = after
        .split("id=\"flash\">")
        .nth(1)
        .and_then(|f| f.split("</div>").next())
        .unwrap_or_else(|| panic!("no message: {after}"));
    assert!(
        flash.contains("退款结果未知") && flash.contains("请不要再次退款"),
        "{flash}"
    );
    assert!(!flash.contains("未发起退款"), "{flash}");
    assert!(after.contains("结果未知"), "{after}");
    assert!(
        after.contains("name=\"refund_key\" value=\"k-lost\""),
        "the form keeps the refund's key: {after}"
    );
    // The admin's refunds CSV says which admin started it, as its pages do; the API's says
    // `admin`.
    let (_, own_csv) = page(base, "/admin/refunds.csv?q=OPEN-LOST-1", &op).await;
    assert!(own_csv.contains(",admin:admin_password,"), "{own_csv}");
    let api_csv = conformance::host::get(
        &format!("{base}/v1/refunds.csv?merchant=open-shop"),
        Some(TOKEN),
    )
    .await
    .text();
    assert!(
        api_csv.contains(",admin,") && !api_csv.contains("admin:"),
        "{api_csv}"
    );
    // The refund kept is in the audit log, as every refund an admin started.
    let (_, audit) = page(base, "/admin/audit", &op).await;
    assert_eq!(
        audit.matches("OPEN-LOST-1：¥0.50 #").count(),
        1,
        "the refund whose outcome is unknown is audited once: {audit}"
    );

    // Refunded in full (全额退款, confirmed): a stale form says so.
    let path = &paths[1];
    let full = form(&[("csrf", &csrf), ("refund_key", "k-all"), ("full", "1")]);
    let asked = admin_post(base, &format!("{path}/refunds"), &op, &full).await;
    assert!(asked.contains("¥2.00"), "{asked}");
    let confirm = form(&[
        ("csrf", &csrf),
        ("amount", "2.00"),
        ("refund_key", "k-all"),
        ("confirm", "1"),
    ]);
    let done = admin_post(base, &format!("{path}/refunds"), &op, &confirm).await;
    assert!(done.contains("已发起退款 ¥2.00"), "{done}");
    assert!(
        done.contains("id=\"payment-status\" title=\"REFUNDED\""),
        "{done}"
    );
    for body in [
        form(&[
            ("csrf", &csrf),
            ("amount", "1.00"),
            ("refund_key", "k-more"),
        ]),
        form(&[
            ("csrf", &csrf),
            ("amount", "1.00"),
            ("refund_key", "k-more"),
            ("confirm", "1"),
        ]),
    ] {
        let after = admin_post(base, &format!("{path}/refunds"), &op, &body).await;
        assert!(after.contains("这笔订单已全额退款"), "{after}");
        assert!(!after.contains("超过了可退金额"), "{after}");
    }
}

/// Plants rows in the sandbox's bill of `day` for `app_id` (each a form of `/openapi/bill-extra`).
/// The operator (`op`, `csrf`) adds the shop owner `o-demo` of the merchant `demo`, who logs in:
/// their session cookie.
async fn owner_of_demo(base: &str, op: &str, csrf: &str) -> String {
    admin_post(
        base,
        "/admin/users",
        op,
        &form(&[
            ("csrf", csrf),
            ("name", "o-demo"),
            ("role", "owner"),
            ("merchant", "demo"),
            ("password", "a-long-password-0123"),
        ]),
    )
    .await;
    admin_login_as(base, "o-demo", "a-long-password-0123")
        .await
        .0
}

async fn plant_bill_rows(base: &str, app_id: &str, day: &str, rows: &[String]) {
    for row in rows {
        let planted = conformance::host::post_form(
            &format!("{base}/sandbox/openapi/bill-extra"),
            &format!("app_id={app_id}&bill_date={day}&{row}"),
        )
        .await;
        assert_eq!(planted.status, 200, "{}", planted.text());
    }
}

/// The admin's reconciliation of `day` for the open-platform merchant: the page, and its list of
/// lines only in the bill.
async fn reconciled(base: &str, cookie: &str, day: &str) -> (String, String) {
    let (_, html) = page(
        base,
        &format!("/admin/reconcile?merchant=open-shop&date={day}"),
        cookie,
    )
    .await;
    let only = html
        .split("id=\"only-alipay\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no only-in-the-bill list: {html}"))
        .to_owned();
    (html, only)
}

/// 对账 on the admin page: the shop owner reconciles a day without curl. The open-platform
/// merchant's bill (the sandbox's, with a row planted that payhost never had) is compared line by
/// line; a legacy merchant is told in Chinese why it has no bill.
#[tokio::test(flavor = "multi_thread")]
async fn a_day_is_reconciled_on_the_admin_page() {
    let d = demo("admin-reconcile").await;
    let base = d.url("");
    let base = base.as_str();
    let app_id = demo_setting(&d, "open-shop", "app_id");
    let today = payhost::domain::clock::format_date(payhost::domain::clock::beijing_day(
        payhost::domain::clock::now_unix(),
    ));
    plant_bill_rows(
        base,
        &app_id,
        &today,
        &["trade_no=2026000000000000000000000777&out_trade_no=GHOST-1&amount=9.99".to_owned()],
    )
    .await;
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let (status, html) = page(base, "/admin/reconcile", &op).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"reconcile-form\""), "{html}");
    // It starts on a merchant that has a bill (the open platform's), not the first listed.
    assert!(
        html.contains("<option value=\"open-shop\" selected>"),
        "{html}"
    );
    let (html, only) = reconciled(base, &op, &today).await;
    assert!(only.contains("GHOST-1") && only.contains("9.99"), "{html}");
    assert!(html.contains("id=\"gateway-paid\">¥9.99"), "{html}");
    assert!(
        !html.contains("known-order"),
        "payhost has no GHOST-1: {html}"
    );
    assert!(!html.contains("id=\"other-lines\""), "{html}");
    // A bill payment of an order payhost has but did not count (here never paid at payhost) is
    // linked and says so; a line that is neither a payment nor a refund is counted aloud.
    create_payment(base, "open-shop", "REC-KNOWN-1", "4.56", None).await;
    plant_bill_rows(
        base,
        &app_id,
        &today,
        &[
            "trade_no=2026000000000000000000000778&out_trade_no=REC-KNOWN-1&amount=4.56".to_owned(),
            "kind=冻结&trade_no=2026000000000000000000000779&out_trade_no=FREEZE-1&amount=1.00"
                .to_owned(),
        ],
    )
    .await;
    let (html, only) = reconciled(base, &op, &today).await;
    let known = only
        .split("REC-KNOWN-1")
        .nth(2)
        .unwrap_or_else(|| panic!("{html}"));
    assert!(
        known.starts_with(
            "</a><br><span class=\"muted known-order\">payhost 有此订单：待付款，未算在这一天"
        ),
        "{html}"
    );
    assert!(html.contains("id=\"other-lines\">账单另有 1 行"), "{html}");
    // A payment and a refund payhost counts today, on yesterday's bill (a refund whose answer
    // came after midnight): each says so, and the day payhost counts it on.
    open_shop_paid_of(base, "REC-DAY-1", "6.00").await;
    let refunded = send_json(
        "POST",
        &format!("{base}/v1/merchants/open-shop/payments/REC-DAY-1/refunds"),
        Some(TOKEN),
        &json!({"amount": "1.00", "reason": "测试"}),
    )
    .await;
    assert_eq!(refunded.json()["status"], "SUCCESS", "{}", refunded.text());
    let request_no = refunded.json()["request_no"].as_str().unwrap().to_owned();
    let yesterday = payhost::domain::clock::format_date(
        payhost::domain::clock::beijing_day(payhost::domain::clock::now_unix()) - 1,
    );
    plant_bill_rows(
        base,
        &app_id,
        &yesterday,
        &[
            "trade_no=2026000000000000000000000780&out_trade_no=REC-DAY-1&amount=6.00".to_owned(),
            format!("kind=退款&trade_no=2026000000000000000000000780&out_trade_no=REC-DAY-1&amount=1.00&request_no={request_no}"),
        ],
    )
    .await;
    let (_, only) = reconciled(base, &op, &yesterday).await;
    assert!(
        only.contains(&format!("payhost 有此订单：部分退款，记在 {today}")),
        "{only}"
    );
    assert!(
        only.contains(&format!("payhost 有此退款：退款成功，记在 {today}")),
        "{only}"
    );
    // A refund made in Alipay's portal (payhost never heard of it) of an order payhost has: the
    // order is linked, and the line says to sync it (it was plain text).
    plant_bill_rows(
        base,
        &app_id,
        &yesterday,
        &["kind=退款&trade_no=2026000000000000000000000780&out_trade_no=REC-DAY-1&amount=2.00&request_no=PORTAL1".to_owned()],
    )
    .await;
    let (_, only) = reconciled(base, &op, &yesterday).await;
    let portal = only
        .split("PORTAL1")
        .next()
        .and_then(|row| row.rsplit("<tr>").next())
        .unwrap_or_default();
    assert!(
        portal.contains("href=\"/admin/merchants/open-shop/payments/REC-DAY-1\"")
            && portal.contains("没有这笔退款：请打开订单点“向支付平台查询”"),
        "{only}"
    );
    // A legacy merchant has no bill to download: the page says so and shows payhost's own day
    // (a payment paid today), to compare by hand with the bill from Alipay's back office.
    let created = create_payment(base, "demo", "REC-LEGACY-1", "3.21", None).await;
    let pay_url = created["pay_url"].as_str().unwrap().to_owned();
    conformance::orders::pay_all(
        base.trim_end_matches('/'),
        &[pay_url],
        1,
        std::time::Duration::ZERO,
    )
    .await;
    let paid_url = format!("{base}/v1/merchants/demo/payments/REC-LEGACY-1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while conformance::host::get(&paid_url, Some(TOKEN)).await.json()["status"] != "TRADE_SUCCESS" {
        assert!(std::time::Instant::now() < deadline, "never paid");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, html) = page(
        base,
        &format!("/admin/reconcile?merchant=demo&date={today}"),
        &op,
    )
    .await;
    assert!(html.contains("id=\"reconcile-error\""), "{html}");
    assert!(html.contains("旧版接口"), "{html}");
    assert!(html.contains("id=\"own-paid\">¥3.21（1 笔）"), "{html}");
    assert!(html.contains("id=\"own-refunded\">¥0.00（0 笔）"), "{html}");
    // A day to come: said in Chinese, without the API's English.
    let (_, html) = page(
        base,
        "/admin/reconcile?merchant=open-shop&date=2999-01-01",
        &op,
    )
    .await;
    assert!(html.contains("2999-01-01 还没到"), "{html}");
    assert!(!html.contains("is in the future"), "{html}");
    // A shop owner reconciles their own merchant only.
    let owner = owner_of_demo(base, &op, &csrf).await;
    let (_, html) = page(
        base,
        &format!("/admin/reconcile?merchant=open-shop&date={today}"),
        &owner,
    )
    .await;
    assert!(!html.contains("GHOST-1"), "another merchant's bill: {html}");
    assert!(
        html.contains("没有商户 open-shop"),
        "said, not swapped: {html}"
    );
    // An unknown merchant and an empty date are said, and nothing is reconciled.
    let (_, html) = page(
        base,
        &format!("/admin/reconcile?merchant=nosuch&date={today}"),
        &op,
    )
    .await;
    assert!(html.contains("没有商户 nosuch"), "{html}");
    assert!(
        !html.contains("旧版接口"),
        "demo was not reconciled instead: {html}"
    );
    let (_, html) = page(base, "/admin/reconcile?merchant=open-shop&date=", &op).await;
    assert!(html.contains("请选择要对账的日期"), "{html}");
}

/// Creates the open-platform payment `no` of `fee` and pays it in the sandbox's cashier (payhost
/// learns it by the notification that follows).
async fn pay_in_open_cashier(base: &str, no: &str, fee: &str) {
    let created = create_payment(base, "open-shop", no, fee, None).await;
    let pay_url = created["pay_url"].as_str().unwrap().to_owned();
    let token = conformance::alipay::cashier_token(&get(&pay_url, None).await.text());
    conformance::host::post_form(
        &format!("{base}/sandbox/openapi/cashier/pay"),
        &format!("token={token}"),
    )
    .await;
}

/// An open-platform payment `no` of `fee` created and paid in the sandbox's cashier, once payhost
/// has it paid: its JSON from the API (its `trade_no`).
async fn open_shop_paid_of(base: &str, no: &str, fee: &str) -> serde_json::Value {
    pay_in_open_cashier(base, no, fee).await;
    let url = format!("{base}/v1/merchants/open-shop/payments/{no}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let p = get(&url, Some(TOKEN)).await.json();
        if p["status"] == "TRADE_SUCCESS" {
            return p;
        }
        assert!(std::time::Instant::now() < deadline, "{no} never paid: {p}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// 对账's result as CSV (`/admin/reconcile.csv`, the page's query): one line per row of every
/// list the page shows, in the page's order, with machine column names; what the bill says is
/// guarded against a spreadsheet's formulas; refused as a page, in the page's words, for a day
/// that is no date and for a merchant the session does not reconcile.
#[tokio::test(flavor = "multi_thread")]
async fn a_reconciled_day_downloads_as_csv() {
    let d = demo("admin-reconcile-csv").await;
    let base = d.url("");
    let base = base.as_str();
    let app_id = demo_setting(&d, "open-shop", "app_id");
    let today = payhost::domain::clock::format_date(payhost::domain::clock::beijing_day(
        payhost::domain::clock::now_unix(),
    ));
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    // Matched: a payment of 6.00 and its refund of 1.00, in the sandbox's bill as in payhost.
    let paid = open_shop_paid_of(base, "REC-CSV-1", "6.00").await;
    let trade_no = paid["trade_no"].as_str().unwrap().to_owned();
    let refunded = send_json(
        "POST",
        &format!("{base}/v1/merchants/open-shop/payments/REC-CSV-1/refunds"),
        Some(TOKEN),
        &json!({"amount": "1.00", "reason": "测试"}),
    )
    .await;
    assert_eq!(refunded.json()["status"], "SUCCESS", "{}", refunded.text());
    let request_no = refunded.json()["request_no"].as_str().unwrap().to_owned();
    // Amounts differ: the bill says 2.00, payhost (its row changed here) 2.50.
    let other = open_shop_paid_of(base, "REC-CSV-2", "2.00").await;
    let other_trade_no = other["trade_no"].as_str().unwrap().to_owned();
    {
        let db = rusqlite::Connection::open(d.dir.join("demo.db")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let changed = db
            .execute(
                "UPDATE payments SET total_fen = 250 WHERE merchant_id = 'open-shop' AND out_trade_no = 'REC-CSV-2'",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    // Only in the bill: hostile numbers a spreadsheet would run as formulas.
    // (The sandbox writes an order number as it is, so one with a comma or a quote would not be
    // read back as one.)
    let hostile = "=cmd|' /C calc'!A0";
    plant_bill_rows(
        base,
        &app_id,
        &today,
        &[
            form(&[
                ("trade_no", "2026000000000000000000000901"),
                ("out_trade_no", hostile),
                ("amount", "9.99"),
            ]),
            form(&[
                ("kind", "退款"),
                ("trade_no", "+2026"),
                ("out_trade_no", "@SUM(A1)"),
                ("request_no", "-2+3"),
                ("amount", "0.50"),
            ]),
        ],
    )
    .await;

    // The page's result links its CSV; no result, no link.
    let csv_path = format!("/admin/reconcile.csv?merchant=open-shop&date={today}");
    let (_, html) = page(
        base,
        &format!("/admin/reconcile?merchant=open-shop&date={today}"),
        &op,
    )
    .await;
    assert!(html.contains("id=\"amount-mismatch\""), "{html}");
    assert!(
        html.contains(&format!(
            "id=\"reconcile-csv\" href=\"{}\">下载 CSV</a>",
            csv_path.replace('&', "&amp;")
        )),
        "{html}"
    );
    let (_, html) = page(
        base,
        &format!("/admin/reconcile?merchant=open-shop&date={today}&lang=en"),
        &op,
    )
    .await;
    assert!(html.contains(">Download CSV</a>"), "{html}");
    let (_, html) = page(base, "/admin/reconcile", &op).await;
    assert!(!html.contains("reconcile-csv"), "{html}");

    let csv = get_page(base, &csv_path, &op).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(
        csv.header("content-disposition"),
        Some(format!(
            "attachment; filename=\"reconcile-open-shop-{today}.csv\""
        ))
    );
    let text = csv.text();
    let lines: Vec<&str> = text.split("\r\n").collect();
    let want = [
        "\u{feff}merchant_id,date,section,kind,out_trade_no,trade_no,request_no,payhost_amount,gateway_amount,payhost_status,payhost_review,payhost_order_status,payhost_day".to_owned(),
        format!("open-shop,{today},amount_mismatch,payment,REC-CSV-2,{other_trade_no},,2.50,2.00,,,,"),
        format!("open-shop,{today},only_gateway,payment,'=cmd|' /C calc'!A0,2026000000000000000000000901,,,9.99,,,,"),
        format!("open-shop,{today},only_gateway,refund,'@SUM(A1),'+2026,'-2+3,,0.50,,,,"),
        format!("open-shop,{today},matched,payment,REC-CSV-1,{trade_no},,6.00,6.00,,,,"),
        format!("open-shop,{today},matched,refund,REC-CSV-1,{trade_no},{request_no},1.00,1.00,,,,"),
        String::new(),
    ];
    assert_eq!(lines, want, "{text}");
    // GET only: a post to it is no page.
    assert_eq!(
        post_status(base, &csv_path, &op, &form(&[("csrf", &csrf)])).await,
        404
    );

    // A day that is no date, a day to come, no day: refused as a page naming it.
    for (date, said) in [
        ("2026-02-30", "日期：没有 2026-02-30 这一天"),
        ("2999-01-01", "日期：2999-01-01 还没到"),
        ("", "日期：请选择要对账的日期"),
    ] {
        let r = get_page(
            base,
            &format!("/admin/reconcile.csv?merchant=open-shop&date={date}"),
            &op,
        )
        .await;
        assert_eq!(r.status, 400, "{date}: {}", r.text());
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        let html = r.text();
        assert!(html.contains("无法导出") && html.contains(said), "{html}");
        assert!(
            html.contains(&format!(
                "href=\"/admin/reconcile?merchant=open-shop&amp;date={date}\" id=\"error-back\""
            )) || date.is_empty(),
            "{html}"
        );
    }
    let r = get_page(
        base,
        "/admin/reconcile.csv?merchant=open-shop&date=2026-02-30&lang=en",
        &op,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("Cannot export") && r.text().contains("date: must be a date"),
        "{}",
        r.text()
    );
    // An unknown merchant: the operator is told there is none.
    let r = get_page(
        base,
        &format!("/admin/reconcile.csv?merchant=nosuch&date={today}"),
        &op,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("没有商户 nosuch"), "{}", r.text());

    // The provider failing: refused as the page says it, never an empty file.
    let faults = |on: bool| json!({ "answer_500": on });
    let r = send_json(
        "POST",
        &format!("{base}/sandbox/faults"),
        None,
        &faults(true),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get_page(base, &csv_path, &op).await;
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    let html = r.text();
    assert!(
        html.contains("无法导出") && html.contains("支付宝") && !html.contains("REC-CSV"),
        "{html}"
    );
    let r = send_json(
        "POST",
        &format!("{base}/sandbox/faults"),
        None,
        &faults(false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A shop owner exports their own merchants' days only: another's (or none) is refused, the
    // same either way, and nothing of it is shown.
    let owner = owner_of_demo(base, &op, &csrf).await;
    for asked in ["open-shop", "nosuch"] {
        let r = get_page(
            base,
            &format!("/admin/reconcile.csv?merchant={asked}&date={today}"),
            &owner,
        )
        .await;
        assert_eq!(r.status, 403, "{}", r.text());
        let html = r.text();
        assert!(
            html.contains("无法导出")
                && html.contains(&format!("没有商户 {asked}，或你的账号不能为它对账"))
                && html.contains("（demo）"),
            "{html}"
        );
        assert!(
            !html.contains("REC-CSV") && !html.contains("calc"),
            "{html}"
        );
    }
    // Their own merchant (legacy: no bill to download) is reconciled, and refused as the page
    // says why.
    let r = get_page(
        base,
        &format!("/admin/reconcile.csv?merchant=demo&date={today}"),
        &owner,
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("旧版接口"), "{}", r.text());
    // Without a session: the login page, never the file.
    let r = get_page(base, &csv_path, "").await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("REC-CSV"), "{}", r.text());
}

/// A database that cannot be written is said at the top of the overview, in the owner's words
/// (notifications wait, paid orders may show unpaid, have it fixed): here its `-wal` file was
/// deleted while payhost ran, after which every commit is copied into the database file and
/// readiness fails until a restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_says_when_the_database_cannot_be_written() {
    let d = demo("admin-store-problem").await;
    let base = d.url("");
    let base = base.as_str();
    let (cookie, _) = admin_login(base, ADMIN_PASSWORD).await;
    create_payment(base, "demo", "STORE-1", "1.00", None).await;
    let (_, html) = page(base, "/admin", &cookie).await;
    assert!(!html.contains("id=\"store-problem\""), "{html}");
    std::fs::remove_file(d.dir.join("demo.db-wal")).unwrap();
    create_payment(base, "demo", "STORE-2", "1.00", None).await;
    let (status, html) = page(base, "/admin", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("id=\"store-problem\"")
            && html.contains("数据库现在无法写入")
            && html.contains("-wal file was deleted"),
        "{html}"
    );
    // The payment made meanwhile is in the database file itself.
    let copy = d.dir.join("after-crash.db");
    std::fs::copy(d.dir.join("demo.db"), &copy).unwrap();
    let kept: i64 = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM payments WHERE out_trade_no = 'STORE-2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 1);
}

/// The owner's words for what the shop's end did: a dead letter's reason and type say what
/// happened and what to do (the sender's own words after them, for support); `/admin/` (a
/// trailing slash typed by hand) leads to the admin, not to a JSON 404.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_failures_are_told_in_the_owners_words() {
    let d = demo("admin-webhook-words").await;
    let base = d.url("");
    let base = base.as_str();
    let r = request("GET", &format!("{base}/admin/"), &[], Vec::new()).await;
    assert!((300..400).contains(&r.status), "{}", r.status);
    assert_eq!(r.header("location").as_deref(), Some("/admin"));
    let db = rusqlite::Connection::open(d.dir.join("demo.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    for (i, why) in [
        "the shop answered HTTP 404",
        "http://127.0.0.1:9: connect: Connection refused (os error 111)",
        "the shop's webhook URL was removed: nothing was sent (set it again, then resend)",
    ]
    .iter()
    .enumerate()
    {
        db.execute(
            "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, attempts, next_attempt_ms, last_error, created_ms, dead_at, event_type)
             VALUES (?1, 'demo', 'http://127.0.0.1:9/hook', '{}', 3, 0, ?2, 0, '2026-12-01T00:00:00Z', 'payment.paid')",
            rusqlite::params![format!("evt_words_{i}"), why],
        )
        .unwrap();
    }
    let (cookie, _) = admin_login(base, ADMIN_PASSWORD).await;
    let (_, html) = page(base, "/admin/webhooks", &cookie).await;
    for said in [
        "商城拒收（HTTP 404）：请检查商城通知地址",
        "连不上商城（连接被拒绝）",
        "商城通知地址已删除，没有发送",
        "已付款 (payment.paid)",
    ] {
        assert!(html.contains(said), "{said}:\n{html}");
    }
    // The English page keeps the sender's words.
    let (_, html) = page(base, "/admin/webhooks?lang=en", &cookie).await;
    assert!(html.contains("the shop answered HTTP 404"), "{html}");
    assert!(!html.contains("商城拒收"), "{html}");
}

/// A refused settings form lists each error under the message by what the page calls the field
/// (the component's Chinese label, or the host's own), not by its key alone.
#[tokio::test(flavor = "multi_thread")]
async fn refused_settings_are_listed_by_the_fields_labels() {
    let d = demo("admin-refused-labels").await;
    let base = d.url("");
    let base = base.as_str();
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let after = admin_post(
        base,
        "/admin/merchants/labelled",
        &op,
        &form(&[
            ("csrf", &csrf),
            ("partner", "1234"),
            ("shop_webhook_url", "not a url"),
        ]),
    )
    .await;
    let listed = after
        .split("<ul id=\"errors\">")
        .nth(1)
        .and_then(|t| t.split("</ul>").next())
        .unwrap_or_else(|| panic!("no error list: {after}"));
    // The component's label already names its key: not twice.
    assert!(listed.contains("<li>合作者身份ID (partner): "), "{listed}");
    assert!(
        listed.contains("<li>商城通知地址 (<code>shop_webhook_url</code>): "),
        "{listed}"
    );
    // In English (the language cookie), the English labels.
    let english = format!("{op}; payhost_lang=en");
    let after = admin_post(
        base,
        "/admin/merchants/labelled",
        &english,
        &form(&[("csrf", &csrf), ("partner", "1234")]),
    )
    .await;
    assert!(
        after.contains("<li>Partner ID (<code>partner</code>): "),
        "{after}"
    );
}

/// A form from a page opened before the owner logged out and in again (another tab): refused
/// (403) with nothing done, in the owner's words — never "CSRF" — and a link back to that page.
#[tokio::test(flavor = "multi_thread")]
async fn a_form_from_before_the_last_login_says_nothing_was_done() {
    let d = demo("admin-stale-form").await;
    let base = d.url("");
    let base = base.as_str();
    create_payment(base, "demo", "STALE-1", "1.00", None).await;
    let (_, old_csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let (cookie, _) = admin_login(base, ADMIN_PASSWORD).await;
    let payment = "/admin/merchants/demo/payments/STALE-1";
    let r = request(
        "POST",
        &format!("{base}{payment}/refunds"),
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", base),
        ],
        form(&[("csrf", &old_csrf), ("amount", "1.00"), ("refund_key", "k")]).into_bytes(),
    )
    .await;
    assert_eq!(r.status, 403);
    let html = r.text();
    assert!(html.contains("页面已过期"), "{html}");
    assert!(html.contains("没有退款"), "{html}");
    assert!(!html.contains("CSRF"), "{html}");
    assert!(
        html.contains(&format!("<a href=\"{payment}\" id=\"error-back\">")),
        "{html}"
    );
    // The menu is there (the session is fine), and the language switch leads to the page.
    assert!(html.contains("id=\"nav-merchants\""), "{html}");
    assert!(html.contains(&format!("{payment}?lang=en")), "{html}");
}

/// Dead letters name their order (linked), and "Resend" for a merchant with no webhook URL says
/// it cannot arrive and leaves the letter where it is (sent again, it would be given up at
/// once), on the list the button was on.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_name_their_order_and_no_url_is_not_resent() {
    let d = demo("admin-dead-orders").await;
    let base = d.url("");
    let base = base.as_str();
    let value = |k: &str| demo_setting(&d, "demo", k);
    let (op, csrf) = admin_login(base, ADMIN_PASSWORD).await;
    let saved = admin_post(
        base,
        "/admin/merchants/nohook",
        &op,
        &form(&[
            ("csrf", &csrf),
            ("partner", &value("partner")),
            ("key", &value("key")),
            ("seller_email", &value("seller_email")),
        ]),
    )
    .await;
    assert!(saved.contains("已保存并校验"), "{saved}");
    let db = rusqlite::Connection::open(d.dir.join("demo.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO webhook_outbox (event_id, merchant_id, url, body, attempts, next_attempt_ms, last_error, created_ms, dead_at, event_type)
         VALUES ('evt_nohook', 'nohook', 'http://127.0.0.1:9/hook', '{\"out_trade_no\":\"NOHOOK-1\"}', 3, 0, 'down', 0, '2026-12-01T00:00:00Z', 'payment.paid')",
        [],
    )
    .unwrap();
    let wid: i64 = db
        .query_row(
            "SELECT id FROM webhook_outbox WHERE event_id = 'evt_nohook'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (_, html) = page(base, "/admin/webhooks", &op).await;
    assert!(
        html.contains("<a href=\"/admin/merchants/nohook/payments/NOHOOK-1\">NOHOOK-1</a>"),
        "{html}"
    );
    let form_at = html
        .find(&format!("/admin/merchants/nohook/webhooks/{wid}/resend"))
        .unwrap_or_else(|| panic!("no resend button: {html}"));
    assert!(
        html[form_at..]
            .split("</form>")
            .next()
            .unwrap()
            .contains("name=\"back\" value=\"webhooks\""),
        "{html}"
    );
    let to = admin_post_location(
        base,
        &format!("/admin/merchants/nohook/webhooks/{wid}/resend"),
        &op,
        &format!("csrf={csrf}&back=webhooks"),
    )
    .await;
    assert!(to.starts_with("/admin/webhooks"), "{to}");
    let (_, after) = page(base, &to, &op).await;
    assert!(
        after.contains("商城通知地址是空的，重发也送不到"),
        "{after}"
    );
    let still_dead = || {
        db.query_row(
            "SELECT COUNT(*) FROM webhook_outbox WHERE event_id = 'evt_nohook' AND dead_at IS NOT NULL AND attempts = 3",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    assert_eq!(still_dead(), 1);
    let after = admin_post(
        base,
        "/admin/webhooks/resend-all",
        &op,
        &format!("csrf={csrf}"),
    )
    .await;
    assert!(after.contains("nohook: 商城通知地址是空的"), "{after}");
    assert_eq!(still_dead(), 1);
}

/// One account's password guessed from many addresses, each under its own per-address limit (a
/// botnet): after 20 failures in 10 minutes, browsers that never logged in to that account are
/// refused (429) whoever they are, while the owner's browser, which logged in before (its device
/// cookie), still gets in. A forged device cookie is not the owner's, and the owner's browser
/// itself gets ten failures of its own, not the account's.
#[tokio::test(flavor = "multi_thread")]
async fn guesses_from_many_addresses_lock_out_only_browsers_the_account_never_used() {
    let d = demo("admin-login-botnet").await;
    let url = d.url("/admin/login");
    // The whole answer (status line, headers, body) of a login from the address `from`.
    let login = |from: String, password: &'static str, cookie: String| {
        let url = url.clone();
        async move {
            let body = format!("user=&password={password}");
            let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
            if !cookie.is_empty() {
                headers.push(("Cookie", cookie.as_str()));
            }
            let (_, head, body) =
                conformance::host::request_from(&from, &url, "POST", &headers, &body).await;
            format!("{head}\r\n\r\n{body}")
        }
    };
    let set_cookie = |answer: &str, name: &str| {
        answer
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.trim().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    };
    // The owner logs in once: the session's cookie first, then the browser remembered.
    let a = login("127.0.2.1".into(), ADMIN_PASSWORD, String::new()).await;
    assert!(a.starts_with("HTTP/1.1 303"), "{a}");
    let first = a
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(first.contains("payhost_admin="), "{a}");
    let device = set_cookie(&a, "payhost_device").expect("a device cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=15552000",
    ] {
        assert!(device.contains(attr), "{device}");
    }
    let device = device.split(';').next().unwrap().to_owned();

    // Twenty addresses, one wrong guess each: each is checked.
    for i in 0..20 {
        let a = login(
            format!("127.0.3.{}", i + 1),
            "wrong-guess-123",
            String::new(),
        )
        .await;
        assert!(a.starts_with("HTTP/1.1 401"), "{a}");
    }
    // The account is closed to every browser it has not seen, the right password too.
    for (from, password) in [
        ("127.0.4.1", "wrong-guess-123"),
        ("127.0.4.2", ADMIN_PASSWORD),
    ] {
        let a = login(from.into(), password, String::new()).await;
        assert!(a.starts_with("HTTP/1.1 429"), "{a}");
        assert!(a.contains("这个账号的登录失败次数过多"), "{a}");
        assert!(a.to_ascii_lowercase().contains("retry-after:"), "{a}");
        assert!(set_cookie(&a, "payhost_admin").is_none(), "{a}");
    }
    // A forged proof (the MAC changed) is a browser it has not seen.
    let forged = {
        let last = if device.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &device[..device.len() - 1])
    };
    let a = login("127.0.4.3".into(), ADMIN_PASSWORD, forged).await;
    assert!(a.starts_with("HTTP/1.1 429"), "{a}");

    // The owner's browser, from a new address, gets in.
    let a = login("127.0.4.4".into(), ADMIN_PASSWORD, device.clone()).await;
    assert!(a.starts_with("HTTP/1.1 303"), "{a}");
    assert!(set_cookie(&a, "payhost_admin").is_some(), "{a}");
    let device = set_cookie(&a, "payhost_device")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // Its own mistakes count for it alone: ten, then it waits too.
    for i in 0..10 {
        let a = login(
            format!("127.0.5.{}", i + 1),
            "wrong-guess-123",
            device.clone(),
        )
        .await;
        assert!(a.starts_with("HTTP/1.1 401"), "{i}: {a}");
    }
    let a = login("127.0.5.99".into(), ADMIN_PASSWORD, device).await;
    assert!(a.starts_with("HTTP/1.1 429"), "{a}");
    assert!(
        a.contains("登录失败次数过多") && !a.contains("这个账号"),
        "{a}"
    );
}

/// A partly refunded payment whose trade Alipay then finishes (its refundable period ended):
/// Sync on its page says so in words, not as "no change", and the refund form is gone.
#[tokio::test(flavor = "multi_thread")]
async fn sync_of_a_finished_trade_says_it_takes_no_refund() {
    let d = demo("admin-finished").await;
    let base = d.url("");
    let base = base.as_str();
    let created = create_payment(base, "demo", "FIN-ADMIN", "10.00", None).await;
    let token = conformance::alipay::cashier_token(
        &get(created["pay_url"].as_str().unwrap(), None).await.text(),
    );
    let paid = conformance::host::post_form(
        &format!("{base}/sandbox/cashier/pay"),
        &format!("token={token}"),
    )
    .await;
    assert!(paid.status == 302 || paid.status == 303, "{}", paid.text());
    let url = format!("{base}/v1/merchants/demo/payments/FIN-ADMIN");
    // Waits until the payment's JSON satisfies `done`.
    let until = async |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let p = get(&url, Some(TOKEN)).await.json();
            if done(&p) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never {what}: {p}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    until("paid", &|p| p["status"] == "TRADE_SUCCESS").await;
    let (op, _) = admin_login(base, ADMIN_PASSWORD).await;
    let path = "/admin/merchants/demo/payments/FIN-ADMIN";
    let sync = async || {
        let (_, html) = page(base, path, &op).await;
        let synced = admin_post(
            base,
            &format!("{path}/sync"),
            &op,
            &format!("csrf={}", csrf_of(&html)),
        )
        .await;
        flash_of(&synced)
    };
    let partner = payhost_sandbox::demo::B2C_PARTNER;
    for (action, extra) in [("refund", "&refund_fee=3.00"), ("finish", "")] {
        let r = conformance::host::post_form(
            &format!("{base}/sandbox/{action}"),
            &format!("partner={partner}&out_trade_no=FIN-ADMIN{extra}"),
        )
        .await;
        assert_eq!(r.status, 200, "{action}: {}", r.text());
        if action == "refund" {
            until("refunded", &|p| p["refunded_amount"] == "3.00").await;
            // Nothing new to learn: said for a button pressed, not as a notification's
            // "duplicate".
            assert_eq!(
                sync().await,
                "查询完成 FIN-ADMIN：部分退款，与支付宝一致，没有变化"
            );
            // A refund started here that waits for the seller when Alipay finishes the trade.
            let started = send_json(
                "POST",
                &format!("{url}/refunds"),
                Some(TOKEN),
                &json!({"amount": "1.00", "refund_key": "fin-admin-1"}),
            )
            .await;
            assert_eq!(started.status, 201, "{}", started.text());
        }
    }
    until("finished", &|p| p["finished_at"].is_string()).await;
    assert_eq!(
        sync().await,
        "查询完成 FIN-ADMIN：支付宝上这笔交易已结束（TRADE_FINISHED），不能再退款；订单仍是部分退款"
    );
    // Asked again: the same.
    assert_eq!(
        sync().await,
        "查询完成 FIN-ADMIN：支付宝上这笔交易已结束（TRADE_FINISHED），不能再退款；订单仍是部分退款"
    );
    // The refund waiting for the seller can only fail now: no page to confirm it on, and the
    // row says to give it up.
    let (_, html) = page(base, path, &op).await;
    let row = html
        .split("id=\"refunds\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no refunds: {html}"));
    // The finish its status does not show is said beside it, on the page and in the list.
    assert!(
        html.contains("class=\"muted finished-beside\">（已完结）"),
        "{html}"
    );
    let (_, list) = page(base, "/admin/payments", &op).await;
    let listed = list
        .split("FIN-ADMIN")
        .nth(2)
        .unwrap_or_else(|| panic!("FIN-ADMIN not listed: {list}"));
    assert!(
        listed
            .split("</tr>")
            .next()
            .is_some_and(|r| r.contains("finished-beside")),
        "{list}"
    );
    assert!(!row.contains("confirm-refund"), "{row}");
    assert!(row.contains("abandon-refund"), "{row}");
    assert!(
        row.contains("支付宝已完结这笔交易，不会再做这笔退款：请点“放弃”"),
        "{row}"
    );
}

/// The fields a form posts as its page shows them: each input's value (file pickers aside), each
/// select's chosen option, each textarea's text; HTML's escapes undone.
fn form_values(form_html: &str) -> Vec<(String, String)> {
    let unescape = |v: &str| {
        v.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    let attr = |tag: &str, name: &str| {
        tag.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(unescape)
    };
    let mut values = Vec::new();
    let mut select: Option<String> = None;
    for piece in form_html.split('<') {
        let (tag, text) = piece.split_once('>').unwrap_or((piece, ""));
        if tag.starts_with("input ") && !tag.contains("type=\"file\"") {
            if let Some(name) = attr(tag, "name") {
                values.push((name, attr(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("select ") {
            select = attr(tag, "name");
        } else if tag.starts_with("option ") && tag.contains(" selected") {
            if let Some(name) = select.take() {
                values.push((name, attr(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("textarea ") {
            if let Some(name) = attr(tag, "name") {
                values.push((name, unescape(text)));
            }
        }
    }
    values
}

/// A settings save on the merchant's page is audited as one through the API is: the names of
/// the fields that changed, never a value (README). Before, every save on the page read
/// "plugin alipay-wap", whatever it changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_settings_save_on_the_page_names_what_changed() {
    let d = demo("admin-settings-audit").await;
    let base = d.url("");
    let base = base.as_str();
    let (op, _) = admin_login(base, ADMIN_PASSWORD).await;
    // The page's form posted with `changes`; the page that comes back.
    let save = async |changes: &[(&str, &str)]| {
        let (_, html) = page(base, "/admin/merchants/demo", &op).await;
        let form_html = html
            .split("id=\"settings\">")
            .nth(1)
            .and_then(|f| f.split("</form>").next())
            .unwrap_or_else(|| panic!("no settings form: {html}"));
        let mut values = form_values(form_html);
        for (name, value) in values.iter_mut() {
            if let Some((_, new)) = changes.iter().find(|(n, _)| n == name) {
                *value = (*new).to_owned();
            }
        }
        let pairs: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        admin_post(base, "/admin/merchants/demo", &op, &form(&pairs)).await
    };
    for _ in 0..2 {
        let saved = save(&[("seller_email", "seller-two@demo.example")]).await;
        assert!(saved.contains("已保存并校验"), "{saved}");
    }
    // Shop origins that are none: said once, in the page's words, naming each.
    let refused = save(&[("shop_origins", "not a url\nhttps://ok.example")]).await;
    assert!(
        refused.contains("不是网站的来源地址（只写协议和域名，一行一个，例如 https://shop.example）：“not”、“a”、“url”"),
        "{refused}"
    );
    assert!(
        !refused.contains("merchants.demo.shop_origins"),
        "{refused}"
    );
    let (_, audit) = page(base, "/admin/audit?lang=en&action=settings.save", &op).await;
    for want in [
        "plugin alipay-wap; changed: seller_email",
        "plugin alipay-wap; changed: nothing",
    ] {
        assert!(audit.contains(want), "{want} missing: {audit}");
    }
    assert!(
        !audit.contains("seller-two@demo.example"),
        "a value: {audit}"
    );
}
