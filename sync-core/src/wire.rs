//! The automerge-repo network protocol, version "1": one CBOR map per message.
//!
//! Decoding is lenient where the JavaScript client is loose — extra keys are ignored, CBOR
//! `undefined` and `null` read as absent, whole-number floats read as integers, byte strings may
//! carry the typed-array tag — and strict where it matters: a message without its type, sender
//! or document is refused with a [`WireError`] that names the field.

use ciborium::Value;

/// The only protocol version spoken.
pub const PROTOCOL_VERSION: &str = "1";

/// The longest peer id or storage id a peer may announce, in bytes (automerge-repo's are
/// random strings and UUIDs of a few dozen characters).
pub const MAX_ID_BYTES: usize = 128;

/// What a peer says about itself in `join` and `peer`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// The peer's storage id, when it keeps data between sessions.
    pub storage_id: Option<String>,
    /// Whether the peer keeps nothing (then its sync state is not worth saving).
    pub is_ephemeral: bool,
}

/// A message about one document: `request` or `sync`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocMessage {
    /// Who sends it.
    pub sender_id: String,
    /// Who it is for.
    pub target_id: String,
    /// The document, as its base58check id.
    pub document_id: String,
    /// An Automerge sync message.
    pub data: Vec<u8>,
}

/// The heads a storage holds for a document, in `remote-heads-changed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteHeads {
    /// The storage id.
    pub storage_id: String,
    /// Change hashes, hex.
    pub heads: Vec<String>,
    /// When they were seen (milliseconds since the epoch).
    pub timestamp: u64,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A client introduces itself.
    Join {
        /// Its peer id.
        sender_id: String,
        /// What it says about itself.
        peer_metadata: Option<PeerMetadata>,
        /// Versions it speaks; absent means "1".
        supported_protocol_versions: Option<Vec<String>>,
    },
    /// The server accepts a join.
    Peer {
        /// The server's peer id.
        sender_id: String,
        /// The client's peer id.
        target_id: String,
        /// What the server says about itself.
        peer_metadata: PeerMetadata,
        /// Always "1".
        selected_protocol_version: String,
    },
    /// A client says goodbye.
    Leave {
        /// Its peer id.
        sender_id: String,
    },
    /// Something went wrong; the text is for people.
    Error {
        /// Who reports it.
        sender_id: Option<String>,
        /// Who it is for.
        target_id: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// The first sync message about a document the sender may not have.
    Request(DocMessage),
    /// A sync message.
    Sync(DocMessage),
    /// The sender does not have the document.
    DocUnavailable {
        /// Who sends it.
        sender_id: String,
        /// Who it is for.
        target_id: String,
        /// The document.
        document_id: String,
    },
    /// Application data relayed to the document's other peers, not stored.
    Ephemeral {
        /// Who sends it.
        sender_id: String,
        /// Who it is for.
        target_id: String,
        /// The document.
        document_id: String,
        /// The sender's session.
        session_id: String,
        /// Increases with each message of the session.
        count: u64,
        /// The payload.
        data: Vec<u8>,
    },
    /// The sender wants (or no longer wants) to hear of heads held by these storages.
    RemoteSubscriptionChange {
        /// Who sends it.
        sender_id: String,
        /// Who it is for.
        target_id: String,
        /// Storage ids to add.
        add: Vec<String>,
        /// Storage ids to remove.
        remove: Vec<String>,
    },
    /// Heads of a document held by other storages.
    RemoteHeadsChanged {
        /// Who sends it.
        sender_id: String,
        /// Who it is for.
        target_id: String,
        /// The document.
        document_id: String,
        /// Heads by storage.
        new_heads: Vec<RemoteHeads>,
    },
}

/// A message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not CBOR.
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// CBOR, but not a map.
    #[error("a message must be a CBOR map")]
    NotAMap,
    /// The type is not one of the protocol's.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A required field is missing.
    #[error("{message_type} message lacks {field}")]
    Missing {
        /// The message type ("message" when the type itself is missing).
        message_type: String,
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong type.
    #[error("{message_type} message: {field} must be {expected}")]
    WrongType {
        /// The message type.
        message_type: String,
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
}

/// The CBOR tag JavaScript encoders may put on a `Uint8Array`.
const TAG_UINT8_ARRAY: u64 = 64;

struct Fields {
    message_type: String,
    entries: Vec<(Value, Value)>,
}

impl Fields {
    fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find_map(|(k, v)| match (k, v) {
            (_, Value::Null) => None,
            (Value::Text(t), v) if t == key => Some(v),
            _ => None,
        })
    }

    fn missing(&self, field: &'static str) -> WireError {
        WireError::Missing { message_type: self.message_type.clone(), field }
    }

    fn wrong(&self, field: &'static str, expected: &'static str) -> WireError {
        WireError::WrongType { message_type: self.message_type.clone(), field, expected }
    }

    fn opt_text(&self, field: &'static str) -> Result<Option<String>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t.clone())),
            Some(_) => Err(self.wrong(field, "a string")),
        }
    }

    fn text(&self, field: &'static str) -> Result<String, WireError> {
        self.opt_text(field)?.ok_or_else(|| self.missing(field))
    }

    fn bytes(&self, field: &'static str) -> Result<Vec<u8>, WireError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::Bytes(b)) => Ok(b.clone()),
            Some(Value::Tag(TAG_UINT8_ARRAY, inner)) => match inner.as_ref() {
                Value::Bytes(b) => Ok(b.clone()),
                _ => Err(self.wrong(field, "a byte string")),
            },
            Some(_) => Err(self.wrong(field, "a byte string")),
        }
    }

    fn uint(&self, field: &'static str) -> Result<u64, WireError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::Integer(i)) => u64::try_from(*i).map_err(|_| self.wrong(field, "a non-negative integer")),
            // JavaScript numbers may arrive as floats.
            Some(Value::Float(f)) if f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15 => Ok(*f as u64),
            Some(_) => Err(self.wrong(field, "a non-negative integer")),
        }
    }

    fn texts(&self, field: &'static str) -> Result<Option<Vec<String>>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Text(t) => Ok(t.clone()),
                    _ => Err(self.wrong(field, "a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.wrong(field, "a list of strings")),
        }
    }

    fn metadata(&self, field: &'static str) -> Result<Option<PeerMetadata>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Map(entries)) => {
                let inner = Fields { message_type: self.message_type.clone(), entries: entries.clone() };
                let is_ephemeral = match inner.get("isEphemeral") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(self.wrong("peerMetadata.isEphemeral", "a boolean")),
                };
                Ok(Some(PeerMetadata { storage_id: inner.opt_text("storageId")?, is_ephemeral }))
            }
            Some(_) => Err(self.wrong(field, "a map")),
        }
    }

    fn doc_message(&self) -> Result<DocMessage, WireError> {
        Ok(DocMessage {
            sender_id: self.text("senderId")?,
            target_id: self.text("targetId")?,
            document_id: self.text("documentId")?,
            data: self.bytes("data")?,
        })
    }

    fn new_heads(&self) -> Result<Vec<RemoteHeads>, WireError> {
        let bad = || self.wrong("newHeads", "a map of storage id to {heads, timestamp}");
        let Some(Value::Map(entries)) = self.get("newHeads") else {
            return Err(self.get("newHeads").map_or_else(|| self.missing("newHeads"), |_| bad()));
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let (Value::Text(storage_id), Value::Map(inner)) = (k, v) else { return Err(bad()) };
            let inner = Fields { message_type: self.message_type.clone(), entries: inner.clone() };
            out.push(RemoteHeads {
                storage_id: storage_id.clone(),
                heads: inner.texts("heads")?.unwrap_or_default(),
                timestamp: inner.uint("timestamp").unwrap_or(0),
            });
        }
        Ok(out)
    }
}

/// Reads one message.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let value: Value = ciborium::from_reader(bytes).map_err(|e| WireError::Cbor(e.to_string()))?;
    let Value::Map(entries) = value else { return Err(WireError::NotAMap) };
    let mut fields = Fields { message_type: "message".into(), entries };
    fields.message_type = fields.text("type")?;
    let f = &fields;
    Ok(match f.message_type.as_str() {
        "join" => Message::Join {
            sender_id: f.text("senderId")?,
            peer_metadata: f.metadata("peerMetadata")?,
            supported_protocol_versions: f.texts("supportedProtocolVersions")?,
        },
        "peer" => Message::Peer {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            peer_metadata: f.metadata("peerMetadata")?.unwrap_or_default(),
            selected_protocol_version: f.text("selectedProtocolVersion")?,
        },
        "leave" => Message::Leave { sender_id: f.text("senderId")? },
        "error" => Message::Error {
            sender_id: f.opt_text("senderId")?,
            target_id: f.opt_text("targetId")?,
            message: f.opt_text("message")?.unwrap_or_default(),
        },
        "request" => Message::Request(f.doc_message()?),
        "sync" => Message::Sync(f.doc_message()?),
        "doc-unavailable" => Message::DocUnavailable {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            document_id: f.text("documentId")?,
        },
        "ephemeral" => Message::Ephemeral {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            document_id: f.text("documentId")?,
            session_id: f.text("sessionId")?,
            count: f.uint("count")?,
            data: f.bytes("data")?,
        },
        "remote-subscription-change" => Message::RemoteSubscriptionChange {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            add: f.texts("add")?.unwrap_or_default(),
            remove: f.texts("remove")?.unwrap_or_default(),
        },
        "remote-heads-changed" => Message::RemoteHeadsChanged {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            document_id: f.text("documentId")?,
            new_heads: f.new_heads()?,
        },
        other => return Err(WireError::UnknownType(other.to_owned())),
    })
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn entry(key: &str, value: Value) -> (Value, Value) {
    (text(key), value)
}

fn metadata(m: &PeerMetadata) -> Value {
    let mut entries = Vec::new();
    if let Some(s) = &m.storage_id {
        entries.push(entry("storageId", text(s)));
    }
    entries.push(entry("isEphemeral", Value::Bool(m.is_ephemeral)));
    Value::Map(entries)
}

fn doc_entries(kind: &str, m: &DocMessage) -> Vec<(Value, Value)> {
    vec![
        entry("type", text(kind)),
        entry("senderId", text(&m.sender_id)),
        entry("targetId", text(&m.target_id)),
        entry("documentId", text(&m.document_id)),
        entry("data", Value::Bytes(m.data.clone())),
    ]
}

fn list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| text(s)).collect())
}

/// Writes one message.
pub fn encode(message: &Message) -> Vec<u8> {
    let entries = match message {
        Message::Join { sender_id, peer_metadata, supported_protocol_versions } => {
            let mut e = vec![entry("type", text("join")), entry("senderId", text(sender_id))];
            if let Some(m) = peer_metadata {
                e.push(entry("peerMetadata", metadata(m)));
            }
            if let Some(v) = supported_protocol_versions {
                e.push(entry("supportedProtocolVersions", list(v)));
            }
            e
        }
        Message::Peer { sender_id, target_id, peer_metadata, selected_protocol_version } => vec![
            entry("type", text("peer")),
            entry("senderId", text(sender_id)),
            entry("targetId", text(target_id)),
            entry("peerMetadata", metadata(peer_metadata)),
            entry("selectedProtocolVersion", text(selected_protocol_version)),
        ],
        Message::Leave { sender_id } => vec![entry("type", text("leave")), entry("senderId", text(sender_id))],
        Message::Error { sender_id, target_id, message } => {
            let mut e = vec![entry("type", text("error"))];
            if let Some(s) = sender_id {
                e.push(entry("senderId", text(s)));
            }
            if let Some(t) = target_id {
                e.push(entry("targetId", text(t)));
            }
            e.push(entry("message", text(message)));
            e
        }
        Message::Request(m) => doc_entries("request", m),
        Message::Sync(m) => doc_entries("sync", m),
        Message::DocUnavailable { sender_id, target_id, document_id } => vec![
            entry("type", text("doc-unavailable")),
            entry("senderId", text(sender_id)),
            entry("targetId", text(target_id)),
            entry("documentId", text(document_id)),
        ],
        Message::Ephemeral { sender_id, target_id, document_id, session_id, count, data } => vec![
            entry("type", text("ephemeral")),
            entry("senderId", text(sender_id)),
            entry("targetId", text(target_id)),
            entry("documentId", text(document_id)),
            entry("sessionId", text(session_id)),
            entry("count", Value::Integer((*count).into())),
            entry("data", Value::Bytes(data.clone())),
        ],
        Message::RemoteSubscriptionChange { sender_id, target_id, add, remove } => vec![
            entry("type", text("remote-subscription-change")),
            entry("senderId", text(sender_id)),
            entry("targetId", text(target_id)),
            entry("add", list(add)),
            entry("remove", list(remove)),
        ],
        Message::RemoteHeadsChanged { sender_id, target_id, document_id, new_heads } => vec![
            entry("type", text("remote-heads-changed")),
            entry("senderId", text(sender_id)),
            entry("targetId", text(target_id)),
            entry("documentId", text(document_id)),
            entry(
                "newHeads",
                Value::Map(
                    new_heads
                        .iter()
                        .map(|h| {
                            entry(
                                &h.storage_id,
                                Value::Map(vec![
                                    entry("heads", list(&h.heads)),
                                    entry("timestamp", Value::Integer(h.timestamp.into())),
                                ]),
                            )
                        })
                        .collect(),
                ),
            ),
        ],
    };
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail: the writer never returns an I/O error.
    if ciborium::into_writer(&Value::Map(entries), &mut out).is_err() {
        out.clear();
    }
    out
}

impl Message {
    /// The message's `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Leave { .. } => "leave",
            Message::Error { .. } => "error",
            Message::Request(_) => "request",
            Message::Sync(_) => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
        }
    }

    /// Addresses the message to `target` (messages that name no target are left as they are).
    pub fn set_target_id(&mut self, target: &str) {
        match self {
            Message::Peer { target_id, .. }
            | Message::DocUnavailable { target_id, .. }
            | Message::Ephemeral { target_id, .. }
            | Message::RemoteSubscriptionChange { target_id, .. }
            | Message::RemoteHeadsChanged { target_id, .. } => *target_id = target.to_owned(),
            Message::Request(m) | Message::Sync(m) => m.target_id = target.to_owned(),
            Message::Error { target_id, .. } => *target_id = Some(target.to_owned()),
            Message::Join { .. } | Message::Leave { .. } => {}
        }
    }

    /// The sender's peer id, where the message has one.
    pub fn sender_id(&self) -> Option<&str> {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Leave { sender_id }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. }
            | Message::RemoteSubscriptionChange { sender_id, .. }
            | Message::RemoteHeadsChanged { sender_id, .. } => Some(sender_id),
            Message::Request(m) | Message::Sync(m) => Some(&m.sender_id),
            Message::Error { sender_id, .. } => sender_id.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(data: &[u8]) -> DocMessage {
        DocMessage { sender_id: "a".into(), target_id: "b".into(), document_id: "doc".into(), data: data.to_vec() }
    }

    #[test]
    fn every_message_round_trips() {
        let messages = vec![
            Message::Join {
                sender_id: "client".into(),
                peer_metadata: Some(PeerMetadata { storage_id: Some("s1".into()), is_ephemeral: false }),
                supported_protocol_versions: Some(vec!["1".into()]),
            },
            Message::Join { sender_id: "client".into(), peer_metadata: None, supported_protocol_versions: None },
            Message::Peer {
                sender_id: "server".into(),
                target_id: "client".into(),
                peer_metadata: PeerMetadata { storage_id: Some("s0".into()), is_ephemeral: false },
                selected_protocol_version: "1".into(),
            },
            Message::Leave { sender_id: "client".into() },
            Message::Error { sender_id: Some("server".into()), target_id: None, message: "nope".into() },
            Message::Request(doc(&[0x42, 1])),
            Message::Sync(doc(&[0x43])),
            Message::DocUnavailable { sender_id: "a".into(), target_id: "b".into(), document_id: "d".into() },
            Message::Ephemeral {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: "d".into(),
                session_id: "s".into(),
                count: 7,
                data: vec![1, 2],
            },
            Message::RemoteSubscriptionChange {
                sender_id: "a".into(),
                target_id: "b".into(),
                add: vec!["s1".into()],
                remove: vec![],
            },
            Message::RemoteHeadsChanged {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: "d".into(),
                new_heads: vec![RemoteHeads { storage_id: "s1".into(), heads: vec!["ab".into()], timestamp: 5 }],
            },
        ];
        for m in messages {
            assert_eq!(decode(&encode(&m)), Ok(m.clone()), "{}", m.kind());
        }
    }

    /// The JavaScript client's quirks: `undefined` for absent fields (0xf7), floats for counts,
    /// extra keys, tagged typed arrays.
    #[test]
    fn accepts_what_the_javascript_client_sends() {
        let value = Value::Map(vec![
            entry("type", text("ephemeral")),
            entry("senderId", text("a")),
            entry("targetId", text("b")),
            entry("documentId", text("d")),
            entry("sessionId", text("s")),
            entry("count", Value::Float(3.0)),
            entry("data", Value::Tag(TAG_UINT8_ARRAY, Box::new(Value::Bytes(vec![9])))),
            entry("extra", text("ignored")),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).expect("encode");
        assert!(matches!(decode(&bytes), Ok(Message::Ephemeral { count: 3, ref data, .. }) if data == &[9]));

        // {"type":"join","senderId":"p","peerMetadata":undefined} written by hand, with 0xf7.
        let mut join = vec![0xa3];
        for s in ["type", "join", "senderId", "p", "peerMetadata"] {
            join.push(0x60 + s.len() as u8);
            join.extend_from_slice(s.as_bytes());
        }
        join.push(0xf7);
        assert_eq!(
            decode(&join),
            Ok(Message::Join { sender_id: "p".into(), peer_metadata: None, supported_protocol_versions: None })
        );
    }

    fn check(bytes: &[u8], expected: WireError) {
        assert_eq!(decode(bytes), Err(expected));
    }

    fn cbor(value: Value) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).expect("encode");
        bytes
    }

    #[test]
    fn bad_messages_are_refused_with_the_field_named() {
        assert!(matches!(decode(&[0xff, 0x00]), Err(WireError::Cbor(_))));
        assert!(matches!(decode(&[]), Err(WireError::Cbor(_))));
        check(&cbor(text("hello")), WireError::NotAMap);
        check(&cbor(Value::Map(vec![])), WireError::Missing { message_type: "message".into(), field: "type" });
        check(&cbor(Value::Map(vec![entry("type", text("gossip"))])), WireError::UnknownType("gossip".into()));
        check(
            &cbor(Value::Map(vec![entry("type", text("sync")), entry("senderId", text("a"))])),
            WireError::Missing { message_type: "sync".into(), field: "targetId" },
        );
        check(
            &cbor(Value::Map(vec![
                entry("type", text("sync")),
                entry("senderId", text("a")),
                entry("targetId", text("b")),
                entry("documentId", text("d")),
                entry("data", text("not bytes")),
            ])),
            WireError::WrongType { message_type: "sync".into(), field: "data", expected: "a byte string" },
        );
    }

    #[test]
    fn lying_length_headers_do_not_exhaust_memory() {
        // A byte string, an array and a map that each claim 2^62 items, with nothing after.
        for header in [0x5b, 0x9b, 0xbb] {
            let mut bytes = vec![header];
            bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
            assert!(decode(&bytes).is_err());
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = vec![0x81; 100_000];
        assert!(decode(&deep).is_err());
    }
}
