//! Checks credentials against the user store, at the speed of the edges.
//!
//! argon2id costs tens of milliseconds by design, so a token is verified
//! with argon2 once and then remembered by its SHA-256 together with the
//! user's `version`. Each check first asks the store whether anything
//! changed since (SQLite's `data_version`), when its files may have changed
//! ([`StoreWatch`]); if so it reloads the users, and a remembered token of
//! an older version (rotated or revoked) is refused on its very next use. At most
//! [`MAX_CONCURRENT_HASHES`] argon2 checks run at once, off the async
//! workers, so a flood of wrong tokens cannot starve the server.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::warn;

use super::store::{StoreError, USERS_FILE, UserRecord, UserStore, verify_token};
use super::watch::StoreWatch;
use super::{Principal, split_token};

/// argon2 verifications running at once, at most.
pub const MAX_CONCURRENT_HASHES: usize = 2;

/// Remembered verifications, at most (forgotten all at once beyond).
const MAX_CACHED: usize = 100_000;

/// Why credentials were refused. The messages say what is wrong without
/// echoing any part of the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all.
    #[error("credentials are required: send `Authorization: Bearer <token>`")]
    Missing,
    /// Not shaped like a token, or an unsupported scheme.
    #[error("the credentials are malformed: {0}")]
    Malformed(&'static str),
    /// No such key, or the secret does not match.
    #[error("the token is not valid")]
    Invalid,
    /// The user's token was revoked or replaced.
    #[error("the token was revoked or rotated")]
    Revoked,
    /// Basic auth: the token belongs to another user.
    #[error("the token does not belong to user {0:?}")]
    WrongUser(String),
    /// The store could not be read.
    #[error("the user store is unavailable")]
    Unavailable,
}

#[derive(Debug)]
struct Inner {
    store: UserStore,
    watch: StoreWatch,
    data_version: Option<i64>,
    by_key: HashMap<String, Arc<UserRecord>>,
    /// SHA-256 of a verified token → (user name, version verified).
    verified: HashMap<[u8; 32], (String, i64)>,
}

impl Inner {
    /// Whether `digest` was verified for `user` at its current version.
    fn remembered(&self, digest: &[u8; 32], user: &UserRecord) -> bool {
        self.verified.get(digest).is_some_and(|(name, v)| *name == user.name && *v == user.version)
    }

    fn refresh(&mut self) -> Result<(), StoreError> {
        let now = std::time::Instant::now();
        if self.data_version.is_some() && !self.watch.must_ask(now) {
            return Ok(());
        }
        let v = self.store.data_version()?;
        self.watch.asked(now);
        if self.data_version == Some(v) {
            return Ok(());
        }
        self.by_key = self.store.all()?.into_iter().map(|u| (u.key_id.clone(), Arc::new(u))).collect();
        self.data_version = Some(v);
        Ok(())
    }
}

/// The credential checker the edges share.
#[derive(Debug)]
pub struct Verifier {
    inner: Mutex<Inner>,
    hashing: Semaphore,
}

/// What a successful check returns.
pub type Authenticated = Arc<Principal>;

impl Verifier {
    /// Opens the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Verifier, StoreError> {
        // Watching before opening: no change can fall between the two.
        let watch = StoreWatch::new(data_dir, USERS_FILE);
        let store = UserStore::open(data_dir)?;
        let mut inner =
            Inner { store, watch, data_version: None, by_key: HashMap::new(), verified: HashMap::new() };
        inner.refresh()?;
        Ok(Verifier { inner: Mutex::new(inner), hashing: Semaphore::new(MAX_CONCURRENT_HASHES) })
    }

    /// Runs `f` on the store (the server's first-chair bootstrap).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut UserStore) -> R) -> R {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut inner.store);
        // `data_version` counts other connections' changes only: reload.
        inner.data_version = None;
        out
    }

    /// The user a bearer token belongs to.
    pub async fn bearer(&self, token: &str) -> Result<Authenticated, AuthError> {
        let parts = split_token(token).ok_or(AuthError::Malformed("not an eoc token"))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let user = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(err) = inner.refresh() {
                warn!(error = %err, "could not read the user store");
                return Err(AuthError::Unavailable);
            }
            let user = inner.by_key.get(parts.key_id).cloned().ok_or(AuthError::Invalid)?;
            if !user.active() {
                return Err(AuthError::Revoked);
            }
            if inner.remembered(&digest, &user) {
                return Ok(Arc::new(user.principal()));
            }
            user
        };
        let _permit = self.hashing.acquire().await.map_err(|_| AuthError::Unavailable)?;
        // Requests with the same new token queue here together: the first
        // hashes it, the rest find it remembered.
        {
            let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if inner.remembered(&digest, &user) {
                return Ok(Arc::new(user.principal()));
            }
        }
        let (token_owned, hash) = (token.to_owned(), user.token_hash.clone());
        let ok = tokio::task::spawn_blocking(move || verify_token(&token_owned, &hash))
            .await
            .map_err(|_| AuthError::Unavailable)?;
        if !ok {
            return Err(AuthError::Invalid);
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // The user may have changed while the hash ran: check again.
        let _ = inner.refresh();
        match inner.by_key.get(parts.key_id) {
            Some(now) if now.version == user.version && now.active() => {
                if inner.verified.len() >= MAX_CACHED {
                    inner.verified.clear();
                }
                inner.verified.insert(digest, (user.name.clone(), user.version));
                Ok(Arc::new(user.principal()))
            }
            _ => Err(AuthError::Revoked),
        }
    }

    /// HTTP Basic credentials: `user` with its token as the password.
    pub async fn basic(&self, user: &str, password: &str) -> Result<Authenticated, AuthError> {
        let who = self.bearer(password).await?;
        if who.name != user {
            return Err(AuthError::WrongUser(user.chars().take(64).collect()));
        }
        Ok(who)
    }

    /// The active user `name`, without credentials: for MQTT topics that
    /// the broker's ACL pins to a user (`owntracks/{user}/…`).
    pub fn user(&self, name: &str) -> Result<Authenticated, AuthError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.refresh().is_err() {
            return Err(AuthError::Unavailable);
        }
        let user = inner.by_key.values().find(|u| u.name == name).cloned().ok_or(AuthError::Invalid)?;
        if !user.active() {
            return Err(AuthError::Revoked);
        }
        Ok(Arc::new(user.principal()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::auth::store::NewUser;

    fn chair(name: &str) -> NewUser {
        NewUser { name: name.to_owned(), role: Role::Chair, team: None, sites: vec![] }
    }

    #[tokio::test]
    async fn changes_by_another_connection_apply_on_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let verifier = Verifier::open(dir.path()).unwrap();
        // The administrator's command runs in another process: its own
        // connection.
        let mut admin = UserStore::open(dir.path()).unwrap();
        let token = admin.add(&chair("c1")).unwrap();
        let who = verifier.bearer(&token).await.unwrap();
        assert_eq!((who.name.as_str(), who.role), ("c1", Role::Chair));
        // Remembered: a second check needs no hash, and still answers.
        assert_eq!(verifier.bearer(&token).await.unwrap().name, "c1");

        let new = admin.rotate("c1").unwrap();
        assert_eq!(verifier.bearer(&token).await.unwrap_err(), AuthError::Invalid);
        assert_eq!(verifier.bearer(&new).await.unwrap().name, "c1");
        admin.revoke("c1").unwrap();
        assert_eq!(verifier.bearer(&new).await.unwrap_err(), AuthError::Revoked);
        assert_eq!(verifier.user("c1").unwrap_err(), AuthError::Revoked);
    }

    #[tokio::test]
    async fn changes_through_the_verifiers_own_store_apply_too() {
        let dir = tempfile::tempdir().unwrap();
        let verifier = Verifier::open(dir.path()).unwrap();
        verifier.with_store(|s| s.ensure_first_chair()).unwrap();
        let token = std::fs::read_to_string(dir.path().join(crate::auth::store::FIRST_CHAIR_FILE)).unwrap();
        assert_eq!(verifier.bearer(token.trim()).await.unwrap().name, "chair");
    }

    #[tokio::test]
    async fn wrong_secrets_and_shapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let verifier = Verifier::open(dir.path()).unwrap();
        let token = UserStore::open(dir.path()).unwrap().add(&chair("c1")).unwrap();
        let mut forged = token.clone();
        let last = if forged.ends_with('A') { "B" } else { "A" };
        forged.replace_range(forged.len() - 1.., last);
        assert_eq!(verifier.bearer(&forged).await.unwrap_err(), AuthError::Invalid);
        assert!(matches!(verifier.bearer("hunter2").await.unwrap_err(), AuthError::Malformed(_)));
        assert_eq!(verifier.basic("c1", &token).await.unwrap().name, "c1");
        assert_eq!(verifier.basic("c2", &token).await.unwrap_err(), AuthError::WrongUser("c2".to_owned()));
    }
}
