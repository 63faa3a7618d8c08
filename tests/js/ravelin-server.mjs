// Runs the real `ravelin serve` binary for the JavaScript tests, in the same way as
// tests/python/conftest.py does for the Python tests.
//
// Environment: RAVELIN_BIN is the server binary (default
// <repo>/target/release/ravelin).

import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export const RAVELIN_BIN =
  process.env.RAVELIN_BIN || join(REPO, "target", "release", "ravelin");

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const POLL_INTERVAL_MS = 50;
const START_ATTEMPTS = 3;

// Lines that Rust's runtime writes to stderr when a thread panics or the process aborts.
export const CRASH_MARKERS = ["panicked", "fatal runtime error", "has overflowed its stack"];

// The server colors its log even when stderr is not a terminal.
const ANSI_ESCAPE = /\x1b\[[0-9;]*m/g;

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolveListen, rejectListen) => {
    server.once("error", rejectListen);
    server.listen(0, "127.0.0.1", resolveListen);
  });
  const { port } = server.address();
  await new Promise((resolveClose) => server.close(resolveClose));
  return port;
}

/** One `ravelin serve` process on 127.0.0.1 with a fresh data dir and its output in memory. */
export class RavelinServer {
  constructor(dataDir, port) {
    this.dataDir = dataDir;
    this.port = port;
    this.args = ["serve", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`];
    this.output = "";
    this.exitCode = null;
    this.exitSignal = null;
    this.stopRequested = false;

    this.process = spawn(RAVELIN_BIN, this.args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_BACKTRACE: process.env.RUST_BACKTRACE ?? "1" },
    });
    this.exited = new Promise((resolveExit) => {
      this.process.once("exit", (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolveExit();
      });
    });
    // A spawn failure (such as a missing binary) emits "error" instead of "exit".
    this.spawnError = null;
    this.process.once("error", (error) => {
      this.spawnError = error;
    });
    for (const stream of [this.process.stdout, this.process.stderr]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        this.output += chunk;
      });
    }
  }

  get isRunning() {
    return this.exitCode === null && this.exitSignal === null && this.spawnError === null;
  }

  /** The server's stdout and stderr so far, without color codes. */
  get log() {
    return this.output.replace(ANSI_ESCAPE, "");
  }

  get command() {
    return [RAVELIN_BIN, ...this.args].join(" ");
  }

  /** Paths of the development PKI that the server creates in its data dir on first start. */
  get pki() {
    const dir = join(this.dataDir, "pki");
    return {
      ca: join(dir, "ca.pem"),
      cert: join(dir, "clients", "admin.pem"),
      key: join(dir, "clients", "admin.key"),
    };
  }

  /**
   * Waits until the server logs that it listens on its port.
   *
   * Throws if the process exits first or does not log it within `timeoutMs`.
   */
  async waitReady(timeoutMs = READY_TIMEOUT_MS) {
    const readyLine = `listening on https://127.0.0.1:${this.port}`;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.log.includes(readyLine)) {
        return;
      }
      if (!this.isRunning) {
        throw new ServerExitedError(this);
      }
      await sleep(POLL_INTERVAL_MS);
    }
    throw new Error(
      `timed out after ${timeoutMs} ms waiting for \`${this.command}\` to log ` +
        `"${readyLine}"; output:\n${this.log.slice(-4000)}`,
    );
  }

  /**
   * Waits until the server's log contains `text`, for at most `timeoutMs`.
   *
   * Returns whether it did.
   */
  async waitForLog(text, timeoutMs = 5_000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.log.includes(text)) {
        return true;
      }
      await sleep(POLL_INTERVAL_MS);
    }
    return this.log.includes(text);
  }

  /**
   * Sends SIGTERM, then SIGKILL if the process is still running after `timeoutMs`.
   *
   * Returns true if the process ended within `timeoutMs` of SIGTERM.
   */
  async stop(timeoutMs = STOP_TIMEOUT_MS) {
    this.stopRequested = true;
    if (!this.isRunning) {
      return true;
    }
    this.process.kill("SIGTERM");
    if (await this.waitExit(timeoutMs)) {
      return true;
    }
    this.process.kill("SIGKILL");
    await this.waitExit(timeoutMs);
    return false;
  }

  async waitExit(timeoutMs) {
    const timedOut = Symbol("timed out");
    // An unreferenced timer, so that a pending timeout does not keep Node running.
    const timeout = sleep(timeoutMs, timedOut, { ref: false });
    const winner = await Promise.race([this.exited, timeout]);
    return winner !== timedOut;
  }
}

/** A server process that ended before it logged that it listens. */
export class ServerExitedError extends Error {
  constructor(server) {
    const reason = server.spawnError
      ? `failed to start (${server.spawnError.message})`
      : `exited with code ${server.exitCode} (signal ${server.exitSignal}) before it listened`;
    super(`\`${server.command}\` ${reason}; output:\n${server.log.slice(-4000)}`);
    this.server = server;
  }
}

/**
 * Starts `ravelin serve` on a free port with a new data dir under `root` and waits until
 * it listens.
 *
 * A start that fails because the port was taken in the meantime is retried on another
 * port, at most START_ATTEMPTS times in all.
 */
export async function startServer(root) {
  if (!existsSync(RAVELIN_BIN)) {
    throw new Error(
      `ravelin binary not found at ${RAVELIN_BIN}: build it with ` +
        "`cargo build --release -p ravelin` or set RAVELIN_BIN",
    );
  }
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const server = new RavelinServer(join(root, `data-${attempt}`), await freePort());
    try {
      await server.waitReady();
      return server;
    } catch (error) {
      await server.stop();
      const portTaken = error instanceof ServerExitedError && server.log.includes("in use");
      if (!portTaken || attempt === START_ATTEMPTS) {
        throw error;
      }
    }
  }
  throw new Error("unreachable");
}

/**
 * Stops `server` and describes each way it failed: a crash marker in its output, an exit
 * that no test requested, or no exit within the timeout after SIGTERM.
 *
 * Returns an empty list for a server that ran and stopped cleanly.
 */
export async function stopAndCheckServer(server) {
  const problems = [];
  const exitedByItself = !server.stopRequested && !server.isRunning;
  const stoppedInTime = await server.stop();
  if (exitedByItself) {
    problems.push(`exited by itself with code ${server.exitCode} (signal ${server.exitSignal})`);
  }
  if (!stoppedInTime) {
    problems.push(`was still running ${STOP_TIMEOUT_MS} ms after SIGTERM and was killed`);
  }
  const log = server.log;
  for (const marker of CRASH_MARKERS) {
    if (log.includes(marker)) {
      problems.push(`wrote "${marker}" to its output`);
    }
  }
  return problems;
}

/**
 * Creates a temporary folder for data dirs, removed by `removeTempRoot`. A server
 * started as root serves as nobody, which must pass through this folder (created with
 * mode 0700) to reach its data directory, hence the search bit for others.
 */
export function makeTempRoot() {
  const root = mkdtempSync(join(tmpdir(), "ravelin-js-"));
  chmodSync(root, 0o711);
  return root;
}

export function removeTempRoot(root) {
  rmSync(root, { recursive: true, force: true });
}

/** Reads the CA, certificate and key files of `pki` (as returned by `RavelinServer.pki`). */
export function readPki(pki) {
  return {
    ca: readFileSync(pki.ca),
    cert: readFileSync(pki.cert),
    key: readFileSync(pki.key),
  };
}
