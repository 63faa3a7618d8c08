#![allow(clippy::unwrap_used)] // A panic is a test failure.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use engine::EngineStats;

use super::*;

/// One sample line: the metric name, its labels and its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format 0.0.4 as far as `render` uses it, and checks its
/// rules: each family has one `# HELP` and one `# TYPE` before its samples, every
/// sample belongs to the family declared last, and each value is a number.
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "the output ends with a line feed");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();

    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty(), "help of {name}");
            assert!(
                helps.insert(name.to_string(), help.to_string()).is_none(),
                "second # HELP for {name}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind} of {name}"
            );
            assert!(helps.contains_key(name), "# HELP before # TYPE for {name}");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "second # TYPE for {name}"
            );
            current = Some(name.to_string());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");

        let sample = parse_sample(line);
        let family = current.as_deref().unwrap();
        let allowed = if types[family] == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| sample.name == format!("{family}{suffix}"))
        } else {
            sample.name == family
        };
        assert!(allowed, "sample {} under # TYPE {family}", sample.name);
        samples.push(sample);
    }
    samples
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').unwrap();
            (name, parse_labels(inner))
        }
    };
    assert!(
        name.chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_'),
        "metric name {name:?}"
    );
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// Parses `a="x",b="y"`, with `\\`, `\"` and `\n` escapes in the values.
fn parse_labels(inner: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (label, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut characters = after.char_indices();
        let end = loop {
            let (position, character) = characters.next().unwrap();
            match character {
                '\\' => match characters.next().unwrap().1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                '"' => break position,
                other => value.push(other),
            }
        };
        labels.insert(label.to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// Returns the value of the one sample with this name and these labels.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|sample| {
            sample.name == name
                && sample.labels.len() == labels.len()
                && labels.iter().all(|(label, value)| {
                    sample.labels.get(*label).map(String::as_str) == Some(*value)
                })
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} appears twice");
    matching.first().map(|sample| sample.value)
}

fn render(metrics: &Metrics) -> Vec<Sample> {
    parse(&metrics.render_with(&EngineStats::default()))
}

#[test]
fn fresh_metrics_render_valid_text() {
    let metrics = Metrics::new();
    let samples = render(&metrics);

    assert_eq!(
        value(
            &samples,
            "ravelin_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let start = value(&samples, "ravelin_start_time_seconds", &[]).unwrap();
    assert!(start > 1.6e9, "start time {start}");
    assert_eq!(value(&samples, "ravelin_open_connections", &[]), Some(0.0));
    assert_eq!(
        value(
            &samples,
            "ravelin_authentication_failures_total",
            &[("reason", "token")]
        ),
        Some(0.0)
    );
    assert!(
        !samples
            .iter()
            .any(|sample| sample.name == "ravelin_requests_total"),
        "no request series before the first request"
    );
}

#[test]
fn sandbox_gauges_follow_status() {
    let metrics = Metrics::new();
    let names = [
        "ravelin_sandbox_privileges_dropped",
        "ravelin_sandbox_no_new_privs",
        "ravelin_sandbox_landlock_fully_enforced",
        "ravelin_sandbox_seccomp",
        "ravelin_sandbox_landlock_abi",
    ];
    let before = render(&metrics);
    for name in names {
        assert_eq!(value(&before, name, &[]), Some(0.0), "{name} before apply");
    }

    metrics.set_sandbox(&sandbox::Status {
        user: "nobody".into(),
        uid: 65534,
        gid: 65534,
        privileges_dropped: true,
        no_new_privs: true,
        landlock_abi: 6,
        landlock_fully_enforced: true,
        seccomp: true,
    });
    let after = render(&metrics);
    for name in &names[..4] {
        assert_eq!(value(&after, name, &[]), Some(1.0), "{name}");
    }
    assert_eq!(
        value(&after, "ravelin_sandbox_landlock_abi", &[]),
        Some(6.0)
    );
}

#[test]
fn engine_totals_rendered_as_gauges() {
    let stats = EngineStats {
        tenants: 2,
        databases: 3,
        collections: 4,
        records: 5,
        indexed_collections: 1,
        index_slots: 7,
        index_live_slots: 6,
    };
    let samples = parse(&Metrics::new().render_with(&stats));

    for (name, expected) in [
        ("ravelin_tenants", 2.0),
        ("ravelin_databases", 3.0),
        ("ravelin_collections", 4.0),
        ("ravelin_records", 5.0),
        ("ravelin_indexed_collections", 1.0),
        ("ravelin_index_slots", 7.0),
        ("ravelin_index_live_slots", 6.0),
    ] {
        assert_eq!(value(&samples, name, &[]), Some(expected), "{name}");
    }
}

#[test]
fn request_counters_move() {
    let metrics = Metrics::new();
    metrics.record_request("records.query", 200, Duration::from_millis(3));
    metrics.record_request("records.query", 200, Duration::from_millis(4));
    metrics.record_request("records.query", 404, Duration::from_millis(1));
    metrics.record_request("collections.create", 200, Duration::from_millis(2));
    let samples = render(&metrics);

    let requests = |route: &str, status: &str| {
        value(
            &samples,
            "ravelin_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("records.query", "200"), Some(2.0));
    assert_eq!(requests("records.query", "404"), Some(1.0));
    assert_eq!(requests("collections.create", "200"), Some(1.0));
    assert_eq!(requests("collections.create", "404"), None);

    let count = value(
        &samples,
        "ravelin_request_duration_seconds_count",
        &[("route", "records.query")],
    );
    assert_eq!(count, Some(3.0));
    let sum = value(
        &samples,
        "ravelin_request_duration_seconds_sum",
        &[("route", "records.query")],
    )
    .unwrap();
    assert!((sum - 0.008).abs() < 1e-9, "sum {sum}");
}

#[test]
fn histogram_buckets_cumulative() {
    let metrics = Metrics::new();
    let durations = [
        Duration::from_micros(100),
        Duration::from_micros(500), // exactly the first bound, so in its bucket
        Duration::from_millis(7),
        Duration::from_millis(300),
        Duration::from_secs(3),
        Duration::from_secs(60), // past the last bound
    ];
    for duration in durations {
        metrics.record_request("records.get", 200, duration);
    }
    let samples = render(&metrics);

    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|sample| {
            sample.name == "ravelin_request_duration_seconds_bucket"
                && sample.labels["route"] == "records.get"
        })
        .map(|sample| {
            let bound = match sample.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                other => other.parse().unwrap(),
            };
            (bound, sample.value)
        })
        .collect();
    assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
    for pair in buckets.windows(2) {
        assert!(pair[0].0 < pair[1].0, "bounds increase: {pair:?}");
        assert!(pair[0].1 <= pair[1].1, "counts are cumulative: {pair:?}");
    }

    // Each bucket counts the durations at or below its bound.
    for (bound, count) in &buckets {
        let expected = durations
            .iter()
            .filter(|duration| duration.as_secs_f64() <= *bound)
            .count();
        assert_eq!(*count, expected as f64, "bucket le={bound}");
    }

    let infinite = buckets.last().unwrap();
    assert_eq!(infinite.0, f64::INFINITY);
    let count = value(
        &samples,
        "ravelin_request_duration_seconds_count",
        &[("route", "records.get")],
    );
    assert_eq!(Some(infinite.1), count, "le=\"+Inf\" equals _count");
}

#[test]
fn unknown_route_names_bounded() {
    let metrics = Metrics::new();
    for route in [
        "not.a.route",
        "another one",
        "records.query\"}",
        OTHER_ROUTE,
    ] {
        metrics.record_request(route, 500, Duration::from_millis(1));
    }
    let samples = render(&metrics);

    assert_eq!(
        value(
            &samples,
            "ravelin_requests_total",
            &[("route", OTHER_ROUTE), ("status", "500")]
        ),
        Some(4.0)
    );
    let routes: Vec<&str> = samples
        .iter()
        .filter_map(|sample| sample.labels.get("route"))
        .map(String::as_str)
        .collect();
    assert!(
        routes.iter().all(|route| *route == OTHER_ROUTE),
        "only route=\"other\" appears: {routes:?}"
    );
}

#[test]
fn every_known_route_has_own_label() {
    let metrics = Metrics::new();
    for route in ROUTES {
        metrics.record_request(route, 200, Duration::from_millis(1));
    }
    let samples = render(&metrics);

    for route in ROUTES {
        assert_eq!(
            value(
                &samples,
                "ravelin_requests_total",
                &[("route", *route), ("status", "200")]
            ),
            Some(1.0),
            "route {route}"
        );
    }
}

#[test]
fn security_counters_move() {
    let metrics = Metrics::new();
    metrics.authentication_failure(AuthFailure::Token);
    metrics.authentication_failure(AuthFailure::Token);
    metrics.authentication_failure(AuthFailure::NoCertificate);
    metrics.denial(Denial::Hidden);
    metrics.tls_handshake_failure(HandshakeFailure::PlaintextHttp);
    let samples = render(&metrics);

    let failures = |reason| {
        value(
            &samples,
            "ravelin_authentication_failures_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(failures("token"), Some(2.0));
    assert_eq!(failures("no_certificate"), Some(1.0));
    assert_eq!(failures("certificate_identity"), Some(0.0));
    let denials = |kind| {
        value(
            &samples,
            "ravelin_authorization_denials_total",
            &[("kind", kind)],
        )
    };
    assert_eq!(denials("hidden"), Some(1.0));
    assert_eq!(denials("forbidden"), Some(0.0));
    let handshakes = |reason| {
        value(
            &samples,
            "ravelin_tls_handshake_failures_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(handshakes("plaintext_http"), Some(1.0));
    assert_eq!(handshakes("timeout"), Some(0.0));
}

#[test]
fn open_connections_gauge() {
    let metrics = Arc::new(Metrics::new());
    metrics.connection_opened();
    let tracked = metrics.track_connection();
    assert_eq!(
        value(&render(&metrics), "ravelin_open_connections", &[]),
        Some(2.0)
    );

    drop(tracked);
    metrics.connection_closed();
    metrics.connection_closed(); // one more than opened: stays at zero
    assert_eq!(
        value(&render(&metrics), "ravelin_open_connections", &[]),
        Some(0.0)
    );
}

#[test]
fn label_values_escaped() {
    let mut out = String::new();
    sample(&mut out, "m", &[("a", "x\\y\"z\nw")], 1);
    assert_eq!(out, "m{a=\"x\\\\y\\\"z\\nw\"} 1\n");
    let parsed = parse_sample(out.trim_end());
    assert_eq!(parsed.labels["a"], "x\\y\"z\nw");
}
