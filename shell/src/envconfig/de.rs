//! The deserializer over the merged configuration: tables are walked key by key, file values
//! go to `toml`'s own deserializer, and an override's text is parsed as whatever type the
//! field asks for (`deserialize_u16` parses a `u16`, `deserialize_str` keeps the text).

use std::collections::BTreeMap;
use std::fmt;
use std::num::IntErrorKind;
use std::path::Path;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, Visitor};

use super::Node;

/// Deserializes `T` from the merged tree.
pub(super) fn deserialize<T: DeserializeOwned>(root: Node) -> Result<T, Error> {
    T::deserialize(NodeDe {
        node: root,
        key: String::new(),
    })
}

/// A deserialization error and where it happened.
#[derive(Debug)]
pub(super) struct Error {
    msg: String,
    /// Set by the innermost place that saw the error, then kept.
    place: Option<Place>,
}

/// Where an error happened.
#[derive(Debug)]
enum Place {
    /// In the value of these overrides.
    Vars(String),
    /// At this dotted key (empty: the top level), which holds a file value or a table.
    Key(String),
}

impl Error {
    fn at(mut self, place: impl FnOnce() -> Place) -> Self {
        if self.place.is_none() {
            self.place = Some(place());
        }
        self
    }

    /// `toml`'s error, on one line (it ends with the key inside the value, if any).
    fn from_toml(e: &toml::de::Error) -> Self {
        let text = e.to_string();
        Error {
            msg: text.lines().collect::<Vec<_>>().join(" "),
            place: None,
        }
    }

    /// The message for operators; `file` is the configuration file, if there is one.
    pub(super) fn report(&self, file: Option<&Path>) -> String {
        let msg = &self.msg;
        match (&self.place, file) {
            (Some(Place::Vars(vars)), _) => format!("{vars}: {msg}"),
            (Some(Place::Key(key)), Some(f)) if !key.is_empty() => {
                format!("{}: `{key}`: {msg}", f.display())
            }
            (Some(Place::Key(key)), None) if !key.is_empty() => format!("`{key}`: {msg}"),
            (_, Some(f)) => format!("{}: {msg}", f.display()),
            (_, None) => msg.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report(None))
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            msg: msg.to_string(),
            place: None,
        }
    }
}

/// A node of the merged tree at a dotted key.
struct NodeDe {
    node: Node,
    key: String,
}

fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Where an error about the key `key` of the table at `parent`, holding `node`, belongs: with
/// the overrides that put it there, else at the key in the file.
fn place_of(parent: &str, key: &str, node: &Node) -> Place {
    let vars = super::vars_in(node);
    if vars.is_empty() {
        Place::Key(child_key(parent, key))
    } else {
        Place::Vars(vars.join(", "))
    }
}

fn visit_table<'de, V: Visitor<'de>>(
    table: BTreeMap<String, Node>,
    key: String,
    visitor: V,
) -> Result<V::Value, Error> {
    let access = TableAccess {
        entries: table.into_iter(),
        pending: None,
        key: key.clone(),
    };
    visitor
        .visit_map(access)
        .map_err(|e| e.at(|| Place::Key(key)))
}

/// Each `deserialize_*` of a node: a table is a map to any visitor, a file value is `toml`'s, an
/// override is [`EnvDe`]'s.
macro_rules! by_node {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            match self.node {
                Node::Table(t) => visit_table(t, self.key, visitor),
                Node::File(v) => {
                    let key = self.key;
                    de::Deserializer::$method(v, $($arg,)* visitor)
                        .map_err(|e| Error::from_toml(&e).at(|| Place::Key(key)))
                }
                Node::Env { var, raw } => EnvDe { var, raw }.$method($($arg,)* visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe {
    type Error = Error;

    by_node! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Table(_) => visitor.visit_some(self),
            Node::File(v) => {
                let key = self.key;
                v.deserialize_option(visitor)
                    .map_err(|e| Error::from_toml(&e).at(|| Place::Key(key)))
            }
            Node::Env { var, raw } => EnvDe { var, raw }.deserialize_option(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node {
            Node::Table(_) => visitor.visit_newtype_struct(self),
            Node::File(v) => {
                let key = self.key;
                v.deserialize_newtype_struct(name, visitor)
                    .map_err(|e| Error::from_toml(&e).at(|| Place::Key(key)))
            }
            Node::Env { var, raw } => EnvDe { var, raw }.deserialize_newtype_struct(name, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// A table's entries, each value a [`NodeDe`] one key deeper.
struct TableAccess {
    entries: std::collections::btree_map::IntoIter<String, Node>,
    pending: Option<(String, Node)>,
    /// The table's dotted key.
    key: String,
}

impl<'de> de::MapAccess<'de> for TableAccess {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((name, node)) = self.entries.next() else {
            return Ok(None);
        };
        // An unknown key is reported here: with the variables that set it, if any.
        let key = seed
            .deserialize(StrDeserializer::<Error>::new(&name))
            .map_err(|e| e.at(|| place_of(&self.key, &name, &node)))?;
        self.pending = Some((name, node));
        Ok(Some(key))
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (name, node) = self
            .pending
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value was asked for before its key"))?;
        seed.deserialize(NodeDe {
            node,
            key: child_key(&self.key, &name),
        })
    }
}

/// An override's text, parsed as the type the field asks for.
struct EnvDe {
    var: String,
    raw: String,
}

impl EnvDe {
    /// The error for a value that is not what the field wants.
    fn expected(self, what: &str) -> Error {
        Error {
            msg: format!("expected {what}, got {:?}", self.raw),
            place: Some(Place::Vars(self.var)),
        }
    }

    /// A visitor's result, its error put at this variable.
    fn visited<T>(var: String, r: Result<T, Error>) -> Result<T, Error> {
        r.map_err(|e| e.at(|| Place::Vars(var)))
    }

    /// The text as a TOML value for a list or table field, if it is one of the `kind`.
    fn toml_value(&self, is_kind: fn(&toml::Value) -> bool) -> Option<toml::Value> {
        self.raw.parse::<toml::Value>().ok().filter(is_kind)
    }

    /// `toml`'s result for a TOML value from this variable.
    fn from_toml<T>(var: String, r: Result<T, toml::de::Error>) -> Result<T, Error> {
        r.map_err(|e| Error::from_toml(&e).at(|| Place::Vars(var)))
    }

    fn seq<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.toml_value(toml::Value::is_array) {
            Some(v) => Self::from_toml(self.var, de::Deserializer::deserialize_any(v, visitor)),
            None => Err(self.expected(r#"a TOML array such as ["a", "b"]"#)),
        }
    }

    fn table<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.toml_value(toml::Value::is_table) {
            Some(v) => Self::from_toml(self.var, de::Deserializer::deserialize_any(v, visitor)),
            None => Err(self.expected(r#"a TOML inline table such as { key = "value" }"#)),
        }
    }
}

/// Unsigned integers: a decimal number in the type's range.
macro_rules! unsigned {
    ($($method:ident $visit:ident $t:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.raw.parse::<$t>() {
                Ok(n) => Self::visited(self.var, visitor.$visit(n)),
                Err(e) if *e.kind() == IntErrorKind::PosOverflow => {
                    Err(self.expected(&format!("an unsigned integer of at most {}", <$t>::MAX)))
                }
                Err(_) => Err(self.expected("an unsigned integer")),
            }
        }
    )*};
}

/// Signed integers: a decimal number in the type's range.
macro_rules! signed {
    ($($method:ident $visit:ident $t:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.raw.parse::<$t>() {
                Ok(n) => Self::visited(self.var, visitor.$visit(n)),
                Err(e) if matches!(e.kind(), IntErrorKind::PosOverflow | IntErrorKind::NegOverflow) => {
                    Err(self.expected(&format!(
                        "an integer from {} to {}",
                        <$t>::MIN,
                        <$t>::MAX
                    )))
                }
                Err(_) => Err(self.expected("an integer")),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for EnvDe {
    type Error = Error;

    unsigned! {
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_u128 visit_u128 u128;
    }

    signed! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_i128 visit_i128 i128;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.raw.parse::<f32>() {
            Ok(x) => Self::visited(self.var, visitor.visit_f32(x)),
            Err(_) => Err(self.expected("a number")),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.raw.parse::<f64>() {
            Ok(x) => Self::visited(self.var, visitor.visit_f64(x)),
            Err(_) => Err(self.expected("a number")),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.raw.as_str() {
            "true" => Self::visited(self.var, visitor.visit_bool(true)),
            "false" => Self::visited(self.var, visitor.visit_bool(false)),
            _ => Err(self.expected("true or false")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut chars = self.raw.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Self::visited(self.var, visitor.visit_char(c)),
            _ => Err(self.expected("one character")),
        }
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Self::visited(self.var, visitor.visit_string(self.raw))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Self::visited(self.var, visitor.visit_string(self.raw))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Self::visited(self.var, visitor.visit_string(self.raw))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Self::visited(self.var, visitor.visit_string(self.raw))
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Self::visited(self.var, visitor.visit_byte_buf(self.raw.into_bytes()))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Self::visited(self.var, visitor.visit_byte_buf(self.raw.into_bytes()))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.raw.is_empty() {
            Self::visited(self.var, visitor.visit_unit())
        } else {
            Err(self.expected("nothing"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.table(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.table(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // A unit variant by name; a variant with data would need a table (not offered).
        let r = visitor.visit_enum(StrDeserializer::<Error>::new(&self.raw));
        Self::visited(self.var, r)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}
