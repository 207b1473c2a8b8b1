//! Community ID v1 (corelight/community-id-spec): the flow hash Zeek's `community_id` field holds, computed
//! for records whose conn.log lacks the field, so every alert carries `network.community_id`.
//!
//! `1:` + base64(SHA-1(seed (2 bytes, big endian) . source address . destination address . protocol (1
//! byte) . 0 (1 byte) . source port . destination port)), with the endpoints ordered so both directions
//! give the same hash. For ICMP the ports are the type and the code, and a request type pairs with its
//! reply type; an ICMP message without a counterpart is one-way and keeps its order.

use base64::Engine;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// ICMPv4 (request, reply) type pairs.
const ICMP4: &[(u16, u16)] = &[(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)];
/// ICMPv6 (request, reply) type pairs.
const ICMP6: &[(u16, u16)] = &[(128, 129), (133, 134), (135, 136), (130, 131), (144, 145)];

/// The Community ID of a flow, seed 0; `proto` is the IP protocol number. None when the two addresses are
/// of different families.
pub fn v1(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> Option<String> {
    let (sb, db): (Vec<u8>, Vec<u8>) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        _ => return None,
    };
    let (mut sport, mut dport, mut one_way) = (sport, dport, false);
    let icmp = match proto {
        1 => Some(ICMP4),
        58 => Some(ICMP6),
        _ => None,
    };
    if let Some(pairs) = icmp {
        // The type is in `sport`; the counterpart type takes the place of the destination port.
        let t = sport;
        match pairs.iter().find_map(|&(a, b)| {
            if t == a {
                Some(b)
            } else if t == b {
                Some(a)
            } else {
                None
            }
        }) {
            Some(other) => dport = other,
            None => one_way = true,
        }
    }
    let (a, b, pa, pb) = if one_way || (sb.as_slice(), sport) < (db.as_slice(), dport) {
        (sb, db, sport, dport)
    } else {
        std::mem::swap(&mut sport, &mut dport);
        (db, sb, sport, dport)
    };
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(&a);
    h.update(&b);
    h.update([proto, 0]);
    h.update(pa.to_be_bytes());
    h.update(pb.to_be_bytes());
    Some(format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    /// The vectors of Zeek's own test of `community_id_v1` (seed 0).
    #[test]
    fn zeek_test_vectors() {
        assert_eq!(
            v1(ip("1.2.3.4"), ip("5.6.7.8"), 6, 1122, 3344).as_deref(),
            Some("1:wCb3OG7yAFWelaUydu0D+125CLM=")
        );
        assert_eq!(
            v1(ip("1.2.3.4"), ip("5.6.7.8"), 17, 1122, 3344).as_deref(),
            Some("1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=")
        );
    }

    #[test]
    fn both_directions_give_one_id() {
        let a = v1(ip("10.0.0.1"), ip("8.8.8.8"), 6, 40000, 443);
        let b = v1(ip("8.8.8.8"), ip("10.0.0.1"), 6, 443, 40000);
        assert_eq!(a, b);
        let req = v1(ip("10.0.0.1"), ip("8.8.8.8"), 1, 8, 0);
        let rep = v1(ip("8.8.8.8"), ip("10.0.0.1"), 1, 0, 0);
        assert_eq!(req, rep);
        assert_eq!(v1(ip("10.0.0.1"), ip("::1"), 6, 1, 2), None);
    }
}
