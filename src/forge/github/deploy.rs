//! The deployment gate on GitHub: tollgate answers as a custom deployment protection rule. It
//! finds the pull request whose merge brought the deployed commit, that change's recorded
//! decision, and when the commit first went live on the policy's canary environment; the pure
//! [`crate::policy::deployment::judge`] decides; the answer is recorded, signed, then sent to the
//! callback GitHub gave.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::api::{self, ApiError};
use super::facts::{Gatherer, PolicyAt};
use super::worker::{GithubWorker, Job, ledger_error};
use crate::ledger::decide::{Context, incident_record};
use crate::ledger::record::{RecordKind, SignedRecord};
use crate::ledger::store::StoredRecord;
use crate::policy::RiskTier;
use crate::policy::deployment::{DeployedChange, DeploymentFacts, Verdict, judge};

#[derive(Deserialize)]
struct PullOfCommit {
    number: u64,
    merged_at: Option<DateTime<Utc>>,
    merge_commit_sha: Option<String>,
    head: Head,
    base: Head,
}

#[derive(Deserialize)]
struct Head {
    sha: String,
}

#[derive(Deserialize)]
struct Deployment {
    id: u64,
}

#[derive(Deserialize)]
struct DeploymentStatus {
    state: String,
    created_at: DateTime<Utc>,
}

/// The pull request whose merge brought `sha`: the one whose merge commit it is, else a merged
/// one whose head it is (a fast-forward or rebase merge).
fn merged_pull(pulls: Vec<PullOfCommit>, sha: &str) -> Option<PullOfCommit> {
    let (merged, _): (Vec<PullOfCommit>, Vec<PullOfCommit>) =
        pulls.into_iter().partition(|p| p.merged_at.is_some());
    let by_merge = merged
        .iter()
        .position(|p| p.merge_commit_sha.as_deref() == Some(sha));
    let by_head = merged.iter().position(|p| p.head.sha == sha);
    by_merge.or(by_head).and_then(|i| merged.into_iter().nth(i))
}

/// The last decision recorded for the change on its merged head: its outcome and tier.
fn decision_on(records: &[StoredRecord], head: &str) -> (Option<String>, Option<RiskTier>) {
    let last = records
        .iter()
        .filter_map(StoredRecord::signed)
        .rfind(|r: &SignedRecord| {
            r.record.kind == RecordKind::OutcomeChanged && r.record.head_sha == head
        });
    match last {
        Some(r) => {
            let tier = r
                .record
                .tier
                .as_deref()
                .and_then(|t| RiskTier::ALL.into_iter().find(|k| k.as_str() == t));
            (Some(r.record.outcome.clone()), tier)
        }
        None => (None, None),
    }
}

impl GithubWorker {
    /// Answers a deployment protection rule request for `environment`.
    pub(super) async fn deployment_gate(
        &self,
        job: &Job,
        environment: &str,
        sha: Option<&str>,
        callback_url: &str,
    ) -> Result<(), ApiError> {
        let Some(route) = self.api.route_of(callback_url) else {
            // Never send the installation's token to a host other than the configured API.
            tracing::warn!(%callback_url, "a deployment callback outside the configured GitHub API is ignored");
            return Ok(());
        };
        let client = self.api.client(job.installation)?;
        let gatherer = Gatherer {
            client: &client,
            repo: &job.repo,
            caches: &self.caches,
        };
        let now = self.clock.now();
        let mut context = Context {
            forge: "github".to_owned(),
            repo: job.repo.clone(),
            number: 0,
            head_sha: sha.unwrap_or_default().to_owned(),
            base_sha: String::new(),
            policy_sha: None,
            delivery: job.delivery.clone(),
            time_ms: now.timestamp_millis(),
        };
        let verdict = match sha {
            None => Verdict::Rejected {
                missing: "the deployment names no commit".to_owned(),
                allowed_at: None,
            },
            Some(sha) => {
                self.judge_deployment(&gatherer, environment, sha, now, &mut context)
                    .await?
            }
        };
        tracing::info!(environment, state = verdict.state(), "deployment gate");
        if let Some(audit) = &self.audit {
            let kind = match verdict {
                Verdict::Rejected { .. } => RecordKind::DeploymentRejected,
                Verdict::Approved { .. } | Verdict::NotGated => RecordKind::DeploymentApproved,
            };
            let detail = format!(
                "deployment {} of {} to `{environment}`: {}",
                job.number,
                crate::event::short_sha(&context.head_sha),
                verdict.comment()
            );
            let record = incident_record(&context, kind, None, verdict.state(), detail);
            let key = format!("deployment:{route}:{environment}");
            audit
                .record_once(&key, record)
                .await
                .map_err(ledger_error)?;
        }
        let answer = json!({
            "environment_name": environment,
            "state": verdict.state(),
            "comment": verdict.comment(),
        });
        // The route on the configured API (`route_of` checked the URL is there): octocrab
        // sends credentials only with routes, never to an absolute URL elsewhere.
        match client._post(route.as_str(), Some(&answer)).await {
            Ok(response) if response.status().is_success() => Ok(()),
            // Answered already (a redelivery after the answer went through): nothing to do.
            Ok(response) if response.status().as_u16() == 422 => {
                tracing::info!("the deployment was reviewed already");
                Ok(())
            }
            Ok(response) => Err(ApiError::Unexpected {
                what: "the deployment protection rule callback".to_owned(),
                message: format!("GitHub answered {}", response.status()),
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// Gathers what the gate needs for `sha` and judges it; `context` learns the change.
    async fn judge_deployment(
        &self,
        gatherer: &Gatherer<'_>,
        environment: &str,
        sha: &str,
        now: DateTime<Utc>,
        context: &mut Context,
    ) -> Result<Verdict, ApiError> {
        let repo = gatherer.repo;
        let policy = match gatherer.policy(sha).await? {
            PolicyAt::Valid(policy, policy_sha) => {
                context.policy_sha = Some(policy_sha);
                policy
            }
            PolicyAt::Absent => match &self.default_policy {
                Some(policy) => Arc::clone(policy),
                None => return Ok(Verdict::NotGated),
            },
            PolicyAt::Invalid(..) => {
                return Ok(Verdict::Rejected {
                    missing: format!(
                        "the policy at {} is invalid; fix .governance.toml",
                        crate::event::short_sha(sha)
                    ),
                    allowed_at: None,
                });
            }
        };
        let gated = policy
            .deployment
            .as_ref()
            .is_some_and(|d| d.environments.iter().any(|e| e == environment));
        if !gated {
            return Ok(Verdict::NotGated);
        }
        let pulls: Vec<PullOfCommit> = gatherer
            .client
            .get(format!("/repos/{repo}/commits/{sha}/pulls"), None::<&()>)
            .await?;
        let change = match merged_pull(pulls, sha) {
            Some(pull) => {
                context.number = pull.number;
                context.base_sha = pull.base.sha.clone();
                let records = match &self.audit {
                    Some(audit) => audit
                        .ledger
                        .change_records(repo, pull.number)
                        .await
                        .map_err(ledger_error)?,
                    None => Vec::new(),
                };
                let (outcome, tier) = decision_on(&records, &pull.head.sha);
                Some(DeployedChange {
                    number: pull.number,
                    change_ref: format!("#{}", pull.number),
                    outcome,
                    tier,
                })
            }
            None => None,
        };
        let on_canary_since = match (&policy.deployment, &change) {
            (Some(gate), Some(_)) => match &gate.canary {
                Some(canary) => self.live_since(gatherer, sha, canary).await?,
                None => None,
            },
            _ => None,
        };
        let facts = DeploymentFacts {
            environment: environment.to_owned(),
            sha: sha.to_owned(),
            change,
            on_canary_since,
            now,
        };
        Ok(judge(&policy, &facts))
    }

    /// When `sha` was first deployed successfully to `environment`.
    async fn live_since(
        &self,
        gatherer: &Gatherer<'_>,
        sha: &str,
        environment: &str,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        let repo = gatherer.repo;
        let route = format!(
            "/repos/{repo}/deployments?sha={sha}&environment={}",
            api::encode_component(environment)
        );
        let deployments: Vec<Deployment> =
            api::all_pages(gatherer.client, &route, usize::MAX).await?;
        let mut first: Option<DateTime<Utc>> = None;
        for deployment in deployments {
            let statuses: Vec<DeploymentStatus> = api::all_pages(
                gatherer.client,
                &format!("/repos/{repo}/deployments/{}/statuses", deployment.id),
                usize::MAX,
            )
            .await?;
            let success = statuses
                .iter()
                .filter(|s| s.state == "success")
                .map(|s| s.created_at)
                .min();
            first = match (first, success) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(first)
    }
}
