//! Throughput of `longconn scan` against the analysts' shell pipeline, on a generated conn.log.
//!
//! Generates a deterministic Zeek TSV conn.log (default 2,000,000 records, `LONGCONN_BENCH_RECORDS` to change;
//! realistic field widths, ~100k host pairs, 4% unset durations), its JSON and gzip forms, then times the real
//! binary on each and, when `awk`, `sort` and `datamash` are installed, the shell cumulative pipeline on the
//! same TSV file. Prints records/s, peak memory, and the ratio. Run: `cargo bench --bench scan`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const UID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn generate(dir: &Path, records: u64) -> (PathBuf, PathBuf, PathBuf) {
    let tsv = dir.join("conn.log");
    let json = dir.join("conn.ndjson");
    let gz = dir.join("conn.log.gz");
    let mut t = std::io::BufWriter::new(std::fs::File::create(&tsv).expect("create tsv"));
    let mut j = std::io::BufWriter::new(std::fs::File::create(&json).expect("create json"));
    writeln!(t, "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2024-04-19-00-00-01\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]").unwrap();
    let mut rng = Lcg(42);
    let mut ts = 1_713_484_795.0f64;
    let services = ["dns", "http", "ssl", "-", "ssh", "-"];
    let mut line = String::with_capacity(300);
    for _ in 0..records {
        ts += rng.below(2000) as f64 / 1e4;
        let mut uid = String::from("C");
        for _ in 0..17 {
            uid.push(UID_CHARS[rng.below(62) as usize] as char);
        }
        let o = rng.below(50_000);
        let orig = format!("10.{}.{}.{}", o >> 16 & 255, o >> 8 & 255, o & 255);
        let r = rng.below(2) + o % 7;
        let resp = format!("{}.{}.{}.{}", 20 + r, 100 + (o % 50), r * 3, 1 + r);
        let resp_p = [443u64, 80, 53, 22, 8080][rng.below(5) as usize];
        let unset = rng.below(25) == 0;
        let dur =
            rng.below(3_600_000_000) as f64 / 1e6 * if rng.below(10) == 0 { 10.0 } else { 0.01 };
        let svc = services[rng.below(6) as usize];
        let (ob, rb) = (rng.below(100_000), rng.below(1_000_000));
        line.clear();
        let dur_s = if unset {
            "-".to_string()
        } else {
            format!("{dur:.6}")
        };
        let _ = write!(
            line,
            "{ts:.6}\t{uid}\t{orig}\t{}\t{resp}\t{resp_p}\ttcp\t{svc}\t{dur_s}\t{ob}\t{rb}\tSF\tT\tF\t0\tShADadFf\t{}\t{}\t{}\t{}\t-",
            1024 + rng.below(60000),
            rng.below(100),
            ob + 500,
            rng.below(100),
            rb + 500
        );
        writeln!(t, "{line}").unwrap();
        let dur_j = if unset {
            String::new()
        } else {
            format!(",\"duration\":{dur:.6}")
        };
        let svc_j = if svc == "-" {
            String::new()
        } else {
            format!(",\"service\":\"{svc}\"")
        };
        writeln!(
            j,
            "{{\"ts\":{ts:.6},\"uid\":\"{uid}\",\"id.orig_h\":\"{orig}\",\"id.orig_p\":{},\"id.resp_h\":\"{resp}\",\"id.resp_p\":{resp_p},\"proto\":\"tcp\"{svc_j}{dur_j},\"orig_bytes\":{ob},\"resp_bytes\":{rb},\"conn_state\":\"SF\",\"local_orig\":true,\"local_resp\":false,\"missed_bytes\":0,\"history\":\"ShADadFf\",\"orig_pkts\":{},\"orig_ip_bytes\":{},\"resp_pkts\":{},\"resp_ip_bytes\":{}}}",
            1024 + rng.below(60000),
            rng.below(100),
            ob + 500,
            rng.below(100),
            rb + 500
        )
        .unwrap();
    }
    t.flush().unwrap();
    j.flush().unwrap();
    drop((t, j));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", tsv.display(), gz.display()))
        .status()
        .expect("gzip");
    assert!(status.success());
    (tsv, json, gz)
}

/// Runs a command, returns (wall seconds, peak RSS of the process in MiB).
// The child is reaped with wait4 (to read its own rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn timed(cmd: &mut Command) -> (f64, f64) {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, and we wait for our own child exactly once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4 failed");
    (wall, usage.ru_maxrss as f64 / 1024.0)
}

fn best_of(n: usize, mut f: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    let mut runs: Vec<(f64, f64)> = (0..n).map(|_| f()).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[runs.len() / 2] // the median
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let records: u64 = std::env::var("LONGCONN_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let bin = env!("CARGO_BIN_EXE_longconn");
    let dir = tempfile::tempdir().expect("tempdir");
    // LONGCONN_BENCH_DIR keeps the generated inputs there (for profiling).
    let keep = std::env::var_os("LONGCONN_BENCH_DIR").map(PathBuf::from);
    let dir_path = keep.as_deref().unwrap_or(dir.path());
    eprintln!("generating {records} records ...");
    let (tsv, json, gz) = generate(dir_path, records);
    let mb = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "input: {records} records; TSV {:.0} MB, JSON {:.0} MB, gzip {:.0} MB",
        mb(&tsv),
        mb(&json),
        mb(&gz)
    );
    let runs = 5;
    let scan = |p: &Path| {
        best_of(runs, || {
            timed(
                Command::new(bin)
                    .args(["scan", "--format", "tsv", "--top", "10"])
                    .arg(p),
            )
        })
    };
    let (t_tsv, m_tsv) = scan(&tsv);
    let (t_json, m_json) = scan(&json);
    let (t_gz, m_gz) = scan(&gz);
    let rate = |t: f64| records as f64 / t / 1e6;
    println!(
        "scan TSV : {t_tsv:.3} s  {:.2} M records/s  peak {m_tsv:.0} MiB",
        rate(t_tsv)
    );
    println!(
        "scan JSON: {t_json:.3} s  {:.2} M records/s  peak {m_json:.0} MiB",
        rate(t_json)
    );
    println!(
        "scan gzip: {t_gz:.3} s  {:.2} M records/s  peak {m_gz:.0} MiB",
        rate(t_gz)
    );
    let (t_gunzip, _) = best_of(runs, || timed(Command::new("gzip").arg("-dc").arg(&gz)));
    println!(
        "gzip -dc alone: {t_gunzip:.3} s  (scan gzip / gzip -dc = {:.2})",
        t_gz / t_gunzip
    );

    // Memory must follow pairs, not records: the same pairs, half the records.
    let half = dir_path.join("half.log");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -n {} {} > {}",
            records / 2 + 8,
            tsv.display(),
            half.display()
        ))
        .status()
        .expect("head");
    assert!(status.success());
    let (_, m_half) = scan(&half);
    println!(
        "peak memory: {m_half:.0} MiB at {} records, {m_tsv:.0} MiB at {records}",
        records / 2
    );

    if have("datamash") && have("awk") {
        let pipeline = format!(
            "export LC_ALL=C; awk -F '\\t' '/^#/ {{next}} $9 != \"-\" {{print $3 \"\\t\" $5 \"\\t\" $9}}' {} | sort -t \"$(printf '\\t')\" -k1,1 -k2,2 | datamash -g 1,2 sum 3 | sort -t \"$(printf '\\t')\" -k3,3gr | head",
            tsv.display()
        );
        let (t_shell, _) = best_of(3, || timed(Command::new("sh").arg("-c").arg(&pipeline)));
        println!(
            "shell cumulative pipeline (awk | sort | datamash | sort): {t_shell:.3} s  {:.2} M records/s",
            rate(t_shell)
        );
        println!("ratio shell / scan TSV: {:.1}x", t_shell / t_tsv);
    } else {
        println!("shell pipeline: datamash or awk not installed, ratio not measured");
    }
}
