//! The policy engine: `.governance.toml` + the facts of one change → a [`Decision`].
//!
//! Pure and synchronous (no I/O, no clock, no async) so it can be tested exhaustively and
//! reused by the server, the CLI and every forge.

pub mod classify;
pub mod commands;
pub mod decision;
pub mod deployment;
pub mod evaluate;
pub mod evidence;
pub mod facts;
pub mod index;
pub mod load;
pub mod markdown;
pub mod model;
pub mod risk;
pub mod signoff;
pub mod structured;

pub use decision::{Decision, Outcome};
pub use evaluate::evaluate;
pub use facts::ChangeFacts;
pub use load::{PolicyError, PolicyErrors, parse_policy};
pub use model::{ChangeKind, Gate, Policy, RiskTier};
