//! `ravelin serve`: startup in order, then the accept loop until a signal.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, Result};
use engine::{Engine, UpkeepWorker};
use sandbox::Sandbox;
use server::audit::AuditLog;
use server::throttle::Throttle;
use server::tls::{ServerTls, TlsPaths};
use server::{AppState, Backend, FrontSettings, Metrics, SharedPolicy, TokenStore};
use tokio::sync::watch;

use crate::bootstrap;
use crate::config::Settings;

/// How often index upkeep looks for indexes to build, compact or checkpoint.
const UPKEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves until a signal. `descriptor_key` is the master key already read from
/// `settings.key_fd`, if that is where it comes from.
pub fn run(settings: Settings, descriptor_key: Option<store::MasterKey>) -> Result<()> {
    // Bound first, so a port in use fails before a first start creates anything.
    let listeners = Listeners::bind(&settings)?;

    let prepared = bootstrap::prepare(&settings, descriptor_key)?;
    // Held until the process exits, after upkeep has stored its last checkpoints.
    let _database_lock = prepared.lock;

    let front = FrontFiles::open(&settings)?;
    let store = prepared.store;
    #[cfg(feature = "insecure-bench")]
    let store = if settings.insecure_bench {
        drop(store);
        let path = settings.data_dir.join("db").join("insecure-bench.db");
        tracing::warn!(path = %path.display(), "opening an unencrypted database: a benchmark build, never for real data");
        store::Store::open_unencrypted(&path)?
    } else {
        store
    };
    let engine =
        Engine::open(store, settings.limits.clone()).context("cannot load the database")?;

    // Everything is open and bound, and the process has one thread: confine it before
    // any thread starts. The worker count is read first because it comes from cgroup
    // files that the sandbox makes unreadable.
    let worker_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let sandbox = confine(&settings, &listeners.ports(), &[])?;

    let engine = Arc::new(engine);
    let upkeep = UpkeepWorker::start(Arc::clone(&engine), UPKEEP_PERIOD)
        .context("cannot start the index upkeep thread")?;

    let metrics = Arc::new(Metrics::new());
    metrics.set_sandbox(&sandbox);
    let tls = Arc::clone(&front.tls);
    let state = front.into_state(
        &settings,
        Backend::Engine(Arc::clone(&engine)),
        prepared.policy,
        &metrics,
    );
    if settings.allow_reset {
        tracing::warn!("POST /api/v2/reset is enabled: a principal with a server-wide admin grant can delete everything");
    }

    async_runtime(worker_threads)?.block_on(async {
        reload_on_sighup(
            Arc::clone(&state),
            Arc::clone(&tls),
            settings.policy.clone(),
        );
        #[cfg(feature = "sandbox-probe")]
        crate::probe::run_on_sigusr2(settings.data_dir.clone());
        serve_until_signal(listeners.metrics, metrics, Some(engine), |shutdown| {
            serve_api(listeners.api, tls, state, &settings, shutdown)
        })
        .await
    })?;
    let report = upkeep.stop();
    if report.failed > 0 {
        tracing::warn!(
            failed = report.failed,
            "some vector indexes have no current checkpoint; the next start replays their writes"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The sockets a front binds before anything else: the API listener and, when
/// configured, the metrics listener.
pub(crate) struct Listeners {
    pub api: TcpListener,
    pub metrics: Option<(TcpListener, SocketAddr)>,
}

impl Listeners {
    /// Binds both, so a port in use fails before a first start creates anything.
    pub fn bind(settings: &Settings) -> Result<Listeners> {
        let api = TcpListener::bind(settings.listen).with_context(|| {
            format!(
                "cannot listen on {}; choose another address with --listen or `listen` in the configuration file",
                settings.listen
            )
        })?;
        let metrics = match settings.metrics_listen {
            Some(address) => Some(bind_metrics(address)?),
            None => None,
        };
        Ok(Listeners { api, metrics })
    }

    /// Returns the bound ports, which the sandbox lets the process bind.
    pub fn ports(&self) -> Vec<u16> {
        let api = self.api.local_addr().map(|address| address.port());
        api.into_iter()
            .chain(self.metrics.as_ref().map(|(_, bound)| bound.port()))
            .collect()
    }
}

/// The files a front opens besides its backend: the TLS configuration, the token file and
/// the audit log.
pub(crate) struct FrontFiles {
    pub tls: Arc<ServerTls>,
    tokens: Option<TokenStore>,
    audit: AuditLog,
}

impl FrontFiles {
    pub fn open(settings: &Settings) -> Result<FrontFiles> {
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
        let audit = AuditLog::open(&settings.audit_log).with_context(|| {
            format!("cannot open the audit log {}", settings.audit_log.display())
        })?;
        Ok(FrontFiles { tls, tokens, audit })
    }

    /// Builds the state every request handler shares, around `backend`.
    pub fn into_state(
        self,
        settings: &Settings,
        backend: Backend,
        policy: auth::Policy,
        metrics: &Arc<Metrics>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            backend,
            policy: SharedPolicy::new(policy),
            tokens: self.tokens,
            audit: Some(self.audit),
            throttle: Throttle::new(settings.throttle),
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                settings.front.max_buffered_body_bytes,
            )),
            settings: FrontSettings {
                allow_reset: settings.allow_reset,
                max_body_bytes: settings.max_body_bytes,
                ..settings.front.clone()
            },
            metrics: Arc::clone(metrics),
        })
    }
}

/// Starts the async runtime; call it only after the sandbox is in force.
pub(crate) fn async_runtime(worker_threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `serve_api` and the metrics listener, if any, until SIGTERM or SIGINT, or until
/// the API listener fails. `serve_api` gets the future that completes at the stop.
pub(crate) async fn serve_until_signal<Served>(
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    metrics: Arc<Metrics>,
    engine: Option<Arc<Engine>>,
    serve_api: impl FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>) -> Served,
) -> std::io::Result<()>
where
    Served: Future<Output = std::io::Result<()>>,
{
    // One signal stops both listeners. The sender is shared so that the metrics
    // listener also stops when the API listener fails.
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
            engine,
            wait_for_stop(stopped.clone()),
        ))
    });

    let served = serve_api(Box::pin(wait_for_stop(stopped))).await;

    stop.send_replace(true);
    if let Some(task) = metrics_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the metrics listener failed"),
            Err(error) => tracing::error!(%error, "the metrics listener task failed"),
        }
    }
    served
}

/// Serves the API on `listener` until `shutdown` completes.
async fn serve_api(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    state: Arc<AppState>,
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    #[cfg(feature = "insecure-bench")]
    if settings.insecure_bench {
        tracing::info!("listening on http://{address}");
        return server::listener::serve_plaintext(listener, "admin", state, shutdown).await;
    }
    tracing::info!("listening on https://{address} (TLS 1.3, client certificates required)");
    print_connection_help(settings, address);
    server::serve(listener, tls, state, shutdown).await
}

/// Rereads the policy file and the TLS files (certificate, key, client CA,
/// revocation lists) on every SIGHUP. Each is replaced only if it reads and parses;
/// otherwise the one in force stays, and the reason is logged.
pub(crate) fn reload_on_sighup(
    state: Arc<AppState>,
    tls: Arc<ServerTls>,
    path: std::path::PathBuf,
) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP; policy and certificate changes need a restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!(
                    certificate = %tls.paths().certificate.display(),
                    crl = tls.paths().crl.as_ref().map(|crl| crl.display().to_string()),
                    "reloaded the TLS certificates and revocation lists"
                ),
                Err(error) => {
                    tracing::error!(%error, "cannot reload the TLS files; the previous certificates and revocation lists stay in force")
                }
            }
            match bootstrap::read_policy(&path) {
                Ok(policy) => {
                    let grants = policy.grants().len();
                    state.policy.replace(policy);
                    tracing::info!(path = %path.display(), grants, "reloaded the policy");
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), error = format!("{error:#}"), "cannot reload the policy; the previous policy stays in force");
                }
            }
        }
    });
}

/// Binds the metrics listener, and warns when other hosts can reach it.
fn bind_metrics(address: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).with_context(|| {
        format!(
            "cannot listen for metrics on {address}; choose another address with --metrics-listen or `metrics_listen` in the configuration file"
        )
    })?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            address = %bound,
            "the metrics listener is not on a loopback address; it has no TLS or authentication, so firewall it to the Prometheus server"
        );
    }
    Ok((listener, bound))
}

/// Completes once `stopped` is `true`, or once its sender is dropped.
async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stop the server with SIGINT");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
    }
}

/// Applies the sandbox: leaves root, then Landlock and seccomp (see the `sandbox`
/// crate), allowing TCP binds to `ports` and connections to `connect_ports` only.
/// Afterwards checks, as the confined process, that the files read while serving are
/// still readable, and logs what is enforced.
pub(crate) fn confine(
    settings: &Settings,
    ports: &[u16],
    connect_ports: &[u16],
) -> Result<sandbox::Status> {
    let mut plan = Sandbox::new(&settings.data_dir);
    // SIGHUP rereads the TLS files and the policy, which tools such as cert-manager
    // replace by rename.
    plan.reread(&settings.tls_certificate)
        .reread(&settings.tls_key)
        .reread(&settings.client_ca)
        .reread(&settings.policy);
    if let Some(crl) = &settings.crl {
        plan.reread(crl);
    }
    if let Some(config_file) = &settings.config_file {
        plan.read_only(config_file);
    }
    if let Some(tokens) = &settings.tokens {
        plan.reread(&tokens.file);
    }
    // A panic backtrace reads the symbols from the executable.
    match std::env::current_exe() {
        Ok(executable) => {
            plan.read_only(&executable);
        }
        Err(error) => {
            tracing::warn!(%error, "cannot locate the executable; panic backtraces will have no symbols");
        }
    }
    for port in ports {
        plan.bind_port(*port);
    }
    for port in connect_ports {
        plan.allow_connect_port(*port);
    }
    let status = plan
        .apply(settings.sandbox.user.as_ref(), settings.sandbox.require)
        .context("cannot confine the server process")?;

    check_still_readable(settings, &status)?;
    tracing::info!(
        user = %status.user,
        uid = status.uid,
        gid = status.gid,
        privileges_dropped = status.privileges_dropped,
        no_new_privs = status.no_new_privs,
        landlock_abi = status.landlock_abi,
        landlock_fully_enforced = status.landlock_fully_enforced,
        seccomp = status.seccomp,
        "sandbox applied"
    );
    if !status.privileges_dropped {
        tracing::warn!(
            uid = status.uid,
            gid = status.gid,
            "serving with uid or gid 0; start Ravelin as an unprivileged user or as root"
        );
    }
    Ok(status)
}

/// Opens, as the confined process, the data directory and the files reread while
/// serving. An unreadable data directory or token file stops startup, because revoked
/// tokens would otherwise stay valid. An unreadable policy or TLS file only makes
/// SIGHUP reloads fail, so it is a warning.
fn check_still_readable(settings: &Settings, status: &sandbox::Status) -> Result<()> {
    std::fs::read_dir(&settings.data_dir).with_context(|| {
        format!(
            "user {} cannot open the data directory {}; every directory above it must be searchable by that user (for example chmod o+x), or choose another data directory or --user",
            status.user,
            settings.data_dir.display()
        )
    })?;
    if let Some(tokens) = &settings.tokens {
        match std::fs::File::open(&tokens.file) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "user {} cannot read the token file {}, so revoked tokens would stay valid; make it readable by that user",
                        status.user,
                        tokens.file.display()
                    )
                })
            }
        }
    }
    let reloaded = [
        &settings.policy,
        &settings.tls_certificate,
        &settings.tls_key,
        &settings.client_ca,
    ];
    for path in reloaded.into_iter().chain(settings.crl.as_ref()) {
        if let Err(error) = std::fs::File::open(path) {
            tracing::warn!(
                user = %status.user,
                path = %path.display(),
                %error,
                "a file SIGHUP rereads is not readable after dropping privileges, so reloads will fail; make it readable by that user"
            );
        }
    }
    Ok(())
}

/// Prints how to connect with the stock Python client, using the development PKI's
/// admin certificate.
pub(crate) fn print_connection_help(settings: &Settings, address: SocketAddr) {
    let host = if address.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        address.ip().to_string()
    };
    let clients = settings.pki_dir().join(crate::pki::CLIENTS_DIR);
    println!(
        "Ravelin is serving https://{address} with TLS 1.3; clients must present a certificate."
    );
    println!("Connect from Python (pip install chromadb-client==1.5.9 ./clients/python):");
    println!("    import ravelin_client");
    println!(
        "    client = ravelin_client.connect({host:?}, {}, ca={:?}, cert={:?}, key={:?})",
        address.port(),
        settings.client_ca.display().to_string(),
        clients.join("admin.pem").display().to_string(),
        clients.join("admin.key").display().to_string(),
    );
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "ravelin".to_string());
    println!("Issue certificates for other principals with: {program} pki issue-client NAME");
}
