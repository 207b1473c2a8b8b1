//! Zeek's transport protocols (the `proto` field, Zeek's `transport_proto` enum) and the two one-byte codes
//! longconn keeps them as, defined here once:
//!
//! - the **IANA protocol number** ([`number`], [`name`]): the detector's group keys (`group_by =
//!   "pair_port"`), saved in checkpoints, so it must never change. Case-insensitive; `icmp6` and
//!   `ipv6-icmp` are 58; anything else is 0, named `unknown`.
//! - the **dense code** ([`code`], [`text`]): an index into [`TEXTS`], the exact texts `scan`'s flat tables
//!   encode (unset or empty as ""). Any other text has no code and its group goes to the general hash map,
//!   so a report prints every `proto` exactly as it was read.

/// Zeek's transport names.
pub const TCP: &str = "tcp";
pub const UDP: &str = "udp";
pub const ICMP: &str = "icmp";
pub const UNKNOWN_TRANSPORT: &str = "unknown_transport";

/// IANA protocol number for a Zeek transport name (0 when unknown).
pub fn number(name: &str) -> u8 {
    if name.eq_ignore_ascii_case(TCP) {
        6
    } else if name.eq_ignore_ascii_case(UDP) {
        17
    } else if name.eq_ignore_ascii_case(ICMP) {
        1
    } else if name.eq_ignore_ascii_case("icmp6") || name.eq_ignore_ascii_case("ipv6-icmp") {
        58
    } else {
        0
    }
}

/// Zeek transport name for a protocol number ("unknown" for 0 and others).
pub fn name(number: u8) -> &'static str {
    match number {
        6 => TCP,
        17 => UDP,
        1 => ICMP,
        58 => "icmp6",
        _ => "unknown",
    }
}

/// The `proto` texts that have a dense code, by code.
pub const TEXTS: [&str; 5] = ["", TCP, UDP, ICMP, UNKNOWN_TRANSPORT];

/// The dense code of a `proto` text in [`TEXTS`]; `None` for any other text.
pub fn code(text: &[u8]) -> Option<u8> {
    TEXTS
        .iter()
        .position(|p| p.as_bytes() == text)
        .map(|i| i as u8)
}

/// The text of a dense code (from [`code`]).
pub fn text(code: u8) -> &'static str {
    TEXTS[code as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_codes_round_trip() {
        for n in [1, 6, 17, 58] {
            assert_eq!(number(name(n)), n);
        }
        assert_eq!(number("TCP"), 6);
        assert_eq!(number("ipv6-icmp"), 58);
        assert_eq!((number("sctp"), name(0)), (0, "unknown"));
        for (i, t) in TEXTS.iter().enumerate() {
            assert_eq!(code(t.as_bytes()), Some(i as u8));
            assert_eq!(text(i as u8), *t);
        }
        assert_eq!(code(b"TCP"), None);
    }
}
