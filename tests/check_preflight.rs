//! `check` runs the same preflight as `run` (issue 10 item 6): for each config `run` would refuse, `check`
//! refuses it too, both exit 78 with the same messages, and `run` created nothing; a missing source
//! directory is a warning for both; absurd values are refused naming their key; the shipped
//! `config/longconn.toml` passes `check` and `run` starts on a machine prepared as the package does.
//!
//! Tests that need an unprivileged user run the binary as nobody (65534) through `setpriv` when root (CI);
//! as a normal user they run it plainly.

use crate::support::sensor;

use crate::support::faults::{is_root, skip_unless_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// `longconn ARGS`, as nobody when `unprivileged` and we are root.
fn longconn(args: &[&str], config: &Path, unprivileged: bool) -> Command {
    let exe = env!("CARGO_BIN_EXE_longconn");
    let mut cmd = if unprivileged && is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            exe,
        ]);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args).arg("--config").arg(config);
    sensor::quiet(&mut cmd).stderr(Stdio::piped());
    cmd
}

fn output_of(mut cmd: Command) -> Output {
    // `run` on a config it accepts would not stop: every caller of this passes a refused one, and a
    // daemon that started anyway is killed after a while so the test fails rather than hangs.
    let mut child = cmd.spawn().expect("spawn longconn");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "longconn did not exit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The problem lines after `longconn CMD: PATH: invalid configuration:`.
fn problems(stderr: &str) -> Vec<String> {
    let mut lines = stderr.lines();
    for l in lines.by_ref() {
        if l.ends_with(": invalid configuration:") {
            break;
        }
    }
    lines.map(str::to_string).collect()
}

/// Every path under `dir`, to show that `run` created nothing.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A temp directory that nobody can traverse and read (configs in it must be readable by the service user).
fn world_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(dir.path(), 0o755);
    dir
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
}

/// The start of a syslog output over TLS (its certificates follow).
const TLS_SYSLOG: &str =
    "[[output]]\ntype = \"syslog\"\ntransport = \"tls\"\naddress = \"siem.example.org:6514\"\n";

/// A directory with permissions `mode`.
fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir(path).expect("mkdir");
    chmod(path, mode);
}

/// A `[[output]]` table of the file output writing to `path`.
fn file_output(path: &Path) -> String {
    format!(
        "[[output]]\ntype = \"file\"\npath = \"{}\"\n",
        path.display()
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    chmod(path, 0o644);
}

/// A config with a source in `dir` (its conn.log created), and `rest` appended.
fn config(dir: &Path, state: &Path, rest: &str) -> PathBuf {
    let log = dir.join("conn.log");
    if !log.exists() {
        write(&log, sensor::HEADER);
    }
    let path = dir.join("longconn.toml");
    write(
        &path,
        &format!(
            "[[source]]\npath = \"{}\"\n[state]\ndir = \"{}\"\n{rest}",
            log.display(),
            state.display()
        ),
    );
    path
}

/// `check` and `run` both refuse the config, exit 78, with the same problems; every one of `needles`
/// (a key and a piece of its reason) is among them; and `run` created nothing under `dir`.
fn both_refuse(dir: &Path, config: &Path, unprivileged: bool, needles: &[(&str, &str)]) {
    let before = tree(dir);
    let check = output_of(longconn(&["check"], config, unprivileged));
    let check_err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(check.status.code(), Some(78), "check: {check_err}");
    let run = output_of(longconn(&["run"], config, unprivileged));
    let run_err = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(78), "run: {run_err}");
    let found = problems(&check_err);
    assert_eq!(found, problems(&run_err), "check and run disagree");
    for (key, reason) in needles {
        assert!(
            found
                .iter()
                .any(|l| l.starts_with(&format!("{key}: ")) && l.contains(reason)),
            "no {key}: ...{reason}... in:\n{check_err}"
        );
    }
    assert_eq!(tree(dir), before, "run created files");
}

/// Waits until the daemon's stderr has `needle`; returns all of it so far.
fn wait_stderr(child: &mut std::process::Child, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    loop {
        seen.push_str(&sensor::stderr_now(child));
        if seen.contains(needle) {
            return seen;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            seen.push_str(&sensor::stderr_now(child));
            panic!("longconn exited ({status}) before {needle:?}:\n{seen}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no {needle:?} within 20 s:\n{seen}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn state_path_is_a_plain_file() {
    let dir = world_dir();
    let state = dir.path().join("state");
    write(&state, "not a directory\n");
    let alerts = dir.path().join("alerts.json");
    let cfg = config(dir.path(), &state, &file_output(&alerts));
    both_refuse(
        dir.path(),
        &cfg,
        false,
        &[("state.dir", "is not a directory")],
    );
}

#[test]
fn state_below_a_plain_file() {
    let dir = world_dir();
    write(&dir.path().join("var"), "");
    let state = dir.path().join("var/lib/longconn");
    let cfg = config(dir.path(), &state, "");
    both_refuse(dir.path(), &cfg, false, &[("state.dir", "Not a directory")]);
}

#[test]
fn state_dir_not_writable() {
    let dir = world_dir();
    let state = dir.path().join("state");
    // Root's, read-only for everyone else; as root we run as nobody, else drop our own write bit.
    mkdir(&state, 0o555);
    let cfg = config(dir.path(), &state, "[[output]]\ntype = \"stdout\"\n");
    both_refuse(
        dir.path(),
        &cfg,
        true,
        &[("state.dir", "cannot write in it")],
    );
    chmod(&state, 0o755);
}

#[test]
fn state_dir_cannot_be_created() {
    let dir = world_dir();
    let parent = dir.path().join("lib");
    mkdir(&parent, 0o555);
    let cfg = config(dir.path(), &parent.join("longconn/state"), "");
    both_refuse(
        dir.path(),
        &cfg,
        true,
        &[("state.dir", "cannot be created: ")],
    );
    chmod(&parent, 0o755);
}

#[test]
fn alert_file_directory_not_writable() {
    let dir = world_dir();
    let logs = dir.path().join("log");
    mkdir(&logs, 0o555);
    let state = dir.path().join("state");
    mkdir(&state, 0o777);
    let cfg = config(
        dir.path(),
        &state,
        &file_output(&logs.join("longconn/alerts.json")),
    );
    both_refuse(
        dir.path(),
        &cfg,
        true,
        &[("output[0].path", "cannot be created: ")],
    );
    chmod(&logs, 0o755);
}

/// Issue 10 item 6: the shipped config's missing syslog ca_file passed check, then run failed on it.
#[test]
fn syslog_tls_ca_file_missing() {
    let dir = world_dir();
    let cfg = config(
        dir.path(),
        &dir.path().join("state"),
        &format!(
            "{TLS_SYSLOG}ca_file = \"{}\"\n[[output]]\ntype = \"file\"\npath = \"{}\"\n",
            dir.path().join("siem-ca.pem").display(),
            dir.path().join("alerts.json").display()
        ),
    );
    both_refuse(
        dir.path(),
        &cfg,
        false,
        &[("output[0].ca_file", "No such file or directory")],
    );
}

#[test]
fn syslog_tls_ca_file_not_pem() {
    let dir = world_dir();
    let ca = dir.path().join("ca.pem");
    write(&ca, "this is not a certificate\n");
    let cfg = config(
        dir.path(),
        &dir.path().join("state"),
        &format!("{TLS_SYSLOG}ca_file = \"{}\"\n", ca.display()),
    );
    both_refuse(
        dir.path(),
        &cfg,
        false,
        &[("output[0].ca_file", "holds no PEM certificate")],
    );
}

/// Already refused before the preflight (the key is required); kept so check and run stay in step.
#[test]
fn syslog_tls_without_ca_file() {
    let dir = world_dir();
    let cfg = config(dir.path(), &dir.path().join("state"), TLS_SYSLOG);
    both_refuse(dir.path(), &cfg, false, &[("output[0].ca_file", "missing")]);
}

#[test]
fn syslog_tls_client_key_of_another_certificate() {
    let dir = world_dir();
    let one = rcgen::generate_simple_self_signed(vec!["client".to_string()]).expect("cert");
    let other = rcgen::generate_simple_self_signed(vec!["client".to_string()]).expect("cert");
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("client.pem"),
        dir.path().join("client.key"),
    );
    write(&ca, &one.cert.pem());
    write(&cert, &one.cert.pem());
    write(&key, &other.key_pair.serialize_pem());
    let cfg = config(
        dir.path(),
        &dir.path().join("state"),
        &format!(
            "{TLS_SYSLOG}ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    both_refuse(
        dir.path(),
        &cfg,
        false,
        &[(
            "output[0].client_key",
            "is not the key of the first certificate",
        )],
    );
}

#[test]
fn syslog_tls_client_cert_unreadable() {
    if skip_unless_root(" (an unreadable file needs another user)") {
        return;
    }
    let dir = world_dir();
    let ca = rcgen::generate_simple_self_signed(vec!["siem".to_string()]).expect("cert");
    let (ca_path, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("client.pem"),
        dir.path().join("client.key"),
    );
    write(&ca_path, &ca.cert.pem());
    write(&cert, &ca.cert.pem());
    write(&key, &ca.key_pair.serialize_pem());
    // Root's private files, as an admin may leave them: the service user cannot read them.
    chmod(&cert, 0o600);
    chmod(&key, 0o600);
    let state = dir.path().join("state");
    mkdir(&state, 0o777);
    let cfg = config(
        dir.path(),
        &state,
        &format!(
            "{TLS_SYSLOG}ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            ca_path.display(),
            cert.display(),
            key.display()
        ),
    );
    both_refuse(
        dir.path(),
        &cfg,
        true,
        &[
            ("output[0].client_cert", "Permission denied"),
            ("output[0].client_key", "Permission denied"),
        ],
    );
}

#[test]
fn absurd_values_rejected_naming_the_key() {
    let dir = world_dir();
    let cfg = config(
        dir.path(),
        &dir.path().join("state"),
        "checkpoint_interval = \"100000000000h\"\n\
         [window]\nlength = \"100000000000h\"\nmax_groups = 9223372036854775807\n\
         [single]\nlevels = { low = \"100000000000h\" }\n\
         [cumulative]\nrealert_after = \"100000000000h\"\ninterim_timeout = \"100000000000h\"\n\
         [spool]\nmax_bytes = 9223372036854775807\n\
         [[output]]\ntype = \"stdout\"\nflush_interval = \"100000000000h\"\n",
    );
    both_refuse(
        dir.path(),
        &cfg,
        false,
        &[
            ("state.checkpoint_interval", "at most 24h"),
            ("window.length", "at most 720h (30 days)"),
            ("window.max_groups", "at most 100000000"),
            ("single.levels.low", "at most 8760h"),
            ("cumulative.realert_after", "at most 8760h"),
            ("cumulative.interim_timeout", "at most 720h"),
            ("spool.max_bytes", "at most 1099511627776 (1 TiB)"),
            ("output[0].flush_interval", "at most 1h"),
        ],
    );
}

/// Config errors and machine problems come in one report.
#[test]
fn every_problem_at_once() {
    let dir = world_dir();
    let state = dir.path().join("state");
    write(&state, "");
    let cfg = config(
        dir.path(),
        &state,
        &format!(
            "[window]\nlength = \"forever\"\n{TLS_SYSLOG}ca_file = \"{}\"\n",
            dir.path().join("nope.pem").display()
        ),
    );
    both_refuse(
        dir.path(),
        &cfg,
        false,
        &[
            ("window.length", "not a duration"),
            ("state.dir", "is not a directory"),
            ("output[0].ca_file", "No such file"),
        ],
    );
}

/// ZEEK_NOTES: Zeek may not have created its log directory yet; the daemon waits for it.
#[test]
fn scenario_source_directory_missing_is_a_warning() {
    let dir = world_dir();
    let log = dir.path().join("zeek/logs/current/conn.log");
    let state = dir.path().join("state");
    let path = dir.path().join("longconn.toml");
    write(
        &path,
        &format!(
            "[[source]]\npath = \"{}\"\n[state]\ndir = \"{}\"\n[[output]]\ntype = \"stdout\"\n",
            log.display(),
            state.display()
        ),
    );
    let check = output_of(longconn(&["check"], &path, false));
    let err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(check.status.code(), Some(0), "check: {err}");
    let warning = format!(
        "warning: source[0].path: directory {} does not exist (yet)",
        log.parent().expect("parent").display()
    );
    assert!(err.contains(&warning), "no {warning:?} in: {err}");
    // --quiet: nothing at all (systemd's ExecStartPre).
    let quiet = output_of(longconn(&["check", "--quiet"], &path, false));
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");

    let mut run = longconn(&["run"], &path, false).spawn().expect("spawn");
    let seen = wait_stderr(&mut run, "longconn running");
    assert!(
        seen.contains("does not exist (yet)") && seen.contains("source[0].path"),
        "run did not warn: {seen}"
    );
    sensor::stop(run);
}

/// What the package and systemd set up: the state and log directories, the service user's. The shipped
/// config, its paths moved under a temp root, passes `check` (with a warning: no Zeek here) as that user,
/// and `run` reaches readiness with the same config: the two agree.
#[test]
fn shipped_config_passes_check_and_run_starts() {
    let root = world_dir();
    let r = root.path();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/longconn.toml"))
            .expect("read the shipped config");
    let text = shipped
        .replace(
            "\"/var/lib/longconn",
            &format!("\"{}/var/lib/longconn", r.display()),
        )
        .replace(
            "\"/var/log/longconn",
            &format!("\"{}/var/log/longconn", r.display()),
        )
        .replace("\"/opt/zeek", &format!("\"{}/opt/zeek", r.display()))
        .replace(
            "\"/etc/longconn",
            &format!("\"{}/etc/longconn", r.display()),
        );
    assert!(
        !text.contains("\"/var/") && !text.contains("\"/opt/"),
        "a path left: {text}"
    );
    for d in ["var/lib/longconn", "var/log/longconn", "etc/longconn"] {
        std::fs::create_dir_all(r.join(d)).expect("mkdir");
        chmod(&r.join(d), 0o755);
        for a in Path::new(d).ancestors() {
            if !a.as_os_str().is_empty() {
                chmod(&r.join(a), 0o755);
            }
        }
    }
    if is_root() {
        chown(&r.join("var/lib/longconn"), NOBODY);
        chown(&r.join("var/log/longconn"), NOBODY);
    }
    let path = r.join("etc/longconn/longconn.toml");
    write(&path, &text);

    // The verdicts first: check accepts, and run (which refused the shipped TLS output's missing CA file
    // after check had passed it) gets as far as readiness.
    let check = output_of(longconn(&["check"], &path, true));
    let err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(check.status.code(), Some(0), "check: {err}");
    let mut run = longconn(&["run"], &path, true).spawn().expect("spawn");
    wait_stderr(&mut run, "longconn running");
    sensor::stop(run);
    assert!(
        err.contains("warning: source[0].path: directory"),
        "no warning for the missing Zeek directory: {err}"
    );
}
