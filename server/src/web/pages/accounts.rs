//! The account pages: signing in, changing one's password, and the administrators' pages for
//! people (with one-time passwords and enrollment codes) and devices. Each is a function of
//! plain data; the handlers in [`crate::web::auth`] fill it.

use maud::{Markup, PreEscaped, html};

use super::components::{col, confirmed_button, data_table, post_button, post_form};
use super::href;
use super::layout::{Chrome, Page, Section, layout};
use crate::accounts::{Device, MIN_PASSWORD_CHARS, Person};

/// The sign-in form; after signing in, the browser goes to `next`.
pub fn login(chrome: &Chrome, next: &str, error: Option<&str>) -> Markup {
    let t = chrome.t();
    let body = html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            input type="hidden" name="lang" value=(chrome.lang.code());
            label for="name" { (t.user_name) }
            input type="text" id="name" name="name" autocomplete="username" required;
            label for="password" { (t.password) }
            input type="password" id="password" name="password" autocomplete="current-password" required;
            p { button type="submit" { (t.sign_in) } }
        }
    };
    layout(chrome, &Page::new(t.sign_in, Section::Account), body)
}

/// The password change form; `forced` on the first sign-in with a one-time password.
pub fn password(chrome: &Chrome, forced: bool, error: Option<&str>) -> Markup {
    let t = chrome.t();
    let body = html! {
        @if forced { p { (t.first_sign_in) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        (post_form("/password", &chrome.csrf, None, html! {
            label for="current" { (t.current_password) }
            input type="password" id="current" name="current" autocomplete="current-password" required;
            label for="new" { (t.new_password) " (" (MIN_PASSWORD_CHARS) " " (t.characters_or_more) ")" }
            input type="password" id="new" name="new" autocomplete="new-password" minlength=(MIN_PASSWORD_CHARS) required;
            label for="confirm" { (t.new_password_again) }
            input type="password" id="confirm" name="confirm" autocomplete="new-password" required;
            p { button type="submit" { (t.change_password) } }
        }))
    };
    layout(chrome, &Page::new(t.change_password, Section::Account), body)
}

/// A person and the hamlets they are assigned (`campaign/hamlet`).
#[derive(Debug, Clone)]
pub struct PersonRow {
    /// Who.
    pub person: Person,
    /// Their assignments, as `campaign/hamlet`.
    pub assignments: Vec<String>,
}

/// `/admin/people`: people and their hamlets, buttons that issue enrollment codes (or end a
/// staff member's sessions), and the form that adds a person.
pub fn people(chrome: &Chrome, people: &[PersonRow], error: Option<&str>) -> Markup {
    let t = chrome.t();
    let csrf = &chrome.csrf;
    let columns = [col(t.person_id), col(t.full_name), col(t.role), col(t.assigned), col("")];
    let rows = html! {
        @for row in people {
            @let p = &row.person;
            tr {
                td { (p.id) }
                td { (p.display_name) }
                td { (p.role.as_str()) }
                td { (row.assignments.join(", ")) }
                td {
                    @if p.role.is_staff() {
                        (post_button(&format!("/admin/people/{}/sign-out-everywhere", href(&p.id)), csrf, t.sign_out_everywhere))
                    } @else {
                        (post_button(&format!("/admin/people/{}/enroll", href(&p.id)), csrf, t.issue_code))
                    }
                }
            }
        }
    };
    let body = html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        (data_table(None, &columns, rows))
        (post_form("/admin/people", csrf, Some("card"), html! {
            h2 { (t.add_person) }
            label for="id" { (t.person_id) }
            input type="text" id="id" name="id" required;
            label for="display_name" { (t.full_name) }
            input type="text" id="display_name" name="display_name" required;
            label for="role" { (t.role) }
            select id="role" name="role" {
                option value="collector" { (t.role_collector) }
                option value="relay" { "relay" }
                option value="viewer" { "viewer" }
                option value="admin" { "admin" }
            }
            label for="campaign" { (t.campaign_code) }
            input type="text" id="campaign" name="campaign";
            label for="hamlets" { (t.assigned_input) }
            input type="text" id="hamlets" name="hamlets" placeholder="thon-dong, thon-tay";
            p { button type="submit" { (t.add_person) } }
        }))
        p { a href="/admin/devices" { (t.nav_all_devices) } }
    };
    layout(chrome, &Page::new(t.people_title, Section::People), body)
}

/// A new staff member's one-time password, shown once.
pub fn one_time_password(chrome: &Chrome, person: &str, password: &str) -> Markup {
    let t = chrome.t();
    let body = html! {
        p.secret { (t.for_person) " " strong { (person) } ": " code { (password) } }
        p { (t.shown_once) }
        p { a href="/admin/people" { (t.back) } }
    };
    layout(chrome, &Page::new(t.one_time_password, Section::People), body)
}

/// A new enrollment code, as the administrator shows it to a collector.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// For whom.
    pub person: String,
    /// The code.
    pub code: String,
    /// What the QR code holds (the code alone when the server has no `--public-url`).
    pub link: String,
    /// The QR code, SVG made by the `qrcode` crate from `link`.
    pub qr_svg: String,
    /// When it expires (unix ms).
    pub expires_at: i64,
}

/// The enrollment code as text and QR code.
pub fn enrollment(chrome: &Chrome, e: &Enrollment) -> Markup {
    let t = chrome.t();
    let body = html! {
        p { (t.for_person) " " strong { (e.person) } }
        figure {
            // The QR code's SVG comes from the qrcode crate, drawn from our own link: no input
            // of anyone's is in it.
            (PreEscaped(&e.qr_svg))
            figcaption.secret { code { (e.code) } }
        }
        @if e.link == e.code {
            p { (t.qr_code_only) }
        } @else {
            p { (t.qr_opens) " " code { (e.link) } }
        }
        p { (t.single_use_expires) " " (chrome.lang.datetime(e.expires_at)) "." }
        p { a href="/admin/people" { (t.back) } }
    };
    layout(chrome, &Page::new(t.enrollment_code, Section::People), body)
}

/// A device's clock further than this from the server's is flagged on the devices page.
const CLOCK_FLAG_MS: i64 = 24 * 60 * 60 * 1000;

/// The devices page's word on a device's clock: a flag when it was more than a day off the
/// server's at its last sync (its responses are dated by that clock), "ok" within a day.
fn clock_flag(chrome: &Chrome, offset_ms: Option<i64>) -> Markup {
    html! {
        @match offset_ms {
            None => "—",
            Some(offset) if offset.abs() <= CLOCK_FLAG_MS => "ok",
            Some(offset) => {
                @let days = (offset.abs() + CLOCK_FLAG_MS / 2) / CLOCK_FLAG_MS;
                strong.flag.warn { "⚠ " (chrome.lang.clock_off(days, offset > 0)) }
            }
        }
    }
}

/// `/admin/devices`: enrolled devices, when each last synced, its clock, and a revoke button.
pub fn devices(chrome: &Chrome, devices: &[Device], error: Option<&str>) -> Markup {
    let t = chrome.t();
    let lang = chrome.lang;
    let when = |ms: Option<i64>| ms.map_or_else(|| "—".to_owned(), |ms| lang.datetime(ms));
    let columns = [col(t.person_id), col(t.person), col(t.device_name), col(t.last_sync), col(t.device_time), col("")];
    let rows = html! {
        @for d in devices {
            tr {
                td { (d.id) }
                td { (d.person_id) }
                td { (d.name) }
                td { (when(d.last_sync_at)) }
                td { (clock_flag(chrome, d.clock_offset_ms)) }
                td {
                    @if d.revoked_at.is_some() {
                        (t.revoked) " " (when(d.revoked_at))
                    } @else {
                        (confirmed_button(&format!("/admin/devices/{}/revoke", href(&d.id)), &chrome.csrf, t.revoke, t.confirm_revoke))
                    }
                }
            }
        }
    };
    let body = html! {
        @if let Some(error) = error { p.error role="alert" { (error) } }
        (data_table(None, &columns, rows))
    };
    layout(chrome, &Page::new(t.devices, Section::Devices), body)
}
