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
async fn a_silent_peer_is_dropped() {
    each_database(&["--ping-seconds", "1"], |server, _| async move {
        let silent = Client::join(&server.url(), "phone", None).await;
        // The client never answers the pings: the server drops it after two intervals. The
        // test waits for that event, the socket ending; the bound only fails a server that
        // never drops it.
        assert!(silent.dropped_unanswered(Duration::from_secs(20)).await, "the silent peer was not dropped");
        // The server counts the connection closed before it lets the socket go.
        let (_, metrics) = server.http_get("/metrics").await;
        assert!(metrics.lines().any(|l| l == "hamlet_connections_open 0"), "{metrics}");
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
