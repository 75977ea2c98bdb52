//! `eoc-server user …`: the administrator's commands on the user store.
//!
//! They write `DATA/users.sqlite` directly, so they work whether or not a
//! server is running on that directory; a running server applies each
//! change on its next request. A new or rotated token is printed alone on
//! standard output (so scripts can capture it) and shown only this once.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::Role;
use super::store::{BROKER_DIR, NewUser, UserStore};

/// `eoc-server user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user and print its token (shown once).
    Add {
        /// User name: 1-64 characters of A-Z a-z 0-9 . _ -
        name: String,
        /// chair, operator, responder, site_manager or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The team a responder speaks for.
        #[arg(long)]
        team: Option<String>,
        /// A site a site manager speaks for (repeat for several).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// The data directory.
        #[command(flatten)]
        data: DataArg,
    },
    /// List users: name, role, binding, state (never tokens or hashes).
    List {
        /// The data directory.
        #[command(flatten)]
        data: DataArg,
    },
    /// Give a user a new token (the old one stops working at once; a
    /// revoked user is reinstated) and print it.
    Rotate {
        /// User name.
        name: String,
        /// The data directory.
        #[command(flatten)]
        data: DataArg,
    },
    /// Revoke a user's token at once.
    Revoke {
        /// User name.
        name: String,
        /// The data directory.
        #[command(flatten)]
        data: DataArg,
    },
}

/// The data directory the server runs on.
#[derive(Debug, Clone, Args)]
pub struct DataArg {
    /// The server's data directory (holds users.sqlite).
    #[arg(long = "data", default_value = "data", env = "EOC_DATA_DIR")]
    pub dir: PathBuf,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role {text:?}; one of {}", names.join(", "))
    })
}

fn open(data: &DataArg) -> anyhow::Result<UserStore> {
    UserStore::open(&data.dir).with_context(|| format!("opening the user store in {}", data.dir.display()))
}

fn print_token(token: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}").context("writing the token")?;
    out.flush().context("writing the token")
}

fn broker_note(data: &DataArg) {
    eprintln!(
        "broker files updated in {}; reload mosquitto (SIGHUP) to apply them to MQTT",
        data.dir.join(BROKER_DIR).display()
    );
}

/// Runs one `user` command.
pub fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, role, team, sites, data } => {
            let token = open(&data)?.add(&NewUser { name: name.clone(), role, team, sites })?;
            eprintln!("added {role} {name}; the token below is shown only now");
            print_token(&token)?;
            broker_note(&data);
        }
        UserCommand::List { data } => {
            let users = open(&data)?.all()?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<24} {:<13} {:<28} {:<8} CHANGED", "NAME", "ROLE", "BINDING", "STATE")?;
            for u in users {
                let binding = match (&u.team, u.sites.is_empty()) {
                    (Some(team), _) => format!("team {team}"),
                    (None, false) => format!("sites {}", u.sites.join(",")),
                    (None, true) => "-".to_owned(),
                };
                let state = if u.active() { "active" } else { "revoked" };
                let changed = chrono::DateTime::from_timestamp_millis(u.updated_ms)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                writeln!(out, "{:<24} {:<13} {:<28} {:<8} {}", u.name, u.role, binding, state, changed)?;
            }
        }
        UserCommand::Rotate { name, data } => {
            let token = open(&data)?.rotate(&name)?;
            eprintln!("rotated {name}: the old token no longer works; the new one is shown only now");
            print_token(&token)?;
            broker_note(&data);
        }
        UserCommand::Revoke { name, data } => {
            open(&data)?.revoke(&name)?;
            eprintln!("revoked {name}");
            broker_note(&data);
        }
    }
    Ok(())
}
