//! The client's address behind trusted reverse proxies: `X-Forwarded-For` and `Forwarded`
//! are believed only when the TCP peer is a configured proxy (`trusted_proxies`).
//!
//! Rules (the same as nginx's `real_ip_recursive on` and Go's and Rails' trusted-proxy
//! resolvers): start from the TCP peer; while the address in hand is a trusted proxy, step
//! to the next address to its left in the forwarding chain (the right-most entry is the one
//! the nearest proxy appended). The first address that is not a trusted proxy is the
//! client. When every address is trusted, the left-most one is used. A header that does not
//! parse is ignored (the peer stands), so a client cannot make itself anonymous by sending
//! garbage through a proxy that appends to what it got. `Forwarded` (RFC 7239) wins over
//! `X-Forwarded-For` when both are present; `for=` values that are obfuscated identifiers
//! (`_hidden`) or `unknown` end the walk at the address before them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The configured proxy ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses comma-separated CIDRs or single addresses (`10.0.0.0/8, 127.0.0.1, ::1`).
    pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut nets = Vec::new();
        for raw in items {
            let item = raw.trim();
            if item.is_empty() {
                continue;
            }
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{item:?} is not an IP address or a CIDR range (e.g. 10.0.0.0/8)"
                        ))
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(TrustedProxies { nets })
    }

    /// The ranges, as CIDR text (`10.0.0.0/8`, `127.0.0.1/32`).
    pub fn ranges(&self) -> impl Iterator<Item = String> + '_ {
        self.nets.iter().map(|n| n.to_string())
    }

    /// True when no proxy is trusted (headers are never believed).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// True when `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer_ip = canonical(peer.ip());
        if !self.trusts(peer_ip) {
            return peer_ip;
        }
        let Some(chain) = forwarded_chain(headers) else {
            return peer_ip;
        };
        let mut client = peer_ip;
        for hop in chain.iter().rev() {
            match hop {
                Hop::Addr(ip) => {
                    client = canonical(*ip);
                    if !self.trusts(client) {
                        return client;
                    }
                }
                Hop::Opaque => return client,
            }
        }
        client
    }
}

/// One `for=` / `X-Forwarded-For` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Addr(IpAddr),
    /// `unknown` or an obfuscated identifier: the chain cannot be followed past it.
    Opaque,
}

/// The key a per-address rate limiter counts a client under: an IPv4 address as it is, an
/// IPv6 address by its /64 (one subscriber's allocation, so rotating addresses inside it
/// does not escape the limit), an IPv4-mapped IPv6 address as its IPv4 address.
pub fn limiter_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so one client has one address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The forwarding chain, left (client side) to right (nearest proxy); `None` when there is
/// no header or one of them does not parse.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<Hop>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<_>>()?;
    if !forwarded.is_empty() {
        let mut chain = Vec::new();
        for value in forwarded {
            for element in value.split(',') {
                chain.push(forwarded_for(element)?);
            }
        }
        return Some(chain);
    }
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<_>>()?;
    if xff.is_empty() {
        return None;
    }
    let mut chain = Vec::new();
    for value in xff {
        for item in value.split(',') {
            chain.push(xff_item(item.trim())?);
        }
    }
    Some(chain)
}

fn xff_item(item: &str) -> Option<Hop> {
    if item.eq_ignore_ascii_case("unknown") {
        return Some(Hop::Opaque);
    }
    parse_node(item).map(Hop::Addr)
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`).
fn forwarded_for(element: &str) -> Option<Hop> {
    for pair in element.split(';') {
        let (key, value) = pair.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if value.eq_ignore_ascii_case("unknown") || value.starts_with('_') {
            return Some(Hop::Opaque);
        }
        return parse_node(value).map(Hop::Addr);
    }
    // An element without `for=` says nothing about the client.
    Some(Hop::Opaque)
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = node.strip_prefix('[')?;
    let (addr, _rest) = inner.split_once(']')?;
    addr.parse::<IpAddr>().ok()
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
