//! Building blocks of the dashboard's HTML: escaping, the page layout, and the SVG charts.
//!
//! Pages are plain HTML with one small inline stylesheet and no JavaScript: they work on an old
//! office PC and a slow line. Every value written into HTML goes through [`esc`].

use std::fmt::Write as _;

use crate::web::i18n::{Lang, Texts};

/// `text` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped for a URL query value.
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Colours of the levels of a scale, best first; each has a contrast of at least 4.5:1 with
/// white text.
pub fn level_colour(index: usize, count: usize) -> &'static str {
    const THREE: [&str; 3] = ["#1b5e20", "#0d47a1", "#b71c1c"];
    const FOUR: [&str; 4] = ["#1b5e20", "#33691e", "#0d47a1", "#b71c1c"];
    if count == 4 { FOUR[index.min(3)] } else { THREE[index.min(2)] }
}

const STYLE: &str = "\
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,'Segoe UI',Roboto,Arial,sans-serif;color:#1a1a1a;background:#f6f7f9}\
a{color:#0b4f9c}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #f9a825;outline-offset:1px}\
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:6px;z-index:9}\
header{background:#0b3d6b;color:#fff;padding:8px 16px;display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center}\
header a{color:#fff}header .app{font-weight:700;font-size:17px;text-decoration:none}\
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px}\
.lang{margin-left:auto}.lang a[aria-current]{font-weight:700;text-decoration:none}\
main{max-width:1180px;margin:0 auto;padding:12px 16px 40px}h1{font-size:22px;margin:12px 0 4px}h2{font-size:18px;margin:22px 0 8px}\
.sub{color:#444;margin:0 0 10px}.tabs{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0}\
.tabs a{padding:5px 10px;border:1px solid #b8c2cc;border-radius:4px;background:#fff;text-decoration:none}\
.tabs a[aria-current]{background:#0b3d6b;color:#fff;border-color:#0b3d6b}\
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 14px}caption{text-align:left;font-weight:600;padding:4px 0}\
th,td{border:1px solid #d5dbe1;padding:5px 7px;text-align:left;vertical-align:top}th{background:#eef1f4}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.sum td{font-weight:700;background:#f2f5f8}\
.d1 td:first-child{padding-left:18px}.d2 td:first-child{padding-left:30px}.d3 td:first-child{padding-left:42px}.d4 td:first-child{padding-left:54px}\
.bar{display:inline-block;vertical-align:middle;width:120px;height:12px;background:#dde3ea;border-radius:2px;overflow:hidden}\
.bar i{display:block;height:100%;background:#0b5cad}\
.kpi{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}.kpi div{background:#fff;border:1px solid #d5dbe1;border-radius:4px;padding:8px 12px;min-width:130px}\
.kpi b{display:block;font-size:20px}\
.warn{color:#8a1c1c;font-weight:600}.ok{color:#1b5e20}.muted{color:#555}\
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:13px;background:#e6e9ed;color:#1a1a1a;margin:1px 2px}\
.badge.x{background:#b71c1c;color:#fff}.badge.s{background:#5f6b76;color:#fff}\
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}\
form.inline{display:inline}label{display:block;margin:6px 0 2px;font-weight:600}\
input[type=text],input[type=date],input[type=search],select,textarea{font:inherit;padding:5px;border:1px solid #8795a1;border-radius:3px;max-width:100%}\
textarea{width:100%;min-height:90px}button{font:inherit;padding:5px 12px;border:1px solid #0b3d6b;background:#0b3d6b;color:#fff;border-radius:3px;cursor:pointer}\
form.review textarea{min-height:44px}.card{background:#fff;border:1px solid #d5dbe1;border-radius:4px;padding:10px 14px;margin:10px 0}\
.error{background:#fdecea;border:1px solid #b71c1c;padding:8px 12px;border-radius:4px}.notice{background:#e8f5e9;border:1px solid #1b5e20;padding:8px 12px;border-radius:4px}\
svg text{font:12px system-ui,Arial,sans-serif}footer{color:#555;text-align:center;font-size:13px;padding:20px}";

/// Where a page sits, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The list of campaigns.
    Campaigns,
    /// One campaign's overview, results, comments, review, devices.
    Campaign(Tab),
    /// Administration.
    Admin,
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

/// A page being built.
#[derive(Debug)]
pub struct Page {
    /// The language.
    pub lang: Lang,
    /// Its `<title>` and `<h1>`.
    pub title: String,
    /// The current path and query (for the language switch).
    pub path: String,
    /// The main content.
    pub body: String,
    /// Where it sits.
    pub section: Section,
    /// The campaign, for campaign pages: (id, name).
    pub campaign: Option<(String, String)>,
    /// Whether to show administration links.
    pub admin: bool,
}

impl Page {
    /// A page titled `title` at `path`.
    pub fn new(lang: Lang, title: impl Into<String>, path: impl Into<String>, section: Section) -> Page {
        Page { lang, title: title.into(), path: path.into(), body: String::new(), section, campaign: None, admin: true }
    }

    /// The words of the page's language.
    pub fn t(&self) -> &'static Texts {
        self.lang.texts()
    }

    /// Appends raw HTML (already escaped).
    pub fn push(&mut self, html: &str) {
        self.body.push_str(html);
    }

    fn lang_link(&self, lang: Lang, label: &str) -> String {
        let (path, query) = self.path.split_once('?').unwrap_or((&self.path, ""));
        let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("lang=")).collect();
        let code = format!("lang={}", lang.code());
        params.push(&code);
        let current = if lang == self.lang { " aria-current=\"true\"" } else { "" };
        format!(
            "<a href=\"{}?{}\" lang=\"{}\" hreflang=\"{}\"{current}>{label}</a>",
            esc(path),
            esc(&params.join("&")),
            lang.code(),
            lang.code()
        )
    }

    /// The whole document.
    pub fn render(&self) -> String {
        let t = self.t();
        let mut out = String::with_capacity(self.body.len() + 6000);
        let _ = write!(
            out,
            "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{} — Hamlet</title><style>{STYLE}</style></head><body>",
            self.lang.code(),
            esc(&self.title)
        );
        let _ = write!(
            out,
            "<a class=\"skip\" href=\"#main\">{}</a><header><a class=\"app\" href=\"/\">{}</a>",
            t.skip, t.app
        );
        let _ = write!(out, "<nav aria-label=\"{}\"><ul>", t.app);
        let current = |yes: bool| if yes { " aria-current=\"page\"" } else { "" };
        let _ = write!(
            out,
            "<li><a href=\"/\"{}>{}</a></li>",
            current(self.section == Section::Campaigns),
            t.nav_campaigns
        );
        if self.admin {
            let _ = write!(
                out,
                "<li><a href=\"/admin/campaigns\"{}>{}</a></li><li><a href=\"/admin/units\">{}</a></li><li><a href=\"/admin/audit\">{}</a></li>",
                current(self.section == Section::Admin),
                t.nav_manage,
                t.nav_units,
                t.nav_audit
            );
        }
        let _ = write!(
            out,
            "</ul></nav><div class=\"lang\" role=\"group\" aria-label=\"{}\">{} · {}</div></header><main id=\"main\">",
            t.language,
            self.lang_link(Lang::Vi, "Tiếng Việt"),
            self.lang_link(Lang::En, "English")
        );
        if let (Some((id, name)), Section::Campaign(tab)) = (&self.campaign, self.section) {
            let _ = write!(out, "<p class=\"sub\"><a href=\"/\">{}</a> › {}</p>", t.nav_campaigns, esc(name));
            let _ = write!(out, "<nav class=\"tabs\" aria-label=\"{}\">", esc(name));
            for (tab_of, href, label) in [
                (Tab::Overview, format!("/campaigns/{}", url(id)), t.nav_overview),
                (Tab::Results, format!("/campaigns/{}/results", url(id)), t.nav_results),
                (Tab::Comments, format!("/campaigns/{}/comments", url(id)), t.nav_comments),
                (Tab::Review, format!("/campaigns/{}/review", url(id)), t.nav_review),
                (Tab::Devices, format!("/campaigns/{}/devices", url(id)), t.nav_devices),
            ] {
                let _ = write!(out, "<a href=\"{href}\"{}>{label}</a>", current(tab_of == tab));
            }
            out.push_str("</nav>");
        }
        let _ = write!(out, "<h1>{}</h1>", esc(&self.title));
        out.push_str(&self.body);
        out.push_str("</main><footer>Hamlet</footer></body></html>");
        out
    }
}

/// A horizontal progress bar for `percent` (0–100), with its value as text for screen readers.
pub fn bar(percent: f64, label: &str) -> String {
    let width = percent.clamp(0.0, 100.0);
    format!("<span class=\"bar\" role=\"img\" aria-label=\"{}\"><i style=\"width:{width:.1}%\"></i></span>", esc(label))
}

/// One stacked bar: segments of `counts` (levels in order) over `width` pixels, with each
/// share written in its segment when there is room. `None` counts draw a grey "hidden" bar.
pub fn stacked_bar(out: &mut String, y: u32, width: u32, counts: Option<&[u64]>, lang: Lang) {
    let h = 22;
    match counts {
        Some(counts) if counts.iter().sum::<u64>() > 0 => {
            let total: u64 = counts.iter().sum();
            let mut x = 0.0;
            for (i, c) in counts.iter().enumerate() {
                let w = *c as f64 * f64::from(width) / total as f64;
                if w > 0.0 {
                    let _ = write!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{}\"/>",
                        level_colour(i, counts.len())
                    );
                    if w >= 38.0 {
                        let share = *c as f64 * 100.0 / total as f64;
                        let _ = write!(
                            out,
                            "<text x=\"{:.1}\" y=\"{}\" fill=\"#fff\" text-anchor=\"middle\">{}</text>",
                            x + w / 2.0,
                            y + 15,
                            esc(&format!("{share:.0}%"))
                        );
                    }
                }
                x += w;
            }
        }
        _ => {
            let _ = write!(out, "<rect x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{h}\" fill=\"#c4cbd3\"/>");
            let label = if counts.is_none() { lang.texts().suppressed } else { "—" };
            let _ = write!(out, "<text x=\"8\" y=\"{}\" fill=\"#1a1a1a\">{}</text>", y + 15, esc(label));
        }
    }
}

/// An SVG chart of stacked bars, one per row (`label`, counts), with an accessible title.
pub fn stacked_chart(title: &str, rows: &[(String, usize, Option<Vec<u64>>)], lang: Lang) -> String {
    let label_w = 210;
    let bar_w = 520;
    let row_h = 28;
    let height = rows.len() as u32 * row_h + 4;
    let id = format!("c{}", crate::district::short_hash(title));
    let mut out = format!(
        "<svg role=\"img\" aria-labelledby=\"{id}\" width=\"100%\" viewBox=\"0 0 {} {height}\" style=\"max-width:{}px\"><title id=\"{id}\">{}</title>",
        label_w + bar_w + 4,
        label_w + bar_w + 4,
        esc(title)
    );
    for (i, (label, indent, counts)) in rows.iter().enumerate() {
        let y = i as u32 * row_h + 2;
        let indent = (*indent).min(4);
        let shown: String = label.chars().take(30 - 2 * indent).collect();
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text><g transform=\"translate({label_w},0)\">",
            indent * 10,
            y + 15,
            esc(&shown)
        );
        stacked_bar(&mut out, y, bar_w, counts.as_deref(), lang);
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// The legend of a scale's colours.
pub fn legend(labels: &[String]) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (i, l) in labels.iter().enumerate() {
        let _ = write!(out, "<span><i style=\"background:{}\"></i>{}</span>", level_colour(i, labels.len()), esc(l));
    }
    out.push_str("</p>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(url("Tốt lắm & a=b"), "T%E1%BB%91t%20l%E1%BA%AFm%20%26%20a%3Db");
    }

    #[test]
    fn the_language_switch_keeps_the_query() {
        let page = Page::new(Lang::Vi, "x", "/campaigns/a/comments?q=t%E1&lang=vi", Section::Campaigns);
        let html = page.render();
        assert!(html.contains("href=\"/campaigns/a/comments?q=t%E1&amp;lang=en\""), "{html}");
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"vi\">"));
    }

    #[test]
    fn a_hidden_group_draws_a_grey_bar_with_words() {
        let mut out = String::new();
        stacked_bar(&mut out, 0, 100, None, Lang::En);
        assert!(out.contains("Hidden (small group)"));
        let chart = stacked_chart("t", &[("a".into(), 0, Some(vec![1, 1, 2]))], Lang::Vi);
        assert_eq!(chart.matches("<rect").count(), 3);
        assert!(chart.contains("50%"));
    }
}
