//! The cursor files: for each output, the next sequence number it has not delivered, in
//! `spool/cursors/<name>` (the number and a LF). The output's name must do as a file name. Saved atomically
//! (temp file + rename), not fsynced: see the invariants in the module doc of `spool`.

use super::{io_err, SpoolError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use tracing::warn;

fn valid_cursor_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Saved cursors in `dir` (unreadable ones left out).
pub(super) fn saved(dir: &Path) -> Vec<(String, u64)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        if !valid_cursor_name(&name) || name.ends_with(".tmp") {
            return None;
        }
        let c = fs::read_to_string(e.path()).ok()?.trim().parse().ok()?;
        Some((name, c))
    })
    .collect()
}

/// The cursor file of the output `name` in the spool `dir`.
pub(super) fn path(dir: &Path, name: &str) -> Result<PathBuf, SpoolError> {
    if !valid_cursor_name(name) {
        return Err(SpoolError::BadName(name.to_string()));
    }
    Ok(dir.join("cursors").join(name))
}

/// The cursor saved at `path` for the output `name`: `None` if there is none, or it is unreadable (said).
pub(super) fn load(path: &Path, name: &str) -> Result<Option<u64>, SpoolError> {
    Ok(match fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(c) => Some(c),
            Err(_) => {
                warn!(output = name, cursor = %path.display(), "spool: unreadable cursor, delivering again from the oldest alert");
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(path)(e)),
    })
}

/// Saves the cursor `next` at `path` (temp file + rename).
pub(super) fn save(path: &Path, next: u64) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{next}\n")).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}
