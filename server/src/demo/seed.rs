//! The demo district, seeded once by `hamlet-server serve --demo` so that a newcomer sees a
//! living dashboard at once: a province with a district whose 15 communes are about to be merged
//! into 5, about 8 hamlets or residential groups each, a campaign evaluating 20 cadres, and
//! collectors' phones that recorded offline for days and then synced — some in the same hamlet
//! at once, so a few answers conflict; a few responses voided, a few edited after submission,
//! a few meeting tallies, some hamlets with nothing yet and some phones silent for days.
//!
//! Nothing is written into the projection's tables directly: the units and the campaign go
//! through the same functions as the API, and each simulated [`Phone`] builds its ledgers with
//! sync-core (`Ledger::create` with its own actor id) and syncs them through the hub, frame by
//! frame as a WebSocket connection would — storage, projection and all — only the socket is
//! skipped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hamlet_sync_core::actor::ConnId;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::{ActorId, Automerge, ChangeHash};
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::session::decode_heads;
use hamlet_sync_core::wire::{self, DocMessage, Message};
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, CampaignId, CampaignState, Day, DocumentId, EvaluationScope, HamletScope, Label,
    Ledger, LedgerError, Level, NewResponse, PersonId, Post, ResponseId, Schedule, Subject, SubjectCategory, Tally,
    Threshold, UnitId, fixtures,
};

use super::DemoRng;
use crate::district::{Actor, District, DistrictError, campaigns};
use crate::sync::access::SyncAccess;
use crate::sync::hub::{Hub, Outbound};

/// The demo campaign's id.
pub const DEMO_CAMPAIGN: &str = "tin-nhiem-2026";

/// Why the demo could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A ledger operation failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The district refused something.
    #[error("district: {0}")]
    District(#[from] DistrictError),
    /// The hub did not answer a sync as expected.
    #[error("sync of {0} did not complete: {1}")]
    Sync(String, String),
    /// A generated id is invalid (a bug in the demo).
    #[error("invalid demo id {0:?}")]
    Id(String),
}

fn id<T: std::str::FromStr>(text: &str) -> Result<T, DemoError> {
    text.parse().map_err(|_| DemoError::Id(text.to_owned()))
}

/// A simulated phone syncing through the hub in this process, as a WebSocket connection would,
/// without the socket.
pub struct Phone {
    hub: Arc<Hub>,
    /// The peer id the phone joined with.
    peer_id: String,
    conn: ConnId,
    rx: crate::sync::outbox::Inbox,
    states: HashMap<DocumentId, sync::State>,
    /// Messages the server pushed about ledgers other than the one being synced.
    held: HashMap<String, Vec<Vec<u8>>>,
    /// When the phone's messages are received (unix ms), if not now: the demo's phones sync
    /// on past days.
    at: Option<i64>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone").field("peer", &self.peer_id).finish_non_exhaustive()
    }
}

/// How long a phone waits for the server's next message.
const WAIT: Duration = Duration::from_secs(20);
/// How long a phone waits before checking whether the server already holds what it holds.
const QUIET: Duration = Duration::from_millis(250);

impl Phone {
    /// Connects a phone with this peer id and storage id (its device) to the hub, in open
    /// mode (the demo's phones are not enrolled), and joins.
    pub fn connect(hub: &Arc<Hub>, peer_id: &str, storage_id: &str) -> Phone {
        // A simulated phone reads everything the server sends: its queue needs no bound.
        let (tx, mut rx) = crate::sync::outbox::outbox(usize::MAX >> 8, usize::MAX >> 8);
        let conn = hub.open(Arc::new(SyncAccess::Open), tx);
        let join = Message::Join {
            sender_id: peer_id.to_owned(),
            peer_metadata: Some(wire::PeerMetadata { storage_id: Some(storage_id.to_owned()), is_ephemeral: false }),
            supported_protocol_versions: Some(vec![wire::PROTOCOL_VERSION.into()]),
        };
        hub.frame_now(conn, wire::encode(&join), hub.store().now_ms());
        // The server's `peer` answer; nothing else can come before it.
        let _ = rx.try_recv();
        Phone {
            hub: hub.clone(),
            peer_id: peer_id.to_owned(),
            conn,
            rx,
            states: HashMap::new(),
            held: HashMap::new(),
            at: None,
        }
    }

    /// Makes the phone's next syncs happen at `at` (unix ms), as if on that day: the district
    /// records it as the phone's sync time.
    pub fn sync_at(&mut self, at: i64) {
        self.at = Some(at);
    }

    /// Syncs `ledger` with the server until each holds what the other holds (the server having
    /// stored it).
    pub async fn sync(&mut self, ledger: &mut Ledger) -> Result<(), DemoError> {
        let document = ledger.id();
        self.sync_document(document, ledger.doc_mut()).await
    }

    /// Syncs any document (a campaign document, say) the same way.
    pub async fn sync_document(&mut self, document: DocumentId, doc: &mut Automerge) -> Result<(), DemoError> {
        let mut state = self.states.remove(&document).unwrap_or_default();
        let result = self.sync_doc(document, doc, &mut state).await;
        self.states.insert(document, state);
        result
    }

    /// Takes the messages the server pushed since the phone last looked (kept for the next sync
    /// of their documents); returns how many there were.
    pub fn receive_pushed(&mut self) -> usize {
        let mut n = 0;
        while let Some(Outbound::Frame(bytes)) = self.rx.try_recv() {
            n += self.hold(bytes);
        }
        n
    }

    /// Waits until the server pushes a sync message, then takes it and whatever else waits, as
    /// [`receive_pushed`](Self::receive_pushed); 0 if the connection closes first.
    pub async fn wait_pushed(&mut self) -> usize {
        loop {
            match self.rx.recv().await {
                Some(Outbound::Frame(bytes)) => {
                    if self.hold(bytes) > 0 {
                        return 1 + self.receive_pushed();
                    }
                }
                Some(Outbound::Close { .. }) | None => return 0,
            }
        }
    }

    /// Keeps a pushed sync message for the next sync of its document: 1 if it was one.
    fn hold(&mut self, bytes: Vec<u8>) -> usize {
        match wire::decode(&bytes) {
            Ok(Message::Sync(DocMessage { document_id, .. })) => {
                self.held.entry(document_id).or_default().push(bytes);
                1
            }
            _ => 0,
        }
    }

    async fn sync_doc(
        &mut self,
        document: DocumentId,
        ledger: &mut Automerge,
        state: &mut sync::State,
    ) -> Result<(), DemoError> {
        let failed = |why: String| DemoError::Sync(document.to_string(), why);
        for frame in self.held.remove(&document.to_string()).unwrap_or_default() {
            self.apply(document, ledger, state, &frame).map_err(failed)?;
        }
        for _ in 0..200 {
            // What the server pushed meanwhile (another phone's changes) comes first.
            while let Some(outbound) = self.rx.try_recv() {
                match outbound {
                    Outbound::Frame(bytes) => self.apply(document, ledger, state, &bytes).map_err(failed)?,
                    Outbound::Close { reason, .. } => return Err(failed(format!("closed: {reason}"))),
                }
            }
            if let Some(message) = ledger.generate_sync_message(state) {
                // A fresh queue per document is never busy at the demo's pace; were it, the
                // connection would close and the loop below report it.
                let frame = wire::encode(&Message::Sync(DocMessage {
                    sender_id: self.peer_id.clone(),
                    target_id: self.hub.identity().peer_id.clone(),
                    document_id: document.to_string(),
                    data: message.encode(),
                }));
                let at = self.at.unwrap_or_else(|| self.hub.store().now_ms());
                self.hub.frame(self.conn, frame, at).await;
            }
            let mut ours: Vec<ChangeHash> = ledger.get_heads();
            let mut theirs = state.their_heads.clone().unwrap_or_default();
            ours.sort();
            theirs.sort();
            if state.their_heads.is_some() && ours == theirs {
                return Ok(());
            }
            let frame = match self.next_frame(document, &ours).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Ok(()),
                Err(why) => return Err(failed(why)),
            };
            self.apply(document, ledger, state, &frame).map_err(failed)?;
        }
        Err(failed("no convergence".into()))
    }

    fn apply(
        &mut self,
        document: DocumentId,
        ledger: &mut Automerge,
        state: &mut sync::State,
        frame: &[u8],
    ) -> Result<(), String> {
        match wire::decode(frame) {
            Ok(Message::Sync(DocMessage { document_id, data, .. })) if document_id == document.to_string() => {
                let message = sync::Message::decode(&data).map_err(|e| e.to_string())?;
                ledger.receive_sync_message(state, message).map_err(|e| e.to_string())
            }
            // Pushes about the phone's other ledgers wait until it syncs them.
            Ok(Message::Sync(DocMessage { document_id, .. })) => {
                self.held.entry(document_id).or_default().push(frame.to_vec());
                Ok(())
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }

    /// The server's next message; `None` when the server fell quiet holding exactly our heads
    /// (automerge's protocol does not confirm a state the peer itself announced last).
    async fn next_frame(&mut self, document: DocumentId, ours: &[ChangeHash]) -> Result<Option<Vec<u8>>, String> {
        let started = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout(QUIET, self.rx.recv()).await {
                Ok(Some(Outbound::Frame(bytes))) => return Ok(Some(bytes)),
                Ok(Some(Outbound::Close { reason, .. })) => return Err(format!("closed: {reason}")),
                Ok(None) => return Err("disconnected".into()),
                Err(_) => {
                    let stored = self.hub.store().documents().await.map_err(|e| e.to_string())?;
                    let key = document.to_string();
                    let heads = stored.iter().find(|d| d.id == key).and_then(|d| decode_heads(&d.heads));
                    if let Some(mut heads) = heads {
                        heads.sort();
                        if heads == ours {
                            return Ok(None);
                        }
                    }
                    if started.elapsed() > WAIT {
                        return Err("the server went silent".into());
                    }
                }
            }
        }
    }

    /// Leaves, as a closed socket does.
    pub fn disconnect(self) {
        self.hub.closed(self.conn);
    }
}

/// Seeds the demo in the background once the server runs, and prints where to look.
pub fn seed_in_background(district: District, addr: Option<SocketAddr>) {
    tokio::spawn(async move {
        let url = addr.map_or_else(|| "the server's address".to_owned(), |a| format!("http://{a}/"));
        match seed_once(&district).await {
            Ok(true) => println!("Demo district ready: {url}"),
            Ok(false) => println!("Demo district already seeded: {url}"),
            Err(e) => {
                tracing::error!(error = %e, "seeding the demo failed");
                println!("Demo seeding FAILED: {e}");
            }
        }
    });
}

const COMMUNES: [&str; 15] = [
    "Xã An Bình",
    "Xã An Hòa",
    "Xã Bình Minh",
    "Xã Đông Sơn",
    "Xã Hòa Lạc",
    "Xã Hưng Đạo",
    "Xã Lạc Long",
    "Xã Minh Khai",
    "Xã Nam Tiến",
    "Xã Phú Xuân",
    "Xã Quang Trung",
    "Xã Tân Lập",
    "Thị trấn Thanh Bình",
    "Xã Thượng Đức",
    "Xã Yên Phú",
];
const MERGED: [&str; 5] = ["Xã An Hòa Mới", "Xã Đông Hưng", "Xã Lạc Minh", "Xã Phú Quang", "Xã Thanh Yên"];
const HAMLET_NAMES: [&str; 10] = [
    "Thôn Đông",
    "Thôn Tây",
    "Thôn Nam",
    "Thôn Bắc",
    "Thôn Trung",
    "Thôn Thượng",
    "Thôn Hạ",
    "Thôn Đình",
    "Thôn Chùa",
    "Thôn Mới",
];
const FAMILY: [&str; 10] = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Ngô"];
const MIDDLE: [&str; 6] = ["Văn", "Thị", "Đức", "Minh", "Thanh", "Hữu"];
const GIVEN: [&str; 12] = ["An", "Bình", "Cường", "Dung", "Giang", "Hà", "Hùng", "Lan", "Long", "Mai", "Nam", "Thảo"];
/// The posts the demo evaluates, by commune (index into [`COMMUNES`]): a party secretary in
/// every commune, chairs and vice-chairs of some People's Committees, a council chair, a front
/// chair, and a few civil servants and non-specialised workers. The chair of the second commune
/// is evaluated by the whole commune; everyone else where they live.
fn demo_posts() -> Vec<(usize, Post, SubjectCategory, &'static str)> {
    let mut posts = Vec::new();
    for c in 0..COMMUNES.len() {
        posts.push((c, Post::BiThu, SubjectCategory::CanBo, "Bí thư Đảng ủy"));
        match c % 3 {
            1 => posts.push((c, Post::ChuTichUbnd, SubjectCategory::CanBo, "Chủ tịch UBND")),
            2 if c < 12 => posts.push((c, Post::PhoChuTichUbnd, SubjectCategory::CanBo, "Phó Chủ tịch UBND")),
            _ => {}
        }
        match c {
            0 => posts.push((c, Post::Other, SubjectCategory::CongChuc, "Công chức Tư pháp - Hộ tịch")),
            3 => posts.push((c, Post::ChuTichHdnd, SubjectCategory::CanBo, "Chủ tịch HĐND")),
            6 => posts.push((c, Post::ChuTichMttq, SubjectCategory::CanBo, "Chủ tịch Ủy ban MTTQ")),
            9 => posts.push((c, Post::Other, SubjectCategory::CongChuc, "Công chức Địa chính - Xây dựng")),
            12 => posts.push((c, Post::Other, SubjectCategory::KhongChuyenTrach, "Phó Chủ tịch Hội Nông dân")),
            14 => posts.push((c, Post::Other, SubjectCategory::KhongChuyenTrach, "Phó Bí thư Đoàn Thanh niên")),
            _ => {}
        }
    }
    posts
}

/// "xã An Phú", "thị trấn Thanh Bình": a commune's name as it follows a post.
fn after_post(commune: &str) -> String {
    match commune.split_once(' ') {
        Some(("Xã", rest)) => format!("xã {rest}"),
        Some(("Thị", rest)) => format!("thị {rest}"),
        Some(("Phường", rest)) => format!("phường {rest}"),
        _ => commune.to_owned(),
    }
}

const COMMENTS: [&str; 8] = [
    "Cán bộ gần dân, giải quyết công việc nhanh.",
    "Cần sâu sát cơ sở hơn.",
    "Tốt, nhiệt tình với bà con.",
    "Xử lý đơn thư còn chậm.",
    "Đề nghị công khai thu chi minh bạch hơn.",
    "Làm việc có trách nhiệm.",
    "Ít xuống thôn, chưa nắm được tình hình.",
    "Đồng ý tiếp tục tín nhiệm.",
];

fn person(rng: &mut DemoRng) -> String {
    let pick = |rng: &mut DemoRng, list: &[&str]| list[rng.below(list.len() as u64) as usize].to_owned();
    format!("{} {} {}", pick(rng, &FAMILY), pick(rng, &MIDDLE), pick(rng, &GIVEN))
}

/// The demo's units as a CSV file (so the seed goes through the import as staff would).
pub fn units_csv(today: Day, rng: &mut DemoRng) -> (String, Vec<(String, String, usize)>) {
    let merger = today.plus_days(45);
    let mut csv = String::from("id,name,level,parent,valid_from,valid_until,merged_from,merged_into\n");
    csv.push_str("tinh-son-ha,Tỉnh Sơn Hà,province,,2000-01-01,,,\n");
    csv.push_str("huyen-thanh-binh,Huyện Thanh Bình,district,tinh-son-ha,2000-01-01,,,\n");
    let mut hamlets = Vec::new();
    for (m, name) in MERGED.iter().enumerate() {
        let from: Vec<String> = (0..3).map(|k| format!("xa-{:02}", m * 3 + k + 1)).collect();
        let _ = writeln!(csv, "xa-moi-{},{name},commune,tinh-son-ha,{merger},,{},", m + 1, from.join(";"));
    }
    for (c, name) in COMMUNES.iter().enumerate() {
        let commune = format!("xa-{:02}", c + 1);
        let into = format!("xa-moi-{}", c / 3 + 1);
        let _ = writeln!(csv, "{commune},{name},commune,huyen-thanh-binh,2000-01-01,{merger},,{into}");
        let count = 6 + rng.below(5) as usize;
        let town = name.starts_with("Thị trấn");
        for (h, thon) in HAMLET_NAMES.iter().enumerate().take(count) {
            let hamlet = format!("{commune}-{}{:02}", if town { "to" } else { "thon" }, h + 1);
            let hamlet_name = if town { format!("Tổ dân phố {}", h + 1) } else { (*thon).to_owned() };
            let _ = writeln!(csv, "{hamlet},{hamlet_name},hamlet,{commune},2000-01-01,,,");
            hamlets.push((hamlet, commune.clone(), c));
        }
    }
    (csv, hamlets)
}

/// The demo campaign, a draft (scoped: schema version 2), over `hamlets`: each cadre lives in a
/// hamlet of their commune and is evaluated there, but the chair of the second commune, whom
/// every hamlet of that commune evaluates.
pub fn campaign(today: Day, hamlets: &[(String, String, usize)], rng: &mut DemoRng) -> Result<Campaign, DemoError> {
    let mut subjects = Vec::new();
    for (i, (c, post, category, title)) in demo_posts().into_iter().enumerate() {
        let commune = format!("xa-{:02}", c + 1);
        let homes: Vec<&String> = hamlets.iter().filter(|(_, hc, _)| *hc == commune).map(|(h, _, _)| h).collect();
        let home = homes.get(rng.below(homes.len() as u64) as usize).map_or_else(String::new, |h| (*h).clone());
        subjects.push(Subject {
            id: id(&format!("can-bo-{:02}", i + 1))?,
            name: person(rng),
            position: format!("{title} {}", after_post(COMMUNES[c])),
            commune: id(&commune)?,
            home_hamlet: id(&home)?,
            category: Some(category),
            post: Some(post),
            scope: if c == 1 && post == Post::ChuTichUbnd { EvaluationScope::Commune } else { EvaluationScope::Home },
        });
    }
    let scope = hamlets
        .iter()
        .map(|(h, _, _)| {
            Ok(HamletScope { hamlet: id(h)?, expected_voters: 150 + rng.below(300) as u32, ballot: Vec::new() })
        })
        .collect::<Result<Vec<_>, DemoError>>()?;
    Ok(Campaign {
        schema_version: hamlet_sync_core::CAMPAIGN_VERSION,
        id: id(DEMO_CAMPAIGN)?,
        name: Label::new(
            "Lấy ý kiến tín nhiệm cán bộ chủ chốt cấp xã năm 2026",
            "2026 confidence survey of key commune cadres",
        ),
        form: fixtures::form(),
        subjects,
        hamlets: scope,
        schedule: Schedule { opens_on: today.plus_days(-12), closes_on: today.plus_days(8) },
        thresholds: Threshold::defaults(),
        max_responses_per_day: hamlet_sync_core::DEFAULT_MAX_RESPONSES_PER_DAY,
        sealing: None,
        state: CampaignState::Draft,
    })
}

/// Seeds the demo unless it is there; returns whether it seeded.
pub async fn seed_once(district: &District) -> Result<bool, DemoError> {
    let campaign_id: CampaignId = id(DEMO_CAMPAIGN)?;
    if district.catalog().campaign(&campaign_id).await.map_err(DistrictError::from)?.is_some() {
        return Ok(false);
    }
    let actor = Actor { name: "demo".into(), role: "admin".into() };
    let now = district.store().now_ms();
    let today = Day::from_unix_seconds(now / 1000);
    let mut rng = DemoRng::new(2026);
    let (units, hamlets) = units_csv(today, &mut rng);
    campaigns::import_units_text(district, &actor, &units).await?;
    let campaign = campaign(today, &hamlets, &mut rng)?;
    campaigns::create(district, &actor, campaign.clone()).await?;
    let campaign = campaigns::transition(district, &actor, DEMO_CAMPAIGN, CampaignState::Open).await?;
    let simulated = simulate_phones(district, &campaign, &hamlets, now, &mut rng).await;
    simulated?;
    district.projector.flush().await;
    Ok(true)
}

/// How the residents of a hamlet lean towards each subject: the chance (in 20ths) of each level.
fn low_share(subject: usize) -> u32 {
    match subject {
        6 => 11,  // more than half low in most places
        13 => 15, // two thirds low
        2 | 17 => 5,
        _ => 2,
    }
}

fn leaning(subject: usize, rng: &mut DemoRng) -> Level {
    let low_share = u64::from(low_share(subject));
    let roll = rng.below(20);
    if roll < low_share {
        Level::TinNhiemThap
    } else if roll < low_share + (20 - low_share) / 2 {
        Level::TinNhiem
    } else {
        Level::TinNhiemCao
    }
}

async fn simulate_phones(
    district: &District,
    campaign: &Campaign,
    hamlets: &[(String, String, usize)],
    now: i64,
    rng: &mut DemoRng,
) -> Result<(), DemoError> {
    let question = fixtures::question("tin-nhiem");
    let comment = fixtures::question("y-kien");
    let day_ms = 86_400_000;
    let mut phone_no = 0u64;
    // Only the hamlets in the campaign: those where someone on the list is evaluated.
    let in_campaign = hamlets.iter().filter(|(h, _, _)| h.parse().is_ok_and(|h| campaign.has_hamlet(&h)));
    for (n, (hamlet, _, commune_no)) in in_campaign.enumerate() {
        // About one hamlet in nine has nothing yet.
        if rng.below(9) == 0 {
            continue;
        }
        let hamlet_id: UnitId = id(hamlet)?;
        let ballot: Vec<(usize, &Subject)> =
            campaign.subjects.iter().enumerate().filter(|(_, s)| campaign.evaluates(&hamlet_id, &s.id)).collect();
        let Some(&(_, first)) = ballot.first() else { continue };
        let phones = if rng.below(4) == 0 { 2 } else { 1 };
        let mut ledgers: Vec<(Ledger, PersonId, Phone, i64)> = Vec::new();
        for _ in 0..phones {
            phone_no += 1;
            let actor = ActorId::from(format!("demo-phone-{phone_no:04}").into_bytes());
            let collector: PersonId = id(&format!("thu-ky-{}-{}", commune_no + 1, phone_no))?;
            let storage = format!("dien-thoai-{phone_no:03}");
            let peer = Phone::connect(&district.hub, &format!("phone-{phone_no:03}"), &storage);
            // Most phones synced within the last two days; some have been silent for longer.
            let silent_days = if rng.below(8) == 0 { 4 + rng.below(5) as i64 } else { rng.below(2) as i64 };
            let last_sync = now - silent_days * day_ms - rng.below(8 * 3_600_000) as i64;
            ledgers.push((Ledger::create(&campaign.id, &hamlet_id, actor), collector, peer, last_sync));
        }
        let responses = 6 + rng.below(30) as usize;
        for r in 0..responses {
            let which = r % ledgers.len();
            let (ledger, collector, _, last_sync) = &mut ledgers[which];
            let days_back = rng.below(10) as i32;
            let day = Day::from_unix_seconds(*last_sync / 1000).plus_days(-days_back).max(campaign.schedule.opens_on);
            let mut answers = BTreeMap::new();
            for &(s, subject) in &ballot {
                answers.insert(
                    AnswerKey::for_subject(question.clone(), subject.id.clone()),
                    AnswerValue::Level(leaning(s, rng)),
                );
                if rng.below(25) == 0 {
                    let text = COMMENTS[rng.below(COMMENTS.len() as u64) as usize];
                    answers.insert(
                        AnswerKey::for_subject(comment.clone(), subject.id.clone()),
                        AnswerValue::Comment(text.to_owned()),
                    );
                }
            }
            answers.insert(AnswerKey::once(fixtures::question("du-hop")), AnswerValue::YesNo(rng.below(3) > 0));
            answers
                .insert(AnswerKey::once(fixtures::question("so-nguoi")), AnswerValue::Number(1 + rng.below(7) as i64));
            let response_id: ResponseId = id(&format!("{hamlet}-{r:03}-{:04x}", rng.below(0xffff)))?;
            let response = NewResponse { id: response_id.clone(), collector: collector.clone(), answers };
            ledger.record(campaign, &response, day)?;
            let roll = rng.below(100);
            if roll < 85 {
                ledger.submit(campaign, &response_id, collector, day)?;
                if roll < 2 {
                    // Edited after submission: kept, flagged, not counted.
                    let key = AnswerKey::for_subject(question.clone(), first.id.clone());
                    ledger.edit(
                        campaign,
                        &response_id,
                        &[(key, Some(AnswerValue::Level(Level::TinNhiemThap)))],
                        day,
                    )?;
                }
            } else if roll < 92 {
                ledger.void(&response_id, "Phiếu ghi nhầm thôn, đã ghi lại", collector, day)?;
            }
        }
        // A meeting tally in some hamlets.
        if n % 7 == 3 {
            let (ledger, collector, _, last_sync) = &mut ledgers[0];
            let returned = 40 + rng.below(40) as u32;
            let invalid = rng.below(3) as u32;
            let valid = returned - invalid;
            let mut counts = BTreeMap::new();
            for &(s, subject) in &ballot {
                let mut left = valid;
                for level in [Level::TinNhiemThap, Level::TinNhiem] {
                    let share = if level == Level::TinNhiemThap { low_share(s) } else { (20 - low_share(s)) / 2 };
                    let n = (valid * share / 20).min(left);
                    counts.insert(CountKey { question: question.clone(), subject: subject.id.clone(), level }, n);
                    left -= n;
                }
                counts.insert(
                    CountKey { question: question.clone(), subject: subject.id.clone(), level: Level::TinNhiemCao },
                    left,
                );
            }
            let tally = Tally {
                id: id(&format!("hop-{hamlet}"))?,
                collector: collector.clone(),
                ballots: Ballots { issued: returned + 5, returned, valid, invalid },
                counts,
            };
            ledger.record_tally(campaign, &tally, Day::from_unix_seconds(*last_sync / 1000))?;
        }
        // Sync every phone of the hamlet, each as of its own last day in the office.
        for (ledger, _, phone, last_sync) in &mut ledgers {
            phone.sync_at(*last_sync);
            phone.sync(ledger).await?;
            district.projector.flush().await;
        }
        // Two phones in one hamlet: the first records a draft, both phones get it, and each
        // changes the same answers offline before syncing again: the fields hold two values, a
        // conflict staff see on the review page.
        if ledgers.len() == 2 && n % 2 == 0 {
            let (ledger, collector, phone, last_sync) = &mut ledgers[0];
            let day = Day::from_unix_seconds(*last_sync / 1000);
            let draft: ResponseId = id(&format!("{hamlet}-nhap"))?;
            let answers = BTreeMap::from([(
                AnswerKey::for_subject(question.clone(), first.id.clone()),
                AnswerValue::Level(Level::TinNhiem),
            )]);
            ledger.record(campaign, &NewResponse { id: draft.clone(), collector: collector.clone(), answers }, day)?;
            phone.sync(ledger).await?;
            let (ledger, _, phone, _) = &mut ledgers[1];
            phone.sync(ledger).await?;
            let edits = [
                (Level::TinNhiemCao, "Người dân đề nghị ghi rõ hơn."),
                (Level::TinNhiemThap, "Cần xem lại ý kiến này."),
            ];
            for (i, (level, text)) in edits.into_iter().enumerate() {
                let (ledger, _, _, last_sync) = &mut ledgers[i];
                let day = Day::from_unix_seconds(*last_sync / 1000);
                let changes = [
                    (AnswerKey::for_subject(question.clone(), first.id.clone()), Some(AnswerValue::Level(level))),
                    (
                        AnswerKey::for_subject(comment.clone(), first.id.clone()),
                        Some(AnswerValue::Comment(text.to_owned())),
                    ),
                ];
                ledger.edit(campaign, &draft, &changes, day)?;
            }
            for (ledger, _, phone, last_sync) in &mut ledgers {
                phone.sync_at(*last_sync);
                phone.sync(ledger).await?;
                district.projector.flush().await;
            }
        }
        for (_, _, phone, _) in ledgers {
            phone.disconnect();
        }
    }
    Ok(())
}
