//! `tollgate check-config`: the real binary on small policy files, one mistake each, with the
//! exact `line:col`, message and hint it must print; plus the same checks through the library
//! (`parse_policy`) where that is simpler.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use tollgate::policy::{PolicyError, parse_policy};

/// What one run of `tollgate check-config` printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// The file it was given, as printed in front of each error.
    path: String,
}

/// One error as printed: `path:line:col: message` (continuation lines appended with `\n`),
/// then an optional `  hint: …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Printed {
    line: usize,
    column: usize,
    message: String,
    hint: Option<String>,
}

/// Writes `source` to a fresh temp dir and runs `tollgate check-config` on it.
fn check(source: &str) -> (TempDir, Run) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, source).expect("write policy");
    let run = check_path(&path);
    (dir, run)
}

fn check_path(path: &Path) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run tollgate");
    Run {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        path: path.display().to_string(),
    }
}

impl Run {
    /// The errors on stderr, in the order printed. Panics on a line that fits no pattern.
    fn errors(&self) -> Vec<Printed> {
        let prefix = format!("{}:", self.path);
        let mut out: Vec<Printed> = Vec::new();
        for line in self.stderr.lines() {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let mut parts = rest.splitn(3, ':');
                let line_no = parts.next().and_then(|l| l.parse().ok());
                let column = parts.next().and_then(|c| c.parse().ok());
                let message = parts.next().and_then(|m| m.strip_prefix(' '));
                match (line_no, column, message) {
                    (Some(line), Some(column), Some(message)) => out.push(Printed {
                        line,
                        column,
                        message: message.to_owned(),
                        hint: None,
                    }),
                    _ => panic!("malformed error line {line:?} in\n{}", self.stderr),
                }
            } else if let Some(hint) = line.strip_prefix("  hint: ") {
                let last = out.last_mut().expect("a hint follows an error");
                assert!(
                    last.hint.is_none(),
                    "two hints for one error:\n{}",
                    self.stderr
                );
                last.hint = Some(hint.to_owned());
            } else {
                let last = out
                    .last_mut()
                    .unwrap_or_else(|| panic!("stray line {line:?} in\n{}", self.stderr));
                last.message.push('\n');
                last.message.push_str(line);
            }
        }
        out
    }

    /// Asserts a failed run with exactly one error, and returns it.
    fn single_error(&self) -> Printed {
        assert_eq!(
            self.code, 1,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "nothing on stdout on error: {}",
            self.stdout
        );
        let errors = self.errors();
        assert_eq!(errors.len(), 1, "expected one error:\n{}", self.stderr);
        errors.into_iter().next().expect("one error")
    }
}

fn printed(line: usize, column: usize, message: &str, hint: Option<&str>) -> Printed {
    Printed {
        line,
        column,
        message: message.to_owned(),
        hint: hint.map(str::to_owned),
    }
}

/// `(line, column, message)` of every library error, in order.
fn lib_errors(source: &str) -> Vec<(usize, usize, String)> {
    match parse_policy(source) {
        Ok(_) => panic!("expected errors for\n{source}"),
        Err(errors) => errors
            .0
            .into_iter()
            .map(
                |PolicyError {
                     line,
                     column,
                     message,
                     ..
                 }| (line, column, message),
            )
            .collect(),
    }
}

const SPELLING_HINT: &str =
    "check the spelling; the policy format is documented in README.md (\".governance.toml\")";

// ---------------------------------------------------------------------------------------------
// Unknown keys (serde: the first one stops the parse).

#[test]
fn typo_in_a_tier_key_is_an_unknown_field_at_the_key() {
    let (_dir, run) = check(
        r#"version = 1

[roles]
approver = ["alice"]

[tiers.low]
sign_off = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            7,
            1,
            "unknown field `sign_off`, expected one of `sign_offs`, `evidence`, `observation_hours`, `stale_on_push`",
            Some(SPELLING_HINT),
        )
    );
}

#[test]
fn unknown_top_level_key_is_reported_at_the_key() {
    let (_dir, run) = check(
        r#"version = 1
colour = "blue"

[roles]
approver = ["alice"]

[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            2,
            1,
            "unknown field `colour`, expected one of `version`, `governed_branches`, `roles`, `classify`, `key_rules`, `metrics`, `risk`, `tiers`, `evidence`, `emergency`, `deployment`",
            Some(SPELLING_HINT),
        )
    );
}

#[test]
fn unknown_tier_name_is_reported_at_the_table_name() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[tiers.critical]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            4,
            8,
            "unknown field `critical`, expected one of `low`, `medium`, `high`",
            Some(SPELLING_HINT),
        )
    );
}

#[test]
fn unknown_key_in_an_array_of_tables_and_in_emergency() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[[classify]]
kind = "docs"
path = ["docs/**"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            6,
            1,
            "unknown field `path`, expected `kind` or `paths`",
            Some(SPELLING_HINT)
        )
    );

    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[tiers.low]
sign_offs = ["approver"]
[emergency]
approvers = ["approver"]
ticket = "INC-[0-9]+"
expiry = 3
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            9,
            1,
            "unknown field `expiry`, expected one of `approvers`, `ticket`, `expires_hours`, `review_within_hours`, `overdue_review_blocks_bypass`",
            Some(SPELLING_HINT),
        )
    );
}

#[test]
fn unknown_key_in_an_inline_sign_off_is_rejected() {
    // `{ role, count }` with a stray key: a typo such as `counts = 3` next to a valid `count`
    // must not pass silently.
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice", "bob", "carol"]
[tiers.low]
sign_offs = [{ role = "approver", count = 2, counts = 3 }]
"#,
    );
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert_eq!(errors[0].line, 5, "{}", run.stderr);
}

#[test]
fn malformed_inline_sign_off_points_at_the_table() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[tiers.low]
sign_offs = [{ role = "approver", cuont = 2 }]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            5,
            14,
            "unknown key `cuont` in a sign-off; a sign-off has `role` and `count`",
            Some("write \"approver\" or { role = \"approver\", count = 2 }"),
        )
    );
}

#[test]
fn toml_syntax_errors_and_missing_version() {
    let (_dir, run) = check("version = 1\n[tiers.low\nsign_offs = []\n");
    assert_eq!(
        run.single_error(),
        printed(2, 11, "unclosed table, expected `]`", None)
    );

    let (_dir, run) =
        check("[roles]\napprover = [\"alice\"]\n[tiers.low]\nsign_offs = [\"approver\"]\n");
    assert_eq!(
        run.single_error(),
        printed(
            1,
            1,
            "missing field `version`",
            Some("start the file with `version = 1`")
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Validation errors (reported all at once).

#[test]
fn bad_glob_is_reported_at_the_glob() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]

[[classify]]
kind = "model_artifact"
paths = ["models/**/*.pt", "models/[.onnx"]

[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            7,
            28,
            "invalid glob `models/[.onnx`: unclosed character class; missing ']'",
            Some("`*` matches within one folder, `**` across folders, e.g. \"models/**/*.onnx\""),
        )
    );
}

#[test]
fn bad_globs_elsewhere_are_reported_too() {
    let source = r#"version = 1
governed_branches = ["main", "release/{a"]
[roles]
approver = ["alice"]
[risk.high]
paths = ["pii/[x"]
[evidence.card]
paths = ["cards/[*.md"]
[metrics]
files = ["eval/[.json"]
[tiers.low]
sign_offs = ["approver"]
"#;
    let errors = lib_errors(source);
    let positions: Vec<(usize, usize)> = errors.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        positions,
        vec![(2, 30), (6, 10), (8, 10), (10, 10)],
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|(_, _, m)| m.starts_with("invalid glob `")),
        "{errors:?}"
    );
}

#[test]
fn role_not_defined_in_a_tier() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
data_reviewer = ["dave"]

[tiers.high]
sign_offs = ["approver", "risk_reviewer"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            7,
            26,
            "role `risk_reviewer` is not defined in [roles]",
            Some(
                "defined roles: approver, data_reviewer; or add `risk_reviewer = [...]` to [roles]"
            ),
        )
    );
}

#[test]
fn role_not_defined_in_a_counted_sign_off_and_without_any_roles() {
    let (_dir, run) = check(
        r#"version = 1
[tiers.low]
sign_offs = [{ role = "approver", count = 2 }]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            3,
            14,
            "role `approver` is not defined in [roles]",
            Some("add `[roles]` with `approver = [\"@org/team\"]`"),
        )
    );
}

#[test]
fn misspelt_role_gets_a_suggestion() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
data_reviewer = ["dave"]
[tiers.low]
sign_offs = ["aprover"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            6,
            14,
            "role `aprover` is not defined in [roles]",
            Some("did you mean `approver`? defined roles: approver, data_reviewer"),
        )
    );
}

#[test]
fn role_not_defined_in_emergency_approvers() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[tiers.low]
sign_offs = ["approver"]
[emergency]
approvers = ["approver", "on_call"]
ticket = "INC-[0-9]+"
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            7,
            26,
            "role `on_call` is not defined in [roles]",
            Some("defined roles: approver; or add `on_call = [...]` to [roles]"),
        )
    );
}

#[test]
fn tier_requiring_a_role_without_members() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
risk_reviewer = []
[tiers.medium]
sign_offs = ["approver", { role = "risk_reviewer", count = 1 }]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            6,
            26,
            "role `risk_reviewer` is required here but has no members",
            Some("add users or teams to `risk_reviewer` in [roles]; nobody could ever sign off"),
        )
    );
}

#[test]
fn emergency_approver_role_without_members() {
    let errors = lib_errors(
        r#"version = 1
[roles]
approver = ["alice"]
on_call = []
[tiers.low]
sign_offs = ["approver"]
[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
"#,
    );
    assert_eq!(
        errors,
        vec![(
            8,
            14,
            "role `on_call` is required here but has no members".to_owned()
        )]
    );
}

#[test]
fn same_kind_in_high_and_medium_is_unreachable_in_medium() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[risk.high]
kinds = ["model_artifact"]
[risk.medium]
kinds = ["training_config", "model_artifact"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            7,
            29,
            "unreachable rule: `model_artifact` in [risk.medium] never applies, it is already decided by [risk.high]",
            Some("remove `model_artifact` from [risk.medium]"),
        )
    );
}

#[test]
fn unreachable_is_reported_in_the_lower_tier_whatever_the_file_order() {
    // [risk.medium] written before [risk.high]: still the medium entry is the dead one.
    let errors = lib_errors(
        r#"version = 1
[roles]
approver = ["alice"]
[risk.medium]
kinds = ["model_artifact"]
labels = ["urgent"]
[risk.high]
kinds = ["model_artifact"]
labels = ["urgent"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        errors,
        vec![
            (
                5,
                10,
                "unreachable rule: `model_artifact` in [risk.medium] never applies, it is already decided by [risk.high]"
                    .to_owned()
            ),
            (
                6,
                11,
                "unreachable rule: `urgent` in [risk.medium] never applies, it is already decided by [risk.high]"
                    .to_owned()
            ),
        ]
    );
}

#[test]
fn data_source_in_low_is_below_its_playbook_floor() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[risk.low]
kinds = ["docs", "data_source"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            5,
            18,
            "unreachable rule: `data_source` in [risk.low] never applies, it is already decided by the playbook's floor (high)",
            Some("remove `data_source` from [risk.low]"),
        )
    );
}

#[test]
fn floors_of_other_kinds() {
    // breaking_schema_change has a medium floor: fine in [risk.medium] and [risk.high],
    // dead in [risk.low]. objective_change (floor high) is dead in [risk.medium].
    let errors = lib_errors(
        r#"version = 1
[roles]
approver = ["alice"]
[risk.medium]
kinds = ["breaking_schema_change", "objective_change"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        errors,
        vec![(
            5,
            36,
            "unreachable rule: `objective_change` in [risk.medium] never applies, it is already decided by the playbook's floor (high)"
                .to_owned()
        )]
    );
    let errors = lib_errors(
        r#"version = 1
[roles]
approver = ["alice"]
[risk.low]
kinds = ["breaking_schema_change"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1), (5, 10));
}

#[test]
fn medium_metric_threshold_not_below_high_is_unreachable() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[metrics]
files = ["eval/metrics.json"]
[risk.high]
metric_shift_pct = 5.0
[risk.medium]
metric_shift_pct = 5.0
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            9,
            20,
            "unreachable rule: a shift over 5 % is already high risk (over 5 %)",
            Some("use a threshold below 5 in [risk.medium]"),
        )
    );

    // Higher, as a `"*"` entry of a table: same.
    let errors = lib_errors(
        r#"version = 1
[roles]
approver = ["alice"]
[risk.high]
metric_shift_pct = 5.0
[risk.medium]
metric_shift_pct = { "*" = 7.5 }
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        errors,
        vec![(
            7,
            20,
            "unreachable rule: a shift over 7.5 % is already high risk (over 5 %)".to_owned()
        )]
    );

    // Below: fine.
    assert!(
        parse_policy(
            r#"version = 1
[roles]
approver = ["alice"]
[risk.high]
metric_shift_pct = 5.0
[risk.medium]
metric_shift_pct = 1.0
[tiers.low]
sign_offs = ["approver"]
"#
        )
        .is_ok()
    );
}

#[test]
fn per_metric_medium_threshold_not_below_high_is_unreachable() {
    // For `auc`, a shift over 3 % is already high (over 2 %): the medium entry never applies,
    // exactly like the `any` case above.
    let errors = lib_errors(
        r#"version = 1
[roles]
approver = ["alice"]
[metrics]
files = ["eval/metrics.json"]
[risk.high]
metric_shift_pct = { auc = 2.0 }
[risk.medium]
metric_shift_pct = { auc = 3.0 }
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1), (9, 20), "{errors:?}");
    assert!(errors[0].2.starts_with("unreachable rule"), "{errors:?}");
}

#[test]
fn unknown_change_kind_in_classify_and_in_risk() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[[classify]]
kind = "model_artefact"
paths = ["models/**"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            5,
            8,
            "unknown change kind `model_artefact`",
            Some(
                "did you mean `model_artifact`? known kinds: model_artifact, model_code, training_config, feature_definition, feature_schema, data_source, dataset_version, threshold_config, deployment_config, docs, governance_config, objective_change, threshold_change, breaking_schema_change"
            ),
        )
    );

    let errors = lib_errors(
        r#"version = 1
[roles]
approver = ["alice"]
[[key_rules]]
paths = ["configs/**"]
keys = ["objective"]
kind = "objective"
[risk.high]
kinds = ["model_artifact", "dataset"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        errors,
        vec![
            (7, 8, "unknown change kind `objective`".to_owned()),
            (9, 28, "unknown change kind `dataset`".to_owned()),
        ]
    );
}

#[test]
fn evidence_referenced_but_not_defined() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[tiers.medium]
sign_offs = ["approver"]
evidence = ["model_card", "validation_report"]
[evidence.model_card]
paths = ["models/*/MODEL_CARD.md"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            6,
            27,
            "evidence `validation_report` is not defined",
            Some("defined evidence: model_card; or add [evidence.validation_report]"),
        )
    );

    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[tiers.medium]
sign_offs = ["approver"]
evidence = ["model_card"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            6,
            13,
            "evidence `model_card` is not defined",
            Some("add an [evidence.model_card] section"),
        )
    );
}

#[test]
fn invalid_ticket_regex() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
on_call = ["olga"]
[tiers.low]
sign_offs = ["approver"]
[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9"
"#,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    let error = &errors[0];
    assert_eq!((error.line, error.column), (9, 10), "{}", run.stderr);
    assert!(
        error.message.starts_with("invalid ticket pattern"),
        "{}",
        run.stderr
    );
    assert!(
        error.message.contains("unclosed character class"),
        "{}",
        run.stderr
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("a regular expression such as \"INC-[0-9]+\"")
    );
}

#[test]
fn invalid_ticket_regex_is_one_line_about_the_pattern_as_written() {
    // The error format is `path:line:col: message` + `  hint: …`. The regex crate's message
    // spans several lines and quotes the anchored pattern `^(?:INC-[0-9)$`, which is not what
    // the user wrote (and its caret points into that, not into the file).
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
on_call = ["olga"]
[tiers.low]
sign_offs = ["approver"]
[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9"
"#,
    );
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        !errors[0].message.contains('\n'),
        "the message should be one line:\n{}",
        run.stderr
    );
    assert!(
        !errors[0].message.contains("^(?:"),
        "the message should not show the internal anchoring:\n{}",
        run.stderr
    );
}

#[test]
fn unsupported_version() {
    let (_dir, run) = check(
        r#"version = 2
[roles]
approver = ["alice"]
[tiers.low]
sign_offs = ["approver"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            1,
            11,
            "unsupported policy version 2",
            Some("this tollgate reads `version = 1`"),
        )
    );
}

#[test]
fn no_tier_defined() {
    let (_dir, run) = check(
        r#"version = 1
[roles]
approver = ["alice"]
[[classify]]
kind = "model_artifact"
paths = ["models/**"]
"#,
    );
    assert_eq!(
        run.single_error(),
        printed(
            1,
            1,
            "no tier says what a change must show",
            Some("add at least `[tiers.low]` with the sign-offs every governed change needs"),
        )
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let errors = lib_errors(
        r#"version = 1
[roles]
"é" = ["alice"]
[tiers.low]
sign_offs = ["é", "ghost"]
"#,
    );
    assert_eq!(
        errors,
        vec![(5, 19, "role `ghost` is not defined in [roles]".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------------
// Several errors, exit codes, the summary, a missing file.

#[test]
fn every_error_is_reported_sorted_by_position() {
    let (_dir, run) = check(
        r#"version = 1

[roles]
approver = ["alice"]
empty = []

[[classify]]
kind = "model_artifact"
paths = ["models/[.onnx"]

[[classify]]
kind = "model_artefact"
paths = ["x/**"]

[risk.low]
kinds = ["data_source"]
[risk.high]
kinds = ["model_artifact"]
metric_shift_pct = 5.0
[risk.medium]
kinds = ["model_artifact"]
metric_shift_pct = 6.0

[tiers.low]
sign_offs = ["ghost", "empty"]
evidence = ["model_card"]

[emergency]
approvers = ["nobody"]
ticket = "INC-[0-9]+"
"#,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let errors = run.errors();
    let got: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|e| (e.line, e.column, e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                9,
                10,
                "invalid glob `models/[.onnx`: unclosed character class; missing ']'"
            ),
            (12, 8, "unknown change kind `model_artefact`"),
            (
                16,
                10,
                "unreachable rule: `data_source` in [risk.low] never applies, it is already decided by the playbook's floor (high)"
            ),
            (
                21,
                10,
                "unreachable rule: `model_artifact` in [risk.medium] never applies, it is already decided by [risk.high]"
            ),
            (
                22,
                20,
                "unreachable rule: a shift over 6 % is already high risk (over 5 %)"
            ),
            (25, 14, "role `ghost` is not defined in [roles]"),
            (25, 23, "role `empty` is required here but has no members"),
            (26, 13, "evidence `model_card` is not defined"),
            (29, 14, "role `nobody` is not defined in [roles]"),
        ],
        "{}",
        run.stderr
    );
    assert!(errors.iter().all(|e| e.hint.is_some()), "{}", run.stderr);

    // The library reports the same, in the same order.
    let source = std::fs::read_to_string(&run.path).expect("read back");
    let lib: Vec<(usize, usize)> = lib_errors(&source)
        .iter()
        .map(|(l, c, _)| (*l, *c))
        .collect();
    let bin: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(lib, bin);
}

#[test]
fn version_and_tier_errors_on_the_first_line_sort_by_column() {
    let (_dir, run) = check("version = 7\n[roles]\napprover = [\"alice\"]\n");
    let got: Vec<(usize, usize, String)> = run
        .errors()
        .into_iter()
        .map(|e| (e.line, e.column, e.message))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 1, "no tier says what a change must show".to_owned()),
            (1, 11, "unsupported policy version 7".to_owned()),
        ]
    );
    assert_eq!(run.code, 1);
}

#[test]
fn valid_file_exits_0_with_a_summary() {
    let (_dir, run) = check(
        r#"version = 1
governed_branches = ["main"]
[roles]
approver = ["alice", "@acme/ml-leads"]
data_reviewer = ["dave"]
on_call = ["olga"]
[[classify]]
kind = "model_artifact"
paths = ["models/**/*.onnx"]
[risk.high]
kinds = ["model_artifact"]
[tiers.low]
sign_offs = ["approver"]
[tiers.high]
sign_offs = ["data_reviewer", { role = "approver", count = 2 }]
observation_hours = 24
stale_on_push = false
[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
"#,
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let expected = format!(
        "{}: valid
  governed branches: main
  roles: approver (2), data_reviewer (1), on_call (1)
  gates: emergency, governance, model
  classify: 1 rule(s), key rules: 0
  high: sign-offs [data_reviewer, approver ×2], evidence [], observation 24 h, stale on push: no
  medium (as [tiers.high]): sign-offs [data_reviewer, approver ×2], evidence [], observation 24 h, stale on push: no
  low: sign-offs [approver], evidence [], observation 0 h, stale on push: yes
  emergency bypass: by on_call, ticket `INC-[0-9]+`, expires after 24 h, review within 48 h
",
        run.path
    );
    assert_eq!(run.stdout, expected);
}

#[test]
fn shipped_example_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples/fraud-model.governance.toml");
    let run = check_path(&path);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(run.stdout.starts_with(&format!("{}: valid\n", run.path)));
    assert!(
        run.stdout.contains("  emergency bypass: by on_call"),
        "{}",
        run.stdout
    );
}

#[test]
fn missing_file_exits_1_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such.governance.toml");
    let run = check_path(&path);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr
            .starts_with(&format!("{}: cannot read", path.display())),
        "{}",
        run.stderr
    );
}
