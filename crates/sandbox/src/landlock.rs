//! Landlock: which files the process may open and which TCP ports it may use.
//!
//! The ruleset handles every access right the running kernel's ABI supports, so anything
//! without a rule is denied, with EACCES, even where file permissions allow it. The
//! rules are:
//!
//! - the data directory: read, write, create and remove regular files and
//!   directories, truncate, and rename within it. No executing, no device files,
//!   sockets, pipes or symbolic links;
//! - each read-only file (certificates, keys, the configuration file): read;
//! - each file read again while serving (the policy, the token file), when it lies
//!   outside the data directory: read, granted on its directory, so a replacement
//!   written next to it and renamed over it stays readable;
//! - TCP: bind on the configured ports only, connect on no port unless allowed.
//!
//! Files opened before the rules take effect stay usable: Landlock checks access when
//! a file is opened, never on an open descriptor. The audit log, the database and its
//! journal files are all opened before.
//!
//! From ABI 6 the process also may not signal processes outside its own Landlock
//! domain or connect to abstract Unix sockets.
//!
//! The kernel's constants and structures below are those of `linux/landlock.h`.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::privileges::syscall_error;
use crate::SandboxError;

/// The lowest ABI that enforces every rule the server needs: files, renames
/// across rules (ABI 2), truncation (ABI 3) and TCP ports (ABI 4, Linux 6.7).
pub const FULL_ABI: u32 = 4;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;
const RULE_NET_PORT: libc::c_int = 2;

const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_REMOVE_DIR: u64 = 1 << 4;
const FS_REMOVE_FILE: u64 = 1 << 5;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_DIR: u64 = 1 << 7;
const FS_MAKE_REG: u64 = 1 << 8;
const FS_MAKE_SOCK: u64 = 1 << 9;
const FS_MAKE_FIFO: u64 = 1 << 10;
const FS_MAKE_BLOCK: u64 = 1 << 11;
const FS_MAKE_SYM: u64 = 1 << 12;
/// ABI 2.
const FS_REFER: u64 = 1 << 13;
/// ABI 3.
const FS_TRUNCATE: u64 = 1 << 14;
/// ABI 5.
const FS_IOCTL_DEV: u64 = 1 << 15;

/// ABI 4.
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

/// ABI 6.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// Rights on the data directory.
const DATA_DIR_ACCESS: u64 = FS_READ_FILE
    | FS_WRITE_FILE
    | FS_READ_DIR
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_REFER
    | FS_TRUNCATE;

/// `struct landlock_ruleset_attr`, as of ABI 6. Older kernels accept it as long as
/// the fields they do not know are zero.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr`, which the kernel declares packed.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// `struct landlock_net_port_attr`.
#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// Returns the Landlock ABI version of the running kernel, or 0 when Landlock is not
/// built in or not enabled at boot.
pub(crate) fn abi() -> u32 {
    // SAFETY: with a null attribute and size 0, the VERSION flag only requests the
    // ABI version, so the kernel reads no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).unwrap_or(0)
}

/// The file access rights an ABI version can restrict.
fn handled_fs(abi: u32) -> u64 {
    let mut handled = FS_EXECUTE
        | FS_WRITE_FILE
        | FS_READ_FILE
        | FS_READ_DIR
        | FS_REMOVE_DIR
        | FS_REMOVE_FILE
        | FS_MAKE_CHAR
        | FS_MAKE_DIR
        | FS_MAKE_REG
        | FS_MAKE_SOCK
        | FS_MAKE_FIFO
        | FS_MAKE_BLOCK
        | FS_MAKE_SYM;
    if abi >= 2 {
        handled |= FS_REFER;
    }
    if abi >= 3 {
        handled |= FS_TRUNCATE;
    }
    if abi >= 5 {
        handled |= FS_IOCTL_DEV;
    }
    handled
}

/// One path rule: a descriptor opened before the privilege drop, and its rights.
struct PathRule {
    path: PathBuf,
    file: File,
    access: u64,
}

/// The Landlock rules, with their paths already opened.
pub(crate) struct Rules {
    paths: Vec<PathRule>,
    bind_ports: Vec<u16>,
    connect_ports: Vec<u16>,
}

impl Rules {
    /// Opens every path of the plan, so that the rules can name files the target
    /// user could not reach by path after the privilege drop.
    pub(crate) fn open(
        data_dir: &Path,
        read_only: &[PathBuf],
        reread: &[PathBuf],
        bind_ports: &[u16],
        connect_ports: &[u16],
    ) -> Result<Rules, SandboxError> {
        let mut paths = vec![open_rule(data_dir, DATA_DIR_ACCESS)?];
        for path in read_only {
            paths.push(open_rule(path, FS_READ_FILE)?);
        }

        let data_dir_real = data_dir
            .canonicalize()
            .map_err(|source| SandboxError::RulePath {
                path: data_dir.to_path_buf(),
                source,
            })?;
        for path in reread {
            let directory = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let directory_real =
                directory
                    .canonicalize()
                    .map_err(|source| SandboxError::RulePath {
                        path: directory.to_path_buf(),
                        source,
                    })?;
            if !directory_real.starts_with(&data_dir_real) {
                paths.push(open_rule(directory, FS_READ_FILE)?);
            }
        }

        Ok(Rules {
            paths,
            bind_ports: bind_ports.to_vec(),
            connect_ports: connect_ports.to_vec(),
        })
    }

    /// Creates the ruleset for `abi`, adds the rules and restricts the calling thread
    /// and its future threads. no_new_privs must be set first.
    pub(crate) fn enforce(&self, abi: u32) -> Result<(), SandboxError> {
        let handled_access_fs = handled_fs(abi);
        let handled_access_net = if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        };
        let attr = RulesetAttr {
            handled_access_fs,
            handled_access_net,
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // SAFETY: `attr` is a valid `landlock_ruleset_attr` that outlives the call, and
        // its size is passed with it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        let fd = libc::c_int::try_from(fd)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| {
                syscall_error("create the Landlock ruleset")(io::Error::last_os_error())
            })?;
        // SAFETY: the kernel returned a new descriptor that nothing else owns.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd) };

        for rule in &self.paths {
            let mut access = rule.access & handled_access_fs;
            let is_dir = rule.file.metadata().is_ok_and(|metadata| metadata.is_dir());
            if is_dir && access & FS_READ_FILE != 0 {
                access |= FS_READ_DIR;
            }
            add_path_rule(&ruleset, &rule.file, access).map_err(|source| SandboxError::Rule {
                path: rule.path.clone(),
                source,
            })?;
        }

        if handled_access_net != 0 {
            let mut ports: Vec<(u16, u64)> = Vec::new();
            for port in &self.bind_ports {
                ports.push((*port, NET_BIND_TCP));
            }
            for port in &self.connect_ports {
                ports.push((*port, NET_CONNECT_TCP));
            }
            for (port, access) in ports {
                add_port_rule(&ruleset, port, access)
                    .map_err(syscall_error("add a Landlock TCP port rule"))?;
            }
        }

        // SAFETY: `ruleset` is an open Landlock ruleset descriptor; flags 0.
        let result =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
        if result != 0 {
            return Err(syscall_error("enforce the Landlock ruleset")(
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// Opens `path` without reading it (`O_PATH`), for a rule with `access`.
fn open_rule(path: &Path, access: u64) -> Result<PathRule, SandboxError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(|source| SandboxError::RulePath {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(PathRule {
        path: path.to_path_buf(),
        file,
        access,
    })
}

fn add_path_rule(ruleset: &OwnedFd, file: &File, access: u64) -> io::Result<()> {
    if access == 0 {
        return Ok(());
    }
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: file.as_raw_fd(),
    };
    add_rule(ruleset, RULE_PATH_BENEATH, &attr)
}

fn add_port_rule(ruleset: &OwnedFd, port: u16, access: u64) -> io::Result<()> {
    let attr = NetPortAttr {
        allowed_access: access,
        port: u64::from(port),
    };
    add_rule(ruleset, RULE_NET_PORT, &attr)
}

/// Adds one rule. `attr` must be the structure of `rule_type`: [`PathBeneathAttr`]
/// for [`RULE_PATH_BENEATH`], [`NetPortAttr`] for [`RULE_NET_PORT`].
fn add_rule<T>(ruleset: &OwnedFd, rule_type: libc::c_int, attr: &T) -> io::Result<()> {
    // SAFETY: the two callers pass the attribute structure that matches `rule_type`,
    // and it outlives the call; the kernel only reads it.
    let result = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            rule_type,
            attr as *const T,
            0u32,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_rights_grow_with_abi() {
        assert_eq!(handled_fs(1) & (FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV), 0);
        assert_ne!(handled_fs(2) & FS_REFER, 0);
        assert_ne!(handled_fs(3) & FS_TRUNCATE, 0);
        assert_eq!(handled_fs(4) & FS_IOCTL_DEV, 0);
        assert_ne!(handled_fs(5) & FS_IOCTL_DEV, 0);
    }

    #[test]
    fn data_dir_rights_exclude_exec_and_special_files() {
        for right in [
            FS_EXECUTE,
            FS_MAKE_CHAR,
            FS_MAKE_BLOCK,
            FS_MAKE_SOCK,
            FS_MAKE_FIFO,
            FS_MAKE_SYM,
            FS_IOCTL_DEV,
        ] {
            assert_eq!(DATA_DIR_ACCESS & right, 0, "{right:#x}");
        }
    }

    #[test]
    fn path_attr_is_packed_like_the_kernel() {
        assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
        assert_eq!(std::mem::size_of::<NetPortAttr>(), 16);
        assert_eq!(std::mem::size_of::<RulesetAttr>(), 24);
    }
}
