//! The `[context]` section: the bound on the context maps and the level modifiers, each of which can be
//! switched off (see [`super`] for the rules).
//!
//! ```toml
//! [context]
//! max_entries = 1000000          # per map (uid names, pair names, dns answers, prevalence)
//! named_tls_usual_port = true    # down
//! common_destination = true      # down
//! unidentified_protocol = true   # up
//! no_dns_answer = true           # up
//! rare_destination = true        # up
//! tls_ports = [443, 8443, 853, 993, 995, 465, 5223, 8883]
//! known_ports = [20, 21, 22, ...]
//! common_fraction = 0.5
//! rare_fraction = 0.02
//! min_sources = 10
//! ```

use super::ContextConfig;
use crate::config::diag::Reader;

/// `context.max_entries` at most: 100 million entries per map.
pub const MAX_ENTRIES: usize = 100_000_000;

fn ports(r: &mut Reader<'_, '_>, key: &str, default: &[u16]) -> Vec<u16> {
    let Some(list) = r.int_list(key) else {
        return default.to_vec();
    };
    let mut out = Vec::new();
    for (i, p) in list.into_iter().enumerate() {
        match u16::try_from(p) {
            Ok(p) if p > 0 => out.push(p),
            _ => r.push(
                &format!("{key}[{i}]"),
                format!("{p} is not a port (1 to 65535)"),
            ),
        }
    }
    out
}

fn fraction(r: &mut Reader<'_, '_>, key: &str, default: f64) -> f64 {
    match r.float(key) {
        None => default,
        Some(f) if (0.0..=1.0).contains(&f) => f,
        Some(f) => {
            r.push(key, format!("{f} is not a share between 0 and 1"));
            default
        }
    }
}

impl ContextConfig {
    /// Reads `[context]` from the file's top level, every default filled in.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> ContextConfig {
        let d = ContextConfig::default();
        r.section("context", |c| {
            let max_entries = match c.int("max_entries") {
                None => d.max_entries,
                Some(n) => match usize::try_from(n) {
                    Ok(n) if (1..=MAX_ENTRIES).contains(&n) => n,
                    _ => {
                        c.push(
                            "max_entries",
                            format!("{n} is out of range: 1 to {MAX_ENTRIES} (100 million)"),
                        );
                        d.max_entries
                    }
                },
            };
            let named_tls_usual_port = c.bool("named_tls_usual_port").unwrap_or(true);
            let common_destination = c.bool("common_destination").unwrap_or(true);
            let unidentified_protocol = c.bool("unidentified_protocol").unwrap_or(true);
            let no_dns_answer = c.bool("no_dns_answer").unwrap_or(true);
            let rare_destination = c.bool("rare_destination").unwrap_or(true);
            let tls_ports = ports(c, "tls_ports", &d.tls_ports);
            let known_ports = ports(c, "known_ports", &d.known_ports);
            let common_fraction = fraction(c, "common_fraction", d.common_fraction);
            let rare_fraction = fraction(c, "rare_fraction", d.rare_fraction);
            let min_sources = match c.int("min_sources") {
                None => d.min_sources,
                Some(n) => match usize::try_from(n) {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        c.push("min_sources", format!("{n} must be at least 1"));
                        d.min_sources
                    }
                },
            };
            if rare_fraction >= common_fraction {
                c.push(
                    "rare_fraction",
                    format!("{rare_fraction} must be below common_fraction ({common_fraction})"),
                );
            }
            ContextConfig {
                max_entries,
                tls_ports,
                known_ports,
                common_fraction,
                rare_fraction,
                min_sources,
                named_tls_usual_port,
                common_destination,
                unidentified_protocol,
                no_dns_answer,
                rare_destination,
            }
        })
        .unwrap_or(d)
    }

    /// `[context]` as `to_effective_toml` prints it.
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        let ports = |p: &[u16]| -> toml::Value {
            p.iter()
                .map(|p| toml::Value::Integer(i64::from(*p)))
                .collect::<Vec<_>>()
                .into()
        };
        let max = i64::try_from(self.max_entries).unwrap_or(i64::MAX);
        t.insert("max_entries".into(), max.into());
        t.insert(
            "named_tls_usual_port".into(),
            self.named_tls_usual_port.into(),
        );
        t.insert("common_destination".into(), self.common_destination.into());
        t.insert(
            "unidentified_protocol".into(),
            self.unidentified_protocol.into(),
        );
        t.insert("no_dns_answer".into(), self.no_dns_answer.into());
        t.insert("rare_destination".into(), self.rare_destination.into());
        t.insert("tls_ports".into(), ports(&self.tls_ports));
        t.insert("known_ports".into(), ports(&self.known_ports));
        t.insert("common_fraction".into(), self.common_fraction.into());
        t.insert("rare_fraction".into(), self.rare_fraction.into());
        let min = i64::try_from(self.min_sources).unwrap_or(i64::MAX);
        t.insert("min_sources".into(), min.into());
        t
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;

    #[test]
    fn context_defaults_switches_and_errors() {
        let c = load(MINIMAL);
        assert!(c.context.named_tls_usual_port && c.context.no_dns_answer);
        assert_eq!(c.context.tls_ports[0], 443);
        let c = load(&format!(
            "{MINIMAL}[context]\nunidentified_protocol = false\ntls_ports = [443, 4443]\ncommon_fraction = 0.6\n"
        ));
        assert!(!c.context.unidentified_protocol);
        assert_eq!(c.context.tls_ports, vec![443, 4443]);
        assert_eq!(c.context.common_fraction, 0.6);
        assert_eq!(load(&c.to_effective_toml()), c);
        assert_error(
            &format!("{MINIMAL}[context]\ntls_ports = [443, 70000]\n"),
            "context.tls_ports[1]",
            "not a port",
        );
        assert_error(
            &format!("{MINIMAL}[context]\nrare_fraction = 0.7\n"),
            "context.rare_fraction",
            "below common_fraction",
        );
        assert_error(
            &format!("{MINIMAL}[context]\ncommon_fraction = \"half\"\n"),
            "context.common_fraction",
            "expected a number",
        );
        assert_error(
            &format!("{MINIMAL}[context]\nmodifiers = true\n"),
            "context.modifiers",
            "unknown key",
        );
    }
}
