//! The FFI surface, tested through the generated Python bindings: the library is built as the
//! phone apps get it (the cdylib), `uniffi-bindgen` generates Python from it, and a Python
//! script enrolls, records 50 responses across two hamlets, submits them and syncs with a real
//! server, where they are counted.
//!
//! Without python3 the test prints a loud SKIPPED line, except in CI (`CI=true`), where it fails.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../../server/tests/pki/mod.rs"]
mod pki;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use hamlet_sync_core::enrollment::EnrollmentLink;
use hamlet_sync_core::fixtures;
use support::{District, Front};

/// `target/debug` (or the profile folder the tests run from).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/python-<hash>
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_owned()
}

fn python3() -> Option<PathBuf> {
    let ok = Command::new("python3").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    ok.then(|| PathBuf::from("python3"))
}

/// The cdylib and the generated Python module beside it, in `dir/bindings`.
fn bindings(dir: &Path) -> PathBuf {
    let profile = profile_dir();
    let release = profile.file_name().is_some_and(|n| n == "release");
    // The cdylib and the generator, built as `cargo build` builds them (cargo test builds only
    // the rlib). The test runs after cargo has released its build lock.
    // Two commands: `--lib` would apply to both packages, and the generator has only a binary.
    for args in [["-p", "hamlet-mobile", "--lib"], ["-p", "hamlet-uniffi-bindgen", "--bins"]] {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet"]).args(args);
        if release {
            build.arg("--release");
        }
        let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("cargo runs");
        assert!(status.success(), "cargo build {args:?}");
    }
    let library =
        profile.join(format!("{}hamlet_mobile{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    let bindgen = profile.join(format!("uniffi-bindgen{}", std::env::consts::EXE_SUFFIX));
    assert!(library.exists(), "{} was not built", library.display());
    assert!(bindgen.exists(), "{} was not built", bindgen.display());

    let bindings = dir.join("bindings");
    let out = Command::new(&bindgen)
        .args(["generate", "--library"])
        .arg(&library)
        .args(["--language", "python", "--out-dir"])
        .arg(&bindings)
        .output()
        .expect("uniffi-bindgen runs");
    assert!(out.status.success(), "uniffi-bindgen: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::copy(&library, bindings.join(library.file_name().unwrap())).expect("library beside the bindings");
    bindings
}

fn python_or_skip() -> Option<PathBuf> {
    let python = python3();
    if python.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "python3 is required in CI for the FFI test");
        eprintln!("\n**** SKIPPED the Python bindings test: python3 is not installed ****\n");
    }
    python
}

#[test]
fn the_python_bindings_enroll_record_fifty_responses_and_sync_them_to_the_server() {
    let Some(python) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bindings = bindings(dir.path());

    let campaign = fixtures::open_campaign();
    // The campaign made as a district makes it, so that the server's own projector counts.
    let district = District::start_counting(dir.path(), &campaign);
    let front = Front::start(district.addr);
    let code = district.code("nguyen-van-a", &["thon-dong", "thon-tay"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/collector_flow.py");
    let out = Command::new(python)
        .arg(&script)
        .env("PYTHONPATH", &bindings)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HAMLET_SERVER", front.address())
        .env("HAMLET_CODE", &code)
        .env("HAMLET_STORE", dir.path().join("phone.db"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Python script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script's summary");
    let ids: Vec<String> =
        summary["ids"].as_array().expect("ids").iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 50);

    // The server's results: every response counted once, four answers each (three ratings and
    // the household size; attendance too).
    let counted = district.counted(&campaign, &["thon-dong", "thon-tay"]);
    let responses: std::collections::BTreeSet<&str> = counted.keys().map(|(r, _)| r.as_str()).collect();
    assert_eq!(responses, ids.iter().map(String::as_str).collect());
    assert_eq!(counted.len(), 50 * 5);
    // And as staff read it: the server's projector and its results API (closed, so that every
    // counted answer shows): 25 responses in each hamlet for every subject, and for ong-an the 20
    // ballots of the meeting's tally in thon-tay besides.
    district.close(&campaign);
    let results = district.results(&campaign);
    for subject in &campaign.subjects {
        let item =
            results["subjects"].as_array().unwrap().iter().find(|s| s["subject"] == subject.id.as_str()).unwrap();
        let total = |unit: &str| {
            item["rows"].as_array().unwrap().iter().find(|r| r["unit"] == unit).map(|r| r["total"].as_u64().unwrap())
        };
        let ballots = if subject.id.as_str() == "ong-an" { 20 } else { 0 };
        let got = (total("thon-dong"), total("thon-tay"), total("*"));
        assert_eq!(got, (Some(25), Some(25 + ballots), Some(50 + ballots)), "{}", subject.id);
    }
    // Both syncs carried the device token the enrollment gave (the server refuses any other).
    let tokens = front.seen_tokens();
    assert!(tokens.len() == 2 && tokens.iter().all(|t| t.as_ref().is_some_and(|t| t.len() == 64)), "{tokens:?}");
}

/// Over TLS: the app enrolls from a link pinning the office server's self-signed certificate,
/// refuses a server presenting another, and syncs over `wss://`.
#[test]
fn the_python_bindings_enroll_from_a_pinned_link_and_sync_over_wss() {
    let Some(python) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bindings = bindings(dir.path());
    let campaign = fixtures::open_campaign();
    let office = pki::self_signed(pki::NAMES);
    let (cert, key) = office.write(&dir.path().join("tls"));
    let flags = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let district = District::start_with(dir.path(), &campaign, &flags);
    let code = district.code("nguyen-van-a", &["thon-dong"]);
    let server = format!("https://127.0.0.1:{}", district.addr.port());
    let link = |pin| EnrollmentLink::new(Some(&server), &code).with_pin(Some(pin)).to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tls_flow.py");
    let out = Command::new(python)
        .arg(&script)
        .env("PYTHONPATH", &bindings)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HAMLET_LINK", link(office.pin()))
        .env("HAMLET_WRONG_LINK", link(pki::self_signed(pki::NAMES).pin()))
        .env("HAMLET_STORE", dir.path().join("phone.db"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Python script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script's summary");
    let ids: std::collections::BTreeSet<String> =
        summary["ids"].as_array().expect("ids").iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let counted = district.counted(&campaign, &["thon-dong"]);
    assert_eq!(counted.keys().map(|(r, _)| r.clone()).collect::<std::collections::BTreeSet<_>>(), ids);
}

/// A sealed campaign (schema version 2 with a public key): the Python app records as for any
/// other; the server stores only ciphertext, which the district's key opens and counts.
#[test]
fn the_python_bindings_seal_the_answers_of_a_sealed_campaign() {
    let Some(python) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bindings = bindings(dir.path());
    let (campaign, key) = fixtures::sealed_campaign([42; 32]);
    let district = District::start(dir.path(), &campaign);
    let code = district.code("nguyen-van-a", &["thon-dong"]);
    let comment = "Ý kiến niêm phong từ Python";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sealed_flow.py");
    let out = Command::new(python)
        .arg(&script)
        .env("PYTHONPATH", &bindings)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HAMLET_SERVER", district.address())
        .env("HAMLET_CODE", &code)
        .env("HAMLET_STORE", dir.path().join("phone.db"))
        .env("HAMLET_COMMENT", comment)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Python script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script's summary");
    assert_eq!(summary["ids"].as_array().map(Vec::len), Some(5));

    let ledger = district.ledger(&campaign, "thon-dong").expect("stored");
    for value in hamlet_sync_core::sealed::every_value_written(ledger.doc()) {
        if let hamlet_sync_core::automerge::ScalarValue::Str(s) = &value {
            assert!(!s.contains(comment) && !s.contains("tin_nhiem"), "in the clear: {s}");
        }
    }
    let authors = hamlet_sync_core::authorship::Authors::new();
    let p = hamlet_sync_core::project_opened(&campaign, &ledger, &authors, Some(&key)).unwrap();
    assert!(p.rows.flags.is_empty(), "{:?}", p.rows.flags);
    let comments = p
        .rows
        .answers
        .iter()
        .filter(|a| {
            a.counted && matches!(&a.value, hamlet_sync_core::AnswerValue::Comment(c) if c.starts_with(comment))
        })
        .count();
    assert_eq!(comments, 5);
}
