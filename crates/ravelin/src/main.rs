//! The `ravelin` command: the server and its tools.

mod audit;
mod bench;
mod bootstrap;
mod config;
mod pki;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigFile, Overrides, Settings};

/// A vector database that speaks ChromaDB's HTTP API v2 over mutual TLS, with every
/// byte on disk encrypted.
#[derive(Parser)]
#[command(name = "ravelin", version)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Chroma API v2 over HTTPS. On first start, creates the data directory
    /// with a development PKI, a master key, a policy and the encrypted database.
    Serve(ServeArgs),
    /// Manage the development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Check audit log files.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure the index: recall and queries per second.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log and report the first broken record.
    ///
    /// Exits with 0 when the chain is intact, 1 at a break, and 2 when FILE cannot be
    /// read. See docs/audit.md for the record format.
    Verify {
        /// The audit log, one JSON record per line.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Build an HNSW index from .fvecs base vectors and report recall@10 and queries
    /// per second for each ef, one JSON object per line.
    Ann(bench::AnnArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// TOML configuration file; flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [default: ravelin-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8000].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Master key file: 64 hexadecimal characters, no access for group or others [default: DATA_DIR/master.key].
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Policy file [default: DATA_DIR/policy.toml].
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Server certificate chain, PEM [default: DATA_DIR/pki/server.pem].
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Server private key, PEM [default: DATA_DIR/pki/server.key].
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA certificates that client certificates must chain to, PEM [default: DATA_DIR/pki/ca.pem].
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Enable POST /api/v2/reset, which deletes all data. For test servers only.
    #[arg(long)]
    allow_reset: bool,
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Issue a client certificate whose subject common name, and so principal, is NAME.
    IssueClient {
        /// The principal name: 1-64 characters from [A-Za-z0-9._-].
        name: String,
        /// Data directory holding the development CA [default: ravelin-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory for NAME.pem and NAME.key [default: DATA_DIR/pki/clients].
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_LEAF_DAYS)]
        days: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command and returns the exit status for a command that completed.
fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            let file = match &args.config {
                Some(path) => ConfigFile::read(path)?,
                None => ConfigFile::default(),
            };
            let overrides = Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                key_file: args.key_file,
                policy: args.policy,
                tls_certificate: args.tls_cert,
                tls_key: args.tls_key,
                client_ca: args.client_ca,
                allow_reset: args.allow_reset,
            };
            serve::run(Settings::resolve(file, overrides)?)?;
            Ok(ExitCode::SUCCESS)
        }
        // Verification reports its own errors because it has its own exit statuses.
        Command::Audit {
            command: AuditCommand::Verify { file },
        } => Ok(audit::verify_file(&file)),
        Command::Bench {
            command: BenchCommand::Ann(args),
        } => {
            bench::run_ann(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki {
            command:
                PkiCommand::IssueClient {
                    name,
                    data_dir,
                    out_dir,
                    days,
                },
        } => {
            if !(1..=3650).contains(&days) {
                anyhow::bail!("invalid --days {days}: expected 1 to 3650");
            }
            let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
            let pki_dir = data_dir.join("pki");
            let out_dir = out_dir.unwrap_or_else(|| pki_dir.join(pki::CLIENTS_DIR));
            let (certificate, key) = pki::issue_client(&pki_dir, &name, &out_dir, days)?;
            println!("certificate: {}", certificate.display());
            println!("key:         {}", key.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAVELIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
