//! Campaigns ("đợt lấy ý kiến"): who is evaluated, where, with which form, and their life cycle.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::day::Day;
use crate::form::{Form, FormError, Label};
use crate::ids::{CampaignId, SubjectId, UnitId};
use crate::unit::{UnitLevel, UnitTree};

/// A campaign's state. Transitions go forward only: draft → open → closed → published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CampaignState {
    /// Being prepared; the form may still change.
    Draft,
    /// Collecting; the form is frozen.
    Open,
    /// No longer collecting; results are being reviewed.
    Closed,
    /// Results are published.
    Published,
}

impl CampaignState {
    /// The state that may follow this one.
    pub fn next(self) -> Option<CampaignState> {
        match self {
            CampaignState::Draft => Some(CampaignState::Open),
            CampaignState::Open => Some(CampaignState::Closed),
            CampaignState::Closed => Some(CampaignState::Published),
            CampaignState::Published => None,
        }
    }
}

/// A cadre being evaluated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subject {
    /// Identifier, unique within the campaign.
    pub id: SubjectId,
    /// Full name.
    pub name: String,
    /// Position held (for example "Chủ tịch UBND xã").
    pub position: String,
    /// The commune where the cadre serves.
    pub commune: UnitId,
    /// The hamlet or residential group where the cadre lives.
    pub home_hamlet: UnitId,
    /// Which kind of post: cán bộ, công chức or người hoạt động không chuyên trách.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<SubjectCategory>,
    /// The post, as one of those the rules name (`position` says it in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Post>,
    /// Where residents evaluate the cadre (schema version 2; version 1 ignores it).
    #[serde(default, skip_serializing_if = "EvaluationScope::is_home")]
    pub scope: EvaluationScope,
}

/// The kind of post a cadre holds, as the rules on commune staff name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SubjectCategory {
    /// Cán bộ: elected or appointed to a political post (party, council, committee, front).
    CanBo,
    /// Công chức: a civil servant of the commune.
    CongChuc,
    /// Người hoạt động không chuyên trách: a non-specialised worker.
    KhongChuyenTrach,
}

impl SubjectCategory {
    /// Every category, in the order of the rules.
    pub const ALL: [SubjectCategory; 3] =
        [SubjectCategory::CanBo, SubjectCategory::CongChuc, SubjectCategory::KhongChuyenTrach];

    /// The code written in documents and CSV files.
    pub fn code(self) -> &'static str {
        match self {
            SubjectCategory::CanBo => "can_bo",
            SubjectCategory::CongChuc => "cong_chuc",
            SubjectCategory::KhongChuyenTrach => "khong_chuyen_trach",
        }
    }

    /// The category from its code.
    pub fn from_code(code: &str) -> Option<SubjectCategory> {
        SubjectCategory::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// A post the rules name (who evaluates a cadre, later, depends on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Post {
    /// Bí thư Đảng ủy: the party committee's secretary.
    BiThu,
    /// Phó Bí thư Đảng ủy: a deputy secretary.
    PhoBiThu,
    /// Chủ tịch HĐND: chair of the People's Council.
    ChuTichHdnd,
    /// Phó Chủ tịch HĐND: vice-chair of the People's Council.
    PhoChuTichHdnd,
    /// Chủ tịch UBND: chair of the People's Committee.
    ChuTichUbnd,
    /// Phó Chủ tịch UBND: vice-chair of the People's Committee.
    PhoChuTichUbnd,
    /// Chủ tịch Ủy ban MTTQ: chair of the Fatherland Front committee.
    ChuTichMttq,
    /// Head of a mass organisation (women's union, farmers', veterans', youth union).
    TruongDoanThe,
    /// Another post: `position` says which.
    Other,
}

impl Post {
    /// Every post, in the order of the rules.
    pub const ALL: [Post; 9] = [
        Post::BiThu,
        Post::PhoBiThu,
        Post::ChuTichHdnd,
        Post::PhoChuTichHdnd,
        Post::ChuTichUbnd,
        Post::PhoChuTichUbnd,
        Post::ChuTichMttq,
        Post::TruongDoanThe,
        Post::Other,
    ];

    /// The code written in documents and CSV files.
    pub fn code(self) -> &'static str {
        match self {
            Post::BiThu => "bi_thu",
            Post::PhoBiThu => "pho_bi_thu",
            Post::ChuTichHdnd => "chu_tich_hdnd",
            Post::PhoChuTichHdnd => "pho_chu_tich_hdnd",
            Post::ChuTichUbnd => "chu_tich_ubnd",
            Post::PhoChuTichUbnd => "pho_chu_tich_ubnd",
            Post::ChuTichMttq => "chu_tich_mttq",
            Post::TruongDoanThe => "truong_doan_the",
            Post::Other => "other",
        }
    }

    /// The post from its code.
    pub fn from_code(code: &str) -> Option<Post> {
        Post::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// Where residents evaluate a subject: the hamlets whose ballots carry them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EvaluationScope {
    /// The subject's home hamlet only: the rule ("nơi cán bộ sinh sống").
    #[default]
    Home,
    /// Every hamlet of the subject's commune (in the campaign).
    Commune,
    /// The home hamlet and these hamlets.
    Hamlets(Vec<UnitId>),
}

impl EvaluationScope {
    /// Whether this is the default scope.
    pub fn is_home(&self) -> bool {
        *self == EvaluationScope::Home
    }
}

/// A hamlet in scope, with the number of voters expected to take part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HamletScope {
    /// The hamlet or residential group.
    pub hamlet: UnitId,
    /// Voters expected, for participation.
    pub expected_voters: u32,
    /// Schema version 2: the subjects this hamlet's residents evaluate, in the campaign's
    /// order, as [`Campaign::resolve_ballots`] made them from the subjects' scopes. Empty: the
    /// hamlet is not in the campaign. Version 1 has no ballot: every hamlet rates every subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ballot: Vec<SubjectId>,
}

/// When collection runs, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    /// First day of collection.
    pub opens_on: Day,
    /// Last day of collection.
    pub closes_on: Day,
}

/// A share of "low" answers that triggers consequences: crossed when
/// `low / total > numerator / denominator` (or `>=` when `inclusive`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Threshold {
    /// What crossing it means, for display.
    pub label: Label,
    /// Numerator of the share.
    pub numerator: u32,
    /// Denominator of the share.
    pub denominator: u32,
    /// `true` for "at least", `false` for "more than".
    pub inclusive: bool,
}

impl Threshold {
    /// Whether `low` answers out of `total` cross the threshold. Exact integer arithmetic: no
    /// rounding decides a cadre's fate.
    pub fn crossed(&self, low: u64, total: u64) -> bool {
        if total == 0 {
            return false;
        }
        let lhs = u128::from(low) * u128::from(self.denominator);
        let rhs = u128::from(self.numerator) * u128::from(total);
        if self.inclusive { lhs >= rhs } else { lhs > rhs }
    }

    /// The two thresholds of the rules in force: more than 1/2 and at least 2/3 "low".
    pub fn defaults() -> Vec<Threshold> {
        vec![
            Threshold {
                label: Label::new("Trên 1/2 tín nhiệm thấp", "More than 1/2 low"),
                numerator: 1,
                denominator: 2,
                inclusive: false,
            },
            Threshold {
                label: Label::new("Từ 2/3 trở lên tín nhiệm thấp", "At least 2/3 low"),
                numerator: 2,
                denominator: 3,
                inclusive: true,
            },
        ]
    }
}

fn default_thresholds() -> Vec<Threshold> {
    Threshold::defaults()
}

/// Responses one collector may plausibly record in a hamlet in one day, unless the campaign
/// says otherwise: a whole meeting's worth.
pub const DEFAULT_MAX_RESPONSES_PER_DAY: u32 = 150;

fn default_max_responses_per_day() -> u32 {
    DEFAULT_MAX_RESPONSES_PER_DAY
}

/// The campaign schema version this library writes: per-subject evaluation scopes and
/// per-hamlet ballots. Version 1 (every hamlet rates every subject) is still read.
pub const CAMPAIGN_VERSION: u32 = 2;

fn legacy_version() -> u32 {
    1
}

/// A campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Campaign {
    /// Schema version: 1 (absent) — every hamlet in `hamlets` rates every subject; 2 — each
    /// hamlet rates the subjects of its `ballot`.
    #[serde(default = "legacy_version")]
    pub schema_version: u32,
    /// Identifier.
    pub id: CampaignId,
    /// Name, for display.
    pub name: Label,
    /// The form, frozen once open.
    pub form: Form,
    /// The cadres evaluated.
    pub subjects: Vec<Subject>,
    /// The hamlets where opinions are collected.
    pub hamlets: Vec<HamletScope>,
    /// When collection runs.
    pub schedule: Schedule,
    /// Thresholds flagged per subject.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<Threshold>,
    /// More responses than this recorded by one collector in one hamlet on one day are shown
    /// to staff as implausible (ballot stuffing?); they still count until reviewed otherwise.
    #[serde(default = "default_max_responses_per_day")]
    pub max_responses_per_day: u32,
    /// Life-cycle state.
    pub state: CampaignState,
    /// The key answers are sealed for (schema version 2, set by the district server when the
    /// campaign opens): devices write answers and comments only as ciphertext for it. Absent,
    /// answers are written in the clear (every version 1 campaign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing: Option<Sealing>,
}

/// The public key a campaign's answers are sealed for, and how (see [`crate::sealed`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sealing {
    /// The HPKE suite: [`crate::sealed::SUITE`].
    pub suite: String,
    /// The campaign's X25519 public key, 64 hex digits.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub public_key: crate::sealed::PublicKey,
}

impl Sealing {
    /// Sealing for `public_key` with the suite this crate writes.
    pub fn new(public_key: crate::sealed::PublicKey) -> Sealing {
        Sealing { suite: crate::sealed::SUITE.to_owned(), public_key }
    }
}

/// What is wrong with a campaign, or with a change asked of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    /// The campaign has no name.
    #[error("campaign has no Vietnamese name")]
    NoName,
    /// The form is invalid.
    #[error("form: {0}")]
    Form(#[from] FormError),
    /// No subject is evaluated.
    #[error("campaign evaluates no subject")]
    NoSubject,
    /// No hamlet is in scope.
    #[error("campaign has no hamlet in scope")]
    NoHamlet,
    /// Two subjects share an id.
    #[error("subject {0} appears twice")]
    DuplicateSubject(SubjectId),
    /// A subject lacks its name or position.
    #[error("subject {0} needs a name and a position")]
    IncompleteSubject(SubjectId),
    /// A hamlet appears twice in scope.
    #[error("hamlet {0} is in scope twice")]
    DuplicateHamlet(UnitId),
    /// A hamlet in scope expects no voter.
    #[error("hamlet {0} expects no voter")]
    NoVoters(UnitId),
    /// A unit named by the campaign is missing from the tree, or of the wrong level.
    #[error("{role} {unit} is not a {expected:?} of the unit tree")]
    WrongUnit {
        /// How the campaign uses the unit ("hamlet in scope", "home hamlet of subject X", ...).
        role: String,
        /// The unit.
        unit: UnitId,
        /// The level it should have.
        expected: UnitLevel,
    },
    /// A hamlet in scope is not valid on every day of the schedule.
    #[error("hamlet in scope {hamlet} is not valid on every day from {opens_on} to {closes_on}")]
    HamletNotValid {
        /// The hamlet.
        hamlet: UnitId,
        /// The schedule's first day.
        opens_on: Day,
        /// Its last day.
        closes_on: Day,
    },
    /// A hamlet in scope was merged into another one in scope: its residents would count twice.
    #[error("hamlet in scope {hamlet} was merged into {into}, which is in scope too")]
    MergedInScope {
        /// The hamlet merged away.
        hamlet: UnitId,
        /// The one in scope it was merged into.
        into: UnitId,
    },
    /// The schedule ends before it starts.
    #[error("schedule closes on {closes_on} before it opens on {opens_on}")]
    Schedule {
        /// Opening day.
        opens_on: Day,
        /// Closing day.
        closes_on: Day,
    },
    /// A threshold that is not a share between 0 and 1.
    #[error("threshold {index} ({numerator}/{denominator}) must be a share above 0 and at most 1")]
    Threshold {
        /// Position in the list, from 0.
        index: usize,
        /// Its numerator.
        numerator: u32,
        /// Its denominator.
        denominator: u32,
    },
    /// A schema version this library does not know.
    #[error("campaign schema version {0} is not 1 or 2")]
    Version(u32),
    /// A subject whose scope holds no hamlet of the campaign: nobody would evaluate them.
    #[error("subject {0} is evaluated in no hamlet of the campaign")]
    EvaluatedNowhere(SubjectId),
    /// A hamlet a subject's scope names is not among the campaign's hamlets (no voters known).
    #[error("hamlet {hamlet} in the scope of subject {subject} is not among the campaign's hamlets")]
    ScopeOutsideCampaign {
        /// The subject.
        subject: SubjectId,
        /// The hamlet.
        hamlet: UnitId,
    },
    /// A hamlet's ballot is not what the subjects' scopes give.
    #[error("the ballot of hamlet {0} does not follow the subjects' scopes")]
    Ballot(UnitId),
    /// A daily limit of responses per collector of zero.
    #[error("the most responses a collector may record in a day must be at least 1")]
    DailyLimit,
    /// A state change that the life cycle does not allow.
    #[error("a campaign cannot go from {from:?} to {to:?}")]
    Transition {
        /// Current state.
        from: CampaignState,
        /// State asked for.
        to: CampaignState,
    },
    /// Sealed answers need schema version 2.
    #[error("sealed answers need schema version 2")]
    SealingVersion,
    /// A sealing suite this library does not know.
    #[error("unknown sealing suite {0:?}")]
    SealingSuite(String),
    /// The form is frozen once the campaign opens.
    #[error("the form cannot change: the campaign is {0:?}")]
    FormFrozen(CampaignState),
    /// A new form must carry a higher version.
    #[error("new form version {new} must be greater than {old}")]
    FormVersion {
        /// Current version.
        old: u32,
        /// Version given.
        new: u32,
    },
}

impl Campaign {
    /// The ids of the subjects, in order.
    pub fn subject_ids(&self) -> Vec<SubjectId> {
        self.subjects.iter().map(|s| s.id.clone()).collect()
    }

    /// The public key its answers are sealed for, when they are.
    pub fn seal_key(&self) -> Option<&crate::sealed::PublicKey> {
        self.sealing.as_ref().map(|s| &s.public_key)
    }

    /// Whether the campaign follows schema version 2: each hamlet rates its own ballot.
    pub fn is_scoped(&self) -> bool {
        self.schema_version >= 2
    }

    /// Whether `hamlet` is in the campaign: listed, and (version 2) with a subject to evaluate.
    pub fn has_hamlet(&self, hamlet: &UnitId) -> bool {
        self.hamlet(hamlet).is_some()
    }

    /// The hamlet, if it is in the campaign.
    pub fn hamlet(&self, hamlet: &UnitId) -> Option<&HamletScope> {
        self.in_campaign().find(|h| &h.hamlet == hamlet)
    }

    /// The hamlets in the campaign: every listed one (version 1), those with a ballot (version 2).
    pub fn in_campaign(&self) -> impl Iterator<Item = &HamletScope> + '_ {
        self.hamlets.iter().filter(|h| !self.is_scoped() || !h.ballot.is_empty())
    }

    /// The subjects `hamlet`'s residents evaluate, in the campaign's order: empty for a hamlet
    /// not in the campaign.
    pub fn ballot(&self, hamlet: &UnitId) -> Vec<SubjectId> {
        match self.hamlet(hamlet) {
            None => Vec::new(),
            Some(_) if !self.is_scoped() => self.subject_ids(),
            Some(h) => h.ballot.clone(),
        }
    }

    /// Whether `hamlet`'s residents evaluate `subject`.
    pub fn evaluates(&self, hamlet: &UnitId, subject: &SubjectId) -> bool {
        self.hamlet(hamlet).is_some_and(|h| !self.is_scoped() || h.ballot.contains(subject))
    }

    /// The hamlets whose residents evaluate `subject`: its scope, as the ballots say.
    pub fn scope_of<'a>(&'a self, subject: &SubjectId) -> impl Iterator<Item = &'a HamletScope> + use<'a> {
        let subject = subject.clone();
        self.in_campaign().filter(move |h| !self.is_scoped() || h.ballot.contains(&subject))
    }

    /// The ballots the subjects' scopes give, hamlet by hamlet of `hamlets` (in the
    /// campaign's order of subjects): a subject's home hamlet, the hamlets its scope lists, or
    /// every hamlet of the campaign in its commune.
    pub fn ballots_from_scopes(&self, units: &UnitTree) -> Vec<Vec<SubjectId>> {
        self.hamlets
            .iter()
            .map(|h| {
                let commune = units.ancestor_at(&h.hamlet, UnitLevel::Commune).map(|u| &u.id);
                self.subjects
                    .iter()
                    .filter(|s| {
                        s.home_hamlet == h.hamlet
                            || match &s.scope {
                                EvaluationScope::Home => false,
                                EvaluationScope::Commune => commune == Some(&s.commune),
                                EvaluationScope::Hamlets(list) => list.contains(&h.hamlet),
                            }
                    })
                    .map(|s| s.id.clone())
                    .collect()
            })
            .collect()
    }

    /// Writes each hamlet's ballot from the subjects' scopes (schema version 2; version 1
    /// keeps no ballot). The server does it on every change of a draft and when it opens; from
    /// then on the ballots are frozen with the rest of the campaign.
    pub fn resolve_ballots(&mut self, units: &UnitTree) {
        let ballots =
            if self.is_scoped() { self.ballots_from_scopes(units) } else { vec![Vec::new(); self.hamlets.len()] };
        for (h, ballot) in self.hamlets.iter_mut().zip(ballots) {
            h.ballot = ballot;
        }
    }

    /// Checks the campaign; with a unit tree, also that every unit it names exists at the right
    /// level.
    pub fn validate(&self, units: Option<&UnitTree>) -> Result<(), CampaignError> {
        if self.name.vi.trim().is_empty() {
            return Err(CampaignError::NoName);
        }
        self.form.validate()?;
        if !(1..=CAMPAIGN_VERSION).contains(&self.schema_version) {
            return Err(CampaignError::Version(self.schema_version));
        }
        if let Some(sealing) = &self.sealing {
            if !self.is_scoped() {
                return Err(CampaignError::SealingVersion);
            }
            if sealing.suite != crate::sealed::SUITE {
                return Err(CampaignError::SealingSuite(sealing.suite.clone()));
            }
        }
        if self.subjects.is_empty() {
            return Err(CampaignError::NoSubject);
        }
        if self.in_campaign().next().is_none() {
            return Err(CampaignError::NoHamlet);
        }
        let mut seen = BTreeSet::new();
        for s in &self.subjects {
            if !seen.insert(&s.id) {
                return Err(CampaignError::DuplicateSubject(s.id.clone()));
            }
            if s.name.trim().is_empty() || s.position.trim().is_empty() {
                return Err(CampaignError::IncompleteSubject(s.id.clone()));
            }
        }
        let mut seen = BTreeSet::new();
        for h in &self.hamlets {
            if !seen.insert(&h.hamlet) {
                return Err(CampaignError::DuplicateHamlet(h.hamlet.clone()));
            }
            if h.expected_voters == 0 {
                return Err(CampaignError::NoVoters(h.hamlet.clone()));
            }
        }
        if self.is_scoped() {
            for s in &self.subjects {
                let listed = match &s.scope {
                    EvaluationScope::Hamlets(list) => list.as_slice(),
                    EvaluationScope::Home | EvaluationScope::Commune => &[],
                };
                for hamlet in std::iter::once(&s.home_hamlet).chain(listed) {
                    if !seen.contains(hamlet) {
                        return Err(CampaignError::ScopeOutsideCampaign {
                            subject: s.id.clone(),
                            hamlet: hamlet.clone(),
                        });
                    }
                }
                if self.scope_of(&s.id).next().is_none() {
                    return Err(CampaignError::EvaluatedNowhere(s.id.clone()));
                }
            }
        }
        if self.schedule.closes_on < self.schedule.opens_on {
            return Err(CampaignError::Schedule {
                opens_on: self.schedule.opens_on,
                closes_on: self.schedule.closes_on,
            });
        }
        for (index, t) in self.thresholds.iter().enumerate() {
            if t.numerator == 0 || t.denominator == 0 || t.numerator > t.denominator {
                return Err(CampaignError::Threshold { index, numerator: t.numerator, denominator: t.denominator });
            }
        }
        if self.max_responses_per_day == 0 {
            return Err(CampaignError::DailyLimit);
        }
        if let Some(tree) = units {
            let expect = |role: String, unit: &UnitId, level: UnitLevel| match tree.get(unit) {
                Some(u) if u.level == level => Ok(()),
                _ => Err(CampaignError::WrongUnit { role, unit: unit.clone(), expected: level }),
            };
            let scope: BTreeSet<&UnitId> = self.hamlets.iter().map(|h| &h.hamlet).collect();
            let units = tree.units().count();
            for h in &self.hamlets {
                expect("hamlet in scope".into(), &h.hamlet, UnitLevel::Hamlet)?;
                let Some(unit) = tree.get(&h.hamlet) else { continue };
                // Validity is one period: valid on the first and last days, valid throughout.
                if !unit.is_valid_on(self.schedule.opens_on) || !unit.is_valid_on(self.schedule.closes_on) {
                    return Err(CampaignError::HamletNotValid {
                        hamlet: h.hamlet.clone(),
                        opens_on: self.schedule.opens_on,
                        closes_on: self.schedule.closes_on,
                    });
                }
                // The same residents counted twice: a hamlet and one it was merged into.
                let mut at = unit;
                for _ in 0..units {
                    let Some(next) = at.merged_into.as_ref().and_then(|i| tree.get(i)) else { break };
                    if scope.contains(&next.id) {
                        return Err(CampaignError::MergedInScope { hamlet: h.hamlet.clone(), into: next.id.clone() });
                    }
                    at = next;
                }
            }
            for s in &self.subjects {
                expect(format!("commune of subject {}", s.id), &s.commune, UnitLevel::Commune)?;
                expect(format!("home hamlet of subject {}", s.id), &s.home_hamlet, UnitLevel::Hamlet)?;
            }
            if self.is_scoped() {
                for (h, ballot) in self.hamlets.iter().zip(self.ballots_from_scopes(tree)) {
                    if h.ballot != ballot {
                        return Err(CampaignError::Ballot(h.hamlet.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves the campaign to `to`, if the life cycle allows it. Opening checks the campaign.
    pub fn transition(&mut self, to: CampaignState, units: Option<&UnitTree>) -> Result<(), CampaignError> {
        if self.state.next() != Some(to) {
            return Err(CampaignError::Transition { from: self.state, to });
        }
        if to == CampaignState::Open {
            self.validate(units)?;
        }
        self.state = to;
        Ok(())
    }

    /// Replaces the form, while the campaign is a draft, by one with a higher version.
    pub fn replace_form(&mut self, form: Form) -> Result<(), CampaignError> {
        if self.state != CampaignState::Draft {
            return Err(CampaignError::FormFrozen(self.state));
        }
        if form.version <= self.form.version {
            return Err(CampaignError::FormVersion { old: self.form.version, new: form.version });
        }
        form.validate()?;
        self.form = form;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{campaign, unit_tree};

    fn id(s: &str) -> UnitId {
        UnitId::new(s).expect("valid")
    }

    #[test]
    fn default_thresholds_follow_the_rules_in_force() {
        let [half, two_thirds] = Threshold::defaults().try_into().expect("two defaults");
        assert!(!half.crossed(5, 10), "exactly 1/2 is not more than 1/2");
        assert!(half.crossed(6, 10));
        assert!(two_thirds.crossed(2, 3), "exactly 2/3 is at least 2/3");
        assert!(!two_thirds.crossed(66, 100));
        assert!(two_thirds.crossed(67, 100));
        assert!(!half.crossed(0, 0), "no answers cross nothing");
    }

    #[test]
    fn life_cycle_goes_forward_only() {
        let tree = unit_tree();
        let mut c = campaign();
        assert_eq!(
            c.transition(CampaignState::Closed, Some(&tree)),
            Err(CampaignError::Transition { from: CampaignState::Draft, to: CampaignState::Closed })
        );
        c.transition(CampaignState::Open, Some(&tree)).expect("open");
        let mut form = c.form.clone();
        form.version += 1;
        assert_eq!(c.replace_form(form), Err(CampaignError::FormFrozen(CampaignState::Open)));
        c.transition(CampaignState::Closed, Some(&tree)).expect("close");
        c.transition(CampaignState::Published, Some(&tree)).expect("publish");
        assert_eq!(
            c.transition(CampaignState::Open, Some(&tree)),
            Err(CampaignError::Transition { from: CampaignState::Published, to: CampaignState::Open })
        );
    }

    #[test]
    fn a_draft_form_is_replaced_only_by_a_newer_version() {
        let mut c = campaign();
        let same = c.form.clone();
        assert_eq!(c.replace_form(same), Err(CampaignError::FormVersion { old: 1, new: 1 }));
        let mut newer = c.form.clone();
        newer.version = 2;
        c.replace_form(newer).expect("newer version");
        assert_eq!(c.form.version, 2);
    }

    fn check(edit: impl FnOnce(&mut Campaign), expected: CampaignError) {
        let mut c = campaign();
        edit(&mut c);
        assert_eq!(c.validate(Some(&unit_tree())), Err(expected));
    }

    #[test]
    fn every_validation_error_says_where() {
        assert_eq!(campaign().validate(Some(&unit_tree())), Ok(()));
        check(|c| c.name.vi.clear(), CampaignError::NoName);
        check(|c| c.form.questions.clear(), CampaignError::Form(FormError::NoQuestion));
        check(|c| c.subjects.clear(), CampaignError::NoSubject);
        check(|c| c.hamlets.clear(), CampaignError::NoHamlet);
        check(
            |c| {
                let s = c.subjects[0].clone();
                c.subjects.push(s)
            },
            CampaignError::DuplicateSubject(SubjectId::new("ong-an").expect("valid")),
        );
        check(
            |c| c.subjects[0].position.clear(),
            CampaignError::IncompleteSubject(SubjectId::new("ong-an").expect("valid")),
        );
        check(
            |c| {
                let h = c.hamlets[0].clone();
                c.hamlets.push(h)
            },
            CampaignError::DuplicateHamlet(id("thon-dong")),
        );
        check(|c| c.hamlets[0].expected_voters = 0, CampaignError::NoVoters(id("thon-dong")));
        check(
            |c| c.schedule.closes_on = c.schedule.opens_on.plus_days(-1),
            CampaignError::Schedule {
                opens_on: campaign().schedule.opens_on,
                closes_on: campaign().schedule.opens_on.plus_days(-1),
            },
        );
        check(|c| c.thresholds[1].numerator = 4, CampaignError::Threshold { index: 1, numerator: 4, denominator: 3 });
        check(
            |c| c.hamlets[0].hamlet = id("xa-a"),
            CampaignError::WrongUnit { role: "hamlet in scope".into(), unit: id("xa-a"), expected: UnitLevel::Hamlet },
        );
        check(
            |c| c.subjects[0].home_hamlet = id("nowhere"),
            CampaignError::WrongUnit {
                role: "home hamlet of subject ong-an".into(),
                unit: id("nowhere"),
                expected: UnitLevel::Hamlet,
            },
        );
    }
}
