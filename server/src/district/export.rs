//! Exports of results and responses (never identities: no collector, no device) as CSV (UTF-8
//! with a byte order mark, so that Excel shows Vietnamese) and XLSX.
//!
//! Both are streamed: a producer task reads the database a page at a time (keyset paging) and
//! hands rows over a small bounded channel, so a large campaign never sits in memory. CSV goes
//! to the client as it is made. XLSX is written by `rust_xlsxwriter` in its constant-memory mode
//! (each row is flushed to a temporary file as it is written) and the finished file is streamed.
//!
//! Results obey small-group suppression like every page. The per-response export (one row per
//! ballot, with its hamlet, days and comments) does not, so only administrators may take it, and
//! every export is audited. Since the status line is sent before the first row, a failure
//! half-way cannot become an error status: the body ends with an error instead, which aborts the
//! connection (no clean end of a chunked body), so the client never mistakes a truncated file
//! for a whole one; the failure is logged and audited.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use hamlet_sync_core::{Campaign, Level, UnitLevel};
use tokio::sync::mpsc;

use super::results::{self, Depth};
use super::{Actor, District, DistrictError, csv};
use crate::audit;
use crate::store::{on_pool, query_failed};

/// Responses read from the database per page.
const PAGE: i64 = 2_000;
/// Bytes read from a finished XLSX file per chunk sent.
const FILE_CHUNK: usize = 64 * 1024;

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Results per subject and unit, as CSV.
    ResultsCsv,
    /// Results per subject and unit, as XLSX.
    ResultsXlsx,
    /// One row per response, as CSV.
    ResponsesCsv,
    /// One row per response, as XLSX.
    ResponsesXlsx,
}

impl Kind {
    /// The kind named by a file name (`results.csv`, …).
    pub fn from_file_name(name: &str) -> Option<Kind> {
        match name {
            "results.csv" => Some(Kind::ResultsCsv),
            "results.xlsx" => Some(Kind::ResultsXlsx),
            "responses.csv" => Some(Kind::ResponsesCsv),
            "responses.xlsx" => Some(Kind::ResponsesXlsx),
            _ => None,
        }
    }

    /// Whether it lists single responses (not suppressed: administrators only).
    pub fn is_per_response(self) -> bool {
        matches!(self, Kind::ResponsesCsv | Kind::ResponsesXlsx)
    }

    fn is_xlsx(self) -> bool {
        matches!(self, Kind::ResultsXlsx | Kind::ResponsesXlsx)
    }

    /// The name of the XLSX file's sheet: what it holds, in Vietnamese (at most 31 characters).
    pub fn sheet_name(self) -> &'static str {
        match self {
            Kind::ResultsCsv | Kind::ResultsXlsx => "Kết quả theo đơn vị",
            Kind::ResponsesCsv | Kind::ResponsesXlsx => "Phiếu",
        }
    }

    fn stem(self) -> &'static str {
        match self {
            Kind::ResultsCsv | Kind::ResultsXlsx => "ket-qua",
            Kind::ResponsesCsv | Kind::ResponsesXlsx => "phieu",
        }
    }
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// Nothing.
    Empty,
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    fn opt(s: Option<String>) -> Cell {
        s.map_or(Cell::Empty, Cell::Text)
    }

    fn csv(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => format!("{}", *n as i64),
            Cell::Number(n) => format!("{n}"),
            Cell::Empty => String::new(),
        }
    }
}

type Row = Vec<Cell>;

/// What the producer hands over: rows, or the news that it failed.
type Batch = Result<Vec<Row>, Failed>;

/// The producer failed; the cause was logged where it happened.
#[derive(Debug, Clone, Copy)]
pub struct Failed;

/// An export being made: its file's name and type, and its bytes as they come. An `Err` chunk
/// means the export failed half-way (logged and audited): the receiver must not present what
/// it got as a whole file.
#[derive(Debug)]
pub struct Export {
    /// The file's name (`ket-qua-CAMPAIGN.csv`, …).
    pub file_name: String,
    /// Its media type.
    pub content_type: &'static str,
    /// The file's bytes, in order.
    pub chunks: mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
}

/// Starts the export `kind` of `campaign` for `actor` (audited; the per-response export is for
/// administrators only).
pub async fn start(
    district: &District,
    campaign: Arc<Campaign>,
    kind: Kind,
    actor: &Actor,
) -> Result<Export, DistrictError> {
    let file = format!("{}-{}.{}", kind.stem(), campaign.id, if kind.is_xlsx() { "xlsx" } else { "csv" });
    let target = format!("{}/{file}", campaign.id);
    if kind.is_per_response() && !actor.is_admin() {
        audit::record(district.store(), &actor.name, "export.refused", &target, "per-response export").await?;
        return Err(DistrictError::Forbidden(
            "the per-response export lists single ballots: only an administrator may take it".into(),
        ));
    }
    audit::record(district.store(), &actor.name, "export", &target, "").await?;
    let (rows_tx, rows_rx) = mpsc::channel::<Batch>(2);
    let producer = district.clone();
    let produced = campaign.clone();
    let who = actor.name.clone();
    tokio::spawn(async move {
        let result = match kind {
            Kind::ResultsCsv | Kind::ResultsXlsx => results_rows(&producer, &produced, &rows_tx).await,
            Kind::ResponsesCsv | Kind::ResponsesXlsx => response_rows(&producer, &produced, &rows_tx).await,
        };
        if let Err(e) = result {
            // The body ends with an error (the connection is aborted); the cause is logged here.
            tracing::error!(campaign = %produced.id, error = %e, "export failed");
            let _ = rows_tx.send(Err(Failed)).await;
            if let Err(e) = audit::record(producer.store(), &who, "export.failed", &target, "").await {
                tracing::error!(error = %e, "could not audit a failed export");
            }
        }
    });
    let (chunks, content_type) = if kind.is_xlsx() {
        (xlsx_chunks(rows_rx, kind.sheet_name()), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    } else {
        (csv_chunks(rows_rx), "text/csv; charset=utf-8")
    };
    Ok(Export { file_name: file, content_type, chunks })
}

type Chunks = mpsc::Receiver<Result<Vec<u8>, std::io::Error>>;

fn csv_chunks(mut rows: mpsc::Receiver<Batch>) -> Chunks {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut first = true;
        while let Some(batch) = rows.recv().await {
            let Ok(batch) = batch else {
                let _ = tx.send(Err(std::io::Error::other("the export failed"))).await;
                return;
            };
            let mut text = String::new();
            if first {
                text.push_str(csv::BOM);
                first = false;
            }
            for row in batch {
                let fields: Vec<String> = row.iter().map(Cell::csv).collect();
                text.push_str(&csv::line(&fields));
            }
            if tx.send(Ok(text.into_bytes())).await.is_err() {
                return; // the client went away
            }
        }
    });
    rx
}

fn xlsx_chunks(rows: mpsc::Receiver<Batch>, sheet_name: &'static str) -> Chunks {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let io = |e: String| std::io::Error::other(e);
        let sent = write_xlsx(rows, sheet_name).map_err(io).and_then(|file| {
            let mut reader = file.reopen()?;
            let mut buffer = vec![0; FILE_CHUNK];
            loop {
                let n = reader.read(&mut buffer)?;
                if n == 0 {
                    return Ok(());
                }
                if tx.blocking_send(Ok(buffer[..n].to_vec())).is_err() {
                    return Ok(());
                }
            }
        });
        if let Err(e) = sent {
            tracing::error!(error = %e, "XLSX export failed");
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// Writes the rows received into an XLSX file in constant memory, on one sheet named
/// `sheet_name`; returns the finished file.
pub fn write_xlsx(mut rows: mpsc::Receiver<Batch>, sheet_name: &str) -> Result<tempfile::NamedTempFile, String> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let sheet = workbook.add_worksheet_with_constant_memory().map_err(|e| e.to_string())?;
    sheet.set_name(sheet_name).map_err(|e| e.to_string())?;
    let mut r: u32 = 0;
    let mut widths: Vec<usize> = Vec::new();
    while let Some(batch) = rows.blocking_recv() {
        let batch = batch.map_err(|_| "the rows could not be read".to_owned())?;
        for row in batch {
            for (c, cell) in row.iter().enumerate() {
                let col = u16::try_from(c).map_err(|_| "too many columns".to_owned())?;
                let written = match cell {
                    Cell::Text(s) if r == 0 => sheet.write_string_with_format(r, col, s, &bold).map(drop),
                    Cell::Text(s) => sheet.write_string(r, col, s).map(drop),
                    Cell::Number(n) => sheet.write_number(r, col, *n).map(drop),
                    Cell::Empty => Ok(()),
                };
                written.map_err(|e| e.to_string())?;
                if r < 200 {
                    let len = match cell {
                        Cell::Text(s) => s.chars().count(),
                        Cell::Number(_) => 8,
                        Cell::Empty => 0,
                    };
                    if widths.len() <= c {
                        widths.resize(c + 1, 0);
                    }
                    widths[c] = widths[c].max(len.min(60));
                }
            }
            r += 1;
        }
    }
    let sheet = workbook.worksheet_from_index(0).map_err(|e| e.to_string())?;
    for (c, w) in widths.iter().enumerate() {
        let col = u16::try_from(c).map_err(|_| "too many columns".to_owned())?;
        sheet.set_column_width(col, (*w as f64 + 2.0).max(6.0)).map_err(|e| e.to_string())?;
    }
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    workbook.save(file.path()).map_err(|e| e.to_string())?;
    Ok(file)
}

async fn results_rows(district: &District, campaign: &Campaign, tx: &mpsc::Sender<Batch>) -> Result<(), DistrictError> {
    let thresholds: Vec<String> = campaign.thresholds.iter().map(|t| t.label.vi.clone()).collect();
    let mut header_done = false;
    for subject in &campaign.subjects {
        let results = results::load(district, campaign, Depth::Hamlet, Some(&subject.id)).await?;
        let units: HashMap<&str, &results::UnitRow> = results.units.iter().map(|u| (u.id.as_str(), u)).collect();
        let mut batch = Vec::new();
        for item in &results.subjects {
            if !header_done {
                let mut header: Row = [
                    "Mã cán bộ",
                    "Cán bộ",
                    "Chức vụ",
                    "Câu hỏi",
                    "Cấp",
                    "Mã đơn vị",
                    "Đơn vị",
                    "Tổng số ý kiến",
                    "Ẩn (nhóm dưới 5)",
                ]
                .into_iter()
                .map(Cell::text)
                .collect();
                for level in &item.levels {
                    header.push(Cell::text(format!("{} (số)", level.label.vi)));
                }
                for level in &item.levels {
                    header.push(Cell::text(format!("{} (%)", level.label.vi)));
                }
                header.extend(thresholds.iter().map(Cell::text));
                batch.push(header);
                header_done = true;
            }
            for row in &item.rows {
                let unit = units.get(row.unit.as_str());
                let mut out: Row = vec![
                    Cell::text(&item.subject),
                    Cell::text(&item.name),
                    Cell::text(&item.position),
                    Cell::text(&item.question_label.vi),
                    Cell::text(unit.map_or("", |u| level_vi(u.level))),
                    Cell::text(&row.unit),
                    Cell::text(unit.map_or("", |u| u.name.as_str())),
                    Cell::Number(row.total as f64),
                    Cell::text(if row.suppressed { "có" } else { "" }),
                ];
                let n = item.levels.len();
                match (&row.counts, &row.shares) {
                    (Some(counts), Some(shares)) => {
                        out.extend(counts.iter().map(|c| Cell::Number(*c as f64)));
                        out.extend(shares.iter().map(|s| Cell::Number(*s)));
                    }
                    _ => out.extend(std::iter::repeat_n(Cell::Empty, 2 * n)),
                }
                match &row.crossed {
                    Some(crossed) => out.extend(crossed.iter().map(|c| Cell::text(if *c { "vượt" } else { "" }))),
                    None => out.extend(std::iter::repeat_n(Cell::Empty, thresholds.len())),
                }
                batch.push(out);
            }
        }
        if tx.send(Ok(batch)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn level_vi(level: &str) -> &'static str {
    match level {
        "campaign" => "Toàn đợt",
        "province" => "Tỉnh",
        "district" => "Huyện",
        "commune" => "Xã",
        _ => "Thôn/Tổ",
    }
}

fn status_vi(status: &str) -> &'static str {
    match status {
        "submitted" => "Đã nộp",
        "voided" => "Đã hủy",
        _ => "Nháp",
    }
}

async fn response_rows(
    district: &District,
    campaign: &Campaign,
    tx: &mpsc::Sender<Batch>,
) -> Result<(), DistrictError> {
    let tree = district.catalog().units().await?;
    // Columns: one per answer key, in form order.
    let mut keys: Vec<(String, String, String)> = Vec::new(); // (question, subject, header)
    for q in &campaign.form.questions {
        if q.kind.per_subject() {
            for s in &campaign.subjects {
                keys.push((q.id.to_string(), s.id.to_string(), format!("{} — {}", q.label.vi, s.name)));
            }
        } else {
            keys.push((q.id.to_string(), String::new(), q.label.vi.clone()));
        }
    }
    let column: HashMap<(String, String), usize> =
        keys.iter().enumerate().map(|(i, (q, s, _))| ((q.clone(), s.clone()), i)).collect();
    let mut header: Row =
        ["Xã", "Thôn/Tổ", "Mã phiếu", "Trạng thái", "Phiên bản mẫu", "Ngày ghi", "Ngày nộp", "Ngày hủy", "Lý do hủy"]
            .into_iter()
            .map(Cell::text)
            .collect();
    header.extend(keys.iter().map(|(_, _, h)| Cell::text(h)));
    if tx.send(Ok(vec![header])).await.is_err() {
        return Ok(());
    }
    let names: HashMap<String, (String, String)> = campaign
        .hamlets
        .iter()
        .map(|h| {
            let hamlet = tree.get(&h.hamlet).map_or_else(|| h.hamlet.to_string(), |u| u.name.clone());
            let commune = tree.ancestor_at(&h.hamlet, UnitLevel::Commune).map_or_else(String::new, |u| u.name.clone());
            (h.hamlet.to_string(), (commune, hamlet))
        })
        .collect();
    let store = district.store();
    let id = campaign.id.as_str();
    let (mut after_hamlet, mut after_response) = (String::new(), String::new());
    // Keyset paging with row values, which both databases answer with a range scan of the
    // primary key (an OR of column comparisons makes PostgreSQL scan far more).
    const RESPONSES: &str = "SELECT hamlet_id, response_id, status, form_version, recorded_on, submitted_on, voided_on, \
            void_reason FROM responses WHERE campaign_id = $1 AND (hamlet_id, response_id) > ($2, $3) \
        ORDER BY hamlet_id, response_id LIMIT $4";
    const ANSWERS: &str = "SELECT hamlet_id, response_id, question_id, subject_id, kind, value_text, value_number \
        FROM answers WHERE campaign_id = $1 AND (hamlet_id, response_id) > ($2, $3) \
            AND (hamlet_id, response_id) <= ($4, $5) \
        ORDER BY campaign_id, hamlet_id, response_id, question_id, subject_id";
    type ResponseRow =
        (String, String, String, Option<i64>, Option<String>, Option<String>, Option<String>, Option<String>);
    type AnswerRow = (String, String, String, String, String, Option<String>, Option<i64>);
    loop {
        let page: Vec<ResponseRow> = on_pool!(store, pool => {
            sqlx::query_as(RESPONSES).bind(id).bind(&after_hamlet).bind(&after_response).bind(PAGE).fetch_all(pool).await
        })
        .map_err(query_failed("reading responses to export"))?;
        let Some(last) = page.last() else { return Ok(()) };
        let (last_hamlet, last_response) = (last.0.clone(), last.1.clone());
        let answers: Vec<AnswerRow> = on_pool!(store, pool => {
            sqlx::query_as(ANSWERS)
                .bind(id)
                .bind(&after_hamlet)
                .bind(&after_response)
                .bind(&last_hamlet)
                .bind(&last_response)
                .fetch_all(pool)
                .await
        })
        .map_err(query_failed("reading answers to export"))?;
        let mut by_response: HashMap<(String, String), Vec<AnswerRow>> = HashMap::new();
        for a in answers {
            by_response.entry((a.0.clone(), a.1.clone())).or_default().push(a);
        }
        let mut batch = Vec::with_capacity(page.len());
        for (hamlet, response, status, version, recorded, submitted, voided, reason) in page {
            let (commune_name, hamlet_name) =
                names.get(&hamlet).cloned().unwrap_or_else(|| (String::new(), hamlet.clone()));
            let mut row: Row = vec![
                Cell::Text(commune_name),
                Cell::Text(hamlet_name),
                Cell::text(&response),
                Cell::text(status_vi(&status)),
                version.map_or(Cell::Empty, |v| Cell::Number(v as f64)),
                Cell::opt(recorded),
                Cell::opt(submitted),
                Cell::opt(voided),
                Cell::opt(reason),
            ];
            let base = row.len();
            row.resize(base + keys.len(), Cell::Empty);
            for (_, _, question, subject, kind, text, number) in
                by_response.remove(&(hamlet.clone(), response.clone())).unwrap_or_default()
            {
                let Some(col) = column.get(&(question.clone(), subject)) else { continue };
                row[base + col] = match (kind.as_str(), text, number) {
                    ("level", Some(code), _) => {
                        Cell::Text(Level::from_code(&code).map_or(code, |l| l.label().vi.clone()))
                    }
                    ("yes_no", _, Some(n)) => Cell::text(if n != 0 { "Có" } else { "Không" }),
                    ("number", _, Some(n)) => Cell::Number(n as f64),
                    (_, Some(text), _) => Cell::Text(text),
                    _ => Cell::Empty,
                };
            }
            batch.push(row);
        }
        if tx.send(Ok(batch)).await.is_err() {
            return Ok(());
        }
        after_hamlet = last_hamlet;
        after_response = last_response;
    }
}
