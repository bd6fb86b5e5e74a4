//! GenerateClientConfiguration: a client certificate for a person, minted
//! from the OS CA with the role and lifetime asked for (`cairnctl config
//! new --roles os:reader --crt-ttl 24h`), so an admin can hand out
//! short-lived, lesser access without handing out the CA key or their
//! own certificate. apid lets only admins call it; only nodes that hold
//! the OS CA key (control planes) can answer. Each certificate issued is
//! on the console and in the event log: who it is for, its role, until when.

use std::time::Duration;

use api::machine::{GenerateClientConfigurationRequest, GenerateClientConfigurationResponse};
use config::pki::{self, CertifiedKey, RoleCertError, DEFAULT_ROLE_CERT_TTL};
use runtime::resources::specs::EventType;
use tonic::Status;

use crate::state::Node;

/// The lifetime asked for: the request's, else the default. A negative or
/// out-of-range duration is refused with the field's name.
pub fn ttl_of(req: &GenerateClientConfigurationRequest) -> Result<Duration, Status> {
    match &req.crt_ttl {
        None => Ok(DEFAULT_ROLE_CERT_TTL),
        Some(d) => u64::try_from(d.seconds)
            .ok()
            .filter(|_| d.nanos >= 0)
            .map(|s| Duration::new(s, d.nanos as u32))
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "crt_ttl: {} s is not a lifetime (negative)",
                    d.seconds
                ))
            }),
    }
}

/// Issues the certificate `req` asks for from `ca`; the answer carries the
/// CA certificate (to verify the nodes), the certificate and its key.
pub fn mint(
    ca: &CertifiedKey,
    req: &GenerateClientConfigurationRequest,
) -> Result<GenerateClientConfigurationResponse, Status> {
    let ttl = ttl_of(req)?;
    let issued = pki::issue_role_certificate(ca, &req.name, &req.roles, ttl).map_err(|e| {
        let msg = e.to_string();
        match e {
            RoleCertError::Pki(_) => Status::internal(msg),
            _ => Status::invalid_argument(msg),
        }
    })?;
    Ok(GenerateClientConfigurationResponse {
        ca: ca.crt.pem().to_string(),
        crt: issued.crt.pem().to_string(),
        key: issued.key.pem().to_string(),
    })
}

/// The handler: the running config's OS CA, the certificate minted off the
/// runtime thread (key generation), the issue recorded.
pub async fn generate(
    node: &Node,
    req: GenerateClientConfigurationRequest,
) -> Result<GenerateClientConfigurationResponse, Status> {
    let cfg = node
        .running_config()
        .ok_or_else(|| Status::failed_precondition("this node has no machine config yet"))?;
    let Some(ca) = cfg.machine.ca.certified_key() else {
        return Err(Status::failed_precondition(
            "this node holds no OS CA key (a worker): ask a control-plane node (-n)",
        ));
    };
    let (name, roles) = (req.name.clone(), req.roles.join(","));
    let answer = tokio::task::spawn_blocking(move || mint(&ca, &req))
        .await
        .map_err(|e| Status::internal(format!("the signing task failed: {e}")))??;
    let until = expiry(&answer.crt).unwrap_or_default();
    let what =
        format!("issued a client certificate to {name:?} (asked for {roles}; valid until {until})");
    runtime::console!("api: {what}");
    node.events.record(EventType::Certificate, what);
    Ok(answer)
}

/// When the certificate `pem` expires, for the log.
fn expiry(pem: &str) -> Option<String> {
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = der.parse_x509().ok()?;
    Some(cert.validity().not_after.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(roles: &[&str], ttl: Option<i64>) -> GenerateClientConfigurationRequest {
        GenerateClientConfigurationRequest {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            crt_ttl: ttl.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            name: "alice".into(),
        }
    }

    fn organizations(pem: &str) -> Vec<String> {
        let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = der.parse_x509().unwrap();
        cert.subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_reader_certificate_chains_to_the_os_ca_and_carries_the_role() {
        let ca = pki::create_os_ca().unwrap();
        let answer = mint(&ca, &request(&["os:reader"], Some(3600))).unwrap();
        assert_eq!(answer.ca, ca.crt.pem().to_string());
        assert_eq!(organizations(&answer.crt), ["os:reader"]);
        let crt: config::types::PemCertificate = answer.crt.parse().unwrap();
        let key: config::types::PemPrivateKey = answer.key.parse().unwrap();
        assert!(pki::key_matches(&crt, &key));
        let until = expiry(&answer.crt).unwrap();
        assert!(!until.is_empty());
    }

    #[test]
    fn the_strongest_role_named_is_the_one_issued() {
        let ca = pki::create_os_ca().unwrap();
        let answer = mint(&ca, &request(&["os:reader", "os:operator"], None)).unwrap();
        assert_eq!(organizations(&answer.crt), ["os:operator"]);
    }

    #[test]
    fn bad_requests_are_refused_naming_what_is_wrong() {
        let ca = pki::create_os_ca().unwrap();
        for (req, says) in [
            (request(&[], None), "role"),
            (request(&["os:impersonator"], None), "unknown role"),
            (request(&["os:reader"], Some(-5)), "crt_ttl"),
            (request(&["os:reader"], Some(10)), "at least 60 s"),
            (
                request(&["os:reader"], Some(400 * 86400)),
                "at most 365 days",
            ),
        ] {
            let e = mint(&ca, &req).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{req:?}");
            assert!(e.message().contains(says), "{req:?}: {}", e.message());
        }
        let mut nameless = request(&["os:reader"], None);
        nameless.name.clear();
        assert!(mint(&ca, &nameless).unwrap_err().message().contains("name"));
    }
}
