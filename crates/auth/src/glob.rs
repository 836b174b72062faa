//! `*` wildcards (any run of characters), as role actions and ABAC `StringLike` use them.
//!
//! Written by hand because the usual crates (glob, globset, wildmatch) give `*` path or
//! character-class meanings these patterns don't have. Matched in time linear in the
//! pattern and the text: the literal pieces between stars are found left to right with
//! `str::find` (Two-Way), never by backtracking — a pattern of many stars can't make a
//! check slow (a hostile custom role or condition once could).

/// Whether `pattern` matches all of `text`, byte for byte.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let Some(last) = pieces.next_back() else {
        // No star: the pattern is the text.
        return rest.is_empty();
    };
    for piece in pieces.filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// [`matches()`], ignoring ASCII case.
pub(crate) fn matches_ignore_case(pattern: &str, text: &str) -> bool {
    matches(&pattern.to_ascii_lowercase(), &text.to_ascii_lowercase())
}

/// Whether every text `narrow` matches is matched by `wide` too (ASCII case ignored).
/// Sound, and exact for these patterns: `wide`'s literal pieces contain no `*`, so reading
/// `narrow`'s stars as ordinary characters, `wide` matches it only if its own stars absorb
/// them — and then whatever they stand for.
pub(crate) fn covers(wide: &str, narrow: &str) -> bool {
    matches_ignore_case(wide, narrow)
}

/// Whether some text is matched by both `a` and `b` (ASCII case ignored): a search of
/// the pair of positions the two patterns can be in after the same text, at most
/// (|a|+1)(|b|+1) of them.
pub(crate) fn overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase().into_bytes(), b.to_ascii_lowercase().into_bytes());
    let width = b.len() + 1;
    let mut seen = vec![false; (a.len() + 1) * width];
    let mut todo = vec![(0usize, 0usize)];
    while let Some((i, j)) = todo.pop() {
        if std::mem::replace(&mut seen[i * width + j], true) {
            continue;
        }
        if i == a.len() && j == b.len() {
            return true;
        }
        let (x, y) = (a.get(i), b.get(j));
        // A star may stand for nothing; a literal on one side is taken by the other's star
        // or by the same literal.
        if x == Some(&b'*') {
            todo.push((i + 1, j));
        }
        if y == Some(&b'*') {
            todo.push((i, j + 1));
        }
        match (x, y) {
            (Some(b'*'), Some(c)) if *c != b'*' => todo.push((i, j + 1)),
            (Some(c), Some(b'*')) if *c != b'*' => todo.push((i + 1, j)),
            (Some(c), Some(d)) if c == d && *c != b'*' => todo.push((i + 1, j + 1)),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("a", "a", true),
            ("a", "ab", false),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("*b*", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abcbc", true),
            ("a*c", "abcb", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("**x", "x", true),
            ("*/read", "Microsoft.X/read", true),
            ("*/read", "Microsoft.X/write", false),
        ] {
            assert_eq!(matches(p, t), want, "{p:?} on {t:?}");
        }
        assert!(matches_ignore_case("microsoft.*/READ", "Microsoft.X/read"));
    }

    #[test]
    fn containment_and_overlap_of_patterns() {
        assert!(covers("*", "Microsoft.X/*/read"));
        assert!(covers("microsoft.x/*", "Microsoft.X/registries/read"));
        assert!(covers("Microsoft.X/*", "Microsoft.X/*/read"));
        assert!(!covers("Microsoft.X/*/read", "Microsoft.X/*"));
        assert!(!covers("a*", "*"));
        assert!(!covers("*/read", "*"));
        assert!(overlap("*/read", "Microsoft.X/read"));
        assert!(overlap("*/read", "Microsoft.*"));
        assert!(!overlap("*/read", "Microsoft.Authorization/*/Delete"));
        assert!(!overlap("*/read", "Microsoft.Authorization/*/Write"));
        assert!(overlap("*", "Microsoft.Authorization/*/Write"));
        assert!(overlap("a*b", "*b*"));
        assert!(!overlap("a*", "b*"));
        assert!(overlap("", "*"));
        assert!(!overlap("", "a"));
    }

    #[test]
    fn many_stars_cost_nothing() {
        // A backtracking matcher takes seconds at 8 stars and years at 40 (this test would
        // hang); the bound is a hang guard, not a performance figure.
        let pattern = "*".repeat(40) + "x";
        let text = "a".repeat(10_000);
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &text));
        assert!(!matches_ignore_case(&pattern, &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
