//! The NMEA parser against recorded receiver logs and the damage real serial links do.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use wisp_firmware::gnss::{Date, Error, Fix, Gnss, NmeaParser, PositionSource, UtcTime};

fn log(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/nmea/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn all_fixes(
    parser: &mut NmeaParser,
    chunks: impl IntoIterator<Item = impl AsRef<[u8]>>,
) -> Vec<Fix> {
    let mut fixes = Vec::new();
    for chunk in chunks {
        parser.push_each(chunk.as_ref(), |f| fixes.push(f));
    }
    fixes.extend(parser.flush());
    fixes
}

/// xorshift64*: a seeded, dependency-free source of chunk sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn chunked(data: &[u8], seed: u64, max_chunk: u64) -> Vec<&[u8]> {
    let mut rng = Rng(seed);
    let mut rest = data;
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        let n = usize::try_from(rng.next() % max_chunk + 1)
            .unwrap()
            .min(rest.len());
        let (a, b) = rest.split_at(n);
        chunks.push(a);
        rest = b;
    }
    chunks
}

const DATE: Date = Date {
    year: 2017,
    month: 3,
    day: 31,
};

#[test]
fn recorded_log_gives_the_same_fixes_in_any_chunking() {
    let data = log("nmea1.log");
    let mut whole = NmeaParser::new();
    let reference = all_fixes(&mut whole, [&data]);
    // Counted independently from the file: GGA lines with quality 2 and every field present,
    // whose RMC of the same second says A.
    assert_eq!(reference.len(), 993);
    let stats = whole.stats();
    assert_eq!(stats.fixes, 993);
    assert_eq!(stats.sentences_ok, 2 * 1_307, "every GGA and RMC");
    assert_eq!(stats.unsupported, 14_255 - 2 * 1_307, "GSV, GSA, VTG");
    assert_eq!(
        (stats.checksum_errors, stats.overlong, stats.malformed),
        (0, 0, 0)
    );

    for seed in [1, 2, 0xDEAD_BEEF, 0x005E_ED0F_F1C5] {
        for max_chunk in [1, 7, 64, 4_096] {
            let mut p = NmeaParser::new();
            let got = all_fixes(&mut p, chunked(&data, seed, max_chunk));
            assert_eq!(got, reference, "seed {seed:#x}, chunks up to {max_chunk}");
            assert_eq!(p.stats(), stats, "seed {seed:#x}, chunks up to {max_chunk}");
        }
    }
}

#[test]
fn first_and_last_fix_match_hand_decoded_sentences() {
    let mut p = NmeaParser::new();
    let fixes = all_fixes(&mut p, [log("nmea1.log")]);
    // $GPRMC,110124,A,5505.330990,N,03858.587325,E,152.6,86.2,310317,8.9,E,D*2E
    // $GPGGA,110124,5505.330990,N,03858.587325,E,2,09,0.9,2177.0,M,14.0,M,,*7D
    // 55° 5.330990' = 55.0888498333°, 38° 58.587325' = 38.9764554167°.
    assert_eq!(
        fixes[0],
        Fix {
            lat_e7: 550_888_498,
            lon_e7: 389_764_554,
            alt_mm: 2_177_000,
            hdop_centi: 90,
            satellites: 9,
            utc: UtcTime {
                date: Some(DATE),
                time_ms: (11 * 3_600 + 60 + 24) * 1_000,
            },
        }
    );
    // $GPGGA,111907,5505.398228,N,03855.051282,E,2,14,1.7,115.0,M,14.0,M,,
    // 55° 5.398228' = 55.0899704667°, 38° 55.051282' = 38.9175213667°.
    let last = fixes.last().copied();
    assert_eq!(
        last,
        Some(Fix {
            lat_e7: 550_899_705,
            lon_e7: 389_175_214,
            alt_mm: 115_000,
            hdop_centi: 170,
            satellites: 14,
            utc: UtcTime {
                date: Some(DATE),
                time_ms: (11 * 3_600 + 19 * 60 + 7) * 1_000,
            },
        })
    );
    // The recording ends after the receiver lost its fix ($GPRMC,,V / $GPGGA,,,,,,0).
    assert_eq!(p.current_fix(), None);
    assert_eq!(
        last.and_then(|f| f.utc.unix_ms()),
        Some(1_490_959_147_000),
        "2017-03-31T11:19:07Z"
    );
}

#[test]
fn log_without_fix_yields_none() {
    let mut p = NmeaParser::new();
    let fixes = all_fixes(&mut p, [log("nmea2.log")]);
    assert_eq!(fixes, []);
    assert_eq!(p.current_fix(), None);
    let stats = p.stats();
    assert_eq!(stats.sentences_ok, 2, "two no-fix GNGGA");
    assert_eq!(stats.unsupported, 34);
    assert_eq!(stats.fixes, 0);
}

const GGA: &str = "$GPGGA,110124,5505.330990,N,03858.587325,E,2,09,0.9,2177.0,M,14.0,M,,*7D\r\n";
const RMC: &str = "$GPRMC,110124,A,5505.330990,N,03858.587325,E,152.6,86.2,310317,8.9,E,D*2E\r\n";
const GGA_NEXT: &str =
    "$GPGGA,110125,5505.337580,N,03858.653666,E,2,09,0.9,2177.0,M,14.0,M,,*7E\r\n";

fn run(input: &[u8]) -> (Vec<Fix>, NmeaParser) {
    let mut p = NmeaParser::new();
    let fixes = all_fixes(&mut p, [input]);
    (fixes, p)
}

fn good_pair_fix() -> Fix {
    run(format!("{RMC}{GGA}").as_bytes()).0[0]
}

#[test]
fn bad_checksum_is_counted_and_skipped() {
    let corrupted = GGA.replace("2177.0", "2178.0");
    let (fixes, p) = run(format!("{RMC}{corrupted}{RMC}{GGA}").as_bytes());
    assert_eq!(fixes, [good_pair_fix()]);
    assert_eq!(p.stats().checksum_errors, 1);
    // The RMC before the corrupted GGA waited for its partner and got it from the good GGA.
    assert_eq!(p.stats().sentences_ok, 3);
}

#[test]
fn truncated_line_is_dropped_at_the_next_dollar() {
    let cut = &GGA[..30];
    let (fixes, p) = run(format!("{cut}{RMC}{GGA}").as_bytes());
    assert_eq!(fixes, [good_pair_fix()]);
    assert_eq!(p.stats().malformed, 1);

    let (fixes, p) = run(format!("{RMC}{}\r\n", &GGA[..40]).as_bytes());
    assert_eq!(fixes, [], "no checksum, no fix");
    assert_eq!(p.stats().malformed, 1);
}

#[test]
fn binary_noise_between_sentences_is_ignored() {
    // A UBX NAV-PVT header and payload bytes, including CR, LF and '$' (0x24) inside.
    let noise: Vec<u8> = [
        0xB5, 0x62, 0x01, 0x07, 0x5C, 0x00, 0x24, 0x0D, 0x0A, 0xFF, 0x00, 0x24, 0x47, 0x80,
    ]
    .into_iter()
    .chain((0u8..=255).rev())
    .collect();
    let mut input = noise.clone();
    input.extend_from_slice(RMC.as_bytes());
    input.extend_from_slice(&noise);
    input.extend_from_slice(GGA.as_bytes());
    input.extend_from_slice(&noise);
    let (fixes, p) = run(&input);
    assert_eq!(fixes, [good_pair_fix()]);
    assert_eq!(p.stats().sentences_ok, 2);
    assert_eq!(p.stats().checksum_errors, 0);
}

#[test]
fn overlong_line_is_dropped_and_counted() {
    // 81 characters before CR LF: one too many.
    let long = format!("$GPTXT,{}*00\r\n", "x".repeat(71));
    assert_eq!(long.len(), 83);
    let (fixes, p) = run(format!("{RMC}{long}{GGA}").as_bytes());
    assert_eq!(fixes, [good_pair_fix()]);
    assert_eq!(p.stats().overlong, 1);
    // Exactly 82 with CR LF is allowed (here: an unsupported TXT with a bad checksum).
    let max = format!("$GPTXT,{}*00\r\n", "x".repeat(70));
    assert_eq!(max.len(), 82);
    let (_, p) = run(max.as_bytes());
    assert_eq!((p.stats().overlong, p.stats().checksum_errors), (0, 1));
}

fn with_checksum(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n")
}

#[test]
fn missing_fields_mean_no_fix() {
    let fix = good_pair_fix();
    let cases = [
        // Quality 2 but no latitude.
        (
            "GPGGA,110125,,N,03858.587325,E,2,09,0.9,2177.0,M,14.0,M,,",
            1,
            0,
        ),
        // No HDOP.
        (
            "GPGGA,110125,5505.330990,N,03858.587325,E,2,09,,2177.0,M,14.0,M,,",
            1,
            0,
        ),
        // Quality 0 (receiver's explicit no-fix), and 6 (dead reckoning).
        (
            "GPGGA,110125,5505.330990,N,03858.587325,E,0,09,0.9,2177.0,M,14.0,M,,",
            1,
            0,
        ),
        (
            "GPGGA,110125,5505.330990,N,03858.587325,E,6,09,0.9,2177.0,M,14.0,M,,",
            1,
            0,
        ),
        // Empty time, as real receivers send before they know it.
        ("GPGGA,,,,,,0,,,,,,,,", 1, 0),
        ("GPRMC,,V,,,,,,,,,,N", 1, 0),
    ];
    for (body, ok, malformed) in cases {
        let line = with_checksum(body);
        let (fixes, p) = run(format!("{RMC}{GGA}{line}").as_bytes());
        assert_eq!(fixes, [fix], "{body}");
        assert_eq!(p.current_fix(), None, "fix lost after {body}");
        assert_eq!(p.stats().sentences_ok, 2 + ok, "{body}");
        assert_eq!(p.stats().malformed, malformed, "{body}");
    }
    let malformed = [
        "GPGGA,110125,5505.330990,N", // too few fields
        "GPGGA,1101,5505.330990,N,03858.587325,E,2,09,0.9,2177.0,M,,M,,", // bad time
        "GPGGA,110125,5505.330990,X,03858.587325,E,2,09,0.9,2177.0,M,,M,,", // bad hemisphere
        "GPGGA,110125,5505.330990,N,03858.587325,E,2,300,0.9,2177.0,M,,M,,", // 300 satellites
        "GPGGA,,5505.330990,N,03858.587325,E,2,09,0.9,2177.0,M,,M,,", // fix without time
        "GPRMC,110125,A,5505.330990,N,03858.587325,E,0,0,311317,,,A", // month 13
    ];
    for body in malformed {
        let (_, p) = run(with_checksum(body).as_bytes());
        assert_eq!(p.stats().malformed, 1, "{body}");
        assert_eq!(p.stats().sentences_ok, 0, "{body}");
    }
}

#[test]
fn rmc_void_vetoes_the_gga_of_its_second() {
    let void = with_checksum("GPRMC,110124,V,5505.330990,N,03858.587325,E,0,0,310317,,,N");
    let (fixes, p) = run(format!("{GGA}{void}").as_bytes());
    assert_eq!(fixes, []);
    assert_eq!(p.current_fix(), None);
}

#[test]
fn gga_alone_is_emitted_at_the_next_second_without_date() {
    let mut p = NmeaParser::new();
    assert_eq!(p.push(GGA.as_bytes()), None, "might still get an RMC");
    let first = p.push(GGA_NEXT.as_bytes()).unwrap();
    assert_eq!(
        first.utc,
        UtcTime {
            date: None,
            time_ms: 39_684_000
        }
    );
    assert_eq!(first.lat_e7, 550_888_498);
    let second = p.flush().unwrap();
    assert_eq!(second.utc.time_ms, 39_685_000);
    assert_eq!(p.current_fix(), Some(second));
    assert_eq!(p.flush(), None);
}

#[test]
fn talkers_are_interchangeable() {
    let mut p = NmeaParser::new();
    let gn_rmc = with_checksum(&RMC[1..RMC.len() - 5].replacen("GP", "GN", 1));
    let gl_gga = with_checksum(&GGA[1..GGA.len() - 5].replacen("GP", "GL", 1));
    let fix = p.push(format!("{gn_rmc}{gl_gga}").as_bytes());
    assert_eq!(fix, Some(good_pair_fix()));
    // Proprietary sentences ($P…) are not talker sentences.
    p.push(with_checksum("PUBX,00,110124.00,5505.33099,N").as_bytes());
    assert_eq!(p.stats().unsupported, 1);
    // Other sentence types are not split into fields, however many they have.
    p.push(with_checksum(&format!("GPGSV{}", ",1".repeat(35))).as_bytes());
    assert_eq!((p.stats().unsupported, p.stats().malformed), (2, 0));
}

#[test]
fn reader_pulls_fixes_from_a_serial_port() {
    let data = format!("{RMC}{GGA}");
    // embedded-io implements Read and ReadReady for byte slices.
    let mut gnss = Gnss::new(data.as_bytes());
    let mut fix = None;
    loop {
        match gnss.read_fix() {
            Ok(Some(f)) => fix = Some(f),
            Ok(None) => {}
            Err(Error::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(fix, Some(good_pair_fix()));
    assert!(gnss.release().is_empty());

    let mut gnss = Gnss::new(data.as_bytes());
    assert_eq!(
        gnss.poll_fix(),
        Ok(Some(good_pair_fix())),
        "all ready bytes in one poll"
    );
    assert_eq!(gnss.poll_fix(), Ok(None), "nothing ready: returns at once");
    assert_eq!(gnss.current_fix(), Some(good_pair_fix()));
    assert_eq!(gnss.stats().fixes, 1);
}
