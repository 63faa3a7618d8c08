//! The policy file: roles, and grants of actions to principals or roles on resources.
//!
//! ```toml
//! [[role]]
//! name = "ingest"
//! members = ["spiffe://example.org/etl", "etl-backfill"]
//!
//! [[grant]]
//! principal = "admin"                  # a certificate identity
//! actions = ["read", "write", "admin"]
//! tenant = "*"                         # an exact name, or "*" for any
//! database = "*"
//! collection = "*"
//!
//! [[grant]]
//! role = "ingest"                      # every member of the role
//! actions = ["write"]
//! tenant = "acme"
//! database = "prod"
//! collection = "articles"
//! ```
//!
//! A request is allowed when one grant names its principal (directly or through a
//! role) and its action, and the grant's patterns match the tenant, database and
//! collection the request touches. A request on a tenant or database as a whole
//! (listing its databases, say) needs a grant whose deeper patterns are `*`.
//! Everything else is denied.
//!
//! [`Policy::decide`] also returns how to deny. A resource that none of the principal's
//! grants reach, whatever their actions, is hidden: the caller responds as if it did
//! not exist. A resource the principal reaches but may not act on this way is
//! forbidden.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// The kind of operation a request performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Get, query, count and list.
    Read,
    /// Add, upsert, update and delete records.
    Write,
    /// Create, modify and delete collections, databases and tenants.
    Admin,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Admin => "admin",
        }
    }
}

/// The resource a request touches. `None` below a component means the request acts on
/// the component above as a whole; `tenant: None` is the whole server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resource<'a> {
    pub tenant: Option<&'a str>,
    pub database: Option<&'a str>,
    pub collection: Option<&'a str>,
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// The principal reaches the resource but may not perform the action on it.
    Forbidden,
    /// No grant of the principal reaches this component of the resource, so the
    /// response must be the one for a resource that does not exist.
    Hidden(Level),
}

/// A component of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Tenant,
    Database,
    Collection,
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
    #[error("invalid policy: grant {index} must name either a principal or a role, not {found}")]
    Subject { index: usize, found: &'static str },
    #[error("invalid policy: grant {index} names role [{role}], which no [[role]] defines")]
    UnknownRole { index: usize, role: String },
    #[error("invalid policy: role [{role}] {problem}")]
    Role { role: String, problem: &'static str },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    role: Vec<RoleEntry>,
    #[serde(default)]
    grant: Vec<GrantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    name: String,
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    principal: Option<String>,
    role: Option<String>,
    actions: Vec<Action>,
    tenant: String,
    database: String,
    collection: String,
}

/// The subject of a grant: one principal, or every member of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Principal(String),
    Role(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Principal(name) => write!(formatter, "principal [{name}]"),
            Subject::Role(name) => write!(formatter, "role [{name}]"),
        }
    }
}

/// One grant: its subject may perform `actions` on resources matching the patterns.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: Subject,
    pub actions: Vec<Action>,
    pub tenant: String,
    pub database: String,
    pub collection: String,
}

impl Grant {
    /// Describes the grant's actions and patterns, e.g. `read, write on tenant [t],
    /// database [*], collection [*]`.
    pub fn describe(&self) -> String {
        let actions: Vec<&str> = self.actions.iter().map(|action| action.name()).collect();
        format!(
            "{} on tenant [{}], database [{}], collection [{}]",
            actions.join(", "),
            self.tenant,
            self.database,
            self.collection
        )
    }
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    grants: Vec<Grant>,
    /// Role name to members.
    roles: BTreeMap<String, BTreeSet<String>>,
}

/// The tenants and databases a principal's grants reach, in the form of Chroma's
/// `/auth/identity`. The tenant is the one every grant names, or `*` when the grants
/// name several or any. The databases are that tenant's database patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub tenant: Option<String>,
    pub databases: Vec<String>,
}

/// The policy written into a new data directory: principal `admin` may do everything.
pub const DEVELOPMENT_POLICY: &str = r#"# Ravelin access policy. Anything not granted here is denied.
# Each grant gives a principal (a client certificate's identity) or a role actions on
# the tenants, databases and collections its patterns match ("*" matches any name).
# docs/policy.md describes the file.

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
        let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for role in file.role {
            let problem = if role.name.is_empty() {
                Some("has an empty name")
            } else if role.members.iter().any(String::is_empty) {
                Some("has an empty member")
            } else if roles.contains_key(&role.name) {
                Some("is defined twice")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(PolicyError::Role {
                    role: role.name,
                    problem,
                });
            }
            roles.insert(role.name, role.members.into_iter().collect());
        }

        let mut grants = Vec::with_capacity(file.grant.len());
        for (index, entry) in file.grant.into_iter().enumerate() {
            let subject = match (entry.principal, entry.role) {
                (Some(principal), None) => Subject::Principal(principal),
                (None, Some(role)) => Subject::Role(role),
                (Some(_), Some(_)) => {
                    return Err(PolicyError::Subject {
                        index,
                        found: "both",
                    })
                }
                (None, None) => {
                    return Err(PolicyError::Subject {
                        index,
                        found: "neither",
                    })
                }
            };
            let subject_name = match &subject {
                Subject::Principal(name) => ("principal", name),
                Subject::Role(name) => ("role", name),
            };
            let fields = [
                subject_name,
                ("tenant", &entry.tenant),
                ("database", &entry.database),
                ("collection", &entry.collection),
            ];
            for (field, value) in fields {
                if value.is_empty() {
                    return Err(PolicyError::Empty { index, field });
                }
                let pattern = !matches!(field, "principal" | "role");
                if pattern && value.contains('*') && value != "*" {
                    return Err(PolicyError::Wildcard {
                        index,
                        field,
                        pattern: value.clone(),
                    });
                }
            }
            if let Subject::Role(role) = &subject {
                if !roles.contains_key(role) {
                    return Err(PolicyError::UnknownRole {
                        index,
                        role: role.clone(),
                    });
                }
            }
            if entry.actions.is_empty() {
                return Err(PolicyError::Empty {
                    index,
                    field: "actions",
                });
            }
            grants.push(Grant {
                subject,
                actions: entry.actions,
                tenant: entry.tenant,
                database: entry.database,
                collection: entry.collection,
            });
        }
        Ok(Policy { grants, roles })
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Returns every principal the policy names, directly or as a role member.
    pub fn principals(&self) -> BTreeSet<&str> {
        let direct = self.grants.iter().filter_map(|grant| match &grant.subject {
            Subject::Principal(name) => Some(name.as_str()),
            Subject::Role(_) => None,
        });
        let members = self.roles.values().flatten().map(String::as_str);
        direct.chain(members).collect()
    }

    /// Returns the roles the principal is a member of.
    pub fn roles_of<'a>(&'a self, principal: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.roles
            .iter()
            .filter(move |(_, members)| members.contains(principal))
            .map(|(name, _)| name.as_str())
    }

    /// Returns the grants that apply to the principal.
    pub fn grants_of<'a>(&'a self, principal: &'a str) -> impl Iterator<Item = &'a Grant> + 'a {
        self.grants
            .iter()
            .filter(move |grant| match &grant.subject {
                Subject::Principal(name) => name == principal,
                Subject::Role(role) => self
                    .roles
                    .get(role)
                    .is_some_and(|members| members.contains(principal)),
            })
    }

    /// Returns whether any grant applies to the principal.
    pub fn knows(&self, principal: &str) -> bool {
        self.grants_of(principal).next().is_some()
    }

    /// Returns whether any grant of the principal lies inside the tenant, and inside the
    /// database when one is given, whatever its actions. Such a principal may read the
    /// tenant or database record itself (its name and id), because the stock clients
    /// fetch both when they connect. Listing what they contain still needs a `read`
    /// grant.
    pub fn reaches(&self, principal: &str, tenant: &str, database: Option<&str>) -> bool {
        self.grants_of(principal).any(|grant| {
            matches(&grant.tenant, Some(tenant))
                && database.is_none_or(|database| matches(&grant.database, Some(database)))
        })
    }

    /// Returns whether any grant of the principal matches the collection, whatever
    /// its actions. Such a principal may read the collection record (its name, id and
    /// configuration), which a client needs before it can touch the records.
    pub fn reaches_collection(
        &self,
        principal: &str,
        tenant: &str,
        database: &str,
        collection: &str,
    ) -> bool {
        self.grants_of(principal).any(|grant| {
            matches(&grant.tenant, Some(tenant))
                && matches(&grant.database, Some(database))
                && matches(&grant.collection, Some(collection))
        })
    }

    /// Returns whether the principal may perform the action on the resource.
    pub fn allows(&self, principal: &str, action: Action, resource: Resource<'_>) -> bool {
        self.grants_of(principal).any(|grant| {
            grant.actions.contains(&action)
                && matches(&grant.tenant, resource.tenant)
                && (resource.tenant.is_none() || matches(&grant.database, resource.database))
                && (resource.tenant.is_none()
                    || resource.database.is_none()
                    || matches(&grant.collection, resource.collection))
                && (resource.tenant.is_some() || (grant.database == "*" && grant.collection == "*"))
                && (resource.database.is_some() || grant.collection == "*")
        })
    }

    /// Decides one request, and when it is denied, whether to respond as if the
    /// resource did not exist. Components are checked from the tenant down, as the
    /// engine checks that they exist, so a hidden resource gets the engine's
    /// not-found error for the same component.
    pub fn decide(&self, principal: &str, action: Action, resource: Resource<'_>) -> Decision {
        if self.allows(principal, action, resource) {
            return Decision::Allowed;
        }
        let Some(tenant) = resource.tenant else {
            return Decision::Forbidden;
        };
        if !self.reaches(principal, tenant, None) {
            return Decision::Hidden(Level::Tenant);
        }
        let Some(database) = resource.database else {
            return Decision::Forbidden;
        };
        if !self.reaches(principal, tenant, Some(database)) {
            return Decision::Hidden(Level::Database);
        }
        match resource.collection {
            Some(collection)
                if !self.reaches_collection(principal, tenant, database, collection) =>
            {
                Decision::Hidden(Level::Collection)
            }
            _ => Decision::Forbidden,
        }
    }

    /// Returns the tenant and databases the principal's grants reach, for
    /// `/auth/identity`.
    pub fn reach(&self, principal: &str) -> Reach {
        let tenants: BTreeSet<&str> = self
            .grants_of(principal)
            .map(|grant| grant.tenant.as_str())
            .collect();
        let tenant = match tenants.len() {
            0 => None,
            1 => tenants.first().map(|tenant| tenant.to_string()),
            _ => Some("*".to_string()),
        };
        let databases = match tenant.as_deref() {
            None => Vec::new(),
            Some("*") => vec!["*".to_string()],
            Some(tenant) => {
                let patterns: BTreeSet<&str> = self
                    .grants_of(principal)
                    .filter(|grant| grant.tenant == tenant)
                    .map(|grant| grant.database.as_str())
                    .collect();
                if patterns.contains("*") {
                    vec!["*".to_string()]
                } else {
                    patterns.into_iter().map(str::to_string).collect()
                }
            }
        };
        Reach { tenant, databases }
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

    const ROLES: &str = r#"
        [[role]]
        name = "ingest"
        members = ["spiffe://example.org/etl", "backfill"]

        [[grant]]
        role = "ingest"
        actions = ["write"]
        tenant = "acme"
        database = "prod"
        collection = "articles"

        [[grant]]
        principal = "backfill"
        actions = ["read"]
        tenant = "acme"
        database = "prod"
        collection = "*"
    "#;

    #[test]
    fn role_members_get_the_role_grants() {
        let policy = Policy::parse(ROLES).unwrap();
        let articles = resource(Some("acme"), Some("prod"), Some("articles"));
        for member in ["spiffe://example.org/etl", "backfill"] {
            assert!(policy.allows(member, Action::Write, articles), "{member}");
        }
        assert!(!policy.allows("spiffe://example.org/etl", Action::Read, articles));
        assert!(policy.allows("backfill", Action::Read, articles));
        assert!(
            !policy.allows("ingest", Action::Write, articles),
            "a role is not a principal"
        );
        let principals: Vec<&str> = policy.principals().into_iter().collect();
        assert_eq!(principals, ["backfill", "spiffe://example.org/etl"]);
        assert_eq!(policy.roles_of("backfill").collect::<Vec<_>>(), ["ingest"]);
    }

    #[test]
    fn decide_hides_what_the_principal_does_not_reach() {
        let policy = Policy::parse(ROLES).unwrap();
        let etl = "spiffe://example.org/etl";
        let decide = |action, tenant, database, collection| {
            policy.decide(etl, action, resource(tenant, database, collection))
        };
        let (acme, prod) = (Some("acme"), Some("prod"));
        assert_eq!(
            decide(Action::Write, acme, prod, Some("articles")),
            Decision::Allowed
        );
        assert_eq!(
            decide(Action::Read, acme, prod, Some("articles")),
            Decision::Forbidden
        );
        assert_eq!(
            decide(Action::Write, acme, prod, Some("payroll")),
            Decision::Hidden(Level::Collection)
        );
        assert_eq!(
            decide(Action::Read, acme, Some("staging"), None),
            Decision::Hidden(Level::Database)
        );
        assert_eq!(
            decide(Action::Admin, Some("globex"), prod, Some("articles")),
            Decision::Hidden(Level::Tenant)
        );
        assert_eq!(decide(Action::Read, acme, prod, None), Decision::Forbidden);
        assert_eq!(decide(Action::Admin, None, None, None), Decision::Forbidden);
        assert_eq!(
            policy.decide(
                "stranger",
                Action::Read,
                resource(acme, prod, Some("articles"))
            ),
            Decision::Hidden(Level::Tenant)
        );
    }

    #[test]
    fn reach_reports_a_single_tenant_and_its_databases() {
        let policy = Policy::parse(ROLES).unwrap();
        let reach = policy.reach("backfill");
        assert_eq!(reach.tenant.as_deref(), Some("acme"));
        assert_eq!(reach.databases, ["prod"]);
        let admin = Policy::parse(DEVELOPMENT_POLICY).unwrap().reach("admin");
        assert_eq!(
            (admin.tenant.as_deref(), admin.databases),
            (Some("*"), vec!["*".to_string()])
        );
        assert_eq!(policy.reach("stranger").tenant, None);
    }

    #[test]
    fn grant_subject_must_be_one_defined_thing() {
        let grant = |subject: &str| {
            format!("[[role]]\nname = \"r\"\nmembers = [\"a\"]\n[[grant]]\n{subject}actions = [\"read\"]\ntenant = \"*\"\ndatabase = \"*\"\ncollection = \"*\"\n")
        };
        assert!(Policy::parse(&grant("role = \"r\"\n")).is_ok());
        for (subject, expected) in [
            ("", "neither"),
            ("principal = \"a\"\nrole = \"r\"\n", "both"),
            ("role = \"missing\"\n", "missing"),
        ] {
            let error = Policy::parse(&grant(subject)).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let twice = "[[role]]\nname = \"r\"\nmembers = []\n[[role]]\nname = \"r\"\nmembers = []\n";
        assert!(Policy::parse(twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
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
