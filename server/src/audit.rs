//! The audit log: every staff action (and, from the accounts module, security events), kept in
//! `audit_log`, newest first on the audit page.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::{Store, StoreError, on_pool, query_failed};

/// Longest actor, action, target and detail stored, in characters: an entry cannot be made
/// large by whatever a client sends (a name, a search, a header).
pub const MAX_ACTOR_CHARS: usize = 128;
/// See [`MAX_ACTOR_CHARS`].
pub const MAX_ACTION_CHARS: usize = 64;
/// See [`MAX_ACTOR_CHARS`].
pub const MAX_TARGET_CHARS: usize = 256;
/// See [`MAX_ACTOR_CHARS`].
pub const MAX_DETAIL_CHARS: usize = 1024;

/// `text` cut to `max` characters (ending in `…` when cut), without control characters.
fn bounded(text: &str, max: usize) -> String {
    let clean = |c: char| if c.is_control() { ' ' } else { c };
    if text.chars().count() <= max {
        return text.chars().map(clean).collect();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).map(clean).collect();
    out.push('…');
    out
}

/// Who acts: set in the request's extensions by the authentication layer; "anonymous" until
/// then. Recorded in the audit log ("reviewed by").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The person's account name.
    pub name: String,
    /// Their role (`admin`, `viewer`, …).
    pub role: String,
}

impl Actor {
    /// The actor of a request nobody signed in to.
    pub fn anonymous() -> Actor {
        Actor { name: "anonymous".into(), role: "anonymous".into() }
    }

    /// Whether the actor may see admin pages and links.
    pub fn is_admin(&self) -> bool {
        self.role == "admin" || self.role == "anonymous"
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

/// An entry to append inside a transaction that also makes the change it records (see
/// `insert_in!`), so the change and its entry are committed together or not at all. Its texts
/// are bounded in length when it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who.
    pub actor: String,
    /// What, as a stable code.
    pub action: String,
    /// On what.
    pub target: String,
    /// Details for people.
    pub detail: String,
}

impl Entry {
    /// An entry by `actor`, each text bounded.
    pub fn new(actor: &str, action: &str, target: &str, detail: &str) -> Entry {
        Entry {
            actor: bounded(actor, MAX_ACTOR_CHARS),
            action: bounded(action, MAX_ACTION_CHARS),
            target: bounded(target, MAX_TARGET_CHARS),
            detail: bounded(detail, MAX_DETAIL_CHARS),
        }
    }
}

/// The statement [`insert_in`] runs.
pub(crate) const INSERT: &str = "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)";

/// Appends an [`Entry`] stamped `at` inside the open transaction `tx` (of either database, as
/// inside [`on_pool!`](crate::store::on_pool)); evaluates to `Result<(), StoreError>`.
macro_rules! insert_in {
    ($tx:expr, $at:expr, $entry:expr) => {{
        let entry: &$crate::audit::Entry = $entry;
        sqlx::query($crate::audit::INSERT)
            .bind($at)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.detail)
            .execute(&mut *$tx)
            .await
            .map(drop)
            .map_err($crate::store::query_failed("writing the audit log"))
    }};
}
pub(crate) use insert_in;

/// Appends an entry, stamped now; each text is bounded in length.
pub async fn record(store: &Store, actor: &str, action: &str, target: &str, detail: &str) -> Result<(), StoreError> {
    insert(store, actor, action, target, detail).await.map(drop)
}

async fn insert(store: &Store, actor: &str, action: &str, target: &str, detail: &str) -> Result<i64, StoreError> {
    const SQL: &str =
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id";
    let at = store.now_ms();
    let (actor, action) = (bounded(actor, MAX_ACTOR_CHARS), bounded(action, MAX_ACTION_CHARS));
    let (target, detail) = (bounded(target, MAX_TARGET_CHARS), bounded(detail, MAX_DETAIL_CHARS));
    let (id,): (i64,) = on_pool!(store, pool => {
        sqlx::query_as(SQL).bind(at).bind(&actor).bind(&action).bind(&target).bind(&detail).fetch_one(pool).await
    })
    .map_err(query_failed("writing the audit log"))?;
    Ok(id)
}

/// Events that repeat (attempts on a locked account, refusals) written once per key and
/// window: the first occurrence is a row, later ones in the window only update that row's
/// count, so a flood of them cannot grow the log.
#[derive(Debug)]
pub struct Coalescer {
    window: Duration,
    open: Mutex<HashMap<String, Open>>,
}

#[derive(Debug)]
struct Open {
    since: Instant,
    row: i64,
    count: u64,
    detail: String,
}

/// Keys followed at once; past this, repeats of new keys are logged by tracing only.
const MAX_OPEN_KEYS: usize = 10_000;

impl Coalescer {
    /// One row per key per `window`.
    pub fn new(window: Duration) -> Self {
        Coalescer { window, open: Mutex::new(HashMap::new()) }
    }

    /// Records an occurrence of the event `key` at `now`: a new row if it is the first in the
    /// window, else the count of the window's row goes up (shown in its detail).
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        &self,
        store: &Store,
        key: &str,
        now: Instant,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let repeat = {
            let mut open = crate::lock(&self.open);
            if open.len() >= MAX_OPEN_KEYS {
                let window = self.window;
                open.retain(|_, o| now.duration_since(o.since) < window);
            }
            let full = open.len() >= MAX_OPEN_KEYS;
            match open.get_mut(key) {
                Some(o) if now.duration_since(o.since) < self.window => {
                    o.count += 1;
                    Some((o.row, format!("{} ({} times in this window)", o.detail, o.count)))
                }
                _ if full => {
                    tracing::warn!(key, action, "audit coalescer full: event not written");
                    return Ok(());
                }
                _ => None,
            }
        };
        match repeat {
            Some((row, detail)) => {
                const SQL: &str = "UPDATE audit_log SET detail = $1 WHERE id = $2";
                let detail = bounded(&detail, MAX_DETAIL_CHARS);
                on_pool!(store, pool => sqlx::query(SQL).bind(&detail).bind(row).execute(pool).await.map(drop))
                    .map_err(query_failed("writing the audit log"))
            }
            None => {
                let row = insert(store, actor, action, target, detail).await?;
                let entry = Open { since: now, row, count: 1, detail: bounded(detail, MAX_DETAIL_CHARS / 2) };
                crate::lock(&self.open).insert(key.to_owned(), entry);
                Ok(())
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_and_cleaned() {
        assert_eq!(bounded("ordinary", 64), "ordinary");
        let long = bounded(&"x".repeat(5000), MAX_DETAIL_CHARS);
        assert_eq!(long.chars().count(), MAX_DETAIL_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(bounded("a\nb\u{7}c", 64), "a b c");
        assert_eq!(bounded("Thôn Đông", 4), "Thô…");
    }
}
