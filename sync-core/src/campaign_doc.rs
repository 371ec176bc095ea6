//! The campaign document: a campaign's definition as devices read it. Written by the district
//! server only (devices never write to it), so it has a single writer and no conflicts.
//!
//! # Schema (`hamlet-campaign/2`, and `hamlet-campaign/1` read)
//!
//! ```text
//! ROOT
//! ├─ schema:   "hamlet-campaign/<the campaign's schema_version>"
//! └─ campaign: the campaign, as maps and lists shaped like its JSON form (see docs/schema.md)
//! ```
//!
//! A version 1 document (no `schema_version` in the campaign, no ballots) reads as a campaign
//! where every hamlet rates every subject.

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, AutomergeError, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue, Value};

use crate::campaign::Campaign;
use crate::day::Day;

/// The value of the campaign document's `schema` key for the current version.
pub const CAMPAIGN_SCHEMA: &str = "hamlet-campaign/2";
/// The value of the `schema` key for version 1, still read.
pub const CAMPAIGN_SCHEMA_V1: &str = "hamlet-campaign/1";

/// The `schema` key a campaign of this version is written under.
fn schema_of(campaign: &Campaign) -> &'static str {
    if campaign.is_scoped() { CAMPAIGN_SCHEMA } else { CAMPAIGN_SCHEMA_V1 }
}

/// Why a campaign document could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CampaignDocError {
    /// Automerge refused the data or the operation.
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
    /// The document is not a campaign document.
    #[error("not a Hamlet campaign document: {0}")]
    NotACampaign(String),
    /// The campaign stored does not read as a valid campaign.
    #[error("campaign does not read back: {0}")]
    Shape(#[from] serde_json::Error),
}

/// A new campaign document holding `campaign`, written by the server's `actor`.
pub fn new_campaign_doc(campaign: &Campaign, actor: ActorId, today: Day) -> Result<Automerge, CampaignDocError> {
    let mut doc = Automerge::new().with_actor(actor);
    write_campaign(&mut doc, campaign, today)?;
    Ok(doc)
}

/// Writes `campaign` into the document, replacing what it held.
pub fn write_campaign(doc: &mut Automerge, campaign: &Campaign, today: Day) -> Result<(), CampaignDocError> {
    let json = serde_json::to_value(campaign)?;
    doc.transact_with::<_, _, AutomergeError, _>(
        |_| CommitOptions::default().with_time(today.unix_seconds()),
        |tx| {
            tx.put(ROOT, "schema", schema_of(campaign))?;
            put_json(tx, &ROOT, Prop::Map("campaign".into()), &json, false)
        },
    )
    .map_err(|f| f.error)?;
    Ok(())
}

/// Reads the campaign held by a campaign document.
pub fn read_campaign(doc: &Automerge) -> Result<Campaign, CampaignDocError> {
    let version = match doc.get(ROOT, "schema")? {
        Some((Value::Scalar(s), _)) if s.as_str() == Some(CAMPAIGN_SCHEMA) => 2,
        Some((Value::Scalar(s), _)) if s.as_str() == Some(CAMPAIGN_SCHEMA_V1) => 1,
        _ => {
            return Err(CampaignDocError::NotACampaign(format!(
                "schema is neither {CAMPAIGN_SCHEMA:?} nor {CAMPAIGN_SCHEMA_V1:?}"
            )));
        }
    };
    let json = match doc.get(ROOT, "campaign")? {
        Some((Value::Object(_), obj)) => to_json(doc, &obj)?,
        _ => return Err(CampaignDocError::NotACampaign("no campaign object".into())),
    };
    let campaign: Campaign = serde_json::from_value(json)?;
    if campaign.schema_version != version {
        return Err(CampaignDocError::NotACampaign(format!(
            "the document is version {version}, its campaign version {}",
            campaign.schema_version
        )));
    }
    Ok(campaign)
}

fn put_json(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    at: Prop,
    value: &serde_json::Value,
    insert: bool,
) -> Result<(), AutomergeError> {
    use serde_json::Value as J;
    let object = match value {
        J::Object(_) => Some(ObjType::Map),
        J::Array(_) => Some(ObjType::List),
        _ => None,
    };
    let child = match (object, &at, insert) {
        (Some(kind), Prop::Seq(i), true) => Some(tx.insert_object(obj, *i, kind)?),
        (Some(kind), _, _) => Some(tx.put_object(obj, at.clone(), kind)?),
        (None, _, _) => {
            let scalar = match value {
                J::Null => ScalarValue::Null,
                J::Bool(b) => ScalarValue::Boolean(*b),
                J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => ScalarValue::Int(i),
                    (None, Some(u), _) => ScalarValue::Uint(u),
                    (_, _, f) => ScalarValue::F64(f.unwrap_or(0.0)),
                },
                J::String(s) => ScalarValue::Str(s.as_str().into()),
                J::Object(_) | J::Array(_) => ScalarValue::Null,
            };
            match (&at, insert) {
                (Prop::Seq(i), true) => tx.insert(obj, *i, scalar)?,
                _ => tx.put(obj, at, scalar)?,
            }
            None
        }
    };
    match (value, child) {
        (J::Object(map), Some(child)) => {
            for (k, v) in map {
                put_json(tx, &child, Prop::Map(k.clone()), v, false)?;
            }
        }
        (J::Array(items), Some(child)) => {
            for (i, v) in items.iter().enumerate() {
                put_json(tx, &child, Prop::Seq(i), v, true)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn to_json(doc: &Automerge, obj: &ObjId) -> Result<serde_json::Value, AutomergeError> {
    use serde_json::Value as J;
    let convert = |value: Value<'_>, id: ObjId| -> Result<J, AutomergeError> {
        Ok(match value {
            Value::Object(_) => to_json(doc, &id)?,
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(s) => J::String(s.to_string()),
                ScalarValue::Int(i) => J::from(*i),
                ScalarValue::Uint(u) => J::from(*u),
                ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
                ScalarValue::Boolean(b) => J::Bool(*b),
                _ => J::Null,
            },
        })
    };
    Ok(match doc.object_type(obj)? {
        ObjType::Map | ObjType::Table => {
            let mut map = serde_json::Map::new();
            for key in doc.keys(obj) {
                if let Some((value, id)) = doc.get(obj, key.as_str())? {
                    map.insert(key, convert(value, id)?);
                }
            }
            J::Object(map)
        }
        ObjType::List | ObjType::Text => {
            let mut items = Vec::new();
            for i in 0..doc.length(obj) {
                if let Some((value, id)) = doc.get(obj, i)? {
                    items.push(convert(value, id)?);
                }
            }
            J::Array(items)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::CampaignState;
    use crate::fixtures;

    #[test]
    fn a_campaign_round_trips_through_its_document() {
        let today: Day = "2025-05-20".parse().expect("day");
        let mut campaign = fixtures::campaign();
        let mut doc = new_campaign_doc(&campaign, ActorId::random(), today).expect("written");
        let bytes = doc.save();
        let loaded = Automerge::load(&bytes).expect("loads");
        assert_eq!(read_campaign(&loaded).expect("reads"), campaign);

        campaign.transition(CampaignState::Open, Some(&fixtures::unit_tree())).expect("opens");
        write_campaign(&mut doc, &campaign, today).expect("rewritten");
        assert_eq!(read_campaign(&doc).expect("reads").state, CampaignState::Open);
    }

    #[test]
    fn a_ledger_is_not_a_campaign_document() {
        let ledger =
            crate::ledger::Ledger::create(&fixtures::campaign().id, &fixtures::hamlet("thon-dong"), ActorId::random());
        assert!(matches!(read_campaign(ledger.doc()), Err(CampaignDocError::NotACampaign(_))));
    }
}
