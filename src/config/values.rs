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

/// `metrics.listen`: an IP address and port ("127.0.0.1:9787", "[::1]:9787"); no host names, so that what
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
