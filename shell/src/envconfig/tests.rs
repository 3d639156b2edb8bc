//! Overrides read as their fields' types, merged with the file, and the messages for mistakes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::*;

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    s: Scalars,
    opt: Optional,
    lists: Lists,
    nested: Nested,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Scalars {
    a_u8: u8,
    a_u16: u16,
    a_u32: u32,
    a_u64: u64,
    a_usize: usize,
    a_i8: i8,
    a_i16: i16,
    a_i32: i32,
    a_i64: i64,
    a_f32: f32,
    a_f64: f64,
    a_bool: bool,
    a_char: char,
    a_string: String,
    a_path: PathBuf,
    a_kind: Kind,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Optional {
    port: Option<u16>,
    password: Option<String>,
    on: Option<bool>,
    ratio: Option<f64>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Lists {
    names: Vec<String>,
    ports: Vec<u16>,
    bands: Vec<Band>,
    addrs: Option<AddrList>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Band {
    max_m: u32,
    bps: u16,
}

/// Like the agent's address lists: an array, or anything else as one string.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum AddrList {
    List(Vec<String>),
    Csv(String),
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Nested {
    inner: Inner,
    makers: BTreeMap<String, String>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Inner {
    depth: u8,
    label: Option<String>,
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `file` (as `wisp.toml`) with the overrides `vars`.
fn load_with(file: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
    let table: toml::Table = file.parse().unwrap();
    from_parts(Some((Path::new("wisp.toml"), table)), env(vars)).map_err(|e| e.to_string())
}

#[test]
fn every_scalar_type_from_its_text() {
    let c = load_with(
        "",
        &[
            ("WISP_S__A_U8", "255"),
            ("WISP_S__A_U16", "65535"),
            ("WISP_S__A_U32", "4000000000"),
            ("WISP_S__A_U64", "18446744073709551615"),
            ("WISP_S__A_USIZE", "7"),
            ("WISP_S__A_I8", "-128"),
            ("WISP_S__A_I16", "-300"),
            ("WISP_S__A_I32", "-70000"),
            ("WISP_S__A_I64", "-9223372036854775808"),
            ("WISP_S__A_F32", "0.5"),
            ("WISP_S__A_F64", "-9.1394"),
            ("WISP_S__A_BOOL", "true"),
            ("WISP_S__A_CHAR", "é"),
            ("WISP_S__A_STRING", "hotspot"),
            ("WISP_S__A_PATH", "/var/lib/wisp"),
            ("WISP_S__A_KIND", "json"),
        ],
    )
    .unwrap();
    let want = Scalars {
        a_u8: 255,
        a_u16: 65535,
        a_u32: 4_000_000_000,
        a_u64: u64::MAX,
        a_usize: 7,
        a_i8: -128,
        a_i16: -300,
        a_i32: -70_000,
        a_i64: i64::MIN,
        a_f32: 0.5,
        a_f64: -9.1394,
        a_bool: true,
        a_char: 'é',
        a_string: "hotspot".into(),
        a_path: "/var/lib/wisp".into(),
        a_kind: Kind::Json,
    };
    assert_eq!(c.s, want);
    // A float field takes an integer's text too.
    let c = load_with("", &[("WISP_S__A_F64", "5")]).unwrap();
    assert_eq!(c.s.a_f64, 5.0);
    let c = load_with("", &[("WISP_S__A_BOOL", "false")]).unwrap();
    assert!(!c.s.a_bool);
}

#[test]
fn text_fields_keep_the_text() {
    let c = load_with(
        "",
        &[
            ("WISP_S__A_STRING", "0123"),
            ("WISP_S__A_PATH", "42"),
            ("WISP_OPT__PASSWORD", "123456"),
        ],
    )
    .unwrap();
    assert_eq!(c.s.a_string, "0123");
    assert_eq!(c.s.a_path, PathBuf::from("42"));
    assert_eq!(c.opt.password.as_deref(), Some("123456"));
    for text in ["true", "1.5e3", " spaced ", ""] {
        let c = load_with("", &[("WISP_S__A_STRING", text)]).unwrap();
        assert_eq!(c.s.a_string, text);
    }
}

#[test]
fn optional_fields_are_some_when_set() {
    let c = load_with("", &[]).unwrap();
    assert_eq!(c.opt, Optional::default());
    let c = load_with(
        "",
        &[
            ("WISP_OPT__PORT", "1883"),
            ("WISP_OPT__ON", "false"),
            ("WISP_OPT__RATIO", "0.25"),
            ("WISP_OPT__PASSWORD", ""),
        ],
    )
    .unwrap();
    let want = Optional {
        port: Some(1883),
        password: Some(String::new()),
        on: Some(false),
        ratio: Some(0.25),
    };
    assert_eq!(c.opt, want);
}

#[test]
fn mistakes_name_the_variable_and_what_was_expected() {
    let check = |vars: &[(&str, &str)], want: &str| {
        let err = load_with("", vars).unwrap_err();
        assert!(err.contains(want), "{vars:?}: {err}");
    };
    check(
        &[("WISP_S__A_U16", "abc")],
        r#"WISP_S__A_U16: expected an unsigned integer, got "abc""#,
    );
    check(
        &[("WISP_S__A_U16", "70000")],
        r#"WISP_S__A_U16: expected an unsigned integer of at most 65535, got "70000""#,
    );
    check(
        &[("WISP_S__A_U64", "-1")],
        "WISP_S__A_U64: expected an unsigned integer",
    );
    check(
        &[("WISP_S__A_U32", " 5")],
        "WISP_S__A_U32: expected an unsigned integer",
    );
    check(
        &[("WISP_S__A_USIZE", "1.5")],
        "WISP_S__A_USIZE: expected an unsigned integer",
    );
    check(
        &[("WISP_S__A_I8", "200")],
        "WISP_S__A_I8: expected an integer from -128 to 127",
    );
    check(
        &[("WISP_S__A_I64", "x")],
        "WISP_S__A_I64: expected an integer",
    );
    check(
        &[("WISP_S__A_F64", "fast")],
        "WISP_S__A_F64: expected a number",
    );
    check(&[("WISP_S__A_F32", "")], "WISP_S__A_F32: expected a number");
    for not_bool in ["yes", "1", "True", "FALSE", ""] {
        check(
            &[("WISP_S__A_BOOL", not_bool)],
            &format!("WISP_S__A_BOOL: expected true or false, got {not_bool:?}"),
        );
    }
    check(
        &[("WISP_OPT__ON", "on")],
        "WISP_OPT__ON: expected true or false",
    );
    check(
        &[("WISP_OPT__PORT", "mqtt")],
        r#"WISP_OPT__PORT: expected an unsigned integer, got "mqtt""#,
    );
    check(
        &[("WISP_S__A_CHAR", "ab")],
        "WISP_S__A_CHAR: expected one character",
    );
    check(
        &[("WISP_S__A_KIND", "xml")],
        "WISP_S__A_KIND: unknown variant `xml`",
    );
    check(
        &[("WISP_LISTS__NAMES", "a,b")],
        r#"WISP_LISTS__NAMES: expected a TOML array such as ["a", "b"], got "a,b""#,
    );
    check(
        &[("WISP_LISTS__PORTS", r#"["x"]"#)],
        "WISP_LISTS__PORTS: invalid type: string",
    );
    check(
        &[("WISP_NESTED__MAKERS", "acme")],
        "WISP_NESTED__MAKERS: expected a TOML inline table",
    );
    // The one bad variable is named, not its neighbours.
    let err = load_with("", &[("WISP_S__A_U8", "1"), ("WISP_S__A_U16", "x")]).unwrap_err();
    assert!(!err.contains("WISP_S__A_U8"), "{err}");
}

#[test]
fn unknown_keys_name_the_variable() {
    let check = |vars: &[(&str, &str)], want: &str| {
        let err = load_with("[s]\na_u8 = 1\n", vars).unwrap_err();
        assert!(err.contains(want), "{vars:?}: {err}");
    };
    check(
        &[("WISP_S__A_U88", "1")],
        "WISP_S__A_U88: unknown field `a_u88`",
    );
    check(
        &[("WISP_TYPO__X", "1")],
        "WISP_TYPO__X: unknown field `typo`",
    );
    check(
        &[("WISP_NESTED__INNER__DEPTHH", "1")],
        "WISP_NESTED__INNER__DEPTHH: unknown field `depthh`",
    );
    // A section of several unknown keys names them all.
    check(
        &[("WISP_TYPO__X", "1"), ("WISP_TYPO__Y", "2")],
        "WISP_TYPO__X, WISP_TYPO__Y: unknown field `typo`",
    );
}

#[test]
fn file_values_are_read_as_toml_reads_them() {
    let file = "[s]\na_u16 = 8883\na_string = \"0123\"\na_f64 = 2\n\
                [lists]\nnames = [\"a\"]\naddrs = [\"/ip4/1.2.3.4\"]\n\
                bands = [{ max_m = 150, bps = 10000 }]\n\
                [nested.inner]\ndepth = 2\n\
                [nested.makers]\nAcme = \"04ab\"\n";
    let c = load_with(file, &[]).unwrap();
    assert_eq!(
        (c.s.a_u16, c.s.a_string.as_str(), c.s.a_f64),
        (8883, "0123", 2.0)
    );
    assert_eq!(c.lists.names, ["a"]);
    assert_eq!(
        c.lists.addrs,
        Some(AddrList::List(vec!["/ip4/1.2.3.4".into()]))
    );
    assert_eq!(
        c.lists.bands,
        [Band {
            max_m: 150,
            bps: 10_000
        }]
    );
    assert_eq!(c.nested.inner.depth, 2);
    assert_eq!(c.nested.makers["Acme"], "04ab");
    // A mistake in the file names the file and the key.
    let check = |file: &str, want: &str| {
        let err = load_with(file, &[]).unwrap_err();
        assert!(err.contains(want), "{file}: {err}");
    };
    check(
        "[s]\na_u16 = \"x\"\n",
        "wisp.toml: `s.a_u16`: invalid type: string",
    );
    check("[s]\na_u16 = 70000\n", "wisp.toml: `s.a_u16`:");
    check(
        "[s]\nnope = 1\n",
        "wisp.toml: `s.nope`: unknown field `nope`",
    );
    check("[nested.inner]\ndepth = true\n", "`nested.inner.depth`");
    check(
        "[lists]\nbands = [{ max_m = 1 }]\n",
        "wisp.toml: `lists.bands`: missing field `bps`",
    );
}

#[test]
fn overrides_replace_file_values_and_keep_the_rest() {
    let file = "[s]\na_u16 = 1883\na_string = \"file\"\n[opt]\nport = 1\n";
    let c = load_with(
        file,
        &[("WISP_S__A_U16", "8883"), ("WISP_OPT__PASSWORD", "p")],
    )
    .unwrap();
    assert_eq!(c.s.a_u16, 8883);
    assert_eq!(c.s.a_string, "file");
    assert_eq!(
        (c.opt.port, c.opt.password.as_deref()),
        (Some(1), Some("p"))
    );
}

#[test]
fn nested_tables_take_one_level_per_double_underscore() {
    let c = load_with(
        "[nested.inner]\nlabel = \"kept\"\n",
        &[
            ("WISP_NESTED__INNER__DEPTH", "3"),
            ("WISP_NESTED__MAKERS__ACME", "04ab"),
        ],
    )
    .unwrap();
    assert_eq!(c.nested.inner.depth, 3);
    assert_eq!(c.nested.inner.label.as_deref(), Some("kept"));
    assert_eq!(c.nested.makers["acme"], "04ab");
    // A whole table as TOML keeps its keys' case.
    let c = load_with(
        "[nested.makers]\nold = \"00\"\n",
        &[("WISP_NESTED__MAKERS", r#"{ Acme = "04ab", Bolt = "02cd" }"#)],
    )
    .unwrap();
    let makers: Vec<_> = c.nested.makers.keys().map(String::as_str).collect();
    assert_eq!(makers, ["Acme", "Bolt"]);
    let c = load_with("", &[("WISP_NESTED__INNER", "{ depth = 4 }")]).unwrap();
    assert_eq!(c.nested.inner.depth, 4);
}

#[test]
fn lists_are_toml_arrays() {
    let c = load_with(
        "[lists]\nnames = [\"file\"]\n",
        &[
            ("WISP_LISTS__NAMES", r#"["a", "b,c"]"#),
            ("WISP_LISTS__PORTS", "[1883, 8883]"),
            ("WISP_LISTS__BANDS", "[{ max_m = 150, bps = 10000 }]"),
            ("WISP_LISTS__ADDRS", "/ip4/1.2.3.4,/ip4/5.6.7.8"),
        ],
    )
    .unwrap();
    assert_eq!(c.lists.names, ["a", "b,c"]);
    assert_eq!(c.lists.ports, [1883, 8883]);
    assert_eq!(c.lists.bands.len(), 1);
    // A field that takes any type gets the text.
    assert_eq!(
        c.lists.addrs,
        Some(AddrList::Csv("/ip4/1.2.3.4,/ip4/5.6.7.8".into()))
    );
    let c = load_with("", &[("WISP_LISTS__NAMES", "[]")]).unwrap();
    assert!(c.lists.names.is_empty());
}

#[test]
fn which_variables_count_and_where_they_go() {
    // Without the prefix or without `__`: not overrides.
    let c = load_with(
        "",
        &[
            ("OTHER", "1"),
            ("WISP_LOG", "debug"),
            ("WISP_NOSECTION", "1"),
            ("wisp_s__a_u8", "1"),
        ],
    )
    .unwrap();
    assert_eq!(c, Config::default());
    // Names are lowercased; a section the file lacks is created.
    let c = load_with("", &[("WISP_S__A_U8", "9")]).unwrap();
    assert_eq!(c.s.a_u8, 9);
    let check = |file: &str, vars: &[(&str, &str)], want: &str| {
        let err = load_with(file, vars).unwrap_err();
        assert!(err.contains(want), "{vars:?}: {err}");
    };
    check(
        "s = 2\n",
        &[("WISP_S__A_U8", "1")],
        "WISP_S__A_U8: `s` is not a table in the file",
    );
    check(
        "[nested]\ninner = 1\n",
        &[("WISP_NESTED__INNER__DEPTH", "1")],
        "WISP_NESTED__INNER__DEPTH: `nested.inner` is not a table in the file",
    );
    check(
        "",
        &[("WISP_S__", "1")],
        "WISP_S__: a key in the name is empty",
    );
    // A table set whole and a key inside it: whichever comes first, an error.
    let both = [
        ("WISP_NESTED__INNER", "{ depth = 1 }"),
        ("WISP_NESTED__INNER__DEPTH", "2"),
    ];
    check(
        "",
        &both,
        "`nested.inner` is set whole by WISP_NESTED__INNER",
    );
    check(
        "",
        &[both[1], both[0]],
        "WISP_NESTED__INNER: `nested.inner` also has keys set by WISP_NESTED__INNER__DEPTH",
    );
}

#[test]
fn load_reads_the_file_or_nothing() {
    let c: Config = load(None, env(&[("WISP_S__A_U8", "3")])).unwrap();
    assert_eq!(c.s.a_u8, 3);
    let err = load::<Config>(Some(Path::new("/nonexistent/wisp.toml")), env(&[])).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
    // Without a file, a key's mistake names the key alone.
    let err = from_parts::<Config>(None, env(&[("WISP_NESTED__INNER", "{ depth = -1 }")]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("config: WISP_NESTED__INNER: "), "{err}");
}
