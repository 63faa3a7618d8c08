//! The SIGSYS handler that reports a trapped system call and ends the process.
//!
//! The handler runs in whatever state the trapping thread was in, possibly holding the
//! allocator's lock, so it uses only async-signal-safe calls: it formats the message
//! into a stack buffer, writes it to stderr with write(2), restores the default action
//! for SIGSYS and raises it, so the process ends as the kernel's own seccomp kill
//! would end it, by SIGSYS. If the signal does not end the process, `_exit` does.
//!
//! The alert goes to stderr only, not to the audit log. A record there must carry the
//! hash of the previous record, which sits behind the audit log's mutex, and encoding
//! it allocates; neither is safe in a signal handler. An unchained line would instead
//! make the next start reject the log as damaged.

#![allow(unsafe_code)]

use std::io;

/// The fields of `siginfo_t` that the kernel fills for a seccomp trap on 64-bit Linux:
/// the common header, then `_sigsys` at offset 16.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _padding: libc::c_int,
    call_address: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

const ALERT_PREFIX: &[u8] = b"ravelin: sandbox violation: forbidden system call ";
const ALERT_SUFFIX: &[u8] = b"; the seccomp filter stops the process\n";

/// Installs the handler for SIGSYS.
pub(crate) fn install_handler() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value to start from.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid sigset_t inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialized and outlives the call; the old action is
    // not requested.
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A message built in a fixed buffer, without allocating.
struct Message {
    bytes: [u8; 256],
    len: usize,
}

impl Message {
    fn new() -> Message {
        Message {
            bytes: [0; 256],
            len: 0,
        }
    }

    /// Appends as much of `text` as fits.
    fn push(&mut self, text: &[u8]) {
        for byte in text {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = *byte;
                self.len += 1;
            }
        }
    }

    fn push_number(&mut self, number: i64) {
        if number < 0 {
            self.push(b"-");
        }
        let mut digits = [0u8; 20];
        let mut remaining = number.unsigned_abs();
        let mut count = 0;
        loop {
            digits[count] = b'0' + (remaining % 10) as u8;
            count += 1;
            remaining /= 10;
            if remaining == 0 {
                break;
            }
        }
        digits[..count].reverse();
        self.push(&digits[..count]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Builds the alert for system call `number` on audit architecture `arch`.
fn alert(number: i64, arch: u32) -> Message {
    let mut message = Message::new();
    message.push(ALERT_PREFIX);
    message.push_number(number);
    #[cfg(target_arch = "x86_64")]
    let native = arch == crate::seccomp::AUDIT_ARCH_X86_64;
    #[cfg(not(target_arch = "x86_64"))]
    let native = {
        let _ = arch;
        true
    };
    match crate::seccomp::syscall_name(number) {
        Some(name) if native => {
            message.push(b" (");
            message.push(name.as_bytes());
            message.push(b")");
        }
        _ if !native => message.push(b" of a foreign system call ABI"),
        _ => {}
    }
    message.push(ALERT_SUFFIX);
    message
}

extern "C" fn on_sigsys(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler, and for a
    // seccomp trap its layout starts as `SigsysInfo`, which is smaller.
    let (number, arch) = unsafe {
        let sigsys = &*(info as *const SigsysInfo);
        (i64::from(sigsys.syscall), sigsys.arch)
    };
    let message = alert(number, arch);

    let mut written = 0;
    for _attempt in 0..8 {
        let rest = &message.as_bytes()[written..];
        if rest.is_empty() {
            break;
        }
        // SAFETY: write(2) is async-signal-safe and `rest` is a valid buffer.
        let result = unsafe { libc::write(libc::STDERR_FILENO, rest.as_ptr().cast(), rest.len()) };
        if result > 0 {
            written += result as usize;
        } else if result < 0
            // SAFETY: errno is thread-local; reading it is async-signal-safe.
            && unsafe { *libc::__errno_location() } == libc::EINTR
        {
            continue;
        } else {
            break;
        }
    }

    // SAFETY: sigaction, sigemptyset, sigaddset, pthread_sigmask, raise and _exit are
    // async-signal-safe, and every pointer is to a valid local.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut());
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut blocked);
        libc::sigaddset(&mut blocked, libc::SIGSYS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &blocked, std::ptr::null_mut());
        libc::raise(libc::SIGSYS);
        libc::_exit(128 + libc::SIGSYS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_the_call() {
        let message = alert(59, 0xC000_003E);
        let text = std::str::from_utf8(message.as_bytes()).unwrap();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            text,
            "ravelin: sandbox violation: forbidden system call 59 (execve); the seccomp filter stops the process\n"
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn alert_for_unknown_and_foreign_calls() {
        let message = alert(100_000, 0xC000_003E);
        let text = std::str::from_utf8(message.as_bytes()).unwrap();
        assert!(text.contains("system call 100000;"), "{text}");

        #[cfg(target_arch = "x86_64")]
        {
            let message = alert(11, 0x4000_0003);
            let text = std::str::from_utf8(message.as_bytes()).unwrap();
            assert!(text.contains("11 of a foreign system call ABI"), "{text}");
        }
    }

    #[test]
    fn numbers_format_without_allocation() {
        for (number, expected) in [(0, "0"), (7, "7"), (435, "435"), (-1, "-1")] {
            let mut message = Message::new();
            message.push_number(number);
            assert_eq!(message.as_bytes(), expected.as_bytes());
        }
        let mut message = Message::new();
        message.push_number(i64::MIN);
        assert_eq!(message.as_bytes(), i64::MIN.to_string().as_bytes());
    }
}
