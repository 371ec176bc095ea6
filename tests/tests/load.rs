//! `hamlet-load`, the load generator whose figures docs/benchmarks.md reports, run against a
//! real server (in this process, on loopback, SQLite) on a small workload: every change it makes
//! is acknowledged, and the server holds every document it wrote. A smoke run of the benchmark
//! in CI, so the generator and its report keep working between the long runs.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use clap::{CommandFactory, FromArgMatches, Parser};
use hamlet_server::app::Server;
use hamlet_server::config::ServeConfig;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeConfig,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_gets_every_change_acknowledged_by_a_real_server() {
    let folder = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", folder.path().join("load.db").display());
    // Flags only: the environment's HAMLET_* variables do not reach the server.
    let command = Args::command().mut_args(|arg| arg.env(None::<&str>));
    let matches =
        command.try_get_matches_from(["hamlet-server", "--database-url", &url, "--insecure-open-sync"]).unwrap();
    let config = Args::from_arg_matches(&matches).unwrap().serve;
    let server = Server::open(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));

    let sync_url = format!("ws://{addr}/sync");
    let mut load = std::process::Command::new(env!("CARGO_BIN_EXE_hamlet-load"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HAMLET_") {
            load.env_remove(name);
        }
    }
    load.args([
        "--url",
        &sync_url,
        "--clients",
        "4",
        "--docs",
        "8",
        "--changes",
        "5",
        "--json",
        "--round-timeout",
        "20",
    ]);
    let output = tokio::task::spawn_blocking(move || load.output()).await.unwrap().expect("hamlet-load runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hamlet-load failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["clients_joined"], 4, "{report}");
    assert_eq!(report["expected_changes"], 40, "{report}");
    assert_eq!(report["acknowledged_changes"], 40, "{report}");
    assert_eq!(report["documents_failed"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["bytes_sent"].as_u64().unwrap() >= report["change_bytes"].as_u64().unwrap(), "{report}");

    let _ = stop.send(());
    running.await.unwrap().unwrap();
    // After a clean shutdown, as an operator would look.
    let store = hamlet_server::store::Store::open(&url).await.unwrap();
    let documents = store.documents().await.unwrap();
    assert_eq!(documents.len(), 8, "every document the generator wrote is stored: {documents:?}");
}
