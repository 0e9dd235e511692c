//! permessage-deflate negotiation (RFC 7692 section 7.1): reads a client's
//! `Sec-WebSocket-Extensions` offers and picks the first one the server accepts, always
//! answering with `server_no_context_takeover` so that a publication is compressed once and
//! the same frame serves every subscriber.

/// The extension's registered name.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// An accepted permessage-deflate offer: what to answer and how to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    client_no_context_takeover: bool,
    /// The offer limited the server's window (to 15, the only value accepted): the
    /// response must then carry the parameter too (section 7.1.2.1).
    server_max_window_bits: bool,
}

impl Agreement {
    /// The client promised to compress every message with a fresh context, so the server
    /// may drop its inflate state after each message.
    pub fn client_no_context_takeover(&self) -> bool {
        self.client_no_context_takeover
    }

    /// The value of the `Sec-WebSocket-Extensions` response header.
    pub fn response_header(&self) -> String {
        let mut out = format!("{EXTENSION_NAME}; server_no_context_takeover");
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits {
            out.push_str("; server_max_window_bits=15");
        }
        out
    }
}

/// Picks the first acceptable permessage-deflate offer from the values of every
/// `Sec-WebSocket-Extensions` header of the request, in order. `None`: no compression.
///
/// An offer is declined when it is malformed, has an unknown or repeated parameter, a
/// parameter value outside the RFC's grammar, or `server_max_window_bits` below 15 (the
/// server compresses with a 32 KiB window only; spec item 71). `client_max_window_bits`
/// (with or without a value) is accepted and left out of the response: the inflater
/// handles any window up to 15 bits.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    header_values
        .into_iter()
        .flat_map(|value| split_outside_quotes(value, ','))
        .find_map(accept_offer)
}

fn accept_offer(offer: &str) -> Option<Agreement> {
    let mut parts = split_outside_quotes(offer, ';');
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreement = Agreement {
        client_no_context_takeover: false,
        server_max_window_bits: false,
    };
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        let index = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => {
                agreement.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                if window_bits(value?)? < 15 {
                    return None;
                }
                agreement.server_max_window_bits = true;
                2
            }
            "client_max_window_bits" => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(agreement)
}

/// A window size as the RFC's grammar allows it: "8" to "15", no sign, no leading zero.
fn window_bits(value: String) -> Option<u8> {
    let bits: u8 = value.parse().ok()?;
    ((8..=15).contains(&bits) && value == bits.to_string()).then_some(bits)
}

/// A token, or a quoted-string with its escapes resolved (RFC 7230 section 3.2.6).
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        let token = !value.is_empty() && value.bytes().all(is_token_byte);
        return token.then(|| value.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits on `sep` except inside double quotes (where `\` escapes the next character).
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + c.len_utf8()..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<Agreement> {
        negotiate([value])
    }

    #[test]
    fn plain_offer_is_answered_with_server_no_context_takeover() {
        let agreement = offer("permessage-deflate").unwrap();
        assert!(!agreement.client_no_context_takeover());
        assert_eq!(
            agreement.response_header(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn browser_offer_with_bare_client_max_window_bits_is_accepted() {
        let agreement = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            agreement.response_header(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn client_no_context_takeover_is_accepted_and_echoed() {
        let agreement =
            offer("permessage-deflate; client_no_context_takeover; client_max_window_bits=10")
                .unwrap();
        assert!(agreement.client_no_context_takeover());
        assert_eq!(
            agreement.response_header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn server_max_window_bits_15_is_accepted_and_repeated() {
        let agreement =
            offer("permessage-deflate; server_no_context_takeover; server_max_window_bits=15")
                .unwrap();
        assert_eq!(
            agreement.response_header(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=15"
        );
        assert!(offer("permessage-deflate; server_max_window_bits=\"15\"").is_some());
    }

    #[test]
    fn server_max_window_bits_below_15_is_declined() {
        for bits in 8..15 {
            let value = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(offer(&value), None, "{value}");
        }
    }

    #[test]
    fn a_declined_offer_falls_back_to_the_next_one() {
        let value = "permessage-deflate; server_max_window_bits=9; client_no_context_takeover, \
                     permessage-deflate; client_no_context_takeover, permessage-deflate";
        let agreement = offer(value).unwrap();
        assert!(agreement.client_no_context_takeover());
        // Offers may also come in separate header lines.
        let agreement = negotiate([
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate",
        ])
        .unwrap();
        assert!(!agreement.client_no_context_takeover());
    }

    #[test]
    fn malformed_or_unknown_parameters_decline_the_offer() {
        for value in [
            "",
            "deflate-frame",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; server_max_window_bits=+15",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "permessage-deflate; mystery",
            "permessage-deflate; client_max_window_bits=\"10",
        ] {
            assert_eq!(offer(value), None, "{value:?}");
        }
    }

    #[test]
    fn names_and_parameters_are_case_insensitive_and_whitespace_tolerant() {
        let agreement = offer("  PerMessage-Deflate ;Client_No_Context_Takeover  ").unwrap();
        assert!(agreement.client_no_context_takeover());
    }

    #[test]
    fn quoted_commas_do_not_split_offers() {
        assert_eq!(
            split_outside_quotes(r#"a; p="x,\"y", b"#, ',').collect::<Vec<_>>(),
            vec![r#"a; p="x,\"y""#, " b"]
        );
    }
}
