//! `ravelin bench ann`: recall and speed of the HNSW index on `.fvecs` / `.ivecs`
//! files, one JSON object per line per `ef`.
//!
//! `.fvecs` holds, per vector, a little-endian i32 dimension and then that many f32
//! values; `.ivecs` the same with i32 values (the TEXMEX / ann-benchmarks layout).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use index::hnsw::{Hnsw, HnswParams};
use index::Space;

/// Options of `ravelin bench ann`.
#[derive(clap::Args)]
pub struct AnnArgs {
    /// Base vectors, `.fvecs`.
    #[arg(long)]
    base: PathBuf,
    /// Query vectors, `.fvecs`.
    #[arg(long)]
    queries: PathBuf,
    /// Exact nearest base indices per query, `.ivecs`, for the whole base file.
    /// With --limit, the ground truth is computed exactly over the first N vectors.
    #[arg(long)]
    ground_truth: PathBuf,
    /// Use only the first N base vectors.
    #[arg(long)]
    limit: Option<usize>,
    /// Neighbours per node (M).
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// Candidate list size while building.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Candidate list sizes to search with, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,64,100,200")]
    ef: Vec<usize>,
    /// Query threads. Only 1 is supported.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Distance space: l2, ip or cosine.
    #[arg(long, default_value = "cosine")]
    space: String,
    /// Also time an exact scan of the base vectors, as the engine runs it for
    /// collections under `exact_scan_max_vector_bytes`, and print it as one more line
    /// with "method": "exact".
    #[arg(long)]
    exact: bool,
}

const RECALL_K: usize = 10;

pub fn run_ann(args: AnnArgs) -> Result<()> {
    if args.threads != 1 {
        bail!(
            "--threads {}: only single-threaded measurement is supported",
            args.threads
        );
    }
    let space =
        Space::from_name(&args.space).with_context(|| format!("invalid --space {}", args.space))?;
    let (dimension, mut base) = read_fvecs(&args.base)?;
    let (query_dimension, queries) = read_fvecs(&args.queries)?;
    if dimension != query_dimension {
        bail!("base dimension {dimension} differs from query dimension {query_dimension}");
    }
    if let Some(limit) = args.limit {
        base.truncate(limit * dimension);
    }
    let base_count = base.len() / dimension;
    let query_count = queries.len() / dimension;

    let ground_truth = match args.limit {
        Some(_) => exact_ground_truth(space, dimension, &base, &queries),
        None => {
            let (k, truth) = read_ivecs(&args.ground_truth)?;
            if k < RECALL_K || truth.len() / k != query_count {
                bail!("ground truth has {} rows of {k}; expected {query_count} rows of at least {RECALL_K}", truth.len() / k.max(1));
            }
            truth
                .chunks(k)
                .map(|row| row[..RECALL_K].iter().map(|&i| i as u32).collect())
                .collect()
        }
    };

    let params = HnswParams {
        max_neighbors: args.m,
        ef_construction: args.ef_construction,
        ..HnswParams::default()
    };
    let started = Instant::now();
    let mut index = Hnsw::new(dimension, space, params);
    for vector in base.chunks_exact(dimension) {
        index.insert(vector);
    }
    let build_seconds = started.elapsed().as_secs_f64();
    let index_bytes = index.memory_bytes();

    for &ef in &args.ef {
        let started = Instant::now();
        let mut hits = 0usize;
        for (query, truth) in queries.chunks_exact(dimension).zip(&ground_truth) {
            let found = index.search(query, RECALL_K, ef, None);
            hits += found.iter().filter(|n| truth.contains(&n.handle)).count();
        }
        let seconds = started.elapsed().as_secs_f64();
        let line = serde_json::json!({
            "system": "ravelin",
            "base": base_count,
            "m": args.m,
            "ef_construction": args.ef_construction,
            "ef": ef,
            "recall_at_10": hits as f64 / (query_count * RECALL_K) as f64,
            "qps": query_count as f64 / seconds,
            "build_seconds": build_seconds,
            "index_bytes": index_bytes,
        });
        println!("{line}");
    }
    if args.exact {
        let inverse_norms: Vec<f32> = base
            .chunks_exact(dimension)
            .map(index::inverse_norm)
            .collect();
        let started = Instant::now();
        let mut hits = 0usize;
        for (query, truth) in queries.chunks_exact(dimension).zip(&ground_truth) {
            let found = exact_nearest(space, dimension, &base, &inverse_norms, query);
            hits += found.iter().filter(|slot| truth.contains(slot)).count();
        }
        let seconds = started.elapsed().as_secs_f64();
        let line = serde_json::json!({
            "system": "ravelin",
            "method": "exact",
            "base": base_count,
            "vector_bytes": base.len() * std::mem::size_of::<f32>(),
            "recall_at_10": hits as f64 / (query_count * RECALL_K) as f64,
            "qps": query_count as f64 / seconds,
        });
        println!("{line}");
    }
    Ok(())
}

/// Returns the slots of the [`RECALL_K`] base vectors nearest `query`, scored one
/// by one as the engine's exact scan scores records.
fn exact_nearest(
    space: Space,
    dimension: usize,
    base: &[f32],
    inverse_norms: &[f32],
    query: &[f32],
) -> Vec<u32> {
    let query_norm = index::inverse_norm(query);
    let scored = base
        .chunks_exact(dimension)
        .zip(inverse_norms)
        .enumerate()
        .map(|(slot, (vector, norm))| {
            let distance = index::distance(space, query, query_norm, vector, *norm);
            (slot as u32, distance)
        });
    index::exact::nearest(RECALL_K, scored)
        .into_iter()
        .map(|n| n.handle)
        .collect()
}

fn exact_ground_truth(
    space: Space,
    dimension: usize,
    base: &[f32],
    queries: &[f32],
) -> Vec<Vec<u32>> {
    let inverse_norms: Vec<f32> = base
        .chunks_exact(dimension)
        .map(index::inverse_norm)
        .collect();
    queries
        .chunks_exact(dimension)
        .map(|query| exact_nearest(space, dimension, base, &inverse_norms, query))
        .collect()
}

/// Reads an `.fvecs` file; returns the dimension and the values of all vectors.
pub fn read_fvecs(path: &Path) -> Result<(usize, Vec<f32>)> {
    let (dimension, words) = read_vecs(path)?;
    Ok((dimension, words.into_iter().map(f32::from_bits).collect()))
}

fn read_ivecs(path: &Path) -> Result<(usize, Vec<i32>)> {
    let (dimension, words) = read_vecs(path)?;
    Ok((
        dimension,
        words.into_iter().map(|word| word as i32).collect(),
    ))
}

fn read_vecs(path: &Path) -> Result<(usize, Vec<u32>)> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|chunk| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect();
    let Some(&first) = words.first() else {
        bail!("{} is empty", path.display());
    };
    let dimension = first as usize;
    let row = dimension + 1;
    if dimension == 0 || !bytes.len().is_multiple_of(4) || !words.len().is_multiple_of(row) {
        bail!(
            "{} is not a valid vecs file: {} bytes with dimension {dimension}",
            path.display(),
            bytes.len()
        );
    }
    let mut values = Vec::with_capacity(words.len() / row * dimension);
    for chunk in words.chunks_exact(row) {
        if chunk[0] as usize != dimension {
            bail!(
                "{} mixes dimensions {dimension} and {}",
                path.display(),
                chunk[0]
            );
        }
        values.extend_from_slice(&chunk[1..]);
    }
    Ok((dimension, values))
}
