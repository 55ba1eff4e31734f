//! GitLab (gitlab.com and self-managed): the REST API v4 client. Merge request facts,
//! publishing (commit status, sticky note) and the queue's evaluator build on it.

pub mod api;
pub mod facts;
pub mod incident;
pub mod publish;
pub mod worker;
