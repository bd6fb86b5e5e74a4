//! Network scalars: CIDRs, addresses, URLs, SANs.

use std::borrow::Cow;
use std::net::IpAddr;

use super::names::{check_dns_name, check_wildcard_dns_name};
use super::{quote, str_scalar, StrScalar};

/// A network prefix such as `10.244.0.0/16` (host bits must be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    pub fn net(&self) -> ipnet::IpNet {
        self.0
    }
    pub fn is_ipv4(&self) -> bool {
        matches!(self.0, ipnet::IpNet::V4(_))
    }
}

impl StrScalar for Cidr {
    const EXPECTING: &'static str = "a CIDR such as 10.244.0.0/16";
    fn parse_text(s: &str) -> Result<Self, String> {
        let net: ipnet::IpNet = s
            .parse()
            .map_err(|_| format!("{} is not a CIDR (expected e.g. 10.244.0.0/16)", quote(s)))?;
        if net.trunc() != net {
            return Err(format!(
                "{} is not a network prefix: host bits are set (did you mean {}?)",
                quote(s),
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
    fn text(&self) -> Cow<'_, str> {
        self.0.to_string().into()
    }
}
str_scalar!(Cidr, {
    "description": "A network prefix in CIDR notation with zero host bits.",
    "examples": ["10.244.0.0/16", "fd00:10:244::/56"]
});

/// An interface address with its prefix length, such as `10.5.0.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceAddress(ipnet::IpNet);

impl InterfaceAddress {
    pub fn net(&self) -> ipnet::IpNet {
        self.0
    }
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }
}

impl StrScalar for InterfaceAddress {
    const EXPECTING: &'static str = "an address with prefix length such as 10.5.0.2/24";
    fn parse_text(s: &str) -> Result<Self, String> {
        match s.parse::<ipnet::IpNet>() {
            Ok(net) => Ok(InterfaceAddress(net)),
            Err(_) if s.parse::<IpAddr>().is_ok() => Err(format!(
                "{} has no prefix length (expected e.g. {s}/24)",
                quote(s)
            )),
            Err(_) => Err(format!(
                "{} is not an address with prefix length (expected e.g. 10.5.0.2/24)",
                quote(s)
            )),
        }
    }
    fn text(&self) -> Cow<'_, str> {
        self.0.to_string().into()
    }
}
str_scalar!(InterfaceAddress, {
    "description": "An IP address with its prefix length.",
    "examples": ["10.5.0.2/24", "fd00::2/64"]
});

/// An IPv4 or IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpAddress(IpAddr);

impl IpAddress {
    pub fn addr(&self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for IpAddress {
    fn from(a: IpAddr) -> Self {
        IpAddress(a)
    }
}

impl StrScalar for IpAddress {
    const EXPECTING: &'static str = "an IP address such as 10.5.0.1";
    fn parse_text(s: &str) -> Result<Self, String> {
        s.parse()
            .map(IpAddress)
            .map_err(|_| format!("{} is not an IP address", quote(s)))
    }
    fn text(&self) -> Cow<'_, str> {
        self.0.to_string().into()
    }
}
str_scalar!(IpAddress, {
    "description": "An IPv4 or IPv6 address.",
    "examples": ["10.5.0.1", "fd00::1"]
});

/// The Kubernetes API endpoint of the cluster: an `https` URL with a host
/// and (optionally) a port, e.g. `https://10.5.0.2:6443`. Kept as written so
/// rendering gives back the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControlPlaneEndpoint {
    text: String,
    host: String,
    port: u16,
}

impl ControlPlaneEndpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// Port, 443 when the URL has none.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl StrScalar for ControlPlaneEndpoint {
    const EXPECTING: &'static str = "an https URL such as https://10.5.0.2:6443";
    fn parse_text(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("{} is not a URL: {e}", quote(s)))?;
        if url.scheme() != "https" {
            return Err(format!(
                "{} must be an https URL (the Kubernetes API is only served over TLS)",
                quote(s)
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(format!("{} has no host", quote(s))),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{} must not carry credentials", quote(s)));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{} must be only scheme, host and port (no path, query or fragment)",
                quote(s)
            ));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        if port == 0 {
            return Err(format!("{} has port 0", quote(s)));
        }
        Ok(ControlPlaneEndpoint {
            text: s.to_string(),
            host,
            port,
        })
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.text)
    }
}
str_scalar!(ControlPlaneEndpoint, {
    "description": "An https URL with host and optional port (default 443).",
    "format": "uri",
    "examples": ["https://10.5.0.2:6443", "https://cp.example.org:6443"]
});

/// An `http` or `https` URL (registry mirrors, CNI manifests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl StrScalar for HttpUrl {
    const EXPECTING: &'static str = "an http or https URL";
    fn parse_text(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("{} is not a URL: {e}", quote(s)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{} must be an http or https URL", quote(s)));
        }
        if url.host().is_none() {
            return Err(format!("{} has no host", quote(s)));
        }
        Ok(HttpUrl(s.to_string()))
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}
str_scalar!(HttpUrl, {
    "description": "An http or https URL.",
    "format": "uri",
    "examples": ["https://mirror.example.org"]
});

/// Where machined sends its logs: `tcp://host:port` or `udp://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogEndpoint {
    text: String,
    pub udp: bool,
    pub host: String,
    pub port: u16,
}

impl StrScalar for LogEndpoint {
    const EXPECTING: &'static str = "a tcp:// or udp:// URL with a host and a port";
    fn parse_text(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("{} is not a URL: {e}", quote(s)))?;
        let udp = match url.scheme() {
            "tcp" => false,
            "udp" => true,
            _ => return Err(format!("{} must be a tcp:// or udp:// URL", quote(s))),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{} has no host", quote(s)))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = url
            .port()
            .ok_or_else(|| format!("{} has no port", quote(s)))?;
        if !matches!(url.path(), "" | "/") {
            return Err(format!("{} must not have a path", quote(s)));
        }
        Ok(LogEndpoint {
            text: s.to_string(),
            udp,
            host,
            port,
        })
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.text)
    }
}
str_scalar!(LogEndpoint, {
    "description": "A tcp:// or udp:// URL with a host and a port.",
    "examples": ["tcp://10.96.0.11:5170", "udp://192.168.1.5:514"]
});

/// A host given as an IP address or a DNS name (time servers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetworkHost {
    Ip(IpAddr),
    Dns(String),
}

impl StrScalar for NetworkHost {
    const EXPECTING: &'static str = "an IP address or DNS name";
    fn parse_text(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse() {
            return Ok(NetworkHost::Ip(ip));
        }
        check_dns_name(s)
            .map(|()| NetworkHost::Dns(s.to_string()))
            .map_err(|why| {
                format!(
                    "{} is neither an IP address nor a DNS name: {why}",
                    quote(s)
                )
            })
    }
    fn text(&self) -> Cow<'_, str> {
        match self {
            NetworkHost::Ip(ip) => ip.to_string().into(),
            NetworkHost::Dns(d) => Cow::Borrowed(d),
        }
    }
}
str_scalar!(NetworkHost, {
    "description": "An IP address or a DNS name.",
    "examples": ["pool.ntp.org", "10.5.0.1"]
});

/// A certificate subject alternative name: an IP address or a DNS name
/// (a leading `*.` wildcard label is allowed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    Ip(IpAddr),
    Dns(String),
}

impl StrScalar for SubjectAltName {
    const EXPECTING: &'static str = "an IP address or DNS name";
    fn parse_text(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse() {
            return Ok(SubjectAltName::Ip(ip));
        }
        check_wildcard_dns_name(s)
            .map(|()| SubjectAltName::Dns(s.to_string()))
            .map_err(|why| {
                format!(
                    "{} is neither an IP address nor a DNS name: {why}",
                    quote(s)
                )
            })
    }
    fn text(&self) -> Cow<'_, str> {
        match self {
            SubjectAltName::Ip(ip) => ip.to_string().into(),
            SubjectAltName::Dns(d) => Cow::Borrowed(d),
        }
    }
}
str_scalar!(SubjectAltName, {
    "description": "A subject alternative name: an IP address or a DNS name (wildcard `*.` allowed).",
    "examples": ["10.5.0.2", "cp.example.org", "*.example.org"]
});

/// Selects a link by MAC address; `*` matches any run of characters
/// (`52:54:00:*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HardwareAddrSelector(String);

impl HardwareAddrSelector {
    /// Whether a MAC address (e.g. from /sys/class/net/*/address) matches.
    pub fn matches(&self, mac: &str) -> bool {
        glob_match(self.0.as_bytes(), mac.to_ascii_lowercase().as_bytes())
    }
}

/// `*`-only glob, hand-written because this is the only glob the config needs.
fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    match pattern.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

impl StrScalar for HardwareAddrSelector {
    const EXPECTING: &'static str = "a MAC address such as 52:54:00:12:34:56 (may use *)";
    fn parse_text(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'*')
            && s.split(':')
                .all(|part| part.contains('*') || part.len() == 2);
        if !ok {
            return Err(format!(
                "{} is not a MAC address selector (expected e.g. 52:54:00:12:34:56 or 52:54:00:*)",
                quote(s)
            ));
        }
        Ok(HardwareAddrSelector(s.to_ascii_lowercase()))
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}
str_scalar!(HardwareAddrSelector, {
    "description": "A MAC address; `*` matches any characters.",
    "examples": ["52:54:00:12:34:56", "52:54:00:*"]
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        assert_eq!(
            Cidr::parse_text("10.244.0.0/16").unwrap().text(),
            "10.244.0.0/16"
        );
        assert_eq!(
            Cidr::parse_text("10.244.0.0/33").unwrap_err(),
            r#""10.244.0.0/33" is not a CIDR (expected e.g. 10.244.0.0/16)"#
        );
        assert!(Cidr::parse_text("10.244.0.1/16")
            .unwrap_err()
            .contains("did you mean 10.244.0.0/16"));
        assert!(Cidr::parse_text("fd00::/8").unwrap().text() == "fd00::/8");
    }

    #[test]
    fn endpoint() {
        let e = ControlPlaneEndpoint::parse_text("https://10.5.0.2:6443").unwrap();
        assert_eq!((e.host(), e.port()), ("10.5.0.2", 6443));
        assert_eq!(e.text(), "https://10.5.0.2:6443");
        assert_eq!(
            ControlPlaneEndpoint::parse_text("https://cp.example")
                .unwrap()
                .port(),
            443
        );
        assert!(ControlPlaneEndpoint::parse_text("https://10.5.0.2:70000")
            .unwrap_err()
            .contains("invalid port number"));
        assert!(ControlPlaneEndpoint::parse_text("http://10.5.0.2:6443")
            .unwrap_err()
            .contains("https"));
        assert!(ControlPlaneEndpoint::parse_text("10.5.0.2:6443").is_err());
        assert!(ControlPlaneEndpoint::parse_text("https://h:6443/api").is_err());
        let v6 = ControlPlaneEndpoint::parse_text("https://[fd00::2]:6443").unwrap();
        assert_eq!(v6.ip(), Some("fd00::2".parse().unwrap()));
    }

    #[test]
    fn addresses() {
        assert!(InterfaceAddress::parse_text("10.5.0.2")
            .unwrap_err()
            .contains("no prefix length"));
        assert_eq!(
            InterfaceAddress::parse_text("10.5.0.2/24").unwrap().text(),
            "10.5.0.2/24"
        );
        assert!(IpAddress::parse_text("10.5.0.300").is_err());
        assert_eq!(
            SubjectAltName::parse_text("*.example.org").unwrap(),
            SubjectAltName::Dns("*.example.org".into())
        );
        assert!(SubjectAltName::parse_text("bad name").is_err());
    }

    #[test]
    fn mac_selector() {
        let s = HardwareAddrSelector::parse_text("52:54:00:*").unwrap();
        assert!(s.matches("52:54:00:12:34:56"));
        assert!(s.matches("52:54:00:AB:34:56"));
        assert!(!s.matches("52:55:00:12:34:56"));
        assert!(HardwareAddrSelector::parse_text("zz:00").is_err());
    }
}
