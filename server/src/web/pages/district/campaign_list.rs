//! The list of campaigns (`/`).

use super::*;

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

pub(super) async fn campaigns_page(ctx: PageCtx) -> Response {
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
