//! The sync endpoint against real clients over real sockets, on SQLite and (when
//! `HAMLET_TEST_DATABASE_URL` is set) PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod support;

use std::time::Duration;

use client::{Client, Running, config, start};
use hamlet_server::store::Store;
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{Automerge, AutomergeError, ROOT, ReadDoc};
use hamlet_sync_core::wire::Message;

fn doc_with(entries: usize) -> Automerge {
    let mut doc = Automerge::new();
    for i in 0..entries {
        doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, format!("key-{i}"), i as i64))
            .map_err(|f| f.error)
            .unwrap();
    }
    doc
}

fn id(n: u8) -> DocumentId {
    DocumentId::from_bytes([n; 16])
}

async fn each_database<F, Fut>(extra: &[&str], test: F)
where
    F: Fn(Running, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in support::databases().await {
        let server = start(config(db.url(), extra)).await;
        test(server, db.url().to_owned()).await;
    }
}

async fn stored_documents(url: &str) -> usize {
    let store = Store::open(url).await.unwrap();
    let n = store.documents().await.unwrap().len();
    store.close().await;
    n
}

#[tokio::test]
async fn handshake_names_the_server_and_its_storage() {
    each_database(&[], |server, _| async move {
        let client = Client::join(&server.url(), "phone-1", Some("phone-store")).await;
        assert!(client.server_id.starts_with("hamlet-server-"));
        assert!(client.server_storage_id.is_some(), "the server announces its storage id");
        assert_eq!(server.http_get("/healthz").await.0, 200);
        assert_eq!(server.http_get("/readyz").await, (200, "ready\n".into()));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_for_a_missing_document_is_answered_unavailable() {
    each_database(&[], |server, _| async move {
        let mut client = Client::join(&server.url(), "phone-1", None).await;
        let mut doc = Automerge::new();
        let err = client.sync_with(id(1), &mut doc, &mut sync::State::new(), true).await.expect_err("unavailable");
        assert!(err.starts_with("DocUnavailable"), "{err}");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_new_document_is_stored_and_served_to_a_fresh_client_after_restart() {
    each_database(&[], |server, url| async move {
        let mut writer = Client::join(&server.url(), "phone-1", None).await;
        let mut doc = doc_with(50);
        writer.sync(id(2), &mut doc, &mut sync::State::new()).await;
        // More changes to the existing document.
        doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "later", "yes")).map_err(|f| f.error).unwrap();
        writer.sync(id(2), &mut doc, &mut sync::State::new()).await;
        server.stop().await;

        let server = start(config(&url, &[])).await;
        let mut reader = Client::join(&server.url(), "phone-2", None).await;
        let mut copy = Automerge::new();
        reader.sync_with(id(2), &mut copy, &mut sync::State::new(), true).await.expect("fetched");
        assert_eq!(copy.get_heads(), doc.get_heads());
        assert_eq!(copy.get(ROOT, "later").unwrap().map(|(v, _)| v.to_string()), Some("\"yes\"".into()));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_with_storage_resumes_from_its_saved_sync_state() {
    each_database(&[], |server, _| async move {
        let mut doc = doc_with(2000);
        let mut state = sync::State::new();
        let mut phone = Client::join(&server.url(), "phone-1", Some("phone-store")).await;
        let first = phone.sync(id(3), &mut doc, &mut state).await;
        drop(phone);
        // Both sides keep the part of the state meant to outlive a connection.
        let mut state = sync::State::decode(&state.encode()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "one-more", 1)).map_err(|f| f.error).unwrap();
        let mut phone = Client::join(&server.url(), "phone-1-again", Some("phone-store")).await;
        let change = doc.get_last_local_change().unwrap().raw_bytes().len();
        let (mut sent, mut received) = (0, 0);
        loop {
            if let Some(message) = doc.generate_sync_message(&mut state) {
                let bytes = message.encode();
                sent += bytes.len();
                phone.send(&Message::Sync(phone.doc_message(id(3), bytes))).await;
            }
            if client::acknowledged(&doc, &state) {
                break;
            }
            match phone.recv().await {
                Some(Message::Sync(m)) => {
                    received += m.data.len();
                    doc.receive_sync_message(&mut state, sync::Message::decode(&m.data).unwrap()).unwrap();
                }
                other => panic!("expected sync, got {other:?}"),
            }
        }
        assert!(sent < change + 1024, "the phone sent {sent} bytes for a {change}-byte change");
        let whole = doc.save().len();
        assert!(whole > 2 * (change + 1024), "the check above means something: the document is {whole} bytes");
        assert!(received < 1024, "the server sent {received} bytes (it received {first} at first)");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_and_the_server_keeps_serving() {
    each_database(&["--max-message-bytes", "4096"], |server, url| async move {
        let url_ws = server.url();

        // Malformed CBOR: an error, then the connection closes.
        let mut c = Client::join(&url_ws, "p-cbor", None).await;
        c.send_raw(vec![0xff, 0x00, 0x13]).await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("malformed CBOR")));
        assert!(c.closed().await);

        // An unknown message type.
        let mut c = Client::join(&url_ws, "p-type", None).await;
        let mut bytes = Vec::new();
        ciborium::into_writer(
            &ciborium::Value::Map(vec![
                (ciborium::Value::Text("type".into()), ciborium::Value::Text("gossip".into())),
                (ciborium::Value::Text("senderId".into()), ciborium::Value::Text("p-type".into())),
            ]),
            &mut bytes,
        )
        .unwrap();
        c.send_raw(bytes).await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("gossip")));
        assert!(c.closed().await);

        // A protocol version we do not speak.
        let mut c = Client::connect(&url_ws, "p-version").await;
        c.send(&Message::Join { sender_id: "p-version".into(), peer_metadata: None, supported_protocol_versions: Some(vec!["2".into()]) })
            .await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("unsupported protocol version")));
        assert!(c.closed().await);

        // A message before join, and text frames.
        let mut c = Client::connect(&url_ws, "p-early").await;
        c.send(&Message::Leave { sender_id: "p-early".into() }).await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("before join")));
        let mut c = Client::join(&url_ws, "p-text", None).await;
        c.send_text("{\"type\":\"join\"}").await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("binary")));

        // A sender that is not the connection's peer.
        let mut c = Client::join(&url_ws, "p-honest", None).await;
        let mut m = c.doc_message(id(9), doc_with(1).generate_sync_message(&mut sync::State::new()).unwrap().encode());
        m.sender_id = "someone-else".into();
        c.send(&Message::Sync(m)).await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("someone-else")));
        assert!(c.closed().await);

        // Invalid Automerge data: an error; nothing stored; the connection stays usable.
        let mut c = Client::join(&url_ws, "p-garbage", None).await;
        let m = c.doc_message(id(10), b"\x42not a sync message".to_vec());
        c.send(&Message::Sync(m)).await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("invalid sync message")));
        let mut good = doc_with(3);
        c.sync(id(11), &mut good, &mut sync::State::new()).await;

        // A message over the size limit.
        let mut c = Client::join(&url_ws, "p-big", None).await;
        let m = c.doc_message(id(12), vec![0; 5000]);
        c.send(&Message::Sync(m)).await;
        assert!(matches!(c.recv().await, Some(Message::Error { message, .. }) if message.contains("exceeds the limit")));
        assert!(c.closed().await);

        // After all that, the server serves a well-behaved client, and stored only its document.
        let mut c = Client::join(&url_ws, "p-good", None).await;
        let mut doc = doc_with(5);
        c.sync(id(13), &mut doc, &mut sync::State::new()).await;
        let (_, metrics) = server.http_get("/metrics").await;
        assert!(metrics.contains("hamlet_errors_total{kind=\"message_too_large\"} 1"), "{metrics}");
        assert!(metrics.contains("hamlet_errors_total{kind=\"invalid_sync\"} 1"), "{metrics}");
        server.stop().await;
        assert_eq!(stored_documents(&url).await, 2, "only the two good documents are stored");
    })
    .await;
}

#[tokio::test]
async fn a_document_over_the_size_limit_is_not_stored() {
    each_database(&["--max-document-bytes", "2000"], |server, url| async move {
        let mut c = Client::join(&server.url(), "phone", None).await;
        let mut big = Automerge::new();
        big.transact::<_, _, AutomergeError>(|tx| {
            for i in 0..400 {
                tx.put(ROOT, format!("k{i}"), format!("value number {i} with some padding"))?;
            }
            Ok(())
        })
        .map_err(|f| f.error)
        .unwrap();
        let err = c.sync_with(id(20), &mut big, &mut sync::State::new(), false).await.expect_err("refused");
        assert!(err.contains("size limit"), "{err}");
        // A small document still syncs.
        let mut small = doc_with(2);
        let mut other = Client::join(&server.url(), "phone-2", None).await;
        other.sync(id(21), &mut small, &mut sync::State::new()).await;
        server.stop().await;
        assert_eq!(stored_documents(&url).await, 1);
    })
    .await;
}

#[tokio::test]
async fn changes_reach_the_other_peers_of_the_document_only() {
    each_database(&[], |server, _| async move {
        let mut a = Client::join(&server.url(), "a", None).await;
        let mut b = Client::join(&server.url(), "b", None).await;
        let mut bystander = Client::join(&server.url(), "c", None).await;
        let mut doc_a = doc_with(2);
        a.sync(id(30), &mut doc_a, &mut sync::State::new()).await;
        let mut doc_b = Automerge::new();
        let mut state_b = sync::State::new();
        b.sync_with(id(30), &mut doc_b, &mut state_b, true).await.expect("b fetches");
        // A writes again; B hears of it without asking.
        doc_a.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "news", 1)).map_err(|f| f.error).unwrap();
        a.sync(id(30), &mut doc_a, &mut sync::State::new()).await;
        loop {
            match b.recv().await {
                Some(Message::Sync(m)) => {
                    doc_b.receive_sync_message(&mut state_b, sync::Message::decode(&m.data).unwrap()).unwrap();
                    if doc_b.get_heads() == doc_a.get_heads() {
                        break;
                    }
                }
                other => panic!("b expected the news, got {other:?}"),
            }
        }
        // Ephemeral messages go to the document's other peers, once.
        let server_id = a.server_id.clone();
        let eph = |count| Message::Ephemeral {
            sender_id: "a".into(),
            target_id: server_id.clone(),
            document_id: id(30).to_string(),
            session_id: "session-a".into(),
            count,
            data: vec![7],
        };
        a.send(&eph(1)).await;
        a.send(&eph(1)).await;
        a.send(&eph(2)).await;
        for expected in [1, 2] {
            match b.recv().await {
                Some(Message::Ephemeral { count, target_id, .. }) => {
                    assert_eq!((count, target_id.as_str()), (expected, "b"));
                }
                Some(Message::Sync(_)) => continue,
                other => panic!("expected ephemeral, got {other:?}"),
            }
        }
        // Nothing was pushed to the bystander, who is no peer of the document: the first thing it
        // hears is the answer to its own request, which the server sends after anything queued
        // for it before (one connection's messages keep their order).
        let mut state = sync::State::new();
        let ask = Automerge::new().generate_sync_message(&mut state).expect("a first message").encode();
        bystander.send(&Message::Request(bystander.doc_message(id(31), ask))).await;
        match bystander.recv().await {
            Some(Message::DocUnavailable { document_id, .. }) => assert_eq!(document_id, id(31).to_string()),
            Some(Message::Sync(m)) => assert_eq!(m.document_id, id(31).to_string(), "nothing is pushed unasked"),
            other => panic!("nothing is pushed unasked, and the bystander's request is answered: {other:?}"),
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_second_join_with_the_same_peer_id_replaces_the_first_socket() {
    each_database(&[], |server, _| async move {
        let mut first = Client::join(&server.url(), "phone", None).await;
        let mut second = Client::join(&server.url(), "phone", None).await;
        assert!(first.closed().await, "the older socket is closed");
        let mut doc = doc_with(1);
        second.sync(id(40), &mut doc, &mut sync::State::new()).await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_peer_is_dropped() {
    each_database(&["--ping-seconds", "1"], |server, _| async move {
        let _silent = Client::join(&server.url(), "phone", None).await;
        // The client never reads, so it never answers the pings.
        let mut open = String::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (_, metrics) = server.http_get("/metrics").await;
            open = metrics.lines().find(|l| l.starts_with("hamlet_connections_open ")).unwrap_or_default().to_owned();
            if open == "hamlet_connections_open 0" {
                break;
            }
        }
        assert_eq!(open, "hamlet_connections_open 0");
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_a_close_frame() {
    each_database(&[], |server, _| async move {
        let mut c = Client::join(&server.url(), "phone", None).await;
        let stopping = tokio::spawn(server.stop());
        // A close frame with "going away", not a dropped TCP connection.
        assert_eq!(c.close_frame().await, Some(1001));
        stopping.await.unwrap();
    })
    .await;
}

/// Two server processes share one database (PostgreSQL in production; the SQLite file works
/// the same way on one machine): clients writing the same document through each lose nothing.
#[tokio::test]
async fn two_servers_sharing_a_database_lose_nothing() {
    for db in support::databases().await {
        let first = start(config(db.url(), &[])).await;
        let second = start(config(db.url(), &[])).await;
        let mut base = doc_with(3);
        let mut setup = Client::join(&first.url(), "setup", None).await;
        setup.sync(id(50), &mut base, &mut sync::State::new()).await;

        // Each server holds the document in memory; each receives different changes.
        let (mut doc_a, mut doc_b) = (base.fork(), base.fork());
        let mut a = Client::join(&first.url(), "a", None).await;
        let mut b = Client::join(&second.url(), "b", None).await;
        for i in 0..20 {
            doc_a.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, format!("a{i}"), i)).map_err(|f| f.error).unwrap();
            doc_b.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, format!("b{i}"), i)).map_err(|f| f.error).unwrap();
            let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
            tokio::join!(a.sync(id(50), &mut doc_a, &mut sa), b.sync(id(50), &mut doc_b, &mut sb));
        }
        first.stop().await;
        second.stop().await;

        let third = start(config(db.url(), &["--compact-after", "2"])).await;
        let mut reader = Client::join(&third.url(), "reader", None).await;
        let mut merged = Automerge::new();
        reader.sync_with(id(50), &mut merged, &mut sync::State::new(), true).await.expect("fetched");
        for (doc, name) in [(&doc_a, "a"), (&doc_b, "b")] {
            for h in doc.get_heads() {
                assert!(merged.get_change_by_hash(&h).is_some(), "{}: changes through server {name} lost", db.name);
            }
        }
        assert_eq!(merged.keys(ROOT).count(), 3 + 40, "{}", db.name);
        third.stop().await;
    }
}

/// A client that subscribes to the server's storage hears, once its changes are stored, the
/// heads the server now holds: how an automerge-repo app shows "saved on the server".
#[tokio::test]
async fn subscribers_hear_the_heads_the_server_stored() {
    each_database(&[], |server, _| async move {
        let mut c = Client::join(&server.url(), "phone", Some("phone-store")).await;
        let storage = c.server_storage_id.clone().expect("the server has a storage id");
        c.send(&Message::RemoteSubscriptionChange {
            sender_id: "phone".into(),
            target_id: c.server_id.clone(),
            add: vec![storage.clone()],
            remove: vec![],
        })
        .await;
        let mut doc = doc_with(3);
        let mut state = sync::State::new();
        let mut announced = None;
        for _ in 0..20 {
            if let Some(m) = doc.generate_sync_message(&mut state) {
                c.send(&Message::Sync(c.doc_message(id(60), m.encode()))).await;
            }
            match c.recv().await {
                Some(Message::Sync(m)) => {
                    doc.receive_sync_message(&mut state, sync::Message::decode(&m.data).unwrap()).unwrap()
                }
                Some(Message::RemoteHeadsChanged { document_id, new_heads, .. }) => {
                    assert_eq!(document_id, id(60).to_string());
                    announced = Some(new_heads);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let announced = announced.expect("the server announced its heads");
        assert_eq!(announced.len(), 1);
        assert_eq!(announced[0].storage_id, storage);
        let expected: Vec<String> = doc.get_heads().iter().map(|h| h.to_string()).collect();
        assert_eq!(announced[0].heads, expected);
        assert!(announced[0].timestamp > 0);
        server.stop().await;
    })
    .await;
}

/// Stopping waits for what is in flight, not for the deadline: after a sync, a server given ten
/// minutes to shut down stops as soon as its last commit is done (`Running::stop` allows 15 s).
#[tokio::test]
async fn a_server_with_nothing_in_flight_stops_without_waiting_for_its_deadline() {
    for db in support::databases().await {
        let server = start(config(db.url(), &["--shutdown-seconds", "600"])).await;
        let mut c = Client::join(&server.url(), "phone", None).await;
        let mut doc = doc_with(3);
        c.sync(id(60), &mut doc, &mut sync::State::new()).await;
        drop(c);
        server.stop().await;
    }
}
