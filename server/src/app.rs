//! The HTTP application: routes, and running the server until it is told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hamlet_sync_core::session::Identity;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Limits, ServeConfig};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::{Committer, Store, StoreError};

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
}

/// The routes: `/sync` (WebSocket), `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sync", get(sync))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn sync(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let limit = state.hub.limits().max_message_bytes;
    // The socket layer accepts twice the protocol limit, so that a message just over it is
    // answered with an `error` saying why rather than a bare disconnection.
    ws.max_message_size(limit.saturating_mul(2))
        .max_frame_size(limit.saturating_mul(2))
        .on_upgrade(move |socket| crate::connection::serve(state.hub, socket, state.shutdown))
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

async fn metrics(State(state): State<AppState>) -> Response {
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
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir)?;
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
        let hub = Hub::new(self.store.clone(), committer, self.identity, limits, metrics.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = router(AppState { hub: hub.clone(), shutdown: stop_rx });
        let addr: Option<SocketAddr> = listener.local_addr().ok();
        tracing::info!(address = ?addr, backend = ?self.store.backend(), "serving");
        axum::serve(listener, app)
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
