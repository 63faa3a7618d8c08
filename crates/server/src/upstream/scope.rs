//! The tenant, database and name of collections the upstream has shown, by id.
//!
//! A collection's id is a random UUID and never moves to another tenant or database,
//! so its scope, once seen, stays true for as long as the id exists. A deleted and
//! recreated collection gets a new id. Its name can change through a rename on any
//! gateway before the same upstream, and grants can name collections, so a name is
//! trusted for [`NAME_TTL`] only and then fetched again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use api::error::{collection_not_found, ApiError};
use api::responses::CollectionResponse;
use uuid::Uuid;

use crate::routes::Scope;

/// How long a cached collection name is used before it is fetched again.
///
/// NOTE: a rename through another gateway replica reaches this one's grant decisions
/// only after this long.
pub(super) const NAME_TTL: Duration = Duration::from_secs(5);

/// Collections remembered at most. Past this the cache is emptied, which costs one
/// lookup per collection in use.
const MAX_ENTRIES: usize = 16_384;

struct Entry {
    tenant: String,
    database: String,
    name: String,
    fetched: Instant,
}

pub(super) struct ScopeCache {
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl ScopeCache {
    pub(super) fn new() -> ScopeCache {
        ScopeCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the collection's name when it is cached and fresh. Fails with the
    /// not-found error when the cached scope is another tenant or database.
    pub(super) fn name(&self, scope: &Scope, id: Uuid) -> Result<Option<String>, ApiError> {
        let entries = self.entries();
        let Some(entry) = entries.get(&id) else {
            return Ok(None);
        };
        if entry.tenant != scope.tenant || entry.database != scope.database {
            return Err(collection_not_found(&id.to_string()));
        }
        Ok((entry.fetched.elapsed() < NAME_TTL).then(|| entry.name.clone()))
    }

    pub(super) fn insert(&self, id: Uuid, collection: &CollectionResponse) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&id) {
            entries.clear();
        }
        entries.insert(
            id,
            Entry {
                tenant: collection.tenant.clone(),
                database: collection.database.clone(),
                name: collection.name.clone(),
                fetched: Instant::now(),
            },
        );
    }

    pub(super) fn forget(&self, id: Uuid) {
        self.entries().remove(&id);
    }

    /// Forgets the collection of that name in the scope, after it was deleted.
    pub(super) fn forget_name(&self, scope: &Scope, name: &str) {
        self.entries().retain(|_, entry| {
            !(entry.tenant == scope.tenant
                && entry.database == scope.database
                && entry.name == name)
        });
    }

    /// Forgets every collection of a deleted database.
    pub(super) fn forget_database(&self, scope: &Scope) {
        self.entries()
            .retain(|_, entry| !(entry.tenant == scope.tenant && entry.database == scope.database));
    }

    pub(super) fn clear(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(database: &str) -> Scope {
        Scope {
            tenant: "default_tenant".into(),
            database: database.into(),
        }
    }

    fn collection(database: &str, name: &str) -> CollectionResponse {
        CollectionResponse {
            id: String::new(),
            name: name.into(),
            configuration_json: serde_json::Value::Null,
            schema: None,
            metadata: None,
            dimension: None,
            tenant: "default_tenant".into(),
            database: database.into(),
            log_position: 0,
            version: 0,
        }
    }

    #[test]
    fn other_scope_not_found() {
        let cache = ScopeCache::new();
        let id = Uuid::new_v4();
        cache.insert(id, &collection("staging", "hidden"));
        assert_eq!(
            cache.name(&scope("staging"), id).unwrap(),
            Some("hidden".into())
        );
        let error = cache.name(&scope("prod"), id).unwrap_err();
        assert_eq!(error.status(), 404);
        assert!(error.message.contains(&id.to_string()));
    }

    #[test]
    fn deleted_names_forgotten() {
        let cache = ScopeCache::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        cache.insert(a, &collection("prod", "a"));
        cache.insert(b, &collection("prod", "b"));
        cache.forget_name(&scope("prod"), "a");
        assert_eq!(cache.name(&scope("prod"), a).unwrap(), None);
        assert_eq!(cache.name(&scope("prod"), b).unwrap(), Some("b".into()));
        cache.forget_database(&scope("prod"));
        assert_eq!(cache.name(&scope("prod"), b).unwrap(), None);
    }
}
