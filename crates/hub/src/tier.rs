//! The ordered tier ladder (free < premium < holder < whale by default) and its aliases.
//!
//! Tiers are compared by rank, so a `TierId` is just the index into the ladder. Names and
//! aliases are matched case-insensitively on input and always emitted in canonical lower case.

use std::collections::HashMap;

/// A tier's rank in the ladder: 0 is the lowest (everyone has at least it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TierId(pub u8);

impl TierId {
    /// The lowest tier, held by every connection (anonymous ones included).
    pub const LOWEST: TierId = TierId(0);

    /// The rank as an index, for tier-bucketed tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why a ladder could not be built from configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("the tier ladder is empty")]
    Empty,
    #[error("the tier ladder has more than 32 tiers")]
    TooMany,
    #[error("tier name {0:?} is not of [a-z0-9_-]{{1,32}}")]
    BadName(String),
    #[error("tier {0:?} appears twice (names and aliases are case-insensitive)")]
    Duplicate(String),
    #[error("alias {alias:?} points at unknown tier {target:?}")]
    UnknownAliasTarget { alias: String, target: String },
}

/// The configured ladder of tiers, lowest first.
#[derive(Debug, Clone)]
pub struct TierLadder {
    names: Vec<String>,
    lookup: HashMap<String, TierId>,
}

impl Default for TierLadder {
    fn default() -> Self {
        TierLadder::new(
            &["free", "premium", "holder", "whale"],
            &[
                ("starter", "free"),
                ("professional", "premium"),
                ("institutional", "whale"),
            ],
        )
        .expect("the default ladder is valid")
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl TierLadder {
    /// Builds a ladder from tier names (lowest first) and `(alias, tier)` pairs.
    pub fn new<S: AsRef<str>>(names: &[S], aliases: &[(S, S)]) -> Result<Self, TierError> {
        if names.is_empty() {
            return Err(TierError::Empty);
        }
        if names.len() > 32 {
            return Err(TierError::TooMany);
        }
        let mut lookup = HashMap::new();
        let mut canonical = Vec::with_capacity(names.len());
        for (rank, name) in names.iter().enumerate() {
            let name = name.as_ref().trim().to_ascii_lowercase();
            if !valid_name(&name) {
                return Err(TierError::BadName(name));
            }
            if lookup.insert(name.clone(), TierId(rank as u8)).is_some() {
                return Err(TierError::Duplicate(name));
            }
            canonical.push(name);
        }
        for (alias, target) in aliases {
            let alias = alias.as_ref().trim().to_ascii_lowercase();
            let target = target.as_ref().trim().to_ascii_lowercase();
            if !valid_name(&alias) {
                return Err(TierError::BadName(alias));
            }
            let Some(&id) = lookup.get(&target) else {
                return Err(TierError::UnknownAliasTarget { alias, target });
            };
            if lookup.insert(alias.clone(), id).is_some() {
                return Err(TierError::Duplicate(alias));
            }
        }
        Ok(TierLadder {
            names: canonical,
            lookup,
        })
    }

    /// Resolves a tier name or alias, case-insensitively.
    pub fn parse(&self, input: &str) -> Option<TierId> {
        let input = input.trim();
        if let Some(id) = self.lookup.get(input) {
            return Some(*id);
        }
        self.lookup.get(&input.to_ascii_lowercase()).copied()
    }

    /// The canonical (lower-case) name of a tier.
    pub fn name(&self, tier: TierId) -> &str {
        &self.names[tier.index()]
    }

    /// How many tiers the ladder has.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a ladder has at least one tier.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The highest tier.
    pub fn highest(&self) -> TierId {
        TierId((self.names.len() - 1) as u8)
    }

    /// Canonical names, lowest first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// `(alias, tier)` pairs, sorted by alias: every accepted name that is not canonical.
    pub fn aliases(&self) -> Vec<(&str, &str)> {
        let mut aliases: Vec<(&str, &str)> = self
            .lookup
            .iter()
            .filter(|(name, id)| self.names[id.index()] != **name)
            .map(|(alias, id)| (alias.as_str(), self.names[id.index()].as_str()))
            .collect();
        aliases.sort_unstable();
        aliases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_lists_the_non_canonical_names_with_their_tier() {
        assert_eq!(
            TierLadder::default().aliases(),
            vec![
                ("institutional", "whale"),
                ("professional", "premium"),
                ("starter", "free")
            ]
        );
    }

    #[test]
    fn default_ladder_orders_free_premium_holder_whale() {
        let l = TierLadder::default();
        let free = l.parse("free").unwrap();
        let premium = l.parse("premium").unwrap();
        let holder = l.parse("holder").unwrap();
        let whale = l.parse("whale").unwrap();
        assert!(free < premium && premium < holder && holder < whale);
        assert_eq!(free, TierId::LOWEST);
        assert_eq!(l.highest(), whale);
    }

    #[test]
    fn names_and_aliases_are_case_insensitive_and_output_canonical() {
        let l = TierLadder::default();
        assert_eq!(l.parse("PREMIUM"), l.parse("premium"));
        assert_eq!(l.parse("Professional"), l.parse("premium"));
        assert_eq!(l.parse("INSTITUTIONAL"), l.parse("whale"));
        assert_eq!(l.name(l.parse("STARTER").unwrap()), "free");
    }

    #[test]
    fn unknown_tier_is_none() {
        assert_eq!(TierLadder::default().parse("platinum"), None);
    }

    #[test]
    fn alias_to_unknown_tier_is_rejected() {
        let err = TierLadder::new(&["free", "pro"], &[("gold", "platinum")]).unwrap_err();
        assert!(matches!(err, TierError::UnknownAliasTarget { .. }));
    }

    #[test]
    fn duplicate_tier_names_are_rejected() {
        let err = TierLadder::new(&["free", "FREE"], &[]).unwrap_err();
        assert_eq!(err, TierError::Duplicate("free".into()));
    }
}
