//! Escape attempts for the sandbox tests, built only with the `probe` feature.
//!
//! A test-only build of the server runs one of these on request inside the confined
//! process. Each must fail: the Landlock attempts with EACCES, the seccomp attempts
//! by killing the process with the alert on stderr. Never enable the feature in a
//! build you deploy.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// One escape attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// execve("/bin/sh"): traps.
    Exec,
    /// fork(2): traps.
    Fork,
    /// socket(AF_PACKET, SOCK_RAW): traps.
    RawSocket,
    /// Open a file for reading: Landlock denies it outside the rules.
    Read(PathBuf),
    /// Create a file: Landlock denies it outside the data directory.
    Write(PathBuf),
    /// Connect to 127.0.0.1 on a TCP port: Landlock denies it.
    Connect(u16),
    /// Panic, printing a backtrace when `RUST_BACKTRACE` is set: the filter must allow
    /// what a panic does, so that a panicking request fails alone.
    Panic,
}

impl FromStr for Attempt {
    type Err = String;

    /// Parses `exec`, `fork`, `raw-socket`, `panic`, `read PATH`, `write PATH` or
    /// `connect PORT`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (verb, argument) = text.split_once(' ').unwrap_or((text, ""));
        match (verb, argument) {
            ("exec", "") => Ok(Attempt::Exec),
            ("fork", "") => Ok(Attempt::Fork),
            ("raw-socket", "") => Ok(Attempt::RawSocket),
            ("panic", "") => Ok(Attempt::Panic),
            ("read", path) if !path.is_empty() => Ok(Attempt::Read(PathBuf::from(path))),
            ("write", path) if !path.is_empty() => Ok(Attempt::Write(PathBuf::from(path))),
            ("connect", port) => port
                .parse()
                .map(Attempt::Connect)
                .map_err(|_| format!("invalid port [{port}]")),
            _ => Err(format!(
                "unknown probe [{text}]: expected exec, fork, raw-socket, panic, read PATH, write PATH or connect PORT"
            )),
        }
    }
}

impl Attempt {
    /// Runs the attempt. Returns `Ok(())` when it succeeded, which means the sandbox
    /// failed to stop it, and the error otherwise. The trapped attempts do not return,
    /// and [`Attempt::Panic`] unwinds.
    pub fn run(&self) -> io::Result<()> {
        match self {
            Attempt::Panic => panic!("sandbox probe: a deliberate panic"),
            Attempt::Exec => exec_shell(),
            Attempt::Fork => fork(),
            Attempt::RawSocket => raw_socket(),
            Attempt::Read(path) => std::fs::read(path).map(drop),
            Attempt::Write(path) => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map(drop),
            Attempt::Connect(port) => TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
                Duration::from_secs(2),
            )
            .map(drop),
        }
    }
}

fn exec_shell() -> io::Result<()> {
    let shell = CString::new("/bin/sh").map_err(io::Error::other)?;
    let argument = CString::new("-c").map_err(io::Error::other)?;
    let command = CString::new("exit 0").map_err(io::Error::other)?;
    let argv = [
        shell.as_ptr(),
        argument.as_ptr(),
        command.as_ptr(),
        std::ptr::null(),
    ];
    let envp = [std::ptr::null()];
    // SAFETY: argv and envp are null-terminated arrays of valid C strings that outlive
    // the call. On success the process image is replaced, which is the failure this
    // probe looks for.
    unsafe { libc::execve(shell.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(io::Error::last_os_error())
}

fn fork() -> io::Result<()> {
    // SAFETY: a raw fork(2). A child, should one exist, exits at once without running
    // any Rust code.
    let pid = unsafe { libc::syscall(libc::SYS_fork) };
    match pid {
        0 => {
            // SAFETY: _exit ends the child without touching the parent's state.
            unsafe { libc::_exit(0) }
        }
        pid if pid > 0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn raw_socket() -> io::Result<()> {
    // SAFETY: socket(2) takes integers only.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the descriptor just created and owned by nothing else.
    unsafe { libc::close(fd) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_parse() {
        assert_eq!("exec".parse::<Attempt>(), Ok(Attempt::Exec));
        assert_eq!(" fork\n".parse::<Attempt>(), Ok(Attempt::Fork));
        assert_eq!("raw-socket".parse::<Attempt>(), Ok(Attempt::RawSocket));
        assert_eq!("panic".parse::<Attempt>(), Ok(Attempt::Panic));
        assert_eq!(
            "read /etc/passwd".parse::<Attempt>(),
            Ok(Attempt::Read("/etc/passwd".into()))
        );
        assert_eq!(
            "write /tmp/x y".parse::<Attempt>(),
            Ok(Attempt::Write("/tmp/x y".into()))
        );
        assert_eq!(
            "connect 8080".parse::<Attempt>(),
            Ok(Attempt::Connect(8080))
        );
        for bad in [
            "",
            "read",
            "connect",
            "connect 70000",
            "exec now",
            "delete /",
        ] {
            assert!(bad.parse::<Attempt>().is_err(), "{bad:?}");
        }
    }
}
