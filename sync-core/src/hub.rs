//! The server's connections and peers, sans I/O: which peer is on which connection, who
//! subscribed to what, and which document each message goes to.
//!
//! A [`Hub`] holds every open connection of a server (each with its [`Connection`] state
//! machine and its [`Access`]) and every joined peer. The executor feeds it
//! [`HubEvent`]s — a frame read from a socket, a socket closed, a message a
//! [`DocumentActor`](crate::actor::DocumentActor) wants delivered, a device revoked — and
//! carries out the [`HubAction`]s it returns, in order: frames to send, connections to close,
//! audit entries to write, commands to hand to a document's actor.
//!
//! What the hub decides:
//!
//! - **Newest socket wins.** A peer's id and storage id are claims: the hub namespaces both by
//!   the device that authenticated the connection (`device/peer`, `-/peer` without one), so one
//!   device can neither take another's peer id nor read another's saved sync state. Within one
//!   namespace, a second connection joining with the same peer id replaces the first, which is
//!   closed.
//! - **Access.** A `request` or `sync` for a document the connection may not read is answered
//!   `doc-unavailable` — exactly as a document that does not exist — and audited; nothing of it
//!   reaches the document.
//! - **Bounds.** Frames over [`HubLimits::max_message_bytes`], ephemeral messages over
//!   [`HubLimits::max_ephemeral_bytes`], a device over its message rate or its number of
//!   connections: the connection is closed with a reason. At most
//!   [`HubLimits::subscriptions_per_peer`] storage ids per peer.
//! - **Closing.** Whatever closes a connection — the hub itself, a newer socket of its peer, a
//!   revocation, or the executor ([`HubEvent::Close`]) — closes it once, with an `error` saying
//!   why; frames that arrive while it closes are not read.
//! - **Routing.** Each document message becomes an [`ActorCommand`] for that document, in the
//!   order the connection received it; a closed connection becomes a
//!   [`Command::PeerGone`] for every document it synced.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::actor::{Command, ConnId};
use crate::docid::DocumentId;
use crate::session::{Connection, Event, Identity, Peer};
use crate::wire::{self, Message};

/// A command for a document's actor, with the rule type of the hub's [`Access`].
pub type ActorCommand<A> = Command<<A as Access>::Rule>;

/// What one connection may read and write (the executor's access rules; the hub only asks).
pub trait Access {
    /// How changes from this connection to one document are checked (see
    /// [`ActorAction::Check`](crate::actor::ActorAction::Check)).
    type Rule: Clone + std::fmt::Debug;

    /// Whether the connection may read `document` (or learn that it exists).
    fn can_read(&self, document: &DocumentId) -> bool;

    /// How its changes to `document` are checked; `None` takes them unchecked (open mode).
    fn write_rule(&self, document: &DocumentId) -> Option<Self::Rule>;

    /// Who the connection is, for the audit trail.
    fn who(&self) -> String;

    /// The device that authenticated the connection, if any: it namespaces peer and storage
    /// ids, and bounds connections and message rate.
    fn device(&self) -> Option<&str>;
}

/// The hub's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubLimits {
    /// Largest frame accepted.
    pub max_message_bytes: usize,
    /// Largest ephemeral payload relayed.
    pub max_ephemeral_bytes: usize,
    /// Storage ids one peer may subscribe to.
    pub subscriptions_per_peer: usize,
    /// Connections one device may hold open at once.
    pub connections_per_device: usize,
    /// Sustained messages a second from one device (bursts of ten seconds' worth).
    pub device_messages_per_second: u32,
}

impl Default for HubLimits {
    /// The server's defaults: 16 MiB frames, 64 KiB ephemeral messages, 16 subscriptions,
    /// 4 connections and 200 messages a second per device.
    fn default() -> Self {
        HubLimits {
            max_message_bytes: 16 * 1024 * 1024,
            max_ephemeral_bytes: 64 * 1024,
            subscriptions_per_peer: 16,
            connections_per_device: 4,
            device_messages_per_second: 200,
        }
    }
}

/// Something that happened to the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// A binary frame arrived on `conn`.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// The socket of `conn` closed (for whatever reason: the peer left, the executor dropped
    /// it, the hub asked for it).
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// A document's actor asks to send `message` to `peer`
    /// ([`ActorAction::Send`](crate::actor::ActorAction::Send)).
    Deliver {
        /// The peer as the hub knows it.
        peer: String,
        /// The message; its `targetId` is set to the peer's own id.
        message: Message,
        /// Whether it goes only if the peer subscribed to the server's storage.
        if_subscribed: bool,
    },
    /// Every connection of `device` closes (it was revoked).
    Revoked {
        /// The device.
        device: String,
    },
    /// The executor closes `conn` for a reason of its own (the connection does not read what
    /// it is sent, a document is too busy to queue more, a text frame, the device's
    /// assignments changed): the peer hears `reason` as an `error`, and nothing it sends
    /// afterwards is read. A connection already closing is left as it is.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: String,
    },
}

/// Something the hub counts or logs; it changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubIncident {
    /// A document was denied to a connection.
    Denied,
    /// A frame or ephemeral message over its bound.
    TooLarge,
    /// A device over its message rate or connection count.
    RateLimited,
    /// A protocol error.
    Protocol(String),
    /// Decoding a frame panicked.
    Panic,
}

/// What the executor must do, in order.
#[derive(Debug)]
pub enum HubAction<A: Access> {
    /// Send `message` on `conn`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: Message,
    },
    /// Send `error` (if any) on `conn`, then close it with `reason`; with no `error` (the peer
    /// sent `leave`) the connection just ends. The executor reports [`HubEvent::Closed`] once
    /// it is closed.
    Close {
        /// The connection.
        conn: ConnId,
        /// The `error` message to send first.
        error: Option<Message>,
        /// The close reason.
        reason: String,
    },
    /// Append to the audit trail before carrying out what follows.
    Audit {
        /// Who acted.
        who: String,
        /// What happened (`document.denied`).
        action: &'static str,
        /// The document.
        target: String,
        /// Details.
        detail: String,
    },
    /// Hand `command` to the actor of `document` (starting one if there is none).
    ToDocument {
        /// The document.
        document: DocumentId,
        /// The command.
        command: ActorCommand<A>,
    },
    /// Something to count or log.
    Note(HubIncident),
}

/// A token bucket: `rate` messages a second, bursts up to ten seconds' worth; time in ms.
#[derive(Clone, Debug)]
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: u64,
}

impl RateLimit {
    fn new(rate: u32, now: u64) -> Self {
        RateLimit { rate: f64::from(rate), tokens: f64::from(rate) * 10.0, last: now }
    }

    fn allow(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.last) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 10.0);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Conn<A> {
    access: A,
    session: Connection,
    /// The peer as the hub knows it (namespaced), once joined.
    peer: Option<Peer>,
    documents: BTreeSet<DocumentId>,
    rate: Option<RateLimit>,
    /// Whether the connection counts against its device's connections.
    counted: bool,
    closing: bool,
}

#[derive(Debug)]
struct PeerEntry {
    conn: ConnId,
    /// The peer id as the peer wrote it, for the `targetId` of what is sent to it.
    wire_id: String,
    device: Option<String>,
    subscriptions: BTreeSet<String>,
}

/// The server's connections and peers: see the [module docs](self).
#[derive(Debug)]
pub struct Hub<A: Access> {
    identity: Identity,
    limits: HubLimits,
    conns: BTreeMap<ConnId, Conn<A>>,
    peers: HashMap<String, PeerEntry>,
    device_conns: HashMap<String, usize>,
    next_conn: ConnId,
}

impl<A: Access> Hub<A> {
    /// A hub for a server that is `identity` on the wire.
    pub fn new(identity: Identity, limits: HubLimits) -> Self {
        Hub {
            identity,
            limits,
            conns: BTreeMap::new(),
            peers: HashMap::new(),
            device_conns: HashMap::new(),
            next_conn: 1,
        }
    }

    /// The server's identity on the wire.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Opens a connection with `access`. A device already holding as many connections as it
    /// may gets its new one closed at once (the returned actions say so).
    pub fn open(&mut self, access: A, now: u64) -> (ConnId, Vec<HubAction<A>>) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let mut out = Vec::new();
        let device = access.device().map(str::to_owned);
        let rate = device.as_ref().map(|_| RateLimit::new(self.limits.device_messages_per_second, now));
        let session = Connection::new(self.identity.clone());
        let mut closing = false;
        if let Some(device) = &device {
            let n = self.device_conns.entry(device.clone()).or_default();
            if *n >= self.limits.connections_per_device {
                out.push(HubAction::Note(HubIncident::RateLimited));
                let reason = format!(
                    "this device already has {} connections open; close one and retry",
                    self.limits.connections_per_device
                );
                out.push(self.close_with_error(conn, &session, &reason));
                closing = true;
            } else {
                *n += 1;
            }
        }
        self.conns.insert(
            conn,
            Conn {
                access,
                session,
                peer: None,
                documents: BTreeSet::new(),
                rate,
                counted: device.is_some() && !closing,
                closing,
            },
        );
        (conn, out)
    }

    /// The connections open now.
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    /// The peer joined on `conn` (as the hub knows it), if any.
    pub fn peer_of(&self, conn: ConnId) -> Option<&Peer> {
        self.conns.get(&conn).and_then(|c| c.peer.as_ref())
    }

    /// The access of `conn`, while it is open.
    pub fn access_of(&self, conn: ConnId) -> Option<&A> {
        self.conns.get(&conn).map(|c| &c.access)
    }

    /// Whether `peer` subscribed to the heads of `storage`.
    pub fn subscribed(&self, peer: &str, storage: &str) -> bool {
        self.peers.get(peer).is_some_and(|p| p.subscriptions.contains(storage))
    }

    /// Takes one event; `now` is in milliseconds (for rate limits).
    pub fn handle(&mut self, event: HubEvent, now: u64) -> Vec<HubAction<A>> {
        let mut out = Vec::new();
        match event {
            HubEvent::Frame { conn, bytes } => self.frame(conn, &bytes, now, &mut out),
            HubEvent::Closed { conn } => self.closed(conn, &mut out),
            HubEvent::Deliver { peer, mut message, if_subscribed } => {
                let Some(entry) = self.peers.get(&peer) else { return out };
                if if_subscribed && !entry.subscriptions.contains(&self.identity.storage_id) {
                    return out;
                }
                message.set_target_id(&entry.wire_id);
                out.push(HubAction::Send { conn: entry.conn, message });
            }
            HubEvent::Close { conn, reason } => {
                if self.conns.get(&conn).is_some_and(|c| !c.closing) {
                    self.close(conn, &reason, &mut out);
                }
            }
            HubEvent::Revoked { device } => {
                let conns: BTreeSet<ConnId> =
                    self.peers.values().filter(|p| p.device.as_deref() == Some(&device)).map(|p| p.conn).collect();
                for conn in conns {
                    self.close(conn, "device revoked", &mut out);
                }
            }
        }
        out
    }

    fn close_with_error(&self, conn: ConnId, session: &Connection, reason: &str) -> HubAction<A> {
        let error = Message::Error {
            sender_id: Some(self.identity.peer_id.clone()),
            target_id: session.peer().map(|p| p.peer_id.clone()),
            message: reason.to_owned(),
        };
        HubAction::Close { conn, error: Some(error), reason: reason.to_owned() }
    }

    fn close(&mut self, conn: ConnId, reason: &str, out: &mut Vec<HubAction<A>>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
            let action = self.close_with_error(conn, &self.conns[&conn].session, reason);
            out.push(action);
        }
    }

    fn frame(&mut self, conn: ConnId, bytes: &[u8], now: u64, out: &mut Vec<HubAction<A>>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closing {
            return;
        }
        if c.rate.as_mut().is_some_and(|r| !r.allow(now)) {
            out.push(HubAction::Note(HubIncident::RateLimited));
            self.close(conn, "too many messages; slow down and reconnect", out);
            return;
        }
        if bytes.len() > self.limits.max_message_bytes {
            out.push(HubAction::Note(HubIncident::TooLarge));
            let reason = format!(
                "message of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                self.limits.max_message_bytes
            );
            self.close(conn, &reason, out);
            return;
        }
        // Decoding is ours and should not panic; if it ever does, this connection ends and no
        // other.
        let session = &mut c.session;
        let received = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.receive(bytes)));
        let Ok(received) = received else {
            out.push(HubAction::Note(HubIncident::Panic));
            self.close(conn, "the server could not read this message", out);
            return;
        };
        match received {
            Ok(event) => self.event(conn, event, out),
            Err(e) => {
                out.push(HubAction::Note(HubIncident::Protocol(e.to_string())));
                if e.closes() {
                    self.close(conn, &e.to_string(), out);
                } else {
                    let message = c.session.error_message(&e);
                    out.push(HubAction::Send { conn, message });
                }
            }
        }
    }

    fn event(&mut self, conn: ConnId, event: Event, out: &mut Vec<HubAction<A>>) {
        if let Event::Joined { peer, reply } = event {
            let known = self.register(conn, &peer, out);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.peer = Some(known);
            }
            out.push(HubAction::Send { conn, message: reply });
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(peer) = c.peer.clone() else { return };
        match event {
            Event::Joined { .. } => {}
            Event::Sync { document, data, is_request } => {
                if !c.access.can_read(&document) {
                    // Exactly what a document that does not exist gets.
                    out.push(HubAction::Note(HubIncident::Denied));
                    out.push(HubAction::Audit {
                        who: c.access.who(),
                        action: "document.denied",
                        target: document.to_string(),
                        detail: String::new(),
                    });
                    let message = Message::DocUnavailable {
                        sender_id: self.identity.peer_id.clone(),
                        target_id: c.session.peer().map_or_else(String::new, |p| p.peer_id.clone()),
                        document_id: document.to_string(),
                    };
                    out.push(HubAction::Send { conn, message });
                    return;
                }
                c.documents.insert(document);
                let rule = c.access.write_rule(&document);
                let who = c.access.who();
                out.push(HubAction::ToDocument {
                    document,
                    command: Command::Sync { peer, conn, data, is_request, rule, who },
                });
            }
            Event::Ephemeral { document, message, dedup } if c.access.can_read(&document) => {
                let size = match &message {
                    Message::Ephemeral { data, .. } => data.len(),
                    _ => 0,
                };
                let max = self.limits.max_ephemeral_bytes;
                if size > max {
                    out.push(HubAction::Note(HubIncident::TooLarge));
                    self.close(conn, &format!("ephemeral message of {size} bytes; at most {max} are relayed"), out);
                    return;
                }
                out.push(HubAction::ToDocument {
                    document,
                    command: Command::Ephemeral { from: peer.peer_id, message, dedup },
                });
            }
            Event::Subscription { add, remove } => self.subscribe(&peer.peer_id, &add, &remove),
            Event::Leave => {
                c.closing = true;
                out.push(HubAction::Close { conn, error: None, reason: "leave".into() });
            }
            Event::Ephemeral { .. } | Event::Unavailable { .. } | Event::Nothing => {}
        }
    }

    /// Binds the peer that joined on `conn`; returns it as the hub knows it.
    fn register(&mut self, conn: ConnId, peer: &Peer, out: &mut Vec<HubAction<A>>) -> Peer {
        let device = self.conns.get(&conn).and_then(|c| c.access.device().map(str::to_owned));
        let space = device.as_deref().unwrap_or("-");
        let key = format!("{space}/{}", peer.peer_id);
        let storage_id = peer.storage_id.as_ref().map(|s| format!("{space}/{s}"));
        let entry = PeerEntry { conn, wire_id: peer.peer_id.clone(), device, subscriptions: BTreeSet::new() };
        if let Some(old) = self.peers.insert(key.clone(), entry).filter(|o| o.conn != conn)
            && let Some(c) = self.conns.get_mut(&old.conn)
            && !c.closing
        {
            c.closing = true;
            let reason = "replaced by a newer connection of the same peer";
            let action = self.close_with_error(old.conn, &self.conns[&old.conn].session, reason);
            out.push(action);
        }
        Peer { peer_id: key, storage_id, is_ephemeral: peer.is_ephemeral }
    }

    fn subscribe(&mut self, peer: &str, add: &[String], remove: &[String]) {
        if let Some(entry) = self.peers.get_mut(peer) {
            for storage in remove {
                entry.subscriptions.remove(storage);
            }
            for storage in add.iter().filter(|s| s.len() <= wire::MAX_ID_BYTES) {
                if entry.subscriptions.len() >= self.limits.subscriptions_per_peer {
                    break;
                }
                entry.subscriptions.insert(storage.clone());
            }
        }
    }

    /// Forgets `conn`, and tells the documents its peer synced.
    fn closed(&mut self, conn: ConnId, out: &mut Vec<HubAction<A>>) {
        let Some(c) = self.conns.remove(&conn) else { return };
        if let Some(device) = c.access.device()
            && c.counted
            && let Some(n) = self.device_conns.get_mut(device)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.device_conns.remove(device);
            }
        }
        let Some(peer) = c.peer else { return };
        if self.peers.get(&peer.peer_id).is_some_and(|p| p.conn == conn) {
            self.peers.remove(&peer.peer_id);
        }
        for document in c.documents {
            out.push(HubAction::ToDocument { document, command: Command::PeerGone { peer: peer.clone(), conn } });
        }
    }
}
