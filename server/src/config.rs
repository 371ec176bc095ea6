//! The server's configuration: one struct, every field a flag with an environment variable.

pub use crate::sync::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Where the data lives; shared by every subcommand that opens the database.
#[derive(Args, Debug, Clone)]
pub struct DatabaseConfig {
    /// Folder for the embedded SQLite database, created if missing. Ignored with --database-url.
    #[arg(long, env = "HAMLET_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite:PATH` or `postgres://…`. Default: SQLite in DATA_DIR/hamlet.db.
    #[arg(long, env = "HAMLET_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseConfig {
    /// The database URL to open.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", self.data_dir.join("hamlet.db").display()),
        }
    }
}

/// How `hamlet-server serve` runs. Defaults run on a fresh machine.
#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "HAMLET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The database.
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// Largest protocol message accepted, in bytes.
    #[arg(long, env = "HAMLET_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Largest document accepted (bytes of its stored chunks).
    #[arg(long, env = "HAMLET_MAX_DOCUMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_document_bytes: usize,

    /// Seconds between WebSocket pings; a peer silent for two intervals is dropped.
    #[arg(long, env = "HAMLET_PING_SECONDS", default_value_t = 5)]
    pub ping_seconds: u64,

    /// Seconds to finish in-flight work at shutdown before exiting anyway.
    #[arg(long, env = "HAMLET_SHUTDOWN_SECONDS", default_value_t = 10)]
    pub shutdown_seconds: u64,

    /// Most writes grouped into one database transaction.
    #[arg(long, env = "HAMLET_MAX_BATCH", default_value_t = 256)]
    pub max_batch: usize,

    /// Chunks a document may accumulate before it is compacted into one snapshot.
    #[arg(long, env = "HAMLET_COMPACT_AFTER", default_value_t = 64)]
    pub compact_after: usize,

    /// DEVELOPMENT ONLY: let any client sync any document without a token. Refused unless
    /// listening on loopback; for protocol tests and benchmarks.
    #[arg(long, env = "HAMLET_INSECURE_OPEN_SYNC")]
    pub insecure_open_sync: bool,

    /// Mark the session cookie `Secure` (set when the server is reached over HTTPS, through a
    /// TLS-terminating proxy). On by itself when --public-url is `https://…`.
    #[arg(long, env = "HAMLET_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// The address people and phones reach the server at, say `https://hamlet.example.vn`
    /// (behind a TLS-terminating proxy). An `https://` URL turns on secure cookies; enrollment
    /// QR codes carry it so a phone learns where to sync.
    #[arg(long, env = "HAMLET_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are believed, as addresses
    /// or CIDR blocks (`10.0.0.0/8`), repeated or comma-separated. Nothing is believed by
    /// default: without this flag the client address is the socket's peer.
    #[arg(long, env = "HAMLET_TRUSTED_PROXY", value_delimiter = ',', value_parser = crate::web::proxy::parse_cidr)]
    pub trusted_proxy: Vec<crate::web::proxy::Cidr>,

    /// TLS terminated by the server itself (boxed: the subcommands' sizes stay close).
    #[command(flatten)]
    pub tls: Box<crate::web::tls::TlsConfig>,

    /// Require `Authorization: Bearer TOKEN` on `/metrics`.
    #[arg(long, env = "HAMLET_METRICS_TOKEN")]
    pub metrics_token: Option<String>,

    /// Serve `/metrics` only on this second address (say `127.0.0.1:9090`, for a local
    /// Prometheus), not on --listen.
    #[arg(long, env = "HAMLET_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Password hashes computed at once (argon2id, about 20 MiB of memory each); further
    /// sign-ins wait their turn. 0: one per CPU.
    #[arg(long, env = "HAMLET_MAX_CONCURRENT_HASHES", default_value_t = 0)]
    pub max_concurrent_hashes: usize,

    /// Hours a staff session lasts.
    #[arg(long, env = "HAMLET_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u64,

    /// Hours an enrollment code stays valid.
    #[arg(long, env = "HAMLET_ENROLLMENT_HOURS", default_value_t = 72)]
    pub enrollment_hours: u64,

    /// Sign-in or enrollment failures allowed per account and per address in ten minutes.
    #[arg(long, env = "HAMLET_MAX_FAILURES", default_value_t = 10)]
    pub max_failures: usize,

    /// Protocol messages a device may send per second (sustained; bursts up to ten times that).
    #[arg(long, env = "HAMLET_DEVICE_MESSAGES_PER_SECOND", default_value_t = 200)]
    pub device_messages_per_second: u32,

    /// The key-encryption key file (64 hex digits, `hamlet-server campaign-key new-kek`): with
    /// it, a version 2 campaign gets its own key when it opens and its answers are sealed on the
    /// phones; without it, campaigns open unsealed. Keep it outside the data folder and its
    /// backups (docs/deploy.md, "Campaign keys").
    #[arg(long, env = "HAMLET_CAMPAIGN_KEK")]
    pub campaign_kek: Option<PathBuf>,

    /// A collector's device that has not synced for more than this many days is shown as
    /// silent on the dashboard.
    #[arg(long, env = "HAMLET_SILENT_DEVICE_DAYS", default_value_t = 3)]
    pub silent_device_days: u32,

    /// Seed a demo district (once: skipped when already seeded) so the dashboard shows a living
    /// campaign at once. The demo accounts' passwords are published, so this is refused on an
    /// address other than loopback unless --demo-public is given too.
    #[arg(long, env = "HAMLET_DEMO")]
    pub demo: bool,

    /// Allow --demo on an address other than loopback (a public demonstration: anyone may sign
    /// in with the published demo passwords).
    #[arg(long, env = "HAMLET_DEMO_PUBLIC")]
    pub demo_public: bool,
}

fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(format!("{text:?} is not a URL of this server (no query, no fragment)"));
    }
    Ok(url.to_owned())
}

impl ServeConfig {
    /// Whether the session cookie is marked `Secure`: asked for, or implied by built-in TLS or
    /// an `https://` public URL.
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies
            || self.tls.enabled()
            || self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }

    /// The database URL to open.
    pub fn database_url(&self) -> String {
        self.database.url()
    }

    /// The ping interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_seconds.max(1))
    }

    /// The limits the sync endpoint enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            max_document_bytes: self.max_document_bytes,
            ping_interval: self.ping_interval(),
            compact_after: self.compact_after.max(2),
            device_messages_per_second: self.device_messages_per_second.max(1),
            ..Limits::default()
        }
    }
}

/// How `hamlet-server relay` runs: a commune-office relay, with SQLite in `--data-dir`.
#[derive(Args, Debug, Clone)]
pub struct RelayConfig {
    /// Address the office's phones reach the relay at (`0.0.0.0:8080` for the office network).
    #[arg(long, env = "HAMLET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The district server: its base URL (`https://district.example`) or its sync URL
    /// (`ws://…/sync`). Optional once enrolled; if given, it must be the one enrolled at.
    #[arg(long, env = "HAMLET_UPSTREAM")]
    pub upstream: Option<String>,

    /// Certificate authorities (PEM) believed for an `https://` district besides the public
    /// ones compiled in: a district's own authority.
    #[arg(long, env = "HAMLET_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// Folder for the relay's SQLite database, created if missing.
    #[arg(long, env = "HAMLET_DATA_DIR", default_value = "./relay-data")]
    pub data_dir: PathBuf,

    /// Seconds between passes of the uplink when no phone brings anything (a phone's changes
    /// start a pass at once; a failed pass is retried sooner, with back-off).
    #[arg(long, env = "HAMLET_UPLINK_SECONDS", default_value_t = 30)]
    pub uplink_seconds: u64,

    /// Largest protocol message accepted, in bytes (from phones and from the district).
    #[arg(long, env = "HAMLET_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Largest document accepted (bytes of its stored chunks).
    #[arg(long, env = "HAMLET_MAX_DOCUMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_document_bytes: usize,

    /// Seconds between WebSocket pings; a phone silent for two intervals is dropped.
    #[arg(long, env = "HAMLET_PING_SECONDS", default_value_t = 5)]
    pub ping_seconds: u64,

    /// Seconds to finish in-flight work at shutdown before exiting anyway.
    #[arg(long, env = "HAMLET_SHUTDOWN_SECONDS", default_value_t = 10)]
    pub shutdown_seconds: u64,

    /// TLS for the office's phones, terminated by the relay itself.
    #[command(flatten)]
    pub tls: Box<crate::web::tls::TlsConfig>,
}

impl RelayConfig {
    /// The database URL to open.
    pub fn database_url(&self) -> String {
        format!("sqlite:{}", self.data_dir.join("hamlet-relay.db").display())
    }

    /// The limits the relay's sync endpoint enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            max_document_bytes: self.max_document_bytes,
            ping_interval: Duration::from_secs(self.ping_seconds.max(1)),
            ..Limits::default()
        }
    }
}

/// How `hamlet-server relay enroll` runs.
#[derive(Args, Debug, Clone)]
pub struct RelayEnrollConfig {
    /// The district server: its base URL or its sync URL.
    #[arg(long, env = "HAMLET_UPSTREAM")]
    pub upstream: String,

    /// Certificate authorities (PEM) believed for an `https://` district besides the public
    /// ones compiled in: a district's own authority.
    #[arg(long, env = "HAMLET_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// The relay enrollment code issued at the district (for a person with the relay role).
    #[arg(long, env = "HAMLET_ENROLLMENT_CODE")]
    pub code: String,

    /// Folder for the relay's SQLite database, created if missing.
    #[arg(long, env = "HAMLET_DATA_DIR", default_value = "./relay-data")]
    pub data_dir: PathBuf,

    /// The name the district shows for this relay's device.
    #[arg(long, env = "HAMLET_RELAY_NAME", default_value = "commune relay")]
    pub name: String,
}

impl RelayEnrollConfig {
    /// The database URL to open.
    pub fn database_url(&self) -> String {
        format!("sqlite:{}", self.data_dir.join("hamlet-relay.db").display())
    }
}
