//! The segment file format: segment names (`<first seq, 20 digits>.seg`), record lines
//! `SEQ<TAB>CRC<TAB>ALERT-JSON<LF>` (and version 1 lines `SEQ<TAB>ALERT-JSON<LF>` without the checksum),
//! their encoding and their checks, and the scan of a whole segment at open that tells the valid records
//! from damage and from a torn tail. Pure: bytes in, records and lengths out.

use super::Spooled;
use crate::alert;
use std::sync::Arc;

pub(super) fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn checksum(seq: &[u8], json: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(seq);
    h.update(b"\t");
    h.update(json);
    h.finalize()
}

/// One record line with its LF: `SEQ<TAB>CRC<TAB>JSON<LF>`.
pub(super) fn encode(seq: u64, json: &str) -> String {
    let s = seq.to_string();
    let crc = checksum(s.as_bytes(), json.as_bytes());
    format!("{s}\t{crc:08x}\t{json}\n")
}

/// Sequence numbers are below this: the number after a record is always a `u64`, so a spool that has
/// handed out every number refuses to append ([`Spool::append_json`]) rather than wrap to 0 and hand
/// numbers out twice, and a line numbered `SEQ_END` (damage, or written by hand) is not a record.
pub(super) const SEQ_END: u64 = u64::MAX;

/// Parses one record line (without its LF): `Some(Spooled)` if it is whole, its number is below
/// [`SEQ_END`], its checksum matches (or it is a version 1 line without one) and its JSON has the fields
/// outputs need.
pub(super) fn parse_record(line: &[u8]) -> Option<Spooled> {
    let tab = memchr::memchr(b'\t', line)?;
    let seq_text = &line[..tab];
    if seq_text.is_empty() || !seq_text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seq: u64 = std::str::from_utf8(seq_text).ok()?.parse().ok()?;
    if seq == SEQ_END {
        return None;
    }
    let rest = &line[tab + 1..];
    let lower_hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
    let json = if rest.len() > 9 && rest[8] == b'\t' && rest[..8].iter().all(lower_hex) {
        let want = u32::from_str_radix(std::str::from_utf8(&rest[..8]).ok()?, 16).ok()?;
        let json = &rest[9..];
        if checksum(seq_text, json) != want {
            return None;
        }
        json
    } else if rest.first() == Some(&b'{') {
        // Version 1: no checksum; the JSON must still parse.
        rest
    } else {
        return None;
    };
    let json = std::str::from_utf8(json).ok()?;
    let f = alert::Head::parse(json).ok()?;
    Some(Spooled {
        seq,
        event_id: f.event.id,
        timestamp: f.timestamp,
        severity: f.event.severity,
        json: Arc::from(json),
    })
}

/// What a scan of a whole segment found.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scan {
    /// Byte length up to and including the last valid record (what is kept).
    pub(super) valid_len: u64,
    /// The sequence number after the last valid record (`first` if there is none).
    pub(super) next: u64,
    /// Damaged lines before the last valid record (skipped by readers, reported by them).
    pub(super) damaged: u64,
    /// Byte offset of the first of them.
    pub(super) first_damaged: Option<u64>,
}

/// Scans a segment: every line that is a valid record with a number above the previous one is kept;
/// damaged lines between valid records are counted; what follows the last valid record is the tail.
pub(super) fn scan_segment(bytes: &[u8], first: u64) -> Scan {
    let mut scan = Scan {
        valid_len: 0,
        next: first,
        damaged: 0,
        first_damaged: None,
    };
    let mut pos = 0usize;
    // Damaged lines since the last valid record: (count, offset of the first).
    let mut pending: Option<(u64, u64)> = None;
    while let Some(nl) = memchr::memchr(b'\n', &bytes[pos..]) {
        match parse_record(&bytes[pos..pos + nl]) {
            Some(r) if r.seq >= scan.next => {
                if let Some((n, off)) = pending.take() {
                    scan.damaged += n;
                    scan.first_damaged.get_or_insert(off);
                }
                scan.next = r.seq + 1;
                scan.valid_len = (pos + nl + 1) as u64;
            }
            _ => {
                let p = pending.get_or_insert((0, pos as u64));
                p.0 += 1;
            }
        }
        pos += nl + 1;
    }
    scan
}
