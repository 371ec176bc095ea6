//! Managing campaigns (`/admin/campaigns`, `/admin/campaigns/{id}` and its forms).

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

/// `/admin/campaigns`: the campaigns and the form that creates one (its dates from `today`).
pub fn render_manage(chrome: &Chrome, list: &[CampaignSummary], today: Day, error: Option<&DistrictError>) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let body = html! {
        (error_box(t, error))
        (data_table(Some(t.campaigns_title), &[col(t.name), col(t.state), col(t.updated)], html! {
            @for c in list {
                tr {
                    td { a href={ "/admin/campaigns/" (href(&c.id)) } { (c.name_vi) } " " span.muted { "(" (c.id) ")" } }
                    td { (state_label(t, &c.state)) }
                    td { (lang.datetime(c.updated_at)) }
                }
            }
        }))
        (post_form("/admin/campaigns", &chrome.csrf, Some("card"), html! {
            h2 { (t.new_campaign) }
            label for="id" { (t.campaign_id) }
            input type="text" id="id" name="id" required pattern="[A-Za-z0-9._\\-]{1,64}";
            label for="name_vi" { (t.name_vi) }
            input type="text" id="name_vi" name="name_vi" required size="60";
            label for="name_en" { (t.name_en) }
            input type="text" id="name_en" name="name_en" size="60";
            label for="opens_on" { (t.opens_on) }
            input type="date" id="opens_on" name="opens_on" required value=(today);
            label for="closes_on" { (t.closes_on) }
            input type="date" id="closes_on" name="closes_on" required value=(today.plus_days(20));
            p { button type="submit" { (t.create) } }
        }))
    };
    layout(chrome, &Page::new(t.manage_title, Section::Manage), body)
}

pub(super) async fn manage_page(ctx: PageCtx) -> Response {
    let page = manage(&ctx, None).await;
    ctx.respond(page)
}

pub(super) async fn manage(ctx: &PageCtx, error: Option<&DistrictError>) -> Result<Markup, DistrictError> {
    let list = ctx.district.catalog().campaigns().await?;
    let today = Day::from_unix_seconds(ctx.district.store().now_ms() / 1000);
    Ok(render_manage(ctx.chrome(), &list, today, error))
}

#[derive(Debug, Deserialize)]
pub(super) struct CampaignForm {
    #[serde(default)]
    id: String,
    name_vi: String,
    #[serde(default)]
    name_en: String,
    opens_on: String,
    closes_on: String,
}

pub(super) fn parse_day(text: &str, what: &str) -> Result<Day, DistrictError> {
    text.parse().map_err(|_| DistrictError::invalid("invalid_date", format!("{what}: {text:?} is not a date")))
}

pub(super) async fn create_post(ctx: PageCtx, body: Bytes) -> Response {
    let done = async {
        let f: CampaignForm = form(&body)?;
        let id = f.id.trim();
        let campaign = Campaign {
            schema_version: hamlet_sync_core::CAMPAIGN_VERSION,
            id: id
                .parse()
                .map_err(|_| DistrictError::invalid("invalid_id", format!("{id:?} is not a valid campaign id")))?,
            name: Label::new(f.name_vi.trim(), f.name_en.trim()),
            form: fixtures::form(),
            subjects: Vec::new(),
            hamlets: Vec::new(),
            schedule: hamlet_sync_core::Schedule {
                opens_on: parse_day(&f.opens_on, "opens_on")?,
                closes_on: parse_day(&f.closes_on, "closes_on")?,
            },
            thresholds: Threshold::defaults(),
            max_responses_per_day: hamlet_sync_core::DEFAULT_MAX_RESPONSES_PER_DAY,
            sealing: None,
            state: CampaignState::Draft,
        };
        campaigns::create(&ctx.district, &ctx.actor, campaign).await?;
        Ok::<_, DistrictError>(id.to_owned())
    }
    .await;
    match done {
        Ok(id) => Redirect::to(&format!("/admin/campaigns/{}?done=1", href(&id))).into_response(),
        Err(e) => {
            let page = manage(&ctx, Some(&e)).await;
            form_failure(&ctx, page, &e)
        }
    }
}

pub(super) fn form_failure(ctx: &PageCtx, page: Result<Markup, DistrictError>, e: &DistrictError) -> Response {
    let status = district_status(e);
    match page {
        Ok(page) if !status.is_server_error() => ctx.request.html(status, page),
        _ => error_page(ctx.chrome(), e),
    }
}

/// `/admin/campaigns/{id}`: a campaign's state, its next transition, and (while a draft) the
/// forms that edit it and import its subjects and hamlets. `makes_key`: opening the campaign
/// will make its key (the server keeps campaign keys), which the page warns about.
pub fn render_campaign_admin(
    chrome: &Chrome,
    campaign: &Campaign,
    tree: &hamlet_sync_core::UnitTree,
    error: Option<&DistrictError>,
    done: bool,
    makes_key: bool,
) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let cid = href(campaign.id.as_str());
    let csrf = &chrome.csrf;
    let next = match campaign.state {
        CampaignState::Draft => Some(("open", t.open_campaign, t.confirm_open)),
        CampaignState::Open => Some(("closed", t.close_campaign, t.confirm_close)),
        CampaignState::Closed => Some(("published", t.publish_campaign, t.confirm_publish)),
        CampaignState::Published => None,
    };
    let body = html! {
        (error_box(t, error))
        (notice(t, done))
        p.sub {
            (t.state) ": " strong { (state_label(t, state_code(campaign.state))) }
            " · " (t.schedule) ": " (schedule(lang, campaign))
            " · " (t.subjects_count) ": " (campaign.subjects.len())
            " · " (t.hamlets) ": " (campaign.hamlets.len())
            " · " a href={ "/campaigns/" (cid) } { (t.nav_overview) }
        }
        @if let Some((to, label, what_follows)) = next {
            (post_form(&format!("/admin/campaigns/{cid}/state"), csrf, Some("card"), html! {
                input type="hidden" name="to" value=(to);
                @if makes_key && campaign.state == CampaignState::Draft && campaign.is_scoped() {
                    p.warn role="alert" { (t.campaign_key_warning) }
                }
                @if let Some(sealing) = &campaign.sealing {
                    p.muted { (t.campaign_key_held) " " code { (sealing.public_key) } }
                }
                p.muted { (t.confirm_hint) }
                label.confirm { input type="checkbox" name="confirm" value="yes" required; " " (what_follows) }
                button type="submit" { (label) }
            }))
        }
        @if campaign.state == CampaignState::Draft {
            (post_form(&format!("/admin/campaigns/{cid}"), csrf, Some("card"), html! {
                h2 { (t.edit_campaign) }
                label for="name_vi" { (t.name_vi) }
                input type="text" id="name_vi" name="name_vi" required size="60" value=(campaign.name.vi);
                label for="name_en" { (t.name_en) }
                input type="text" id="name_en" name="name_en" size="60" value=(campaign.name.en);
                label for="opens_on" { (t.opens_on) }
                input type="date" id="opens_on" name="opens_on" value=(campaign.schedule.opens_on);
                label for="closes_on" { (t.closes_on) }
                input type="date" id="closes_on" name="closes_on" value=(campaign.schedule.closes_on);
                p { button type="submit" { (t.save) } }
            }))
            @for (what, label) in [("subjects", t.subjects_import), ("hamlets", t.hamlets_import)] {
                (csv_form(t, &format!("/admin/campaigns/{cid}/{what}"), csrf, what, label))
            }
        } @else {
            p.muted { (t.only_draft) }
        }
        (data_table(
            Some(t.subject),
            &[col(t.name), col(t.position), col(t.category), col(t.post), col(t.commune), col(t.home_hamlet), col(t.evaluated_in)],
            html! {
                @for s in &campaign.subjects {
                    tr {
                        td { (s.name) }
                        td { (s.position) }
                        td { (s.category.map_or("", |c| lang.category(c))) }
                        td { (s.post.map_or("", |p| lang.post(p))) }
                        td { (unit_name(tree, &s.commune)) }
                        td { (unit_name(tree, &s.home_hamlet)) }
                        td { (evaluated_in(t, tree, campaign, s)) }
                    }
                }
            },
        ))
    };
    let title = format!("{} — {}", t.edit_campaign, campaign.name.vi);
    layout(chrome, &Page::new(title, Section::Manage), body)
}

/// A unit's name, or its id when the tree does not know it.
fn unit_name(tree: &hamlet_sync_core::UnitTree, id: &hamlet_sync_core::UnitId) -> String {
    tree.get(id).map_or_else(|| id.to_string(), |u| u.name.clone())
}

/// Where a subject is evaluated: their scope as set, and (schema version 2) the hamlets that
/// evaluate them, by name.
fn evaluated_in(
    t: &Texts,
    tree: &hamlet_sync_core::UnitTree,
    campaign: &Campaign,
    s: &hamlet_sync_core::Subject,
) -> String {
    if !campaign.is_scoped() {
        return String::new();
    }
    let kind = match &s.scope {
        hamlet_sync_core::EvaluationScope::Home => t.scope_home,
        hamlet_sync_core::EvaluationScope::Commune => t.scope_commune,
        hamlet_sync_core::EvaluationScope::Hamlets(_) => "",
    };
    let hamlets: Vec<String> = campaign.scope_of(&s.id).map(|h| unit_name(tree, &h.hamlet)).collect();
    match (kind.is_empty(), hamlets.is_empty()) {
        (true, _) => hamlets.join(", "),
        (false, true) => kind.to_owned(),
        (false, false) => format!("{kind}: {}", hamlets.join(", ")),
    }
}

/// A form into which an administrator pastes a CSV file.
pub(super) fn csv_form(t: &Texts, action: &str, csrf: &str, what: &str, label: &str) -> Markup {
    post_form(
        action,
        csrf,
        Some("card"),
        html! {
            h2 { (label) }
            label for={ (what) "-text" } { (t.csv_text) }
            textarea id={ (what) "-text" } name="text" required {}
            p { button type="submit" { (t.import) } }
        },
    )
}

pub(super) async fn campaign_admin(
    ctx: &PageCtx,
    id: &str,
    error: Option<&DistrictError>,
    done: bool,
) -> Result<Markup, DistrictError> {
    let campaign = ctx.district.catalog().require(id).await?;
    let tree = ctx.district.catalog().units().await?;
    let makes_key = ctx.district.settings().campaign_kek.is_some();
    Ok(render_campaign_admin(ctx.chrome(), &campaign, &tree, error, done, makes_key))
}

pub(super) async fn campaign_admin_page(ctx: PageCtx, Path(id): Path<String>, Query(q): Query<DoneQuery>) -> Response {
    let page = campaign_admin(&ctx, &id, None, q.done.is_some()).await;
    ctx.respond(page)
}

pub(super) async fn admin_outcome(ctx: PageCtx, id: &str, done: Result<(), DistrictError>) -> Response {
    match done {
        Ok(()) => Redirect::to(&format!("/admin/campaigns/{}?done=1", href(id))).into_response(),
        Err(e) => {
            let page = campaign_admin(&ctx, id, Some(&e), false).await;
            form_failure(&ctx, page, &e)
        }
    }
}

pub(super) async fn edit_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let f: CampaignForm = form(&body)?;
        let mut campaign = (*ctx.district.catalog().require(&id).await?).clone();
        campaign.name = Label::new(f.name_vi.trim(), f.name_en.trim());
        campaign.schedule.opens_on = parse_day(&f.opens_on, "opens_on")?;
        campaign.schedule.closes_on = parse_day(&f.closes_on, "closes_on")?;
        campaigns::update(&ctx.district, &ctx.actor, &id, campaign).await
    }
    .await;
    admin_outcome(ctx, &id, done).await
}

#[derive(Debug, Deserialize)]
pub(super) struct CsvForm {
    #[serde(default)]
    text: String,
}

/// The CSV text pasted into an import form.
pub(super) fn pasted_text(body: &[u8]) -> Result<String, DistrictError> {
    Ok(form::<CsvForm>(body)?.text)
}

pub(super) async fn subjects_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let text = pasted_text(&body)?;
        campaigns::replace_subjects(&ctx.district, &ctx.actor, &id, &text).await.map(drop)
    }
    .await;
    admin_outcome(ctx, &id, done).await
}

pub(super) async fn hamlets_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let text = pasted_text(&body)?;
        campaigns::replace_hamlets(&ctx.district, &ctx.actor, &id, &text).await.map(drop)
    }
    .await;
    admin_outcome(ctx, &id, done).await
}

#[derive(Debug, Deserialize)]
pub(super) struct StateForm {
    to: String,
    /// `yes` when the box saying what follows was ticked.
    #[serde(default)]
    confirm: String,
}

pub(super) async fn state_post(ctx: PageCtx, Path(id): Path<String>, body: Bytes) -> Response {
    let done = async {
        let f: StateForm = form(&body)?;
        if f.confirm != "yes" {
            return Err(DistrictError::bad("unconfirmed", ctx.chrome().t().confirm_required));
        }
        let to = match f.to.as_str() {
            "open" => CampaignState::Open,
            "closed" => CampaignState::Closed,
            "published" => CampaignState::Published,
            other => {
                return Err(DistrictError::bad("invalid_state", format!("{other:?} is not open, closed or published")));
            }
        };
        campaigns::transition(&ctx.district, &ctx.actor, &id, to).await.map(drop)
    }
    .await;
    admin_outcome(ctx, &id, done).await
}
