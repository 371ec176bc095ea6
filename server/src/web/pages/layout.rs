//! The frame every page shares: the document head with the one inline stylesheet, the header
//! with the navigation and the language switch, a campaign's tabs, the `<h1>`, and the footer.
//!
//! Pages are plain HTML with no JavaScript: they work on an old office PC and a slow line.
//! They are written with maud, which escapes every value it writes; nothing here builds HTML
//! from strings by hand.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::href;
use hamlet_sync_core::texts::{Lang, Texts};

/// The one stylesheet, inline in every page.
pub(super) const STYLE: &str = "\
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,'Segoe UI',Roboto,Arial,sans-serif;color:#1a1a1a;background:#f6f7f9}\
a{color:#0b4f9c}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #f9a825;outline-offset:1px}\
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:6px;z-index:9}\
header{background:#0b3d6b;color:#fff;padding:8px 16px;display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center}\
header a{color:#fff}header .app{font-weight:700;font-size:17px;text-decoration:none}\
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px}\
header nav a[aria-current]{font-weight:700}header form.out{margin:0}header form.out button{background:none;border-color:#fff}\
.lang{margin-left:auto}.lang a[aria-current]{font-weight:700;text-decoration:none}\
main{max-width:1180px;margin:0 auto;padding:12px 16px 40px}h1{font-size:22px;margin:12px 0 4px}h2{font-size:18px;margin:22px 0 8px}\
.sub{color:#444;margin:0 0 10px}.tabs{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0}\
.tabs a{padding:5px 10px;border:1px solid #b8c2cc;border-radius:4px;background:#fff;text-decoration:none}\
.tabs a[aria-current]{background:#0b3d6b;color:#fff;border-color:#0b3d6b}\
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 14px}caption{text-align:left;font-weight:600;padding:4px 0}\
th,td{border:1px solid #d5dbe1;padding:5px 7px;text-align:left;vertical-align:top}th{background:#eef1f4}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.sum td{font-weight:700;background:#f2f5f8}\
td form{margin:0}\
.d1 td:first-child{padding-left:18px}.d2 td:first-child{padding-left:30px}.d3 td:first-child{padding-left:42px}.d4 td:first-child{padding-left:54px}\
.bar{display:inline-block;vertical-align:middle;width:120px;height:12px;background:#dde3ea;border-radius:2px;overflow:hidden}\
.bar i{display:block;height:100%;background:#0b5cad}\
.kpi{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}.kpi div{background:#fff;border:1px solid #d5dbe1;border-radius:4px;padding:8px 12px;min-width:130px}\
.kpi b{display:block;font-size:20px}\
.warn{color:#8a1c1c;font-weight:600}.ok{color:#1b5e20}.muted{color:#555}\
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:13px;background:#e6e9ed;color:#1a1a1a;margin:1px 2px}\
.badge.x{background:#b71c1c;color:#fff}.badge.s{background:#5f6b76;color:#fff}\
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}\
form.inline{display:inline}label{display:block;margin:6px 0 2px;font-weight:600}label.confirm{font-weight:400;margin:4px 0 8px}\
input[type=text],input[type=date],input[type=search],input[type=password],select,textarea{font:inherit;padding:5px;border:1px solid #8795a1;border-radius:3px;max-width:100%}\
textarea{width:100%;min-height:90px}button{font:inherit;padding:5px 12px;border:1px solid #0b3d6b;background:#0b3d6b;color:#fff;border-radius:3px;cursor:pointer}\
form.review textarea{min-height:44px}.card{background:#fff;border:1px solid #d5dbe1;border-radius:4px;padding:10px 14px;margin:10px 0}\
.error{background:#fdecea;border:1px solid #b71c1c;padding:8px 12px;border-radius:4px}.notice{background:#e8f5e9;border:1px solid #1b5e20;padding:8px 12px;border-radius:4px}\
.secret code{font-size:20px;letter-spacing:1px}\
svg text{font:12px system-ui,Arial,sans-serif}footer{color:#555;text-align:center;font-size:13px;padding:20px}";

/// Where a page sits, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The list of campaigns.
    Campaigns,
    /// One campaign's overview, results, comments, review, devices.
    Campaign(Tab),
    /// Managing campaigns.
    Manage,
    /// Administrative units.
    Units,
    /// The audit log.
    Audit,
    /// People, their one-time passwords and enrollment codes.
    People,
    /// Enrolled devices.
    Devices,
    /// Signing in and one's own password: no menu entry.
    Account,
}

/// A campaign page's tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Progress.
    Overview,
    /// Results.
    Results,
    /// Comments.
    Comments,
    /// Conflicts and flags.
    Review,
    /// Devices.
    Devices,
}

/// Which menu the header shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Menu {
    /// None (the sign-in page).
    None,
    /// Staff who read: the campaigns.
    Staff,
    /// Administrators: the campaigns and the administration pages.
    Admin,
}

/// What the frame of a page needs to know of the request: plain data, so that a page renders
/// without a server.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The language.
    pub lang: Lang,
    /// The current path and query (for the language switch).
    pub path: String,
    /// Which menu to show.
    pub menu: Menu,
    /// The session's CSRF token, which every form sends back (empty for API tokens).
    pub csrf: String,
}

impl Chrome {
    /// The words of the page's language.
    pub fn t(&self) -> &'static Texts {
        self.lang.texts()
    }
}

/// One page: its title, where it sits, and for a campaign's pages the campaign (id, name).
#[derive(Debug, Clone)]
pub struct Page {
    /// Its `<title>` and `<h1>`.
    pub title: String,
    /// Where it sits.
    pub section: Section,
    /// The campaign, for campaign pages: (id, name).
    pub campaign: Option<(String, String)>,
}

impl Page {
    /// A page titled `title` in `section`.
    pub fn new(title: impl Into<String>, section: Section) -> Page {
        Page { title: title.into(), section, campaign: None }
    }

    /// A page of a campaign's tab `tab`.
    pub fn campaign(title: impl Into<String>, tab: Tab, id: &str, name: &str) -> Page {
        Page { title: title.into(), section: Section::Campaign(tab), campaign: Some((id.into(), name.into())) }
    }
}

/// The link to the same page in `lang`: the current query with its `lang=` replaced.
fn lang_link(chrome: &Chrome, lang: Lang, label: &str) -> Markup {
    let (path, query) = chrome.path.split_once('?').unwrap_or((&chrome.path, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("lang=")).collect();
    let code = format!("lang={}", lang.code());
    params.push(&code);
    let current = (lang == chrome.lang).then_some("true");
    html! {
        a href={ (path) "?" (params.join("&")) } lang=(lang.code()) hreflang=(lang.code()) aria-current=[current] { (label) }
    }
}

/// The whole document: `body` inside the frame.
pub fn layout(chrome: &Chrome, page: &Page, body: Markup) -> Markup {
    let t = chrome.t();
    let current = |yes: bool| yes.then_some("page");
    html! {
        (DOCTYPE)
        html lang=(chrome.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (page.title) " — Hamlet" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                a.skip href="#main" { (t.skip) }
                header {
                    a.app href="/" { (t.app) }
                    @if chrome.menu != Menu::None {
                        nav aria-label=(t.app) {
                            ul {
                                li { a href="/" aria-current=[current(page.section == Section::Campaigns)] { (t.nav_campaigns) } }
                                @if chrome.menu == Menu::Admin {
                                    li { a href="/admin/campaigns" aria-current=[current(page.section == Section::Manage)] { (t.nav_manage) } }
                                    li { a href="/admin/units" aria-current=[current(page.section == Section::Units)] { (t.nav_units) } }
                                    li { a href="/admin/audit" aria-current=[current(page.section == Section::Audit)] { (t.nav_audit) } }
                                    li { a href="/admin/people" aria-current=[current(page.section == Section::People)] { (t.nav_people) } }
                                    li { a href="/admin/devices" aria-current=[current(page.section == Section::Devices)] { (t.nav_all_devices) } }
                                }
                            }
                        }
                    }
                    div.lang role="group" aria-label=(t.language) {
                        (lang_link(chrome, Lang::Vi, "Tiếng Việt")) " · " (lang_link(chrome, Lang::En, "English"))
                    }
                    // Signed in with a session (an API token has no session to end, nor a CSRF
                    // token): the own password, and signing out on a shared office computer.
                    @if chrome.menu != Menu::None && !chrome.csrf.is_empty() {
                        a href="/password" aria-current=[current(page.section == Section::Account)] { (t.change_password) }
                        form.out method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(chrome.csrf);
                            button type="submit" { (t.sign_out) }
                        }
                    }
                }
                main #main {
                    @if let (Some((id, name)), Section::Campaign(tab)) = (&page.campaign, page.section) {
                        p.sub { a href="/" { (t.nav_campaigns) } " › " (name) }
                        nav.tabs aria-label=(name) {
                            @for (tab_of, path, label) in [
                                (Tab::Overview, "", t.nav_overview),
                                (Tab::Results, "/results", t.nav_results),
                                (Tab::Comments, "/comments", t.nav_comments),
                                (Tab::Review, "/review", t.nav_review),
                                (Tab::Devices, "/devices", t.nav_devices),
                            ] {
                                a href={ "/campaigns/" (href(id)) (path) } aria-current=[current(tab_of == tab)] { (label) }
                            }
                        }
                    }
                    h1 { (page.title) }
                    (body)
                }
                footer { "Hamlet" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome(path: &str, menu: Menu) -> Chrome {
        Chrome { lang: Lang::Vi, path: path.into(), menu, csrf: String::new() }
    }

    #[test]
    fn the_language_switch_keeps_the_query() {
        let c = chrome("/campaigns/a/comments?q=t%E1&lang=vi", Menu::Staff);
        let html = layout(&c, &Page::new("x", Section::Campaigns), html! {}).into_string();
        assert!(html.contains("href=\"/campaigns/a/comments?q=t%E1&amp;lang=en\""), "{html}");
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"vi\">"));
    }

    #[test]
    fn titles_are_escaped_and_the_admin_menu_names_people_and_devices() {
        let c = chrome("/", Menu::Admin);
        let html = layout(&c, &Page::new("<b>&", Section::People), html! {}).into_string();
        assert!(html.contains("<h1>&lt;b&gt;&amp;</h1>"), "{html}");
        assert!(html.contains("<a href=\"/admin/people\" aria-current=\"page\">"), "{html}");
        assert!(html.contains("href=\"/admin/devices\""), "{html}");
        let staff = layout(&chrome("/", Menu::Staff), &Page::new("x", Section::Campaigns), html! {}).into_string();
        assert!(!staff.contains("/admin/"), "{staff}");
        let none = layout(&chrome("/login", Menu::None), &Page::new("x", Section::Account), html! {}).into_string();
        assert!(!none.contains("<nav"), "{none}");
        assert!(!none.contains("/logout"), "nobody to sign out: {none}");
    }

    #[test]
    fn a_session_can_sign_out_from_every_page_and_an_api_token_has_nothing_to_end() {
        let signed_in = Chrome { csrf: "t".into(), ..chrome("/", Menu::Staff) };
        let html = layout(&signed_in, &Page::new("x", Section::Campaigns), html! {}).into_string();
        assert!(html.contains("<form class=\"out\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"t\"><button type=\"submit\">Đăng xuất</button></form>"), "{html}");
        assert!(html.contains("<a href=\"/password\">Đổi mật khẩu</a>"), "{html}");
        let token = layout(&chrome("/", Menu::Admin), &Page::new("x", Section::Campaigns), html! {}).into_string();
        assert!(!token.contains("/logout"), "{token}");
    }
}
