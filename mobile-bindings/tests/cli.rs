//! The `hamlet-collector` command against a real district server, and the store surviving the
//! command being killed (SIGKILL) at any moment.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hamlet_mobile::Collector;
use hamlet_mobile::views::ResponseFilter;
use hamlet_sync_core::fixtures;
use support::{District, Front};

fn cli(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hamlet-collector"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("HAMLET_LANG")
        .env_remove("HAMLET_SERVER")
        // Inside the fixture campaign's schedule, so that what is recorded counts.
        .env("HAMLET_TODAY", DAY)
        .stdin(Stdio::null())
        .output()
        .expect("the command runs")
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = cli(store, args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(store: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(store, &all)).expect("JSON output")
}

/// A day within the fixture campaign's schedule.
const DAY: &str = "2025-06-02";

const RATINGS: [&str; 6] =
    ["-a", "tin-nhiem/ong-an=1", "-a", "tin-nhiem/can-bo-01=tin_nhiem", "-a", "tin-nhiem/can-bo-02=Tín nhiệm thấp"];

#[test]
fn everything_a_phone_does_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = fixtures::open_campaign();
    let district = District::start(dir.path(), &campaign);
    let front = Front::start(district.addr);
    let code = district.code("nguyen-van-a", &["thon-dong"]);
    let store = dir.path().join("cli.db");

    let enrolled = json(&store, &["enroll", "--server", &front.address(), "--code", &code]);
    assert_eq!(enrolled["collector"], "nguyen-van-a");
    let campaigns = json(&store, &["campaigns"]);
    assert_eq!(campaigns[0]["campaign"]["state"], "open", "the enrollment downloaded the campaign");
    // Each hamlet's own questions (its ballot): a version 1 campaign asks every subject.
    assert_eq!(campaigns[0]["questions"]["thon-dong"].as_array().map(Vec::len), Some(8));
    let text = ok(&store, &["--lang", "en", "campaigns"]);
    assert!(text.contains("Level of confidence"), "{text}");
    let text = ok(&store, &["campaigns"]);
    assert!(text.contains("Mức độ tín nhiệm"), "{text}");

    // Flags, a JSON file, and a draft.
    let mut args = vec!["record", "--submit", "-a", "so-nguoi=5", "-a", "du-hop=có"];
    args.extend_from_slice(&RATINGS);
    let first = json(&store, &args);
    assert_eq!(first["status"], "submitted");
    let file = dir.path().join("answers.json");
    std::fs::write(
        &file,
        r#"{"answers": {"tin-nhiem/ong-an": "tin_nhiem", "tin-nhiem/can-bo-01": 2, "tin-nhiem/can-bo-02": "3", "du-hop": false}}"#,
    )
    .unwrap();
    let second = json(&store, &["record", "--file", file.to_str().unwrap()]);
    assert_eq!((second["status"].as_str(), second["answers"]["du-hop"].as_str()), (Some("draft"), Some("no")));
    let second_id = second["id"].as_str().unwrap().to_owned();
    ok(&store, &["submit", &second_id]);
    let draft = json(&store, &["record", "-a", "so-nguoi=3"]);
    let draft_id = draft["id"].as_str().unwrap().to_owned();

    // Invalid input: exit code 3, and the question is named.
    let out = cli(&store, &["record", "-a", "so-nguoi=500"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("so-nguoi"));
    let out = cli(&store, &["--lang", "en", "submit", &draft_id]);
    assert_eq!(out.status.code(), Some(3), "a draft without its ratings cannot be submitted");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "));
    // Unknown response: exit code 4.
    assert_eq!(cli(&store, &["void", "no-such-id", "--reason", "x"]).status.code(), Some(4));

    let edited = ok(&store, &["--lang", "en", "edit", &second_id, "-a", "so-nguoi=7"]);
    assert!(edited.contains("flagged"), "{edited}");
    ok(&store, &["void", &draft_id, "--reason", "Ghi nhầm"]);
    let tally = json(
        &store,
        &[
            "tally",
            "--issued",
            "50",
            "--returned",
            "48",
            "--valid",
            "47",
            "--invalid",
            "1",
            "--count",
            "tin-nhiem/ong-an/tin_nhiem_cao=40",
        ],
    );
    assert!(tally["tally"].is_string());

    let status = json(&store, &["status"]);
    assert_eq!(status["counts"]["pending"], 2);
    assert_eq!(status["counts"]["voided"], 1);
    let listed = json(&store, &["list", "--status", "submitted", "--day", "today"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed.as_array().unwrap().iter().filter(|r| r["edited_after_submission"][0] == "so-nguoi").count(), 1);

    let report = json(&store, &["sync"]);
    assert_eq!(report["newly_acknowledged"], 2);
    assert_eq!(report["counts"]["pending"], 0);
    let text = ok(&store, &["--lang", "en", "status"]);
    assert!(text.contains("Acknowledged by the server") && text.contains('2'), "{text}");
    // Five sealed answers in the first, four in the second (its later household size is flagged).
    assert_eq!(district.counted(&campaign, &["thon-dong"]).len(), 5 + 4);

    // Bundles: export what is not acknowledged, import it on another device.
    let mut args = vec!["record", "--submit"];
    args.extend_from_slice(&RATINGS);
    json(&store, &args);
    let bundle = dir.path().join("out.bundle");
    let exported = json(&store, &["export-bundle", bundle.to_str().unwrap()]);
    assert_eq!(exported["changes"], 2);
    let other = dir.path().join("other.db");
    let code_b = district.code("tran-thi-b", &["thon-dong"]);
    json(&other, &["enroll", "--server", &district.address(), "--code", &code_b]);
    let imported = json(&other, &["import-bundle", bundle.to_str().unwrap()]);
    assert_eq!(imported["changes"], 2);
    let all = json(&other, &["list", "--all"]);
    assert_eq!(all.as_array().map(Vec::len), Some(4), "three from the server, one from the bundle");

    // Another server than the enrolled one never sees the token: refused before sending, code 3.
    let elsewhere = support::closed_address();
    let out = cli(&store, &["sync", "--server", elsewhere.as_str(), "--attempts", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the server this device enrolled with"));
    // A server that cannot be reached: exit code 5.
    let unreachable = dir.path().join("unreachable.db");
    let nowhere = support::closed_address();
    let setup = ["enroll", "--server", nowhere.as_str(), "--collector", "x", "--campaign", "tin-nhiem-2025"];
    // Enrolled even though the first sync cannot reach the server: exit 0, and it says so.
    let out = cli(&unreachable, &[&setup[..], &["--hamlet", "thon-dong"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lần đồng bộ đầu tiên"));
    let out = cli(&unreachable, &["sync", "--attempts", "1"]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    // A used code: refused, exit code 6.
    let out = cli(&dir.path().join("third.db"), &["enroll", "--server", &front.address(), "--code", &code]);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A cheap random number from the clock, for kill delays (no test depends on its value).
fn jitter(max_ms: u64) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    Duration::from_millis(u64::from(nanos) % max_ms.max(1))
}

/// Recorders are killed with SIGKILL at random moments, many times. Afterwards the store opens,
/// SQLite finds it sound, and every response a recorder reported as recorded is there.
#[test]
fn a_recorder_killed_at_any_moment_loses_nothing_it_reported() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = fixtures::open_campaign();
    let district = District::start(dir.path(), &campaign);
    let store = dir.path().join("killed.db");
    let code = district.code("nguyen-van-a", &["thon-dong"]);
    json(&store, &["enroll", "--server", &district.address(), "--code", &code]);

    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut killed_mid_way = 0;
    let started = Instant::now();
    let mut round = 0;
    while round < 80 && started.elapsed() < Duration::from_secs(60) {
        round += 1;
        let mut args = vec!["--json", "record", "--submit", "-a", "so-nguoi=2"];
        args.extend_from_slice(&RATINGS);
        let mut child = Command::new(env!("CARGO_BIN_EXE_hamlet-collector"))
            .arg("--store")
            .arg(&store)
            .args(&args)
            .env("HAMLET_TODAY", DAY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns");
        // Most kills land inside the process's short life: opening, recording, submitting.
        // Every fourth recorder is left to finish, so that some report however loaded the
        // machine is.
        if round % 4 == 0 {
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().expect("waits").is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            std::thread::sleep(jitter(25));
        }
        let finished = child.try_wait().expect("waits").is_some();
        let _ = child.kill();
        child.wait().expect("reaped");
        let mut out = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut out).expect("reads");
        // A response counts as reported only when the whole JSON object was printed.
        match serde_json::from_str::<serde_json::Value>(&out) {
            Ok(v) => {
                reported.insert(v["id"].as_str().expect("an id").to_owned());
            }
            Err(_) if !finished => killed_mid_way += 1,
            Err(e) => panic!("a finished recorder printed no JSON: {e}: {out:?}"),
        }
    }
    eprintln!("{round} recorders: {} finished and reported, {killed_mid_way} killed mid-way", reported.len());
    assert!(killed_mid_way >= 5, "too few kills landed mid-way ({killed_mid_way}); the test proves little");
    assert!(!reported.is_empty(), "no recorder finished");

    let phone = Collector::open(&store).expect("the store opens after the kills");
    assert_eq!(phone.integrity_check().expect("checks"), "ok");
    let submitted: BTreeSet<String> = phone
        .responses(&ResponseFilter { status: Some("submitted".into()), ..ResponseFilter::default() })
        .expect("lists")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let missing: Vec<&String> = reported.difference(&submitted).collect();
    assert!(missing.is_empty(), "reported but missing: {missing:?}");
    // Whatever a killed recorder left is whole: every response reads, drafts included.
    let all = phone.responses(&ResponseFilter::default()).expect("lists");
    assert!(all.iter().all(|r| r.answers.len() == 4), "a response with part of its answers");
    // And what survived syncs.
    let report = phone.sync(None, &hamlet_mobile::SyncOptions::default(), &|_| ()).expect("syncs");
    assert_eq!(report.counts.pending, 0);
    assert_eq!(district.counted(&campaign, &["thon-dong"]).len(), submitted.len() * 4);
}

/// The field report: a background sync and a foreground recorder, or an app that opens the
/// store twice. Two recorders run at once on one store. Every response either one reported is
/// there afterwards, every failure says the store was in use, and the store stays readable.
#[test]
fn two_recorders_started_at_once_leave_every_response_recorded_or_clearly_refused() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = fixtures::open_campaign();
    let district = District::start(dir.path(), &campaign);
    let store = dir.path().join("shared.db");
    let code = district.code("nguyen-van-a", &["thon-dong"]);
    json(&store, &["enroll", "--server", &district.address(), "--code", &code]);

    let recorder = |store: std::path::PathBuf| {
        std::thread::spawn(move || {
            let (mut recorded, mut refused) = (Vec::new(), Vec::new());
            for _ in 0..15 {
                let mut args = vec!["--json", "record", "--submit", "-a", "so-nguoi=2"];
                args.extend_from_slice(&RATINGS);
                let out = cli(&store, &args);
                if out.status.success() {
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
                    recorded.push(v["id"].as_str().expect("an id").to_owned());
                } else {
                    refused.push((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()));
                }
            }
            (recorded, refused)
        })
    };
    let (a, b) = (recorder(store.clone()), recorder(store.clone()));
    let (mut recorded, mut refused) = a.join().unwrap();
    let (more, more_refused) = b.join().unwrap();
    recorded.extend(more);
    refused.extend(more_refused);
    eprintln!("{} recorded, {} refused", recorded.len(), refused.len());
    for (code, stderr) in &refused {
        assert!(code == &Some(7) && stderr.contains("in use by another program"), "{code:?}: {stderr}");
    }
    assert!(!recorded.is_empty());

    // The store reads, and holds exactly what was reported, each submitted.
    let status = json(&store, &["status"]);
    assert_eq!(status["counts"]["pending"], recorded.len(), "{status}");
    let listed = json(&store, &["list", "--status", "submitted"]);
    let ids: BTreeSet<String> =
        listed.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, recorded.iter().cloned().collect::<BTreeSet<_>>());
    let synced = json(&store, &["sync"]);
    assert_eq!(synced["counts"]["pending"], 0, "{synced}");
    assert_eq!(district.counted(&campaign, &["thon-dong"]).len(), recorded.len() * 4);
}

/// What the library warns of reaches the collector: a store with a chunk that does not load
/// opens, and the command says what it set aside.
#[test]
fn the_command_line_shows_the_library_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("damaged.db");
    ok(
        &store,
        &[
            "enroll",
            "--server",
            "127.0.0.1:9",
            "--collector",
            "x",
            "--campaign",
            "tin-nhiem-2025",
            "--hamlet",
            "thon-dong",
            "--no-sync",
        ],
    );
    let ledger = hamlet_sync_core::DocumentId::for_ledger(
        &hamlet_sync_core::CampaignId::new("tin-nhiem-2025").unwrap(),
        &hamlet_sync_core::UnitId::new("thon-dong").unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let s = hamlet_mobile::store::Store::open(&store).await.unwrap();
        let write = hamlet_mobile::store::DocWrite {
            document: ledger.to_string(),
            chunk: Some(b"not automerge".to_vec()),
            ..Default::default()
        };
        s.write(&write).await.unwrap();
        s.close().await;
    });
    // A document loads when first used: listing the responses loads the damaged ledger.
    let out = cli(&store, &["list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARN") && stderr.contains("set aside"), "{stderr}");
}

/// `record --submit` whose submit fails (a required answer missing) keeps the draft: the command
/// names it, so that the collector completes it instead of recording the resident again, and
/// exits non-zero saying the response was not submitted.
#[test]
fn a_record_whose_submit_fails_names_the_draft_it_kept_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &fixtures::open_campaign());
    let code = district.code("nguyen-van-a", &["thon-dong"]);
    let store = dir.path().join("cli.db");
    json(&store, &["enroll", "--server", &district.address(), "--code", &code]);

    let out = cli(&store, &["--lang", "en", "record", "--submit", "-a", "so-nguoi=3"]);
    assert_eq!(out.status.code(), Some(3), "the ratings are required");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let drafts = json(&store, &["list", "--status", "draft"]);
    let drafts = drafts.as_array().unwrap();
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    let id = drafts[0]["id"].as_str().unwrap();
    assert!(stdout.contains(id), "stdout names the draft: {stdout}");
    assert!(stderr.contains("not submitted") && stderr.contains(id), "{stderr}");

    // The same for scripts: the draft on stdout, the error on stderr.
    let out = cli(&store, &["--json", "record", "--submit", "-a", "so-nguoi=4"]);
    assert_eq!(out.status.code(), Some(3));
    let kept: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the draft, as JSON");
    assert_eq!(kept["status"], "draft");
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).expect("the error, as JSON");
    assert!(error["error"]["message"].as_str().unwrap().contains(kept["id"].as_str().unwrap()), "{error}");
    // Completing the draft is what a retry does: no duplicate.
    let mut args = vec!["edit", kept["id"].as_str().unwrap()];
    args.extend_from_slice(&RATINGS);
    ok(&store, &args);
    ok(&store, &["submit", kept["id"].as_str().unwrap()]);
    assert_eq!(json(&store, &["list"]).as_array().unwrap().len(), 2);
}

/// Response ids are long: `submit`, `void` and `edit` take their first characters, as long as
/// they begin one id only; otherwise the ids they begin are listed and nothing changes.
#[test]
fn responses_are_named_by_the_first_characters_of_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let campaign = fixtures::open_campaign();
    let district = District::start(dir.path(), &campaign);
    let code = district.code("nguyen-van-a", &["thon-dong"]);
    let store = dir.path().join("cli.db");
    json(&store, &["enroll", "--server", &district.address(), "--code", &code]);
    // Seventeen drafts: two of them begin with the same hexadecimal digit.
    let ids: Vec<String> = (0..17)
        .map(|_| {
            let mut args = vec!["record"];
            args.extend_from_slice(&RATINGS);
            json(&store, &args)["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let first = |id: &String| id.chars().next().unwrap();
    let shared = ids.iter().find(|a| ids.iter().filter(|b| first(b) == first(a)).count() > 1).map(first).unwrap();
    let prefix = shared.to_string();
    let out = cli(&store, &["--lang", "en", "submit", &prefix]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("begins several response ids"), "{said}");
    for id in ids.iter().filter(|id| first(id) == shared) {
        assert!(said.contains(id.as_str()), "{id} is listed: {said}");
    }
    assert_eq!(json(&store, &["status"])["counts"]["drafts"], 17, "nothing was submitted");

    // The shortest prefix of each that begins no other id.
    let unique = |id: &String| -> String {
        (1..=id.len())
            .map(|n| id[..n].to_owned())
            .find(|p| ids.iter().filter(|o| o.starts_with(p)).count() == 1)
            .unwrap()
    };
    let submitted = json(&store, &["submit", &unique(&ids[0]), &unique(&ids[1])]);
    assert_eq!(submitted, serde_json::json!([ids[0], ids[1]]), "the full ids are reported");
    let voided = json(&store, &["void", &unique(&ids[2]), "--reason", "Ghi nhầm hộ"]);
    assert_eq!((voided["id"].as_str(), voided["status"].as_str()), (Some(ids[2].as_str()), Some("voided")));
    let edited = json(&store, &["edit", &unique(&ids[3]), "-a", "so-nguoi=4"]);
    assert_eq!(edited["id"].as_str(), Some(ids[3].as_str()));
    // A prefix of no id is an unknown response, as before.
    assert_eq!(cli(&store, &["void", "zz-no-such", "--reason", "x"]).status.code(), Some(4));
    let counts = json(&store, &["status"])["counts"].clone();
    assert_eq!(
        (counts["drafts"].as_u64(), counts["pending"].as_u64(), counts["voided"].as_u64()),
        (Some(14), Some(2), Some(1))
    );
}
