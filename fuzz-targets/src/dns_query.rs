//! The DNS add-on's query handling (dns::answer::Resolver::answer): any
//! bytes over UDP and TCP, against a zone with ClusterIP, headless and
//! ExternalName Services and no upstream. Never panics; an answer is a DNS
//! response with the query's id that decodes, and a UDP answer to a query
//! without EDNS fits in 512 bytes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dns::answer::{Resolver, Transport};
use dns::upstream::Forwarder;
use dns::zone::{Zone, ZoneSettings};
use hickory_proto::op::{Message, MessageType};
use k8s_openapi::api::core::v1::{Endpoints, Service};

type Zoned = (
    tokio::runtime::Runtime,
    Resolver,
    tokio::sync::watch::Sender<Option<Arc<Zone>>>,
);

fn resolver() -> &'static Zoned {
    static R: OnceLock<Zoned> = OnceLock::new();
    R.get_or_init(|| {
        let services: Vec<Service> = serde_json::from_value(serde_json::json!([
            {"metadata": {"namespace": "default", "name": "kubernetes"},
             "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00::1"],
                      "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
            {"metadata": {"namespace": "db", "name": "pg"},
             "spec": {"clusterIP": "None", "clusterIPs": ["None"],
                      "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}},
            {"metadata": {"namespace": "web", "name": "out"},
             "spec": {"type": "ExternalName", "externalName": "example.org"}}
        ]))
        .expect("services");
        let endpoints: Vec<Endpoints> = serde_json::from_value(serde_json::json!([
            {"metadata": {"namespace": "db", "name": "pg"},
             "subsets": [{"addresses": [{"ip": "10.244.0.5", "hostname": "pg-0"},
                                        {"ip": "fd00::5"}],
                          "notReadyAddresses": [{"ip": "10.244.0.6"}],
                          "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}]}
        ]))
        .expect("endpoints");
        let settings = ZoneSettings::new("cluster.local", 5).expect("zone settings");
        let zone = Zone::build(&settings, &services, &endpoints);
        // The sender stays in the static: the zone lives for the whole run.
        let (tx, rx) = tokio::sync::watch::channel(Some(Arc::new(zone)));
        let forwarder = Forwarder::new(Vec::new(), Duration::from_millis(100));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let origin = hickory_proto::rr::Name::from_ascii("cluster.local.").expect("origin");
        (rt, Resolver::new(&origin, rx, forwarder), tx)
    })
}

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let (rt, resolver, _) = resolver();
    let query = Message::from_vec(data).ok();
    for transport in [Transport::Udp, Transport::Tcp] {
        let Some(answer) = rt.block_on(resolver.answer(data, transport)) else {
            continue;
        };
        let response = match Message::from_vec(&answer) {
            Ok(m) => m,
            Err(e) => panic!("an answer that does not decode: {e}"),
        };
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert_eq!(&answer[..2], &data[..2], "the query's id");
        if transport == Transport::Udp && query.as_ref().is_some_and(|q| q.edns.is_none()) {
            assert!(
                answer.len() <= 512,
                "{} bytes over UDP without EDNS",
                answer.len()
            );
        }
    }
}
