//! Conflicts and flags to review (`/review`), and the form that marks one reviewed.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct ReviewQuery {
    status: Option<String>,
    page: Option<String>,
}

pub(super) fn flag_label(t: &Texts, flag: &str) -> &'static str {
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
        "sealed_unreadable" => t.flag_sealed_unreadable,
        "unsealed" => t.flag_unsealed,
        "outside_ballot" => t.flag_outside_ballot,
        _ => t.flag_malformed_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag the projector raises has its own words (the fallback is for malformed keys).
    #[test]
    fn every_flag_the_projector_raises_has_a_label() {
        let t = Lang::Vi.texts();
        for code in crate::district::projector::FLAG_CODES {
            let label = flag_label(t, code);
            assert!(code == "malformed_key" || label != t.flag_malformed_key, "{code} has no label");
        }
    }
}

/// An answer key or path made readable: question and subject names in place of ids.
pub(super) fn readable_field(campaign: &Campaign, lang: Lang, key: &str) -> String {
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

pub(super) fn readable_value(lang: Lang, value: &str) -> String {
    match hamlet_sync_core::Level::from_code(value) {
        Some(level) => level.label().get(lang.code()).to_owned(),
        None => value.to_owned(),
    }
}

pub(super) fn review_cards(chrome: &Chrome, campaign: &Campaign, items: &[ReviewItem], status: &str) -> Markup {
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

pub(super) async fn review_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<ReviewQuery>) -> Response {
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
pub(super) struct ReviewForm {
    item_key: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    status: String,
}

pub(super) fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DistrictError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| DistrictError::bad("invalid_form", format!("the form is not valid: {e}")))
}

pub(super) async fn review_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
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
