//! Hamlet's sync core: the domain, the Automerge documents, and the projection to rows.
//!
//! This crate performs no I/O: it starts no thread, opens no file or socket, and reads no clock
//! or random source. Days and actor ids come in as arguments, so that the server, the relay and
//! the phone all run the same code, and tests can replay anything.
//!
//! - [`mod@unit`], [`form`], [`campaign`]: the domain and its validation.
//! - [`ledger`]: the hamlet ledger, one Automerge document per campaign × hamlet.
//! - [`campaign_doc`]: the campaign document devices read.
//! - [`docid`]: automerge-repo compatible document ids, derived from what a document is about.
//! - [`projection`]: from a ledger to the rows the server stores.
//! - [`authorship`]: who wrote what in a ledger, from the actors of its changes.
//! - [`sealed`]: answers sealed on the device for the campaign's key, opened at the district.
//! - [`hub`], [`actor`]: the server's side of the sync, as state machines: the peers and
//!   connections, and one actor per document (rounds, commits before replies, refusals).
//! - [`sim`]: a deterministic simulation of phones and a server over an in-memory network and
//!   store, with the promises the server keeps, for tests and benchmarks.
//! - [`client`]: the sync session seen from a client (join, request or sync, acknowledgements).
//! - [`bundle`]: changes of many documents in one file, carried without a network.
//! - [`texts`]: every word the pages and the collector command show, in Vietnamese and English.
//!
//! # Example
//!
//! Two collectors record offline in the same hamlet; their ledgers merge without losing either.
//!
//! ```
//! use std::collections::BTreeMap;
//! use automerge::ActorId;
//! use hamlet_sync_core::{fixtures, AnswerKey, AnswerValue, Level, Ledger, NewResponse, Day};
//!
//! let campaign = fixtures::open_campaign();
//! let hamlet = fixtures::hamlet("thon-dong");
//! let today: Day = "2025-06-02".parse()?;
//! let mut phone_a = Ledger::create(&campaign.id, &hamlet, ActorId::random());
//! let mut phone_b = Ledger::create(&campaign.id, &hamlet, ActorId::random());
//!
//! for (phone, id) in [(&mut phone_a, "r-1"), (&mut phone_b, "r-2")] {
//!     let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
//!     let response = NewResponse {
//!         id: id.parse()?,
//!         collector: "collector-1".parse()?,
//!         answers: BTreeMap::from([(key, AnswerValue::Level(Level::TinNhiem))]),
//!     };
//!     phone.record(&campaign, &response, today)?;
//! }
//!
//! phone_a.doc_mut().merge(&mut phone_b.doc().clone())?;
//! assert_eq!(phone_a.responses()?.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod actor;
pub mod authorship;
pub mod bundle;
pub mod campaign;
pub mod campaign_doc;
pub mod client;
pub mod day;
pub mod docid;
pub mod enrollment;
pub mod fixtures;
pub mod form;
pub mod guard;
pub mod hub;
pub mod ids;
pub mod ledger;
#[cfg(feature = "openapi")]
mod openapi;
pub mod projection;
pub mod sealed;
pub mod session;
pub mod sim;
pub mod texts;
pub mod unit;
pub mod wire;

pub use campaign::{
    CAMPAIGN_VERSION, Campaign, CampaignError, CampaignState, DEFAULT_MAX_RESPONSES_PER_DAY, EvaluationScope,
    HamletScope, Post, Schedule, Sealing, Subject, SubjectCategory, Threshold,
};
pub use day::Day;
pub use docid::DocumentId;
pub use form::{AnswerError, AnswerKey, AnswerValue, Form, Label, Level, LevelSet, Question, QuestionKind};
pub use ids::{CampaignId, PersonId, QuestionId, ResponseId, SubjectId, TallyId, UnitId};
pub use ledger::{EditOutcome, Ledger, LedgerError, NewResponse, Status, Tally};
pub use projection::{
    Projection, project, project_opened, project_since, project_since_opened, project_since_with, project_with,
};
pub use unit::{Unit, UnitLevel, UnitTree};

/// The Automerge version this crate writes with, re-exported so that callers use the same one.
pub use automerge;
