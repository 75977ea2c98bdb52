//! Access control: who may do what (PRODUCT.md §5).
//!
//! - [`store`]: users, their roles and their hashed tokens, in
//!   `users.sqlite` in the data directory, managed by `eoc-server user …`;
//!   it also writes the broker's password file and ACL.
//! - [`verifier`]: turns a bearer token or Basic credentials into a
//!   [`Principal`], seeing the store's changes at once (a revoked token fails
//!   on its next use).
//! - [`policy`]: the one rule book every edge applies: [`policy::authorize`].
//!
//! Tokens are `eoc_<key id>_<secret>`: the key id (12 characters) finds the
//! user, the secret (32 random bytes, base64url) is checked against its
//! argon2id hash. Neither the token nor its hash is ever logged or audited.

pub mod cli;
pub mod policy;
pub mod store;
pub mod verifier;
pub mod watch;

use std::fmt;

use serde::Serialize;

/// What a user may do (PRODUCT.md §5), from most to least power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// CoES chair: issues and cancels alerts, and everything an operator does.
    Chair,
    /// EOC operator: reads everything, assigns and overrides.
    Operator,
    /// A REACT responder's phone: its own team's position, status and tasks.
    Responder,
    /// A site manager: its own sites' capacity and occupancy.
    SiteManager,
    /// Reads only.
    Viewer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] =
        [Role::Chair, Role::Operator, Role::Responder, Role::SiteManager, Role::Viewer];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Chair => "chair",
            Role::Operator => "operator",
            Role::Responder => "responder",
            Role::SiteManager => "site_manager",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether the role has the operator's powers (read all, assign,
    /// override any team or site).
    pub fn operates(self) -> bool {
        matches!(self, Role::Chair | Role::Operator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated identity: a user of the store, or the scope an MQTT
/// topic proves (the broker's ACL authenticated the publisher and pinned it
/// to that topic; MQTT does not tell a subscriber who published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The name recorded with every command (`by`).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The team a responder speaks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The sites a site manager speaks for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
}

impl Principal {
    /// A principal with no team or sites.
    pub fn new(name: impl Into<String>, role: Role) -> Principal {
        Principal { name: name.into(), role, team: None, sites: Vec::new() }
    }

    /// A responder of `team`.
    pub fn responder(name: impl Into<String>, team: impl Into<String>) -> Principal {
        Principal { team: Some(team.into()), ..Principal::new(name, Role::Responder) }
    }

    /// A site manager of `sites`.
    pub fn site_manager(name: impl Into<String>, sites: Vec<String>) -> Principal {
        Principal { sites, ..Principal::new(name, Role::SiteManager) }
    }

    /// The server itself (ticks, outbound publishes).
    pub fn server() -> Principal {
        Principal::new("eoc", Role::Chair)
    }
}

/// Longest user name.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is a valid user (or team, or site) name: 1–64 characters
/// of `A-Z a-z 0-9 . _ -` (no `:` or `/`, which scope names and topics use).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Length of a token's key id.
pub const KEY_ID_LEN: usize = 12;
/// Length of a token's secret (32 bytes, base64url without padding).
pub const SECRET_LEN: usize = 43;
/// Length of a whole token: `eoc_` + key id + `_` + secret.
pub const TOKEN_LEN: usize = 4 + KEY_ID_LEN + 1 + SECRET_LEN;

/// A token split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenParts<'a> {
    /// Finds the user.
    pub key_id: &'a str,
    /// Checked against the stored hash.
    pub secret: &'a str,
}

/// Splits a token, or `None` when it does not have a token's shape.
pub fn split_token(token: &str) -> Option<TokenParts<'_>> {
    if token.len() != TOKEN_LEN || !token.is_ascii() {
        return None;
    }
    let rest = token.strip_prefix("eoc_")?;
    let (key_id, secret) = (&rest[..KEY_ID_LEN], &rest[KEY_ID_LEN + 1..]);
    let ok = rest.as_bytes()[KEY_ID_LEN] == b'_'
        && key_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(TokenParts { key_id, secret })
}

/// A new random token and its key id.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    use base64::Engine as _;
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; KEY_ID_LEN + 32];
    getrandom::fill(&mut raw)?;
    let key_id: String = raw[..KEY_ID_LEN].iter().map(|b| ALPHABET[usize::from(*b) % 36] as char).collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[KEY_ID_LEN..]);
    Ok((format!("eoc_{key_id}_{secret}"), key_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_split_back_and_differ() {
        let (a, key_a) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        let parts = split_token(&a).unwrap();
        assert_eq!(parts.key_id, key_a);
        assert_eq!(parts.secret.len(), SECRET_LEN);
    }

    #[test]
    fn malformed_tokens_do_not_split() {
        let (good, _) = new_token().unwrap();
        assert!(split_token(&good[1..]).is_none());
        assert!(split_token(&good.replace("eoc_", "abc_")).is_none());
        assert!(split_token(&format!("{}é", &good[..TOKEN_LEN - 2])).is_none());
        assert!(split_token("").is_none());
        let mut upper = good.clone();
        upper.replace_range(4..5, "A");
        assert!(split_token(&upper).is_none(), "key ids are lower case");
    }

    #[test]
    fn names_are_bounded_and_plain() {
        assert!(valid_name("react-dushanbe-1"));
        assert!(valid_name("chair.rahimov"));
        assert!(!valid_name(""));
        assert!(!valid_name("mqtt:team"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
        assert!(Role::Chair.operates() && Role::Operator.operates());
        assert!(!Role::Responder.operates() && !Role::Viewer.operates());
    }
}
