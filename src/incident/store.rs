//! Where post-incident reviews and rollback requests are kept: in the shared store, so every
//! replica sees them, a restart loses none, and `tollgate audit show` can list them. The signed
//! ledger records are the account of what happened; these rows are the index to find them by.

use sqlx::{AnyPool, Row, any::AnyRow};

/// A store failure.
pub type IncidentError = sqlx::Error;

/// Where a post-incident review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    /// Decided on; the forge's issue is being opened.
    Opening,
    /// The issue is open.
    Open,
    /// The issue was closed: the review is done.
    Closed,
}

impl ReviewState {
    /// The state's name, as stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            ReviewState::Opening => "opening",
            ReviewState::Open => "open",
            ReviewState::Closed => "closed",
        }
    }

    fn parse(text: &str) -> ReviewState {
        match text {
            "open" => ReviewState::Open,
            "closed" => ReviewState::Closed,
            _ => ReviewState::Opening,
        }
    }
}

/// One post-incident review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// `github` or `gitlab`.
    pub forge: String,
    /// The repository.
    pub repo: String,
    /// The change merged under a bypass.
    pub change: u64,
    /// The incident ticket.
    pub ticket: String,
    /// Who bypassed.
    pub bypassed_by: String,
    /// When the change was merged (epoch ms).
    pub merged_ms: i64,
    /// When the review is due (epoch ms).
    pub due_ms: i64,
    /// Where it stands.
    pub state: ReviewState,
    /// The review's issue, once opened.
    pub issue: Option<u64>,
    /// The issue's page.
    pub issue_url: Option<String>,
    /// When the overdue reminder was posted.
    pub reminded_ms: Option<i64>,
    /// When it was closed.
    pub closed_ms: Option<i64>,
    /// Who closed it.
    pub closed_by: Option<String>,
}

impl Review {
    /// Whether it is past due and not closed at `now_ms`.
    pub fn overdue_at(&self, now_ms: i64) -> bool {
        self.state != ReviewState::Closed && self.due_ms <= now_ms
    }
}

/// One rollback request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// `github` or `gitlab`.
    pub forge: String,
    /// The repository.
    pub repo: String,
    /// The merged change to roll back.
    pub change: u64,
    /// Who asked.
    pub requested_by: String,
    /// When they asked (epoch ms; with `requested_by`, identifies the request).
    pub requested_ms: i64,
    /// The incident ticket.
    pub ticket: String,
    /// Why.
    pub reason: String,
    /// The revert change, once opened.
    pub revert: Option<u64>,
    /// The revert change's head when opened (the bypass covers that commit only).
    pub revert_head: Option<String>,
    /// The revert change's page.
    pub revert_url: Option<String>,
}

// Queries format in only these constant column lists (and literal filters): no input.
const REVIEW_COLUMNS: &str = "forge, repo, change_number, ticket, bypassed_by, merged_ms, due_ms, state, \
     issue_number, issue_url, reminded_ms, closed_ms, closed_by";
const ROLLBACK_COLUMNS: &str = "forge, repo, change_number, requested_by, requested_ms, ticket, reason, \
     revert_number, revert_head, revert_url";

/// The reviews and rollbacks in the shared store.
#[derive(Clone)]
pub struct Incidents {
    pool: AnyPool,
}

impl Incidents {
    /// The incident tables in the store behind `pool` (they come with the ledger's migrations).
    pub fn new(pool: AnyPool) -> Incidents {
        Incidents { pool }
    }

    /// Records that a review is due for a change (state `opening`), unless one is already
    /// there; returns the review as stored and whether this call created it (a review found
    /// `opening` that this call did not create may have its issue opened already: a process
    /// died between opening it and noting it).
    pub async fn begin_review(&self, review: &Review) -> Result<(Review, bool), IncidentError> {
        let inserted = sqlx::query(
            "INSERT INTO incident_reviews (forge, repo, change_number, ticket, bypassed_by, merged_ms, due_ms, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'opening') ON CONFLICT (forge, repo, change_number) DO NOTHING",
        )
        .bind(&review.forge)
        .bind(&review.repo)
        .bind(review.change as i64)
        .bind(&review.ticket)
        .bind(&review.bypassed_by)
        .bind(review.merged_ms)
        .bind(review.due_ms)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REVIEW_COLUMNS} FROM incident_reviews WHERE forge = $1 AND repo = $2 AND change_number = $3"
        )))
        .bind(&review.forge)
        .bind(&review.repo)
        .bind(review.change as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok((review_of(&row)?, inserted))
    }

    /// The review's issue was opened.
    pub async fn review_opened(
        &self,
        forge: &str,
        repo: &str,
        change: u64,
        issue: u64,
        url: &str,
    ) -> Result<(), IncidentError> {
        sqlx::query(
            "UPDATE incident_reviews SET state = 'open', issue_number = $1, issue_url = $2 \
             WHERE forge = $3 AND repo = $4 AND change_number = $5 AND state = 'opening'",
        )
        .bind(issue as i64)
        .bind(url)
        .bind(forge)
        .bind(repo)
        .bind(change as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The review whose issue is `issue`, if it is one.
    pub async fn review_by_issue(
        &self,
        forge: &str,
        repo: &str,
        issue: u64,
    ) -> Result<Option<Review>, IncidentError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REVIEW_COLUMNS} FROM incident_reviews WHERE forge = $1 AND repo = $2 AND issue_number = $3"
        )))
        .bind(forge)
        .bind(repo)
        .bind(issue as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(review_of).transpose()
    }

    /// The overdue reminder was posted.
    pub async fn review_reminded(
        &self,
        forge: &str,
        repo: &str,
        issue: u64,
        at_ms: i64,
    ) -> Result<(), IncidentError> {
        sqlx::query(
            "UPDATE incident_reviews SET reminded_ms = $1 \
             WHERE forge = $2 AND repo = $3 AND issue_number = $4 AND reminded_ms IS NULL",
        )
        .bind(at_ms)
        .bind(forge)
        .bind(repo)
        .bind(issue as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The review's issue was closed. Returns `false` when it was closed already (nothing to
    /// record twice).
    pub async fn review_closed(
        &self,
        forge: &str,
        repo: &str,
        issue: u64,
        by: &str,
        at_ms: i64,
    ) -> Result<bool, IncidentError> {
        let done = sqlx::query(
            "UPDATE incident_reviews SET state = 'closed', closed_ms = $1, closed_by = $2 \
             WHERE forge = $3 AND repo = $4 AND issue_number = $5 AND state <> 'closed'",
        )
        .bind(at_ms)
        .bind(by)
        .bind(forge)
        .bind(repo)
        .bind(issue as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every review (with `closed`, the closed ones too), soonest due first.
    pub async fn reviews(&self, closed: bool) -> Result<Vec<Review>, IncidentError> {
        let filter = if closed {
            ""
        } else {
            "WHERE state <> 'closed'"
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REVIEW_COLUMNS} FROM incident_reviews {filter} ORDER BY due_ms, repo, change_number"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(review_of).collect()
    }

    /// The reviews of a repository that were overdue at `at_ms`: merged before, due by then,
    /// and not closed by then.
    pub async fn overdue_at(
        &self,
        forge: &str,
        repo: &str,
        at_ms: i64,
    ) -> Result<Vec<Review>, IncidentError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REVIEW_COLUMNS} FROM incident_reviews WHERE forge = $1 AND repo = $2 \
             AND merged_ms <= $3 AND due_ms <= $3 AND (closed_ms IS NULL OR closed_ms > $3) ORDER BY due_ms"
        )))
        .bind(forge)
        .bind(repo)
        .bind(at_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(review_of).collect()
    }

    /// Records a rollback request unless it is there already; returns it as stored.
    pub async fn begin_rollback(&self, rollback: &Rollback) -> Result<Rollback, IncidentError> {
        sqlx::query(
            "INSERT INTO incident_rollbacks (forge, repo, change_number, requested_by, requested_ms, ticket, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (forge, repo, change_number, requested_by, requested_ms) DO NOTHING",
        )
        .bind(&rollback.forge)
        .bind(&rollback.repo)
        .bind(rollback.change as i64)
        .bind(&rollback.requested_by)
        .bind(rollback.requested_ms)
        .bind(&rollback.ticket)
        .bind(&rollback.reason)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLLBACK_COLUMNS} FROM incident_rollbacks \
             WHERE forge = $1 AND repo = $2 AND change_number = $3 AND requested_by = $4 AND requested_ms = $5"
        )))
        .bind(&rollback.forge)
        .bind(&rollback.repo)
        .bind(rollback.change as i64)
        .bind(&rollback.requested_by)
        .bind(rollback.requested_ms)
        .fetch_one(&self.pool)
        .await?;
        rollback_of(&row)
    }

    /// The revert change of a rollback request was opened.
    pub async fn rollback_opened(
        &self,
        rollback: &Rollback,
        revert: u64,
        head: &str,
        url: &str,
    ) -> Result<(), IncidentError> {
        sqlx::query(
            "UPDATE incident_rollbacks SET revert_number = $1, revert_head = $2, revert_url = $3 \
             WHERE forge = $4 AND repo = $5 AND change_number = $6 AND requested_by = $7 AND requested_ms = $8",
        )
        .bind(revert as i64)
        .bind(head)
        .bind(url)
        .bind(&rollback.forge)
        .bind(&rollback.repo)
        .bind(rollback.change as i64)
        .bind(&rollback.requested_by)
        .bind(rollback.requested_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The rollback request that opened `revert`, if one did.
    pub async fn rollback_for_revert(
        &self,
        forge: &str,
        repo: &str,
        revert: u64,
    ) -> Result<Option<Rollback>, IncidentError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLLBACK_COLUMNS} FROM incident_rollbacks WHERE forge = $1 AND repo = $2 AND revert_number = $3"
        )))
        .bind(forge)
        .bind(repo)
        .bind(revert as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rollback_of).transpose()
    }
}

fn review_of(row: &AnyRow) -> Result<Review, IncidentError> {
    Ok(Review {
        forge: row.try_get("forge")?,
        repo: row.try_get("repo")?,
        change: row.try_get::<i64, _>("change_number")? as u64,
        ticket: row.try_get("ticket")?,
        bypassed_by: row.try_get("bypassed_by")?,
        merged_ms: row.try_get("merged_ms")?,
        due_ms: row.try_get("due_ms")?,
        state: ReviewState::parse(&row.try_get::<String, _>("state")?),
        issue: row
            .try_get::<Option<i64>, _>("issue_number")?
            .map(|n| n as u64),
        issue_url: row.try_get("issue_url")?,
        reminded_ms: row.try_get("reminded_ms")?,
        closed_ms: row.try_get("closed_ms")?,
        closed_by: row.try_get("closed_by")?,
    })
}

fn rollback_of(row: &AnyRow) -> Result<Rollback, IncidentError> {
    Ok(Rollback {
        forge: row.try_get("forge")?,
        repo: row.try_get("repo")?,
        change: row.try_get::<i64, _>("change_number")? as u64,
        requested_by: row.try_get("requested_by")?,
        requested_ms: row.try_get("requested_ms")?,
        ticket: row.try_get("ticket")?,
        reason: row.try_get("reason")?,
        revert: row
            .try_get::<Option<i64>, _>("revert_number")?
            .map(|n| n as u64),
        revert_head: row.try_get("revert_head")?,
        revert_url: row.try_get("revert_url")?,
    })
}
