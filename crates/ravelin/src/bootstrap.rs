//! Preparing the data directory: the master key, the database, the development PKI
//! and the policy, each created on first start and reused afterwards.
//!
//! ```text
//! ravelin-data/            mode 0700
//!   master.key             mode 0400, 64 hex characters (unless key_file points elsewhere)
//!   policy.toml            the access policy
//!   db/ravelin.db          the SQLCipher database, with ravelin.db-wal and -shm
//!   pki/ca.pem, ca.key     the development CA
//!   pki/server.pem, .key   the server certificate for localhost, 127.0.0.1 and ::1
//!   pki/clients/NAME.pem   client certificates, NAME.key beside each
//! ```
//!
//! When the database exists, nothing is created or changed before the master key has
//! opened it: a wrong or missing key stops startup with the data directory untouched.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use anyhow::{bail, Context, Result};
use auth::policy::DEVELOPMENT_POLICY;
use auth::Policy;
use store::{MasterKey, Store};

use crate::config::Settings;
use crate::pki;

/// The store and policy that startup opened or created.
pub struct Prepared {
    pub store: Store,
    pub policy: Policy,
}

pub fn prepare(settings: &Settings) -> Result<Prepared> {
    let database_path = settings.database_path();
    let first_start = !database_path.exists();

    if first_start {
        pki::create_private_dir(&settings.data_dir)?;
    } else {
        warn_if_open(&settings.data_dir);
    }

    let store = if first_start {
        let key = first_start_key(settings)?;
        let database_dir = database_path
            .parent()
            .context("the database path has no parent directory")?;
        pki::create_private_dir(database_dir)?;
        tracing::info!(path = %database_path.display(), "creating the encrypted database");
        Store::create(&database_path, &key)?
    } else {
        let key = match MasterKey::read_file(&settings.key_file) {
            Ok(key) => key,
            Err(store::KeyError::Missing { path }) => bail!(
                "the master key file {} does not exist; the database {} can only be opened with the key that created it",
                path.display(),
                database_path.display()
            ),
            Err(error) => return Err(error.into()),
        };
        Store::open(&database_path, &key)?
    };

    if settings.tls_is_default && !settings.pki_dir().exists() {
        tracing::info!(dir = %settings.pki_dir().display(), "creating a development PKI");
        pki::create_development_pki(&settings.pki_dir())?;
    }

    let policy = load_policy(settings, first_start)?;
    Ok(Prepared { store, policy })
}

/// Prepares the data directory of `ravelin gateway`, which keeps no database there:
/// only the development PKI (when the TLS paths are the default ones), the policy and
/// the audit log. A new data directory gets the development policy, as in serve.
pub fn prepare_front(settings: &Settings) -> Result<Policy> {
    let first_start = !settings.data_dir.exists();
    if first_start {
        pki::create_private_dir(&settings.data_dir)?;
    } else {
        warn_if_open(&settings.data_dir);
    }
    if settings.tls_is_default && !settings.pki_dir().exists() {
        tracing::info!(dir = %settings.pki_dir().display(), "creating a development PKI");
        pki::create_development_pki(&settings.pki_dir())?;
    }
    load_policy(settings, first_start)
}

/// Returns the key for a new database: the configured key file if it exists, or a new
/// random key written to the default key file.
fn first_start_key(settings: &Settings) -> Result<MasterKey> {
    if settings.key_file.exists() {
        return Ok(MasterKey::read_file(&settings.key_file)?);
    }
    if !settings.key_file_is_default {
        bail!(
            "the master key file {} does not exist; create one with 64 hexadecimal characters (for example `openssl rand -hex 32`) and mode 0400",
            settings.key_file.display()
        );
    }
    let mut bytes = [0u8; store::key::KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("cannot read random bytes: {error}"))?;
    let key = MasterKey::from_bytes(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    key.write_new_file(&settings.key_file)?;
    tracing::info!(path = %settings.key_file.display(), "created a new 256-bit master key; back it up, the data cannot be read without it");
    Ok(key)
}

fn load_policy(settings: &Settings, first_start: bool) -> Result<Policy> {
    if !settings.policy.exists() {
        if settings.policy_is_default && first_start {
            pki::write_new(&settings.policy, DEVELOPMENT_POLICY.as_bytes(), 0o600)?;
            tracing::info!(path = %settings.policy.display(), "created a policy granting principal admin everything");
        } else {
            bail!(
                "the policy file {} does not exist; Ravelin does not start without a policy",
                settings.policy.display()
            );
        }
    }
    read_policy(&settings.policy)
}

/// Reads and parses a policy file.
pub fn read_policy(path: &std::path::Path) -> Result<Policy> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    Policy::parse(&text).with_context(|| format!("invalid policy file {}", path.display()))
}

fn warn_if_open(dir: &std::path::Path) {
    if let Ok(metadata) = fs::metadata(dir) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data directory is accessible to other users; run chmod 700 on it");
        }
    }
}
