//! A daemon's raw configuration: its TOML file with `WISP_<SECTION>__<KEY>` environment
//! overrides applied ([`load`]), shared by every wisp binary.
//!
//! `WISP_MQTT__URL=mqtt://broker:1883` sets `[mqtt] url`. A value is read as an integer, a
//! float or a boolean when it parses as one, else as a string; keys listed as strings always
//! stay strings (a numeric password is still a password). Variables without the prefix or
//! without `__` are ignored.

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
    /// The file or an override is not valid TOML for the daemon's schema.
    #[error("config: {0}")]
    Parse(String),
}

/// Reads `path` (if given; a missing file is an error), applies the `WISP_*` overrides in
/// `env` ([`apply_env_overrides`], `string_keys` always strings) and deserializes the result.
pub fn load<T: serde::de::DeserializeOwned>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    string_keys: &[(&str, &str)],
) -> Result<T, LoadError> {
    let mut table = match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|why| LoadError::Read {
                path: p.into(),
                why,
            })?
            .parse::<toml::Table>()
            .map_err(|e| LoadError::Parse(format!("{}: {e}", p.display())))?,
        None => toml::Table::new(),
    };
    apply_env_overrides(&mut table, env, string_keys).map_err(LoadError::Parse)?;
    T::deserialize(toml::Value::Table(table)).map_err(|e| LoadError::Parse(e.to_string()))
}

/// Applies the overrides in `env` to `table`. Fails when a variable names a section that is
/// not a table in the file.
pub fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    string_keys: &[(&str, &str)],
) -> Result<(), String> {
    for (k, v) in env {
        let Some((section, key)) = k.strip_prefix("WISP_").and_then(|r| r.split_once("__")) else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = if string_keys.contains(&(section.as_str(), key.as_str())) {
            toml::Value::String(v)
        } else {
            parse_scalar(&v)
        };
        match table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => {
                return Err(format!(
                    "WISP_{}__{}: `{section}` is not a section",
                    section.to_uppercase(),
                    key.to_uppercase()
                ));
            }
        }
    }
    Ok(())
}

fn parse_scalar(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match v {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_become_typed_values() {
        let mut t: toml::Table = "[a]\nx = 1\ntop = 2\n".parse().unwrap();
        let env = [
            ("WISP_A__X", "7"),
            ("WISP_A__F", "0.5"),
            ("WISP_B__ON", "true"),
            ("WISP_B__PASSWORD", "123"),
            ("WISP_B__NAME", "hotspot"),
            ("OTHER", "1"),
            ("WISP_NOSECTION", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env_overrides(&mut t, env, &[("b", "password")]).unwrap();
        assert_eq!(t["a"]["x"], toml::Value::Integer(7));
        assert_eq!(t["a"]["f"], toml::Value::Float(0.5));
        assert_eq!(t["b"]["on"], toml::Value::Boolean(true));
        assert_eq!(t["b"]["password"], toml::Value::String("123".into()));
        assert_eq!(t["b"]["name"], toml::Value::String("hotspot".into()));
        let err = apply_env_overrides(&mut t, [("WISP_TOP__Y".into(), "1".into())], &[]);
        assert!(err.is_ok(), "a new section is created");
        let mut t2: toml::Table = "top = 2\n".parse().unwrap();
        let err =
            apply_env_overrides(&mut t2, [("WISP_TOP__Y".into(), "1".into())], &[]).unwrap_err();
        assert!(err.contains("not a section"), "{err}");
    }
}
