//! `ravelin backup` and `ravelin restore`. The format and the checks are in
//! `store::backup`; this module resolves keys and paths, takes the locks and reports.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use store::backup::{self, Manifest};
use store::rotation::{self, KeyFiles};
use store::{DatabaseLock, MasterKey};

use crate::key::{
    database_dir, existing_database, read_configured_descriptor, read_key_file, report_recovery,
    DataDirArgs,
};
use crate::progress::ProgressBar;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The backup directory to create; it must not exist, or be empty.
    pub destination: PathBuf,
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Encrypt the backup with the key in this key file instead of the master key.
    #[arg(long)]
    pub backup_key_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup directory, as `ravelin backup` wrote it.
    pub source: PathBuf,
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The key file that opens the backup [default: the master key]. When the data
    /// directory has no master key file yet, a new master key is generated for it.
    #[arg(long)]
    pub backup_key_file: Option<PathBuf>,
}

/// Makes a backup of a data directory's database, beside a running server.
pub fn run_backup(args: BackupArgs) -> Result<()> {
    let settings = args.data.settings()?;
    let from_descriptor = read_configured_descriptor(&settings)?;
    let database = existing_database(&settings)?;
    let _lock = DatabaseLock::for_backup(database_dir(&database)?)?;

    let key = match from_descriptor {
        Some(key) => key,
        None => {
            let pending = KeyFiles::new(&settings.key_file).pending();
            if pending.exists() {
                bail!(
                    "a key rotation was interrupted ({} exists); start the server or run `ravelin key rotate` to settle it, then back up",
                    pending.display()
                );
            }
            read_key_file(&settings.key_file, &database)?
        }
    };
    let backup_key = match &args.backup_key_file {
        Some(path) => Some(MasterKey::read_file(path)?),
        None => None,
    };

    let mut bar = ProgressBar::for_stderr();
    let written = backup::create_backup(
        &database,
        &key,
        &args.destination,
        backup_key.as_ref().unwrap_or(&key),
        &mut |progress| bar.report(progress),
    );
    bar.finish();
    let manifest = written?;

    let encrypted_with = match &args.backup_key_file {
        Some(path) => format!("the key in {}", path.display()),
        None => "the master key".to_string(),
    };
    eprintln!(
        "Backed up {} to {}: {}, encrypted with {encrypted_with}.",
        database.display(),
        args.destination.display(),
        describe(&manifest)
    );
    eprintln!("The backup contains only the database; back up the policy, token file, certificates and audit log separately.");
    Ok(())
}

/// Replaces a data directory's database with a verified backup.
pub fn run_restore(args: RestoreArgs) -> Result<()> {
    let settings = args.data.settings()?;
    let from_descriptor = read_configured_descriptor(&settings)?;
    let database = settings.database_path();
    let backup_key = match &args.backup_key_file {
        Some(path) => Some(MasterKey::read_file(path)?),
        None => None,
    };

    // The restored database is encrypted with the data directory's master key. A new
    // data directory without one gets a new key, as on a server's first start.
    let generate_key = match &from_descriptor {
        Some(_) => false,
        None if settings.key_file.exists() => false,
        None if settings.key_file_is_default && !database.exists() && backup_key.is_some() => {
            true
        }
        None => bail!(
            "the master key file {} does not exist; put the data directory's key there (or give it with --key-file or --key-fd), or restore into a new data directory with --backup-key-file so that a new key is generated",
            settings.key_file.display()
        ),
    };

    let database_dir = database_dir(&database)?;
    if !database_dir.exists() {
        crate::pki::create_private_dir(&settings.data_dir)?;
        crate::pki::create_private_dir(database_dir)?;
    }
    let _lock = DatabaseLock::for_replacement(database_dir)?;
    let key_files = settings
        .key_fd
        .is_none()
        .then(|| KeyFiles::new(&settings.key_file));
    report_recovery(rotation::recover(&database, key_files.as_ref())?, &database);
    if backup::discard_interrupted_restore(&database)? {
        tracing::warn!(database = %database.display(), "removed the partial copy of an interrupted restore");
    }

    let mut created_key_file: Option<&Path> = None;
    let key = match from_descriptor {
        Some(key) => key,
        None if generate_key => {
            let key = MasterKey::generate()?;
            key.write_new_file(&settings.key_file)?;
            created_key_file = Some(&settings.key_file);
            key
        }
        None => read_key_file(&settings.key_file, &database)?,
    };

    let mut bar = ProgressBar::for_stderr();
    let restored = backup::restore(
        &args.source,
        backup_key.as_ref().unwrap_or(&key),
        &database,
        &key,
        &mut |progress| bar.report(progress),
    );
    bar.finish();
    let restored = match restored {
        Ok(restored) => restored,
        Err(error) => {
            if let Some(path) = created_key_file {
                let _ = std::fs::remove_file(path);
            }
            return Err(error.into());
        }
    };

    eprintln!(
        "Restored {} from {} (made at {}): {}.",
        database.display(),
        args.source.display(),
        restored.manifest.created_at,
        describe(&restored.manifest)
    );
    if let Some(path) = created_key_file {
        eprintln!(
            "Encrypted it with a new master key in {}; back that key up, the data cannot be read without it.",
            path.display()
        );
    }
    if let Some(aside) = &restored.replaced {
        eprintln!(
            "The previous database is kept as {}; delete it once the restored server is checked.",
            aside.display()
        );
    }
    Ok(())
}

/// Summarizes a backup's contents: records, collections, size and schema version.
fn describe(manifest: &Manifest) -> String {
    let count = |table: &str, one: &str, many: &str| {
        let count = manifest.row_counts.get(table).copied().unwrap_or(0);
        format!("{count} {}", if count == 1 { one } else { many })
    };
    format!(
        "{} in {}, {:.1} MiB, schema version {}",
        count("records", "record", "records"),
        count("collections", "collection", "collections"),
        manifest.database.bytes as f64 / (1024.0 * 1024.0),
        manifest.schema_version
    )
}
