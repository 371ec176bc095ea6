//! Small, realistic example data: a province with a district that keeps its level, and communes
//! that hang straight under the province as after the 2025 reform. Used by tests, benchmarks and
//! the server's demo.

use crate::campaign::{
    CAMPAIGN_VERSION, Campaign, CampaignState, EvaluationScope, HamletScope, Post, Schedule, Subject, SubjectCategory,
    Threshold,
};
use crate::day::Day;
use crate::form::{Form, Label, LevelSet, Question, QuestionKind};
use crate::ids::{CampaignId, QuestionId, SubjectId, UnitId};
use crate::unit::{Unit, UnitLevel, UnitTree};

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    // Fixture ids are literals chosen to be valid.
    #[allow(clippy::expect_used)]
    s.parse().expect("fixture id")
}

fn day(s: &str) -> Day {
    id(s)
}

fn unit(code: &str, name: &str, level: UnitLevel, parent: Option<&str>) -> Unit {
    Unit {
        id: id(code),
        name: name.to_owned(),
        level,
        parent: parent.map(id::<UnitId>),
        valid_from: day("2020-01-01"),
        valid_until: None,
        merged_from: vec![],
        merged_into: None,
    }
}

/// Province `tinh`, district `huyen` with commune `xa-a` (hamlets `thon-dong`, `thon-tay`), and
/// commune `xa-b` directly under the province (hamlet `to-1`, a residential group).
pub fn unit_tree() -> UnitTree {
    let units = vec![
        unit("tinh", "Tỉnh Mẫu", UnitLevel::Province, None),
        unit("huyen", "Huyện Mẫu", UnitLevel::District, Some("tinh")),
        unit("xa-a", "Xã An Phú", UnitLevel::Commune, Some("huyen")),
        unit("xa-b", "Phường Bình Minh", UnitLevel::Commune, Some("tinh")),
        unit("thon-dong", "Thôn Đông", UnitLevel::Hamlet, Some("xa-a")),
        unit("thon-tay", "Thôn Tây", UnitLevel::Hamlet, Some("xa-a")),
        unit("to-1", "Tổ dân phố 1", UnitLevel::Hamlet, Some("xa-b")),
    ];
    // The fixture tree is consistent by construction; its tests check it.
    #[allow(clippy::expect_used)]
    UnitTree::new(units).expect("fixture tree")
}

/// The example form: a confidence rating (required) and a comment per subject, whether the
/// resident attended the meeting, and how many people live in the household.
pub fn form() -> Form {
    Form {
        version: 1,
        questions: vec![
            Question {
                id: id("tin-nhiem"),
                label: Label::new("Mức độ tín nhiệm", "Level of confidence"),
                kind: QuestionKind::Rating { levels: LevelSet::Confidence },
                required: true,
            },
            Question {
                id: id("y-kien"),
                label: Label::new("Ý kiến khác", "Other comments"),
                kind: QuestionKind::Comment { max_chars: 2_000 },
                required: false,
            },
            Question {
                id: id("du-hop"),
                label: Label::new("Có dự họp thôn không?", "Attended the hamlet meeting?"),
                kind: QuestionKind::YesNo,
                required: false,
            },
            Question {
                id: id("so-nguoi"),
                label: Label::new("Số người trong hộ", "People in the household"),
                kind: QuestionKind::Number { min: 1, max: 50 },
                required: false,
            },
        ],
    }
}

/// The example campaign, a draft with `n` subjects (cadres of `xa-a`) over the three hamlets,
/// made under schema version 1: every hamlet rates every subject.
pub fn campaign_with_subjects(n: usize) -> Campaign {
    let positions = ["Chủ tịch UBND xã", "Phó Chủ tịch UBND xã", "Bí thư Đảng ủy", "Công chức Tư pháp - Hộ tịch"];
    let hamlets = ["thon-dong", "thon-tay"];
    Campaign {
        schema_version: 1,
        id: id::<CampaignId>("tin-nhiem-2025"),
        name: Label::new("Lấy ý kiến tín nhiệm cán bộ xã năm 2025", "2025 confidence survey of commune cadres"),
        form: form(),
        subjects: (0..n)
            .map(|i| Subject {
                id: if i == 0 { id("ong-an") } else { id(&format!("can-bo-{i:02}")) },
                name: format!("Cán bộ số {}", i + 1),
                position: positions[i % positions.len()].to_owned(),
                commune: id("xa-a"),
                home_hamlet: id(hamlets[i % hamlets.len()]),
                category: None,
                post: None,
                scope: EvaluationScope::Home,
            })
            .collect(),
        hamlets: vec![
            HamletScope { hamlet: id("thon-dong"), expected_voters: 320, ballot: vec![] },
            HamletScope { hamlet: id("thon-tay"), expected_voters: 275, ballot: vec![] },
            HamletScope { hamlet: id("to-1"), expected_voters: 180, ballot: vec![] },
        ],
        schedule: Schedule { opens_on: day("2025-06-01"), closes_on: day("2025-06-20") },
        thresholds: Threshold::defaults(),
        max_responses_per_day: crate::campaign::DEFAULT_MAX_RESPONSES_PER_DAY,
        sealing: None,
        state: CampaignState::Draft,
    }
}

/// The example campaign with three subjects, as a draft.
pub fn campaign() -> Campaign {
    campaign_with_subjects(3)
}

/// The example campaign with `n` subjects, opened.
pub fn open_campaign_with_subjects(n: usize) -> Campaign {
    let mut c = campaign_with_subjects(n);
    c.state = CampaignState::Open;
    c
}

/// The example campaign, opened.
pub fn open_campaign() -> Campaign {
    open_campaign_with_subjects(3)
}

/// The example campaign under schema version 2, a draft: four cadres of `xa-a` and one of
/// `xa-b`, each evaluated where they live, but `ong-an` (chairman of `xa-a`'s People's
/// Committee), whom the whole commune evaluates. Ballots: `thon-dong` rates `ong-an` and
/// `ba-binh`, `thon-tay` rates `ong-an`, `ong-cuong` and `ba-dung`, `to-1` rates `ong-em`.
pub fn scoped_campaign() -> Campaign {
    let subject = |code: &str, name: &str, position: &str, commune: &str, home: &str, category, post| Subject {
        id: id(code),
        name: name.to_owned(),
        position: position.to_owned(),
        commune: id(commune),
        home_hamlet: id(home),
        category: Some(category),
        post: Some(post),
        scope: EvaluationScope::Home,
    };
    let mut c = campaign_with_subjects(0);
    c.schema_version = CAMPAIGN_VERSION;
    c.subjects = vec![
        Subject {
            scope: EvaluationScope::Commune,
            ..subject(
                "ong-an",
                "Nguyễn Văn An",
                "Chủ tịch UBND xã",
                "xa-a",
                "thon-tay",
                SubjectCategory::CanBo,
                Post::ChuTichUbnd,
            )
        },
        subject("ba-binh", "Trần Thị Bình", "Bí thư Đảng ủy", "xa-a", "thon-dong", SubjectCategory::CanBo, Post::BiThu),
        subject(
            "ong-cuong",
            "Lê Văn Cường",
            "Công chức Tư pháp - Hộ tịch",
            "xa-a",
            "thon-tay",
            SubjectCategory::CongChuc,
            Post::Other,
        ),
        subject(
            "ba-dung",
            "Phạm Thị Dung",
            "Phó Chủ tịch Hội Nông dân",
            "xa-a",
            "thon-tay",
            SubjectCategory::KhongChuyenTrach,
            Post::Other,
        ),
        subject(
            "ong-em",
            "Hoàng Văn Em",
            "Chủ tịch Ủy ban MTTQ phường",
            "xa-b",
            "to-1",
            SubjectCategory::CanBo,
            Post::ChuTichMttq,
        ),
    ];
    c.resolve_ballots(&unit_tree());
    c
}

/// The example campaign under schema version 2, opened, its answers sealed for the key derived
/// from `seed`; with that key.
pub fn sealed_campaign(seed: [u8; 32]) -> (Campaign, crate::sealed::SecretKey) {
    let key = crate::sealed::SecretKey::from_seed(seed);
    let mut c = scoped_campaign();
    c.state = CampaignState::Open;
    c.sealing = Some(crate::campaign::Sealing::new(key.public_key()));
    (c, key)
}

/// A question id of the example form.
pub fn question(name: &str) -> QuestionId {
    id(name)
}

/// A subject id.
pub fn subject(name: &str) -> SubjectId {
    id(name)
}

/// A unit id.
pub fn hamlet(name: &str) -> UnitId {
    id(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_campaign_is_valid_against_the_example_tree() {
        let tree = super::unit_tree();
        assert_eq!(super::campaign().validate(Some(&tree)), Ok(()));
        assert_eq!(super::campaign_with_subjects(20).validate(Some(&tree)), Ok(()));
        assert_eq!(super::scoped_campaign().validate(Some(&tree)), Ok(()));
    }
}
