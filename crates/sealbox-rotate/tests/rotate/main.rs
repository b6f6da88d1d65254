//! The rotation crate's tests, one binary with a module per topic. `stores`: the store
//! conformance suite, run against the file store, the in-memory object store, S3 (moto) and
//! PostgreSQL, plus each store's own checks.

mod engine;
mod stores;
mod temporal;
