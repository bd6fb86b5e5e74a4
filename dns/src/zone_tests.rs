//! Record store tests, fed with k8s-openapi objects as the watchers deliver them.

use super::*;
use hickory_proto::rr::rdata::{A, AAAA};
use k8s_openapi::api::core::v1::{EndpointPort, EndpointSubset, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::net::{Ipv4Addr, Ipv6Addr};

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn port(name: &str, port: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: ips.first().map(|s| s.to_string()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(ports),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn headless(ns: &str, name: &str, ports: Vec<ServicePort>) -> Service {
    cluster_ip(ns, name, &["None"], ports)
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn address(ip: &str, hostname: Option<&str>) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        hostname: hostname.map(Into::into),
        ..Default::default()
    }
}

fn endpoints(
    ns: &str,
    name: &str,
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
    ports: &[(&str, i32)],
) -> Endpoints {
    Endpoints {
        metadata: meta(ns, name),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(ready),
            not_ready_addresses: Some(not_ready),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| EndpointPort {
                        name: Some(n.to_string()),
                        port: *p,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }]),
    }
}

fn settings() -> ZoneSettings {
    ZoneSettings::new("cluster.local", 5).unwrap()
}

fn zone(services: &[Service], eps: &[Endpoints]) -> Zone {
    Zone::build(&settings(), services, eps)
}

fn name(s: &str) -> LowerName {
    LowerName::new(&Name::from_ascii(s).unwrap())
}

fn records(zone: &Zone, n: &str, qtype: RecordType) -> Vec<RData> {
    match zone.lookup(&name(n), qtype) {
        Lookup::Records(r) => {
            assert!(
                r.iter().all(|r| r.ttl == 5),
                "every record carries the configured TTL"
            );
            let mut data: Vec<RData> = r.into_iter().map(|r| r.data).collect();
            data.sort_by_key(|d| d.to_string());
            data
        }
        other => panic!("{n} {qtype}: expected records, got {other:?}"),
    }
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

fn target(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

#[test]
fn cluster_ip_service_answers_a_aaaa_srv_and_ptr() {
    let svc = cluster_ip(
        "default",
        "kubernetes",
        &["10.96.0.1", "fd00:96::1"],
        vec![
            port("https", 443, "TCP"),
            port("dns", 53, "UDP"),
            ServicePort {
                port: 8080,
                ..Default::default()
            },
        ],
    );
    let z = zone(&[svc], &[]);
    let fqdn = "kubernetes.default.svc.cluster.local.";
    assert_eq!(records(&z, fqdn, RecordType::A), vec![a([10, 96, 0, 1])]);
    // Names match without case.
    assert_eq!(
        records(&z, "Kubernetes.Default.SVC.cluster.local.", RecordType::A),
        vec![a([10, 96, 0, 1])]
    );
    assert_eq!(
        records(&z, fqdn, RecordType::AAAA),
        vec![RData::AAAA(AAAA("fd00:96::1".parse::<Ipv6Addr>().unwrap()))]
    );
    assert_eq!(
        records(
            &z,
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV
        ),
        vec![RData::SRV(SRV::new(0, 100, 443, target(fqdn)))]
    );
    assert_eq!(
        records(
            &z,
            "_dns._udp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV
        ),
        vec![RData::SRV(SRV::new(0, 100, 53, target(fqdn)))]
    );
    assert_eq!(
        records(&z, "1.0.96.10.in-addr.arpa.", RecordType::PTR),
        vec![RData::PTR(PTR(target(fqdn)))]
    );
    let v6_reverse = Name::from("fd00:96::1".parse::<IpAddr>().unwrap()).to_ascii();
    assert!(v6_reverse.ends_with("ip6.arpa."), "{v6_reverse}");
    assert_eq!(
        records(&z, &v6_reverse, RecordType::PTR),
        vec![RData::PTR(PTR(target(fqdn)))]
    );
}

#[test]
fn nxdomain_and_nodata_are_told_apart() {
    let z = zone(
        &[cluster_ip(
            "default",
            "web",
            &["10.96.0.20"],
            vec![port("http", 80, "TCP")],
        )],
        &[],
    );
    // The name exists with other types: NODATA.
    assert_eq!(
        z.lookup(&name("web.default.svc.cluster.local."), RecordType::AAAA),
        Lookup::NoData
    );
    assert_eq!(
        z.lookup(&name("web.default.svc.cluster.local."), RecordType::TXT),
        Lookup::NoData
    );
    // Empty non-terminals exist (RFC 8020): namespace, svc, port protocol.
    assert_eq!(
        z.lookup(&name("default.svc.cluster.local."), RecordType::A),
        Lookup::NoData
    );
    assert_eq!(
        z.lookup(&name("svc.cluster.local."), RecordType::A),
        Lookup::NoData
    );
    assert_eq!(
        z.lookup(
            &name("_tcp.web.default.svc.cluster.local."),
            RecordType::SRV
        ),
        Lookup::NoData
    );
    // Names that do not exist.
    assert_eq!(
        z.lookup(&name("nope.default.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        z.lookup(&name("web.other.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        z.lookup(
            &name("_grpc._tcp.web.default.svc.cluster.local."),
            RecordType::SRV
        ),
        Lookup::NxDomain
    );
    assert_eq!(
        z.lookup(
            &name("google.com.default.svc.cluster.local."),
            RecordType::A
        ),
        Lookup::NxDomain
    );
    // Outside the zone, and reverse names of unknown addresses: forwarded.
    assert_eq!(
        z.lookup(&name("example.com."), RecordType::A),
        Lookup::NotAuthoritative
    );
    assert_eq!(
        z.lookup(&name("4.3.2.1.in-addr.arpa."), RecordType::PTR),
        Lookup::NotAuthoritative
    );
    // A known reverse name asked for another type: NODATA.
    assert_eq!(
        z.lookup(&name("20.0.96.10.in-addr.arpa."), RecordType::A),
        Lookup::NoData
    );
}

#[test]
fn apex_has_soa_and_schema_version() {
    let z = zone(&[], &[]);
    let soa = records(&z, "cluster.local.", RecordType::SOA);
    let RData::SOA(soa) = &soa[0] else {
        panic!("{soa:?}")
    };
    assert_eq!(soa.mname, target("ns.dns.cluster.local."));
    assert_eq!(soa.minimum, 5, "negative answers are cached for the TTL");
    assert_eq!(z.soa().name, target("cluster.local."));
    assert_eq!(
        records(&z, "dns-version.cluster.local.", RecordType::TXT),
        vec![RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()]))]
    );
    assert_eq!(
        z.lookup(&name("cluster.local."), RecordType::A),
        Lookup::NoData
    );
}

#[test]
fn headless_service_answers_ready_endpoints() {
    let svc = headless("db", "pg", vec![port("sql", 5432, "TCP")]);
    let eps = endpoints(
        "db",
        "pg",
        vec![
            address("10.244.0.5", Some("pg-0")),
            address("10.244.0.6", None),
        ],
        vec![address("10.244.0.7", Some("pg-2"))],
        &[("sql", 5432)],
    );
    let z = zone(&[svc], &[eps]);
    let fqdn = "pg.db.svc.cluster.local.";
    assert_eq!(
        records(&z, fqdn, RecordType::A),
        vec![a([10, 244, 0, 5]), a([10, 244, 0, 6])],
        "not-ready addresses are left out"
    );
    assert_eq!(
        records(&z, "pg-0.pg.db.svc.cluster.local.", RecordType::A),
        vec![a([10, 244, 0, 5])]
    );
    assert_eq!(
        records(&z, "10-244-0-6.pg.db.svc.cluster.local.", RecordType::A),
        vec![a([10, 244, 0, 6])]
    );
    assert_eq!(
        z.lookup(&name("pg-2.pg.db.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        records(&z, "_sql._tcp.pg.db.svc.cluster.local.", RecordType::SRV),
        vec![
            RData::SRV(SRV::new(
                0,
                50,
                5432,
                target("10-244-0-6.pg.db.svc.cluster.local.")
            )),
            RData::SRV(SRV::new(
                0,
                50,
                5432,
                target("pg-0.pg.db.svc.cluster.local.")
            )),
        ]
    );
    assert_eq!(
        records(&z, "5.0.244.10.in-addr.arpa.", RecordType::PTR),
        vec![RData::PTR(PTR(target("pg-0.pg.db.svc.cluster.local.")))]
    );
    assert_eq!(
        records(&z, "6.0.244.10.in-addr.arpa.", RecordType::PTR),
        vec![RData::PTR(PTR(target(
            "10-244-0-6.pg.db.svc.cluster.local."
        )))]
    );
}

#[test]
fn headless_service_can_publish_not_ready_addresses() {
    let mut svc = headless("db", "pg", vec![]);
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let eps = endpoints(
        "db",
        "pg",
        vec![address("10.244.0.5", None)],
        vec![address("10.244.0.7", Some("pg-2"))],
        &[],
    );
    let z = zone(&[svc], &[eps]);
    assert_eq!(
        records(&z, "pg.db.svc.cluster.local.", RecordType::A),
        vec![a([10, 244, 0, 5]), a([10, 244, 0, 7])]
    );
    assert_eq!(
        records(&z, "pg-2.pg.db.svc.cluster.local.", RecordType::A),
        vec![a([10, 244, 0, 7])]
    );
}

#[test]
fn headless_service_without_endpoints_has_no_data() {
    let z = zone(&[headless("db", "empty", vec![])], &[]);
    assert_eq!(
        z.lookup(&name("empty.db.svc.cluster.local."), RecordType::A),
        Lookup::NoData
    );
}

#[test]
fn external_name_service_is_a_cname() {
    let z = zone(&[external("default", "search", "www.example.com")], &[]);
    let cname = RData::CNAME(CNAME(target("www.example.com.")));
    assert_eq!(
        records(&z, "search.default.svc.cluster.local.", RecordType::CNAME),
        vec![cname.clone()]
    );
    // Any other type is answered with the alias, for the resolver to follow.
    assert_eq!(
        records(&z, "search.default.svc.cluster.local.", RecordType::A),
        vec![cname.clone()]
    );
    assert_eq!(
        records(&z, "search.default.svc.cluster.local.", RecordType::AAAA),
        vec![cname]
    );
}

#[test]
fn pod_names_answer_the_address_they_spell() {
    let z = zone(&[], &[]);
    assert_eq!(
        records(&z, "10-244-0-9.default.pod.cluster.local.", RecordType::A),
        vec![a([10, 244, 0, 9])]
    );
    assert_eq!(
        records(&z, "fd00--9.default.pod.cluster.local.", RecordType::AAAA),
        vec![RData::AAAA(AAAA("fd00::9".parse().unwrap()))]
    );
    assert_eq!(
        z.lookup(
            &name("10-244-0-9.default.pod.cluster.local."),
            RecordType::AAAA
        ),
        Lookup::NoData
    );
    assert_eq!(
        z.lookup(&name("not-an-ip.default.pod.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
    assert_eq!(
        z.lookup(&name("pod.cluster.local."), RecordType::A),
        Lookup::NoData
    );
}

#[test]
fn another_cluster_domain() {
    let settings = ZoneSettings::new("Corp.Example.", 30).unwrap();
    let z = Zone::build(
        &settings,
        &[cluster_ip("a", "b", &["10.0.0.1"], vec![])],
        &[],
    );
    assert_eq!(
        z.lookup(&name("b.a.svc.corp.example."), RecordType::A),
        Lookup::Records(vec![Record::from_rdata(
            target("b.a.svc.corp.example."),
            30,
            a([10, 0, 0, 1])
        )])
    );
    assert_eq!(
        z.lookup(&name("b.a.svc.cluster.local."), RecordType::A),
        Lookup::NotAuthoritative
    );
    assert!(ZoneSettings::new("bad..domain", 5).is_err());
}

#[test]
fn dashes_round_trip() {
    for ip in ["10.244.1.2", "fd00::1:2", "::1"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(ip_from_dashes(&ip_to_dashes(ip)), Some(ip));
    }
    assert_eq!(ip_from_dashes("pg-0"), None);
}
