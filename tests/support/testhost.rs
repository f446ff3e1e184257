//! payhost in the test process: the real router, store and webhook worker on an ephemeral
//! loopback port, started through `payhost::serve_in_process`. The API, admin and notify tests
//! need no release binary this way; the tests of the process itself (kill -9, SIGTERM, the
//! command line, replicas) keep using [`crate::host::Payhost`]. [`TestHost::demo`] is what
//! `payhost demo` starts, in the same way.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

/// payhost's log in this process, as the binary would write it (`PAYHOST_LOG` of the tests:
/// debug, without wasmtime's). One subscriber per process: under nextest every test has its
/// own process, so a host's log holds only its own lines.
fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,wasmtime=warn,cranelift=warn,hyper=info,tokio_postgres=info",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the constructors below return. Boxed, and built inside this library, on purpose: an
/// `async fn`'s body is compiled again in every crate that awaits it, with everything it awaits
/// in turn, so awaiting payhost's start from each test file compiled the whole server into each
/// test program (≈ 50 s of release build per file). Behind this box it is compiled once, here.
pub type Starting<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// When a host began to start, and where its log began.
struct Start {
    at: std::time::Instant,
    log_from: usize,
}

impl Start {
    fn now() -> Start {
        Start {
            at: std::time::Instant::now(),
            log_from: log_buffer().lock().unwrap().len(),
        }
    }

    fn host(
        self,
        addr: SocketAddr,
        dir: PathBuf,
        config: PathBuf,
        running: payhost::server::Running,
    ) -> TestHost {
        TestHost {
            addr,
            dir,
            config,
            running: Some(running),
            started_in: self.at.elapsed(),
            log_from: self.log_from,
        }
    }
}

pub struct TestHost {
    pub addr: SocketAddr,
    /// The test's folder: payhost.toml and the SQLite database are here.
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The running host (taken out only by [`TestHost::restart`]).
    running: Option<payhost::server::Running>,
    /// From the call to ready to serve (the component loaded, the merchants seeded).
    pub started_in: std::time::Duration,
    log_from: usize,
}

impl TestHost {
    /// Binds an ephemeral loopback port, writes `config(port)` as `dir/payhost.toml`, loads it as
    /// `payhost serve` would and serves it here. Panics with the reason when it does not start.
    pub fn start(dir: &Path, config: impl FnOnce(u16) -> String) -> Starting<TestHost> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let text = config(listener.local_addr().unwrap().port());
        Self::serve(dir.to_path_buf(), listener, text)
    }

    fn serve(dir: PathBuf, listener: std::net::TcpListener, text: String) -> Starting<TestHost> {
        Box::pin(async move {
            let start = Start::now();
            let addr = listener.local_addr().unwrap();
            let path = dir.join("payhost.toml");
            std::fs::write(&path, text).unwrap();
            let loaded = payhost::config::Config::load(&path)
                .unwrap_or_else(|e| panic!("the test configuration: {e:#}"));
            let running = payhost::serve_in_process(loaded, listener)
                .await
                .unwrap_or_else(|e| panic!("payhost did not start: {e:#}"));
            start.host(addr, dir, path, running)
        })
    }

    /// What `payhost demo --api-token <api_token> --admin-password <ADMIN_PASSWORD>
    /// --sandbox-speed <sandbox_speed> --database <dir>/demo.db` starts (`payhost::demo`: the same
    /// configuration, sandbox gateway and shop on one server), on an ephemeral loopback port here.
    /// Its configuration is written to `dir/payhost.toml` for reading.
    pub fn demo(dir: &Path, api_token: &str, sandbox_speed: f64) -> Starting<TestHost> {
        Self::serve_demo(dir.to_path_buf(), api_token.to_owned(), sandbox_speed)
    }

    fn serve_demo(dir: PathBuf, api_token: String, sandbox_speed: f64) -> Starting<TestHost> {
        Box::pin(async move {
            let start = Start::now();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let demo = payhost_sandbox::demo::build(&payhost_sandbox::demo::DemoOptions {
                public_url: format!("http://{addr}"),
                api_token: Some(api_token),
                sandbox_speed,
                sandbox_merchants: Vec::new(),
            })
            .unwrap_or_else(|e| panic!("the demo: {e}"));
            let manifest = crate::repo_root().join("plugin.toml");
            let options = payhost::demo::Options {
                listen: addr,
                manifest: &manifest,
                database: Some(dir.join("demo.db")),
                admin_password: crate::host::ADMIN_PASSWORD,
                allow_origins: &[],
                public_url: None,
                trusted_proxies: &[],
            };
            let text = payhost::demo::config_toml(&demo, &options)
                .unwrap_or_else(|e| panic!("the demo's configuration: {e:#}"));
            let path = dir.join("payhost.toml");
            std::fs::write(&path, &text).unwrap();
            // As payhost::demo::config loads it.
            let config = payhost::config::Config::parse(&text, Path::new("."))
                .unwrap_or_else(|e| panic!("the demo's configuration: {e:#}"));
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = payhost::demo::build_app(&demo, config)
                .await
                .unwrap_or_else(|e| panic!("payhost demo did not start: {e:#}"));
            let running = payhost::server::start_on(app, listener, std::future::pending())
                .await
                .unwrap_or_else(|e| panic!("payhost demo did not start: {e:#}"));
            start.host(addr, dir, path, running)
        })
    }

    /// Stops this host as SIGTERM stops `payhost serve` (no new connections, requests in flight
    /// finish, the webhook worker stops), then starts it again on the same port with `config(port)`
    /// as its new payhost.toml: what an operator does to change the configuration.
    pub fn restart(self, config: impl FnOnce(u16) -> String) -> Starting<TestHost> {
        let text = config(self.addr.port());
        self.serve_again(text)
    }

    fn serve_again(mut self, text: String) -> Starting<TestHost> {
        Box::pin(async move {
            let running = self.running.take().expect("a running host");
            running
                .shutdown()
                .await
                .unwrap_or_else(|e| panic!("payhost did not stop cleanly: {e:#}"));
            let listener = std::net::TcpListener::bind(self.addr)
                .unwrap_or_else(|e| panic!("{} is not free again: {e}", self.addr));
            Self::serve(self.dir.clone(), listener, text).await
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What payhost logged since this host started.
    pub fn log_text(&self) -> String {
        let log = log_buffer().lock().unwrap();
        String::from_utf8_lossy(&log[self.log_from.min(log.len())..]).into_owned()
    }

    /// The running host: its app (store, config, metrics) for checks from inside.
    pub fn running(&self) -> &payhost::server::Running {
        self.running.as_ref().expect("a running host")
    }

    pub fn app(&self) -> &payhost::service::App {
        &self.running().app
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.stop();
        }
    }
}

/// What the API, notify and admin tests need of a host, in the test process or as a process:
/// the same test body runs against either.
pub trait Served {
    fn url(&self, path: &str) -> String;
    fn log_text(&self) -> String;
    /// The test's folder (payhost.toml, the SQLite database).
    fn dir(&self) -> &Path;
}

impl Served for TestHost {
    fn url(&self, path: &str) -> String {
        TestHost::url(self, path)
    }

    fn log_text(&self) -> String {
        TestHost::log_text(self)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Served for crate::host::Payhost {
    fn url(&self, path: &str) -> String {
        crate::host::Payhost::url(self, path)
    }

    fn log_text(&self) -> String {
        crate::host::Payhost::log_text(self)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The sandbox gateway in the test process, as `payhost sandbox --md5-merchant P:K --speed N`
/// serves it: `base` is its origin (`{base}/sandbox/gateway`, …), `sandbox` its state.
pub struct TestSandbox {
    pub base: String,
    pub sandbox: Arc<payhost_sandbox::Sandbox>,
}

impl TestSandbox {
    /// Serves a sandbox with one MD5 merchant on an ephemeral loopback port, delivering its
    /// notifications at `speed` sandbox seconds per real second, until the test ends.
    pub fn md5(partner: &str, key: &str, speed: f64) -> Starting<TestSandbox> {
        Self::serve_md5(partner.to_owned(), key.to_owned(), speed)
    }

    fn serve_md5(partner: String, key: String, speed: f64) -> Starting<TestSandbox> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let sandbox =
                payhost_sandbox::Sandbox::new("/sandbox", &format!("{base}/sandbox"), speed);
            sandbox.add_merchant(payhost_sandbox::SandboxMerchant {
                partner,
                keys: payhost_sandbox::wire::Keys::Md5(key),
                privileged: true,
            });
            sandbox.start_delivery();
            tokio::spawn(payhost_sandbox::serve_on(
                sandbox.clone(),
                listener,
                std::future::pending(),
            ));
            TestSandbox { base, sandbox }
        })
    }
}

/// Serves `sandbox` on `listener` (bound already) in the background until the test ends. Spawned
/// here, so the sandbox's server is compiled once, in this library (see [`Starting`]).
pub fn spawn_sandbox(
    sandbox: Arc<payhost_sandbox::Sandbox>,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = payhost_sandbox::serve_on(sandbox, listener, std::future::pending()).await;
    })
}
