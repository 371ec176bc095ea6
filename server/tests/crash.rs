//! Crash safety: a client streams changes while the server is killed with SIGKILL at random
//! moments and restarted. Every change the client saw acknowledged is there afterwards, and the
//! document loads.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use client::{Client, Process};
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{Automerge, AutomergeError, ChangeHash, ROOT, ReadDoc};
use hamlet_sync_core::wire::Message;

const KILLS: usize = 8;

/// A tiny deterministic generator; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_sigkill() {
    let seed = std::env::var("HAMLET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("crash test seed {seed} (set HAMLET_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let data = tempfile::tempdir().unwrap();
    let flags = ["--data-dir", data.path().to_str().unwrap(), "--compact-after", "8"];
    let document = DocumentId::from_bytes([42; 16]);
    let mut doc = Automerge::new();
    let mut acknowledged: BTreeSet<ChangeHash> = BTreeSet::new();
    let mut written = 0u64;

    for _ in 0..KILLS {
        let server = Process::spawn(&flags);
        let mut client = Client::join(&server.url(), "streamer", None).await;
        let mut state = sync::State::new();
        let kill_at = Instant::now() + Duration::from_millis(50 + rng.below(400));
        while Instant::now() < kill_at {
            written += 1;
            doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, format!("k{}", written % 50), written as i64))
                .map_err(|f| f.error)
                .unwrap();
            if let Some(m) = doc.generate_sync_message(&mut state) {
                client.send(&Message::Sync(client.doc_message(document, m.encode()))).await;
            }
            // Take whatever the server has said; its heads are what it has stored.
            while let Some(Message::Sync(m)) = client.recv_within(Duration::from_millis(5)).await {
                doc.receive_sync_message(&mut state, sync::Message::decode(&m.data).unwrap()).unwrap();
                if let Some(heads) = &state.their_heads {
                    acknowledged.extend(heads.iter().copied());
                }
                if let Some(m) = doc.generate_sync_message(&mut state) {
                    client.send(&Message::Sync(client.doc_message(document, m.encode()))).await;
                }
            }
        }
        server.kill();
    }

    let server = Process::spawn(&flags);
    let mut reader = Client::join(&server.url(), "reader", None).await;
    let mut copy = Automerge::new();
    reader
        .sync_with(document, &mut copy, &mut sync::State::new(), true)
        .await
        .expect("the document loads after the crashes");
    assert!(acknowledged.len() > KILLS, "the test acknowledged too little to mean anything: {}", acknowledged.len());
    let missing: Vec<_> = acknowledged.iter().filter(|h| copy.get_change_by_hash(h).is_none()).collect();
    assert!(missing.is_empty(), "{} acknowledged changes lost (of {}); seed {seed}", missing.len(), acknowledged.len());
    eprintln!("{written} changes written, {} distinct acknowledged heads, all present", acknowledged.len());
    assert!(server.terminate().success());
}
