//! The commune-office relay (`hamlet-server relay`): the same server, serving the same `/sync`
//! to the phones of its hamlets on the office network, whose own uplink to the district comes and
//! goes.
//!
//! - Custody: a phone's change is checked and stored here by the same hub and document actors as
//!   at the district, and acknowledged once stored; the phone's "at the relay ✓".
//! - The checks: the relay applies the district's rules with the district's own code, over the
//!   accounts the district feeds it ([`crate::accounts::feed`]): token hashes, actor ids,
//!   assignments, revocations, learned at every pass of the uplink and kept in the database.
//! - [`uplink`]: a client session over the relay's own device token, which carries every ledger
//!   of the relay's hamlets up (the district checks them again, as a relay's carrying) and the
//!   campaign documents and other phones' changes down (stored here through each document's
//!   actor, so the phones connected here hear them at once).
//! - [`upstream`]: the district's address, and the HTTP and WebSocket connections to it.
//! - [`page`]: the status page, Vietnamese first.
//!
//! The relay holds what the phones of its hamlets hold (the ledgers, the campaign documents) and
//! the hashes of their tokens; it holds no staff account, no district table, and nothing of
//! other hamlets.

pub mod page;
pub mod uplink;
pub mod upstream;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::{Automerge, ChangeHash};
use hamlet_sync_core::session::{decode_heads, encode_heads};

use crate::accounts::AccountError;
use crate::store::{Store, StoreError, on_pool, query_failed};
use crate::web::AppState;
use upstream::{Upstream, UpstreamError};

/// Why a relay command failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay's database.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The accounts the district fed.
    #[error("accounts: {0}")]
    Accounts(#[from] AccountError),
    /// The district.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// The relay is not enrolled yet.
    #[error("this relay is not enrolled: run `hamlet-server relay enroll --upstream URL --code CODE` first")]
    NotEnrolled,
    /// The code enrolled a device for someone who is not a relay.
    #[error(
        "this code is for {person}, who is not a relay at the district; ask the district to revoke device {device} and issue a code for a relay"
    )]
    NotARelay {
        /// Whose code it was.
        person: String,
        /// The device the code enrolled.
        device: String,
    },
    /// The relay is enrolled at another district.
    #[error("this relay is enrolled at {enrolled}, not {given}: use a new --data-dir to enroll elsewhere")]
    OtherUpstream {
        /// Where it is enrolled.
        enrolled: String,
        /// Where it was asked to go.
        given: String,
    },
}

/// Who the relay is at the district.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The district's base URL.
    pub upstream: String,
    /// The relay's device id there.
    pub device_id: String,
    /// The relay's person id there.
    pub person_id: String,
    /// The device token the uplink presents.
    pub token: String,
}

/// Where the uplink stands, for the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkStatus {
    /// When a pass last completed (unix ms).
    pub reached_at: Option<i64>,
    /// When a pass was last tried (unix ms).
    pub tried_at: Option<i64>,
    /// Why the last try failed, if it did.
    pub last_error: Option<String>,
}

impl UplinkStatus {
    /// Whether the last try reached the district.
    pub fn up(&self) -> bool {
        self.reached_at.is_some() && self.reached_at == self.tried_at
    }
}

/// The relay's own rows in its database.
#[derive(Clone, Debug)]
pub struct RelayStore {
    store: Store,
}

impl RelayStore {
    /// Over `store`.
    pub fn new(store: Store) -> RelayStore {
        RelayStore { store }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who the relay is, once enrolled.
    pub async fn identity(&self) -> Result<Option<Identity>, StoreError> {
        const SQL: &str = "SELECT upstream, device_id, person_id, token FROM relay_identity WHERE id = 1";
        let row: Option<(String, String, String, String)> =
            on_pool!(self.store, pool => sqlx::query_as(SQL).fetch_optional(pool).await)
                .map_err(query_failed("reading the relay's identity"))?;
        Ok(row.map(|(upstream, device_id, person_id, token)| Identity { upstream, device_id, person_id, token }))
    }

    async fn set_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO relay_identity (id, upstream, device_id, person_id, token, enrolled_at) \
                           VALUES (1, $1, $2, $3, $4, $5)";
        let now = self.store.now_ms();
        on_pool!(self.store, pool => sqlx::query(SQL).bind(&identity.upstream).bind(&identity.device_id)
            .bind(&identity.person_id).bind(&identity.token).bind(now).execute(pool).await.map(|_| ()))
        .map_err(query_failed("storing the relay's identity"))
    }

    /// Where the uplink stands.
    pub async fn status(&self) -> Result<UplinkStatus, StoreError> {
        const SQL: &str = "SELECT reached_at, tried_at, last_error FROM relay_identity WHERE id = 1";
        let row: Option<(Option<i64>, Option<i64>, Option<String>)> =
            on_pool!(self.store, pool => sqlx::query_as(SQL).fetch_optional(pool).await)
                .map_err(query_failed("reading the uplink's status"))?;
        Ok(row
            .map(|(reached_at, tried_at, last_error)| UplinkStatus { reached_at, tried_at, last_error })
            .unwrap_or_default())
    }

    /// Records a pass of the uplink: whether it reached the district, and what went wrong
    /// (why it did not reach it, or what the district refused when it did).
    pub async fn note_pass(&self, reached: bool, problem: Option<&str>) -> Result<(), StoreError> {
        let now = self.store.now_ms();
        let sql = if reached {
            "UPDATE relay_identity SET tried_at = $1, reached_at = $1, last_error = $2 WHERE id = 1"
        } else {
            "UPDATE relay_identity SET tried_at = $1, last_error = $2 WHERE id = 1"
        };
        let problem = problem.map(|e| e.chars().take(500).collect::<String>());
        on_pool!(self.store, pool => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(problem).execute(pool).await.map(|_| ()))
            .map_err(query_failed("recording the uplink's pass"))
    }

    /// The uplink's sync state for `document` with the district's storage `storage_id`, if any.
    pub async fn sync_state(&self, document: &DocumentId, storage_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const SQL: &str = "SELECT sync_state FROM relay_uplink WHERE document_id = $1 AND storage_id = $2";
        on_pool!(self.store, pool => sqlx::query_scalar(SQL).bind(document.to_string()).bind(storage_id).fetch_optional(pool).await)
            .map_err(query_failed("reading the uplink's sync state"))
    }

    /// Keeps the uplink's sync state and the heads the district acknowledged for `document`.
    pub async fn set_sync_state(
        &self,
        document: &DocumentId,
        storage_id: &str,
        state: &[u8],
        acknowledged: &[ChangeHash],
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO relay_uplink (document_id, storage_id, sync_state, acknowledged, updated_at) \
                           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (document_id) DO UPDATE SET \
                           storage_id = excluded.storage_id, sync_state = excluded.sync_state, \
                           acknowledged = excluded.acknowledged, updated_at = excluded.updated_at";
        let heads: String = encode_heads(acknowledged).iter().map(|b| format!("{b:02x}")).collect();
        let now = self.store.now_ms();
        on_pool!(self.store, pool => sqlx::query(SQL).bind(document.to_string()).bind(storage_id).bind(state)
            .bind(heads).bind(now).execute(pool).await.map(|_| ()))
        .map_err(query_failed("storing the uplink's sync state"))
    }

    /// The heads of `document` the district holds durably, as it last said.
    pub async fn acknowledged(&self, document: &DocumentId) -> Result<Vec<ChangeHash>, StoreError> {
        const SQL: &str = "SELECT acknowledged FROM relay_uplink WHERE document_id = $1";
        let hex: Option<String> =
            on_pool!(self.store, pool => sqlx::query_scalar(SQL).bind(document.to_string()).fetch_optional(pool).await)
                .map_err(query_failed("reading what the district acknowledged"))?;
        let bytes: Option<Vec<u8>> =
            hex.and_then(|h| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect());
        Ok(bytes.and_then(|b| decode_heads(&b)).unwrap_or_default())
    }

    /// `document` as stored here (empty when the relay holds nothing of it). A chunk that does
    /// not load is skipped (logged): the document actor deals with damage when it loads.
    pub async fn document(&self, document: &DocumentId) -> Result<Automerge, StoreError> {
        let mut doc = Automerge::new();
        for chunk in self.store.load(&document.to_string()).await? {
            if let Err(e) = doc.load_incremental(&chunk.data) {
                tracing::warn!(document = %document, chunk = chunk.id, error = %e, "a stored chunk does not load");
            }
        }
        Ok(doc)
    }
}

/// The relay's routes: `/sync` for the phones of its hamlets (their district tokens, checked
/// against the fed accounts), the status page at `/`, and the probes. Nothing of the district's
/// staff side is served.
pub fn router(state: AppState, link: Arc<Link>) -> Router {
    // Enrollment goes to the district; failures are slowed per address here as there.
    let enroll = Router::new()
        .route("/api/enroll", post(enroll_through))
        .route_layer(from_fn_with_state(state.clone(), crate::web::auth::limit_failures_by_address))
        .layer(DefaultBodyLimit::max(MAX_ENROLL_BODY_BYTES));
    Router::new()
        .merge(enroll)
        .route("/", get(page::status_page))
        .route("/sync", get(crate::web::sync::endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(crate::web::sync::ready))
        .layer(from_fn_with_state(state.clone(), crate::web::auth::authenticate))
        .layer(Extension(link))
        .with_state(state)
}

/// The largest enrollment request the relay passes on.
const MAX_ENROLL_BODY_BYTES: usize = 64 * 1024;

/// The relay's way to the district, for the handlers that need it.
#[derive(Debug)]
pub struct Link {
    /// The district.
    pub upstream: Upstream,
    /// The relay's token there.
    pub token: String,
}

/// `POST /api/enroll` on a relay: a phone enrolls through the relay when its uplink is up. The
/// code is the district's to spend, so the request goes there as it came; on success the relay
/// reads the feed before it answers, so that the phone's first sync here is not refused for a
/// token the relay has not heard of yet. With the district out of reach, the phone hears so.
async fn enroll_through(
    State(state): State<AppState>,
    Extension(link): Extension<Arc<Link>>,
    body: axum::body::Bytes,
) -> Response {
    let unreachable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "a phone's enrollment could not reach the district");
        crate::web::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "district_unreachable",
            "enrolling a phone needs the district, which this relay cannot reach now; try again when its uplink is up",
        )
        .into_response()
    };
    let (status, answer) = match link.upstream.forward_enroll(body.to_vec()).await {
        Ok(answer) => answer,
        Err(e) => return unreachable(&e),
    };
    if status == 200 {
        let fed = match link.upstream.feed(&link.token).await {
            Ok(feed) => state.accounts.apply_feed(&feed).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = fed {
            // Enrolled at the district: the answer must reach the phone, which syncs here once
            // the next pass has brought its token.
            tracing::warn!(error = %e, "enrolled a phone but could not read the feed; the next pass will");
        }
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], answer).into_response()
}

/// `hamlet-server relay enroll`: exchanges a relay enrollment code for the relay's device token
/// at the district, and keeps it. Returns the identity.
pub async fn enroll(store: &Store, upstream: &Upstream, code: &str, name: &str) -> Result<Identity, RelayError> {
    let relays = RelayStore::new(store.clone());
    if let Some(identity) = relays.identity().await? {
        return Err(RelayError::OtherUpstream { enrolled: identity.upstream, given: upstream.base().to_owned() });
    }
    // The relay writes no change of its own; its actor id only fills the enrollment's form,
    // and is random so that it names no document.
    let actor = hamlet_sync_core::automerge::ActorId::random().to_hex_string();
    let enrolled = upstream.enroll(code, &actor, name).await?;
    // A collector's code would make this a collector's phone: only a relay reads the feed.
    if let Err(e) = upstream.feed(&enrolled.token).await {
        return Err(match e {
            UpstreamError::Refused { .. } => {
                RelayError::NotARelay { person: enrolled.collector, device: enrolled.device }
            }
            other => other.into(),
        });
    }
    let identity = Identity {
        upstream: upstream.base().to_owned(),
        device_id: enrolled.device,
        person_id: enrolled.collector,
        token: enrolled.token,
    };
    relays.set_identity(&identity).await?;
    Ok(identity)
}
