//! The master key's sources, and `ravelin key rotate`.
//!
//! The key comes from a key file (`key_file`, `--key-file`) or from a file descriptor
//! that the process inherits (`key_fd`, `--key-fd`), such as a pipe from a secret
//! manager or a systemd credential opened by the service manager. It is never taken
//! from a command-line argument or an environment variable value, which other local
//! users can read in `/proc`. A descriptor is read once, to the end, before the command
//! opens any other file, and then closed. Each copy of the key in this program is
//! wiped when it is dropped.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use store::rotation::{self, KeyFiles, Recovery};
use store::{DatabaseLock, MasterKey};

use crate::config::{ConfigFile, Overrides, Settings};
use crate::progress::ProgressBar;

/// Options that locate the data directory and its master key, shared by the
/// commands that open the database outside the server.
#[derive(clap::Args)]
pub struct DataDirArgs {
    /// The server's TOML configuration file, for the data directory and key settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory [default: ravelin-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Master key file: 64 hexadecimal characters, no access for others, nor for group unless owned by root [default: DATA_DIR/master.key].
    #[arg(long, conflicts_with = "key_fd")]
    pub key_file: Option<PathBuf>,
    /// Read the master key from this inherited file descriptor (3 or higher) until end
    /// of file, for example `--key-fd 3 3<master.key`, instead of from a key file.
    #[arg(long, value_name = "FD")]
    pub key_fd: Option<i32>,
}

impl DataDirArgs {
    /// Combines the configuration file and the flags.
    pub fn settings(&self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            key_file: self.key_file.clone(),
            key_fd: self.key_fd,
            ..Overrides::default()
        };
        Settings::resolve(file, overrides)
    }
}

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Re-encrypt the database with a new master key.
    ///
    /// Stop the server first: rotation replaces the database file. With a key file K,
    /// the new key ends in K and the old one in K.old, which backups made before the
    /// rotation need. An interrupted rotation is finished or undone by the next
    /// `key rotate` or server start; see docs/operations.md.
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The new master key's file. If it exists, the key is read from it; if not, a new
    /// random key is written to it (mode 0400) [default: generate a key].
    #[arg(long, conflicts_with = "new_key_fd")]
    pub new_key_file: Option<PathBuf>,
    /// Read the new master key from this inherited file descriptor until end of file.
    #[arg(long, value_name = "FD")]
    pub new_key_fd: Option<i32>,
}

/// Runs a `ravelin key` command.
pub fn run(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Rotate(args) => rotate(args),
    }
}

fn rotate(args: RotateArgs) -> Result<()> {
    let settings = args.data.settings()?;
    // Descriptors first, before this process opens any file that stays open.
    let old_from_descriptor = read_configured_descriptor(&settings)?;
    let new_from_descriptor = match args.new_key_fd {
        Some(fd) if Some(fd) == settings.key_fd => {
            bail!("--new-key-fd {fd} is also the current key's descriptor; give the new key on another one")
        }
        Some(fd) => Some(read_descriptor(fd)?),
        None => None,
    };
    if settings.key_fd.is_some() && args.new_key_fd.is_none() && args.new_key_file.is_none() {
        bail!("with the master key on a file descriptor there is no key file for a generated key; give the new key with --new-key-fd or --new-key-file");
    }

    let database = existing_database(&settings)?;
    let _lock = DatabaseLock::for_replacement(database_dir(&database)?)?;
    let key_files = settings
        .key_fd
        .is_none()
        .then(|| KeyFiles::new(&settings.key_file));
    report_recovery(rotation::recover(&database, key_files.as_ref())?, &database);

    let old_key = match old_from_descriptor {
        Some(key) => key,
        None => read_key_file(&settings.key_file, &database)?,
    };
    let new_key = match (new_from_descriptor, &args.new_key_file) {
        (Some(key), _) => key,
        (None, Some(path)) if path.exists() => MasterKey::read_file(path)?,
        (None, Some(path)) => {
            let key = MasterKey::generate()?;
            key.write_new_file(path)?;
            eprintln!("Wrote a new master key to {}.", path.display());
            key
        }
        (None, None) => MasterKey::generate()?,
    };

    let mut bar = ProgressBar::for_stderr();
    let rotated = rotation::rotate(
        &database,
        key_files.as_ref(),
        &old_key,
        &new_key,
        &mut |progress| bar.report(progress),
        &mut |_| ControlFlow::Continue(()),
    );
    bar.finish();
    rotated?;

    eprintln!("Re-encrypted {} with a new master key.", database.display());
    match &key_files {
        Some(files) => eprintln!(
            "The new key is in {}. The previous key is in {}: backups made before now need it, so keep it as long as those backups, then delete it.",
            files.current().display(),
            files.previous().display()
        ),
        None => eprintln!(
            "The database now opens only with the new key: give it on --key-fd from the next start on, and keep the old key as long as backups made before now."
        ),
    }
    Ok(())
}

/// Logs what recovery did about an interrupted rotation.
pub fn report_recovery(recovery: Recovery, database: &Path) {
    match recovery {
        Recovery::NothingPending => {}
        Recovery::Completed => tracing::warn!(
            database = %database.display(),
            "finished an interrupted key rotation: the database already used the new key, which is now in the master key file"
        ),
        Recovery::RolledBack => tracing::warn!(
            database = %database.display(),
            "undid an interrupted key rotation: the database still uses the old key, and the pending key and partial copy were removed"
        ),
        Recovery::RemovedStaleCopy => tracing::warn!(
            database = %database.display(),
            "removed the partial copy of an interrupted key rotation"
        ),
    }
}

/// Reads the master key from `settings.key_fd`, if set. Call this before opening any
/// file that stays open; see [`read_descriptor`].
pub fn read_configured_descriptor(settings: &Settings) -> Result<Option<MasterKey>> {
    settings.key_fd.map(read_descriptor).transpose()
}

/// Reads a key from the inherited file descriptor `fd` to the end, then closes it.
///
/// The function takes ownership of `fd`. So call it only for a descriptor that the
/// process inherited, before the process opens any file that stays open, and at most
/// once per descriptor.
pub fn read_descriptor(fd: i32) -> Result<MasterKey> {
    let mut file = take_descriptor(fd)?;
    let key = MasterKey::read_descriptor(&mut file, fd)?;
    drop(file);
    Ok(key)
}

/// Takes ownership of an inherited file descriptor.
fn take_descriptor(fd: i32) -> Result<File> {
    use sandbox::descriptor::DescriptorError;
    sandbox::descriptor::take_inherited(fd).map_err(|error| match error {
        DescriptorError::Standard(_) => anyhow::anyhow!("invalid key descriptor {fd}: expected 3 or higher, because 0, 1 and 2 are standard input, output and error"),
        DescriptorError::NotOpen(_) => anyhow::anyhow!("file descriptor {fd} is not open; start Ravelin with the key on it, for example `--key-fd {fd} {fd}<master.key`"),
        other => anyhow::Error::new(other),
    })
}

/// Reads the master key file of an existing database.
pub fn read_key_file(path: &Path, database: &Path) -> Result<MasterKey> {
    match MasterKey::read_file(path) {
        Ok(key) => Ok(key),
        Err(store::KeyError::Missing { path }) => bail!(
            "the master key file {} does not exist; the database {} opens only with the key that encrypted it (give it with --key-file or --key-fd)",
            path.display(),
            database.display()
        ),
        Err(error) => Err(error.into()),
    }
}

/// Returns the database path, failing with advice when there is no database.
pub fn existing_database(settings: &Settings) -> Result<PathBuf> {
    let database = settings.database_path();
    if !database.exists() {
        bail!(
            "there is no database at {}; check --data-dir (or data_dir in the configuration file)",
            database.display()
        );
    }
    Ok(database)
}

/// Returns the directory of the database file, which holds its lock files.
pub fn database_dir(database: &Path) -> Result<&Path> {
    database
        .parent()
        .context("the database path has no parent directory")
}
