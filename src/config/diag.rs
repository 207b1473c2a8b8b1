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

/// One error at `key`.
pub fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}
