//! The `[window]` section: the window's length, what a group is, and the bound on groups held.

use super::{GroupBy, WindowConfig};
use crate::config::diag::Reader;
use crate::config::values::{at_most, format_duration, name_of, one_of, parse_duration, DAY};
use std::time::Duration;

const DEFAULT_LENGTH: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_GROUPS: usize = 1_000_000;
/// `window.length`: 30 days; the window's state grows with it.
pub const MAX_WINDOW_LENGTH: Duration = Duration::from_secs(30 * DAY);
/// `window.max_groups`: 100 million groups (some tens of GiB of memory).
pub const MAX_MAX_GROUPS: usize = 100_000_000;
const GROUP_BY: &[(&str, GroupBy)] = &[
    ("pair", GroupBy::Pair),
    ("pair_port", GroupBy::PairPort),
    ("name", GroupBy::Name),
];

impl WindowConfig {
    /// Reads `[window]` from the file's top level, every default filled in.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> WindowConfig {
        r.section("window", |w| {
            let length = w.str("length");
            let group_by = w.str("group_by");
            let max_groups = w.int("max_groups");
            WindowConfig {
                length: length
                    .and_then(|t| w.parse("length", parse_duration(t)))
                    .and_then(|d| w.parse("length", at_most(d, MAX_WINDOW_LENGTH)))
                    .unwrap_or(DEFAULT_LENGTH),
                group_by: group_by
                    .and_then(|t| w.parse("group_by", one_of(t, GROUP_BY)))
                    .unwrap_or(GroupBy::Pair),
                max_groups: match max_groups {
                    None => DEFAULT_MAX_GROUPS,
                    Some(n) => match usize::try_from(n) {
                        Ok(n) if (1..=MAX_MAX_GROUPS).contains(&n) => n,
                        _ if n < 1 => {
                            w.push("max_groups", format!("{n} must be at least 1"));
                            DEFAULT_MAX_GROUPS
                        }
                        _ => {
                            w.push(
                                "max_groups",
                                format!("{n} is too many: at most {MAX_MAX_GROUPS} (100 million)"),
                            );
                            DEFAULT_MAX_GROUPS
                        }
                    },
                },
            }
        })
        .unwrap_or(WindowConfig {
            length: DEFAULT_LENGTH,
            group_by: GroupBy::Pair,
            max_groups: DEFAULT_MAX_GROUPS,
        })
    }

    /// `[window]` as `to_effective_toml` prints it.
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("length".into(), format_duration(self.length).into());
        t.insert("group_by".into(), name_of(self.group_by, GROUP_BY).into());
        let max = i64::try_from(self.max_groups).unwrap_or(i64::MAX);
        t.insert("max_groups".into(), max.into());
        t
    }
}
