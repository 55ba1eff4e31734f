//! The GitHub worker: takes accepted deliveries, works out which pull requests they concern,
//! and re-evaluates each one: gather facts, decide, publish. One pull request at a time; a
//! burst of events for the same pull request collapses into one evaluation of its latest
//! state (events only say *that* something changed; the facts are always read fresh).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::Utc;
use tokio::sync::{Mutex, Notify, OnceCell};
use tracing::Instrument as _;

use super::api::{ApiError, FileAt, GithubApi, Identity};
use super::facts::{Caches, GatherError, Gatherer, PolicyAt, PullRequest};
use super::publish::{self, CheckReport, Conclusion};
use crate::config::JobSettings;
use crate::event::{Delivery, Event, Forge, InstallationId};
use crate::metrics::{EvaluationResult, Metrics};
use crate::policy::evaluate;
use crate::queue::{Claim, GroupCommit, JobQueue, NewJob};
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
}

/// Where templates a repository overrides live on its base branch.
const TEMPLATE_OVERRIDE_DIR: &str = ".github/tollgate";

/// Shared state of the worker.
pub struct GithubWorker {
    api: GithubApi,
    identity: OnceCell<Identity>,
    caches: Caches,
    check_name: String,
    /// The org-wide policy for repositories without one.
    default_policy: Option<Arc<crate::policy::Policy>>,
    /// The ledger every decision is recorded in (absent only in tests of publishing alone).
    audit: Option<Arc<crate::ledger::Audit>>,
    queue: Mutex<VecDeque<Job>>,
    queued: std::sync::Mutex<HashSet<(String, u64)>>,
    wake: Notify,
    /// Evaluations running (0 or 1).
    busy: AtomicUsize,
    /// tollgate's check run per (repository, head sha), once known: updates go straight to it.
    runs: std::sync::Mutex<HashMap<(String, String), u64>>,
    /// The durable queue in the shared store; without it, jobs are queued in memory.
    durable: Option<Durable>,
    /// This process's name as a lease holder.
    holder: String,
    settings: JobSettings,
    metrics: Metrics,
    /// Set when the server drains: no new claims.
    stopping: AtomicBool,
    /// Set when a drain ran out of time: a claim that lands now is handed straight back.
    drain_expired: AtomicBool,
    /// The claims being evaluated, by claim loop, to hand back if a drain runs out of time.
    active: std::sync::Mutex<HashMap<usize, Claim>>,
}

/// The durable queue and the intake's group-commit writer on it.
struct Durable {
    queue: JobQueue,
    intake: GroupCommit,
}

/// How the worker is set up.
pub struct WorkerOptions {
    /// Name of the check run / commit status.
    pub check_name: String,
    /// The org-wide policy for repositories without one.
    pub default_policy: Option<Arc<crate::policy::Policy>>,
    /// The ledger every decision is recorded in (absent only in tests of publishing alone).
    pub audit: Option<Arc<crate::ledger::Audit>>,
    /// The durable queue in the shared store; without it, jobs are queued in memory and lost
    /// with the process.
    pub durable: Option<JobQueue>,
    /// Concurrency, lease and give-up bound of the durable queue.
    pub jobs: JobSettings,
    /// Where queue figures go.
    pub metrics: Metrics,
}

impl WorkerOptions {
    /// Defaults for a check named `check_name`: no default policy, no ledger, jobs in memory.
    pub fn new(check_name: &str) -> WorkerOptions {
        WorkerOptions {
            check_name: check_name.to_owned(),
            default_policy: None,
            audit: None,
            durable: None,
            jobs: JobSettings::default(),
            metrics: Metrics::new(),
        }
    }
}

/// How often an idle worker looks for jobs queued by other processes.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Longest wait before a failed evaluation is tried again (a rate limit may ask for longer).
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// Group-commit writers on PostgreSQL (SQLite has one writer at a time anyway).
const POSTGRES_QUEUE_WRITERS: usize = 4;

/// The queue key of a pull request.
fn change_key(job: &Job) -> String {
    format!("github:{}#{}", job.repo, job.number)
}

impl GithubWorker {
    /// Creates the worker and starts its claim loops (`options.jobs.workers` of them on the
    /// durable queue, none for an intake-only process; one on the in-memory queue).
    pub fn start(api: GithubApi, options: WorkerOptions) -> Arc<GithubWorker> {
        let durable = options.durable.map(|queue| {
            let writers = if queue.is_postgres() {
                POSTGRES_QUEUE_WRITERS
            } else {
                1
            };
            options.metrics.watch_queue(queue.clone());
            Durable {
                intake: GroupCommit::start(queue.clone(), writers, options.metrics.clone()),
                queue,
            }
        });
        let loops = match &durable {
            Some(_) => options.jobs.workers,
            None => 1,
        };
        let worker = Arc::new(GithubWorker {
            api,
            identity: OnceCell::new(),
            caches: Caches::default(),
            check_name: options.check_name,
            default_policy: options.default_policy,
            audit: options.audit,
            queue: Mutex::new(VecDeque::new()),
            queued: std::sync::Mutex::new(HashSet::new()),
            wake: Notify::new(),
            busy: AtomicUsize::new(0),
            runs: std::sync::Mutex::new(HashMap::new()),
            durable,
            holder: uuid::Uuid::new_v4().to_string(),
            settings: options.jobs,
            metrics: options.metrics,
            stopping: AtomicBool::new(false),
            drain_expired: AtomicBool::new(false),
            active: std::sync::Mutex::new(HashMap::new()),
        });
        for slot in 0..loops {
            let runner = Arc::clone(&worker);
            tokio::spawn(async move { runner.run(slot).await });
        }
        worker
    }

    /// Queues the jobs of one delivery: durably when the queue is in the store (committed
    /// before this returns, together with whatever else arrived meanwhile; a redelivered
    /// delivery is not queued twice), else in memory.
    async fn enqueue(&self, jobs: Vec<Job>, delivery: Option<&str>) -> Result<(), SinkError> {
        let Some(durable) = &self.durable else {
            for job in jobs {
                self.enqueue_in_memory(job).await;
            }
            return Ok(());
        };
        // A delivery without an id cannot be recognised when redelivered; it still is queued.
        let delivery = delivery.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let mut new = Vec::with_capacity(jobs.len());
        for job in &jobs {
            new.push(NewJob {
                delivery_id: delivery.clone(),
                change_key: change_key(job),
                payload: serde_json::to_string(job).map_err(|e| SinkError(e.to_string()))?,
            });
        }
        durable
            .intake
            .submit(new)
            .await
            .map_err(|e| SinkError(e.to_string()))?;
        // Wake every idle claim loop, and leave a permit for one that is about to wait.
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a pull request in memory unless it is already waiting (bursts coalesce).
    async fn enqueue_in_memory(&self, job: Job) {
        let key = (job.repo.clone(), job.number);
        let fresh = self
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        let mut queue = self.queue.lock().await;
        if fresh {
            queue.push_back(job);
        } else if job.reset_first
            && let Some(waiting) = queue
                .iter_mut()
                .find(|j| j.repo == job.repo && j.number == job.number)
        {
            waiting.reset_first = true;
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// Waits until nothing is queued or running (for tests).
    pub async fn settle(&self) {
        loop {
            let durable_idle = match &self.durable {
                Some(durable) => durable.queue.depth().await.is_ok_and(|n| n == 0),
                None => true,
            };
            let idle = durable_idle
                && self.queue.lock().await.is_empty()
                && self.busy.load(Ordering::SeqCst) == 0;
            if idle {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Stops claiming work and waits up to `timeout` for the evaluations in flight. Those still
    /// running then are handed back to the queue (no attempt counted), so another replica, or
    /// this one after its restart, takes them at once instead of after the lease. Returns
    /// whether everything in flight finished.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        let finished = tokio::time::timeout(timeout, async {
            while self.busy.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .is_ok();
        if finished {
            return true;
        }
        self.drain_expired.store(true, Ordering::SeqCst);
        let claims: Vec<Claim> = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, claim)| claim)
            .collect();
        if let Some(durable) = &self.durable {
            for claim in claims {
                match durable.queue.hand_back(&claim).await {
                    Ok(()) => {
                        tracing::warn!(change = %claim.change_key, "drain timeout: handed an unfinished evaluation back to the queue")
                    }
                    Err(error) => {
                        tracing::error!(%error, change = %claim.change_key, "drain timeout: cannot hand an evaluation back; it is taken over when its lease ends")
                    }
                }
            }
        }
        false
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    async fn run(self: Arc<Self>, slot: usize) {
        let queue = self.durable.as_ref().map(|d| d.queue.clone());
        match queue {
            Some(queue) => self.run_durable(queue, slot).await,
            None => self.run_in_memory().await,
        }
    }

    /// Claims changes from the store's queue, one at a time per loop, across processes.
    async fn run_durable(self: Arc<Self>, queue: JobQueue, slot: usize) {
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 4);
        while !self.stopping() {
            // Counted busy before the claim, so `drain` and `settle` never miss a claim that
            // is between the store and the evaluation.
            self.busy.fetch_add(1, Ordering::SeqCst);
            let claimed = queue
                .claim(&self.holder, Utc::now().timestamp_millis(), lease_ms)
                .await;
            match claimed {
                Ok(Some(claim)) if self.drain_expired.load(Ordering::SeqCst) => {
                    // Claimed while a timed-out drain handed the rest back: hand it back too.
                    if let Err(error) = queue.hand_back(&claim).await {
                        tracing::error!(%error, change = %claim.change_key, "cannot hand a claim back; it is taken over when its lease ends");
                    }
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(Some(claim)) => {
                    self.active
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(slot, claim.clone());
                    self.work(&queue, &claim, lease_ms).await;
                    self.active
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&slot);
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(None) => {
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = tokio::time::timeout(POLL_INTERVAL, self.wake.notified()).await;
                }
                Err(error) => {
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!(%error, "cannot read the job queue");
                    tokio::time::sleep(POLL_INTERVAL * 4).await;
                }
            }
        }
    }

    /// Evaluates a claimed change (its jobs coalesce into one evaluation of its latest state),
    /// renewing the lease while it runs, then settles the claim: done, retried after a backoff,
    /// or parked as failed once the change has kept failing past the give-up bound.
    async fn work(&self, queue: &JobQueue, claim: &Claim, lease_ms: i64) {
        let mut jobs = Vec::with_capacity(claim.jobs.len());
        for queued in &claim.jobs {
            match serde_json::from_str::<Job>(&queued.payload) {
                Ok(job) => jobs.push(job),
                Err(error) => {
                    tracing::error!(%error, job = queued.id, "a queued job cannot be read; skipping it")
                }
            }
        }
        let outcome = match jobs.last().cloned() {
            Some(mut job) => {
                job.reset_first = jobs.iter().any(|j| j.reset_first);
                let span = tracing::info_span!(
                    "evaluate",
                    repo = %job.repo,
                    number = job.number,
                    deliveries = claim.jobs.len()
                );
                let evaluation = self.process(&job).instrument(span);
                self.renewing(queue, claim, lease_ms, evaluation).await
            }
            None => Ok(()),
        };
        let now = Utc::now().timestamp_millis();
        let settled = match outcome {
            Ok(()) => {
                self.metrics.evaluation(EvaluationResult::Completed);
                queue.complete(claim).await
            }
            Err(error) => {
                let attempts = claim.attempts() + 1;
                let failing_for_ms = now - claim.failing_since_ms().unwrap_or(now);
                let give_up_ms =
                    i64::try_from(self.settings.give_up_after.as_millis()).unwrap_or(i64::MAX);
                if failing_for_ms >= give_up_ms {
                    self.metrics.evaluation(EvaluationResult::GaveUp);
                    tracing::error!(%error, attempts, change = %claim.change_key, "evaluation keeps failing; giving up (retry with `tollgate jobs retry`)");
                    if let Some(job) = jobs.last() {
                        self.report_gave_up(job, &error, attempts, failing_for_ms)
                            .await;
                    }
                    queue.give_up(claim, &error.to_string(), now).await
                } else {
                    self.metrics.evaluation(EvaluationResult::Retried);
                    let backoff = retry_delay(attempts, &error, Utc::now());
                    tracing::warn!(%error, attempts, backoff_ms = backoff, change = %claim.change_key, "evaluation failed; will retry");
                    queue.retry(claim, &error.to_string(), now + backoff).await
                }
            }
        };
        if let Err(error) = settled {
            // The lease runs out and the jobs are taken again: nothing is lost.
            tracing::error!(%error, change = %claim.change_key, "cannot update the job queue");
        }
    }

    /// Runs `evaluation` while renewing the claim's lease every third of its length.
    async fn renewing<F>(
        &self,
        queue: &JobQueue,
        claim: &Claim,
        lease_ms: i64,
        evaluation: F,
    ) -> Result<(), ApiError>
    where
        F: std::future::Future<Output = Result<(), ApiError>>,
    {
        let period =
            std::time::Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1).max(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tokio::pin!(evaluation);
        loop {
            tokio::select! {
                outcome = &mut evaluation => return outcome,
                _ = ticks.tick() => {
                    let until = Utc::now().timestamp_millis() + lease_ms;
                    match queue.renew(claim, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(change = %claim.change_key, "lost the lease of a change being evaluated (this process stalled); another process may evaluate it too"),
                        Err(error) => tracing::warn!(%error, change = %claim.change_key, "cannot renew a lease"),
                    }
                }
            }
        }
    }

    /// After giving up, says so on the change's head (best effort: GitHub may still be down,
    /// and then the last published result, never a green one for failed facts, stays).
    async fn report_gave_up(
        &self,
        job: &Job,
        error: &ApiError,
        attempts: i64,
        failing_for_ms: i64,
    ) {
        let published = async {
            let identity = self.identity().await?.clone();
            let client = self.api.client(job.installation)?;
            let gatherer = Gatherer {
                client: &client,
                repo: &job.repo,
                caches: &self.caches,
            };
            let pr = gatherer.pull_request(job.number).await?;
            let failing_for =
                std::time::Duration::from_millis(failing_for_ms.max(0).unsigned_abs());
            let report = gave_up(&pr, &error.to_string(), attempts, failing_for);
            self.publish(&client, &job.repo, &identity, &pr.head.sha, &report)
                .await
        }
        .await;
        if let Err(error) = published {
            tracing::warn!(%error, repo = %job.repo, number = job.number, "cannot report giving up on the change");
        }
    }

    async fn run_in_memory(self: Arc<Self>) {
        while !self.stopping() {
            let job = {
                let mut queue = self.queue.lock().await;
                let job = queue.pop_front();
                if job.is_some() {
                    // Marked busy while the queue lock is held, so `settle` never sees an
                    // empty queue and an idle worker between the two.
                    self.busy.fetch_add(1, Ordering::SeqCst);
                }
                job
            };
            let Some(job) = job else {
                self.wake.notified().await;
                continue;
            };
            // Taken off the "waiting" set before the work starts, so an event arriving during
            // the evaluation queues one more evaluation of the then-latest state.
            self.queued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(job.repo.clone(), job.number));
            let span = tracing::info_span!("evaluate", repo = %job.repo, number = job.number);
            if let Err(error) = self.process(&job).instrument(span.clone()).await {
                tracing::error!(parent: &span, %error, "evaluation failed");
            }
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn identity(&self) -> Result<&Identity, ApiError> {
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
            time_ms: Utc::now().timestamp_millis(),
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
        let gathered = match gatherer
            .facts(&policy, pr, &identity.login, Utc::now())
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
            // Commands stay bound to the head they were first judged for.
            let keys = audit
                .ledger
                .recorded_keys(repo, job.number)
                .await
                .map_err(ledger_error)?;
            let pinned = crate::ledger::decide::pinned_heads(&keys);
            for comment in &mut gathered.facts.comments {
                let key = (comment.author.clone(), comment.at.timestamp_millis());
                if let Some(head) = pinned.get(&key) {
                    comment.head_sha = head.clone();
                }
            }
        }
        let facts = &gathered.facts;
        let decision = evaluate(&policy, facts);
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
        let report = CheckReport {
            conclusion: Some(Conclusion::of(&decision)),
            title: render::headline(&decision),
            summary,
            annotations: publish::annotations(&decision),
            details_url: pr.html_url.clone(),
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
        };
        match &delivery.event {
            Event::ChangeUpdated(update) => {
                let retarget =
                    matches!(update.action, crate::event::ChangeAction::Retargeted { .. });
                vec![job(&update.change, retarget)]
            }
            Event::Review(review) => vec![job(&review.change, false)],
            Event::CommentCreated(comment) => {
                // The identity is looked up by the worker, never here: intake must answer fast.
                // Until it is known, a comment by tollgate itself costs one evaluation that
                // finds nothing to change.
                let own = self.identity.get().is_some_and(|identity| {
                    comment
                        .author
                        .login
                        .as_str()
                        .eq_ignore_ascii_case(&identity.login)
                });
                // Only commands change a decision; tollgate's own comments never loop back.
                if own
                    || !comment
                        .body
                        .contains(crate::policy::commands::COMMAND_PREFIX)
                {
                    Vec::new()
                } else {
                    vec![job(&comment.change, false)]
                }
            }
            Event::CheckRerequested(request) => request
                .changes
                .iter()
                .map(|number| Job {
                    repo: request.repo.name.to_string(),
                    number: number.0,
                    installation: request.repo.installation,
                    reset_first: false,
                    delivery: delivery.id.as_ref().map(|d| d.to_string()),
                })
                .collect(),
            Event::Ping | Event::ChangeClosed(_) | Event::Ignored { .. } => Vec::new(),
        }
    }
}

fn ledger_error(error: crate::ledger::store::StoreError) -> ApiError {
    ApiError::Unexpected {
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

/// How long to wait before trying a failed change again: exponential from 1 s to 5 min with
/// jitter (half to all of it, so replicas that failed together do not retry together), and
/// never before GitHub's rate limit says (`Retry-After`, or `x-ratelimit-reset` when the
/// budget is spent).
fn retry_delay(attempts: i64, error: &ApiError, now: chrono::DateTime<Utc>) -> i64 {
    use rand_core::RngCore as _;
    let ceiling = (1_000i64 << (attempts - 1).clamp(0, 20)).min(MAX_BACKOFF_MS);
    let jitter = i64::from(rand_core::OsRng.next_u32()) % (ceiling / 2 + 1);
    let backoff = ceiling / 2 + jitter;
    match error.rate_limit_wait(now) {
        Some(wait) => backoff.max(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        None => backoff,
    }
}

impl GithubWorker {
    /// Queues the open pull requests whose head is `sha` (a check suite re-requested without
    /// naming them).
    async fn enqueue_pulls_for(
        &self,
        repo: String,
        sha: String,
        installation: Option<InstallationId>,
    ) {
        #[derive(serde::Deserialize)]
        struct Pull {
            number: u64,
            state: String,
        }
        let pulls: Result<Vec<Pull>, ApiError> = async {
            let client = self.api.client(installation)?;
            Ok(client
                .get(format!("/repos/{repo}/commits/{sha}/pulls"), None::<&()>)
                .await?)
        }
        .await;
        match pulls {
            Ok(pulls) => {
                for pull in pulls.into_iter().filter(|p| p.state == "open") {
                    let job = Job {
                        repo: repo.clone(),
                        number: pull.number,
                        installation,
                        reset_first: false,
                        delivery: None,
                    };
                    if let Err(error) = self.enqueue(vec![job], None).await {
                        tracing::error!(%error, "cannot queue a re-requested check");
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, %repo, %sha, "cannot find the pull requests of a re-requested check")
            }
        }
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
            self.0.enqueue(self.0.jobs_for(&delivery), id).await?;
            if let Event::CheckRerequested(request) = &delivery.event
                && request.changes.is_empty()
            {
                // Looking the pull requests up costs a request: do it off the intake path.
                let worker = Arc::clone(&self.0);
                let (repo, sha) = (request.repo.name.to_string(), request.head_sha.to_string());
                let installation = request.repo.installation;
                tokio::spawn(
                    async move { worker.enqueue_pulls_for(repo, sha, installation).await },
                );
            }
            Ok(())
        })
    }
}
