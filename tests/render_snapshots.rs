//! The rendered comment and check summary for the playbook's worked example 1, snapshotted
//! (review changes with `cargo insta review`, or accept with `INSTA_UPDATE=always`).

use tollgate::policy::{ChangeFacts, evaluate, parse_policy};
use tollgate::render::{COMMENT_MARKER, Renderer, escape_markdown, headline};

fn example(name: &str) -> (tollgate::policy::Decision, ChangeFacts) {
    let root = env!("CARGO_MANIFEST_DIR");
    let policy = std::fs::read_to_string(format!(
        "{root}/config/examples/fraud-model.governance.toml"
    ))
    .unwrap();
    let facts: ChangeFacts = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/fixtures/facts/fraud-model/{name}.json")).unwrap(),
    )
    .unwrap();
    (evaluate(&parse_policy(&policy).unwrap(), &facts), facts)
}

#[test]
fn the_comment_for_an_opened_high_risk_change() {
    let (decision, facts) = example("opened");
    let comment = Renderer::new(&[])
        .unwrap()
        .comment(&decision, &facts, &[])
        .unwrap();
    assert!(comment.starts_with(COMMENT_MARKER));
    insta::assert_snapshot!(comment);
}

#[test]
fn the_check_summary_and_title_when_all_four_signed() {
    let (decision, facts) = example("all-four-signed");
    assert_eq!(headline(&decision), "High risk — passed");
    let summary = Renderer::new(&[])
        .unwrap()
        .check_summary(&decision, &facts, None)
        .unwrap();
    insta::assert_snapshot!(summary);
}

#[test]
fn the_title_names_the_tier_and_what_is_missing() {
    let (decision, _) = example("opened");
    assert_eq!(headline(&decision), "High risk — 0 of 4 sign-offs");
    let (decision, _) = example("missing-evidence");
    let title = headline(&decision);
    assert!(title.starts_with("High risk — "), "{title}");
    assert!(title.contains(" missing"), "{title}");
}

#[test]
fn user_text_cannot_mention_fake_markers_or_break_tables() {
    assert_eq!(
        escape_markdown("@acme/leads <!-- tollgate:sticky-comment --> `x` a|b"),
        "@\u{200d}acme/leads &lt;!-- tollgate:sticky-comment --&gt; 'x' a\\|b"
    );
}

#[test]
fn a_repository_override_replaces_a_template_but_keeps_the_marker() {
    let (decision, facts) = example("opened");
    let renderer = Renderer::new(&[(
        "comment.md.j2".to_owned(),
        "Tier: {{ tier_title }}".to_owned(),
    )])
    .unwrap();
    let comment = renderer.comment(&decision, &facts, &[]).unwrap();
    assert_eq!(comment, format!("{COMMENT_MARKER}\nTier: High"));
    let broken = Renderer::new(&[("comment.md.j2".to_owned(), "{{ nope }".to_owned())]);
    assert!(broken.is_err());
}
