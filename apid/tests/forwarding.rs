//! Forwarding between nodes: two apids on 127.0.0.1, each in front of a
//! machine service that echoes the role and `nodes` metadata it receives.

mod common;

use api::machine::*;
use common::*;
use config::constants::role;
use config::pki::{self, Role};
use tonic::Code;

struct Pair {
    _dir: tempfile::TempDir,
    ca: pki::CertifiedKey,
    a: u16,
    b: u16,
}

async fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let cfg = generated("demo");
    let (da, db) = (dir.path().join("apid-a"), dir.path().join("apid-b"));
    write_secure(&da, &cfg, "node-a");
    write_secure(&db, &cfg, "node-b");
    let a = start_apid(&da, &start_echo(dir.path(), "node-a")).await;
    let b = start_apid(&db, &start_echo(dir.path(), "node-b")).await;
    Pair {
        _dir: dir,
        ca: os_ca(&cfg),
        a,
        b,
    }
}

impl Pair {
    fn cert(&self, role: Role) -> pki::CertifiedKey {
        pki::issue_client_cert(&self.ca, "t", role, pki::LEAF_VALIDITY).unwrap()
    }
    async fn client(
        &self,
        port: u16,
        cert: &pki::CertifiedKey,
    ) -> api::machine::machine_service_client::MachineServiceClient<tonic::transport::Channel> {
        client(port, Verify::Ca(self.ca.clone()), Some(cert))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn forwards_one_hop_with_the_callers_role() {
    let p = pair().await;
    let b = format!("127.0.0.1:{}", p.b);

    let mut admin = p.client(p.a, &p.cert(Role::Admin)).await;
    let v = admin
        .service_list(with_meta((), &[("nodes", &b)]))
        .await
        .unwrap()
        .into_inner();
    // Answered by node B's machine service (the echo puts the role it saw
    // in the id and the nodes metadata in the state), with the caller's
    // role and without the nodes metadata.
    assert_eq!(v.services[0].id, "node-b os:admin");
    assert_eq!(v.services[0].state, "-");
    let v = admin.service_list(()).await.unwrap().into_inner();
    assert_eq!(v.services[0].id, "node-a os:admin");

    let mut reader = p.client(p.a, &p.cert(Role::Reader)).await;
    let v = reader
        .service_list(with_meta((), &[("nodes", &b)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.services[0].id, "node-b os:reader");
    // A reader's claim to be admin is overwritten, here and there.
    let forged = with_meta((), &[("x-cairn-role", "os:admin")]);
    assert_eq!(
        reader
            .service_list(forged)
            .await
            .unwrap()
            .into_inner()
            .services[0]
            .id,
        "node-a os:reader"
    );
    let forged = with_meta((), &[("x-cairn-role", "os:admin"), ("nodes", &b)]);
    assert_eq!(
        reader
            .service_list(forged)
            .await
            .unwrap()
            .into_inner()
            .services[0]
            .id,
        "node-b os:reader"
    );
    // Denied before forwarding.
    let e = reader
        .reboot(with_meta(RebootRequest::default(), &[("nodes", &b)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // One node per call.
    let e = admin
        .version(with_meta((), &[("nodes", "127.0.0.1:1,127.0.0.1:2")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("one node"), "{}", e.message());

    // A node that does not answer.
    let e = admin
        .version(with_meta((), &[("nodes", "127.0.0.1:1")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message()
            .starts_with("cannot reach the apid of 127.0.0.1:1"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn only_impersonators_name_roles_and_never_forward_again() {
    let p = pair().await;
    let mut req = pki::LeafRequest::new("node-a", pki::Usage::Client);
    req.organizations = vec![role::IMPERSONATOR.into()];
    let imp = pki::issue(&p.ca, &req).unwrap();
    let mut c = p.client(p.b, &imp).await;

    let v = c
        .service_list(with_meta((), &[("x-cairn-role", "os:operator")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.services[0].id, "node-b os:operator");
    // The named role is still checked.
    let e = c
        .read_file(with_meta(
            ReadFileRequest { path: "/x".into() },
            &[("x-cairn-role", "os:operator")],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // No role: refused.
    let e = c.version(()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("without the caller's role"),
        "{}",
        e.message()
    );
    // Forwarded again: refused (no loops).
    let a = format!("127.0.0.1:{}", p.a);
    let e = c
        .version(with_meta(
            (),
            &[("x-cairn-role", "os:admin"), ("nodes", &a)],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("at most once"), "{}", e.message());

    // A loop through both nodes' own names ends after one hop too.
    let mut admin = p.client(p.a, &p.cert(Role::Admin)).await;
    let self_a = format!("127.0.0.1:{}", p.a);
    let v = admin
        .service_list(with_meta((), &[("nodes", &self_a)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.services[0].id, "node-a os:admin");
}
