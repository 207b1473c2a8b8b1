//! The `longconn` command line: parses arguments, sets up logging, and calls into the library.
//! Exit codes: 0 success, 1 an input could not be read (or `reload` could not signal the pid), 2 usage errors,
//! 78 a bad config (EX_CONFIG).

use clap::{Parser, Subcommand, ValueEnum};
use longconn::input::InputPath;
use longconn::scan::{self, report, GroupMode};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "longconn",
    version,
    about = "Find long-lived connections in Zeek conn.log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One-shot report: the longest single connections and the most cumulative time per pair.
    Scan(ScanArgs),
    /// The daemon: follow the configured conn.log files and raise alerts.
    Run(RunArgs),
    /// Validate a config: print every problem (exit 78) or the effective config (exit 0).
    Check(CheckArgs),
    /// Run the detector over archived logs and print the alerts it would have raised.
    Replay(ReplayArgs),
    /// Check the config as `check` does, then tell the running daemon to reload it (SIGHUP to --pid).
    Reload(ReloadArgs),
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The TOML config file.
    #[arg(long, short = 'c', default_value = longconn::config::DEFAULT_PATH)]
    config: PathBuf,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print nothing when the config is valid (for systemd's ExecStartPre and ExecReload).
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(clap::Args)]
struct ReloadArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The daemon's process id (systemd's $MAINPID).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pid: i32,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level (default: RUST_LOG, else info).
    #[arg(long)]
    log_level: Option<String>,
    /// Ignore an existing checkpoint: read the sources as on a first start.
    #[arg(long)]
    fresh: bool,
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Archived logs (TSV or JSON, gzip or not), replayed in the order given; `-` reads stdin.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The kind of every file (default: from each file name; `open_conn` or `conn_long` in the name is
    /// that interim log, anything else is conn).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// The per-group summary on stderr, after the counts: a `table`, or `json` lines
    /// (`{"kind":"group",...}`, and with --compare `{"kind":"difference",...}`).
    #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
    summary: SummaryFormat,
    /// Also list groups whose longest duration or largest measure reached at least this fraction
    /// (0 < F <= 1) of the lowest threshold they did not reach, e.g. 0.8.
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    near: Option<f64>,
    /// Replay the same files with this config too and print, on stderr, the alerts only one of the two
    /// configs raises (by `event.id`). stdout keeps the alerts of --config.
    #[arg(long, value_name = "OTHER.toml")]
    compare: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SummaryFormat {
    Table,
    Json,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("not a fraction in (0, 1]: {s:?}")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Conn,
    OpenConn,
    ConnLong,
}

impl KindArg {
    fn kind(self) -> longconn::zeek::SourceKind {
        use longconn::zeek::SourceKind;
        match self {
            KindArg::Conn => SourceKind::Conn,
            KindArg::OpenConn => SourceKind::OpenConn,
            KindArg::ConnLong => SourceKind::ConnLong,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum MeasureArg {
    Sum,
    Covered,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutFormat {
    Table,
    Tsv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Only {
    Single,
    Cumulative,
}

#[derive(Clone, Copy, ValueEnum)]
enum By {
    Pair,
    PairPort,
}

#[derive(clap::Args)]
struct ScanArgs {
    /// Zeek conn.log files (TSV or JSON, gzip or not); `-` reads stdin.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Rows per table; 0 prints all: every group, and in the single table the longest connection of each
    /// group (one row per group, so memory follows groups, never records).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutFormat::Table)]
    format: OutFormat,
    /// Print only one of the two tables.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Group the cumulative table by pair, or by (pair, resp_p, proto).
    #[arg(long, value_enum, default_value_t = By::Pair)]
    by: By,
    /// Ignore connections shorter than this ("90s", "5m", "1h30m", or seconds).
    #[arg(long, value_parser = parse_duration_arg)]
    min_duration: Option<f64>,
    /// Ignore connections with either end in this network (repeatable).
    #[arg(long, value_parser = parse_cidr_arg)]
    exclude: Vec<ipnet::IpNet>,
    /// Worker threads (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// The kind of every file (default: from each file name). Records of interim logs (open_conn,
    /// conn_long) count once per uid, with their largest duration, unless the uid's final conn record is
    /// among the inputs (then that one counts).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// The cumulative measure: `sum` of durations, or `covered`, the length of the union of the group's
    /// [ts, ts + duration] intervals (records without ts count as disjoint).
    #[arg(long, value_enum, default_value_t = MeasureArg::Sum)]
    measure: MeasureArg,
}

fn parse_duration_arg(s: &str) -> Result<f64, String> {
    if let Ok(v) = s.parse::<f64>() {
        if v >= 0.0 && v.is_finite() {
            return Ok(v);
        }
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs_f64())
        .map_err(|e| format!("not a duration ({e}); use e.g. 90s, 5m, 1h30m or plain seconds"))
}

fn parse_cidr_arg(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("not a CIDR network or address: {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan(a) => run_scan(a),
        Command::Run(a) => run_daemon(a),
        Command::Check(a) => run_check(a),
        Command::Replay(a) => run_replay(a),
        Command::Reload(a) => run_reload(a),
    }
}

/// EX_CONFIG from sysexits.h: what systemd and scripts expect for a bad config.
const EXIT_CONFIG: u8 = 78;

/// The config for `replay`, which reads no source (a missing `[[source]]` is no error, every other problem
/// is), with its allow lists read (`filter.allow_files`); a bad line in one is refused like a bad key.
fn load_replay_config(
    path: &std::path::Path,
    cmd: &str,
) -> Result<longconn::config::Config, ExitCode> {
    let refuse = |e: longconn::config::ConfigErrors| {
        eprintln!(
            "longconn {cmd}: {}: invalid configuration:\n{e}",
            path.display()
        );
        ExitCode::from(EXIT_CONFIG)
    };
    let mut cfg = longconn::config::Config::load_without_sources(path).map_err(refuse)?;
    let (errors, warnings) = longconn::config::preflight::read_allow_files(&mut cfg);
    for w in warnings {
        eprintln!("longconn {cmd}: {}: warning: {w}", path.display());
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(refuse(longconn::config::ConfigErrors { errors }))
    }
}

/// The config, loaded with its `[[source]]` required, plus the preflight (`longconn::config::preflight`): what `check` and `run` both call,
/// before `run` creates anything, so they accept and refuse the same configs with the same messages.
fn load_and_preflight(
    path: &std::path::Path,
    cmd: &str,
    warn: impl Fn(&longconn::config::ConfigError),
) -> Result<longconn::config::Config, ExitCode> {
    match longconn::config::preflight::load(path) {
        Ok((cfg, warnings)) => {
            warnings.iter().for_each(warn);
            Ok(cfg)
        }
        Err(e) => {
            eprintln!(
                "longconn {cmd}: {}: invalid configuration:\n{e}",
                path.display()
            );
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn run_check(a: CheckArgs) -> ExitCode {
    let path = &a.config.config;
    let warn = |w: &longconn::config::ConfigError| {
        if !a.quiet {
            eprintln!("longconn check: {}: warning: {w}", path.display());
        }
    };
    match load_and_preflight(path, "check", warn) {
        Ok(cfg) => {
            if !a.quiet {
                print!("{}", cfg.to_effective_toml());
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// systemd's ExecReload: the same check as `check --quiet` (a config it refuses is never signalled, so the
/// reload fails and the daemon keeps running on its current config), then SIGHUP to the daemon. The
/// binary signals itself so that the unit needs no /bin/kill (procps, absent from a minimal Debian).
fn run_reload(a: ReloadArgs) -> ExitCode {
    let pid = a.pid;
    let checked = run_check(CheckArgs {
        config: a.config,
        quiet: true,
    });
    if checked != ExitCode::SUCCESS {
        eprintln!(
            "longconn reload: the configuration did not pass the check; pid {pid} not signalled"
        );
        return checked;
    }
    use rustix::io::Errno;
    use rustix::process::{kill_process, Pid, Signal};
    // A positive pid (clap refuses 0 and negatives, which would signal groups).
    let Some(target) = Pid::from_raw(pid) else {
        eprintln!("longconn reload: no such process: pid {pid}");
        return ExitCode::from(1);
    };
    let err = match kill_process(target, Signal::HUP) {
        Ok(()) => return ExitCode::SUCCESS,
        Err(e) => e,
    };
    match err {
        Errno::SRCH => eprintln!("longconn reload: no such process: pid {pid}"),
        Errno::PERM => eprintln!(
            "longconn reload: permission denied: cannot signal pid {pid} (run as the daemon's user or root)"
        ),
        _ => eprintln!(
            "longconn reload: cannot signal pid {pid}: {}",
            std::io::Error::from(err)
        ),
    }
    ExitCode::from(1)
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Under systemd (journald), no colours and no timestamps: the journal adds its own.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human if journald => builder.with_ansi(false).without_time().init(),
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn run_daemon(a: RunArgs) -> ExitCode {
    init_logging(a.log_format, a.log_level.as_deref());
    let warn = |w: &longconn::config::ConfigError| tracing::warn!(key = %w.key, "{}", w.reason);
    let cfg = match load_and_preflight(&a.config.config, "run", warn) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("longconn run: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = longconn::daemon::RunOptions { fresh: a.fresh };
    let result = rt.block_on(async {
        let signals = longconn::signal::Signals::new()?;
        let (control, control_rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(longconn::signal::forward(signals, control));
        let (progress, _) = tokio::sync::watch::channel(longconn::daemon::Progress::default());
        longconn::daemon::run(&a.config.config, cfg, opts, control_rx, progress).await
    });
    // The pipeline thread is not waited for: `run` gave up on it after its stop deadline.
    rt.shutdown_timeout(longconn::daemon::DELIVERY_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Already logged as an ERROR by the pipeline.
        Err(e) if e.is::<longconn::daemon::CheckpointNotSaved>() => {
            ExitCode::from(longconn::daemon::CheckpointNotSaved::EXIT_CODE)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_replay(a: ReplayArgs) -> ExitCode {
    let cfg = match load_replay_config(&a.config.config, "replay") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let other = match &a.compare {
        Some(path) => match load_replay_config(path, "replay") {
            Ok(c) => Some(c),
            Err(code) => return code,
        },
        None => None,
    };
    let opts = longconn::replay::ReplayOptions {
        near: a.near,
        compare: other.as_ref(),
    };
    let inputs: Vec<InputPath> = a.files.iter().map(|f| InputPath::from_arg(f)).collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let summary = match longconn::replay::replay_with(
        &cfg,
        &inputs,
        a.kind.map(KindArg::kind),
        opts,
        &mut out,
        &mut err,
    ) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(err, "longconn replay: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = out.flush();
    let _ = write!(err, "{}", longconn::replay::summary_table(&summary));
    match a.summary {
        SummaryFormat::Table => {
            let _ = write!(err, "{}", longconn::replay::groups_table(&summary, a.near));
            if let Some(path) = &a.compare {
                let t = longconn::replay::differences_table(
                    &summary,
                    &a.config.config.display().to_string(),
                    &path.display().to_string(),
                );
                let _ = write!(err, "{t}");
            }
        }
        SummaryFormat::Json => {
            let _ = write!(err, "{}", longconn::replay::summary_json(&summary));
        }
    }
    if summary.file_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_scan(a: ScanArgs) -> ExitCode {
    let by = match a.by {
        By::Pair => GroupMode::Pair,
        By::PairPort => GroupMode::PairPort,
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let opts = scan::ScanOptions {
        tally: scan::tally::TallyOptions {
            top: a.top,
            by,
            min_duration: a.min_duration.unwrap_or(0.0),
            exclude: a.exclude,
            measure: match a.measure {
                MeasureArg::Sum => longconn::rules::Measure::Sum,
                MeasureArg::Covered => longconn::rules::Measure::Covered,
            },
            interim_files: Vec::new(),
        },
        threads,
        progress: true,
        kind: a.kind.map(KindArg::kind),
        single_table: !matches!(a.only, Some(Only::Cumulative)),
    };
    let inputs: Vec<InputPath> = a.files.iter().map(|f| InputPath::from_arg(f)).collect();
    let r = scan::scan(&inputs, &opts);

    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let mut skipped = longconn::zeek::SkippedLines::default();
    let headerless: Vec<&str> = r.file_errors.iter().map(|e| e.file.as_str()).collect();
    for i in &r.issues {
        // A file with no header at all gets one message below, not one per row.
        if i.reason == longconn::zeek::SkipReason::NoHeader
            && headerless.contains(&r.files[i.file].as_str())
        {
            continue;
        }
        if skipped.count(i.file) == longconn::zeek::Show::Line {
            let _ = writeln!(err, "{}:{}: skipped: {}", r.files[i.file], i.line, i.reason);
        }
    }
    for &file in skipped.hidden() {
        let _ = writeln!(
            err,
            "{}: further skipped lines not shown (see the counts below)",
            r.files[file]
        );
    }
    for e in &r.file_errors {
        let _ = writeln!(err, "longconn scan: {}: {}", e.file, e.message);
    }

    let tables = match a.only {
        None => report::Tables {
            single: true,
            cumulative: true,
        },
        Some(Only::Single) => report::Tables {
            single: true,
            cumulative: false,
        },
        Some(Only::Cumulative) => report::Tables {
            single: false,
            cumulative: true,
        },
    };
    let format = match a.format {
        OutFormat::Table => report::Format::Table,
        OutFormat::Tsv => report::Format::Tsv,
        OutFormat::Json => report::Format::Json,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Err(e) = report::write(&mut out, &r, format, tables, by).and_then(|_| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = writeln!(err, "longconn scan: writing output: {e}");
            return ExitCode::from(1);
        }
    }
    let _ = writeln!(err, "{}", report::summary(&r));
    if r.file_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
