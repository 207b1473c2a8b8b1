//! Throughput of `longconn scan` against the analysts' shell pipeline and, when installed, DuckDB and
//! Polars, on a generated conn.log.
//!
//! Generates a deterministic Zeek TSV conn.log (default 2,000,000 records, `LONGCONN_BENCH_RECORDS` to change;
//! realistic field widths, ~100k host pairs, 4% unset durations), its NDJSON and gzip forms, then times the
//! real binary on each, with the default `--top 10` and with `--top 0` (every group), and prints per run:
//! the median wall time of 5 runs, records/s, peak memory (max RSS) and the CPU time (user + system) of
//! that run. Then:
//! - the shell cumulative pipeline (awk | sort | datamash | sort) on the same TSV, when `awk` and
//!   `datamash` are installed, and the ratio against scan in the same run;
//! - DuckDB and Polars, when `python3` can import them, with the cumulative table of each input (the best
//!   of the queries tried, median of 3 runs, the query alone, not the interpreter start; with the CPU time
//!   of the process over that query, all its threads): install them with
//!   `pip install duckdb polars` (CI does not; the bench then says they were skipped);
//! - peak memory of `scan --top 0` on the input and on 10 times the input (the TSV given 10 times: the same
//!   pairs, 10x the records), which must stay within 10%: memory follows groups, never records.
//!
//! On a shared machine the wall times of two programs timed one after the other can differ by the load of
//! the moment; the CPU times do much less, so the comparisons print both.
//!
//! Run: `cargo bench --bench scan` (`LONGCONN_BENCH_DIR=dir` keeps the generated inputs there).

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

/// One timed run.
#[derive(Clone, Copy)]
struct Run {
    /// Wall seconds.
    wall: f64,
    /// Peak RSS of the process, MiB.
    mib: f64,
    /// User + system CPU seconds of the process (all its threads).
    cpu: f64,
}

/// Runs a command and times it.
// The child is reaped with wait4 (to read its own rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn timed(cmd: &mut Command) -> Run {
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
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall,
        mib: usage.ru_maxrss as f64 / 1024.0,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
    }
}

/// The run with the median wall time of `n`.
fn median_of(n: usize, mut f: impl FnMut() -> Run) -> Run {
    let mut runs: Vec<Run> = (0..n).map(|_| f()).collect();
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    runs[runs.len() / 2]
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

/// The cumulative table (orig_h, resp_h, summed duration, count, longest; top 10) with DuckDB and Polars:
/// for each engine and input, the median of 3 timed runs of the best query tried (after one warm-up run),
/// printed as `engine format wall_seconds cpu_seconds` (the CPU time of the process over the median run),
/// or `engine skipped reason`.
const ENGINES_PY: &str = r##"
import resource, sys, time
tsv, ndjson, gz = sys.argv[1:4]
names = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
         "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
         "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents"]

def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime

def median(run):
    run()
    times = []
    for _ in range(3):
        t, c = time.perf_counter(), cpu()
        run()
        times.append((time.perf_counter() - t, cpu() - c))
    return sorted(times)[1]

def best(fmt, runs):
    return "%.4f %.4f" % min(median(r) for r in runs)

try:
    import duckdb
    con = duckdb.connect()
    cols = "{" + ",".join("'%s':'%s'" % (n, "DOUBLE" if n == "duration" else "VARCHAR") for n in names) + "}"
    def q(src):
        sql = ('SELECT "id.orig_h", "id.resp_h", sum(duration) AS t, count(*), max(duration) FROM %s '
               'WHERE duration IS NOT NULL GROUP BY 1, 2 ORDER BY t DESC LIMIT 10' % src)
        return lambda: con.execute(sql).fetchall()
    def csv(path):
        return ("read_csv('%s', auto_detect=false, delim='\t', header=false, comment='#', nullstr='-', "
                "quote='', escape='', columns=%s)" % (path, cols))
    json_cols = "{'id.orig_h':'VARCHAR','id.resp_h':'VARCHAR','duration':'DOUBLE'}"
    print("duckdb tsv %s" % best("tsv", [q(csv(tsv))]), flush=True)
    print("duckdb ndjson %s" % best("ndjson", [
        q("read_ndjson('%s', columns=%s)" % (ndjson, json_cols)),
        q("read_json('%s', format='newline_delimited', columns=%s)" % (ndjson, json_cols)),
    ]), flush=True)
    print("duckdb gz %s" % best("gz", [q(csv(gz))]), flush=True)
except ImportError as e:
    print("duckdb skipped (%s)" % e, flush=True)

try:
    import polars as pl
    def agg(lf):
        return lambda: (lf.filter(pl.col("duration").is_not_null())
                        .group_by(["id.orig_h", "id.resp_h"])
                        .agg(pl.col("duration").sum().alias("t"), pl.len(), pl.col("duration").max())
                        .sort("t", descending=True).head(10).collect())
    csv_opts = dict(separator="\t", comment_prefix="#", has_header=False, new_columns=names,
                    schema_overrides={"duration": pl.Float64}, null_values="-", quote_char=None)
    print("polars tsv %s" % best("tsv", [agg(pl.scan_csv(tsv, **csv_opts))]), flush=True)
    schema = {"id.orig_h": pl.String, "id.resp_h": pl.String, "duration": pl.Float64}
    print("polars ndjson %s" % best("ndjson", [agg(pl.scan_ndjson(ndjson, schema=schema))]), flush=True)
    # scan_csv reads no gzip: read_csv decompresses it (in the timed part).
    print("polars gz %s" % best("gz", [lambda: agg(pl.read_csv(gz, **csv_opts).lazy())()]), flush=True)
except ImportError as e:
    print("polars skipped (%s)" % e, flush=True)
"##;

/// Runs [`ENGINES_PY`]: per (engine, format) its wall and CPU seconds; the skip messages are printed.
fn engines(dir: &Path, tsv: &Path, json: &Path, gz: &Path) -> Vec<(String, String, f64, f64)> {
    if !have("python3") {
        println!("DuckDB, Polars: skipped (no python3)");
        return Vec::new();
    }
    let script = dir.join("engines.py");
    if std::fs::write(&script, ENGINES_PY).is_err() {
        println!("DuckDB, Polars: skipped (cannot write the script)");
        return Vec::new();
    }
    let out = match Command::new("python3")
        .arg(&script)
        .args([tsv, json, gz])
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("DuckDB, Polars: skipped ({e})");
            return Vec::new();
        }
    };
    let mut got = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
        match (f.as_slice(), num(2), num(3)) {
            ([engine, format, _, _], Some(secs), Some(cpu)) => {
                got.push((engine.to_string(), format.to_string(), secs, cpu))
            }
            _ => println!("{line}  (pip install duckdb polars)"),
        }
    }
    got
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
        "input: {records} records; TSV {:.0} MB, NDJSON {:.0} MB, gzip {:.0} MB",
        mb(&tsv),
        mb(&json),
        mb(&gz)
    );
    let runs = 5;
    let scan_with = |args: &[&str], inputs: &[&Path]| {
        median_of(runs, || {
            timed(
                Command::new(bin)
                    .args(["scan", "--format", "tsv"])
                    .args(args)
                    .args(inputs),
            )
        })
    };
    let scan = |top: &str, inputs: &[&Path]| scan_with(&["--top", top], inputs);
    let rate = |t: f64| records as f64 / t / 1e6;
    // (format, default run, --top 0 run, cumulative table alone)
    let mut scans = Vec::new();
    for (name, path) in [("tsv", &tsv), ("ndjson", &json), ("gz", &gz)] {
        let d = scan("10", &[path]);
        let d0 = scan("0", &[path]);
        let c = scan_with(&["--only", "cumulative"], &[path]);
        let c0 = scan_with(&["--only", "cumulative", "--top", "0"], &[path]);
        println!(
            "scan {name:<6} default: {:.3} s (CPU {:.3} s)  {:5.2} M records/s  peak {:4.0} MiB | --top 0: {:.3} s (CPU {:.3} s)  {:5.2} M records/s  peak {:4.0} MiB  (--top 0 / default {:.2})",
            d.wall,
            d.cpu,
            rate(d.wall),
            d.mib,
            d0.wall,
            d0.cpu,
            rate(d0.wall),
            d0.mib,
            d0.wall / d.wall
        );
        println!(
            "scan {name:<6} --only cumulative: {:.3} s (CPU {:.3} s)  {:5.2} M records/s  peak {:4.0} MiB | with --top 0: {:.3} s  peak {:4.0} MiB",
            c.wall,
            c.cpu,
            rate(c.wall),
            c.mib,
            c0.wall,
            c0.mib,
        );
        scans.push((name, d, d0, c));
    }
    let scan_time = |format: &str| {
        scans
            .iter()
            .find(|s| s.0 == format)
            .map_or(f64::NAN, |s| s.1.wall)
    };
    // The engines compute the cumulative table only: compared with scan printing that table alone.
    let cumulative = |format: &str| scans.iter().find(|s| s.0 == format).map(|s| s.3);
    let cumulative_time = |format: &str| cumulative(format).map_or(f64::NAN, |r| r.wall);
    let t_gunzip = median_of(runs, || timed(Command::new("gzip").arg("-dc").arg(&gz))).wall;
    println!(
        "gzip -dc alone: {t_gunzip:.3} s  (scan gz / gzip -dc = {:.2})",
        scan_time("gz") / t_gunzip
    );

    // Memory must follow groups, never records: the same pairs, 10 times the records.
    let ten: Vec<&Path> = vec![tsv.as_path(); 10];
    let m1 = median_of(3, || {
        timed(
            Command::new(bin)
                .args(["scan", "--format", "tsv", "--top", "0"])
                .arg(&tsv),
        )
    })
    .mib;
    let ten_run = median_of(3, || {
        timed(
            Command::new(bin)
                .args(["scan", "--format", "tsv", "--top", "0"])
                .args(&ten),
        )
    });
    let (t10, m10) = (ten_run.wall, ten_run.mib);
    println!(
        "peak memory of scan --top 0: {m1:.0} MiB at {records} records, {m10:.0} MiB at {} records ({t10:.2} s): {:+.1}% ({})",
        records * 10,
        (m10 / m1 - 1.0) * 100.0,
        if (m10 / m1 - 1.0).abs() <= 0.10 {
            "within 10%"
        } else {
            "NOT within 10%"
        }
    );

    if have("datamash") && have("awk") {
        let pipeline = format!(
            "export LC_ALL=C; awk -F '\\t' '/^#/ {{next}} $9 != \"-\" {{print $3 \"\\t\" $5 \"\\t\" $9}}' {} | sort -t \"$(printf '\\t')\" -k1,1 -k2,2 | datamash -g 1,2 sum 3 | sort -t \"$(printf '\\t')\" -k3,3gr | head",
            tsv.display()
        );
        let shell = median_of(3, || timed(Command::new("sh").arg("-c").arg(&pipeline)));
        let t_shell = shell.wall;
        println!(
            "shell cumulative pipeline (awk | sort | datamash | sort) on TSV: {t_shell:.3} s (CPU {:.3} s)  {:.2} M records/s",
            shell.cpu,
            rate(t_shell)
        );
        println!(
            "ratio shell / scan TSV: {:.1}x (default), {:.1}x (--top 0), {:.1}x (--only cumulative, the pipeline's table); CPU time: {:.1}x (default), {:.1}x (--only cumulative)",
            t_shell / scan_time("tsv"),
            t_shell / scans[0].2.wall,
            t_shell / cumulative_time("tsv"),
            shell.cpu / scans[0].1.cpu,
            shell.cpu / scans[0].3.cpu
        );
    } else {
        println!("shell pipeline: datamash or awk not installed, ratio not measured");
    }

    let found = engines(dir_path, &tsv, &json, &gz);
    for (engine, format, secs, cpu) in &found {
        let (t, c) = cumulative(format).map_or((f64::NAN, f64::NAN), |r| (r.wall, r.cpu));
        println!(
            "{engine:<6} {format:<6}: {secs:.3} s (CPU {cpu:.3} s)  {:5.2} M records/s;  {engine} / scan --only cumulative = {:.2}x wall, {:.2}x CPU",
            rate(*secs),
            secs / t,
            cpu / c
        );
    }
}
