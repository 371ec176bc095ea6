//! Progress: per hamlet, what was recorded, submitted and voided, the tallies entered, the
//! devices that work there and when each last synced; per commune, the sums. Hamlets with
//! nothing yet and devices silent for longer than the configured days stand out.
//!
//! So do numbers too large to be true ([`Alert`]): a hamlet whose responses and counted meeting
//! ballots exceed its expected voters, and a collector who recorded more responses in one
//! hamlet on one day than the campaign's `max_responses_per_day`. They are shown on the
//! overview and review pages; what they concern is counted as usual, for staff to judge.

use std::collections::{BTreeMap, HashMap};

use hamlet_sync_core::{Campaign, UnitLevel};
use serde::Serialize;

use super::{District, DistrictError, fold_search};
use crate::store::{on_pool, query_failed};

/// A device seen syncing a hamlet's ledger.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceRow {
    /// The device (its storage id, or its peer id when it keeps no storage).
    pub device: String,
    /// The peer id it last synced as.
    pub peer: String,
    /// The hamlet.
    pub hamlet: String,
    /// The hamlet's name.
    pub hamlet_name: String,
    /// First sync (unix ms).
    pub first_seen_at: i64,
    /// Last sync (unix ms).
    pub last_sync_at: i64,
    /// Sync rounds seen.
    pub syncs: i64,
    /// Whether it has been silent for longer than the configured days.
    pub silent: bool,
}

/// Counts of a hamlet, or summed over a commune.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Counts {
    /// Voters expected.
    pub expected_voters: u64,
    /// Responses recorded (drafts, submitted and voided).
    pub recorded: u64,
    /// Drafts.
    pub drafts: u64,
    /// Submitted (counted).
    pub submitted: u64,
    /// Voided.
    pub voided: u64,
    /// Meeting tallies entered.
    pub tallies: u64,
    /// Ballots returned at meetings.
    pub ballots_returned: u64,
    /// `submitted + ballots_returned` in percent of expected voters, one decimal.
    pub participation_percent: f64,
    /// Conflicts and flags not yet reviewed.
    pub to_review: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.expected_voters += other.expected_voters;
        self.recorded += other.recorded;
        self.drafts += other.drafts;
        self.submitted += other.submitted;
        self.voided += other.voided;
        self.tallies += other.tallies;
        self.ballots_returned += other.ballots_returned;
        self.to_review += other.to_review;
    }

    fn finish(&mut self) {
        self.participation_percent = if self.expected_voters == 0 {
            0.0
        } else {
            (((self.submitted + self.ballots_returned) as f64) * 1000.0 / self.expected_voters as f64).round() / 10.0
        };
    }
}

/// A subject on a hamlet's ballot.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BallotSubject {
    /// Subject id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Position.
    pub position: String,
}

/// One hamlet's progress.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HamletProgress {
    /// Hamlet id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its commune's id.
    pub commune: String,
    /// Its commune's name.
    pub commune_name: String,
    /// The subjects its residents evaluate (its ballot), in the campaign's order.
    pub ballot: Vec<BallotSubject>,
    /// Counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Devices that synced its ledger, most recent first.
    pub devices: Vec<DeviceRow>,
    /// The latest sync of any device (unix ms).
    pub last_sync_at: Option<i64>,
    /// Nothing recorded and no tally yet.
    pub nothing_yet: bool,
    /// Devices silent for longer than the configured days.
    pub silent_devices: usize,
}

/// One commune's progress.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommuneProgress {
    /// Commune id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The commune it is merged into, by name, if any.
    pub merged_into: Option<String>,
    /// Hamlets in scope.
    pub hamlets: usize,
    /// Hamlets with nothing yet.
    pub hamlets_with_nothing: usize,
    /// Silent devices.
    pub silent_devices: usize,
    /// Sums.
    #[serde(flatten)]
    pub counts: Counts,
}

/// A number too large to be true, for staff to look into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// Responses recorded and ballots returned at meetings exceed the expected voters.
    OverVoters {
        /// The hamlet.
        hamlet: String,
        /// Its name.
        hamlet_name: String,
        /// Responses recorded plus ballots returned.
        counted: u64,
        /// Voters expected.
        expected: u64,
    },
    /// One collector recorded implausibly many responses in a hamlet on one day.
    BusyCollector {
        /// The hamlet.
        hamlet: String,
        /// Its name.
        hamlet_name: String,
        /// Who recorded them: the enrolled device, or the actor (hex) when none was enrolled.
        device: String,
        /// The collector names the responses carry (claims), comma-separated.
        collector: String,
        /// The day (YYYY-MM-DD).
        day: String,
        /// Responses recorded that day.
        responses: u64,
        /// The campaign's limit.
        limit: u64,
    },
}

/// A campaign's progress.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// The campaign.
    pub campaign: String,
    /// Devices silent for longer than this many days stand out.
    pub silent_after_days: u32,
    /// When this was computed (unix ms).
    pub now: i64,
    /// Sums over the campaign.
    pub totals: Counts,
    /// Per commune, by name.
    pub communes: Vec<CommuneProgress>,
    /// Per hamlet, by commune and name.
    pub hamlets: Vec<HamletProgress>,
    /// Numbers too large to be true.
    pub alerts: Vec<Alert>,
}

/// Reads the progress of `campaign`.
pub async fn load(district: &District, campaign: &Campaign) -> Result<Progress, DistrictError> {
    let tree = district.catalog().units().await?;
    let store = district.store();
    let id = campaign.id.as_str();
    let now = district.store().now_ms();
    let silent_ms = i64::from(district.settings().silent_device_days) * 86_400_000;
    const COUNTS: &str = "SELECT hamlet_id, drafts, submitted, voided, tallies, ballots_returned \
        FROM hamlet_counts WHERE campaign_id = $1";
    let counts: Vec<(String, i64, i64, i64, i64, i64)> =
        on_pool!(store, pool => sqlx::query_as(COUNTS).bind(id).fetch_all(pool).await)
            .map_err(query_failed("reading hamlet counts"))?;
    const DEVICES: &str = "SELECT hamlet_id, device_id, peer_id, first_seen_at, last_sync_at, syncs \
        FROM ledger_devices WHERE campaign_id = $1 ORDER BY last_sync_at DESC";
    let devices: Vec<(String, String, String, i64, i64, i64)> =
        on_pool!(store, pool => sqlx::query_as(DEVICES).bind(id).fetch_all(pool).await)
            .map_err(query_failed("reading devices"))?;
    const OPEN: &str = "SELECT hamlet_id, CAST(COUNT(*) AS BIGINT) FROM ( \
            SELECT hamlet_id, item_key FROM conflicts WHERE campaign_id = $1 \
            UNION ALL SELECT hamlet_id, item_key FROM flags WHERE campaign_id = $1) items \
        WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.campaign_id = $1 AND r.item_key = items.item_key) \
        GROUP BY hamlet_id";
    let open: HashMap<String, i64> =
        on_pool!(store, pool => sqlx::query_as::<_, (String, i64)>(OPEN).bind(id).fetch_all(pool).await)
            .map_err(query_failed("counting items to review"))?
            .into_iter()
            .collect();
    let counts: HashMap<String, (i64, i64, i64, i64, i64)> =
        counts.into_iter().map(|(h, d, s, v, t, b)| (h, (d, s, v, t, b))).collect();
    let mut by_hamlet: HashMap<String, Vec<DeviceRow>> = HashMap::new();
    for (hamlet, device, peer, first_seen_at, last_sync_at, syncs) in devices {
        let hamlet_name = hamlet
            .parse::<hamlet_sync_core::UnitId>()
            .ok()
            .and_then(|id| tree.get(&id).map(|u| u.name.clone()))
            .unwrap_or_else(|| hamlet.clone());
        by_hamlet.entry(hamlet.clone()).or_default().push(DeviceRow {
            device,
            peer,
            hamlet,
            hamlet_name,
            first_seen_at,
            last_sync_at,
            syncs,
            silent: now - last_sync_at > silent_ms,
        });
    }
    // Per device (the writer behind the actor that made each response), not per the collector
    // name a device writes: invented names do not spread a day's responses. Rows projected
    // before writers were recorded fall back to their collector name.
    const BUSY: &str = "SELECT hamlet_id, COALESCE(writer, collector, ''), COALESCE(collector, ''), recorded_on, \
            CAST(COUNT(*) AS BIGINT) \
        FROM responses WHERE campaign_id = $1 AND recorded_on IS NOT NULL \
        GROUP BY hamlet_id, COALESCE(writer, collector, ''), COALESCE(collector, ''), recorded_on";
    let limit = i64::from(campaign.max_responses_per_day);
    let rows: Vec<(String, String, String, String, i64)> =
        on_pool!(store, pool => sqlx::query_as(BUSY).bind(id).fetch_all(pool).await)
            .map_err(query_failed("counting responses per device and day"))?;
    let mut per_device: BTreeMap<(String, String, String), (Vec<String>, i64)> = BTreeMap::new();
    for (hamlet, device, collector, day, n) in rows {
        let entry = per_device.entry((hamlet, day, device)).or_default();
        entry.0.push(collector);
        entry.1 += n;
    }
    let busy: Vec<(String, String, String, String, i64)> = per_device
        .into_iter()
        .filter(|(_, (_, n))| *n > limit)
        .map(|((hamlet, day, device), (mut collectors, n))| {
            collectors.sort();
            collectors.dedup();
            (hamlet, device, collectors.join(", "), day, n)
        })
        .collect();
    let name_of = |hamlet: &str| {
        hamlet
            .parse::<hamlet_sync_core::UnitId>()
            .ok()
            .and_then(|id| tree.get(&id).map(|u| u.name.clone()))
            .unwrap_or_else(|| hamlet.to_owned())
    };
    let mut alerts: Vec<Alert> = Vec::new();
    let u = |n: i64| n.max(0) as u64;
    let mut hamlets = Vec::new();
    for scope in campaign.in_campaign() {
        let unit = tree.get(&scope.hamlet);
        let commune_unit = tree.ancestor_at(&scope.hamlet, UnitLevel::Commune);
        let commune = commune_unit.map_or_else(String::new, |c| c.id.to_string());
        let commune_name = commune_unit.map_or_else(String::new, |c| c.name.clone());
        let (drafts, submitted, voided, tallies, ballots) =
            counts.get(scope.hamlet.as_str()).copied().unwrap_or_default();
        let mut c = Counts {
            expected_voters: u64::from(scope.expected_voters),
            recorded: u(drafts + submitted + voided),
            drafts: u(drafts),
            submitted: u(submitted),
            voided: u(voided),
            tallies: u(tallies),
            ballots_returned: u(ballots),
            participation_percent: 0.0,
            to_review: u(open.get(scope.hamlet.as_str()).copied().unwrap_or(0)),
        };
        c.finish();
        if c.recorded + c.ballots_returned > c.expected_voters {
            alerts.push(Alert::OverVoters {
                hamlet: scope.hamlet.to_string(),
                hamlet_name: name_of(scope.hamlet.as_str()),
                counted: c.recorded + c.ballots_returned,
                expected: c.expected_voters,
            });
        }
        let devices = by_hamlet.remove(scope.hamlet.as_str()).unwrap_or_default();
        hamlets.push(HamletProgress {
            id: scope.hamlet.to_string(),
            name: unit.map_or_else(|| scope.hamlet.to_string(), |u| u.name.clone()),
            commune,
            commune_name,
            ballot: campaign
                .subjects
                .iter()
                .filter(|s| campaign.evaluates(&scope.hamlet, &s.id))
                .map(|s| BallotSubject { id: s.id.to_string(), name: s.name.clone(), position: s.position.clone() })
                .collect(),
            nothing_yet: c.recorded == 0 && c.tallies == 0,
            last_sync_at: devices.iter().map(|d| d.last_sync_at).max(),
            silent_devices: devices.iter().filter(|d| d.silent).count(),
            counts: c,
            devices,
        });
    }
    let mut communes: BTreeMap<String, CommuneProgress> = BTreeMap::new();
    let mut totals = Counts::default();
    for h in &hamlets {
        totals.add(&h.counts);
        let commune = communes.entry(h.commune.clone()).or_insert_with(|| {
            let unit = h.commune.parse().ok().and_then(|id| tree.get(&id));
            CommuneProgress {
                id: h.commune.clone(),
                name: unit.map_or_else(|| h.commune.clone(), |u| u.name.clone()),
                merged_into: unit
                    .and_then(|u| u.merged_into.as_ref())
                    .and_then(|m| tree.get(m))
                    .map(|m| m.name.clone()),
                hamlets: 0,
                hamlets_with_nothing: 0,
                silent_devices: 0,
                counts: Counts::default(),
            }
        });
        commune.hamlets += 1;
        commune.hamlets_with_nothing += usize::from(h.nothing_yet);
        commune.silent_devices += h.silent_devices;
        commune.counts.add(&h.counts);
    }
    totals.finish();
    let mut communes: Vec<CommuneProgress> = communes.into_values().collect();
    for c in &mut communes {
        c.counts.finish();
    }
    // Vietnamese order: letters first, diacritics only to break ties ("Đông" next to "Dương").
    communes.sort_by_cached_key(|c| (fold_search(&c.name), c.name.clone()));
    let order: HashMap<String, usize> = communes.iter().enumerate().map(|(i, c)| (c.id.clone(), i)).collect();
    hamlets.sort_by_cached_key(|h| (order.get(&h.commune).copied(), fold_search(&h.name), h.name.clone()));
    alerts.extend(busy.into_iter().map(|(hamlet, device, collector, day, responses)| Alert::BusyCollector {
        hamlet_name: name_of(&hamlet),
        hamlet,
        device,
        collector,
        day,
        responses: u(responses),
        limit: u(limit),
    }));
    Ok(Progress {
        alerts,
        campaign: id.to_owned(),
        silent_after_days: district.settings().silent_device_days,
        now,
        totals,
        communes,
        hamlets,
    })
}
