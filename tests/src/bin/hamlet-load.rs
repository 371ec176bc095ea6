//! `hamlet-load`: syncs documents from many concurrent automerge-repo clients into a sync server
//! and reports acknowledged changes per second, round latencies, bytes on the wire and the
//! server's peak memory. See `hamlet_tests::load`; `tests/bench/sync.sh` runs it against Hamlet's
//! server (SQLite, PostgreSQL) and the automerge-repo reference server.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hamlet_tests::load::{self, Workload};

/// Load generator for automerge-repo sync servers.
#[derive(Parser, Debug)]
#[command(name = "hamlet-load", version, about)]
struct Args {
    /// The sync endpoint, e.g. ws://127.0.0.1:8080/sync.
    #[arg(long, env = "HAMLET_LOAD_URL")]
    url: String,

    /// Concurrent clients, one WebSocket connection each.
    #[arg(long, env = "HAMLET_LOAD_CLIENTS", default_value_t = 200)]
    clients: usize,

    /// Documents in all, shared out between the clients.
    #[arg(long, env = "HAMLET_LOAD_DOCS", default_value_t = 1000)]
    docs: usize,

    /// Changes per document, each acknowledged before the next is made.
    #[arg(long, env = "HAMLET_LOAD_CHANGES", default_value_t = 100)]
    changes: usize,

    /// The server's process id: report its peak resident memory (VmHWM, and VmRSS sampled every
    /// 100 ms) and the CPU time it used.
    #[arg(long, env = "HAMLET_LOAD_SERVER_PID")]
    server_pid: Option<u32>,

    /// Print the report as JSON on stdout (the one-line summary still goes to stderr).
    #[arg(long, env = "HAMLET_LOAD_JSON")]
    json: bool,

    /// Seconds a client waits for any one reply before giving up on the document.
    #[arg(long, env = "HAMLET_LOAD_ROUND_TIMEOUT", default_value_t = 30)]
    round_timeout: u64,

    /// Threads driving the clients. One keeps the generator to one core, leaving the rest to the
    /// server it shares the machine with.
    #[arg(long, env = "HAMLET_LOAD_THREADS", default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(args.url.starts_with("ws://"), "--url must be a ws:// URL, got {:?}", args.url);
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    }
    .context("starting the tokio runtime")?;

    let workload = Workload {
        url: args.url.clone(),
        clients: args.clients,
        docs: args.docs,
        changes: args.changes,
        round_timeout: Duration::from_secs(args.round_timeout.max(1)),
    };
    let report = runtime.block_on(load::run(workload, args.server_pid));

    eprintln!("{}", report.summary());
    for e in &report.error_samples {
        eprintln!("  error: {e}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("writing the report")?);
    }
    if report.complete() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "hamlet-load: {} of {} documents not fully acknowledged ({} of {} changes)",
            report.documents_failed, report.docs, report.acknowledged_changes, report.expected_changes
        );
        Ok(ExitCode::FAILURE)
    }
}
