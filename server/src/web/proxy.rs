//! The client's address behind reverse proxies.
//!
//! Behind a TLS-terminating proxy every connection comes from the proxy, so limits and the
//! audit log would see one address for everyone. The proxy says who its client was in
//! `Forwarded: for=…` (RFC 7239) or `X-Forwarded-For`; anyone can write those headers, so
//! they are believed only from the proxies the operator names (`--trusted-proxy`), and read
//! from the right: each trusted hop vouches for the address before it, and the first address
//! that is not a trusted proxy is the client.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// Most forwarded addresses read from a request's headers (a longer chain is cut).
const MAX_HOPS: usize = 32;

/// An address block: an address and how many leading bits of it must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block (an IPv4 address mapped into IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Reads `10.0.0.1`, `10.0.0.0/8`, `::1` or `fd00::/8`.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let text = text.trim();
    let (addr, bits) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let network = canonical(addr.parse::<IpAddr>().map_err(|_| format!("{text:?} is not an address or CIDR block"))?);
    let max = if network.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
    };
    Ok(Cidr { network, bits })
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// These blocks.
    pub fn new(blocks: Vec<Cidr>) -> Self {
        TrustedProxies(blocks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address for a connection from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_chain(headers).into_iter().rev() {
            // An entry that is not an address (`unknown`, an obfuscated name) ends what can be
            // told: the last trusted hop stands for the client.
            let Some(ip) = hop else { return client };
            client = canonical(ip);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// The addresses the headers name, client first: `Forwarded` if present, else
/// `X-Forwarded-For`. `None` for an entry that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
    let mut chain = Vec::new();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let node = element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then_some(value.trim())
            });
            if let Some(node) = node {
                chain.push(parse_node(node));
            }
        }
    } else {
        for value in headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()) {
            chain.extend(value.split(',').map(|n| parse_node(n.trim())));
        }
    }
    let skip = chain.len().saturating_sub(MAX_HOPS);
    chain.split_off(skip)
}

/// `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().expect("header value"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn blocks_parse_and_match() {
        let block = parse_cidr("10.1.0.0/16").expect("parses");
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6 counts as IPv4");
        assert!(parse_cidr("172.16.0.0/12").expect("parses").contains(ip("172.31.255.255")));
        assert!(!parse_cidr("172.16.0.0/12").expect("parses").contains(ip("172.32.0.0")));
        assert!(parse_cidr("fd00::/8").expect("parses").contains(ip("fd12::1")));
        assert!(parse_cidr("127.0.0.1").expect("parses").contains(ip("127.0.0.1")));
        assert!(!parse_cidr("127.0.0.1").expect("parses").contains(ip("127.0.0.2")));
        assert!(parse_cidr("0.0.0.0/0").expect("parses").contains(ip("203.0.113.9")));
        for bad in ["", "10.0.0.0/33", "::/129", "example.org", "10.0.0.0/x"] {
            assert!(parse_cidr(bad).is_err(), "{bad:?} refused");
        }
    }

    #[test]
    fn forwarding_headers_are_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let proxy = TrustedProxies::new(vec![parse_cidr("10.0.0.0/8").expect("parses")]);
        let xff = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(none.client(ip("10.0.0.2"), &xff), ip("10.0.0.2"), "nothing believed by default");
        assert_eq!(proxy.client(ip("198.51.100.1"), &xff), ip("198.51.100.1"), "not from a trusted peer");
        assert_eq!(proxy.client(ip("10.0.0.2"), &xff), ip("203.0.113.7"));
        // A client cannot forge its way past the proxy: the proxy appends what it saw.
        let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7")]);
        assert_eq!(proxy.client(ip("10.0.0.2"), &forged), ip("203.0.113.7"));
        // Two trusted hops.
        let chained = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.9")]);
        assert_eq!(proxy.client(ip("10.0.0.2"), &chained), ip("203.0.113.7"));
        // Forwarded wins over X-Forwarded-For, with quotes, ports and IPv6.
        let forwarded = headers(&[
            ("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\""),
            ("x-forwarded-for", "198.51.100.99"),
        ]);
        assert_eq!(proxy.client(ip("10.0.0.2"), &forwarded), ip("2001:db8:cafe::17"));
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(proxy.client(ip("10.0.0.2"), &unknown), ip("10.0.0.2"));
        let with_port = headers(&[("x-forwarded-for", "203.0.113.7:5555")]);
        assert_eq!(proxy.client(ip("10.0.0.2"), &with_port), ip("203.0.113.7"));
        assert_eq!(proxy.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }
}
