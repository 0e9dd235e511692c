//! Tests of the client-address resolution behind trusted proxies.

use super::*;
use axum::http::HeaderValue;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn trusted(list: &str) -> TrustedProxies {
    TrustedProxies::parse_list(list.split(',')).unwrap()
}

#[test]
fn without_trusted_proxies_forwarding_headers_are_ignored() {
    let t = TrustedProxies::default();
    let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("127.0.0.1"));
}

#[test]
fn an_untrusted_peer_cannot_claim_another_address() {
    let t = trusted("10.0.0.0/8");
    let h = headers(&[
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=198.51.100.1"),
    ]);
    assert_eq!(t.client_ip(peer("192.0.2.50"), &h), ip("192.0.2.50"));
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_used() {
    let t = trusted("127.0.0.1");
    let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("203.0.113.9"));
}

#[test]
fn the_right_most_untrusted_address_wins_so_a_spoofed_left_entry_is_ignored() {
    // The client sent `X-Forwarded-For: 1.1.1.1` itself; the proxy appended the real address.
    let t = trusted("10.0.0.0/8");
    let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.7")]);
    assert_eq!(t.client_ip(peer("10.0.0.2"), &h), ip("203.0.113.9"));
}

#[test]
fn several_header_lines_form_one_chain_in_order() {
    let t = trusted("10.0.0.0/8");
    let h = headers(&[
        ("x-forwarded-for", "198.51.100.4"),
        ("x-forwarded-for", "10.1.1.1"),
    ]);
    assert_eq!(t.client_ip(peer("10.0.0.2"), &h), ip("198.51.100.4"));
}

#[test]
fn rfc7239_forwarded_wins_and_accepts_quoted_ipv6_with_ports() {
    let t = trusted("127.0.0.0/8,::1");
    let h = headers(&[
        ("x-forwarded-for", "198.51.100.200"),
        (
            "forwarded",
            r#"for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.3"#,
        ),
    ]);
    assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("2001:db8:cafe::17"));
}

#[test]
fn an_obfuscated_or_unknown_hop_stops_the_walk_at_the_last_known_address() {
    let t = trusted("10.0.0.0/8");
    let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.9")]);
    assert_eq!(t.client_ip(peer("10.0.0.2"), &h), ip("10.0.0.9"));
    let h = headers(&[("x-forwarded-for", "unknown")]);
    assert_eq!(t.client_ip(peer("10.0.0.2"), &h), ip("10.0.0.2"));
}

#[test]
fn a_header_that_does_not_parse_leaves_the_peer_address() {
    let t = trusted("10.0.0.0/8");
    let h = headers(&[("x-forwarded-for", "203.0.113.9, not-an-address")]);
    assert_eq!(t.client_ip(peer("10.0.0.2"), &h), ip("10.0.0.2"));
}

#[test]
fn when_every_hop_is_trusted_the_left_most_is_the_client() {
    let t = trusted("10.0.0.0/8");
    let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.7")]);
    assert_eq!(t.client_ip(peer("10.0.0.2"), &h), ip("10.9.9.9"));
}

#[test]
fn ipv4_mapped_peers_match_ipv4_ranges() {
    let t = trusted("127.0.0.1/32");
    let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
    let mapped = SocketAddr::new(ip("::ffff:127.0.0.1"), 1);
    assert_eq!(t.client_ip(mapped, &h), ip("203.0.113.9"));
}

#[test]
fn bad_entries_in_the_list_are_refused_with_the_entry_named() {
    let e = TrustedProxies::parse_list(["10.0.0.0/8", "proxy.example"]).unwrap_err();
    assert!(e.contains("proxy.example"), "{e}");
    assert!(TrustedProxies::parse_list(["10.0.0.0/33"]).is_err());
    assert!(TrustedProxies::parse_list(["", " "]).unwrap().is_empty());
}

#[test]
fn the_ranges_are_reported_as_cidrs() {
    let t = trusted("10.1.2.3/8, 127.0.0.1, ::1");
    let ranges: Vec<String> = t.ranges().collect();
    assert_eq!(ranges, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
}

#[test]
fn ipv6_peers_in_one_64_share_a_nonce_limiter_key() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(limiter_key(a), limiter_key(b));
    assert_eq!(limiter_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    assert_ne!(limiter_key(a), limiter_key(other));
}

#[test]
fn ipv4_peers_are_limited_by_exact_address_also_when_mapped_into_ipv6() {
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    let next: IpAddr = "192.0.2.8".parse().unwrap();
    assert_eq!(limiter_key(mapped), v4);
    assert_eq!(limiter_key(v4), v4);
    assert_ne!(limiter_key(next), limiter_key(v4));
}

#[test]
fn rotating_addresses_inside_one_64_does_not_escape_the_nonce_limit() {
    let limiter = governor::RateLimiter::keyed(governor::Quota::per_minute(
        std::num::NonZeroU32::new(3).unwrap(),
    ));
    let allowed = (0..100u128)
        .map(|i| {
            IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_0000_0001_0000_0000_0000_0000 + i,
            ))
        })
        .filter(|ip| limiter.check_key(&limiter_key(*ip)).is_ok())
        .count();
    assert_eq!(allowed, 3, "100 addresses of one /64 share one budget of 3");
}
