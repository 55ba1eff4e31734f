//! `/tollgate …` commands in comments. Only `bypass` changes a decision; every command,
//! honoured or refused, is recorded with the reason.

use chrono::{DateTime, Duration, Utc};

use super::decision::{CommandRecord, Outcome};
use super::facts::{ChangeFacts, Comment};
use super::model::Policy;
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

/// Reads every command in the comments; returns the records and the latest valid bypass.
pub fn read(policy: &Policy, facts: &ChangeFacts) -> (Vec<CommandRecord>, Option<Bypass>) {
    let mut records = Vec::new();
    let mut bypass = None;
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
                Some("recheck") => Ok("re-evaluated".to_owned()),
                Some(other) => Err(format!(
                    "unknown command `{other}`; commands: bypass, recheck"
                )),
                None => Err("no command given; commands: bypass, recheck".to_owned()),
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
    (records, bypass)
}

fn check_bypass(
    policy: &Policy,
    facts: &ChangeFacts,
    comment: &Comment,
    args: &[&str],
) -> Result<Bypass, String> {
    let Some(emergency) = &policy.emergency else {
        return Err(
            "this repository's policy allows no bypass (no [emergency] section)".to_owned(),
        );
    };
    if comment.edited {
        return Err("the comment was edited; commands count only as first written".to_owned());
    }
    let holds = roles_of(policy, facts, &comment.author)
        .into_iter()
        .any(|role| emergency.approvers.contains(role));
    let who_may = emergency
        .approvers
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if !holds
        || !facts
            .write_access
            .iter()
            .any(|w| w.eq_ignore_ascii_case(&comment.author))
    {
        return Err(format!(
            "only holders of {who_may} with write access may bypass"
        ));
    }
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
