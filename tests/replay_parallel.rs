//! `longconn replay` reads and parses on other threads than the detector's, in batches: a conn.log of
//! 30,000 records (many batches) with bad lines spread in it and a cut-off last line, and an ssl.log whose
//! records are merged in by event time, give the alerts of the same lines split into hundreds of small files
//! (a batch boundary at every file) and of the same log read from stdin, and the skipped-line messages of a
//! model of the sequential merge, in its order: each context record is fed before the first conn record
//! that ends after it, and the context file's bad lines are reported when the merge reads past them.

use crate::support::sensor::{bad_row, row, HEADER};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Single level low at 4 h, cumulative off.
const CONFIG: &str =
    "[sensor]\nname = \"t\"\n[single]\nlevels = { low = \"4h\" }\n[cumulative]\nlevels = {}\n";

const SSL_HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tssl\n#open\t2024-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tversion\tserver_name\n#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tstring\n";

const RECORDS: u32 = 30_000;
/// Header lines before the first row, in both logs.
const HEADER_LINES: u64 = 8;

/// The hosts of conn record `n`.
fn hosts(n: u32) -> (String, String) {
    (
        format!("10.1.{}.{}", n % 7, n % 211 + 1),
        format!("203.0.113.{}", n % 53 + 1),
    )
}

/// Conn record `n` (written at `1_700_000_000 + n + duration`): one in 97 lasts 5 h, the others a minute.
fn conn(n: u32) -> (String, f64) {
    let (o, r) = hosts(n);
    let duration = if n % 97 == 5 { 5.0 * 3600.0 } else { 60.0 };
    (
        row(n, &o, &r, duration),
        1_700_000_000.0 + f64::from(n) + duration,
    )
}

/// The handshake of conn record `n`, half a second before it starts.
fn ssl(n: u32) -> (String, f64) {
    let (o, r) = hosts(n);
    let ts = 1_700_000_000.0 + f64::from(n) - 0.5;
    (
        format!(
            "{ts:.6}\tC{n:08}\t{o}\t40000\t{r}\t443\tTLSv13\tsvc{}.example.com\n",
            n % 13
        ),
        ts,
    )
}

/// A line of a log: a record written at a time, or a bad line with the message it is skipped with.
enum Entry {
    Record(f64),
    Bad(String),
}

/// The logs' text and their lines after the header.
struct Logs {
    conn: Vec<(String, Entry)>,
    ssl: Vec<(String, Entry)>,
}

fn logs() -> Logs {
    let mut conns = Vec::new();
    for n in 0..RECORDS {
        let (text, end) = conn(n);
        conns.push((text, Entry::Record(end)));
        if n % 1213 == 600 {
            let msg = "expected 12 columns as #fields says, found 3".to_string();
            conns.push((bad_row(n), Entry::Bad(msg)));
        }
    }
    // The last line cut off in the middle of a row.
    let cut = "1700030000.000000\tCcut\t10.1.0".to_string();
    conns.push((
        cut,
        Entry::Bad("last line cut off (no newline at the end)".into()),
    ));
    // A handshake for one record in 7 and for every long one.
    let mut ssls = Vec::new();
    for n in (0..RECORDS).filter(|n| n % 7 == 0 || n % 97 == 5) {
        if n % 3500 == 14 {
            let msg = "expected 8 columns as #fields says, found 3".to_string();
            ssls.push((format!("{n}.5\tCbad{n}\t10.0.0.1\n"), Entry::Bad(msg)));
        }
        let (text, ts) = ssl(n);
        ssls.push((text, Entry::Record(ts)));
    }
    Logs {
        conn: conns,
        ssl: ssls,
    }
}

/// The skipped-line messages of a sequential replay of `conn.log` (named `conn_name`) and `ssl.log`, in
/// order: the first 20 of each file.
fn expected_skipped(logs: &Logs, conn_name: &str) -> Vec<String> {
    struct Said {
        out: Vec<String>,
        shown: [u32; 2],
    }
    impl Said {
        fn say(&mut self, file: usize, name: &str, i: usize, msg: &str) {
            self.shown[file] += 1;
            if self.shown[file] <= 20 {
                let line_no = HEADER_LINES + i as u64 + 1;
                self.out.push(format!("{name}:{line_no}: skipped: {msg}"));
            }
        }
    }
    /// The index of the first ssl record from `i` on (the length at the end), the bad lines before it said.
    fn advance(ssl: &[(String, Entry)], mut i: usize, said: &mut Said) -> usize {
        while let Some((_, e)) = ssl.get(i) {
            match e {
                Entry::Record(_) => return i,
                Entry::Bad(msg) => said.say(1, "ssl.log", i, msg),
            }
            i += 1;
        }
        i
    }
    let mut said = Said {
        out: Vec::new(),
        shown: [0; 2],
    };
    let mut next = advance(&logs.ssl, 0, &mut said);
    let mut written = f64::NEG_INFINITY;
    for (i, (_, e)) in logs.conn.iter().enumerate() {
        match e {
            Entry::Record(end) => {
                written = written.max(*end);
                while let Some((_, Entry::Record(ts))) = logs.ssl.get(next) {
                    if *ts > written {
                        break;
                    }
                    next = advance(&logs.ssl, next + 1, &mut said);
                }
            }
            Entry::Bad(msg) => said.say(0, conn_name, i, msg),
        }
    }
    said.out
}

fn run(dir: &Path, args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_longconn"));
    cmd.current_dir(dir).arg("replay").args(args);
    if let Some(p) = stdin {
        cmd.stdin(Stdio::from(std::fs::File::open(p).expect("stdin file")));
    }
    cmd.output().expect("longconn")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn skipped_lines(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| l.contains(": skipped: "))
        .map(str::to_string)
        .collect()
}

fn summary_row<'a>(stderr: &'a str, label: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} row in:\n{stderr}"))
}

#[test]
fn replay_in_batches_matches_the_record_by_record_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("a.toml"), CONFIG).expect("a.toml");
    let logs = logs();
    let conn_text: String = logs.conn.iter().map(|(t, _)| t.as_str()).collect();
    let ssl_text: String = logs.ssl.iter().map(|(t, _)| t.as_str()).collect();
    std::fs::write(d.join("conn.log"), format!("{HEADER}{conn_text}")).expect("conn.log");
    std::fs::write(d.join("ssl.log"), format!("{SSL_HEADER}{ssl_text}")).expect("ssl.log");

    let whole = run(d, &["--config", "a.toml", "conn.log", "ssl.log"], None);
    assert!(whole.status.success(), "{}", text(&whole.stderr));
    let alerts = text(&whole.stdout);
    // Long records alert (fewer later on, as their destinations become common), each named by its
    // handshake.
    let raised = alerts.lines().count();
    assert!(raised >= 20, "{raised} alerts: {}", text(&whole.stderr));
    assert!(
        alerts.lines().all(|l| l.contains(".example.com")),
        "an alert without its SNI: {alerts}"
    );
    let want = expected_skipped(&logs, "conn.log");
    assert_eq!(
        want.len(),
        20 + 9,
        "the model shows 20 conn lines and 9 ssl lines"
    );
    assert_eq!(skipped_lines(&whole), want);
    let stderr = text(&whole.stderr);
    let bad_conn = logs
        .conn
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Bad(_)))
        .count();
    let bad_ssl = logs
        .ssl
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Bad(_)))
        .count();
    let skipped = bad_conn + bad_ssl;
    assert_eq!(
        summary_row(&stderr, "lines skipped"),
        format!(
            "  {:<22}{skipped} (column_count {}, truncated 1)",
            "lines skipped",
            skipped - 1
        )
    );
    assert_eq!(
        summary_row(&stderr, "records seen"),
        format!("  {:<22}{RECORDS}", "records seen")
    );

    // The same lines in files of a few dozen lines each, given in order (the ssl.log in three).
    let mut args: Vec<String> = ["--config", "a.toml"].map(String::from).to_vec();
    for (i, part) in logs.conn.chunks(61).enumerate() {
        let name = format!("part{i:04}.conn.log");
        let body: String = part.iter().map(|(t, _)| t.as_str()).collect();
        std::fs::write(d.join(&name), format!("{HEADER}{body}")).expect("part");
        args.push(name);
    }
    for (i, part) in logs.ssl.chunks(logs.ssl.len() / 3 + 1).enumerate() {
        let name = format!("part{i}.ssl.log");
        let body: String = part.iter().map(|(t, _)| t.as_str()).collect();
        std::fs::write(d.join(&name), format!("{SSL_HEADER}{body}")).expect("part");
        args.insert(2, name);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let split = run(d, &args, None);
    assert!(split.status.success(), "{}", text(&split.stderr));
    assert_eq!(text(&split.stdout), alerts, "split files");
    let split_err = text(&split.stderr);
    assert_eq!(
        summary_row(&split_err, "lines skipped"),
        summary_row(&stderr, "lines skipped")
    );

    // From stdin: the same alerts and messages, named <stdin>.
    let piped = run(
        d,
        &["--config", "a.toml", "ssl.log", "-"],
        Some(&d.join("conn.log")),
    );
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert_eq!(text(&piped.stdout), alerts, "stdin");
    assert_eq!(skipped_lines(&piped), expected_skipped(&logs, "<stdin>"));
}

#[test]
fn replay_reports_a_missing_file_between_others_in_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("a.toml"), CONFIG).expect("a.toml");
    let mut first = String::from(HEADER);
    let mut second = String::from(HEADER);
    for n in 0..5000 {
        first.push_str(&conn(n).0);
        second.push_str(&conn(n + 5000).0);
    }
    first.push_str(&bad_row(1));
    second.push_str(&bad_row(2));
    std::fs::write(d.join("one.conn.log"), first).expect("one");
    std::fs::write(d.join("two.conn.log"), second).expect("two");
    let out = run(
        d,
        &[
            "--config",
            "a.toml",
            "one.conn.log",
            "missing.conn.log",
            "two.conn.log",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stderr)
        .lines()
        .take_while(|l| !l.starts_with("longconn replay summary"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "one.conn.log:5009: skipped: expected 12 columns as #fields says, found 3".to_string(),
            "longconn replay: missing.conn.log: No such file or directory (os error 2)".into(),
            "two.conn.log:5009: skipped: expected 12 columns as #fields says, found 3".into(),
        ]
    );
    // The alerts of the two files together.
    let mut both = String::from(HEADER);
    for n in 0..10_000 {
        both.push_str(&conn(n).0);
    }
    std::fs::write(d.join("both.conn.log"), both).expect("both");
    let reference = run(d, &["--config", "a.toml", "both.conn.log"], None);
    assert!(reference.status.success(), "{}", text(&reference.stderr));
    assert!(!reference.stdout.is_empty());
    assert_eq!(text(&out.stdout), text(&reference.stdout));
}
