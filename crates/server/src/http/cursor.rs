//! Opaque cursors for SSE event ids and long-poll: per-channel (epoch, seq) positions.
//!
//! Encoded as URL-safe base64 of a compact JSON array `[[channel, epoch, seq], ...]`, so a
//! cursor can travel in a query string and an SSE `id:` line. Clients must not read them.

use base64::Engine;
use serde_json::Value;
use signalhub_hub::Since;

/// Positions, in the order the channels were requested.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub positions: Vec<(String, Since)>,
}

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl Cursor {
    pub fn encode(&self) -> String {
        let list: Vec<Value> = self
            .positions
            .iter()
            .map(|(c, s)| serde_json::json!([c, s.epoch, s.seq]))
            .collect();
        ENGINE.encode(Value::Array(list).to_string())
    }

    /// Parses a cursor; None for anything that is not one of ours.
    pub fn decode(text: &str) -> Option<Cursor> {
        if text.len() > 64 * 1024 {
            return None;
        }
        let raw = ENGINE.decode(text.trim()).ok()?;
        let Value::Array(items) = serde_json::from_slice(&raw).ok()? else {
            return None;
        };
        let mut positions = Vec::with_capacity(items.len());
        for item in items {
            let (channel, epoch, seq) = (
                item.get(0)?.as_str()?,
                item.get(1)?.as_str()?,
                item.get(2)?.as_u64()?,
            );
            positions.push((
                channel.to_string(),
                Since {
                    epoch: epoch.to_string(),
                    seq,
                },
            ));
        }
        Some(Cursor { positions })
    }

    pub fn get(&self, channel: &str) -> Option<&Since> {
        self.positions
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, s)| s)
    }

    /// Records `channel` at (`epoch`, `seq`).
    pub fn set(&mut self, channel: &str, epoch: &str, seq: u64) {
        match self.positions.iter_mut().find(|(c, _)| c == channel) {
            Some((_, since)) => {
                if since.epoch != epoch {
                    since.epoch = epoch.to_string();
                }
                since.seq = seq;
            }
            None => self.positions.push((
                channel.to_string(),
                Since {
                    epoch: epoch.to_string(),
                    seq,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let mut c = Cursor::default();
        c.set("signals", "e1", 4);
        c.set("price:BTC-USD", "e2", 9);
        c.set("signals", "e1", 5);
        let back = Cursor::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.get("signals").unwrap().seq, 5);
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        for text in ["", "!!", "bm90IGpzb24", "W1sxLDIsM11d"] {
            assert_eq!(Cursor::decode(text), None, "{text}");
        }
    }
}
