//! Campaign keys: the key pair each sealed campaign's answers are sealed for.
//!
//! When a version 2 campaign opens on a server with a key-encryption key (the `--campaign-kek`
//! file), the server makes the campaign's key pair, stores the private key wrapped under the
//! key-encryption key (`campaign_keys`), and publishes the public key in the campaign document.
//! The projector unwraps it to open the sealed answers. **Losing the private key loses the
//! campaign's answers**: [`export`] writes a backup wrapped under a passphrase, [`restore`]
//! brings it into a fresh server (see `docs/deploy.md`, "Campaign keys").
//!
//! Why a key file and not an operator passphrase: the server restarts unattended (after a power
//! cut, a crash, an upgrade) and must go on projecting without someone typing a passphrase; the
//! key file lives outside the database, so a database dump, a PostgreSQL host or a database
//! backup alone holds no readable key. Someone with both the server's disk and its key file can
//! read the answers — as can the district server itself, by design. The backup is wrapped
//! under a passphrase instead, because it leaves the server.

use std::path::Path;

use hamlet_sync_core::CampaignId;
use hamlet_sync_core::sealed::{self, PublicKey, SecretKey};

use super::DistrictError;
use crate::store::{Store, StoreError, query_failed};

/// A key-encryption key: 32 bytes from the server's configuration. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(…)")
    }
}

impl Kek {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Kek {
        Kek(bytes)
    }

    /// Reads a key file: 64 hex digits (surrounding white space ignored).
    pub fn read(path: &Path) -> Result<Kek, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let key: PublicKey =
            text.trim().parse().map_err(|_| format!("{}: a key file holds 64 hex digits", path.display()))?;
        Ok(Kek(key.to_bytes()))
    }

    /// A new random key, as 64 hex digits for a key file.
    pub fn generate_hex() -> Result<String, String> {
        Ok(PublicKey::from_bytes(random()?).to_hex())
    }
}

fn random() -> Result<[u8; 32], String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes)
}

fn internal(e: impl std::fmt::Display) -> DistrictError {
    DistrictError::Internal(e.to_string())
}

/// Makes and stores the key pair of `campaign`, unless it has one; returns its public key.
pub async fn make(store: &Store, kek: &Kek, campaign: &CampaignId) -> Result<PublicKey, DistrictError> {
    if let Some((public, _)) = stored(store, campaign).await? {
        return Ok(public);
    }
    let secret = SecretKey::from_seed(random().map_err(internal)?);
    let wrapped = sealed::wrap_secret(&kek.0, campaign, &secret, random().map_err(internal)?);
    insert(store, campaign, &secret.public_key(), &wrapped).await?;
    Ok(secret.public_key())
}

async fn insert(store: &Store, campaign: &CampaignId, public: &PublicKey, wrapped: &[u8]) -> Result<(), StoreError> {
    const SQL: &str =
        "INSERT INTO campaign_keys (campaign_id, public_key, wrapped, created_ms) VALUES ($1, $2, $3, $4)";
    let now = store.now_ms();
    crate::store::on_pool!(store, pool => {
        sqlx::query(SQL).bind(campaign.as_str()).bind(public.to_hex()).bind(wrapped).bind(now).execute(pool).await.map(drop)
    })
    .map_err(query_failed("storing a campaign key"))?;
    Ok(())
}

async fn stored(store: &Store, campaign: &CampaignId) -> Result<Option<(PublicKey, Vec<u8>)>, DistrictError> {
    const SQL: &str = "SELECT public_key, wrapped FROM campaign_keys WHERE campaign_id = $1";
    let row: Option<(String, Vec<u8>)> = crate::store::on_pool!(store, pool => {
        sqlx::query_as(SQL).bind(campaign.as_str()).fetch_optional(pool).await
    })
    .map_err(query_failed("reading a campaign key"))?;
    match row {
        None => Ok(None),
        Some((public, wrapped)) => Ok(Some((public.parse().map_err(internal)?, wrapped))),
    }
}

/// The private key of `campaign`, unwrapped; `None` when the server holds none.
pub async fn secret(store: &Store, kek: &Kek, campaign: &CampaignId) -> Result<Option<SecretKey>, DistrictError> {
    let Some((public, wrapped)) = stored(store, campaign).await? else { return Ok(None) };
    let secret = sealed::unwrap_secret(&kek.0, campaign, &wrapped)
        .map_err(|e| internal(format!("campaign {campaign}'s key does not unwrap with this key file: {e}")))?;
    if secret.public_key() != public {
        return Err(internal(format!("campaign {campaign}'s stored key does not match its public key")));
    }
    Ok(Some(secret))
}

/// The first line of a key backup.
const BACKUP_HEADER: &str = "hamlet-campaign-key/1";

/// A backup of `campaign`'s private key, wrapped under a key derived (argon2id) from
/// `passphrase`: a short text file to print or keep offline.
pub async fn export(
    store: &Store,
    kek: &Kek,
    campaign: &CampaignId,
    passphrase: &str,
) -> Result<String, DistrictError> {
    let secret = secret(store, kek, campaign)
        .await?
        .ok_or_else(|| DistrictError::NotFound(format!("this server holds no key for campaign {campaign}")))?;
    if passphrase.chars().count() < 12 {
        return Err(DistrictError::invalid("weak_passphrase", "a backup passphrase has at least 12 characters"));
    }
    let salt = random().map_err(internal)?;
    let wrapping = derive(passphrase, &salt)?;
    let wrapped = sealed::wrap_secret(&wrapping, campaign, &secret, random().map_err(internal)?);
    Ok(format!(
        "{BACKUP_HEADER}\ncampaign: {campaign}\npublic_key: {}\nsalt: {}\nwrapped: {}\n",
        secret.public_key(),
        hex(&salt),
        hex(&wrapped)
    ))
}

/// Restores a backup made by [`export`] into this server: the key is re-wrapped under this
/// server's key file. Returns the campaign and its public key. A server that already holds a
/// different key for the campaign refuses.
pub async fn restore(
    store: &Store,
    kek: &Kek,
    backup: &str,
    passphrase: &str,
) -> Result<(CampaignId, PublicKey), DistrictError> {
    let bad = |m: &str| DistrictError::invalid("invalid_backup", m.to_owned());
    let mut lines = backup.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(BACKUP_HEADER) {
        return Err(bad("not a Hamlet campaign key backup"));
    }
    let mut field = |name: &str| -> Result<String, DistrictError> {
        let line = lines.next().ok_or_else(|| bad("the backup is cut short"))?;
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| bad(&format!("expected {name}")))
    };
    let campaign: CampaignId = field("campaign")?.parse().map_err(|_| bad("invalid campaign id"))?;
    let public: PublicKey = field("public_key")?.parse().map_err(|_| bad("invalid public key"))?;
    let salt = unhex(&field("salt")?).ok_or_else(|| bad("invalid salt"))?;
    let wrapped = unhex(&field("wrapped")?).ok_or_else(|| bad("invalid wrapped key"))?;
    let wrapping = derive(passphrase, &salt)?;
    let secret = sealed::unwrap_secret(&wrapping, &campaign, &wrapped)
        .map_err(|_| DistrictError::invalid("wrong_passphrase", "the passphrase does not open this backup"))?;
    if secret.public_key() != public {
        return Err(bad("the backup's key does not match its public key"));
    }
    match stored(store, &campaign).await? {
        Some((held, _)) if held == public => {}
        Some(_) => {
            return Err(DistrictError::conflict(
                "campaign_key_exists",
                format!("this server holds another key for campaign {campaign}"),
            ));
        }
        None => {
            let rewrapped = sealed::wrap_secret(&kek.0, &campaign, &secret, random().map_err(internal)?);
            insert(store, &campaign, &public, &rewrapped).await?;
        }
    }
    Ok((campaign, public))
}

fn derive(passphrase: &str, salt: &[u8]) -> Result<[u8; 32], DistrictError> {
    use argon2::Argon2;
    let mut out = [0u8; 32];
    Argon2::default().hash_password_into(passphrase.as_bytes(), salt, &mut out).map_err(internal)?;
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}
