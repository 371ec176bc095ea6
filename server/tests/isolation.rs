//! The developer's `HAMLET_*` variables never reach the servers tests start, in the test process
//! (flags parsed by clap, which reads `env = "HAMLET_…"`) or as child processes: a
//! `HAMLET_DATABASE_URL` in a shell would otherwise send the tests to that database, and a
//! `HAMLET_INSECURE_OPEN_SYNC` would turn off the access checks the tests mean to try.
//!
//! The parent test starts this test binary again with such variables set and runs the
//! `#[ignore]`d child test in it (setting variables in a running test process is unsafe).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;

use std::process::Command;

const CHILD: &str = "the_child_with_hamlet_variables_set";

#[test]
fn hamlet_variables_of_the_environment_do_not_reach_test_servers() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD, "--ignored", "--test-threads=1"])
        .env("HAMLET_DATABASE_URL", "postgres://nobody@192.0.2.1:1/not-the-test-database")
        .env("HAMLET_INSECURE_OPEN_SYNC", "true")
        .env("HAMLET_MAX_MESSAGE_BYTES", "1000")
        .output()
        .expect("the test binary runs again");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("1 passed"), "the child test ran: {printed}");
}

#[test]
#[ignore = "run by hamlet_variables_of_the_environment_do_not_reach_test_servers, with HAMLET_* set"]
fn the_child_with_hamlet_variables_set() {
    assert!(std::env::var_os("HAMLET_DATABASE_URL").is_some(), "started by the parent test");
    // Flags parsed in the test process: what the test gave, defaults for the rest.
    let folder = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", folder.path().join("t.db").display());
    let config = client::secure_config(&url, &[]);
    assert_eq!(config.database_url(), url);
    assert!(!config.insecure_open_sync);
    assert_ne!(config.max_message_bytes, 1000);
    // A server started as a child process: it serves from its data folder, with access checks on.
    let data = folder.path().join("child");
    let server = client::Process::spawn_secure(&["--data-dir", data.to_str().unwrap()]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = runtime.block_on(client::Client::connect_with(&server.url(), "peer", None)).err();
    assert_eq!(refused, Some(401), "syncing needs a token");
    assert!(data.join("hamlet.db").exists(), "the child server used its data folder");
}
