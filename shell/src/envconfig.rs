//! A daemon's raw configuration: its TOML file with `WISP_<SECTION>__<KEY>` environment
//! overrides applied ([`load`]), shared by every wisp binary.
//!
//! `WISP_MQTT__URL=mqtt://broker:1883` sets `[mqtt] url`. Each further `__` goes one table
//! deeper: `WISP_RULES__MAKERS__ACME=04…` sets `[rules.makers] acme`. Names are lowercased.
//! Variables without the `WISP_` prefix or without `__` are ignored. An override creates its
//! table when the file has none; it is an error when the file's value there is not a table.
//!
//! An override's value is read as the type of the field it sets, never guessed from its text:
//!
//! - a string or path field takes the text as it is (`WISP_MQTT__PASSWORD=0123` is the
//!   password `0123`);
//! - a number field takes a decimal number of its type (`WISP_MQTT__KEEP_ALIVE_S=30`);
//! - a boolean field takes `true` or `false`;
//! - an enum field takes the name of a unit variant;
//! - an optional field takes what its inner type takes (an override cannot unset a key);
//! - a list or table field takes a TOML value, as it would be written after `key =` in the
//!   file: `WISP_RULES__DENY=["12D3…", "12D3…"]`, `WISP_RULES__MAKERS={ Acme = "04…" }`
//!   (the one way to give a table keys that are not lowercase);
//! - a field that takes any type (an untagged enum such as the agent's address lists) gets
//!   the text as a string.
//!
//! Values from the file are read as `toml` reads them. A mistake is reported with the
//! variable and what its field expected (`WISP_MQTT__KEEP_ALIVE_S: expected an unsigned
//! integer, got "abc"`), or with the file and the key. A variable for a key the schema does not
//! have is an error where the schema denies unknown fields (both daemons' do), naming it.

mod de;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a source: a report of the chain would say it twice).
        why: std::io::Error,
    },
    /// The file is not TOML, or it or an override does not fit the daemon's schema; the
    /// message names the file and key, or the variable.
    #[error("config: {0}")]
    Parse(String),
}

/// Reads `path` (if given; a missing file is an error), applies the `WISP_*` overrides in
/// `env` and deserializes the result, each override as the type of the field it sets.
pub fn load<T: serde::de::DeserializeOwned>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, LoadError> {
    let file = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|why| LoadError::Read {
                path: p.into(),
                why,
            })?;
            let table = text
                .parse::<toml::Table>()
                .map_err(|e| LoadError::Parse(format!("{}: {e}", p.display())))?;
            Some((p, table))
        }
        None => None,
    };
    from_parts(file, env)
}

/// Merges the file's table (and its path, for messages) with the overrides in `env` and
/// deserializes the result.
fn from_parts<T: serde::de::DeserializeOwned>(
    file: Option<(&Path, toml::Table)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, LoadError> {
    let (path, table) = match file {
        Some((p, t)) => (Some(p), t),
        None => (None, toml::Table::new()),
    };
    let mut root = from_file(table);
    for (var, raw) in env {
        overlay(&mut root, var, raw).map_err(LoadError::Parse)?;
    }
    de::deserialize(Node::Table(root)).map_err(|e| LoadError::Parse(e.report(path)))
}

/// A value of the merged configuration.
#[derive(Debug)]
enum Node {
    /// A table: the file's, one an override created, or both merged.
    Table(BTreeMap<String, Node>),
    /// A value from the file that is not a table.
    File(toml::Value),
    /// An override's text, read as the type of its field.
    Env {
        /// The variable, for messages.
        var: String,
        /// Its value.
        raw: String,
    },
}

/// The file's tables as [`Node::Table`]s all the way down, so that overrides can go into any.
fn from_file(table: toml::Table) -> BTreeMap<String, Node> {
    table
        .into_iter()
        .map(|(k, v)| {
            let node = match v {
                toml::Value::Table(t) => Node::Table(from_file(t)),
                v => Node::File(v),
            };
            (k, node)
        })
        .collect()
}

/// The overrides inside `node`, for messages.
fn vars_in(node: &Node) -> Vec<&str> {
    match node {
        Node::Table(t) => t.values().flat_map(vars_in).collect(),
        Node::File(_) => Vec::new(),
        Node::Env { var, .. } => vec![var.as_str()],
    }
}

/// Puts the override `var=raw` into `root` when `var` is `WISP_A__B[__C…]`; ignores any other
/// variable.
fn overlay(root: &mut BTreeMap<String, Node>, var: String, raw: String) -> Result<(), String> {
    let Some(path) = var.strip_prefix("WISP_").filter(|p| p.contains("__")) else {
        return Ok(());
    };
    let path: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!("{var}: a key in the name is empty"));
    }
    let Some((key, tables)) = path.split_last() else {
        return Ok(());
    };
    let mut table = root;
    for (depth, name) in tables.iter().enumerate() {
        let node = table
            .entry(name.clone())
            .or_insert_with(|| Node::Table(BTreeMap::new()));
        table = match node {
            Node::Table(t) => t,
            Node::File(_) => {
                let dotted = path[..=depth].join(".");
                return Err(format!("{var}: `{dotted}` is not a table in the file"));
            }
            Node::Env { var: other, .. } => {
                let dotted = path[..=depth].join(".");
                return Err(format!("{var}: `{dotted}` is set whole by {other}"));
            }
        };
    }
    if let Some(existing) = table.get(key) {
        let others = vars_in(existing);
        if !others.is_empty() && matches!(existing, Node::Table(_)) {
            return Err(format!(
                "{var}: `{}` also has keys set by {}",
                path.join("."),
                others.join(", ")
            ));
        }
    }
    table.insert(key.clone(), Node::Env { var, raw });
    Ok(())
}
