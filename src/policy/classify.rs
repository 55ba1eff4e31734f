//! What a change touches: the kind of each changed file, key-level findings in structured
//! files, and the metrics compared between base and head.

use std::collections::BTreeSet;

use super::decision::MetricChange;
use super::facts::{ChangeFacts, ChangedFile, FileStatus};
use super::model::{ChangeKind, KeyRule, KeyTrigger, POLICY_PATH, Policy};
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

/// The classification of one change.
#[derive(Debug, Clone, Default)]
pub struct Classification {
    /// Governed changed files and their kinds (a file may have several, or none when it is
    /// governed only as a metric file or sensitive path).
    pub files: Vec<(String, Vec<ChangeKind>)>,
    /// Key-level findings.
    pub key_hits: Vec<KeyHit>,
    /// Metrics compared.
    pub metrics: Vec<MetricChange>,
    /// Whether the change edits the policy file.
    pub edits_policy: bool,
}

/// Kinds of one path under the policy's `[[classify]]` rules (`.governance.toml` is always a
/// governance change).
pub fn kinds_of(policy: &Policy, path: &str) -> Vec<ChangeKind> {
    let mut kinds: BTreeSet<ChangeKind> = policy
        .classify
        .iter()
        .filter(|rule| rule.paths.matches(path))
        .map(|rule| rule.kind)
        .collect();
    if path == POLICY_PATH {
        kinds.insert(ChangeKind::GovernanceConfig);
    }
    kinds.into_iter().collect()
}

/// Whether a change to `path` is governed: it has a kind other than docs, or the policy reads
/// it (metrics, key rules) or calls it sensitive. Docs alone never govern a change nor make
/// an approval stale.
pub fn is_governed(policy: &Policy, path: &str) -> bool {
    kinds_of(policy, path)
        .iter()
        .any(|k| *k != ChangeKind::Docs)
        || policy
            .metrics
            .files
            .as_ref()
            .is_some_and(|f| f.matches(path))
        || policy.key_rules.iter().any(|r| r.paths.matches(path))
        || policy
            .risk
            .values()
            .any(|r| r.paths.as_ref().is_some_and(|p| p.matches(path)))
}

/// Both paths of a file (a rename out of a governed folder is still a governed change).
fn paths_of(file: &ChangedFile) -> impl Iterator<Item = &str> {
    std::iter::once(file.path.as_str()).chain(file.previous_path.as_deref())
}

/// Classifies every changed file, runs the key rules and compares metrics.
pub fn classify(policy: &Policy, facts: &ChangeFacts) -> Classification {
    let mut result = Classification::default();
    for file in &facts.files {
        let governed = paths_of(file).any(|p| is_governed(policy, p));
        if !governed {
            continue;
        }
        let kinds: BTreeSet<ChangeKind> =
            paths_of(file).flat_map(|p| kinds_of(policy, p)).collect();
        result.edits_policy |= paths_of(file).any(|p| p == POLICY_PATH);
        result
            .files
            .push((file.path.clone(), kinds.into_iter().collect()));
        for rule in &policy.key_rules {
            if rule.paths.matches(&file.path) {
                result.key_hits.extend(key_rule_hits(rule, file, facts));
            }
        }
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

fn key_rule_hits(rule: &KeyRule, file: &ChangedFile, facts: &ChangeFacts) -> Vec<KeyHit> {
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
    let (base, head) = match (base, head) {
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
                let (before, after) = (
                    structured::lookup(&base, key),
                    structured::lookup(&head, key),
                );
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
                vec![(None, Some(&base), Some(&head))]
            } else {
                rule.keys
                    .iter()
                    .map(|k| {
                        (
                            Some(k.as_str()),
                            structured::lookup(&base, k),
                            structured::lookup(&head, k),
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
