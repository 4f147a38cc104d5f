//! Test support: fresh stores, each in a schema of its own on the test
//! database (`ORDERLY_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when the factory is.
//! A database that cannot be reached fails the test, saying how to fix it:
//! these tests never skip.

#![allow(dead_code)]

use std::sync::Mutex;

use orderly_postgres::{PostgresOptions, PostgresStore};

/// The test database's URL.
pub fn database_url() -> String {
    std::env::var("ORDERLY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// Options for `schema` on the test database, with a small pool (many
/// tests run at once on one server) and without waiting for commit flushes
/// (no test here crashes the server; what is flushed when never changes
/// what the store does).
pub fn options(schema: &str) -> PostgresOptions {
    PostgresOptions {
        schema: schema.into(),
        pool_size: 4,
        synchronous_commit: false,
        ..PostgresOptions::new(database_url())
    }
}

/// Opens a store on `schema`, failing loudly when the database is out of reach.
pub async fn open(schema: &str) -> PostgresStore {
    match PostgresStore::open(&options(schema)).await {
        Ok(store) => store,
        Err(e) => panic!(
            "cannot open a PostgreSQL store for the tests: {e}\n\
             These tests need a running PostgreSQL server. Start one (e.g. `pg_ctlcluster 15 main start`) \
             with a database `test` that user `postgres` may use without a password on 127.0.0.1:5432, \
             or point ORDERLY_TEST_DATABASE_URL at another (now {:?}).",
            database_url()
        ),
    }
}

/// A plain connection to the test database (to look at or set up tables).
pub async fn raw(schema: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = database_url().parse().expect("database URL");
    config.options(format!("-c search_path={schema}"));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", database_url()));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Drops `schemas` (on a thread of its own: it runs from `Drop`, maybe
/// inside a runtime).
pub fn drop_schemas(schemas: Vec<String>) {
    if schemas.is_empty() {
        return;
    }
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let client = raw("public").await;
            for s in schemas {
                if let Err(e) = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
                    .await
                {
                    eprintln!("could not drop test schema {s}: {e}");
                }
            }
        })
    });
    let _ = done.join();
}

/// Opens fresh stores, each in a new schema, and drops those schemas when dropped.
#[derive(Default)]
pub struct Schemas {
    names: Mutex<Vec<String>>,
}

impl Schemas {
    /// A store in a new schema.
    pub async fn open(&self) -> PostgresStore {
        let schema = fresh_schema();
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(schema.clone());
        open(&schema).await
    }

    /// Remembers `schema` to drop it with the others.
    pub fn adopt(&self, schema: &str) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(schema.to_string());
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        drop_schemas(names);
    }
}
