//! The dashboard: server-rendered pages, Vietnamese by default, English on request, no
//! JavaScript. Viewer pages: campaigns, a campaign's progress, results (with charts), a
//! subject's results by unit, a hamlet, comments, conflicts and flags to review, devices.
//! Admin pages: campaigns, units and subjects management, and the audit log.
//!
//! Each page is two parts: a handler that reads the district layer into a view (plain data),
//! and a `render_*` function from the view to markup, which the snapshot tests call with
//! fixture data.

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
use crate::web::i18n::{Lang, Texts};

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

// ---------------------------------------------------------------- campaigns

/// A campaign in the list, with its schedule as shown (empty if it could not be read).
#[derive(Debug, Clone)]
pub struct CampaignListItem {
    /// The campaign.
    pub summary: CampaignSummary,
    /// Its schedule, in words.
    pub schedule: String,
}

/// `/`: the campaigns.
pub fn render_campaigns(chrome: &Chrome, list: &[CampaignListItem]) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let body = html! {
        @if list.is_empty() {
            p { (t.no_campaigns) }
        } @else {
            (data_table(Some(t.campaigns_title), &[col(t.name), col(t.state), col(t.schedule), col(t.updated)], html! {
                @for item in list {
                    @let c = &item.summary;
                    @let name = if lang == Lang::En && !c.name_en.is_empty() { &c.name_en } else { &c.name_vi };
                    tr {
                        td { a href={ "/campaigns/" (href(&c.id)) } { (name) } }
                        td { (state_label(t, &c.state)) }
                        td { (item.schedule) }
                        td { (lang.datetime(c.updated_at)) }
                    }
                }
            }))
        }
    };
    layout(chrome, &Page::new(t.campaigns_title, Section::Campaigns), body)
}

async fn campaigns_page(ctx: PageCtx) -> Response {
    let page = async {
        let mut list = Vec::new();
        for summary in ctx.district.catalog().campaigns().await? {
            let schedule = match ctx.district.catalog().require(&summary.id).await {
                Ok(full) => schedule(ctx.chrome().lang, &full),
                Err(_) => String::new(),
            };
            list.push(CampaignListItem { summary, schedule });
        }
        Ok(render_campaigns(ctx.chrome(), &list))
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- overview

#[derive(Debug, Deserialize)]
struct CommuneQuery {
    commune: Option<String>,
}

fn hamlet_rows(
    chrome: &Chrome,
    campaign: &Campaign,
    hamlets: &[&HamletProgress],
    now: i64,
    with_commune: bool,
) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let columns = [
        col(t.hamlet),
        num(t.expected),
        num(t.recorded),
        num(t.submitted),
        num(t.voided),
        num(t.tallies),
        col(t.participation),
        col(t.last_sync),
        num(t.to_review),
    ];
    let rows = html! {
        @for h in hamlets {
            @let c = &h.counts;
            tr {
                td {
                    a href={ "/campaigns/" (href(campaign.id.as_str())) "/hamlets/" (href(&h.id)) } {
                        (h.name)
                        @if with_commune { span.muted { ", " (h.commune_name) } }
                        @if h.nothing_yet { " " span.badge.x { (t.nothing_yet) } }
                    }
                }
                td.n { (lang.int(c.expected_voters)) }
                td.n { (lang.int(c.recorded)) }
                td.n { (lang.int(c.submitted)) }
                td.n { (lang.int(c.voided)) }
                td.n { (lang.int(c.tallies)) }
                td { (bar(c.participation_percent, &lang.percent(c.participation_percent))) " " (lang.percent(c.participation_percent)) }
                td {
                    @match h.last_sync_at {
                        Some(at) => {
                            (lang.datetime(at)) " (" (lang.ago(at, now)) ")"
                            @if h.silent_devices > 0 {
                                " " span.warn { "⚠ " (h.silent_devices) " " (t.silent_devices.to_lowercase()) }
                            }
                        }
                        None => span.muted { (t.never) },
                    }
                }
                td.n { (lang.int(c.to_review)) }
            }
        }
    };
    data_table(Some(t.hamlet), &columns, rows)
}

/// The export links; the per-response export only for administrators (it is not suppressed).
fn exports_block(t: &Texts, campaign: &Campaign, admin: bool) -> Markup {
    let base = format!("/api/campaigns/{}/export", href(campaign.id.as_str()));
    html! {
        div.card {
            h2 { (t.exports) }
            p {
                (t.export_results) ": "
                a href={ (base) "/results.csv" } { "CSV" } " · " a href={ (base) "/results.xlsx" } { "XLSX" }
                @if admin {
                    " \u{a0} | \u{a0} " (t.export_responses) ": "
                    a href={ (base) "/responses.csv" } { "CSV" } " · " a href={ (base) "/responses.xlsx" } { "XLSX" }
                }
            }
        }
    }
}

/// Numbers too large to be true (possible ballot stuffing), as a card; nothing when there are
/// none.
fn alerts_block(lang: Lang, alerts: &[progress::Alert]) -> Markup {
    let t = lang.texts();
    html! {
        @if !alerts.is_empty() {
            div.card role="alert" {
                h2 { (t.alerts_title) }
                ul {
                    @for alert in alerts {
                        li.warn {
                            @match alert {
                                progress::Alert::OverVoters { hamlet_name, counted, expected, .. } => {
                                    (lang.alert_over_voters(hamlet_name, *counted, *expected))
                                }
                                progress::Alert::BusyCollector { hamlet_name, collector, day, responses, limit, .. } => {
                                    (lang.alert_busy_collector(hamlet_name, collector, *responses, day, *limit))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A campaign's progress, and the commune whose hamlets are unfolded.
#[derive(Debug, Clone)]
pub struct OverviewView<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// Its progress.
    pub progress: &'a Progress,
    /// The commune asked for (`?commune=`).
    pub commune: Option<&'a str>,
}

/// `/campaigns/{id}`: progress per commune, hamlets that need attention, exports.
pub fn render_overview(chrome: &Chrome, view: &OverviewView<'_>) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let (campaign, p) = (view.campaign, view.progress);
    let name = campaign.name.get(lang.code());
    let c = &p.totals;
    let nothing = p.hamlets.iter().filter(|h| h.nothing_yet).count();
    let silent: usize = p.hamlets.iter().map(|h| h.silent_devices).sum();
    let warn_class = |n: usize| if n > 0 { "warn" } else { "ok" };
    let warn = |n: usize| html! { @if n > 0 { span.warn { (n) } } @else { "0" } };
    let id = href(campaign.id.as_str());
    let columns = [
        col(t.commune),
        num(t.hamlets),
        num(t.expected),
        num(t.recorded),
        num(t.submitted),
        num(t.voided),
        col(t.participation),
        num(t.hamlets_nothing),
        num(t.silent_devices),
        col(t.hamlet),
    ];
    let rows = html! {
        @for commune in &p.communes {
            @let cc = &commune.counts;
            tr {
                th scope="row" {
                    (commune.name)
                    @if let Some(m) = &commune.merged_into { " " span.muted { "(" (t.merged_into) " " (m) ")" } }
                }
                td.n { (commune.hamlets) }
                td.n { (lang.int(cc.expected_voters)) }
                td.n { (lang.int(cc.recorded)) }
                td.n { (lang.int(cc.submitted)) }
                td.n { (lang.int(cc.voided)) }
                td { (bar(cc.participation_percent, &lang.percent(cc.participation_percent))) " " (lang.percent(cc.participation_percent)) }
                td.n { (warn(commune.hamlets_with_nothing)) }
                td.n { (warn(commune.silent_devices)) }
                td {
                    @if view.commune == Some(commune.id.as_str()) {
                        a href={ "/campaigns/" (id) } { (t.hide_hamlets) }
                    } @else {
                        a href={ "/campaigns/" (id) "?commune=" (href(&commune.id)) "#hamlets" } { (t.show_hamlets) }
                    }
                }
            }
        }
        tr.sum {
            th scope="row" { (t.level_campaign) }
            td.n { (p.hamlets.len()) }
            td.n { (lang.int(c.expected_voters)) }
            td.n { (lang.int(c.recorded)) }
            td.n { (lang.int(c.submitted)) }
            td.n { (lang.int(c.voided)) }
            td { (bar(c.participation_percent, &lang.percent(c.participation_percent))) " " (lang.percent(c.participation_percent)) }
            td.n { (nothing) }
            td.n { (silent) }
            td {}
        }
    };
    let attention: Vec<&HamletProgress> =
        p.hamlets.iter().filter(|h| h.nothing_yet || h.silent_devices > 0).take(ATTENTION).collect();
    let body = html! {
        p.sub { (t.state) ": " strong { (state_label(t, state_code(campaign.state))) } " · " (t.schedule) ": " (schedule(lang, campaign)) }
        h2 { (t.summary) }
        div.kpi {
            div { (t.recorded) b { (lang.int(c.recorded)) } }
            div { (t.submitted) b { (lang.int(c.submitted)) } }
            div { (t.voided) b { (lang.int(c.voided)) } }
            div { (t.tallies) b { (lang.int(c.tallies)) } }
            div { (t.participation) b { (lang.percent(c.participation_percent)) } }
            div { (t.to_review) b { (lang.int(c.to_review)) } }
            div { (t.hamlets_nothing) b class=(warn_class(nothing)) { (nothing) } }
            div { (t.silent_devices) b class=(warn_class(silent)) { (silent) } }
        }
        (alerts_block(lang, &p.alerts))
        h2 { (t.progress_title) }
        (data_table(Some(t.commune), &columns, rows))
        @if let Some(selected) = view.commune {
            @let commune_name = p.communes.iter().find(|c| c.id == selected).map_or(selected, |c| c.name.as_str());
            @let list: Vec<&HamletProgress> = p.hamlets.iter().filter(|h| h.commune == selected).collect();
            h2 #hamlets { (commune_name) }
            (hamlet_rows(chrome, campaign, &list, p.now, false))
        }
        @if !attention.is_empty() {
            h2 { (t.attention) }
            p.muted { (lang.silent_note(p.silent_after_days)) }
            (hamlet_rows(chrome, campaign, &attention, p.now, true))
        }
        (exports_block(t, campaign, chrome.menu == Menu::Admin))
    };
    layout(chrome, &campaign_frame(chrome, campaign, format!("{} — {}", t.progress_title, name), Tab::Overview), body)
}

async fn overview_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<CommuneQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let progress = progress::load(&ctx.district, &campaign).await?;
        let view = OverviewView { campaign: &campaign, progress: &progress, commune: q.commune.as_deref() };
        Ok(render_overview(ctx.chrome(), &view))
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- results

fn threshold_badges(t: &Texts, lang: Lang, results: &Results, crossed: Option<&Vec<bool>>) -> Markup {
    html! {
        @match crossed {
            None => span.badge.s { (t.suppressed) },
            Some(crossed) => {
                @let labels: Vec<&str> = results
                    .thresholds
                    .iter()
                    .zip(crossed)
                    .filter(|(_, c)| **c)
                    .map(|(th, _)| th.label.get(lang.code()))
                    .collect();
                @if labels.is_empty() {
                    span.muted { (t.not_crossed) }
                } @else {
                    @for label in labels { span.badge.x { "⚠ " (label) } }
                }
            }
        }
    }
}

fn level_cells(lang: Lang, row: &results::ResultRow, levels: usize) -> Markup {
    html! {
        @match (&row.counts, &row.shares) {
            (Some(counts), Some(shares)) => {
                @for (c, s) in counts.iter().zip(shares) {
                    td.n { (lang.int(*c)) }
                    td.n { (lang.percent(*s)) }
                }
            }
            _ => {
                @for _ in 0..levels { td.n { "—" } td.n { "—" } }
            }
        }
    }
}

fn level_columns(lang: Lang, t: &Texts, item: &SubjectResult) -> Vec<Column> {
    item.levels
        .iter()
        .flat_map(|l| {
            let label = l.label.get(lang.code());
            [num(format!("{label} — {}", t.count)), num(format!("{label} — {}", t.share))]
        })
        .collect()
}

/// `first` columns, then a count and a share per level, then the thresholds.
fn result_columns(mut first: Vec<Column>, lang: Lang, t: &Texts, item: &SubjectResult) -> Vec<Column> {
    first.extend(level_columns(lang, t, item));
    first.push(col(t.thresholds));
    first
}

fn scale_labels(lang: Lang, item: &SubjectResult) -> Vec<String> {
    item.levels.iter().map(|l| l.label.get(lang.code()).to_owned()).collect()
}

/// A campaign's results (per subject, at the top of the tree).
#[derive(Debug, Clone)]
pub struct ResultsView<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// Its results, to communes.
    pub results: &'a Results,
}

/// `/campaigns/{id}/results`: a chart and a table of every subject's levels.
pub fn render_results(chrome: &Chrome, view: &ResultsView<'_>) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let (campaign, results) = (view.campaign, view.results);
    let name = campaign.name.get(lang.code());
    let frame = campaign_frame(chrome, campaign, format!("{} — {}", t.results_title, name), Tab::Results);
    let body = html! {
        p.sub { (lang.results_note(results.min_group)) }
        @if let Some(b) = &results.batched { p.sub #batched { (lang.results_batched(b.batch, b.pending)) } }
        @if let Some(p) = &results.published { p.sub #frozen { (lang.results_frozen(p.later)) } }
        @if let Some(first) = results.subjects.first() {
            (legend(&scale_labels(lang, first)))
            @let rows: Vec<ChartRow> = results
                .subjects
                .iter()
                .map(|s| ChartRow { label: s.name.clone(), indent: 0, counts: s.overall().and_then(|r| r.counts.clone()) })
                .collect();
            (stacked_chart(&format!("{} — {}", t.chart_of, name), &rows, lang))
            @let thresholds: Vec<&str> = results.thresholds.iter().map(|th| th.label.get(lang.code())).collect();
            p.muted { (t.thresholds) ": " (thresholds.join("; ")) }
            @let columns = result_columns(vec![col(t.subject), col(t.position), num(t.total)], lang, t, first);
            (data_table(Some(t.results_title), &columns, html! {
                @for item in &results.subjects {
                    @if let Some(row) = item.overall() {
                        tr {
                            th scope="row" { a href={ "/campaigns/" (href(campaign.id.as_str())) "/results/" (href(&item.subject)) } { (item.name) } }
                            td { (item.position) }
                            td.n data-total=(row.total) { (lang.int(row.total)) }
                            (level_cells(lang, row, item.levels.len()))
                            td { (threshold_badges(t, lang, results, row.crossed.as_ref())) }
                        }
                    }
                }
            }))
            (exports_block(t, campaign, chrome.menu == Menu::Admin))
        }
    };
    layout(chrome, &frame, body)
}

async fn results_page(ctx: PageCtx, Path(id): Path<String>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let results = results::load(&ctx.district, &campaign, Depth::Commune, None).await?;
        Ok(render_results(ctx.chrome(), &ResultsView { campaign: &campaign, results: &results }))
    }
    .await;
    ctx.respond(page)
}

/// One subject's results by unit (`results` holds that subject only, to hamlets).
#[derive(Debug, Clone)]
pub struct SubjectView<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// The subject's results.
    pub results: &'a Results,
    /// The commune whose hamlets are unfolded.
    pub commune: Option<&'a str>,
}

/// `/campaigns/{id}/results/{subject}`: a subject by unit, with a chart. `None` when the
/// results hold no subject.
pub fn render_subject(chrome: &Chrome, view: &SubjectView<'_>) -> Option<Markup> {
    let t = chrome.t();
    let lang = chrome.lang;
    let (campaign, results) = (view.campaign, view.results);
    let item = results.subjects.first()?;
    let units: HashMap<&str, &results::UnitRow> = results.units.iter().map(|u| (u.id.as_str(), u)).collect();
    // Communes and above, and the hamlets of the commune asked for.
    let shown: Vec<(&results::UnitRow, &results::ResultRow)> = results
        .units
        .iter()
        .zip(&item.rows)
        .filter(|(u, _)| u.level != "hamlet" || u.parent.as_deref() == view.commune)
        .collect();
    let unit_name = |u: &results::UnitRow| if u.id == OVERALL { t.level_campaign.to_owned() } else { u.name.clone() };
    let chart_rows: Vec<ChartRow> = shown
        .iter()
        .map(|(u, r)| ChartRow { label: unit_name(u), indent: u.depth, counts: r.counts.clone() })
        .collect();
    let mut columns = vec![col(t.unit), col(t.level), num(t.total)];
    columns.extend(level_columns(lang, t, item));
    columns.extend([col(t.thresholds), num(t.participation), col("")]);
    let campaign_id = href(campaign.id.as_str());
    let rows = html! {
        @for (u, r) in &shown {
            @let class = format!("d{}{}", u.depth.min(4), if u.id == OVERALL { " sum" } else { "" });
            tr class=(class) id={ "u-" (u.id) } {
                th scope="row" {
                    (unit_name(u))
                    @if let Some(m) = &u.merged_into { " " span.muted { "(" (t.merged_into) " " (m) ")" } }
                }
                td { (level_label(t, u.level)) }
                td.n { (lang.int(r.total)) }
                (level_cells(lang, r, item.levels.len()))
                td { (threshold_badges(t, lang, results, r.crossed.as_ref())) }
                td.n { (pct(lang, units.get(u.id.as_str()).and_then(|x| x.participation_percent))) }
                td {
                    @match u.level {
                        "commune" if view.commune == Some(u.id.as_str()) => {}
                        "commune" => {
                            a href={ "/campaigns/" (campaign_id) "/results/" (href(&item.subject)) "?commune=" (href(&u.id)) "#u-" (u.id) } { (t.show_hamlets) }
                        }
                        "hamlet" => a href={ "/campaigns/" (campaign_id) "/hamlets/" (href(&u.id)) } { (t.details) },
                        _ => {}
                    }
                }
            }
        }
    };
    let body = html! {
        p.sub { (lang.results_note(results.min_group)) }
        (legend(&scale_labels(lang, item)))
        (stacked_chart(&format!("{} — {}", t.chart_of, item.name), &chart_rows, lang))
        (data_table(Some(&format!("{} — {}", t.by_unit, item.name)), &columns, rows))
    };
    let frame = campaign_frame(chrome, campaign, format!("{} — {}", item.name, item.position), Tab::Results);
    Some(layout(chrome, &frame, body))
}

async fn subject_page(
    ctx: PageCtx,
    Path((id, subject)): Path<(String, String)>,
    Query(q): Query<CommuneQuery>,
) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let (_, subject_id) = api::ResultsQuery { depth: None, subject: Some(subject.clone()) }.parse(&campaign)?;
        let results = results::load(&ctx.district, &campaign, Depth::Hamlet, subject_id.as_ref()).await?;
        let view = SubjectView { campaign: &campaign, results: &results, commune: q.commune.as_deref() };
        render_subject(ctx.chrome(), &view)
            .ok_or_else(|| DistrictError::NotFound(format!("no results for {subject:?}")))
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- hamlet

/// One hamlet: its progress, devices, results and what to review there.
#[derive(Debug, Clone)]
pub struct HamletView<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// The campaign's progress (for the hamlet's row and `now`).
    pub progress: &'a Progress,
    /// The hamlet, one of `progress.hamlets`.
    pub hamlet: &'a HamletProgress,
    /// The results of its commune, to hamlets.
    pub results: &'a Results,
    /// Conflicts and flags of the hamlet not reviewed yet.
    pub review: &'a [ReviewItem],
}

/// `/campaigns/{id}/hamlets/{hamlet}`.
pub fn render_hamlet(chrome: &Chrome, view: &HamletView<'_>) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let (campaign, p, h, results) = (view.campaign, view.progress, view.hamlet, view.results);
    let commune = p.communes.iter().find(|c| c.id == h.commune).map_or("", |c| c.name.as_str());
    let index = results.units.iter().position(|u| u.id == h.id);
    let body = html! {
        (hamlet_rows(chrome, campaign, &[h], p.now, true))
        h2 { (t.devices) }
        (device_table(chrome, campaign, h.devices.iter().collect(), p.now))
        @if let Some(index) = index {
            @if let Some(first) = results.subjects.first() {
                h2 { (t.results_title) }
                p.sub { (lang.results_note(results.min_group)) }
                @let columns = result_columns(vec![col(t.subject), num(t.total)], lang, t, first);
                (data_table(Some(&format!("{} — {}", t.results_title, h.name)), &columns, html! {
                    @for item in &results.subjects {
                        @let r = &item.rows[index];
                        tr {
                            th scope="row" { (item.name) }
                            td.n { (lang.int(r.total)) }
                            (level_cells(lang, r, item.levels.len()))
                            td { (threshold_badges(t, lang, results, r.crossed.as_ref())) }
                        }
                    }
                }))
            }
            @if !view.review.is_empty() {
                h2 { (t.review_title) }
                (review_cards(chrome, campaign, view.review, "open"))
            }
        }
    };
    layout(chrome, &campaign_frame(chrome, campaign, format!("{} — {}", h.name, commune), Tab::Overview), body)
}

async fn hamlet_page(ctx: PageCtx, Path((id, hamlet)): Path<(String, String)>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let p = progress::load(&ctx.district, &campaign).await?;
        let Some(h) = p.hamlets.iter().find(|h| h.id == hamlet) else {
            return Err(DistrictError::NotFound(format!("no hamlet {hamlet:?} in campaign {id}")));
        };
        let results = results::load_commune(&ctx.district, &campaign, &h.commune).await?;
        let review: Vec<ReviewItem> = if results.units.iter().any(|u| u.id == hamlet) {
            review::items(&ctx.district, &campaign, true, &ctx.actor)
                .await?
                .into_iter()
                .filter(|i| i.hamlet == hamlet)
                .collect()
        } else {
            Vec::new()
        };
        let view = HamletView { campaign: &campaign, progress: &p, hamlet: h, results: &results, review: &review };
        Ok(render_hamlet(ctx.chrome(), &view))
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- comments

#[derive(Debug, Deserialize)]
struct CommentsQuery {
    q: Option<String>,
    subject: Option<String>,
    page: Option<String>,
}

/// One page of comments found.
#[derive(Debug, Clone)]
pub struct CommentsView<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// The text searched for.
    pub text: &'a str,
    /// The subject chosen, if any.
    pub subject: Option<&'a str>,
    /// The page number, from 1.
    pub number: i64,
    /// What was found.
    pub found: &'a Comments,
}

/// `/campaigns/{id}/comments`: the search form and a page of comments.
pub fn render_comments(chrome: &Chrome, view: &CommentsView<'_>) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let (campaign, found, number) = (view.campaign, view.found, view.number);
    let base = format!(
        "/campaigns/{}/comments?q={}&subject={}",
        href(campaign.id.as_str()),
        href(view.text),
        href(view.subject.unwrap_or(""))
    );
    let first = (number - 1) * COMMENTS_PAGE;
    let span = Span {
        first: usize::try_from(first + 1).unwrap_or(0),
        last: usize::try_from(first + found.items.len() as i64).unwrap_or(0),
        total: usize::try_from(found.total).unwrap_or(0),
    };
    let previous = (number > 1).then(|| format!("{base}&page={}", number - 1));
    let next = (number * COMMENTS_PAGE < found.total).then(|| format!("{base}&page={}", number + 1));
    let body = html! {
        form.card method="get" role="search" {
            label for="q" { (t.search_label) }
            input type="search" id="q" name="q" value=(view.text) size="40";
            " "
            label for="subject" { (t.subject) }
            select id="subject" name="subject" {
                option value="" { (t.all_subjects) }
                @for s in &campaign.subjects {
                    option value=(s.id.as_str()) selected[view.subject == Some(s.id.as_str())] { (s.name) " — " (s.position) }
                }
            }
            " "
            button type="submit" { (t.search) }
        }
        p { (t.found) ": " strong { (lang.int(found.total.max(0) as u64)) } }
        (data_table(Some(t.comments_title), &[col(t.subject), col(t.hamlet), col(t.comment)], html! {
            @for c in &found.items {
                tr {
                    td { (c.subject_name) }
                    td {
                        @match &c.hamlet_name {
                            Some(h) => { (h) ", " (c.commune_name) }
                            None => { (c.commune_name) " " span.muted { (t.hamlet_hidden) } }
                        }
                    }
                    td { (c.text) }
                }
            }
        }))
        (pager(t, previous, span, next))
    };
    layout(chrome, &campaign_frame(chrome, campaign, t.comments_title, Tab::Comments), body)
}

async fn comments_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<CommentsQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let text = q.q.clone().unwrap_or_default();
        let subject = q.subject.clone().filter(|s| !s.is_empty());
        let number = page_number(q.page.as_deref())? as i64;
        let found = review::comments(
            &ctx.district,
            &campaign,
            &text,
            subject.as_deref(),
            COMMENTS_PAGE,
            (number - 1) * COMMENTS_PAGE,
        )
        .await?;
        let view =
            CommentsView { campaign: &campaign, text: &text, subject: subject.as_deref(), number, found: &found };
        Ok(render_comments(ctx.chrome(), &view))
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- review

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    status: Option<String>,
    page: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<String>,
    done: Option<String>,
}

fn flag_label(t: &Texts, flag: &str) -> &'static str {
    match flag {
        "edited_after_seal" => t.flag_edited_after_seal,
        "seal_rewritten" => t.flag_seal_rewritten,
        "foreign_write" => t.flag_foreign_write,
        "invalid_answer" => t.flag_invalid_answer,
        "form_version" => t.flag_form_version,
        "invalid_count" => t.flag_invalid_count,
        "tally_inconsistent" => t.flag_tally_inconsistent,
        "outside_schedule" => t.flag_outside_schedule,
        "tally_duplicate" => t.flag_tally_duplicate,
        "after_publication" => t.flag_after_publication,
        _ => t.flag_malformed_key,
    }
}

/// An answer key or path made readable: question and subject names in place of ids.
fn readable_field(campaign: &Campaign, lang: Lang, key: &str) -> String {
    let key = key.rsplit("/answers/").next().unwrap_or(key);
    let (question, subject) = key.split_once('/').map_or((key, None), |(q, s)| (q, Some(s)));
    let q =
        campaign.form.questions.iter().find(|x| x.id.as_str() == question).map(|x| x.label.get(lang.code()).to_owned());
    let s = subject.and_then(|s| campaign.subjects.iter().find(|x| x.id.as_str() == s)).map(|x| x.name.clone());
    match (q, s) {
        (Some(q), Some(s)) => format!("{q} — {s}"),
        (Some(q), None) => q,
        _ => key.to_owned(),
    }
}

fn readable_value(lang: Lang, value: &str) -> String {
    match hamlet_sync_core::Level::from_code(value) {
        Some(level) => level.label().get(lang.code()).to_owned(),
        None => value.to_owned(),
    }
}

fn review_cards(chrome: &Chrome, campaign: &Campaign, items: &[ReviewItem], status: &str) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let campaign_id = href(campaign.id.as_str());
    html! {
        @for (n, item) in items.iter().enumerate() {
            @let (badge, what) = match item.flag.as_deref() {
                None => (t.conflict, readable_field(campaign, lang, &item.path)),
                Some(flag) => (t.flag, flag_label(t, flag).to_owned()),
            };
            section.card aria-labelledby={ "i" (n) } {
                h3 id={ "i" (n) } {
                    span.badge.x { (badge) } " " (what) " — "
                    a href={ "/campaigns/" (campaign_id) "/hamlets/" (href(&item.hamlet)) } { (item.hamlet_name) }
                    ", " (item.commune_name)
                }
                p.muted { (t.response) " " (item.entity_id) }
                @if item.kind == "conflict" {
                    (data_table(Some(t.values), &[col(t.values), col(t.device)], html! {
                        @for v in &item.values {
                            @let short: String = match &v.device {
                                Some(device) => device.clone(),
                                None => v.actor.chars().take(12).collect(),
                            };
                            tr {
                                td { (readable_value(lang, &v.value)) @if v.shown { " " span.badge { (t.shown_value) } } }
                                td { code title=(v.actor) { (short) } }
                            }
                        }
                    }))
                } @else if matches!(item.flag.as_deref(), Some("edited_after_seal" | "seal_rewritten")) {
                    @let text = |k: &str| {
                        item.detail.get(k).and_then(|v| v.as_str()).map(|v| readable_value(lang, v)).unwrap_or_else(|| "—".into())
                    };
                    @let key = item.detail.get("key").and_then(|k| k.as_str()).unwrap_or("");
                    p {
                        (t.field) ": " (readable_field(campaign, lang, key)) " — "
                        (t.sealed_value) ": " strong { (text("sealed")) } ", " (t.current_value) ": " (text("current"))
                    }
                } @else {
                    p { code { (item.detail.to_string()) } }
                }
                @match &item.reviewed {
                    Some(r) => p.ok { "✔ " (t.reviewed) " " (t.reviewed_by) " " (r.by) " (" (lang.datetime(r.at)) "): " (r.comment) },
                    None => {
                        (post_form(&format!("/campaigns/{campaign_id}/review"), &chrome.csrf, Some("review"), html! {
                            input type="hidden" name="item_key" value=(item.item_key);
                            input type="hidden" name="status" value=(status);
                            label for={ "c" (n) } { (t.review_comment) }
                            textarea id={ "c" (n) } name="comment" maxlength="2000" rows="2" {}
                            button type="submit" { (t.mark_reviewed) }
                        }))
                    }
                }
            }
        }
    }
}

/// Conflicts and flags to review, a page of them.
#[derive(Debug, Clone)]
pub struct ReviewView<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// Whether reviewed items are listed too.
    pub all: bool,
    /// The items (all pages).
    pub items: &'a [ReviewItem],
    /// The campaign's alerts.
    pub alerts: &'a [progress::Alert],
    /// The page number, from 1.
    pub number: usize,
}

/// `/campaigns/{id}/review`.
pub fn render_review(chrome: &Chrome, view: &ReviewView<'_>) -> Markup {
    let t = chrome.t();
    let base = format!("/campaigns/{}/review", href(view.campaign.id.as_str()));
    let link = if view.all { format!("{base}?status=all&") } else { format!("{base}?") };
    let (shown, links) = paged(t, view.items, view.number, REVIEW_PAGE, &link);
    let current = |yes: bool| yes.then_some("page");
    let body = html! {
        p.sub { (t.review_note) }
        nav.tabs aria-label=(t.filter) {
            a href=(base) aria-current=[current(!view.all)] { (t.show_open) }
            a href={ (base) "?status=all" } aria-current=[current(view.all)] { (t.show_all) }
        }
        (alerts_block(chrome.lang, view.alerts))
        @if view.items.is_empty() { p.notice { (t.nothing_to_review) } }
        (review_cards(chrome, view.campaign, shown, if view.all { "all" } else { "open" }))
        (links)
    };
    layout(chrome, &campaign_frame(chrome, view.campaign, t.review_title, Tab::Review), body)
}

async fn review_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<ReviewQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let all = q.status.as_deref() == Some("all");
        let items = review::items(&ctx.district, &campaign, !all, &ctx.actor).await?;
        let alerts = progress::load(&ctx.district, &campaign).await?.alerts;
        let number = page_number(q.page.as_deref())?;
        let view = ReviewView { campaign: &campaign, all, items: &items, alerts: &alerts, number };
        Ok(render_review(ctx.chrome(), &view))
    }
    .await;
    ctx.respond(page)
}

#[derive(Debug, Deserialize)]
struct ReviewForm {
    item_key: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    status: String,
}

fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DistrictError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| DistrictError::bad("invalid_form", format!("the form is not valid: {e}")))
}

async fn review_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let f: ReviewForm = form(&body)?;
        review::mark_reviewed(&ctx.district, &campaign, &f.item_key, &f.comment, &ctx.actor).await?;
        let status = if f.status == "all" { "?status=all" } else { "" };
        Ok::<_, DistrictError>(format!("/campaigns/{}/review{status}", href(&id)))
    }
    .await;
    match done {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => error_page(ctx.chrome(), &e),
    }
}

// ---------------------------------------------------------------- devices

fn device_table(chrome: &Chrome, campaign: &Campaign, mut devices: Vec<&progress::DeviceRow>, now: i64) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    devices.sort_by(|a, b| b.silent.cmp(&a.silent).then(b.last_sync_at.cmp(&a.last_sync_at)));
    let columns = [col(t.device), col(t.hamlet), col(t.last_sync), col(t.first_seen), col(t.peer), num(t.syncs)];
    html! {
        @if devices.is_empty() {
            p { (t.no_devices) }
        } @else {
            (data_table(Some(t.devices_title), &columns, html! {
                @for d in &devices {
                    tr {
                        th scope="row" { (d.device) }
                        td { a href={ "/campaigns/" (href(campaign.id.as_str())) "/hamlets/" (href(&d.hamlet)) } { (d.hamlet_name) } }
                        td {
                            (lang.datetime(d.last_sync_at)) " (" (lang.ago(d.last_sync_at, now)) ")"
                            @if d.silent { " " span.badge.x { "⚠ " (t.silent) } }
                        }
                        td { (lang.datetime(d.first_seen_at)) }
                        td { code { (d.peer) } }
                        td.n { (lang.int(d.syncs.max(0) as u64)) }
                    }
                }
            }))
        }
    }
}

/// A campaign's devices, a page of them.
#[derive(Debug, Clone)]
pub struct DevicesView<'a> {
    /// The campaign.
    pub campaign: &'a Campaign,
    /// Its progress (devices per hamlet, `now`, the silence threshold).
    pub progress: &'a Progress,
    /// The page number, from 1.
    pub number: usize,
}

/// `/campaigns/{id}/devices`.
pub fn render_devices(chrome: &Chrome, view: &DevicesView<'_>) -> Markup {
    let t = chrome.t();
    let p = view.progress;
    let mut devices: Vec<&progress::DeviceRow> = p.hamlets.iter().flat_map(|h| h.devices.iter()).collect();
    devices.sort_by(|a, b| b.silent.cmp(&a.silent).then(b.last_sync_at.cmp(&a.last_sync_at)));
    let base = format!("/campaigns/{}/devices?", href(view.campaign.id.as_str()));
    let (shown, links) = paged(t, &devices, view.number, TABLE_PAGE, &base);
    let body = html! {
        p.sub { (chrome.lang.silent_note(p.silent_after_days)) }
        (device_table(chrome, view.campaign, shown.to_vec(), p.now))
        (links)
    };
    layout(chrome, &campaign_frame(chrome, view.campaign, t.devices_title, Tab::Devices), body)
}

async fn devices_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<PageQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let progress = progress::load(&ctx.district, &campaign).await?;
        let number = page_number(q.page.as_deref())?;
        Ok(render_devices(ctx.chrome(), &DevicesView { campaign: &campaign, progress: &progress, number }))
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- admin: audit

/// The audit log's filter, as asked.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only actions starting with this.
    pub action: Option<String>,
    /// Only entries whose target or detail contains this.
    pub q: Option<String>,
    /// Only entries older than this id.
    pub before: Option<String>,
}

/// Audit entries a page shows at most.
const AUDIT_PAGE: usize = 100;

/// `/admin/audit`: the filter form and the entries found.
pub fn render_audit(chrome: &Chrome, q: &AuditQuery, entries: &[AuditEntry]) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        form.card method="get" {
            label for="actor" { (t.actor) }
            input type="text" id="actor" name="actor" value=(v(&q.actor));
            label for="action" { (t.action) }
            input type="text" id="action" name="action" value=(v(&q.action));
            label for="aq" { (t.search) }
            input type="search" id="aq" name="q" value=(v(&q.q));
            " "
            button type="submit" { (t.filter) }
        }
        (data_table(Some(t.audit_title), &[col(t.at), col(t.actor), col(t.action), col(t.target), col(t.detail)], html! {
            @for e in entries {
                tr {
                    td { (lang.datetime(e.at)) }
                    td { (e.actor) }
                    td { code { (e.action) } }
                    td { (e.target) }
                    td { (e.detail) }
                }
            }
        }))
        @if let (Some(last), true) = (entries.last(), entries.len() == AUDIT_PAGE) {
            p {
                a href={
                    "/admin/audit?actor=" (href(&v(&q.actor))) "&action=" (href(&v(&q.action)))
                    "&q=" (href(&v(&q.q))) "&before=" (last.id)
                } { (t.older) " →" }
            }
        }
    };
    layout(chrome, &Page::new(t.audit_title, Section::Audit), body)
}

async fn audit_page(ctx: PageCtx, Query(q): Query<AuditQuery>) -> Response {
    let page = async {
        let filter = audit::AuditFilter {
            actor: q.actor.clone().filter(|s| !s.is_empty()),
            action: q.action.clone().filter(|s| !s.is_empty()),
            text: q.q.clone().filter(|s| !s.is_empty()),
            before: q.before.as_deref().and_then(|b| b.parse().ok()),
            limit: AUDIT_PAGE as i64,
        };
        let entries = audit::list(ctx.district.store(), &filter).await?;
        Ok(render_audit(ctx.chrome(), &q, &entries))
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- admin: campaigns

#[derive(Debug, Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// `/admin/campaigns`: the campaigns and the form that creates one (its dates from `today`).
pub fn render_manage(chrome: &Chrome, list: &[CampaignSummary], today: Day, error: Option<&DistrictError>) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let body = html! {
        (error_box(t, error))
        (data_table(Some(t.campaigns_title), &[col(t.name), col(t.state), col(t.updated)], html! {
            @for c in list {
                tr {
                    td { a href={ "/admin/campaigns/" (href(&c.id)) } { (c.name_vi) } " " span.muted { "(" (c.id) ")" } }
                    td { (state_label(t, &c.state)) }
                    td { (lang.datetime(c.updated_at)) }
                }
            }
        }))
        (post_form("/admin/campaigns", &chrome.csrf, Some("card"), html! {
            h2 { (t.new_campaign) }
            label for="id" { (t.campaign_id) }
            input type="text" id="id" name="id" required pattern="[A-Za-z0-9._-]{1,64}";
            label for="name_vi" { (t.name_vi) }
            input type="text" id="name_vi" name="name_vi" required size="60";
            label for="name_en" { (t.name_en) }
            input type="text" id="name_en" name="name_en" size="60";
            label for="opens_on" { (t.opens_on) }
            input type="date" id="opens_on" name="opens_on" required value=(today);
            label for="closes_on" { (t.closes_on) }
            input type="date" id="closes_on" name="closes_on" required value=(today.plus_days(20));
            p { button type="submit" { (t.create) } }
        }))
    };
    layout(chrome, &Page::new(t.manage_title, Section::Manage), body)
}

async fn manage_page(ctx: PageCtx) -> Response {
    let page = manage(&ctx, None).await;
    ctx.respond(page)
}

async fn manage(ctx: &PageCtx, error: Option<&DistrictError>) -> Result<Markup, DistrictError> {
    let list = ctx.district.catalog().campaigns().await?;
    let today = Day::from_unix_seconds(ctx.district.store().now_ms() / 1000);
    Ok(render_manage(ctx.chrome(), &list, today, error))
}

#[derive(Debug, Deserialize)]
struct CampaignForm {
    #[serde(default)]
    id: String,
    name_vi: String,
    #[serde(default)]
    name_en: String,
    opens_on: String,
    closes_on: String,
}

fn parse_day(text: &str, what: &str) -> Result<Day, DistrictError> {
    text.parse().map_err(|_| DistrictError::invalid("invalid_date", format!("{what}: {text:?} is not a date")))
}

async fn create_post(ctx: PageCtx, body: Bytes) -> Response {
    let done = async {
        let f: CampaignForm = form(&body)?;
        let id = f.id.trim();
        let campaign = Campaign {
            id: id
                .parse()
                .map_err(|_| DistrictError::invalid("invalid_id", format!("{id:?} is not a valid campaign id")))?,
            name: Label::new(f.name_vi.trim(), f.name_en.trim()),
            form: fixtures::form(),
            subjects: Vec::new(),
            hamlets: Vec::new(),
            schedule: hamlet_sync_core::Schedule {
                opens_on: parse_day(&f.opens_on, "opens_on")?,
                closes_on: parse_day(&f.closes_on, "closes_on")?,
            },
            thresholds: Threshold::defaults(),
            max_responses_per_day: hamlet_sync_core::DEFAULT_MAX_RESPONSES_PER_DAY,
            state: CampaignState::Draft,
        };
        campaigns::create(&ctx.district, &ctx.actor, campaign).await?;
        Ok::<_, DistrictError>(id.to_owned())
    }
    .await;
    match done {
        Ok(id) => Redirect::to(&format!("/admin/campaigns/{}?done=1", href(&id))).into_response(),
        Err(e) => {
            let page = manage(&ctx, Some(&e)).await;
            form_failure(&ctx, page, &e)
        }
    }
}

fn form_failure(ctx: &PageCtx, page: Result<Markup, DistrictError>, e: &DistrictError) -> Response {
    let status = district_status(e);
    match page {
        Ok(page) if !status.is_server_error() => ctx.request.html(status, page),
        _ => error_page(ctx.chrome(), e),
    }
}

/// `/admin/campaigns/{id}`: a campaign's state, its next transition, and (while a draft) the
/// forms that edit it and import its subjects and hamlets.
pub fn render_campaign_admin(
    chrome: &Chrome,
    campaign: &Campaign,
    error: Option<&DistrictError>,
    done: bool,
) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let cid = href(campaign.id.as_str());
    let csrf = &chrome.csrf;
    let next = match campaign.state {
        CampaignState::Draft => Some(("open", t.open_campaign)),
        CampaignState::Open => Some(("closed", t.close_campaign)),
        CampaignState::Closed => Some(("published", t.publish_campaign)),
        CampaignState::Published => None,
    };
    let body = html! {
        (error_box(t, error))
        (notice(t, done))
        p.sub {
            (t.state) ": " strong { (state_label(t, state_code(campaign.state))) }
            " · " (t.schedule) ": " (schedule(lang, campaign))
            " · " (t.subjects_count) ": " (campaign.subjects.len())
            " · " (t.hamlets) ": " (campaign.hamlets.len())
            " · " a href={ "/campaigns/" (cid) } { (t.nav_overview) }
        }
        @if let Some((to, label)) = next {
            (post_form(&format!("/admin/campaigns/{cid}/state"), csrf, Some("card"), html! {
                input type="hidden" name="to" value=(to);
                p.muted { (t.confirm_hint) }
                button type="submit" { (label) }
            }))
        }
        @if campaign.state == CampaignState::Draft {
            (post_form(&format!("/admin/campaigns/{cid}"), csrf, Some("card"), html! {
                h2 { (t.edit_campaign) }
                label for="name_vi" { (t.name_vi) }
                input type="text" id="name_vi" name="name_vi" required size="60" value=(campaign.name.vi);
                label for="name_en" { (t.name_en) }
                input type="text" id="name_en" name="name_en" size="60" value=(campaign.name.en);
                label for="opens_on" { (t.opens_on) }
                input type="date" id="opens_on" name="opens_on" value=(campaign.schedule.opens_on);
                label for="closes_on" { (t.closes_on) }
                input type="date" id="closes_on" name="closes_on" value=(campaign.schedule.closes_on);
                p { button type="submit" { (t.save) } }
            }))
            @for (what, label) in [("subjects", t.subjects_import), ("hamlets", t.hamlets_import)] {
                (csv_form(t, &format!("/admin/campaigns/{cid}/{what}"), csrf, what, label))
            }
        } @else {
            p.muted { (t.only_draft) }
        }
        (data_table(Some(t.subject), &[col(t.name), col(t.position), col(t.commune)], html! {
            @for s in &campaign.subjects {
                tr { td { (s.name) } td { (s.position) } td { (s.commune.as_str()) } }
            }
        }))
    };
    let title = format!("{} — {}", t.edit_campaign, campaign.name.vi);
    layout(chrome, &Page::new(title, Section::Manage), body)
}

/// A form into which an administrator pastes a CSV file.
fn csv_form(t: &Texts, action: &str, csrf: &str, what: &str, label: &str) -> Markup {
    post_form(
        action,
        csrf,
        Some("card"),
        html! {
            h2 { (label) }
            label for={ (what) "-text" } { (t.csv_text) }
            textarea id={ (what) "-text" } name="text" required {}
            p { button type="submit" { (t.import) } }
        },
    )
}

async fn campaign_admin(
    ctx: &PageCtx,
    id: &str,
    error: Option<&DistrictError>,
    done: bool,
) -> Result<Markup, DistrictError> {
    let campaign = ctx.district.catalog().require(id).await?;
    Ok(render_campaign_admin(ctx.chrome(), &campaign, error, done))
}

async fn campaign_admin_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<DoneQuery>) -> Response {
    let page = campaign_admin(&ctx, &id, None, q.done.is_some()).await;
    ctx.respond(page)
}

async fn admin_outcome(ctx: PageCtx, id: &str, done: Result<(), DistrictError>) -> Response {
    match done {
        Ok(()) => Redirect::to(&format!("/admin/campaigns/{}?done=1", href(id))).into_response(),
        Err(e) => {
            let page = campaign_admin(&ctx, id, Some(&e), false).await;
            form_failure(&ctx, page, &e)
        }
    }
}

async fn edit_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let f: CampaignForm = form(&body)?;
        let mut campaign = (*ctx.district.catalog().require(&id).await?).clone();
        campaign.name = Label::new(f.name_vi.trim(), f.name_en.trim());
        campaign.schedule.opens_on = parse_day(&f.opens_on, "opens_on")?;
        campaign.schedule.closes_on = parse_day(&f.closes_on, "closes_on")?;
        campaigns::update(&ctx.district, &ctx.actor, &id, campaign).await
    }
    .await;
    admin_outcome(ctx, &id, done).await
}

#[derive(Debug, Deserialize)]
struct CsvForm {
    #[serde(default)]
    text: String,
}

/// The CSV text pasted into an import form.
fn pasted_text(body: &[u8]) -> Result<String, DistrictError> {
    Ok(form::<CsvForm>(body)?.text)
}

async fn subjects_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let text = pasted_text(&body)?;
        campaigns::replace_subjects(&ctx.district, &ctx.actor, &id, &text).await.map(drop)
    }
    .await;
    admin_outcome(ctx, &id, done).await
}

async fn hamlets_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let text = pasted_text(&body)?;
        campaigns::replace_hamlets(&ctx.district, &ctx.actor, &id, &text).await.map(drop)
    }
    .await;
    admin_outcome(ctx, &id, done).await
}

#[derive(Debug, Deserialize)]
struct StateForm {
    to: String,
}

async fn state_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let f: StateForm = form(&body)?;
        let to = match f.to.as_str() {
            "open" => CampaignState::Open,
            "closed" => CampaignState::Closed,
            "published" => CampaignState::Published,
            other => {
                return Err(DistrictError::bad("invalid_state", format!("{other:?} is not open, closed or published")));
            }
        };
        campaigns::transition(&ctx.district, &ctx.actor, &id, to).await.map(drop)
    }
    .await;
    admin_outcome(ctx, &id, done).await
}

// ---------------------------------------------------------------- admin: units

/// `/admin/units`: the import form and a page of the unit tree.
pub fn render_units(
    chrome: &Chrome,
    tree: &UnitTree,
    error: Option<&DistrictError>,
    done: bool,
    number: usize,
) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let mut all: Vec<&hamlet_sync_core::Unit> = tree.units().collect();
    all.sort_by_cached_key(|u| (u.level, fold_search(&u.name), u.id.to_string()));
    let (list, links) = paged(t, &all, number, TABLE_PAGE, "/admin/units?");
    let name_of = |id: &hamlet_sync_core::UnitId| tree.get(id).map_or_else(|| id.to_string(), |u| u.name.clone());
    let columns = [col(t.name), col("ID"), col(t.level), col(t.parent), col(t.valid), col(t.lineage)];
    let rows = html! {
        @for u in list {
            @let level = match u.level {
                hamlet_sync_core::UnitLevel::Province => t.level_province,
                hamlet_sync_core::UnitLevel::District => t.level_district,
                hamlet_sync_core::UnitLevel::Commune => t.level_commune,
                hamlet_sync_core::UnitLevel::Hamlet => t.level_hamlet,
            };
            tr {
                td { (u.name) }
                td { code { (u.id.as_str()) } }
                td { (level) }
                td { @if let Some(p) = &u.parent { (name_of(p)) } }
                td {
                    (t.from) " " (lang.day(u.valid_from))
                    @if let Some(until) = u.valid_until { " " (t.until) " " (lang.day(until)) }
                }
                td {
                    @if let Some(into) = &u.merged_into { (t.merged_into) " " (name_of(into)) }
                    @if !u.merged_from.is_empty() {
                        @let names: Vec<String> = u.merged_from.iter().map(&name_of).collect();
                        (t.merged_from) " " (names.join(", "))
                    }
                }
            }
        }
    };
    let body = html! {
        (error_box(t, error))
        (notice(t, done))
        (csv_form(t, "/admin/units", &chrome.csrf, "units", t.units_import))
        (data_table(Some(t.units_title), &columns, rows))
        (links)
    };
    layout(chrome, &Page::new(t.units_title, Section::Units), body)
}

async fn units(
    ctx: &PageCtx,
    error: Option<&DistrictError>,
    done: bool,
    number: usize,
) -> Result<Markup, DistrictError> {
    let tree = ctx.district.catalog().units().await?;
    Ok(render_units(ctx.chrome(), &tree, error, done, number))
}

async fn units_page(ctx: PageCtx, Query(q): Query<PageQuery>) -> Response {
    let page = match page_number(q.page.as_deref()) {
        Ok(number) => units(&ctx, None, q.done.is_some(), number).await,
        Err(e) => Err(e),
    };
    ctx.respond(page)
}

async fn units_post(ctx: PageCtx, body: Bytes) -> Response {
    let done = async {
        let text = pasted_text(&body)?;
        campaigns::import_units_text(&ctx.district, &ctx.actor, &text).await.map(drop)
    }
    .await;
    match done {
        Ok(()) => Redirect::to("/admin/units?done=1").into_response(),
        Err(e) => {
            let page = units(&ctx, Some(&e), false, 1).await;
            form_failure(&ctx, page, &e)
        }
    }
}
