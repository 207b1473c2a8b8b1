//! Tests for the follower, one per tailing scenario of ZEEK_NOTES.md that this layer handles, plus a
//! property test of random write/rotate/truncate/restart sequences. Files are real Zeek TSV in temp dirs;
//! `poll` is called directly, so nothing sleeps.

use super::*;
use crate::zeek::SourceKind;
use proptest::prelude::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, SystemTime};

fn header(open: &str) -> String {
    format!(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t{open}\n\
         #fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n\
         #types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n"
    )
}

fn row(uid: &str) -> String {
    format!("1700000000.000001\t{uid}\t10.0.0.1\t50000\t203.0.113.7\t443\ttcp\tssl\t3600.5\t100\t200\tSF\n")
}

fn rows(uids: &[&str]) -> String {
    uids.iter().map(|u| row(u)).collect()
}

const CLOSE: &str = "#close\t2024-01-01-01-00-00\n";

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn set_mtime(path: &Path, secs: u64) {
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .expect("set mtime");
}

fn source(path: &Path, start_at: StartAt) -> Source {
    Source {
        path: path.to_path_buf(),
        start_at,
        kind: SourceKind::Conn,
    }
}

/// An owned summary of an event, for assertions.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Rec(String),
    Skip(SkipReason),
    Rotated,
    Opened(u64),
    Truncated,
    Finished,
    Lost,
    Nul,
}

fn poll(t: &mut Tailer) -> Vec<Ev> {
    let mut out = Vec::new();
    t.poll(&mut |e| {
        out.push(match e {
            TailEvent::Record { rec, .. } => Ev::Rec(rec.uid.to_string()),
            TailEvent::Context { rec } => Ev::Rec(rec.uid.to_string()),
            TailEvent::Skipped { reason, .. } => Ev::Skip(reason),
            TailEvent::Rotated { .. } => Ev::Rotated,
            TailEvent::Opened { resumed_at, .. } => Ev::Opened(resumed_at),
            TailEvent::Truncated { .. } => Ev::Truncated,
            TailEvent::Finished { .. } => Ev::Finished,
            TailEvent::Lost { .. } => Ev::Lost,
            TailEvent::Nul { .. } => Ev::Nul,
        })
    })
    .expect("poll");
    out
}

/// The uids of the records of one poll.
fn uids(t: &mut Tailer) -> Vec<String> {
    recs(&poll(t))
}

/// The uids of the records among `events`.
fn recs(events: &[Ev]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Rec(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Stops a tailer and starts another from its checkpoint, through JSON as the daemon stores it.
fn restart(t: Tailer, src: &Source) -> Tailer {
    let json = serde_json::to_string(&t.checkpoint()).expect("serialize");
    drop(t);
    let saved: SourceCheckpoint = serde_json::from_str(&json).expect("deserialize");
    Tailer::new(src, ParseOptions::default(), Some(saved))
}

fn tailer(src: &Source) -> Tailer {
    Tailer::new(src, ParseOptions::default(), None)
}

/// The start many tests share: `conn.log` (header `h1`, row `A1`) in a temp dir, modified at `mtime` if
/// given, and a tailer from the beginning that has read A1.
fn reading_a1(mtime: Option<u64>) -> (tempfile::TempDir, PathBuf, Source, Tailer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1"])));
    if let Some(secs) = mtime {
        set_mtime(&live, secs);
    }
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1"]));
    (dir, live, src, t)
}

/// logrotate's copytruncate of `live`: copied to `conn.log.1` (modified at `copy_mtime`), then truncated.
fn copytruncate(live: &Path, copy_mtime: u64) {
    let copy = live.with_file_name("conn.log.1");
    fs::copy(live, &copy).expect("copy");
    set_mtime(&copy, copy_mtime);
    truncate(live);
}

/// The records and skipped lines among `events`, in order.
fn rows_of(events: &[Ev]) -> Vec<Ev> {
    events
        .iter()
        .filter(|e| matches!(e, Ev::Rec(_) | Ev::Skip(_)))
        .cloned()
        .collect()
}

#[test]
fn scenario_01_first_start_beginning_vs_end_with_rotated_siblings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let old = dir.path().join("conn.2024-01-01-00-00-00.log");
    append(
        &old,
        &(header("2024-01-01-00-00-00") + &rows(&["OLD1"]) + CLOSE),
    );
    append(
        &live,
        &(header("2024-01-01-01-00-00") + &rows(&["A1", "A2"])),
    );

    // beginning: the whole live file, never the rotated siblings.
    let src = source(&live, StartAt::Beginning);
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1", "A2"]));

    // end: nothing old, but the header block is known so new rows parse.
    let src_end = source(&live, StartAt::End);
    let mut e = tailer(&src_end);
    assert_eq!(uids(&mut e), Vec::<String>::new());
    append(&live, &row("A3"));
    assert_eq!(uids(&mut e), strs(&["A3"]));
    assert_eq!(uids(&mut t), strs(&["A3"]));

    // end, and the live file does not exist yet: it is read from its start once it appears.
    let later = dir.path().join("sub");
    fs::create_dir(&later).expect("mkdir");
    let src_later = source(&later.join("conn.log"), StartAt::End);
    let mut l = tailer(&src_later);
    assert!(poll(&mut l).is_empty());
    append(&later.join("conn.log"), &(header("x") + &rows(&["N1"])));
    assert_eq!(uids(&mut l), strs(&["N1"]));

    // A checkpoint overrides start_at.
    append(&later.join("conn.log"), &rows(&["N2"]));
    let mut l = restart(l, &src_later);
    assert_eq!(uids(&mut l), strs(&["N2"]));
}

#[test]
fn scenario_02_rename_rotation_same_inode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let rotated = dir.path().join("conn.2024-01-01-01-00-00.log");
    let src = source(&live, StartAt::Beginning);
    append(
        &live,
        &(header("2024-01-01-00-00-00") + &rows(&["A1", "A2"])),
    );
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1", "A2"]));

    append(&live, &(rows(&["A3"]) + CLOSE));
    fs::rename(&live, &rotated).expect("rename");
    append(&live, &(header("2024-01-01-01-00-00") + &rows(&["B1"])));
    let mut rotated_to = None;
    let mut got = Vec::new();
    t.poll(&mut |e| match e {
        TailEvent::Rotated { to, .. } => rotated_to = to,
        TailEvent::Record { rec, .. } => got.push(rec.uid.to_string()),
        _ => {}
    })
    .expect("poll");
    assert_eq!(got, strs(&["A3", "B1"]));
    assert_eq!(rotated_to, Some(rotated.clone()));
    append(&live, &rows(&["B2"]));
    assert_eq!(uids(&mut t), strs(&["B2"]));

    // A rotated file without `#close` still written after the rename is drained during a grace poll.
    fs::rename(&live, dir.path().join("conn.2024-01-01-02-00-00.log")).expect("rename");
    append(
        &dir.path().join("conn.2024-01-01-02-00-00.log"),
        &rows(&["B3"]),
    );
    assert_eq!(uids(&mut t), strs(&["B3"]));
    append(
        &dir.path().join("conn.2024-01-01-02-00-00.log"),
        &rows(&["B4"]),
    );
    let ev = poll(&mut t);
    assert_eq!(ev, vec![Ev::Rec("B4".into())]);
    assert_eq!(poll(&mut t), vec![Ev::Finished]);
    assert!(poll(&mut t).is_empty());
}

#[test]
fn scenario_03_rotated_file_gzipped_elsewhere_and_deleted_before_drained() {
    let (dir, live, _src, mut t) = reading_a1(None);

    // zeekctl: rename, gzip into logs/DATE/ elsewhere, delete the rotated file: all before we look.
    append(&live, &(rows(&["A2", "A3"]) + CLOSE));
    let rotated = dir.path().join("conn.2024-01-01-01-00-00.log");
    fs::rename(&live, &rotated).expect("rename");
    let archive = dir.path().join("2024-01-01");
    fs::create_dir(&archive).expect("mkdir");
    fs::copy(&rotated, archive.join("conn.01:00:00-02:00:00.log.gz")).expect("copy");
    fs::remove_file(&rotated).expect("delete");
    append(&live, &(header("h2") + &rows(&["B1"])));
    let ev = poll(&mut t);
    assert_eq!(recs(&ev), strs(&["A2", "A3", "B1"]));
    assert!(ev.contains(&Ev::Finished));
    assert!(uids(&mut t).is_empty());
}

#[test]
fn scenario_04_daemon_down_across_several_rotations() {
    let (dir, live, src, t) = reading_a1(Some(1_000));
    let saved = t.checkpoint();
    drop(t);

    // While stopped: A finished and rotated, B written and rotated, C is live.
    append(&live, &(rows(&["A2"]) + CLOSE));
    set_mtime(&live, 1_100);
    fs::rename(&live, dir.path().join("conn.2024-01-01-01-00-00.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1", "B2"]) + CLOSE));
    set_mtime(&live, 1_200);
    fs::rename(&live, dir.path().join("conn.2024-01-01-02-00-00.log")).expect("rename");
    append(&live, &(header("h3") + &rows(&["C1"])));
    set_mtime(&live, 1_300);
    // An older rotation nobody needs.
    let older = dir.path().join("conn.2023-12-31-23-00-00.log");
    append(&older, &(header("h0") + &rows(&["OLD"]) + CLOSE));
    set_mtime(&older, 500);

    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    assert_eq!(uids(&mut t), strs(&["A2", "B1", "B2", "C1"]));
    append(&live, &rows(&["C2"]));
    assert_eq!(uids(&mut t), strs(&["C2"]));
    let mut t = restart(t, &src);
    assert!(uids(&mut t).is_empty());
}

#[test]
fn scenario_05_live_path_missing_between_rotation_and_next_write() {
    let (dir, live, src, mut t) = reading_a1(None);
    append(&live, &(rows(&["A2"]) + CLOSE));
    fs::rename(&live, dir.path().join("conn.2024-01-01-01-00-00.log")).expect("rename");
    assert_eq!(uids(&mut t), strs(&["A2"]));
    assert!(poll(&mut t).is_empty());
    // A restart while the path is missing must neither re-read A nor miss B.
    let mut t = restart(t, &src);
    assert!(uids(&mut t).is_empty());
    append(&live, &(header("h2") + &rows(&["B1"])));
    assert_eq!(uids(&mut t), strs(&["B1"]));
}

#[test]
fn scenario_06_spool_dir_moved_and_recreated_symlink_repointed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    fs::create_dir(&spool).expect("mkdir");
    let current = dir.path().join("current");
    std::os::unix::fs::symlink(&spool, &current).expect("symlink");
    let live = current.join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1"])));
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1"]));
    let dirs = t.watch_dirs();
    assert!(dirs.contains(&fs::canonicalize(&spool).expect("canon")));
    assert!(dirs.contains(&fs::canonicalize(dir.path()).expect("canon")));

    // zeekctl stop: the spool directory is moved away (with a last row) and recreated.
    append(&live, &rows(&["A2"]));
    fs::rename(&spool, dir.path().join("spool.old")).expect("move spool");
    fs::create_dir(&spool).expect("recreate spool");
    append(&live, &(header("h2") + &rows(&["B1"])));
    assert_eq!(uids(&mut t), strs(&["A2", "B1"]));

    // The symlink re-pointed to another spool directory.
    let spool2 = dir.path().join("spool2");
    fs::create_dir(&spool2).expect("mkdir");
    append(&spool2.join("conn.log"), &(header("h3") + &rows(&["C1"])));
    append(&live, &rows(&["B2"]));
    fs::remove_file(&current).expect("unlink");
    std::os::unix::fs::symlink(&spool2, &current).expect("symlink");
    assert_eq!(uids(&mut t), strs(&["B2", "C1"]));
    assert!(t
        .watch_dirs()
        .contains(&fs::canonicalize(&spool2).expect("canon")));
}

#[test]
fn scenario_07_copytruncate_and_truncate_then_grow_past_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1", "A2"])));
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1", "A2"]));

    // logrotate copytruncate, with a row written after our last look that only the copy holds.
    append(&live, &rows(&["A3"]));
    fs::copy(&live, dir.path().join("conn.log.1")).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&live)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&live, &(header("h2") + &rows(&["B1"])));
    let ev = poll(&mut t);
    assert!(ev.contains(&Ev::Truncated));
    assert_eq!(recs(&ev), strs(&["A3", "B1"]));

    // Truncated, then written past the old offset before we look again: the fingerprint tells.
    OpenOptions::new()
        .write(true)
        .open(&live)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(
        &live,
        &(header("h3-longer-open-stamp") + &rows(&["C1", "C2", "C3", "C4"])),
    );
    assert_eq!(uids(&mut t), strs(&["C1", "C2", "C3", "C4"]));
    assert!(uids(&mut t).is_empty());
}

#[test]
fn scenario_08_delete_recreate_and_inode_reuse() {
    let (_dir, live, src, mut t) = reading_a1(None);
    append(&live, &rows(&["A2"]));
    fs::remove_file(&live).expect("delete");
    append(&live, &(header("h2") + &rows(&["B1"])));
    assert_eq!(uids(&mut t), strs(&["A2", "B1"]));

    // Inode reuse while stopped: the same inode now holds other content, longer than our offset.
    let saved = t.checkpoint();
    drop(t);
    let f = OpenOptions::new().write(true).open(&live).expect("open");
    f.set_len(0).expect("truncate");
    drop(f);
    append(&live, &(header("h3") + &rows(&["N1", "N2", "N3"])));
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    let ev = poll(&mut t);
    assert_eq!(recs(&ev), strs(&["N1", "N2", "N3"]));
}

#[test]
fn scenario_09_new_file_with_the_same_first_lines_is_another_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    // Byte-identical beginnings, even the same #open and first row.
    let start = header("2024-01-01-00-00-00") + &rows(&["SAME"]);
    append(&live, &start);
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["SAME"]));
    let saved = t.checkpoint();
    drop(t);
    append(&live, &(rows(&["A2"]) + CLOSE));
    fs::rename(&live, dir.path().join("conn.2024-01-01-01-00-00.log")).expect("rename");
    append(&live, &(start.clone() + &rows(&["B2"])));
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    assert_eq!(uids(&mut t), strs(&["A2", "SAME", "B2"]));

    // Live as well: a rotation to a file starting like the old one is read from 0.
    append(&live, CLOSE);
    fs::rename(&live, dir.path().join("conn.2024-01-01-02-00-00.log")).expect("rename");
    append(&live, &(start + &rows(&["C2"])));
    assert_eq!(uids(&mut t), strs(&["SAME", "C2"]));
}

#[test]
fn scenario_10_file_shorter_than_saved_offset_while_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    let many: Vec<String> = (0..20).map(|i| format!("A{i:02}")).collect();
    let many_ref: Vec<&str> = many.iter().map(String::as_str).collect();
    let text = header("h1") + &rows(&many_ref);
    append(&live, &text);
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t).len(), 20);
    let saved = t.checkpoint();
    drop(t);
    assert!(saved
        .live
        .as_ref()
        .is_some_and(|l| l.fingerprint.len == 1024));
    // Cut to the end of some line past the fingerprint: same prefix, shorter than the offset.
    let cut = text
        .char_indices()
        .filter(|(i, c)| *c == '\n' && *i > 1100)
        .map(|(i, _)| i + 1)
        .next()
        .expect("a line end");
    let kept = text[..cut].lines().filter(|l| !l.starts_with('#')).count();
    OpenOptions::new()
        .write(true)
        .open(&live)
        .expect("open")
        .set_len(cut as u64)
        .expect("truncate");
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    let ev = poll(&mut t);
    assert!(ev.contains(&Ev::Truncated));
    assert!(ev.contains(&Ev::Opened(0)));
    assert_eq!(ev.iter().filter(|e| matches!(e, Ev::Rec(_))).count(), kept);
}

#[test]
fn scenario_11_partial_last_line_held_kept_across_restart_counted_if_rotated_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    let r2 = row("A2");
    let (first, rest) = r2.split_at(20);
    append(&live, &(header("h1") + &rows(&["A1"]) + first));
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1"]));
    let cp = t.checkpoint();
    let live_cp = cp.live.as_ref().expect("live");
    assert_eq!(
        live_cp.offset,
        (header("h1") + &rows(&["A1"])).len() as u64,
        "the offset points at the start of the partial line"
    );
    let mut t = restart(t, &src);
    assert!(uids(&mut t).is_empty());
    append(&live, rest);
    assert_eq!(uids(&mut t), strs(&["A2"]));

    // A partial line in a file rotated away (no newline ever comes): counted as cut off.
    append(&live, "1700000000.0\tA3\t10.0");
    assert!(uids(&mut t).is_empty());
    fs::rename(&live, dir.path().join("conn.2024-01-01-01-00-00.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"])));
    let ev = poll(&mut t);
    assert_eq!(
        ev,
        vec![
            Ev::Rotated,
            Ev::Opened(0),
            Ev::Skip(SkipReason::Truncated),
            Ev::Finished,
            Ev::Rec("B1".into())
        ]
    );
}

#[test]
fn scenario_12_record_written_in_two_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    let r = row("A1");
    let (first, rest) = r.split_at(r.len() / 2);
    append(&live, &(header("h1") + first));
    let mut t = tailer(&src);
    assert!(uids(&mut t).is_empty());
    append(&live, rest);
    let mut dur = None;
    t.poll(&mut |e| {
        if let TailEvent::Record { rec, line_no, .. } = e {
            assert_eq!(line_no, 9);
            dur = rec.duration;
        }
    })
    .expect("poll");
    assert_eq!(dur, Some(3600.5));
}

#[test]
fn scenario_13_over_long_line_skipped_counted_and_reading_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    let long = format!("{}\n", "x".repeat(5000));
    append(
        &live,
        &(header("h1") + &rows(&["A1"]) + &long + &rows(&["A2"])),
    );
    let mut t = tailer(&src).with_max_line(1000);
    let ev = poll(&mut t);
    let data: Vec<_> = ev
        .into_iter()
        .filter(|e| !matches!(e, Ev::Opened(_)))
        .collect();
    assert_eq!(
        data,
        vec![
            Ev::Rec("A1".into()),
            Ev::Skip(SkipReason::TooLong),
            Ev::Rec("A2".into())
        ]
    );

    // An over-long line still being written, across polls and a restart: reported once.
    append(&live, &"y".repeat(3000));
    assert_eq!(poll(&mut t), vec![Ev::Skip(SkipReason::TooLong)]);
    let mut t = restart(t, &src).with_max_line(1000);
    append(&live, &"y".repeat(3000));
    assert!(uids(&mut t).is_empty());
    append(&live, &format!("yyy\n{}", row("A3")));
    assert_eq!(poll(&mut t), vec![Ev::Rec("A3".into())]);
}

#[test]
fn scenario_14_several_rotations_between_two_looks() {
    let (dir, live, src, mut t) = reading_a1(Some(1_000));
    append(&live, &(rows(&["A2"]) + CLOSE));
    set_mtime(&live, 1_100);
    fs::rename(&live, dir.path().join("conn.2024-01-01-01-00-00.log")).expect("rename");
    for (i, (name, uid)) in [("02", "B1"), ("03", "C1")].into_iter().enumerate() {
        append(&live, &(header(name) + &rows(&[uid]) + CLOSE));
        set_mtime(&live, 1_200 + 100 * i as u64);
        fs::rename(
            &live,
            dir.path().join(format!("conn.2024-01-01-{name}-00-00.log")),
        )
        .expect("rename");
    }
    append(&live, &(header("04") + &rows(&["D1"])));
    assert_eq!(uids(&mut t), strs(&["A2", "B1", "C1", "D1"]));
    assert!(uids(&mut t).is_empty());
    // Nothing is picked up again after a restart either.
    let mut t = restart(t, &src);
    assert!(uids(&mut t).is_empty());
}

#[test]
fn scenario_17_only_the_configured_log_is_read() {
    let (dir, live, src, mut t) = reading_a1(Some(1_000));
    // Other logs, other loggers, compressed archives, all newer than conn.log.
    for name in [
        "dns.log",
        "conn_long.log",
        "conn_long.2024-01-01-01-00-00.log",
        "conn-summary.log",
        "conn.2024-01-01-01-00-00.log.gz",
        "json_streaming_conn.log",
        "json_streaming_conn.log.1",
        "worker-1-conn.log",
    ] {
        let p = dir.path().join(name);
        append(&p, &(header(name) + &rows(&["OTHER"])));
        set_mtime(&p, 5_000);
    }
    append(&live, &(rows(&["A2"]) + CLOSE));
    fs::rename(&live, dir.path().join("conn.2024-01-01-01-00-00.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"])));
    assert_eq!(uids(&mut t), strs(&["A2", "B1"]));
    let mut t = restart(t, &src);
    assert!(uids(&mut t).is_empty());
}

#[test]
fn scenario_21_clock_change_does_not_affect_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1"])));
    set_mtime(&live, 2_000_000_000);
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1"]));
    // The clock jumps back: the next file is "older" than the last one.
    append(&live, &(rows(&["A2"]) + CLOSE));
    fs::rename(&live, dir.path().join("conn.2033-05-18-03-33-20.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"])));
    set_mtime(&live, 1_000);
    assert_eq!(uids(&mut t), strs(&["A2", "B1"]));
    // A file whose mtime moves backwards is the same file.
    append(&live, &rows(&["B2"]));
    set_mtime(&live, 10);
    let mut t = restart(t, &src);
    append(&live, &rows(&["B3"]));
    assert_eq!(uids(&mut t), strs(&["B2", "B3"]));
}

#[test]
fn checkpoint_survives_json_and_keeps_header_state() {
    let (_dir, _live, src, t) = reading_a1(None);
    let cp = t.checkpoint();
    let json = serde_json::to_string(&cp).expect("ser");
    let back: SourceCheckpoint = serde_json::from_str(&json).expect("de");
    assert_eq!(back, cp);
    let live_cp = cp.live.expect("live");
    assert_eq!(live_cp.line_no, 9);
    assert!(live_cp
        .header
        .iter()
        .any(|l| matches!(l, HeaderLine::Text(s) if s.starts_with("#fields"))));
    // Before the first poll, a restored tailer hands back what it was given.
    let t2 = Tailer::new(&src, ParseOptions::default(), Some(back.clone()));
    assert_eq!(t2.checkpoint(), back);
}

#[test]
fn lost_file_is_reported() {
    let (_dir, live, src, t) = reading_a1(None);
    let saved = t.checkpoint();
    drop(t);
    fs::remove_file(&live).expect("delete");
    append(&live, &(header("h2") + &rows(&["B1"])));
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    let ev = poll(&mut t);
    assert!(ev.contains(&Ev::Lost));
    assert!(ev.contains(&Ev::Rec("B1".into())));
}

#[test]
fn rotated_names() {
    assert!(is_rotated_name("conn.log", "conn.2024-01-01-00-00-00.log"));
    assert!(is_rotated_name("conn.log", "conn.log.1"));
    assert!(!is_rotated_name("conn.log", "conn.log"));
    assert!(!is_rotated_name("conn.log", "conn_long.log"));
    assert!(!is_rotated_name("conn.log", "conn.log.gz"));
    assert!(!is_rotated_name(
        "conn.log",
        "conn.2024-01-01-00-00-00.log.gz"
    ));
    assert!(!is_rotated_name("conn.log", "dns.2024-01-01-00-00-00.log"));
    assert!(is_rotated_name(
        "json_streaming_conn.log",
        "json_streaming_conn.log.3"
    ));
    // Interim logs (issue 6) rotate like conn.log, and never take each other's files.
    assert!(is_rotated_name(
        "open_conn.log",
        "open_conn.2024-01-01-00-00-00.log"
    ));
    assert!(is_rotated_name(
        "conn_long.log",
        "conn_long.2024-01-01-00-00-00.log"
    ));
    assert!(is_rotated_name("open_conn.log", "open_conn.log.1"));
    assert!(!is_rotated_name(
        "conn.log",
        "open_conn.2024-01-01-00-00-00.log"
    ));
    assert!(!is_rotated_name(
        "conn.log",
        "conn_long.2024-01-01-00-00-00.log"
    ));
    assert!(!is_rotated_name(
        "open_conn.log",
        "conn.2024-01-01-00-00-00.log"
    ));
}

/// An open_conn.log source is followed through Zeek's rename rotation like conn.log, including while
/// stopped, and keeps its kind; conn.log and its rotations in the same directory are not its files.
#[test]
fn open_conn_source_follows_rotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("open_conn.log");
    let src = Source {
        path: live.clone(),
        start_at: StartAt::Beginning,
        kind: SourceKind::from_path(&live),
    };
    assert_eq!(src.kind, SourceKind::OpenConn);
    append(
        &dir.path().join("conn.log"),
        &(header("2024-01-01-00-00-00") + &rows(&["X1"])),
    );
    append(&live, &(header("2024-01-01-00-00-00") + &rows(&["A1"])));
    let mut t = tailer(&src);
    assert_eq!(t.kind(), SourceKind::OpenConn);
    assert_eq!(uids(&mut t), strs(&["A1"]));
    append(&live, &(rows(&["A2"]) + CLOSE));
    fs::rename(&live, dir.path().join("open_conn.2024-01-01-01-00-00.log")).expect("rename");
    fs::rename(
        dir.path().join("conn.log"),
        dir.path().join("conn.2024-01-01-01-00-00.log"),
    )
    .expect("rename");
    append(&live, &(header("2024-01-01-01-00-00") + &rows(&["B1"])));
    assert_eq!(uids(&mut t), strs(&["A2", "B1"]));
    // Stopped across a rotation: the rotated file is found by identity and finished first.
    append(&live, &rows(&["B2"]));
    let saved = t.checkpoint();
    drop(t);
    append(&live, &(rows(&["B3"]) + CLOSE));
    fs::rename(&live, dir.path().join("open_conn.2024-01-01-02-00-00.log")).expect("rename");
    append(&live, &(header("2024-01-01-02-00-00") + &rows(&["C1"])));
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    assert_eq!(uids(&mut t), strs(&["B2", "B3", "C1"]));
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// Append this many complete rows.
    Write(u8),
    /// Append the first part of a row (completed by the next Write or rotation).
    Partial,
    /// Zeek's rotation: finish the partial row, `#close`, rename; the new file appears at the next write.
    Rotate,
    /// zeekctl: like Rotate, then delete the rotated file (only while the tailer holds it open).
    RotateDelete,
    /// copytruncate: copy to conn.log.N, truncate in place.
    CopyTruncate,
    Poll,
    Restart,
    /// The writer truncates the file in place and starts it again (only when everything was read: what a
    /// truncation removes unread is gone for any reader).
    Truncate,
    /// Save a checkpoint (the daemon's periodic one).
    Checkpoint,
    /// SIGKILL: start again from the last saved checkpoint; what was read since is read again.
    Kill,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..4).prop_map(Op::Write),
        1 => Just(Op::Partial),
        1 => Just(Op::Rotate),
        1 => Just(Op::RotateDelete),
        1 => Just(Op::CopyTruncate),
        4 => Just(Op::Poll),
        1 => Just(Op::Restart),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Truncate),
        1 => Just(Op::Kill),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_complete_line_is_emitted_exactly_once(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("conn.log");
        let src = source(&live, StartAt::Beginning);
        let mut t = tailer(&src);
        let mut written: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut next = 0u32;
        let mut files = 0u32;
        let mut partial: Option<String> = None;
        // A fake clock, so every write moves a file's mtime forward.
        let clock = std::cell::Cell::new(1_000u64);
        let put = |p: &Path, text: &str| {
            append(p, text);
            clock.set(clock.get() + 1);
            set_mtime(p, clock.get());
        };
        let mut new_row = |written: &mut Vec<String>| {
            next += 1;
            let uid = format!("U{next}");
            written.push(uid.clone());
            row(&uid)
        };
        let collect = |t: &mut Tailer, seen: &mut Vec<String>| seen.extend(uids(t));
        // The daemon starts while Zeek is writing: a first file exists and has been looked at.
        files += 1;
        let first = header("file-1") + &new_row(&mut written);
        put(&live, &first);
        collect(&mut t, &mut seen);
        // The tailer has polled since the live file was created and since its last restart.
        let mut held = true;
        let mut deleted_unread = false;
        // Lines written that the current tailer has not polled yet.
        let mut unread = false;
        let mut saved = (t.checkpoint(), seen.len());
        let mut deleted_since_saved = false;
        for op in ops {
            let exists = live.exists();
            match op {
                Op::Write(n) => {
                    unread = true;
                    let mut text = String::new();
                    if !exists {
                        files += 1;
                        text += &header(&format!("file-{files}"));
                        held = false;
                    }
                    if let Some(rest) = partial.take() {
                        text += &rest;
                    }
                    for _ in 0..n {
                        text += &new_row(&mut written);
                    }
                    put(&live, &text);
                }
                Op::Partial => {
                    unread = true;
                    if partial.is_none() {
                        let mut text = String::new();
                        if !exists {
                            files += 1;
                            text += &header(&format!("file-{files}"));
                            held = false;
                        }
                        let r = new_row(&mut written);
                        let (a, b) = r.split_at(15);
                        text += a;
                        partial = Some(b.to_string());
                        put(&live, &text);
                    }
                }
                Op::Rotate | Op::RotateDelete | Op::CopyTruncate if exists => {
                    let mut text = partial.take().unwrap_or_default();
                    if !matches!(op, Op::CopyTruncate) {
                        text += CLOSE;
                    }
                    put(&live, &text);
                    let rotated = dir.path().join(format!("conn.r{:08}.log", clock.get()));
                    match op {
                        Op::CopyTruncate => {
                            let copy = dir.path().join(format!("conn.log.{}", clock.get()));
                            fs::copy(&live, &copy).expect("copy");
                            put(&copy, "");
                            OpenOptions::new().write(true).open(&live).expect("open").set_len(0).expect("trunc");
                            // The writer reopens in place with a new header block.
                            files += 1;
                            put(&live, &header(&format!("file-{files}")));
                        }
                        Op::RotateDelete if held => {
                            fs::rename(&live, &rotated).expect("rename");
                            fs::remove_file(&rotated).expect("delete");
                            deleted_unread = true;
                            deleted_since_saved = true;
                        }
                        _ => fs::rename(&live, &rotated).expect("rename"),
                    }
                }
                Op::Rotate | Op::RotateDelete | Op::CopyTruncate => {}
                Op::Poll => {
                    collect(&mut t, &mut seen);
                    deleted_unread = false;
                    unread = false;
                    held = live.exists();
                }
                Op::Truncate => {
                    if exists && !unread && partial.is_none() {
                        OpenOptions::new().write(true).open(&live).expect("open").set_len(0).expect("trunc");
                        files += 1;
                        put(&live, &header(&format!("file-{files}")));
                        // What the checkpoint points at is gone: a kill now cannot re-read it.
                        deleted_since_saved = true;
                    }
                }
                Op::Checkpoint => {
                    saved = (t.checkpoint(), seen.len());
                    // A deleted file not yet read stays at risk until a poll reads it.
                    deleted_since_saved = deleted_unread;
                }
                Op::Kill => {
                    // A file deleted since the checkpoint existed only in the killed process's handle.
                    if !deleted_since_saved {
                        drop(t);
                        t = Tailer::new(&src, ParseOptions::default(), Some(saved.0.clone()));
                        seen.truncate(saved.1);
                        held = false;
                        unread = true;
                    }
                }
                Op::Restart => {
                    // A deleted file lives only in our open handle: a stop before reading it loses it,
                    // as it would any reader. Read it first.
                    if deleted_unread {
                        collect(&mut t, &mut seen);
                        deleted_unread = false;
                    }
                    t = restart(t, &src);
                    held = false;
                }
            }
        }
        // Finish: complete the partial line, then poll until quiet (rotated files take a grace poll).
        if let Some(rest) = partial.take() {
            put(&live, &rest);
        }
        for _ in 0..3 {
            collect(&mut t, &mut seen);
        }
        prop_assert_eq!(seen, written);
    }
}

#[test]
fn start_at_end_uses_the_last_header_block_and_waits_for_a_partial_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    // A second header block mid-file reorders the columns.
    let second = "#separator \\x09\n#fields\tuid\tid.resp_h\tid.orig_h\tduration\n";
    append(
        &live,
        &(header("h1") + &rows(&["A1"]) + CLOSE + second + "B1\t10.0.0.2\t10.0.0.1\t7.0\nB2\t10.0"),
    );
    let src = source(&live, StartAt::End);
    let mut t = tailer(&src);
    assert!(uids(&mut t).is_empty());
    append(&live, ".0.2\t10.0.0.1\t8.0\nB3\t10.0.0.2\t10.0.0.1\t9.0\n");
    let mut got = Vec::new();
    t.poll(&mut |e| {
        if let TailEvent::Record { rec, .. } = e {
            got.push((rec.uid.to_string(), rec.duration));
        }
    })
    .expect("poll");
    assert_eq!(
        got,
        vec![("B2".to_string(), Some(8.0)), ("B3".to_string(), Some(9.0))]
    );
}

// --- Issue 10, 0a-0e: each reduced to one deterministic sequence. ---

fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(0)
        .expect("truncate");
}

/// 0a: after a copytruncate the file is fingerprinted while empty; rotated before the next look, the retired
/// entry must not keep that empty fingerprint, which is a prefix of every file: the unseen rotated files of
/// later rotations (here two while stopped) must still be read.
#[test]
fn scenario_22_short_fingerprint_never_identifies_a_file() {
    let (dir, live, src, mut t) = reading_a1(Some(1_000));

    // copytruncate: the copy holds what we read; the live file is empty when we look.
    copytruncate(&live, 1_010);
    set_mtime(&live, 1_020);
    assert!(poll(&mut t).contains(&Ev::Truncated));

    // The empty file is rotated (renamed) before we look again; a new file takes the path.
    fs::rename(&live, dir.path().join("conn.r1.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"])));
    set_mtime(&live, 1_100);
    assert_eq!(uids(&mut t), strs(&["B1"]));
    let saved = t.checkpoint();
    drop(t);

    // Two rotations while stopped.
    append(&live, &(rows(&["B2"]) + CLOSE));
    set_mtime(&live, 1_200);
    fs::rename(&live, dir.path().join("conn.r2.log")).expect("rename");
    append(&live, &(header("h3") + &rows(&["C1"]) + CLOSE));
    set_mtime(&live, 1_300);
    fs::rename(&live, dir.path().join("conn.r3.log")).expect("rename");
    append(&live, &(header("h4") + &rows(&["D1"])));
    set_mtime(&live, 1_400);

    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    let mut got = uids(&mut t);
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["B2", "C1", "D1"]));
}

/// 0b: the file at the live path when the directory is looked at is renamed before the live path is opened:
/// it must still be read (discovery and the open agree on one snapshot).
#[test]
fn scenario_23_live_path_renamed_between_listing_and_open() {
    let (dir, live, _src, mut t) = reading_a1(None);

    // Rotation: A goes, X takes the path; while we look, X is rotated too and Y takes the path.
    append(&live, &(rows(&["A2"]) + CLOSE));
    fs::rename(&live, dir.path().join("conn.r1.log")).expect("rename");
    append(&live, &(header("hx") + &rows(&["X1"]) + CLOSE));
    let d = dir.path().to_path_buf();
    t.race_hook = Some(Box::new(move || {
        let live = d.join("conn.log");
        fs::rename(&live, d.join("conn.r2.log")).expect("rename in hook");
        append(&live, &(header("hy") + &rows(&["Y1"])));
    }));
    let mut got = uids(&mut t);
    t.race_hook = None;
    got.extend(uids(&mut t));
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["A2", "X1", "Y1"]));
}

/// 0c: a restart between logrotate's copy (`conn.log.1` appears) and its truncate must not take the copy
/// for an unseen rotated file (read again from 0), nor lose the rest.
#[test]
fn scenario_24_restart_between_copy_and_truncate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let copy = dir.path().join("conn.log.1");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1"])));
    set_mtime(&live, 1_000);
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1"]));
    // An earlier copytruncate cycle (rotations have been seen: unseen siblings are looked for).
    fs::copy(&live, &copy).expect("copy");
    set_mtime(&copy, 1_010);
    truncate(&live);
    append(&live, &(header("h2") + &rows(&["B1", "B2"])));
    set_mtime(&live, 1_100);
    assert_eq!(uids(&mut t), strs(&["B1", "B2"]));
    let saved = t.checkpoint();
    drop(t);

    // Stopped: B3 written, then logrotate copies (conn.log.1 -> .2, live -> .1) ... and we restart.
    append(&live, &rows(&["B3"]));
    set_mtime(&live, 1_200);
    fs::rename(&copy, dir.path().join("conn.log.2")).expect("rename");
    fs::copy(&live, &copy).expect("copy");
    set_mtime(&copy, 1_300);
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    assert_eq!(uids(&mut t), strs(&["B3"]));
    // ... then it truncates; the writer goes on.
    truncate(&live);
    append(&live, &(header("h3") + &rows(&["C1"])));
    set_mtime(&live, 1_400);
    let mut got = uids(&mut t);
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["C1"]));
}

/// 0e: after a copytruncate Zeek's writer carries on with rows and no new header: the header state is kept.
/// A writer without O_APPEND leaves a run of NUL bytes up to its old offset: skipped and counted.
#[test]
fn scenario_26_tsv_rows_after_copytruncate_and_nul_run() {
    let (dir, live, _src, mut t) = reading_a1(None);

    fs::copy(&live, dir.path().join("conn.log.1")).expect("copy");
    truncate(&live);
    append(&live, &rows(&["B1"]));
    let ev = poll(&mut t);
    assert!(ev.contains(&Ev::Truncated), "{ev:?}");
    assert!(ev.contains(&Ev::Rec("B1".into())), "{ev:?}");

    // Truncated again; the writer (no O_APPEND) writes at its old offset: NULs up to there.
    let old_len = fs::metadata(&live).expect("meta").len();
    fs::copy(&live, dir.path().join("conn.log.2")).expect("copy");
    truncate(&live);
    {
        use std::os::unix::fs::FileExt;
        let f = OpenOptions::new().write(true).open(&live).expect("open");
        f.write_all_at(row("C1").as_bytes(), old_len)
            .expect("write_at");
    }
    let mut nul = 0u64;
    let mut got = Vec::new();
    t.poll(&mut |e| match e {
        TailEvent::Record { rec, .. } => got.push(rec.uid.to_string()),
        TailEvent::Nul { bytes, .. } => nul += bytes,
        TailEvent::Skipped { reason, .. } => panic!("skipped: {reason:?}"),
        _ => {}
    })
    .expect("poll");
    assert_eq!(got, strs(&["C1"]));
    assert_eq!(nul, old_len);
}

/// Item 1: an error is not absence. The directory becomes unreadable (here a symlink loop, which fails for
/// root too: ELOOP) across a restart: the saved positions are kept and nothing is read twice when it is back.
#[test]
fn scenario_27_unreadable_directory_across_restart_keeps_positions() {
    let top = tempfile::tempdir().expect("tempdir");
    let real = top.path().join("spool");
    fs::create_dir(&real).expect("mkdir");
    let current = top.path().join("current");
    std::os::unix::fs::symlink(&real, &current).expect("symlink");
    let live = current.join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1", "A2"])));
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1", "A2"]));
    let saved = t.checkpoint();
    drop(t);

    // `current` becomes a symlink loop: every look at the directory fails.
    fs::remove_file(&current).expect("unlink");
    std::os::unix::fs::symlink(&current, &current).expect("loop");
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved.clone()));
    let mut lost = false;
    for _ in 0..3 {
        let r = t.poll(&mut |e| lost |= matches!(e, TailEvent::Lost { .. }));
        assert!(
            r.is_err(),
            "an unreadable directory is an error, not absence"
        );
    }
    assert!(!lost, "positions must not be dropped");
    assert_eq!(t.checkpoint(), saved, "the checkpoint keeps every position");

    // Access is back, with a new row: only that row is read.
    fs::remove_file(&current).expect("unlink");
    std::os::unix::fs::symlink(&real, &current).expect("symlink");
    append(&live, &rows(&["A3"]));
    assert_eq!(uids(&mut t), strs(&["A3"]));
}

/// Item 1, while running: a look at the directory that fails part way (a sibling that cannot be read, here
/// a symlink loop) right at a rotation changes nothing: the rotated file is not dropped, and once the look
/// succeeds it is drained and the new file read.
#[test]
fn scenario_27_failed_look_at_a_rotation_changes_nothing() {
    let (dir, live, _src, mut t) = reading_a1(None);
    append(&live, &(rows(&["A2"]) + CLOSE));
    fs::rename(&live, dir.path().join("conn.r1.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"])));
    let bad = dir.path().join("conn.r0.log");
    std::os::unix::fs::symlink(&bad, &bad).expect("loop");
    let mut got = Vec::new();
    for _ in 0..2 {
        let r = t.poll(&mut |e| {
            if let TailEvent::Record { rec, .. } = e {
                got.push(rec.uid.to_string());
            }
        });
        let err = r.expect_err("the look fails");
        assert!(
            err.to_string().contains("conn.r0.log"),
            "names the file: {err}"
        );
    }
    // A2 is still in the open handle: the rotation has not been decided yet.
    assert_eq!(got, strs(&["A2"]));
    fs::remove_file(&bad).expect("unlink");
    got.extend(uids(&mut t));
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["A2", "B1"]));
}

/// 0e across a restart: copytruncate while stopped, and the writer goes on with rows and no header. The
/// copy is drained from the saved offset, and the truncated file's new rows are read with the saved header.
#[test]
fn scenario_26_copytruncate_while_stopped_keeps_the_header() {
    let (_dir, live, src, t) = reading_a1(Some(1_000));
    let saved = t.checkpoint();
    drop(t);
    append(&live, &rows(&["A2"]));
    set_mtime(&live, 1_100);
    copytruncate(&live, 1_200);
    append(&live, &rows(&["B1"]));
    set_mtime(&live, 1_300);
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    let ev = poll(&mut t);
    let recs = rows_of(&ev);
    assert_eq!(
        recs,
        vec![Ev::Rec("A2".into()), Ev::Rec("B1".into())],
        "{ev:?}"
    );
}

/// Tailing scenario 4 with equal modification times (file times are only as fine as the kernel's clock
/// tick: two quick rotations can share one): rotated files never opened are drained in rotation order,
/// by their sortable names (Zeek's timestamps; logrotate's `.N` from the highest), not in directory order.
#[test]
fn scenario_04_equal_mtimes_are_ordered_by_rotated_name() {
    let (dir, live, src, t) = reading_a1(Some(1_000));
    let saved = t.checkpoint();
    drop(t);
    // While stopped: A rotated, then B, C, D written and rotated; B, C and D share one mtime. Created in
    // reverse so that neither inode numbers nor directory order give the answer.
    append(&live, &(rows(&["A2"]) + CLOSE));
    set_mtime(&live, 1_100);
    fs::rename(&live, dir.path().join("conn.2024-01-01-01-00-00.log")).expect("rename");
    for (name, uid) in [("04", "D1"), ("03", "C1"), ("02", "B1")] {
        let p = dir.path().join(format!("conn.2024-01-01-{name}-00-00.log"));
        append(&p, &(header(name) + &rows(&[uid]) + CLOSE));
        set_mtime(&p, 1_200);
    }
    append(&live, &(header("h5") + &rows(&["E1"])));
    set_mtime(&live, 1_300);
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    let mut got = uids(&mut t);
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["A2", "B1", "C1", "D1", "E1"]));
}

/// Tailing scenario 24 with more while stopped: killed between logrotate's copy and truncate; then the
/// truncate, rows with no header, and two Zeek rotations. The copy is recognised (nothing more in it), the
/// truncated file's new rows are read with the kept header, then the two newer files.
#[test]
fn scenario_24_killed_between_copy_and_truncate_then_rotations_while_stopped() {
    let (dir, live, src, mut t) = reading_a1(None);
    // An earlier rotation, so unseen rotated files are looked for.
    fs::rename(&live, dir.path().join("conn.r0.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1", "B2"])));
    assert_eq!(uids(&mut t), strs(&["B1", "B2"]));
    let saved = t.checkpoint();
    fs::copy(&live, dir.path().join("conn.log.1")).expect("copy");
    drop(t);
    truncate(&live);
    append(&live, &rows(&["B3"]));
    fs::rename(&live, dir.path().join("conn.r5.log")).expect("rename");
    append(&live, &(header("h3") + &rows(&["C1"])));
    fs::rename(&live, dir.path().join("conn.r6.log")).expect("rename");
    append(&live, &(header("h4") + &rows(&["D1"])));
    let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
    let ev = poll(&mut t);
    assert!(!ev.contains(&Ev::Lost), "{ev:?}");
    let mut got: Vec<String> = ev
        .into_iter()
        .filter_map(|e| match e {
            Ev::Rec(u) => Some(u),
            _ => None,
        })
        .collect();
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["B3", "C1", "D1"]));
}

/// Tailing scenarios 14 and 26 together: Zeek rotations, then a copytruncate of the newest file, all between
/// two looks. The copy holds the new file's header and first rows, the truncated file goes on with rows and
/// no header: the rows are read with the header of the file they continue.
#[test]
fn scenario_26_copytruncate_right_after_a_burst_of_rotations() {
    let (dir, live, _src, mut t) = reading_a1(Some(1_000));
    append(&live, CLOSE);
    set_mtime(&live, 1_100);
    fs::rename(&live, dir.path().join("conn.r1.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"]) + CLOSE));
    set_mtime(&live, 1_200);
    fs::rename(&live, dir.path().join("conn.r2.log")).expect("rename");
    append(&live, &(header("h3") + &rows(&["C1"])));
    set_mtime(&live, 1_300);
    copytruncate(&live, 1_400);
    append(&live, &rows(&["C2"]));
    set_mtime(&live, 1_500);
    let mut got = Vec::new();
    for _ in 0..3 {
        t.poll(&mut |e| match e {
            TailEvent::Record { rec, .. } => got.push(rec.uid.to_string()),
            TailEvent::Skipped { reason, .. } => got.push(format!("skipped {reason:?}")),
            _ => {}
        })
        .expect("poll");
    }
    assert_eq!(got, strs(&["B1", "C1", "C2"]));
}

/// Tailing scenario 26 with a checkpoint taken before the header block was read (the daemon's save at a
/// first start, scenario 25, is at offset 0; a checkpoint can also fall inside the header block, which Zeek
/// writes in pieces): copytruncate while stopped, the writer goes on with rows and no header. The saved
/// header state is empty, but the copy holds the header block: the rows after the truncate must be parsed
/// with it, not skipped as "data row before any #fields header". Found by the torture test (seed 1).
#[test]
fn scenario_26_copytruncate_while_stopped_before_the_header_was_read() {
    for cut in [0, 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("conn.log");
        let src = source(&live, StartAt::Beginning);
        let h = header("h1");
        let lines: Vec<&str> = h.split_inclusive('\n').collect();
        // The first `cut` header lines are there and read when the checkpoint is taken.
        append(&live, &lines[..cut].concat());
        set_mtime(&live, 1_000);
        let mut t = tailer(&src);
        if cut == 0 {
            // What the daemon does at a first start: open, save, read nothing yet.
            append(&live, &(lines.concat() + &rows(&["A1"])));
            set_mtime(&live, 1_000);
            t.start(&mut |_| {}).expect("start");
        } else {
            assert_eq!(uids(&mut t), Vec::<String>::new());
            append(&live, &(lines[cut..].concat() + &rows(&["A1"])));
        }
        let saved = t.checkpoint();
        drop(t);
        // Stopped: logrotate copytruncate, then Zeek's writer goes on with rows and no header.
        set_mtime(&live, 1_100);
        copytruncate(&live, 1_200);
        append(&live, &rows(&["B1"]));
        set_mtime(&live, 1_300);
        let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
        let mut ev = poll(&mut t);
        ev.extend(poll(&mut t));
        let recs = rows_of(&ev);
        assert_eq!(
            recs,
            vec![Ev::Rec("A1".into()), Ev::Rec("B1".into())],
            "cut {cut}: {ev:?}"
        );
    }
}

/// Tailing scenarios 7, 14 and 23 together: the live file is truncated in place (copytruncate) and the writer
/// goes on; while we look (the live path already opened, the directory not yet listed), it is renamed away
/// (Zeek's rotation) and the next file is written and rotated too. The files rotated after the live file
/// hold later records: they must be read after the live file's rows, not before. Found by the torture test
/// (seed 10: a cumulative alert raised at another level, records read out of order).
#[test]
fn scenario_23_truncated_live_file_rotated_while_we_look() {
    let (dir, live, _src, mut t) = reading_a1(Some(1_000));
    // copytruncate: the copy holds nothing unread; the writer goes on without a header.
    copytruncate(&live, 1_100);
    append(&live, &(rows(&["B1"]) + CLOSE));
    set_mtime(&live, 1_200);
    let d = dir.path().to_path_buf();
    t.race_hook = Some(Box::new(move || {
        let live = d.join("conn.log");
        fs::rename(&live, d.join("conn.2024-01-01-01-00-00.log")).expect("rename in hook");
        append(&live, &(header("h2") + &rows(&["C1"]) + CLOSE));
        set_mtime(&live, 1_300);
        fs::rename(&live, d.join("conn.2024-01-01-02-00-00.log")).expect("rename in hook");
        append(&live, &(header("h3") + &rows(&["D1"])));
        set_mtime(&live, 1_400);
    }));
    let mut got = uids(&mut t);
    t.race_hook = None;
    got.extend(uids(&mut t));
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["B1", "C1", "D1"]));
}

/// Tailing scenario 7, running: rows written between logrotate's copy and its truncate are read from the
/// live file before the truncate, so the copy is shorter than what we read (and no newer than our last read).
/// It is still recognised as the copy, never read again from 0. Found by the torture test (seed 23).
#[test]
fn scenario_07_copy_shorter_than_what_was_read_is_still_the_copy() {
    let (dir, live, _src, mut t) = reading_a1(Some(1_000));
    // An earlier rotation, so unseen rotated files are looked for.
    fs::rename(&live, dir.path().join("conn.r0.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"])));
    set_mtime(&live, 1_100);
    assert_eq!(uids(&mut t), strs(&["B1"]));
    fs::copy(&live, dir.path().join("conn.log.1")).expect("copy");
    // One kernel tick: the copy and the rows after it share a modification time.
    set_mtime(&dir.path().join("conn.log.1"), 1_300);
    append(&live, &rows(&["B2"]));
    set_mtime(&live, 1_300);
    assert_eq!(uids(&mut t), strs(&["B2"]));
    truncate(&live);
    append(&live, &rows(&["C1"]));
    set_mtime(&live, 1_400);
    let mut got = uids(&mut t);
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["C1"]));
}

/// A live file read (P1, P2), then copytruncated by logrotate (an older copy `conn.log.1` left behind) and
/// empty: (live path, copy path, source, tailer, uids read so far).
fn after_a_copytruncate(d: &Path) -> (PathBuf, PathBuf, Source, Tailer, Vec<String>) {
    let live = d.join("conn.log");
    let copy = d.join("conn.log.1");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h0") + &rows(&["P1", "P2"])));
    let mut t = tailer(&src);
    let seen = uids(&mut t);
    fs::copy(&live, &copy).expect("copy");
    truncate(&live);
    (live, copy, src, t, seen)
}

/// Every interleaving of looks with one torture sequence (seed 2 of the long run): a copytruncate onto the
/// name of an older copy (deleted first), rows after the truncate with no header, the truncated file
/// deleted and recreated, the new file renamed away, a third file. Whatever the looks (and a restart before
/// the copy or not), every row is read exactly once.
#[test]
fn scenario_26_copytruncate_delete_recreate_rotate_every_interleaving() {
    const STEPS: usize = 7;
    for (restart_first, variant) in [false, true]
        .into_iter()
        .flat_map(|r| [0, 1, 2].map(|v| (r, v)))
    {
        for mask in 0u32..(1 << STEPS) {
            let dir = tempfile::tempdir().expect("tempdir");
            let d = dir.path();
            let (live, copy, src, mut t, mut seen) = after_a_copytruncate(d);
            if variant == 2 {
                // The reader looked while the file was empty (right after the truncate).
                seen.extend(uids(&mut t));
            }
            append(&live, &rows(&["A1", "A2", "A3"]));
            seen.extend(uids(&mut t));
            if variant == 1 {
                // Rows written since the last look: the copy holds them, the truncate removes them.
                append(&live, &rows(&["A4"]));
            }
            if restart_first {
                // As the daemon does: the saved files are opened at once, before the next look.
                t = restart(t, &src);
                t.start(&mut |_| {}).expect("start");
            }
            let ctx = format!("restart {restart_first} variant {variant} mask {mask:07b}");
            let step = |i: usize, t: &mut Tailer, seen: &mut Vec<String>| {
                if mask & (1 << i) != 0 {
                    seen.extend(uids(t));
                }
            };
            // 0: the old copy is archived (deleted), then a new copy made.
            fs::remove_file(&copy).expect("delete old copy");
            fs::copy(&live, &copy).expect("copy");
            step(0, &mut t, &mut seen);
            // 1: truncate.
            truncate(&live);
            step(1, &mut t, &mut seen);
            // 2: rows, no header.
            append(&live, &rows(&["B1", "B2", "B3", "B4", "B5"]));
            step(2, &mut t, &mut seen);
            // 3: delete + recreate.
            fs::remove_file(&live).expect("delete live");
            step(3, &mut t, &mut seen);
            append(&live, &(header("h2") + &rows(&["C1", "C2"])));
            step(4, &mut t, &mut seen);
            // 5: Zeek's rename.
            fs::rename(&live, d.join("conn.2024-01-01-05-00-00.log")).expect("rename");
            step(5, &mut t, &mut seen);
            append(&live, &(header("h3") + &rows(&["D1"])));
            step(6, &mut t, &mut seen);
            for _ in 0..3 {
                seen.extend(uids(&mut t));
            }
            // The truncated file is deleted while we hold it open: its rows after the truncate are read.
            let mut want = strs(&["P1", "P2", "A1", "A2", "A3"]);
            if variant == 1 {
                want.push("A4".into());
            }
            want.extend(strs(&["B1", "B2", "B3", "B4", "B5", "C1", "C2", "D1"]));
            assert_eq!(seen, want, "{ctx}");
        }
    }
}

/// Torture seed 2 (long), reduced: a file deleted and recreated, a copytruncate onto the name of an older copy
/// (deleted first), rows after the truncate, with looks, checkpoints and SIGKILLs (a restart from the last
/// checkpoint, the records read since it read again) at every step. Whatever the interleaving, every row is
/// read exactly once after the last checkpoint that covers it: the copy is never read again from 0 (it reused
/// the inode of the deleted file, which the restart took for that file rewritten). `LONGCONN_TAIL_PLAN=<12
/// bits>` runs one plan and prints its events.
#[test]
fn scenario_24_copytruncate_after_recreate_kills_every_interleaving() {
    const STEPS: u32 = 6;
    let only = std::env::var("LONGCONN_TAIL_PLAN")
        .ok()
        .and_then(|p| u32::from_str_radix(&p, 2).ok());
    for plan in 0u32..4u32.pow(STEPS) {
        if only.is_some_and(|o| o != plan) {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (live, copy, src, mut t, mut seen) = after_a_copytruncate(d);
        append(&live, &rows(&["P3"]));
        seen.extend(uids(&mut t));
        let mut saved = (
            serde_json::to_string(&t.checkpoint()).expect("json"),
            seen.len(),
        );
        let ctx = format!("plan {plan:012b}");
        // Per step, two bits: 0 nothing, 1 a look, 2 a look and a checkpoint, 3 a SIGKILL (restart from the
        // last checkpoint, what was read since it is read again) and a look.
        let look = |what: &str, t: &mut Tailer, seen: &mut Vec<String>| {
            let ev = poll(t);
            if only.is_some() {
                eprintln!("{what}: {ev:?}");
            }
            seen.extend(recs(&ev));
        };
        let mut step = |i: u32, t: &mut Tailer, seen: &mut Vec<String>| match (plan >> (2 * i)) & 3
        {
            0 => {}
            1 => look(&format!("step {i} look"), t, seen),
            2 => {
                look(&format!("step {i} look"), t, seen);
                saved = (
                    serde_json::to_string(&t.checkpoint()).expect("json"),
                    seen.len(),
                );
            }
            _ => {
                let ck: SourceCheckpoint = serde_json::from_str(&saved.0).expect("json");
                *t = Tailer::new(&src, ParseOptions::default(), Some(ck));
                seen.truncate(saved.1);
                look(&format!("step {i} kill+look"), t, seen);
            }
        };
        // 0: delete + recreate (the header first).
        fs::remove_file(&live).expect("delete live");
        append(&live, &header("h1"));
        step(0, &mut t, &mut seen);
        append(&live, &rows(&["A1", "A2", "A3"]));
        step(1, &mut t, &mut seen);
        // 2: the old copy archived (deleted), a new copy made.
        fs::remove_file(&copy).expect("delete old copy");
        fs::copy(&live, &copy).expect("copy");
        step(2, &mut t, &mut seen);
        // 3: truncate.
        truncate(&live);
        step(3, &mut t, &mut seen);
        // 4: rows, no header.
        append(&live, &rows(&["B1", "B2"]));
        step(4, &mut t, &mut seen);
        append(&live, &rows(&["B3"]));
        step(5, &mut t, &mut seen);
        for _ in 0..3 {
            look("final look", &mut t, &mut seen);
        }
        let want = strs(&["P1", "P2", "P3", "A1", "A2", "A3", "B1", "B2", "B3"]);
        assert_eq!(seen, want, "{ctx}");
    }
}

/// Torture seed 2 (long), reduced: logrotate copies and truncates the live file between our listing of the
/// directory and our look at the live file's content. Decided on that listing, the truncate had no copy: the
/// rows written since our last read were lost, or (after a restart) the copy was taken for an unseen rotated
/// file and read again from 0. The live file's content is read before the listing, so the truncate is
/// decided on a listing that holds the copy.
#[test]
fn scenario_07_copytruncate_between_listing_and_content_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let live = d.join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1"])));
    let mut t = tailer(&src);
    let mut got = uids(&mut t);
    // Written after our last read: only the copy will hold them.
    append(&live, &rows(&["A2", "A3"]));
    t.listed_hook = Some(Box::new(move || {
        let live = d.join("conn.log");
        fs::copy(&live, d.join("conn.log.1")).expect("copy in hook");
        truncate(&live);
        append(&live, &rows(&["B1"]));
    }));
    got.extend(uids(&mut t));
    t.listed_hook = None;
    got.extend(uids(&mut t));
    got.extend(uids(&mut t));
    // A restart reads nothing again.
    let mut t = restart(t, &src);
    got.extend(uids(&mut t));
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["A1", "A2", "A3", "B1"]));
}

/// Torture seed 1 (long), reduced: logrotate copies and truncates the live file, and the writer goes on past
/// our old offset, between our look (the file was the same) and our read. Read at the old offset, the new
/// content gave a cut line ("expected 21 columns, found 18") and rows that were read again from 0 once the
/// truncate was seen. What a read returns counts only if the file still starts with the bytes we know.
#[test]
fn scenario_07_truncate_and_regrow_between_look_and_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let live = d.join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1", "A2"])));
    let mut t = tailer(&src);
    let mut got = uids(&mut t);
    t.listed_hook = Some(Box::new(move || {
        let live = d.join("conn.log");
        fs::copy(&live, d.join("conn.log.1")).expect("copy in hook");
        truncate(&live);
        let more: Vec<String> = (1..=12).map(|i| format!("B{i}")).collect();
        let more: Vec<&str> = more.iter().map(String::as_str).collect();
        append(&live, &rows(&more));
    }));
    let mut events = poll(&mut t);
    t.listed_hook = None;
    for _ in 0..3 {
        events.extend(poll(&mut t));
    }
    assert!(
        !events.iter().any(|e| matches!(e, Ev::Skip(_))),
        "no cut line: {events:?}"
    );
    got.extend(recs(&events));
    let mut want = strs(&["A1", "A2"]);
    want.extend((1..=12).map(|i| format!("B{i}")));
    assert_eq!(got, want);
}

/// Torture seed 3 (long), reduced: the file at the live path is renamed between our open of the path and our
/// listing of the directory, and a newer file is rotated after it in that time. The listing then holds a
/// rotated file newer than the one we opened: drained first, its records came before older ones (cumulative
/// sums clipped by a watermark ahead of them). A file renamed while we looked is taken from the listing, in
/// its place in the rotation order.
#[test]
fn scenario_23_live_file_and_a_newer_one_rotated_while_we_look() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let live = d.join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("ha") + &rows(&["A1"])));
    set_mtime(&live, 1_000);
    let mut t = tailer(&src);
    let mut got = uids(&mut t);
    fs::rename(&live, d.join("conn.2024-01-01-01-00-00.log")).expect("rename");
    append(&live, &(header("hb") + &rows(&["B1"])));
    set_mtime(&live, 1_100);
    t.race_hook = Some(Box::new(move || {
        let live = d.join("conn.log");
        append(&live, CLOSE);
        set_mtime(&live, 1_100);
        fs::rename(&live, d.join("conn.2024-01-01-02-00-00.log")).expect("rename in hook");
        append(&live, &(header("hc") + &rows(&["C1"]) + CLOSE));
        set_mtime(&live, 1_200);
        fs::rename(&live, d.join("conn.2024-01-01-03-00-00.log")).expect("rename in hook");
        append(&live, &(header("hd") + &rows(&["D1"])));
        set_mtime(&live, 1_300);
    }));
    got.extend(uids(&mut t));
    t.race_hook = None;
    for _ in 0..3 {
        got.extend(uids(&mut t));
    }
    assert_eq!(got, strs(&["A1", "B1", "C1", "D1"]));
    // And at a restart (the first look of a restore).
    let mut t = restart(t, &src);
    assert_eq!(uids(&mut t), Vec::<String>::new());
}

/// Torture seed 2 (long), reduced: a restart, and logrotate's copy and truncate (then Zeek's rename) land
/// between the restore's check of the saved live file and its first read of that file's first bytes. Read
/// again after the check, the first bytes were the truncated content: the copy was not recognised, was read
/// from 0 (rows read twice) and, at an equal modification time, after the rows that followed the truncate.
/// A resumed file keeps the first bytes it was recognised by.
#[test]
fn scenario_24_copytruncate_and_rename_during_the_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let live = d.join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("ha") + &rows(&["A1"])));
    let mut t = tailer(&src);
    let mut got = uids(&mut t);
    append(&live, &rows(&["A2", "A3"]));
    let mut t = restart(t, &src);
    t.listed_hook = Some(Box::new(move || {
        let live = d.join("conn.log");
        let copy = d.join("conn.log.1");
        let rotated = d.join("conn.2024-01-01-01-00-00.log");
        fs::copy(&live, &copy).expect("copy in hook");
        truncate(&live);
        append(&live, &(rows(&["B1"]) + CLOSE));
        fs::rename(&live, &rotated).expect("rename in hook");
        // One kernel tick: the copy and the truncated file have the same modification time.
        set_mtime(&copy, 1_000);
        set_mtime(&rotated, 1_000);
        append(&live, &(header("hc") + &rows(&["C1"])));
        set_mtime(&live, 1_100);
    }));
    // The restore's own look.
    t.start(&mut |_| {}).expect("start");
    t.listed_hook = None;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.extend(poll(&mut t));
    }
    got.extend(recs(&events));
    assert_eq!(got, strs(&["A1", "A2", "A3", "B1", "C1"]), "{events:?}");
}

/// Torture seed 5 (long), reduced: while we did not look, the live file was deleted and recreated, the new
/// file copytruncated (its header now only in the copy, its rows going on without one) and then rotated by
/// Zeek's rename. We never had it open: its rows were skipped as "data row before any #fields header". Drained
/// right after its copy, it continues the copy's header.
#[test]
fn scenario_26_copytruncated_then_rotated_before_we_ever_had_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let live = d.join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("hw") + &rows(&["W1"])));
    set_mtime(&live, 900);
    let mut t = tailer(&src);
    let mut got = uids(&mut t);
    fs::remove_file(&live).expect("delete");
    append(&live, &(header("hx") + &rows(&["A1"])));
    set_mtime(&live, 1_000);
    fs::copy(&live, d.join("conn.log.1")).expect("copy");
    set_mtime(&d.join("conn.log.1"), 1_000);
    truncate(&live);
    append(&live, &(rows(&["B1", "B2"]) + CLOSE));
    set_mtime(&live, 1_000);
    fs::rename(&live, d.join("conn.2024-01-01-01-00-00.log")).expect("rename");
    append(&live, &(header("hy") + &rows(&["C1"])));
    set_mtime(&live, 1_100);
    let mut events = Vec::new();
    for _ in 0..3 {
        events.extend(poll(&mut t));
    }
    assert!(
        !events.iter().any(|e| matches!(e, Ev::Skip(_))),
        "nothing skipped: {events:?}"
    );
    got.extend(recs(&events));
    assert_eq!(got, strs(&["W1", "A1", "B1", "B2", "C1"]));
}

/// Polls with a gate that admits `n` more records (a merge reading up to an event time), without looking
/// at the path unless `look`; returns the uids read.
fn poll_admitting(t: &mut Tailer, look: bool, n: usize) -> Vec<String> {
    let mut left = n;
    let mut out = Vec::new();
    t.poll_gated(
        look,
        &mut |_| {
            let ok = left > 0;
            left = left.saturating_sub(1);
            ok
        },
        &mut |e| {
            if let TailEvent::Record { rec, .. } = e {
                out.push(rec.uid.to_string());
            }
        },
    )
    .expect("poll");
    out
}

#[test]
fn a_held_record_is_not_consumed_and_comes_next_across_polls_restarts_and_rotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("conn.log");
    append(
        &log,
        &(header("2024-01-01-00-00-00") + &rows(&["A", "B", "C", "D"])),
    );
    let src = source(&log, StartAt::Beginning);
    let mut t = Tailer::new(&src, ParseOptions::default(), None);
    assert_eq!(poll_admitting(&mut t, true, 1), strs(&["A"]));
    assert!(t.holds(), "B was read and held");
    let before_b = t.checkpoint().live.expect("live").offset;
    assert_eq!(
        before_b,
        (header("2024-01-01-00-00-00").len() + row("A").len()) as u64,
        "the position stays before the held record"
    );
    // Held again: nothing read, nothing moves.
    assert!(poll_admitting(&mut t, false, 0).is_empty());
    assert_eq!(t.checkpoint().live.expect("live").offset, before_b);
    // A restart reads the held record again, then the rest.
    let mut t = restart(t, &src);
    assert_eq!(poll_admitting(&mut t, true, 2), strs(&["B", "C"]));
    // A rotated file holding a record is not finished: the rest of it comes before the new file.
    fs::rename(&log, dir.path().join("conn.2024-01-01-00-00-00.log")).expect("rotate");
    append(&log, &(header("2024-01-01-01-00-00") + &rows(&["E"])));
    assert!(poll_admitting(&mut t, true, 0).is_empty());
    assert!(t.holds());
    assert_eq!(poll_admitting(&mut t, false, 10), strs(&["D", "E"]));
    assert!(!t.holds());
    // Without a gate, poll reads everything as before.
    append(&log, &rows(&["F", "G"]));
    assert_eq!(uids(&mut t), strs(&["F", "G"]));
}

/// A header block whose `#fields` puts `uid` first, then `ts` (the rows of `row_swapped`).
fn header_swapped() -> String {
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\tswapped\n\
     #fields\tuid\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n\
     #types\tstring\ttime\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n"
        .to_string()
}

fn row_swapped(uid: &str) -> String {
    format!("{uid}\t1700000000.000001\t10.0.0.1\t50000\t203.0.113.7\t443\ttcp\tssl\t3600.5\t100\t200\tSF\n")
}

/// A file that changes its header mid-way, with a NUL run, an over-long line and a bad row, and a
/// partial last line.
fn mixed_file() -> (String, Vec<Ev>) {
    let mut text = header("h1");
    let mut want = Vec::new();
    for i in 0..30 {
        text += &row(&format!("A{i}"));
        want.push(Ev::Rec(format!("A{i}")));
    }
    text += &header_swapped();
    for i in 0..30 {
        text += &row_swapped(&format!("B{i}"));
        want.push(Ev::Rec(format!("B{i}")));
        if i == 10 {
            text += "\0\0\0\0";
            want.push(Ev::Nul);
        }
        if i == 20 {
            text += &format!("{}\n", "x".repeat(700));
            want.push(Ev::Skip(SkipReason::TooLong));
        }
    }
    text += &header("h2");
    text += "not a row\n";
    want.push(Ev::Skip(SkipReason::ColumnCount {
        expected: 12,
        found: 1,
    }));
    for i in 0..30 {
        text += &row(&format!("C{i}"));
        want.push(Ev::Rec(format!("C{i}")));
    }
    text += "1700000000.0\tpartial";
    (text, want)
}

fn events_of(t: &mut Tailer, gate: crate::tail::Gate<'_>) -> Vec<Ev> {
    let mut out = Vec::new();
    t.poll_gated(true, gate, &mut |e| match e {
        TailEvent::Record { rec, .. } => out.push(Ev::Rec(rec.uid.to_string())),
        TailEvent::Skipped { reason, .. } => out.push(Ev::Skip(reason)),
        TailEvent::Nul { .. } => out.push(Ev::Nul),
        _ => {}
    })
    .expect("poll");
    out
}

#[test]
fn reading_ahead_keeps_file_order_headers_and_positions_under_a_gate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    let (text, want) = mixed_file();
    append(&live, &text);
    let no_nul = |v: &[Ev]| -> Vec<Ev> { v.iter().filter(|e| **e != Ev::Nul).cloned().collect() };

    // Ungated: every line once, in order, the worker's parses used.
    let mut t = tailer(&src).with_max_line(500);
    assert_eq!(events_of(&mut t, &mut |_| true), want);
    assert!(t.parsed_ahead() > 0, "the file was read ahead");
    let end = t.checkpoint().live.expect("live");

    // A gate that holds every third record it is offered: each poll stops at a held record, whose
    // position the checkpoint keeps (with the header of the rows after it): a restart from the
    // checkpoint of any poll reads exactly the rest.
    let mut t = tailer(&src).with_max_line(500);
    let mut got = Vec::new();
    let mut offered = 0u32;
    let mut polls = 0;
    while got.len() < want.len() || t.holds() {
        polls += 1;
        assert!(polls < 1000, "no progress after {} events", got.len());
        got.extend(events_of(&mut t, &mut |_| {
            offered += 1;
            offered % 3 != 0
        }));
        let json = serde_json::to_string(&t.checkpoint()).expect("serialize");
        let saved: SourceCheckpoint = serde_json::from_str(&json).expect("deserialize");
        let mut again = Tailer::new(&src, ParseOptions::default(), Some(saved)).with_max_line(500);
        let mut whole = got.clone();
        whole.extend(events_of(&mut again, &mut |_| true));
        assert_eq!(
            no_nul(&whole),
            no_nul(&want),
            "restart after {} events",
            got.len()
        );
    }
    assert_eq!(got, want);
    assert!(
        t.parsed_ahead() > 0,
        "the file was read ahead under the gate"
    );
    let live = t.checkpoint().live.expect("live");
    assert_eq!(
        (live.offset, live.line_no, live.header),
        (end.offset, end.line_no, end.header)
    );
}
