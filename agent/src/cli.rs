//! The command line of the `wisp-agent` binary: its subcommands, their options and their
//! help, parsed by hand.
//!
//! clap's derive and its help machinery were the agent's largest dependency for what it did:
//! seven subcommands with a handful of options each (issue 20, the 4 MiB router binary). This
//! parser keeps clap's conventions, so scripts, unit files and the devnet call it as before:
//!
//! - `--opt value` and `--opt=value`; `-c value`, `-cvalue` and `-c=value` for `--config`;
//! - `--config` falls back to `WISP_CONFIG` (an empty value counts as unset);
//! - `--help`/`-h` (also `wisp-agent help [command]`) prints help and exits 0, `--version`/`-V`
//!   the version;
//! - an unknown option or subcommand, a missing or invalid value, an option given twice or a
//!   stray argument is a usage error: a message, the usage line, exit code 2.
//!
//! Arguments must be UTF-8, except a value given as its own argument (`--config <path>`),
//! which may be any path.

use std::ffi::OsString;
use std::path::PathBuf;

/// The exit code of a usage error (clap's, and the BSD `EX_USAGE` convention's neighbour).
pub(crate) const USAGE_ERROR: u8 = 2;

/// The options every subcommand takes: where the configuration comes from, and overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Common {
    /// `--config`/`-c`, else `WISP_CONFIG`.
    pub(crate) config: Option<PathBuf>,
    /// `--data-dir`: overrides `node.data_dir`.
    pub(crate) data_dir: Option<PathBuf>,
    /// `--broker`: overrides `mqtt.url`.
    pub(crate) broker: Option<String>,
    /// `--http-listen`: overrides `http.listen`.
    pub(crate) http_listen: Option<String>,
    /// `--log-format`: overrides `log.format`.
    pub(crate) log_format: Option<String>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// `run`.
    Run(Common),
    /// `keygen`.
    Keygen(Common),
    /// `onboard`.
    Onboard { common: Common, wait_s: u64 },
    /// `device`.
    Device(Common),
    /// `credentials`.
    Credentials {
        common: Common,
        password_file: String,
    },
    /// `status`.
    Status {
        common: Common,
        peer: Option<String>,
        addr: Option<String>,
        timeout_s: u64,
        json: bool,
    },
    /// `config check`.
    ConfigCheck(Common),
}

/// A command line that asks for no command, or a wrong one: what to print, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Help, for stdout (exit 0).
    Help(String),
    /// The version, for stdout (exit 0).
    Version(String),
    /// A usage error, for stderr (exit [`USAGE_ERROR`]).
    Usage(String),
}

/// An option: its long name, short letter, value name (`None`: a flag) and help line.
struct Opt {
    long: &'static str,
    short: Option<char>,
    value: Option<&'static str>,
    help: &'static str,
}

const fn opt(long: &'static str, value: &'static str, help: &'static str) -> Opt {
    Opt {
        long,
        short: None,
        value: Some(value),
        help,
    }
}

static COMMON: [Opt; 5] = [
    Opt {
        long: "config",
        short: Some('c'),
        value: Some("CONFIG"),
        help: "Configuration file (TOML). `WISP_<SECTION>__<KEY>` environment variables \
               override it [env: WISP_CONFIG]",
    },
    opt("data-dir", "DATA_DIR", "Overrides `node.data_dir`"),
    opt(
        "broker",
        "BROKER",
        "Overrides `mqtt.url` (mqtt://host:port or mqtts://host:port)",
    ),
    opt("http-listen", "HTTP_LISTEN", "Overrides `http.listen`"),
    opt(
        "log-format",
        "LOG_FORMAT",
        "Overrides `log.format` (text or json)",
    ),
];

/// A subcommand: its name (`config check` for the nested one), its one-line summary, its
/// full description and its own options (besides [`COMMON`]).
struct Sub {
    name: &'static str,
    summary: &'static str,
    about: &'static str,
    opts: &'static [Opt],
}

static SUBS: [Sub; 7] = [
    Sub {
        name: "run",
        summary: "Run the daemon",
        about: "Run the daemon.",
        opts: &[],
    },
    Sub {
        name: "keygen",
        summary: "Create the node key if there is none, and print the node's peer id",
        about: "Create the node key if there is none, and print the node's peer id.",
        opts: &[],
    },
    Sub {
        name: "onboard",
        summary: "Sign an Onboard message (owner, location, antenna, bands) and send it to the \
                  oracle",
        about: "Sign an Onboard message (owner, location, antenna, bands) and send it to the \
                oracle.",
        opts: &[opt(
            "wait-s",
            "WAIT_S",
            "Seconds to wait for the oracle's ack [default: 30]",
        )],
    },
    Sub {
        name: "device",
        summary: "Print the device's secure-element serial and public key (what a maker \
                  certifies)",
        about: "Print the device's secure-element serial and public key (what a maker \
                certifies).",
        opts: &[],
    },
    Sub {
        name: "credentials",
        summary: "Print the node's login for an external broker's password file",
        about: "Print the node's login for an external broker's password file (username: the \
                peer id;\npassword: signed with the node key for the configured oracle), as a \
                `mosquitto_passwd` command\nready to paste. Needs the node key and \
                `oracle.public_key`.",
        opts: &[opt(
            "password-file",
            "PASSWORD_FILE",
            "The broker's password file, in the printed command [default: \
             /etc/mosquitto/wisp.passwd]",
        )],
    },
    Sub {
        name: "status",
        summary: "Show the local agent's status, or with --peer any node's signed status over \
                  libp2p",
        about: "Show the local agent's status, or with --peer any node's signed status over \
                libp2p.",
        opts: &[
            opt(
                "peer",
                "PEER",
                "Ask this node (peer id, 12D3KooW…) over `/wisp/status/1` instead of the local \
                 agent",
            ),
            opt(
                "addr",
                "ADDR",
                "Without --peer: the status server, host:port (default: the running agent's, \
                 from the data directory). With --peer: the node's multiaddr (default: find it \
                 through net.bootstrap and the DHT)",
            ),
            opt(
                "timeout-s",
                "TIMEOUT_S",
                "Seconds to wait for a remote answer [default: 30]",
            ),
            Opt {
                long: "json",
                short: None,
                value: None,
                help: "Print the raw JSON",
            },
        ],
    },
    Sub {
        name: "config check",
        summary: "Validate the configuration and print the resolved values",
        about: "Validate the configuration and print the resolved values.",
        opts: &[],
    },
];

const ABOUT: &str = "wisp hotspot agent: proves coverage, backhaul and location to the rewards \
                     oracle";

/// The `config` group: its summary, and its subcommands' names within it.
const CONFIG_SUMMARY: &str = "Configuration commands";

/// Parses the command line (`args` with the program name first) with `WISP_CONFIG`'s value.
pub(crate) fn parse(
    args: impl IntoIterator<Item = OsString>,
    env_config: Option<OsString>,
) -> Result<Cmd, Exit> {
    let mut args = args.into_iter().skip(1);
    let Some(first) = args.next() else {
        return Err(usage_error(
            "'wisp-agent' requires a subcommand but one was not provided",
            "wisp-agent <COMMAND>",
        ));
    };
    let first = utf8(first, "wisp-agent <COMMAND>")?;
    let sub = match first.as_str() {
        "-h" | "--help" => return Err(Exit::Help(top_help())),
        "-V" | "--version" => {
            return Err(Exit::Version(format!(
                "wisp-agent {}\n",
                env!("CARGO_PKG_VERSION")
            )));
        }
        "help" => return Err(help_for(args)),
        "config" => match args.next().map(|a| utf8(a, "wisp-agent config <COMMAND>")) {
            None => {
                return Err(usage_error(
                    "'wisp-agent config' requires a subcommand but one was not provided",
                    "wisp-agent config <COMMAND>",
                ));
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(a)) if a == "-h" || a == "--help" || a == "help" => {
                return Err(Exit::Help(config_help()));
            }
            Some(Ok(a)) if a == "check" => find("config check"),
            Some(Ok(a)) => return Err(unknown(&a, "wisp-agent config <COMMAND>")),
        },
        name => match SUBS
            .iter()
            .find(|s| s.name == name && s.name != "config check")
        {
            Some(s) => s,
            None => return Err(unknown(name, "wisp-agent <COMMAND>")),
        },
    };
    let mut values = Values::parse(sub, args)?;
    let common = Common {
        config: values
            .take("config")
            .or(env_config.filter(|v| !v.is_empty()))
            .map(PathBuf::from),
        data_dir: values.take("data-dir").map(PathBuf::from),
        broker: values.string("broker")?,
        http_listen: values.string("http-listen")?,
        log_format: values.string("log-format")?,
    };
    Ok(match sub.name {
        "run" => Cmd::Run(common),
        "keygen" => Cmd::Keygen(common),
        "onboard" => Cmd::Onboard {
            wait_s: values.number("wait-s", 30)?,
            common,
        },
        "device" => Cmd::Device(common),
        "credentials" => Cmd::Credentials {
            password_file: values
                .string("password-file")?
                .unwrap_or_else(|| "/etc/mosquitto/wisp.passwd".into()),
            common,
        },
        "status" => Cmd::Status {
            peer: values.string("peer")?,
            addr: values.string("addr")?,
            timeout_s: values.number("timeout-s", 30)?,
            json: values.take("json").is_some(),
            common,
        },
        _ => Cmd::ConfigCheck(common),
    })
}

/// A subcommand's options as given: long name and value (empty for a flag).
struct Values {
    sub: &'static Sub,
    given: Vec<(&'static str, OsString)>,
}

impl Values {
    /// Reads the options after the subcommand's name.
    fn parse(sub: &'static Sub, args: impl Iterator<Item = OsString>) -> Result<Values, Exit> {
        let usage = usage_line(sub);
        let mut given: Vec<(&'static str, OsString)> = Vec::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let arg = utf8(arg, &usage)?;
            if arg == "-h" || arg == "--help" {
                return Err(Exit::Help(sub_help(sub)));
            }
            // The option, and a value attached to it (`--opt=value`, `-cvalue`, `-c=value`).
            let (o, attached) = if let Some(long) = arg.strip_prefix("--").filter(|l| !l.is_empty())
            {
                let (name, value) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (long, None),
                };
                (options(sub).find(|o| o.long == name), value)
            } else if let Some(short) = arg.strip_prefix('-').and_then(|s| s.chars().next()) {
                let rest = &arg[1 + short.len_utf8()..];
                let value = (!rest.is_empty()).then(|| rest.strip_prefix('=').unwrap_or(rest));
                (options(sub).find(|o| o.short == Some(short)), value)
            } else {
                return Err(usage_error(
                    &format!("unexpected argument '{arg}' found"),
                    &usage,
                ));
            };
            let Some(o) = o else {
                return Err(usage_error(
                    &format!("unexpected argument '{arg}' found"),
                    &usage,
                ));
            };
            if given.iter().any(|(n, _)| *n == o.long) {
                return Err(usage_error(
                    &format!(
                        "the argument '{}' cannot be used multiple times",
                        display(o)
                    ),
                    &usage,
                ));
            }
            let value = match (o.value, attached) {
                (None, None) => OsString::new(),
                (None, Some(v)) => {
                    return Err(usage_error(
                        &format!("unexpected value '{v}' for '--{}' found", o.long),
                        &usage,
                    ));
                }
                (Some(_), Some(v)) => v.into(),
                // The next argument, unless it looks like an option (as clap does).
                (Some(_), None) => match args
                    .next_if(|a| a.to_str().is_none_or(|s| !s.starts_with('-') || s == "-"))
                {
                    Some(v) => v,
                    None => {
                        return Err(usage_error(
                            &format!(
                                "a value is required for '{}' but none was supplied",
                                display(o)
                            ),
                            &usage,
                        ));
                    }
                },
            };
            given.push((o.long, value));
        }
        Ok(Values { sub, given })
    }

    fn take(&mut self, long: &str) -> Option<OsString> {
        let i = self.given.iter().position(|(n, _)| *n == long)?;
        Some(self.given.swap_remove(i).1)
    }

    fn string(&mut self, long: &str) -> Result<Option<String>, Exit> {
        let usage = usage_line(self.sub);
        self.take(long).map(|v| utf8(v, &usage)).transpose()
    }

    fn number(&mut self, long: &str, default: u64) -> Result<u64, Exit> {
        let Some(v) = self.string(long)? else {
            return Ok(default);
        };
        v.parse().map_err(|e| {
            let o = options(self.sub).find(|o| o.long == long);
            usage_error(
                &format!(
                    "invalid value '{v}' for '{}': {e}",
                    o.map_or(long.to_string(), display)
                ),
                &usage_line(self.sub),
            )
        })
    }
}

fn find(name: &str) -> &'static Sub {
    // Only called with the names in `SUBS`.
    SUBS.iter().find(|s| s.name == name).unwrap_or(&SUBS[0])
}

fn options(sub: &'static Sub) -> impl Iterator<Item = &'static Opt> {
    COMMON.iter().chain(sub.opts)
}

fn utf8(arg: OsString, usage: &str) -> Result<String, Exit> {
    arg.into_string().map_err(|a| {
        usage_error(
            &format!("invalid UTF-8 in the argument '{}'", a.to_string_lossy()),
            usage,
        )
    })
}

/// `--config <CONFIG>`, as errors and help name an option.
fn display(o: &Opt) -> String {
    match o.value {
        Some(v) => format!("--{} <{v}>", o.long),
        None => format!("--{}", o.long),
    }
}

fn usage_line(sub: &Sub) -> String {
    format!("wisp-agent {} [OPTIONS]", sub.name)
}

fn usage_error(message: &str, usage: &str) -> Exit {
    Exit::Usage(format!(
        "error: {message}\n\nUsage: {usage}\n\nFor more information, try '--help'.\n"
    ))
}

fn unknown(name: &str, usage: &str) -> Exit {
    if name.starts_with('-') {
        usage_error(&format!("unexpected argument '{name}' found"), usage)
    } else {
        usage_error(&format!("unrecognized subcommand '{name}'"), usage)
    }
}

/// `wisp-agent help [command [command]]`.
fn help_for(args: impl Iterator<Item = OsString>) -> Exit {
    let words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    match words.join(" ").as_str() {
        "" => Exit::Help(top_help()),
        "config" => Exit::Help(config_help()),
        name => match SUBS.iter().find(|s| s.name == name) {
            Some(s) => Exit::Help(sub_help(s)),
            None => unknown(name, "wisp-agent help [COMMAND]"),
        },
    }
}

/// Rows of `  left  help`, aligned.
fn table(rows: &[(String, &str)]) -> String {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(l, h)| format!("  {l:<width$}  {h}\n"))
        .collect()
}

fn top_help() -> String {
    let mut rows: Vec<(String, &str)> = SUBS
        .iter()
        .filter(|s| s.name != "config check")
        .map(|s| (s.name.to_string(), s.summary))
        .collect();
    rows.push(("config".into(), CONFIG_SUMMARY));
    rows.push((
        "help".into(),
        "Print this message or the help of the given subcommand(s)",
    ));
    format!(
        "{ABOUT}\n\nUsage: wisp-agent <COMMAND>\n\nCommands:\n{}\nOptions:\n{}",
        table(&rows),
        table(&[
            ("-h, --help".into(), "Print help"),
            ("-V, --version".into(), "Print version"),
        ])
    )
}

fn config_help() -> String {
    let check = find("config check");
    format!(
        "{CONFIG_SUMMARY}.\n\nUsage: wisp-agent config <COMMAND>\n\nCommands:\n{}\nOptions:\n{}",
        table(&[("check".into(), check.summary)]),
        table(&[("-h, --help".into(), "Print help")])
    )
}

fn sub_help(sub: &'static Sub) -> String {
    let mut rows: Vec<(String, &str)> = options(sub)
        .map(|o| {
            let short = o.short.map_or("    ".to_string(), |c| format!("-{c}, "));
            (format!("{short}{}", display(o)), o.help)
        })
        .collect();
    rows.push(("-h, --help".into(), "Print help"));
    format!(
        "{}\n\nUsage: {}\n\nOptions:\n{}",
        sub.about,
        usage_line(sub),
        table(&rows)
    )
}

#[cfg(test)]
mod tests;
