//! The rules' sections: `[single]` and `[cumulative]` (levels, re-alerting, the measure), `[filter]`,
//! `[[allow]]` and `[[override]]`, read into the rules' own types, and printed back for
//! `longconn check`.

use super::{
    Allow, CumulativeConfig, Direction, Domain, FilterConfig, Level, Levels, Match, Measure,
    Override, DEFAULT_INTERIM_TIMEOUT, DEFAULT_INTERNAL, DEFAULT_NEVER,
};
use crate::config::diag::{Diagnostics, Reader};
use crate::config::values::{
    at_most, format_duration, name_of, one_of, parse_duration, parse_net, DAY,
};
use ipnet::IpNet;
use std::time::Duration;

/// Every level threshold (`single`, `cumulative`, `override`): a year.
pub const MAX_LEVEL: Duration = Duration::from_secs(365 * DAY);
/// `cumulative.realert_after`: a year.
pub const MAX_REALERT_AFTER: Duration = Duration::from_secs(365 * DAY);
/// `cumulative.interim_timeout`: 30 days (the interim log packages report at least every 3 days).
pub const MAX_INTERIM_TIMEOUT: Duration = Duration::from_secs(30 * DAY);

const DEFAULT_LEVELS: [Option<Duration>; 4] = [
    Some(Duration::from_secs(3600)),
    Some(Duration::from_secs(8 * 3600)),
    Some(Duration::from_secs(12 * 3600)),
    Some(Duration::from_secs(24 * 3600)),
];
/// Zeek's `conn_state` values, the only ones `filter.ignore_states` accepts.
const CONN_STATES: &[&str] = &[
    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH",
];
const PROTOS: &[&str] = &["tcp", "udp", "icmp"];
pub const MEASURES: &[(&str, Measure)] = &[("sum", Measure::Sum), ("covered", Measure::Covered)];
const DIRECTIONS: &[(&str, Direction)] = &[
    ("outbound", Direction::Outbound),
    ("inbound", Direction::Inbound),
    ("internal", Direction::Internal),
    ("external", Direction::External),
];

/// Everything the rules read from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    pub single: Levels,
    pub cumulative: CumulativeConfig,
    pub filter: FilterConfig,
    pub allow: Vec<Allow>,
    pub overrides: Vec<Override>,
}

/// A levels table as written: low, medium, high, critical.
type RawLevels<'t> = [Option<&'t str>; 4];

fn read_levels<'t>(r: &mut Reader<'_, 't>) -> RawLevels<'t> {
    [
        r.str("low"),
        r.str("medium"),
        r.str("high"),
        r.str("critical"),
    ]
}

/// Parses a levels table at `key`; set levels must be positive and strictly increasing.
fn check_levels(d: &mut Diagnostics, key: &str, raw: &RawLevels<'_>) -> [Option<Duration>; 4] {
    let mut out = [None; 4];
    let mut prev: Option<(Level, Duration)> = None;
    for (level, text) in Level::ALL.into_iter().zip(raw) {
        let Some(text) = text else { continue };
        let level_key = format!("{key}.{}", level.name());
        let Some(dur) = d.check(&level_key, parse_duration(text)) else {
            continue;
        };
        if d.check(&level_key, at_most(dur, MAX_LEVEL)).is_none() {
            continue;
        }
        if let Some((prev_level, prev_d)) = prev {
            if dur <= prev_d {
                d.push(
                    &level_key,
                    format!(
                        "{} must be greater than {} ({}): levels must increase from low to critical",
                        format_duration(dur),
                        prev_level.name(),
                        format_duration(prev_d)
                    ),
                );
            }
        }
        prev = Some((level, dur));
        out[level as usize] = Some(dur);
    }
    out
}

fn levels_to_toml(thresholds: &[Option<Duration>; 4]) -> toml::Table {
    Level::ALL
        .into_iter()
        .zip(thresholds)
        .filter_map(|(level, t)| t.map(|t| (level.name().to_string(), format_duration(t).into())))
        .collect()
}

fn nets(d: &mut Diagnostics, key: &str, list: Option<&[&str]>, default: &[&str]) -> Vec<IpNet> {
    match list {
        None => default.iter().filter_map(|s| s.parse().ok()).collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| d.check(&format!("{key}[{i}]"), parse_net(s)))
            .collect(),
    }
}

/// The match keys of an `[[allow]]` or `[[override]]` as written.
struct RawMatch<'t> {
    src: Option<&'t str>,
    dst: Option<&'t str>,
    port: Option<i64>,
    proto: Option<&'t str>,
}

fn read_match<'t>(r: &mut Reader<'_, 't>) -> RawMatch<'t> {
    RawMatch {
        src: r.str("src"),
        dst: r.str("dst"),
        port: r.int("port"),
        proto: r.str("proto"),
    }
}

impl RawMatch<'_> {
    fn is_empty(&self) -> bool {
        self.src.is_none() && self.dst.is_none() && self.port.is_none() && self.proto.is_none()
    }
}

fn check_match(d: &mut Diagnostics, key: &str, m: &RawMatch<'_>) -> Match {
    let src = m
        .src
        .and_then(|s| d.check(&format!("{key}.src"), parse_net(s)));
    let dst = m
        .dst
        .and_then(|s| d.check(&format!("{key}.dst"), parse_net(s)));
    let port = m.port.and_then(|port| match u16::try_from(port) {
        Ok(p) => Some(p),
        Err(_) => {
            d.push(
                &format!("{key}.port"),
                format!("{port} is not a port (0 to 65535)"),
            );
            None
        }
    });
    let proto = m.proto.and_then(|proto| {
        let proto = proto.trim().to_ascii_lowercase();
        if PROTOS.contains(&proto.as_str()) {
            Some(proto)
        } else {
            d.push(
                &format!("{key}.proto"),
                format!("{proto:?} is not one of \"tcp\", \"udp\", \"icmp\""),
            );
            None
        }
    });
    Match {
        src,
        dst,
        port,
        proto,
    }
}

fn match_to_toml(m: &Match, t: &mut toml::Table) {
    if let Some(n) = m.src {
        t.insert("src".into(), n.to_string().into());
    }
    if let Some(n) = m.dst {
        t.insert("dst".into(), n.to_string().into());
    }
    if let Some(p) = m.port {
        t.insert("port".into(), i64::from(p).into());
    }
    if let Some(p) = &m.proto {
        t.insert("proto".into(), p.clone().into());
    }
}

impl RulesConfig {
    /// Reads `[single]`, `[cumulative]`, `[filter]`, `[[allow]]` and `[[override]]` from the file's top
    /// level, every default filled in.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> RulesConfig {
        let single = r
            .section("single", |s| {
                s.section("levels", |l| {
                    let raw = read_levels(l);
                    let key = l.key("");
                    check_levels(l.diag(), &key, &raw)
                })
            })
            .flatten()
            .unwrap_or(DEFAULT_LEVELS);

        let cumulative = r
            .section("cumulative", |c| {
                let levels = c
                    .section("levels", |l| {
                        let raw = read_levels(l);
                        let key = l.key("");
                        check_levels(l.diag(), &key, &raw)
                    })
                    .unwrap_or(DEFAULT_LEVELS);
                let realert_after = c.str("realert_after").and_then(|t| {
                    let d = c.parse("realert_after", parse_duration(t))?;
                    c.parse("realert_after", at_most(d, MAX_REALERT_AFTER))
                });
                let measure = c
                    .str("measure")
                    .and_then(|t| c.parse("measure", one_of(t, MEASURES)))
                    .unwrap_or_default();
                let interim_timeout = c
                    .str("interim_timeout")
                    .and_then(|t| {
                        let d = c.parse("interim_timeout", parse_duration(t))?;
                        c.parse("interim_timeout", at_most(d, MAX_INTERIM_TIMEOUT))
                    })
                    .unwrap_or(DEFAULT_INTERIM_TIMEOUT);
                CumulativeConfig {
                    levels: Levels { thresholds: levels },
                    realert_after,
                    measure,
                    interim_timeout,
                }
            })
            .unwrap_or(CumulativeConfig {
                levels: Levels {
                    thresholds: DEFAULT_LEVELS,
                },
                realert_after: None,
                measure: Measure::default(),
                interim_timeout: DEFAULT_INTERIM_TIMEOUT,
            });

        let filter = r
            .section("filter", read_filter)
            .unwrap_or_else(|| read_filter_raw(r.diag(), "filter", &RawFilter::default()));

        let (allow, ok) = r.tables("allow", |a| {
            let m = read_match(a);
            let domain = a.str("domain");
            let comment = a.str("comment").map(str::to_string);
            let key = a.key("");
            let d = a.diag();
            if m.is_empty() && domain.is_none() {
                d.missing(
                    &key,
                    "no match key: give at least one of domain, src, dst, port, proto",
                );
            }
            let domain = domain.and_then(|t| d.check(&format!("{key}.domain"), Domain::parse(t)));
            Allow {
                matches: check_match(d, &key, &m),
                domain,
                comment,
            }
        });
        let allow = if ok { allow } else { Vec::new() };

        let (overrides, ok) = r.tables("override", |o| {
            let m = read_match(o);
            let single = o.section("single", read_levels);
            let cumulative = o.section("cumulative", read_levels);
            let key = o.key("");
            let d = o.diag();
            if m.is_empty() {
                d.missing(
                    &key,
                    "no match key: give at least one of src, dst, port, proto",
                );
            }
            let matches = check_match(d, &key, &m);
            let single_t = single
                .as_ref()
                .map(|l| check_levels(d, &format!("{key}.single"), l))
                .unwrap_or_default();
            let cumulative_t = cumulative
                .as_ref()
                .map(|l| check_levels(d, &format!("{key}.cumulative"), l))
                .unwrap_or_default();
            let given =
                |l: &Option<RawLevels<'_>>| l.is_some_and(|l| l.iter().any(Option::is_some));
            if !given(&single) && !given(&cumulative) {
                d.missing(
                    &key,
                    "no thresholds: give single = { ... } and/or cumulative = { ... }",
                );
            }
            Override {
                matches,
                single: single_t,
                cumulative: cumulative_t,
            }
        });
        let overrides = if ok { overrides } else { Vec::new() };

        RulesConfig {
            single: Levels { thresholds: single },
            cumulative,
            filter,
            allow,
            overrides,
        }
    }

    /// The sections as `to_effective_toml` prints them, in file order.
    pub fn to_toml(&self, t: &mut toml::Table) {
        let mut single = toml::Table::new();
        single.insert(
            "levels".into(),
            levels_to_toml(&self.single.thresholds).into(),
        );
        t.insert("single".into(), single.into());

        let c = &self.cumulative;
        let mut cumulative = toml::Table::new();
        cumulative.insert("levels".into(), levels_to_toml(&c.levels.thresholds).into());
        if let Some(d) = c.realert_after {
            cumulative.insert("realert_after".into(), format_duration(d).into());
        }
        cumulative.insert("measure".into(), name_of(c.measure, MEASURES).into());
        cumulative.insert(
            "interim_timeout".into(),
            format_duration(c.interim_timeout).into(),
        );
        t.insert("cumulative".into(), cumulative.into());

        let f = &self.filter;
        let nets = |list: &[IpNet]| -> toml::Value {
            list.iter()
                .map(|n| toml::Value::from(n.to_string()))
                .collect::<Vec<_>>()
                .into()
        };
        let mut filter = toml::Table::new();
        filter.insert("internal".into(), nets(&f.internal));
        let directions: Vec<toml::Value> = f
            .directions
            .iter()
            .map(|d| name_of(*d, DIRECTIONS).into())
            .collect();
        filter.insert("directions".into(), directions.into());
        filter.insert("never".into(), nets(&f.never));
        filter.insert("always".into(), nets(&f.always));
        let states: Vec<toml::Value> = f.ignore_states.iter().map(|s| s.clone().into()).collect();
        filter.insert("ignore_states".into(), states.into());
        if !f.allow_files.is_empty() {
            let files: Vec<toml::Value> = f.allow_files.iter().map(|s| s.clone().into()).collect();
            filter.insert("allow_files".into(), files.into());
        }
        t.insert("filter".into(), filter.into());

        if !self.allow.is_empty() {
            let list: Vec<toml::Value> = self
                .allow
                .iter()
                .map(|a| {
                    let mut t = toml::Table::new();
                    if let Some(d) = &a.domain {
                        t.insert("domain".into(), d.to_string().into());
                    }
                    match_to_toml(&a.matches, &mut t);
                    if let Some(c) = &a.comment {
                        t.insert("comment".into(), c.clone().into());
                    }
                    t.into()
                })
                .collect();
            t.insert("allow".into(), list.into());
        }
        if !self.overrides.is_empty() {
            let list: Vec<toml::Value> = self
                .overrides
                .iter()
                .map(|o| {
                    let mut t = toml::Table::new();
                    match_to_toml(&o.matches, &mut t);
                    for (name, levels) in [("single", &o.single), ("cumulative", &o.cumulative)] {
                        if levels.iter().any(Option::is_some) {
                            t.insert(name.into(), levels_to_toml(levels).into());
                        }
                    }
                    t.into()
                })
                .collect();
            t.insert("override".into(), list.into());
        }
    }
}

/// `[filter]` as written.
#[derive(Default)]
struct RawFilter<'t> {
    internal: Option<Vec<&'t str>>,
    directions: Option<Vec<&'t str>>,
    never: Option<Vec<&'t str>>,
    always: Option<Vec<&'t str>>,
    ignore_states: Option<Vec<&'t str>>,
    allow_files: Option<Vec<&'t str>>,
}

fn read_filter(r: &mut Reader<'_, '_>) -> FilterConfig {
    let raw = RawFilter {
        internal: r.str_list("internal"),
        directions: r.str_list("directions"),
        never: r.str_list("never"),
        always: r.str_list("always"),
        ignore_states: r.str_list("ignore_states"),
        allow_files: r.str_list("allow_files"),
    };
    read_filter_raw(r.diag(), "filter", &raw)
}

fn read_filter_raw(d: &mut Diagnostics, key: &str, raw: &RawFilter<'_>) -> FilterConfig {
    let directions = match &raw.directions {
        None => DIRECTIONS.iter().map(|d| d.1).collect(),
        Some(list) => {
            if list.is_empty() {
                d.push(
                    &format!("{key}.directions"),
                    "is empty, so no connection would ever count; give at least one of \"outbound\", \"inbound\", \"internal\", \"external\"",
                );
            }
            let mut out: Vec<Direction> = Vec::new();
            for (i, t) in list.iter().enumerate() {
                let k = format!("{key}.directions[{i}]");
                if let Some(dir) = d.check(&k, one_of(t, DIRECTIONS)) {
                    if !out.contains(&dir) {
                        out.push(dir);
                    }
                }
            }
            out
        }
    };
    let mut ignore_states = Vec::new();
    for (i, t) in raw.ignore_states.iter().flatten().enumerate() {
        let state = t.trim().to_ascii_uppercase();
        if CONN_STATES.contains(&state.as_str()) {
            if !ignore_states.contains(&state) {
                ignore_states.push(state);
            }
        } else {
            d.push(
                &format!("{key}.ignore_states[{i}]"),
                format!(
                    "{t:?} is not a Zeek conn_state ({})",
                    CONN_STATES.join(", ")
                ),
            );
        }
    }
    // Only the patterns are checked here: the files are read where the config is used (the preflight).
    let mut allow_files = Vec::new();
    for (i, t) in raw.allow_files.iter().flatten().enumerate() {
        match glob::Pattern::new(t) {
            Ok(_) if t.trim().is_empty() => d.push(&format!("{key}.allow_files[{i}]"), "is empty"),
            Ok(_) => allow_files.push(t.to_string()),
            Err(e) => d.push(
                &format!("{key}.allow_files[{i}]"),
                format!("{t:?} is not a glob pattern: {e}"),
            ),
        }
    }
    FilterConfig {
        internal: nets(
            d,
            &format!("{key}.internal"),
            raw.internal.as_deref(),
            DEFAULT_INTERNAL,
        ),
        directions,
        never: nets(
            d,
            &format!("{key}.never"),
            raw.never.as_deref(),
            DEFAULT_NEVER,
        ),
        always: nets(d, &format!("{key}.always"), raw.always.as_deref(), &[]),
        ignore_states,
        allow_files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn cumulative_measure_and_interim_timeout() {
        let c = load(MINIMAL);
        assert_eq!(c.cumulative.measure, Measure::Covered);
        assert_eq!(c.cumulative.interim_timeout, DEFAULT_INTERIM_TIMEOUT);
        let c = load(&format!(
            "{MINIMAL}[cumulative]\nmeasure = \"sum\"\ninterim_timeout = \"2h\"\n"
        ));
        assert_eq!(c.cumulative.measure, Measure::Sum);
        assert_eq!(c.cumulative.interim_timeout, Duration::from_secs(7200));
        assert_eq!(load(&c.to_effective_toml()), c);
        assert_error(
            &format!("{MINIMAL}[cumulative]\nmeasure = \"union\"\n"),
            "cumulative.measure",
            "not one of",
        );
        assert_error(
            &format!("{MINIMAL}[cumulative]\ninterim_timeout = \"soon\"\n"),
            "cumulative.interim_timeout",
            "",
        );
    }

    #[test]
    fn given_levels_table_replaces_defaults() {
        let c = load(&format!(
        "{MINIMAL}[single]\nlevels = {{ high = \"2h\" }}\n[cumulative]\nlevels = {{}}\nrealert_after = \"12h\"\n"
    ));
        assert_eq!(c.single.thresholds, [None, None, Some(h(2)), None]);
        assert_eq!(c.cumulative.levels.thresholds, [None; 4]);
        assert_eq!(c.cumulative.realert_after, Some(h(12)));
    }

    #[test]
    fn bad_cidrs() {
        assert_error(
            &format!("{MINIMAL}[filter]\ninternal = [\"10.0.0.0/8\", \"x\", \"300.0.0.0/8\"]\n"),
            "filter.internal[2]",
            "not a CIDR",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\nalways = [\"10.0.0.1/8\"]\n"),
            "filter.always[0]",
            "host bits",
        );
        assert_error(
            &format!("{MINIMAL}[[allow]]\nsrc = \"10.0.0.0/8\"\n[[allow]]\ndst = \"nope\"\n"),
            "allow[1].dst",
            "not a CIDR",
        );
    }

    #[test]
    fn levels_must_increase() {
        assert_error(
            &format!(
                "{MINIMAL}[single]\nlevels = {{ low = \"1h\", medium = \"10h\", high = \"8h\" }}\n"
            ),
            "single.levels.high",
            "greater than medium",
        );
        assert_error(
            &format!("{MINIMAL}[cumulative]\nlevels = {{ low = \"2h\", critical = \"2h\" }}\n"),
            "cumulative.levels.critical",
            "greater than low",
        );
        assert_error(
            &format!(
                "{MINIMAL}[[override]]\nport = 22\nsingle = {{ low = \"5h\", medium = \"1h\" }}\n"
            ),
            "override[0].single.medium",
            "greater than low",
        );
    }

    #[test]
    fn allow_and_override_need_match_keys() {
        assert_error(
            &format!("{MINIMAL}[[allow]]\ncomment = \"all\"\n"),
            "allow[0]",
            "no match key",
        );
        assert_error(
            &format!("{MINIMAL}[[override]]\nsingle = {{ low = \"2h\" }}\n"),
            "override[0]",
            "no match key",
        );
        assert_error(
            &format!("{MINIMAL}[[override]]\nport = 22\n"),
            "override[0]",
            "no thresholds",
        );
        assert_error(
            &format!("{MINIMAL}[[override]]\nport = 22\nsingle = {{}}\n"),
            "override[0]",
            "no thresholds",
        );
    }

    #[test]
    fn allow_domain_and_allow_files() {
        let c = load(&format!(
            "{MINIMAL}[filter]\nallow_files = [\"/etc/longconn/allow.d/*.list\"]\n\
             [[allow]]\ndomain = \"Slack.COM\"\n[[allow]]\ndomain = \"=api.example.org\"\nport = 443\n\
             [[allow]]\ndomain = \"*.zoom.us\"\n"
        ));
        let domains: Vec<String> = c
            .allow
            .iter()
            .filter_map(|a| a.domain.as_ref().map(ToString::to_string))
            .collect();
        assert_eq!(domains, ["slack.com", "=api.example.org", "zoom.us"]);
        assert_eq!(c.allow[1].matches.port, Some(443));
        assert_eq!(c.filter.allow_files, ["/etc/longconn/allow.d/*.list"]);
        // Loading reads no allow list.
        assert!(c.allow_listed.is_empty());
        assert_eq!(load(&c.to_effective_toml()), c);
    }

    #[test]
    fn bad_domains_and_patterns() {
        for (value, reason) in [
            ("", "is empty"),
            ("=", "is empty"),
            ("https://slack.com", "URL"),
            ("slack.com/path", "URL"),
            ("slack .com", "space"),
            ("a.*.slack.com", "wildcard"),
            ("*slack.com", "wildcard"),
            ("slack.com:443", "port"),
            (".slack.com", "empty label"),
            ("slack..com", "empty label"),
            ("sl@ck.com", "character"),
        ] {
            assert_error(
                &format!("{MINIMAL}[[allow]]\ndomain = {value:?}\n"),
                "allow[0].domain",
                reason,
            );
        }
        assert_error(
            &format!("{MINIMAL}[[allow]]\ndomain = 7\n"),
            "allow[0].domain",
            "",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\nallow_files = [\"/a/*.list\", \"/b/[x\"]\n"),
            "filter.allow_files[1]",
            "not a glob pattern",
        );
        // A domain alone is a match key.
        load(&format!("{MINIMAL}[[allow]]\ndomain = \"slack.com\"\n"));
    }
}
