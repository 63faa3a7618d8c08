//! The backend that runs an allowed, decoded [`Operation`]: the embedded engine in
//! `ravelin serve`, or an upstream Chroma in `ravelin gateway`. Routing,
//! authentication, authorization, limits, throttling, decoding and audit happen
//! before, the same for every backend.

use std::sync::Arc;

use api::error::ApiError;
use api::requests::WriteKind;
use api::Limits;
use engine::Engine;
use http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::handlers::Reply;
use crate::operation::Operation;
use crate::routes::Scope;
use crate::upstream::Upstream;

/// The place operations run.
#[derive(Clone)]
pub enum Backend {
    /// The embedded engine over the local encrypted store.
    Engine(Arc<Engine>),
    /// An upstream Chroma.
    Upstream(Arc<Upstream>),
}

impl Backend {
    /// Returns the limits requests are decoded with.
    pub fn limits(&self) -> &Limits {
        match self {
            Backend::Engine(engine) => engine.limits(),
            Backend::Upstream(upstream) => upstream.limits(),
        }
    }

    /// Returns the name of the collection with `id`, or the not-found error when no
    /// collection with that id lies in the scope's tenant and database.
    pub(crate) async fn collection_name(
        &self,
        scope: &Scope,
        id: Uuid,
    ) -> Result<String, ApiError> {
        match self {
            // The engine's catalog is in memory, so this read does not block.
            Backend::Engine(engine) => Ok(engine
                .get_collection_by_id(&scope.tenant, &scope.database, id)?
                .name),
            Backend::Upstream(upstream) => upstream.collection_name(scope, id).await,
        }
    }
}

/// Healthcheck body of a server whose backend is ready.
pub(crate) fn ready() -> Result<Reply, ApiError> {
    Reply::ok(&json!({"is_executor_ready": true, "is_log_client_ready": true}))
}

/// Runs an operation on the engine. Writes wait for the disk, so call this from a
/// blocking thread.
pub(crate) fn run_on_engine(engine: &Engine, operation: Operation) -> Result<Reply, ApiError> {
    match operation {
        Operation::Healthcheck => ready(),
        Operation::Reset => {
            engine.reset()?;
            Reply::ok(&true)
        }
        Operation::CreateTenant(request) => {
            engine.create_tenant(&request.name)?;
            Reply::ok(&json!({}))
        }
        Operation::GetTenant(tenant) => Reply::ok(&engine.get_tenant(&tenant)?),
        Operation::ListDatabases { tenant, page } => {
            Reply::ok(&engine.list_databases(&tenant, page.limit, page.offset)?)
        }
        Operation::CreateDatabase { tenant, request } => {
            engine.create_database(&tenant, &request.name)?;
            Reply::ok(&json!({}))
        }
        Operation::GetDatabase(scope) => {
            Reply::ok(&engine.get_database(&scope.tenant, &scope.database)?)
        }
        Operation::DeleteDatabase(scope) => {
            engine.delete_database(&scope.tenant, &scope.database)?;
            Reply::ok(&json!({}))
        }
        Operation::ListCollections(scope, page) => Reply::ok(&engine.list_collections(
            &scope.tenant,
            &scope.database,
            page.limit,
            page.offset,
        )?),
        Operation::CountCollections(scope) => {
            Reply::ok(&engine.count_collections(&scope.tenant, &scope.database)?)
        }
        Operation::CreateCollection(scope, request) => {
            Reply::ok(&engine.create_collection(&scope.tenant, &scope.database, *request)?)
        }
        Operation::GetCollection(scope, name) => {
            Reply::ok(&engine.get_collection_by_name(&scope.tenant, &scope.database, &name)?)
        }
        Operation::GetCollectionById(scope, id) => {
            Reply::ok(&engine.get_collection_by_id(&scope.tenant, &scope.database, id)?)
        }
        Operation::UpdateCollection(scope, id, request) => {
            engine.update_collection(&scope.tenant, &scope.database, id, request)?;
            Reply::ok(&json!({}))
        }
        Operation::DeleteCollection(scope, name) => {
            engine.delete_collection_by_name(&scope.tenant, &scope.database, &name)?;
            Reply::ok(&json!({}))
        }
        Operation::Write(scope, id, kind, batch) => {
            engine.write(&scope.tenant, &scope.database, id, kind, batch)?;
            written(kind)
        }
        Operation::DeleteRecords(scope, id, request) => {
            let deleted = engine.delete_records(&scope.tenant, &scope.database, id, request)?;
            Reply::ok(&json!({ "deleted": deleted }))
        }
        Operation::Count(scope, id) => {
            Reply::ok(&engine.count(&scope.tenant, &scope.database, id)?)
        }
        Operation::Get(scope, id, request) => {
            Reply::ok(&engine.get(&scope.tenant, &scope.database, id, request)?)
        }
        Operation::Query(scope, id, request) => {
            Reply::ok(&engine.query(&scope.tenant, &scope.database, id, request)?)
        }
    }
}

/// Builds the reply to a successful record write: 201 for add, as Chroma sends, else
/// 200.
pub(crate) fn written(kind: WriteKind) -> Result<Reply, ApiError> {
    let status = match kind {
        WriteKind::Add => StatusCode::CREATED,
        WriteKind::Upsert | WriteKind::Update => StatusCode::OK,
    };
    Reply::with_status(status, &json!({}))
}
