//! The audit log (`/admin/audit`).

use super::*;

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
pub(super) const AUDIT_PAGE: usize = 100;

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

pub(super) async fn audit_page(ctx: PageCtx, Query(q): Query<AuditQuery>) -> Response {
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
