//! The staff side hardened: sessions, sign-in limits and audit, client addresses behind
//! proxies, safe redirects, device tokens, and safe defaults — one regression test per item,
//! against a real server on SQLite and (when `HAMLET_TEST_DATABASE_URL` is set) PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use client::{Client, Reply, Running, request_from, secure_config, start};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::app::Server;
use hamlet_server::store::{PoolRef, Store};
use hamlet_sync_core::enrollment::EnrollmentLink;
use hamlet_sync_core::fixtures;

const ADMIN_PASSWORD: &str = "quản trị viên 2025";
const VIEWER_PASSWORD: &str = "người xem 2025";

/// A server with an admin and a viewer who know their passwords.
struct World {
    server: Running,
    url: String,
}

impl World {
    async fn new(url: &str, extra: &[&str]) -> World {
        let store = Store::open(url).await.unwrap();
        let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
        accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
        accounts.set_password("admin", ADMIN_PASSWORD, false).await.unwrap();
        accounts.create_person("viewer", "Tổ công tác", Role::Viewer).await.unwrap();
        accounts.set_password("viewer", VIEWER_PASSWORD, false).await.unwrap();
        accounts.create_person("c1", "Thu thập", Role::Collector).await.unwrap();
        store.close().await;
        World { server: start(secure_config(url, extra)).await, url: url.to_owned() }
    }

    /// Signs in: (cookie header value, CSRF token).
    async fn session(&self, name: &str, password: &str) -> (String, String) {
        let body = serde_json::json!({ "name": name, "password": password }).to_string();
        let reply = self.server.request("POST", "/api/session", &[], Some(&body)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let cookie = format!("hamlet_session={}", reply.cookie("hamlet_session").expect("session cookie"));
        (cookie, reply.json()["csrf"].as_str().unwrap().to_owned())
    }

    /// An API token for `person`, made by the admin.
    async fn token(&self, person: &str) -> String {
        let (cookie, csrf) = self.session("admin", ADMIN_PASSWORD).await;
        let body = format!(r#"{{"person":"{person}","label":"tests"}}"#);
        let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        let reply = self.server.request("POST", "/api/tokens", &headers, Some(&body)).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.json()["token"].as_str().unwrap().to_owned()
    }

    async fn get_as(&self, bearer: &str, path: &str) -> Reply {
        let auth = format!("Bearer {bearer}");
        self.server.request("GET", path, &[("Authorization", &auth)], None).await
    }

    async fn post_as(&self, bearer: &str, path: &str, body: &str) -> Reply {
        let auth = format!("Bearer {bearer}");
        self.server.request("POST", path, &[("Authorization", &auth)], Some(body)).await
    }

    async fn me(&self, cookie: &str) -> u16 {
        self.server.request("GET", "/api/me", &[("Cookie", cookie)], None).await.status
    }

    /// (action, target, detail) of every audit entry, oldest first.
    async fn audit(&self) -> Vec<(String, String, String)> {
        audit_of(&self.url).await
    }

    async fn count(&self, action: &str) -> usize {
        self.audit().await.iter().filter(|(a, _, _)| a == action).count()
    }
}

async fn audit_of(url: &str) -> Vec<(String, String, String)> {
    const SQL: &str = "SELECT action, target, detail FROM audit_log ORDER BY id";
    let store = Store::open(url).await.unwrap();
    let rows = match store.pool() {
        PoolRef::Sqlite(p) => sqlx::query_as(SQL).fetch_all(p).await,
        PoolRef::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await,
    }
    .unwrap();
    store.close().await;
    rows
}

fn form_headers(cookie: &str) -> [(&str, &str); 2] {
    [("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded")]
}

fn password_form(csrf: &str, current: &str, new: &str) -> String {
    serde_urlencoded::to_string([("csrf", csrf), ("current", current), ("new", new), ("confirm", new)]).unwrap()
}

#[tokio::test]
async fn changing_a_password_ends_the_other_sessions() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let (here, csrf) = world.session("viewer", VIEWER_PASSWORD).await;
        let (elsewhere, _) = world.session("viewer", VIEWER_PASSWORD).await;
        assert_eq!(world.me(&elsewhere).await, 200);
        let body = password_form(&csrf, VIEWER_PASSWORD, "một mật khẩu mới dài");
        let reply = world.server.request("POST", "/password", &form_headers(&here), Some(&body)).await;
        assert_eq!(reply.status, 303, "{}: {reply:?}", db.name);
        assert_eq!(world.me(&elsewhere).await, 401, "{}: the other session ended", db.name);
        assert_eq!(world.me(&here).await, 200, "{}: the session that changed it goes on", db.name);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn an_admin_ends_every_session_and_token_of_a_person() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let admin = world.token("admin").await;
        let viewer_token = world.token("viewer").await;
        let (viewer_session, _) = world.session("viewer", VIEWER_PASSWORD).await;
        assert_eq!(world.get_as(&viewer_token, "/api/me").await.status, 200);
        let reply = world.post_as(&admin, "/api/people/viewer/sign-out-everywhere", "").await;
        assert_eq!(reply.status, 200, "{}: {reply:?}", db.name);
        assert_eq!(reply.json()["sessions_ended"], 1, "{}: {}", db.name, reply.body);
        assert_eq!(reply.json()["tokens_revoked"], 1, "{}: {}", db.name, reply.body);
        assert_eq!(world.me(&viewer_session).await, 401, "{}", db.name);
        assert_eq!(world.get_as(&viewer_token, "/api/me").await.status, 401, "{}", db.name);
        assert_eq!(world.get_as(&admin, "/api/me").await.status, 200, "{}: others are untouched", db.name);
        let audit = world.audit().await;
        assert!(
            audit.iter().any(|(a, t, _)| a == "person.sign-out-everywhere" && t == "viewer"),
            "{}: {audit:?}",
            db.name
        );
        // Viewers cannot do it.
        let (cookie, csrf) = world.session("viewer", VIEWER_PASSWORD).await;
        let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        let reply = world.server.request("POST", "/api/people/admin/sign-out-everywhere", &headers, Some("")).await;
        assert_eq!(reply.status, 403, "{}", db.name);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn password_changes_are_limited_and_wrong_current_passwords_audited() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let (cookie, csrf) = world.session("viewer", VIEWER_PASSWORD).await;
        for i in 0..10 {
            let body = password_form(&csrf, &format!("guess number {i}"), "một mật khẩu mới dài");
            let reply = world.server.request("POST", "/password", &form_headers(&cookie), Some(&body)).await;
            assert_eq!(reply.status, 401, "{}: guess {i}", db.name);
        }
        let body = password_form(&csrf, VIEWER_PASSWORD, "một mật khẩu mới dài");
        let reply = world.server.request("POST", "/password", &form_headers(&cookie), Some(&body)).await;
        assert_eq!(reply.status, 429, "{}: even the right password waits", db.name);
        assert!(reply.header("retry-after").is_some());
        assert_eq!(world.count("password.failed").await, 10, "{}", db.name);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn a_locked_account_writes_one_audit_row_per_lock_window() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let guess = r#"{"name":"admin","password":"a wrong guess"}"#;
        let addr = world.server.addr;
        for _ in 0..10 {
            assert_eq!(request_from([127, 0, 0, 2].into(), addr, "POST", "/api/session", &[], guess).await, 401);
        }
        // From other addresses (not limited themselves), the account stays locked.
        for i in 0..30u8 {
            let status = request_from([127, 0, 1, i + 1].into(), addr, "POST", "/api/session", &[], guess).await;
            assert_eq!(status, 429, "{}: attempt {i}", db.name);
        }
        let audit = world.audit().await;
        let blocked: Vec<_> = audit.iter().filter(|(a, _, _)| a == "sign-in.blocked").collect();
        assert_eq!(blocked.len(), 1, "{}: {blocked:?}", db.name);
        assert!(blocked[0].2.contains("30 times"), "{}: the count is kept: {blocked:?}", db.name);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn over_long_input_is_refused_before_hashing_and_audit_entries_are_bounded() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &[]).await;
    let long_name = serde_json::json!({ "name": "a".repeat(10_000), "password": "x" }).to_string();
    let reply = world.server.request("POST", "/api/session", &[], Some(&long_name)).await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (400, Some("invalid")), "{reply:?}");
    let long_password = serde_json::json!({ "name": "admin", "password": "p".repeat(100_000) }).to_string();
    let started = Instant::now();
    let reply = world.server.request("POST", "/api/session", &[], Some(&long_password)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Whatever a client sends, an audit entry stays small.
    let enroll = serde_json::json!({ "code": "X".repeat(5000), "actor_ids": ["z".repeat(100_000)] }).to_string();
    let reply = world.server.request("POST", "/api/enroll", &[], Some(&enroll)).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let audit = world.audit().await;
    assert!(audit.iter().any(|(a, _, _)| a == "enroll.failed"), "{audit:?}");
    for (action, target, detail) in &audit {
        assert!(target.chars().count() <= 256 && detail.chars().count() <= 1024, "{action}: {} bytes", detail.len());
    }
    world.server.stop().await;
}

#[tokio::test]
async fn the_client_address_is_believed_from_trusted_proxies_only() {
    let dbs = support::databases().await;
    let guess = |i: usize| format!(r#"{{"name":"nobody-{i}","password":"a wrong guess"}}"#);
    // Behind a trusted proxy, each forwarded client has its own limit and is named in the log.
    let world = World::new(dbs[0].url(), &["--trusted-proxy", "127.0.0.1,10.0.0.0/8"]).await;
    let addr = world.server.addr;
    let local: IpAddr = [127, 0, 0, 1].into();
    let from = |client: &'static str| [("X-Forwarded-For", client)];
    for i in 0..10 {
        let status = request_from(local, addr, "POST", "/api/session", &from("203.0.113.5"), &guess(i)).await;
        assert_eq!(status, 401);
    }
    assert_eq!(request_from(local, addr, "POST", "/api/session", &from("203.0.113.5"), &guess(10)).await, 429);
    assert_eq!(request_from(local, addr, "POST", "/api/session", &from("203.0.113.6"), &guess(11)).await, 401);
    let audit = world.audit().await;
    assert!(audit.iter().any(|(a, _, d)| a == "sign-in.failed" && d.contains("203.0.113.5")), "{audit:?}");
    world.server.stop().await;

    // By default nothing is believed: the header changes nothing.
    let fresh = support::databases().await;
    let world = World::new(fresh[0].url(), &[]).await;
    let addr = world.server.addr;
    for i in 0..10 {
        let status = request_from(local, addr, "POST", "/api/session", &from("203.0.113.5"), &guess(i)).await;
        assert_eq!(status, 401);
    }
    assert_eq!(request_from(local, addr, "POST", "/api/session", &from("203.0.113.6"), &guess(11)).await, 429);
    let audit = world.audit().await;
    assert!(!audit.iter().any(|(_, _, d)| d.contains("203.0.113")), "{audit:?}");
    world.server.stop().await;
}

#[tokio::test]
async fn sign_in_redirects_only_to_paths_on_this_server() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &[]).await;
    let cases = [
        ("/campaigns/tin-nhiem-2025?lang=en", "/campaigns/tin-nhiem-2025?lang=en"),
        ("/", "/"),
        ("/\t/evil.example", "/"),
        ("/%09/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("//evil.example", "/"),
        ("/%2F/evil.example", "/"),
        ("/%2f%2fevil.example", "/"),
        ("/\\evil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("https://evil.example/", "/"),
        ("evil.example", "/"),
    ];
    for (next, expected) in cases {
        let body =
            serde_urlencoded::to_string([("name", "admin"), ("password", ADMIN_PASSWORD), ("next", next)]).unwrap();
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let reply = world.server.request("POST", "/login", &headers, Some(&body)).await;
        assert_eq!(reply.status, 303, "{next:?}");
        assert_eq!(reply.header("location"), Some(expected), "next={next:?}");
    }
    world.server.stop().await;
}

#[test]
fn csv_cells_a_spreadsheet_would_run_are_guarded() {
    use hamlet_server::district::csv::field;
    for risky in [
        "=1+1",
        "+1+cmd",
        "@SUM(A1)",
        "-1+2",
        "\t=1",
        "\r=1",
        "\n=1",
        "\tabc",
        "  =1+1",
        " +1+1",
        "＝1+1",
        "＋1",
        "－1",
        "＠SUM(A1)",
        " ＝1",
    ] {
        let written = field(risky);
        let unquoted = written.strip_prefix('"').unwrap_or(&written);
        assert!(unquoted.starts_with('\''), "{risky:?} written as {written:?}");
    }
    // Plain numbers are numbers to a spreadsheet too, and stay as they are.
    for plain in ["-3", "+1", "2.5", "Tốt lắm", "a=b", "x - y"] {
        assert_eq!(field(plain), plain, "{plain:?} is left alone");
    }
}

#[tokio::test]
async fn out_of_range_query_numbers_answer_400() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &[]).await;
    let admin = world.token("admin").await;
    for path in [
        "/admin/units?page=18446744073709551615",
        "/admin/units?page=99999999999999999999999",
        "/admin/units?page=-1",
        "/admin/units?page=many",
        "/api/audit?limit=100000",
        "/api/audit?limit=0",
        "/api/audit?limit=99999999999999999999999",
        "/api/audit?before=-1",
    ] {
        let reply = world.get_as(&admin, path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
    }
    assert_eq!(world.get_as(&admin, "/admin/units?page=1").await.status, 200);
    assert_eq!(world.get_as(&admin, "/api/audit?limit=500").await.status, 200);
    world.server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_public_and_the_data_is_not() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &[]).await;
    let reply = world.server.request("GET", "/api/openapi.json", &[], None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["openapi"], "3.1.0");
    assert_eq!(world.server.request("GET", "/api/campaigns", &[], None).await.status, 401);
    world.server.stop().await;
}

#[tokio::test]
async fn the_demo_is_refused_off_loopback_unless_public() {
    let dbs = support::databases().await;
    let refused = Server::open(secure_config(dbs[0].url(), &["--demo", "--listen", "0.0.0.0:0"])).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("--demo-public"), "{message:?}");
    let allowed =
        Server::open(secure_config(dbs[0].url(), &["--demo", "--demo-public", "--listen", "0.0.0.0:0"])).await;
    assert!(allowed.is_ok());
    drop(allowed);
    assert!(Server::open(secure_config(dbs[0].url(), &["--demo"])).await.is_ok(), "loopback is fine");
}

#[tokio::test]
async fn an_https_public_url_makes_cookies_secure() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &["--public-url", "https://hamlet.example.vn/"]).await;
    let body = serde_json::json!({ "name": "admin", "password": ADMIN_PASSWORD }).to_string();
    let reply = world.server.request("POST", "/api/session", &[], Some(&body)).await;
    let cookie = reply.header("set-cookie").unwrap_or_default();
    assert!(cookie.contains("; Secure"), "{cookie}");
    world.server.stop().await;
    let fresh = support::databases().await;
    let world = World::new(fresh[0].url(), &[]).await;
    let reply = world.server.request("POST", "/api/session", &[], Some(&body)).await;
    assert!(!reply.header("set-cookie").unwrap_or_default().contains("Secure"), "plain HTTP on loopback");
    world.server.stop().await;
}

#[tokio::test]
async fn enrollment_qr_codes_carry_the_public_url() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &["--public-url", "https://hamlet.example.vn/"]).await;
    let admin = world.token("admin").await;
    let issued = world.post_as(&admin, "/api/people/c1/enrollment-codes", "{}").await.json();
    let code = issued["code"].as_str().unwrap();
    let link = format!("https://hamlet.example.vn/collect/#enroll={code}");
    assert_eq!(issued["link"].as_str(), Some(link.as_str()), "{issued}");
    assert_eq!(
        issued["qr_svg"].as_str(),
        Some(hamlet_server::web::auth::qr_svg(&link).as_str()),
        "the QR code draws the link"
    );
    let read = EnrollmentLink::parse(&link).unwrap();
    assert_eq!((read.server.as_deref(), read.code.as_str()), (Some("https://hamlet.example.vn"), code));
    world.server.stop().await;
    // Without a public URL the server does not know how phones reach it: the QR code holds the code.
    let fresh = support::databases().await;
    let world = World::new(fresh[0].url(), &[]).await;
    let admin = world.token("admin").await;
    let issued = world.post_as(&admin, "/api/people/c1/enrollment-codes", "{}").await.json();
    assert_eq!(issued["link"], issued["code"], "{issued}");
    assert_eq!(
        issued["qr_svg"].as_str(),
        Some(hamlet_server::web::auth::qr_svg(issued["code"].as_str().unwrap()).as_str())
    );
    world.server.stop().await;
}

#[tokio::test]
async fn metrics_can_need_a_token_or_live_on_their_own_address() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &["--metrics-token", "metrics-secret-1"]).await;
    assert_eq!(world.server.request("GET", "/metrics", &[], None).await.status, 401);
    assert_eq!(world.get_as("wrong", "/metrics").await.status, 401);
    let reply = world.get_as("metrics-secret-1", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("hamlet_"), "{}", reply.body);
    world.server.stop().await;

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap();
    drop(free);
    let fresh = support::databases().await;
    let world = World::new(fresh[0].url(), &["--metrics-listen", &metrics_addr.to_string()]).await;
    assert_eq!(world.server.request("GET", "/metrics", &[], None).await.status, 404);
    // The metrics listener binds inside the server's task, after it started serving the main
    // address, and says so to no one: poll it, with a deadline (1 s).
    let mut reply = client::http(metrics_addr, "GET", "/metrics", &[], None).await;
    for _ in 0..50 {
        if reply.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        reply = client::http(metrics_addr, "GET", "/metrics", &[], None).await;
    }
    assert_eq!(reply.status, 200);
    world.server.stop().await;
}

/// Enrolls a device for c1: its token.
async fn enroll(world: &World) -> String {
    let admin = world.token("admin").await;
    let code = world.post_as(&admin, "/api/people/c1/enrollment-codes", "{}").await.json();
    let body = serde_json::json!({ "code": code["code"], "actor_ids": ["ab01"], "device_name": "phone" }).to_string();
    let reply = world.server.request("POST", "/api/enroll", &[], Some(&body)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_device_sends_its_token_in_the_header_and_rotates_it_without_reenrolling() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let old = enroll(&world).await;
        let auth = format!("Bearer {old}");
        let socket = Client::connect_headers(&world.server.url(), "phone-header", &[("Authorization", &auth)]).await;
        assert!(socket.is_ok(), "{}: the header authenticates /sync", db.name);
        let reply = world.post_as(&old, "/api/device/token", "").await;
        assert_eq!(reply.status, 200, "{}: {reply:?}", db.name);
        let new = reply.json()["token"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        assert_eq!(world.get_as(&old, "/api/device/assignments").await.status, 401, "{}", db.name);
        assert_eq!(world.get_as(&new, "/api/device/assignments").await.status, 200, "{}", db.name);
        assert_eq!(Client::connect_with(&world.server.url(), "phone-old", Some(&old)).await.err(), Some(401));
        assert!(Client::connect_with(&world.server.url(), "phone-new", Some(&new)).await.is_ok());
        assert_eq!(world.count("device.token-rotate").await, 1, "{}", db.name);
        // Staff tokens are not device tokens.
        let admin = world.token("admin").await;
        assert_eq!(world.post_as(&admin, "/api/device/token", "").await.status, 403);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn api_tokens_are_audited_when_made_and_at_their_first_use_each_day() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let token = world.token("viewer").await;
        for _ in 0..3 {
            assert_eq!(world.get_as(&token, "/api/me").await.status, 200);
        }
        assert_eq!(world.count("token.create").await, 1, "{}", db.name);
        assert_eq!(world.count("token.use").await, 1, "{}: {:?}", db.name, world.audit().await);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn csrf_refusals_exports_and_comment_reads_are_audited() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let (cookie, _) = world.session("admin", ADMIN_PASSWORD).await;
        let reply = world.server.request("POST", "/api/tokens", &[("Cookie", &cookie)], Some("{}")).await;
        assert_eq!(reply.status, 403);
        let admin = world.token("admin").await;
        let campaign = fixtures::campaign();
        let reply = world.post_as(&admin, "/api/campaigns", &serde_json::to_string(&campaign).unwrap()).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let path = format!("/api/campaigns/{}", campaign.id);
        let viewer = world.token("viewer").await;
        assert_eq!(world.get_as(&viewer, &format!("{path}/comments?q=c%C3%A1n%20b%E1%BB%99")).await.status, 200);
        assert_eq!(world.get_as(&viewer, &format!("{path}/export/results.csv")).await.status, 200);
        let audit = world.audit().await;
        let has = |action: &str, needle: &str| {
            audit.iter().any(|(a, t, d)| a == action && (t.contains(needle) || d.contains(needle)))
        };
        assert!(has("csrf.refused", "/api/tokens"), "{}: {audit:?}", db.name);
        assert!(has("comments.read", "cán bộ"), "{}: {audit:?}", db.name);
        assert!(has("export", "ket-qua"), "{}: {audit:?}", db.name);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn reproject_runs_are_audited() {
    let dbs = support::databases().await;
    let store = Store::open(dbs[0].url()).await.unwrap();
    store.close().await;
    let status = client::server_command()
        .args(["reproject", "--database-url", dbs[0].url()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let audit = audit_of(dbs[0].url()).await;
    assert!(audit.iter().any(|(a, _, d)| a == "reproject" && d.contains("ledgers")), "{audit:?}");
}

/// 200 sign-ins at once (each an argon2id hash) leave the server answering `/healthz`: the
/// hashes run on blocking threads, a few at a time, not on the runtime's workers. The bound is
/// generous (the machine running the tests may be busy); without the fix the health check waits
/// for most of the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_stays_responsive_during_a_sign_in_flood() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url(), &[]).await;
    let addr = world.server.addr;
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let body = serde_json::json!({ "name": "admin", "password": ADMIN_PASSWORD }).to_string();
                client::http(addr, "POST", "/api/session", &[], Some(&body)).await.status
            })
        })
        .collect();
    // The sleeps here pace the health checks through the flood (this test measures how long
    // one takes while it lasts); none of them waits for a result.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut worst = Duration::ZERO;
    let mut checks = 0;
    while !flood.iter().all(|f| f.is_finished()) && checks < 50 {
        let started = Instant::now();
        let reply = client::http(addr, "GET", "/healthz", &[], None).await;
        assert_eq!(reply.status, 200);
        worst = worst.max(started.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut signed_in = 0;
    for f in flood {
        signed_in += usize::from(f.await.unwrap() == 200);
    }
    let flood_took = flood_started.elapsed();
    eprintln!("200 sign-ins took {flood_took:?}; {checks} health checks during it, the slowest {worst:?}");
    assert_eq!(signed_in, 200);
    assert!(checks >= 3, "the flood lasted long enough to measure ({flood_took:?})");
    assert!(worst < Duration::from_millis(1500), "a health check took {worst:?} during the flood");
    world.server.stop().await;
}

/// An administrator who forgot the password is reset from the command line on the server: a new
/// one-time password (to change at the next sign-in), every session of the account ended, the
/// old password refused, audited; a collector (no password) and an unknown name are refused with
/// a message and a failing exit status.
#[tokio::test]
async fn a_forgotten_staff_password_is_reset_from_the_command_line() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let (cookie, _) = world.session("admin", ADMIN_PASSWORD).await;
        assert_eq!(world.me(&cookie).await, 200);

        let reset = client::server_command()
            .args(["admin", "reset-password", "admin", "--database-url", db.url()])
            .output()
            .expect("the command runs");
        let printed = String::from_utf8_lossy(&reset.stdout).into_owned();
        assert!(reset.status.success(), "{}: {printed}{}", db.name, String::from_utf8_lossy(&reset.stderr));
        let password = printed
            .lines()
            .find_map(|l| l.strip_prefix("One-time password: "))
            .unwrap_or_else(|| panic!("{}: no password in {printed:?}", db.name))
            .to_owned();
        assert_ne!(password, ADMIN_PASSWORD);

        assert_eq!(world.me(&cookie).await, 401, "{}: the session before the reset ended", db.name);
        let old = serde_json::json!({ "name": "admin", "password": ADMIN_PASSWORD }).to_string();
        assert_eq!(world.server.request("POST", "/api/session", &[], Some(&old)).await.status, 401, "{}", db.name);
        let (cookie, _) = world.session("admin", &password).await;
        let blocked = world.server.request("GET", "/api/people", &[("Cookie", &cookie)], None).await;
        assert_eq!((blocked.status, blocked.json()["code"].as_str()), (403, Some("password_change_required")));
        assert_eq!(world.count("person.reset-password").await, 1, "{}", db.name);

        for (name, why) in [("c1", "only staff accounts"), ("nobody", "there is no account")] {
            let refused = client::server_command()
                .args(["admin", "reset-password", name, "--database-url", db.url()])
                .output()
                .expect("the command runs");
            let said = String::from_utf8_lossy(&refused.stderr).into_owned();
            assert!(!refused.status.success(), "{}: {name}", db.name);
            assert!(said.contains(why), "{}: {name}: {said}", db.name);
        }
        assert_eq!(world.count("person.reset-password").await, 1, "{}", db.name);
        world.server.stop().await;
    }
}

async fn campaign_state(world: &World, admin: &str) -> serde_json::Value {
    world.get_as(admin, "/api/campaigns/tin-nhiem-2025").await.json()["state"].clone()
}

/// Opening, closing and publishing a campaign and revoking a device cannot be undone: their
/// forms say what follows and are refused, changing nothing, unless that was ticked.
#[tokio::test]
async fn irreversible_actions_are_taken_only_once_confirmed() {
    for db in support::databases().await {
        let world = World::new(db.url(), &[]).await;
        let device_token = enroll(&world).await;
        let admin = world.token("admin").await;
        let units = hamlet_server::district::catalog::units_csv(fixtures::unit_tree().units());
        let auth = format!("Bearer {admin}");
        let imported = world
            .server
            .request("POST", "/api/units", &[("Authorization", &auth), ("Content-Type", "text/csv")], Some(&units))
            .await;
        assert_eq!(imported.status, 200, "{imported:?}");
        let mut draft = fixtures::campaign();
        draft.state = hamlet_sync_core::CampaignState::Draft;
        let created = world.post_as(&admin, "/api/campaigns", &serde_json::to_string(&draft).unwrap()).await;
        assert_eq!(created.status, 201, "{created:?}");

        let (cookie, csrf) = world.session("admin", ADMIN_PASSWORD).await;
        let page = world.server.request("GET", "/admin/campaigns/tin-nhiem-2025", &[("Cookie", &cookie)], None).await;
        assert!(page.body.contains("name=\"confirm\" value=\"yes\" required"), "{}: {}", db.name, page.body);
        assert!(page.body.contains("không thể sửa cán bộ, thôn và ngày"), "{}: the form says what follows", db.name);
        let path = "/admin/campaigns/tin-nhiem-2025/state";
        for (to, then) in [("open", "open"), ("closed", "closed"), ("published", "published")] {
            let unticked =
                world.server.request("POST", path, &form_headers(&cookie), Some(&format!("csrf={csrf}&to={to}"))).await;
            assert_eq!(unticked.status, 400, "{}: {to} without confirming", db.name);
            assert!(unticked.body.contains("Hãy đánh dấu ô xác nhận"), "{}: {}", db.name, unticked.body);
            assert_ne!(campaign_state(&world, &admin).await, then, "{}: {to} refused changes nothing", db.name);
            let body = format!("csrf={csrf}&to={to}&confirm=yes");
            let ticked = world.server.request("POST", path, &form_headers(&cookie), Some(&body)).await;
            assert_eq!(ticked.status, 303, "{}: {to}: {ticked:?}", db.name);
            assert_eq!(campaign_state(&world, &admin).await, then, "{}", db.name);
        }

        let devices = world.get_as(&admin, "/api/devices").await.json();
        let device = devices[0]["id"].as_str().unwrap().to_owned();
        let page = world.server.request("GET", "/admin/devices", &[("Cookie", &cookie)], None).await;
        assert!(page.body.contains("không đồng bộ được nữa"), "{}: the revoke form says what follows", db.name);
        let path = format!("/admin/devices/{device}/revoke");
        let unticked = world.server.request("POST", &path, &form_headers(&cookie), Some(&format!("csrf={csrf}"))).await;
        assert_eq!(unticked.status, 400, "{}: revoking without confirming", db.name);
        assert_eq!(
            world.get_as(&device_token, "/api/device/assignments").await.status,
            200,
            "{}: still enrolled",
            db.name
        );
        let body = format!("csrf={csrf}&confirm=yes");
        let ticked = world.server.request("POST", &path, &form_headers(&cookie), Some(&body)).await;
        assert_eq!(ticked.status, 303, "{}: {ticked:?}", db.name);
        assert_eq!(world.get_as(&device_token, "/api/device/assignments").await.status, 401, "{}: revoked", db.name);
        world.server.stop().await;
    }
}
