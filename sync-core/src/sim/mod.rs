//! A deterministic simulation of phones syncing with a server, for tests and benchmarks.
//!
//! Phones run the real [`ClientSession`]; the server runs the real
//! [`Hub`](crate::hub::Hub) and [`DocumentActor`](crate::actor::DocumentActor)s, driven by an
//! executor over an in-memory store ([`server::SimServer`]) whose every request — load, sync
//! state, access check, commit — waits until the scheduler completes it. Between them, an
//! in-memory network. A seeded scheduler ([`World::chaos`]) picks what happens next: a frame
//! delivered, dropped, duplicated or delivered out of order, a request completed (a commit
//! possibly failing), a phone recording a response, connecting, or cut off, the server crashing
//! with requests outstanding (losing whatever was not committed) and restarting, a rogue phone
//! forging changes by an actor not its own, a phone asking for a ledger it is not assigned.
//! Each phone, on joining, announces its presence on every ledger it holds (an ephemeral
//! message, which the server relays to the ledger's other peers and never stores), those it
//! may not read included.
//!
//! [`World::check`] states the promises, checked after [`World::heal`] brought every phone
//! through clean syncs:
//!
//! 1. a reply that acknowledges a change leaves only after the commit that holds it (checked on
//!    every frame the server sends: every head a sync message or `remote-heads-changed` names is
//!    in the store);
//! 2. every change the server ever acknowledged to a phone is in the store, after every crash;
//! 3. refused input stores nothing and reaches no other phone (no change by the forged actor in
//!    the store or on an honest phone, no presence relayed from a phone about a ledger it may
//!    not read);
//! 4. once healed, the store, the server's documents and every honest phone hold the same heads,
//!    and the projector's rows equal a fresh projection of the stored ledgers;
//! 5. no document, nor an ephemeral message about one, is sent on a connection that may not
//!    read it (checked on every frame the server sends, and on what each phone heard).
//!
//! Every run writes its story as it goes ([`World::story`]); a failing run prints it with its
//! seed, and [`run`] with the same seed replays it.
//!
//! Why a module of sync-core rather than a crate of its own: the simulation drives the crate's
//! own state machines and nothing else, and the tests, the `simulate` example and (later) the
//! server's and the relay's tests share it. It is plain code like the rest of the crate (no
//! clock, no randomness but its seeded [`Rng`], no I/O).

pub mod phone;
pub mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use automerge::{Automerge, ChangeHash, ReadDoc};

use crate::actor::{ActorLimits, ConnId};
use crate::client::ClientSession;
use crate::docid::DocumentId;
use crate::wire::{self, Message};
use crate::{Campaign, UnitId, fixtures};
use phone::{SimPhone, forged_actor};
use server::{Output, SimAccess, SimServer, fresh_rows, hashes};

/// A small, seeded random source (SplitMix64): the simulation's only randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// How hostile the network and the machines are during [`World::chaos`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// A frame is lost.
    pub drop: f64,
    /// A frame arrives twice.
    pub duplicate: f64,
    /// A frame overtakes those sent before it.
    pub reorder: f64,
    /// A commit fails.
    pub commit_fails: f64,
    /// Weight of cutting a connection, beside the other events.
    pub cut: f64,
    /// Weight of crashing the server.
    pub crash: f64,
}

impl Faults {
    /// No fault at all.
    pub const NONE: Faults =
        Faults { drop: 0.0, duplicate: 0.0, reorder: 0.0, commit_fails: 0.0, cut: 0.0, crash: 0.0 };
}

impl Default for Faults {
    /// A rough network and a server that crashes now and then.
    fn default() -> Self {
        Faults { drop: 0.03, duplicate: 0.03, reorder: 0.05, commit_fails: 0.03, cut: 0.15, crash: 0.08 }
    }
}

/// What a phone does to a ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    Record,
    Forge,
    Amend(u32, usize),
}

#[derive(Clone, Debug)]
struct Packet {
    conn: ConnId,
    to_server: bool,
    bytes: Vec<u8>,
}

/// A broken promise, with the story that led to it.
#[derive(Debug)]
pub struct Failure {
    /// The seed that replays it.
    pub seed: u64,
    /// What broke.
    pub broken: Vec<String>,
    /// The story, one line a step.
    pub story: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} broke:", self.seed)?;
        for b in &self.broken {
            writeln!(f, "  - {b}")?;
        }
        writeln!(f, "story:")?;
        for line in &self.story {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "replay: HAMLET_SIM_SEED={} cargo test -p hamlet-sync-core --test simulation replay -- --nocapture",
            self.seed
        )
    }
}

/// Phones, a server and the network between them.
#[derive(Debug)]
pub struct World {
    seed: u64,
    rng: Rng,
    now: u64,
    campaign: Campaign,
    hamlets: Vec<UnitId>,
    /// The phones, by name.
    pub phones: BTreeMap<String, SimPhone>,
    /// The server.
    pub server: SimServer,
    net: Vec<Packet>,
    faults: Faults,
    crash_at_next_commit: bool,
    /// Whether every phone synced cleanly since the last event (convergence is then due).
    healed: bool,
    story: Vec<String>,
    broken: Vec<String>,
}

impl World {
    /// The usual cast: hamlets Thôn Đông and Thôn Tây; phones `an` and `binh` in Đông, `chi` in
    /// both, `dung` in Tây (holding an empty Đông it will ask for in vain), and `rogue` in Tây,
    /// which forges changes. `an` and `chi` subscribe to the heads of the server's storage.
    pub fn new(seed: u64) -> Self {
        Self::with_limits(seed, ActorLimits { compact_after: 4, ..ActorLimits::default() })
    }

    /// The usual cast, the actors bounded by `limits`.
    pub fn with_limits(seed: u64, limits: ActorLimits) -> Self {
        let campaign = fixtures::open_campaign();
        let dong = fixtures::hamlet("thon-dong");
        let tay = fixtures::hamlet("thon-tay");
        let hamlets = vec![dong.clone(), tay.clone()];
        let mut phones = BTreeMap::new();
        let cast: [(&str, u8, Vec<UnitId>, Vec<UnitId>); 5] = [
            ("an", 1, vec![dong.clone()], vec![dong.clone()]),
            ("binh", 2, vec![dong.clone()], vec![dong.clone()]),
            ("chi", 3, hamlets.clone(), hamlets.clone()),
            ("dung", 4, hamlets.clone(), vec![tay.clone()]),
            ("rogue", 5, vec![tay.clone()], vec![tay.clone()]),
        ];
        for (name, n, holds, assigned) in cast {
            let mut phone = SimPhone::new(name, n, &campaign, &holds, &assigned);
            phone.rogue = name == "rogue";
            phone.subscribes = matches!(name, "an" | "chi");
            phones.insert(name.to_owned(), phone);
        }
        let server = SimServer::new(campaign.clone(), &hamlets, limits);
        World {
            seed,
            rng: Rng::new(seed),
            now: 1_000,
            campaign,
            hamlets,
            phones,
            server,
            net: Vec::new(),
            faults: Faults::NONE,
            crash_at_next_commit: false,
            healed: false,
            story: Vec::new(),
            broken: Vec::new(),
        }
    }

    /// The story so far.
    pub fn story(&self) -> &[String] {
        &self.story
    }

    fn tell(&mut self, line: String) {
        self.story.push(format!("t={:>6}: {line}", self.now));
    }

    /// The ledger of `hamlet`.
    pub fn ledger(&self, hamlet: &str) -> DocumentId {
        DocumentId::for_ledger(&self.campaign.id, &fixtures::hamlet(hamlet))
    }

    fn hamlet_name(&self, id: &DocumentId) -> String {
        self.hamlets
            .iter()
            .find(|h| DocumentId::for_ledger(&self.campaign.id, h) == *id)
            .map_or_else(|| id.to_string(), |h| h.to_string())
    }

    /// `phone` records `n` responses in the ledger of `hamlet` (offline or not: if it is
    /// connected, it offers them at once).
    pub fn record(&mut self, phone: &str, hamlet: &str, n: usize) {
        let id = self.ledger(hamlet);
        for _ in 0..n {
            self.record_in(phone, id, false);
        }
    }

    /// The rogue phone records a response in the ledger of `hamlet` with an actor enrolled for
    /// nobody.
    pub fn forge(&mut self, phone: &str, hamlet: &str) {
        let id = self.ledger(hamlet);
        self.record_in(phone, id, true);
    }

    /// `phone` submits, edits or voids (`how` 0, 1, 2) its `n`th response in `hamlet`.
    pub fn amend(&mut self, phone: &str, hamlet: &str, n: u32, how: usize) {
        let id = self.ledger(hamlet);
        self.work(phone, id, Work::Amend(n, how));
    }

    fn record_in(&mut self, phone: &str, id: DocumentId, forged: bool) {
        self.work(phone, id, if forged { Work::Forge } else { Work::Record });
    }

    fn work(&mut self, phone: &str, id: DocumentId, work: Work) {
        self.healed = false;
        let level = self.rng.below(3);
        let hamlet = self.hamlet_name(&id);
        let Some(p) = self.phones.get_mut(phone) else { return };
        let forged = work == Work::Forge;
        let actor = if forged { forged_actor() } else { p.actor.clone() };
        let done = match work {
            Work::Amend(n, how) => p.amend(&self.campaign, id, n, how),
            Work::Record | Work::Forge => p.record(&self.campaign, id, &actor, level).map(|r| format!("response {r}")),
        };
        let Some(response) = done else { return };
        let online = p.session.is_some();
        let frames = match p.session.as_mut() {
            Some((_, session)) if session.server().is_some() => {
                let effects = session.poll(&p.docs);
                p.effects(effects)
            }
            _ => Vec::new(),
        };
        let conn = p.session.as_ref().map(|(c, _)| *c);
        let how = match (work, online) {
            (Work::Forge, _) => "forges, in an actor's name enrolled for nobody,",
            (Work::Record, true) => "records (online)",
            (Work::Record, false) => "records (offline)",
            (Work::Amend(..), true) => "(online)",
            (Work::Amend(..), false) => "(offline)",
        };
        self.tell(format!("{phone} {how} {response} in {hamlet}"));
        if let Some(conn) = conn {
            for bytes in frames {
                self.net.push(Packet { conn, to_server: true, bytes });
            }
        }
    }

    /// `phone` connects (nothing happens if it is connected, or the server is down).
    pub fn connect(&mut self, phone: &str) {
        self.healed = false;
        if !self.server.up {
            self.tell(format!("{phone} cannot reach the server (it is down)"));
            return;
        }
        let Some(p) = self.phones.get(phone) else { return };
        if p.session.is_some() {
            return;
        }
        let access = SimAccess { device: p.name.clone(), readable: p.assigned.clone(), actor: p.actor.clone() };
        let (conn, out) = self.server.open(access, self.now);
        let session = ClientSession::new(phone, format!("{phone}-store"));
        let join = session.join();
        if let Some(p) = self.phones.get_mut(phone) {
            p.session = Some((conn, session));
        }
        self.tell(format!("{phone} connects (connection {conn})"));
        self.net.push(Packet { conn, to_server: true, bytes: join });
        self.outputs(out);
    }

    fn phone_of(&self, conn: ConnId) -> Option<String> {
        self.phones.values().find(|p| p.session.as_ref().is_some_and(|(c, _)| *c == conn)).map(|p| p.name.clone())
    }

    /// Where the documents of the session on `conn` stand, for the story.
    /// Why a quiet connection closes: its sync is done, or the phone stops waiting.
    fn quiet_close(&mut self, conn: ConnId) {
        let done = self
            .phone_of(conn)
            .and_then(|p| self.phones[&p].session.as_ref().map(|(_, s)| s.is_complete()))
            .unwrap_or(false);
        let why = if done {
            "its sync is done".to_owned()
        } else {
            format!("nothing more comes (timeout); {}", self.progress_of(conn))
        };
        self.close(conn, &why);
    }

    fn progress_of(&self, conn: ConnId) -> String {
        let Some(phone) = self.phone_of(conn) else { return String::new() };
        let Some((_, session)) = self.phones[&phone].session.as_ref() else { return String::new() };
        if session.server().is_none() {
            return "no answer to its join".into();
        }
        let docs: Vec<String> = session
            .documents()
            .map(|(id, d)| {
                format!(
                    "{} {:?} after {} sent / {} received",
                    self.hamlet_name(id),
                    d.phase,
                    d.messages_sent,
                    d.messages_received
                )
            })
            .collect();
        docs.join(", ")
    }

    /// Closes `conn` on both sides.
    fn close(&mut self, conn: ConnId, why: &str) {
        let Some(phone) = self.phone_of(conn) else { return };
        if let Some(p) = self.phones.get_mut(&phone) {
            p.session = None;
        }
        self.net.retain(|p| p.conn != conn);
        self.tell(format!("{phone}'s connection {conn} closes: {why}"));
        if self.server.up {
            let out = self.server.closed(conn, self.now);
            self.outputs(out);
        }
    }

    fn outputs(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send(conn, message) => {
                    let phone = self.phone_of(conn).unwrap_or_default();
                    match &message {
                        Message::Error { message: text, .. } => self.tell(format!("the server tells {phone}: {text}")),
                        Message::DocUnavailable { document_id, .. } => {
                            let hamlet =
                                document_id.parse().map_or_else(|_| document_id.clone(), |d| self.hamlet_name(&d));
                            self.tell(format!("the server tells {phone} that {hamlet} is unavailable"))
                        }
                        _ => {}
                    }
                    self.net.push(Packet { conn, to_server: false, bytes: wire::encode(&message) })
                }
                Output::Close(conn, reason) => self.close(conn, &format!("the server closes it ({reason})")),
            }
        }
    }

    /// Crashes the server the next time it is asked to commit, before the commit is done.
    pub fn crash_at_next_commit(&mut self) {
        self.crash_at_next_commit = true;
    }

    /// Crashes the server now: what is not committed is lost, every connection breaks.
    pub fn crash(&mut self) {
        let waiting = self.server.pending.values().filter(|p| matches!(p, server::Pending::Commit(..))).count();
        self.tell(format!("the server crashes with {waiting} commit(s) requested and not done"));
        for p in self.phones.values_mut() {
            p.session = None;
        }
        self.net.clear();
        self.server.crash();
        self.check_acknowledged();
    }

    /// Starts the server again.
    pub fn restart(&mut self) {
        if !self.server.up {
            self.server.restart();
            self.tell("the server starts again".into());
        }
    }

    /// Every change the server acknowledged is in its store, whatever happened since.
    fn check_acknowledged(&mut self) {
        let mut broken = Vec::new();
        for p in self.phones.values() {
            for (id, acked) in &p.acked {
                let stored = hashes(&self.server.store.load(id));
                if let Some(h) = acked.iter().find(|h| !stored.contains(h)) {
                    broken.push(format!("{} was told {h} of {} is stored, and the store lost it", p.name, id));
                }
            }
        }
        self.broken.extend(broken);
    }

    /// Delivers the frame at `index` of the network (kept there too when `keep`).
    fn deliver(&mut self, index: usize, keep: bool) {
        let packet = if keep { self.net[index].clone() } else { self.net.remove(index) };
        if packet.to_server {
            if !self.server.up {
                return;
            }
            let out = self.server.frame(packet.conn, packet.bytes, self.now);
            self.outputs(out);
            return;
        }
        let Some(phone) = self.phone_of(packet.conn) else { return };
        let Some(p) = self.phones.get_mut(&phone) else { return };
        let Some((conn, session)) = p.session.as_mut() else { return };
        let conn = *conn;
        match wire::decode(&packet.bytes) {
            Ok(Message::RemoteHeadsChanged { .. }) => p.heads_heard += 1,
            Ok(Message::Ephemeral { document_id, .. }) => {
                if let Ok(id) = document_id.parse::<DocumentId>() {
                    *p.presence_heard.entry(id).or_default() += 1;
                }
            }
            _ => {}
        }
        match session.receive(&packet.bytes, &mut p.docs) {
            Ok(effects) => {
                let frames = p.effects(effects);
                let complete = p.session.as_ref().is_some_and(|(_, s)| s.is_complete());
                for bytes in frames {
                    self.net.push(Packet { conn, to_server: true, bytes });
                }
                if complete && !self.net.iter().any(|p| p.conn == conn) {
                    self.close(conn, "its sync is done");
                }
            }
            Err(e) => self.close(conn, &format!("the phone gives up ({e})")),
        }
    }

    /// Completes the request `id` waits for.
    fn complete(&mut self, id: DocumentId, fail: bool) {
        let is_commit = matches!(self.server.pending.get(&id), Some(server::Pending::Commit(..)));
        if is_commit && self.crash_at_next_commit {
            self.crash_at_next_commit = false;
            self.crash();
            return;
        }
        if is_commit {
            let hamlet = self.hamlet_name(&id);
            self.tell(format!("the server's commit for {hamlet} {}", if fail { "fails" } else { "is done" }));
        }
        let out = self.server.complete(id, fail, self.now);
        self.outputs(out);
    }

    /// Connections that can make no progress: nothing in flight either way and nothing the
    /// server waits for, yet the phone's sync is not done (a frame was lost). The phone gives
    /// up on them, as a real one does after its reply timeout.
    fn stalled(&self) -> Vec<ConnId> {
        if !self.server.pending.is_empty() {
            return Vec::new();
        }
        self.phones
            .values()
            .filter_map(|p| p.session.as_ref().map(|(c, _)| *c))
            .filter(|c| !self.net.iter().any(|p| p.conn == *c))
            .collect()
    }

    /// Runs without faults until nothing is in flight and nothing waits.
    pub fn run_until_quiet(&mut self) {
        for _ in 0..100_000 {
            self.now += 10;
            if !self.net.is_empty() {
                self.deliver(0, false);
                continue;
            }
            if let Some(id) = self.server.pending.keys().next().copied() {
                self.complete(id, false);
                continue;
            }
            let stalled = self.stalled();
            if stalled.is_empty() {
                return;
            }
            for conn in stalled {
                self.quiet_close(conn);
            }
        }
        self.broken.push("the world never went quiet".into());
    }

    /// `phone` connects and syncs until its session ends, without faults.
    pub fn sync(&mut self, phone: &str) {
        self.connect(phone);
        self.run_until_quiet();
    }

    /// `steps` random events, with `faults`.
    pub fn chaos(&mut self, steps: usize, faults: Faults) {
        self.healed = false;
        self.faults = faults;
        let names: Vec<String> = self.phones.keys().cloned().collect();
        for _ in 0..steps {
            self.now += 10;
            let pending: Vec<DocumentId> = self.server.pending.keys().copied().collect();
            let connected = self.phones.values().filter(|p| p.session.is_some()).count();
            let weights = [
                if self.net.is_empty() { 0.0 } else { 8.0 },
                if pending.is_empty() { 0.0 } else { 5.0 },
                1.0,
                1.5,
                if connected > 0 { faults.cut } else { 0.0 },
                if self.server.up { faults.crash } else { 0.0 },
                if self.server.up { 0.0 } else { 1.0 },
                0.2,
                0.3,
            ];
            let total: f64 = weights.iter().sum();
            let mut pick = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut choice = 0;
            for (i, w) in weights.iter().enumerate() {
                if pick < *w {
                    choice = i;
                    break;
                }
                pick -= w;
                choice = i;
            }
            match choice {
                0 => {
                    let index = if self.rng.chance(faults.reorder) { self.rng.below(self.net.len()) } else { 0 };
                    if self.rng.chance(faults.drop) {
                        let p = self.net.remove(index);
                        let dir = if p.to_server { "to the server" } else { "to the phone" };
                        self.tell(format!("the network loses a frame {dir} on connection {}", p.conn));
                    } else {
                        let keep = self.rng.chance(faults.duplicate);
                        if keep {
                            self.tell(format!("the network duplicates a frame on connection {}", self.net[index].conn));
                        } else if index > 0 {
                            self.tell(format!("a frame on connection {} overtakes others", self.net[index].conn));
                        }
                        self.deliver(index, keep);
                    }
                }
                1 => {
                    let id = pending[self.rng.below(pending.len())];
                    let fail = self.rng.chance(faults.commit_fails);
                    self.complete(id, fail);
                }
                2 => {
                    let honest: Vec<&String> = names.iter().filter(|n| !self.phones[*n].rogue).collect();
                    let phone = honest[self.rng.below(honest.len())].clone();
                    let assigned: Vec<DocumentId> = self.phones[&phone].assigned.iter().copied().collect();
                    let id = assigned[self.rng.below(assigned.len())];
                    let recorded = self.phones[&phone].recorded;
                    if recorded > 0 && self.rng.chance(0.4) {
                        let n = 1 + self.rng.below(recorded as usize) as u32;
                        let how = self.rng.below(3);
                        self.work(&phone, id, Work::Amend(n, how));
                    } else {
                        self.record_in(&phone, id, false);
                    }
                }
                3 => {
                    let offline: Vec<String> =
                        names.iter().filter(|n| self.phones[*n].session.is_none()).cloned().collect();
                    if !offline.is_empty() {
                        let phone = offline[self.rng.below(offline.len())].clone();
                        self.connect(&phone);
                    }
                }
                4 => {
                    let conns: Vec<ConnId> =
                        self.phones.values().filter_map(|p| p.session.as_ref().map(|(c, _)| *c)).collect();
                    let conn = conns[self.rng.below(conns.len())];
                    self.close(conn, "the link drops");
                }
                5 => self.crash(),
                6 => self.restart(),
                7 => self.forge("rogue", "thon-tay"),
                _ => {
                    let n = self.server.unload_idle();
                    if n > 0 {
                        self.tell(format!("the server lets {n} idle document(s) go from memory"));
                    }
                }
            }
            for conn in self.stalled() {
                self.quiet_close(conn);
            }
        }
        self.faults = Faults::NONE;
    }

    /// Ends the faults: the server runs, requests complete, and every phone syncs in turn,
    /// three times over (what one phone uploads in a pass reaches the others in the next).
    pub fn heal(&mut self) {
        self.faults = Faults::NONE;
        self.tell("the network heals".into());
        self.restart();
        self.run_until_quiet();
        let names: Vec<String> = self.phones.keys().cloned().collect();
        for _ in 0..3 {
            for phone in &names {
                self.sync(phone);
            }
        }
        self.healed = true;
    }

    /// Checks every promise (convergence only right after [`heal`](Self::heal)); `Err` with the
    /// story if one broke.
    pub fn check(&mut self) -> Result<(), Failure> {
        self.check_acknowledged();
        let mut broken = std::mem::take(&mut self.broken);
        broken.extend(self.server.violations.iter().cloned());
        broken.extend(self.server.leaks.iter().cloned());
        let forged = forged_actor();
        let ids: Vec<DocumentId> = self.hamlets.iter().map(|h| DocumentId::for_ledger(&self.campaign.id, h)).collect();
        for id in &ids {
            let stored = self.server.store.load(id);
            let name = self.hamlet_name(id);
            if stored.get_changes(&[]).iter().any(|c| *c.actor_id() == forged) {
                broken.push(format!("the store of {name} holds a forged change"));
            }
            let heads = sorted(stored.get_heads());
            if let Some(actor) = self.server.actors.get(id)
                && self.healed
                && sorted(actor.doc().get_heads()) != heads
            {
                broken.push(format!("the server's copy of {name} differs from its store"));
            }
            for p in self.phones.values().filter(|p| !p.rogue) {
                let Some(doc) = p.docs.get(id) else { continue };
                if doc.get_changes(&[]).iter().any(|c| *c.actor_id() == forged) {
                    broken.push(format!("{} holds a forged change in {name}", p.name));
                }
                if self.healed && p.assigned.contains(id) && sorted(doc.get_heads()) != heads {
                    broken.push(format!("{} and the store disagree on {name} once healed", p.name));
                }
                if !p.assigned.contains(id) && !doc.get_heads().is_empty() {
                    broken.push(format!("{} holds {name}, which it may not read", p.name));
                }
                if !p.assigned.contains(id) && p.presence_heard.get(id).is_some_and(|n| *n > 0) {
                    broken.push(format!("{} heard presence on {name}, which it may not read", p.name));
                }
                if !p.assigned.contains(id) && self.server.relayed_from(&p.name, id) > 0 {
                    broken.push(format!("{}'s presence on {name}, which it may not read, was relayed", p.name));
                }
            }
            let hamlet = self.hamlets.iter().find(|h| DocumentId::for_ledger(&self.campaign.id, h) == *id);
            if let Some(hamlet) = hamlet
                && self.healed
                && self.server.projector.rows(id) != fresh_rows(&self.campaign, hamlet, &stored)
            {
                broken.push(format!("the projection of {name} differs from a fresh one"));
            }
        }
        if broken.is_empty() { Ok(()) } else { Err(Failure { seed: self.seed, broken, story: self.story.clone() }) }
    }

    /// A summary of what the world holds, for stories' assertions.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for id in self.hamlets.iter().map(|h| DocumentId::for_ledger(&self.campaign.id, h)) {
            let stored = self.server.store.load(&id);
            let _ = write!(
                s,
                "{}: {} changes in {} chunk(s); ",
                self.hamlet_name(&id),
                stored.get_changes(&[]).len(),
                self.server.store.chunk_count(&id)
            );
        }
        s
    }

    /// Responses the stored ledger `id` holds.
    pub fn stored_responses(&self, id: &DocumentId) -> usize {
        let doc = self.server.store.load(id);
        let hamlet = self.hamlets.iter().find(|h| DocumentId::for_ledger(&self.campaign.id, h) == *id);
        hamlet
            .and_then(|h| crate::Ledger::open(doc, &self.campaign.id, h).ok())
            .and_then(|l| l.responses().ok())
            .map_or(0, |r| r.len())
    }

    /// Responses stored in every ledger.
    pub fn total_stored_responses(&self) -> usize {
        self.hamlets.iter().map(|h| self.stored_responses(&DocumentId::for_ledger(&self.campaign.id, h))).sum()
    }

    /// Heads of `phone`'s copy of `id`.
    pub fn phone_heads(&self, phone: &str, id: &DocumentId) -> Vec<ChangeHash> {
        self.phones.get(phone).and_then(|p| p.docs.get(id)).map(|d| sorted(d.get_heads())).unwrap_or_default()
    }

    /// Heads of the stored `id`.
    pub fn stored_heads(&self, id: &DocumentId) -> Vec<ChangeHash> {
        sorted(self.server.store.load(id).get_heads())
    }

    /// The audit trail.
    pub fn audit(&self) -> &[String] {
        &self.server.store.audit
    }

    /// Frames in flight that the server sent, decoded.
    pub fn in_flight_to_phones(&self) -> Vec<Message> {
        self.net.iter().filter(|p| !p.to_server).filter_map(|p| wire::decode(&p.bytes).ok()).collect()
    }
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Events in a random run before healing, unless said otherwise.
pub const STEPS: usize = 120;

/// One seeded random run: `steps` events with the default faults, then healing and the checks.
pub fn run(seed: u64, steps: usize) -> Result<World, Failure> {
    let mut world = World::new(seed);
    world.chaos(steps, Faults::default());
    world.heal();
    world.check()?;
    Ok(world)
}

/// Whether `doc` holds every change in `hashes`.
pub fn holds_all(doc: &Automerge, hashes: &BTreeSet<ChangeHash>) -> bool {
    hashes.iter().all(|h| doc.get_change_by_hash(h).is_some())
}
