//! Tests for [`crate::detector::cold`]: uids round trip exactly, packed or not, and are equal when their
//! strings are; the ring keeps the newest [`MAX_OLDER`], oldest first, through its growths; the sizes a
//! group rests on.

use super::*;
use std::collections::VecDeque;

/// Uids of every form: Zeek's, empty, the longest packed, too long, other characters, not ASCII.
const ODD: &[&str] = &[
    "CHhAvVGS1DHFjwGM9",
    "C4J4Th3PJpwUYZZ6gc",
    "",
    "C",
    "00000000000000000000",
    "zzzzzzzzzzzzzzzzzzzz",
    "Czzzzzzzzzzzzzzzzzzzz",
    "C1234567890123456789012345678901234567890",
    "C-1",
    "C_x",
    "uid with spaces",
    "Cé9",
    "0",
];

#[test]
fn every_byte_has_the_digit_of_its_place_in_the_alphabet_or_none() {
    for c in 0..=255u8 {
        let want = B62.iter().position(|&x| x == c).map(|i| i as u8);
        assert_eq!(b62(c), want, "byte {c:#x}");
        assert_eq!(want.is_some(), c.is_ascii_alphanumeric(), "byte {c:#x}");
    }
}

#[test]
fn uids_round_trip_exactly_packed_or_not() {
    for s in ODD {
        let u = Uid::new(s);
        assert_eq!(u.to_compact(), *s);
        let packable = s.len() <= PACKED_MAX && s.bytes().all(|c| b62(c).is_some());
        assert_eq!(u.is_packed(), packable, "{s:?}");
        assert_eq!(format!("{u:?}"), format!("{s:?}"));
    }
    assert!(Uid::new("CHhAvVGS1DHFjwGM9").is_packed());
    assert!(Uid::new("").is_packed());
    assert_eq!(Uid::new(""), Uid::EMPTY);
}

#[test]
fn uids_are_equal_when_their_strings_are() {
    for a in ODD {
        for b in ODD {
            assert_eq!(Uid::new(a) == Uid::new(b), a == b, "{a:?} {b:?}");
        }
    }
    // Leading zero digits are not lost in the packing.
    assert_ne!(Uid::new("0C"), Uid::new("C"));
    assert_ne!(Uid::new("00"), Uid::new("0"));
}

/// The figures a group's size rests on (see also the detector's test of its slot).
#[test]
fn sizes() {
    assert_eq!(std::mem::size_of::<Uid>(), 16);
    assert_eq!(std::mem::size_of::<Option<Uid>>(), 16);
    assert_eq!(std::mem::size_of::<Option<(Uid, i64)>>(), 24);
    assert_eq!(std::mem::size_of::<Option<ColdBox>>(), 16);
}

fn older(c: &ColdBox) -> Vec<String> {
    c.older().map(|u| u.to_compact().to_string()).collect()
}

#[test]
fn the_ring_keeps_the_newest_max_older_oldest_first() {
    let mut c = ColdBox::new(1);
    let mut model: VecDeque<String> = VecDeque::new();
    for i in 0..3 * MAX_OLDER + 7 {
        let s = match i % 5 {
            0 => format!("C{i:017}"),
            1 => format!("odd-{i}"),
            2 => format!("C{i}zzzzzzzzzzzzzzzzzzzzzzzz"),
            3 => String::new(),
            _ => format!("Cé{i}"),
        };
        c.push_older(Uid::new(&s));
        model.push_back(s);
        if model.len() > MAX_OLDER {
            model.pop_front();
        }
        assert_eq!(c.older_len(), model.len());
        assert_eq!(older(&c), Vec::from(model.clone()), "after {i}");
        assert_eq!(older(&c.clone()), older(&c));
    }
    assert_eq!(c.older_len(), MAX_OLDER);
}

#[test]
fn growing_keeps_the_names_and_the_first_record() {
    let mut c = ColdBox::new(0);
    c.names_mut().push("example.com".into());
    c.set_episode_first(Some((Uid::new("Cfirst"), 7)));
    for i in 0..20 {
        c.push_older(Uid::new(&format!("C{i}")));
    }
    assert_eq!(c.names(), ["example.com"]);
    assert_eq!(c.episode_first(), Some(&(Uid::new("Cfirst"), 7)));
    assert_eq!(older(&c).first().map(String::as_str), Some("C0"));
    c.clear_figures();
    assert_eq!(c.older_len(), 0);
    assert!(c.names().is_empty());
    assert_eq!(c.episode_first(), Some(&(Uid::new("Cfirst"), 7)));
    c.push_older(Uid::new("Cagain"));
    assert_eq!(older(&c), ["Cagain"]);
}

/// The binary checkpoint's path from digits is the same uid as from the text.
#[test]
fn a_uid_from_its_digits_is_the_uid_of_its_text() {
    for s in [
        "",
        "C",
        "CGtPIGthkBFOlisrab",
        "C0123456789abcdefXYZ",
        "zzzzzzzzzzzzzzzzzzzz",
    ] {
        let digits: Vec<u8> = s.bytes().filter_map(b62).collect();
        assert_eq!(Uid::from_digits(&digits), Some(Uid::new(s)), "{s}");
        assert!(Uid::from_digits(&digits).is_some_and(|u| u.is_packed()));
        assert_eq!(
            Uid::new(s).digits().map(|(d, n)| d[..n].to_vec()),
            Some(digits)
        );
    }
    assert_eq!(Uid::from_digits(&[0; PACKED_MAX + 1]), None);
    assert_eq!(Uid::from_digits(&[1, 62]), None);
    assert_eq!(Uid::new("C-1").digits(), None);
}
