//! Confinement of the server process: leaving root, Landlock and seccomp.
//!
//! `ravelin serve` opens everything it needs first (configuration, database, audit
//! log, certificates and keys, listening sockets), then calls [`Sandbox::apply`] while
//! the process still has a single thread, and only then starts its runtime. `apply`
//! does, in order:
//!
//! 1. Checks that the process has one thread, because Landlock restricts only the
//!    calling thread and the threads it creates later.
//! 2. Checks which controls the kernel offers. With `require`, a missing one, or a
//!    Landlock ABI below [`LANDLOCK_FULL_ABI`], is an error before anything changes.
//! 3. Opens every path the Landlock rules name (see `landlock`).
//! 4. Leaves root when started as root (see `privileges`): hands the data directory to
//!    the target user, switches to it and drops every capability, then verifies all of
//!    it. A non-root start clears its capabilities.
//! 5. Sets no_new_privs and clears the dumpable flag.
//! 6. Enforces the Landlock rules.
//! 7. Installs the seccomp filter for every thread (see `seccomp`), whose traps end
//!    the process with an alert on stderr (see `alert`).
//!
//! [`Status`] reports what took effect, for the log and the metrics.
//!
//! [`descriptor::take_inherited`] takes ownership of an inherited file descriptor,
//! such as the one `--key-fd` names.
//!
//! This is the only crate besides the SIMD kernels that contains `unsafe` code: each
//! system call wrapper has a `// SAFETY:` comment stating why its pointers are valid.

#![deny(clippy::undocumented_unsafe_blocks)]

mod alert;
pub mod descriptor;
mod landlock;
mod privileges;
#[cfg(feature = "probe")]
pub mod probe;
mod seccomp;
mod user;

use std::io;
use std::path::{Path, PathBuf};

pub use landlock::FULL_ABI as LANDLOCK_FULL_ABI;
pub use user::{TargetUser, DEFAULT_USER};

/// An error that stops the sandbox from being applied. The process must not serve
/// after one, because some controls may already be in force and others not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    #[error("invalid user [{0}]: expected a user name from /etc/passwd, or UID:GID")]
    InvalidUser(String),
    #[error("cannot read /etc/passwd to look up user {name}: {source}")]
    Passwd { name: String, source: io::Error },
    #[error("user {0} is not in /etc/passwd; create it, or give the user as UID:GID")]
    UnknownUser(String),
    #[error(
        "user {user} has {id} 0, and the server never serves as root; choose an unprivileged user"
    )]
    RootTarget { user: String, id: &'static str },
    #[error("switching to user {user} needs a start as root, but the process runs as uid {uid}; remove the user setting or start as root")]
    UserNeedsRoot { user: String, uid: u32 },
    #[error(
        "the sandbox must be applied before any thread starts, but the process has {0} threads"
    )]
    Threads(usize),
    #[error("cannot count the threads of this process in /proc/self/status: {0}")]
    ThreadCount(io::Error),
    #[error("cannot hand {path} to user {user}: {source}")]
    Chown {
        path: PathBuf,
        user: String,
        source: io::Error,
    },
    #[error("cannot {step}: {source}")]
    Syscall {
        step: &'static str,
        source: io::Error,
    },
    #[error("dropping privileges did not take effect: {0}")]
    NotDropped(String),
    #[error("cannot open {path} for a Landlock rule: {source}")]
    RulePath { path: PathBuf, source: io::Error },
    #[error("cannot add the Landlock rule for {path}: {source}")]
    Rule { path: PathBuf, source: io::Error },
    #[error("this kernel cannot confine the process: {missing}. Use Linux 6.7 or later with Landlock enabled (lsm= boot parameter) and seccomp, or set `[sandbox] require = false` to serve without these controls")]
    Unavailable { missing: String },
}

/// The controls in force after [`Sandbox::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The user the process serves as: a name, `UID:GID`, or `uid N` for a process
    /// that did not start as root.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Whether every uid and gid is non-zero and the process has no capabilities.
    pub privileges_dropped: bool,
    /// Whether no_new_privs is set.
    pub no_new_privs: bool,
    /// The Landlock ABI version the rules were enforced with, 0 without Landlock.
    pub landlock_abi: u32,
    /// Whether that ABI enforces every rule, which takes [`LANDLOCK_FULL_ABI`].
    pub landlock_fully_enforced: bool,
    /// Whether the seccomp filter is installed.
    pub seccomp: bool,
}

/// The plan for confining the server: what it may still touch.
#[derive(Debug, Clone)]
pub struct Sandbox {
    data_dir: PathBuf,
    read_only: Vec<PathBuf>,
    reread: Vec<PathBuf>,
    bind_ports: Vec<u16>,
    connect_ports: Vec<u16>,
}

impl Sandbox {
    /// Starts a plan whose only writable place is `data_dir`.
    pub fn new(data_dir: &Path) -> Sandbox {
        Sandbox {
            data_dir: data_dir.to_path_buf(),
            read_only: Vec::new(),
            reread: Vec::new(),
            bind_ports: Vec::new(),
            connect_ports: Vec::new(),
        }
    }

    /// Allows reading the file at `path`, such as a certificate. A path under the data
    /// directory needs no rule of its own.
    pub fn read_only(&mut self, path: &Path) -> &mut Sandbox {
        self.read_only.push(path.to_path_buf());
        self
    }

    /// Allows reading `path` again while serving, even after it is replaced by
    /// rename: outside the data directory, the rule covers the file's directory.
    pub fn reread(&mut self, path: &Path) -> &mut Sandbox {
        self.reread.push(path.to_path_buf());
        self
    }

    /// Allows binding TCP `port`.
    pub fn bind_port(&mut self, port: u16) -> &mut Sandbox {
        self.bind_ports.push(port);
        self
    }

    /// Allows TCP connections to `port` on any address, for an upstream server.
    /// Without this call, the process can open no TCP connection.
    pub fn allow_connect_port(&mut self, port: u16) -> &mut Sandbox {
        self.connect_ports.push(port);
        self
    }

    /// Applies the plan to the whole process; see the crate documentation for the
    /// steps.
    ///
    /// `user` is the user to switch to when started as root, [`DEFAULT_USER`] when
    /// `None`. With `require`, a kernel without Landlock (or with an ABI below
    /// [`LANDLOCK_FULL_ABI`]) or without seccomp filters is an error; without it, the
    /// missing controls are skipped with a warning, and [`Status`] shows which are off.
    pub fn apply(&self, user: Option<&TargetUser>, require: bool) -> Result<Status, SandboxError> {
        let threads = thread_count().map_err(SandboxError::ThreadCount)?;
        if threads != 1 {
            return Err(SandboxError::Threads(threads));
        }

        let landlock_abi = landlock::abi();
        let seccomp_missing = seccomp::unavailable_reason();
        let missing = missing_controls(landlock_abi, seccomp_missing);
        if !missing.is_empty() {
            if require {
                return Err(SandboxError::Unavailable {
                    missing: missing.join("; "),
                });
            }
            tracing::warn!(
                missing = missing.join("; "),
                "serving with a partial sandbox because [sandbox] require is false"
            );
        }

        let rules = landlock::Rules::open(
            &self.data_dir,
            &self.read_only,
            &self.reread,
            &self.bind_ports,
            &self.connect_ports,
        )?;
        let identity = privileges::drop_privileges(user, &self.data_dir)?;
        let no_new_privs = privileges::restrict_process()?;

        if landlock_abi > 0 {
            rules.enforce(landlock_abi)?;
        }

        let seccomp = seccomp_missing.is_none();
        if seccomp {
            let options = seccomp::FilterOptions {
                pid: std::process::id(),
                trap_connect: landlock_abi < LANDLOCK_FULL_ABI && self.connect_ports.is_empty(),
            };
            seccomp::install(&options)
                .map_err(privileges::syscall_error("install the seccomp filter"))?;
        }

        Ok(Status {
            privileges_dropped: identity.uid != 0 && identity.gid != 0,
            user: identity.user,
            uid: identity.uid,
            gid: identity.gid,
            no_new_privs,
            landlock_abi,
            landlock_fully_enforced: landlock_abi >= LANDLOCK_FULL_ABI,
            seccomp,
        })
    }
}

/// Describes each control the kernel lacks.
fn missing_controls(landlock_abi: u32, seccomp_missing: Option<&str>) -> Vec<String> {
    let mut missing = Vec::new();
    if landlock_abi == 0 {
        missing.push("Landlock is not available".to_string());
    } else if landlock_abi < LANDLOCK_FULL_ABI {
        missing.push(format!(
            "Landlock ABI {landlock_abi} cannot restrict TCP ports, which takes ABI {LANDLOCK_FULL_ABI}"
        ));
    }
    if let Some(reason) = seccomp_missing {
        missing.push(reason.to_string());
    }
    missing
}

/// Returns the `Threads:` count of `/proc/self/status`.
fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_controls_described() {
        assert!(missing_controls(LANDLOCK_FULL_ABI, None).is_empty());
        assert!(missing_controls(7, None).is_empty());
        let old = missing_controls(3, None);
        assert_eq!(old.len(), 1);
        assert!(old[0].contains("ABI 3"), "{old:?}");
        let none = missing_controls(0, Some("no seccomp"));
        assert_eq!(none, vec!["Landlock is not available", "no seccomp"]);
    }

    #[test]
    fn test_process_has_threads() {
        // The test harness runs tests on threads, so apply must refuse here.
        let error = Sandbox::new(Path::new("."))
            .apply(None, false)
            .expect_err("applied with several threads");
        assert!(matches!(error, SandboxError::Threads(_)), "{error}");
    }
}
