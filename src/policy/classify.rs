//! What a change touches: the kind of each changed file, key-level findings in structured
//! files, and the metrics compared between base and head.

use std::collections::BTreeSet;

use super::decision::MetricChange;
use super::facts::{ChangeFacts, ChangedFile, FileStatus};
use super::index::PathMatch;
use super::model::{ChangeKind, KeyRule, KeyTrigger, Policy, RiskTier};
use super::structured;

/// A key-level rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHit {
    /// The file.
    pub path: String,
    /// The key (or removed field).
    pub key: String,
    /// The rule's kind.
    pub kind: ChangeKind,
    /// Readable account.
    pub detail: String,
}

/// One governed changed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifiedFile {
    /// Its path.
    pub path: String,
    /// Its kinds (several, or none when it is governed only as a metric file, a file read by
    /// a key rule, or a sensitive path).
    pub kinds: Vec<ChangeKind>,
    /// Tiers whose risk rule calls it sensitive.
    pub sensitive_in: Vec<RiskTier>,
}

/// The classification of one change.
#[derive(Debug, Clone, Default)]
pub struct Classification {
    /// Governed changed files.
    pub files: Vec<ClassifiedFile>,
    /// Key-level findings.
    pub key_hits: Vec<KeyHit>,
    /// Metrics compared.
    pub metrics: Vec<MetricChange>,
    /// Whether the change edits the policy file.
    pub edits_policy: bool,
    /// Changed (not removed) files matching each evidence definition, by evidence index
    /// (in id order), so evidence checks need no second pass over the files.
    pub evidence_files: Vec<Vec<String>>,
}

/// Kinds of one path under the policy's `[[classify]]` rules (`.governance.toml` is always a
/// governance change).
pub fn kinds_of(policy: &Policy, path: &str) -> Vec<ChangeKind> {
    policy.index.lookup(path).kinds
}

/// Whether a change to `path` is governed (see [`super::model::PathMatch::governed`]).
pub fn is_governed(policy: &Policy, path: &str) -> bool {
    policy.index.lookup(path).governed()
}

/// Classifies every changed file, runs the key rules and compares metrics.
pub fn classify(policy: &Policy, facts: &ChangeFacts) -> Classification {
    let mut result = Classification {
        evidence_files: vec![Vec::new(); policy.evidence.len()],
        ..Classification::default()
    };
    for file in &facts.files {
        let head = policy.index.lookup(&file.path);
        if file.status != FileStatus::Removed {
            for i in &head.evidence {
                result.evidence_files[*i].push(file.path.clone());
            }
        }
        // A rename out of a governed folder is still a governed change.
        let base = file
            .previous_path
            .as_deref()
            .map(|p| policy.index.lookup(p));
        if !head.governed() && !base.as_ref().is_some_and(PathMatch::governed) {
            continue;
        }
        let mut kinds: BTreeSet<ChangeKind> = head.kinds.iter().copied().collect();
        let mut sensitive_in: BTreeSet<RiskTier> = head.sensitive_in.iter().copied().collect();
        if let Some(base) = &base {
            kinds.extend(base.kinds.iter().copied());
            sensitive_in.extend(base.sensitive_in.iter().copied());
        }
        result.edits_policy |= kinds.contains(&ChangeKind::GovernanceConfig);
        if !head.key_rules.is_empty() {
            // Parse each side once, whatever the number of rules reading the file.
            let sides = parse_sides(file, facts);
            for rule in head
                .key_rules
                .iter()
                .filter_map(|i| policy.key_rules.get(*i))
            {
                result.key_hits.extend(key_rule_hits(rule, file, &sides));
            }
        }
        result.files.push(ClassifiedFile {
            path: file.path.clone(),
            kinds: kinds.into_iter().collect(),
            sensitive_in: sensitive_in.into_iter().collect(),
        });
    }
    result.metrics = compare_metrics(policy, facts);
    result
}

/// Reads one side of a structured file: absent when the file does not exist on that side.
fn side(
    contents: &super::facts::Contents,
    path: &str,
    exists: bool,
) -> Result<serde_json::Value, String> {
    if !exists {
        return Ok(serde_json::Value::Null);
    }
    match contents.get(path) {
        Some(text) => structured::parse(path, text),
        None => Err(format!("the contents of `{path}` were not provided")),
    }
}

/// Both sides of a structured file, parsed (or why they could not be).
type Sides = (
    Result<serde_json::Value, String>,
    Result<serde_json::Value, String>,
);

fn parse_sides(file: &ChangedFile, facts: &ChangeFacts) -> Sides {
    let base_path = file.previous_path.as_deref().unwrap_or(&file.path);
    let base = side(
        &facts.base_contents,
        base_path,
        file.status != FileStatus::Added,
    );
    let head = side(
        &facts.head_contents,
        &file.path,
        file.status != FileStatus::Removed,
    );
    (base, head)
}

fn key_rule_hits(rule: &KeyRule, file: &ChangedFile, sides: &Sides) -> Vec<KeyHit> {
    let (base, head) = match sides {
        (Ok(base), Ok(head)) => (base, head),
        // Fail closed: a file the rule cannot read counts as the change the rule looks for.
        (Err(problem), _) | (_, Err(problem)) => {
            return vec![KeyHit {
                path: file.path.clone(),
                key: rule.keys.join(", "),
                kind: rule.kind,
                detail: format!("{problem}; assumed to be a change of kind {}", rule.kind),
            }];
        }
    };
    match rule.when {
        KeyTrigger::Changed => rule
            .keys
            .iter()
            .filter_map(|key| {
                let (before, after) =
                    (structured::lookup(base, key), structured::lookup(head, key));
                (before != after).then(|| KeyHit {
                    path: file.path.clone(),
                    key: key.clone(),
                    kind: rule.kind,
                    detail: format!(
                        "`{key}`: {} → {}",
                        structured::show(before),
                        structured::show(after)
                    ),
                })
            })
            .collect(),
        KeyTrigger::RemovedField => {
            let scopes: Vec<(
                Option<&str>,
                Option<&serde_json::Value>,
                Option<&serde_json::Value>,
            )> = if rule.keys.is_empty() {
                vec![(None, Some(base), Some(head))]
            } else {
                rule.keys
                    .iter()
                    .map(|k| {
                        (
                            Some(k.as_str()),
                            structured::lookup(base, k),
                            structured::lookup(head, k),
                        )
                    })
                    .collect()
            };
            let null = serde_json::Value::Null;
            scopes
                .into_iter()
                .flat_map(|(scope, before, after)| {
                    let removed =
                        structured::removed_fields(before.unwrap_or(&null), after.unwrap_or(&null));
                    removed.into_iter().map(move |field| {
                        let key = scope.map_or(field.clone(), |s| format!("{s}.{field}"));
                        (key, field)
                    })
                })
                .map(|(key, field)| KeyHit {
                    path: file.path.clone(),
                    detail: format!("field `{field}` removed"),
                    key,
                    kind: rule.kind,
                })
                .collect()
        }
    }
}

/// Numeric leaves of every metric file present at base or head.
fn compare_metrics(policy: &Policy, facts: &ChangeFacts) -> Vec<MetricChange> {
    let Some(globs) = &policy.metrics.files else {
        return Vec::new();
    };
    let files: BTreeSet<&String> = facts
        .base_contents
        .keys()
        .chain(facts.head_contents.keys())
        .filter(|p| globs.matches(p))
        .collect();
    let prefix = files.len() > 1;
    let read = |contents: &super::facts::Contents, path: &str| -> Vec<(String, f64)> {
        contents
            .get(path)
            .and_then(|text| structured::parse(path, text).ok())
            .map(|v| structured::numeric_leaves(&v))
            .unwrap_or_default()
    };
    let mut changes = Vec::new();
    for path in files {
        let base = read(&facts.base_contents, path);
        let head = read(&facts.head_contents, path);
        let names: BTreeSet<&String> = base.iter().chain(head.iter()).map(|(n, _)| n).collect();
        for name in names {
            if !policy.metrics.only.is_empty() && !policy.metrics.only.contains(name) {
                continue;
            }
            let find =
                |side: &[(String, f64)]| side.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            let (b, h) = (find(&base), find(&head));
            changes.push(MetricChange {
                metric: if prefix {
                    format!("{path}:{name}")
                } else {
                    name.clone()
                },
                base: b,
                head: h,
                shift_pct: b.zip(h).map(|(b, h)| relative_shift_pct(b, h)),
            });
        }
    }
    changes
}

/// `|head − base| / |base|` in percent; a move away from 0 is an infinite shift.
pub fn relative_shift_pct(base: f64, head: f64) -> f64 {
    if base == head {
        0.0
    } else if base == 0.0 {
        f64::INFINITY
    } else {
        (head - base).abs() / base.abs() * 100.0
    }
}
