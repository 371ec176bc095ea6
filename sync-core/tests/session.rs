//! The document session as the server drives it: replies wait for storage, missing documents
//! are reported once, and changes from one peer reach the others.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{Automerge, AutomergeError, ROOT};
use hamlet_sync_core::session::{DocumentSync, Outgoing};

struct Client {
    doc: Automerge,
    state: sync::State,
}

impl Client {
    fn new() -> Self {
        Client { doc: Automerge::new(), state: sync::State::new() }
    }

    fn write(&mut self, key: &str, value: i64) {
        self.doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, key, value)).map_err(|f| f.error).unwrap();
    }

    fn message(&mut self) -> Option<Vec<u8>> {
        self.doc.generate_sync_message(&mut self.state).map(|m| m.encode())
    }

    fn take(&mut self, data: &[u8]) {
        self.doc.receive_sync_message(&mut self.state, sync::Message::decode(data).unwrap()).unwrap();
    }
}

fn id() -> DocumentId {
    DocumentId::from_bytes([5; 16])
}

/// Runs the server and the clients until nobody has anything to say, storing before replying.
fn settle(server: &mut DocumentSync, clients: &mut [(&str, &mut Client)]) -> usize {
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 50, "no quiescence");
        let mut said = false;
        for (name, client) in clients.iter_mut() {
            if server.has_peer(name)
                && let Some(m) = client.message()
            {
                server.receive(name, &m, false).unwrap();
                said = true;
            }
        }
        if let Some(unsaved) = server.unsaved() {
            server.saved(unsaved.heads);
        }
        for (peer, out) in server.outgoing() {
            said = true;
            let client = clients.iter_mut().find(|(n, _)| *n == peer).unwrap();
            if let Outgoing::Sync(data) = out {
                client.1.take(&data);
            }
        }
        if !said {
            return rounds;
        }
    }
}

#[test]
fn no_reply_before_the_changes_are_stored() {
    let mut phone = Client::new();
    phone.write("a", 1);
    let mut server = DocumentSync::new(id(), Automerge::new());
    let first = phone.message().unwrap();
    server.receive("phone", &first, true).unwrap();
    let mut server_doc_changed = false;
    for _ in 0..5 {
        let replies = server.outgoing();
        for (_, out) in replies {
            if let Outgoing::Sync(d) = out {
                phone.take(&d)
            }
        }
        if let Some(m) = phone.message() {
            server_doc_changed |= server.receive("phone", &m, false).unwrap();
        }
        if server_doc_changed {
            break;
        }
    }
    assert!(server_doc_changed, "the phone's change arrived");
    assert!(server.unsaved().is_some());
    assert!(server.outgoing().is_empty(), "nothing is said while the change is unsaved");
    let unsaved = server.unsaved().unwrap();
    let mut stored = Automerge::new();
    stored.load_incremental(&unsaved.chunk).unwrap();
    assert_eq!(stored.get_heads(), unsaved.heads, "the chunk holds the change");
    server.saved(unsaved.heads);
    assert!(!server.outgoing().is_empty(), "now the phone hears back");
}

#[test]
fn a_request_for_a_missing_document_is_answered_unavailable_once() {
    let mut phone = Client::new();
    let mut server = DocumentSync::new(id(), Automerge::new());
    server.receive("phone", &phone.message().unwrap(), true).unwrap();
    assert_eq!(server.outgoing(), vec![("phone".to_owned(), Outgoing::Unavailable)]);
    assert!(server.outgoing().is_empty());
    // Another peer brings the document: the first one hears of it after all.
    let mut other = Client::new();
    other.write("b", 2);
    server.add_peer("other", None);
    settle(&mut server, &mut [("other", &mut other), ("phone", &mut phone)]);
    assert_eq!(phone.doc.get_heads(), other.doc.get_heads());
}

#[test]
fn changes_from_one_peer_reach_every_peer_of_the_document() {
    let mut a = Client::new();
    let mut b = Client::new();
    a.write("from-a", 1);
    b.write("from-b", 2);
    let mut server = DocumentSync::new(id(), Automerge::new());
    server.add_peer("a", None);
    server.add_peer("b", None);
    settle(&mut server, &mut [("a", &mut a), ("b", &mut b)]);
    assert_eq!(a.doc.get_heads(), server.doc().get_heads());
    assert_eq!(b.doc.get_heads(), server.doc().get_heads());
    assert_eq!(server.doc().get_heads().len(), 2);
}

#[test]
fn a_saved_sync_state_avoids_resending_on_reconnect() {
    let mut phone = Client::new();
    for i in 0..20 {
        phone.write(&format!("k{i}"), i);
    }
    let mut server = DocumentSync::new(id(), Automerge::new());
    server.add_peer("phone", None);
    settle(&mut server, &mut [("phone", &mut phone)]);
    let saved = server.encoded_state("phone").unwrap();
    let phone_state = phone.state.encode();

    // Both reconnect: the server from storage, the phone with its own saved state.
    let stored = server.doc().save();
    let mut server = DocumentSync::new(id(), Automerge::load(&stored).unwrap());
    server.add_peer("phone", Some(&saved));
    phone.state = sync::State::decode(&phone_state).unwrap();
    phone.write("new", 1);
    let first = phone.message().unwrap();
    let change_bytes = phone.doc.get_last_local_change().unwrap().raw_bytes().len();
    assert!(first.len() < change_bytes + 400, "only the new change travels: {} bytes", first.len());
    server.receive("phone", &first, false).unwrap();
    settle(&mut server, &mut [("phone", &mut phone)]);
    assert_eq!(server.doc().get_heads(), phone.doc.get_heads());
}

#[test]
fn garbage_is_refused() {
    let mut server = DocumentSync::new(id(), Automerge::new());
    assert!(server.receive("phone", b"\x42garbage", false).is_err());
    assert!(server.unsaved().is_none(), "nothing to store");
}
