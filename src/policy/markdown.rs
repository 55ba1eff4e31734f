//! Markdown sections: is a heading present, and does anything follow it before the next
//! heading of the same or a higher level? Used for model cards and PR descriptions.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

/// Whether a required section is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionState {
    /// No heading with that title.
    Missing,
    /// The heading is there, but nothing (or only comments/whitespace) under it.
    Empty,
    /// Heading and content.
    Present,
}

/// Compares headings loosely: case, surrounding space and a trailing colon do not matter.
fn normalize(title: &str) -> String {
    title.trim().trim_end_matches(':').trim().to_lowercase()
}

/// Finds `title` among the headings of `markdown`.
pub fn section_state(markdown: &str, title: &str) -> SectionState {
    let wanted = normalize(title);
    // (level, heading text) of the section being read, and whether it has content so far.
    let mut current: Option<(pulldown_cmark::HeadingLevel, bool)> = None;
    let mut in_heading: Option<(pulldown_cmark::HeadingLevel, String)> = None;
    let mut found_empty = false;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                if let Some((open_level, has_content)) = current
                    && level <= open_level
                {
                    if has_content {
                        return SectionState::Present;
                    }
                    found_empty = true;
                    current = None;
                }
                in_heading = Some((level, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, text)) = in_heading.take()
                    && current.is_none()
                    && normalize(&text) == wanted
                {
                    current = Some((level, false));
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, heading)) = in_heading.as_mut() {
                    heading.push_str(&text);
                } else if let Some((_, has_content)) = current.as_mut() {
                    *has_content |= !text.trim().is_empty();
                }
            }
            // HTML (e.g. `<!-- fill me in -->` template comments) is not content.
            Event::Html(_) | Event::InlineHtml(_) => {}
            Event::Rule | Event::TaskListMarker(_) | Event::SoftBreak | Event::HardBreak => {}
            _ => {}
        }
    }
    match current {
        Some((_, true)) => SectionState::Present,
        Some((_, false)) => SectionState::Empty,
        None if found_empty => SectionState::Empty,
        None => SectionState::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "# Fraud model\n\n## Intended use\nScoring card payments.\n\n## Metrics\n\n<!-- fill in -->\n\n## Limitations:\n- Not for loans.\n### Details\nmore\n";

    #[test]
    fn finds_present_empty_and_missing_sections() {
        assert_eq!(section_state(CARD, "Intended use"), SectionState::Present);
        assert_eq!(section_state(CARD, "intended USE"), SectionState::Present);
        assert_eq!(section_state(CARD, "Metrics"), SectionState::Empty);
        assert_eq!(section_state(CARD, "Limitations"), SectionState::Present);
        assert_eq!(
            section_state(CARD, "Ethical considerations"),
            SectionState::Missing
        );
    }

    #[test]
    fn a_subsection_counts_as_content_of_its_parent() {
        let md = "## Rollback plan\n### Steps\nRevert the PR.\n## Other\n";
        assert_eq!(section_state(md, "Rollback plan"), SectionState::Present);
        let md = "## Rollback plan\n## Other\ntext\n";
        assert_eq!(section_state(md, "Rollback plan"), SectionState::Empty);
    }

    #[test]
    fn setext_headings_and_last_sections_work() {
        let md = "Rollback plan\n-------------\n\nRevert and redeploy v12.\n";
        assert_eq!(section_state(md, "Rollback plan"), SectionState::Present);
        assert_eq!(
            section_state("## Rollback plan\n", "Rollback plan"),
            SectionState::Empty
        );
    }
}
