use super::*;

#[test]
fn angles_convert_exactly() {
    let cases: &[(&str, u32, Option<i32>)] = &[
        ("5505.330990", 90, Some(550_888_498)), // 55 + 5.33099/60 = 55.08884983…
        ("03858.587325", 180, Some(389_764_554)), // 38 + 58.587325/60 = 38.97645541…
        ("4807.038", 90, Some(481_173_000)),    // 48.1173 exactly
        ("0000.00003", 90, Some(5)),            // 3e-5 minutes is exactly 5e-7°
        ("0000.000003", 90, Some(1)),           // 5e-8° rounds up to 1e-7
        ("0000.000002", 90, Some(0)),           // 3.3e-8° rounds down
        ("9000.0000", 90, Some(900_000_000)),
        ("9000.0001", 90, None), // beyond the pole
        ("18000.0", 180, Some(1_800_000_000)),
        ("4860.0", 90, None), // 60 minutes
        ("48a7.0", 90, None),
        ("1.5", 90, None),
        ("4807.", 90, Some(481_166_667)), // 48 + 7/60
    ];
    for &(s, max, want) in cases {
        assert_eq!(parse_angle(s.as_bytes(), max), want, "{s}");
    }
}

#[test]
fn decimals_round_half_away_from_zero() {
    let cases: &[(&str, u32, Option<i64>)] = &[
        ("2177.0", 3, Some(2_177_000)),
        ("-12.3456", 3, Some(-12_346)),
        ("0.9", 2, Some(90)),
        ("99.99", 2, Some(9_999)),
        ("1.005", 2, Some(101)),
        ("7", 2, Some(700)),
        (".5", 1, Some(5)),
        ("", 2, None),
        ("-", 2, None),
        ("1.2.3", 2, None),
        ("1e3", 2, None),
    ];
    for &(s, scale, want) in cases {
        assert_eq!(parse_decimal(s.as_bytes(), scale), want, "{s}");
    }
}

#[test]
fn times_and_dates() {
    assert_eq!(parse_time(b"110124"), Some(39_684_000));
    assert_eq!(parse_time(b"181604.00"), Some(65_764_000));
    assert_eq!(parse_time(b"235959.9999"), Some(86_399_999));
    assert_eq!(parse_time(b"240000"), None);
    assert_eq!(parse_time(b"1101"), None);
    assert_eq!(parse_time(b"110124."), None);
    let d = parse_date(b"310317");
    assert_eq!(
        d,
        Some(Date {
            year: 2017,
            month: 3,
            day: 31
        })
    );
    assert_eq!(parse_date(b"010199").map(|d| d.year), Some(1999));
    assert_eq!(parse_date(b"320317"), None);
    // 2017-03-31 is day 17 256 of the Unix era.
    assert_eq!(d.map(|d| d.days_since_epoch()), Some(17_256));
    for days in [-1, 0, 59, 10_957, 17_256, 19_782, 47_541] {
        let date = Date::from_days_since_epoch(days).unwrap();
        assert_eq!(date.days_since_epoch(), days, "{date:?}");
    }
    let utc = UtcTime {
        date: d,
        time_ms: 39_684_000,
    };
    assert_eq!(utc.unix_ms(), Some(17_256 * 86_400_000 + 39_684_000));
}
