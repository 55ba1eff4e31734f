//! Gathering the facts of one pull request from GitHub: the policy at the base commit, the
//! changed files, reviews, commits, comments, the files the policy reads, and who holds
//! which role and may write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use serde::Deserialize;

use super::api::{self, ApiError, FileAt};
use crate::forge::plan;
use crate::policy::Policy;
use crate::policy::facts::{ChangeFacts, ChangedFile, Comment, FileStatus, Review, ReviewVerdict};
use crate::policy::model::POLICY_PATH;

/// GitHub lists at most this many files of a pull request.
pub const MAX_LISTED_FILES: usize = 3_000;
/// GitHub lists at most this many commits of a pull request.
pub const MAX_LISTED_COMMITS: usize = 250;
/// How long a collaborator permission or team membership is trusted before asking again.
const MEMBERSHIP_TTL: Duration = Duration::from_secs(300);

/// Why facts could not be gathered. Every variant ends in a non-success check.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// GitHub could not be asked.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// GitHub lists fewer files than the pull request has: tollgate cannot see the change.
    #[error(
        "GitHub reports {reported} changed files but lists only {listed} (its cap is {MAX_LISTED_FILES}); tollgate cannot judge a change it cannot see. Split the pull request."
    )]
    TooManyFiles {
        /// Files GitHub says changed.
        reported: usize,
        /// Files it listed.
        listed: usize,
    },
    /// GitHub lists fewer commits than the pull request has.
    #[error(
        "the pull request has {reported} commits but GitHub lists only {MAX_LISTED_COMMITS}; tollgate cannot tell who built it. Squash or split it."
    )]
    TooManyCommits {
        /// Commits GitHub says the PR has.
        reported: usize,
    },
}

pub use crate::forge::PolicyAt;

/// A pull request as GitHub describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    /// Number.
    pub number: u64,
    /// `open` or `closed`.
    pub state: String,
    /// Author.
    pub user: Login,
    /// Head.
    pub head: BranchRef,
    /// Base.
    pub base: BranchRef,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Description.
    pub body: Option<String>,
    /// Files changed, as GitHub counts them.
    #[serde(default)]
    pub changed_files: usize,
    /// Commits, as GitHub counts them.
    #[serde(default)]
    pub commits: usize,
    /// The PR's page.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// GraphQL node id (the revert mutation names the PR by it).
    #[serde(default)]
    pub node_id: Option<String>,
    /// Whether it was merged.
    #[serde(default)]
    pub merged: bool,
    /// When it was merged.
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
    /// Who merged it.
    #[serde(default)]
    pub merged_by: Option<Login>,
    /// The commit the merge made on the base branch (merge, squash or last rebased commit).
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
}

/// `{ "login": … }`.
#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    /// The login.
    pub login: String,
}

/// A branch and commit.
#[derive(Debug, Clone, Deserialize)]
pub struct BranchRef {
    /// Branch name.
    #[serde(rename = "ref")]
    pub name: String,
    /// Commit.
    pub sha: String,
}

/// A label.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    /// Its name.
    pub name: String,
}

#[derive(Deserialize)]
struct PrFile {
    filename: String,
    status: String,
    previous_filename: Option<String>,
    #[serde(default)]
    additions: u32,
    #[serde(default)]
    deletions: u32,
}

#[derive(Deserialize)]
struct ApiReview {
    user: Option<Login>,
    state: String,
    commit_id: Option<String>,
    submitted_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct ApiCommit {
    sha: String,
    author: Option<Login>,
    committer: Option<Login>,
    commit: CommitDetail,
}

#[derive(Deserialize)]
struct CommitDetail {
    committer: Option<GitSignature>,
}

#[derive(Deserialize)]
struct GitSignature {
    date: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct ApiComment {
    id: u64,
    user: Option<Login>,
    body: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Compare {
    status: Option<String>,
    #[serde(default)]
    files: Vec<PrFile>,
}

/// GitHub lists at most this many files in a comparison.
const MAX_COMPARE_FILES: usize = 300;

/// The latest read of a path: its contents, the commit it was read at, and its ETag.
#[derive(Clone)]
struct Latest {
    file: FileAt,
    sha: String,
    etag: Option<String>,
}

/// A shared list of paths.
type Paths = Arc<Vec<String>>;

/// (repository, path, commit); for comparisons (repository, from, to).
type FileKey = (String, String, String);

/// A comment already on the pull request (for finding the sticky comment without listing
/// the comments a second time).
#[derive(Debug, Clone)]
pub struct ExistingComment {
    /// Its id.
    pub id: u64,
    /// Its author's login.
    pub author: String,
    /// Its text.
    pub body: String,
    /// When it was created.
    pub at: DateTime<Utc>,
}

/// What [`Gatherer::facts`] found.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The facts for the engine.
    pub facts: ChangeFacts,
    /// Every comment on the pull request, tollgate's own included.
    pub comments: Vec<ExistingComment>,
}

/// Caches shared by every evaluation: file contents by (repo, path, commit) — immutable, with
/// their ETags — parsed policies by contents, permissions and memberships with a short TTL.
#[derive(Default)]
pub struct Caches {
    files: Mutex<HashMap<FileKey, (FileAt, Option<String>)>>,
    /// The latest version read of each (repository, path), whatever the commit: its ETag is
    /// sent when the same path is read at a new commit, and a 304 reuses its contents.
    latest: Mutex<HashMap<(String, String), Latest>>,
    trees: Mutex<HashMap<(String, String), Paths>>,
    /// Files changed between two commits (None: not a descendant, or truncated).
    compares: Mutex<HashMap<FileKey, Option<Paths>>>,
    policies: Mutex<HashMap<String, PolicyAt>>,
    permissions: Mutex<HashMap<(String, String), (bool, Instant)>>,
    memberships: Mutex<HashMap<(String, String), (bool, Instant)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads GitHub for one repository through one client.
pub struct Gatherer<'a> {
    /// The installation's (or token's) client.
    pub client: &'a Octocrab,
    /// `owner/name`.
    pub repo: &'a str,
    /// Shared caches.
    pub caches: &'a Caches,
}

impl Gatherer<'_> {
    /// The pull request.
    pub async fn pull_request(&self, number: u64) -> Result<PullRequest, ApiError> {
        Ok(self
            .client
            .get(format!("/repos/{}/pulls/{number}", self.repo), None::<&()>)
            .await?)
    }

    /// A file at a commit, from the cache when it was read before (a commit never changes; the
    /// ETag still lets GitHub answer 304 if the entry must be confirmed).
    pub async fn file(&self, path: &str, sha: &str) -> Result<FileAt, ApiError> {
        let key = (self.repo.to_owned(), path.to_owned(), sha.to_owned());
        if let Some((file, _)) = lock(&self.caches.files).get(&key) {
            return Ok(file.clone());
        }
        let latest_key = (self.repo.to_owned(), path.to_owned());
        let latest = lock(&self.caches.latest).get(&latest_key).cloned();
        // Unchanged since a commit it was read at (by a comparison already made for staleness):
        // the same contents, with no request at all.
        if let Some(latest) = &latest {
            let compare = (self.repo.to_owned(), latest.sha.clone(), sha.to_owned());
            let unchanged = lock(&self.caches.compares)
                .get(&compare)
                .and_then(Option::as_ref)
                .is_some_and(|changed| !changed.iter().any(|p| p == path));
            if unchanged {
                lock(&self.caches.files).insert(key, (latest.file.clone(), None));
                return Ok(latest.file.clone());
            }
        }
        let etag = latest.as_ref().and_then(|l| l.etag.as_deref());
        let file = match api::read_file(self.client, self.repo, path, sha, etag).await? {
            Some((file, etag)) => file_with(etag, file, sha, &latest_key, self.caches),
            // 304: the same representation as the latest read of this path.
            None => match latest {
                Some(latest) => latest.file,
                None => FileAt::Missing,
            },
        };
        lock(&self.caches.files).insert(key, (file.clone(), None));
        Ok(file)
    }

    /// The policy at the base commit (parsed once per distinct contents).
    pub async fn policy(&self, base_sha: &str) -> Result<PolicyAt, ApiError> {
        let text = match self.file(POLICY_PATH, base_sha).await? {
            FileAt::Missing => return Ok(PolicyAt::Absent),
            FileAt::Text(text) => text,
        };
        if let Some(parsed) = lock(&self.caches.policies).get(&text) {
            return Ok(parsed.clone());
        }
        let parsed = PolicyAt::parse(&text);
        lock(&self.caches.policies).insert(text, parsed.clone());
        Ok(parsed)
    }

    async fn permission_writes(&self, login: &str) -> Result<bool, ApiError> {
        #[derive(Deserialize)]
        struct Permission {
            permission: String,
        }
        let key = (self.repo.to_owned(), login.to_lowercase());
        if let Some((writes, at)) = lock(&self.caches.permissions).get(&key)
            && at.elapsed() < MEMBERSHIP_TTL
        {
            return Ok(*writes);
        }
        let route = format!(
            "/repos/{}/collaborators/{}/permission",
            self.repo,
            api::encode_component(login)
        );
        let writes = match self
            .client
            .get::<Permission, _, _>(route, None::<&()>)
            .await
        {
            Ok(p) => matches!(p.permission.as_str(), "admin" | "maintain" | "write"),
            Err(error) if is_not_found(&error) => false,
            Err(error) => return Err(error.into()),
        };
        lock(&self.caches.permissions).insert(key, (writes, Instant::now()));
        Ok(writes)
    }

    async fn active_member(&self, team: &str, login: &str) -> Result<bool, ApiError> {
        #[derive(Deserialize)]
        struct Membership {
            state: String,
        }
        let key = (team.to_lowercase(), login.to_lowercase());
        if let Some((member, at)) = lock(&self.caches.memberships).get(&key)
            && at.elapsed() < MEMBERSHIP_TTL
        {
            return Ok(*member);
        }
        let Some((org, slug)) = team.trim_start_matches('@').split_once('/') else {
            return Ok(false);
        };
        let route = format!(
            "/orgs/{}/teams/{}/memberships/{}",
            api::encode_component(org),
            api::encode_component(slug),
            api::encode_component(login)
        );
        let member = match self
            .client
            .get::<Membership, _, _>(route, None::<&()>)
            .await
        {
            Ok(m) => m.state == "active",
            Err(error) if is_not_found(&error) => false,
            Err(error) => return Err(error.into()),
        };
        lock(&self.caches.memberships).insert(key, (member, Instant::now()));
        Ok(member)
    }

    /// Gathers everything `evaluate` needs about a pull request under `policy`.
    pub async fn facts(
        &self,
        policy: &Policy,
        pr: &PullRequest,
        own_login: &str,
        now: DateTime<Utc>,
        granted: Option<Comment>,
    ) -> Result<Gathered, GatherError> {
        let number = pr.number;
        let repo = self.repo;
        let files: Vec<PrFile> = api::all_pages(
            self.client,
            &format!("/repos/{repo}/pulls/{number}/files"),
            MAX_LISTED_FILES,
        )
        .await?;
        if files.len() < pr.changed_files {
            return Err(GatherError::TooManyFiles {
                reported: pr.changed_files,
                listed: files.len(),
            });
        }
        if pr.commits > MAX_LISTED_COMMITS {
            return Err(GatherError::TooManyCommits {
                reported: pr.commits,
            });
        }
        let commits: Vec<ApiCommit> = api::all_pages(
            self.client,
            &format!("/repos/{repo}/pulls/{number}/commits"),
            MAX_LISTED_COMMITS,
        )
        .await?;
        let reviews: Vec<ApiReview> = api::all_pages(
            self.client,
            &format!("/repos/{repo}/pulls/{number}/reviews"),
            usize::MAX,
        )
        .await?;
        let comments: Vec<ApiComment> = api::all_pages(
            self.client,
            &format!("/repos/{repo}/issues/{number}/comments"),
            usize::MAX,
        )
        .await?;

        let changed: Vec<ChangedFile> = files.iter().map(changed_file).collect();
        let mut facts = ChangeFacts {
            author: pr.user.login.clone(),
            base_ref: pr.base.name.clone(),
            base_sha: pr.base.sha.clone(),
            head_ref: pr.head.name.clone(),
            head_sha: pr.head.sha.clone(),
            files: changed,
            labels: pr.labels.iter().map(|l| l.name.clone()).collect(),
            body: pr.body.clone().unwrap_or_default(),
            base_contents: BTreeMap::new(),
            head_contents: BTreeMap::new(),
            head_paths: BTreeSet::new(),
            reviews: Vec::new(),
            comments: Vec::new(),
            commit_authors: commit_people(&commits),
            teams: BTreeMap::new(),
            write_access: BTreeSet::new(),
            now,
            merged: false,
            overdue_reviews: Vec::new(),
        };
        facts.reviews = self.reviews(&reviews, &pr.head.sha).await?;
        facts.comments = comments_of(&comments, &commits, &pr.head.sha, own_login);
        // A command tollgate holds on someone's behalf (a rollback's bypass of its revert) is
        // read with theirs, in time order, and its author's roles and access are looked up.
        if let Some(granted) = granted {
            let at = facts.comments.partition_point(|c| c.at <= granted.at);
            facts.comments.insert(at, granted);
        }
        self.contents(policy, &mut facts).await?;
        self.people(policy, &mut facts).await?;
        let comments = comments
            .into_iter()
            .filter_map(|c| {
                Some(ExistingComment {
                    id: c.id,
                    author: c.user?.login,
                    body: c.body.unwrap_or_default(),
                    at: c.created_at,
                })
            })
            .collect();
        Ok(Gathered { facts, comments })
    }

    /// Reviews with, for each one given on an older commit, the files changed since.
    async fn reviews(&self, reviews: &[ApiReview], head: &str) -> Result<Vec<Review>, ApiError> {
        let mut out = Vec::new();
        for review in reviews {
            let (Some(user), Some(commit), Some(at)) =
                (&review.user, &review.commit_id, review.submitted_at)
            else {
                continue; // pending reviews have no submission time
            };
            let state = match review.state.to_ascii_uppercase().as_str() {
                "APPROVED" => ReviewVerdict::Approved,
                "CHANGES_REQUESTED" => ReviewVerdict::ChangesRequested,
                "DISMISSED" => ReviewVerdict::Dismissed,
                _ => ReviewVerdict::Commented,
            };
            let changed_after = if commit == head {
                Some(Vec::new())
            } else {
                self.changed_between(commit, head)
                    .await?
                    .map(|files| files.to_vec())
            };
            out.push(Review {
                reviewer: user.login.clone(),
                state,
                commit: commit.clone(),
                at,
                changed_after,
            });
        }
        Ok(out)
    }

    /// Files changed from `from` to `to`, when `to` descends from `from` (`None` after a force
    /// push or when GitHub truncates the list: then nothing can be said). Cached.
    async fn changed_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<Arc<Vec<String>>>, ApiError> {
        let key = (self.repo.to_owned(), from.to_owned(), to.to_owned());
        if let Some(known) = lock(&self.caches.compares).get(&key) {
            return Ok(known.clone());
        }
        let compare: Compare = self
            .client
            .get(
                format!("/repos/{}/compare/{from}...{to}", self.repo),
                None::<&()>,
            )
            .await?;
        let descends = matches!(compare.status.as_deref(), Some("ahead" | "identical"));
        let complete = compare.files.len() < MAX_COMPARE_FILES;
        let files = (descends && complete).then(|| {
            Arc::new(
                compare
                    .files
                    .iter()
                    .flat_map(|f| {
                        std::iter::once(f.filename.clone()).chain(f.previous_filename.clone())
                    })
                    .collect::<Vec<_>>(),
            )
        });
        lock(&self.caches.compares).insert(key, files.clone());
        Ok(files)
    }

    /// Reads the files the policy looks into (see [`plan::read_plan`]): metric files,
    /// key-rule files, and evidence documents, at base and head.
    async fn contents(&self, policy: &Policy, facts: &mut ChangeFacts) -> Result<(), ApiError> {
        let plan = plan::read_plan(policy, &facts.files);
        if plan.needs_base_tree {
            let tree = self.tree(&facts.base_sha).await?;
            let found = plan::untouched_evidence(policy, &facts.files, &tree);
            facts.head_paths.extend(found.paths);
            // Untouched: the same at the head as at the base, where it is cached across pushes.
            for path in found.documents {
                if let FileAt::Text(text) = self.file(&path, &facts.base_sha).await? {
                    facts.head_contents.insert(path, text);
                }
            }
        }
        for path in plan.base {
            if let FileAt::Text(text) = self.file(&path, &facts.base_sha).await? {
                facts.base_contents.insert(path, text);
            }
        }
        for path in plan.head {
            if let FileAt::Text(text) = self.file(&path, &facts.head_sha).await? {
                facts.head_contents.insert(path, text);
            }
        }
        Ok(())
    }

    /// Every path at a commit (the git trees API; cached: a commit never changes).
    async fn tree(&self, sha: &str) -> Result<Arc<Vec<String>>, ApiError> {
        #[derive(Deserialize)]
        struct Tree {
            tree: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            path: String,
            #[serde(rename = "type")]
            kind: String,
        }
        let key = (self.repo.to_owned(), sha.to_owned());
        if let Some(paths) = lock(&self.caches.trees).get(&key) {
            return Ok(Arc::clone(paths));
        }
        let tree: Tree = self
            .client
            .get(
                format!("/repos/{}/git/trees/{sha}?recursive=1", self.repo),
                None::<&()>,
            )
            .await?;
        let paths: Arc<Vec<String>> = Arc::new(
            tree.tree
                .into_iter()
                .filter(|e| e.kind == "blob")
                .map(|e| e.path)
                .collect(),
        );
        lock(&self.caches.trees).insert(key, Arc::clone(&paths));
        Ok(paths)
    }

    /// Who may write, and who of the people involved belongs to the policy's teams. Only the
    /// people whose approval, veto or command matters are looked up.
    async fn people(&self, policy: &Policy, facts: &mut ChangeFacts) -> Result<(), ApiError> {
        let people = plan::people_involved(facts);
        let teams = plan::policy_teams(policy);
        for login in &people {
            if self.permission_writes(login).await? {
                facts.write_access.insert(login.clone());
            }
            for team in &teams {
                if self.active_member(team, login).await? {
                    facts
                        .teams
                        .entry((*team).to_owned())
                        .or_default()
                        .insert(login.clone());
                }
            }
        }
        Ok(())
    }
}

/// Remembers a fresh read as the latest version of its path.
fn file_with(
    etag: Option<String>,
    file: FileAt,
    sha: &str,
    key: &(String, String),
    caches: &Caches,
) -> FileAt {
    let latest = Latest {
        file: file.clone(),
        sha: sha.to_owned(),
        etag,
    };
    lock(&caches.latest).insert(key.clone(), latest);
    file
}

fn is_not_found(error: &octocrab::Error) -> bool {
    matches!(error, octocrab::Error::GitHub { source, .. } if source.status_code == http::StatusCode::NOT_FOUND)
}

fn changed_file(file: &PrFile) -> ChangedFile {
    ChangedFile {
        path: file.filename.clone(),
        status: match file.status.as_str() {
            "added" => FileStatus::Added,
            "removed" => FileStatus::Removed,
            "renamed" => FileStatus::Renamed,
            // modified, changed, copied, unchanged: the file is there and differs.
            _ => FileStatus::Modified,
        },
        previous_path: file.previous_filename.clone(),
        additions: file.additions,
        deletions: file.deletions,
    }
}

/// Everyone who authored or committed a commit (an update-branch merge made by a reviewer
/// makes them a contributor too). GitHub's own `web-flow` committer is nobody.
fn commit_people(commits: &[ApiCommit]) -> BTreeSet<String> {
    commits
        .iter()
        .flat_map(|c| [c.author.as_ref(), c.committer.as_ref()])
        .flatten()
        .map(|l| l.login.clone())
        .filter(|l| l != "web-flow")
        .collect()
}

/// Comments by people (tollgate's own are skipped), each with the head it was written
/// against. GitHub does not say when a commit was pushed; a comment older than the head
/// commit's committer date is taken as written for an older head (fail closed: a bypass given
/// then does not cover the new head).
fn comments_of(
    comments: &[ApiComment],
    commits: &[ApiCommit],
    head: &str,
    own_login: &str,
) -> Vec<Comment> {
    let head_date = commits
        .iter()
        .find(|c| c.sha == head)
        .and_then(|c| c.commit.committer.as_ref())
        .and_then(|s| s.date);
    comments
        .iter()
        .filter_map(|c| {
            let author = c.user.as_ref()?.login.clone();
            if author.eq_ignore_ascii_case(own_login) {
                return None;
            }
            let for_head = head_date.is_none_or(|date| c.created_at >= date);
            Some(Comment {
                author,
                body: c.body.clone().unwrap_or_default(),
                at: c.created_at,
                head_sha: if for_head {
                    head.to_owned()
                } else {
                    format!("before {head}")
                },
                edited: c.updated_at > c.created_at,
            })
        })
        .collect()
}
