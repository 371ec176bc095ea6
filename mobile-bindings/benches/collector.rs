//! The collector library's figures, measured on a release build against a real server:
//!
//! - recording a response (target ≤ 2 ms);
//! - opening a store that holds 2,000 responses (target ≤ 100 ms);
//! - syncing 10 new responses with the sync state kept from the previous sync (targets: at most
//!   2 round trips, and at most 1.2 × the raw bytes of the new changes + 1 KB sent).
//!
//! `cargo bench -p hamlet-mobile --bench collector`. Prints the figures (kept in
//! docs/benchmarks.md) and exits non-zero if a target is missed. `HAMLET_BENCH_SMOKE=1` (CI)
//! records 100 responses and checks the protocol targets only.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hamlet_mobile::store::Store;
use hamlet_mobile::{Collector, SyncOptions};
use hamlet_sync_core::automerge::{Automerge, ChangeHash, LoadOptions, OnPartialLoad};
use hamlet_sync_core::fixtures;

const CAMPAIGN: &str = "tin-nhiem-2025";
const HAMLET: &str = "thon-dong";
const SUBJECTS: usize = 20;
const RESPONSES: usize = 2_000;

/// The 20-subject form answered as in sync-core's ledger benchmark: every subject rated, a
/// comment on every fourth, and the two once-per-response questions (27 answers).
fn answers(campaign: &hamlet_sync_core::Campaign, n: usize) -> Vec<(String, String)> {
    let levels = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"];
    let mut out = Vec::new();
    for (i, s) in campaign.subjects.iter().enumerate() {
        out.push((format!("tin-nhiem/{}", s.id), levels[(n + i) % 3].to_owned()));
        if i.is_multiple_of(4) {
            out.push((format!("y-kien/{}", s.id), format!("Ý kiến số {n} về cán bộ {i}: cần gần dân hơn.")));
        }
    }
    out.push(("du-hop".into(), if n.is_multiple_of(2) { "có" } else { "không" }.into()));
    out.push(("so-nguoi".into(), format!("{}", n % 7 + 1)));
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The phone's ledger as stored, read with sync-core.
fn stored_ledger(runtime: &tokio::runtime::Runtime, store: &Path) -> Automerge {
    runtime.block_on(async {
        let store = Store::open(store).await.expect("store");
        let ledger =
            store.documents().await.expect("documents").into_iter().find(|d| d.kind == "ledger").expect("a ledger");
        let bytes: Vec<u8> = store
            .chunks()
            .await
            .expect("chunks")
            .into_iter()
            .filter(|c| c.document == ledger.id)
            .flat_map(|c| c.data)
            .collect();
        store.close().await;
        Automerge::load_with_options(&bytes, LoadOptions::new().on_partial_load(OnPartialLoad::Error)).expect("loads")
    })
}

fn main() {
    // A smoke run (CI): a small store, the protocol targets checked, the timings printed only
    // (a debug build on a shared machine says nothing about them).
    let smoke = std::env::var_os("HAMLET_BENCH_SMOKE").is_some();
    let responses = if smoke { 100 } else { RESPONSES };
    let dir = tempfile::tempdir().unwrap();
    let campaign = fixtures::open_campaign_with_subjects(SUBJECTS);
    let district = support::District::start_open(dir.path(), &campaign);
    let path = dir.path().join("phone.db");
    let options = SyncOptions::default();
    let phone = Collector::open(&path).expect("opens");
    phone.setup_without_enrollment(&district.address(), "thu-ha", &[(CAMPAIGN.into(), vec![HAMLET.into()])]).unwrap();
    phone.sync(None, &options, &|_| ()).expect("campaign downloaded");

    // Recording: each call writes its change to the store (WAL, synchronous=FULL) before it returns.
    let mut record = Vec::with_capacity(responses);
    let mut submit = Vec::with_capacity(responses);
    for n in 0..responses {
        let a = answers(&campaign, n);
        let started = Instant::now();
        let id = phone.record(CAMPAIGN, HAMLET, &a).expect("records");
        record.push(started.elapsed());
        let started = Instant::now();
        phone.submit(&id).expect("submits");
        submit.push(started.elapsed());
    }
    record.sort();
    submit.sort();
    let (rec_median, rec_p95, rec_max) =
        (percentile(&record, 0.5), percentile(&record, 0.95), record[record.len() - 1]);
    println!(
        "record a response (27 answers, ledger growing to {responses}): median {}, p95 {}, max {}",
        ms(rec_median),
        ms(rec_p95),
        ms(rec_max)
    );
    println!(
        "submit a response: median {}, p95 {}, max {}",
        ms(percentile(&submit, 0.5)),
        ms(percentile(&submit, 0.95)),
        ms(submit[submit.len() - 1])
    );
    let first = phone.sync(None, &options, &|_| ()).expect("syncs");
    println!(
        "first sync of {responses} submitted responses: {} changes, {} bytes sent, {} ms",
        first.changes_sent, first.bytes_sent, first.duration_ms
    );
    drop(phone);

    // Opening: the store, the identity, and every document loaded, ready to record.
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut opens = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let phone = Collector::open(&path).expect("opens");
        opens.push(started.elapsed());
        assert_eq!(phone.counts().expect("counts").acknowledged, responses as u64);
    }
    opens.sort();
    let open_median = percentile(&opens, 0.5);
    println!(
        "open a store with {responses} responses ({file} bytes before checkpoint): median {}, max {}",
        ms(open_median),
        ms(opens[opens.len() - 1])
    );

    // Syncing 10 new responses with the sync state kept from the previous sync.
    // The store is read directly while no collector holds it (a collector locks its store).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let before: Vec<ChangeHash> = stored_ledger(&runtime, &path).get_heads();
    let phone = Collector::open(&path).expect("opens");
    for n in 0..10 {
        let id = phone.record(CAMPAIGN, HAMLET, &answers(&campaign, responses + n)).expect("records");
        phone.submit(&id).expect("submits");
    }
    drop(phone);
    let raw: usize = stored_ledger(&runtime, &path).get_changes(&before).iter().map(|c| c.raw_bytes().len()).sum();
    let phone = Collector::open(&path).expect("opens");
    let report = phone.sync(None, &options, &|_| ()).expect("syncs");
    let budget = raw as f64 * 1.2 + 1024.0;
    println!(
        "sync 10 new responses (20 changes, {raw} raw bytes): {} round trips, {} bytes sent ({:.2} × raw; budget {budget:.0}), {} received, {} ms",
        report.round_trips,
        report.bytes_sent,
        report.bytes_sent as f64 / raw as f64,
        report.bytes_received,
        report.duration_ms
    );

    let mut failed = Vec::new();
    if smoke {
        println!("smoke run: {responses} responses; the timing targets are not checked");
    }
    if !smoke && rec_median > Duration::from_millis(2) {
        failed.push(format!("recording median {} > 2 ms", ms(rec_median)));
    }
    if !smoke && open_median > Duration::from_millis(100) {
        failed.push(format!("opening median {} > 100 ms", ms(open_median)));
    }
    if report.round_trips > 2 {
        failed.push(format!("{} round trips > 2", report.round_trips));
    }
    if report.bytes_sent as f64 > budget {
        failed.push(format!("{} bytes sent > {budget:.0}", report.bytes_sent));
    }
    if report.changes_sent != 20 {
        failed.push(format!("{} changes sent, expected the 20 new ones", report.changes_sent));
    }
    if failed.is_empty() {
        println!("all targets met");
    } else {
        eprintln!("targets missed: {}", failed.join("; "));
        std::process::exit(1);
    }
}
