/// Tailing scenarios 7, 14 and 23 together: the live file is truncated in place (copytruncate) and the writer
/// goes on; while we look (the live path already opened, the directory not yet listed), it is renamed away
/// (Zeek's rotation) and the next file is written and rotated too. The files rotated after the live file
/// hold later records: they must be read after the live file's rows, not before. Found by the torture test
/// (seed 10: a cumulative alert raised at another level, records read out of order).
#[test]
fn scenario_23_truncated_live_file_rotated_while_we_look() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    append(&live, &(header("h1") + &rows(&["A1"])));
    set_mtime(&live, 1_000);
    let mut t = tailer(&src);
    assert_eq!(uids(&mut t), strs(&["A1"]));
    // copytruncate: the copy holds nothing unread; the writer goes on without a header.
    fs::copy(&live, dir.path().join("conn.log.1")).expect("copy");
    set_mtime(&dir.path().join("conn.log.1"), 1_100);
    truncate(&live);
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
