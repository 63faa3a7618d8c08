//! Limits on the size of decoded requests.

use crate::filter::FilterLimits;
use crate::metadata::MetadataLimits;

/// Limits applied while decoding request bodies. The server reports `max_batch_size`
/// to clients in the pre-flight response, and every message that rejects a request
/// names the limit it hit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum records in one write, ids in one get or delete, and query embeddings in
    /// one query. Default 5461, the value Chroma's single-node server advertises, so
    /// client code that batches for Chroma works unchanged.
    pub max_batch_size: usize,
    /// Maximum length of a record id in bytes. Default 4096.
    pub max_id_bytes: usize,
    /// Maximum length of a document or URI in bytes. Default 4 MiB.
    pub max_document_bytes: usize,
    /// Maximum dimension of an embedding. Default 65,536.
    pub max_dimension: usize,
    /// Maximum `n_results` of a query. Default 100,000.
    pub max_n_results: usize,
    /// Maximum `limit` of a get. Default 1,000,000.
    pub max_get_limit: usize,
    /// Maximum size of an embedding-function configuration, serialized, in bytes.
    /// Default 64 KiB.
    pub max_embedding_function_bytes: usize,
    /// Queries whose candidate vectors total at most this many bytes are served by
    /// an exact scan instead of the HNSW index, and a collection gets an index only
    /// once its vectors pass this size. Default 4 MiB: about 2,700 vectors of 384
    /// dimensions. Scanning that many takes about 0.1 ms longer than searching the
    /// index, a fifth of a single query's round trip through the stock client
    /// (measured with `bench/server`, see docs/BENCHMARKS.md). Small collections and
    /// narrow filters therefore get exact results at little cost.
    pub exact_scan_max_vector_bytes: usize,
    /// The maximum time one query request may search, all its query embeddings together.
    /// A request past it stops and fails with 408 instead of holding a thread.
    /// Default 30 s.
    pub query_timeout: std::time::Duration,
    pub metadata: MetadataLimits,
    pub filter: FilterLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_size: 5461,
            max_id_bytes: 4096,
            max_document_bytes: 4 * 1024 * 1024,
            max_dimension: 65_536,
            max_n_results: 100_000,
            max_get_limit: 1_000_000,
            max_embedding_function_bytes: 64 * 1024,
            exact_scan_max_vector_bytes: 4 * 1024 * 1024,
            query_timeout: std::time::Duration::from_secs(30),
            metadata: MetadataLimits::default(),
            filter: FilterLimits::default(),
        }
    }
}
