//! The client config (`cairnconfig`): named contexts, each with the
//! endpoints to dial, the default nodes to act on, the OS CA and an API
//! client certificate and key. Kept 0600 since it holds a key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, WriteError};
use crate::types::{PemCertificate, PemPrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("no context named {0:?} in the client config")]
    NoSuchContext(String),
    #[error("the client config names no current context; pass --context")]
    NoCurrentContext,
}

/// The client config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConfig {
    /// The context used when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// How to reach and authenticate to one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Context {
    /// apid endpoints to connect to (`host` or `host:port`; port 50000 by
    /// default).
    pub endpoints: Vec<String>,
    /// Nodes to act on when none are given on the command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The OS CA certificate, to verify apid.
    pub ca: PemCertificate,
    /// The client certificate (its Organization is the API role).
    pub crt: PemCertificate,
    /// The client certificate's key.
    pub key: PemPrivateKey,
}

impl ClientConfig {
    /// `$HOME/.cairn/config`.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cairn").join("config"))
    }

    /// Parse client config YAML; `name` labels errors (usually the path).
    pub fn parse(bytes: &[u8], name: &str) -> Result<ClientConfig, ClientConfigError> {
        let parse_err = |message: String| ClientConfigError::Parse {
            path: name.to_string(),
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| parse_err("not UTF-8 text".into()))?;
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                parse_err(e.inner().to_string())
            } else {
                parse_err(format!("{path}: {}", e.inner()))
            }
        })
    }

    /// Read a client config file.
    pub fn load(path: &Path) -> Result<ClientConfig, ClientConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ClientConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// The config as YAML.
    pub fn render(&self) -> String {
        crate::document::to_yaml(self)
    }

    /// Write atomically with mode 0600, replacing an existing file when
    /// `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), ClientConfigError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| {
                ClientConfigError::Write(WriteError::Io {
                    path: dir.display().to_string(),
                    source,
                })
            })?;
        }
        Ok(fsutil::write_private(
            path,
            self.render().as_bytes(),
            overwrite,
        )?)
    }

    /// The named context, or the current one when `name` is `None`.
    pub fn context(&self, name: Option<&str>) -> Result<(&str, &Context), ClientConfigError> {
        let name = match name {
            Some(n) => n,
            None => self
                .context
                .as_deref()
                .ok_or(ClientConfigError::NoCurrentContext)?,
        };
        self.contexts
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| ClientConfigError::NoSuchContext(name.to_string()))
    }
}
