//! A server in a child process that prints its loopback port on its first line of output (the
//! independent Python gateways under `tests/clients/`), killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct PortServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl PortServer {
    /// Spawns `command` with its stdout piped and waits for the port it prints first.
    pub fn spawn(mut command: Command, what: &str) -> PortServer {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{what} did not print its port: {line:?}"));
        PortServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PortServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
