//! Fuzzing harnesses for the parsers that take untrusted input: client certificates
//! and the policy file.
//!
//! Each harness takes arbitrary bytes, runs one parser on them and checks what it
//! returns. It panics when a check fails, so a fuzzer reports the input as a crash. The
//! cargo-fuzz targets in `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs` both
//! call these functions.

use std::collections::BTreeSet;

use crate::identity::{principal_from_certificate, IdentityError};
use crate::policy::{Action, Decision, Grant, Level, Policy, Resource, Subject};

/// Principals whose decisions are checked on every parsed policy, besides the ones it
/// names.
const FIXED_PRINCIPALS: [&str; 3] = ["admin", "spiffe://example.org/etl", "stranger"];

/// Names used at each resource level on every parsed policy, besides the ones its
/// grants name.
const FIXED_NAMES: [&str; 2] = ["acme", "*"];

/// Maximum number of principals, and of names per resource level, taken from a
/// policy's own grants.
/// The decisions checked grow with the product of these counts, so they stay small.
const MAX_NAMES_FROM_POLICY: usize = 3;

/// Derives the principal of `der` and checks that a principal is non-empty text
/// without control characters, and that the result is the same on a second call.
///
/// # Panics
///
/// When parsing panics or a check fails.
pub fn check_certificate_identity(der: &[u8]) {
    let result = principal_from_certificate(der);
    match &result {
        Ok(principal) => {
            assert!(!principal.is_empty(), "an empty principal was returned");
            assert!(
                !principal.chars().any(char::is_control),
                "the principal [{}] has control characters",
                principal.escape_default()
            );
            assert!(
                principal.len() <= der.len(),
                "a principal longer than the certificate was returned"
            );
        }
        Err(error) => assert_ne!(
            *error,
            IdentityError::NoCertificate,
            "a certificate was reported missing"
        ),
    }
    assert_eq!(
        principal_from_certificate(der),
        result,
        "two calls on one certificate disagree"
    );
}

/// Parses `input` as a UTF-8 policy file and, when it parses, checks the grants and
/// requests decisions on fixed principals and resources and on the ones the policy
/// names. Each decision is compared with one computed directly from the grants, as the
/// policy module documents the rules.
///
/// # Panics
///
/// When parsing or a decision panics, or a decision disagrees with the grants.
pub fn check_policy_parse(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let policy = match Policy::parse(text) {
        Ok(policy) => policy,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "an empty policy error");
            return;
        }
    };
    for grant in policy.grants() {
        check_grant(grant);
    }

    let principals = principals_to_ask(&policy);
    let resources = resources_to_ask(&policy);
    let named = policy.principals();
    for principal in &principals {
        let knows = policy.knows(principal);
        assert!(
            !knows || named.contains(principal.as_str()),
            "principals() misses [{principal}], which has grants"
        );
        check_reach(&policy, principal);
        for action in [Action::Read, Action::Write, Action::Admin] {
            for resource in &resources {
                check_decision(&policy, principal, action, *resource);
            }
        }
    }
}

fn check_grant(grant: &Grant) {
    let subject = match &grant.subject {
        Subject::Principal(name) | Subject::Role(name) => name,
    };
    assert!(!subject.is_empty(), "a grant with an empty subject parsed");
    assert!(!grant.actions.is_empty(), "a grant without actions parsed");
    for pattern in [&grant.tenant, &grant.database, &grant.collection] {
        assert!(
            pattern == "*" || (!pattern.is_empty() && !pattern.contains('*')),
            "a grant with the pattern [{pattern}] parsed"
        );
    }
    let description = grant.describe();
    assert!(
        description.contains(&format!("tenant [{}]", grant.tenant)),
        "the grant description [{description}] omits the tenant"
    );
}

fn principals_to_ask(policy: &Policy) -> Vec<String> {
    let mut principals: BTreeSet<String> = FIXED_PRINCIPALS
        .iter()
        .map(|name| name.to_string())
        .collect();
    principals.extend(
        policy
            .principals()
            .into_iter()
            .take(MAX_NAMES_FROM_POLICY)
            .map(str::to_string),
    );
    // A role name is not a principal, so it must get only the grants it has itself.
    principals.extend(
        policy
            .grants()
            .iter()
            .filter_map(|grant| match &grant.subject {
                Subject::Role(role) => Some(role.clone()),
                Subject::Principal(_) => None,
            })
            .take(MAX_NAMES_FROM_POLICY),
    );
    principals.into_iter().collect()
}

/// Returns the whole server, and every tenant, database and collection built from the
/// fixed names and the names the grants use, at each level.
fn resources_to_ask(policy: &Policy) -> Vec<Resource<'_>> {
    let names = |pattern: fn(&Grant) -> &str| -> Vec<&str> {
        let mut names: BTreeSet<&str> = FIXED_NAMES.into_iter().collect();
        names.extend(
            policy
                .grants()
                .iter()
                .map(pattern)
                .filter(|name| *name != "*")
                .take(MAX_NAMES_FROM_POLICY),
        );
        names.into_iter().collect()
    };
    let tenants = names(|grant| grant.tenant.as_str());
    let databases = names(|grant| grant.database.as_str());
    let collections = names(|grant| grant.collection.as_str());

    let mut resources = vec![Resource::default()];
    for tenant in &tenants {
        resources.push(Resource {
            tenant: Some(tenant),
            database: None,
            collection: None,
        });
        for database in &databases {
            resources.push(Resource {
                tenant: Some(tenant),
                database: Some(database),
                collection: None,
            });
            for collection in &collections {
                resources.push(Resource {
                    tenant: Some(tenant),
                    database: Some(database),
                    collection: Some(collection),
                });
            }
        }
    }
    resources
}

/// Returns whether a grant pattern matches a resource component. A component that is
/// absent, because the request acts on the level above as a whole, needs `*`.
fn pattern_matches(pattern: &str, name: Option<&str>) -> bool {
    pattern == "*" || name == Some(pattern)
}

/// Returns whether the grant applies to the principal, directly or through a role.
fn names_principal(policy: &Policy, grant: &Grant, principal: &str) -> bool {
    match &grant.subject {
        Subject::Principal(name) => name == principal,
        Subject::Role(role) => policy.roles_of(principal).any(|name| name == role),
    }
}

/// Returns the grants of `principal`, found by scanning every grant.
fn grants_of<'a>(policy: &'a Policy, principal: &'a str) -> impl Iterator<Item = &'a Grant> {
    policy
        .grants()
        .iter()
        .filter(move |grant| names_principal(policy, grant, principal))
}

fn expected_decision(
    policy: &Policy,
    principal: &str,
    action: Action,
    resource: Resource<'_>,
) -> Decision {
    let allowed = grants_of(policy, principal).any(|grant| {
        grant.actions.contains(&action)
            && pattern_matches(&grant.tenant, resource.tenant)
            && pattern_matches(&grant.database, resource.database)
            && pattern_matches(&grant.collection, resource.collection)
    });
    if allowed {
        return Decision::Allowed;
    }

    let Some(tenant) = resource.tenant else {
        return Decision::Forbidden;
    };
    let in_tenant: Vec<&Grant> = grants_of(policy, principal)
        .filter(|grant| pattern_matches(&grant.tenant, Some(tenant)))
        .collect();
    if in_tenant.is_empty() {
        return Decision::Hidden(Level::Tenant);
    }
    let Some(database) = resource.database else {
        return Decision::Forbidden;
    };
    let in_database: Vec<&Grant> = in_tenant
        .into_iter()
        .filter(|grant| pattern_matches(&grant.database, Some(database)))
        .collect();
    if in_database.is_empty() {
        return Decision::Hidden(Level::Database);
    }
    let Some(collection) = resource.collection else {
        return Decision::Forbidden;
    };
    if in_database
        .iter()
        .any(|grant| pattern_matches(&grant.collection, Some(collection)))
    {
        Decision::Forbidden
    } else {
        Decision::Hidden(Level::Collection)
    }
}

fn check_decision(policy: &Policy, principal: &str, action: Action, resource: Resource<'_>) {
    let decision = policy.decide(principal, action, resource);
    let allowed = policy.allows(principal, action, resource);
    assert_eq!(
        decision == Decision::Allowed,
        allowed,
        "decide and allows disagree for [{principal}] {action:?} on {resource:?}"
    );
    assert_eq!(
        decision,
        expected_decision(policy, principal, action, resource),
        "the decision for [{principal}] {action:?} on {resource:?} disagrees with the grants"
    );
    if allowed {
        assert!(policy.knows(principal), "an unknown principal was allowed");
    }

    // A grant that covers a level as a whole covers everything inside it.
    if allowed && resource.collection.is_none() {
        let inner = Resource {
            tenant: resource.tenant.or(Some("inner-tenant")),
            database: resource.database.or(Some("inner-database")),
            collection: Some("inner-collection"),
        };
        assert!(
            policy.allows(principal, action, inner),
            "[{principal}] may {action:?} {resource:?} but not {inner:?} inside it"
        );
    }
}

fn check_reach(policy: &Policy, principal: &str) {
    let reach = policy.reach(principal);
    let tenants: BTreeSet<&str> = grants_of(policy, principal)
        .map(|grant| grant.tenant.as_str())
        .collect();
    match reach.tenant.as_deref() {
        None => {
            assert!(tenants.is_empty(), "reach has no tenant for [{principal}]");
            assert!(
                reach.databases.is_empty(),
                "reach has databases but no tenant"
            );
        }
        Some("*") => assert!(
            tenants.len() > 1 || tenants.contains("*"),
            "reach reports every tenant for [{principal}], whose grants name {tenants:?}"
        ),
        Some(tenant) => {
            assert_eq!(
                tenants.into_iter().collect::<Vec<_>>(),
                [tenant],
                "reach reports the tenant [{tenant}] for [{principal}]"
            );
            assert!(
                !reach.databases.is_empty(),
                "reach has a tenant but no databases"
            );
        }
    }
}
