//! Talking to the forges: reading a change's facts and publishing tollgate's results.

pub mod github;
pub mod gitlab;
pub mod plan;

use std::sync::Arc;

use sha2::Digest as _;

use crate::event::{ChangeAction, ChangeRef, Event};
use crate::policy::{Policy, PolicyErrors, parse_policy};

/// What a queued job asks of a forge's worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum JobKind {
    /// Evaluate the change (or, once merged, act on its bypass and rollback requests).
    #[default]
    Change,
    /// The job's number is an issue, closed: if it is a post-incident review, record it done.
    IssueClosed {
        /// Who closed it.
        by: String,
    },
    /// A deployment waits for the deployment gate's answer (the job's number is the
    /// deployment's id, 0 when the payload named none).
    Deployment {
        /// The environment deployed to.
        environment: String,
        /// The commit deployed.
        sha: Option<String>,
        /// Where the answer goes.
        callback_url: String,
    },
    /// A check suite on `sha` was re-requested without naming its pull requests (GitHub
    /// leaves them out for forks): find the open ones whose head it is and queue them. Queued
    /// like any other job, so a lookup that fails is tried again and one that a crash
    /// interrupts is resumed, instead of the re-request being dropped after its 202.
    FindPulls {
        /// The commit whose check suite was re-requested.
        sha: String,
    },
}

/// The policy of a repository at a base commit.
#[derive(Debug, Clone)]
pub enum PolicyAt {
    /// No `.governance.toml`: the repository is left alone.
    Absent,
    /// A valid policy, and the SHA-256 of its text (recorded with every decision).
    Valid(Arc<Policy>, String),
    /// A policy with errors (the check fails, naming them), and the SHA-256 of its text.
    Invalid(PolicyErrors, String),
}

impl PolicyAt {
    /// A policy file's text, parsed and fingerprinted (the SHA-256 of the text is recorded
    /// with every decision made under it).
    pub fn parse(text: &str) -> PolicyAt {
        let sha = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        match parse_policy(text) {
            Ok(policy) => PolicyAt::Valid(Arc::new(policy), sha),
            Err(errors) => PolicyAt::Invalid(errors, sha),
        }
    }
}

/// The changes a delivery asks to re-evaluate, each with whether its result must be reset
/// first (a retarget: no result computed for the old base may stand for the new one). A merged
/// change is looked at once more (for what follows a bypass). Only commands in comments change
/// a decision, and tollgate's own comments (`is_own` author) never
/// loop back. Forge-specific events (GitHub's check re-requests) are the forge's to add.
pub fn changes_to_evaluate(
    event: &Event,
    is_own: impl Fn(&str) -> bool,
) -> Vec<(&ChangeRef, bool)> {
    match event {
        Event::ChangeUpdated(update) => {
            let retarget = matches!(update.action, ChangeAction::Retargeted { .. });
            vec![(&update.change, retarget)]
        }
        Event::Review(review) => vec![(&review.change, false)],
        // A merge is judged once more: a merge under a bypass opens its post-incident review.
        Event::ChangeClosed(closed) if closed.merged => vec![(&closed.change, false)],
        Event::CommentCreated(comment)
            if !is_own(comment.author.login.as_str())
                && comment
                    .body
                    .contains(crate::policy::commands::COMMAND_PREFIX) =>
        {
            vec![(&comment.change, false)]
        }
        _ => Vec::new(),
    }
}
