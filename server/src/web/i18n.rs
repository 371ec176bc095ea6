//! Which language a request asks for. The words themselves, and the numbers and times as each
//! language writes them, are one table shared with the collector command:
//! [`hamlet_sync_core::texts`].
//!
//! The language is chosen by `?lang=vi|en` (which also sets a `lang` cookie), then the cookie,
//! then the browser's `Accept-Language`, then Vietnamese.

use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use cookie::Cookie;
use hamlet_sync_core::texts::Lang;

/// The language a request asks for (see the module docs), and whether it was asked by
/// `?lang=` (then the response sets the cookie).
pub fn lang_of(parts: &Parts) -> (Lang, bool) {
    lang_of_request(parts.uri.query(), &parts.headers)
}

/// [`lang_of`] from a request's query and headers.
pub fn lang_of_request(query: Option<&str>, headers: &HeaderMap) -> (Lang, bool) {
    let asked = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, _)| name == "lang")
        .find_map(|(_, code)| Lang::from_code(&code));
    if let Some(lang) = asked {
        return (lang, true);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == "lang")
        .find_map(|c| Lang::from_code(c.value()));
    if let Some(lang) = cookie {
        return (lang, false);
    }
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    // The first language named that we speak, by quality.
    let mut best: Option<(f32, Lang)> = None;
    for item in accept.split(',') {
        let mut pieces = item.split(';');
        let Some(lang) = pieces.next().and_then(Lang::from_code) else { continue };
        let q = pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    (best.map_or(Lang::Vi, |(_, l)| l), false)
}

/// The `Set-Cookie` value that remembers `lang` for a year (asked for by `?lang=`).
pub fn lang_cookie(lang: Lang) -> String {
    Cookie::build(("lang", lang.code()))
        .path("/")
        .max_age(cookie::time::Duration::seconds(31_536_000))
        .same_site(cookie::SameSite::Lax)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn lang(uri: &str, headers: &[(&str, &str)]) -> (Lang, bool) {
        let mut request = Request::builder().uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (parts, ()) = request.body(()).expect("request").into_parts();
        lang_of(&parts)
    }

    #[test]
    fn the_language_comes_from_the_query_the_cookie_then_the_browser() {
        assert_eq!(lang("/", &[]), (Lang::Vi, false));
        assert_eq!(lang("/?lang=en", &[("cookie", "lang=vi")]), (Lang::En, true));
        assert_eq!(lang("/", &[("cookie", "a=b; lang=en")]), (Lang::En, false));
        assert_eq!(lang("/?a=1&lang=xx&lang=en", &[]), (Lang::En, true));
        assert_eq!(lang("/?lang=fr", &[("cookie", "lang=fr; lang=en")]), (Lang::En, false));
        assert_eq!(lang("/", &[("accept-language", "fr-FR, en-US;q=0.8, vi;q=0.9")]), (Lang::Vi, false));
        assert_eq!(lang("/", &[("accept-language", "en-GB,en;q=0.9")]), (Lang::En, false));
    }

    #[test]
    fn the_lang_cookie_lasts_a_year_on_every_path() {
        assert_eq!(lang_cookie(Lang::En), "lang=en; SameSite=Lax; Path=/; Max-Age=31536000");
    }
}
