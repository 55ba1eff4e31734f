//! Prometheus metrics, held in an explicit registry passed through the application state
//! (no global recorder, so several servers can run in one test process).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::event::Forge;

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
        Metrics {
            registry: Arc::new(registry),
            deliveries,
            signature_rejections,
            body_bytes,
            handler_seconds,
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

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
