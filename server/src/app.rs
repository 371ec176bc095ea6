//! The HTTP application: routes, and running the server until it is told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Router};
use hamlet_sync_core::session::Identity;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access::SyncAccess;
use crate::auth::Accounts;
use crate::auth::http::{self as auth, ApiError, Principal};
use crate::auth::limiter::FailureLimiter;
use crate::config::{Limits, ServeConfig};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{Committer, Store, StoreError};

/// Largest request body the HTTP API reads.
const MAX_BODY_BYTES: usize = 2 << 20;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub(crate) hub: Arc<Hub>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) accounts: Accounts,
    pub(crate) limiter: Arc<FailureLimiter>,
    pub(crate) security: Arc<auth::Security>,
    pub(crate) enrollment_ttl: Duration,
    pub(crate) open_sync: bool,
}

impl AppState {
    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.hub.store()
    }

    /// The accounts.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }
}

/// The routes. Public: `/sync` (WebSocket; a token, or `--insecure-open-sync`), `/healthz`,
/// `/readyz`, `/metrics` (unless moved to its own address or behind a token), `/login`,
/// `/api/enroll`, `/api/openapi.json` (it describes, holds no data). The rest require a role.
pub fn router(state: AppState) -> Router {
    let public = Router::new()
        .route("/sync", get(sync))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(|| async { axum::Json(crate::district::api::openapi()) }))
        .route("/login", get(auth::login_form))
        .route("/logout", post(auth::logout));
    // Guessing is slowed per address here, and per account inside the handlers.
    let limited = Router::new()
        .route("/login", post(auth::login))
        .route("/api/session", post(auth::api_session))
        .route("/api/enroll", post(auth::enroll))
        .route_layer(from_fn_with_state(state.clone(), auth::limit_failures_by_address));
    let signed_in = Router::new().route("/api/me", get(auth::me)).route_layer(from_fn(auth::require_signed_in));
    let staff = Router::new()
        .route("/password", get(auth::password_form).post(auth::change_password))
        .route_layer(from_fn(auth::require_staff));
    let devices = Router::new()
        .route("/api/device/actors", post(auth::add_actors))
        .route("/api/device/assignments", get(auth::device_assignments))
        .route("/api/device/token", post(auth::rotate_device_token))
        .route_layer(from_fn(auth::require_device));
    let admin = Router::new()
        .route("/api/people", get(auth::list_people).post(auth::create_person))
        .route("/api/people/{id}/assignments", put(auth::set_assignments))
        .route("/api/people/{id}/enrollment-codes", post(auth::create_code))
        .route("/api/people/{id}/sign-out-everywhere", post(auth::sign_out_everywhere_api))
        .route("/api/devices", get(auth::list_devices))
        .route("/api/devices/{id}/revoke", post(auth::revoke_device))
        .route("/api/tokens", post(auth::create_token))
        .route("/api/tokens/{id}", delete(auth::revoke_token))
        .route("/admin/people", get(auth::people_page).post(auth::create_person_form))
        .route("/admin/people/{id}/enroll", post(auth::enroll_page))
        .route("/admin/people/{id}/sign-out-everywhere", post(auth::sign_out_everywhere_form))
        .route("/admin/devices", get(auth::devices_page))
        .route("/admin/devices/{id}/revoke", post(auth::revoke_device_form))
        .route_layer(from_fn(auth::require_admin));
    Router::new()
        .merge(public)
        .merge(limited)
        .merge(signed_in)
        .merge(staff)
        .merge(devices)
        .merge(admin)
        // District pages and API: staff read, admins manage.
        .merge(crate::district::viewer_routes().route_layer(from_fn(auth::require_staff)))
        .merge(crate::district::admin_routes().route_layer(from_fn(auth::require_admin)))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The header in which a phone sends its clock (unix milliseconds) when it connects to sync.
pub const DEVICE_TIME_HEADER: &str = "hamlet-device-time";

/// `GET /sync`: the WebSocket, for a device token (`Authorization: Bearer` or `?token=`), or
/// anyone in `--insecure-open-sync` mode. Staff sessions are refused.
async fn sync(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    principal: Option<Extension<Principal>>,
) -> Response {
    let access = match principal.map(|p| p.0) {
        Some(Principal::Device { device, person }) => {
            match SyncAccess::for_device(&state.accounts, &device, &person).await {
                Ok(access) => {
                    if let Err(e) = state.accounts.touch_device(&device).await {
                        tracing::warn!(error = %e, "cannot record the device's sync time");
                    }
                    // The phone's clock, as it connects: a phone days off dates its responses
                    // wrongly, and the devices page says so.
                    let clock =
                        headers.get(DEVICE_TIME_HEADER).and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok());
                    if let Some(device_ms) = clock
                        && let Err(e) = state.accounts.note_device_clock(&device, device_ms).await
                    {
                        tracing::warn!(error = %e, "cannot record the device's clock");
                    }
                    access
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
        // Staff read results on the dashboard, where small groups are hidden and reads are
        // audited; raw ledgers through /sync would bypass both.
        Some(Principal::Staff { .. }) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "devices_only",
                "syncing is for enrolled devices; staff read results on the dashboard",
            )
            .into_response();
        }
        None if state.open_sync => SyncAccess::Open,
        None => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a device token is required to sync")
                .into_response();
        }
    };
    let limit = state.hub.limits().max_message_bytes;
    // The socket layer accepts twice the protocol limit, so that a message just over it is
    // answered with an `error` saying why rather than a bare disconnection.
    ws.max_message_size(limit.saturating_mul(2)).max_frame_size(limit.saturating_mul(2)).on_upgrade(move |socket| {
        crate::connection::serve(state.hub, socket, state.shutdown, Arc::new(access), state.accounts)
    })
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.hub.store().ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database not reachable\n").into_response()
        }
    }
}

/// `/metrics`: with `--metrics-token`, only for `Authorization: Bearer` that token; with
/// `--metrics-listen`, only on that address (the main router answers 404).
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if state.security.metrics_elsewhere {
        return StatusCode::NOT_FOUND.into_response();
    }
    guarded_metrics(State(state), headers).await
}

async fn guarded_metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.security.metrics_token {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        // Compared as hashes, so the time taken says nothing about the token.
        let hash = |t: &str| crate::auth::secret::hash_token(t.trim());
        if given.is_none_or(|g| hash(g) != hash(expected)) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "the metrics token is required")
                .into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.hub.metrics().render()).into_response()
}

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
}

/// A server ready to run: its store is open and migrated.
#[derive(Debug)]
pub struct Server {
    store: Store,
    identity: Identity,
    config: ServeConfig,
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
        if config.database.database_url.is_none() {
            std::fs::create_dir_all(&config.database.data_dir)?;
        }
        let store = Store::open(&config.database_url()).await?;
        let storage_id = store.storage_id().await?;
        // A fresh peer id per process; the storage id is what stays.
        let identity = Identity { peer_id: format!("hamlet-server-{}", uuid::Uuid::new_v4().simple()), storage_id };
        Ok(Server { store, identity, config })
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
            accounts = accounts.with_hasher(crate::auth::accounts::Hasher::new(self.config.max_concurrent_hashes));
        }
        let hub = Hub::new(self.store.clone(), committer, self.identity, limits, metrics.clone(), accounts.clone());
        let settings = crate::district::Settings { silent_device_days: self.config.silent_device_days };
        let district = crate::district::start(&hub, settings).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let app_accounts = accounts.clone();
        let failure_window = Duration::from_secs(600);
        let security = auth::Security {
            trusted_proxies: crate::auth::proxy::TrustedProxies::new(self.config.trusted_proxy.clone()),
            secure_cookies: self.config.cookies_secure(),
            public_url: self.config.public_url.clone(),
            metrics_token: self.config.metrics_token.clone(),
            metrics_elsewhere: self.config.metrics_listen.is_some(),
            ..auth::Security::new(failure_window)
        };
        let state = AppState {
            hub: hub.clone(),
            shutdown: stop_rx.clone(),
            accounts,
            limiter: Arc::new(FailureLimiter::new(self.config.max_failures, failure_window)),
            security: Arc::new(security),
            enrollment_ttl: Duration::from_secs(self.config.enrollment_hours.max(1) * 3600),
            open_sync: self.config.insecure_open_sync,
        };
        let app = router(state.clone());
        if let Some(metrics_addr) = self.config.metrics_listen {
            // Metrics on their own address only: the main one answers 404 for them.
            let metrics_app = Router::new().route("/metrics", get(guarded_metrics)).with_state(state);
            let listener = TcpListener::bind(metrics_addr).await?;
            tracing::info!(address = ?listener.local_addr().ok(), "serving metrics");
            let mut stop = stop_rx;
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
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
            crate::district::demo_seed::seed_in_background(district, addr);
        } else {
            // The district handle holds the hub; shutdown waits for the hub to go.
            drop(district);
        }
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down");
                let _ = stop_tx.send(true);
            })
            .await?;

        let deadline = Instant::now() + Duration::from_secs(self.config.shutdown_seconds);
        // Sockets close themselves on the stop signal; wait for them, then for the documents'
        // last commits, then for the writer.
        while metrics.connections_open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
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
