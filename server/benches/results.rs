//! District results at scale: a campaign of 1,000,000 responses over 2,000 hamlets (20 cadres),
//! then the results API and pages timed through the real server, and the XLSX export's peak
//! memory measured on the server process.
//!
//! `cargo bench -p hamlet-server --bench results` (release build). Environment:
//! `HAMLET_BENCH_RESPONSES` (1000000), `HAMLET_BENCH_HAMLETS` (2000), `HAMLET_BENCH_DATABASE_URL`
//! (a PostgreSQL database to fill instead of a temporary SQLite file), `HAMLET_BENCH_ROUNDS` (20).
//!
//! The campaign, its units and its cadres go through the district's own functions; the million
//! responses are written straight into the projection's tables (responses, answers, and the
//! aggregates `level_counts` and `hamlet_counts`, as the projector would leave them): building
//! and syncing a million responses as Automerge documents would take hours and measure the sync
//! path, not the query side measured here.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::config::Limits;
use hamlet_server::district::{self, Actor, Settings, campaigns};
use hamlet_server::store::{Committer, PoolRef, Store};
use hamlet_server::sync::hub::Hub;
use hamlet_server::sync::metrics::Metrics;
use hamlet_sync_core::session::Identity;
use hamlet_sync_core::{Campaign, CampaignState, HamletScope, Label, Schedule, Subject, Threshold, fixtures};
use http_body_util::{BodyExt, Full};
use tokio::runtime::Runtime;

const CAMPAIGN: &str = "bench-2026";
const SUBJECTS: usize = 20;
const PASSWORD: &str = "benchmark password 2026";
const LEVELS: [&str; 3] = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"];

/// An answers row: hamlet, response, question, subject, kind, value, search text, counted.
type AnswerRow = (String, String, String, String, &'static str, Option<String>, Option<String>, i64);
/// A responses row: hamlet, response, status.
type ResponseRow = (String, String, &'static str);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn hamlet_id(h: usize) -> String {
    format!("xa-{:03}-thon-{:02}", h / 20, h % 20)
}

async fn setup(url: &str, hamlets: usize) -> Campaign {
    let store = Store::open(url).await.expect("store");
    let (committer, writer) = Committer::spawn(store.clone(), 64);
    let identity = Identity { peer_id: "bench".into(), storage_id: store.storage_id().await.unwrap() };
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    accounts.create_person("admin", "Benchmark", Role::Admin).await.unwrap();
    accounts.set_password("admin", PASSWORD, false).await.unwrap();
    let projector = district::new_projector(&store, Settings::default());
    let hub = Hub::new(
        store.clone(),
        committer,
        identity,
        Limits::default(),
        Arc::new(Metrics::default()),
        accounts,
        projector.clone(),
    );
    let d = district::start(hub.clone(), projector);
    let mut csv = String::from("id,name,level,parent,valid_from,valid_until,merged_from,merged_into\n");
    csv.push_str("tinh,Tỉnh Thử Nghiệm,province,,2000-01-01,,,\nhuyen,Huyện Thử Nghiệm,district,tinh,2000-01-01,,,\n");
    for c in 0..hamlets.div_ceil(20) {
        csv.push_str(&format!("xa-{c:03},Xã Số {c},commune,huyen,2000-01-01,,,\n"));
    }
    for h in 0..hamlets {
        csv.push_str(&format!(
            "{},Thôn {} xã {},hamlet,xa-{:03},2000-01-01,,,\n",
            hamlet_id(h),
            h % 20 + 1,
            h / 20,
            h / 20
        ));
    }
    let actor = Actor { name: "bench".into(), role: "admin".into() };
    campaigns::import_units_text(&d, &actor, &csv).await.expect("units");
    let campaign = Campaign {
        // Every hamlet rates every subject, as the load this measures was made.
        schema_version: 1,
        id: CAMPAIGN.parse().unwrap(),
        name: Label::new("Đợt thử tải một triệu phiếu", "Load test, one million responses"),
        form: fixtures::form(),
        subjects: (0..SUBJECTS)
            .map(|i| Subject {
                id: format!("can-bo-{i:02}").parse().unwrap(),
                name: format!("Cán bộ số {}", i + 1),
                position: "Chủ tịch UBND xã".into(),
                commune: "xa-000".parse().unwrap(),
                home_hamlet: hamlet_id(i % hamlets).parse().unwrap(),
                category: None,
                post: None,
                scope: Default::default(),
            })
            .collect(),
        hamlets: (0..hamlets)
            .map(|h| HamletScope { hamlet: hamlet_id(h).parse().unwrap(), expected_voters: 600, ballot: vec![] })
            .collect(),
        schedule: Schedule { opens_on: "2026-11-01".parse().unwrap(), closes_on: "2026-11-30".parse().unwrap() },
        thresholds: Threshold::defaults(),
        max_responses_per_day: hamlet_sync_core::DEFAULT_MAX_RESPONSES_PER_DAY,
        sealing: None,
        state: CampaignState::Draft,
    };
    campaigns::create(&d, &actor, campaign.clone()).await.expect("campaign");
    let campaign = campaigns::transition(&d, &actor, CAMPAIGN, CampaignState::Open).await.expect("opened");
    d.projector.flush().await;
    drop(d);
    drop(hub);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    store.close().await;
    campaign
}

/// Rows of the projection for `responses` responses, written in large transactions.
async fn load(url: &str, responses: usize, hamlets: usize) {
    let store = Store::open(url).await.expect("store");
    let started = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let per_hamlet = responses / hamlets;
    let mut level_counts: HashMap<(usize, usize, usize), i64> = HashMap::new();
    let mut hamlet_counts = vec![[0i64; 3]; hamlets];
    let mut batch_responses: Vec<ResponseRow> = Vec::new();
    let mut batch_answers: Vec<AnswerRow> = Vec::new();
    let flush = |store: Store, r: Vec<ResponseRow>, a: Vec<AnswerRow>| async move {
        macro_rules! insert {
            ($db:ty, $pool:expr) => {{
                let mut tx = $pool.begin().await.unwrap();
                for chunk in r.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO responses (campaign_id, hamlet_id, response_id, status, form_version, recorded_on, collector, submitted_on, submitted_by) ",
                    );
                    q.push_values(chunk, |mut b, (hamlet, id, status)| {
                        b.push_bind(CAMPAIGN).push_bind(hamlet).push_bind(id).push_bind(*status).push_bind(1i64)
                            .push_bind("2026-11-10").push_bind("thu-ky").push_bind("2026-11-10").push_bind("thu-ky");
                    });
                    q.build().execute(&mut *tx).await.unwrap();
                }
                for chunk in a.chunks(600) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO answers (campaign_id, hamlet_id, response_id, question_id, subject_id, kind, value_text, search_text, counted) ",
                    );
                    q.push_values(chunk, |mut b, (hamlet, id, question, subject, kind, text, search, counted)| {
                        b.push_bind(CAMPAIGN).push_bind(hamlet).push_bind(id).push_bind(question).push_bind(subject)
                            .push_bind(*kind).push_bind(text).push_bind(search).push_bind(*counted);
                    });
                    q.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }};
        }
        match store.pool() {
            PoolRef::Sqlite(pool) => insert!(sqlx::Sqlite, pool),
            PoolRef::Postgres(pool) => insert!(sqlx::Postgres, pool),
        }
    };
    for h in 0..hamlets {
        let hamlet = hamlet_id(h);
        // Each hamlet leans its own way, so that some communes cross the thresholds.
        let low = [1u64, 2, 3, 6, 12][h % 5];
        for r in 0..per_hamlet {
            let id = format!("{h:04}-{r:04}-{:08x}", rng.below(u64::from(u32::MAX)));
            let status = match rng.below(100) {
                0..=1 => "draft",
                2..=4 => "voided",
                _ => "submitted",
            };
            let counted = i64::from(status == "submitted");
            hamlet_counts[h][match status {
                "draft" => 0,
                "submitted" => 1,
                _ => 2,
            }] += 1;
            for s in 0..SUBJECTS {
                let roll = rng.below(20);
                let level = if roll < low {
                    2
                } else if roll < low + (20 - low) / 2 {
                    1
                } else {
                    0
                };
                if counted == 1 {
                    *level_counts.entry((h, s, level)).or_default() += 1;
                }
                batch_answers.push((
                    hamlet.clone(),
                    id.clone(),
                    "tin-nhiem".into(),
                    format!("can-bo-{s:02}"),
                    "level",
                    Some(LEVELS[level].into()),
                    None,
                    counted,
                ));
            }
            if r % 10 == 0 {
                let text = "Cán bộ gần dân, giải quyết công việc nhanh".to_owned();
                let folded = district::fold_search(&text);
                batch_answers.push((
                    hamlet.clone(),
                    id.clone(),
                    "y-kien".into(),
                    "can-bo-00".into(),
                    "comment",
                    Some(text),
                    Some(folded),
                    counted,
                ));
            }
            batch_responses.push((hamlet.clone(), id, status));
        }
        if batch_responses.len() >= 20_000 || h + 1 == hamlets {
            flush(store.clone(), std::mem::take(&mut batch_responses), std::mem::take(&mut batch_answers)).await;
            eprint!("\rloaded {} hamlets of {hamlets} ({:.0} s)", h + 1, started.elapsed().as_secs_f64());
        }
    }
    eprintln!();
    macro_rules! aggregates {
        ($db:ty, $pool:expr) => {{
            let mut tx = $pool.begin().await.unwrap();
            let rows: Vec<_> = level_counts.iter().collect();
            for chunk in rows.chunks(1000) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO level_counts (campaign_id, hamlet_id, question_id, subject_id, level, from_responses, from_tallies) ",
                );
                q.push_values(chunk, |mut b, ((h, s, l), n)| {
                    b.push_bind(CAMPAIGN).push_bind(hamlet_id(*h)).push_bind("tin-nhiem").push_bind(format!("can-bo-{s:02}"))
                        .push_bind(LEVELS[*l]).push_bind(**n).push_bind(0i64);
                });
                q.build().execute(&mut *tx).await.unwrap();
            }
            let mut communes: HashMap<(usize, usize, usize), i64> = HashMap::new();
            for ((h, s, l), n) in &level_counts {
                *communes.entry((h / 20, *s, *l)).or_default() += n;
            }
            let rows: Vec<_> = communes.iter().collect();
            for chunk in rows.chunks(1000) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO commune_level_counts (campaign_id, commune_id, question_id, subject_id, level, from_responses, from_tallies) ",
                );
                q.push_values(chunk, |mut b, ((c, s, l), n)| {
                    b.push_bind(CAMPAIGN).push_bind(format!("xa-{c:03}")).push_bind("tin-nhiem").push_bind(format!("can-bo-{s:02}"))
                        .push_bind(LEVELS[*l]).push_bind(**n).push_bind(0i64);
                });
                q.build().execute(&mut *tx).await.unwrap();
            }
            for chunk in hamlet_counts.iter().enumerate().collect::<Vec<_>>().chunks(1000) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO hamlet_counts (campaign_id, hamlet_id, drafts, submitted, voided, tallies, ballots_issued, ballots_returned, ballots_valid, ballots_invalid) ",
                );
                q.push_values(chunk, |mut b, (h, c)| {
                    b.push_bind(CAMPAIGN).push_bind(hamlet_id(*h)).push_bind(c[0]).push_bind(c[1]).push_bind(c[2])
                        .push_bind(0i64).push_bind(0i64).push_bind(0i64).push_bind(0i64).push_bind(0i64);
                });
                q.build().execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }};
    }
    match store.pool() {
        PoolRef::Sqlite(pool) => {
            aggregates!(sqlx::Sqlite, pool);
            sqlx::query("ANALYZE").execute(pool).await.unwrap();
        }
        PoolRef::Postgres(pool) => {
            aggregates!(sqlx::Postgres, pool);
            sqlx::query("ANALYZE").execute(pool).await.unwrap();
        }
    }
    store.close().await;
    eprintln!("loaded {responses} responses in {:.0} s", started.elapsed().as_secs_f64());
}

struct ServerProcess {
    child: Child,
    addr: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(url: &str) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hamlet-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    ServerProcess { child, addr }
}

/// One request with hyper's client; returns the status, the body's length and (when `keep`)
/// the body. The body is counted as it streams, so a large export is not held in memory.
fn get(runtime: &Runtime, addr: &str, path: &str, auth: &Auth, keep: bool) -> (u16, usize, Vec<u8>) {
    runtime.block_on(async {
        let (status, _, mut body) = send(addr, "GET", path, auth, Vec::new()).await;
        let (mut total, mut kept) = (0, Vec::new());
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the body arrives whole").into_data() {
                total += data.len();
                if keep {
                    kept.extend_from_slice(&data);
                }
            }
        }
        (status, total, kept)
    })
}

/// A header to send with every request (the session cookie).
type Auth = Option<(&'static str, String)>;

async fn send(
    addr: &str,
    method: &str,
    path: &str,
    auth: &Auth,
    body: Vec<u8>,
) -> (u16, hyper::HeaderMap, hyper::body::Incoming) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("the server accepts connections");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("HTTP handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(method).uri(path).header("host", "x");
    if let Some((name, value)) = auth {
        request = request.header(*name, value);
    }
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(hyper::body::Bytes::from(body))).expect("a valid request");
    let response = sender.send_request(request).await.expect("an answer");
    let (parts, body) = response.into_parts();
    (parts.status.as_u16(), parts.headers, body)
}

fn sign_in(runtime: &Runtime, addr: &str) -> Auth {
    let body = format!(r#"{{"name":"admin","password":"{PASSWORD}"}}"#);
    runtime.block_on(async {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, headers, _) = send(addr, "POST", "/api/session", &None, body.into_bytes()).await;
        assert_eq!(status, 200, "sign-in");
        let cookie = headers
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next())
            .find(|c| c.starts_with("hamlet_session="))
            .expect("a session cookie")
            .to_owned();
        Some(("cookie", cookie))
    })
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn time(runtime: &Runtime, addr: &str, auth: &Auth, path: &str, rounds: usize) {
    let (status, bytes, _) = get(runtime, addr, path, auth, false);
    assert_eq!(status, 200, "{path}");
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let (status, _, _) = get(runtime, addr, path, auth, false);
            assert_eq!(status, 200);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = percentile(&times, 50);
    let p95 = percentile(&times, 95);
    println!(
        "| `GET {path}` | {median:.0} ms | {p95:.0} ms | {:.0} ms | {} KB |",
        times[times.len() - 1],
        bytes / 1024
    );
}

/// The `p`th percentile of `sorted` by nearest rank: the smallest value with at least `p`% of
/// the values at or below it (of 20 rounds, p95 is the 19th value, p50 the 10th; the 20th is the
/// maximum, printed on its own).
fn percentile(sorted: &[f64], p: usize) -> f64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The 1-, 5- and 15-minute load averages, to print beside the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let responses = env_number("HAMLET_BENCH_RESPONSES", 1_000_000);
    let hamlets = env_number("HAMLET_BENCH_HAMLETS", 2_000);
    let rounds = env_number("HAMLET_BENCH_ROUNDS", 20);
    let folder = tempfile::tempdir().unwrap();
    let url = std::env::var("HAMLET_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite:{}", folder.path().join("bench.db").display()));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        setup(&url, hamlets).await;
        load(&url, responses, hamlets).await;
    });
    let server = spawn_server(&url);
    let pid = server.child.id();
    let auth = sign_in(&runtime, &server.addr);
    println!(
        "\n{responses} responses, {hamlets} hamlets, {SUBJECTS} cadres; {rounds} rounds each; load average {}\n",
        load_average()
    );
    println!("| request | median | p95 | max | size |\n| --- | --- | --- | --- | --- |");
    for path in [
        format!("/api/campaigns/{CAMPAIGN}/results"),
        format!("/campaigns/{CAMPAIGN}/results"),
        format!("/api/campaigns/{CAMPAIGN}/results?depth=hamlet&subject=can-bo-03"),
        format!("/campaigns/{CAMPAIGN}/results/can-bo-03"),
        format!("/api/campaigns/{CAMPAIGN}/progress"),
        format!("/campaigns/{CAMPAIGN}"),
        format!("/campaigns/{CAMPAIGN}/comments?q=gan%20dan"),
        format!("/campaigns/{CAMPAIGN}/hamlets/xa-000-thon-00"),
    ] {
        time(&runtime, &server.addr, &auth, &path, rounds);
    }
    let before = status_kb(pid, "VmHWM:");
    println!("\nserver peak RSS before the exports: {} MB", before / 1024);
    for file in ["results.xlsx", "responses.csv", "responses.xlsx"] {
        let path = format!("/api/campaigns/{CAMPAIGN}/export/{file}");
        let started = Instant::now();
        let sampler = {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            let handle = std::thread::spawn(move || {
                let mut peak_rss = 0;
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    peak_rss = peak_rss.max(status_kb(pid, "VmRSS:"));
                    std::thread::sleep(Duration::from_millis(50));
                }
                peak_rss
            });
            (stop, handle)
        };
        let (status, bytes, body) = get(&runtime, &server.addr, &path, &auth, file == "results.xlsx");
        sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.1.join().unwrap();
        assert_eq!(status, 200, "{path}");
        if file == "results.xlsx" {
            assert!(body.starts_with(b"PK"), "an XLSX (zip) file");
        }
        println!(
            "| `{file}` | {:.1} s | {} MB | peak RSS while exporting {} MB, VmHWM {} MB |",
            started.elapsed().as_secs_f64(),
            bytes / (1024 * 1024),
            peak / 1024,
            status_kb(pid, "VmHWM:") / 1024
        );
    }
}
