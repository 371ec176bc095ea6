//! The load generator behind `hamlet-load`: many automerge-repo clients, each on its own
//! WebSocket, writing documents one change at a time and waiting for every change to be
//! acknowledged before making the next.
//!
//! A client joins as an ephemeral peer, then works through the documents it owns, one after the
//! other. For each document it makes `changes` small changes; after each one it sends the sync
//! message(s) Automerge generates and waits until the server's heads equal its own (the server
//! holds the change; Hamlet's server says so only once the change is committed). A *round* runs
//! from sending the message that carries the change to receiving the reply that acknowledges it;
//! for the first change of a document that message is preceded by the usual heads-only opening
//! exchange, which is not part of the round.
//!
//! Nothing is prepared ahead: documents are created, changed and encoded as the run goes, as a
//! phone would. Servers other than Hamlet's are handled too: the automerge-repo reference server
//! replies before storing and may send extra, empty sync messages (also for documents a client
//! has finished with) or `doc-unavailable`; those are counted, not errors.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{Automerge, AutomergeError, ChangeHash, ROOT};
use hamlet_sync_core::wire::{self, DocMessage, Message, PeerMetadata};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// At most this many error texts are kept for the report.
const ERROR_SAMPLES: usize = 10;

/// Clock ticks per second in `/proc/PID/stat` (Linux's `USER_HZ`, 100 on every common platform).
const USER_HZ: f64 = 100.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The sync endpoint, `ws://HOST:PORT/sync`.
    pub url: String,
    /// Concurrent clients, one WebSocket each.
    pub clients: usize,
    /// Documents in all; client `c` owns documents `c`, `c + clients`, …
    pub docs: usize,
    /// Changes made to each document.
    pub changes: usize,
    /// How long a client waits for any one reply (connect, join, or a round) before it gives up
    /// on the document.
    pub round_timeout: Duration,
}

impl Workload {
    /// Changes the run should get acknowledged.
    pub fn expected_changes(&self) -> u64 {
        (self.docs as u64) * (self.changes as u64)
    }
}

/// Round latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Rounds measured.
    pub rounds: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest round.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    /// Summarises round latencies given in microseconds (sorts them).
    pub fn from_micros(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let mean = if samples.is_empty() { 0.0 } else { samples.iter().sum::<u64>() as f64 / samples.len() as f64 };
        Latency {
            rounds: samples.len(),
            p50_ms: ms(percentile(samples, 50.0)),
            p95_ms: ms(percentile(samples, 95.0)),
            p99_ms: ms(percentile(samples, 99.0)),
            max_ms: ms(samples.last().copied().unwrap_or(0)),
            mean_ms: mean / 1000.0,
        }
    }
}

/// The nearest-rank percentile `p` (0–100) of `sorted` (ascending); 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The server process's memory and CPU over the run, read from `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerUsage {
    /// The process id watched.
    pub pid: u32,
    /// Resident set before the run, KiB.
    pub start_rss_kib: u64,
    /// Resident set after the run, KiB.
    pub end_rss_kib: u64,
    /// Largest resident set seen sampling every 100 ms, KiB.
    pub max_sampled_rss_kib: u64,
    /// The kernel's high-water mark of the resident set (`VmHWM`) at the end, KiB.
    pub vm_hwm_kib: u64,
    /// The peak: the larger of the two above, KiB.
    pub peak_rss_kib: u64,
    /// CPU time (user + system) the server used during the run, seconds.
    pub cpu_seconds: Option<f64>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The endpoint.
    pub url: String,
    /// Clients asked for.
    pub clients: usize,
    /// Clients that connected and joined.
    pub clients_joined: usize,
    /// Documents.
    pub docs: usize,
    /// Changes per document.
    pub changes_per_doc: usize,
    /// Changes the run should get acknowledged.
    pub expected_changes: u64,
    /// Changes the server acknowledged.
    pub acknowledged_changes: u64,
    /// Documents whose every change was acknowledged.
    pub documents_acknowledged: usize,
    /// Documents not fully acknowledged.
    pub documents_failed: usize,
    /// From the moment every client had joined to the last client finishing, seconds.
    pub wall_seconds: f64,
    /// Acknowledged changes per second of wall time.
    pub changes_per_second: f64,
    /// Round latencies.
    pub latency: Latency,
    /// Bytes of the changes the clients made (Automerge's encoding): what had to be sent at least.
    pub change_bytes: u64,
    /// Payload bytes of the frames the clients sent.
    pub bytes_sent: u64,
    /// Payload bytes of the frames the clients received.
    pub bytes_received: u64,
    /// Protocol messages sent.
    pub messages_sent: u64,
    /// Protocol messages received.
    pub messages_received: u64,
    /// Failures: connections refused or dropped, timeouts, `error` messages, unreadable replies.
    pub errors: u64,
    /// The first few failures, as text.
    pub error_samples: Vec<String>,
    /// `doc-unavailable` messages received (not errors: the client carries on syncing).
    pub doc_unavailable: u64,
    /// Sync messages for a document the client had already finished (ignored).
    pub stray_messages: u64,
    /// The server process, with `--server-pid`.
    pub server: Option<ServerUsage>,
    /// CPU time (user + system) this generator used during the run, seconds: it shares the
    /// machine's cores with the server.
    pub generator_cpu_seconds: Option<f64>,
    /// CPU time the whole machine was busy during the run (all cores, from `/proc/stat`),
    /// seconds. What the server and the generator do not account for was used by other processes
    /// (a database server's among them).
    pub machine_busy_cpu_seconds: Option<f64>,
    /// The machine's load averages (1, 5, 15 minutes) when the run started.
    pub load_average: Option<[f64; 3]>,
}

impl Report {
    /// Whether every document was fully acknowledged.
    pub fn complete(&self) -> bool {
        self.documents_failed == 0 && self.acknowledged_changes == self.expected_changes
    }

    /// The report on one line, for people.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}/{} changes acknowledged ({} docs failed) in {:.1} s = {:.0} changes/s; round p50 {:.2} ms, \
             p95 {:.2} ms, p99 {:.2} ms, max {:.1} ms; sent {} (changes {}), received {}; errors {}",
            self.acknowledged_changes,
            self.expected_changes,
            self.documents_failed,
            self.wall_seconds,
            self.changes_per_second,
            self.latency.p50_ms,
            self.latency.p95_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            megabytes(self.bytes_sent),
            megabytes(self.change_bytes),
            megabytes(self.bytes_received),
            self.errors,
        );
        if self.doc_unavailable > 0 || self.stray_messages > 0 {
            line += &format!("; doc-unavailable {}, stray syncs {}", self.doc_unavailable, self.stray_messages);
        }
        if let Some(s) = &self.server {
            line += &format!("; server peak RSS {:.1} MiB", s.peak_rss_kib as f64 / 1024.0);
            if let Some(cpu) = s.cpu_seconds {
                line += &format!(", server CPU {cpu:.1} s");
            }
        }
        if let Some(cpu) = self.generator_cpu_seconds {
            line += &format!("; generator CPU {cpu:.1} s");
        }
        let server_cpu = self.server.as_ref().and_then(|s| s.cpu_seconds);
        if let (Some(busy), Some(server), Some(generator)) =
            (self.machine_busy_cpu_seconds, server_cpu, self.generator_cpu_seconds)
        {
            line += &format!("; other processes' CPU {:.1} s", (busy - server - generator).max(0.0));
        }
        line
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Why a client gave up on a document (or on its connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientError {
    /// No reply in time.
    Timeout(&'static str),
    /// The connection closed or failed.
    Connection(String),
    /// The server said `error`.
    Server(String),
    /// A reply that cannot be read or applied.
    Protocol(String),
}

impl ClientError {
    /// Whether the connection is unusable after this error.
    pub(crate) fn fatal(&self) -> bool {
        matches!(self, ClientError::Connection(_))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            ClientError::Connection(e) => write!(f, "connection: {e}"),
            ClientError::Server(e) => write!(f, "server error: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

/// What one client counted.
#[derive(Debug, Default)]
pub(crate) struct ClientStats {
    joined: bool,
    latencies_us: Vec<u64>,
    acknowledged: u64,
    docs_ok: usize,
    change_bytes: u64,
    bytes_sent: u64,
    bytes_received: u64,
    messages_sent: u64,
    messages_received: u64,
    errors: Vec<String>,
    error_count: u64,
    doc_unavailable: u64,
    stray: u64,
}

impl ClientStats {
    fn error(&mut self, client: usize, e: &ClientError) {
        self.error_count += 1;
        if self.errors.len() < ERROR_SAMPLES {
            self.errors.push(format!("client {client}: {e}"));
        }
    }
}

/// One client's connection, counting what goes over it.
pub(crate) struct Conn {
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) peer_id: String,
    pub(crate) server_id: String,
    pub(crate) stats: ClientStats,
}

impl Conn {
    pub(crate) async fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        let bytes = wire::encode(message);
        self.stats.bytes_sent += bytes.len() as u64;
        self.stats.messages_sent += 1;
        self.ws.send(Frame::Binary(bytes.into())).await.map_err(|e| ClientError::Connection(e.to_string()))
    }

    /// The next protocol message, before `deadline`.
    pub(crate) async fn recv(&mut self, deadline: Instant, waiting_for: &'static str) -> Result<Message, ClientError> {
        loop {
            let frame = match tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
                Err(_) => return Err(ClientError::Timeout(waiting_for)),
                Ok(None) => return Err(ClientError::Connection("closed by the server".into())),
                Ok(Some(Err(e))) => return Err(ClientError::Connection(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            self.stats.bytes_received += frame.len() as u64;
            match frame {
                Frame::Binary(bytes) => {
                    self.stats.messages_received += 1;
                    return wire::decode(&bytes).map_err(|e| ClientError::Protocol(e.to_string()));
                }
                Frame::Close(reason) => {
                    return Err(ClientError::Connection(format!("closed by the server: {reason:?}")));
                }
                // Pings are answered by tungstenite; text frames are not part of the protocol.
                _ => continue,
            }
        }
    }

    pub(crate) async fn connect(url: &str, peer_id: String, timeout: Duration) -> Result<Conn, ClientError> {
        let deadline = Instant::now() + timeout;
        // Small request/reply messages: do not let Nagle's algorithm hold them back.
        let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
        let (ws, _) = tokio::time::timeout_at(deadline.into(), connect)
            .await
            .map_err(|_| ClientError::Timeout("the WebSocket to open"))?
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let mut conn = Conn { ws, peer_id, server_id: String::new(), stats: ClientStats::default() };
        conn.send(&Message::Join {
            sender_id: conn.peer_id.clone(),
            peer_metadata: Some(PeerMetadata { storage_id: None, is_ephemeral: true }),
            supported_protocol_versions: Some(vec![wire::PROTOCOL_VERSION.into()]),
        })
        .await?;
        match conn.recv(deadline, "the peer message").await? {
            Message::Peer { sender_id, .. } => conn.server_id = sender_id,
            Message::Error { message, .. } => return Err(ClientError::Server(message)),
            other => return Err(ClientError::Protocol(format!("expected peer, got {}", other.kind()))),
        }
        Ok(conn)
    }

    pub(crate) fn sync_message(&self, document: DocumentId, data: Vec<u8>) -> Message {
        Message::Sync(DocMessage {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            document_id: document.to_string(),
            data,
        })
    }

    /// Sends what Automerge wants to send and reads replies until the server holds everything
    /// `doc` holds. Returns the round latency: from sending the message that carried changes to
    /// the acknowledging reply.
    pub(crate) async fn sync_until_acknowledged(
        &mut self,
        document: DocumentId,
        doc: &mut Automerge,
        state: &mut sync::State,
        timeout: Duration,
    ) -> Result<Duration, ClientError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let id = document.to_string();
        let mut carried_changes_at: Option<Instant> = None;
        loop {
            if let Some(message) = doc.generate_sync_message(state) {
                if carried_changes_at.is_none() && !message.changes.is_empty() {
                    carried_changes_at = Some(Instant::now());
                }
                self.send(&self.sync_message(document, message.encode())).await?;
            }
            if acknowledged(doc, state) {
                return Ok(carried_changes_at.unwrap_or(started).elapsed());
            }
            match self.recv(deadline, "an acknowledgement").await? {
                Message::Sync(m) | Message::Request(m) if m.document_id == id => {
                    let message = sync::Message::decode(&m.data).map_err(|e| ClientError::Protocol(e.to_string()))?;
                    doc.receive_sync_message(state, message).map_err(|e| ClientError::Protocol(e.to_string()))?;
                }
                Message::Sync(_) | Message::Request(_) => self.stats.stray += 1,
                Message::DocUnavailable { document_id, .. } => {
                    self.stats.doc_unavailable += 1;
                    if document_id == id {
                        // The server has nothing yet; our changes are still to be sent. Let
                        // Automerge generate again rather than wait for a reply that will not come.
                        state.in_flight = false;
                    }
                }
                Message::Error { message, .. } => return Err(ClientError::Server(message)),
                // remote-heads-changed, ephemeral and the like: nothing to do here.
                _ => {}
            }
        }
    }
}

/// Whether the peer's last known heads are ours: it holds everything we hold.
pub(crate) fn acknowledged(doc: &Automerge, state: &sync::State) -> bool {
    let Some(theirs) = &state.their_heads else { return false };
    let mut ours: Vec<ChangeHash> = doc.get_heads();
    if ours.len() != theirs.len() {
        return false;
    }
    let mut theirs = theirs.clone();
    ours.sort_unstable();
    theirs.sort_unstable();
    ours == theirs
}

/// One small change, like a collector answering one question. Returns the size of the change as
/// Automerge stores it.
pub(crate) fn make_change(doc: &mut Automerge, i: usize) -> Result<usize, ClientError> {
    doc.transact::<_, _, AutomergeError>(|tx| {
        tx.put(ROOT, format!("q{}", i % 20), format!("answer {i}"))?;
        Ok(())
    })
    .map_err(|f| ClientError::Protocol(format!("local change failed: {}", f.error)))?;
    Ok(doc.get_last_local_change().map_or(0, |c| c.raw_bytes().len()))
}

/// The id of document `index` in run `run`.
pub fn document_id(run: u64, index: u64) -> DocumentId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&run.to_be_bytes());
    bytes[8..].copy_from_slice(&index.to_be_bytes());
    DocumentId::from_bytes(bytes)
}

/// The documents client `client` of `clients` owns, of `docs`.
pub fn documents_of(client: usize, clients: usize, docs: usize) -> impl Iterator<Item = usize> {
    (client..docs).step_by(clients.max(1))
}

async fn run_client(
    workload: Arc<Workload>,
    run: u64,
    client: usize,
    start: Arc<Barrier>,
) -> Result<ClientStats, ClientStats> {
    let docs: Vec<usize> = documents_of(client, workload.clients, workload.docs).collect();
    let peer_id = format!("hamlet-load-{run:x}-{client}");
    let connected = Conn::connect(&workload.url, peer_id, workload.round_timeout).await;
    start.wait().await;
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            let mut stats = ClientStats::default();
            stats.error(client, &e);
            return Err(stats);
        }
    };
    conn.stats.joined = true;
    for index in docs {
        let document = document_id(run, index as u64);
        let mut doc = Automerge::new();
        let mut state = sync::State::new();
        let mut outcome = Ok(());
        for i in 0..workload.changes {
            match make_change(&mut doc, i) {
                Ok(size) => conn.stats.change_bytes += size as u64,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            match conn.sync_until_acknowledged(document, &mut doc, &mut state, workload.round_timeout).await {
                Ok(latency) => {
                    conn.stats.latencies_us.push(latency.as_micros() as u64);
                    conn.stats.acknowledged += 1;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        match outcome {
            Ok(()) => conn.stats.docs_ok += 1,
            Err(e) => {
                conn.stats.error(client, &e);
                if e.fatal() {
                    return Err(conn.stats);
                }
            }
        }
    }
    let _ = conn.ws.close(None).await;
    Ok(conn.stats)
}

/// Samples a process's resident set every 100 ms, keeping the largest.
#[derive(Debug)]
struct RssSampler {
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max_kib = Arc::new(AtomicU64::new(0));
        let max = max_kib.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if let Some(rss) = proc_status_kib(pid, "VmRSS") {
                    max.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        RssSampler { max_kib, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.max_kib.load(Ordering::Relaxed)
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`…), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

/// A `kB` field of the text of a `/proc/PID/status` file, in KiB.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != field {
            return None;
        }
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU time (user + system) a process has used, in seconds; `None` where `/proc` cannot tell.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat_cpu_seconds(&stat)
}

/// User + system CPU seconds from the text of a `/proc/PID/stat` file.
pub fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name come state (field 3) …; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU time all cores of the machine have been busy since boot, seconds (from `/proc/stat`).
pub fn machine_busy_seconds() -> Option<f64> {
    parse_proc_stat_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Busy CPU seconds from the text of `/proc/stat`: user, nice, system, irq, softirq and steal of
/// the `cpu` line (idle and iowait left out).
pub fn parse_proc_stat_busy(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum();
    Some(busy as f64 / USER_HZ)
}

/// The three load averages of the text of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|f| f.parse().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// Runs the workload; `server_pid` names the server process to watch. Must be called inside a
/// tokio runtime.
pub async fn run(workload: Workload, server_pid: Option<u32>) -> Report {
    let workload = Arc::new(workload);
    // Unique per run, so that peer and document ids never collide with an earlier run's.
    let run = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let start = Arc::new(Barrier::new(workload.clients + 1));
    let handles: Vec<_> = (0..workload.clients)
        .map(|client| tokio::spawn(run_client(workload.clone(), run, client, start.clone())))
        .collect();

    start.wait().await;
    let started = Instant::now();
    let load_average = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| parse_loadavg(&s));
    let machine_cpu_start = machine_busy_seconds();
    let generator_cpu_start = cpu_seconds(None);
    let server_cpu_start = server_pid.and_then(|p| cpu_seconds(Some(p)));
    let start_rss = server_pid.and_then(|p| proc_status_kib(p, "VmRSS")).unwrap_or(0);
    let sampler = server_pid.map(RssSampler::start);

    let mut all = ClientStats::default();
    let mut clients_joined = 0;
    for handle in handles {
        let stats = match handle.await {
            Ok(Ok(stats) | Err(stats)) => stats,
            Err(e) => {
                let mut stats = ClientStats::default();
                stats.error(usize::MAX, &ClientError::Protocol(format!("client task failed: {e}")));
                stats
            }
        };
        clients_joined += usize::from(stats.joined);
        all.latencies_us.extend(stats.latencies_us);
        all.acknowledged += stats.acknowledged;
        all.docs_ok += stats.docs_ok;
        all.change_bytes += stats.change_bytes;
        all.bytes_sent += stats.bytes_sent;
        all.bytes_received += stats.bytes_received;
        all.messages_sent += stats.messages_sent;
        all.messages_received += stats.messages_received;
        all.error_count += stats.error_count;
        all.doc_unavailable += stats.doc_unavailable;
        all.stray += stats.stray;
        for e in stats.errors {
            if all.errors.len() < ERROR_SAMPLES {
                all.errors.push(e);
            }
        }
    }
    let wall = started.elapsed();

    let server = server_pid.map(|pid| {
        let max_sampled = sampler.map_or(0, RssSampler::stop);
        let hwm = proc_status_kib(pid, "VmHWM").unwrap_or(0);
        ServerUsage {
            pid,
            start_rss_kib: start_rss,
            end_rss_kib: proc_status_kib(pid, "VmRSS").unwrap_or(0),
            max_sampled_rss_kib: max_sampled,
            vm_hwm_kib: hwm,
            peak_rss_kib: hwm.max(max_sampled),
            cpu_seconds: server_cpu_start.zip(cpu_seconds(Some(pid))).map(|(a, b)| b - a),
        }
    });
    let generator_cpu_seconds = generator_cpu_start.zip(cpu_seconds(None)).map(|(a, b)| b - a);
    let machine_busy_cpu_seconds = machine_cpu_start.zip(machine_busy_seconds()).map(|(a, b)| b - a);

    let latency = Latency::from_micros(&mut all.latencies_us);
    let wall_seconds = wall.as_secs_f64();
    Report {
        url: workload.url.clone(),
        clients: workload.clients,
        clients_joined,
        docs: workload.docs,
        changes_per_doc: workload.changes,
        expected_changes: workload.expected_changes(),
        acknowledged_changes: all.acknowledged,
        documents_acknowledged: all.docs_ok,
        documents_failed: workload.docs - all.docs_ok.min(workload.docs),
        wall_seconds,
        changes_per_second: if wall_seconds > 0.0 { all.acknowledged as f64 / wall_seconds } else { 0.0 },
        latency,
        change_bytes: all.change_bytes,
        bytes_sent: all.bytes_sent,
        bytes_received: all.bytes_received,
        messages_sent: all.messages_sent,
        messages_received: all.messages_received,
        errors: all.error_count,
        error_samples: all.errors,
        doc_unavailable: all.doc_unavailable,
        stray_messages: all.stray,
        server,
        generator_cpu_seconds,
        machine_busy_cpu_seconds,
        load_average,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 95.0), 95);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 95.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 51.0), 3);
    }

    #[test]
    fn latency_summary_sorts_and_converts_to_milliseconds() {
        let mut samples = vec![3000, 1000, 2000, 10_000];
        let l = Latency::from_micros(&mut samples);
        assert_eq!(l.rounds, 4);
        assert_eq!(l.p50_ms, 2.0);
        assert_eq!(l.max_ms, 10.0);
        assert_eq!(l.mean_ms, 4.0);
    }

    #[test]
    fn documents_are_shared_out_without_gaps_or_overlap() {
        let mut seen: Vec<usize> = (0..7).flat_map(|c| documents_of(c, 7, 30)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
        assert_eq!(documents_of(5, 10, 3).count(), 0);
        assert_ne!(document_id(1, 2), document_id(1, 3));
        assert_ne!(document_id(1, 2), document_id(2, 2));
    }

    #[test]
    fn proc_files_are_read() {
        let status = "Name:\tnode\nVmHWM:\t  123456 kB\nVmRSS:\t   99 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(99));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        let stat = "42 (tokio (rt) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_stat_cpu_seconds(stat), Some(3.0));
        assert!(cpu_seconds(None).is_some(), "this process's own stat is readable");
        let proc_stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(parse_proc_stat_busy(proc_stat), Some(1.61));
        assert_eq!(parse_loadavg("0.64 1.03 0.82 1/234 5678\n"), Some([0.64, 1.03, 0.82]));
        assert_eq!(parse_loadavg("garbage"), None);
    }

    /// The acknowledgement test compares heads as sets.
    #[test]
    fn acknowledged_means_their_heads_are_ours() {
        let mut doc = Automerge::new();
        let mut state = sync::State::new();
        assert!(!acknowledged(&doc, &state), "unknown heads are not an acknowledgement");
        state.their_heads = Some(vec![]);
        assert!(acknowledged(&doc, &state));
        assert!(make_change(&mut doc, 0).expect("change") > 0, "a change has a size");
        assert!(!acknowledged(&doc, &state));
        state.their_heads = Some(doc.get_heads());
        assert!(acknowledged(&doc, &state));
    }
}
