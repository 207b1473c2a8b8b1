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
        fs::copy(&live, dir.path().join("conn.log.1")).expect("copy");
        set_mtime(&dir.path().join("conn.log.1"), 1_200);
        truncate(&live);
        append(&live, &rows(&["B1"]));
        set_mtime(&live, 1_300);
        let mut t = Tailer::new(&src, ParseOptions::default(), Some(saved));
        let mut ev = poll(&mut t);
        ev.extend(poll(&mut t));
        let recs: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, Ev::Rec(_) | Ev::Skip(_)))
            .cloned()
            .collect();
        assert_eq!(
            recs,
            vec![Ev::Rec("A1".into()), Ev::Rec("B1".into())],
            "cut {cut}: {ev:?}"
        );
    }
}
