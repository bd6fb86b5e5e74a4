//! Kubeconfig files: rendered for the components (admin, controller-manager,
//! scheduler, kubelet) and read back, so that a client certificate already
//! on disk can be kept when nothing it names has changed.
//!
//! Hand-written serde types rather than kube's `Kubeconfig`: only the few
//! fields a generated kubeconfig carries are needed, and machined should not
//! depend on the whole Kubernetes client for writing a YAML file.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub users: Vec<NamedUser>,
    pub contexts: Vec<NamedContext>,
    pub current_context: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    pub certificate_authority_data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

/// How the user authenticates.
pub enum Credentials<'a> {
    /// A client certificate and its key, PEM.
    ClientCert { crt: &'a str, key: &'a str },
    /// A bearer token (the kubelet's bootstrap token).
    Token(&'a str),
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig with one cluster, one user and one context named
/// `<user>@<cluster>`.
pub fn render(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    creds: Credentials<'_>,
) -> String {
    let user_entry = match creds {
        Credentials::ClientCert { crt, key } => User {
            client_certificate_data: Some(b64(crt)),
            client_key_data: Some(b64(key)),
            token: None,
        },
        Credentials::Token(t) => User {
            token: Some(t.to_string()),
            ..User::default()
        },
    };
    let context = format!("{user}@{cluster}");
    let k = Kubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: cluster.into(),
            cluster: Cluster {
                server: server.into(),
                certificate_authority_data: b64(ca_pem),
            },
        }],
        users: vec![NamedUser {
            name: user.into(),
            user: user_entry,
        }],
        contexts: vec![NamedContext {
            name: context.clone(),
            context: Context {
                cluster: cluster.into(),
                user: user.into(),
            },
        }],
        current_context: context,
    };
    serde_yaml::to_string(&k).expect("a kubeconfig always serializes")
}

/// The client certificate and key (PEM) of the first user of a kubeconfig.
pub fn client_cert(text: &[u8]) -> Option<(String, String)> {
    let k: Kubeconfig = serde_yaml::from_slice(text).ok()?;
    let u = &k.users.first()?.user;
    let decode = |s: &Option<String>| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.as_ref()?)
            .ok()?;
        String::from_utf8(bytes).ok()
    };
    Some((
        decode(&u.client_certificate_data)?,
        decode(&u.client_key_data)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_reads_back_the_client_certificate() {
        let text = render(
            "c1",
            "https://10.5.0.2:6443",
            "CA",
            "admin",
            Credentials::ClientCert {
                crt: "CRT",
                key: "KEY",
            },
        );
        assert!(text.contains("current-context: admin@c1"), "{text}");
        assert!(text.contains("certificate-authority-data: Q0E="), "{text}");
        assert_eq!(
            client_cert(text.as_bytes()),
            Some(("CRT".into(), "KEY".into()))
        );
        let token = render(
            "c1",
            "https://x:6443",
            "CA",
            "kubelet",
            Credentials::Token("abc.def"),
        );
        assert!(token.contains("token: abc.def"));
        assert_eq!(client_cert(token.as_bytes()), None);
    }
}
