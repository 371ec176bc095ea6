//! The fuzz targets on what `hamlet-sync-core` reads from outside, and what each asserts.
//!
//! Every function takes the fuzzer's bytes and panics only when something that must hold does
//! not (a panic inside the code under test counts too). `sync-core/tests/fuzz_regressions.rs`
//! compiles this file as well and replays `fuzz/regressions/<target>/` through it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hamlet_sync_core::automerge::{ActorId, Automerge};
use hamlet_sync_core::bundle::Bundle;
use hamlet_sync_core::client::{ClientSession, Effect};
use hamlet_sync_core::guard::{self, Limits};
use hamlet_sync_core::session::{Connection, DocumentSync, Event, Identity, Outgoing, ProtocolError, SyncError};
use hamlet_sync_core::wire::{self, DocMessage, MAX_ID_BYTES, Message, PeerMetadata};
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, DocumentId, Ledger, Level, NewResponse, fixtures, project, project_since,
};

/// The inflation bound the targets use: smaller than the server's default, so that a fuzz run
/// spends its time on many inputs rather than on inflating one; the code path is the same.
pub const MAX_INFLATED: usize = 4 << 20;

fn limits() -> Limits {
    Limits { max_inflated_bytes: MAX_INFLATED, ..Limits::default() }
}

/// A real ledger: the open fixture campaign, hamlet `thon-dong`, three responses (a draft, a
/// submitted one and a voided one) written by one device.
pub struct Fixture {
    /// The campaign the ledger belongs to.
    pub campaign: Campaign,
    /// The ledger's document.
    pub doc: Automerge,
    /// Its id.
    pub id: DocumentId,
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let campaign = fixtures::open_campaign();
        let hamlet = fixtures::hamlet("thon-dong");
        let mut ledger = Ledger::create(&campaign.id, &hamlet, ActorId::from([7u8; 16].as_slice()));
        let today = "2025-06-02".parse().expect("a day");
        let collector = "collector-1".parse().expect("a person");
        for (i, level) in [Level::TinNhiem, Level::TinNhiemCao, Level::TinNhiemThap].into_iter().enumerate() {
            let answers = campaign
                .subjects
                .iter()
                .map(|s| {
                    (AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()), AnswerValue::Level(level))
                })
                .collect::<BTreeMap<_, _>>();
            let id = format!("r-{i}").parse().expect("a response id");
            ledger
                .record(&campaign, &NewResponse { id, collector: "collector-1".parse().expect("id"), answers }, today)
                .expect("records");
        }
        let r1 = "r-1".parse().expect("id");
        ledger.submit(&campaign, &r1, &collector, today).expect("submits");
        let r2 = "r-2".parse().expect("id");
        ledger.void(&r2, "recorded twice", &collector, today).expect("voids");
        let id = ledger.id();
        Fixture { campaign, doc: ledger.into_doc(), id }
    })
}

/// `wire`: the protocol decoder and the server's connection state machine.
///
/// - What `decode` reads, `encode` writes back and `decode` reads again to the same message.
/// - `Connection::receive`, before and after a join, never panics; a peer it accepts has ids
///   within [`MAX_ID_BYTES`]; a document it names is a well-formed id.
pub fn wire(data: &[u8]) {
    if let Ok(message) = wire::decode(data) {
        let again = wire::decode(&wire::encode(&message)).expect("what encode writes, decode reads");
        assert_eq!(again, message, "decode, encode, decode changed the message");
    }
    let identity = Identity { peer_id: "server".into(), storage_id: "server-store".into() };
    let mut fresh = Connection::new(identity.clone());
    connection_event(&fresh.receive(data));
    let mut joined = Connection::new(identity);
    let join = wire::encode(&Message::Join {
        sender_id: "phone".into(),
        peer_metadata: Some(PeerMetadata { storage_id: Some("phone-store".into()), is_ephemeral: false }),
        supported_protocol_versions: Some(vec!["1".into()]),
    });
    assert!(matches!(joined.receive(&join), Ok(Event::Joined { .. })), "an honest join is accepted");
    let event = joined.receive(data);
    connection_event(&event);
    if let Err(e) = &event {
        // The error frame the server would send must itself be a readable message.
        let frame = wire::encode(&joined.error_message(e));
        assert!(wire::decode(&frame).is_ok(), "the error frame does not decode");
    }
}

fn connection_event(event: &Result<Event, ProtocolError>) {
    match event {
        Ok(Event::Joined { peer, reply }) => {
            assert!(peer.peer_id.len() <= MAX_ID_BYTES, "peer id of {} bytes accepted", peer.peer_id.len());
            if let Some(storage) = &peer.storage_id {
                assert!(storage.len() <= MAX_ID_BYTES, "storage id of {} bytes accepted", storage.len());
            }
            assert_eq!(wire::decode(&wire::encode(reply)).as_ref(), Ok(reply));
        }
        Ok(Event::Sync { document, .. } | Event::Unavailable { document } | Event::Ephemeral { document, .. }) => {
            assert_eq!(document.to_string().parse::<DocumentId>().as_ref(), Ok(document));
        }
        Ok(_) => {}
        Err(e) => {
            let _ = e.closes();
        }
    }
}

/// `sync`: sync data from a peer against a real ledger, on both sides of the connection.
///
/// The first byte chooses `request` or `sync` (bit 0); the rest is the Automerge sync message.
///
/// - Server: `DocumentSync::receive` refuses or applies it. A refused message leaves the
///   document as it was; Automerge never panics on what the guard let through; what is unsaved
///   loads into a copy of the ledger; every message `outgoing` then writes passes the guard.
/// - Client: `ClientSession::receive`, after a handshake and with the ledger open, reads the
///   same data in a `sync` frame from the server without panicking.
pub fn sync(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else { return };
    let fixture = fixture();
    let mut server = DocumentSync::with_limits(fixture.id, fixture.doc.clone(), limits());
    server.add_peer("honest", None);
    let before = server.doc().get_heads();
    match server.receive("fuzz", data, flags & 1 == 1) {
        Ok(_) => {}
        Err(SyncError::Panicked) => panic!("Automerge panicked on a sync message the guard let through"),
        Err(_) => assert_eq!(server.doc().get_heads(), before, "a refused message changed the document"),
    }
    if let Some(unsaved) = server.unsaved() {
        let mut copy = fixture.doc.clone();
        copy.load_incremental(&unsaved.chunk).expect("the unsaved chunk loads");
        assert_eq!(copy.get_heads(), unsaved.heads, "the unsaved chunk leads to other heads");
        server.saved(unsaved.heads);
    }
    for (_, out) in server.outgoing() {
        if let Outgoing::Sync(bytes) = out {
            guard::sync_message(&bytes, &Limits::default()).expect("the server's own message passes the guard");
        }
    }

    let mut docs = BTreeMap::from([(fixture.id, fixture.doc.clone())]);
    let mut client = ClientSession::new("phone", "phone-store");
    let peer = wire::encode(&Message::Peer {
        sender_id: "server".into(),
        target_id: "phone".into(),
        peer_metadata: PeerMetadata { storage_id: Some("server-store".into()), is_ephemeral: false },
        selected_protocol_version: "1".into(),
    });
    assert!(matches!(client.receive(&peer, &mut docs).as_deref(), Ok([Effect::Joined(_)])));
    client.open_document(fixture.id, None, &docs).expect("opens after the handshake");
    let frame = wire::encode(&Message::Sync(DocMessage {
        sender_id: "server".into(),
        target_id: "phone".into(),
        document_id: fixture.id.to_string(),
        data: data.to_vec(),
    }));
    let _ = client.receive(&frame, &mut docs);
}

/// `bundle`: reading a bundle file and applying its documents.
///
/// - What `Bundle::decode` reads, `encode` writes back to the same bundle.
/// - Applying each document to the ledger and to an empty document never panics.
pub fn bundle(data: &[u8]) {
    let Ok(bundle) = Bundle::decode(data) else { return };
    assert_eq!(Bundle::decode(&bundle.encode()).as_ref(), Ok(&bundle), "decode, encode, decode changed the bundle");
    let fixture = fixture();
    for document in &bundle.documents {
        for mut doc in [fixture.doc.clone(), Automerge::new()] {
            let _ = document.apply(&mut doc);
        }
    }
}

/// `projection`: an arbitrary Automerge document, checked by `guard::chunks`, loaded, read as
/// a ledger and projected to rows, in full and since the fixture ledger's heads.
pub fn projection(data: &[u8]) {
    if guard::chunks(data, MAX_INFLATED).is_err() {
        return;
    }
    let Ok(doc) = Automerge::load(data) else { return };
    let fixture = fixture();
    if let Ok(ledger) = Ledger::from_doc(doc) {
        let _ = project(&fixture.campaign, &ledger);
        let _ = project_since(&fixture.campaign, &ledger, &fixture.doc.get_heads());
    }
    // The same bytes as changes on top of the real ledger.
    let mut doc = fixture.doc.clone();
    if doc.load_incremental(data).is_ok()
        && let Ok(ledger) = Ledger::from_doc(doc)
    {
        let _ = project(&fixture.campaign, &ledger);
        let _ = project_since(&fixture.campaign, &ledger, &fixture.doc.get_heads());
    }
}
