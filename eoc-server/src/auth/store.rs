//! The user store: `users.sqlite` in the data directory.
//!
//! One row per user: role, binding (team or sites), the key id that finds
//! the user from a token, the token secret's argon2id hash, and the same
//! token's hash in mosquitto's password-file format (so a phone uses one
//! credential for HTTP and MQTT). Plain tokens are shown once, by
//! [`UserStore::add`] and [`UserStore::rotate`], and never stored.
//!
//! The administrator's commands (`eoc-server user …`) write here while the
//! server runs; the server sees each change on the next request
//! ([`UserStore::data_version`], asked when the files changed). Every
//! change also rewrites the broker's password file and ACL
//! ([`write_broker_files`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Principal, Role, new_token, valid_name};

/// File name of the user store inside the data directory.
pub const USERS_FILE: &str = "users.sqlite";

/// Directory (inside the data directory) of the generated broker files.
pub const BROKER_DIR: &str = "mosquitto";

/// The broker account of the eoc server itself.
pub const SERVER_ACCOUNT: &str = "eoc-server";

/// File (in [`BROKER_DIR`]) holding the server account's broker password.
pub const SERVER_SECRET_FILE: &str = "eoc-server.secret";

/// File (in the data directory) the first chair's token is written to when
/// a server starts on an empty store.
pub const FIRST_CHAIR_FILE: &str = "first-chair.token";

/// Most sites one site manager may hold.
pub const MAX_SITES: usize = 64;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is wrong (unknown user, bad name, missing binding…).
    #[error("{0}")]
    Invalid(String),
    /// SQLite failed.
    #[error("user store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Hashing or randomness failed.
    #[error("user store: {0}")]
    Crypto(String),
    /// Writing the broker files failed.
    #[error("writing broker files: {0}")]
    Io(#[from] std::io::Error),
}

/// One user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Unique name, recorded as `by` on every command.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// A responder's team.
    pub team: Option<String>,
    /// A site manager's sites.
    pub sites: Vec<String>,
    /// Finds the user from a token.
    pub key_id: String,
    /// argon2id hash of the token (PHC string).
    pub token_hash: String,
    /// The token hashed for mosquitto's password file.
    pub broker_hash: String,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// Last added, rotated or revoked, ms since the epoch.
    pub updated_ms: i64,
    /// Revoked at, if revoked.
    pub revoked_ms: Option<i64>,
    /// Increases on every change; a cached verification of an older
    /// version is void.
    pub version: i64,
}

impl UserRecord {
    /// The identity this user acts as.
    pub fn principal(&self) -> Principal {
        Principal {
            name: self.name.clone(),
            role: self.role,
            team: self.team.clone(),
            sites: self.sites.clone(),
        }
    }

    /// Whether the user may sign in.
    pub fn active(&self) -> bool {
        self.revoked_ms.is_none()
    }
}

/// A new user to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Team (responders only, required for them).
    pub team: Option<String>,
    /// Sites (site managers only, at least one for them).
    pub sites: Vec<String>,
}

impl NewUser {
    /// Checks the name and that the binding fits the role.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |why: String| Err(StoreError::Invalid(why));
        if !valid_name(&self.name) {
            return bad(format!("user name {:?} must be 1-64 characters of A-Z a-z 0-9 . _ -", self.name));
        }
        if self.name == SERVER_ACCOUNT {
            return bad(format!("{SERVER_ACCOUNT} is the server's own broker account"));
        }
        match (self.role, &self.team, self.sites.is_empty()) {
            (Role::Responder, None, _) => return bad("a responder needs --team".to_owned()),
            (Role::Responder, Some(_), false) => return bad("a responder takes no --site".to_owned()),
            (Role::SiteManager, _, true) => return bad("a site manager needs at least one --site".to_owned()),
            (Role::SiteManager, Some(_), _) => return bad("a site manager takes no --team".to_owned()),
            (Role::Chair | Role::Operator | Role::Viewer, Some(_), _)
            | (Role::Chair | Role::Operator | Role::Viewer, _, false) => {
                return bad(format!("a {} takes no --team or --site", self.role));
            }
            _ => {}
        }
        if self.sites.len() > MAX_SITES {
            return bad(format!("at most {MAX_SITES} sites per site manager"));
        }
        for id in self.team.iter().chain(&self.sites) {
            if !valid_name(id) {
                return bad(format!("{id:?} is not a valid team or site id"));
            }
        }
        Ok(())
    }
}

/// The open store.
#[derive(Debug)]
pub struct UserStore {
    conn: Connection,
    dir: PathBuf,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn crypto(err: impl std::fmt::Display) -> StoreError {
    StoreError::Crypto(err.to_string())
}

/// argon2id hash (PHC string) of a token.
pub fn hash_token(token: &str) -> Result<String, StoreError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(crypto)?;
    let salt = SaltString::encode_b64(&salt).map_err(crypto)?;
    Ok(Argon2::default().hash_password(token.as_bytes(), &salt).map_err(crypto)?.to_string())
}

/// Whether `token` matches an argon2 PHC `hash`. Deliberately slow (tens of
/// milliseconds): call it off the async workers.
pub fn verify_token(token: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(token.as_bytes(), &h).is_ok())
}

/// Iterations of mosquitto's PBKDF2-SHA512 password hash (its default).
const BROKER_ITERATIONS: u32 = 101;

/// `password` hashed as mosquitto 2's `mosquitto_passwd` does:
/// `$7$101$<salt>$<hash>`, PBKDF2-HMAC-SHA512, base64.
pub fn broker_hash(password: &str) -> Result<String, StoreError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut salt = [0u8; 12];
    getrandom::fill(&mut salt).map_err(crypto)?;
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, BROKER_ITERATIONS, &mut out);
    Ok(format!("$7${BROKER_ITERATIONS}${}${}", b64.encode(salt), b64.encode(out)))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    team        TEXT,
    sites       TEXT NOT NULL DEFAULT '',
    key_id      TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL,
    broker_hash TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER,
    version     INTEGER NOT NULL
);";

const COLUMNS: &str =
    "name, role, team, sites, key_id, token_hash, broker_hash, created_ms, updated_ms, revoked_ms, version";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let role: String = r.get(1)?;
    let sites: String = r.get(3)?;
    Ok(UserRecord {
        name: r.get(0)?,
        // An unknown role in the file reads as a viewer: never more power
        // than written.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        team: r.get(2)?,
        sites: sites.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        key_id: r.get(4)?,
        token_hash: r.get(5)?,
        broker_hash: r.get(6)?,
        created_ms: r.get(7)?,
        updated_ms: r.get(8)?,
        revoked_ms: r.get(9)?,
        version: r.get(10)?,
    })
}

impl UserStore {
    /// Opens (creating) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<UserStore, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let conn = Connection::open(data_dir.join(USERS_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(UserStore { conn, dir: data_dir.to_path_buf() })
    }

    /// A number that changes whenever another connection changed the store
    /// (SQLite's `data_version`).
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
    }

    /// Every user, by name.
    pub fn all(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], record)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One user.
    pub fn get(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLUMNS} FROM users WHERE name = ?1"), [name], record)
            .optional()?)
    }

    /// Adds a user and returns its token (shown once).
    pub fn add(&mut self, user: &NewUser) -> Result<String, StoreError> {
        user.check()?;
        if self.get(&user.name)?.is_some() {
            return Err(StoreError::Invalid(format!(
                "user {} exists; `user rotate {}` gives it a new token",
                user.name, user.name
            )));
        }
        let (token, key_id) = new_token().map_err(crypto)?;
        let (token_hash, broker) = (hash_token(&token)?, broker_hash(&token)?);
        let now = now_ms();
        self.conn.execute(
            &format!("INSERT INTO users ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, NULL, 1)"),
            params![
                user.name,
                user.role.as_str(),
                user.team,
                user.sites.join(","),
                key_id,
                token_hash,
                broker,
                now
            ],
        )?;
        self.write_broker_files()?;
        Ok(token)
    }

    /// Gives `name` a new token (the old one stops working at once) and
    /// returns it; a revoked user is reinstated.
    pub fn rotate(&mut self, name: &str) -> Result<String, StoreError> {
        if self.get(name)?.is_none() {
            return Err(StoreError::Invalid(format!("no user {name}")));
        }
        let (token, key_id) = new_token().map_err(crypto)?;
        let (token_hash, broker) = (hash_token(&token)?, broker_hash(&token)?);
        self.conn.execute(
            "UPDATE users SET key_id = ?2, token_hash = ?3, broker_hash = ?4, updated_ms = ?5,
                 revoked_ms = NULL, version = version + 1 WHERE name = ?1",
            params![name, key_id, token_hash, broker, now_ms()],
        )?;
        self.write_broker_files()?;
        Ok(token)
    }

    /// Revokes `name`: its token stops working at once.
    pub fn revoke(&mut self, name: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let changed = self.conn.execute(
            "UPDATE users SET revoked_ms = ?2, updated_ms = ?2, version = version + 1
                 WHERE name = ?1 AND revoked_ms IS NULL",
            params![name, now],
        )?;
        if changed == 0 {
            return match self.get(name)? {
                None => Err(StoreError::Invalid(format!("no user {name}"))),
                Some(_) => Err(StoreError::Invalid(format!("user {name} is already revoked"))),
            };
        }
        self.write_broker_files()
    }

    /// On a store with no user at all, adds the chair `chair` and writes
    /// its token to `DATA/first-chair.token` (readable by the owner only);
    /// returns that path. Does nothing once any user exists, even revoked.
    pub fn ensure_first_chair(&mut self) -> Result<Option<PathBuf>, StoreError> {
        let count: i64 = self.conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
        if count > 0 {
            return Ok(None);
        }
        let token = self.add(&NewUser {
            name: "chair".to_owned(),
            role: Role::Chair,
            team: None,
            sites: Vec::new(),
        })?;
        let path = self.dir.join(FIRST_CHAIR_FILE);
        write_private(&path, &format!("{token}\n"))?;
        Ok(Some(path))
    }

    /// Rewrites `DATA/mosquitto/passwd` and `DATA/mosquitto/acl` from the
    /// active users (and the server's own account, whose password is made
    /// once and kept in `DATA/mosquitto/eoc-server.secret`).
    pub fn write_broker_files(&self) -> Result<(), StoreError> {
        let dir = self.dir.join(BROKER_DIR);
        std::fs::create_dir_all(&dir)?;
        let secret_path = dir.join(SERVER_SECRET_FILE);
        let server_password = match std::fs::read_to_string(&secret_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                let (password, _) = new_token().map_err(crypto)?;
                write_private(&secret_path, &format!("{password}\n"))?;
                password
            }
        };
        let users: Vec<UserRecord> = self.all()?.into_iter().filter(UserRecord::active).collect();
        let mut passwd = format!("{SERVER_ACCOUNT}:{}\n", broker_hash(&server_password)?);
        for u in &users {
            let _ = writeln!(passwd, "{}:{}", u.name, u.broker_hash);
        }
        write_private(&dir.join("passwd"), &passwd)?;
        write_private(&dir.join("acl"), &broker_acl(&users, DEFAULT_PREFIX))?;
        Ok(())
    }
}

/// The topic prefix the generated ACL uses (the server's default).
pub const DEFAULT_PREFIX: &str = "eoc/v1";

/// The mosquitto ACL for `users`: each role's topics, each responder and
/// site manager pinned to its own team's or sites' topics.
pub fn broker_acl(users: &[UserRecord], prefix: &str) -> String {
    let mut acl = String::from(
        "# Generated by `eoc-server user …` from the user store; rewritten on every change.\n\
         # Reload the broker (SIGHUP) after a change.\n\n",
    );
    let _ = writeln!(acl, "user {SERVER_ACCOUNT}\ntopic readwrite #\n");
    for u in users {
        let _ = writeln!(acl, "user {}", u.name);
        let mut line = |access: &str, topic: String| {
            let _ = writeln!(acl, "topic {access} {topic}");
        };
        match u.role {
            Role::Chair | Role::Operator => {
                if u.role == Role::Chair {
                    line("write", format!("{prefix}/alerts"));
                    line("write", format!("{prefix}/alerts/cap"));
                }
                line("write", format!("{prefix}/teams/+/position"));
                line("write", format!("{prefix}/teams/+/status"));
                line("write", format!("{prefix}/teams/+/tasks/+/ack"));
                line("write", format!("{prefix}/sites/+/capacity"));
                line("write", format!("{prefix}/tasks/+/ack"));
                line("read", format!("{prefix}/#"));
                line("read", "owntracks/#".to_owned());
            }
            Role::Responder => {
                let team = u.team.as_deref().unwrap_or("-");
                line("write", format!("{prefix}/teams/{team}/position"));
                line("write", format!("{prefix}/teams/{team}/status"));
                line("write", format!("{prefix}/teams/{team}/tasks/+/ack"));
                line("read", format!("{prefix}/teams/{team}/tasks"));
                line("read", format!("{prefix}/alerts/+/impact"));
                line("read", format!("{prefix}/errors"));
                line("readwrite", format!("owntracks/{}/#", u.name));
            }
            Role::SiteManager => {
                for site in &u.sites {
                    line("write", format!("{prefix}/sites/{site}/capacity"));
                }
                line("read", format!("{prefix}/alerts/+/impact"));
                line("read", format!("{prefix}/errors"));
            }
            Role::Viewer => {
                line("read", format!("{prefix}/events"));
                line("read", format!("{prefix}/alerts/+/impact"));
            }
        }
        acl.push('\n');
    }
    acl
}

/// Writes `text` to `path` atomically (temporary file, then rename),
/// readable and writable by the owner only.
fn write_private(path: &Path, text: &str) -> Result<(), StoreError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responder(name: &str, team: &str) -> NewUser {
        NewUser { name: name.to_owned(), role: Role::Responder, team: Some(team.to_owned()), sites: vec![] }
    }

    #[test]
    fn add_rotate_revoke_change_what_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = UserStore::open(dir.path()).unwrap();
        let token = store.add(&responder("r1", "t-1")).unwrap();
        let u = store.get("r1").unwrap().unwrap();
        assert!(verify_token(&token, &u.token_hash));
        assert!(!verify_token("eoc_wrong", &u.token_hash));
        assert!(!u.token_hash.contains(&token) && !u.broker_hash.contains(&token));

        let again = store.add(&responder("r1", "t-2")).unwrap_err().to_string();
        assert!(again.contains("exists"), "{again}");

        let rotated = store.rotate("r1").unwrap();
        let u2 = store.get("r1").unwrap().unwrap();
        assert!(verify_token(&rotated, &u2.token_hash) && !verify_token(&token, &u2.token_hash));
        assert!(u2.version > u.version && u2.key_id != u.key_id);

        store.revoke("r1").unwrap();
        assert!(!store.get("r1").unwrap().unwrap().active());
        assert!(store.revoke("r1").unwrap_err().to_string().contains("already revoked"));
        assert!(store.revoke("nobody").unwrap_err().to_string().contains("no user"));
        let acl = std::fs::read_to_string(dir.path().join("mosquitto/acl")).unwrap();
        assert!(!acl.contains("user r1"), "a revoked user leaves the ACL:\n{acl}");
    }

    #[test]
    fn bindings_must_fit_the_role() {
        let check = |role, team: Option<&str>, sites: &[&str]| {
            NewUser {
                name: "u".to_owned(),
                role,
                team: team.map(str::to_owned),
                sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            }
            .check()
            .map_err(|e| e.to_string())
        };
        assert!(check(Role::Responder, None, &[]).unwrap_err().contains("--team"));
        assert!(check(Role::SiteManager, None, &[]).unwrap_err().contains("--site"));
        assert!(check(Role::Viewer, Some("t-1"), &[]).is_err());
        assert!(check(Role::Chair, None, &["s-1"]).is_err());
        assert!(check(Role::Responder, Some("t/1"), &[]).is_err());
        assert!(check(Role::SiteManager, None, &["s-1", "s-2"]).is_ok());
    }

    #[test]
    fn first_chair_only_on_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = UserStore::open(dir.path()).unwrap();
        let path = store.ensure_first_chair().unwrap().unwrap();
        let token = std::fs::read_to_string(&path).unwrap();
        let chair = store.get("chair").unwrap().unwrap();
        assert_eq!(chair.role, Role::Chair);
        assert!(verify_token(token.trim(), &chair.token_hash));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        store.revoke("chair").unwrap();
        assert_eq!(store.ensure_first_chair().unwrap(), None);
    }

    #[test]
    fn acl_pins_responders_and_site_managers() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = UserStore::open(dir.path()).unwrap();
        store.add(&responder("r1", "t-1")).unwrap();
        store
            .add(&NewUser {
                name: "m1".to_owned(),
                role: Role::SiteManager,
                team: None,
                sites: vec!["s-1".to_owned()],
            })
            .unwrap();
        let acl = broker_acl(&store.all().unwrap(), "eoc/v1");
        assert!(acl.contains("user r1\ntopic write eoc/v1/teams/t-1/position\n"), "{acl}");
        assert!(acl.contains("user m1\ntopic write eoc/v1/sites/s-1/capacity\n"), "{acl}");
        let r1_block = acl.split("\n\n").find(|b| b.starts_with("user r1")).unwrap();
        assert!(!r1_block.contains("/alerts\n") && !r1_block.contains("teams/+/"), "{r1_block}");
        let passwd = std::fs::read_to_string(dir.path().join("mosquitto/passwd")).unwrap();
        assert_eq!(passwd.lines().count(), 3, "server, r1, m1:\n{passwd}");
        assert!(passwd.lines().all(|l| l.split_once(':').is_some_and(|(_, h)| h.starts_with("$7$101$"))));
    }
}
