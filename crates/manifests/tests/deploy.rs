//! Checks the container image recipe and the seccomp profile in deploy/, which no
//! test here can run: Docker cannot build images on this machine, and the profile is
//! applied by a container runtime.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

/// A Dockerfile instruction: its keyword in upper case and its arguments, with line
/// continuations joined and comment lines removed.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    arguments: String,
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                pending.push_str(start);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (keyword, arguments) = pending.split_once(char::is_whitespace).unwrap();
                instructions.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    arguments: arguments.trim().to_string(),
                });
                pending.clear();
            }
        }
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends in a line continuation"
    );
    instructions
}

/// Splits the instructions into stages, each starting with its FROM.
fn stages(instructions: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, instruction)| instruction.keyword == "FROM")
        .map(|(index, _)| index)
        .collect();
    assert_eq!(
        starts.first(),
        Some(&0),
        "the Dockerfile must start with FROM"
    );
    starts
        .iter()
        .enumerate()
        .map(|(position, start)| {
            let end = starts
                .get(position + 1)
                .copied()
                .unwrap_or(instructions.len());
            &instructions[*start..end]
        })
        .collect()
}

fn is_exec_form(arguments: &str) -> bool {
    serde_json::from_str::<Vec<String>>(arguments).is_ok()
}

#[test]
fn final_stage_non_root_without_shell() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let instructions = parse_dockerfile(&text);
    let stages = stages(&instructions);
    assert!(
        stages.len() >= 2,
        "expected a builder stage and a final stage"
    );
    let last = *stages.last().unwrap();

    // The base is empty, or distroless static pinned by digest.
    let base = last[0].arguments.split_whitespace().next().unwrap();
    let distroless_pinned = base.starts_with("gcr.io/distroless/static")
        && base
            .split_once("@sha256:")
            .is_some_and(|(_, hex)| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(base == "scratch" || distroless_pinned, "final base {base}");

    // Nothing runs in the final stage, so nothing needs a shell there.
    for instruction in last {
        assert!(
            !["RUN", "SHELL", "ADD", "ONBUILD"].contains(&instruction.keyword.as_str()),
            "the final stage has {} {}",
            instruction.keyword,
            instruction.arguments
        );
        for shell in ["/bin/sh", "/bin/bash", "busybox"] {
            assert!(
                !instruction.arguments.contains(shell),
                "the final stage names {shell}: {} {}",
                instruction.keyword,
                instruction.arguments
            );
        }
    }

    // Files come only from the builder stage.
    let copies: Vec<&Instruction> = last
        .iter()
        .filter(|instruction| instruction.keyword == "COPY")
        .collect();
    assert!(!copies.is_empty());
    for copy in copies {
        assert!(
            copy.arguments.starts_with("--from="),
            "COPY {}",
            copy.arguments
        );
    }

    // ENTRYPOINT and CMD in shell form would run /bin/sh -c.
    for keyword in ["ENTRYPOINT", "CMD"] {
        for instruction in last
            .iter()
            .filter(|instruction| instruction.keyword == keyword)
        {
            assert!(
                is_exec_form(&instruction.arguments),
                "{keyword} {} is not in exec form",
                instruction.arguments
            );
        }
    }
    let entrypoint = last
        .iter()
        .find(|instruction| instruction.keyword == "ENTRYPOINT")
        .expect("an ENTRYPOINT");
    assert_eq!(entrypoint.arguments, r#"["/ravelin"]"#);

    // The last USER of the final stage is a numeric, non-root uid (and gid).
    let user = last
        .iter()
        .rev()
        .find(|instruction| instruction.keyword == "USER")
        .expect("a USER in the final stage");
    let (uid, gid) = user
        .arguments
        .split_once(':')
        .unwrap_or((&user.arguments, "0"));
    let uid: u32 = uid.parse().expect("a numeric uid");
    let _gid: u32 = gid.parse().expect("a numeric gid");
    assert_ne!(uid, 0, "USER {}", user.arguments);
}

#[test]
fn builder_stage_runs_build_static() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let instructions = parse_dockerfile(&text);
    let stages = stages(&instructions);
    let builder = stages[stages.len() - 2];
    assert!(
        builder
            .iter()
            .any(|instruction| instruction.keyword == "RUN"
                && instruction.arguments.starts_with("deploy/build-static")),
        "the builder stage must build with deploy/build-static, the script CI runs"
    );
}

/// The action of a seccomp profile entry or of the profile's default.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Allow,
    Errno(u64),
    KillProcess,
    Other(String),
}

fn action(name: &str, errno: Option<&Value>, default_errno: u64) -> Action {
    match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno.and_then(Value::as_u64).unwrap_or(default_errno)),
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        other => Action::Other(other.to_string()),
    }
}

/// A seccomp profile in the OCI runtime and Kubernetes JSON format.
struct Profile {
    json: Value,
}

impl Profile {
    fn load() -> Profile {
        let text = std::fs::read_to_string(deploy("seccomp/ravelin.json")).unwrap();
        Profile {
            json: serde_json::from_str(&text).expect("the profile is valid JSON"),
        }
    }

    fn default_errno(&self) -> u64 {
        self.json["defaultErrnoRet"].as_u64().unwrap_or(1)
    }

    fn entries(&self) -> &[Value] {
        self.json["syscalls"].as_array().unwrap()
    }

    /// Returns the action for a call of `syscall` with `arguments`, as a runtime would
    /// decide it: the action of every entry whose names include the call and whose
    /// argument conditions all hold, else the default action. Entries with different
    /// actions must not overlap, because libseccomp does not define which one wins.
    fn decide(&self, syscall: &str, arguments: [u64; 6]) -> Action {
        let mut actions = Vec::new();
        for entry in self.entries() {
            let names = entry["names"].as_array().unwrap();
            if !names.iter().any(|name| name == syscall) {
                continue;
            }
            let conditions = entry["args"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if conditions
                .iter()
                .all(|condition| holds(condition, &arguments))
            {
                actions.push(action(
                    entry["action"].as_str().unwrap(),
                    entry.get("errnoRet"),
                    self.default_errno(),
                ));
            }
        }
        actions.dedup();
        match actions.as_slice() {
            [] => action(
                self.json["defaultAction"].as_str().unwrap(),
                None,
                self.default_errno(),
            ),
            [only] => only.clone(),
            many => {
                panic!("{syscall} {arguments:x?} matches entries with different actions: {many:?}")
            }
        }
    }
}

fn holds(condition: &Value, arguments: &[u64; 6]) -> bool {
    let index = usize::try_from(condition["index"].as_u64().unwrap()).unwrap();
    let argument = arguments[index];
    let value = condition["value"].as_u64().unwrap();
    let value_two = condition["valueTwo"].as_u64().unwrap_or(0);
    match condition["op"].as_str().unwrap() {
        "SCMP_CMP_EQ" => argument == value,
        "SCMP_CMP_NE" => argument != value,
        "SCMP_CMP_LT" => argument < value,
        "SCMP_CMP_LE" => argument <= value,
        "SCMP_CMP_GT" => argument > value,
        "SCMP_CMP_GE" => argument >= value,
        "SCMP_CMP_MASKED_EQ" => argument & value == value_two,
        other => panic!("unknown comparison {other}"),
    }
}

const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const AF_NETLINK: u64 = 16;
const AF_PACKET: u64 = 17;
const SOCK_STREAM: u64 = 1;
const SOCK_DGRAM: u64 = 2;
const SOCK_RAW: u64 = 3;
const SOCK_NONBLOCK_CLOEXEC: u64 = 0o4000 | 0o2000000;
const PROT_READ_WRITE: u64 = 3;
const PROT_EXEC: u64 = 4;
const SIGCHLD: u64 = 17;
/// The flags std and musl pass to clone for a new thread: VM, FS, FILES, SIGHAND,
/// THREAD, SYSVSEM, SETTLS, PARENT_SETTID and CHILD_CLEARTID.
const THREAD_FLAGS: u64 = 0x003d_0f00;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;

fn call(first: u64) -> [u64; 6] {
    [first, 0, 0, 0, 0, 0]
}

#[test]
fn seccomp_profile_denies_by_default() {
    let profile = Profile::load();
    let default = profile.json["defaultAction"].as_str().unwrap();
    assert!(
        ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS"].contains(&default),
        "defaultAction {default}"
    );
    let architectures = profile.json["architectures"].as_array().unwrap();
    assert!(architectures.iter().any(|arch| arch == "SCMP_ARCH_X86_64"));
    assert_eq!(profile.decide("io_uring_setup", call(0)), Action::Errno(1));
    assert_eq!(profile.decide("memfd_create", call(0)), Action::Errno(1));
}

#[test]
fn seccomp_profile_kills_forbidden_calls() {
    let profile = Profile::load();
    for syscall in [
        "execveat",
        "ptrace",
        "process_vm_writev",
        "mount",
        "umount2",
        "pivot_root",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "fork",
        "vfork",
        "unshare",
        "setns",
        "bpf",
    ] {
        assert_eq!(
            profile.decide(syscall, call(0)),
            Action::KillProcess,
            "{syscall}"
        );
    }

    // clone for a new process, as fork does, and socket for raw packets.
    assert_eq!(profile.decide("clone", call(SIGCHLD)), Action::KillProcess);
    for (family, socket_type) in [
        (AF_INET, SOCK_RAW),
        (AF_PACKET, SOCK_RAW),
        (AF_PACKET, SOCK_DGRAM),
    ] {
        let mut arguments = call(family);
        arguments[1] = socket_type;
        assert_eq!(
            profile.decide("socket", arguments),
            Action::KillProcess,
            "socket({family}, {socket_type})"
        );
    }
}

#[test]
fn seccomp_profile_allows_only_what_the_server_needs() {
    let profile = Profile::load();

    // Threads, but not threads in new namespaces. clone3 returns ENOSYS, so a C
    // library falls back to clone.
    assert_eq!(profile.decide("clone", call(THREAD_FLAGS)), Action::Allow);
    assert_ne!(
        profile.decide("clone", call(THREAD_FLAGS | CLONE_NEWUSER)),
        Action::Allow
    );
    assert_ne!(
        profile.decide("clone", call(THREAD_FLAGS | CLONE_NEWNET)),
        Action::Allow
    );
    assert_eq!(profile.decide("clone3", call(0)), Action::Errno(38));

    // TCP over IPv4 and IPv6 and the Unix socket pair of the async runtime, nothing
    // else.
    for family in [AF_INET, AF_INET6] {
        let mut arguments = call(family);
        arguments[1] = SOCK_STREAM | SOCK_NONBLOCK_CLOEXEC;
        assert_eq!(profile.decide("socket", arguments), Action::Allow);
        arguments[1] = SOCK_DGRAM;
        assert_eq!(profile.decide("socket", arguments), Action::Errno(1));
    }
    let mut netlink = call(AF_NETLINK);
    netlink[1] = SOCK_DGRAM;
    assert_eq!(profile.decide("socket", netlink), Action::Errno(1));
    let mut pair = call(AF_UNIX);
    pair[1] = SOCK_STREAM;
    assert_eq!(profile.decide("socketpair", pair), Action::Allow);
    assert_eq!(
        profile.decide("socketpair", call(AF_INET)),
        Action::Errno(1)
    );

    // No executable memory: mmap and mprotect only without PROT_EXEC.
    for syscall in ["mmap", "mprotect"] {
        let mut arguments = call(0);
        arguments[2] = PROT_READ_WRITE;
        assert_eq!(
            profile.decide(syscall, arguments),
            Action::Allow,
            "{syscall}"
        );
        arguments[2] = PROT_READ_WRITE | PROT_EXEC;
        assert_eq!(
            profile.decide(syscall, arguments),
            Action::Errno(1),
            "{syscall}"
        );
    }
}

/// execve is the one exec call allowed, because the container runtime installs the
/// profile before it executes the entrypoint. A profile without execve stops every
/// container at start. Forbidding exec after start is the process sandbox's job.
#[test]
fn seccomp_profile_allows_execve_only_for_the_entrypoint() {
    let profile = Profile::load();
    let mut allowed_exec = BTreeSet::new();
    for entry in profile.entries() {
        if entry["action"] != "SCMP_ACT_ALLOW" {
            continue;
        }
        for name in entry["names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            if name.starts_with("exec") {
                allowed_exec.insert(name);
            }
        }
    }
    assert_eq!(allowed_exec, BTreeSet::from(["execve"]));
}

/// Every call the static server made while serving the Python integration tests
/// under `strace -f` (the musl build, x86-64) is allowed, with the arguments it used.
#[test]
fn seccomp_profile_allows_the_observed_calls() {
    let profile = Profile::load();
    let observed = [
        "accept4",
        "arch_prctl",
        "bind",
        "brk",
        "close",
        "epoll_create1",
        "epoll_ctl",
        "epoll_pwait",
        "eventfd2",
        "execve",
        "exit",
        "exit_group",
        "fchown",
        "fcntl",
        "fdatasync",
        "flock",
        "fstat",
        "fsync",
        "ftruncate",
        "futex",
        "getegid",
        "geteuid",
        "getgid",
        "getpid",
        "getrandom",
        "getsockname",
        "gettid",
        "getuid",
        "listen",
        "lseek",
        "lstat",
        "mkdir",
        "mlock",
        "mremap",
        "munlock",
        "munmap",
        "open",
        "poll",
        "pread64",
        "pwrite64",
        "read",
        "recvfrom",
        "rename",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "sched_getaffinity",
        "sched_yield",
        "sendto",
        "set_tid_address",
        "setsockopt",
        "shutdown",
        "sigaltstack",
        "stat",
        "unlink",
        "write",
        "writev",
    ];
    for syscall in observed {
        assert_eq!(profile.decide(syscall, call(0)), Action::Allow, "{syscall}");
    }

    let with_arguments: [(&str, [u64; 6]); 8] = [
        ("clone", call(THREAD_FLAGS)),
        ("mmap", [0, 4096, PROT_READ_WRITE, 0x22, u64::MAX, 0]),
        ("mprotect", [0, 4096, 0, 0, 0, 0]),
        ("socket", [AF_INET, SOCK_STREAM | 0o2000000, 0, 0, 0, 0]),
        (
            "socketpair",
            [AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK_CLOEXEC, 0, 0, 0, 0],
        ),
        ("prctl", call(15)),
        ("ioctl", [2, 0x5413, 0, 0, 0, 0]),
        ("ioctl", [3, 0x5421, 0, 0, 0, 0]),
    ];
    for (syscall, arguments) in with_arguments {
        assert_eq!(
            profile.decide(syscall, arguments),
            Action::Allow,
            "{syscall} {arguments:x?}"
        );
    }
}
