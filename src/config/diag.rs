//! Config diagnostics: one [`ConfigError`] per problem, each with the dotted key it concerns
//! (`source[0].path`, `output[2].facility`), and [`ConfigErrors`], every problem of one file at once.

/// One problem in a config file: the dotted key it concerns (`window.group_by`, `source[0].path`; empty
/// for problems with the file as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_error(.key, .reason))]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn display_error(key: &str, reason: &str) -> String {
    if key.is_empty() {
        reason.to_string()
    } else {
        format!("{key}: {reason}")
    }
}

/// Every problem found in a config, in file order as far as it is known. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_all(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

fn display_all(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// Whether some error concerns exactly `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }
}

impl ConfigError {
    pub fn new(key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// Where an error sorts in the report (see the order described in [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Order {
    /// An HTTP output's own checks, in the order they run.
    Early(usize),
    /// An unknown key or a value of the wrong TOML type, by its place in the file: the index of each key
    /// (or array element) on the way down.
    Shape(Vec<usize>),
    /// A value check, in the order the sections run.
    Late(usize),
}

#[derive(Debug)]
struct Entry {
    error: ConfigError,
    order: Order,
    /// A "missing" error, dropped if an earlier error concerns its key or a key below it.
    missing: bool,
}

/// Collects every problem of one file, each with its full key; [`Diagnostics::finish`] sorts them into
/// the report.
#[derive(Debug, Default)]
pub struct Diagnostics {
    entries: Vec<Entry>,
    seq: usize,
    /// While above zero, value errors are dropped: the tables being read belong to an array that is
    /// refused as a whole (one of its elements is not a table), so only their keys and types are checked.
    quiet: usize,
}

impl Diagnostics {
    pub fn new() -> Diagnostics {
        Diagnostics::default()
    }

    fn add(&mut self, key: String, reason: String, order: Order, missing: bool) {
        if self.quiet > 0 && matches!(order, Order::Late(_)) {
            return;
        }
        self.entries.push(Entry {
            error: ConfigError { key, reason },
            order,
            missing,
        });
    }

    fn next(&mut self) -> usize {
        self.seq += 1;
        self.seq
    }

    /// How many problems were found so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `value`, or None with its reason reported at the full `key`.
    pub fn check<T>(&mut self, key: &str, value: Result<T, String>) -> Option<T> {
        match value {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(key, reason);
                None
            }
        }
    }

    /// A value that does not check out, at the full `key`.
    pub fn push(&mut self, key: &str, reason: impl Into<String>) {
        let order = Order::Late(self.next());
        self.add(key.to_string(), reason.into(), order, false);
    }

    /// A missing required key: reported unless an error found before it concerns `key` or a key below it
    /// (a value dropped for its type, an unknown key in the same table), so that one mistake gives one
    /// error.
    pub fn missing(&mut self, key: &str, reason: impl Into<String>) {
        let order = Order::Late(self.next());
        self.add(key.to_string(), reason.into(), order, true);
    }

    /// A required path: `value` when it is given and not blank; else "is empty", or `missing` when it is
    /// absent, at `key`.
    pub fn required_path(
        &mut self,
        key: &str,
        value: Option<&str>,
        missing: &str,
    ) -> Option<std::path::PathBuf> {
        match value {
            Some(p) if !p.trim().is_empty() => Some(std::path::PathBuf::from(p)),
            Some(_) => {
                self.push(key, "is empty");
                None
            }
            None => {
                self.missing(key, missing);
                None
            }
        }
    }

    /// Every error, in report order. Empty when the file is fine.
    pub fn finish(self) -> Vec<ConfigError> {
        let covers = |key: &str, e: &ConfigError| {
            e.key == key
                || e.key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        };
        // Every early and shape error is "before" every value check; value errors in the order found.
        let mut kept: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| !matches!(e.order, Order::Late(_)))
            .collect();
        for entry in self
            .entries
            .iter()
            .filter(|e| matches!(e.order, Order::Late(_)))
        {
            if entry.missing && kept.iter().any(|k| covers(&entry.error.key, &k.error)) {
                continue;
            }
            kept.push(entry);
        }
        kept.sort_by(|a, b| a.order.cmp(&b.order));
        kept.into_iter().map(|e| e.error.clone()).collect()
    }
}

/// Reads one table of the file (a section, an `[[array]]` element, an inline table), taking typed values
/// by key. A value of the wrong type is reported with its full key and read as absent; [`Reader::finish`]
/// reports every key that was never asked for as unknown, naming the keys that were. So the keys a section
/// knows are the keys its code reads, and nothing else lists them.
pub struct Reader<'d, 't> {
    diag: &'d mut Diagnostics,
    table: &'t toml::Table,
    prefix: String,
    /// Where this table is in the file (see [`Order::Shape`]).
    place: Vec<usize>,
    /// The keys asked for, in the order asked: this table's known keys.
    asked: Vec<String>,
    /// The keys given with a value of the right type.
    given: Vec<String>,
    /// Keys refused with their own message, not reported again as unknown.
    refused: Vec<&'t str>,
    /// No key is unknown (another reader checked them).
    all_read: bool,
    /// Report value errors as an HTTP output's own (see [`Order::Early`]).
    early: bool,
}

impl<'d, 't> Reader<'d, 't> {
    /// The reader of the whole file.
    pub fn root(diag: &'d mut Diagnostics, table: &'t toml::Table) -> Reader<'d, 't> {
        Reader::new(diag, table, "")
    }

    /// The reader of a table at `prefix` (`output[2]`), for tests of one section.
    pub fn new(diag: &'d mut Diagnostics, table: &'t toml::Table, prefix: &str) -> Reader<'d, 't> {
        Reader {
            diag,
            table,
            prefix: prefix.to_string(),
            place: Vec::new(),
            asked: Vec::new(),
            given: Vec::new(),
            refused: Vec::new(),
            all_read: false,
            early: false,
        }
    }

    /// The full key of `name` in this table (this table's own key for "").
    pub fn key(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (_, true) => self.prefix.clone(),
            (true, false) => name.to_string(),
            (false, false) => format!("{}.{name}", self.prefix),
        }
    }

    /// The table itself, for checks across its keys. Reading through it does not mark a key as known.
    pub fn table(&self) -> &'t toml::Table {
        self.table
    }

    /// Whether the table holds `name` (whatever its type).
    pub fn has(&self, name: &str) -> bool {
        self.table.contains_key(name)
    }

    /// From now on, value errors are an HTTP output's own checks (reported first, in the order found).
    pub fn set_early(&mut self) {
        self.early = true;
    }

    /// Reports a problem with the value of `name` ("" for the table itself).
    pub fn push(&mut self, name: &str, reason: impl Into<String>) {
        let key = self.key(name);
        if self.early {
            let order = Order::Early(self.diag.next());
            self.diag.add(key, reason.into(), order, false);
        } else {
            self.diag.push(&key, reason);
        }
    }

    /// Reports `name` as missing, unless something at or below it was reported (see
    /// [`Diagnostics::missing`]).
    pub fn missing(&mut self, name: &str, reason: impl Into<String>) {
        let key = self.key(name);
        self.diag.missing(&key, reason);
    }

    /// The collector, for checks that name keys of their own.
    pub fn diag(&mut self) -> &mut Diagnostics {
        self.diag
    }

    fn place_of(&self, name: &str) -> Vec<usize> {
        let mut place = self.place.clone();
        place.push(
            self.table
                .keys()
                .position(|k| k == name)
                .unwrap_or(usize::MAX),
        );
        place
    }

    /// A wrong type or an unknown key: in early mode with the HTTP output's checks, else in file order.
    fn shape(&mut self, key: String, reason: String, place: Vec<usize>) {
        let order = if self.early {
            Order::Early(self.diag.next())
        } else {
            Order::Shape(place)
        };
        self.diag.add(key, reason, order, false);
    }

    fn wrong_type(&mut self, name: &str, expected: &str, found: &toml::Value) {
        let (key, place) = (self.key(name), self.place_of(name));
        let reason = format!("expected {expected}, found {}", found.type_str());
        self.shape(key, reason, place);
    }

    /// Marks `name` as a key of this table and returns its value.
    pub fn get(&mut self, name: &str) -> Option<&'t toml::Value> {
        if !self.asked.iter().any(|a| a == name) {
            self.asked.push(name.to_string());
        }
        self.table.get(name)
    }

    /// Records `name` as given with a value of the right type.
    fn got(&mut self, name: &str) {
        if !self.given.iter().any(|g| g == name) {
            self.given.push(name.to_string());
        }
    }

    /// The keys asked for so far, in the order asked.
    pub fn asked(&self) -> &[String] {
        &self.asked
    }

    /// The keys given with a value of the right type, in the order asked.
    pub fn given(&self) -> Vec<String> {
        self.given.clone()
    }

    /// `value`, or None with its reason reported at `name`.
    pub fn parse<T>(&mut self, name: &str, value: Result<T, String>) -> Option<T> {
        match value {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(name, reason);
                None
            }
        }
    }

    pub fn str(&mut self, name: &str) -> Option<&'t str> {
        match self.get(name)? {
            toml::Value::String(s) => {
                self.got(name);
                Some(s.as_str())
            }
            other => {
                self.wrong_type(name, "a string", other);
                None
            }
        }
    }

    pub fn int(&mut self, name: &str) -> Option<i64> {
        match self.get(name)? {
            toml::Value::Integer(n) => {
                self.got(name);
                Some(*n)
            }
            other => {
                self.wrong_type(name, "an integer", other);
                None
            }
        }
    }

    /// A number: a TOML float, or an integer read as one.
    pub fn float(&mut self, name: &str) -> Option<f64> {
        match self.get(name)? {
            toml::Value::Float(f) => {
                self.got(name);
                Some(*f)
            }
            toml::Value::Integer(n) => {
                self.got(name);
                Some(*n as f64)
            }
            other => {
                self.wrong_type(name, "a number", other);
                None
            }
        }
    }

    /// An array of integers; if any element is not an integer, each such element is reported and the
    /// whole array read as absent.
    pub fn int_list(&mut self, name: &str) -> Option<Vec<i64>> {
        self.list(name, "integer", |v| v.as_integer())
    }

    pub fn bool(&mut self, name: &str) -> Option<bool> {
        match self.get(name)? {
            toml::Value::Boolean(b) => {
                self.got(name);
                Some(*b)
            }
            other => {
                self.wrong_type(name, "true or false", other);
                None
            }
        }
    }

    /// An array of strings; if any element is not a string, each such element is reported and the whole
    /// array read as absent.
    pub fn str_list(&mut self, name: &str) -> Option<Vec<&'t str>> {
        self.list(name, "string", |v| v.as_str())
    }

    /// An array whose elements `item` reads (None: not of the type `what` names, each reported); the
    /// whole array is read as absent if any element is not.
    fn list<T>(
        &mut self,
        name: &str,
        what: &str,
        item: impl Fn(&'t toml::Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = match self.get(name)? {
            toml::Value::Array(items) => items,
            other => {
                self.wrong_type(name, &format!("an array of {what}s"), other);
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in items.iter().enumerate() {
            match item(v) {
                Some(x) => out.push(x),
                None => {
                    let key = format!("{}[{i}]", self.key(name));
                    let mut place = self.place_of(name);
                    place.push(i);
                    let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    };
                    let reason = format!("expected {article} {what}, found {}", v.type_str());
                    self.shape(key, reason, place);
                    ok = false;
                }
            }
        }
        if ok {
            self.got(name);
        }
        ok.then_some(out)
    }

    fn child(&mut self, table: &'t toml::Table, key: String, place: Vec<usize>) -> Reader<'_, 't> {
        Reader {
            diag: &mut *self.diag,
            table,
            prefix: key,
            place,
            asked: Vec::new(),
            given: Vec::new(),
            refused: Vec::new(),
            all_read: false,
            early: self.early,
        }
    }

    /// A sub-table (`[window]`, `levels = { ... }`) read by `read`, which then reports its unknown keys;
    /// None if it is absent or not a table (reported).
    pub fn section<T>(
        &mut self,
        name: &'static str,
        read: impl FnOnce(&mut Reader<'_, 't>) -> T,
    ) -> Option<T> {
        let table = match self.get(name)? {
            toml::Value::Table(t) => t,
            other => {
                self.wrong_type(name, "a table", other);
                return None;
            }
        };
        let (key, place) = (self.key(name), self.place_of(name));
        let mut child = self.child(table, key, place);
        let out = read(&mut child);
        child.finish();
        Some(out)
    }

    /// An array of tables (`[[source]]`), each read by `read`, which then reports its unknown keys. The
    /// bool is false when the array is refused as a whole (not an array, or an element is not a table;
    /// reported): the tables' keys and types are still checked, the values they hold are not.
    pub fn tables<T>(
        &mut self,
        name: &'static str,
        mut read: impl FnMut(&mut Reader<'_, 't>) -> T,
    ) -> (Vec<T>, bool) {
        let items = match self.get(name) {
            None => return (Vec::new(), true),
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                let (key, place) = (self.key(name), self.place_of(name));
                let reason = format!(
                    "expected an array of tables ([[{name}]]), found {}",
                    other.type_str()
                );
                self.shape(key, reason, place);
                return (Vec::new(), false);
            }
        };
        let ok = items.iter().all(toml::Value::is_table);
        if !ok {
            self.diag.quiet += 1;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{}[{i}]", self.key(name));
            let mut place = self.place_of(name);
            place.push(i);
            match item {
                toml::Value::Table(table) => {
                    let mut child = self.child(table, key, place);
                    out.push(read(&mut child));
                    child.finish();
                }
                other => {
                    let reason = format!("expected a table, found {}", other.type_str());
                    self.shape(key, reason, place);
                }
            }
        }
        if !ok {
            self.diag.quiet -= 1;
        }
        (out, ok)
    }

    /// The keys of the table never asked for, in file order.
    pub fn unread(&self) -> Vec<&'t str> {
        self.table
            .keys()
            .filter(|k| !self.asked.contains(k) && !self.refused.contains(&k.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Marks every key as read: their checks are done elsewhere (the HTTP output checks its own keys).
    pub fn read_all(&mut self) {
        self.all_read = true;
    }

    /// Reports `name` (a key of this table) as not belonging here, with `reason`, in file order; it is
    /// not reported again as unknown.
    pub fn refuse(&mut self, name: &'t str, reason: impl Into<String>) {
        let (key, place) = (self.key(name), self.place_of(name));
        self.shape(key, reason.into(), place);
        self.refused.push(name);
    }

    /// Reports every key never asked for as unknown, naming the keys that were.
    pub fn finish(mut self) {
        self.finish_unread();
    }

    fn finish_unread(&mut self) {
        let unread: Vec<&'t str> = self.unread();
        if unread.is_empty() || self.all_read {
            return;
        }
        let known = self.asked.join(", ");
        for name in unread {
            let (key, place) = (self.key(name), self.place_of(name));
            self.shape(
                key,
                format!("unknown key (expected one of: {known})"),
                place,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("test TOML")
    }

    #[test]
    fn wrong_types_and_unknown_keys_in_file_order() {
        let t = table("b = 1\nzz = 2\nlist = [\"x\", 3]\n[sub]\nq = 1\n");
        let mut d = Diagnostics::new();
        let mut r = Reader::root(&mut d, &t);
        assert_eq!(r.str("b"), None);
        assert_eq!(r.str_list("list"), None);
        r.section("sub", |s| {
            s.push("", "a value problem");
            s.int("n")
        });
        r.finish();
        let got: Vec<String> = d.finish().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "b: expected a string, found integer",
                "zz: unknown key (expected one of: b, list, sub)",
                "list[1]: expected a string, found integer",
                "sub.q: unknown key (expected one of: n)",
                "sub: a value problem",
            ]
        );
    }

    #[test]
    fn missing_is_dropped_under_an_earlier_error() {
        let t = table("[[a]]\npath = 3\n[[a]]\n");
        let mut d = Diagnostics::new();
        let mut r = Reader::root(&mut d, &t);
        let (_, ok) = r.tables("a", |a| {
            let _ = a.str("path");
            a.missing("path", "missing");
        });
        assert!(ok);
        r.diag().push("a[1].path.x", "later, below the key");
        r.finish();
        let got: Vec<String> = d.finish().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "a[0].path: expected a string, found integer",
                "a[1].path: missing",
                "a[1].path.x: later, below the key",
            ]
        );
    }

    #[test]
    fn an_array_with_a_non_table_is_refused_whole() {
        let t = table("a = [{ k = 1, u = 2 }, 3]\n");
        let mut d = Diagnostics::new();
        let mut r = Reader::root(&mut d, &t);
        let (items, ok) = r.tables("a", |a| {
            let k = a.int("k");
            a.push("k", "a value check, dropped");
            k
        });
        assert!(!ok);
        assert_eq!(items, [Some(1)]);
        r.finish();
        let got: Vec<String> = d.finish().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "a[0].u: unknown key (expected one of: k)",
                "a[1]: expected a table, found integer",
            ]
        );
    }
}
