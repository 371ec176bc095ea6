//! Hostile peers, one test per attack (in the manner of a regression suite: each is named for
//! what it tried). After each, the server still answers `/healthz` within a second, the test
//! process's memory stays under [`MEMORY_BOUND_MIB`], and another client's data is intact.
//!
//! Most run in open-sync mode, as an attacker with no token would against a server that allowed
//! it; each also works for an enrolled phone, since every phone may read its campaign document.
//! The attacks that need an enrolled device enroll one.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::{Client, Running, config, secure_config, start};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::config::Limits;
use hamlet_server::store::{Committer, Store};
use hamlet_server::sync::access::SyncAccess;
use hamlet_server::sync::hub::{Hub, NoObserver, Outbound};
use hamlet_server::sync::metrics::Metrics;
use hamlet_server::sync::outbox::outbox;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ActorId, AutoCommit, Automerge, AutomergeError, ROOT};
use hamlet_sync_core::session::Identity;
use hamlet_sync_core::wire::{self, DocMessage, Message, PeerMetadata};
use hamlet_sync_core::{AnswerKey, AnswerValue, DocumentId, Ledger, Level, NewResponse, fixtures};

/// Peak resident memory the whole test process may reach (every test of this file together):
/// the Bloom filter attack alone reached 8 GB before it was fixed.
const MEMORY_BOUND_MIB: u64 = 1536;

/// The test process's peak resident memory, from `/proc/self/status`.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("kB") / 1024
}

/// The checks every attack ends with.
async fn still_serving(server: &Running, bystander: &Bystander) {
    let health = tokio::time::timeout(Duration::from_secs(1), server.http_get("/healthz")).await;
    assert!(matches!(health, Ok((200, _))), "/healthz did not answer within a second: {health:?}");
    let peak = peak_rss_mib();
    assert!(peak < MEMORY_BOUND_MIB, "peak memory {peak} MiB is over {MEMORY_BOUND_MIB} MiB");
    bystander.intact(server).await;
}

/// Another client, with a document stored before the attack.
struct Bystander {
    document: DocumentId,
    heads: Vec<hamlet_sync_core::automerge::ChangeHash>,
    token: Option<String>,
}

impl Bystander {
    async fn store(server: &Running, token: Option<&str>) -> Bystander {
        let document = DocumentId::from_bytes(rand16());
        let mut doc = Automerge::new();
        doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "bystander", "intact").map(drop))
            .map_err(|f| f.error)
            .unwrap();
        let mut client = Client::join_with(&server.url(), "bystander", Some("bystander-store"), token).await;
        client.sync(document, &mut doc, &mut sync::State::new()).await;
        Bystander { document, heads: doc.get_heads(), token: token.map(String::from) }
    }

    async fn intact(&self, server: &Running) {
        let mut client = Client::join_with(&server.url(), "bystander-2", None, self.token.as_deref()).await;
        let mut copy = Automerge::new();
        client.sync_with(self.document, &mut copy, &mut sync::State::new(), true).await.expect("bystander reads");
        assert_eq!(copy.get_heads(), self.heads, "the bystander's document is intact");
    }
}

fn rand16() -> [u8; 16] {
    let actor = ActorId::random();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&actor.to_bytes()[..16]);
    bytes
}

async fn open_server() -> (Running, support::TestDb) {
    let db = support::databases().await.remove(0);
    (start(config(db.url(), &[])).await, db)
}

/// Sends `data` as a `request` for a fresh document and returns the server's answer.
async fn request_with(server: &Running, data: Vec<u8>) -> Option<Message> {
    let mut attacker = Client::join(&server.url(), "attacker", None).await;
    let m = attacker.doc_message(DocumentId::from_bytes(rand16()), data);
    attacker.send(&Message::Request(m)).await;
    attacker.recv().await
}

fn assert_refused(answer: Option<Message>, says: &str) {
    match answer {
        Some(Message::Error { message, .. }) => assert!(message.contains(says), "{message}"),
        other => panic!("expected an error saying {says:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bloom_filter_claiming_four_billion_probes() {
    let (server, _db) = open_server().await;
    let bystander = Bystander::store(&server, None).await;
    let hostile = vec![0x42, 0, 0, 1, 0, 8, 1, 8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0];
    assert_refused(request_with(&server, hostile).await, "Bloom filter");
    still_serving(&server, &bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn a_bloom_filter_with_zero_bits_per_entry() {
    let (server, _db) = open_server().await;
    let bystander = Bystander::store(&server, None).await;
    let hostile = vec![0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0];
    assert_refused(request_with(&server, hostile).await, "Bloom filter");
    still_serving(&server, &bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn document_ids_of_four_million_characters() {
    let (server, _db) = open_server().await;
    let bystander = Bystander::store(&server, None).await;
    let mut attacker = Client::join(&server.url(), "attacker", None).await;
    for _ in 0..2 {
        attacker
            .send(&Message::DocUnavailable {
                sender_id: "attacker".into(),
                target_id: "server".into(),
                document_id: "2".repeat(4_000_000),
            })
            .await;
    }
    for _ in 0..2 {
        match attacker.recv().await {
            // The reply quotes the id, shortened.
            Some(Message::Error { message, .. }) => assert!(message.len() < 200, "{} bytes", message.len()),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    still_serving(&server, &bystander).await;
    server.stop().await;
}

/// A change chunk (type 2, DEFLATE) of 96 MiB of zeros, over the 64 MiB document limit:
/// about 100 KB on the wire.
fn compressed_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..96 {
        e.write_all(&zeros).unwrap();
    }
    let body = e.finish().unwrap();
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    leb(body.len() as u64, &mut chunk);
    chunk.extend(body);
    // A sync message: no heads, no need, no have, one change.
    let mut message = vec![0x42, 0, 0, 0, 1];
    leb(chunk.len() as u64, &mut message);
    message.extend(chunk);
    message
}

fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[tokio::test]
async fn a_compressed_change_that_inflates_to_96_mib() {
    let (server, _db) = open_server().await;
    let bystander = Bystander::store(&server, None).await;
    let bomb = compressed_bomb();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    assert_refused(request_with(&server, bomb).await, "inflate");
    still_serving(&server, &bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn an_ephemeral_message_of_a_mebibyte() {
    let (server, _db) = open_server().await;
    let bystander = Bystander::store(&server, None).await;
    let mut attacker = Client::join(&server.url(), "attacker", None).await;
    attacker
        .send(&Message::Ephemeral {
            sender_id: "attacker".into(),
            target_id: "server".into(),
            document_id: bystander.document.to_string(),
            session_id: "s".into(),
            count: 1,
            data: vec![7; 1 << 20],
        })
        .await;
    assert_refused(attacker.recv().await, "ephemeral message");
    still_serving(&server, &bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_while_ephemeral_messages_pour_in() {
    let db = support::databases().await.remove(0);
    let server = start(config(db.url(), &["--ping-seconds", "1"])).await;
    let bystander = Bystander::store(&server, None).await;
    let document = bystander.document;
    // The slow reader joins the document (asks for it once), then reads nothing more.
    let mut slow = Client::join(&server.url(), "slow", None).await;
    slow.sync_with(document, &mut Automerge::new(), &mut sync::State::new(), true).await.expect("slow reads once");
    let mut loud = Client::join(&server.url(), "loud", None).await;
    loud.sync_with(document, &mut Automerge::new(), &mut sync::State::new(), true).await.expect("loud joins");
    // 60 KB a message, 1,000 messages: 60 MB for the slow reader, more than its socket buffers
    // and its queue hold together.
    for count in 0..1_000u64 {
        loud.send(&Message::Ephemeral {
            sender_id: "loud".into(),
            target_id: "server".into(),
            document_id: document.to_string(),
            session_id: "loud-session".into(),
            count,
            data: vec![1; 60_000],
        })
        .await;
    }
    still_serving(&server, &bystander).await;
    // The slow reader was let go: what it finds now ends in a close, not in 60 MB.
    let mut frames = 0usize;
    while slow.recv_within(Duration::from_secs(15)).await.is_some() {
        frames += 1;
        assert!(frames < 1_000, "the slow reader was sent everything");
    }
    let metrics = server.http_get("/metrics").await.1;
    let overloaded = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hamlet_errors_total{kind=\"overloaded\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(overloaded.is_some_and(|n| n > 0), "no overload counted: {metrics}");
    server.stop().await;
}

#[tokio::test]
async fn a_storage_id_of_a_megabyte_and_a_colleagues_peer_id() {
    let (server, _db) = open_server().await;
    let bystander = Bystander::store(&server, None).await;
    let long = "s".repeat(1 << 20);
    let mut attacker = Client::connect(&server.url(), "attacker").await;
    attacker
        .send(&Message::Join {
            sender_id: "attacker".into(),
            peer_metadata: Some(hamlet_sync_core::wire::PeerMetadata { storage_id: Some(long), is_ephemeral: false }),
            supported_protocol_versions: Some(vec!["1".into()]),
        })
        .await;
    assert_refused(attacker.recv().await, "storageId of 1048576 bytes is too long");
    still_serving(&server, &bystander).await;
    server.stop().await;
}

// ---- attacks by an enrolled device ----

/// A server in production mode with one campaign's hamlet `thon-dong` and two collectors
/// enrolled for it.
struct Hamlet {
    server: Running,
    _db: support::TestDb,
    accounts: Accounts,
    /// (token, actor) by collector.
    phones: BTreeMap<&'static str, (String, ActorId)>,
}

impl Hamlet {
    async fn new(extra: &[&str]) -> Hamlet {
        let db = support::databases().await.remove(0);
        let store = Store::open(db.url()).await.unwrap();
        let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
        let mut phones = BTreeMap::new();
        for person in ["c1", "c2"] {
            accounts.create_person(person, person, Role::Collector).await.unwrap();
            let campaign = fixtures::campaign().id.to_string();
            accounts.set_assignments(person, &campaign, &["thon-dong".into()]).await.unwrap();
            let (code, _) = accounts.issue_code(person, Duration::from_secs(600)).await.unwrap();
            let actor = ActorId::random();
            let enrolled = accounts.enroll(&code, &[actor.to_hex_string()], "phone").await.unwrap();
            phones.insert(person, (enrolled.token, actor));
        }
        let server = start(secure_config(db.url(), extra)).await;
        Hamlet { server, _db: db, accounts, phones }
    }

    async fn phone(&self, person: &str, peer: &str) -> Client {
        Client::join_with(&self.server.url(), peer, Some(&format!("{peer}-store")), Some(&self.phones[person].0)).await
    }

    fn ledger(&self, person: &str) -> Ledger {
        let campaign = fixtures::open_campaign();
        Ledger::create(&campaign.id, &fixtures::hamlet("thon-dong"), self.phones[person].1.clone())
    }
}

/// Records a response, with a comment of `comment_chars` letters that do not compress.
fn record(ledger: &mut Ledger, id: &str, comment_chars: usize) {
    let campaign = fixtures::open_campaign();
    let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
    let mut answers = BTreeMap::from([(key, AnswerValue::Level(Level::TinNhiem))]);
    if comment_chars > 0 {
        let comment = AnswerKey::for_subject(fixtures::question("y-kien"), fixtures::subject("ong-an"));
        let mut x: u32 = id.bytes().map(u32::from).sum();
        let text: String = (0..comment_chars)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from(b'a' + ((x >> 16) % 26) as u8)
            })
            .collect();
        answers.insert(comment, AnswerValue::Comment(text));
    }
    let response = NewResponse { id: id.parse().unwrap(), collector: "c1".parse().unwrap(), answers };
    ledger.record(&campaign, &response, "2025-06-02".parse().unwrap()).unwrap();
}

#[tokio::test]
async fn a_device_opening_connection_after_connection() {
    let hamlet = Hamlet::new(&[]).await;
    let mut open = Vec::new();
    for i in 0..Limits::default().connections_per_device {
        open.push(hamlet.phone("c1", &format!("peer-{i}")).await);
    }
    // One more is refused with the reason; the others stay.
    let mut extra = Client::connect_with(&hamlet.server.url(), "peer-extra", Some(&hamlet.phones["c1"].0))
        .await
        .expect("the socket opens");
    assert_refused(extra.recv().await, "connections open");
    drop(open);
    // Once the server has seen them close, the device may connect again. The server hears of
    // each close on its own time and tells no client when it did, so this polls, with a
    // deadline that only a server never freeing the places would reach.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut again = loop {
        let bearer = format!("Bearer {}", hamlet.phones["c1"].0);
        let headers = [("Authorization", bearer.as_str())];
        match Client::try_join_headers(&hamlet.server.url(), "peer-again", Some("peer-again-store"), &headers).await {
            Ok(client) => break client,
            Err(other) if tokio::time::Instant::now() < deadline => {
                assert_refused(other, "connections open");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("the device may connect again once its connections closed: {other:?}"),
        }
    };
    let mut ledger = hamlet.ledger("c1");
    record(&mut ledger, "r-1", 0);
    again.sync(ledger.id(), &mut ledger.doc().clone(), &mut sync::State::new()).await;
    hamlet.server.stop().await;
}

#[tokio::test]
async fn one_device_filling_its_hamlets_ledger() {
    // A document limit of 400 KB: one device may add an eighth of it, 50 KB.
    let hamlet = Hamlet::new(&["--max-document-bytes", "400000"]).await;
    let mut phone = hamlet.phone("c1", "filler").await;
    let mut ledger = hamlet.ledger("c1");
    let mut state = sync::State::new();
    phone.sync(ledger.id(), &mut ledger.doc().clone(), &mut state).await;
    let mut refused = None;
    for i in 0..40 {
        // 40 responses with 2,000-letter comments: 80 KB, over the device's share.
        record(&mut ledger, &format!("r-{i}"), 2_000);
        match phone.sync_with(ledger.id(), &mut ledger.doc().clone(), &mut state, false).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (at, why) = refused.expect("the device is stopped before it fills the ledger");
    assert!(at >= 15, "the first 30 KB or so are accepted (refused at response {at})");
    assert!(why.contains("one device may add at most"), "{why}");
    // A colleague in the same hamlet still records.
    let mut colleague = hamlet.phone("c2", "colleague").await;
    let mut theirs = hamlet.ledger("c2");
    record(&mut theirs, "r-colleague", 0);
    colleague.sync(theirs.id(), &mut theirs.doc().clone(), &mut sync::State::new()).await;
    hamlet.server.stop().await;
}

#[tokio::test]
async fn a_connection_kept_open_after_its_hamlet_was_taken_away() {
    let hamlet = Hamlet::new(&["--ping-seconds", "1"]).await;
    let mut phone = hamlet.phone("c1", "moved").await;
    let mut ledger = hamlet.ledger("c1");
    record(&mut ledger, "r-1", 0);
    phone.sync(ledger.id(), &mut ledger.doc().clone(), &mut sync::State::new()).await;
    let campaign = fixtures::campaign().id.to_string();
    hamlet.accounts.set_assignments("c1", &campaign, &[]).await.unwrap();
    // Within the next check (every 5 s) the connection is closed, saying why.
    let mut said = None;
    while let Some(message) = phone.recv_within(Duration::from_secs(12)).await {
        if let Message::Error { message, .. } = message {
            said = Some(message);
        }
    }
    assert!(said.as_deref().is_some_and(|m| m.contains("assignments changed")), "{said:?}");
    // A new connection no longer reads the ledger.
    let mut again = hamlet.phone("c1", "moved-again").await;
    let err = again.sync_with(ledger.id(), &mut Automerge::new(), &mut sync::State::new(), true).await.unwrap_err();
    assert!(err.starts_with("DocUnavailable"), "{err}");
    hamlet.server.stop().await;
}

// ---- the hub, without sockets ----

/// A refused message in the same round as a staff write and another peer's changes: the write
/// is stored as reported, and the other peer's changes stay.
#[tokio::test]
async fn a_malformed_message_in_the_round_of_a_staff_write() {
    let db = support::databases().await.remove(0);
    let store = Store::open(db.url()).await.unwrap();
    let (committer, _writer) = Committer::spawn(store.clone(), 64);
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    let identity = Identity { peer_id: "server".into(), storage_id: "server-store".into() };
    let hub = Hub::new(
        store.clone(),
        committer,
        identity,
        Limits::default(),
        Arc::new(Metrics::default()),
        accounts,
        Arc::new(NoObserver),
    );
    let document = DocumentId::from_bytes(rand16());

    // Connections in open mode, joined; the `peer` answers are read off.
    let connect = async |name: &str| {
        let (tx, mut rx) = outbox(1024, 1 << 24);
        let conn = hub.open(Arc::new(SyncAccess::Open), tx);
        let join = Message::Join {
            sender_id: name.into(),
            peer_metadata: Some(PeerMetadata { storage_id: None, is_ephemeral: true }),
            supported_protocol_versions: Some(vec!["1".into()]),
        };
        hub.frame(conn, wire::encode(&join), 0).await;
        assert!(matches!(rx.try_recv(), Some(Outbound::Frame(_))), "{name} joined");
        (conn, rx)
    };
    let sync_frame = |name: &str, data: Vec<u8>| {
        wire::encode(&Message::Sync(DocMessage {
            sender_id: name.into(),
            target_id: "server".into(),
            document_id: document.to_string(),
            data,
        }))
    };
    let (honest, mut honest_rx) = connect("honest").await;
    let (hostile, mut hostile_rx) = connect("hostile").await;
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "from-honest", 1).unwrap();
    // As if the server had said it holds nothing: the message carries the change.
    let mut state = sync::State::new();
    state.their_heads = Some(Vec::new());
    state.their_need = Some(Vec::new());
    state.their_have = Some(vec![sync::Have::default()]);
    let message = doc.sync().generate_sync_message(&mut state).unwrap().encode();

    // All three are queued before the document's task first runs: one round.
    hub.frame(honest, sync_frame("honest", message), 0).await;
    let write = hub.write(
        document,
        Box::new(|doc: &mut Automerge| {
            doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "from-staff", 2).map(drop))
                .map(drop)
                .map_err(|f| f.error.to_string())
        }),
    );
    let garbage = vec![0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0];
    hub.frame(hostile, sync_frame("hostile", garbage), 0).await;
    let heads = write.await.expect("the staff write is stored");

    // What the write reported is what is stored, and the honest peer's change is in it.
    let stored = store.load(&document.to_string()).await.unwrap();
    let mut reloaded = Automerge::new();
    for chunk in stored {
        reloaded.load_incremental(&chunk.data).unwrap();
    }
    assert_eq!(reloaded.get_heads(), heads);
    use hamlet_sync_core::automerge::ReadDoc;
    assert!(reloaded.get(ROOT, "from-staff").unwrap().is_some(), "the staff write is stored");
    assert!(reloaded.get(ROOT, "from-honest").unwrap().is_some(), "the honest peer's change stays");
    assert!(matches!(hostile_rx.recv().await, Some(Outbound::Frame(_))), "the hostile peer hears an error");
    assert!(matches!(honest_rx.recv().await, Some(Outbound::Frame(_))), "the honest peer hears back");
}

#[tokio::test]
async fn a_device_claiming_actor_after_actor() {
    let hamlet = Hamlet::new(&[]).await;
    let bearer = format!("Bearer {}", hamlet.phones["c1"].0);
    let claim = |n: usize, from: usize| {
        let ids: Vec<String> = (from..from + n).map(|i| format!("{i:032x}")).collect();
        serde_json::json!({ "actor_ids": ids }).to_string()
    };
    // 1,000 ids in one request: refused whole, with the reason, nothing stored.
    let reply = hamlet
        .server
        .request("POST", "/api/device/actors", &[("Authorization", &bearer)], Some(&claim(1_000, 0)))
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.body.contains("at most"), "{}", reply.body);
    // Sixteen at a time: accepted until the device holds its limit, then refused, so no device
    // can fill the actor table (or reserve a hamlet's worth of ids its colleagues may pick).
    let mut claimed = 1; // the actor it enrolled with
    let mut refused = None;
    for round in 0..20 {
        let reply = hamlet
            .server
            .request("POST", "/api/device/actors", &[("Authorization", &bearer)], Some(&claim(16, 1_000 + round * 16)))
            .await;
        if reply.status == 204 {
            claimed += 16;
        } else {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the device is stopped before 320 more actors");
    assert_eq!((refused.status, refused.json()["code"].as_str()), (409, Some("too_many_actors")), "{refused:?}");
    assert!(claimed <= 64, "{claimed} actors held");
    // Ids the device already holds may be sent again (a retried request) without counting twice.
    let again = hamlet
        .server
        .request("POST", "/api/device/actors", &[("Authorization", &bearer)], Some(&claim(16, 1_000)))
        .await;
    assert_eq!(again.status, 204, "{again:?}");
    hamlet.server.stop().await;
}
