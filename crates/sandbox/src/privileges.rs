//! Leaving root: handing the data directory to the target user, switching uid and gid,
//! dropping every capability, and checking that all of it took effect.
//!
//! A process is treated as started by root when any of its real, effective or saved
//! uids is 0. It then hands the data directory tree to the target user, clears its
//! supplementary groups, switches all three gids and uids, and empties the bounding,
//! ambient, inheritable, permitted and effective capability sets. Any step that fails,
//! or a state afterwards that differs from the plan, is an error, so the caller never
//! serves with privileges it meant to give up.
//!
//! A process started as another user cannot change users. It still clears any
//! capabilities it has (for example file capabilities such as
//! `cap_net_bind_service`), but its bounding set stays as it was because emptying it
//! needs `CAP_SETPCAP`. With no_new_privs set and exec forbidden, a bounding set can
//! no longer grant anything.

#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::user::{ResolvedUser, TargetUser};
use crate::SandboxError;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Capability numbers are below this bound; the kernel reports the last valid one
/// (`/proc/sys/kernel/cap_last_cap`) by failing PR_CAPBSET_READ with EINVAL past it.
const CAPABILITY_BOUND: libc::c_ulong = 64;

/// The identity the process serves as.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapabilityHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit word of each set.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct CapabilityData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The capability sets of the calling thread, each as a 64-bit mask.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capabilities {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub bounding: u64,
    pub ambient: u64,
}

impl Capabilities {
    fn is_empty(&self) -> bool {
        *self == Capabilities::default()
    }
}

/// Drops root, or the capabilities of a non-root start, and verifies the result.
///
/// `user` is the user to switch to when started as root, [`TargetUser::default`]
/// when `None`. A non-root start with a `user` other than itself is an error, because
/// only root can switch users.
pub(crate) fn drop_privileges(
    user: Option<&TargetUser>,
    data_dir: &Path,
) -> Result<Identity, SandboxError> {
    let (real, effective, saved) = uids()?;
    if real != 0 && effective != 0 && saved != 0 {
        return drop_capabilities_only(user, effective);
    }

    let target = user.cloned().unwrap_or_default().resolve()?;
    if target.uid == 0 {
        return Err(SandboxError::RootTarget {
            user: target.name,
            id: "uid",
        });
    }
    if target.gid == 0 {
        return Err(SandboxError::RootTarget {
            user: target.name,
            id: "gid",
        });
    }

    hand_over(data_dir, &target)?;
    switch_user(&target)?;
    verify_switched(&target)?;
    Ok(Identity {
        user: target.name,
        uid: target.uid,
        gid: target.gid,
    })
}

/// Clears the capabilities of a process that did not start as root.
fn drop_capabilities_only(user: Option<&TargetUser>, uid: u32) -> Result<Identity, SandboxError> {
    let name = match user {
        Some(user) => {
            let target = user.resolve()?;
            if target.uid != uid {
                return Err(SandboxError::UserNeedsRoot {
                    user: target.name,
                    uid,
                });
            }
            target.name
        }
        None => format!("uid {uid}"),
    };
    clear_ambient().map_err(syscall_error("clear the ambient capabilities"))?;
    set_capabilities_empty().map_err(syscall_error("clear the capability sets"))?;

    let capabilities = capabilities().map_err(syscall_error("read the capability sets"))?;
    let remaining = Capabilities {
        bounding: 0,
        ..capabilities
    };
    if !remaining.is_empty() {
        return Err(SandboxError::NotDropped(format!(
            "capabilities remain after clearing them: {remaining:?}"
        )));
    }
    let (_, gid, _) = gids()?;
    Ok(Identity {
        user: name,
        uid,
        gid,
    })
}

/// Gives the data directory tree to the target user, so that the server can still
/// write it after the switch.
///
/// Symbolic links are changed themselves and never followed, except for the data
/// directory path itself, which may be a link to the real directory. A file with more
/// than one hard link is skipped with a warning: it may be a link to a file outside
/// the data directory, which must not change hands.
fn hand_over(data_dir: &Path, target: &ResolvedUser) -> Result<(), SandboxError> {
    let chown_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SandboxError::Chown {
            path,
            user: target.name.clone(),
            source,
        }
    };
    std::os::unix::fs::chown(data_dir, Some(target.uid), Some(target.gid))
        .map_err(chown_error(data_dir))?;

    let mut pending = vec![data_dir.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = fs::read_dir(&directory).map_err(chown_error(&directory))?;
        for entry in entries {
            let path = entry.map_err(chown_error(&directory))?.path();
            let metadata = fs::symlink_metadata(&path).map_err(chown_error(&path))?;
            if metadata.is_dir() {
                pending.push(path.clone());
            } else if metadata.nlink() > 1 {
                tracing::warn!(
                    path = %path.display(),
                    links = metadata.nlink(),
                    "not handing over a file with more than one hard link; it may be shared with a path outside the data directory"
                );
                continue;
            }
            if metadata.uid() != target.uid || metadata.gid() != target.gid {
                std::os::unix::fs::lchown(&path, Some(target.uid), Some(target.gid))
                    .map_err(chown_error(&path))?;
            }
        }
    }
    Ok(())
}

/// Switches groups and users, then empties every capability set.
///
/// The bounding and ambient sets are emptied first, while the process still has
/// `CAP_SETPCAP`. Switching all three uids away from 0 then clears the permitted and
/// effective sets, and the final `capset` clears the inheritable set as well.
fn switch_user(target: &ResolvedUser) -> Result<(), SandboxError> {
    clear_ambient().map_err(syscall_error("clear the ambient capabilities"))?;
    drop_bounding_set().map_err(syscall_error("empty the capability bounding set"))?;

    // SAFETY: a null list with length 0 is the documented way to clear the
    // supplementary groups; the kernel reads no memory.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(syscall_error("clear the supplementary groups")(
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: plain integer arguments. glibc applies the change to every thread.
    if unsafe { libc::setresgid(target.gid, target.gid, target.gid) } != 0 {
        return Err(syscall_error("switch to the target group")(
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(target.uid, target.uid, target.uid) } != 0 {
        return Err(syscall_error("switch to the target user")(
            io::Error::last_os_error(),
        ));
    }
    set_capabilities_empty().map_err(syscall_error("clear the capability sets"))
}

/// Checks that the switch took effect: ids, groups, every capability set, and that
/// uid 0 cannot be regained.
fn verify_switched(target: &ResolvedUser) -> Result<(), SandboxError> {
    let uids = uids()?;
    if uids != (target.uid, target.uid, target.uid) {
        return Err(SandboxError::NotDropped(format!(
            "real, effective and saved uids are {uids:?}, expected {} for all three",
            target.uid
        )));
    }
    let gids = gids()?;
    if gids != (target.gid, target.gid, target.gid) {
        return Err(SandboxError::NotDropped(format!(
            "real, effective and saved gids are {gids:?}, expected {} for all three",
            target.gid
        )));
    }

    // SAFETY: a size of 0 requests only the count, so the kernel writes no memory.
    let groups = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if groups != 0 {
        return Err(SandboxError::NotDropped(format!(
            "{groups} supplementary groups remain"
        )));
    }

    let capabilities = capabilities().map_err(syscall_error("read the capability sets"))?;
    if !capabilities.is_empty() {
        return Err(SandboxError::NotDropped(format!(
            "capabilities remain: {capabilities:?}"
        )));
    }

    // SAFETY: plain integer arguments. Expected to fail with EPERM.
    if unsafe { libc::setresuid(0, 0, 0) } == 0 {
        return Err(SandboxError::NotDropped(
            "the process could switch back to uid 0".to_string(),
        ));
    }
    Ok(())
}

/// Returns the real, effective and saved uids.
fn uids() -> Result<(u32, u32, u32), SandboxError> {
    let (mut real, mut effective, mut saved) = (0, 0, 0);
    // SAFETY: the three pointers are valid, writable locals for the duration of the call.
    if unsafe { libc::getresuid(&mut real, &mut effective, &mut saved) } != 0 {
        return Err(syscall_error("read the uids")(io::Error::last_os_error()));
    }
    Ok((real, effective, saved))
}

/// Returns the real, effective and saved gids.
fn gids() -> Result<(u32, u32, u32), SandboxError> {
    let (mut real, mut effective, mut saved) = (0, 0, 0);
    // SAFETY: the three pointers are valid, writable locals for the duration of the call.
    if unsafe { libc::getresgid(&mut real, &mut effective, &mut saved) } != 0 {
        return Err(syscall_error("read the gids")(io::Error::last_os_error()));
    }
    Ok((real, effective, saved))
}

/// Reads all five capability sets of the calling thread.
pub(crate) fn capabilities() -> io::Result<Capabilities> {
    let mut header = CapabilityHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapabilityData::default(); 2];
    // SAFETY: `header` and the two-element `data` array are what capget(2) expects for
    // version 3; both outlive the call.
    let result = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok(Capabilities {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
        bounding: capability_mask(libc::PR_CAPBSET_READ, 0)?,
        ambient: capability_mask(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET as _)?,
    })
}

/// Empties the effective, permitted and inheritable sets. Lowering them needs no
/// privilege.
fn set_capabilities_empty() -> io::Result<()> {
    let mut header = CapabilityHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapabilityData::default(); 2];
    // SAFETY: as in `capabilities`; capset(2) only reads `data`.
    let result = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns the set queried with `prctl(option, [sub_option,] cap)` for every
/// capability the kernel supports, as a mask.
fn capability_mask(option: libc::c_int, sub_option: libc::c_ulong) -> io::Result<u64> {
    let mut mask = 0u64;
    for capability in 0..CAPABILITY_BOUND {
        let (first, second) = if option == libc::PR_CAP_AMBIENT {
            (sub_option, capability)
        } else {
            (capability, 0)
        };
        // SAFETY: PR_CAPBSET_READ and PR_CAP_AMBIENT_IS_SET take integers only.
        let result = unsafe { libc::prctl(option, first, second, 0 as libc::c_ulong, 0) };
        match result {
            1 => mask |= 1 << capability,
            0 => {}
            _ => {
                let error = io::Error::last_os_error();
                if error.raw_os_error() == Some(libc::EINVAL) {
                    // Past the last capability this kernel supports.
                    break;
                }
                return Err(error);
            }
        }
    }
    Ok(mask)
}

fn drop_bounding_set() -> io::Result<()> {
    for capability in 0..CAPABILITY_BOUND {
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number.
        let result = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                capability,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if result != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(error);
        }
    }
    Ok(())
}

/// Empties the ambient set. Kernels before 4.3 have no ambient set and fail with
/// EINVAL, which counts as done.
fn clear_ambient() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integer arguments, all zero.
    let result = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if result != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINVAL) {
            return Err(error);
        }
    }
    Ok(())
}

/// Sets no_new_privs, so that nothing the process does can gain privileges, and
/// clears the dumpable flag, so that no core dump or same-user ptrace can read the
/// master key from memory. Returns whether no_new_privs reads back as set.
pub(crate) fn restrict_process() -> Result<bool, SandboxError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS and PR_SET_DUMPABLE take integer arguments.
    let result = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if result != 0 {
        return Err(syscall_error("set no_new_privs")(io::Error::last_os_error()));
    }
    // SAFETY: as above.
    let result = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong) };
    if result != 0 {
        return Err(syscall_error("clear the dumpable flag")(
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: PR_GET_NO_NEW_PRIVS takes no further arguments that are read.
    let set = unsafe {
        libc::prctl(
            libc::PR_GET_NO_NEW_PRIVS,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    Ok(set == 1)
}

/// Returns a function that wraps an OS error as a failed sandbox step.
pub(crate) fn syscall_error(step: &'static str) -> impl Fn(io::Error) -> SandboxError {
    move |source| SandboxError::Syscall { step, source }
}
