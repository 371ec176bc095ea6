//! Demo data: a campaign in the example district, with collectors who recorded offline on
//! several phones and whose ledgers were merged. Deterministic, so every newcomer sees the same.
//!
//! - [`seed`]: the living demo district `serve --demo` shows, made through the district's
//!   operations and the hub (never by writing the projection's tables).

pub mod seed;

use std::collections::BTreeMap;

use hamlet_sync_core::automerge::ActorId;
use hamlet_sync_core::projection::{AnswerRow, Rows};
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, Day, Ledger, LedgerError, Level, NewResponse, PersonId, fixtures, project,
};

/// A small deterministic generator (xorshift64*), so the demo needs no randomness crate.
#[derive(Debug)]
pub struct DemoRng(u64);

impl DemoRng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        DemoRng(seed.max(1))
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The ledgers of every hamlet of the demo campaign, each written by `phones` devices offline
/// and then merged.
pub fn demo_ledgers(
    campaign: &Campaign,
    phones: u8,
    per_phone: usize,
    first_day: Day,
) -> Result<Vec<Ledger>, LedgerError> {
    let mut rng = DemoRng::new(2025);
    let mut out = Vec::new();
    for (h, scope) in campaign.in_campaign().enumerate() {
        let ballot = campaign.ballot(&scope.hamlet);
        let mut devices: Vec<Ledger> = (0..phones)
            .map(|p| Ledger::create(&campaign.id, &scope.hamlet, ActorId::from([h as u8 + 1, p + 1, 0x48, 0x4c])))
            .collect();
        for (p, device) in devices.iter_mut().enumerate() {
            let collector: PersonId = format!("collector-{h}-{p}").parse().map_err(|_| unreachable_id())?;
            for n in 0..per_phone {
                let day = first_day.plus_days((n / 10) as i32);
                let id = format!("{}-{p}-{n:04}", scope.hamlet).parse().map_err(|_| unreachable_id())?;
                let answers = ballot
                    .iter()
                    .map(|s| {
                        // Mostly confidence, some low: a plausible district.
                        let level = match rng.below(20) {
                            0..=9 => Level::TinNhiemCao,
                            10..=16 => Level::TinNhiem,
                            _ => Level::TinNhiemThap,
                        };
                        (AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.clone()), AnswerValue::Level(level))
                    })
                    .collect::<BTreeMap<_, _>>();
                let response = NewResponse { id, collector: collector.clone(), answers };
                device.record(campaign, &response, day)?;
                if rng.below(10) < 8 {
                    device.submit(campaign, &response.id, &collector, day)?;
                } else if rng.below(4) == 0 {
                    device.void(&response.id, "Phiếu ghi nhầm", &collector, day)?;
                }
            }
        }
        let mut merged = devices.remove(0);
        for device in devices {
            merged.doc_mut().load_incremental(&device.doc().save()).map_err(LedgerError::from)?;
        }
        out.push(merged);
    }
    Ok(out)
}

fn unreachable_id() -> LedgerError {
    LedgerError::NotALedger("demo id".into())
}

/// Counts of counted ratings per subject and level, across `ledgers`.
pub fn rating_counts(campaign: &Campaign, ledgers: &[Ledger]) -> Result<BTreeMap<(String, Level), u64>, LedgerError> {
    let mut counts = BTreeMap::new();
    for ledger in ledgers {
        let Rows { answers, .. } = project(campaign, ledger)?.rows;
        for AnswerRow { subject, value, counted, .. } in answers {
            if let (true, Some(subject), AnswerValue::Level(level)) = (counted, subject, value) {
                *counts.entry((subject.to_string(), level)).or_default() += 1;
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_counts_every_submitted_response_once() {
        let campaign = fixtures::open_campaign();
        let day = Day::from_ymd(2025, 6, 2).unwrap_or_else(|| unreachable!());
        let ledgers = demo_ledgers(&campaign, 2, 15, day).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ledgers.len(), campaign.hamlets.len());
        let submitted: usize = ledgers
            .iter()
            .map(|l| {
                let responses = l.responses().unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(responses.len(), 30, "two phones x 15 responses, none lost");
                responses.iter().filter(|r| r.status() == hamlet_sync_core::Status::Submitted).count()
            })
            .sum();
        let counts = rating_counts(&campaign, &ledgers).unwrap_or_else(|e| panic!("{e}"));
        for subject in campaign.subject_ids() {
            let total: u64 = counts.iter().filter(|((s, _), _)| s == subject.as_str()).map(|(_, n)| n).sum();
            assert_eq!(total, submitted as u64, "subject {subject}");
        }
    }
}
