//! Incidents on GitHub: a pull request merged under a bypass gets its post-incident review
//! issue; `/tollgate rollback` on a merged pull request opens the revert; the scheduler's
//! deadlines post the one reminder on an overdue review and re-evaluate a change whose bypass
//! expired; closing a review issue records the review. Every step is a signed ledger record.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

use super::api::{self, ApiError, Identity, encode_component};
use super::facts::{Gatherer, PolicyAt, PullRequest};
use super::publish;
use super::worker::{GithubWorker, Job, JobKind, ledger_error};
use crate::incident::store::{self, Review, ReviewState};
use crate::incident::{self, DeadlinePayload};
use crate::ledger::decide::{self, Context, command_name, incident_record};
use crate::ledger::record::RecordKind;
use crate::policy::commands::{self, Rollback};
use crate::policy::decision::{CommandRecord, Outcome};
use crate::policy::facts::{Comment, OverdueReview};
use crate::policy::{Decision, Policy, evaluate};
use crate::queue::runner::BoxFuture;
use crate::schedule::Due;
use crate::scheduler::DeadlineHandler;

/// The forge's name in the incident store, the ledger and deadline kinds.
const FORGE: &str = "github";

fn store_error(what: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::Unexpected {
        what: what.to_owned(),
        message: error.to_string(),
    }
}

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
    assignees: Vec<super::facts::Login>,
    #[serde(default)]
    closed_by: Option<super::facts::Login>,
}

#[derive(Deserialize)]
struct IssueComment {
    user: Option<super::facts::Login>,
    body: Option<String>,
}

impl GithubWorker {
    fn incidents(
        &self,
    ) -> Option<(
        &Arc<crate::ledger::Audit>,
        &store::Incidents,
        &crate::schedule::Schedule,
    )> {
        let audit = self.audit.as_ref()?;
        let (incidents, schedule) = self.incidents.as_ref()?;
        Some((audit, incidents, schedule))
    }

    /// The bypass a rollback holds for its revert pull request, as the command its requester
    /// gave: judged like theirs (role, access, head, expiry), read from tollgate's own store.
    pub(super) async fn granted_bypass(
        &self,
        repo: &str,
        number: u64,
    ) -> Result<Option<Comment>, ApiError> {
        let Some((_, incidents, _)) = self.incidents() else {
            return Ok(None);
        };
        let rollback = incidents
            .rollback_for_revert(FORGE, repo, number)
            .await
            .map_err(|e| store_error("the incident store", e))?;
        Ok(rollback.and_then(|r| {
            let at = DateTime::from_timestamp_millis(r.requested_ms)?;
            let reason = if r.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", r.reason)
            };
            Some(Comment {
                author: r.requested_by,
                body: format!(
                    "{} bypass {} rollback of #{}{reason}",
                    commands::COMMAND_PREFIX,
                    r.ticket,
                    r.change
                ),
                at,
                head_sha: r.revert_head?,
                edited: false,
            })
        }))
    }

    /// The repository's post-incident reviews overdue at `at`.
    pub(super) async fn overdue_reviews(
        &self,
        repo: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<OverdueReview>, ApiError> {
        let Some((_, incidents, _)) = self.incidents() else {
            return Ok(Vec::new());
        };
        let rows = incidents
            .overdue_at(FORGE, repo, at.timestamp_millis())
            .await
            .map_err(|e| store_error("the incident store", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(OverdueReview {
                    issue: r.issue?,
                    change: r.change,
                    ticket: r.ticket,
                    due: DateTime::from_timestamp_millis(r.due_ms)?,
                })
            })
            .collect())
    }

    /// A bypassed change is evaluated again when its bypass expires, so that its check does
    /// not stay green on a bypass that no longer counts.
    pub(super) async fn schedule_bypass_expiry(
        &self,
        job: &Job,
        decision: &Decision,
    ) -> Result<(), ApiError> {
        let (Outcome::Bypassed { expires_at, .. }, Some((_, _, schedule))) =
            (&decision.outcome, self.incidents())
        else {
            return Ok(());
        };
        let expires_ms = expires_at.timestamp_millis();
        let payload = DeadlinePayload {
            repo: job.repo.clone(),
            installation: job.installation.map(|i| i.0),
            change: job.number,
            issue: None,
        };
        schedule
            .schedule(
                &incident::bypass_expiry_key(FORGE, &job.repo, job.number, expires_ms),
                &format!("{FORGE}:{}", incident::BYPASS_EXPIRY),
                expires_ms,
                &serde_json::to_string(&payload).unwrap_or_default(),
            )
            .await
            .map_err(|e| store_error("the schedule", e))?;
        Ok(())
    }

    /// A merged pull request: if a bypass carried it at the merge, its post-incident review is
    /// opened; rollback commands given on it are answered.
    pub(super) async fn after_merge(
        &self,
        job: &Job,
        gatherer: &Gatherer<'_>,
        identity: &Identity,
        pr: &PullRequest,
    ) -> Result<(), ApiError> {
        let Some((audit, _, _)) = self.incidents() else {
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
        let granted = self.granted_bypass(&job.repo, job.number).await?;
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
        audit
            .pin_command_heads(&job.repo, job.number, &mut gathered.facts.comments)
            .await
            .map_err(ledger_error)?;
        gathered.facts.merged = true;
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

        // What carried the change at the merge: the commands given until then, judged then.
        let mut at_merge = gathered.facts.clone();
        at_merge.now = merged_at;
        at_merge.comments.retain(|c| c.at <= merged_at);
        at_merge.overdue_reviews = self.overdue_reviews(&job.repo, merged_at).await?;
        let decision = evaluate(&policy, &at_merge);
        if let Outcome::Bypassed {
            by, ticket, reason, ..
        } = &decision.outcome
        {
            let bypass = commands::Bypass {
                by: by.clone(),
                ticket: ticket.clone(),
                reason: reason.clone(),
                expires_at: merged_at,
                review_due: merged_at,
            };
            self.merged_under_bypass(job, pr, &policy, &decision, &bypass, merged_at, &context)
                .await?;
        }

        // Rollback requests, judged now: only those given after the merge (one given before was
        // answered then, and must not turn into a rollback when the change merges).
        let mut facts = gathered.facts;
        facts.now = now;
        facts.comments.retain(|c| c.at > merged_at);
        if policy
            .emergency
            .as_ref()
            .is_some_and(|e| e.overdue_review_blocks_bypass)
        {
            facts.overdue_reviews = self.overdue_reviews(&job.repo, now).await?;
        }
        let read = commands::read(&policy, &facts);
        let rollback_commands: Vec<CommandRecord> = read
            .records
            .into_iter()
            .filter(|c| command_name(&c.command) == Some("rollback"))
            .collect();
        let keys = decide::command_keys(&rollback_commands);
        for (command, key) in rollback_commands.iter().zip(keys) {
            let kind = if command.honoured {
                RecordKind::RollbackRequested
            } else {
                RecordKind::RollbackRefused
            };
            let record = incident_record(
                &context,
                kind,
                Some(&command.author),
                if command.honoured {
                    "rollback_requested"
                } else {
                    "rollback_refused"
                },
                format!("`{}`: {}", command.command, command.note),
            );
            audit
                .record_once(&key, record)
                .await
                .map_err(ledger_error)?;
        }
        let client = gatherer.client;
        publish::reply_to_refused_commands(
            client,
            &job.repo,
            job.number,
            identity,
            &rollback_commands,
            &gathered.comments,
        )
        .await?;
        for rollback in &read.rollbacks {
            self.roll_back(job, client, pr, rollback, &context).await?;
        }
        Ok(())
    }

    /// Records the merge under a bypass and opens the post-incident review (once).
    #[allow(clippy::too_many_arguments)]
    async fn merged_under_bypass(
        &self,
        job: &Job,
        pr: &PullRequest,
        policy: &Policy,
        decision: &Decision,
        bypass: &commands::Bypass,
        merged_at: DateTime<Utc>,
        context: &Context,
    ) -> Result<(), ApiError> {
        let Some((audit, incidents, schedule)) = self.incidents() else {
            return Ok(());
        };
        let Some(emergency) = &policy.emergency else {
            return Ok(());
        };
        let when = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
        let merged_by = pr.merged_by.as_ref().map(|l| l.login.as_str());
        let record = incident_record(
            context,
            RecordKind::MergedUnderBypass,
            Some(&bypass.by),
            "bypassed",
            format!(
                "merged {}{} under the bypass by {} for {}: {}",
                when(merged_at),
                merged_by.map(|m| format!(" by {m}")).unwrap_or_default(),
                bypass.by,
                bypass.ticket,
                bypass.reason
            ),
        );
        audit
            .record_once(&format!("merged_under_bypass:{}", pr.head.sha), record)
            .await
            .map_err(ledger_error)?;

        let due = merged_at + TimeDelta::hours(i64::from(emergency.review_within_hours));
        let review = incidents
            .begin_review(&Review {
                forge: FORGE.to_owned(),
                repo: job.repo.clone(),
                change: job.number,
                ticket: bypass.ticket.clone(),
                bypassed_by: bypass.by.clone(),
                merged_ms: merged_at.timestamp_millis(),
                due_ms: due.timestamp_millis(),
                state: ReviewState::Opening,
                issue: None,
                issue_url: None,
                reminded_ms: None,
                closed_ms: None,
                closed_by: None,
            })
            .await
            .map_err(|e| store_error("the incident store", e))?;
        if review.state != ReviewState::Opening {
            return Ok(()); // opened already (a redelivered merge, a recheck)
        }
        let reviewers = incident::reviewers(policy, decision);
        let change_ref = format!("#{}", job.number);
        let body = incident::review_body(&incident::ReviewText {
            change_ref: change_ref.clone(),
            title: &pr.title,
            change_url: pr.html_url.as_deref(),
            ticket: &bypass.ticket,
            bypassed_by: &bypass.by,
            reason: &bypass.reason,
            merged_at,
            due,
            within_hours: emergency.review_within_hours,
            repo: &job.repo,
            number: job.number,
            reviewers: &reviewers,
        });
        let client = self.api.client(job.installation)?;
        let title = incident::review_title(&change_ref, &bypass.ticket);
        let labels = [incident::REVIEW_LABEL, bypass.ticket.as_str()];
        let route = format!("/repos/{}/issues", job.repo);
        let created: Created = match client
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
                client
                    .post(
                        &route,
                        Some(&json!({ "title": title, "body": body, "labels": labels })),
                    )
                    .await?
            }
            Err(error) => return Err(error.into()),
        };
        let url = created.html_url.clone().unwrap_or_default();
        incidents
            .review_opened(FORGE, &job.repo, job.number, created.number, &url)
            .await
            .map_err(|e| store_error("the incident store", e))?;
        let payload = DeadlinePayload {
            repo: job.repo.clone(),
            installation: job.installation.map(|i| i.0),
            change: job.number,
            issue: Some(created.number),
        };
        schedule
            .schedule(
                &incident::review_due_key(FORGE, &job.repo, created.number),
                &format!("{FORGE}:{}", incident::REVIEW_DUE),
                due.timestamp_millis(),
                &serde_json::to_string(&payload).unwrap_or_default(),
            )
            .await
            .map_err(|e| store_error("the schedule", e))?;
        let record = incident_record(
            context,
            RecordKind::ReviewOpened,
            None,
            "review_open",
            format!(
                "post-incident review #{} opened for {}, due {}",
                created.number,
                bypass.ticket,
                when(due)
            ),
        );
        audit
            .record_once(&format!("review_opened:{}", created.number), record)
            .await
            .map_err(ledger_error)?;
        tracing::info!(issue = created.number, ticket = %bypass.ticket, "post-incident review opened");
        Ok(())
    }

    /// Opens the revert of a merged pull request for an honoured rollback request (once per
    /// request), answers on the pull request and queues the revert's evaluation.
    async fn roll_back(
        &self,
        job: &Job,
        client: &octocrab::Octocrab,
        pr: &PullRequest,
        rollback: &Rollback,
        context: &Context,
    ) -> Result<(), ApiError> {
        let Some((audit, incidents, _)) = self.incidents() else {
            return Ok(());
        };
        let stored = incidents
            .begin_rollback(&store::Rollback {
                forge: FORGE.to_owned(),
                repo: job.repo.clone(),
                change: job.number,
                requested_by: rollback.by.clone(),
                requested_ms: rollback.at.timestamp_millis(),
                ticket: rollback.ticket.clone(),
                reason: rollback.reason.clone(),
                revert: None,
                revert_head: None,
                revert_url: None,
            })
            .await
            .map_err(|e| store_error("the incident store", e))?;
        if stored.revert.is_some() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (number, head, url) = self.create_revert(client, &job.repo, pr, rollback).await?;
        incidents
            .rollback_opened(&stored, number, &head, url.as_deref().unwrap_or_default())
            .await
            .map_err(|e| store_error("the incident store", e))?;
        let record = incident_record(
            context,
            RecordKind::RollbackOpened,
            Some(&rollback.by),
            "rollback_open",
            format!(
                "revert #{number} (head {}) opened for {} at the request of {}",
                crate::event::short_sha(&head),
                rollback.ticket,
                rollback.by
            ),
        );
        audit
            .record_once(
                &format!(
                    "rollback_opened:{}:{}",
                    rollback.by,
                    rollback.at.timestamp_millis()
                ),
                record,
            )
            .await
            .map_err(ledger_error)?;
        let reply = incident::rollback_reply(rollback, &format!("#{number}"), url.as_deref());
        let _: serde_json::Value = client
            .post(
                format!("/repos/{}/issues/{}/comments", job.repo, job.number),
                Some(&json!({ "body": reply })),
            )
            .await?;
        tracing::info!(revert = number, ticket = %rollback.ticket, elapsed_ms = started.elapsed().as_millis() as u64, "rollback opened");
        let revert_job = Job {
            repo: job.repo.clone(),
            number,
            installation: job.installation,
            reset_first: false,
            delivery: None,
            kind: JobKind::Change,
        };
        if let Err(error) = self.enqueue(vec![revert_job], None).await {
            // GitHub's `pull_request.opened` delivery queues it too.
            tracing::warn!(%error, "cannot queue the revert's evaluation");
        }
        Ok(())
    }

    /// Opens the revert: with the Git Data API when the merge is the base branch's tip and its
    /// first parent is the base before the merge (a merge commit, or a one-commit merge);
    /// otherwise with GitHub's own `revertPullRequest`, which knows how the pull request landed.
    /// Returns the revert's number, head and page.
    async fn create_revert(
        &self,
        client: &octocrab::Octocrab,
        repo: &str,
        pr: &PullRequest,
        rollback: &Rollback,
    ) -> Result<(u64, String, Option<String>), ApiError> {
        let title = incident::revert_title(&format!("#{}", pr.number), &pr.title, &rollback.ticket);
        let body = incident::revert_body(&format!("#{}", pr.number), rollback);
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
        let (number, head, url) = if tip.object.sha == merge_sha
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
                    Some(&json!({ "message": message, "tree": parent.tree.sha, "parents": [merge.sha] })),
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
                    Some(&json!({ "title": title, "head": branch, "base": pr.base.name, "body": body })),
                )
                .await?;
            (created.number, commit.sha, created.html_url)
        } else {
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
            let created = &answer["revertPullRequest"]["revertPullRequest"];
            let Some(number) = created["number"].as_u64() else {
                return Err(ApiError::Unexpected {
                    what: "the revertPullRequest mutation".to_owned(),
                    message: format!("no pull request in the answer: {answer}"),
                });
            };
            let revert: PullRequest = client
                .get(format!("/repos/{repo}/pulls/{number}"), None::<&()>)
                .await?;
            (number, revert.head.sha, revert.html_url)
        };
        let _: serde_json::Value = client
            .post(
                format!("/repos/{repo}/issues/{number}/labels"),
                Some(&json!({ "labels": [incident::EMERGENCY_LABEL, rollback.ticket] })),
            )
            .await?;
        Ok((number, head, url))
    }

    /// An issue was closed: if it is a post-incident review, the review is recorded done.
    pub(super) async fn issue_closed(&self, job: &Job, by: &str) -> Result<(), ApiError> {
        let Some((_, incidents, _)) = self.incidents() else {
            return Ok(());
        };
        let review = incidents
            .review_by_issue(FORGE, &job.repo, job.number)
            .await
            .map_err(|e| store_error("the incident store", e))?;
        match review {
            Some(review) if review.state != ReviewState::Closed => {
                let client = self.api.client(job.installation)?;
                let issue: Issue = client
                    .get(
                        format!("/repos/{}/issues/{}", job.repo, job.number),
                        None::<&()>,
                    )
                    .await?;
                // Reopened since the delivery was sent: not done after all.
                if issue.state != "closed" {
                    return Ok(());
                }
                self.record_review_closed(&client, &review, &issue, by)
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn record_review_closed(
        &self,
        client: &octocrab::Octocrab,
        review: &Review,
        issue: &Issue,
        by: &str,
    ) -> Result<(), ApiError> {
        let Some((audit, incidents, schedule)) = self.incidents() else {
            return Ok(());
        };
        let Some(number) = review.issue else {
            return Ok(());
        };
        let now = self.clock.now();
        let body = issue.body.as_deref().unwrap_or_default();
        let ticked = body
            .lines()
            .filter(|l| l.trim_start().starts_with("- [x]"))
            .count();
        let total = ticked
            + body
                .lines()
                .filter(|l| l.trim_start().starts_with("- [ ]"))
                .count();
        let late = now.timestamp_millis() - review.due_ms;
        let timing = if late > 0 {
            format!("{} hours after its due time", late / 3_600_000)
        } else {
            "on time".to_owned()
        };
        let context = self
            .change_context(client, &review.repo, review.change, now)
            .await?;
        let record = incident_record(
            &context,
            RecordKind::ReviewClosed,
            Some(by),
            "review_closed",
            format!(
                "post-incident review #{number} for {} closed by {by}, {timing}; checklist {ticked}/{total} ticked",
                review.ticket
            ),
        );
        audit
            .record_once(&format!("review_closed:{number}"), record)
            .await
            .map_err(ledger_error)?;
        incidents
            .review_closed(FORGE, &review.repo, number, by, now.timestamp_millis())
            .await
            .map_err(|e| store_error("the incident store", e))?;
        schedule
            .cancel(
                &incident::review_due_key(FORGE, &review.repo, number),
                now.timestamp_millis(),
            )
            .await
            .map_err(|e| store_error("the schedule", e))?;
        tracing::info!(issue = number, repo = %review.repo, "post-incident review closed");
        Ok(())
    }

    /// Where an incident step about a change is recorded: its current head and base.
    async fn change_context(
        &self,
        client: &octocrab::Octocrab,
        repo: &str,
        number: u64,
        now: DateTime<Utc>,
    ) -> Result<Context, ApiError> {
        let gatherer = Gatherer {
            client,
            repo,
            caches: &self.caches,
        };
        let pr = gatherer.pull_request(number).await?;
        Ok(Context {
            forge: FORGE.to_owned(),
            repo: repo.to_owned(),
            number,
            head_sha: pr.head.sha,
            base_sha: pr.base.sha,
            policy_sha: None,
            delivery: None,
            time_ms: now.timestamp_millis(),
        })
    }

    /// A review fell due: unless it was closed, remind once and label it overdue.
    async fn review_due(&self, payload: &DeadlinePayload) -> Result<(), ApiError> {
        let Some((audit, incidents, _)) = self.incidents() else {
            return Ok(());
        };
        let Some(number) = payload.issue else {
            return Ok(());
        };
        let review = incidents
            .review_by_issue(FORGE, &payload.repo, number)
            .await
            .map_err(|e| store_error("the incident store", e))?;
        let Some(review) = review.filter(|r| r.state != ReviewState::Closed) else {
            return Ok(());
        };
        let installation = payload.installation.map(crate::event::InstallationId);
        let client = self.api.client(installation)?;
        let identity = self.identity().await?.clone();
        let repo = &payload.repo;
        let issue: Issue = client
            .get(format!("/repos/{repo}/issues/{number}"), None::<&()>)
            .await?;
        if issue.state == "closed" {
            // Closed while tollgate missed the delivery: record it now instead of reminding.
            let by = issue
                .closed_by
                .as_ref()
                .map_or("unknown", |l| l.login.as_str())
                .to_owned();
            return self
                .record_review_closed(&client, &review, &issue, &by)
                .await;
        }
        let comments: Vec<IssueComment> = api::all_pages(
            &client,
            &format!("/repos/{repo}/issues/{number}/comments"),
            usize::MAX,
        )
        .await?;
        let reminded = comments.iter().any(|c| {
            c.user
                .as_ref()
                .is_some_and(|u| u.login.eq_ignore_ascii_case(&identity.login))
                && c.body
                    .as_deref()
                    .unwrap_or_default()
                    .contains(incident::REMINDER_MARKER)
        });
        let due = DateTime::from_timestamp_millis(review.due_ms).unwrap_or_default();
        if !reminded {
            let assignees: Vec<String> = issue.assignees.iter().map(|a| a.login.clone()).collect();
            let _: serde_json::Value = client
                .post(
                    format!("/repos/{repo}/issues/{number}/comments"),
                    Some(&json!({ "body": incident::reminder_body(due, &assignees) })),
                )
                .await?;
        }
        let _: serde_json::Value = client
            .post(
                format!("/repos/{repo}/issues/{number}/labels"),
                Some(&json!({ "labels": [incident::OVERDUE_LABEL] })),
            )
            .await?;
        let now = self.clock.now();
        let context = self
            .change_context(&client, repo, review.change, now)
            .await?;
        let record = incident_record(
            &context,
            RecordKind::ReviewOverdue,
            None,
            "review_overdue",
            format!(
                "post-incident review #{number} for {} was due {} and is still open: reminded, labelled `{}`",
                review.ticket,
                due.format("%Y-%m-%d %H:%M UTC"),
                incident::OVERDUE_LABEL
            ),
        );
        audit
            .record_once(&format!("review_overdue:{number}"), record)
            .await
            .map_err(ledger_error)?;
        incidents
            .review_reminded(FORGE, repo, number, now.timestamp_millis())
            .await
            .map_err(|e| store_error("the incident store", e))?;
        Ok(())
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

impl DeadlineHandler for GithubWorker {
    fn handle<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let payload: DeadlinePayload =
                serde_json::from_str(&due.payload).map_err(|e| e.to_string())?;
            let kind = due
                .kind
                .strip_prefix(&format!("{FORGE}:"))
                .unwrap_or_default();
            match kind {
                incident::REVIEW_DUE => self.review_due(&payload).await.map_err(|e| e.to_string()),
                incident::BYPASS_EXPIRY => {
                    let job = Job {
                        repo: payload.repo,
                        number: payload.change,
                        installation: payload.installation.map(crate::event::InstallationId),
                        reset_first: false,
                        delivery: None,
                        kind: JobKind::Change,
                    };
                    self.enqueue(vec![job], None)
                        .await
                        .map_err(|e| e.to_string())
                }
                other => {
                    tracing::warn!(kind = other, "a deadline of an unknown kind is dropped");
                    Ok(())
                }
            }
        })
    }
}
