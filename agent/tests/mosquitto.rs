//! Against a real Mosquitto broker (the production broker): delivery, the retained status and
//! the last will. Needs `WISP_TEST_MOSQUITTO=host:port`; `.ci/run` starts Mosquitto and sets it.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::*;
use wisp_protocol::topics;

fn broker() -> String {
    std::env::var("WISP_TEST_MOSQUITTO")
        .expect("set WISP_TEST_MOSQUITTO=host:port of a Mosquitto broker (.ci/run starts one on 127.0.0.1:1883)")
}

#[test]
#[ignore = "needs Mosquitto: WISP_TEST_MOSQUITTO=127.0.0.1:1883"]
fn retained_status_is_online_then_offline_and_the_last_will_fires_on_a_crash() {
    let addr = broker();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let oracle = TestOracle::start_at(host, port.parse().unwrap(), 200);
    let dir = tempfile::tempdir().unwrap();
    let env = agent_env_at(dir.path(), &addr, &oracle.key);
    let agent = Agent::spawn(dir.path(), &env);
    let _ = agent.http_addr();
    let me = wisp_protocol::keyfile::load(&dir.path().join("node.key"))
        .unwrap()
        .id();
    let topic = topics::status(&me);
    let state_is = |state: &str| {
        let want = format!("\"state\":\"{state}\"");
        wait_for(Duration::from_secs(15), || {
            oracle
                .seen
                .lock()
                .unwrap()
                .status
                .get(&topic)
                .is_some_and(|s| s.contains(&want))
        })
    };
    assert!(
        state_is("online"),
        "{:?}",
        oracle.seen.lock().unwrap().status
    );
    assert!(wait_for(Duration::from_secs(15), || agent
        .metric("wisp_proofs_accepted_total")
        >= 2.0));
    // Clean stop: the agent publishes "offline" itself.
    assert!(agent.stop().success());
    assert!(state_is("offline"));

    // Crash: the broker publishes the last will.
    let agent = Agent::spawn(dir.path(), &env);
    let _ = agent.http_addr();
    assert!(state_is("online"));
    agent.kill9();
    assert!(state_is("offline"), "the last will did not fire");
}
