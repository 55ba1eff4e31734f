//! `evaluate`: policy + facts → decision. Pure: no I/O, no clock (the time is in the facts).

use std::collections::BTreeSet;

use super::classify::{self, Classification};
use super::commands;
use super::decision::{BlockReason, Decision, EvidenceStatus, Outcome, Signal};
use super::evidence;
use super::facts::ChangeFacts;
use super::model::{Gate, POLICY_PATH, Policy};
use super::risk;
use super::signoff;

/// Decides one change.
pub fn evaluate(policy: &Policy, facts: &ChangeFacts) -> Decision {
    let commands::Commands {
        records: commands,
        bypass,
        ..
    } = commands::read(policy, facts);
    if !policy.governed_branches.matches(&facts.base_ref) {
        return not_governed(
            format!(
                "the base branch `{}` is not governed by this policy",
                facts.base_ref
            ),
            commands,
        );
    }
    let classified = classify::classify(policy, facts);
    if classified.files.is_empty() {
        return not_governed("no governed path changed".to_owned(), commands);
    }
    let reasons = risk::assess(policy, facts, &classified);
    let tier = reasons
        .iter()
        .map(|r| r.tier)
        .max()
        .unwrap_or(super::RiskTier::Low);
    let requirements = policy.tiers.get(tier);

    let evidence: Vec<_> = requirements
        .evidence
        .iter()
        .filter_map(|id| {
            let index = policy.evidence.keys().position(|k| k == id)?;
            let rule = policy.evidence.get(id)?;
            Some(evidence::check(
                rule,
                facts,
                &classified.evidence_files[index],
            ))
        })
        .collect();
    let governed = |path: &str| classify::is_governed(policy, path);
    let sign_offs = signoff::evaluate(policy, requirements, facts, &governed);

    let mut block: Vec<BlockReason> = sign_offs
        .vetoes
        .iter()
        .map(|v| BlockReason::Veto {
            login: v.login.clone(),
        })
        .collect();
    block.extend(evidence.iter().filter_map(|e| match &e.status {
        EvidenceStatus::Missing { problem, .. } => Some(BlockReason::Evidence {
            id: e.id.clone(),
            problem: problem.clone(),
        }),
        EvidenceStatus::Found { .. } => None,
    }));
    let outcome = match (&bypass, block.is_empty(), sign_offs.missing.is_empty()) {
        (Some(bypass), _, _) => bypass.outcome(),
        (None, false, _) => Outcome::Blocked { reasons: block },
        (None, true, false) => Outcome::Waiting {
            on: sign_offs
                .missing
                .iter()
                .map(|m| {
                    let plural = if m.needed == 1 { "" } else { "s" };
                    format!("{} more sign-off{plural} from {}", m.needed, m.role)
                })
                .collect(),
        },
        (None, true, true) => Outcome::Passed,
    };
    Decision {
        tier: Some(tier),
        gates: gates(&classified, &reasons, bypass.is_some()),
        classified: classified
            .files
            .iter()
            .map(|f| (f.path.clone(), f.kinds.clone()))
            .collect(),
        metrics: classified.metrics.clone(),
        notes: notes(
            &classified,
            requirements.defined_by != tier,
            tier,
            requirements.defined_by,
        ),
        reasons,
        evidence,
        sign_offs: sign_offs.slots,
        missing_roles: sign_offs.missing,
        ignored_approvals: sign_offs.ignored,
        vetoes: sign_offs.vetoes,
        commands,
        observation_hours: requirements.observation_hours,
        outcome,
    }
}

fn not_governed(reason: String, commands: Vec<super::decision::CommandRecord>) -> Decision {
    Decision {
        tier: None,
        reasons: Vec::new(),
        gates: Vec::new(),
        classified: Vec::new(),
        metrics: Vec::new(),
        evidence: Vec::new(),
        sign_offs: Vec::new(),
        missing_roles: Vec::new(),
        ignored_approvals: Vec::new(),
        vetoes: Vec::new(),
        commands,
        observation_hours: 0,
        notes: Vec::new(),
        outcome: Outcome::NotGoverned { reason },
    }
}

fn gates(
    classified: &Classification,
    reasons: &[super::decision::TierReason],
    bypassed: bool,
) -> Vec<Gate> {
    let mut gates: BTreeSet<Gate> = classified
        .files
        .iter()
        .flat_map(|f| f.kinds.iter().filter_map(|k| k.gate()))
        .chain(classified.key_hits.iter().filter_map(|h| h.kind.gate()))
        .collect();
    if reasons
        .iter()
        .any(|r| matches!(r.signal, Signal::MetricShift { .. }))
    {
        gates.insert(Gate::Model);
    }
    if bypassed {
        gates.insert(Gate::Emergency);
    }
    gates.into_iter().collect()
}

fn notes(
    classified: &Classification,
    inherited: bool,
    tier: super::RiskTier,
    defined_by: super::RiskTier,
) -> Vec<String> {
    let mut notes = Vec::new();
    if classified.edits_policy {
        notes.push(format!(
            "This change edits {POLICY_PATH}. It is judged by the policy at the base commit; \
             the new policy applies only once merged."
        ));
    }
    for metric in classified
        .metrics
        .iter()
        .filter(|m| m.base.is_none() && m.head.is_some())
    {
        notes.push(format!(
            "No baseline for metric `{}`: treated as a new model (the tier comes from the other signals).",
            metric.metric
        ));
    }
    if inherited {
        notes.push(format!(
            "The policy defines no [tiers.{tier}]; the requirements of [tiers.{defined_by}] apply."
        ));
    }
    notes
}
