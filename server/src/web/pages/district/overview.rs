//! A campaign's progress (`/campaigns/{id}`), and the parts other tabs share: the hamlet table, the alerts, the export links.

use super::*;

pub(super) fn hamlet_rows(
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
                    @if !h.ballot.is_empty() {
                        br;
                        span.muted {
                            (t.evaluates) ": "
                            @for (i, s) in h.ballot.iter().enumerate() {
                                @if i > 0 { ", " }
                                span title=(s.position) { (s.name) }
                            }
                        }
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
pub(super) fn exports_block(t: &Texts, campaign: &Campaign, admin: bool) -> Markup {
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
pub(super) fn alerts_block(lang: Lang, alerts: &[progress::Alert]) -> Markup {
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

pub(super) async fn overview_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<CommuneQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let progress = progress::load(&ctx.district, &campaign).await?;
        let view = OverviewView { campaign: &campaign, progress: &progress, commune: q.commune.as_deref() };
        Ok(render_overview(ctx.chrome(), &view))
    }
    .await;
    ctx.respond(page)
}
