//! Reading publication envelopes quickly: channel, seq and the bench payload's `t` and `i`.
//!
//! Publications are the hot path (a burst run reads a million of them while sharing two
//! cores with the server), so the common layout `{...,"channel":..,"seq":..,...,"data":{..}}`
//! is scanned by hand; anything else falls back to serde_json. A signal's `data` is its
//! record, with the bench's `t` and `i` inside its `metadata` object: no other field of a
//! record is named `t` or `i`, so the scan finds them there as well.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;

/// Searchers for the fast path's keys, built once.
static DATA: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"data\":"));
static CHANNEL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"channel\""));
static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\""));
static T: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"t\""));
static I: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"i\""));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication<'a> {
    pub channel: &'a str,
    pub seq: u64,
    /// Send time in unix nanoseconds, when the payload is the bench's.
    pub t: Option<u64>,
    /// Message index, when the payload is the bench's.
    pub i: Option<u64>,
}

/// The publication in a server text frame, or None for any other frame (welcome, replies,
/// errors, frames without `channel` and `seq`).
///
/// Takes the frame's bytes as received: the fast path checks UTF-8 only for the channel
/// name (JSON's structural characters are ASCII and never part of a multi-byte sequence,
/// and the digits of `seq`, `t` and `i` are ASCII); the serde_json fallback checks it all.
pub fn parse_publication(text: &[u8]) -> Option<Publication<'_>> {
    if let Some(d) = DATA.find(text) {
        let (head, data) = text.split_at(d);
        if let (Some(channel), Some(seq)) = (string_field(head, &CHANNEL), u64_field(head, &SEQ)) {
            return Some(Publication {
                channel,
                seq,
                t: u64_field(data, &T),
                i: u64_field(data, &I),
            });
        }
    }
    slow_parse(text)
}

/// The reserved reply types that carry `channel`/`seq` but are not publications.
fn is_reply(ty: &str) -> bool {
    matches!(
        ty,
        "welcome" | "subscribed" | "unsubscribed" | "authenticated" | "pong" | "stats" | "error"
    )
}

fn slow_parse(text: &[u8]) -> Option<Publication<'_>> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow)]
        ty: Option<&'a str>,
        #[serde(borrow)]
        channel: Option<&'a str>,
        seq: Option<u64>,
        data: Option<serde_json::Value>,
    }
    let env: Envelope<'_> = serde_json::from_slice(text).ok()?;
    if env.ty.is_some_and(is_reply) {
        return None;
    }
    // The bench payload itself, or a signal record's `metadata`.
    let field = |k: &str| {
        let d = env.data.as_ref()?;
        d.get(k).or_else(|| d.get("metadata")?.get(k))?.as_u64()
    };
    Some(Publication {
        channel: env.channel?,
        seq: env.seq?,
        t: field("t"),
        i: field("i"),
    })
}

/// The value after `"key":` (`key` searched with its quotes) if it is a plain (escape-free)
/// string.
fn string_field<'a>(s: &'a [u8], key: &Finder<'_>) -> Option<&'a str> {
    let rest = after_key(s, key)?.strip_prefix(b"\"")?;
    let v = &rest[..memchr::memchr(b'"', rest)?];
    if v.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(v).ok()
}

/// The value after `"key":` (`key` searched with its quotes) if it is an unsigned integer.
fn u64_field(s: &[u8], key: &Finder<'_>) -> Option<u64> {
    let rest = after_key(s, key)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match rest.get(digits) {
        Some(b'.' | b'e' | b'E') => None,
        _ => std::str::from_utf8(&rest[..digits]).ok()?.parse().ok(),
    }
}

/// What follows the first `key` (quotes included) that is followed by a colon, with the
/// white space around the colon skipped.
fn after_key<'a>(s: &'a [u8], key: &Finder<'_>) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(pos) = key.find(&s[from..]) {
        let end = from + pos + key.needle().len();
        from = end;
        if let Some(rest) = s[end..].trim_ascii_start().strip_prefix(b":") {
            return Some(rest.trim_ascii_start());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUB: &str = r#"{"type":"bench","channel":"bench-3","epoch":"e1","seq":42,"id":"p_1","timestamp":"2025-08-11T00:23:15.123Z","data":{"t":1754871795123456789,"i":7,"pad":"xxxx"}}"#;

    #[test]
    fn fast_path() {
        let p = parse_publication(PUB.as_bytes()).unwrap();
        assert_eq!(
            p,
            Publication {
                channel: "bench-3",
                seq: 42,
                t: Some(1754871795123456789),
                i: Some(7)
            }
        );
    }

    #[test]
    fn sorted_keys_and_spaces() {
        let s = r#"{"channel": "b", "data": {"i": 2, "pad": "xx", "t": 99}, "seq": 5, "type": "bench"}"#;
        let p = parse_publication(s.as_bytes()).unwrap();
        assert_eq!((p.channel, p.seq, p.t, p.i), ("b", 5, Some(99), Some(2)));
    }

    #[test]
    fn non_bench_payloads() {
        let s = r#"{"type":"signal","channel":"c","seq":1,"data":{"pair":"EUR_USD","type":"t"}}"#;
        let p = parse_publication(s.as_bytes()).unwrap();
        assert_eq!((p.seq, p.t, p.i), (1, None, None));
        let locked = r#"{"type":"locked","channel":"c","epoch":"e","seq":43,"tier":"premium"}"#;
        assert_eq!(parse_publication(locked.as_bytes()).unwrap().seq, 43);
        let float = r#"{"channel":"c","seq":1,"data":{"t":1.5}}"#;
        assert_eq!(parse_publication(float.as_bytes()).unwrap().t, None);
    }

    #[test]
    fn signal_records_carry_the_stamp_in_metadata() {
        let s = r#"{"type":"signal","channel":"signals:pair:BENCH-USD","epoch":"e","seq":3,"id":"sig_1","timestamp":"2025-08-11T00:23:15.123Z","tier":"free","data":{"signal_id":"bench_r_4","pair":"BENCH-USD","signal_type":"BUY","entry_price":1.0950,"take_profit":[1.1],"confidence_score":0.5,"timestamp":"2025-08-11T00:23:15.120Z","tier":"free","metadata":{"t":99,"i":4}}}"#;
        let p = parse_publication(s.as_bytes()).unwrap();
        assert_eq!(
            (p.channel, p.seq, p.t, p.i),
            ("signals:pair:BENCH-USD", 3, Some(99), Some(4))
        );
        // Data before channel and seq: the serde_json path.
        let s = r#"{"data":{"pair":"X","metadata":{"i":4,"t":99}},"channel":"c","seq":3}"#;
        let p = parse_publication(s.as_bytes()).unwrap();
        assert_eq!((p.channel, p.seq, p.t, p.i), ("c", 3, Some(99), Some(4)));
    }

    #[test]
    fn replies_are_not_publications() {
        for s in [
            r#"{"type":"welcome","connection_id":"c_1","auth":"anonymous"}"#,
            r#"{"type":"subscribed","id":1,"channels":[{"channel":"bench","epoch":"e","seq":0,"recovered":false}]}"#,
            r#"{"type":"error","id":1,"code":"forbidden","channel":"whale","message":"no"}"#,
            "not json",
        ] {
            assert_eq!(parse_publication(s.as_bytes()), None, "{s}");
        }
    }
}
