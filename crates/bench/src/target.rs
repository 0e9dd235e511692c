//! The server under test: its loopback-only base URL, and the source addresses connections
//! are spread over.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// A server the bench may load: always on this machine's loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as written in the URL, for Host headers and ws:// URLs.
    pub host: String,
    /// `http://host:port` without a trailing slash.
    pub http_base: String,
}

/// Parses `http://host:port` (or a bare `host:port`), refusing any host that is not in
/// 127.0.0.0/8, ::1 or `localhost`.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let parsed = Url::parse(&with_scheme).map_err(|e| format!("bad --url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "ws") {
        return Err(format!(
            "--url {url:?}: only http:// (or ws://) is supported"
        ));
    }
    let port = parsed.port().unwrap_or(80);
    let raw = parsed.host_str().unwrap_or_default();
    let refuse = || {
        format!(
            "--url {url:?}: the bench only loads servers on loopback (127.0.0.0/8, ::1, localhost)"
        )
    };
    let (ip, host) = if raw.eq_ignore_ascii_case("localhost") {
        (IpAddr::V4(Ipv4Addr::LOCALHOST), "localhost".to_string())
    } else {
        let ip: IpAddr = raw
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| refuse())?;
        if !ip.is_loopback() {
            return Err(refuse());
        }
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        (ip, host)
    };
    let host = format!("{host}:{port}");
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        http_base: format!("http://{host}"),
        host,
    })
}

/// The first source address: 127.0.0.2 for IPv4 servers, ::1 (the only one) for IPv6.
pub fn source_base(server: &SocketAddr) -> IpAddr {
    match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// Most source addresses usable: 127.0.0.2 up to 127.255.255.254.
pub const MAX_SOURCE_IPS: usize = (1 << 24) - 3;

/// The `k`-th source address after `base` (IPv6 has only ::1).
pub fn source_addr(base: IpAddr, k: usize) -> IpAddr {
    match base {
        IpAddr::V4(b) => IpAddr::V4(Ipv4Addr::from(u32::from(b) + k as u32)),
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        let t = parse_target("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.http_base, "http://127.0.0.1:8080");
        assert_eq!(parse_target("127.9.8.7:1").unwrap().host, "127.9.8.7:1");
        assert_eq!(
            parse_target("http://[::1]:9/").unwrap().addr,
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            parse_target("http://LOCALHOST:7").unwrap().host,
            "localhost:7"
        );
        for bad in [
            "http://10.0.0.1:80",
            "http://192.168.1.1",
            "http://example.com:80",
            "http://[2001:db8::1]:80",
            "http://0.0.0.0:80",
            "https://127.0.0.1:80",
            "http://localhost.example.com",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_addresses() {
        let base = source_base(&"127.0.0.1:1".parse().unwrap());
        assert_eq!(source_addr(base, 0), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            source_addr(base, 254),
            "127.0.1.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            source_addr(base, MAX_SOURCE_IPS - 1),
            "127.255.255.254".parse::<IpAddr>().unwrap()
        );
        let v6 = source_base(&"[::1]:1".parse().unwrap());
        assert_eq!(source_addr(v6, 5), v6);
    }
}
