//! `ravelin gateway`: serve's HTTPS front (TLS, identities, tokens, policy, limits,
//! validation, audit, metrics) before an upstream Chroma instead of the embedded
//! engine.
//!
//! No database is opened and no master key is read. The data directory contains only
//! the development PKI, the policy and the audit log. Nothing else is kept between
//! requests, so several gateways can run before one Chroma.

use std::sync::Arc;

use anyhow::{Context, Result};
use server::upstream::{Upstream, UpstreamSettings};
use server::{Backend, Metrics};

use crate::bootstrap;
use crate::config::Settings;
use crate::serve::{
    async_runtime, confine, print_connection_help, reload_on_sighup, serve_until_signal,
    FrontFiles, Listeners,
};

pub fn run(settings: Settings, upstream_settings: UpstreamSettings) -> Result<()> {
    // Bound first, so a port in use fails before a first start creates anything.
    let listeners = Listeners::bind(&settings)?;

    let upstream = Upstream::new(&upstream_settings, settings.limits.clone())
        .context("invalid upstream settings; see the [upstream] section in docs/gateway.md")?;
    tracing::info!(url = %upstream_settings.url, address = %upstream.address(), "forwarding to the upstream Chroma");
    let policy = bootstrap::prepare_front(&settings)?;

    let front = FrontFiles::open(&settings)?;

    // Everything is open, bound and resolved, and the process has one thread: confine
    // it before any thread starts, with TCP connections allowed to the upstream's port
    // only. The worker count is read first because it comes from cgroup files that the
    // sandbox makes unreadable.
    let worker_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let sandbox = confine(&settings, &listeners.ports(), &[upstream.address().port()])?;

    let upstream = Arc::new(upstream);
    let metrics = Arc::new(Metrics::new());
    metrics.set_sandbox(&sandbox);
    let tls = Arc::clone(&front.tls);
    let state = front.into_state(
        &settings,
        Backend::Upstream(Arc::clone(&upstream)),
        policy,
        &metrics,
    );
    if settings.allow_reset {
        tracing::warn!("POST /api/v2/reset is enabled: a principal with a server-wide admin grant can delete everything on the upstream");
    }

    async_runtime(worker_threads)?.block_on(async {
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

        serve_until_signal(listeners.metrics, metrics, None, |shutdown| async {
            let address = listeners.api.local_addr()?;
            tracing::info!("listening on https://{address} (TLS 1.3, client certificates required), forwarding to {}", upstream_settings.url);
            print_connection_help(&settings, address);
            server::serve(listeners.api, tls, state, shutdown).await
        })
        .await
    })?;
    tracing::info!("stopped");
    Ok(())
}
