//! The `ravelin` command: the server and its tools.

mod audit;
mod backup;
mod bench;
mod bootstrap;
mod config;
mod gateway;
mod key;
mod manifests;
mod pki;
#[cfg(feature = "sandbox-probe")]
mod probe;
mod progress;
mod serve;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigFile, Overrides, Settings};

// The probe makes a running server attempt sandbox escapes on request. Release builds
// set RAVELIN_RELEASE, so a deployable binary can never contain it.
#[cfg(feature = "sandbox-probe")]
const _: () = assert!(
    option_env!("RAVELIN_RELEASE").is_none(),
    "the sandbox-probe feature is for tests only; build without it when RAVELIN_RELEASE is set"
);
// The insecure-bench feature serves plain HTTP from an unencrypted database, for
// bench/compare-chroma to measure what TLS and encryption cost.
#[cfg(feature = "insecure-bench")]
const _: () = assert!(
    option_env!("RAVELIN_RELEASE").is_none(),
    "the insecure-bench feature is for benchmarks only; build without it when RAVELIN_RELEASE is set"
);

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
    /// Serve the same HTTPS front before an upstream Chroma instead of the embedded
    /// engine: requests are checked, rebuilt and forwarded, and responses checked.
    /// Keeps no database; the data directory contains the development PKI, the policy
    /// and the audit log.
    Gateway(GatewayArgs),
    /// Manage the development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Create, list and revoke bearer tokens (accepted when `tokens.enabled` is set).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        /// The server's configuration file, for the token file's location.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Data directory [default: ravelin-data]; the token file defaults to DATA_DIR/tokens.toml.
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Check access policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Check audit log files.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check Kubernetes manifests of vector database workloads (Ravelin, Chroma,
    /// Qdrant) for missing security controls.
    ///
    /// Reads each PATH: a YAML file, or a directory searched recursively for .yaml and
    /// .yml files. Exits with 0 when every vector database workload has every control,
    /// 1 when any control is missing, and 2 when an input cannot be read or is not
    /// valid YAML. See docs/deployment.md for the rules.
    CheckManifests {
        /// Files and directories to check. NetworkPolicies count only for workloads
        /// checked in the same run.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Report format: text for people, json for programs.
        #[arg(long, value_enum, default_value_t = manifests::ReportFormat::Text)]
        format: manifests::ReportFormat,
    },
    /// Measure the index: recall and queries per second.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Manage the master key.
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// Copy the database into a new encrypted backup directory while the server runs.
    Backup(backup::BackupArgs),
    /// Replace the database with a backup, after checking its key and integrity. Stop
    /// the server first.
    Restore(backup::RestoreArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a principal and print it. It is shown only this once.
    Create {
        /// The principal the token authenticates as: a certificate identity the
        /// policy grants to.
        #[arg(long)]
        principal: String,
        /// Lifetime: a whole number of days (d), hours (h) or minutes (m), at most 3650d.
        #[arg(long, default_value = "30d")]
        expires: String,
    },
    /// List the tokens: id, state, expiry and principal.
    List,
    /// Revoke a token by id; a running server refuses it from its next request.
    Revoke {
        /// The token id, as `list` shows it.
        id: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and print what each principal it names may do. Exits
    /// with status 1 when the file is invalid.
    Check {
        /// The policy file.
        file: PathBuf,
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
    /// Master key file: 64 hexadecimal characters, no access for others, nor for group unless owned by root [default: DATA_DIR/master.key].
    #[arg(long, conflicts_with = "key_fd")]
    key_file: Option<PathBuf>,
    /// Read the master key from this inherited file descriptor (3 or higher) until end
    /// of file, for example `--key-fd 3 3<master.key`, instead of from a key file.
    #[arg(long, value_name = "FD")]
    key_fd: Option<i32>,
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
    /// Certificate revocation lists of the client CA, PEM; reread on SIGHUP [default: none].
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Audit log, one JSON record per authorization decision [default: DATA_DIR/audit.log].
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Enable POST /api/v2/reset, which deletes all data. For test servers only.
    #[arg(long)]
    allow_reset: bool,
    /// Address and port for Prometheus metrics over plain HTTP, such as 127.0.0.1:9464
    /// [default: no metrics listener]. It has no TLS or authentication.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// The user to serve as when started as root: a name from /etc/passwd, or UID:GID
    /// [default: nobody]. The data directory is handed to this user.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Serve even when the kernel lacks Landlock (ABI 4, Linux 6.7) or seccomp, with
    /// whichever controls it has. Same as `[sandbox] require = false`.
    #[arg(long)]
    allow_unconfined: bool,
    /// Benchmark builds only: serve plain HTTP, every request as principal `admin`,
    /// from an unencrypted database, to measure what TLS and encryption cost.
    #[cfg(feature = "insecure-bench")]
    #[arg(long)]
    insecure_bench: bool,
}

#[derive(Parser)]
struct GatewayArgs {
    /// The upstream Chroma, such as http://127.0.0.1:8001 or https://chroma:8000; overrides
    /// `url` in the [upstream] section of the configuration file.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// TOML configuration file; flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory for the development PKI, policy and audit log [default: ravelin-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8000].
    #[arg(long)]
    listen: Option<SocketAddr>,
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
    /// Certificate revocation lists of the client CA, PEM; reread on SIGHUP [default: none].
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Audit log, one JSON record per authorization decision [default: DATA_DIR/audit.log].
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Enable POST /api/v2/reset, forwarded to the upstream, which deletes all its data.
    /// For test servers only; the upstream must allow reset too.
    #[arg(long)]
    allow_reset: bool,
    /// Address and port for Prometheus metrics over plain HTTP, such as 127.0.0.1:9464
    /// [default: no metrics listener]. It has no TLS or authentication.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// The user to serve as when started as root: a name from /etc/passwd, or UID:GID
    /// [default: nobody]. The data directory is handed to this user.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Serve even when the kernel lacks Landlock (ABI 4, Linux 6.7) or seccomp, with
    /// whichever controls it has. Same as `[sandbox] require = false`.
    #[arg(long)]
    allow_unconfined: bool,
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
                key_fd: args.key_fd,
                policy: args.policy,
                tls_certificate: args.tls_cert,
                tls_key: args.tls_key,
                client_ca: args.client_ca,
                crl: args.crl,
                audit_log: args.audit_log,
                allow_reset: args.allow_reset,
                metrics_listen: args.metrics_listen,
                config_file: args.config,
                user: args.user,
                allow_unconfined: args.allow_unconfined,
            };
            #[cfg_attr(not(feature = "insecure-bench"), allow(unused_mut))]
            let mut settings = Settings::resolve(file, overrides)?;
            #[cfg(feature = "insecure-bench")]
            {
                settings.insecure_bench = args.insecure_bench;
            }
            // Read before the server opens any file or socket; see key::read_descriptor.
            let descriptor_key = key::read_configured_descriptor(&settings)?;
            serve::run(settings, descriptor_key)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Key { command } => {
            key::run(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => {
            backup::run_backup(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            backup::run_restore(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gateway(args) => {
            let mut file = match &args.config {
                Some(path) => ConfigFile::read(path)?,
                None => ConfigFile::default(),
            };
            let upstream = std::mem::take(&mut file.upstream).resolve(args.upstream)?;
            let overrides = Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                policy: args.policy,
                tls_certificate: args.tls_cert,
                tls_key: args.tls_key,
                client_ca: args.client_ca,
                crl: args.crl,
                audit_log: args.audit_log,
                allow_reset: args.allow_reset,
                metrics_listen: args.metrics_listen,
                config_file: args.config,
                user: args.user,
                allow_unconfined: args.allow_unconfined,
                ..Overrides::default()
            };
            gateway::run(Settings::resolve(file, overrides)?, upstream)?;
            Ok(ExitCode::SUCCESS)
        }
        // Verification reports its own errors because it has its own exit statuses.
        Command::Audit {
            command: AuditCommand::Verify { file },
        } => Ok(audit::verify_file(&file)),
        // The check reports its own errors because it has its own exit statuses.
        Command::CheckManifests { paths, format } => Ok(manifests::run(&paths, format)),
        Command::Bench {
            command: BenchCommand::Ann(args),
        } => {
            bench::run_ann(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command,
            config,
            data_dir,
        } => {
            let file = match &config {
                Some(path) => ConfigFile::read(path)?,
                None => ConfigFile::default(),
            };
            let overrides = Overrides {
                data_dir,
                ..Overrides::default()
            };
            let path = Settings::resolve(file, overrides)?.tokens_file;
            match command {
                TokenCommand::Create { principal, expires } => {
                    let lifetime = token::parse_lifetime(&expires)?;
                    let created = token::create(&path, &principal, lifetime)?;
                    eprintln!(
                        "Created a token for principal [{principal}], valid for {expires}, in {}. It is shown only once:",
                        path.display()
                    );
                    println!("{created}");
                    Ok(ExitCode::SUCCESS)
                }
                TokenCommand::List => {
                    print!("{}", token::list(&path)?);
                    Ok(ExitCode::SUCCESS)
                }
                TokenCommand::Revoke { id } => {
                    token::revoke(&path, &id)?;
                    eprintln!("Revoked token {id}.");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => {
            let policy = bootstrap::read_policy(&file)?;
            print!("{}", policy_summary(&file, &policy));
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

/// Describes a valid policy: what each principal it names may do.
fn policy_summary(path: &std::path::Path, policy: &auth::Policy) -> String {
    let principals = policy.principals();
    let mut text = format!(
        "{} is valid: {} grants for {} principals\n",
        path.display(),
        policy.grants().len(),
        principals.len()
    );
    for principal in principals {
        let roles: Vec<&str> = policy.roles_of(principal).collect();
        text.push_str(&format!("\nprincipal [{principal}]"));
        if !roles.is_empty() {
            text.push_str(&format!(", member of role [{}]", roles.join("], [")));
        }
        text.push('\n');
        let mut any = false;
        for grant in policy.grants_of(principal) {
            any = true;
            let through = match &grant.subject {
                auth::Subject::Role(role) => format!(" (through role [{role}])"),
                auth::Subject::Principal(_) => String::new(),
            };
            text.push_str(&format!("  {}{through}\n", grant.describe()));
        }
        if !any {
            text.push_str("  nothing: every request is denied\n");
        }
    }
    text
}
