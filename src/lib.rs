//! tollgate: governance gates and approval flows for machine-learning changes on GitHub and
//! GitLab.
//!
//! Data flows one way: forge webhook → [`intake`] (verify, parse) → [`sink`] → evaluation and
//! publishing. See `DESIGN.md` in the shared folder for the whole picture.

pub mod cli;
pub mod clock;
pub mod config;
pub mod event;
pub mod forge;
pub mod incident;
pub mod intake;
pub mod ledger;
pub mod metrics;
pub mod pages;
pub mod policy;
pub mod queue;
pub mod render;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod sink;
pub mod telemetry;
