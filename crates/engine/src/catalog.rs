//! Tenants, databases and collections.

use api::error::{collection_not_found, database_not_found, tenant_not_found, ApiError};
use api::metadata::metadata_to_json;
use api::requests::{CreateCollection, UpdateCollection};
use api::responses::{CollectionResponse, DatabaseResponse};
use index::Space;
use store::CollectionRow;
use uuid::Uuid;

use crate::state::{Catalog, CollectionEntry, DatabaseEntry, RecordSet, Records, Upkeep};
use crate::{internal, Engine};

/// A tenant as the API returns it.
pub use api::responses::TenantResponse as TenantInfo;

impl Catalog {
    pub(crate) fn require_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self.tenants.iter().any(|name| name == tenant) {
            Ok(())
        } else {
            Err(tenant_not_found(tenant))
        }
    }

    pub(crate) fn require_database(
        &self,
        tenant: &str,
        database: &str,
    ) -> Result<&DatabaseEntry, ApiError> {
        self.databases
            .get(&(tenant.to_string(), database.to_string()))
            .ok_or_else(|| database_not_found(database))
    }

    /// Finds a collection by id within a tenant and database.
    pub(crate) fn collection_in(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
    ) -> Result<&CollectionEntry, ApiError> {
        self.collections
            .get(&id)
            .filter(|entry| entry.tenant == tenant && entry.database == database)
            .ok_or_else(|| collection_not_found(&id.to_string()))
    }

    fn collection_named(&self, database_id: &str, name: &str) -> Option<&CollectionEntry> {
        self.collections
            .values()
            .find(|entry| entry.database_id == database_id && entry.name == name)
    }

    fn collections_of(&self, database_id: &str) -> Vec<&CollectionEntry> {
        let mut entries: Vec<&CollectionEntry> = self
            .collections
            .values()
            .filter(|entry| entry.database_id == database_id)
            .collect();
        entries.sort_by_key(|entry| entry.position);
        entries
    }
}

impl CollectionEntry {
    pub(crate) fn to_response(&self) -> CollectionResponse {
        let dimension = self.records.set.read().dimension;
        CollectionResponse {
            id: self.id.to_string(),
            name: self.name.clone(),
            configuration_json: self.configuration.to_json(),
            schema: Some(self.schema.to_json()),
            metadata: self.metadata.clone(),
            dimension: dimension.map(|d| d as u64),
            tenant: self.tenant.clone(),
            database: self.database.clone(),
            log_position: 0,
            version: 0,
        }
    }

    pub(crate) fn to_row(&self) -> CollectionRow {
        CollectionRow {
            id: self.id.to_string(),
            database_id: self.database_id.clone(),
            name: self.name.clone(),
            dimension: self.records.set.read().dimension.map(|d| d as i64),
            configuration_json: self.configuration.to_json().to_string(),
            metadata_json: self
                .metadata
                .as_ref()
                .map(|m| metadata_to_json(m).to_string()),
            schema_json: Some(self.schema.to_json().to_string()),
            position: self.position,
        }
    }
}

fn page<T>(items: Vec<T>, limit: Option<usize>, offset: usize) -> Vec<T> {
    items
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

impl Engine {
    pub fn create_tenant(&self, name: &str) -> Result<(), ApiError> {
        let mut catalog = self.catalog.write();
        if catalog.tenants.iter().any(|tenant| tenant == name) {
            return Err(ApiError::conflict(format!(
                "Tenant [{name}] already exists"
            )));
        }
        self.store.lock().create_tenant(name).map_err(internal)?;
        catalog.tenants.push(name.to_string());
        Ok(())
    }

    pub fn get_tenant(&self, name: &str) -> Result<TenantInfo, ApiError> {
        self.catalog.read().require_tenant(name)?;
        Ok(TenantInfo {
            name: name.to_string(),
            resource_name: None,
        })
    }

    pub fn create_database(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        let mut catalog = self.catalog.write();
        catalog.require_tenant(tenant)?;
        let key = (tenant.to_string(), name.to_string());
        if catalog.databases.contains_key(&key) {
            return Err(ApiError::conflict(format!(
                "Database [{name}] already exists"
            )));
        }
        let id = Uuid::new_v4().to_string();
        self.store
            .lock()
            .create_database(&id, tenant, name)
            .map_err(internal)?;
        let position = catalog.databases.len();
        catalog
            .databases
            .insert(key, DatabaseEntry { id, position });
        Ok(())
    }

    pub fn get_database(&self, tenant: &str, name: &str) -> Result<DatabaseResponse, ApiError> {
        let catalog = self.catalog.read();
        catalog.require_tenant(tenant)?;
        let entry = catalog.require_database(tenant, name)?;
        Ok(DatabaseResponse {
            id: entry.id.clone(),
            name: name.to_string(),
            tenant: tenant.to_string(),
        })
    }

    pub fn list_databases(
        &self,
        tenant: &str,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<DatabaseResponse>, ApiError> {
        let catalog = self.catalog.read();
        catalog.require_tenant(tenant)?;
        let mut databases: Vec<(&(String, String), &DatabaseEntry)> = catalog
            .databases
            .iter()
            .filter(|((owner, _), _)| owner == tenant)
            .collect();
        databases.sort_by_key(|(_, entry)| entry.position);
        let responses = databases
            .into_iter()
            .map(|((owner, name), entry)| DatabaseResponse {
                id: entry.id.clone(),
                name: name.clone(),
                tenant: owner.clone(),
            })
            .collect();
        Ok(page(responses, limit, offset))
    }

    /// Deletes a database with all its collections and records.
    pub fn delete_database(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        let mut catalog = self.catalog.write();
        catalog.require_tenant(tenant)?;
        let database_id = catalog.require_database(tenant, name)?.id.clone();
        self.store
            .lock()
            .delete_database(&database_id)
            .map_err(internal)?;
        catalog
            .databases
            .remove(&(tenant.to_string(), name.to_string()));
        catalog.collections.retain(|_, entry| {
            if entry.database_id == database_id {
                entry.records.mark_deleted();
                false
            } else {
                true
            }
        });
        Ok(())
    }

    pub fn list_collections(
        &self,
        tenant: &str,
        database: &str,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<CollectionResponse>, ApiError> {
        let catalog = self.catalog.read();
        catalog.require_tenant(tenant)?;
        let database_id = &catalog.require_database(tenant, database)?.id;
        let responses = catalog
            .collections_of(database_id)
            .into_iter()
            .map(CollectionEntry::to_response)
            .collect();
        Ok(page(responses, limit, offset))
    }

    pub fn count_collections(&self, tenant: &str, database: &str) -> Result<usize, ApiError> {
        let catalog = self.catalog.read();
        catalog.require_tenant(tenant)?;
        let database_id = &catalog.require_database(tenant, database)?.id;
        Ok(catalog.collections_of(database_id).len())
    }

    /// Creates a collection, or with `get_or_create` returns the existing one of that
    /// name unchanged.
    pub fn create_collection(
        &self,
        tenant: &str,
        database: &str,
        request: CreateCollection,
    ) -> Result<CollectionResponse, ApiError> {
        let mut catalog = self.catalog.write();
        catalog.require_tenant(tenant)?;
        let database_id = catalog.require_database(tenant, database)?.id.clone();
        if let Some(existing) = catalog.collection_named(&database_id, &request.name) {
            if request.get_or_create {
                return Ok(existing.to_response());
            }
            return Err(ApiError::conflict(format!(
                "Collection [{}] already exists",
                request.name
            )));
        }

        let space = Space::from_name(&request.configuration.hnsw.space).ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid HNSW space [{}]",
                request.configuration.hnsw.space
            ))
        })?;
        let mut entry = CollectionEntry {
            id: Uuid::new_v4(),
            name: request.name,
            tenant: tenant.to_string(),
            database: database.to_string(),
            database_id,
            configuration: request.configuration,
            metadata: request.metadata,
            schema: request.schema,
            position: 0,
            records: Records::new(RecordSet::new(space, None), Upkeep::default()),
        };
        let row = entry.to_row();
        entry.position = self
            .store
            .lock()
            .create_collection(&row)
            .map_err(internal)?;
        let response = entry.to_response();
        catalog.collections.insert(entry.id, entry);
        Ok(response)
    }

    pub fn get_collection_by_name(
        &self,
        tenant: &str,
        database: &str,
        name: &str,
    ) -> Result<CollectionResponse, ApiError> {
        let catalog = self.catalog.read();
        catalog.require_tenant(tenant)?;
        let database_id = &catalog.require_database(tenant, database)?.id;
        catalog
            .collection_named(database_id, name)
            .map(CollectionEntry::to_response)
            .ok_or_else(|| collection_not_found(name))
    }

    pub fn get_collection_by_id(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
    ) -> Result<CollectionResponse, ApiError> {
        let catalog = self.catalog.read();
        Ok(catalog.collection_in(tenant, database, id)?.to_response())
    }

    /// Renames a collection, replaces its metadata, or updates its configuration and
    /// the matching vector index settings of its schema.
    pub fn update_collection(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
        request: UpdateCollection,
    ) -> Result<(), ApiError> {
        let mut catalog = self.catalog.write();
        let entry = catalog.collection_in(tenant, database, id)?;

        if let Some(new_name) = &request.new_name {
            if let Some(other) = catalog.collection_named(&entry.database_id, new_name) {
                if other.id != id {
                    return Err(ApiError::conflict(format!(
                        "Collection [{new_name}] already exists"
                    )));
                }
            }
        }
        let mut configuration = entry.configuration.clone();
        let mut schema = entry.schema.clone();
        if let Some(update) = &request.new_configuration {
            configuration.apply_update(update, self.limits.max_embedding_function_bytes)?;
            schema.apply_configuration_update(update, &configuration);
            configuration = schema.configuration();
        }

        let Some(entry) = catalog.collections.get_mut(&id) else {
            return Err(collection_not_found(&id.to_string()));
        };
        let previous = (
            entry.name.clone(),
            entry.metadata.clone(),
            entry.configuration.clone(),
            entry.schema.clone(),
        );
        if let Some(new_name) = request.new_name {
            entry.name = new_name;
        }
        if let Some(new_metadata) = request.new_metadata {
            entry.metadata = Some(new_metadata);
        }
        entry.configuration = configuration;
        entry.schema = schema;

        let row = entry.to_row();
        if let Err(error) = self.store.lock().update_collection(&row) {
            (
                entry.name,
                entry.metadata,
                entry.configuration,
                entry.schema,
            ) = previous;
            return Err(internal(error));
        }
        Ok(())
    }

    /// Deletes a collection by name, with its records.
    pub fn delete_collection_by_name(
        &self,
        tenant: &str,
        database: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let mut catalog = self.catalog.write();
        catalog.require_tenant(tenant)?;
        let database_id = catalog.require_database(tenant, database)?.id.clone();
        let id = catalog
            .collection_named(&database_id, name)
            .map(|entry| entry.id)
            .ok_or_else(|| collection_not_found(name))?;

        self.store
            .lock()
            .delete_collection(&id.to_string())
            .map_err(internal)?;
        if let Some(entry) = catalog.collections.remove(&id) {
            entry.records.mark_deleted();
        }
        Ok(())
    }
}
