//! Patches applied to real generated configs.

mod common;

use config::patch::{apply_all, Patch, PatchError};
use config::validate::{validate, Mode};

#[test]
fn strategic_merge_patch_sets_and_merges() {
    let (cp, _) = common::demo_configs();
    let patch = Patch::parse(
        br#"
machine:
  install:
    disk: /dev/vda
  network:
    hostname: cp-1
    interfaces:
      - interface: eth0
        addresses: [10.5.0.2/24]
        routes:
          - network: 0.0.0.0/0
            gateway: 10.5.0.1
  sysctls:
    net.ipv4.ip_forward: 1
cluster:
  allowSchedulingOnControlPlanes: true
  apiServer:
    extraArgs:
      v: 2
"#,
        "cp.yaml",
    )
    .unwrap();
    let second = Patch::parse(
        b"machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: 9000\n",
        "mtu.yaml",
    )
    .unwrap();
    let out = apply_all(&cp, &[patch, second]).unwrap();
    assert_eq!(
        out.machine.install.disk.as_ref().unwrap().as_str(),
        "/dev/vda"
    );
    assert_eq!(
        out.machine.network.hostname.as_ref().unwrap().as_str(),
        "cp-1"
    );
    let eth0 = &out.machine.network.interfaces[0];
    assert_eq!(eth0.mtu.unwrap().get(), 9000);
    assert_eq!(
        eth0.addresses.len(),
        1,
        "merged by interface name, not appended"
    );
    assert_eq!(out.machine.network.interfaces.len(), 1);
    assert_eq!(out.machine.sysctls.values().next().unwrap().as_str(), "1");
    assert!(out.cluster.allow_scheduling_on_control_planes);
    // Everything else is untouched.
    assert_eq!(out.cluster.ca, cp.cluster.ca);
    validate(&out, Mode::Metal).unwrap();
}

#[test]
fn json_patch_replaces_by_pointer() {
    let (cp, _) = common::demo_configs();
    let patch = Patch::parse(
        br#"[{"op": "replace", "path": "/cluster/network/podSubnets/0", "value": "10.32.0.0/16"},
            {"op": "add", "path": "/machine/network", "value": {"hostname": "n1"}}]"#,
        "p.json",
    )
    .unwrap();
    let out = patch.apply(&cp).unwrap();
    assert_eq!(
        out.cluster.network.pod_subnets[0].to_string(),
        "10.32.0.0/16"
    );
    assert_eq!(out.machine.network.hostname.unwrap().as_str(), "n1");
}

#[test]
fn a_patch_that_breaks_the_config_is_named_with_the_field() {
    let (cp, _) = common::demo_configs();
    let patch = Patch::parse(
        b"cluster:\n  network:\n    podSubnets: [10.244.0.0/33]\n",
        "bad.yaml",
    )
    .unwrap();
    let err = patch.apply(&cp).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PatchError::Invalid { .. }));
    assert!(
        text.starts_with("patch bad.yaml makes the config invalid:"),
        "{text}"
    );
    assert!(
        text.contains(r#"cluster.network.podSubnets[0]: "10.244.0.0/33" is not a CIDR"#),
        "{text}"
    );

    let typo = Patch::parse(b"machine:\n  netwrok:\n    hostname: x\n", "typo.yaml").unwrap();
    let text = typo.apply(&cp).unwrap_err().to_string();
    assert!(text.contains("machine.netwrok: unknown field"), "{text}");

    let missing = Patch::parse(
        br#"[{"op": "remove", "path": "/machine/nothing"}]"#,
        "rm.json",
    )
    .unwrap();
    let text = missing.apply(&cp).unwrap_err().to_string();
    assert!(text.starts_with("patch rm.json:"), "{text}");
}

#[test]
fn delete_directive_removes_items_and_sections() {
    let (cp, _) = common::demo_configs();
    let add = Patch::parse(
        b"machine:\n  files:\n    - path: /var/a\n      content: a\n    - path: /var/b\n      content: b\n",
        "add.yaml",
    )
    .unwrap();
    let del = Patch::parse(
        b"machine:\n  files:\n    - path: /var/a\n      $patch: delete\n  time:\n    $patch: delete\n",
        "del.yaml",
    )
    .unwrap();
    let out = apply_all(&cp, &[add, del]).unwrap();
    let paths: Vec<&str> = out.machine.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/var/b"]);
    // machine.time removed: the defaults come back.
    assert_eq!(out.machine.time, config::spec::Time::default());
}
