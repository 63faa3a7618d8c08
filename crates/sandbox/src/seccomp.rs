//! The seccomp filter: a list of the system calls the server makes, and a trap for
//! every other one.
//!
//! The filter is a classic BPF program over `struct seccomp_data`. It first rejects
//! any ABI other than x86-64 (32-bit `int 0x80` calls and the x32 ABI), then allows
//! the calls in [`ALLOWED`], checks the arguments of the calls in the table in
//! [`program`], returns ENOSYS for `clone3` so that glibc falls back to `clone`, where
//! the flags can be checked, and traps everything else with `SECCOMP_RET_TRAP`. The
//! trap raises SIGSYS in the calling thread, and the handler in `alert` writes the
//! call's number and name to stderr and ends the process. The trapped call itself
//! never runs.
//!
//! So exec, ptrace, mount, module loading, new processes, namespaces, raw and packet
//! sockets and everything else the server does not use kill the process. The filter
//! is installed with `SECCOMP_FILTER_FLAG_TSYNC`, so it covers every thread, and every
//! thread created later inherits it.
//!
//! The filter exists for x86-64 only: the list depends on the architecture's system
//! call table, and no other architecture can be built and tested here. Elsewhere
//! [`unavailable_reason`] says so.

#![allow(unsafe_code)]

use std::io;

/// Returns why seccomp cannot be used on this system, or `None` when it can.
pub(crate) fn unavailable_reason() -> Option<&'static str> {
    imp::unavailable_reason()
}

/// Installs the SIGSYS handler and the filter for every thread of the process.
/// no_new_privs must be set first.
pub(crate) fn install(options: &FilterOptions) -> io::Result<()> {
    imp::install(options)
}

/// Returns the name of system call `number` when the filter's tables list it.
pub(crate) fn syscall_name(number: i64) -> Option<&'static str> {
    imp::syscall_name(number)
}

/// Choices that change the filter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterOptions {
    /// The process id, the only one `kill` and `tgkill` may target.
    pub pid: u32,
    /// Whether `connect` traps. Set when Landlock cannot restrict TCP connections
    /// (ABI below 4) and no upstream port is allowed, so the server makes no outbound
    /// connection in any case.
    pub trap_connect: bool,
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::io;

    use libc::{c_long, sock_filter, sock_fprog};

    use super::FilterOptions;

    /// `AUDIT_ARCH_X86_64` from `linux/audit.h`.
    pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

    /// System call numbers at or above this bit belong to the x32 ABI.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;

    /// Offsets into `struct seccomp_data`.
    const OFFSET_NR: u32 = 0;
    const OFFSET_ARCH: u32 = 4;

    /// Offset of the low 32 bits of argument `index` (little-endian).
    const fn arg_low(index: u32) -> u32 {
        16 + 8 * index
    }

    /// Offset of the high 32 bits of argument `index`.
    const fn arg_high(index: u32) -> u32 {
        20 + 8 * index
    }

    macro_rules! syscalls {
        ($($name:ident),* $(,)?) => {
            &[$((libc::$name, stringify!($name))),*]
        };
    }

    /// Calls allowed with any arguments. File access is confined by Landlock, so the
    /// file calls need no argument checks here.
    pub const ALLOWED: &[(c_long, &str)] = syscalls![
        // Files and descriptors.
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_preadv2,
        SYS_pwritev2,
        SYS_open,
        SYS_openat,
        SYS_close,
        SYS_close_range,
        SYS_lseek,
        SYS_stat,
        SYS_fstat,
        SYS_lstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_access,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_readlink,
        SYS_readlinkat,
        SYS_getcwd,
        SYS_getdents64,
        SYS_mkdir,
        SYS_mkdirat,
        SYS_rmdir,
        SYS_unlink,
        SYS_unlinkat,
        SYS_rename,
        SYS_renameat,
        SYS_renameat2,
        SYS_fsync,
        SYS_fdatasync,
        SYS_ftruncate,
        SYS_fallocate,
        SYS_fcntl,
        SYS_flock,
        SYS_fchmod,
        SYS_fchown,
        SYS_dup,
        SYS_dup2,
        SYS_dup3,
        SYS_pipe2,
        // Memory.
        SYS_brk,
        SYS_mmap,
        SYS_munmap,
        SYS_mremap,
        SYS_mprotect,
        SYS_madvise,
        SYS_mlock,
        SYS_munlock,
        // Threads, synchronization and time.
        SYS_futex,
        SYS_set_robust_list,
        SYS_rseq,
        SYS_set_tid_address,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_gettimeofday,
        SYS_exit,
        SYS_exit_group,
        SYS_restart_syscall,
        // Identity and system information.
        SYS_getpid,
        SYS_gettid,
        SYS_getuid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getegid,
        SYS_getresuid,
        SYS_getresgid,
        SYS_getgroups,
        SYS_capget,
        SYS_getrlimit,
        SYS_uname,
        SYS_sysinfo,
        SYS_getrandom,
        // Signals.
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_sigaltstack,
        // Event loop.
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_wait,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_eventfd2,
        SYS_poll,
        SYS_ppoll,
        // Sockets, after `socket` checked their kind. Landlock checks the ports of
        // `bind` and `connect`.
        SYS_bind,
        SYS_listen,
        SYS_accept,
        SYS_accept4,
        SYS_getsockname,
        SYS_getpeername,
        SYS_setsockopt,
        SYS_getsockopt,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_recvmmsg,
        SYS_shutdown,
    ];

    /// Calls whose arguments the filter checks; see [`program`].
    const CHECKED: &[(c_long, &str)] = syscalls![
        SYS_clone,
        SYS_clone3,
        SYS_socket,
        SYS_socketpair,
        SYS_connect,
        SYS_sendto,
        SYS_sendmsg,
        SYS_sendmmsg,
        SYS_ioctl,
        SYS_prctl,
        SYS_prlimit64,
        SYS_kill,
        SYS_tgkill,
    ];

    /// Calls the filter always traps. They need no rule, because every call not
    /// allowed traps; the names are here for the alert message.
    const FORBIDDEN: &[(c_long, &str)] = syscalls![
        SYS_execve,
        SYS_execveat,
        SYS_fork,
        SYS_vfork,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_move_mount,
        SYS_open_tree,
        SYS_fsopen,
        SYS_fsmount,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_unshare,
        SYS_setns,
        SYS_setuid,
        SYS_setgid,
        SYS_setreuid,
        SYS_setregid,
        SYS_setresuid,
        SYS_setresgid,
        SYS_setgroups,
        SYS_capset,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_io_uring_setup,
        SYS_userfaultfd,
        SYS_memfd_create,
        SYS_open_by_handle_at,
        SYS_personality,
        SYS_reboot,
        SYS_seccomp,
        SYS_tkill,
        SYS_link,
        SYS_linkat,
        SYS_symlink,
        SYS_symlinkat,
        SYS_mknod,
        SYS_mknodat,
        SYS_chmod,
        SYS_fchmodat,
        SYS_chown,
        SYS_lchown,
        SYS_fchownat,
        SYS_chdir,
        SYS_fchdir,
    ];

    const CLONE_FLAGS_THREAD: u32 = libc::CLONE_THREAD as u32;
    const CLONE_FLAGS_VM: u32 = libc::CLONE_VM as u32;
    const CLONE_FLAGS_NAMESPACES: u32 = (libc::CLONE_NEWNS
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET) as u32;

    /// The mask of the socket type in `socket`'s second argument; the bits above are
    /// `SOCK_NONBLOCK` and `SOCK_CLOEXEC`.
    const SOCK_TYPE_MASK: u32 = 0xf;

    /// `ioctl` requests the server makes: non-blocking and close-on-exec switches,
    /// the bytes readable on a socket, and the terminal check behind `isatty`.
    const IOCTL_REQUESTS: &[u32] = &[
        libc::FIONBIO as u32,
        libc::FIOCLEX as u32,
        libc::FIONCLEX as u32,
        libc::FIONREAD as u32,
        libc::TCGETS as u32,
    ];

    /// `prctl` options: thread names (Rust and tokio name their threads), memory
    /// area names (glibc's allocator), and reading the process's own security state.
    const PRCTL_OPTIONS: &[u32] = &[
        libc::PR_SET_NAME as u32,
        libc::PR_GET_NAME as u32,
        libc::PR_SET_VMA as u32,
        libc::PR_GET_NO_NEW_PRIVS as u32,
        libc::PR_GET_SECCOMP as u32,
        libc::PR_GET_DUMPABLE as u32,
        libc::PR_CAPBSET_READ as u32,
    ];

    /// The target of a jump in a [`Check`].
    #[derive(Debug, Clone, Copy)]
    enum To {
        /// The next instruction.
        Next,
        /// Skip this many instructions.
        Skip(u8),
        Allow,
        Trap,
    }

    /// One instruction of an argument check.
    #[derive(Debug, Clone, Copy)]
    enum Check {
        /// Load the 32-bit word at this offset of `seccomp_data`.
        Load(u32),
        /// AND the loaded word with a constant.
        And(u32),
        /// Compare the word with a constant.
        Equal(u32, To, To),
        /// Test whether the word has any of these bits.
        AnyBit(u32, To, To),
    }

    /// Returns the instruction `code` with constant `k`.
    fn statement(code: u32, k: u32) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    fn ret(action: u32) -> sock_filter {
        statement(libc::BPF_RET | libc::BPF_K, action)
    }

    fn load(offset: u32) -> sock_filter {
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
    }

    /// Assembles an argument check. Two returns follow the checks, trap first, so
    /// a check that runs past its last instruction traps.
    fn assemble(checks: &[Check]) -> Vec<sock_filter> {
        let trap_at = checks.len();
        let allow_at = checks.len() + 1;
        let offset = |at: usize, to: To| -> u8 {
            let distance = match to {
                To::Next => 0,
                To::Skip(count) => usize::from(count),
                To::Allow => allow_at - at - 1,
                To::Trap => trap_at - at - 1,
            };
            u8::try_from(distance).expect("a check block is shorter than 256 instructions")
        };

        let mut code: Vec<sock_filter> = checks
            .iter()
            .enumerate()
            .map(|(at, check)| match *check {
                Check::Load(field) => load(field),
                Check::And(mask) => statement(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, mask),
                Check::Equal(value, yes, no) => jump(
                    libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                    value,
                    offset(at, yes),
                    offset(at, no),
                ),
                Check::AnyBit(bits, yes, no) => jump(
                    libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
                    bits,
                    offset(at, yes),
                    offset(at, no),
                ),
            })
            .collect();
        code.push(ret(libc::SECCOMP_RET_TRAP));
        code.push(ret(libc::SECCOMP_RET_ALLOW));
        code
    }

    /// Checks that allow the call when the 32-bit argument at `field` is one of
    /// `values`.
    fn one_of(field: u32, values: &[u32]) -> Vec<Check> {
        let mut checks = vec![Check::Load(field)];
        for (index, value) in values.iter().enumerate() {
            let no = if index + 1 == values.len() {
                To::Trap
            } else {
                To::Next
            };
            checks.push(Check::Equal(*value, To::Allow, no));
        }
        checks
    }

    /// Checks that trap when any of `bits` is set in the 32-bit argument at `field`.
    fn none_of(field: u32, bits: u32) -> Vec<Check> {
        vec![Check::Load(field), Check::AnyBit(bits, To::Trap, To::Allow)]
    }

    /// Builds the filter program.
    pub fn program(options: &FilterOptions) -> Vec<sock_filter> {
        let checked: Vec<(c_long, Vec<Check>)> = vec![
            // Threads only: new processes and namespaces trap.
            (
                libc::SYS_clone,
                vec![
                    Check::Load(arg_low(0)),
                    Check::AnyBit(CLONE_FLAGS_THREAD, To::Next, To::Trap),
                    Check::AnyBit(CLONE_FLAGS_VM, To::Next, To::Trap),
                    Check::AnyBit(CLONE_FLAGS_NAMESPACES, To::Trap, To::Allow),
                ],
            ),
            // TCP over IPv4 or IPv6 only. Raw, packet, netlink and Unix sockets
            // trap, and so do SCTP and MPTCP, which Landlock's TCP rules do not cover.
            (
                libc::SYS_socket,
                vec![
                    Check::Load(arg_low(0)),
                    Check::Equal(libc::AF_INET as u32, To::Skip(1), To::Next),
                    Check::Equal(libc::AF_INET6 as u32, To::Next, To::Trap),
                    Check::Load(arg_low(1)),
                    Check::And(SOCK_TYPE_MASK),
                    Check::Equal(libc::SOCK_STREAM as u32, To::Next, To::Trap),
                    Check::Load(arg_low(2)),
                    Check::Equal(0, To::Allow, To::Next),
                    Check::Equal(libc::IPPROTO_TCP as u32, To::Allow, To::Trap),
                ],
            ),
            // tokio's signal handling wakes its event loop through a Unix socket pair.
            (
                libc::SYS_socketpair,
                one_of(arg_low(0), &[libc::AF_UNIX as u32]),
            ),
            // TCP Fast Open sends a SYN from sendto or sendmsg, without connect.
            (
                libc::SYS_sendto,
                none_of(arg_low(3), libc::MSG_FASTOPEN as u32),
            ),
            (
                libc::SYS_sendmsg,
                none_of(arg_low(2), libc::MSG_FASTOPEN as u32),
            ),
            (
                libc::SYS_sendmmsg,
                none_of(arg_low(3), libc::MSG_FASTOPEN as u32),
            ),
            (libc::SYS_ioctl, one_of(arg_low(1), IOCTL_REQUESTS)),
            (libc::SYS_prctl, one_of(arg_low(0), PRCTL_OPTIONS)),
            // Reading limits only: a null new limit.
            (
                libc::SYS_prlimit64,
                vec![
                    Check::Load(arg_low(2)),
                    Check::Equal(0, To::Next, To::Trap),
                    Check::Load(arg_high(2)),
                    Check::Equal(0, To::Allow, To::Trap),
                ],
            ),
            // Signals to this process only, such as abort() raising SIGABRT.
            (libc::SYS_kill, one_of(arg_low(0), &[options.pid])),
            (libc::SYS_tgkill, one_of(arg_low(0), &[options.pid])),
        ];

        let mut code = vec![
            load(OFFSET_ARCH),
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                AUDIT_ARCH_X86_64,
                1,
                0,
            ),
            ret(libc::SECCOMP_RET_TRAP),
            load(OFFSET_NR),
            jump(
                libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
                X32_SYSCALL_BIT,
                0,
                1,
            ),
            ret(libc::SECCOMP_RET_TRAP),
        ];
        let equal_nr = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let connect: &[(c_long, &str)] = if options.trap_connect {
            &[]
        } else {
            syscalls![SYS_connect]
        };
        for (number, _) in ALLOWED.iter().chain(connect) {
            code.push(jump(equal_nr, *number as u32, 0, 1));
            code.push(ret(libc::SECCOMP_RET_ALLOW));
        }
        // glibc creates threads with clone3 when the kernel has it and falls back to
        // clone on ENOSYS. clone3 passes its flags in memory, out of the filter's reach.
        code.push(jump(equal_nr, libc::SYS_clone3 as u32, 0, 1));
        code.push(ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
        for (number, checks) in checked {
            let block = assemble(&checks);
            let length = u8::try_from(block.len()).expect("a check block is short");
            code.push(jump(equal_nr, number as u32, 0, length));
            code.extend(block);
        }
        code.push(ret(libc::SECCOMP_RET_TRAP));
        code
    }

    pub fn unavailable_reason() -> Option<&'static str> {
        // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
        let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP) };
        if mode < 0 {
            return Some("this kernel has no seccomp support");
        }
        let action: u32 = libc::SECCOMP_RET_TRAP;
        // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from a valid pointer.
        let result = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_ACTION_AVAIL,
                0u32,
                &action as *const u32,
            )
        };
        if result != 0 {
            return Some("this kernel cannot trap system calls with seccomp filters");
        }
        None
    }

    pub fn install(options: &FilterOptions) -> io::Result<()> {
        crate::alert::install_handler()?;
        let mut code = program(options);
        let program = sock_fprog {
            len: u16::try_from(code.len())
                .map_err(|_| io::Error::other("the seccomp filter is too long"))?,
            filter: code.as_mut_ptr(),
        };
        // SAFETY: `program` points at `code`, which outlives the call; the kernel copies
        // the filter before returning.
        let result = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_TSYNC,
                &program as *const sock_fprog,
            )
        };
        match result {
            0 => Ok(()),
            thread if thread > 0 => Err(io::Error::other(format!(
                "thread {thread} could not take the filter"
            ))),
            _ => Err(io::Error::last_os_error()),
        }
    }

    pub fn syscall_name(number: i64) -> Option<&'static str> {
        ALLOWED
            .iter()
            .chain(CHECKED)
            .chain(FORBIDDEN)
            .find(|(known, _)| *known == number)
            .map(|(_, name)| name.strip_prefix("SYS_").unwrap_or(name))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The fields of `struct seccomp_data` the filter reads.
        struct Call {
            nr: c_long,
            arch: u32,
            args: [u64; 6],
        }

        fn call(nr: c_long, args: &[u64]) -> Call {
            let mut all = [0u64; 6];
            all[..args.len()].copy_from_slice(args);
            Call {
                nr,
                arch: AUDIT_ARCH_X86_64,
                args: all,
            }
        }

        /// Reads the 32-bit word at `offset` of the call's `seccomp_data`.
        fn word(call: &Call, offset: u32) -> u32 {
            match offset {
                0 => call.nr as u32,
                4 => call.arch,
                16..=63 => {
                    let index = ((offset - 16) / 8) as usize;
                    let value = call.args[index];
                    if offset.is_multiple_of(8) {
                        value as u32
                    } else {
                        (value >> 32) as u32
                    }
                }
                _ => panic!("the filter reads offset {offset}"),
            }
        }

        /// Runs the filter the way the kernel does, for the instructions it uses.
        fn run(program: &[sock_filter], call: &Call) -> u32 {
            let mut accumulator = 0u32;
            let mut pc = 0usize;
            loop {
                let instruction = program[pc];
                let code = u32::from(instruction.code);
                pc += 1;
                match code {
                    c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                        accumulator = word(call, instruction.k);
                    }
                    c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => {
                        accumulator &= instruction.k;
                    }
                    c if c == libc::BPF_RET | libc::BPF_K => return instruction.k,
                    _ => {
                        let taken = match code {
                            c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                                accumulator == instruction.k
                            }
                            c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => {
                                accumulator >= instruction.k
                            }
                            c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => {
                                accumulator & instruction.k != 0
                            }
                            other => panic!("unexpected instruction {other:#x}"),
                        };
                        let skip = if taken {
                            instruction.jt
                        } else {
                            instruction.jf
                        };
                        pc += usize::from(skip);
                    }
                }
            }
        }

        const PID: u32 = 4242;
        const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
        const TRAP: u32 = libc::SECCOMP_RET_TRAP;

        fn filter() -> Vec<sock_filter> {
            program(&FilterOptions {
                pid: PID,
                trap_connect: false,
            })
        }

        fn verdict(nr: c_long, args: &[u64]) -> u32 {
            run(&filter(), &call(nr, args))
        }

        #[test]
        fn allowed_calls_pass() {
            for (nr, name) in ALLOWED {
                assert_eq!(verdict(*nr, &[]), ALLOW, "{name}");
            }
        }

        #[test]
        fn forbidden_calls_trap() {
            for (nr, name) in FORBIDDEN {
                assert_eq!(verdict(*nr, &[]), TRAP, "{name}");
            }
            assert_eq!(verdict(libc::SYS_io_uring_enter, &[]), TRAP);
        }

        #[test]
        fn no_name_is_both_allowed_and_forbidden() {
            for (nr, name) in ALLOWED.iter().chain(CHECKED) {
                assert!(
                    FORBIDDEN.iter().all(|(forbidden, _)| forbidden != nr),
                    "{name}"
                );
            }
        }

        #[test]
        fn foreign_abis_trap() {
            let mut i386 = call(libc::SYS_read, &[]);
            i386.arch = 0x4000_0003;
            assert_eq!(run(&filter(), &i386), TRAP);
            let x32 = call(libc::SYS_read | X32_SYSCALL_BIT as c_long, &[]);
            assert_eq!(run(&filter(), &x32), TRAP);
        }

        #[test]
        fn clone_allows_threads_only() {
            let thread = (libc::CLONE_VM
                | libc::CLONE_FS
                | libc::CLONE_FILES
                | libc::CLONE_SIGHAND
                | libc::CLONE_THREAD
                | libc::CLONE_SYSVSEM
                | libc::CLONE_SETTLS
                | libc::CLONE_PARENT_SETTID
                | libc::CLONE_CHILD_CLEARTID) as u64;
            assert_eq!(verdict(libc::SYS_clone, &[thread]), ALLOW);
            let fork = libc::SIGCHLD as u64;
            assert_eq!(verdict(libc::SYS_clone, &[fork]), TRAP);
            let spawn = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
            assert_eq!(verdict(libc::SYS_clone, &[spawn]), TRAP);
            let namespaced = thread | libc::CLONE_NEWNET as u64;
            assert_eq!(verdict(libc::SYS_clone, &[namespaced]), TRAP);
            assert_eq!(
                verdict(libc::SYS_clone3, &[]),
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
            );
        }

        #[test]
        fn socket_allows_tcp_only() {
            let stream = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64;
            for domain in [libc::AF_INET, libc::AF_INET6] {
                let domain = domain as u64;
                assert_eq!(verdict(libc::SYS_socket, &[domain, stream, 0]), ALLOW);
                let tcp = libc::IPPROTO_TCP as u64;
                assert_eq!(verdict(libc::SYS_socket, &[domain, stream, tcp]), ALLOW);
                let sctp = libc::IPPROTO_SCTP as u64;
                assert_eq!(verdict(libc::SYS_socket, &[domain, stream, sctp]), TRAP);
                let raw = libc::SOCK_RAW as u64;
                assert_eq!(verdict(libc::SYS_socket, &[domain, raw, 1]), TRAP);
                let datagram = libc::SOCK_DGRAM as u64;
                assert_eq!(verdict(libc::SYS_socket, &[domain, datagram, 0]), TRAP);
            }
            for domain in [libc::AF_PACKET, libc::AF_UNIX, libc::AF_NETLINK] {
                let raw = libc::SOCK_RAW as u64;
                assert_eq!(verdict(libc::SYS_socket, &[domain as u64, raw, 0]), TRAP);
                let stream = libc::SOCK_STREAM as u64;
                assert_eq!(verdict(libc::SYS_socket, &[domain as u64, stream, 0]), TRAP);
            }
            let unix = libc::AF_UNIX as u64;
            assert_eq!(verdict(libc::SYS_socketpair, &[unix, stream, 0]), ALLOW);
            let inet = libc::AF_INET as u64;
            assert_eq!(verdict(libc::SYS_socketpair, &[inet, stream, 0]), TRAP);
        }

        #[test]
        fn fast_open_sends_trap() {
            let fast_open = libc::MSG_FASTOPEN as u64;
            assert_eq!(verdict(libc::SYS_sendto, &[3, 0, 10, 0]), ALLOW);
            assert_eq!(verdict(libc::SYS_sendto, &[3, 0, 10, fast_open]), TRAP);
            assert_eq!(verdict(libc::SYS_sendmsg, &[3, 0, 0]), ALLOW);
            assert_eq!(verdict(libc::SYS_sendmsg, &[3, 0, fast_open]), TRAP);
            assert_eq!(verdict(libc::SYS_sendmmsg, &[3, 0, 1, fast_open]), TRAP);
        }

        #[test]
        fn signals_reach_this_process_only() {
            let pid = u64::from(PID);
            let sigabrt = libc::SIGABRT as u64;
            assert_eq!(verdict(libc::SYS_kill, &[pid, sigabrt]), ALLOW);
            assert_eq!(verdict(libc::SYS_kill, &[1, sigabrt]), TRAP);
            assert_eq!(verdict(libc::SYS_kill, &[0, sigabrt]), TRAP);
            assert_eq!(verdict(libc::SYS_kill, &[u64::MAX, sigabrt]), TRAP);
            assert_eq!(verdict(libc::SYS_tgkill, &[pid, pid + 1, sigabrt]), ALLOW);
            assert_eq!(verdict(libc::SYS_tgkill, &[pid + 1, pid, sigabrt]), TRAP);
        }

        #[test]
        fn ioctl_prctl_and_prlimit_checked() {
            assert_eq!(verdict(libc::SYS_ioctl, &[2, libc::TCGETS]), ALLOW);
            assert_eq!(verdict(libc::SYS_ioctl, &[3, libc::FIONBIO]), ALLOW);
            assert_eq!(verdict(libc::SYS_ioctl, &[0, libc::TIOCSTI]), TRAP);
            let set_name = libc::PR_SET_NAME as u64;
            assert_eq!(verdict(libc::SYS_prctl, &[set_name]), ALLOW);
            for option in [
                libc::PR_SET_DUMPABLE,
                libc::PR_SET_NO_NEW_PRIVS,
                libc::PR_CAPBSET_DROP,
                libc::PR_SET_SECCOMP,
                libc::PR_SET_PTRACER,
            ] {
                assert_eq!(verdict(libc::SYS_prctl, &[option as u64]), TRAP, "{option}");
            }
            assert_eq!(verdict(libc::SYS_prlimit64, &[0, 3, 0, 0x1000]), ALLOW);
            assert_eq!(verdict(libc::SYS_prlimit64, &[0, 3, 0x1000, 0]), TRAP);
            assert_eq!(verdict(libc::SYS_prlimit64, &[0, 3, 1 << 40, 0]), TRAP);
        }

        #[test]
        fn connect_traps_only_when_asked() {
            assert_eq!(verdict(libc::SYS_connect, &[3, 0, 16]), ALLOW);
            let trapping = program(&FilterOptions {
                pid: PID,
                trap_connect: true,
            });
            assert_eq!(run(&trapping, &call(libc::SYS_connect, &[3, 0, 16])), TRAP);
        }

        #[test]
        fn names_for_alerts() {
            assert_eq!(syscall_name(libc::SYS_execve), Some("execve"));
            assert_eq!(syscall_name(libc::SYS_clone), Some("clone"));
            assert_eq!(syscall_name(libc::SYS_read), Some("read"));
            assert_eq!(syscall_name(100_000), None);
        }

        #[test]
        fn program_fits_the_kernel_limit() {
            assert!(filter().len() < libc::BPF_MAXINSNS as usize);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use std::io;

    use super::FilterOptions;

    pub fn unavailable_reason() -> Option<&'static str> {
        Some("the seccomp filter is written for x86-64 only")
    }

    pub fn install(_options: &FilterOptions) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the seccomp filter is written for x86-64 only",
        ))
    }

    pub fn syscall_name(_number: i64) -> Option<&'static str> {
        None
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use imp::AUDIT_ARCH_X86_64;
