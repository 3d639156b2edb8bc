//! The shipped Mosquitto configuration (`deploy/mosquitto`) against the protocol: `wisp.acl`,
//! read as Mosquitto 2.0 reads it, grants every client exactly what [`topics::may_publish`]
//! and [`topics::may_subscribe`] grant it (what the oracle's embedded broker enforces) on a
//! table of topics, and `wisp.conf`'s size limit is the protocol's. So the ACL cannot drift
//! from the rules; `tests/tests/mosquitto_acl.rs` runs both files on a real Mosquitto.
//!
//! Mosquitto never refuses a subscription (its file ACLs check `read` on each message it
//! delivers), so "may subscribe" is compared topic by topic: a client reads a topic on
//! Mosquitto exactly when the embedded broker lets it subscribe to that topic.
#![allow(clippy::unwrap_used)]

use wisp_protocol::NodeKey;
use wisp_protocol::topics::{self, Client};

const ACL: &str = include_str!("../../deploy/mosquitto/wisp.acl");
const CONF: &str = include_str!("../../deploy/mosquitto/wisp.conf");

/// The oracle's and the monitor's logins in the shipped files.
const ORACLE_USER: &str = "wisp-oracle";
const MONITOR_USER: &str = "wisp-monitor";

const READ: u8 = 1;
const WRITE: u8 = 2;
/// `deny`: refuses reading and writing alike.
const DENY: u8 = 0;

/// One `topic` or `pattern` line.
#[derive(Debug, Clone)]
struct Rule {
    access: u8,
    topic: String,
}

/// An ACL file as Mosquitto 2.0's default security reads it (`aclfile__parse` and
/// `mosquitto_acl_check_default` in `src/security_default.c`).
#[derive(Debug, Default)]
struct AclFile {
    /// `topic` lines by the `user` line above them (`None`: before any, for anonymous
    /// clients); `deny` lines first, as Mosquitto puts them.
    users: Vec<(Option<String>, Vec<Rule>)>,
    /// `pattern` lines, for every client; `deny` lines first.
    patterns: Vec<Rule>,
}

fn add(list: &mut Vec<Rule>, rule: Rule) {
    if rule.access == DENY {
        list.insert(0, rule);
    } else {
        list.push(rule);
    }
}

impl AclFile {
    fn parse(text: &str) -> Result<AclFile, String> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            if line.starts_with('#') {
                continue;
            }
            // strtok on " ": runs of spaces are one separator, tabs are part of a token.
            let mut tokens = line.split(' ').filter(|t| !t.is_empty());
            let Some(first) = tokens.next() else {
                continue;
            };
            match first {
                "topic" | "pattern" => {
                    let rest: Vec<&str> = tokens.collect();
                    let (access, topic) = match rest.as_slice() {
                        [] => return Err(format!("line {}: empty topic", n + 1)),
                        [topic] => (READ | WRITE, *topic),
                        [access, topic @ ..] => {
                            let access = match *access {
                                "read" => READ,
                                "write" => WRITE,
                                "readwrite" => READ | WRITE,
                                "deny" => DENY,
                                other => {
                                    return Err(format!("line {}: access type `{other}`", n + 1));
                                }
                            };
                            // The rest of the line is the topic.
                            if topic.len() != 1 {
                                return Err(format!("line {}: a topic with a space in it", n + 1));
                            }
                            (access, topic[0])
                        }
                    };
                    if topic.contains('\t') || !valid_filter(topic) {
                        return Err(format!("line {}: invalid topic `{topic}`", n + 1));
                    }
                    let rule = Rule {
                        access,
                        topic: topic.to_string(),
                    };
                    if first == "pattern" {
                        add(&mut acl.patterns, rule);
                    } else {
                        match acl.users.iter_mut().find(|(u, _)| *u == user) {
                            Some((_, rules)) => add(rules, rule),
                            None => acl.users.push((user.clone(), vec![rule])),
                        }
                    }
                }
                "user" => {
                    let name: Vec<&str> = tokens.collect();
                    if name.is_empty() {
                        return Err(format!("line {}: missing username", n + 1));
                    }
                    user = Some(name.join(" "));
                }
                _ => return Err(format!("line {}: invalid line `{line}`", n + 1)),
            }
        }
        Ok(acl)
    }

    /// Whether a client logged in as `username` (`None`: anonymous) with `client_id` may
    /// `access` (READ or WRITE) `topic`.
    fn allows(&self, username: Option<&str>, client_id: &str, topic: &str, access: u8) -> bool {
        let own = self
            .users
            .iter()
            .find(|(u, _)| u.as_deref() == username)
            .map(|(_, rules)| rules.as_slice());
        if own.is_none() && self.patterns.is_empty() {
            return false;
        }
        for rule in own.unwrap_or_default() {
            if topic.starts_with('$') && !rule.topic.starts_with('$') {
                continue;
            }
            if matches(&rule.topic, topic) {
                if rule.access == DENY {
                    return false;
                }
                if rule.access & access != 0 {
                    return true;
                }
            }
        }
        if !self.patterns.is_empty()
            && (username.is_some_and(|u| u.contains(['+', '#'])) || client_id.contains(['+', '#']))
        {
            return false;
        }
        for rule in &self.patterns {
            if rule.topic.contains("%u") && username.is_none() {
                continue;
            }
            let mut local = rule.topic.replace("%c", client_id);
            if let Some(u) = username {
                local = local.replace("%u", u);
            }
            if matches(&local, topic) {
                if rule.access == DENY {
                    return false;
                }
                if rule.access & access != 0 {
                    return true;
                }
            }
        }
        false
    }
}

/// A valid subscription filter (`mosquitto_sub_topic_check`).
fn valid_filter(f: &str) -> bool {
    let levels: Vec<&str> = f.split('/').collect();
    !f.is_empty()
        && levels.iter().enumerate().all(|(i, l)| {
            (*l == "#" && i == levels.len() - 1) || *l == "+" || !l.contains(['+', '#'])
        })
}

/// Whether `filter` matches the topic name `topic` (`mosquitto_topic_matches_sub`): `+` one
/// level, `#` the rest and the parent, no wildcard first level on a `$` topic.
fn matches(filter: &str, topic: &str) -> bool {
    if topic.contains(['+', '#']) {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A `key value` line of `wisp.conf`.
fn conf(key: &str) -> Option<&'static str> {
    CONF.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(str::trim)
}

#[test]
fn the_matcher_and_the_parser_read_as_mosquitto_does() {
    for (filter, topic, want) in [
        ("wisp/#", "wisp", true),
        ("wisp/#", "wisp/v1/epoch", true),
        ("wisp/v1/+", "wisp/v1/epoch", true),
        ("wisp/v1/+", "wisp/v1/epoch/x", false),
        ("wisp/v1/+", "wisp/v1", false),
        ("#", "$SYS/broker/uptime", false),
        ("+/broker/uptime", "$SYS/broker/uptime", false),
        ("wisp/v1/epoch", "wisp/v1/epoch", true),
        ("wisp/v1/epoch", "wisp/v1/+", false),
    ] {
        assert_eq!(matches(filter, topic), want, "{filter} {topic}");
    }
    // `topic read` is read-and-write on a topic named `read`, as Mosquitto reads it.
    let acl = AclFile::parse("topic read").unwrap();
    assert!(acl.allows(None, "c", "read", WRITE));
    for bad in [
        "pattern\tread wisp/#",
        "topic reed wisp/#",
        "topic read wisp/#/x",
        "topic read wisp/a+",
        "user",
        "users x",
    ] {
        assert!(AclFile::parse(bad).is_err(), "{bad}");
    }
    // Anonymous rules come before any `user` line; `deny` wins over a later grant.
    let acl =
        AclFile::parse("topic read a/b\nuser u\ntopic readwrite a/#\ntopic deny a/x\n").unwrap();
    assert!(acl.allows(None, "c", "a/b", READ));
    assert!(!acl.allows(None, "c", "a/b", WRITE));
    assert!(acl.allows(Some("u"), "u", "a/b", WRITE));
    assert!(!acl.allows(Some("u"), "u", "a/x", READ));
    assert!(!acl.allows(Some("v"), "v", "a/b", READ));
}

#[test]
fn the_shipped_acl_grants_exactly_what_the_embedded_broker_grants() {
    let acl = AclFile::parse(ACL).unwrap_or_else(|e| panic!("wisp.acl: {e}"));
    let me = NodeKey::from_seed(&[4; 32]).id();
    let other = NodeKey::from_seed(&[5; 32]).id();
    let mut table: Vec<String> = vec![
        topics::proofs(&me),
        topics::proofs(&other),
        topics::status(&me),
        topics::status(&other),
        topics::acks(&me),
        topics::acks(&other),
        topics::EPOCH.into(),
        topics::CLOCK.into(),
        topics::measurers(0),
        topics::measurers(17),
        topics::rewards(0),
        topics::rewards(123_456),
        format!("{}/x", topics::proofs(&me)),
        format!("{}/x", topics::status(&me)),
        format!("{}/x", topics::acks(&me)),
        format!("{}/x", topics::EPOCH),
        format!("{}/x", topics::measurers(1)),
        format!("{}/x", topics::rewards(1)),
        "wisp".into(),
        "wisp/v1".into(),
        "wisp/v1/proofs".into(),
        "wisp/v1/proofs/".into(),
        "wisp/v1/acks/".into(),
        "wisp/v1/status/".into(),
        "wisp/v1/measurers".into(),
        "wisp/v1/rewards".into(),
        "wisp/v1/proofs/nonsense".into(),
        "wisp/v2/epoch".into(),
        "wisp//v1/epoch".into(),
    ];
    for user in [ORACLE_USER, MONITOR_USER] {
        for kind in ["proofs", "status", "acks"] {
            table.push(format!("wisp/v1/{kind}/{user}"));
        }
    }
    // Outside wisp/ the shipped file grants nothing to anyone: stricter than the embedded
    // broker for the oracle, which needs nothing there.
    let outside = ["other/topic", "$SYS/broker/uptime", "#", "$share/oracle/x"];

    // Who logs in as whom. Each username is also the client id (use_username_as_clientid).
    let clients: [(Client, Option<String>); 4] = [
        (Client::Oracle, Some(ORACLE_USER.into())),
        (Client::Node(me), Some(me.to_string())),
        (Client::Node(other), Some(other.to_string())),
        (Client::Anonymous, Some(MONITOR_USER.into())),
    ];
    for (client, user) in &clients {
        let user = user.as_deref();
        let id = user.unwrap_or("anonymous");
        for topic in &table {
            // The one difference, on purpose (see wisp.acl): the monitor's login cannot read
            // a status topic under its own name, where no node can publish.
            let monitor_own_status =
                user == Some(MONITOR_USER) && *topic == format!("wisp/v1/status/{MONITOR_USER}");
            assert_eq!(
                acl.allows(user, id, topic, WRITE),
                topics::may_publish(client, topic),
                "{client:?} ({id}) publishing on {topic}"
            );
            assert_eq!(
                acl.allows(user, id, topic, READ),
                topics::may_subscribe(client, topic) && !monitor_own_status,
                "{client:?} ({id}) reading {topic}"
            );
        }
        for topic in outside {
            assert!(!acl.allows(user, id, topic, WRITE), "{id} {topic}");
            assert!(!acl.allows(user, id, topic, READ), "{id} {topic}");
        }
    }
    // wisp.conf lets no one in without a login; if it did, such a client would read at most
    // what a monitor may, and publish nothing.
    for topic in table.iter().map(String::as_str).chain(outside) {
        assert!(!acl.allows(None, "anonymous", topic, WRITE), "{topic}");
        assert!(
            !acl.allows(None, "anonymous", topic, READ)
                || topics::may_subscribe(&Client::Anonymous, topic),
            "{topic}"
        );
    }
}

#[test]
fn the_shipped_conf_logs_everyone_in_and_sizes_messages_from_the_protocol() {
    assert_eq!(conf("allow_anonymous"), Some("false"));
    assert_eq!(conf("use_username_as_clientid"), Some("true"));
    assert_eq!(conf("acl_file"), Some("/etc/mosquitto/wisp.acl"));
    assert_eq!(conf("password_file"), Some("/etc/mosquitto/wisp.passwd"));
    assert_eq!(conf("persistence"), Some("true"));
    assert!(conf("certfile").is_some() && conf("keyfile").is_some());
    // The largest envelope of any kind; below the oracle's default incoming limit
    // (MAX_ENVELOPE_LEN + 1 KiB, `broker.max_payload`) by room for a topic and headers.
    let limit: usize = conf("message_size_limit").unwrap().parse().unwrap();
    assert_eq!(limit, wisp_protocol::kind::MAX_ENVELOPE_LEN);
    for kind in wisp_protocol::Kind::ALL {
        assert!(kind.max_envelope_len() <= limit, "{kind:?}");
    }
    let packet: usize = conf("max_packet_size").unwrap().parse().unwrap();
    assert_eq!(packet, wisp_protocol::kind::MAX_ENVELOPE_LEN + 1024);
}
