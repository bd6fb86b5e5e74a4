//! Who is asking: the aggregation layer's front proxy.
//!
//! kube-apiserver authenticates the user, then forwards the request to us
//! over TLS with its front-proxy client certificate and the user's name,
//! groups and extras in headers. Those headers are believed only on a
//! connection whose client certificate chains to the request-header CA and
//! whose Common Name is one of the allowed names. The CA, the names and
//! the header names come from the `extension-apiserver-authentication`
//! ConfigMap in kube-system, which kube-apiserver writes from its
//! `--requestheader-*` flags (the same source every aggregated API server
//! reads).
//!
//! Simplification, documented in the README: clients that come with a
//! bearer token or a client certificate of the cluster CA directly (not
//! through the API server) are refused with 401; everything reaches this
//! API through `kubectl`, the autoscaler and the API server anyway.

use std::collections::BTreeMap;

use http::HeaderMap;

/// The ConfigMap kube-apiserver publishes its authentication settings in.
pub const CONFIGMAP: &str = "extension-apiserver-authentication";
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthnError {
    #[error("ConfigMap kube-system/{CONFIGMAP} has no {0} (is kube-apiserver run with --requestheader-client-ca-file?)")]
    Missing(&'static str),
    #[error("ConfigMap kube-system/{CONFIGMAP}: {key} is not a JSON list of strings: {why}")]
    BadList { key: &'static str, why: String },
}

/// The request-header settings of the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// PEM bundle the front proxy's certificate must chain to.
    pub client_ca_pem: String,
    /// Common Names allowed to set the headers; empty allows any
    /// certificate of the CA (as Kubernetes does).
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

fn list(data: &BTreeMap<String, String>, key: &'static str) -> Result<Vec<String>, AuthnError> {
    match data.get(key) {
        None => Ok(Vec::new()),
        Some(s) if s.trim().is_empty() => Ok(Vec::new()),
        Some(s) => serde_json::from_str(s).map_err(|e| AuthnError::BadList {
            key,
            why: e.to_string(),
        }),
    }
}

impl RequestHeader {
    /// From the ConfigMap's `data`.
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Result<Self, AuthnError> {
        let client_ca_pem = data
            .get("requestheader-client-ca-file")
            .filter(|s| !s.trim().is_empty())
            .ok_or(AuthnError::Missing("requestheader-client-ca-file"))?
            .clone();
        let username_headers = list(data, "requestheader-username-headers")?;
        if username_headers.is_empty() {
            return Err(AuthnError::Missing("requestheader-username-headers"));
        }
        Ok(RequestHeader {
            client_ca_pem,
            allowed_names: list(data, "requestheader-allowed-names")?,
            username_headers,
            group_headers: list(data, "requestheader-group-headers")?,
            extra_prefixes: list(data, "requestheader-extra-headers-prefix")?,
        })
    }

    /// Whether the (already chain-verified) client certificate `der` may
    /// act as the front proxy: its Common Name is allowed.
    pub fn proxy_allowed(&self, der: &[u8]) -> Result<(), String> {
        if self.allowed_names.is_empty() {
            return Ok(());
        }
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unreadable client certificate: {e}"))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default();
        if self.allowed_names.iter().any(|n| n == cn) {
            Ok(())
        } else {
            Err(format!(
                "client certificate CN {cn:?} is not one of the request-header allowed names {:?}",
                self.allowed_names
            ))
        }
    }

    /// The user the front proxy names in `headers`; `None` without a name.
    pub fn user(&self, headers: &HeaderMap) -> Option<User> {
        let name = self
            .username_headers
            .iter()
            .find_map(|h| headers.get(h.as_str())?.to_str().ok())
            .filter(|n| !n.is_empty())?
            .to_string();
        let groups = self
            .group_headers
            .iter()
            .flat_map(|h| headers.get_all(h.as_str()).iter())
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in headers {
            let k = k.as_str();
            for prefix in &self.extra_prefixes {
                let p = prefix.to_ascii_lowercase();
                if let (Some(key), Ok(v)) = (k.strip_prefix(p.as_str()), v.to_str()) {
                    extra
                        .entry(unescape(key).to_ascii_lowercase())
                        .or_default()
                        .push(v.to_string());
                }
            }
        }
        Some(User {
            name,
            groups,
            extra,
        })
    }
}

/// Extra keys are percent-escaped in header names.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "requestheader-client-ca-file".into(),
                "-----BEGIN CERTIFICATE-----\n...".into(),
            ),
            (
                "requestheader-allowed-names".into(),
                "[\"front-proxy-client\"]".into(),
            ),
            (
                "requestheader-username-headers".into(),
                "[\"X-Remote-User\"]".into(),
            ),
            (
                "requestheader-group-headers".into(),
                "[\"X-Remote-Group\"]".into(),
            ),
            (
                "requestheader-extra-headers-prefix".into(),
                "[\"X-Remote-Extra-\"]".into(),
            ),
        ])
    }

    #[test]
    fn reads_what_kube_apiserver_publishes() {
        let rh = RequestHeader::from_configmap(&data()).unwrap();
        assert_eq!(rh.allowed_names, ["front-proxy-client"]);
        assert_eq!(rh.username_headers, ["X-Remote-User"]);
        let mut d = data();
        d.remove("requestheader-client-ca-file");
        assert_eq!(
            RequestHeader::from_configmap(&d).unwrap_err(),
            AuthnError::Missing("requestheader-client-ca-file")
        );
        let mut d = data();
        d.insert(
            "requestheader-group-headers".into(),
            "X-Remote-Group".into(),
        );
        assert!(RequestHeader::from_configmap(&d)
            .unwrap_err()
            .to_string()
            .contains("requestheader-group-headers"));
    }

    #[test]
    fn the_user_from_the_headers() {
        let rh = RequestHeader::from_configmap(&data()).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(rh.user(&h), None);
        h.insert("x-remote-user", "alice".parse().unwrap());
        h.append("x-remote-group", "dev".parse().unwrap());
        h.append("x-remote-group", "system:authenticated".parse().unwrap());
        h.append("x-remote-extra-scopes", "a".parse().unwrap());
        h.append("x-remote-extra-acme.com%2fproject", "p1".parse().unwrap());
        let u = rh.user(&h).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, ["dev", "system:authenticated"]);
        assert_eq!(u.extra["scopes"], ["a"]);
        assert_eq!(u.extra["acme.com/project"], ["p1"]);
    }
}
