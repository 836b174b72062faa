//! A fresh store of each kind for one test, and what it takes to clean up after it.
//! A backend missing from the environment skips the test, loudly, unless
//! `WHARF_REQUIRE_BACKENDS` is set.

use std::ops::Deref;

use sqlx::Connection as _;
use tempfile::TempDir;
use uuid::Uuid;
use wharf_storage::*;

/// A store and what it lives in; `finish` cleans up after a passing test.
pub(crate) struct Open<S> {
    store: S,
    /// Removed on drop.
    _dir: Option<TempDir>,
    /// Dropped by `finish` (a failed test leaves it behind for a look).
    db: Option<PgDatabase>,
}

impl<S> Deref for Open<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.store
    }
}

impl<S: Close> Open<S> {
    pub(crate) async fn finish(self) {
        self.store.close().await;
        if let Some(db) = self.db {
            db.drop().await;
        }
    }
}

/// What a store does once its test is over.
pub(crate) trait Close {
    async fn close(&self) {}
}
impl Close for FsBlobStore {}
impl Close for ObjectBlobStore {}
impl Close for SqliteMetadataStore {}
impl Close for PostgresMetadataStore {
    async fn close(&self) {
        PostgresMetadataStore::close(self).await;
    }
}

pub(crate) async fn fs() -> Option<Open<FsBlobStore>> {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    Some(Open { store, _dir: Some(dir), db: None })
}

pub(crate) async fn s3() -> Option<Open<ObjectBlobStore>> {
    let store = object_store_from_env("WHARF_TEST_S3").await?;
    Some(Open { store, _dir: None, db: None })
}

pub(crate) async fn azure() -> Option<Open<ObjectBlobStore>> {
    let store = object_store_from_env("WHARF_TEST_AZURE").await?;
    Some(Open { store, _dir: None, db: None })
}

pub(crate) async fn sqlite() -> Option<Open<SqliteMetadataStore>> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadataStore::open(&dir.path().join("wharf.db")).await.unwrap();
    Some(Open { store, _dir: Some(dir), db: None })
}

pub(crate) async fn postgres() -> Option<Open<PostgresMetadataStore>> {
    let db = PgDatabase::create().await?;
    let store = db.open().await;
    Some(Open { store, _dir: None, db: Some(db) })
}

/// An object store named by `var` (a `--blobs` URL; credentials in the usual environment
/// variables), under a prefix of its own so that tests don't see each other's objects.
async fn object_store_from_env(var: &str) -> Option<ObjectBlobStore> {
    let Ok(url) = std::env::var(var) else {
        assert!(
            std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none(),
            "{var} is not set but WHARF_REQUIRE_BACKENDS is"
        );
        eprintln!("SKIPPED: {var} is not set (scripts/test.sh starts the server and sets it)");
        return None;
    };
    let mut url: ObjectStoreUrl = url.parse().unwrap();
    let unique = format!("contract-{}", Uuid::new_v4().simple());
    match &mut url {
        ObjectStoreUrl::S3 { prefix, .. } | ObjectStoreUrl::Azure { prefix, .. } => {
            *prefix = unique
        }
    }
    Some(ObjectBlobStore::open(&url).await.unwrap())
}

/// A database of its own on the PostgreSQL server `WHARF_TEST_POSTGRES` names (the URL of
/// a user that may `CREATE DATABASE`), so that tests run in parallel and start empty.
pub(crate) struct PgDatabase {
    server: String,
    name: String,
    pub(crate) url: String,
}

impl PgDatabase {
    /// `None` (the test skips, loudly) without `WHARF_TEST_POSTGRES`, unless
    /// `WHARF_REQUIRE_BACKENDS` is set.
    pub(crate) async fn create() -> Option<PgDatabase> {
        let Ok(server) = std::env::var("WHARF_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("WHARF_REQUIRE_BACKENDS").is_none(),
                "WHARF_TEST_POSTGRES is not set but WHARF_REQUIRE_BACKENDS is"
            );
            eprintln!("SKIPPED: no PostgreSQL: set WHARF_TEST_POSTGRES (scripts/test.sh does)");
            return None;
        };
        let name = format!("wharf_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&server, &name);
        Some(PgDatabase { server, name, url })
    }

    pub(crate) async fn open(&self) -> PostgresMetadataStore {
        PostgresMetadataStore::open(&self.url, PostgresOptions::default()).await.unwrap()
    }

    pub(crate) async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }

    /// Drop the database (a failed test leaves it behind for a look).
    pub(crate) async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&self.server).await.unwrap();
        let name = &self.name;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// `url` naming database `db` instead of its own.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    format!("{root}/{db}{query}")
}
