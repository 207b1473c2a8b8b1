//! The value parsers every section shares: durations, CIDRs, listen addresses, `host:port`, and the
//! name tables of enum values (`one_of` reads one, `name_of` prints it back). Each returns the reason on
//! failure; the caller adds the key. They know nothing of any section.

use ipnet::IpNet;
use std::time::Duration;

/// A human duration: "90m", "1h30m", "1h 30m", "86400s". Zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"90m\" or \"1h30m\" ({e})"))?;
    if d.is_zero() {
        return Err(format!("{text:?} is zero; give a positive duration"));
    }
    Ok(d)
}

/// Formats a duration so that [`parse_duration`] reads it back, in the units a SOC thinks in (hours,
/// never days): "24h", "1h 30m", "5s", "1s 500ms".
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_string()
    } else {
        text.join(" ")
    }
}

/// `metrics.listen`: an IP address and port ("127.0.0.1:9787", "\[::1\]:9787"); no host names, so that what
/// is checked is what gets bound.
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("{text:?} is not an address and port like \"127.0.0.1:9787\" or \"[::1]:9787\"")
    })
}

/// A CIDR ("10.0.0.0/8") or a bare address (a /32 or /128). Host bits must be zero.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<std::net::IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => {
                return Err(format!(
                    "{text:?} is not a CIDR (\"10.0.0.0/8\") or an IP address"
                ))
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set; did you mean \"{}\"?",
            net.trunc()
        ));
    }
    Ok(net)
}

pub fn one_of<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|c| c.1)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|c| format!("{:?}", c.0)).collect();
            format!("{text:?} is not one of {}", names.join(", "))
        })
}

/// The name of `value` in `choices` (the inverse of [`one_of`]).
pub fn name_of<T: PartialEq + Copy>(value: T, choices: &[(&'static str, T)]) -> &'static str {
    choices
        .iter()
        .find(|c| c.1 == value)
        .map(|c| c.0)
        .unwrap_or("")
}

/// Checks `host:port` (`[v6]:port` for IPv6) and returns the host (without brackets).
pub fn split_host_port(text: &str) -> Result<String, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} is not host:port"));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(' ') {
        return Err(format!("{text:?}: the host is missing"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(host.to_string()),
        _ => Err(format!("{text:?}: {port:?} is not a port number (1-65535)")),
    }
}

/// Seconds in a day, for the bounds sections document in days.
pub const DAY: u64 = 24 * 3600;

/// `d` if it is at most `max` (one of the documented bounds), else why not: "721h is too long: at most
/// 720h (30 days)".
pub fn at_most(d: Duration, max: Duration) -> Result<Duration, String> {
    if d <= max {
        return Ok(d);
    }
    let days = match max.as_secs() / DAY {
        0 => String::new(),
        1 => " (a day)".to_string(),
        n => format!(" ({n} days)"),
    };
    Err(format!(
        "{} is too long: at most {}{days}",
        format_duration(d),
        format_duration(max)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn duration_forms() {
        for (text, secs) in [
            ("90m", 5400),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("86400s", 86400),
            ("24h", 86400),
            ("1d", 86400),
            ("5s", 5),
            (" 2h ", 7200),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "abc", "10", "1x", "-5m", "0s", "0h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        let c = load(&format!("{MINIMAL}[window]\nlength = \"1h30m\"\n"));
        assert_eq!(c.window.length, Duration::from_secs(5400));
    }

    #[test]
    fn format_duration_parses_back() {
        for secs in [1, 5, 59, 3600, 5400, 86400, 90061, 200 * 86400] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        for (d, text) in [
            (h(24), "24h"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::new(3661, 1_001_001), "1h 1m 1s 1ms 1us 1ns"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn cidrs_and_bare_addresses() {
        assert_eq!(parse_net("10.1.2.3"), Ok("10.1.2.3/32".parse().unwrap()));
        assert_eq!(
            parse_net("2001:db8::1"),
            Ok("2001:db8::1/128".parse().unwrap())
        );
        assert_eq!(parse_net("fd00::/8"), Ok("fd00::/8".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("10.0.0").is_err());
        assert!(parse_net("10.1.2.3/8").unwrap_err().contains("10.0.0.0/8"));
    }
}
