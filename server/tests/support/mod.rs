//! Test databases: SQLite in a temporary folder always, and PostgreSQL when the environment
//! variable `HAMLET_TEST_DATABASE_URL` names a server (a fresh database per test, dropped at
//! the end).

#![allow(dead_code)]

use std::io::Write as _;
use std::sync::Once;

use sqlx::{Connection, PgConnection};

/// The variable that names the PostgreSQL server to test against.
pub const POSTGRES_VARIABLE: &str = "HAMLET_TEST_DATABASE_URL";

/// One database for one test; a PostgreSQL database is dropped when this is.
pub struct TestDb {
    /// "sqlite" or "postgres", for assertion messages.
    pub name: &'static str,
    url: String,
    _cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

impl TestDb {
    /// The URL to give `Store::open` (several stores may open it: several "server processes").
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.name == "postgres"
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, database } = self else {
            return;
        };
        let (admin_url, database) = (admin_url.clone(), database.clone());
        // Drop runs inside the test's runtime, which cannot block on another future: use a
        // thread with its own. Best effort: a leftover database is only litter.
        let name = database.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            let _ = writeln!(std::io::stderr(), "note: could not drop the test database {name}");
        }
    }
}

/// The databases every test runs against: a new SQLite file, and a new PostgreSQL database when
/// `HAMLET_TEST_DATABASE_URL` is set (say `postgres://postgres@127.0.0.1:5432/test`).
///
/// Panics when the variable is set but the server cannot be used: a test asked to cover
/// PostgreSQL must not pass without it.
pub async fn databases() -> Vec<TestDb> {
    let folder = tempfile::tempdir().expect("a temporary folder");
    // A missing subfolder too: `Store::open` must create it.
    let url = format!("sqlite:{}", folder.path().join("data").join("hamlet.db").display());
    let mut databases = vec![TestDb { name: "sqlite", url, _cleanup: Cleanup::Sqlite(folder) }];
    match std::env::var(POSTGRES_VARIABLE) {
        Ok(admin_url) if !admin_url.is_empty() => databases.push(postgres(admin_url).await),
        _ => {
            static SKIPPED: Once = Once::new();
            SKIPPED.call_once(|| {
                // Straight to stderr, past the test harness's capture, so the skip is seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: {POSTGRES_VARIABLE} is not set: the store tests ran on SQLite only, the PostgreSQL suite was SKIPPED"
                );
            });
        }
    }
    databases
}

async fn postgres(admin_url: String) -> TestDb {
    let database = format!("hamlet_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| panic!("{POSTGRES_VARIABLE}: cannot connect to {admin_url}: {error}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("{POSTGRES_VARIABLE}: cannot create the database {database}: {error}"));
    let _ = admin.close().await;
    TestDb {
        name: "postgres",
        url: with_database(&admin_url, &database),
        _cleanup: Cleanup::Postgres { admin_url, database },
    }
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let rest = &url[authority_start..];
    let path_start = rest.find(['/', '?']).map_or(url.len(), |start| authority_start + start);
    let query = url[path_start..].find('?').map_or("", |start| &url[path_start + start..]);
    format!("{}/{database}{query}", &url[..path_start])
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
}
