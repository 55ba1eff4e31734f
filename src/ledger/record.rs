//! Decision records: what tollgate decided, signed so that anyone with its public key can check
//! that a record was not edited afterwards.
//!
//! The signature covers the record's *canonical* bytes: JSON with keys in a fixed (sorted)
//! order and no insignificant whitespace, so a record copied out of a comment, a database or
//! an export verifies byte for byte. A record's hash (SHA-256 of its canonical bytes and its
//! signature) is what the next record of the same repository points back to.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The record format version written today.
pub const RECORD_VERSION: u32 = 1;

/// The `prev_hash` of a repository's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The overall outcome of a change changed.
    OutcomeChanged,
    /// An approval counted for a role.
    SignOffCounted,
    /// An approval did not count (the detail says why).
    ApprovalIgnored,
    /// A required role holder requested changes.
    Veto,
    /// Required evidence is missing.
    EvidenceMissing,
    /// Required evidence was found.
    EvidenceFound,
    /// An emergency bypass was honoured.
    BypassHonoured,
    /// An emergency bypass was refused.
    BypassRefused,
    /// The policy could not be used.
    PolicyInvalid,
    /// A change was merged while a bypass carried it.
    MergedUnderBypass,
    /// A post-incident review was opened.
    ReviewOpened,
    /// A post-incident review passed its due time while open: reminded and labelled overdue.
    ReviewOverdue,
    /// A post-incident review was closed.
    ReviewClosed,
    /// A rollback was requested and accepted.
    RollbackRequested,
    /// A rollback was refused.
    RollbackRefused,
    /// The revert of a rollback was opened.
    RollbackOpened,
    /// The deployment gate released a deployment.
    DeploymentApproved,
    /// The deployment gate held a deployment back.
    DeploymentRejected,
}

/// One decision, as recorded. Every field is part of the signed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// Unique id.
    pub id: String,
    /// When, in Unix epoch milliseconds.
    pub time_ms: i64,
    /// `github` or `gitlab`.
    pub forge: String,
    /// `owner/name`.
    pub repo: String,
    /// Position in the repository's chain (1 for the first record).
    pub repo_seq: u64,
    /// Pull/merge request number.
    pub number: u64,
    /// Head commit the decision was made on.
    pub head_sha: String,
    /// Base commit.
    pub base_sha: String,
    /// Blob sha (or content hash) of the policy applied.
    pub policy_sha: Option<String>,
    /// What the record is about.
    pub kind: RecordKind,
    /// Risk tier, when governed.
    pub tier: Option<String>,
    /// Why the tier.
    pub reasons: Vec<String>,
    /// The person concerned (approver, vetoer, bypasser), if any.
    pub actor: Option<String>,
    /// The role concerned, if any.
    pub role: Option<String>,
    /// The overall outcome after this decision.
    pub outcome: String,
    /// Readable detail.
    pub detail: String,
    /// The webhook delivery that led to it.
    pub delivery: Option<String>,
    /// Hash of the previous record of the same repository ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
}

impl DecisionRecord {
    /// The canonical bytes that are signed: keys sorted at every level (explicitly, so that
    /// a dependency turning on serde_json's `preserve_order` cannot change them), compact.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // A struct of strings, numbers and lists always serialises.
        let value = serde_json::to_value(self).unwrap_or_default();
        serde_json::to_vec(&sorted(value)).unwrap_or_default()
    }

    /// Signs the record.
    pub fn sign(self, key: &SigningKey) -> SignedRecord {
        let signature = key.sign(&self.canonical_bytes());
        SignedRecord {
            record: self,
            signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// Rebuilds every object with its keys inserted in sorted order.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// A record and its Ed25519 signature (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRecord {
    /// The record.
    pub record: DecisionRecord,
    /// Signature over [`DecisionRecord::canonical_bytes`].
    pub signature: String,
}

/// Why a record does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature is not base64 of 64 bytes.
    #[error("the signature is malformed")]
    MalformedSignature,
    /// The signature does not match the record (it was edited, or signed by another key).
    #[error("the signature does not match the record")]
    BadSignature,
}

impl SignedRecord {
    /// Checks the signature with `key` (strict verification: no malleable signatures).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|_| VerifyError::MalformedSignature)?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| VerifyError::MalformedSignature)?;
        key.verify_strict(&self.record.canonical_bytes(), &signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// SHA-256 (hex) of the canonical record and its signature: what the next record of the
    /// repository points back to.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.record.canonical_bytes());
        hasher.update(b"\n");
        hasher.update(self.signature.as_bytes());
        hex::encode(hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DecisionRecord {
        DecisionRecord {
            version: RECORD_VERSION,
            id: "r-1".to_owned(),
            time_ms: 1_764_000_000_000,
            forge: "github".to_owned(),
            repo: "acme/fraud".to_owned(),
            repo_seq: 1,
            number: 7,
            head_sha: "h".to_owned(),
            base_sha: "b".to_owned(),
            policy_sha: None,
            kind: RecordKind::SignOffCounted,
            tier: Some("high".to_owned()),
            reasons: vec!["model artifact".to_owned()],
            actor: Some("dana".to_owned()),
            role: Some("data_reviewer".to_owned()),
            outcome: "waiting".to_owned(),
            detail: "approved on h".to_owned(),
            delivery: None,
            prev_hash: GENESIS_HASH.to_owned(),
        }
    }

    #[test]
    fn canonical_bytes_have_sorted_keys_and_no_whitespace() {
        let text = String::from_utf8(record().canonical_bytes()).unwrap();
        assert!(
            text.starts_with(r#"{"actor":"dana","base_sha":"b","delivery":null,"detail""#),
            "{text}"
        );
        assert!(!text.contains(": ") && !text.contains(", "), "{text}");
    }

    #[test]
    fn a_signed_record_verifies_and_any_edit_breaks_it() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let signed = record().sign(&key);
        assert_eq!(signed.verify(&key.verifying_key()), Ok(()));
        let mut edited = signed.clone();
        edited.record.actor = Some("mallory".to_owned());
        assert_eq!(
            edited.verify(&key.verifying_key()),
            Err(VerifyError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            signed.verify(&other.verifying_key()),
            Err(VerifyError::BadSignature)
        );
        let mut garbled = signed.clone();
        garbled.signature = "nope".to_owned();
        assert_eq!(
            garbled.verify(&key.verifying_key()),
            Err(VerifyError::MalformedSignature)
        );
        assert_ne!(signed.hash(), edited.hash());
    }
}
