//! FreeRADIUS `detail` files: the accounting records an offload partner's RADIUS server
//! writes, one a request.
//!
//! A record is a timestamp line at the start of a line, then one `Attribute = value` line
//! each, indented (FreeRADIUS writes a tab), and a blank line after it:
//!
//! ```text
//! Sun Dec  6 12:05:00 2026
//!     Acct-Status-Type = Interim-Update
//!     Acct-Session-Id = "5f3a0001"
//!     Acct-Output-Octets = 52428800
//!     Timestamp = 1796558700
//! ```
//!
//! Values in double quotes lose them (with `\"` and `\\` unescaped); others are kept as
//! written. Anything else — an attribute line with no `=`, an attribute before any timestamp
//! line, an overlong line or record — is an error naming its line: nothing is skipped.

use std::fmt;

/// The longest line read (FreeRADIUS writes attributes of at most 253 bytes, escaped).
pub const LINE_MAX: usize = 4096;

/// Most attributes in one record.
pub const ATTRIBUTES_MAX: usize = 256;

/// One accounting record as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The 1-based line of its timestamp line.
    pub line: usize,
    /// The timestamp line as written.
    pub written: String,
    /// The attributes in order: name, value (unquoted), and the line each is on.
    pub attributes: Vec<Attribute>,
}

/// One `Name = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's name, e.g. `Acct-Session-Id`.
    pub name: String,
    /// Its value, unquoted.
    pub value: String,
    /// The 1-based line it is on.
    pub line: usize,
}

impl Record {
    /// The first value of attribute `name` (names compare case-insensitively, as RADIUS
    /// dictionaries do), with its line.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A line that is not what a `detail` file holds there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct DetailError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

fn bad(line: usize, why: impl fmt::Display) -> DetailError {
    DetailError {
        line,
        why: why.to_string(),
    }
}

/// The records of a `detail` file's text, in order.
pub fn parse(text: &str) -> Result<Vec<Record>, DetailError> {
    let mut records = Vec::new();
    let mut current: Option<Record> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.len() > LINE_MAX {
            return Err(bad(line, format!("longer than {LINE_MAX} bytes")));
        }
        if raw.trim().is_empty() {
            records.extend(current.take());
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if !indented {
            // A timestamp line starts the next record (FreeRADIUS always writes a blank line
            // between records, but a missing one loses nothing).
            records.extend(current.take());
            current = Some(Record {
                line,
                written: raw.trim().to_owned(),
                attributes: Vec::new(),
            });
            continue;
        }
        let Some(record) = current.as_mut() else {
            return Err(bad(
                line,
                "an attribute line before any record's timestamp line",
            ));
        };
        if record.attributes.len() >= ATTRIBUTES_MAX {
            return Err(bad(
                line,
                format!("a record of more than {ATTRIBUTES_MAX} attributes"),
            ));
        }
        record.attributes.push(attribute(raw.trim(), line)?);
    }
    records.extend(current);
    Ok(records)
}

/// One `Name = value` line, trimmed.
fn attribute(text: &str, line: usize) -> Result<Attribute, DetailError> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| bad(line, format!("`{text}` is not `Attribute = value`")))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
    {
        return Err(bad(line, format!("`{name}` is not an attribute name")));
    }
    let value = value.trim();
    let value = match value.strip_prefix('"') {
        None => value.to_owned(),
        Some(rest) => {
            let inner = rest
                .strip_suffix('"')
                .ok_or_else(|| bad(line, format!("the value of {name} has no closing quote")))?;
            unescape(inner)
        }
    };
    Ok(Attribute {
        name: name.to_owned(),
        value,
        line,
    })
}

/// `\"` and `\\` as FreeRADIUS escapes them; other escapes are kept as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_attributes_quotes_and_lines() {
        let text = "Sun Dec  6 12:00:00 2026\n\tAcct-Session-Id = \"a\\\"b\"\n\
                    \tAcct-Input-Octets = 10\n\nSun Dec  6 12:05:00 2026\n\
                    \tNAS-Identifier = nas1\n";
        let r = parse(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].line, r[1].line), (1, 5));
        assert_eq!(r[0].get("acct-session-id").unwrap().value, "a\"b");
        assert_eq!(r[0].get("Acct-Input-Octets").unwrap().line, 3);
        assert_eq!(r[1].get("NAS-Identifier").unwrap().value, "nas1");
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (text, line, part) in [
            ("\tAcct-Session-Id = x\n", 1, "before any record"),
            ("Sun\n\tAcct-Session-Id x\n", 2, "not `Attribute = value`"),
            ("Sun\n\tAcct Session = x\n", 2, "not an attribute name"),
            ("Sun\n\tA = \"open\n", 2, "no closing quote"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.why.contains(part), "{text:?}: {e}");
        }
        let long = format!("Sun\n\tA = {}\n", "x".repeat(LINE_MAX));
        assert_eq!(parse(&long).unwrap_err().line, 2);
    }
}
