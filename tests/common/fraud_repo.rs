//! Worked example 1's repository, `acme/fraud-model`, as the fake GitHub serves it to the
//! suites that drive whole evaluations.

use super::fake_github::FakeGitHub;

/// The repository.
pub const REPO: &str = "acme/fraud-model";
/// Its base commit (the head of `main`).
pub const BASE: &str = "base0000000000000000000000000000000000000";

/// The worked example's policy (`config/examples/fraud-model.governance.toml`).
pub fn policy() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/fraud-model.governance.toml"
    ))
    .unwrap()
}

/// Puts `policy` and the evidence the example keeps on `main` (the data sheet, the metrics) at
/// the base, creates `teams` (name → members) in `acme`, and gives alice (the author) and
/// every member write access.
pub fn seed(fake: &FakeGitHub, policy: &str, teams: &[(&str, &[&str])]) {
    fake.set_file(REPO, BASE, ".governance.toml", policy);
    fake.set_file(
        REPO,
        BASE,
        "data/transactions/DATASHEET.md",
        "# Transactions\n",
    );
    fake.set_file(REPO, BASE, "eval/metrics.json", r#"{"auc": 0.91}"#);
    fake.set_permission(REPO, "alice", "write");
    for (team, members) in teams {
        fake.set_team("acme", team, members);
        for member in *members {
            fake.set_permission(REPO, member, "write");
        }
    }
}

/// [`seed`] with the example's own policy and teams, `leads` being `ml-leads`.
pub fn seed_example(fake: &FakeGitHub, leads: &[&str]) {
    seed(
        fake,
        &policy(),
        &[
            ("data-platform", &["dana"]),
            ("model-risk", &["rita"]),
            ("ml-ops", &["omar"]),
            ("ml-leads", leads),
            ("ml-oncall", &["olga"]),
        ],
    );
}
