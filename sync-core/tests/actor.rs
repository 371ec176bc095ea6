//! The server's hub and document actor, driven by hand: what they ask for, and in what order.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use hamlet_sync_core::DocumentId;
use hamlet_sync_core::actor::{
    ActorAction, ActorEvent, ActorLimits, Command, DocumentActor, StoreWrite, WriteError, Written,
};
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{Automerge, AutomergeError, ROOT};
use hamlet_sync_core::hub::{Access, Hub, HubAction, HubEvent, HubLimits};
use hamlet_sync_core::session::{Identity, Peer};
use hamlet_sync_core::wire::{self, DocMessage, Message, PeerMetadata};

fn identity() -> Identity {
    Identity { peer_id: "district".into(), storage_id: "district-store".into() }
}

fn doc_id() -> DocumentId {
    DocumentId::from_bytes([9; 16])
}

fn phone() -> Peer {
    Peer { peer_id: "dev-1/phone".into(), storage_id: Some("dev-1/phone-store".into()), is_ephemeral: false }
}

/// A phone holding one change the server lacks.
struct Phone {
    doc: Automerge,
    state: sync::State,
}

impl Phone {
    fn new() -> Self {
        let mut doc = Automerge::new();
        doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "hamlet", "Thôn Đông").map(|_| ())).unwrap();
        Phone { doc, state: sync::State::new() }
    }

    fn message(&mut self) -> Vec<u8> {
        self.doc.generate_sync_message(&mut self.state).unwrap().encode()
    }

    fn read(&mut self, actions: &[ActorAction<&'static str>]) {
        for message in sends(actions) {
            if let Message::Sync(m) = message {
                self.doc.receive_sync_message(&mut self.state, sync::Message::decode(&m.data).unwrap()).unwrap();
            }
        }
    }
}

fn first_message() -> Vec<u8> {
    Phone::new().message()
}

/// A peer that keeps no sync state (so no state is loaded or saved for it).
fn ephemeral_phone() -> Peer {
    Peer { peer_id: "dev-1/phone".into(), storage_id: None, is_ephemeral: true }
}

fn command(rule: Option<&'static str>, data: Vec<u8>) -> Command<&'static str> {
    Command::Sync { peer: ephemeral_phone(), conn: 1, data, is_request: false, rule, who: "device dev-1".into() }
}

/// An actor loaded with an empty document, and a phone whose next message carries its change
/// (the first exchange, heads only, is done).
fn actor_with(limits: ActorLimits) -> (DocumentActor<&'static str>, Phone) {
    let (mut actor, actions) = DocumentActor::new(doc_id(), identity(), limits);
    assert!(matches!(actions[..], [ActorAction::Load { request: 1 }]), "{actions:?}");
    let actions = actor.handle(ActorEvent::Loaded { request: 1, chunks: Ok(vec![]) }, 0);
    assert!(actor.is_idle(), "{actions:?}");
    let mut phone = Phone::new();
    let actions = actor.handle(ActorEvent::Commands(vec![command(None, phone.message())]), 1);
    assert!(!actions.iter().any(|a| matches!(a, ActorAction::Commit { .. })), "nothing to store yet: {actions:?}");
    phone.read(&actions);
    (actor, phone)
}

fn actor() -> (DocumentActor<&'static str>, Phone) {
    actor_with(ActorLimits::default())
}

fn sends<'a>(actions: &'a [ActorAction<&'static str>]) -> Vec<&'a Message> {
    actions
        .iter()
        .filter_map(|a| if let ActorAction::Send { message, .. } = a { Some(message) } else { None })
        .collect()
}

#[test]
fn a_durable_peer_first_gets_its_saved_sync_state() {
    let (mut actor, _) = actor();
    let command = Command::Sync {
        peer: phone(),
        conn: 2,
        data: first_message(),
        is_request: false,
        rule: None,
        who: "device dev-1".into(),
    };
    let actions = actor.handle(ActorEvent::Commands(vec![command]), 5);
    let [ActorAction::LoadSyncState { request, storage_id }] = &actions[..] else { panic!("{actions:?}") };
    assert_eq!(storage_id, "dev-1/phone-store");
    let actions = actor.handle(ActorEvent::SyncStateLoaded { request: *request, state: None }, 6);
    // Its sync state is stored before anything is sent to it.
    let [ActorAction::Commit { writes, .. }] = &actions[..] else { panic!("{actions:?}") };
    assert!(matches!(&writes[..], [StoreWrite::SyncState { storage_id, .. }] if storage_id == "dev-1/phone-store"));
}

#[test]
fn the_reply_waits_for_the_commit_that_holds_the_change() {
    let (mut actor, mut phone) = actor();
    let actions = actor.handle(ActorEvent::Commands(vec![command(None, phone.message())]), 5);
    let [ActorAction::Commit { request, writes }] = &actions[..] else { panic!("{actions:?}") };
    assert!(matches!(&writes[..], [StoreWrite::Chunk { heads, .. }] if *heads == phone.doc.get_heads()));
    assert!(sends(&actions).is_empty(), "nothing leaves before the commit");
    let actions =
        actor.handle(ActorEvent::Committed { request: *request, result: Ok(vec![Written::Chunk { id: 1 }]) }, 7);
    let sent = sends(&actions);
    let [Message::Sync(reply), Message::RemoteHeadsChanged { new_heads, .. }] = &sent[..] else {
        panic!("{actions:?}")
    };
    let reply = sync::Message::decode(&reply.data).unwrap();
    assert_eq!(reply.heads, phone.doc.get_heads(), "the reply acknowledges the change");
    assert_eq!(new_heads[0].timestamp, 7, "heads are dated with the time handed in");
    assert!(matches!(actions.last(), Some(ActorAction::Project { peers, .. }) if peers.len() == 1));
}

#[test]
fn a_failed_commit_tells_the_sender_and_reloads() {
    let (mut actor, mut phone) = actor();
    let actions = actor.handle(ActorEvent::Commands(vec![command(None, phone.message())]), 5);
    let [ActorAction::Commit { request, .. }] = &actions[..] else { panic!("{actions:?}") };
    let actions = actor.handle(ActorEvent::Committed { request: *request, result: Err("disk full".into()) }, 6);
    assert!(matches!(sends(&actions)[..], [Message::Error { .. }]), "{actions:?}");
    assert!(matches!(actions.last(), Some(ActorAction::Load { .. })), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, ActorAction::Project { .. })));
}

#[test]
fn refused_changes_are_audited_then_answered_and_never_stored() {
    let (mut actor, mut phone) = actor();
    let actions = actor.handle(ActorEvent::Commands(vec![command(Some("collector"), phone.message())]), 5);
    let [ActorAction::Check { request, rule, changes }] = &actions[..] else { panic!("{actions:?}") };
    assert_eq!((*rule, changes.len()), ("collector", 1));
    assert_eq!(actor.doc().get_heads().len(), 1, "the check sees the document holding the changes");
    let actions = actor.handle(ActorEvent::Checked { request: *request, verdict: Err("not yours".into()) }, 6);
    let audit = actions.iter().position(|a| matches!(a, ActorAction::Audit { action: "sync.refused", .. }));
    let error = actions.iter().position(|a| matches!(a, ActorAction::Send { message: Message::Error { .. }, .. }));
    assert!(audit.is_some() && audit < error, "audited before the peer hears: {actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, ActorAction::Commit { .. })), "{actions:?}");
    assert!(actor.doc().get_heads().is_empty(), "the document is back as it was");
}

#[test]
fn a_round_over_the_document_limit_stores_nothing() {
    let (mut actor, mut phone) = actor_with(ActorLimits { max_document_bytes: 10, ..ActorLimits::default() });
    let actions = actor.handle(ActorEvent::Commands(vec![command(None, phone.message())]), 5);
    assert!(!actions.iter().any(|a| matches!(a, ActorAction::Commit { .. })), "{actions:?}");
    assert!(matches!(sends(&actions)[..], [Message::Error { message, .. }] if message.contains("size limit")));
    assert!(actor.doc().get_heads().is_empty());
}

#[test]
fn duplicate_ephemeral_messages_are_relayed_once() {
    let (mut actor, _) = actor();
    let other = Peer { peer_id: "dev-2/phone".into(), storage_id: None, is_ephemeral: true };
    let join =
        Command::Sync { peer: other, conn: 2, data: first_message(), is_request: false, rule: None, who: "x".into() };
    actor.handle(ActorEvent::Commands(vec![join]), 1);
    let ephemeral = || Command::Ephemeral {
        from: "dev-1/phone".into(),
        message: Message::Ephemeral {
            sender_id: "phone".into(),
            target_id: "district".into(),
            document_id: doc_id().to_string(),
            session_id: "s".into(),
            count: 1,
            data: vec![1],
        },
        dedup: ("s".into(), 1),
    };
    let actions = actor.handle(ActorEvent::Commands(vec![ephemeral(), ephemeral()]), 3);
    let relayed: Vec<_> = actions
        .iter()
        .filter(|a| matches!(a, ActorAction::Send { peer, message: Message::Ephemeral { .. }, .. } if peer == "dev-2/phone"))
        .collect();
    assert_eq!(relayed.len(), 1, "{actions:?}");
    assert!(
        !actions.iter().any(
            |a| matches!(a, ActorAction::Send { peer, message: Message::Ephemeral { .. }, .. } if peer == "dev-1/phone")
        ),
        "not back to its sender"
    );
}

/// A device's access in the hub tests: reads one document.
#[derive(Debug)]
struct Device(&'static str);

impl Access for Device {
    type Rule = ();
    fn can_read(&self, document: &DocumentId) -> bool {
        *document == doc_id()
    }
    fn write_rule(&self, _: &DocumentId) -> Option<()> {
        Some(())
    }
    fn who(&self) -> String {
        format!("device {}", self.0)
    }
    fn device(&self) -> Option<&str> {
        Some(self.0)
    }
}

fn join(peer: &str) -> Vec<u8> {
    wire::encode(&Message::Join {
        sender_id: peer.into(),
        peer_metadata: Some(PeerMetadata { storage_id: Some("store".into()), is_ephemeral: false }),
        supported_protocol_versions: Some(vec!["1".into()]),
    })
}

#[test]
fn the_newest_connection_of_a_peer_wins_within_its_device() {
    let mut hub = Hub::new(identity(), HubLimits::default());
    let (first, _) = hub.open(Device("dev-1"), 0);
    let (other_device, _) = hub.open(Device("dev-2"), 0);
    let (second, _) = hub.open(Device("dev-1"), 0);
    hub.handle(HubEvent::Frame { conn: first, bytes: join("phone") }, 1);
    let actions = hub.handle(HubEvent::Frame { conn: other_device, bytes: join("phone") }, 2);
    assert!(!actions.iter().any(|a| matches!(a, HubAction::Close { .. })), "another device's peer id is its own");
    let actions = hub.handle(HubEvent::Frame { conn: second, bytes: join("phone") }, 3);
    assert!(actions.iter().any(|a| matches!(a, HubAction::Close { conn, .. } if *conn == first)), "{actions:?}");
    assert_eq!(hub.peer_of(second).map(|p| p.peer_id.as_str()), Some("dev-1/phone"));
    assert_eq!(hub.peer_of(second).and_then(|p| p.storage_id.as_deref()), Some("dev-1/store"));
}

#[test]
fn a_document_the_connection_may_not_read_is_answered_unavailable_and_audited() {
    let mut hub = Hub::new(identity(), HubLimits::default());
    let (conn, _) = hub.open(Device("dev-1"), 0);
    hub.handle(HubEvent::Frame { conn, bytes: join("phone") }, 1);
    let secret = DocumentId::from_bytes([1; 16]);
    let sync = |document: DocumentId| {
        wire::encode(&Message::Sync(DocMessage {
            sender_id: "phone".into(),
            target_id: "district".into(),
            document_id: document.to_string(),
            data: first_message(),
        }))
    };
    let actions = hub.handle(HubEvent::Frame { conn, bytes: sync(secret) }, 2);
    assert!(actions.iter().any(|a| matches!(a, HubAction::Audit { action: "document.denied", .. })));
    assert!(actions.iter().any(|a| matches!(a, HubAction::Send { message: Message::DocUnavailable { .. }, .. })));
    assert!(!actions.iter().any(|a| matches!(a, HubAction::ToDocument { .. })));
    let actions = hub.handle(HubEvent::Frame { conn, bytes: sync(doc_id()) }, 3);
    assert!(matches!(&actions[..], [HubAction::ToDocument { command: Command::Sync { .. }, .. }]), "{actions:?}");
    let actions = hub.handle(HubEvent::Closed { conn }, 4);
    assert!(matches!(&actions[..], [HubAction::ToDocument { command: Command::PeerGone { .. }, .. }]), "{actions:?}");
}

#[test]
fn a_device_holds_a_bounded_number_of_connections() {
    let mut hub = Hub::new(identity(), HubLimits { connections_per_device: 2, ..HubLimits::default() });
    let (a, _) = hub.open(Device("dev-1"), 0);
    hub.open(Device("dev-1"), 0);
    let (_, actions) = hub.open(Device("dev-1"), 0);
    assert!(matches!(&actions[..], [HubAction::Note(_), HubAction::Close { .. }]), "{actions:?}");
    hub.handle(HubEvent::Closed { conn: a }, 1);
    let (_, actions) = hub.open(Device("dev-1"), 0);
    assert!(actions.is_empty(), "a closed connection gives its place back");
}

#[test]
fn a_revoked_device_hears_why_before_its_connections_close() {
    let mut hub = Hub::new(identity(), HubLimits::default());
    let (a, _) = hub.open(Device("dev-1"), 0);
    let (b, _) = hub.open(Device("dev-2"), 0);
    hub.handle(HubEvent::Frame { conn: a, bytes: join("phone") }, 1);
    hub.handle(HubEvent::Frame { conn: b, bytes: join("phone") }, 1);
    let actions = hub.handle(HubEvent::Revoked { device: "dev-1".into() }, 2);
    assert!(
        matches!(&actions[..], [HubAction::Close { conn, error: Some(Message::Error { .. }), reason }] if *conn == a && reason == "device revoked"),
        "{actions:?}"
    );
}

#[test]
fn the_executor_closes_a_connection_once_and_nothing_more_is_read_from_it() {
    let mut hub = Hub::new(identity(), HubLimits::default());
    let (conn, _) = hub.open(Device("dev-1"), 0);
    hub.handle(HubEvent::Frame { conn, bytes: join("phone") }, 1);
    let reason = "the server is busy with this document; reconnect and retry".to_owned();
    let actions = hub.handle(HubEvent::Close { conn, reason: reason.clone() }, 2);
    assert!(
        matches!(&actions[..], [HubAction::Close { conn: c, error: Some(Message::Error { message, .. }), reason: r }]
            if *c == conn && *r == reason && *message == reason),
        "{actions:?}"
    );
    assert!(hub.handle(HubEvent::Close { conn, reason: "again".into() }, 3).is_empty(), "closed once");
    let sync = wire::encode(&Message::Sync(DocMessage {
        sender_id: "phone".into(),
        target_id: "district".into(),
        document_id: doc_id().to_string(),
        data: first_message(),
    }));
    assert!(hub.handle(HubEvent::Frame { conn, bytes: sync }, 4).is_empty(), "a closing connection is not read");
    assert!(hub.handle(HubEvent::Close { conn: 99, reason: "unknown".into() }, 5).is_empty());
}

#[test]
fn a_staff_write_is_answered_once_stored_and_a_refused_one_at_once() {
    let (mut actor, _) = actor();
    let write = Command::Write {
        write: Box::new(|doc: &mut Automerge| {
            doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "title", "Đợt 1").map(|_| ()))
                .map(|_| ())
                .map_err(|f| f.error.to_string())
        }),
        ticket: 7,
    };
    let refused = Command::Write { write: Box::new(|_: &mut Automerge| Err("the form is frozen".into())), ticket: 8 };
    let actions = actor.handle(ActorEvent::Commands(vec![write, refused]), 1);
    assert!(
        matches!(&actions[0], ActorAction::WriteDone { ticket: 8, result: Err(WriteError::Refused(r)) } if r == "the form is frozen"),
        "{actions:?}"
    );
    let Some(ActorAction::Commit { request, .. }) = actions.last() else { panic!("{actions:?}") };
    assert!(!actions.iter().any(|a| matches!(a, ActorAction::WriteDone { ticket: 7, .. })), "not before the commit");
    let actions =
        actor.handle(ActorEvent::Committed { request: *request, result: Ok(vec![Written::Chunk { id: 1 }]) }, 2);
    let heads = actor.doc().get_heads();
    let done =
        actions.iter().position(|a| matches!(a, ActorAction::WriteDone { ticket: 7, result: Ok(h) } if *h == heads));
    let pushed = actions.iter().position(|a| matches!(a, ActorAction::Send { message: Message::Sync(_), .. }));
    assert!(done.is_some() && done < pushed, "answered, then sent to the document's peers: {actions:?}");
}
