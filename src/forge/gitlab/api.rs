//! GitLab's REST API v4 through reqwest: `PRIVATE-TOKEN` authentication (a bot user's,
//! project's or group's access token), explicit timeouts, pagination by `x-next-page`, and
//! errors that keep what GitLab said and how long it asked to be left alone.
//!
//! Only the calls tollgate needs, with thin structs holding only the fields it reads.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// How long to wait for a connection to GitLab.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Items per page when listing (GitLab's maximum).
pub const PER_PAGE: u32 = 100;

/// A failure talking to GitLab.
#[derive(Debug, thiserror::Error)]
pub enum GitlabError {
    /// GitLab answered with an error status.
    #[error("GitLab API {method} {path}: {status} {message}")]
    Status {
        /// The request's method.
        method: &'static str,
        /// The request's path (no query, no token).
        path: String,
        /// The status GitLab answered.
        status: u16,
        /// GitLab's `message` (or `error`), else the status text.
        message: String,
        /// How long GitLab asked to wait (`Retry-After`, or `RateLimit-Reset` once the budget
        /// is spent).
        wait: Option<Duration>,
    },
    /// GitLab could not be reached, or the answer could not be read.
    #[error("GitLab API {method} {path}: {source}")]
    Transport {
        /// The request's method.
        method: &'static str,
        /// The request's path.
        path: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The configuration cannot work (bad URL or token).
    #[error("the GitLab client cannot be set up: {0}")]
    Setup(String),
    /// tollgate's own store failed while acting on GitLab's answers (tried again like a
    /// GitLab error; the message must not blame GitLab or the setup).
    #[error("{what} could not be used: {message}")]
    Store {
        /// Which store (the audit ledger, the incident store, the schedule).
        what: String,
        /// What went wrong.
        message: String,
    },
}

impl GitlabError {
    /// Whether GitLab said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, GitlabError::Status { status: 404, .. })
    }

    /// How long GitLab asked tollgate to wait, when this is a rate limit.
    pub fn rate_limit_wait(&self) -> Option<Duration> {
        match self {
            GitlabError::Status {
                status: 403 | 429,
                wait,
                ..
            } => *wait,
            _ => None,
        }
    }
}

/// A user as GitLab names it in API answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserRef {
    /// Numeric id.
    pub id: u64,
    /// Login.
    pub username: String,
}

/// The commits a merge request compares (`diff_refs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DiffRefs {
    /// The merge base the diff starts from.
    pub base_sha: String,
    /// The source branch's head.
    pub head_sha: String,
    /// The target branch's head when the diff was computed.
    pub start_sha: String,
}

/// A merge request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MergeRequest {
    /// Number within the project.
    pub iid: u64,
    /// Title.
    pub title: String,
    /// Description (Markdown).
    pub description: Option<String>,
    /// `opened`, `closed`, `locked` or `merged`.
    pub state: String,
    /// Who opened it.
    pub author: UserRef,
    /// Source branch.
    pub source_branch: String,
    /// Target branch.
    pub target_branch: String,
    /// Head commit.
    pub sha: Option<String>,
    /// Base and head of the diff (absent while GitLab is still computing it).
    pub diff_refs: Option<DiffRefs>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Draft.
    #[serde(default)]
    pub draft: bool,
    /// Its page.
    pub web_url: String,
    /// When it was merged.
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
    /// Who merged it (GitLab 14.7+ calls it `merge_user`; `merged_by` is the older name).
    #[serde(default)]
    pub merge_user: Option<UserRef>,
    /// Who merged it, under its older name.
    #[serde(default)]
    pub merged_by: Option<UserRef>,
    /// The merge commit, when the merge made one.
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    /// The squashed commit, when the merge squashed.
    #[serde(default)]
    pub squash_commit_sha: Option<String>,
}

/// An issue (tollgate's post-incident reviews are issues).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    /// Number within the project.
    pub iid: u64,
    /// Title.
    pub title: String,
    /// Description (Markdown).
    #[serde(default)]
    pub description: Option<String>,
    /// `opened` or `closed`.
    pub state: String,
    /// Its page.
    pub web_url: String,
    /// Who it is assigned to.
    #[serde(default)]
    pub assignees: Vec<UserRef>,
    /// Who closed it.
    #[serde(default)]
    pub closed_by: Option<UserRef>,
}

/// A commit as the commits API answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommitRef {
    /// Sha.
    pub id: String,
}

/// One changed file of a merge request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Diff {
    /// Path before.
    pub old_path: String,
    /// Path after.
    pub new_path: String,
    /// Added.
    pub new_file: bool,
    /// Renamed.
    pub renamed_file: bool,
    /// Removed.
    pub deleted_file: bool,
}

/// One commit of a merge request. GitLab gives names and e-mails, not users: anyone can set
/// them, so they identify contributors only as far as they are matched to users.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Commit {
    /// Sha.
    pub id: String,
    /// Author's name.
    pub author_name: String,
    /// Author's e-mail.
    pub author_email: String,
    /// Committer's name.
    pub committer_name: Option<String>,
    /// Committer's e-mail.
    pub committer_email: Option<String>,
}

/// A diff version: GitLab records one per push, dated by GitLab (not by the commit dates,
/// which anyone can set), so it is what staleness is judged by.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Version {
    /// Id.
    pub id: u64,
    /// The head after that push.
    pub head_commit_sha: String,
    /// The base of that version's diff.
    pub base_commit_sha: String,
    /// When GitLab recorded the push.
    pub created_at: DateTime<Utc>,
}

/// A note (comment) on a merge request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Note {
    /// Id.
    pub id: u64,
    /// Markdown body.
    pub body: String,
    /// Who wrote it.
    pub author: UserRef,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last edit (equal to `created_at` when never edited).
    pub updated_at: DateTime<Utc>,
    /// Written by GitLab itself (e.g. "approved this merge request").
    #[serde(default)]
    pub system: bool,
}

/// A file or folder in a tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TreeEntry {
    /// Path from the repository root.
    pub path: String,
    /// `blob` or `tree`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A commit status state GitLab accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    /// Not decided yet.
    Pending,
    /// Passed.
    Success,
    /// Blocked.
    Failed,
}

impl StatusState {
    /// GitLab's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failed => "failed",
        }
    }
}

/// GitLab's access level of Developer: the least that may sign off (push access).
pub const DEVELOPER: u32 = 30;

/// The GitLab API of one instance.
#[derive(Clone)]
pub struct GitlabApi {
    http: reqwest::Client,
    /// `<instance>/api/v4/`.
    api: url::Url,
}

impl GitlabApi {
    /// A client for the instance at `instance_url` (`https://gitlab.com`, or a self-managed
    /// root, possibly under a path) acting with `token`.
    pub fn new(instance_url: &url::Url, token: &SecretString) -> Result<GitlabApi, GitlabError> {
        let mut root = instance_url.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let api = root
            .join("api/v4/")
            .map_err(|e| GitlabError::Setup(e.to_string()))?;
        let mut token = HeaderValue::from_str(token.expose_secret())
            .map_err(|_| GitlabError::Setup("the token is not a valid header value".to_owned()))?;
        token.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("private-token", token);
        let http = reqwest::Client::builder()
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| GitlabError::Setup(e.to_string()))?;
        Ok(GitlabApi { http, api })
    }

    fn url(&self, path: &str) -> Result<url::Url, GitlabError> {
        self.api
            .join(path.trim_start_matches('/'))
            .map_err(|e| GitlabError::Setup(format!("{path}: {e}")))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, GitlabError> {
        let name = method_name(&method);
        let mut url = self.url(path)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source| GitlabError::Transport {
            method: name,
            path: path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let wait = wait_from(response.headers(), Utc::now());
        let text = response.text().await.unwrap_or_default();
        Err(GitlabError::Status {
            method: name,
            path: path.to_owned(),
            status,
            message: error_message(&text, status),
            wait,
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, GitlabError> {
        let response = self.send(reqwest::Method::GET, path, query, None).await?;
        response
            .json()
            .await
            .map_err(|source| GitlabError::Transport {
                method: "GET",
                path: path.to_owned(),
                source,
            })
    }

    /// Every item of a paginated list, up to `cap` items (`x-next-page` says whether there is
    /// another page).
    pub async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        cap: usize,
    ) -> Result<Vec<T>, GitlabError> {
        let mut items = Vec::new();
        let mut page = 1u32;
        loop {
            let mut paged = query.to_vec();
            paged.push(("per_page", PER_PAGE.to_string()));
            paged.push(("page", page.to_string()));
            let response = self.send(reqwest::Method::GET, path, &paged, None).await?;
            let next = response
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok());
            let mut current: Vec<T> =
                response
                    .json()
                    .await
                    .map_err(|source| GitlabError::Transport {
                        method: "GET",
                        path: path.to_owned(),
                        source,
                    })?;
            let empty = current.is_empty();
            items.append(&mut current);
            match next {
                Some(next) if !empty && items.len() < cap && next > page => page = next,
                _ => break,
            }
        }
        Ok(items)
    }

    /// Sends a JSON body and reads the JSON answer.
    async fn write<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, GitlabError> {
        let name = method_name(&method);
        let response = self.send(method, path, &[], Some(&body)).await?;
        response
            .json()
            .await
            .map_err(|source| GitlabError::Transport {
                method: name,
                path: path.to_owned(),
                source,
            })
    }

    /// The user with `username`, if there is one.
    pub async fn user_named(&self, username: &str) -> Result<Option<UserRef>, GitlabError> {
        let users: Vec<UserRef> = self
            .get("users", &[("username", username.to_owned())])
            .await?;
        Ok(users
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username)))
    }

    /// Opens an issue.
    pub async fn create_issue(
        &self,
        project: u64,
        title: &str,
        description: &str,
        labels: &[&str],
    ) -> Result<Issue, GitlabError> {
        let body = serde_json::json!({
            "title": title, "description": description, "labels": labels.join(","),
        });
        self.write(
            reqwest::Method::POST,
            &format!("projects/{project}/issues"),
            body,
        )
        .await
    }

    /// One issue.
    pub async fn issue(&self, project: u64, iid: u64) -> Result<Issue, GitlabError> {
        self.get(&format!("projects/{project}/issues/{iid}"), &[])
            .await
    }

    /// The project's issues (open or closed) with `label`, by `author`.
    pub async fn issues_labelled(
        &self,
        project: u64,
        label: &str,
        author: u64,
    ) -> Result<Vec<Issue>, GitlabError> {
        let query = [
            ("labels", label.to_owned()),
            ("author_id", author.to_string()),
            ("state", "all".to_owned()),
        ];
        self.all_pages(&format!("projects/{project}/issues"), &query, usize::MAX)
            .await
    }

    /// Every note on an issue, oldest first.
    pub async fn issue_notes(&self, project: u64, iid: u64) -> Result<Vec<Note>, GitlabError> {
        let query = [
            ("sort", "asc".to_owned()),
            ("order_by", "created_at".to_owned()),
        ];
        self.all_pages(
            &format!("projects/{project}/issues/{iid}/notes"),
            &query,
            usize::MAX,
        )
        .await
    }

    /// Writes a note on an issue.
    pub async fn create_issue_note(
        &self,
        project: u64,
        iid: u64,
        body: &str,
    ) -> Result<Note, GitlabError> {
        self.write(
            reqwest::Method::POST,
            &format!("projects/{project}/issues/{iid}/notes"),
            serde_json::json!({ "body": body }),
        )
        .await
    }

    /// Adds labels to an issue (`issues`) or a merge request (`merge_requests`).
    pub async fn add_labels(
        &self,
        project: u64,
        kind: &str,
        iid: u64,
        labels: &[&str],
    ) -> Result<(), GitlabError> {
        let _: serde_json::Value = self
            .write(
                reqwest::Method::PUT,
                &format!("projects/{project}/{kind}/{iid}"),
                serde_json::json!({ "add_labels": labels.join(",") }),
            )
            .await?;
        Ok(())
    }

    /// Creates `branch` at `from` (a branch or commit).
    pub async fn create_branch(
        &self,
        project: u64,
        branch: &str,
        from: &str,
    ) -> Result<(), GitlabError> {
        let _: serde_json::Value = self
            .write(
                reqwest::Method::POST,
                &format!("projects/{project}/repository/branches"),
                serde_json::json!({ "branch": branch, "ref": from }),
            )
            .await?;
        Ok(())
    }

    /// Reverts commit `sha` onto `branch` (a merge commit against its first parent).
    pub async fn revert_commit(
        &self,
        project: u64,
        sha: &str,
        branch: &str,
    ) -> Result<CommitRef, GitlabError> {
        self.write(
            reqwest::Method::POST,
            &format!("projects/{project}/repository/commits/{sha}/revert"),
            serde_json::json!({ "branch": branch }),
        )
        .await
    }

    /// Opens a merge request.
    pub async fn create_merge_request(
        &self,
        project: u64,
        source: &str,
        target: &str,
        title: &str,
        description: &str,
        labels: &[&str],
    ) -> Result<MergeRequest, GitlabError> {
        self.write(
            reqwest::Method::POST,
            &format!("projects/{project}/merge_requests"),
            serde_json::json!({
                "source_branch": source, "target_branch": target, "title": title,
                "description": description, "labels": labels.join(","),
            }),
        )
        .await
    }

    /// The token's user: tollgate's identity on this instance.
    pub async fn current_user(&self) -> Result<UserRef, GitlabError> {
        self.get("user", &[]).await
    }

    /// A merge request.
    pub async fn merge_request(&self, project: u64, iid: u64) -> Result<MergeRequest, GitlabError> {
        self.get(&format!("projects/{project}/merge_requests/{iid}"), &[])
            .await
    }

    /// The changed files of a merge request (all pages, up to `cap`).
    pub async fn diffs(
        &self,
        project: u64,
        iid: u64,
        cap: usize,
    ) -> Result<Vec<Diff>, GitlabError> {
        self.all_pages(
            &format!("projects/{project}/merge_requests/{iid}/diffs"),
            &[],
            cap,
        )
        .await
    }

    /// The commits of a merge request (all pages, up to `cap`).
    pub async fn commits(
        &self,
        project: u64,
        iid: u64,
        cap: usize,
    ) -> Result<Vec<Commit>, GitlabError> {
        self.all_pages(
            &format!("projects/{project}/merge_requests/{iid}/commits"),
            &[],
            cap,
        )
        .await
    }

    /// The diff versions of a merge request, one per push, newest first.
    pub async fn versions(&self, project: u64, iid: u64) -> Result<Vec<Version>, GitlabError> {
        self.all_pages(
            &format!("projects/{project}/merge_requests/{iid}/versions"),
            &[],
            usize::MAX,
        )
        .await
    }

    /// The notes of a merge request, oldest first (system notes included: approvals are
    /// among them, with their time).
    pub async fn notes(&self, project: u64, iid: u64) -> Result<Vec<Note>, GitlabError> {
        self.all_pages(
            &format!("projects/{project}/merge_requests/{iid}/notes"),
            &[
                ("sort", "asc".to_owned()),
                ("order_by", "created_at".to_owned()),
            ],
            usize::MAX,
        )
        .await
    }

    /// Who approves the merge request now.
    pub async fn approvers(&self, project: u64, iid: u64) -> Result<Vec<UserRef>, GitlabError> {
        #[derive(Deserialize)]
        struct Approval {
            user: UserRef,
        }
        #[derive(Deserialize)]
        struct Approvals {
            #[serde(default)]
            approved_by: Vec<Approval>,
        }
        let approvals: Approvals = self
            .get(
                &format!("projects/{project}/merge_requests/{iid}/approvals"),
                &[],
            )
            .await?;
        Ok(approvals.approved_by.into_iter().map(|a| a.user).collect())
    }

    /// Writes a new note on a merge request.
    pub async fn create_note(
        &self,
        project: u64,
        iid: u64,
        body: &str,
    ) -> Result<Note, GitlabError> {
        let path = format!("projects/{project}/merge_requests/{iid}/notes");
        let response = self
            .send(
                reqwest::Method::POST,
                &path,
                &[],
                Some(&serde_json::json!({ "body": body })),
            )
            .await?;
        response
            .json()
            .await
            .map_err(|source| GitlabError::Transport {
                method: "POST",
                path,
                source,
            })
    }

    /// Replaces the body of one of tollgate's notes.
    pub async fn edit_note(
        &self,
        project: u64,
        iid: u64,
        note: u64,
        body: &str,
    ) -> Result<(), GitlabError> {
        self.send(
            reqwest::Method::PUT,
            &format!("projects/{project}/merge_requests/{iid}/notes/{note}"),
            &[],
            Some(&serde_json::json!({ "body": body })),
        )
        .await
        .map(drop)
    }

    /// A file's text at a commit; `None` when there is no such file there.
    pub async fn raw_file(
        &self,
        project: u64,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<String>, GitlabError> {
        let route = format!(
            "projects/{project}/repository/files/{}/raw",
            encode_component(path)
        );
        match self
            .send(
                reqwest::Method::GET,
                &route,
                &[("ref", git_ref.to_owned())],
                None,
            )
            .await
        {
            Ok(response) => {
                response
                    .text()
                    .await
                    .map(Some)
                    .map_err(|source| GitlabError::Transport {
                        method: "GET",
                        path: route,
                        source,
                    })
            }
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The files changed from `from` to `to` (old and new paths).
    pub async fn changed_between(
        &self,
        project: u64,
        from: &str,
        to: &str,
    ) -> Result<Vec<String>, GitlabError> {
        #[derive(Deserialize)]
        struct Compare {
            #[serde(default)]
            diffs: Vec<Diff>,
        }
        let compare: Compare = self
            .get(
                &format!("projects/{project}/repository/compare"),
                &[("from", from.to_owned()), ("to", to.to_owned())],
            )
            .await?;
        let mut paths: Vec<String> = Vec::new();
        for diff in compare.diffs {
            if diff.old_path != diff.new_path {
                paths.push(diff.old_path);
            }
            paths.push(diff.new_path);
        }
        Ok(paths)
    }

    /// Every path in the tree at a commit (up to `cap`).
    pub async fn tree(
        &self,
        project: u64,
        git_ref: &str,
        cap: usize,
    ) -> Result<Vec<TreeEntry>, GitlabError> {
        self.all_pages(
            &format!("projects/{project}/repository/tree"),
            &[
                ("ref", git_ref.to_owned()),
                ("recursive", "true".to_owned()),
            ],
            cap,
        )
        .await
    }

    /// A user's effective access level in a project (inherited group membership included);
    /// `None` when they are not a member.
    pub async fn project_access(
        &self,
        project: u64,
        user: u64,
    ) -> Result<Option<u32>, GitlabError> {
        self.member_access(&format!("projects/{project}/members/all/{user}"))
            .await
    }

    /// A user's effective access level in a group (`ml/reviewers`, subgroups included);
    /// `None` when they are not a member.
    pub async fn group_access(&self, group: &str, user: u64) -> Result<Option<u32>, GitlabError> {
        self.member_access(&format!(
            "groups/{}/members/all/{user}",
            encode_component(group)
        ))
        .await
    }

    async fn member_access(&self, path: &str) -> Result<Option<u32>, GitlabError> {
        #[derive(Deserialize)]
        struct Member {
            access_level: u32,
            #[serde(default)]
            state: Option<String>,
        }
        match self.get::<Member>(path, &[]).await {
            // An invited member who has not accepted, or a blocked one, has no access.
            Ok(member) if member.state.as_deref().is_none_or(|s| s == "active") => {
                Ok(Some(member.access_level))
            }
            Ok(_) => Ok(None),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Sets tollgate's commit status on a commit.
    pub async fn set_status(
        &self,
        project: u64,
        sha: &str,
        state: StatusState,
        name: &str,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), GitlabError> {
        let mut body = serde_json::json!({
            "state": state.as_str(),
            "name": name,
            // GitLab truncates longer descriptions; keep whole characters.
            "description": description.chars().take(255).collect::<String>(),
        });
        if let Some(url) = target_url {
            body["target_url"] = url.into();
        }
        self.send(
            reqwest::Method::POST,
            &format!("projects/{project}/statuses/{sha}"),
            &[],
            Some(&body),
        )
        .await
        .map(drop)
    }
}

fn method_name(method: &reqwest::Method) -> &'static str {
    match *method {
        reqwest::Method::GET => "GET",
        reqwest::Method::POST => "POST",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::DELETE => "DELETE",
        _ => "request",
    }
}

/// GitLab's error text: `{"message": …}` (a string or an object of field errors), or
/// `{"error": …}`, else the status.
fn error_message(text: &str, status: u16) -> String {
    let json: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    let message = match (&json["message"], &json["error"]) {
        (serde_json::Value::String(m), _) | (_, serde_json::Value::String(m)) => m.clone(),
        (serde_json::Value::Null, _) => String::new(),
        (other, _) => other.to_string(),
    };
    if message.is_empty() {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error")
            .to_owned()
    } else {
        message
    }
}

/// How long a rate-limited answer asks to wait: `Retry-After` (seconds), or, with
/// `RateLimit-Remaining: 0`, until `RateLimit-Reset` (epoch seconds).
fn wait_from(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    if number("ratelimit-remaining") == Some(0) {
        let reset = number("ratelimit-reset")?;
        let now = u64::try_from(now.timestamp()).unwrap_or(0);
        return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
    }
    None
}

/// Percent-encodes one path component (`/` too: GitLab wants `a%2Fb` for nested paths).
pub fn encode_component(text: &str) -> String {
    // Form encoding writes a space as `+`, which in a path is a literal plus; a literal plus
    // itself comes out as `%2B`, so turning `+` into `%20` is exact.
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_is_not_blamed_on_gitlab_or_its_setup() {
        let error = GitlabError::Store {
            what: "the audit ledger".to_owned(),
            message: "database is locked".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "the audit ledger could not be used: database is locked"
        );
        assert_eq!(error.rate_limit_wait(), None);
    }

    #[test]
    fn error_messages_are_read_from_every_shape_gitlab_uses() {
        assert_eq!(
            error_message(r#"{"message":"404 Not Found"}"#, 404),
            "404 Not Found"
        );
        assert_eq!(
            error_message(r#"{"error":"insufficient_scope"}"#, 403),
            "insufficient_scope"
        );
        assert_eq!(
            error_message(r#"{"message":{"body":["is too long"]}}"#, 400),
            r#"{"body":["is too long"]}"#
        );
        assert_eq!(error_message("<html>", 502), "Bad Gateway");
    }

    #[test]
    fn rate_limit_waits_come_from_retry_after_or_the_reset() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(wait_from(&headers, now), Some(Duration::from_secs(7)));
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("ratelimit-reset", HeaderValue::from_static("1030"));
        assert_eq!(wait_from(&headers, now), Some(Duration::from_secs(31)));
        headers.insert("ratelimit-remaining", HeaderValue::from_static("5"));
        assert_eq!(wait_from(&headers, now), None);
    }

    #[test]
    fn nested_paths_are_encoded_as_one_component() {
        assert_eq!(encode_component("ml/reviewers"), "ml%2Freviewers");
        assert_eq!(
            encode_component("models/fraud card.md"),
            "models%2Ffraud%20card.md"
        );
    }

    #[test]
    fn the_api_root_is_under_the_instance_path() {
        let token = SecretString::from("t");
        let api =
            GitlabApi::new(&"https://git.example.com/gitlab".parse().unwrap(), &token).unwrap();
        assert_eq!(
            api.url("projects/1").unwrap().as_str(),
            "https://git.example.com/gitlab/api/v4/projects/1"
        );
    }
}
