//! The scheduler: acts on deadlines from the shared [`Schedule`] when they fall due. Every
//! replica runs one; each due deadline is claimed under a lease by exactly one of them, so a
//! reminder is posted once however many replicas run, and one that was pending when a process
//! stopped is acted on after the restart (or by another replica once the lease runs out).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::queue::runner::BoxFuture;
use crate::schedule::{Due, Schedule};

/// Acts on due deadlines of the kinds it was registered for.
pub trait DeadlineHandler: Send + Sync {
    /// Acts on one deadline. An error leaves it pending: it is tried again once its lease runs
    /// out, so the action must be idempotent.
    fn handle<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), String>>;
}

/// How long a claimed deadline is left to its holder before another replica may take it.
const LEASE: Duration = Duration::from_secs(120);
/// Deadlines claimed per tick.
const BATCH: i64 = 32;

/// One replica's scheduler.
pub struct Scheduler {
    schedule: Schedule,
    clock: Arc<dyn Clock>,
    holder: String,
    handlers: Vec<(String, Arc<dyn DeadlineHandler>)>,
    /// The kinds (prefixes) the handlers take: the only deadlines this replica claims.
    kinds: Vec<String>,
}

impl Scheduler {
    /// A scheduler on `schedule` handing each deadline to the handler registered for the
    /// start of its kind (e.g. `github:`).
    pub fn new(
        schedule: Schedule,
        clock: Arc<dyn Clock>,
        handlers: Vec<(String, Arc<dyn DeadlineHandler>)>,
    ) -> Scheduler {
        Scheduler {
            schedule,
            clock,
            holder: format!("scheduler-{}", uuid::Uuid::new_v4()),
            kinds: handlers.iter().map(|(prefix, _)| prefix.clone()).collect(),
            handlers,
        }
    }

    /// Claims what is due now, of the kinds its handlers take, and acts on it; returns how many
    /// deadlines were done.
    pub async fn tick(&self) -> Result<usize, crate::schedule::ScheduleError> {
        let now_ms = self.clock.now().timestamp_millis();
        let lease_ms = LEASE.as_millis() as i64;
        let claimed = self
            .schedule
            .claim_due_of(&self.holder, now_ms, lease_ms, BATCH, &self.kinds)
            .await?;
        let mut done = 0;
        for due in claimed {
            let handler = self
                .handlers
                .iter()
                .find(|(prefix, _)| due.kind.starts_with(prefix.as_str()));
            let Some((_, handler)) = handler else {
                self.schedule.release(&due.key, &self.holder).await?;
                continue;
            };
            match handler.handle(&due).await {
                Ok(()) => {
                    let now_ms = self.clock.now().timestamp_millis();
                    if self
                        .schedule
                        .complete(&due.key, &self.holder, now_ms)
                        .await?
                    {
                        done += 1;
                    }
                }
                Err(error) => {
                    tracing::warn!(key = %due.key, %error, "a deadline could not be acted on; it is tried again later");
                }
            }
        }
        Ok(done)
    }

    /// Ticks every `every` until `stop` says so.
    pub fn spawn(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        if let Err(error) = self.tick().await {
                            tracing::error!(%error, "the scheduler cannot read its deadlines");
                        }
                    }
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
            }
        })
    }
}
