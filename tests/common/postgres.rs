//! A fresh PostgreSQL database per test, dropped when the test ends.
//!
//! The server is `ACKBAR_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, a maintenance database the
//! tests may create databases from). Without a server a test prints why and
//! skips, unless `ACKBAR_REQUIRE_POSTGRES=1` (set by CI) makes it fail.

use sqlx::Connection;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct PgDatabase {
    /// The URL of this test's own database.
    pub url: String,
    pub name: String,
    admin_url: String,
}

fn admin_url() -> String {
    std::env::var("ACKBAR_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The admin URL with another database name in its path.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

impl PgDatabase {
    /// Creates a database with a random name, or `None` when no server
    /// answers (and PostgreSQL is not required).
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = admin_url();
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                if std::env::var("ACKBAR_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!(
                        "ACKBAR_REQUIRE_POSTGRES=1 but PostgreSQL at {admin_url} is unreachable: {e}"
                    );
                }
                eprintln!(
                    "SKIPPED: this test needs PostgreSQL at {admin_url} ({e}); set ACKBAR_TEST_POSTGRES_URL or start one"
                );
                return None;
            }
        };
        let name = format!("ackbar_test_{:016x}", fastrand::u64(..));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        admin.close().await.ok();
        Some(PgDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }

    /// Runs one statement on the maintenance database (to make this one
    /// unreachable, say).
    pub async fn admin(&self, sql: &str) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("connect to the maintenance database");
        sqlx::query(sql)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        admin.close().await.ok();
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs outside async; a thread with its own runtime can still
        // wait for the server (and works inside a test's runtime).
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&sql).execute(&mut admin).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
