//! Works the durable queue: claim loops that take one change at a time (under a lease renewed
//! while it is evaluated), hand it to the evaluator of its forge, and settle the claim: done,
//! retried after a backoff, or parked as failed once the change kept failing past the give-up
//! bound. Also the intake's way in (group commit) and the server's drain on SIGTERM.
//!
//! Forge-neutral: an [`Evaluator`] per change-key prefix (`github:`, `gitlab:`) does the work.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use super::{BatchError, Claim, GroupCommit, JobQueue, NewJob};
use crate::config::JobSettings;
use crate::metrics::{EvaluationResult, Metrics};

/// A boxed future, for the object-safe [`Evaluator`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an evaluation failed, and how long the forge asked to be left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong (kept with the jobs, shown by `tollgate jobs list`).
    pub message: String,
    /// The forge's own wait (a rate limit's `Retry-After` or reset), if it gave one.
    pub wait_at_least: Option<Duration>,
}

/// Evaluates the changes of one forge.
pub trait Evaluator: Send + Sync + 'static {
    /// Evaluates a claimed change: its jobs (oldest first) coalesce into one evaluation of
    /// the change's latest state. An error means "try again later".
    fn evaluate<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), Failure>>;

    /// Says on the change that tollgate gave up on it (best effort).
    fn report_gave_up<'a>(
        &'a self,
        claim: &'a Claim,
        failure: &'a Failure,
        attempts: i64,
        failing_for: Duration,
    ) -> BoxFuture<'a, ()>;
}

/// How often an idle claim loop looks for jobs queued by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait before a failed evaluation is tried again (a rate limit may ask for longer).
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// Group-commit writers on PostgreSQL (SQLite has one writer at a time anyway).
const POSTGRES_QUEUE_WRITERS: usize = 4;

/// The queue's workers in this process.
pub struct Runner {
    queue: JobQueue,
    intake: GroupCommit,
    settings: JobSettings,
    metrics: Metrics,
    /// This process's name as a lease holder.
    holder: String,
    /// By change-key prefix (`github:`).
    evaluators: Vec<(String, Arc<dyn Evaluator>)>,
    /// The prefixes of the changes this process claims: those it has an evaluator for.
    prefixes: Vec<String>,
    wake: Notify,
    /// Claim loops between a claim and its settlement.
    busy: AtomicUsize,
    /// Set when the server drains: no new claims.
    stopping: AtomicBool,
    /// Set when a drain ran out of time: a claim that lands now is handed straight back.
    drain_expired: AtomicBool,
    /// The claims being evaluated, by claim loop, to hand back if a drain runs out of time.
    active: std::sync::Mutex<HashMap<usize, Claim>>,
}

impl Runner {
    /// Starts `settings.workers` claim loops on `queue` (none for an intake-only process) and
    /// the intake's group-commit writers.
    pub fn start(
        queue: JobQueue,
        settings: JobSettings,
        metrics: Metrics,
        evaluators: Vec<(String, Arc<dyn Evaluator>)>,
    ) -> Arc<Runner> {
        let writers = if queue.is_postgres() {
            POSTGRES_QUEUE_WRITERS
        } else {
            1
        };
        metrics.watch_queue(queue.clone());
        let runner = Arc::new(Runner {
            intake: GroupCommit::start(queue.clone(), writers, metrics.clone()),
            queue,
            settings,
            metrics,
            holder: uuid::Uuid::new_v4().to_string(),
            prefixes: evaluators.iter().map(|(p, _)| p.clone()).collect(),
            evaluators,
            wake: Notify::new(),
            busy: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            drain_expired: AtomicBool::new(false),
            active: std::sync::Mutex::new(HashMap::new()),
        });
        // Without an evaluator there is nothing this process could claim.
        let loops = if runner.evaluators.is_empty() {
            0
        } else {
            settings.workers
        };
        for slot in 0..loops {
            let runner = Arc::clone(&runner);
            tokio::spawn(async move { runner.run(slot).await });
        }
        runner
    }

    /// Queues jobs durably: returns once they are committed, together with whatever else
    /// arrived meanwhile. A redelivered (delivery, change) is not queued twice.
    pub async fn submit(&self, jobs: Vec<NewJob>) -> Result<(), BatchError> {
        self.intake.submit(jobs).await?;
        // Wake every idle claim loop, and leave a permit for one that is about to wait.
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(())
    }

    /// Queues the jobs of one delivery (serialised, each under the change key `key` gives it);
    /// see [`Runner::submit`]. A delivery without an id cannot be recognised when redelivered;
    /// it still is queued.
    pub async fn queue_jobs<J: serde::Serialize>(
        &self,
        delivery: Option<&str>,
        jobs: &[J],
        key: impl Fn(&J) -> String,
    ) -> Result<(), BatchError> {
        let delivery = delivery.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let mut new = Vec::with_capacity(jobs.len());
        for job in jobs {
            new.push(NewJob {
                delivery_id: delivery.clone(),
                change_key: key(job),
                payload: serde_json::to_string(job).map_err(|e| BatchError(e.to_string()))?,
            });
        }
        self.submit(new).await
    }

    /// Waits until nothing is queued or running (for tests).
    pub async fn settle(&self) {
        loop {
            let idle = self.queue.depth().await.is_ok_and(|n| n == 0)
                && self.busy.load(Ordering::SeqCst) == 0;
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops claiming work and waits up to `timeout` for the evaluations in flight. Those still
    /// running then are handed back to the queue (no attempt counted), so another replica, or
    /// this one after its restart, takes them at once instead of after the lease. Returns
    /// whether everything in flight finished.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        let finished = tokio::time::timeout(timeout, async {
            while self.busy.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
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
        for claim in claims {
            self.hand_back(&claim).await;
        }
        false
    }

    async fn hand_back(&self, claim: &Claim) {
        match self.queue.hand_back(claim).await {
            Ok(()) => {
                tracing::warn!(change = %claim.change_key, "drain timeout: handed an unfinished evaluation back to the queue")
            }
            Err(error) => {
                tracing::error!(%error, change = %claim.change_key, "drain timeout: cannot hand an evaluation back; it is taken over when its lease ends")
            }
        }
    }

    /// One claim loop: claims changes one at a time, across processes.
    async fn run(self: Arc<Self>, slot: usize) {
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 4);
        while !self.stopping.load(Ordering::SeqCst) {
            // Counted busy before the claim, so `drain` and `settle` never miss a claim that
            // is between the store and the evaluation.
            self.busy.fetch_add(1, Ordering::SeqCst);
            let claimed = self
                .queue
                .claim_matching(
                    &self.holder,
                    Utc::now().timestamp_millis(),
                    lease_ms,
                    &self.prefixes,
                )
                .await;
            match claimed {
                Ok(Some(claim)) if self.drain_expired.load(Ordering::SeqCst) => {
                    // Claimed while a timed-out drain handed the rest back: hand it back too.
                    self.hand_back(&claim).await;
                }
                Ok(Some(claim)) => {
                    self.active
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(slot, claim.clone());
                    self.work(&claim, lease_ms).await;
                    self.active
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&slot);
                }
                Ok(None) => {
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = tokio::time::timeout(POLL_INTERVAL, self.wake.notified()).await;
                    continue;
                }
                Err(error) => {
                    self.busy.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!(%error, "cannot read the job queue");
                    tokio::time::sleep(POLL_INTERVAL * 4).await;
                    continue;
                }
            }
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn evaluator(&self, change_key: &str) -> Option<&Arc<dyn Evaluator>> {
        self.evaluators
            .iter()
            .find(|(prefix, _)| change_key.starts_with(prefix.as_str()))
            .map(|(_, evaluator)| evaluator)
    }

    /// Evaluates a claimed change, renewing the lease while it runs, then settles the claim.
    async fn work(&self, claim: &Claim, lease_ms: i64) {
        let outcome = match self.evaluator(&claim.change_key) {
            Some(evaluator) => {
                self.renewing(claim, lease_ms, evaluator.evaluate(claim))
                    .await
            }
            None => Err(Failure {
                message: format!(
                    "this process cannot evaluate `{}` (its forge is not configured)",
                    claim.change_key
                ),
                wait_at_least: None,
            }),
        };
        let now = Utc::now().timestamp_millis();
        let settled = match outcome {
            Ok(()) => {
                self.metrics.evaluation(EvaluationResult::Completed);
                self.queue.complete(claim).await
            }
            Err(failure) => {
                let attempts = claim.attempts() + 1;
                let failing_for_ms = now - claim.failing_since_ms().unwrap_or(now);
                let give_up_ms =
                    i64::try_from(self.settings.give_up_after.as_millis()).unwrap_or(i64::MAX);
                if failing_for_ms >= give_up_ms {
                    self.metrics.evaluation(EvaluationResult::GaveUp);
                    tracing::error!(error = %failure.message, attempts, change = %claim.change_key, "evaluation keeps failing; giving up (retry with `tollgate jobs retry`)");
                    if let Some(evaluator) = self.evaluator(&claim.change_key) {
                        let failing_for = Duration::from_millis(failing_for_ms.unsigned_abs());
                        evaluator
                            .report_gave_up(claim, &failure, attempts, failing_for)
                            .await;
                    }
                    self.queue.give_up(claim, &failure.message, now).await
                } else {
                    self.metrics.evaluation(EvaluationResult::Retried);
                    let backoff = retry_delay(attempts, &failure);
                    tracing::warn!(error = %failure.message, attempts, backoff_ms = backoff, change = %claim.change_key, "evaluation failed; will retry");
                    self.queue
                        .retry(claim, &failure.message, now + backoff)
                        .await
                }
            }
        };
        if let Err(error) = settled {
            // The lease runs out and the jobs are taken again: nothing is lost.
            tracing::error!(%error, change = %claim.change_key, "cannot update the job queue");
        }
    }

    /// Runs `evaluation` while renewing the claim's lease every third of its length.
    async fn renewing<F>(&self, claim: &Claim, lease_ms: i64, evaluation: F) -> F::Output
    where
        F: Future,
    {
        let period = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1).max(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tokio::pin!(evaluation);
        loop {
            tokio::select! {
                outcome = &mut evaluation => return outcome,
                _ = ticks.tick() => {
                    let until = Utc::now().timestamp_millis() + lease_ms;
                    match self.queue.renew(claim, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(change = %claim.change_key, "lost the lease of a change being evaluated (this process stalled); another process may evaluate it too"),
                        Err(error) => tracing::warn!(%error, change = %claim.change_key, "cannot renew a lease"),
                    }
                }
            }
        }
    }
}

/// How long to wait before trying a failed change again: exponential from 1 s to 5 min with
/// jitter (half to all of it, so replicas that failed together do not retry together), and
/// never before the forge's own wait (a rate limit's `Retry-After` or reset).
fn retry_delay(attempts: i64, failure: &Failure) -> i64 {
    use rand_core::RngCore as _;
    let ceiling = (1_000i64 << (attempts - 1).clamp(0, 20)).min(MAX_BACKOFF_MS);
    let jitter = i64::from(rand_core::OsRng.next_u32()) % (ceiling / 2 + 1);
    let backoff = ceiling / 2 + jitter;
    match failure.wait_at_least {
        Some(wait) => backoff.max(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(wait: Option<u64>) -> Failure {
        Failure {
            message: "GitHub 502".to_owned(),
            wait_at_least: wait.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        for attempts in 1..=30 {
            let ceiling = (1_000i64 << (attempts - 1).min(20)).min(MAX_BACKOFF_MS);
            for _ in 0..20 {
                let delay = retry_delay(attempts, &failure(None));
                assert!(
                    (ceiling / 2..=ceiling).contains(&delay),
                    "attempt {attempts}: {delay} ms"
                );
            }
        }
    }

    #[test]
    fn a_rate_limit_wait_is_never_cut_short() {
        assert!(retry_delay(1, &failure(Some(90))) >= 90_000);
        // …nor capped at the backoff ceiling.
        assert!(retry_delay(30, &failure(Some(3_600))) >= 3_600_000);
    }
}
