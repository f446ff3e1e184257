//! Runs the flow suite against a running payhost, as `payhost conformance --against` will:
//! `cargo run --release -p payhost-conformance --example against -- URL TOKEN [LISTEN] [JUNIT_FILE]`
//! (LISTEN: where the kit's sandbox listens, default 127.0.0.1:0; the host must allow its origin).

use std::io::Write;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(token)) = (args.first(), args.get(1)) else {
        eprintln!("usage: against URL TOKEN [LISTEN] [JUNIT_FILE]");
        std::process::exit(2);
    };
    let mut opts = payhost_conformance::Options {
        on_case: Some(std::sync::Arc::new(
            |c: &payhost_conformance::CaseResult| {
                println!("{}", c.line());
                let _ = std::io::stdout().flush();
            },
        )),
        on_sandbox_ready: Some(std::sync::Arc::new(|origin: &str| {
            eprintln!("the kit's sandbox and webhook receiver: {origin} (the host must allow this origin)");
        })),
        ..Default::default()
    };
    if let Some(listen) = args.get(2) {
        opts.sandbox_listen = listen
            .parse()
            .expect("LISTEN is an address such as 127.0.0.1:8099");
    }
    let report = payhost_conformance::run_against(url, token, &opts).await;
    println!("{}", report.summary());
    if let Some(file) = args.get(3) {
        std::fs::write(file, report.junit()).expect("the JUnit file is writable");
    }
    // A run where nothing passed proved nothing: not green either.
    std::process::exit(if report.failed() > 0 {
        1
    } else if report.nothing_tested(&opts.selection) {
        3
    } else {
        0
    });
}
