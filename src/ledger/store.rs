//! The ledger store: one table, append-only (no code path updates or deletes; triggers refuse
//! it even from a direct SQL session), one hash chain per repository. One code path for SQLite
//! (embedded default) and PostgreSQL (several replicas), through sqlx's `AnyPool`.

use ed25519_dalek::{SigningKey, VerifyingKey};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::record::{DecisionRecord, GENESIS_HASH, RECORD_VERSION, SignedRecord};

/// How often an append retries when another writer took the same chain position.
const APPEND_ATTEMPTS: usize = 50;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("ledger database: {0}")]
    Database(#[from] sqlx::Error),
    /// Setting up the schema failed.
    #[error("ledger schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported database.
    #[error("unsupported ledger database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Too many concurrent writers on one repository's chain.
    #[error("could not append to the ledger of {0}: the chain kept moving")]
    Contention(String),
}

/// A stored record, as a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's id.
    pub record_id: String,
    /// Repository.
    pub repo: String,
    /// Position in the repository's chain.
    pub repo_seq: i64,
    /// Canonical JSON of the record.
    pub body: String,
    /// Signature (base64).
    pub signature: String,
    /// Hash stored with it.
    pub hash: String,
}

impl StoredRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(StoredRecord {
            record_id: row.try_get("record_id")?,
            repo: row.try_get("repo")?,
            repo_seq: row.try_get("repo_seq")?,
            body: row.try_get("body")?,
            signature: row.try_get("signature")?,
            hash: row.try_get("hash")?,
        })
    }

    /// The signed record, when the body parses.
    pub fn signed(&self) -> Option<SignedRecord> {
        let record: DecisionRecord = serde_json::from_str(&self.body).ok()?;
        Some(SignedRecord {
            record,
            signature: self.signature.clone(),
        })
    }
}

/// The first broken link found in a repository's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// Repository.
    pub repo: String,
    /// The record where the chain breaks.
    pub record_id: String,
    /// What is wrong.
    pub problem: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: usize,
    /// Repositories (chains) checked.
    pub repos: usize,
    /// The first broken link of each broken chain.
    pub broken: Vec<BrokenLink>,
}

/// The ledger.
#[derive(Clone)]
pub struct Ledger {
    pool: AnyPool,
}

impl Ledger {
    /// Opens (and creates, for SQLite) the store at `url` and brings its schema up to date.
    /// Several processes may do this at once on one empty PostgreSQL database: sqlx takes an
    /// advisory lock around migrations.
    pub async fn open(url: &str) -> Result<Ledger, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let url = if url.starts_with("sqlite:") {
            with_create_mode(url)
        } else if postgres {
            url.to_owned()
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await?;
        if postgres {
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
        } else {
            // Write-ahead logging: readers (claims, `/metrics`) never block the intake's
            // commits, and a commit is one append and one flush of the log. Persistent in the
            // file, so setting it on every open is a no-op after the first.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        }
        Ok(Ledger { pool })
    }

    /// The pool (for the job queue, which shares the store).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Appends a record to its repository's chain: sets its position, the previous record's
    /// hash and the format version, signs it and stores it. A writer that loses the race for a
    /// position (the unique `(repo, repo_seq)` constraint) reads the new tail and tries again.
    ///
    /// `record_key` names what the record states (e.g. `sign_off:approver:lena:abc123`), so
    /// that [`Ledger::recorded_keys`] can tell which decisions are already on record.
    pub async fn append(
        &self,
        key: &SigningKey,
        record_key: &str,
        mut record: DecisionRecord,
    ) -> Result<SignedRecord, StoreError> {
        for _ in 0..APPEND_ATTEMPTS {
            let tail = sqlx::query(
                "SELECT repo_seq, hash FROM ledger_records WHERE repo = $1 ORDER BY repo_seq DESC LIMIT 1",
            )
            .bind(&record.repo)
            .fetch_optional(&self.pool)
            .await?;
            let (seq, prev) = match &tail {
                Some(row) => (
                    row.try_get::<i64, _>("repo_seq")? + 1,
                    row.try_get::<String, _>("hash")?,
                ),
                None => (1, GENESIS_HASH.to_owned()),
            };
            record.version = RECORD_VERSION;
            record.repo_seq = seq as u64;
            record.prev_hash = prev;
            let signed = record.clone().sign(key);
            let body = String::from_utf8(signed.record.canonical_bytes()).unwrap_or_default();
            let inserted = sqlx::query(
                "INSERT INTO ledger_records \
                 (record_id, repo, repo_seq, number, record_key, created_ms, body, signature, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&signed.record.id)
            .bind(&signed.record.repo)
            .bind(seq)
            .bind(signed.record.number as i64)
            .bind(record_key)
            .bind(signed.record.time_ms)
            .bind(&body)
            .bind(&signed.signature)
            .bind(signed.hash())
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => return Ok(signed),
                Err(sqlx::Error::Database(error)) if error.is_unique_violation() => continue,
                Err(error) if is_busy(&error) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(StoreError::Contention(record.repo))
    }

    /// The record keys already on record for one change, oldest first.
    pub async fn recorded_keys(&self, repo: &str, number: u64) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT record_key FROM ledger_records WHERE repo = $1 AND number = $2 ORDER BY repo_seq")
                .bind(repo)
                .bind(number as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<String, _>("record_key"))
            .collect::<Result<_, _>>()?)
    }

    /// The records of one change, oldest first.
    pub async fn change_records(
        &self,
        repo: &str,
        number: u64,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT record_id, repo, repo_seq, body, signature, hash FROM ledger_records \
             WHERE repo = $1 AND number = $2 ORDER BY repo_seq",
        )
        .bind(repo)
        .bind(number as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(StoredRecord::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Every record, by repository and position (of one repository when given).
    pub async fn records(&self, repo: Option<&str>) -> Result<Vec<StoredRecord>, StoreError> {
        let rows =
            match repo {
                Some(repo) => sqlx::query(
                    "SELECT record_id, repo, repo_seq, body, signature, hash FROM ledger_records \
                     WHERE repo = $1 ORDER BY repo_seq",
                )
                .bind(repo)
                .fetch_all(&self.pool)
                .await?,
                None => sqlx::query(
                    "SELECT record_id, repo, repo_seq, body, signature, hash FROM ledger_records \
                     ORDER BY repo, repo_seq",
                )
                .fetch_all(&self.pool)
                .await?,
            };
        Ok(rows
            .iter()
            .map(StoredRecord::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Checks every chain: signatures, positions, links and stored hashes. Reports the first
    /// broken link of each repository by record id.
    pub async fn verify(&self, key: &VerifyingKey) -> Result<VerifyReport, StoreError> {
        let rows = self.records(None).await?;
        Ok(verify_rows(&rows, key))
    }
}

/// Verifies rows ordered by repository and position.
pub fn verify_rows(rows: &[StoredRecord], key: &VerifyingKey) -> VerifyReport {
    let mut report = VerifyReport {
        records: rows.len(),
        ..VerifyReport::default()
    };
    let mut start = 0;
    while start < rows.len() {
        let repo = &rows[start].repo;
        let end = rows[start..]
            .iter()
            .position(|r| &r.repo != repo)
            .map_or(rows.len(), |n| start + n);
        report.repos += 1;
        if let Some(broken) = first_break(&rows[start..end], key) {
            report.broken.push(broken);
        }
        start = end;
    }
    report
}

fn first_break(chain: &[StoredRecord], key: &VerifyingKey) -> Option<BrokenLink> {
    let mut expected_prev = GENESIS_HASH.to_owned();
    for (index, row) in chain.iter().enumerate() {
        let broken = |problem: String| BrokenLink {
            repo: row.repo.clone(),
            record_id: row.record_id.clone(),
            problem,
        };
        let Some(signed) = row.signed() else {
            return Some(broken("its body is not a decision record".to_owned()));
        };
        if let Err(error) = signed.verify(key) {
            return Some(broken(format!(
                "{error} (the record was edited or not signed by this key)"
            )));
        }
        let record = &signed.record;
        if record.id != row.record_id
            || record.repo != row.repo
            || record.repo_seq as i64 != row.repo_seq
        {
            return Some(broken(
                "the signed record does not match the row it is stored in".to_owned(),
            ));
        }
        let expected_seq = index as i64 + 1;
        if row.repo_seq != expected_seq {
            return Some(broken(format!(
                "it is at position {} where {expected_seq} was expected: a record before it is missing",
                row.repo_seq
            )));
        }
        if record.prev_hash != expected_prev {
            return Some(broken(
                "it does not point to the record before it: records were removed, swapped or inserted".to_owned(),
            ));
        }
        let hash = signed.hash();
        if hash != row.hash {
            return Some(broken(
                "its stored hash does not match its contents".to_owned(),
            ));
        }
        expected_prev = hash;
    }
    None
}

/// SQLite creates the file only with `mode=rwc`.
fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// SQLite answers "database is locked" to a writer that waited past its busy timeout.
fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.message().contains("locked") || e.message().contains("busy"))
}
