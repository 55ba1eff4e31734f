//! `tollgate check-config` and `tollgate explain`: the policy engine, offline.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::policy::decision::EvidenceStatus;
use crate::policy::{ChangeFacts, Decision, Outcome, Policy, RiskTier, evaluate, parse_policy};

/// Reads and validates a policy file, or prints its errors (`path:line:col: message`).
fn load(path: &Path) -> Result<Policy, String> {
    let source = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
    parse_policy(&source).map_err(|errors| errors.render(&path.display().to_string()))
}

/// `tollgate check-config [PATH]`.
pub fn check_config(path: &Path) -> ExitCode {
    match load(path) {
        Ok(policy) => {
            println!("{}: valid", path.display());
            print!("{}", summary(&policy));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// A short account of what a valid policy asks for.
pub fn summary(policy: &Policy) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  governed branches: {}",
        policy.governed_branches.globs.join(", ")
    );
    let roles: Vec<String> = policy
        .roles
        .iter()
        .map(|(role, members)| format!("{role} ({})", members.len()))
        .collect();
    let _ = writeln!(out, "  roles: {}", roles.join(", "));
    let mut gates: Vec<&str> = policy
        .classify
        .iter()
        .filter_map(|c| c.kind.gate())
        .map(|g| match g {
            crate::policy::Gate::Data => "data",
            crate::policy::Gate::Model => "model",
            crate::policy::Gate::Deployment => "deployment",
            crate::policy::Gate::Governance => "governance",
            crate::policy::Gate::Emergency => "emergency",
        })
        .collect();
    gates.push("governance");
    if policy.emergency.is_some() {
        gates.push("emergency");
    }
    gates.sort_unstable();
    gates.dedup();
    let _ = writeln!(out, "  gates: {}", gates.join(", "));
    let _ = writeln!(
        out,
        "  classify: {} rule(s), key rules: {}",
        policy.classify.len(),
        policy.key_rules.len()
    );
    for tier in RiskTier::ALL.iter().rev() {
        let t = policy.tiers.get(*tier);
        let sign_offs: Vec<String> = t
            .sign_offs
            .iter()
            .map(|s| {
                if s.count == 1 {
                    s.role.0.clone()
                } else {
                    format!("{} ×{}", s.role, s.count)
                }
            })
            .collect();
        let inherited = if t.defined_by == *tier {
            String::new()
        } else {
            format!(" (as [tiers.{}])", t.defined_by)
        };
        let _ = writeln!(
            out,
            "  {tier}{inherited}: sign-offs [{}], evidence [{}], observation {} h, stale on push: {}",
            sign_offs.join(", "),
            t.evidence.join(", "),
            t.observation_hours,
            if t.stale_on_push { "yes" } else { "no" }
        );
    }
    match &policy.emergency {
        Some(e) => {
            let roles: Vec<&str> = e.approvers.iter().map(|r| r.0.as_str()).collect();
            let _ = writeln!(
                out,
                "  emergency bypass: by {}, ticket `{}`, expires after {} h, review within {} h{}",
                roles.join(", "),
                e.ticket_pattern,
                e.expires_hours,
                e.review_within_hours,
                if e.overdue_review_blocks_bypass {
                    "; none while a review is overdue"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(out, "  emergency bypass: not allowed");
        }
    }
    if let Some(d) = &policy.deployment {
        let _ = writeln!(
            out,
            "  deployment gate: {}{}",
            d.environments.join(", "),
            d.canary
                .as_ref()
                .map(|c| format!(", after the tier's observation window on {c}"))
                .unwrap_or_default()
        );
    }
    out
}

/// `tollgate explain --policy P --facts F [--json]`.
pub fn explain(policy_path: &Path, facts_path: &Path, json: bool) -> ExitCode {
    let policy = match load(policy_path) {
        Ok(policy) => policy,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let facts: ChangeFacts = match std::fs::read_to_string(facts_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(facts) => facts,
        Err(error) => {
            eprintln!("{}: {error}", facts_path.display());
            return ExitCode::FAILURE;
        }
    };
    let decision = evaluate(&policy, &facts);
    if json {
        match serde_json::to_string_pretty(&decision) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("cannot render the decision: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", render_text(&decision));
    }
    ExitCode::SUCCESS
}

/// The decision for a terminal.
pub fn render_text(decision: &Decision) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "outcome: {}", outcome_line(&decision.outcome));
    let Some(tier) = decision.tier else {
        return out;
    };
    let _ = writeln!(out, "tier: {tier}");
    for reason in &decision.reasons {
        let _ = writeln!(out, "  - {}: {}", reason.tier, reason.signal.describe());
    }
    if !decision.gates.is_empty() {
        let gates: Vec<String> = decision
            .gates
            .iter()
            .map(|g| format!("{g:?}").to_lowercase())
            .collect();
        let _ = writeln!(out, "gates: {}", gates.join(", "));
    }
    if !decision.evidence.is_empty() {
        let _ = writeln!(out, "evidence:");
        for e in &decision.evidence {
            match &e.status {
                EvidenceStatus::Found { locations } => {
                    let _ = writeln!(out, "  [x] {}: {}", e.title, locations.join(", "));
                }
                EvidenceStatus::Missing { problem, fix } => {
                    let _ = writeln!(out, "  [ ] {}: {problem} (fix: {fix})", e.title);
                }
            }
        }
    }
    if !decision.sign_offs.is_empty() {
        let _ = writeln!(out, "sign-offs:");
        for slot in &decision.sign_offs {
            match &slot.filled_by {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "  [x] {}: {} at {} on {}",
                        slot.role,
                        s.login,
                        s.at.to_rfc3339(),
                        crate::event::short_sha(&s.commit)
                    );
                }
                None => {
                    let _ = writeln!(out, "  [ ] {}", slot.role);
                }
            }
        }
    }
    for missing in &decision.missing_roles {
        let who = if missing.eligible.is_empty() {
            "no known eligible member".to_owned()
        } else {
            missing.eligible.join(", ")
        };
        let _ = writeln!(
            out,
            "missing: {} × {} (eligible: {who})",
            missing.needed, missing.role
        );
    }
    for ignored in &decision.ignored_approvals {
        let _ = writeln!(
            out,
            "ignored approval: {} ({})",
            ignored.login,
            ignored.reason.describe()
        );
    }
    for veto in &decision.vetoes {
        let _ = writeln!(
            out,
            "veto: {} ({}) requested changes",
            veto.login,
            veto.roles.join(", ")
        );
    }
    for command in &decision.commands {
        let verdict = if command.honoured {
            "honoured"
        } else {
            "refused"
        };
        let _ = writeln!(
            out,
            "command by {}: `{}` {verdict}: {}",
            command.author, command.command, command.note
        );
    }
    if decision.observation_hours > 0 {
        let _ = writeln!(out, "observation window: {} h", decision.observation_hours);
    }
    for note in &decision.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::NotGoverned { reason } => format!("not governed ({reason})"),
        Outcome::Passed => "passed".to_owned(),
        Outcome::Waiting { on } => format!("waiting on {}", on.join("; ")),
        Outcome::Blocked { reasons } => {
            let why: Vec<String> = reasons
                .iter()
                .map(|r| match r {
                    crate::policy::decision::BlockReason::Veto { login } => {
                        format!("veto by {login}")
                    }
                    crate::policy::decision::BlockReason::Evidence { problem, .. } => {
                        problem.clone()
                    }
                })
                .collect();
            format!("blocked: {}", why.join("; "))
        }
        Outcome::Bypassed {
            by,
            ticket,
            expires_at,
            ..
        } => {
            format!(
                "bypassed by {by} for {ticket} until {}",
                expires_at.to_rfc3339()
            )
        }
    }
}
