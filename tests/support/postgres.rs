//! A throwaway PostgreSQL cluster for one test, and a load balancer (haproxy) in front of
//! several payhost replicas. Nothing assumes a service the machine started: the cluster is made
//! with `initdb` in a folder under the target directory and served by `pg_ctl` on a free loopback
//! port (and a Unix socket in its own folder), with `fsync=on` and `synchronous_commit=on`. When
//! the tests run as root, PostgreSQL runs as `nobody` (it refuses to run as root).
//!
//! The binaries: `PAYHOST_PG_BIN` when set, else the newest `/usr/lib/postgresql/<version>/bin`
//! (Debian's `postgresql` package), else whatever `initdb` the `PATH` has; haproxy:
//! `PAYHOST_HAPROXY` or `/usr/sbin/haproxy` or `haproxy` on the `PATH`.

use crate::host::{free_port, temp_dir};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder of PostgreSQL's server binaries.
pub fn pg_bin() -> PathBuf {
    if let Some(d) = std::env::var_os("PAYHOST_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => PathBuf::new(), // the PATH's initdb / pg_ctl
    }
}

/// The uid and gid PostgreSQL runs as: `nobody` when we are root, else ourselves (None).
fn unprivileged() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if euid != 0 {
        return None;
    }
    let out = Command::new("id").args(["-u", "nobody"]).output().ok()?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let out = Command::new("id").args(["-g", "nobody"]).output().ok()?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((uid, gid))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown {}", path.display());
}

/// A PostgreSQL cluster of one test: stopped (`pg_ctl stop -m immediate`) and deleted on drop.
pub struct PgCluster {
    pub port: u16,
    pub dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    running: bool,
}

impl PgCluster {
    /// `initdb` and `pg_ctl start` in a fresh folder; the superuser is `payhost` (trust
    /// authentication on loopback only).
    pub fn start(name: &str) -> PgCluster {
        let dir = temp_dir(&format!("pg-{name}"));
        let data = dir.join("data");
        let sock = dir.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        let user = unprivileged();
        if let Some((uid, gid)) = user {
            // The folders above must be traversable by that user.
            let mut p = dir.clone();
            while let Some(parent) = p.parent() {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(parent) {
                    let mode = m.permissions().mode();
                    if mode & 0o001 == 0 {
                        let _ = std::fs::set_permissions(
                            parent,
                            std::fs::Permissions::from_mode(mode | 0o001),
                        );
                    }
                }
                p = parent.to_path_buf();
            }
            chown_tree(&dir, uid, gid);
        }
        let bin = pg_bin();
        let mut cluster = PgCluster {
            port: free_port(),
            dir: dir.clone(),
            data: data.clone(),
            bin,
            user,
            running: false,
        };
        let log = dir.join("initdb.log");
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "payhost",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("initdb (install Debian's postgresql package)");
        std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat()).unwrap();
        assert!(
            out.status.success(),
            "initdb failed:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB",
            cluster.port,
            sock.display()
        );
        let out = cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.log()
        );
        cluster.running = true;
        cluster
    }

    fn command(&self, program: &str) -> Command {
        let path = if self.bin.as_os_str().is_empty() {
            PathBuf::from(program)
        } else {
            self.bin.join(program)
        };
        let mut c = Command::new(path);
        c.stdin(Stdio::null()).current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid).env("HOME", &self.dir);
        }
        c
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "payhost",
                name,
            ])
            .output()
            .expect("createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://payhost@127.0.0.1:{}/{database}", self.port)
    }

    /// The cluster's `psql`, else the PATH's (a client: it runs as the test, over TCP).
    fn psql_binary(&self) -> PathBuf {
        let psql = self.bin.join("psql");
        if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        }
    }

    /// Runs one SQL statement with `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut c = Command::new(self.psql_binary());
        c.stdin(Stdio::null()).current_dir(&self.dir);
        let out = c
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "payhost",
            ])
            .args([
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A `psql` session kept open on `database`, fed statements as the test goes (to hold a
    /// lock, say).
    pub fn session(&self, database: &str) -> PsqlSession {
        let child = Command::new(self.psql_binary())
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(database),
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("psql");
        PsqlSession(child)
    }

    /// Stops the server at once (as a crash would).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// haproxy on a loopback port, round-robin over `backends` (HTTP mode, health-checked with
/// `GET /readyz`); killed on drop.
pub struct Balancer {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

pub fn haproxy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PAYHOST_HAPROXY") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from("/usr/sbin/haproxy");
    if p.exists() {
        p
    } else {
        PathBuf::from("haproxy")
    }
}

impl Balancer {
    pub fn start(name: &str, backends: &[u16]) -> Balancer {
        let dir = temp_dir(&format!("lb-{name}"));
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!("    server r{i} 127.0.0.1:{p} check inter 200ms fall 2 rise 1\n")
            })
            .collect();
        // A replica killed under a request: haproxy sends the request to the other one when the
        // connection failed or closed without an answer (every payhost write is idempotent:
        // notify_id, out_trade_no). X-Forwarded-For carries the client's address (the replicas
        // run with trust_proxy = true, so per-IP limits see clients, not the balancer).
        let cfg = format!(
            "global
    maxconn 4096
defaults
    mode http
    option forwardfor
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    retry-on conn-failure empty-response
frontend payhost
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
{servers}"
        );
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.join("haproxy.log");
        let f = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(haproxy_binary())
            .arg("-f")
            .arg(&cfg_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("haproxy (install Debian's haproxy package)");
        crate::host::wait_port(port, &mut child, &log);
        Balancer { port, dir, child }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the balancer forwards `path` with a 200 (its health checks saw a replica up).
    pub fn wait_ready(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    write!(s, "GET {path} HTTP/1.0\r\nHost: lb\r\n\r\n").ok()?;
                    let mut buf = [0u8; 32];
                    let n = s.read(&mut buf).ok()?;
                    Some(
                        buf[..n].starts_with(b"HTTP/1.0 200")
                            || buf[..n].starts_with(b"HTTP/1.1 200"),
                    )
                })
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the balancer never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An open `psql` session ([`PgCluster::session`]); killed on drop.
pub struct PsqlSession(Child);

impl PsqlSession {
    /// Sends SQL to the session (it runs once psql reads it; the caller checks its effect).
    pub fn send(&mut self, sql: &str) {
        use std::io::Write;
        let stdin = self.0.stdin.as_mut().expect("psql's stdin");
        stdin.write_all(sql.as_bytes()).expect("write to psql");
        stdin.write_all(b"\n").expect("write to psql");
        stdin.flush().expect("flush psql's stdin");
    }
}

impl Drop for PsqlSession {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
