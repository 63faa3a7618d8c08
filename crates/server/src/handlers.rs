//! Request handling: authorization from the route, the body under a cap, decoding,
//! and the engine call.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use api::error::{ApiError, ErrorKind};
use api::requests::{
    parse_json, CreateCollection, CreateNamed, DeleteRecords, GetRecords, QueryRecords,
    RecordBatch, UpdateCollection, WriteKind,
};
use auth::{Action, Resource};
use bytes::Bytes;
use engine::{Engine, DEFAULT_DATABASE, DEFAULT_TENANT};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::listener::Client;
use crate::routes::{resolve, RecordOperation, Route, Scope};
use crate::AppState;

/// A handler's successful result: the status and the JSON body.
struct Reply {
    status: StatusCode,
    body: String,
}

impl Reply {
    fn ok(body: &impl Serialize) -> Result<Reply, ApiError> {
        Self::with_status(StatusCode::OK, body)
    }

    fn with_status(status: StatusCode, body: &impl Serialize) -> Result<Reply, ApiError> {
        let body = serde_json::to_string(body).map_err(|error| {
            tracing::error!(%error, "cannot serialize a response");
            ApiError::internal("Internal error: cannot serialize the response")
        })?;
        Ok(Reply { status, body })
    }
}

/// Serves one request. Every error, including a failed engine task, becomes Chroma's
/// error JSON with its status.
pub(crate) async fn handle(
    state: Arc<AppState>,
    client: Arc<Client>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();

    let result = respond(&state, &client, request).await;
    let (status, body) = match result {
        Ok(reply) => (reply.status, reply.body),
        Err(error) => {
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, error.to_json())
        }
    };

    // The Chroma clients attach this id to the exceptions they raise, so a user's
    // error report can be matched to the server log line.
    let trace_id = Uuid::new_v4().simple().to_string();
    let principal = client.principal.as_deref().unwrap_or("-");
    if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
        tracing::error!(%trace_id, %method, %path, status = status.as_u16(), %principal, peer = %client.address, "request failed");
    } else if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
        tracing::info!(%trace_id, %method, %path, status = status.as_u16(), %principal, peer = %client.address, "request denied");
    } else {
        tracing::debug!(%trace_id, %method, %path, status = status.as_u16(), %principal, elapsed = ?started.elapsed(), "request");
    }

    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        headers.insert("chroma-trace-id", value);
    }
    response
}

async fn respond(
    state: &Arc<AppState>,
    client: &Client,
    request: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let route = resolve(request.method(), request.uri().path())?;

    match route {
        Route::Heartbeat => return heartbeat(),
        Route::Version => return Reply::ok(&"1.0.0"),
        _ => {}
    }

    let principal = client.principal.as_ref().map_err(|error| {
        ApiError::new(
            ErrorKind::Unauthenticated,
            format!("Unauthenticated: {error}"),
        )
    })?;
    authorize(state, principal, &route)?;

    let query = request.uri().query().map(str::to_string);
    let body = read_body(state, request).await?;
    let state = Arc::clone(state);
    let principal = principal.clone();
    tokio::task::spawn_blocking(move || execute(&state, &principal, route, query.as_deref(), &body))
        .await
        .map_err(|error| {
            tracing::error!(%error, "request task failed");
            ApiError::internal("Internal error: the request could not be completed")
        })?
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

/// Decides a request from its route alone, before the body is read, so a request that
/// is not allowed is never decoded.
fn authorize(state: &AppState, principal: &str, route: &Route) -> Result<(), ApiError> {
    if !state.policy.knows(principal) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("Forbidden: principal [{principal}] has no grants; add one to the policy file"),
        ));
    }

    let server = Resource::default();
    let collection_id_name;
    let (action, resource) = match route {
        Route::Heartbeat
        | Route::Version
        | Route::PreFlight
        | Route::Healthcheck
        | Route::Identity
        | Route::Unsupported(_) => return Ok(()),
        Route::Reset | Route::CreateTenant => (Action::Admin, server),
        // The stock clients read the tenant and database records when they connect, so
        // any grant inside them is enough to read the records themselves.
        Route::GetTenant { tenant } if state.policy.reaches(principal, tenant, None) => {
            return Ok(())
        }
        Route::GetDatabase(scope)
            if state
                .policy
                .reaches(principal, &scope.tenant, Some(&scope.database)) =>
        {
            return Ok(())
        }
        Route::GetTenant { tenant } | Route::ListDatabases { tenant } => {
            (Action::Read, tenant_of(tenant))
        }
        Route::CreateDatabase { tenant } => (Action::Admin, tenant_of(tenant)),
        Route::GetDatabase(scope)
        | Route::ListCollections(scope)
        | Route::CountCollections(scope) => (Action::Read, database_of(scope)),
        Route::DeleteDatabase(scope) => (Action::Admin, tenant_of(&scope.tenant)),
        Route::CreateCollection(scope) => (Action::Admin, database_of(scope)),
        Route::GetCollection(scope, name) => (
            Action::Read,
            Resource {
                collection: Some(name.as_str()),
                ..database_of(scope)
            },
        ),
        Route::DeleteCollection(scope, name) => (
            Action::Admin,
            Resource {
                collection: Some(name.as_str()),
                ..database_of(scope)
            },
        ),
        Route::GetCollectionById(scope, id)
        | Route::UpdateCollection(scope, id)
        | Route::Records(scope, id, _) => {
            let action = match route {
                Route::GetCollectionById(..) => Action::Read,
                Route::Records(_, _, operation) => match operation {
                    RecordOperation::Count | RecordOperation::Get | RecordOperation::Query => {
                        Action::Read
                    }
                    _ => Action::Write,
                },
                _ => Action::Admin,
            };
            collection_id_name = state
                .engine
                .get_collection_by_id(&scope.tenant, &scope.database, *id)?
                .name;
            let resource = Resource {
                collection: Some(collection_id_name.as_str()),
                ..database_of(scope)
            };
            (action, resource)
        }
    };

    if state.policy.allows(principal, action, resource) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "Forbidden: principal [{principal}] has no {} grant on {}; grants are set in the policy file",
            action_name(action),
            describe(resource)
        ),
    ))
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::Write => "write",
        Action::Admin => "admin",
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
async fn read_body(state: &AppState, request: Request<Incoming>) -> Result<Bytes, ApiError> {
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

    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(error) => {
            tracing::debug!(%error, "reading the request body failed");
            Err(ApiError::invalid("The request body could not be read"))
        }
    }
}

fn body_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid(
            "Failed to parse the request body as JSON: the body is empty",
        ));
    }
    parse_json(body)
}

/// Parses `limit` and `offset` from a query string such as `limit=10&offset=5`.
fn paging(query: Option<&str>) -> Result<(Option<usize>, usize), ApiError> {
    let mut limit = None;
    let mut offset = 0;
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let parse = |what: &str| {
            value.parse::<usize>().map_err(|_| {
                ApiError::invalid(format!(
                    "Invalid {what} [{}]: expected a non-negative integer",
                    api::metadata::printable(value)
                ))
            })
        };
        match key {
            "limit" => limit = Some(parse("limit")?),
            "offset" => offset = parse("offset")?,
            _ => {}
        }
    }
    Ok((limit, offset))
}

fn execute(
    state: &AppState,
    principal: &str,
    route: Route,
    query: Option<&str>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let engine: &Engine = &state.engine;
    let limits = engine.limits();

    match route {
        Route::Heartbeat => heartbeat(),
        Route::Version => Reply::ok(&"1.0.0"),
        Route::PreFlight => Reply::ok(&json!({
            "max_batch_size": limits.max_batch_size,
            "supports_base64_encoding": true,
        })),
        Route::Healthcheck => {
            Reply::ok(&json!({"is_executor_ready": true, "is_log_client_ready": true}))
        }
        Route::Identity => Reply::ok(&json!({
            "user_id": principal,
            "tenant": DEFAULT_TENANT,
            "databases": [DEFAULT_DATABASE],
        })),
        Route::Reset => {
            if !state.settings.allow_reset {
                return Err(ApiError::new(
                    ErrorKind::Disabled,
                    "Reset is disabled by config",
                ));
            }
            tracing::warn!(%principal, "resetting the database: every tenant, database and collection is deleted");
            engine.reset()?;
            Reply::ok(&true)
        }
        Route::CreateTenant => {
            let request = CreateNamed::decode(&body_json(body)?, "tenant")?;
            engine.create_tenant(&request.name)?;
            Reply::ok(&json!({}))
        }
        Route::GetTenant { tenant } => Reply::ok(&engine.get_tenant(&tenant)?),
        Route::ListDatabases { tenant } => {
            let (limit, offset) = paging(query)?;
            Reply::ok(&engine.list_databases(&tenant, limit, offset)?)
        }
        Route::CreateDatabase { tenant } => {
            let request = CreateNamed::decode(&body_json(body)?, "database")?;
            engine.create_database(&tenant, &request.name)?;
            Reply::ok(&json!({}))
        }
        Route::GetDatabase(scope) => {
            Reply::ok(&engine.get_database(&scope.tenant, &scope.database)?)
        }
        Route::DeleteDatabase(scope) => {
            engine.delete_database(&scope.tenant, &scope.database)?;
            Reply::ok(&json!({}))
        }
        Route::ListCollections(scope) => {
            let (limit, offset) = paging(query)?;
            Reply::ok(&engine.list_collections(&scope.tenant, &scope.database, limit, offset)?)
        }
        Route::CountCollections(scope) => {
            Reply::ok(&engine.count_collections(&scope.tenant, &scope.database)?)
        }
        Route::CreateCollection(scope) => {
            let request = CreateCollection::decode(&body_json(body)?, limits)?;
            Reply::ok(&engine.create_collection(&scope.tenant, &scope.database, request)?)
        }
        Route::GetCollection(scope, name) => {
            Reply::ok(&engine.get_collection_by_name(&scope.tenant, &scope.database, &name)?)
        }
        Route::GetCollectionById(scope, id) => {
            Reply::ok(&engine.get_collection_by_id(&scope.tenant, &scope.database, id)?)
        }
        Route::UpdateCollection(scope, id) => {
            let request = UpdateCollection::decode(&body_json(body)?, limits)?;
            engine.update_collection(&scope.tenant, &scope.database, id, request)?;
            Reply::ok(&json!({}))
        }
        Route::DeleteCollection(scope, name) => {
            engine.delete_collection_by_name(&scope.tenant, &scope.database, &name)?;
            Reply::ok(&json!({}))
        }
        Route::Records(scope, id, operation) => {
            execute_records(engine, &scope, id, operation, body)
        }
        Route::Unsupported(feature) => Err(ApiError::new(
            ErrorKind::NotImplemented,
            format!("{feature} is not supported by Ravelin"),
        )),
    }
}

fn execute_records(
    engine: &Engine,
    scope: &Scope,
    id: Uuid,
    operation: RecordOperation,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let limits = engine.limits();
    let (tenant, database) = (scope.tenant.as_str(), scope.database.as_str());
    let write = |kind: WriteKind| -> Result<(), ApiError> {
        let batch = RecordBatch::decode(&body_json(body)?, kind, limits)?;
        engine.write(tenant, database, id, kind, batch)?;
        Ok(())
    };

    match operation {
        RecordOperation::Add => {
            write(WriteKind::Add)?;
            Reply::with_status(StatusCode::CREATED, &json!({}))
        }
        RecordOperation::Upsert => {
            write(WriteKind::Upsert)?;
            Reply::ok(&json!({}))
        }
        RecordOperation::Update => {
            write(WriteKind::Update)?;
            Reply::ok(&json!({}))
        }
        RecordOperation::Delete => {
            let request = DeleteRecords::decode(&body_json(body)?, limits)?;
            let deleted = engine.delete_records(tenant, database, id, request)?;
            Reply::ok(&json!({ "deleted": deleted }))
        }
        RecordOperation::Count => Reply::ok(&engine.count(tenant, database, id)?),
        RecordOperation::Get => {
            let request = GetRecords::decode(&body_json(body)?, limits)?;
            Reply::ok(&engine.get(tenant, database, id, request)?)
        }
        RecordOperation::Query => {
            let request = QueryRecords::decode(&body_json(body)?, limits)?;
            Reply::ok(&engine.query(tenant, database, id, request)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parsed() {
        assert_eq!(paging(None).unwrap(), (None, 0));
        assert_eq!(paging(Some("limit=5&offset=2")).unwrap(), (Some(5), 2));
        assert!(paging(Some("limit=-1")).is_err());
        assert!(paging(Some("offset=x")).is_err());
    }
}
