//! The small, forge-neutral event model that intake produces.
//!
//! GitHub and GitLab payloads are large and differ in every detail; the rest of tollgate only
//! needs to know *which change* moved and *what* happened to it. Everything intake cannot act
//! on becomes an explicit [`Event::Ignored`] with a reason, never an error.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The forge a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// github.com or GitHub Enterprise Server.
    GitHub,
    /// gitlab.com or a self-managed GitLab.
    GitLab,
}

impl Forge {
    /// Lower-case name, as used in routes, metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
        }
    }
}

impl fmt::Display for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Declares a string newtype with `Display`, `as_str` and transparent serde.
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value without further checks.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The inner string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A repository's full path: `owner/name` on GitHub, `group/subgroup/project` on GitLab.
    RepoName
);
string_newtype!(
    /// A git commit id (hex), as the forge reported it.
    CommitSha
);
string_newtype!(
    /// A user's login (GitHub) or username (GitLab).
    Login
);
string_newtype!(
    /// The forge's id of one webhook delivery (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`).
    DeliveryId
);

/// The first seven characters of a commit id, as people read it.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A pull request number (GitHub) or merge request iid (GitLab): unique within a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeNumber(pub u64);

impl fmt::Display for ChangeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A GitHub App installation id; the key to an installation access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstallationId(pub u64);

/// A repository on a forge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    /// Which forge hosts it.
    pub forge: Forge,
    /// Its full path.
    pub name: RepoName,
    /// The forge's numeric id (stable across renames).
    pub id: u64,
    /// The GitHub App installation the delivery came through, if any.
    pub installation: Option<InstallationId>,
}

/// One pull or merge request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRef {
    /// The repository the change targets.
    pub repo: Repo,
    /// Its number within that repository.
    pub number: ChangeNumber,
}

/// A person (or bot) as the forge names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login or username.
    pub login: Login,
    /// The forge's numeric id, when the payload carries it.
    pub id: Option<u64>,
}

/// Who opened a change. GitLab's merge request payload names the author only by numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// Known by login.
    User(User),
    /// Known only by GitLab user id; the forge layer resolves it.
    GitLabUserId(u64),
}

/// What happened to a change that makes tollgate re-evaluate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChangeAction {
    /// Opened for the first time.
    Opened,
    /// Reopened after being closed.
    Reopened,
    /// New commits were pushed to the head branch.
    Synchronized,
    /// Title, description or other metadata changed.
    Edited,
    /// The base (target) branch changed; a result for the old base must not carry over.
    Retargeted {
        /// The previous base branch.
        from: String,
    },
    /// A label was added.
    Labeled,
    /// A label was removed.
    Unlabeled,
    /// A draft became ready for review.
    ReadyForReview,
}

/// A change was opened or moved: tollgate evaluates it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeUpdate {
    /// Which change.
    pub change: ChangeRef,
    /// What happened.
    pub action: ChangeAction,
    /// Head branch name.
    pub head_ref: String,
    /// Head commit.
    pub head_sha: CommitSha,
    /// Base branch name.
    pub base_ref: String,
    /// Base commit, when the payload carries it (GitLab's often does not).
    pub base_sha: Option<CommitSha>,
    /// Who opened the change.
    pub author: Author,
    /// Title.
    pub title: String,
    /// Description (may be empty).
    pub body: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Whether the change is a draft.
    pub draft: bool,
}

/// A change was closed, merged or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeClosed {
    /// Which change.
    pub change: ChangeRef,
    /// Whether it was merged.
    pub merged: bool,
}

/// What happened to a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    /// Submitted (GitHub review, GitLab approval).
    Submitted,
    /// Its body was edited.
    Edited,
    /// Dismissed (GitHub) or approval withdrawn (GitLab unapproval).
    Dismissed,
}

/// The state a review leaves its reviewer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Approved the change.
    Approved,
    /// Asked for changes (a veto when given by a required role holder).
    ChangesRequested,
    /// Commented only; does not cancel an earlier approval.
    Commented,
    /// The review was dismissed or the approval withdrawn.
    Dismissed,
}

/// A review was submitted, edited or dismissed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEvent {
    /// Which change.
    pub change: ChangeRef,
    /// What happened.
    pub action: ReviewAction,
    /// Who reviewed.
    pub reviewer: User,
    /// The resulting state.
    pub state: ReviewState,
    /// The commit the review was given on, when known.
    pub commit: Option<CommitSha>,
    /// When it was given (RFC 3339, as the forge sent it).
    pub submitted_at: Option<String>,
}

/// A comment was created on a change (the only way comment commands arrive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentEvent {
    /// Which change.
    pub change: ChangeRef,
    /// The forge's comment id.
    pub comment_id: u64,
    /// Who wrote it.
    pub author: User,
    /// The text.
    pub body: String,
}

/// Someone asked the forge to run tollgate's check again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRerequest {
    /// The repository.
    pub repo: Repo,
    /// The commit whose check was re-requested.
    pub head_sha: CommitSha,
    /// The check's name, when a single check run was re-requested.
    pub check_name: Option<String>,
    /// The changes the forge associates with that commit (may be empty).
    pub changes: Vec<ChangeNumber>,
}

/// An issue was closed (tollgate's post-incident reviews are issues).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueClosed {
    /// The repository.
    pub repo: Repo,
    /// The issue's number (GitHub) or iid (GitLab).
    pub number: u64,
    /// Who closed it.
    pub closed_by: User,
}

/// A deployment waits for tollgate's approval (GitHub's custom deployment protection rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRequest {
    /// The repository.
    pub repo: Repo,
    /// The environment deployed to.
    pub environment: String,
    /// The deployment's id.
    pub deployment: Option<u64>,
    /// The commit deployed, when the payload names it.
    pub sha: Option<CommitSha>,
    /// Where the answer goes (an API URL on the forge).
    pub callback_url: String,
}

/// A parsed, verified webhook, reduced to what tollgate acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Event {
    /// The forge checks that the hook works.
    Ping,
    /// A change was opened or moved.
    ChangeUpdated(ChangeUpdate),
    /// A change was closed or merged.
    ChangeClosed(ChangeClosed),
    /// A review (or GitLab approval) changed.
    Review(ReviewEvent),
    /// A comment was created.
    CommentCreated(CommentEvent),
    /// A check re-run was requested.
    CheckRerequested(CheckRerequest),
    /// An issue was closed.
    IssueClosed(IssueClosed),
    /// A deployment waits for tollgate's approval.
    DeploymentRequested(DeploymentRequest),
    /// A well-formed delivery tollgate deliberately does not act on.
    Ignored {
        /// Why, for logs and the HTTP response.
        reason: String,
    },
}

impl Event {
    /// Builds an [`Event::Ignored`].
    pub fn ignored(reason: impl Into<String>) -> Self {
        Event::Ignored {
            reason: reason.into(),
        }
    }

    /// A short, stable name of the variant, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Ping => "ping",
            Event::ChangeUpdated(_) => "change_updated",
            Event::ChangeClosed(_) => "change_closed",
            Event::Review(_) => "review",
            Event::CommentCreated(_) => "comment_created",
            Event::CheckRerequested(_) => "check_rerequested",
            Event::IssueClosed(_) => "issue_closed",
            Event::DeploymentRequested(_) => "deployment_requested",
            Event::Ignored { .. } => "ignored",
        }
    }

    /// The change this event is about, when it names exactly one.
    pub fn change(&self) -> Option<&ChangeRef> {
        match self {
            Event::ChangeUpdated(e) => Some(&e.change),
            Event::ChangeClosed(e) => Some(&e.change),
            Event::Review(e) => Some(&e.change),
            Event::CommentCreated(e) => Some(&e.change),
            Event::Ping
            | Event::CheckRerequested(_)
            | Event::IssueClosed(_)
            | Event::DeploymentRequested(_)
            | Event::Ignored { .. } => None,
        }
    }
}

/// One accepted delivery: the event plus where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The forge.
    pub forge: Forge,
    /// The forge's delivery id, when it sent one (used for idempotency).
    pub id: Option<DeliveryId>,
    /// The raw event name from the forge's header (`pull_request`, `Merge Request Hook`).
    pub event_name: String,
    /// The parsed event.
    pub event: Event,
}
