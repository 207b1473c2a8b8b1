//! Allow lists: the files `[filter] allow_files` names, one entry per line, read into [`Allow`] entries.
//! Pure: the preflight (`crate::config::preflight`) finds and reads the files and hands their text here.
//!
//! A line is one of:
//! - a domain: `slack.com` (the name and every name under it) or `=slack.com` (the name only), as
//!   `[[allow]] domain`;
//! - a CIDR or an address: the destination (`dst`);
//! - `SRC DST`: two CIDRs or addresses separated by white space, a source and a destination.
//!
//! `#` starts a comment, to the end of the line; blank lines are skipped. A bad line is reported with its
//! (1-based) number and the reason, and every bad line of a file is reported, not only the first.

use super::{Allow, Domain, Match};
use crate::config::values::parse_net;

/// A bad line: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// The entries of one allow list, each with `comment` = `"{origin}:{line}"`, and its bad lines.
pub fn parse(origin: &str, text: &str) -> (Vec<Allow>, Vec<BadLine>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        match parse_line(content) {
            Ok((matches, domain)) => entries.push(Allow {
                matches,
                domain,
                comment: Some(format!("{origin}:{line}")),
            }),
            Err(reason) => bad.push(BadLine { line, reason }),
        }
    }
    (entries, bad)
}

fn parse_line(content: &str) -> Result<(Match, Option<Domain>), String> {
    let words: Vec<&str> = content.split_whitespace().collect();
    match words.as_slice() {
        [one] => {
            // Only digits and dots, or a digit or ':' first and a '/' or ':' (not a URL's "://") in it,
            // was meant as an address: its error says so rather than that it is no domain.
            let addressish = one.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                || (one.starts_with(|c: char| c.is_ascii_digit() || c == ':')
                    && one.contains(['/', ':'])
                    && !one.contains("://"));
            match parse_net(one) {
                Ok(dst) => Ok((
                    Match {
                        dst: Some(dst),
                        ..Match::default()
                    },
                    None,
                )),
                Err(e) if addressish => Err(e),
                Err(_) => {
                    let domain = Domain::parse(one).map_err(|e| {
                        format!("{e}; a line is a domain, a CIDR or address, or SRC DST")
                    })?;
                    Ok((Match::default(), Some(domain)))
                }
            }
        }
        [src, dst] => {
            let src = parse_net(src).map_err(|e| format!("source: {e}"));
            let dst = parse_net(dst).map_err(|e| format!("destination: {e}"));
            match (src, dst) {
                (Ok(src), Ok(dst)) => Ok((
                    Match {
                        src: Some(src),
                        dst: Some(dst),
                        ..Match::default()
                    },
                    None,
                )),
                (Err(a), Err(b)) => Err(format!("{a}; {b}")),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        _ => Err(format!(
            "{} words: a line is a domain, a CIDR or address, or SRC DST",
            words.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (domain, src, dst, comment) of an entry.
    type Row = (Option<String>, Option<String>, Option<String>, String);

    #[test]
    fn each_line_kind_comments_and_blanks() {
        let text = "# vendors\n\nslack.com\n=api.example.org  # exact only\n*.zoom.us\n\
                    203.0.113.0/24\n198.51.100.7\n2001:db8::1\n10.0.0.0/8 192.0.2.1\n   \n";
        let (entries, bad) = parse("/etc/a.list", text);
        assert_eq!(bad, vec![]);
        let got: Vec<Row> = entries
            .iter()
            .map(|a| {
                (
                    a.domain.as_ref().map(ToString::to_string),
                    a.matches.src.map(|n| n.to_string()),
                    a.matches.dst.map(|n| n.to_string()),
                    a.comment.clone().unwrap_or_default(),
                )
            })
            .collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            got,
            vec![
                (s("slack.com"), None, None, "/etc/a.list:3".into()),
                (s("=api.example.org"), None, None, "/etc/a.list:4".into()),
                (s("zoom.us"), None, None, "/etc/a.list:5".into()),
                (None, None, s("203.0.113.0/24"), "/etc/a.list:6".into()),
                (None, None, s("198.51.100.7/32"), "/etc/a.list:7".into()),
                (None, None, s("2001:db8::1/128"), "/etc/a.list:8".into()),
                (
                    None,
                    s("10.0.0.0/8"),
                    s("192.0.2.1/32"),
                    "/etc/a.list:9".into()
                ),
            ]
        );
        assert!(entries.iter().all(|a| a.matches.port.is_none()));
    }

    #[test]
    fn every_bad_line_with_its_number() {
        let text = "ok.example\nhttps://slack.com/x\n10.0.0.1/8\n300.1.2.3\n\
                    10.0.0.0/8 nope\na b c\n=\nfine.example # ok\nbad name\n";
        let (entries, bad) = parse("f", text);
        assert_eq!(entries.len(), 2);
        let lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 9], "{bad:?}");
        let reason = |l: usize| &bad.iter().find(|b| b.line == l).unwrap().reason;
        assert!(reason(2).contains("URL"), "{}", reason(2));
        assert!(reason(3).contains("host bits"), "{}", reason(3));
        assert!(reason(4).contains("not a CIDR"), "{}", reason(4));
        assert!(reason(5).contains("destination"), "{}", reason(5));
        assert!(reason(6).contains("3 words"), "{}", reason(6));
        assert!(reason(7).contains("empty"), "{}", reason(7));
        assert!(
            reason(9).contains("2 words") || reason(9).contains("source"),
            "{}",
            reason(9)
        );
    }
}
