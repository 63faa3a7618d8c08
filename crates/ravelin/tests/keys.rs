//! The master key on the real binary: from a file descriptor, `ravelin key rotate`,
//! and a server start after a rotation interrupted at each step.

#![allow(clippy::unwrap_used)] // Test helpers unwrap: a panic is a test failure.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::rotation::{rotate, KeyFiles, RotationStep};
use store::{MasterKey, Store};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_MARKER: &str = "listening on https://";

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ravelin")
}

/// A `ravelin serve` process whose standard error is collected; killed on drop.
struct Server {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Runs `ravelin serve --data-dir DATA_DIR --listen 127.0.0.1:0 SHELL_ARGS` through
    /// `sh`, so that `SHELL_ARGS` can open descriptors such as `3<file`. `$1` in
    /// `shell_args` is `extra`.
    fn start(data_dir: &Path, shell_args: &str, extra: &Path) -> Server {
        let script =
            format!("exec \"$0\" serve --data-dir \"$DATA_DIR\" --listen 127.0.0.1:0 {shell_args}");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary())
            .arg(extra)
            .env("DATA_DIR", data_dir)
            .env_remove("RAVELIN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = pipe.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        Server { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the server listens; panics with its log if it exits or times out.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.stderr().contains(READY_MARKER) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!("the server exited with {status}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the server was not ready within {READY_TIMEOUT:?}:\n{}",
            self.stderr()
        );
    }

    /// Waits for the process to exit by itself and returns its log.
    fn wait_exit(mut self) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                std::thread::sleep(Duration::from_millis(100));
                return self.stderr();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server kept running:\n{}", self.stderr());
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("RAVELIN_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `ravelin SCRIPT_ARGS` through `sh`, with `$1` set to `extra`.
fn run_shell(script_args: &str, extra: &Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec \"$0\" {script_args}"))
        .arg(binary())
        .arg(extra)
        .env_remove("RAVELIN_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Creates a data directory through a first start and stops the server.
fn first_start(data_dir: &Path) {
    let mut server = Server::start(data_dir, "", Path::new(""));
    server.wait_ready();
    server.stop();
}

fn database(data_dir: &Path) -> PathBuf {
    data_dir.join("db").join("ravelin.db")
}

fn opens(data_dir: &Path, key: &MasterKey) -> bool {
    Store::open(&database(data_dir), key).is_ok()
}

#[test]
fn serve_reads_key_from_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let key_path = dir.path().join("secret.key");
    MasterKey::generate()
        .unwrap()
        .write_new_file(&key_path)
        .unwrap();

    let mut server = Server::start(&data_dir, "--key-fd 3 3<\"$1\"", &key_path);
    server.wait_ready();
    // The descriptor is closed once read: no descriptor of the server refers to it.
    let pid = server.child.id();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap_or_default();
        assert_ne!(target, key_path, "the server still holds the key file open");
    }
    server.stop();

    // No key file was written, and the descriptor's key opens the database.
    assert!(!data_dir.join("master.key").exists());
    assert!(opens(&data_dir, &MasterKey::read_file(&key_path).unwrap()));

    // The next start reads the key from the descriptor again.
    let mut server = Server::start(&data_dir, "--key-fd 3 3<\"$1\"", &key_path);
    server.wait_ready();
    server.stop();
}

#[test]
fn wrong_key_on_descriptor_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    first_start(&data_dir);
    let wrong = dir.path().join("wrong.key");
    MasterKey::generate()
        .unwrap()
        .write_new_file(&wrong)
        .unwrap();

    let log = Server::start(&data_dir, "--key-fd 3 3<\"$1\"", &wrong).wait_exit();
    assert!(log.contains("cannot decrypt the database"), "{log}");
    assert!(log.contains("file descriptor 3"), "{log}");
}

#[test]
fn closed_or_malformed_descriptor_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");

    let log = Server::start(&data_dir, "--key-fd 7", Path::new("")).wait_exit();
    assert!(log.contains("file descriptor 7 is not open"), "{log}");
    assert!(
        !data_dir.exists(),
        "a failed start created {}",
        data_dir.display()
    );

    let malformed = dir.path().join("malformed");
    std::fs::write(&malformed, "not a key\n").unwrap();
    let log = Server::start(&data_dir, "--key-fd 3 3<\"$1\"", &malformed).wait_exit();
    assert!(log.contains("file descriptor 3 is malformed"), "{log}");

    let output = run(&["serve", "--key-fd", "0"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("3 or higher"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn key_rotate_command_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    first_start(&data_dir);
    let key_file = data_dir.join("master.key");
    let old_key = MasterKey::read_file(&key_file).unwrap();
    let data = data_dir.to_str().unwrap();

    let output = run(&["key", "rotate", "--data-dir", data]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("master.key.old"), "{stderr}");

    let new_key = MasterKey::read_file(&key_file).unwrap();
    assert!(!new_key.same_as(&old_key));
    assert!(MasterKey::read_file(&data_dir.join("master.key.old"))
        .unwrap()
        .same_as(&old_key));
    assert!(!opens(&data_dir, &old_key));
    assert!(opens(&data_dir, &new_key));

    // With the old key on a descriptor and the new one written to a chosen file.
    let old_copy = dir.path().join("current.key");
    new_key.write_new_file(&old_copy).unwrap();
    let chosen = dir.path().join("next.key");
    let output = run_shell(
        &format!(
            "key rotate --data-dir {data} --key-fd 3 --new-key-file {} 3<\"$1\"",
            chosen.display()
        ),
        &old_copy,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let next_key = MasterKey::read_file(&chosen).unwrap();
    assert!(opens(&data_dir, &next_key));
    assert!(!opens(&data_dir, &new_key));
    // The key file is not touched when the key comes from a descriptor.
    assert!(MasterKey::read_file(&key_file).unwrap().same_as(&new_key));
}

#[test]
fn key_rotate_refused_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = Server::start(&data_dir, "", Path::new(""));
    server.wait_ready();
    let key_before = std::fs::read(data_dir.join("master.key")).unwrap();

    let output = run(&["key", "rotate", "--data-dir", data_dir.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("is in use by process"), "{stderr}");
    assert!(stderr.contains("ravelin serve"), "{stderr}");
    assert_eq!(
        std::fs::read(data_dir.join("master.key")).unwrap(),
        key_before
    );
    assert!(!data_dir.join("master.key.new").exists());

    let restore = run(&[
        "restore",
        dir.path().join("no-backup").to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(!restore.status.success());
    assert!(text(&restore.stderr).contains("is in use by process"));
    server.stop();
}

#[test]
fn server_start_settles_interrupted_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    first_start(&data_dir);
    let key_files = KeyFiles::new(data_dir.join("master.key"));

    for stop_after in RotationStep::ALL {
        let old_key = MasterKey::read_file(key_files.current()).unwrap();
        let new_key = MasterKey::generate().unwrap();
        let result = rotate(
            &database(&data_dir),
            Some(&key_files),
            &old_key,
            &new_key,
            &mut |_| {},
            &mut |step| {
                if step == stop_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert!(result.is_err(), "{stop_after:?}");

        let mut server = Server::start(&data_dir, "", Path::new(""));
        server.wait_ready();
        let log = server.stderr();
        server.stop();

        let committed = matches!(
            stop_after,
            RotationStep::DatabaseReplaced | RotationStep::KeyFileReplaced
        );
        let expected_log = match stop_after {
            RotationStep::KeyFileReplaced => None,
            RotationStep::DatabaseReplaced => Some("finished an interrupted key rotation"),
            _ => Some("undid an interrupted key rotation"),
        };
        if let Some(expected) = expected_log {
            assert!(log.contains(expected), "{stop_after:?}:\n{log}");
        }
        let current = MasterKey::read_file(key_files.current()).unwrap();
        let expected_key = if committed { &new_key } else { &old_key };
        assert!(current.same_as(expected_key), "{stop_after:?}");
        assert!(!key_files.pending().exists(), "{stop_after:?}");
        assert!(opens(&data_dir, &current), "{stop_after:?}");
    }
}
