//! The dashboard: server-rendered pages, Vietnamese by default, English on request, no
//! JavaScript. Viewer pages: campaigns, a campaign's progress, results (with charts), a
//! subject's results by unit, a hamlet, comments, conflicts and flags to review, devices.
//! Admin pages: campaigns, units and subjects management, and the audit log.
//!
//! One file per tab. Each page is two parts: a handler that reads the district layer into a
//! view (plain data), and a `render_*` function from the view to markup, which the snapshot
//! tests call with fixture data. This file holds the routes, the handlers' context, the error
//! page and the small helpers every tab uses.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hamlet_sync_core::{Campaign, CampaignState, Day, Label, Threshold, UnitTree, fixtures};
use maud::{Markup, html};
use serde::Deserialize;

mod audit_log;
mod campaign_list;
mod comments;
mod device_pages;
mod hamlet;
mod manage;
mod overview;
mod result_pages;
mod review_pages;
mod unit_pages;

pub use audit_log::*;
pub use campaign_list::*;
pub use comments::*;
pub use device_pages::*;
pub use hamlet::*;
pub use manage::*;
pub use overview::*;
pub use result_pages::*;
pub use review_pages::*;
pub use unit_pages::*;

use super::components::{
    ChartRow, Column, Span, bar, col, data_table, error_box, error_lines, legend, notice, num, paged, pager, post_form,
    stacked_chart,
};
use super::layout::{Chrome, Menu, Page, Section, Tab, layout};
use super::{RequestChrome, href};
use crate::audit::{self, Actor, AuditEntry};
use crate::district::catalog::CampaignSummary;
use crate::district::progress::{self, HamletProgress, Progress};
use crate::district::results::{self, Depth, OVERALL, Results, SubjectResult};
use crate::district::review::{self, Comments, ReviewItem};
use crate::district::{District, DistrictError, campaigns, fold_search};
use crate::web::AppState;
use crate::web::api::district as api;
use crate::web::error::district_status;
use hamlet_sync_core::texts::{Lang, Texts};

/// Comments per page.
const COMMENTS_PAGE: i64 = 50;
/// Conflicts and flags per page.
const REVIEW_PAGE: usize = 40;
/// Devices or units per page.
const TABLE_PAGE: usize = 200;

/// The highest page number asked for before answering 400 (so that no offset overflows).
const MAX_PAGE: usize = 1_000_000;

/// The page number asked for (from 1; none or empty is 1); anything else is a 400.
fn page_number(page: Option<&str>) -> Result<usize, DistrictError> {
    match page {
        None | Some("") => Ok(1),
        Some(p) => p.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            DistrictError::bad("invalid_parameter", format!("page {p:?} is not a number from 1 to {MAX_PAGE}"))
        }),
    }
}

/// Hamlets listed under "needs attention" at most.
const ATTENTION: usize = 20;

/// The viewer pages.
pub fn viewer_pages() -> Router<AppState> {
    Router::new()
        .route("/", get(campaigns_page))
        .route("/campaigns/{campaign}", get(overview_page))
        .route("/campaigns/{campaign}/results", get(results_page))
        .route("/campaigns/{campaign}/results/{subject}", get(subject_page))
        .route("/campaigns/{campaign}/hamlets/{hamlet}", get(hamlet_page))
        .route("/campaigns/{campaign}/comments", get(comments_page))
        .route("/campaigns/{campaign}/review", get(review_page).post(review_post))
        .route("/campaigns/{campaign}/devices", get(devices_page))
}

/// The admin pages.
pub fn admin_pages() -> Router<AppState> {
    Router::new()
        .route("/admin/audit", get(audit_page))
        .route("/admin/campaigns", get(manage_page).post(create_post))
        .route("/admin/campaigns/{campaign}", get(campaign_admin_page).post(edit_post))
        .route("/admin/campaigns/{campaign}/subjects", post(subjects_post))
        .route("/admin/campaigns/{campaign}/hamlets", post(hamlets_post))
        .route("/admin/campaigns/{campaign}/state", post(state_post))
        .route("/admin/units", get(units_page).post(units_post))
}

/// What every page handler needs.
#[derive(Debug)]
pub struct PageCtx {
    district: District,
    actor: Actor,
    request: RequestChrome,
}

impl FromRequestParts<AppState> for PageCtx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(request) = RequestChrome::from_request_parts(parts, state).await;
        let district = match District::from_request_parts(parts, state).await {
            Ok(district) => district,
            Err(e) => return Err(error_page(&request.chrome, &e)),
        };
        let actor = parts.extensions.get::<Actor>().cloned().unwrap_or_else(Actor::anonymous);
        Ok(PageCtx { district, actor, request })
    }
}

impl PageCtx {
    fn chrome(&self) -> &Chrome {
        &self.request.chrome
    }

    fn respond(&self, page: Result<Markup, DistrictError>) -> Response {
        match page {
            Ok(page) => self.request.html(StatusCode::OK, page),
            Err(e) => error_page(self.chrome(), &e),
        }
    }
}

/// An error as a page (a 5xx says only that something failed; its cause is logged).
fn error_page(chrome: &Chrome, error: &DistrictError) -> Response {
    error.log();
    let status = district_status(error);
    let (_, message) = error.code_and_message();
    let t = chrome.t();
    let title = if status == StatusCode::NOT_FOUND { t.not_found } else { t.error };
    let shown = if status.is_server_error() { t.server_error.to_owned() } else { message };
    let body = html! {
        p.error role="alert" { (shown) }
        (error_lines(t, error))
        p { a href="/" { (t.back) } }
    };
    super::html_response(chrome.lang, false, status, layout(chrome, &Page::new(title, Section::Campaigns), body))
}

fn state_label(t: &Texts, state: &str) -> &'static str {
    match state {
        "draft" => t.state_draft,
        "open" => t.state_open,
        "closed" => t.state_closed,
        _ => t.state_published,
    }
}

fn state_code(state: CampaignState) -> &'static str {
    match state {
        CampaignState::Draft => "draft",
        CampaignState::Open => "open",
        CampaignState::Closed => "closed",
        CampaignState::Published => "published",
    }
}

fn level_label(t: &Texts, level: &str) -> &'static str {
    match level {
        "campaign" => t.level_campaign,
        "province" => t.level_province,
        "district" => t.level_district,
        "commune" => t.level_commune,
        _ => t.level_hamlet,
    }
}

fn pct(lang: Lang, p: Option<f64>) -> String {
    p.map_or_else(|| "—".to_owned(), |p| lang.percent(p))
}

fn schedule(lang: Lang, c: &Campaign) -> String {
    format!("{} – {}", lang.day(c.schedule.opens_on), lang.day(c.schedule.closes_on))
}

/// A campaign's page frame: its tab and name.
fn campaign_frame(chrome: &Chrome, campaign: &Campaign, title: impl Into<String>, tab: Tab) -> Page {
    Page::campaign(title, tab, campaign.id.as_str(), campaign.name.get(chrome.lang.code()))
}

/// `?commune=`: the commune whose hamlets are unfolded.
#[derive(Debug, Deserialize)]
struct CommuneQuery {
    commune: Option<String>,
}

/// `?page=` and `?done=` (a form just went through).
#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<String>,
    done: Option<String>,
}
