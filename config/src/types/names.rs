//! Name-like scalars: DNS names, paths, image references, label keys.

use std::borrow::Cow;

use super::{quote, str_scalar, StrScalar};

/// A string newtype validated by `check`, which explains what is wrong.
/// `$what` completes "... is not <what>".
macro_rules! checked_string {
    ($(#[$meta:meta])* $ty:ident, $what:literal, $check:expr, $schema:tt) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl StrScalar for $ty {
            const EXPECTING: &'static str = $what;
            fn parse_text(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(s).map_err(|why| format!("{} is not {}: {why}", quote(s), $what))?;
                Ok($ty(s.to_string()))
            }
            fn text(&self) -> Cow<'_, str> {
                Cow::Borrowed(&self.0)
            }
        }
        str_scalar!($ty, $schema);
    };
}

/// RFC 1123 DNS name: dot-separated labels of a-z, 0-9 and '-', each 1-63
/// characters, not starting or ending with '-', 253 characters at most.
pub(crate) fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    s.split('.').try_for_each(check_dns_label)
}

/// A DNS name whose first label may be `*`.
pub(crate) fn check_wildcard_dns_name(s: &str) -> Result<(), String> {
    check_dns_name(s.strip_prefix("*.").unwrap_or(s))
}

fn check_dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(
            "it has an empty label (two dots in a row, or a leading or trailing dot)".into(),
        );
    }
    if label.len() > 63 {
        return Err(format!("label {label:?} is longer than 63 characters"));
    }
    if label.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("it must be lowercase".into());
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only a-z, 0-9, '-' and '.' are allowed".into());
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} starts or ends with '-'"));
    }
    Ok(())
}

checked_string!(
    /// A DNS name such as `cp-1` or `cluster.local` (RFC 1123, lowercase).
    DnsName,
    "a DNS name",
    check_dns_name,
    {
        "description": "A lowercase RFC 1123 DNS name.",
        "format": "hostname",
        "examples": ["cp-1", "cluster.local"]
    }
);

checked_string!(
    /// The name of a cluster: one DNS label (a-z, 0-9, '-'; at most 63
    /// characters). It names the kubeconfig and cairnconfig contexts too.
    ClusterName,
    "a valid cluster name",
    check_dns_label,
    {
        "description": "One DNS label: a-z, 0-9 and '-', at most 63 characters.",
        "examples": ["demo"]
    }
);

fn check_disk_path(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("/dev/")
        .ok_or("expected a device path under /dev such as /dev/vda")?;
    if rest.is_empty() || s.ends_with('/') {
        return Err("it names no device".into());
    }
    check_path_chars(s)
}

fn check_path_chars(s: &str) -> Result<(), String> {
    if s.len() > 4096 {
        return Err("it is longer than 4096 characters".into());
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("it contains control characters".into());
    }
    if s.split('/').any(|part| part == ".." || part == ".") {
        return Err("it contains '.' or '..' components".into());
    }
    if s.contains("//") {
        return Err("it contains an empty component ('//')".into());
    }
    Ok(())
}

checked_string!(
    /// A block device to install to, such as `/dev/vda` or
    /// `/dev/disk/by-id/...`.
    DiskPath,
    "a disk path",
    check_disk_path,
    {
        "description": "A block device path under /dev.",
        "pattern": "^/dev/.+",
        "examples": ["/dev/vda", "/dev/nvme0n1"]
    }
);

fn check_file_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("it must be an absolute path".into());
    }
    if s == "/" || s.ends_with('/') {
        return Err("it must name a file, not a directory".into());
    }
    check_path_chars(s)
}

checked_string!(
    /// An absolute path of a file on the node.
    FilePath,
    "an absolute file path",
    check_file_path,
    {
        "description": "An absolute file path.",
        "pattern": "^/.+",
        "examples": ["/var/etc/example.conf"]
    }
);

fn check_interface_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err("it must be 1 to 15 characters long".into());
    }
    if s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("it must not contain '/', ':' or whitespace".into());
    }
    Ok(())
}

checked_string!(
    /// A Linux network interface name such as `eth0` (at most 15 characters).
    InterfaceName,
    "an interface name",
    check_interface_name,
    {
        "description": "A Linux network interface name (1-15 characters, no '/', ':' or whitespace).",
        "examples": ["eth0", "enp0s3"]
    }
);

fn check_sysctl_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 256 {
        return Err("it must be 1 to 256 characters long".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    {
        return Err("only letters, digits, '_', '-', '.' and '/' are allowed".into());
    }
    if s.starts_with(['.', '/']) || s.contains("..") {
        return Err("it must not start with '.' or '/' nor contain '..'".into());
    }
    Ok(())
}

checked_string!(
    /// A kernel parameter name such as `net.ipv4.ip_forward`.
    SysctlName,
    "a sysctl name",
    check_sysctl_name,
    {
        "description": "A kernel parameter name (as under /proc/sys, with '.' or '/' separators).",
        "examples": ["net.ipv4.ip_forward"]
    }
);

fn check_arg_name(s: &str) -> Result<(), String> {
    if s.starts_with('-') {
        return Err("write the flag without the leading dashes".into());
    }
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err("only letters, digits, '-', '_' and '.' are allowed".into());
    }
    Ok(())
}

checked_string!(
    /// A command-line flag name without the leading dashes
    /// (`feature-gates`, not `--feature-gates`).
    ArgName,
    "a flag name",
    check_arg_name,
    {
        "description": "A command-line flag name without the leading dashes.",
        "examples": ["feature-gates", "v"]
    }
);

/// Kubernetes "name" part of a qualified name or a label value.
fn check_k8s_name(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("the name part is longer than 63 characters".into());
    }
    let bytes = s.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
    let ends_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if !inner_ok || !ends_ok {
        return Err("it must be alphanumeric with '-', '_' or '.' inside".into());
    }
    Ok(())
}

fn check_label_key(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((prefix, name)) => {
            check_dns_name(prefix).map_err(|why| format!("prefix {prefix:?}: {why}"))?;
            check_k8s_name(name)
        }
        None => check_k8s_name(s),
    }
}

checked_string!(
    /// A Kubernetes label or taint key: `[prefix/]name`, e.g.
    /// `node-role.kubernetes.io/edge`.
    LabelKey,
    "a label key",
    check_label_key,
    {
        "description": "A Kubernetes qualified name: an optional DNS prefix and '/', then a name of at most 63 characters.",
        "examples": ["example.org/rack", "zone"]
    }
);

checked_string!(
    /// A Kubernetes label value (may be empty; at most 63 characters).
    LabelValue,
    "a label value",
    |s| if s.is_empty() { Ok(()) } else { check_k8s_name(s) },
    {
        "description": "A Kubernetes label value: empty, or at most 63 alphanumeric characters with '-', '_' or '.' inside.",
        "examples": ["r1"]
    }
);

fn check_taint(s: &str) -> Result<(), String> {
    let (value, effect) = s
        .rsplit_once(':')
        .ok_or("expected value:Effect, e.g. true:NoSchedule")?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "effect {effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute"
        ));
    }
    if value.is_empty() {
        Ok(())
    } else {
        check_k8s_name(value)
    }
}

checked_string!(
    /// A taint's `value:Effect` (the value may be empty: `:NoSchedule`).
    TaintValue,
    "a taint",
    check_taint,
    {
        "description": "value:Effect where Effect is NoSchedule, PreferNoSchedule or NoExecute.",
        "examples": ["true:NoSchedule", ":NoExecute"]
    }
);

fn check_registry_name(s: &str) -> Result<(), String> {
    if s == "*" {
        return Ok(());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    };
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(format!("port {p:?} is not in 1-65535"))?;
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    check_dns_name(host)
}

checked_string!(
    /// A registry host (`docker.io`, `registry.local:5000`) or `*` for
    /// every registry.
    RegistryName,
    "a registry name",
    check_registry_name,
    {
        "description": "A registry host with optional port, or '*' for all registries.",
        "examples": ["docker.io", "registry.local:5000", "*"]
    }
);

/// Container image reference grammar, simplified from the distribution
/// `reference` package (hand-written: no maintained Rust crate validates
/// references without pulling in a registry client).
fn check_image_ref(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 512 {
        return Err("it must be 1 to 512 characters long".into());
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or("the digest must start with sha256:")?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("the sha256 digest must be 64 lowercase hex digits".into());
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(format!("tag {tag:?} is not valid"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        check_registry_name(parts.remove(0)).map_err(|why| format!("registry: {why}"))?;
    }
    for part in parts {
        let bytes = part.as_bytes();
        let ok = !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
            && bytes.first().is_some_and(|b| b.is_ascii_alphanumeric())
            && bytes.last().is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "repository component {part:?} must be lowercase letters and digits, with '.', '_' or '-' inside"
            ));
        }
    }
    Ok(())
}

checked_string!(
    /// A container image reference: `[registry/]repository[:tag][@sha256:digest]`.
    ImageRef,
    "an image reference",
    check_image_ref,
    {
        "description": "A container image reference: [registry/]repository[:tag][@sha256:digest].",
        "examples": ["cairn.local/kube-apiserver:v1.20.2"]
    }
);

impl ImageRef {
    /// Build `registry/name:tag` from parts known to be valid.
    pub fn from_parts(repository: &str, tag: &str) -> Result<Self, String> {
        Self::parse_text(&format!("{repository}:{tag}"))
    }
}

/// A Kubernetes version such as `v1.20.2` (the `v` is added when missing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubernetesVersion {
    text: String,
    major: u32,
    minor: u32,
    patch: u32,
}

impl KubernetesVersion {
    pub fn major(&self) -> u32 {
        self.major
    }
    pub fn minor(&self) -> u32 {
        self.minor
    }
    pub fn patch(&self) -> u32 {
        self.patch
    }
}

impl StrScalar for KubernetesVersion {
    const EXPECTING: &'static str = "a Kubernetes version such as v1.20.2";
    fn parse_text(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{} is not a Kubernetes version (expected e.g. v1.20.2)",
                quote(s)
            )
        };
        let bare = s.strip_prefix('v').unwrap_or(s);
        let (core, pre) = match bare.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (bare, None),
        };
        if let Some(pre) = pre {
            if pre.is_empty()
                || !pre
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return Err(bad());
            }
        }
        let nums: Vec<u32> = core
            .split('.')
            .map(|n| {
                if n.is_empty() || n.len() > 6 {
                    None
                } else {
                    n.parse().ok()
                }
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let [major, minor, patch] = nums[..] else {
            return Err(bad());
        };
        Ok(KubernetesVersion {
            text: format!("v{bare}"),
            major,
            minor,
            patch,
        })
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.text)
    }
}
str_scalar!(KubernetesVersion, {
    "description": "A Kubernetes release version.",
    "pattern": "^v?[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$",
    "examples": ["v1.20.2"]
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(DnsName::parse_text("cp-1.cluster.local").is_ok());
        assert!(DnsName::parse_text("CP1")
            .unwrap_err()
            .contains("lowercase"));
        assert!(DnsName::parse_text("node_1")
            .unwrap_err()
            .contains("only a-z"));
        assert!(DnsName::parse_text("-a").is_err());
        assert!(DnsName::parse_text("a..b").is_err());
        assert!(ClusterName::parse_text("a.b").is_err());
    }

    #[test]
    fn paths() {
        assert!(DiskPath::parse_text("/dev/vda").is_ok());
        assert!(DiskPath::parse_text("vda").unwrap_err().contains("/dev"));
        assert!(DiskPath::parse_text("/dev/../etc/passwd").is_err());
        assert!(FilePath::parse_text("/var/a").is_ok());
        assert!(FilePath::parse_text("var/a").is_err());
        assert!(FilePath::parse_text("/var/").is_err());
    }

    #[test]
    fn images() {
        for ok in [
            "cairn.local/kube-apiserver:v1.20.2",
            "busybox",
            "localhost:5000/a/b:latest",
            "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(ImageRef::parse_text(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Nginx", "a:", "a b", "a@sha256:12", "/a", "a//b"] {
            assert!(ImageRef::parse_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        let v = KubernetesVersion::parse_text("1.20.2").unwrap();
        assert_eq!((v.text().as_ref(), v.minor()), ("v1.20.2", 20));
        assert!(KubernetesVersion::parse_text("v1.20").is_err());
        assert!(KubernetesVersion::parse_text("v1.20.2-rc.0").is_ok());
        assert!(KubernetesVersion::parse_text("latest").is_err());
    }

    #[test]
    fn labels_and_taints() {
        assert!(LabelKey::parse_text("node-role.kubernetes.io/edge").is_ok());
        assert!(LabelKey::parse_text("-bad").is_err());
        assert!(LabelValue::parse_text("").is_ok());
        assert!(TaintValue::parse_text("true:NoSchedule").is_ok());
        assert!(TaintValue::parse_text(":NoExecute").is_ok());
        assert!(TaintValue::parse_text("true:Never")
            .unwrap_err()
            .contains("effect"));
        assert!(ArgName::parse_text("--v").unwrap_err().contains("dashes"));
        assert!(RegistryName::parse_text("registry.local:5000").is_ok());
        assert!(RegistryName::parse_text("registry.local:0").is_err());
        assert!(InterfaceName::parse_text("averyveryverylongname").is_err());
    }
}
