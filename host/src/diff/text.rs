//! A unified diff of two texts, line by line (longest common subsequence),
//! for showing how a plugin's output changed.

/// Texts longer than this many lines are summarized rather than diffed.
pub const MAX_LINES: usize = 4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// The unified diff of `old` and `new` with `context` lines around each
/// change, without file headers; empty when the texts are equal.
pub fn unified(old: &str, new: &str, context: usize) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return format!(
            "@@ texts too long to diff: {} and {} lines, {} and {} bytes @@\n",
            a.len(),
            b.len(),
            old.len(),
            new.len()
        );
    }
    let ops = script(&a, &b);
    // Positions (in a and b) before each op, to number hunks.
    let mut pos = Vec::with_capacity(ops.len());
    let (mut i, mut j) = (0, 0);
    for &op in &ops {
        pos.push((i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut out = String::new();
    let mut k = 0;
    while k < changed.len() {
        // A hunk: changes closer than 2 × context lines belong together.
        let start = changed[k].saturating_sub(context);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] <= end + 2 * context + 1 {
            k += 1;
            end = changed[k];
        }
        let end = (end + context + 1).min(ops.len());
        let (a0, b0) = pos[start];
        let del = ops[start..end].iter().filter(|&&o| o != Op::Add).count();
        let add = ops[start..end].iter().filter(|&&o| o != Op::Del).count();
        // As diff(1): an empty range starts at the line before it.
        let start_of = |x0: usize, count: usize| if count == 0 { x0 } else { x0 + 1 };
        out.push_str(&format!(
            "@@ -{},{del} +{},{add} @@\n",
            start_of(a0, del),
            start_of(b0, add)
        ));
        for (n, &op) in ops.iter().enumerate().take(end).skip(start) {
            let (i, j) = pos[n];
            match op {
                Op::Same => out.push_str(&format!(" {}\n", a[i])),
                Op::Del => out.push_str(&format!("-{}\n", a[i])),
                Op::Add => out.push_str(&format!("+{}\n", b[j])),
            }
        }
        k += 1;
    }
    out
}

/// The edit script turning `a` into `b`: deletions before additions.
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    // Common prefix and suffix need no table.
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    // lcs[i][j]: LCS length of ma[i..] and mb[j..].
    let (n, m) = (ma.len(), mb.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if ma[i] == mb[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = vec![Op::Same; pre];
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && ma[i] == mb[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Del);
            i += 1;
        } else {
            ops.push(Op::Add);
            j += 1;
        }
    }
    ops.extend(std::iter::repeat_n(Op::Same, suf));
    ops
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
        assert_eq!(unified("a\n", "a\nb\n", 3), "@@ -1,1 +1,2 @@\n a\n+b\n");
        assert_eq!(unified("a\nb\n", "b\n", 3), "@@ -1,2 +1,1 @@\n-a\n b\n");
        assert_eq!(unified("", "x\n", 3), "@@ -0,0 +1,1 @@\n+x\n");
    }
}
