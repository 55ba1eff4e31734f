//! The GitHub worker: works out which pull requests an accepted delivery concerns and queues
//! them durably; when the queue's runner ([`crate::queue::runner`]) hands a pull request back,
//! re-evaluates it: gather facts, decide, record, publish. A burst of events for one pull
//! request collapses into one evaluation of its latest state (events only say *that* something
//! changed; the facts are always read fresh).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::Utc;
use tokio::sync::OnceCell;
use tracing::Instrument as _;

use super::api::{ApiError, FileAt, GithubApi, Identity};
use super::facts::{Caches, GatherError, Gatherer, PolicyAt, PullRequest};
use super::publish::{self, CheckReport, Conclusion};
use crate::clock::Clock;
use crate::config::JobSettings;
use crate::event::{Delivery, Event, Forge, InstallationId};
pub use crate::forge::JobKind;
use crate::incident::flow::Desk;
use crate::metrics::Metrics;
use crate::policy::evaluate;
use crate::queue::runner::{BoxFuture, Evaluator, Failure, Runner};
use crate::queue::{Claim, JobQueue};
use crate::render::{self, Renderer};
use crate::sink::{AcceptFuture, EventSink, SinkError};

/// A pull request to (re-)evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// `owner/name`.
    pub repo: String,
    /// Number.
    pub number: u64,
    /// The installation to act as (App mode).
    pub installation: Option<InstallationId>,
    /// Publish "in progress" first: the base changed, and no result computed for the old
    /// base may stand for the new one even for a moment.
    pub reset_first: bool,
    /// The delivery that asked for it (recorded in the ledger).
    pub delivery: Option<String>,
    /// What to do (a change to evaluate unless it says otherwise).
    #[serde(default)]
    pub kind: JobKind,
}

/// Where templates a repository overrides live on its base branch.
const TEMPLATE_OVERRIDE_DIR: &str = ".github/tollgate";

/// Shared state of the worker.
pub struct GithubWorker {
    pub(super) api: GithubApi,
    identity: OnceCell<Identity>,
    pub(super) caches: Caches,
    check_name: String,
    /// The org-wide policy for repositories without one.
    pub(super) default_policy: Option<Arc<crate::policy::Policy>>,
    /// The ledger every decision is recorded in (absent only in tests of publishing alone).
    pub(super) audit: Option<Arc<crate::ledger::Audit>>,
    /// tollgate's check run per (repository, head sha), once known: updates go straight to it.
    runs: std::sync::Mutex<HashMap<(String, String), u64>>,
    /// The durable queue's workers, which call back into this worker's evaluation.
    runner: OnceLock<Arc<Runner>>,
    /// What time it is (bypasses expire and reviews fall due against it).
    pub(super) clock: Arc<dyn Clock>,
    /// Post-incident reviews and rollbacks, and the deadlines they set (with the ledger's store).
    pub(super) desk: Option<Desk>,
    /// The decision pages (with the ledger's store), and where they are served.
    pages: Option<crate::pages::Pages>,
    public_url: Option<url::Url>,
}

/// How the worker is set up.
pub struct WorkerOptions {
    /// Name of the check run / commit status.
    pub check_name: String,
    /// The org-wide policy for repositories without one.
    pub default_policy: Option<Arc<crate::policy::Policy>>,
    /// The ledger every decision is recorded in (absent only in tests of publishing alone).
    pub audit: Option<Arc<crate::ledger::Audit>>,
    /// The durable queue in the shared store.
    pub queue: JobQueue,
    /// Concurrency, lease and give-up bound of the durable queue.
    pub jobs: JobSettings,
    /// Where queue figures go.
    pub metrics: Metrics,
    /// What time it is.
    pub clock: Arc<dyn Clock>,
    /// Where tollgate's pages are served (the check's details link goes to the change's page).
    pub public_url: Option<url::Url>,
}

impl WorkerOptions {
    /// Defaults for a check named `check_name` on `queue`: no default policy, no ledger.
    pub fn new(check_name: &str, queue: JobQueue) -> WorkerOptions {
        WorkerOptions {
            check_name: check_name.to_owned(),
            default_policy: None,
            audit: None,
            queue,
            jobs: JobSettings::default(),
            metrics: Metrics::new(),
            clock: crate::clock::system(),
            public_url: None,
        }
    }
}

/// The prefix of GitHub changes' queue keys.
const CHANGE_KEY_PREFIX: &str = "github:";

/// The queue key of a job: its pull request or issue (GitHub numbers both in one sequence),
/// or its deployment.
fn change_key(job: &Job) -> String {
    match &job.kind {
        JobKind::Deployment { environment, .. } => format!(
            "{CHANGE_KEY_PREFIX}{}@deployment:{}:{environment}",
            job.repo, job.number
        ),
        JobKind::FindPulls { sha } => format!("{CHANGE_KEY_PREFIX}{}@commit:{sha}", job.repo),
        JobKind::Change | JobKind::IssueClosed { .. } => {
            format!("{CHANGE_KEY_PREFIX}{}#{}", job.repo, job.number)
        }
    }
}

impl Evaluator for GithubWorker {
    fn evaluate<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(self.evaluate_claim(claim))
    }

    fn report_gave_up<'a>(
        &'a self,
        claim: &'a Claim,
        failure: &'a Failure,
        attempts: i64,
        failing_for: std::time::Duration,
    ) -> BoxFuture<'a, ()> {
        Box::pin(GithubWorker::report_gave_up(
            self,
            claim,
            failure,
            attempts,
            failing_for,
        ))
    }
}

impl GithubWorker {
    /// Creates the worker and the durable queue's claim loops that feed it
    /// (`options.jobs.workers` of them; none for an intake-only process).
    pub fn start(api: GithubApi, options: WorkerOptions) -> Arc<GithubWorker> {
        let desk = options
            .audit
            .as_ref()
            .map(|audit| Desk::new("github", Arc::clone(audit)));
        let worker = Arc::new(GithubWorker {
            clock: options.clock,
            desk,
            pages: options
                .audit
                .as_ref()
                .map(|audit| crate::pages::Pages::new(audit.ledger.pool().clone())),
            public_url: options.public_url,
            api,
            identity: OnceCell::new(),
            caches: Caches::default(),
            check_name: options.check_name,
            default_policy: options.default_policy,
            audit: options.audit,
            runs: std::sync::Mutex::new(HashMap::new()),
            runner: OnceLock::new(),
        });
        let evaluator: Arc<dyn Evaluator> = worker.clone();
        let runner = Runner::start(
            options.queue,
            options.jobs,
            options.metrics,
            vec![(CHANGE_KEY_PREFIX.to_owned(), evaluator)],
        );
        let _ = worker.runner.set(runner);
        worker
    }

    fn runner(&self) -> &Runner {
        self.runner
            .get()
            .unwrap_or_else(|| unreachable!("the runner is set in `start`"))
    }

    /// Queues the jobs of one delivery durably: committed before this returns, together with
    /// whatever else arrived meanwhile; a redelivered delivery is not queued twice.
    pub(super) async fn enqueue(
        &self,
        jobs: Vec<Job>,
        delivery: Option<&str>,
    ) -> Result<(), SinkError> {
        self.runner()
            .queue_jobs(delivery, &jobs, change_key)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    /// Waits until nothing is queued or running (for tests).
    pub async fn settle(&self) {
        self.runner().settle().await;
    }

    /// Stops claiming work and waits up to `timeout` for the evaluations in flight; see
    /// [`Runner::drain`].
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.runner().drain(timeout).await
    }

    /// Evaluates a claimed pull request: its jobs coalesce into one evaluation of its latest
    /// state.
    async fn evaluate_claim(&self, claim: &Claim) -> Result<(), Failure> {
        let (jobs, others): (Vec<Job>, Vec<Job>) = claim
            .decode::<Job>()
            .into_iter()
            .partition(|job| job.kind == JobKind::Change);
        let failure = |error: ApiError| Failure {
            wait_at_least: error.rate_limit_wait(Utc::now()),
            message: error.to_string(),
        };
        for job in &others {
            match &job.kind {
                JobKind::IssueClosed { by } => self.issue_closed(job, by).await,
                JobKind::Deployment {
                    environment,
                    sha,
                    callback_url,
                } => {
                    self.deployment_gate(job, environment, sha.as_deref(), callback_url)
                        .await
                }
                JobKind::FindPulls { sha } => self.queue_pulls_for(job, sha).await,
                JobKind::Change => Ok(()),
            }
            .map_err(failure)?;
        }
        let Some(mut job) = jobs.last().cloned() else {
            return Ok(());
        };
        job.reset_first = jobs.iter().any(|j| j.reset_first);
        let span = tracing::info_span!(
            "evaluate",
            repo = %job.repo,
            number = job.number,
            deliveries = claim.jobs.len()
        );
        self.process(&job).instrument(span).await.map_err(failure)
    }

    /// After giving up, says so on the change's head (best effort: GitHub may still be down,
    /// and then the last published result, never a green one for failed facts, stays).
    async fn report_gave_up(
        &self,
        claim: &Claim,
        failure: &Failure,
        attempts: i64,
        failing_for: std::time::Duration,
    ) {
        let Some(job) = claim
            .decode::<Job>()
            .into_iter()
            .rfind(|job| job.kind == JobKind::Change)
        else {
            return;
        };
        let published = async {
            let identity = self.identity().await?.clone();
            let client = self.api.client(job.installation)?;
            let gatherer = Gatherer {
                client: &client,
                repo: &job.repo,
                caches: &self.caches,
            };
            let pr = gatherer.pull_request(job.number).await?;
            let report = gave_up(&pr, &failure.message, attempts, failing_for);
            self.publish(&client, &job.repo, &identity, &pr.head.sha, &report)
                .await
        }
        .await;
        if let Err(error) = published {
            tracing::warn!(%error, repo = %job.repo, number = job.number, "cannot report giving up on the change");
        }
    }

    pub(super) async fn identity(&self) -> Result<&Identity, ApiError> {
        self.identity.get_or_try_init(|| self.api.identity()).await
    }

    /// Evaluates one pull request and publishes the result.
    pub async fn process(&self, job: &Job) -> Result<(), ApiError> {
        let identity = self.identity().await?.clone();
        let client = self.api.client(job.installation)?;
        let gatherer = Gatherer {
            client: &client,
            repo: &job.repo,
            caches: &self.caches,
        };
        let pr = gatherer.pull_request(job.number).await?;
        if pr.merged {
            return self.after_merge(job, &gatherer, &identity, &pr).await;
        }
        if pr.state != "open" {
            return Ok(());
        }
        let outcome = self
            .decide_and_publish(job, &gatherer, &identity, &pr)
            .await;
        if let Err(error) = &outcome {
            // Whatever went wrong, the head must not keep a result computed for other facts.
            let report = could_not_evaluate(&pr, &error.to_string());
            let _ = self
                .publish(&client, &job.repo, &identity, &pr.head.sha, &report)
                .await;
        }
        outcome
    }

    async fn decide_and_publish(
        &self,
        job: &Job,
        gatherer: &Gatherer<'_>,
        identity: &Identity,
        pr: &PullRequest,
    ) -> Result<(), ApiError> {
        let client = gatherer.client;
        let repo = job.repo.as_str();
        let sha = pr.head.sha.as_str();
        let mut context = crate::ledger::decide::Context {
            forge: "github".to_owned(),
            repo: repo.to_owned(),
            number: job.number,
            head_sha: sha.to_owned(),
            base_sha: pr.base.sha.clone(),
            policy_sha: None,
            delivery: job.delivery.clone(),
            time_ms: self.clock.now().timestamp_millis(),
        };
        let policy = match gatherer.policy(&pr.base.sha).await? {
            // No policy and no org-wide default: tollgate leaves the repository alone.
            PolicyAt::Absent => match &self.default_policy {
                Some(policy) => Arc::clone(policy),
                None => return Ok(()),
            },
            PolicyAt::Invalid(errors, policy_sha) => {
                let errors = errors.render(crate::policy::model::POLICY_PATH);
                context.policy_sha = Some(policy_sha);
                if let Some(audit) = &self.audit {
                    audit
                        .record_invalid_policy(&context, &errors)
                        .await
                        .map_err(ledger_error)?;
                }
                let report = invalid_policy(pr, &errors);
                return self.publish(client, repo, identity, sha, &report).await;
            }
            PolicyAt::Valid(policy, policy_sha) => {
                context.policy_sha = Some(policy_sha);
                policy
            }
        };
        // A base branch the policy does not govern gets no check at all, not a green one: a
        // green result could otherwise be carried to a governed branch by a retarget.
        if !policy.governed_branches.matches(&pr.base.name) {
            return Ok(());
        }
        if job.reset_first {
            self.publish(client, repo, identity, sha, &in_progress(pr))
                .await?;
        }
        let now = self.clock.now();
        let granted = match &self.desk {
            Some(desk) => desk
                .granted_bypass(repo, job.number)
                .await
                .map_err(desk_error)?,
            None => None,
        };
        let gathered = match gatherer
            .facts(&policy, pr, &identity.login, now, granted)
            .await
        {
            Ok(gathered) => gathered,
            // GitHub failed: `process` reports it on the head, and the job is tried again.
            Err(GatherError::Api(error)) => return Err(error),
            // The change is beyond what tollgate can judge: that is the result.
            Err(error) => {
                let report = could_not_evaluate(pr, &error.to_string());
                return self.publish(client, repo, identity, sha, &report).await;
            }
        };
        let mut gathered = gathered;
        if let Some(audit) = &self.audit {
            audit
                .pin_command_heads(repo, job.number, &mut gathered.facts.comments)
                .await
                .map_err(ledger_error)?;
        }
        if let Some(desk) = &self.desk {
            gathered.facts.overdue_reviews = desk
                .blocking_reviews(&policy, repo, now)
                .await
                .map_err(desk_error)?;
        }
        let facts = &gathered.facts;
        let decision = evaluate(&policy, facts);
        if let Some(desk) = &self.desk {
            let via = job.installation.map(|i| i.0);
            desk.schedule_bypass_expiry(repo, job.number, via, &decision)
                .await
                .map_err(desk_error)?;
        }
        // Recorded before anything is published: no result without its signed record.
        let records = match &self.audit {
            Some(audit) => audit
                .record(&decision, &context)
                .await
                .map_err(ledger_error)?,
            None => Vec::new(),
        };
        let renderer = self.renderer(gatherer, pr).await?;
        let (summary, comment) = match (
            renderer.check_summary(&decision, facts, records.last()),
            renderer.comment(&decision, facts, &records),
        ) {
            (Ok(summary), Ok(comment)) => (summary, comment),
            (Err(error), _) | (_, Err(error)) => {
                let report = could_not_evaluate(pr, &error.to_string());
                return self.publish(client, repo, identity, sha, &report).await;
            }
        };
        let page = crate::pages::PageEntry {
            forge: "github".to_owned(),
            repo: repo.to_owned(),
            number: job.number,
            title: pr.title.clone(),
            url: pr.html_url.clone().unwrap_or_default(),
            head_sha: sha.to_owned(),
            outcome: decision.outcome.name().to_owned(),
            decided_ms: now.timestamp_millis(),
            view: render::page_view(&decision, facts),
        };
        let details_url =
            match crate::pages::save(self.pages.as_ref(), &page, self.public_url.as_ref()).await {
                Some(url) => Some(url),
                None => pr.html_url.clone(),
            };
        let report = CheckReport {
            conclusion: Some(Conclusion::of(&decision)),
            title: render::headline(&decision),
            summary,
            annotations: publish::annotations(&decision),
            details_url,
        };
        tracing::info!(outcome = decision.outcome.name(), tier = ?decision.tier, "decided");
        self.publish(client, repo, identity, sha, &report).await?;
        if decision.tier.is_some() {
            publish::upsert_comment(
                client,
                repo,
                job.number,
                identity,
                &comment,
                &gathered.comments,
            )
            .await?;
            publish::reply_to_refused_commands(
                client,
                repo,
                job.number,
                identity,
                &decision.commands,
                &gathered.comments,
            )
            .await?;
        }
        Ok(())
    }

    /// Publishes a check report, going straight to tollgate's known run for the commit.
    async fn publish(
        &self,
        client: &octocrab::Octocrab,
        repo: &str,
        identity: &Identity,
        sha: &str,
        report: &CheckReport,
    ) -> Result<(), ApiError> {
        let key = (repo.to_owned(), sha.to_owned());
        let known = self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        let written =
            publish::publish_check(client, repo, identity, &self.check_name, sha, report, known)
                .await?;
        if let Some(id) = written {
            self.runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, id);
        }
        Ok(())
    }

    /// The templates, with the repository's overrides from its base branch.
    async fn renderer(
        &self,
        gatherer: &Gatherer<'_>,
        pr: &PullRequest,
    ) -> Result<Renderer, ApiError> {
        let mut overrides = Vec::new();
        for name in [render::COMMENT_TEMPLATE, render::CHECK_TEMPLATE] {
            let path = format!("{TEMPLATE_OVERRIDE_DIR}/{name}");
            if let FileAt::Text(text) = gatherer.file(&path, &pr.base.sha).await? {
                overrides.push((name.to_owned(), text));
            }
        }
        Ok(Renderer::new(&overrides).unwrap_or_else(|error| {
            tracing::warn!(%error, "a template override is invalid; using the built-in templates");
            Renderer::new(&[]).unwrap_or_else(|_| unreachable!("the built-in templates are valid"))
        }))
    }

    /// The pull requests a delivery concerns (none for events tollgate does not act on).
    pub fn jobs_for(&self, delivery: &Delivery) -> Vec<Job> {
        let job = |change: &crate::event::ChangeRef, reset_first| Job {
            repo: change.repo.name.to_string(),
            number: change.number.0,
            installation: change.repo.installation,
            reset_first,
            delivery: delivery.id.as_ref().map(|d| d.to_string()),
            kind: JobKind::Change,
        };
        // The identity is looked up by the worker, never here: intake must answer fast. Until it
        // is known, a comment by tollgate itself costs one evaluation that finds nothing to do.
        let own = |login: &str| {
            self.identity
                .get()
                .is_some_and(|identity| login.eq_ignore_ascii_case(&identity.login))
        };
        let mut jobs: Vec<Job> = crate::forge::changes_to_evaluate(&delivery.event, own)
            .into_iter()
            .map(|(change, reset_first)| job(change, reset_first))
            .collect();
        if let Event::CheckRerequested(request) = &delivery.event {
            let rerequested = |number, kind| Job {
                repo: request.repo.name.to_string(),
                number,
                installation: request.repo.installation,
                reset_first: false,
                delivery: delivery.id.as_ref().map(|d| d.to_string()),
                kind,
            };
            if request.changes.is_empty() {
                // Looking the pull requests up costs a request to GitHub: a job of its own,
                // off the intake path, durable like the rest.
                let sha = request.head_sha.to_string();
                jobs.push(rerequested(0, JobKind::FindPulls { sha }));
            } else {
                jobs.extend(
                    request
                        .changes
                        .iter()
                        .map(|number| rerequested(number.0, JobKind::Change)),
                );
            }
        }
        if let Event::DeploymentRequested(request) = &delivery.event {
            jobs.push(Job {
                repo: request.repo.name.to_string(),
                number: request.deployment.unwrap_or_default(),
                installation: request.repo.installation,
                reset_first: false,
                delivery: delivery.id.as_ref().map(|d| d.to_string()),
                kind: JobKind::Deployment {
                    environment: request.environment.clone(),
                    sha: request.sha.as_ref().map(|s| s.to_string()),
                    callback_url: request.callback_url.clone(),
                },
            });
        }
        if let Event::IssueClosed(closed) = &delivery.event {
            jobs.push(Job {
                repo: closed.repo.name.to_string(),
                number: closed.number,
                installation: closed.repo.installation,
                reset_first: false,
                delivery: delivery.id.as_ref().map(|d| d.to_string()),
                kind: JobKind::IssueClosed {
                    by: closed.closed_by.login.to_string(),
                },
            });
        }
        jobs
    }
}

pub(super) fn desk_error(message: String) -> ApiError {
    ApiError::Store {
        what: "the incident store".to_owned(),
        message,
    }
}

pub(super) fn ledger_error(error: crate::ledger::store::StoreError) -> ApiError {
    ApiError::Store {
        what: "the audit ledger".to_owned(),
        message: error.to_string(),
    }
}

fn in_progress(pr: &PullRequest) -> CheckReport {
    CheckReport {
        conclusion: None,
        title: format!("Re-evaluating for base branch {}", pr.base.name),
        summary: "The base branch changed; tollgate is evaluating the change under its policy."
            .to_owned(),
        annotations: Vec::new(),
        details_url: pr.html_url.clone(),
    }
}

fn invalid_policy(pr: &PullRequest, errors: &str) -> CheckReport {
    CheckReport {
        conclusion: Some(Conclusion::Failure),
        title: "Invalid .governance.toml".to_owned(),
        summary: format!(
            "The policy at the base commit cannot be used, so nothing can pass until it is fixed:\n\n```text\n{errors}\n```"
        ),
        annotations: Vec::new(),
        details_url: pr.html_url.clone(),
    }
}

fn could_not_evaluate(pr: &PullRequest, error: &str) -> CheckReport {
    CheckReport {
        conclusion: Some(Conclusion::Failure),
        title: "tollgate could not evaluate this change".to_owned(),
        summary: format!(
            "{error}\n\nWhen GitHub failed, tollgate tries again on its own; comment `/tollgate recheck` to try again now."
        ),
        annotations: Vec::new(),
        details_url: pr.html_url.clone(),
    }
}

fn gave_up(
    pr: &PullRequest,
    error: &str,
    attempts: i64,
    after: std::time::Duration,
) -> CheckReport {
    CheckReport {
        conclusion: Some(Conclusion::Failure),
        title: "tollgate gave up evaluating this change".to_owned(),
        summary: format!(
            "tollgate tried {attempts} times over {} minutes and stopped; the last error was:\n\n```text\n{error}\n```\n\n\
             Comment `/tollgate recheck` to try again, or an operator can run `tollgate jobs retry`.",
            after.as_secs() / 60
        ),
        annotations: Vec::new(),
        details_url: pr.html_url.clone(),
    }
}

impl GithubWorker {
    /// Queues the open pull requests whose head is `sha` (a check suite re-requested without
    /// naming them), under the delivery that asked: a lookup tried again after a failure or a
    /// crash queues each of them once.
    async fn queue_pulls_for(&self, job: &Job, sha: &str) -> Result<(), ApiError> {
        #[derive(serde::Deserialize)]
        struct Pull {
            number: u64,
            state: String,
        }
        let client = self.api.client(job.installation)?;
        let pulls: Vec<Pull> = client
            .get(
                format!("/repos/{}/commits/{sha}/pulls", job.repo),
                None::<&()>,
            )
            .await?;
        let jobs: Vec<Job> = pulls
            .into_iter()
            .filter(|pull| pull.state == "open")
            .map(|pull| Job {
                repo: job.repo.clone(),
                number: pull.number,
                installation: job.installation,
                reset_first: false,
                delivery: job.delivery.clone(),
                kind: JobKind::Change,
            })
            .collect();
        if jobs.is_empty() {
            tracing::info!(repo = %job.repo, %sha, "a re-requested check suite has no open pull request");
            return Ok(());
        }
        self.enqueue(jobs, job.delivery.as_deref())
            .await
            .map_err(|error| ApiError::Store {
                what: "the job queue".to_owned(),
                message: error.to_string(),
            })
    }
}

/// The worker as the intake's sink.
pub struct GithubSink(pub Arc<GithubWorker>);

impl EventSink for GithubSink {
    fn accept(&self, delivery: Delivery) -> AcceptFuture<'_> {
        Box::pin(async move {
            if delivery.forge != Forge::GitHub {
                // Only GitHub changes are evaluated by this worker.
                tracing::info!(forge = %delivery.forge, "not evaluated: this build publishes to GitHub only");
                return Ok(());
            }
            let id = delivery.id.as_ref().map(|d| d.as_str());
            self.0.enqueue(self.0.jobs_for(&delivery), id).await
        })
    }
}
