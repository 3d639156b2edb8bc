//! `wisp-agent`: the hotspot daemon and its operator commands.
#![allow(clippy::print_stdout)]

use std::io::{Read as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use cli::{Cmd, Common, Exit};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use wisp_agent::config::{Config, RawConfig};
use wisp_agent::shell;
use wisp_agent::status::Status;
use wisp_agent::trust::OracleTrust;
use wisp_agent::wallclock;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Attestation, Band, Onboard, Verdict};
use wisp_protocol::topics;
use wisp_shell::keyfile;

mod cli;

fn load_config(c: &Common) -> anyhow::Result<Config> {
    let mut raw = RawConfig::load(c.config.as_deref(), std::env::vars())?;
    if let Some(d) = &c.data_dir {
        raw.node.data_dir = Some(d.clone());
    }
    if let Some(b) = &c.broker {
        raw.mqtt.url = Some(b.clone());
    }
    if let Some(h) = &c.http_listen {
        raw.http.listen = Some(h.clone());
    }
    if let Some(f) = &c.log_format {
        raw.log.format = Some(f.clone());
    }
    Ok(raw.resolve()?)
}

fn main() -> std::process::ExitCode {
    let cmd = match cli::parse(std::env::args_os(), std::env::var_os("WISP_CONFIG")) {
        Ok(cmd) => cmd,
        Err(Exit::Help(text) | Exit::Version(text)) => {
            print!("{text}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(Exit::Usage(text)) => {
            eprint!("{text}");
            return std::process::ExitCode::from(cli::USAGE_ERROR);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cmd)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run(c) => {
            let cfg = load_config(&c)?;
            wisp_shell::logging::init(
                &cfg.log_level,
                matches!(cfg.log_format, wisp_agent::config::LogFormat::Json),
            );
            let (wanted, built) = (
                tracing::level_filters::LevelFilter::current(),
                tracing::level_filters::STATIC_MAX_LEVEL,
            );
            if wanted > built {
                tracing::warn!(
                    "log level {wanted} asked for, but this build logs at most {built}: finer \
                     events were compiled out (the router build; README \"Binary size\")"
                );
            }
            let key = shell::load_key(&cfg.key_file)?;
            let device = wisp_agent::device::open(&cfg, &key)?;
            shell::run(cfg, device, shutdown_signal()).await
        }
        Cmd::Device(c) => {
            let cfg = load_config(&c)?;
            let key = shell::load_key(&cfg.key_file)?;
            let mut device = wisp_agent::device::open_for_attestation(&cfg, &key)?;
            let maker = cfg.attestation.as_ref().map_or("-", |(m, _)| m.as_str());
            match device.attest(
                key.id().as_bytes(),
                if maker == "-" { "probe" } else { maker },
            ) {
                None => anyhow::bail!(
                    "this device ({}) has no secure element",
                    device.firmware_version()
                ),
                Some(r) => {
                    let (serial, device_key, _) =
                        r.map_err(|e| anyhow::anyhow!("secure element: {e}"))?;
                    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                    println!("serial      {}", hex(&serial));
                    println!("device_key  {}", hex(&device_key));
                    println!("maker       {maker}");
                }
            }
            Ok(())
        }
        Cmd::Keygen(c) => {
            let cfg = load_config(&c)?;
            let existed = cfg.key_file.exists();
            let key = shell::load_key(&cfg.key_file)?;
            println!("{}", key.id());
            if existed {
                eprintln!("(existing key {} kept)", cfg.key_file.display());
            } else {
                eprintln!("(new key written to {}, mode 0600)", cfg.key_file.display());
            }
            Ok(())
        }
        Cmd::Onboard { common, wait_s } => onboard(&load_config(&common)?, wait_s).await,
        Cmd::Credentials {
            common,
            password_file,
        } => credentials(&load_config(&common)?, &password_file),
        Cmd::Status {
            common,
            peer: Some(peer),
            addr,
            timeout_s,
            json,
        } => {
            remote_status(
                &load_config(&common)?,
                &peer,
                addr.as_deref(),
                timeout_s,
                json,
            )
            .await
        }
        Cmd::Status {
            common,
            peer: None,
            addr,
            json,
            ..
        } => {
            let addr = match addr {
                Some(a) => a,
                None => {
                    let cfg = load_config(&common)?;
                    std::fs::read_to_string(shell::http_addr_path(&cfg.data_dir))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| cfg.http_listen.to_string())
                }
            };
            let body = http_get(&addr, "/status")
                .with_context(|| format!("asking the agent at {addr} (is it running?)"))?;
            if json {
                println!("{body}");
            } else {
                let s: Status =
                    serde_json::from_str(&body).context("the status is not valid JSON")?;
                print_status(&s);
            }
            Ok(())
        }
        Cmd::ConfigCheck(c) => {
            let cfg = load_config(&c)?;
            // The key as `run` would load it: a key `run` refuses (readable by others, also
            // through a symlink, or a symlink to nothing, which `run` cannot create a key
            // through) fails the check too. Only a path with nothing at it is "none yet".
            let key = if cfg.key_file.symlink_metadata().is_ok() {
                let key = keyfile::load(&cfg.key_file)
                    .context("the key file (`run` would refuse it too)")?;
                key.id().to_string()
            } else {
                "none yet (`run` or `keygen` creates it)".to_string()
            };
            println!("configuration OK");
            println!("  data_dir        {}", cfg.data_dir.display());
            println!("  key_file        {}", cfg.key_file.display());
            println!("  node            {key}");
            println!("  oracle          {}", cfg.oracle);
            println!("  broker          {}", cfg.mqtt.broker.url());
            println!("  status server   {}", cfg.http_listen);
            println!(
                "  radio           {} kHz, {} MHz wide, {:?} tx, {:?} antenna",
                cfg.radio.freq_khz, cfg.radio.width_mhz, cfg.radio.tx_power, cfg.radio.antenna_gain
            );
            println!(
                "  location        {}",
                cfg.cell.map_or("from GNSS".to_string(), |c| c.to_string())
            );
            match &cfg.linux {
                Some(l) => println!("  device          linux: {l}"),
                None => println!("  device          {:?}", cfg.device),
            }
            println!(
                "  outbox          {} proofs / {} bytes max",
                cfg.outbox.max_entries, cfg.outbox.max_bytes
            );
            let n = &cfg.net;
            if n.enabled {
                let list = |v: &[libp2p::Multiaddr]| {
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!("  p2p listen      {}", list(&n.listen));
                println!(
                    "  p2p bootstrap   {}",
                    if n.bootstrap.is_empty() {
                        "none".into()
                    } else {
                        list(&n.bootstrap)
                    }
                );
                println!(
                    "  p2p             mdns {}, {} connections max, idle timeout {} s",
                    if n.mdns { "on" } else { "off" },
                    n.max_connections,
                    n.idle_timeout.as_secs()
                );
                println!(
                    "  p2p DHT server  {}",
                    match n.kad_mode {
                        wisp_agent::net::KadMode::Auto =>
                            "unless autonat finds the node behind NAT",
                        wisp_agent::net::KadMode::Server => "always",
                        wisp_agent::net::KadMode::WhenConfirmed =>
                            "once an external address is confirmed",
                    }
                );
            } else {
                println!("  p2p             disabled");
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `credentials`: the node's broker login ([`wisp_protocol::login`]) as lines for an
/// operator: comments with the username and password, then the `mosquitto_passwd` command that
/// adds them to `password_file`. It never creates a key: a login for a key that does not
/// exist yet would be for a node that never runs.
fn credentials(cfg: &Config, password_file: &str) -> anyhow::Result<()> {
    if cfg.key_file.symlink_metadata().is_err() {
        bail!(
            "no node key at {}: run `wisp-agent keygen` (or `run`) first, with the same configuration",
            cfg.key_file.display()
        );
    }
    let key = keyfile::load(&cfg.key_file).context("the key file (`run` would refuse it too)")?;
    let user = key.id().to_string();
    let password = wisp_protocol::login::password(&key, &cfg.oracle);
    if let Some((configured, _)) = &cfg.mqtt.broker.login {
        eprintln!(
            "note: mqtt.username is set (`{configured}`): the agent logs in with it, not with \
             this login; unset mqtt.username and mqtt.password to use this one"
        );
    }
    println!(
        "# wisp node {user}, on the network of oracle {}",
        cfg.oracle
    );
    println!("# username: {user}");
    println!("# password: {password}");
    println!(
        "mosquitto_passwd -b {} {user} {password}",
        shell_quote(password_file)
    );
    eprintln!(
        "(the password is a bearer secret: whoever holds it can publish as this node on the broker)"
    );
    Ok(())
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

async fn onboard(cfg: &Config, wait_s: u64) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = keyfile::load(&cfg.key_file).context("no node key: run `wisp-agent keygen` first")?;
    let owner = cfg
        .owner
        .clone()
        .context("set node.owner (the payout address) to onboard")?;
    let cell = cfg
        .cell
        .context("set location.lat and location.lon (this device has no GNSS receiver)")?;
    // The declared band: the configured channel, with the configured EIRP.
    let half = u32::from(cfg.radio.width_mhz) * 500;
    let msg = Onboard {
        owner,
        cell,
        antenna_gain: cfg.radio.antenna_gain,
        antenna_height_dm: cfg.antenna_height_dm,
        bands: vec![Band {
            low_khz: cfg.radio.freq_khz - half,
            high_khz: cfg.radio.freq_khz + half,
            max_eirp: wisp_protocol::units::DeciDb(
                cfg.radio
                    .tx_power
                    .0
                    .saturating_add(cfg.radio.antenna_gain.0),
            ),
        }],
        // Declares the measurer role, so the oracle puts this node in measurer sets only when
        // it answers tests (re-run `onboard` after changing `bandwidth.measurer`).
        measurer: cfg.bandwidth.enabled && cfg.bandwidth.measurer,
        issued_ms: wallclock::wall_ms(),
        attestation: match &cfg.attestation {
            None => None,
            Some((maker, certificate)) => {
                let mut device = wisp_agent::device::open_for_attestation(cfg, &key)?;
                let (serial, device_key, device_sig) = device
                    .attest(key.id().as_bytes(), maker)
                    .context("device.maker is set, but this device has no secure element")?
                    .map_err(|e| anyhow::anyhow!("the secure element refused to sign: {e}"))?;
                Some(Attestation {
                    maker: maker.clone(),
                    serial: serial.into(),
                    device_key: device_key.into(),
                    device_sig: device_sig.into(),
                    maker_sig: (*certificate).into(),
                })
            }
        },
    };
    let env = Envelope::sign(&key, &msg);
    let bytes = env.to_bytes();
    let id = env.proof_id();
    let trust = OracleTrust::new(cfg.oracle, key.id());
    // The daemon's options (TLS, credentials), under another client id and a clean session.
    let mut o = shell::mqtt_options(&cfg.mqtt, &key, &cfg.oracle, None)?;
    o.set_client_id(format!("wisp-onboard-{}", key.id()));
    o.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(o, 16);
    client
        .subscribe(topics::acks(&key.id()), QoS::AtLeastOnce)
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_s);
    let mut sent = false;
    // A transient rejection (`rate_limited`) sends the onboarding again after this long,
    // doubling each time, until the deadline.
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_secs(1);
    let send_onboarding = || {
        client.publish(
            topics::proofs(&key.id()),
            QoS::AtLeastOnce,
            false,
            bytes.clone(),
        )
    };
    loop {
        let wake = retry_at.map_or(deadline, |r| r.min(deadline));
        let ev = match tokio::time::timeout_at(wake, events.poll()).await {
            Ok(ev) => ev,
            Err(_) if retry_at.is_some_and(|r| r < deadline) => {
                retry_at = None;
                send_onboarding().await?;
                eprintln!("sent the onboarding again (proof {id})");
                continue;
            }
            Err(_) => bail!(
                "no ack from the oracle within {wait_s} s (proof {id}); run the command again"
            ),
        };
        match ev {
            Ok(Event::Incoming(Packet::SubAck(_))) if !sent => {
                send_onboarding().await?;
                sent = true;
                eprintln!(
                    "sent onboarding of {} at {} (proof {id}); waiting for the oracle",
                    key.id(),
                    msg.cell
                );
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(ack) = trust.accept_ack(&p.payload) else {
                    continue;
                };
                if let Some(e) = ack.entries.iter().find(|e| e.proof_id == id) {
                    return match e.verdict {
                        Verdict::Accepted => {
                            println!("onboarded: {} (proof {id})", key.id());
                            Ok(())
                        }
                        Verdict::Rejected(r) if r.is_transient() => {
                            eprintln!(
                                "the oracle did not judge the onboarding yet ({r}: {}); sending it again in {} s",
                                r.describe(),
                                backoff.as_secs()
                            );
                            retry_at = Some(tokio::time::Instant::now() + backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            continue;
                        }
                        Verdict::Rejected(r) => {
                            bail!("the oracle rejected the onboarding: {r} ({})", r.describe())
                        }
                    };
                }
            }
            Ok(_) => {}
            Err(e) => bail!("broker {}: {e}", cfg.mqtt.broker.url()),
        }
    }
}

/// `status --peer`: a throwaway libp2p node (its own random key, never the node key, so it
/// cannot be confused with a running daemon) asks `peer` for its signed status, checks the
/// signature against the peer id, and prints it.
async fn remote_status(
    cfg: &Config,
    peer: &str,
    addr: Option<&str>,
    timeout_s: u64,
    json: bool,
) -> anyhow::Result<()> {
    use wisp_agent::net;
    let peer: libp2p::PeerId = peer
        .parse()
        .with_context(|| format!("--peer {peer}: not a peer id (12D3KooW…)"))?;
    let mut ncfg = cfg.net.clone();
    ncfg.listen.clear();
    ncfg.mdns = false;
    // It listens nowhere: never a DHT server.
    ncfg.kad_mode = net::KadMode::WhenConfirmed;
    if addr.is_none() && ncfg.bootstrap.is_empty() {
        bail!("give --addr <multiaddr>, or set net.bootstrap so the peer can be found");
    }
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let key = wisp_protocol::NodeKey::generate(&mut rng);
    let n = net::start(&key, &ncfg, cfg.oracle, None)?;
    if let Some(a) = addr {
        let a: libp2p::Multiaddr = a
            .parse()
            .with_context(|| format!("--addr {a}: not a multiaddr"))?;
        n.handle.add_address(peer, a).await?;
    }
    let r = tokio::time::timeout(
        Duration::from_secs(timeout_s),
        n.handle.status_request(peer),
    )
    .await
    .with_context(|| format!("no answer from {peer} within {timeout_s} s"))?
    .with_context(|| format!("asking {peer} for its status"))?;
    if json {
        let doc = serde_json::json!({
            "peer_id": r.peer.to_string(),
            "signature": "verified",
            "report": r.report,
            "witnessed_by": r.witnesses,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_remote_status(&r);
    }
    Ok(())
}

fn print_remote_status(r: &wisp_agent::net::status::RemoteStatus) {
    let now = wallclock::wall_ms();
    let s = &r.report;
    println!("peer id          {} (signature verified)", r.peer);
    println!(
        "versions         agent {}, firmware {}",
        s.versions.agent, s.versions.firmware
    );
    println!("uptime           {} s", s.uptime_s);
    println!(
        "epoch            {}",
        s.epoch.map_or("none yet".into(), |e| e.to_string())
    );
    println!(
        "location         {}",
        s.cell.map_or("not set".into(), |c| format!(
            "cell {c} (H3 resolution {})",
            c.resolution()
        ))
    );
    println!(
        "broker           {}",
        if s.broker_connected {
            "connected"
        } else {
            "DISCONNECTED"
        }
    );
    println!("peers            {}", s.peers);
    println!(
        "outbox           {} proofs, oldest {}",
        s.outbox_depth,
        ago(now, s.oldest_unacked_ms)
    );
    println!("last ack         {}", ago(now, s.last_ack_ms));
    println!("last heartbeat   {}", ago(now, s.last_heartbeat_ms));
    println!("last beacon      {}", ago(now, s.last_beacon_ms));
    println!("last witness     {}", ago(now, s.last_witness_ms));
    println!(
        "device           gnss {}, radio {}, secure element {}",
        ok(s.health.gnss_ok),
        ok(s.health.radio_ok),
        ok(s.health.secure_element_ok)
    );
    println!("signed           {}", ago(now, Some(s.sent_ms)));
    println!(
        "backhaul         {}",
        backhaul_line(now, s.backhaul.as_ref(), None)
    );
    println!(
        "witnessed by     {} node(s) this epoch",
        s.witnessed_by.len()
    );
    if !r.witnesses.is_empty() {
        println!(
            "  {:<54} {:>9} {:>8} {:>10}",
            "witness", "rssi dBm", "snr dB", "freq MHz"
        );
        for w in &r.witnesses {
            println!(
                "  {:<54} {:>9.1} {:>8.1} {:>10.3}",
                w.peer, w.rssi_dbm, w.snr_db, w.freq_mhz
            );
        }
    }
}

/// A minimal HTTP/1.1 GET for the local status server (no TLS, no redirects).
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.take(4 * 1024 * 1024).read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or("no status line"));
    }
    Ok(body.to_string())
}

fn ago(now: u64, t: Option<u64>) -> String {
    t.map_or("never".into(), |t| {
        format!("{:.1} s ago", now.saturating_sub(t) as f64 / 1000.0)
    })
}

/// The latest bandwidth test as prover, in one line: rates, RTTs, outcome, who and when.
fn backhaul_line(
    now: u64,
    b: Option<&wisp_protocol::msg::BackhaulSummary>,
    error: Option<&str>,
) -> String {
    let Some(b) = b else {
        return "no test as prover yet".into();
    };
    let mbps = |bps: Option<u64>| bps.map_or("-".into(), |v| format!("{:.1}", v as f64 / 1e6));
    let ms = |us: Option<u32>| us.map_or("-".into(), |v| format!("{:.1}", f64::from(v) / 1e3));
    let mut outcome = wisp_agent::backhaul::outcome_name(b.outcome).to_string();
    if let Some(e) = error {
        outcome = format!("{outcome} ({e})");
    }
    format!(
        "{} down / {} up Mbit/s, rtt {} ms idle / {} ms loaded, {outcome}; measured by {}, epoch {}, {}",
        mbps(b.down_bps),
        mbps(b.up_bps),
        ms(b.rtt_idle_us),
        ms(b.rtt_loaded_us),
        b.measurer,
        b.epoch,
        ago(now, Some(b.measured_ms))
    )
}

fn print_status(s: &Status) {
    let now = wallclock::wall_ms();
    println!("peer id          {}", s.peer_id);
    println!(
        "versions         agent {}, firmware {}",
        s.agent_version, s.firmware_version
    );
    println!("uptime           {} s", s.uptime_s);
    println!(
        "epoch            {}",
        s.epoch.map_or("none yet".into(), |e| e.to_string())
    );
    println!(
        "location         {}",
        s.cell.clone().unwrap_or_else(|| "not set".into())
    );
    println!(
        "broker           {} ({})",
        s.broker,
        if s.broker_connected {
            "connected"
        } else {
            "DISCONNECTED"
        }
    );
    println!(
        "outbox           {} proofs, {} bytes, {} in flight, oldest {}",
        s.outbox_depth,
        s.outbox_bytes,
        s.outbox_in_flight,
        s.oldest_unacked_age_s
            .map_or("-".into(), |a| format!("{a:.1} s"))
    );
    println!("last ack         {}", ago(now, s.last_ack_ms));
    println!(
        "last heartbeat   {} (seq {})",
        ago(now, s.last_heartbeat_ms),
        s.heartbeat_seq
    );
    println!("last beacon      {}", ago(now, s.last_beacon_ms));
    println!("last witness     {}", ago(now, s.last_witness_ms));
    println!(
        "device           gnss {}, radio {}, secure element {}",
        check(s.device.checks.gnss),
        check(s.device.checks.radio),
        check(s.device.checks.secure_element)
    );
    println!(
        "backhaul         {}",
        backhaul_line(
            now,
            s.backhaul.as_ref().map(|b| &b.summary),
            s.backhaul.as_ref().and_then(|b| b.error.as_deref())
        )
    );
    println!("p2p peers        {}", s.p2p_peers);
    for a in &s.p2p_listen {
        println!("p2p listen       {a}");
    }
    println!(
        "witnessed by     {} node(s) this epoch",
        s.witnessed_by.len()
    );
    for w in &s.witnessed_by {
        println!(
            "  {:<54} {:>7.1} dBm {:>6.1} dB {:>10.3} MHz",
            w.peer, w.rssi_dbm, w.snr_db, w.freq_mhz
        );
    }
}

/// A flag of a peer's signed status: true only for a part whose last check passed.
fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "not ok (absent, failing or not checked yet)"
    }
}

/// A part's last check, from the local status.
fn check(c: wisp_agent::status::Check) -> &'static str {
    use wisp_agent::status::Check;
    match c {
        Check::Passed => "ok",
        Check::Failed => "failing",
        Check::NotChecked => "not checked yet",
    }
}
