//! Administrative units (`/admin/units`).

use super::*;

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

pub(super) async fn units(
    ctx: &PageCtx,
    error: Option<&DistrictError>,
    done: bool,
    number: usize,
) -> Result<Markup, DistrictError> {
    let tree = ctx.district.catalog().units().await?;
    Ok(render_units(ctx.chrome(), &tree, error, done, number))
}

pub(super) async fn units_page(ctx: PageCtx, Query(q): Query<PageQuery>) -> Response {
    let page = match page_number(q.page.as_deref()) {
        Ok(number) => units(&ctx, None, q.done.is_some(), number).await,
        Err(e) => Err(e),
    };
    ctx.respond(page)
}

pub(super) async fn units_post(ctx: PageCtx, body: Bytes) -> Response {
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
