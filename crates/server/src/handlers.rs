//! Request handling: authorization from the route, the body under a cap, decoding,
//! and the engine call.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use api::error::{collection_not_found, database_not_found, tenant_not_found, ApiError, ErrorKind};
use auth::{Action, Decision, Level, Policy, Resource};
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Serialize;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::audit::{AuditError, AuditEvent, Outcome};
use crate::backend::{run_on_engine, Backend};
use crate::listener::Client;
use crate::metrics::{AuthFailure, Denial};
use crate::operation::{decode_operation, Operation};
use crate::routes::{resolve, RecordOperation, Route, Scope};
use crate::AppState;

/// A handler's successful result: the status and the JSON body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn ok(body: &impl Serialize) -> Result<Reply, ApiError> {
        Self::with_status(StatusCode::OK, body)
    }

    pub(crate) fn with_status(
        status: StatusCode,
        body: &impl Serialize,
    ) -> Result<Reply, ApiError> {
        let body = serde_json::to_string(body).map_err(|error| {
            tracing::error!(%error, "cannot serialize a response");
            ApiError::internal("Internal error: cannot serialize the response")
        })?;
        Ok(Reply { status, body })
    }
}

/// Serves one request. Every error, including a failed engine task, becomes Chroma's
/// error JSON with its status. Every authorization decision is recorded in the audit
/// log before the response leaves; for a write or admin request the record is on disk
/// first.
pub(crate) async fn handle(
    state: Arc<AppState>,
    client: Arc<Client>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // The Chroma clients attach this id to the exceptions they raise, so a user's
    // error report can be matched to the server log line and the audit record.
    let trace_id = Uuid::new_v4().simple().to_string();
    let has_body = !hyper::body::Body::is_end_stream(request.body());

    let (result, decision, route_name) = respond(&state, &client, request).await;
    let (mut status, mut body) = match result {
        Ok(reply) => (reply.status, reply.body),
        Err(error) => (status_of(&error), error.to_json()),
    };
    let denied = decision
        .as_ref()
        .is_some_and(|decision| decision.outcome != Outcome::Allowed);
    if let Some(decision) = decision {
        if let Err(error) = record(&state, &client, &decision, status, &trace_id) {
            tracing::error!(%trace_id, %error, "cannot write the audit record; responding with 500");
            let error = ApiError::internal(
                "Internal error: the audit record could not be written; the server log has details",
            );
            (status, body) = (status_of(&error), error.to_json());
        }
    }

    let elapsed = started.elapsed();
    state.metrics.record_request(
        route_name.unwrap_or("unknown_path"),
        status.as_u16(),
        elapsed,
    );
    let principal = client.principal.as_deref().unwrap_or("-");
    if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
        tracing::error!(%trace_id, %method, %path, status = status.as_u16(), %principal, peer = %client.address, "request failed");
    } else if denied {
        tracing::info!(%trace_id, %method, %path, status = status.as_u16(), %principal, peer = %client.address, "request denied");
    } else {
        tracing::debug!(%trace_id, %method, %path, status = status.as_u16(), %principal, ?elapsed, "request");
    }

    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        headers.insert("chroma-trace-id", value);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    // A request refused before its body was read leaves that body on the connection,
    // so hyper closes the connection after the response. Saying so in the response
    // keeps the client from sending its next request on a connection about to close.
    if has_body && (status.is_client_error() || status.is_server_error()) {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn status_of(error: &ApiError) -> StatusCode {
    StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An authentication or authorization decision, for the audit log.
struct Audited {
    route: Route,
    /// The authenticated principal, or the certificate's when authentication failed.
    principal: String,
    outcome: Outcome,
}

/// Appends the audit record of a decision. A write or admin request that succeeded
/// waits until the record is on disk; others until it is written to the file.
fn record(
    state: &Arc<AppState>,
    client: &Client,
    decision: &Audited,
    status: StatusCode,
    trace_id: &str,
) -> Result<(), AuditError> {
    let Some(audit) = state.audit.as_ref() else {
        return Ok(());
    };
    let action = required_action(&decision.route);
    let (tenant, database, collection) = decision.route.target();
    let peer = client.address.to_string();
    let event = AuditEvent {
        principal: &decision.principal,
        fingerprint: client.fingerprint.as_deref(),
        peer: &peer,
        route: decision.route.name(),
        action: action.map(Action::name),
        tenant,
        database,
        collection: collection.as_deref(),
        outcome: decision.outcome,
        status: status.as_u16(),
        request_id: trace_id,
    };
    // A change must not be acknowledged before its record is on disk. A write or
    // admin request that failed changed nothing, so its record need not wait.
    let durable = matches!(action, Some(Action::Write | Action::Admin)) && status.is_success();
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    if durable && multi_thread {
        // Syncing waits for the disk, so this worker hands its other tasks to the
        // rest while it waits.
        tokio::task::block_in_place(|| audit.append(&event, true))
    } else {
        audit.append(&event, durable)
    }
}

/// A request's result, the decision to record (`None` for a request that needs none:
/// an unknown path, heartbeat and version) and its route's name (`None` for an unknown
/// path).
type Responded = (
    Result<Reply, ApiError>,
    Option<Audited>,
    Option<&'static str>,
);

/// Authenticates, authorizes and runs a request.
async fn respond(state: &Arc<AppState>, client: &Client, request: Request<Incoming>) -> Responded {
    let route = match resolve(request.method(), request.uri().path()) {
        Ok(route) => route,
        Err(error) => return (Err(error), None, None),
    };
    let name = Some(route.name());
    match route {
        Route::Heartbeat => return (heartbeat(), None, name),
        Route::Version => return (Reply::ok(&"1.0.0"), None, name),
        _ => {}
    }

    let principal =
        match crate::tokens::authenticate(state.tokens.as_ref(), client, request.headers()) {
            Ok(principal) => principal,
            Err(error) => {
                state
                    .metrics
                    .authentication_failure(match &client.principal {
                        Err(auth::IdentityError::NoCertificate) => AuthFailure::NoCertificate,
                        Err(_) => AuthFailure::CertificateIdentity,
                        Ok(_) => AuthFailure::Token,
                    });
                let decision = Audited {
                    route,
                    principal: client.principal.clone().unwrap_or_default(),
                    outcome: Outcome::Unauthenticated,
                };
                return (Err(error), Some(decision), name);
            }
        };
    if let Err(error) = authorize(state, &principal, &route).await {
        if error.status() == StatusCode::NOT_FOUND.as_u16() {
            state.metrics.denial(Denial::Hidden);
        } else if error.status() == StatusCode::FORBIDDEN.as_u16() {
            state.metrics.denial(Denial::Forbidden);
        }
        let decision = Audited {
            route,
            principal,
            outcome: Outcome::Denied,
        };
        return (Err(error), Some(decision), name);
    }

    let decision = Audited {
        route: route.clone(),
        principal: principal.clone(),
        outcome: Outcome::Allowed,
    };
    let result = execute_allowed(state, principal, route, request).await;
    (result, Some(decision), name)
}

/// Reads the body of an allowed request, decodes it on the blocking pool, and runs it
/// on the backend. The engine runs in the same blocking task, because its writes wait
/// for the disk.
async fn execute_allowed(
    state: &Arc<AppState>,
    principal: String,
    route: Route,
    request: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let query = request.uri().query().map(str::to_string);
    let (body, budget) = read_body(state, request).await?;
    // Counted only once the body is in, so a client that sends its body slowly does
    // not take the place of the principal's requests that are ready to run.
    let in_flight = state.throttle.admit(&principal)?;
    let state = Arc::clone(state);
    match state.backend.clone() {
        Backend::Engine(engine) => tokio::task::spawn_blocking(move || {
            // The body's share of the buffer budget stays taken while it is decoded,
            // because decoding needs several times its size.
            let _budget = budget;
            let _in_flight = in_flight;
            match prepare(&state, &principal, route, query.as_deref(), &body)? {
                Prepared::Answered(reply) => Ok(reply),
                Prepared::Run(operation) => run_on_engine(&engine, *operation),
            }
        })
        .await
        .map_err(task_failed)?,
        Backend::Upstream(upstream) => {
            // The budget and the in-flight slot stay taken until the upstream has
            // responded, because the decoded request lives until then.
            let _budget = budget;
            let _in_flight = in_flight;
            let prepared = tokio::task::spawn_blocking(move || {
                prepare(&state, &principal, route, query.as_deref(), &body)
            })
            .await
            .map_err(task_failed)??;
            match prepared {
                Prepared::Answered(reply) => Ok(reply),
                Prepared::Run(operation) => upstream.run(*operation).await,
            }
        }
    }
}

fn task_failed(error: tokio::task::JoinError) -> ApiError {
    tracing::error!(%error, "request task failed");
    ApiError::internal("Internal error: the request could not be completed")
}

fn heartbeat() -> Result<Reply, ApiError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    Reply::ok(&json!({ "nanosecond heartbeat": nanos as u64 }))
}

fn tenant_of(tenant: &str) -> Resource<'_> {
    Resource {
        tenant: Some(tenant),
        ..Resource::default()
    }
}

fn database_of(scope: &Scope) -> Resource<'_> {
    Resource {
        tenant: Some(scope.tenant.as_str()),
        database: Some(scope.database.as_str()),
        collection: None,
    }
}

/// Returns the action a route needs, or `None` for a route that any authenticated
/// principal may call.
fn required_action(route: &Route) -> Option<Action> {
    match route {
        Route::Heartbeat
        | Route::Version
        | Route::PreFlight
        | Route::Healthcheck
        | Route::Identity => None,
        Route::GetTenant { .. }
        | Route::ListDatabases { .. }
        | Route::GetDatabase(_)
        | Route::ListCollections(_)
        | Route::CountCollections(_)
        | Route::GetCollection(..)
        | Route::GetCollectionById(..)
        | Route::Unsupported(..) => Some(Action::Read),
        Route::Records(_, _, operation) => match operation {
            RecordOperation::Count | RecordOperation::Get | RecordOperation::Query => {
                Some(Action::Read)
            }
            RecordOperation::Add
            | RecordOperation::Upsert
            | RecordOperation::Update
            | RecordOperation::Delete => Some(Action::Write),
        },
        Route::Reset
        | Route::CreateTenant
        | Route::CreateDatabase { .. }
        | Route::DeleteDatabase(_)
        | Route::CreateCollection(_)
        | Route::DeleteCollection(..)
        | Route::UpdateCollection(..) => Some(Action::Admin),
    }
}

/// Decides a request from its route alone, before the body is read, so a request that
/// is not allowed is never decoded. A denied request on something the principal's
/// grants do not reach gets the engine's not-found error for it, so a principal cannot
/// tell what exists outside its grants. A denied request on something it reaches
/// gets 403.
async fn authorize(state: &AppState, principal: &str, route: &Route) -> Result<(), ApiError> {
    let policy = state.policy.current();
    // A principal the policy does not name learns nothing, not even the server's
    // limits or its own identity record.
    if !policy.knows(principal) && !matches!(route, Route::Healthcheck) {
        if let Route::Identity | Route::PreFlight = route {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "Forbidden: principal [{principal}] has no grants; add one to the policy file"
                ),
            ));
        }
    }
    let Some(action) = required_action(route) else {
        return Ok(());
    };
    let collection_id_name;
    let resource = match route {
        // The stock clients read the tenant and database records when they connect, and
        // a collection's record before they touch its records, so any grant inside one
        // of them is enough to read its record.
        Route::GetTenant { tenant } if policy.reaches(principal, tenant, None) => return Ok(()),
        Route::GetDatabase(scope)
            if policy.reaches(principal, &scope.tenant, Some(&scope.database)) =>
        {
            return Ok(())
        }
        Route::GetCollection(scope, name)
            if policy.reaches_collection(principal, &scope.tenant, &scope.database, name) =>
        {
            return Ok(())
        }
        Route::GetTenant { tenant }
        | Route::ListDatabases { tenant }
        | Route::CreateDatabase { tenant } => tenant_of(tenant),
        Route::GetDatabase(scope)
        | Route::ListCollections(scope)
        | Route::CountCollections(scope)
        | Route::CreateCollection(scope) => database_of(scope),
        Route::DeleteDatabase(scope) => {
            // Deleting a database needs admin on its tenant, but a database the
            // principal does not reach is hidden like any other.
            hide_unreached(&policy, principal, action, database_of(scope), None)?;
            tenant_of(&scope.tenant)
        }
        Route::GetCollection(scope, name) | Route::DeleteCollection(scope, name) => Resource {
            collection: Some(name.as_str()),
            ..database_of(scope)
        },
        Route::GetCollectionById(scope, id)
        | Route::UpdateCollection(scope, id)
        | Route::Records(scope, id, _)
        | Route::Unsupported(scope, id, _) => {
            // Hide the tenant and database before looking the id up, so the lookup's
            // result never reveals what lies outside the principal's grants.
            hide_unreached(&policy, principal, action, database_of(scope), None)?;
            collection_id_name = state.backend.collection_name(scope, *id).await?;
            let resource = Resource {
                collection: Some(collection_id_name.as_str()),
                ..database_of(scope)
            };
            let id_text = id.to_string();
            hide_unreached(&policy, principal, action, resource, Some(&id_text))?;
            let reached = policy.reaches_collection(
                principal,
                &scope.tenant,
                &scope.database,
                &collection_id_name,
            );
            if matches!(route, Route::GetCollectionById(..)) && reached {
                return Ok(());
            }
            resource
        }
        _ => Resource::default(),
    };

    hide_unreached(&policy, principal, action, resource, None)?;
    if policy.allows(principal, action, resource) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "Forbidden: principal [{principal}] has no {} grant on {}; grants are set in the policy file",
            action.name(),
            describe(resource)
        ),
    ))
}

/// Fails with the not-found error when the decision hides the resource. A collection
/// is named by `collection_shown` when the request gave its id instead of its name.
fn hide_unreached(
    policy: &Policy,
    principal: &str,
    action: Action,
    resource: Resource<'_>,
    collection_shown: Option<&str>,
) -> Result<(), ApiError> {
    match policy.decide(principal, action, resource) {
        Decision::Allowed | Decision::Forbidden => Ok(()),
        Decision::Hidden(level) => Err(match level {
            Level::Tenant => tenant_not_found(resource.tenant.unwrap_or_default()),
            Level::Database => database_not_found(resource.database.unwrap_or_default()),
            Level::Collection => {
                collection_not_found(collection_shown.or(resource.collection).unwrap_or_default())
            }
        }),
    }
}

/// Describes a resource for a message, e.g. `tenant [t], database [d]`.
fn describe(resource: Resource<'_>) -> String {
    let parts: Vec<String> = [
        ("tenant", resource.tenant),
        ("database", resource.database),
        ("collection", resource.collection),
    ]
    .into_iter()
    .filter_map(|(kind, name)| name.map(|name| format!("{kind} [{name}]")))
    .collect();
    if parts.is_empty() {
        "the whole server".to_string()
    } else {
        parts.join(", ")
    }
}

/// Reads the body under the size cap. A declared length over the cap fails before
/// anything is read; a chunked body fails as soon as it passes the cap.
async fn read_body(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), ApiError> {
    let limit = state.settings.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("Request body exceeds the limit of {limit} bytes"),
        )
    };

    if let Some(encoding) = request.headers().get(CONTENT_ENCODING) {
        if !encoding.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "Content-Encoding is not supported: send the body uncompressed",
            ));
        }
    }
    if let Some(length) = request.headers().get(CONTENT_LENGTH) {
        let declared = length
            .to_str()
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid("Invalid Content-Length header"))?;
        if declared > limit as u64 {
            return Err(too_large());
        }
    }

    read_within_limits(state, request.into_body(), limit)
        .await
        .map_err(|problem| match problem {
            BodyProblem::TooLarge => too_large(),
            BodyProblem::TooSlow(message) => ApiError::new(ErrorKind::RequestTimeout, message),
            BodyProblem::Broken => ApiError::invalid("The request body could not be read"),
            BodyProblem::Busy => ApiError::new(
                ErrorKind::TooManyRequests,
                "The server is decoding too many large request bodies; retry later",
            ),
        })
}

/// The maximum time a complete body waits for room in the decode budget.
const DECODE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes one permit per body byte from the server-wide decode budget, all at once, so
/// the bodies being decoded and run at a time never total more than the budget.
/// Decoding takes several times a body's size, so this bounds that memory. A body
/// takes its permits only once it has fully arrived, so a slow client holds none. It
/// takes them in one call, so two bodies never wait on each other's partial shares.
async fn decode_budget(
    state: &AppState,
    bytes: usize,
) -> Result<Option<OwnedSemaphorePermit>, BodyProblem> {
    let Ok(permits) = u32::try_from(bytes) else {
        return Err(BodyProblem::TooLarge);
    };
    if permits == 0 {
        return Ok(None);
    }
    let room = Arc::clone(&state.body_budget).acquire_many_owned(permits);
    match tokio::time::timeout(DECODE_WAIT, room).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        Ok(Err(_)) => Err(BodyProblem::Broken),
        Err(_) => Err(BodyProblem::Busy),
    }
}

enum BodyProblem {
    /// The decode budget stayed full for [`DECODE_WAIT`].
    Busy,
    TooLarge,
    TooSlow(String),
    Broken,
}

/// Collects a body of at most `limit` bytes. The whole body must arrive within the
/// body read timeout, and once the grace period has passed, at no less than the
/// minimum rate, so a client cannot hold a request open by trickling bytes. Returns
/// the body with its share of the decode budget.
async fn read_within_limits(
    state: &AppState,
    mut body: Incoming,
    limit: usize,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyProblem> {
    let settings = &state.settings;
    let started = tokio::time::Instant::now();
    let deadline = started + settings.body_read_timeout;
    let mut collected = Vec::new();
    loop {
        // Wake at least once a second to check the rate.
        let wake = deadline.min(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
        match tokio::time::timeout_at(wake, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if collected.len() + data.len() > limit {
                        return Err(BodyProblem::TooLarge);
                    }
                    collected.extend_from_slice(&data);
                }
            }
            Ok(None) => {
                let budget = decode_budget(state, collected.len()).await?;
                return Ok((Bytes::from(collected), budget));
            }
            Ok(Some(Err(error))) => {
                tracing::debug!(%error, "reading the request body failed");
                return Err(BodyProblem::Broken);
            }
            Err(_) => {}
        }
        let elapsed = started.elapsed();
        if tokio::time::Instant::now() >= deadline {
            return Err(BodyProblem::TooSlow(format!(
                "Request body not received within {} s",
                settings.body_read_timeout.as_secs()
            )));
        }
        if elapsed > settings.body_rate_grace {
            let expected = settings.min_body_bytes_per_second as f64 * elapsed.as_secs_f64();
            if (collected.len() as f64) < expected {
                return Err(BodyProblem::TooSlow(format!(
                    "Request body arrives slower than the minimum of {} bytes per second",
                    settings.min_body_bytes_per_second
                )));
            }
        }
    }
}

/// The outcome of decoding an allowed request.
enum Prepared {
    /// A route the front responds to itself.
    Answered(Reply),
    /// An operation for the backend.
    Run(Box<Operation>),
}

/// Builds the replies of routes that need no backend, and decodes the others into an
/// operation.
fn prepare(
    state: &AppState,
    principal: &str,
    route: Route,
    query: Option<&str>,
    body: &[u8],
) -> Result<Prepared, ApiError> {
    let limits = state.backend.limits();
    let answer = match &route {
        Route::Heartbeat => heartbeat()?,
        Route::Version => Reply::ok(&"1.0.0")?,
        Route::PreFlight => Reply::ok(&json!({
            "max_batch_size": limits.max_batch_size,
            "supports_base64_encoding": true,
        }))?,
        // A principal whose grants name one tenant and one database gets them as its
        // defaults in the stock clients that ask to use them.
        Route::Identity => {
            let reach = state.policy.current().reach(principal);
            Reply::ok(&json!({
                "user_id": principal,
                "tenant": reach.tenant,
                "databases": reach.databases,
            }))?
        }
        Route::Reset => {
            if !state.settings.allow_reset {
                return Err(ApiError::new(
                    ErrorKind::Disabled,
                    "Reset is disabled by config",
                ));
            }
            tracing::warn!(%principal, "resetting the database: every tenant, database and collection is deleted");
            return run(route, query, body, limits);
        }
        Route::Unsupported(_, _, feature) => {
            return Err(ApiError::new(
                ErrorKind::NotImplemented,
                format!("{feature} is not supported by Ravelin"),
            ))
        }
        _ => return run(route, query, body, limits),
    };
    Ok(Prepared::Answered(answer))
}

fn run(
    route: Route,
    query: Option<&str>,
    body: &[u8],
    limits: &api::Limits,
) -> Result<Prepared, ApiError> {
    match decode_operation(route, query, body, limits)? {
        Some(operation) => Ok(Prepared::Run(Box::new(operation))),
        None => Err(ApiError::internal(
            "Internal error: the route has no operation",
        )),
    }
}
