//! The district's JSON API and exports against a real server on a real socket, on SQLite and
//! (when `HAMLET_TEST_DATABASE_URL` is set) PostgreSQL: imports with line-numbered errors, the
//! campaign life cycle, results after phones sync over WebSocket, the OpenAPI document against
//! the routes, JSON errors, and exports read back as CSV and XLSX with the API's numbers.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod openapi;
mod support;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use calamine::{Data, Reader, Xlsx};
use client::{Client, Running, config, start};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::district::catalog;
use hamlet_server::store::Store;
use hamlet_sync_core::automerge::{ActorId, sync};
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::{AnswerKey, AnswerValue, Campaign, Day, Ledger, Level, NewResponse, Tally, fixtures};
use serde_json::Value;

const PASSWORD: &str = "mật khẩu quản trị 2025";

/// An answer: status, headers and the raw body (chunked transfer decoded).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, headers, body) = client::exchange(stream, method, path, headers, body.to_vec()).await;
    Answer { status, headers, body: body.unwrap_or_else(|e| panic!("{method} {path}: the body was cut off: {e}")) }
}

/// A server with an administrator signed in (by API token).
struct Staff {
    server: Running,
    auth: String,
}

impl Staff {
    async fn start(url: &str) -> Staff {
        let store = Store::open(url).await.unwrap();
        let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
        accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
        accounts.set_password("admin", PASSWORD, false).await.unwrap();
        store.close().await;
        let server = start(config(url, &[])).await;
        Staff { auth: sign_in(&server).await, server }
    }

    /// A request as the administrator: the one place that knows how staff sign in.
    async fn call(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
        let headers = [("Authorization", self.auth.as_str()), ("Content-Type", content_type)];
        http(self.server.addr, method, path, &headers, body).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, "application/json", b"").await
    }

    async fn post_json(&self, path: &str, body: &str) -> Answer {
        self.call("POST", path, "application/json", body.as_bytes()).await
    }

    async fn post_csv(&self, path: &str, body: &str) -> Answer {
        self.call("POST", path, "text/csv", body.as_bytes()).await
    }
}

/// Signs the administrator in and makes an API token: the `Authorization` header to send.
async fn sign_in(server: &Running) -> String {
    let body = serde_json::json!({ "name": "admin", "password": PASSWORD }).to_string();
    let session =
        http(server.addr, "POST", "/api/session", &[("Content-Type", "application/json")], body.as_bytes()).await;
    assert_eq!(session.status, 200, "{}", String::from_utf8_lossy(&session.body));
    let cookie = session
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.split(';').next().filter(|c| c.starts_with("hamlet_session=")).map(str::to_owned))
        .expect("session cookie");
    let csrf = session.json()["csrf"].as_str().unwrap().to_owned();
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str()), ("Content-Type", "application/json")];
    let token =
        http(server.addr, "POST", "/api/tokens", &headers, br#"{"person":"admin","label":"district tests"}"#).await;
    assert_eq!(token.status, 201, "{}", String::from_utf8_lossy(&token.body));
    format!("Bearer {}", token.json()["token"].as_str().unwrap())
}

fn day() -> Day {
    "2025-06-05".parse().unwrap()
}

/// Six submitted responses in thon-dong (ong-an: 3 low, 2 mid, 1 high) and a tally in to-1.
fn ledgers(campaign: &Campaign) -> Vec<Ledger> {
    let mut dong = Ledger::create(&campaign.id, &fixtures::hamlet("thon-dong"), ActorId::from([1; 16]));
    let by = "thu-ky".parse().unwrap();
    for (i, level) in [
        Level::TinNhiemThap,
        Level::TinNhiemThap,
        Level::TinNhiemThap,
        Level::TinNhiem,
        Level::TinNhiem,
        Level::TinNhiemCao,
    ]
    .into_iter()
    .enumerate()
    {
        let mut answers = BTreeMap::new();
        for s in &campaign.subjects {
            answers.insert(
                AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()),
                AnswerValue::Level(level),
            );
        }
        answers.insert(
            AnswerKey::for_subject(fixtures::question("y-kien"), fixtures::subject("ong-an")),
            AnswerValue::Comment(format!("Cán bộ tốt, \"gần dân\", ý kiến số {i}")),
        );
        let id = format!("r-{i}").parse().unwrap();
        dong.record(campaign, &NewResponse { id, collector: "thu-ky".parse().unwrap(), answers }, day()).unwrap();
        dong.submit(campaign, &format!("r-{i}").parse().unwrap(), &by, day()).unwrap();
    }
    let mut to1 = Ledger::create(&campaign.id, &fixtures::hamlet("to-1"), ActorId::from([2; 16]));
    let mut counts = BTreeMap::new();
    for s in &campaign.subjects {
        for (level, n) in [(Level::TinNhiemCao, 6), (Level::TinNhiem, 3), (Level::TinNhiemThap, 1)] {
            counts.insert(CountKey { question: fixtures::question("tin-nhiem"), subject: s.id.clone(), level }, n);
        }
    }
    let tally = Tally {
        id: "hop-to-1".parse().unwrap(),
        collector: "thu-ky".parse().unwrap(),
        ballots: Ballots { issued: 12, returned: 11, valid: 10, invalid: 1 },
        counts,
    };
    to1.record_tally(campaign, &tally, day()).unwrap();
    vec![dong, to1]
}

fn overall(results: &Value, subject: &str) -> Vec<u64> {
    let item = results["subjects"].as_array().unwrap().iter().find(|s| s["subject"] == subject).unwrap();
    item["rows"][0]["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect()
}

#[tokio::test]
async fn the_district_api_from_import_to_export() {
    for db in support::databases().await {
        let name = db.name;
        let staff = Staff::start(db.url()).await;

        // Units: every bad line is reported with its number, and nothing is imported.
        let bad = "id,name,level,parent,valid_from,valid_until,merged_from,merged_into\n\
                   tinh,Tỉnh Mẫu,province,,2020-01-01,,,\n\
                   xa-x,Xã X,village,tinh,2020-01-01,,,\n\
                   thon-x,Thôn X,hamlet,xa-x,2020-01-01,,,\n\
                   bad id!,Thôn Y,hamlet,xa-x,2020-01-01,,,\n";
        let answer = staff.post_csv("/api/units", bad).await;
        assert_eq!(answer.status, 422, "{name}");
        let json = answer.json();
        assert_eq!(json["code"], "invalid_csv", "{name}");
        let lines: Vec<u64> = json["details"].as_array().unwrap().iter().map(|d| d["line"].as_u64().unwrap()).collect();
        assert_eq!(lines, [3, 5], "{name}: {json}");
        assert_eq!(staff.get("/api/units").await.json().as_array().unwrap().len(), 0, "{name}: nothing imported");
        let units = catalog::units_csv(fixtures::unit_tree().units());
        let answer = staff.post_csv("/api/units", &units).await;
        assert_eq!((answer.status, answer.json()["units"].as_u64()), (200, Some(7)), "{name}");

        // The campaign's life cycle.
        let campaign = fixtures::campaign();
        let body = serde_json::to_string(&campaign).unwrap();
        assert_eq!(staff.post_json("/api/campaigns", &body).await.status, 201, "{name}");
        let again = staff.post_json("/api/campaigns", &body).await;
        assert_eq!((again.status, again.json()["code"].as_str()), (409, Some("campaign_exists")), "{name}");
        let mut renamed = campaign.clone();
        renamed.name.en = "Confidence survey 2025".into();
        let path = format!("/api/campaigns/{}", campaign.id);
        let put =
            staff.call("PUT", &path, "application/json", serde_json::to_string(&renamed).unwrap().as_bytes()).await;
        assert_eq!(put.status, 200, "{name}: {}", String::from_utf8_lossy(&put.body));
        let opened = staff.post_json(&format!("{path}/open"), "").await;
        assert_eq!((opened.status, opened.json()["state"].as_str()), (200, Some("open")), "{name}");
        let late =
            staff.call("PUT", &path, "application/json", serde_json::to_string(&renamed).unwrap().as_bytes()).await;
        assert_eq!((late.status, late.json()["code"].as_str()), (409, Some("campaign_not_draft")), "{name}");
        let skipped = staff.post_json(&format!("{path}/publish"), "").await;
        assert_eq!((skipped.status, skipped.json()["code"].as_str()), (409, Some("invalid_transition")), "{name}");

        // Phones sync over WebSocket; the projection follows.
        let mut campaign = renamed;
        campaign.state = hamlet_sync_core::CampaignState::Open;
        let mut phone = Client::join(&staff.server.url(), "phone-api", Some("phone-api-store")).await;
        for mut ledger in ledgers(&campaign) {
            let id = ledger.id();
            phone.sync(id, ledger.doc_mut(), &mut sync::State::new()).await;
        }
        // The projection follows the sync in the server's own task and is announced nowhere but
        // in the API's figures: poll them, with a deadline (10 s).
        let mut progress = Value::Null;
        for _ in 0..200 {
            progress = staff.get(&format!("{path}/progress")).await.json();
            if progress["totals"]["submitted"] == 6 && progress["totals"]["tallies"] == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(progress["totals"]["submitted"], 6, "{name}: {progress}");
        assert_eq!(progress["totals"]["ballots_returned"], 11, "{name}");

        let results = staff.get(&format!("{path}/results")).await;
        assert_eq!(results.status, 200, "{name}");
        let results = results.json();
        // ong-an: 1 + 6 high, 2 + 3 mid, 3 + 1 low.
        assert_eq!(overall(&results, "ong-an"), [7, 5, 4], "{name}");
        let deep = staff.get(&format!("{path}/results?depth=hamlet&subject=ong-an")).await.json();
        let units: Vec<&str> = deep["units"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
        assert!(units.contains(&"thon-dong") && units.contains(&"to-1"), "{name}: {units:?}");
        let comments = staff.get(&format!("{path}/comments?q=gan%20dan")).await.json();
        assert_eq!(comments["total"], 6, "{name}: search ignores diacritics: {comments}");

        // Errors are JSON with a stable code.
        let missing = staff.get("/api/campaigns/nope/results").await;
        assert_eq!((missing.status, missing.json()["code"].as_str()), (404, Some("not_found")), "{name}");
        let depth = staff.get(&format!("{path}/results?depth=village")).await;
        assert_eq!((depth.status, depth.json()["code"].as_str()), (400, Some("invalid_depth")), "{name}");
        let broken = staff.post_json("/api/campaigns", "{\"id\":").await;
        assert_eq!((broken.status, broken.json()["code"].as_str()), (400, Some("invalid_json")), "{name}");

        // Every operation of the OpenAPI document is routed, and answers JSON errors.
        let doc = staff.get("/api/openapi.json").await.json();
        assert_eq!(doc["openapi"], "3.1.0", "{name}");
        let mut operations = 0;
        for (template, methods) in doc["paths"].as_object().unwrap() {
            let concrete = template
                .replace("{campaign}", "nope")
                .replace("{file}", "results.csv")
                .replace("{subject}", "x")
                .replace("{id}", "nope");
            for method in methods.as_object().unwrap().keys() {
                operations += 1;
                let answer = staff.call(&method.to_uppercase(), &concrete, "application/json", b"{}").await;
                assert_ne!(answer.status, 405, "{name}: {method} {template} is not routed");
                if answer.status >= 400 {
                    assert!(answer.json()["code"].is_string(), "{name}: {method} {template} answers a JSON error");
                } else {
                    assert_eq!(answer.status, 200, "{name}: {method} {template}");
                }
            }
        }
        assert!(operations >= 18, "{name}: {operations} operations documented");
        for path in ["/api/session", "/api/enroll", "/api/me", "/api/people", "/api/device/token", "/api/tokens/{id}"] {
            assert!(doc["paths"].get(path).is_some(), "{name}: the accounts' {path} is documented");
        }
        let problems = openapi::document_problems(&doc);
        assert!(problems.is_empty(), "{name}: the OpenAPI document: {problems:#?}");
        // Real answers, with data in them, match the schemas the document gives them.
        let answers = [
            ("/api/campaigns", "/api/campaigns".to_owned()),
            ("/api/campaigns/{campaign}", path.clone()),
            ("/api/campaigns/{campaign}/results", format!("{path}/results")),
            ("/api/campaigns/{campaign}/results", format!("{path}/results?depth=hamlet&subject=ong-an")),
            ("/api/campaigns/{campaign}/progress", format!("{path}/progress")),
            ("/api/campaigns/{campaign}/comments", format!("{path}/comments")),
            ("/api/campaigns/{campaign}/review", format!("{path}/review?status=all")),
            ("/api/units", "/api/units".to_owned()),
            ("/api/audit", "/api/audit".to_owned()),
            ("/api/me", "/api/me".to_owned()),
            ("/api/people", "/api/people".to_owned()),
            ("/api/devices", "/api/devices".to_owned()),
        ];
        for (template, concrete) in answers {
            let answer = staff.get(&concrete).await;
            assert_eq!(answer.status, 200, "{name}: {concrete}");
            let schema = openapi::answer_schema(&doc, "get", template, "200");
            let found = openapi::mismatches(&doc, schema, &answer.json());
            assert!(found.is_empty(), "{name}: GET {concrete} does not match its schema: {found:#?}");
        }
        let error_schema = openapi::answer_schema(&doc, "get", "/api/campaigns/{campaign}/results", "4XX");
        let found = openapi::mismatches(&doc, error_schema, &missing.json());
        assert!(found.is_empty(), "{name}: an error does not match its schema: {found:#?}");

        // Exports: the numbers of the API, read back from CSV and XLSX.
        let csv = staff.get(&format!("{path}/export/results.csv")).await;
        assert_eq!(csv.status, 200, "{name}");
        assert!(csv.header("content-type").unwrap().starts_with("text/csv"), "{name}");
        assert!(csv.body.starts_with(b"\xEF\xBB\xBF"), "{name}: a UTF-8 BOM for Excel");
        let mut reader = csv::Reader::from_reader(&csv.body[3..]);
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert!(header.contains(&"Tín nhiệm cao (số)".to_owned()), "{name}: {header:?}");
        let col = |h: &str| header.iter().position(|x| x == h).unwrap();
        let mut found = false;
        for record in reader.records() {
            let record = record.unwrap();
            if &record[col("Mã cán bộ")] == "ong-an" && &record[col("Mã đơn vị")] == "*" {
                let counts: Vec<u64> = ["Tín nhiệm cao (số)", "Tín nhiệm (số)", "Tín nhiệm thấp (số)"]
                    .iter()
                    .map(|h| record[col(h)].parse().unwrap())
                    .collect();
                assert_eq!(counts, overall(&results, "ong-an"), "{name}: CSV equals the API");
                found = true;
            }
        }
        assert!(found, "{name}: the CSV has ong-an's campaign row");

        let xlsx = staff.get(&format!("{path}/export/results.xlsx")).await;
        assert_eq!(xlsx.status, 200, "{name}");
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(xlsx.body.clone())).expect("a valid XLSX");
        assert_eq!(book.sheet_names(), ["Kết quả theo đơn vị"], "{name}: the sheet is named for what it holds");
        let sheet = book.worksheet_range_at(0).unwrap().unwrap();
        let rows: Vec<&[Data]> = sheet.rows().collect();
        let text = |d: &Data| d.to_string();
        let head: Vec<String> = rows[0].iter().map(text).collect();
        let xcol = |h: &str| head.iter().position(|x| x == h).unwrap();
        let row = rows
            .iter()
            .find(|r| text(&r[xcol("Mã cán bộ")]) == "ong-an" && text(&r[xcol("Mã đơn vị")]) == "*")
            .expect("ong-an's campaign row");
        let counts: Vec<u64> = ["Tín nhiệm cao (số)", "Tín nhiệm (số)", "Tín nhiệm thấp (số)"]
            .iter()
            .map(|h| match &row[xcol(h)] {
                Data::Float(f) => *f as u64,
                Data::Int(i) => *i as u64,
                other => panic!("{name}: {h} is {other:?}"),
            })
            .collect();
        assert_eq!(counts, overall(&results, "ong-an"), "{name}: XLSX equals the API");

        // Responses: one row each, no collector, quotes and commas kept.
        let responses = staff.get(&format!("{path}/export/responses.csv")).await;
        let mut reader = csv::Reader::from_reader(&responses.body[3..]);
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert!(!header.iter().any(|h| h.to_lowercase().contains("collector") || h.contains("Người ghi")), "{name}");
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 6, "{name}");
        let comment = header.iter().position(|h| h.starts_with("Ý kiến khác — ")).unwrap();
        assert!(records.iter().any(|r| &r[comment] == "Cán bộ tốt, \"gần dân\", ý kiến số 0"), "{name}");
        let xlsx = staff.get(&format!("{path}/export/responses.xlsx")).await;
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(xlsx.body)).expect("a valid XLSX");
        assert_eq!(book.sheet_names(), ["Phiếu"], "{name}: the sheet is named for what it holds");
        assert_eq!(book.worksheet_range_at(0).unwrap().unwrap().height(), 7, "{name}: a header and 6 responses");
        let unknown = staff.get(&format!("{path}/export/everything.zip")).await;
        assert_eq!((unknown.status, unknown.json()["code"].as_str()), (404, Some("not_found")), "{name}");

        // Every change was audited.
        let audit = staff.get("/api/audit?action=campaign.").await.json();
        let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["campaign.open", "campaign.update", "campaign.create"], "{name}");
        assert!(audit.as_array().unwrap().iter().all(|e| e["actor"] == "admin"), "{name}: {audit}");
        staff.server.stop().await;
    }
}
