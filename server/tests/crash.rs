//! Crash safety, on SQLite and PostgreSQL: several clients stream changes into their own
//! documents at once (so the group committer batches them together), one of them a hamlet's
//! ledger that the projector counts as it arrives, while the server is killed with SIGKILL at
//! random moments and restarted. Every change the clients saw acknowledged is there afterwards;
//! the kills fell with changes in flight (counted); the ledger's responses are all counted, and
//! the district tables equal a rebuild from the documents.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod district;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use client::{Client, Process};
use hamlet_server::district::results::{self, Depth};
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ChangeHash, ROOT, ReadDoc};
use hamlet_sync_core::wire::Message;
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, Day, DocumentId, Ledger, Level, NewResponse, Status, fixtures,
};

const KILLS: usize = 8;
/// Clients writing plain documents, besides the one writing the ledger.
const MAP_WRITERS: usize = 2;

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

fn day() -> Day {
    "2025-06-04".parse().unwrap()
}

/// One client's document, carried from one server life to the next.
enum Work {
    Map { doc: Automerge, written: u64 },
    Ledger { ledger: Ledger, campaign: Box<Campaign>, recorded: u64 },
}

struct Writer {
    document: DocumentId,
    work: Work,
    /// Every head the server announced: each is a change it had stored.
    acknowledged: BTreeSet<ChangeHash>,
    /// The server's latest heads for the document.
    stored_heads: Vec<ChangeHash>,
}

impl Writer {
    fn doc(&mut self) -> &mut Automerge {
        match &mut self.work {
            Work::Map { doc, .. } => doc,
            Work::Ledger { ledger, .. } => ledger.doc_mut(),
        }
    }

    /// One more change: a key of the map, or a response recorded and submitted.
    fn change(&mut self) {
        match &mut self.work {
            Work::Map { doc, written } => {
                *written += 1;
                let n = *written;
                doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, format!("k{}", n % 50), n as i64))
                    .map_err(|f| f.error)
                    .unwrap();
            }
            Work::Ledger { ledger, campaign, recorded } => {
                *recorded += 1;
                let id: hamlet_sync_core::ResponseId = format!("r-{recorded}").parse().unwrap();
                let levels = [Level::TinNhiemCao, Level::TinNhiem, Level::TinNhiemThap];
                let answers = campaign
                    .subjects
                    .iter()
                    .map(|s| {
                        let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone());
                        (key, AnswerValue::Level(levels[(*recorded % 3) as usize]))
                    })
                    .collect();
                let new = NewResponse { id: id.clone(), collector: "thu-ky".parse().unwrap(), answers };
                ledger.record(campaign, &new, day()).unwrap();
                ledger.submit(campaign, &id, &"thu-ky".parse().unwrap(), day()).unwrap();
            }
        }
    }
}

/// Writes until `until`, taking whatever the server says; returns the changes written but not
/// acknowledged when it stopped (in flight at the kill that follows).
async fn write(url: String, peer: String, writer: &mut Writer, until: Instant) -> usize {
    let mut client = Client::join(&url, &peer, None).await;
    let mut state = sync::State::new();
    while Instant::now() < until {
        writer.change();
        let document = writer.document;
        if let Some(m) = writer.doc().generate_sync_message(&mut state) {
            client.send(&Message::Sync(client.doc_message(document, m.encode()))).await;
        }
        // The server's heads are what it has stored.
        while let Some(Message::Sync(m)) = client.recv_within(Duration::from_millis(5)).await {
            writer.doc().receive_sync_message(&mut state, sync::Message::decode(&m.data).unwrap()).unwrap();
            if let Some(heads) = &state.their_heads {
                writer.acknowledged.extend(heads.iter().copied());
                writer.stored_heads = heads.clone();
            }
            if let Some(m) = writer.doc().generate_sync_message(&mut state) {
                client.send(&Message::Sync(client.doc_message(document, m.encode()))).await;
            }
        }
    }
    // Changes the server's latest heads do not reach (one writer a document: it knows them all).
    let stored = writer.stored_heads.clone();
    writer.doc().get_changes(&stored).len()
}

/// The district's total for `ong-an` in `thon-dong`, closed (every counted answer shows).
async fn counted(url: &str, campaign: &Campaign) -> u64 {
    let h = district::harness(url).await;
    h.district.projector.catch_up(None).await.unwrap();
    let results = results::load(&h.district, campaign, Depth::Hamlet, None).await.unwrap();
    let at = results.units.iter().position(|u| u.id == "thon-dong").unwrap();
    let subject = results.subjects.iter().find(|s| s.subject == "ong-an").unwrap();
    let total = subject.rows[at].total;
    h.store.close().await;
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_sigkill() {
    let seed = std::env::var("HAMLET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("crash test seed {seed} (set HAMLET_CRASH_SEED to replay)");
    for db in support::databases().await {
        let mut rng = Rng(seed);
        // The district's campaign, so that the ledger is projected as it arrives; then closed
        // (its figures are read live at the end).
        let h = district::harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        h.store.close().await;
        drop(h);
        let flags = ["--database-url", db.url(), "--compact-after", "8"];
        let mut writers: Vec<Writer> = (0..MAP_WRITERS)
            .map(|i| Writer {
                document: DocumentId::from_bytes([42 + i as u8; 16]),
                work: Work::Map { doc: Automerge::new(), written: 0 },
                acknowledged: BTreeSet::new(),
                stored_heads: Vec::new(),
            })
            .collect();
        let ledger = Ledger::create(&campaign.id, &fixtures::hamlet("thon-dong"), ActorId::from([7; 16]));
        writers.push(Writer {
            document: ledger.id(),
            work: Work::Ledger { ledger, campaign: Box::new(campaign.clone()), recorded: 0 },
            acknowledged: BTreeSet::new(),
            stored_heads: Vec::new(),
        });

        let (mut in_flight, mut kills_in_flight) = (0, 0);
        for _ in 0..KILLS {
            let server = Process::spawn(&flags);
            let until = Instant::now() + Duration::from_millis(50 + rng.below(400));
            let url = server.url();
            let lives =
                writers.iter_mut().enumerate().map(|(i, w)| write(url.clone(), format!("writer-{i}"), w, until));
            let unacknowledged: usize = futures_util::future::join_all(lives).await.into_iter().sum();
            server.kill();
            in_flight += unacknowledged;
            kills_in_flight += usize::from(unacknowledged > 0);
        }

        let server = Process::spawn(&flags);
        let mut reader = Client::join(&server.url(), "reader", None).await;
        let mut stored = BTreeMap::new();
        for w in &writers {
            let mut copy = Automerge::new();
            reader
                .sync_with(w.document, &mut copy, &mut sync::State::new(), true)
                .await
                .expect("the document loads after the crashes");
            assert!(w.acknowledged.len() > 1, "{}: the test acknowledged too little to mean anything", db.name);
            let missing = w.acknowledged.iter().filter(|h| copy.get_change_by_hash(h).is_none()).count();
            assert_eq!(missing, 0, "{}: acknowledged changes of {} lost; seed {seed}", db.name, w.document);
            stored.insert(w.document, copy);
        }
        assert!(server.terminate().success());
        eprintln!(
            "{}: {KILLS} kills, {kills_in_flight} with changes in flight ({in_flight} changes in all), every acknowledged change present",
            db.name
        );
        assert!(kills_in_flight > 0, "{}: no kill fell while changes were in flight", db.name);

        // The ledger as stored: every submitted response in it is counted, before and after a
        // rebuild of the district tables from the documents.
        let ledger_id = writers.last().unwrap().document;
        let stored_ledger = Ledger::from_doc(stored.remove(&ledger_id).unwrap()).unwrap();
        let submitted =
            stored_ledger.responses().unwrap().iter().filter(|r| r.status() == Status::Submitted).count() as u64;
        let h = district::harness(db.url()).await;
        h.close(&campaign).await;
        h.store.close().await;
        drop(h);
        let live = counted(db.url(), &campaign).await;
        assert_eq!(live, submitted, "{}: every stored response is counted; seed {seed}", db.name);
        hamlet_server::district::reproject_all(db.url()).await.unwrap();
        assert_eq!(counted(db.url(), &campaign).await, live, "{}: the tables equal a rebuild; seed {seed}", db.name);
    }
}
