//! Prometheus metrics, held in an explicit registry passed through the application state
//! (no global recorder, so several servers can run in one test process).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::event::Forge;
use crate::queue::JobQueue;

/// `Content-Type` of the `/metrics` answer (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    forge: &'static str,
    event: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignatureLabels {
    forge: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// How an evaluation of a claimed change ended, for `tollgate_queue_evaluations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvaluationResult {
    /// Evaluated and published.
    Completed,
    /// Failed; its jobs wait out a backoff and are tried again.
    Retried,
    /// Kept failing past the give-up bound; its jobs are parked for an operator.
    GaveUp,
}

impl EvaluationResult {
    fn as_str(self) -> &'static str {
        match self {
            EvaluationResult::Completed => "completed",
            EvaluationResult::Retried => "retried",
            EvaluationResult::GaveUp => "gave_up",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForgeLabel {
    forge: &'static str,
}

/// The metrics tollgate exports. Cheap to clone (handles to shared counters).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    deliveries: Family<DeliveryLabels, Counter>,
    signature_rejections: Family<SignatureLabels, Counter>,
    body_bytes: Family<ForgeLabel, Histogram>,
    handler_seconds: Family<ForgeLabel, Histogram>,
    queue_jobs: Family<StateLabel, Gauge>,
    queue_oldest_seconds: Gauge<f64, AtomicU64>,
    queue_commit_batch: Histogram,
    queue_evaluations: Family<ResultLabel, Counter>,
    /// The queue whose depth and age are read at each scrape (absent in dry-run).
    queue: Arc<OnceLock<JobQueue>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tollgate");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by forge, event and outcome",
            deliveries.clone(),
        );
        let signature_rejections = Family::<SignatureLabels, Counter>::default();
        registry.register(
            "webhook_signature_rejections",
            "Deliveries refused because their signature or token was missing, malformed or wrong",
            signature_rejections.clone(),
        );
        // 256 B … 32 MiB: GitHub caps payloads at 25 MiB.
        let body_bytes = Family::<ForgeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(256.0, 4.0, 10))
        });
        registry.register(
            "webhook_body_bytes",
            "Size of webhook bodies read",
            body_bytes.clone(),
        );
        // 50 µs … ~13 s.
        let handler_seconds = Family::<ForgeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
        });
        registry.register(
            "webhook_handler_seconds",
            "Time from request to webhook answer",
            handler_seconds.clone(),
        );
        let queue_jobs = Family::<StateLabel, Gauge>::default();
        registry.register(
            "queue_jobs",
            "Jobs in the durable queue by state (queued, running, failed), read at scrape time",
            queue_jobs.clone(),
        );
        let queue_oldest_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "queue_oldest_job_age_seconds",
            "Age of the oldest job not yet done or given up on (0 when there is none)",
            queue_oldest_seconds.clone(),
        );
        // 1 … 512 deliveries per commit.
        let queue_commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "queue_commit_batch_deliveries",
            "Deliveries written to the queue per commit (group commit)",
            queue_commit_batch.clone(),
        );
        let queue_evaluations = Family::<ResultLabel, Counter>::default();
        registry.register(
            "queue_evaluations",
            "Evaluations of claimed changes by result: completed, retried (failed, will retry), gave_up",
            queue_evaluations.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            deliveries,
            signature_rejections,
            body_bytes,
            handler_seconds,
            queue_jobs,
            queue_oldest_seconds,
            queue_commit_batch,
            queue_evaluations,
            queue: Arc::new(OnceLock::new()),
        }
    }

    /// Counts one delivery. `event` must be a bounded value (a verified header or a constant).
    pub fn delivery(&self, forge: Forge, event: &str, outcome: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                forge: forge.as_str(),
                event: event.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts one refused signature or token.
    pub fn signature_rejected(&self, forge: Forge, reason: &'static str) {
        self.signature_rejections
            .get_or_create(&SignatureLabels {
                forge: forge.as_str(),
                reason,
            })
            .inc();
    }

    /// Records the size of a body that was read.
    pub fn body_size(&self, forge: Forge, bytes: usize) {
        self.body_bytes
            .get_or_create(&ForgeLabel {
                forge: forge.as_str(),
            })
            .observe(bytes as f64);
    }

    /// Records how long a webhook took to answer.
    pub fn handler_latency(&self, forge: Forge, elapsed: Duration) {
        self.handler_seconds
            .get_or_create(&ForgeLabel {
                forge: forge.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the size of one group commit.
    pub fn queue_commit(&self, deliveries: usize) {
        self.queue_commit_batch.observe(deliveries as f64);
    }

    /// Counts how an evaluation of a claimed change ended.
    pub fn evaluation(&self, result: EvaluationResult) {
        self.queue_evaluations
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    /// Reports the depth and age of `queue` at each scrape.
    pub fn watch_queue(&self, queue: JobQueue) {
        let _ = self.queue.set(queue);
    }

    /// Reads the watched queue's depth and age into the gauges. A store that cannot be read
    /// leaves the last values and says so in the log.
    pub async fn refresh(&self) {
        let Some(queue) = self.queue.get() else {
            return;
        };
        match queue.stats().await {
            Ok(stats) => {
                for (state, n) in [
                    ("queued", stats.queued),
                    ("running", stats.running),
                    ("failed", stats.failed),
                ] {
                    self.queue_jobs.get_or_create(&StateLabel { state }).set(n);
                }
                let now = chrono::Utc::now().timestamp_millis();
                let age = stats
                    .oldest_pending_ms
                    .map_or(0.0, |oldest| (now - oldest).max(0) as f64 / 1000.0);
                self.queue_oldest_seconds.set(age);
            }
            Err(error) => tracing::warn!(%error, "cannot read the job queue for /metrics"),
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
