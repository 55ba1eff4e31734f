//! `/tollgate …` commands in comments. Only `bypass` changes a decision, and `rollback` asks
//! for a revert of a merged change; every command, honoured or refused, is recorded with the
//! reason.

use chrono::{DateTime, Duration, Utc};

use super::decision::{CommandRecord, Outcome};
use super::facts::{ChangeFacts, Comment};
use super::model::{EmergencyPolicy, Policy};
use super::signoff::roles_of;

/// The prefix every command starts with.
pub const COMMAND_PREFIX: &str = "/tollgate";

/// A bypass that was honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bypass {
    /// Who.
    pub by: String,
    /// Ticket.
    pub ticket: String,
    /// Reason.
    pub reason: String,
    /// Until when it counts.
    pub expires_at: DateTime<Utc>,
    /// When the post-incident review is due.
    pub review_due: DateTime<Utc>,
}

impl Bypass {
    /// The outcome it leads to.
    pub fn outcome(&self) -> Outcome {
        Outcome::Bypassed {
            by: self.by.clone(),
            ticket: self.ticket.clone(),
            reason: self.reason.clone(),
            expires_at: self.expires_at,
            review_due: self.review_due,
        }
    }
}

/// A rollback of a merged change that was honoured: the forge layer opens the revert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// Who asked (a holder of an emergency role).
    pub by: String,
    /// When (identifies the request together with `by`).
    pub at: DateTime<Utc>,
    /// The incident ticket.
    pub ticket: String,
    /// Why (may be empty: the ticket says it).
    pub reason: String,
}

/// What the commands in a change's comments amount to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    /// Every command, honoured or refused, in comment order.
    pub records: Vec<CommandRecord>,
    /// The latest valid bypass.
    pub bypass: Option<Bypass>,
    /// Every honoured rollback request, oldest first.
    pub rollbacks: Vec<Rollback>,
}

/// The commands tollgate knows, for messages.
const KNOWN: &str = "bypass, recheck, rollback";

/// Reads every command in the comments.
pub fn read(policy: &Policy, facts: &ChangeFacts) -> Commands {
    let mut records = Vec::new();
    let mut bypass = None;
    let mut rollbacks = Vec::new();
    for comment in &facts.comments {
        for line in comment.body.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix(COMMAND_PREFIX) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
                continue; // `/tollgateway` is not a command
            }
            let words: Vec<&str> = rest.split_whitespace().collect();
            let result = match words.first().copied() {
                Some("bypass") => check_bypass(policy, facts, comment, &words[1..]).map(|b| {
                    let note =
                        format!("bypass until {}", b.expires_at.format("%Y-%m-%d %H:%M UTC"));
                    bypass = Some(b);
                    note
                }),
                Some("rollback") => check_rollback(policy, facts, comment, &words[1..]).map(|r| {
                    let note = format!("rollback requested under {}", r.ticket);
                    rollbacks.push(r);
                    note
                }),
                Some("recheck") => Ok("re-evaluated".to_owned()),
                Some(other) => Err(format!("unknown command `{other}`; commands: {KNOWN}")),
                None => Err(format!("no command given; commands: {KNOWN}")),
            };
            let (honoured, note) = match result {
                Ok(note) => (true, note),
                Err(note) => (false, note),
            };
            records.push(CommandRecord {
                author: comment.author.clone(),
                at: comment.at,
                command: line.to_owned(),
                for_head: comment.head_sha.clone(),
                honoured,
                note,
            });
        }
    }
    Commands {
        records,
        bypass,
        rollbacks,
    }
}

/// Who may use the emergency commands, or why nobody may: the policy's emergency section,
/// an unedited comment, an emergency role with write access, and no overdue review blocking.
fn emergency_holder<'p>(
    policy: &'p Policy,
    facts: &ChangeFacts,
    comment: &Comment,
    what: &str,
) -> Result<&'p EmergencyPolicy, String> {
    let Some(emergency) = &policy.emergency else {
        return Err(format!(
            "this repository's policy allows no {what} (no [emergency] section)"
        ));
    };
    if comment.edited {
        return Err("the comment was edited; commands count only as first written".to_owned());
    }
    let holds = roles_of(policy, facts, &comment.author)
        .into_iter()
        .any(|role| emergency.approvers.contains(role));
    if !holds
        || !facts
            .write_access
            .iter()
            .any(|w| w.eq_ignore_ascii_case(&comment.author))
    {
        return Err(format!(
            "only holders of {} with write access may {what}",
            who_may(emergency)
        ));
    }
    if emergency.overdue_review_blocks_bypass
        && let Some(overdue) = facts.overdue_reviews.first()
    {
        return Err(format!(
            "the post-incident review #{} (for #{}, {}) was due {} and is still open; this repository's policy refuses every {what} until it is closed",
            overdue.issue,
            overdue.change,
            overdue.ticket,
            overdue.due.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    Ok(emergency)
}

fn who_may(emergency: &EmergencyPolicy) -> String {
    emergency
        .approvers
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_rollback(
    policy: &Policy,
    facts: &ChangeFacts,
    comment: &Comment,
    args: &[&str],
) -> Result<Rollback, String> {
    let emergency = emergency_holder(policy, facts, comment, "roll back")?;
    let Some(ticket) = args.first() else {
        return Err(format!(
            "usage: {COMMAND_PREFIX} rollback <TICKET> [reason]"
        ));
    };
    if !emergency.ticket.is_match(ticket) {
        return Err(format!(
            "ticket `{ticket}` does not match the policy's pattern `{}`",
            emergency.ticket_pattern
        ));
    }
    if !facts.merged {
        return Err("only a merged change can be rolled back; this one is not merged".to_owned());
    }
    Ok(Rollback {
        by: comment.author.clone(),
        at: comment.at,
        ticket: (*ticket).to_owned(),
        reason: args[1..].join(" "),
    })
}

fn check_bypass(
    policy: &Policy,
    facts: &ChangeFacts,
    comment: &Comment,
    args: &[&str],
) -> Result<Bypass, String> {
    let emergency = emergency_holder(policy, facts, comment, "bypass")?;
    let who_may = who_may(emergency);
    if comment.author.eq_ignore_ascii_case(&facts.author) {
        return Err(format!(
            "the author cannot bypass their own change; another holder of {who_may} must"
        ));
    }
    if facts
        .commit_authors
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&comment.author))
    {
        return Err(format!(
            "you authored or committed part of this change; another holder of {who_may} must bypass it"
        ));
    }
    let Some(ticket) = args.first() else {
        return Err(format!("usage: {COMMAND_PREFIX} bypass <TICKET> <reason>"));
    };
    if !emergency.ticket.is_match(ticket) {
        return Err(format!(
            "ticket `{ticket}` does not match the policy's pattern `{}`",
            emergency.ticket_pattern
        ));
    }
    let reason = args[1..].join(" ");
    if reason.is_empty() {
        return Err(format!(
            "give a reason: {COMMAND_PREFIX} bypass {ticket} <reason>"
        ));
    }
    if comment.head_sha != facts.head_sha {
        return Err(format!(
            "given for commit {}, but the head is now {}: a bypass covers one commit",
            crate::event::short_sha(&comment.head_sha),
            crate::event::short_sha(&facts.head_sha)
        ));
    }
    let expires_at = comment.at + Duration::hours(i64::from(emergency.expires_hours));
    if facts.now >= expires_at {
        return Err(format!(
            "expired at {}",
            expires_at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    Ok(Bypass {
        by: comment.author.clone(),
        ticket: (*ticket).to_owned(),
        reason,
        expires_at,
        review_due: comment.at + Duration::hours(i64::from(emergency.review_within_hours)),
    })
}
