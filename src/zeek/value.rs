//! Zeek value syntax shared by the TSV and JSON readers: `\xNN` escapes, numbers, times, addresses, ports.

use std::borrow::Cow;
use std::net::IpAddr;

/// Decodes Zeek's `\xNN` escapes (the ASCII writer escapes separators, a leading `#`, and non-printable
/// bytes this way). Bytes that are not valid escapes are kept as they are.
pub fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 3 < raw.len() && raw[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex(raw[i + 2]), hex(raw[i + 3])) {
                out.push(h << 4 | l);
                i += 4;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A decimal number as Zeek writes `time`, `interval` and `double` (also accepts exponents).
pub fn parse_f64(raw: &[u8]) -> Option<f64> {
    if let Some(v) = fast_decimal(raw) {
        return Some(v);
    }
    let s = std::str::from_utf8(raw).ok()?;
    let v: f64 = s.parse().ok()?;
    v.is_finite().then_some(v)
}

/// The common `digits[.digits]` shape, when its digits as an integer fit a double's 53-bit mantissa and
/// there are at most 22 decimals: then `digits / 10^decimals` is one correctly rounded division of two exact
/// doubles, the same value `str::parse` gives (Clinger's fast path). `None`: use the general parser.
pub fn fast_decimal(raw: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    // At most 19 digits: every such integer fits a u64 (20 digits could wrap around and, in a release
    // build, look like a small exact integer).
    if raw.is_empty() || raw.len() > 20 || (raw.len() == 20 && !raw.contains(&b'.')) {
        return None;
    }
    let mut m: u64 = 0;
    let mut int_digits = 0usize;
    let mut i = 0;
    while i < raw.len() && raw[i].is_ascii_digit() {
        m = m * 10 + u64::from(raw[i] - b'0');
        int_digits += 1;
        i += 1;
    }
    if int_digits == 0 {
        return None;
    }
    let mut decimals = 0usize;
    if i < raw.len() {
        if raw[i] != b'.' {
            return None;
        }
        i += 1;
        while i < raw.len() && raw[i].is_ascii_digit() {
            m = m * 10 + u64::from(raw[i] - b'0');
            decimals += 1;
            i += 1;
        }
        if decimals == 0 || i != raw.len() {
            return None;
        }
    }
    // At most 19 digits were read (20 bytes with the dot), so `m` did not overflow.
    if m > 1 << 53 {
        return None;
    }
    Some(m as f64 / *POW10.get(decimals)?)
}

pub fn parse_u64(raw: &[u8]) -> Option<u64> {
    // At most 19 digits: every such integer fits a u64 (20 digits could wrap around and, in a release
    // build, look like a small exact integer).
    if raw.is_empty() || raw.len() > 20 || (raw.len() == 20 && !raw.contains(&b'.')) {
        return None;
    }
    let mut v: u64 = 0;
    for &b in raw {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

pub fn parse_port(raw: &[u8]) -> Option<u16> {
    parse_u64(raw).and_then(|v| u16::try_from(v).ok())
}

/// An IPv4 or IPv6 address; IPv4-mapped IPv6 (`::ffff:1.2.3.4`) becomes the IPv4 address.
pub fn parse_addr(raw: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = fast_ipv4(raw) {
        return Some(IpAddr::V4(v4));
    }
    let s = std::str::from_utf8(raw).ok()?;
    let ip: IpAddr = s.parse().ok()?;
    Some(ip.to_canonical())
}

/// Dotted-quad IPv4 in the strict form `str::parse` accepts (1 to 3 digits per octet, no leading zero,
/// at most 255), straight from the bytes; `None` for anything else (then the general parser decides).
fn fast_ipv4(raw: &[u8]) -> Option<std::net::Ipv4Addr> {
    if raw.len() < 7 || raw.len() > 15 {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, o) in octets.iter_mut().enumerate() {
        if n > 0 {
            if raw.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while i < raw.len() && i - start < 3 && raw[i].is_ascii_digit() {
            v = v * 10 + u32::from(raw[i] - b'0');
            i += 1;
        }
        let len = i - start;
        if len == 0 || (len > 1 && raw[start] == b'0') {
            return None;
        }
        *o = u8::try_from(v).ok()?;
    }
    (i == raw.len()).then(|| std::net::Ipv4Addr::from(octets))
}

pub fn parse_bool(raw: &[u8]) -> Option<bool> {
    match raw {
        b"T" | b"true" => Some(true),
        b"F" | b"false" => Some(false),
        _ => None,
    }
}

/// A time given as text: epoch seconds (`1517336086.165021`) or ISO 8601 / RFC 3339
/// (`2018-01-30T18:14:46.165021Z`, also with an offset or without a zone, read as UTC).
pub fn parse_time_text(raw: &[u8]) -> Option<f64> {
    if let Some(v) = parse_f64(raw) {
        return Some(v);
    }
    let s = std::str::from_utf8(raw).ok()?;
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_nanos()) / 1e9);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            let dt = dt.and_utc();
            return Some(dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_nanos()) / 1e9);
        }
    }
    None
}

/// An epoch number from JSON: seconds, or milliseconds when it is too large to be seconds
/// (Zeek's `JSON::TS_MILLIS` writes integer milliseconds).
pub fn epoch_number(v: f64) -> f64 {
    if v.abs() >= 1e11 {
        v / 1000.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decoded() {
        assert_eq!(&*unescape(b"a\\x09b"), b"a\tb");
        assert_eq!(&*unescape(b"\\x23x"), b"#x");
        assert_eq!(&*unescape(b"\\x2d"), b"-");
        assert_eq!(&*unescape(b"bad\\xZZ"), b"bad\\xZZ");
        assert_eq!(&*unescape(b"end\\x4"), b"end\\x4");
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time_text(b"1517336086.165021"),
            Some(1517336086.165021)
        );
        let iso = parse_time_text(b"2018-01-30T18:14:46.5Z").unwrap();
        assert!((iso - 1517336086.5).abs() < 1e-6);
        let off = parse_time_text(b"2018-01-30T19:14:46.5+01:00").unwrap();
        assert!((off - 1517336086.5).abs() < 1e-6);
        assert_eq!(parse_time_text(b"XXXXXXXXXX.XXXXXX"), None);
        assert_eq!(epoch_number(1517336086165.0), 1517336086.165);
    }

    #[test]
    fn fast_decimals_match_std() {
        for s in [
            "0",
            "0.0",
            "8.854541",
            "1713484795.133400",
            "9007199254740992",
            "9007199254740993",
            "0.1",
            "123456789.123456789",
            "1.",
            ".5",
            "1e5",
            "-1.5",
            "00012.50",
            "1.2.3",
            "",
            "99999999999999999999",
            // 2^64 + 1: wraps around to 1 in a u64.
            "18446744073709551617",
            "0.0000000000000000000001",
            "12345678901234567890.5",
        ] {
            let want = s.parse::<f64>().ok().filter(|v| v.is_finite());
            assert_eq!(parse_f64(s.as_bytes()), want, "{s}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr(b"10.0.0.1"), "10.0.0.1".parse().ok());
        assert_eq!(parse_addr(b"::ffff:10.0.0.1"), "10.0.0.1".parse().ok());
        assert_eq!(parse_addr(b"fe80::1"), "fe80::1".parse().ok());
        assert_eq!(
            parse_addr(b"2001:0db8:0:0:0:0:0:1"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_addr(b"10.0.0"), None);
        for bad in [
            "10.0.0.256",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.",
            "1..2.3",
            "1.2.3.4 ",
            "1111.2.3.4",
        ] {
            assert_eq!(parse_addr(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_addr(b"0.0.0.0"), "0.0.0.0".parse().ok());
        assert_eq!(
            parse_addr(b"255.255.255.255"),
            "255.255.255.255".parse().ok()
        );
        assert_eq!(parse_port(b"65536"), None);
        assert_eq!(parse_port(b"443"), Some(443));
    }
}
