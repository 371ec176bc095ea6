//! Accounts: people, sessions, tokens, assignments, enrollment codes and devices, in the
//! database.
//!
//! - [`limiter`]: brute-force limits on sign-in and enrollment.
//! - [`secret`]: random tokens and codes, token and password hashes.
//! - [`feed`]: what the district tells a commune relay of its hamlets' collectors and devices.

pub mod feed;
pub mod limiter;
pub mod secret;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hamlet_sync_core::{CampaignId, DocumentId, UnitId};
use serde::{Deserialize, Serialize};

use self::secret::RandomError;
use crate::store::{BeginWrite, Store, StoreError, on_pool, query_failed};

/// What a person may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// District organisation board: manages campaigns, units, people, devices.
    Admin,
    /// District staff and working groups: read results, comments, progress; export.
    Viewer,
    /// Records in the hamlets assigned to them.
    Collector,
    /// A commune-office relay server, scoped to its hamlets.
    Relay,
}

impl Role {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Collector => "collector",
            Role::Relay => "relay",
        }
    }

    /// The role with this name.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Admin, Role::Viewer, Role::Collector, Role::Relay].into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the role signs in with a password (staff) rather than through devices.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Admin | Role::Viewer)
    }
}

/// A person known to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Person {
    /// Identifier (sign-in name for staff).
    pub id: String,
    /// Name shown.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Whether the password must be changed before anything else.
    pub must_change_password: bool,
}

/// An enrolled device, as admins see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Device {
    /// Identifier.
    pub id: String,
    /// Whose it is.
    pub person_id: String,
    /// Name given at enrollment.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Last sync, unix milliseconds.
    pub last_sync_at: Option<i64>,
    /// Revocation, unix milliseconds.
    pub revoked_at: Option<i64>,
    /// How far its clock was from the server's when it last connected to sync (device minus
    /// server, milliseconds), if it said.
    pub clock_offset_ms: Option<i64>,
    /// Its Automerge actor ids.
    pub actors: Vec<String>,
}

/// A successful enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolled {
    /// The new device.
    pub device_id: String,
    /// Its token, shown once.
    pub token: String,
    /// Its person.
    pub person: Person,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Wrong name or password (deliberately not saying which).
    #[error("wrong name or password")]
    BadCredentials,
    /// A person with this id exists.
    #[error("{0} already exists")]
    Exists(String),
    /// No such person, device or token.
    #[error("{0} not found")]
    NotFound(String),
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
    /// The enrollment code is unknown.
    #[error("unknown enrollment code")]
    UnknownCode,
    /// The enrollment code has expired.
    #[error("this enrollment code has expired; ask for a new one")]
    ExpiredCode,
    /// The enrollment code was used already.
    #[error("this enrollment code was already used")]
    UsedCode,
    /// An actor id is enrolled to another device already.
    #[error("actor {0} is already enrolled to another device")]
    ActorTaken(String),
    /// A password computation could not run (its worker thread failed).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// An actor id that names a document: the actor of a ledger's skeleton, never a device's.
    #[error("actor {0} is a document's own actor and cannot be enrolled")]
    ActorReserved(String),
    /// The device would hold more than [`MAX_DEVICE_ACTORS`] actor ids.
    #[error("a device holds at most {max} actor ids ({held} held, {asked} new asked for); enroll the device again", max = MAX_DEVICE_ACTORS)]
    TooManyActors {
        /// Actor ids the device holds now.
        held: usize,
        /// New ones it asked for.
        asked: usize,
    },
}

/// The demo mode's accounts, documented in the README: never created outside demo mode.
pub const DEMO_ACCOUNTS: [(&str, &str, Role); 2] =
    [("demo-admin", "demo-admin-2025", Role::Admin), ("demo-viewer", "demo-viewer-2025", Role::Viewer)];

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest password accepted, in bytes: longer input is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The longest sign-in name accepted (ids are at most 64 characters).
pub const MAX_NAME_BYTES: usize = 64;
/// Actor ids given in one enrollment or one `POST /api/device/actors`.
pub const MAX_ACTORS_PER_REQUEST: usize = 16;
/// Actor ids one device may hold: a phone takes one per install (and one per store it resets),
/// so 64 is ample, and a device cannot fill the actor table or reserve ids at will.
pub const MAX_DEVICE_ACTORS: usize = 64;

fn check_id(kind: &str, id: &str) -> Result<(), AccountError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!("invalid {kind} {id:?}: use 1 to 64 letters, digits, '-', '_' or '.'")))
    }
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect())
        .flatten()
}

/// Whether `actor` is an Automerge actor id as hex (1 to 32 bytes).
pub fn is_actor_id(actor: &str) -> bool {
    !actor.is_empty()
        && actor.len() <= 64
        && actor.len().is_multiple_of(2)
        && actor.bytes().all(|b| b.is_ascii_hexdigit())
}

type PersonRow = (String, String, String, Option<String>, i64);

fn person(row: PersonRow) -> Option<(Person, Option<String>)> {
    let (id, display_name, role, hash, must) = row;
    Some((Person { id, display_name, role: Role::parse(&role)?, must_change_password: must != 0 }, hash))
}

/// Runs argon2 off the async runtime's threads, at most `permits` at a time: a flood of
/// sign-ins queues here instead of stalling every other request (health checks, sync).
#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<tokio::sync::Semaphore>,
}

impl Hasher {
    /// At most `concurrent` hashes at once (at least one).
    pub fn new(concurrent: usize) -> Hasher {
        Hasher { permits: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1))) }
    }

    /// One hash at a time per CPU.
    pub fn per_cpu() -> Hasher {
        Hasher::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AccountError> {
        let _permit = self.permits.acquire().await.map_err(|e| AccountError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| AccountError::Hashing(e.to_string()))
    }

    /// An argon2id hash of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AccountError> {
        let password = password.to_owned();
        Ok(self.run(move || secret::hash_password(&password)).await??)
    }

    /// Whether `password` matches `stored`.
    pub async fn verify(&self, password: &str, stored: &str) -> Result<bool, AccountError> {
        let (password, stored) = (password.to_owned(), stored.to_owned());
        self.run(move || secret::verify_password(&password, &stored)).await
    }
}

/// The accounts, over the store's database.
#[derive(Clone, Debug)]
pub struct Accounts {
    store: Store,
    session_ttl: Duration,
    hasher: Hasher,
}

impl Accounts {
    /// Accounts in `store`; staff sessions last `session_ttl`; one password hash at a time per
    /// CPU.
    pub fn new(store: Store, session_ttl: Duration) -> Self {
        Accounts { store, session_ttl, hasher: Hasher::per_cpu() }
    }

    /// The same accounts with another bound on concurrent password hashes.
    pub fn with_hasher(self, hasher: Hasher) -> Self {
        Accounts { hasher, ..self }
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// The person with this id.
    pub async fn person(&self, id: &str) -> Result<Option<Person>, AccountError> {
        Ok(self.person_and_hash(id).await?.map(|(p, _)| p))
    }

    async fn person_and_hash(&self, id: &str) -> Result<Option<(Person, Option<String>)>, AccountError> {
        const SQL: &str =
            "SELECT id, display_name, role, password_hash, must_change_password FROM people WHERE id = $1";
        let row: Option<PersonRow> =
            on_pool!(self.store, pool => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await)
                .map_err(query_failed("reading a person"))?;
        Ok(row.and_then(person))
    }

    /// Everyone, by id.
    pub async fn people(&self) -> Result<Vec<Person>, AccountError> {
        const SQL: &str = "SELECT id, display_name, role, password_hash, must_change_password FROM people ORDER BY id";
        let rows: Vec<PersonRow> = on_pool!(self.store, pool => sqlx::query_as(SQL).fetch_all(pool).await)
            .map_err(query_failed("listing people"))?;
        Ok(rows.into_iter().filter_map(person).map(|(p, _)| p).collect())
    }

    /// Creates a person. Staff get a one-time password, returned here and never stored in clear;
    /// it must be changed at first sign-in.
    pub async fn create_person(
        &self,
        id: &str,
        display_name: &str,
        role: Role,
    ) -> Result<Option<String>, AccountError> {
        check_id("person id", id)?;
        if display_name.trim().is_empty() {
            return Err(AccountError::Invalid("a display name is required".into()));
        }
        if self.person(id).await?.is_some() {
            return Err(AccountError::Exists(id.to_owned()));
        }
        let password = if role.is_staff() { Some(secret::random_password()?) } else { None };
        let hash = match &password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        const SQL: &str = "INSERT INTO people (id, display_name, role, password_hash, must_change_password, created_at) \
                           VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self.store, pool => sqlx::query(SQL)
            .bind(id).bind(display_name.trim()).bind(role.as_str()).bind(hash).bind(i64::from(password.is_some())).bind(self.store.now_ms())
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(query_failed("creating a person"))?;
        Ok(password)
    }

    /// Sets a password (without forcing a change, for the documented demo accounts, unless
    /// `must_change`). Sessions already open stay open: see [`Accounts::change_password`].
    pub async fn set_password(&self, id: &str, password: &str, must_change: bool) -> Result<(), AccountError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountError::Invalid(format!("a password has at most {MAX_PASSWORD_BYTES} bytes")));
        }
        let hash = self.hasher.hash(password).await?;
        const SQL: &str = "UPDATE people SET password_hash = $1, must_change_password = $2 WHERE id = $3";
        let done = on_pool!(self.store, pool => sqlx::query(SQL).bind(hash).bind(i64::from(must_change)).bind(id).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("setting a password"))?;
        if done == 0 {
            return Err(AccountError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Checks a staff member's password; on success opens a session: (person, session token,
    /// CSRF token).
    pub async fn sign_in(&self, id: &str, password: &str) -> Result<(Person, String, String), AccountError> {
        check_credentials_size(id, password)?;
        let Some((person, Some(hash))) = self.person_and_hash(id).await? else {
            // Spend the time a real check takes, so the answer does not reveal who exists.
            let _ = self.hasher.verify(password, DUMMY_HASH).await?;
            return Err(AccountError::BadCredentials);
        };
        if !person.role.is_staff() || !self.hasher.verify(password, &hash).await? {
            return Err(AccountError::BadCredentials);
        }
        let token = secret::random_token()?;
        let csrf = secret::random_token()?;
        let now = self.store.now_ms();
        let expires = now + self.session_ttl.as_millis() as i64;
        const SQL: &str =
            "INSERT INTO sessions (token_hash, person_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(self.store, pool => sqlx::query(SQL).bind(secret::hash_token(&token)).bind(&person.id).bind(&csrf).bind(now).bind(expires).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("opening a session"))?;
        Ok((person, token, csrf))
    }

    /// The person and CSRF token of a live session.
    pub async fn session(&self, token: &str) -> Result<Option<(Person, String)>, AccountError> {
        const SQL: &str = "SELECT p.id, p.display_name, p.role, p.password_hash, p.must_change_password, s.csrf \
             FROM sessions s JOIN people p ON p.id = s.person_id WHERE s.token_hash = $1 AND s.expires_at > $2";
        let row: Option<(String, String, String, Option<String>, i64, String)> = on_pool!(self.store, pool =>
            sqlx::query_as(SQL).bind(secret::hash_token(token)).bind(self.store.now_ms()).fetch_optional(pool).await)
        .map_err(query_failed("reading a session"))?;
        Ok(row.and_then(|(id, name, role, hash, must, csrf)| {
            person((id, name, role, hash, must)).map(|(p, _)| (p, csrf))
        }))
    }

    /// Ends a session.
    pub async fn sign_out(&self, token: &str) -> Result<(), AccountError> {
        on_pool!(self.store, pool => sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(secret::hash_token(token)).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("closing a session"))?;
        Ok(())
    }

    /// Changes a password after checking the current one; every session of the person except
    /// `keep` (the one asking, by its token) ends, so a stolen session dies with the old
    /// password. Returns how many sessions ended.
    pub async fn change_password(
        &self,
        id: &str,
        current: &str,
        new: &str,
        keep: Option<&str>,
    ) -> Result<u64, AccountError> {
        check_credentials_size(id, current)?;
        if new.len() > MAX_PASSWORD_BYTES {
            return Err(AccountError::Invalid(format!("a password has at most {MAX_PASSWORD_BYTES} bytes")));
        }
        let Some((_, Some(hash))) = self.person_and_hash(id).await? else { return Err(AccountError::BadCredentials) };
        if !self.hasher.verify(current, &hash).await? {
            return Err(AccountError::BadCredentials);
        }
        if new.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AccountError::Invalid(format!("a password needs at least {MIN_PASSWORD_CHARS} characters")));
        }
        if new == current {
            return Err(AccountError::Invalid("choose a password different from the current one".into()));
        }
        self.set_password(id, new, false).await?;
        self.end_sessions(id, keep).await
    }

    /// Ends every session of `person` except `keep` (a session token); returns how many ended.
    pub async fn end_sessions(&self, person: &str, keep: Option<&str>) -> Result<u64, AccountError> {
        let keep = keep.map(secret::hash_token).unwrap_or_default();
        const SQL: &str = "DELETE FROM sessions WHERE person_id = $1 AND token_hash <> $2";
        let ended = on_pool!(self.store, pool => sqlx::query(SQL).bind(person).bind(&keep).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("ending sessions"))?;
        Ok(ended)
    }

    /// Ends every session and revokes every API token of `person` (a lost laptop): returns
    /// (sessions ended, tokens revoked).
    pub async fn end_everything(&self, person: &str) -> Result<(u64, u64), AccountError> {
        if self.person(person).await?.is_none() {
            return Err(AccountError::NotFound(person.to_owned()));
        }
        let sessions = self.end_sessions(person, None).await?;
        const SQL: &str = "UPDATE api_tokens SET revoked_at = $1 WHERE person_id = $2 AND revoked_at IS NULL";
        let tokens = on_pool!(self.store, pool => sqlx::query(SQL).bind(self.store.now_ms()).bind(person).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("revoking API tokens"))?;
        Ok((sessions, tokens))
    }

    /// Creates an API token for `person`: (token id, token shown once).
    pub async fn create_api_token(&self, person: &str, label: &str) -> Result<(String, String), AccountError> {
        if self.person(person).await?.is_none() {
            return Err(AccountError::NotFound(person.to_owned()));
        }
        let id = format!("tok-{}", &secret::random_token()?[..12]);
        let token = secret::random_token()?;
        const SQL: &str =
            "INSERT INTO api_tokens (id, token_hash, person_id, label, created_at) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(self.store, pool => sqlx::query(SQL).bind(&id).bind(secret::hash_token(&token)).bind(person).bind(label).bind(self.store.now_ms()).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("creating an API token"))?;
        Ok((id, token))
    }

    /// Revokes an API token; `false` if there was none.
    pub async fn revoke_api_token(&self, id: &str) -> Result<bool, AccountError> {
        const SQL: &str = "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        let done = on_pool!(self.store, pool => sqlx::query(SQL).bind(self.store.now_ms()).bind(id).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("revoking an API token"))?;
        Ok(done > 0)
    }

    /// The person behind a live API token, and the token's id; with `day` (days since the
    /// epoch), also whether this is the token's first use that day, recorded so that it is
    /// first only once.
    pub async fn api_token_used(
        &self,
        token: &str,
        day: Option<i64>,
    ) -> Result<Option<(Person, String, bool)>, AccountError> {
        const SQL: &str = "SELECT p.id, p.display_name, p.role, p.password_hash, p.must_change_password, t.id \
             FROM api_tokens t JOIN people p ON p.id = t.person_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL";
        let row: Option<(String, String, String, Option<String>, i64, String)> = on_pool!(self.store, pool =>
            sqlx::query_as(SQL).bind(secret::hash_token(token)).fetch_optional(pool).await)
        .map_err(query_failed("reading an API token"))?;
        let Some((id, name, role, hash, must, token_id)) = row else { return Ok(None) };
        let Some((person, _)) = person((id, name, role, hash, must)) else { return Ok(None) };
        let first_today = match day {
            None => false,
            Some(day) => {
                const MARK: &str = "UPDATE api_tokens SET last_used_day = $1 WHERE id = $2 \
                                    AND (last_used_day IS NULL OR last_used_day < $1)";
                let marked = on_pool!(self.store, pool => sqlx::query(MARK).bind(day).bind(&token_id).execute(pool).await.map(|r| r.rows_affected()))
                    .map_err(query_failed("recording an API token's use"))?;
                marked > 0
            }
        };
        Ok(Some((person, token_id, first_today)))
    }

    /// Replaces the hamlets `person` works in for `campaign`.
    pub async fn set_assignments(&self, person: &str, campaign: &str, hamlets: &[String]) -> Result<(), AccountError> {
        check_id("campaign id", campaign)?;
        for h in hamlets {
            check_id("hamlet id", h)?;
        }
        match self.person(person).await? {
            None => return Err(AccountError::NotFound(person.to_owned())),
            Some(p) if p.role.is_staff() => {
                return Err(AccountError::Invalid(format!(
                    "{person} is {}: only collectors and relays are assigned hamlets",
                    p.role.as_str()
                )));
            }
            Some(_) => {}
        }
        on_pool!(self.store, pool => {
            let mut tx = pool.begin_write().await.map_err(query_failed("assigning hamlets"))?;
            sqlx::query("DELETE FROM assignments WHERE person_id = $1 AND campaign_id = $2")
                .bind(person).bind(campaign).execute(&mut *tx).await.map_err(query_failed("assigning hamlets"))?;
            for hamlet in hamlets.iter().collect::<HashSet<_>>() {
                sqlx::query("INSERT INTO assignments (person_id, campaign_id, hamlet_id) VALUES ($1, $2, $3)")
                    .bind(person).bind(campaign).bind(hamlet).execute(&mut *tx).await.map_err(query_failed("assigning hamlets"))?;
            }
            tx.commit().await.map_err(query_failed("assigning hamlets"))
        })?;
        Ok(())
    }

    /// The (campaign, hamlet) pairs `person` works in.
    pub async fn assignments(&self, person: &str) -> Result<Vec<(String, String)>, AccountError> {
        const SQL: &str =
            "SELECT campaign_id, hamlet_id FROM assignments WHERE person_id = $1 ORDER BY campaign_id, hamlet_id";
        on_pool!(self.store, pool => sqlx::query_as(SQL).bind(person).fetch_all(pool).await)
            .map_err(query_failed("reading assignments"))
            .map_err(AccountError::from)
    }

    /// Issues a one-time enrollment code for `person`, valid for `ttl`: (code, expiry in ms).
    pub async fn issue_code(&self, person: &str, ttl: Duration) -> Result<(String, i64), AccountError> {
        match self.person(person).await? {
            None => return Err(AccountError::NotFound(person.to_owned())),
            Some(p) if p.role.is_staff() => {
                return Err(AccountError::Invalid(format!(
                    "{person} is staff: devices are enrolled for collectors and relays"
                )));
            }
            Some(_) => {}
        }
        let code = secret::random_code()?;
        let now = self.store.now_ms();
        let expires = now + ttl.as_millis() as i64;
        const SQL: &str =
            "INSERT INTO enrollment_codes (code_hash, person_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self.store, pool => sqlx::query(SQL).bind(secret::hash_token(&secret::normalize_code(&code))).bind(person).bind(now).bind(expires).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("issuing an enrollment code"))?;
        Ok((code, expires))
    }

    /// Exchanges a one-time code for a device token, registering the device's actor ids. The
    /// code is spent in the same transaction, so it cannot serve twice even under a race.
    pub async fn enroll(&self, code: &str, actors: &[String], device_name: &str) -> Result<Enrolled, AccountError> {
        if actors.is_empty() || actors.len() > MAX_ACTORS_PER_REQUEST {
            return Err(AccountError::Invalid(format!("give 1 to {MAX_ACTORS_PER_REQUEST} actor ids")));
        }
        if let Some(bad) = actors.iter().find(|a| !is_actor_id(a)) {
            return Err(AccountError::Invalid(format!("{bad:?} is not an actor id (hex)")));
        }
        self.refuse_reserved(actors).await?;
        let code_hash = secret::hash_token(&secret::normalize_code(code));
        let device_id = format!("dev-{}", &secret::random_token()?[..16]);
        let token = secret::random_token()?;
        let name = if device_name.trim().is_empty() { "device" } else { device_name.trim() };
        let now = self.store.now_ms();
        let person_id: String = on_pool!(self.store, pool => {
            let mut tx = pool.begin_write().await.map_err(query_failed("enrolling"))?;
            let row: Option<(String, i64, Option<i64>)> =
                sqlx::query_as("SELECT person_id, expires_at, used_at FROM enrollment_codes WHERE code_hash = $1")
                    .bind(&code_hash).fetch_optional(&mut *tx).await.map_err(query_failed("enrolling"))?;
            let person_id = match row {
                None => return Err(AccountError::UnknownCode),
                Some((_, _, Some(_))) => return Err(AccountError::UsedCode),
                Some((_, expires, None)) if expires <= now => return Err(AccountError::ExpiredCode),
                Some((person, _, None)) => person,
            };
            let spent = sqlx::query("UPDATE enrollment_codes SET used_at = $1, device_id = $2 WHERE code_hash = $3 AND used_at IS NULL")
                .bind(now).bind(&device_id).bind(&code_hash).execute(&mut *tx).await.map_err(query_failed("enrolling"))?;
            if spent.rows_affected() != 1 {
                return Err(AccountError::UsedCode);
            }
            sqlx::query("INSERT INTO devices (id, person_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&device_id).bind(&person_id).bind(name).bind(secret::hash_token(&token)).bind(now)
                .execute(&mut *tx).await.map_err(query_failed("enrolling"))?;
            for actor in actors {
                let taken: Option<(String,)> = sqlx::query_as("SELECT device_id FROM device_actors WHERE actor_id = $1")
                    .bind(actor.to_lowercase()).fetch_optional(&mut *tx).await.map_err(query_failed("enrolling"))?;
                if taken.is_some() {
                    return Err(AccountError::ActorTaken(actor.clone()));
                }
                sqlx::query("INSERT INTO device_actors (actor_id, device_id) VALUES ($1, $2)")
                    .bind(actor.to_lowercase()).bind(&device_id).execute(&mut *tx).await.map_err(query_failed("enrolling"))?;
            }
            tx.commit().await.map_err(query_failed("enrolling"))?;
            Ok::<String, AccountError>(person_id)
        })?;
        let person = self.person(&person_id).await?.ok_or_else(|| AccountError::NotFound(person_id.clone()))?;
        Ok(Enrolled { device_id, token, person })
    }

    /// Refuses actor ids that are a document's id: the skeleton of a ledger is written by the
    /// actor made of its document id's bytes, on every device alike, so whoever owned that actor
    /// could write as the skeleton. Refused: the ids of every stored document and of every
    /// ledger and campaign document someone is assigned to (which a phone may create before the
    /// server stores it). The sync check also never counts the skeleton actor as a device's.
    async fn refuse_reserved(&self, actors: &[String]) -> Result<(), AccountError> {
        let candidates: Vec<(&String, DocumentId)> = actors
            .iter()
            .filter_map(|a| {
                let bytes = hex_bytes(a)?;
                let bytes: [u8; 16] = bytes.try_into().ok()?;
                Some((a, DocumentId::from_bytes(bytes)))
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let assigned: Vec<(String, String)> = on_pool!(self.store, pool =>
            sqlx::query_as("SELECT DISTINCT campaign_id, hamlet_id FROM assignments").fetch_all(pool).await)
        .map_err(query_failed("checking actors"))?;
        let mut reserved: HashSet<DocumentId> = HashSet::new();
        for (campaign, hamlet) in assigned {
            let (Ok(campaign), Ok(hamlet)) = (campaign.parse::<CampaignId>(), hamlet.parse::<UnitId>()) else {
                continue;
            };
            reserved.insert(DocumentId::for_campaign(&campaign));
            reserved.insert(DocumentId::for_ledger(&campaign, &hamlet));
        }
        for (actor, id) in candidates {
            let stored: Option<(String,)> = on_pool!(self.store, pool =>
                sqlx::query_as("SELECT id FROM documents WHERE id = $1").bind(id.to_string()).fetch_optional(pool).await)
            .map_err(query_failed("checking actors"))?;
            if stored.is_some() || reserved.contains(&id) {
                return Err(AccountError::ActorReserved(actor.clone()));
            }
        }
        Ok(())
    }

    /// Registers more actor ids for a device (after a reinstall, say).
    pub async fn add_actors(&self, device: &str, actors: &[String]) -> Result<(), AccountError> {
        if actors.is_empty() || actors.len() > MAX_ACTORS_PER_REQUEST {
            return Err(AccountError::Invalid(format!(
                "give 1 and at most {MAX_ACTORS_PER_REQUEST} actor ids at a time, not {}",
                actors.len()
            )));
        }
        if let Some(bad) = actors.iter().find(|a| !is_actor_id(a)) {
            return Err(AccountError::Invalid(format!("{bad:?} is not an actor id (hex)")));
        }
        self.refuse_reserved(actors).await?;
        on_pool!(self.store, pool => {
            let mut tx = pool.begin_write().await.map_err(query_failed("adding actors"))?;
            let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_actors WHERE device_id = $1")
                .bind(device).fetch_one(&mut *tx).await.map_err(query_failed("counting a device's actors"))?;
            let held = usize::try_from(held).unwrap_or(usize::MAX);
            let mut new = 0;
            for actor in actors {
                let owner: Option<(String,)> = sqlx::query_as("SELECT device_id FROM device_actors WHERE actor_id = $1")
                    .bind(actor.to_lowercase()).fetch_optional(&mut *tx).await.map_err(query_failed("adding actors"))?;
                match owner {
                    Some((d,)) if d == device => continue,
                    Some(_) => return Err(AccountError::ActorTaken(actor.clone())),
                    None => {}
                }
                new += 1;
                if held.saturating_add(new) > MAX_DEVICE_ACTORS {
                    return Err(AccountError::TooManyActors { held, asked: actors.len() });
                }
                sqlx::query("INSERT INTO device_actors (actor_id, device_id) VALUES ($1, $2)")
                    .bind(actor.to_lowercase()).bind(device).execute(&mut *tx).await.map_err(query_failed("adding actors"))?;
            }
            tx.commit().await.map_err(query_failed("adding actors"))?;
            Ok(())
        })
    }

    /// The device and person behind a live device token.
    pub async fn device_by_token(&self, token: &str) -> Result<Option<(String, Person)>, AccountError> {
        const SQL: &str = "SELECT d.id, p.id, p.display_name, p.role, p.password_hash, p.must_change_password \
             FROM devices d JOIN people p ON p.id = d.person_id WHERE d.token_hash = $1 AND d.revoked_at IS NULL";
        let row: Option<(String, String, String, String, Option<String>, i64)> = on_pool!(self.store, pool =>
            sqlx::query_as(SQL).bind(secret::hash_token(token)).fetch_optional(pool).await)
        .map_err(query_failed("reading a device"))?;
        Ok(row.and_then(|(device, id, name, role, hash, must)| {
            person((id, name, role, hash, must)).map(|(p, _)| (device, p))
        }))
    }

    /// Gives a live device a new token in place of `old` (the one it authenticated with),
    /// without re-enrollment: the old token stops working at once. Returns the new token.
    pub async fn rotate_device_token(&self, device: &str, old: &str) -> Result<String, AccountError> {
        let token = secret::random_token()?;
        const SQL: &str = "UPDATE devices SET token_hash = $1 WHERE id = $2 AND token_hash = $3 AND revoked_at IS NULL";
        let done = on_pool!(self.store, pool => sqlx::query(SQL).bind(secret::hash_token(&token)).bind(device).bind(secret::hash_token(old)).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("rotating a device token"))?;
        if done == 0 {
            return Err(AccountError::NotFound(device.to_owned()));
        }
        Ok(token)
    }

    /// Whether a device is still enrolled (not revoked).
    pub async fn device_active(&self, device: &str) -> Result<bool, AccountError> {
        let row: Option<(String,)> = on_pool!(self.store, pool =>
            sqlx::query_as("SELECT id FROM devices WHERE id = $1 AND revoked_at IS NULL").bind(device).fetch_optional(pool).await)
        .map_err(query_failed("reading a device"))?;
        Ok(row.is_some())
    }

    /// Every device, newest first.
    pub async fn devices(&self) -> Result<Vec<Device>, AccountError> {
        type Row = (String, String, String, i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = on_pool!(self.store, pool =>
            sqlx::query_as("SELECT id, person_id, name, created_at, last_sync_at, revoked_at, clock_offset_ms FROM devices ORDER BY created_at DESC, id")
                .fetch_all(pool).await)
        .map_err(query_failed("listing devices"))?;
        let actors: Vec<(String, String)> = on_pool!(self.store, pool =>
            sqlx::query_as("SELECT device_id, actor_id FROM device_actors ORDER BY actor_id").fetch_all(pool).await)
        .map_err(query_failed("listing devices"))?;
        Ok(rows
            .into_iter()
            .map(|(id, person_id, name, created_at, last_sync_at, revoked_at, clock_offset_ms)| Device {
                actors: actors.iter().filter(|(d, _)| *d == id).map(|(_, a)| a.clone()).collect(),
                id,
                person_id,
                name,
                created_at,
                last_sync_at,
                revoked_at,
                clock_offset_ms,
            })
            .collect())
    }

    /// Revokes a device: its token stops working at once. `false` if there was none to revoke.
    pub async fn revoke_device(&self, device: &str) -> Result<bool, AccountError> {
        const SQL: &str = "UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        let done = on_pool!(self.store, pool => sqlx::query(SQL).bind(self.store.now_ms()).bind(device).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("revoking a device"))?;
        Ok(done > 0)
    }

    /// Records that a device synced now.
    pub async fn touch_device(&self, device: &str) -> Result<(), AccountError> {
        on_pool!(self.store, pool => sqlx::query("UPDATE devices SET last_sync_at = $1 WHERE id = $2").bind(self.store.now_ms()).bind(device).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("recording a sync"))?;
        Ok(())
    }

    /// Records how far a device's clock is from the server's: `device_ms` is the time the
    /// device said it was (unix milliseconds) as it connected.
    pub async fn note_device_clock(&self, device: &str, device_ms: i64) -> Result<(), AccountError> {
        let offset = device_ms.saturating_sub(self.store.now_ms());
        on_pool!(self.store, pool => sqlx::query("UPDATE devices SET clock_offset_ms = $1 WHERE id = $2").bind(offset).bind(device).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query_failed("recording a device's clock"))?;
        Ok(())
    }

    /// Of `actors`, those enrolled to a live device whose person works in `hamlet` of
    /// `campaign`.
    pub async fn actors_allowed(
        &self,
        campaign: &str,
        hamlet: &str,
        actors: &[String],
    ) -> Result<HashSet<String>, AccountError> {
        const SQL: &str = "SELECT da.actor_id FROM device_actors da \
                           JOIN devices d ON d.id = da.device_id \
                           JOIN assignments a ON a.person_id = d.person_id \
                           WHERE d.revoked_at IS NULL AND a.campaign_id = $1 AND a.hamlet_id = $2 AND da.actor_id = $3";
        let mut allowed = HashSet::new();
        for actor in actors {
            let row: Option<(String,)> = on_pool!(self.store, pool =>
                sqlx::query_as(SQL).bind(campaign).bind(hamlet).bind(actor.to_lowercase()).fetch_optional(pool).await)
            .map_err(query_failed("checking actors"))?;
            if row.is_some() {
                allowed.insert(actor.clone());
            }
        }
        Ok(allowed)
    }

    /// The device each of `actors` (hex) is enrolled to, revoked or not.
    pub async fn actor_devices(&self, actors: &[String]) -> Result<HashMap<String, String>, AccountError> {
        const SQL: &str = "SELECT device_id FROM device_actors WHERE actor_id = $1";
        let mut devices = HashMap::new();
        for actor in actors {
            let row: Option<(String,)> = on_pool!(self.store, pool =>
                sqlx::query_as(SQL).bind(actor.to_lowercase()).fetch_optional(pool).await)
            .map_err(query_failed("reading actors' devices"))?;
            if let Some((device,)) = row {
                devices.insert(actor.clone(), device);
            }
        }
        Ok(devices)
    }

    /// Creates the documented demo accounts if they are missing (demo mode only): returns
    /// (name, password, role) of each, to print.
    pub async fn ensure_demo_accounts(&self) -> Result<Vec<(&'static str, &'static str, Role)>, AccountError> {
        let accounts = DEMO_ACCOUNTS.to_vec();
        for (name, password, role) in &accounts {
            if self.person(name).await?.is_none() {
                let display = if *role == Role::Admin { "Ban Tổ chức (demo)" } else { "Tổ công tác (demo)" };
                self.create_person(name, display, *role).await?;
                self.set_password(name, password, false).await?;
                self.audit("demo", "person.create", name, role.as_str()).await?;
            }
        }
        Ok(accounts)
    }

    /// Appends an entry to the audit log (the district's, shared by staff actions and security
    /// events).
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<(), AccountError> {
        Ok(crate::audit::record(&self.store, actor, action, target, detail).await?)
    }
}

/// Refuses a name or password too long to be real, before any hashing (so that a megabyte of
/// "password" costs nothing).
pub(crate) fn check_credentials_size(name: &str, password: &str) -> Result<(), AccountError> {
    if name.len() > MAX_NAME_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "a name has at most {MAX_NAME_BYTES} bytes and a password at most {MAX_PASSWORD_BYTES}"
        )));
    }
    Ok(())
}

/// An argon2id hash of a random string, checked against when the account does not exist so that
/// a wrong name takes as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0ZWlN3XqBLvXn7ZxWRo3S1q1xTkU3OB8H5dGxkPXbLs";
