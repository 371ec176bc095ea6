//! Bundles: the changes of many documents in one file, carried without a network (an SD card, a
//! USB stick, a chat attachment) from a phone to a relay or a server, and back.
//!
//! # Format (`hamlet-bundle`, version 1, provisional)
//!
//! One CBOR map:
//!
//! ```text
//! { "format": "hamlet-bundle", "version": 1,
//!   "source": <storage id of the device that wrote it>, "created_on": "YYYY-MM-DD",
//!   "documents": [ { "id": <bs58check document id>, "changes": <bytes>, "heads": <bytes> }, ... ] }
//! ```
//!
//! `changes` is what [`Automerge::save_after`] writes (or a whole saved document): Automerge
//! chunks that [`Automerge::load_incremental`] applies. `heads` are the heads the writer's
//! document had (32-byte hashes one after another): once the changes are applied the reader
//! holds them all, unless some changes wait for dependencies it lacks or the bytes are damaged. Applying a bundle only adds changes, and a
//! change already held is skipped, so importing a bundle twice, or in any order with syncs,
//! changes nothing more. A reader refuses a version it does not know, rather than guess.
//!
//! ```
//! use hamlet_sync_core::automerge::{transaction::Transactable, Automerge, AutomergeError, ROOT};
//! use hamlet_sync_core::bundle::{Applied, Bundle, BundleDocument};
//! use hamlet_sync_core::DocumentId;
//!
//! let mut doc = Automerge::new();
//! doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "k", "v")).map_err(|f| f.error)?;
//! let id = DocumentId::from_bytes([1; 16]);
//! let bundle = Bundle {
//!     source: "phone-1".into(),
//!     created_on: "2025-06-02".parse()?,
//!     documents: vec![BundleDocument { id, changes: doc.save(), heads: doc.get_heads() }],
//! };
//! let bytes = bundle.encode();
//! let read = Bundle::decode(&bytes)?;
//! let mut copy = Automerge::new();
//! assert_eq!(read.documents[0].apply(&mut copy)?, Applied { added: 1, complete: true });
//! assert_eq!(read.documents[0].apply(&mut copy)?, Applied { added: 0, complete: true }, "twice adds nothing");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use automerge::{Automerge, AutomergeError, ChangeHash};
use ciborium::Value;

use crate::day::Day;
use crate::docid::DocumentId;
use crate::session::{decode_heads, encode_heads};

/// The value of a bundle's `format` key.
pub const BUNDLE_FORMAT: &str = "hamlet-bundle";

/// The version this crate writes and reads.
pub const BUNDLE_VERSION: u64 = 1;

/// A bundle that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not CBOR, or not a map with `format: "hamlet-bundle"`.
    #[error("not a Hamlet bundle: {0}")]
    NotABundle(String),
    /// A version this reader does not know.
    #[error("bundle version {0} is not supported (this version reads version {BUNDLE_VERSION})")]
    Version(u64),
    /// A field is missing or of the wrong type.
    #[error("bundle field {0} is missing or malformed")]
    Field(&'static str),
    /// A document id that is not one.
    #[error("bundle names an invalid document id {0:?}")]
    DocumentId(String),
}

/// Why one document's changes were not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The chunks were refused before Automerge read them (framing, or too large once inflated).
    #[error("the bundle's changes were refused: {0}")]
    Refused(#[from] crate::guard::GuardError),
    /// Automerge could not load them.
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
}

/// The changes of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleDocument {
    /// The document.
    pub id: DocumentId,
    /// Automerge chunks, for [`Automerge::load_incremental`].
    pub changes: Vec<u8>,
    /// The heads the changes lead to.
    pub heads: Vec<ChangeHash>,
}

/// What applying one document's changes did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Changes the document gained.
    pub added: usize,
    /// Whether the document now holds every head the bundle names. `false` when changes wait
    /// for dependencies the document lacks, or part of the bytes did not read.
    pub complete: bool,
}

impl BundleDocument {
    /// Applies the changes to `doc`, once [`guard::chunks`](crate::guard::chunks) has checked
    /// them (a bundle is a file from anywhere: its chunks are bounded like a peer's). Changes
    /// whose dependencies `doc` lacks wait in Automerge's queue until those arrive.
    pub fn apply(&self, doc: &mut Automerge) -> Result<Applied, ApplyError> {
        crate::guard::chunks(&self.changes, crate::guard::Limits::default().max_inflated_bytes)?;
        let before = doc.get_heads();
        doc.load_incremental(&self.changes)?;
        let added = if doc.get_heads() == before { 0 } else { doc.get_changes_meta(&before).len() };
        let complete = self.heads.iter().all(|h| doc.get_change_meta_by_hash(h).is_some());
        Ok(Applied { added, complete })
    }
}

/// A bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The storage id of the device that wrote it.
    pub source: String,
    /// The day it was written.
    pub created_on: Day,
    /// The documents it carries.
    pub documents: Vec<BundleDocument>,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Bundle {
    /// Writes the bundle.
    pub fn encode(&self) -> Vec<u8> {
        let documents = self
            .documents
            .iter()
            .map(|d| {
                Value::Map(vec![
                    (text("id"), text(&d.id.to_string())),
                    (text("changes"), Value::Bytes(d.changes.clone())),
                    (text("heads"), Value::Bytes(encode_heads(&d.heads))),
                ])
            })
            .collect();
        let value = Value::Map(vec![
            (text("format"), text(BUNDLE_FORMAT)),
            (text("version"), Value::Integer(BUNDLE_VERSION.into())),
            (text("source"), text(&self.source)),
            (text("created_on"), text(&self.created_on.to_string())),
            (text("documents"), Value::Array(documents)),
        ]);
        let mut out = Vec::new();
        // Writing CBOR into a Vec cannot fail: the writer never returns an I/O error.
        if ciborium::into_writer(&value, &mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Reads a bundle.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let value: Value = ciborium::from_reader(bytes).map_err(|e| BundleError::NotABundle(e.to_string()))?;
        let Value::Map(entries) = value else { return Err(BundleError::NotABundle("not a map".into())) };
        let get = |key: &str| entries.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v);
        if get("format").and_then(Value::as_text) != Some(BUNDLE_FORMAT) {
            return Err(BundleError::NotABundle(format!("format is not {BUNDLE_FORMAT:?}")));
        }
        let version = get("version")
            .and_then(Value::as_integer)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or(BundleError::Field("version"))?;
        if version != BUNDLE_VERSION {
            return Err(BundleError::Version(version));
        }
        let source = get("source").and_then(Value::as_text).ok_or(BundleError::Field("source"))?.to_owned();
        let created_on = get("created_on")
            .and_then(Value::as_text)
            .and_then(|t| t.parse().ok())
            .ok_or(BundleError::Field("created_on"))?;
        let list = get("documents").and_then(Value::as_array).ok_or(BundleError::Field("documents"))?;
        let mut documents = Vec::with_capacity(list.len());
        for item in list {
            let map = item.as_map().ok_or(BundleError::Field("documents"))?;
            let field = |key: &str| map.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v);
            let id_text = field("id").and_then(Value::as_text).ok_or(BundleError::Field("documents.id"))?;
            let id = DocumentId::parse_url_or_id(id_text).map_err(|_| BundleError::DocumentId(id_text.to_owned()))?;
            let changes = field("changes").and_then(Value::as_bytes).ok_or(BundleError::Field("documents.changes"))?;
            let heads = field("heads")
                .and_then(Value::as_bytes)
                .and_then(|b| decode_heads(b))
                .ok_or(BundleError::Field("documents.heads"))?;
            documents.push(BundleDocument { id, changes: changes.clone(), heads });
        }
        Ok(Bundle { source, created_on, documents })
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    use super::*;
    use crate::ledger::Ledger;
    use crate::{AnswerKey, AnswerValue, Level, NewResponse, fixtures};

    fn day() -> Day {
        Day::from_ymd(2025, 6, 3).expect("valid day")
    }

    #[test]
    fn a_compressed_chunk_bomb_in_a_bundle_is_refused_before_automerge_inflates_it() {
        use std::io::Write;
        // A compressed change chunk (type 2) of 96 MiB of zeros, over the 64 MiB bound.
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..96 {
            e.write_all(&zeros).expect("deflate");
        }
        let body = e.finish().expect("deflate");
        let mut changes = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
        let mut n = body.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                changes.push(b);
                break;
            }
            changes.push(b | 0x80);
        }
        changes.extend(body);
        let bomb = BundleDocument { id: crate::DocumentId::from_bytes([9; 16]), changes, heads: Vec::new() };
        let mut doc = Automerge::new();
        assert!(matches!(bomb.apply(&mut doc), Err(ApplyError::Refused(crate::guard::GuardError::TooLarge { .. }))));
        assert!(doc.get_heads().is_empty());
    }

    #[test]
    fn a_ledger_travels_by_bundle_and_importing_twice_changes_nothing() {
        let campaign = fixtures::open_campaign();
        let hamlet = fixtures::hamlet("thon-dong");
        let mut phone = Ledger::create(&campaign.id, &hamlet, ActorId::random());
        let before = phone.doc().get_heads();
        for i in 0..3 {
            let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
            let response = NewResponse {
                id: format!("r-{i}").parse().expect("id"),
                collector: "c-1".parse().expect("id"),
                answers: [(key, AnswerValue::Level(Level::TinNhiem))].into(),
            };
            phone.record(&campaign, &response, day()).expect("recorded");
        }
        // Only what the other side lacks: the changes after the skeleton.
        let bundle = Bundle {
            source: "phone".into(),
            created_on: day(),
            documents: vec![BundleDocument {
                id: phone.id(),
                changes: phone.doc().save_after(&before),
                heads: phone.doc().get_heads(),
            }],
        };
        let read = Bundle::decode(&bundle.encode()).expect("reads");
        assert_eq!(read, bundle);
        // Without the skeleton the changes wait for it.
        let mut empty = Automerge::new();
        assert!(!read.documents[0].apply(&mut empty).expect("applies").complete);
        let mut relay = Ledger::create(&campaign.id, &hamlet, ActorId::random());
        assert_eq!(read.documents[0].apply(relay.doc_mut()).expect("applies"), Applied { added: 3, complete: true });
        assert_eq!(read.documents[0].apply(relay.doc_mut()).expect("applies"), Applied { added: 0, complete: true });
        assert_eq!(relay.doc().get_heads(), phone.doc().get_heads());
        assert_eq!(relay.responses().expect("reads").len(), 3);
    }

    fn cbor(value: Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(&value, &mut out).expect("encodes");
        out
    }

    #[test]
    fn unreadable_bundles_say_why() {
        assert!(matches!(Bundle::decode(b"PK\x03\x04zip"), Err(BundleError::NotABundle(_))));
        assert!(matches!(Bundle::decode(&cbor(Value::Map(vec![]))), Err(BundleError::NotABundle(_))));
        let newer =
            Value::Map(vec![(text("format"), text(BUNDLE_FORMAT)), (text("version"), Value::Integer(2.into()))]);
        assert_eq!(Bundle::decode(&cbor(newer)), Err(BundleError::Version(2)));
        let bad_id = Value::Map(vec![
            (text("format"), text(BUNDLE_FORMAT)),
            (text("version"), Value::Integer(1.into())),
            (text("source"), text("s")),
            (text("created_on"), text("2025-06-03")),
            (
                text("documents"),
                Value::Array(vec![Value::Map(vec![
                    (text("id"), text("nope")),
                    (text("changes"), Value::Bytes(vec![])),
                ])]),
            ),
        ]);
        assert_eq!(Bundle::decode(&cbor(bad_id)), Err(BundleError::DocumentId("nope".into())));
    }

    #[test]
    fn garbage_changes_are_refused_without_touching_the_document() {
        let mut doc = Automerge::new();
        doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "k", "v")).map_err(|f| f.error).expect("writes");
        let heads = doc.get_heads();
        let mut other = Automerge::new();
        other.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "x", "y")).map_err(|f| f.error).expect("writes");
        let mut corrupted = other.save();
        // Bytes 4..8 of a chunk are its checksum.
        corrupted[5] ^= 0xff;
        let bad = BundleDocument { id: DocumentId::from_bytes([9; 16]), changes: corrupted, heads: other.get_heads() };
        assert!(bad.apply(&mut doc).map_or(true, |a| !a.complete && a.added == 0));
        assert_eq!(doc.get_heads(), heads);
    }
}
