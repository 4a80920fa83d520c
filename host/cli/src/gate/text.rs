//! A unified diff of two texts, line by line, for showing how a plugin's
//! output changed. `similar` does the diffing (Myers' algorithm: memory
//! linear in the input, with a deadline), so a release gate over large
//! bodies neither builds a quadratic table nor runs unbounded.

use std::time::Duration;

use similar::TextDiff;

/// Texts longer than this many lines are summarized rather than diffed:
/// a reviewer reads hunks, not a 100,000-line listing.
pub const MAX_LINES: usize = 50_000;

/// How long one diff may search for the smallest edit script; past it the
/// diff is still correct, only less minimal.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// The unified diff of `old` and `new` with `context` lines around each
/// change, without file headers; empty when the texts are equal. Lines are
/// compared without their line endings, so a missing final newline is not
/// a difference.
pub fn unified(old: &str, new: &str, context: usize) -> String {
    if old == new {
        return String::new();
    }
    let (a, b) = (old.lines().count(), new.lines().count());
    if a > MAX_LINES || b > MAX_LINES {
        return format!(
            "@@ texts too long to diff: {a} and {b} lines, {} and {} bytes @@\n",
            old.len(),
            new.len()
        );
    }
    // Normalized to one trailing newline each, as `str::lines` reads them.
    let norm = |t: &str| t.lines().map(|l| format!("{l}\n")).collect::<String>();
    let (old, new) = (norm(old), norm(new));
    TextDiff::configure()
        .timeout(DEADLINE)
        .diff_lines(&old, &new)
        .unified_diff()
        .context_radius(context)
        .missing_newline_hint(false)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", 3), "");
    }

    #[test]
    fn a_changed_line_in_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified(old, new, 2),
            "@@ -3,5 +3,5 @@\n 3\n 4\n-5\n+five\n 6\n 7\n"
        );
    }

    #[test]
    fn far_apart_changes_make_two_hunks_and_near_ones_one() {
        let lines = |edit: &[(usize, &str)]| -> String {
            (1..=20)
                .map(|i| match edit.iter().find(|(n, _)| *n == i) {
                    Some((_, s)) => format!("{s}\n"),
                    None => format!("{i}\n"),
                })
                .collect()
        };
        let old = lines(&[]);
        let d = unified(&old, &lines(&[(2, "two"), (19, "nineteen")]), 1);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        let d = unified(&old, &lines(&[(5, "five"), (7, "seven")]), 1);
        assert_eq!(d.matches("@@ -").count(), 1, "{d}");
    }

    #[test]
    fn additions_and_removals_at_the_ends() {
        // Ranges as diff(1) writes them: a one-line range without its length.
        assert_eq!(unified("a\n", "a\nb\n", 3), "@@ -1 +1,2 @@\n a\n+b\n");
        assert_eq!(unified("a\nb\n", "b\n", 3), "@@ -1,2 +1 @@\n-a\n b\n");
        assert_eq!(unified("", "x\n", 3), "@@ -0,0 +1 @@\n+x\n");
    }

    #[test]
    fn large_texts_diff_in_linear_memory() {
        // 4,000 lines each way took a 64 MB table before; now far more is fine.
        let old: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 20000\n", "changed\n");
        let d = unified(&old, &new, 0);
        assert_eq!(d, "@@ -20001 +20001 @@\n-line 20000\n+changed\n");
    }

    #[test]
    fn a_missing_final_newline_is_no_difference() {
        assert_eq!(
            unified("a\nb", "a\nc\n", 1),
            "@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
        );
    }
}
