//! Incidents: what follows an emergency bypass. A change merged under a bypass gets a
//! post-incident review (an issue with a due time, a checklist, a reminder once it is overdue),
//! and `/tollgate rollback` opens a revert that passes the emergency gate on the requester's
//! bypass. This module holds the forge-neutral parts: the texts tollgate writes, the deadlines
//! it schedules and the store it keeps them in; the forges' modules do the talking.

pub mod flow;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::Decision;
use crate::policy::commands::{COMMAND_PREFIX, Rollback};
use crate::policy::model::{Member, Policy};

/// The label of post-incident review issues.
pub const REVIEW_LABEL: &str = "post-incident-review";
/// The label a review gets once it is overdue.
pub const OVERDUE_LABEL: &str = "overdue";
/// The label of a revert opened by `/tollgate rollback`.
pub const EMERGENCY_LABEL: &str = "emergency";
/// Marks tollgate's overdue reminder on a review issue (so it is posted once).
pub const REMINDER_MARKER: &str = "<!-- tollgate:review-overdue -->";
/// GitHub assigns at most this many people to an issue.
pub const MAX_ASSIGNEES: usize = 10;

/// The deadline kind of a review falling due (prefixed by the forge: `github:review_due`).
pub const REVIEW_DUE: &str = "review_due";
/// The deadline kind of a bypass expiring (prefixed by the forge).
pub const BYPASS_EXPIRY: &str = "bypass_expiry";

/// What a deadline is about: a review issue, or a change to evaluate again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlinePayload {
    /// The repository.
    pub repo: String,
    /// What to act through: the GitHub App installation (if any), the GitLab project's id.
    #[serde(default)]
    pub via: Option<u64>,
    /// The change (merged under a bypass, or whose bypass expires).
    pub change: u64,
    /// The review's issue (review deadlines only).
    #[serde(default)]
    pub issue: Option<u64>,
}

/// The deadline key of a review falling due.
pub fn review_due_key(forge: &str, repo: &str, issue: u64) -> String {
    format!("{forge}:{REVIEW_DUE}:{repo}#{issue}")
}

/// The deadline key of a bypass expiring (one per change and expiry time).
pub fn bypass_expiry_key(forge: &str, repo: &str, change: u64, expires_ms: i64) -> String {
    format!("{forge}:{BYPASS_EXPIRY}:{repo}#{change}@{expires_ms}")
}

/// Who is asked to do a post-incident review: the people whose sign-off the bypass skipped
/// (holders of the roles the change's tier asks for), or the emergency approvers when the tier
/// asks for none. Users are assigned; teams (which cannot be assigned) are mentioned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reviewers {
    /// Logins to assign (at most [`MAX_ASSIGNEES`]).
    pub users: Vec<String>,
    /// Teams to mention (`@org/team`).
    pub teams: Vec<String>,
}

/// The reviewers of a change merged under a bypass, from its decision.
pub fn reviewers(policy: &Policy, decision: &Decision) -> Reviewers {
    let mut roles: Vec<&str> = decision.sign_offs.iter().map(|s| s.role.as_str()).collect();
    if roles.is_empty()
        && let Some(emergency) = &policy.emergency
    {
        roles = emergency.approvers.iter().map(|r| r.0.as_str()).collect();
    }
    let mut out = Reviewers::default();
    for (name, members) in &policy.roles {
        if !roles.contains(&name.0.as_str()) {
            continue;
        }
        for member in members {
            let (list, who) = match member {
                Member::User(login) => (&mut out.users, login),
                Member::Team(team) => (&mut out.teams, team),
            };
            if !list.iter().any(|known| known.eq_ignore_ascii_case(who)) {
                list.push(who.clone());
            }
        }
    }
    out.users.truncate(MAX_ASSIGNEES);
    out
}

/// What a review issue says.
#[derive(Debug, Clone)]
pub struct ReviewText<'a> {
    /// How the forge refers to the change (`#7`, `!7`).
    pub change_ref: String,
    /// The change's title.
    pub title: &'a str,
    /// The change's page.
    pub change_url: Option<&'a str>,
    /// The incident ticket.
    pub ticket: &'a str,
    /// Who bypassed.
    pub bypassed_by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// When it was merged.
    pub merged_at: DateTime<Utc>,
    /// When the review is due.
    pub due: DateTime<Utc>,
    /// The policy's `review_within_hours`.
    pub within_hours: u32,
    /// The repository (for the audit command).
    pub repo: &'a str,
    /// The change's number (for the audit command).
    pub number: u64,
    /// Who is asked.
    pub reviewers: &'a Reviewers,
}

/// The review issue's title.
pub fn review_title(change_ref: &str, ticket: &str) -> String {
    format!("Post-incident review: {change_ref} — {ticket}")
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The review issue's body: what happened, when it is due, the checklist, where the records
/// are. No line starts with `/` (GitLab would run it as a quick action).
pub fn review_body(text: &ReviewText<'_>) -> String {
    let change = match text.change_url {
        Some(url) => format!("[{}]({url})", text.change_ref),
        None => text.change_ref.clone(),
    };
    let mut people: Vec<String> = text
        .reviewers
        .users
        .iter()
        .map(|u| format!("@{u}"))
        .collect();
    people.extend(text.reviewers.teams.iter().cloned());
    let asked = if people.is_empty() {
        String::new()
    } else {
        format!("\nAsked to review: {}\n", people.join(", "))
    };
    format!(
        "{change} ({title}) was merged under an emergency bypass. The playbook asks for a post-incident review within {hours} hours.\n\n\
         | | |\n|---|---|\n\
         | Incident ticket | {ticket} |\n\
         | Bypassed by | @{by} |\n\
         | Reason | {reason} |\n\
         | Merged | {merged} |\n\
         | **Due** | **{due}** |\n\
         {asked}\n\
         ## Checklist\n\n\
         - [ ] Root cause analysed and written down\n\
         - [ ] Tests updated so that this failure is caught before merge\n\
         - [ ] Policy adjusted (or a note why it stays as it is)\n\
         - [ ] Learnings recorded and shared\n\n\
         ## Records\n\n\
         The signed decision records of {change_ref} are in tollgate's comment on it; an auditor can list them with \
         `tollgate audit show {repo}#{number}`.\n\n\
         Close this issue when the review is done: tollgate records who closed it, and when, in its audit ledger. \
         If it is still open at the due time, tollgate reminds once and labels it `{OVERDUE_LABEL}`.",
        title = escape_table(text.title),
        hours = text.within_hours,
        ticket = escape_table(text.ticket),
        by = text.bypassed_by,
        reason = escape_table(text.reason),
        merged = when(text.merged_at),
        due = when(text.due),
        change_ref = text.change_ref,
        repo = text.repo,
        number = text.number,
    )
}

/// The one reminder on an overdue review.
pub fn reminder_body(due: DateTime<Utc>, assignees: &[String]) -> String {
    let who = if assignees.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = assignees.iter().map(|a| format!("@{a}")).collect();
        format!("{}: ", names.join(" "))
    };
    format!(
        "{REMINDER_MARKER}\n{who}this post-incident review was due {} and is overdue. Please complete the checklist and close the issue; \
         tollgate has labelled it `{OVERDUE_LABEL}`.",
        when(due)
    )
}

/// The title of a revert opened by a rollback.
pub fn revert_title(change_ref: &str, title: &str, ticket: &str) -> String {
    format!("Revert {change_ref} \"{title}\" ({ticket})")
}

/// The description of a revert opened by a rollback.
pub fn revert_body(change_ref: &str, rollback: &Rollback) -> String {
    let reason = if rollback.reason.is_empty() {
        String::new()
    } else {
        format!(" Reason: {}.", rollback.reason)
    };
    format!(
        "Rolls back {change_ref} for incident {ticket}, as @{by} asked with `{COMMAND_PREFIX} rollback` at {at}.{reason}\n\n\
         This change passes tollgate's emergency gate on that request's bypass (for this commit only, until the bypass expires); \
         once merged, tollgate opens its post-incident review.",
        ticket = rollback.ticket,
        by = rollback.by,
        at = when(rollback.at),
    )
}

/// The reply on a rolled-back change, naming the revert.
pub fn rollback_reply(rollback: &Rollback, revert_ref: &str, url: Option<&str>) -> String {
    let revert = match url {
        Some(url) => format!("[{revert_ref}]({url})"),
        None => revert_ref.to_owned(),
    };
    format!(
        "@{by}: rollback for {ticket} opened as {revert}. It passes the emergency gate on your request; merge it to roll back.",
        by = rollback.by,
        ticket = rollback.ticket,
    )
}

/// A `|` or a line break would end a table cell early.
fn escape_table(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    const POLICY: &str = r#"
version = 1
[roles]
on_call = ["olga", "@acme/oncall"]
approver = ["lee", "@acme/leads"]
risk_reviewer = ["rita"]

[[classify]]
paths = ["models/**"]
kind = "model_artifact"

[tiers.low]
sign_offs = ["approver", "risk_reviewer"]

[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
"#;

    fn decision_with_roles(roles: &[&str]) -> Decision {
        let policy = parse_policy(POLICY).unwrap();
        let facts: crate::policy::ChangeFacts = serde_json::from_value(serde_json::json!({
            "author": "alice", "base_ref": "main", "base_sha": "b", "head_sha": "h",
            "now": "2026-11-26T10:00:00Z",
        }))
        .unwrap();
        let mut decision = crate::policy::evaluate(&policy, &facts);
        decision.sign_offs = roles
            .iter()
            .map(|r| crate::policy::decision::Slot {
                role: (*r).to_owned(),
                filled_by: None,
            })
            .collect();
        decision
    }

    #[test]
    fn reviewers_are_the_holders_of_the_skipped_roles_users_assigned_teams_mentioned() {
        let policy = parse_policy(POLICY).unwrap();
        let got = reviewers(
            &policy,
            &decision_with_roles(&["approver", "risk_reviewer"]),
        );
        assert_eq!(got.users, vec!["lee".to_owned(), "rita".to_owned()]);
        assert_eq!(got.teams, vec!["@acme/leads".to_owned()]);
    }

    #[test]
    fn without_sign_off_roles_the_emergency_approvers_review() {
        let policy = parse_policy(POLICY).unwrap();
        let got = reviewers(&policy, &decision_with_roles(&[]));
        assert_eq!(got.users, vec!["olga".to_owned()]);
        assert_eq!(got.teams, vec!["@acme/oncall".to_owned()]);
    }

    #[test]
    fn the_review_body_names_the_due_time_the_checklist_and_the_records() {
        let reviewers = Reviewers {
            users: vec!["lee".to_owned()],
            teams: vec!["@acme/leads".to_owned()],
        };
        let merged = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .to_utc();
        let body = review_body(&ReviewText {
            change_ref: "#7".to_owned(),
            title: "Roll | back",
            change_url: Some("https://github.com/acme/ml/pull/7"),
            ticket: "INC-42",
            bypassed_by: "olga",
            reason: "conversion dropped 10%",
            merged_at: merged,
            due: merged + chrono::TimeDelta::hours(48),
            within_hours: 48,
            repo: "acme/ml",
            number: 7,
            reviewers: &reviewers,
        });
        assert!(
            body.contains("| **Due** | **2026-11-28 10:00 UTC** |"),
            "{body}"
        );
        for item in [
            "Root cause",
            "Tests updated",
            "Policy adjusted",
            "Learnings",
        ] {
            assert!(body.contains(&format!("- [ ] {item}")), "{item}: {body}");
        }
        assert!(body.contains("[#7](https://github.com/acme/ml/pull/7)"));
        assert!(body.contains("tollgate audit show acme/ml#7"));
        assert!(
            body.contains("Roll \\| back"),
            "a pipe must not end the cell"
        );
        assert!(body.contains("@lee, @acme/leads"));
        assert!(
            body.lines().all(|l| !l.trim_start().starts_with('/')),
            "no quick actions"
        );
        assert_eq!(
            review_title("#7", "INC-42"),
            "Post-incident review: #7 — INC-42"
        );
    }

    #[test]
    fn the_reminder_carries_its_marker_and_names_the_assignees() {
        let due = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .to_utc();
        let text = reminder_body(due, &["lee".to_owned(), "rita".to_owned()]);
        assert!(text.starts_with(REMINDER_MARKER));
        assert!(
            text.contains("@lee @rita: this post-incident review was due 2026-11-28 10:00 UTC")
        );
    }
}
