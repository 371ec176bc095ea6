//! A campaign's devices (`/devices`).

use super::*;

pub(super) fn device_table(
    chrome: &Chrome,
    campaign: &Campaign,
    mut devices: Vec<&progress::DeviceRow>,
    now: i64,
) -> Markup {
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

pub(super) async fn devices_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<PageQuery>) -> Response {
    let page = async {
        let campaign = ctx.district.catalog().require(&id).await?;
        let progress = progress::load(&ctx.district, &campaign).await?;
        let number = page_number(q.page.as_deref())?;
        Ok(render_devices(ctx.chrome(), &DevicesView { campaign: &campaign, progress: &progress, number }))
    }
    .await;
    ctx.respond(page)
}
