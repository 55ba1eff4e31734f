//! From a decision to the records it calls for. Each record has a key naming what it states;
//! a state already on record for the change is not recorded again, so redeliveries and
//! repeated evaluations add nothing, while every change of state is recorded once.

use super::record::{DecisionRecord, RECORD_VERSION, RecordKind};
use crate::policy::Decision;
use crate::policy::commands::COMMAND_PREFIX;
use crate::policy::decision::{EvidenceStatus, Outcome};

/// Record keys of commands start with this.
pub const COMMAND_KEY_PREFIX: &str = "command:";

/// The head each command was first judged for, by (author, comment time in ms), from the
/// record keys of a change. A command stays bound to that head: a later push, even of a
/// commit with a back-dated committer date, is not covered by it.
pub fn pinned_heads(keys: &[String]) -> std::collections::HashMap<(String, i64), String> {
    let mut pinned = std::collections::HashMap::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(COMMAND_KEY_PREFIX) else {
            continue;
        };
        // author:at_ms:head:honoured — logins and shas contain no colon.
        let parts: Vec<&str> = rest.split(':').collect();
        if let [author, at, head, _honoured, ..] = parts.as_slice()
            && let Ok(at) = at.parse::<i64>()
        {
            pinned
                .entry(((*author).to_owned(), at))
                .or_insert_with(|| (*head).to_owned());
        }
    }
    pinned
}

/// Where a decision was made.
#[derive(Debug, Clone)]
pub struct Context {
    /// `github` or `gitlab`.
    pub forge: String,
    /// `owner/name`.
    pub repo: String,
    /// Pull/merge request number.
    pub number: u64,
    /// Head commit.
    pub head_sha: String,
    /// Base commit.
    pub base_sha: String,
    /// Identifies the policy applied (a hash of its text).
    pub policy_sha: Option<String>,
    /// The delivery that led to the evaluation, if known.
    pub delivery: Option<String>,
    /// Now, in epoch milliseconds.
    pub time_ms: i64,
}

impl Context {
    fn record(&self, decision: &Decision, kind: RecordKind, detail: String) -> DecisionRecord {
        DecisionRecord {
            version: RECORD_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            time_ms: self.time_ms,
            forge: self.forge.clone(),
            repo: self.repo.clone(),
            repo_seq: 0,
            number: self.number,
            head_sha: self.head_sha.clone(),
            base_sha: self.base_sha.clone(),
            policy_sha: self.policy_sha.clone(),
            kind,
            tier: decision.tier.map(|t| t.as_str().to_owned()),
            reasons: recorded_reasons(decision),
            actor: None,
            role: None,
            outcome: decision.outcome.name().to_owned(),
            detail,
            delivery: self.delivery.clone(),
            prev_hash: String::new(),
        }
    }
}

/// The most tier signals written into one record (a 3,000-file change must not make every
/// record, and the comment that carries them, enormous); the count of the rest follows.
const MAX_RECORDED_REASONS: usize = 10;

fn recorded_reasons(decision: &Decision) -> Vec<String> {
    let mut reasons: Vec<String> = decision
        .reasons
        .iter()
        .take(MAX_RECORDED_REASONS)
        .map(|r| format!("{}: {}", r.tier, r.signal.describe()))
        .collect();
    let rest = decision.reasons.len().saturating_sub(MAX_RECORDED_REASONS);
    if rest > 0 {
        reasons.push(format!("… and {rest} more signals"));
    }
    reasons
}

/// The records a decision calls for, with their keys, in a readable order.
pub fn records_for(decision: &Decision, context: &Context) -> Vec<(String, DecisionRecord)> {
    let mut out = Vec::new();
    for slot in &decision.sign_offs {
        if let Some(by) = &slot.filled_by {
            let mut record = context.record(
                decision,
                RecordKind::SignOffCounted,
                format!("{} signed off as {} on {}", by.login, slot.role, by.commit),
            );
            record.actor = Some(by.login.clone());
            record.role = Some(slot.role.clone());
            out.push((
                format!("sign_off:{}:{}:{}", slot.role, by.login, by.commit),
                record,
            ));
        }
    }
    for ignored in &decision.ignored_approvals {
        let why = ignored.reason.describe();
        let mut record = context.record(
            decision,
            RecordKind::ApprovalIgnored,
            format!("approval by {} ignored: {why}", ignored.login),
        );
        record.actor = Some(ignored.login.clone());
        out.push((
            format!("ignored:{}:{why}:{}", ignored.login, context.head_sha),
            record,
        ));
    }
    for veto in &decision.vetoes {
        let mut record = context.record(
            decision,
            RecordKind::Veto,
            format!(
                "{} ({}) requested changes",
                veto.login,
                veto.roles.join(", ")
            ),
        );
        record.actor = Some(veto.login.clone());
        record.role = veto.roles.first().cloned();
        out.push((
            format!("veto:{}:{}", veto.login, veto.at.timestamp_millis()),
            record,
        ));
    }
    for evidence in &decision.evidence {
        let (kind, state, detail) = match &evidence.status {
            EvidenceStatus::Found { locations } => (
                RecordKind::EvidenceFound,
                "found",
                format!("{} found: {}", evidence.title, locations.join(", ")),
            ),
            EvidenceStatus::Missing { problem, .. } => (
                RecordKind::EvidenceMissing,
                "missing",
                format!("{} missing: {problem}", evidence.title),
            ),
        };
        let record = context.record(decision, kind, detail);
        out.push((
            format!("evidence:{}:{state}:{}", evidence.id, context.head_sha),
            record,
        ));
    }
    let keys = command_keys(&decision.commands);
    for (command, key) in decision.commands.iter().zip(keys) {
        let kind = match (command_name(&command.command), command.honoured) {
            (Some("bypass"), true) => RecordKind::BypassHonoured,
            (Some("bypass"), false) => RecordKind::BypassRefused,
            (Some("rollback"), true) => RecordKind::RollbackRequested,
            (Some("rollback"), false) => RecordKind::RollbackRefused,
            _ => continue,
        };
        let mut record = context.record(
            decision,
            kind,
            format!("`{}`: {}", command.command, command.note),
        );
        record.actor = Some(command.author.clone());
        out.push((key, record));
    }
    let outcome_detail = match &decision.outcome {
        Outcome::Waiting { on } => format!("waiting on {}", on.join("; ")),
        Outcome::Bypassed {
            by,
            ticket,
            review_due,
            ..
        } => {
            format!(
                "bypassed by {by} for {ticket}; post-incident review due {}",
                review_due.to_rfc3339()
            )
        }
        other => other.name().replace('_', " "),
    };
    let tier = decision.tier.map_or("none", |t| t.as_str());
    let record = context.record(decision, RecordKind::OutcomeChanged, outcome_detail.clone());
    out.push((
        format!(
            "outcome:{}:{tier}:{outcome_detail}:{}",
            decision.outcome.name(),
            context.head_sha
        ),
        record,
    ));
    out
}

/// The record keys of commands, in order. A key pins its command to the head it was first
/// judged for (see [`pinned_heads`]); a command other than `bypass` adds its name, and a second
/// command of the same kind in one comment its position, so that no two commands share a key.
pub fn command_keys(commands: &[crate::policy::decision::CommandRecord]) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    commands
        .iter()
        .map(|command| {
            let mut key = format!(
                "{}{}:{}:{}:{}",
                COMMAND_KEY_PREFIX,
                command.author,
                command.at.timestamp_millis(),
                command.for_head,
                command.honoured
            );
            match command_name(&command.command) {
                Some("bypass") => {}
                Some(name) => key = format!("{key}:{name}"),
                None => key.push_str(":none"),
            }
            let n = seen.entry(key.clone()).or_default();
            *n += 1;
            if *n > 1 {
                key = format!("{key}:{n}");
            }
            key
        })
        .collect()
}

/// The command word of a command line (`bypass` in `/tollgate bypass INC-1 why`).
pub fn command_name(line: &str) -> Option<&str> {
    line.strip_prefix(COMMAND_PREFIX)?.split_whitespace().next()
}

/// A record of a step that is not a decision of the policy (a merge under bypass, a review
/// opened, reminded or closed, a rollback opened, a policy that cannot be used): it carries no
/// tier or reasons; its outcome names the step.
pub fn incident_record(
    context: &Context,
    kind: RecordKind,
    actor: Option<&str>,
    outcome: &str,
    detail: String,
) -> DecisionRecord {
    DecisionRecord {
        version: RECORD_VERSION,
        id: uuid::Uuid::new_v4().to_string(),
        time_ms: context.time_ms,
        forge: context.forge.clone(),
        repo: context.repo.clone(),
        repo_seq: 0,
        number: context.number,
        head_sha: context.head_sha.clone(),
        base_sha: context.base_sha.clone(),
        policy_sha: context.policy_sha.clone(),
        kind,
        tier: None,
        reasons: Vec::new(),
        actor: actor.map(str::to_owned),
        role: None,
        outcome: outcome.to_owned(),
        detail,
        delivery: context.delivery.clone(),
        prev_hash: String::new(),
    }
}

/// The record for a policy that could not be used.
pub fn policy_invalid(context: &Context, errors: &str) -> (String, DecisionRecord) {
    // Not a decision of the policy either (there is none to apply): no tier, no reasons.
    let record = incident_record(
        context,
        RecordKind::PolicyInvalid,
        None,
        "blocked",
        errors.to_owned(),
    );
    (
        format!("policy_invalid:{}:{}", context.base_sha, context.head_sha),
        record,
    )
}

#[cfg(test)]
mod tests {
    use super::pinned_heads;

    #[test]
    fn a_command_stays_pinned_to_the_first_head_it_was_judged_for() {
        let keys = vec![
            "sign_off:approver:lena:abc".to_owned(),
            "command:olga:1764000000000:head1:true".to_owned(),
            "command:olga:1764000000000:head2:false".to_owned(),
            "command:dana:1764000060000:head1:false".to_owned(),
        ];
        let pinned = pinned_heads(&keys);
        assert_eq!(pinned[&("olga".to_owned(), 1_764_000_000_000)], "head1");
        assert_eq!(pinned[&("dana".to_owned(), 1_764_000_060_000)], "head1");
        assert_eq!(pinned.len(), 2);
    }
}
