//! Reading `.governance.toml`: strict TOML (unknown keys rejected) into raw structs that keep
//! the source position of every value, then validation into a [`Policy`]. Every problem is
//! reported with its line and column and a hint. A file that is not valid TOML, or has an
//! unknown key, stops at that first error (the shape must be right before it can be
//! checked); every other problem is reported at once rather than one per attempt.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use globset::{GlobBuilder, GlobSetBuilder};
use serde::Deserialize;
use toml::Spanned;

use super::index::PathIndex;
use super::model::{
    ChangeKind, ClassifyRule, DeploymentPolicy, EmergencyPolicy, EvidenceRule, FileRequirement,
    KeyRule, KeyTrigger, Member, MetricsPolicy, PathSet, Policy, RiskRule, RiskTier, RoleName,
    ShiftThreshold, SignOffRequirement, TierPolicy, Tiers,
};

/// The only policy format version so far.
const SUPPORTED_VERSION: u32 = 1;

/// One problem in a policy file, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a policy file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// Renders each error as `path:line:col: message` (plus its hint line).
    pub fn render(&self, path: &str) -> String {
        self.0
            .iter()
            .map(|e| format!("{path}:{e}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(super::model::POLICY_PATH))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<u32>,
    governed_branches: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    classify: Vec<RawClassify>,
    #[serde(default)]
    key_rules: Vec<RawKeyRule>,
    metrics: Option<RawMetrics>,
    #[serde(default)]
    risk: RawPerTier<RawRiskRule>,
    #[serde(default)]
    tiers: RawPerTier<Spanned<RawTier>>,
    #[serde(default)]
    evidence: BTreeMap<String, Spanned<RawEvidence>>,
    emergency: Option<Spanned<RawEmergency>>,
    deployment: Option<Spanned<RawDeployment>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployment {
    environments: Vec<Spanned<String>>,
    canary: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerTier<T> {
    low: Option<T>,
    medium: Option<T>,
    high: Option<T>,
}

impl<T> Default for RawPerTier<T> {
    fn default() -> Self {
        RawPerTier {
            low: None,
            medium: None,
            high: None,
        }
    }
}

impl<T> RawPerTier<T> {
    fn into_iter(self) -> impl Iterator<Item = (RiskTier, T)> {
        [
            (RiskTier::Low, self.low),
            (RiskTier::Medium, self.medium),
            (RiskTier::High, self.high),
        ]
        .into_iter()
        .filter_map(|(tier, value)| value.map(|v| (tier, v)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassify {
    kind: Spanned<String>,
    paths: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyRule {
    paths: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    keys: Vec<String>,
    when: Option<Spanned<String>>,
    kind: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    files: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    only: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRiskRule {
    #[serde(default)]
    kinds: Vec<Spanned<String>>,
    #[serde(default)]
    labels: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    /// A percentage, or a table of percentages per metric (`"*"` = any); read by hand so
    /// that a mistake is reported at the value, in words about the policy.
    metric_shift_pct: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    /// Role names or `{ role, count }` tables; read by hand (see `metric_shift_pct`).
    #[serde(default)]
    sign_offs: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    evidence: Vec<Spanned<String>>,
    #[serde(default)]
    observation_hours: u32,
    stale_on_push: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    title: Option<String>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    must: Option<Spanned<String>>,
    #[serde(default)]
    sections: Vec<String>,
    pr_body_section: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmergency {
    approvers: Vec<Spanned<String>>,
    ticket: Spanned<String>,
    expires_hours: Option<Spanned<u32>>,
    review_within_hours: Option<Spanned<u32>>,
    #[serde(default)]
    overdue_review_blocks_bypass: bool,
}

/// Parses and validates a policy. `Err` lists every problem found.
pub fn parse_policy(source: &str) -> Result<Policy, PolicyErrors> {
    let raw: RawPolicy = toml::from_str(source).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim().to_owned();
        let hint = syntax_hint(&message);
        PolicyErrors(vec![at(source, span, message, hint)])
    })?;
    let mut v = Validator {
        source,
        errors: Vec::new(),
    };
    let policy = v.policy(raw);
    if v.errors.is_empty() {
        policy.ok_or_else(|| PolicyErrors(Vec::new()))
    } else {
        v.errors.sort_by_key(|e| (e.line, e.column));
        Err(PolicyErrors(v.errors))
    }
}

/// A hint for serde's messages about the file's shape.
fn syntax_hint(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("check the spelling; the policy format is documented in README.md (\".governance.toml\")".to_owned())
    } else if message.starts_with("missing field `version`") {
        Some(format!(
            "start the file with `version = {SUPPORTED_VERSION}`"
        ))
    } else if message.contains("did not match any variant of untagged enum RawSignOff") {
        Some(
            "a sign-off is a role name (\"approver\") or { role = \"approver\", count = 2 }"
                .to_owned(),
        )
    } else if message.contains("untagged enum RawShift") {
        Some("use a percentage (5.0) or a table of percentages per metric ({ auc = 2.0, \"*\" = 5.0 })".to_owned())
    } else {
        None
    }
}

/// Turns a byte span into a positioned error.
fn at(source: &str, span: Range<usize>, message: String, hint: Option<String>) -> PolicyError {
    let start = span.start.min(source.len());
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..start].chars().count() + 1;
    PolicyError {
        line,
        column,
        message,
        hint,
    }
}

struct Validator<'s> {
    source: &'s str,
    errors: Vec<PolicyError>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let error = at(self.source, span, message.into(), hint);
        self.errors.push(error);
    }

    fn policy(&mut self, raw: RawPolicy) -> Option<Policy> {
        if *raw.version.get_ref() != SUPPORTED_VERSION {
            self.error(
                raw.version.span(),
                format!("unsupported policy version {}", raw.version.get_ref()),
                Some(format!(
                    "this tollgate reads `version = {SUPPORTED_VERSION}`"
                )),
            );
        }
        let governed_branches = match &raw.governed_branches {
            Some(globs) => self.path_set(globs),
            // Fail closed: without a list, every base branch is governed (`**`, because `*`
            // stops at `/` and would leave `release/1.0` ungoverned).
            None => self.path_set(&[Spanned::new(0..0, "**".to_owned())]),
        };
        let roles = self.roles(&raw.roles);
        let classify: Vec<ClassifyRule> = raw
            .classify
            .iter()
            .filter_map(|c| self.classify(c))
            .collect();
        let key_rules: Vec<KeyRule> = raw
            .key_rules
            .iter()
            .filter_map(|r| self.key_rule(r))
            .collect();
        let metrics = match &raw.metrics {
            Some(m) => MetricsPolicy {
                files: self.non_empty_paths(&m.files, "[metrics] files"),
                only: m.only.clone(),
            },
            None => MetricsPolicy::default(),
        };
        let risk = self.risk(raw.risk);
        let evidence = self.evidence(&raw.evidence);
        let tiers = self.tiers(raw.tiers, &raw.roles, &evidence);
        let emergency = raw
            .emergency
            .as_ref()
            .and_then(|e| self.emergency(e, &raw.roles));
        let deployment = raw.deployment.as_ref().map(|d| self.deployment(d));
        let index = PathIndex::build(&classify, &metrics, &key_rules, &risk, &evidence).ok()?;
        Some(Policy {
            index,
            governed_branches: governed_branches?,
            roles,
            classify,
            key_rules,
            metrics,
            risk,
            tiers: tiers?,
            evidence,
            emergency,
            deployment,
        })
    }

    fn deployment(&mut self, raw: &Spanned<RawDeployment>) -> DeploymentPolicy {
        let d = raw.get_ref();
        if d.environments.is_empty() {
            self.error(
                raw.span(),
                "[deployment] names no environments",
                Some("add environments = [\"production\"]".to_owned()),
            );
        }
        for name in d.environments.iter().chain(&d.canary) {
            if name.get_ref().trim().is_empty() {
                self.error(
                    name.span(),
                    "an environment name cannot be empty",
                    Some(
                        "use the environment's name as GitHub shows it, e.g. \"production\""
                            .to_owned(),
                    ),
                );
            }
        }
        if let Some(canary) = &d.canary
            && d.environments
                .iter()
                .any(|e| e.get_ref() == canary.get_ref())
        {
            self.error(
                canary.span(),
                format!(
                    "`{}` cannot be both the canary and a gated environment",
                    canary.get_ref()
                ),
                Some(
                    "the canary is where the observation window runs before the gated environments"
                        .to_owned(),
                ),
            );
        }
        DeploymentPolicy {
            environments: d.environments.iter().map(|e| e.get_ref().clone()).collect(),
            canary: d.canary.as_ref().map(|c| c.get_ref().clone()),
        }
    }

    fn glob(&mut self, glob: &Spanned<String>) -> Option<globset::Glob> {
        match GlobBuilder::new(glob.get_ref())
            .literal_separator(true)
            .build()
        {
            Ok(compiled) => Some(compiled),
            Err(error) => {
                self.error(
                    glob.span(),
                    format!("invalid glob `{}`: {}", glob.get_ref(), error.kind()),
                    Some("`*` matches within one folder, `**` across folders, e.g. \"models/**/*.onnx\"".to_owned()),
                );
                None
            }
        }
    }

    fn path_set(&mut self, globs: &[Spanned<String>]) -> Option<PathSet> {
        let compiled: Vec<globset::Glob> = globs.iter().filter_map(|g| self.glob(g)).collect();
        if compiled.len() != globs.len() {
            return None;
        }
        let mut builder = GlobSetBuilder::new();
        for glob in &compiled {
            builder.add(glob.clone());
        }
        Some(PathSet {
            globs: globs.iter().map(|g| g.get_ref().clone()).collect(),
            set: builder.build().ok()?,
            compiled,
        })
    }

    fn non_empty_paths(
        &mut self,
        globs: &Spanned<Vec<Spanned<String>>>,
        what: &str,
    ) -> Option<PathSet> {
        if globs.get_ref().is_empty() {
            self.error(
                globs.span(),
                format!("{what} is empty"),
                Some("list at least one glob".to_owned()),
            );
            return None;
        }
        self.path_set(globs.get_ref())
    }

    fn kind(&mut self, name: &Spanned<String>) -> Option<ChangeKind> {
        let kind = ChangeKind::parse(name.get_ref());
        if kind.is_none() {
            let known: Vec<&str> = ChangeKind::ALL.iter().map(|k| k.as_str()).collect();
            let hint = match closest(name.get_ref(), known.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? known kinds: {}", known.join(", ")),
                None => format!("known kinds: {}", known.join(", ")),
            };
            self.error(
                name.span(),
                format!("unknown change kind `{}`", name.get_ref()),
                Some(hint),
            );
        }
        kind
    }

    fn roles(
        &mut self,
        raw: &BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    ) -> BTreeMap<RoleName, Vec<Member>> {
        let mut roles = BTreeMap::new();
        for (name, members) in raw {
            let mut parsed = Vec::new();
            for member in members.get_ref() {
                match parse_member(member.get_ref()) {
                    Some(m) => parsed.push(m),
                    None => self.error(
                        member.span(),
                        format!(
                            "`{}` is neither a user login nor an `@org/team`",
                            member.get_ref()
                        ),
                        Some("write users as \"alice\" and teams as \"@acme/ml-leads\"".to_owned()),
                    ),
                }
            }
            roles.insert(RoleName(name.clone()), parsed);
        }
        roles
    }

    fn role_ref(
        &mut self,
        name: &str,
        span: Range<usize>,
        roles: &BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
        needs_members: bool,
    ) -> Option<RoleName> {
        match roles.get(name) {
            None => {
                let known: Vec<&str> = roles.keys().map(String::as_str).collect();
                self.error(
                    span,
                    format!("role `{name}` is not defined in [roles]"),
                    Some(if known.is_empty() {
                        format!("add `[roles]` with `{name} = [\"@org/team\"]`")
                    } else if let Some(near) = closest(name, known.iter().copied()) {
                        format!("did you mean `{near}`? defined roles: {}", known.join(", "))
                    } else {
                        format!(
                            "defined roles: {}; or add `{name} = [...]` to [roles]",
                            known.join(", ")
                        )
                    }),
                );
                None
            }
            Some(members) if needs_members && members.get_ref().is_empty() => {
                self.error(
                    span,
                    format!("role `{name}` is required here but has no members"),
                    Some(format!(
                        "add users or teams to `{name}` in [roles]; nobody could ever sign off"
                    )),
                );
                None
            }
            Some(_) => Some(RoleName(name.to_owned())),
        }
    }

    fn classify(&mut self, raw: &RawClassify) -> Option<ClassifyRule> {
        let kind = self.kind(&raw.kind);
        let paths = self.non_empty_paths(&raw.paths, "[[classify]] paths");
        Some(ClassifyRule {
            kind: kind?,
            paths: paths?,
        })
    }

    fn key_rule(&mut self, raw: &RawKeyRule) -> Option<KeyRule> {
        let kind = self.kind(&raw.kind);
        let paths = self.non_empty_paths(&raw.paths, "[[key_rules]] paths");
        let when = match raw.when.as_ref().map(|w| (w.get_ref().as_str(), w.span())) {
            None | Some(("changed", _)) => KeyTrigger::Changed,
            Some(("removed_field", _)) => KeyTrigger::RemovedField,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("unknown trigger `{other}`"),
                    Some("use \"changed\" or \"removed_field\"".to_owned()),
                );
                return None;
            }
        };
        if when == KeyTrigger::Changed && raw.keys.is_empty() {
            self.error(
                raw.kind.span(),
                "a `changed` key rule needs the keys to watch",
                Some("add e.g. keys = [\"objective\", \"model.loss\"]".to_owned()),
            );
            return None;
        }
        Some(KeyRule {
            paths: paths?,
            keys: raw.keys.clone(),
            when,
            kind: kind?,
        })
    }

    fn risk(&mut self, raw: RawPerTier<RawRiskRule>) -> BTreeMap<RiskTier, RiskRule> {
        let mut rules = BTreeMap::new();
        let mut raw_rules: Vec<(RiskTier, RawRiskRule)> = raw.into_iter().collect();
        // Highest tier first, so a signal repeated in a lower tier can be called unreachable.
        raw_rules.sort_by_key(|(tier, _)| std::cmp::Reverse(*tier));
        let mut seen_kinds: BTreeMap<ChangeKind, RiskTier> = BTreeMap::new();
        let mut seen_labels: BTreeMap<String, RiskTier> = BTreeMap::new();
        let mut stricter_shift: Option<(ShiftThreshold, RiskTier)> = None;
        for (tier, raw_rule) in raw_rules {
            let mut rule = RiskRule::default();
            for name in &raw_rule.kinds {
                let Some(kind) = self.kind(name) else {
                    continue;
                };
                if let Some(higher) = seen_kinds.get(&kind) {
                    self.unreachable(
                        name.span(),
                        tier,
                        kind.as_str(),
                        &format!("[risk.{higher}]"),
                    );
                } else if let Some(floor) = kind.floor().filter(|floor| *floor > tier) {
                    self.unreachable(
                        name.span(),
                        tier,
                        kind.as_str(),
                        &format!("the playbook's floor ({floor})"),
                    );
                } else {
                    seen_kinds.insert(kind, tier);
                    rule.kinds.push(kind);
                }
            }
            for label in &raw_rule.labels {
                if let Some(higher) = seen_labels.get(label.get_ref()) {
                    self.unreachable(
                        label.span(),
                        tier,
                        label.get_ref(),
                        &format!("[risk.{higher}]"),
                    );
                } else {
                    seen_labels.insert(label.get_ref().clone(), tier);
                    rule.labels.push(label.get_ref().clone());
                }
            }
            if !raw_rule.paths.is_empty() {
                rule.paths = self.path_set(&raw_rule.paths);
            }
            if let Some(shift) = &raw_rule.metric_shift_pct {
                rule.metric_shift_pct = self.shift(shift, tier, &mut stricter_shift);
            }
            rules.insert(tier, rule);
        }
        rules
    }

    fn unreachable(&mut self, span: Range<usize>, tier: RiskTier, what: &str, decided_by: &str) {
        self.error(
            span,
            format!("unreachable rule: `{what}` in [risk.{tier}] never applies, it is already decided by {decided_by}"),
            Some(format!("remove `{what}` from [risk.{tier}]")),
        );
    }

    /// Reads a `metric_shift_pct` value: `5.0`, or `{ auc = 2.0, "*" = 5.0 }`.
    fn shift_value(&mut self, raw: &Spanned<toml::Value>) -> Option<ShiftThreshold> {
        let number = |v: &toml::Value| match v {
            toml::Value::Float(f) => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        let mut threshold = ShiftThreshold::default();
        let valid = match raw.get_ref() {
            toml::Value::Table(table) => table.iter().all(|(metric, value)| {
                let Some(pct) = number(value) else {
                    return false;
                };
                if metric == "*" {
                    threshold.any = Some(pct);
                } else {
                    threshold.per_metric.insert(metric.clone(), pct);
                }
                true
            }),
            other => number(other).map(|pct| threshold.any = Some(pct)).is_some(),
        };
        let all = threshold.any.iter().chain(threshold.per_metric.values());
        if !valid || all.clone().any(|pct| !pct.is_finite() || *pct < 0.0) {
            self.error(
                raw.span(),
                "a metric shift threshold must be a non-negative percentage, or a table of them per metric",
                Some("e.g. metric_shift_pct = 5.0, or metric_shift_pct = { auc = 2.0, \"*\" = 5.0 }".to_owned()),
            );
            return None;
        }
        Some(threshold)
    }

    /// Reads a threshold and reports it unreachable where a higher tier already fires at the
    /// same or a lower shift, for any metric or for a named one.
    fn shift(
        &mut self,
        raw: &Spanned<toml::Value>,
        tier: RiskTier,
        stricter: &mut Option<(ShiftThreshold, RiskTier)>,
    ) -> ShiftThreshold {
        let Some(threshold) = self.shift_value(raw) else {
            return ShiftThreshold::default();
        };
        if let Some((higher, higher_tier)) = stricter.as_ref() {
            let shadowed = |metric: Option<&str>, pct: f64| -> Option<f64> {
                let limit = match metric {
                    Some(name) => higher.for_metric(name),
                    None => higher.any,
                }?;
                (pct >= limit).then_some(limit)
            };
            let mut unreachable: Vec<(String, f64, f64)> = Vec::new();
            if let Some(any) = threshold.any
                && let Some(limit) = shadowed(None, any)
            {
                unreachable.push((String::new(), any, limit));
            }
            for (metric, pct) in &threshold.per_metric {
                if let Some(limit) = shadowed(Some(metric), *pct) {
                    unreachable.push((format!(" of `{metric}`"), *pct, limit));
                }
            }
            for (what, pct, limit) in unreachable {
                self.error(
                    raw.span(),
                    format!(
                        "unreachable rule: a shift{what} over {pct} % is already {higher_tier} risk (over {limit} %)"
                    ),
                    Some(format!("use a threshold below {limit} in [risk.{tier}]")),
                );
            }
        }
        // Keep the strictest known threshold per metric for the tiers below.
        let mut merged = stricter.take().map(|(t, _)| t).unwrap_or_default();
        if threshold.any.is_some() {
            merged.any = threshold.any;
        }
        merged.per_metric.extend(threshold.per_metric.clone());
        *stricter = Some((merged, tier));
        threshold
    }

    fn evidence(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawEvidence>>,
    ) -> BTreeMap<String, EvidenceRule> {
        let mut rules = BTreeMap::new();
        for (id, spanned) in raw {
            let e = spanned.get_ref();
            if e.paths.is_empty() && e.pr_body_section.is_none() {
                self.error(
                    spanned.span(),
                    format!("evidence `{id}` says neither where to find it (`paths`) nor which PR description section carries it (`pr_body_section`)"),
                    Some("add paths = [\"models/*/MODEL_CARD.md\"] or pr_body_section = \"Rollback plan\"".to_owned()),
                );
                continue;
            }
            if e.paths.is_empty() && !e.sections.is_empty() {
                self.error(
                    spanned.span(),
                    format!("evidence `{id}` lists `sections` but no `paths` to find them in"),
                    Some("add the markdown file's glob under `paths`".to_owned()),
                );
                continue;
            }
            let must = match e.must.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
                None | Some(("exist", _)) => FileRequirement::Exist,
                Some(("change", _)) => FileRequirement::Change,
                Some((other, span)) => {
                    self.error(
                        span,
                        format!("unknown requirement `{other}`"),
                        Some("use \"exist\" or \"change\"".to_owned()),
                    );
                    continue;
                }
            };
            let paths = if e.paths.is_empty() {
                None
            } else {
                match self.path_set(&e.paths) {
                    Some(set) => Some(set),
                    None => continue,
                }
            };
            rules.insert(
                id.clone(),
                EvidenceRule {
                    id: id.clone(),
                    title: e.title.clone().unwrap_or_else(|| humanize(id)),
                    paths,
                    must,
                    sections: e.sections.clone(),
                    pr_body_section: e.pr_body_section.clone(),
                },
            );
        }
        rules
    }

    fn tiers(
        &mut self,
        raw: RawPerTier<Spanned<RawTier>>,
        roles: &BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
        evidence: &BTreeMap<String, EvidenceRule>,
    ) -> Option<Tiers> {
        let mut defined: BTreeMap<RiskTier, TierPolicy> = BTreeMap::new();
        for (tier, spanned) in raw.into_iter() {
            let raw_tier = spanned.into_inner();
            let mut sign_offs: Vec<SignOffRequirement> = Vec::new();
            for sign_off in &raw_tier.sign_offs {
                let Some((name, count)) = self.sign_off(sign_off) else {
                    continue;
                };
                let name = name.as_str();
                if count == 0 {
                    self.error(
                        sign_off.span(),
                        "a sign-off count must be at least 1",
                        Some("omit the sign-off instead".to_owned()),
                    );
                    continue;
                }
                if sign_offs.iter().any(|s| s.role.0 == name) {
                    self.error(
                        sign_off.span(),
                        format!("role `{name}` is listed twice in [tiers.{tier}] sign_offs"),
                        Some(format!(
                            "write it once as {{ role = \"{name}\", count = 2 }}"
                        )),
                    );
                    continue;
                }
                if let Some(role) = self.role_ref(name, sign_off.span(), roles, true) {
                    sign_offs.push(SignOffRequirement { role, count });
                }
            }
            let mut required_evidence = Vec::new();
            for id in &raw_tier.evidence {
                if evidence.contains_key(id.get_ref()) {
                    required_evidence.push(id.get_ref().clone());
                } else {
                    let known: Vec<&str> = evidence.keys().map(String::as_str).collect();
                    self.error(
                        id.span(),
                        format!("evidence `{}` is not defined", id.get_ref()),
                        Some(if known.is_empty() {
                            format!("add an [evidence.{}] section", id.get_ref())
                        } else {
                            format!(
                                "defined evidence: {}; or add [evidence.{}]",
                                known.join(", "),
                                id.get_ref()
                            )
                        }),
                    );
                }
            }
            defined.insert(
                tier,
                TierPolicy {
                    sign_offs,
                    evidence: required_evidence,
                    observation_hours: raw_tier.observation_hours,
                    stale_on_push: raw_tier.stale_on_push.unwrap_or(true),
                    defined_by: tier,
                },
            );
        }
        if defined.is_empty() {
            self.error(
                0..0,
                "no tier says what a change must show",
                Some(
                    "add at least `[tiers.low]` with the sign-offs every governed change needs"
                        .to_owned(),
                ),
            );
            return None;
        }
        let resolve = |tier: RiskTier| -> TierPolicy {
            let above = defined.range(tier..).next();
            let below = defined.range(..tier).next_back();
            above
                .or(below)
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| unreachable!("`defined` is not empty"))
        };
        Some(Tiers {
            low: resolve(RiskTier::Low),
            medium: resolve(RiskTier::Medium),
            high: resolve(RiskTier::High),
        })
    }

    /// Reads one sign-off: `"role"` or `{ role = "role", count = 2 }`.
    fn sign_off(&mut self, raw: &Spanned<toml::Value>) -> Option<(String, u32)> {
        let parsed = match raw.get_ref() {
            toml::Value::String(role) => Ok((role.clone(), 1)),
            toml::Value::Table(table) => {
                let unknown: Vec<&String> = table
                    .keys()
                    .filter(|k| *k != "role" && *k != "count")
                    .collect();
                match (table.get("role"), table.get("count")) {
                    _ if !unknown.is_empty() => Err(format!(
                        "unknown key `{}` in a sign-off; a sign-off has `role` and `count`",
                        unknown[0]
                    )),
                    (Some(toml::Value::String(role)), None) => Ok((role.clone(), 1)),
                    (Some(toml::Value::String(role)), Some(toml::Value::Integer(n))) => {
                        u32::try_from(*n)
                            .map(|n| (role.clone(), n))
                            .map_err(|_| format!("`count = {n}` is not a number of people"))
                    }
                    _ => Err(
                        "a sign-off table needs `role` (text) and may have `count` (a number)"
                            .to_owned(),
                    ),
                }
            }
            _ => Err("a sign-off is a role name or a { role, count } table".to_owned()),
        };
        match parsed {
            Ok(sign_off) => Some(sign_off),
            Err(message) => {
                self.error(
                    raw.span(),
                    message,
                    Some("write \"approver\" or { role = \"approver\", count = 2 }".to_owned()),
                );
                None
            }
        }
    }

    fn emergency(
        &mut self,
        raw: &Spanned<RawEmergency>,
        roles: &BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    ) -> Option<EmergencyPolicy> {
        let e = raw.get_ref();
        if e.approvers.is_empty() {
            self.error(
                raw.span(),
                "[emergency] names no approvers",
                Some("add approvers = [\"on_call\"]".to_owned()),
            );
        }
        let approvers: Vec<RoleName> = e
            .approvers
            .iter()
            .filter_map(|a| self.role_ref(a.get_ref(), a.span(), roles, true))
            .collect();
        // Validate the pattern as written (for an error about what the user wrote), then
        // anchor it so that a ticket must match as a whole.
        let ticket = match regex::Regex::new(e.ticket.get_ref())
            .and_then(|_| regex::Regex::new(&format!("^(?:{})$", e.ticket.get_ref())))
        {
            Ok(re) => Some(re),
            Err(error) => {
                self.error(
                    e.ticket.span(),
                    format!(
                        "invalid ticket pattern `{}`: {}",
                        e.ticket.get_ref(),
                        regex_problem(&error)
                    ),
                    Some("a regular expression such as \"INC-[0-9]+\"".to_owned()),
                );
                None
            }
        };
        let hours = |value: &Option<Spanned<u32>>, default: u32| {
            value.as_ref().map_or(default, |v| *v.get_ref())
        };
        let expires_hours = hours(&e.expires_hours, 24);
        if expires_hours == 0 {
            let span = e.expires_hours.as_ref().map_or(raw.span(), Spanned::span);
            self.error(
                span,
                "a bypass that expires at once is no bypass",
                Some("use e.g. expires_hours = 24".to_owned()),
            );
        }
        // Deadlines are computed in dates: a number of hours beyond any sensible window (a year)
        // is refused here rather than overflowing a date later.
        for (value, key) in [
            (&e.expires_hours, "expires_hours"),
            (&e.review_within_hours, "review_within_hours"),
        ] {
            if let Some(value) = value
                && *value.get_ref() > MAX_EMERGENCY_HOURS
            {
                self.error(
                    value.span(),
                    format!(
                        "{key} = {} is more than a year ({MAX_EMERGENCY_HOURS} hours)",
                        value.get_ref()
                    ),
                    Some(format!(
                        "use at most {MAX_EMERGENCY_HOURS}, e.g. {key} = 48"
                    )),
                );
            }
        }
        Some(EmergencyPolicy {
            approvers,
            ticket: ticket?,
            ticket_pattern: e.ticket.get_ref().clone(),
            expires_hours,
            review_within_hours: hours(&e.review_within_hours, 48),
            overdue_review_blocks_bypass: e.overdue_review_blocks_bypass,
        })
    }
}

/// The longest bypass window or review deadline a policy may set, in hours (a year).
const MAX_EMERGENCY_HOURS: u32 = 24 * 366;

/// The one-line cause in a regex error (its Display repeats the pattern over several lines).
fn regex_problem(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().last().unwrap_or("invalid"))
        .to_owned()
}

/// The candidate nearest to a misspelt name, if one is close enough to be a likely typo.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `@org/team` or `@group/sub/team` → team; a plain login → user.
fn parse_member(text: &str) -> Option<Member> {
    let valid_part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if let Some(team) = text.strip_prefix('@') {
        let parts: Vec<&str> = team.split('/').collect();
        (parts.len() >= 2 && parts.iter().all(|p| valid_part(p)))
            .then(|| Member::Team(text.to_owned()))
    } else {
        (valid_part(text)).then(|| Member::User(text.to_owned()))
    }
}

/// `model_card` → `Model card`.
fn humanize(id: &str) -> String {
    let spaced = id.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
