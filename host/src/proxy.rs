//! Who a request comes from when payhost runs behind reverse proxies: `trusted_proxies` (CIDRs)
//! and `X-Forwarded-For`, read the way nginx's `real_ip_recursive on` reads it. Only a peer that is
//! a trusted proxy is believed at all; then the client is the rightmost address of the joined
//! `X-Forwarded-For` chain that is not a trusted proxy (every proxy appends the address it saw, so
//! everything left of the first untrusted one may have been written by the client). Also the key
//! the per-address limits count by (an IPv6 caller by its /64).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x:y::/n` or a bare address (one host). Host bits must be zero.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { net, bits };
        if mask(net, bits) != net {
            return Err(format!(
                "host bits are set: the block is {}/{bits}",
                mask(net, bits)
            ));
        }
        Ok(cidr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.bits) == self.net
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

/// What the older `trust_proxy = true` now means: proxies on this machine (loopback) only.
pub fn loopback() -> Vec<Cidr> {
    vec![
        Cidr {
            net: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
            bits: 8,
        },
        Cidr {
            net: IpAddr::V6(Ipv6Addr::LOCALHOST),
            bits: 128,
        },
    ]
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits as u32)
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits as u32)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn trusted(proxies: &[Cidr], ip: IpAddr) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The client's address: the peer itself unless it is a trusted proxy; then the rightmost entry
/// of the `X-Forwarded-For` values (all headers, joined in order) that is not a trusted proxy. An
/// entry that is not an address ends the walk there (what is left of it cannot be trusted): the
/// last address before it is the answer. When every entry is a trusted proxy, the leftmost one.
pub fn client_address<'a>(
    proxies: &[Cidr],
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(proxies, peer) {
        return peer;
    }
    let chain: Vec<&str> = forwarded_for
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in chain.iter().rev() {
        if entry.is_empty() {
            continue;
        }
        let Some(ip) = parse_entry(entry) else {
            return client;
        };
        client = canonical(ip);
        if !trusted(proxies, client) {
            return client;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly `[v6]`, `v4:port` or `[v6]:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

/// The key a per-address limit counts by: an IPv4 address, or the /64 of an IPv6 one (a host
/// usually holds a whole /64, so one caller would otherwise get a limit per address).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => mask(IpAddr::V6(v6), 64),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains(ip("10.200.1.2")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        let v6 = Cidr::parse(" 2001:db8::/32 ").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
        assert!(!Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.8")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "nope",
            "10.0.0.0/x",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rightmost_untrusted_forwarded_address_is_the_client() {
        let proxies = vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("fd00::/8").unwrap(),
        ];
        let xff = |peer: &str, headers: &[&str]| {
            client_address(&proxies, ip(peer), headers.iter().copied())
        };
        // Not from a trusted proxy: the header is not read at all.
        assert_eq!(xff("203.0.113.9", &["1.2.3.4"]), ip("203.0.113.9"));
        // haproxy `option forwardfor` adds its own header after the client's forged one.
        assert_eq!(
            xff("10.0.0.2", &["1.2.3.4", "198.51.100.7"]),
            ip("198.51.100.7")
        );
        // nginx `$proxy_add_x_forwarded_for` appends to one header; two proxies in a row.
        assert_eq!(
            xff("10.0.0.2", &["1.2.3.4, 198.51.100.7, 10.0.0.3"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            xff("fd00::2", &["[2001:db8::5]:4711, fd00::3"]),
            ip("2001:db8::5")
        );
        // No header, or garbage right of the proxies: the last trusted hop is all we know.
        assert_eq!(xff("10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(
            xff("10.0.0.2", &["1.2.3.4, junk, 10.0.0.3"]),
            ip("10.0.0.3")
        );
        // A byte that is not ASCII left of the proxies' entries (read lossily by the HTTP
        // layer): the entries right of it still count.
        assert_eq!(
            xff("10.0.0.2", &["\u{FFFD}, 198.51.100.7, 10.0.0.3"]),
            ip("198.51.100.7")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(xff("10.0.0.2", &["10.9.9.9, 10.0.0.3"]), ip("10.9.9.9"));
        // Loopback only (`trust_proxy = true`).
        let lo = loopback();
        assert_eq!(
            client_address(&lo, ip("127.0.0.1"), ["9.9.9.9"].into_iter()),
            ip("9.9.9.9")
        );
        assert_eq!(
            client_address(&lo, ip("::ffff:127.0.0.1"), ["9.9.9.9"].into_iter()),
            ip("9.9.9.9")
        );
        assert_eq!(
            client_address(&lo, ip("192.0.2.1"), ["9.9.9.9"].into_iter()),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn ipv6_callers_are_limited_by_their_64() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
