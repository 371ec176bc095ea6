//! The audit log: every staff action (and, from the accounts module, security events), kept in
//! `audit_log`, newest first on the audit page.

use serde::Serialize;

use crate::store::{Store, StoreError, on_pool, query_failed};

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// When (unix ms).
    pub at: i64,
    /// Who ("anonymous" before sign-in exists).
    pub actor: String,
    /// What, as a stable code (`campaign.create`, `review.mark`, …).
    pub action: String,
    /// On what (a campaign id, an item key, …).
    pub target: String,
    /// Details for people.
    pub detail: String,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only actions starting with this.
    pub action: Option<String>,
    /// Only entries whose target or detail contains this.
    pub text: Option<String>,
    /// Only entries older than this id (paging).
    pub before: Option<i64>,
    /// At most this many (1–500).
    pub limit: i64,
}

/// Appends an entry, stamped now.
pub async fn record(store: &Store, actor: &str, action: &str, target: &str, detail: &str) -> Result<(), StoreError> {
    const SQL: &str = "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)";
    let at = super::now_ms();
    on_pool!(store, pool => {
        sqlx::query(SQL).bind(at).bind(actor).bind(action).bind(target).bind(detail).execute(pool).await.map(drop)
    })
    .map_err(query_failed("writing the audit log"))
}

fn like(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// Entries matching `filter`, newest first.
pub async fn list(store: &Store, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    const SQL: &str = "SELECT id, at, actor, action, target, detail FROM audit_log \
        WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action LIKE $3 ESCAPE '\\') \
        AND ($4 = '' OR target LIKE $5 ESCAPE '\\' OR detail LIKE $5 ESCAPE '\\') AND id < $6 \
        ORDER BY id DESC LIMIT $7";
    let actor = filter.actor.clone().unwrap_or_default();
    let action = filter.action.clone().unwrap_or_default();
    let action_like = format!("{}%", action.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let text = filter.text.clone().unwrap_or_default();
    let before = filter.before.unwrap_or(i64::MAX);
    let limit = filter.limit.clamp(1, 500);
    let rows: Vec<(i64, i64, String, String, String, String)> = on_pool!(store, pool => {
        sqlx::query_as(SQL)
            .bind(&actor)
            .bind(&action)
            .bind(&action_like)
            .bind(&text)
            .bind(like(&text))
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
    })
    .map_err(query_failed("reading the audit log"))?;
    Ok(rows
        .into_iter()
        .map(|(id, at, actor, action, target, detail)| AuditEntry { id, at, actor, action, target, detail })
        .collect())
}
