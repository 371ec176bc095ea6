//! Replays every input kept under `fuzz/regressions/csv/` through the function the `csv` fuzz
//! target runs (`fuzz/src/csv_checks.rs`, compiled here as a module), so that a normal
//! `cargo test` keeps each crasher of the CSV imports fixed without nightly or cargo-fuzz.

#[path = "../../fuzz/src/csv_checks.rs"]
mod csv_checks;

use std::path::{Path, PathBuf};

fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(dir).join("csv");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn csv_regressions() {
    for file in inputs("regressions") {
        let data = std::fs::read(&file).expect("a regression input reads");
        let outcome = std::panic::catch_unwind(|| csv_checks::csv(&data));
        assert!(outcome.is_ok(), "fuzz regression {} fails again", file.display());
    }
}

/// The seeds (the imports as staff upload them) pass the checks, and are read as imports.
#[test]
fn csv_seeds_pass_their_checks() {
    let seeds = inputs("seeds");
    assert!(seeds.len() >= 3, "fuzz/seeds/csv holds the three imports");
    for file in seeds {
        csv_checks::csv(&std::fs::read(&file).expect("a seed reads"));
    }
}
