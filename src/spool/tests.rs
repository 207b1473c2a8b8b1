//! The spool's unit tests: appending, syncing and reading across segments, cursors, freeing delivered
//! space, sizing, and every kind of damage (flipped bytes, torn tails, old-format segments).

use super::record::parse_record;
use super::space::free_bytes;
use super::*;
use std::io::Write;

fn opts() -> SpoolOptions {
    SpoolOptions {
        max_bytes: 1 << 30,
        segment_bytes: 300,
    }
}

/// Found by fuzzing (fuzz/regressions/spool/): a record numbered `u64::MAX` overflowed `seq + 1` at
/// open, and a segment named by the last number overflowed `next_seq += 1` at the first append (a
/// panic in debug builds, numbers handed out again from 0 in release). Such a record is damage, and a
/// spool out of numbers refuses to append.
#[test]
fn the_last_sequence_number_is_never_a_record_nor_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let json = alert_json(1);
    let line = format!("{}\t{json}\n", u64::MAX);
    fs::write(
        dir.path().join(segment_name(0)),
        format!("{}{line}", encode(7, &json)),
    )
    .unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(
        s.next_seq(),
        8,
        "the line numbered u64::MAX is not a record"
    );
    let mut r = s.reader("out").unwrap();
    assert_eq!(seqs(&r.read(10).unwrap()), vec![7]);
    assert_eq!(s.append_json(&json).unwrap(), 8);
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(u64::MAX)), b"").unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    let e = s.append_json(&json).unwrap_err().to_string();
    assert!(e.contains("every sequence number is used"), "{e}");
}

/// Appends the alerts numbered `range` and syncs them.
fn append_synced(s: &mut Spool, range: std::ops::Range<u64>) {
    for i in range {
        s.append_json(&alert_json(i)).unwrap();
    }
    s.sync().unwrap();
}

fn alert_json(i: u64) -> String {
    format!(
        "{{\"@timestamp\":\"2024-01-01T00:00:00.000000Z\",\"event\":{{\"id\":\"id{i}\",\"severity\":3}},\"n\":{i}}}"
    )
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn append_sync_read_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    let mut r = s.reader("a").unwrap();
    for i in 0..2 {
        assert_eq!(s.append_json(&alert_json(i)).unwrap(), i);
    }
    // Not synced: invisible.
    assert!(r.read(100).unwrap().is_empty());
    for i in 2..10 {
        assert_eq!(s.append_json(&alert_json(i)).unwrap(), i);
    }
    s.sync().unwrap();
    assert!(segments(dir.path()).len() > 1, "segments rolled");
    let got = r.read(4).unwrap();
    assert_eq!(seqs(&got), vec![0, 1, 2, 3]);
    assert_eq!(got[0].event_id, "id0");
    assert_eq!(got[0].severity, 3);
    assert_eq!(&*got[1].json, alert_json(1));
    let rest = r.read(100).unwrap();
    assert_eq!(seqs(&rest), (4..10).collect::<Vec<_>>());
}

#[test]
fn cursors_persist_and_segments_go_when_all_passed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    let mut a = s.reader("a").unwrap();
    let mut b = s.reader("b").unwrap();
    append_synced(&mut s, 0..10);
    let before = segments(dir.path()).len();
    let got = a.read(100).unwrap();
    a.commit(got.last().unwrap().seq + 1).unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        before,
        "b has delivered nothing"
    );
    let got = b.read(5).unwrap();
    b.commit(5).unwrap();
    assert!(segments(dir.path()).len() < before);
    assert_eq!(got.len(), 5);
    // Restart: b resumes at 5, a at 10 (nothing left), a new output at the oldest retained record.
    drop((a, b, s));
    let s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(s.next_seq(), 10);
    let mut b = s.reader("b").unwrap();
    assert_eq!(b.read(1).unwrap()[0].seq, 5);
    let mut a = s.reader("a").unwrap();
    assert!(a.read(10).unwrap().is_empty());
    let mut c = s.reader("c").unwrap();
    assert!(c.read(1).unwrap()[0].seq <= 5);
}

#[test]
fn all_delivered_keeps_numbering_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    let mut a = s.reader("a").unwrap();
    append_synced(&mut s, 0..10);
    a.read(100).unwrap();
    a.commit(10).unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "only the active segment stays"
    );
    drop((a, s));
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(s.next_seq(), 10);
    assert_eq!(s.append_json(&alert_json(10)).unwrap(), 10);
    s.sync().unwrap();
    let mut a = s.reader("a").unwrap();
    assert_eq!(seqs(&a.read(10).unwrap()), vec![10]);
}

#[test]
fn full_then_room_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(
        dir.path(),
        SpoolOptions {
            max_bytes: 500,
            segment_bytes: 200,
        },
    )
    .unwrap();
    let mut a = s.reader("a").unwrap();
    let mut n = 0;
    while !s.is_full() {
        s.append_json(&alert_json(n)).unwrap();
        n += 1;
    }
    s.sync().unwrap();
    assert!(s.bytes() >= 500);
    let got = a.read(1000).unwrap();
    assert_eq!(got.len() as u64, n, "nothing dropped");
    a.commit(n).unwrap();
    assert!(!s.is_full());
}

#[test]
fn torn_tail_is_discarded_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    append_synced(&mut s, 0..2);
    drop(s);
    let last = segments(dir.path()).pop().unwrap();
    let path = dir.path().join(&last);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    // A crash in the middle of the third record.
    f.write_all(b"2\t{\"@timestamp\":\"2024").unwrap();
    drop(f);
    let len_torn = fs::metadata(&path).unwrap().len();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    assert!(fs::metadata(&path).unwrap().len() < len_torn);
    assert_eq!(s.next_seq(), 2);
    s.append_json(&alert_json(2)).unwrap();
    s.sync().unwrap();
    let mut r = s.reader("a").unwrap();
    let got = r.read(10).unwrap();
    assert_eq!(seqs(&got), vec![0, 1, 2]);
    assert!(got.iter().all(|x| x.event_id.starts_with("id")));

    // Garbage (zeros after a power loss) instead of a partial line is discarded the same way.
    drop((r, s));
    let last = segments(dir.path()).pop().unwrap();
    let path = dir.path().join(&last);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0u8; 64]).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);
    let s = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(s.next_seq(), 3);
}

#[test]
fn rewind_reads_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    let mut r = s.reader("a").unwrap();
    append_synced(&mut s, 0..5);
    assert_eq!(r.read(3).unwrap().len(), 3);
    r.rewind(1);
    assert_eq!(r.read(1).unwrap()[0].seq, 1);
    assert!(s.reader("../x").is_err());
}

/// Line `i` (0-based) of a segment: (byte offset, length without the LF).
fn line_at(bytes: &[u8], i: usize) -> (usize, usize) {
    let mut off = 0;
    for (n, l) in bytes.split_inclusive(|&c| c == b'\n').enumerate() {
        if n == i {
            return (off, l.len() - 1);
        }
        off += l.len();
    }
    panic!("no line {i}");
}

fn seqs(v: &[Spooled]) -> Vec<u64> {
    v.iter().map(|x| x.seq).collect()
}

fn one_segment() -> SpoolOptions {
    SpoolOptions {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
    }
}

#[test]
fn records_carry_a_checksum() {
    let line = encode(7, &alert_json(7));
    let (head, json) = line.trim_end().split_at(line.find('{').unwrap());
    let parts: Vec<&str> = head.split('\t').collect();
    assert_eq!(parts[0], "7");
    assert_eq!(parts[1].len(), 8);
    assert_eq!(json, alert_json(7));
    assert_eq!(parse_record(line.trim_end().as_bytes()).unwrap().seq, 7);
    // Any single flipped bit is caught: in the number, the checksum, the tabs or the JSON.
    let raw = line.trim_end().as_bytes().to_vec();
    for i in 0..raw.len() {
        for bit in 0..8 {
            let mut b = raw.clone();
            b[i] ^= 1 << bit;
            let got = parse_record(&b);
            assert!(
                got.is_none(),
                "flip at {i} bit {bit} accepted: {}",
                String::from_utf8_lossy(&b)
            );
        }
    }
}

#[test]
fn active_segment_is_freed_when_every_cursor_has_passed_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), one_segment()).unwrap();
    let mut a = s.reader("a").unwrap();
    let mut b = s.reader("b").unwrap();
    // Half a segment: the active segment is freed from a quarter on (less is not worth a new file).
    let mut n = 0;
    while s.bytes() < s.segment_bytes() / 2 {
        s.append_json(&alert_json(n)).unwrap();
        n += 1;
    }
    s.sync().unwrap();
    assert_eq!(segments(dir.path()).len(), 1, "all in the active segment");
    let held = s.bytes();
    a.read(100_000).unwrap();
    a.commit(n).unwrap();
    assert!(!s.is_full());
    assert_eq!(s.bytes(), held, "b has not delivered them");
    assert_eq!(b.read(100_000).unwrap().len() as u64, n);
    b.commit(n).unwrap();
    // The pipeline's next turn (is_full, or the next append) frees the delivered active segment.
    assert!(!s.is_full());
    assert_eq!(s.bytes(), 0, "delivered space freed");
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|n| fs::metadata(dir.path().join(n)).unwrap().len())
        .sum();
    assert_eq!(on_disk, 0);
    assert_eq!(segments(dir.path()), vec![segment_name(n)]);
    // The numbering goes on, also after a restart.
    drop((a, b, s));
    let mut s = Spool::open(dir.path(), one_segment()).unwrap();
    assert_eq!(s.next_seq(), n);
    assert_eq!(s.append_json(&alert_json(n)).unwrap(), n);
    s.sync().unwrap();
    let mut a = s.reader("a").unwrap();
    assert_eq!(seqs(&a.read(10).unwrap()), vec![n]);
}

#[test]
fn a_flipped_byte_mid_segment_skips_exactly_that_record_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), one_segment()).unwrap();
    append_synced(&mut s, 0..10);
    drop(s);
    let path = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&path).unwrap();
    let (off, len) = line_at(&bytes, 4);
    // A flip that keeps the JSON valid (a digit of the alert's number): only the checksum sees it.
    let digit = off + len - 2;
    assert_eq!(bytes[digit], b'4');
    bytes[digit] = b'5';
    fs::write(&path, &bytes).unwrap();
    let s = Spool::open(dir.path(), one_segment()).unwrap();
    assert_eq!(s.next_seq(), 10, "records after the damage are kept");
    assert_eq!(fs::metadata(&path).unwrap().len(), bytes.len() as u64);
    let mut r = s.reader("a").unwrap();
    let got = r.read(100).unwrap();
    assert_eq!(seqs(&got), vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    assert!(got.iter().all(|x| x.event_id == format!("id{}", x.seq)));
    assert_eq!(r.lost(), 1);
    // A second output that had delivered record 4 already loses nothing.
    fs::write(dir.path().join("cursors/b"), "5\n").unwrap();
    let mut b = s.reader("b").unwrap();
    assert_eq!(seqs(&b.read(100).unwrap()), vec![5, 6, 7, 8, 9]);
    assert_eq!(b.lost(), 0);
}

#[test]
fn damage_in_a_rolled_segment_is_skipped_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    append_synced(&mut s, 0..12);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    // The middle record of the first segment loses a byte of its JSON.
    let path = dir.path().join(&segs[0]);
    let mut bytes = fs::read(&path).unwrap();
    let (off, len) = line_at(&bytes, 1);
    bytes[off + len / 2] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    let mut r = s.reader("a").unwrap();
    let got = r.read(100).unwrap();
    assert_eq!(seqs(&got), (0..12).filter(|&i| i != 1).collect::<Vec<_>>());
    assert_eq!(r.lost(), 1);
}

#[test]
fn a_lost_record_is_reported_with_segment_offset_and_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), one_segment()).unwrap();
    append_synced(&mut s, 0..10);
    let path = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&path).unwrap();
    // The LF ending record 3 is damaged: records 3 and 4 become one bad line, both are lost.
    let (off3, len3) = line_at(&bytes, 3);
    bytes[off3 + len3] = b' ';
    // And the checksum of record 7.
    let (off7, _) = line_at(&bytes, 6);
    bytes[off7 + 2] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let mut r = s.reader("out").unwrap();
    let got = r.read(3).unwrap();
    assert_eq!(seqs(&got), vec![0, 1, 2]);
    assert_eq!(r.lost(), 0);
    let got = r.read(100).unwrap();
    assert_eq!(seqs(&got), vec![5, 6, 8, 9]);
    assert_eq!(r.lost(), 3);
    assert_eq!(
        r.last_loss(),
        Some(&Loss {
            segment: path.clone(),
            offset: off7 as u64,
            first_seq: 7,
            last_seq: 7,
        })
    );
    // The first loss, seen alone by a fresh reader.
    let mut r = s.reader("other").unwrap();
    assert_eq!(seqs(&r.read(4).unwrap()), vec![0, 1, 2, 5]);
    assert_eq!(
        r.last_loss(),
        Some(&Loss {
            segment: path,
            offset: off3 as u64,
            first_seq: 3,
            last_seq: 4,
        })
    );
}

#[test]
fn damage_at_the_end_of_a_segment_is_reported_when_the_next_begins() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), opts()).unwrap();
    append_synced(&mut s, 0..12);
    let segs = segments(dir.path());
    let path = dir.path().join(&segs[0]);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        - 1;
    let (off, len) = line_at(&bytes, last);
    bytes[off + len / 2] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let mut r = s.reader("a").unwrap();
    let got = r.read(100).unwrap();
    assert_eq!(got.len(), 11);
    assert_eq!(r.lost(), 1);
    let loss = r.last_loss().unwrap();
    assert_eq!((loss.first_seq, loss.last_seq), (last as u64, last as u64));
    assert_eq!(loss.offset, off as u64);
}

#[test]
fn old_format_segments_are_read_and_continued() {
    let dir = tempfile::tempdir().unwrap();
    // Written by the previous version: `SEQ<TAB>JSON<LF>`, no checksum, in two segments.
    let old = |range: std::ops::Range<u64>| -> String {
        range.map(|i| format!("{i}\t{}\n", alert_json(i))).collect()
    };
    fs::write(dir.path().join(segment_name(0)), old(0..4)).unwrap();
    fs::write(dir.path().join(segment_name(4)), old(4..7)).unwrap();
    fs::create_dir_all(dir.path().join("cursors")).unwrap();
    fs::write(dir.path().join("cursors/a"), "2\n").unwrap();
    let mut s = Spool::open(dir.path(), one_segment()).unwrap();
    assert_eq!(s.next_seq(), 7);
    s.append_json(&alert_json(7)).unwrap();
    s.sync().unwrap();
    let mut a = s.reader("a").unwrap();
    let got = a.read(100).unwrap();
    assert_eq!(seqs(&got), vec![2, 3, 4, 5, 6, 7]);
    assert_eq!(&*got[0].json, alert_json(2));
    assert_eq!(a.lost(), 0);
    // After a restart the mixed segment (old lines, then a new one) reads the same.
    drop((a, s));
    let s = Spool::open(dir.path(), one_segment()).unwrap();
    assert_eq!(s.next_seq(), 8);
    let mut b = s.reader("b").unwrap();
    assert_eq!(seqs(&b.read(100).unwrap()), (0..8).collect::<Vec<_>>());
    assert_eq!(b.lost(), 0);
}

#[test]
fn a_cut_tail_that_an_output_had_delivered_is_reported_lost_not_raised_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), one_segment()).unwrap();
    let mut a = s.reader("a").unwrap();
    let mut b = s.reader("b").unwrap();
    append_synced(&mut s, 0..5);
    a.read(10).unwrap();
    a.commit(5).unwrap();
    b.commit(3).unwrap();
    drop((a, b, s));
    let path = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&path).unwrap();
    let (off, _) = line_at(&bytes, 4);
    bytes[off + 3] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let s = Spool::open(dir.path(), one_segment()).unwrap();
    assert_eq!(s.next_seq(), 4);
    assert_eq!(fs::metadata(&path).unwrap().len(), off as u64);
    assert_eq!(
        s.lost_at_open(),
        1,
        "b had not delivered record 4 and never will"
    );
    // A crash's torn tail (no cursor beyond it) is not a loss.
    drop(s);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"4\tdeadbeef\t{\"@time")
        .unwrap();
    fs::write(dir.path().join("cursors/a"), "4\n").unwrap();
    let s = Spool::open(dir.path(), one_segment()).unwrap();
    assert_eq!(s.next_seq(), 4);
    assert_eq!(s.lost_at_open(), 0);
}

#[test]
fn segments_are_sized_against_max_bytes_and_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let big = SpoolOptions {
        max_bytes: 1 << 30,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
    };
    let free = free_bytes(dir.path()).unwrap();
    let want = DEFAULT_SEGMENT_BYTES.min(free / 8).max(MIN_SEGMENT_BYTES);
    assert_eq!(segment_size(&big, dir.path(), 0), want);
    let small = SpoolOptions {
        max_bytes: 1 << 20,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
    };
    assert!(segment_size(&small, dir.path(), 0) <= 256 * 1024);
    assert_eq!(
        segment_size(&opts(), dir.path(), 0),
        300,
        "a smaller configured size is kept"
    );
}
