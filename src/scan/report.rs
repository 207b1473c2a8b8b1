//! Printing a [`super::ScanReport`]: readable tables, TSV for scripts, or JSON lines; and the summary line.
//!
//! TSV columns are fixed: single = `orig_h resp_h duration uid ts`, cumulative =
//! `orig_h resp_h total_seconds count longest_seconds` (with `--by pair-port`, `resp_p proto` follow
//! `resp_h`). Durations are seconds with 6 decimals; each table is preceded by a `#` title line.

use super::{GroupMode, GroupRow, InputOutcome, ScanReport, SingleRow};
use std::fmt::Write as _;
use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Tsv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    pub single: bool,
    pub cumulative: bool,
}

/// Seconds as a short human form: `45.2s`, `12m 05s`, `3h 04m 05s`, `2d 03h 04m`.
pub fn human_duration(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}h {m:02}m")
    } else if h > 0 {
        format!("{h}h {m:02}m {sec:02}s")
    } else {
        format!("{m}m {sec:02}s")
    }
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` UTC, or `-`.
pub fn utc(ts: Option<f64>) -> String {
    ts.and_then(|t| {
        let secs = t.floor();
        let nanos = ((t - secs) * 1e9) as u32;
        chrono::DateTime::from_timestamp(secs as i64, nanos)
    })
    .map_or_else(
        || "-".to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// Nanoseconds as seconds with 6 decimals, rounded to the microsecond.
fn secs6(ns: u64) -> String {
    let us = ns.saturating_add(500) / 1000;
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

fn ts6(ts: Option<f64>) -> String {
    ts.map_or_else(|| "-".to_string(), |t| format!("{t:.6}"))
}

fn port(p: Option<u16>) -> String {
    p.map_or_else(|| "-".to_string(), |p| p.to_string())
}

/// Writes the tables; nothing when no record was read (the summary line and the errors say why: empty
/// tables would look like a clean file without long connections).
pub fn write(
    out: &mut dyn Write,
    r: &ScanReport,
    format: Format,
    tables: Tables,
    by: GroupMode,
) -> io::Result<()> {
    if r.counts.read == 0 {
        return Ok(());
    }
    match format {
        Format::Table => write_tables(out, r, tables, by),
        Format::Tsv => write_tsv(out, r, tables, by),
        Format::Json => write_json(out, r, tables, by),
    }
}

fn write_tsv(out: &mut dyn Write, r: &ScanReport, tables: Tables, by: GroupMode) -> io::Result<()> {
    if tables.single {
        writeln!(out, "# single: orig_h\tresp_h\tduration\tuid\tts")?;
        for s in &r.singles {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                s.orig_h,
                s.resp_h,
                secs6(s.duration_ns),
                if s.uid.is_empty() { "-" } else { &s.uid },
                ts6(s.ts)
            )?;
        }
    }
    if tables.cumulative {
        match by {
            GroupMode::Pair => writeln!(
                out,
                "# cumulative: orig_h\tresp_h\ttotal_seconds\tcount\tlongest_seconds"
            )?,
            GroupMode::PairPort => writeln!(
                out,
                "# cumulative: orig_h\tresp_h\tresp_p\tproto\ttotal_seconds\tcount\tlongest_seconds"
            )?,
        }
        for g in &r.groups {
            write!(out, "{}\t{}\t", g.key.orig_h, g.key.resp_h)?;
            if by == GroupMode::PairPort {
                write!(
                    out,
                    "{}\t{}\t",
                    port(g.key.resp_p),
                    g.key.proto.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(
                out,
                "{}\t{}\t{}",
                secs6(g.agg.measure_ns),
                g.agg.count,
                secs6(g.agg.longest_ns)
            )?;
        }
    }
    Ok(())
}

fn single_json(s: &SingleRow) -> serde_json::Value {
    serde_json::json!({
        "table": "single",
        "ts": s.ts,
        "time": (s.ts.is_some()).then(|| utc(s.ts)),
        "uid": s.uid.as_str(),
        "orig_h": s.orig_h.to_string(),
        "orig_p": s.orig_p,
        "resp_h": s.resp_h.to_string(),
        "resp_p": s.resp_p,
        "proto": s.proto.as_str(),
        "service": s.service.as_deref(),
        "duration": s.seconds(),
    })
}

fn group_json(g: &GroupRow, by: GroupMode) -> serde_json::Value {
    let mut v = serde_json::json!({
        "table": "cumulative",
        "orig_h": g.key.orig_h.to_string(),
        "resp_h": g.key.resp_h.to_string(),
        "total_seconds": g.agg.measure_ns as f64 / 1e9,
        "sum_seconds": g.agg.total_ns as f64 / 1e9,
        "count": g.agg.count,
        "longest_seconds": g.agg.longest_ns as f64 / 1e9,
        "total_bytes": g.agg.bytes,
    });
    if g.agg.covered_ns > 0 || g.agg.measure_ns != g.agg.total_ns {
        v["covered_seconds"] = serde_json::json!(g.agg.covered_ns as f64 / 1e9);
    }
    if by == GroupMode::PairPort {
        v["resp_p"] = serde_json::json!(g.key.resp_p);
        v["proto"] = serde_json::json!(g.key.proto.as_deref());
    }
    v
}

fn write_json(
    out: &mut dyn Write,
    r: &ScanReport,
    tables: Tables,
    by: GroupMode,
) -> io::Result<()> {
    if tables.single {
        for s in &r.singles {
            writeln!(out, "{}", single_json(s))?;
        }
    }
    if tables.cumulative {
        for g in &r.groups {
            writeln!(out, "{}", group_json(g, by))?;
        }
    }
    Ok(())
}

/// Left-aligned columns with two spaces between them; numeric columns right-aligned.
fn table(
    out: &mut dyn Write,
    head: &[&str],
    right: &[bool],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(c.chars().count());
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    writeln!(out, "{}", line(&head))?;
    for r in rows {
        writeln!(out, "{}", line(r))?;
    }
    Ok(())
}

fn write_tables(
    out: &mut dyn Write,
    r: &ScanReport,
    tables: Tables,
    by: GroupMode,
) -> io::Result<()> {
    if tables.single {
        writeln!(out, "Longest single connections")?;
        let rows: Vec<Vec<String>> = r
            .singles
            .iter()
            .map(|s| {
                vec![
                    utc(s.ts),
                    s.uid.to_string(),
                    s.orig_h.to_string(),
                    port(s.orig_p),
                    s.resp_h.to_string(),
                    port(s.resp_p),
                    s.proto.to_string(),
                    s.service
                        .as_deref()
                        .filter(|x| !x.is_empty())
                        .unwrap_or("-")
                        .to_string(),
                    human_duration(s.seconds()),
                    format!("{:.3}", s.seconds()),
                ]
            })
            .collect();
        table(
            out,
            &[
                "ts (UTC)", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "service",
                "duration", "seconds",
            ],
            &[
                false, false, false, true, false, true, false, false, true, true,
            ],
            &rows,
        )?;
    }
    if tables.single && tables.cumulative {
        writeln!(out)?;
    }
    if tables.cumulative {
        let pp = by == GroupMode::PairPort;
        writeln!(
            out,
            "Most cumulative time per {}",
            if pp {
                "(orig_h, resp_h, resp_p, proto)"
            } else {
                "pair"
            }
        )?;
        let rows: Vec<Vec<String>> = r
            .groups
            .iter()
            .map(|g| {
                let mut row = vec![g.key.orig_h.to_string(), g.key.resp_h.to_string()];
                if pp {
                    row.push(port(g.key.resp_p));
                    row.push(g.key.proto.as_deref().unwrap_or("-").to_string());
                }
                row.extend([
                    human_duration(g.agg.measure_ns as f64 / 1e9),
                    format!("{:.3}", g.agg.measure_ns as f64 / 1e9),
                    g.agg.count.to_string(),
                    human_duration(g.agg.longest_ns as f64 / 1e9),
                    human_bytes(g.agg.bytes),
                ]);
                row
            })
            .collect();
        let mut head = vec!["orig_h", "resp_h"];
        let mut right = vec![false, false];
        if pp {
            head.extend(["resp_p", "proto"]);
            right.extend([true, false]);
        }
        head.extend(["total", "seconds", "connections", "longest", "bytes"]);
        right.extend([true, true, true, true, true]);
        table(out, &head, &right, &rows)?;
    }
    Ok(())
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The summary line for stderr.
pub fn summary(r: &ScanReport) -> String {
    let c = &r.counts;
    let mut s = format!(
        "longconn scan: {} records read, {} used, {} with unset duration, {} skipped as malformed",
        c.read,
        c.used,
        c.unset,
        c.skipped_total()
    );
    if !c.skipped.is_empty() {
        let parts: Vec<String> = c.skipped.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    if c.interim_read > 0 {
        let _ = write!(
            s,
            ", {} interim records ({} connections counted once with their largest duration, {} replaced by their final conn record)",
            c.interim_read, c.interim_used, c.interim_closed
        );
    }
    if c.short > 0 {
        let _ = write!(s, ", {} below --min-duration", c.short);
    }
    if c.excluded > 0 {
        let _ = write!(s, ", {} excluded", c.excluded);
    }
    if c.bad_values > 0 {
        let _ = write!(
            s,
            ", {} unparsable values in unused fields read as unset",
            c.bad_values
        );
    }
    let count = |o: InputOutcome| r.outcomes.iter().filter(|x| **x == o).count();
    let (partial, failed) = (
        count(InputOutcome::ReadUpToError),
        count(InputOutcome::Failed),
    );
    let read = count(InputOutcome::Read) + partial;
    let _ = write!(s, ", {read} file{}", if read == 1 { "" } else { "s" });
    if partial > 0 {
        let _ = write!(s, " ({partial} read only up to an error)");
    }
    if failed > 0 {
        let _ = write!(s, ", {failed} failed");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_forms() {
        assert_eq!(human_duration(5.25), "5.2s");
        assert_eq!(human_duration(725.0), "12m 05s");
        assert_eq!(human_duration(11045.0), "3h 04m 05s");
        assert_eq!(human_duration(86370.0), "23h 59m 30s");
        assert_eq!(human_duration(183601.0), "2d 03h 00m");
        assert_eq!(secs6(1_493_123_456_789), "1493.123457");
        assert_eq!(secs6(999_999_999), "1.000000");
        assert_eq!(secs6(64_000), "0.000064");
        assert_eq!(utc(Some(1517336086.5)), "2018-01-30 18:14:46");
        assert_eq!(utc(None), "-");
    }
}
