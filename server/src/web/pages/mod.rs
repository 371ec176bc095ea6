//! The pages: server-rendered HTML, Vietnamese by default, English on request, no JavaScript.
//! Every page is written with maud (which escapes what it writes) inside one frame, so the
//! dashboard and the account pages look and behave alike. A page is a function of plain data
//! (a [`Chrome`] for the frame and a view filled by the handler from the layers below), so the
//! snapshot tests render each one from fixture data, without a server.
//!
//! - [`layout`]: the frame (head, header with the menu and the language switch, tabs, footer).
//! - [`components`]: tables, the pager, forms that post with the CSRF token, the charts.
//! - [`district`]: the dashboard (campaigns, progress, results, review, devices, admin pages).
//! - [`accounts`]: sign-in, password change, people, enrollment codes, devices.

pub mod accounts;
pub mod components;
pub mod district;
pub mod layout;

#[cfg(test)]
mod snapshots;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::Markup;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use layout::{Chrome, Menu};

use crate::web::auth::Principal;
use crate::web::i18n;
use hamlet_sync_core::texts::Lang;

/// What a URL part keeps as it is: letters, digits and `-_.~`; everything else is `%XX`.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `text` percent-encoded for a path segment or a query value.
pub fn href(text: &str) -> String {
    utf8_percent_encode(text, URL_PART).to_string()
}

/// The frame's data for a request, and whether it asked for its language by `?lang=` (the
/// response then sets the `lang` cookie).
#[derive(Debug, Clone)]
pub struct RequestChrome {
    /// The frame.
    pub chrome: Chrome,
    /// The language was asked by `?lang=`.
    pub set_cookie: bool,
}

impl RequestChrome {
    /// A page's answer: `body` as HTML with its language, and the `lang` cookie if asked.
    pub fn html(&self, status: StatusCode, body: Markup) -> Response {
        html_response(self.chrome.lang, self.set_cookie, status, body)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestChrome {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let (lang, set_cookie) = i18n::lang_of(parts);
        let uri = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.clone(), |u| u.0.clone());
        let path = uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let (menu, csrf) = match parts.extensions.get::<Principal>() {
            Some(Principal::Staff { person, csrf }) => (
                if person.role == crate::accounts::Role::Admin { Menu::Admin } else { Menu::Staff },
                csrf.clone().unwrap_or_default(),
            ),
            Some(Principal::Device { .. }) => (Menu::None, String::new()),
            // Open mode (no accounts): everyone acts as the anonymous administrator.
            None => (
                if parts.extensions.get::<crate::audit::Actor>().is_none_or(crate::audit::Actor::is_admin) {
                    Menu::Admin
                } else {
                    Menu::Staff
                },
                String::new(),
            ),
        };
        Ok(RequestChrome { chrome: Chrome { lang, path, menu, csrf }, set_cookie })
    }
}

/// `body` as an HTML response in `lang`, with the `lang` cookie when `set_cookie`.
pub fn html_response(lang: Lang, set_cookie: bool, status: StatusCode, body: Markup) -> Response {
    let mut response = (status, body.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Language, Cookie"));
    if set_cookie && let Ok(value) = HeaderValue::from_str(&i18n::lang_cookie(lang)) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::href;

    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(href("Tốt lắm & a=b"), "T%E1%BB%91t%20l%E1%BA%AFm%20%26%20a%3Db");
        assert_eq!(href("thon-01_a.b~c"), "thon-01_a.b~c");
    }
}
