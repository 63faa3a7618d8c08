//! Prometheus metrics: counters, gauges and latency histograms, rendered in the text
//! exposition format 0.0.4 and served by [`serve_metrics`] on a listener of their own.
//!
//! [`Metrics`] keeps every series in atomics, so recording from a request handler or a
//! blocking thread costs a few atomic additions. The one exception is the request
//! counter, whose (route, status) pairs live in a map behind a mutex held for one
//! insert. Every label value comes from a fixed set in this module or from the HTTP
//! status, never from a request: tenant, database and collection names do not appear,
//! and the engine gauges are totals over all collections. So the number of series is
//! bounded, and a scrape reveals no user data.
//!
//! | metric | type | labels |
//! |--------|------|--------|
//! | `ravelin_requests_total` | counter | `route`, `status` |
//! | `ravelin_request_duration_seconds` | histogram | `route` |
//! | `ravelin_authentication_failures_total` | counter | `reason` |
//! | `ravelin_authorization_denials_total` | counter | `kind` |
//! | `ravelin_tls_handshake_failures_total` | counter | `reason` |
//! | `ravelin_open_connections` | gauge | |
//! | `ravelin_tenants`, `ravelin_databases`, `ravelin_collections`, `ravelin_records` | gauge | |
//! | `ravelin_indexed_collections`, `ravelin_index_slots`, `ravelin_index_live_slots` | gauge | |
//! | `ravelin_sandbox_privileges_dropped`, `ravelin_sandbox_no_new_privs`, `ravelin_sandbox_landlock_fully_enforced`, `ravelin_sandbox_seccomp` | gauge, 0 or 1 | |
//! | `ravelin_sandbox_landlock_abi` | gauge | |
//! | `ravelin_build_info` | gauge, always 1 | `version` |
//! | `ravelin_start_time_seconds` | gauge | |

mod listener;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::{Engine, EngineStats};

pub use listener::serve_metrics;

/// The route names [`Metrics::record_request`] counts under their own label. Any other
/// name is counted as [`OTHER_ROUTE`].
pub const ROUTES: &[&str] = &[
    "heartbeat",
    "version",
    "pre_flight_checks",
    "healthcheck",
    "auth.identity",
    "reset",
    "tenants.create",
    "tenants.get",
    "databases.list",
    "databases.create",
    "databases.get",
    "databases.delete",
    "collections.list",
    "collections.count",
    "collections.create",
    "collections.get",
    "collections.get_by_id",
    "collections.update",
    "collections.delete",
    "records.add",
    "records.upsert",
    "records.update",
    "records.delete",
    "records.count",
    "records.get",
    "records.query",
    "unsupported",
    "unknown_path",
];

/// The `route` label of requests whose route name is not in [`ROUTES`].
pub const OTHER_ROUTE: &str = "other";

/// Upper bounds of the latency histogram buckets: nanoseconds, and the `le` label in
/// seconds. A request that takes exactly a bound falls into that bucket.
const LATENCY_BUCKETS: [(u64, &str); 14] = [
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
    (10_000_000_000, "10"),
];

/// The reason a client was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Neither a client certificate nor a bearer token.
    NoCertificate,
    /// A verified certificate that names no usable principal.
    CertificateIdentity,
    /// A bearer token that is unknown, expired or revoked.
    Token,
}

impl AuthFailure {
    const ALL: [AuthFailure; 3] = [
        AuthFailure::NoCertificate,
        AuthFailure::CertificateIdentity,
        AuthFailure::Token,
    ];

    fn label(self) -> &'static str {
        match self {
            AuthFailure::NoCertificate => "no_certificate",
            AuthFailure::CertificateIdentity => "certificate_identity",
            AuthFailure::Token => "token",
        }
    }
}

/// A policy decision against an authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// A 403 response: the principal may see the resource but not do this to it.
    Forbidden,
    /// A 404 response: the principal's grants do not reach the resource at all.
    Hidden,
}

impl Denial {
    const ALL: [Denial; 2] = [Denial::Forbidden, Denial::Hidden];

    fn label(self) -> &'static str {
        match self {
            Denial::Forbidden => "forbidden",
            Denial::Hidden => "hidden",
        }
    }
}

/// The reason a connection closed before its TLS handshake completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    Timeout,
    /// A TLS error, such as a certificate the client CA did not sign.
    Error,
    /// A plaintext HTTP request on the TLS port.
    PlaintextHttp,
}

impl HandshakeFailure {
    const ALL: [HandshakeFailure; 3] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Error,
        HandshakeFailure::PlaintextHttp,
    ];

    fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Error => "error",
            HandshakeFailure::PlaintextHttp => "plaintext_http",
        }
    }
}

/// The server's metrics, shared in an `Arc`. Every method takes `&self`.
pub struct Metrics {
    /// Request counts by index into [`ROUTES`] (or `ROUTES.len()` for
    /// [`OTHER_ROUTE`]) and HTTP status.
    requests: Mutex<BTreeMap<(usize, u16), u64>>,
    /// One histogram per entry of [`ROUTES`], then one for [`OTHER_ROUTE`].
    latencies: Vec<Histogram>,
    /// Set once an unknown route name was logged, so the warning is not repeated.
    unknown_route_logged: AtomicBool,
    authentication_failures: [AtomicU64; AuthFailure::ALL.len()],
    denials: [AtomicU64; Denial::ALL.len()],
    handshake_failures: [AtomicU64; HandshakeFailure::ALL.len()],
    open_connections: AtomicU64,
    /// The sandbox status, set once the sandbox is applied.
    sandbox: OnceLock<sandbox::Status>,
    /// Seconds since the Unix epoch when the metrics were created.
    start_time: f64,
}

/// A latency histogram. Each bucket counts only its own range, so the count of all
/// requests is the sum of the buckets, and rendering makes them cumulative.
struct Histogram {
    /// One counter per entry of [`LATENCY_BUCKETS`], then one for longer requests.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanoseconds: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanoseconds: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let nanoseconds = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|(bound, _)| nanoseconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Saturates instead of wrapping, after about 584 years of request time.
        let _ = self
            .sum_nanoseconds
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(sum.saturating_add(nanoseconds))
            });
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latencies: (0..=ROUTES.len()).map(|_| Histogram::new()).collect(),
            unknown_route_logged: AtomicBool::new(false),
            authentication_failures: std::array::from_fn(|_| AtomicU64::new(0)),
            denials: std::array::from_fn(|_| AtomicU64::new(0)),
            handshake_failures: std::array::from_fn(|_| AtomicU64::new(0)),
            open_connections: AtomicU64::new(0),
            sandbox: OnceLock::new(),
            start_time,
        }
    }

    /// Counts a request whose response had `status`, and records how long it took. A
    /// `route` that is not in [`ROUTES`] is counted as [`OTHER_ROUTE`], and the first
    /// such name is logged as a warning.
    pub fn record_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let index = self.route_index(route);
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((index, status))
            .or_insert(0) += 1;
        if let Some(histogram) = self.latencies.get(index) {
            histogram.observe(elapsed);
        }
    }

    pub fn authentication_failure(&self, reason: AuthFailure) {
        self.authentication_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn denial(&self, kind: Denial) {
        self.denials[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn tls_handshake_failure(&self, reason: HandshakeFailure) {
        self.handshake_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records what the sandbox enforces, for the `ravelin_sandbox_*` gauges, which
    /// are all 0 until then. Only the first call has an effect.
    pub fn set_sandbox(&self, status: &sandbox::Status) {
        let _ = self.sandbox.set(status.clone());
    }

    /// Counts a connection as open until [`Self::connection_closed`].
    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an open connection as closed. The gauge stops at zero, so a call without
    /// a matching [`Self::connection_opened`] cannot make it wrap.
    pub fn connection_closed(&self) {
        let _ = self
            .open_connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                Some(open.saturating_sub(1))
            });
    }

    /// Counts a connection as open until the returned guard is dropped, so every way
    /// out of a connection's task closes it.
    pub fn track_connection(self: &Arc<Self>) -> TrackedConnection {
        self.connection_opened();
        TrackedConnection(Arc::clone(self))
    }

    /// Renders every metric, with the engine's totals from [`Engine::stats`], in the
    /// Prometheus text format. Takes the engine's read locks, so call it from a
    /// blocking thread.
    pub fn render(&self, engine: &Engine) -> String {
        self.render_with(&engine.stats())
    }

    /// Renders every metric except the engine's totals, for a server without an
    /// engine.
    pub fn render_without_engine(&self) -> String {
        self.render_all(None)
    }

    /// Renders every metric with the given engine totals.
    pub(crate) fn render_with(&self, stats: &EngineStats) -> String {
        self.render_all(Some(stats))
    }

    fn render_all(&self, stats: Option<&EngineStats>) -> String {
        let mut out = String::with_capacity(8192);
        self.render_requests(&mut out);
        self.render_security(&mut out);
        self.render_sandbox(&mut out);
        if let Some(stats) = stats {
            render_engine(&mut out, stats);
        }

        header(
            &mut out,
            "ravelin_build_info",
            "gauge",
            "Always 1; the version label is the server's version.",
        );
        sample(
            &mut out,
            "ravelin_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        header(
            &mut out,
            "ravelin_start_time_seconds",
            "gauge",
            "When the server started, in seconds since the Unix epoch.",
        );
        sample(&mut out, "ravelin_start_time_seconds", &[], self.start_time);
        out
    }

    fn route_index(&self, route: &'static str) -> usize {
        if let Some(index) = ROUTES.iter().position(|known| *known == route) {
            return index;
        }
        if route != OTHER_ROUTE && !self.unknown_route_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                route,
                "route name missing from metrics::ROUTES; counting its requests as route=\"other\""
            );
        }
        ROUTES.len()
    }

    fn render_requests(&self, out: &mut String) {
        let counts: Vec<((usize, u16), u64)> = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, count)| (*key, *count))
            .collect();
        header(
            out,
            "ravelin_requests_total",
            "counter",
            "Requests answered, by route and HTTP status.",
        );
        for ((index, status), count) in counts {
            let status = status.to_string();
            sample(
                out,
                "ravelin_requests_total",
                &[("route", route_label(index)), ("status", &status)],
                count,
            );
        }

        header(
            out,
            "ravelin_request_duration_seconds",
            "histogram",
            "Time taken to answer a request, by route.",
        );
        for (index, histogram) in self.latencies.iter().enumerate() {
            let route = route_label(index);
            let buckets: Vec<u64> = histogram
                .buckets
                .iter()
                .map(|bucket| bucket.load(Ordering::Relaxed))
                .collect();
            let count: u64 = buckets.iter().sum();
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (bucket, (_, bound)) in buckets.iter().zip(LATENCY_BUCKETS) {
                cumulative += bucket;
                sample(
                    out,
                    "ravelin_request_duration_seconds_bucket",
                    &[("route", route), ("le", bound)],
                    cumulative,
                );
            }
            sample(
                out,
                "ravelin_request_duration_seconds_bucket",
                &[("route", route), ("le", "+Inf")],
                count,
            );
            let sum = histogram.sum_nanoseconds.load(Ordering::Relaxed) as f64 / 1e9;
            sample(
                out,
                "ravelin_request_duration_seconds_sum",
                &[("route", route)],
                sum,
            );
            sample(
                out,
                "ravelin_request_duration_seconds_count",
                &[("route", route)],
                count,
            );
        }
    }

    fn render_security(&self, out: &mut String) {
        header(
            out,
            "ravelin_authentication_failures_total",
            "counter",
            "Requests rejected because the client was not authenticated, by reason.",
        );
        for reason in AuthFailure::ALL {
            let count = self.authentication_failures[reason as usize].load(Ordering::Relaxed);
            sample(
                out,
                "ravelin_authentication_failures_total",
                &[("reason", reason.label())],
                count,
            );
        }

        header(
            out,
            "ravelin_authorization_denials_total",
            "counter",
            "Authenticated requests the policy denied: forbidden (403) or hidden (404).",
        );
        for kind in Denial::ALL {
            let count = self.denials[kind as usize].load(Ordering::Relaxed);
            sample(
                out,
                "ravelin_authorization_denials_total",
                &[("kind", kind.label())],
                count,
            );
        }

        header(
            out,
            "ravelin_tls_handshake_failures_total",
            "counter",
            "Connections closed before the TLS handshake completed, by reason.",
        );
        for reason in HandshakeFailure::ALL {
            let count = self.handshake_failures[reason as usize].load(Ordering::Relaxed);
            sample(
                out,
                "ravelin_tls_handshake_failures_total",
                &[("reason", reason.label())],
                count,
            );
        }

        header(
            out,
            "ravelin_open_connections",
            "gauge",
            "Client connections open on the API listener.",
        );
        sample(
            out,
            "ravelin_open_connections",
            &[],
            self.open_connections.load(Ordering::Relaxed),
        );
    }

    fn render_sandbox(&self, out: &mut String) {
        let unset = sandbox::Status::default();
        let status = self.sandbox.get().unwrap_or(&unset);
        let gauges = [
            (
                "ravelin_sandbox_privileges_dropped",
                "1 when the process serves with non-zero uids and gids and no capabilities.",
                u32::from(status.privileges_dropped),
            ),
            (
                "ravelin_sandbox_no_new_privs",
                "1 when no_new_privs is set, so no exec or setuid can raise privileges.",
                u32::from(status.no_new_privs),
            ),
            (
                "ravelin_sandbox_landlock_abi",
                "The Landlock ABI version the file and port rules use, 0 without Landlock.",
                status.landlock_abi,
            ),
            (
                "ravelin_sandbox_landlock_fully_enforced",
                "1 when the Landlock ABI enforces every file and TCP port rule.",
                u32::from(status.landlock_fully_enforced),
            ),
            (
                "ravelin_sandbox_seccomp",
                "1 when the seccomp system call filter is installed.",
                u32::from(status.seccomp),
            ),
        ];
        render_gauges(out, &gauges);
    }
}

/// Keeps a connection counted as open; dropping it counts the connection as closed.
pub struct TrackedConnection(Arc<Metrics>);

impl Drop for TrackedConnection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

fn route_label(index: usize) -> &'static str {
    ROUTES.get(index).copied().unwrap_or(OTHER_ROUTE)
}

fn render_engine(out: &mut String, stats: &EngineStats) {
    let gauges = [
        ("ravelin_tenants", "Tenants.", stats.tenants),
        (
            "ravelin_databases",
            "Databases in all tenants.",
            stats.databases,
        ),
        (
            "ravelin_collections",
            "Collections in all databases.",
            stats.collections,
        ),
        (
            "ravelin_records",
            "Records in all collections.",
            stats.records,
        ),
        (
            "ravelin_indexed_collections",
            "Collections with an HNSW index; the others answer queries by exact scan.",
            stats.indexed_collections,
        ),
        (
            "ravelin_index_slots",
            "Slots in all HNSW indexes, deleted ones included until compaction.",
            stats.index_slots,
        ),
        (
            "ravelin_index_live_slots",
            "Slots in all HNSW indexes that searches can return.",
            stats.index_live_slots,
        ),
    ];
    render_gauges(out, &gauges);
}

/// Writes gauges without labels, each as (name, help, value).
fn render_gauges(out: &mut String, gauges: &[(&str, &str, impl Display)]) {
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        sample(out, name, &[], value);
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric. `help` must not contain a
/// backslash or a line break, which the format would need escaped.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line, escaping the label values.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (position, (label, value)) in labels.iter().enumerate() {
            if position > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Escapes a label value as the text format requires: backslash, double quote and
/// line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}
