//! The kernel's `ip=` parameter (Documentation/admin-guide/nfs/nfsroot.rst,
//! and dracut's forms), which machined applies itself: the kernel here has
//! no IP autoconfiguration, so a node without DHCP can still be reached.
//!
//! ```text
//! ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>
//! ip=dhcp | ip=on | ip=any | ip=off | ip=none
//! ip=<device>:dhcp            (dracut)
//! ```

use std::net::Ipv4Addr;

/// What `ip=` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelIp {
    /// No network configuration from the command line (`off`, `none`).
    Off,
    /// DHCP, on `device` or on the first Ethernet link.
    Dhcp {
        device: Option<String>,
    },
    Static(StaticIp),
}

/// The static form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    /// The link; the first Ethernet link when empty.
    pub device: Option<String>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Vec<Ipv4Addr>,
    /// The autoconf field asks for DHCP as well (`dhcp`, `on`, `any`).
    pub dhcp: bool,
}

fn opt(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn ipv4(field: &str, s: Option<&str>) -> Result<Option<Ipv4Addr>, String> {
    opt(s)
        .map(|s| {
            s.parse()
                .map_err(|_| format!("ip=: the {field} {s:?} is not an IPv4 address"))
        })
        .transpose()
}

fn is_dhcp(s: &str) -> bool {
    matches!(s, "dhcp" | "on" | "any" | "both" | "bootp" | "rarp")
}

impl KernelIp {
    pub fn parse(value: &str) -> Result<KernelIp, String> {
        match value {
            "" | "off" | "none" => return Ok(KernelIp::Off),
            v if is_dhcp(v) => return Ok(KernelIp::Dhcp { device: None }),
            _ => {}
        }
        let f: Vec<&str> = value.split(':').collect();
        // dracut: ip=<device>:dhcp
        if f.len() == 2 && is_dhcp(f[1]) {
            return Ok(KernelIp::Dhcp {
                device: opt(Some(f[0])).map(str::to_string),
            });
        }
        let get = |i: usize| f.get(i).copied();
        let address = ipv4("client address", get(0))?
            .ok_or_else(|| format!("ip={value}: no client address (the first field)"))?;
        let gateway = ipv4("gateway", get(2))?;
        let prefix_len = match opt(get(3)) {
            None => 24,
            // A prefix length is accepted as well as a netmask.
            Some(m) if m.parse::<u8>().is_ok_and(|p| p <= 32) => m.parse().unwrap_or(24),
            Some(m) => {
                let mask: Ipv4Addr = m
                    .parse()
                    .map_err(|_| format!("ip=: the netmask {m:?} is not a netmask"))?;
                let bits = u32::from(mask);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return Err(format!("ip=: the netmask {m} is not contiguous"));
                }
                bits.leading_ones() as u8
            }
        };
        let autoconf = opt(get(6)).unwrap_or("off");
        if !(autoconf == "off" || autoconf == "none" || is_dhcp(autoconf)) {
            return Err(format!(
                "ip=: unknown autoconf method {autoconf:?} (off, none or dhcp)"
            ));
        }
        let dns = [
            ipv4("first DNS server", get(7))?,
            ipv4("second DNS server", get(8))?,
        ];
        let ntp = ipv4("NTP server", get(9))?;
        Ok(KernelIp::Static(StaticIp {
            address,
            prefix_len,
            gateway,
            hostname: opt(get(4)).map(str::to_string),
            device: opt(get(5)).map(str::to_string),
            dns: dns.into_iter().flatten().collect(),
            ntp: ntp.into_iter().collect(),
            dhcp: is_dhcp(autoconf),
        }))
    }

    /// The hostname the command line gives, if any.
    pub fn hostname(&self) -> Option<&str> {
        match self {
            KernelIp::Static(s) => s.hostname.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_form_with_hostname_device_and_dns() {
        let ip =
            KernelIp::parse("10.0.2.20::10.0.2.2:255.255.255.0:node1:eth0:off:10.0.2.3:1.1.1.1")
                .unwrap();
        assert_eq!(
            ip,
            KernelIp::Static(StaticIp {
                address: "10.0.2.20".parse().unwrap(),
                prefix_len: 24,
                gateway: Some("10.0.2.2".parse().unwrap()),
                hostname: Some("node1".into()),
                device: Some("eth0".into()),
                dns: vec!["10.0.2.3".parse().unwrap(), "1.1.1.1".parse().unwrap()],
                ntp: vec![],
                dhcp: false,
            })
        );
        assert_eq!(ip.hostname(), Some("node1"));
    }

    #[test]
    fn short_static_forms_and_prefix_lengths() {
        let KernelIp::Static(s) = KernelIp::parse("192.168.1.5").unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.prefix_len, s.gateway, s.device, s.hostname),
            (24, None, None, None)
        );
        let KernelIp::Static(s) = KernelIp::parse("10.1.0.5::10.1.0.1:16::eth1").unwrap() else {
            panic!()
        };
        assert_eq!((s.prefix_len, s.device.as_deref()), (16, Some("eth1")));
        let KernelIp::Static(s) = KernelIp::parse("10.1.0.5::::::dhcp").unwrap() else {
            panic!()
        };
        assert!(s.dhcp);
    }

    #[test]
    fn dhcp_and_off_forms() {
        assert_eq!(
            KernelIp::parse("dhcp").unwrap(),
            KernelIp::Dhcp { device: None }
        );
        assert_eq!(
            KernelIp::parse("on").unwrap(),
            KernelIp::Dhcp { device: None }
        );
        assert_eq!(
            KernelIp::parse("eth1:dhcp").unwrap(),
            KernelIp::Dhcp {
                device: Some("eth1".into())
            }
        );
        assert_eq!(KernelIp::parse("off").unwrap(), KernelIp::Off);
        assert_eq!(KernelIp::parse("none").unwrap(), KernelIp::Off);
    }

    #[test]
    fn bad_values_name_the_field() {
        assert!(KernelIp::parse("10.0.2.300")
            .unwrap_err()
            .contains("client address"));
        assert!(KernelIp::parse("10.0.2.2::x")
            .unwrap_err()
            .contains("gateway"));
        assert!(KernelIp::parse("10.0.2.2:::255.0.255.0")
            .unwrap_err()
            .contains("not contiguous"));
        assert!(KernelIp::parse("10.0.2.2::::::magic")
            .unwrap_err()
            .contains("autoconf"));
    }
}
