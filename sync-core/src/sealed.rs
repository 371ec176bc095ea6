//! Sealed answers: a response's answers and comments written only as ciphertext for the
//! campaign's key, which only the district server holds.
//!
//! One *sealed object* holds one version of a response's answers (comments are answers too). It
//! is HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//! ChaCha20-Poly1305, the campaign's public key as the recipient. The HPKE `info` names the
//! campaign and the `aad` names the campaign, the response and the version, so a sealed object
//! opens only as the version of the response it was made for: copied into another response or
//! another campaign, it does not open.
//!
//! ```text
//! byte 0       format: 1
//! bytes 1..5   version of the response's answers, big-endian, at least 1
//! bytes 5..37  enc: the sender's ephemeral X25519 public key
//! bytes 37..   ciphertext of the plaintext, with its 16-byte tag
//!
//! info = "hamlet/sealed/1" 0x00 <campaign id>
//! aad  = "hamlet/sealed/1" 0x00 <campaign id> 0x00 <response id> 0x00 <version, 4 bytes big-endian>
//! plaintext = UTF-8 JSON: {"answers": {<answer key>: <value>, …}}
//! ```
//!
//! Values are as in the plain ledger: a rating's level code (string), yes/no (boolean), a
//! number (integer), a comment (string). `docs/schema.md` says where sealed objects are written.
//!
//! This crate reads no random source: sealing takes 32 bytes of fresh randomness from the
//! caller, and a campaign's key pair is derived from 32 random bytes the caller supplies.
//!
//! ```
//! use std::collections::BTreeMap;
//! use hamlet_sync_core::sealed::{self, Binding, SecretKey};
//! use hamlet_sync_core::{AnswerKey, AnswerValue, fixtures};
//!
//! let secret = SecretKey::from_seed([7; 32]);
//! let campaign = fixtures::open_campaign().id;
//! let response = "r-1".parse()?;
//! let binding = Binding { campaign: &campaign, response: &response, version: 1 };
//! let answers = BTreeMap::from([(AnswerKey::once(fixtures::question("du-hop")), AnswerValue::YesNo(true))]);
//! let sealed = sealed::seal(&secret.public_key(), &binding, &answers, [9; 32])?;
//! let opened = sealed::open(&secret, &campaign, &response, &sealed)?;
//! assert_eq!(opened.version, 1);
//! assert_eq!(opened.answers["du-hop"], hamlet_sync_core::ledger::Scalar::Bool(true));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::{TryCryptoRng, TryRng};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::form::{AnswerKey, AnswerValue};
use crate::ids::{CampaignId, ResponseId};
use crate::ledger::Scalar;

type Kem = X25519HkdfSha256;

/// The format byte of sealed objects this crate writes and reads.
pub const FORMAT: u8 = 1;

/// The HPKE suite, as the campaign document names it.
pub const SUITE: &str = "hpke-base-x25519-sha256-chacha20poly1305";

/// The label that starts `info` and `aad`.
const LABEL: &[u8] = b"hamlet/sealed/1";

/// The key in a response's `answers` map (and its seal's) that holds the sealed object of the
/// current version. `~` is not allowed in question ids, so it cannot name a question.
pub const SEALED_KEY: &str = "~sealed";

/// Format byte, version, enc.
const HEADER: usize = 1 + 4 + 32;
/// ChaCha20-Poly1305's tag.
const TAG: usize = 16;

/// The largest sealed object accepted, in bytes: far above a ballot of every subject with the
/// longest comments, far below what would strain a phone or the server.
pub const MAX_SEALED_BYTES: usize = 256 * 1024;

/// Why a sealed object could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The version must be at least 1.
    #[error("a sealed version is at least 1")]
    Version,
    /// The answers would make a sealed object over [`MAX_SEALED_BYTES`].
    #[error("the answers take {0} bytes sealed, more than {MAX_SEALED_BYTES}")]
    TooLarge(usize),
    /// The public key is not a usable X25519 key.
    #[error("the campaign's public key is not usable")]
    BadKey,
}

/// Why a sealed object did not open. None of these is a panic, whatever the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than a header and a tag.
    #[error("sealed object of {0} bytes is truncated")]
    Truncated(usize),
    /// Longer than [`MAX_SEALED_BYTES`].
    #[error("sealed object of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A format this crate does not read.
    #[error("sealed object format {0} is unknown")]
    Format(u8),
    /// Version 0.
    #[error("sealed object has version 0")]
    Version,
    /// Not sealed for this key, this campaign, this response and this version, or altered.
    #[error("sealed object does not open: wrong key, another response's, or altered")]
    Rejected,
    /// It opened, but its plaintext is not the JSON this page describes.
    #[error("sealed object opened but does not hold answers: {0}")]
    Plaintext(String),
}

/// A campaign's public key: anyone may seal for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> PublicKey {
        PublicKey(bytes)
    }

    /// Lower-case hex, as the campaign document writes it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key is 64 hex digits")]
pub struct KeyParseError;

impl FromStr for PublicKey {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<PublicKey, KeyParseError> {
        unhex32(s).map(PublicKey).ok_or(KeyParseError)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A campaign's private key: only the district server holds it. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretKey {
    inner: <Kem as hpke::Kem>::PrivateKey,
    seed: [u8; 32],
}

impl SecretKey {
    /// The key pair derived (RFC 9180's DeriveKeyPair) from 32 random bytes; the same seed gives
    /// the same key, so the seed is what a backup keeps.
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        let (inner, _) = Kem::derive_keypair(&seed);
        SecretKey { inner, seed }
    }

    /// The seed it was derived from: the secret to keep (and to back up).
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        let pk = Kem::sk_to_pk(&self.inner);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&pk.to_bytes());
        PublicKey(bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(for {})", self.public_key())
    }
}

/// What a sealed object is bound to.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// The campaign.
    pub campaign: &'a CampaignId,
    /// The response.
    pub response: &'a ResponseId,
    /// The version of the response's answers, from 1.
    pub version: u32,
}

/// A sealed object opened.
#[derive(Clone, Debug, PartialEq)]
pub struct Opened {
    /// The version it holds.
    pub version: u32,
    /// The answers, by `question` or `question/subject` key, as read (not yet checked against
    /// the form).
    pub answers: BTreeMap<String, Scalar>,
}

fn info(campaign: &CampaignId) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABEL.len() + 1 + campaign.as_str().len());
    out.extend_from_slice(LABEL);
    out.push(0);
    out.extend_from_slice(campaign.as_str().as_bytes());
    out
}

fn aad(campaign: &CampaignId, response: &ResponseId, version: u32) -> Vec<u8> {
    let mut out = info(campaign);
    out.push(0);
    out.extend_from_slice(response.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// The version a sealed object says it holds, read from its header without opening it (what a
/// phone or a relay may know). `None` for bytes that are not a sealed object's.
pub fn version_of(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < HEADER + TAG || sealed.len() > MAX_SEALED_BYTES || sealed[0] != FORMAT {
        return None;
    }
    let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
    (version >= 1).then_some(version)
}

/// Seals `answers` as version `binding.version` of `binding.response`, for the campaign's
/// public key. `entropy` must be 32 fresh random bytes: the same entropy twice gives the same
/// ephemeral key, which HPKE forbids reusing.
pub fn seal(
    public: &PublicKey,
    binding: &Binding<'_>,
    answers: &BTreeMap<AnswerKey, AnswerValue>,
    entropy: [u8; 32],
) -> Result<Vec<u8>, SealError> {
    if binding.version == 0 {
        return Err(SealError::Version);
    }
    let plaintext = plaintext(answers);
    let size = HEADER + plaintext.len() + TAG;
    if size > MAX_SEALED_BYTES {
        return Err(SealError::TooLarge(size));
    }
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&public.0).map_err(|_| SealError::BadKey)?;
    let mut rng = SeededRng::new(entropy);
    let (enc, ciphertext) = hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        &info(binding.campaign),
        &plaintext,
        &aad(binding.campaign, binding.response, binding.version),
        &mut rng,
    )
    .map_err(|_| SealError::BadKey)?;
    let mut out = Vec::with_capacity(size);
    out.push(FORMAT);
    out.extend_from_slice(&binding.version.to_be_bytes());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a sealed object made for `response` of `campaign`.
pub fn open(
    secret: &SecretKey,
    campaign: &CampaignId,
    response: &ResponseId,
    sealed: &[u8],
) -> Result<Opened, OpenError> {
    if sealed.len() > MAX_SEALED_BYTES {
        return Err(OpenError::TooLarge(sealed.len()));
    }
    if sealed.len() < HEADER + TAG {
        return Err(OpenError::Truncated(sealed.len()));
    }
    if sealed[0] != FORMAT {
        return Err(OpenError::Format(sealed[0]));
    }
    let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
    if version == 0 {
        return Err(OpenError::Version);
    }
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed[5..HEADER]).map_err(|_| OpenError::Rejected)?;
    let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &secret.inner,
        &enc,
        &info(campaign),
        &sealed[HEADER..],
        &aad(campaign, response, version),
    )
    .map_err(|_| OpenError::Rejected)?;
    Ok(Opened { version, answers: read_plaintext(&plaintext)? })
}

/// Answers as the JSON object a sealed object holds: answer key → level code, yes/no, number or
/// comment. The phone keeps its drafts' plaintext in the same form.
pub fn answers_json(answers: &BTreeMap<AnswerKey, AnswerValue>) -> serde_json::Map<String, serde_json::Value> {
    answers
        .iter()
        .map(|(k, v)| {
            let value = match v {
                AnswerValue::Level(l) => serde_json::Value::from(l.code()),
                AnswerValue::YesNo(b) => serde_json::Value::from(*b),
                AnswerValue::Number(n) => serde_json::Value::from(*n),
                AnswerValue::Comment(s) => serde_json::Value::from(s.as_str()),
            };
            (k.to_string(), value)
        })
        .collect()
}

fn plaintext(answers: &BTreeMap<AnswerKey, AnswerValue>) -> Vec<u8> {
    serde_json::json!({ "answers": answers_json(answers) }).to_string().into_bytes()
}

fn read_plaintext(bytes: &[u8]) -> Result<BTreeMap<String, Scalar>, OpenError> {
    let bad = |why: &str| OpenError::Plaintext(why.to_owned());
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| OpenError::Plaintext(e.to_string()))?;
    let answers = value.get("answers").and_then(|a| a.as_object()).ok_or_else(|| bad("no \"answers\" object"))?;
    Ok(answers
        .iter()
        .map(|(k, v)| {
            let scalar = match v {
                serde_json::Value::String(s) => Scalar::Str(s.clone()),
                serde_json::Value::Bool(b) => Scalar::Bool(*b),
                serde_json::Value::Null => Scalar::Null,
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Scalar::Int(i),
                    (None, Some(u), _) => Scalar::Uint(u),
                    (None, None, Some(f)) => Scalar::F64(f),
                    _ => Scalar::Other(n.to_string()),
                },
                other => Scalar::Other(other.to_string()),
            };
            (k.clone(), scalar)
        })
        .collect())
}

/// The label of a wrapped campaign key's `info` and `aad`.
const WRAP_LABEL: &[u8] = b"hamlet/campaign-key/1";

/// The length of a wrapped campaign key: format byte, enc, the 32-byte seed and its tag.
pub const WRAPPED_BYTES: usize = 1 + 32 + 32 + TAG;

/// Wraps (encrypts) a campaign's private key for storage or backup under a 32-byte
/// key-encryption key `kek`: HPKE as for answers, to the key pair derived from `kek`, bound to
/// the campaign. `entropy` must be 32 fresh random bytes.
pub fn wrap_secret(kek: &[u8; 32], campaign: &CampaignId, secret: &SecretKey, entropy: [u8; 32]) -> Vec<u8> {
    let wrapping = SecretKey::from_seed(*kek).public_key();
    let label = wrap_label(campaign);
    // The key derived from `kek` is a valid X25519 key: sealing to it cannot fail.
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&wrapping.0);
    let sealed = pk.ok().and_then(|pk| {
        hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeS::Base,
            &pk,
            &label,
            &secret.seed,
            &label,
            &mut SeededRng::new(entropy),
        )
        .ok()
    });
    let mut out = Vec::with_capacity(WRAPPED_BYTES);
    out.push(FORMAT);
    if let Some((enc, ciphertext)) = sealed {
        out.extend_from_slice(&enc.to_bytes());
        out.extend_from_slice(&ciphertext);
    }
    out
}

/// Unwraps a campaign key wrapped by [`wrap_secret`] with the same `kek` for the same campaign.
pub fn unwrap_secret(kek: &[u8; 32], campaign: &CampaignId, wrapped: &[u8]) -> Result<SecretKey, OpenError> {
    if wrapped.len() != WRAPPED_BYTES {
        return Err(OpenError::Truncated(wrapped.len()));
    }
    if wrapped[0] != FORMAT {
        return Err(OpenError::Format(wrapped[0]));
    }
    let unwrapping = SecretKey::from_seed(*kek);
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrapped[1..33]).map_err(|_| OpenError::Rejected)?;
    let label = wrap_label(campaign);
    let seed = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &unwrapping.inner,
        &enc,
        &label,
        &wrapped[33..],
        &label,
    )
    .map_err(|_| OpenError::Rejected)?;
    let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| OpenError::Rejected)?;
    Ok(SecretKey::from_seed(seed))
}

fn wrap_label(campaign: &CampaignId) -> Vec<u8> {
    let mut out = WRAP_LABEL.to_vec();
    out.push(0);
    out.extend_from_slice(campaign.as_str().as_bytes());
    out
}

/// Every scalar value any change of `doc` ever wrote, and every map key, as the changes hold
/// them (not the compressed document): what a check that a document holds no plaintext walks.
/// Text objects' characters are read as strings, one per insertion.
pub fn every_value_written(doc: &automerge::Automerge) -> Vec<automerge::ScalarValue> {
    use automerge::legacy::{Key, OpType};
    let mut out = Vec::new();
    for change in doc.get_changes(&[]) {
        let expanded = change.decode();
        if let Some(message) = &expanded.message {
            out.push(automerge::ScalarValue::Str(message.as_str().into()));
        }
        for op in &expanded.operations {
            if let Key::Map(k) = &op.key {
                out.push(automerge::ScalarValue::Str(k.as_str().into()));
            }
            match &op.action {
                OpType::Put(value) => out.push(value.clone()),
                OpType::Increment(n) => out.push(automerge::ScalarValue::Int(*n)),
                OpType::MarkBegin(mark) => out.push(mark.value.clone()),
                _ => {}
            }
        }
    }
    out
}

/// Bytes from a seed: SHA-256 of the seed and a counter, block after block. It stands between
/// the caller's fresh entropy and the HPKE library, which asks an RNG for its ephemeral key.
struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRng {
    fn new(seed: [u8; 32]) -> SeededRng {
        SeededRng { seed, counter: 0, block: [0; 32], used: 32 }
    }
}

impl TryRng for SeededRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for byte in dst {
            if self.used == 32 {
                let mut h = Sha256::new();
                h.update(b"hamlet/sealed/rng");
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.block.copy_from_slice(&h.finalize());
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

impl TryCryptoRng for SeededRng {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::form::Level;

    fn answers() -> BTreeMap<AnswerKey, AnswerValue> {
        BTreeMap::from([
            (
                AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an")),
                AnswerValue::Level(Level::TinNhiemThap),
            ),
            (
                AnswerKey::for_subject(fixtures::question("y-kien"), fixtures::subject("ong-an")),
                AnswerValue::Comment("Ông ấy hay vắng mặt ở trụ sở".into()),
            ),
            (AnswerKey::once(fixtures::question("so-nguoi")), AnswerValue::Number(4)),
        ])
    }

    fn ids() -> (CampaignId, ResponseId, ResponseId) {
        (fixtures::open_campaign().id, "r-1".parse().expect("id"), "r-2".parse().expect("id"))
    }

    fn sealed_one(secret: &SecretKey, version: u32) -> Vec<u8> {
        let (campaign, r1, _) = ids();
        let binding = Binding { campaign: &campaign, response: &r1, version };
        seal(&secret.public_key(), &binding, &answers(), [3; 32]).expect("seal")
    }

    #[test]
    fn a_sealed_object_opens_with_its_key_and_holds_no_plaintext() {
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, r1, _) = ids();
        let sealed = sealed_one(&secret, 2);
        let opened = open(&secret, &campaign, &r1, &sealed).expect("opens");
        assert_eq!(opened.version, 2);
        assert_eq!(version_of(&sealed), Some(2));
        assert_eq!(opened.answers["tin-nhiem/ong-an"], Scalar::Str("tin_nhiem_thap".into()));
        assert_eq!(opened.answers["y-kien/ong-an"], Scalar::Str("Ông ấy hay vắng mặt ở trụ sở".into()));
        assert_eq!(opened.answers["so-nguoi"], Scalar::Int(4));
        for needle in ["tin_nhiem_thap", "vắng", "so-nguoi", "ong-an"] {
            assert!(!sealed.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in the clear");
        }
    }

    #[test]
    fn fresh_entropy_makes_a_different_object_for_the_same_answers() {
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, r1, _) = ids();
        let binding = Binding { campaign: &campaign, response: &r1, version: 1 };
        let a = seal(&secret.public_key(), &binding, &answers(), [3; 32]).expect("seal");
        let b = seal(&secret.public_key(), &binding, &answers(), [4; 32]).expect("seal");
        assert_ne!(a, b);
        assert_eq!(open(&secret, &campaign, &r1, &a), open(&secret, &campaign, &r1, &b));
    }

    #[test]
    fn another_key_another_response_or_another_campaign_does_not_open_it() {
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, r1, r2) = ids();
        let sealed = sealed_one(&secret, 1);
        assert_eq!(open(&SecretKey::from_seed([2; 32]), &campaign, &r1, &sealed), Err(OpenError::Rejected));
        assert_eq!(open(&secret, &campaign, &r2, &sealed), Err(OpenError::Rejected));
        let other: CampaignId = "another-campaign".parse().expect("id");
        assert_eq!(open(&secret, &other, &r1, &sealed), Err(OpenError::Rejected));
    }

    #[test]
    fn a_changed_version_or_any_flipped_byte_is_rejected() {
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, r1, _) = ids();
        let sealed = sealed_one(&secret, 1);
        let mut moved = sealed.clone();
        moved[4] = 2; // claims version 2
        assert_eq!(open(&secret, &campaign, &r1, &moved), Err(OpenError::Rejected));
        for i in 5..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert_eq!(open(&secret, &campaign, &r1, &bad), Err(OpenError::Rejected), "byte {i}");
        }
    }

    #[test]
    fn truncated_oversized_and_foreign_bytes_are_errors_never_panics() {
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, r1, _) = ids();
        let sealed = sealed_one(&secret, 1);
        for len in 0..sealed.len() {
            assert!(open(&secret, &campaign, &r1, &sealed[..len]).is_err(), "length {len}");
        }
        assert_eq!(open(&secret, &campaign, &r1, &sealed[..10]), Err(OpenError::Truncated(10)));
        let huge = vec![FORMAT; MAX_SEALED_BYTES + 1];
        assert_eq!(open(&secret, &campaign, &r1, &huge), Err(OpenError::TooLarge(MAX_SEALED_BYTES + 1)));
        let mut format = sealed.clone();
        format[0] = 2;
        assert_eq!(open(&secret, &campaign, &r1, &format), Err(OpenError::Format(2)));
        let mut zero = sealed.clone();
        zero[1..5].copy_from_slice(&[0; 4]);
        assert_eq!(open(&secret, &campaign, &r1, &zero), Err(OpenError::Version));
        assert_eq!(version_of(&zero), None);
        // Every low-order point and junk as enc: rejected, not a panic.
        let mut enc = sealed.clone();
        enc[5..HEADER].copy_from_slice(&[0; 32]);
        assert_eq!(open(&secret, &campaign, &r1, &enc), Err(OpenError::Rejected));
    }

    #[test]
    fn a_device_that_seals_something_else_than_answers_is_told_apart() {
        // A hostile device holds the public key too: what it seals opens, but is not answers.
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, r1, _) = ids();
        let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&secret.public_key().0).expect("key");
        for junk in [&b"not json"[..], b"[1,2]", b"{\"answers\": 3}", &[0xff, 0xfe][..]] {
            let (enc, ct) = hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, Kem>(
                &OpModeS::Base,
                &pk,
                &info(&campaign),
                junk,
                &aad(&campaign, &r1, 1),
                &mut SeededRng::new([5; 32]),
            )
            .expect("seal");
            let mut sealed = vec![FORMAT, 0, 0, 0, 1];
            sealed.extend_from_slice(&enc.to_bytes());
            sealed.extend_from_slice(&ct);
            assert!(matches!(open(&secret, &campaign, &r1, &sealed), Err(OpenError::Plaintext(_))));
        }
    }

    #[test]
    fn sealing_refuses_version_zero_and_oversized_answers() {
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, r1, _) = ids();
        let binding = Binding { campaign: &campaign, response: &r1, version: 0 };
        assert_eq!(seal(&secret.public_key(), &binding, &answers(), [3; 32]), Err(SealError::Version));
        let big = BTreeMap::from([(
            AnswerKey::once(fixtures::question("y-kien")),
            AnswerValue::Comment("x".repeat(MAX_SEALED_BYTES)),
        )]);
        let binding = Binding { version: 1, ..binding };
        assert!(matches!(seal(&secret.public_key(), &binding, &big, [3; 32]), Err(SealError::TooLarge(_))));
    }

    #[test]
    fn keys_come_from_their_seed_and_read_back_from_hex() {
        let a = SecretKey::from_seed([1; 32]);
        assert_eq!(a.public_key(), SecretKey::from_seed(a.seed()).public_key());
        assert_ne!(a.public_key(), SecretKey::from_seed([2; 32]).public_key());
        let hex = a.public_key().to_hex();
        assert_eq!(hex.parse::<PublicKey>(), Ok(a.public_key()));
        assert!("00".parse::<PublicKey>().is_err());
        assert!("zz".repeat(32).parse::<PublicKey>().is_err());
        assert!(!format!("{a:?}").contains(&hex::encode_seed(&a)));
    }

    #[test]
    fn a_wrapped_key_unwraps_only_with_its_kek_for_its_campaign() {
        let secret = SecretKey::from_seed([1; 32]);
        let (campaign, _, _) = ids();
        let wrapped = wrap_secret(&[9; 32], &campaign, &secret, [4; 32]);
        assert_eq!(wrapped.len(), WRAPPED_BYTES);
        assert!(!wrapped.windows(32).any(|w| w == secret.seed()));
        let back = unwrap_secret(&[9; 32], &campaign, &wrapped).expect("unwraps");
        assert_eq!(back.public_key(), secret.public_key());
        assert!(unwrap_secret(&[8; 32], &campaign, &wrapped).is_err());
        let other: CampaignId = "another-campaign".parse().expect("id");
        assert!(unwrap_secret(&[9; 32], &other, &wrapped).is_err());
        for len in 0..wrapped.len() {
            assert!(unwrap_secret(&[9; 32], &campaign, &wrapped[..len]).is_err());
        }
        for i in 0..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[i] ^= 1;
            assert!(unwrap_secret(&[9; 32], &campaign, &bad).is_err(), "byte {i}");
        }
    }

    mod hex {
        pub fn encode_seed(key: &super::SecretKey) -> String {
            super::hex(&key.seed())
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_open_to_an_error_or_answers_never_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let secret = SecretKey::from_seed([1; 32]);
            let (campaign, r1, _) = ids();
            let mut bytes = bytes;
            if let Some(b) = bytes.first_mut() { *b = FORMAT; }
            proptest::prop_assert!(open(&secret, &campaign, &r1, &bytes).is_err());
        }
    }
}
