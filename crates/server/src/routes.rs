//! The route table: method and path to [`Route`], with path segments decoded and
//! validated. Routes are resolved before anything else about a request is looked at.

use api::error::{ApiError, ErrorKind};
use api::names::{parse_collection_id, validate_name};
use hyper::Method;
use uuid::Uuid;

/// The tenant and database a route is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub tenant: String,
    pub database: String,
}

/// One API operation, with its decoded path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Heartbeat,
    Version,
    PreFlight,
    Healthcheck,
    Identity,
    Reset,
    CreateTenant,
    GetTenant {
        tenant: String,
    },
    ListDatabases {
        tenant: String,
    },
    CreateDatabase {
        tenant: String,
    },
    GetDatabase(Scope),
    DeleteDatabase(Scope),
    ListCollections(Scope),
    CountCollections(Scope),
    CreateCollection(Scope),
    GetCollection(Scope, String),
    DeleteCollection(Scope, String),
    GetCollectionById(Scope, Uuid),
    UpdateCollection(Scope, Uuid),
    Records(Scope, Uuid, RecordOperation),
    /// A Chroma collection route Ravelin does not implement, such as fork. It is
    /// decided like a read of the collection, so a bad or unknown id gets the same
    /// error as on any other route, and only then is the feature refused.
    Unsupported(Scope, Uuid, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordOperation {
    Add,
    Upsert,
    Update,
    Delete,
    Count,
    Get,
    Query,
}

impl Route {
    /// Returns the route's fixed name, as the audit log and metrics record it. It is
    /// never built from the request.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Route::Heartbeat => "heartbeat",
            Route::Version => "version",
            Route::PreFlight => "pre_flight_checks",
            Route::Healthcheck => "healthcheck",
            Route::Identity => "auth.identity",
            Route::Reset => "reset",
            Route::CreateTenant => "tenants.create",
            Route::GetTenant { .. } => "tenants.get",
            Route::ListDatabases { .. } => "databases.list",
            Route::CreateDatabase { .. } => "databases.create",
            Route::GetDatabase(_) => "databases.get",
            Route::DeleteDatabase(_) => "databases.delete",
            Route::ListCollections(_) => "collections.list",
            Route::CountCollections(_) => "collections.count",
            Route::CreateCollection(_) => "collections.create",
            Route::GetCollection(..) => "collections.get",
            Route::DeleteCollection(..) => "collections.delete",
            Route::GetCollectionById(..) => "collections.get_by_id",
            Route::UpdateCollection(..) => "collections.update",
            Route::Records(_, _, operation) => match operation {
                RecordOperation::Add => "records.add",
                RecordOperation::Upsert => "records.upsert",
                RecordOperation::Update => "records.update",
                RecordOperation::Delete => "records.delete",
                RecordOperation::Count => "records.count",
                RecordOperation::Get => "records.get",
                RecordOperation::Query => "records.query",
            },
            Route::Unsupported(..) => "unsupported",
        }
    }

    /// Returns the tenant, database and collection the route names, the collection by
    /// name or by id as the path gives it.
    pub(crate) fn target(&self) -> (Option<&str>, Option<&str>, Option<String>) {
        match self {
            Route::GetTenant { tenant }
            | Route::ListDatabases { tenant }
            | Route::CreateDatabase { tenant } => (Some(tenant), None, None),
            Route::GetDatabase(scope)
            | Route::DeleteDatabase(scope)
            | Route::ListCollections(scope)
            | Route::CountCollections(scope)
            | Route::CreateCollection(scope) => (Some(&scope.tenant), Some(&scope.database), None),
            Route::GetCollection(scope, name) | Route::DeleteCollection(scope, name) => (
                Some(&scope.tenant),
                Some(&scope.database),
                Some(name.clone()),
            ),
            Route::GetCollectionById(scope, id)
            | Route::UpdateCollection(scope, id)
            | Route::Records(scope, id, _)
            | Route::Unsupported(scope, id, _) => (
                Some(&scope.tenant),
                Some(&scope.database),
                Some(id.to_string()),
            ),
            _ => (None, None, None),
        }
    }
}

/// Resolves a request's route. Errors are ready to send: 405 for a known path with
/// another method, 404 for an unknown path.
pub(crate) fn resolve(method: &Method, path: &str) -> Result<Route, ApiError> {
    if let Some(route) = match_route(method, path)? {
        return Ok(route);
    }
    for other in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
        if other != *method && matches!(match_route(&other, path), Ok(Some(_))) {
            return Err(ApiError::new(
                ErrorKind::MethodNotAllowed,
                "Method not allowed for this route",
            ));
        }
    }
    Err(not_found(path))
}

/// Returns the route for a method and path, `None` when nothing matches.
fn match_route(method: &Method, path: &str) -> Result<Option<Route>, ApiError> {
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        return Err(ApiError::new(
            ErrorKind::Gone,
            "The v1 API is deprecated. Please use /v2 apis",
        ));
    }
    let Some(rest) = path.strip_prefix("/api/v2") else {
        return Err(not_found(path));
    };
    let raw: Vec<&str> = rest
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    if raw.len() > 8 {
        return Err(not_found(path));
    }
    let segments = raw
        .iter()
        .map(|segment| percent_decode(segment))
        .collect::<Result<Vec<String>, ApiError>>()?;
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();

    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let delete = *method == Method::DELETE;
    let put = *method == Method::PUT;

    let route = match parts.as_slice() {
        [] | ["heartbeat"] if get => Route::Heartbeat,
        ["version"] if get => Route::Version,
        ["pre-flight-checks"] if get => Route::PreFlight,
        ["healthcheck"] if get => Route::Healthcheck,
        ["auth", "identity"] if get => Route::Identity,
        ["reset"] if post => Route::Reset,
        ["tenants"] if post => Route::CreateTenant,
        ["tenants", tenant] if get => Route::GetTenant {
            tenant: tenant_name(tenant)?,
        },
        ["tenants", tenant, "databases"] if get => Route::ListDatabases {
            tenant: tenant_name(tenant)?,
        },
        ["tenants", tenant, "databases"] if post => Route::CreateDatabase {
            tenant: tenant_name(tenant)?,
        },
        ["tenants", tenant, "databases", database] if get => {
            Route::GetDatabase(scope(tenant, database)?)
        }
        ["tenants", tenant, "databases", database] if delete => {
            Route::DeleteDatabase(scope(tenant, database)?)
        }
        ["tenants", tenant, "databases", database, "collections"] if get => {
            Route::ListCollections(scope(tenant, database)?)
        }
        ["tenants", tenant, "databases", database, "collections"] if post => {
            Route::CreateCollection(scope(tenant, database)?)
        }
        ["tenants", tenant, "databases", database, "collections_count"] if get => {
            Route::CountCollections(scope(tenant, database)?)
        }
        ["tenants", tenant, "databases", database, "collections", "by-id", id] if get => {
            Route::GetCollectionById(scope(tenant, database)?, parse_collection_id(id)?)
        }
        ["tenants", tenant, "databases", database, "collections", name] if get => {
            Route::GetCollection(scope(tenant, database)?, collection_name(name)?)
        }
        ["tenants", tenant, "databases", database, "collections", name] if delete => {
            Route::DeleteCollection(scope(tenant, database)?, collection_name(name)?)
        }
        ["tenants", tenant, "databases", database, "collections", id] if put => {
            Route::UpdateCollection(scope(tenant, database)?, parse_collection_id(id)?)
        }
        ["tenants", tenant, "databases", database, "collections", id, operation] => {
            let scope = scope(tenant, database)?;
            let operation = match (*operation, get, post) {
                ("add", _, true) => RecordOperation::Add,
                ("upsert", _, true) => RecordOperation::Upsert,
                ("update", _, true) => RecordOperation::Update,
                ("delete", _, true) => RecordOperation::Delete,
                ("get", _, true) => RecordOperation::Get,
                ("query", _, true) => RecordOperation::Query,
                ("count", true, _) => RecordOperation::Count,
                ("fork", _, true) | ("fork_count", true, _) => {
                    let id = parse_collection_id(id)?;
                    return Ok(Some(Route::Unsupported(scope, id, "Collection forking")));
                }
                ("indexing_status", true, _) => {
                    let id = parse_collection_id(id)?;
                    return Ok(Some(Route::Unsupported(scope, id, "Indexing status")));
                }
                ("search", _, true) => {
                    let id = parse_collection_id(id)?;
                    return Ok(Some(Route::Unsupported(scope, id, "The search API")));
                }
                _ => return Ok(None),
            };
            Route::Records(scope, parse_collection_id(id)?, operation)
        }
        _ => return Ok(None),
    };
    Ok(Some(route))
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found(format!("No route for [{}]", api::metadata::printable(path)))
}

fn scope(tenant: &str, database: &str) -> Result<Scope, ApiError> {
    Ok(Scope {
        tenant: tenant_name(tenant)?,
        database: database_name(database)?,
    })
}

fn tenant_name(name: &str) -> Result<String, ApiError> {
    validate_name("tenant", name)?;
    Ok(name.to_string())
}

fn database_name(name: &str) -> Result<String, ApiError> {
    validate_name("database", name)?;
    Ok(name.to_string())
}

fn collection_name(name: &str) -> Result<String, ApiError> {
    validate_name("collection", name)?;
    Ok(name.to_string())
}

/// Decodes `%XX` escapes in a path segment. The result must be UTF-8.
fn percent_decode(segment: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::invalid("Invalid percent-encoding in the request path");
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let high = bytes
                .get(index + 1)
                .and_then(|b| char::from(*b).to_digit(16))
                .ok_or_else(invalid)?;
            let low = bytes
                .get(index + 2)
                .and_then(|b| char::from(*b).to_digit(16))
                .ok_or_else(invalid)?;
            decoded.push(u8::try_from(high * 16 + low).map_err(|_| invalid())?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1a7b36-0d3f-4c1e-9d53-3c4b7d1f2a10";

    fn scope() -> Scope {
        Scope {
            tenant: "default_tenant".into(),
            database: "default_database".into(),
        }
    }

    #[test]
    fn client_paths_resolved() {
        let base = "/api/v2/tenants/default_tenant/databases/default_database";
        let id = Uuid::try_parse(ID).unwrap();
        let cases = [
            (
                Method::GET,
                "/api/v2/heartbeat".to_string(),
                Route::Heartbeat,
            ),
            (Method::GET, "/api/v2".to_string(), Route::Heartbeat),
            (
                Method::GET,
                "/api/v2/auth/identity".to_string(),
                Route::Identity,
            ),
            (
                Method::POST,
                format!("{base}/collections"),
                Route::CreateCollection(scope()),
            ),
            (
                Method::GET,
                format!("{base}/collections/probe1"),
                Route::GetCollection(scope(), "probe1".into()),
            ),
            (
                Method::GET,
                format!("{base}/collections/by-id/{ID}"),
                Route::GetCollectionById(scope(), id),
            ),
            (
                Method::PUT,
                format!("{base}/collections/{ID}"),
                Route::UpdateCollection(scope(), id),
            ),
            (
                Method::POST,
                format!("{base}/collections/{ID}/add"),
                Route::Records(scope(), id, RecordOperation::Add),
            ),
            (
                Method::GET,
                format!("{base}/collections/{ID}/count"),
                Route::Records(scope(), id, RecordOperation::Count),
            ),
            (
                Method::GET,
                format!("{base}/collections_count"),
                Route::CountCollections(scope()),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                resolve(&method, &path).unwrap(),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn hostile_segments_rejected() {
        let base = "/api/v2/tenants/default_tenant/databases/default_database/collections";
        for name in ["..", "%2e%2e%2f", "a%00b", "ab", "%ff%fe", "%zz"] {
            let error = resolve(&Method::GET, &format!("{base}/{name}")).unwrap_err();
            assert_eq!(error.status(), 400, "{name}");
        }
        let error = resolve(&Method::POST, &format!("{base}/not-a-uuid/add")).unwrap_err();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn v1_gone_and_unknown_not_found() {
        assert_eq!(
            resolve(&Method::GET, "/api/v1/heartbeat")
                .unwrap_err()
                .status(),
            410
        );
        assert_eq!(resolve(&Method::GET, "/other").unwrap_err().status(), 404);
        assert_eq!(
            resolve(&Method::GET, "/api/v2/nothing")
                .unwrap_err()
                .status(),
            404
        );
    }

    #[test]
    fn wrong_method_rejected() {
        assert_eq!(
            resolve(&Method::DELETE, "/api/v2/heartbeat")
                .unwrap_err()
                .status(),
            405
        );
    }
}
