//! The authenticated identity a credential resolves to: how, who, which tier, until when.

use signalhub_hub::{AuthKind, TierId};

/// Who a connection or request is, once its credentials (if any) have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How the caller authenticated.
    pub auth: AuthKind,
    /// The authenticated subject (a token's `sub`; a wallet's lower-case `0x` address).
    /// `None` for anonymous callers.
    pub user: Option<String>,
    /// The tier the credential grants (before any admin override).
    pub tier: TierId,
    /// When the credential stops being valid, Unix seconds; `None` when it never expires.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// A caller with no credentials: lowest tier, no subject, no expiry.
    pub fn anonymous() -> Self {
        Principal {
            auth: AuthKind::Anonymous,
            user: None,
            tier: TierId::LOWEST,
            expires_at: None,
        }
    }

    /// True when a credential was presented and accepted.
    pub fn is_authenticated(&self) -> bool {
        self.auth != AuthKind::Anonymous
    }

    /// True when the credential has an expiry and `now` (Unix seconds) is at or past it.
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|exp| now >= exp)
    }
}

impl Default for Principal {
    fn default() -> Self {
        Principal::anonymous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_principal_has_lowest_tier_and_no_subject() {
        let p = Principal::anonymous();
        assert_eq!(p.auth, AuthKind::Anonymous);
        assert_eq!(p.user, None);
        assert_eq!(p.tier, TierId::LOWEST);
        assert_eq!(p.expires_at, None);
        assert!(!p.is_authenticated());
        assert!(!p.is_expired_at(i64::MAX));
    }

    #[test]
    fn principal_expires_at_its_expiry() {
        let p = Principal {
            auth: AuthKind::Session,
            user: Some("u_1".into()),
            tier: TierId::LOWEST,
            expires_at: Some(100),
        };
        assert!(p.is_authenticated());
        assert!(!p.is_expired_at(99));
        assert!(p.is_expired_at(100));
    }
}
