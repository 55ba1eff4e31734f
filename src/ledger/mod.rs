//! The audit ledger: signed decision records in an append-only, hash-chained store.

pub mod decide;
pub mod keys;
pub mod record;
pub mod store;

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};

use self::record::SignedRecord;
use self::store::{Ledger, StoreError};
use crate::policy::Decision;

/// The marker that opens the machine-readable block of signed records in a comment.
pub const RECORDS_BLOCK_START: &str = "<!-- tollgate:records";
/// The marker that closes it.
pub const RECORDS_BLOCK_END: &str = "-->";
/// The most records carried in one comment (GitHub caps a comment at 65,536 characters); the
/// ledger keeps them all.
pub const RECORDS_IN_COMMENT: usize = 40;

/// The ledger and the key that signs what goes into it.
pub struct Audit {
    /// The store.
    pub ledger: Ledger,
    /// The signing key.
    pub key: SigningKey,
}

impl Audit {
    /// Records what a decision states that is not on record yet; returns the change's whole
    /// history, oldest first.
    pub async fn record(
        &self,
        decision: &Decision,
        context: &decide::Context,
    ) -> Result<Vec<SignedRecord>, StoreError> {
        self.append_new(decide::records_for(decision, context), context)
            .await
    }

    /// Binds each command to the head it was first judged for: a command's comment carries the
    /// head recorded with its first decision, not whatever head is current now.
    pub async fn pin_command_heads(
        &self,
        repo: &str,
        number: u64,
        comments: &mut [crate::policy::facts::Comment],
    ) -> Result<(), StoreError> {
        let keys = self.ledger.recorded_keys(repo, number).await?;
        let pinned = decide::pinned_heads(&keys);
        for comment in comments {
            let key = (comment.author.clone(), comment.at.timestamp_millis());
            if let Some(head) = pinned.get(&key) {
                comment.head_sha = head.clone();
            }
        }
        Ok(())
    }

    /// Records that the policy could not be used.
    pub async fn record_invalid_policy(
        &self,
        context: &decide::Context,
        errors: &str,
    ) -> Result<Vec<SignedRecord>, StoreError> {
        self.append_new(vec![decide::policy_invalid(context, errors)], context)
            .await
    }

    /// Records one incident step under `key` unless it is on record for the change already;
    /// returns whether it was recorded now.
    pub async fn record_once(
        &self,
        key: &str,
        record: record::DecisionRecord,
    ) -> Result<bool, StoreError> {
        let known = self
            .ledger
            .recorded_keys(&record.repo, record.number)
            .await?;
        if known.iter().any(|k| k == key) {
            return Ok(false);
        }
        self.ledger.append(&self.key, key, record).await?;
        Ok(true)
    }

    async fn append_new(
        &self,
        records: Vec<(String, record::DecisionRecord)>,
        context: &decide::Context,
    ) -> Result<Vec<SignedRecord>, StoreError> {
        let known = self
            .ledger
            .recorded_keys(&context.repo, context.number)
            .await?;
        for (key, record) in records {
            if !known.contains(&key) {
                self.ledger.append(&self.key, &key, record).await?;
            }
        }
        let rows = self
            .ledger
            .change_records(&context.repo, context.number)
            .await?;
        Ok(rows
            .iter()
            .filter_map(store::StoredRecord::signed)
            .collect())
    }
}

/// The hidden block of signed records for a comment: base64 of one JSON record per line, so
/// that no record text can close the HTML comment early.
pub fn records_block(records: &[SignedRecord]) -> String {
    let start = records.len().saturating_sub(RECORDS_IN_COMMENT);
    let lines: Vec<String> = records[start..]
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(lines.join("\n"));
    format!("{RECORDS_BLOCK_START}\n{encoded}\n{RECORDS_BLOCK_END}")
}

/// The signed records in a saved comment (empty when it carries none).
pub fn records_in_comment(text: &str) -> Result<Vec<SignedRecord>, String> {
    let Some(start) = text.find(RECORDS_BLOCK_START) else {
        return Ok(Vec::new());
    };
    let rest = &text[start + RECORDS_BLOCK_START.len()..];
    let end = rest
        .find(RECORDS_BLOCK_END)
        .ok_or("the records block is not closed")?;
    let compact: String = rest[..end].split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("the records block is not base64: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|e| format!("the records block is not UTF-8: {e}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|e| format!("a record does not parse: {e}")))
        .collect()
}

/// One record of a comment, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCheck {
    /// The record's id.
    pub id: String,
    /// Whether its signature holds, or why not.
    pub result: Result<(), String>,
}

/// Verifies every record of a comment.
pub fn verify_comment(text: &str, key: &VerifyingKey) -> Result<Vec<RecordCheck>, String> {
    Ok(records_in_comment(text)?
        .into_iter()
        .map(|r| RecordCheck {
            id: r.record.id.clone(),
            result: r.verify(key).map_err(|e| e.to_string()),
        })
        .collect())
}
