//! An MQTT broker a daemon connects to, as configured: `mqtt://host:port` or
//! `mqtts://host:port`, a login and a CA bundle. The agent's `[mqtt]` and the oracle's
//! `[broker]` (for an external broker) take the same keys and resolve them here, so both read
//! a URL, a password file and a CA the same way and say the same thing when one is wrong.

use std::path::{Path, PathBuf};

/// The raw keys of a broker section (`url`, `username`, `password`, `password_file`,
/// `ca_file`), as the daemon's TOML gave them.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokerKeys<'a> {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub url: &'a str,
    /// The username, if the broker wants a login.
    pub username: Option<&'a str>,
    /// The password (prefer `password_file`).
    pub password: Option<&'a Password>,
    /// A file holding the password; its line end is not part of it.
    pub password_file: Option<&'a Path>,
    /// A PEM CA bundle that signed an `mqtts://` broker's certificate.
    pub ca_file: Option<&'a Path>,
}

/// A broker key that cannot be used: which one (`url`, `password_file`, …, without the
/// section, which the daemon adds) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct BrokerKeyError {
    /// The key, without its section.
    pub key: &'static str,
    /// What is wrong and what to do.
    pub why: String,
}

fn bad(key: &'static str, why: impl Into<String>) -> BrokerKeyError {
    BrokerKeyError {
        key,
        why: why.into(),
    }
}

/// A password: `{:?}` never shows it (configurations are printed by `config check`).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// What `{:?}` shows instead.
    pub const REDACTED: &'static str = "<redacted>";

    /// A password.
    pub fn new(p: impl Into<String>) -> Password {
        Password(p.into())
    }

    /// The password itself, for the broker login only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

/// A raw configuration's `password` key is a `Password` from the start, so that a raw
/// configuration's `{:?}` does not show it either.
impl<'de> serde::Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Password)
    }
}

/// A broker, resolved: where it is, whether TLS is on, the login and the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// Port (the scheme's, 1883 or 8883, when the URL names none).
    pub port: u16,
    /// `mqtts://`: TLS, the broker's certificate checked against `ca_file` or the system's
    /// roots.
    pub tls: bool,
    /// Username and password, if the broker wants a login.
    pub login: Option<(String, Password)>,
    /// The CA bundle (PEM) for TLS; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Broker {
    /// Resolves a broker section's keys. Reads the password file and checks that the CA file
    /// holds a PEM certificate, so that `config check` catches them: at connect time they
    /// would only be failed attempts, retried.
    pub fn resolve(keys: &BrokerKeys<'_>) -> Result<Broker, BrokerKeyError> {
        let (host, port, tls) = parse_url(keys.url)?;
        let password = match (keys.password, keys.password_file) {
            (Some(_), Some(_)) => {
                return Err(bad("password", "set password or password_file, not both"));
            }
            (Some(p), None) => Some(p.0.clone()),
            (None, Some(f)) => Some(read_password_file(f)?),
            (None, None) => None,
        };
        let login = match (keys.username, password) {
            (Some(""), _) => return Err(bad("username", "empty: leave it unset for no login")),
            (Some(u), p) => Some((u.to_string(), Password(p.unwrap_or_default()))),
            (None, Some(_)) => return Err(bad("username", "a password needs a username")),
            (None, None) => None,
        };
        if let Some(f) = keys.ca_file {
            if !tls {
                return Err(bad("ca_file", "only used with mqtts:// URLs"));
            }
            let pem = std::fs::read_to_string(f)
                .map_err(|e| bad("ca_file", format!("{}: {e}", f.display())))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(bad(
                    "ca_file",
                    format!("{}: no PEM certificate in it", f.display()),
                ));
            }
        }
        Ok(Broker {
            host,
            port,
            tls,
            login,
            ca_file: keys.ca_file.map(Path::to_path_buf),
        })
    }

    /// The broker as operators name it, `mqtt://host:port` or `mqtts://host:port` (an IPv6
    /// host in brackets).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// Whether the broker is on this machine (a login to it never crosses a network).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The TLS transport for `mqtts://` (the CA bundle read now, else the system's roots
    /// through the process's rustls provider); `None` for plain `mqtt://`.
    pub fn transport(&self) -> Result<Option<rumqttc::Transport>, BrokerKeyError> {
        if !self.tls {
            return Ok(None);
        }
        Ok(Some(match &self.ca_file {
            Some(f) => {
                let ca = std::fs::read(f)
                    .map_err(|e| bad("ca_file", format!("{}: {e}", f.display())))?;
                rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth: None,
                })
            }
            None => rumqttc::Transport::tls_with_default_config(),
        }))
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]`, a trailing `/` allowed; `[v6]:port` for
/// IPv6. No login, path, query or fragment.
fn parse_url(url: &str) -> Result<(String, u16, bool), BrokerKeyError> {
    let expected = || {
        bad(
            "url",
            format!("`{url}`: expected mqtt://host:port or mqtts://host:port"),
        )
    };
    let (tls, rest) = match url.split_once("://") {
        Some(("mqtts", rest)) => (true, rest),
        Some(("mqtt", rest)) => (false, rest),
        _ => return Err(expected()),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err(bad(
            "url",
            "no login in the URL: set username and password_file",
        ));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(expected());
    }
    // `[v6]:port`, `host:port`, or a host alone (the scheme's port).
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("url", format!("`{p}` is not a port")))?,
        None if tls => 8883,
        None => 1883,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || host.contains(['[', ']'])
        || (host.contains(':') && !rest.starts_with('['))
    {
        return Err(bad("url", format!("`{url}`: missing or malformed host")));
    }
    Ok((host.to_string(), port, tls))
}

/// A password file's text without its line end (`\n` or `\r\n`); anything else, spaces
/// included, is part of the password. An empty password is refused.
fn read_password_file(f: &Path) -> Result<String, BrokerKeyError> {
    let text = std::fs::read_to_string(f)
        .map_err(|e| bad("password_file", format!("{}: {e}", f.display())))?;
    let p = text.strip_suffix('\n').unwrap_or(&text);
    let p = p.strip_suffix('\r').unwrap_or(p);
    if p.is_empty() {
        return Err(bad("password_file", format!("{} is empty", f.display())));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Result<Broker, BrokerKeyError> {
        Broker::resolve(&BrokerKeys {
            url: u,
            ..BrokerKeys::default()
        })
    }

    #[test]
    fn urls_name_host_port_and_tls() {
        for (u, host, port, tls, shown) in [
            (
                "mqtt://127.0.0.1:1883",
                "127.0.0.1",
                1883,
                false,
                "mqtt://127.0.0.1:1883",
            ),
            (
                "mqtts://broker.example",
                "broker.example",
                8883,
                true,
                "mqtts://broker.example:8883",
            ),
            (
                "mqtt://broker.example/",
                "broker.example",
                1883,
                false,
                "mqtt://broker.example:1883",
            ),
            ("mqtt://[::1]", "::1", 1883, false, "mqtt://[::1]:1883"),
            (
                "mqtts://[fe80::1]:8884",
                "fe80::1",
                8884,
                true,
                "mqtts://[fe80::1]:8884",
            ),
        ] {
            let b = url(u).unwrap();
            assert_eq!((b.host.as_str(), b.port, b.tls), (host, port, tls), "{u}");
            assert_eq!(b.url(), shown);
            assert_eq!(b.login, None);
        }
        assert!(url("mqtt://localhost").unwrap().is_loopback());
        assert!(url("mqtt://[::1]").unwrap().is_loopback());
        assert!(!url("mqtt://10.0.0.1").unwrap().is_loopback());
    }

    #[test]
    fn bad_urls_say_what_was_expected() {
        for (u, says) in [
            ("tcp://h:1883", "expected mqtt://"),
            ("h:1883", "expected mqtt://"),
            ("mqtt://u:p@h:1883", "no login in the URL"),
            ("mqtt://h:1883/topic", "expected mqtt://"),
            ("mqtt://h:0", "is not a port"),
            ("mqtt://h:99999", "is not a port"),
            ("mqtt://h:x", "is not a port"),
            ("mqtt://:1883", "missing or malformed host"),
            ("mqtt://::1", "missing or malformed host"),
            ("mqtt://", "missing or malformed host"),
        ] {
            let e = url(u).unwrap_err();
            assert_eq!(e.key, "url", "{u}");
            assert!(e.why.contains(says), "{u}: {e}");
        }
    }

    #[test]
    fn logins_password_files_and_cas() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("password");
        fn keys(p: &Path) -> BrokerKeys<'_> {
            BrokerKeys {
                url: "mqtts://h",
                username: Some("node"),
                password_file: Some(p),
                ..BrokerKeys::default()
            }
        }
        for (text, want) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("two words \n", "two words "),
        ] {
            std::fs::write(&pw, text).unwrap();
            let b = Broker::resolve(&keys(&pw)).unwrap();
            let (user, password) = b.login.clone().unwrap();
            assert_eq!((user.as_str(), password.expose()), ("node", want));
            assert!(!format!("{b:?}").contains("s3cret"), "{b:?}");
        }
        std::fs::write(&pw, "\n").unwrap();
        assert_eq!(
            Broker::resolve(&keys(&pw)).unwrap_err().key,
            "password_file"
        );
        let missing = dir.path().join("none");
        assert_eq!(
            Broker::resolve(&keys(&missing)).unwrap_err().key,
            "password_file"
        );
        // A username alone logs in with an empty password; a password alone is refused.
        let b = Broker::resolve(&BrokerKeys {
            url: "mqtt://h",
            username: Some("u"),
            ..BrokerKeys::default()
        })
        .unwrap();
        assert_eq!(b.login.unwrap().1.expose(), "");
        let p = Password::new("p");
        for (keys, key) in [
            (
                BrokerKeys {
                    url: "mqtt://h",
                    password: Some(&p),
                    ..BrokerKeys::default()
                },
                "username",
            ),
            (
                BrokerKeys {
                    url: "mqtt://h",
                    username: Some(""),
                    ..BrokerKeys::default()
                },
                "username",
            ),
            (
                BrokerKeys {
                    url: "mqtt://h",
                    username: Some("u"),
                    password: Some(&p),
                    password_file: Some(&pw),
                    ..BrokerKeys::default()
                },
                "password",
            ),
        ] {
            assert_eq!(Broker::resolve(&keys).unwrap_err().key, key);
        }
        // The CA: only for TLS, and it must hold a certificate.
        let ca = dir.path().join("ca.crt");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let with_ca = |u, f| {
            Broker::resolve(&BrokerKeys {
                url: u,
                ca_file: Some(f),
                ..BrokerKeys::default()
            })
        };
        let b = with_ca("mqtts://h", &ca).unwrap();
        assert_eq!(b.ca_file.as_deref(), Some(ca.as_path()));
        assert!(b.transport().unwrap().is_some());
        assert!(url("mqtt://h").unwrap().transport().unwrap().is_none());
        assert_eq!(with_ca("mqtt://h", &ca).unwrap_err().key, "ca_file");
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = with_ca("mqtts://h", &ca).unwrap_err();
        assert!(e.why.contains("no PEM certificate"), "{e}");
    }
}
