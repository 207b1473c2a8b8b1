//! The preflight: what `run` needs from this machine, checked before it creates anything, by `check` and
//! `run` alike, so the two cannot disagree.
//!
//! Loading a config is pure (`Config::from_toml_str`); a valid file can still name a CA bundle that is not
//! there or a state directory the service user cannot write. Left to `run`, such a problem shows up after
//! the state directory, its lock, the spool and an empty alert file were created, and `check` (which
//! systemd runs before start and before reload) would have passed it. So [`load`] reads the config and then
//! looks at the machine, without changing anything but a probe file created and removed in an existing
//! state directory:
//! - every file an output or its TLS setup needs, and every secret file or variable, is read and parsed by
//!   the same loaders and constructors the outputs use at start (`crate::output::tls`, `SyslogOutput::new`,
//!   `HttpOutput::new`);
//! - the state directory is a directory this user can write (a file created and removed in it), or can be
//!   created (its nearest existing ancestor is a writable directory); the same for an alert file;
//! - every source's directory exists: a warning only, since Zeek may not have started yet;
//! - the allow lists `filter.allow_files` names are read ([`read_allow_files`]): every bad line is an
//!   error keyed `FILE:LINE`, a pattern that matches no file a warning. Their entries go into
//!   `Config::allow_listed`, so the config `load` returns is the one to run.
//!
//! Every problem comes back at once with its key, together with the config's own errors.

use super::{Config, ConfigError, ConfigErrors, Output, SyslogTransport};
use crate::output::http::HttpFiles;
use crate::output::{tls, HttpOutput, SyslogOutput};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

/// Where each typed source and output came from in the file: its index in `[[source]]` and `[[output]]`,
/// so a problem is reported under the key the user wrote.
#[derive(Debug, Default)]
pub(super) struct Origins {
    pub(super) sources: Vec<usize>,
    pub(super) outputs: Vec<usize>,
    /// The HTTP outputs whose tables had errors, by index, with the files and secrets they name: read
    /// here too, so that `check` reports every problem at once.
    pub(super) unbuilt_http: Vec<(usize, HttpFiles)>,
}

/// What the preflight found. Errors make `check` and `run` exit 78; warnings are printed and do not.
#[derive(Debug, Default)]
struct Findings {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Findings {
    fn error(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError::new(key, reason));
    }
    fn warning(&mut self, key: &str, reason: impl Into<String>) {
        self.warnings.push(ConfigError::new(key, reason));
    }
}

/// Reads and validates the config at `path` and runs the preflight on it: what `check` and `run` both
/// call. Ok holds the config and the warnings; Err every error, the file's and the machine's.
pub fn load(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    let text = fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError::new(
            &path.display().to_string(),
            format!("cannot read: {e}"),
        )],
    })?;
    let (mut config, mut errors, origins) = Config::convert_text(&text)?;
    let found = check(&config, &origins);
    errors.extend(found.errors);
    let mut warnings = found.warnings;
    let (list_errors, list_warnings) = read_allow_files(&mut config);
    errors.extend(list_errors);
    warnings.extend(list_warnings);
    if errors.is_empty() {
        Ok((config, warnings))
    } else {
        Err(ConfigErrors { errors })
    }
}

/// Reads the allow lists `filter.allow_files` names into `config.allow_listed` (replacing what was there):
/// (errors, warnings). Each pattern is expanded in path order and a file matched twice is read once; every
/// bad line is an error keyed `FILE:LINE`, a file that cannot be read an error keyed by its path, a
/// pattern matching nothing a warning (the directory may be filled later; a reload reads it again).
pub fn read_allow_files(config: &mut Config) -> (Vec<ConfigError>, Vec<ConfigError>) {
    let mut found = Findings::default();
    let mut entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, pattern) in config.filter.allow_files.iter().enumerate() {
        let key = format!("filter.allow_files[{i}]");
        let paths = match glob::glob(pattern) {
            Ok(paths) => paths,
            Err(e) => {
                found.error(&key, format!("{pattern:?} is not a glob pattern: {e}"));
                continue;
            }
        };
        let mut matched = 0;
        for path in paths {
            matched += 1;
            let path = match path {
                Ok(p) => p,
                Err(e) => {
                    found.error(&e.path().display().to_string(), format!("cannot read: {e}"));
                    continue;
                }
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            let name = path.display().to_string();
            match fs::read_to_string(&path) {
                Ok(text) => {
                    let (list, bad) = crate::rules::allow_list::parse(&name, &text);
                    entries.extend(list);
                    for b in bad {
                        found.error(&format!("{name}:{}", b.line), b.reason);
                    }
                }
                Err(e) => found.error(&name, format!("cannot read{} ({e})", as_uid())),
            }
        }
        if matched == 0 {
            found.warning(&key, format!("{pattern:?} matches no file"));
        }
    }
    config.allow_listed = entries;
    (found.errors, found.warnings)
}

fn check(config: &Config, origins: &Origins) -> Findings {
    let mut found = Findings::default();
    state_dir(&config.state.dir, &mut found);
    for (j, source) in config.sources.iter().enumerate() {
        let i = origins.sources.get(j).copied().unwrap_or(j);
        source_dir(&format!("source[{i}].path"), &source.path, &mut found);
    }
    // The outputs' constructors log when they succeed; what the preflight builds is thrown away, so keep
    // it out of `run`'s log.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        let mut outputs: Vec<(usize, Result<&Output, &HttpFiles>)> = config
            .outputs
            .iter()
            .enumerate()
            .map(|(j, o)| (origins.outputs.get(j).copied().unwrap_or(j), Ok(o)))
            .chain(origins.unbuilt_http.iter().map(|(i, f)| (*i, Err(f))))
            .collect();
        outputs.sort_by_key(|(i, _)| *i);
        for (i, output) in outputs {
            let key = format!("output[{i}]");
            match output {
                Ok(output) => self::output(&key, output, &mut found),
                Err(files) => {
                    http_files(&key, files, &mut found);
                }
            }
        }
    });
    found
}

fn state_dir(dir: &Path, found: &mut Findings) {
    const KEY: &str = "state.dir";
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if let Err(e) = probe_write(dir) {
                found.error(
                    KEY,
                    format!("{}: cannot write in it{} ({e})", dir.display(), as_uid()),
                );
                return;
            }
            // What the daemon opens in it: the spool and its cursors (directories) and the lock.
            for sub in ["spool", "spool/cursors"] {
                let path = dir.join(sub);
                match fs::metadata(&path) {
                    Ok(m) if m.is_dir() => {
                        if let Err(e) = probe_write(&path) {
                            found.error(
                                KEY,
                                format!("{}: cannot write in it{} ({e})", path.display(), as_uid()),
                            );
                        }
                    }
                    Ok(_) => found.error(KEY, format!("{} is not a directory", path.display())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => found.error(KEY, format!("{}: {e}", path.display())),
                }
            }
            let lock = dir.join(crate::checkpoint::LOCK_NAME);
            if lock.exists() {
                if let Err(e) = OpenOptions::new().read(true).write(true).open(&lock) {
                    found.error(
                        KEY,
                        format!("{}: cannot open it{} ({e})", lock.display(), as_uid()),
                    );
                }
            }
        }
        Ok(_) => found.error(
            KEY,
            format!(
                "{} is not a directory (a file is in the way)",
                dir.display()
            ),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => creatable(KEY, dir, found),
        Err(e) => found.error(KEY, format!("{}: {e}", dir.display())),
    }
}

/// A source's directory should exist; Zeek creates it when it starts, so its absence is only a warning.
fn source_dir(key: &str, path: &Path, found: &mut Findings) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match fs::read_dir(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => found.warning(
            key,
            format!(
                "directory {} does not exist (yet): the daemon waits for Zeek to create it",
                dir.display()
            ),
        ),
        Err(e) => found.warning(
            key,
            format!(
                "directory {}: {e}{}: the daemon retries until it can read it",
                dir.display(),
                as_uid()
            ),
        ),
    }
}

fn output(key: &str, output: &Output, found: &mut Findings) {
    let k = |field: &str| format!("{key}.{field}");
    match output {
        Output::Stdout { .. } => {}
        Output::File { path, .. } => alert_file(&k("path"), path, found),
        Output::Syslog { name, syslog, .. } => {
            let problems = match &syslog.transport {
                SyslogTransport::Tls { tls, .. } => {
                    tls::check_files(Some(&tls.ca_file), tls.client_cert.as_ref())
                }
                _ => Vec::new(),
            };
            for (field, reason) in &problems {
                found.error(&k(field), reason.as_str());
            }
            let files_ok = problems.is_empty();
            // What `run` builds at start; with the files fine, anything else it refuses lands here.
            if files_ok {
                if let Err(reason) = SyslogOutput::new(name.clone(), syslog) {
                    found.error(key, reason);
                }
            }
        }
        Output::Http { name, http } => {
            if http_files(key, &http.files(), found) {
                if let Err(reason) = HttpOutput::new(name.clone(), http) {
                    found.error(key, reason);
                }
            }
        }
    }
}

/// An HTTP output's CA bundle, client identity and secrets: loading only noted where each one is, `run`
/// reads them when it builds the output. False if one fails.
fn http_files(key: &str, files: &HttpFiles, found: &mut Findings) -> bool {
    let problems = files.check();
    for (field, reason) in &problems {
        found.error(&format!("{key}.{field}"), reason.as_str());
    }
    problems.is_empty()
}

/// The file output appends to `path`, creating it and its directories if need be.
fn alert_file(key: &str, path: &Path, found: &mut Findings) {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => {
            // Opening for append (without create or truncate) changes nothing.
            if let Err(e) = OpenOptions::new().append(true).open(path) {
                found.error(
                    key,
                    format!("{}: cannot append to it{} ({e})", path.display(), as_uid()),
                );
            }
        }
        Ok(m) if m.is_dir() => found.error(key, format!("{} is a directory", path.display())),
        // A FIFO or a device (/dev/stdout): opening it here could block; `run` finds out.
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => creatable(key, path, found),
        Err(e) => found.error(key, format!("{}: {e}", path.display())),
    }
}

/// `path` does not exist: it can be created if its nearest existing ancestor is a directory this user
/// may write in.
fn creatable(key: &str, path: &Path, found: &mut Findings) {
    for ancestor in path.ancestors().skip(1) {
        let ancestor = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        match fs::metadata(ancestor) {
            Ok(m) if m.is_dir() => {
                if let Err(e) = access_write(ancestor) {
                    found.error(
                        key,
                        format!(
                            "{} cannot be created: {} is not writable{} ({e})",
                            path.display(),
                            ancestor.display(),
                            as_uid()
                        ),
                    );
                }
                return;
            }
            Ok(_) => {
                found.error(
                    key,
                    format!(
                        "{} cannot be created: {} is not a directory",
                        path.display(),
                        ancestor.display()
                    ),
                );
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                found.error(
                    key,
                    format!(
                        "{} cannot be created: {}: {e}",
                        path.display(),
                        ancestor.display()
                    ),
                );
                return;
            }
        }
    }
}

/// Creates and removes a probe file in `dir`: the only sure test that this process may write there (it
/// covers permissions, ACLs, read-only mounts and `chattr +i`).
fn probe_write(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".longconn-preflight-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

/// access(2) for writing and searching a directory that must not be changed (an ancestor of one to create).
fn access_write(dir: &Path) -> io::Result<()> {
    use rustix::fs::{access, Access};
    access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(io::Error::from)
}

/// " as uid N": the service user is who matters, and `check` is often tried as root first.
fn as_uid() -> String {
    let uid = rustix::process::geteuid().as_raw();
    format!(" as uid {uid}")
}
