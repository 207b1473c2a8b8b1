//! Issue 12 end to end: the daemon follows conn.log and ssl.log through a rotation of ssl.log and a
//! SIGKILL, and names the servers in its alerts (`destination.domain`, `longconn.domain_source`, the
//! `named_tls_usual_port` modifier) exactly as `longconn replay` does on the joined files.

use crate::support::sensor::{
    quiet, replay_files, row, signal, stop, wait_checkpoint_covers, HEADER,
};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSL_HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tssl\n#open\t2024-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tversion\tserver_name\n#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tstring\n";

/// Connection `n`: from one of five hosts to a server of its own, 5 h long (medium before context).
fn conn(n: u32) -> String {
    row(
        n,
        &format!("10.0.0.{}", n % 5 + 1),
        &format!("203.0.113.{n}"),
        5.0 * 3600.0,
    )
}

/// The ssl.log line of connection `n` (same uid and ts as [`conn`]).
fn ssl(n: u32) -> String {
    let ts = 1_700_000_000.0 + f64::from(n);
    format!(
        "{ts:.6}\tC{n:08}\t10.0.0.{}\t40000\t203.0.113.{n}\t443\tTLSv13\tsvc{}.example.com\n",
        n % 5 + 1,
        n % 3
    )
}

fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&self) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_longconn"));
        cmd.arg("run").arg("--config").arg(&self.config);
        quiet(&mut cmd).stderr(Stdio::piped());
        cmd.spawn().expect("spawn longconn")
    }
}

#[test]
fn daemon_names_servers_from_ssl_log_as_replay_does_through_rotation_and_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = Env {
        config: dir.path().join("longconn.toml"),
        dir,
    };
    let (conn_log, ssl_log, state) = (env.path("conn.log"), env.path("ssl.log"), env.path("state"));
    fs::write(
        &env.config,
        format!(
            "[sensor]\nname = \"test\"\n[[source]]\npath = \"{}\"\n[[source]]\npath = \"{}\"\n[state]\ndir = \"{}\"\ncheckpoint_interval = \"100ms\"\n[single]\nlevels = {{ low = \"1h\", medium = \"4h\" }}\n[cumulative]\nlevels = {{}}\n[[output]]\ntype = \"file\"\npath = \"{}\"\n",
            ssl_log.display(),
            conn_log.display(),
            state.display(),
            env.path("alerts.json").display(),
        ),
    )
    .expect("config");
    // What replay will be given: every conn line and every ssl line, each in one file.
    let mut all_conn = String::from(HEADER);
    let mut all_ssl = String::from(SSL_HEADER);

    let first_ssl: String = (0..30).map(ssl).collect();
    fs::write(&ssl_log, format!("{SSL_HEADER}{first_ssl}")).expect("ssl.log");
    fs::write(&conn_log, HEADER).expect("conn.log");
    all_ssl.push_str(&first_ssl);
    let child = env.start();
    // The handshakes are read (the checkpoint covers ssl.log) before their connections end.
    wait_checkpoint_covers(&state, &ssl_log);
    // 0..20 have an SNI; 30..35 have none.
    let batch: String = (0..20).chain(30..35).map(conn).collect();
    append(&conn_log, &batch);
    all_conn.push_str(&batch);

    // ssl.log rotated as Zeek does (rename, new file with its header), new handshakes in it.
    fs::rename(&ssl_log, env.path("ssl.2024-01-01-00-00-00.log")).expect("rotate ssl.log");
    let second_ssl: String = (40..60).map(ssl).collect();
    fs::write(&ssl_log, format!("{SSL_HEADER}{second_ssl}")).expect("new ssl.log");
    all_ssl.push_str(&second_ssl);
    wait_checkpoint_covers(&state, &ssl_log);
    let batch: String = (20..30).chain(40..50).map(conn).collect();
    append(&conn_log, &batch);
    all_conn.push_str(&batch);
    // SIGKILL right after the append: the batch may be read or not, the checkpoint is likely behind, and
    // what is read again after the restart is named from the context the checkpoint saved.
    let mut child = child;
    signal(&child, libc::SIGKILL);
    let _ = child.wait();

    let child = env.start();
    let batch: String = (50..60).map(conn).collect();
    append(&conn_log, &batch);
    all_conn.push_str(&batch);

    fs::write(env.path("all.conn.log"), &all_conn).expect("joined conn");
    fs::write(env.path("all.ssl.log"), &all_ssl).expect("joined ssl");
    let want: BTreeSet<String> = replay_files(
        &env.config,
        &[env.path("all.conn.log"), env.path("all.ssl.log")],
    )
    .into_iter()
    .collect();
    assert_eq!(want.len(), 55, "one alert per connection");
    let named = want
        .iter()
        .filter(|l| l.contains("\"domain_source\":\"sni\""))
        .count();
    assert_eq!(named, 50, "every connection with a handshake is named");
    assert_eq!(
        want.iter()
            .filter(|l| l.contains("named_tls_usual_port"))
            .count(),
        50
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = lines(&env.path("alerts.json")).into_iter().collect();
        if want.is_subset(&got) {
            assert_eq!(
                got, want,
                "every alert is one replay raises, names included"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing after 30 s: {:?}",
            want.difference(&got).take(3).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(child);
}
