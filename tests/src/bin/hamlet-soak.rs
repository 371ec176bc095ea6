//! `hamlet-soak`: starts `hamlet-server serve` on a SQLite data folder, has writers sync changes
//! into it, kills it with SIGKILL at random moments, restarts it, and checks after each restart
//! that every change it acknowledged is still there. Exits 1 on any loss. See `hamlet_tests::soak`;
//! `tests/bench/soak.sh` builds and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use hamlet_tests::soak::{self, SoakConfig};

/// SIGKILL soak of the Hamlet server.
#[derive(Parser, Debug)]
#[command(name = "hamlet-soak", version, about)]
struct Args {
    /// SIGKILLs to send.
    #[arg(long, env = "HAMLET_SOAK_KILLS", default_value_t = 1000)]
    kills: usize,

    /// The server binary (by default `hamlet-server` beside this program).
    #[arg(long, env = "HAMLET_SOAK_SERVER")]
    server: Option<PathBuf>,

    /// The server's data folder (by default a new temporary folder, removed after a run that lost
    /// nothing).
    #[arg(long, env = "HAMLET_SOAK_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Concurrent writers.
    #[arg(long, env = "HAMLET_SOAK_WRITERS", default_value_t = 4)]
    writers: usize,

    /// A kill while writers run falls uniformly within this many milliseconds of their start.
    #[arg(long, env = "HAMLET_SOAK_MAX_RUN_MS", default_value_t = 800)]
    max_run_ms: u64,

    /// Percent of the kills aimed at the server's start-up instead.
    #[arg(long, env = "HAMLET_SOAK_STARTUP_KILLS", default_value_t = 10)]
    startup_kill_percent: u64,

    /// Start-up kills fall within this many milliseconds of starting the server.
    #[arg(long, env = "HAMLET_SOAK_STARTUP_WINDOW_MS", default_value_t = 300)]
    startup_window_ms: u64,

    /// Acknowledged changes after which a writer moves to a new document.
    #[arg(long, env = "HAMLET_SOAK_CHANGES_PER_DOC", default_value_t = 200)]
    changes_per_doc: u64,

    /// Older documents read back after each restart, besides those written since the last check.
    #[arg(long, env = "HAMLET_SOAK_SAMPLE", default_value_t = 8)]
    sample: usize,

    /// Every this many kills, read back every document.
    #[arg(long, env = "HAMLET_SOAK_FULL_EVERY", default_value_t = 100)]
    full_every: usize,

    /// The server's --compact-after (low, so that kills also fall during compactions).
    #[arg(long, env = "HAMLET_SOAK_COMPACT_AFTER", default_value_t = 16)]
    compact_after: usize,

    /// Seconds to wait for any one reply.
    #[arg(long, env = "HAMLET_SOAK_ROUND_TIMEOUT", default_value_t = 30)]
    round_timeout: u64,

    /// Seed of the kill moments and samples (by default from the clock; printed).
    #[arg(long, env = "HAMLET_SOAK_SEED")]
    seed: Option<u64>,

    /// A shell command run after each kill, before the restart, with HAMLET_SOAK_DATA set to
    /// the data folder (to show the check can fail, e.g. by deleting a chunk).
    #[arg(long, env = "HAMLET_SOAK_AFTER_KILL")]
    after_kill: Option<String>,

    /// Print the report as JSON on stdout (the one-line summary goes to stderr).
    #[arg(long, env = "HAMLET_SOAK_JSON")]
    json: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let server = match args.server {
        Some(path) => path,
        None => std::env::current_exe()
            .context("finding this program")?
            .with_file_name(format!("hamlet-server{}", std::env::consts::EXE_SUFFIX)),
    };
    anyhow::ensure!(
        server.is_file(),
        "no server binary at {} (build hamlet-server, or pass --server)",
        server.display()
    );
    let seed =
        args.seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    let (data_dir, temporary) = match args.data_dir {
        Some(dir) => (dir, false),
        None => (std::env::temp_dir().join(format!("hamlet-soak-{}-{seed}", std::process::id())), true),
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let log_path = data_dir.with_extension("server.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "hamlet-soak: {} kills, {} writers, seed {seed}; data {}; server log {}",
        args.kills,
        args.writers,
        data_dir.display(),
        log_path.display()
    );
    let config = SoakConfig {
        server,
        data_dir: data_dir.clone(),
        kills: args.kills,
        writers: args.writers,
        max_run: Duration::from_millis(args.max_run_ms),
        startup_kill_percent: args.startup_kill_percent.min(100),
        startup_window: Duration::from_millis(args.startup_window_ms),
        changes_per_doc: args.changes_per_doc.max(1),
        sample: args.sample,
        full_every: args.full_every,
        compact_after: args.compact_after,
        round_timeout: Duration::from_secs(args.round_timeout.max(1)),
        seed,
        after_kill: args.after_kill,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let report = runtime.block_on(soak::run(config, log))?;

    eprintln!("{}", report.summary());
    for e in &report.writer_error_samples {
        eprintln!("  writer error: {e}");
    }
    for loss in &report.lost {
        eprintln!(
            "  LOST after kill {}: document {} ({} acknowledged changes): {} heads missing: {}",
            loss.kill,
            loss.document,
            loss.acknowledged_changes,
            loss.missing_heads.len(),
            loss.why
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("writing the report")?);
    }
    if report.passed() {
        if temporary {
            let _ = std::fs::remove_dir_all(&data_dir);
            let _ = std::fs::remove_file(&log_path);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("hamlet-soak: acknowledged changes were lost; data folder {} kept", data_dir.display());
        Ok(ExitCode::FAILURE)
    }
}
