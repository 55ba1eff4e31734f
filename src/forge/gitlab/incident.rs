//! Incidents on GitLab: the [`Tracker`] that opens review issues, reminds, labels, and opens
//! reverts with the commit revert API, and the worker's entry points into the forge-neutral
//! steps of [`crate::incident::flow`]. No line tollgate writes starts with `/` (GitLab would run
//! it as a quick action): the texts come from [`crate::incident`], which keeps to that.

use std::sync::Arc;

use super::api::{GitlabApi, GitlabError, MergeRequest, UserRef};
use super::facts::{GatherError, gather};
use super::publish::reply_to_refused_commands;
use super::worker::{GitlabWorker, Job, JobKind, ledger_error};
use crate::forge::PolicyAt;
use crate::incident::flow::{self, Deadline, IssueNow, Merged, Revert, Tracker};
use crate::incident::{self, Reviewers};
use crate::ledger::decide::Context;
use crate::policy::commands::Rollback;
use crate::queue::runner::BoxFuture;
use crate::schedule::Due;
use crate::scheduler::DeadlineHandler;

/// The forge's name in the incident store, the ledger and deadline kinds.
const FORGE: &str = "gitlab";

/// One project on GitLab, as the incident steps see it.
struct GitlabTracker<'a> {
    worker: &'a GitlabWorker,
    project: u64,
    path: &'a str,
    bot: UserRef,
    /// The merged merge request being acted on (to revert it).
    merged: Option<&'a MergeRequest>,
}

impl GitlabTracker<'_> {
    fn api(&self) -> &GitlabApi {
        &self.worker.api
    }
}

impl Tracker for GitlabTracker<'_> {
    type Error = GitlabError;

    fn forge(&self) -> &'static str {
        FORGE
    }

    fn repo(&self) -> &str {
        self.path
    }

    fn via(&self) -> Option<u64> {
        Some(self.project)
    }

    fn change_ref(&self, number: u64) -> String {
        format!("!{number}")
    }

    fn store_error(&self, what: &str, error: String) -> GitlabError {
        GitlabError::Store {
            what: what.to_owned(),
            message: error,
        }
    }

    async fn open_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[&str],
        _reviewers: &Reviewers,
    ) -> Result<(u64, String), GitlabError> {
        // The reviewers are @mentioned in the body (GitLab notifies them); assigning needs user
        // ids, and GitLab Free takes one assignee only.
        let issue = self
            .api()
            .create_issue(self.project, title, body, labels)
            .await?;
        Ok((issue.iid, issue.web_url))
    }

    async fn find_issue(&self, title: &str) -> Result<Option<(u64, String)>, GitlabError> {
        let issues = self
            .api()
            .issues_labelled(self.project, incident::REVIEW_LABEL, self.bot.id)
            .await?;
        Ok(issues
            .into_iter()
            .find(|issue| issue.title == title)
            .map(|issue| (issue.iid, issue.web_url)))
    }

    async fn issue(&self, number: u64) -> Result<IssueNow, GitlabError> {
        let issue = self.api().issue(self.project, number).await?;
        Ok(IssueNow {
            closed: issue.state == "closed",
            body: issue.description.unwrap_or_default(),
            assignees: issue.assignees.into_iter().map(|a| a.username).collect(),
            closed_by: issue.closed_by.map(|u| u.username),
        })
    }

    async fn reminded(&self, number: u64) -> Result<bool, GitlabError> {
        let notes = self.api().issue_notes(self.project, number).await?;
        Ok(notes
            .iter()
            .any(|n| n.author.id == self.bot.id && n.body.contains(incident::REMINDER_MARKER)))
    }

    async fn comment_on_issue(&self, number: u64, body: &str) -> Result<(), GitlabError> {
        self.api()
            .create_issue_note(self.project, number, body)
            .await
            .map(drop)
    }

    async fn label(&self, number: u64, labels: &[&str]) -> Result<(), GitlabError> {
        self.api()
            .add_labels(self.project, "issues", number, labels)
            .await
    }

    async fn heads(&self, change: u64) -> Result<(String, String), GitlabError> {
        let mr = self.api().merge_request(self.project, change).await?;
        let (head, base) = match &mr.diff_refs {
            Some(refs) => (refs.head_sha.clone(), refs.base_sha.clone()),
            None => (mr.sha.clone().unwrap_or_default(), String::new()),
        };
        Ok((head, base))
    }

    async fn open_revert(
        &self,
        change: u64,
        title: &str,
        body: &str,
        rollback: &Rollback,
    ) -> Result<Revert, GitlabError> {
        let mr = self
            .merged
            .filter(|mr| mr.iid == change)
            .ok_or_else(|| GitlabError::Setup(format!("a rollback: !{change} is not at hand")))?;
        // The commit the merge put on the target branch: its merge commit, or its squashed
        // commit; a fast-forward merge of several commits has neither and cannot be reverted
        // as one.
        let sha = mr
            .merge_commit_sha
            .clone()
            .or_else(|| mr.squash_commit_sha.clone())
            .ok_or_else(|| {
                GitlabError::Setup(format!(
                    "!{change} was merged without a merge or squash commit (fast-forward); revert its commits by hand"
                ))
            })?;
        let api = self.api();
        let branch = format!(
            "tollgate/revert-{}-{}",
            mr.iid,
            rollback.at.timestamp_millis()
        );
        api.create_branch(self.project, &branch, &mr.target_branch)
            .await?;
        let commit = api.revert_commit(self.project, &sha, &branch).await?;
        let labels = [incident::EMERGENCY_LABEL, rollback.ticket.as_str()];
        let created = api
            .create_merge_request(
                self.project,
                &branch,
                &mr.target_branch,
                title,
                body,
                &labels,
            )
            .await?;
        Ok(Revert {
            number: created.iid,
            head: commit.id,
            url: Some(created.web_url),
        })
    }

    async fn comment_on_change(&self, change: u64, body: &str) -> Result<(), GitlabError> {
        self.api()
            .create_note(self.project, change, body)
            .await
            .map(drop)
    }

    async fn evaluate_later(&self, change: u64) {
        let job = Job {
            project: self.project,
            path: self.path.to_owned(),
            iid: change,
            reset_first: false,
            delivery: None,
            kind: JobKind::Change,
        };
        if let Err(error) = self.worker.enqueue(vec![job], None).await {
            // GitLab's merge request hook for the new merge request queues it too.
            tracing::warn!(%error, "cannot queue the revert's evaluation");
        }
    }
}

impl GitlabWorker {
    async fn tracker<'a>(
        &'a self,
        project: u64,
        path: &'a str,
        merged: Option<&'a MergeRequest>,
    ) -> Result<GitlabTracker<'a>, GitlabError> {
        Ok(GitlabTracker {
            worker: self,
            project,
            path,
            bot: self.identity().await?.clone(),
            merged,
        })
    }

    /// A merged merge request: its review if a bypass carried it, the rollbacks asked since.
    pub(super) async fn after_merge(
        &self,
        job: &Job,
        mr: &MergeRequest,
        bot: &UserRef,
    ) -> Result<(), GitlabError> {
        let Some(desk) = &self.desk else {
            return Ok(());
        };
        let Some(refs) = &mr.diff_refs else {
            return Ok(());
        };
        let (policy, policy_sha) = match self.policy(job.project, &refs.base_sha).await? {
            PolicyAt::Valid(policy, sha) => (policy, Some(sha)),
            PolicyAt::Absent => match &self.default_policy {
                Some(policy) => (Arc::clone(policy), None),
                None => return Ok(()),
            },
            PolicyAt::Invalid(..) => return Ok(()),
        };
        if !policy.governed_branches.matches(&mr.target_branch) {
            return Ok(());
        }
        let now = self.clock.now();
        let merged_at = mr.merged_at.unwrap_or(now);
        let granted = desk
            .granted_bypass(&job.path, job.iid)
            .await
            .map_err(GitlabError::Setup)?;
        let mut gathered =
            match gather(&self.api, job.project, mr, &policy, bot, now, granted).await {
                Ok(gathered) => gathered,
                Err(GatherError::Api(error)) => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "cannot judge the merged change");
                    return Ok(());
                }
            };
        desk.stores()
            .audit
            .pin_command_heads(&job.path, job.iid, &mut gathered.facts.comments)
            .await
            .map_err(ledger_error)?;
        let context = Context {
            forge: FORGE.to_owned(),
            repo: job.path.clone(),
            number: job.iid,
            head_sha: refs.head_sha.clone(),
            base_sha: refs.base_sha.clone(),
            policy_sha,
            delivery: job.delivery.clone(),
            time_ms: now.timestamp_millis(),
        };
        let merged = Merged {
            number: job.iid,
            title: mr.title.clone(),
            url: Some(mr.web_url.clone()),
            merged_at,
            merged_by: mr
                .merge_user
                .as_ref()
                .or(mr.merged_by.as_ref())
                .map(|u| u.username.clone()),
        };
        let overdue_then = desk
            .blocking_reviews(&policy, &job.path, merged_at)
            .await
            .map_err(GitlabError::Setup)?;
        let overdue_now = desk
            .blocking_reviews(&policy, &job.path, now)
            .await
            .map_err(GitlabError::Setup)?;
        let tracker = self.tracker(job.project, &job.path, Some(mr)).await?;
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
        reply_to_refused_commands(
            &self.api,
            job.project,
            job.iid,
            bot,
            &refused,
            &gathered.notes,
        )
        .await
    }

    /// An issue was closed: if it is a post-incident review, the review is recorded done.
    pub(super) async fn issue_closed(&self, job: &Job, by: &str) -> Result<(), GitlabError> {
        let Some(desk) = &self.desk else {
            return Ok(());
        };
        let tracker = self.tracker(job.project, &job.path, None).await?;
        flow::issue_closed(&tracker, desk.stores(), job.iid, by, self.clock.now()).await
    }
}

impl DeadlineHandler for GitlabWorker {
    fn handle<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (deadline, payload) = flow::read_deadline(FORGE, due)?;
            let Some(project) = payload.via else {
                return Err(format!("deadline {} names no project", due.key));
            };
            match deadline {
                Deadline::ReviewDue { issue } => {
                    let Some(desk) = &self.desk else {
                        return Ok(());
                    };
                    let tracker = self
                        .tracker(project, &payload.repo, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    flow::review_due(&tracker, desk.stores(), issue, self.clock.now())
                        .await
                        .map_err(|e| e.to_string())
                }
                Deadline::BypassExpired { change } => {
                    let job = Job {
                        project,
                        path: payload.repo,
                        iid: change,
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
