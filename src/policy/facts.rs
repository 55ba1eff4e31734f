//! `ChangeFacts`: everything the policy engine needs to know about one change, gathered by
//! the forge layer (or written by hand for `tollgate explain`). Plain data, serde-friendly:
//! the JSON form is the `--facts` file format documented in the README.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// New in this change.
    Added,
    /// Edited.
    Modified,
    /// Deleted.
    Removed,
    /// Moved (see `previous_path`), possibly edited too.
    Renamed,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangedFile {
    /// Path at the head (for removed files: the path that was removed).
    pub path: String,
    /// How it changed.
    pub status: FileStatus,
    /// For renames: the path at the base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_path: Option<String>,
    /// Lines added.
    #[serde(default)]
    pub additions: u32,
    /// Lines deleted.
    #[serde(default)]
    pub deletions: u32,
}

/// A reviewer's verdict in one review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    /// Approved.
    Approved,
    /// Asked for changes.
    ChangesRequested,
    /// Commented only (does not cancel an earlier verdict).
    Commented,
    /// The review was dismissed (cancels the reviewer's approval or veto).
    Dismissed,
}

/// One review (or GitLab approval), in the order the forge lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// Reviewer login.
    pub reviewer: String,
    /// Verdict.
    pub state: ReviewVerdict,
    /// The commit it was given on.
    pub commit: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Files changed by commits pushed after this review. `None` when the forge could not
    /// tell: such a review counts as stale unless it was given on the head commit.
    #[serde(default)]
    pub changed_after: Option<Vec<String>>,
}

/// A comment on the change (commands are read from these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    /// Author login.
    pub author: String,
    /// Text.
    pub body: String,
    /// When it was created.
    pub at: DateTime<Utc>,
    /// The change's head commit when the comment was created.
    pub head_sha: String,
    /// Whether it was edited since (edited comments never grant anything).
    #[serde(default)]
    pub edited: bool,
}

/// File contents at one side of the change, by path (only the files the policy reads).
pub type Contents = BTreeMap<String, String>;

/// Everything the engine needs about one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeFacts {
    /// Who opened the change.
    pub author: String,
    /// Base branch.
    pub base_ref: String,
    /// Base commit.
    pub base_sha: String,
    /// Head branch.
    #[serde(default)]
    pub head_ref: String,
    /// Head commit.
    pub head_sha: String,
    /// Changed files.
    #[serde(default)]
    pub files: Vec<ChangedFile>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Description.
    #[serde(default)]
    pub body: String,
    /// Contents of metric files, structured configs and evidence documents at the base.
    #[serde(default)]
    pub base_contents: Contents,
    /// The same at the head.
    #[serde(default)]
    pub head_contents: Contents,
    /// Paths that exist at the head and match an evidence glob (beyond the changed files).
    #[serde(default)]
    pub head_paths: BTreeSet<String>,
    /// Reviews, oldest first.
    #[serde(default)]
    pub reviews: Vec<Review>,
    /// Comments, oldest first.
    #[serde(default)]
    pub comments: Vec<Comment>,
    /// Everyone who authored or committed a commit of the change (they built it too).
    #[serde(default)]
    pub commit_authors: BTreeSet<String>,
    /// Active members of each team the policy names (`@org/team` → logins).
    #[serde(default)]
    pub teams: BTreeMap<String, BTreeSet<String>>,
    /// Users with write (or maintain, or admin) access: only they can sign off.
    #[serde(default)]
    pub write_access: BTreeSet<String>,
    /// The time of evaluation (bypasses expire against it).
    pub now: DateTime<Utc>,
    /// Whether the change is merged (only a merged change can be rolled back).
    #[serde(default)]
    pub merged: bool,
    /// Post-incident reviews of the repository that are past due and still open (they block
    /// bypasses when the policy says so).
    #[serde(default)]
    pub overdue_reviews: Vec<OverdueReview>,
}

/// A post-incident review past its due time and not closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverdueReview {
    /// The review's issue number.
    pub issue: u64,
    /// The change merged under the bypass it reviews.
    pub change: u64,
    /// The incident ticket.
    pub ticket: String,
    /// When it was due.
    pub due: DateTime<Utc>,
}
