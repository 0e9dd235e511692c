//! Channel rules: who may subscribe to which channel (open, a minimum tier, or owner only).
//!
//! Rules are checked in order and the first whose pattern matches decides. A pattern is an
//! exact name (`premium`), a prefix glob (`price:*`), or an owner pattern (`trades:{user}`)
//! whose `{user}` part must equal the connection's authenticated subject.

use crate::tier::{TierId, TierLadder};

/// What a rule demands of a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may subscribe.
    Open,
    /// The connection's tier must be at least this.
    MinTier(TierId),
    /// Only the subject named by the `{user}` part of the channel.
    Owner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Owner(String),
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        if let Some(prefix) = text.strip_suffix("{user}") {
            if prefix.is_empty() || prefix.contains(['*', '{', '}']) {
                return Err(format!(
                    "owner pattern {text:?} must be a prefix then {{user}}"
                ));
            }
            return Ok(Pattern::Owner(prefix.to_string()));
        }
        if let Some(prefix) = text.strip_suffix('*') {
            if prefix.contains(['*', '{', '}']) {
                return Err(format!("pattern {text:?} may only end in one *"));
            }
            return Ok(Pattern::Prefix(prefix.to_string()));
        }
        if !crate::channel::is_valid(text) {
            return Err(format!(
                "pattern {text:?} is not a channel name, a prefix* or a prefix{{user}}"
            ));
        }
        Ok(Pattern::Exact(text.to_string()))
    }

    /// For an owner pattern, the `{user}` part of a matching channel. The bare prefix
    /// (`trades:`) matches too, with an empty owner: it is an owner channel that nobody
    /// owns, not an open one.
    fn matches<'c>(&self, channel: &'c str) -> Option<&'c str> {
        match self {
            Pattern::Exact(name) => (name == channel).then_some(""),
            Pattern::Prefix(prefix) => channel.strip_prefix(prefix.as_str()),
            Pattern::Owner(prefix) => channel.strip_prefix(prefix.as_str()),
        }
    }
}

/// One configured rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRule {
    pattern: Pattern,
    access: Access,
}

impl ChannelRule {
    /// A rule from its textual pattern and what it demands. Owner access needs a
    /// `prefix{user}` pattern and a `prefix{user}` pattern needs owner access.
    pub fn new(pattern: &str, access: Access) -> Result<ChannelRule, String> {
        let pattern = Pattern::parse(pattern)?;
        match (&pattern, access) {
            (Pattern::Owner(_), Access::Owner) => {}
            (Pattern::Owner(_), _) => {
                return Err("a {user} pattern must have owner access".to_string());
            }
            (_, Access::Owner) => {
                return Err("owner access needs a pattern ending in {user}".to_string());
            }
            _ => {}
        }
        Ok(ChannelRule { pattern, access })
    }

    /// The pattern as configured: `name`, `prefix*` or `prefix{user}`.
    pub fn pattern(&self) -> String {
        match &self.pattern {
            Pattern::Exact(name) => name.clone(),
            Pattern::Prefix(prefix) => format!("{prefix}*"),
            Pattern::Owner(prefix) => format!("{prefix}{{user}}"),
        }
    }

    /// What the rule demands.
    pub fn access(&self) -> Access {
        self.access
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The channel needs an authenticated subject and the connection has none.
    Unauthorized,
    /// The connection is authenticated but not allowed; the message says why.
    Forbidden(String),
}

/// The ordered rule set; the first matching rule decides, no match means open.
#[derive(Debug, Clone, Default)]
pub struct ChannelRules {
    rules: Vec<ChannelRule>,
}

impl ChannelRules {
    /// Rules in the order they are checked.
    pub fn new(rules: Vec<ChannelRule>) -> Self {
        ChannelRules { rules }
    }

    /// The spec's default table: `premium` and `whale` need those tiers (when the ladder
    /// has them), `trades:{user}` and `user:{user}` are owner-only.
    pub fn defaults(ladder: &TierLadder) -> Self {
        let mut rules = Vec::new();
        for name in ["premium", "whale"] {
            if let Some(tier) = ladder.parse(name) {
                rules.push(ChannelRule::new(name, Access::MinTier(tier)).expect("valid"));
            }
        }
        for pattern in ["trades:{user}", "user:{user}"] {
            rules.push(ChannelRule::new(pattern, Access::Owner).expect("valid"));
        }
        ChannelRules { rules }
    }

    /// The rules in the order they are checked.
    pub fn rules(&self) -> &[ChannelRule] {
        &self.rules
    }

    /// The access a channel demands, and for owner channels the owner's name.
    pub fn access<'c>(&self, channel: &'c str) -> (Access, &'c str) {
        for rule in &self.rules {
            if let Some(rest) = rule.pattern.matches(channel) {
                return (rule.access, rest);
            }
        }
        (Access::Open, "")
    }

    /// Whether a connection of `tier`, authenticated as `user` (None: anonymous), may
    /// subscribe to `channel`.
    pub fn check(
        &self,
        ladder: &TierLadder,
        channel: &str,
        tier: TierId,
        user: Option<&str>,
    ) -> Result<(), Denied> {
        match self.access(channel) {
            (Access::Open, _) => Ok(()),
            (Access::MinTier(min), _) if tier >= min => Ok(()),
            (Access::MinTier(min), _) => Err(Denied::Forbidden(format!(
                "tier {} required",
                ladder.name(min)
            ))),
            (Access::Owner, "") => Err(Denied::Forbidden("channel has no owner".into())),
            (Access::Owner, owner) => match user {
                None => Err(Denied::Unauthorized),
                Some(user) if user == owner => Ok(()),
                Some(_) => Err(Denied::Forbidden("channel belongs to another user".into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_list_their_patterns_as_configured() {
        let ladder = TierLadder::default();
        let listed: Vec<(String, Access)> = ChannelRules::defaults(&ladder)
            .rules()
            .iter()
            .map(|r| (r.pattern(), r.access()))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("premium".to_string(), Access::MinTier(TierId(1))),
                ("whale".to_string(), Access::MinTier(TierId(3))),
                ("trades:{user}".to_string(), Access::Owner),
                ("user:{user}".to_string(), Access::Owner),
            ]
        );
        let prefix = ChannelRule::new("vip:*", Access::Open).unwrap();
        assert_eq!(prefix.pattern(), "vip:*");
    }

    fn setup() -> (TierLadder, ChannelRules) {
        let ladder = TierLadder::default();
        let rules = ChannelRules::defaults(&ladder);
        (ladder, rules)
    }

    #[test]
    fn open_channels_admit_anonymous_free_connections() {
        let (l, r) = setup();
        for ch in ["signals", "public", "price:BTC-USD", "system", "unified"] {
            assert_eq!(r.check(&l, ch, TierId::LOWEST, None), Ok(()), "{ch}");
        }
    }

    #[test]
    fn tier_channels_need_the_tier_or_higher() {
        let (l, r) = setup();
        let premium = l.parse("premium").unwrap();
        let whale = l.parse("whale").unwrap();
        assert_eq!(
            r.check(&l, "premium", TierId::LOWEST, None),
            Err(Denied::Forbidden("tier premium required".into()))
        );
        assert_eq!(r.check(&l, "premium", premium, None), Ok(()));
        assert_eq!(r.check(&l, "premium", whale, None), Ok(()));
        assert!(r.check(&l, "whale", premium, None).is_err());
        assert_eq!(r.check(&l, "whale", whale, None), Ok(()));
    }

    #[test]
    fn owner_channels_refuse_anonymous_as_unauthorized_and_others_as_forbidden() {
        let (l, r) = setup();
        assert_eq!(
            r.check(&l, "trades:alice", TierId::LOWEST, None),
            Err(Denied::Unauthorized)
        );
        assert!(matches!(
            r.check(&l, "trades:alice", l.highest(), Some("bob")),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(
            r.check(&l, "trades:alice", TierId::LOWEST, Some("alice")),
            Ok(())
        );
        assert_eq!(r.check(&l, "user:bob", TierId::LOWEST, Some("bob")), Ok(()));
    }

    #[test]
    fn owner_channels_with_an_empty_owner_are_not_subscribable() {
        let (l, r) = setup();
        for channel in ["trades:", "user:"] {
            for user in [None, Some(""), Some("alice")] {
                assert_eq!(
                    r.check(&l, channel, l.highest(), user),
                    Err(Denied::Forbidden("channel has no owner".into())),
                    "{channel} as {user:?}"
                );
            }
        }
    }

    #[test]
    fn first_matching_rule_wins_and_prefix_globs_match() {
        let l = TierLadder::default();
        let premium = l.parse("premium").unwrap();
        let r = ChannelRules::new(vec![
            ChannelRule::new("signals:pair:BTC-USD", Access::Open).unwrap(),
            ChannelRule::new("signals:pair:*", Access::MinTier(premium)).unwrap(),
        ]);
        assert_eq!(
            r.check(&l, "signals:pair:BTC-USD", TierId::LOWEST, None),
            Ok(())
        );
        assert!(r
            .check(&l, "signals:pair:EUR_USD", TierId::LOWEST, None)
            .is_err());
    }

    #[test]
    fn owner_patterns_and_owner_access_must_go_together() {
        assert!(ChannelRule::new("trades:{user}", Access::Open).is_err());
        assert!(ChannelRule::new("trades:*", Access::Owner).is_err());
        assert!(ChannelRule::new("bad name", Access::Open).is_err());
        assert!(ChannelRule::new("{user}", Access::Owner).is_err());
    }
}
