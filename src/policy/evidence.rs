//! Evidence: is each document the tier asks for there, and complete?

use std::collections::BTreeSet;

use super::decision::{EvidenceCheck, EvidenceStatus};
use super::facts::{ChangeFacts, FileStatus};
use super::markdown::{SectionState, section_state};
use super::model::{EvidenceRule, FileRequirement, PathSet};

/// Checks one piece of evidence. Evidence that names both files and a PR description section
/// is found in either.
///
/// `changed_matches` are the changed, not removed, files matching the evidence's globs (found
/// by classification in its single pass over the files).
pub fn check(
    rule: &EvidenceRule,
    facts: &ChangeFacts,
    changed_matches: &[String],
) -> EvidenceCheck {
    let from_files = rule
        .paths
        .as_ref()
        .map(|globs| in_files(rule, globs, facts, changed_matches));
    let from_body = rule
        .pr_body_section
        .as_ref()
        .map(|title| in_body(title, &facts.body));
    let status = match (from_files, from_body) {
        (Some(found @ EvidenceStatus::Found { .. }), _)
        | (_, Some(found @ EvidenceStatus::Found { .. })) => found,
        (Some(missing), None) | (None, Some(missing)) => missing,
        (
            Some(EvidenceStatus::Missing { problem: a, fix }),
            Some(EvidenceStatus::Missing { problem: b, .. }),
        ) => EvidenceStatus::Missing {
            problem: format!("{a}; and {b}"),
            fix,
        },
        (None, None) => EvidenceStatus::Missing {
            problem: "the policy says nowhere to look".to_owned(),
            fix: "fix the evidence definition in .governance.toml".to_owned(),
        },
    };
    EvidenceCheck {
        id: rule.id.clone(),
        title: rule.title.clone(),
        status,
    }
}

fn in_body(title: &str, body: &str) -> EvidenceStatus {
    match section_state(body, title) {
        SectionState::Present => EvidenceStatus::Found {
            locations: vec![format!("the description, section \"{title}\"")],
        },
        SectionState::Empty => EvidenceStatus::Missing {
            problem: format!("the description's \"{title}\" section is empty"),
            fix: format!(
                "write the {} under the \"## {title}\" heading of the description",
                title.to_lowercase()
            ),
        },
        SectionState::Missing => EvidenceStatus::Missing {
            problem: format!("the description has no \"{title}\" section"),
            fix: format!("add a \"## {title}\" section to the description"),
        },
    }
}

fn in_files(
    rule: &EvidenceRule,
    globs: &PathSet,
    facts: &ChangeFacts,
    changed_matches: &[String],
) -> EvidenceStatus {
    let removed: BTreeSet<&str> = facts
        .files
        .iter()
        .filter(|f| f.status == FileStatus::Removed)
        .map(|f| f.path.as_str())
        .collect();
    let changed: BTreeSet<&str> = changed_matches.iter().map(String::as_str).collect();
    let mut candidates: BTreeSet<&str> = changed.clone();
    if rule.must == FileRequirement::Exist {
        candidates.extend(
            facts
                .head_paths
                .iter()
                .chain(facts.head_contents.keys())
                .map(String::as_str)
                .filter(|p| !removed.contains(p) && globs.matches(p)),
        );
    }
    let globs_text = globs.globs.join("`, `");
    if candidates.is_empty() {
        let (problem, fix) = match rule.must {
            FileRequirement::Exist => (
                format!("no file matching `{globs_text}` exists"),
                format!(
                    "add the {} (a file matching `{globs_text}`)",
                    rule.title.to_lowercase()
                ),
            ),
            FileRequirement::Change => (
                format!("this change does not update a file matching `{globs_text}`"),
                format!(
                    "update the {} (`{globs_text}`) in this change",
                    rule.title.to_lowercase()
                ),
            ),
        };
        return EvidenceStatus::Missing { problem, fix };
    }
    if rule.sections.is_empty() {
        return EvidenceStatus::Found {
            locations: candidates.into_iter().map(str::to_owned).collect(),
        };
    }
    // Files changed by this PR first: their problems are the ones worth reporting.
    let mut ordered: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|p| changed.contains(p))
        .collect();
    ordered.extend(candidates.iter().copied().filter(|p| !changed.contains(p)));
    let mut first_problem: Option<(String, String)> = None;
    for path in ordered {
        let Some(text) = facts.head_contents.get(path) else {
            first_problem.get_or_insert_with(|| {
                (
                    format!("the contents of `{path}` could not be read"),
                    "re-run the check (`/tollgate recheck`); if it persists, tell the tollgate operators".to_owned(),
                )
            });
            continue;
        };
        match incomplete_section(text, &rule.sections) {
            None => {
                return EvidenceStatus::Found {
                    locations: vec![path.to_owned()],
                };
            }
            Some((title, state)) => {
                first_problem.get_or_insert_with(|| match state {
                    SectionState::Empty => (
                        format!("`{path}`: section \"{title}\" is empty"),
                        format!("write the \"{title}\" section of `{path}`"),
                    ),
                    _ => (
                        format!("`{path}` has no \"{title}\" section"),
                        format!("add a \"## {title}\" section to `{path}`"),
                    ),
                });
            }
        }
    }
    let (problem, fix) = first_problem.unwrap_or_default();
    EvidenceStatus::Missing { problem, fix }
}

/// The first required section that is missing or empty.
fn incomplete_section<'a>(text: &str, sections: &'a [String]) -> Option<(&'a str, SectionState)> {
    sections.iter().find_map(|title| {
        let state = section_state(text, title);
        (state != SectionState::Present).then_some((title.as_str(), state))
    })
}
