//! The audit ledger: signed decision records in an append-only, hash-chained store.

pub mod keys;
pub mod record;
pub mod store;
