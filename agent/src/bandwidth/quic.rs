//! The dedicated QUIC endpoint of the bandwidth test: a quinn endpoint apart from libp2p's,
//! tuned for throughput, with a fresh self-signed certificate per test that the prover pins
//! (a measurer keeps one endpoint on its fixed port and swaps the server configuration per
//! test: rebinding the port right after a test fails while the last connection drains).
//!
//! Tuning, all derived from [`Tuning`]:
//! - stream receive window = bandwidth-delay product of the configured maximum rate and RTT
//!   (at least quinn's 1.25 MB default), so flow control never limits the sender below that
//!   rate; connection window and send window one stream window plus 1 MiB (the control stream);
//! - path MTU discovery up to 1472-byte UDP payloads (a full Ethernet frame over IPv4);
//! - cubic congestion control (quinn's BBR is experimental);
//! - `SO_RCVBUF` / `SO_SNDBUF` raised before quinn takes the socket, with what the kernel
//!   granted reported back (Linux caps them at `net.core.rmem_max` / `wmem_max` and reports
//!   twice the value it keeps for bookkeeping).
//!
//! TLS uses rustls with the ring provider passed explicitly (never the process default, which
//! may be unset or aws-lc in a binary that also links libp2p).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls;
use quinn::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use quinn::rustls::crypto::CryptoProvider;
use quinn::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
};
use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig, TransportConfig, VarInt};
use sha2::{Digest, Sha256};

/// ALPN of the test endpoint.
pub const ALPN: &[u8] = b"wisp-bw/1";
/// The name in the self-signed certificate (never checked: the certificate is pinned).
const SERVER_NAME: &str = "wisp-bw";

/// What the endpoint is sized for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// The highest rate a test must reach, bits per second.
    pub max_rate_bps: u64,
    /// The highest round-trip time at that rate.
    pub max_rtt: Duration,
    /// Requested `SO_RCVBUF` and `SO_SNDBUF`, bytes.
    pub socket_buffer: usize,
}

impl Default for Tuning {
    /// 1 Gbit/s at 100 ms (12.5 MB windows), 8 MiB socket buffers.
    fn default() -> Self {
        Self {
            max_rate_bps: 1_000_000_000,
            max_rtt: Duration::from_millis(100),
            socket_buffer: 8 << 20,
        }
    }
}

impl Tuning {
    /// The bandwidth-delay product in bytes, at least quinn's default 1.25 MB window.
    pub fn bdp(&self) -> u64 {
        let bdp = u128::from(self.max_rate_bps) * self.max_rtt.as_micros() / 8_000_000;
        u64::try_from(bdp).unwrap_or(u64::MAX).max(1_250_000)
    }

    /// The transport settings for both ends.
    pub fn transport(&self) -> TransportConfig {
        let window = self.bdp().min(VarInt::MAX.into_inner());
        let conn_window = window.saturating_add(1 << 20).min(VarInt::MAX.into_inner());
        let mut t = TransportConfig::default();
        // Probe up to a full 1500-byte Ethernet MTU (IPv4): fewer packets and headers per
        // byte. Probes that are lost (smaller MTU, IPv6) just leave the size where it was.
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(1472);
        t.mtu_discovery_config(Some(mtu));
        t.stream_receive_window(VarInt::from_u64(window).unwrap_or(VarInt::MAX))
            .receive_window(VarInt::from_u64(conn_window).unwrap_or(VarInt::MAX))
            .send_window(conn_window)
            .max_concurrent_uni_streams(VarInt::from_u32(2))
            .max_concurrent_bidi_streams(VarInt::from_u32(1))
            .keep_alive_interval(Some(Duration::from_secs(1)))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(Duration::from_secs(10))
                    .unwrap_or_else(|_| unreachable!("10 s is a valid idle timeout")),
            ))
            .congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()));
        t
    }
}

/// The socket buffer sizes the kernel granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SocketBuffers {
    /// Requested size for both.
    pub requested: usize,
    /// `SO_RCVBUF` as read back.
    pub recv: usize,
    /// `SO_SNDBUF` as read back.
    pub send: usize,
}

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Socket creation, sizing or binding failed.
    #[error("udp socket on {addr}: {source}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The test's self-signed certificate could not be generated.
    #[error("tls setup: {0}")]
    Certificate(rcgen::Error),
    /// rustls refused the TLS configuration (protocol versions, certificate and key).
    #[error("tls setup: {0}")]
    Tls(rustls::Error),
    /// The TLS configuration has no cipher suite that QUIC can start a connection with.
    #[error("tls setup: {0}")]
    NoInitialCipherSuite(quinn::crypto::rustls::NoInitialCipherSuite),
}

/// A UDP socket with enlarged buffers, bound to `addr`, non-blocking (as quinn wants it).
pub fn udp_socket(
    addr: SocketAddr,
    size: usize,
) -> Result<(UdpSocket, SocketBuffers), EndpointError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| EndpointError::Socket { addr, source };
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    // Best effort: an unprivileged process gets at most rmem_max/wmem_max; we report what we got.
    let _ = s.set_recv_buffer_size(size);
    let _ = s.set_send_buffer_size(size);
    s.bind(&addr.into()).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    let bufs = SocketBuffers {
        requested: size,
        recv: s.recv_buffer_size().map_err(err)?,
        send: s.send_buffer_size().map_err(err)?,
    };
    Ok((s.into(), bufs))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server endpoint with a fresh self-signed certificate; returns it with the SHA-256 of the
/// certificate (for the request) and the socket buffers granted.
pub fn server(
    addr: SocketAddr,
    tuning: &Tuning,
) -> Result<(Endpoint, [u8; 32], SocketBuffers), EndpointError> {
    let (config, fingerprint) = server_config(tuning)?;
    let (endpoint, bufs) = server_endpoint(addr, tuning, config)?;
    Ok((endpoint, fingerprint, bufs))
}

/// A server endpoint bound to `addr` that accepts connections with `config`. A measurer keeps
/// one across tests and gives it each test's certificate with
/// [`Endpoint::set_server_config`].
pub fn server_endpoint(
    addr: SocketAddr,
    tuning: &Tuning,
    config: ServerConfig,
) -> Result<(Endpoint, SocketBuffers), EndpointError> {
    let (socket, bufs) = udp_socket(addr, tuning.socket_buffer)?;
    let endpoint = Endpoint::new(
        EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| EndpointError::Socket { addr, source })?;
    Ok((endpoint, bufs))
}

/// A server configuration with a fresh self-signed certificate, and the certificate's SHA-256
/// (which the prover pins).
pub fn server_config(tuning: &Tuning) -> Result<(ServerConfig, [u8; 32]), EndpointError> {
    let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .map_err(EndpointError::Certificate)?;
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let fingerprint: [u8; 32] = Sha256::digest(cert.as_ref()).into();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(EndpointError::Tls)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(EndpointError::Tls)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(crypto).map_err(EndpointError::NoInitialCipherSuite)?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport()));
    Ok((config, fingerprint))
}

/// A client endpoint bound to `bind`, and the client config that accepts only the certificate
/// whose SHA-256 is `pin`.
pub fn client(
    bind: SocketAddr,
    tuning: &Tuning,
    pin: [u8; 32],
) -> Result<(Endpoint, ClientConfig, SocketBuffers), EndpointError> {
    let p = provider();
    let mut crypto = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(EndpointError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { pin, provider: p }))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(crypto).map_err(EndpointError::NoInitialCipherSuite)?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport()));
    let (socket, bufs) = udp_socket(bind, tuning.socket_buffer)?;
    let endpoint = Endpoint::new(
        EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| EndpointError::Socket { addr: bind, source })?;
    Ok((endpoint, config, bufs))
}

/// The name the client asks for (the certificate is pinned, so it only has to be valid syntax).
pub fn server_name() -> &'static str {
    SERVER_NAME
}

/// Accepts exactly one certificate, by SHA-256 of its DER bytes; handshake signatures are still
/// checked, so the server must hold the certificate's key.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.2 is not offered (QUIC is TLS 1.3 only).
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_bandwidth_delay_product() {
        let t = Tuning {
            max_rate_bps: 1_000_000_000,
            max_rtt: Duration::from_millis(100),
            socket_buffer: 0,
        };
        assert_eq!(t.bdp(), 12_500_000);
        let small = Tuning {
            max_rate_bps: 10_000_000,
            max_rtt: Duration::from_millis(10),
            socket_buffer: 0,
        };
        assert_eq!(small.bdp(), 1_250_000, "never below quinn's default");
    }
}
