//! Forms: the questions a response answers, and the checks an answer must pass.
//!
//! A form is versioned and frozen once its campaign opens. Ratings and comments are asked *per
//! subject* (per cadre); yes/no and number questions once per response.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{IdError, QuestionId, SubjectId};

/// A text in Vietnamese first, English second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Label {
    /// Vietnamese, required.
    pub vi: String,
    /// English; when empty the Vietnamese text is shown.
    #[serde(default)]
    pub en: String,
}

impl Label {
    /// A label in both languages.
    pub fn new(vi: impl Into<String>, en: impl Into<String>) -> Self {
        Label { vi: vi.into(), en: en.into() }
    }

    /// The text in `lang` ("vi" or "en"), falling back to Vietnamese.
    pub fn get(&self, lang: &str) -> &str {
        if lang == "en" && !self.en.is_empty() { &self.en } else { &self.vi }
    }
}

/// The scale of a rating question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LevelSet {
    /// Tín nhiệm cao / tín nhiệm / tín nhiệm thấp.
    Confidence,
    /// Hoàn thành xuất sắc / tốt / hoàn thành / không hoàn thành nhiệm vụ.
    Evaluation,
}

impl LevelSet {
    /// The levels, best first.
    pub fn levels(self) -> &'static [Level] {
        match self {
            LevelSet::Confidence => &[Level::TinNhiemCao, Level::TinNhiem, Level::TinNhiemThap],
            LevelSet::Evaluation => {
                &[Level::HoanThanhXuatSac, Level::HoanThanhTot, Level::HoanThanh, Level::KhongHoanThanh]
            }
        }
    }

    /// The level that thresholds count: the lowest.
    pub fn low(self) -> Level {
        match self {
            LevelSet::Confidence => Level::TinNhiemThap,
            LevelSet::Evaluation => Level::KhongHoanThanh,
        }
    }
}

/// One level of a rating scale. Stored in documents by its [`code`](Level::code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Level {
    /// Tín nhiệm cao.
    TinNhiemCao,
    /// Tín nhiệm.
    TinNhiem,
    /// Tín nhiệm thấp.
    TinNhiemThap,
    /// Hoàn thành xuất sắc nhiệm vụ.
    HoanThanhXuatSac,
    /// Hoàn thành tốt nhiệm vụ.
    HoanThanhTot,
    /// Hoàn thành nhiệm vụ.
    HoanThanh,
    /// Không hoàn thành nhiệm vụ.
    KhongHoanThanh,
}

const ALL_LEVELS: [Level; 7] = [
    Level::TinNhiemCao,
    Level::TinNhiem,
    Level::TinNhiemThap,
    Level::HoanThanhXuatSac,
    Level::HoanThanhTot,
    Level::HoanThanh,
    Level::KhongHoanThanh,
];

impl Level {
    /// The code written into documents and exports.
    pub fn code(self) -> &'static str {
        match self {
            Level::TinNhiemCao => "tin_nhiem_cao",
            Level::TinNhiem => "tin_nhiem",
            Level::TinNhiemThap => "tin_nhiem_thap",
            Level::HoanThanhXuatSac => "hoan_thanh_xuat_sac",
            Level::HoanThanhTot => "hoan_thanh_tot",
            Level::HoanThanh => "hoan_thanh",
            Level::KhongHoanThanh => "khong_hoan_thanh",
        }
    }

    /// The level with this code.
    pub fn from_code(code: &str) -> Option<Level> {
        ALL_LEVELS.into_iter().find(|l| l.code() == code)
    }

    /// The scale this level belongs to.
    pub fn set(self) -> LevelSet {
        match self {
            Level::TinNhiemCao | Level::TinNhiem | Level::TinNhiemThap => LevelSet::Confidence,
            _ => LevelSet::Evaluation,
        }
    }

    /// Its label in both languages.
    pub fn label(self) -> Label {
        let (vi, en) = match self {
            Level::TinNhiemCao => ("Tín nhiệm cao", "High confidence"),
            Level::TinNhiem => ("Tín nhiệm", "Confidence"),
            Level::TinNhiemThap => ("Tín nhiệm thấp", "Low confidence"),
            Level::HoanThanhXuatSac => ("Hoàn thành xuất sắc nhiệm vụ", "Completed duties with distinction"),
            Level::HoanThanhTot => ("Hoàn thành tốt nhiệm vụ", "Completed duties well"),
            Level::HoanThanh => ("Hoàn thành nhiệm vụ", "Completed duties"),
            Level::KhongHoanThanh => ("Không hoàn thành nhiệm vụ", "Did not complete duties"),
        };
        Label::new(vi, en)
    }
}

/// What a question asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum QuestionKind {
    /// A level of `levels`, for each subject.
    Rating {
        /// The scale.
        levels: LevelSet,
    },
    /// Yes or no, once per response.
    YesNo,
    /// A whole number in `min..=max`, once per response.
    Number {
        /// Smallest value accepted.
        min: i64,
        /// Largest value accepted.
        max: i64,
    },
    /// Free text for each subject.
    Comment {
        /// Longest text accepted, in characters.
        max_chars: u32,
    },
}

impl QuestionKind {
    /// Whether the question is asked once for each subject.
    pub fn per_subject(&self) -> bool {
        matches!(self, QuestionKind::Rating { .. } | QuestionKind::Comment { .. })
    }

    fn name(&self) -> &'static str {
        match self {
            QuestionKind::Rating { .. } => "rating",
            QuestionKind::YesNo => "yes/no",
            QuestionKind::Number { .. } => "number",
            QuestionKind::Comment { .. } => "comment",
        }
    }
}

/// One question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Question {
    /// Identifier, unique within the form.
    pub id: QuestionId,
    /// The question as asked.
    pub label: Label,
    /// What it asks for.
    #[serde(flatten)]
    pub kind: QuestionKind,
    /// Whether a response can be submitted without it (for every subject, when per subject).
    #[serde(default)]
    pub required: bool,
}

/// A versioned form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Form {
    /// Version, from 1; a new version is made for any change.
    pub version: u32,
    /// The questions, in the order they are asked.
    pub questions: Vec<Question>,
}

/// The longest comment any form may allow.
pub const MAX_COMMENT_CHARS: u32 = 10_000;

/// What is wrong with a form, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Versions start at 1.
    #[error("form version must be at least 1")]
    ZeroVersion,
    /// A form needs at least one question.
    #[error("form has no question")]
    NoQuestion,
    /// Two questions share an id.
    #[error("question {0} appears twice")]
    DuplicateQuestion(QuestionId),
    /// A question has no Vietnamese label.
    #[error("question {0} has no Vietnamese label")]
    NoLabel(QuestionId),
    /// A number question whose range is empty.
    #[error("question {question}: min {min} is greater than max {max}")]
    EmptyRange {
        /// The question.
        question: QuestionId,
        /// Its minimum.
        min: i64,
        /// Its maximum.
        max: i64,
    },
    /// A comment question whose length limit is 0 or too large.
    #[error("question {question}: max_chars {max_chars} must be between 1 and {MAX_COMMENT_CHARS}")]
    CommentLimit {
        /// The question.
        question: QuestionId,
        /// The limit given.
        max_chars: u32,
    },
}

impl Form {
    /// Checks the form on its own.
    pub fn validate(&self) -> Result<(), FormError> {
        if self.version == 0 {
            return Err(FormError::ZeroVersion);
        }
        if self.questions.is_empty() {
            return Err(FormError::NoQuestion);
        }
        let mut seen = BTreeSet::new();
        for q in &self.questions {
            if !seen.insert(&q.id) {
                return Err(FormError::DuplicateQuestion(q.id.clone()));
            }
            if q.label.vi.trim().is_empty() {
                return Err(FormError::NoLabel(q.id.clone()));
            }
            match q.kind {
                QuestionKind::Number { min, max } if min > max => {
                    return Err(FormError::EmptyRange { question: q.id.clone(), min, max });
                }
                QuestionKind::Comment { max_chars } if max_chars == 0 || max_chars > MAX_COMMENT_CHARS => {
                    return Err(FormError::CommentLimit { question: q.id.clone(), max_chars });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The question with this id.
    pub fn question(&self, id: &QuestionId) -> Option<&Question> {
        self.questions.iter().find(|q| &q.id == id)
    }

    /// Checks one answer against the form and the campaign's subjects.
    pub fn check_answer(
        &self,
        subjects: &[SubjectId],
        key: &AnswerKey,
        value: &AnswerValue,
    ) -> Result<(), AnswerError> {
        let question = self.check_key(subjects, key)?;
        let wrong = || AnswerError::WrongKind {
            question: key.question.clone(),
            expected: question.kind.name(),
            got: value.kind_name(),
        };
        match (&question.kind, value) {
            (QuestionKind::Rating { levels }, AnswerValue::Level(level)) => {
                if level.set() != *levels {
                    return Err(AnswerError::LevelNotInScale {
                        question: key.question.clone(),
                        level: *level,
                        scale: *levels,
                    });
                }
            }
            (QuestionKind::YesNo, AnswerValue::YesNo(_)) => {}
            (QuestionKind::Number { min, max }, AnswerValue::Number(n)) => {
                if n < min || n > max {
                    return Err(AnswerError::OutOfRange {
                        question: key.question.clone(),
                        value: *n,
                        min: *min,
                        max: *max,
                    });
                }
            }
            (QuestionKind::Comment { max_chars }, AnswerValue::Comment(text)) => {
                let len = text.chars().count();
                if len > *max_chars as usize {
                    return Err(AnswerError::TooLong { question: key.question.clone(), len, max: *max_chars });
                }
            }
            _ => return Err(wrong()),
        }
        Ok(())
    }

    /// Checks that a key names a question of this form, with a subject exactly when the question
    /// is asked per subject.
    pub fn check_key(&self, subjects: &[SubjectId], key: &AnswerKey) -> Result<&Question, AnswerError> {
        let question =
            self.question(&key.question).ok_or_else(|| AnswerError::UnknownQuestion(key.question.clone()))?;
        match (&key.subject, question.kind.per_subject()) {
            (None, true) => return Err(AnswerError::SubjectRequired(key.question.clone())),
            (Some(s), false) => {
                return Err(AnswerError::SubjectNotExpected { question: key.question.clone(), subject: s.clone() });
            }
            (Some(s), true) if !subjects.contains(s) => {
                return Err(AnswerError::UnknownSubject { question: key.question.clone(), subject: s.clone() });
            }
            _ => {}
        }
        Ok(question)
    }

    /// The keys a response must answer before it can be submitted.
    pub fn required_keys(&self, subjects: &[SubjectId]) -> Vec<AnswerKey> {
        let mut keys = Vec::new();
        for q in self.questions.iter().filter(|q| q.required) {
            if q.kind.per_subject() {
                keys.extend(subjects.iter().map(|s| AnswerKey::for_subject(q.id.clone(), s.clone())));
            } else {
                keys.push(AnswerKey::once(q.id.clone()));
            }
        }
        keys
    }
}

/// Where an answer goes: a question, and the subject for per-subject questions. Written in
/// documents as `question` or `question/subject`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AnswerKey {
    /// The question.
    pub question: QuestionId,
    /// The subject, for ratings and comments.
    pub subject: Option<SubjectId>,
}

impl AnswerKey {
    /// The key of a question asked once per response.
    pub fn once(question: QuestionId) -> Self {
        AnswerKey { question, subject: None }
    }

    /// The key of a question about one subject.
    pub fn for_subject(question: QuestionId, subject: SubjectId) -> Self {
        AnswerKey { question, subject: Some(subject) }
    }
}

impl fmt::Display for AnswerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{}/{}", self.question, s),
            None => write!(f, "{}", self.question),
        }
    }
}

impl FromStr for AnswerKey {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s.split_once('/') {
            Some((q, subject)) => Ok(AnswerKey::for_subject(q.parse()?, subject.parse()?)),
            None => Ok(AnswerKey::once(s.parse()?)),
        }
    }
}

impl TryFrom<String> for AnswerKey {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<AnswerKey> for String {
    fn from(k: AnswerKey) -> String {
        k.to_string()
    }
}

/// An answer's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum AnswerValue {
    /// For a rating: stored as the level's code (a string).
    Level(Level),
    /// For yes/no: stored as a boolean.
    YesNo(bool),
    /// For a number: stored as a signed integer.
    Number(i64),
    /// For a comment: stored as a string.
    Comment(String),
}

impl AnswerValue {
    fn kind_name(&self) -> &'static str {
        match self {
            AnswerValue::Level(_) => "rating",
            AnswerValue::YesNo(_) => "yes/no",
            AnswerValue::Number(_) => "number",
            AnswerValue::Comment(_) => "comment",
        }
    }
}

/// What is wrong with an answer: which question, which value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The question is not on the form.
    #[error("question {0} is not on the form")]
    UnknownQuestion(QuestionId),
    /// A per-subject question answered without a subject.
    #[error("question {0} is asked per subject: give the subject")]
    SubjectRequired(QuestionId),
    /// A once-per-response question answered for a subject.
    #[error("question {question} is asked once per response, not for subject {subject}")]
    SubjectNotExpected {
        /// The question.
        question: QuestionId,
        /// The subject given.
        subject: SubjectId,
    },
    /// The subject is not on the ballot: not in the campaign, or (schema version 2) not
    /// evaluated in this hamlet.
    #[error("question {question}: subject {subject} is not on this hamlet's ballot")]
    UnknownSubject {
        /// The question.
        question: QuestionId,
        /// The subject given.
        subject: SubjectId,
    },
    /// The value is of another kind than the question asks for.
    #[error("question {question} expects a {expected} answer, got a {got} answer")]
    WrongKind {
        /// The question.
        question: QuestionId,
        /// The kind it asks for.
        expected: &'static str,
        /// The kind given.
        got: &'static str,
    },
    /// A level from the other scale.
    #[error("question {question}: level {} is not on the {scale:?} scale", level.code())]
    LevelNotInScale {
        /// The question.
        question: QuestionId,
        /// The level given.
        level: Level,
        /// The question's scale.
        scale: LevelSet,
    },
    /// A number outside the question's range.
    #[error("question {question}: {value} is outside {min}..={max}")]
    OutOfRange {
        /// The question.
        question: QuestionId,
        /// The value given.
        value: i64,
        /// Smallest accepted.
        min: i64,
        /// Largest accepted.
        max: i64,
    },
    /// A comment over the length limit.
    #[error("question {question}: comment of {len} characters is longer than {max}")]
    TooLong {
        /// The question.
        question: QuestionId,
        /// Characters given.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// A required answer is missing at submission.
    #[error("answer {0} is required before the response can be submitted")]
    Missing(AnswerKey),
    /// A value in a document that Hamlet cannot read as an answer to its question.
    #[error("answer {key}: stored value {found} does not fit the question")]
    Unreadable {
        /// Where it was found.
        key: String,
        /// A description of the stored value.
        found: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str) -> QuestionId {
        QuestionId::new(id).expect("valid")
    }
    fn s(id: &str) -> SubjectId {
        SubjectId::new(id).expect("valid")
    }

    fn form() -> Form {
        Form {
            version: 1,
            questions: vec![
                Question {
                    id: q("tin-nhiem"),
                    label: Label::new("Mức độ tín nhiệm", "Confidence"),
                    kind: QuestionKind::Rating { levels: LevelSet::Confidence },
                    required: true,
                },
                Question {
                    id: q("da-hop"),
                    label: Label::new("Đã dự họp", "Attended"),
                    kind: QuestionKind::YesNo,
                    required: false,
                },
                Question {
                    id: q("tuoi"),
                    label: Label::new("Tuổi", "Age"),
                    kind: QuestionKind::Number { min: 18, max: 120 },
                    required: false,
                },
                Question {
                    id: q("y-kien"),
                    label: Label::new("Ý kiến", "Comment"),
                    kind: QuestionKind::Comment { max_chars: 10 },
                    required: false,
                },
            ],
        }
    }

    #[test]
    fn level_codes_round_trip_and_belong_to_one_scale() {
        for set in [LevelSet::Confidence, LevelSet::Evaluation] {
            for level in set.levels() {
                assert_eq!(Level::from_code(level.code()), Some(*level));
                assert_eq!(level.set(), set);
                assert!(!level.label().vi.is_empty() && !level.label().en.is_empty());
            }
            assert!(set.levels().contains(&set.low()));
        }
        assert_eq!(Level::TinNhiemThap.label().get("vi"), "Tín nhiệm thấp");
        assert_eq!(Level::from_code("cao"), None);
    }

    fn check(key: &str, value: AnswerValue, expected: Result<(), AnswerError>) {
        let key: AnswerKey = key.parse().expect("valid key");
        assert_eq!(form().check_answer(&[s("ong-a")], &key, &value), expected, "{key} = {value:?}");
    }

    #[test]
    fn every_answer_error_names_the_question_and_value() {
        check("tin-nhiem/ong-a", AnswerValue::Level(Level::TinNhiem), Ok(()));
        check("da-hop", AnswerValue::YesNo(true), Ok(()));
        check("tuoi", AnswerValue::Number(18), Ok(()));
        check("y-kien/ong-a", AnswerValue::Comment("Tốt lắm".into()), Ok(()));
        check("nope", AnswerValue::YesNo(true), Err(AnswerError::UnknownQuestion(q("nope"))));
        check("tin-nhiem", AnswerValue::Level(Level::TinNhiem), Err(AnswerError::SubjectRequired(q("tin-nhiem"))));
        check(
            "da-hop/ong-a",
            AnswerValue::YesNo(true),
            Err(AnswerError::SubjectNotExpected { question: q("da-hop"), subject: s("ong-a") }),
        );
        check(
            "tin-nhiem/ba-b",
            AnswerValue::Level(Level::TinNhiem),
            Err(AnswerError::UnknownSubject { question: q("tin-nhiem"), subject: s("ba-b") }),
        );
        check(
            "tin-nhiem/ong-a",
            AnswerValue::YesNo(false),
            Err(AnswerError::WrongKind { question: q("tin-nhiem"), expected: "rating", got: "yes/no" }),
        );
        check(
            "tin-nhiem/ong-a",
            AnswerValue::Level(Level::HoanThanh),
            Err(AnswerError::LevelNotInScale {
                question: q("tin-nhiem"),
                level: Level::HoanThanh,
                scale: LevelSet::Confidence,
            }),
        );
        check(
            "tuoi",
            AnswerValue::Number(17),
            Err(AnswerError::OutOfRange { question: q("tuoi"), value: 17, min: 18, max: 120 }),
        );
        check(
            "y-kien/ong-a",
            AnswerValue::Comment("Mười một chữ".into()),
            Err(AnswerError::TooLong { question: q("y-kien"), len: 12, max: 10 }),
        );
        let err = form()
            .check_answer(&[s("ong-a")], &"tuoi".parse().expect("key"), &AnswerValue::Number(200))
            .expect_err("out of range");
        assert_eq!(err.to_string(), "question tuoi: 200 is outside 18..=120");
    }

    #[test]
    fn required_keys_expand_per_subject() {
        let keys = form().required_keys(&[s("a"), s("b")]);
        let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(keys, ["tin-nhiem/a", "tin-nhiem/b"]);
    }

    #[test]
    fn form_validation_errors() {
        let mut f = form();
        f.version = 0;
        assert_eq!(f.validate(), Err(FormError::ZeroVersion));
        let mut f = form();
        f.questions.clear();
        assert_eq!(f.validate(), Err(FormError::NoQuestion));
        let mut f = form();
        let first = f.questions[0].clone();
        f.questions.push(first);
        assert_eq!(f.validate(), Err(FormError::DuplicateQuestion(q("tin-nhiem"))));
        let mut f = form();
        f.questions[1].label.vi = String::new();
        assert_eq!(f.validate(), Err(FormError::NoLabel(q("da-hop"))));
        let mut f = form();
        f.questions[2].kind = QuestionKind::Number { min: 5, max: 1 };
        assert_eq!(f.validate(), Err(FormError::EmptyRange { question: q("tuoi"), min: 5, max: 1 }));
        let mut f = form();
        f.questions[3].kind = QuestionKind::Comment { max_chars: 0 };
        assert_eq!(f.validate(), Err(FormError::CommentLimit { question: q("y-kien"), max_chars: 0 }));
        assert_eq!(form().validate(), Ok(()));
    }

    #[test]
    fn answer_keys_parse_and_print() {
        let k: AnswerKey = "tin-nhiem/ong-a".parse().expect("valid");
        assert_eq!(k, AnswerKey::for_subject(q("tin-nhiem"), s("ong-a")));
        assert_eq!(k.to_string(), "tin-nhiem/ong-a");
        assert!("a/b/c".parse::<AnswerKey>().is_err());
        assert!("".parse::<AnswerKey>().is_err());
    }

    #[test]
    fn forms_serialise_with_a_kind_tag() {
        let json = serde_json::to_value(form()).expect("serialise");
        assert_eq!(json["questions"][0]["kind"], "rating");
        assert_eq!(json["questions"][0]["levels"], "confidence");
        let back: Form = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, form());
    }
}
