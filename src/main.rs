//! The `cloud-notify` command.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cloud_notify::config::Config;

#[derive(Parser)]
#[command(
    name = "cloud-notify",
    version,
    about = "XEP-0357 push notifications for XMPP, server side"
)]
struct Cli {
    /// Configuration file (TOML). Without it the built-in defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and the data directory, and print the effective settings.
    Check,
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Opens the database once so a bad data directory or a file from a newer version is
/// reported now, not at the first push.
fn check(cfg: &Config) -> Result<(), String> {
    cloud_notify::store::open_database(&cfg.data_dir, cfg.store_cache_size)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match load_config(cli.config.as_ref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("cloud-notify: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Check) | None => {
            if let Err(e) = check(&cfg) {
                eprintln!("cloud-notify: {e}");
                return ExitCode::FAILURE;
            }
            let source = cli
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into());
            let mut out = std::io::stdout().lock();
            let mut text = format!(
                "# cloud-notify {}: configuration OK ({source})\n{cfg}",
                env!("CARGO_PKG_VERSION")
            );
            if cli.command.is_none() {
                text.push_str(
                    "# The XMPP host (client and component listeners) is not built yet: \
                     this version validates the configuration and the data directory only.\n",
                );
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = out.write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
    }
}
