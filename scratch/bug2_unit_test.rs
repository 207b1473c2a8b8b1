/// Tailing scenario 25 (and 5): a fresh state directory, the daemon started before Zeek wrote anything. The
/// first file is written and rotated (renamed, still in the directory) before the first poll, and the next
/// file is at the live path: the rotated one must be read first, not skipped. Found by the torture test
/// (seed 1: records 1..6 never read).
#[test]
fn scenario_25_first_file_rotated_before_the_first_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("conn.log");
    let src = source(&live, StartAt::Beginning);
    let mut t = tailer(&src);
    // What the daemon does at a first start: open (nothing there yet) and save, before any poll.
    t.start(&mut |_| {}).expect("start");
    append(&live, &(header("h1") + &rows(&["A1"]) + CLOSE));
    set_mtime(&live, 1_000);
    fs::rename(&live, dir.path().join("conn.2024-01-01-00-00-00.log")).expect("rename");
    append(&live, &(header("h2") + &rows(&["B1"])));
    set_mtime(&live, 1_100);
    let mut got = uids(&mut t);
    got.extend(uids(&mut t));
    assert_eq!(got, strs(&["A1", "B1"]));
}
