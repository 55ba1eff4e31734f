//! The deployment gate, judged: may this commit be deployed to this environment now? Pure —
//! the forge layer finds the change the commit belongs to, its recorded decision, and when the
//! commit first went live on canary; this decides and says why, or what is missing and when it
//! will be allowed.

use chrono::{DateTime, TimeDelta, Utc};

use super::RiskTier;
use super::model::Policy;

/// The change a deployed commit belongs to, as tollgate recorded its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedChange {
    /// Its number.
    pub number: u64,
    /// How the forge writes a reference to it (`#7`).
    pub change_ref: String,
    /// The outcome of its last recorded decision (`passed`, `bypassed`, `not_governed`,
    /// `waiting`, `blocked`), or `None` when tollgate has no decision for it.
    pub outcome: Option<String>,
    /// The tier of that decision.
    pub tier: Option<RiskTier>,
}

/// What the gate is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentFacts {
    /// The environment deployed to.
    pub environment: String,
    /// The commit deployed.
    pub sha: String,
    /// The merged change that brought the commit, if one did.
    pub change: Option<DeployedChange>,
    /// When the commit was first deployed successfully to the policy's canary environment.
    pub on_canary_since: Option<DateTime<Utc>>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The policy does not gate this environment.
    NotGated,
    /// Released, and why.
    Approved {
        /// Why, for the deployment's reviewers.
        reason: String,
    },
    /// Held back: what is missing, and from when it will be allowed if time alone is missing.
    Rejected {
        /// What is missing.
        missing: String,
        /// When a new deployment will be allowed (the end of the observation window).
        allowed_at: Option<DateTime<Utc>>,
    },
}

impl Verdict {
    /// `approved` or `rejected`, as the forge's callback takes it (not gated: approved).
    pub fn state(&self) -> &'static str {
        match self {
            Verdict::NotGated | Verdict::Approved { .. } => "approved",
            Verdict::Rejected { .. } => "rejected",
        }
    }

    /// The comment the deployment's reviewers read.
    pub fn comment(&self) -> String {
        match self {
            Verdict::NotGated => {
                "tollgate: this environment is not gated by the repository's policy.".to_owned()
            }
            Verdict::Approved { reason } => format!("tollgate approved: {reason}."),
            Verdict::Rejected {
                missing,
                allowed_at,
            } => match allowed_at {
                Some(at) => format!(
                    "tollgate rejected: {missing}. Deploy again after {}.",
                    at.format("%Y-%m-%d %H:%M UTC")
                ),
                None => format!("tollgate rejected: {missing}."),
            },
        }
    }
}

/// Decides a deployment.
pub fn judge(policy: &Policy, facts: &DeploymentFacts) -> Verdict {
    let Some(gate) = &policy.deployment else {
        return Verdict::NotGated;
    };
    if !gate.environments.iter().any(|e| e == &facts.environment) {
        return Verdict::NotGated;
    }
    let short = crate::event::short_sha(&facts.sha);
    let Some(change) = &facts.change else {
        return Verdict::Rejected {
            missing: format!(
                "commit {short} was not brought by a merged pull request; only reviewed changes are released to `{}`",
                facts.environment
            ),
            allowed_at: None,
        };
    };
    let reference = &change.change_ref;
    let outcome = match change.outcome.as_deref() {
        Some(outcome @ ("passed" | "bypassed" | "not_governed")) => outcome,
        Some(other) => {
            return Verdict::Rejected {
                missing: format!(
                    "the review of {reference} did not pass (its last decision: {})",
                    other.replace('_', " ")
                ),
                allowed_at: None,
            };
        }
        None => {
            return Verdict::Rejected {
                missing: format!("tollgate has no decision on record for {reference}"),
                allowed_at: None,
            };
        }
    };
    let passed = match (outcome, change.tier) {
        ("bypassed", Some(tier)) => format!("{reference} passed the emergency gate ({tier} risk)"),
        (_, Some(tier)) => format!("{reference} passed its review ({tier} risk)"),
        _ => format!("{reference} changed nothing the policy governs"),
    };
    let hours = change
        .tier
        .map_or(0, |tier| policy.tiers.get(tier).observation_hours);
    if hours == 0 {
        return Verdict::Approved { reason: passed };
    }
    let Some(canary) = &gate.canary else {
        return Verdict::Rejected {
            missing: format!(
                "{passed}, and its tier asks for {hours} h of observation, but the policy names no canary environment ([deployment] canary)"
            ),
            allowed_at: None,
        };
    };
    let Some(since) = facts.on_canary_since else {
        return Verdict::Rejected {
            missing: format!(
                "{passed}, but commit {short} has not been deployed successfully to `{canary}`; it may go to `{}` {hours} h after it has",
                facts.environment
            ),
            allowed_at: None,
        };
    };
    let ends = since + TimeDelta::hours(i64::from(hours));
    if facts.now < ends {
        return Verdict::Rejected {
            missing: format!(
                "{passed}; its {hours} h observation on `{canary}` (since {}) is not over",
                since.format("%Y-%m-%d %H:%M UTC")
            ),
            allowed_at: Some(ends),
        };
    }
    Verdict::Approved {
        reason: format!(
            "{passed}; observed {hours} h on `{canary}` since {}",
            since.format("%Y-%m-%d %H:%M UTC")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    const POLICY: &str = r#"
version = 1
[roles]
approver = ["lee"]
[[classify]]
kind = "model_artifact"
paths = ["models/**"]
[tiers.low]
sign_offs = ["approver"]
[tiers.medium]
sign_offs = ["approver"]
observation_hours = 4
[tiers.high]
sign_offs = ["approver"]
observation_hours = 24
[deployment]
environments = ["production"]
canary = "canary"
"#;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .to_utc()
            + TimeDelta::hours(hours)
    }

    fn facts(outcome: Option<&str>, tier: Option<RiskTier>, since: Option<i64>) -> DeploymentFacts {
        DeploymentFacts {
            environment: "production".to_owned(),
            sha: "abcdef1234567".to_owned(),
            change: Some(DeployedChange {
                number: 7,
                change_ref: "#7".to_owned(),
                outcome: outcome.map(str::to_owned),
                tier,
            }),
            on_canary_since: since.map(t),
            now: t(30),
        }
    }

    fn judge_with(f: &DeploymentFacts) -> Verdict {
        judge(&parse_policy(POLICY).unwrap(), f)
    }

    #[test]
    fn a_passed_change_is_released_once_its_window_on_canary_is_over() {
        let verdict = judge_with(&facts(Some("passed"), Some(RiskTier::High), Some(6)));
        assert_eq!(verdict.state(), "approved", "{verdict:?}");
        assert!(
            verdict.comment().contains("observed 24 h on `canary`"),
            "{}",
            verdict.comment()
        );
    }

    #[test]
    fn before_the_window_ends_it_is_rejected_with_the_time_it_will_be_allowed() {
        let verdict = judge_with(&facts(Some("passed"), Some(RiskTier::High), Some(10)));
        assert_eq!(
            verdict,
            Verdict::Rejected {
                missing: "#7 passed its review (high risk); its 24 h observation on `canary` (since 2026-11-26 20:00 UTC) is not over".to_owned(),
                allowed_at: Some(t(34)),
            }
        );
        assert!(
            verdict
                .comment()
                .ends_with("Deploy again after 2026-11-27 20:00 UTC.")
        );
        // The window grows with risk: medium asks for 4 h only.
        let medium = judge_with(&facts(Some("passed"), Some(RiskTier::Medium), Some(10)));
        assert_eq!(medium.state(), "approved");
    }

    #[test]
    fn a_change_whose_review_did_not_pass_is_rejected() {
        for outcome in ["waiting", "blocked"] {
            let verdict = judge_with(&facts(Some(outcome), Some(RiskTier::High), Some(0)));
            let Verdict::Rejected {
                missing,
                allowed_at,
            } = &verdict
            else {
                panic!("{verdict:?}");
            };
            assert!(
                missing.contains("the review of #7 did not pass"),
                "{missing}"
            );
            assert!(allowed_at.is_none());
        }
        let unknown = judge_with(&facts(None, None, Some(0)));
        assert!(unknown.comment().contains("no decision on record for #7"));
    }

    #[test]
    fn without_a_change_or_a_canary_deployment_it_is_rejected_saying_what_is_missing() {
        let mut f = facts(Some("passed"), Some(RiskTier::High), None);
        let verdict = judge_with(&f);
        assert!(
            verdict
                .comment()
                .contains("has not been deployed successfully to `canary`")
        );
        f.change = None;
        let verdict = judge_with(&f);
        assert!(
            verdict
                .comment()
                .contains("not brought by a merged pull request")
        );
    }

    #[test]
    fn no_window_no_wait_and_an_ungated_environment_is_not_gated() {
        let low = judge_with(&facts(Some("passed"), Some(RiskTier::Low), None));
        assert_eq!(low.state(), "approved");
        let bypassed = judge_with(&facts(Some("bypassed"), Some(RiskTier::Low), None));
        assert!(bypassed.comment().contains("emergency gate"));
        let ungoverned = judge_with(&facts(Some("not_governed"), None, None));
        assert_eq!(ungoverned.state(), "approved");
        let mut f = facts(Some("blocked"), Some(RiskTier::High), None);
        f.environment = "staging".to_owned();
        assert_eq!(judge_with(&f), Verdict::NotGated);
    }

    #[test]
    fn the_deployment_section_is_validated() {
        let errors = |extra: &str| {
            parse_policy(&POLICY.replace(
                "[deployment]\nenvironments = [\"production\"]\ncanary = \"canary\"\n",
                extra,
            ))
            .unwrap_err()
            .render(".governance.toml")
        };
        assert!(errors("[deployment]\nenvironments = []\n").contains("names no environments"));
        assert!(
            errors("[deployment]\nenvironments = [\"production\"]\ncanary = \"production\"\n")
                .contains("cannot be both the canary and a gated environment")
        );
        assert!(errors("[deployment]\nenviroments = [\"x\"]\n").contains("unknown field"));
    }
}
