//! `scan`'s fast path through Zeek TSV rows: a run of rows is cut into fields with a bitmask index (64
//! bytes at a time: one bit per separator, one per newline), only the columns `scan` sums are read, and
//! each row goes to the tally as a handful of numbers instead of a full [`ConnRecord`].
//!
//! It accepts a row only in its plain form: the column count `#fields` declares, IPv4/IPv6 addresses,
//! plain decimal numbers, unset markers. Anything else (a wrong column count, a bad or odd value, a JSON
//! line, `\r\n` line ends, the unterminated last line) is handed back to the caller for the general parser,
//! so every row counts, is skipped or is reported exactly as [`crate::zeek::LogParser`] would have it. The
//! time is only checked (it is counted as a bad value when it does not parse); it is read, with uid, proto
//! and service, only for the rare row that enters the table of longest connections.

use crate::zeek::{fast_decimal, parse_addr, parse_port, parse_u64, Field, TsvHeader};
use std::net::IpAddr;

/// The columns read from each row, as indexes into [`Spans`].
const TS: usize = 0;
const ORIG_H: usize = 1;
const ORIG_P: usize = 2;
const RESP_H: usize = 3;
const RESP_P: usize = 4;
const DURATION: usize = 5;
const ORIG_BYTES: usize = 6;
const RESP_BYTES: usize = 7;
const SLOTS: usize = 8;
/// A column the fast path does not read.
const NONE: u8 = u8::MAX;

fn slot_of(f: Field) -> Option<usize> {
    Some(match f {
        Field::Ts => TS,
        Field::OrigH => ORIG_H,
        Field::OrigP => ORIG_P,
        Field::RespH => RESP_H,
        Field::RespP => RESP_P,
        Field::Duration => DURATION,
        Field::OrigBytes => ORIG_BYTES,
        Field::RespBytes => RESP_BYTES,
        _ => return None,
    })
}

/// How the rows of one header block are read.
pub struct RowPlan {
    sep: u8,
    unset: Vec<u8>,
    /// The slot each column fills, or [`NONE`].
    col_slot: Vec<u8>,
    /// The slots some column fills.
    present: [bool; SLOTS],
    /// Columns `#fields` declares.
    ncols: usize,
    /// One past the last column read; the rest of a row is only counted.
    need: usize,
}

impl RowPlan {
    /// The plan for rows under `header`; `None` when its rows need the general parser (no `#fields` yet, a
    /// separator of more than one byte, or no address columns).
    pub fn new(header: &TsvHeader) -> Option<RowPlan> {
        let [sep] = header.separator() else {
            return None;
        };
        if !header.is_active() || *sep == b'\n' || *sep == 0 {
            return None;
        }
        let mut col_slot = Vec::with_capacity(header.columns().len());
        let mut need = 0;
        let mut present = [false; SLOTS];
        for (col, f) in header.columns().iter().enumerate() {
            let slot = f.and_then(slot_of);
            col_slot.push(slot.map_or(NONE, |s| s as u8));
            if let Some(s) = slot {
                need = col + 1;
                present[s] = true;
            }
        }
        if !header.has_field(Field::OrigH) || !header.has_field(Field::RespH) {
            return None;
        }
        Some(RowPlan {
            sep: *sep,
            unset: header.unset_field().to_vec(),
            col_slot,
            present,
            ncols: header.columns().len(),
            need,
        })
    }
}

/// What the fast path read from one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairRow {
    pub orig_h: IpAddr,
    pub resp_h: IpAddr,
    pub duration: Option<f64>,
    /// orig_bytes + resp_bytes (unset as 0, saturating), as [`crate::zeek::ConnRecord::total_bytes`].
    pub bytes: u64,
}

/// Where each read column lies in the run, `(start, end)`.
type Spans = [(usize, usize); SLOTS];

/// What a line was for the fast path.
pub enum Row {
    Pair(PairRow),
    /// Needs the general parser.
    Other,
}

/// Walks the complete lines of `bytes` (up to its last newline) and calls `each(line_start, line_end,
/// row)` for each, in order; returns the offset after the last newline (the caller parses the rest).
pub fn for_each_row(plan: &RowPlan, bytes: &[u8], mut each: impl FnMut(usize, usize, Row)) -> usize {
    let mut spans: Spans = [(0, 0); SLOTS];
    let mut line_start = 0usize;
    let mut field_start = 0usize;
    let mut col = 0usize;
    let mut base = 0usize;
    let mut padded = [0u8; 64];
    while base < bytes.len() {
        let block: &[u8; 64] = match bytes.get(base..base + 64) {
            Some(b) => b.try_into().unwrap_or(&padded),
            None => {
                // The last partial block, padded with zero bytes (neither separator nor newline).
                padded = [0u8; 64];
                let rest = &bytes[base..];
                padded[..rest.len()].copy_from_slice(rest);
                &padded
            }
        };
        let (sep_bits, nl_bits) = masks(block, plan.sep);
        let mut bits = sep_bits | nl_bits;
        while bits != 0 {
            let i = bits.trailing_zeros();
            let pos = base + i as usize;
            bits &= bits - 1;
            if col < plan.need {
                let slot = plan.col_slot[col];
                if slot != NONE {
                    spans[slot as usize] = (field_start, pos);
                }
            }
            if nl_bits >> i & 1 == 1 {
                let row = if col + 1 == plan.ncols {
                    read_row(plan, bytes, line_start, pos, &spans)
                } else {
                    Row::Other
                };
                each(line_start, pos, row);
                line_start = pos + 1;
                field_start = pos + 1;
                col = 0;
            } else {
                col += 1;
                field_start = pos + 1;
                if col >= plan.need {
                    // Past the last column read: count the separators up to the line end.
                    let nl_after = nl_bits & bits;
                    let before = if nl_after == 0 {
                        u64::MAX
                    } else {
                        (1u64 << nl_after.trailing_zeros()) - 1
                    };
                    col += (sep_bits & bits & before).count_ones() as usize;
                    bits &= !before;
                }
            }
        }
        base += 64;
    }
    line_start
}

fn read_row(plan: &RowPlan, bytes: &[u8], start: usize, end: usize, spans: &Spans) -> Row {
    let line = &bytes[start..end];
    match (line.first(), line.last()) {
        // JSON, comments and empty lines, `\r\n` ends: the general parser's business.
        (Some(b'{' | b'#'), _) | (_, Some(b'\r')) | (None, _) => return Row::Other,
        _ => {}
    }
    let unset = plan.unset.as_slice();
    let field = |slot: usize| {
        let (s, e) = spans[slot];
        &bytes[s..e]
    };
    // Each value: its plain form, or the unset marker (or no such column: unset too).
    let set = |slot: usize| plan.present[slot] && field(slot) != unset;
    let (Some(orig_h), Some(resp_h)) = (parse_addr(field(ORIG_H)), parse_addr(field(RESP_H))) else {
        return Row::Other;
    };
    let number = |slot: usize| -> Result<Option<u64>, ()> {
        if !set(slot) {
            return Ok(None);
        }
        parse_u64(field(slot)).map(Some).ok_or(())
    };
    let (Ok(orig_bytes), Ok(resp_bytes)) = (number(ORIG_BYTES), number(RESP_BYTES)) else {
        return Row::Other;
    };
    for port in [ORIG_P, RESP_P] {
        if set(port) && parse_port(field(port)).is_none() {
            return Row::Other;
        }
    }
    let duration = if !set(DURATION) {
        None
    } else {
        match fast_decimal(field(DURATION)) {
            Some(v) => Some(v),
            None => return Row::Other,
        }
    };
    if set(TS) && !plain_decimal(field(TS)) {
        return Row::Other;
    }
    Row::Pair(PairRow {
        orig_h,
        resp_h,
        duration,
        bytes: orig_bytes
            .unwrap_or(0)
            .saturating_add(resp_bytes.unwrap_or(0)),
    })
}

/// `digits[.digits]` of at most 20 bytes: a time the general parser reads as a number.
fn plain_decimal(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > 20 {
        return false;
    }
    let mut dots = 0;
    for (i, b) in v.iter().enumerate() {
        match b {
            b'0'..=b'9' => {}
            b'.' if i > 0 && i + 1 < v.len() => dots += 1,
            _ => return false,
        }
    }
    dots <= 1
}

/// One bit per byte of `block` equal to `sep`, and one per newline.
#[inline]
fn masks(block: &[u8; 64], sep: u8) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let mut sep_bits = 0u64;
        let mut nl_bits = 0u64;
        // SAFETY: SSE2 is part of every x86_64 target, and each 16-byte load lies inside `block`
        // (k * 16 + 16 <= 64); unaligned loads are allowed.
        unsafe {
            let s = _mm_set1_epi8(sep as i8);
            let n = _mm_set1_epi8(b'\n' as i8);
            for k in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
                sep_bits |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, s)) as u16) << (16 * k);
                nl_bits |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, n)) as u16) << (16 * k);
            }
        }
        (sep_bits, nl_bits)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        masks_scalar(block, sep)
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn masks_scalar(block: &[u8; 64], sep: u8) -> (u64, u64) {
    let mut sep_bits = 0u64;
    let mut nl_bits = 0u64;
    for (i, b) in block.iter().enumerate() {
        sep_bits |= u64::from(*b == sep) << i;
        nl_bits |= u64::from(*b == b'\n') << i;
    }
    (sep_bits, nl_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_the_scalar_form() {
        let mut block = [0u8; 64];
        let mut x: u32 = 7;
        for _ in 0..500 {
            for b in block.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = [b'\t', b'\n', b'a', b'1', b',', 0xff][(x >> 16) as usize % 6];
            }
            assert_eq!(masks(&block, b'\t'), masks_scalar(&block, b'\t'));
            assert_eq!(masks(&block, b','), masks_scalar(&block, b','));
        }
    }

    #[test]
    fn plain_decimals() {
        for ok in ["1", "1713484795.133400", "0.5", "12."[..2].as_ref()] {
            assert!(plain_decimal(ok.as_bytes()), "{ok}");
        }
        for bad in ["", ".5", "5.", "1.2.3", "1e5", "-1", "XXXXXXXXXX.XXXXXX", "1 "] {
            assert!(!plain_decimal(bad.as_bytes()), "{bad}");
        }
    }
}
