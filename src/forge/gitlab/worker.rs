//! The GitLab worker: queues the merge requests an accepted delivery concerns, and when the
//! queue's runner hands one back, re-evaluates it with the same policy engine, ledger and
//! templates as on GitHub: gather facts, decide, record, publish a commit status and one
//! sticky note.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OnceCell;
use tracing::Instrument as _;

use super::api::{GitlabApi, GitlabError, MergeRequest, StatusState, UserRef};
use super::facts::{GatherError, gather};
use super::publish::{publish_status, reply_to_refused_commands, status_state, upsert_note};
use crate::clock::Clock;
use crate::config::JobSettings;
use crate::event::Delivery;
pub use crate::forge::JobKind;
use crate::forge::PolicyAt;
use crate::forge::github::publish::Conclusion;
use crate::incident::flow::Desk;
use crate::metrics::Metrics;
use crate::policy::evaluate;
use crate::policy::model::POLICY_PATH;
use crate::queue::runner::{BoxFuture, Evaluator, Failure, Runner};
use crate::queue::{Claim, JobQueue};
use crate::render::{self, Renderer};
use crate::sink::{AcceptFuture, EventSink, SinkError};

/// A merge request to (re-)evaluate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The project's numeric id.
    pub project: u64,
    /// Its path (`group/sub/project`), for the ledger and logs.
    pub path: String,
    /// The merge request's iid.
    pub iid: u64,
    /// Publish "evaluating" first (the target branch changed).
    pub reset_first: bool,
    /// The delivery that asked for it (recorded in the ledger).
    pub delivery: Option<String>,
    /// What to do (a merge request to evaluate unless it says otherwise).
    #[serde(default)]
    pub kind: JobKind,
}

/// The prefix of GitLab changes' queue keys.
pub const CHANGE_KEY_PREFIX: &str = "gitlab:";

fn change_key(job: &Job) -> String {
    match job.kind {
        JobKind::Change => format!("{CHANGE_KEY_PREFIX}{}#{}", job.path, job.iid),
        JobKind::IssueClosed { .. } => {
            format!("{CHANGE_KEY_PREFIX}{}#issue-{}", job.path, job.iid)
        }
        // GitLab has no deployment gate (yet); kept apart should one ever be queued.
        JobKind::Deployment { .. } => {
            format!("{CHANGE_KEY_PREFIX}{}@deployment:{}", job.path, job.iid)
        }
        // A GitHub lookup (GitLab names the merge request in every event); kept apart too.
        JobKind::FindPulls { ref sha } => format!("{CHANGE_KEY_PREFIX}{}@commit:{sha}", job.path),
    }
}

/// How the worker is set up.
pub struct WorkerOptions {
    /// Name of the commit status.
    pub check_name: String,
    /// The org-wide policy for projects without one.
    pub default_policy: Option<Arc<crate::policy::Policy>>,
    /// The ledger every decision is recorded in.
    pub audit: Option<Arc<crate::ledger::Audit>>,
    /// The durable queue.
    pub queue: JobQueue,
    /// Concurrency, lease and give-up bound.
    pub jobs: JobSettings,
    /// Where queue figures go.
    pub metrics: Metrics,
    /// What time it is.
    pub clock: Arc<dyn Clock>,
    /// Where tollgate's pages are served (the status links to the change's page).
    pub public_url: Option<url::Url>,
}

/// Shared state of the GitLab worker.
pub struct GitlabWorker {
    pub(super) api: GitlabApi,
    identity: OnceCell<UserRef>,
    check_name: String,
    pub(super) default_policy: Option<Arc<crate::policy::Policy>>,
    pub(super) audit: Option<Arc<crate::ledger::Audit>>,
    /// What time it is (bypasses expire and reviews fall due against it).
    pub(super) clock: Arc<dyn Clock>,
    /// Post-incident reviews and rollbacks, and the deadlines they set (with the ledger's store).
    pub(super) desk: Option<Desk>,
    /// The decision pages (with the ledger's store), and where they are served.
    pages: Option<crate::pages::Pages>,
    public_url: Option<url::Url>,
    /// Parsed policies by text (parsing a large policy takes milliseconds).
    policies: Mutex<HashMap<String, PolicyAt>>,
    runner: OnceLock<Arc<Runner>>,
}

impl GitlabWorker {
    /// Creates the worker and the claim loops that feed it.
    pub fn start(api: GitlabApi, options: WorkerOptions) -> Arc<GitlabWorker> {
        let desk = options
            .audit
            .as_ref()
            .map(|audit| Desk::new("gitlab", Arc::clone(audit)));
        let worker = Arc::new(GitlabWorker {
            clock: options.clock,
            desk,
            pages: options
                .audit
                .as_ref()
                .map(|audit| crate::pages::Pages::new(audit.ledger.pool().clone())),
            public_url: options.public_url,
            api,
            identity: OnceCell::new(),
            check_name: options.check_name,
            default_policy: options.default_policy,
            audit: options.audit,
            policies: Mutex::new(HashMap::new()),
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

    /// Waits until nothing is queued or running (for tests).
    pub async fn settle(&self) {
        self.runner().settle().await;
    }

    /// Stops claiming work and waits up to `timeout` for the evaluations in flight.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.runner().drain(timeout).await
    }

    pub(super) async fn identity(&self) -> Result<&UserRef, GitlabError> {
        self.identity
            .get_or_try_init(|| self.api.current_user())
            .await
    }

    /// The merge requests a delivery concerns (none for events tollgate does not act on, and
    /// none for notes tollgate wrote itself).
    pub fn jobs_for(&self, delivery: &Delivery) -> Vec<Job> {
        let job = |change: &crate::event::ChangeRef, reset_first| Job {
            project: change.repo.id,
            path: change.repo.name.to_string(),
            iid: change.number.0,
            reset_first,
            delivery: delivery.id.as_ref().map(|d| d.to_string()),
            kind: JobKind::Change,
        };
        let own = |login: &str| {
            self.identity
                .get()
                .is_some_and(|identity| login.eq_ignore_ascii_case(&identity.username))
        };
        let mut jobs: Vec<Job> = crate::forge::changes_to_evaluate(&delivery.event, own)
            .into_iter()
            .map(|(change, reset_first)| job(change, reset_first))
            .collect();
        if let crate::event::Event::IssueClosed(closed) = &delivery.event {
            jobs.push(Job {
                project: closed.repo.id,
                path: closed.repo.name.to_string(),
                iid: closed.number,
                reset_first: false,
                delivery: delivery.id.as_ref().map(|d| d.to_string()),
                kind: JobKind::IssueClosed {
                    by: closed.closed_by.login.to_string(),
                },
            });
        }
        jobs
    }

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

    async fn evaluate_claim(&self, claim: &Claim) -> Result<(), Failure> {
        let (jobs, closed): (Vec<Job>, Vec<Job>) = claim
            .decode::<Job>()
            .into_iter()
            .partition(|job| job.kind == JobKind::Change);
        let failure = |error: GitlabError| Failure {
            wait_at_least: error.rate_limit_wait(),
            message: error.to_string(),
        };
        for job in &closed {
            if let JobKind::IssueClosed { by } = &job.kind {
                self.issue_closed(job, by).await.map_err(failure)?;
            }
        }
        let Some(mut job) = jobs.last().cloned() else {
            return Ok(());
        };
        job.reset_first = jobs.iter().any(|j| j.reset_first);
        let span = tracing::info_span!("evaluate", project = %job.path, iid = job.iid);
        self.process(&job).instrument(span).await.map_err(failure)
    }

    /// Evaluates one merge request and publishes the result. Whatever fails, the head is left
    /// with a failed status saying so, never with an earlier result.
    pub async fn process(&self, job: &Job) -> Result<(), GitlabError> {
        let bot = self.identity().await?.clone();
        let mr = self.api.merge_request(job.project, job.iid).await?;
        if mr.state == "merged" {
            return self.after_merge(job, &mr, &bot).await;
        }
        if mr.state != "opened" {
            return Ok(());
        }
        let outcome = self.decide_and_publish(job, &mr, &bot).await;
        if let Err(error) = &outcome {
            let description = format!("tollgate could not evaluate this change: {error}");
            let _ = self
                .status(job, &mr, StatusState::Failed, &description)
                .await;
        }
        outcome
    }

    /// Sets tollgate's status on the merge request's head, linking to the merge request.
    async fn status(
        &self,
        job: &Job,
        mr: &MergeRequest,
        state: StatusState,
        description: &str,
    ) -> Result<(), GitlabError> {
        self.status_linking(job, mr, state, description, &mr.web_url)
            .await
    }

    /// Sets tollgate's status on the merge request's head, linking to `target`.
    async fn status_linking(
        &self,
        job: &Job,
        mr: &MergeRequest,
        state: StatusState,
        description: &str,
        target: &str,
    ) -> Result<(), GitlabError> {
        let Some(sha) = head_of(mr) else {
            return Ok(());
        };
        publish_status(
            &self.api,
            job.project,
            sha,
            state,
            &self.check_name,
            description,
            Some(target),
        )
        .await
    }

    pub(super) async fn policy(
        &self,
        project: u64,
        base_sha: &str,
    ) -> Result<PolicyAt, GitlabError> {
        let Some(text) = self.api.raw_file(project, POLICY_PATH, base_sha).await? else {
            return Ok(PolicyAt::Absent);
        };
        let mut cache = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        Ok(cache
            .entry(text)
            .or_insert_with_key(|text| PolicyAt::parse(text))
            .clone())
    }

    async fn decide_and_publish(
        &self,
        job: &Job,
        mr: &MergeRequest,
        bot: &UserRef,
    ) -> Result<(), GitlabError> {
        let Some(refs) = &mr.diff_refs else {
            // GitLab computes the diff in the background: try again shortly.
            return Err(GitlabError::Setup(
                "GitLab has not computed the merge request's diff yet".to_owned(),
            ));
        };
        let sha = refs.head_sha.as_str();
        let mut context = crate::ledger::decide::Context {
            forge: "gitlab".to_owned(),
            repo: job.path.clone(),
            number: job.iid,
            head_sha: sha.to_owned(),
            base_sha: refs.base_sha.clone(),
            policy_sha: None,
            delivery: job.delivery.clone(),
            time_ms: self.clock.now().timestamp_millis(),
        };
        let policy = match self.policy(job.project, &refs.base_sha).await? {
            PolicyAt::Absent => match &self.default_policy {
                Some(policy) => Arc::clone(policy),
                None => return Ok(()),
            },
            PolicyAt::Invalid(errors, policy_sha) => {
                let errors = errors.render(POLICY_PATH);
                context.policy_sha = Some(policy_sha);
                if let Some(audit) = &self.audit {
                    audit
                        .record_invalid_policy(&context, &errors)
                        .await
                        .map_err(ledger_error)?;
                }
                let first = errors.lines().next().unwrap_or("");
                let description = format!("Invalid .governance.toml: {first}");
                return self
                    .status(job, mr, StatusState::Failed, &description)
                    .await;
            }
            PolicyAt::Valid(policy, policy_sha) => {
                context.policy_sha = Some(policy_sha);
                policy
            }
        };
        // An ungoverned target branch gets no status at all, never a green one.
        if !policy.governed_branches.matches(&mr.target_branch) {
            return Ok(());
        }
        if job.reset_first {
            let description = format!("Evaluating for target branch {}", mr.target_branch);
            self.status(job, mr, StatusState::Pending, &description)
                .await?;
        }
        let now = self.clock.now();
        let granted = match &self.desk {
            Some(desk) => desk
                .granted_bypass(&job.path, job.iid)
                .await
                .map_err(GitlabError::Setup)?,
            None => None,
        };
        let mut gathered =
            match gather(&self.api, job.project, mr, &policy, bot, now, granted).await {
                Ok(gathered) => gathered,
                Err(GatherError::Api(error)) => return Err(error),
                Err(GatherError::DiffNotReady) => {
                    return Err(GitlabError::Setup(
                        "GitLab has not computed the merge request's diff yet".to_owned(),
                    ));
                }
                Err(error) => {
                    let description = format!("tollgate could not evaluate this change: {error}");
                    return self
                        .status(job, mr, StatusState::Failed, &description)
                        .await;
                }
            };
        if let Some(audit) = &self.audit {
            audit
                .pin_command_heads(&job.path, job.iid, &mut gathered.facts.comments)
                .await
                .map_err(ledger_error)?;
        }
        if let Some(desk) = &self.desk {
            gathered.facts.overdue_reviews = desk
                .blocking_reviews(&policy, &job.path, now)
                .await
                .map_err(GitlabError::Setup)?;
        }
        let facts = &gathered.facts;
        let decision = evaluate(&policy, facts);
        if let Some(desk) = &self.desk {
            desk.schedule_bypass_expiry(&job.path, job.iid, Some(job.project), &decision)
                .await
                .map_err(GitlabError::Setup)?;
        }
        // Recorded before anything is published: no result without its signed record.
        let records = match &self.audit {
            Some(audit) => audit
                .record(&decision, &context)
                .await
                .map_err(ledger_error)?,
            None => Vec::new(),
        };
        let renderer = self.renderer(job.project, &refs.base_sha).await?;
        let note = renderer
            .comment(&decision, facts, &records)
            .map_err(|error| {
                GitlabError::Setup(format!("cannot render the merge request note: {error}"))
            })?;
        tracing::info!(outcome = decision.outcome.name(), tier = ?decision.tier, "decided");
        let page = crate::pages::PageEntry {
            forge: "gitlab".to_owned(),
            repo: job.path.clone(),
            number: job.iid,
            title: mr.title.clone(),
            url: mr.web_url.clone(),
            head_sha: sha.to_owned(),
            outcome: decision.outcome.name().to_owned(),
            decided_ms: now.timestamp_millis(),
            view: render::page_view(&decision, facts),
        };
        let target = crate::pages::save(self.pages.as_ref(), &page, self.public_url.as_ref())
            .await
            .unwrap_or_else(|| mr.web_url.clone());
        let state = status_state(Conclusion::of(&decision));
        self.status_linking(job, mr, state, &render::headline(&decision), &target)
            .await?;
        if decision.tier.is_some() {
            upsert_note(&self.api, job.project, job.iid, bot, &note, &gathered.notes).await?;
            reply_to_refused_commands(
                &self.api,
                job.project,
                job.iid,
                bot,
                &decision.commands,
                &gathered.notes,
            )
            .await?;
        }
        Ok(())
    }
}

impl GitlabWorker {
    /// The templates, with the project's overrides from its base (`.gitlab/tollgate/`).
    async fn renderer(&self, project: u64, base_sha: &str) -> Result<Renderer, GitlabError> {
        let mut overrides = Vec::new();
        for name in [render::COMMENT_TEMPLATE, render::CHECK_TEMPLATE] {
            let path = format!("{TEMPLATE_OVERRIDE_DIR}/{name}");
            if let Some(text) = self.api.raw_file(project, &path, base_sha).await? {
                overrides.push((name.to_owned(), text));
            }
        }
        Ok(Renderer::new(&overrides).unwrap_or_else(|error| {
            tracing::warn!(%error, "a template override is invalid; using the built-in templates");
            Renderer::new(&[]).unwrap_or_else(|_| unreachable!("the built-in templates are valid"))
        }))
    }
}

/// Where templates a project overrides live on its base branch.
const TEMPLATE_OVERRIDE_DIR: &str = ".gitlab/tollgate";

fn head_of(mr: &MergeRequest) -> Option<&str> {
    mr.diff_refs
        .as_ref()
        .map(|r| r.head_sha.as_str())
        .or(mr.sha.as_deref())
}

pub(super) fn ledger_error(error: crate::ledger::store::StoreError) -> GitlabError {
    GitlabError::Store {
        what: "the audit ledger".to_owned(),
        message: error.to_string(),
    }
}

impl Evaluator for GitlabWorker {
    fn evaluate<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(self.evaluate_claim(claim))
    }

    fn report_gave_up<'a>(
        &'a self,
        claim: &'a Claim,
        failure: &'a Failure,
        attempts: i64,
        _failing_for: std::time::Duration,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(job) = claim
                .decode::<Job>()
                .into_iter()
                .rfind(|job| job.kind == JobKind::Change)
            else {
                return;
            };
            let Ok(mr) = self.api.merge_request(job.project, job.iid).await else {
                return;
            };
            let description = format!(
                "tollgate gave up after {attempts} attempts: {}; run `tollgate jobs retry`",
                failure.message
            );
            let _ = self
                .status(&job, &mr, StatusState::Failed, &description)
                .await;
        })
    }
}

/// The GitLab worker as the intake's sink.
pub struct GitlabSink(pub Arc<GitlabWorker>);

impl EventSink for GitlabSink {
    fn accept(&self, delivery: Delivery) -> AcceptFuture<'_> {
        Box::pin(async move {
            let id = delivery.id.as_ref().map(|d| d.as_str());
            self.0.enqueue(self.0.jobs_for(&delivery), id).await
        })
    }
}
