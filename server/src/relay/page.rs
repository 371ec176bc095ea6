//! The relay's status page (`GET /` on a relay), Vietnamese first: whether the uplink is up,
//! when it last reached the district, and what each hamlet still has to send. For the office's
//! staff on the local network; it shows ids, times and counts, nothing of a response.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::Uri;
use axum::response::{Html, IntoResponse, Response};
use hamlet_sync_core::client::unacknowledged;
use hamlet_sync_core::texts::Lang;
use hamlet_sync_core::{CampaignId, DocumentId, UnitId};
use maud::{Markup, html};

use super::{RelayError, RelayStore, UplinkStatus};
use crate::accounts::Accounts;
use crate::web::AppState;
use crate::web::pages::layout::{Chrome, Menu, Page, Section, layout};

/// What the page shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusView {
    /// The district's address, once enrolled.
    pub upstream: Option<String>,
    /// Where the uplink stands.
    pub uplink: UplinkStatus,
    /// One row per hamlet the relay serves.
    pub hamlets: Vec<HamletRow>,
    /// Now (unix ms), for "minutes ago".
    pub now: i64,
}

/// One hamlet of the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HamletRow {
    /// Campaign id.
    pub campaign: String,
    /// Hamlet id.
    pub hamlet: String,
    /// Changes held here that the district has not acknowledged; `None` when the relay holds
    /// nothing of the hamlet's ledger yet.
    pub pending: Option<usize>,
}

/// Reads what the page shows.
pub async fn gather(relays: &RelayStore, accounts: &Accounts) -> Result<StatusView, RelayError> {
    let now = relays.store().now_ms();
    let Some(identity) = relays.identity().await? else {
        return Ok(StatusView { now, ..StatusView::default() });
    };
    let mut hamlets = Vec::new();
    for (campaign, hamlet) in accounts.assignments(&identity.person_id).await? {
        let (Ok(c), Ok(h)) = (campaign.parse::<CampaignId>(), hamlet.parse::<UnitId>()) else { continue };
        let id = DocumentId::for_ledger(&c, &h);
        let doc = relays.document(&id).await?;
        let pending = if doc.get_heads().is_empty() {
            None
        } else {
            Some(unacknowledged(&doc, &relays.acknowledged(&id).await?).len())
        };
        hamlets.push(HamletRow { campaign, hamlet, pending });
    }
    Ok(StatusView { upstream: Some(identity.upstream), uplink: relays.status().await?, hamlets, now })
}

/// The page, in `lang`.
pub fn render(lang: Lang, path: &str, view: &StatusView) -> Markup {
    let t = lang.texts();
    let chrome = Chrome { lang, path: path.to_owned(), menu: Menu::None, csrf: String::new() };
    let page = Page::new(t.relay_title, Section::Account);
    let when = |ms: Option<i64>| match ms {
        Some(ms) => format!("{} ({})", lang.datetime(ms), lang.ago(ms, view.now)),
        None => t.relay_never.to_owned(),
    };
    let body = html! {
        p { (t.relay_intro) }
        @match &view.upstream {
            None => p.error { (t.relay_not_enrolled) },
            Some(upstream) => {
                h2 { (t.relay_uplink) }
                dl {
                    dt { (t.relay_district) } dd { code { (upstream) } }
                    dt { (t.relay_uplink) }
                    dd data-uplink=(if view.uplink.up() { "up" } else { "down" }) {
                        @if view.uplink.up() { (t.relay_up) } @else { (t.relay_down) }
                    }
                    dt { (t.relay_last_reached) } dd { (when(view.uplink.reached_at)) }
                    dt { (t.relay_last_tried) } dd { (when(view.uplink.tried_at)) }
                    @if let Some(error) = &view.uplink.last_error {
                        dt { (t.relay_last_error) } dd { (error) }
                    }
                }
                h2 { (t.relay_hamlets) }
                table {
                    thead { tr { th scope="col" { (t.nav_campaigns) } th scope="col" { (t.hamlet) } th.num scope="col" { (t.relay_pending) } } }
                    tbody {
                        @for row in &view.hamlets {
                            tr data-hamlet=(row.hamlet) {
                                td { (row.campaign) }
                                td { (row.hamlet) }
                                td.num data-pending=(row.pending.map_or(String::new(), |n| n.to_string())) {
                                    @match row.pending {
                                        None => (t.relay_nothing_yet),
                                        Some(0) => (t.relay_all_sent),
                                        Some(n) => (lang.int(n as u64)),
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&chrome, &page, body)
}

/// `GET /` on a relay.
pub(crate) async fn status_page(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let (lang, _) = crate::web::i18n::lang_of_request(uri.query(), &headers);
    let relays = RelayStore::new(state.store().clone());
    match gather(&relays, &state.accounts).await {
        Ok(view) => {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            Html(render(lang, path, &view).into_string()).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the relay's status");
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "the relay cannot read its status\n").into_response()
        }
    }
}
