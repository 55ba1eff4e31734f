//! Talking to the forges: reading a change's facts and publishing tollgate's results.

pub mod github;
pub mod gitlab;
pub mod plan;
