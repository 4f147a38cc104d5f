//! The store conformance suite (`orderly_core::conformance`), unchanged,
//! against the PostgreSQL store: one test per contract test, each store in
//! a schema of its own (so the tests run in parallel), dropped at the end.

mod support;

use std::sync::Arc;

use support::Schemas;

/// A factory for `store_conformance_tests!`: each call opens a store in a
/// fresh schema; the schemas go when the last clone of the factory does.
fn factory() -> impl Fn() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = orderly_postgres::PostgresStore> + Send>,
> {
    let schemas = Arc::new(Schemas::default());
    move || {
        let schemas = schemas.clone();
        Box::pin(async move { schemas.open().await })
    }
}

orderly_core::store_conformance_tests!(factory());
