//! `Decision`: what the engine concluded about a change, with every reason, so that the
//! comment, the check run and an auditor can all show *why*.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{ChangeKind, Gate, RiskTier};

/// Why a change got (at least) a tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "signal")]
pub enum Signal {
    /// A changed file is of a kind the policy (or the playbook's floor) puts in this tier.
    Kind {
        /// The file.
        path: String,
        /// Its kind.
        kind: ChangeKind,
        /// True when the tier comes from the playbook's floor rather than the policy.
        floor: bool,
    },
    /// A key-level rule fired.
    Key {
        /// The file.
        path: String,
        /// The dotted key.
        key: String,
        /// What it found.
        kind: ChangeKind,
        /// A readable account (`objective: binary → multiclass`).
        detail: String,
    },
    /// A metric moved more than the tier's threshold.
    MetricShift {
        /// Dotted metric name.
        metric: String,
        /// Value at the base.
        base: f64,
        /// Value at the head.
        head: f64,
        /// Relative shift in % (infinite when the base is 0 and the head is not; JSON `"inf"`).
        #[serde(with = "percent")]
        shift_pct: f64,
        /// The threshold exceeded.
        threshold_pct: f64,
    },
    /// A label on the change.
    Label {
        /// The label.
        label: String,
    },
    /// A changed file is under a sensitive path.
    SensitivePath {
        /// The file.
        path: String,
    },
    /// Governed paths changed and nothing raised the tier.
    Governed {
        /// How many changed files are governed.
        files: usize,
    },
}

/// One reason for the tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierReason {
    /// The tier this signal asks for.
    pub tier: RiskTier,
    /// The signal.
    #[serde(flatten)]
    pub signal: Signal,
}

/// One metric compared between base and head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricChange {
    /// Dotted metric name (prefixed with the file when several files are read).
    pub metric: String,
    /// At the base (`None`: no baseline, a new model or metric).
    pub base: Option<f64>,
    /// At the head.
    pub head: Option<f64>,
    /// Relative shift in %, when both are known (JSON `"inf"` when infinite).
    #[serde(with = "optional_percent")]
    pub shift_pct: Option<f64>,
}

/// Whether one piece of evidence is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum EvidenceStatus {
    /// Found, with where.
    Found {
        /// Files or "PR description".
        locations: Vec<String>,
    },
    /// Missing or incomplete.
    Missing {
        /// What exactly is missing.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

/// One piece of evidence the tier requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceCheck {
    /// Evidence id (`model_card`).
    pub id: String,
    /// Display name.
    pub title: String,
    /// Found or missing.
    #[serde(flatten)]
    pub status: EvidenceStatus,
}

/// An approval counted for a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// Who.
    pub login: String,
    /// When.
    pub at: DateTime<Utc>,
    /// On which commit.
    pub commit: String,
}

/// One required sign-off slot (a role with a count has that many slots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The role.
    pub role: String,
    /// Who fills it, if anyone.
    pub filled_by: Option<SignOff>,
}

/// A role still short of sign-offs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRole {
    /// The role.
    pub role: String,
    /// How many more sign-offs it needs.
    pub needed: u32,
    /// People who could give them (known role members other than the author and builders,
    /// and not already filling a slot). Team members are listed when the facts name them.
    pub eligible: Vec<String>,
}

/// Why an approval does not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum IgnoreReason {
    /// The author cannot approve their own change.
    Author,
    /// They authored or committed a commit of the change.
    Contributor,
    /// They have no write access to the repository.
    NoWriteAccess,
    /// Governed files changed after the approval.
    Stale {
        /// Governed files changed since (or empty when the forge could not tell).
        changed: Vec<String>,
    },
    /// They hold none of the roles this tier requires.
    NoRequiredRole,
    /// They already fill another slot (one person, one role per change).
    AlreadyFills {
        /// The role they fill.
        role: String,
    },
    /// Every slot of their roles is already filled by others.
    RolesAlreadyFilled,
}

/// An approval that does not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredApproval {
    /// Who.
    pub login: String,
    /// Why.
    #[serde(flatten)]
    pub reason: IgnoreReason,
}

/// Changes requested by a holder of a required role: blocks until dismissed or superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veto {
    /// Who.
    pub login: String,
    /// Their required roles.
    pub roles: Vec<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A `/tollgate …` command found in a comment, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Who wrote it.
    pub author: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The command line as written.
    pub command: String,
    /// The head commit the command was given for.
    pub for_head: String,
    /// Whether it was honoured.
    pub honoured: bool,
    /// Why (refusal reason, or what it did).
    pub note: String,
}

/// Why a change cannot pass as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BlockReason {
    /// A required role holder requested changes.
    Veto {
        /// Who.
        login: String,
    },
    /// Required evidence is missing or incomplete.
    Evidence {
        /// Evidence id.
        id: String,
        /// What is missing.
        problem: String,
    },
}

/// The overall result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The policy does not govern this change.
    NotGoverned {
        /// Why.
        reason: String,
    },
    /// Everything required is there.
    Passed,
    /// Only sign-offs are missing.
    Waiting {
        /// What it waits on, readably ("1 more sign-off from approver").
        on: Vec<String>,
    },
    /// Something must change before it can pass.
    Blocked {
        /// Why.
        reasons: Vec<BlockReason>,
    },
    /// Passed through the emergency gate.
    Bypassed {
        /// Who bypassed.
        by: String,
        /// The incident ticket.
        ticket: String,
        /// Their stated reason.
        reason: String,
        /// When the bypass stops counting.
        expires_at: DateTime<Utc>,
        /// When the post-incident review is due.
        review_due: DateTime<Utc>,
    },
}

impl Outcome {
    /// Whether a merge may proceed.
    pub fn allows_merge(&self) -> bool {
        matches!(
            self,
            Outcome::NotGoverned { .. } | Outcome::Passed | Outcome::Bypassed { .. }
        )
    }

    /// Stable name.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::NotGoverned { .. } => "not_governed",
            Outcome::Passed => "passed",
            Outcome::Waiting { .. } => "waiting",
            Outcome::Blocked { .. } => "blocked",
            Outcome::Bypassed { .. } => "bypassed",
        }
    }
}

/// Everything the engine decided about one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The tier (None when not governed).
    pub tier: Option<RiskTier>,
    /// Every signal, highest tier first.
    pub reasons: Vec<TierReason>,
    /// Gates the change passes through.
    pub gates: Vec<Gate>,
    /// Kinds of every governed changed file.
    pub classified: Vec<(String, Vec<ChangeKind>)>,
    /// Metrics compared.
    pub metrics: Vec<MetricChange>,
    /// Required evidence and whether it is there.
    pub evidence: Vec<EvidenceCheck>,
    /// Required sign-off slots and who fills them.
    pub sign_offs: Vec<Slot>,
    /// Roles still short of sign-offs.
    pub missing_roles: Vec<MissingRole>,
    /// Approvals that do not count.
    pub ignored_approvals: Vec<IgnoredApproval>,
    /// Vetoes in force.
    pub vetoes: Vec<Veto>,
    /// Commands seen, honoured or refused.
    pub commands: Vec<CommandRecord>,
    /// Hours of observation on canary this tier asks for.
    pub observation_hours: u32,
    /// Notes for the reader (e.g. the change edits the policy and is judged by the old one).
    pub notes: Vec<String>,
    /// The overall result.
    pub outcome: Outcome,
}

impl Signal {
    /// The signal in words, for the CLI, the comment and the check.
    pub fn describe(&self) -> String {
        match self {
            Signal::Kind { path, kind, floor } => {
                let floor = if *floor { " (playbook floor)" } else { "" };
                format!("`{path}` is a {kind} change{floor}")
            }
            Signal::Key { path, detail, .. } => format!("`{path}` {detail}"),
            Signal::MetricShift {
                metric,
                base,
                head,
                shift_pct,
                threshold_pct,
            } => {
                format!("metric `{metric}` {base} → {head} ({shift_pct:.2} % > {threshold_pct} %)")
            }
            Signal::Label { label } => format!("label `{label}`"),
            Signal::SensitivePath { path } => format!("`{path}` is a sensitive path"),
            Signal::Governed { files } => {
                format!("{files} governed file(s) changed; no higher-risk signal")
            }
        }
    }
}

impl IgnoreReason {
    /// Why the approval does not count, in words.
    pub fn describe(&self) -> String {
        match self {
            IgnoreReason::Author => "the author cannot approve their own change".to_owned(),
            IgnoreReason::Contributor => "authored or committed part of the change".to_owned(),
            IgnoreReason::NoWriteAccess => "no write access".to_owned(),
            IgnoreReason::Stale { changed } if changed.is_empty() => {
                "stale: given on an older commit".to_owned()
            }
            IgnoreReason::Stale { changed } => {
                format!("stale: {} changed since", changed.join(", "))
            }
            IgnoreReason::NoRequiredRole => "holds none of the required roles".to_owned(),
            IgnoreReason::AlreadyFills { role } => format!("already signs off as {role}"),
            IgnoreReason::RolesAlreadyFilled => {
                "their roles are already signed off by others".to_owned()
            }
        }
    }
}

/// Percentages that may be infinite (a metric moving away from 0): JSON has no infinity, so
/// they are written as `"inf"` and read back from it, instead of turning into `null`.
mod percent {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Repr {
        Number(f64),
        Text(String),
    }

    pub(super) fn from_repr<E: serde::de::Error>(repr: Repr) -> Result<f64, E> {
        match repr {
            Repr::Number(n) => Ok(n),
            Repr::Text(t) if t == "inf" => Ok(f64::INFINITY),
            Repr::Text(t) if t == "-inf" => Ok(f64::NEG_INFINITY),
            Repr::Text(t) => Err(E::custom(format!("`{t}` is not a percentage"))),
        }
    }

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        match *value {
            v if v.is_finite() => serializer.serialize_f64(v),
            v if v > 0.0 => serializer.serialize_str("inf"),
            _ => serializer.serialize_str("-inf"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(deserializer)?)
    }
}

/// [`percent`] for optional values.
mod optional_percent {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::percent::serialize(v, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        Option::<super::percent::Repr>::deserialize(deserializer)?
            .map(super::percent::from_repr)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_infinite_shift_survives_a_json_round_trip() {
        let change = MetricChange {
            metric: "auc".to_owned(),
            base: Some(0.0),
            head: Some(0.5),
            shift_pct: Some(f64::INFINITY),
        };
        let json = serde_json::to_string(&change).unwrap();
        assert!(json.contains(r#""shift_pct":"inf""#), "{json}");
        assert_eq!(serde_json::from_str::<MetricChange>(&json).unwrap(), change);
        let none = MetricChange {
            shift_pct: None,
            ..change
        };
        let json = serde_json::to_string(&none).unwrap();
        assert_eq!(serde_json::from_str::<MetricChange>(&json).unwrap(), none);
    }
}
