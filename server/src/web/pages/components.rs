//! The parts pages are made of, as functions that return maud markup: tables, the pager, forms
//! that post (with the session's CSRF token), error and notice boxes, and the charts.

use maud::{Markup, html};

use crate::district::DistrictError;
use hamlet_sync_core::texts::{Lang, Texts};

/// A column of a [`data_table`]: its heading, and whether it holds numbers (right-aligned).
#[derive(Debug, Clone)]
pub struct Column {
    /// The heading (may be empty).
    pub label: String,
    /// Numbers are right-aligned.
    pub numeric: bool,
}

/// A column of text headed `label`.
pub fn col(label: impl Into<String>) -> Column {
    Column { label: label.into(), numeric: false }
}

/// A column of numbers headed `label`.
pub fn num(label: impl Into<String>) -> Column {
    Column { label: label.into(), numeric: true }
}

/// A table with an optional caption, a row of column headings, and `rows` (`tr` elements).
pub fn data_table(caption: Option<&str>, columns: &[Column], rows: Markup) -> Markup {
    html! {
        table {
            @if let Some(caption) = caption { caption { (caption) } }
            thead { tr { @for c in columns { th scope="col" class=[c.numeric.then_some("n")] { (c.label) } } } }
            tbody { (rows) }
        }
    }
}

/// Where a page of a list is: items `first`–`last` (from 1) of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The first item shown, from 1.
    pub first: usize,
    /// The last item shown.
    pub last: usize,
    /// How many there are.
    pub total: usize,
}

/// Links to the previous and next pages of a list (each `None` when there is none), with where
/// this page is; nothing when the list fits one page.
pub fn pager(t: &Texts, previous: Option<String>, span: Span, next: Option<String>) -> Markup {
    html! {
        @if previous.is_some() || next.is_some() {
            p {
                @if let Some(previous) = previous { a href=(previous) { "← " (t.previous) } " " }
                span.muted { (span.first) "–" (span.last) " / " (span.total) }
                @if let Some(next) = next { " " a href=(next) { (t.next) " →" } }
            }
        }
    }
}

/// The items of page `number` (from 1) of `items`, `per` a page, and the pager linking to the
/// pages around it (`base` ends in `?` or `&`).
pub fn paged<'a, T>(t: &Texts, items: &'a [T], number: usize, per: usize, base: &str) -> (&'a [T], Markup) {
    let start = (number.saturating_sub(1) * per).min(items.len());
    let end = (start + per).min(items.len());
    let previous = (number > 1).then(|| format!("{base}page={}", number - 1));
    let next = (end < items.len()).then(|| format!("{base}page={}", number + 1));
    (&items[start..end], pager(t, previous, Span { first: start + 1, last: end, total: items.len() }, next))
}

/// A form posting to `action` with the session's CSRF token in its hidden `csrf` field.
pub fn post_form(action: &str, csrf: &str, class: Option<&str>, body: Markup) -> Markup {
    html! {
        form method="post" action=(action) class=[class] {
            input type="hidden" name="csrf" value=(csrf);
            (body)
        }
    }
}

/// A form that is one button posting to `action`.
pub fn post_button(action: &str, csrf: &str, label: &str) -> Markup {
    post_form(action, csrf, None, html! { button type="submit" { (label) } })
}

/// A button for what cannot be undone: it goes only with its box ticked, whose label says what
/// follows (the handler refuses the form without `confirm=yes` too).
pub fn confirmed_button(action: &str, csrf: &str, label: &str, what_follows: &str) -> Markup {
    post_form(
        action,
        csrf,
        None,
        html! {
            label.confirm { input type="checkbox" name="confirm" value="yes" required; " " (what_follows) }
            button type="submit" { (label) }
        },
    )
}

/// Whether a form's fields hold the ticked confirmation of [`confirmed_button`].
pub fn confirmed(body: &[u8]) -> bool {
    form_urlencoded::parse(body).any(|(k, v)| k == "confirm" && v == "yes")
}

/// A failure in words, with the lines of an import that were refused.
pub fn error_box(t: &Texts, error: Option<&DistrictError>) -> Markup {
    html! {
        @if let Some(error) = error {
            div.error role="alert" {
                p { strong { (t.error) ":" } " " (error.code_and_message().1) }
                (error_lines(t, error))
            }
        }
    }
}

/// The lines an import refused, as a list; nothing for other errors.
pub fn error_lines(t: &Texts, error: &DistrictError) -> Markup {
    html! {
        @if let DistrictError::Invalid { details, .. } = error {
            ul { @for d in details { li { (t.line) " " (d.line) ": " (d.message) } } }
        }
    }
}

/// "Saved." after a form's change went through.
pub fn notice(t: &Texts, done: bool) -> Markup {
    html! { @if done { p.notice role="status" { (t.done) } } }
}

/// Colours of the levels of a scale, best first; each has a contrast of at least 4.5:1 with
/// white text.
pub fn level_colour(index: usize, count: usize) -> &'static str {
    const THREE: [&str; 3] = ["#1b5e20", "#0d47a1", "#b71c1c"];
    const FOUR: [&str; 4] = ["#1b5e20", "#33691e", "#0d47a1", "#b71c1c"];
    if count == 4 { FOUR[index.min(3)] } else { THREE[index.min(2)] }
}

/// A horizontal progress bar for `percent` (0–100), with its value as text for screen readers.
pub fn bar(percent: f64, label: &str) -> Markup {
    let width = percent.clamp(0.0, 100.0);
    html! { span.bar role="img" aria-label=(label) { i style={ "width:" (format!("{width:.1}")) "%" } {} } }
}

/// One stacked bar: segments of `counts` (levels in order) over `width` pixels, with each
/// share written in its segment when there is room. `None` counts draw a grey "hidden" bar.
pub fn stacked_bar(y: u32, width: u32, counts: Option<&[u64]>, lang: Lang) -> Markup {
    let h = 22;
    let total: u64 = counts.map_or(0, |c| c.iter().sum());
    let mut segments = Vec::new();
    if let Some(counts) = counts.filter(|_| total > 0) {
        let mut x = 0.0;
        for (i, c) in counts.iter().enumerate() {
            let w = *c as f64 * f64::from(width) / total as f64;
            if w > 0.0 {
                let share = (w >= 38.0).then(|| format!("{:.0}%", *c as f64 * 100.0 / total as f64));
                segments.push((x, w, level_colour(i, counts.len()), share));
            }
            x += w;
        }
    }
    html! {
        @if total > 0 {
            @for (x, w, colour, share) in &segments {
                rect x=(format!("{x:.1}")) y=(y) width=(format!("{w:.1}")) height=(h) fill=(colour) {}
                @if let Some(share) = share {
                    text x=(format!("{:.1}", x + w / 2.0)) y=(y + 15) fill="#fff" text-anchor="middle" { (share) }
                }
            }
        } @else {
            rect x="0" y=(y) width=(width) height=(h) fill="#c4cbd3" {}
            text x="8" y=(y + 15) fill="#1a1a1a" { (if counts.is_none() { lang.texts().suppressed } else { "—" }) }
        }
    }
}

/// A row of a [`stacked_chart`]: a label, its indent (depth in the unit tree), and the counts
/// per level (`None` when hidden).
#[derive(Debug, Clone)]
pub struct ChartRow {
    /// What the bar is of.
    pub label: String,
    /// How deep in the unit tree (0 at the top).
    pub indent: usize,
    /// Counts per level, or `None` for a hidden small group.
    pub counts: Option<Vec<u64>>,
}

/// An SVG chart of stacked bars, one per row, with an accessible title.
pub fn stacked_chart(title: &str, rows: &[ChartRow], lang: Lang) -> Markup {
    let label_w = 210;
    let bar_w = 520;
    let row_h = 28;
    let height = rows.len() as u32 * row_h + 4;
    let id = format!("c{}", crate::district::short_hash(title));
    let full = label_w + bar_w + 4;
    html! {
        svg role="img" aria-labelledby=(id) width="100%" viewBox={ "0 0 " (full) " " (height) } style={ "max-width:" (full) "px" } {
            title id=(id) { (title) }
            @for (i, row) in rows.iter().enumerate() {
                @let y = i as u32 * row_h + 2;
                @let indent = row.indent.min(4);
                @let shown: String = row.label.chars().take(30 - 2 * indent).collect();
                text x=(indent * 10) y=(y + 15) { (shown) }
                g transform={ "translate(" (label_w) ",0)" } { (stacked_bar(y, bar_w, row.counts.as_deref(), lang)) }
            }
        }
    }
}

/// The legend of a scale's colours.
pub fn legend(labels: &[String]) -> Markup {
    html! {
        p.legend { @for (i, l) in labels.iter().enumerate() { span { i style={ "background:" (level_colour(i, labels.len())) } {} (l) } } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_group_draws_a_grey_bar_with_words() {
        let out = stacked_bar(0, 100, None, Lang::En).into_string();
        assert!(out.contains("Hidden (small group)"), "{out}");
        let row = ChartRow { label: "a".into(), indent: 0, counts: Some(vec![1, 1, 2]) };
        let chart = stacked_chart("t", &[row], Lang::Vi).into_string();
        assert_eq!(chart.matches("<rect").count(), 3);
        assert_eq!(chart.matches("</rect>").count(), 3, "SVG elements are closed: {chart}");
        assert!(chart.contains("50%"));
    }

    #[test]
    fn forms_carry_the_csrf_token_escaped() {
        let form = post_button("/admin/devices/a\"b/revoke", "t<k", "Revoke").into_string();
        assert_eq!(
            form,
            "<form method=\"post\" action=\"/admin/devices/a&quot;b/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"t&lt;k\"><button type=\"submit\">Revoke</button></form>"
        );
    }

    #[test]
    fn the_pager_shows_where_the_page_is_and_only_when_needed() {
        let t = Lang::En.texts();
        let items: Vec<u32> = (0..5).collect();
        let (shown, links) = paged(t, &items, 2, 2, "/x?");
        assert_eq!(shown, &[2, 3]);
        let links = links.into_string();
        assert!(links.contains("href=\"/x?page=1\"") && links.contains("href=\"/x?page=3\""), "{links}");
        assert!(links.contains("3–4 / 5"), "{links}");
        assert_eq!(paged(t, &items, 1, 10, "/x?").1.into_string(), "");
    }
}
