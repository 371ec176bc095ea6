//! Small groups in every output staff read, end to end, on SQLite and PostgreSQL: phones sync
//! through the hub, the server's projector counts, and a real server answers the results API
//! (to communes and to hamlets), `results.csv`, `results.xlsx`, the subject pages and the hamlet
//! pages. Hamlets of 1, 2, 3 and 4 answers sit beside larger ones, a commune of 4 beside
//! communes of 5 and more, a hamlet with none.
//!
//! Each output is read as an outsider would read it: the figures it shows (every unit's total,
//! and the levels of the units not hidden), and then every set of hamlets holding 1–4 answers is
//! checked against what those figures determine by subtraction and sums, across every level
//! of the tree (a linear-algebra rank test, not the server's own rule). Every output must agree
//! with the API, and once closed the API must equal the answers the phones recorded. While the
//! campaign is open, a few more answers in one hamlet change no output (figures move in batches),
//! so two readings a few answers apart cannot be subtracted either.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod district;
mod support;

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use district::{Harness, admin, harness};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::district::{campaigns, catalog};
use hamlet_sync_core::automerge::ActorId;
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, CampaignState, Day, HamletScope, Ledger, Level, NewResponse, ResponseId, Unit,
    UnitLevel, fixtures,
};
use serde_json::Value;

/// Groups smaller than this are not broken down (the product's rule, restated here).
const MIN_GROUP: u64 = 5;
const LEVELS: [Level; 3] = [Level::TinNhiemCao, Level::TinNhiem, Level::TinNhiemThap];
const SUBJECT: &str = "ong-an";
const SUBJECT_NAME: &str = "Cán bộ số 1";

/// The tree: (unit, level, parent), and each hamlet's answers when the test starts.
const UNITS: [(&str, UnitLevel, Option<&str>); 15] = [
    ("tinh", UnitLevel::Province, None),
    ("huyen", UnitLevel::District, Some("tinh")),
    ("xa-a", UnitLevel::Commune, Some("huyen")),
    ("xa-b", UnitLevel::Commune, Some("huyen")),
    ("xa-c", UnitLevel::Commune, Some("huyen")),
    ("xa-d", UnitLevel::Commune, Some("tinh")),
    ("thon-a1", UnitLevel::Hamlet, Some("xa-a")),
    ("thon-a2", UnitLevel::Hamlet, Some("xa-a")),
    ("thon-a3", UnitLevel::Hamlet, Some("xa-a")),
    ("thon-b1", UnitLevel::Hamlet, Some("xa-b")),
    ("thon-c1", UnitLevel::Hamlet, Some("xa-c")),
    ("thon-c2", UnitLevel::Hamlet, Some("xa-c")),
    ("thon-d1", UnitLevel::Hamlet, Some("xa-d")),
    ("thon-d2", UnitLevel::Hamlet, Some("xa-d")),
    ("thon-d3", UnitLevel::Hamlet, Some("xa-d")),
];
const ANSWERS: [(&str, usize); 9] = [
    ("thon-a1", 1),
    ("thon-a2", 7),
    ("thon-a3", 6),
    ("thon-b1", 4),
    ("thon-c1", 2),
    ("thon-c2", 3),
    ("thon-d1", 9),
    ("thon-d2", 0),
    ("thon-d3", 3),
];
const COMMUNES: [&str; 4] = ["xa-a", "xa-b", "xa-c", "xa-d"];

fn day() -> Day {
    "2025-06-04".parse().unwrap()
}

fn parent_of(unit: &str) -> Option<&'static str> {
    UNITS.iter().find(|(id, _, _)| *id == unit).and_then(|(_, _, p)| *p)
}

fn hamlets() -> Vec<&'static str> {
    UNITS.iter().filter(|(_, level, _)| *level == UnitLevel::Hamlet).map(|(id, _, _)| *id).collect()
}

/// The hamlets under `unit` (`*`: all of them).
fn leaves_under(unit: &str) -> Vec<&'static str> {
    hamlets()
        .into_iter()
        .filter(|h| {
            let mut at = Some(*h);
            while let Some(u) = at {
                if u == unit || unit == "*" {
                    return true;
                }
                at = parent_of(u);
            }
            false
        })
        .collect()
}

/// The level of the `i`-th answer of hamlet number `h`: a different mix in every hamlet.
fn level_of(h: usize, i: usize) -> usize {
    (i * 7 + h * 2 + i / 3) % 3
}

/// One subject, living in `thon-a2`, on every hamlet's ballot (schema version 1).
fn campaign() -> Campaign {
    let mut c = fixtures::campaign_with_subjects(1);
    c.subjects[0].home_hamlet = "thon-a2".parse().unwrap();
    c.hamlets = hamlets()
        .into_iter()
        .map(|h| HamletScope { hamlet: h.parse().unwrap(), expected_voters: 100, ballot: vec![] })
        .collect();
    c.state = CampaignState::Draft;
    c
}

async fn open(h: &Harness) -> Campaign {
    let units: Vec<Unit> = UNITS
        .iter()
        .map(|(id, level, parent)| Unit {
            id: id.parse().unwrap(),
            name: format!("Đơn vị {id}"),
            level: *level,
            parent: parent.map(|p| p.parse().unwrap()),
            valid_from: "2020-01-01".parse().unwrap(),
            valid_until: None,
            merged_from: vec![],
            merged_into: None,
        })
        .collect();
    campaigns::import_units_text(&h.district, &admin(), &catalog::units_csv(&units)).await.expect("units import");
    let draft = campaign();
    campaigns::create(&h.district, &admin(), draft.clone()).await.expect("campaign created");
    campaigns::transition(&h.district, &admin(), draft.id.as_str(), CampaignState::Open).await.expect("opens")
}

/// Records and submits `n` more answers in `hamlet` (its own phone and ledger), syncs, and
/// adds them to `truth` (hamlet → count per level).
async fn answer(
    h: &Harness,
    campaign: &Campaign,
    ledgers: &mut BTreeMap<&'static str, Ledger>,
    truth: &mut BTreeMap<String, [u64; 3]>,
    hamlet: &'static str,
    n: usize,
) {
    let index = hamlets().iter().position(|x| *x == hamlet).unwrap();
    let device = u8::try_from(index + 1).unwrap();
    let ledger = ledgers
        .entry(hamlet)
        .or_insert_with(|| Ledger::create(&campaign.id, &hamlet.parse().unwrap(), ActorId::from([device; 16])));
    let counts = truth.entry(hamlet.to_owned()).or_default();
    let by = "thu-ky".parse().unwrap();
    let first: usize = counts.iter().sum::<u64>().try_into().unwrap();
    for i in first..first + n {
        let level = level_of(index, i);
        let id: ResponseId = format!("{hamlet}-{i}").parse().unwrap();
        let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject(SUBJECT));
        let answers = BTreeMap::from([(key, AnswerValue::Level(LEVELS[level]))]);
        let new = NewResponse { id: id.clone(), collector: "thu-ky".parse().unwrap(), answers };
        ledger.record(campaign, &new, day()).unwrap();
        ledger.submit(campaign, &id, &by, day()).unwrap();
        counts[level] += 1;
    }
    let mut phone = h.phone(device);
    h.sync(&mut phone, ledger).await;
}

/// What one output shows of one unit: its total, and its levels unless hidden.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    total: u64,
    counts: Option<[u64; 3]>,
}

type Figures = BTreeMap<String, Shown>;

/// A server on the harness's database (it reads what the harness's projector wrote), with an
/// administrator's API token.
struct Staff {
    server: client::Running,
    auth: String,
}

impl Staff {
    async fn start(url: &str, token: &str) -> Staff {
        Staff { server: client::start(client::config(url, &[])).await, auth: format!("Bearer {token}") }
    }

    async fn get(&self, path: &str) -> Vec<u8> {
        let stream = tokio::net::TcpStream::connect(self.server.addr).await.unwrap();
        let (status, _, body) =
            client::exchange(stream, "GET", path, &[("Authorization", self.auth.as_str())], Vec::new()).await;
        let body = body.unwrap_or_else(|e| panic!("GET {path}: cut off: {e}"));
        assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        body
    }

    async fn text(&self, path: &str) -> String {
        String::from_utf8(self.get(path).await).unwrap()
    }
}

/// The results API's rows for the subject.
fn from_api(json: &Value) -> Figures {
    let subject = json["subjects"].as_array().unwrap().iter().find(|s| s["subject"] == SUBJECT).expect("the subject");
    subject["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let counts = row["counts"].as_array().map(|c| {
                let c: Vec<u64> = c.iter().map(|x| x.as_u64().unwrap()).collect();
                <[u64; 3]>::try_from(c).unwrap()
            });
            assert_eq!(row["suppressed"].as_bool().unwrap(), counts.is_none(), "{row}");
            if counts.is_none() {
                assert!(row["shares"].is_null() && row["crossed"].is_null(), "hidden: no shares, no thresholds: {row}");
            }
            (row["unit"].as_str().unwrap().to_owned(), Shown { total: row["total"].as_u64().unwrap(), counts })
        })
        .collect()
}

const COUNT_COLUMNS: [&str; 3] = ["Tín nhiệm cao (số)", "Tín nhiệm (số)", "Tín nhiệm thấp (số)"];
const SHARE_COLUMNS: [&str; 3] = ["Tín nhiệm cao (%)", "Tín nhiệm (%)", "Tín nhiệm thấp (%)"];

/// `results.csv`'s rows for the subject: an empty cell where a level is hidden.
fn from_csv(bytes: &[u8]) -> Figures {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").expect("a byte order mark");
    let mut reader = csv::Reader::from_reader(bytes);
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let col = |h: &str| header.iter().position(|x| x == h).unwrap_or_else(|| panic!("no column {h}: {header:?}"));
    let mut figures = Figures::new();
    for record in reader.records() {
        let record = record.unwrap();
        if &record[col("Mã cán bộ")] != SUBJECT {
            continue;
        }
        let hidden = &record[col("Ẩn (nhóm dưới 5)")] == "có";
        let cells: Vec<&str> = COUNT_COLUMNS.iter().map(|c| &record[col(c)]).collect();
        let shares: Vec<&str> = SHARE_COLUMNS.iter().map(|c| &record[col(c)]).collect();
        let counts = if hidden {
            assert!(cells.iter().chain(&shares).all(|c| c.is_empty()), "hidden, yet {cells:?} {shares:?}");
            None
        } else {
            Some(<[u64; 3]>::try_from(cells.iter().map(|c| c.parse().unwrap()).collect::<Vec<u64>>()).unwrap())
        };
        let total = record[col("Tổng số ý kiến")].parse().unwrap();
        figures.insert(record[col("Mã đơn vị")].to_owned(), Shown { total, counts });
    }
    figures
}

/// `results.xlsx`'s rows for the subject.
fn from_xlsx(bytes: Vec<u8>) -> Figures {
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).expect("a valid XLSX");
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let rows: Vec<&[Data]> = sheet.rows().collect();
    let head: Vec<String> = rows[0].iter().map(|d| d.to_string()).collect();
    let col = |h: &str| head.iter().position(|x| x == h).unwrap_or_else(|| panic!("no column {h}: {head:?}"));
    let number = |d: &Data| match d {
        Data::Float(f) => Some(*f as u64),
        Data::Int(i) => Some(u64::try_from(*i).unwrap()),
        Data::Empty => None,
        Data::String(s) if s.is_empty() => None,
        other => panic!("not a count: {other:?}"),
    };
    let mut figures = Figures::new();
    for row in &rows[1..] {
        if row[col("Mã cán bộ")] != *SUBJECT {
            continue;
        }
        let cells: Vec<Option<u64>> = COUNT_COLUMNS.iter().map(|c| number(&row[col(c)])).collect();
        let shares: Vec<&Data> = SHARE_COLUMNS.iter().map(|c| &row[col(c)]).collect();
        let hidden = row[col("Ẩn (nhóm dưới 5)")] == *"có";
        let counts = if hidden {
            assert!(cells.iter().all(Option::is_none), "hidden, yet {cells:?}");
            assert!(shares.iter().all(|s| matches!(s, Data::Empty)), "hidden, yet shares {shares:?}");
            None
        } else {
            Some(<[u64; 3]>::try_from(cells.into_iter().map(Option::unwrap).collect::<Vec<u64>>()).unwrap())
        };
        let total = number(&row[col("Tổng số ý kiến")]).unwrap();
        figures.insert(row[col("Mã đơn vị")].to_string(), Shown { total, counts });
    }
    figures
}

/// The numeric cells (`<td class="n"…>…</td>`) of an HTML row, as text.
fn numeric_cells(row: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut rest = row;
    while let Some(start) = rest.find("<td class=\"n\"") {
        let after = &rest[start..];
        let open_end = after.find('>').unwrap() + 1;
        let close = after.find("</td>").unwrap();
        cells.push(after[open_end..close].trim().to_owned());
        rest = &after[close..];
    }
    cells
}

/// A count as the pages write it (Vietnamese thousands separators), `None` for "—".
fn page_count(cell: &str) -> Option<u64> {
    (cell != "—").then(|| cell.replace('.', "").parse().unwrap_or_else(|_| panic!("not a count: {cell:?}")))
}

/// A row of counts as a page shows it: total, then a count and a share per level.
fn page_row(cells: &[String], what: &str) -> Shown {
    assert!(cells.len() >= 7, "{what}: {cells:?}");
    let total = page_count(&cells[0]).unwrap();
    let levels: Vec<Option<u64>> = [1, 3, 5].iter().map(|i| page_count(&cells[*i])).collect();
    let shares_hidden = [2, 4, 6].iter().all(|i| cells[*i] == "—");
    let counts = if levels.iter().all(Option::is_none) {
        assert!(shares_hidden, "{what}: hidden, yet {cells:?}");
        None
    } else {
        Some(<[u64; 3]>::try_from(levels.into_iter().map(|c| c.unwrap()).collect::<Vec<u64>>()).unwrap())
    };
    Shown { total, counts }
}

/// The unit rows (`<tr … id="u-…">`) of a subject page.
fn from_subject_page(html: &str) -> Figures {
    let mut figures = Figures::new();
    let mut rest = html;
    while let Some(start) = rest.find(" id=\"u-") {
        let after = &rest[start + 7..];
        let unit = &after[..after.find('"').unwrap()];
        let end = after.find("</tr>").unwrap();
        figures.insert(unit.to_owned(), page_row(&numeric_cells(&after[..end]), unit));
        rest = &after[end..];
    }
    figures
}

/// The subject's row in a hamlet page's results table.
fn from_hamlet_page(html: &str, hamlet: &str) -> Shown {
    let marker = format!("<th scope=\"row\">{SUBJECT_NAME}</th>");
    let start = html.find(&marker).unwrap_or_else(|| panic!("{hamlet}: no results row for the subject"));
    let row = &html[start..start + html[start..].find("</tr>").unwrap()];
    page_row(&numeric_cells(row), hamlet)
}

/// Every output, read from a fresh server on the database.
async fn read_outputs(url: &str, token: &str, campaign: &str) -> Vec<(String, Figures)> {
    let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    let t0 = std::time::Instant::now();
    let reader = Staff::start(url, token).await;
    eprintln!("TIMING started {:?}", t0.elapsed());
    let base = format!("/api/campaigns/{campaign}");
    let mut outputs = Vec::new();
    let hamlet_api: Value = serde_json::from_slice(&reader.get(&format!("{base}/results?depth=hamlet")).await).unwrap();
    outputs.push(("results API, to hamlets".to_owned(), from_api(&hamlet_api)));
    let commune_api: Value = serde_json::from_slice(&reader.get(&format!("{base}/results")).await).unwrap();
    outputs.push(("results API, to communes".to_owned(), from_api(&commune_api)));
    let one: Value =
        serde_json::from_slice(&reader.get(&format!("{base}/results?depth=hamlet&subject={SUBJECT}")).await).unwrap();
    outputs.push(("results API, one subject".to_owned(), from_api(&one)));
    outputs.push(("results.csv".to_owned(), from_csv(&reader.get(&format!("{base}/export/results.csv")).await)));
    outputs.push(("results.xlsx".to_owned(), from_xlsx(reader.get(&format!("{base}/export/results.xlsx")).await)));
    for commune in COMMUNES {
        let page = reader.text(&format!("/campaigns/{campaign}/results/{SUBJECT}?commune={commune}")).await;
        outputs.push((format!("subject page, {commune} unfolded"), from_subject_page(&page)));
    }
    let mut hamlet_pages = Figures::new();
    for hamlet in hamlets() {
        let page = reader.text(&format!("/campaigns/{campaign}/hamlets/{hamlet}")).await;
        hamlet_pages.insert(hamlet.to_owned(), from_hamlet_page(&page, hamlet));
    }
    outputs.push(("hamlet pages".to_owned(), hamlet_pages));
    eprintln!("TIMING read {:?}", t0.elapsed());
    reader.server.stop().await;
    eprintln!("TIMING stopped {:?}", t0.elapsed());
    outputs
}

/// The rank of `rows` (0/1 vectors over the hamlets), by Gaussian elimination.
fn rank(rows: &[Vec<f64>]) -> usize {
    let mut m: Vec<Vec<f64>> = rows.to_vec();
    let width = m.first().map_or(0, Vec::len);
    let mut rank = 0;
    for col in 0..width {
        let Some(pivot) = (rank..m.len()).find(|r| m[*r][col].abs() > 1e-9) else { continue };
        m.swap(rank, pivot);
        let pivot_row = m[rank].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != rank && row[col].abs() > 1e-9 {
                let factor = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(&pivot_row) {
                    *x -= factor * p;
                }
            }
        }
        rank += 1;
    }
    rank
}

/// Checks, as an outsider holding `figures`, that no set of hamlets with 1–4 answers has its
/// levels determined by the levels shown (any sum or difference of them). `totals` are the
/// hamlets' totals, which staff always see (participation): a unit with none is known to hold
/// zero of every level.
fn no_small_group_recoverable(output: &str, figures: &Figures, totals: &BTreeMap<String, u64>) {
    let leaves = hamlets();
    let indicator =
        |set: &[&str]| -> Vec<f64> { leaves.iter().map(|l| f64::from(u8::from(set.contains(l)))).collect() };
    let total_of = |set: &[&str]| -> u64 { set.iter().map(|h| totals[*h]).sum() };
    let mut known: Vec<Vec<f64>> = leaves.iter().filter(|h| totals[**h] == 0).map(|h| indicator(&[h])).collect();
    for (unit, shown) in figures {
        if let Some(counts) = shown.counts {
            assert_eq!(counts.iter().sum::<u64>(), shown.total, "{output}: {unit}'s levels add up to its total");
            known.push(indicator(&leaves_under(unit)));
        }
    }
    let base = rank(&known);
    for mask in 1u32..(1 << leaves.len()) {
        let set: Vec<&str> = leaves.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, l)| *l).collect();
        let total = total_of(&set);
        if total == 0 || total >= MIN_GROUP {
            continue;
        }
        let mut with = known.clone();
        with.push(indicator(&set));
        assert_ne!(
            rank(&with),
            base,
            "{output}: the levels of {set:?} ({total} answers) follow from what is shown: {figures:#?}"
        );
    }
}

/// Every output's check, with the hamlets' totals of the first (the API to hamlets).
fn check_reading(what: &str, outputs: &[(String, Figures)]) {
    let totals: BTreeMap<String, u64> = hamlets().into_iter().map(|h| (h.to_owned(), outputs[0].1[h].total)).collect();
    let api = &outputs[0].1;
    for (output, figures) in outputs {
        no_small_group_recoverable(&format!("{what}: {output}"), figures, &totals);
        for (unit, shown) in figures {
            assert_eq!(Some(shown), api.get(unit), "{what}: {output} and the API differ on {unit}");
        }
    }
}

/// The truth for each unit (hamlets' recorded answers summed up the tree).
fn truth_of(unit: &str, truth: &BTreeMap<String, [u64; 3]>) -> [u64; 3] {
    let mut sum = [0u64; 3];
    for h in leaves_under(unit) {
        if let Some(c) = truth.get(h) {
            for l in 0..3 {
                sum[l] += c[l];
            }
        }
    }
    sum
}

#[tokio::test]
async fn no_output_shows_a_small_group_or_lets_one_be_subtracted() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let accounts = Accounts::new(h.store.clone(), std::time::Duration::from_secs(3600));
        accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
        let (_, token) = accounts.create_api_token("admin", "small groups").await.unwrap();
        let campaign = open(&h).await;
        let id = campaign.id.to_string();
        let (mut ledgers, mut truth) = (BTreeMap::new(), BTreeMap::new());
        for (hamlet, n) in ANSWERS {
            answer(&h, &campaign, &mut ledgers, &mut truth, hamlet, n).await;
        }

        // Open: figures as released, in batches.
        eprintln!("TIMING played");
        let before = read_outputs(db.url(), &token, &id).await;
        check_reading(&format!("{}, open", db.name), &before);
        // Three more answers in a hamlet already released: no output moves.
        answer(&h, &campaign, &mut ledgers, &mut truth, "thon-a2", 3).await;
        let after = read_outputs(db.url(), &token, &id).await;
        for ((output, was), (_, now)) in before.iter().zip(&after) {
            assert_eq!(was, now, "{}, open: {output} moved by 3 answers", db.name);
        }

        // Closed: every counted answer shows, exactly as recorded, where it may.
        let closed = h.close(&campaign).await;
        assert_eq!(closed.state, CampaignState::Closed);
        let outputs = read_outputs(db.url(), &token, &id).await;
        let api = &outputs[0].1;
        for unit in UNITS.iter().map(|u| u.0).chain(["*"]) {
            let want = truth_of(unit, &truth);
            let shown = api.get(unit).unwrap_or_else(|| panic!("{}: no API row for {unit}", db.name));
            assert_eq!(shown.total, want.iter().sum::<u64>(), "{}: {unit}'s total", db.name);
            if let Some(counts) = shown.counts {
                assert_eq!(counts, want, "{}: {unit}'s levels", db.name);
            }
        }
        // The hamlets of fewer than 5 are hidden, whatever protects them besides.
        for (hamlet, n) in truth.iter().map(|(h, c)| (h, c.iter().sum::<u64>())) {
            if n < MIN_GROUP {
                assert_eq!(api[hamlet].counts, None, "{}: {hamlet} holds {n} answers", db.name);
            }
        }
        assert!(api["xa-a"].counts.is_some() && api["thon-a2"].counts.is_some(), "{}: big groups show", db.name);
        check_reading(&format!("{}, closed", db.name), &outputs);
    }
}
