//! The dashboard: server-rendered pages, Vietnamese by default, English on request, no
//! JavaScript. Viewer pages: campaigns, a campaign's progress, results (with charts), a
//! subject's results by unit, a hamlet, comments, conflicts and flags to review, devices.
//! Admin pages: campaigns, units and subjects management, and the audit log.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hamlet_sync_core::{Campaign, CampaignState, Day, Label, Threshold, fixtures};
use serde::Deserialize;

use super::layout::{Page, Section, Tab, bar, esc, legend, stacked_chart, url};
use crate::audit::{self, Actor};
use crate::district::progress::{self, HamletProgress};
use crate::district::results::{self, Depth, OVERALL, Results, SubjectResult};
use crate::district::{District, DistrictError, campaigns, fold_search, review};
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

/// The items of page `number`, and the links to the pages around it (`base` ends in `?` or `&`).
fn paged<'a, T>(t: &Texts, items: &'a [T], number: usize, per: usize, base: &str) -> (&'a [T], String) {
    let start = ((number - 1) * per).min(items.len());
    let end = (start + per).min(items.len());
    let mut links = String::new();
    if number > 1 || end < items.len() {
        links.push_str("<p>");
        if number > 1 {
            let _ = write!(links, "<a href=\"{}page={}\">← {}</a> ", esc(base), number - 1, t.previous);
        }
        let _ = write!(links, "<span class=\"muted\">{}–{} / {}</span> ", start + 1, end, items.len());
        if end < items.len() {
            let _ = write!(links, "<a href=\"{}page={}\">{} →</a>", esc(base), number + 1, t.next);
        }
        links.push_str("</p>");
    }
    (&items[start..end], links)
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
    lang: Lang,
    set_cookie: bool,
    actor: Actor,
    path: String,
    /// The session's CSRF token, sent back by every form (none for API tokens).
    csrf: String,
}

impl FromRequestParts<AppState> for PageCtx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (lang, set_cookie) = Lang::of(parts);
        let district = District::from_request_parts(parts, state).await.map_err(|e| error_page(lang, &e))?;
        let actor = parts.extensions.get::<Actor>().cloned().unwrap_or_else(Actor::anonymous);
        let uri = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.clone(), |u| u.0.clone());
        let path = uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let csrf = match parts.extensions.get::<crate::web::auth::Principal>() {
            Some(crate::web::auth::Principal::Staff { csrf: Some(token), .. }) => token.clone(),
            _ => String::new(),
        };
        Ok(PageCtx { district, lang, set_cookie, actor, path, csrf })
    }
}

impl PageCtx {
    fn t(&self) -> &'static Texts {
        self.lang.texts()
    }

    /// The hidden field that proves a form comes from our own page.
    fn csrf_field(&self) -> String {
        format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&self.csrf))
    }

    fn page(&self, title: impl Into<String>, section: Section) -> Page {
        let mut page = Page::new(self.lang, title, self.path.clone(), section);
        page.admin = self.actor.is_admin();
        page
    }

    fn campaign_page(&self, campaign: &Campaign, title: impl Into<String>, tab: Tab) -> Page {
        let mut page = self.page(title, Section::Campaign(tab));
        page.campaign = Some((campaign.id.to_string(), campaign.name.get(self.lang.code()).to_owned()));
        page
    }

    fn respond(&self, page: Result<Page, DistrictError>) -> Response {
        match page {
            Ok(page) => self.html(StatusCode::OK, page.render()),
            Err(e) => error_page(self.lang, &e),
        }
    }

    fn html(&self, status: StatusCode, body: String) -> Response {
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(self.lang.code_static()));
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Language, Cookie"));
        if self.set_cookie {
            let cookie = format!("lang={}; Path=/; Max-Age=31536000; SameSite=Lax", self.lang.code());
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.insert(header::SET_COOKIE, value);
            }
        }
        response
    }
}

impl Lang {
    fn code_static(self) -> &'static str {
        self.code()
    }
}

/// An error as a page in `lang` (a 5xx says only that something failed; its cause is logged).
fn error_page(lang: Lang, error: &DistrictError) -> Response {
    error.log();
    let status = district_status(error);
    let (_, message) = error.code_and_message();
    let t = lang.texts();
    let title = if status == StatusCode::NOT_FOUND { t.not_found } else { t.error };
    let shown = if status.is_server_error() { t.server_error.to_owned() } else { message };
    let mut page = Page::new(lang, title, "/", Section::Campaigns);
    page.push(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&shown)));
    if let DistrictError::Invalid { details, .. } = error {
        page.push("<ul>");
        for d in details {
            page.push(&format!("<li>{} {}: {}</li>", t.line, d.line, esc(&d.message)));
        }
        page.push("</ul>");
    }
    page.push(&format!("<p><a href=\"/\">{}</a></p>", t.back));
    let mut response = (status, page.render()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
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

// ---------------------------------------------------------------- campaigns

async fn campaigns_page(ctx: PageCtx) -> Response {
    let page = async {
        let t = ctx.t();
        let mut page = ctx.page(t.campaigns_title, Section::Campaigns);
        let list = ctx.district.catalog().campaigns().await?;
        if list.is_empty() {
            page.push(&format!("<p>{}</p>", t.no_campaigns));
            return Ok(page);
        }
        let mut html = format!(
            "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            t.campaigns_title, t.name, t.state, t.schedule, t.updated
        );
        for c in &list {
            let name = if ctx.lang == Lang::En && !c.name_en.is_empty() { &c.name_en } else { &c.name_vi };
            let when = match ctx.district.catalog().require(&c.id).await {
                Ok(full) => schedule(ctx.lang, &full),
                Err(_) => String::new(),
            };
            let _ = write!(
                html,
                "<tr><td><a href=\"/campaigns/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                url(&c.id),
                esc(name),
                state_label(t, &c.state),
                when,
                ctx.lang.datetime(c.updated_at)
            );
        }
        html.push_str("</tbody></table>");
        page.push(&html);
        Ok(page)
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
    ctx: &PageCtx,
    campaign: &Campaign,
    hamlets: &[&HamletProgress],
    now: i64,
    with_commune: bool,
) -> String {
    let t = ctx.t();
    let lang = ctx.lang;
    let mut html = format!(
        "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th></tr></thead><tbody>",
        t.hamlet,
        t.hamlet,
        t.expected,
        t.recorded,
        t.submitted,
        t.voided,
        t.tallies,
        t.participation,
        t.last_sync,
        t.to_review
    );
    for h in hamlets {
        let c = &h.counts;
        let sync = match h.last_sync_at {
            Some(at) => {
                let mut s = format!("{} ({})", lang.datetime(at), lang.ago(at, now));
                if h.silent_devices > 0 {
                    let _ = write!(
                        s,
                        " <span class=\"warn\">⚠ {} {}</span>",
                        h.silent_devices,
                        t.silent_devices.to_lowercase()
                    );
                }
                s
            }
            None => format!("<span class=\"muted\">{}</span>", t.never),
        };
        let mut name = esc(&h.name);
        if with_commune {
            let _ = write!(name, "<span class=\"muted\">, {}</span>", esc(&h.commune_name));
        }
        if h.nothing_yet {
            let _ = write!(name, " <span class=\"badge x\">{}</span>", t.nothing_yet);
        }
        let _ = write!(
            html,
            "<tr><td><a href=\"/campaigns/{}/hamlets/{}\">{name}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} {}</td><td>{sync}</td><td class=\"n\">{}</td></tr>",
            url(campaign.id.as_str()),
            url(&h.id),
            lang.int(c.expected_voters),
            lang.int(c.recorded),
            lang.int(c.submitted),
            lang.int(c.voided),
            lang.int(c.tallies),
            bar(c.participation_percent, &lang.percent(c.participation_percent)),
            lang.percent(c.participation_percent),
            lang.int(c.to_review)
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// The export links; the per-response export only for administrators (it is not suppressed).
fn exports_block(t: &Texts, campaign: &Campaign, admin: bool) -> String {
    let id = url(campaign.id.as_str());
    let responses = if admin {
        format!(
            " &nbsp; | &nbsp; {}: <a href=\"/api/campaigns/{id}/export/responses.csv\">CSV</a> · <a href=\"/api/campaigns/{id}/export/responses.xlsx\">XLSX</a>",
            t.export_responses
        )
    } else {
        String::new()
    };
    format!(
        "<div class=\"card\"><h2>{}</h2><p>{}: <a href=\"/api/campaigns/{id}/export/results.csv\">CSV</a> · <a href=\"/api/campaigns/{id}/export/results.xlsx\">XLSX</a>{responses}</p></div>",
        t.exports, t.export_results
    )
}

/// Numbers too large to be true (possible ballot stuffing), as a card; empty when there are none.
fn alerts_block(t: &Texts, alerts: &[progress::Alert]) -> String {
    if alerts.is_empty() {
        return String::new();
    }
    let mut html = format!("<div class=\"card\" role=\"alert\"><h2>{}</h2><ul>", t.alerts_title);
    for alert in alerts {
        let text = match alert {
            progress::Alert::OverVoters { hamlet_name, counted, expected, .. } => t
                .alert_over_voters
                .replace("{hamlet}", &esc(hamlet_name))
                .replace("{n}", &counted.to_string())
                .replace("{m}", &expected.to_string()),
            progress::Alert::BusyCollector { hamlet_name, collector, day, responses, limit, .. } => t
                .alert_busy_collector
                .replace("{hamlet}", &esc(hamlet_name))
                .replace("{who}", &esc(collector))
                .replace("{n}", &responses.to_string())
                .replace("{day}", &esc(day))
                .replace("{m}", &limit.to_string()),
        };
        let _ = write!(html, "<li class=\"warn\">{text}</li>");
    }
    html.push_str("</ul></div>");
    html
}

async fn overview_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<CommuneQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let t = ctx.t();
        let lang = ctx.lang;
        let name = campaign.name.get(lang.code()).to_owned();
        let mut page = ctx.campaign_page(&campaign, format!("{} — {}", t.progress_title, name), Tab::Overview);
        let p = progress::load(&ctx.district, &campaign).await?;
        let c = &p.totals;
        let nothing = p.hamlets.iter().filter(|h| h.nothing_yet).count();
        let silent: usize = p.hamlets.iter().map(|h| h.silent_devices).sum();
        let mut html = format!(
            "<p class=\"sub\">{}: <strong>{}</strong> · {}: {}</p>",
            t.state,
            state_label(t, state_code(campaign.state)),
            t.schedule,
            schedule(lang, &campaign)
        );
        let _ = write!(
            html,
            "<h2>{}</h2><div class=\"kpi\"><div>{}<b>{}</b></div><div>{}<b>{}</b></div><div>{}<b>{}</b></div><div>{}<b>{}</b></div><div>{}<b>{}</b></div><div>{}<b>{}</b></div><div>{}<b class=\"{}\">{}</b></div><div>{}<b class=\"{}\">{}</b></div></div>",
            t.summary,
            t.recorded,
            lang.int(c.recorded),
            t.submitted,
            lang.int(c.submitted),
            t.voided,
            lang.int(c.voided),
            t.tallies,
            lang.int(c.tallies),
            t.participation,
            lang.percent(c.participation_percent),
            t.to_review,
            lang.int(c.to_review),
            t.hamlets_nothing,
            if nothing > 0 { "warn" } else { "ok" },
            nothing,
            t.silent_devices,
            if silent > 0 { "warn" } else { "ok" },
            silent
        );
        html.push_str(&alerts_block(t, &p.alerts));
        let _ = write!(
            html,
            "<h2>{}</h2><table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            t.progress_title,
            t.commune,
            t.commune,
            t.hamlets,
            t.expected,
            t.recorded,
            t.submitted,
            t.voided,
            t.participation,
            t.hamlets_nothing,
            t.silent_devices,
            t.hamlet
        );
        for commune in &p.communes {
            let cc = &commune.counts;
            let merged = commune
                .merged_into
                .as_ref()
                .map(|m| format!(" <span class=\"muted\">({} {})</span>", t.merged_into, esc(m)))
                .unwrap_or_default();
            let open = q.commune.as_deref() == Some(commune.id.as_str());
            let toggle = if open {
                format!("<a href=\"/campaigns/{}\">{}</a>", url(campaign.id.as_str()), t.hide_hamlets)
            } else {
                format!("<a href=\"/campaigns/{}?commune={}#hamlets\">{}</a>", url(campaign.id.as_str()), url(&commune.id), t.show_hamlets)
            };
            let warn = |n: usize| if n > 0 { format!("<span class=\"warn\">{n}</span>") } else { "0".into() };
            let _ = write!(
                html,
                "<tr><th scope=\"row\">{}{merged}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{toggle}</td></tr>",
                esc(&commune.name),
                commune.hamlets,
                lang.int(cc.expected_voters),
                lang.int(cc.recorded),
                lang.int(cc.submitted),
                lang.int(cc.voided),
                bar(cc.participation_percent, &lang.percent(cc.participation_percent)),
                lang.percent(cc.participation_percent),
                warn(commune.hamlets_with_nothing),
                warn(commune.silent_devices),
            );
        }
        let _ = write!(
            html,
            "<tr class=\"sum\"><th scope=\"row\">{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{} {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td></tr></tbody></table>",
            t.level_campaign,
            p.hamlets.len(),
            lang.int(c.expected_voters),
            lang.int(c.recorded),
            lang.int(c.submitted),
            lang.int(c.voided),
            bar(c.participation_percent, &lang.percent(c.participation_percent)),
            lang.percent(c.participation_percent),
            nothing,
            silent
        );
        if let Some(selected) = q.commune.as_deref() {
            let name = p.communes.iter().find(|c| c.id == selected).map_or(selected, |c| c.name.as_str());
            let list: Vec<&HamletProgress> = p.hamlets.iter().filter(|h| h.commune == selected).collect();
            let _ = write!(html, "<h2 id=\"hamlets\">{}</h2>", esc(name));
            html.push_str(&hamlet_rows(&ctx, &campaign, &list, p.now, false));
        }
        let attention: Vec<&HamletProgress> =
            p.hamlets.iter().filter(|h| h.nothing_yet || h.silent_devices > 0).take(ATTENTION).collect();
        if !attention.is_empty() {
            let _ = write!(html, "<h2>{}</h2><p class=\"muted\">{}</p>", t.attention, t.silent_note.replace("{}", &p.silent_after_days.to_string()));
            html.push_str(&hamlet_rows(&ctx, &campaign, &attention, p.now, true));
        }
        html.push_str(&exports_block(t, &campaign, ctx.actor.is_admin()));
        page.push(&html);
        Ok(page)
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- results

fn threshold_badges(t: &Texts, lang: Lang, results: &Results, crossed: Option<&Vec<bool>>) -> String {
    match crossed {
        None => format!("<span class=\"badge s\">{}</span>", t.suppressed),
        Some(crossed) => {
            let mut out = String::new();
            for (th, c) in results.thresholds.iter().zip(crossed) {
                if *c {
                    let _ = write!(out, "<span class=\"badge x\">⚠ {}</span>", esc(th.label.get(lang.code())));
                }
            }
            if out.is_empty() {
                out = format!("<span class=\"muted\">{}</span>", t.not_crossed);
            }
            out
        }
    }
}

fn level_cells(lang: Lang, row: &results::ResultRow, levels: usize) -> String {
    let mut out = String::new();
    match (&row.counts, &row.shares) {
        (Some(counts), Some(shares)) => {
            for (c, s) in counts.iter().zip(shares) {
                let _ = write!(out, "<td class=\"n\">{}</td><td class=\"n\">{}</td>", lang.int(*c), lang.percent(*s));
            }
        }
        _ => {
            for _ in 0..levels {
                out.push_str("<td class=\"n\">—</td><td class=\"n\">—</td>");
            }
        }
    }
    out
}

fn level_headers(lang: Lang, t: &Texts, item: &SubjectResult) -> String {
    let mut out = String::new();
    for l in &item.levels {
        let _ = write!(
            out,
            "<th scope=\"col\" class=\"n\">{} — {}</th><th scope=\"col\" class=\"n\">{} — {}</th>",
            esc(l.label.get(lang.code())),
            t.count,
            esc(l.label.get(lang.code())),
            t.share
        );
    }
    out
}

async fn results_page(ctx: PageCtx, Path(id): Path<String>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let t = ctx.t();
        let lang = ctx.lang;
        let name = campaign.name.get(lang.code()).to_owned();
        let mut page = ctx.campaign_page(&campaign, format!("{} — {}", t.results_title, name), Tab::Results);
        let results = results::load(&ctx.district, &campaign, Depth::Commune, None).await?;
        let mut html = format!("<p class=\"sub\">{}</p>", esc(&t.results_note.replace("{}", &results.min_group.to_string())));
        if let Some(b) = &results.batched {
            let text = t.results_batched.replacen("{}", &lang.int(b.batch), 1).replacen("{}", &lang.int(b.pending), 1);
            let _ = write!(html, "<p class=\"sub\" id=\"batched\">{}</p>", esc(&text));
        }
        if let Some(p) = &results.published {
            let _ = write!(html, "<p class=\"sub\" id=\"frozen\">{}</p>", esc(&t.results_frozen.replace("{}", &lang.int(p.later))));
        }
        let Some(first) = results.subjects.first() else {
            page.push(&html);
            return Ok(page);
        };
        let labels: Vec<String> = first.levels.iter().map(|l| l.label.get(lang.code()).to_owned()).collect();
        html.push_str(&legend(&labels));
        let rows: Vec<(String, usize, Option<Vec<u64>>)> = results
            .subjects
            .iter()
            .map(|s| (s.name.clone(), 0, s.overall().and_then(|r| r.counts.clone())))
            .collect();
        html.push_str(&stacked_chart(&format!("{} — {}", t.chart_of, name), &rows, lang));
        let thresholds: Vec<String> = results.thresholds.iter().map(|th| esc(th.label.get(lang.code()))).collect();
        let _ = write!(
            html,
            "<p class=\"muted\">{}: {}</p><table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th>{}<th scope=\"col\">{}</th></tr></thead><tbody>",
            t.thresholds,
            thresholds.join("; "),
            t.results_title,
            t.subject,
            t.position,
            t.total,
            level_headers(lang, t, first),
            t.thresholds
        );
        for item in &results.subjects {
            let Some(row) = item.overall() else { continue };
            let _ = write!(
                html,
                "<tr><th scope=\"row\"><a href=\"/campaigns/{}/results/{}\">{}</a></th><td>{}</td><td class=\"n\" data-total=\"{}\">{}</td>{}<td>{}</td></tr>",
                url(campaign.id.as_str()),
                url(&item.subject),
                esc(&item.name),
                esc(&item.position),
                row.total,
                lang.int(row.total),
                level_cells(lang, row, item.levels.len()),
                threshold_badges(t, lang, &results, row.crossed.as_ref())
            );
        }
        html.push_str("</tbody></table>");
        html.push_str(&exports_block(t, &campaign, ctx.actor.is_admin()));
        page.push(&html);
        Ok(page)
    }
    .await;
    ctx.respond(page)
}

async fn subject_page(
    ctx: PageCtx,
    Path((id, subject)): Path<(String, String)>,
    Query(q): Query<CommuneQuery>,
) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let t = ctx.t();
        let lang = ctx.lang;
        let (_, subject_id) = api::ResultsQuery { depth: None, subject: Some(subject.clone()) }.parse(&campaign)?;
        let results = results::load(&ctx.district, &campaign, Depth::Hamlet, subject_id.as_ref()).await?;
        let Some(item) = results.subjects.first() else {
            return Err(DistrictError::NotFound(format!("no results for {subject:?}")));
        };
        let mut page = ctx.campaign_page(&campaign, format!("{} — {}", item.name, item.position), Tab::Results);
        let units: HashMap<&str, &results::UnitRow> = results.units.iter().map(|u| (u.id.as_str(), u)).collect();
        // Communes and above, and the hamlets of the commune asked for.
        let shown: Vec<(&results::UnitRow, &results::ResultRow)> = results
            .units
            .iter()
            .zip(&item.rows)
            .filter(|(u, _)| u.level != "hamlet" || u.parent.as_deref() == q.commune.as_deref())
            .collect();
        let labels: Vec<String> = item.levels.iter().map(|l| l.label.get(lang.code()).to_owned()).collect();
        let mut html = format!("<p class=\"sub\">{}</p>", esc(&t.results_note.replace("{}", &results.min_group.to_string())));
        html.push_str(&legend(&labels));
        let chart_rows: Vec<(String, usize, Option<Vec<u64>>)> = shown
            .iter()
            .map(|(u, r)| {
                let name = if u.id == OVERALL { t.level_campaign.to_owned() } else { u.name.clone() };
                (name, u.depth, r.counts.clone())
            })
            .collect();
        html.push_str(&stacked_chart(&format!("{} — {}", t.chart_of, item.name), &chart_rows, lang));
        let _ = write!(
            html,
            "<table><caption>{} — {}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th>{}<th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th><th scope=\"col\"></th></tr></thead><tbody>",
            t.by_unit,
            esc(&item.name),
            t.unit,
            t.level,
            t.total,
            level_headers(lang, t, item),
            t.thresholds,
            t.participation
        );
        for (u, r) in &shown {
            let name = if u.id == OVERALL { t.level_campaign.to_owned() } else { u.name.clone() };
            let merged = u
                .merged_into
                .as_ref()
                .map(|m| format!(" <span class=\"muted\">({} {})</span>", t.merged_into, esc(m)))
                .unwrap_or_default();
            let link = match u.level {
                "commune" if q.commune.as_deref() == Some(u.id.as_str()) => String::new(),
                "commune" => format!(
                    "<a href=\"/campaigns/{}/results/{}?commune={}#u-{}\">{}</a>",
                    url(campaign.id.as_str()),
                    url(&item.subject),
                    url(&u.id),
                    esc(&u.id),
                    t.show_hamlets
                ),
                "hamlet" => format!("<a href=\"/campaigns/{}/hamlets/{}\">{}</a>", url(campaign.id.as_str()), url(&u.id), t.details),
                _ => String::new(),
            };
            let _ = write!(
                html,
                "<tr class=\"d{}{}\" id=\"u-{}\"><th scope=\"row\">{}{merged}</th><td>{}</td><td class=\"n\">{}</td>{}<td>{}</td><td class=\"n\">{}</td><td>{link}</td></tr>",
                u.depth.min(4),
                if u.id == OVERALL { " sum" } else { "" },
                esc(&u.id),
                esc(&name),
                level_label(t, u.level),
                lang.int(r.total),
                level_cells(lang, r, item.levels.len()),
                threshold_badges(t, lang, &results, r.crossed.as_ref()),
                pct(lang, units.get(u.id.as_str()).and_then(|x| x.participation_percent)),
            );
        }
        html.push_str("</tbody></table>");
        page.push(&html);
        Ok(page)
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- hamlet

async fn hamlet_page(ctx: PageCtx, Path((id, hamlet)): Path<(String, String)>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let t = ctx.t();
        let lang = ctx.lang;
        let p = progress::load(&ctx.district, &campaign).await?;
        let Some(h) = p.hamlets.iter().find(|h| h.id == hamlet) else {
            return Err(DistrictError::NotFound(format!("no hamlet {hamlet:?} in campaign {id}")));
        };
        let commune = p.communes.iter().find(|c| c.id == h.commune).map_or("", |c| c.name.as_str());
        let mut page = ctx.campaign_page(&campaign, format!("{} — {}", h.name, commune), Tab::Overview);
        let mut html = hamlet_rows(&ctx, &campaign, &[h], p.now, true);
        let _ = write!(html, "<h2>{}</h2>", t.devices);
        html.push_str(&device_table(&ctx, &campaign, h.devices.iter().collect(), p.now));
        let results = results::load_commune(&ctx.district, &campaign, &h.commune).await?;
        let Some(index) = results.units.iter().position(|u| u.id == hamlet) else {
            page.push(&html);
            return Ok(page);
        };
        if let Some(first) = results.subjects.first() {
            let _ = write!(
                html,
                "<h2>{}</h2><p class=\"sub\">{}</p><table><caption>{} — {}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th>{}<th scope=\"col\">{}</th></tr></thead><tbody>",
                t.results_title,
                esc(&t.results_note.replace("{}", &results.min_group.to_string())),
                t.results_title,
                esc(&h.name),
                t.subject,
                t.total,
                level_headers(lang, t, first),
                t.thresholds
            );
            for item in &results.subjects {
                let r = &item.rows[index];
                let _ = write!(
                    html,
                    "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td>{}<td>{}</td></tr>",
                    esc(&item.name),
                    lang.int(r.total),
                    level_cells(lang, r, item.levels.len()),
                    threshold_badges(t, lang, &results, r.crossed.as_ref())
                );
            }
            html.push_str("</tbody></table>");
        }
        let items: Vec<review::ReviewItem> =
            review::items(&ctx.district, &campaign, true, &ctx.actor).await?.into_iter().filter(|i| i.hamlet == hamlet).collect();
        if !items.is_empty() {
            let _ = write!(html, "<h2>{}</h2>", t.review_title);
            html.push_str(&review_cards(&ctx, &campaign, &items, "open"));
        }
        page.push(&html);
        Ok(page)
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

async fn comments_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<CommentsQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let t = ctx.t();
        let lang = ctx.lang;
        let mut page = ctx.campaign_page(&campaign, t.comments_title, Tab::Comments);
        let text = q.q.clone().unwrap_or_default();
        let subject = q.subject.clone().filter(|s| !s.is_empty());
        let number = page_number(q.page.as_deref())? as i64;
        let found = review::comments(&ctx.district, &campaign, &text, subject.as_deref(), COMMENTS_PAGE, (number - 1) * COMMENTS_PAGE).await?;
        let mut html = format!(
            "<form method=\"get\" class=\"card\" role=\"search\"><label for=\"q\">{}</label><input type=\"search\" id=\"q\" name=\"q\" value=\"{}\" size=\"40\"> <label for=\"subject\">{}</label><select id=\"subject\" name=\"subject\"><option value=\"\">{}</option>",
            t.search_label,
            esc(&text),
            t.subject,
            t.all_subjects
        );
        for s in &campaign.subjects {
            let selected = if subject.as_deref() == Some(s.id.as_str()) { " selected" } else { "" };
            let _ = write!(html, "<option value=\"{}\"{selected}>{} — {}</option>", esc(s.id.as_str()), esc(&s.name), esc(&s.position));
        }
        let _ = write!(
            html,
            "</select> <button type=\"submit\">{}</button></form><p>{}: <strong>{}</strong></p><table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            t.search,
            t.found,
            lang.int(found.total.max(0) as u64),
            t.comments_title,
            t.subject,
            t.hamlet,
            t.comment
        );
        for c in &found.items {
            let place = match &c.hamlet_name {
                Some(h) => format!("{}, {}", esc(h), esc(&c.commune_name)),
                None => format!("{} <span class=\"muted\">{}</span>", esc(&c.commune_name), t.hamlet_hidden),
            };
            let _ = write!(html, "<tr><td>{}</td><td>{place}</td><td>{}</td></tr>", esc(&c.subject_name), esc(&c.text));
        }
        html.push_str("</tbody></table><p>");
        let base = format!(
            "/campaigns/{}/comments?q={}&subject={}",
            url(campaign.id.as_str()),
            url(&text),
            url(subject.as_deref().unwrap_or(""))
        );
        if number > 1 {
            let _ = write!(html, "<a href=\"{}&page={}\">← {}</a> ", esc(&base), number - 1, t.previous);
        }
        if number * COMMENTS_PAGE < found.total {
            let _ = write!(html, "<a href=\"{}&page={}\">{} →</a>", esc(&base), number + 1, t.next);
        }
        html.push_str("</p>");
        page.push(&html);
        Ok(page)
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

fn review_cards(ctx: &PageCtx, campaign: &Campaign, items: &[review::ReviewItem], status: &str) -> String {
    let csrf = ctx.csrf_field();
    let t = ctx.t();
    let lang = ctx.lang;
    let mut html = String::new();
    for (n, item) in items.iter().enumerate() {
        let (badge, what) = match item.flag.as_deref() {
            None => (t.conflict, readable_field(campaign, lang, &item.path)),
            Some(flag) => (t.flag, flag_label(t, flag).to_owned()),
        };
        let _ = write!(
            html,
            "<section class=\"card\" aria-labelledby=\"i{n}\"><h3 id=\"i{n}\"><span class=\"badge x\">{badge}</span> {} — <a href=\"/campaigns/{}/hamlets/{}\">{}</a>, {}</h3><p class=\"muted\">{} {}</p>",
            esc(&what),
            url(campaign.id.as_str()),
            url(&item.hamlet),
            esc(&item.hamlet_name),
            esc(&item.commune_name),
            t.response,
            esc(&item.entity_id)
        );
        if item.kind == "conflict" {
            let _ = write!(
                html,
                "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
                t.values, t.values, t.device
            );
            for v in &item.values {
                let shown =
                    if v.shown { format!(" <span class=\"badge\">{}</span>", t.shown_value) } else { String::new() };
                let short: String = match &v.device {
                    Some(device) => device.clone(),
                    None => v.actor.chars().take(12).collect(),
                };
                let _ = write!(
                    html,
                    "<tr><td>{}{shown}</td><td><code title=\"{}\">{}</code></td></tr>",
                    esc(&readable_value(lang, &v.value)),
                    esc(&v.actor),
                    esc(&short)
                );
            }
            html.push_str("</tbody></table>");
        } else if matches!(item.flag.as_deref(), Some("edited_after_seal" | "seal_rewritten")) {
            let text = |k: &str| {
                item.detail
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(|v| readable_value(lang, v))
                    .unwrap_or_else(|| "—".into())
            };
            let key = item.detail.get("key").and_then(|k| k.as_str()).unwrap_or("");
            let _ = write!(
                html,
                "<p>{}: {} — {}: <strong>{}</strong>, {}: {}</p>",
                t.field,
                esc(&readable_field(campaign, lang, key)),
                t.sealed_value,
                esc(&text("sealed")),
                t.current_value,
                esc(&text("current"))
            );
        } else {
            let _ = write!(html, "<p><code>{}</code></p>", esc(&item.detail.to_string()));
        }
        match &item.reviewed {
            Some(r) => {
                let _ = write!(
                    html,
                    "<p class=\"ok\">✔ {} {} {} ({}): {}</p>",
                    t.reviewed,
                    t.reviewed_by,
                    esc(&r.by),
                    lang.datetime(r.at),
                    esc(&r.comment)
                );
            }
            None => {
                let _ = write!(
                    html,
                    "<form method=\"post\" class=\"review\" action=\"/campaigns/{}/review\">{csrf}<input type=\"hidden\" name=\"item_key\" value=\"{}\"><input type=\"hidden\" name=\"status\" value=\"{}\"><label for=\"c{n}\">{}</label><textarea id=\"c{n}\" name=\"comment\" maxlength=\"2000\" rows=\"2\"></textarea><button type=\"submit\">{}</button></form>",
                    url(campaign.id.as_str()),
                    esc(&item.item_key),
                    esc(status),
                    t.review_comment,
                    t.mark_reviewed
                );
            }
        }
        html.push_str("</section>");
    }
    html
}

async fn review_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<ReviewQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let t = ctx.t();
        let mut page = ctx.campaign_page(&campaign, t.review_title, Tab::Review);
        let all = q.status.as_deref() == Some("all");
        let items = review::items(&ctx.district, &campaign, !all, &ctx.actor).await?;
        let base = format!("/campaigns/{}/review", url(campaign.id.as_str()));
        let current = |yes: bool| if yes { " aria-current=\"page\"" } else { "" };
        let mut html = format!(
            "<p class=\"sub\">{}</p><nav class=\"tabs\" aria-label=\"{}\"><a href=\"{base}\"{}>{}</a><a href=\"{base}?status=all\"{}>{}</a></nav>",
            t.review_note,
            t.filter,
            current(!all),
            t.show_open,
            current(all),
            t.show_all
        );
        html.push_str(&alerts_block(t, &progress::load(&ctx.district, &campaign).await?.alerts));
        if items.is_empty() {
            let _ = write!(html, "<p class=\"notice\">{}</p>", t.nothing_to_review);
        }
        let link = if all { format!("{base}?status=all&") } else { format!("{base}?") };
        let (shown, links) = paged(t, &items, page_number(q.page.as_deref())?, REVIEW_PAGE, &link);
        html.push_str(&review_cards(&ctx, &campaign, shown, if all { "all" } else { "open" }));
        html.push_str(&links);
        page.push(&html);
        Ok(page)
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
        Ok::<_, DistrictError>(format!("/campaigns/{}/review{status}", url(&id)))
    }
    .await;
    match done {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => error_page(ctx.lang, &e),
    }
}

// ---------------------------------------------------------------- devices

fn device_table(ctx: &PageCtx, campaign: &Campaign, mut devices: Vec<&progress::DeviceRow>, now: i64) -> String {
    let t = ctx.t();
    let lang = ctx.lang;
    if devices.is_empty() {
        return format!("<p>{}</p>", t.no_devices);
    }
    devices.sort_by(|a, b| b.silent.cmp(&a.silent).then(b.last_sync_at.cmp(&a.last_sync_at)));
    let mut html = format!(
        "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th></tr></thead><tbody>",
        t.devices_title, t.device, t.hamlet, t.last_sync, t.first_seen, t.peer, t.syncs
    );
    for d in devices {
        let silent = if d.silent { format!(" <span class=\"badge x\">⚠ {}</span>", t.silent) } else { String::new() };
        let _ = write!(
            html,
            "<tr><th scope=\"row\">{}</th><td><a href=\"/campaigns/{}/hamlets/{}\">{}</a></td><td>{} ({}){silent}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
            esc(&d.device),
            url(campaign.id.as_str()),
            url(&d.hamlet),
            esc(&d.hamlet_name),
            lang.datetime(d.last_sync_at),
            lang.ago(d.last_sync_at, now),
            lang.datetime(d.first_seen_at),
            esc(&d.peer),
            lang.int(d.syncs.max(0) as u64)
        );
    }
    html.push_str("</tbody></table>");
    html
}

async fn devices_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<PageQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let t = ctx.t();
        let mut page = ctx.campaign_page(&campaign, t.devices_title, Tab::Devices);
        let p = progress::load(&ctx.district, &campaign).await?;
        let mut devices: Vec<&progress::DeviceRow> = p.hamlets.iter().flat_map(|h| h.devices.iter()).collect();
        devices.sort_by(|a, b| b.silent.cmp(&a.silent).then(b.last_sync_at.cmp(&a.last_sync_at)));
        let mut html =
            format!("<p class=\"sub\">{}</p>", t.silent_note.replace("{}", &p.silent_after_days.to_string()));
        let base = format!("/campaigns/{}/devices?", url(campaign.id.as_str()));
        let (shown, links) = paged(t, &devices, page_number(q.page.as_deref())?, TABLE_PAGE, &base);
        html.push_str(&device_table(&ctx, &campaign, shown.to_vec(), p.now));
        html.push_str(&links);
        page.push(&html);
        Ok(page)
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- admin: audit

#[derive(Debug, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    q: Option<String>,
    before: Option<String>,
}

async fn audit_page(ctx: PageCtx, Query(q): Query<AuditQuery>) -> Response {
    let page = async {
        let t = ctx.t();
        let lang = ctx.lang;
        let mut page = ctx.page(t.audit_title, Section::Admin);
        let filter = audit::AuditFilter {
            actor: q.actor.clone().filter(|s| !s.is_empty()),
            action: q.action.clone().filter(|s| !s.is_empty()),
            text: q.q.clone().filter(|s| !s.is_empty()),
            before: q.before.as_deref().and_then(|b| b.parse().ok()),
            limit: 100,
        };
        let entries = audit::list(ctx.district.store(), &filter).await?;
        let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
        let mut html = format!(
            "<form method=\"get\" class=\"card\"><label for=\"actor\">{}</label><input type=\"text\" id=\"actor\" name=\"actor\" value=\"{}\"><label for=\"action\">{}</label><input type=\"text\" id=\"action\" name=\"action\" value=\"{}\"><label for=\"aq\">{}</label><input type=\"search\" id=\"aq\" name=\"q\" value=\"{}\"> <button type=\"submit\">{}</button></form>",
            t.actor,
            v(&q.actor),
            t.action,
            v(&q.action),
            t.search,
            v(&q.q),
            t.filter
        );
        let _ = write!(
            html,
            "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            t.audit_title, t.at, t.actor, t.action, t.target, t.detail
        );
        for e in &entries {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                lang.datetime(e.at),
                esc(&e.actor),
                esc(&e.action),
                esc(&e.target),
                esc(&e.detail)
            );
        }
        html.push_str("</tbody></table>");
        if let (Some(last), true) = (entries.last(), entries.len() == 100) {
            let _ = write!(
                html,
                "<p><a href=\"/admin/audit?actor={}&amp;action={}&amp;q={}&amp;before={}\">{} →</a></p>",
                url(q.actor.as_deref().unwrap_or("")),
                url(q.action.as_deref().unwrap_or("")),
                url(q.q.as_deref().unwrap_or("")),
                last.id,
                t.older
            );
        }
        page.push(&html);
        Ok(page)
    }
    .await;
    ctx.respond(page)
}

// ---------------------------------------------------------------- admin: campaigns

#[derive(Debug, Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn manage_page(ctx: PageCtx) -> Response {
    let page = manage(&ctx, None).await;
    ctx.respond(page)
}

async fn manage(ctx: &PageCtx, error: Option<&DistrictError>) -> Result<Page, DistrictError> {
    let csrf = ctx.csrf_field();
    let t = ctx.t();
    let lang = ctx.lang;
    let mut page = ctx.page(t.manage_title, Section::Admin);
    let mut html = error_box(t, error);
    let list = ctx.district.catalog().campaigns().await?;
    let _ = write!(
        html,
        "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        t.campaigns_title, t.name, t.state, t.updated
    );
    for c in &list {
        let _ = write!(
            html,
            "<tr><td><a href=\"/admin/campaigns/{}\">{}</a> <span class=\"muted\">({})</span></td><td>{}</td><td>{}</td></tr>",
            url(&c.id),
            esc(&c.name_vi),
            esc(&c.id),
            state_label(t, &c.state),
            lang.datetime(c.updated_at)
        );
    }
    html.push_str("</tbody></table>");
    let today = Day::from_unix_seconds(ctx.district.store().now_ms() / 1000);
    let _ = write!(
        html,
        "<form method=\"post\" action=\"/admin/campaigns\" class=\"card\">{csrf}<h2>{}</h2><label for=\"id\">{}</label><input type=\"text\" id=\"id\" name=\"id\" required pattern=\"[A-Za-z0-9._-]{{1,64}}\"><label for=\"name_vi\">{}</label><input type=\"text\" id=\"name_vi\" name=\"name_vi\" required size=\"60\"><label for=\"name_en\">{}</label><input type=\"text\" id=\"name_en\" name=\"name_en\" size=\"60\"><label for=\"opens_on\">{}</label><input type=\"date\" id=\"opens_on\" name=\"opens_on\" required value=\"{today}\"><label for=\"closes_on\">{}</label><input type=\"date\" id=\"closes_on\" name=\"closes_on\" required value=\"{}\"><p><button type=\"submit\">{}</button></p></form>",
        t.new_campaign,
        t.campaign_id,
        t.name_vi,
        t.name_en,
        t.opens_on,
        t.closes_on,
        today.plus_days(20),
        t.create
    );
    page.push(&html);
    Ok(page)
}

fn error_box(t: &Texts, error: Option<&DistrictError>) -> String {
    let Some(error) = error else { return String::new() };
    let (_, message) = error.code_and_message();
    let mut html =
        format!("<div class=\"error\" role=\"alert\"><p><strong>{}:</strong> {}</p>", t.error, esc(&message));
    if let DistrictError::Invalid { details, .. } = error {
        html.push_str("<ul>");
        for d in details {
            let _ = write!(html, "<li>{} {}: {}</li>", t.line, d.line, esc(&d.message));
        }
        html.push_str("</ul>");
    }
    html.push_str("</div>");
    html
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
        Ok(id) => Redirect::to(&format!("/admin/campaigns/{}?done=1", url(&id))).into_response(),
        Err(e) => {
            let page = manage(&ctx, Some(&e)).await;
            form_failure(&ctx, page, &e)
        }
    }
}

fn form_failure(ctx: &PageCtx, page: Result<Page, DistrictError>, e: &DistrictError) -> Response {
    let status = district_status(e);
    match page {
        Ok(page) if !status.is_server_error() => ctx.html(status, page.render()),
        _ => error_page(ctx.lang, e),
    }
}

async fn campaign_admin(
    ctx: &PageCtx,
    id: &str,
    error: Option<&DistrictError>,
    done: bool,
) -> Result<Page, DistrictError> {
    let csrf = ctx.csrf_field();
    let campaign = ctx.district.catalog().require(id).await?;
    let t = ctx.t();
    let lang = ctx.lang;
    let mut page = ctx.page(format!("{} — {}", t.edit_campaign, campaign.name.vi), Section::Admin);
    let mut html = error_box(t, error);
    if done {
        let _ = write!(html, "<p class=\"notice\" role=\"status\">{}</p>", t.done);
    }
    let cid = url(campaign.id.as_str());
    let _ = write!(
        html,
        "<p class=\"sub\">{}: <strong>{}</strong> · {}: {} · {}: {} · {}: {} · <a href=\"/campaigns/{cid}\">{}</a></p>",
        t.state,
        state_label(t, state_code(campaign.state)),
        t.schedule,
        schedule(lang, &campaign),
        t.subjects_count,
        campaign.subjects.len(),
        t.hamlets,
        campaign.hamlets.len(),
        t.nav_overview
    );
    let next = match campaign.state {
        CampaignState::Draft => Some(("open", t.open_campaign)),
        CampaignState::Open => Some(("closed", t.close_campaign)),
        CampaignState::Closed => Some(("published", t.publish_campaign)),
        CampaignState::Published => None,
    };
    if let Some((to, label)) = next {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"/admin/campaigns/{cid}/state\" class=\"card\">{csrf}<input type=\"hidden\" name=\"to\" value=\"{to}\"><p class=\"muted\">{}</p><button type=\"submit\">{label}</button></form>",
            t.confirm_hint
        );
    }
    if campaign.state == CampaignState::Draft {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"/admin/campaigns/{cid}\" class=\"card\">{csrf}<h2>{}</h2><label for=\"name_vi\">{}</label><input type=\"text\" id=\"name_vi\" name=\"name_vi\" required size=\"60\" value=\"{}\"><label for=\"name_en\">{}</label><input type=\"text\" id=\"name_en\" name=\"name_en\" size=\"60\" value=\"{}\"><label for=\"opens_on\">{}</label><input type=\"date\" id=\"opens_on\" name=\"opens_on\" value=\"{}\"><label for=\"closes_on\">{}</label><input type=\"date\" id=\"closes_on\" name=\"closes_on\" value=\"{}\"><p><button type=\"submit\">{}</button></p></form>",
            t.edit_campaign,
            t.name_vi,
            esc(&campaign.name.vi),
            t.name_en,
            esc(&campaign.name.en),
            t.opens_on,
            campaign.schedule.opens_on,
            t.closes_on,
            campaign.schedule.closes_on,
            t.save
        );
        for (what, label) in [("subjects", t.subjects_import), ("hamlets", t.hamlets_import)] {
            let _ = write!(
                html,
                "<form method=\"post\" action=\"/admin/campaigns/{cid}/{what}\" class=\"card\">{csrf}<h2>{label}</h2><label for=\"{what}-text\">{}</label><textarea id=\"{what}-text\" name=\"text\" required></textarea><p><button type=\"submit\">{}</button></p></form>",
                t.csv_text, t.import
            );
        }
    } else {
        let _ = write!(html, "<p class=\"muted\">{}</p>", t.only_draft);
    }
    let _ = write!(
        html,
        "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        t.subject, t.name, t.position, t.commune
    );
    for s in &campaign.subjects {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.position),
            esc(s.commune.as_str())
        );
    }
    html.push_str("</tbody></table>");
    page.push(&html);
    Ok(page)
}

async fn campaign_admin_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<DoneQuery>) -> Response {
    let page = campaign_admin(&ctx, &id, None, q.done.is_some()).await;
    ctx.respond(page)
}

async fn admin_outcome(ctx: PageCtx, id: &str, done: Result<(), DistrictError>) -> Response {
    match done {
        Ok(()) => Redirect::to(&format!("/admin/campaigns/{}?done=1", url(id))).into_response(),
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

async fn units(ctx: &PageCtx, error: Option<&DistrictError>, done: bool, number: usize) -> Result<Page, DistrictError> {
    let csrf = ctx.csrf_field();
    let t = ctx.t();
    let lang = ctx.lang;
    let mut page = ctx.page(t.units_title, Section::Admin);
    let mut html = error_box(t, error);
    if done {
        let _ = write!(html, "<p class=\"notice\" role=\"status\">{}</p>", t.done);
    }
    let _ = write!(
        html,
        "<form method=\"post\" action=\"/admin/units\" class=\"card\">{csrf}<h2>{}</h2><label for=\"units-text\">{}</label><textarea id=\"units-text\" name=\"text\" required></textarea><p><button type=\"submit\">{}</button></p></form>",
        t.units_import, t.csv_text, t.import
    );
    let tree = ctx.district.catalog().units().await?;
    let mut all: Vec<&hamlet_sync_core::Unit> = tree.units().collect();
    all.sort_by_cached_key(|u| (u.level, fold_search(&u.name), u.id.to_string()));
    let (list, links) = paged(t, &all, number, TABLE_PAGE, "/admin/units?");
    let _ = write!(
        html,
        "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">ID</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        t.units_title, t.name, t.level, t.parent, t.valid, t.lineage
    );
    let name_of = |id: &hamlet_sync_core::UnitId| tree.get(id).map_or_else(|| id.to_string(), |u| u.name.clone());
    for u in list {
        let level = match u.level {
            hamlet_sync_core::UnitLevel::Province => t.level_province,
            hamlet_sync_core::UnitLevel::District => t.level_district,
            hamlet_sync_core::UnitLevel::Commune => t.level_commune,
            hamlet_sync_core::UnitLevel::Hamlet => t.level_hamlet,
        };
        let valid = match u.valid_until {
            Some(until) => format!("{} {} {} {}", t.from, lang.day(u.valid_from), t.until, lang.day(until)),
            None => format!("{} {}", t.from, lang.day(u.valid_from)),
        };
        let mut lineage = String::new();
        if let Some(into) = &u.merged_into {
            let _ = write!(lineage, "{} {}", t.merged_into, esc(&name_of(into)));
        }
        if !u.merged_from.is_empty() {
            let names: Vec<String> = u.merged_from.iter().map(|m| esc(&name_of(m))).collect();
            let _ = write!(lineage, "{} {}", t.merged_from, names.join(", "));
        }
        let _ = write!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td><td>{level}</td><td>{}</td><td>{valid}</td><td>{lineage}</td></tr>",
            esc(&u.name),
            esc(u.id.as_str()),
            u.parent.as_ref().map(|p| esc(&name_of(p))).unwrap_or_default()
        );
    }
    html.push_str("</tbody></table>");
    html.push_str(&links);
    page.push(&html);
    Ok(page)
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
