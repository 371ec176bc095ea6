//! `hamlet-server`: the district server's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hamlet_server::app::Server;
use hamlet_server::config::ServeConfig;
use hamlet_server::demo;
use hamlet_sync_core::{Day, LevelSet, fixtures};

#[derive(Parser, Debug)]
#[command(name = "hamlet-server", version, about = "Hamlet's district sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sync server.
    Serve(ServeConfig),
    /// Simulate collectors recording offline on several phones, merge their ledgers, and print
    /// the results per cadre.
    Demo {
        /// Phones per hamlet.
        #[arg(long, env = "HAMLET_DEMO_PHONES", default_value_t = 3)]
        phones: u8,
        /// Responses recorded on each phone.
        #[arg(long, env = "HAMLET_DEMO_RESPONSES", default_value_t = 40)]
        responses: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(config) => {
            let listen = config.listen;
            let server = Server::open(config).await.context("opening the database")?;
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
            println!("Hamlet server listening on http://{}", listener.local_addr()?);
            server.run(listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::Demo { phones, responses } => print_demo(phones, responses),
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn print_demo(phones: u8, responses: usize) -> anyhow::Result<()> {
    let campaign = fixtures::open_campaign_with_subjects(5);
    let first_day = Day::from_ymd(2025, 6, 2).context("demo day")?;
    let ledgers = demo::demo_ledgers(&campaign, phones.max(1), responses, first_day)?;
    let counts = demo::rating_counts(&campaign, &ledgers)?;
    println!("{} — {} hamlets, {} phones each", campaign.name.vi, ledgers.len(), phones.max(1));
    for subject in &campaign.subjects {
        let line: Vec<String> = LevelSet::Confidence
            .levels()
            .iter()
            .map(|l| format!("{}: {}", l.label().vi, counts.get(&(subject.id.to_string(), *l)).unwrap_or(&0)))
            .collect();
        println!("  {} ({}): {}", subject.name, subject.position, line.join(", "));
    }
    Ok(())
}
