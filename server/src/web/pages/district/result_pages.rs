//! Results: every subject (`/results`) and one subject by unit (`/results/{subject}`).

use super::*;

pub(super) fn threshold_badges(t: &Texts, lang: Lang, results: &Results, crossed: Option<&Vec<bool>>) -> Markup {
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

pub(super) fn level_cells(lang: Lang, row: &results::ResultRow, levels: usize) -> Markup {
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

pub(super) fn level_columns(lang: Lang, t: &Texts, item: &SubjectResult) -> Vec<Column> {
    item.levels
        .iter()
        .flat_map(|l| {
            let label = l.label.get(lang.code());
            [num(format!("{label} — {}", t.count)), num(format!("{label} — {}", t.share))]
        })
        .collect()
}

/// `first` columns, then a count and a share per level, then the thresholds.
pub(super) fn result_columns(mut first: Vec<Column>, lang: Lang, t: &Texts, item: &SubjectResult) -> Vec<Column> {
    first.extend(level_columns(lang, t, item));
    first.push(col(t.thresholds));
    first
}

pub(super) fn scale_labels(lang: Lang, item: &SubjectResult) -> Vec<String> {
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

/// The columns of the table of every subject: who, the levels, the thresholds, and the
/// participation of each cadre's own voters (those of the hamlets that evaluate them, so it
/// differs from cadre to cadre when their scopes do).
fn every_subject_columns(lang: Lang, t: &Texts, first: &SubjectResult) -> Vec<Column> {
    let mut columns =
        result_columns(vec![col(t.subject), col(t.position), col(t.category), num(t.total)], lang, t, first);
    columns.push(num(t.participation));
    columns
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
            @let columns = every_subject_columns(lang, t, first);
            (data_table(Some(t.results_title), &columns, html! {
                @for item in &results.subjects {
                    @if let Some(row) = item.overall() {
                        tr {
                            th scope="row" { a href={ "/campaigns/" (href(campaign.id.as_str())) "/results/" (href(&item.subject)) } { (item.name) } }
                            td { (item.position) @if let Some(post) = item.post { br; span.muted { (lang.post(post)) } } }
                            td { (item.category.map_or("", |c| lang.category(c))) }
                            td.n data-total=(row.total) { (lang.int(row.total)) }
                            (level_cells(lang, row, item.levels.len()))
                            td { (threshold_badges(t, lang, results, row.crossed.as_ref())) }
                            td.n data-participation="" { (pct(lang, row.participation_percent)) }
                        }
                    }
                }
            }))
            (exports_block(t, campaign, chrome.menu == Menu::Admin))
        }
    };
    layout(chrome, &frame, body)
}

pub(super) async fn results_page(ctx: PageCtx, Path(id): Path<String>) -> Response {
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

pub(super) async fn subject_page(
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
