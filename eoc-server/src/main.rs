//! The `eoc-server` binary: thin glue around the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// eoc: real-time coordination server for an Emergency Operations Centre.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the impact, allocation and dispatch of a hypothetical hazard.
    Whatif(eoc_server::whatif::WhatifArgs),
    /// Scenario data tools.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Build a scenario directory from the Tajikistan source data.
    Build {
        /// The source data directory (shared/data/tajikistan).
        #[arg(long, default_value = "../shared/data/tajikistan")]
        from: PathBuf,
        /// The scenario directory to write.
        #[arg(long, default_value = "config/scenarios/tajikistan")]
        out: PathBuf,
    },
    /// Load a scenario and report rejected rows.
    Check {
        /// The scenario directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Whatif(args) => eoc_server::whatif::run(&args),
        Command::Scenario(ScenarioCommand::Build { from, out }) => {
            eoc_server::scenario::build::run(&from, &out)
        }
        Command::Scenario(ScenarioCommand::Check { dir }) => eoc_server::scenario::check(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
