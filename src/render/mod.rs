//! What tollgate writes for people: the sticky comment and the check run's title and summary,
//! rendered with minijinja from `templates/` (built in; a repository may override a template
//! with a file of the same name under `.github/tollgate/` on its base branch).

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::ledger::record::SignedRecord;
use crate::policy::decision::{BlockReason, Decision, EvidenceStatus, Outcome};
use crate::policy::facts::ChangeFacts;
use crate::policy::markdown::{SectionState, section_state};

/// The hidden marker that, together with tollgate's own authorship, identifies the sticky
/// comment.
pub const COMMENT_MARKER: &str = "<!-- tollgate:sticky-comment -->";

/// What tollgate keeps a comment under (GitHub's limit is 65,536 characters).
pub const MAX_COMMENT_CHARS: usize = 60_000;

/// The most tier signals listed by name in the comment (the check's annotations have all).
const MAX_LISTED_REASONS: usize = 25;

/// Template names (and the file names a repository may override under `.github/tollgate/`).
pub const COMMENT_TEMPLATE: &str = "comment.md.j2";
/// The check run summary template.
pub const CHECK_TEMPLATE: &str = "check_summary.md.j2";

const DEFAULT_COMMENT: &str = include_str!("../../templates/comment.md.j2");
const DEFAULT_CHECK: &str = include_str!("../../templates/check_summary.md.j2");

/// A template could not be rendered (an override with a mistake, usually).
#[derive(Debug, thiserror::Error)]
#[error("template `{name}`: {message}")]
pub struct RenderError {
    /// Which template.
    pub name: String,
    /// What went wrong (minijinja's message, with the line).
    pub message: String,
}

/// Neutralises user-controlled text for Markdown: no `@mentions` (a zero-width joiner after
/// `@`), no HTML comments (which could fake the marker), no code spans or table breaks.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '@' => out.push_str("@\u{200d}"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\''),
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

/// Renders templates, with a repository's overrides when it has any.
pub struct Renderer {
    env: Environment<'static>,
}

impl Renderer {
    /// The built-in templates plus `overrides` (name → source).
    pub fn new(overrides: &[(String, String)]) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_filter("md", |text: String| escape_markdown(&text));
        for (name, source) in [
            (COMMENT_TEMPLATE, DEFAULT_COMMENT),
            (CHECK_TEMPLATE, DEFAULT_CHECK),
        ] {
            let source = overrides
                .iter()
                .find(|(n, _)| n == name)
                .map_or(source.to_owned(), |(_, s)| s.clone());
            env.add_template_owned(name, source)
                .map_err(|e| RenderError {
                    name: name.to_owned(),
                    message: e.to_string(),
                })?;
        }
        Ok(Renderer { env })
    }

    fn render(&self, name: &str, view: &View) -> Result<String, RenderError> {
        let template = self.env.get_template(name).map_err(|e| RenderError {
            name: name.to_owned(),
            message: e.to_string(),
        })?;
        template
            .render(minijinja::value::Serde(view))
            .map_err(|e| RenderError {
                name: name.to_owned(),
                message: e.to_string(),
            })
    }

    /// The sticky comment. With `records` (the change's signed ledger records), the decision
    /// log lists them readably and the comment carries them in a hidden, verifiable block.
    pub fn comment(
        &self,
        decision: &Decision,
        facts: &ChangeFacts,
        records: &[SignedRecord],
    ) -> Result<String, RenderError> {
        let mut view = View::new(decision, facts);
        if !records.is_empty() {
            view.log = records.iter().map(record_line).collect();
        }
        let mut text = self.render(COMMENT_TEMPLATE, &view)?;
        // The marker must survive any override: it is how tollgate finds its comment.
        if !text.contains(COMMENT_MARKER) {
            text = format!("{COMMENT_MARKER}\n{text}");
        }
        if !records.is_empty() {
            text = format!(
                "{}\n\n{}\n",
                text.trim_end(),
                crate::ledger::records_block(records)
            );
        }
        Ok(text)
    }

    /// The check run summary; with the latest signed record when there is one.
    pub fn check_summary(
        &self,
        decision: &Decision,
        facts: &ChangeFacts,
        latest: Option<&SignedRecord>,
    ) -> Result<String, RenderError> {
        let mut text = self.render(CHECK_TEMPLATE, &View::new(decision, facts))?;
        if let Some(record) = latest.and_then(|r| serde_json::to_string_pretty(r).ok()) {
            text = format!(
                "{}\n\n<details><summary>Latest signed decision record (check it with <code>tollgate verify</code>)</summary>\n\n```json\n{record}\n```\n</details>\n",
                text.trim_end()
            );
        }
        Ok(text)
    }
}

/// The check run's title: the tier and what is missing, e.g.
/// "High risk — 2 of 4 sign-offs, rollback plan missing".
pub fn headline(decision: &Decision) -> String {
    let Some(tier) = decision.tier else {
        return match &decision.outcome {
            Outcome::NotGoverned { reason } => format!("Not governed: {reason}"),
            _ => "Not governed".to_owned(),
        };
    };
    let filled = decision
        .sign_offs
        .iter()
        .filter(|s| s.filled_by.is_some())
        .count();
    let total = decision.sign_offs.len();
    let mut parts = Vec::new();
    match &decision.outcome {
        Outcome::Passed => parts.push("passed".to_owned()),
        Outcome::Bypassed { by, ticket, .. } => parts.push(format!("bypassed by {by} ({ticket})")),
        Outcome::Waiting { .. } | Outcome::Blocked { .. } | Outcome::NotGoverned { .. } => {
            if total > 0 {
                parts.push(format!("{filled} of {total} sign-offs"));
            }
            for e in &decision.evidence {
                if matches!(e.status, EvidenceStatus::Missing { .. }) {
                    parts.push(format!("{} missing", e.title.to_lowercase()));
                }
            }
            for v in &decision.vetoes {
                parts.push(format!("changes requested by {}", v.login));
            }
        }
    }
    format!("{} risk — {}", tier.title(), parts.join(", "))
}

#[derive(Serialize)]
struct View {
    marker: &'static str,
    headline: String,
    tier_title: String,
    observation_hours: u32,
    reasons: Vec<String>,
    gates: Vec<String>,
    metrics: Vec<MetricRow>,
    checklist: Vec<ChecklistItem>,
    sign_offs: Vec<SignOffRow>,
    missing: Vec<MissingRow>,
    vetoes: Vec<VetoRow>,
    ignored: Vec<IgnoredRow>,
    notes: Vec<String>,
    log: Vec<String>,
    model_card: Option<ModelCard>,
}

#[derive(Serialize)]
struct MetricRow {
    name: String,
    base: String,
    head: String,
    shift: String,
}

#[derive(Serialize)]
struct ChecklistItem {
    text: String,
    done: bool,
    manual: bool,
}

#[derive(Serialize)]
struct SignOffRow {
    role: String,
    login: Option<String>,
    at: String,
    commit: String,
}

#[derive(Serialize)]
struct MissingRow {
    role: String,
    needed: u32,
    eligible: Vec<String>,
}

#[derive(Serialize)]
struct VetoRow {
    login: String,
    roles: Vec<String>,
}

#[derive(Serialize)]
struct IgnoredRow {
    login: String,
    reason: String,
}

#[derive(Serialize)]
struct ModelCard {
    path: String,
    intended_use: Option<String>,
}

/// The playbook's pre-deployment checklist items people confirm (tollgate cannot).
const MANUAL_ITEMS: [&str; 5] = [
    "Reproducible training: seed, config, code and data versions recorded",
    "Fairness: segment performance within thresholds",
    "Security and privacy: PII treatment verified",
    "Operational: latency/SLOs, autoscaling and alerts configured",
    "Owner and on-call documented",
];

impl View {
    fn new(decision: &Decision, facts: &ChangeFacts) -> View {
        let mut checklist = vec![ChecklistItem {
            text: match decision.tier {
                Some(tier) => format!("Risk tier assessed: {}", tier.title()),
                None => "Risk tier assessed: not governed".to_owned(),
            },
            done: true,
            manual: false,
        }];
        if !decision.metrics.is_empty() {
            checklist.push(ChecklistItem {
                text: "Performance vs. baseline: metric deltas computed".to_owned(),
                done: true,
                manual: false,
            });
        }
        for e in &decision.evidence {
            let (done, text) = match &e.status {
                EvidenceStatus::Found { locations } => {
                    (true, format!("{}: {}", e.title, locations.join(", ")))
                }
                EvidenceStatus::Missing { problem, fix } => {
                    (false, format!("{}: {problem} — {fix}", e.title))
                }
            };
            checklist.push(ChecklistItem {
                text,
                done,
                manual: false,
            });
        }
        let signed = decision.missing_roles.is_empty() && !decision.sign_offs.is_empty();
        checklist.push(ChecklistItem {
            text: "Sign-offs from every required role".to_owned(),
            done: signed || decision.sign_offs.is_empty(),
            manual: false,
        });
        checklist.extend(MANUAL_ITEMS.iter().map(|text| ChecklistItem {
            text: (*text).to_owned(),
            done: false,
            manual: true,
        }));
        View {
            marker: COMMENT_MARKER,
            headline: headline(decision),
            tier_title: decision
                .tier
                .map_or("none".to_owned(), |t| t.title().to_owned()),
            observation_hours: decision.observation_hours,
            reasons: listed_reasons(decision),
            gates: decision
                .gates
                .iter()
                .map(|g| format!("{g:?}").to_lowercase())
                .collect(),
            metrics: decision
                .metrics
                .iter()
                .map(|m| MetricRow {
                    name: m.metric.clone(),
                    base: m.base.map_or("—".to_owned(), |v| v.to_string()),
                    head: m.head.map_or("—".to_owned(), |v| v.to_string()),
                    shift: match (m.base, m.head, m.shift_pct) {
                        (Some(b), Some(h), Some(pct)) if pct.is_finite() => {
                            format!("{}{pct:.2} %", if h >= b { "+" } else { "−" })
                        }
                        (Some(_), Some(_), Some(_)) => "from 0".to_owned(),
                        _ => "no baseline".to_owned(),
                    },
                })
                .collect(),
            checklist,
            sign_offs: decision
                .sign_offs
                .iter()
                .map(|s| SignOffRow {
                    role: s.role.clone(),
                    login: s.filled_by.as_ref().map(|f| f.login.clone()),
                    at: s.filled_by.as_ref().map_or(String::new(), |f| {
                        f.at.format("%Y-%m-%d %H:%M UTC").to_string()
                    }),
                    commit: s.filled_by.as_ref().map_or(String::new(), |f| {
                        crate::event::short_sha(&f.commit).to_owned()
                    }),
                })
                .collect(),
            missing: decision
                .missing_roles
                .iter()
                .map(|m| MissingRow {
                    role: m.role.clone(),
                    needed: m.needed,
                    eligible: m.eligible.clone(),
                })
                .collect(),
            vetoes: decision
                .vetoes
                .iter()
                .map(|v| VetoRow {
                    login: v.login.clone(),
                    roles: v.roles.clone(),
                })
                .collect(),
            ignored: decision
                .ignored_approvals
                .iter()
                .map(|i| IgnoredRow {
                    login: i.login.clone(),
                    reason: i.reason.describe(),
                })
                .collect(),
            notes: decision.notes.clone(),
            log: log_lines(decision),
            model_card: model_card(decision, facts),
        }
    }
}

/// The tier signals, the first [`MAX_LISTED_REASONS`] by name and a count of the rest.
fn listed_reasons(decision: &Decision) -> Vec<String> {
    let mut reasons: Vec<String> = decision
        .reasons
        .iter()
        .take(MAX_LISTED_REASONS)
        .map(|r| format!("{}: {}", r.tier, r.signal.describe()))
        .collect();
    let rest = decision.reasons.len().saturating_sub(MAX_LISTED_REASONS);
    if rest > 0 {
        reasons.push(format!(
            "… and {rest} more (see the check run's annotations)"
        ));
    }
    reasons
}

/// What the sticky comment shows, as data: the decision page renders it in HTML.
pub fn page_view(decision: &Decision, facts: &ChangeFacts) -> serde_json::Value {
    serde_json::to_value(View::new(decision, facts)).unwrap_or(serde_json::Value::Null)
}

/// One ledger record, readably.
fn record_line(signed: &SignedRecord) -> String {
    let record = &signed.record;
    let when = chrono::DateTime::from_timestamp_millis(record.time_ms).map_or(String::new(), |t| {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    });
    let kind = serde_json::to_value(record.kind)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default();
    let head = crate::event::short_sha(&record.head_sha);
    format!(
        "{when} · {kind} · {} (on {head}, record {})",
        record.detail, record.id
    )
}

/// The decision log: what tollgate decided and why, in order.
fn log_lines(decision: &Decision) -> Vec<String> {
    let mut log = Vec::new();
    for c in &decision.commands {
        let verdict = if c.honoured { "honoured" } else { "refused" };
        log.push(format!(
            "{} · {}: `{}` {verdict} — {}",
            c.at.format("%Y-%m-%d %H:%M UTC"),
            c.author,
            c.command,
            c.note
        ));
    }
    let outcome = match &decision.outcome {
        Outcome::NotGoverned { reason } => format!("not governed: {reason}"),
        Outcome::Passed => {
            "passed: every required sign-off and piece of evidence is there".to_owned()
        }
        Outcome::Waiting { on } => format!("waiting on {}", on.join("; ")),
        Outcome::Blocked { reasons } => format!(
            "blocked: {}",
            reasons
                .iter()
                .map(|r| match r {
                    BlockReason::Veto { login } => format!("changes requested by {login}"),
                    BlockReason::Evidence { problem, .. } => problem.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Outcome::Bypassed {
            by,
            ticket,
            reason,
            expires_at,
            review_due,
        } => format!(
            "bypassed by {by} for {ticket} ({reason}) until {}; post-incident review due {}",
            expires_at.format("%Y-%m-%d %H:%M UTC"),
            review_due.format("%Y-%m-%d %H:%M UTC")
        ),
    };
    log.push(format!("Outcome: {outcome}"));
    log
}

/// The first model card the decision found, with the start of its "Intended use".
fn model_card(decision: &Decision, facts: &ChangeFacts) -> Option<ModelCard> {
    let path = decision.evidence.iter().find_map(|e| match &e.status {
        EvidenceStatus::Found { locations } if e.id.contains("model_card") => locations
            .iter()
            .find(|l| facts.head_contents.contains_key(*l))
            .cloned(),
        _ => None,
    })?;
    let text = &facts.head_contents[&path];
    let intended_use = (section_state(text, "Intended use") == SectionState::Present)
        .then(|| first_line_after(text, "intended use"))
        .flatten();
    Some(ModelCard { path, intended_use })
}

fn first_line_after(text: &str, heading: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|l| {
        l.trim_start_matches('#')
            .trim()
            .trim_end_matches(':')
            .eq_ignore_ascii_case(heading)
    })?;
    lines
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.chars().take(200).collect())
}

/// A comment already on the change, as the forge lists it (for answering refused commands).
#[derive(Debug, Clone, Copy)]
pub struct Posted<'a> {
    /// Its id on the forge.
    pub id: u64,
    /// Its author's login.
    pub author: &'a str,
    /// Its text.
    pub body: &'a str,
    /// When it was created.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Marks tollgate's reply to one comment, so each refused command is answered once, however
/// often the change is evaluated (the mark lives on the forge, not in tollgate's memory).
fn reply_marker(comment_id: u64) -> String {
    format!("<!-- tollgate:reply:{comment_id} -->")
}

/// The replies still owed: one per refused command that tollgate (`is_own` author) has not
/// answered yet, saying why it was refused (and so who may).
pub fn refusal_replies(
    commands: &[crate::policy::decision::CommandRecord],
    existing: &[Posted<'_>],
    is_own: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut replies = Vec::new();
    for command in commands.iter().filter(|c| !c.honoured) {
        let Some(source) = existing
            .iter()
            .find(|c| c.author == command.author && c.at == command.at)
        else {
            continue;
        };
        let marker = reply_marker(source.id);
        if existing
            .iter()
            .any(|c| is_own(c.author) && c.body.contains(&marker))
        {
            continue;
        }
        // The command is quoted mid-line, so no line of the reply starts with a command.
        replies.push(format!(
            "{marker}\n@{} your command `{}` was refused: {}",
            command.author,
            command.command.replace('`', "'"),
            escape_markdown(&command.note)
        ));
    }
    replies
}
