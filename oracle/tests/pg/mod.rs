//! PostgreSQL for tests: `WISP_TEST_POSTGRES` (a URL, or libpq `key=value` pairs such as
//! `host=127.0.0.1 user=postgres dbname=test`) and a fresh schema per use, so tests running
//! in parallel never share tables. Without the variable these helpers panic, naming it: an
//! ignored PostgreSQL test run on purpose must never pass silently.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use wisp_oracle::store::StorageConfig;

/// The variable's value as a `postgres://` URL (the oracle's `storage.url` takes URLs).
pub fn url() -> String {
    let v = std::env::var("WISP_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "set WISP_TEST_POSTGRES to a PostgreSQL connection string, e.g. \
             WISP_TEST_POSTGRES='host=127.0.0.1 user=postgres dbname=test' (.ci/run starts one)"
        )
    });
    url_of("WISP_TEST_POSTGRES", &v)
}

/// `v` (a `postgres://` URL, or libpq `key=value` pairs) as a URL; errors name `var`.
pub fn url_of(var: &str, v: &str) -> String {
    if v.starts_with("postgres://") || v.starts_with("postgresql://") {
        return v.to_string();
    }
    let mut host = "127.0.0.1".to_string();
    let (mut port, mut user, mut password, mut db) = (
        "5432".to_string(),
        "postgres".to_string(),
        None,
        "postgres".to_string(),
    );
    for kv in v.split_whitespace() {
        let (k, val) = kv
            .split_once('=')
            .unwrap_or_else(|| panic!("{var}: `{kv}` is not key=value"));
        match k {
            "host" => host = val.into(),
            "port" => port = val.into(),
            "user" => user = val.into(),
            "password" => password = Some(val.to_string()),
            "dbname" => db = val.into(),
            other => panic!("{var}: key `{other}` is not supported here"),
        }
    }
    let auth = match password {
        Some(p) => format!("{user}:{p}"),
        None => user,
    };
    format!("postgres://{auth}@{host}:{port}/{db}")
}

/// A schema name no other test uses.
pub fn schema() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag = format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    format!("wisp_test_{}", &blake3::hash(tag.as_bytes()).to_hex()[..16])
}

/// A fresh PostgreSQL storage.
pub fn fresh() -> StorageConfig {
    StorageConfig::Postgres {
        url: url(),
        schema: Some(schema()),
    }
}
