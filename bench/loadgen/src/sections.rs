//! Sections of BENCHMARKS.md that commands other than `make bench` write
//! (`make timing`, `make profile`): each replaces its own section and keeps
//! the rest of the file.

/// The level of a Markdown heading line (`## x` is 2), or 0.
fn level(line: &str) -> usize {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    if hashes > 0 && line[hashes..].starts_with(' ') {
        hashes
    } else {
        0
    }
}

/// Where the section under `heading` (a whole heading line) starts and ends
/// in `text`: up to the next heading of the same or a higher level.
fn find(text: &str, heading: &str) -> Option<(usize, usize)> {
    let wanted = level(heading);
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let l = level(line);
        match start {
            None if line.trim_end() == heading => start = Some(offset),
            Some(s) if l > 0 && l <= wanted => return Some((s, offset)),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|s| (s, text.len()))
}

/// The section under `heading`, heading included, if `text` has one.
pub fn get<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    find(text, heading).map(|(s, e)| &text[s..e])
}

/// `text` with the section under `heading` replaced by `section` (which
/// starts with that heading), or, if it has none, `section` put before the
/// first of the headings `before` that `text` has, or at the end.
pub fn splice(text: &str, heading: &str, section: &str, before: &[&str]) -> String {
    let section = section.trim_end();
    if let Some((start, end)) = find(text, heading) {
        let rest = &text[end..];
        return format!("{}{section}\n{}{rest}", &text[..start], if rest.is_empty() { "" } else { "\n" });
    }
    for b in before {
        if let Some((i, _)) = find(text, b) {
            return format!("{}\n\n{section}\n\n{}", text[..i].trim_end(), &text[i..]);
        }
    }
    format!("{}\n\n{section}\n", text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level("## Analysis\n"), 2);
        assert_eq!(level("### Run: before"), 3);
        assert_eq!(level("#hashtag"), 0);
        assert_eq!(level("text"), 0);
    }

    #[test]
    fn a_section_ends_at_the_next_heading_of_its_level_or_higher() {
        let text = "# B\n\n## P\n\nintro\n\n### a\n\nA\n\n### b\n\nB\n\n## Analysis\n\nx\n";
        assert_eq!(get(text, "## P"), Some("## P\n\nintro\n\n### a\n\nA\n\n### b\n\nB\n\n"));
        assert_eq!(get(text, "### a"), Some("### a\n\nA\n\n"));
        assert_eq!(get(text, "### b"), Some("### b\n\nB\n\n"));
        assert_eq!(get(text, "## Analysis"), Some("## Analysis\n\nx\n"));
        assert_eq!(get(text, "## None"), None);
    }

    #[test]
    fn splice_replaces_inserts_before_or_appends() {
        let text = "# B\n\ntable\n\n## Analysis\n\ntext\n";
        let with = splice(text, "## P", "## P\n\nnew\n", &["## Timing", "## Analysis"]);
        assert_eq!(with, "# B\n\ntable\n\n## P\n\nnew\n\n## Analysis\n\ntext\n");
        let newer = splice(&with, "## P", "## P\n\nnewer\n", &["## Analysis"]);
        assert_eq!(newer, "# B\n\ntable\n\n## P\n\nnewer\n\n## Analysis\n\ntext\n");
        assert_eq!(splice(&newer, "## P", "## P\n\nnewer\n", &[]), newer);
        let last = splice("# B\n\ntable\n", "## P", "## P\n\nx\n", &["## Analysis"]);
        assert_eq!(last, "# B\n\ntable\n\n## P\n\nx\n");
        assert_eq!(splice(&last, "## P", "## P\n\ny\n", &[]), "# B\n\ntable\n\n## P\n\ny\n");
        // A subsection is replaced within its section, the others kept.
        let runs = "## P\n\nintro\n\n### before\n\n1\n\n### after\n\n2\n\n## Analysis\n";
        assert_eq!(
            splice(runs, "### before", "### before\n\n3\n", &[]),
            "## P\n\nintro\n\n### before\n\n3\n\n### after\n\n2\n\n## Analysis\n"
        );
    }
}
