//! The SSRF guard's address rule (SPEC §11.3.1, issue "Webhooks" §5): which addresses a
//! webhook may be delivered to. Only globally routable unicast addresses are; loopback,
//! private, link-local (which holds the cloud metadata service, 169.254.169.254),
//! carrier-grade NAT, multicast, documentation, benchmarking and reserved ranges are not.
//! IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible,
//! NAT64 `64:ff9b::/96` and its local-use `64:ff9b:1::/48`, IPv4-translated `::ffff:0:0/96`,
//! 6to4 `2002::/16`) are judged by the IPv4 address they carry.
//! Ranges come from `ipnet`, not hand-written masks. Decimal and octal IPv4 spellings
//! (`http://2130706433/`, `http://0177.0.0.1/`) are normalized by the URL parser before
//! they get here; names are judged by every address they resolve to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::{Ipv4Net, Ipv6Net};

static BLOCKED_V4: LazyLock<Vec<Ipv4Net>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network"
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // carrier-grade NAT
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, cloud metadata
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments
        "192.0.2.0/24",    // documentation
        "192.88.99.0/24",  // 6to4 relay anycast
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation
        "203.0.113.0/24",  // documentation
        "224.0.0.0/4",     // multicast
        "240.0.0.0/4",     // reserved, broadcast
    ]
    .iter()
    .filter_map(|r| r.parse().ok())
    .collect()
});

static BLOCKED_V6: LazyLock<Vec<Ipv6Net>> = LazyLock::new(|| {
    [
        "::/128",        // unspecified
        "::1/128",       // loopback
        "100::/64",      // discard
        "2001::/23",     // IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32", // documentation
        "fc00::/7",      // unique local (AWS's metadata fd00:ec2::254 is in it)
        "fe80::/10",     // link-local
        "fec0::/10",     // site-local (deprecated)
        "ff00::/8",      // multicast
    ]
    .iter()
    .filter_map(|r| r.parse().ok())
    .collect()
});

/// Prefixes whose last 32 bits are an IPv4 address: NAT64 (RFC 6052), local-use NAT64
/// (RFC 8215) and IPv4-translated (SIIT, `::ffff:0:0/96`).
static V4_IN_LAST_32: LazyLock<Vec<Ipv6Net>> = LazyLock::new(|| {
    ["64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96"]
        .iter()
        .filter_map(|r| r.parse().ok())
        .collect()
});
static SIX_TO_FOUR: LazyLock<Ipv6Net> =
    LazyLock::new(|| "2002::/16".parse().unwrap_or_else(|_| Ipv6Net::default()));

/// Whether a webhook may be delivered to `ip`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => !BLOCKED_V6.iter().any(|net| net.contains(&v6)),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !BLOCKED_V4.iter().any(|net| net.contains(&ip))
}

/// The IPv4 address an IPv6 address stands for, where it carries one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // IPv4-compatible (::a.b.c.d, deprecated), except :: and ::1 themselves.
    if o[..12].iter().all(|b| *b == 0) && u32::from(last) > 1 {
        return Some(last);
    }
    if V4_IN_LAST_32.iter().any(|net| net.contains(&ip)) {
        return Some(last);
    }
    if SIX_TO_FOUR.contains(&ip) {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        is_public(s.parse().expect("address"))
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!ok(bad), "{bad} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(ok(good), "{good} must be allowed");
        }
    }

    #[test]
    fn decimal_and_octal_spellings_normalize_to_the_same_address() {
        for raw in ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/"] {
            let url = url::Url::parse(raw).expect("url");
            let Some(url::Host::Ipv4(ip)) = url.host() else {
                panic!("{raw}: not an IPv4 host");
            };
            assert!(!is_public(IpAddr::V4(ip)), "{raw}");
        }
    }
}
