//! The collector library against a real district server: enrollment, recording, sync
//! (interrupted, repeated, in different orders), acknowledgements, bundles.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use hamlet_mobile::views::ResponseFilter;
use hamlet_mobile::{Collector, CollectorError, SyncOptions};
use hamlet_sync_core::{Campaign, fixtures};
use support::{Cut, District, Front, phone_path};

const CAMPAIGN: &str = "tin-nhiem-2025";
/// A day within the fixture campaign's schedule: what phones record then counts.
const DAY: &str = "2025-06-02";

fn campaign() -> Campaign {
    fixtures::open_campaign()
}

/// A full answer sheet: every subject rated, `n` choosing the level.
fn answers(n: usize) -> Vec<(String, String)> {
    let levels = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"];
    let mut out: Vec<(String, String)> = campaign()
        .subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("tin-nhiem/{}", s.id), levels[(n + i) % 3].to_owned()))
        .collect();
    out.push(("so-nguoi".into(), format!("{}", 1 + n % 9)));
    out
}

fn quick() -> SyncOptions {
    SyncOptions {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        attempts: 1,
        backoff: Duration::from_millis(50),
        ..SyncOptions::default()
    }
}

/// A phone of collector `name`, enrolled through `server` (the district or a front before it)
/// with a one-time code the district issued for `hamlets`.
fn open_phone(dir: &std::path::Path, name: &str, district: &District, server: &str, hamlets: &[&str]) -> Collector {
    let phone = Collector::open(phone_path(dir, name)).expect("store opens");
    phone.set_fixed_today(Some(DAY)).expect("a day");
    phone.enroll(server, &district.code(name, hamlets), "phone").expect("enrolled");
    phone
}

fn record_submitted(phone: &Collector, hamlet: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = phone.record(CAMPAIGN, hamlet, &answers(i)).expect("recorded");
            phone.submit(&id).expect("submitted");
            id
        })
        .collect()
}

fn responses_counted(district: &District, hamlets: &[&str]) -> BTreeSet<String> {
    district.counted(&campaign(), hamlets).into_keys().map(|(r, _)| r).collect()
}

#[test]
fn records_offline_syncs_and_the_district_counts_each_submitted_response_once() {
    let dir = tempfile::tempdir().unwrap();
    // The campaign made as a district makes it, so that the server's own projector counts.
    let district = District::start_counting(dir.path(), &campaign());
    let phone = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong", "thon-tay"]);

    // Before the first sync the form is unknown: nothing can be recorded.
    assert!(matches!(phone.record(CAMPAIGN, "thon-dong", &answers(0)), Err(CollectorError::CampaignNotDownloaded(_))));
    let first = phone.sync(None, &quick(), &|_| ()).expect("first sync");
    assert!(first.changes_received >= 1, "{first:?}");
    assert!(phone.campaigns()[0].downloaded);

    let mut submitted = record_submitted(&phone, "thon-dong", 6);
    submitted.extend(record_submitted(&phone, "thon-tay", 4));
    let draft = phone.record(CAMPAIGN, "thon-dong", &answers(1)).expect("draft");
    let voided = submitted.pop().expect("one to void");
    phone.void(&voided, "ghi nhầm hộ").expect("voided");
    let counts = phone.counts().expect("counts");
    assert_eq!((counts.drafts, counts.pending, counts.acknowledged, counts.voided), (1, 9, 0, 1));
    assert_eq!(counts.recorded_today, 11);

    let report = phone.sync(None, &quick(), &|_| ()).expect("sync");
    assert_eq!(report.newly_acknowledged, 9, "{report:?}");
    assert_eq!((report.counts.pending, report.counts.acknowledged), (0, 9));
    assert!(report.round_trips <= 2, "{report:?}");
    let counted = responses_counted(&district, &["thon-dong", "thon-tay"]);
    assert_eq!(counted, submitted.iter().cloned().collect::<BTreeSet<_>>());
    assert!(!counted.contains(&draft) && !counted.contains(&voided));
    // Every subject's rating and the household size: four answers a response.
    assert_eq!(district.counted(&campaign(), &["thon-dong", "thon-tay"]).len(), 9 * 4);

    // Nothing new: nothing travels but heads.
    let again = phone.sync(None, &quick(), &|_| ()).expect("sync again");
    assert_eq!((again.changes_sent, again.changes_received, again.round_trips), (0, 0, 1), "{again:?}");
    let listed = phone.responses(&ResponseFilter { status: Some("submitted".into()), ..ResponseFilter::default() });
    assert!(listed.expect("lists").iter().all(|r| r.acknowledged));

    // The district's own counting, as staff read it: the server's projector and its results API
    // (closed, so that every counted answer shows). thon-dong 6 submitted, thon-tay 3 (one voided,
    // one draft); every subject rated by each, the levels rotating.
    district.close(&campaign());
    let results = district.results(&campaign());
    for subject in &campaign().subjects {
        let item =
            results["subjects"].as_array().unwrap().iter().find(|s| s["subject"] == subject.id.as_str()).unwrap();
        let row = |unit: &str| item["rows"].as_array().unwrap().iter().find(|r| r["unit"] == unit).cloned().unwrap();
        assert_eq!(
            (row("thon-dong")["total"].as_u64(), row("thon-tay")["total"].as_u64()),
            (Some(6), Some(3)),
            "{subject:?}"
        );
        assert_eq!(row("*")["counts"], serde_json::json!([3, 3, 3]), "{}: the campaign's levels", subject.id);
        assert_eq!(row("thon-tay")["counts"], serde_json::Value::Null, "a hamlet of 3 is not broken down");
    }
}

#[test]
fn answers_are_checked_against_the_form_with_the_question_named() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let phone = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong"]);
    phone.sync(None, &quick(), &|_| ()).expect("sync");
    let err = phone.record(CAMPAIGN, "thon-dong", &[("so-nguoi".into(), "99".into())]).expect_err("out of range");
    assert!(err.to_string().contains("so-nguoi"), "{err}");
    let err = phone.record(CAMPAIGN, "thon-tay", &answers(0)).expect_err("not assigned");
    assert!(matches!(err, CollectorError::HamletNotAssigned { .. }), "{err}");
    // A draft without the required ratings cannot be submitted; the error names one.
    let id = phone.record(CAMPAIGN, "thon-dong", &[("du-hop".into(), "có".into())]).expect("draft");
    let err = phone.submit(&id).expect_err("incomplete");
    assert!(err.to_string().contains("tin-nhiem"), "{err}");
    assert!(!phone.edit(&id, &answers(2)).expect("edited"), "a draft edit is not flagged");
    phone.submit(&id).expect("now complete");
    assert!(phone.void(&id, "   ").is_err(), "a void needs a reason");
}

/// Schema version 2: a hamlet's residents rate only the subjects whose scope holds it.
#[test]
fn the_phone_shows_and_accepts_only_its_hamlets_ballot() {
    let mut scoped = fixtures::scoped_campaign();
    scoped.transition(hamlet_sync_core::CampaignState::Open, Some(&fixtures::unit_tree())).expect("opens");
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &scoped);
    let phone = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong", "thon-tay"]);
    phone.sync(None, &quick(), &|_| ()).expect("sync");

    let ratings = |hamlet: &str| -> Vec<String> {
        let slots = phone.answer_slots(CAMPAIGN, hamlet).expect("slots");
        slots.into_iter().filter(|s| s.kind == "rating").map(|s| s.key).collect()
    };
    assert_eq!(ratings("thon-dong"), ["tin-nhiem/ong-an", "tin-nhiem/ba-binh"]);
    assert_eq!(ratings("thon-tay"), ["tin-nhiem/ong-an", "tin-nhiem/ong-cuong", "tin-nhiem/ba-dung"]);
    let view = phone.campaigns().remove(0);
    let ballots: Vec<(String, Vec<String>)> = view.hamlets.into_iter().map(|h| (h.id, h.ballot)).collect();
    assert_eq!(ballots[0], ("thon-dong".to_owned(), vec!["ong-an".to_owned(), "ba-binh".to_owned()]));

    // An answer about a cadre who lives elsewhere is refused, saying why.
    let outside = [("tin-nhiem/ong-cuong".to_owned(), "tin_nhiem".to_owned())];
    let err = phone.record(CAMPAIGN, "thon-dong", &outside).expect_err("not on the ballot");
    assert!(err.to_string().contains("ong-cuong is not evaluated in hamlet thon-dong"), "{err}");
    let err = phone.check_answer(CAMPAIGN, "thon-dong", "tin-nhiem/ong-cuong", "1").expect_err("checked too");
    assert!(matches!(err, CollectorError::Answer(_)), "{err}");
    phone.record(CAMPAIGN, "thon-tay", &outside).expect("thon-tay evaluates ong-cuong");

    // The hamlet's own ballot is a complete answer sheet.
    let own = [("tin-nhiem/ong-an".to_owned(), "1".to_owned()), ("tin-nhiem/ba-binh".to_owned(), "2".to_owned())];
    let id = phone.record(CAMPAIGN, "thon-dong", &own).expect("recorded");
    phone.submit(&id).expect("submitted");
    let err = phone.edit(&id, &outside).expect_err("an edit is checked against the ballot too");
    assert!(err.to_string().contains("not evaluated"), "{err}");
}

#[test]
fn two_collectors_in_one_hamlet_sync_in_any_order_with_cuts_and_every_response_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let front = Front::start(district.addr);
    let a = open_phone(dir.path(), "collector-a", &district, &front.address(), &["thon-dong"]);
    let b = open_phone(dir.path(), "collector-b", &district, &front.address(), &["thon-dong"]);
    for phone in [&a, &b] {
        phone.sync(None, &quick(), &|_| ()).expect("campaign downloaded");
    }
    // Offline, at the same time, in the same hamlet.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    expected.extend(record_submitted(&a, "thon-dong", 12));
    expected.extend(record_submitted(&b, "thon-dong", 9));

    // A's first sync is cut early, then late; B syncs whole; A retries; B syncs again.
    for cut in [Cut::Upstream(300), Cut::Downstream(900)] {
        front.cut_next(&[cut]);
        assert!(a.sync(None, &quick(), &|_| ()).is_err(), "cut at {cut:?}");
    }
    b.sync(None, &quick(), &|_| ()).expect("b syncs");
    let report = a.sync(None, &SyncOptions { attempts: 3, ..quick() }, &|_| ()).expect("a syncs");
    assert_eq!(report.counts.pending, 0, "{report:?}");
    b.sync(None, &quick(), &|_| ()).expect("b syncs again");
    assert_eq!(responses_counted(&district, &["thon-dong"]), expected);

    // More offline work on both; each is cut mid-way, and retries carry it through.
    expected.extend(record_submitted(&a, "thon-dong", 5));
    expected.extend(record_submitted(&b, "thon-dong", 5));
    front.cut_next(&[Cut::Downstream(600), Cut::Upstream(2_000)]);
    let opts = SyncOptions { attempts: 4, ..quick() };
    b.sync(None, &opts, &|_| ()).expect("b gets through");
    a.sync(None, &opts, &|_| ()).expect("a gets through");
    a.sync(None, &opts, &|_| ()).expect("a hears of b's");
    b.sync(None, &opts, &|_| ()).expect("b hears of a's");
    assert_eq!(responses_counted(&district, &["thon-dong"]), expected);
    assert_eq!(district.counted(&campaign(), &["thon-dong"]).len(), expected.len() * 4);
    // Both phones now hold every response, each once.
    for phone in [&a, &b] {
        let all = phone.responses(&ResponseFilter::default()).expect("lists");
        assert_eq!(all.iter().map(|r| r.id.clone()).collect::<BTreeSet<_>>(), expected);
        assert_eq!(all.len(), expected.len());
    }
    assert_eq!(a.counts().expect("counts").acknowledged, 17);
}

#[test]
fn an_edit_after_submission_on_one_device_while_another_syncs_is_flagged_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let a = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong"]);
    let b = open_phone(dir.path(), "collector-b", &district, &district.address(), &["thon-dong"]);
    a.sync(None, &quick(), &|_| ()).expect("a");
    b.sync(None, &quick(), &|_| ()).expect("b");
    let ids = record_submitted(&a, "thon-dong", 3);
    a.sync(None, &quick(), &|_| ()).expect("a syncs its submissions");
    b.sync(None, &quick(), &|_| ()).expect("b hears of them");

    // A edits a submitted response; meanwhile B records and syncs.
    let flagged = a.edit(&ids[0], &[("tin-nhiem/ong-an".into(), "tin_nhiem_thap".into())]).expect("edited");
    assert!(flagged, "an edit after submission is flagged");
    let b_ids = record_submitted(&b, "thon-dong", 2);
    b.sync(None, &quick(), &|_| ()).expect("b");
    a.sync(None, &quick(), &|_| ()).expect("a");
    b.sync(None, &quick(), &|_| ()).expect("b again");

    let counted = district.counted(&campaign(), &["thon-dong"]);
    assert_eq!(counted.len(), 5 * 4, "five responses, four counted answers each");
    let sealed = a.response(&ids[0]).expect("read");
    let key = (ids[0].clone(), "tin-nhiem/ong-an".to_owned());
    assert_eq!(counted[&key], format!("Level({:?})", level_of(&sealed.sealed_answers["tin-nhiem/ong-an"])));
    let flags = district.flags(&campaign(), &["thon-dong"]);
    assert_eq!(flags.iter().filter(|f| f.contains("EditedAfterSeal")).count(), 1, "{flags:?}");
    // B sees the flag too, on the same response.
    let on_b = b.response(&ids[0]).expect("b has it");
    assert_eq!(on_b.edited_after_submission, vec!["tin-nhiem/ong-an".to_owned()]);
    assert!(b_ids.iter().all(|id| counted.contains_key(&(id.clone(), "so-nguoi".to_owned()))));
}

fn level_of(code: &str) -> hamlet_sync_core::Level {
    hamlet_sync_core::Level::from_code(code).expect("a level code")
}

#[test]
fn enrollment_follows_the_contract_and_sync_carries_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let front = Front::start(district.addr);
    let phone = Collector::open(phone_path(dir.path(), "phone")).expect("opens");
    phone.set_fixed_today(Some(DAY)).expect("a day");
    assert!(matches!(phone.sync(None, &quick(), &|_| ()), Err(CollectorError::NotEnrolled)));

    let err = phone.enroll(&front.address(), "WRONG", "Máy của chị Lan").expect_err("unknown code");
    assert!(
        matches!(err, CollectorError::Enroll(hamlet_mobile::enroll::EnrollError::Refused { status: 401, .. })),
        "{err}"
    );
    let code = district.code("nguyen-van-a", &["thon-dong", "thon-tay"]);
    let enrolled = phone.enroll(&front.address(), &code, "Máy của chị Lan").expect("enrolled");
    assert_eq!(enrolled.collector, "nguyen-van-a");
    assert!(enrolled.has_token);
    assert_eq!(enrolled.campaigns[0].hamlets, vec!["thon-dong".to_owned(), "thon-tay".to_owned()]);
    let again = Collector::open(phone_path(dir.path(), "other")).expect("opens");
    let err = again.enroll(&front.address(), &code, "x").expect_err("used code");
    assert!(err.to_string().contains("already used"), "{err}");

    let report = phone.sync(None, &quick(), &|_| ()).expect("sync");
    assert_eq!(report.documents, 3, "a campaign document and two ledgers");
    let tokens = front.seen_tokens();
    assert!(tokens.len() == 1 && tokens[0].as_ref().is_some_and(|t| t.len() == 64), "{tokens:?}");
    record_submitted(&phone, "thon-tay", 2);
    phone.sync(None, &quick(), &|_| ()).expect("sync");
    assert_eq!(responses_counted(&district, &["thon-tay"]).len(), 2);
    // The token shows in no debug output.
    let token = tokens[0].clone().unwrap();
    assert!(!format!("{phone:?}").contains(&token), "the token is in Debug output");
    // The enrollment survives a restart.
    drop(phone);
    let reopened = Collector::open(phone_path(dir.path(), "phone")).expect("reopens");
    assert_eq!(reopened.enrollment().map(|e| e.collector), Some("nguyen-van-a".to_owned()));
    assert_eq!(reopened.counts().expect("counts").acknowledged, 2);
}

#[test]
fn an_interrupted_sync_does_not_resend_what_the_server_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let front = Front::start(district.addr);
    let phone = open_phone(dir.path(), "collector-a", &district, &front.address(), &["thon-dong"]);
    phone.sync(None, &quick(), &|_| ()).expect("campaign");
    let big: Vec<(String, String)> = answers(0)
        .into_iter()
        .chain(campaign().subjects.iter().map(|s| (format!("y-kien/{}", s.id), "ý kiến ".repeat(200))))
        .collect();
    for _ in 0..5 {
        let id = phone.record(CAMPAIGN, "thon-dong", &big).expect("recorded");
        phone.submit(&id).expect("submitted");
    }
    // Find a cut that lets the changes reach the server but not its acknowledgement: cut the
    // downstream just before the server's last message.
    let mut cut_at = 200;
    let mut acknowledged_but_unheard = false;
    while cut_at < 20_000 {
        front.cut_next(&[Cut::Downstream(cut_at)]);
        let result = phone.sync(None, &quick(), &|_| ());
        if result.is_ok() {
            break;
        }
        let at_server = responses_counted(&district, &["thon-dong"]).len();
        if at_server == 5 && phone.counts().expect("counts").pending > 0 {
            acknowledged_but_unheard = true;
            break;
        }
        cut_at += 150;
    }
    assert!(acknowledged_but_unheard, "no cut left the acknowledgement unheard");
    let report = phone.sync(None, &quick(), &|_| ()).expect("the next sync finishes");
    assert_eq!(report.changes_sent, 0, "nothing acknowledged is sent again: {report:?}");
    assert!(report.bytes_sent < 1_000, "{report:?}");
    assert_eq!(report.counts.pending, 0);
    assert_eq!(report.newly_acknowledged, 5);
}

#[test]
fn a_server_that_never_answers_times_out_and_is_retried_with_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let front = Front::start(district.addr);
    let phone = open_phone(dir.path(), "collector-a", &district, &front.address(), &["thon-dong"]);
    front.black_hole(true);
    let options = SyncOptions {
        connect_timeout: Duration::from_millis(300),
        reply_timeout: Duration::from_millis(300),
        attempts: 3,
        backoff: Duration::from_millis(100),
        ..SyncOptions::default()
    };
    let events = std::sync::Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    let err = phone.sync(None, &options, &|e| events.lock().unwrap().push(e)).expect_err("times out");
    assert!(matches!(err, CollectorError::Sync(hamlet_mobile::sync::SyncError::Timeout(_))), "{err}");
    assert_eq!(front.connections(), 3);
    let retries: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            hamlet_mobile::SyncEvent::Retrying { after_ms, .. } => Some(*after_ms),
            _ => None,
        })
        .collect();
    assert_eq!(retries, vec![100, 200], "exponential back-off");
    assert!(started.elapsed() >= Duration::from_millis(300 * 3 + 300));
    front.black_hole(false);
    phone.sync(None, &quick(), &|_| ()).expect("then it works");
}

#[test]
fn a_bundle_carries_what_the_server_has_not_acknowledged_and_importing_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let a = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong"]);
    // A relay's device: a collector's phone may carry only its own new changes to the server.
    let relay = Collector::open(phone_path(dir.path(), "relay")).expect("store opens");
    let code = district.code_as("relay", hamlet_server::accounts::Role::Relay, &["thon-dong"]);
    relay.enroll(&district.address(), &code, "relay").expect("enrolled");
    let late = open_phone(dir.path(), "late", &district, &district.address(), &["thon-dong"]);
    a.sync(None, &quick(), &|_| ()).expect("a");
    let synced = record_submitted(&a, "thon-dong", 2);
    a.sync(None, &quick(), &|_| ()).expect("a");
    relay.sync(None, &quick(), &|_| ()).expect("the relay holds what the district holds");
    let offline = record_submitted(&a, "thon-dong", 3);

    let file = dir.path().join("a.hamlet-bundle");
    let exported = a.export_bundle(&file, &|_, _| ()).expect("exported");
    assert_eq!(exported.documents, 1);
    assert_eq!(exported.changes, 6, "three records and three submissions, nothing acknowledged: {exported:?}");
    assert_eq!(exported.bytes, std::fs::metadata(&file).unwrap().len());

    let first = relay.import_bundle(&file, &|_, _| ()).expect("imported");
    assert_eq!((first.documents, first.changes), (1, 6), "{first:?}");
    assert!(first.incomplete.is_empty() && first.skipped.is_empty());
    let second = relay.import_bundle(&file, &|_, _| ()).expect("imported again");
    assert_eq!(second.changes, 0, "importing twice changes nothing");
    let ids: BTreeSet<String> =
        relay.responses(&ResponseFilter::default()).expect("lists").into_iter().map(|r| r.id).collect();
    assert!(offline.iter().chain(&synced).all(|id| ids.contains(id)));
    // A device that lacks the earlier history is told the bundle is incomplete.
    let partial = late.import_bundle(&file, &|_, _| ()).expect("imported");
    assert_eq!(partial.incomplete.len(), 1, "{partial:?}");

    // The relay forwards to the district.
    relay.sync(None, &quick(), &|_| ()).expect("relay syncs");
    let expected: BTreeSet<String> = synced.into_iter().chain(offline).collect();
    assert_eq!(responses_counted(&district, &["thon-dong"]), expected);
    // A damaged file is refused whole.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&file, bytes).unwrap();
    assert!(matches!(relay.import_bundle(&file, &|_, _| ()), Err(CollectorError::Bundle(_))));
}

#[test]
fn tallies_are_recorded_corrected_and_reach_the_district() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let phone = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong"]);
    phone.sync(None, &quick(), &|_| ()).expect("sync");
    let mut input = hamlet_mobile::views::TallyInput {
        id: None,
        campaign: CAMPAIGN.into(),
        hamlet: "thon-dong".into(),
        issued: 100,
        returned: 95,
        valid: 90,
        invalid: 6,
        counts: [("tin-nhiem/ong-an/tin_nhiem".to_owned(), 80)].into(),
    };
    let err = phone.record_tally(&input).expect_err("90 + 6 is not 95");
    assert!(err.to_string().contains("95"), "{err}");
    input.invalid = 5;
    let id = phone.record_tally(&input).expect("recorded");
    input.id = Some(id.clone());
    input.counts.insert("tin-nhiem/ong-an/tin_nhiem_thap".into(), 10);
    assert_eq!(phone.record_tally(&input).expect("corrected"), id);
    let tallies = phone.tallies(None, None).expect("lists");
    assert_eq!(tallies.len(), 1);
    assert_eq!(tallies[0].counts.len(), 2);
    phone.sync(None, &quick(), &|_| ()).expect("sync");
    let ledger = district.ledger(&campaign(), "thon-dong").expect("at the district");
    assert_eq!(ledger.tallies().expect("reads").len(), 1);
}

#[test]
fn the_token_goes_only_to_the_server_the_device_enrolled_with() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let elsewhere = Front::start(district.addr);
    let phone = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong"]);
    let err = phone.sync(Some(&elsewhere.address()), &quick(), &|_| ()).expect_err("another server");
    assert!(matches!(err, CollectorError::UntrustedServer { .. }), "{err}");
    assert_eq!(elsewhere.connections(), 0, "nothing was sent there");
    assert!(elsewhere.seen_tokens().is_empty());
    // The enrolled server, named as given at enrollment or not at all, is fine.
    phone.sync(Some(&district.address()), &quick(), &|_| ()).expect("the enrolled server");
}

#[test]
fn a_sync_has_an_overall_deadline_whatever_its_timeouts_and_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let front = Front::start(district.addr);
    let phone = open_phone(dir.path(), "collector-a", &district, &front.address(), &["thon-dong"]);
    front.black_hole(true);
    let options = SyncOptions {
        reply_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(20),
        attempts: 5,
        deadline: Duration::from_millis(700),
        ..quick()
    };
    let started = std::time::Instant::now();
    let err = phone.sync(None, &options, &|_| ()).expect_err("deadline");
    assert!(matches!(err, CollectorError::Sync(hamlet_mobile::sync::SyncError::Deadline(_))), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_sync_can_be_cancelled_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let front = Front::start(district.addr);
    let phone = open_phone(dir.path(), "collector-a", &district, &front.address(), &["thon-dong"]);
    front.black_hole(true);
    let options = SyncOptions { reply_timeout: Duration::from_secs(20), attempts: 3, ..quick() };
    let started = std::time::Instant::now();
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            phone.cancel_sync();
        });
        phone.sync(None, &options, &|_| ()).expect_err("cancelled")
    });
    assert!(matches!(err, CollectorError::Sync(hamlet_mobile::sync::SyncError::Cancelled)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // A cancel before a sync does not cancel the next one.
    front.black_hole(false);
    phone.sync(None, &quick(), &|_| ()).expect("the next sync runs");
}

/// Writes a change by the phone's own actor into its copy of the campaign document, which the
/// server takes from no device (as an imported bundle could, before bundles were checked).
fn write_into_campaign_document(path: &std::path::Path, actor: &str) {
    use hamlet_mobile::store::{DocWrite, Store};
    use hamlet_sync_core::automerge::transaction::Transactable;
    use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ROOT};
    use hamlet_sync_core::{CampaignId, DocumentId};
    let id = DocumentId::for_campaign(&CampaignId::new(CAMPAIGN).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(path).await.unwrap();
        let mut bytes = Vec::new();
        for c in store.chunks().await.unwrap().into_iter().filter(|c| c.document == id.to_string()) {
            bytes.extend(c.data);
        }
        let mut doc = Automerge::load(&bytes).unwrap().with_actor(ActorId::try_from(actor).unwrap());
        let before = doc.get_heads();
        doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "state", "closed")).map_err(|f| f.error).unwrap();
        let chunk = doc.save_after(&before);
        store.write(&DocWrite { document: id.to_string(), chunk: Some(chunk), ..DocWrite::default() }).await.unwrap();
        store.close().await;
    });
}

#[test]
fn a_refused_document_ends_its_own_sync_and_the_other_ledgers_still_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let path = phone_path(dir.path(), "collector-a");
    let phone = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong", "thon-tay"]);
    phone.sync(None, &quick(), &|_| ()).expect("campaign downloaded");
    let mut recorded = record_submitted(&phone, "thon-dong", 3);
    recorded.extend(record_submitted(&phone, "thon-tay", 2));
    let actor = phone.actor_id();
    drop(phone);
    write_into_campaign_document(&path, &actor);

    let phone = Collector::open(&path).expect("reopens");
    phone.set_fixed_today(Some(DAY)).expect("a day");
    let report = phone.sync(None, &quick(), &|_| ()).expect("the sync goes on past the refusal");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(report.refused[0].reason.contains("read-only"), "{report:?}");
    assert_eq!(report.counts.pending, 0, "{report:?}");
    assert_eq!(responses_counted(&district, &["thon-dong", "thon-tay"]), recorded.into_iter().collect());
    // The refusal is kept and shown until a sync gets through.
    assert_eq!(phone.refusals().expect("lists").len(), 1);
}

/// Issue 9, phone side: a bundle that changes the campaign document (which only the district
/// writes) used to be applied whole; the server then refused the phone's every message.
#[test]
fn an_imported_bundle_never_changes_the_campaign_document() {
    use hamlet_sync_core::automerge::transaction::Transactable;
    use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ROOT};
    use hamlet_sync_core::bundle::{Bundle, BundleDocument};
    use hamlet_sync_core::{CampaignId, Day, DocumentId};

    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let phone = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong"]);
    phone.sync(None, &quick(), &|_| ()).expect("campaign downloaded");
    // A bundle from somewhere: the campaign "closed" by a stranger.
    let id = DocumentId::for_campaign(&CampaignId::new(CAMPAIGN).unwrap());
    let path = phone_path(dir.path(), "collector-a");
    drop(phone);
    let stored = {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = hamlet_mobile::store::Store::open(&path).await.unwrap();
            let mut bytes = Vec::new();
            for c in store.chunks().await.unwrap().into_iter().filter(|c| c.document == id.to_string()) {
                bytes.extend(c.data);
            }
            store.close().await;
            Automerge::load(&bytes).unwrap()
        })
    };
    let mut doc = stored.fork().with_actor(ActorId::random());
    doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "state", "closed")).map_err(|f| f.error).unwrap();
    let bundle = Bundle {
        source: "stranger".into(),
        created_on: Day::from_ymd(2025, 6, 2).unwrap(),
        documents: vec![BundleDocument { id, changes: doc.save_after(&stored.get_heads()), heads: doc.get_heads() }],
    };
    let file = dir.path().join("stranger.bundle");
    std::fs::write(&file, bundle.encode()).unwrap();

    let phone = Collector::open(&path).expect("reopens");
    phone.set_fixed_today(Some(DAY)).unwrap();
    let report = phone.import_bundle(&file, &|_, _| ()).expect("read");
    assert_eq!(report.changes, 0, "{report:?}");
    assert_eq!(report.refused, vec![id.url()], "{report:?}");
    assert_eq!(phone.campaigns()[0].state, "open");
    // The phone's own work still syncs, with nothing refused.
    let recorded = record_submitted(&phone, "thon-dong", 2);
    let synced = phone.sync(None, &quick(), &|_| ()).expect("syncs");
    assert!(synced.refused.is_empty(), "{synced:?}");
    assert_eq!(responses_counted(&district, &["thon-dong"]), recorded.into_iter().collect());
}

/// A fake server: answers the WebSocket upgrade, then sends `frames` (raw WebSocket frames, as
/// written on the wire) and holds the connection open. Counts the connections it accepted.
fn fake_server(frames: Vec<Vec<u8>>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let frames = frames.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let key = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("sec-websocket-key:")
                            .then(|| l["sec-websocket-key:".len()..].trim().to_owned())
                    })
                    .unwrap_or_default();
                let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if stream.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                for frame in &frames {
                    if stream.write_all(frame).is_err() {
                        return;
                    }
                }
                // Hold the connection: the phone must end the sync by itself.
                std::thread::sleep(Duration::from_secs(30));
            });
        }
    });
    (address, connections)
}

/// A raw binary (or continuation) frame from a server: unmasked, with a 64-bit length.
fn raw_frame(first: bool, fin: bool, claimed_len: u64, payload: &[u8]) -> Vec<u8> {
    let opcode = if first { 0x2 } else { 0x0 };
    let mut out = vec![if fin { 0x80 | opcode } else { opcode }, 127];
    out.extend_from_slice(&claimed_len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// tungstenite accepts messages of 64 MiB by default (in frames of 16 MiB): a server could make
/// the phone hold that much at once. The phone takes the server's own bound, 16 MiB a message,
/// ends the sync with an error that says so, and does not try again for the same answer.
#[test]
fn a_message_larger_than_the_servers_own_bound_ends_the_sync_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ten_mib = vec![0u8; 10 << 20];
    let cases = [
        // One message of 20 MiB in two frames of 10 MiB: each frame is within tungstenite's
        // default frame bound, the message within its default message bound.
        vec![
            raw_frame(true, false, ten_mib.len() as u64, &ten_mib),
            raw_frame(false, true, ten_mib.len() as u64, &ten_mib),
        ],
        // A frame that claims a gibibyte and never sends it.
        vec![raw_frame(true, true, 1 << 30, &[])],
    ];
    for (n, frames) in cases.into_iter().enumerate() {
        let (address, connections) = fake_server(frames);
        let phone = Collector::open(phone_path(dir.path(), &format!("phone-{n}"))).expect("store opens");
        phone
            .setup_without_enrollment(&address, "collector-a", &[(CAMPAIGN.into(), vec!["thon-dong".into()])])
            .expect("set up");
        let options = SyncOptions { reply_timeout: Duration::from_secs(20), attempts: 3, ..quick() };
        let started = std::time::Instant::now();
        let err = phone.sync(None, &options, &|_| ()).expect_err("too large");
        assert!(
            matches!(err, CollectorError::Sync(hamlet_mobile::sync::SyncError::TooLarge { limit: 16_777_216 })),
            "case {n}: {err}"
        );
        assert!(err.to_string().contains("16 MiB"), "case {n}: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "case {n}: {:?}", started.elapsed());
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1, "case {n}: not retried");
    }
}

/// A document the server holds that would grow beyond what a phone keeps (64 MiB by default,
/// the server's own bound; smaller here) is refused for that document: its changes are not
/// kept, the reason is shown, and the phone's other ledgers still go through.
#[test]
fn a_document_that_would_grow_beyond_the_bound_is_refused_and_the_others_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let a = open_phone(dir.path(), "collector-a", &district, &district.address(), &["thon-dong"]);
    a.sync(None, &quick(), &|_| ()).expect("a");
    record_submitted(&a, "thon-dong", 150);
    a.sync(None, &quick(), &|_| ()).expect("a");
    // Room for the campaign document (as a phone stores it: its changes), not for the ledger.
    let campaign_doc = hamlet_sync_core::campaign_doc::new_campaign_doc(
        &campaign(),
        hamlet_sync_core::automerge::ActorId::random(),
        hamlet_sync_core::Day::from_ymd(2025, 5, 20).unwrap(),
    )
    .unwrap();
    let limit = campaign_doc.save_after(&[]).len() + 4096;
    let big = district.ledger(&campaign(), "thon-dong").expect("at the district").doc().save_after(&[]).len();
    assert!(big > 2 * limit, "the premise: thon-dong's ledger is {big} bytes, the bound {limit}");

    let b = open_phone(dir.path(), "collector-b", &district, &district.address(), &["thon-dong", "thon-tay"]);
    let options = SyncOptions { max_document_bytes: limit, ..quick() };
    b.sync(None, &options, &|_| ()).expect("campaign downloaded");
    let mine = record_submitted(&b, "thon-tay", 2);
    let report = b.sync(None, &options, &|_| ()).expect("the sync goes on past the refusal");
    let thon_dong = hamlet_sync_core::DocumentId::for_ledger(
        &hamlet_sync_core::CampaignId::new(CAMPAIGN).unwrap(),
        &hamlet_sync_core::UnitId::new("thon-dong").unwrap(),
    );
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].document, thon_dong.url(), "{report:?}");
    assert!(report.refused[0].reason.contains("refused by this phone"), "{report:?}");
    assert_eq!(report.counts.pending, 0, "{report:?}");
    assert_eq!(responses_counted(&district, &["thon-tay"]), mine.into_iter().collect());
    // Nothing of the refused ledger was kept, now or after reopening.
    let everyone = ResponseFilter { mine_only: false, hamlet: Some("thon-dong".into()), ..Default::default() };
    assert!(b.responses(&everyone).expect("lists").is_empty());
    assert_eq!(b.refusals().expect("lists").len(), 1);
    drop(b);
    let b = Collector::open(phone_path(dir.path(), "collector-b")).expect("reopens");
    assert!(b.responses(&everyone).expect("lists").is_empty());
    // With the default bound the same ledger comes through.
    b.set_fixed_today(Some(DAY)).unwrap();
    let report = b.sync(None, &quick(), &|_| ()).expect("syncs");
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(b.responses(&everyone).expect("lists").len(), 150);
    assert!(b.refusals().expect("lists").is_empty());
}

/// The phone sends its clock as it connects to sync, and the district keeps how far it is from
/// its own (a phone days off is flagged on the devices page).
#[test]
fn a_phone_tells_its_clock_as_it_connects_and_the_district_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let front = Front::start(district.addr);
    let phone = open_phone(dir.path(), "collector-a", &district, &front.address(), &["thon-dong"]);
    phone.sync(None, &quick(), &|_| ()).expect("sync");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let clocks = front.seen_clocks();
    assert_eq!(clocks.len(), 1, "{clocks:?}");
    assert!(clocks[0].is_some_and(|c| (now - c).abs() < 60_000), "{clocks:?} at {now}");
    let offsets = district.clock_offsets();
    assert_eq!(offsets.len(), 1, "{offsets:?}");
    assert!(offsets[0].1.is_some_and(|o| o.abs() < 60_000), "{offsets:?}");
}
