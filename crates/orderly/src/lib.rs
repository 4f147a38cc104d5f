//! # orderly
//!
//! Orderly inside your own process: open a store, register typed async
//! handlers per queue, enqueue from your code, and mount the HTTP API into
//! your axum router. Every ordering and durability promise of the server
//! holds in-process.
//!
//! (Being built: see the repository's open issue on the embedded library.)

pub use orderly_core as core;
