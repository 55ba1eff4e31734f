//! What a forge must read for the policy engine, decided from the policy and the change alone
//! (pure, shared by GitHub and GitLab): which files at the base and head, whether the base tree
//! is needed for evidence outside the change, and whose permissions and team memberships
//! matter.

use std::collections::BTreeSet;

use crate::policy::Policy;
use crate::policy::facts::{ChangeFacts, ChangedFile, FileStatus};
use crate::policy::model::{FileRequirement, Member};

/// The most evidence documents read from outside the change for one evaluation.
pub const MAX_EVIDENCE_DOCUMENTS: usize = 10;

/// Files to read for one change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPlan {
    /// Metric and key-rule files at the base (their previous path when renamed).
    pub base: BTreeSet<String>,
    /// Metric, key-rule and evidence documents at the head.
    pub head: BTreeSet<String>,
    /// Evidence that only has to exist is not in the change: list the base tree (a file the
    /// change does not touch is at the head unchanged) with [`untouched_evidence`].
    pub needs_base_tree: bool,
}

/// The files the policy looks into, from the changed files.
pub fn read_plan(policy: &Policy, files: &[ChangedFile]) -> ReadPlan {
    let mut plan = ReadPlan::default();
    for file in files {
        let found = policy.index.lookup(&file.path);
        let structured = found.metrics || !found.key_rules.is_empty();
        let documents = found.evidence.iter().any(|i| {
            policy
                .evidence
                .values()
                .nth(*i)
                .is_some_and(|e| !e.sections.is_empty())
        });
        if structured && file.status != FileStatus::Added {
            plan.base.insert(
                file.previous_path
                    .clone()
                    .unwrap_or_else(|| file.path.clone()),
            );
        }
        if (structured || documents) && file.status != FileStatus::Removed {
            plan.head.insert(file.path.clone());
        }
    }
    plan.needs_base_tree = policy.evidence.values().any(|e| {
        e.paths.is_some()
            && e.must == FileRequirement::Exist
            && !files
                .iter()
                .any(|f| e.paths.as_ref().is_some_and(|p| p.matches(&f.path)))
    });
    plan
}

/// Evidence found in the base tree outside the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UntouchedEvidence {
    /// Paths that exist at the head (unchanged) and match an evidence glob.
    pub paths: BTreeSet<String>,
    /// Those whose sections must be checked: read them at the base (at most
    /// [`MAX_EVIDENCE_DOCUMENTS`]).
    pub documents: BTreeSet<String>,
}

/// Which paths of the base tree are evidence the change does not touch.
pub fn untouched_evidence(
    policy: &Policy,
    files: &[ChangedFile],
    base_tree: &[String],
) -> UntouchedEvidence {
    let touched: BTreeSet<&str> = files
        .iter()
        .flat_map(|f| std::iter::once(f.path.as_str()).chain(f.previous_path.as_deref()))
        .collect();
    let mut found = UntouchedEvidence::default();
    for path in base_tree {
        if touched.contains(path.as_str()) {
            continue;
        }
        for rule in policy.evidence.values() {
            if rule.paths.as_ref().is_some_and(|p| p.matches(path)) {
                found.paths.insert(path.clone());
                if !rule.sections.is_empty() && found.documents.len() < MAX_EVIDENCE_DOCUMENTS {
                    found.documents.insert(path.clone());
                }
            }
        }
    }
    found
}

/// The people whose permissions matter: reviewers (approvals, vetoes) and the authors of
/// commands.
pub fn people_involved(facts: &ChangeFacts) -> BTreeSet<String> {
    let mut people: BTreeSet<String> = facts.reviews.iter().map(|r| r.reviewer.clone()).collect();
    people.extend(
        facts
            .comments
            .iter()
            .filter(|c| c.body.contains(crate::policy::commands::COMMAND_PREFIX))
            .map(|c| c.author.clone()),
    );
    people
}

/// The teams (`@org/team`, GitLab `@group/subgroup`) the policy's roles name.
pub fn policy_teams(policy: &Policy) -> BTreeSet<&str> {
    policy
        .roles
        .values()
        .flatten()
        .filter_map(|m| match m {
            Member::Team(team) => Some(team.as_str()),
            Member::User(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    const POLICY: &str = r#"
version = 1
[roles]
approver = ["@ml/leads", "dana"]
[[classify]]
paths = ["models/**"]
kind = "model_artifact"
[metrics]
files = ["eval/metrics.json"]
[evidence.model_card]
paths = ["models/**/MODEL_CARD.md"]
must = "change"
sections = ["Intended use"]
[evidence.runbook]
paths = ["docs/runbook.md"]
must = "exist"
[tiers.low]
sign_offs = []
"#;

    fn file(path: &str, status: FileStatus, previous: Option<&str>) -> ChangedFile {
        ChangedFile {
            path: path.to_owned(),
            status,
            previous_path: previous.map(str::to_owned),
            additions: 1,
            deletions: 0,
        }
    }

    #[test]
    fn reads_structured_files_on_both_sides_and_documents_at_the_head() {
        let policy = parse_policy(POLICY).unwrap();
        let files = [
            file("eval/metrics.json", FileStatus::Modified, None),
            file("models/fraud/MODEL_CARD.md", FileStatus::Added, None),
            file("models/fraud/model.onnx", FileStatus::Added, None),
        ];
        let plan = read_plan(&policy, &files);
        assert_eq!(plan.base, BTreeSet::from(["eval/metrics.json".to_owned()]));
        assert_eq!(
            plan.head,
            BTreeSet::from([
                "eval/metrics.json".to_owned(),
                "models/fraud/MODEL_CARD.md".to_owned()
            ])
        );
        // The runbook only has to exist and is not in the change: the tree is needed.
        assert!(plan.needs_base_tree);
        let tree = [
            "docs/runbook.md".to_owned(),
            "models/fraud/MODEL_CARD.md".to_owned(),
            "models/old/MODEL_CARD.md".to_owned(),
        ];
        let found = untouched_evidence(&policy, &files, &tree);
        assert_eq!(
            found.paths,
            BTreeSet::from([
                "docs/runbook.md".to_owned(),
                "models/old/MODEL_CARD.md".to_owned()
            ])
        );
        assert_eq!(
            found.documents,
            BTreeSet::from(["models/old/MODEL_CARD.md".to_owned()])
        );
        assert_eq!(policy_teams(&policy), BTreeSet::from(["@ml/leads"]));
    }

    #[test]
    fn a_renamed_metrics_file_is_read_under_its_old_name_and_a_removed_one_not_at_the_head() {
        let policy = parse_policy(POLICY).unwrap();
        let renamed = [file(
            "eval/metrics.json",
            FileStatus::Renamed,
            Some("eval/old.json"),
        )];
        let plan = read_plan(&policy, &renamed);
        assert_eq!(plan.base, BTreeSet::from(["eval/old.json".to_owned()]));
        let removed = [file("eval/metrics.json", FileStatus::Removed, None)];
        let plan = read_plan(&policy, &removed);
        assert!(plan.head.is_empty());
        assert_eq!(plan.base, BTreeSet::from(["eval/metrics.json".to_owned()]));
    }
}
