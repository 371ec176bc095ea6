//! `hamlet-server`: the district server's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { phones, responses } => {
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
    }
}
