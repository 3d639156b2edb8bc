//! Interoperability with OpenSSL: our key files are standard PKCS#8 Ed25519 keys and our
//! envelope signatures are plain RFC 8032 Ed25519 over `domain_tag || payload`, so an operator
//! can inspect, generate and check them with the `openssl` CLI (OpenSSL 3, `pkeyutl -rawin`).
//!
//! These tests need the `openssl` binary. Without it they fail, saying what to install: a
//! silently skipped interop test would prove nothing.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{self, Envelope, encode_payload, signed_bytes};
use wisp_protocol::msg::{GnssFix, Heartbeat, Versions};
use wisp_protocol::{Cell, Kind, NodeKey};
use wisp_shell::keyfile;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the raw 32-byte key.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Runs `openssl` with `args` in `dir`. Panics if the binary is missing.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("openssl CLI not found: install the Debian package `openssl`")
        }
        Err(e) => panic!("running openssl {args:?}: {e}"),
    }
}

/// Runs `openssl` and requires success.
fn openssl_ok(dir: &Path, args: &[&str]) -> Output {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The raw 32-byte public key of the PEM key file `key` (private or, with `pubin`, public),
/// read from OpenSSL's DER SubjectPublicKeyInfo.
fn openssl_raw_public_key(dir: &Path, key: &str, pubin: bool) -> [u8; 32] {
    let mut args = vec!["pkey"];
    if pubin {
        args.push("-pubin");
    } else {
        args.push("-pubout");
    }
    args.extend(["-in", key, "-outform", "DER", "-out", "pub.der"]);
    openssl_ok(dir, &args);
    let der = fs::read(dir.join("pub.der")).expect("openssl wrote pub.der");
    assert_eq!(
        der.len(),
        44,
        "Ed25519 SPKI is 44 bytes: {}",
        hex::encode(&der)
    );
    assert_eq!(
        der[..12],
        SPKI_ED25519_PREFIX,
        "not an Ed25519 SPKI: {}",
        hex::encode(&der)
    );
    der[12..].try_into().expect("44 - 12 = 32 bytes")
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        epoch: 7,
        seq: 42,
        uptime_s: 86_400,
        sent_ms: 1_790_000_000_000,
        fix: Some(GnssFix {
            lat_e7: 488_530_000,
            lon_e7: 23_499_000,
            alt_mm: 35_200,
            hdop_centi: 92,
            satellites: 11,
            utc_ms: 1_790_000_000_000,
        }),
        cell: Some(Cell::from_degrees(48.8530, 2.3499, 12).expect("valid coordinates")),
        versions: Versions::new("0.1.0", "openwrt-23.05"),
        peers: 12,
    }
}

/// Our key file and our signatures, checked by OpenSSL.
#[test]
fn openssl_reads_our_key_file_and_verifies_our_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = NodeKey::from_seed(&[0x2b; 32]);
    keyfile::save_new(&d.join("key.pem"), &key).unwrap();

    // OpenSSL parses the key file and derives the same public key: our NodeId.
    openssl_ok(d, &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    assert_eq!(openssl_raw_public_key(d, "pub.pem", true), key.id().0);

    // The exact bytes a real envelope's signature covers.
    let env = Envelope::sign(&key, &heartbeat());
    let msg = signed_bytes(env.kind, &env.payload);
    assert!(msg.starts_with(b"wisp/v1/heartbeat\0"));
    let sig = key.sign_raw(&msg);
    assert_eq!(
        sig, env.signature.0,
        "Envelope::sign signs domain_tag || payload"
    );
    fs::write(d.join("msg.bin"), &msg).unwrap();
    fs::write(d.join("sig.bin"), sig).unwrap();
    let verify = [
        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg.bin",
        "-sigfile", "sig.bin",
    ];
    let out = openssl_ok(d, &verify);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"),
        "{out:?}"
    );

    // Ed25519 is deterministic: OpenSSL signing with our key file gives our signature.
    openssl_ok(
        d,
        &[
            "pkeyutl",
            "-sign",
            "-inkey",
            "key.pem",
            "-rawin",
            "-in",
            "msg.bin",
            "-out",
            "openssl.sig",
        ],
    );
    assert_eq!(fs::read(d.join("openssl.sig")).unwrap(), sig);

    // One flipped bit, in R or in s, and OpenSSL refuses the signature.
    for (byte, bit) in [(0, 0), (31, 7), (32, 0), (63, 3)] {
        let mut bad = sig;
        bad[byte] ^= 1 << bit;
        fs::write(d.join("sig.bin"), bad).unwrap();
        let out = openssl(d, &verify);
        assert!(
            !out.status.success(),
            "openssl accepted a signature with byte {byte} bit {bit} flipped"
        );
    }
}

/// A key OpenSSL generated, and a signature OpenSSL made, accepted as a wisp envelope.
#[test]
fn openssl_generated_key_and_signature_open_as_an_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ok(d, &["genpkey", "-algorithm", "ed25519", "-out", "k.pem"]);
    fs::set_permissions(d.join("k.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    let key = keyfile::load(&d.join("k.pem")).unwrap();
    assert_eq!(openssl_raw_public_key(d, "k.pem", false), key.id().0);

    // OpenSSL signs domain_tag || payload; the envelope is assembled by hand around it.
    let hb = heartbeat();
    let payload = encode_payload(&hb);
    fs::write(d.join("msg.bin"), signed_bytes(Kind::Heartbeat, &payload)).unwrap();
    openssl_ok(
        d,
        &[
            "pkeyutl", "-sign", "-inkey", "k.pem", "-rawin", "-in", "msg.bin", "-out", "sig.bin",
        ],
    );
    let sig: [u8; 64] = fs::read(d.join("sig.bin")).unwrap().try_into().unwrap();
    let env = Envelope {
        version: wisp_protocol::VERSION,
        kind: Kind::Heartbeat,
        payload,
        signer: key.id(),
        signature: ByteArray(sig),
        cosigners: vec![],
    };
    let bytes = env.to_bytes();
    let opened = envelope::open::<Heartbeat>(&bytes).unwrap();
    assert_eq!(opened.msg, hb);
    assert_eq!(opened.signer, key.id());
    // The same bytes we would have produced ourselves with the loaded key.
    assert_eq!(bytes, Envelope::sign(&key, &hb).to_bytes());

    // The same signature under another kind's domain tag is refused.
    let mut other = bytes.clone();
    other[1] = Kind::StatusReport.as_u8();
    assert!(
        envelope::EnvelopeRef::parse(&other)
            .and_then(|e| e.verify())
            .is_err()
    );
}
