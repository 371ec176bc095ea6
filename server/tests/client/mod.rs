//! A real server on port 0 and a small automerge-repo client speaking to it over a real socket.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hamlet_server::app::{Server, ServerError};
use hamlet_server::config::ServeConfig;
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::{Automerge, ChangeHash};
use hamlet_sync_core::wire::{self, DocMessage, Message, PeerMetadata};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeConfig,
}

/// Server flags as on the command line, defaults for the rest, in the open-sync mode the
/// protocol tests use (any client may sync any document).
pub fn config(database_url: &str, extra: &[&str]) -> ServeConfig {
    let mut argv = vec!["hamlet-server", "--database-url", database_url, "--insecure-open-sync"];
    argv.extend_from_slice(extra);
    parse_flags(argv)
}

/// The flags in `argv` and defaults for the rest, never the environment's `HAMLET_*` variables
/// (clap would read them: a developer's `HAMLET_INSECURE_OPEN_SYNC` must not reach a test server).
fn parse_flags(argv: Vec<&str>) -> ServeConfig {
    use clap::{CommandFactory, FromArgMatches};
    let command = Args::command().mut_args(|arg| arg.env(None::<&str>));
    let matches = command.try_get_matches_from(argv).unwrap_or_else(|e| panic!("test server flags: {e}"));
    Args::from_arg_matches(&matches).unwrap_or_else(|e| panic!("test server flags: {e}")).serve
}

/// `command` without the `HAMLET_*` variables of the environment the tests run in.
pub fn without_hamlet_variables(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HAMLET_") {
            command.env_remove(name);
        }
    }
    command
}

/// The official JavaScript client's folder (`tests/js`).
pub fn js_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/js")
}

/// Whether Node.js and `tests/js`'s packages are there for `test` (named in the message). In
/// CI (`CI=true`) their absence fails the test; elsewhere it is reported as skipped.
pub fn node_ready(test: &str) -> bool {
    let installed = js_dir().join("node_modules/@automerge/automerge-repo").exists();
    let node = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if installed && node {
        return true;
    }
    let why = if node { "run `npm ci` in tests/js" } else { "install Node.js 20 and run `npm ci` in tests/js" };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "the {test} cannot run: {why}");
    eprintln!("SKIPPED the {test}: {why}");
    false
}

/// Runs `node script args` in `tests/js` with `envs` and without the `HAMLET_*` variables;
/// fails the test, with the script's output, when the script fails.
pub fn node(script: &str, args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) {
    let output = without_hamlet_variables(&mut std::process::Command::new("node"))
        .arg(script)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(js_dir())
        .output()
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node {script} failed:\n{text}");
    eprintln!("{script}: {}", text.trim());
}

/// A command running the server binary, without the environment's `HAMLET_*` variables.
pub fn server_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hamlet-server"));
    without_hamlet_variables(&mut command);
    command
}

/// Server flags as in production: syncing needs a device token.
pub fn secure_config(database_url: &str, extra: &[&str]) -> ServeConfig {
    let mut argv = vec!["hamlet-server", "--database-url", database_url];
    argv.extend_from_slice(extra);
    parse_flags(argv)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The value of the cookie this answer sets.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).find_map(|(_, v)| {
            v.split(';').next()?.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
        })
    }
}

/// A server running in this process.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// Sends one HTTP/1.1 request and reads the whole answer.
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        http(self.addr, method, path, headers, body).await
    }

    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let reply = self.request("GET", path, &[], None).await;
        (reply.status, reply.body)
    }

    /// Asks the server to stop and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.handle)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran");
    }
}

pub async fn start(config: ServeConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::open(config).await.expect("server opens its database");
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop), handle }
}

/// Sends one HTTP/1.1 request to `addr` and reads the whole answer.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !body.is_empty() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        all.push(("Content-Type", "application/json"));
    }
    let (status, headers, body) = exchange(stream, method, path, &all, body.as_bytes().to_vec()).await;
    let body = body.unwrap_or_else(|e| panic!("{method} {path}: the body was cut off: {e}"));
    Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// One HTTP/1.1 request over `stream` with hyper's client, and the whole answer: status,
/// headers, and the body (`Err` when the server aborted it half-way).
pub async fn exchange(
    stream: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Result<Vec<u8>, String>) {
    use http_body_util::{BodyExt, Full};
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("HTTP handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(method).uri(path).header("host", "x");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(hyper::body::Bytes::from(body))).expect("a valid request");
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = response.into_body().collect().await.map(|b| b.to_bytes().to_vec()).map_err(|e| e.to_string());
    (status, headers, body)
}

/// An automerge-repo peer over a real WebSocket.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub peer_id: String,
    pub server_id: String,
    pub server_storage_id: Option<String>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl Client {
    /// Connects and completes the handshake.
    pub async fn join(url: &str, peer_id: &str, storage_id: Option<&str>) -> Client {
        Client::join_with(url, peer_id, storage_id, None).await
    }

    /// Connects with a bearer token (if any) and completes the handshake.
    pub async fn join_with(url: &str, peer_id: &str, storage_id: Option<&str>, token: Option<&str>) -> Client {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        Client::join_headers(url, peer_id, storage_id, &headers).await
    }

    /// Connects with these HTTP headers on the upgrade and completes the handshake.
    pub async fn join_headers(url: &str, peer_id: &str, storage_id: Option<&str>, headers: &[(&str, &str)]) -> Client {
        match Client::try_join_headers(url, peer_id, storage_id, headers).await {
            Ok(client) => client,
            Err(other) => panic!("expected peer, got {other:?}"),
        }
    }

    /// Like [`Client::join_headers`], but a refused join is the server's answer (`None`: the
    /// connection ended without one), not a panic.
    pub async fn try_join_headers(
        url: &str,
        peer_id: &str,
        storage_id: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Client, Option<Message>> {
        let mut client = Client::connect_headers(url, peer_id, headers).await.expect("websocket connects");
        client
            .send(&Message::Join {
                sender_id: peer_id.into(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: storage_id.map(String::from),
                    is_ephemeral: storage_id.is_none(),
                }),
                supported_protocol_versions: Some(vec!["1".into()]),
            })
            .await;
        match client.recv().await {
            Some(Message::Peer { sender_id, peer_metadata, selected_protocol_version, .. }) => {
                assert_eq!(selected_protocol_version, "1");
                client.server_id = sender_id;
                client.server_storage_id = peer_metadata.storage_id;
                Ok(client)
            }
            other => Err(other),
        }
    }

    /// Connects without joining.
    pub async fn connect(url: &str, peer_id: &str) -> Client {
        Client::connect_with(url, peer_id, None).await.expect("websocket connects")
    }

    /// Connects without joining, with a bearer token; the HTTP status if the upgrade is refused.
    pub async fn connect_with(url: &str, peer_id: &str, token: Option<&str>) -> Result<Client, u16> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        Client::connect_headers(url, peer_id, &headers).await
    }

    /// Connects without joining, with these headers; the HTTP status if the upgrade is refused.
    pub async fn connect_headers(url: &str, peer_id: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => {
                Ok(Client { ws, peer_id: peer_id.into(), server_id: String::new(), server_storage_id: None })
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("websocket: {e}"),
        }
    }

    pub async fn send(&mut self, message: &Message) {
        self.send_raw(wire::encode(message)).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(Frame::Binary(bytes.into())).await.expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Frame::Text(text.into())).await.expect("send");
    }

    /// The next protocol message, `None` on close or after `WAIT`.
    pub async fn recv(&mut self) -> Option<Message> {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Message> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Frame::Binary(bytes)))) => {
                    return Some(wire::decode(&bytes).expect("server sends valid messages"));
                }
                Ok(Some(Ok(Frame::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Whether the server closes the connection (reading and dropping anything before).
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Frame::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Waits until the server ends the connection, reading the socket's bytes below the
    /// WebSocket layer so that no ping is ever answered (a silent peer); `false` if it is
    /// still open after `within`.
    pub async fn dropped_unanswered(&self, within: Duration) -> bool {
        let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() else { panic!("a plain TCP socket") };
        let mut buf = [0u8; 4096];
        let ended = async {
            loop {
                if tcp.readable().await.is_err() {
                    return;
                }
                match tcp.try_read(&mut buf) {
                    // The server let the socket go.
                    Ok(0) => return,
                    // Pings (and perhaps a close frame), left unanswered.
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                }
            }
        };
        tokio::time::timeout(within, ended).await.is_ok()
    }

    /// Whether the server ends the connection with a WebSocket close frame (a dropped TCP
    /// connection, or no end at all, is `None`), and the frame's code.
    pub async fn close_frame(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Frame::Close(frame)))) => return Some(frame.map_or(1005, |f| u16::from(f.code))),
                Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub fn doc_message(&self, document: DocumentId, data: Vec<u8>) -> DocMessage {
        DocMessage {
            sender_id: self.peer_id.clone(),
            target_id: self.server_id.clone(),
            document_id: document.to_string(),
            data,
        }
    }

    /// Syncs `doc` with the server until the server holds everything we hold and we hold
    /// everything it sent. Returns the bytes the server sent.
    pub async fn sync(&mut self, document: DocumentId, doc: &mut Automerge, state: &mut sync::State) -> usize {
        self.sync_with(document, doc, state, false).await.expect("sync completes")
    }

    /// As [`Client::sync`]; `Err` with what the server said if it answered with an error or
    /// `doc-unavailable`, or went silent.
    pub async fn sync_with(
        &mut self,
        document: DocumentId,
        doc: &mut Automerge,
        state: &mut sync::State,
        request: bool,
    ) -> Result<usize, String> {
        let mut received = 0;
        let mut first = true;
        for _ in 0..100 {
            if let Some(message) = doc.generate_sync_message(state) {
                let m = self.doc_message(document, message.encode());
                self.send(&if first && request { Message::Request(m) } else { Message::Sync(m) }).await;
                first = false;
            }
            if acknowledged(doc, state) && state.their_heads.is_some() {
                return Ok(received);
            }
            match self.recv().await {
                Some(Message::Sync(m)) => {
                    received += m.data.len();
                    let message = sync::Message::decode(&m.data).map_err(|e| e.to_string())?;
                    doc.receive_sync_message(state, message).map_err(|e| e.to_string())?;
                }
                Some(other) => return Err(format!("{other:?}")),
                None => return Err("server went silent".into()),
            }
        }
        Err("no convergence in 100 rounds".into())
    }
}

/// Whether the peer's last known heads are ours: it holds (durably) everything we hold.
pub fn acknowledged(doc: &Automerge, state: &sync::State) -> bool {
    let mut ours: Vec<ChangeHash> = doc.get_heads();
    let mut theirs = state.their_heads.clone().unwrap_or_default();
    ours.sort();
    theirs.sort();
    ours == theirs
}

/// The `hamlet-server` binary running as a child process, for tests that kill it.
pub struct Process {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `hamlet-server serve --insecure-open-sync` on a free loopback port with `extra`
    /// flags, and waits until it answers.
    pub fn spawn(extra: &[&str]) -> Process {
        let mut flags = vec!["--insecure-open-sync"];
        flags.extend_from_slice(extra);
        Process::spawn_secure(&flags)
    }

    /// Starts `hamlet-server serve` (tokens required) on a free loopback port.
    pub fn spawn_secure(extra: &[&str]) -> Process {
        use std::io::BufRead;
        let mut child = server_command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("server prints its address");
        // Keep reading what the server prints, so that it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Process { child, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        self.child.wait().expect("exits")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request from the loopback address `source` (127.0.0.N), so that tests can be
/// several clients.
pub async fn request_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("Content-Type", "application/json"));
    exchange(stream, method, path, &all, body.as_bytes().to_vec()).await.0
}
