//! Which IP addresses count as public: the outbound policy refuses the rest unless the operator
//! allowed the origin explicitly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// False for loopback, private (RFC 1918, unique-local), link-local (incl. cloud metadata at
/// 169.254.169.254), shared (CGNAT), unspecified, broadcast, multicast, documentation and
/// benchmarking ranges, and IPv6 forms that embed such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 shared address space
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 embeds IPv4
        || s[0] == 0x2002 // 6to4 embeds IPv4
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0))
    // IPv4-compatible
}

/// The address `host` names without a DNS lookup, read as the system's resolver reads it: an IP
/// literal, or IPv4 in the older forms `inet_aton` still accepts (`127.1`, `2130706433`,
/// `0x7f000001`, `0177.0.0.1`), which `getaddrinfo` resolves to an address with no lookup and
/// Rust's own parser refuses. Used to judge a URL when it is saved: the send itself checks the
/// address it resolved, whatever the spelling.
pub fn numeric_host(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) =
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (hex, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (&part[1..], 8)
            } else {
                (*part, 10)
            };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        values.push(u64::from_str_radix(digits, radix).ok()?);
    }
    // Every part but the last is one byte; the last fills the bytes left.
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 255) || *last >= 1u64 << (8 * (4 - leading.len())) {
        return None;
    }
    let mut address = *last;
    for (i, &v) in leading.iter().enumerate() {
        address |= v << (8 * (3 - i));
    }
    Some(IpAddr::V4(Ipv4Addr::from(address as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_read_as_an_address_as_the_resolver_reads_it() {
        // What glibc's getaddrinfo gives for each, without a lookup (checked with Python's
        // socket.getaddrinfo on Debian 12).
        for (host, ip) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0X7F.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("127.0.0.01", "127.0.0.1"),
            ("10.1", "10.0.0.1"),
            ("0", "0.0.0.0"),
            ("::1", "::1"),
            ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
            ("8.8.8.8", "8.8.8.8"),
        ] {
            assert_eq!(numeric_host(host), Some(ip.parse().unwrap()), "{host}");
        }
        for name in [
            "shop.example",
            "localhost",
            "127.0.0.1.",
            "1.2.3.4.5",
            "0x100000000",
            "08.0.0.1",
            "256.0.0.1",
            "1.2.3.256",
            "0x",
            "",
            "1..2",
            "123abc",
        ] {
            assert_eq!(numeric_host(name), None, "{name}");
        }
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["110.75.1.1", "8.8.8.8", "2400:3200::1", "::ffff:8.8.8.8"] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }
}
