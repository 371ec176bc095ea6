//! Snapshot tests: every page rendered from fixture data, in Vietnamese and English, compared
//! with the files in `snapshots/` (one tag a line, so a change shows as a readable diff).
//! `cargo test` checks them; `UPDATE_EXPECT=1 cargo test -p hamlet-server --lib pages::`
//! rewrites them after an intended change.

use expect_test::expect_file;
use hamlet_sync_core::{Day, Label, fixtures};
use maud::Markup;

use super::accounts::{self, Enrollment, PersonRow};
use super::district::{self as d, AuditQuery, CampaignListItem};
use super::layout::{Chrome, Menu};
use crate::accounts::{Device, Person, Role};
use crate::audit::AuditEntry;
use crate::district::catalog::CampaignSummary;
use crate::district::progress::{Alert, CommuneProgress, Counts, DeviceRow, HamletProgress, Progress};
use crate::district::results::{Batched, Depth, LevelInfo, ResultRow, Results, SubjectResult, ThresholdInfo, UnitRow};
use crate::district::review::{Comment, Comments, ConflictValue, ReviewItem, Reviewed};
use hamlet_sync_core::texts::Lang;

/// 2025-06-10 09:00 in Vietnam.
const NOW: i64 = 1_749_520_800_000;
const HOUR: i64 = 3_600_000;

/// One tag a line: the snapshot files diff line by line. The stylesheet, the same in every
/// page, has a snapshot of its own.
fn lines(page: Markup) -> String {
    let html = page.into_string();
    assert!(html.contains(super::layout::STYLE), "every page carries the stylesheet");
    let mut out = html.replace(super::layout::STYLE, "/* stylesheet.css */").replace("><", ">\n<");
    out.push('\n');
    out
}

fn chrome(lang: Lang, path: &str, menu: Menu) -> Chrome {
    Chrome { lang, path: path.into(), menu, csrf: "csrf-token-1".into() }
}

/// Renders `page` in both languages and compares each with `snapshots/<name>.<lang>.html`.
macro_rules! check {
    ($name:literal, $path:expr, $menu:expr, |$c:ident| $page:expr) => {{
        for lang in [Lang::Vi, Lang::En] {
            let $c = chrome(lang, $path, $menu);
            let html = lines($page);
            match lang {
                Lang::Vi => expect_file![concat!("snapshots/", $name, ".vi.html")].assert_eq(&html),
                Lang::En => expect_file![concat!("snapshots/", $name, ".en.html")].assert_eq(&html),
            }
        }
    }};
}

fn counts(expected: u64, recorded: u64, submitted: u64) -> Counts {
    Counts {
        expected_voters: expected,
        recorded,
        drafts: recorded - submitted,
        submitted,
        voided: 1,
        tallies: 0,
        ballots_returned: 0,
        participation_percent: submitted as f64 * 100.0 / expected as f64,
        to_review: 2,
    }
}

fn device(id: &str, hamlet: &str, hamlet_name: &str, hours_ago: i64, silent: bool) -> DeviceRow {
    DeviceRow {
        device: id.into(),
        peer: format!("peer-{id}"),
        hamlet: hamlet.into(),
        hamlet_name: hamlet_name.into(),
        first_seen_at: NOW - 200 * HOUR,
        last_sync_at: NOW - hours_ago * HOUR,
        syncs: 14,
        silent,
    }
}

fn hamlet(id: &str, name: &str, counts: Counts, devices: Vec<DeviceRow>) -> HamletProgress {
    let silent = devices.iter().filter(|d| d.silent).count();
    HamletProgress {
        id: id.into(),
        name: name.into(),
        commune: "xa-a".into(),
        commune_name: "Xã An Phú".into(),
        ballot: vec![crate::district::progress::BallotSubject {
            id: "ong-an".into(),
            name: "Nguyễn Văn An".into(),
            position: "Chủ tịch UBND xã".into(),
        }],
        last_sync_at: devices.iter().map(|d| d.last_sync_at).max(),
        nothing_yet: counts.recorded == 0,
        counts,
        devices,
        silent_devices: silent,
    }
}

fn progress() -> Progress {
    let hamlets = vec![
        hamlet(
            "thon-dong",
            "Thôn Đông",
            counts(320, 120, 110),
            vec![
                device("may-1", "thon-dong", "Thôn Đông", 2, false),
                device("may-2", "thon-dong", "Thôn Đông", 100, true),
            ],
        ),
        hamlet("thon-tay", "Thôn Tây <&>", counts(275, 0, 0), vec![]),
    ];
    Progress {
        campaign: "tin-nhiem-2025".into(),
        silent_after_days: 3,
        now: NOW,
        totals: counts(595, 120, 110),
        communes: vec![CommuneProgress {
            id: "xa-a".into(),
            name: "Xã An Phú".into(),
            merged_into: Some("Xã An Phú Mới".into()),
            hamlets: 2,
            hamlets_with_nothing: 1,
            silent_devices: 1,
            counts: counts(595, 120, 110),
        }],
        hamlets,
        alerts: vec![
            Alert::OverVoters {
                hamlet: "thon-dong".into(),
                hamlet_name: "Thôn Đông".into(),
                counted: 400,
                expected: 320,
            },
            Alert::BusyCollector {
                hamlet: "thon-dong".into(),
                hamlet_name: "Thôn Đông".into(),
                device: "may-1".into(),
                collector: "Chị Lan".into(),
                day: "2025-06-09".into(),
                responses: 250,
                limit: 200,
            },
        ],
    }
}

fn levels() -> Vec<LevelInfo> {
    vec![
        LevelInfo { code: "cao", label: Label::new("Tín nhiệm cao", "High confidence"), low: false },
        LevelInfo { code: "tin-nhiem", label: Label::new("Tín nhiệm", "Confidence"), low: false },
        LevelInfo { code: "thap", label: Label::new("Tín nhiệm thấp", "Low confidence"), low: true },
    ]
}

fn unit(id: &str, name: &str, level: &'static str, parent: Option<&str>, depth: usize) -> UnitRow {
    UnitRow {
        id: id.into(),
        name: name.into(),
        level,
        parent: parent.map(Into::into),
        depth,
        merged_into: None,
        expected_voters: 320,
        submitted: 110,
        ballots_returned: 0,
        participation_percent: Some(34.4),
    }
}

fn row(unit: &str, counts: Option<Vec<u64>>, crossed: Option<Vec<bool>>) -> ResultRow {
    let total = counts.as_ref().map_or(3, |c| c.iter().sum());
    let shares = counts.as_ref().map(|c| c.iter().map(|n| *n as f64 * 100.0 / total as f64).collect());
    ResultRow {
        unit: unit.into(),
        total,
        suppressed: counts.is_none(),
        counts,
        shares,
        crossed,
        expected_voters: 320,
        participation_percent: Some(34.4),
    }
}

/// Results to hamlets for the campaign's first two subjects: one crosses a threshold, one
/// hamlet is a hidden small group.
fn results(open: bool) -> Results {
    let campaign = fixtures::campaign();
    let units = vec![
        unit(crate::district::results::OVERALL, "", "campaign", None, 0),
        unit("xa-a", "Xã An Phú", "commune", Some(crate::district::results::OVERALL), 1),
        unit("thon-dong", "Thôn Đông", "hamlet", Some("xa-a"), 2),
        unit("thon-tay", "Thôn Tây", "hamlet", Some("xa-a"), 2),
    ];
    let subjects = campaign.subjects[..2]
        .iter()
        .enumerate()
        .map(|(i, s)| SubjectResult {
            question: "tin-nhiem".into(),
            question_label: Label::new("Mức độ tín nhiệm", "Level of confidence"),
            subject: s.id.to_string(),
            name: s.name.clone(),
            position: s.position.clone(),
            category: s.category,
            post: s.post,
            scope: vec!["thon-dong".into(), "thon-tay".into()],
            levels: levels(),
            rows: vec![
                row("", Some(if i == 0 { vec![60, 30, 20] } else { vec![10, 20, 80] }), Some(vec![i == 1, false])),
                row("xa-a", Some(if i == 0 { vec![60, 30, 20] } else { vec![10, 20, 80] }), Some(vec![i == 1, false])),
                row("thon-dong", Some(vec![60, 30, 17]), Some(vec![false, false])),
                row("thon-tay", None, None),
            ],
        })
        .collect();
    Results {
        campaign: campaign.id.to_string(),
        depth: Depth::Hamlet,
        min_group: 5,
        thresholds: vec![
            ThresholdInfo {
                label: Label::new("Trên 1/2 tín nhiệm thấp", "Over 1/2 low"),
                numerator: 1,
                denominator: 2,
                inclusive: false,
            },
            ThresholdInfo {
                label: Label::new("Từ 2/3 tín nhiệm thấp", "2/3 or more low"),
                numerator: 2,
                denominator: 3,
                inclusive: true,
            },
        ],
        units,
        subjects,
        published: None,
        batched: open.then_some(Batched { batch: 5, pending: 3 }),
    }
}

fn review_items() -> Vec<ReviewItem> {
    vec![
        ReviewItem {
            kind: "conflict",
            item_key: "conflict:thon-dong:r1:tin-nhiem/ong-an".into(),
            hamlet: "thon-dong".into(),
            hamlet_name: "Thôn Đông".into(),
            commune_name: "Xã An Phú".into(),
            entity_kind: "response".into(),
            entity_id: "r1".into(),
            path: "responses/r1/answers/tin-nhiem/ong-an".into(),
            flag: None,
            values: vec![
                ConflictValue {
                    value: "cao".into(),
                    actor: "a1b2c3d4e5f60718".into(),
                    device: Some("may-1".into()),
                    shown: true,
                },
                ConflictValue { value: "thap".into(), actor: "ffeeddccbbaa9988".into(), device: None, shown: false },
            ],
            detail: serde_json::json!({}),
            reviewed: None,
        },
        ReviewItem {
            kind: "flag",
            item_key: "flag:thon-dong:r2:edited_after_seal".into(),
            hamlet: "thon-dong".into(),
            hamlet_name: "Thôn Đông".into(),
            commune_name: "Xã An Phú".into(),
            entity_kind: "response".into(),
            entity_id: "r2".into(),
            path: String::new(),
            flag: Some("edited_after_seal".into()),
            values: vec![],
            detail: serde_json::json!({ "key": "tin-nhiem/ong-an", "sealed": "cao", "current": "thap" }),
            reviewed: Some(Reviewed {
                at: NOW - HOUR, by: "admin".into(), comment: "Đã gọi điện <xác nhận>".into()
            }),
        },
    ]
}

#[test]
fn stylesheet() {
    expect_file!["snapshots/stylesheet.css"].assert_eq(&super::layout::STYLE.replace('}', "}\n"));
}

#[test]
fn account_pages() {
    check!("login", "/login?next=/admin", Menu::None, |c| accounts::login(&c, "/admin", None));
    check!("login-refused", "/login", Menu::None, |c| accounts::login(&c, "/", Some(c.t().bad_credentials)));
    check!("password", "/password", Menu::Staff, |c| accounts::password(&c, true, Some(c.t().passwords_differ)));
    let people = vec![
        PersonRow {
            person: Person {
                id: "admin".into(),
                display_name: "Quản trị".into(),
                role: Role::Admin,
                must_change_password: false,
            },
            assignments: vec![],
        },
        PersonRow {
            person: Person {
                id: "chi-lan".into(),
                display_name: "Chị Lan <thư ký>".into(),
                role: Role::Collector,
                must_change_password: false,
            },
            assignments: vec!["tin-nhiem-2025/thon-dong".into(), "tin-nhiem-2025/thon-tay".into()],
        },
    ];
    check!("people", "/admin/people", Menu::Admin, |c| accounts::people(&c, &people, None));
    check!("one-time-password", "/admin/people", Menu::Admin, |c| {
        accounts::one_time_password(&c, "xa-vien", "mot-lan-12345")
    });
    let enrollment = Enrollment {
        person: "chi-lan".into(),
        code: "ABCD-EFGH".into(),
        link: "https://hamlet.example/collect/#enroll=ABCD-EFGH".into(),
        qr_svg: "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>".into(),
        expires_at: NOW + 72 * HOUR,
    };
    check!("enrollment", "/admin/people/chi-lan/enroll", Menu::Admin, |c| accounts::enrollment(&c, &enrollment));
    let device = |id: &str, offset: Option<i64>, revoked: bool| Device {
        id: id.into(),
        person_id: "chi-lan".into(),
        name: format!("Điện thoại {id}"),
        created_at: NOW - 300 * HOUR,
        last_sync_at: Some(NOW - 2 * HOUR),
        revoked_at: revoked.then_some(NOW - HOUR),
        clock_offset_ms: offset,
        actors: vec![],
    };
    let devices = vec![
        device("c1", Some(3 * 24 * HOUR), false),
        device("c2", Some(-2 * 24 * HOUR), false),
        device("c3", Some(60_000), true),
        device("c4", None, false),
    ];
    check!("admin-devices", "/admin/devices", Menu::Admin, |c| accounts::devices(&c, &devices, None));
}

#[test]
fn campaign_pages() {
    let summary = |id: &str, state: &str| CampaignSummary {
        id: id.into(),
        name_vi: format!("Đợt {id}"),
        name_en: if state == "draft" { String::new() } else { format!("Campaign {id}") },
        state: state.into(),
        created_at: NOW - 500 * HOUR,
        updated_at: NOW - 5 * HOUR,
    };
    let list = vec![
        CampaignListItem { summary: summary("tin-nhiem-2025", "open"), schedule: "01/06/2025 – 20/06/2025".into() },
        CampaignListItem { summary: summary("nhap", "draft"), schedule: String::new() },
    ];
    check!("campaigns", "/", Menu::Staff, |c| d::render_campaigns(&c, &list));
    check!("campaigns-empty", "/", Menu::Admin, |c| d::render_campaigns(&c, &[]));
    let campaign = fixtures::open_campaign();
    let p = progress();
    check!("overview", "/campaigns/tin-nhiem-2025?commune=xa-a", Menu::Admin, |c| {
        d::render_overview(&c, &d::OverviewView { campaign: &campaign, progress: &p, commune: Some("xa-a") })
    });
    let r = results(true);
    check!("results", "/campaigns/tin-nhiem-2025/results", Menu::Staff, |c| {
        d::render_results(&c, &d::ResultsView { campaign: &campaign, results: &r })
    });
    let mut one = results(false);
    one.subjects.truncate(1);
    check!("subject", "/campaigns/tin-nhiem-2025/results/ong-an?commune=xa-a", Menu::Staff, |c| {
        d::render_subject(&c, &d::SubjectView { campaign: &campaign, results: &one, commune: Some("xa-a") })
            .unwrap_or_default()
    });
    let items = review_items();
    check!("hamlet", "/campaigns/tin-nhiem-2025/hamlets/thon-dong", Menu::Staff, |c| {
        let view = d::HamletView {
            campaign: &campaign,
            progress: &p,
            hamlet: &p.hamlets[0],
            results: &r,
            review: &items[..1],
        };
        d::render_hamlet(&c, &view)
    });
    let found = Comments {
        total: 51,
        items: vec![
            Comment {
                subject: "ong-an".into(),
                subject_name: "Cán bộ số 1".into(),
                hamlet: Some("thon-dong".into()),
                hamlet_name: Some("Thôn Đông".into()),
                commune_name: "Xã An Phú".into(),
                text: "Cán bộ tận tình, <b>gần dân</b>".into(),
            },
            Comment {
                subject: "can-bo-01".into(),
                subject_name: "Cán bộ số 2".into(),
                hamlet: None,
                hamlet_name: None,
                commune_name: "Xã An Phú".into(),
                text: "Cần lắng nghe hơn".into(),
            },
        ],
    };
    check!("comments", "/campaigns/tin-nhiem-2025/comments?q=c%C3%A1n&subject=ong-an&page=2", Menu::Staff, |c| {
        let view = d::CommentsView {
            campaign: &campaign,
            text: "cán & bộ",
            subject: Some("ong-an"),
            number: 2,
            found: &found,
        };
        d::render_comments(&c, &view)
    });
    check!("review", "/campaigns/tin-nhiem-2025/review?status=all", Menu::Staff, |c| {
        let view = d::ReviewView { campaign: &campaign, all: true, items: &items, alerts: &p.alerts, number: 1 };
        d::render_review(&c, &view)
    });
    check!("review-empty", "/campaigns/tin-nhiem-2025/review", Menu::Staff, |c| {
        let view = d::ReviewView { campaign: &campaign, all: false, items: &[], alerts: &[], number: 1 };
        d::render_review(&c, &view)
    });
    check!("devices", "/campaigns/tin-nhiem-2025/devices", Menu::Staff, |c| {
        d::render_devices(&c, &d::DevicesView { campaign: &campaign, progress: &p, number: 1 })
    });
}

#[test]
fn admin_pages() {
    let entries: Vec<AuditEntry> = (0..3)
        .map(|i| AuditEntry {
            id: 40 - i,
            at: NOW - i * HOUR,
            actor: "admin".into(),
            action: "review.mark".into(),
            target: format!("flag:thon-dong:r{i}"),
            detail: "Đã xem <ok>".into(),
        })
        .collect();
    let q = AuditQuery { actor: Some("admin".into()), action: None, q: Some("thôn & xã".into()), before: None };
    check!("audit", "/admin/audit?actor=admin", Menu::Admin, |c| d::render_audit(&c, &q, &entries));
    let summaries = vec![CampaignSummary {
        id: "tin-nhiem-2025".into(),
        name_vi: "Lấy ý kiến tín nhiệm cán bộ xã năm 2025".into(),
        name_en: "2025 confidence survey".into(),
        state: "draft".into(),
        created_at: NOW - 500 * HOUR,
        updated_at: NOW - 5 * HOUR,
    }];
    let today = Day::from_ymd(2025, 6, 10).unwrap_or_else(|| unreachable!("a valid day"));
    check!("manage", "/admin/campaigns", Menu::Admin, |c| d::render_manage(&c, &summaries, today, None));
    let refused = crate::district::DistrictError::invalid("invalid_id", "\"a b\" is not a valid campaign id");
    check!("manage-refused", "/admin/campaigns", Menu::Admin, |c| {
        d::render_manage(&c, &summaries, today, Some(&refused))
    });
    let tree = fixtures::unit_tree();
    let draft = fixtures::scoped_campaign();
    check!("campaign-admin-draft", "/admin/campaigns/tin-nhiem-2025?done=1", Menu::Admin, |c| {
        d::render_campaign_admin(&c, &draft, &tree, None, true, false)
    });
    let open = fixtures::open_campaign();
    check!("campaign-admin-open", "/admin/campaigns/tin-nhiem-2025", Menu::Admin, |c| {
        d::render_campaign_admin(&c, &open, &tree, None, false, false)
    });
    check!("units", "/admin/units", Menu::Admin, |c| d::render_units(&c, &tree, None, false, 1));
}
