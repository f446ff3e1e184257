//! Running the real `payhost` binary on loopback, and talking to it over HTTP.

use crate::{repo_root, target_dir};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release binary (built by `./scripts/test` before the tests run).
pub fn payhost_binary() -> PathBuf {
    let p = target_dir().join("release/payhost");
    assert!(
        p.exists(),
        "build payhost first: cargo build --release -p payhost"
    );
    p
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under target/ for one test.
/// The value after `label` on a line of a command's output, such as `payhost merchant add`'s
/// `token: …` and `shop_secret: …`; panics naming the label when there is none.
pub fn output_value(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {stdout}"))
        .trim()
        .to_owned()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = target_dir().join("test-tmp").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The admin password of every test configuration ([`config_head`]) and of the demos the tests
/// start (`--admin-password`).
pub const ADMIN_PASSWORD: &str = "test-admin-password-0123";

/// The argon2 hash of [`ADMIN_PASSWORD`] (made once per test process).
pub fn admin_password_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| payhost::auth::hash_password(ADMIN_PASSWORD).unwrap())
        .clone()
}

/// The top of a test `payhost.toml`: loopback `listen` and `public_url` on `port`, the database in
/// the test's folder, the shared compile cache, the admin password hash of [`ADMIN_PASSWORD`], and
/// a `[plugin]` table naming the repository's plugin.toml plus `plugin_extra` lines. Merchant
/// tables follow.
pub fn config_head(port: u16, api_token: &str, plugin_extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
database = "payhost.db"
api_token = "{api_token}"
cache_dir = "{cache}"
admin_password_hash = "{hash}"

[plugin]
manifest = "{manifest}"
{plugin_extra}
"#,
        cache = target_dir().join("payhost-test-cache").display(),
        manifest = repo_root().join("plugin.toml").display(),
        hash = admin_password_hash(),
    )
}

/// Logs into `base`'s admin page with `password`: the session cookie (`name=value`) and the CSRF
/// token of its forms.
pub async fn admin_login(base: &str, password: &str) -> (String, String) {
    admin_login_as(base, "", password).await
}

/// Logs into `base`'s admin page as the admin user `user` (empty: payhost.toml's password).
pub async fn admin_login_as(base: &str, user: &str, password: &str) -> (String, String) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("user", user)
        .append_pair("password", password)
        .finish();
    let login = post_form(&format!("{base}/admin/login"), &body).await;
    assert_eq!(login.status, 303, "admin login: {}", login.text());
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = request(
        "GET",
        &format!("{base}/admin"),
        &[("cookie", &cookie)],
        Vec::new(),
    )
    .await
    .text();
    (cookie, csrf_of(&page))
}

/// Posts an admin form (`body` carries its CSRF token) as the session `cookie`, checks that the
/// answer is a 303 (every admin post redirects), and returns the page it leads to (which shows
/// what the post did, once).
pub async fn admin_post(base: &str, path: &str, cookie: &str, body: &str) -> String {
    let to = admin_post_location(base, path, cookie, body).await;
    request(
        "GET",
        &format!("{base}{to}"),
        &[("cookie", cookie)],
        Vec::new(),
    )
    .await
    .text()
}

/// Posts an admin form as [`admin_post`] does and returns where its 303 leads (with its
/// fragment), without following it.
pub async fn admin_post_location(base: &str, path: &str, cookie: &str, body: &str) -> String {
    let r = request(
        "POST",
        &format!("{base}{path}"),
        &[
            ("cookie", cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.status, 303, "POST {path}: {}", r.text());
    r.header("location")
        .expect("a 303 names where to go")
        .to_owned()
}

/// The CSRF token in an admin page's forms.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the admin page has a CSRF field")
        .to_owned()
}

/// One directive of a Content-Security-Policy (`script-src 'self' …`), or "".
pub fn csp_directive(csp: &str, name: &str) -> String {
    csp.split(';')
        .map(str::trim)
        .find(|d| d.split_whitespace().next() == Some(name))
        .unwrap_or_default()
        .to_owned()
}

/// Every inline `open`…`close` element of `body` is named in `allowed` by its SHA-256 (and the
/// body has at least one).
pub fn inline_elements_allowed(body: &str, open: &str, close: &str, allowed: &str) -> bool {
    use base64::Engine;
    use sha2::Digest;
    let mut seen = 0;
    for inner in body.split(open).skip(1) {
        let inner = inner.split(close).next().unwrap();
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(inner.as_bytes()));
        if !allowed.contains(&format!("'sha256-{hash}'")) {
            return false;
        }
        seen += 1;
    }
    seen > 0 || open == "<script>"
}

pub struct Payhost {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    pub log: PathBuf,
    pub started_in: Duration,
    /// `PAYHOST_LOG` of the process (tests log at debug; the load benchmark as in production).
    log_filter: String,
}

impl Payhost {
    /// Writes `payhost.toml` into `dir` and starts `payhost serve` with it.
    pub fn start(dir: &Path, config_toml: &str) -> Payhost {
        Self::start_logging(dir, config_toml, "debug,wasmtime=warn,cranelift=warn")
    }

    /// [`Payhost::start`] with another `PAYHOST_LOG` filter.
    pub fn start_logging(dir: &Path, config_toml: &str, log_filter: &str) -> Payhost {
        let config = dir.join("payhost.toml");
        std::fs::write(&config, config_toml).unwrap();
        let addr: SocketAddr = toml_listen(config_toml);
        let mut p = Payhost {
            addr,
            dir: dir.to_path_buf(),
            config,
            child: None,
            log: dir.join("payhost.log"),
            started_in: Duration::ZERO,
            log_filter: log_filter.to_owned(),
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let started = Instant::now();
        let child = Command::new(payhost_binary())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("PAYHOST_LOG", &self.log_filter)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn payhost");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "payhost exited with {status} while starting:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "payhost did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.started_in = started.elapsed();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no chance to flush or finish anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM")
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …) and waits for the process to end.
    pub fn signal(&mut self, name: &str) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &c.id().to_string()])
            .status();
        c.wait().unwrap()
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Payhost {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn toml_listen(config: &str) -> SocketAddr {
    for line in config.lines() {
        if let Some(v) = line.trim().strip_prefix("listen") {
            let v = v.trim().trim_start_matches('=').trim().trim_matches('"');
            return v.parse().unwrap();
        }
    }
    panic!("the test config needs a listen line")
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let uri: http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// A payment's refunds as the API shows them (`GET …/payments/{no}`): (amount, status,
/// started_by) in the answer's order.
pub fn refund_rows(payment: &serde_json::Value) -> Vec<(String, String, String)> {
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
    payment["refunds"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|r| (text(r, "amount"), text(r, "status"), text(r, "started_by")))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn get(url: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    request("GET", url, &headers, Vec::new()).await
}

pub async fn send_json(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    request(method, url, &headers, body.to_string().into_bytes()).await
}

pub async fn post_form(url: &str, body: &str) -> Reply {
    request(
        "POST",
        url,
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes().to_vec(),
    )
    .await
}

/// Waits until something listens on the loopback port; fails if `child` exits first.
pub fn wait_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "exited with {status} while starting:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `payhost demo` (or `payhost sandbox`) process, killed on drop.
pub struct Demo {
    pub base: String,
    pub log: PathBuf,
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `payhost <args…> --listen 127.0.0.1:<free port>` from the repository root, logging into `dir`.
pub fn spawn_payhost(dir: &Path, args: &[&str]) -> Demo {
    let port = free_port();
    let log = dir.join("payhost.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(payhost_binary())
        .current_dir(repo_root())
        // What payhost keeps in the temporary folder (the demo's database when none is given)
        // stays in the test's folder: the child is killed, and never removes it.
        .env("TMPDIR", dir)
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("spawn payhost");
    wait_port(port, &mut child, &log);
    Demo {
        base: format!("http://127.0.0.1:{port}"),
        log,
        child,
    }
}

/// One HTTP/1.1 request from the local address `from` (another loopback address, so that per-address limits
/// count it apart), `Connection: close`: the status, the headers as text and the body.
pub async fn request_from(
    from: &str,
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let uri: http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket
        .connect(authority.parse().unwrap())
        .await
        .expect("connect");
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        uri.path_and_query().unwrap(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}
