//! What README.md (and README.zh-CN.md) state, checked against the built component and the real
//! `payhost` binary: the two set-up commands, the component's size, the exit codes, the defaults
//! of the command line and of `payhost.toml`, and the HTTP limits. A number changed in the code
//! or in the README without the other fails here, naming both.

use conformance::host::{get, payhost_binary, request, spawn_payhost, temp_dir};
use conformance::repo_root;
use std::path::Path;
use std::process::{Command, Output};

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("README.md")
}

/// The lines of the first fenced code block of `text`.
fn first_code_block(text: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("```")).skip(1);
    let block: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_owned)
        .collect();
    assert!(!block.is_empty(), "no code block");
    block
}

/// The text of the fenced block that starts with "```<lang>" and contains `needle`.
fn code_block_with(text: &str, lang: &str, needle: &str) -> String {
    let fence = format!("```{lang}\n");
    text.split(&fence)
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("README.md has no ```{lang} block containing {needle:?}"))
        .to_owned()
}

/// The whole number right after `prefix` in `text` (digits and `,` separators).
fn number_after(text: &str, prefix: &str) -> u64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("README.md no longer says {prefix:?}"));
    let digits: String = text[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in README.md"))
}

fn payhost(args: &[&str]) -> Output {
    Command::new(payhost_binary())
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("run payhost")
}

fn code_of(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_readme_starts_with_the_two_set_up_commands() {
    let text = readme();
    assert!(
        text.starts_with("```sh\n"),
        "README.md must open with the set-up commands"
    );
    let block = first_code_block(&text);
    assert_eq!(block.len(), 2, "exactly two set-up commands: {block:?}");
    let (run, test) = (&block[0], &block[1]);
    assert!(
        run.starts_with("./scripts/demo"),
        "the first command runs the demo: {run}"
    );
    assert_eq!(test.trim(), "./scripts/test");
    // The run line ends with the demo's URL, which is payhost demo's --listen default.
    let url = run.rsplit(' ').next().unwrap();
    let help = text_of(&payhost(&["demo", "--help"]));
    let listen = default_of(&help, "--listen").expect("payhost demo --listen has a default");
    assert_eq!(
        url,
        format!("http://{listen}/"),
        "the run line ends with the demo's URL"
    );
    for script in ["scripts/demo", "scripts/test"] {
        let path = repo_root().join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert!(mode & 0o111 != 0, "{script} is executable");
        let body = std::fs::read_to_string(&path).unwrap();
        // A fresh machine's stable toolchain lacks the target rust-toolchain.toml lists.
        assert!(
            body.contains("rustup target add wasm32-wasip2"),
            "{script} adds the wasm32-wasip2 target itself"
        );
    }
    let demo = std::fs::read_to_string(repo_root().join("scripts/demo")).unwrap();
    assert!(
        demo.contains("minutes on 2 cores"),
        "scripts/demo says how long the first build takes"
    );
    // The Chinese README is linked right after the commands, and opens with the same two.
    let after: String = text
        .lines()
        .skip_while(|l| !l.starts_with("./scripts/test"))
        .take(8)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        after.contains("(README.zh-CN.md)"),
        "README.zh-CN.md is linked right after the commands:\n{after}"
    );
    let zh = std::fs::read_to_string(repo_root().join("README.zh-CN.md")).unwrap();
    let commands = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.split('#').next().unwrap().trim().to_owned())
            .collect()
    };
    let zh_block = first_code_block(&zh);
    assert_eq!(
        commands(&zh_block),
        commands(&block),
        "README.zh-CN.md opens with the same two commands"
    );
    assert!(
        zh_block[0].ends_with(&format!("http://{listen}/")),
        "README.zh-CN.md's run line ends with the demo's URL"
    );
    // Every picture README.zh-CN.md shows is in the tree.
    for (at, _) in zh.match_indices("](docs/images/") {
        let path = zh[at + 2..].split(')').next().unwrap();
        assert!(repo_root().join(path).exists(), "{path} is missing");
    }
}

#[test]
fn the_component_size_is_the_one_stated() {
    let text = readme();
    let stated_kib = number_after(&text, "Size: about ");
    let budget_kib = number_after(&text, &format!("Size: about {stated_kib} KiB (budget "));
    let manifest = payhost::manifest::Manifest::load(&repo_root().join("plugin.toml")).unwrap();
    let path = manifest.component_path();
    let bytes = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (build the component first)", path.display()))
        .len();
    let kib = (bytes as f64 / 1024.0).round() as u64;
    // "about": within 2 % (a small change to the plugin need not touch the README).
    assert!(
        stated_kib.abs_diff(kib) * 50 <= kib,
        "README.md says the component is about {stated_kib} KiB; {} is {bytes} bytes = {kib} KiB",
        path.display()
    );
    assert!(
        bytes <= budget_kib * 1024,
        "the component ({bytes} bytes) is over the README's budget of {budget_kib} KiB"
    );
}

/// `[default: X]` of `flag` in clap's `--help` text.
fn default_of(help: &str, flag: &str) -> Option<String> {
    let line = help
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(&format!("{flag} ")) || l.contains(&format!(", {flag} ")))?;
    let at = help.find(line)?;
    // clap puts the default at the end of the flag's description, which may wrap.
    let rest = &help[at..];
    let end = rest[1..].find("\n  -").map(|e| e + 1).unwrap_or(rest.len());
    let desc = &rest[..end];
    let start = desc.find("[default: ")? + "[default: ".len();
    Some(desc[start..].split(']').next()?.to_owned())
}

#[test]
fn command_line_defaults_are_the_ones_stated() {
    let text = readme();
    let block = code_block_with(&text, "text", "payhost check-config");
    let mut checked = 0;
    for line in block.lines() {
        let Some(rest) = line.strip_prefix("payhost ") else {
            continue;
        };
        let command = line.split('#').next().unwrap();
        // The subcommand (and a sub-subcommand such as `token create`).
        let words: Vec<&str> = rest
            .split_whitespace()
            .take_while(|w| !w.starts_with('-') && !w.starts_with('['))
            .collect();
        // `[--flag VALUE]` with a concrete value (not a placeholder such as ID or PARTNER:KEY).
        for part in command.split('[').skip(1) {
            let part = part.split(']').next().unwrap();
            let mut it = part.split_whitespace();
            let (Some(flag), Some(value)) = (it.next(), it.next()) else {
                continue;
            };
            let placeholder = |c: char| c.is_ascii_uppercase() || c == ':' || c == '_';
            if value.chars().all(placeholder) || value == "…" {
                continue;
            }
            let mut args = words.clone();
            args.push("--help");
            let help = text_of(&payhost(&args));
            assert_eq!(
                default_of(&help, flag).as_deref(),
                Some(value),
                "README.md shows `payhost {} {flag} {value}` as the default; `payhost {} --help` says otherwise:\n{help}",
                words.join(" "),
                words.join(" ")
            );
            checked += 1;
        }
        // A flag written without brackets with a concrete value is the default too (`--manifest plugin.toml`).
        for pair in command.split_whitespace().collect::<Vec<_>>().windows(2) {
            let (flag, value) = (pair[0], pair[1]);
            if flag.starts_with("--")
                && !value.starts_with('-')
                && !value.contains(']')
                && value.contains('.')
                && !command.contains(&format!("[{flag}"))
                && ["--config", "--manifest"].contains(&flag)
                && words != ["serve"]
                && words != ["check-config"]
            {
                let mut args = words.clone();
                args.push("--help");
                let help = text_of(&payhost(&args));
                assert_eq!(
                    default_of(&help, flag).as_deref(),
                    Some(value),
                    "README.md: `{command}`"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 4,
        "only {checked} defaults found in the command block"
    );
}

/// Runs `payhost check-config` on `toml` written into a fresh folder.
fn check_config(name: &str, toml: &str) -> Output {
    let dir = temp_dir(name);
    let path = dir.join("payhost.toml");
    std::fs::write(&path, toml).unwrap();
    payhost(&["check-config", "--config", path.to_str().unwrap()])
}

fn good_config(dir_cache: &Path) -> String {
    format!(
        r#"
public_url = "http://127.0.0.1:8080"
api_token = "readme-facts-token-0123456789"
cache_dir = "{}"
[plugin]
manifest = "{}"
[merchants.shop1.settings]
partner = "2088000000000001"
key = "0123456789abcdef0123456789abcdef"
seller_email = "seller@example.com"
"#,
        dir_cache.display(),
        repo_root().join("plugin.toml").display()
    )
}

#[test]
fn an_address_space_limit_costs_the_bounds_checks_not_the_start() {
    // README: "where an address-space limit (`ulimit -v`) refuses that, payhost logs a warning and
    // runs the component with bounds checks". 8 GiB holds payhost and a checked pool, not the
    // whole reservations (about 1 TiB for 128 instances).
    assert!(readme().contains("(`ulimit -v`) refuses that, payhost logs a warning"));
    let dir = temp_dir("readme-ulimit");
    let path = dir.join("payhost.toml");
    std::fs::write(&path, good_config(&dir.join("cache"))).unwrap();
    let out = Command::new("sh")
        .current_dir(repo_root())
        .args([
            "-c",
            "ulimit -v 8388608 && exec \"$0\" check-config --config \"$1\"",
        ])
        .arg(payhost_binary())
        .arg(&path)
        .output()
        .expect("run sh");
    assert_eq!(code_of(&out), 0, "{}", text_of(&out));
    assert!(
        text_of(&out).contains("configuration OK"),
        "{}",
        text_of(&out)
    );
    // No admin password in it: said, as `payhost serve` would, though not a problem of the file.
    assert!(
        text_of(&out)
            .contains("warning: admin_password_hash: not set and the database has no admin user"),
        "{}",
        text_of(&out)
    );
    // An admin user in the database is a way in: nothing to warn of.
    let added = payhost(&[
        "admin-user",
        "add",
        "ops",
        "--role",
        "operator",
        "--generate",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code_of(&added), 0, "{}", text_of(&added));
    let again = payhost(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code_of(&again), 0, "{}", text_of(&again));
    assert!(
        !text_of(&again).contains("admin_password_hash"),
        "{}",
        text_of(&again)
    );
}

#[test]
fn exit_codes_are_the_ones_stated() {
    let text = readme();
    // The demo's problems name the flag given, not the configuration key made from it.
    let demo = payhost(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--api-token",
        "short",
        "--trusted-proxy",
        "10.0.0.5/40",
    ]);
    assert_eq!(code_of(&demo), 2, "{}", text_of(&demo));
    let said = text_of(&demo);
    assert!(
        said.contains("- --api-token: must be at least 16")
            && said.contains("- --trusted-proxy: \"10.0.0.5/40\" is not an address block")
            && !said.contains("[0]")
            && !said.contains("api_token:"),
        "{said}"
    );
    let cache = conformance::target_dir().join("payhost-test-cache");

    // `payhost check-config …  # check everything, list every problem, exit 2 if any`
    let stated = number_after(&text, "list every problem, exit ");
    // Problems of the file itself, all listed.
    let bad = check_config(
        "readme-bad",
        &good_config(&cache)
            .replace("readme-facts-token-0123456789", "short")
            .replace("public_url = \"http://127.0.0.1:8080\"\n", ""),
    );
    assert_eq!(code_of(&bad), stated as i32, "{}", text_of(&bad));
    let said = text_of(&bad);
    assert!(
        said.contains("api_token") && said.contains("public_url"),
        "every problem listed: {said}"
    );
    // Problems of a merchant's settings (the component checks them), all listed.
    let bad = check_config(
        "readme-bad-merchant",
        &good_config(&cache)
            .replace("2088000000000001", "1234")
            .replace("0123456789abcdef0123456789abcdef", "short"),
    );
    assert_eq!(code_of(&bad), stated as i32, "{}", text_of(&bad));
    let said = text_of(&bad);
    assert!(
        said.contains("partner") && said.contains("key"),
        "every problem listed: {said}"
    );
    let good = check_config("readme-good", &good_config(&cache));
    assert_eq!(code_of(&good), 0, "{}", text_of(&good));

    // "Every command exits `0` when it succeeds and `2` on an error it reports (…)".
    let claim =
        "Every command exits `0` when it succeeds and `2` when it stops with an error: a bad \
                 configuration, an unknown subcommand or flag, a file it cannot read";
    assert!(
        text.replace('\n', " ").contains(claim),
        "README.md no longer says: {claim}"
    );
    for args in [
        vec!["no-such-command"],
        vec!["demo", "--no-such-flag"],
        vec!["serve", "--config", "/nonexistent/payhost.toml"],
        vec!["pin-component", "--manifest", "/nonexistent/plugin.toml"],
        vec!["demo", "--manifest", "/nonexistent/plugin.toml"],
    ] {
        let out = payhost(&args);
        assert_eq!(code_of(&out), 2, "payhost {args:?}: {}", text_of(&out));
    }
    // Run outside the project, the demo names the flag that finds plugin.toml.
    let out = payhost(&["demo", "--manifest", "/nonexistent/plugin.toml"]);
    assert!(
        text_of(&out).contains("--manifest /nonexistent/plugin.toml: no such file"),
        "{}",
        text_of(&out)
    );
    for args in [vec!["--help"], vec!["demo", "--help"]] {
        let out = payhost(&args);
        assert_eq!(code_of(&out), 0, "payhost {args:?}: {}", text_of(&out));
    }

    // Conformance: the README's table of exit statuses (`| `N` | meaning |`), against the binary.
    let table: Vec<(i32, String)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            let (code, meaning) = rest.split_once("` | ")?;
            Some((code.parse().ok()?, meaning.to_owned()))
        })
        .collect();
    let code_meaning = |word: &str| -> i32 {
        table
            .iter()
            .find(|(_, m)| m.contains(word))
            .unwrap_or_else(|| {
                panic!("README.md's exit table has no row saying {word:?}: {table:?}")
            })
            .0
    };
    assert_eq!(
        table.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "{table:?}"
    );
    let could_not_start = code_meaning("could not start");
    let out = payhost(&["conformance", "--component", "/nonexistent/component.wasm"]);
    assert_eq!(
        code_of(&out),
        could_not_start,
        "a run that could not start: {}",
        text_of(&out)
    );
    // Nothing listens on the port: the host cannot be reached, one line says so.
    let port = conformance::host::free_port();
    let out = payhost(&[
        "conformance",
        "--against",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        "readme-facts-token-0123456789",
    ]);
    assert_eq!(
        code_of(&out),
        code_meaning("cannot be reached"),
        "an unreachable host: {}",
        text_of(&out)
    );
    assert!(text_of(&out).contains("cannot reach"), "{}", text_of(&out));
    // TestPay has no sandbox: asking only for a flow case tests nothing.
    let testpay = conformance::target_dir().join("wasm32-wasip2/release/testpay_plugin.wasm");
    let out = payhost(&[
        "conformance",
        "--component",
        &testpay.display().to_string(),
        "--only",
        "notify.paid_once",
    ]);
    assert_eq!(
        code_of(&out),
        code_meaning("nothing was tested"),
        "nothing tested: {}",
        text_of(&out)
    );
}

#[test]
fn payhost_toml_defaults_are_the_ones_stated() {
    let text = readme();
    let block = code_block_with(&text, "toml", "[webhooks]");
    let shown: toml::Table = toml::from_str(&block).expect("the README's payhost.toml parses");
    // The defaults: a configuration that sets none of them.
    let dir = temp_dir("readme-defaults");
    let config = payhost::config::Config::parse(&good_config(&dir.join("cache")), &dir).unwrap();
    let num = |table: &str, key: &str| -> u64 {
        shown[table][key]
            .as_integer()
            .unwrap_or_else(|| panic!("[{table}] {key} is a number")) as u64
    };
    let w = &config.webhooks;
    let l = &config.limits;
    let expected: Vec<(&str, &str, u64)> = vec![
        ("webhooks", "retry_base_ms", w.retry_base_ms),
        ("webhooks", "retry_max_ms", w.retry_max_ms),
        ("webhooks", "timeout_ms", w.timeout_ms),
        ("webhooks", "give_up_after_ms", w.give_up_after_ms),
        ("limits", "max_connections", l.max_connections as u64),
        (
            "limits",
            "max_connections_per_ip",
            l.max_connections_per_ip as u64,
        ),
        ("limits", "header_read_timeout_ms", l.header_read_timeout_ms),
        ("limits", "body_read_timeout_ms", l.body_read_timeout_ms),
        ("limits", "keep_alive_idle_ms", l.keep_alive_idle_ms),
        (
            "limits",
            "notify_per_ip_per_s",
            l.notify_per_ip_per_s.into(),
        ),
        (
            "limits",
            "notify_per_merchant_per_s",
            l.notify_per_merchant_per_s.into(),
        ),
        (
            "limits",
            "return_per_ip_per_s",
            l.return_per_ip_per_s.into(),
        ),
        ("limits", "admin_per_ip_per_s", l.admin_per_ip_per_s.into()),
        ("limits", "api_per_ip_per_s", l.api_per_ip_per_s.into()),
        (
            "retention",
            "raw_notification_days",
            config.retention.raw_notification_days.into(),
        ),
        (
            "retention",
            "prune_interval_s",
            config.retention.prune_interval_s,
        ),
        ("admin", "session_ttl_s", config.admin.session_ttl_s),
        ("admin", "session_idle_s", config.admin.session_idle_s),
        (
            "admin",
            "login_failures_per_minute",
            config.admin.login_failures_per_minute.into(),
        ),
    ];
    for (table, key, default) in &expected {
        assert_eq!(
            num(table, key),
            *default,
            "README.md's payhost.toml shows [{table}] {key} = {}, the default is {default}",
            num(table, key)
        );
    }
    // Every number shown in those tables is one of the defaults checked above.
    for table in ["webhooks", "limits", "retention", "admin"] {
        for key in shown[table].as_table().unwrap().keys() {
            if (table, key.as_str()) == ("admin", "time_zone") {
                continue;
            }
            assert!(
                expected.iter().any(|(t, k, _)| *t == table && k == key),
                "[{table}] {key} in README.md is not checked here"
            );
        }
    }
    assert_eq!(
        shown["admin"]["time_zone"].as_str(),
        Some(config.admin.time_zone.name.as_str()),
        "README.md's [admin] time_zone is the default"
    );
    assert_eq!(
        shown["listen"].as_str(),
        Some(config.listen.to_string().as_str())
    );
    assert_eq!(
        Path::new(shown["database"].as_str().unwrap()),
        config.database.file_name().map(Path::new).unwrap()
    );
    let mut cache = config.database.clone().into_os_string();
    cache.push(".cache");
    let no_cache_dir =
        good_config(&dir).replace(&format!("cache_dir = \"{}\"\n", dir.display()), "");
    let defaulted = payhost::config::Config::parse(&no_cache_dir, &dir).unwrap();
    assert_eq!(
        defaulted.cache_dir.as_os_str(),
        cache,
        "`cache_dir`, default `<database>.cache`"
    );
    assert!(text.contains("`cache_dir`, default `<database>.cache`"));
    // The prose: "`[webhooks] … give_up_after_ms` (3 days)", recovery, the pool, admin login.
    assert_eq!(w.give_up_after_ms, 3 * 86_400_000);
    assert!(text.contains("for at most `give_up_after_ms` (3 days)"));
    let r = &config.recovery;
    assert_eq!(
        number_after(&text, "`[recovery] after_s` (default "),
        r.after_s
    );
    assert_eq!(number_after(&text, "`interval_s` (default "), r.interval_s);
    assert_eq!(
        number_after(&text, "`max_age_s` (default ") * 86_400,
        r.max_age_s,
        "max_age_s in days"
    );
    assert_eq!(
        number_after(&text, "connections per replica, default ") as usize,
        config.database_pool_size
    );
    assert_eq!(
        number_before(&text, " wrong passwords a minute from one address"),
        u64::from(config.admin.login_failures_per_minute)
    );
}

/// The whole number right before `suffix` in `text`.
fn number_before(text: &str, suffix: &str) -> u64 {
    let at = text
        .find(suffix)
        .unwrap_or_else(|| panic!("README.md no longer says {suffix:?}"));
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number before {suffix:?} in README.md"))
}

#[tokio::test(flavor = "multi_thread")]
async fn http_limits_are_the_ones_stated() {
    let text = readme();
    let dir = temp_dir("readme-http");
    let token = "readme-facts-token-0123456789";
    let db = dir.join("demo.db").display().to_string();
    let demo = spawn_payhost(&dir, &["demo", "--api-token", token, "--database", &db]);

    // "body over 32 KiB → `413`"
    let kib = number_after(&text, "body over ") as usize;
    assert!(text.contains(&format!("body over {kib} KiB → `413`")));
    let notify = format!("{}/notify/demo", demo.base);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let over = request("POST", &notify, &form, vec![b'a'; kib * 1024 + 1]).await;
    assert_eq!(over.status, 413, "{} bytes", kib * 1024 + 1);
    let at_limit = request("POST", &notify, &form, vec![b'a'; kib * 1024]).await;
    assert_ne!(
        at_limit.status, 413,
        "{kib} KiB exactly is accepted for reading"
    );

    // "the latest notifications as received (newest first, 1–1000, default 50)"
    let (low, high) = (
        number_after(&text, "newest first, "),
        number_after(&text, "newest first, 1–"),
    );
    let default = number_after(&text, &format!("newest first, {low}–{high}, default "));
    let list = format!("{}/v1/merchants/demo/notifications", demo.base);
    for (n, ok) in [
        (low - 1, false),
        (low, true),
        (high, true),
        (high + 1, false),
    ] {
        let r = get(&format!("{list}?limit={n}"), Some(token)).await;
        assert_eq!(r.status == 200, ok, "limit={n}: {} {}", r.status, r.text());
    }
    // Unverified notifications are listed too: send more than the default.
    for i in 0..=default {
        let r = request(
            "POST",
            &notify,
            &form,
            format!("notify_id=readme-{i}").into_bytes(),
        )
        .await;
        assert_eq!(r.text(), "fail");
    }
    let r = get(&list, Some(token)).await;
    let listed = r.json();
    let listed = listed
        .as_array()
        .or_else(|| listed["notifications"].as_array())
        .unwrap_or_else(|| panic!("a list: {}", r.text()));
    assert_eq!(listed.len() as u64, default, "the default page");
}

/// "2m, 10m, 1h" → seconds.
fn duration_secs(s: &str) -> u64 {
    let s = s.trim();
    let (n, unit) = s.split_at(s.len() - 1);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("a duration: {s:?}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => panic!("a duration: {s:?}"),
    }
}

#[test]
fn limits_in_the_code_are_the_ones_stated() {
    let text = readme().replace('\n', " ");
    // The sandbox's notify retries: "resent 2m, 10m, …, 6h and 15h apart (8 sends at most)".
    let at = text.find("Unacknowledged notifies are resent ").unwrap()
        + "Unacknowledged notifies are resent ".len();
    let list = text[at..]
        .split(" apart")
        .next()
        .unwrap()
        .replace(" and ", ", ");
    let gaps: Vec<u64> = list.split(", ").map(duration_secs).collect();
    let offsets = payhost_sandbox::RETRY_OFFSETS_SECS;
    let real: Vec<u64> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, real, "the sandbox's retry gaps (RETRY_OFFSETS_SECS)");
    assert_eq!(
        number_after(&text[at..], " apart ("),
        offsets.len() as u64,
        "sends at most"
    );
    // "The shop's answer is read up to 64 KiB."
    assert_eq!(
        number_after(&text, "The shop's answer is read up to ") as usize * 1024,
        payhost::webhooks::MAX_REPLY_BYTES
    );
    // "(at most 32 blocks)" of RSA notify_data.
    assert_eq!(
        number_after(&text, "whatever the padding of any other (at most ") as usize,
        alipay_wap_plugin::sign::MAX_CIPHER_BLOCKS
    );
    // "Amounts are exact decimals in [0.01, 100000000.00]"
    let max_yuan = number_after(&text, "exact decimals in [0.01, ");
    assert_eq!(max_yuan * 100, alipay_wap_plugin::amount::MAX_FEN);
}

#[test]
fn the_contract_exports_are_the_ones_listed() {
    let text = readme();
    let section = text
        .split("## The contract")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README.md has a section on the contract");
    let wit = std::fs::read_to_string(repo_root().join("wit/v0.2.0/payment.wit")).unwrap();
    let plugin = wit
        .split("interface plugin {")
        .nth(1)
        .expect("the plugin interface");
    // Every export but the resume-* steps of a flow (the README describes those separately).
    let exports: Vec<&str> = plugin
        .lines()
        .filter_map(|l| l.trim().split_once(": func"))
        .map(|(name, _)| name.trim())
        .filter(|name| !name.starts_with("resume-"))
        .collect();
    assert!(exports.len() >= 7, "{exports:?}");
    for name in exports {
        assert!(
            section.contains(&format!("`{name}`")),
            "README.md's contract section does not name the export `{name}`"
        );
    }
}

#[test]
fn the_conformance_kit_readme_states_its_defaults() {
    let text = std::fs::read_to_string(repo_root().join("conformance-kit/README.md")).unwrap();
    let text = text.replace('\n', " ");
    let defaults = payhost_conformance::Options::default();
    assert_eq!(
        number_after(&text, "(`Options::case_timeout`, "),
        defaults.case_timeout.as_secs(),
        "conformance-kit/README.md: the case timeout"
    );
    let at = text
        .find("`Options::sandbox_listen` (default `")
        .expect("conformance-kit/README.md states sandbox_listen's default")
        + "`Options::sandbox_listen` (default `".len();
    assert_eq!(
        &text[at..at + text[at..].find('`').unwrap()],
        defaults.sandbox_listen.to_string()
    );
}

/// Every case the kit runs is in its README's tables (or, for `hostile.*`, named by its input there).
#[test]
fn the_conformance_kit_readme_lists_every_case() {
    let text = std::fs::read_to_string(repo_root().join("conformance-kit/README.md")).unwrap();
    // The hostile inputs' paragraph: from "Inputs:" to the next blank line.
    let inputs = text
        .split_once("\nInputs: ")
        .map(|(_, rest)| rest.split("\n\n").next().unwrap_or(rest))
        .expect("conformance-kit/README.md lists the hostile inputs (\"Inputs: \")");
    let mut missing = Vec::new();
    for case in payhost_conformance::cases() {
        let listed = match case.id.strip_prefix("hostile.") {
            // `hostile.notify.<input>`: the input is listed under "Inputs".
            Some(rest) if !text.contains(&format!("`{}`", case.id)) => {
                let input = rest.split_once('.').map_or(rest, |(_, input)| input);
                inputs.contains(&format!("`{input}`"))
            }
            _ => text.contains(&format!("`{}`", case.id)),
        };
        if !listed {
            missing.push(case.id);
        }
    }
    assert!(
        missing.is_empty(),
        "conformance-kit/README.md does not list {missing:?}"
    );
}

/// The PHP source of an adapter's module, where its README's numbers live.
fn adapter_source(platform: &str) -> String {
    let path = match platform {
        "ecshop" => "adapters/ecshop/includes/modules/payment/payhost_alipay.php",
        _ => "adapters/shopex/plugins/app/pay_payhost/pay_payhost.php",
    };
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

#[test]
fn the_adapters_readmes_state_their_numbers() {
    for platform in ["ecshop", "shopex"] {
        let readme =
            std::fs::read_to_string(repo_root().join(format!("adapters/{platform}/README.md")))
                .unwrap()
                .replace('\n', " ");
        let source = adapter_source(platform);
        // The webhook's timestamp window: "`t` within 300 s".
        let window = number_after(&readme, "`t` within ");
        assert!(
            source.contains(&format!(") > {window}")),
            "adapters/{platform}: the README's {window} s window is not the module's"
        );
        // The pending return page: "every 2 s (five times)".
        let every = readme
            .match_indices("every ")
            .map(|(at, m)| &readme[at + m.len()..])
            .find(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            .map(|rest| number_after(rest, ""))
            .unwrap_or_else(|| panic!("adapters/{platform}/README.md: \"every N s\""));
        assert!(
            source.contains(&format!("content=\"{every};url=")),
            "adapters/{platform}: the pending page does not refresh every {every} s"
        );
        let times = readme
            .split(&format!("every {every} s ("))
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap();
        let times = ["one", "two", "three", "four", "five", "six"]
            .iter()
            .position(|w| *w == times)
            .unwrap_or_else(|| panic!("adapters/{platform}: a count in words: {times}"))
            + 1;
        assert!(
            source.contains(&format!("$wait >= {times})")),
            "adapters/{platform}: the pending page does not re-check {times} times"
        );
    }
}

/// The `'…'` string that follows `marker` on `line`.
fn quoted_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('\'')?;
    Some(&rest[..rest.find('\'')?])
}

#[test]
fn the_chinese_readme_names_the_shops_real_fields() {
    let zh = std::fs::read_to_string(repo_root().join("README.zh-CN.md")).unwrap();
    // ecshop: each config field of the module, by the label its language file gives it.
    let module = adapter_source("ecshop");
    let lang = std::fs::read_to_string(
        repo_root().join("adapters/ecshop/languages/zh_cn/payment/payhost_alipay.php"),
    )
    .unwrap();
    let fields: Vec<&str> = module
        .lines()
        .filter_map(|l| quoted_after(l, "array('name' => "))
        .collect();
    assert!(fields.len() >= 5, "the ecshop module's fields: {fields:?}");
    for name in fields {
        let label = lang
            .lines()
            .find_map(|l| quoted_after(l, &format!("$_LANG['{name}'] = ")))
            .unwrap_or_else(|| panic!("no label for {name}"));
        assert!(
            zh.contains(&format!("| {label} |")),
            "README.zh-CN.md's ecshop table lacks the field {label} ({name})"
        );
    }
    // ShopEx: the fields of getfields(), by their label (up to its parenthesised hint).
    let app = adapter_source("shopex");
    let labels: Vec<&str> = app
        .lines()
        .filter_map(|l| quoted_after(l, "=> array('label' => "))
        .map(|l| l.split('（').next().unwrap())
        .collect();
    assert!(labels.len() >= 4, "the ShopEx app's fields: {labels:?}");
    for label in labels {
        assert!(
            zh.contains(&format!("**{label}")),
            "README.zh-CN.md's ShopEx steps lack the field {label}"
        );
    }
}

#[test]
fn the_chinese_readme_s_payhost_toml_is_accepted() {
    let zh = std::fs::read_to_string(repo_root().join("README.zh-CN.md")).unwrap();
    let block = zh
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README.zh-CN.md shows a payhost.toml");
    let block: String = block
        .lines()
        .map(|l| l.trim_start().to_owned() + "\n")
        .collect();
    let dir = temp_dir("readme-zh-toml");
    // The test's compile cache (a top-level key may come first), the repository's plugin.toml.
    let config = format!(
        "cache_dir = \"{}\"\n{}",
        conformance::target_dir()
            .join("payhost-test-cache")
            .display(),
        block.replace(
            "manifest = \"plugin.toml\"",
            &format!(
                "manifest = \"{}\"",
                repo_root().join("plugin.toml").display()
            ),
        )
    );
    // As written, its token is a placeholder to replace: refused, naming the field and how to
    // make one. With a token of the operator's own, the rest is accepted.
    std::fs::write(dir.join("payhost.toml"), &config).unwrap();
    let check = || {
        payhost(&[
            "check-config",
            "--config",
            dir.join("payhost.toml").to_str().unwrap(),
        ])
    };
    let out = check();
    assert_eq!(code_of(&out), 2, "{config}\n{}", text_of(&out));
    assert!(
        text_of(&out).contains("api_token:") && text_of(&out).contains("openssl rand -hex 32"),
        "{}",
        text_of(&out)
    );
    let token = config
        .lines()
        .find_map(|l| l.strip_prefix("api_token = \""))
        .and_then(|v| v.split('"').next())
        .expect("the block sets api_token")
        .to_owned();
    let config = config.replace(&token, "an-operators-own-token-5f1d0c9e");
    std::fs::write(dir.join("payhost.toml"), &config).unwrap();
    let out = check();
    assert_eq!(code_of(&out), 0, "{config}\n{}", text_of(&out));
}

/// `payhost admin-password` at a terminal asks for the password and does not show it as it is
/// typed (read from a pipe, it takes the line silently, as scripts and the tests above use it).
#[test]
fn a_password_typed_at_a_terminal_is_asked_for_and_not_shown() {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/clients/tty_password.py"))
        .arg(payhost_binary())
        .args(["a-typed-secret-password-1", "admin-password"])
        .output()
        .expect("python3 runs");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{shown}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("Admin password (12+ characters, not shown): "),
        "{shown}"
    );
    assert!(
        shown.contains("admin_password_hash = \"$argon2id$"),
        "{shown}"
    );
    assert!(
        !shown.contains("a-typed-secret-password-1"),
        "the password was shown: {shown}"
    );
}

/// The systemd unit restarts payhost after any stop (SIGHUP exits 0: `on-failure` would leave
/// it stopped), gives it longer than its 30 s drain, and starts a command `serve` takes.
#[test]
fn the_systemd_unit_restarts_after_a_clean_stop_and_runs_serve() {
    let text = readme();
    let unit = code_block_with(&text, "ini", "[Service]");
    assert!(unit.contains("\nRestart=always\n"), "{unit}");
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec")
        .parse()
        .unwrap();
    assert!(stop > 30, "{unit}");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(args[..2], ["serve", "--config"], "{exec}");
    let help = std::process::Command::new(payhost_binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config <FILE>"));
}
