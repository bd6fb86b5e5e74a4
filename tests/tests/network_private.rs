//! Issue 5: two nodes joined by a private network this test builds (QEMU
//! `-netdev dgram` over a pair of unix sockets), each with QEMU's user
//! network for the API. Their configs give the private links static
//! addresses (one selected by MAC address, with an MTU and a route); node 2
//! forwards a call to node 1's apid (its control-plane endpoint) over the
//! private network, node 1 refuses to forward to node 2 (not a member); a
//! config without the route removes it, live.

use std::time::{Duration, Instant};

use cairn_tests::netnode::{is, text, wait_maintenance, wait_until, Checks, Cluster, Node};
use cairn_tests::{cairnctl, Firmware, Images, Vm, VmConfig};

fn private_nic(dir: &std::path::Path, me: &str, peer: &str, mac: &str) -> Vec<String> {
    let path = |n: &str| dir.join(format!("{n}.sock")).display().to_string();
    vec![
        "-netdev".into(),
        format!(
            "dgram,id=priv,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            path(me),
            path(peer)
        ),
        "-device".into(),
        format!("virtio-net-pci,netdev=priv,mac={mac}"),
    ]
}

#[test]
fn two_nodes_on_a_private_network_reach_each_others_apid() {
    let started = Instant::now();
    let sockets = tempfile::tempdir().unwrap();
    let images = Images::locate();
    let vm_config = |name: &str, me: &str, peer: &str, mac: &str| {
        let mut c =
            VmConfig::disk(name, &images, Firmware::SeaBios).unwrap_or_else(|e| panic!("{e}"));
        c.extra_args = private_nic(sockets.path(), me, peer, mac);
        c.memory_mib = 1536;
        c
    };
    let c1 = vm_config("network-private-1", "a", "b", "52:54:00:aa:00:01");
    let c2 = vm_config("network-private-2", "b", "a", "52:54:00:aa:00:02");
    // Both boot at once (so each gets twice the usual time).
    let mut vm1 = Vm::start(&c1).unwrap_or_else(|e| panic!("{e}"));
    let mut vm2 = Vm::start(&c2).unwrap_or_else(|e| panic!("{e}"));
    wait_maintenance(&mut vm1, c1.boot_timeout() * 2);
    wait_maintenance(&mut vm2, c2.boot_timeout() * 2);
    let unconfigured = two_unconfigured_nodes_have_their_own_hostnames(&vm1, &vm2);

    let cluster = Cluster::generate();
    let n1 = Node::configure(
        vm1,
        &cluster,
        "n1",
        "network: {hostname: priv1, interfaces: [{interface: eth0, dhcp: true}, \
         {deviceSelector: {hardwareAddr: '52:54:00:aa:00:01'}, addresses: [192.168.77.1/24], mtu: 1400, \
         routes: [{network: 10.99.0.0/16, gateway: 192.168.77.2}]}]}",
    );
    let n2 = Node::configure_for(
        vm2,
        &cluster,
        "n2",
        "https://192.168.77.1:6443",
        "network: {hostname: priv2, interfaces: [{interface: eth0, dhcp: true}, \
         {interface: eth1, addresses: [192.168.77.2/24]}]}",
    );
    let mut c = Checks::default();
    c.check(
        "two unconfigured nodes with QEMU's default MAC have hostnames of their own",
        unconfigured,
    );

    let has_addr = |n: &Node, a: &str| {
        n.specs("addresses")
            .unwrap_or_default()
            .iter()
            .any(|s| s["address"] == a && s["link"] == "eth1")
    };
    c.check(
        "node 1 has 192.168.77.1/24 on eth1 (by MAC)",
        is(
            wait_until(Duration::from_secs(30), || has_addr(&n1, "192.168.77.1/24")),
            || format!("{:?}", n1.specs("addresses")),
        ),
    );
    c.check(
        "node 2 has 192.168.77.2/24 on eth1",
        is(
            wait_until(Duration::from_secs(30), || has_addr(&n2, "192.168.77.2/24")),
            || format!("{:?}", n2.specs("addresses")),
        ),
    );
    let links = n1.specs("links").unwrap_or_default();
    c.check(
        "node 1's eth1 has MTU 1400",
        is(
            links
                .iter()
                .any(|l| l["mtu"] == 1400 && l["hardwareAddr"] == "52:54:00:aa:00:01"),
            || format!("{links:?}"),
        ),
    );
    let route = |n: &Node| {
        n.specs("routes")
            .unwrap_or_default()
            .iter()
            .any(|r| r["destination"] == "10.99.0.0/16" && r["gateway"] == "192.168.77.2")
    };
    c.check(
        "node 1 has its static route",
        is(route(&n1), || format!("{:?}", n1.specs("routes"))),
    );
    c.check(
        "node 2 has both addresses (DHCP and static)",
        is(
            has_addr(&n2, "192.168.77.2/24")
                && n2
                    .specs("addresses")
                    .unwrap_or_default()
                    .iter()
                    .any(|a| a["address"] == "10.0.2.15/24"),
            || format!("{:?}", n2.specs("addresses")),
        ),
    );

    // apid forwards only to members of its cluster (issue 16, hole 6).
    // Node 2 names node 1's private address as its control-plane
    // endpoint, so node 1 is a member for it: node 2's apid forwards
    // there over the private network. Node 2 is a member for nobody (no
    // Kubernetes Node lists it), so node 1 refuses before connecting.
    let via = |n: &Node, target: &str| {
        cairnctl::run(&[
            "--cairnconfig",
            n.cairnconfig.to_str().unwrap(),
            "-n",
            target,
            "get",
            "hostname",
            "-o",
            "json",
        ])
    };
    let mut last = String::new();
    let reached = wait_until(Duration::from_secs(60), || {
        let out = via(&n2, "192.168.77.1");
        last = text(&out);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("priv1")
    });
    c.check(
        "node 2 reaches its endpoint node 1's apid at 192.168.77.1",
        is(reached, || last.clone()),
    );
    let out = via(&n1, "192.168.77.2");
    c.check(
        "node 1 refuses to forward to 192.168.77.2, not a member",
        is(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("is not a member of this cluster"),
            || text(&out),
        ),
    );

    // Removing the route from the config removes it from the node, live.
    // An RFC 6902 patch: strategic merges keep list items they do not name.
    let without = n1.patched_config(
        "no-route",
        r#"[{"op": "remove", "path": "/machine/network/interfaces/1/routes"}]"#,
    );
    let out = n1.ctl(&[
        "apply-config",
        "-f",
        without.to_str().unwrap(),
        "--mode",
        "no-reboot",
    ]);
    c.check(
        "apply-config without the route, no reboot",
        is(out.status.success(), || text(&out)),
    );
    c.check(
        "the route is gone",
        is(wait_until(Duration::from_secs(30), || !route(&n1)), || {
            format!("{:?}", n1.specs("routes"))
        }),
    );
    c.check(
        "node 1 still answers and still has its address",
        is(
            n1.answers(Duration::from_secs(20)) && has_addr(&n1, "192.168.77.1/24"),
            || n1.vm.console_tail(20),
        ),
    );
    eprintln!("network_private: {:?} in all", started.elapsed());
    c.finish();
}

/// Issue 18: both nodes' eth0 has QEMU's default MAC (52:54:00:12:34:56),
/// which once named every node `cairn-123456`; an unconfigured node's name
/// must be its own (a random suffix kept on STATE). Read from the
/// maintenance banner on each console.
fn two_unconfigured_nodes_have_their_own_hostnames(vm1: &Vm, vm2: &Vm) -> Result<(), String> {
    let re = regex::Regex::new(r"cairn: hostname: (\S+)").unwrap();
    let name = |vm: &Vm| {
        re.captures(&vm.console())
            .map(|c| c[1].to_string())
            .ok_or_else(|| format!("no hostname in the banner:\n{}", vm.console_tail(20)))
    };
    let (a, b) = (name(vm1)?, name(vm2)?);
    is(a != b && a != "cairn-123456" && b != "cairn-123456", || {
        format!("the two nodes are named {a} and {b}")
    })
}
