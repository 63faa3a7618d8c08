//! Identities and authorization decisions.
//!
//! A principal is the identity of a verified client certificate: its first SAN URI (a
//! SPIFFE id, for example), else its first SAN DNS name, else its subject common name.
//! The policy file grants principals actions on tenant, database and collection
//! patterns; anything not granted is denied. This crate does no I/O: callers read the
//! policy file and pass certificates in DER form.
//!
//! - [`identity`]: the principal of a certificate.
//! - [`policy`]: the policy file and the decision for one request.
//! - [`token`]: bearer tokens and the token file.
//!
//! The hidden `fuzzing` module contains the checks that the fuzz targets in `fuzz/` and
//! the corpus replay test run on each input.

#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod policy;
pub mod token;

pub use identity::{principal_from_certificate, IdentityError};
pub use policy::{Action, Decision, Grant, Level, Policy, PolicyError, Reach, Resource, Subject};
