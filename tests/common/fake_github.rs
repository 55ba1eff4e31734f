//! A stateful, in-process fake of GitHub's REST API v3 for integration tests, on wiremock
//! (the shape of rust-lang/bors' fake GitHub).
//!
//! One catch-all [`Mock`] routes every request by method and path against shared state,
//! records it, checks it against GitHub's own OpenAPI description (the trimmed
//! `github-openapi-subset.json` of the external fixtures) and answers as GitHub does: JSON
//! bodies with the fields clients read, `Link` pagination, list caps, `ETag`s and
//! `304 Not Modified`, and GitHub's status codes (200/201/204/304/401/403/404/422).
//!
//! Include it as `common::fake_github` (with `mod common;`), or on its own with
//! `#[path = "common/fake_github.rs"] mod fake_github;`.
//!
//! Time: commits, comments, check runs and statuses are stamped by a logical clock that starts
//! one hour before the real time and ticks one second per stamped event, so the order of a
//! test's steps is the order of their timestamps ([`FakeGitHub::now`], [`FakeGitHub::advance`]).
//! Installation tokens expire by the real clock, because clients compare them with it.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// GitHub lists at most this many files of a pull request, whatever `changed_files` says.
pub const PR_FILES_CAP: usize = 3_000;
/// GitHub lists at most this many commits of a pull request.
pub const PR_COMMITS_CAP: usize = 250;
/// The compare API lists at most this many files.
pub const COMPARE_FILES_CAP: usize = 300;
/// The compare API lists at most this many commits.
pub const COMPARE_COMMITS_CAP: usize = 250;
/// GitHub keeps at most this many statuses per commit and context.
pub const STATUSES_PER_CONTEXT_CAP: usize = 1_000;
/// Routes the fake serves although the OpenAPI subset lacks them (method, path template).
pub const KNOWN_ADDITIONS: &[(&str, &str)] = &[
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"),
    // GraphQL has one endpoint, outside the REST description.
    ("POST", "/graphql"),
    ("GET", "/repos/{owner}/{repo}/issues"),
];

/// Items per page when the request does not say.
const DEFAULT_PER_PAGE: usize = 30;
/// GitHub's largest page.
const MAX_PER_PAGE: usize = 100;
/// Longest issue comment GitHub accepts, in characters.
const COMMENT_BODY_MAX_CHARS: usize = 65_536;
/// Files larger than this come back from the contents API without their content.
const CONTENTS_INLINE_MAX_BYTES: usize = 1_048_576;
/// Requests per hour an installation may make (reported in the rate-limit headers).
const RATE_LIMIT_PER_HOUR: usize = 5_000;
/// How long a minted installation token lives.
const TOKEN_LIFETIME_SECS: i64 = 3_600;
/// GitHub refuses App JWTs that expire further ahead than this (plus a little clock drift).
const JWT_MAX_LIFETIME_SECS: i64 = 600 + 60;
/// The login the fake answers `GET /user` with until [`FakeGitHub::set_user`] is called.
const DEFAULT_USER: &str = "fake-user";
/// The organisation that owns the fake App.
const APP_OWNER: &str = "fake-app-owner";
/// Where error bodies point, as GitHub's do.
const DOCS_URL: &str = "https://docs.github.com/rest";
/// Line length of base64 content in the contents API.
const BASE64_LINE: usize = 60;
/// The committer GitHub writes on commits it makes itself (merges, reverts, web edits).
const WEB_FLOW: &str = "web-flow";
/// Where GraphQL's authentication error points, as GitHub's does.
const GRAPHQL_AUTH_DOCS_URL: &str =
    "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql";
/// What the fake answers a GraphQL document it does not serve.
const GRAPHQL_UNSUPPORTED: &str = "the fake GitHub's GraphQL API only serves the \
    revertPullRequest mutation, with its input in variables";
/// Repository roles that may be assigned issues (push access).
const PUSH_ROLES: &[&str] = &["write", "maintain", "admin"];
/// The bot that creates the deployments (and their statuses) of workflow jobs.
const ACTIONS_BOT: &str = "github-actions[bot]";
/// The GitHub Actions App's id on github.com.
const ACTIONS_APP_ID: u64 = 15_368;
/// The task of the deployments GitHub Actions creates.
const DEPLOYMENT_TASK: &str = "deploy";
/// The states of a deployment status.
const DEPLOYMENT_STATES: &[&str] = &[
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];
/// Longest comment of a deployment protection rule review, in characters (GitHub documents it
/// for status reports; the fake holds approvals and rejections to it too).
const PROTECTION_COMMENT_MAX_CHARS: usize = 1_024;
/// Status reports an App may post per workflow run and environment.
const PROTECTION_REPORTS_CAP: usize = 10;

// ---------------------------------------------------------------------------------------------
// What tests build and see
// ---------------------------------------------------------------------------------------------

/// A pull request to open with [`FakeGitHub::open_pr`]. `Default` gives PR #1 by `alice`
/// from `feature` into `main` at `base0000`, with no commits (add at least one).
#[derive(Debug, Clone)]
pub struct PrSpec {
    /// The PR number.
    pub number: u64,
    /// The author's login.
    pub author: String,
    /// The title.
    pub title: String,
    /// The description.
    pub body: String,
    /// Label names.
    pub labels: Vec<String>,
    /// The base branch.
    pub base_ref: String,
    /// The base commit; its tree is what [`FakeGitHub::set_file`] seeded for it.
    pub base_sha: String,
    /// The head branch.
    pub head_ref: String,
    /// The commits, oldest first; the last one is the head.
    pub commits: Vec<CommitSpec>,
}

impl Default for PrSpec {
    fn default() -> Self {
        PrSpec {
            number: 1,
            author: "alice".to_owned(),
            title: "A change".to_owned(),
            body: String::new(),
            labels: Vec::new(),
            base_ref: "main".to_owned(),
            base_sha: "base0000".to_owned(),
            head_ref: "feature".to_owned(),
            commits: Vec::new(),
        }
    }
}

/// One commit of a pull request.
#[derive(Debug, Clone, Default)]
pub struct CommitSpec {
    /// Its sha (any unique string).
    pub sha: String,
    /// The author's login.
    pub author: String,
    /// The committer's login (`web-flow` for commits made on github.com).
    pub committer: String,
    /// What it changes, relative to its parent.
    pub files: Vec<FileChange>,
}

impl CommitSpec {
    /// A commit authored and committed by `author`.
    pub fn new(sha: &str, author: &str, files: Vec<FileChange>) -> Self {
        CommitSpec {
            sha: sha.to_owned(),
            author: author.to_owned(),
            committer: author.to_owned(),
            files,
        }
    }
}

/// One file changed by a commit.
#[derive(Debug, Clone, Default)]
pub struct FileChange {
    /// The path after the change.
    pub path: String,
    /// `added`, `modified`, `removed` or `renamed`.
    pub status: String,
    /// The path before a rename.
    pub previous_path: Option<String>,
    /// The new contents (`None`: generated text for added/modified, the old text for renamed).
    pub contents: Option<String>,
}

impl FileChange {
    /// A new file.
    pub fn added(path: &str, contents: &str) -> Self {
        Self::with("added", path, None, Some(contents))
    }

    /// An edited file.
    pub fn modified(path: &str, contents: &str) -> Self {
        Self::with("modified", path, None, Some(contents))
    }

    /// A deleted file.
    pub fn removed(path: &str) -> Self {
        Self::with("removed", path, None, None)
    }

    /// A file moved from `from` to `to`, keeping its contents.
    pub fn renamed(from: &str, to: &str) -> Self {
        Self::with("renamed", to, Some(from), None)
    }

    fn with(status: &str, path: &str, previous: Option<&str>, contents: Option<&str>) -> Self {
        FileChange {
            path: path.to_owned(),
            status: status.to_owned(),
            previous_path: previous.map(str::to_owned),
            contents: contents.map(str::to_owned),
        }
    }
}

/// A request the fake received, with the status it answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path as sent (percent-encoded), without the query.
    pub path: String,
    /// The query pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The JSON body (a JSON string holding the raw text when the body is not JSON).
    pub body: Option<Value>,
    /// The status the fake answered.
    pub status: u16,
}

impl RecordedRequest {
    /// A header's value (the first one), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value (the first one).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An issue comment on a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentView {
    /// Its id.
    pub id: u64,
    /// The PR (issue) number.
    pub number: u64,
    /// The author's login (`<slug>[bot]` for the App).
    pub author: String,
    /// `User` or `Bot`.
    pub author_type: String,
    /// The text.
    pub body: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it was last edited (equal to `created_at` until then).
    pub updated_at: DateTime<Utc>,
    /// Who edited it last, if anyone did.
    pub edited_by: Option<String>,
}

/// A check run and every state it went through.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRunView {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The commit it reports on.
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// The conclusion once completed.
    pub conclusion: Option<String>,
    /// `output.title`.
    pub title: Option<String>,
    /// `output.summary`.
    pub summary: Option<String>,
    /// `output.text`.
    pub text: Option<String>,
    /// Annotations received so far (GitHub appends those of every update).
    pub annotations: Vec<Value>,
    /// How many annotations it has.
    pub annotations_count: usize,
    /// `external_id`.
    pub external_id: Option<String>,
    /// `details_url`.
    pub details_url: Option<String>,
    /// The App that created it.
    pub app_id: u64,
    /// (status, conclusion) after its creation and after each update, in order.
    pub history: Vec<(String, Option<String>)>,
    /// `started_at`, as sent or stamped at creation.
    pub started_at: Option<String>,
    /// `completed_at`, as sent or stamped on completion.
    pub completed_at: Option<String>,
}

/// A commit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    /// Its id.
    pub id: u64,
    /// The commit.
    pub sha: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    /// Its context (`default` when the request gave none).
    pub context: String,
    /// Its description.
    pub description: Option<String>,
    /// Its link.
    pub target_url: Option<String>,
    /// Who posted it.
    pub creator: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// An issue (not a pull request), as [`FakeGitHub::issues`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueView {
    /// Its number (shared with pull requests).
    pub number: u64,
    /// The title.
    pub title: String,
    /// The description (empty when it has none).
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    /// `completed`, `not_planned`, `duplicate` or `reopened`, once it was closed.
    pub state_reason: Option<String>,
    /// Label names, in the order they were added.
    pub labels: Vec<String>,
    /// Assignees' logins.
    pub assignees: Vec<String>,
    /// The author's login (`<slug>[bot]` for the App).
    pub author: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// Who closed it last, while it is closed.
    pub closed_by: Option<String>,
}

/// A pull request, as [`FakeGitHub::pulls`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullView {
    /// Its number.
    pub number: u64,
    /// The title.
    pub title: String,
    /// The description.
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    /// Whether it was merged.
    pub merged: bool,
    /// Whether it is a draft.
    pub draft: bool,
    /// Label names.
    pub labels: Vec<String>,
    /// The author's login (`<slug>[bot]` for the App).
    pub author: String,
    /// The base branch.
    pub base_ref: String,
    /// The head branch.
    pub head_ref: String,
    /// The base commit (`base.sha`).
    pub base_sha: String,
    /// The head commit.
    pub head_sha: String,
    /// The merge commit, once merged.
    pub merge_commit_sha: Option<String>,
}

/// An App's approval or rejection of a workflow run's deployment to an environment (a review
/// of its custom deployment protection rule), as [`FakeGitHub::protection_answers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionAnswer {
    /// The workflow run.
    pub run_id: u64,
    /// `environment_name`, as sent.
    pub environment: String,
    /// `approved` or `rejected`.
    pub state: String,
    /// The comment (empty when the request had none).
    pub comment: String,
    /// When the fake received it.
    pub at: DateTime<Utc>,
}

/// A status report on a deployment protection rule: a review without a `state`, which only
/// posts its comment, as [`FakeGitHub::protection_reports`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionReport {
    /// The workflow run.
    pub run_id: u64,
    /// `environment_name`, as sent.
    pub environment: String,
    /// The comment.
    pub comment: String,
    /// When the fake received it.
    pub at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// The fake
// ---------------------------------------------------------------------------------------------

/// The fake GitHub: a wiremock server plus the state it serves. Every method but
/// [`FakeGitHub::start`] is synchronous and takes `&self`.
pub struct FakeGitHub {
    server: MockServer,
    state: Arc<Mutex<State>>,
    spec: Option<Arc<Spec>>,
}

impl FakeGitHub {
    /// Starts a fake with no repositories, no App and the token user `fake-user`.
    pub async fn start() -> FakeGitHub {
        let server = MockServer::start().await;
        let now = Utc::now();
        let state = Arc::new(Mutex::new(State {
            base_url: server.uri().trim_end_matches('/').to_owned(),
            clock: truncate_to_second(now) - TimeDelta::hours(1),
            next_id: 1_000,
            app: None,
            user: DEFAULT_USER.to_owned(),
            tokens: Vec::new(),
            repos: BTreeMap::new(),
            teams: BTreeMap::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            injections: Vec::new(),
            latency: std::time::Duration::ZERO,
        }));
        let spec = load_spec();
        Mock::given(any())
            .respond_with(Responder {
                state: state.clone(),
                spec: spec.clone(),
                routes: Arc::new(fake_routes()),
            })
            .mount(&server)
            .await;
        FakeGitHub {
            server,
            state,
            spec,
        }
    }

    /// The API's base URL, without a trailing slash (give it to the client as its API URL).
    pub fn url(&self) -> String {
        self.lock().base_url.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // --- identity ----------------------------------------------------------------------------

    /// Makes the fake a GitHub App: `GET /app` answers `slug` and `app_id`, JWTs whose `iss`
    /// is `app_id` are accepted, and one installation ([`FakeGitHub::installation_id`]) covers
    /// every repository.
    pub fn set_app(&self, slug: &str, app_id: u64) {
        self.lock().app = Some(AppInfo {
            slug: slug.to_owned(),
            id: app_id,
        });
    }

    /// The id of the App's installation (the one `GET /repos/{o}/{r}/installation` returns).
    pub fn installation_id(&self) -> u64 {
        self.lock().app.as_ref().map_or(0, AppInfo::installation_id)
    }

    /// A JWT the fake accepts for the App (unsigned: the fake checks `iss` and `exp` only).
    pub fn app_jwt(&self) -> String {
        let state = self.lock();
        let app = state.app.as_ref().expect("call set_app first");
        unsigned_jwt(app.id, Utc::now().timestamp())
    }

    /// The user that any non-App token authenticates as (token mode), and `GET /user` answers.
    pub fn set_user(&self, login: &str) {
        self.lock().user = login.to_owned();
    }

    /// How many installation tokens were minted.
    pub fn tokens_minted(&self) -> usize {
        self.lock().tokens.len()
    }

    // --- repositories and pull requests ------------------------------------------------------

    /// Sets a file of the tree at `sha` (a base commit, or an override on a PR commit).
    pub fn set_file(&self, repo: &str, sha: &str, path: &str, contents: &str) {
        let mut state = self.lock();
        let repo = state.repo_entry(repo);
        repo.seeded
            .entry(sha.to_owned())
            .or_default()
            .insert(path.to_owned(), contents.to_owned());
    }

    /// Points a branch at a commit (open_pr, push and retarget move branches themselves).
    pub fn set_branch(&self, repo: &str, branch: &str, sha: &str) {
        let mut state = self.lock();
        let repo = state.repo_entry(repo);
        repo.seeded.entry(sha.to_owned()).or_default();
        repo.branches.insert(branch.to_owned(), sha.to_owned());
    }

    /// Opens a pull request; its head is the last commit's sha. The base branch is created at
    /// `base_sha` if it does not exist; the head branch points at the head.
    pub fn open_pr(&self, repo: &str, pr: PrSpec) {
        assert!(
            !pr.commits.is_empty(),
            "PR #{} needs at least one commit",
            pr.number
        );
        let mut state = self.lock();
        let now = state.stamp();
        let dates: Vec<DateTime<Utc>> = pr.commits.iter().map(|_| state.stamp()).collect();
        let repo_state = state.repo_entry(repo);
        assert!(
            !repo_state.number_taken(pr.number),
            "#{} already exists in {repo}",
            pr.number
        );
        repo_state.seeded.entry(pr.base_sha.clone()).or_default();
        repo_state
            .branches
            .entry(pr.base_ref.clone())
            .or_insert_with(|| pr.base_sha.clone());
        let mut shas = Vec::new();
        let mut parent = pr.base_sha.clone();
        for (commit, date) in pr.commits.into_iter().zip(dates) {
            parent = repo_state.add_commit(commit, parent, date);
            shas.push(parent.clone());
        }
        repo_state.branches.insert(pr.head_ref.clone(), parent);
        let mut issue = IssueRecord::new(pr.number, &pr.author, &pr.title, now);
        issue.body = pr.body;
        issue.labels = pr.labels;
        let record = PullRecord::new(issue, (pr.base_ref, pr.base_sha), pr.head_ref, shas);
        repo_state.prs.insert(pr.number, record);
    }

    /// Pushes a commit onto a pull request's head branch (it becomes the head).
    pub fn push(&self, repo: &str, number: u64, commit: CommitSpec) {
        let mut state = self.lock();
        let now = state.stamp();
        let repo_state = state.repo_mut(repo);
        let head = repo_state.pr(number).head().to_owned();
        let sha = repo_state.add_commit(commit, head, now);
        let pr = repo_state.pr_mut(number);
        pr.commits.push(sha.clone());
        pr.issue.updated_at = now;
        let branch = pr.head_ref.clone();
        repo_state.branches.insert(branch, sha);
    }

    /// Adds a commit on top of a branch (its `files` change the tip's tree) and moves the
    /// branch to it; an open pull request from that branch gets it as its new head. An empty
    /// `commit.sha` gets a generated one, an empty committer is the author. Returns the sha.
    pub fn commit_to_branch(&self, repo: &str, branch: &str, mut commit: CommitSpec) -> String {
        let mut state = self.lock();
        let now = state.stamp();
        let repo_state = state.repo_mut(repo);
        let tip = repo_state
            .branches
            .get(branch)
            .cloned()
            .unwrap_or_else(|| panic!("no branch {branch} in {repo}"));
        if commit.sha.is_empty() {
            commit.sha = repo_state.fresh_sha(&format!("{branch} {tip} {now}"));
        }
        if commit.committer.is_empty() {
            commit.committer = commit.author.clone();
        }
        let sha = repo_state.add_commit(commit, tip, now);
        repo_state.advance_branch(branch, &sha, now);
        sha
    }

    /// The commit a branch points at.
    pub fn branch_tip(&self, repo: &str, branch: &str) -> Option<String> {
        let state = self.lock();
        let repo = state.repos.get(&repo_key(repo))?;
        repo.branches.get(branch).cloned()
    }

    /// The files (path → contents) at a commit or branch.
    pub fn tree_at(&self, repo: &str, sha: &str) -> BTreeMap<String, String> {
        let state = self.lock();
        state
            .repos
            .get(&repo_key(repo))
            .and_then(|r| r.tree_at(&r.resolve(sha)?))
            .unwrap_or_else(|| panic!("no commit or branch {sha} in {repo}"))
    }

    /// Changes a pull request's base branch and commit.
    pub fn retarget(&self, repo: &str, number: u64, base_ref: &str, base_sha: &str) {
        let mut state = self.lock();
        let now = state.stamp();
        let repo_state = state.repo_mut(repo);
        repo_state.seeded.entry(base_sha.to_owned()).or_default();
        repo_state
            .branches
            .entry(base_ref.to_owned())
            .or_insert_with(|| base_sha.to_owned());
        let pr = repo_state.pr_mut(number);
        pr.base_ref = base_ref.to_owned();
        pr.base_sha = base_sha.to_owned();
        pr.issue.updated_at = now;
    }

    /// Replaces a pull request's labels.
    pub fn set_labels(&self, repo: &str, number: u64, labels: &[&str]) {
        let mut state = self.lock();
        let pr = state.repo_mut(repo).pr_mut(number);
        pr.issue.labels = labels.iter().map(|l| (*l).to_owned()).collect();
    }

    /// Replaces a pull request's description.
    pub fn set_body(&self, repo: &str, number: u64, body: &str) {
        let mut state = self.lock();
        let now = state.stamp();
        let pr = state.repo_mut(repo).pr_mut(number);
        pr.issue.body = body.to_owned();
        pr.issue.updated_at = now;
    }

    /// Closes a pull request; `merged` merges it as its author does with
    /// [`FakeGitHub::merge_pr`] (a merge commit, the base branch moves).
    pub fn close_pr(&self, repo: &str, number: u64, merged: bool) {
        let mut state = self.lock();
        let now = state.stamp();
        let repo_state = state.repo_mut(repo);
        if merged {
            let author = repo_state.pr(number).issue.author.clone();
            repo_state.merge(number, &author, now);
            return;
        }
        repo_state.pr_mut(number).issue.close(None, now);
    }

    /// Merges an open pull request as GitHub's merge button does: a merge commit whose parents
    /// are the base branch's tip and the PR's head, whose tree is the tip's tree with the PR's
    /// changes applied, committed by `web-flow`; the base branch moves to it, and the PR is
    /// closed and merged by `merged_by` at [`FakeGitHub::now`]. Returns the merge commit's sha.
    pub fn merge_pr(&self, repo: &str, number: u64, merged_by: &str) -> String {
        let mut state = self.lock();
        let now = state.stamp();
        state.repo_mut(repo).merge(number, merged_by, now)
    }

    /// Every pull request of a repository (opened by [`FakeGitHub::open_pr`] or through the
    /// API), by number.
    pub fn pulls(&self, repo: &str) -> Vec<PullView> {
        let state = self.lock();
        let Some(repo) = state.repos.get(&repo_key(repo)) else {
            return Vec::new();
        };
        repo.prs.values().map(PullRecord::view).collect()
    }

    // --- issues ------------------------------------------------------------------------------

    /// Every issue of a repository (not its pull requests), by number.
    pub fn issues(&self, repo: &str) -> Vec<IssueView> {
        let state = self.lock();
        let Some(repo) = state.repos.get(&repo_key(repo)) else {
            return Vec::new();
        };
        repo.issues.values().map(IssueRecord::view).collect()
    }

    /// Closes an issue as `by` (someone other than the client), as completed.
    pub fn close_issue(&self, repo: &str, number: u64, by: &str) {
        let mut state = self.lock();
        let now = state.stamp();
        let repo_state = state.repo_mut(repo);
        let issue = repo_state
            .issues
            .get_mut(&number)
            .unwrap_or_else(|| panic!("no issue #{number} in {repo}"));
        issue.close(Some(by), now);
        issue.state_reason = Some("completed".to_owned());
    }

    // --- reviews -----------------------------------------------------------------------------

    /// Adds a submitted review (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`, or
    /// `PENDING`, which has no submission time) and returns its id.
    pub fn add_review(
        &self,
        repo: &str,
        number: u64,
        reviewer: &str,
        state: &str,
        commit_sha: &str,
        at: DateTime<Utc>,
    ) -> u64 {
        const STATES: &[&str] = &[
            "APPROVED",
            "CHANGES_REQUESTED",
            "COMMENTED",
            "DISMISSED",
            "PENDING",
        ];
        assert!(STATES.contains(&state), "unknown review state {state}");
        let mut guard = self.lock();
        let id = guard.new_id();
        guard
            .repo_mut(repo)
            .pr_mut(number)
            .reviews
            .push(ReviewRecord {
                id,
                user: reviewer.to_owned(),
                state: state.to_owned(),
                commit_id: commit_sha.to_owned(),
                submitted_at: (state != "PENDING").then_some(at),
            });
        id
    }

    /// Dismisses a review (its state becomes `DISMISSED`).
    pub fn dismiss_review(&self, repo: &str, number: u64, review_id: u64) {
        let mut state = self.lock();
        let pr = state.repo_mut(repo).pr_mut(number);
        let review = pr
            .reviews
            .iter_mut()
            .find(|r| r.id == review_id)
            .unwrap_or_else(|| panic!("no review {review_id} on PR #{number}"));
        review.state = "DISMISSED".to_owned();
    }

    // --- people ------------------------------------------------------------------------------

    /// Sets a user's permission on a repository: `admin`, `maintain`, `write`, `triage`,
    /// `read` or `none` (everyone else has `read`).
    pub fn set_permission(&self, repo: &str, user: &str, permission: &str) {
        const LEVELS: &[&str] = &["admin", "maintain", "write", "triage", "read", "none"];
        assert!(
            LEVELS.contains(&permission),
            "unknown permission {permission}"
        );
        let mut state = self.lock();
        state
            .repo_entry(repo)
            .permissions
            .insert(user.to_lowercase(), permission.to_owned());
    }

    /// Makes `members` the active members of team `org/slug` (replacing earlier members).
    pub fn set_team(&self, org: &str, slug: &str, members: &[&str]) {
        let mut state = self.lock();
        let team = state
            .teams
            .entry((org.to_lowercase(), slug.to_lowercase()))
            .or_default();
        team.clear();
        for member in members {
            team.insert(member.to_lowercase(), "active");
        }
    }

    /// Adds `user` to team `org/slug` with an invitation not yet accepted (`pending`).
    pub fn set_team_pending(&self, org: &str, slug: &str, user: &str) {
        let mut state = self.lock();
        state
            .teams
            .entry((org.to_lowercase(), slug.to_lowercase()))
            .or_default()
            .insert(user.to_lowercase(), "pending");
    }

    // --- comments ----------------------------------------------------------------------------

    /// Adds a comment by `author` (someone other than the client) on a pull request or an
    /// issue and returns its id.
    pub fn add_comment(&self, repo: &str, number: u64, author: &str, body: &str) -> u64 {
        let mut state = self.lock();
        let (id, now) = (state.new_id(), state.stamp());
        let repo_state = state.repo_mut(repo);
        assert!(
            repo_state.number_taken(number),
            "no PR or issue #{number} in {repo}"
        );
        repo_state.comments.push(CommentView {
            id,
            number,
            author: author.to_owned(),
            author_type: user_type(author).to_owned(),
            body: body.to_owned(),
            created_at: now,
            updated_at: now,
            edited_by: None,
        });
        id
    }

    /// Edits a comment as its author (its `updated_at` moves).
    pub fn edit_comment(&self, repo: &str, id: u64, new_body: &str) {
        let author = self.comment(repo, id).author;
        self.edit_comment_as(repo, id, &author, new_body);
    }

    /// Edits a comment as `editor` (a privileged user may edit anyone's comment).
    pub fn edit_comment_as(&self, repo: &str, id: u64, editor: &str, new_body: &str) {
        let mut state = self.lock();
        let now = state.stamp();
        let comment = state
            .repo_mut(repo)
            .comment_mut(id)
            .unwrap_or_else(|| panic!("no comment {id} in {repo}"));
        comment.body = new_body.to_owned();
        comment.updated_at = now;
        comment.edited_by = Some(editor.to_owned());
    }

    /// The comments of a pull request or an issue, oldest first.
    pub fn comments(&self, repo: &str, number: u64) -> Vec<CommentView> {
        let state = self.lock();
        state.repos.get(&repo_key(repo)).map_or_else(Vec::new, |r| {
            r.comments
                .iter()
                .filter(|c| c.number == number)
                .cloned()
                .collect()
        })
    }

    fn comment(&self, repo: &str, id: u64) -> CommentView {
        let state = self.lock();
        state
            .repos
            .get(&repo_key(repo))
            .and_then(|r| r.comments.iter().find(|c| c.id == id).cloned())
            .unwrap_or_else(|| panic!("no comment {id} in {repo}"))
    }

    // --- checks and statuses -----------------------------------------------------------------

    /// Every check run of a repository, by id.
    pub fn check_runs(&self, repo: &str) -> Vec<CheckRunView> {
        let state = self.lock();
        state
            .repos
            .get(&repo_key(repo))
            .map_or_else(Vec::new, |r| r.check_runs.clone())
    }

    /// Every status posted on a commit, in order.
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<StatusView> {
        let state = self.lock();
        state.repos.get(&repo_key(repo)).map_or_else(Vec::new, |r| {
            r.statuses
                .iter()
                .filter(|s| s.sha == sha)
                .cloned()
                .collect()
        })
    }

    // --- deployments and protection rules ----------------------------------------------------

    /// Adds a deployment of `sha` (named by `r#ref`: a branch, tag or sha) to `environment` and
    /// returns its id. It is what GitHub Actions creates when a job names an environment: task
    /// `deploy`, an empty payload, no description, created by `github-actions[bot]` through the
    /// GitHub Actions App at [`FakeGitHub::now`]; `production_environment` is true for an
    /// environment named `production`. The sha is not checked against the repository's commits.
    pub fn add_deployment(&self, repo: &str, environment: &str, sha: &str, r#ref: &str) -> u64 {
        let mut state = self.lock();
        let (id, now) = (state.new_id(), state.stamp());
        state.repo_entry(repo).deployments.push(DeploymentRecord {
            id,
            sha: sha.to_owned(),
            reference: r#ref.to_owned(),
            task: DEPLOYMENT_TASK.to_owned(),
            environment: environment.to_owned(),
            created_at: now,
            updated_at: now,
            statuses: Vec::new(),
        });
        id
    }

    /// Adds a status to a deployment and returns its id: `error`, `failure`, `inactive`,
    /// `in_progress`, `queued`, `pending` or `success`, by `github-actions[bot]` at
    /// [`FakeGitHub::now`]. The deployment's `updated_at` moves to it; other deployments keep
    /// their statuses (no automatic `inactive` on older ones).
    pub fn add_deployment_status(&self, repo: &str, deployment: u64, state: &str) -> u64 {
        assert!(
            DEPLOYMENT_STATES.contains(&state),
            "unknown deployment state {state}"
        );
        let mut guard = self.lock();
        let (id, now) = (guard.new_id(), guard.stamp());
        let record = guard.repo_mut(repo).deployment_mut(deployment);
        record.statuses.push(DeploymentStatusRecord {
            id,
            state: state.to_owned(),
            created_at: now,
        });
        record.updated_at = now;
        id
    }

    /// The `deployment_callback_url` of the `deployment_protection_rule` webhook GitHub sends
    /// for workflow run `run_id`: where the App approves or rejects the run's deployments.
    /// Creates the repository in the fake if nothing named it yet, so that the callback
    /// reaches it.
    pub fn deployment_callback_url(&self, repo: &str, run_id: u64) -> String {
        let mut state = self.lock();
        state.repo_entry(repo);
        format!(
            "{}/repos/{repo}/actions/runs/{run_id}/deployment_protection_rule",
            state.base_url
        )
    }

    /// The approvals and rejections of deployment protection rules received for a
    /// repository's workflow runs, oldest first.
    pub fn protection_answers(&self, repo: &str) -> Vec<ProtectionAnswer> {
        let state = self.lock();
        state
            .repos
            .get(&repo_key(repo))
            .map_or_else(Vec::new, |r| r.protection_answers.clone())
    }

    /// The status reports (reviews without a `state`) received for a repository's workflow
    /// runs, oldest first.
    pub fn protection_reports(&self, repo: &str) -> Vec<ProtectionReport> {
        let state = self.lock();
        state
            .repos
            .get(&repo_key(repo))
            .map_or_else(Vec::new, |r| r.protection_reports.clone())
    }

    // --- time --------------------------------------------------------------------------------

    /// The fake's clock: the time the next stamped event gets.
    pub fn now(&self) -> DateTime<Utc> {
        self.lock().clock
    }

    /// Moves the fake's clock forward.
    pub fn advance(&self, by: TimeDelta) {
        self.lock().clock += by;
    }

    // --- observation -------------------------------------------------------------------------

    /// Every request received since the start (or the last [`FakeGitHub::clear_requests`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests counted against the rate limit (all but `304 Not Modified`).
    pub fn api_requests_excluding_304(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status != 304)
            .count()
    }

    /// How many requests were answered `304 Not Modified`.
    pub fn not_modified_count(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == 304)
            .count()
    }

    /// Forgets the recorded requests (not the OpenAPI violations, nor the state).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    // --- failure injection -------------------------------------------------------------------

    /// Delays every answer by `latency` (slow GitHub: evaluations take a while, so a test can
    /// act while they are in flight).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.lock().latency = latency;
    }

    /// Answers the next `times` requests whose method is `method` (or `*`) and whose path
    /// starts with `path_prefix` with `status` instead of serving them (nothing changes).
    /// `retry_after` adds a `Retry-After` header (seconds); a 403 or 429 without it looks like
    /// an exhausted primary rate limit (`x-ratelimit-remaining: 0`).
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        times: usize,
        retry_after: Option<u64>,
    ) {
        self.lock().injections.push(Injection {
            method: method.to_ascii_uppercase(),
            prefix: path_prefix.to_owned(),
            status,
            remaining: times,
            retry_after,
        });
    }

    // --- OpenAPI -----------------------------------------------------------------------------

    /// Whether requests are checked against the OpenAPI subset (false only when the external
    /// fixtures folder is missing outside CI).
    pub fn openapi_validation_enabled(&self) -> bool {
        self.spec.is_some()
    }

    /// One line per request that matched no operation of the OpenAPI subset (nor
    /// [`KNOWN_ADDITIONS`]) or broke its operation's parameter or body schema, with the reasons.
    pub fn openapi_violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Panics listing every OpenAPI violation, if there is any.
    pub fn assert_requests_match_openapi(&self) {
        let violations = self.openapi_violations();
        assert!(
            violations.is_empty(),
            "{} request(s) do not match GitHub's OpenAPI description:\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }

    /// Why an answer breaks the OpenAPI subset's response schema for `status` of the operation
    /// `method path` matches (the path as sent, a query ignored; `Null` for an empty body):
    /// empty when it fits, `None` without the subset. Answers are not checked as they go out
    /// (the subset describes only some of them); self-tests check the ones they care about.
    pub fn openapi_response_problems(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Option<Vec<String>> {
        let spec = self.spec.as_ref()?;
        Some(spec.check_response(&method.to_ascii_uppercase(), path, status, body))
    }

    /// The fake's routes that neither the OpenAPI subset nor [`KNOWN_ADDITIONS`] describe
    /// (empty when the fake is faithful; `None` without the subset).
    pub fn routes_missing_from_openapi(&self) -> Option<Vec<String>> {
        let spec = self.spec.as_ref()?;
        let missing = fake_routes()
            .into_iter()
            .filter(|(method, template)| !spec.describes(method, &template.text))
            .map(|(method, template)| format!("{method} {}", template.text))
            .collect();
        Some(missing)
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

struct State {
    base_url: String,
    clock: DateTime<Utc>,
    next_id: u64,
    app: Option<AppInfo>,
    user: String,
    tokens: Vec<String>,
    repos: BTreeMap<String, Repo>,
    /// (org, team slug) → login → `active` / `pending`, all lower case.
    teams: BTreeMap<(String, String), BTreeMap<String, &'static str>>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    injections: Vec<Injection>,
    /// Added to every answer (the state change happens at once; the answer comes later).
    latency: std::time::Duration,
}

#[derive(Clone)]
struct AppInfo {
    slug: String,
    id: u64,
}

impl AppInfo {
    fn installation_id(&self) -> u64 {
        self.id * 10 + 1
    }

    fn bot_login(&self) -> String {
        format!("{}[bot]", self.slug)
    }
}

struct Injection {
    method: String,
    prefix: String,
    status: u16,
    remaining: usize,
    retry_after: Option<u64>,
}

/// A file tree: path → contents.
type Tree = BTreeMap<String, String>;

struct Repo {
    full_name: String,
    id: u64,
    created_at: DateTime<Utc>,
    default_branch: String,
    branches: BTreeMap<String, String>,
    commits: HashMap<String, CommitRecord>,
    /// Files set by tests at a sha: the whole tree of a base commit, overrides on a PR commit.
    seeded: HashMap<String, Tree>,
    prs: BTreeMap<u64, PullRecord>,
    /// Issues that are not pull requests (the two share one number sequence).
    issues: BTreeMap<u64, IssueRecord>,
    permissions: HashMap<String, String>,
    comments: Vec<CommentView>,
    check_runs: Vec<CheckRunView>,
    statuses: Vec<StatusView>,
    /// Oldest first.
    deployments: Vec<DeploymentRecord>,
    protection_answers: Vec<ProtectionAnswer>,
    protection_reports: Vec<ProtectionReport>,
}

/// A deployment; [`FakeGitHub::add_deployment`] says what GitHub Actions fills in.
struct DeploymentRecord {
    id: u64,
    sha: String,
    reference: String,
    task: String,
    environment: String,
    created_at: DateTime<Utc>,
    /// The creation, or the latest status.
    updated_at: DateTime<Utc>,
    /// Oldest first.
    statuses: Vec<DeploymentStatusRecord>,
}

struct DeploymentStatusRecord {
    id: u64,
    state: String,
    created_at: DateTime<Utc>,
}

/// A commit the fake made or was given. Its tree is `snapshot` when it has one (commits
/// written through the git data API), else its first parent's tree with `spec.files` applied;
/// files seeded at its sha override either.
struct CommitRecord {
    spec: CommitSpec,
    parents: Vec<String>,
    snapshot: Option<Tree>,
    message: String,
    date: DateTime<Utc>,
}

/// A commit to write with [`Repo::write_commit`] (its sha is derived).
struct NewCommit {
    parents: Vec<String>,
    author: String,
    committer: String,
    message: String,
    files: Vec<FileChange>,
    snapshot: Option<Tree>,
}

/// What an issue and a pull request share (the issues API serves both).
struct IssueRecord {
    number: u64,
    author: String,
    title: String,
    body: String,
    labels: Vec<String>,
    assignees: Vec<String>,
    state: &'static str,
    state_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    closed_by: Option<String>,
}

impl IssueRecord {
    fn new(number: u64, author: &str, title: &str, now: DateTime<Utc>) -> IssueRecord {
        IssueRecord {
            number,
            author: author.to_owned(),
            title: title.to_owned(),
            body: String::new(),
            labels: Vec::new(),
            assignees: Vec::new(),
            state: "open",
            state_reason: None,
            created_at: now,
            updated_at: now,
            closed_at: None,
            closed_by: None,
        }
    }

    fn close(&mut self, by: Option<&str>, now: DateTime<Utc>) {
        self.state = "closed";
        self.closed_at = Some(now);
        self.closed_by = by.map(str::to_owned);
        self.updated_at = now;
    }

    fn reopen(&mut self, now: DateTime<Utc>) {
        self.state = "open";
        self.state_reason = Some("reopened".to_owned());
        self.closed_at = None;
        self.closed_by = None;
        self.updated_at = now;
    }

    /// Adds labels not there yet (label names are case-insensitive).
    fn add_labels(&mut self, labels: Vec<String>) {
        for label in labels {
            if !self.labels.iter().any(|l| l.eq_ignore_ascii_case(&label)) {
                self.labels.push(label);
            }
        }
    }

    fn view(&self) -> IssueView {
        IssueView {
            number: self.number,
            title: self.title.clone(),
            body: self.body.clone(),
            state: self.state.to_owned(),
            state_reason: self.state_reason.clone(),
            labels: self.labels.clone(),
            assignees: self.assignees.clone(),
            author: self.author.clone(),
            created_at: self.created_at,
            closed_by: self.closed_by.clone(),
        }
    }
}

struct PullRecord {
    issue: IssueRecord,
    base_ref: String,
    base_sha: String,
    head_ref: String,
    commits: Vec<String>,
    merged: bool,
    merged_at: Option<DateTime<Utc>>,
    merged_by: Option<String>,
    merge_commit_sha: Option<String>,
    draft: bool,
    maintainer_can_modify: bool,
    reviews: Vec<ReviewRecord>,
}

impl PullRecord {
    fn new(
        issue: IssueRecord,
        (base_ref, base_sha): (String, String),
        head_ref: String,
        commits: Vec<String>,
    ) -> PullRecord {
        PullRecord {
            issue,
            base_ref,
            base_sha,
            head_ref,
            commits,
            merged: false,
            merged_at: None,
            merged_by: None,
            merge_commit_sha: None,
            draft: false,
            maintainer_can_modify: false,
            reviews: Vec::new(),
        }
    }

    fn number(&self) -> u64 {
        self.issue.number
    }

    fn head(&self) -> &str {
        self.commits.last().map_or(&self.base_sha, String::as_str)
    }

    fn view(&self) -> PullView {
        PullView {
            number: self.number(),
            title: self.issue.title.clone(),
            body: self.issue.body.clone(),
            state: self.issue.state.to_owned(),
            merged: self.merged,
            draft: self.draft,
            labels: self.issue.labels.clone(),
            author: self.issue.author.clone(),
            base_ref: self.base_ref.clone(),
            head_ref: self.head_ref.clone(),
            base_sha: self.base_sha.clone(),
            head_sha: self.head().to_owned(),
            merge_commit_sha: self.merge_commit_sha.clone(),
        }
    }
}

struct ReviewRecord {
    id: u64,
    user: String,
    state: String,
    commit_id: String,
    submitted_at: Option<DateTime<Utc>>,
}

/// One changed file between two trees.
struct DiffEntry {
    filename: String,
    status: &'static str,
    previous_filename: Option<String>,
    additions: usize,
    deletions: usize,
    sha: Option<String>,
}

impl State {
    fn stamp(&mut self) -> DateTime<Utc> {
        let now = self.clock;
        self.clock += TimeDelta::seconds(1);
        now
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo_entry(&mut self, full_name: &str) -> &mut Repo {
        assert!(
            full_name.split('/').count() == 2,
            "a repository is `owner/name`, not {full_name:?}"
        );
        let id = user_id(full_name);
        let created_at = self.clock;
        self.repos
            .entry(repo_key(full_name))
            .or_insert_with(|| Repo {
                full_name: full_name.to_owned(),
                id,
                created_at,
                default_branch: "main".to_owned(),
                branches: BTreeMap::new(),
                commits: HashMap::new(),
                seeded: HashMap::new(),
                prs: BTreeMap::new(),
                issues: BTreeMap::new(),
                permissions: HashMap::new(),
                comments: Vec::new(),
                check_runs: Vec::new(),
                statuses: Vec::new(),
                deployments: Vec::new(),
                protection_answers: Vec::new(),
                protection_reports: Vec::new(),
            })
    }

    fn repo_mut(&mut self, full_name: &str) -> &mut Repo {
        self.repos
            .get_mut(&repo_key(full_name))
            .unwrap_or_else(|| panic!("no repository {full_name} in the fake"))
    }

    fn app_login(&self) -> Option<String> {
        self.app.as_ref().map(AppInfo::bot_login)
    }
}

impl Repo {
    fn owner(&self) -> &str {
        self.full_name.split('/').next().unwrap_or_default()
    }

    fn pr(&self, number: u64) -> &PullRecord {
        self.prs
            .get(&number)
            .unwrap_or_else(|| panic!("no PR #{number} in {}", self.full_name))
    }

    fn pr_mut(&mut self, number: u64) -> &mut PullRecord {
        let name = self.full_name.clone();
        self.prs
            .get_mut(&number)
            .unwrap_or_else(|| panic!("no PR #{number} in {name}"))
    }

    fn comment_mut(&mut self, id: u64) -> Option<&mut CommentView> {
        self.comments.iter_mut().find(|c| c.id == id)
    }

    fn deployment_mut(&mut self, id: u64) -> &mut DeploymentRecord {
        let name = self.full_name.clone();
        self.deployments
            .iter_mut()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("no deployment {id} in {name}"))
    }

    /// Whether a pull request or an issue has this number.
    fn number_taken(&self, number: u64) -> bool {
        self.prs.contains_key(&number) || self.issues.contains_key(&number)
    }

    /// The next number of the sequence pull requests and issues share.
    fn next_number(&self) -> u64 {
        let last_pr = self.prs.keys().next_back().copied().unwrap_or(0);
        let last_issue = self.issues.keys().next_back().copied().unwrap_or(0);
        last_pr.max(last_issue) + 1
    }

    /// The issue side of a pull request or an issue, and whether it is a pull request.
    fn issue(&self, number: u64) -> Option<(&IssueRecord, bool)> {
        match self.prs.get(&number) {
            Some(pr) => Some((&pr.issue, true)),
            None => self.issues.get(&number).map(|i| (i, false)),
        }
    }

    fn issue_mut(&mut self, number: u64) -> Option<&mut IssueRecord> {
        match self.prs.get_mut(&number) {
            Some(pr) => Some(&mut pr.issue),
            None => self.issues.get_mut(&number),
        }
    }

    /// Records a commit on top of `parent` and returns its sha.
    fn add_commit(&mut self, spec: CommitSpec, parent: String, date: DateTime<Utc>) -> String {
        const STATUSES: &[&str] = &["added", "modified", "removed", "renamed"];
        for file in &spec.files {
            assert!(
                STATUSES.contains(&file.status.as_str()),
                "unknown file status {:?} for {}",
                file.status,
                file.path
            );
            assert!(
                file.status != "renamed" || file.previous_path.is_some(),
                "renamed {} needs previous_path",
                file.path
            );
        }
        // A seeded sha may become a commit: files set on a PR commit before it is opened.
        assert!(
            !self.commits.contains_key(&spec.sha),
            "commit {} already exists",
            spec.sha
        );
        let sha = spec.sha.clone();
        let record = CommitRecord {
            message: format!("Commit {sha}"),
            spec,
            parents: vec![parent],
            snapshot: None,
            date,
        };
        self.commits.insert(sha.clone(), record);
        sha
    }

    /// Records a commit the fake makes (merges, reverts, the git data API) under a derived sha.
    fn write_commit(&mut self, commit: NewCommit, date: DateTime<Utc>) -> String {
        let seed = format!(
            "{} {} {} {}",
            commit.parents.join(","),
            commit.author,
            commit.message,
            timestamp(date)
        );
        let sha = self.fresh_sha(&seed);
        let spec = CommitSpec {
            sha: sha.clone(),
            author: commit.author,
            committer: commit.committer,
            files: commit.files,
        };
        let record = CommitRecord {
            spec,
            parents: commit.parents,
            snapshot: commit.snapshot,
            message: commit.message,
            date,
        };
        self.commits.insert(sha.clone(), record);
        sha
    }

    /// A 40-hex-digit sha derived from `seed` that no commit has yet.
    fn fresh_sha(&self, seed: &str) -> String {
        let mut sha = blob_sha(&format!("commit {} {seed}", self.full_name));
        while self.knows(&sha) {
            sha = blob_sha(&sha);
        }
        sha
    }

    /// Moves a branch to a commit made on top of it; an open pull request from that branch
    /// gets the commit as its new head.
    fn advance_branch(&mut self, branch: &str, sha: &str, now: DateTime<Utc>) {
        self.branches.insert(branch.to_owned(), sha.to_owned());
        let from_branch = self
            .prs
            .values_mut()
            .filter(|pr| pr.issue.state == "open" && pr.head_ref == branch);
        for pr in from_branch {
            pr.commits.push(sha.to_owned());
            pr.issue.updated_at = now;
        }
    }

    fn knows(&self, sha: &str) -> bool {
        self.commits.contains_key(sha) || self.seeded.contains_key(sha)
    }

    /// A sha, or the commit a branch points at.
    fn resolve(&self, reference: &str) -> Option<String> {
        let reference = reference.strip_prefix("refs/heads/").unwrap_or(reference);
        if self.knows(reference) {
            return Some(reference.to_owned());
        }
        self.branches.get(reference).cloned()
    }

    fn first_parent(&self, sha: &str) -> Option<&str> {
        self.commits.get(sha)?.parents.first().map(String::as_str)
    }

    /// `sha` and its ancestors, nearest first (breadth first, first parents first), with the
    /// shas that are not commit records (seeded bases) that end each line.
    fn ancestors(&self, sha: &str) -> Vec<String> {
        let mut seen: HashSet<String> = HashSet::from([sha.to_owned()]);
        let mut order = vec![sha.to_owned()];
        let mut next = 0;
        while let Some(current) = order.get(next).cloned() {
            next += 1;
            let parents = self.commits.get(&current).map(|c| c.parents.as_slice());
            for parent in parents.unwrap_or_default() {
                if seen.insert(parent.clone()) {
                    order.push(parent.clone());
                }
            }
        }
        order
    }

    /// The tree at a commit: from its nearest snapshot or root (a seeded base), each commit's
    /// changes along first parents, with the files seeded at each sha on top.
    fn tree_at(&self, sha: &str) -> Option<Tree> {
        if !self.knows(sha) {
            return None;
        }
        let mut chain = vec![sha];
        let mut seen = HashSet::from([sha]);
        while let Some(record) = self.commits.get(chain[chain.len() - 1]) {
            let parent = record.parents.first().map(String::as_str);
            match parent.filter(|p| record.snapshot.is_none() && seen.insert(p)) {
                Some(parent) => chain.push(parent),
                None => break,
            }
        }
        let mut tree = Tree::new();
        for sha in chain.iter().rev() {
            if let Some(record) = self.commits.get(*sha) {
                match &record.snapshot {
                    Some(snapshot) => tree.clone_from(snapshot),
                    None => apply_changes(&mut tree, &record.spec),
                }
            }
            if let Some(seeded) = self.seeded.get(*sha) {
                tree.extend(seeded.iter().map(|(p, c)| (p.clone(), c.clone())));
            }
        }
        Some(tree)
    }

    /// The tree whose (content-derived) sha is `tree_sha`, among the trees of known commits.
    fn find_tree(&self, tree_sha: &str) -> Option<Tree> {
        self.commits
            .keys()
            .chain(self.seeded.keys())
            .filter_map(|sha| self.tree_at(sha))
            .find(|tree| tree_sha_of(tree) == tree_sha)
    }

    /// The commits reachable from `head` but not from `base`, oldest first (parents before
    /// children, a merge's first parent's line before its second's).
    fn commits_between(&self, base: &str, head: &str) -> Vec<String> {
        let behind: HashSet<String> = self.ancestors(base).into_iter().collect();
        let mut ordered = Vec::new();
        let mut done: HashSet<String> = HashSet::new();
        // Depth first, post-order, without recursion (PRs may have hundreds of commits).
        let mut stack: Vec<(String, bool)> = vec![(head.to_owned(), false)];
        while let Some((sha, expanded)) = stack.pop() {
            if behind.contains(&sha) || !self.commits.contains_key(&sha) {
                continue;
            }
            if expanded {
                if done.insert(sha.clone()) {
                    ordered.push(sha);
                }
                continue;
            }
            if done.contains(&sha) {
                continue;
            }
            let parents = self.commits[&sha].parents.clone();
            stack.push((sha, true));
            stack.extend(parents.into_iter().rev().map(|p| (p, false)));
        }
        ordered
    }

    /// The nearest common ancestor of two commits (`base` when they share none).
    fn merge_base(&self, base: &str, head: &str) -> String {
        let head_side: HashSet<String> = self.ancestors(head).into_iter().collect();
        self.ancestors(base)
            .into_iter()
            .find(|sha| head_side.contains(sha))
            .unwrap_or_else(|| base.to_owned())
    }

    /// Files changed from `base` to `head`, renames recognised from the commits between them.
    fn diff(&self, base: &str, head: &str) -> Vec<DiffEntry> {
        let old = self.tree_at(base).unwrap_or_default();
        let new = self.tree_at(head).unwrap_or_default();
        let commits = self.commits_between(base, head);
        let renames = net_renames(commits.iter().filter_map(|sha| self.commits.get(sha)));
        diff_trees(&old, &new, &renames)
    }
}

// --- what the fake does on its own: merges, pull requests, reverts -----------------------------

/// A pull request to open from one branch into another.
struct PullOpening {
    author: String,
    title: String,
    body: String,
    base_ref: String,
    head_ref: String,
    draft: bool,
    maintainer_can_modify: bool,
}

impl Repo {
    /// Merges an open pull request (see [`FakeGitHub::merge_pr`]) and returns the merge sha.
    fn merge(&mut self, number: u64, merged_by: &str, now: DateTime<Utc>) -> String {
        let pr = self.pr(number);
        assert!(
            pr.issue.state == "open",
            "PR #{number} in {} is not open",
            self.full_name
        );
        let head = pr.head().to_owned();
        let tip = self.branches.get(&pr.base_ref).cloned();
        let tip = tip.unwrap_or_else(|| pr.base_sha.clone());
        let before = self.tree_at(&pr.base_sha).unwrap_or_default();
        let after = self.tree_at(&head).unwrap_or_default();
        let message = format!(
            "Merge pull request #{number} from {}/{}\n\n{}",
            self.owner(),
            pr.head_ref,
            pr.issue.title
        );
        let base_ref = pr.base_ref.clone();
        let merge = NewCommit {
            parents: vec![tip, head],
            author: merged_by.to_owned(),
            committer: WEB_FLOW.to_owned(),
            message,
            files: tree_changes(&before, &after),
            snapshot: None,
        };
        let sha = self.write_commit(merge, now);
        self.branches.insert(base_ref, sha.clone());
        let pr = self.pr_mut(number);
        pr.issue.close(Some(merged_by), now);
        pr.merged = true;
        pr.merged_at = Some(now);
        pr.merged_by = Some(merged_by.to_owned());
        pr.merge_commit_sha = Some(sha.clone());
        sha
    }

    /// Opens a pull request from `head_ref` into `base_ref` (both existing branches, the head
    /// ahead of the base) under the next number, and returns that number.
    fn open_pull(&mut self, opening: PullOpening, now: DateTime<Utc>) -> u64 {
        let base_sha = self.branches[&opening.base_ref].clone();
        let head_sha = &self.branches[&opening.head_ref];
        let commits = self.commits_between(&base_sha, head_sha);
        let number = self.next_number();
        let mut issue = IssueRecord::new(number, &opening.author, &opening.title, now);
        issue.body = opening.body;
        let base = (opening.base_ref, base_sha);
        let mut pr = PullRecord::new(issue, base, opening.head_ref, commits);
        pr.draft = opening.draft;
        pr.maintainer_can_modify = opening.maintainer_can_modify;
        self.prs.insert(number, pr);
        number
    }

    /// Reverts a merged pull request as GitHub's revert button does: a branch
    /// `revert-<n>-<head_ref>` off the base branch's tip, with one commit undoing the merge's
    /// changes, and a pull request from it. Returns the new pull request's number.
    fn revert(&mut self, number: u64, mut opening: PullOpening, now: DateTime<Utc>) -> u64 {
        let pr = self.pr(number);
        let merge = pr
            .merge_commit_sha
            .clone()
            .expect("a merged PR has a merge commit");
        let before_sha = self.first_parent(&merge).unwrap_or(&pr.base_sha).to_owned();
        let before = self.tree_at(&before_sha).unwrap_or_default();
        let merged = self.tree_at(&merge).unwrap_or_default();
        let tip = self.branches[&pr.base_ref].clone();
        let current = self.tree_at(&tip).unwrap_or_default();
        let mut reverted = current.clone();
        for path in changed_paths(&before, &merged) {
            match before.get(&path) {
                Some(text) => reverted.insert(path, text.clone()),
                None => reverted.remove(&path),
            };
        }
        let headline = self.commits[&merge].message.lines().next().unwrap_or("");
        let message = format!(
            "Revert \"{headline}\"\n\nThis reverts commit {merge}, reversing\nchanges made to {before_sha}."
        );
        let mut branch = format!("revert-{number}-{}", pr.head_ref);
        opening.base_ref = pr.base_ref.clone();
        let mut suffix = 0;
        while self.branches.contains_key(&branch) {
            suffix += 1;
            branch = format!("revert-{number}-{}-{suffix}", self.pr(number).head_ref);
        }
        let commit = NewCommit {
            parents: vec![tip],
            author: opening.author.clone(),
            committer: WEB_FLOW.to_owned(),
            message,
            files: tree_changes(&current, &reverted),
            snapshot: None,
        };
        let sha = self.write_commit(commit, now);
        self.branches.insert(branch.clone(), sha);
        opening.head_ref = branch;
        self.open_pull(opening, now)
    }
}

/// The changes that turn tree `old` into tree `new`, with the new contents spelled out.
fn tree_changes(old: &Tree, new: &Tree) -> Vec<FileChange> {
    changed_paths(old, new)
        .into_iter()
        .map(|path| match (old.get(&path), new.get(&path)) {
            (_, None) => FileChange::removed(&path),
            (None, Some(text)) => FileChange::added(&path, text),
            (Some(_), Some(text)) => FileChange::modified(&path, text),
        })
        .collect()
}

/// The paths whose contents differ between two trees (present in one only, or edited).
fn changed_paths(old: &Tree, new: &Tree) -> BTreeSet<String> {
    old.keys()
        .chain(new.keys())
        .filter(|path| old.get(*path) != new.get(*path))
        .cloned()
        .collect()
}

/// A tree's sha, derived from its contents alone (the same files give the same sha).
fn tree_sha_of(tree: &Tree) -> String {
    let mut listing = String::from("tree\n");
    for (path, text) in tree {
        listing.push_str(&format!("{path}\0{}\n", blob_sha(text)));
    }
    blob_sha(&listing)
}

fn apply_changes(tree: &mut Tree, commit: &CommitSpec) {
    for file in &commit.files {
        let generated = || format!("{} as of {}\n", file.path, commit.sha);
        match file.status.as_str() {
            "removed" => {
                tree.remove(&file.path);
            }
            "renamed" => {
                let old = file.previous_path.as_ref().and_then(|p| tree.remove(p));
                let text = file.contents.clone().or(old).unwrap_or_else(generated);
                tree.insert(file.path.clone(), text);
            }
            _ => {
                let text = file.contents.clone().unwrap_or_else(generated);
                tree.insert(file.path.clone(), text);
            }
        }
    }
}

/// (from, to) renames over several commits, with chains (a→b, b→c) folded into one (a→c).
fn net_renames<'a>(commits: impl Iterator<Item = &'a CommitRecord>) -> Vec<(String, String)> {
    let mut renames: Vec<(String, String)> = Vec::new();
    for file in commits.flat_map(|c| &c.spec.files) {
        let (Some(from), "renamed") = (&file.previous_path, file.status.as_str()) else {
            continue;
        };
        match renames.iter_mut().find(|(_, to)| to == from) {
            Some(chained) => chained.1 = file.path.clone(),
            None => renames.push((from.clone(), file.path.clone())),
        }
    }
    renames
}

fn diff_trees(old: &Tree, new: &Tree, renames: &[(String, String)]) -> Vec<DiffEntry> {
    let mut entries: BTreeMap<String, DiffEntry> = BTreeMap::new();
    let mut moved: HashSet<&str> = HashSet::new();
    for (from, to) in renames {
        let (Some(before), Some(after)) = (old.get(from), new.get(to)) else {
            continue;
        };
        if new.contains_key(from) || old.contains_key(to) {
            continue;
        }
        moved.extend([from.as_str(), to.as_str()]);
        entries.insert(
            to.clone(),
            diff_entry(to, "renamed", Some(before), Some(after)),
        );
        entries
            .get_mut(to)
            .expect("just inserted")
            .previous_filename = Some(from.clone());
    }
    for (path, text) in new.iter().filter(|(p, _)| !moved.contains(p.as_str())) {
        match old.get(path) {
            None => entries.insert(path.clone(), diff_entry(path, "added", None, Some(text))),
            Some(before) if before != text => entries.insert(
                path.clone(),
                diff_entry(path, "modified", Some(before), Some(text)),
            ),
            Some(_) => None,
        };
    }
    for (path, text) in old.iter().filter(|(p, _)| !moved.contains(p.as_str())) {
        if !new.contains_key(path) {
            entries.insert(path.clone(), diff_entry(path, "removed", Some(text), None));
        }
    }
    entries.into_values().collect()
}

fn diff_entry(path: &str, status: &'static str, old: Option<&str>, new: Option<&str>) -> DiffEntry {
    let (additions, deletions) = line_changes(old.unwrap_or(""), new.unwrap_or(""));
    DiffEntry {
        filename: path.to_owned(),
        status,
        previous_filename: None,
        additions,
        deletions,
        sha: new.map(blob_sha),
    }
}

/// Lines added and removed, counted as multisets of lines (close enough to git's diff stat).
fn line_changes(old: &str, new: &str) -> (usize, usize) {
    let mut remaining: HashMap<&str, usize> = HashMap::new();
    for line in old.lines() {
        *remaining.entry(line).or_default() += 1;
    }
    let mut additions = 0;
    for line in new.lines() {
        match remaining.get_mut(line) {
            Some(count) if *count > 0 => *count -= 1,
            _ => additions += 1,
        }
    }
    (additions, remaining.values().sum())
}

// ---------------------------------------------------------------------------------------------
// Requests and replies
// ---------------------------------------------------------------------------------------------

/// A request as the fake sees it.
struct Incoming {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    body_is_json: bool,
}

impl Incoming {
    fn parse(request: &Request) -> Incoming {
        let headers = request
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_ascii_lowercase(), value)
            })
            .collect();
        let (body, body_is_json) = if request.body.iter().all(u8::is_ascii_whitespace) {
            (None, true)
        } else {
            match serde_json::from_slice(&request.body) {
                Ok(value) => (Some(value), true),
                Err(_) => {
                    let text = String::from_utf8_lossy(&request.body).into_owned();
                    (Some(Value::String(text)), false)
                }
            }
        };
        Incoming {
            method: request.method.as_str().to_ascii_uppercase(),
            path: request.url.path().to_owned(),
            query: request
                .url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            headers,
            body,
            body_is_json,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn body_str(&self, field: &str) -> Option<&str> {
        self.body.as_ref()?.get(field)?.as_str()
    }

    fn record(&self, status: u16) -> RecordedRequest {
        RecordedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            status,
        }
    }
}

/// What the fake answers.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(String, String)>,
}

/// Handlers return their reply, or an early error reply through `?`.
type Outcome = Result<Reply, Reply>;

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            json!({ "message": message, "documentation_url": DOCS_URL, "status": status.to_string() }),
        )
    }

    fn not_found() -> Reply {
        Reply::error(404, "Not Found")
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn into_template(self) -> ResponseTemplate {
        let mut template = ResponseTemplate::new(self.status);
        for (name, value) in &self.headers {
            template = template.insert_header(name.as_str(), value.as_str());
        }
        if let Some(body) = self.body {
            let bytes = serde_json::to_vec(&body).expect("JSON serializes");
            template = template.set_body_raw(bytes, "application/json; charset=utf-8");
        }
        template
    }
}

/// Who a request authenticates as.
#[derive(Debug, Clone, PartialEq)]
enum Principal {
    /// The App itself, with a JWT.
    AppJwt,
    /// The App's installation, with a minted `ghs_fake_<n>` token.
    Installation,
    /// A user, with any other token (token mode).
    User(String),
}

/// One request routed to a handler.
struct Ctx<'a> {
    req: &'a Incoming,
    params: BTreeMap<String, String>,
    who: Principal,
}

impl Ctx<'_> {
    fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }

    fn number(&self, name: &str) -> Result<u64, Reply> {
        self.param(name).parse().map_err(|_| Reply::not_found())
    }

    fn repo_key(&self) -> String {
        repo_key(&format!("{}/{}", self.param("owner"), self.param("repo")))
    }
}

/// The catch-all wiremock responder.
struct Responder {
    state: Arc<Mutex<State>>,
    spec: Option<Arc<Spec>>,
    routes: Arc<Vec<(&'static str, Template)>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let incoming = Incoming::parse(request);
        let check = self.spec.as_ref().map(|spec| spec.check(&incoming));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(check) = check.as_ref().filter(|c| !c.problems.is_empty()) {
            let line = format!(
                "{} {}: {}",
                incoming.method,
                incoming.path,
                check.problems.join("; ")
            );
            state.violations.push(line);
        }
        let reply = state.reply(&incoming, check.as_ref(), &self.routes);
        let reply = conditional(&incoming, reply);
        state.requests.push(incoming.record(reply.status));
        let used = state.requests.iter().filter(|r| r.status != 304).count();
        with_rate_limit_headers(reply, used)
            .into_template()
            .set_delay(state.latency)
    }
}

impl State {
    /// Decides the answer: GitHub's order of refusals, then the handler.
    fn reply(
        &mut self,
        req: &Incoming,
        check: Option<&SpecCheck>,
        routes: &[(&str, Template)],
    ) -> Reply {
        if req
            .header("user-agent")
            .is_none_or(|ua| ua.trim().is_empty())
        {
            return Reply::error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            );
        }
        if let Some(injected) = self.take_injection(req) {
            return injected;
        }
        if check.is_some_and(|c| !c.known) {
            return Reply::not_found();
        }
        let parts = split_path(&req.path);
        let Some((index, params)) =
            best_match(routes.iter().map(|(m, t)| (*m, t)), &req.method, &parts)
        else {
            return match check {
                Some(_) => Reply::error(501, "the fake GitHub does not implement this operation"),
                None => Reply::not_found(),
            };
        };
        let route = routes[index].1.text.as_str();
        let who = match self.authenticate(req) {
            Ok(who) => who,
            Err(refusal) if route == "/graphql" && refusal.status == 401 => {
                return graphql_auth_refusal(refusal);
            }
            Err(refusal) => return refusal,
        };
        if let Err(refusal) = self.authorize(&req.method, route, &who) {
            return refusal;
        }
        if let Some(check) = check.filter(|c| !c.problems.is_empty()) {
            let message = format!("Invalid request.\n\n{}", check.problems.join("\n"));
            return Reply::error(422, &message);
        }
        let ctx = Ctx { req, params, who };
        self.dispatch(route, &ctx).unwrap_or_else(|refusal| refusal)
    }

    fn take_injection(&mut self, req: &Incoming) -> Option<Reply> {
        let injection = self.injections.iter_mut().find(|i| {
            i.remaining > 0
                && (i.method == "*" || i.method == req.method)
                && req.path.starts_with(&i.prefix)
        })?;
        injection.remaining -= 1;
        let (status, retry_after) = (injection.status, injection.retry_after);
        self.injections.retain(|i| i.remaining > 0);
        let message = match (status, retry_after) {
            (403 | 429, Some(_)) => {
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            }
            (403 | 429, None) => "API rate limit exceeded for installation.",
            (500..=599, _) => "Server Error",
            _ => "Injected failure",
        };
        let mut reply = Reply::error(status, message);
        if let Some(seconds) = retry_after {
            reply = reply.header("retry-after", seconds.to_string());
        } else if matches!(status, 403 | 429) {
            let reset = Utc::now().timestamp() + 60;
            reply = reply
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", reset.to_string());
        }
        Some(reply)
    }

    fn authenticate(&self, req: &Incoming) -> Result<Principal, Reply> {
        let header = req.header("authorization").unwrap_or("").trim();
        let credential = header
            .split_once(' ')
            .filter(|(scheme, _)| {
                scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")
            })
            .map(|(_, credential)| credential.trim())
            .unwrap_or("");
        if credential.is_empty() {
            return Err(Reply::error(401, "Requires authentication"));
        }
        if credential.starts_with("eyJ") && credential.matches('.').count() == 2 {
            return self.check_jwt(credential).map(|()| Principal::AppJwt);
        }
        if credential.starts_with("ghs_") {
            return match self.tokens.iter().any(|t| t == credential) {
                true => Ok(Principal::Installation),
                false => Err(Reply::error(401, "Bad credentials")),
            };
        }
        Ok(Principal::User(self.user.clone()))
    }

    fn check_jwt(&self, jwt: &str) -> Result<(), Reply> {
        let undecodable = || Reply::error(401, "A JSON web token could not be decoded");
        let app = self.app.as_ref().ok_or_else(undecodable)?;
        let payload = jwt.split('.').nth(1).unwrap_or("");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| undecodable())?;
        let claims: Value = serde_json::from_slice(&bytes).map_err(|_| undecodable())?;
        let issuer = match &claims["iss"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if issuer != Some(app.id) {
            return Err(Reply::error(
                401,
                "'Issuer' claim ('iss') must be an Integer",
            ));
        }
        let now = Utc::now().timestamp();
        match claims["exp"].as_i64() {
            Some(exp) if exp > now && exp <= now + JWT_MAX_LIFETIME_SECS => Ok(()),
            _ => Err(Reply::error(
                401,
                "'Expiration time' claim ('exp') is too far in the future or in the past",
            )),
        }
    }

    /// Which credential each route takes, as GitHub enforces it.
    fn authorize(&self, method: &str, route: &str, who: &Principal) -> Result<(), Reply> {
        const JWT_ONLY: &[&str] = &[
            "/app/installations/{installation_id}/access_tokens",
            "/repos/{owner}/{repo}/installation",
        ];
        let jwt_only = JWT_ONLY.contains(&route);
        let undecodable = || Reply::error(401, "A JSON web token could not be decoded");
        match who {
            Principal::AppJwt if jwt_only || route == "/app" => Ok(()),
            Principal::AppJwt => Err(Reply::error(
                401,
                "An App's JWT only reaches /app endpoints: use an installation access token",
            )),
            _ if jwt_only => Err(undecodable()),
            Principal::User(_) if route == "/app" => Err(undecodable()),
            Principal::Installation if route == "/user" => {
                Err(Reply::error(403, "Resource not accessible by integration"))
            }
            Principal::User(_)
                if route.starts_with("/repos/{owner}/{repo}/check-runs") && method != "GET" =>
            {
                Err(Reply::error(403, "You must authenticate via a GitHub App."))
            }
            // GitHub Apps review their own protection rules, with an installation token.
            Principal::User(_)
                if route
                    == "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule" =>
            {
                Err(Reply::error(403, "You must authenticate via a GitHub App."))
            }
            _ => Ok(()),
        }
    }

    /// The login that writes as `who`, and its user type.
    fn actor(&self, who: &Principal) -> String {
        match who {
            Principal::User(login) => login.clone(),
            Principal::AppJwt | Principal::Installation => {
                self.app_login().unwrap_or_else(|| DEFAULT_USER.to_owned())
            }
        }
    }

    fn repo_of(&self, ctx: &Ctx) -> Result<&Repo, Reply> {
        self.repos.get(&ctx.repo_key()).ok_or_else(Reply::not_found)
    }

    fn repo_of_mut(&mut self, ctx: &Ctx) -> Result<&mut Repo, Reply> {
        self.repos
            .get_mut(&ctx.repo_key())
            .ok_or_else(Reply::not_found)
    }
}

/// GraphQL words a missing credential its own way (a bad one is `Bad credentials` there too).
fn graphql_auth_refusal(refusal: Reply) -> Reply {
    let missing = refusal
        .body
        .as_ref()
        .is_some_and(|b| b["message"] == "Requires authentication");
    if !missing {
        return refusal;
    }
    Reply::json(
        401,
        json!({
            "message": "This endpoint requires you to be authenticated.",
            "documentation_url": GRAPHQL_AUTH_DOCS_URL,
        }),
    )
}

/// Adds an `ETag` to a successful GET, or answers `304 Not Modified` when `If-None-Match`
/// names it.
fn conditional(req: &Incoming, reply: Reply) -> Reply {
    if req.method != "GET" || reply.status != 200 {
        return reply;
    }
    let Some(body) = &reply.body else {
        return reply;
    };
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(body).expect("JSON serializes"));
    for (name, value) in &reply.headers {
        hasher.update(format!("{name}:{value}\n"));
    }
    let etag = format!("W/\"{}\"", &hex::encode(hasher.finalize())[..40]);
    let strip = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let matches = req.header("if-none-match").is_some_and(|tags| {
        tags.split(',')
            .any(|tag| tag.trim() == "*" || strip(tag) == strip(&etag))
    });
    if matches {
        return Reply::empty(304).header("etag", etag);
    }
    reply.header("etag", etag)
}

fn with_rate_limit_headers(reply: Reply, used: usize) -> Reply {
    if reply
        .headers
        .iter()
        .any(|(n, _)| n == "x-ratelimit-remaining")
    {
        return reply;
    }
    let reset = Utc::now().timestamp() + 3_600;
    reply
        .header("x-ratelimit-limit", RATE_LIMIT_PER_HOUR.to_string())
        .header(
            "x-ratelimit-remaining",
            RATE_LIMIT_PER_HOUR.saturating_sub(used).to_string(),
        )
        .header("x-ratelimit-used", used.to_string())
        .header("x-ratelimit-reset", reset.to_string())
        .header("x-ratelimit-resource", "core")
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// Every route the fake serves; `{name*}` matches one or more path segments.
fn fake_routes() -> Vec<(&'static str, Template)> {
    const ROUTES: &[(&str, &str)] = &[
        ("GET", "/app"),
        ("GET", "/user"),
        ("GET", "/rate_limit"),
        ("POST", "/app/installations/{installation_id}/access_tokens"),
        ("GET", "/repos/{owner}/{repo}/installation"),
        ("GET", "/repos/{owner}/{repo}"),
        ("GET", "/repos/{owner}/{repo}/pulls"),
        ("POST", "/repos/{owner}/{repo}/pulls"),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits"),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
        ("GET", "/repos/{owner}/{repo}/compare/{basehead*}"),
        ("GET", "/repos/{owner}/{repo}/contents/{path*}"),
        ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"),
        ("GET", "/repos/{owner}/{repo}/git/ref/{ref*}"),
        ("POST", "/repos/{owner}/{repo}/git/refs"),
        ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
        ("POST", "/repos/{owner}/{repo}/git/commits"),
        (
            "GET",
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
        ),
        (
            "GET",
            "/orgs/{org}/teams/{team_slug}/memberships/{username}",
        ),
        ("GET", "/orgs/{org}/members/{username}"),
        ("POST", "/repos/{owner}/{repo}/issues"),
        ("GET", "/repos/{owner}/{repo}/issues"),
        ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"),
        ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}"),
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"),
        (
            "GET",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        ),
        ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
        (
            "PATCH",
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        ),
        (
            "DELETE",
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        ),
        ("POST", "/repos/{owner}/{repo}/check-runs"),
        ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
        ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
        ("GET", "/repos/{owner}/{repo}/commits/{ref*}/check-runs"),
        ("POST", "/repos/{owner}/{repo}/statuses/{sha*}"),
        ("GET", "/repos/{owner}/{repo}/commits/{ref*}/status"),
        ("GET", "/repos/{owner}/{repo}/commits/{commit_sha*}/pulls"),
        ("GET", "/repos/{owner}/{repo}/deployments"),
        (
            "GET",
            "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule",
        ),
        ("POST", "/graphql"),
    ];
    ROUTES
        .iter()
        .map(|(method, text)| {
            let template = Template::parse(text, |name| {
                let integer = name.ends_with("_number") || name.ends_with("_id");
                (name.ends_with('*'), integer)
            });
            (*method, template)
        })
        .collect()
}

impl State {
    fn dispatch(&mut self, route: &str, ctx: &Ctx) -> Outcome {
        match (ctx.req.method.as_str(), route) {
            ("GET", "/app") => self.get_app(),
            ("GET", "/user") => Ok(Reply::json(200, self.user_profile(&self.actor(&ctx.who)))),
            ("GET", "/rate_limit") => Ok(self.rate_limit()),
            ("POST", "/app/installations/{installation_id}/access_tokens") => self.mint_token(ctx),
            ("GET", "/repos/{owner}/{repo}/installation") => self.get_installation(ctx),
            ("GET", "/repos/{owner}/{repo}") => {
                let repo = self.repo_of(ctx)?;
                Ok(Reply::json(200, repo_json(&self.base_url, repo)))
            }
            ("GET", "/repos/{owner}/{repo}/pulls") => self.list_pulls(ctx),
            ("POST", "/repos/{owner}/{repo}/pulls") => self.create_pull(ctx),
            ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}") => self.get_pull(ctx),
            ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files") => self.list_pull_files(ctx),
            ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits") => {
                self.list_pull_commits(ctx)
            }
            ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews") => self.list_reviews(ctx),
            ("GET", "/repos/{owner}/{repo}/compare/{basehead}") => self.compare(ctx),
            ("GET", "/repos/{owner}/{repo}/contents/{path}") => self.get_contents(ctx),
            ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}") => self.get_tree(ctx),
            ("GET", "/repos/{owner}/{repo}/git/ref/{ref}") => self.get_ref(ctx),
            ("POST", "/repos/{owner}/{repo}/git/refs") => self.create_ref(ctx),
            ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}") => self.get_git_commit(ctx),
            ("POST", "/repos/{owner}/{repo}/git/commits") => self.create_git_commit(ctx),
            ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission") => {
                self.get_permission(ctx)
            }
            ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}") => {
                self.get_membership(ctx)
            }
            ("GET", "/orgs/{org}/members/{username}") => self.get_org_member(ctx),
            ("POST", "/repos/{owner}/{repo}/issues") => self.create_issue(ctx),
            ("GET", "/repos/{owner}/{repo}/issues") => self.list_issues(ctx),
            ("GET", "/repos/{owner}/{repo}/issues/{issue_number}") => self.get_issue(ctx),
            ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}") => self.update_issue(ctx),
            ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels") => {
                self.add_issue_labels(ctx)
            }
            ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
                self.list_comments(ctx)
            }
            ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") => {
                self.create_comment(ctx)
            }
            ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => self.get_comment(ctx),
            ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
                self.update_comment(ctx)
            }
            ("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}") => {
                self.delete_comment(ctx)
            }
            ("POST", "/repos/{owner}/{repo}/check-runs") => self.create_check_run(ctx),
            ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}") => self.get_check_run(ctx),
            ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}") => {
                self.update_check_run(ctx)
            }
            ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs") => self.list_check_runs(ctx),
            ("POST", "/repos/{owner}/{repo}/statuses/{sha}") => self.create_status(ctx),
            ("GET", "/repos/{owner}/{repo}/commits/{ref}/status") => self.combined_status(ctx),
            ("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls") => {
                self.pulls_of_commit(ctx)
            }
            ("GET", "/repos/{owner}/{repo}/deployments") => self.list_deployments(ctx),
            ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses") => {
                self.list_deployment_statuses(ctx)
            }
            ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule") => {
                self.review_protection_rule(ctx)
            }
            ("POST", "/graphql") => self.graphql(ctx),
            (method, route) => Err(Reply::error(
                501,
                &format!("the fake has no handler for {method} {route}"),
            )),
        }
    }
}

// --- identity ----------------------------------------------------------------------------------

impl State {
    fn get_app(&self) -> Outcome {
        let app = self.app.as_ref().ok_or_else(Reply::not_found)?;
        Ok(Reply::json(200, app_json(&self.base_url, app)))
    }

    fn rate_limit(&self) -> Reply {
        let used = self.requests.iter().filter(|r| r.status != 304).count();
        let core = json!({
            "limit": RATE_LIMIT_PER_HOUR,
            "remaining": RATE_LIMIT_PER_HOUR.saturating_sub(used),
            "used": used,
            "reset": Utc::now().timestamp() + 3_600,
        });
        Reply::json(200, json!({ "resources": { "core": core }, "rate": core }))
    }

    fn mint_token(&mut self, ctx: &Ctx) -> Outcome {
        let id = ctx.number("installation_id")?;
        if self.app.as_ref().map(AppInfo::installation_id) != Some(id) {
            return Err(Reply::not_found());
        }
        let token = format!("ghs_fake_{}", self.tokens.len() + 1);
        self.tokens.push(token.clone());
        let expires = Utc::now() + TimeDelta::seconds(TOKEN_LIFETIME_SECS);
        Ok(Reply::json(
            201,
            json!({
                "token": token,
                "expires_at": timestamp(truncate_to_second(expires)),
                "permissions": app_permissions(),
                "repository_selection": "all",
            }),
        ))
    }

    fn get_installation(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let app = self.app.as_ref().ok_or_else(Reply::not_found)?;
        let id = app.installation_id();
        Ok(Reply::json(
            200,
            json!({
                "id": id,
                "app_id": app.id,
                "app_slug": app.slug,
                "target_id": user_id(repo.owner()),
                "target_type": "Organization",
                "account": user_json_as(&self.base_url, repo.owner(), "Organization"),
                "repository_selection": "all",
                "access_tokens_url": format!("{}/app/installations/{id}/access_tokens", self.base_url),
                "repositories_url": format!("{}/installation/repositories", self.base_url),
                "html_url": format!("https://github.com/organizations/{}/settings/installations/{id}", repo.owner()),
                "permissions": app_permissions(),
                "events": ["pull_request", "pull_request_review", "issue_comment", "check_run"],
                "created_at": timestamp(repo.created_at),
                "updated_at": timestamp(repo.created_at),
                "single_file_name": null,
            }),
        ))
    }

    fn user_profile(&self, login: &str) -> Value {
        let mut user = user_json(&self.base_url, login);
        let extra = json!({
            "name": login, "company": null, "blog": "", "location": null, "email": null,
            "hireable": null, "bio": null, "public_repos": 1, "public_gists": 0,
            "followers": 0, "following": 0,
            "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
        });
        merge(&mut user, extra);
        user
    }
}

// --- pull requests -----------------------------------------------------------------------------

impl State {
    fn pull_of<'r>(&self, repo: &'r Repo, ctx: &Ctx) -> Result<&'r PullRecord, Reply> {
        let number = ctx
            .number("pull_number")
            .or_else(|_| ctx.number("issue_number"))?;
        repo.prs.get(&number).ok_or_else(Reply::not_found)
    }

    fn list_pulls(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let wanted = ctx.req.query("state").unwrap_or("open");
        let base = ctx.req.query("base");
        // `head` is `owner:branch`; GitHub ignores a filter without the owner.
        let head = ctx.req.query("head").and_then(|h| h.split_once(':'));
        let pulls: Vec<&PullRecord> = repo
            .prs
            .values()
            .rev()
            .filter(|pr| wanted == "all" || pr.issue.state == wanted)
            .filter(|pr| base.is_none_or(|b| b == pr.base_ref))
            .filter(|pr| {
                head.is_none_or(|(o, b)| o.eq_ignore_ascii_case(repo.owner()) && b == pr.head_ref)
            })
            .collect();
        let page = page_of(&self.base_url, ctx.req, pulls.len());
        let items = pulls[page.range.clone()]
            .iter()
            .map(|pr| pull_json(&self.base_url, repo, pr))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn get_pull(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let pr = self.pull_of(repo, ctx)?;
        Ok(Reply::json(200, full_pull_json(&self.base_url, repo, pr)))
    }

    fn create_pull(&mut self, ctx: &Ctx) -> Outcome {
        let author = self.actor(&ctx.who);
        let opening = self.pull_opening(ctx, author)?;
        let now = self.stamp();
        let repo = self.repo_of_mut(ctx)?;
        let number = repo.open_pull(opening, now);
        let repo = self.repo_of(ctx)?;
        let body = full_pull_json(&self.base_url, repo, repo.pr(number));
        let location = body["url"].as_str().unwrap_or_default().to_owned();
        Ok(Reply::json(201, body).header("location", location))
    }

    /// Reads and checks a request to open a pull request, refusing as GitHub does.
    fn pull_opening(&self, ctx: &Ctx, author: String) -> Result<PullOpening, Reply> {
        let repo = self.repo_of(ctx)?;
        let req = ctx.req;
        let invalid = |field: &str| invalid_field("PullRequest", field, "invalid", None);
        let title = req
            .body_str("title")
            .ok_or_else(|| invalid_field("PullRequest", "title", "missing_field", None))?;
        let base = req.body_str("base").unwrap_or("");
        let head = req.body_str("head").unwrap_or("");
        // `owner:branch` names the head's repository; only same-repository heads exist here.
        let head = match head.split_once(':') {
            Some((owner, branch)) if owner.eq_ignore_ascii_case(repo.owner()) => branch,
            Some(_) => return Err(invalid("head")),
            None => head,
        };
        let base_tip = repo.branches.get(base).ok_or_else(|| invalid("base"))?;
        let head_tip = repo.branches.get(head).ok_or_else(|| invalid("head"))?;
        let custom = |message: String| custom_error("PullRequest", &message);
        let open_already = repo
            .prs
            .values()
            .any(|pr| pr.issue.state == "open" && pr.head_ref == head && pr.base_ref == base);
        if open_already {
            let message = format!("A pull request already exists for {}:{head}.", repo.owner());
            return Err(custom(message));
        }
        if head == base || repo.commits_between(base_tip, head_tip).is_empty() {
            return Err(custom(format!("No commits between {base} and {head}")));
        }
        let flag = |name: &str| req.body.as_ref().and_then(|b| b[name].as_bool());
        Ok(PullOpening {
            author,
            title: title.to_owned(),
            body: req.body_str("body").unwrap_or("").to_owned(),
            base_ref: base.to_owned(),
            head_ref: head.to_owned(),
            draft: flag("draft").unwrap_or(false),
            maintainer_can_modify: flag("maintainer_can_modify").unwrap_or(false),
        })
    }

    fn list_pull_files(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let pr = self.pull_of(repo, ctx)?;
        let mut files = repo.diff(&pr.base_sha, pr.head());
        files.truncate(PR_FILES_CAP);
        let page = page_of(&self.base_url, ctx.req, files.len());
        let items = files[page.range.clone()]
            .iter()
            .map(|f| diff_entry_json(&self.base_url, repo, f, pr.head()))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn list_pull_commits(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let pr = self.pull_of(repo, ctx)?;
        let listed = pr.commits.len().min(PR_COMMITS_CAP);
        let page = page_of(&self.base_url, ctx.req, listed);
        let items = pr.commits[page.range.clone()]
            .iter()
            .map(|sha| commit_json(&self.base_url, repo, sha))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn list_reviews(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let pr = self.pull_of(repo, ctx)?;
        let page = page_of(&self.base_url, ctx.req, pr.reviews.len());
        let items = pr.reviews[page.range.clone()]
            .iter()
            .map(|r| review_json(&self.base_url, repo, pr.number(), r))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn compare(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let basehead = ctx.param("basehead");
        let (base_ref, head_ref) = basehead.split_once("...").ok_or_else(Reply::not_found)?;
        let no_commit = |r: &str| Reply::error(404, &format!("No commit found for the ref {r}"));
        let base = repo.resolve(base_ref).ok_or_else(|| no_commit(base_ref))?;
        let head = repo.resolve(head_ref).ok_or_else(|| no_commit(head_ref))?;
        let ahead = repo.commits_between(&base, &head);
        let behind = repo.commits_between(&head, &base);
        let status = match (ahead.len(), behind.len()) {
            (0, 0) => "identical",
            (_, 0) => "ahead",
            (0, _) => "behind",
            _ => "diverged",
        };
        let merge_base = repo.merge_base(&base, &head);
        let mut files = repo.diff(&merge_base, &head);
        files.truncate(COMPARE_FILES_CAP);
        let base_url = &self.base_url;
        let html = format!("https://github.com/{}/compare/{basehead}", repo.full_name);
        Ok(Reply::json(
            200,
            json!({
                "url": format!("{base_url}/repos/{}/compare/{basehead}", repo.full_name),
                "html_url": html,
                "permalink_url": format!("https://github.com/{}/compare/{base}...{head}", repo.full_name),
                "diff_url": format!("{html}.diff"),
                "patch_url": format!("{html}.patch"),
                "base_commit": commit_json(base_url, repo, &base),
                "merge_base_commit": commit_json(base_url, repo, &merge_base),
                "status": status,
                "ahead_by": ahead.len(),
                "behind_by": behind.len(),
                "total_commits": ahead.len(),
                "commits": ahead
                    .iter()
                    .take(COMPARE_COMMITS_CAP)
                    .map(|sha| commit_json(base_url, repo, sha))
                    .collect::<Vec<_>>(),
                "files": files.iter().map(|f| diff_entry_json(base_url, repo, f, &head)).collect::<Vec<_>>(),
            }),
        ))
    }

    /// The pull requests a commit belongs to: those whose commits include it, and the one it
    /// merged.
    fn pulls_of_commit(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let sha = repo.resolve(ctx.param("commit_sha")).ok_or_else(|| {
            Reply::error(
                422,
                &format!("No commit found for SHA: {}", ctx.param("commit_sha")),
            )
        })?;
        let pulls: Vec<Value> = repo
            .prs
            .values()
            .filter(|pr| pr.commits.contains(&sha) || pr.merge_commit_sha.as_ref() == Some(&sha))
            .map(|pr| pull_json(&self.base_url, repo, pr))
            .collect();
        Ok(Reply::json(200, Value::Array(pulls)))
    }
}

// --- issues ------------------------------------------------------------------------------------

/// Fields of an issue request that GitHub validates, read from its body.
struct IssueEdits {
    title: Option<String>,
    body: Option<String>,
    labels: Option<Vec<String>>,
    assignees: Option<Vec<String>>,
}

impl State {
    fn get_issue(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let number = ctx.number("issue_number")?;
        let (issue, is_pull) = repo.issue(number).ok_or_else(Reply::not_found)?;
        Ok(Reply::json(
            200,
            issue_json(&self.base_url, repo, issue, is_pull),
        ))
    }

    /// `GET /repos/{owner}/{repo}/issues`: issues and pull requests (as GitHub lists both),
    /// newest first, filtered by `state` (default `open`), `labels` (all of them, comma
    /// separated) and `creator`.
    fn list_issues(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let wanted = ctx.req.query("state").unwrap_or("open");
        let labels: Vec<&str> = ctx
            .req
            .query("labels")
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let creator = ctx.req.query("creator");
        let mut all: Vec<(&IssueRecord, bool)> = repo
            .issues
            .values()
            .map(|i| (i, false))
            .chain(repo.prs.values().map(|pr| (&pr.issue, true)))
            .filter(|(i, _)| wanted == "all" || i.state == wanted)
            .filter(|(i, _)| {
                labels
                    .iter()
                    .all(|l| i.labels.iter().any(|have| have.eq_ignore_ascii_case(l)))
            })
            .filter(|(i, _)| creator.is_none_or(|c| c.eq_ignore_ascii_case(&i.author)))
            .collect();
        all.sort_by_key(|(issue, _)| std::cmp::Reverse(issue.number));
        let page = page_of(&self.base_url, ctx.req, all.len());
        let items = all[page.range.clone()]
            .iter()
            .map(|(issue, is_pull)| issue_json(&self.base_url, repo, issue, *is_pull))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn create_issue(&mut self, ctx: &Ctx) -> Outcome {
        let author = self.actor(&ctx.who);
        let repo = self.repo_of(ctx)?;
        let edits = issue_edits(repo, ctx.req)?;
        let title = edits
            .title
            .ok_or_else(|| invalid_field("Issue", "title", "missing_field", None))?;
        let now = self.stamp();
        let repo = self.repo_of_mut(ctx)?;
        let number = repo.next_number();
        let mut issue = IssueRecord::new(number, &author, &title, now);
        issue.body = edits.body.unwrap_or_default();
        issue.add_labels(edits.labels.unwrap_or_default());
        issue.assignees = edits.assignees.unwrap_or_default();
        repo.issues.insert(number, issue);
        let repo = self.repo_of(ctx)?;
        let body = issue_json(&self.base_url, repo, &repo.issues[&number], false);
        let location = body["url"].as_str().unwrap_or_default().to_owned();
        Ok(Reply::json(201, body).header("location", location))
    }

    fn update_issue(&mut self, ctx: &Ctx) -> Outcome {
        let actor = self.actor(&ctx.who);
        let number = ctx.number("issue_number")?;
        let repo = self.repo_of(ctx)?;
        let (_, is_pull) = repo.issue(number).ok_or_else(Reply::not_found)?;
        let merged = is_pull && repo.pr(number).merged;
        let edits = issue_edits(repo, ctx.req)?;
        let wanted_state = ctx.req.body_str("state");
        if merged && wanted_state == Some("open") {
            return Err(custom_error(
                "PullRequest",
                "state cannot be changed. The pull request has already been merged.",
            ));
        }
        let reason = ctx.req.body_str("state_reason").map(str::to_owned);
        let now = self.stamp();
        let repo = self.repo_of_mut(ctx)?;
        let issue = repo.issue_mut(number).ok_or_else(Reply::not_found)?;
        match wanted_state {
            Some("closed") if issue.state == "open" => {
                issue.close(Some(&actor), now);
                let default = (!is_pull).then(|| "completed".to_owned());
                issue.state_reason = reason.or(default);
            }
            Some("open") if issue.state == "closed" => issue.reopen(now),
            _ => {}
        }
        apply_issue_edits(issue, edits, now);
        let repo = self.repo_of(ctx)?;
        let (issue, is_pull) = repo.issue(number).ok_or_else(Reply::not_found)?;
        Ok(Reply::json(
            200,
            issue_json(&self.base_url, repo, issue, is_pull),
        ))
    }

    fn add_issue_labels(&mut self, ctx: &Ctx) -> Outcome {
        let number = ctx.number("issue_number")?;
        // The object form; GitHub also takes a bare array (which the OpenAPI subset lacks).
        let listed = match &ctx.req.body {
            Some(Value::Array(items)) => Some(items),
            Some(body) => body["labels"].as_array(),
            None => None,
        };
        let labels = listed.map(|items| label_names(items)).unwrap_or_default();
        let now = self.stamp();
        let repo = self.repo_of_mut(ctx)?;
        let issue = repo.issue_mut(number).ok_or_else(Reply::not_found)?;
        issue.add_labels(labels);
        issue.updated_at = now;
        let repo = self.repo_of(ctx)?;
        let (issue, _) = repo.issue(number).ok_or_else(Reply::not_found)?;
        let base = &self.base_url;
        let items = issue
            .labels
            .iter()
            .map(|l| label_json(base, repo, l))
            .collect();
        Ok(Reply::json(200, Value::Array(items)))
    }
}

/// The title, body, labels and assignees of an issue request; an assignee without push access
/// or a milestone (the fake has none) is refused as GitHub refuses it.
fn issue_edits(repo: &Repo, req: &Incoming) -> Result<IssueEdits, Reply> {
    let body = req.body.clone().unwrap_or(Value::Null);
    let title = match &body["title"] {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    if !body["milestone"].is_null() {
        let value = body["milestone"].clone();
        return Err(invalid_field("Issue", "milestone", "invalid", Some(value)));
    }
    let mut assignees: Option<Vec<String>> = body["assignees"].as_array().map(|items| {
        items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    });
    if let Some(single) = body["assignee"].as_str() {
        assignees
            .get_or_insert_with(Vec::new)
            .push(single.to_owned());
    }
    for login in assignees.iter().flatten() {
        let role = repo.permissions.get(&login.to_lowercase());
        if !role.is_some_and(|r| PUSH_ROLES.contains(&r.as_str())) {
            let value = Some(Value::from(login.as_str()));
            return Err(invalid_field("Issue", "assignees", "invalid", value));
        }
    }
    Ok(IssueEdits {
        title,
        body: body["body"].as_str().map(str::to_owned),
        labels: body["labels"].as_array().map(|items| label_names(items)),
        assignees,
    })
}

fn apply_issue_edits(issue: &mut IssueRecord, edits: IssueEdits, now: DateTime<Utc>) {
    if let Some(title) = edits.title {
        issue.title = title;
    }
    if let Some(body) = edits.body {
        issue.body = body;
    }
    if let Some(labels) = edits.labels {
        issue.labels.clear();
        issue.add_labels(labels);
    }
    if let Some(assignees) = edits.assignees {
        issue.assignees = assignees;
    }
    issue.updated_at = now;
}

/// Label names from a request's list: names, or objects with a `name`.
fn label_names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| item.as_str().or_else(|| item["name"].as_str()))
        .map(str::to_owned)
        .collect()
}

// --- git data ----------------------------------------------------------------------------------

impl State {
    fn get_ref(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        // Only branches exist in the fake (no tags).
        let branch = ctx.param("ref").strip_prefix("heads/");
        let (branch, sha) = branch
            .and_then(|b| repo.branches.get_key_value(b))
            .ok_or_else(Reply::not_found)?;
        Ok(Reply::json(
            200,
            ref_json(&self.base_url, repo, branch, sha),
        ))
    }

    fn create_ref(&mut self, ctx: &Ctx) -> Outcome {
        let name = ctx.req.body_str("ref").unwrap_or("");
        let sha = ctx.req.body_str("sha").unwrap_or("");
        let repo = self.repo_of_mut(ctx)?;
        let branch = match name.strip_prefix("refs/heads/") {
            Some(branch) if !branch.is_empty() => branch,
            _ if name.starts_with("refs/") && name.matches('/').count() >= 2 => {
                return Err(Reply::error(
                    422,
                    "the fake GitHub only creates branches (refs/heads/…)",
                ));
            }
            _ => return Err(Reply::error(422, "Reference name is invalid")),
        };
        if repo.branches.contains_key(branch) {
            return Err(Reply::error(422, "Reference already exists"));
        }
        if !repo.knows(sha) {
            return Err(Reply::error(422, "Object does not exist"));
        }
        repo.branches.insert(branch.to_owned(), sha.to_owned());
        let repo = self.repo_of(ctx)?;
        let body = ref_json(&self.base_url, repo, branch, sha);
        let location = body["url"].as_str().unwrap_or_default().to_owned();
        Ok(Reply::json(201, body).header("location", location))
    }

    fn get_git_commit(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let sha = ctx.param("commit_sha");
        if !repo.knows(sha) {
            return Err(Reply::not_found());
        }
        Ok(Reply::json(200, git_commit_json(&self.base_url, repo, sha)))
    }

    /// Writes a commit whose tree is a known tree, on known parents, as the caller.
    fn create_git_commit(&mut self, ctx: &Ctx) -> Outcome {
        let author = self.actor(&ctx.who);
        let body = ctx.req.body.clone().unwrap_or(Value::Null);
        let repo = self.repo_of(ctx)?;
        let tree_sha = body["tree"].as_str().unwrap_or("");
        let tree = repo
            .find_tree(tree_sha)
            .ok_or_else(|| Reply::error(422, "Tree SHA does not exist"))?;
        let parents: Vec<String> = body["parents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().unwrap_or("").to_owned())
            .collect();
        if parents.iter().any(|p| !repo.knows(p)) {
            let message = "Parent SHA does not exist or is not a commit object";
            return Err(Reply::error(422, message));
        }
        let commit = NewCommit {
            parents,
            committer: author.clone(),
            author,
            message: body["message"].as_str().unwrap_or("").to_owned(),
            files: Vec::new(),
            snapshot: Some(tree),
        };
        let now = self.stamp();
        let sha = self.repo_of_mut(ctx)?.write_commit(commit, now);
        let repo = self.repo_of(ctx)?;
        let body = git_commit_json(&self.base_url, repo, &sha);
        let location = body["url"].as_str().unwrap_or_default().to_owned();
        Ok(Reply::json(201, body).header("location", location))
    }
}

// --- GraphQL -----------------------------------------------------------------------------------

/// A GraphQL error: its `type` (absent for documents the fake does not serve) and message.
struct GraphqlError {
    kind: Option<&'static str>,
    message: String,
}

impl GraphqlError {
    fn typed(kind: &'static str, message: String) -> GraphqlError {
        GraphqlError {
            kind: Some(kind),
            message,
        }
    }

    fn unsupported() -> GraphqlError {
        GraphqlError {
            kind: None,
            message: GRAPHQL_UNSUPPORTED.to_owned(),
        }
    }

    /// GraphQL answers errors with 200 and an `errors` list, and `data` when the document ran.
    fn reply(self) -> Reply {
        let Some(kind) = self.kind else {
            return Reply::json(200, json!({ "errors": [{ "message": self.message }] }));
        };
        let error = json!({
            "type": kind,
            "path": ["revertPullRequest"],
            "locations": [{ "line": 1, "column": 1 }],
            "message": self.message,
        });
        Reply::json(
            200,
            json!({ "data": { "revertPullRequest": null }, "errors": [error] }),
        )
    }
}

impl State {
    /// `POST /graphql`: only the `revertPullRequest` mutation, its input in variables.
    fn graphql(&mut self, ctx: &Ctx) -> Outcome {
        let body = ctx.req.body.clone().unwrap_or(Value::Null);
        let query = body["query"].as_str().unwrap_or("");
        let tokens = graphql_tokens(query);
        let Some(variable) = revert_input_variable(&tokens) else {
            return Ok(GraphqlError::unsupported().reply());
        };
        let input = &body["variables"][variable.as_str()];
        match self.revert_pull_request(ctx, input) {
            Ok((key, original, revert)) => {
                let repo = &self.repos[&key];
                let payload =
                    revert_payload(&self.base_url, repo, &tokens, input, original, revert);
                Ok(Reply::json(
                    200,
                    json!({ "data": { "revertPullRequest": payload } }),
                ))
            }
            Err(error) => Ok(error.reply()),
        }
    }

    /// Reverts the merged PR the input names; answers its repository key, number and the
    /// revert's number.
    fn revert_pull_request(
        &mut self,
        ctx: &Ctx,
        input: &Value,
    ) -> Result<(String, u64, u64), GraphqlError> {
        let id = input["pullRequestId"].as_str().unwrap_or("");
        let not_found = || {
            let message = format!("Could not resolve to a node with the global id of '{id}'.");
            GraphqlError::typed("NOT_FOUND", message)
        };
        let number: u64 = id
            .strip_prefix("PR_fake")
            .and_then(|n| n.parse().ok())
            .ok_or_else(not_found)?;
        let holders: Vec<&String> = self
            .repos
            .iter()
            .filter(|(_, repo)| repo.prs.contains_key(&number))
            .map(|(key, _)| key)
            .collect();
        let key = match holders.as_slice() {
            [key] => (*key).clone(),
            [] => return Err(not_found()),
            _ => {
                let message = format!(
                    "the fake's node id {id} names PR #{number} of several repositories; \
                     give each test's PRs distinct numbers"
                );
                return Err(GraphqlError::typed("NOT_FOUND", message));
            }
        };
        let pr = self.repos[&key].pr(number);
        if !pr.merged {
            let message =
                format!("Pull request #{number} must be merged before it can be reverted.");
            return Err(GraphqlError::typed("UNPROCESSABLE", message));
        }
        let text = |field: &str| input[field].as_str().map(str::to_owned);
        let opening = PullOpening {
            author: self.actor(&ctx.who),
            title: text("title").unwrap_or_else(|| format!("Revert \"{}\"", pr.issue.title)),
            body: text("body")
                .unwrap_or_else(|| format!("Reverts {}#{number}", self.repos[&key].full_name)),
            base_ref: pr.base_ref.clone(),
            head_ref: String::new(),
            draft: input["draft"].as_bool().unwrap_or(false),
            maintainer_can_modify: false,
        };
        let now = self.stamp();
        let revert = self
            .repos
            .get_mut(&key)
            .expect("found above")
            .revert(number, opening, now);
        Ok((key, number, revert))
    }
}

/// A GraphQL document as tokens: names, and punctuation one character each.
fn graphql_tokens(query: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut in_name = false;
    for c in query.chars() {
        let name_char = c.is_ascii_alphanumeric() || c == '_';
        match (name_char, in_name) {
            (true, true) => tokens.last_mut().expect("in a name").push(c),
            (true, false) => tokens.push(c.to_string()),
            (false, _) if !c.is_whitespace() && c != ',' => tokens.push(c.to_string()),
            _ => {}
        }
        in_name = name_char;
    }
    tokens
}

/// The variable that holds `revertPullRequest`'s input, when the document is that mutation.
fn revert_input_variable(tokens: &[String]) -> Option<String> {
    if tokens.first().map(String::as_str) != Some("mutation") {
        return None;
    }
    let at = tokens
        .windows(2)
        .position(|w| w[0] == "revertPullRequest" && w[1] == "(")?;
    match &tokens[at + 2..] {
        [input, colon, dollar, name, ..] if input == "input" && colon == ":" && dollar == "$" => {
            Some(name.clone())
        }
        _ => None,
    }
}

/// The fields selected under each field of `revertPullRequest`'s payload (`{ revertPullRequest
/// { number url } }` gives `revertPullRequest → [number, url]`).
fn payload_selection(tokens: &[String]) -> Vec<(String, Vec<String>)> {
    let Some(open) = tokens
        .windows(2)
        .position(|w| w[0] == "revertPullRequest" && w[1] == "(")
        .and_then(|at| tokens[at..].iter().position(|t| t == "{").map(|i| at + i))
    else {
        return Vec::new();
    };
    let mut selection: Vec<(String, Vec<String>)> = Vec::new();
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "{" => depth += 1,
            "}" if depth == 1 => break,
            "}" => depth -= 1,
            _ if depth == 1 => selection.push((token.clone(), Vec::new())),
            _ if depth == 2 && tokens.get(i + 1).is_none_or(|t| t != ":") => {
                if let Some((_, fields)) = selection.last_mut() {
                    fields.push(token.clone());
                }
            }
            _ => {}
        }
    }
    selection
}

/// `revertPullRequest`'s payload with the fields the document selected.
fn revert_payload(
    base: &str,
    repo: &Repo,
    tokens: &[String],
    input: &Value,
    original: u64,
    revert: u64,
) -> Value {
    let mut selection = payload_selection(tokens);
    if selection.is_empty() {
        selection.push((
            "revertPullRequest".to_owned(),
            vec!["number".to_owned(), "url".to_owned()],
        ));
    }
    let mut payload = serde_json::Map::new();
    for (field, fields) in selection {
        let value = match field.as_str() {
            "revertPullRequest" => graphql_pull(base, repo.pr(revert), repo, &fields),
            "pullRequest" => graphql_pull(base, repo.pr(original), repo, &fields),
            "clientMutationId" => input["clientMutationId"].clone(),
            _ => Value::Null,
        };
        payload.insert(field, value);
    }
    Value::Object(payload)
}

/// A pull request as a GraphQL `PullRequest` object, with the selected fields the fake knows.
fn graphql_pull(base: &str, pr: &PullRecord, repo: &Repo, fields: &[String]) -> Value {
    let rest = pull_json(base, repo, pr);
    let state = match (pr.merged, pr.issue.state) {
        (true, _) => "MERGED",
        (false, "open") => "OPEN",
        _ => "CLOSED",
    };
    let mut object = serde_json::Map::new();
    for field in fields {
        let value = match field.as_str() {
            "id" => rest["node_id"].clone(),
            "number" => rest["number"].clone(),
            "url" | "permalink" => rest["html_url"].clone(),
            "title" => rest["title"].clone(),
            "body" => rest["body"].clone(),
            "state" => Value::from(state),
            "merged" => Value::from(pr.merged),
            "isDraft" => Value::from(pr.draft),
            "headRefName" => Value::from(pr.head_ref.as_str()),
            "baseRefName" => Value::from(pr.base_ref.as_str()),
            "__typename" => Value::from("PullRequest"),
            _ => Value::Null,
        };
        object.insert(field.clone(), value);
    }
    Value::Object(object)
}

// --- files -------------------------------------------------------------------------------------

impl State {
    fn tree_for(&self, repo: &Repo, reference: Option<&str>) -> Result<(String, Tree), Reply> {
        let reference = reference.unwrap_or(&repo.default_branch);
        let sha = repo.resolve(reference).ok_or_else(|| {
            Reply::error(404, &format!("No commit found for the ref {reference}"))
        })?;
        let tree = repo.tree_at(&sha).unwrap_or_default();
        Ok((sha, tree))
    }

    fn get_contents(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let (sha, tree) = self.tree_for(repo, ctx.req.query("ref"))?;
        let path = ctx.param("path").trim_matches('/');
        if let Some(text) = tree.get(path) {
            return Ok(Reply::json(
                200,
                contents_json(&self.base_url, repo, path, text, &sha),
            ));
        }
        let prefix = format!("{path}/");
        let mut children: BTreeMap<String, Option<&String>> = BTreeMap::new();
        for (file, text) in tree
            .range(prefix.clone()..)
            .take_while(|(f, _)| f.starts_with(&prefix))
        {
            let rest = &file[prefix.len()..];
            match rest.split_once('/') {
                Some((folder, _)) => children.entry(format!("{prefix}{folder}")).or_insert(None),
                None => children.entry(file.clone()).or_insert(Some(text)),
            };
        }
        if children.is_empty() {
            return Err(Reply::not_found());
        }
        let entries = children
            .iter()
            .map(|(child, text)| folder_entry_json(&self.base_url, repo, child, *text, &sha))
            .collect();
        Ok(Reply::json(200, Value::Array(entries)))
    }

    fn get_tree(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        // A tree's own sha, or (as GitHub also takes) a commit sha or a branch.
        let wanted = ctx.param("tree_sha");
        let tree = match repo.resolve(wanted) {
            Some(_) => self.tree_for(repo, Some(wanted))?.1,
            None => repo.find_tree(wanted).ok_or_else(Reply::not_found)?,
        };
        let recursive = ctx
            .req
            .query("recursive")
            .is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
        let mut folders: BTreeSet<String> = BTreeSet::new();
        for path in tree.keys() {
            let mut parts: Vec<&str> = path.split('/').collect();
            parts.pop();
            for depth in 1..=parts.len() {
                folders.insert(parts[..depth].join("/"));
            }
        }
        let url = |kind: &str, sha: &str| {
            format!(
                "{}/repos/{}/git/{kind}/{sha}",
                self.base_url, repo.full_name
            )
        };
        let mut entries: Vec<(String, Value)> = Vec::new();
        for folder in folders.iter().filter(|f| recursive || !f.contains('/')) {
            let tree_sha = tree_sha_of(&subtree(&tree, folder));
            let entry = json!({
                "path": folder, "mode": "040000", "type": "tree",
                "sha": tree_sha, "url": url("trees", &tree_sha),
            });
            entries.push((folder.clone(), entry));
        }
        for (path, text) in tree.iter().filter(|(p, _)| recursive || !p.contains('/')) {
            let blob = blob_sha(text);
            let entry = json!({
                "path": path, "mode": "100644", "type": "blob",
                "sha": blob, "size": text.len(), "url": url("blobs", &blob),
            });
            entries.push((path.clone(), entry));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let tree_sha = tree_sha_of(&tree);
        Ok(Reply::json(
            200,
            json!({
                "sha": tree_sha,
                "url": url("trees", &tree_sha),
                "tree": entries.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
                "truncated": false,
            }),
        ))
    }
}

/// The files under `folder`, with paths relative to it.
fn subtree(tree: &Tree, folder: &str) -> Tree {
    let prefix = format!("{folder}/");
    tree.range(prefix.clone()..)
        .take_while(|(path, _)| path.starts_with(&prefix))
        .map(|(path, text)| (path[prefix.len()..].to_owned(), text.clone()))
        .collect()
}

// --- people ------------------------------------------------------------------------------------

impl State {
    fn get_permission(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let login = ctx.param("username");
        let role = repo
            .permissions
            .get(&login.to_lowercase())
            .map_or("read", String::as_str);
        // The legacy `permission` field folds maintain into write and triage into read.
        let permission = match role {
            "maintain" => "write",
            "triage" => "read",
            other => other,
        };
        let rank = ["none", "read", "triage", "write", "maintain", "admin"]
            .iter()
            .position(|r| *r == role)
            .unwrap_or(1);
        let mut user = user_json(&self.base_url, login);
        merge(
            &mut user,
            json!({ "permissions": {
                "pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3,
                "maintain": rank >= 4, "admin": rank >= 5,
            }, "role_name": role }),
        );
        Ok(Reply::json(
            200,
            json!({ "permission": permission, "role_name": role, "user": user }),
        ))
    }

    fn get_membership(&self, ctx: &Ctx) -> Outcome {
        let key = (
            ctx.param("org").to_lowercase(),
            ctx.param("team_slug").to_lowercase(),
        );
        let login = ctx.param("username");
        let state = self
            .teams
            .get(&key)
            .and_then(|team| team.get(&login.to_lowercase()))
            .ok_or_else(Reply::not_found)?;
        Ok(Reply::json(
            200,
            json!({
                "url": format!(
                    "{}/organizations/{}/team/{}/memberships/{}",
                    self.base_url, user_id(&key.0), user_id(&key.1), encode(login)
                ),
                "role": "member",
                "state": state,
            }),
        ))
    }

    fn get_org_member(&self, ctx: &Ctx) -> Outcome {
        let org = ctx.param("org").to_lowercase();
        let login = ctx.param("username").to_lowercase();
        let member = self
            .teams
            .iter()
            .any(|((o, _), team)| *o == org && team.get(&login) == Some(&"active"));
        match member {
            true => Ok(Reply::empty(204)),
            false => Err(Reply::not_found()),
        }
    }
}

// --- comments ----------------------------------------------------------------------------------

impl State {
    fn list_comments(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let number = ctx.number("issue_number")?;
        repo.issue(number).ok_or_else(Reply::not_found)?;
        let since = ctx
            .req
            .query("since")
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        let comments: Vec<&CommentView> = repo
            .comments
            .iter()
            .filter(|c| c.number == number && since.is_none_or(|s| c.updated_at >= s))
            .collect();
        let page = page_of(&self.base_url, ctx.req, comments.len());
        let items = comments[page.range.clone()]
            .iter()
            .map(|c| self.comment_json(repo, c))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn create_comment(&mut self, ctx: &Ctx) -> Outcome {
        let body = ctx.req.body_str("body").unwrap_or("").to_owned();
        check_comment_length(&body)?;
        let author = self.actor(&ctx.who);
        let (id, now) = (self.new_id(), self.stamp());
        let repo = self.repo_of_mut(ctx)?;
        let number = ctx.number("issue_number")?;
        if !repo.number_taken(number) {
            return Err(Reply::not_found());
        }
        let comment = CommentView {
            id,
            number,
            author_type: user_type(&author).to_owned(),
            author,
            body,
            created_at: now,
            updated_at: now,
            edited_by: None,
        };
        repo.comments.push(comment.clone());
        let repo = self.repo_of(ctx)?;
        Ok(Reply::json(201, self.comment_json(repo, &comment)))
    }

    fn get_comment(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let id = ctx.number("comment_id")?;
        let comment = repo
            .comments
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(Reply::not_found)?;
        Ok(Reply::json(200, self.comment_json(repo, comment)))
    }

    fn update_comment(&mut self, ctx: &Ctx) -> Outcome {
        let body = ctx.req.body_str("body").unwrap_or("").to_owned();
        check_comment_length(&body)?;
        let editor = self.actor(&ctx.who);
        let now = self.stamp();
        let id = ctx.number("comment_id")?;
        let comment = self
            .repo_of_mut(ctx)?
            .comment_mut(id)
            .ok_or_else(Reply::not_found)?;
        comment.body = body;
        comment.updated_at = now;
        comment.edited_by = Some(editor);
        let comment = comment.clone();
        let repo = self.repo_of(ctx)?;
        Ok(Reply::json(200, self.comment_json(repo, &comment)))
    }

    fn delete_comment(&mut self, ctx: &Ctx) -> Outcome {
        let id = ctx.number("comment_id")?;
        let repo = self.repo_of_mut(ctx)?;
        let before = repo.comments.len();
        repo.comments.retain(|c| c.id != id);
        match repo.comments.len() < before {
            true => Ok(Reply::empty(204)),
            false => Err(Reply::not_found()),
        }
    }

    fn comment_json(&self, repo: &Repo, comment: &CommentView) -> Value {
        let base = &self.base_url;
        let name = &repo.full_name;
        let via_app = match (&self.app, comment.author_type.as_str()) {
            (Some(app), "Bot") if comment.author == app.bot_login() => app_json(base, app),
            _ => Value::Null,
        };
        let kind = match repo.prs.contains_key(&comment.number) {
            true => "pull",
            false => "issues",
        };
        json!({
            "id": comment.id,
            "node_id": format!("IC_fake{}", comment.id),
            "url": format!("{base}/repos/{name}/issues/comments/{}", comment.id),
            "html_url": format!("https://github.com/{name}/{kind}/{}#issuecomment-{}", comment.number, comment.id),
            "issue_url": format!("{base}/repos/{name}/issues/{}", comment.number),
            "body": comment.body,
            "user": user_json(base, &comment.author),
            "created_at": timestamp(comment.created_at),
            "updated_at": timestamp(comment.updated_at),
            "author_association": if comment.author_type == "Bot" { "NONE" } else { "CONTRIBUTOR" },
            "performed_via_github_app": via_app,
        })
    }
}

fn check_comment_length(body: &str) -> Result<(), Reply> {
    if body.chars().count() > COMMENT_BODY_MAX_CHARS {
        return Err(validation_failed(
            "IssueComment",
            "body",
            &format!("Body is too long (maximum is {COMMENT_BODY_MAX_CHARS} characters)"),
        ));
    }
    Ok(())
}

fn validation_failed(resource: &str, field: &str, message: &str) -> Reply {
    let error =
        json!({ "resource": resource, "field": field, "code": "custom", "message": message });
    validation_errors(error)
}

/// GitHub's 422 for a field it refuses (`code` is `invalid`, `missing_field`, …), naming the
/// refused value when there is one.
fn invalid_field(resource: &str, field: &str, code: &str, value: Option<Value>) -> Reply {
    let mut error = json!({ "resource": resource, "field": field, "code": code });
    if let Some(value) = value {
        merge(&mut error, json!({ "value": value }));
    }
    validation_errors(error)
}

/// GitHub's 422 for a rule that is about no single field.
fn custom_error(resource: &str, message: &str) -> Reply {
    validation_errors(json!({ "resource": resource, "code": "custom", "message": message }))
}

fn validation_errors(error: Value) -> Reply {
    Reply::json(
        422,
        json!({
            "message": "Validation Failed",
            "errors": [error],
            "documentation_url": DOCS_URL,
            "status": "422",
        }),
    )
}

// --- check runs and statuses -------------------------------------------------------------------

impl State {
    fn create_check_run(&mut self, ctx: &Ctx) -> Outcome {
        let body = ctx.req.body.clone().unwrap_or(Value::Null);
        let head_sha = body["head_sha"].as_str().unwrap_or("").to_owned();
        let app_id = self.app.as_ref().map_or(0, |a| a.id);
        let (id, now) = (self.new_id(), self.stamp());
        let repo = self.repo_of_mut(ctx)?;
        if !repo.knows(&head_sha) {
            return Err(Reply::error(
                422,
                &format!("No commit found for SHA: {head_sha}"),
            ));
        }
        let mut run = CheckRunView {
            id,
            name: String::new(),
            head_sha,
            status: "queued".to_owned(),
            conclusion: None,
            title: None,
            summary: None,
            text: None,
            annotations: Vec::new(),
            annotations_count: 0,
            external_id: None,
            details_url: None,
            app_id,
            history: Vec::new(),
            started_at: Some(timestamp(now)),
            completed_at: None,
        };
        apply_check_run_fields(&mut run, &body, now);
        repo.check_runs.push(run.clone());
        let repo = self.repo_of(ctx)?;
        Ok(Reply::json(201, self.check_run_json(repo, &run)))
    }

    fn update_check_run(&mut self, ctx: &Ctx) -> Outcome {
        let body = ctx.req.body.clone().unwrap_or(Value::Null);
        let id = ctx.number("check_run_id")?;
        let app_id = self.app.as_ref().map_or(0, |a| a.id);
        let now = self.stamp();
        let repo = self.repo_of_mut(ctx)?;
        let run = repo
            .check_runs
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(Reply::not_found)?;
        if run.app_id != app_id {
            return Err(Reply::error(
                403,
                "Invalid app_id `the check run belongs to another App`",
            ));
        }
        apply_check_run_fields(run, &body, now);
        let run = run.clone();
        let repo = self.repo_of(ctx)?;
        Ok(Reply::json(200, self.check_run_json(repo, &run)))
    }

    fn get_check_run(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let id = ctx.number("check_run_id")?;
        let run = repo
            .check_runs
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(Reply::not_found)?;
        Ok(Reply::json(200, self.check_run_json(repo, run)))
    }

    fn list_check_runs(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let reference = ctx.param("ref");
        let sha = repo
            .resolve(reference)
            .ok_or_else(|| Reply::error(422, &format!("No commit found for SHA: {reference}")))?;
        let q = |name| ctx.req.query(name);
        let app_id = q("app_id").and_then(|v| v.parse::<u64>().ok());
        let mut runs: Vec<&CheckRunView> = repo
            .check_runs
            .iter()
            .rev()
            .filter(|r| r.head_sha == sha)
            .filter(|r| q("check_name").is_none_or(|n| n == r.name))
            .filter(|r| q("status").is_none_or(|s| s == r.status))
            .filter(|r| app_id.is_none_or(|a| a == r.app_id))
            .collect();
        if q("filter") != Some("all") {
            let mut seen = HashSet::new();
            runs.retain(|r| seen.insert((r.name.clone(), r.app_id)));
        }
        let page = page_of(&self.base_url, ctx.req, runs.len());
        let items: Vec<Value> = runs[page.range.clone()]
            .iter()
            .map(|r| self.check_run_json(repo, r))
            .collect();
        Ok(page.reply(json!({ "total_count": runs.len(), "check_runs": items })))
    }

    fn check_run_json(&self, repo: &Repo, run: &CheckRunView) -> Value {
        let base = &self.base_url;
        let name = &repo.full_name;
        let app = self
            .app
            .as_ref()
            .filter(|a| a.id == run.app_id)
            .map_or(Value::Null, |a| app_json(base, a));
        let pulls: Vec<Value> = repo
            .prs
            .values()
            .filter(|pr| pr.issue.state == "open" && pr.head() == run.head_sha)
            .map(|pr| minimal_pull_json(base, repo, pr))
            .collect();
        json!({
            "id": run.id,
            "node_id": format!("CR_fake{}", run.id),
            "name": run.name,
            "head_sha": run.head_sha,
            "external_id": run.external_id,
            "url": format!("{base}/repos/{name}/check-runs/{}", run.id),
            "html_url": format!("https://github.com/{name}/runs/{}", run.id),
            "details_url": run.details_url,
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "output": {
                "title": run.title,
                "summary": run.summary,
                "text": run.text,
                "annotations_count": run.annotations_count,
                "annotations_url": format!("{base}/repos/{name}/check-runs/{}/annotations", run.id),
            },
            "check_suite": { "id": user_id(&format!("{name} suite {}", run.head_sha)) },
            "app": app,
            "pull_requests": pulls,
        })
    }

    fn create_status(&mut self, ctx: &Ctx) -> Outcome {
        let req = ctx.req;
        let sha = ctx.param("sha").to_owned();
        let context = req.body_str("context").unwrap_or("default").to_owned();
        let creator = self.actor(&ctx.who);
        let (id, now) = (self.new_id(), self.stamp());
        let repo = self.repo_of_mut(ctx)?;
        if !repo.commits.contains_key(&sha) && !repo.seeded.contains_key(&sha) {
            return Err(Reply::error(
                422,
                &format!("No commit found for SHA: {sha}"),
            ));
        }
        let same = repo
            .statuses
            .iter()
            .filter(|s| s.sha == sha && s.context.eq_ignore_ascii_case(&context));
        if same.count() >= STATUSES_PER_CONTEXT_CAP {
            return Err(validation_failed(
                "Status",
                "context",
                "This SHA and context has reached the maximum number of statuses.",
            ));
        }
        let status = StatusView {
            id,
            sha,
            state: req.body_str("state").unwrap_or("pending").to_owned(),
            context,
            description: req.body_str("description").map(str::to_owned),
            target_url: req.body_str("target_url").map(str::to_owned),
            creator,
            created_at: now,
        };
        repo.statuses.push(status.clone());
        Ok(Reply::json(201, status_json(&self.base_url, &status)))
    }

    fn combined_status(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let reference = ctx.param("ref");
        let sha = repo
            .resolve(reference)
            .ok_or_else(|| Reply::error(404, &format!("No commit found for SHA: {reference}")))?;
        let mut latest: Vec<&StatusView> = Vec::new();
        for status in repo.statuses.iter().rev().filter(|s| s.sha == sha) {
            if !latest
                .iter()
                .any(|s| s.context.eq_ignore_ascii_case(&status.context))
            {
                latest.push(status);
            }
        }
        let state = if latest
            .iter()
            .any(|s| matches!(s.state.as_str(), "error" | "failure"))
        {
            "failure"
        } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
            "pending"
        } else {
            "success"
        };
        let base = &self.base_url;
        Ok(Reply::json(
            200,
            json!({
                "state": state,
                "sha": sha,
                "total_count": latest.len(),
                "statuses": latest.iter().map(|s| status_json(base, s)).collect::<Vec<_>>(),
                "repository": repo_json(base, repo),
                "commit_url": format!("{base}/repos/{}/commits/{sha}", repo.full_name),
                "url": format!("{base}/repos/{}/commits/{sha}/status", repo.full_name),
            }),
        ))
    }
}

/// Applies the fields of a create or update request to a check run, as GitHub does: a
/// conclusion completes the run, annotations are appended.
fn apply_check_run_fields(run: &mut CheckRunView, body: &Value, now: DateTime<Utc>) {
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
    if let Some(name) = text("name") {
        run.name = name;
    }
    run.external_id = text("external_id").or(run.external_id.take());
    run.details_url = text("details_url").or(run.details_url.take());
    run.started_at = text("started_at").or(run.started_at.take());
    run.completed_at = text("completed_at").or(run.completed_at.take());
    if let Some(status) = text("status") {
        run.status = status;
    }
    if let Some(conclusion) = text("conclusion") {
        run.conclusion = Some(conclusion);
        run.status = "completed".to_owned();
    }
    if run.status == "completed" && run.completed_at.is_none() {
        run.completed_at = Some(timestamp(now));
    }
    if let Some(output) = body.get("output") {
        let field = |name: &str| output.get(name).and_then(Value::as_str).map(str::to_owned);
        run.title = field("title").or(run.title.take());
        run.summary = field("summary").or(run.summary.take());
        run.text = field("text").or(run.text.take());
        if let Some(annotations) = output.get("annotations").and_then(Value::as_array) {
            run.annotations.extend(annotations.iter().cloned());
        }
        run.annotations_count = run.annotations.len();
    }
    run.history
        .push((run.status.clone(), run.conclusion.clone()));
}

// --- deployments and protection rules ----------------------------------------------------------

impl State {
    /// `GET /repos/{owner}/{repo}/deployments`: newest first, filtered by `sha`, `ref` and
    /// `task` (exact) and `environment` (GitHub's environment names ignore case).
    fn list_deployments(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let q = |name| ctx.req.query(name);
        let mut deployments: Vec<&DeploymentRecord> = repo
            .deployments
            .iter()
            .filter(|d| q("sha").is_none_or(|sha| sha == d.sha))
            .filter(|d| q("ref").is_none_or(|r| r == d.reference))
            .filter(|d| q("task").is_none_or(|task| task == d.task))
            .filter(|d| q("environment").is_none_or(|e| e.eq_ignore_ascii_case(&d.environment)))
            .collect();
        deployments.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
        let page = page_of(&self.base_url, ctx.req, deployments.len());
        let items = deployments[page.range.clone()]
            .iter()
            .map(|d| deployment_json(&self.base_url, repo, d))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    /// `GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses`: newest first.
    fn list_deployment_statuses(&self, ctx: &Ctx) -> Outcome {
        let repo = self.repo_of(ctx)?;
        let id = ctx.number("deployment_id")?;
        let deployment = repo
            .deployments
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(Reply::not_found)?;
        let statuses: Vec<&DeploymentStatusRecord> = deployment.statuses.iter().rev().collect();
        let page = page_of(&self.base_url, ctx.req, statuses.len());
        let items = statuses[page.range.clone()]
            .iter()
            .map(|s| deployment_status_json(&self.base_url, repo, deployment, s))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    /// `POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`: with a
    /// `state`, approves or rejects the run's deployment to `environment_name`, once; without,
    /// posts a status report (at most [`PROTECTION_REPORTS_CAP`], before the answer). The fake
    /// knows no workflow runs: any run id of an existing repository waits for its answer.
    fn review_protection_rule(&mut self, ctx: &Ctx) -> Outcome {
        let run_id = ctx.number("run_id")?;
        let req = ctx.req;
        let environment = req.body_str("environment_name").unwrap_or("").to_owned();
        let comment = req.body_str("comment").unwrap_or("").to_owned();
        let decision = req.body_str("state").map(str::to_owned);
        if comment.chars().count() > PROTECTION_COMMENT_MAX_CHARS {
            let message = format!(
                "Comment is too long (maximum is {PROTECTION_COMMENT_MAX_CHARS} characters)"
            );
            return Err(validation_failed(
                "DeploymentProtectionRule",
                "comment",
                &message,
            ));
        }
        let repo = self.repo_of(ctx)?;
        let same = |run: u64, env: &str| run == run_id && env.eq_ignore_ascii_case(&environment);
        if repo
            .protection_answers
            .iter()
            .any(|a| same(a.run_id, &a.environment))
        {
            let message = format!(
                "The deployment protection rule for environment '{environment}' of workflow \
                 run {run_id} has already been reviewed."
            );
            return Err(Reply::error(422, &message));
        }
        let reports = repo.protection_reports.iter();
        let reported = reports.filter(|r| same(r.run_id, &r.environment)).count();
        if decision.is_none() && reported >= PROTECTION_REPORTS_CAP {
            let message = format!(
                "A deployment protection rule takes at most {PROTECTION_REPORTS_CAP} status \
                 reports per deployment."
            );
            return Err(Reply::error(422, &message));
        }
        let at = self.stamp();
        let repo = self.repo_of_mut(ctx)?;
        match decision {
            Some(state) => repo.protection_answers.push(ProtectionAnswer {
                run_id,
                environment,
                state,
                comment,
                at,
            }),
            None => repo.protection_reports.push(ProtectionReport {
                run_id,
                environment,
                comment,
                at,
            }),
        }
        Ok(Reply::empty(204))
    }
}

// ---------------------------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------------------------

/// One page of a list: which items, and the `Link` header pointing at the others.
struct Page {
    range: Range<usize>,
    link: Option<String>,
}

impl Page {
    fn reply(self, body: Value) -> Reply {
        let reply = Reply::json(200, body);
        match self.link {
            Some(link) => reply.header("link", link),
            None => reply,
        }
    }
}

/// The page `page` (default 1) of `per_page` (default 30, at most 100) items out of `total`,
/// with RFC 5988 links (`next`, `last`, `first`, `prev`) that keep the request's other
/// parameters, as GitHub writes them.
fn page_of(base: &str, req: &Incoming, total: usize) -> Page {
    let number = |name: &str| {
        req.query(name)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
    };
    let per_page = number("per_page")
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(MAX_PER_PAGE);
    let page = number("page").unwrap_or(1);
    let last = total.div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(total);
    let range = start..(start + per_page).min(total);
    let link_to = |n: usize| {
        let mut url = url::Url::parse(&format!("{base}{}", req.path)).expect("valid URL");
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in req.query.iter().filter(|(n, _)| n != "page") {
                pairs.append_pair(name, value);
            }
            pairs.append_pair("page", &n.to_string());
        }
        url.to_string()
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    }
    Page {
        range,
        link: (!links.is_empty()).then(|| links.join(", ")),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON as GitHub writes it
// ---------------------------------------------------------------------------------------------

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn truncate_to_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

fn repo_key(full_name: &str) -> String {
    full_name.to_lowercase()
}

/// A stable id for any name (users, repositories, teams).
fn user_id(name: &str) -> u64 {
    let digest = Sha256::digest(name.to_lowercase().as_bytes());
    let mut bytes = [0u8; 8];
    bytes[3..].copy_from_slice(&digest[..5]);
    u64::from_be_bytes(bytes) % 900_000_000 + 100_000
}

/// A 40-hex-digit content hash standing in for git's blob sha.
fn blob_sha(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))[..40].to_owned()
}

fn user_type(login: &str) -> &'static str {
    if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    }
}

fn encode(component: &str) -> String {
    url::form_urlencoded::byte_serialize(component.as_bytes()).collect()
}

/// Adds the fields of `extra` (an object) to `target` (an object).
fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}

fn user_json(base: &str, login: &str) -> Value {
    user_json_as(base, login, user_type(login))
}

fn user_json_as(base: &str, login: &str, kind: &str) -> Value {
    let id = user_id(login);
    let api = format!("{base}/users/{}", encode(login));
    let html = match login.strip_suffix("[bot]") {
        Some(slug) => format!("https://github.com/apps/{slug}"),
        None => format!("https://github.com/{}", encode(login)),
    };
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_fake{id}"),
        "type": kind,
        "site_admin": false,
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": api,
        "html_url": html,
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
    })
}

fn app_permissions() -> Value {
    json!({
        "checks": "write", "contents": "write", "issues": "write", "members": "read",
        "metadata": "read", "pull_requests": "write", "statuses": "write",
    })
}

fn app_json(base: &str, app: &AppInfo) -> Value {
    json!({
        "id": app.id,
        "slug": app.slug,
        "node_id": format!("A_fake{}", app.id),
        "client_id": format!("Iv1.fake{}", app.id),
        "name": app.slug,
        "description": "A GitHub App served by the fake GitHub",
        "owner": user_json_as(base, APP_OWNER, "Organization"),
        "external_url": "https://example.com",
        "html_url": format!("https://github.com/apps/{}", app.slug),
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
        "permissions": app_permissions(),
        "events": ["pull_request", "pull_request_review", "issue_comment", "check_run"],
        "installations_count": 1,
    })
}

fn repo_json(base: &str, repo: &Repo) -> Value {
    let name = &repo.full_name;
    json!({
        "id": repo.id,
        "node_id": format!("R_fake{}", repo.id),
        "name": name.split('/').nth(1).unwrap_or_default(),
        "full_name": name,
        "owner": user_json_as(base, repo.owner(), "Organization"),
        "private": false,
        "fork": false,
        "archived": false,
        "visibility": "public",
        "default_branch": repo.default_branch,
        "url": format!("{base}/repos/{name}"),
        "html_url": format!("https://github.com/{name}"),
        "created_at": timestamp(repo.created_at),
        "updated_at": timestamp(repo.created_at),
    })
}

fn label_json(base: &str, repo: &Repo, label: &str) -> Value {
    let id = user_id(&format!("{} label {label}", repo.full_name));
    json!({
        "id": id,
        "node_id": format!("LA_fake{id}"),
        "url": format!("{base}/repos/{}/labels/{}", repo.full_name, encode(label)),
        "name": label,
        "description": null,
        "color": "ededed",
        "default": false,
    })
}

fn branch_json(base: &str, repo: &Repo, branch: &str, sha: &str) -> Value {
    json!({
        "label": format!("{}:{branch}", repo.owner()),
        "ref": branch,
        "sha": sha,
        "user": user_json_as(base, repo.owner(), "Organization"),
        "repo": repo_json(base, repo),
    })
}

fn pull_json(base: &str, repo: &Repo, pr: &PullRecord) -> Value {
    let name = &repo.full_name;
    let n = pr.number();
    let issue = &pr.issue;
    let html = format!("https://github.com/{name}/pull/{n}");
    let api = format!("{base}/repos/{name}/pulls/{n}");
    json!({
        "id": user_id(&format!("{name}#{n}")),
        "node_id": format!("PR_fake{n}"),
        "number": n,
        "state": issue.state,
        "locked": false,
        "title": issue.title,
        "body": issue.body,
        "user": user_json(base, &issue.author),
        "labels": issue.labels.iter().map(|l| label_json(base, repo, l)).collect::<Vec<_>>(),
        "assignee": issue.assignees.first().map(|a| user_json(base, a)),
        "assignees": issue.assignees.iter().map(|a| user_json(base, a)).collect::<Vec<_>>(),
        "draft": pr.draft,
        "merged": pr.merged,
        "created_at": timestamp(issue.created_at),
        "updated_at": timestamp(issue.updated_at),
        "closed_at": issue.closed_at.map(timestamp),
        "merged_at": pr.merged_at.map(timestamp),
        "merge_commit_sha": pr.merge_commit_sha,
        "head": branch_json(base, repo, &pr.head_ref, pr.head()),
        "base": branch_json(base, repo, &pr.base_ref, &pr.base_sha),
        "author_association": "CONTRIBUTOR",
        "url": api,
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": format!("{base}/repos/{name}/issues/{n}"),
        "commits_url": format!("{api}/commits"),
        "review_comments_url": format!("{api}/comments"),
        "comments_url": format!("{base}/repos/{name}/issues/{n}/comments"),
        "statuses_url": format!("{base}/repos/{name}/statuses/{}", pr.head()),
    })
}

/// A pull request as `GET /pulls/{n}` (and its creation) answers: the list form plus its
/// counts, mergeability and who merged it.
fn full_pull_json(base: &str, repo: &Repo, pr: &PullRecord) -> Value {
    let mut body = pull_json(base, repo, pr);
    let files = repo.diff(&pr.base_sha, pr.head());
    let stats = json!({
        "changed_files": files.len(),
        "additions": files.iter().map(|f| f.additions).sum::<usize>(),
        "deletions": files.iter().map(|f| f.deletions).sum::<usize>(),
        "commits": pr.commits.len(),
        "comments": repo.comments.iter().filter(|c| c.number == pr.number()).count(),
        "review_comments": 0,
        "mergeable": null,
        "mergeable_state": "unknown",
        "rebaseable": null,
        "maintainer_can_modify": pr.maintainer_can_modify,
        "merged_by": pr.merged_by.as_ref().map(|login| user_json(base, login)),
    });
    merge(&mut body, stats);
    body
}

/// An issue, or a pull request's issue side (with its `pull_request` links).
fn issue_json(base: &str, repo: &Repo, issue: &IssueRecord, is_pull: bool) -> Value {
    let name = &repo.full_name;
    let n = issue.number;
    let api = format!("{base}/repos/{name}/issues/{n}");
    let kind = if is_pull { "pull" } else { "issues" };
    let mut body = json!({
        "id": user_id(&format!("{name}#issue{n}")),
        "node_id": format!("I_fake{n}"),
        "number": n,
        "title": issue.title,
        "body": (!issue.body.is_empty()).then_some(&issue.body),
        "state": issue.state,
        "state_reason": issue.state_reason,
        "locked": false,
        "active_lock_reason": null,
        "user": user_json(base, &issue.author),
        "labels": issue.labels.iter().map(|l| label_json(base, repo, l)).collect::<Vec<_>>(),
        "assignee": issue.assignees.first().map(|a| user_json(base, a)),
        "assignees": issue.assignees.iter().map(|a| user_json(base, a)).collect::<Vec<_>>(),
        "milestone": null,
        "comments": repo.comments.iter().filter(|c| c.number == n).count(),
        "url": api,
        "repository_url": format!("{base}/repos/{name}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "comments_url": format!("{api}/comments"),
        "events_url": format!("{api}/events"),
        "html_url": format!("https://github.com/{name}/{kind}/{n}"),
        "created_at": timestamp(issue.created_at),
        "updated_at": timestamp(issue.updated_at),
        "closed_at": issue.closed_at.map(timestamp),
        "closed_by": issue.closed_by.as_ref().map(|login| user_json(base, login)),
        "author_association": "CONTRIBUTOR",
    });
    if is_pull {
        let links = json!({ "pull_request": {
            "url": format!("{base}/repos/{name}/pulls/{n}"),
            "html_url": format!("https://github.com/{name}/pull/{n}"),
            "diff_url": format!("https://github.com/{name}/pull/{n}.diff"),
            "patch_url": format!("https://github.com/{name}/pull/{n}.patch"),
        }});
        merge(&mut body, links);
    }
    body
}

/// The short pull request objects nested in check runs.
fn minimal_pull_json(base: &str, repo: &Repo, pr: &PullRecord) -> Value {
    let short_repo = json!({
        "id": repo.id,
        "url": format!("{base}/repos/{}", repo.full_name),
        "name": repo.full_name.split('/').nth(1).unwrap_or_default(),
    });
    json!({
        "id": user_id(&format!("{}#{}", repo.full_name, pr.number())),
        "number": pr.number(),
        "url": format!("{base}/repos/{}/pulls/{}", repo.full_name, pr.number()),
        "head": { "ref": pr.head_ref, "sha": pr.head(), "repo": short_repo },
        "base": { "ref": pr.base_ref, "sha": pr.base_sha, "repo": short_repo },
    })
}

fn diff_entry_json(base: &str, repo: &Repo, entry: &DiffEntry, head: &str) -> Value {
    let name = &repo.full_name;
    let path = &entry.filename;
    json!({
        "sha": entry.sha,
        "filename": path,
        "status": entry.status,
        "previous_filename": entry.previous_filename,
        "additions": entry.additions,
        "deletions": entry.deletions,
        "changes": entry.additions + entry.deletions,
        "blob_url": format!("https://github.com/{name}/blob/{head}/{path}"),
        "raw_url": format!("https://github.com/{name}/raw/{head}/{path}"),
        "contents_url": format!("{base}/repos/{name}/contents/{path}?ref={head}"),
    })
}

/// Who made a commit, when, on what, and why (a seeded base: the owner, when the repository
/// was created, no parents).
struct CommitMeta<'r> {
    author: &'r str,
    committer: &'r str,
    date: DateTime<Utc>,
    parents: &'r [String],
    message: String,
    tree_sha: String,
}

impl<'r> CommitMeta<'r> {
    fn of(repo: &'r Repo, sha: &str) -> CommitMeta<'r> {
        let tree_sha = tree_sha_of(&repo.tree_at(sha).unwrap_or_default());
        match repo.commits.get(sha) {
            Some(c) => CommitMeta {
                author: &c.spec.author,
                committer: &c.spec.committer,
                date: c.date,
                parents: &c.parents,
                message: c.message.clone(),
                tree_sha,
            },
            None => CommitMeta {
                author: repo.owner(),
                committer: repo.owner(),
                date: repo.created_at,
                parents: &[],
                message: format!("Commit {sha}"),
                tree_sha,
            },
        }
    }

    fn signature(&self, login: &str) -> Value {
        let email = format!("{login}@users.noreply.github.com");
        json!({ "name": login, "email": email, "date": timestamp(self.date) })
    }

    /// The parents, each linked under `api` (`commits` or `git/commits`).
    fn parents_json(&self, base: &str, repo: &Repo, api: &str) -> Vec<Value> {
        let name = &repo.full_name;
        self.parents
            .iter()
            .map(|p| {
                json!({
                    "sha": p,
                    "url": format!("{base}/repos/{name}/{api}/{p}"),
                    "html_url": format!("https://github.com/{name}/commit/{p}"),
                })
            })
            .collect()
    }
}

fn unsigned() -> Value {
    json!({
        "verified": false, "reason": "unsigned",
        "signature": null, "payload": null, "verified_at": null,
    })
}

/// A commit as the commits, pulls and compare APIs list it.
fn commit_json(base: &str, repo: &Repo, sha: &str) -> Value {
    let name = &repo.full_name;
    let meta = CommitMeta::of(repo, sha);
    let api = format!("{base}/repos/{name}/commits/{sha}");
    let tree = &meta.tree_sha;
    json!({
        "sha": sha,
        "node_id": format!("C_fake{sha}"),
        "url": api,
        "html_url": format!("https://github.com/{name}/commit/{sha}"),
        "comments_url": format!("{api}/comments"),
        "commit": {
            "url": format!("{base}/repos/{name}/git/commits/{sha}"),
            "author": meta.signature(meta.author),
            "committer": meta.signature(meta.committer),
            "message": meta.message,
            "tree": { "sha": tree, "url": format!("{base}/repos/{name}/git/trees/{tree}") },
            "comment_count": 0,
            "verification": unsigned(),
        },
        "author": user_json(base, meta.author),
        "committer": user_json(base, meta.committer),
        "parents": meta.parents_json(base, repo, "commits"),
    })
}

/// A commit as the git data API answers it.
fn git_commit_json(base: &str, repo: &Repo, sha: &str) -> Value {
    let name = &repo.full_name;
    let meta = CommitMeta::of(repo, sha);
    let tree = &meta.tree_sha;
    json!({
        "sha": sha,
        "node_id": format!("C_fake{sha}"),
        "url": format!("{base}/repos/{name}/git/commits/{sha}"),
        "html_url": format!("https://github.com/{name}/commit/{sha}"),
        "author": meta.signature(meta.author),
        "committer": meta.signature(meta.committer),
        "message": meta.message,
        "tree": { "sha": tree, "url": format!("{base}/repos/{name}/git/trees/{tree}") },
        "parents": meta.parents_json(base, repo, "git/commits"),
        "verification": unsigned(),
    })
}

/// A branch as the git refs API answers it.
fn ref_json(base: &str, repo: &Repo, branch: &str, sha: &str) -> Value {
    let name = &repo.full_name;
    let full = format!("refs/heads/{branch}");
    json!({
        "ref": full,
        "node_id": format!("REF_fake{}", user_id(&format!("{name} {full}"))),
        "url": format!("{base}/repos/{name}/git/{full}"),
        "object": {
            "sha": sha,
            "type": "commit",
            "url": format!("{base}/repos/{name}/git/commits/{sha}"),
        },
    })
}

fn review_json(base: &str, repo: &Repo, number: u64, review: &ReviewRecord) -> Value {
    let name = &repo.full_name;
    let html = format!(
        "https://github.com/{name}/pull/{number}#pullrequestreview-{}",
        review.id
    );
    let pull = format!("{base}/repos/{name}/pulls/{number}");
    json!({
        "id": review.id,
        "node_id": format!("PRR_fake{}", review.id),
        "user": user_json(base, &review.user),
        "body": "",
        "state": review.state,
        "html_url": html,
        "pull_request_url": pull,
        "author_association": "COLLABORATOR",
        "_links": { "html": { "href": html }, "pull_request": { "href": pull } },
        "submitted_at": review.submitted_at.map(timestamp),
        "commit_id": review.commit_id,
    })
}

fn contents_json(base: &str, repo: &Repo, path: &str, text: &str, sha: &str) -> Value {
    let (content, encoding) = if text.len() > CONTENTS_INLINE_MAX_BYTES {
        (String::new(), "none")
    } else {
        (wrapped_base64(text.as_bytes()), "base64")
    };
    let mut entry = folder_entry_json(base, repo, path, Some(&text.to_owned()), sha);
    merge(
        &mut entry,
        json!({ "content": content, "encoding": encoding }),
    );
    entry
}

/// A file or folder entry of the contents API (a file's entry lacks its content).
fn folder_entry_json(
    base: &str,
    repo: &Repo,
    path: &str,
    text: Option<&String>,
    sha: &str,
) -> Value {
    let name = &repo.full_name;
    let kind = if text.is_some() { "file" } else { "dir" };
    let object_sha = text.map_or_else(|| blob_sha(&format!("tree {sha} {path}")), |t| blob_sha(t));
    let url = format!("{base}/repos/{name}/contents/{path}?ref={sha}");
    let git_url = match kind {
        "file" => format!("{base}/repos/{name}/git/blobs/{object_sha}"),
        _ => format!("{base}/repos/{name}/git/trees/{object_sha}"),
    };
    let html_url = format!(
        "https://github.com/{name}/{}/{sha}/{path}",
        if kind == "file" { "blob" } else { "tree" }
    );
    json!({
        "type": kind,
        "name": path.rsplit('/').next().unwrap_or(path),
        "path": path,
        "sha": object_sha,
        "size": text.map_or(0, String::len),
        "url": url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": text.map(|_| format!("https://raw.githubusercontent.com/{name}/{sha}/{path}")),
        "_links": { "self": url, "git": git_url, "html": html_url },
    })
}

/// Base64 in lines of 60 characters, each ending in a newline, as the contents API sends it.
fn wrapped_base64(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / BASE64_LINE + 1);
    for chunk in encoded.as_bytes().chunks(BASE64_LINE) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

fn status_json(base: &str, status: &StatusView) -> Value {
    json!({
        "id": status.id,
        "node_id": format!("SC_fake{}", status.id),
        "url": format!("{base}/repos/statuses/{}", status.sha),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", user_id(&status.creator)),
        "state": status.state,
        "description": status.description,
        "target_url": status.target_url,
        "context": status.context,
        "created_at": timestamp(status.created_at),
        "updated_at": timestamp(status.created_at),
        "creator": user_json(base, &status.creator),
    })
}

/// The GitHub Actions App, through which `github-actions[bot]` creates deployments.
fn actions_app_json(base: &str) -> Value {
    json!({
        "id": ACTIONS_APP_ID,
        "slug": "github-actions",
        "node_id": "MDM6QXBwMTUzNjg=",
        "owner": user_json_as(base, "github", "Organization"),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": "https://github.com/apps/github-actions",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2019-12-10T19:04:12Z",
        "permissions": {
            "actions": "write", "checks": "write", "contents": "write", "deployments": "write",
            "issues": "write", "metadata": "read", "pull_requests": "write", "statuses": "write",
        },
        "events": ["check_run", "check_suite", "deployment", "deployment_status", "push"],
    })
}

fn deployment_json(base: &str, repo: &Repo, deployment: &DeploymentRecord) -> Value {
    let name = &repo.full_name;
    let api = format!("{base}/repos/{name}/deployments/{}", deployment.id);
    json!({
        "url": api,
        "id": deployment.id,
        "node_id": format!("DE_fake{}", deployment.id),
        "sha": deployment.sha,
        "ref": deployment.reference,
        "task": deployment.task,
        "payload": {},
        "original_environment": deployment.environment,
        "environment": deployment.environment,
        "description": null,
        "creator": user_json(base, ACTIONS_BOT),
        "created_at": timestamp(deployment.created_at),
        "updated_at": timestamp(deployment.updated_at),
        "statuses_url": format!("{api}/statuses"),
        "repository_url": format!("{base}/repos/{name}"),
        "transient_environment": false,
        "production_environment": deployment.environment.eq_ignore_ascii_case("production"),
        "performed_via_github_app": actions_app_json(base),
    })
}

/// A deployment status as GitHub Actions posts it: no description and no links (the fake
/// knows no workflow run to point at).
fn deployment_status_json(
    base: &str,
    repo: &Repo,
    deployment: &DeploymentRecord,
    status: &DeploymentStatusRecord,
) -> Value {
    let name = &repo.full_name;
    let deployment_url = format!("{base}/repos/{name}/deployments/{}", deployment.id);
    json!({
        "url": format!("{deployment_url}/statuses/{}", status.id),
        "id": status.id,
        "node_id": format!("DES_fake{}", status.id),
        "state": status.state,
        "creator": user_json(base, ACTIONS_BOT),
        "description": "",
        "environment": deployment.environment,
        "target_url": "",
        "created_at": timestamp(status.created_at),
        "updated_at": timestamp(status.created_at),
        "deployment_url": deployment_url,
        "repository_url": format!("{base}/repos/{name}"),
        "environment_url": "",
        "log_url": "",
        "performed_via_github_app": actions_app_json(base),
    })
}

fn unsigned_jwt(app_id: u64, now: i64) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = json!({ "iss": app_id, "iat": now - 60, "exp": now + 540 });
    let payload = engine.encode(claims.to_string());
    format!("{header}.{payload}.{}", engine.encode(b"unsigned"))
}

// ---------------------------------------------------------------------------------------------
// Path templates
// ---------------------------------------------------------------------------------------------

/// A path template such as `/repos/{owner}/{repo}/contents/{path}`.
struct Template {
    /// The template as the OpenAPI description writes it.
    text: String,
    segments: Vec<Segment>,
}

enum Segment {
    Literal(String),
    /// `multi`: matches one or more segments (a path, a ref with slashes, `base...head`);
    /// `integer`: matches digits only.
    Param {
        name: String,
        multi: bool,
        integer: bool,
    },
}

impl Template {
    /// Parses `text`; `kind(name)` says whether a parameter is multi-segment and an integer.
    /// A name ending in `*` is cut to its stem.
    fn parse(text: &str, kind: impl Fn(&str) -> (bool, bool)) -> Template {
        let segments: Vec<Segment> = text
            .trim_start_matches('/')
            .split('/')
            .map(
                |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        let (multi, integer) = kind(name);
                        let name = name.trim_end_matches('*').to_owned();
                        Segment::Param {
                            name,
                            multi,
                            integer,
                        }
                    }
                    None => Segment::Literal(segment.to_owned()),
                },
            )
            .collect();
        Template {
            text: text.replace('*', ""),
            segments,
        }
    }

    fn matches(&self, parts: &[&str]) -> Option<BTreeMap<String, String>> {
        let mut params = BTreeMap::new();
        match_segments(&self.segments, parts, &mut params).then_some(params)
    }

    /// Literal segments outrank parameters, single-segment parameters outrank multi-segment
    /// ones, position by position.
    fn specificity(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 2,
                Segment::Param { multi: false, .. } => 1,
                Segment::Param { multi: true, .. } => 0,
            })
            .collect()
    }
}

fn match_segments(
    segments: &[Segment],
    parts: &[&str],
    params: &mut BTreeMap<String, String>,
) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return parts.is_empty();
    };
    match first {
        Segment::Literal(literal) => {
            parts.first() == Some(&literal.as_str()) && match_segments(rest, &parts[1..], params)
        }
        Segment::Param {
            name,
            multi: false,
            integer,
        } => {
            let Some(value) = parts
                .first()
                .filter(|p| !p.is_empty())
                .map(|p| percent_decode(p))
            else {
                return false;
            };
            if *integer && value.parse::<u64>().is_err() {
                return false;
            }
            params.insert(name.clone(), value);
            match_segments(rest, &parts[1..], params)
        }
        Segment::Param {
            name, multi: true, ..
        } => (1..=parts.len()).rev().any(|taken| {
            let value = parts[..taken]
                .iter()
                .map(|p| percent_decode(p))
                .collect::<Vec<_>>()
                .join("/");
            params.insert(name.clone(), value);
            !parts[0].is_empty() && match_segments(rest, &parts[taken..], params)
        }),
    }
}

/// The most specific template (of `method`) matching `parts`: its index and parameters.
fn best_match<'t>(
    templates: impl Iterator<Item = (&'t str, &'t Template)>,
    method: &str,
    parts: &[&str],
) -> Option<(usize, BTreeMap<String, String>)> {
    templates
        .enumerate()
        .filter(|(_, (m, _))| m.eq_ignore_ascii_case(method))
        .filter_map(|(i, (_, t))| t.matches(parts).map(|params| (i, t.specificity(), params)))
        .max_by(|a, b| a.1.cmp(&b.1))
        .map(|(i, _, params)| (i, params))
}

fn split_path(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// OpenAPI validation
// ---------------------------------------------------------------------------------------------

/// Why a request that matches no operation is reported.
const NO_OPERATION: &str =
    "no operation of the OpenAPI subset (nor a KNOWN_ADDITION) matches this method and path";

/// The operations of `github-openapi-subset.json`, for checking requests.
struct Spec {
    doc: Value,
    operations: Vec<Operation>,
    additions: Vec<(&'static str, Template)>,
}

struct Operation {
    method: String,
    template: Template,
    /// (required, schema) of the JSON request body.
    body: Option<(bool, Value)>,
    /// (name, schema) of each query parameter.
    query: Vec<(String, Value)>,
    /// (status, schema of the JSON body, if it has one) of each documented response.
    responses: Vec<(u16, Option<Value>)>,
}

/// What the OpenAPI subset says about one request.
struct SpecCheck {
    /// An operation or a known addition matched.
    known: bool,
    /// Why the request breaks the description (empty when it does not).
    problems: Vec<String>,
}

/// The external fixtures folder, resolved as `common::external_fixtures()` does (repeated
/// here so that this file also compiles when included alone with `#[path]`).
fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TOLLGATE_EXTERNAL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/external")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "external fixtures folder {} is missing; CI must set TOLLGATE_EXTERNAL_FIXTURES",
            dir.display()
        );
    }
    eprintln!(
        "fake GitHub: external fixtures folder {} not found; requests are not checked against the OpenAPI description",
        dir.display()
    );
    None
}

/// The OpenAPI subset, parsed once per test binary.
fn load_spec() -> Option<Arc<Spec>> {
    static SPEC: OnceLock<Option<Arc<Spec>>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = fixtures_dir()?.join("github-openapi-subset.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        Some(Arc::new(Spec::new(doc)))
    })
    .clone()
}

impl Spec {
    fn new(doc: Value) -> Spec {
        let mut operations = Vec::new();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        for (path, item) in &paths {
            for method in ["get", "post", "patch", "put", "delete"] {
                if let Some(op) = item.get(method) {
                    operations.push(Self::operation(&doc, method, path, item, op));
                }
            }
        }
        let additions = KNOWN_ADDITIONS
            .iter()
            .map(|(method, text)| (*method, Template::parse(text, |_| (false, false))))
            .collect();
        Spec {
            doc,
            operations,
            additions,
        }
    }

    fn operation(doc: &Value, method: &str, path: &str, item: &Value, op: &Value) -> Operation {
        let params: Vec<&Value> = [item.get("parameters"), op.get("parameters")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| resolve(doc, p))
            .collect();
        let path_param = |name: &str| {
            params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == name)
                .copied()
        };
        let template = Template::parse(path, |name| {
            let param = path_param(name);
            let multi = param.is_some_and(|p| p["x-multi-segment"] == true);
            let integer = param.is_some_and(|p| resolve(doc, &p["schema"])["type"] == "integer");
            (multi, integer)
        });
        let query = params
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_owned(),
                    p["schema"].clone(),
                )
            })
            .collect();
        let body = op.get("requestBody").map(|b| resolve(doc, b)).map(|b| {
            let schema = b["content"]["application/json"]["schema"].clone();
            (b["required"] == true, schema)
        });
        let responses = op["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(code, response)| {
                let status = code.parse::<u16>().ok()?;
                let schema = &resolve(doc, response)["content"]["application/json"]["schema"];
                Some((status, (!schema.is_null()).then(|| schema.clone())))
            })
            .collect();
        Operation {
            method: method.to_ascii_uppercase(),
            template,
            body,
            query,
            responses,
        }
    }

    /// Why `body`, answered with `status` to `method path`, breaks the operation's response.
    fn check_response(&self, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
        let path = path.split('?').next().unwrap_or(path);
        let parts = split_path(path);
        let operations = self
            .operations
            .iter()
            .map(|o| (o.method.as_str(), &o.template));
        let Some((index, _)) = best_match(operations, method, &parts) else {
            return vec![NO_OPERATION.to_owned()];
        };
        let mut problems = Vec::new();
        match self.operations[index]
            .responses
            .iter()
            .find(|(s, _)| *s == status)
        {
            None => problems.push(format!("the description lists no {status} response")),
            Some((_, None)) if body.is_null() => {}
            Some((_, None)) => problems.push(format!(
                "the {status} response has no body, found {}",
                describe(body)
            )),
            Some((_, Some(schema))) => self.validate(schema, body, "response", &mut problems),
        }
        problems
    }

    /// Whether the subset (or the known additions) has an operation for this template.
    fn describes(&self, method: &str, template: &str) -> bool {
        self.operations
            .iter()
            .map(|o| (o.method.as_str(), &o.template))
            .chain(self.additions.iter().map(|(m, t)| (*m, t)))
            .any(|(m, t)| m == method && t.text == template)
    }

    fn check(&self, req: &Incoming) -> SpecCheck {
        let parts = split_path(&req.path);
        let operations = self
            .operations
            .iter()
            .map(|o| (o.method.as_str(), &o.template));
        let Some((index, _)) = best_match(operations, &req.method, &parts) else {
            let addition = self.additions.iter().map(|(m, t)| (*m, t));
            let known = best_match(addition, &req.method, &parts).is_some();
            let problems = match known {
                true => Vec::new(),
                false => vec![NO_OPERATION.to_owned()],
            };
            return SpecCheck { known, problems };
        };
        let op = &self.operations[index];
        let mut problems = Vec::new();
        for (name, value) in &req.query {
            if let Some((_, schema)) = op.query.iter().find(|(n, _)| n == name) {
                self.check_query(schema, name, value, &mut problems);
            }
        }
        match (&op.body, &req.body) {
            _ if !req.body_is_json => problems.push("the request body is not JSON".to_owned()),
            (Some((true, _)), None) => problems.push("a JSON request body is required".to_owned()),
            (Some((_, schema)), Some(body)) => self.validate(schema, body, "body", &mut problems),
            _ => {}
        }
        problems.extend(github_rules(
            &op.method,
            &op.template.text,
            req.body.as_ref(),
        ));
        SpecCheck {
            known: true,
            problems,
        }
    }

    fn check_query(&self, schema: &Value, name: &str, value: &str, problems: &mut Vec<String>) {
        let schema = resolve(&self.doc, schema);
        let typed = match schema["type"].as_str() {
            Some("integer") => value.parse::<i64>().map(Value::from).ok(),
            Some("number") => value.parse::<f64>().ok().map(Value::from),
            Some("boolean") => value.parse::<bool>().map(Value::from).ok(),
            _ => Some(Value::from(value)),
        };
        match typed {
            Some(typed) => self.validate(
                schema,
                &typed,
                &format!("query parameter `{name}`"),
                problems,
            ),
            None => problems.push(format!(
                "query parameter `{name}`: `{value}` is not of type {}",
                schema["type"].as_str().unwrap_or("value")
            )),
        }
    }

    /// Checks `value` against `schema`: `$ref`s, `type`, `nullable`, `enum`, string length and
    /// `date-time` format, array and object structure, `allOf`/`anyOf`/`oneOf`.
    fn validate(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        let schema = resolve(&self.doc, schema);
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        if let Some(kind) = schema["type"].as_str()
            && !type_matches(kind, value)
        {
            problems.push(format!("{at}: expected {kind}, found {}", describe(value)));
            return;
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            problems.push(format!(
                "{at}: {value} is not one of {}",
                allowed.join(", ")
            ));
        }
        if let Some(text) = value.as_str() {
            check_string(schema, text, at, problems);
        }
        if let Some(items) = value.as_array() {
            self.check_array(schema, items, at, problems);
        }
        if let Some(object) = value.as_object() {
            self.check_object(schema, object, at, problems);
        }
        self.check_combinators(schema, value, at, problems);
    }

    fn check_array(&self, schema: &Value, items: &[Value], at: &str, problems: &mut Vec<String>) {
        if let Some(max) = schema["maxItems"].as_u64()
            && items.len() as u64 > max
        {
            problems.push(format!(
                "{at}: {} items, at most {max} allowed",
                items.len()
            ));
        }
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            problems.push(format!(
                "{at}: {} items, at least {min} required",
                items.len()
            ));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.validate(item_schema, item, &format!("{at}[{i}]"), problems);
            }
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        object: &serde_json::Map<String, Value>,
        at: &str,
        problems: &mut Vec<String>,
    ) {
        for name in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                problems.push(format!("{at}: required property `{name}` is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, value) in object {
            let field = format!("{at}.{name}");
            match (
                properties.and_then(|p| p.get(name)),
                &schema["additionalProperties"],
            ) {
                (Some(property), _) => self.validate(property, value, &field, problems),
                (None, Value::Bool(false)) => {
                    problems.push(format!("{at}: unknown property `{name}`"))
                }
                (None, extra @ Value::Object(_)) => self.validate(extra, value, &field, problems),
                (None, _) => {}
            }
        }
    }

    fn check_combinators(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        problems: &mut Vec<String>,
    ) {
        for branch in schema["allOf"].as_array().into_iter().flatten() {
            self.validate(branch, value, at, problems);
        }
        for keyword in ["anyOf", "oneOf"] {
            let Some(branches) = schema[keyword].as_array() else {
                continue;
            };
            let outcomes: Vec<Vec<String>> = branches
                .iter()
                .map(|branch| {
                    let mut found = Vec::new();
                    self.validate(branch, value, at, &mut found);
                    found
                })
                .collect();
            let passing = outcomes.iter().filter(|o| o.is_empty()).count();
            if passing == 0 {
                let reasons: Vec<String> = outcomes.iter().map(|o| o.join(", ")).collect();
                problems.push(format!(
                    "{at}: matches none of the {keyword} alternatives ({})",
                    reasons.join(" | ")
                ));
            } else if keyword == "oneOf" && passing > 1 {
                problems.push(format!(
                    "{at}: matches {passing} oneOf alternatives, not exactly one"
                ));
            }
        }
    }
}

/// GitHub rules the subset does not carry: Octokit replaced the check-run creation schema by
/// one without GitHub's `oneOf` that makes a completed run name its conclusion.
fn github_rules(method: &str, template: &str, body: Option<&Value>) -> Vec<String> {
    let mut problems = Vec::new();
    if method == "POST"
        && template == "/repos/{owner}/{repo}/check-runs"
        && let Some(body) = body
    {
        let completed = body["status"] == "completed" || body.get("completed_at").is_some();
        if completed && body.get("conclusion").is_none() {
            problems.push(
                "body: `conclusion` is required when `status` is `completed` or `completed_at` \
                 is given (GitHub's rule, missing from Octokit's schema)"
                    .to_owned(),
            );
        }
    }
    problems
}

fn check_string(schema: &Value, text: &str, at: &str, problems: &mut Vec<String>) {
    let length = text.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && length > max
    {
        problems.push(format!("{at}: {length} characters, at most {max} allowed"));
    }
    if let Some(min) = schema["minLength"].as_u64()
        && length < min
    {
        problems.push(format!(
            "{at}: {length} characters, at least {min} required"
        ));
    }
    if schema["format"] == "date-time" && DateTime::parse_from_rfc3339(text).is_err() {
        problems.push(format!("{at}: `{text}` is not an ISO 8601 date-time"));
    }
}

/// Follows `$ref`s (`#/components/...`) to the schema they name.
fn resolve<'v>(doc: &'v Value, mut schema: &'v Value) -> &'v Value {
    for _ in 0..32 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        schema = reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or_else(|| panic!("unresolvable $ref {reference} in the OpenAPI subset"));
    }
    panic!("$ref chain too long in the OpenAPI subset")
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
