//! The validated policy: what `.governance.toml` means once every name, glob and reference in
//! it has been checked. Built only by [`super::load`]; everything here is already valid.

use std::collections::BTreeMap;
use std::fmt;

use globset::{Glob, GlobSet};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Path of the policy file at the repository root.
pub const POLICY_PATH: &str = ".governance.toml";

/// How much a change must show before it may merge. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskTier {
    /// Minor tweak, no schema change, metrics within ±1 %.
    Low,
    /// New feature, retraining, metric shift of 1–5 %.
    Medium,
    /// New data source, objective change, sensitive domain, metric shift over 5 %.
    High,
}

impl RiskTier {
    /// Every tier, lowest first.
    pub const ALL: [RiskTier; 3] = [RiskTier::Low, RiskTier::Medium, RiskTier::High];

    /// Lower-case name, as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Low => "low",
            RiskTier::Medium => "medium",
            RiskTier::High => "high",
        }
    }

    /// Capitalised name for people ("High risk").
    pub fn title(self) -> &'static str {
        match self {
            RiskTier::Low => "Low",
            RiskTier::Medium => "Medium",
            RiskTier::High => "High",
        }
    }
}

impl fmt::Display for RiskTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The playbook's gates: the checkpoints a change passes on its way to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// New source, schema or PII risk.
    Data,
    /// Architecture, objective or performance shift.
    Model,
    /// Release to users.
    Deployment,
    /// The rules that govern the repository changed.
    Governance,
    /// Hotfix or rollback under a bypass.
    Emergency,
}

/// What kind of ML change a file (or a key in it) is. A closed vocabulary, so that a typo in
/// the policy is an error rather than a rule that never fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Serialized model weights (`*.onnx`, `*.pt`, `MLmodel`).
    ModelArtifact,
    /// Model source code.
    ModelCode,
    /// Training configuration (hyperparameters, schedules).
    TrainingConfig,
    /// A feature definition.
    FeatureDefinition,
    /// A feature schema.
    FeatureSchema,
    /// A data source definition.
    DataSource,
    /// A pinned dataset version.
    DatasetVersion,
    /// Decision thresholds and serving rules.
    ThresholdConfig,
    /// Deployment configuration (serving, rollout).
    DeploymentConfig,
    /// Documentation.
    Docs,
    /// `.governance.toml` itself (always; cannot be configured away).
    GovernanceConfig,
    /// A key-level rule saw the training objective change.
    ObjectiveChange,
    /// A key-level rule saw a decision threshold change.
    ThresholdChange,
    /// A key-level rule saw a field removed from a schema.
    BreakingSchemaChange,
}

impl ChangeKind {
    /// Every kind, for error hints.
    pub const ALL: [ChangeKind; 14] = [
        ChangeKind::ModelArtifact,
        ChangeKind::ModelCode,
        ChangeKind::TrainingConfig,
        ChangeKind::FeatureDefinition,
        ChangeKind::FeatureSchema,
        ChangeKind::DataSource,
        ChangeKind::DatasetVersion,
        ChangeKind::ThresholdConfig,
        ChangeKind::DeploymentConfig,
        ChangeKind::Docs,
        ChangeKind::GovernanceConfig,
        ChangeKind::ObjectiveChange,
        ChangeKind::ThresholdChange,
        ChangeKind::BreakingSchemaChange,
    ];

    /// Name as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::ModelArtifact => "model_artifact",
            ChangeKind::ModelCode => "model_code",
            ChangeKind::TrainingConfig => "training_config",
            ChangeKind::FeatureDefinition => "feature_definition",
            ChangeKind::FeatureSchema => "feature_schema",
            ChangeKind::DataSource => "data_source",
            ChangeKind::DatasetVersion => "dataset_version",
            ChangeKind::ThresholdConfig => "threshold_config",
            ChangeKind::DeploymentConfig => "deployment_config",
            ChangeKind::Docs => "docs",
            ChangeKind::GovernanceConfig => "governance_config",
            ChangeKind::ObjectiveChange => "objective_change",
            ChangeKind::ThresholdChange => "threshold_change",
            ChangeKind::BreakingSchemaChange => "breaking_schema_change",
        }
    }

    /// Parses a policy name.
    pub fn parse(name: &str) -> Option<ChangeKind> {
        ChangeKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The gate a change of this kind passes through, if any.
    pub fn gate(self) -> Option<Gate> {
        match self {
            ChangeKind::FeatureDefinition
            | ChangeKind::FeatureSchema
            | ChangeKind::DataSource
            | ChangeKind::DatasetVersion
            | ChangeKind::BreakingSchemaChange => Some(Gate::Data),
            ChangeKind::ModelArtifact
            | ChangeKind::ModelCode
            | ChangeKind::TrainingConfig
            | ChangeKind::ThresholdConfig
            | ChangeKind::ObjectiveChange
            | ChangeKind::ThresholdChange => Some(Gate::Model),
            ChangeKind::DeploymentConfig => Some(Gate::Deployment),
            ChangeKind::GovernanceConfig => Some(Gate::Governance),
            ChangeKind::Docs => None,
        }
    }

    /// The playbook's floor for this kind: the tier it has at least, whatever the policy says
    /// (a policy can raise it, never lower it). New data sources and objective changes are high
    /// risk; a breaking schema change at least medium; a change to the policy itself is high,
    /// because loosening a gate is the riskiest change of all.
    pub fn floor(self) -> Option<RiskTier> {
        match self {
            ChangeKind::DataSource | ChangeKind::ObjectiveChange | ChangeKind::GovernanceConfig => {
                Some(RiskTier::High)
            }
            ChangeKind::BreakingSchemaChange => Some(RiskTier::Medium),
            _ => None,
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name declared in `[roles]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoleName(pub String);

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member of a role: a user, or every active member of a team.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Member {
    /// A login, compared case-insensitively (forges treat logins so).
    User(String),
    /// `@org/team` (GitHub) or `@group/subgroup` (GitLab).
    Team(String),
}

/// Paths matched by a set of globs (with the globs kept for messages).
#[derive(Debug, Clone)]
pub struct PathSet {
    /// The globs as written.
    pub globs: Vec<String>,
    /// Each glob compiled (kept to build the policy's combined [`PathIndex`]).
    pub compiled: Vec<Glob>,
    /// Compiled; `*` does not cross `/`, `**` does.
    pub set: GlobSet,
}

impl PathSet {
    /// Whether `path` matches any glob.
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

/// `[[classify]]`: changed paths → a change kind.
#[derive(Debug, Clone)]
pub struct ClassifyRule {
    /// The kind a matching path is.
    pub kind: ChangeKind,
    /// Which paths.
    pub paths: PathSet,
}

/// What a key-level rule looks for in a structured file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyTrigger {
    /// A listed key's value differs between base and head (including added or removed).
    Changed,
    /// A field present at base is gone at head (anywhere in the file, or under the listed keys).
    RemovedField,
}

/// `[[key_rules]]`: a key-level rule on YAML, TOML or JSON files.
#[derive(Debug, Clone)]
pub struct KeyRule {
    /// Which files.
    pub paths: PathSet,
    /// Dotted key paths (`model.objective`); empty = the whole file (for `removed_field`).
    pub keys: Vec<String>,
    /// What to look for.
    pub when: KeyTrigger,
    /// The kind a hit is.
    pub kind: ChangeKind,
}

/// `[metrics]`: which files hold metrics to compare between base and head.
#[derive(Debug, Clone, Default)]
pub struct MetricsPolicy {
    /// JSON files with numeric leaves (`{"auc": 0.91, "segments": {"eu": {"auc": 0.9}}}`).
    pub files: Option<PathSet>,
    /// Only these metrics (dotted names); empty = every numeric leaf.
    pub only: Vec<String>,
}

/// A metric-shift threshold: over this relative shift (in %), the rule fires.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShiftThreshold {
    /// For any metric.
    pub any: Option<f64>,
    /// Per metric name (dotted).
    pub per_metric: BTreeMap<String, f64>,
}

impl ShiftThreshold {
    /// The threshold that applies to a metric, if any.
    pub fn for_metric(&self, name: &str) -> Option<f64> {
        self.per_metric.get(name).copied().or(self.any)
    }

    /// Whether no threshold is set.
    pub fn is_empty(&self) -> bool {
        self.any.is_none() && self.per_metric.is_empty()
    }
}

/// `[risk.<tier>]`: the signals that put a change in a tier.
#[derive(Debug, Clone, Default)]
pub struct RiskRule {
    /// Change kinds.
    pub kinds: Vec<ChangeKind>,
    /// Labels on the change.
    pub labels: Vec<String>,
    /// Sensitive paths.
    pub paths: Option<PathSet>,
    /// Metric shift over which the tier applies.
    pub metric_shift_pct: ShiftThreshold,
}

/// A required sign-off: `count` distinct people holding `role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOffRequirement {
    /// The role.
    pub role: RoleName,
    /// How many distinct holders must approve.
    pub count: u32,
}

/// `[tiers.<tier>]`: what a change of that tier must show.
#[derive(Debug, Clone)]
pub struct TierPolicy {
    /// Required sign-offs.
    pub sign_offs: Vec<SignOffRequirement>,
    /// Required evidence ids (keys of `[evidence]`).
    pub evidence: Vec<String>,
    /// Hours the change is watched on canary before full rollout.
    pub observation_hours: u32,
    /// Whether an approval stops counting once governed files change after it.
    pub stale_on_push: bool,
    /// The `[tiers.*]` section these requirements come from (another tier's when this one
    /// is not defined).
    pub defined_by: RiskTier,
}

/// Whether evidence files must merely exist or be part of the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRequirement {
    /// A matching file exists at the head.
    Exist,
    /// A matching file is added or modified by the change.
    Change,
}

/// `[evidence.<id>]`: how to recognise one piece of evidence.
#[derive(Debug, Clone)]
pub struct EvidenceRule {
    /// The key under `[evidence]`.
    pub id: String,
    /// Display name ("Model card").
    pub title: String,
    /// Files that carry it, when it is a file.
    pub paths: Option<PathSet>,
    /// Whether the file must exist or be changed.
    pub must: FileRequirement,
    /// Markdown headings that must be present and not empty in the file.
    pub sections: Vec<String>,
    /// A heading of the PR description that must be present and not empty.
    pub pr_body_section: Option<String>,
}

/// `[emergency]`: the narrow, logged bypass.
#[derive(Debug, Clone)]
pub struct EmergencyPolicy {
    /// Roles whose holders may bypass.
    pub approvers: Vec<RoleName>,
    /// The ticket pattern (matched against the whole ticket).
    pub ticket: Regex,
    /// The pattern as written, for messages.
    pub ticket_pattern: String,
    /// Hours a bypass stays valid.
    pub expires_hours: u32,
    /// Hours within which the post-incident review is due.
    pub review_within_hours: u32,
    /// Whether an overdue post-incident review in the repository refuses further bypasses
    /// (and rollbacks) until it is closed.
    pub overdue_review_blocks_bypass: bool,
}

/// `[deployment]`: the deployment gate. A deployment to one of `environments` is released only
/// for a commit whose change passed its review (or was validly bypassed), and, when the change's
/// tier has an observation window, only that many hours after the commit was deployed
/// successfully to `canary`.
#[derive(Debug, Clone)]
pub struct DeploymentPolicy {
    /// Environments the gate guards (e.g. `production`).
    pub environments: Vec<String>,
    /// Where the observation window runs; without it, a tier with a window cannot deploy.
    pub canary: Option<String>,
}

/// A validated `.governance.toml`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Base branches whose changes are governed.
    pub governed_branches: PathSet,
    /// Role → members.
    pub roles: BTreeMap<RoleName, Vec<Member>>,
    /// Path classification, in file order.
    pub classify: Vec<ClassifyRule>,
    /// Key-level rules.
    pub key_rules: Vec<KeyRule>,
    /// Metric files.
    pub metrics: MetricsPolicy,
    /// Risk rules per tier.
    pub risk: BTreeMap<RiskTier, RiskRule>,
    /// Requirements per tier.
    pub tiers: Tiers,
    /// Evidence definitions by id.
    pub evidence: BTreeMap<String, EvidenceRule>,
    /// The emergency bypass, when the policy allows one.
    pub emergency: Option<EmergencyPolicy>,
    /// The deployment gate, when the policy has one.
    pub deployment: Option<DeploymentPolicy>,
    /// Every path glob above, combined.
    pub index: super::index::PathIndex,
}

/// Requirements for every tier. Tiers the policy leaves out take the nearest stricter tier's
/// requirements (else the nearest laxer one's), so an undefined tier never asks for less
/// than a defined tier above it.
#[derive(Debug, Clone)]
pub struct Tiers {
    /// Low.
    pub low: TierPolicy,
    /// Medium.
    pub medium: TierPolicy,
    /// High.
    pub high: TierPolicy,
}

impl Tiers {
    /// The requirements for a tier.
    pub fn get(&self, tier: RiskTier) -> &TierPolicy {
        match tier {
            RiskTier::Low => &self.low,
            RiskTier::Medium => &self.medium,
            RiskTier::High => &self.high,
        }
    }
}
