//! The server built from its layers: opens the store, wires store → accounts → sync hub →
//! district → web, serves until told to stop, and shuts down in order. The only place that
//! wires the layers together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use hamlet_sync_core::session::Identity;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::Accounts;
use crate::accounts::limiter::FailureLimiter;
use crate::config::{Limits, RelayConfig, RelayEnrollConfig, ServeConfig};
use crate::relay::uplink::{Nudge, Uplink};
use crate::relay::upstream::Upstream;
use crate::store::{Committer, Store, StoreError};
use crate::sync::hub::Hub;
use crate::sync::metrics::Metrics;
use crate::web::tls::{self, Certificates, TlsListener};
use crate::web::{AppState, auth};

pub use crate::web::router;
pub use crate::web::sync::DEVICE_TIME_HEADER;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened or prepared.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The socket failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration is refused.
    #[error("configuration: {0}")]
    Config(String),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// A server ready to run: its store is open and migrated.
#[derive(Debug)]
pub struct Server {
    store: Store,
    identity: Identity,
    config: ServeConfig,
    /// The certificate, when the server terminates TLS itself.
    tls: Option<Arc<Certificates>>,
    /// The key-encryption key of campaign keys, read from --campaign-kek.
    campaign_kek: Option<crate::district::keys::Kek>,
}

impl Server {
    /// Opens the database named by `config` and applies migrations.
    pub async fn open(config: ServeConfig) -> Result<Server, ServerError> {
        if config.demo && !config.demo_public && !config.listen.ip().is_loopback() {
            return Err(ServerError::Config(format!(
                "--demo creates accounts whose passwords are published: it is refused on {} unless --demo-public is given",
                config.listen
            )));
        }
        if config.insecure_open_sync {
            if !config.listen.ip().is_loopback() {
                return Err(ServerError::Config(format!(
                    "--insecure-open-sync lets anyone read and write every document: it is refused on {}, only on loopback",
                    config.listen
                )));
            }
            tracing::warn!(
                "INSECURE OPEN SYNC: any client may read and write any document; for tests and benchmarks only"
            );
        }
        let tls = match (&config.tls.tls_cert, &config.tls.tls_key) {
            (Some(cert), Some(key)) => Some(Certificates::load(cert.clone(), key.clone())?),
            _ => None,
        };
        if config.database.database_url.is_none() {
            std::fs::create_dir_all(&config.database.data_dir)?;
        }
        let campaign_kek = match &config.campaign_kek {
            Some(path) => Some(crate::district::keys::Kek::read(path).map_err(ServerError::Config)?),
            None => None,
        };
        let store = Store::open(&config.database_url()).await?;
        let storage_id = store.storage_id().await?;
        // A fresh peer id per process; the storage id is what stays.
        let identity = Identity { peer_id: format!("hamlet-server-{}", uuid::Uuid::new_v4().simple()), storage_id };
        Ok(Server { store, identity, config, tls, campaign_kek })
    }

    /// The SHA-256 fingerprint of the TLS certificate in use, when the server terminates TLS.
    pub fn certificate_fingerprint(&self) -> Option<hamlet_sync_core::enrollment::CertificatePin> {
        self.tls.as_ref().map(|c| c.fingerprint())
    }

    /// The store, for commands that work on the data directly.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, closes every
    /// socket with a close frame, finishes in-flight commits, and returns — within the
    /// configured shutdown time.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let limits: Limits = self.config.limits();
        let (committer, writer) = Committer::spawn(self.store.clone(), self.config.max_batch);
        let metrics = Arc::new(Metrics::default());
        let mut accounts =
            Accounts::new(self.store.clone(), Duration::from_secs(self.config.session_hours.max(1) * 3600));
        if self.config.max_concurrent_hashes > 0 {
            accounts = accounts.with_hasher(crate::accounts::Hasher::new(self.config.max_concurrent_hashes));
        }
        let settings = crate::district::Settings {
            silent_device_days: self.config.silent_device_days,
            campaign_kek: self.campaign_kek.clone(),
        };
        let projector = crate::district::new_projector(&self.store, settings);
        let hub = Hub::new(
            self.store.clone(),
            committer,
            self.identity,
            limits,
            metrics.clone(),
            accounts.clone(),
            projector.clone(),
        );
        let district = crate::district::start(hub.clone(), projector);
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let app_accounts = accounts.clone();
        let failure_window = Duration::from_secs(600);
        let security = auth::Security {
            trusted_proxies: crate::web::proxy::TrustedProxies::new(self.config.trusted_proxy.clone()),
            secure_cookies: self.config.cookies_secure(),
            public_url: self.config.public_url.clone(),
            metrics_token: self.config.metrics_token.clone(),
            metrics_elsewhere: self.config.metrics_listen.is_some(),
            enrollment_pin: tls::EnrollmentPin::new(self.config.tls.enrollment_pin, self.tls.clone()),
            ..auth::Security::new(failure_window)
        };
        let state = AppState {
            hub: hub.clone(),
            district: district.clone(),
            shutdown: stop.clone(),
            connections: connections.clone(),
            accounts,
            limiter: Arc::new(FailureLimiter::new(self.config.max_failures, failure_window)),
            security: Arc::new(security),
            enrollment_ttl: Duration::from_secs(self.config.enrollment_hours.max(1) * 3600),
            open_sync: self.config.insecure_open_sync,
        };
        let mut app = router(state.clone());
        if self.tls.is_some() {
            app = app.layer(axum::middleware::map_response(tls::hsts));
        }
        if let Some(metrics_addr) = self.config.metrics_listen {
            // Metrics on their own address only: the main one answers 404 for them.
            let metrics_app =
                Router::new().route("/metrics", get(crate::web::sync::guarded_metrics)).with_state(state.clone());
            let listener = TcpListener::bind(metrics_addr).await?;
            tracing::info!(address = ?listener.local_addr().ok(), "serving metrics");
            let stopped = stop.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, metrics_app).with_graceful_shutdown(stopped).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        let addr: Option<SocketAddr> = listener.local_addr().ok();
        tracing::info!(address = ?addr, backend = ?self.store.backend(), "serving");
        if self.config.demo {
            match app_accounts.ensure_demo_accounts().await {
                Ok(accounts) => {
                    for (name, password, role) in accounts {
                        println!("Demo sign-in ({}): {name} / {password}", role.as_str());
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot create the demo accounts"),
            }
            crate::demo::seed::seed_in_background(district.clone(), addr);
        }
        // The district handle and the state hold the hub, whose committer the writer waits for at
        // shutdown: only the router's copies may remain, and they go when serving ends.
        drop(district);
        drop(state);
        let stopping = async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        match self.tls.clone() {
            Some(certificates) => {
                let listener = TlsListener::new(listener, certificates, self.config.tls.reload_every())?;
                // `tap_io` only so that axum hands handlers the peer's address, as for TCP.
                axum::serve(listener.tap_io(|_| ()), app).with_graceful_shutdown(stopping).await?;
            }
            None => axum::serve(listener, app).with_graceful_shutdown(stopping).await?,
        }

        let deadline = Instant::now() + Duration::from_secs(self.config.shutdown_seconds);
        // Sockets close themselves on the stop signal (with a close frame); wait for them, then
        // for the documents' last commits, then for the writer.
        connections.close();
        if tokio::time::timeout_at(deadline.into(), connections.wait()).await.is_err() {
            tracing::warn!(open = connections.len(), "shutdown timed out with connections open");
        }
        hub.close_documents();
        drop(hub);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(remaining, writer).await.is_err() {
            tracing::warn!("shutdown timed out with writes in flight");
        }
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A commune relay ready to run (`hamlet-server relay`): its store is open and it is enrolled.
#[derive(Debug)]
pub struct Relay {
    store: Store,
    identity: Identity,
    enrolled: crate::relay::Identity,
    config: RelayConfig,
    tls: Option<Arc<Certificates>>,
}

impl Relay {
    /// Opens the relay's database in `config.data_dir`; refuses a relay not enrolled yet, or
    /// enrolled at another district than `--upstream`.
    pub async fn open(config: RelayConfig) -> Result<Relay, ServerError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let tls = match (&config.tls.tls_cert, &config.tls.tls_key) {
            (Some(cert), Some(key)) => Some(Certificates::load(cert.clone(), key.clone())?),
            _ => None,
        };
        let store = Store::open(&config.database_url()).await?;
        let relays = crate::relay::RelayStore::new(store.clone());
        let Some(enrolled) = relays.identity().await? else {
            store.close().await;
            return Err(ServerError::Config(crate::relay::RelayError::NotEnrolled.to_string()));
        };
        if let Some(given) = &config.upstream {
            let given = upstream_of(given, None)?;
            if given.base() != enrolled.upstream {
                store.close().await;
                let error = crate::relay::RelayError::OtherUpstream {
                    enrolled: enrolled.upstream,
                    given: given.base().to_owned(),
                };
                return Err(ServerError::Config(error.to_string()));
            }
        }
        let storage_id = store.storage_id().await?;
        let identity = Identity { peer_id: format!("hamlet-relay-{}", uuid::Uuid::new_v4().simple()), storage_id };
        Ok(Relay { store, identity, enrolled, config, tls })
    }

    /// The district this relay is enrolled at.
    pub fn upstream(&self) -> &str {
        &self.enrolled.upstream
    }

    /// The SHA-256 fingerprint of the TLS certificate in use, when the relay terminates TLS.
    pub fn certificate_fingerprint(&self) -> Option<hamlet_sync_core::enrollment::CertificatePin> {
        self.tls.as_ref().map(|c| c.fingerprint())
    }

    /// Serves the office's phones on `listener` and runs the uplink until `shutdown`.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let upstream = upstream_of(&self.enrolled.upstream, self.config.upstream_ca.as_deref())?;
        let (committer, writer) = Committer::spawn(self.store.clone(), 256);
        let metrics = Arc::new(Metrics::default());
        let accounts = Accounts::new(self.store.clone(), Duration::from_secs(3600));
        let nudge = Nudge::new();
        let hub = Hub::new(
            self.store.clone(),
            committer,
            self.identity,
            self.config.limits(),
            metrics,
            accounts.clone(),
            nudge.clone(),
        );
        // The relay keeps no district tables; its district handle only completes the state the
        // sync endpoint shares with the district server.
        // Nor any campaign key: what the relay carries stays sealed.
        let projector = crate::district::new_projector(&self.store, crate::district::Settings::default());
        let district = crate::district::start(hub.clone(), projector);
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let failure_window = Duration::from_secs(600);
        let security = auth::Security {
            enrollment_pin: tls::EnrollmentPin::new(self.config.tls.enrollment_pin, self.tls.clone()),
            ..auth::Security::new(failure_window)
        };
        let state = AppState {
            hub: hub.clone(),
            district: district.clone(),
            shutdown: stop.clone(),
            connections: connections.clone(),
            accounts: accounts.clone(),
            limiter: Arc::new(FailureLimiter::new(10, failure_window)),
            security: Arc::new(security),
            enrollment_ttl: Duration::from_secs(3600),
            open_sync: false,
        };
        let link = Arc::new(crate::relay::Link { upstream: upstream.clone(), token: self.enrolled.token.clone() });
        let uplink = Uplink::new(
            hub.clone(),
            accounts,
            self.enrolled.clone(),
            upstream,
            nudge,
            Duration::from_secs(self.config.uplink_seconds.max(1)),
        );
        let uplink = tokio::spawn(uplink.run(stop.clone()));
        let mut app = crate::relay::router(state, link);
        if self.tls.is_some() {
            app = app.layer(axum::middleware::map_response(tls::hsts));
        }
        tracing::info!(address = ?listener.local_addr().ok(), upstream = %self.enrolled.upstream, "relay serving");
        drop(district);
        let stopping = async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        match self.tls.clone() {
            Some(certificates) => {
                let listener = TlsListener::new(listener, certificates, self.config.tls.reload_every())?;
                axum::serve(listener.tap_io(|_| ()), app).with_graceful_shutdown(stopping).await?;
            }
            None => axum::serve(listener, app).with_graceful_shutdown(stopping).await?,
        }
        let deadline = Instant::now() + Duration::from_secs(self.config.shutdown_seconds);
        connections.close();
        if tokio::time::timeout_at(deadline.into(), connections.wait()).await.is_err() {
            tracing::warn!(open = connections.len(), "shutdown timed out with connections open");
        }
        let _ = tokio::time::timeout_at(deadline.into(), uplink).await;
        hub.close_documents();
        drop(hub);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(remaining, writer).await.is_err() {
            tracing::warn!("shutdown timed out with writes in flight");
        }
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `hamlet-server relay enroll`: enrolls the relay at the district once, keeping its token in
/// the relay's database. Returns the relay's person and device ids at the district.
pub async fn enroll_relay(config: &RelayEnrollConfig) -> Result<crate::relay::Identity, ServerError> {
    let upstream = upstream_of(&config.upstream, config.upstream_ca.as_deref())?;
    std::fs::create_dir_all(&config.data_dir)?;
    let store = Store::open(&config.database_url()).await?;
    let result = crate::relay::enroll(&store, &upstream, &config.code, &config.name).await;
    store.close().await;
    result.map_err(|e| ServerError::Config(e.to_string()))
}

/// The district at `text`, believing the authorities in the file `ca` too.
fn upstream_of(text: &str, ca: Option<&std::path::Path>) -> Result<Upstream, ServerError> {
    let upstream = Upstream::parse(text).map_err(|e| ServerError::Config(e.to_string()))?;
    match ca {
        None => Ok(upstream),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| ServerError::Config(format!("reading --upstream-ca {}: {e}", path.display())))?;
            upstream.with_authorities(&pem).map_err(|e| ServerError::Config(e.to_string()))
        }
    }
}
