//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use hamlet_sync_core::automerge::ActorId;
use hamlet_sync_core::{AnswerKey, AnswerValue, Day, Ledger, Level, NewResponse, fixtures};

pub fn day(s: &str) -> Day {
    s.parse().expect("day")
}

pub fn today() -> Day {
    day("2025-06-02")
}

pub fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

pub fn rating(subject: &str) -> AnswerKey {
    AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject(subject))
}

/// A response rating every subject of the example campaign at `level`.
pub fn response(id: &str, level: Level) -> NewResponse {
    let answers: BTreeMap<AnswerKey, AnswerValue> =
        ["ong-an", "can-bo-01", "can-bo-02"].into_iter().map(|s| (rating(s), AnswerValue::Level(level))).collect();
    NewResponse { id: id.parse().expect("id"), collector: "thu-ha".parse().expect("id"), answers }
}

pub fn ledger(actor_n: u8) -> Ledger {
    let campaign = fixtures::open_campaign();
    Ledger::create(&campaign.id, &fixtures::hamlet("thon-dong"), actor(actor_n))
}

/// Merges every change `from` has into `into`.
pub fn merge(into: &mut Ledger, from: &Ledger) {
    into.doc_mut().load_incremental(&from.doc().save()).expect("merge");
}
