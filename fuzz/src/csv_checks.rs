//! The fuzz target on the district CSV imports, and what it asserts.
//! `server/tests/fuzz_regressions.rs` compiles this file as well and replays
//! `fuzz/regressions/csv/` through it.

use hamlet_server::district::catalog::{UNITS_HEADER, hamlets_from_csv, subjects_from_csv, unit_from};
use hamlet_server::district::csv;
use hamlet_sync_core::fixtures;
use hamlet_sync_core::unit::UnitTree;

/// `csv`: the three imports staff upload (units, subjects, hamlets in scope) on arbitrary text.
///
/// - Nothing panics; every error names a line of the file.
/// - Records written back with `csv::line` under a header read back to the same fields (after
///   the trimming and formula guard the writer applies).
/// - Units: every record is read by the importer's own `unit_from` and the whole set checked
///   by `UnitTree::new`, as `import_units` does before it writes anything.
pub fn csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.split('\n').count();
    let names_a_line = |line: usize| (1..=lines).contains(&line);
    match csv::parse(text) {
        Err(e) => assert!(names_a_line(e.line), "error on line {} of {lines}: {e}", e.line),
        Ok(records) => {
            for r in &records {
                assert!(names_a_line(r.line), "record on line {} of {lines}", r.line);
            }
            round_trip(&records);
            if let Ok(rows) = csv::with_header(records, &UNITS_HEADER) {
                let units: Vec<_> = rows.iter().filter_map(|r| unit_from(r).ok()).collect();
                if let Ok(tree) = UnitTree::new(units) {
                    // The tree answers what the pages ask of it.
                    for unit in tree.units() {
                        let _ = tree.ancestors(&unit.id);
                    }
                }
            }
        }
    }
    let tree = fixtures::unit_tree();
    let _ = subjects_from_csv(text, &tree);
    let _ = hamlets_from_csv(text, &tree);
}

/// What a field reads back as once `csv::field` wrote it: the formula guard adds an
/// apostrophe, and an unquoted field is trimmed when read.
fn written(value: &str) -> String {
    let guarded = if csv::formula_like(value) { format!("'{value}") } else { value.to_owned() };
    if guarded.contains([',', '"', '\n', '\r', ';']) { guarded } else { guarded.trim().to_owned() }
}

fn round_trip(records: &[csv::Record]) {
    let mut text = csv::line(&UNITS_HEADER);
    let mut expected = vec![UNITS_HEADER.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for r in records {
        text.push_str(&csv::line(&r.fields));
        let fields: Vec<String> = r.fields.iter().map(|f| written(f)).collect();
        // A record whose fields all read back empty is a blank line, which the reader skips.
        if fields.iter().any(|f| !f.is_empty()) {
            expected.push(fields);
        }
    }
    let again = csv::parse(&text).unwrap_or_else(|e| panic!("written records do not read back: {e}"));
    let got: Vec<Vec<String>> = again.into_iter().map(|r| r.fields).collect();
    assert_eq!(got, expected, "records written and read back differ");
}
