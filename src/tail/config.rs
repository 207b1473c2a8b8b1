//! The `[[source]]` tables: which conn.log files the tail follows, from where, and what kind of log each
//! is.

use crate::config::diag::Reader;
use crate::config::values::{name_of, one_of};
use crate::zeek::SourceKind;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub path: PathBuf,
    pub start_at: StartAt,
    pub kind: SourceKind,
}

const START_AT: &[(&str, StartAt)] = &[("beginning", StartAt::Beginning), ("end", StartAt::End)];
const KINDS: &[(&str, SourceKind)] = &[
    ("conn", SourceKind::Conn),
    ("open_conn", SourceKind::OpenConn),
    ("conn_long", SourceKind::ConnLong),
    ("ssl", SourceKind::Ssl),
    ("http", SourceKind::Http),
    ("dns", SourceKind::Dns),
];

impl Source {
    /// Reads every `[[source]]` from the file's top level; at least one is required and paths are
    /// unique. Also returns the index in the file of each source kept.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> (Vec<Source>, Vec<usize>) {
        let mut sources: Vec<Source> = Vec::new();
        let mut origins = Vec::new();
        let mut index = 0;
        let (_, ok) = r.tables("source", |s| {
            let i = index;
            index += 1;
            let path = s.str("path");
            let start_at = s.str("start_at");
            let kind = s.str("kind");
            let path = match path {
                Some(p) if p.trim().is_empty() => {
                    s.push("path", "is empty");
                    None
                }
                Some(p) => Some(PathBuf::from(p)),
                None => {
                    s.missing("path", "missing: the conn.log to follow");
                    None
                }
            };
            let start_at = start_at
                .and_then(|t| s.parse("start_at", one_of(t, START_AT)))
                .unwrap_or(StartAt::Beginning);
            let kind = kind.and_then(|t| s.parse("kind", one_of(t, KINDS)));
            let Some(path) = path else { return };
            if let Some(j) = sources.iter().position(|o: &Source| o.path == path) {
                s.push("path", format!("{} is already source[{j}]", path.display()));
            }
            let kind = kind.unwrap_or_else(|| SourceKind::from_path(&path));
            origins.push(i);
            sources.push(Source {
                path,
                start_at,
                kind,
            });
        });
        if !ok {
            sources.clear();
            origins.clear();
        }
        if index == 0 || !ok {
            r.missing(
                "source",
                "no [[source]]: give at least one, e.g. path = \"/opt/zeek/logs/current/conn.log\"",
            );
        }
        (sources, origins)
    }

    /// One `[[source]]` as `to_effective_toml` prints it.
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("path".into(), self.path.display().to_string().into());
        t.insert("start_at".into(), name_of(self.start_at, START_AT).into());
        t.insert("kind".into(), name_of(self.kind, KINDS).into());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn source_kind_from_file_name_or_key() {
        let c = load(
            r#"
        [[source]]
        path = "/logs/conn.log"
        [[source]]
        path = "/logs/open_conn.log"
        start_at = "end"
        [[source]]
        path = "/logs/conn_long.log"
        [[source]]
        path = "/logs/other.log"
        kind = "open_conn"
        "#,
        );
        let kinds: Vec<SourceKind> = c.sources.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SourceKind::Conn,
                SourceKind::OpenConn,
                SourceKind::ConnLong,
                SourceKind::OpenConn
            ]
        );
        assert_eq!(c.sources[1].start_at, StartAt::End);
    }

    #[test]
    fn sources_required() {
        assert_error("", "source", "no [[source]]");
        assert_error(
            "[[source]]\nstart_at = \"end\"\n",
            "source[0].path",
            "missing",
        );
        assert_error("[[source]]\npath = \"\"\n", "source[0].path", "empty");
        assert_error(
            "[[source]]\npath = \"/a\"\n[[source]]\npath = \"/a\"\n",
            "source[1].path",
            "already source[0]",
        );
    }
}
