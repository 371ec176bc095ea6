//! Residents' comments (`/comments`).

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct CommentsQuery {
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

pub(super) async fn comments_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<CommentsQuery>) -> Response {
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
