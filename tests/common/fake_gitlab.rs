//! A stateful, in-process fake of GitLab's REST API v4 for integration tests, on wiremock,
//! built like `fake_github.rs`: one catch-all [`Mock`] routes every request by method and path
//! against shared state, records it and answers as GitLab does (field names, status codes,
//! error bodies, offset pagination headers, `PRIVATE-TOKEN`/`Bearer` authentication).
//!
//! Include it as `common::fake_gitlab` (with `mod common;`), or on its own with
//! `#[path = "common/fake_gitlab.rs"] mod fake_gitlab;` (it depends on no other test module).
//!
//! [`FakeGitLab::url`] is the instance root (`http://127.0.0.1:PORT`); the API lives under
//! `/api/v4`, as on a real instance. Projects and groups are named by their full path
//! (`ml/vision/detector`) in the setup methods; requests may use the numeric id or the
//! URL-encoded path (`ml%2Fvision%2Fdetector`).
//!
//! Time: pushes (MR diff versions), notes, approvals and statuses are stamped by a logical
//! clock that starts one hour before the real time and ticks one second per stamped event
//! ([`FakeGitLab::now`], [`FakeGitLab::advance`]). Commit dates are whatever the test says
//! (anyone can fake git dates) and default to the clock at the push.
//!
//! What follows GitLab's own code (lib/api/*.rb) rather than guesswork:
//! - errors: `{"message":"401 Unauthorized"}`, `{"message":"403 Forbidden"}`,
//!   `{"message":"404 Project Not Found"}`, `{"message":"404 Not found"}` (a missing record),
//!   `{"error":"404 Not Found"}` (no such route), `{"error":"<param> is missing"}` (Grape);
//! - pagination: `x-page`, `x-per-page`, `x-next-page`, `x-prev-page` (empty when none),
//!   `x-total`, `x-total-pages` and a `Link` with `prev`, `next`, `first`, `last`; 20 items
//!   per page unless `per_page` (at most 100) says otherwise;
//! - visibility: projects are `internal` unless [`FakeGitLab::set_visibility`] says otherwise,
//!   so any authenticated user reads them, an anonymous request gets `404 Project Not Found`
//!   (as GitLab answers for what it will not show) and `GET /user`, notes, members and
//!   statuses answer `401` without a token;
//! - statuses: a POST moves the caller's pending or running status of that name and ref, or
//!   starts a new one; `pending` over pending/running and `running` over running are refused
//!   with GitLab's state-machine error;
//! - notes: the author or a maintainer (or above) may edit a note, nobody a system note;
//! - approvals: developers (and the MR author) may approve; approving twice answers 401,
//!   unapproving without an approval 404; a `sha` other than the head answers 409;
//! - issues: iids count per project apart from merge requests'; anyone who sees the project
//!   opens one and comments, its author or a reporter (and above) edits it; labels are sorted;
//!   unknown assignee ids are dropped; a blank title is a model error
//!   (`{"message":{"title":["can't be blank"]}}`);
//! - writes to the repository (branches, reverts, merge requests) need a developer; the
//!   default branch is protected (maintainers only); a revert is git's: a three-way merge of
//!   whole files (a path both sides changed differently is a conflict), a merge commit reverted
//!   against its first parent, `error_code` `empty` when nothing would change, `conflict` on a
//!   conflict;
//! - merges make a merge commit (parents: the target's tip, then the head), never a fast
//!   forward: history is a graph, trees follow first parents.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Access levels, as GitLab numbers them.
pub const NO_ACCESS: u32 = 0;
/// Guest.
pub const GUEST: u32 = 10;
/// Reporter: reads code and merge requests of private projects.
pub const REPORTER: u32 = 20;
/// Developer: approves merge requests and posts commit statuses.
pub const DEVELOPER: u32 = 30;
/// Maintainer: also edits other people's notes.
pub const MAINTAINER: u32 = 40;
/// Owner.
pub const OWNER: u32 = 50;

/// Items per page when the request does not say.
pub const DEFAULT_PER_PAGE: usize = 20;
/// GitLab's largest page.
pub const MAX_PER_PAGE: usize = 100;
/// Longest note GitLab accepts, in characters.
pub const NOTE_MAX_CHARS: usize = 1_000_000;
/// Longest issue or merge request title GitLab accepts, in characters.
pub const TITLE_MAX_CHARS: usize = 255;

/// Where the API lives on the instance.
const API_PREFIX: &str = "/api/v4";
/// The default branch of every project.
const DEFAULT_BRANCH: &str = "main";
/// Context lines around each hunk of a diff, as git writes them.
const CONTEXT_LINES: usize = 3;
/// Above this many cells the line diff stops looking for common lines (a whole rewrite).
const LCS_MAX_CELLS: usize = 4_000_000;

// ---------------------------------------------------------------------------------------------
// What tests build and see
// ---------------------------------------------------------------------------------------------

/// Who may see a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Members only (reporters and above read code and merge requests).
    Private,
    /// Any authenticated user (the fake's default).
    Internal,
    /// Anyone, even without a token (reads only).
    Public,
}

impl Visibility {
    fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        }
    }
}

/// Project settings that change who may approve and what a push does to approvals.
/// `Default` is GitLab Free: the author may approve, pushes keep approvals. (GitLab Premium
/// defaults to preventing approval by the author and usually resets approvals on push.)
#[derive(Debug, Clone, Copy)]
pub struct ApprovalSettings {
    /// Whether the merge request's author may approve it.
    pub author_can_approve: bool,
    /// Whether a push to the source branch removes every approval.
    pub reset_approvals_on_push: bool,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            author_can_approve: true,
            reset_approvals_on_push: false,
        }
    }
}

/// A merge request to open with [`FakeGitLab::open_mr`]. `Default` gives !1 by `alice` from
/// `feature` into `main` at `base0000`, with no commits (add at least one).
#[derive(Debug, Clone)]
pub struct MrSpec {
    /// The merge request's iid (`!iid`).
    pub iid: u64,
    /// The author's username.
    pub author: String,
    /// The title (a `Draft:` prefix is added when `draft` is set).
    pub title: String,
    /// The description.
    pub description: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Whether it is a draft.
    pub draft: bool,
    /// The source branch.
    pub source_branch: String,
    /// The target branch (created at `base_sha` if it does not exist).
    pub target_branch: String,
    /// The commit the source branch starts from; its tree is what [`FakeGitLab::set_file`]
    /// seeded for it.
    pub base_sha: String,
    /// The commits of the first push, oldest first; the last one is the head.
    pub commits: Vec<CommitSpec>,
}

impl Default for MrSpec {
    fn default() -> Self {
        MrSpec {
            iid: 1,
            author: "alice".to_owned(),
            title: "A change".to_owned(),
            description: String::new(),
            labels: Vec::new(),
            draft: false,
            source_branch: "feature".to_owned(),
            target_branch: DEFAULT_BRANCH.to_owned(),
            base_sha: "base0000".to_owned(),
            commits: Vec::new(),
        }
    }
}

/// One commit. Git dates are the author's to choose: unset dates take the fake's clock at the
/// push, set ones are kept as they are (they may lie in the past).
#[derive(Debug, Clone, Default)]
pub struct CommitSpec {
    /// Its sha (any unique string).
    pub sha: String,
    /// The first line of the message (`Commit <sha>` when empty).
    pub title: String,
    /// The rest of the message, after a blank line.
    pub body: String,
    /// Author name.
    pub author_name: String,
    /// Author email.
    pub author_email: String,
    /// Committer name.
    pub committer_name: String,
    /// Committer email.
    pub committer_email: String,
    /// Author date (`None`: the push time).
    pub authored_date: Option<DateTime<Utc>>,
    /// Commit date (`None`: the push time).
    pub committed_date: Option<DateTime<Utc>>,
    /// What it changes, relative to its parent.
    pub files: Vec<FileChange>,
}

impl CommitSpec {
    /// A commit authored and committed by `author` (`<author>@example.com`).
    pub fn new(sha: &str, author: &str, files: Vec<FileChange>) -> Self {
        CommitSpec {
            sha: sha.to_owned(),
            author_name: author.to_owned(),
            author_email: format!("{author}@example.com"),
            committer_name: author.to_owned(),
            committer_email: format!("{author}@example.com"),
            files,
            ..CommitSpec::default()
        }
    }

    /// Sets the title.
    pub fn titled(mut self, title: &str) -> Self {
        title.clone_into(&mut self.title);
        self
    }

    /// Sets the author.
    pub fn author(mut self, name: &str, email: &str) -> Self {
        name.clone_into(&mut self.author_name);
        email.clone_into(&mut self.author_email);
        self
    }

    /// Sets the committer.
    pub fn committer(mut self, name: &str, email: &str) -> Self {
        name.clone_into(&mut self.committer_name);
        email.clone_into(&mut self.committer_email);
        self
    }

    /// Sets both git dates.
    pub fn dated(mut self, at: DateTime<Utc>) -> Self {
        self.authored_date = Some(at);
        self.committed_date = Some(at);
        self
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

    /// A file moved from `from` to `to` with new contents.
    pub fn renamed_with(from: &str, to: &str, contents: &str) -> Self {
        Self::with("renamed", to, Some(from), Some(contents))
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
    /// The path as sent (percent-encoded, with `/api/v4`), without the query.
    pub path: String,
    /// The query pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body: JSON as sent, a form as a JSON object, other text as a JSON string.
    pub body: Option<Value>,
    /// The username the request authenticated as (`None`: anonymous or refused).
    pub user: Option<String>,
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

/// A note on a merge request or an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteView {
    /// Its id.
    pub id: u64,
    /// The author's username.
    pub author: String,
    /// The text.
    pub body: String,
    /// Whether GitLab wrote it (approvals, pushes, state changes).
    pub system: bool,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When it was last edited (equal to `created_at` until then).
    pub updated_at: DateTime<Utc>,
}

/// An approval of a merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalView {
    /// The approver's username.
    pub user: String,
    /// When.
    pub approved_at: DateTime<Utc>,
}

/// One diff version of a merge request (one per push).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionView {
    /// Its id.
    pub id: u64,
    /// The source branch head.
    pub head_commit_sha: String,
    /// The merge base of head and start.
    pub base_commit_sha: String,
    /// The target branch head at the push.
    pub start_commit_sha: String,
    /// When the push happened (the fake's clock, never a git date).
    pub created_at: DateTime<Utc>,
}

/// A commit status (a GitLab "generic commit status", one CI job) with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    /// Its id.
    pub id: u64,
    /// The commit.
    pub sha: String,
    /// The ref it was posted for.
    pub ref_name: String,
    /// Its name (`default` when the request gave none).
    pub name: String,
    /// Its current state: `pending`, `running`, `success`, `failed` or `canceled`.
    pub state: String,
    /// Its description.
    pub description: Option<String>,
    /// Its link.
    pub target_url: Option<String>,
    /// Who posted it.
    pub author: String,
    /// The (external) pipeline it belongs to.
    pub pipeline_id: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Every state it took, with when, in order.
    pub history: Vec<(String, DateTime<Utc>)>,
}

/// An issue, as [`FakeGitLab::issues`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueView {
    /// Its iid (`#iid`, counted apart from merge requests').
    pub iid: u64,
    /// The title.
    pub title: String,
    /// The description (empty when it has none).
    pub description: String,
    /// `opened` or `closed`.
    pub state: String,
    /// Label names, sorted.
    pub labels: Vec<String>,
    /// Assignees' usernames.
    pub assignees: Vec<String>,
    /// The author's username.
    pub author: String,
    /// Who closed it, while it is closed.
    pub closed_by: Option<String>,
}

/// A merge request, as [`FakeGitLab::merge_requests`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MrView {
    /// Its iid (`!iid`).
    pub iid: u64,
    /// The title (with its `Draft:` prefix, if any).
    pub title: String,
    /// The description (empty when it has none).
    pub description: String,
    /// `opened`, `closed` or `merged`.
    pub state: String,
    /// Label names, sorted.
    pub labels: Vec<String>,
    /// The author's username.
    pub author: String,
    /// The source branch.
    pub source_branch: String,
    /// The target branch.
    pub target_branch: String,
    /// The head of the latest diff version.
    pub sha: String,
    /// The merge commit, once merged.
    pub merge_commit_sha: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The fake
// ---------------------------------------------------------------------------------------------

/// The fake GitLab: a wiremock server plus the state it serves. Every method but
/// [`FakeGitLab::start`] is synchronous and takes `&self`.
pub struct FakeGitLab {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl FakeGitLab {
    /// Starts a fake with no users, groups or projects.
    pub async fn start() -> FakeGitLab {
        let server = MockServer::start().await;
        let now = Utc::now();
        let state = Arc::new(Mutex::new(State {
            base_url: server.uri().trim_end_matches('/').to_owned(),
            clock: truncate_to_second(now) - TimeDelta::hours(1),
            next_id: 100,
            users: BTreeMap::new(),
            tokens: HashMap::new(),
            bot: None,
            groups: BTreeMap::new(),
            projects: BTreeMap::new(),
            requests: Vec::new(),
            injections: Vec::new(),
            latency: std::time::Duration::ZERO,
            pusher: None,
        }));
        Mock::given(any())
            .respond_with(Responder {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        FakeGitLab { server, state }
    }

    /// The instance root, without a trailing slash and without `/api/v4` (what a client is
    /// configured with as its GitLab URL).
    pub fn url(&self) -> String {
        self.lock().base_url.clone()
    }

    /// The API root: [`FakeGitLab::url`] followed by `/api/v4`.
    pub fn api_url(&self) -> String {
        format!("{}{API_PREFIX}", self.url())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // --- users and tokens --------------------------------------------------------------------

    /// Adds a user (or finds the existing one) and returns its id. Its name is the username
    /// and its email `<username>@example.com`.
    pub fn add_user(&self, username: &str) -> u64 {
        self.lock().user_entry(username)
    }

    /// Adds a user with a display name and email (or updates them) and returns its id.
    pub fn add_user_with(&self, username: &str, name: &str, email: &str) -> u64 {
        let mut state = self.lock();
        let id = state.user_entry(username);
        let user = state.users.get_mut(&id).expect("just added");
        user.name = name.to_owned();
        user.email = email.to_owned();
        id
    }

    /// A user's id (panics when there is no such user).
    pub fn user_id(&self, username: &str) -> u64 {
        self.lock()
            .user_by_name(username)
            .unwrap_or_else(|| panic!("no user {username} in the fake"))
    }

    /// Makes `username` tollgate's bot (a bot user; `GET /user` answers it for its token) and
    /// returns its personal access token.
    pub fn set_bot(&self, username: &str) -> String {
        let mut state = self.lock();
        let id = state.user_entry(username);
        state.users.get_mut(&id).expect("just added").bot = true;
        state.bot = Some(id);
        state.token_of(id)
    }

    /// A personal access token of `username` (added if missing), to act as that user.
    pub fn token_for(&self, username: &str) -> String {
        let mut state = self.lock();
        let id = state.user_entry(username);
        state.token_of(id)
    }

    /// Makes a user's tokens stop working (GitLab answers 401 for a revoked token).
    pub fn revoke_tokens(&self, username: &str) {
        let mut state = self.lock();
        let id = state.user_entry(username);
        state.tokens.retain(|_, user| *user != id);
    }

    // --- groups, projects and members --------------------------------------------------------

    /// Adds a group by full path (`ml/reviewers`), with its missing parents, and returns its id.
    pub fn add_group(&self, full_path: &str) -> u64 {
        self.lock().group_entry(full_path)
    }

    /// Makes `user` a direct member of `group` at `level` (replacing an earlier level).
    pub fn add_group_member(&self, group: &str, user: &str, level: u32) {
        check_level(level);
        let mut state = self.lock();
        let (gid, uid, now) = (
            state.group_entry(group),
            state.user_entry(user),
            state.clock,
        );
        let members = &mut state.groups.get_mut(&gid).expect("just added").members;
        members.insert(uid, Membership { level, since: now });
    }

    /// Removes a direct member of a group.
    pub fn remove_group_member(&self, group: &str, user: &str) {
        let mut state = self.lock();
        let (gid, uid) = (state.group_entry(group), state.user_entry(user));
        state
            .groups
            .get_mut(&gid)
            .expect("exists")
            .members
            .remove(&uid);
    }

    /// Invites group `with` into `group` at most at `max_level` (GitLab's group sharing):
    /// members of `with` become members of `group`, its subgroups and its projects.
    pub fn share_group(&self, group: &str, with: &str, max_level: u32) {
        check_level(max_level);
        let mut state = self.lock();
        let (gid, with_id) = (state.group_entry(group), state.group_entry(with));
        let shares = &mut state.groups.get_mut(&gid).expect("exists").shared_with;
        shares.retain(|(g, _)| *g != with_id);
        shares.push((with_id, max_level));
    }

    /// Creates a project by full path (`ml/vision/detector`; missing groups are added) and
    /// returns its id; an existing project's id is returned as is.
    pub fn create_project(&self, path_with_namespace: &str) -> u64 {
        self.lock().project_entry(path_with_namespace)
    }

    /// A project's id (panics when there is no such project).
    pub fn project_id(&self, project: &str) -> u64 {
        self.lock().project_by_path(project)
    }

    /// Makes `user` a direct member of `project` at `level`.
    pub fn add_project_member(&self, project: &str, user: &str, level: u32) {
        check_level(level);
        let mut state = self.lock();
        let (pid, uid, now) = (
            state.project_entry(project),
            state.user_entry(user),
            state.clock,
        );
        let members = &mut state.project_mut(pid).members;
        members.insert(uid, Membership { level, since: now });
    }

    /// Removes a direct member of a project.
    pub fn remove_project_member(&self, project: &str, user: &str) {
        let mut state = self.lock();
        let (pid, uid) = (state.project_entry(project), state.user_entry(user));
        state.project_mut(pid).members.remove(&uid);
    }

    /// Shares a project with a group at most at `max_level` (members of the group, and of its
    /// parent groups, become members of the project).
    pub fn share_project(&self, project: &str, group: &str, max_level: u32) {
        check_level(max_level);
        let mut state = self.lock();
        let (pid, gid) = (state.project_entry(project), state.group_entry(group));
        let shares = &mut state.project_mut(pid).shared_with;
        shares.retain(|(g, _)| *g != gid);
        shares.push((gid, max_level));
    }

    /// The effective access level of `user` on `project` (what `members/all/:user_id`
    /// answers; 0 when not a member).
    pub fn access_level(&self, project: &str, user: &str) -> u32 {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state
            .user_by_name(user)
            .map_or(NO_ACCESS, |uid| state.project_access(pid, uid).0)
    }

    /// Sets a project's visibility (`Internal` by default).
    pub fn set_visibility(&self, project: &str, visibility: Visibility) {
        let mut state = self.lock();
        let pid = state.project_entry(project);
        state.project_mut(pid).visibility = visibility;
    }

    /// Sets a project's approval settings.
    pub fn set_approval_settings(&self, project: &str, settings: ApprovalSettings) {
        let mut state = self.lock();
        let pid = state.project_entry(project);
        state.project_mut(pid).approval_settings = settings;
    }

    // --- repository --------------------------------------------------------------------------

    /// Sets a file of the tree at `sha` (a base commit, or an override on a pushed commit).
    pub fn set_file(&self, project: &str, sha: &str, path: &str, contents: &str) {
        let mut state = self.lock();
        let pid = state.project_entry(project);
        let repo = &mut state.project_mut(pid).repo;
        repo.seeded
            .entry(sha.to_owned())
            .or_default()
            .insert(path.to_owned(), contents.to_owned());
    }

    /// Points a branch at a commit (seeding an empty tree at an unknown sha). Moving a merge
    /// request's source branch this way adds no diff version; use a push for that.
    pub fn set_branch(&self, project: &str, branch: &str, sha: &str) {
        let mut state = self.lock();
        let pid = state.project_entry(project);
        let repo = &mut state.project_mut(pid).repo;
        if !repo.knows(sha) {
            repo.seeded.entry(sha.to_owned()).or_default();
        }
        repo.branches.insert(branch.to_owned(), sha.to_owned());
    }

    /// Pushes commits (oldest first) onto a branch, as `git push` does: each open merge
    /// request whose source branch it is gets a new diff version and an "added N commits"
    /// system note. Returns the new head.
    pub fn push_branch(&self, project: &str, branch: &str, commits: Vec<CommitSpec>) -> String {
        let mut state = self.lock();
        let pid = state.project_entry(project);
        let parent = state
            .project(pid)
            .repo
            .branches
            .get(branch)
            .cloned()
            .unwrap_or_else(|| panic!("no branch {branch} in {project}"));
        state.push(pid, branch, parent, commits, None)
    }

    /// Adds one commit on top of a branch (its `files` change the tip's tree) and moves the
    /// branch to it, as [`FakeGitLab::push_branch`] does. An empty `commit.sha` gets a
    /// generated one, an empty committer is the author. Returns the sha.
    pub fn commit_to_branch(&self, project: &str, branch: &str, mut commit: CommitSpec) -> String {
        let mut state = self.lock();
        let pid = state.project_by_path(project);
        let repo = &state.project(pid).repo;
        let tip = repo
            .branches
            .get(branch)
            .cloned()
            .unwrap_or_else(|| panic!("no branch {branch} in {project}"));
        if commit.sha.is_empty() {
            commit.sha = repo.fresh_sha(&format!("commit {branch} {tip}"));
        }
        if commit.committer_name.is_empty() {
            commit.committer_name.clone_from(&commit.author_name);
            commit.committer_email.clone_from(&commit.author_email);
        }
        state.push(pid, branch, tip, vec![commit], None)
    }

    /// The commit a branch points at.
    pub fn branch_tip(&self, project: &str, branch: &str) -> Option<String> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state.project(pid).repo.branches.get(branch).cloned()
    }

    /// The files (path → contents) at a commit or branch (panics when there is none).
    pub fn tree_at(&self, project: &str, sha_or_branch: &str) -> BTreeMap<String, String> {
        let state = self.lock();
        let repo = &state.project(state.project_by_path(project)).repo;
        repo.resolve(sha_or_branch)
            .and_then(|sha| repo.tree_at(&sha))
            .unwrap_or_else(|| panic!("no commit or branch {sha_or_branch} in {project}"))
    }

    // --- merge requests ----------------------------------------------------------------------

    /// Opens a merge request: its commits are pushed to the source branch (version 1).
    pub fn open_mr(&self, project: &str, spec: MrSpec) {
        assert!(
            !spec.commits.is_empty(),
            "!{} needs at least one commit",
            spec.iid
        );
        let mut state = self.lock();
        let pid = state.project_entry(project);
        let author = state.user_entry(&spec.author);
        let (id, now) = (state.new_id(), state.stamp());
        let project_state = state.project_mut(pid);
        assert!(
            !project_state.mrs.contains_key(&spec.iid),
            "!{} already exists in {project}",
            spec.iid
        );
        let repo = &mut project_state.repo;
        if !repo.knows(&spec.base_sha) {
            repo.seeded.entry(spec.base_sha.clone()).or_default();
        }
        repo.branches
            .entry(spec.target_branch.clone())
            .or_insert_with(|| spec.base_sha.clone());
        let title = match spec.draft && !is_draft(&spec.title) {
            true => format!("Draft: {}", spec.title),
            false => spec.title,
        };
        let mr = MergeRequest {
            id,
            iid: spec.iid,
            title,
            description: Some(spec.description),
            author,
            source_branch: spec.source_branch.clone(),
            target_branch: spec.target_branch,
            labels: spec.labels,
            state: "opened",
            created_at: now,
            updated_at: now,
            merged_at: None,
            merged_by: None,
            merge_commit_sha: None,
            closed_at: None,
            closed_by: None,
            versions: Vec::new(),
            approvals: Vec::new(),
            notes: Vec::new(),
        };
        project_state.mrs.insert(spec.iid, mr);
        state.push(
            pid,
            &spec.source_branch,
            spec.base_sha,
            spec.commits,
            Some(spec.iid),
        );
    }

    /// Pushes one commit onto a merge request's source branch (a new diff version).
    pub fn push(&self, project: &str, iid: u64, commit: CommitSpec) {
        self.push_commits(project, iid, vec![commit]);
    }

    /// Pushes one commit onto a merge request's source branch as `user` (GitLab's "added 1
    /// commit" system note is theirs, whoever git names as the commit's author).
    pub fn push_as(&self, project: &str, iid: u64, user: &str, commit: CommitSpec) {
        {
            let mut state = self.lock();
            let id = state.user_entry(user);
            state.pusher = Some(id);
        }
        self.push(project, iid, commit);
    }

    /// Pushes several commits (oldest first) onto a merge request's source branch at once:
    /// one new diff version.
    pub fn push_commits(&self, project: &str, iid: u64, commits: Vec<CommitSpec>) {
        let branch = {
            let state = self.lock();
            let pid = state.project_by_path(project);
            state.project(pid).mr(iid).source_branch.clone()
        };
        self.push_branch(project, &branch, commits);
    }

    /// Replaces a merge request's source branch with commits on top of `parent` (a rebase or
    /// a force push): one new diff version.
    pub fn force_push(&self, project: &str, iid: u64, parent: &str, commits: Vec<CommitSpec>) {
        let mut state = self.lock();
        let pid = state.project_by_path(project);
        let branch = state.project(pid).mr(iid).source_branch.clone();
        assert!(
            state.project(pid).repo.knows(parent),
            "unknown parent {parent}"
        );
        state.push(pid, &branch, parent.to_owned(), commits, None);
    }

    /// Replaces a merge request's title.
    pub fn set_title(&self, project: &str, iid: u64, title: &str) {
        self.lock().update_mr(project, iid, None, |mr| {
            mr.title = title.to_owned();
            None
        });
    }

    /// Replaces a merge request's description (GitLab notes "changed the description").
    pub fn set_description(&self, project: &str, iid: u64, description: &str) {
        self.lock().update_mr(project, iid, None, |mr| {
            mr.description = Some(description.to_owned());
            Some("changed the description".to_owned())
        });
    }

    /// Replaces a merge request's labels.
    pub fn set_labels(&self, project: &str, iid: u64, labels: &[&str]) {
        self.lock().update_mr(project, iid, None, |mr| {
            mr.labels = labels.iter().map(|l| (*l).to_owned()).collect();
            None
        });
    }

    /// Marks a merge request as draft or ready (GitLab keeps that in the title's prefix).
    pub fn set_draft(&self, project: &str, iid: u64, draft: bool) {
        self.lock().update_mr(project, iid, None, |mr| {
            if draft == is_draft(&mr.title) {
                return None;
            }
            if draft {
                mr.title = format!("Draft: {}", mr.title);
                Some("marked this merge request as **draft**".to_owned())
            } else {
                mr.title = strip_draft(&mr.title);
                Some("marked this merge request as **ready**".to_owned())
            }
        });
    }

    /// Closes a merge request as `by`.
    pub fn close_mr(&self, project: &str, iid: u64, by: &str) {
        let mut state = self.lock();
        let uid = state.user_entry(by);
        let now = state.clock;
        state.update_mr(project, iid, Some(uid), |mr| {
            mr.state = "closed";
            mr.closed_at = Some(now);
            mr.closed_by = Some(uid);
            Some("closed".to_owned())
        });
    }

    /// Reopens a closed merge request as `by`.
    pub fn reopen_mr(&self, project: &str, iid: u64, by: &str) {
        let mut state = self.lock();
        let uid = state.user_entry(by);
        state.update_mr(project, iid, Some(uid), |mr| {
            mr.state = "opened";
            mr.closed_at = None;
            mr.closed_by = None;
            Some("reopened".to_owned())
        });
    }

    /// Merges an open merge request as `by`, as GitLab's merge method `merge` does: a merge
    /// commit by `by` whose parents are the target branch's tip and the head, whose tree is the
    /// tip's tree with the merge request's changes applied (panics on a conflict); the target
    /// branch moves to it. The merge request is `merged` by `by` (`merged_by`, `merge_user`,
    /// `merged_at`, `merge_commit_sha`), with GitLab's "merged" system note. Returns the merge
    /// commit's sha.
    pub fn merge_mr(&self, project: &str, iid: u64, by: &str) -> String {
        let mut state = self.lock();
        let (pid, uid) = (state.project_by_path(project), state.user_entry(by));
        let mr = state.project(pid).mr(iid);
        assert_eq!(mr.state, "opened", "!{iid} is {}", mr.state);
        let sha = state.merge_commit(pid, iid, uid);
        let now = state.clock;
        state.update_mr(project, iid, Some(uid), |mr| {
            mr.state = "merged";
            mr.merged_at = Some(now);
            mr.merged_by = Some(uid);
            mr.merge_commit_sha = Some(sha.clone());
            Some("merged".to_owned())
        });
        sha
    }

    /// Every merge request of a project (opened by [`FakeGitLab::open_mr`] or through the
    /// API), by iid.
    pub fn merge_requests(&self, project: &str) -> Vec<MrView> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state
            .project(pid)
            .mrs
            .values()
            .map(|mr| MrView {
                iid: mr.iid,
                title: mr.title.clone(),
                description: mr.description.clone().unwrap_or_default(),
                state: mr.state.to_owned(),
                labels: sorted_labels(&mr.labels),
                author: state.username(mr.author),
                source_branch: mr.source_branch.clone(),
                target_branch: mr.target_branch.clone(),
                sha: mr.head().to_owned(),
                merge_commit_sha: mr.merge_commit_sha.clone(),
            })
            .collect()
    }

    /// The diff versions of a merge request, oldest first.
    pub fn versions(&self, project: &str, iid: u64) -> Vec<VersionView> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state
            .project(pid)
            .mr(iid)
            .versions
            .iter()
            .map(|v| VersionView {
                id: v.id,
                head_commit_sha: v.head.clone(),
                base_commit_sha: v.base.clone(),
                start_commit_sha: v.start.clone(),
                created_at: v.created_at,
            })
            .collect()
    }

    // --- approvals ---------------------------------------------------------------------------

    /// Approves a merge request as `user` (GitLab's rules do not apply to the setup: any user
    /// may, once), with the "approved this merge request" system note.
    pub fn approve(&self, project: &str, iid: u64, user: &str) {
        let mut state = self.lock();
        let (pid, uid) = (state.project_by_path(project), state.user_entry(user));
        assert!(
            !state.project(pid).mr(iid).approved_by(uid),
            "{user} already approved !{iid}"
        );
        state.add_approval(pid, iid, uid);
    }

    /// Withdraws `user`'s approval, with the "unapproved this merge request" system note.
    pub fn unapprove(&self, project: &str, iid: u64, user: &str) {
        let mut state = self.lock();
        let (pid, uid) = (state.project_by_path(project), state.user_entry(user));
        assert!(
            state.remove_approval(pid, iid, uid),
            "{user} has not approved !{iid}"
        );
    }

    /// The current approvals of a merge request, oldest first.
    pub fn approvals(&self, project: &str, iid: u64) -> Vec<ApprovalView> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state
            .project(pid)
            .mr(iid)
            .approvals
            .iter()
            .map(|a| ApprovalView {
                user: state.username(a.user),
                approved_at: a.at,
            })
            .collect()
    }

    // --- notes -------------------------------------------------------------------------------

    /// Adds a note by `author` (someone other than the client) and returns its id.
    pub fn add_note(&self, project: &str, iid: u64, author: &str, body: &str) -> u64 {
        let mut state = self.lock();
        let (pid, uid) = (state.project_by_path(project), state.user_entry(author));
        state.add_note(pid, Noteable::Mr(iid), uid, body, false)
    }

    /// Edits a note (its `updated_at` moves).
    pub fn edit_note(&self, project: &str, iid: u64, note_id: u64, body: &str) {
        let mut state = self.lock();
        let pid = state.project_by_path(project);
        let now = state.stamp();
        let mr = state.project_mut(pid).mr_mut(iid);
        let note = mr
            .notes
            .iter_mut()
            .find(|n| n.id == note_id)
            .unwrap_or_else(|| panic!("no note {note_id} on !{iid}"));
        note.body = body.to_owned();
        note.updated_at = now;
    }

    /// The notes of a merge request (system notes included), oldest first.
    pub fn notes(&self, project: &str, iid: u64) -> Vec<NoteView> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state.note_views(pid, Noteable::Mr(iid))
    }

    // --- issues ------------------------------------------------------------------------------

    /// Opens an issue by `author` (someone other than the client) and returns its iid.
    pub fn open_issue(&self, project: &str, author: &str, title: &str, labels: &[&str]) -> u64 {
        let mut state = self.lock();
        let (pid, uid) = (state.project_by_path(project), state.user_entry(author));
        let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        state.add_issue(pid, uid, title, None, sorted_labels(&labels), Vec::new())
    }

    /// Every issue of a project, by iid.
    pub fn issues(&self, project: &str) -> Vec<IssueView> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state
            .project(pid)
            .issues
            .values()
            .map(|issue| IssueView {
                iid: issue.iid,
                title: issue.title.clone(),
                description: issue.description.clone().unwrap_or_default(),
                state: issue.state.to_owned(),
                labels: issue.labels.clone(),
                assignees: issue.assignees.iter().map(|u| state.username(*u)).collect(),
                author: state.username(issue.author),
                closed_by: issue.closed_by.map(|u| state.username(u)),
            })
            .collect()
    }

    /// Closes an open issue as `by` (someone other than the client), with GitLab's "closed"
    /// system note.
    pub fn close_issue(&self, project: &str, iid: u64, by: &str) {
        let mut state = self.lock();
        let (pid, uid) = (state.project_by_path(project), state.user_entry(by));
        assert_eq!(
            state.project(pid).issue(iid).state,
            "opened",
            "#{iid} is closed"
        );
        state.set_issue_state(pid, iid, uid, "close");
    }

    /// Adds a note by `author` (someone other than the client) on an issue and returns its id.
    pub fn add_issue_note(&self, project: &str, iid: u64, author: &str, body: &str) -> u64 {
        let mut state = self.lock();
        let (pid, uid) = (state.project_by_path(project), state.user_entry(author));
        state.add_note(pid, Noteable::Issue(iid), uid, body, false)
    }

    /// The notes of an issue (system notes included), oldest first.
    pub fn issue_notes(&self, project: &str, iid: u64) -> Vec<NoteView> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state.note_views(pid, Noteable::Issue(iid))
    }

    // --- commit statuses ---------------------------------------------------------------------

    /// Posts a status as `user` through the same rules as the API (for CI jobs other than
    /// tollgate); panics when GitLab would refuse it.
    pub fn post_status(&self, project: &str, sha: &str, user: &str, name: &str, state: &str) {
        let mut guard = self.lock();
        let (pid, uid) = (guard.project_by_path(project), guard.user_entry(user));
        let input = StatusInput {
            sha: sha.to_owned(),
            state: state.to_owned(),
            name: name.to_owned(),
            ref_name: None,
            description: None,
            target_url: None,
            coverage: None,
        };
        if let Err(refusal) = guard.post_status(pid, uid, input) {
            panic!("GitLab refuses this status: {:?}", refusal.body);
        }
    }

    /// Every status posted on a commit, oldest first, each with its history.
    pub fn statuses(&self, project: &str, sha: &str) -> Vec<StatusView> {
        let state = self.lock();
        let pid = state.project_by_path(project);
        state
            .project(pid)
            .statuses
            .iter()
            .filter(|s| s.sha == sha)
            .map(|s| StatusView {
                id: s.id,
                sha: s.sha.clone(),
                ref_name: s.ref_name.clone(),
                name: s.name.clone(),
                state: s.state.clone(),
                description: s.description.clone(),
                target_url: s.target_url.clone(),
                author: state.username(s.author),
                pipeline_id: s.pipeline_id,
                created_at: s.created_at,
                history: s.history.clone(),
            })
            .collect()
    }

    /// Every state a status `name` took on a commit, across all its statuses, in order (so a
    /// test can assert a state never appeared).
    pub fn status_history(&self, project: &str, sha: &str, name: &str) -> Vec<String> {
        self.statuses(project, sha)
            .into_iter()
            .filter(|s| s.name == name)
            .flat_map(|s| s.history.into_iter().map(|(state, _)| state))
            .collect()
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

    /// Every request received since the start (or the last [`FakeGitLab::clear_requests`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the recorded requests (not the state).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    // --- failure injection -------------------------------------------------------------------

    /// Delays every answer by `latency`.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.lock().latency = latency;
    }

    /// Answers the next `times` requests whose method is `method` (or `*`) and whose path
    /// starts with `path_prefix` (as sent, percent-encoded; with or without `/api/v4`) with
    /// `status` instead of serving them (nothing changes). `retry_after` adds a `Retry-After`
    /// header (seconds); a 429 looks like GitLab's rate limiter (`Retry later` in plain text,
    /// `RateLimit-*` headers).
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        times: usize,
        retry_after: Option<u64>,
    ) {
        let prefix = match path_prefix.starts_with(API_PREFIX) {
            true => path_prefix.to_owned(),
            false => format!("{API_PREFIX}{path_prefix}"),
        };
        self.lock().injections.push(Injection {
            method: method.to_ascii_uppercase(),
            prefix,
            status,
            remaining: times,
            retry_after,
        });
    }
}

fn check_level(level: u32) {
    assert!(
        [GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER].contains(&level),
        "unknown access level {level}"
    );
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

struct State {
    base_url: String,
    clock: DateTime<Utc>,
    next_id: u64,
    users: BTreeMap<u64, User>,
    /// Token → user id.
    tokens: HashMap<String, u64>,
    bot: Option<u64>,
    groups: BTreeMap<u64, Group>,
    projects: BTreeMap<u64, Project>,
    requests: Vec<RecordedRequest>,
    injections: Vec<Injection>,
    /// Added to every answer (the state change happens at once; the answer comes later).
    latency: std::time::Duration,
    /// Who makes the next push (its "added N commits" note is theirs); the author otherwise.
    pusher: Option<u64>,
}

struct User {
    id: u64,
    username: String,
    name: String,
    email: String,
    bot: bool,
    created_at: DateTime<Utc>,
}

#[derive(Clone, Copy)]
struct Membership {
    level: u32,
    since: DateTime<Utc>,
}

struct Group {
    id: u64,
    full_path: String,
    parent: Option<u64>,
    members: BTreeMap<u64, Membership>,
    /// Groups invited into this one, with the highest level they grant.
    shared_with: Vec<(u64, u32)>,
    created_at: DateTime<Utc>,
}

impl Group {
    fn path(&self) -> &str {
        self.full_path.rsplit('/').next().unwrap_or(&self.full_path)
    }
}

struct Project {
    id: u64,
    path_with_namespace: String,
    namespace: u64,
    visibility: Visibility,
    approval_settings: ApprovalSettings,
    created_at: DateTime<Utc>,
    members: BTreeMap<u64, Membership>,
    /// Groups the project is shared with, with the highest level they grant.
    shared_with: Vec<(u64, u32)>,
    repo: Repo,
    mrs: BTreeMap<u64, MergeRequest>,
    issues: BTreeMap<u64, Issue>,
    statuses: Vec<StatusRecord>,
    /// (sha, ref) → pipeline id, for external statuses.
    pipelines: Vec<(String, String, u64)>,
}

impl Project {
    fn mr(&self, iid: u64) -> &MergeRequest {
        self.mrs
            .get(&iid)
            .unwrap_or_else(|| panic!("no !{iid} in {}", self.path_with_namespace))
    }

    fn mr_mut(&mut self, iid: u64) -> &mut MergeRequest {
        let path = self.path_with_namespace.clone();
        self.mrs
            .get_mut(&iid)
            .unwrap_or_else(|| panic!("no !{iid} in {path}"))
    }

    fn name(&self) -> &str {
        self.path_with_namespace
            .rsplit('/')
            .next()
            .unwrap_or(&self.path_with_namespace)
    }

    fn issue(&self, iid: u64) -> &Issue {
        self.issues
            .get(&iid)
            .unwrap_or_else(|| panic!("no #{iid} in {}", self.path_with_namespace))
    }

    fn issue_mut(&mut self, iid: u64) -> &mut Issue {
        let path = self.path_with_namespace.clone();
        self.issues
            .get_mut(&iid)
            .unwrap_or_else(|| panic!("no #{iid} in {path}"))
    }

    fn has(&self, noteable: Noteable) -> bool {
        match noteable {
            Noteable::Mr(iid) => self.mrs.contains_key(&iid),
            Noteable::Issue(iid) => self.issues.contains_key(&iid),
        }
    }

    fn notes(&self, noteable: Noteable) -> &Vec<Note> {
        match noteable {
            Noteable::Mr(iid) => &self.mr(iid).notes,
            Noteable::Issue(iid) => &self.issue(iid).notes,
        }
    }

    fn notes_mut(&mut self, noteable: Noteable) -> &mut Vec<Note> {
        match noteable {
            Noteable::Mr(iid) => &mut self.mr_mut(iid).notes,
            Noteable::Issue(iid) => &mut self.issue_mut(iid).notes,
        }
    }

    /// The next iid of a merge request (GitLab's `InternalId`: one past the highest).
    fn next_mr_iid(&self) -> u64 {
        self.mrs.keys().next_back().map_or(1, |iid| iid + 1)
    }
}

/// A file tree: path → contents.
type Tree = BTreeMap<String, String>;

struct Repo {
    default_branch: String,
    branches: BTreeMap<String, String>,
    commits: HashMap<String, CommitRecord>,
    /// Files set by tests at a sha: the whole tree of a base commit, overrides on a commit.
    seeded: HashMap<String, Tree>,
}

struct CommitRecord {
    /// The commit, its dates resolved; its `files` are its changes from its first parent.
    spec: CommitSpec,
    /// First parent first (two for a merge commit).
    parents: Vec<String>,
}

impl CommitRecord {
    fn authored(&self) -> DateTime<Utc> {
        self.spec.authored_date.unwrap_or_default()
    }

    fn committed(&self) -> DateTime<Utc> {
        self.spec.committed_date.unwrap_or_default()
    }

    fn first_parent(&self) -> &str {
        self.parents.first().map_or("", String::as_str)
    }
}

struct MergeRequest {
    id: u64,
    iid: u64,
    title: String,
    /// `None`: created through the API without one (GitLab answers `null`).
    description: Option<String>,
    author: u64,
    source_branch: String,
    target_branch: String,
    labels: Vec<String>,
    state: &'static str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    merged_at: Option<DateTime<Utc>>,
    merged_by: Option<u64>,
    merge_commit_sha: Option<String>,
    closed_at: Option<DateTime<Utc>>,
    closed_by: Option<u64>,
    versions: Vec<Version>,
    approvals: Vec<Approval>,
    notes: Vec<Note>,
}

impl MergeRequest {
    fn latest(&self) -> &Version {
        self.versions.last().expect("a merge request has a version")
    }

    fn head(&self) -> &str {
        &self.latest().head
    }

    fn approved_by(&self, user: u64) -> bool {
        self.approvals.iter().any(|a| a.user == user)
    }
}

struct Issue {
    id: u64,
    iid: u64,
    title: String,
    description: Option<String>,
    author: u64,
    /// Sorted, without duplicates.
    labels: Vec<String>,
    assignees: Vec<u64>,
    state: &'static str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    closed_by: Option<u64>,
    notes: Vec<Note>,
}

/// What a note is on.
#[derive(Clone, Copy)]
enum Noteable {
    /// A merge request, by iid.
    Mr(u64),
    /// An issue, by iid.
    Issue(u64),
}

impl Noteable {
    /// GitLab's `noteable_type`.
    fn type_name(self) -> &'static str {
        match self {
            Noteable::Mr(_) => "MergeRequest",
            Noteable::Issue(_) => "Issue",
        }
    }
}

struct Version {
    id: u64,
    head: String,
    base: String,
    start: String,
    created_at: DateTime<Utc>,
}

struct Approval {
    user: u64,
    at: DateTime<Utc>,
}

struct Note {
    id: u64,
    author: u64,
    body: String,
    system: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct StatusRecord {
    id: u64,
    sha: String,
    ref_name: String,
    name: String,
    author: u64,
    state: String,
    description: Option<String>,
    target_url: Option<String>,
    coverage: Option<f64>,
    pipeline_id: u64,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    history: Vec<(String, DateTime<Utc>)>,
}

/// The fields of a status POST.
struct StatusInput {
    sha: String,
    state: String,
    name: String,
    ref_name: Option<String>,
    description: Option<String>,
    target_url: Option<String>,
    coverage: Option<f64>,
}

struct Injection {
    method: String,
    prefix: String,
    status: u16,
    remaining: usize,
    retry_after: Option<u64>,
}

/// One changed file between two trees.
struct DiffEntry {
    old_path: String,
    new_path: String,
    new_file: bool,
    renamed_file: bool,
    deleted_file: bool,
    old_text: Option<String>,
    new_text: Option<String>,
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

    // --- users ---

    fn user_by_name(&self, username: &str) -> Option<u64> {
        self.users
            .values()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .map(|u| u.id)
    }

    fn user_entry(&mut self, username: &str) -> u64 {
        assert!(
            !username.is_empty() && !username.contains('/'),
            "not a username: {username:?}"
        );
        if let Some(id) = self.user_by_name(username) {
            return id;
        }
        let id = self.new_id();
        let created_at = self.clock;
        self.users.insert(
            id,
            User {
                id,
                username: username.to_owned(),
                name: username.to_owned(),
                email: format!("{username}@example.com"),
                bot: false,
                created_at,
            },
        );
        id
    }

    fn username(&self, id: u64) -> String {
        self.users
            .get(&id)
            .map_or_else(|| format!("user{id}"), |u| u.username.clone())
    }

    fn token_of(&mut self, user: u64) -> String {
        if let Some((token, _)) = self.tokens.iter().find(|(_, u)| **u == user) {
            return token.clone();
        }
        let seed = format!("{}:{}", self.username(user), self.new_id());
        let token = format!(
            "glpat-{}",
            &hex::encode(Sha256::digest(seed.as_bytes()))[..20]
        );
        self.tokens.insert(token.clone(), user);
        token
    }

    // --- groups and projects ---

    fn group_by_path(&self, full_path: &str) -> Option<u64> {
        self.groups
            .values()
            .find(|g| g.full_path.eq_ignore_ascii_case(full_path))
            .map(|g| g.id)
    }

    fn group_entry(&mut self, full_path: &str) -> u64 {
        let full_path = full_path.trim_matches('/');
        assert!(!full_path.is_empty(), "a group needs a path");
        let mut parent = None;
        let mut path = String::new();
        for part in full_path.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            let id = match self.group_by_path(&path) {
                Some(id) => id,
                None => {
                    let id = self.new_id();
                    let created_at = self.clock;
                    self.groups.insert(
                        id,
                        Group {
                            id,
                            full_path: path.clone(),
                            parent,
                            members: BTreeMap::new(),
                            shared_with: Vec::new(),
                            created_at,
                        },
                    );
                    id
                }
            };
            parent = Some(id);
        }
        parent.expect("at least one part")
    }

    fn find_project_by_path(&self, path: &str) -> Option<u64> {
        self.projects
            .values()
            .find(|p| p.path_with_namespace.eq_ignore_ascii_case(path))
            .map(|p| p.id)
    }

    fn project_by_path(&self, path: &str) -> u64 {
        self.find_project_by_path(path)
            .unwrap_or_else(|| panic!("no project {path} in the fake"))
    }

    fn project_entry(&mut self, path: &str) -> u64 {
        let path = path.trim_matches('/');
        if let Some(id) = self.find_project_by_path(path) {
            return id;
        }
        let (namespace, _) = path
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("a project is `namespace/name`, not {path:?}"));
        let namespace = self.group_entry(namespace);
        let id = self.new_id();
        let created_at = self.clock;
        self.projects.insert(
            id,
            Project {
                id,
                path_with_namespace: path.to_owned(),
                namespace,
                visibility: Visibility::Internal,
                approval_settings: ApprovalSettings::default(),
                created_at,
                members: BTreeMap::new(),
                shared_with: Vec::new(),
                repo: Repo {
                    default_branch: DEFAULT_BRANCH.to_owned(),
                    branches: BTreeMap::new(),
                    commits: HashMap::new(),
                    seeded: HashMap::new(),
                },
                mrs: BTreeMap::new(),
                issues: BTreeMap::new(),
                statuses: Vec::new(),
                pipelines: Vec::new(),
            },
        );
        id
    }

    fn project(&self, id: u64) -> &Project {
        self.projects.get(&id).expect("a known project")
    }

    fn project_mut(&mut self, id: u64) -> &mut Project {
        self.projects.get_mut(&id).expect("a known project")
    }

    // --- access levels ---

    /// `group` and its ancestors, nearest first.
    fn group_chain(&self, group: u64) -> Vec<u64> {
        let mut chain = Vec::new();
        let mut next = Some(group);
        while let Some(id) = next {
            chain.push(id);
            next = self.groups.get(&id).and_then(|g| g.parent);
        }
        chain
    }

    /// The highest direct membership of `user` in `group` or its ancestors.
    fn inherited_membership(&self, group: u64, user: u64) -> Option<Membership> {
        self.group_chain(group)
            .iter()
            .filter_map(|g| self.groups.get(g)?.members.get(&user).copied())
            .max_by_key(|m| m.level)
    }

    /// The effective membership of `user` in `group`: inherited, or through a group invited
    /// into it or into an ancestor (capped at the invitation's level).
    fn group_membership(&self, group: u64, user: u64) -> Option<Membership> {
        let mut best = self.inherited_membership(group, user);
        for id in self.group_chain(group) {
            for (shared, max) in &self.groups[&id].shared_with {
                if let Some(m) = self.inherited_membership(*shared, user) {
                    let capped = Membership {
                        level: m.level.min(*max),
                        since: m.since,
                    };
                    best = better(best, capped);
                }
            }
        }
        best
    }

    /// The effective membership of `user` in a project: direct, through its groups, or
    /// through a group the project is shared with.
    fn project_membership(&self, project: u64, user: u64) -> Option<Membership> {
        let p = self.project(project);
        let mut best = p.members.get(&user).copied();
        if let Some(m) = self.group_membership(p.namespace, user) {
            best = better(best, m);
        }
        for (group, max) in &p.shared_with {
            if let Some(m) = self.group_membership(*group, user) {
                let capped = Membership {
                    level: m.level.min(*max),
                    since: m.since,
                };
                best = better(best, capped);
            }
        }
        best
    }

    fn project_access(&self, project: u64, user: u64) -> (u32, Option<DateTime<Utc>>) {
        self.project_membership(project, user)
            .map_or((NO_ACCESS, None), |m| (m.level, Some(m.since)))
    }

    fn level(&self, project: u64, who: Option<u64>) -> u32 {
        who.map_or(NO_ACCESS, |u| self.project_access(project, u).0)
    }

    /// Whether `who` sees the project at all.
    fn can_see_project(&self, project: u64, who: Option<u64>) -> bool {
        match self.project(project).visibility {
            Visibility::Public => true,
            Visibility::Internal => who.is_some(),
            Visibility::Private => self.level(project, who) >= GUEST,
        }
    }

    /// Whether `who` reads the project's code and merge requests.
    fn can_read_code(&self, project: u64, who: Option<u64>) -> bool {
        match self.project(project).visibility {
            Visibility::Private => self.level(project, who) >= REPORTER,
            _ => self.can_see_project(project, who),
        }
    }

    // --- pushes, merge requests, notes, approvals ---

    /// Pushes `commits` on top of `parent` as `branch`'s new head, adding a diff version to
    /// each open merge request from that branch (`opening` is being created: no push note).
    fn push(
        &mut self,
        project: u64,
        branch: &str,
        parent: String,
        commits: Vec<CommitSpec>,
        opening: Option<u64>,
    ) -> String {
        let pushed_at = self.stamp();
        let pusher = self.pusher.take();
        let repo = &mut self.project_mut(project).repo;
        let mut head = parent;
        for mut spec in commits {
            spec.authored_date.get_or_insert(pushed_at);
            spec.committed_date.get_or_insert(pushed_at);
            if spec.title.is_empty() {
                spec.title = format!("Commit {}", spec.sha);
            }
            head = repo.add_commit(spec, vec![head]);
        }
        self.move_branch(project, branch, &head, pushed_at, pusher, opening);
        head
    }

    /// Points `branch` at `head` (pushed at `pushed_at` by `pusher`, or each merge request's
    /// author): each open merge request from it gets a diff version and, unless it is
    /// `opening`, GitLab's "added N commits" system note.
    fn move_branch(
        &mut self,
        project: u64,
        branch: &str,
        head: &str,
        pushed_at: DateTime<Utc>,
        pusher: Option<u64>,
        opening: Option<u64>,
    ) {
        let repo = &mut self.project_mut(project).repo;
        repo.branches.insert(branch.to_owned(), head.to_owned());
        let iids: Vec<u64> = self
            .project(project)
            .mrs
            .values()
            .filter(|mr| mr.state == "opened" && mr.source_branch == branch)
            .map(|mr| mr.iid)
            .collect();
        for iid in iids {
            let version_id = self.new_id();
            let note_id = self.new_id();
            let p = self.project_mut(project);
            let (target, previous) = {
                let mr = p.mr(iid);
                let previous = mr.versions.last().map(|v| v.head.clone());
                (mr.target_branch.clone(), previous)
            };
            let version = p.repo.version(&target, head, version_id, pushed_at);
            let reset = p.approval_settings.reset_approvals_on_push;
            let note = previous.filter(|_| Some(iid) != opening).map(|previous| {
                let new_commits = p.repo.commits_between(&previous, head);
                push_note(p, iid, &new_commits, version_id, &previous)
            });
            let mr = p.mr_mut(iid);
            mr.versions.push(version);
            if Some(iid) != opening {
                mr.updated_at = pushed_at;
                if reset {
                    mr.approvals.clear();
                }
            }
            if let Some(body) = note {
                let author = pusher.unwrap_or(mr.author);
                mr.notes.push(Note {
                    id: note_id,
                    author,
                    body,
                    system: true,
                    created_at: pushed_at,
                    updated_at: pushed_at,
                });
            }
        }
    }

    /// Records the merge commit of `!iid` by `user` on its target branch (parents: the
    /// target's tip, then the head; tree: a three-way merge from their merge base) and moves
    /// the target branch to it. Returns its sha.
    fn merge_commit(&mut self, project: u64, iid: u64, user: u64) -> String {
        let now = self.stamp();
        let (name, email) = (
            self.users[&user].name.clone(),
            self.users[&user].email.clone(),
        );
        let p = self.project(project);
        let mr = p.mr(iid);
        let (target, head) = (mr.target_branch.clone(), mr.head().to_owned());
        let repo = &p.repo;
        let tip = repo.branches.get(&target).cloned().unwrap_or_default();
        let base = repo.merge_base(&tip, &head);
        let tree = |sha: &str| repo.tree_at(sha).unwrap_or_default();
        let ours = tree(&tip);
        let merged = merge_trees(&tree(&base), &ours, &tree(&head))
            .unwrap_or_else(|path| panic!("!{iid} conflicts with {target} in {path}"));
        let renames = repo.renames_between(&base, &head);
        let mut spec = CommitSpec::new("", "", changes_between(&ours, &merged, &renames))
            .author(&name, &email)
            .committer(&name, &email)
            .dated(now);
        spec.sha = repo.fresh_sha(&format!("merge {tip} {head}"));
        spec.title = format!("Merge branch '{}' into '{target}'", mr.source_branch);
        spec.body = format!(
            "{}\n\nSee merge request {}!{iid}",
            mr.title, p.path_with_namespace
        );
        let sha = self
            .project_mut(project)
            .repo
            .add_commit(spec, vec![tip, head]);
        self.move_branch(project, &target, &sha, now, Some(user), None);
        sha
    }

    /// Changes a merge request through `change`, which may return a system note's text (by
    /// `actor`, or the author).
    fn update_mr(
        &mut self,
        project: &str,
        iid: u64,
        actor: Option<u64>,
        change: impl FnOnce(&mut MergeRequest) -> Option<String>,
    ) {
        let pid = self.project_by_path(project);
        let (now, note_id) = (self.stamp(), self.new_id());
        let mr = self.project_mut(pid).mr_mut(iid);
        let note = change(mr);
        mr.updated_at = now;
        if let Some(body) = note {
            mr.notes.push(Note {
                id: note_id,
                author: actor.unwrap_or(mr.author),
                body,
                system: true,
                created_at: now,
                updated_at: now,
            });
        }
    }

    fn add_note(
        &mut self,
        project: u64,
        noteable: Noteable,
        author: u64,
        body: &str,
        system: bool,
    ) -> u64 {
        let (id, now) = (self.new_id(), self.stamp());
        let notes = self.project_mut(project).notes_mut(noteable);
        notes.push(Note {
            id,
            author,
            body: body.to_owned(),
            system,
            created_at: now,
            updated_at: now,
        });
        id
    }

    fn note_views(&self, project: u64, noteable: Noteable) -> Vec<NoteView> {
        self.project(project)
            .notes(noteable)
            .iter()
            .map(|n| NoteView {
                id: n.id,
                author: self.username(n.author),
                body: n.body.clone(),
                system: n.system,
                created_at: n.created_at,
                updated_at: n.updated_at,
            })
            .collect()
    }

    /// Opens issue `#next` and returns its iid.
    fn add_issue(
        &mut self,
        project: u64,
        author: u64,
        title: &str,
        description: Option<String>,
        labels: Vec<String>,
        assignees: Vec<u64>,
    ) -> u64 {
        let (id, now) = (self.new_id(), self.stamp());
        let issues = &mut self.project_mut(project).issues;
        let iid = issues.keys().next_back().map_or(1, |iid| iid + 1);
        issues.insert(
            iid,
            Issue {
                id,
                iid,
                title: title.to_owned(),
                description,
                author,
                labels,
                assignees,
                state: "opened",
                created_at: now,
                updated_at: now,
                closed_at: None,
                closed_by: None,
                notes: Vec::new(),
            },
        );
        iid
    }

    /// Applies a `state_event` (`close` or `reopen`) to an issue as `user`, with its system
    /// note; nothing happens when the issue is already in that state.
    fn set_issue_state(&mut self, project: u64, iid: u64, user: u64, event: &str) {
        let (to, note) = match event {
            "close" => ("closed", "closed"),
            _ => ("opened", "reopened"),
        };
        if self.project(project).issue(iid).state == to {
            return;
        }
        let now = self.clock;
        let issue = self.project_mut(project).issue_mut(iid);
        issue.state = to;
        issue.updated_at = now;
        (issue.closed_at, issue.closed_by) = match to {
            "closed" => (Some(now), Some(user)),
            _ => (None, None),
        };
        self.add_note(project, Noteable::Issue(iid), user, note, true);
    }

    fn add_approval(&mut self, project: u64, iid: u64, user: u64) {
        let at = self.clock;
        self.project_mut(project)
            .mr_mut(iid)
            .approvals
            .push(Approval { user, at });
        let mr = Noteable::Mr(iid);
        self.add_note(project, mr, user, "approved this merge request", true);
    }

    fn remove_approval(&mut self, project: u64, iid: u64, user: u64) -> bool {
        let mr = self.project_mut(project).mr_mut(iid);
        let before = mr.approvals.len();
        mr.approvals.retain(|a| a.user != user);
        if mr.approvals.len() == before {
            return false;
        }
        let mr = Noteable::Mr(iid);
        self.add_note(project, mr, user, "unapproved this merge request", true);
        true
    }

    // --- statuses ---

    /// GitLab's `POST /projects/:id/statuses/:sha`: moves the caller's pending or running
    /// status of that name and ref, or starts a new one.
    fn post_status(&mut self, project: u64, author: u64, input: StatusInput) -> Outcome {
        const STATES: &[&str] = &["pending", "running", "success", "failed", "canceled"];
        if !STATES.contains(&input.state.as_str()) {
            return Err(Reply::grape_error(400, "state does not have a valid value"));
        }
        let repo = &self.project(project).repo;
        let sha = repo
            .resolve(&input.sha)
            .ok_or_else(|| Reply::message(404, "404 Commit Not Found"))?;
        let ref_name = match input.ref_name {
            Some(r) => r,
            None => repo
                .branches_containing(&sha)
                .into_iter()
                .next()
                .ok_or_else(|| Reply::message(404, "404 References for commit Not Found"))?,
        };
        let pipeline_id = self.pipeline_for(project, &sha, &ref_name);
        let current = self.project(project).statuses.iter().position(|s| {
            s.sha == sha
                && s.ref_name == ref_name
                && s.name == input.name
                && s.author == author
                && matches!(s.state.as_str(), "pending" | "running")
        });
        if let Some(index) = current {
            let from = self.project(project).statuses[index].state.clone();
            let event = match (input.state.as_str(), from.as_str()) {
                ("pending", _) => Some("enqueue"),
                ("running", "running") => Some("run"),
                _ => None,
            };
            if let Some(event) = event {
                let message = format!(
                    "Cannot transition status via :{event} from :{from} (Reason(s): Status cannot transition via \"{event}\")"
                );
                return Err(Reply::message(400, &message));
            }
        }
        let now = self.stamp();
        let index = match current {
            Some(index) => index,
            None => {
                let id = self.new_id();
                let statuses = &mut self.project_mut(project).statuses;
                statuses.push(StatusRecord {
                    id,
                    sha,
                    ref_name,
                    name: input.name,
                    author,
                    state: "created".to_owned(),
                    description: None,
                    target_url: None,
                    coverage: None,
                    pipeline_id,
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                    history: Vec::new(),
                });
                statuses.len() - 1
            }
        };
        let status = &mut self.project_mut(project).statuses[index];
        if input.description.is_some() {
            status.description = input.description;
        }
        if input.target_url.is_some() {
            status.target_url = input.target_url;
        }
        if input.coverage.is_some() {
            status.coverage = input.coverage;
        }
        match input.state.as_str() {
            "running" => status.started_at = Some(now),
            "pending" => {}
            _ => {
                status.started_at.get_or_insert(now);
                status.finished_at = Some(now);
            }
        }
        status.state = input.state.clone();
        status.history.push((input.state, now));
        let id = status.id;
        Ok(Reply::json(201, self.status_json(project, id)))
    }

    fn pipeline_for(&mut self, project: u64, sha: &str, ref_name: &str) -> u64 {
        let known = self
            .project(project)
            .pipelines
            .iter()
            .find(|(s, r, _)| s == sha && r == ref_name)
            .map(|(_, _, id)| *id);
        if let Some(id) = known {
            return id;
        }
        let id = self.new_id();
        self.project_mut(project)
            .pipelines
            .push((sha.to_owned(), ref_name.to_owned(), id));
        id
    }
}

/// The higher of two memberships.
fn better(current: Option<Membership>, candidate: Membership) -> Option<Membership> {
    match current {
        Some(m) if m.level >= candidate.level => Some(m),
        _ => Some(candidate),
    }
}

/// GitLab's system note for a push to a merge request's source branch.
fn push_note(
    project: &Project,
    iid: u64,
    new_commits: &[String],
    version_id: u64,
    previous: &str,
) -> String {
    let count = new_commits.len();
    let items: String = new_commits
        .iter()
        .rev()
        .map(|sha| {
            let title = project
                .repo
                .commits
                .get(sha)
                .map_or("", |c| c.spec.title.as_str());
            format!("<li>{} - {title}</li>", short_id(sha))
        })
        .collect();
    format!(
        "added {count} commit{}\n\n<ul>{items}</ul>\n\n[Compare with previous version](/{}/-/merge_requests/{iid}/diffs?diff_id={version_id}&start_sha={previous})",
        if count == 1 { "" } else { "s" },
        project.path_with_namespace,
    )
}

/// Whether a title marks a draft, as GitLab reads it.
fn is_draft(title: &str) -> bool {
    let lower = title.trim_start().to_lowercase();
    lower.starts_with("draft:") || lower.starts_with("[draft]") || lower.starts_with("(draft)")
}

fn strip_draft(title: &str) -> String {
    let mut rest = title.trim_start();
    while is_draft(rest) {
        let cut = if rest.to_lowercase().starts_with("draft:") {
            6
        } else {
            7
        };
        rest = rest[cut..].trim_start();
    }
    rest.to_owned()
}

impl Repo {
    /// Records a commit on top of `parents` (first parent first) and returns its sha.
    fn add_commit(&mut self, spec: CommitSpec, parents: Vec<String>) -> String {
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
        assert!(!self.knows(&spec.sha), "commit {} already exists", spec.sha);
        let sha = spec.sha.clone();
        self.commits
            .insert(sha.clone(), CommitRecord { spec, parents });
        sha
    }

    /// A 40-hex-digit sha no commit has yet, derived from `seed`.
    fn fresh_sha(&self, seed: &str) -> String {
        (0..)
            .map(|n| blob_sha(&format!("commit {n} {seed}")))
            .find(|sha| !self.knows(sha))
            .expect("an unused sha")
    }

    fn knows(&self, sha: &str) -> bool {
        self.commits.contains_key(sha) || self.seeded.contains_key(sha)
    }

    /// A sha, a unique sha prefix (7 characters or more), a branch, `refs/heads/<branch>` or
    /// `HEAD`, as the commit it names.
    fn resolve(&self, reference: &str) -> Option<String> {
        if reference.is_empty() {
            return None;
        }
        if self.knows(reference) {
            return Some(reference.to_owned());
        }
        let branch = reference.strip_prefix("refs/heads/").unwrap_or(reference);
        let branch = match branch {
            "HEAD" => self.default_branch.as_str(),
            other => other,
        };
        if let Some(sha) = self.branches.get(branch) {
            return Some(sha.clone());
        }
        if reference.len() >= 7 {
            let mut matches = self
                .commits
                .keys()
                .chain(self.seeded.keys())
                .filter(|sha| sha.starts_with(reference));
            if let (Some(sha), None) = (matches.next(), matches.next()) {
                return Some(sha.clone());
            }
        }
        None
    }

    /// `sha` and its first-parent ancestors, newest first, ending with the first sha that is
    /// not a commit record (a seeded base): the chain whose changes make its tree.
    fn ancestry(&self, sha: &str) -> Vec<String> {
        let mut chain = vec![sha.to_owned()];
        let mut seen = HashSet::new();
        while let Some(record) = self.commits.get(chain.last().map_or("", String::as_str)) {
            let parent = record.first_parent().to_owned();
            if parent.is_empty() || !seen.insert(parent.clone()) {
                break;
            }
            chain.push(parent);
        }
        chain
    }

    /// `sha` and every commit it descends from through any parent, nearest first.
    fn reachable(&self, sha: &str) -> Vec<String> {
        let mut order = vec![sha.to_owned()];
        let mut seen: HashSet<String> = order.iter().cloned().collect();
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

    /// The nearest common ancestor of two commits (`a` itself when they share none).
    fn merge_base(&self, a: &str, b: &str) -> String {
        let of_b: HashSet<String> = self.reachable(b).into_iter().collect();
        self.reachable(a)
            .into_iter()
            .find(|sha| of_b.contains(sha))
            .unwrap_or_else(|| a.to_owned())
    }

    /// Whether `ancestor` is `sha` or in its history.
    fn is_ancestor(&self, ancestor: &str, sha: &str) -> bool {
        self.reachable(sha).iter().any(|s| s == ancestor)
    }

    /// Branches whose history contains `sha`, by name.
    fn branches_containing(&self, sha: &str) -> Vec<String> {
        self.branches
            .iter()
            .filter(|(_, head)| self.is_ancestor(sha, head))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The tree at a commit: its root's seeded files, then each commit's changes and overrides.
    fn tree_at(&self, sha: &str) -> Option<Tree> {
        if !self.knows(sha) {
            return None;
        }
        let chain = self.ancestry(sha);
        let mut tree = Tree::new();
        for sha in chain.iter().rev() {
            if let Some(record) = self.commits.get(sha) {
                apply_changes(&mut tree, &record.spec);
            }
            if let Some(seeded) = self.seeded.get(sha) {
                tree.extend(seeded.iter().map(|(p, c)| (p.clone(), c.clone())));
            }
        }
        Some(tree)
    }

    /// The commits reachable from `head` but not from `base`, oldest first.
    fn commits_between(&self, base: &str, head: &str) -> Vec<String> {
        let behind: HashSet<String> = self.reachable(base).into_iter().collect();
        let mut ahead: Vec<String> = self
            .reachable(head)
            .into_iter()
            .filter(|sha| !behind.contains(sha) && self.commits.contains_key(sha))
            .collect();
        ahead.reverse();
        ahead
    }

    /// Files changed from `base` to `head`, renames recognised from the commits between them.
    fn diff(&self, base: &str, head: &str) -> Vec<DiffEntry> {
        let old = self.tree_at(base).unwrap_or_default();
        let new = self.tree_at(head).unwrap_or_default();
        diff_trees(&old, &new, &self.renames_between(base, head))
    }

    /// The renames made by the commits between `base` and `head`.
    fn renames_between(&self, base: &str, head: &str) -> Vec<(String, String)> {
        let commits = self.commits_between(base, head);
        net_renames(commits.iter().filter_map(|sha| self.commits.get(sha)))
    }

    /// A merge request's diff version for `head` into `target` as the branches stand now.
    fn version(&self, target: &str, head: &str, id: u64, at: DateTime<Utc>) -> Version {
        let start = self.branches.get(target).cloned().unwrap_or_default();
        Version {
            id,
            head: head.to_owned(),
            base: self.merge_base(&start, head),
            start,
            created_at: at,
        }
    }
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

/// Git's three-way merge, file by file: a path takes the side that changed it from `base`
/// (either, when both made the same change); `Err(path)` when both changed it differently.
fn merge_trees(base: &Tree, ours: &Tree, theirs: &Tree) -> Result<Tree, String> {
    let paths: BTreeSet<&String> = base
        .keys()
        .chain(ours.keys())
        .chain(theirs.keys())
        .collect();
    let mut merged = Tree::new();
    for path in paths {
        let (b, o, t) = (base.get(path), ours.get(path), theirs.get(path));
        let pick = match (o == t || b == t, b == o) {
            (true, _) => o,
            (false, true) => t,
            (false, false) => return Err(path.clone()),
        };
        if let Some(text) = pick {
            merged.insert(path.clone(), text.clone());
        }
    }
    Ok(merged)
}

/// The file changes that turn `old` into `new` (a commit's `files`), renames among `renames`.
fn changes_between(old: &Tree, new: &Tree, renames: &[(String, String)]) -> Vec<FileChange> {
    diff_trees(old, new, renames)
        .into_iter()
        .map(|entry| {
            let text = entry.new_text.as_deref().unwrap_or_default();
            if entry.deleted_file {
                FileChange::removed(&entry.old_path)
            } else if entry.new_file {
                FileChange::added(&entry.new_path, text)
            } else if entry.renamed_file {
                FileChange::renamed_with(&entry.old_path, &entry.new_path, text)
            } else {
                FileChange::modified(&entry.new_path, text)
            }
        })
        .collect()
}

/// Label names as GitLab lists them: sorted, each once.
fn sorted_labels(labels: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = labels.iter().filter(|l| !l.is_empty()).collect();
    set.into_iter().cloned().collect()
}

fn diff_trees(old: &Tree, new: &Tree, renames: &[(String, String)]) -> Vec<DiffEntry> {
    let entry =
        |old_path: &str, new_path: &str, before: Option<&String>, after: Option<&String>| {
            DiffEntry {
                old_path: old_path.to_owned(),
                new_path: new_path.to_owned(),
                new_file: before.is_none(),
                renamed_file: old_path != new_path,
                deleted_file: after.is_none(),
                old_text: before.cloned(),
                new_text: after.cloned(),
            }
        };
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
        entries.insert(to.clone(), entry(from, to, Some(before), Some(after)));
    }
    for (path, text) in new.iter().filter(|(p, _)| !moved.contains(p.as_str())) {
        match old.get(path) {
            None => entries.insert(path.clone(), entry(path, path, None, Some(text))),
            Some(before) if before != text => {
                entries.insert(path.clone(), entry(path, path, Some(before), Some(text)))
            }
            Some(_) => None,
        };
    }
    for (path, text) in old.iter().filter(|(p, _)| !moved.contains(p.as_str())) {
        if !new.contains_key(path) {
            entries.insert(path.clone(), entry(path, path, Some(text), None));
        }
    }
    entries.into_values().collect()
}

// ---------------------------------------------------------------------------------------------
// Line diffs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// An edit script from `a` to `b` (longest common subsequence of lines; deletions first).
fn line_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a_mid, b_mid) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let (n, m) = (a_mid.len(), b_mid.len());
    let mut ops: Vec<Op> = (0..prefix).map(|i| Op::Same(i, i)).collect();
    if n.saturating_mul(m) > LCS_MAX_CELLS {
        ops.extend((0..n).map(|i| Op::Del(prefix + i)));
        ops.extend((0..m).map(|j| Op::Add(prefix + j)));
    } else {
        let width = m + 1;
        let mut lcs = vec![0u32; (n + 1) * width];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * width + j] = if a_mid[i] == b_mid[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a_mid[i] == b_mid[j] {
                ops.push(Op::Same(prefix + i, prefix + j));
                (i, j) = (i + 1, j + 1);
            } else if i < n && (j == m || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                ops.push(Op::Del(prefix + i));
                i += 1;
            } else {
                ops.push(Op::Add(prefix + j));
                j += 1;
            }
        }
    }
    let (a_tail, b_tail) = (a.len() - suffix, b.len() - suffix);
    ops.extend((0..suffix).map(|k| Op::Same(a_tail + k, b_tail + k)));
    ops
}

/// The hunks of a unified diff (what GitLab's `diff` field holds: no file header), with three
/// lines of context and git's `\ No newline at end of file` markers.
fn unified_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = line_ops(&a, &b);
    let mut hunks: Vec<Range<usize>> = Vec::new();
    for (k, _) in ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
    {
        let start = k.saturating_sub(CONTEXT_LINES);
        let end = (k + CONTEXT_LINES + 1).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.end => last.end = end,
            _ => hunks.push(start..end),
        }
    }
    let counts = |ops: &[Op]| {
        let old = ops.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let new = ops.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        (old, new)
    };
    let range = |before: usize, count: usize| match count {
        0 => format!("{before},0"),
        1 => format!("{}", before + 1),
        _ => format!("{},{count}", before + 1),
    };
    let mut out = String::new();
    for hunk in hunks {
        let (old_before, new_before) = counts(&ops[..hunk.start]);
        let (old_count, new_count) = counts(&ops[hunk.clone()]);
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(old_before, old_count),
            range(new_before, new_count)
        ));
        for op in &ops[hunk] {
            let (mark, text) = match *op {
                Op::Same(i, _) => (' ', a[i]),
                Op::Del(i) => ('-', a[i]),
                Op::Add(j) => ('+', b[j]),
            };
            out.push(mark);
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}

/// Lines added and removed by a diff.
fn diff_stats(diff: &str) -> (usize, usize) {
    let lines = || diff.lines().filter(|l| !l.starts_with("@@"));
    (
        lines().filter(|l| l.starts_with('+')).count(),
        lines().filter(|l| l.starts_with('-')).count(),
    )
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
}

impl Incoming {
    fn parse(request: &Request) -> Incoming {
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_ascii_lowercase(), value)
            })
            .collect();
        let form = headers.iter().any(|(n, v)| {
            n == "content-type" && v.starts_with("application/x-www-form-urlencoded")
        });
        let body = if request.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else if let Ok(value) = serde_json::from_slice::<Value>(&request.body) {
            Some(value)
        } else if form {
            let pairs = url::form_urlencoded::parse(&request.body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            Some(Value::Object(pairs))
        } else {
            Some(Value::String(
                String::from_utf8_lossy(&request.body).into_owned(),
            ))
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

    /// A parameter as Grape sees it: from the body (JSON or form), else the query.
    fn param(&self, name: &str) -> Option<String> {
        let from_body = self
            .body
            .as_ref()
            .and_then(|b| b.get(name))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            });
        from_body.or_else(|| self.query(name).map(str::to_owned))
    }

    /// A list parameter as Grape coerces one: a JSON array, a comma-separated string, or
    /// `name[]` pairs (repeated in the query).
    fn list(&self, name: &str) -> Option<Vec<String>> {
        let item = |value: &Value| match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let split = |text: String| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let bracket = format!("{name}[]");
        let body = self.body.as_ref();
        if let Some(value) = body.and_then(|b| b.get(name)) {
            return Some(match value {
                Value::Array(items) => items.iter().filter_map(item).collect(),
                other => item(other).map(split).unwrap_or_default(),
            });
        }
        if let Some(value) = body.and_then(|b| b.get(&bracket)).and_then(item) {
            return Some(vec![value]);
        }
        let repeated: Vec<String> = self
            .query
            .iter()
            .filter(|(k, _)| *k == bracket)
            .map(|(_, v)| v.clone())
            .collect();
        if !repeated.is_empty() {
            return Some(repeated);
        }
        self.query(name).map(str::to_owned).map(split)
    }

    /// A boolean parameter as Grape reads one.
    fn flag(&self, name: &str) -> bool {
        self.param(name)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "t"))
    }

    fn record(&self, user: Option<String>, status: u16) -> RecordedRequest {
        RecordedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            user,
            status,
        }
    }
}

#[derive(Debug)]
enum Body {
    Json(Value),
    Text(String, &'static str),
}

/// What the fake answers.
struct Reply {
    status: u16,
    body: Option<Body>,
    headers: Vec<(String, String)>,
}

/// Handlers return their reply, or an early error reply through `?`.
type Outcome = Result<Reply, Reply>;

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(Body::Json(body)),
            headers: Vec::new(),
        }
    }

    fn text(status: u16, text: String, content_type: &'static str) -> Reply {
        Reply {
            status,
            body: Some(Body::Text(text, content_type)),
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

    /// GitLab's own errors: `{"message": …}`.
    fn message(status: u16, message: &str) -> Reply {
        Reply::json(status, json!({ "message": message }))
    }

    /// Grape's errors (parameter validation, unknown routes): `{"error": …}`.
    fn grape_error(status: u16, error: &str) -> Reply {
        Reply::json(status, json!({ "error": error }))
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
        match self.body {
            Some(Body::Json(body)) => {
                let bytes = serde_json::to_vec(&body).expect("JSON serializes");
                template.set_body_raw(bytes, "application/json")
            }
            Some(Body::Text(text, content_type)) => {
                template.set_body_raw(text.into_bytes(), content_type)
            }
            None => template,
        }
    }
}

fn unauthorized() -> Reply {
    Reply::message(401, "401 Unauthorized")
}

fn forbidden() -> Reply {
    Reply::message(403, "403 Forbidden")
}

/// `not_found!('Project')` and friends.
fn not_found(what: &str) -> Reply {
    match what {
        "" => Reply::message(404, "404 Not Found"),
        what => Reply::message(404, &format!("404 {what} Not Found")),
    }
}

/// A record `find_by!` did not find (`ActiveRecord::RecordNotFound`).
fn record_not_found() -> Reply {
    Reply::message(404, "404 Not found")
}

/// What the catch-all route answers.
fn no_route() -> Reply {
    Reply::grape_error(404, "404 Not Found")
}

/// One request routed to a handler.
struct Ctx<'a> {
    req: &'a Incoming,
    /// The route template it matched.
    route: &'static str,
    params: BTreeMap<&'static str, String>,
    who: Option<u64>,
}

impl Ctx<'_> {
    fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }

    /// An integer path parameter (validated before dispatch).
    fn int(&self, name: &str) -> u64 {
        self.param(name).parse().unwrap_or(0)
    }

    fn user(&self) -> u64 {
        self.who.expect("an authenticated route")
    }
}

/// The catch-all wiremock responder.
struct Responder {
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let incoming = Incoming::parse(request);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (reply, who) = state.reply(&incoming);
        let user = who.map(|id| state.username(id));
        state.requests.push(incoming.record(user, reply.status));
        let id = state.requests.len();
        reply
            .header("x-request-id", format!("fake-{id:08}"))
            .into_template()
            .set_delay(state.latency)
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// Every route the fake serves, under `/api/v4`; `:name` matches one path segment
/// (percent-decoded, so `%2F` stands for a `/` inside it).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/user"),
    ("GET", "/users"),
    ("GET", "/users/:user_id"),
    ("GET", "/groups/:id"),
    ("GET", "/groups/:id/members"),
    ("GET", "/groups/:id/members/all"),
    ("GET", "/groups/:id/members/:user_id"),
    ("GET", "/groups/:id/members/all/:user_id"),
    ("GET", "/projects/:id"),
    ("GET", "/projects/:id/members"),
    ("GET", "/projects/:id/members/all"),
    ("GET", "/projects/:id/members/:user_id"),
    ("GET", "/projects/:id/members/all/:user_id"),
    ("GET", "/projects/:id/merge_requests"),
    ("POST", "/projects/:id/merge_requests"),
    ("GET", "/projects/:id/merge_requests/:merge_request_iid"),
    ("PUT", "/projects/:id/merge_requests/:merge_request_iid"),
    (
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/changes",
    ),
    (
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/diffs",
    ),
    (
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/commits",
    ),
    (
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/versions",
    ),
    (
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/versions/:version_id",
    ),
    (
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/approvals",
    ),
    (
        "POST",
        "/projects/:id/merge_requests/:merge_request_iid/approve",
    ),
    (
        "POST",
        "/projects/:id/merge_requests/:merge_request_iid/unapprove",
    ),
    ("GET", "/projects/:id/merge_requests/:noteable_id/notes"),
    ("POST", "/projects/:id/merge_requests/:noteable_id/notes"),
    (
        "GET",
        "/projects/:id/merge_requests/:noteable_id/notes/:note_id",
    ),
    (
        "PUT",
        "/projects/:id/merge_requests/:noteable_id/notes/:note_id",
    ),
    (
        "DELETE",
        "/projects/:id/merge_requests/:noteable_id/notes/:note_id",
    ),
    ("GET", "/projects/:id/repository/files/:file_path"),
    ("GET", "/projects/:id/repository/files/:file_path/raw"),
    ("GET", "/projects/:id/repository/tree"),
    ("GET", "/projects/:id/repository/compare"),
    ("POST", "/projects/:id/repository/branches"),
    ("GET", "/projects/:id/repository/branches/:branch"),
    ("GET", "/projects/:id/repository/commits/:sha"),
    ("POST", "/projects/:id/repository/commits/:sha/revert"),
    ("GET", "/projects/:id/repository/commits/:sha/statuses"),
    ("POST", "/projects/:id/statuses/:sha"),
    ("GET", "/projects/:id/issues"),
    ("POST", "/projects/:id/issues"),
    ("GET", "/projects/:id/issues/:issue_iid"),
    ("PUT", "/projects/:id/issues/:issue_iid"),
    ("GET", "/projects/:id/issues/:noteable_id/notes"),
    ("POST", "/projects/:id/issues/:noteable_id/notes"),
    ("GET", "/projects/:id/issues/:noteable_id/notes/:note_id"),
    ("PUT", "/projects/:id/issues/:noteable_id/notes/:note_id"),
    ("DELETE", "/projects/:id/issues/:noteable_id/notes/:note_id"),
];

/// Path parameters Grape declares as integers.
const INTEGER_PARAMS: &[&str] = &[
    "user_id",
    "merge_request_iid",
    "issue_iid",
    "noteable_id",
    "note_id",
    "version_id",
];

/// The most specific route (literal segments outrank parameters, position by position)
/// matching `method` and the segments after `/api/v4`, with its decoded parameters.
fn match_route(
    method: &str,
    parts: &[&str],
) -> Option<(&'static str, BTreeMap<&'static str, String>)> {
    let mut best: Option<(Vec<u8>, &'static str, BTreeMap<&'static str, String>)> = None;
    for (route_method, template) in ROUTES {
        if *route_method != method {
            continue;
        }
        let segments: Vec<&'static str> = template.trim_start_matches('/').split('/').collect();
        if segments.len() != parts.len() {
            continue;
        }
        let mut params = BTreeMap::new();
        let mut rank = Vec::new();
        let matched =
            segments
                .iter()
                .zip(parts)
                .all(|(segment, part)| match segment.strip_prefix(':') {
                    Some(name) if !part.is_empty() => {
                        params.insert(name, percent_decode(part));
                        rank.push(0);
                        true
                    }
                    Some(_) => false,
                    None => {
                        rank.push(1);
                        segment == part
                    }
                });
        if matched && best.as_ref().is_none_or(|(r, _, _)| rank > *r) {
            best = Some((rank, template, params));
        }
    }
    best.map(|(_, template, params)| (template, params))
}

/// Routes that call `authenticate!` (the rest serve public projects anonymously).
fn needs_authentication(method: &str, route: &str) -> bool {
    method != "GET"
        || route == "/user"
        || route.contains("/members")
        || route.contains("/notes")
        || route.contains("/statuses")
}

impl State {
    /// Decides the answer and who asked: injected failures, routing, authentication,
    /// parameter validation, then the handler.
    fn reply(&mut self, req: &Incoming) -> (Reply, Option<u64>) {
        if let Some(injected) = self.take_injection(req) {
            return (injected, None);
        }
        let Some(rest) = req.path.strip_prefix(API_PREFIX) else {
            return (no_route(), None);
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let Some((route, params)) = match_route(&req.method, &parts) else {
            return (no_route(), None);
        };
        let who = match self.authenticate(req) {
            Ok(who) => who,
            Err(refusal) => return (refusal, None),
        };
        if who.is_none() && needs_authentication(&req.method, route) {
            return (unauthorized(), None);
        }
        for (name, value) in &params {
            if INTEGER_PARAMS.contains(name) && value.parse::<u64>().is_err() {
                return (Reply::grape_error(400, &format!("{name} is invalid")), who);
            }
        }
        let ctx = Ctx {
            req,
            route,
            params,
            who,
        };
        let reply = self.dispatch(route, &ctx).unwrap_or_else(|refusal| refusal);
        (reply, who)
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
        let mut reply = match status {
            429 => {
                let reset = Utc::now().timestamp() + retry_after.unwrap_or(60) as i64;
                Reply::text(429, "Retry later\n".to_owned(), "text/plain")
                    .header("ratelimit-name", "throttle_authenticated_api")
                    .header("ratelimit-limit", "2000")
                    .header("ratelimit-observed", "2001")
                    .header("ratelimit-remaining", "0")
                    .header("ratelimit-reset", reset.to_string())
            }
            _ => Reply::message(status, &format!("{status} {}", reason(status))),
        };
        if let Some(seconds) = retry_after {
            reply = reply.header("retry-after", seconds.to_string());
        }
        Some(reply)
    }

    /// The user a request's token names: `PRIVATE-TOKEN`, `Authorization: Bearer`, or the
    /// `private_token`/`access_token` query parameters. `None`: anonymous. An unknown token
    /// is refused, whatever the route.
    fn authenticate(&self, req: &Incoming) -> Result<Option<u64>, Reply> {
        let bearer = req.header("authorization").and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
        let token = req
            .header("private-token")
            .map(str::trim)
            .or(bearer)
            .or_else(|| req.query("private_token"))
            .or_else(|| req.query("access_token"))
            .filter(|t| !t.is_empty());
        match token {
            None => Ok(None),
            Some(token) => self
                .tokens
                .get(token)
                .map(|id| Some(*id))
                .ok_or_else(unauthorized),
        }
    }

    fn dispatch(&mut self, route: &str, ctx: &Ctx) -> Outcome {
        match (ctx.req.method.as_str(), route) {
            ("GET", "/user") => Ok(Reply::json(200, self.user_full_json(ctx.user()))),
            ("GET", "/users") => self.list_users(ctx),
            ("GET", "/users/:user_id") => self.get_user(ctx),
            ("GET", "/groups/:id") => {
                let group = self.find_group(ctx)?;
                Ok(Reply::json(200, self.group_json(group)))
            }
            ("GET", "/groups/:id/members") => self.list_members(ctx, Source::Group, false),
            ("GET", "/groups/:id/members/all") => self.list_members(ctx, Source::Group, true),
            ("GET", "/groups/:id/members/:user_id") => self.get_member(ctx, Source::Group, false),
            ("GET", "/groups/:id/members/all/:user_id") => {
                self.get_member(ctx, Source::Group, true)
            }
            ("GET", "/projects/:id") => {
                let project = self.find_project(ctx)?;
                Ok(Reply::json(200, self.project_json(project, ctx.who)))
            }
            ("GET", "/projects/:id/members") => self.list_members(ctx, Source::Project, false),
            ("GET", "/projects/:id/members/all") => self.list_members(ctx, Source::Project, true),
            ("GET", "/projects/:id/members/:user_id") => {
                self.get_member(ctx, Source::Project, false)
            }
            ("GET", "/projects/:id/members/all/:user_id") => {
                self.get_member(ctx, Source::Project, true)
            }
            ("GET", "/projects/:id/merge_requests") => self.list_mrs(ctx),
            ("POST", "/projects/:id/merge_requests") => self.create_mr(ctx),
            ("GET", "/projects/:id/merge_requests/:merge_request_iid") => {
                let (project, mr) = self.find_mr(ctx)?;
                let mr = self.project(project).mr(mr);
                Ok(Reply::json(200, self.mr_json(project, mr, ctx.who)))
            }
            ("PUT", "/projects/:id/merge_requests/:merge_request_iid") => self.edit_mr(ctx),
            ("GET", "/projects/:id/merge_requests/:merge_request_iid/changes") => {
                self.mr_changes(ctx)
            }
            ("GET", "/projects/:id/merge_requests/:merge_request_iid/diffs") => self.mr_diffs(ctx),
            ("GET", "/projects/:id/merge_requests/:merge_request_iid/commits") => {
                self.mr_commits(ctx)
            }
            ("GET", "/projects/:id/merge_requests/:merge_request_iid/versions") => {
                self.mr_versions(ctx)
            }
            ("GET", "/projects/:id/merge_requests/:merge_request_iid/versions/:version_id") => {
                self.mr_version(ctx)
            }
            ("GET", "/projects/:id/merge_requests/:merge_request_iid/approvals") => {
                let (project, mr) = self.find_mr(ctx)?;
                let mr = self.project(project).mr(mr);
                Ok(Reply::json(200, self.approvals_json(project, mr, ctx.who)))
            }
            ("POST", "/projects/:id/merge_requests/:merge_request_iid/approve") => {
                self.approve(ctx)
            }
            ("POST", "/projects/:id/merge_requests/:merge_request_iid/unapprove") => {
                self.unapprove(ctx)
            }
            (
                "GET",
                "/projects/:id/merge_requests/:noteable_id/notes"
                | "/projects/:id/issues/:noteable_id/notes",
            ) => self.list_notes(ctx),
            (
                "POST",
                "/projects/:id/merge_requests/:noteable_id/notes"
                | "/projects/:id/issues/:noteable_id/notes",
            ) => self.create_note(ctx),
            (
                "GET",
                "/projects/:id/merge_requests/:noteable_id/notes/:note_id"
                | "/projects/:id/issues/:noteable_id/notes/:note_id",
            ) => self.get_note(ctx),
            (
                "PUT",
                "/projects/:id/merge_requests/:noteable_id/notes/:note_id"
                | "/projects/:id/issues/:noteable_id/notes/:note_id",
            ) => self.update_note(ctx),
            (
                "DELETE",
                "/projects/:id/merge_requests/:noteable_id/notes/:note_id"
                | "/projects/:id/issues/:noteable_id/notes/:note_id",
            ) => self.delete_note(ctx),
            ("GET", "/projects/:id/issues") => self.list_issues(ctx),
            ("POST", "/projects/:id/issues") => self.create_issue(ctx),
            ("GET", "/projects/:id/issues/:issue_iid") => {
                let (project, iid) = self.find_issue(ctx)?;
                Ok(Reply::json(200, self.issue_json(project, iid, ctx.who)))
            }
            ("PUT", "/projects/:id/issues/:issue_iid") => self.update_issue(ctx),
            ("GET", "/projects/:id/repository/files/:file_path") => self.get_file(ctx, false),
            ("GET", "/projects/:id/repository/files/:file_path/raw") => self.get_file(ctx, true),
            ("GET", "/projects/:id/repository/tree") => self.get_tree(ctx),
            ("GET", "/projects/:id/repository/compare") => self.compare(ctx),
            ("POST", "/projects/:id/repository/branches") => self.create_branch(ctx),
            ("GET", "/projects/:id/repository/branches/:branch") => self.get_branch(ctx),
            ("GET", "/projects/:id/repository/commits/:sha") => self.get_commit(ctx),
            ("POST", "/projects/:id/repository/commits/:sha/revert") => self.revert(ctx),
            ("GET", "/projects/:id/repository/commits/:sha/statuses") => self.list_statuses(ctx),
            ("POST", "/projects/:id/statuses/:sha") => self.create_status(ctx),
            _ => Err(no_route()),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
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
// Pagination
// ---------------------------------------------------------------------------------------------

/// One page of a list: which items, and GitLab's offset pagination headers.
struct Page {
    range: Range<usize>,
    headers: Vec<(String, String)>,
}

impl Page {
    fn reply(self, body: Value) -> Reply {
        let mut reply = Reply::json(200, body);
        reply.headers.extend(self.headers);
        reply
    }
}

/// The page `page` (default 1) of `per_page` (default 20, at most 100) items out of `total`,
/// with the headers GitLab's `OffsetHeaderBuilder` writes: `x-per-page`, `x-page`,
/// `x-next-page`, `x-prev-page` (empty when there is none), `link` (`prev`, `next`, then
/// always `first` and `last`, each keeping the request's other parameters, sorted),
/// `x-total` and `x-total-pages`.
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
    let total_pages = total.div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(total);
    let range = start..(start + per_page).min(total);
    let in_range = page <= total_pages;
    let next = (in_range && page < total_pages).then_some(page + 1);
    let prev = (in_range && page > 1).then_some(page - 1);
    let link_to = |n: usize| {
        let mut pairs: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .cloned()
            .collect();
        pairs.push(("page".to_owned(), n.to_string()));
        pairs.push(("per_page".to_owned(), per_page.to_string()));
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{base}{}?{query}", req.path)
    };
    let mut links = Vec::new();
    if let Some(p) = prev {
        links.push(format!("<{}>; rel=\"prev\"", link_to(p)));
    }
    if let Some(n) = next {
        links.push(format!("<{}>; rel=\"next\"", link_to(n)));
    }
    links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    links.push(format!("<{}>; rel=\"last\"", link_to(total_pages)));
    let text = |n: Option<usize>| n.map_or_else(String::new, |n| n.to_string());
    let headers = vec![
        ("x-per-page".to_owned(), per_page.to_string()),
        ("x-page".to_owned(), page.to_string()),
        ("x-next-page".to_owned(), text(next)),
        ("x-prev-page".to_owned(), text(prev)),
        ("link".to_owned(), links.join(", ")),
        ("x-total".to_owned(), total.to_string()),
        ("x-total-pages".to_owned(), total_pages.to_string()),
    ];
    Page { range, headers }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Whose members a route lists.
#[derive(Clone, Copy)]
enum Source {
    Group,
    Project,
}

// --- users, groups and members -----------------------------------------------------------------

impl State {
    fn list_users(&self, ctx: &Ctx) -> Outcome {
        let username = ctx.req.param("username");
        let search = ctx.req.param("search").map(|s| s.to_lowercase());
        let users: Vec<&User> = self
            .users
            .values()
            .filter(|u| {
                username
                    .as_ref()
                    .is_none_or(|n| u.username.eq_ignore_ascii_case(n))
            })
            .filter(|u| {
                search.as_ref().is_none_or(|s| {
                    u.username.to_lowercase().contains(s) || u.name.to_lowercase().contains(s)
                })
            })
            .collect();
        let page = page_of(&self.base_url, ctx.req, users.len());
        let items = users[page.range.clone()]
            .iter()
            .map(|u| self.user_json(u.id))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn get_user(&self, ctx: &Ctx) -> Outcome {
        let id = ctx.int("user_id");
        if !self.users.contains_key(&id) {
            return Err(not_found("User"));
        }
        let mut user = self.user_json(id);
        let created = self.users[&id].created_at;
        merge(
            &mut user,
            json!({ "created_at": ts(created), "bio": "", "bot": self.users[&id].bot }),
        );
        Ok(Reply::json(200, user))
    }

    fn find_group(&self, ctx: &Ctx) -> Result<u64, Reply> {
        let id = ctx.param("id");
        let group = match id.parse::<u64>() {
            Ok(n) => self.groups.contains_key(&n).then_some(n),
            Err(_) => self.group_by_path(id),
        };
        group
            .filter(|_| ctx.who.is_some())
            .ok_or_else(|| not_found("Group"))
    }

    /// The members a route lists: direct ones, or everyone with an effective membership.
    fn members_of(&self, source: Source, id: u64, all: bool) -> Vec<(u64, Membership)> {
        match (source, all) {
            (Source::Group, false) => self.groups[&id]
                .members
                .iter()
                .map(|(u, m)| (*u, *m))
                .collect(),
            (Source::Project, false) => self
                .project(id)
                .members
                .iter()
                .map(|(u, m)| (*u, *m))
                .collect(),
            (Source::Group, true) => self
                .users
                .keys()
                .filter_map(|u| Some((*u, self.group_membership(id, *u)?)))
                .collect(),
            (Source::Project, true) => self
                .users
                .keys()
                .filter_map(|u| Some((*u, self.project_membership(id, *u)?)))
                .collect(),
        }
    }

    fn find_source(&self, ctx: &Ctx, source: Source) -> Result<u64, Reply> {
        match source {
            Source::Group => self.find_group(ctx),
            Source::Project => self.find_project(ctx),
        }
    }

    fn list_members(&self, ctx: &Ctx, source: Source, all: bool) -> Outcome {
        let id = self.find_source(ctx, source)?;
        let query = ctx.req.param("query").map(|q| q.to_lowercase());
        let user_ids: Option<Vec<u64>> = ctx.req.param("user_ids").map(|ids| {
            ids.split(',')
                .filter_map(|i| i.trim().parse().ok())
                .collect()
        });
        let members: Vec<(u64, Membership)> = self
            .members_of(source, id, all)
            .into_iter()
            .filter(|(u, _)| {
                let user = &self.users[u];
                query.as_ref().is_none_or(|q| {
                    user.username.to_lowercase().contains(q) || user.name.to_lowercase().contains(q)
                })
            })
            .filter(|(u, _)| user_ids.as_ref().is_none_or(|ids| ids.contains(u)))
            .collect();
        let page = page_of(&self.base_url, ctx.req, members.len());
        let items = members[page.range.clone()]
            .iter()
            .map(|(u, m)| self.member_json(*u, *m))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn get_member(&self, ctx: &Ctx, source: Source, all: bool) -> Outcome {
        let id = self.find_source(ctx, source)?;
        let user = ctx.int("user_id");
        let membership = match (source, all) {
            (Source::Group, false) => self.groups[&id].members.get(&user).copied(),
            (Source::Project, false) => self.project(id).members.get(&user).copied(),
            (Source::Group, true) => self.group_membership(id, user),
            (Source::Project, true) => self.project_membership(id, user),
        };
        let membership = membership
            .filter(|_| self.users.contains_key(&user))
            .ok_or_else(record_not_found)?;
        Ok(Reply::json(200, self.member_json(user, membership)))
    }
}

// --- projects and merge requests -------------------------------------------------------------

impl State {
    /// The project named by `:id` (numeric or URL-encoded path), if `who` may see it.
    fn find_project(&self, ctx: &Ctx) -> Result<u64, Reply> {
        let id = ctx.param("id");
        let project = match id.parse::<u64>() {
            Ok(n) => self.projects.contains_key(&n).then_some(n),
            Err(_) => self.find_project_by_path(id),
        };
        project
            .filter(|p| self.can_see_project(*p, ctx.who))
            .ok_or_else(|| not_found("Project"))
    }

    /// The project, if `who` may read its repository.
    fn find_code(&self, ctx: &Ctx) -> Result<u64, Reply> {
        let project = self.find_project(ctx)?;
        match self.can_read_code(project, ctx.who) {
            true => Ok(project),
            false => Err(forbidden()),
        }
    }

    /// (project, iid) of `:merge_request_iid`, which `who` may read.
    fn find_mr(&self, ctx: &Ctx) -> Result<(u64, u64), Reply> {
        let project = self.find_project(ctx)?;
        let iid = ctx.int("merge_request_iid");
        let readable = self.can_read_code(project, ctx.who);
        match readable && self.project(project).mrs.contains_key(&iid) {
            true => Ok((project, iid)),
            false => Err(record_not_found()),
        }
    }

    /// The project and what the notes routes' `:noteable_id` names (`not_found!` of its
    /// type when `who` may not read it).
    fn find_noteable(&self, ctx: &Ctx) -> Result<(u64, Noteable), Reply> {
        let project = self.find_project(ctx)?;
        let iid = ctx.int("noteable_id");
        let (noteable, readable) = match ctx.route.contains("/issues/") {
            true => (Noteable::Issue(iid), self.can_see_project(project, ctx.who)),
            false => (Noteable::Mr(iid), self.can_read_code(project, ctx.who)),
        };
        match readable && self.project(project).has(noteable) {
            true => Ok((project, noteable)),
            false => Err(not_found(noteable.type_name())),
        }
    }

    /// (project, iid) of `:issue_iid`, which `who` may read.
    fn find_issue(&self, ctx: &Ctx) -> Result<(u64, u64), Reply> {
        let project = self.find_project(ctx)?;
        let iid = ctx.int("issue_iid");
        match self.project(project).issues.contains_key(&iid) {
            true => Ok((project, iid)),
            false => Err(record_not_found()),
        }
    }

    fn list_mrs(&self, ctx: &Ctx) -> Outcome {
        let project = self.find_code(ctx)?;
        let q = |name: &str| ctx.req.param(name);
        let wanted = q("state").unwrap_or_else(|| "all".to_owned());
        if !["opened", "closed", "locked", "merged", "all"].contains(&wanted.as_str()) {
            return Err(Reply::grape_error(400, "state does not have a valid value"));
        }
        let labels: Vec<String> = q("labels")
            .map(|l| l.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default();
        let author = q("author_username");
        let mut mrs: Vec<&MergeRequest> = self
            .project(project)
            .mrs
            .values()
            .filter(|mr| wanted == "all" || mr.state == wanted)
            .filter(|mr| q("source_branch").is_none_or(|b| b == mr.source_branch))
            .filter(|mr| q("target_branch").is_none_or(|b| b == mr.target_branch))
            .filter(|mr| labels.iter().all(|l| mr.labels.contains(l)))
            .filter(|mr| {
                author
                    .as_ref()
                    .is_none_or(|a| self.username(mr.author).eq_ignore_ascii_case(a))
            })
            .collect();
        let by_updated = q("order_by").as_deref() == Some("updated_at");
        mrs.sort_by_key(|mr| {
            (
                if by_updated {
                    mr.updated_at
                } else {
                    mr.created_at
                },
                mr.id,
            )
        });
        if q("sort").as_deref() != Some("asc") {
            mrs.reverse();
        }
        let page = page_of(&self.base_url, ctx.req, mrs.len());
        let items = mrs[page.range.clone()]
            .iter()
            .map(|mr| self.mr_json(project, mr, ctx.who))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    /// `POST /projects/:id/merge_requests` within one project: version 1 is the source
    /// branch's tip against the target's, now.
    fn create_mr(&mut self, ctx: &Ctx) -> Outcome {
        let project = self.find_project(ctx)?;
        let [source, target, title] =
            required_params(ctx.req, ["source_branch", "target_branch", "title"])?;
        if self.level(project, ctx.who) < DEVELOPER {
            return Err(forbidden());
        }
        self.check_new_mr(project, &source, &target)?;
        check_title(&title)?;
        let labels = ctx.req.list("labels").unwrap_or_default();
        let (id, version_id, now) = (self.new_id(), self.new_id(), self.stamp());
        let p = self.project_mut(project);
        let iid = p.next_mr_iid();
        let head = p.repo.branches[&source].clone();
        let version = p.repo.version(&target, &head, version_id, now);
        let mr = MergeRequest {
            id,
            iid,
            title,
            description: ctx.req.param("description"),
            author: ctx.user(),
            source_branch: source,
            target_branch: target,
            labels: sorted_labels(&labels),
            state: "opened",
            created_at: now,
            updated_at: now,
            merged_at: None,
            merged_by: None,
            merge_commit_sha: None,
            closed_at: None,
            closed_by: None,
            versions: vec![version],
            approvals: Vec::new(),
            notes: Vec::new(),
        };
        p.mrs.insert(iid, mr);
        let mr = self.project(project).mr(iid);
        Ok(Reply::json(201, self.mr_json(project, mr, ctx.who)))
    }

    /// `MergeRequest#validate_branches` and the build service's checks: two different,
    /// existing branches, and no open merge request between them yet.
    fn check_new_mr(&self, project: u64, source: &str, target: &str) -> Result<(), Reply> {
        let refuse =
            |status: u16, message: String| Reply::json(status, json!({ "message": [message] }));
        if source == target {
            let message = "You can't use same project/branch for source and target";
            return Err(refuse(422, message.to_owned()));
        }
        let p = self.project(project);
        let open = p.mrs.values().find(|mr| {
            mr.state == "opened" && mr.source_branch == source && mr.target_branch == target
        });
        if let Some(other) = open {
            let message = format!(
                "Another open merge request already exists for this source branch: !{}",
                other.iid
            );
            return Err(refuse(409, message));
        }
        for (side, branch) in [("Source", source), ("Target", target)] {
            if !p.repo.branches.contains_key(branch) {
                return Err(refuse(
                    422,
                    format!("{side} branch \"{branch}\" does not exist"),
                ));
            }
        }
        Ok(())
    }

    fn mr_changes(&self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let p = self.project(project);
        let mr = p.mr(iid);
        let version = mr.latest();
        let changes: Vec<Value> = p
            .repo
            .diff(&version.base, &version.head)
            .iter()
            .map(diff_json)
            .collect();
        let mut body = self.mr_json(project, mr, ctx.who);
        merge(&mut body, json!({ "changes": changes, "overflow": false }));
        Ok(Reply::json(200, body))
    }

    fn mr_diffs(&self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let p = self.project(project);
        let version = p.mr(iid).latest();
        let diffs = p.repo.diff(&version.base, &version.head);
        let page = page_of(&self.base_url, ctx.req, diffs.len());
        let items = diffs[page.range.clone()].iter().map(diff_json).collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn mr_commits(&self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let p = self.project(project);
        let version = p.mr(iid).latest();
        let mut commits = p.repo.commits_between(&version.base, &version.head);
        commits.reverse();
        let page = page_of(&self.base_url, ctx.req, commits.len());
        let items = commits[page.range.clone()]
            .iter()
            .map(|sha| self.commit_json(project, sha, false))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn mr_versions(&self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let mr = self.project(project).mr(iid);
        let versions: Vec<&Version> = mr.versions.iter().rev().collect();
        let page = page_of(&self.base_url, ctx.req, versions.len());
        let items = versions[page.range.clone()]
            .iter()
            .map(|v| self.version_json(project, mr, v))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn mr_version(&self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let p = self.project(project);
        let mr = p.mr(iid);
        let version = mr
            .versions
            .iter()
            .find(|v| v.id == ctx.int("version_id"))
            .ok_or_else(record_not_found)?;
        let mut commits = p.repo.commits_between(&version.base, &version.head);
        commits.reverse();
        let commits: Vec<Value> = commits
            .iter()
            .map(|sha| self.commit_json(project, sha, false))
            .collect();
        let diffs: Vec<Value> = p
            .repo
            .diff(&version.base, &version.head)
            .iter()
            .map(diff_json)
            .collect();
        let mut body = self.version_json(project, mr, version);
        merge(&mut body, json!({ "commits": commits, "diffs": diffs }));
        Ok(Reply::json(200, body))
    }
}

// --- approvals ---------------------------------------------------------------------------------

impl State {
    /// `approve_merge_request`: the author, or a developer and above.
    fn may_approve(&self, project: u64, mr: &MergeRequest, user: u64) -> bool {
        mr.author == user || self.level(project, Some(user)) >= DEVELOPER
    }

    /// Whether an approval by `user` would be accepted now.
    fn approval_allowed(&self, project: u64, mr: &MergeRequest, user: u64) -> bool {
        let settings = self.project(project).approval_settings;
        self.may_approve(project, mr, user)
            && !mr.approved_by(user)
            && (mr.author != user || settings.author_can_approve)
    }

    fn approve(&mut self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let user = ctx.user();
        let mr = self.project(project).mr(iid);
        if !self.may_approve(project, mr, user) {
            return Err(forbidden());
        }
        if let Some(sha) = ctx.req.param("sha")
            && sha != mr.head()
        {
            let message = format!("SHA does not match HEAD of source branch: {}", mr.head());
            return Err(Reply::message(409, &message));
        }
        if !self.approval_allowed(project, mr, user) {
            return Err(unauthorized());
        }
        self.add_approval(project, iid, user);
        let mr = self.project(project).mr(iid);
        Ok(Reply::json(201, self.approvals_json(project, mr, ctx.who)))
    }

    fn unapprove(&mut self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let user = ctx.user();
        if !self.may_approve(project, self.project(project).mr(iid), user) {
            return Err(forbidden());
        }
        if !self.remove_approval(project, iid, user) {
            return Err(not_found(""));
        }
        let mr = self.project(project).mr(iid);
        Ok(Reply::json(201, self.approvals_json(project, mr, ctx.who)))
    }
}

// --- notes -------------------------------------------------------------------------------------

impl State {
    fn list_notes(&self, ctx: &Ctx) -> Outcome {
        let (project, noteable) = self.find_noteable(ctx)?;
        let q = |name: &str| ctx.req.param(name);
        let sort = q("sort").unwrap_or_else(|| "desc".to_owned());
        let order_by = q("order_by").unwrap_or_else(|| "created_at".to_owned());
        let filter = q("activity_filter").unwrap_or_else(|| "all_notes".to_owned());
        for (name, value, allowed) in [
            ("sort", &sort, &["asc", "desc"][..]),
            ("order_by", &order_by, &["created_at", "updated_at"][..]),
            (
                "activity_filter",
                &filter,
                &["all_notes", "only_comments", "only_activity"][..],
            ),
        ] {
            if !allowed.contains(&value.as_str()) {
                let error = format!("{name} does not have a valid value");
                return Err(Reply::grape_error(400, &error));
            }
        }
        let mut notes: Vec<&Note> = self
            .project(project)
            .notes(noteable)
            .iter()
            .filter(|n| match filter.as_str() {
                "only_comments" => !n.system,
                "only_activity" => n.system,
                _ => true,
            })
            .collect();
        notes.sort_by_key(|n| {
            let at = match order_by.as_str() {
                "updated_at" => n.updated_at,
                _ => n.created_at,
            };
            (at, n.id)
        });
        if sort == "desc" {
            notes.reverse();
        }
        let page = page_of(&self.base_url, ctx.req, notes.len());
        let items = notes[page.range.clone()]
            .iter()
            .map(|n| self.note_json(project, noteable, n))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    /// A note as the API answers it.
    fn note_reply(&self, status: u16, project: u64, noteable: Noteable, id: u64) -> Reply {
        let notes = self.project(project).notes(noteable);
        let note = notes.iter().find(|n| n.id == id).expect("a known note");
        Reply::json(status, self.note_json(project, noteable, note))
    }

    fn get_note(&self, ctx: &Ctx) -> Outcome {
        let (project, noteable) = self.find_noteable(ctx)?;
        let id = ctx.int("note_id");
        let notes = self.project(project).notes(noteable);
        if !notes.iter().any(|n| n.id == id) {
            return Err(record_not_found());
        }
        Ok(self.note_reply(200, project, noteable, id))
    }

    fn create_note(&mut self, ctx: &Ctx) -> Outcome {
        let (project, noteable) = self.find_noteable(ctx)?;
        let body = ctx
            .req
            .param("body")
            .ok_or_else(|| Reply::grape_error(400, "body is missing"))?;
        check_note_body(&body)?;
        let id = self.add_note(project, noteable, ctx.user(), &body, false);
        Ok(self.note_reply(201, project, noteable, id))
    }

    /// The note `:note_id`, if `who` may change it (its author, or a maintainer; never a
    /// system note).
    fn editable_note(&self, ctx: &Ctx) -> Result<(u64, Noteable, u64), Reply> {
        let (project, noteable) = self.find_noteable(ctx)?;
        let id = ctx.int("note_id");
        let note = self
            .project(project)
            .notes(noteable)
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(record_not_found)?;
        let user = ctx.user();
        let allowed = note.author == user || self.level(project, Some(user)) >= MAINTAINER;
        match allowed && !note.system {
            true => Ok((project, noteable, id)),
            false => Err(forbidden()),
        }
    }

    fn update_note(&mut self, ctx: &Ctx) -> Outcome {
        let (project, noteable, id) = self.editable_note(ctx)?;
        if let Some(body) = ctx.req.param("body") {
            if body.trim().is_empty() {
                return Err(Reply::grape_error(400, "body is empty"));
            }
            check_note_body(&body)?;
            let now = self.clock;
            let note = self
                .project_mut(project)
                .notes_mut(noteable)
                .iter_mut()
                .find(|n| n.id == id)
                .expect("found above");
            if note.body != body {
                note.body = body;
                note.updated_at = now;
                self.stamp();
            }
        }
        Ok(self.note_reply(200, project, noteable, id))
    }

    fn delete_note(&mut self, ctx: &Ctx) -> Outcome {
        let (project, noteable, id) = self.editable_note(ctx)?;
        self.project_mut(project)
            .notes_mut(noteable)
            .retain(|n| n.id != id);
        Ok(Reply::empty(204))
    }
}

fn check_note_body(body: &str) -> Result<(), Reply> {
    let problem = if body.trim().is_empty() {
        "can't be blank".to_owned()
    } else if body.chars().count() > NOTE_MAX_CHARS {
        format!("is too long (maximum is {NOTE_MAX_CHARS} characters)")
    } else {
        return Ok(());
    };
    let message = format!("400 Bad request - Note {{:note=>[\"{problem}\"]}}");
    Err(Reply::message(400, &message))
}

// --- issues ------------------------------------------------------------------------------------

/// The fields `PUT …/issues/:issue_iid` reads, one of which it requires (Grape's
/// `at_least_one_of`).
const ISSUE_UPDATE_FIELDS: &[&str] = &[
    "add_labels",
    "assignee_id",
    "assignee_ids",
    "description",
    "labels",
    "remove_labels",
    "state_event",
    "title",
];

impl State {
    fn list_issues(&self, ctx: &Ctx) -> Outcome {
        let project = self.find_project(ctx)?;
        let q = |name: &str| ctx.req.param(name);
        let wanted = q("state").unwrap_or_else(|| "all".to_owned());
        if !["opened", "closed", "all"].contains(&wanted.as_str()) {
            return Err(Reply::grape_error(400, "state does not have a valid value"));
        }
        let labels = ctx.req.list("labels").unwrap_or_default();
        let iids = ctx.req.list("iids");
        let search = q("search").map(|s| s.to_lowercase());
        let author = q("author_username");
        let author_id = q("author_id");
        let mut issues: Vec<&Issue> = self
            .project(project)
            .issues
            .values()
            .filter(|i| wanted == "all" || i.state == wanted)
            .filter(|i| labels.iter().all(|l| i.labels.contains(l)))
            .filter(|i| {
                iids.as_ref()
                    .is_none_or(|iids| iids.contains(&i.iid.to_string()))
            })
            .filter(|i| {
                search.as_ref().is_none_or(|s| {
                    let description = i.description.as_deref().unwrap_or_default();
                    i.title.to_lowercase().contains(s) || description.to_lowercase().contains(s)
                })
            })
            .filter(|i| {
                author
                    .as_ref()
                    .is_none_or(|a| self.username(i.author).eq_ignore_ascii_case(a))
            })
            .filter(|i| {
                author_id
                    .as_ref()
                    .is_none_or(|a| *a == i.author.to_string())
            })
            .collect();
        let by_updated = q("order_by").as_deref() == Some("updated_at");
        issues.sort_by_key(|i| {
            (
                if by_updated {
                    i.updated_at
                } else {
                    i.created_at
                },
                i.id,
            )
        });
        if q("sort").as_deref() != Some("asc") {
            issues.reverse();
        }
        let page = page_of(&self.base_url, ctx.req, issues.len());
        let items = issues[page.range.clone()]
            .iter()
            .map(|i| self.issue_json(project, i.iid, ctx.who))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    /// The assignees a request names (`assignee_ids`, or `assignee_id`): unknown users, and
    /// users who cannot see the project, are dropped as GitLab drops them.
    fn assignees_param(&self, project: u64, req: &Incoming) -> Result<Option<Vec<u64>>, Reply> {
        let (name, ids) = match (req.list("assignee_ids"), req.param("assignee_id")) {
            (Some(ids), _) => ("assignee_ids", ids),
            (None, Some(id)) => ("assignee_id", vec![id]),
            (None, None) => return Ok(None),
        };
        let mut kept = Vec::new();
        for id in ids {
            let id: u64 = id
                .parse()
                .map_err(|_| Reply::grape_error(400, &format!("{name} is invalid")))?;
            let known = self.users.contains_key(&id) && self.can_see_project(project, Some(id));
            if known && !kept.contains(&id) {
                kept.push(id);
            }
        }
        Ok(Some(kept))
    }

    fn create_issue(&mut self, ctx: &Ctx) -> Outcome {
        let project = self.find_project(ctx)?;
        let [title] = required_params(ctx.req, ["title"])?;
        check_title(&title)?;
        let labels = ctx.req.list("labels").unwrap_or_default();
        let assignees = self.assignees_param(project, ctx.req)?.unwrap_or_default();
        let description = ctx.req.param("description");
        let labels = sorted_labels(&labels);
        let iid = self.add_issue(project, ctx.user(), &title, description, labels, assignees);
        Ok(Reply::json(201, self.issue_json(project, iid, ctx.who)))
    }

    /// `Issues::UpdateService`: its author, an assignee or a reporter (and above) edits it;
    /// `labels` replaces the labels, then `add_labels` and `remove_labels` apply.
    fn update_issue(&mut self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_issue(ctx)?;
        let req = ctx.req;
        check_update_fields(req, ISSUE_UPDATE_FIELDS)?;
        let event = check_state_event(req)?;
        let user = ctx.user();
        let issue = self.project(project).issue(iid);
        let allowed = issue.author == user
            || issue.assignees.contains(&user)
            || self.level(project, Some(user)) >= REPORTER;
        if !allowed {
            return Err(forbidden());
        }
        let title = req.param("title");
        if let Some(title) = &title {
            check_title(title)?;
        }
        let assignees = self.assignees_param(project, req)?;
        let now = self.stamp();
        let issue = self.project_mut(project).issue_mut(iid);
        issue.labels = edited_labels(&issue.labels, req);
        if let Some(title) = title {
            issue.title = title;
        }
        if let Some(assignees) = assignees {
            issue.assignees = assignees;
        }
        let description = req.param("description");
        let described = description.is_some() && description != issue.description;
        if described {
            issue.description = description;
        }
        issue.updated_at = now;
        if described {
            let note = "changed the description";
            self.add_note(project, Noteable::Issue(iid), user, note, true);
        }
        if let Some(event) = event {
            self.set_issue_state(project, iid, user, &event);
        }
        Ok(Reply::json(200, self.issue_json(project, iid, ctx.who)))
    }
}

/// `PUT …/merge_requests/:merge_request_iid` reads these, and requires one.
const MR_UPDATE_FIELDS: &[&str] = &[
    "add_labels",
    "description",
    "labels",
    "remove_labels",
    "state_event",
    "title",
];

impl State {
    /// `MergeRequests::UpdateService`, for what the fake keeps: its author or a developer (and
    /// above) edits it; labels as on issues; `state_event` does nothing to a merged one.
    fn edit_mr(&mut self, ctx: &Ctx) -> Outcome {
        let (project, iid) = self.find_mr(ctx)?;
        let req = ctx.req;
        check_update_fields(req, MR_UPDATE_FIELDS)?;
        let event = check_state_event(req)?;
        let user = ctx.user();
        let mr = self.project(project).mr(iid);
        if mr.author != user && self.level(project, Some(user)) < DEVELOPER {
            return Err(forbidden());
        }
        let title = req.param("title");
        if let Some(title) = &title {
            check_title(title)?;
        }
        let path = self.project(project).path_with_namespace.clone();
        self.update_mr(&path, iid, None, |mr| {
            mr.labels = edited_labels(&mr.labels, req);
            if let Some(title) = title {
                mr.title = title;
            }
            None
        });
        let description = req.param("description");
        if description.is_some() && description != self.project(project).mr(iid).description {
            self.update_mr(&path, iid, Some(user), |mr| {
                mr.description = description;
                Some("changed the description".to_owned())
            });
        }
        let to = match (event.as_deref(), self.project(project).mr(iid).state) {
            (Some("close"), "opened") => Some("closed"),
            (Some("reopen"), "closed") => Some("opened"),
            _ => None,
        };
        if let Some(to) = to {
            let now = self.clock;
            self.update_mr(&path, iid, Some(user), |mr| {
                let closed = to == "closed";
                mr.state = to;
                mr.closed_at = closed.then_some(now);
                mr.closed_by = closed.then_some(user);
                Some(if closed { "closed" } else { "reopened" }.to_owned())
            });
        }
        let mr = self.project(project).mr(iid);
        Ok(Reply::json(200, self.mr_json(project, mr, ctx.who)))
    }
}

/// Grape's `at_least_one_of`: a 400 naming them all when none of `fields` is given.
fn check_update_fields(req: &Incoming, fields: &[&str]) -> Result<(), Reply> {
    if fields
        .iter()
        .any(|f| req.param(f).is_some() || req.list(f).is_some())
    {
        return Ok(());
    }
    let error = format!(
        "{} are missing, at least one parameter must be provided",
        fields.join(", ")
    );
    Err(Reply::grape_error(400, &error))
}

/// The `state_event` of an update: `close`, `reopen` or none.
fn check_state_event(req: &Incoming) -> Result<Option<String>, Reply> {
    match req.param("state_event") {
        Some(e) if e != "close" && e != "reopen" => Err(Reply::grape_error(
            400,
            "state_event does not have a valid value",
        )),
        event => Ok(event),
    }
}

/// Labels after an update: `labels` replaces `current`, then `add_labels` and
/// `remove_labels` apply.
fn edited_labels(current: &[String], req: &Incoming) -> Vec<String> {
    let mut labels = req.list("labels").unwrap_or_else(|| current.to_vec());
    labels.extend(req.list("add_labels").unwrap_or_default());
    let removed = req.list("remove_labels").unwrap_or_default();
    labels.retain(|l| !removed.contains(l));
    sorted_labels(&labels)
}

/// An issue's or merge request's title, as the model validates it.
fn check_title(title: &str) -> Result<(), Reply> {
    let problem = if title.trim().is_empty() {
        "can't be blank".to_owned()
    } else if title.chars().count() > TITLE_MAX_CHARS {
        format!("is too long (maximum is {TITLE_MAX_CHARS} characters)")
    } else {
        return Ok(());
    };
    Err(Reply::json(
        400,
        json!({ "message": { "title": [problem] } }),
    ))
}

// --- repository --------------------------------------------------------------------------------

impl State {
    fn get_file(&self, ctx: &Ctx, raw: bool) -> Outcome {
        let project = self.find_code(ctx)?;
        let path = ctx.param("file_path");
        let path = if raw {
            path.trim_start_matches('/')
        } else {
            path
        };
        if path.is_empty() || path.split('/').any(|part| part == "..") {
            return Err(Reply::grape_error(
                400,
                "file_path should be a valid file path",
            ));
        }
        let repo = &self.project(project).repo;
        let reference = match ctx.req.param("ref") {
            Some(r) if r.is_empty() => return Err(Reply::grape_error(400, "ref is empty")),
            Some(r) => r,
            None if raw => String::new(),
            None => return Err(Reply::grape_error(400, "ref is missing")),
        };
        let lookup = match reference.as_str() {
            "" => repo.default_branch.as_str(),
            other => other,
        };
        let sha = repo.resolve(lookup).ok_or_else(|| not_found("Commit"))?;
        let tree = repo.tree_at(&sha).unwrap_or_default();
        let text = tree.get(path).ok_or_else(|| not_found("File"))?;
        let content_sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        let data = [
            (
                "file_name",
                path.rsplit('/').next().unwrap_or(path).to_owned(),
            ),
            ("file_path", path.to_owned()),
            ("size", text.len().to_string()),
            ("encoding", "base64".to_owned()),
            ("content_sha256", content_sha256),
            ("ref", reference.clone()),
            ("blob_id", blob_sha(text)),
            ("commit_id", sha.clone()),
            ("last_commit_id", last_commit_for(repo, &sha, path)),
            ("execute_filemode", "false".to_owned()),
        ];
        let mut reply = if raw {
            Reply::text(200, text.clone(), "text/plain; charset=utf-8")
                .header("cache-control", "no-cache")
        } else {
            let mut body = serde_json::Map::new();
            for (key, value) in &data {
                let value = match *key {
                    "size" => json!(text.len()),
                    "execute_filemode" => json!(false),
                    _ => json!(value),
                };
                body.insert((*key).to_owned(), value);
            }
            let content = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            body.insert("content".to_owned(), json!(content));
            Reply::json(200, Value::Object(body))
        };
        for (key, value) in data {
            reply = reply.header(&format!("x-gitlab-{}", key.replace('_', "-")), value);
        }
        Ok(reply)
    }

    fn get_tree(&self, ctx: &Ctx) -> Outcome {
        let project = self.find_code(ctx)?;
        let repo = &self.project(project).repo;
        let reference = ctx
            .req
            .param("ref")
            .unwrap_or_else(|| repo.default_branch.clone());
        let sha = repo.resolve(&reference).ok_or_else(|| not_found("Tree"))?;
        let tree = repo.tree_at(&sha).unwrap_or_default();
        let path = ctx.req.param("path").unwrap_or_default();
        let path = path.trim_matches('/');
        let recursive = ctx.req.flag("recursive");
        let prefix = match path {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut folders: BTreeSet<String> = BTreeSet::new();
        let mut files: Vec<(&String, &String)> = Vec::new();
        for (file, text) in &tree {
            let Some(rest) = file.strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            for depth in 1..parts.len() {
                if recursive || depth == 1 {
                    folders.insert(format!("{prefix}{}", parts[..depth].join("/")));
                }
            }
            if recursive || parts.len() == 1 {
                files.push((file, text));
            }
        }
        if !path.is_empty() && folders.is_empty() && files.is_empty() {
            return Err(not_found("invalid revision or path"));
        }
        let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
        let entries: Vec<Value> = folders
            .iter()
            .map(|f| {
                let id = blob_sha(&format!("tree {sha} {f}"));
                json!({ "id": id, "name": name(f), "type": "tree", "path": f, "mode": "040000" })
            })
            .chain(files.iter().map(|(f, text)| {
                json!({ "id": blob_sha(text), "name": name(f), "type": "blob", "path": f, "mode": "100644" })
            }))
            .collect();
        let page = page_of(&self.base_url, ctx.req, entries.len());
        let items = entries[page.range.clone()].to_vec();
        Ok(page.reply(Value::Array(items)))
    }

    fn compare(&self, ctx: &Ctx) -> Outcome {
        let project = self.find_code(ctx)?;
        let required = |name: &str| {
            ctx.req
                .param(name)
                .ok_or_else(|| Reply::grape_error(400, &format!("{name} is missing")))
        };
        let (from, to) = (required("from")?, required("to")?);
        let straight = ctx.req.flag("straight");
        let p = self.project(project);
        let repo = &p.repo;
        let (Some(from_sha), Some(to_sha)) = (repo.resolve(&from), repo.resolve(&to)) else {
            return Err(not_found("Ref"));
        };
        let base = match straight {
            true => from_sha.clone(),
            false => repo.merge_base(&from_sha, &to_sha),
        };
        let commits: Vec<Value> = repo
            .commits_between(&from_sha, &to_sha)
            .iter()
            .map(|sha| self.commit_json(project, sha, true))
            .collect();
        let diffs: Vec<Value> = repo.diff(&base, &to_sha).iter().map(diff_json).collect();
        let dots = if straight { ".." } else { "..." };
        Ok(Reply::json(
            200,
            json!({
                "commit": commits.last().cloned().unwrap_or(Value::Null),
                "commits": commits,
                "diffs": diffs,
                "compare_timeout": false,
                "compare_same_ref": from_sha == to_sha,
                "web_url": format!("{}/{}/-/compare/{from}{dots}{to}", self.base_url, p.path_with_namespace),
            }),
        ))
    }

    fn get_branch(&self, ctx: &Ctx) -> Outcome {
        let project = self.find_code(ctx)?;
        let name = ctx.param("branch");
        if !self.project(project).repo.branches.contains_key(name) {
            return Err(not_found("Branch"));
        }
        Ok(Reply::json(200, self.branch_json(project, name, ctx.who)))
    }

    /// Whether `who` may push to `branch`: a developer, or a maintainer for the (protected)
    /// default branch.
    fn may_push(&self, project: u64, who: Option<u64>, branch: &str) -> bool {
        let needed = match branch == self.project(project).repo.default_branch {
            true => MAINTAINER,
            false => DEVELOPER,
        };
        self.level(project, who) >= needed
    }

    /// `Branches::CreateService`: a valid, new name and a ref that resolves.
    fn create_branch(&mut self, ctx: &Ctx) -> Outcome {
        let project = self.find_project(ctx)?;
        let [branch, reference] = required_params(ctx.req, ["branch", "ref"])?;
        if self.level(project, ctx.who) < DEVELOPER {
            return Err(forbidden());
        }
        if !valid_branch_name(&branch) {
            return Err(Reply::message(400, "Branch name is invalid"));
        }
        let repo = &self.project(project).repo;
        if repo.branches.contains_key(&branch) {
            return Err(Reply::message(400, "Branch already exists"));
        }
        let Some(sha) = repo.resolve(&reference) else {
            let message = format!("Invalid reference name: {reference}");
            return Err(Reply::message(400, &message));
        };
        let now = self.stamp();
        self.move_branch(project, &branch, &sha, now, ctx.who, None);
        Ok(Reply::json(
            201,
            self.branch_json(project, &branch, ctx.who),
        ))
    }

    /// `POST …/commits/:sha/revert`: a commit on `branch` undoing what `:sha` changed from its
    /// first parent, by the caller.
    fn revert(&mut self, ctx: &Ctx) -> Outcome {
        let project = self.find_project(ctx)?;
        let [branch] = required_params(ctx.req, ["branch"])?;
        if !self.may_push(project, ctx.who, &branch) {
            let message = "403 Forbidden - You are not allowed to push into this branch";
            return Err(Reply::message(403, message));
        }
        let p = self.project(project);
        let repo = &p.repo;
        let sha = repo
            .resolve(ctx.param("sha"))
            .ok_or_else(|| not_found("Commit"))?;
        let tip = repo
            .branches
            .get(&branch)
            .cloned()
            .ok_or_else(|| not_found("Branch"))?;
        let record = repo.commits.get(&sha);
        let parent = record.map_or("", CommitRecord::first_parent);
        let tree = |sha: &str| repo.tree_at(sha).unwrap_or_default();
        let ours = tree(&tip);
        let reverted = merge_trees(&tree(&sha), &ours, &tree(parent));
        let merged = match reverted {
            Ok(merged) if merged == ours => return Err(cannot_revert("empty")),
            Ok(merged) => merged,
            Err(_) => return Err(cannot_revert("conflict")),
        };
        let renames: Vec<(String, String)> = repo
            .renames_between(parent, &sha)
            .into_iter()
            .map(|(from, to)| (to, from))
            .collect();
        let user = &self.users[&ctx.user()];
        let title = record.map_or("Initial commit", |c| c.spec.title.as_str());
        let merged_mr = p
            .mrs
            .values()
            .find(|mr| mr.merge_commit_sha.as_ref() == Some(&sha));
        let mut spec = CommitSpec::new("", "", changes_between(&ours, &merged, &renames))
            .titled(&format!("Revert \"{}\"", title.trim()))
            .author(&user.name, &user.email)
            .committer(&user.name, &user.email);
        spec.sha = repo.fresh_sha(&format!("revert {sha} {tip}"));
        spec.body = match merged_mr {
            Some(mr) => format!("This reverts merge request !{}", mr.iid),
            None => format!("This reverts commit {sha}"),
        };
        self.pusher = ctx.who;
        let new = self.push(project, &branch, tip, vec![spec], None);
        Ok(Reply::json(201, self.commit_json(project, &new, true)))
    }

    fn get_commit(&self, ctx: &Ctx) -> Outcome {
        let project = self.find_code(ctx)?;
        let repo = &self.project(project).repo;
        let sha = repo
            .resolve(ctx.param("sha"))
            .ok_or_else(|| not_found("Commit"))?;
        let parent = repo.commits.get(&sha).map(|c| c.first_parent().to_owned());
        let (additions, deletions) = parent.map_or((0, 0), |parent| {
            repo.diff(&parent, &sha)
                .iter()
                .fold((0, 0), |(a, d), entry| {
                    let (plus, minus) = diff_stats(&diff_text(entry));
                    (a + plus, d + minus)
                })
        });
        let mut body = self.commit_json(project, &sha, true);
        merge(
            &mut body,
            json!({
                "stats": { "additions": additions, "deletions": deletions, "total": additions + deletions },
                "status": null,
                "project_id": project,
                "last_pipeline": null,
            }),
        );
        Ok(Reply::json(200, body))
    }
}

/// The last commit at or before `sha` that touched `path`.
fn last_commit_for(repo: &Repo, sha: &str, path: &str) -> String {
    let chain = repo.ancestry(sha);
    chain
        .iter()
        .find(|sha| {
            let touched = repo.commits.get(*sha).is_some_and(|c| {
                c.spec
                    .files
                    .iter()
                    .any(|f| f.path == path || f.previous_path.as_deref() == Some(path))
            });
            touched || repo.seeded.get(*sha).is_some_and(|t| t.contains_key(path))
        })
        .or(chain.last())
        .cloned()
        .unwrap_or_default()
}

/// GitLab's refusal of a revert (`Commits::ChangeService`): `error_code` is `empty` when the
/// revert would change nothing, `conflict` when it does not apply.
fn cannot_revert(error_code: &str) -> Reply {
    Reply::json(
        400,
        json!({
            "message": "Sorry, we cannot revert this commit automatically. This commit may already have been reverted, or a more recent commit may have updated some of its content.",
            "error_code": error_code,
        }),
    )
}

/// Whether git accepts `name` as a branch name (`git check-ref-format --branch`).
fn valid_branch_name(name: &str) -> bool {
    let forbidden = |c: char| c.is_ascii_control() || " ~^:?*[\\".contains(c);
    !name.is_empty()
        && name != "HEAD"
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.contains("/.")
        && !name.chars().any(forbidden)
}

/// Parameters Grape `requires`, in order; all the missing ones are named in one error.
fn required_params<const N: usize>(req: &Incoming, names: [&str; N]) -> Result<[String; N], Reply> {
    let values = names.map(|name| req.param(name));
    let missing: Vec<String> = names
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| format!("{name} is missing"))
        .collect();
    match missing.is_empty() {
        true => Ok(values.map(Option::unwrap_or_default)),
        false => Err(Reply::grape_error(400, &missing.join(", "))),
    }
}

// --- commit statuses ---------------------------------------------------------------------------

impl State {
    fn list_statuses(&self, ctx: &Ctx) -> Outcome {
        let project = self.find_code(ctx)?;
        let p = self.project(project);
        let sha = p
            .repo
            .resolve(ctx.param("sha"))
            .ok_or_else(|| not_found("Commit"))?;
        let q = |name: &str| ctx.req.param(name);
        let mut statuses: Vec<&StatusRecord> = p
            .statuses
            .iter()
            .filter(|s| s.sha == sha)
            .filter(|s| q("ref").is_none_or(|r| r == s.ref_name))
            .filter(|s| q("name").is_none_or(|n| n == s.name))
            .collect();
        if !ctx.req.flag("all") {
            let mut seen = HashSet::new();
            let mut latest: Vec<&StatusRecord> = statuses
                .iter()
                .rev()
                .filter(|s| seen.insert((s.name.clone(), s.ref_name.clone())))
                .copied()
                .collect();
            latest.reverse();
            statuses = latest;
        }
        match q("order_by").as_deref() {
            Some("pipeline_id") => statuses.sort_by_key(|s| (s.pipeline_id, s.id)),
            _ => statuses.sort_by_key(|s| s.id),
        }
        if q("sort").as_deref() == Some("desc") {
            statuses.reverse();
        }
        let page = page_of(&self.base_url, ctx.req, statuses.len());
        let items = statuses[page.range.clone()]
            .iter()
            .map(|s| self.status_json(project, s.id))
            .collect();
        Ok(page.reply(Value::Array(items)))
    }

    fn create_status(&mut self, ctx: &Ctx) -> Outcome {
        let project = self.find_project(ctx)?;
        let state = ctx
            .req
            .param("state")
            .ok_or_else(|| Reply::grape_error(400, "state is missing"))?;
        let coverage = match ctx.req.param("coverage") {
            None => None,
            Some(c) => Some(
                c.parse::<f64>()
                    .map_err(|_| Reply::grape_error(400, "coverage is invalid"))?,
            ),
        };
        if self.level(project, ctx.who) < DEVELOPER {
            return Err(forbidden());
        }
        let name = ctx
            .req
            .param("name")
            .or_else(|| ctx.req.param("context"))
            .unwrap_or_else(|| "default".to_owned());
        let input = StatusInput {
            sha: ctx.param("sha").to_owned(),
            state,
            name,
            ref_name: ctx.req.param("ref"),
            description: ctx.req.param("description"),
            target_url: ctx.req.param("target_url"),
            coverage,
        };
        self.post_status(project, ctx.user(), input)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON as GitLab writes it
// ---------------------------------------------------------------------------------------------

impl State {
    /// `UserBasic`.
    fn user_json(&self, id: u64) -> Value {
        let user = &self.users[&id];
        json!({
            "id": id,
            "username": user.username,
            "name": user.name,
            "state": "active",
            "locked": false,
            "avatar_url": avatar_url(&user.email),
            "web_url": format!("{}/{}", self.base_url, user.username),
        })
    }

    fn optional_user_json(&self, id: Option<u64>) -> Value {
        id.map_or(Value::Null, |id| self.user_json(id))
    }

    /// What `GET /user` answers about the token's owner.
    fn user_full_json(&self, id: u64) -> Value {
        let user = &self.users[&id];
        let mut body = self.user_json(id);
        merge(
            &mut body,
            json!({
                "created_at": ts(user.created_at),
                "bio": "",
                "location": "",
                "public_email": null,
                "linkedin": "",
                "twitter": "",
                "discord": "",
                "website_url": "",
                "organization": "",
                "job_title": "",
                "pronouns": null,
                "bot": user.bot,
                "work_information": null,
                "local_time": null,
                "last_sign_in_at": null,
                "confirmed_at": ts(user.created_at),
                "last_activity_on": null,
                "email": user.email,
                "theme_id": 1,
                "color_scheme_id": 1,
                "projects_limit": 100_000,
                "current_sign_in_at": null,
                "identities": [],
                "can_create_group": !user.bot,
                "can_create_project": !user.bot,
                "two_factor_enabled": false,
                "external": false,
                "private_profile": false,
                "commit_email": user.email,
            }),
        );
        body
    }

    fn group_json(&self, id: u64) -> Value {
        let group = &self.groups[&id];
        json!({
            "id": id,
            "name": group.path(),
            "path": group.path(),
            "description": "",
            "visibility": "internal",
            "full_name": group.full_path.replace('/', " / "),
            "full_path": group.full_path,
            "parent_id": group.parent,
            "created_at": ts(group.created_at),
            "avatar_url": null,
            "web_url": format!("{}/groups/{}", self.base_url, group.full_path),
        })
    }

    fn member_json(&self, user: u64, membership: Membership) -> Value {
        let mut body = self.user_json(user);
        merge(
            &mut body,
            json!({
                "access_level": membership.level,
                "created_at": ts(membership.since),
                "expires_at": null,
                "membership_state": "active",
            }),
        );
        body
    }

    fn project_json(&self, id: u64, who: Option<u64>) -> Value {
        let p = self.project(id);
        let base = &self.base_url;
        let namespace = &self.groups[&p.namespace];
        let web_url = format!("{base}/{}", p.path_with_namespace);
        let host = base.split("://").nth(1).unwrap_or(base);
        let host = host.split(':').next().unwrap_or(host);
        let access = |m: Option<Membership>| {
            m.map_or(
                Value::Null,
                |m| json!({ "access_level": m.level, "notification_level": 3 }),
            )
        };
        let direct = who.and_then(|u| p.members.get(&u).copied());
        let group = who.and_then(|u| self.group_membership(p.namespace, u));
        json!({
            "id": id,
            "description": null,
            "name": p.name(),
            "name_with_namespace": p.path_with_namespace.replace('/', " / "),
            "path": p.name(),
            "path_with_namespace": p.path_with_namespace,
            "created_at": ts(p.created_at),
            "default_branch": p.repo.default_branch,
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": format!("git@{host}:{}.git", p.path_with_namespace),
            "http_url_to_repo": format!("{web_url}.git"),
            "web_url": web_url,
            "readme_url": null,
            "avatar_url": null,
            "forks_count": 0,
            "star_count": 0,
            "last_activity_at": ts(p.created_at),
            "namespace": {
                "id": namespace.id,
                "name": namespace.path(),
                "path": namespace.path(),
                "kind": "group",
                "full_path": namespace.full_path,
                "parent_id": namespace.parent,
                "avatar_url": null,
                "web_url": format!("{base}/groups/{}", namespace.full_path),
            },
            "visibility": p.visibility.as_str(),
            "archived": false,
            "empty_repo": p.repo.branches.is_empty(),
            "merge_requests_enabled": true,
            "merge_method": "merge",
            "only_allow_merge_if_pipeline_succeeds": false,
            "merge_requests_author_approval": p.approval_settings.author_can_approve,
            "reset_approvals_on_push": p.approval_settings.reset_approvals_on_push,
            "permissions": { "project_access": access(direct), "group_access": access(group) },
        })
    }

    /// `Entities::MergeRequest` (the single merge request; lists use the same fields).
    fn mr_json(&self, project: u64, mr: &MergeRequest, who: Option<u64>) -> Value {
        let p = self.project(project);
        let version = mr.latest();
        let changes = p.repo.diff(&version.base, &version.head).len();
        let path = &p.path_with_namespace;
        let iid = mr.iid;
        let draft = is_draft(&mr.title);
        let labels = sorted_labels(&mr.labels);
        let detailed = match (mr.state, draft) {
            ("opened", true) => "draft_status",
            ("opened", false) => "mergeable",
            _ => "not_open",
        };
        let mut body = json!({
            "id": mr.id,
            "iid": iid,
            "project_id": project,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": ts(mr.created_at),
            "updated_at": ts(mr.updated_at),
            "merged_by": self.optional_user_json(mr.merged_by),
            "merge_user": self.optional_user_json(mr.merged_by),
            "merged_at": mr.merged_at.map(ts),
            "closed_by": self.optional_user_json(mr.closed_by),
            "closed_at": mr.closed_at.map(ts),
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": mr.notes.iter().filter(|n| !n.system).count(),
            "upvotes": 0,
            "downvotes": 0,
            "author": self.user_json(mr.author),
            "assignees": [],
            "assignee": null,
            "reviewers": [],
            "source_project_id": project,
            "target_project_id": project,
            "labels": labels,
            "draft": draft,
            "work_in_progress": draft,
            "milestone": null,
            "merge_when_pipeline_succeeds": false,
            "merge_status": "can_be_merged",
            "detailed_merge_status": detailed,
            "sha": version.head,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": null,
            "discussion_locked": null,
            "should_remove_source_branch": null,
            "force_remove_source_branch": false,
        });
        merge(
            &mut body,
            json!({
                "prepared_at": ts(mr.created_at),
                "reference": format!("!{iid}"),
                "references": { "short": format!("!{iid}"), "relative": format!("!{iid}"), "full": format!("{path}!{iid}") },
                "web_url": format!("{}/{path}/-/merge_requests/{iid}", self.base_url),
                "time_stats": {
                    "time_estimate": 0, "total_time_spent": 0,
                    "human_time_estimate": null, "human_total_time_spent": null,
                },
                "squash": false,
                "squash_on_merge": false,
                "task_completion_status": { "count": 0, "completed_count": 0 },
                "has_conflicts": false,
                "blocking_discussions_resolved": true,
                "subscribed": false,
                "changes_count": changes.to_string(),
                "latest_build_started_at": null,
                "latest_build_finished_at": null,
                "first_deployed_to_production_at": null,
                "pipeline": null,
                "head_pipeline": null,
                "diff_refs": {
                    "base_sha": version.base,
                    "head_sha": version.head,
                    "start_sha": version.start,
                },
                "merge_error": null,
                "first_contribution": false,
                "user": { "can_merge": self.level(project, who) >= DEVELOPER },
            }),
        );
        body
    }

    /// `Entities::Commit` (merge request commits carry no parents, as GitLab stores them).
    fn commit_json(&self, project: u64, sha: &str, with_parents: bool) -> Value {
        let p = self.project(project);
        let web_url = format!("{}/{}/-/commit/{sha}", self.base_url, p.path_with_namespace);
        let Some(commit) = p.repo.commits.get(sha) else {
            let date = git_ts(p.created_at);
            return json!({
                "id": sha, "short_id": short_id(sha), "created_at": date, "parent_ids": [],
                "title": "Initial commit", "message": "Initial commit",
                "author_name": "Administrator", "author_email": "admin@example.com", "authored_date": date,
                "committer_name": "Administrator", "committer_email": "admin@example.com", "committed_date": date,
                "trailers": {}, "extended_trailers": {}, "web_url": web_url,
            });
        };
        let spec = &commit.spec;
        let message = match spec.body.is_empty() {
            true => spec.title.clone(),
            false => format!("{}\n\n{}", spec.title, spec.body),
        };
        let parents: &[String] = match with_parents {
            true => &commit.parents,
            false => &[],
        };
        json!({
            "id": sha,
            "short_id": short_id(sha),
            "created_at": git_ts(commit.committed()),
            "parent_ids": parents,
            "title": spec.title,
            "message": message,
            "author_name": spec.author_name,
            "author_email": spec.author_email,
            "authored_date": git_ts(commit.authored()),
            "committer_name": spec.committer_name,
            "committer_email": spec.committer_email,
            "committed_date": git_ts(commit.committed()),
            "trailers": {},
            "extended_trailers": {},
            "web_url": web_url,
        })
    }

    /// `Entities::Branch`; `merged` as `merged_to_root_ref?` reads it (in the default branch's
    /// history, and not its tip).
    fn branch_json(&self, project: u64, name: &str, who: Option<u64>) -> Value {
        let p = self.project(project);
        let repo = &p.repo;
        let sha = &repo.branches[name];
        let default = name == repo.default_branch;
        let root = repo.branches.get(&repo.default_branch);
        let merged = root.is_some_and(|root| root != sha && repo.is_ancestor(sha, root));
        json!({
            "name": name,
            "commit": self.commit_json(project, sha, true),
            "merged": merged,
            "protected": default,
            "developers_can_push": false,
            "developers_can_merge": false,
            "can_push": self.may_push(project, who, name),
            "default": default,
            "web_url": format!("{}/{}/-/tree/{name}", self.base_url, p.path_with_namespace),
        })
    }

    /// `Entities::Issue`.
    fn issue_json(&self, project: u64, iid: u64, who: Option<u64>) -> Value {
        let p = self.project(project);
        let issue = p.issue(iid);
        let path = &p.path_with_namespace;
        let api = format!("{}{API_PREFIX}/projects/{project}", self.base_url);
        let assignees: Vec<Value> = issue.assignees.iter().map(|u| self.user_json(*u)).collect();
        let subscribed = who.is_some_and(|u| u == issue.author || issue.assignees.contains(&u));
        json!({
            "id": issue.id,
            "iid": iid,
            "project_id": project,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": ts(issue.created_at),
            "updated_at": ts(issue.updated_at),
            "closed_at": issue.closed_at.map(ts),
            "closed_by": self.optional_user_json(issue.closed_by),
            "labels": issue.labels,
            "milestone": null,
            "assignees": assignees,
            "author": self.user_json(issue.author),
            "type": "ISSUE",
            "assignee": assignees.first().cloned().unwrap_or(Value::Null),
            "user_notes_count": issue.notes.iter().filter(|n| !n.system).count(),
            "merge_requests_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "due_date": null,
            "confidential": false,
            "discussion_locked": null,
            "issue_type": "issue",
            "web_url": format!("{}/{path}/-/issues/{iid}", self.base_url),
            "time_stats": {
                "time_estimate": 0, "total_time_spent": 0,
                "human_time_estimate": null, "human_total_time_spent": null,
            },
            "task_completion_status": { "count": 0, "completed_count": 0 },
            "has_tasks": false,
            "_links": {
                "self": format!("{api}/issues/{iid}"),
                "notes": format!("{api}/issues/{iid}/notes"),
                "award_emoji": format!("{api}/issues/{iid}/award_emoji"),
                "project": api,
                "closed_as_duplicate_of": null,
            },
            "references": { "short": format!("#{iid}"), "relative": format!("#{iid}"), "full": format!("{path}#{iid}") },
            "severity": "UNKNOWN",
            "subscribed": subscribed,
            "moved_to_id": null,
            "service_desk_reply_to": null,
            "imported": false,
            "imported_from": "none",
        })
    }

    /// `Entities::MergeRequestDiff` (a version).
    fn version_json(&self, project: u64, mr: &MergeRequest, version: &Version) -> Value {
        let size = self
            .project(project)
            .repo
            .diff(&version.base, &version.head)
            .len();
        json!({
            "id": version.id,
            "head_commit_sha": version.head,
            "base_commit_sha": version.base,
            "start_commit_sha": version.start,
            "created_at": ts(version.created_at),
            "merge_request_id": mr.id,
            "state": "collected",
            "real_size": size.to_string(),
            "patch_id_sha": blob_sha(&format!("patch {} {}", version.base, version.head)),
        })
    }

    /// `Entities::MergeRequestApprovals` (GitLab Free's fields).
    fn approvals_json(&self, project: u64, mr: &MergeRequest, who: Option<u64>) -> Value {
        let approved_by: Vec<Value> = mr
            .approvals
            .iter()
            .map(|a| json!({ "user": self.user_json(a.user), "approved_at": ts(a.at) }))
            .collect();
        json!({
            "user_has_approved": who.is_some_and(|u| mr.approved_by(u)),
            "user_can_approve": who.is_some_and(|u| self.approval_allowed(project, mr, u)),
            "approved": !mr.approvals.is_empty(),
            "approved_by": approved_by,
        })
    }

    /// `Entities::Note`.
    fn note_json(&self, project: u64, noteable: Noteable, note: &Note) -> Value {
        let p = self.project(project);
        let (noteable_id, noteable_iid) = match noteable {
            Noteable::Mr(iid) => (p.mr(iid).id, iid),
            Noteable::Issue(iid) => (p.issue(iid).id, iid),
        };
        json!({
            "id": note.id,
            "type": null,
            "body": note.body,
            "attachment": null,
            "author": self.user_json(note.author),
            "created_at": ts(note.created_at),
            "updated_at": ts(note.updated_at),
            "system": note.system,
            "noteable_id": noteable_id,
            "noteable_type": noteable.type_name(),
            "project_id": project,
            "resolvable": false,
            "confidential": false,
            "internal": false,
            "imported": false,
            "imported_from": "none",
            "noteable_iid": noteable_iid,
            "commands_changes": {},
        })
    }

    /// `Entities::CommitStatus` (the state is in `status`).
    fn status_json(&self, project: u64, id: u64) -> Value {
        let status = self
            .project(project)
            .statuses
            .iter()
            .find(|s| s.id == id)
            .expect("a known status");
        json!({
            "id": status.id,
            "sha": status.sha,
            "ref": status.ref_name,
            "status": status.state,
            "name": status.name,
            "target_url": status.target_url,
            "description": status.description,
            "created_at": ts(status.created_at),
            "started_at": status.started_at.map(ts),
            "finished_at": status.finished_at.map(ts),
            "allow_failure": false,
            "coverage": status.coverage,
            "pipeline_id": status.pipeline_id,
            "author": self.user_json(status.author),
        })
    }
}

fn diff_text(entry: &DiffEntry) -> String {
    unified_diff(
        entry.old_text.as_deref().unwrap_or(""),
        entry.new_text.as_deref().unwrap_or(""),
    )
}

/// `Entities::Diff`.
fn diff_json(entry: &DiffEntry) -> Value {
    json!({
        "diff": diff_text(entry),
        "collapsed": false,
        "too_large": false,
        "new_path": entry.new_path,
        "old_path": entry.old_path,
        "a_mode": if entry.new_file { "0" } else { "100644" },
        "b_mode": if entry.deleted_file { "0" } else { "100644" },
        "new_file": entry.new_file,
        "renamed_file": entry.renamed_file,
        "deleted_file": entry.deleted_file,
        "generated_file": false,
    })
}

/// A time as Rails writes it: UTC with milliseconds.
fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A git date as GitLab writes it: milliseconds and the author's offset (UTC here).
fn git_ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

fn truncate_to_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// The first eight characters of a sha.
fn short_id(sha: &str) -> String {
    sha.chars().take(8).collect()
}

/// A 40-hex-digit content hash standing in for git's blob sha.
fn blob_sha(text: &str) -> String {
    let object = format!("blob {}\0{text}", text.len());
    hex::encode(Sha256::digest(object.as_bytes()))[..40].to_owned()
}

fn avatar_url(email: &str) -> String {
    let digest = hex::encode(Sha256::digest(email.to_lowercase().as_bytes()));
    format!("https://www.gravatar.com/avatar/{digest}?s=80&d=identicon")
}

/// Adds the fields of `extra` (an object) to `target` (an object).
fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}
