//! Channel names: validation of the spec's grammar and the `signals:all` alias.

/// Longest channel name the grammar allows.
pub const MAX_CHANNEL_LEN: usize = 128;

/// True when `name` matches `^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$`.
pub fn is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.len() <= MAX_CHANNEL_LEN
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

/// Validates a client-supplied name and rewrites the `signals:all` alias to `signals`.
/// Returns `None` for a name the grammar refuses.
pub fn normalize(name: &str) -> Option<&str> {
    if !is_valid(name) {
        return None;
    }
    Some(if name == "signals:all" {
        "signals"
    } else {
        name
    })
}

/// A channel pattern for configuration: an exact name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Glob {
    Exact(String),
    Prefix(String),
}

impl Glob {
    /// Parses `name` or `prefix*`.
    pub fn parse(text: &str) -> Result<Glob, String> {
        match text.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Ok(Glob::Prefix(prefix.to_string())),
            Some(_) => Err(format!("pattern {text:?} may only end in one *")),
            None if is_valid(text) => Ok(Glob::Exact(text.to_string())),
            None => Err(format!(
                "pattern {text:?} is not a channel name or a prefix*"
            )),
        }
    }

    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Glob::Exact(name) => name == channel,
            Glob::Prefix(prefix) => channel.starts_with(prefix.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_of_the_grammar() {
        for name in [
            "signals",
            "price:BTC-USD",
            "trades:u_1",
            "a",
            "user:0xab@x.y",
            "9",
        ] {
            assert!(is_valid(name), "{name}");
        }
        assert!(is_valid(&"a".repeat(128)));
    }

    #[test]
    fn refuses_names_outside_the_grammar() {
        for name in ["", ":x", "-x", "a b", "a/b", "é", "a#b", "a\n"] {
            assert!(!is_valid(name), "{name:?}");
        }
        assert!(!is_valid(&"a".repeat(129)));
    }

    #[test]
    fn signals_all_is_rewritten_to_signals() {
        assert_eq!(normalize("signals:all"), Some("signals"));
        assert_eq!(normalize("signals"), Some("signals"));
        assert_eq!(normalize("bad name"), None);
    }

    #[test]
    fn globs_match_exact_names_and_prefixes() {
        let price = Glob::parse("price:*").unwrap();
        assert!(price.matches("price:BTC-USD"));
        assert!(!price.matches("prices"));
        let exact = Glob::parse("signals").unwrap();
        assert!(exact.matches("signals"));
        assert!(!exact.matches("signals:high"));
        assert!(Glob::parse("a**").is_err());
        assert!(Glob::parse("bad name").is_err());
    }
}
