#![allow(clippy::unwrap_used)]
use super::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/radacct-detail");

fn carrier() -> NodeKey {
    NodeKey::from_seed(&[21; 32])
}

fn hotspot(seed: u8) -> NodeId {
    NodeKey::from_seed(&[seed; 32]).id()
}

fn stations() -> Stations {
    Stations::parse(&format!(
        "# access points of the Lisbon site\n\
         aa-bb-cc-00-00-01:wisp-offload {}\n\
         ap-lisbon-02 {}  # the NAS is the hotspot\n",
        hotspot(1),
        hotspot(2)
    ))
    .unwrap()
}

#[test]
fn the_fixture_reads_as_accounting() {
    let records = detail::parse(FIXTURE).unwrap();
    let read: Vec<Accounting> = records
        .iter()
        .map(|r| Accounting::read(r).unwrap())
        .collect();
    assert_eq!(read.len(), 8);
    assert_eq!(read[0].status, Status::AccountingOnOff);
    let stop = read.iter().find(|a| a.status == Status::Stop).unwrap();
    assert_eq!(stop.acct_session_id, "5F3A0001");
    assert_eq!(stop.nas, "ap-lisbon-01");
    // RADIUS Output is what the subscriber received, Input what it sent.
    assert_eq!(
        (stop.bytes_down, stop.bytes_up),
        (6 << 20, (1 << 20) + 300 * 1024)
    );
    // 09:00:00 UTC on 6 December 2026, from Event-Timestamp less Acct-Session-Time.
    assert_eq!(stop.start_ms, Some(1_796_547_600_000));
}

#[test]
fn the_fixture_plans_five_reports_in_order_and_a_rerun_signs_nothing_new() {
    let records = detail::parse(FIXTURE).unwrap();
    let mut ledger = Ledger::default();
    let plan = ledger
        .plan(&records, &stations(), &carrier(), 42, 1_800_000_000_000)
        .unwrap();
    assert_eq!((plan.starts, plan.nas_events), (2, 1));
    let seqs: Vec<(&str, u64)> = plan
        .reports
        .iter()
        .map(|p| (p.acct_session_id.as_str(), p.seq))
        .collect();
    assert_eq!(
        seqs,
        [
            ("5F3A0001", 1),
            ("5F3A0002", 1),
            ("5F3A0001", 2),
            ("5F3A0002", 2),
            ("5F3A0001", 3)
        ]
    );
    let first = wisp_protocol::envelope::open::<CarrierReport>(&plan.reports[0].envelope).unwrap();
    assert_eq!(first.signer, carrier().id());
    assert_eq!(first.msg.hotspot, hotspot(1));
    assert_eq!(first.msg.epoch, 42);
    assert_eq!(
        first.msg.session.0,
        session_id(&carrier(), "ap-lisbon-01", "5F3A0001")
    );
    let second = wisp_protocol::envelope::open::<CarrierReport>(&plan.reports[1].envelope).unwrap();
    assert_eq!(second.msg.hotspot, hotspot(2));
    assert!(plan.reports.iter().all(|p| p.fresh));

    // Another run, later and in another epoch: the same envelopes, none signed anew.
    let again = ledger
        .plan(&records, &stations(), &carrier(), 43, 1_800_000_100_000)
        .unwrap();
    assert!(again.reports.iter().all(|p| !p.fresh));
    assert_eq!(
        again
            .reports
            .iter()
            .map(|p| &p.envelope)
            .collect::<Vec<_>>(),
        plan.reports.iter().map(|p| &p.envelope).collect::<Vec<_>>()
    );
    // The ledger survives its file.
    let text = serde_json::to_string(&ledger).unwrap();
    assert_eq!(serde_json::from_str::<Ledger>(&text).unwrap(), ledger);
}

#[test]
fn session_ids_are_keyed_by_the_carrier() {
    let a = session_id(&carrier(), "nas", "s1");
    assert_eq!(a, session_id(&carrier(), "nas", "s1"));
    assert_ne!(a, session_id(&carrier(), "nas", "s2"));
    assert_ne!(a, session_id(&carrier(), "nas2", "s1"));
    assert_ne!(a, session_id(&NodeKey::from_seed(&[22; 32]), "nas", "s1"));
    // The length prefix keeps the parts apart.
    assert_ne!(
        session_id(&carrier(), "ab", "c"),
        session_id(&carrier(), "a", "bc")
    );
}

/// One record of `attrs` planned on an empty ledger: the error's text.
fn fails(attrs: &str) -> String {
    let text = format!("Sun Dec  6 12:00:00 2026\n{attrs}");
    let records = detail::parse(&text).unwrap();
    Ledger::default()
        .plan(&records, &stations(), &carrier(), 1, 1_800_000_000_000)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_records_are_errors_naming_the_line() {
    let base = "\tAcct-Session-Id = \"x\"\n\tNAS-Identifier = \"ap-lisbon-02\"\n";
    for (extra, want) in [
        (
            "\tAcct-Status-Type = Interim-Update\n\tAcct-Output-Octets = 4294967296\n",
            "line 5: Acct-Output-Octets 4294967296 overflows its 32 bits",
        ),
        (
            "\tAcct-Status-Type = Stop\n\tAcct-Input-Gigawords = 65537\n",
            "line 5: Acct-Input-Octets with Acct-Input-Gigawords is 281479271677952 bytes, over",
        ),
        (
            "\tAcct-Status-Type = Interim-Update\n\tAcct-Input-Octets = lots\n",
            "line 5: Acct-Input-Octets \"lots\" is not a number",
        ),
        (
            "\tAcct-Status-Type = Bogus\n",
            "line 4: Acct-Status-Type \"Bogus\"",
        ),
        (
            "\tAcct-Status-Type = Stop\n\tEvent-Timestamp = \"yesterday\"\n",
            "line 5: Event-Timestamp \"yesterday\"",
        ),
    ] {
        let e = fails(&format!("{base}{extra}"));
        assert!(e.starts_with(want), "{e}");
    }
    // Gigawords up to 2^48 are fine.
    let text = format!(
        "Sun\n{base}\tAcct-Status-Type = Stop\n\tAcct-Output-Gigawords = 65535\n\
         \tAcct-Output-Octets = 4294967295\n"
    );
    let r = detail::parse(&text).unwrap();
    assert_eq!(Accounting::read(&r[0]).unwrap().bytes_down, (1 << 48) - 1);

    let e = fails(
        "\tAcct-Status-Type = Stop\n\tAcct-Session-Id = \"x\"\n\tNAS-Identifier = \"elsewhere\"\n\tCalled-Station-Id = \"00-00\"\n",
    );
    assert!(
        e.starts_with("line 1: no hotspot mapped for Called-Station-Id Some(\"00-00\")"),
        "{e}"
    );
    let e = fails("\tAcct-Status-Type = Stop\n\tNAS-Identifier = \"ap-lisbon-02\"\n");
    assert!(
        e.starts_with("line 1: the record has no Acct-Session-Id"),
        "{e}"
    );
}

#[test]
fn counters_going_down_are_refused() {
    let text = "Sun\n\tAcct-Status-Type = Interim-Update\n\tAcct-Session-Id = \"x\"\n\
                \tNAS-Identifier = \"ap-lisbon-02\"\n\tAcct-Output-Octets = 2000\n\n\
                Sun\n\tAcct-Status-Type = Stop\n\tAcct-Session-Id = \"x\"\n\
                \tNAS-Identifier = \"ap-lisbon-02\"\n\tAcct-Output-Octets = 1000\n";
    let records = detail::parse(text).unwrap();
    let e = Ledger::default()
        .plan(&records, &stations(), &carrier(), 1, 1_800_000_000_000)
        .unwrap_err();
    assert!(
        matches!(
            e,
            CarrierError::Decreased {
                line: 7,
                was_down: 2000,
                down: 1000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn stations_files() {
    for (text, want) in [
        ("ap1\n", "stations file line 1: `ap1` is not"),
        (
            "ap1 nope\n",
            "stations file line 1: `nope` is not a hotspot's peer id",
        ),
    ] {
        assert!(
            Stations::parse(text)
                .unwrap_err()
                .to_string()
                .starts_with(want),
            "{text}"
        );
    }
    let twice = format!("AP1 {}\nap1 {}\n", hotspot(1), hotspot(2));
    assert!(
        Stations::parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("mapped twice")
    );
}

#[test]
fn freeradius_dates() {
    assert_eq!(unix_seconds("1796547600"), Some(1_796_547_600));
    assert_eq!(
        unix_seconds("Dec  6 2026 09:00:00 UTC"),
        Some(1_796_547_600)
    );
    assert_eq!(unix_seconds("Jan  1 1970 00:00:00 UTC"), Some(0));
    assert_eq!(unix_seconds("Mar  1 2024 00:00:00"), Some(1_709_251_200));
    assert_eq!(unix_seconds("Dec  6 2026 09:00:00 CET"), None);
    assert_eq!(unix_seconds("Foo  6 2026 09:00:00 UTC"), None);
}
