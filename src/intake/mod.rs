//! Webhook intake: bound the body, authenticate it on the raw bytes, parse it into an
//! [`Event`], hand it to the sink and answer the forge. Nothing here calls a forge.

pub mod github;
pub mod gitlab;
pub mod verify;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use secrecy::SecretString;

use crate::event::{Delivery, DeliveryId, Event, Forge};
use crate::metrics::Metrics;
use crate::sink::EventSink;
use verify::AuthFailure;

/// Largest body accepted: GitHub's own cap on webhook payloads (25 MiB).
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Longest event name kept as a metrics label; longer (or odd) names are counted as `other`.
const MAX_EVENT_LABEL_LEN: usize = 64;

/// Why a verified body could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    Json(serde_json::Error),
    /// JSON, but not the shape this event has.
    #[error("`{event}` payload is not of the expected shape: {message}")]
    Shape {
        /// Event name from the header.
        event: String,
        /// What was wrong (serde's message: which field, which type).
        message: String,
    },
}

/// Parses a body as JSON into `T`, telling syntax errors from shape errors.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ParseError::Shape {
            event: "webhook".to_owned(),
            message: error.to_string(),
        },
        _ => ParseError::Json(error),
    })
}

/// The secrets each forge's deliveries are checked against. An empty list disables that
/// forge's route (it answers 404): tollgate never accepts an unauthenticated delivery.
#[derive(Clone, Default)]
pub struct IntakeSecrets {
    /// GitHub webhook secrets (several during a rotation).
    pub github: Vec<SecretString>,
    /// GitLab webhook tokens (several during a rotation).
    pub gitlab: Vec<SecretString>,
}

/// Shared state of the intake routes.
#[derive(Clone)]
pub struct IntakeState {
    secrets: Arc<IntakeSecrets>,
    metrics: Metrics,
    sink: Arc<dyn EventSink>,
}

impl IntakeState {
    /// Builds the state from secrets, the metrics registry and the sink.
    pub fn new(secrets: IntakeSecrets, metrics: Metrics, sink: Arc<dyn EventSink>) -> Self {
        IntakeState {
            secrets: Arc::new(secrets),
            metrics,
            sink,
        }
    }
}

/// What one forge's intake looks like: its headers, how it authenticates, how it parses.
struct ForgeSpec {
    forge: Forge,
    event_header: &'static str,
    delivery_header: &'static str,
    authenticate: fn(&HeaderMap, &[u8], &IntakeSecrets) -> Result<(), AuthFailure>,
    parse: fn(&str, &[u8]) -> Result<Event, ParseError>,
}

const GITHUB: ForgeSpec = ForgeSpec {
    forge: Forge::GitHub,
    event_header: "x-github-event",
    delivery_header: "x-github-delivery",
    authenticate: |headers, body, secrets| {
        let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
        verify::verify_github_signature(signature, body, &secrets.github)
    },
    parse: github::parse,
};

const GITLAB: ForgeSpec = ForgeSpec {
    forge: Forge::GitLab,
    event_header: "x-gitlab-event",
    delivery_header: "x-gitlab-event-uuid",
    authenticate: |headers, _body, secrets| {
        let token = headers.get("x-gitlab-token").map(|v| v.as_bytes());
        verify::verify_gitlab_token(token, &secrets.gitlab)
    },
    parse: gitlab::parse,
};

/// `POST /webhooks/github`.
pub async fn github_webhook(State(state): State<IntakeState>, request: Request) -> Response {
    handle(&GITHUB, &state, request).await
}

/// `POST /webhooks/gitlab`.
pub async fn gitlab_webhook(State(state): State<IntakeState>, request: Request) -> Response {
    handle(&GITLAB, &state, request).await
}

/// The answer to one delivery, before it becomes an HTTP response.
#[derive(Debug)]
enum Outcome {
    Accepted,
    Ignored(String),
    Pong,
    NotEnabled,
    TooLarge,
    BodyUnreadable,
    Unauthenticated(AuthFailure),
    MissingEventHeader,
    Malformed(ParseError),
    SinkUnavailable,
}

impl Outcome {
    /// Stable label for the deliveries metric.
    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Ignored(_) => "ignored",
            Outcome::Pong => "ping",
            Outcome::NotEnabled => "not_enabled",
            Outcome::TooLarge => "too_large",
            Outcome::BodyUnreadable => "body_unreadable",
            Outcome::Unauthenticated(_) => "unauthenticated",
            Outcome::MissingEventHeader => "missing_event",
            Outcome::Malformed(_) => "malformed",
            Outcome::SinkUnavailable => "unavailable",
        }
    }

    fn into_response(self, forge: Forge) -> Response {
        let (status, message) = match self {
            Outcome::Accepted => (StatusCode::ACCEPTED, "accepted".to_owned()),
            Outcome::Ignored(reason) => (StatusCode::ACCEPTED, format!("ignored: {reason}")),
            Outcome::Pong => (StatusCode::OK, "pong".to_owned()),
            Outcome::NotEnabled => (
                StatusCode::NOT_FOUND,
                format!("{forge} webhooks are not enabled on this server"),
            ),
            Outcome::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("payload larger than {MAX_BODY_BYTES} bytes"),
            ),
            Outcome::BodyUnreadable => {
                (StatusCode::BAD_REQUEST, "body could not be read".to_owned())
            }
            // No detail: an attacker learns nothing about which check failed.
            Outcome::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthorized".to_owned()),
            Outcome::MissingEventHeader => {
                (StatusCode::BAD_REQUEST, "missing event header".to_owned())
            }
            Outcome::Malformed(error) => (StatusCode::BAD_REQUEST, error.to_string()),
            Outcome::SinkUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be queued; deliver it again".to_owned(),
            ),
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response()
    }
}

async fn handle(spec: &ForgeSpec, state: &IntakeState, request: Request) -> Response {
    let started = Instant::now();
    let (outcome, event_label) = receive(spec, state, request).await;
    let metrics = &state.metrics;
    metrics.delivery(spec.forge, &event_label, outcome.label());
    if let Outcome::Unauthenticated(failure) = outcome {
        metrics.signature_rejected(spec.forge, failure.as_str());
    }
    metrics.handler_latency(spec.forge, started.elapsed());
    match &outcome {
        Outcome::Accepted | Outcome::Pong => {}
        Outcome::Ignored(reason) => tracing::debug!(reason, "delivery ignored"),
        other => tracing::warn!(outcome = other.label(), "delivery refused"),
    }
    outcome.into_response(spec.forge)
}

/// Reads, authenticates and parses one delivery. Returns the outcome and the event label to
/// count it under (`unverified` until the signature is checked: the header is the sender's).
async fn receive(spec: &ForgeSpec, state: &IntakeState, request: Request) -> (Outcome, String) {
    let unverified = || "unverified".to_owned();
    let secrets = &state.secrets;
    let enabled = match spec.forge {
        Forge::GitHub => !secrets.github.is_empty(),
        Forge::GitLab => !secrets.gitlab.is_empty(),
    };
    if !enabled {
        return (Outcome::NotEnabled, unverified());
    }
    let (parts, body) = request.into_parts();
    let body = match read_bounded(&parts.headers, body).await {
        Ok(body) => body,
        Err(outcome) => return (outcome, unverified()),
    };
    state.metrics.body_size(spec.forge, body.len());
    if let Err(failure) = (spec.authenticate)(&parts.headers, &body, secrets) {
        return (Outcome::Unauthenticated(failure), unverified());
    }
    let Some(event_name) = header_text(&parts.headers, spec.event_header) else {
        return (Outcome::MissingEventHeader, "missing".to_owned());
    };
    let label = event_label(event_name);
    tracing::Span::current().record("event", event_name);
    let event = match (spec.parse)(event_name, &body) {
        Ok(event) => event,
        Err(error) => return (Outcome::Malformed(error), label),
    };
    record_change_fields(&event);
    let outcome = match event {
        Event::Ping => Outcome::Pong,
        Event::Ignored { reason } => Outcome::Ignored(reason),
        event => {
            let delivery = Delivery {
                forge: spec.forge,
                id: header_text(&parts.headers, spec.delivery_header).map(DeliveryId::new),
                event_name: event_name.to_owned(),
                event,
            };
            match state.sink.accept(delivery).await {
                Ok(()) => Outcome::Accepted,
                Err(error) => {
                    tracing::error!(%error, "sink refused a delivery");
                    Outcome::SinkUnavailable
                }
            }
        }
    };
    (outcome, label)
}

/// Reads the body up to [`MAX_BODY_BYTES`]. A declared length over the cap is refused before
/// a byte is read; an undeclared one is cut off as soon as it passes the cap.
async fn read_bounded(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, Outcome> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(Outcome::TooLarge);
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(Outcome::TooLarge),
        Err(error) => {
            tracing::debug!(%error, "webhook body could not be read");
            Err(Outcome::BodyUnreadable)
        }
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Keeps metric label cardinality bounded even if a forge sends odd event names.
fn event_label(event_name: &str) -> String {
    let plain = event_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '-');
    if plain && event_name.len() <= MAX_EVENT_LABEL_LEN {
        event_name.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Adds the change's coordinates to the request span, so every later log line carries them.
fn record_change_fields(event: &Event) {
    let span = tracing::Span::current();
    if let Some(change) = event.change() {
        span.record("repo", change.repo.name.as_str());
        span.record("number", change.number.0);
    }
    match event {
        Event::ChangeUpdated(update) => {
            span.record("sha", update.head_sha.as_str());
        }
        Event::CheckRerequested(request) => {
            span.record("repo", request.repo.name.as_str());
            span.record("sha", request.head_sha.as_str());
        }
        _ => {}
    }
}

/// Reads the delivery id a request claims, if it looks like one (for the request span; it is
/// logged before authentication, so anything unusual is replaced, never echoed).
pub fn claimed_delivery_id(headers: &HeaderMap) -> Option<String> {
    let raw = header_text(headers, GITHUB.delivery_header)
        .or_else(|| header_text(headers, GITLAB.delivery_header))?;
    let plausible = raw.len() <= 64 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    Some(if plausible {
        raw.to_owned()
    } else {
        "invalid".to_owned()
    })
}
