//! Answers as collectors give them — text typed on a phone or a command line — read against the
//! campaign's form, with errors that name the question.

use std::collections::BTreeMap;

use hamlet_sync_core::ledger::Scalar;
use hamlet_sync_core::{AnswerKey, AnswerValue, Campaign, Level, QuestionKind, SubjectId, UnitId};

use crate::views::{AnswerSlot, ChoiceView};

/// An answer that does not fit the form; the message names the question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AnswerInputError {
    /// The answer key given.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Reads `text` as the answer to `key`, in `hamlet`: a question about a subject is taken only
/// for a subject of the hamlet's ballot. Ratings take a level code, its position (1 = best) or
/// its label; yes/no questions `có/không`, `yes/no`, `y/n`, `true/false`, `1/0`; numbers an
/// integer; comments any text.
pub fn parse(
    campaign: &Campaign,
    hamlet: &UnitId,
    key: &str,
    text: &str,
) -> Result<(AnswerKey, AnswerValue), AnswerInputError> {
    let error = |message: String| AnswerInputError { key: key.to_owned(), message };
    let parsed: AnswerKey = key.parse().map_err(|e: hamlet_sync_core::ids::IdError| error(e.to_string()))?;
    let subjects = ballot(campaign, hamlet, &parsed).map_err(error)?;
    let question = campaign.form.check_key(&subjects, &parsed).map_err(|e| error(e.to_string()))?;
    let text = text.trim();
    let value = match &question.kind {
        QuestionKind::Rating { levels } => {
            let wanted = text.to_lowercase();
            let by_position =
                text.parse::<usize>().ok().and_then(|i| i.checked_sub(1)).and_then(|i| levels.levels().get(i));
            let found = by_position.copied().or_else(|| {
                levels.levels().iter().copied().find(|l| {
                    let label = l.label();
                    l.code() == wanted || label.vi.to_lowercase() == wanted || label.en.to_lowercase() == wanted
                })
            });
            match found {
                Some(level) => AnswerValue::Level(level),
                None => {
                    let codes: Vec<&str> = levels.levels().iter().map(|l| l.code()).collect();
                    return Err(error(format!(
                        "{text:?} is not a level; give one of {} or 1-{}",
                        codes.join(", "),
                        codes.len()
                    )));
                }
            }
        }
        QuestionKind::YesNo => match text.to_lowercase().as_str() {
            "có" | "co" | "c" | "yes" | "y" | "true" | "1" => AnswerValue::YesNo(true),
            "không" | "khong" | "k" | "no" | "n" | "false" | "0" => AnswerValue::YesNo(false),
            _ => return Err(error(format!("{text:?} is not yes or no (có/không)"))),
        },
        QuestionKind::Number { .. } => {
            AnswerValue::Number(text.parse().map_err(|_| error(format!("{text:?} is not a whole number")))?)
        }
        QuestionKind::Comment { .. } => AnswerValue::Comment(text.to_owned()),
    };
    campaign.form.check_answer(&subjects, &parsed, &value).map_err(|e| error(e.to_string()))?;
    Ok((parsed, value))
}

/// The subjects `hamlet` evaluates; for a key about a subject of the campaign who is not on the
/// hamlet's ballot, the message that says so.
pub fn ballot(campaign: &Campaign, hamlet: &UnitId, key: &AnswerKey) -> Result<Vec<SubjectId>, String> {
    let subjects = campaign.ballot(hamlet);
    match &key.subject {
        Some(s) if !subjects.contains(s) && campaign.subjects.iter().any(|x| &x.id == s) => Err(format!(
            "{s} is not evaluated in hamlet {hamlet}: its ballot holds {}",
            if subjects.is_empty() {
                "no subject".to_owned()
            } else {
                subjects.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
        )),
        _ => Ok(subjects),
    }
}

/// Answers as the JSON the local store keeps for a sealed campaign's drafts: the object a
/// sealed object holds ([`hamlet_sync_core::sealed::answers_json`]).
pub fn to_json(answers: &BTreeMap<AnswerKey, AnswerValue>) -> String {
    serde_json::Value::Object(hamlet_sync_core::sealed::answers_json(answers)).to_string()
}

/// Reads answers written by [`to_json`] against the campaign's form (what no longer fits is
/// left out).
pub fn from_json(campaign: &Campaign, text: &str) -> BTreeMap<AnswerKey, AnswerValue> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return BTreeMap::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| {
            let key: AnswerKey = k.parse().ok()?;
            let question = campaign.form.question(&key.question)?;
            let scalar = match v {
                serde_json::Value::String(s) => Scalar::Str(s),
                serde_json::Value::Bool(b) => Scalar::Bool(b),
                serde_json::Value::Number(n) => Scalar::Int(n.as_i64()?),
                _ => return None,
            };
            Some((key, scalar.to_answer(&question.kind)?))
        })
        .collect()
}

/// An answer as text, the way [`parse`] reads it back.
pub fn show(value: &Scalar) -> String {
    match value {
        Scalar::Str(s) => s.clone(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Uint(u) => u.to_string(),
        Scalar::F64(f) => f.to_string(),
        Scalar::Bool(true) => "yes".into(),
        Scalar::Bool(false) => "no".into(),
        Scalar::Null => String::new(),
        Scalar::Bytes(b) => format!("({} bytes)", b.len()),
        Scalar::Other(o) => o.clone(),
    }
}

fn choices(levels: &[Level]) -> Vec<ChoiceView> {
    levels
        .iter()
        .map(|l| {
            let label = l.label();
            ChoiceView { code: l.code().to_owned(), label_vi: label.vi, label_en: label.en }
        })
        .collect()
}

/// Every answer a response to `campaign` in `hamlet` can hold, in the order of the form, each
/// question asked per subject once for every subject of the hamlet's ballot.
pub fn slots(campaign: &Campaign, hamlet: &UnitId) -> Vec<AnswerSlot> {
    let ballot = campaign.ballot(hamlet);
    let mut out = Vec::new();
    for q in &campaign.form.questions {
        let (kind, choices, min, max, max_chars) = match &q.kind {
            QuestionKind::Rating { levels } => ("rating", choices(levels.levels()), None, None, None),
            QuestionKind::YesNo => ("yes_no", Vec::new(), None, None, None),
            QuestionKind::Number { min, max } => ("number", Vec::new(), Some(*min), Some(*max), None),
            QuestionKind::Comment { max_chars } => ("comment", Vec::new(), None, None, Some(*max_chars)),
        };
        let slot = |key: AnswerKey, subject_name: Option<String>| AnswerSlot {
            key: key.to_string(),
            question: q.id.to_string(),
            subject: key.subject.as_ref().map(ToString::to_string),
            subject_name,
            label_vi: q.label.vi.clone(),
            label_en: q.label.get("en").to_owned(),
            kind: kind.to_owned(),
            required: q.required,
            choices: choices.clone(),
            min,
            max,
            max_chars,
        };
        if q.kind.per_subject() {
            for s in campaign.subjects.iter().filter(|s| ballot.contains(&s.id)) {
                let name = format!("{} ({})", s.name, s.position);
                out.push(slot(AnswerKey::for_subject(q.id.clone(), s.id.clone()), Some(name)));
            }
        } else {
            out.push(slot(AnswerKey::once(q.id.clone()), None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use hamlet_sync_core::fixtures;

    use super::*;

    fn check(key: &str, text: &str, expected: Result<AnswerValue, &str>) {
        let campaign = fixtures::open_campaign();
        match (parse(&campaign, &fixtures::hamlet("thon-dong"), key, text), expected) {
            (Ok((_, got)), Ok(want)) => assert_eq!(got, want, "{key}={text}"),
            (Err(e), Err(fragment)) => {
                assert_eq!(e.key, key);
                assert!(e.to_string().contains(fragment), "{key}={text}: {e}");
            }
            (got, want) => panic!("{key}={text}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn answers_as_typed() {
        check("tin-nhiem/ong-an", "tin_nhiem_thap", Ok(AnswerValue::Level(Level::TinNhiemThap)));
        check("tin-nhiem/ong-an", "1", Ok(AnswerValue::Level(Level::TinNhiemCao)));
        check("tin-nhiem/ong-an", "Tín nhiệm", Ok(AnswerValue::Level(Level::TinNhiem)));
        check("tin-nhiem/ong-an", "low confidence", Ok(AnswerValue::Level(Level::TinNhiemThap)));
        check("du-hop", "có", Ok(AnswerValue::YesNo(true)));
        check("du-hop", "no", Ok(AnswerValue::YesNo(false)));
        check("so-nguoi", " 4 ", Ok(AnswerValue::Number(4)));
        check("y-kien/ong-an", "Tốt", Ok(AnswerValue::Comment("Tốt".into())));
    }

    #[test]
    fn errors_name_the_question() {
        check("tin-nhiem/ong-an", "hoan_thanh", Err("is not a level"));
        check("tin-nhiem/ong-an", "4", Err("is not a level"));
        check("tin-nhiem", "1", Err("tin-nhiem"));
        check("tin-nhiem/nobody", "1", Err("nobody"));
        check("hoi-gi", "1", Err("hoi-gi"));
        check("so-nguoi", "99", Err("so-nguoi"));
        check("so-nguoi", "bốn", Err("not a whole number"));
        check("du-hop", "maybe", Err("not yes or no"));
        check("y-kien/ong-an", &"x".repeat(2001), Err("y-kien"));
    }

    #[test]
    fn every_slot_of_the_form() {
        let campaign = fixtures::open_campaign();
        let keys: Vec<String> = slots(&campaign, &fixtures::hamlet("to-1")).into_iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), 3 + 3 + 1 + 1, "schema version 1: every subject everywhere");
        assert_eq!(keys[0], "tin-nhiem/ong-an");
        assert!(keys.contains(&"so-nguoi".to_owned()));
    }

    #[test]
    fn a_hamlet_is_asked_only_about_its_ballot() {
        let campaign = fixtures::scoped_campaign();
        let keys: Vec<String> = slots(&campaign, &fixtures::hamlet("thon-dong")).into_iter().map(|s| s.key).collect();
        assert_eq!(
            keys,
            ["tin-nhiem/ong-an", "tin-nhiem/ba-binh", "y-kien/ong-an", "y-kien/ba-binh", "du-hop", "so-nguoi"]
        );
        let err = parse(&campaign, &fixtures::hamlet("thon-dong"), "tin-nhiem/ong-cuong", "1").expect_err("outside");
        assert_eq!(err.message, "ong-cuong is not evaluated in hamlet thon-dong: its ballot holds ong-an, ba-binh");
        assert!(parse(&campaign, &fixtures::hamlet("thon-tay"), "tin-nhiem/ong-cuong", "1").is_ok());
    }
}
