//! The embedded broker: rumqttd behind a front that knows who is who.
//!
//! rumqttd routes MQTT well but can only check a password at connect time; it has no topic
//! ACLs. So it listens on a loopback port of its own that only this process can log in to (a
//! random per-start password), and the front owns the public address:
//!
//! - **Login.** A node logs in as itself: username = peer id, password = its login token
//!   ([`wisp_protocol::login`], checked against the oracle key). A client without a login is a
//!   monitor ([`Client::Anonymous`]). A wrong login is refused (`CONNACK` 4).
//! - **Client ids.** A node's client id ends with its peer id (`wisp-agent-<id>`); ids that
//!   begin with `wisp-`, end with a peer id, or equal the oracle's own are nobody else's
//!   (`CONNACK` 2). No one can knock the oracle or a node off by connecting under its id.
//! - **ACLs.** Every `PUBLISH`, `SUBSCRIBE` and last will is checked with
//!   [`topics::may_publish`] / [`topics::may_subscribe`]: a node publishes only its own proofs
//!   and status and reads its own acks and the public topics; a monitor only reads. MQTT 3.1.1
//!   leaves a server two answers to a publish it does not allow, acknowledge it or close the
//!   connection (§3.3.5); the front closes it, as it does for a refused subscription.
//! - **Limits.** Frames above the payload limit close the connection; at most
//!   `max_connections_per_ip` connections per address; at most [`ONBOARD_BURST`] onboardings
//!   per connection, then one per [`ONBOARD_REFILL`].
//!
//! Everything else passes through untouched: the front parses only the client's packets, and
//! the broker's answers are copied back as they come. Each refusal counts in
//! `wisp_oracle_broker_refused_total{reason}`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Login, Publish, Subscribe};
use rumqttc::mqttbytes::{self, FixedHeader, PacketType, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error, info};
use wisp_protocol::topics::{self, Client};
use wisp_protocol::{Kind, NodeId, login};

use crate::metrics::FrontMetrics;

/// The username of this process's own connections to rumqttd.
pub const INTERNAL_USER: &str = "wisp-oracle-internal";

/// Onboardings one connection may send at once.
pub const ONBOARD_BURST: u32 = 8;

/// One more onboarding per connection after this long.
pub const ONBOARD_REFILL: Duration = Duration::from_secs(10);

/// How long a new connection has to send its `CONNECT`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from a socket at once, at most (per connection and direction: the front holds
/// about twice this for each idle client).
const READ_CHUNK: usize = 8 * 1024;

/// Segments of rumqttd's in-memory log per subscription filter.
const SEGMENTS: usize = 4;

/// What the front needs to know.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// The public address clients connect to.
    pub listen: SocketAddr,
    /// Largest payload, bytes.
    pub max_payload: usize,
    /// The oracle's key: login tokens are signed for it.
    pub oracle: NodeId,
    /// The oracle's own client id, which no client may take.
    pub oracle_client_id: String,
    /// Connections from one IP address at once.
    pub max_connections_per_ip: usize,
}

/// The running embedded broker: where this process itself connects, and how.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// rumqttd's own loopback address.
    pub internal: SocketAddr,
    /// The password of [`INTERNAL_USER`] there.
    pub password: String,
}

/// Starts rumqttd on a loopback port of its own and the front on `cfg.listen`.
pub async fn start(cfg: FrontConfig, metrics: FrontMetrics) -> anyhow::Result<Embedded> {
    let public = listen(cfg.listen).with_context(|| {
        format!("cannot listen on {} for the embedded MQTT broker: is another broker running there? Set broker.listen, or broker.url to use that broker", cfg.listen)
    })?;
    let internal = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no loopback port for the embedded broker")?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("OS random: {e}"))?;
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    start_rumqttd(internal, cfg.max_payload, &password)?;
    let ctx = Arc::new(Ctx {
        cfg,
        internal,
        password: password.clone(),
        metrics,
        per_ip: Mutex::new(HashMap::new()),
        last_log: Mutex::new(None),
    });
    info!(addr = %ctx.cfg.listen, "embedded MQTT broker listening");
    tokio::spawn(async move {
        loop {
            match public.accept().await {
                Ok((stream, peer)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move { serve(stream, peer, ctx).await });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    error!("embedded broker: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(Embedded { internal, password })
}

/// A listener with room for a burst of connections: a network whose agents all reconnect at
/// once (the oracle restarted) would overflow the usual backlog of 1,024, and each dropped SYN
/// costs its agent a second or more (the kernel caps it at `net.core.somaxconn`).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

fn start_rumqttd(addr: SocketAddr, max_payload: usize, password: &str) -> anyhow::Result<()> {
    // The router keeps, per subscription filter (one for all proofs), a log of the latest
    // publishes in memory, whether or not they were delivered: `max_segment_count` segments of
    // `max_segment_size` (each may overflow by one packet). A subscriber that falls further
    // behind skips ahead, and the publishes it skipped are lost to it although the broker
    // acknowledged them: their agents resend them only after the ack timeout. So the log holds
    // a burst of every node publishing at once (2,000 logged-in nodes × 25 heartbeats, 15 MiB,
    // in `oracle/benches/ingest.rs`: with 1 MiB segments the oracle fell behind and skipped),
    // and stays bounded under a flood of large payloads: 16 MiB segments, or 4 payloads.
    let segment = (4 * max_payload).max(16 << 20);
    let cfg = format!(
        "id = 0\n[router]\nid = 0\nmax_connections = 100000\nmax_outgoing_packet_count = 1000\nmax_segment_size = {segment}\nmax_segment_count = {SEGMENTS}\n\
         [v4.1]\nname = \"v4\"\nlisten = \"{addr}\"\nnext_connection_delay_ms = 0\n\
         [v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = {max_payload}\nmax_inflight_count = 1000\ndynamic_filters = true\n\
         [v4.1.connections.auth]\n{INTERNAL_USER} = \"{password}\"\n"
    );
    let config: rumqttd::Config = toml::from_str(&cfg).context("embedded broker configuration")?;
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = rumqttd::Broker::new(config).start() {
                error!("embedded broker stopped: {e}");
            }
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("the embedded broker did not start on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

struct Ctx {
    cfg: FrontConfig,
    internal: SocketAddr,
    password: String,
    metrics: FrontMetrics,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// When a refusal was last logged (at most one line a second).
    last_log: Mutex<Option<Instant>>,
}

impl Ctx {
    /// Counts and (rate-limited) logs a refusal.
    fn refuse(&self, reason: &'static str, peer: SocketAddr, detail: &str) {
        self.metrics.refuse(reason);
        let now = Instant::now();
        let log = self.last_log.lock().is_ok_and(|mut l| {
            let due = l.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if due {
                *l = Some(now);
            }
            due
        });
        if log {
            info!(%peer, reason, "embedded broker refused a client: {detail}");
        } else {
            debug!(%peer, reason, "embedded broker refused a client: {detail}");
        }
    }
}

/// A connection slot of one IP address, given back on drop.
struct Slot<'a> {
    ctx: &'a Ctx,
    ip: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.ctx.metrics.connections.dec();
        if let Ok(mut m) = self.ctx.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

fn admit(ctx: &Ctx, ip: IpAddr) -> Option<Slot<'_>> {
    let mut m = ctx.per_ip.lock().ok()?;
    let n = m.entry(ip).or_insert(0);
    if *n >= ctx.cfg.max_connections_per_ip {
        return None;
    }
    *n += 1;
    ctx.metrics.connections.inc();
    Some(Slot { ctx, ip })
}

/// Reads one whole MQTT frame, or `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(FixedHeader, Bytes)>, mqttbytes::Error> {
    loop {
        if let Some(frame) = take_frame(buf, max)? {
            return Ok(Some(frame));
        }
        buf.reserve(4096);
        if rd.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// The first whole MQTT frame in `buf`, split off it, or `None` until more bytes come.
fn take_frame(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(FixedHeader, Bytes)>, mqttbytes::Error> {
    match mqttbytes::check(buf.iter(), max) {
        Ok(h) => Ok(Some((h, buf.split_to(h.frame_length()).freeze()))),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Who a `CONNECT` logs in as, or the return code that refuses it and why.
fn identify(
    connect: &Connect,
    cfg: &FrontConfig,
) -> Result<Client, (ConnectReturnCode, &'static str, String)> {
    if connect.protocol != Protocol::V4 {
        return Err((
            ConnectReturnCode::RefusedProtocolVersion,
            "protocol",
            "only MQTT 3.1.1 is served".into(),
        ));
    }
    let client = match &connect.login {
        Some(l) => match login::check(&l.username, &l.password, &cfg.oracle) {
            Ok(node) => Client::Node(node),
            Err(e) => {
                return Err((
                    ConnectReturnCode::BadUserNamePassword,
                    "login",
                    format!("user `{}`: {e}", l.username),
                ));
            }
        },
        None => Client::Anonymous,
    };
    let id = connect.client_id.as_str();
    let owner: Option<NodeId> = id.rsplit('-').next().and_then(|last| last.parse().ok());
    let allowed = match client {
        Client::Node(node) => owner == Some(node),
        Client::Anonymous => {
            owner.is_none() && !id.starts_with("wisp-") && id != cfg.oracle_client_id
        }
        Client::Oracle => true,
    };
    if !allowed {
        return Err((
            ConnectReturnCode::BadClientId,
            "client_id",
            format!("client id `{id}` is not this client's to use"),
        ));
    }
    if let Some(will) = &connect.last_will
        && !topics::may_publish(&client, &will.topic)
    {
        return Err((
            ConnectReturnCode::NotAuthorized,
            "will",
            format!("last will on `{}` not allowed", will.topic),
        ));
    }
    Ok(client)
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let Some(_slot) = admit(&ctx, peer.ip()) else {
        ctx.refuse(
            "connections_per_ip",
            peer,
            &format!(
                "more than {} connections from one address",
                ctx.cfg.max_connections_per_ip
            ),
        );
        return;
    };
    let _ = stream.set_nodelay(true);
    let max = ctx.cfg.max_payload + 4096;
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut stream, &mut buf, max)).await;
    let Ok(Ok(Some((header, frame)))) = first else {
        ctx.refuse("connect", peer, "no CONNECT in time");
        return;
    };
    if header.packet_type().ok() != Some(PacketType::Connect) {
        ctx.refuse("connect", peer, "the first packet was not CONNECT");
        return;
    }
    let mut connect = match Connect::read(header, frame) {
        Ok(c) => c,
        Err(mqttbytes::Error::InvalidProtocolLevel(_)) => {
            let _ = refuse_connect(&mut stream, ConnectReturnCode::RefusedProtocolVersion).await;
            ctx.refuse("protocol", peer, "only MQTT 3.1.1 is served");
            return;
        }
        Err(e) => {
            ctx.refuse("connect", peer, &format!("malformed CONNECT: {e}"));
            return;
        }
    };
    let client = match identify(&connect, &ctx.cfg) {
        Ok(c) => c,
        Err((code, reason, detail)) => {
            let _ = refuse_connect(&mut stream, code).await;
            ctx.refuse(reason, peer, &detail);
            return;
        }
    };
    let Ok(mut upstream) = TcpStream::connect(ctx.internal).await else {
        let _ = refuse_connect(&mut stream, ConnectReturnCode::ServiceUnavailable).await;
        ctx.refuse("unavailable", peer, "the broker does not answer");
        return;
    };
    let _ = upstream.set_nodelay(true);
    connect.login = Some(Login::new(INTERNAL_USER, ctx.password.clone()));
    let mut out = BytesMut::new();
    if connect.write(&mut out).is_err() || upstream.write_all(&out).await.is_err() {
        return;
    }
    let (up_rd, mut up_wr) = upstream.into_split();
    let (mut rd, mut wr) = stream.into_split();
    // The broker's answers, copied back as they come.
    let down = async move {
        let mut up_rd = tokio::io::BufReader::with_capacity(READ_CHUNK, up_rd);
        let _ = tokio::io::copy_buf(&mut up_rd, &mut wr).await;
    };
    // The client's packets, each checked before it goes on: every whole frame a read brought,
    // then one write for all that passed.
    let up = async {
        let mut onboard = Bucket::new(Instant::now());
        let own = Own::of(&client);
        let mut out = BytesMut::new();
        loop {
            let refused = loop {
                match take_frame(&mut buf, max) {
                    Ok(Some((header, frame))) => {
                        if let Err(why) = check(&client, own.as_ref(), header, &frame, &mut onboard)
                        {
                            break Some(why);
                        }
                        out.extend_from_slice(&frame);
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(("frame", e.to_string())),
                }
            };
            // What passed before a refusal still goes on, as it would have one frame at a time.
            if !out.is_empty() {
                if up_wr.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            if let Some((reason, detail)) = refused {
                ctx.refuse(reason, peer, &detail);
                return;
            }
            buf.reserve(READ_CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = down => {}
        () = up => {}
    }
}

async fn refuse_connect(stream: &mut TcpStream, code: ConnectReturnCode) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(code, false).write(&mut out);
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// A token bucket of onboardings for one connection.
struct Bucket {
    tokens: u32,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            tokens: ONBOARD_BURST,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_millis() / ONBOARD_REFILL.as_millis();
        if refill > 0 {
            let refill = u32::try_from(refill).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(refill).min(ONBOARD_BURST);
            self.at = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The topics a node publishes on, written once per connection: a publish's topic is compared
/// with them as a string, not read from base58 into a node id each time (a node id has one
/// spelling, so the two agree; anything else still goes through [`topics::may_publish`]).
struct Own {
    proofs: String,
    status: String,
}

impl Own {
    fn of(client: &Client) -> Option<Self> {
        match client {
            Client::Node(node) => Some(Self {
                proofs: topics::proofs(node),
                status: topics::status(node),
            }),
            Client::Oracle | Client::Anonymous => None,
        }
    }

    fn may_publish(own: Option<&Self>, client: &Client, topic: &str) -> bool {
        own.is_some_and(|o| topic == o.proofs || topic == o.status)
            || topics::may_publish(client, topic)
    }
}

/// Whether one of the client's packets may go on, or why not.
fn check(
    client: &Client,
    own: Option<&Own>,
    header: FixedHeader,
    frame: &Bytes,
    onboard: &mut Bucket,
) -> Result<(), (&'static str, String)> {
    match header.packet_type() {
        Ok(PacketType::Publish) => {
            let p = Publish::read(header, frame.clone())
                .map_err(|e| ("frame", format!("malformed PUBLISH: {e}")))?;
            if !Own::may_publish(own, client, &p.topic) {
                return Err(("publish", format!("publish on `{}` not allowed", p.topic)));
            }
            if matches!(client, Client::Node(_))
                && p.payload.get(1) == Some(&(Kind::Onboard as u8))
                && !onboard.take(Instant::now())
            {
                return Err((
                    "onboard_rate",
                    format!(
                        "more than {ONBOARD_BURST} onboardings on one connection, or one per {} s",
                        ONBOARD_REFILL.as_secs()
                    ),
                ));
            }
            Ok(())
        }
        Ok(PacketType::Subscribe) => {
            let s = Subscribe::read(header, frame.clone())
                .map_err(|e| ("frame", format!("malformed SUBSCRIBE: {e}")))?;
            match s
                .filters
                .iter()
                .find(|f| !topics::may_subscribe(client, &f.path))
            {
                Some(f) => Err((
                    "subscribe",
                    format!("subscription to `{}` not allowed", f.path),
                )),
                None => Ok(()),
            }
        }
        Ok(PacketType::Connect) => Err(("connect", "a second CONNECT".into())),
        Ok(
            PacketType::PubAck
            | PacketType::PubRec
            | PacketType::PubRel
            | PacketType::PubComp
            | PacketType::Unsubscribe
            | PacketType::PingReq
            | PacketType::Disconnect,
        ) => Ok(()),
        Ok(t) => Err(("frame", format!("a client does not send {t:?}"))),
        Err(e) => Err(("frame", e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::NodeKey;
    use wisp_protocol::id::NodeId;

    fn cfg() -> FrontConfig {
        FrontConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_payload: 1 << 16,
            oracle: NodeKey::from_seed(&[9; 32]).id(),
            oracle_client_id: "oracle-a".into(),
            max_connections_per_ip: 4,
        }
    }

    fn connect(id: &str, login: Option<(String, String)>) -> Connect {
        let mut c = Connect::new(id);
        if let Some((u, p)) = login {
            c.set_login(u, p);
        }
        c
    }

    #[test]
    fn client_ids_belong_to_their_nodes_and_the_oracle() {
        let cfg = cfg();
        let key = NodeKey::from_seed(&[1; 32]);
        let other: NodeId = NodeKey::from_seed(&[2; 32]).id();
        let me = || Some((key.id().to_string(), login::password(&key, &cfg.oracle)));
        let code = |c: &Connect| identify(c, &cfg).map_err(|e| e.0);
        assert_eq!(
            code(&connect(&format!("wisp-agent-{}", key.id()), me())),
            Ok(Client::Node(key.id()))
        );
        assert_eq!(
            code(&connect(&key.id().to_string(), me())),
            Ok(Client::Node(key.id()))
        );
        assert_eq!(code(&connect("monitor-1", None)), Ok(Client::Anonymous));
        for taken in [
            format!("wisp-agent-{other}"),
            format!("x-{}", key.id()),
            other.to_string(),
            "wisp-oracle".into(),
            "oracle-a".into(),
        ] {
            assert_eq!(
                code(&connect(&taken, None)),
                Err(ConnectReturnCode::BadClientId),
                "{taken}"
            );
        }
        assert_eq!(
            code(&connect(&format!("wisp-agent-{other}"), me())),
            Err(ConnectReturnCode::BadClientId)
        );
        let wrong = Some((other.to_string(), login::password(&key, &cfg.oracle)));
        assert_eq!(
            code(&connect("x", wrong)),
            Err(ConnectReturnCode::BadUserNamePassword)
        );
        let mut willing = connect("monitor-2", None);
        willing.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
            topics::EPOCH,
            "x",
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            true,
        ));
        assert_eq!(code(&willing), Err(ConnectReturnCode::NotAuthorized));
    }

    #[test]
    fn onboardings_per_connection_are_a_bucket() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0);
        for _ in 0..ONBOARD_BURST {
            assert!(b.take(t0));
        }
        assert!(!b.take(t0));
        assert!(!b.take(t0 + ONBOARD_REFILL / 2));
        assert!(b.take(t0 + ONBOARD_REFILL));
        assert!(!b.take(t0 + ONBOARD_REFILL));
        assert!(b.take(t0 + ONBOARD_REFILL * 100));
    }

    #[test]
    fn a_node_publishes_on_its_own_topics_only_compared_as_strings_or_read() {
        let me = NodeKey::from_seed(&[1; 32]).id();
        let other = NodeKey::from_seed(&[2; 32]).id();
        let client = Client::Node(me);
        let own = Own::of(&client);
        let may = |topic: &str| Own::may_publish(own.as_ref(), &client, topic);
        assert!(may(&topics::proofs(&me)));
        assert!(may(&topics::status(&me)));
        for refused in [
            topics::proofs(&other),
            topics::status(&other),
            topics::acks(&me),
            topics::EPOCH.to_string(),
            format!("{}/x", topics::proofs(&me)),
            format!("wisp/v1/proofs/1{me}"),
            "wisp/v1/proofs/".to_string(),
        ] {
            assert!(!may(&refused), "{refused}");
        }
        // A monitor holds no own topics and publishes nothing; the oracle publishes anywhere.
        assert!(Own::of(&Client::Anonymous).is_none());
        assert!(!Own::may_publish(
            None,
            &Client::Anonymous,
            &topics::proofs(&me)
        ));
        assert!(Own::may_publish(None, &Client::Oracle, topics::EPOCH));
    }
}
