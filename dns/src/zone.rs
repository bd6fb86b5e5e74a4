//! The cluster zone: an immutable snapshot of every record cairn-dns answers with
//! authority, built from Kubernetes Services and Endpoints.
//!
//! Record shapes follow the Kubernetes DNS specification
//! (kubernetes/dns docs/specification.md, schema 1.1.0):
//! - ClusterIP Service: `<svc>.<ns>.svc.<zone>` A/AAAA of its cluster IPs,
//!   `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV for each named port, PTR for each IP.
//! - Headless Service (`clusterIP: None`): A/AAAA of every ready endpoint address,
//!   `<hostname>.<svc>.<ns>.svc.<zone>` for each endpoint (its hostname, or the address
//!   with dashes when it has none), SRV per named port and endpoint, PTR per address.
//! - ExternalName Service: a CNAME to the external name.
//! - `<a-b-c-d>.<ns>.pod.<zone>` answers the address it spells ("pods insecure").
//!
//! The snapshot is rebuilt whenever the watched objects change (see `watch`), so a
//! lookup is a hash map read and never blocks on the API server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::{CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};

/// Version of the Kubernetes DNS schema this server implements (answered as TXT at
/// `dns-version.<zone>`, as the specification asks).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What the zone knows about a name.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Records of the asked type (or the CNAME of an ExternalName Service, which the
    /// caller follows).
    Records(Vec<Record>),
    /// The name exists but has no records of the asked type (NOERROR, empty answer).
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// The name is outside the zone (or a reverse name of an address the cluster does
    /// not know): forward it upstream.
    NotAuthoritative,
}

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("cluster domain {domain:?} is not a valid DNS name: {source}")]
    InvalidDomain {
        domain: String,
        source: hickory_proto::ProtoError,
    },
}

/// Settings that shape the zone (from the command line).
#[derive(Debug, Clone)]
pub struct ZoneSettings {
    /// The cluster domain as an absolute name, e.g. `cluster.local.`.
    pub origin: Name,
    /// TTL of every record in the zone, and of negative answers.
    pub ttl: u32,
}

impl ZoneSettings {
    pub fn new(cluster_domain: &str, ttl: u32) -> Result<Self, ZoneError> {
        let invalid = |source| ZoneError::InvalidDomain {
            domain: cluster_domain.to_string(),
            source,
        };
        let mut origin = Name::from_ascii(cluster_domain.trim_end_matches('.')).map_err(invalid)?;
        origin.set_fqdn(true);
        Ok(Self {
            origin: origin.to_lowercase(),
            ttl,
        })
    }
}

/// One immutable snapshot of the cluster zone.
#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    origin_labels: u8,
    ttl: u32,
    soa: Record,
    /// Records by owner name. Names that exist without records (empty non-terminals
    /// such as `<ns>.svc.<zone>` or `_tcp.<svc>.<ns>.svc.<zone>`) map to an empty list,
    /// so they answer NODATA rather than NXDOMAIN (RFC 8020).
    names: HashMap<LowerName, Vec<Record>>,
    /// PTR records by reverse name (in-addr.arpa and ip6.arpa).
    reverse: HashMap<LowerName, Vec<Record>>,
}

impl Zone {
    /// Builds the zone from the Services and Endpoints of every namespace. Objects with
    /// names that do not make valid DNS names are skipped with a warning.
    pub fn build<'a>(
        settings: &ZoneSettings,
        services: impl IntoIterator<Item = &'a Service>,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
    ) -> Zone {
        let endpoints: HashMap<(&str, &str), &Endpoints> = endpoints
            .into_iter()
            .filter_map(|e| {
                Some((
                    (
                        e.metadata.namespace.as_deref()?,
                        e.metadata.name.as_deref()?,
                    ),
                    e,
                ))
            })
            .collect();
        let mut zone = Zone::empty(settings);
        for service in services {
            let (Some(ns), Some(name)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            if let Err(err) =
                zone.add_service(ns, name, service, endpoints.get(&(ns, name)).copied())
            {
                tracing::warn!(namespace = ns, service = name, %err, "service skipped: its records are not valid DNS");
            }
        }
        zone
    }

    /// A zone with only the apex records (SOA, schema version).
    pub fn empty(settings: &ZoneSettings) -> Zone {
        let origin = settings.origin.clone();
        let at = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&origin))
                .expect("fixed labels are valid")
        };
        // The serial only has to grow between snapshots; seconds since the epoch do.
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let soa = Record::from_rdata(
            origin.clone(),
            settings.ttl,
            RData::SOA(SOA::new(
                at("ns.dns"),
                at("hostmaster"),
                serial,
                7200,
                1800,
                86400,
                settings.ttl,
            )),
        );
        let mut zone = Zone {
            origin: LowerName::new(&origin),
            origin_labels: origin.num_labels(),
            ttl: settings.ttl,
            soa: soa.clone(),
            names: HashMap::new(),
            reverse: HashMap::new(),
        };
        zone.add(soa);
        zone.add(Record::from_rdata(
            at("dns-version"),
            settings.ttl,
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
        ));
        for fixed in ["svc", "pod"] {
            zone.add_name(&at(fixed));
        }
        zone
    }

    /// The SOA record of the zone, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Whether `name` is in the cluster zone (answered with authority, never forwarded).
    pub fn contains(&self, name: &LowerName) -> bool {
        self.origin.zone_of(name)
    }

    /// Looks up `name`/`qtype`. `RecordType::ANY` returns every record of the name.
    pub fn lookup(&self, name: &LowerName, qtype: RecordType) -> Lookup {
        if !self.contains(name) {
            return match self.reverse.get(name) {
                Some(records) => select(records, qtype),
                None => Lookup::NotAuthoritative,
            };
        }
        match self.names.get(name) {
            Some(records) => select(records, qtype),
            None => self.lookup_pod(name, qtype),
        }
    }

    /// `<address with dashes>.<ns>.pod.<zone>` answers the address it spells, for any
    /// namespace (the "pods insecure" mode of kube-dns and CoreDNS).
    fn lookup_pod(&self, name: &LowerName, qtype: RecordType) -> Lookup {
        let name = Name::from(name);
        if name.num_labels() != self.origin_labels + 3 {
            return Lookup::NxDomain;
        }
        let labels: Vec<&[u8]> = name.iter().collect();
        if !labels[2].eq_ignore_ascii_case(b"pod") {
            return Lookup::NxDomain;
        }
        let Some(ip) = std::str::from_utf8(labels[0]).ok().and_then(ip_from_dashes) else {
            return Lookup::NxDomain;
        };
        let record = Record::from_rdata(name, self.ttl, RData::from(ip));
        select(&[record], qtype)
    }

    fn add_service(
        &mut self,
        ns: &str,
        name: &str,
        service: &Service,
        endpoints: Option<&Endpoints>,
    ) -> Result<(), hickory_proto::ProtoError> {
        let service_name = Name::from_ascii(format!("{name}.{ns}.svc"))?
            .append_domain(&Name::from(&self.origin))?;
        let spec = service.spec.clone().unwrap_or_default();
        self.add_name(&service_name);

        if spec.type_.as_deref() == Some("ExternalName") {
            let Some(external) = spec.external_name.as_deref().filter(|e| !e.is_empty()) else {
                return Ok(());
            };
            let mut target = Name::from_ascii(external.trim_end_matches('.'))?;
            target.set_fqdn(true);
            self.add(Record::from_rdata(
                service_name,
                self.ttl,
                RData::CNAME(CNAME(target)),
            ));
            return Ok(());
        }

        let cluster_ips: Vec<&str> = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        if cluster_ips.iter().any(|ip| ip.eq_ignore_ascii_case("none")) {
            return self.add_headless(&service_name, &spec, endpoints);
        }

        for ip in cluster_ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
        {
            self.add(Record::from_rdata(
                service_name.clone(),
                self.ttl,
                RData::from(ip),
            ));
            self.add_ptr(ip, &service_name);
        }
        for port in spec.ports.iter().flatten() {
            let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let srv_name = srv_owner(&service_name, port_name, port.protocol.as_deref())?;
            let srv = SRV::new(0, 100, port.port as u16, service_name.clone());
            self.add(Record::from_rdata(srv_name, self.ttl, RData::SRV(srv)));
        }
        Ok(())
    }

    fn add_headless(
        &mut self,
        service_name: &Name,
        spec: &k8s_openapi::api::core::v1::ServiceSpec,
        endpoints: Option<&Endpoints>,
    ) -> Result<(), hickory_proto::ProtoError> {
        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        // SRV records are collected first: their weights share 100 between targets.
        let mut srv: HashMap<Name, Vec<(u16, Name)>> = HashMap::new();
        for subset in endpoints
            .and_then(|e| e.subsets.as_ref())
            .into_iter()
            .flatten()
        {
            let not_ready = subset
                .not_ready_addresses
                .iter()
                .flatten()
                .filter(|_| publish_not_ready);
            for address in subset.addresses.iter().flatten().chain(not_ready) {
                let Ok(ip) = address.ip.parse::<IpAddr>() else {
                    continue;
                };
                let host = endpoint_name(service_name, address, ip)?;
                self.add(Record::from_rdata(
                    service_name.clone(),
                    self.ttl,
                    RData::from(ip),
                ));
                self.add(Record::from_rdata(host.clone(), self.ttl, RData::from(ip)));
                self.add_ptr(ip, &host);
                for port in subset.ports.iter().flatten() {
                    let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                        continue;
                    };
                    let owner = srv_owner(service_name, port_name, port.protocol.as_deref())?;
                    let targets = srv.entry(owner).or_default();
                    if !targets.contains(&(port.port as u16, host.clone())) {
                        targets.push((port.port as u16, host.clone()));
                    }
                }
            }
        }
        for (owner, targets) in srv {
            let weight = (100 / targets.len()).max(1) as u16;
            for (port, target) in targets {
                self.add(Record::from_rdata(
                    owner.clone(),
                    self.ttl,
                    RData::SRV(SRV::new(0, weight, port, target)),
                ));
            }
        }
        Ok(())
    }

    fn add_ptr(&mut self, ip: IpAddr, target: &Name) {
        let owner = Name::from(ip);
        let record = Record::from_rdata(owner.clone(), self.ttl, RData::PTR(PTR(target.clone())));
        let records = self.reverse.entry(LowerName::new(&owner)).or_default();
        if !records.contains(&record) {
            records.push(record);
        }
    }

    /// Adds a record and makes its owner and every ancestor up to the origin exist.
    fn add(&mut self, record: Record) {
        self.add_name(&record.name);
        let records = self.names.entry(LowerName::new(&record.name)).or_default();
        if !records.contains(&record) {
            records.push(record);
        }
    }

    fn add_name(&mut self, name: &Name) {
        let mut name = name.clone();
        while name.num_labels() >= self.origin_labels {
            self.names.entry(LowerName::new(&name)).or_default();
            if name.num_labels() == self.origin_labels {
                break;
            }
            name = name.base_name();
        }
    }
}

/// The records of one name that answer `qtype`.
fn select(records: &[Record], qtype: RecordType) -> Lookup {
    if qtype == RecordType::ANY {
        return if records.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Records(records.to_vec())
        };
    }
    let matching: Vec<Record> = records
        .iter()
        .filter(|r| r.record_type() == qtype)
        .cloned()
        .collect();
    if !matching.is_empty() {
        return Lookup::Records(matching);
    }
    // A CNAME owner has no other data: any other type is answered with the alias.
    match records
        .iter()
        .find(|r| r.record_type() == RecordType::CNAME)
    {
        Some(cname) => Lookup::Records(vec![cname.clone()]),
        None => Lookup::NoData,
    }
}

/// `_<port>._<proto>.<service name>`; the protocol defaults to TCP as in the API.
fn srv_owner(
    service_name: &Name,
    port: &str,
    protocol: Option<&str>,
) -> Result<Name, hickory_proto::ProtoError> {
    let protocol = protocol.unwrap_or("TCP").to_ascii_lowercase();
    Name::from_ascii(format!("_{port}._{protocol}"))?.append_domain(service_name)
}

/// `<hostname>.<service name>` for an endpoint, or the address with dashes
/// (`10-244-0-5`, `fd00--5`) when the endpoint has no hostname.
fn endpoint_name(
    service_name: &Name,
    address: &EndpointAddress,
    ip: IpAddr,
) -> Result<Name, hickory_proto::ProtoError> {
    let label = match address.hostname.as_deref().filter(|h| !h.is_empty()) {
        Some(hostname) => hostname.to_string(),
        None => ip_to_dashes(ip),
    };
    Name::from_ascii(&label)?.append_domain(service_name)
}

pub fn ip_to_dashes(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// Parses `10-244-0-5` or `fd00--5` back into an address.
pub fn ip_from_dashes(label: &str) -> Option<IpAddr> {
    label
        .replace('-', ".")
        .parse::<std::net::Ipv4Addr>()
        .map(IpAddr::V4)
        .ok()
        .or_else(|| {
            label
                .replace('-', ":")
                .parse::<std::net::Ipv6Addr>()
                .map(IpAddr::V6)
                .ok()
        })
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
