//! Operations: an allowed route with its query string and body decoded into the `api`
//! crate's validated requests. Both backends run the same [`Operation`], so the
//! embedded engine and an upstream Chroma see only requests that passed the same
//! checks.

use api::error::ApiError;
use api::requests::{
    parse_json, CreateCollection, CreateNamed, DeleteRecords, GetRecords, QueryRecords,
    RecordBatch, UpdateCollection, WriteKind,
};
use api::Limits;
use uuid::Uuid;

use crate::routes::{RecordOperation, Route, Scope};

/// A request ready for a backend: every value in it is validated.
#[derive(Debug)]
pub(crate) enum Operation {
    Healthcheck,
    Reset,
    CreateTenant(CreateNamed),
    GetTenant(String),
    ListDatabases {
        tenant: String,
        page: Page,
    },
    CreateDatabase {
        tenant: String,
        request: CreateNamed,
    },
    GetDatabase(Scope),
    DeleteDatabase(Scope),
    ListCollections(Scope, Page),
    CountCollections(Scope),
    CreateCollection(Scope, Box<CreateCollection>),
    GetCollection(Scope, String),
    GetCollectionById(Scope, Uuid),
    UpdateCollection(Scope, Uuid, UpdateCollection),
    DeleteCollection(Scope, String),
    Write(Scope, Uuid, WriteKind, RecordBatch),
    DeleteRecords(Scope, Uuid, DeleteRecords),
    Count(Scope, Uuid),
    Get(Scope, Uuid, GetRecords),
    Query(Scope, Uuid, QueryRecords),
}

/// `limit` and `offset` of a list request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub limit: Option<usize>,
    pub offset: usize,
}

/// Decodes an allowed route's query string and body. Returns `None` for the routes
/// the front responds to itself (heartbeat, version, pre-flight, identity, and the
/// routes Ravelin does not implement).
pub(crate) fn decode_operation(
    route: Route,
    query: Option<&str>,
    body: &[u8],
    limits: &Limits,
) -> Result<Option<Operation>, ApiError> {
    let operation = match route {
        Route::Heartbeat
        | Route::Version
        | Route::PreFlight
        | Route::Identity
        | Route::Unsupported(..) => return Ok(None),
        Route::Healthcheck => Operation::Healthcheck,
        Route::Reset => Operation::Reset,
        Route::CreateTenant => {
            Operation::CreateTenant(CreateNamed::decode(&body_json(body)?, "tenant")?)
        }
        Route::GetTenant { tenant } => Operation::GetTenant(tenant),
        Route::ListDatabases { tenant } => Operation::ListDatabases {
            tenant,
            page: paging(query, limits.max_get_limit)?,
        },
        Route::CreateDatabase { tenant } => Operation::CreateDatabase {
            tenant,
            request: CreateNamed::decode(&body_json(body)?, "database")?,
        },
        Route::GetDatabase(scope) => Operation::GetDatabase(scope),
        Route::DeleteDatabase(scope) => Operation::DeleteDatabase(scope),
        Route::ListCollections(scope) => {
            Operation::ListCollections(scope, paging(query, limits.max_get_limit)?)
        }
        Route::CountCollections(scope) => Operation::CountCollections(scope),
        Route::CreateCollection(scope) => Operation::CreateCollection(
            scope,
            Box::new(CreateCollection::decode(&body_json(body)?, limits)?),
        ),
        Route::GetCollection(scope, name) => Operation::GetCollection(scope, name),
        Route::GetCollectionById(scope, id) => Operation::GetCollectionById(scope, id),
        Route::UpdateCollection(scope, id) => Operation::UpdateCollection(
            scope,
            id,
            UpdateCollection::decode(&body_json(body)?, limits)?,
        ),
        Route::DeleteCollection(scope, name) => Operation::DeleteCollection(scope, name),
        Route::Records(scope, id, operation) => {
            let write = |kind: WriteKind| -> Result<Operation, ApiError> {
                let batch = RecordBatch::decode(&body_json(body)?, kind, limits)?;
                Ok(Operation::Write(scope.clone(), id, kind, batch))
            };
            match operation {
                RecordOperation::Add => write(WriteKind::Add)?,
                RecordOperation::Upsert => write(WriteKind::Upsert)?,
                RecordOperation::Update => write(WriteKind::Update)?,
                RecordOperation::Delete => Operation::DeleteRecords(
                    scope,
                    id,
                    DeleteRecords::decode(&body_json(body)?, limits)?,
                ),
                RecordOperation::Count => Operation::Count(scope, id),
                RecordOperation::Get => {
                    Operation::Get(scope, id, GetRecords::decode(&body_json(body)?, limits)?)
                }
                RecordOperation::Query => {
                    Operation::Query(scope, id, QueryRecords::decode(&body_json(body)?, limits)?)
                }
            }
        }
    };
    Ok(Some(operation))
}

fn body_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid(
            "Failed to parse the request body as JSON: the body is empty",
        ));
    }
    parse_json(body)
}

/// Parses `limit` and `offset` from a query string such as `limit=10&offset=5`, with
/// the bounds that record gets have: `limit` from 1 to `max_limit`, `offset` at most
/// 2^63 - 1.
fn paging(query: Option<&str>, max_limit: usize) -> Result<Page, ApiError> {
    let mut page = Page {
        limit: None,
        offset: 0,
    };
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let parse = |what: &str, min: usize, max: usize| {
            value
                .parse::<usize>()
                .ok()
                .filter(|number| (min..=max).contains(number))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Invalid {what} [{}]: expected an integer from {min} to {max}",
                        api::metadata::printable(value)
                    ))
                })
        };
        match key {
            "limit" => page.limit = Some(parse("limit", 1, max_limit)?),
            "offset" => page.offset = parse("offset", 0, usize::MAX >> 1)?,
            _ => {}
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: Option<usize>, offset: usize) -> Page {
        Page { limit, offset }
    }

    #[test]
    fn paging_parsed() {
        assert_eq!(paging(None, 100).unwrap(), page(None, 0));
        assert_eq!(
            paging(Some("limit=5&offset=2"), 100).unwrap(),
            page(Some(5), 2)
        );
        for bad in [
            "limit=-1",
            "limit=0",
            "limit=101",
            "offset=x",
            "offset=9223372036854775808",
        ] {
            assert!(paging(Some(bad), 100).is_err(), "{bad}");
        }
    }
}
