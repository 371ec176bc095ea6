//! The operations staff do on campaigns and units: create, edit, open, close, publish, and the
//! CSV imports. Each checks what it is given and saves through the catalog (which writes the
//! campaign document through the hub), with its audit entry in the same transaction as the
//! change: a change the log cannot show is not made. The JSON API, the pages and the demo all
//! call these.

use hamlet_sync_core::{CAMPAIGN_VERSION, Campaign, CampaignState, UnitTree};

use super::catalog::{self, require_draft};
use super::{Actor, District, DistrictError, results};
use crate::audit::Entry;

/// A schedule that closes before it opens, refused when saved rather than when opened.
fn check_schedule(campaign: &Campaign) -> Result<(), DistrictError> {
    let (opens, closes) = (campaign.schedule.opens_on, campaign.schedule.closes_on);
    if closes < opens {
        return Err(DistrictError::invalid(
            "invalid_schedule",
            format!("the campaign closes on {closes}, before it opens on {opens}"),
        ));
    }
    Ok(())
}

/// Creates a draft campaign; audited.
pub async fn create(district: &District, actor: &Actor, mut campaign: Campaign) -> Result<(), DistrictError> {
    if campaign.state != CampaignState::Draft {
        return Err(DistrictError::invalid("not_draft", "a new campaign must be a draft"));
    }
    check_schedule(&campaign)?;
    if campaign.name.vi.trim().is_empty() {
        return Err(DistrictError::invalid("invalid_campaign", "the campaign needs a Vietnamese name"));
    }
    campaign.form.validate().map_err(|e| DistrictError::invalid("invalid_form", e.to_string()))?;
    if !(1..=CAMPAIGN_VERSION).contains(&campaign.schema_version) {
        return Err(DistrictError::invalid(
            "invalid_campaign",
            format!("schema_version {} is not 1 or {CAMPAIGN_VERSION}", campaign.schema_version),
        ));
    }
    campaign.resolve_ballots(&*district.catalog().units().await?);
    if district.catalog().campaign(&campaign.id).await?.is_some() {
        return Err(DistrictError::conflict("campaign_exists", format!("campaign {} already exists", campaign.id)));
    }
    let entry = Entry::new(&actor.name, "campaign.create", campaign.id.as_str(), &campaign.name.vi);
    district.catalog().save(&district.hub, &campaign, None, &entry).await.map_err(|e| match e {
        DistrictError::Conflict { .. } => {
            DistrictError::conflict("campaign_exists", format!("campaign {} already exists", campaign.id))
        }
        other => other,
    })?;
    Ok(())
}

/// Replaces a draft campaign; audited.
pub async fn update(district: &District, actor: &Actor, id: &str, mut campaign: Campaign) -> Result<(), DistrictError> {
    let current = district.catalog().require(id).await?;
    require_draft(&current)?;
    if campaign.id != current.id {
        return Err(DistrictError::invalid("id_mismatch", format!("the body is campaign {}, not {id}", campaign.id)));
    }
    if campaign.state != CampaignState::Draft {
        return Err(DistrictError::invalid("not_draft", "use open, close and publish to change the state"));
    }
    check_schedule(&campaign)?;
    campaign.form.validate().map_err(|e| DistrictError::invalid("invalid_form", e.to_string()))?;
    // A changed form is a new version, whatever the body says.
    if campaign.form.questions != current.form.questions && campaign.form.version <= current.form.version {
        campaign.form.version = current.form.version + 1;
    }
    if !(1..=CAMPAIGN_VERSION).contains(&campaign.schema_version) {
        return Err(DistrictError::invalid(
            "invalid_campaign",
            format!("schema_version {} is not 1 or {CAMPAIGN_VERSION}", campaign.schema_version),
        ));
    }
    campaign.resolve_ballots(&*district.catalog().units().await?);
    let entry = Entry::new(&actor.name, "campaign.update", id, &campaign.name.vi);
    district.catalog().save(&district.hub, &campaign, Some(&current), &entry).await?;
    Ok(())
}

/// Moves a campaign to `to` (open, closed, published); audited. Opening checks the campaign
/// against the unit tree and projects ledgers that arrived before.
pub async fn transition(
    district: &District,
    actor: &Actor,
    id: &str,
    to: CampaignState,
) -> Result<Campaign, DistrictError> {
    let current = district.catalog().require(id).await?;
    let mut campaign = (*current).clone();
    let tree = district.catalog().units().await?;
    if to == CampaignState::Open {
        // The scopes freeze with the rest: the ballots as the unit tree gives them today.
        campaign.resolve_ballots(&tree);
        // A version 2 campaign gets its key as it opens, when the server can keep one.
        if let Some(kek) = &district.settings().campaign_kek
            && campaign.is_scoped()
            && campaign.sealing.is_none()
        {
            let public = super::keys::make(district.store(), kek, &campaign.id).await?;
            campaign.sealing = Some(hamlet_sync_core::Sealing::new(public));
        }
    }
    campaign.transition(to, Some(&tree)).map_err(|e| match e {
        hamlet_sync_core::CampaignError::Transition { .. } => {
            DistrictError::conflict("invalid_transition", e.to_string())
        }
        other => DistrictError::invalid("invalid_campaign", other.to_string()),
    })?;
    if to == CampaignState::Published {
        // Before the state changes: what is projected in between arrived after the copy, and is
        // listed as such. A refused save leaves a copy nobody reads (the next publish replaces it).
        results::freeze(district, id).await?;
    }
    let action = match to {
        CampaignState::Open => "campaign.open",
        CampaignState::Closed => "campaign.close",
        CampaignState::Published => "campaign.publish",
        CampaignState::Draft => "campaign.draft",
    };
    district.catalog().save(&district.hub, &campaign, Some(&current), &Entry::new(&actor.name, action, id, "")).await?;
    let projector = district.projector.clone();
    let campaign_id = campaign.id.clone();
    tokio::spawn(async move {
        if let Err(e) = projector.catch_up(Some(&campaign_id)).await {
            tracing::error!(campaign = %campaign_id, error = %e, "projecting a campaign's ledgers failed");
        }
    });
    Ok(campaign)
}

/// Replaces a draft campaign's subjects from CSV; audited.
pub async fn replace_subjects(
    district: &District,
    actor: &Actor,
    id: &str,
    text: &str,
) -> Result<usize, DistrictError> {
    edit_draft(district, actor, id, "campaign.subjects", |campaign, tree| {
        campaign.subjects = catalog::subjects_from_csv(text, tree)?;
        Ok((campaign.subjects.len(), format!("{} subjects", campaign.subjects.len())))
    })
    .await
}

/// Replaces a draft campaign's hamlets in scope from CSV; audited.
pub async fn replace_hamlets(district: &District, actor: &Actor, id: &str, text: &str) -> Result<usize, DistrictError> {
    edit_draft(district, actor, id, "campaign.hamlets", |campaign, tree| {
        campaign.hamlets = catalog::hamlets_from_csv(text, tree)?;
        Ok((campaign.hamlets.len(), format!("{} hamlets", campaign.hamlets.len())))
    })
    .await
}

/// The edit of a draft campaign: `change` mutates a copy (given the unit tree) and says what
/// to return and what to write in the audit entry; the copy is saved (compare-and-swap on the
/// campaign as read) and audited as `action`.
async fn edit_draft<T>(
    district: &District,
    actor: &Actor,
    id: &str,
    action: &str,
    change: impl FnOnce(&mut Campaign, &UnitTree) -> Result<(T, String), DistrictError>,
) -> Result<T, DistrictError> {
    let current = district.catalog().require(id).await?;
    require_draft(&current)?;
    let mut campaign = (*current).clone();
    let tree = district.catalog().units().await?;
    let (value, detail) = change(&mut campaign, &tree)?;
    campaign.resolve_ballots(&tree);
    district
        .catalog()
        .save(&district.hub, &campaign, Some(&current), &Entry::new(&actor.name, action, id, &detail))
        .await?;
    Ok(value)
}

/// Imports units from CSV; audited.
pub async fn import_units_text(district: &District, actor: &Actor, text: &str) -> Result<usize, DistrictError> {
    district.catalog().import_units(text, &actor.name).await
}
