//! Authentication over HTTP: who is asking (bearer token or session cookie), role guards, CSRF
//! protection, sign-in pages, the people/device/token API, enrollment, and brute-force limits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use hamlet_sync_core::CampaignId;
use hamlet_sync_core::enrollment::EnrollmentLink;
use serde::{Deserialize, Serialize};

use super::i18n;
use super::pages::{self, Chrome, Menu, RequestChrome, html_response};
use super::proxy::TrustedProxies;
use super::{ApiError, AppState};
use crate::accounts::{AccountError, Person, Role};
use crate::audit::Coalescer;
use hamlet_sync_core::texts::Lang;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hamlet_session";
/// Largest form body the CSRF check reads.
const MAX_FORM_BYTES: usize = 1 << 20;

/// How the HTTP side of accounts is set up (from the server's flags), and its own state.
#[derive(Debug)]
pub struct Security {
    /// Whose `Forwarded` / `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Whether the session cookie is marked `Secure`.
    pub secure_cookies: bool,
    /// Where people and phones reach the server (`https://…`), if told.
    pub public_url: Option<String>,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Whether `/metrics` is served on its own address (and so not on the main one).
    pub metrics_elsewhere: bool,
    /// The certificate fingerprint enrollment codes carry, if any.
    pub enrollment_pin: crate::web::tls::EnrollmentPin,
    /// Attempts on a locked account: one audit row per account and lock window.
    pub blocked: Coalescer,
}

impl Security {
    /// Settings with nothing trusted, plain cookies and no metrics token; `window` is the
    /// failure limiter's.
    pub fn new(window: Duration) -> Self {
        Security {
            trusted_proxies: TrustedProxies::default(),
            secure_cookies: false,
            public_url: None,
            metrics_token: None,
            metrics_elsewhere: false,
            enrollment_pin: crate::web::tls::EnrollmentPin::default(),
            blocked: Coalescer::new(window),
        }
    }
}

/// Something a middleware or guard refused, to be written to the audit log by
/// [`authenticate`] (which has the state): put into a response's extensions.
#[derive(Debug, Clone)]
struct AuditNote {
    actor: String,
    action: &'static str,
    target: String,
    detail: String,
}

/// Who is asking; put into the request's extensions by [`authenticate`].
#[derive(Clone, Debug)]
pub enum Principal {
    /// A staff member, by session cookie (`csrf` is then the session's CSRF token) or API token.
    Staff {
        /// Who.
        person: Person,
        /// The session's CSRF token; `None` for bearer tokens, which browsers do not send on
        /// their own and so need no CSRF protection.
        csrf: Option<String>,
    },
    /// An enrolled device.
    Device {
        /// The device id.
        device: String,
        /// Its person.
        person: Person,
    },
}

impl Principal {
    /// The person.
    pub fn person(&self) -> &Person {
        match self {
            Principal::Staff { person, .. } | Principal::Device { person, .. } => person,
        }
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// The value of cookie `name` (the first of that name, as browsers send the most specific first).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Middleware: sets the client's address (the peer, or what a trusted proxy says, see
/// `super::proxy`) and resolves the principal from `Authorization: Bearer`, `?token=` (on
/// the sync endpoint, for browsers' WebSocket API, which cannot set headers; proxies log URLs,
/// so programs should prefer the header) or the session cookie. A token that is given but not
/// valid is refused with 401; no credentials at all leave the request anonymous for the route
/// guards to judge. Refusals that guards mark for the audit log are written here.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let address = peer.map_or_else(
        || "unknown".to_owned(),
        |peer| state.security.trusted_proxies.client(peer, request.headers()).to_string(),
    );
    request.extensions_mut().insert(ClientAddress(address.clone()));
    if request.uri().path() == "/metrics" {
        // Its bearer token is `--metrics-token`, checked by the handler, not an account's.
        return next.run(request).await;
    }
    let token = bearer(request.headers())
        .or_else(|| (request.uri().path() == "/sync").then(|| query_token(&request)).flatten());
    let principal = match token {
        Some(token) => match resolve_token(&state, &token, &address).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the token is not valid or was revoked",
                )
                .into_response();
            }
            Err(e) => return e.into_response(),
        },
        None => match cookie(request.headers(), SESSION_COOKIE) {
            Some(session) => match state.accounts.session(&session).await {
                Ok(found) => found.map(|(person, csrf)| Principal::Staff { person, csrf: Some(csrf) }),
                Err(e) => return ApiError::from(e).into_response(),
            },
            None => None,
        },
    };
    if let Some(p) = principal {
        // The district's handlers record who acted (reviews, campaign changes) from this.
        let person = p.person();
        request
            .extensions_mut()
            .insert(crate::audit::Actor { name: person.id.clone(), role: person.role.as_str().into() });
        request.extensions_mut().insert(p);
    }
    let mut response = next.run(request).await;
    if let Some(note) = response.extensions_mut().remove::<AuditNote>() {
        let detail = format!("{} (from {address})", note.detail);
        audit(&state, &note.actor, note.action, &note.target, &detail).await;
    }
    response
}

async fn resolve_token(state: &AppState, token: &str, address: &str) -> Result<Option<Principal>, ApiError> {
    let today = state.now_ms().div_euclid(86_400_000);
    if let Some((person, id, first_today)) = state.accounts.api_token_used(token, Some(today)).await? {
        if first_today {
            audit(state, &person.id, "token.use", &id, &format!("first use today, from {address}")).await;
        }
        return Ok(Some(Principal::Staff { person, csrf: None }));
    }
    Ok(state.accounts.device_by_token(token).await?.map(|(device, person)| Principal::Device { device, person }))
}

fn wants_html(request: &Request) -> bool {
    !request.uri().path().starts_with("/api/")
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|a| a.contains("text/html") || a.contains("*/*"))
}

async fn guard(request: Request, next: Next, allowed: &[Role]) -> Response {
    let html = wants_html(&request);
    let path = request.uri().path().to_owned();
    let principal = request.extensions().get::<Principal>().cloned();
    match principal {
        None if html => Redirect::to(&format!("/login?next={}", urlencode(&path))).into_response(),
        None => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in or give a bearer token").into_response()
        }
        Some(p) if !allowed.contains(&p.person().role) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {} role cannot do this", p.person().role.as_str()),
        )
        .into_response(),
        // A one-time password must be replaced before the session does anything else. (API
        // tokens, made by an admin for a program, are not sessions and are not held back.)
        Some(Principal::Staff { person, csrf: Some(_) }) if person.must_change_password && path != "/password" => {
            if html {
                Redirect::to("/password").into_response()
            } else {
                ApiError::new(StatusCode::FORBIDDEN, "password_change_required", "change your one-time password first")
                    .into_response()
            }
        }
        Some(Principal::Staff { person, csrf: Some(expected) }) if !is_safe(request.method()) => {
            let target = format!("{} {path}", request.method());
            match csrf_checked(request, &expected).await {
                Ok(request) => next.run(request).await,
                Err(mut response) => {
                    if response.status() == StatusCode::FORBIDDEN {
                        response.extensions_mut().insert(AuditNote {
                            actor: person.id.clone(),
                            action: "csrf.refused",
                            target,
                            detail: "missing or wrong CSRF token".into(),
                        });
                    }
                    response
                }
            }
        }
        Some(_) => next.run(request).await,
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Lets an unsafe request of a cookie session through only with the session's CSRF token, in
/// the `X-CSRF-Token` header or a `csrf` form field.
async fn csrf_checked(request: Request, expected: &str) -> Result<Request, Response> {
    let refused =
        || ApiError::new(StatusCode::FORBIDDEN, "csrf", "missing or wrong CSRF token; reload the page").into_response();
    if let Some(given) = request.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return if given == expected { Ok(request) } else { Err(refused()) };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the form is too large").into_response()
    })?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    if fields.iter().any(|(k, v)| k == "csrf" && v == expected) {
        Ok(Request::from_parts(parts, Body::from(bytes)))
    } else {
        Err(refused())
    }
}

/// Guard: admins only.
pub async fn require_admin(request: Request, next: Next) -> Response {
    guard(request, next, &[Role::Admin]).await
}

/// Guard: staff (admins and viewers).
pub async fn require_staff(request: Request, next: Next) -> Response {
    guard(request, next, &[Role::Admin, Role::Viewer]).await
}

/// Guard: enrolled devices (collectors and relays).
pub async fn require_device(request: Request, next: Next) -> Response {
    guard(request, next, &[Role::Collector, Role::Relay]).await
}

/// Guard: anyone signed in.
pub async fn require_signed_in(request: Request, next: Next) -> Response {
    guard(request, next, &[Role::Admin, Role::Viewer, Role::Collector, Role::Relay]).await
}

fn client_address(request: &Request) -> String {
    match request.extensions().get::<ClientAddress>() {
        Some(a) => a.0.clone(),
        None => request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string()),
    }
}

/// The client's IP address, as text ("unknown" when the server was not given it): set by
/// [`authenticate`], which believes forwarding headers only from trusted proxies.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(known) = parts.extensions.get::<ClientAddress>() {
            return Ok(known.clone());
        }
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string()),
        ))
    }
}

/// Middleware (a tower layer on the sign-in and enrollment routes): an address that failed too
/// often in the window gets 429 with `Retry-After`; failures are counted from the responses.
pub async fn limit_failures_by_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let key = format!("address:{}", client_address(&request));
    if let Err(wait) = state.limiter.check(&key, Instant::now()) {
        if request.uri().path() == "/login" {
            // The sign-in form answers in words, in the page's language.
            let (lang, _) = i18n::lang_of_request(request.uri().query(), request.headers());
            let chrome = login_chrome(lang);
            let page = pages::accounts::login(&chrome, "/", Some(lang.texts().too_many_attempts));
            let mut response = html_response(lang, false, StatusCode::TOO_MANY_REQUESTS, page);
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
        return ApiError::too_many(wait).into_response();
    }
    let response = next.run(request).await;
    if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::GONE | StatusCode::BAD_REQUEST) {
        state.limiter.fail(&key, Instant::now());
    }
    response
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn session_cookie(state: &AppState, token: &str, max_age: Duration) -> HeaderValue {
    let max_age = cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
    let cookie = Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(max_age)
        .secure(state.security.secure_cookies);
    HeaderValue::from_str(&cookie.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("hamlet_session=; Max-Age=0"))
}

pub(crate) async fn audit(state: &AppState, actor: &str, action: &str, target: &str, detail: &str) {
    if let Err(e) = state.accounts.audit(actor, action, target, detail).await {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
}

/// Debug output of forms that hold secrets names the type and nothing else.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), " { .. }"))
            }
        }
    )*};
}
redacted_debug!(LoginForm, SessionRequest, PasswordForm);

// ----- Sign-in -------------------------------------------------------------------------------

/// Query of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The frame of the sign-in page: no menu (nobody is signed in yet).
fn login_chrome(lang: Lang) -> Chrome {
    Chrome { lang, path: "/login".into(), menu: Menu::None, csrf: String::new() }
}

/// `GET /login`.
pub async fn login_form(request: RequestChrome, Query(q): Query<LoginQuery>) -> Response {
    let chrome = Chrome { menu: Menu::None, csrf: String::new(), ..request.chrome.clone() };
    request.html(StatusCode::OK, pages::accounts::login(&chrome, q.next.as_deref().unwrap_or("/"), None))
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
    lang: Option<String>,
}

/// Where to go after signing in: only paths on this server. A path must start with a single
/// `/` followed by something other than `/` or `\`, once percent-decoded too, and hold no
/// control character nor backslash: browsers drop tabs and newlines from URLs and read `\` as
/// `/`, so `/\t/evil.example` would leave the server.
fn safe_next(next: Option<&str>) -> String {
    let fallback = || "/".to_owned();
    let Some(next) = next else { return fallback() };
    let decoded = percent_decode(next);
    let ok = |p: &str| {
        let mut chars = p.chars();
        chars.next() == Some('/')
            && !matches!(chars.next(), Some('/' | '\\'))
            && !p.chars().any(|c| c.is_control() || c == '\\')
    };
    if next.len() <= 2048 && ok(next) && ok(&decoded) { next.to_owned() } else { fallback() }
}

/// `%XX` sequences decoded (as bytes, read back as UTF-8 lossily); anything else kept.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

async fn sign_in(
    state: &AppState,
    address: &str,
    name: &str,
    password: &str,
) -> Result<(Person, String, String), ApiError> {
    // Refused before any hashing, any limiter entry and any audit row.
    crate::accounts::check_credentials_size(name, password)?;
    let account_key = format!("account:{}", name.to_lowercase());
    let now = Instant::now();
    if let Err(wait) = state.limiter.check(&account_key, now) {
        // One row per account and lock window, with a count: guessing on cannot flood the log.
        let detail = format!("locked after repeated failures; first from {address}");
        if let Err(e) = state
            .security
            .blocked
            .record(state.store(), &account_key, now, name, "sign-in.blocked", name, &detail)
            .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        return Err(ApiError::too_many(wait));
    }
    match state.accounts.sign_in(name, password).await {
        Ok(signed) => {
            audit(state, name, "sign-in", name, &format!("from {address}")).await;
            Ok(signed)
        }
        Err(AccountError::BadCredentials) => {
            state.limiter.fail(&account_key, Instant::now());
            audit(state, name, "sign-in.failed", name, &format!("from {address}")).await;
            Err(AccountError::BadCredentials.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang =
        form.lang.as_deref().and_then(Lang::from_code).unwrap_or_else(|| i18n::lang_of_request(None, &headers).0);
    let next = safe_next(form.next.as_deref());
    match sign_in(&state, &address, form.name.trim(), &form.password).await {
        Ok((person, token, _)) => {
            let target = if person.must_change_password { "/password".to_owned() } else { next };
            let mut response = Redirect::to(&target).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&state, &token, state.accounts.session_ttl()));
            response
        }
        Err(e) => {
            let texts = lang.texts();
            let message = match e.code() {
                "bad_credentials" => texts.bad_credentials,
                "too_many_attempts" => texts.too_many_attempts,
                _ => texts.sign_in_failed,
            };
            let page = pages::accounts::login(&login_chrome(lang), &next, Some(message));
            let mut response = html_response(lang, false, e.status(), page);
            if let Some(wait) = e.retry_after()
                && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }
}

/// JSON sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SessionRequest {
    /// The account name.
    name: String,
    /// Its password.
    password: String,
}

/// A session begun by [`api_session`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionBegun {
    /// Who signed in.
    pub person: Person,
    /// The token to send back in `X-CSRF-Token` with every write made with the session cookie.
    pub csrf: String,
}

/// `POST /api/session`: signs in for scripts and tests; answers the CSRF token to send back in
/// `X-CSRF-Token`, and sets the session cookie.
#[utoipa::path(post, path = "/api/session", tag = "accounts", summary = "Signs in with a name and password (for scripts): sets the session cookie and answers the CSRF token.", request_body = SessionRequest, responses((status = 200, body = SessionBegun), super::api::district::Failed))]
pub async fn api_session(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    super::error::JsonBody(body): super::error::JsonBody<SessionRequest>,
) -> Result<Response, ApiError> {
    let (person, token, csrf) = sign_in(&state, &address, body.name.trim(), &body.password).await?;
    let mut response = Json(SessionBegun { person, csrf }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &token, state.accounts.session_ttl()));
    Ok(response)
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some((person, _))) = state.accounts.session(&token).await {
            audit(&state, &person.id, "sign-out", &person.id, "").await;
        }
        if let Err(e) = state.accounts.sign_out(&token).await {
            return ApiError::from(e).into_response();
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, "", Duration::ZERO));
    response
}

fn staff(principal: Option<axum::Extension<Principal>>) -> Option<(Person, String)> {
    match principal.map(|p| p.0) {
        Some(Principal::Staff { person, csrf }) => Some((person, csrf.unwrap_or_default())),
        _ => None,
    }
}

/// `GET /password`.
pub async fn password_form(chrome: RequestChrome, principal: Option<axum::Extension<Principal>>) -> Response {
    match staff(principal) {
        Some((person, _)) => {
            chrome.html(StatusCode::OK, pages::accounts::password(&chrome.chrome, person.must_change_password, None))
        }
        None => Redirect::to("/login?next=/password").into_response(),
    }
}

/// The password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

/// `POST /password`: limited like sign-in (the account's and the address's failures count
/// together with sign-in's); a wrong current password is audited; on success every other
/// session of the person ends.
pub async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    chrome: RequestChrome,
    ClientAddress(address): ClientAddress,
    principal: Option<axum::Extension<Principal>>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let texts = chrome.chrome.t();
    let Some((person, _)) = staff(principal) else { return Redirect::to("/login").into_response() };
    let fail = |status: StatusCode, message: &str| {
        chrome.html(status, pages::accounts::password(&chrome.chrome, person.must_change_password, Some(message)))
    };
    let keys = [format!("account:{}", person.id.to_lowercase()), format!("address:{address}")];
    let now = Instant::now();
    if let Some(wait) = keys.iter().find_map(|k| state.limiter.check(k, now).err()) {
        let mut response = fail(StatusCode::TOO_MANY_REQUESTS, texts.too_many_attempts);
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    if form.new != form.confirm {
        return fail(StatusCode::BAD_REQUEST, texts.passwords_differ);
    }
    let this_session = cookie(&headers, SESSION_COOKIE);
    match state.accounts.change_password(&person.id, &form.current, &form.new, this_session.as_deref()).await {
        Ok(ended) => {
            let detail = format!("{ended} other sessions ended");
            audit(&state, &person.id, "password.change", &person.id, &detail).await;
            Redirect::to("/").into_response()
        }
        Err(AccountError::BadCredentials) => {
            for key in &keys {
                state.limiter.fail(key, Instant::now());
            }
            audit(
                &state,
                &person.id,
                "password.failed",
                &person.id,
                &format!("wrong current password, from {address}"),
            )
            .await;
            fail(StatusCode::UNAUTHORIZED, texts.current_password_wrong)
        }
        Err(AccountError::Invalid(m)) => fail(StatusCode::BAD_REQUEST, &m),
        Err(e) => ApiError::from(e).into_response(),
    }
}

// ----- People, devices, tokens (admins) ------------------------------------------------------

fn actor_name(principal: &Principal) -> String {
    principal.person().id.clone()
}

/// A new enrollment code.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedCode {
    /// The code, to type or scan.
    pub code: String,
    /// Expiry, unix milliseconds.
    pub expires_at: i64,
    /// What the QR code holds: with `--public-url`, a link into the web collector that carries
    /// the server and the code (`<public url>/collect/#enroll=<code>`); without, the code alone.
    /// Either ends with `&pin=<SHA-256>` when phones must pin the server's certificate.
    pub link: String,
    /// The QR code of `link` (SVG).
    pub qr_svg: String,
}

pub(crate) async fn issue_code(
    state: &AppState,
    principal: &Principal,
    person: &str,
    ttl_hours: Option<u64>,
) -> Result<IssuedCode, ApiError> {
    let ttl = ttl_hours.map_or(state.enrollment_ttl, |h| Duration::from_secs(h.clamp(1, 24 * 14) * 3600));
    let (code, expires_at) = state.accounts.issue_code(person, ttl).await?;
    audit(state, &actor_name(principal), "enrollment-code.issue", person, "").await;
    let pin = state.security.enrollment_pin.current();
    let link = EnrollmentLink::new(state.security.public_url.as_deref(), &code).with_pin(pin).to_string();
    Ok(IssuedCode { qr_svg: qr_svg(&link), link, code, expires_at })
}

/// The QR code of `text`, as SVG.
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build(),
        Err(_) => String::new(),
    }
}

pub(crate) async fn revoke(state: &AppState, principal: &Principal, device: &str) -> Result<(), ApiError> {
    if !state.accounts.revoke_device(device).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no enrolled device {device}")));
    }
    state.hub.close_device(device);
    audit(state, &actor_name(principal), "device.revoke", device, "").await;
    Ok(())
}

pub(crate) async fn sign_out_everywhere(
    state: &AppState,
    principal: &Principal,
    person: &str,
) -> Result<(u64, u64), ApiError> {
    let (sessions, tokens) = state.accounts.end_everything(person).await?;
    let detail = format!("{sessions} sessions ended, {tokens} API tokens revoked");
    audit(state, &actor_name(principal), "person.sign-out-everywhere", person, &detail).await;
    Ok((sessions, tokens))
}

/// `POST /admin/people/{id}/sign-out-everywhere` (the button of the people page).
pub async fn sign_out_everywhere_form(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(person): Path<String>,
) -> Result<Redirect, ApiError> {
    sign_out_everywhere(&state, &principal, &person).await?;
    Ok(Redirect::to("/admin/people"))
}

// ----- Admin pages ---------------------------------------------------------------------------

/// `GET /admin/people`: people and their hamlets, a form to add a person, and buttons that
/// issue enrollment codes.
pub async fn people_page(State(state): State<AppState>, chrome: RequestChrome) -> Result<Response, ApiError> {
    people_page_with(&state, &chrome, StatusCode::OK, None).await
}

/// The people page, with `error` above it (a refused form) and that status.
async fn people_page_with(
    state: &AppState,
    chrome: &RequestChrome,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, ApiError> {
    let mut rows = Vec::new();
    for person in state.accounts.people().await? {
        let assignments =
            state.accounts.assignments(&person.id).await?.into_iter().map(|(c, h)| format!("{c}/{h}")).collect();
        rows.push(pages::accounts::PersonRow { person, assignments });
    }
    Ok(chrome.html(status, pages::accounts::people(&chrome.chrome, &rows, error)))
}

/// Checks an assignment before anything is written: `hamlets` must be hamlets of `campaign`'s
/// scope, and a campaign that exists must be named with them (no assignment at all is fine).
/// A typo, a retired hamlet or a blank campaign would otherwise be accepted, and the collector
/// would learn of it only when recording fails in the field.
pub(crate) async fn check_assignment(
    state: &AppState,
    lang: Lang,
    campaign: &str,
    hamlets: &[String],
) -> Result<(), ApiError> {
    let refuse = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_assignment", message);
    if campaign.is_empty() {
        return if hamlets.is_empty() { Ok(()) } else { Err(refuse(lang.texts().hamlets_need_campaign.to_owned())) };
    }
    let found = match state.district.catalog().require(campaign).await {
        Ok(found) => found,
        Err(crate::district::DistrictError::NotFound(_)) => return Err(refuse(lang.no_such_campaign(campaign))),
        Err(e) => return Err(e.into()),
    };
    let known: Vec<&str> = found.hamlets.iter().map(|h| h.hamlet.as_str()).collect();
    let unknown: Vec<&str> = hamlets.iter().map(String::as_str).filter(|h| !known.contains(h)).collect();
    if unknown.is_empty() { Ok(()) } else { Err(refuse(lang.not_campaign_hamlets(&unknown, campaign, &known))) }
}

/// The form that adds a person.
#[derive(Debug, Deserialize)]
pub struct PersonForm {
    id: String,
    display_name: String,
    role: String,
    #[serde(default)]
    campaign: String,
    #[serde(default)]
    hamlets: String,
}

/// `POST /admin/people`: adds a person (and their hamlets); a staff member's one-time password
/// is shown once.
///
/// A refused form answers the people page again with the reason, having created nobody.
pub async fn create_person_form(
    State(state): State<AppState>,
    chrome: RequestChrome,
    axum::Extension(principal): axum::Extension<Principal>,
    Form(form): Form<PersonForm>,
) -> Result<Response, ApiError> {
    match create_person(&state, &chrome, &principal, &form).await {
        Ok(response) => Ok(response),
        Err(e) if e.status().is_client_error() => {
            people_page_with(&state, &chrome, e.status(), Some(e.message())).await
        }
        Err(e) => Err(e),
    }
}

async fn create_person(
    state: &AppState,
    chrome: &RequestChrome,
    principal: &Principal,
    form: &PersonForm,
) -> Result<Response, ApiError> {
    let state = state.clone();
    let role =
        Role::parse(&form.role).ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid", "unknown role"))?;
    let hamlets: Vec<String> =
        form.hamlets.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_owned).collect();
    // Check the assignment before creating anyone, so a typo does not leave a person half made.
    let invalid = |e: hamlet_sync_core::ids::IdError| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string());
    if !form.campaign.trim().is_empty() {
        CampaignId::new(form.campaign.trim()).map_err(invalid)?;
    }
    for hamlet in &hamlets {
        hamlet_sync_core::UnitId::new(hamlet.as_str()).map_err(invalid)?;
    }
    if !role.is_staff() {
        check_assignment(&state, chrome.chrome.lang, form.campaign.trim(), &hamlets).await?;
    }
    let password = state.accounts.create_person(form.id.trim(), &form.display_name, role).await?;
    audit(&state, &actor_name(principal), "person.create", form.id.trim(), role.as_str()).await;
    if !role.is_staff() && !form.campaign.trim().is_empty() && !hamlets.is_empty() {
        state.accounts.set_assignments(form.id.trim(), form.campaign.trim(), &hamlets).await?;
        let detail = format!("{}: {}", form.campaign.trim(), hamlets.join(", "));
        audit(&state, &actor_name(principal), "assignments.set", form.id.trim(), &detail).await;
    }
    Ok(match password {
        Some(password) => {
            chrome.html(StatusCode::OK, pages::accounts::one_time_password(&chrome.chrome, form.id.trim(), &password))
        }
        None => Redirect::to("/admin/people").into_response(),
    })
}

/// `POST /admin/people/{id}/enroll`: shows a new one-time code as text and QR code.
pub async fn enroll_page(
    State(state): State<AppState>,
    chrome: RequestChrome,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(person): Path<String>,
) -> Result<Response, ApiError> {
    let issued = issue_code(&state, &principal, &person, None).await?;
    let view = pages::accounts::Enrollment {
        person,
        code: issued.code,
        link: issued.link,
        qr_svg: issued.qr_svg,
        expires_at: issued.expires_at,
    };
    Ok(chrome.html(StatusCode::OK, pages::accounts::enrollment(&chrome.chrome, &view)))
}

/// `GET /admin/devices`: devices, when each last synced, and a revoke button.
pub async fn devices_page(State(state): State<AppState>, chrome: RequestChrome) -> Result<Response, ApiError> {
    let devices = state.accounts.devices().await?;
    Ok(chrome.html(StatusCode::OK, pages::accounts::devices(&chrome.chrome, &devices, None)))
}

/// `POST /admin/devices/{id}/revoke` (the form of the devices page).
/// It cannot be undone: without its box ticked the page comes back saying so, and nothing
/// changes.
pub async fn revoke_device_form(
    State(state): State<AppState>,
    chrome: RequestChrome,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(device): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !pages::components::confirmed(&body) {
        let devices = state.accounts.devices().await?;
        let page = pages::accounts::devices(&chrome.chrome, &devices, Some(chrome.chrome.t().confirm_required));
        return Ok(chrome.html(StatusCode::BAD_REQUEST, page));
    }
    revoke(&state, &principal, &device).await?;
    Ok(Redirect::to("/admin/devices").into_response())
}
