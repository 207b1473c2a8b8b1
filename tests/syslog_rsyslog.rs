//! End-to-end tests of the syslog output against a real rsyslogd (Debian package `rsyslog`, and
//! `rsyslog-gnutls` for TLS): each test starts its own rsyslogd on loopback with its own config and work
//! directory, writing every received message raw (`%rawmsg%`) to a file, runs the real `longconn run` on a
//! generated conn.log, and checks that every alert `longconn replay` raises for that log arrived intact as an
//! RFC 5424 message. The outage test stops the receiver, restarts the daemon (SIGTERM) and kills it
//! (SIGKILL) in between, and checks that nothing is missing and duplicates only ever share an `event.id`.
//!
//! Without rsyslogd the tests print a skip note, unless `LONGCONN_REQUIRE_RSYSLOG=1` (CI) makes them fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn rsyslogd() -> Option<PathBuf> {
    let found = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("LONGCONN_REQUIRE_RSYSLOG").as_deref() == Ok("1") {
            panic!("rsyslogd not found and LONGCONN_REQUIRE_RSYSLOG=1: apt-get install rsyslog rsyslog-gnutls");
        }
        eprintln!("SKIPPED: rsyslogd not installed (apt-get install rsyslog rsyslog-gnutls)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Clone)]
enum Transport {
    Udp,
    Tcp,
    Tls {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

struct Rsyslog {
    child: Option<Child>,
    out: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd receiving on `port`, with a TCP probe port to know when it listens.
    fn start(bin: &Path, dir: &Path, transport: &Transport, port: u16) -> Rsyslog {
        let work = dir.join("rsyslog-work");
        fs::create_dir_all(&work).unwrap();
        let out = dir.join("received.log");
        let probe = free_port();
        let mut conf = String::new();
        writeln!(
            conf,
            "global(workDirectory=\"{}\" maxMessageSize=\"64k\"",
            work.display()
        )
        .unwrap();
        if let Transport::Tls { ca, cert, key } = transport {
            writeln!(
                conf,
                "  defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                ca.display(),
                cert.display(),
                key.display()
            )
            .unwrap();
        }
        conf.push_str(")\n");
        conf.push_str("template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n");
        conf.push_str("ruleset(name=\"r\") { action(type=\"omfile\" file=\"");
        conf.push_str(&out.display().to_string());
        conf.push_str("\" template=\"raw\") }\n");
        match transport {
            Transport::Udp => {
                conf.push_str("module(load=\"imudp\")\nmodule(load=\"imtcp\")\n");
                writeln!(
                    conf,
                    "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")"
                )
                .unwrap();
            }
            Transport::Tcp => {
                conf.push_str("module(load=\"imtcp\")\n");
                writeln!(
                    conf,
                    "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")"
                )
                .unwrap();
            }
            Transport::Tls { .. } => {
                conf.push_str("module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n");
                writeln!(
                    conf,
                    "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")"
                )
                .unwrap();
            }
        }
        writeln!(
            conf,
            "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{probe}\" ruleset=\"r\")"
        )
        .unwrap();
        let conf_path = dir.join("rsyslog.conf");
        fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("rsyslog.stderr")).unwrap())
            .spawn()
            .unwrap();
        let r = Rsyslog {
            child: Some(child),
            out,
        };
        wait_until(Duration::from_secs(10), "rsyslogd listening", || {
            TcpStream::connect(("127.0.0.1", probe)).is_ok()
        });
        if matches!(transport, Transport::Udp) {
            // The UDP input is opened with the TCP ones; give it a moment after the probe answered.
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            c.wait().unwrap();
        }
    }

    fn received(&self) -> Vec<String> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(c: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child's pid.
    unsafe {
        libc::kill(c.id() as i32, sig);
    }
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n";

/// `n` connections from `first` on, each long enough for a single alert (levels 1m/2m/5m/10m), with
/// increasing timestamps so that cumulative alerts follow too.
fn conn_rows(first: usize, n: usize) -> String {
    let mut s = String::new();
    for i in first..first + n {
        let ts = 1_700_000_000 + i as u64 * 10;
        let dur = 61 + (i % 5) as u64 * 150;
        writeln!(
            s,
            "{ts}.000000\tC{i:017}\t10.1.{}.{}\t{}\t203.0.113.{}\t443\ttcp\tssl\t{dur}.5\t100\t200\tSF",
            i / 200,
            i % 200 + 1,
            40000 + i,
            i % 7 + 1
        )
        .unwrap();
    }
    s
}

fn write_config(dir: &Path, output: &str) -> PathBuf {
    let cfg = format!(
        r#"[sensor]
name = "it-sensor"
[[source]]
path = "{log}"
start_at = "beginning"
[state]
dir = "{state}"
checkpoint_interval = "1s"
[window]
length = "1h"
[single]
levels = {{ low = "1m", medium = "2m", high = "5m", critical = "10m" }}
[cumulative]
levels = {{ low = "20m", medium = "40m", high = "80m", critical = "160m" }}
[[output]]
{output}
batch_size = 50
flush_interval = "50ms"
"#,
        log = dir.join("conn.log").display(),
        state = dir.join("state").display(),
    );
    let path = dir.join("longconn.toml");
    fs::write(&path, cfg).unwrap();
    path
}

/// The alerts `longconn replay` raises for the log: event.id -> alert JSON.
fn expected(config: &Path, log: &Path) -> BTreeMap<String, serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_longconn"))
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg(log)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut m = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        m.insert(v["event"]["id"].as_str().unwrap().to_string(), v);
    }
    m
}

fn start_daemon(dir: &Path, config: &Path, n: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_longconn"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join(format!("daemon{n}.stderr"))).unwrap())
        .spawn()
        .unwrap()
}

fn stop_daemon(mut c: Child) {
    signal(&c, libc::SIGTERM);
    let status = c.wait().unwrap();
    assert!(status.success(), "daemon exit: {status}");
}

/// One received RFC 5424 message, checked field by field; returns its JSON body.
fn parse_5424(line: &str) -> serde_json::Value {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once('>').unwrap();
    let pri: u16 = pri.parse().unwrap();
    let (version, rest) = rest.split_once(' ').unwrap();
    assert_eq!(version, "1", "{line}");
    let mut parts = rest.splitn(6, ' ');
    let ts = parts.next().unwrap();
    let host = parts.next().unwrap();
    let app = parts.next().unwrap();
    let procid = parts.next().unwrap();
    let msgid = parts.next().unwrap();
    let rest = parts.next().unwrap();
    let body = rest
        .strip_prefix("- ")
        .unwrap_or_else(|| panic!("no nil SD: {line}"));
    assert!(!host.is_empty() && host != "-", "{line}");
    assert_eq!(app, "longconn");
    assert!(procid.bytes().all(|b| b.is_ascii_digit()), "{line}");
    assert_eq!(msgid, "ALERT");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(
        ts,
        v["@timestamp"].as_str().unwrap(),
        "TIMESTAMP is @timestamp"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok());
    let sev = match v["event"]["severity"].as_u64().unwrap() {
        1 | 2 => 4,
        3 => 3,
        _ => 2,
    };
    assert_eq!(pri, 16 * 8 + sev, "local0 and the level's severity: {line}");
    v
}

/// Every expected alert arrived, intact; duplicates share an event.id and are the same alert.
fn check_received(received: &[String], want: &BTreeMap<String, serde_json::Value>) {
    let mut seen = BTreeSet::new();
    for line in received {
        let v = parse_5424(line);
        let id = v["event"]["id"].as_str().unwrap().to_string();
        assert_eq!(Some(&v), want.get(&id), "unexpected or altered alert {id}");
        seen.insert(id);
    }
    let missing: Vec<&String> = want.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(missing.is_empty(), "missing alerts: {missing:?}");
}

fn ids_received(received: &[String]) -> BTreeSet<String> {
    received
        .iter()
        .filter_map(|l| l.split_once(" - ").map(|x| x.1.to_string()))
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .filter_map(|v| v["event"]["id"].as_str().map(str::to_string))
        .collect()
}

fn deliver_once(transport: Transport, output: impl Fn(u16) -> String) {
    let Some(bin) = rsyslogd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let transport = match transport {
        Transport::Tls { .. } => tls_files(dir.path()),
        t => t,
    };
    let port = free_port();
    let rs = Rsyslog::start(&bin, dir.path(), &transport, port);
    fs::write(
        dir.path().join("conn.log"),
        format!("{HEADER}{}", conn_rows(0, 60)),
    )
    .unwrap();
    let output = output(port).replace("CA_FILE", &dir.path().join("ca.pem").display().to_string());
    let config = write_config(dir.path(), &output);
    let want = expected(&config, &dir.path().join("conn.log"));
    assert!(
        want.len() >= 60,
        "the log raises its alerts: {}",
        want.len()
    );
    let d = start_daemon(dir.path(), &config, 1);
    wait_until(Duration::from_secs(20), "all alerts at rsyslog", || {
        ids_received(&rs.received()).len() >= want.len()
    });
    stop_daemon(d);
    check_received(&rs.received(), &want);
}

#[test]
fn rsyslog_udp() {
    deliver_once(Transport::Udp, |port| {
        format!("type = \"syslog\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{port}\"")
    });
}

#[test]
fn rsyslog_tcp_octet_counting() {
    deliver_once(Transport::Tcp, |port| {
        format!("type = \"syslog\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"")
    });
}

fn tls_files(dir: &Path) -> Transport {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "longconn test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let srv_key = KeyPair::generate().unwrap();
    let mut srv_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    srv_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let srv = srv_params.signed_by(&srv_key, &ca, &ca_key).unwrap();
    let t = Transport::Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    if let Transport::Tls { ca: c, cert, key } = &t {
        fs::write(c, ca.pem()).unwrap();
        fs::write(cert, srv.pem()).unwrap();
        fs::write(key, srv_key.serialize_pem()).unwrap();
    }
    t
}

#[test]
fn rsyslog_tls() {
    let Some(_) = rsyslogd() else { return };
    if !Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists()
        && std::env::var("LONGCONN_REQUIRE_RSYSLOG").as_deref() != Ok("1")
    {
        eprintln!("SKIPPED: rsyslog-gnutls not installed");
        return;
    }
    deliver_once(
        Transport::Tls {
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
        },
        |port| {
            // CA_FILE becomes the CA that tls_files wrote into the test directory.
            format!(
                "type = \"syslog\"\ntransport = \"tls\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\nca_file = \"CA_FILE\""
            )
        },
    );
}

#[test]
fn rsyslog_outage_with_restart_and_kill() {
    let Some(bin) = rsyslogd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let log = d.join("conn.log");
    let config = write_config(
        d,
        &format!("type = \"syslog\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\""),
    );
    let append = |rows: String| {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .unwrap();
        f.write_all(rows.as_bytes()).unwrap();
    };
    // Part A is delivered while the receiver is up.
    append(format!("{HEADER}{}", conn_rows(0, 40)));
    let mut rs = Rsyslog::start(&bin, d, &Transport::Tcp, port);
    let d1 = start_daemon(d, &config, 1);
    let want_a = expected(&config, &log);
    wait_until(Duration::from_secs(20), "part A delivered", || {
        ids_received(&rs.received()).len() >= want_a.len()
    });
    // Receiver down. Part B is read and spooled; the daemon is stopped (SIGTERM) while it cannot deliver.
    rs.stop();
    append(conn_rows(40, 40));
    // Read (its alerts spooled) before the stop: the checkpoint covers the file.
    crate::support::sensor::wait_checkpoint_covers(&d.join("state"), &log);
    stop_daemon(d1);
    // Part C, read by a daemon that is killed (SIGKILL) while the receiver is still down.
    append(conn_rows(80, 40));
    let mut d2 = start_daemon(d, &config, 2);
    crate::support::sensor::wait_checkpoint_covers(&d.join("state"), &log);
    d2.kill().unwrap();
    d2.wait().unwrap();
    // Receiver back, daemon started again: everything arrives.
    let rs = Rsyslog::start(&bin, d, &Transport::Tcp, port);
    let want = expected(&config, &log);
    let d3 = start_daemon(d, &config, 3);
    wait_until(
        Duration::from_secs(30),
        "every alert delivered after the outage",
        || ids_received(&rs.received()).len() >= want.len(),
    );
    stop_daemon(d3);
    let log1 = fs::read_to_string(d.join("daemon1.stderr")).unwrap();
    assert!(
        log1.contains("delivery failed, will retry"),
        "the outage was seen:\n{log1}"
    );
    let log3 = fs::read_to_string(d.join("daemon3.stderr")).unwrap();
    assert!(log3.contains("checkpoint restored"), "{log3}");
    let received = rs.received();
    check_received(&received, &want);
    let dups = received.len() - ids_received(&received).len();
    eprintln!(
        "outage test: {} alerts expected, {} messages received, {dups} duplicates (all sharing an event.id)",
        want.len(),
        received.len()
    );
}
