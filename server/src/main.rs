//! `hamlet-server`: the district server's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::app::Relay;
use hamlet_server::app::Server;
use hamlet_server::config::{DatabaseConfig, RelayConfig, RelayEnrollConfig, ServeConfig};
use hamlet_server::demo;
use hamlet_server::district::keys::{self, Kek};
use hamlet_server::store::Store;
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
    /// Run a commune-office relay: the same sync for the office's phones, forwarded to the
    /// district whenever the uplink is up. Enroll it once first (`relay enroll`).
    #[command(args_conflicts_with_subcommands = true)]
    Relay {
        /// `enroll`, or nothing to run the relay.
        #[command(subcommand)]
        action: Option<RelayAction>,
        /// How the relay runs.
        #[command(flatten)]
        config: RelayConfig,
    },
    /// Manage staff accounts.
    Admin {
        /// What to do.
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Rebuild every district table (responses, answers, tallies, conflicts, flags, results'
    /// aggregates) from the stored documents. Run it with the server stopped.
    Reproject {
        /// The database.
        #[command(flatten)]
        database: DatabaseConfig,
        /// The key-encryption key file, to open sealed campaigns' answers.
        #[arg(long, env = "HAMLET_CAMPAIGN_KEK")]
        campaign_kek: Option<std::path::PathBuf>,
    },
    /// Campaign keys (sealed answers): a new key-encryption key, a campaign key's backup, its
    /// restore on a fresh server. Losing a campaign's key loses its answers: back it up.
    CampaignKey {
        /// What to do.
        #[command(subcommand)]
        action: KeyAction,
    },
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

#[derive(Subcommand, Debug)]
enum KeyAction {
    /// Print a new random key-encryption key (64 hex digits) for a --campaign-kek file.
    NewKek,
    /// Print a backup of a campaign's private key, wrapped under HAMLET_BACKUP_PASSPHRASE.
    Export {
        /// The campaign.
        campaign: String,
        /// The key-encryption key file.
        #[arg(long, env = "HAMLET_CAMPAIGN_KEK")]
        campaign_kek: std::path::PathBuf,
        /// The backup's passphrase (at least 12 characters).
        #[arg(long, env = "HAMLET_BACKUP_PASSPHRASE", hide_env_values = true)]
        passphrase: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Restore a campaign key's backup into this server, under its key-encryption key.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        /// The key-encryption key file.
        #[arg(long, env = "HAMLET_CAMPAIGN_KEK")]
        campaign_kek: std::path::PathBuf,
        /// The backup's passphrase.
        #[arg(long, env = "HAMLET_BACKUP_PASSPHRASE", hide_env_values = true)]
        passphrase: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseConfig,
    },
}

#[derive(Subcommand, Debug)]
enum RelayAction {
    /// Enroll this relay at the district with a relay enrollment code (once).
    Enroll(RelayEnrollConfig),
}

#[derive(Subcommand, Debug)]
enum AdminAction {
    /// Create a staff account and print its one-time password (to change at first sign-in).
    Create {
        /// Sign-in name.
        name: String,
        /// `admin` (manages campaigns, units, people, devices) or `viewer` (reads and exports).
        #[arg(long, default_value = "admin")]
        role: String,
        /// Name shown; defaults to the sign-in name.
        #[arg(long)]
        display_name: Option<String>,
        /// The database.
        #[command(flatten)]
        database: DatabaseConfig,
    },
    /// Give a staff account a new one-time password (to change at the next sign-in) and end
    /// its sessions: for an administrator who forgot theirs. Run it on the server.
    ResetPassword {
        /// Sign-in name.
        name: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseConfig,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
            let scheme = if server.certificate_fingerprint().is_some() { "https" } else { "http" };
            println!("Hamlet server listening on {scheme}://{}", listener.local_addr()?);
            if let Some(pin) = server.certificate_fingerprint() {
                println!("TLS certificate SHA-256 fingerprint: {}", pin.colon_hex());
            }
            server.run(listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::Relay { action: Some(RelayAction::Enroll(config)), .. } => {
            let identity = hamlet_server::app::enroll_relay(&config).await.context("enrolling the relay")?;
            println!(
                "Relay enrolled at {} as {} (device {}).",
                identity.upstream, identity.person_id, identity.device_id
            );
            Ok(())
        }
        Command::Relay { action: None, config } => {
            let listen = config.listen;
            let relay = Relay::open(config).await.context("opening the relay")?;
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
            let scheme = if relay.certificate_fingerprint().is_some() { "https" } else { "http" };
            println!("Hamlet relay listening on {scheme}://{}", listener.local_addr()?);
            println!("Forwarding to {}", relay.upstream());
            if let Some(pin) = relay.certificate_fingerprint() {
                println!("TLS certificate SHA-256 fingerprint: {}", pin.colon_hex());
            }
            relay.run(listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::Admin { action } => admin(action).await,
        Command::Reproject { database, campaign_kek } => {
            let kek = match campaign_kek {
                Some(path) => Some(Kek::read(&path).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let ledgers =
                hamlet_server::district::reproject_all_with(&database.url(), kek).await.context("reprojecting")?;
            let store = Store::open(&database.url()).await.context("opening the database")?;
            let detail = format!("rebuilt the district tables from {ledgers} ledgers");
            hamlet_server::audit::record(&store, "command-line", "reproject", "district", &detail).await?;
            store.close().await;
            println!("Rebuilt the district tables from {ledgers} ledgers");
            Ok(())
        }
        Command::Demo { phones, responses } => print_demo(phones, responses),
        Command::CampaignKey { action } => campaign_key(action).await,
    }
}

async fn campaign_key(action: KeyAction) -> anyhow::Result<()> {
    match action {
        KeyAction::NewKek => println!("{}", Kek::generate_hex().map_err(anyhow::Error::msg)?),
        KeyAction::Export { campaign, campaign_kek, passphrase, database } => {
            let kek = Kek::read(&campaign_kek).map_err(anyhow::Error::msg)?;
            let store = Store::open(&database.url()).await.context("opening the database")?;
            let campaign = campaign.parse().context("campaign id")?;
            let backup =
                keys::export(&store, &kek, &campaign, &passphrase).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            hamlet_server::audit::record(&store, "command-line", "campaign.key_export", campaign.as_str(), "").await?;
            store.close().await;
            print!("{backup}");
            eprintln!("Keep this backup and its passphrase apart: with both, the campaign's answers can be read.");
        }
        KeyAction::Restore { file, campaign_kek, passphrase, database } => {
            let kek = Kek::read(&campaign_kek).map_err(anyhow::Error::msg)?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            if database.database_url.is_none() {
                std::fs::create_dir_all(&database.data_dir).context("creating the data folder")?;
            }
            let store = Store::open(&database.url()).await.context("opening the database")?;
            let (campaign, public) =
                keys::restore(&store, &kek, &text, &passphrase).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            hamlet_server::audit::record(&store, "command-line", "campaign.key_restore", campaign.as_str(), "").await?;
            store.close().await;
            println!(
                "Restored the key of campaign {campaign} (public key {public}). Run `hamlet-server reproject` next."
            );
        }
    }
    Ok(())
}

async fn admin(action: AdminAction) -> anyhow::Result<()> {
    match action {
        AdminAction::Create { name, role, display_name, database } => {
            if database.database_url.is_none() {
                std::fs::create_dir_all(&database.data_dir).context("creating the data folder")?;
            }
            let store = Store::open(&database.url()).await.context("opening the database")?;
            let accounts = Accounts::new(store.clone(), std::time::Duration::from_secs(3600));
            let role = Role::parse(&role).filter(|r| r.is_staff()).context("--role must be admin or viewer")?;
            let password = accounts
                .create_person(&name, display_name.as_deref().unwrap_or(&name), role)
                .await?
                .context("staff accounts get a password")?;
            accounts.audit("command-line", "person.create", &name, role.as_str()).await?;
            println!("Created {} account {name}.", role.as_str());
            println!("One-time password: {password}");
            println!("It must be changed at the first sign-in.");
            store.close().await;
        }
        AdminAction::ResetPassword { name, database } => {
            let store = Store::open(&database.url()).await.context("opening the database")?;
            let reset = reset_password(&store, &name).await;
            store.close().await;
            let (password, sessions) = reset?;
            println!("New one-time password for {name}; {sessions} session(s) ended.");
            println!("One-time password: {password}");
            println!("It must be changed at the next sign-in.");
        }
    }
    Ok(())
}

/// A new one-time password for staff account `name`, its sessions ended, audited: (password,
/// sessions ended).
async fn reset_password(store: &Store, name: &str) -> anyhow::Result<(String, u64)> {
    let accounts = Accounts::new(store.clone(), std::time::Duration::from_secs(3600));
    let person = accounts.person(name).await?.with_context(|| format!("there is no account {name:?}"))?;
    anyhow::ensure!(
        person.role.is_staff(),
        "{name} is a {}: only staff accounts sign in with a password (a collector's phone enrolls with a code)",
        person.role.as_str()
    );
    let password = hamlet_server::accounts::secret::random_password()?;
    accounts.set_password(name, &password, true).await?;
    let sessions = accounts.end_sessions(name, None).await?;
    accounts.audit("command-line", "person.reset-password", name, &format!("{sessions} sessions ended")).await?;
    Ok((password, sessions))
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
