//! A real district server on port 0 with real accounts (collectors, assignments, one-time
//! enrollment codes), and a "front" before it: a TCP proxy that passes everything through,
//! notes the token devices sync with, and can cut connections after a given number of bytes.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::app::Server;
use hamlet_server::config::ServeConfig;
use hamlet_server::store::{ChunkKind, Store, Write as StoreWrite};
use hamlet_sync_core::automerge::{ActorId, Automerge};
use hamlet_sync_core::campaign_doc::new_campaign_doc;
use hamlet_sync_core::projection::project;
use hamlet_sync_core::session::encode_heads;
use hamlet_sync_core::{Campaign, Day, DocumentId, Ledger, UnitId};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeConfig,
}

/// The district server, running in this process on its own runtime.
pub struct District {
    pub addr: SocketAddr,
    url: String,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<()>>,
    /// An administrator's API token, for a district made by [`District::start_counting`].
    admin_token: Option<String>,
}

/// The body of a chunked HTTP answer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

impl District {
    /// Starts a server over a fresh SQLite database in `dir`, holding `campaign`'s document as
    /// the district published it. Devices need a token: see [`District::code`].
    pub fn start(dir: &Path, campaign: &Campaign) -> District {
        District::start_with(dir, campaign, &[])
    }

    /// As [`District::start`], in the open-sync mode of benchmarks (no token needed).
    pub fn start_open(dir: &Path, campaign: &Campaign) -> District {
        District::start_with(dir, campaign, &["--insecure-open-sync"])
    }

    pub fn start_with(dir: &Path, campaign: &Campaign, flags: &[&str]) -> District {
        let db = dir.join("district.db");
        let url = format!("sqlite:{}", db.display());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let store = Store::open(&url).await.expect("district store");
            let doc = new_campaign_doc(campaign, ActorId::random(), Day::from_ymd(2025, 5, 20).unwrap()).unwrap();
            let write = StoreWrite::Chunk {
                document: DocumentId::for_campaign(&campaign.id).to_string(),
                kind: ChunkKind::Snapshot,
                data: doc.save(),
                heads: encode_heads(&doc.get_heads()),
            };
            store.commit(&[write]).await.expect("campaign published");
            store.close().await;
        });
        let (addr, stop, done) = District::serve(&runtime, &url, flags);
        District { addr, url, runtime, stop: Some(stop), done: Some(done), admin_token: None }
    }

    /// Starts the server on `url` with `flags`, on `runtime`.
    fn serve(
        runtime: &tokio::runtime::Runtime,
        url: &str,
        flags: &[&str],
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, std::sync::mpsc::Receiver<()>) {
        runtime.block_on(async {
            let mut argv = vec!["hamlet-server", "--database-url", url];
            argv.extend_from_slice(flags);
            let config = Args::parse_from(argv).serve;
            let server = Server::open(config).await.expect("server opens");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (done_tx, done) = std::sync::mpsc::channel();
            tokio::spawn(async move {
                let _ = server
                    .run(listener, async move {
                        let _ = stopped.await;
                    })
                    .await;
                let _ = done_tx.send(());
            });
            (addr, stop, done)
        })
    }

    /// As [`District::start`], with the campaign made as a district makes it: an administrator
    /// imports the units, creates the campaign and opens it through the JSON API, so that the
    /// server's projector counts what phones send and [`District::results`] answers.
    pub fn start_counting(dir: &Path, campaign: &Campaign) -> District {
        let db = dir.join("district.db");
        let url = format!("sqlite:{}", db.display());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let token = runtime.block_on(async {
            let store = Store::open(&url).await.expect("district store");
            let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
            accounts.create_person("district-admin", "Ban Tổ chức", Role::Admin).await.expect("admin");
            let (_, token) = accounts.create_api_token("district-admin", "phone tests").await.expect("token");
            store.close().await;
            token
        });
        let (addr, stop, done) = District::serve(&runtime, &url, &[]);
        let district = District { addr, url, runtime, stop: Some(stop), done: Some(done), admin_token: Some(token) };
        let units = hamlet_server::district::catalog::units_csv(hamlet_sync_core::fixtures::unit_tree().units());
        district.admin("POST", "/api/units", "text/csv", &units, 200);
        let mut draft = campaign.clone();
        draft.state = hamlet_sync_core::CampaignState::Draft;
        district.admin("POST", "/api/campaigns", "application/json", &serde_json::to_string(&draft).unwrap(), 201);
        district.admin("POST", &format!("/api/campaigns/{}/open", campaign.id), "application/json", "", 200);
        district
    }

    /// Closes `campaign` as an administrator does (needs [`District::start_counting`]).
    pub fn close(&self, campaign: &Campaign) {
        self.admin("POST", &format!("/api/campaigns/{}/close", campaign.id), "application/json", "", 200);
    }

    /// The district's results API for `campaign`, to hamlets (needs [`District::start_counting`]).
    pub fn results(&self, campaign: &Campaign) -> serde_json::Value {
        let body = self.admin("GET", &format!("/api/campaigns/{}/results?depth=hamlet", campaign.id), "", "", 200);
        serde_json::from_str(&body).expect("results are JSON")
    }

    /// One request with the administrator's token; panics unless it answers `status`.
    fn admin(&self, method: &str, path: &str, content_type: &str, body: &str, status: u16) -> String {
        let token = self.admin_token.as_deref().expect("a district started with start_counting");
        let mut stream = TcpStream::connect(self.addr).expect("connects");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: district\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("sends");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("reads");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, rest) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        let got: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
        assert_eq!(got, status, "{method} {path}: {answer}");
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_owned() }
    }

    /// A one-time enrollment code for collector `person`, who is created if new and assigned
    /// `hamlets` of the campaign `tin-nhiem-2025` — as an admin does it.
    pub fn code(&self, person: &str, hamlets: &[&str]) -> String {
        self.code_as(person, Role::Collector, hamlets)
    }

    /// As [`District::code`], for a person of `role` (a relay carries other devices' changes).
    pub fn code_as(&self, person: &str, role: Role, hamlets: &[&str]) -> String {
        self.runtime.block_on(async {
            let store = Store::open(&self.url).await.expect("district store");
            let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
            if accounts.person(person).await.expect("people").is_none() {
                accounts.create_person(person, person, role).await.expect("person created");
            }
            let hamlets: Vec<String> = hamlets.iter().map(|h| h.to_string()).collect();
            accounts.set_assignments(person, "tin-nhiem-2025", &hamlets).await.expect("assigned");
            let (code, _) = accounts.issue_code(person, Duration::from_secs(3600)).await.expect("code issued");
            store.close().await;
            code
        })
    }

    /// How far each enrolled device's clock was from the server's at its last sync, as the
    /// district keeps it (device id, offset in milliseconds).
    pub fn clock_offsets(&self) -> Vec<(String, Option<i64>)> {
        self.runtime.block_on(async {
            let store = Store::open(&self.url).await.expect("district store");
            let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
            let devices = accounts.devices().await.expect("devices");
            store.close().await;
            devices.into_iter().map(|d| (d.id, d.clock_offset_ms)).collect()
        })
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The ledger of `hamlet` as the server stores it, read from its database.
    pub fn ledger(&self, campaign: &Campaign, hamlet: &str) -> Option<Ledger> {
        let id = DocumentId::for_ledger(&campaign.id, &UnitId::new(hamlet).unwrap());
        self.runtime.block_on(async {
            let store = Store::open(&self.url).await.expect("district store");
            let chunks = store.load(&id.to_string()).await.expect("chunks");
            store.close().await;
            if chunks.is_empty() {
                return None;
            }
            let mut doc = Automerge::new();
            for chunk in chunks {
                doc.load_incremental(&chunk.data).expect("stored chunk loads");
            }
            Some(Ledger::from_doc(doc).expect("a ledger"))
        })
    }

    /// "The server's results" for these tests: the ledgers the server stores, projected by
    /// sync-core; per response, the counted answers. Keys: (response id, answer key).
    pub fn counted(&self, campaign: &Campaign, hamlets: &[&str]) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        for hamlet in hamlets {
            let Some(ledger) = self.ledger(campaign, hamlet) else { continue };
            let projection = project(campaign, &ledger).expect("projects");
            for a in projection.rows.answers.iter().filter(|a| a.counted) {
                let key = match &a.subject {
                    Some(s) => format!("{}/{}", a.question, s),
                    None => a.question.to_string(),
                };
                let value = format!("{:?}", a.value);
                assert!(out.insert((a.response.to_string(), key), value).is_none(), "an answer counted twice");
            }
        }
        out
    }

    /// Flags of the server's projection, as text, for every hamlet given.
    pub fn flags(&self, campaign: &Campaign, hamlets: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for hamlet in hamlets {
            let Some(ledger) = self.ledger(campaign, hamlet) else { continue };
            let projection = project(campaign, &ledger).expect("projects");
            out.extend(projection.rows.flags.iter().map(|f| format!("{:?}", f)));
        }
        out
    }
}

impl Drop for District {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(Duration::from_secs(15));
        }
    }
}

/// Where the front cuts a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// After this many bytes from the device to the server.
    Upstream(usize),
    /// After this many bytes from the server to the device.
    Downstream(usize),
}

#[derive(Default)]
struct FrontState {
    /// Tokens devices synced with (`None` for no token).
    seen_tokens: Vec<Option<String>>,
    /// Cuts for the next connections, in order.
    cuts: Vec<Cut>,
    /// Never answer (a link that hangs).
    black_hole: bool,
    /// Sync connections seen.
    connections: usize,
    /// The clocks devices sent as they connected to sync (`Hamlet-Device-Time`).
    seen_clocks: Vec<Option<i64>>,
}

/// The proxy before the district server.
pub struct Front {
    pub addr: SocketAddr,
    state: Arc<Mutex<FrontState>>,
    stop: Arc<AtomicBool>,
}

impl Front {
    /// A front for `district`.
    pub fn start(district: SocketAddr) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FrontState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                thread::spawn(move || serve(stream, district, s));
            }
        });
        Front { addr, state, stop }
    }

    pub fn address(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next sync connections are cut as given, one cut each.
    pub fn cut_next(&self, cuts: &[Cut]) {
        self.state.lock().unwrap().cuts = cuts.to_vec();
    }

    pub fn black_hole(&self, on: bool) {
        self.state.lock().unwrap().black_hole = on;
    }

    pub fn seen_tokens(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().seen_tokens.clone()
    }

    pub fn seen_clocks(&self) -> Vec<Option<i64>> {
        self.state.lock().unwrap().seen_clocks.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads an HTTP request head (up to the blank line).
fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.push(byte[0]);
    }
    Some((String::from_utf8_lossy(&buf).into_owned(), buf))
}

fn serve(mut device: TcpStream, district: SocketAddr, state: Arc<Mutex<FrontState>>) {
    let Some((head, raw)) = read_head(&mut device) else { return };
    let is_sync = head.lines().next().is_some_and(|l| l.starts_with("GET /sync"));
    let (cut, black_hole) = if is_sync {
        let token = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("authorization:")
                .then(|| l["authorization:".len()..].trim().trim_start_matches("Bearer ").to_owned())
        });
        let clock = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("hamlet-device-time:")
                .then(|| l["hamlet-device-time:".len()..].trim().parse::<i64>().ok())
                .flatten()
        });
        let mut s = state.lock().unwrap();
        s.seen_tokens.push(token);
        s.seen_clocks.push(clock);
        s.connections += 1;
        let cut = if s.cuts.is_empty() { None } else { Some(s.cuts.remove(0)) };
        (cut, s.black_hole)
    } else {
        (None, false)
    };
    if black_hole {
        thread::sleep(Duration::from_secs(30));
        return;
    }
    let Ok(mut server) = TcpStream::connect(district) else { return };
    if server.write_all(&raw).is_err() {
        return;
    }
    let limit = |c: Option<Cut>, up: bool| match c {
        Some(Cut::Upstream(n)) if up => Some(n),
        Some(Cut::Downstream(n)) if !up => Some(n),
        _ => None,
    };
    let (d2, s2) = (device.try_clone().unwrap(), server.try_clone().unwrap());
    let up = thread::spawn(move || pipe(d2, s2, limit(cut, true)));
    pipe(server, device, limit(cut, false));
    let _ = up.join();
}

/// Copies `from` to `to` until either closes, or `limit` bytes have passed; then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>) {
    let mut buf = [0u8; 4096];
    let mut passed = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match limit {
            Some(l) if passed + n >= l => {
                let _ = to.write_all(&buf[..l.saturating_sub(passed)]);
                break;
            }
            _ => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        passed += n;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A temporary folder and the path of a phone's store in it.
/// `127.0.0.1:<port>` of a port this process bound and closed again: nothing listens there
/// (unlike a fixed port such as 9, which a machine may serve).
pub fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("its address");
    drop(listener);
    address.to_string()
}

pub fn phone_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.db"))
}
