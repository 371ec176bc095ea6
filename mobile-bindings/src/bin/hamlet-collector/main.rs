//! `hamlet-collector`: everything a collector's phone does, on the command line, over the same
//! library (for demos, scripts and the load generator).

mod prompt;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use hamlet_mobile::enroll::EnrollError;
use hamlet_mobile::store::StoreError;
use hamlet_mobile::sync::SyncError;
use hamlet_mobile::views::{ResponseFilter, SyncReport, TallyInput};
use hamlet_mobile::{Collector, CollectorError, SyncEvent, SyncOptions};
use hamlet_sync_core::texts::Lang;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

const EXIT_CODES: &str = "Exit codes: 0 done; 1 unexpected failure; 2 bad command line; 3 invalid input \
(an answer, an id, a reason); 4 not enrolled, or no such campaign, hamlet or response; 5 network \
(server unreachable or link broken: nothing is lost, sync again); 6 refused by the server (code used \
or expired, device revoked); 7 local store or bundle file; 8 sync finished but incomplete (responses not yet acknowledged, documents refused or not on the server); \
9 the server's TLS certificate is not the pinned one or not trusted (nothing was sent).";

/// Record residents' feedback offline and sync it with the district server.
#[derive(Parser, Debug)]
#[command(name = "hamlet-collector", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The local store: one SQLite file, created on first use.
    #[arg(long, env = "HAMLET_STORE", default_value = "hamlet-collector.db", global = true)]
    store: PathBuf,
    /// Language of the output.
    #[arg(long, env = "HAMLET_LANG", value_enum, default_value = "vi", global = true)]
    lang: Language,
    /// Print JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// Record as if today were this day (YYYY-MM-DD) instead of the clock: for demos and tests
    /// that replay a campaign's schedule.
    #[arg(long, env = "HAMLET_TODAY", global = true, hide = true)]
    today: Option<String>,
    /// Seconds to wait while another program has the store open (one writer at a time).
    #[arg(long, env = "HAMLET_STORE_WAIT", default_value_t = 10, global = true)]
    wait: u64,
    /// Also believe the certificate authorities in this PEM file for https:// servers whose
    /// certificate the enrollment code did not pin (a district's own authority).
    #[arg(long, env = "HAMLET_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The language of the output, as `--lang` reads it. Its words are the table the server's pages
/// use too ([`hamlet_sync_core::texts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Language {
    /// Tiếng Việt.
    Vi,
    /// English.
    En,
}

impl From<Language> for Lang {
    fn from(language: Language) -> Lang {
        match language {
            Language::Vi => Lang::Vi,
            Language::En => Lang::En,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enroll this device with a one-time code (or, for a server without enrollment, name the
    /// collector and the hamlets by hand); then download the campaigns.
    Enroll {
        /// The server: host:port, http://host:port or https://host:port. May be left out when
        /// the code is a link that names it.
        #[arg(long, env = "HAMLET_SERVER", default_value = "")]
        server: String,
        /// The one-time code shown at the office, or what its QR code holds (a link, perhaps
        /// with the server certificate's fingerprint to pin).
        #[arg(long, required_unless_present = "collector")]
        code: Option<String>,
        /// A name for this device, shown to district staff.
        #[arg(long, default_value = "hamlet-collector")]
        device_name: String,
        /// Without enrollment: the collector's person id.
        #[arg(long, conflicts_with = "code", requires_all = ["campaign", "hamlet"])]
        collector: Option<String>,
        /// Without enrollment: the campaign id.
        #[arg(long)]
        campaign: Option<String>,
        /// Without enrollment: a hamlet assigned (repeat for several).
        #[arg(long)]
        hamlet: Vec<String>,
        /// Do not download the campaigns now.
        #[arg(long)]
        no_sync: bool,
    },
    /// List the campaigns and hamlets assigned, and each campaign's questions.
    Campaigns,
    /// Record a response: prompts for each answer, or takes them from --answer or --file.
    Record {
        /// The campaign (default: the only one assigned).
        #[arg(long)]
        campaign: Option<String>,
        /// The hamlet (default: the only one assigned).
        #[arg(long)]
        hamlet: Option<String>,
        /// An answer, KEY=VALUE (for example tin-nhiem/ong-an=tin_nhiem or so-nguoi=4).
        #[arg(long = "answer", short = 'a')]
        answers: Vec<String>,
        /// A JSON file with the answers: {"KEY": value, ...}.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Submit the response at once.
        #[arg(long)]
        submit: bool,
    },
    /// List responses.
    List {
        /// Only this campaign.
        #[arg(long)]
        campaign: Option<String>,
        /// Only this hamlet.
        #[arg(long)]
        hamlet: Option<String>,
        /// Only this status: draft, submitted or voided.
        #[arg(long)]
        status: Option<String>,
        /// Only recorded on this day (YYYY-MM-DD, or "today").
        #[arg(long)]
        day: Option<String>,
        /// Include responses recorded by other collectors.
        #[arg(long)]
        all: bool,
    },
    /// Change answers of a response (KEY= clears one). After submission the change is flagged.
    Edit {
        /// The response id, or its first characters.
        id: String,
        /// An answer, KEY=VALUE.
        #[arg(long = "answer", short = 'a', required = true)]
        answers: Vec<String>,
    },
    /// Submit responses: their answers are sealed and counted.
    Submit {
        /// Response ids, or their first characters.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Void a response (kept, never counted).
    Void {
        /// The response id, or its first characters.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Record a meeting's paper-ballot tally, or correct one (--id).
    Tally {
        /// The campaign (default: the only one assigned).
        #[arg(long)]
        campaign: Option<String>,
        /// The hamlet (default: the only one assigned).
        #[arg(long)]
        hamlet: Option<String>,
        /// The tally to correct.
        #[arg(long)]
        id: Option<String>,
        /// Ballots handed out.
        #[arg(long)]
        issued: u32,
        /// Ballots returned.
        #[arg(long)]
        returned: u32,
        /// Valid ballots.
        #[arg(long)]
        valid: u32,
        /// Invalid ballots.
        #[arg(long)]
        invalid: u32,
        /// A count, QUESTION/SUBJECT/LEVEL=N (repeat).
        #[arg(long = "count")]
        counts: Vec<String>,
    },
    /// What is recorded, and what the server has acknowledged.
    Status,
    /// Sync with the server (or a relay).
    Sync {
        /// Another server than the enrolled one (a relay at the commune office).
        #[arg(long)]
        server: Option<String>,
        /// Seconds to wait for each answer (raise on slow links).
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Connections to try before giving up.
        #[arg(long, default_value_t = 4)]
        attempts: u32,
    },
    /// Write everything the server has not acknowledged into a bundle file.
    ExportBundle {
        /// The file to write.
        path: PathBuf,
    },
    /// Apply a bundle file (from a relay or another device).
    ImportBundle {
        /// The file to read.
        path: PathBuf,
    },
}

/// A failure and the exit code that says what failed.
struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
}

impl From<CollectorError> for Failure {
    fn from(e: CollectorError) -> Failure {
        let (code, kind) = match &e {
            CollectorError::Answer(_)
            | CollectorError::Ledger(_)
            | CollectorError::Invalid(_)
            | CollectorError::Address(_)
            | CollectorError::Link(_)
            | CollectorError::Pem(_)
            | CollectorError::UntrustedServer { .. } => (3, "invalid"),
            CollectorError::Enroll(EnrollError::Certificate { .. })
            | CollectorError::Sync(SyncError::Certificate { .. }) => (9, "untrusted_certificate"),
            CollectorError::NotEnrolled
            | CollectorError::UnknownCampaign(_)
            | CollectorError::CampaignNotDownloaded(_)
            | CollectorError::HamletNotAssigned { .. }
            | CollectorError::NotFound { .. } => (4, "not_found"),
            CollectorError::Enroll(EnrollError::Refused { .. })
            | CollectorError::Sync(SyncError::Unauthorized { .. }) => (6, "refused"),
            // Storing what arrived failed: the phone's own store, not the network.
            CollectorError::Sync(SyncError::Local(_)) => (7, "storage"),
            CollectorError::Enroll(_) | CollectorError::Sync(_) => (5, "network"),
            CollectorError::Store(_)
            | CollectorError::Bundle(_)
            | CollectorError::Document { .. }
            | CollectorError::Runtime(_) => (7, "storage"),
        };
        Failure { code, kind, message: e.to_string() }
    }
}

/// The response whose id is `given`, or the one whose id begins with it: ids are long, and
/// people type their first characters (as `list` shows them). An id that begins several is
/// refused with them listed; one that begins none goes on as given, to be refused as unknown.
fn response_id(collector: &Collector, given: &str, lang: Lang) -> Result<String, Failure> {
    let all = collector.responses(&ResponseFilter { mine_only: false, ..ResponseFilter::default() })?;
    if given.is_empty() || all.iter().any(|r| r.id == given) {
        return Ok(given.to_owned());
    }
    let matching: Vec<&str> = all.iter().map(|r| r.id.as_str()).filter(|id| id.starts_with(given)).collect();
    match matching.as_slice() {
        [] => Ok(given.to_owned()),
        [one] => Ok((*one).to_owned()),
        many => Err(invalid(lang.ambiguous_response(given, many))),
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure { code: 3, kind: "invalid", message: message.into() }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The library's warnings (a damaged chunk set aside, a failed compaction) go to stderr;
    // HAMLET_LOG (a tracing filter) shows more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAMLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let (lang, json) = (Lang::from(cli.lang), cli.json);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json {
                eprintln!("{}", serde_json::json!({ "error": { "kind": f.kind, "message": f.message } }));
            } else {
                eprintln!("{}: {}", lang.texts().error, f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure {
        code: 1,
        kind: "internal",
        message: e.to_string(),
    })?;
    println!("{text}");
    Ok(())
}

/// `KEY=VALUE` pairs.
fn pairs(items: &[String]) -> Result<Vec<(String, String)>, Failure> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| invalid(format!("{item:?}: expected KEY=VALUE")))
        })
        .collect()
}

fn spinner(json: bool) -> ProgressBar {
    let bar = if json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    let style = ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The only campaign, or the one named.
fn pick_campaign(collector: &Collector, given: Option<String>) -> Result<String, Failure> {
    if let Some(c) = given {
        return Ok(c);
    }
    let campaigns = collector.campaigns();
    match campaigns.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(CollectorError::NotEnrolled.into()),
        _ => Err(invalid("several campaigns are assigned: name one with --campaign")),
    }
}

fn pick_hamlet(collector: &Collector, campaign: &str, given: Option<String>) -> Result<String, Failure> {
    if let Some(h) = given {
        return Ok(h);
    }
    let hamlets: Vec<String> = collector
        .campaigns()
        .into_iter()
        .filter(|c| c.id == campaign)
        .flat_map(|c| c.hamlets.into_iter().map(|h| h.id))
        .collect();
    match hamlets.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(invalid("several hamlets (or none) are assigned: name one with --hamlet")),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let (lang, json) = (Lang::from(cli.lang), cli.json);
    let collector = open(&cli.store, Duration::from_secs(cli.wait))?;
    if let Some(path) = &cli.ca_cert {
        let pem = std::fs::read_to_string(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        collector.trust_authorities(&pem)?;
    }
    if let Some(day) = &cli.today {
        collector.set_fixed_today(Some(day))?;
    }
    match cli.command {
        Command::Enroll { server, code, device_name, collector: person, campaign, hamlet, no_sync } => {
            let enrolled = match (code, person, campaign) {
                (Some(code), _, _) => collector.enroll(&server, &code, &device_name)?,
                (None, Some(person), Some(campaign)) => {
                    collector.setup_without_enrollment(&server, &person, &[(campaign, hamlet)])?
                }
                _ => return Err(invalid("give --code, or --collector with --campaign and --hamlet")),
            };
            // Enrolled is enrolled: a first sync that fails is said, and done again later.
            if !no_sync && let Err(f) = sync(&collector, None, SyncOptions::default(), lang, json) {
                eprintln!("{}: {}", lang.texts().first_sync_failed, f.message);
            }
            if json {
                return print_json(&enrolled);
            }
            println!("{}: {} ({})", lang.texts().device_enrolled, enrolled.collector, enrolled.server);
            for c in &enrolled.campaigns {
                println!(
                    "  {} {}: {} {}",
                    lang.texts().campaign,
                    c.campaign,
                    lang.texts().hamlet_list,
                    c.hamlets.join(", ")
                );
            }
        }
        Command::Campaigns => {
            let campaigns = collector.campaigns();
            if json {
                let detailed: Vec<serde_json::Value> = campaigns
                    .iter()
                    .map(|c| {
                        let ballots: serde_json::Map<String, serde_json::Value> = c
                            .hamlets
                            .iter()
                            .map(|h| {
                                let slots = collector.answer_slots(&c.id, &h.id).unwrap_or_default();
                                (h.id.clone(), serde_json::json!(slots))
                            })
                            .collect();
                        serde_json::json!({ "campaign": c, "questions": ballots })
                    })
                    .collect();
                return print_json(&detailed);
            }
            for c in &campaigns {
                let name = lang.pick(&c.name_vi, &c.name_en);
                println!(
                    "{} {} — {}",
                    lang.texts().campaign,
                    c.id,
                    if c.downloaded { name } else { lang.texts().not_downloaded }
                );
                if c.downloaded {
                    println!("  {}: {}", lang.texts().state, c.state);
                }
                for h in &c.hamlets {
                    match h.expected_voters {
                        Some(n) => println!("  - {} ({n})", h.id),
                        None => println!("  - {}", h.id),
                    }
                    // Each hamlet's own ballot: only the subjects its residents evaluate.
                    for slot in collector.answer_slots(&c.id, &h.id).unwrap_or_default() {
                        let subject = slot.subject_name.as_deref().map(|s| format!(" — {s}")).unwrap_or_default();
                        println!(
                            "    {} : {}{subject} [{}]",
                            slot.key,
                            lang.pick(&slot.label_vi, &slot.label_en),
                            slot.kind
                        );
                    }
                }
            }
        }
        Command::Record { campaign, hamlet, answers, file, submit } => {
            let campaign = pick_campaign(&collector, campaign)?;
            let hamlet = pick_hamlet(&collector, &campaign, hamlet)?;
            let mut given = pairs(&answers)?;
            if let Some(file) = file {
                given.extend(answers_from_file(&file)?);
            }
            let mut submit = submit;
            if given.is_empty() {
                let slots = collector.answer_slots(&campaign, &hamlet)?;
                let check = |key: &str, text: &str| {
                    collector.check_answer(&campaign, &hamlet, key, text).map_err(|e| e.to_string())
                };
                let (prompted, submit_now) = prompt::answers(&slots, lang, check)
                    .map_err(|e| invalid(format!("no answers given, and none could be asked for: {e}")))?;
                given = prompted;
                submit = submit || submit_now;
            }
            let id = collector.record(&campaign, &hamlet, &given)?;
            if submit && let Err(e) = collector.submit(&id) {
                // The draft is kept: say which, so that a retry completes it instead of
                // recording the same resident twice.
                if json {
                    print_json(&collector.response(&id)?)?;
                } else {
                    println!("{}: {id}", lang.texts().response_recorded);
                }
                let mut failure = Failure::from(e);
                failure.message = format!(
                    "{}: {}. {} {id}",
                    lang.texts().response_not_submitted,
                    failure.message,
                    lang.texts().kept_as_draft
                );
                return Err(failure);
            }
            let item = collector.response(&id)?;
            if json {
                return print_json(&item);
            }
            println!("{}: {id}", if submit { lang.texts().response_submitted } else { lang.texts().response_recorded });
        }
        Command::List { campaign, hamlet, status, day, all } => {
            let day = match day.as_deref() {
                Some("today") => Some(collector.today()),
                other => other.map(str::to_owned),
            };
            let filter = ResponseFilter { campaign, hamlet, status, recorded_on: day, mine_only: !all };
            let items = collector.responses(&filter)?;
            if json {
                return print_json(&items);
            }
            if items.is_empty() {
                println!("{}", lang.texts().no_responses);
            }
            for r in &items {
                let ack = if r.acknowledged { "✓" } else { "…" };
                let flag = if r.edited_after_submission.is_empty() { "" } else { " !" };
                println!(
                    "{}  {}  {:<9} {}  {ack}{flag}",
                    r.id,
                    r.hamlet,
                    r.status,
                    r.recorded_on.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Edit { id, answers } => {
            let id = response_id(&collector, &id, lang)?;
            let flagged = collector.edit(&id, &pairs(&answers)?)?;
            if json {
                return print_json(&collector.response(&id)?);
            }
            println!(
                "{}: {id}",
                if flagged { lang.texts().submitted_response_edited } else { lang.texts().response_edited }
            );
        }
        Command::Submit { ids } => {
            let ids = ids.iter().map(|id| response_id(&collector, id, lang)).collect::<Result<Vec<_>, _>>()?;
            for id in &ids {
                collector.submit(id)?;
                if !json {
                    println!("{}: {id}", lang.texts().response_submitted);
                }
            }
            if json {
                return print_json(&ids);
            }
        }
        Command::Void { id, reason } => {
            let id = response_id(&collector, &id, lang)?;
            collector.void(&id, &reason)?;
            if json {
                return print_json(&collector.response(&id)?);
            }
            println!("{}: {id}", lang.texts().response_voided);
        }
        Command::Tally { campaign, hamlet, id, issued, returned, valid, invalid: invalid_ballots, counts } => {
            let campaign = pick_campaign(&collector, campaign)?;
            let hamlet = pick_hamlet(&collector, &campaign, hamlet)?;
            let mut parsed = std::collections::HashMap::new();
            for (key, value) in pairs(&counts)? {
                let n = value.trim().parse::<u32>().map_err(|_| invalid(format!("{key}: {value:?} is not a count")))?;
                parsed.insert(key, n);
            }
            let input =
                TallyInput { id, campaign, hamlet, issued, returned, valid, invalid: invalid_ballots, counts: parsed };
            let id = collector.record_tally(&input)?;
            if json {
                return print_json(&serde_json::json!({ "tally": id }));
            }
            println!("{}: {id}", lang.texts().tally_recorded);
        }
        Command::Status => {
            let counts = collector.counts()?;
            if json {
                return print_json(&serde_json::json!({ "enrollment": collector.enrollment(), "counts": counts }));
            }
            if let Some(e) = collector.enrollment() {
                println!("{}: {}   {}: {}", lang.texts().collector, e.collector, lang.texts().server, e.server);
            }
            println!("{:<36} {}", lang.texts().recorded_today, counts.recorded_today);
            println!("{:<36} {}", lang.texts().draft_responses, counts.drafts);
            println!("{:<36} {}", lang.texts().not_acknowledged, counts.pending);
            println!("{:<36} {}", lang.texts().acknowledged, counts.acknowledged);
            println!("{:<36} {}", lang.texts().voided, counts.voided);
        }
        Command::Sync { server, timeout, attempts } => {
            let options =
                SyncOptions { reply_timeout: Duration::from_secs(timeout.max(1)), attempts, ..SyncOptions::default() };
            let report = sync(&collector, server.as_deref(), options, lang, json)?;
            if json {
                print_json(&report)?;
            } else {
                print_report(&report, lang);
            }
            let (pending, refused, unavailable) =
                (report.counts.pending, report.refused.len(), report.unavailable.len());
            if pending > 0 || refused > 0 || unavailable > 0 {
                return Err(Failure {
                    code: 8,
                    kind: "incomplete",
                    message: format!(
                        "{pending} {}, {refused} {}, {unavailable} {}",
                        lang.texts().not_acknowledged,
                        lang.texts().changes_refused,
                        lang.texts().not_on_server
                    ),
                });
            }
        }
        Command::ExportBundle { path } => {
            let bar = spinner(json);
            bar.set_message(lang.texts().bundle_exported);
            let report = collector.export_bundle(&path, &|done, total| {
                bar.set_length(u64::from(total));
                bar.set_position(u64::from(done));
            })?;
            bar.finish_and_clear();
            if json {
                return print_json(&report);
            }
            println!(
                "{}: {} ({} {}, {} {})",
                lang.texts().bundle_exported,
                report.path,
                report.changes,
                lang.texts().changes,
                report.bytes,
                lang.texts().bytes
            );
        }
        Command::ImportBundle { path } => {
            let bar = spinner(json);
            bar.set_message(lang.texts().bundle_imported);
            let report = collector.import_bundle(&path, &|done, total| {
                bar.set_length(u64::from(total));
                bar.set_position(u64::from(done));
            })?;
            bar.finish_and_clear();
            if json {
                return print_json(&report);
            }
            println!("{}: {} ({} {})", lang.texts().bundle_imported, report.path, report.changes, lang.texts().changes);
            for d in &report.skipped {
                println!("  {}: {d}", lang.texts().not_assigned_here);
            }
            for d in &report.incomplete {
                println!("  {}: {d}", lang.texts().bundle_incomplete);
            }
            for d in &report.refused {
                println!("  {}: {d}", lang.texts().changes_refused);
            }
        }
    }
    Ok(())
}

/// Opens the store, waiting up to `wait` while another program has it open.
fn open(store: &std::path::Path, wait: Duration) -> Result<Collector, Failure> {
    let started = std::time::Instant::now();
    loop {
        match Collector::open(store) {
            Err(CollectorError::Store(StoreError::InUse { .. })) if started.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

fn answers_from_file(path: &std::path::Path) -> Result<Vec<(String, String)>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Failure {
        code: 7,
        kind: "storage",
        message: format!("{}: {e}", path.display()),
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("{}: not JSON: {e}", path.display())))?;
    let map = value.get("answers").unwrap_or(&value);
    let serde_json::Value::Object(map) = map else {
        return Err(invalid(format!("{}: expected an object of answers", path.display())));
    };
    let answers: BTreeMap<String, String> = map
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(true) => "yes".into(),
                serde_json::Value::Bool(false) => "no".into(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    Ok(answers.into_iter().collect())
}

fn sync(
    collector: &Collector,
    server: Option<&str>,
    options: SyncOptions,
    lang: Lang,
    json: bool,
) -> Result<SyncReport, Failure> {
    let bar = spinner(json);
    bar.set_message(lang.texts().syncing);
    let report = collector.sync(server, &options, &|event| match event {
        SyncEvent::Connecting { .. } => bar.set_message(lang.texts().syncing),
        SyncEvent::Progress { done, total } => {
            bar.set_length(u64::from(total));
            bar.set_position(u64::from(done));
        }
        SyncEvent::Retrying { after_ms, reason, .. } => {
            bar.set_message(format!("{} {:.1} s ({reason})", lang.texts().retrying, after_ms as f64 / 1000.0));
        }
    });
    bar.finish_and_clear();
    Ok(report?)
}

fn print_report(report: &SyncReport, lang: Lang) {
    println!("{} ({} ms)", lang.texts().sync_done, report.duration_ms);
    println!(
        "  {}: {} {}, {} {}",
        lang.texts().sent,
        report.changes_sent,
        lang.texts().changes,
        report.bytes_sent,
        lang.texts().bytes
    );
    println!(
        "  {}: {} {}, {} {}",
        lang.texts().received,
        report.changes_received,
        lang.texts().changes,
        report.bytes_received,
        lang.texts().bytes
    );
    println!(
        "  {}: {}   {}: {}",
        lang.texts().round_trips,
        report.round_trips,
        lang.texts().connections,
        report.attempts
    );
    println!("  {}: {}", lang.texts().newly_acknowledged, report.newly_acknowledged);
    println!("  {}: {}", lang.texts().not_acknowledged, report.counts.pending);
    for d in &report.unavailable {
        println!("  {}: {d}", lang.texts().not_on_server);
    }
    for r in &report.refused {
        println!("  {}: {} — {}", lang.texts().changes_refused, r.document, r.reason);
    }
}
