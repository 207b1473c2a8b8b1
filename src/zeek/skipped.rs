//! How many skipped lines are shown. `scan`, `replay` and the daemon show (print or log) the first
//! [`SHOWN_PER_FILE`] lines of each file that the parser skipped and only count the rest, so one damaged
//! file cannot flood a terminal or the journal. The callers keep their own messages; this keeps the count.

use std::collections::BTreeMap;

/// Skipped lines shown per file.
pub const SHOWN_PER_FILE: u64 = 20;

/// What to do with one skipped line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Show it: one of the first [`SHOWN_PER_FILE`] of its file.
    Line,
    /// The first one past the limit: not shown; a caller may say once that it goes quiet.
    FirstHidden,
    /// Counted only.
    Hidden,
}

/// The skipped lines counted per file (`K` names a file: an index, a path).
#[derive(Debug)]
pub struct SkippedLines<K> {
    per_file: BTreeMap<K, u64>,
}

impl<K> Default for SkippedLines<K> {
    fn default() -> Self {
        SkippedLines {
            per_file: BTreeMap::new(),
        }
    }
}

impl<K: Ord> SkippedLines<K> {
    /// Counts one skipped line of `file`.
    pub fn count(&mut self, file: K) -> Show {
        let n = self.per_file.entry(file).or_default();
        *n += 1;
        match *n {
            n if n <= SHOWN_PER_FILE => Show::Line,
            n if n == SHOWN_PER_FILE + 1 => Show::FirstHidden,
            _ => Show::Hidden,
        }
    }

    /// The files that had lines not shown, in order.
    pub fn hidden(&self) -> impl Iterator<Item = &K> {
        self.per_file
            .iter()
            .filter(|(_, n)| **n > SHOWN_PER_FILE)
            .map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_twenty_per_file_are_shown() {
        let mut s = SkippedLines::default();
        for _ in 0..SHOWN_PER_FILE {
            assert_eq!(s.count("a"), Show::Line);
        }
        assert_eq!(s.count("b"), Show::Line);
        assert_eq!(s.count("a"), Show::FirstHidden);
        assert_eq!(s.count("a"), Show::Hidden);
        assert_eq!(s.hidden().collect::<Vec<_>>(), [&"a"]);
    }
}
