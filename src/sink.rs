//! Where accepted deliveries go once intake has verified and parsed them.
//!
//! Intake only hands a [`Delivery`] over and answers the forge; the work happens behind this
//! trait (today: the dry-run logger; later: the durable queue and its workers).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::event::{Delivery, Event};

/// The future returned by [`EventSink::accept`].
pub type AcceptFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// The sink could not take the delivery; the forge is told to deliver it again later.
#[derive(Debug, thiserror::Error)]
#[error("the event could not be queued: {0}")]
pub struct SinkError(pub String);

/// Receives every accepted, actionable delivery (never pings or ignored events).
pub trait EventSink: Send + Sync + 'static {
    /// Takes one delivery. Must return quickly: the forge is waiting for the answer.
    fn accept(&self, delivery: Delivery) -> AcceptFuture<'_>;
}

/// Logs what tollgate would do, and does nothing else. Used when no forge credentials are
/// configured.
#[derive(Debug, Default)]
pub struct DryRunSink;

impl EventSink for DryRunSink {
    fn accept(&self, delivery: Delivery) -> AcceptFuture<'_> {
        let change = delivery.event.change();
        tracing::info!(
            forge = %delivery.forge,
            delivery = delivery.id.as_ref().map(|id| id.as_str()),
            event = delivery.event_name,
            kind = delivery.event.kind(),
            repo = change.map(|c| c.repo.name.as_str()),
            number = change.map(|c| c.number.0),
            head_sha = head_sha(&delivery.event),
            "dry-run: accepted event; would evaluate the change and publish its check and comment"
        );
        Box::pin(std::future::ready(Ok(())))
    }
}

fn head_sha(event: &Event) -> Option<&str> {
    match event {
        Event::ChangeUpdated(update) => Some(update.head_sha.as_str()),
        Event::CheckRerequested(request) => Some(request.head_sha.as_str()),
        Event::Review(review) => review.commit.as_ref().map(|sha| sha.as_str()),
        _ => None,
    }
}

/// Keeps every delivery in memory, in order. For tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    deliveries: Mutex<Vec<Delivery>>,
}

impl MemorySink {
    /// Removes and returns everything received so far.
    pub fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.deliveries.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl EventSink for MemorySink {
    fn accept(&self, delivery: Delivery) -> AcceptFuture<'_> {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(delivery);
        Box::pin(std::future::ready(Ok(())))
    }
}
