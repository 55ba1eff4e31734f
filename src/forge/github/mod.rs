//! GitHub: the REST client, gathering `ChangeFacts`, and publishing the check and comment.

pub mod api;
pub mod deploy;
pub mod facts;
pub mod incident;
pub mod publish;
pub mod worker;
