//! The official automerge-repo JavaScript client, unchanged, against the server binary: one
//! client writes documents, the server is killed with SIGKILL and restarted, and a fresh client
//! with no local data reads them all back.
//!
//! Needs Node.js and `npm ci` in `tests/js`. Outside CI a missing install is reported and the
//! test returns; in CI (`CI=true`) it fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;

use std::path::PathBuf;
use std::process::Command;

use client::Process;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/js")
}

fn ready() -> bool {
    let installed = js_dir().join("node_modules/@automerge/automerge-repo").exists();
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if installed && node {
        return true;
    }
    let why = if node { "run `npm ci` in tests/js" } else { "install Node.js 20 and run `npm ci` in tests/js" };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the JavaScript interoperability test cannot run: {why}");
    }
    eprintln!("SKIPPED the JavaScript interoperability test: {why}");
    false
}

fn node(script: &str, args: &[&str]) {
    let output = Command::new("node").arg(script).args(args).current_dir(js_dir()).output().expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node {script} failed:\n{text}");
    eprintln!("{script}: {}", text.trim());
}

#[test]
fn the_javascript_client_writes_and_a_fresh_one_reads_after_a_kill() {
    if !ready() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let written = data.path().join("written.json");
    let written = written.to_str().unwrap();

    let server = Process::spawn(&["--data-dir", data_dir]);
    node("write.mjs", &[&server.url(), written, "--docs", "8"]);
    server.kill();

    let server = Process::spawn(&["--data-dir", data_dir]);
    node("read.mjs", &[&server.url(), written]);
    assert!(server.terminate().success(), "SIGTERM exits 0");
}
