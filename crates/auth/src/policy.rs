//! The policy file: grants of actions to principals on resources.
//!
//! ```toml
//! [[grant]]
//! principal = "admin"                  # a certificate identity
//! actions = ["read", "write", "admin"]
//! tenant = "*"                         # an exact name, or "*" for any
//! database = "*"
//! collection = "*"
//! ```
//!
//! A request is allowed when one grant names its principal and action and its patterns
//! match the tenant, database and collection the request touches. A request on a
//! tenant or database as a whole (listing its databases, say) needs a grant whose
//! deeper patterns are `*`. Everything else is denied.

use serde::Deserialize;

/// The kind of operation a request performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Get, query, count and list.
    Read,
    /// Add, upsert, update and delete records.
    Write,
    /// Create, modify and delete collections, databases and tenants.
    Admin,
}

/// The resource a request touches. `None` below a component means the request acts on
/// the component above as a whole; `tenant: None` is the whole server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resource<'a> {
    pub tenant: Option<&'a str>,
    pub database: Option<&'a str>,
    pub collection: Option<&'a str>,
}

/// An error in a policy file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    #[error("invalid policy: grant {index} has an empty {field}")]
    Empty { index: usize, field: &'static str },
    #[error("invalid policy: grant {index} has {field} pattern [{pattern}]; a pattern is an exact name or \"*\" alone")]
    Wildcard {
        index: usize,
        field: &'static str,
        pattern: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    grant: Vec<Grant>,
}

/// One grant: a principal may perform `actions` on resources matching the patterns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub principal: String,
    pub actions: Vec<Action>,
    pub tenant: String,
    pub database: String,
    pub collection: String,
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    grants: Vec<Grant>,
}

/// The policy written into a new data directory: principal `admin` may do everything.
pub const DEVELOPMENT_POLICY: &str = r#"# Ravelin access policy. Anything not granted here is denied.
# Each grant gives a principal (a client certificate's identity) actions on the
# tenants, databases and collections its patterns match ("*" matches any name).

[[grant]]
principal = "admin"
actions = ["read", "write", "admin"]
tenant = "*"
database = "*"
collection = "*"
"#;

fn matches(pattern: &str, name: Option<&str>) -> bool {
    match name {
        Some(name) => pattern == "*" || pattern == name,
        None => pattern == "*",
    }
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text)?;
        for (index, grant) in file.grant.iter().enumerate() {
            let fields = [
                ("principal", &grant.principal),
                ("tenant", &grant.tenant),
                ("database", &grant.database),
                ("collection", &grant.collection),
            ];
            for (field, value) in fields {
                if value.is_empty() {
                    return Err(PolicyError::Empty { index, field });
                }
                if field != "principal" && value.contains('*') && value != "*" {
                    return Err(PolicyError::Wildcard {
                        index,
                        field,
                        pattern: value.clone(),
                    });
                }
            }
            if grant.actions.is_empty() {
                return Err(PolicyError::Empty {
                    index,
                    field: "actions",
                });
            }
        }
        Ok(Policy { grants: file.grant })
    }

    /// Returns whether any grant names the principal.
    pub fn knows(&self, principal: &str) -> bool {
        self.grants.iter().any(|grant| grant.principal == principal)
    }

    /// Returns whether any grant of the principal lies inside the tenant, and inside the
    /// database when one is given, whatever its actions. Such a principal may read the
    /// tenant or database record itself (its name and id), because the stock clients
    /// fetch both when they connect. Listing what they contain still needs a `read`
    /// grant.
    pub fn reaches(&self, principal: &str, tenant: &str, database: Option<&str>) -> bool {
        self.grants.iter().any(|grant| {
            grant.principal == principal
                && matches(&grant.tenant, Some(tenant))
                && database.is_none_or(|database| matches(&grant.database, Some(database)))
        })
    }

    /// Decides one request.
    pub fn allows(&self, principal: &str, action: Action, resource: Resource<'_>) -> bool {
        self.grants.iter().any(|grant| {
            grant.principal == principal
                && grant.actions.contains(&action)
                && matches(&grant.tenant, resource.tenant)
                && (resource.tenant.is_none() || matches(&grant.database, resource.database))
                && (resource.tenant.is_none()
                    || resource.database.is_none()
                    || matches(&grant.collection, resource.collection))
                && (resource.tenant.is_some() || (grant.database == "*" && grant.collection == "*"))
                && (resource.database.is_some() || grant.collection == "*")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource<'a>(
        tenant: Option<&'a str>,
        database: Option<&'a str>,
        collection: Option<&'a str>,
    ) -> Resource<'a> {
        Resource {
            tenant,
            database,
            collection,
        }
    }

    #[test]
    fn development_policy_grants_admin_everything() {
        let policy = Policy::parse(DEVELOPMENT_POLICY).unwrap();
        for action in [Action::Read, Action::Write, Action::Admin] {
            assert!(policy.allows("admin", action, resource(None, None, None)));
            assert!(policy.allows("admin", action, resource(Some("t"), Some("d"), Some("c"))));
        }
        assert!(!policy.allows(
            "stranger",
            Action::Read,
            resource(Some("t"), Some("d"), Some("c"))
        ));
        assert!(!policy.knows("stranger"));
    }

    #[test]
    fn narrow_grant_stays_narrow() {
        let policy = Policy::parse(
            r#"
            [[grant]]
            principal = "reader"
            actions = ["read"]
            tenant = "t"
            database = "d"
            collection = "*"
            "#,
        )
        .unwrap();
        assert!(policy.allows(
            "reader",
            Action::Read,
            resource(Some("t"), Some("d"), Some("c"))
        ));
        assert!(policy.allows("reader", Action::Read, resource(Some("t"), Some("d"), None)));
        assert!(!policy.allows(
            "reader",
            Action::Write,
            resource(Some("t"), Some("d"), Some("c"))
        ));
        assert!(!policy.allows(
            "reader",
            Action::Read,
            resource(Some("t"), Some("other"), Some("c"))
        ));
        assert!(!policy.allows("reader", Action::Read, resource(Some("t"), None, None)));
        assert!(!policy.allows("reader", Action::Read, resource(None, None, None)));
    }

    #[test]
    fn narrow_grant_reaches_its_tenant_and_database() {
        let policy = Policy::parse(
            r#"
            [[grant]]
            principal = "ingest"
            actions = ["write"]
            tenant = "t"
            database = "d"
            collection = "articles"
            "#,
        )
        .unwrap();
        assert!(policy.reaches("ingest", "t", None));
        assert!(policy.reaches("ingest", "t", Some("d")));
        assert!(!policy.reaches("ingest", "t", Some("other")));
        assert!(!policy.reaches("ingest", "u", None));
        assert!(!policy.reaches("stranger", "t", None));
    }

    #[test]
    fn partial_wildcards_rejected() {
        let text = "[[grant]]\nprincipal = \"a\"\nactions = [\"read\"]\ntenant = \"default_*\"\ndatabase = \"*\"\ncollection = \"*\"\n";
        let error = Policy::parse(text).unwrap_err();
        assert!(error.to_string().contains("default_*"), "{error}");
    }

    #[test]
    fn unknown_keys_rejected() {
        let text = "[[grant]]\nprincipal = \"a\"\nactions = [\"read\"]\ntenant = \"*\"\ndatabase = \"*\"\ncollection = \"*\"\nextra = 1\n";
        assert!(Policy::parse(text).is_err());
        assert!(Policy::parse("allow_all = true").is_err());
    }

    #[test]
    fn unknown_action_rejected() {
        let text = "[[grant]]\nprincipal = \"a\"\nactions = [\"everything\"]\ntenant = \"*\"\ndatabase = \"*\"\ncollection = \"*\"\n";
        assert!(Policy::parse(text).is_err());
    }

    #[test]
    fn empty_policy_denies_everything() {
        let policy = Policy::parse("").unwrap();
        assert!(!policy.allows(
            "admin",
            Action::Read,
            resource(Some("t"), Some("d"), Some("c"))
        ));
    }
}
