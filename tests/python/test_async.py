"""The stock async chromadb client against the real server, through ravelin_client."""

from __future__ import annotations

import numpy as np
import pytest

import ravelin_client

DIMENSION = 384


def random_unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.asyncio
async def test_async_client_round_trip(server):
    client = await ravelin_client.connect_async(
        server.host, server.port, server.ca, server.cert, server.key
    )
    vectors = random_unit_vectors(300, seed=3)
    ids = [f"async-{i}" for i in range(len(vectors))]

    assert await client.heartbeat() > 0
    collection = await client.create_collection(
        "async-round-trip", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
    )
    await collection.add(
        ids=ids,
        embeddings=vectors,
        documents=[f"document {i}" for i in range(len(vectors))],
        metadatas=[{"parity": i % 2} for i in range(len(vectors))],
    )
    assert await collection.count() == len(vectors)

    result = await collection.query(query_embeddings=vectors[:5], n_results=3)
    for query, (result_ids, distances) in enumerate(
        zip(result["ids"], result["distances"], strict=True)
    ):
        assert result_ids[0] == ids[query]
        assert distances[0] == pytest.approx(0.0, abs=1e-5)

    odd = await collection.get(where={"parity": 1}, include=[])
    assert set(odd["ids"]) == set(ids[1::2])

    await collection.delete(ids=ids[:100])
    assert await collection.count() == len(vectors) - 100
    assert (await collection.get(ids=ids[:100]))["ids"] == []

    await client.delete_collection("async-round-trip")
    assert [c.name for c in await client.list_collections()] == []
