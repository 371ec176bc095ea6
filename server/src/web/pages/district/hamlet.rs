//! One hamlet (`/campaigns/{id}/hamlets/{hamlet}`).

use super::*;

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

pub(super) async fn hamlet_page(ctx: PageCtx, Path((id, hamlet)): Path<(String, String)>) -> Response {
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
