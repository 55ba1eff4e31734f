//! What follows a bypass, the same on every forge: the steps, their order, what is stored and
//! what is recorded. A forge supplies a [`Tracker`] (open an issue, comment, label, open a
//! revert); everything else happens here, once.

use std::future::Future;

use chrono::{DateTime, TimeDelta, Utc};

use super::store::{self, Incidents, Review, ReviewState};
use super::{DeadlinePayload, Reviewers};
use crate::ledger::Audit;
use crate::ledger::decide::{self, Context, command_name, incident_record};
use crate::ledger::record::RecordKind;
use crate::policy::commands::{self, Rollback};
use crate::policy::decision::{CommandRecord, Outcome};
use crate::policy::facts::{ChangeFacts, Comment, OverdueReview};
use crate::policy::{Decision, Policy, evaluate};
use crate::schedule::Schedule;

/// An issue as the forge has it now.
#[derive(Debug, Clone, Default)]
pub struct IssueNow {
    /// Closed (not reopened since).
    pub closed: bool,
    /// Its description.
    pub body: String,
    /// Who it is assigned to.
    pub assignees: Vec<String>,
    /// Who closed it, when the forge says.
    pub closed_by: Option<String>,
}

/// A merged change, as the forge reports it.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Its number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its page.
    pub url: Option<String>,
    /// When it was merged.
    pub merged_at: DateTime<Utc>,
    /// Who merged it.
    pub merged_by: Option<String>,
}

/// A new revert change.
#[derive(Debug, Clone)]
pub struct Revert {
    /// Its number.
    pub number: u64,
    /// Its head commit (the bypass covers it alone).
    pub head: String,
    /// Its page.
    pub url: Option<String>,
}

/// What a forge does for incidents, in one repository.
pub trait Tracker: Sync {
    /// The forge's errors (kept, so that rate limits reach the queue's backoff).
    type Error: std::fmt::Display + Send;
    /// `github` or `gitlab`.
    fn forge(&self) -> &'static str;
    /// The repository's path.
    fn repo(&self) -> &str;
    /// What a deadline acts through later: the GitHub App installation (if any), the GitLab
    /// project's id.
    fn via(&self) -> Option<u64>;
    /// How the forge writes a reference to a change (`#7`, `!7`).
    fn change_ref(&self, number: u64) -> String;
    /// The error for a store that failed.
    fn store_error(&self, what: &str, error: String) -> Self::Error;
    /// Opens an issue; returns its number and page.
    fn open_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[&str],
        reviewers: &Reviewers,
    ) -> impl Future<Output = Result<(u64, String), Self::Error>> + Send;
    /// The open or closed issue titled `title` that tollgate opened, if there is one.
    fn find_issue(
        &self,
        title: &str,
    ) -> impl Future<Output = Result<Option<(u64, String)>, Self::Error>> + Send;
    /// An issue as it is now.
    fn issue(&self, number: u64) -> impl Future<Output = Result<IssueNow, Self::Error>> + Send;
    /// Whether tollgate's overdue reminder is among an issue's comments already (read only
    /// when a reminder is due: it lists every comment).
    fn reminded(&self, number: u64) -> impl Future<Output = Result<bool, Self::Error>> + Send;
    /// Comments on an issue.
    fn comment_on_issue(
        &self,
        number: u64,
        body: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Adds a label to an issue (or a change).
    fn label(
        &self,
        number: u64,
        labels: &[&str],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The head and base commits of a change (where its records are made).
    fn heads(
        &self,
        change: u64,
    ) -> impl Future<Output = Result<(String, String), Self::Error>> + Send;
    /// Opens the revert of a merged change against its target branch.
    fn open_revert(
        &self,
        change: u64,
        title: &str,
        body: &str,
        rollback: &Rollback,
    ) -> impl Future<Output = Result<Revert, Self::Error>> + Send;
    /// Comments on a change.
    fn comment_on_change(
        &self,
        change: u64,
        body: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Has a change evaluated (through the durable queue).
    fn evaluate_later(&self, change: u64) -> impl Future<Output = ()> + Send;
}

/// Where incidents are kept: the ledger, the incident tables, the deadlines.
#[derive(Clone, Copy)]
pub struct Stores<'a> {
    /// The signed ledger.
    pub audit: &'a Audit,
    /// Reviews and rollbacks.
    pub incidents: &'a Incidents,
    /// Deadlines.
    pub schedule: &'a Schedule,
}

/// One forge's incident state: its name and the stores, owned by its worker. The questions a
/// worker asks while evaluating (a granted bypass, overdue reviews, a bypass to expire) go
/// through it, the same for every forge.
pub struct Desk {
    forge: &'static str,
    audit: std::sync::Arc<Audit>,
    incidents: Incidents,
    schedule: Schedule,
}

/// A store failure, for the forge to wrap in its error.
pub type StoreFailure = String;

impl Desk {
    /// The desk of `forge`, on the ledger's store.
    pub fn new(forge: &'static str, audit: std::sync::Arc<Audit>) -> Desk {
        let pool = audit.ledger.pool().clone();
        Desk {
            forge,
            audit,
            incidents: Incidents::new(pool.clone()),
            schedule: Schedule::new(pool),
        }
    }

    /// The stores, for the steps below.
    pub fn stores(&self) -> Stores<'_> {
        Stores {
            audit: &self.audit,
            incidents: &self.incidents,
            schedule: &self.schedule,
        }
    }

    /// The bypass a rollback holds for its revert change, if `number` is one.
    pub async fn granted_bypass(
        &self,
        repo: &str,
        number: u64,
    ) -> Result<Option<Comment>, StoreFailure> {
        granted_bypass(&self.incidents, self.forge, repo, number)
            .await
            .map_err(|e| format!("the incident store: {e}"))
    }

    /// The repository's reviews overdue at `at`, when `policy` lets them block bypasses (and
    /// none otherwise: then they do not matter).
    pub async fn blocking_reviews(
        &self,
        policy: &Policy,
        repo: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<OverdueReview>, StoreFailure> {
        let blocks = policy
            .emergency
            .as_ref()
            .is_some_and(|e| e.overdue_review_blocks_bypass);
        if !blocks {
            return Ok(Vec::new());
        }
        overdue_reviews(&self.incidents, self.forge, repo, at)
            .await
            .map_err(|e| format!("the incident store: {e}"))
    }

    /// A bypassed change is evaluated again when its bypass expires (`via`: see
    /// [`DeadlinePayload::via`]).
    pub async fn schedule_bypass_expiry(
        &self,
        repo: &str,
        change: u64,
        via: Option<u64>,
        decision: &Decision,
    ) -> Result<(), StoreFailure> {
        schedule_bypass_expiry(&self.schedule, self.forge, repo, change, via, decision)
            .await
            .map_err(|e| format!("the schedule: {e}"))
    }
}

/// What a due deadline asks of a forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deadline {
    /// A post-incident review fell due: remind (see [`review_due`]).
    ReviewDue {
        /// The review's issue.
        issue: u64,
    },
    /// A bypass expired: evaluate the change again.
    BypassExpired {
        /// The change.
        change: u64,
    },
}

/// Reads a due deadline of `forge`: what it asks, and where.
pub fn read_deadline(
    forge: &str,
    due: &crate::schedule::Due,
) -> Result<(Deadline, DeadlinePayload), String> {
    let payload: DeadlinePayload =
        serde_json::from_str(&due.payload).map_err(|e| format!("deadline {}: {e}", due.key))?;
    let kind = due
        .kind
        .strip_prefix(forge)
        .and_then(|k| k.strip_prefix(':'))
        .unwrap_or_default();
    let deadline = match (kind, payload.issue) {
        (super::REVIEW_DUE, Some(issue)) => Deadline::ReviewDue { issue },
        (super::BYPASS_EXPIRY, _) => Deadline::BypassExpired {
            change: payload.change,
        },
        _ => {
            return Err(format!(
                "deadline {} of kind {}: nothing to do",
                due.key, due.kind
            ));
        }
    };
    Ok((deadline, payload))
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The bypass a rollback holds for its revert change, as the command its requester gave: judged
/// like theirs (role, access, head, expiry). It comes from tollgate's own store, never from
/// text anyone could write.
pub async fn granted_bypass(
    incidents: &Incidents,
    forge: &str,
    repo: &str,
    number: u64,
) -> Result<Option<Comment>, store::IncidentError> {
    let rollback = incidents.rollback_for_revert(forge, repo, number).await?;
    Ok(rollback.and_then(|r| {
        let at = DateTime::from_timestamp_millis(r.requested_ms)?;
        let reason = if r.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", r.reason)
        };
        Some(Comment {
            author: r.requested_by,
            body: format!(
                "{} bypass {} rollback of {}{reason}",
                commands::COMMAND_PREFIX,
                r.ticket,
                r.change
            ),
            at,
            head_sha: r.revert_head?,
            edited: false,
        })
    }))
}

/// The repository's post-incident reviews overdue at `at`.
pub async fn overdue_reviews(
    incidents: &Incidents,
    forge: &str,
    repo: &str,
    at: DateTime<Utc>,
) -> Result<Vec<OverdueReview>, store::IncidentError> {
    let rows = incidents
        .overdue_at(forge, repo, at.timestamp_millis())
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(OverdueReview {
                issue: r.issue?,
                change: r.change,
                ticket: r.ticket,
                due: DateTime::from_timestamp_millis(r.due_ms)?,
            })
        })
        .collect())
}

/// A bypassed change is evaluated again when its bypass expires, so that its result does not
/// stay green on a bypass that no longer counts. `via` is what to act through (see
/// [`DeadlinePayload::via`]).
pub async fn schedule_bypass_expiry(
    schedule: &Schedule,
    forge: &str,
    repo: &str,
    change: u64,
    via: Option<u64>,
    decision: &Decision,
) -> Result<(), crate::schedule::ScheduleError> {
    let Outcome::Bypassed { expires_at, .. } = &decision.outcome else {
        return Ok(());
    };
    let expires_ms = expires_at.timestamp_millis();
    let payload = DeadlinePayload {
        repo: repo.to_owned(),
        via,
        change,
        issue: None,
    };
    schedule
        .schedule(
            &super::bypass_expiry_key(forge, repo, change, expires_ms),
            &format!("{forge}:{}", super::BYPASS_EXPIRY),
            expires_ms,
            &serde_json::to_string(&payload).unwrap_or_default(),
        )
        .await?;
    Ok(())
}

/// A merged change: if a bypass carried it at the merge, its post-incident review is opened;
/// rollbacks asked for since are opened. `facts` are the change's facts as gathered now (with
/// the rollback's bypass, if it is a revert); `overdue_at_merge` and `overdue_now` the
/// repository's overdue reviews then and now. Returns the rollback commands refused, for the
/// forge to answer.
#[allow(clippy::too_many_arguments)]
pub async fn after_merge<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    policy: &Policy,
    mut facts: ChangeFacts,
    merged: &Merged,
    context: &Context,
    overdue_at_merge: Vec<OverdueReview>,
    overdue_now: Vec<OverdueReview>,
) -> Result<Vec<CommandRecord>, T::Error> {
    facts.merged = true;
    // What carried the change at the merge: the commands given until then, judged then.
    let mut at_merge = facts.clone();
    at_merge.now = merged.merged_at;
    at_merge.comments.retain(|c| c.at <= merged.merged_at);
    at_merge.overdue_reviews = overdue_at_merge;
    let decision = evaluate(policy, &at_merge);
    if let Outcome::Bypassed {
        by, ticket, reason, ..
    } = &decision.outcome
    {
        let bypass = Carried { by, ticket, reason };
        merged_under_bypass(tracker, stores, policy, &decision, &bypass, merged, context).await?;
    }

    // Rollback requests, judged now: only those given after the merge (one given before was
    // answered then, and must not turn into a rollback when the change merges).
    facts.comments.retain(|c| c.at > merged.merged_at);
    facts.overdue_reviews = overdue_now;
    let read = commands::read(policy, &facts);
    let asked: Vec<CommandRecord> = read
        .records
        .into_iter()
        .filter(|c| command_name(&c.command) == Some("rollback"))
        .collect();
    for (command, key) in asked.iter().zip(decide::command_keys(&asked)) {
        let (kind, outcome) = if command.honoured {
            (RecordKind::RollbackRequested, "rollback_requested")
        } else {
            (RecordKind::RollbackRefused, "rollback_refused")
        };
        let record = incident_record(
            context,
            kind,
            Some(&command.author),
            outcome,
            format!("`{}`: {}", command.command, command.note),
        );
        record_once(tracker, stores, &key, record).await?;
    }
    for rollback in &read.rollbacks {
        roll_back(tracker, stores, merged, rollback, context).await?;
    }
    Ok(asked.into_iter().filter(|c| !c.honoured).collect())
}

async fn record_once<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    key: &str,
    record: crate::ledger::record::DecisionRecord,
) -> Result<bool, T::Error> {
    stores
        .audit
        .record_once(key, record)
        .await
        .map_err(|e| tracker.store_error("the audit ledger", e.to_string()))
}

/// The bypass that carried a change at its merge.
struct Carried<'a> {
    by: &'a str,
    ticket: &'a str,
    reason: &'a str,
}

/// Records the merge under a bypass and opens the post-incident review (once).
async fn merged_under_bypass<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    policy: &Policy,
    decision: &Decision,
    bypass: &Carried<'_>,
    merged: &Merged,
    context: &Context,
) -> Result<(), T::Error> {
    let Some(emergency) = &policy.emergency else {
        return Ok(());
    };
    let store_error =
        |e: store::IncidentError| tracker.store_error("the incident store", e.to_string());
    let record = incident_record(
        context,
        RecordKind::MergedUnderBypass,
        Some(bypass.by),
        "bypassed",
        format!(
            "merged {}{} under the bypass by {} for {}: {}",
            when(merged.merged_at),
            merged
                .merged_by
                .as_ref()
                .map(|m| format!(" by {m}"))
                .unwrap_or_default(),
            bypass.by,
            bypass.ticket,
            bypass.reason
        ),
    );
    record_once(
        tracker,
        stores,
        &format!("merged_under_bypass:{}", context.head_sha),
        record,
    )
    .await?;

    let due = merged.merged_at + TimeDelta::hours(i64::from(emergency.review_within_hours));
    let (review, created) = stores
        .incidents
        .begin_review(&Review {
            forge: tracker.forge().to_owned(),
            repo: tracker.repo().to_owned(),
            change: merged.number,
            ticket: bypass.ticket.to_owned(),
            bypassed_by: bypass.by.to_owned(),
            merged_ms: merged.merged_at.timestamp_millis(),
            due_ms: due.timestamp_millis(),
            state: ReviewState::Opening,
            issue: None,
            issue_url: None,
            reminded_ms: None,
            closed_ms: None,
            closed_by: None,
        })
        .await
        .map_err(store_error)?;
    let change_ref = tracker.change_ref(merged.number);
    let title = super::review_title(&change_ref, bypass.ticket);
    let (issue, due) = match (review.state, review.issue) {
        (ReviewState::Closed, _) => return Ok(()),
        // Opened already (a redelivered merge, a recheck, or a process that died after noting
        // it): what follows is done again, and is idempotent.
        (_, Some(issue)) => (
            issue,
            DateTime::from_timestamp_millis(review.due_ms).unwrap_or(due),
        ),
        (_, None) => {
            // A process may have died between opening the issue and noting it.
            let found = if created {
                None
            } else {
                tracker.find_issue(&title).await?
            };
            let (issue, url) = match found {
                Some(found) => found,
                None => {
                    let reviewers = super::reviewers(policy, decision);
                    let body = review_text(tracker, policy, bypass, merged, due, &reviewers);
                    let labels = [super::REVIEW_LABEL, bypass.ticket];
                    tracker
                        .open_issue(&title, &body, &labels, &reviewers)
                        .await?
                }
            };
            stores
                .incidents
                .review_opened(tracker.forge(), tracker.repo(), merged.number, issue, &url)
                .await
                .map_err(store_error)?;
            (issue, due)
        }
    };
    let payload = DeadlinePayload {
        repo: tracker.repo().to_owned(),
        via: tracker.via(),
        change: merged.number,
        issue: Some(issue),
    };
    stores
        .schedule
        .schedule(
            &super::review_due_key(tracker.forge(), tracker.repo(), issue),
            &format!("{}:{}", tracker.forge(), super::REVIEW_DUE),
            due.timestamp_millis(),
            &serde_json::to_string(&payload).unwrap_or_default(),
        )
        .await
        .map_err(|e| tracker.store_error("the schedule", e.to_string()))?;
    let record = incident_record(
        context,
        RecordKind::ReviewOpened,
        None,
        "review_open",
        format!(
            "post-incident review {} opened for {}, due {}",
            issue_ref(issue),
            bypass.ticket,
            when(due)
        ),
    );
    if record_once(tracker, stores, &format!("review_opened:{issue}"), record).await? {
        tracing::info!(issue, ticket = %bypass.ticket, "post-incident review opened");
    }
    Ok(())
}

/// The review issue's text.
fn review_text<T: Tracker>(
    tracker: &T,
    policy: &Policy,
    bypass: &Carried<'_>,
    merged: &Merged,
    due: DateTime<Utc>,
    reviewers: &Reviewers,
) -> String {
    super::review_body(&super::ReviewText {
        change_ref: tracker.change_ref(merged.number),
        title: &merged.title,
        change_url: merged.url.as_deref(),
        ticket: bypass.ticket,
        bypassed_by: bypass.by,
        reason: bypass.reason,
        merged_at: merged.merged_at,
        due,
        within_hours: policy
            .emergency
            .as_ref()
            .map_or(48, |e| e.review_within_hours),
        repo: tracker.repo(),
        number: merged.number,
        reviewers,
    })
}

/// Issues are `#N` on both forges.
fn issue_ref(issue: u64) -> String {
    format!("#{issue}")
}

/// Opens the revert of a merged change for an honoured rollback request (once per request),
/// answers on the change and has the revert evaluated.
async fn roll_back<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    merged: &Merged,
    rollback: &Rollback,
    context: &Context,
) -> Result<(), T::Error> {
    let store_error =
        |e: store::IncidentError| tracker.store_error("the incident store", e.to_string());
    let stored = stores
        .incidents
        .begin_rollback(&store::Rollback {
            forge: tracker.forge().to_owned(),
            repo: tracker.repo().to_owned(),
            change: merged.number,
            requested_by: rollback.by.clone(),
            requested_ms: rollback.at.timestamp_millis(),
            ticket: rollback.ticket.clone(),
            reason: rollback.reason.clone(),
            revert: None,
            revert_head: None,
            revert_url: None,
        })
        .await
        .map_err(store_error)?;
    if stored.revert.is_some() {
        return Ok(());
    }
    let change_ref = tracker.change_ref(merged.number);
    let title = super::revert_title(&change_ref, &merged.title, &rollback.ticket);
    let body = super::revert_body(&change_ref, rollback);
    let started = std::time::Instant::now();
    let revert = tracker
        .open_revert(merged.number, &title, &body, rollback)
        .await?;
    stores
        .incidents
        .rollback_opened(
            &stored,
            revert.number,
            &revert.head,
            revert.url.as_deref().unwrap_or_default(),
        )
        .await
        .map_err(store_error)?;
    let revert_ref = tracker.change_ref(revert.number);
    let record = incident_record(
        context,
        RecordKind::RollbackOpened,
        Some(&rollback.by),
        "rollback_open",
        format!(
            "revert {revert_ref} (head {}) opened for {} at the request of {}",
            crate::event::short_sha(&revert.head),
            rollback.ticket,
            rollback.by
        ),
    );
    record_once(
        tracker,
        stores,
        &format!(
            "rollback_opened:{}:{}",
            rollback.by,
            rollback.at.timestamp_millis()
        ),
        record,
    )
    .await?;
    let reply = super::rollback_reply(rollback, &revert_ref, revert.url.as_deref());
    tracker.comment_on_change(merged.number, &reply).await?;
    tracing::info!(
        revert = revert.number,
        ticket = %rollback.ticket,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "rollback opened"
    );
    tracker.evaluate_later(revert.number).await;
    Ok(())
}

/// An issue was closed: if it is a post-incident review, the review is recorded done.
pub async fn issue_closed<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    issue: u64,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), T::Error> {
    let Some((review, current)) = open_review(tracker, stores, issue).await? else {
        return Ok(());
    };
    // Reopened since the delivery was sent: not done after all.
    if !current.closed {
        return Ok(());
    }
    record_review_closed(tracker, stores, &review, &current, by, now).await
}

/// The review whose issue is `issue`, unless there is none or it is on record as closed, and
/// the issue as the forge has it now.
async fn open_review<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    issue: u64,
) -> Result<Option<(Review, IssueNow)>, T::Error> {
    let review = stores
        .incidents
        .review_by_issue(tracker.forge(), tracker.repo(), issue)
        .await
        .map_err(|e| tracker.store_error("the incident store", e.to_string()))?;
    match review.filter(|r| r.state != ReviewState::Closed) {
        Some(review) => Ok(Some((review, tracker.issue(issue).await?))),
        None => Ok(None),
    }
}

async fn record_review_closed<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    review: &Review,
    issue: &IssueNow,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), T::Error> {
    let Some(number) = review.issue else {
        return Ok(());
    };
    let ticked = issue
        .body
        .lines()
        .filter(|l| l.trim_start().starts_with("- [x]"))
        .count();
    let open = issue
        .body
        .lines()
        .filter(|l| l.trim_start().starts_with("- [ ]"))
        .count();
    let late = now.timestamp_millis() - review.due_ms;
    let timing = if late > 0 {
        format!("{} hours after its due time", late / 3_600_000)
    } else {
        "on time".to_owned()
    };
    let context = change_context(tracker, review.change, now).await?;
    let record = incident_record(
        &context,
        RecordKind::ReviewClosed,
        Some(by),
        "review_closed",
        format!(
            "post-incident review {} for {} closed by {by}, {timing}; checklist {ticked}/{} ticked",
            issue_ref(number),
            review.ticket,
            ticked + open
        ),
    );
    record_once(tracker, stores, &format!("review_closed:{number}"), record).await?;
    stores
        .incidents
        .review_closed(
            tracker.forge(),
            tracker.repo(),
            number,
            by,
            now.timestamp_millis(),
        )
        .await
        .map_err(|e| tracker.store_error("the incident store", e.to_string()))?;
    stores
        .schedule
        .cancel(
            &super::review_due_key(tracker.forge(), tracker.repo(), number),
            now.timestamp_millis(),
        )
        .await
        .map_err(|e| tracker.store_error("the schedule", e.to_string()))?;
    tracing::info!(issue = number, repo = %tracker.repo(), "post-incident review closed");
    Ok(())
}

/// Where an incident step about a change is recorded: its current head and base.
async fn change_context<T: Tracker>(
    tracker: &T,
    change: u64,
    now: DateTime<Utc>,
) -> Result<Context, T::Error> {
    let (head_sha, base_sha) = tracker.heads(change).await?;
    Ok(Context {
        forge: tracker.forge().to_owned(),
        repo: tracker.repo().to_owned(),
        number: change,
        head_sha,
        base_sha,
        policy_sha: None,
        delivery: None,
        time_ms: now.timestamp_millis(),
    })
}

/// A review fell due: unless it was closed, remind once and label it overdue.
pub async fn review_due<T: Tracker>(
    tracker: &T,
    stores: Stores<'_>,
    issue: u64,
    now: DateTime<Utc>,
) -> Result<(), T::Error> {
    let Some((review, current)) = open_review(tracker, stores, issue).await? else {
        return Ok(());
    };
    if current.closed {
        // Closed while tollgate missed the delivery: record it now instead of reminding.
        let by = current
            .closed_by
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        return record_review_closed(tracker, stores, &review, &current, &by, now).await;
    }
    let due = DateTime::from_timestamp_millis(review.due_ms).unwrap_or_default();
    // A replica that died after posting left the reminder there: it is not posted twice.
    if !tracker.reminded(issue).await? {
        let body = super::reminder_body(due, &current.assignees);
        tracker.comment_on_issue(issue, &body).await?;
    }
    tracker.label(issue, &[super::OVERDUE_LABEL]).await?;
    let context = change_context(tracker, review.change, now).await?;
    let record = incident_record(
        &context,
        RecordKind::ReviewOverdue,
        None,
        "review_overdue",
        format!(
            "post-incident review {} for {} was due {} and is still open: reminded, labelled `{}`",
            issue_ref(issue),
            review.ticket,
            when(due),
            super::OVERDUE_LABEL
        ),
    );
    record_once(tracker, stores, &format!("review_overdue:{issue}"), record).await?;
    stores
        .incidents
        .review_reminded(
            tracker.forge(),
            tracker.repo(),
            issue,
            now.timestamp_millis(),
        )
        .await
        .map_err(|e| tracker.store_error("the incident store", e.to_string()))?;
    Ok(())
}
