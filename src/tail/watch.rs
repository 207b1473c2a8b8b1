//! Wake-ups from the file system: watch the directories that hold the followed files.
//!
//! Directories are watched, not files, because the files we care about are renamed, deleted and created
//! under us (a watch on a file follows its inode into the rotated name). Events carry no meaning here: any
//! event, and any error (queue overflow, watch limit), only calls `wake`, and the daemon then polls every
//! [`Tailer`](super::Tailer), which re-checks everything by itself. The daemon also polls periodically, so a
//! lost event or a failed watch (NFS, no inotify watches left) delays reading but loses nothing.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::warn;

/// Watch errors are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Starts watching `dirs` (non-recursively); `wake` is called on every event or error. A directory that
/// cannot be watched (missing, permission denied) is logged and left to the periodic re-check. Keep the
/// returned watcher alive for as long as events are wanted.
pub fn watch(
    dirs: &[PathBuf],
    wake: impl Fn() + Send + Sync + 'static,
) -> notify::Result<RecommendedWatcher> {
    // A failing watch (queue overflow on a busy directory) reports on every event: say it once a minute.
    let last_warned = std::sync::Mutex::new(None::<Instant>);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Err(e) = res {
            let mut last = last_warned.lock().unwrap_or_else(|p| p.into_inner());
            if last.map_or(true, |t| t.elapsed() >= WARN_EVERY) {
                *last = Some(Instant::now());
                warn!(error = %describe(&e), "file watch error; relying on the periodic re-check");
            }
        }
        wake();
    })?;
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            warn!(dir = %dir.display(), error = %describe(&e), "cannot watch directory; relying on the periodic re-check");
        }
    }
    Ok(watcher)
}

/// A watch error in plain words, paths as text (the library's own text shows them as a debug list).
fn describe(e: &notify::Error) -> String {
    let what = match &e.kind {
        notify::ErrorKind::Io(io) => io.to_string(),
        notify::ErrorKind::Generic(s) => s.clone(),
        notify::ErrorKind::PathNotFound => "no such file or directory".to_string(),
        notify::ErrorKind::WatchNotFound => "no such watch".to_string(),
        notify::ErrorKind::InvalidConfig(_) => "invalid watch configuration".to_string(),
        notify::ErrorKind::MaxFilesWatch => "the limit of inotify watches is reached".to_string(),
    };
    let paths: Vec<String> = e.paths.iter().map(|p| p.display().to_string()).collect();
    if paths.is_empty() {
        what
    } else {
        format!("{what} ({})", paths.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_new_file_in_a_watched_directory_wakes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let _w = watch(&[dir.path().to_path_buf()], move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .expect("watcher");
        std::fs::write(dir.path().join("conn.log"), b"x\n").expect("write");
        let deadline = Instant::now() + Duration::from_secs(5);
        while count.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(count.load(Ordering::SeqCst) > 0);
    }

    #[test]
    fn watch_errors_read_as_plain_text() {
        let e = notify::Error::io(std::io::Error::from_raw_os_error(13))
            .add_path(PathBuf::from("/opt/zeek/spool/zeek"));
        let text = describe(&e);
        assert_eq!(
            text,
            "Permission denied (os error 13) (/opt/zeek/spool/zeek)"
        );
        assert!(!e.to_string().is_empty());
    }

    #[test]
    fn a_missing_directory_is_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = watch(&[dir.path().join("nope")], || {});
        assert!(w.is_ok());
    }
}
