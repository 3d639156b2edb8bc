//! The partition test's network: a bridge and a network namespace per cut-off agent, inside a
//! namespace of the test's own.

use super::*;

/// Runs test `name` again inside a new network namespace (its bridge, links and namespaces
/// then touch no real network); returns true when called inside it, where the caller runs
/// the test body.
pub(super) fn in_own_namespace(name: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test creates network namespaces and needs root (run it as root, as .ci/run does)"
    );
    let status = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            &format!("set -e; ip link set lo up; exec \"$0\" {name} --exact --ignored --nocapture"),
        ])
        .arg(std::env::current_exe().expect("the test binary"))
        .env(INNER, "1")
        .status()
        .expect("unshare (util-linux) runs");
    assert!(
        status.success(),
        "{name}: the run inside its network namespace failed (its output is above)"
    );
    false
}

/// Runs `ip` with `args`.
pub(super) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A bridge at [`BRIDGE_IP`] and, for some agents, a network namespace each, linked to the
/// bridge by a veth pair; the namespaces are deleted on drop.
#[derive(Debug)]
pub(super) struct Namespaces {
    /// Agent index → (namespace, the agent's address, the bridge side of its link).
    pub(super) agents: BTreeMap<usize, (String, Ipv4Addr, String)>,
}

impl Namespaces {
    pub(super) fn create(agents: &[usize]) -> Result<Namespaces> {
        ip(&["link", "add", "wbr0", "type", "bridge"])?;
        ip(&["addr", "add", &format!("{BRIDGE_IP}/24"), "dev", "wbr0"])?;
        ip(&["link", "set", "wbr0", "up"])?;
        let mut ns = Namespaces {
            agents: BTreeMap::new(),
        };
        for &i in agents {
            let name = format!("wisp-faults-{}-{i}", std::process::id());
            let addr = Ipv4Addr::new(10, 99, 0, 10 + u8::try_from(i)?);
            let (host, inner) = (format!("wh{i}"), format!("wa{i}"));
            ip(&["netns", "add", &name])?;
            ns.agents.insert(i, (name.clone(), addr, host.clone()));
            ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", &name,
            ])?;
            ip(&["link", "set", &host, "master", "wbr0", "up"])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &name, "link", "set", &inner, "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// For the devnet's options: agent index → (namespace, address).
    pub(super) fn options(&self) -> BTreeMap<usize, (String, Ipv4Addr)> {
        self.agents
            .iter()
            .map(|(i, (n, a, _))| (*i, (n.clone(), *a)))
            .collect()
    }

    /// Takes agent `i`'s link down (`up`: false) or up again.
    pub(super) fn set_link(&self, i: usize, up: bool) -> Result<()> {
        let (_, _, host) = self
            .agents
            .get(&i)
            .with_context(|| format!("agent-{i} has no namespace"))?;
        ip(&["link", "set", host, if up { "up" } else { "down" }])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for (name, _, _) in self.agents.values() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
