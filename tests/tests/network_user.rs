//! Issue 5 on QEMU's user network, on one configured node (booted from the
//! raw disk): the address, default route and DNS server from QEMU's DHCP
//! server as resources; the SNTP client synchronising with a server this
//! test runs on the host's loopback (the guest reaches it as 10.0.2.2);
//! `cairnctl time` and `netstat`; and a `--mode try` config that removes
//! the node's only address: unreachable until the try times out, then
//! reverted and reachable again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_tests::netnode::{boot_maintenance, is, text, wait_until, Checks, Cluster, Node};
use cairn_tests::{Firmware, Images, VmConfig};
use host::time::responder::Responder;

static ONE_VM: Mutex<()> = Mutex::new(());

fn find(
    specs: &[serde_json::Value],
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<&serde_json::Value> {
    specs.iter().find(|s| pred(s))
}

#[test]
fn dhcp_time_and_a_try_that_removes_the_only_address() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    // The guest's 10.0.2.2:123 is the host's 127.0.0.1:123. The server's
    // clock runs 10 s behind, so the step is visible (behind, not ahead:
    // certificates the guest issues must not start in the host's future).
    // The guest's own clock starts up to ~1.5 s behind the host's (the RTC
    // has whole seconds, TCG loses ticks), so the measured offset is -10 s
    // plus that lag.
    let sntp = Responder::start(
        "127.0.0.1:123".parse().unwrap(),
        Duration::from_secs(10),
        false,
    )
    .expect("this test serves SNTP on 127.0.0.1:123 (needs root and a free port 123)");

    let vm = boot_maintenance(
        &VmConfig::disk("network-user", &Images::locate(), Firmware::SeaBios)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let cluster = Cluster::generate();
    let node = Node::configure(vm, &cluster, "n1", "time: {servers: [10.0.2.2]}");
    let mut c = Checks::default();

    // DHCP: address, default route, resolver.
    let addresses = node.specs("addresses").unwrap_or_default();
    c.check(
        "get addresses: 10.0.2.15/24 on eth0 from DHCP",
        is(
            find(&addresses, |a| {
                a["address"] == "10.0.2.15/24" && a["link"] == "eth0"
            })
            .is_some(),
            || format!("{addresses:?}"),
        ),
    );
    let out = node.ctl(&["get", "addresses"]);
    c.check(
        "get addresses prints a table with the address",
        is(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("10.0.2.15/24"),
            || text(&out),
        ),
    );
    let routes = node.specs("routes").unwrap_or_default();
    c.check(
        "get routes: default via 10.0.2.2 on eth0",
        is(
            find(&routes, |r| {
                r["destination"] == "default" && r["gateway"] == "10.0.2.2" && r["link"] == "eth0"
            })
            .is_some(),
            || format!("{routes:?}"),
        ),
    );
    let resolvers = node.specs("resolvers").unwrap_or_default();
    c.check(
        "get resolvers: 10.0.2.3 from DHCP",
        is(
            resolvers.first().is_some_and(|r| {
                r["nameservers"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|s| s == "10.0.2.3"))
            }),
            || format!("{resolvers:?}"),
        ),
    );
    let links = node.specs("links").unwrap_or_default();
    c.check(
        "get links: eth0 up",
        is(
            find(&links, |l| l["up"] == true && l["type"] == "ether").is_some(),
            || format!("{links:?}"),
        ),
    );
    let hostname = node.specs("hostname").unwrap_or_default();
    c.check(
        "get hostname: the default cairn-<suffix>",
        is(
            hostname.first().is_some_and(|h| {
                h["hostname"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("cairn-"))
            }),
            || format!("{hostname:?}"),
        ),
    );

    // Time.
    let synced = wait_until(Duration::from_secs(90), || {
        node.specs("timestatus")
            .ok()
            .and_then(|s| s.first().cloned())
            .is_some_and(|s| s["synced"] == true)
    });
    let status = node.specs("timestatus").unwrap_or_default();
    c.check(
        "timestatus turns synced against the host's SNTP server",
        is(
            synced && sntp.answered.load(std::sync::atomic::Ordering::SeqCst) > 0,
            || format!("{status:?}"),
        ),
    );
    c.check(
        "timestatus: server 10.0.2.2, stepped by about -10 s",
        is(
            status.first().is_some_and(|s| {
                s["server"] == "10.0.2.2"
                    && s["lastCorrection"] == "step"
                    && s["offsetSeconds"]
                        .as_f64()
                        .is_some_and(|o| (-12.0..-7.0).contains(&o))
            }),
            || format!("{status:?}"),
        ),
    );
    let servers = node.specs("timeservers").unwrap_or_default();
    c.check(
        "get timeservers",
        is(
            servers
                .first()
                .is_some_and(|s| s["servers"][0] == "10.0.2.2"),
            || format!("{servers:?}"),
        ),
    );
    let out = node.ctl(&["time"]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    c.check(
        "cairnctl time",
        is(
            out.status.success() && t.contains("10.0.2.2") && t.contains("true"),
            || text(&out),
        ),
    );
    let out = node.ctl(&["netstat", "-l"]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    c.check(
        "cairnctl netstat -l shows apid on :50000",
        is(
            out.status.success()
                && t.contains(":50000")
                && t.contains("LISTEN")
                && t.contains("apid"),
            || text(&out),
        ),
    );

    // A config that takes eth0's only address away.
    let cut = node.patched_config(
        "cut",
        "machine: {network: {interfaces: [{interface: eth0}]}}",
    );
    let out = node.ctl(&["apply-config", "-f", cut.to_str().unwrap(), "--dry-run"]);
    let t =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    c.check(
        "--dry-run shows the network change, applied without a reboot",
        is(
            out.status.success() && t.contains("interfaces") && t.contains("without a reboot"),
            || text(&out),
        ),
    );
    let tried = Instant::now();
    let out = node.ctl_within(
        &[
            "apply-config",
            "-f",
            cut.to_str().unwrap(),
            "--mode",
            "try",
            "--timeout",
            "45s",
        ],
        Duration::from_secs(60),
    );
    eprintln!(
        "apply-config --mode try: {}",
        out.as_ref().map(text).unwrap_or_else(|| "no answer".into())
    );
    let unreachable = wait_until(Duration::from_secs(30), || {
        !node.answers(Duration::from_secs(8))
    });
    c.check(
        "the node is unreachable while the try runs",
        is(
            unreachable && tried.elapsed() < Duration::from_secs(45),
            || format!("still answering after {:?}", tried.elapsed()),
        ),
    );
    let back = wait_until(Duration::from_secs(180), || {
        node.answers(Duration::from_secs(10))
    });
    let took = tried.elapsed();
    c.check(
        "after the try's timeout the node reverts and answers again",
        is(back && took >= Duration::from_secs(45), || {
            format!("back: {back} after {took:?}")
        }),
    );
    let addresses = node.specs("addresses").unwrap_or_default();
    c.check(
        "the DHCP address is back",
        is(
            find(&addresses, |a| a["address"] == "10.0.2.15/24").is_some(),
            || format!("{addresses:?}"),
        ),
    );
    let console = node.vm.console();
    c.check(
        "the console tells the revert",
        is(console.contains("reverted to the previous config"), || {
            node.vm.console_tail(30)
        }),
    );
    eprintln!("network_user: {:?} in all", started.elapsed());
    c.finish();
}
