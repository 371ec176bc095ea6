//! The official automerge-repo JavaScript client, unchanged, against the server binary: one
//! client writes documents, the server is killed with SIGKILL and restarted, and a fresh client
//! with no local data reads them all back.
//!
//! Needs Node.js and `npm ci` in `tests/js`. Outside CI a missing install is reported and the
//! test returns; in CI (`CI=true`) it fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;

use std::process::Command;

use client::Process;

#[test]
fn the_javascript_client_writes_and_a_fresh_one_reads_after_a_kill() {
    if !client::node_ready("JavaScript interoperability test") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let written = data.path().join("written.json");
    let written = written.to_str().unwrap();

    let server = Process::spawn(&["--data-dir", data_dir]);
    client::node("write.mjs", &[&server.url(), written, "--docs", "8"], &[]);
    server.kill();

    let server = Process::spawn(&["--data-dir", data_dir]);
    client::node("read.mjs", &[&server.url(), written], &[]);
    assert!(server.terminate().success(), "SIGTERM exits 0");
}

fn node_output(args: &[&str]) -> String {
    let output = client::without_hamlet_variables(&mut Command::new("node"))
        .args(args)
        .current_dir(client::js_dir())
        .output()
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node {args:?} failed:\n{text}");
    eprintln!("{}", text.trim());
    text
}

/// A collector's phone written in JavaScript from `docs/schema.md` alone: it builds ledgers
/// offline, enrolls with a one-time code, syncs with its device token; the server (killed and
/// restarted in between) serves them back, and the district projection counts its responses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_collector_enrolls_and_syncs_ledgers_with_a_token() {
    if !client::node_ready("JavaScript interoperability test") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let out = data.path().join("ledgers.json");
    let out = out.to_str().unwrap().to_owned();

    // The first admin comes from the command line, with a one-time password.
    let created = client::server_command()
        .args(["admin", "create", "boss", "--data-dir", &data_dir])
        .output()
        .expect("admin create runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let printed = String::from_utf8_lossy(&created.stdout).into_owned();
    let password = printed
        .lines()
        .find_map(|l| l.strip_prefix("One-time password: "))
        .unwrap_or_else(|| panic!("no password in {printed:?}"))
        .to_owned();

    let server = Process::spawn_secure(&["--data-dir", &data_dir]);
    let base = format!("http://{}", server.addr);
    let body = serde_json::json!({ "name": "boss", "password": password }).to_string();
    let session = client::http(server.addr, "POST", "/api/session", &[], Some(&body)).await;
    assert_eq!(session.status, 200, "{session:?}");
    let cookie = format!("hamlet_session={}", session.cookie("hamlet_session").unwrap());
    let csrf = session.json()["csrf"].as_str().unwrap().to_owned();
    let admin = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    // Nothing else is allowed until the one-time password is changed.
    let blocked = client::http(server.addr, "GET", "/api/people", &admin, None).await;
    assert_eq!((blocked.status, blocked.json()["code"].as_str()), (403, Some("password_change_required")));
    let form = format!(
        "csrf={csrf}&current={password}&new=m%E1%BA%ADt+kh%E1%BA%A9u+m%E1%BB%9Bi&confirm=m%E1%BA%ADt+kh%E1%BA%A9u+m%E1%BB%9Bi"
    );
    let changed = client::http(
        server.addr,
        "POST",
        "/password",
        &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")],
        Some(&form),
    )
    .await;
    assert_eq!(changed.status, 303, "{changed:?}");

    // The district sets up the campaign the JavaScript phone records for: its units, its
    // definition, open.
    let units = hamlet_server::district::catalog::units_csv(hamlet_sync_core::fixtures::unit_tree().units());
    let csv_headers = [admin[0], admin[1], ("Content-Type", "text/csv")];
    let imported = client::http(server.addr, "POST", "/api/units", &csv_headers, Some(&units)).await;
    assert_eq!(imported.status, 200, "{imported:?}");
    let mut draft = hamlet_sync_core::fixtures::open_campaign();
    draft.state = hamlet_sync_core::CampaignState::Draft;
    let created =
        client::http(server.addr, "POST", "/api/campaigns", &admin, Some(&serde_json::to_string(&draft).unwrap()))
            .await;
    assert_eq!(created.status, 201, "{created:?}");
    let opened = client::http(server.addr, "POST", "/api/campaigns/tin-nhiem-2025/open", &admin, None).await;
    assert_eq!(opened.status, 200, "{opened:?}");

    let person = r#"{"id":"js-collector","display_name":"Chị Lan","role":"collector"}"#;
    assert_eq!(client::http(server.addr, "POST", "/api/people", &admin, Some(person)).await.status, 201);
    let assign = r#"{"campaign":"tin-nhiem-2025","hamlets":["thon-dong","thon-tay"]}"#;
    let assigned = client::http(server.addr, "PUT", "/api/people/js-collector/assignments", &admin, Some(assign)).await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    let code = client::http(server.addr, "POST", "/api/people/js-collector/enrollment-codes", &admin, Some("{}")).await;
    let code = code.json()["code"].as_str().unwrap().to_owned();

    node_output(&["ledger.mjs", "write", &base, &code, "tin-nhiem-2025", "thon-dong,thon-tay", "6", &out]);
    server.kill();
    let server = Process::spawn_secure(&["--data-dir", &data_dir]);
    node_output(&["ledger.mjs", "read", &format!("http://{}", server.addr), &out]);
    // The district counted what the phone sent: its own projector, read through its API.
    let session = client::http(
        server.addr,
        "POST",
        "/api/session",
        &[],
        Some(&serde_json::json!({ "name": "boss", "password": "mật khẩu mới" }).to_string()),
    )
    .await;
    assert_eq!(session.status, 200, "{session:?}");
    let cookie = format!("hamlet_session={}", session.cookie("hamlet_session").unwrap());
    // The server is another process: its API is the only way to see the projection, so poll
    // it, with a deadline (10 s).
    let mut progress = serde_json::Value::Null;
    for _ in 0..100 {
        progress =
            client::http(server.addr, "GET", "/api/campaigns/tin-nhiem-2025/progress", &[("Cookie", &cookie)], None)
                .await
                .json();
        if progress["totals"]["recorded"] == 12 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for hamlet in ["thon-dong", "thon-tay"] {
        let row = progress["hamlets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == hamlet)
            .unwrap_or_else(|| panic!("{hamlet} in {progress}"));
        assert_eq!((row["recorded"].as_u64(), row["submitted"].as_u64()), (Some(6), Some(3)), "{hamlet}: {row}");
    }
    let results =
        client::http(server.addr, "GET", "/api/campaigns/tin-nhiem-2025/results", &[("Cookie", &cookie)], None).await;
    assert_eq!(results.status, 200, "{results:?}");
    let results = results.json();
    let commune = results["units"].as_array().unwrap().iter().find(|u| u["id"] == "xa-a").expect("the commune");
    assert_eq!(commune["submitted"], 6, "both hamlets' sealed responses count in their commune: {commune}");
    // Each cadre was rated by fewer than the minimum group: the ratings stay hidden.
    for subject in results["subjects"].as_array().unwrap() {
        assert!(subject["rows"].as_array().unwrap().iter().all(|r| r["suppressed"] == true), "{subject}");
    }
    assert!(server.terminate().success());

    // What the JavaScript phone wrote reads as valid ledgers, counted as the schema says.
    let store = hamlet_server::store::Store::open(&format!("sqlite:{data_dir}/hamlet.db")).await.unwrap();
    let campaign = hamlet_sync_core::fixtures::open_campaign();
    for hamlet in ["thon-dong", "thon-tay"] {
        let id = hamlet_sync_core::DocumentId::for_ledger(&campaign.id, &hamlet.parse().unwrap());
        let mut doc = hamlet_sync_core::automerge::Automerge::new();
        for chunk in store.load(&id.to_string()).await.unwrap() {
            doc.load_incremental(&chunk.data).unwrap();
        }
        let ledger = hamlet_sync_core::Ledger::from_doc(doc).expect("a valid ledger");
        let canonical = hamlet_sync_core::Ledger::skeleton(&campaign.id, &hamlet.parse().unwrap()).get_heads();
        let changes = ledger.doc().get_changes(&[]);
        assert!(changes.iter().any(|c| canonical.contains(&c.hash())), "the JavaScript skeleton is the canonical one");
        let rows = hamlet_sync_core::project(&campaign, &ledger).unwrap().rows;
        assert_eq!(rows.responses.len(), 6, "{hamlet}");
        assert_eq!(rows.answers.iter().filter(|a| a.counted).count(), 3 * 4, "3 sealed responses x 4 answers");
        assert!(rows.flags.is_empty(), "{:?}", rows.flags);
        assert!(rows.conflicts.is_empty(), "{:?}", rows.conflicts);
    }
    store.close().await;
}
