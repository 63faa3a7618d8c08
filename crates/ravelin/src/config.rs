//! The server configuration: a TOML file, overridden by command-line flags.
//!
//! Every key is optional. Paths default to files inside the data directory, which is
//! what `ravelin serve` creates on first start. Unknown keys are rejected so a typo
//! never silently leaves a setting at its default.
//!
//! ```toml
//! listen = "127.0.0.1:8000"
//! data_dir = "ravelin-data"
//! key_file = "/run/secrets/ravelin.key"   # default: <data_dir>/master.key
//! # key_fd = 3                            # or: read the key from this inherited descriptor
//! policy = "/etc/ravelin/policy.toml"     # default: <data_dir>/policy.toml
//! allow_reset = false
//! max_body_bytes = 41943040
//! audit_log = "/var/log/ravelin/audit.log" # default: <data_dir>/audit.log
//! metrics_listen = "127.0.0.1:9464"       # default: no metrics listener
//! metrics_allow_remote = false            # allow a metrics address other than loopback
//!
//! [tls]
//! certificate = "/etc/ravelin/server.pem" # default: <data_dir>/pki/server.pem
//! key = "/etc/ravelin/server.key"         # default: <data_dir>/pki/server.key
//! client_ca = "/etc/ravelin/clients-ca.pem" # default: <data_dir>/pki/ca.pem
//! crl = "/etc/ravelin/clients.crl.pem"    # default: no revocation list
//!
//! [limits]
//! max_batch_size = 5461
//!
//! [network]                             # limits of the HTTPS front; see configuration.md
//! max_connections = 4096
//! max_connections_per_peer = 1024
//!
//! [tokens]
//! enabled = false                         # accept bearer tokens as well
//! file = "/etc/ravelin/tokens.toml"       # default: <data_dir>/tokens.toml
//! without_certificate = false             # let a token stand in for a certificate
//!
//! [sandbox]
//! user = "nobody"                         # the user a start as root switches to
//! require = true                          # refuse to start without Landlock and seccomp
//!
//! [upstream]                              # `ravelin gateway` only; see gateway.md
//! url = "https://chroma.internal:8000"    # or --upstream
//! ca = "/etc/ravelin/chroma-ca.pem"       # required for https
//! certificate = "/etc/ravelin/gateway.pem" # client certificate for the upstream
//! key = "/etc/ravelin/gateway.key"
//! token_file = "/run/secrets/chroma-token" # mode 0600 or stricter
//! token_header = "authorization"          # or "x-chroma-token"
//! connect_timeout_seconds = 5
//! request_timeout_seconds = 60
//! max_connections = 64
//! max_response_bytes = 268435456
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_DATA_DIR: &str = "ravelin-data";
/// The audit log's name inside the data directory.
pub const AUDIT_LOG_FILE: &str = "audit.log";
/// The token file's name inside the data directory.
pub const TOKENS_FILE: &str = "tokens.toml";

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_fd: Option<i32>,
    pub policy: Option<PathBuf>,
    pub allow_reset: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub audit_log: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_allow_remote: Option<bool>,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub tokens: TokensSection,
    #[serde(default)]
    pub network: NetworkSection,
    #[serde(default)]
    pub sandbox: SandboxSection,
    #[serde(default)]
    pub upstream: UpstreamSection,
}

/// The upstream Chroma of `ravelin gateway`. `ravelin serve` ignores this section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub url: Option<String>,
    pub ca: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A file holding the token, so the token never appears in argv or the
    /// environment.
    pub token_file: Option<PathBuf>,
    pub token_header: Option<String>,
    pub connect_timeout_seconds: Option<u64>,
    pub request_timeout_seconds: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_response_bytes: Option<usize>,
}

impl UpstreamSection {
    /// Builds the upstream settings, with `url` overriding the section's. Reads the
    /// token file, which must not be readable by group or others.
    pub fn resolve(&self, url: Option<String>) -> Result<server::upstream::UpstreamSettings> {
        let Some(url) = url.or_else(|| self.url.clone()) else {
            anyhow::bail!(
                "no upstream Chroma given; pass --upstream URL or set url in the [upstream] section of the configuration file"
            );
        };
        let mut settings = server::upstream::UpstreamSettings::new(url);
        settings.ca = self.ca.clone();
        settings.certificate = self.certificate.clone();
        settings.key = self.key.clone();
        settings.token_header = match self.token_header.as_deref() {
            None | Some("authorization") => server::upstream::TokenHeader::Authorization,
            Some("x-chroma-token") => server::upstream::TokenHeader::XChromaToken,
            Some(other) => anyhow::bail!(
                "invalid upstream.token_header [{other}]: expected authorization or x-chroma-token"
            ),
        };
        if let Some(path) = &self.token_file {
            settings.token = Some(read_token_file(path)?);
        } else if self.token_header.is_some() {
            anyhow::bail!("upstream.token_header needs upstream.token_file");
        }

        let seconds = |value: Option<u64>, name: &str, default: std::time::Duration| match value {
            None => Ok(default),
            Some(value) if (1..=3600).contains(&value) => Ok(std::time::Duration::from_secs(value)),
            Some(value) => Err(anyhow::anyhow!(
                "invalid upstream.{name} {value}: expected 1 to 3600"
            )),
        };
        settings.connect_timeout = seconds(
            self.connect_timeout_seconds,
            "connect_timeout_seconds",
            settings.connect_timeout,
        )?;
        settings.request_timeout = seconds(
            self.request_timeout_seconds,
            "request_timeout_seconds",
            settings.request_timeout,
        )?;
        match self.max_connections {
            None => {}
            Some(value) if (1..=65_536).contains(&value) => settings.max_connections = value,
            Some(value) => {
                anyhow::bail!("invalid upstream.max_connections {value}: expected 1 to 65536")
            }
        }
        match self.max_response_bytes {
            None => {}
            Some(value) if value >= 1024 => settings.max_response_bytes = value,
            Some(value) => {
                anyhow::bail!("invalid upstream.max_response_bytes {value}: expected at least 1024")
            }
        }
        Ok(settings)
    }
}

/// Reads a token file: one line, surrounding whitespace removed, no access for group
/// or others.
fn read_token_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;

    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read the upstream token file {}", path.display()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "the upstream token file {} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the upstream token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(['\n', '\r']) {
        anyhow::bail!(
            "the upstream token file {} must hold the token on one line",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// Process confinement; see docs/SECURITY.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// The user a start as root switches to: a name from /etc/passwd or `UID:GID`.
    pub user: Option<String>,
    /// Whether a kernel without Landlock (ABI 4 or later) or seccomp stops startup.
    pub require: Option<bool>,
}

/// Confinement settings after the file and the flags are combined.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The user to switch to when started as root; `None` means
    /// [`sandbox::DEFAULT_USER`].
    pub user: Option<sandbox::TargetUser>,
    /// Whether missing kernel support stops startup. Default true.
    pub require: bool,
}

/// Connection, timing and per-principal limits of the HTTPS front.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub handshake_timeout_seconds: Option<u64>,
    pub header_read_timeout_seconds: Option<u64>,
    pub body_read_timeout_seconds: Option<u64>,
    pub min_body_bytes_per_second: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub max_buffered_body_bytes: Option<usize>,
    pub max_requests_in_flight_per_principal: Option<usize>,
    pub requests_per_second_per_principal: Option<f64>,
    pub request_burst_per_principal: Option<f64>,
}

/// Bearer tokens, off unless `enabled`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensSection {
    pub enabled: Option<bool>,
    pub file: Option<PathBuf>,
    pub without_certificate: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub crl: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_batch_size: Option<usize>,
    pub max_id_bytes: Option<usize>,
    pub max_document_bytes: Option<usize>,
    pub max_dimension: Option<usize>,
    pub max_n_results: Option<usize>,
    pub exact_scan_max_vector_bytes: Option<usize>,
    pub query_timeout_ms: Option<u64>,
    pub max_get_limit: Option<usize>,
    pub max_embedding_function_bytes: Option<usize>,
    pub max_metadata_keys: Option<usize>,
    pub max_metadata_key_bytes: Option<usize>,
    pub max_metadata_string_bytes: Option<usize>,
    pub max_metadata_array_items: Option<usize>,
    pub max_filter_depth: Option<usize>,
    pub max_filter_clauses: Option<usize>,
    pub max_filter_in_values: Option<usize>,
    pub max_regex_bytes: Option<usize>,
    pub max_regex_compiled_bytes: Option<usize>,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid configuration file {}", path.display()))
    }
}

/// Settings after the file, the flags and the defaults are combined.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    /// Whether the key file is the default one inside the data directory, which
    /// `serve` may create on first start.
    pub key_file_is_default: bool,
    /// An inherited file descriptor to read the master key from, in place of
    /// `key_file`.
    pub key_fd: Option<i32>,
    pub policy: PathBuf,
    pub policy_is_default: bool,
    pub tls_certificate: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: PathBuf,
    /// The client CA's revocation lists, if any.
    pub crl: Option<PathBuf>,
    /// Whether all three TLS paths are the development PKI's, which `serve` creates on
    /// first start.
    pub tls_is_default: bool,
    pub allow_reset: bool,
    pub max_body_bytes: usize,
    /// Address of the plain-HTTP Prometheus listener, or `None` for no listener.
    pub metrics_listen: Option<SocketAddr>,
    pub limits: api::Limits,
    /// The audit log file.
    pub audit_log: PathBuf,
    /// The front's connection and timing limits; `allow_reset` and `max_body_bytes`
    /// are set from the fields above when the server starts.
    pub front: server::FrontSettings,
    pub throttle: server::throttle::ThrottleSettings,
    /// Bearer token settings, or `None` when tokens are off.
    pub tokens: Option<server::TokenSettings>,
    /// The token file `ravelin token` manages, whether or not the server accepts tokens.
    pub tokens_file: PathBuf,
    /// Plain HTTP and an unencrypted database, for benchmarks. Only the
    /// `insecure-bench` feature's `--insecure-bench` flag sets it.
    #[cfg(feature = "insecure-bench")]
    pub insecure_bench: bool,
    /// The configuration file the settings came from, if any.
    pub config_file: Option<PathBuf>,
    pub sandbox: SandboxSettings,
}

/// Values given on the command line; each overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_fd: Option<i32>,
    pub policy: Option<PathBuf>,
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    pub allow_reset: bool,
    pub metrics_listen: Option<SocketAddr>,
    /// The configuration file the other values came from, if any.
    pub config_file: Option<PathBuf>,
    /// `--user`: the user a start as root switches to.
    pub user: Option<String>,
    /// `--allow-unconfined`: serve even where the kernel lacks Landlock or seccomp.
    pub allow_unconfined: bool,
}

/// Applies the `[network]` section over the defaults, rejecting values that would
/// disable a limit by accident.
fn network_settings(
    section: &NetworkSection,
) -> Result<(server::FrontSettings, server::throttle::ThrottleSettings)> {
    let mut front = server::FrontSettings::default();
    let mut throttle = server::throttle::ThrottleSettings::default();
    let seconds = |value: Option<u64>, name: &str, default: std::time::Duration| match value {
        None => Ok(default),
        Some(value) if (1..=3600).contains(&value) => Ok(std::time::Duration::from_secs(value)),
        Some(value) => Err(anyhow::anyhow!(
            "invalid network.{name} {value}: expected 1 to 3600"
        )),
    };

    front.handshake_timeout = seconds(
        section.handshake_timeout_seconds,
        "handshake_timeout_seconds",
        front.handshake_timeout,
    )?;
    front.header_read_timeout = seconds(
        section.header_read_timeout_seconds,
        "header_read_timeout_seconds",
        front.header_read_timeout,
    )?;
    front.body_read_timeout = seconds(
        section.body_read_timeout_seconds,
        "body_read_timeout_seconds",
        front.body_read_timeout,
    )?;
    if let Some(value) = section.min_body_bytes_per_second {
        front.min_body_bytes_per_second = value;
    }

    let positive = |value: Option<usize>, name: &str, default: usize| match value {
        None => Ok(default),
        Some(0) => Err(anyhow::anyhow!(
            "invalid network.{name} 0: expected at least 1"
        )),
        Some(value) => Ok(value),
    };
    front.max_connections = positive(
        section.max_connections,
        "max_connections",
        front.max_connections,
    )?;
    front.max_connections_per_peer = positive(
        section.max_connections_per_peer,
        "max_connections_per_peer",
        front.max_connections_per_peer,
    )?;
    front.max_buffered_body_bytes = positive(
        section.max_buffered_body_bytes,
        "max_buffered_body_bytes",
        front.max_buffered_body_bytes,
    )?;
    throttle.max_in_flight = positive(
        section.max_requests_in_flight_per_principal,
        "max_requests_in_flight_per_principal",
        throttle.max_in_flight,
    )?;

    let rate = |value: Option<f64>, name: &str, default: f64| match value {
        None => Ok(default),
        Some(value) if value.is_finite() && value >= 1.0 => Ok(value),
        Some(value) => Err(anyhow::anyhow!(
            "invalid network.{name} {value}: expected at least 1"
        )),
    };
    throttle.per_second = rate(
        section.requests_per_second_per_principal,
        "requests_per_second_per_principal",
        throttle.per_second,
    )?;
    throttle.burst = rate(
        section.request_burst_per_principal,
        "request_burst_per_principal",
        throttle.burst,
    )?;
    Ok((front, throttle))
}

/// Returns the file descriptor to read the master key from, if any. A flag for either
/// source overrides both keys of the file, and the file may set only one of them.
fn key_descriptor(file: &ConfigFile, overrides: &Overrides) -> Result<Option<i32>> {
    let fd = if overrides.key_fd.is_some() || overrides.key_file.is_some() {
        overrides.key_fd
    } else if file.key_fd.is_some() && file.key_file.is_some() {
        anyhow::bail!(
            "the configuration file sets both key_file and key_fd; keep the one the master key comes from"
        );
    } else {
        file.key_fd
    };
    match fd {
        Some(fd) if fd < 3 => anyhow::bail!(
            "invalid key_fd {fd}: expected 3 or higher, because 0, 1 and 2 are standard input, output and error; for example `--key-fd 3 3<master.key`"
        ),
        fd => Ok(fd),
    }
}

impl Settings {
    pub fn resolve(file: ConfigFile, overrides: Overrides) -> Result<Settings> {
        let key_fd = key_descriptor(&file, &overrides)?;
        let data_dir = overrides
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let pki = data_dir.join("pki");
        let listen = match overrides.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN
                .parse()
                .context("invalid default listen address")?,
        };

        let key_file = overrides.key_file.or(file.key_file);
        let policy = overrides.policy.or(file.policy);
        let tls_certificate = overrides.tls_certificate.or(file.tls.certificate);
        let tls_key = overrides.tls_key.or(file.tls.key);
        let client_ca = overrides.client_ca.or(file.tls.client_ca);
        let crl = overrides.crl.or(file.tls.crl);
        let tls_is_default = tls_certificate.is_none() && tls_key.is_none() && client_ca.is_none();

        let mut limits = api::Limits::default();
        let section = file.limits;
        if let Some(value) = section.max_batch_size {
            limits.max_batch_size = value;
        }
        if let Some(value) = section.max_id_bytes {
            limits.max_id_bytes = value;
        }
        if let Some(value) = section.max_document_bytes {
            limits.max_document_bytes = value;
        }
        if let Some(value) = section.max_dimension {
            // Distances stay finite only up to this dimension; see
            // api::embedding::MAX_EMBEDDING_MAGNITUDE.
            if value == 0 || value > 65_536 {
                anyhow::bail!("invalid limits.max_dimension {value}: expected 1 to 65536");
            }
            limits.max_dimension = value;
        }
        if let Some(value) = section.max_n_results {
            limits.max_n_results = value;
        }
        if let Some(value) = section.exact_scan_max_vector_bytes {
            limits.exact_scan_max_vector_bytes = value;
        }
        let bounded = |value: Option<usize>, name: &str, max: usize, field: &mut usize| match value
        {
            None => Ok(()),
            Some(value) if (1..=max).contains(&value) => {
                *field = value;
                Ok(())
            }
            Some(value) => Err(anyhow::anyhow!(
                "invalid limits.{name} {value}: expected 1 to {max}"
            )),
        };
        bounded(
            section.max_get_limit,
            "max_get_limit",
            100_000_000,
            &mut limits.max_get_limit,
        )?;
        bounded(
            section.max_embedding_function_bytes,
            "max_embedding_function_bytes",
            16 << 20,
            &mut limits.max_embedding_function_bytes,
        )?;
        let metadata = &mut limits.metadata;
        bounded(
            section.max_metadata_keys,
            "max_metadata_keys",
            65_536,
            &mut metadata.max_keys,
        )?;
        bounded(
            section.max_metadata_key_bytes,
            "max_metadata_key_bytes",
            65_536,
            &mut metadata.max_key_bytes,
        )?;
        bounded(
            section.max_metadata_string_bytes,
            "max_metadata_string_bytes",
            64 << 20,
            &mut metadata.max_string_bytes,
        )?;
        bounded(
            section.max_metadata_array_items,
            "max_metadata_array_items",
            1 << 20,
            &mut metadata.max_array_items,
        )?;
        let filter = &mut limits.filter;
        // Filters are parsed and evaluated recursively, so the depth stays small.
        bounded(
            section.max_filter_depth,
            "max_filter_depth",
            64,
            &mut filter.max_depth,
        )?;
        bounded(
            section.max_filter_clauses,
            "max_filter_clauses",
            1 << 20,
            &mut filter.max_clauses,
        )?;
        bounded(
            section.max_filter_in_values,
            "max_filter_in_values",
            1 << 20,
            &mut filter.max_in_values,
        )?;
        bounded(
            section.max_regex_bytes,
            "max_regex_bytes",
            1 << 20,
            &mut filter.max_regex_bytes,
        )?;
        bounded(
            section.max_regex_compiled_bytes,
            "max_regex_compiled_bytes",
            256 << 20,
            &mut filter.max_regex_compiled_bytes,
        )?;
        if let Some(value) = section.query_timeout_ms {
            if value == 0 || value > 3_600_000 {
                anyhow::bail!("invalid limits.query_timeout_ms {value}: expected 1 to 3600000");
            }
            limits.query_timeout = std::time::Duration::from_millis(value);
        }

        let tokens_file = file
            .tokens
            .file
            .clone()
            .unwrap_or_else(|| data_dir.join(TOKENS_FILE));
        let without_certificate = file.tokens.without_certificate.unwrap_or(false);
        let tokens = if file.tokens.enabled.unwrap_or(false) {
            Some(server::TokenSettings {
                file: tokens_file.clone(),
                without_certificate,
            })
        } else {
            if without_certificate {
                anyhow::bail!("tokens.without_certificate needs tokens.enabled = true");
            }
            None
        };

        let (front, throttle) = network_settings(&file.network)?;
        let metrics_listen = overrides.metrics_listen.or(file.metrics_listen);
        if let Some(address) = metrics_listen {
            if !address.ip().is_loopback() && !file.metrics_allow_remote.unwrap_or(false) {
                anyhow::bail!(
                    "the metrics address {address} is not a loopback address, and the metrics listener has no TLS or authentication; use 127.0.0.1, or set metrics_allow_remote = true in the configuration file and firewall the port"
                );
            }
        }
        let sandbox = SandboxSettings {
            user: overrides
                .user
                .or(file.sandbox.user)
                .map(|user| user.parse::<sandbox::TargetUser>())
                .transpose()?,
            require: !overrides.allow_unconfined && file.sandbox.require.unwrap_or(true),
        };

        let max_body_bytes = file.max_body_bytes.unwrap_or(40 * 1024 * 1024);
        if front.max_buffered_body_bytes < max_body_bytes {
            anyhow::bail!(
                "network.max_buffered_body_bytes ({}) is smaller than max_body_bytes ({max_body_bytes}), so the largest body could never be read",
                front.max_buffered_body_bytes
            );
        }

        Ok(Settings {
            front,
            throttle,
            audit_log: overrides
                .audit_log
                .or(file.audit_log)
                .unwrap_or_else(|| data_dir.join(AUDIT_LOG_FILE)),
            tokens,
            tokens_file,
            #[cfg(feature = "insecure-bench")]
            insecure_bench: false,
            config_file: overrides.config_file,
            sandbox,
            listen,
            key_file_is_default: key_file.is_none(),
            key_fd,
            key_file: key_file.unwrap_or_else(|| data_dir.join("master.key")),
            policy_is_default: policy.is_none(),
            policy: policy.unwrap_or_else(|| data_dir.join("policy.toml")),
            tls_certificate: tls_certificate
                .unwrap_or_else(|| pki.join(crate::pki::SERVER_CERTIFICATE)),
            tls_key: tls_key.unwrap_or_else(|| pki.join(crate::pki::SERVER_KEY)),
            client_ca: client_ca.unwrap_or_else(|| pki.join(crate::pki::CA_CERTIFICATE)),
            crl,
            tls_is_default,
            allow_reset: overrides.allow_reset || file.allow_reset.unwrap_or(false),
            max_body_bytes,
            metrics_listen,
            limits,
            data_dir,
        })
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("db").join("ravelin.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_section_resolved() {
        let file: ConfigFile = toml::from_str(
            "[upstream]\nurl = \"http://127.0.0.1:8001\"\nmax_connections = 8\nrequest_timeout_seconds = 5",
        )
        .unwrap();
        let settings = file.upstream.resolve(None).unwrap();
        assert_eq!(settings.url, "http://127.0.0.1:8001");
        assert_eq!(settings.max_connections, 8);
        assert_eq!(settings.request_timeout, std::time::Duration::from_secs(5));
        let flag = file
            .upstream
            .resolve(Some("http://127.0.0.1:9".into()))
            .unwrap();
        assert_eq!(flag.url, "http://127.0.0.1:9");

        assert!(UpstreamSection::default().resolve(None).is_err());
        for bad in [
            "max_connections = 0",
            "token_header = \"cookie\"",
            "connect_timeout_seconds = 0",
        ] {
            let file: ConfigFile =
                toml::from_str(&format!("[upstream]\nurl = \"http://h:1\"\n{bad}")).unwrap();
            assert!(file.upstream.resolve(None).is_err(), "{bad}");
        }
        assert!(toml::from_str::<ConfigFile>("[upstream]\ntoken = \"x\"").is_err());
    }

    #[test]
    fn token_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "secret-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_token_file(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "secret-token");
    }

    #[test]
    fn unknown_keys_rejected() {
        assert!(
            toml::from_str::<ConfigFile>("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"")
                .is_err()
        );
        assert!(toml::from_str::<ConfigFile>("[tls]\ncert = \"x\"").is_err());
    }

    #[test]
    fn defaults_inside_data_dir() {
        let file: ConfigFile = toml::from_str("data_dir = \"/srv/ravelin\"").unwrap();
        let settings = Settings::resolve(file, Overrides::default()).unwrap();
        assert_eq!(settings.key_file, Path::new("/srv/ravelin/master.key"));
        assert_eq!(settings.client_ca, Path::new("/srv/ravelin/pki/ca.pem"));
        assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
        assert!(settings.tls_is_default);
        assert!(!settings.allow_reset);
        assert_eq!(settings.metrics_listen, None);
    }

    #[test]
    fn flags_override_file() {
        let file: ConfigFile =
            toml::from_str("listen = \"127.0.0.1:1\"\nallow_reset = false").unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:2".parse().unwrap()),
            allow_reset: true,
            ..Overrides::default()
        };
        let settings = Settings::resolve(file, overrides).unwrap();
        assert_eq!(settings.listen.port(), 2);
        assert!(settings.allow_reset);
    }

    #[test]
    fn metrics_listen_from_file_or_flag() {
        let text = "metrics_listen = \"127.0.0.1:9464\"";
        let file: ConfigFile = toml::from_str(text).unwrap();
        let settings = Settings::resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );

        let file: ConfigFile = toml::from_str(text).unwrap();
        let overrides = Overrides {
            metrics_listen: Some("127.0.0.1:9465".parse().unwrap()),
            ..Overrides::default()
        };
        let settings = Settings::resolve(file, overrides).unwrap();
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9465".parse().unwrap())
        );

        assert!(toml::from_str::<ConfigFile>("metrics_listen = \"localhost\"").is_err());
    }

    #[test]
    fn remote_metrics_address_needs_consent() {
        let file: ConfigFile = toml::from_str("metrics_listen = \"0.0.0.0:9464\"").unwrap();
        let error = Settings::resolve(file, Overrides::default()).unwrap_err();
        assert!(
            error.to_string().contains("metrics_allow_remote"),
            "{error}"
        );
        let file: ConfigFile =
            toml::from_str("metrics_listen = \"0.0.0.0:9464\"\nmetrics_allow_remote = true")
                .unwrap();
        assert!(Settings::resolve(file, Overrides::default()).is_ok());
    }

    #[test]
    fn key_fd_from_file_or_flag() {
        let file: ConfigFile = toml::from_str("key_fd = 3").unwrap();
        let settings = Settings::resolve(file, Overrides::default()).unwrap();
        assert_eq!(settings.key_fd, Some(3));

        // A key file flag overrides a descriptor in the file, and the reverse.
        let file: ConfigFile = toml::from_str("key_fd = 3").unwrap();
        let overrides = Overrides {
            key_file: Some("/run/secrets/key".into()),
            ..Overrides::default()
        };
        let settings = Settings::resolve(file, overrides).unwrap();
        assert_eq!(settings.key_fd, None);
        assert_eq!(settings.key_file, Path::new("/run/secrets/key"));
        let file: ConfigFile = toml::from_str("key_file = \"/k\"").unwrap();
        let overrides = Overrides {
            key_fd: Some(4),
            ..Overrides::default()
        };
        assert_eq!(Settings::resolve(file, overrides).unwrap().key_fd, Some(4));
    }

    #[test]
    fn key_fd_rejected_when_ambiguous_or_standard() {
        let file: ConfigFile = toml::from_str("key_fd = 3\nkey_file = \"/k\"").unwrap();
        let error = Settings::resolve(file, Overrides::default()).unwrap_err();
        assert!(
            error.to_string().contains("both key_file and key_fd"),
            "{error}"
        );
        for fd in [0, 1, 2, -1] {
            let file: ConfigFile = toml::from_str(&format!("key_fd = {fd}")).unwrap();
            let error = Settings::resolve(file, Overrides::default()).unwrap_err();
            assert!(error.to_string().contains("3 or higher"), "{error}");
        }
    }

    #[test]
    fn sandbox_required_by_default() {
        let settings = Settings::resolve(ConfigFile::default(), Overrides::default()).unwrap();
        assert!(settings.sandbox.require);
        assert_eq!(settings.sandbox.user, None);
    }

    #[test]
    fn sandbox_from_file_or_flags() {
        let text = "[sandbox]\nuser = \"ravelin\"\nrequire = true";
        let file: ConfigFile = toml::from_str(text).unwrap();
        let settings = Settings::resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            settings.sandbox.user,
            Some(sandbox::TargetUser::Name("ravelin".into()))
        );

        let file: ConfigFile = toml::from_str(text).unwrap();
        let overrides = Overrides {
            user: Some("10001:10001".into()),
            allow_unconfined: true,
            ..Overrides::default()
        };
        let settings = Settings::resolve(file, overrides).unwrap();
        assert_eq!(
            settings.sandbox.user,
            Some(sandbox::TargetUser::Ids {
                uid: 10001,
                gid: 10001
            })
        );
        assert!(!settings.sandbox.require);

        let file: ConfigFile = toml::from_str("[sandbox]\nrequire = false").unwrap();
        assert!(
            !Settings::resolve(file, Overrides::default())
                .unwrap()
                .sandbox
                .require
        );
    }

    #[test]
    fn sandbox_rejects_bad_user_and_keys() {
        let file: ConfigFile = toml::from_str("[sandbox]\nuser = \"a b\"").unwrap();
        let error = Settings::resolve(file, Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("invalid user [a b]"), "{error}");
        assert!(toml::from_str::<ConfigFile>("[sandbox]\nenabled = false").is_err());
    }

    #[test]
    fn api_limits_from_file_with_bounds() {
        let file: ConfigFile =
            toml::from_str("[limits]\nmax_metadata_keys = 8\nmax_filter_clauses = 50").unwrap();
        let settings = Settings::resolve(file, Overrides::default()).unwrap();
        assert_eq!(settings.limits.metadata.max_keys, 8);
        assert_eq!(settings.limits.filter.max_clauses, 50);
        for bad in [
            "max_filter_depth = 65",
            "max_metadata_keys = 0",
            "max_get_limit = 0",
        ] {
            let file: ConfigFile = toml::from_str(&format!("[limits]\n{bad}")).unwrap();
            assert!(
                Settings::resolve(file, Overrides::default()).is_err(),
                "{bad}"
            );
        }
    }
}
