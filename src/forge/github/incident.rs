//! Incidents on GitHub: the [`Tracker`] that opens review issues, reminds, labels and opens
//! reverts through GitHub's API, and the worker's entry points into the forge-neutral steps of
//! [`crate::incident::flow`] (a merged pull request, a closed issue, a deadline).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::api::{self, ApiError, Identity, encode_component};
use super::facts::{Gatherer, Login, PolicyAt, PullRequest};
use super::publish;
use super::worker::{GithubWorker, Job, JobKind, desk_error, ledger_error};
use crate::event::InstallationId;
use crate::incident::flow::{self, Deadline, IssueNow, Merged, Revert, Tracker};
use crate::incident::{self, Reviewers};
use crate::ledger::decide::Context;
use crate::policy::commands::Rollback;
use crate::queue::runner::BoxFuture;
use crate::schedule::Due;
use crate::scheduler::DeadlineHandler;

/// The forge's name in the incident store, the ledger and deadline kinds.
const FORGE: &str = "github";

#[derive(Deserialize)]
struct Created {
    number: u64,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Deserialize)]
struct GitObject {
    sha: String,
}

#[derive(Deserialize)]
struct GitCommit {
    sha: String,
    tree: GitObject,
    #[serde(default)]
    parents: Vec<GitObject>,
}

#[derive(Deserialize)]
struct Issue {
    state: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    assignees: Vec<Login>,
    #[serde(default)]
    closed_by: Option<Login>,
}

#[derive(Deserialize)]
struct IssueComment {
    user: Option<Login>,
    body: Option<String>,
}

/// One repository on GitHub, as the incident steps see it.
struct GithubTracker<'a> {
    worker: &'a GithubWorker,
    client: Arc<octocrab::Octocrab>,
    repo: &'a str,
    installation: Option<InstallationId>,
    identity: Identity,
    /// The merged pull request being acted on (to revert it).
    merged: Option<&'a PullRequest>,
}

impl Tracker for GithubTracker<'_> {
    type Error = ApiError;

    fn forge(&self) -> &'static str {
        FORGE
    }

    fn repo(&self) -> &str {
        self.repo
    }

    fn via(&self) -> Option<u64> {
        self.installation.map(|i| i.0)
    }

    fn change_ref(&self, number: u64) -> String {
        format!("#{number}")
    }

    fn store_error(&self, what: &str, error: String) -> ApiError {
        ApiError::Store {
            what: what.to_owned(),
            message: error,
        }
    }

    async fn open_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[&str],
        reviewers: &Reviewers,
    ) -> Result<(u64, String), ApiError> {
        let route = format!("/repos/{}/issues", self.repo);
        let created: Created = match self
            .client
            .post(
                &route,
                Some(&json!({
                    "title": title, "body": body, "labels": labels, "assignees": reviewers.users,
                })),
            )
            .await
        {
            Ok(created) => created,
            // Someone listed cannot be assigned (no access): open it anyway; the body names them.
            Err(octocrab::Error::GitHub { source, .. })
                if source.status_code.as_u16() == 422 && !reviewers.users.is_empty() =>
            {
                tracing::warn!(message = %source.message, "cannot assign the reviewers; opening the review unassigned");
                self.client
                    .post(
                        &route,
                        Some(&json!({ "title": title, "body": body, "labels": labels })),
                    )
                    .await?
            }
            Err(error) => return Err(error.into()),
        };
        Ok((created.number, created.html_url.unwrap_or_default()))
    }

    async fn find_issue(&self, title: &str) -> Result<Option<(u64, String)>, ApiError> {
        #[derive(Deserialize)]
        struct Listed {
            number: u64,
            title: String,
            html_url: Option<String>,
        }
        let route = format!(
            "/repos/{}/issues?state=all&labels={}&creator={}",
            self.repo,
            encode_component(incident::REVIEW_LABEL),
            encode_component(&self.identity.login)
        );
        let listed: Vec<Listed> = api::all_pages(&self.client, &route, usize::MAX).await?;
        Ok(listed
            .into_iter()
            .find(|issue| issue.title == title)
            .map(|issue| (issue.number, issue.html_url.unwrap_or_default())))
    }

    async fn issue(&self, number: u64) -> Result<IssueNow, ApiError> {
        let repo = self.repo;
        let issue: Issue = self
            .client
            .get(format!("/repos/{repo}/issues/{number}"), None::<&()>)
            .await?;
        Ok(IssueNow {
            closed: issue.state == "closed",
            body: issue.body.unwrap_or_default(),
            assignees: issue.assignees.into_iter().map(|a| a.login).collect(),
            closed_by: issue.closed_by.map(|l| l.login),
        })
    }

    async fn reminded(&self, number: u64) -> Result<bool, ApiError> {
        let repo = self.repo;
        let comments: Vec<IssueComment> = api::all_pages(
            &self.client,
            &format!("/repos/{repo}/issues/{number}/comments"),
            usize::MAX,
        )
        .await?;
        Ok(comments.iter().any(|c| {
            c.user
                .as_ref()
                .is_some_and(|u| u.login.eq_ignore_ascii_case(&self.identity.login))
                && c.body
                    .as_deref()
                    .unwrap_or_default()
                    .contains(incident::REMINDER_MARKER)
        }))
    }

    async fn comment_on_issue(&self, number: u64, body: &str) -> Result<(), ApiError> {
        self.comment_on_change(number, body).await
    }

    async fn label(&self, number: u64, labels: &[&str]) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .client
            .post(
                format!("/repos/{}/issues/{number}/labels", self.repo),
                Some(&json!({ "labels": labels })),
            )
            .await?;
        Ok(())
    }

    async fn heads(&self, change: u64) -> Result<(String, String), ApiError> {
        let gatherer = Gatherer {
            client: &self.client,
            repo: self.repo,
            caches: &self.worker.caches,
        };
        let pr = gatherer.pull_request(change).await?;
        Ok((pr.head.sha, pr.base.sha))
    }

    async fn open_revert(
        &self,
        change: u64,
        title: &str,
        body: &str,
        rollback: &Rollback,
    ) -> Result<Revert, ApiError> {
        let pr = self
            .merged
            .filter(|pr| pr.number == change)
            .ok_or_else(|| ApiError::Unexpected {
                what: "a rollback".to_owned(),
                message: format!("#{change} is not at hand"),
            })?;
        let revert = self.create_revert(pr, title, body, rollback).await?;
        self.label(
            revert.number,
            &[incident::EMERGENCY_LABEL, &rollback.ticket],
        )
        .await?;
        Ok(revert)
    }

    async fn comment_on_change(&self, change: u64, body: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .client
            .post(
                format!("/repos/{}/issues/{change}/comments", self.repo),
                Some(&json!({ "body": body })),
            )
            .await?;
        Ok(())
    }

    async fn evaluate_later(&self, change: u64) {
        let job = Job {
            repo: self.repo.to_owned(),
            number: change,
            installation: self.installation,
            reset_first: false,
            delivery: None,
            kind: JobKind::Change,
        };
        if let Err(error) = self.worker.enqueue(vec![job], None).await {
            // GitHub's `pull_request.opened` delivery queues it too.
            tracing::warn!(%error, "cannot queue the revert's evaluation");
        }
    }
}

impl GithubTracker<'_> {
    /// Opens the revert: with the Git Data API when the merge is the base branch's tip and its
    /// first parent is the base before the merge (a merge commit, or a one-commit merge);
    /// otherwise with GitHub's own `revertPullRequest`, which knows how the pull request landed.
    async fn create_revert(
        &self,
        pr: &PullRequest,
        title: &str,
        body: &str,
        rollback: &Rollback,
    ) -> Result<Revert, ApiError> {
        let (client, repo) = (&self.client, self.repo);
        let merge_sha = pr
            .merge_commit_sha
            .clone()
            .ok_or_else(|| ApiError::Unexpected {
                what: format!("pull request #{}", pr.number),
                message: "merged, but GitHub names no merge commit".to_owned(),
            })?;
        let tip: GitRef = client
            .get(
                format!("/repos/{repo}/git/ref/heads/{}", encode_ref(&pr.base.name)),
                None::<&()>,
            )
            .await?;
        let merge: GitCommit = client
            .get(
                format!("/repos/{repo}/git/commits/{merge_sha}"),
                None::<&()>,
            )
            .await?;
        if tip.object.sha == merge_sha
            && (merge.parents.len() == 2 || pr.commits == 1)
            && let Some(parent) = merge.parents.first()
        {
            let parent: GitCommit = client
                .get(
                    format!("/repos/{repo}/git/commits/{}", parent.sha),
                    None::<&()>,
                )
                .await?;
            let message = format!(
                "Revert \"{}\" (#{})\n\nThis reverts #{} (merge {merge_sha}) for {}, as {} asked.",
                pr.title, pr.number, pr.number, rollback.ticket, rollback.by
            );
            let commit: GitCommit = client
                .post(
                    format!("/repos/{repo}/git/commits"),
                    Some(
                        &json!({ "message": message, "tree": parent.tree.sha, "parents": [merge.sha] }),
                    ),
                )
                .await?;
            let branch = format!(
                "tollgate/revert-{}-{}",
                pr.number,
                rollback.at.timestamp_millis()
            );
            let _: serde_json::Value = client
                .post(
                    format!("/repos/{repo}/git/refs"),
                    Some(&json!({ "ref": format!("refs/heads/{branch}"), "sha": commit.sha })),
                )
                .await?;
            let created: Created = client
                .post(
                    format!("/repos/{repo}/pulls"),
                    Some(
                        &json!({ "title": title, "head": branch, "base": pr.base.name, "body": body }),
                    ),
                )
                .await?;
            return Ok(Revert {
                number: created.number,
                head: commit.sha,
                url: created.html_url,
            });
        }
        let node = pr.node_id.clone().ok_or_else(|| ApiError::Unexpected {
            what: format!("pull request #{}", pr.number),
            message: "GitHub gave no node id to revert it by".to_owned(),
        })?;
        let answer: serde_json::Value = client
            .graphql(&json!({
                "query": "mutation($input: RevertPullRequestInput!) { revertPullRequest(input: $input) { revertPullRequest { number url } } }",
                "variables": { "input": { "pullRequestId": node, "title": title, "body": body } },
            }))
            .await?;
        // octocrab hands back GraphQL's `data` member (errors come as an `Err`).
        let Some(number) = answer["revertPullRequest"]["revertPullRequest"]["number"].as_u64()
        else {
            return Err(ApiError::Unexpected {
                what: "the revertPullRequest mutation".to_owned(),
                message: format!("no pull request in the answer: {answer}"),
            });
        };
        let revert: PullRequest = client
            .get(format!("/repos/{repo}/pulls/{number}"), None::<&()>)
            .await?;
        Ok(Revert {
            number,
            head: revert.head.sha,
            url: revert.html_url,
        })
    }
}

/// A branch name in a `git/ref/heads/…` path: each segment encoded, the slashes kept.
fn encode_ref(branch: &str) -> String {
    branch
        .split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

impl GithubWorker {
    async fn tracker<'a>(
        &'a self,
        repo: &'a str,
        installation: Option<InstallationId>,
        merged: Option<&'a PullRequest>,
    ) -> Result<GithubTracker<'a>, ApiError> {
        Ok(GithubTracker {
            worker: self,
            client: self.api.client(installation)?,
            repo,
            installation,
            identity: self.identity().await?.clone(),
            merged,
        })
    }

    /// A merged pull request: its review if a bypass carried it, the rollbacks asked for since.
    pub(super) async fn after_merge(
        &self,
        job: &Job,
        gatherer: &Gatherer<'_>,
        identity: &Identity,
        pr: &PullRequest,
    ) -> Result<(), ApiError> {
        let Some(desk) = &self.desk else {
            return Ok(());
        };
        let (policy, policy_sha) = match gatherer.policy(&pr.base.sha).await? {
            PolicyAt::Valid(policy, sha) => (policy, Some(sha)),
            PolicyAt::Absent => match &self.default_policy {
                Some(policy) => (Arc::clone(policy), None),
                None => return Ok(()),
            },
            // The open pull request's check said so; nothing can be decided under it now.
            PolicyAt::Invalid(..) => return Ok(()),
        };
        if !policy.governed_branches.matches(&pr.base.name) {
            return Ok(());
        }
        let now = self.clock.now();
        let merged_at = pr.merged_at.unwrap_or(now);
        let granted = desk
            .granted_bypass(&job.repo, job.number)
            .await
            .map_err(desk_error)?;
        let mut gathered = match gatherer
            .facts(&policy, pr, &identity.login, now, granted)
            .await
        {
            Ok(gathered) => gathered,
            Err(super::facts::GatherError::Api(error)) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "cannot judge the merged change");
                return Ok(());
            }
        };
        desk.stores()
            .audit
            .pin_command_heads(&job.repo, job.number, &mut gathered.facts.comments)
            .await
            .map_err(ledger_error)?;
        let context = Context {
            forge: FORGE.to_owned(),
            repo: job.repo.clone(),
            number: job.number,
            head_sha: pr.head.sha.clone(),
            base_sha: pr.base.sha.clone(),
            policy_sha,
            delivery: job.delivery.clone(),
            time_ms: now.timestamp_millis(),
        };
        let merged = Merged {
            number: job.number,
            title: pr.title.clone(),
            url: pr.html_url.clone(),
            merged_at,
            merged_by: pr.merged_by.as_ref().map(|l| l.login.clone()),
        };
        let overdue_then = desk
            .blocking_reviews(&policy, &job.repo, merged_at)
            .await
            .map_err(desk_error)?;
        let overdue_now = desk
            .blocking_reviews(&policy, &job.repo, now)
            .await
            .map_err(desk_error)?;
        let tracker = self.tracker(&job.repo, job.installation, Some(pr)).await?;
        let refused = flow::after_merge(
            &tracker,
            desk.stores(),
            &policy,
            gathered.facts,
            &merged,
            &context,
            overdue_then,
            overdue_now,
        )
        .await?;
        publish::reply_to_refused_commands(
            gatherer.client,
            &job.repo,
            job.number,
            identity,
            &refused,
            &gathered.comments,
        )
        .await
    }

    /// An issue was closed: if it is a post-incident review, the review is recorded done.
    pub(super) async fn issue_closed(&self, job: &Job, by: &str) -> Result<(), ApiError> {
        let Some(desk) = &self.desk else {
            return Ok(());
        };
        let tracker = self.tracker(&job.repo, job.installation, None).await?;
        flow::issue_closed(&tracker, desk.stores(), job.number, by, self.clock.now()).await
    }
}

impl DeadlineHandler for GithubWorker {
    fn handle<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (deadline, payload) = flow::read_deadline(FORGE, due)?;
            let installation = payload.via.map(InstallationId);
            match deadline {
                Deadline::ReviewDue { issue } => {
                    let Some(desk) = &self.desk else {
                        return Ok(());
                    };
                    let tracker = self
                        .tracker(&payload.repo, installation, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    flow::review_due(&tracker, desk.stores(), issue, self.clock.now())
                        .await
                        .map_err(|e| e.to_string())
                }
                Deadline::BypassExpired { change } => {
                    let job = Job {
                        repo: payload.repo,
                        number: change,
                        installation,
                        reset_first: false,
                        delivery: None,
                        kind: JobKind::Change,
                    };
                    self.enqueue(vec![job], None)
                        .await
                        .map_err(|e| e.to_string())
                }
            }
        })
    }
}
