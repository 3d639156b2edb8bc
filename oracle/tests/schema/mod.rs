//! The schema validator of `openapi.rs`: the subset of OpenAPI 3.0 the document uses. A
//! keyword it does not know fails the test, so the document cannot grow a construct that
//! nothing checks.

use serde_json::Value;

/// Follows a local `$ref` (`#/components/…`) to what it names.
pub(crate) fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(r.strip_prefix('#').expect("local $ref"))
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// The schema keywords the validator knows. Annotations are not checked; `pattern` is checked
/// for the patterns of [`pattern_holds`] only.
const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "nullable",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "allOf",
    "pattern",
    "format",
    "description",
    "example",
];

/// The document's string patterns, as code (no regex engine in this test).
fn pattern_holds(pattern: &str, s: &str) -> bool {
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match pattern {
        "^[0-9a-f]{64}$" => s.len() == 64 && lower_hex(s),
        "^[0-9]+$" => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
        "^([0-9a-f]{2})*$" => s.len().is_multiple_of(2) && lower_hex(s),
        other => panic!("pattern {other} is not known to this validator: add it to pattern_holds"),
    }
}

/// Checks `v` against `schema` (OpenAPI 3.0 semantics: `null` only where `nullable`), adding a
/// line per violation to `errors`, each with where in the value it is.
pub(crate) fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let obj = schema.as_object().expect("a schema is an object");
    for k in obj.keys() {
        assert!(
            KEYWORDS.contains(&k.as_str()),
            "schema keyword `{k}` at {at} is not checked by this validator"
        );
    }
    if obj.contains_key("$ref") {
        assert_eq!(
            obj.len(),
            1,
            "siblings of $ref are ignored in OpenAPI 3.0: {at}"
        );
        return validate(doc, resolve(doc, schema), v, at, errors);
    }
    if v.is_null() {
        if obj.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{at}: null, not nullable"));
        }
        return;
    }
    for sub in obj
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(doc, sub, v, at, errors);
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            other => panic!("type {other} at {at}"),
        };
        if !ok {
            errors.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(options) = obj.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {options:?}"));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = obj.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!("{at}: {v} < minimum {min}"));
        }
        if let Some(max) = obj.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!("{at}: {v} > maximum {max}"));
        }
    }
    if let (Some(p), Some(s)) = (obj.get("pattern").and_then(Value::as_str), v.as_str())
        && !pattern_holds(p, s)
    {
        errors.push(format!("{at}: {s:?} does not match {p}"));
    }
    if let Some(items) = v.as_array() {
        let count = items.len() as u64;
        if obj
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| count < m)
        {
            errors.push(format!("{at}: {count} items, fewer than minItems"));
        }
        if obj
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| count > m)
        {
            errors.push(format!("{at}: {count} items, more than maxItems"));
        }
        if let Some(item) = obj.get("items") {
            for (i, x) in items.iter().enumerate() {
                validate(doc, item, x, &format!("{at}/{i}"), errors);
            }
        }
    }
    if let Some(fields) = v.as_object() {
        let props = obj.get("properties").and_then(Value::as_object);
        for name in obj
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !fields.contains_key(name) {
                errors.push(format!("{at}: required `{name}` missing"));
            }
        }
        for (name, x) in fields {
            match props.and_then(|p| p.get(name)) {
                Some(s) => validate(doc, s, x, &format!("{at}/{name}"), errors),
                None if obj.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: `{name}` is not in the schema"));
                }
                None => {}
            }
        }
    }
}

#[test]
fn the_validator_catches_what_it_should() {
    let doc = super::doc();
    let check = |schema: Value, value: Value, want: &[&str]| {
        let mut errors = Vec::new();
        validate(&doc, &schema, &value, "", &mut errors);
        assert_eq!(errors.len(), want.len(), "{schema} {value}: {errors:?}");
        for (e, w) in errors.iter().zip(want) {
            assert!(e.contains(w), "{e} lacks {w}");
        }
    };
    use serde_json::json;
    let error = json!({ "$ref": "#/components/schemas/Error" });
    check(error.clone(), json!({ "error": "x" }), &[]);
    check(error.clone(), json!({}), &["required `error`"]);
    check(
        error.clone(),
        json!({ "error": 1 }),
        &["not of type string"],
    );
    check(
        error.clone(),
        json!({ "error": "x", "more": 1 }),
        &["`more` is not in"],
    );
    check(error, Value::Null, &["not nullable"]);
    let n = json!({ "type": "integer", "minimum": 0, "nullable": true });
    check(n.clone(), Value::Null, &[]);
    check(n.clone(), json!(-1), &["minimum"]);
    check(n, json!(1.5), &["not of type integer"]);
    check(
        json!({ "type": "string", "enum": ["open", "closed"] }),
        json!("shut"),
        &["one of"],
    );
    check(
        json!({ "type": "string", "pattern": "^[0-9]+$" }),
        json!("12a"),
        &["does not match"],
    );
    check(
        json!({ "type": "array", "maxItems": 1, "items": { "type": "boolean" } }),
        json!([true, 0]),
        &["more than maxItems", "/1: 0 is not of type boolean"],
    );
    let epoch = json!({ "$ref": "#/components/schemas/Epoch" });
    let e = json!({ "epoch": 1, "closed_ms": null, "emission": 5, "state": "open" });
    check(epoch.clone(), e, &[]);
    check(
        epoch,
        json!({ "epoch": 1, "closed_ms": null, "emission": 5 }),
        &["`state`"],
    );
}
