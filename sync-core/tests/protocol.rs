//! The server's protocol promises through its hub and document actors, without sockets: the
//! simulation's server ([`SimServer`]: sync-core's `Hub` and `DocumentActor`s over an in-memory
//! store) with every request completed at once, and peers written as plain messages.
//!
//! These were socket tests of `server/tests/protocol.rs` and `server/tests/hostile.rs`; what
//! needs a socket (the handshake over HTTP, frame limits, pings, close frames, several server
//! processes on one database) stays there.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hamlet_sync_core::actor::{ActorLimits, ConnId};
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ChangeHash, ROOT, ReadDoc};
use hamlet_sync_core::sim::server::{Output, SimAccess, SimServer};
use hamlet_sync_core::wire::{self, DocMessage, Message, PeerMetadata};
use hamlet_sync_core::{DocumentId, fixtures};

fn id(n: u8) -> DocumentId {
    DocumentId::from_bytes([n; 16])
}

fn actor_of(device: &str) -> ActorId {
    let mut bytes = [0u8; 16];
    for (b, c) in bytes.iter_mut().zip(device.bytes()) {
        *b = c;
    }
    ActorId::from(&bytes[..])
}

/// A document of `device` (written by its enrolled actor) with `entries` keys.
fn doc_of(device: &str, entries: usize) -> Automerge {
    let mut doc = Automerge::new().with_actor(actor_of(device));
    for i in 0..entries {
        put(&mut doc, &format!("key-{i}"), i as i64);
    }
    doc
}

fn put(doc: &mut Automerge, key: &str, value: i64) {
    doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, key, value)).map_err(|f| f.error).unwrap();
}

/// The server, and what it sent on each connection.
struct Net {
    server: SimServer,
    now: u64,
    inbox: BTreeMap<ConnId, Vec<Message>>,
    closed: BTreeMap<ConnId, String>,
}

/// One peer on one connection.
struct Peer {
    conn: ConnId,
    name: String,
}

impl Net {
    fn new() -> Net {
        let server = SimServer::new(fixtures::open_campaign(), &[], ActorLimits::default());
        Net { server, now: 1_000, inbox: BTreeMap::new(), closed: BTreeMap::new() }
    }

    /// Routes what the server sent (a connection it closes is reported closed, as a socket
    /// ending would be), then completes every request the actors wait for, and routes what that
    /// sends, until none waits.
    fn settle(&mut self, outputs: Vec<Output>) {
        let mut queue: VecDeque<Output> = outputs.into();
        loop {
            while let Some(output) = queue.pop_front() {
                match output {
                    Output::Send(conn, message) => self.inbox.entry(conn).or_default().push(message),
                    Output::Close(conn, reason) => {
                        self.closed.insert(conn, reason);
                        queue.extend(self.server.closed(conn, self.now));
                    }
                }
            }
            let Some(doc) = self.server.pending.keys().next().copied() else { break };
            self.now += 1;
            queue.extend(self.server.complete(doc, false, self.now));
        }
        assert!(self.server.violations.is_empty(), "{:?}", self.server.violations);
        assert!(self.server.leaks.is_empty(), "{:?}", self.server.leaks);
    }

    /// Device `device` connects, may read `readable`, and joins as `name` (durable with
    /// `storage`); the `peer` answer is checked and read off.
    fn join(&mut self, device: &str, name: &str, storage: Option<&str>, readable: &[DocumentId]) -> Peer {
        let access =
            SimAccess { device: device.into(), readable: readable.iter().copied().collect(), actor: actor_of(device) };
        let (conn, out) = self.server.open(access, self.now);
        self.settle(out);
        let peer = Peer { conn, name: name.into() };
        self.send(
            &peer,
            &Message::Join {
                sender_id: name.into(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: storage.map(String::from),
                    is_ephemeral: storage.is_none(),
                }),
                supported_protocol_versions: Some(vec!["1".into()]),
            },
        );
        let answer = self.take(&peer);
        assert!(matches!(&answer[..], [Message::Peer { .. }]), "{answer:?}");
        peer
    }

    fn send(&mut self, peer: &Peer, message: &Message) {
        self.now += 1;
        let out = self.server.frame(peer.conn, wire::encode(message), self.now);
        self.settle(out);
    }

    /// Everything sent to `peer` since the last call.
    fn take(&mut self, peer: &Peer) -> Vec<Message> {
        self.inbox.remove(&peer.conn).unwrap_or_default()
    }

    fn leave(&mut self, peer: Peer) {
        let out = self.server.closed(peer.conn, self.now);
        self.settle(out);
    }

    fn doc_message(peer: &Peer, document: DocumentId, data: Vec<u8>) -> DocMessage {
        DocMessage {
            sender_id: peer.name.clone(),
            target_id: "district".into(),
            document_id: document.to_string(),
            data,
        }
    }

    /// Syncs `doc` until the server holds all of it and `peer` holds all the server sent;
    /// `Err` with the server's answer when it is neither a sync message nor an announcement of
    /// heads. Returns the bytes of sync data sent each way.
    fn sync(
        &mut self,
        peer: &Peer,
        document: DocumentId,
        doc: &mut Automerge,
        state: &mut sync::State,
        request: bool,
    ) -> Result<(usize, usize), Box<Message>> {
        let (mut sent, mut received) = (0, 0);
        let mut first = true;
        for _ in 0..100 {
            if let Some(message) = doc.generate_sync_message(state) {
                let data = message.encode();
                sent += data.len();
                let m = Self::doc_message(peer, document, data);
                self.send(peer, &if first && request { Message::Request(m) } else { Message::Sync(m) });
                first = false;
            }
            if acknowledged(doc, state) {
                return Ok((sent, received));
            }
            let answers = self.take(peer);
            assert!(!answers.is_empty(), "the server answered nothing");
            for answer in answers {
                match answer {
                    Message::Sync(m) => {
                        received += m.data.len();
                        doc.receive_sync_message(state, sync::Message::decode(&m.data).unwrap()).unwrap();
                    }
                    Message::RemoteHeadsChanged { .. } => {}
                    other => return Err(Box::new(other)),
                }
            }
        }
        panic!("no convergence in 100 rounds");
    }
}

/// Whether the server's last known heads are ours.
fn acknowledged(doc: &Automerge, state: &sync::State) -> bool {
    let ours: BTreeSet<ChangeHash> = doc.get_heads().into_iter().collect();
    state.their_heads.as_ref().is_some_and(|h| h.iter().copied().collect::<BTreeSet<_>>() == ours)
}

/// Was `server/tests/protocol.rs` `a_request_for_a_missing_document_is_answered_unavailable`.
#[test]
fn a_request_for_a_missing_document_is_answered_unavailable() {
    let mut net = Net::new();
    let phone = net.join("dev-1", "phone-1", None, &[id(1)]);
    let mut doc = Automerge::new();
    let answer = net.sync(&phone, id(1), &mut doc, &mut sync::State::new(), true).unwrap_err();
    assert!(
        matches!(&*answer, Message::DocUnavailable { document_id, target_id, .. }
            if *document_id == id(1).to_string() && target_id == "phone-1"),
        "{answer:?}"
    );
    assert_eq!(net.server.store.chunk_count(&id(1)), 0, "nothing stored for it");
}

/// Was `server/tests/protocol.rs` `a_peer_with_storage_resumes_from_its_saved_sync_state`
/// (which slept 200 ms for the server to see the first connection go: here the close is an
/// event handed to the hub).
#[test]
fn a_peer_with_storage_resumes_from_its_saved_sync_state() {
    let mut net = Net::new();
    let mut doc = doc_of("dev-1", 2000);
    let mut state = sync::State::new();
    let phone = net.join("dev-1", "phone-1", Some("phone-store"), &[id(3)]);
    let (first, _) = net.sync(&phone, id(3), &mut doc, &mut state, false).unwrap();
    net.leave(phone);
    // Both sides keep the part of the state meant to outlive a connection.
    let mut state = sync::State::decode(&state.encode()).unwrap();

    put(&mut doc, "one-more", 1);
    let change = doc.get_last_local_change().unwrap().raw_bytes().len();
    let phone = net.join("dev-1", "phone-1-again", Some("phone-store"), &[id(3)]);
    let (sent, received) = net.sync(&phone, id(3), &mut doc, &mut state, false).unwrap();
    assert!(sent < change + 1024, "the phone sent {sent} bytes for a {change}-byte change");
    let whole = doc.save().len();
    assert!(whole > 2 * (change + 1024), "the check above means something: the document is {whole} bytes");
    assert!(received < 1024, "the server sent {received} bytes (it received {first} at first)");
    assert_eq!(net.server.store.load(&id(3)).get_heads(), doc.get_heads());
}

/// Was `server/tests/protocol.rs` `changes_reach_the_other_peers_of_the_document_only`.
#[test]
fn changes_reach_the_other_peers_of_the_document_only() {
    let mut net = Net::new();
    let a = net.join("dev-a", "a", None, &[id(30)]);
    let b = net.join("dev-b", "b", None, &[id(30)]);
    let bystander = net.join("dev-c", "c", None, &[id(30), id(31)]);
    let mut doc_a = doc_of("dev-a", 2);
    net.sync(&a, id(30), &mut doc_a, &mut sync::State::new(), false).unwrap();
    let mut doc_b = Automerge::new();
    let mut state_b = sync::State::new();
    net.sync(&b, id(30), &mut doc_b, &mut state_b, true).unwrap();
    assert_eq!(doc_b.get_heads(), doc_a.get_heads());

    // A writes again; B hears of it without asking.
    put(&mut doc_a, "news", 1);
    net.sync(&a, id(30), &mut doc_a, &mut sync::State::new(), false).unwrap();
    let pushed = net.take(&b);
    assert!(!pushed.is_empty(), "b is told of the news");
    for message in pushed {
        let Message::Sync(m) = message else { panic!("b expected sync, got {message:?}") };
        assert_eq!(m.target_id, "b");
        doc_b.receive_sync_message(&mut state_b, sync::Message::decode(&m.data).unwrap()).unwrap();
    }
    assert_eq!(doc_b.get_heads(), doc_a.get_heads(), "b holds the news");

    // Ephemeral messages go to the document's other peers, once, with only targetId changed.
    let eph = |count| Message::Ephemeral {
        sender_id: "a".into(),
        target_id: "district".into(),
        document_id: id(30).to_string(),
        session_id: "session-a".into(),
        count,
        data: vec![7],
    };
    net.send(&a, &eph(1));
    net.send(&a, &eph(1));
    net.send(&a, &eph(2));
    let heard: Vec<(u64, String, String)> = net
        .take(&b)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ephemeral { count, target_id, sender_id, .. } => Some((count, target_id, sender_id)),
            _ => None,
        })
        .collect();
    assert_eq!(heard, [(1, "b".into(), "a".into()), (2, "b".into(), "a".into())]);
    assert!(net.take(&a).iter().all(|m| !matches!(m, Message::Ephemeral { .. })), "not back to its sender");

    // Nothing was pushed to the bystander, who is no peer of the document (though it may read it).
    assert!(net.take(&bystander).is_empty());
    let answer = net.sync(&bystander, id(31), &mut Automerge::new(), &mut sync::State::new(), true).unwrap_err();
    assert!(matches!(*answer, Message::DocUnavailable { .. }), "{answer:?}");
}

/// Was `server/tests/protocol.rs` `a_second_join_with_the_same_peer_id_replaces_the_first_socket`
/// (the hub's rule within a device is in `actor.rs`
/// `the_newest_connection_of_a_peer_wins_within_its_device`): the older connection is closed
/// with a reason, and the newer one syncs.
#[test]
fn a_second_join_with_the_same_peer_id_replaces_the_first_connection() {
    let mut net = Net::new();
    let first = net.join("dev-1", "phone", None, &[id(40)]);
    let second = net.join("dev-1", "phone", None, &[id(40)]);
    assert!(net.closed.get(&first.conn).is_some_and(|r| r.contains("newer connection")), "{:?}", net.closed);
    assert!(
        matches!(&net.take(&first)[..], [Message::Error { message, .. }] if message.contains("newer connection")),
        "the older connection hears why"
    );
    let mut doc = doc_of("dev-1", 1);
    net.sync(&second, id(40), &mut doc, &mut sync::State::new(), false).unwrap();
    assert!(!net.closed.contains_key(&second.conn));
}

/// Was `server/tests/protocol.rs` `subscribers_hear_the_heads_the_server_stored`: a peer that
/// subscribes to the server's storage hears, once its changes are stored, the heads the server
/// holds, dated with the server's clock; a peer that did not subscribe hears none.
#[test]
fn subscribers_hear_the_heads_the_server_stored() {
    let mut net = Net::new();
    let phone = net.join("dev-1", "phone", Some("phone-store"), &[id(60)]);
    let quiet = net.join("dev-2", "quiet", None, &[id(60)]);
    let storage = net.server.identity.storage_id.clone();
    net.send(
        &phone,
        &Message::RemoteSubscriptionChange {
            sender_id: "phone".into(),
            target_id: "district".into(),
            add: vec![storage.clone()],
            remove: vec![],
        },
    );
    net.sync(&quiet, id(60), &mut Automerge::new(), &mut sync::State::new(), true).unwrap_err();
    let mut doc = doc_of("dev-1", 3);
    let mut state = sync::State::new();
    let mut announced = Vec::new();
    for _ in 0..20 {
        if let Some(m) = doc.generate_sync_message(&mut state) {
            net.send(&phone, &Message::Sync(Net::doc_message(&phone, id(60), m.encode())));
        }
        for answer in net.take(&phone) {
            match answer {
                Message::Sync(m) => {
                    doc.receive_sync_message(&mut state, sync::Message::decode(&m.data).unwrap()).unwrap()
                }
                Message::RemoteHeadsChanged { document_id, new_heads, target_id, .. } => {
                    assert_eq!((document_id, target_id.as_str()), (id(60).to_string(), "phone"));
                    announced.push(new_heads);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if acknowledged(&doc, &state) {
            break;
        }
    }
    let last = announced.last().expect("the server announced its heads");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].storage_id, storage);
    let expected: Vec<String> = doc.get_heads().iter().map(|h| h.to_string()).collect();
    assert_eq!(last[0].heads, expected);
    assert!(last[0].timestamp > 1_000 && last[0].timestamp <= net.now, "dated with the clock handed in");
    assert!(
        net.take(&quiet).iter().all(|m| !matches!(m, Message::RemoteHeadsChanged { .. })),
        "no announcement without a subscription"
    );
}

/// Was `server/tests/hostile.rs` `a_malformed_message_does_not_reset_another_peers_sync`: a
/// hostile peer's bad message does not make the server forget what it told an honest peer (its
/// sync state), which a reload did — one byte bought a full resync.
#[test]
fn a_malformed_message_does_not_reset_another_peers_sync() {
    let mut net = Net::new();
    let writer = net.join("dev-w", "writer", None, &[id(70)]);
    let mut doc = doc_of("dev-w", 5);
    net.sync(&writer, id(70), &mut doc, &mut sync::State::new(), false).unwrap();
    let honest = net.join("dev-h", "honest", None, &[id(70)]);
    let mut copy = Automerge::new();
    net.sync(&honest, id(70), &mut copy, &mut sync::State::new(), true).unwrap();
    assert!(net.take(&honest).is_empty());
    let hostile = net.join("dev-x", "hostile", None, &[id(70)]);
    let garbage = vec![0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0];
    net.send(&hostile, &Message::Sync(Net::doc_message(&hostile, id(70), garbage)));
    let answer = net.take(&hostile);
    assert!(
        matches!(answer.first(), Some(Message::Error { message, .. }) if message.contains("Bloom filter")),
        "the hostile peer hears why: {answer:?}"
    );
    // The honest peer, in sync, hears nothing more: the server did not start over with it.
    assert!(net.take(&honest).is_empty());
    assert_eq!(net.server.store.load(&id(70)).get_heads(), doc.get_heads(), "the document is intact");
    assert!(net.server.store.load(&id(70)).get(ROOT, "key-4").unwrap().is_some());
}
