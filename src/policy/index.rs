//! One index over every path glob of a policy, so that classifying a changed file costs a
//! handful of glob tests instead of one per rule.
//!
//! A glob set alone is not enough: globset tests every glob that shares a path's extension
//! one by one (`proj1/models/**/*.onnx` … `proj40/models/**/*.onnx` are 40 regex runs for
//! each `.onnx` file). Most policy globs start with literal folders, so globs are bucketed by
//! that literal folder prefix and a path only tries the buckets of its own ancestor folders;
//! the few globs that start with a wildcard (`**/*.md`) share one glob set.

use std::collections::{BTreeMap, HashMap};

use globset::{Candidate, GlobMatcher, GlobSet, GlobSetBuilder};

use super::model::{
    ChangeKind, ClassifyRule, EvidenceRule, KeyRule, MetricsPolicy, POLICY_PATH, PathSet, RiskRule,
    RiskTier,
};

/// What one glob of the index belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobOwner {
    /// A `[[classify]]` rule of this kind.
    Classify(ChangeKind),
    /// `[metrics] files`.
    Metrics,
    /// The key rule at this index.
    KeyRule(usize),
    /// The sensitive paths of this tier's risk rule.
    RiskPath(RiskTier),
    /// The files of the evidence at this index (in id order).
    Evidence(usize),
}

/// What the policy says about one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathMatch {
    /// Kinds from `[[classify]]` (plus governance_config for the policy file), sorted.
    pub kinds: Vec<ChangeKind>,
    /// Whether it is a metrics file.
    pub metrics: bool,
    /// Indices of the key rules that read it.
    pub key_rules: Vec<usize>,
    /// Tiers whose risk rule calls it sensitive.
    pub sensitive_in: Vec<RiskTier>,
    /// Indices (in id order) of the evidence definitions whose files it matches.
    pub evidence: Vec<usize>,
}

impl PathMatch {
    /// Whether a change to this path is governed: it has a kind other than docs, or the
    /// policy reads it or calls it sensitive. Docs alone never govern a change nor make an
    /// approval stale.
    pub fn governed(&self) -> bool {
        self.kinds.iter().any(|k| *k != ChangeKind::Docs)
            || self.metrics
            || !self.key_rules.is_empty()
            || !self.sensitive_in.is_empty()
    }

    fn add(&mut self, owner: GlobOwner) {
        match owner {
            GlobOwner::Classify(kind) => self.kinds.push(kind),
            GlobOwner::Metrics => self.metrics = true,
            GlobOwner::KeyRule(i) => self.key_rules.push(i),
            GlobOwner::RiskPath(tier) => self.sensitive_in.push(tier),
            GlobOwner::Evidence(i) => self.evidence.push(i),
        }
    }
}

/// Every path glob of a policy.
#[derive(Debug, Clone)]
pub struct PathIndex {
    /// Literal folder prefix (`proj1/models`) → globs that start with it.
    by_prefix: HashMap<String, Vec<(GlobMatcher, GlobOwner)>>,
    /// Globs whose first folder is already a pattern (`**/*.md`, `proj*/train/*.yaml`).
    rest: GlobSet,
    rest_owners: Vec<GlobOwner>,
}

/// The folders of a glob before its first pattern character, e.g. `proj1/models` for
/// `proj1/models/**/*.onnx`; empty when the first folder is a pattern.
fn literal_prefix(glob: &str) -> &str {
    let mut end = 0;
    for (i, c) in glob.char_indices() {
        match c {
            '*' | '?' | '[' | '{' | '\\' => break,
            '/' => end = i,
            _ => {}
        }
    }
    &glob[..end]
}

impl PathIndex {
    /// Builds the index from the policy's rules.
    pub fn build(
        classify: &[ClassifyRule],
        metrics: &MetricsPolicy,
        key_rules: &[KeyRule],
        risk: &BTreeMap<RiskTier, RiskRule>,
        evidence: &BTreeMap<String, EvidenceRule>,
    ) -> Result<Self, globset::Error> {
        let mut owned: Vec<(&PathSet, GlobOwner)> = Vec::new();
        owned.extend(
            classify
                .iter()
                .map(|r| (&r.paths, GlobOwner::Classify(r.kind))),
        );
        owned.extend(metrics.files.iter().map(|f| (f, GlobOwner::Metrics)));
        owned.extend(
            key_rules
                .iter()
                .enumerate()
                .map(|(i, r)| (&r.paths, GlobOwner::KeyRule(i))),
        );
        owned.extend(
            risk.iter()
                .filter_map(|(tier, r)| r.paths.as_ref().map(|p| (p, GlobOwner::RiskPath(*tier)))),
        );
        owned.extend(
            evidence
                .values()
                .enumerate()
                .filter_map(|(i, r)| r.paths.as_ref().map(|p| (p, GlobOwner::Evidence(i)))),
        );

        let mut by_prefix: HashMap<String, Vec<(GlobMatcher, GlobOwner)>> = HashMap::new();
        let mut rest = GlobSetBuilder::new();
        let mut rest_owners = Vec::new();
        for (paths, owner) in owned {
            for glob in &paths.compiled {
                let prefix = literal_prefix(glob.glob());
                if prefix.is_empty() {
                    rest.add(glob.clone());
                    rest_owners.push(owner);
                } else {
                    by_prefix
                        .entry(prefix.to_owned())
                        .or_default()
                        .push((glob.compile_matcher(), owner));
                }
            }
        }
        Ok(PathIndex {
            by_prefix,
            rest: rest.build()?,
            rest_owners,
        })
    }

    /// Everything the policy says about `path`.
    pub fn lookup(&self, path: &str) -> PathMatch {
        let candidate = Candidate::new(path);
        let mut found = PathMatch::default();
        // Each ancestor folder of the path: `a`, `a/b`, … (not the path itself).
        for (i, _) in path.match_indices('/') {
            if let Some(globs) = self.by_prefix.get(&path[..i]) {
                for (matcher, owner) in globs {
                    if matcher.is_match_candidate(&candidate) {
                        found.add(*owner);
                    }
                }
            }
        }
        if !self.rest_owners.is_empty() {
            for hit in self.rest.matches_candidate(&candidate) {
                found.add(self.rest_owners[hit]);
            }
        }
        if path == POLICY_PATH {
            found.kinds.push(ChangeKind::GovernanceConfig);
        }
        found.kinds.sort_unstable();
        found.kinds.dedup();
        found.key_rules.sort_unstable();
        found.key_rules.dedup();
        found.sensitive_in.sort_unstable();
        found.sensitive_in.dedup();
        found.evidence.sort_unstable();
        found.evidence.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::literal_prefix;

    #[test]
    fn literal_prefixes_stop_at_the_first_pattern_folder() {
        assert_eq!(literal_prefix("proj1/models/**/*.onnx"), "proj1/models");
        assert_eq!(literal_prefix("models/*/MODEL_CARD.md"), "models");
        assert_eq!(literal_prefix("eval/metrics.json"), "eval");
        assert_eq!(literal_prefix("data/sources/**"), "data/sources");
        assert_eq!(literal_prefix("**/*.md"), "");
        assert_eq!(literal_prefix("proj*/train/*.yaml"), "");
        assert_eq!(literal_prefix("README.md"), "");
        assert_eq!(literal_prefix("a/b[12]/c"), "a");
    }
}
