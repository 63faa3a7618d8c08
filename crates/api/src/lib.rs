//! Chroma API v2 wire types, decoding limits, validation and the error model.
//!
//! Untrusted request bytes become typed, validated values here, once, and handlers only
//! ever see those values. This crate does no I/O: the server crate reads bodies and
//! writes responses, and the engine executes the decoded requests.
//!
//! - [`error`]: [`ApiError`], which fixes the HTTP status and Chroma's error name.
//! - [`requests`]: request bodies decoded into typed values.
//! - [`responses`]: response bodies.
//! - [`encode`]: decoded requests encoded back to JSON, for the gateway.
//! - [`upstream`]: an upstream Chroma's responses, decoded and checked.
//! - [`metadata`]: metadata values with integers and floats kept apart.
//! - [`filter`]: the `where` and `where_document` grammar, parsed and evaluated.
//! - [`config`]: collection configuration with Chroma's defaults.
//! - [`schema`]: collection schemas, reconciled with the configuration, and the filter
//!   checks they imply.
//! - [`embedding`]: float-list and base64 embeddings.
//! - [`names`]: name rules and collection ids.
//! - [`limits`]: the size limits applied while decoding.
//!
//! The hidden `fuzzing` module contains the checks that the fuzz targets in `fuzz/` and
//! the corpus replay test run on each input.

pub mod config;
pub mod embedding;
pub mod encode;
pub mod error;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod metadata;
pub mod names;
pub mod requests;
pub mod responses;
pub mod schema;
pub mod upstream;

pub use error::{ApiError, ErrorKind};
pub use limits::Limits;
