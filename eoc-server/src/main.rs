//! The `eoc-server` binary: thin glue around the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use eoc_server::config::Config;

/// mimalloc instead of the system allocator: ingest allocates and frees a
/// few small buffers per message on several threads, and glibc's malloc
/// (with its consolidation of freed chunks) took about a quarter of the
/// server's CPU under MQTT load (BENCHMARKS.md, the load generator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// eoc: real-time coordination server for an Emergency Operations Centre.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags of `run`, also accepted without the subcommand.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Run(RunArgs),
    /// Print the impact, allocation and dispatch of a hypothetical hazard.
    Whatif(eoc_server::whatif::WhatifArgs),
    /// Scenario data tools.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Manage users and their tokens in a data directory (takes effect on a
    /// running server at once).
    #[command(subcommand)]
    User(eoc_server::auth::cli::UserCommand),
}

/// Flags of `eoc-server run`; each overrides the configuration file and
/// the `EOC_*` environment.
#[derive(Debug, Clone, Default, Args)]
struct RunArgs {
    /// Configuration file (default `config/eoc.toml` if present).
    #[arg(long, env = "EOC_CONFIG")]
    config: Option<PathBuf>,
    /// Scenario directory.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// HTTP and WebSocket listener, `ADDR:PORT`.
    #[arg(long)]
    http: Option<String>,
    /// MQTT broker, `mqtt://HOST:PORT`.
    #[arg(long)]
    mqtt: Option<String>,
    /// Do not connect to an MQTT broker.
    #[arg(long)]
    no_mqtt: bool,
    /// Directory of the journal.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Log JSON lines instead of text (also `EOC_LOG_JSON=1`).
    #[arg(long)]
    log_json: bool,
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

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn config_of(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(s) = &args.scenario {
        config.scenario = s.clone();
    }
    if let Some(h) = &args.http {
        config.http.listen = h.clone();
    }
    if let Some(m) = &args.mqtt {
        config.mqtt.url = m.clone();
    }
    if args.no_mqtt {
        config.mqtt.enabled = false;
    }
    if let Some(d) = &args.data {
        config.data_dir = d.clone();
    }
    Ok(config)
}

fn serve(args: &RunArgs) -> anyhow::Result<()> {
    let json = args.log_json || std::env::var("EOC_LOG_JSON").is_ok_and(|v| v == "1" || v == "true");
    init_tracing(json);
    let config = config_of(args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let http = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| format!("binding http {}", config.http.listen))?;
        let shutdown = eoc_server::shutdown::on_signals();
        eoc_server::run(config, eoc_server::Listeners { http }, shutdown).await
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(&cli.run),
        Some(Command::Run(args)) => serve(&args),
        Some(Command::Whatif(args)) => eoc_server::whatif::run(&args),
        Some(Command::Scenario(ScenarioCommand::Build { from, out })) => {
            eoc_server::scenario::build::run(&from, &out)
        }
        Some(Command::Scenario(ScenarioCommand::Check { dir })) => eoc_server::scenario::check(&dir),
        Some(Command::User(command)) => eoc_server::auth::cli::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
