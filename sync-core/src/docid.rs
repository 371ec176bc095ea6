//! Document identifiers, compatible with automerge-repo: 16 bytes, written in base58check, and
//! URLs of the form `automerge:<id>`.
//!
//! Hamlet derives ids from what a document is about, so that a phone can name the ledger of a
//! hamlet while offline and every device names it the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{CampaignId, UnitId};

/// The prefix of an automerge-repo document URL.
pub const URL_PREFIX: &str = "automerge:";

/// The longest text a document id can be: 16 bytes and a 4-byte checksum take at most 28
/// base58 characters.
pub const MAX_ID_CHARS: usize = 28;

/// A 16-byte document id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocumentId([u8; 16]);

/// Text that is not a document id or URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentIdError {
    /// Not base58check, or the checksum does not match.
    #[error("document id {0:?} is not valid base58check")]
    Encoding(String),
    /// Longer than any 16-byte id can be (base58 decoding takes time quadratic in the length,
    /// so a long text is refused before it is decoded).
    #[error("document id of {len} characters is too long (at most {MAX_ID_CHARS})")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Decoded to the wrong number of bytes.
    #[error("document id {id:?} holds {len} bytes, expected 16")]
    Length {
        /// The text given.
        id: String,
        /// The number of bytes it decoded to.
        len: usize,
    },
}

impl DocumentId {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        DocumentId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id of a campaign's document.
    pub fn for_campaign(campaign: &CampaignId) -> Self {
        derive(&["hamlet/campaign/1", campaign.as_str()])
    }

    /// The id of the ledger of `hamlet` in `campaign`.
    pub fn for_ledger(campaign: &CampaignId, hamlet: &UnitId) -> Self {
        derive(&["hamlet/ledger/1", campaign.as_str(), hamlet.as_str()])
    }

    /// The `automerge:` URL of this document.
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// Reads an id, with or without the `automerge:` prefix.
    pub fn parse_url_or_id(text: &str) -> Result<Self, DocumentIdError> {
        text.strip_prefix(URL_PREFIX).unwrap_or(text).parse()
    }
}

// The parts are joined with NUL, which no identifier may contain, so different parts never
// produce the same input.
fn derive(parts: &[&str]) -> DocumentId {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    DocumentId(bytes)
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_ID_CHARS {
            return Err(DocumentIdError::TooLong { len: s.len() });
        }
        let bytes = bs58::decode(s).with_check(None).into_vec().map_err(|_| DocumentIdError::Encoding(s.to_owned()))?;
        let array: [u8; 16] =
            bytes.as_slice().try_into().map_err(|_| DocumentIdError::Length { id: s.to_owned(), len: bytes.len() })?;
        Ok(DocumentId(array))
    }
}

impl TryFrom<String> for DocumentId {
    type Error = DocumentIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DocumentId> for String {
    fn from(id: DocumentId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> CampaignId {
        CampaignId::new("2025-tin-nhiem").expect("valid")
    }

    #[test]
    fn round_trips_through_text_and_url() {
        let id = DocumentId::for_ledger(&campaign(), &UnitId::new("thon-1").expect("valid"));
        let url = id.url();
        assert!(url.starts_with("automerge:"));
        assert_eq!(DocumentId::parse_url_or_id(&url), Ok(id));
        assert_eq!(id.to_string().parse::<DocumentId>(), Ok(id));
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let h1 = UnitId::new("thon-1").expect("valid");
        let h2 = UnitId::new("thon-2").expect("valid");
        assert_eq!(DocumentId::for_ledger(&campaign(), &h1), DocumentId::for_ledger(&campaign(), &h1));
        assert_ne!(DocumentId::for_ledger(&campaign(), &h1), DocumentId::for_ledger(&campaign(), &h2));
        assert_ne!(DocumentId::for_campaign(&campaign()), DocumentId::for_ledger(&campaign(), &h1));
    }

    #[test]
    fn matches_automerge_repo_encoding() {
        // bs58check is base58 of the bytes followed by the first four bytes of their double
        // SHA-256; sixteen zero bytes therefore start with sixteen '1's.
        let zero = DocumentId::from_bytes([0; 16]);
        let text = zero.to_string();
        assert!(text.starts_with(&"1".repeat(16)), "{text}");
        assert_eq!(text.parse::<DocumentId>(), Ok(zero));
    }

    #[test]
    fn refuses_bad_checksums_and_lengths() {
        let good = DocumentId::from_bytes([7; 16]).to_string();
        let mut corrupted = good.clone().into_bytes();
        let last = corrupted.len() - 1;
        corrupted[last] = if corrupted[last] == b'2' { b'3' } else { b'2' };
        let corrupted = String::from_utf8(corrupted).expect("ascii");
        assert!(matches!(corrupted.parse::<DocumentId>(), Err(DocumentIdError::Encoding(_))));
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert!(matches!(short.parse::<DocumentId>(), Err(DocumentIdError::Length { len: 8, .. })));
        assert!("not base58 0OIl".parse::<DocumentId>().is_err());
    }

    #[test]
    fn a_long_text_is_refused_before_decoding() {
        // The longest id there is: twenty 0xff bytes' worth of base58.
        let longest = bs58::encode([0xffu8; 16]).with_check().into_string();
        assert!(longest.len() <= MAX_ID_CHARS, "{}", longest.len());
        let huge = "2".repeat(4_000_000);
        // Decoding it would take minutes; it is refused by its length alone.
        assert_eq!(huge.parse::<DocumentId>(), Err(DocumentIdError::TooLong { len: 4_000_000 }));
    }
}
