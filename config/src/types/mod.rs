//! Validated scalar types for the machine config (Bottlerocket-style modeled
//! types): each one parses from a YAML string and rejects bad input at parse
//! time with a message that quotes the value, e.g.
//! `"10.244.0.0/33" is not a CIDR`. The parser adds the field path.

mod misc;
mod names;
mod net;
mod secret;

pub use misc::{Duration, FileMode, Mtu, ScalarString, VlanId};
pub use names::{
    ArgName, ClusterName, DiskPath, DnsName, FilePath, ImageRef, InterfaceName, KubernetesVersion,
    LabelKey, LabelValue, RegistryName, SysctlName, TaintValue,
};
pub use net::{
    Cidr, ControlPlaneEndpoint, HardwareAddrSelector, HttpUrl, InterfaceAddress, IpAddress,
    LogEndpoint, NetworkHost, SubjectAltName,
};
pub use secret::{EncryptionKey, PemCertificate, PemPrivateKey, Token};

use std::borrow::Cow;

/// A scalar that lives in YAML as one string.
pub(crate) trait StrScalar: Sized {
    /// What a valid value looks like ("a CIDR such as 10.244.0.0/16"); used
    /// by serde when the YAML node is not a string at all.
    const EXPECTING: &'static str;
    /// Parse and validate; the error is a full sentence quoting the input.
    fn parse_text(s: &str) -> Result<Self, String>;
    /// The canonical text form written back to YAML.
    fn text(&self) -> Cow<'_, str>;
}

/// Serde visitor shared by every [`StrScalar`].
pub(crate) struct StrVisitor<T>(pub std::marker::PhantomData<T>);

impl<T: StrScalar> serde::de::Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        T::parse_text(v).map_err(E::custom)
    }
}

/// Implements Serialize, Deserialize, FromStr, Display and JsonSchema for a
/// [`StrScalar`]. `$schema` is the JSON Schema object (without `type`).
macro_rules! str_scalar {
    ($ty:ident, $schema:tt) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$crate::types::StrScalar::text(self))
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::types::StrVisitor::<$ty>(std::marker::PhantomData))
            }
        }
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$ty as $crate::types::StrScalar>::parse_text(s)
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(&$crate::types::StrScalar::text(self))
            }
        }
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let mut schema = schemars::json_schema!($schema);
                schema.insert("type".into(), "string".into());
                schema
            }
        }
    };
}
pub(crate) use str_scalar;

/// `"value"` as Rust's Debug would quote it, cut short for long inputs so an
/// error line stays readable.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}
