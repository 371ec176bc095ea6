//! The SIGKILL soak behind `hamlet-soak`: the real `hamlet-server` binary on a SQLite data
//! folder, writers syncing changes into it, and the server killed with SIGKILL at random moments
//! and started again on the same folder; after every restart, the documents are read back from
//! the server and every change it acknowledged before the kill must be there.
//!
//! The writers are the load generator's automerge-repo clients ([`crate::load`]), in the
//! server's open sync mode: each makes one small change at a time to a document of its own and
//! waits until the server's heads equal its own (Hamlet replies only after the commit holding the
//! change), then records those heads as *acknowledged*. Heads are enough: a document that holds a
//! change holds everything before it. A killed server leaves a writer with changes it sent but saw
//! no acknowledgement for; the writer sends them again after the restart, as a phone would. Each
//! writer moves on to a new document after `changes_per_doc` acknowledged changes, so documents
//! stay small and compactions (every `compact_after` chunks) happen throughout the run.
//!
//! A kill falls at a moment drawn uniformly from the writers' run (or, for a share of the kills,
//! from the server's start-up: migrations, the projector's catch-up). A reader then opens a
//! fresh WebSocket, requests each document into an empty Automerge document and checks that
//! every acknowledged head arrived. After each restart it reads every document written since the
//! last check plus a random sample of the older ones; every `full_every` kills, and at the end, it
//! reads them all. A document is *lost* when the server announces heads that do not include an
//! acknowledged one, answers `doc-unavailable`, or sends nothing for `round_timeout`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::{Automerge, ChangeHash, ReadDoc};
use hamlet_sync_core::sim::Rng;
use hamlet_sync_core::wire::{DocMessage, Message};
use serde::Serialize;

use crate::load::{self, ClientError, Conn};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The `hamlet-server` binary.
    pub server: PathBuf,
    /// The server's data folder (its SQLite file lives there); kept across restarts.
    pub data_dir: PathBuf,
    /// Kills in all.
    pub kills: usize,
    /// Concurrent writers, one WebSocket and one document at a time each.
    pub writers: usize,
    /// A kill during the writers' run falls uniformly within this long after they start.
    pub max_run: Duration,
    /// The share of kills (percent) aimed at the server's start-up instead, within
    /// `startup_window` of starting it.
    pub startup_kill_percent: u64,
    /// See `startup_kill_percent`.
    pub startup_window: Duration,
    /// Acknowledged changes after which a writer starts a new document.
    pub changes_per_doc: u64,
    /// Older documents read back after each restart, besides those written since the last check.
    pub sample: usize,
    /// Every this many kills, every document is read back.
    pub full_every: usize,
    /// The server's `--compact-after`.
    pub compact_after: usize,
    /// How long a writer or the reader waits for any one reply.
    pub round_timeout: Duration,
    /// Seeds the kill moments and the sample.
    pub seed: u64,
    /// A shell command run after each kill, before the restart, with `HAMLET_SOAK_DATA` set to
    /// the data folder: to show that the check catches a loss (delete a chunk, say).
    pub after_kill: Option<String>,
}

/// A document whose acknowledged changes the server no longer holds.
#[derive(Debug, Clone, Serialize)]
pub struct Loss {
    /// After which kill it was found.
    pub kill: usize,
    /// The document.
    pub document: String,
    /// Changes the server had acknowledged in it.
    pub acknowledged_changes: u64,
    /// Acknowledged heads that did not come back.
    pub missing_heads: Vec<String>,
    /// What the server did.
    pub why: String,
}

/// What a soak measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    /// The seed.
    pub seed: u64,
    /// SIGKILLs sent.
    pub kills: usize,
    /// Of those, during the server's start-up.
    pub startup_kills: usize,
    /// Changes the server acknowledged over the run (each counted once).
    pub acknowledged_changes: u64,
    /// Documents written.
    pub documents: usize,
    /// Documents read back and checked, counting each read.
    pub documents_checked: u64,
    /// Full checks of every document.
    pub full_checks: usize,
    /// Writers' failures other than the connection closing under them (a reply that did not
    /// come, an `error` from the server).
    pub writer_errors: u64,
    /// The first few of them, as text.
    pub writer_error_samples: Vec<String>,
    /// Acknowledged changes that did not come back.
    pub lost: Vec<Loss>,
    /// The whole run, seconds.
    pub wall_seconds: f64,
    /// Time spent waiting for the server to start, seconds.
    pub startup_seconds: f64,
    /// Time spent reading documents back, seconds.
    pub check_seconds: f64,
}

impl SoakReport {
    /// Whether nothing acknowledged was lost.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
    }

    /// The report on one line, for people.
    pub fn summary(&self) -> String {
        format!(
            "{} kills ({} during start-up), {} acknowledged changes in {} documents, lost {}; \
             {} document reads ({} full checks); {:.1} s (start-up {:.1} s, checks {:.1} s); \
             writer errors {}; seed {}",
            self.kills,
            self.startup_kills,
            self.acknowledged_changes,
            self.documents,
            self.lost.len(),
            self.documents_checked,
            self.full_checks,
            self.wall_seconds,
            self.startup_seconds,
            self.check_seconds,
            self.writer_errors,
            self.seed,
        )
    }
}

/// Why the soak could not go on (as opposed to a loss, which it reports).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The server binary would not start or did not listen.
    #[error("server: {0}")]
    Server(String),
    /// The `after_kill` command failed.
    #[error("after-kill command: {0}")]
    AfterKill(String),
}

/// What the server acknowledged in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Acknowledged {
    heads: Vec<ChangeHash>,
    changes: u64,
}

/// A document a writer is working on.
#[derive(Debug)]
struct WriterDoc {
    id: DocumentId,
    doc: Automerge,
    made: u64,
    acknowledged: Acknowledged,
}

/// One writer, carried from one server life to the next.
#[derive(Debug)]
struct Writer {
    index: usize,
    run: u64,
    started_docs: u64,
    current: WriterDoc,
}

impl Writer {
    fn new(index: usize, run: u64) -> Writer {
        let mut writer = Writer { index, run, started_docs: 0, current: WriterDoc::placeholder() };
        writer.next_document();
        writer
    }

    fn next_document(&mut self) {
        let id = load::document_id(self.run, ((self.index as u64) << 32) | self.started_docs);
        self.started_docs += 1;
        self.current = WriterDoc { id, doc: Automerge::new(), made: 0, acknowledged: Acknowledged::default() };
    }
}

impl WriterDoc {
    fn placeholder() -> WriterDoc {
        WriterDoc {
            id: DocumentId::from_bytes([0; 16]),
            doc: Automerge::new(),
            made: 0,
            acknowledged: Acknowledged::default(),
        }
    }
}

/// What a writer brings back from one server life.
#[derive(Debug)]
struct WriterLife {
    writer: Writer,
    /// Documents whose acknowledged changes grew, with what is acknowledged now.
    acknowledged: Vec<(DocumentId, Acknowledged)>,
    /// How the life ended, when not by the connection closing.
    error: Option<ClientError>,
}

/// Writes until the connection fails (the server is killed).
async fn write(url: String, mut writer: Writer, changes_per_doc: u64, timeout: Duration) -> WriterLife {
    let mut acknowledged: BTreeMap<DocumentId, Acknowledged> = BTreeMap::new();
    let peer_id = format!("soak-writer-{}", writer.index);
    let mut conn = match Conn::connect(&url, peer_id, timeout).await {
        Ok(conn) => conn,
        // Refused or reset: the server was killed as the writer connected.
        Err(e) => return WriterLife { writer, acknowledged: vec![], error: Some(e).filter(|e| !e.fatal()) },
    };
    let mut state = sync::State::new();
    let error = loop {
        if writer.current.acknowledged.changes >= changes_per_doc {
            writer.next_document();
            state = sync::State::new();
        }
        let current = &mut writer.current;
        // Changes sent before a kill and never acknowledged are sent again first.
        if current.made == current.acknowledged.changes {
            if let Err(e) = load::make_change(&mut current.doc, current.made as usize) {
                break Some(e);
            }
            current.made += 1;
        }
        match conn.sync_until_acknowledged(current.id, &mut current.doc, &mut state, timeout).await {
            Ok(_) => {
                current.acknowledged = Acknowledged { heads: current.doc.get_heads(), changes: current.made };
                acknowledged.insert(current.id, current.acknowledged.clone());
            }
            Err(e) => break Some(e),
        }
    };
    // The kill closes the socket: that is how a life is meant to end.
    let error = error.filter(|e| !e.fatal());
    WriterLife { writer, acknowledged: acknowledged.into_iter().collect(), error }
}

/// Reads `document` back into an empty document; `Err` says why the acknowledged heads did not
/// all come back.
async fn check_document(
    conn: &mut Conn,
    document: DocumentId,
    expected: &Acknowledged,
    timeout: Duration,
) -> Result<(), (Vec<ChangeHash>, String)> {
    let mut doc = Automerge::new();
    let mut state = sync::State::new();
    let id = document.to_string();
    let missing = |doc: &Automerge| -> Vec<ChangeHash> {
        expected.heads.iter().filter(|h| doc.get_change_by_hash(h).is_none()).copied().collect()
    };
    let deadline = Instant::now() + timeout;
    let mut first = true;
    loop {
        if let Some(message) = doc.generate_sync_message(&mut state) {
            let data = DocMessage {
                sender_id: conn.peer_id.clone(),
                target_id: conn.server_id.clone(),
                document_id: id.clone(),
                data: message.encode(),
            };
            let message = if first { Message::Request(data) } else { Message::Sync(data) };
            first = false;
            conn.send(&message).await.map_err(|e| (missing(&doc), e.to_string()))?;
        }
        let left = missing(&doc);
        if left.is_empty() {
            return Ok(());
        }
        // The server has said where it is and we hold all of it: what is missing, it lacks.
        if let Some(theirs) = &state.their_heads
            && theirs.iter().all(|h| doc.get_change_by_hash(h).is_some())
            && !first
        {
            return Err((left, format!("the server's heads {theirs:?} do not include them")));
        }
        match conn.recv(deadline, "the document").await {
            Ok(Message::Sync(m) | Message::Request(m)) if m.document_id == id => {
                let message = sync::Message::decode(&m.data).map_err(|e| (missing(&doc), e.to_string()))?;
                doc.receive_sync_message(&mut state, message).map_err(|e| (missing(&doc), e.to_string()))?;
            }
            Ok(Message::DocUnavailable { document_id, .. }) if document_id == id => {
                return Err((left, "doc-unavailable".into()));
            }
            Ok(Message::Error { message, .. }) => return Err((left, format!("error: {message}"))),
            Ok(_) => {}
            Err(e) => return Err((left, e.to_string())),
        }
    }
}

/// Reads back each of `documents`; returns the losses.
async fn check(
    url: &str,
    kill: usize,
    documents: &[DocumentId],
    acknowledged: &BTreeMap<DocumentId, Acknowledged>,
    timeout: Duration,
) -> Vec<Loss> {
    let mut losses = Vec::new();
    let mut conn = match Conn::connect(url, format!("soak-reader-{kill}"), timeout).await {
        Ok(conn) => conn,
        Err(e) => {
            return documents
                .iter()
                .filter_map(|d| acknowledged.get(d).map(|a| (d, a)))
                .map(|(d, a)| Loss {
                    kill,
                    document: d.to_string(),
                    acknowledged_changes: a.changes,
                    missing_heads: a.heads.iter().map(|h| h.to_string()).collect(),
                    why: format!("the reader could not connect: {e}"),
                })
                .collect();
        }
    };
    for document in documents {
        let Some(expected) = acknowledged.get(document) else { continue };
        if expected.heads.is_empty() {
            continue;
        }
        if let Err((missing, why)) = check_document(&mut conn, *document, expected, timeout).await {
            losses.push(Loss {
                kill,
                document: document.to_string(),
                acknowledged_changes: expected.changes,
                missing_heads: missing.iter().map(|h| h.to_string()).collect(),
                why,
            });
            if losses.len() >= 20 {
                break;
            }
        }
    }
    let _ = futures_util::SinkExt::close(&mut conn.ws).await;
    losses
}

/// The server process, its stdout watched for the address it listens on.
struct ServerProcess {
    child: Child,
    listening: mpsc::Receiver<String>,
}

impl ServerProcess {
    fn start(config: &SoakConfig, log: &File) -> Result<ServerProcess, SoakError> {
        let stderr = log.try_clone().map_err(|e| SoakError::Server(e.to_string()))?;
        let mut child = Command::new(&config.server)
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-open-sync", "--data-dir"])
            .arg(&config.data_dir)
            .args(["--compact-after", &config.compact_after.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| SoakError::Server(format!("starting {}: {e}", config.server.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, address)) = line.split_once("listening on http://") {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        Ok(ServerProcess { child, listening })
    }

    /// The sync URL once the server listens.
    fn url(&mut self, within: Duration) -> Result<String, SoakError> {
        match self.listening.recv_timeout(within) {
            Ok(address) => Ok(format!("ws://{address}/sync")),
            Err(_) => {
                let status = self.child.try_wait().ok().flatten();
                Err(SoakError::Server(format!(
                    "did not listen within {} s (exit status {status:?}); see its log",
                    within.as_secs()
                )))
            }
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn after_kill(config: &SoakConfig) -> Result<(), SoakError> {
    let Some(command) = &config.after_kill else { return Ok(()) };
    let status = Command::new("sh")
        .args(["-c", command])
        .env("HAMLET_SOAK_DATA", &config.data_dir)
        .status()
        .map_err(|e| SoakError::AfterKill(e.to_string()))?;
    if status.success() { Ok(()) } else { Err(SoakError::AfterKill(format!("{command:?} exited with {status}"))) }
}

/// Runs the soak; `log` receives the server's stderr. Must be called inside a tokio runtime.
/// Stops at the first check that finds a loss.
pub async fn run(config: SoakConfig, log: File) -> Result<SoakReport, SoakError> {
    let started = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut report = SoakReport { seed: config.seed, ..SoakReport::default() };
    let mut writers: Vec<Writer> = (0..config.writers.max(1)).map(|i| Writer::new(i, config.seed)).collect();
    let mut acknowledged: BTreeMap<DocumentId, Acknowledged> = BTreeMap::new();
    let mut written_since_check: BTreeSet<DocumentId> = BTreeSet::new();
    let listen_within = Duration::from_secs(120);

    while report.kills < config.kills {
        let mut server = ServerProcess::start(&config, &log)?;
        if (rng.below(100) as u64) < config.startup_kill_percent {
            let at = rng.below(config.startup_window.as_millis() as usize + 1) as u64;
            tokio::time::sleep(Duration::from_millis(at)).await;
            server.kill();
            report.kills += 1;
            report.startup_kills += 1;
            after_kill(&config)?;
            continue;
        }
        let waiting = Instant::now();
        let url = match server.url(listen_within) {
            Ok(url) => url,
            Err(e) => {
                server.kill();
                return Err(e);
            }
        };
        report.startup_seconds += waiting.elapsed().as_secs_f64();

        let checking = Instant::now();
        let full = config.full_every > 0 && report.kills > 0 && report.kills.is_multiple_of(config.full_every);
        let documents: Vec<DocumentId> = if full {
            report.full_checks += 1;
            acknowledged.keys().copied().collect()
        } else {
            let older: Vec<DocumentId> =
                acknowledged.keys().filter(|d| !written_since_check.contains(d)).copied().collect();
            let mut documents: Vec<DocumentId> = written_since_check.iter().copied().collect();
            for _ in 0..config.sample.min(older.len()) {
                documents.push(older[rng.below(older.len())]);
            }
            documents
        };
        let losses = check(&url, report.kills, &documents, &acknowledged, config.round_timeout).await;
        report.documents_checked += documents.len() as u64;
        report.check_seconds += checking.elapsed().as_secs_f64();
        written_since_check.clear();
        if !losses.is_empty() {
            server.kill();
            report.lost = losses;
            break;
        }

        let lives: Vec<_> = writers
            .drain(..)
            .map(|w| tokio::spawn(write(url.clone(), w, config.changes_per_doc, config.round_timeout)))
            .collect();
        let at = rng.below(config.max_run.as_millis() as usize + 1) as u64;
        tokio::time::sleep(Duration::from_millis(at)).await;
        server.kill();
        report.kills += 1;
        for life in lives {
            let life = life.await.map_err(|e| SoakError::Server(format!("a writer task failed: {e}")))?;
            if let Some(e) = &life.error {
                report.writer_errors += 1;
                if report.writer_error_samples.len() < 10 {
                    report
                        .writer_error_samples
                        .push(format!("kill {}: writer {}: {e}", report.kills, life.writer.index));
                }
            }
            for (document, acked) in life.acknowledged {
                let before = acknowledged.get(&document).map_or(0, |a| a.changes);
                report.acknowledged_changes += acked.changes.saturating_sub(before);
                acknowledged.insert(document, acked);
                written_since_check.insert(document);
            }
            writers.push(life.writer);
        }
        after_kill(&config)?;
    }

    if report.passed() {
        let mut server = ServerProcess::start(&config, &log)?;
        let url = match server.url(listen_within) {
            Ok(url) => url,
            Err(e) => {
                server.kill();
                return Err(e);
            }
        };
        let checking = Instant::now();
        let documents: Vec<DocumentId> = acknowledged.keys().copied().collect();
        report.lost = check(&url, report.kills, &documents, &acknowledged, config.round_timeout).await;
        report.documents_checked += documents.len() as u64;
        report.full_checks += 1;
        report.check_seconds += checking.elapsed().as_secs_f64();
        server.kill();
    }
    report.documents = acknowledged.len();
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<usize> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<usize> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 10));
        assert!(xs.iter().collect::<BTreeSet<_>>().len() > 5, "{xs:?}");
        assert_eq!(a.below(0), 0);
    }

    #[test]
    fn writers_start_distinct_documents() {
        let mut w = Writer::new(3, 1);
        let first = w.current.id;
        w.next_document();
        assert_ne!(first, w.current.id);
        assert_ne!(Writer::new(2, 1).current.id, first);
    }
}
