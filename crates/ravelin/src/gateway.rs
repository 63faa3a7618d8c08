//! `ravelin gateway`: serve's HTTPS front (TLS, identities, tokens, policy, limits,
//! validation, audit, metrics) before an upstream Chroma instead of the embedded
//! engine.
//!
//! No database is opened and no master key is read. The data directory contains only
//! the development PKI, the policy and the audit log. Nothing else is kept between
//! requests, so several gateways can run before one Chroma.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::{Context, Result};
use server::audit::AuditLog;
use server::throttle::Throttle;
use server::tls::{ServerTls, TlsPaths};
use server::upstream::{Upstream, UpstreamSettings};
use server::{AppState, Backend, FrontSettings, Metrics, SharedPolicy, TokenStore};
use tokio::sync::watch;

use crate::bootstrap;
use crate::config::Settings;
use crate::serve::{
    bind_metrics, confine, print_connection_help, reload_on_sighup, shutdown_signal, wait_for_stop,
};

pub fn run(settings: Settings, upstream_settings: UpstreamSettings) -> Result<()> {
    // Bound first, so a port in use fails before a first start creates anything.
    let listener = TcpListener::bind(settings.listen).with_context(|| {
        format!(
            "cannot listen on {}; choose another address with --listen or `listen` in the configuration file",
            settings.listen
        )
    })?;
    let address = listener.local_addr()?;
    let metrics_listener = match settings.metrics_listen {
        Some(metrics_address) => Some(bind_metrics(metrics_address)?),
        None => None,
    };

    let upstream = Upstream::new(&upstream_settings, settings.limits.clone())
        .context("invalid upstream settings; see the [upstream] section in docs/gateway.md")?;
    tracing::info!(url = %upstream_settings.url, address = %upstream.address(), "forwarding to the upstream Chroma");
    let policy = bootstrap::prepare_front(&settings)?;

    let tls = Arc::new(ServerTls::load(TlsPaths {
        certificate: settings.tls_certificate.clone(),
        key: settings.tls_key.clone(),
        client_ca: settings.client_ca.clone(),
        crl: settings.crl.clone(),
        certificate_optional: settings
            .tokens
            .as_ref()
            .is_some_and(|tokens| tokens.without_certificate),
    })?);
    let tokens = match &settings.tokens {
        Some(token_settings) => {
            let store = TokenStore::open(token_settings.clone()).map_err(anyhow::Error::msg)?;
            if token_settings.without_certificate {
                tracing::warn!("bearer tokens are accepted without a client certificate");
            }
            Some(store)
        }
        None => None,
    };
    let audit = AuditLog::open(&settings.audit_log)
        .with_context(|| format!("cannot open the audit log {}", settings.audit_log.display()))?;

    // Everything is open, bound and resolved, and the process has one thread: confine
    // it before any thread starts, with TCP connections allowed to the upstream's port
    // only. The worker count is read first because it comes from cgroup files that the
    // sandbox makes unreadable.
    let worker_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut ports = vec![address.port()];
    ports.extend(metrics_listener.as_ref().map(|(_, bound)| bound.port()));
    let sandbox = confine(&settings, &ports, &[upstream.address().port()])?;

    let upstream = Arc::new(upstream);
    let metrics = Arc::new(Metrics::new());
    metrics.set_sandbox(&sandbox);
    let state = Arc::new(AppState {
        backend: Backend::Upstream(Arc::clone(&upstream)),
        policy: SharedPolicy::new(policy),
        tokens,
        audit: Some(audit),
        throttle: Throttle::new(settings.throttle),
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            settings.front.max_buffered_body_bytes,
        )),
        settings: FrontSettings {
            allow_reset: settings.allow_reset,
            max_body_bytes: settings.max_body_bytes,
            ..settings.front.clone()
        },
        metrics: Arc::clone(&metrics),
    });
    if settings.allow_reset {
        tracing::warn!("POST /api/v2/reset is enabled: a principal with a server-wide admin grant can delete everything on the upstream");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        reload_on_sighup(
            Arc::clone(&state),
            Arc::clone(&tls),
            settings.policy.clone(),
        );

        // The gateway starts whether or not the upstream is up, since it keeps no
        // state; a failed first contact is only logged.
        let probe = Arc::clone(&upstream);
        tokio::spawn(async move {
            match probe.heartbeat().await {
                Ok(()) => tracing::info!(address = %probe.address(), "the upstream Chroma responded to a heartbeat"),
                Err(error) => tracing::warn!(address = %probe.address(), %error, "the upstream Chroma failed a heartbeat; requests fail with 502 until it responds"),
            }
        });

        let (stop, stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let signal_stop = Arc::clone(&stop);
        tokio::spawn(async move {
            shutdown_signal().await;
            signal_stop.send_replace(true);
        });

        let metrics_task = metrics_listener.map(|(metrics_listener, metrics_address)| {
            tracing::info!("serving Prometheus metrics on http://{metrics_address}/metrics");
            tokio::spawn(server::metrics::serve_metrics(
                metrics_listener,
                metrics,
                None,
                wait_for_stop(stopped.clone()),
            ))
        });

        tracing::info!("listening on https://{address} (TLS 1.3, client certificates required), forwarding to {}", upstream_settings.url);
        print_connection_help(&settings, address);
        let served = server::serve(listener, tls, state, wait_for_stop(stopped)).await;

        stop.send_replace(true);
        if let Some(task) = metrics_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "the metrics listener failed"),
                Err(error) => tracing::error!(%error, "the metrics listener task failed"),
            }
        }
        served
    })?;
    tracing::info!("stopped");
    Ok(())
}
