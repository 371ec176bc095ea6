//! The dashboard in a real browser: the server binary seeds the demo district, then Debian's
//! Chromium (headless, driven by playwright-core from `tests/js/dashboard.mjs`) loads its pages
//! in Vietnamese and English, checks that a cadre's counts on the page equal the API's and that
//! the charts render, and saves screenshots in `target/screenshots/`.
//!
//! Needs Node.js, `npm ci` in `tests/js` and `/usr/bin/chromium`. Outside CI a missing piece is
//! reported and the test returns; in CI (`CI=true`) it fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod client;

use client::{js_dir, without_hamlet_variables};

fn ready() -> bool {
    let installed = js_dir().join("node_modules/playwright-core").exists();
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let chromium = Path::new("/usr/bin/chromium").exists();
    if installed && node && chromium {
        return true;
    }
    let why = match (node, installed, chromium) {
        (false, _, _) => "install Node.js 20 and run `npm ci` in tests/js",
        (_, false, _) => "run `npm ci` in tests/js",
        _ => "install Chromium (`apt-get install chromium`)",
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the browser test cannot run: {why}");
    }
    eprintln!("SKIPPED the browser test: {why}");
    false
}

/// `hamlet-server serve --demo` on a free port, once its demo is seeded.
struct Demo {
    child: Child,
    base: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(data: &Path) -> Demo {
    let mut child = without_hamlet_variables(&mut Command::new(env!("CARGO_BIN_EXE_hamlet-server")))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut base = None;
    let mut demo = Demo { child, base: String::new() };
    loop {
        let line = rx.recv_timeout(Duration::from_secs(300)).expect("the demo is seeded within 5 minutes");
        eprintln!("server: {line}");
        if base.is_none() {
            base = line.rsplit("http://").next().map(|a| format!("http://{}", a.trim().trim_end_matches('/')));
        }
        assert!(!line.contains("FAILED"), "demo seeding failed: {line}");
        if line.starts_with("Demo district ready") || line.starts_with("Demo district already seeded") {
            break;
        }
    }
    demo.base = base.expect("the server prints its address");
    demo
}

#[test]
fn the_dashboard_in_chromium_in_vietnamese_and_english() {
    if !ready() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let demo = start_demo(data.path());
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    // Screenshots of an earlier run must not pass for this one's.
    for shot in ["results-vi.png", "results-en.png"] {
        let _ = std::fs::remove_file(shots.join(shot));
    }
    let output = without_hamlet_variables(&mut Command::new("node"))
        .arg("dashboard.mjs")
        .arg(&demo.base)
        .arg(&shots)
        .current_dir(js_dir())
        .output()
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{text}");
    assert!(output.status.success(), "the browser checks failed:\n{text}");
    assert!(shots.join("results-vi.png").exists() && shots.join("results-en.png").exists(), "screenshots saved");
}
