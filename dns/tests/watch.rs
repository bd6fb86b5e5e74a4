//! The kube-rs watch path against a fake API server (plain HTTP on a random local port):
//! list Services and Endpoints, report ready once both initial lists are in, then
//! follow a watch event into a new zone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dns::zone::{Lookup, Zone, ZoneSettings};
use futures::StreamExt;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn service(name: &str, ip: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "5"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})
}

type Body = BoxBody<Bytes, Infallible>;

/// Answers list requests with one object each and keeps watch requests open; the
/// Services watch delivers one ADDED event first.
async fn api(
    request: Request<Incoming>,
    lists: Arc<AtomicUsize>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let watching = request
        .uri()
        .query()
        .unwrap_or_default()
        .contains("watch=true");
    let body: Body = match (path.as_str(), watching) {
        ("/api/v1/services", false) => {
            lists.fetch_add(1, Ordering::SeqCst);
            let list = json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "10"},
                "items": [service("kubernetes", "10.96.0.1")]});
            Full::new(Bytes::from(list.to_string())).boxed()
        }
        ("/api/v1/endpoints", false) => {
            lists.fetch_add(1, Ordering::SeqCst);
            let list = json!({"apiVersion": "v1", "kind": "EndpointsList", "metadata": {"resourceVersion": "10"},
                "items": [{"apiVersion": "v1", "kind": "Endpoints",
                           "metadata": {"name": "kubernetes", "namespace": "default"},
                           "subsets": [{"addresses": [{"ip": "192.168.1.2"}], "ports": [{"name": "https", "port": 6443}]}]}]});
            Full::new(Bytes::from(list.to_string())).boxed()
        }
        ("/api/v1/services", true) => {
            let added = json!({"type": "ADDED", "object": service("web", "10.96.0.20")});
            let first = futures::stream::once(async move {
                // After the initial sync, so the test sees the zone change.
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{added}\n"))))
            });
            BodyExt::boxed(StreamBody::new(first.chain(futures::stream::pending())))
        }
        (_, true) => BodyExt::boxed(StreamBody::new(futures::stream::pending::<
            Result<Frame<Bytes>, Infallible>,
        >())),
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"{}")).boxed());
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    Ok(response)
}

async fn fake_api_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lists = Arc::new(AtomicUsize::new(0));
    let counter = lists.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let lists = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| api(request, lists.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, lists)
}

fn lookup(zone: &Zone, name: &str) -> Lookup {
    zone.lookup(
        &LowerName::new(&Name::from_ascii(name).unwrap()),
        RecordType::A,
    )
}

#[tokio::test]
async fn watchers_fill_the_zone_and_follow_changes() {
    let (addr, lists) = fake_api_server().await;
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let settings = ZoneSettings::new("cluster.local", 5).unwrap();
    let (zone_tx, mut zone_rx) = tokio::sync::watch::channel(None);
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(dns::watch::run(
        client,
        settings,
        zone_tx,
        ready.clone(),
        shutdown.clone(),
    ));

    // The first zone: both lists are in, and the server says ready.
    tokio::time::timeout(Duration::from_secs(10), zone_rx.wait_for(Option::is_some))
        .await
        .expect("a zone within 10 s")
        .unwrap();
    assert!(ready.load(Ordering::SeqCst));
    assert_eq!(
        lists.load(Ordering::SeqCst),
        2,
        "one list of Services, one of Endpoints"
    );
    let zone = zone_rx.borrow().clone().unwrap();
    let Lookup::Records(records) = lookup(&zone, "kubernetes.default.svc.cluster.local.") else {
        panic!("kubernetes Service missing");
    };
    assert_eq!(
        records[0].data,
        RData::A("10.96.0.1".parse::<std::net::Ipv4Addr>().unwrap().into())
    );
    assert_eq!(
        lookup(&zone, "web.default.svc.cluster.local."),
        Lookup::NxDomain
    );

    // The watch event adds a Service: a new zone follows.
    let changed = tokio::time::timeout(
        Duration::from_secs(10),
        zone_rx.wait_for(|z| {
            z.as_ref().is_some_and(|z| {
                matches!(
                    lookup(z, "web.default.svc.cluster.local."),
                    Lookup::Records(_)
                )
            })
        }),
    )
    .await;
    assert!(changed.is_ok(), "the watched Service shows up within 10 s");

    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("watch task ends on shutdown");
    assert!(ended.unwrap().is_ok(), "shutdown is a clean end");
}
