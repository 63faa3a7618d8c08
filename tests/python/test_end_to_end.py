"""The stock chromadb client against the real server, through ravelin_client.

One server and one cosine collection with the first 10,000 records of
wordnet-minilm-100k are shared by the read-only tests of this module. Tests
that write use their own small collections.
"""

from __future__ import annotations

import uuid
from typing import Callable, Dict, List

import chromadb
import chromadb.errors
import numpy as np
import pytest

import ravelin_client
from conftest import Dataset, RavelinServer, requires_dataset

pytestmark = requires_dataset

BATCH_SIZE = 500
COSINE = {"hnsw": {"space": "cosine"}}
TIE_TOLERANCE = 1e-6
DISTANCE_TOLERANCE = 1e-5
DB_PATH = "/tenants/default_tenant/databases/default_database"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def add_rows(collection, dataset: Dataset, rows: range) -> None:
    """Add the dataset rows ``rows`` in batches of ``BATCH_SIZE``."""
    for start in range(rows.start, rows.stop, BATCH_SIZE):
        stop = min(start + BATCH_SIZE, rows.stop)
        collection.add(
            ids=dataset.ids[start:stop],
            embeddings=dataset.embeddings[start:stop],
            documents=dataset.documents[start:stop],
            metadatas=[dataset.metadata(row) for row in range(start, stop)],
        )


def ids_where(dataset: Dataset, predicate: Callable[[int], bool]) -> set:
    return {dataset.ids[row] for row in range(len(dataset.ids)) if predicate(row)}


def as_float32(embeddings) -> np.ndarray:
    """Convert returned embeddings to float32 for exact comparison with the inputs.

    Ravelin returns the stored input vectors. Chroma 1.5.9 returns the
    L2-normalised copy for cosine collections instead, which differs from
    already-normalised inputs by about one ULP, so these exact checks fail there.
    """
    return np.asarray([np.asarray(e, dtype=np.float32) for e in embeddings], dtype=np.float32)


# The exact-match checks below need exact results, so the 15 MB collection stays
# under the exact-scan threshold. tests/python/test_index.py covers the index.
EXACT_SCAN_CONFIG = "[limits]\nexact_scan_max_vector_bytes = 33554432\n"


@pytest.fixture(scope="module")
def e2e_server(module_server_factory) -> RavelinServer:
    config = module_server_factory.root / "exact-scan.toml"
    config.write_text(EXACT_SCAN_CONFIG, encoding="utf-8")
    return module_server_factory.start(extra_args=["--config", str(config)])


@pytest.fixture(scope="module")
def client(e2e_server):
    return e2e_server.connect()


@pytest.fixture(scope="module")
def row_of(dataset) -> Dict[str, int]:
    return {record_id: row for row, record_id in enumerate(dataset.ids)}


@pytest.fixture(scope="module")
def loaded(client, dataset):
    """The cosine collection holding all 10,000 dataset records."""
    collection = client.create_collection(
        "wordnet-10k", configuration=COSINE, embedding_function=None
    )
    add_rows(collection, dataset, range(len(dataset.ids)))
    return collection


@pytest.fixture
def small(client, dataset):
    """A new cosine collection with dataset rows 0..199."""
    collection = client.create_collection(
        unique_name("small"), configuration=COSINE, embedding_function=None
    )
    add_rows(collection, dataset, range(200))
    return collection


# Loading and nearest-neighbour search


def test_preflight_advertises_base64(e2e_server):
    # The client sends base64 embeddings only when the server advertises them,
    # so this makes the client's add() calls in this module use base64.
    with e2e_server.http_client() as http:
        response = http.get("/pre-flight-checks")

    assert response.status_code == 200
    assert response.json()["supports_base64_encoding"] is True


def test_count_after_load(loaded, dataset):
    assert loaded.count() == len(dataset.ids)


def test_collection_reports_cosine(client, loaded):
    assert loaded.configuration_json["hnsw"]["space"] == "cosine"
    fetched = client.get_collection(loaded.name, embedding_function=None)
    assert fetched.configuration_json["hnsw"]["space"] == "cosine"


def test_query_recall_exact(loaded, dataset, row_of):
    true_distances = 1.0 - dataset.queries.astype(np.float64) @ dataset.embeddings.T.astype(
        np.float64
    )
    tenth = np.sort(true_distances, axis=1)[:, 9]

    misses = []
    distance_errors = []
    for start in range(0, len(dataset.queries), 100):
        result = loaded.query(
            query_embeddings=dataset.queries[start : start + 100],
            n_results=10,
            include=["distances"],
        )
        for offset, (ids, distances) in enumerate(
            zip(result["ids"], result["distances"], strict=True)
        ):
            query = start + offset
            assert len(ids) == 10, f"query {query} returned {len(ids)} results"
            assert len(set(ids)) == 10, f"query {query} returned duplicate ids {ids}"
            assert list(distances) == sorted(distances), f"query {query}: distances not sorted"

            for record_id, distance in zip(ids, distances, strict=True):
                expected = true_distances[query, row_of[record_id]]
                if expected > tenth[query] + TIE_TOLERANCE:
                    misses.append((query, record_id, expected, tenth[query]))
                if abs(distance - expected) > DISTANCE_TOLERANCE:
                    distance_errors.append((query, record_id, distance, expected))

    recall = 1.0 - len(misses) / (10 * len(dataset.queries))
    assert not misses, (
        f"recall@10 = {recall:.4f}; first misses (query, id, distance, 10th): {misses[:5]}"
    )
    assert not distance_errors, f"distances differ from numpy: {distance_errors[:5]}"


def test_query_with_where_exact(loaded, dataset, row_of):
    gcide_rows = np.array([row for row, s in enumerate(dataset.sources) if s == "gcide"])
    queries = dataset.queries[:20]
    true_distances = 1.0 - queries.astype(np.float64) @ dataset.embeddings[gcide_rows].T.astype(
        np.float64
    )
    tenth = np.sort(true_distances, axis=1)[:, 9]
    distance_by_row = [dict(zip(gcide_rows.tolist(), d, strict=True)) for d in true_distances]

    result = loaded.query(
        query_embeddings=queries,
        n_results=10,
        where={"source": "gcide"},
        include=["metadatas", "distances"],
    )

    for query, (ids, metadatas) in enumerate(zip(result["ids"], result["metadatas"], strict=True)):
        assert len(ids) == 10
        assert all(m["source"] == "gcide" for m in metadatas)
        for record_id in ids:
            expected = distance_by_row[query][row_of[record_id]]
            assert expected <= tenth[query] + TIE_TOLERANCE, (
                f"query {query}: {record_id} at {expected} is not among the 10 nearest "
                "gcide records"
            )


def test_query_restricted_to_ids(loaded, dataset):
    candidates = dataset.ids[100:120]

    result = loaded.query(query_embeddings=dataset.queries[:1], n_results=5, ids=candidates)

    assert len(result["ids"][0]) == 5
    assert set(result["ids"][0]) <= set(candidates)


def test_query_more_results_than_records(client, dataset):
    collection = client.create_collection(
        unique_name("tiny"), configuration=COSINE, embedding_function=None
    )
    add_rows(collection, dataset, range(3))

    result = collection.query(query_embeddings=dataset.queries[:1], n_results=10)

    assert sorted(result["ids"][0]) == sorted(dataset.ids[:3])


# get: ids, filters, paging, include


def test_get_by_ids(loaded, dataset):
    rows = np.random.default_rng(7).choice(len(dataset.ids), size=50, replace=False)
    requested = [dataset.ids[row] for row in rows]

    result = loaded.get(ids=requested + ["no-such-id"])

    assert sorted(result["ids"]) == sorted(requested)
    by_id = dict(
        zip(result["ids"], zip(result["documents"], result["metadatas"], strict=True), strict=True)
    )
    for row in rows:
        document, metadata = by_id[dataset.ids[row]]
        assert document == dataset.documents[row]
        assert metadata == dataset.metadata(row)


def test_get_missing_ids_empty(loaded):
    result = loaded.get(ids=["no-such-id-1", "no-such-id-2"])

    assert result["ids"] == []


WHERE_CASES = {
    "eq-shorthand": ({"source": "gcide"}, lambda d, r: d.sources[r] == "gcide"),
    "eq": ({"source": {"$eq": "wordnet-example"}}, lambda d, r: d.sources[r] == "wordnet-example"),
    "ne": ({"source": {"$ne": "gcide"}}, lambda d, r: d.sources[r] != "gcide"),
    "in": (
        {"source": {"$in": ["gcide", "wordnet-example"]}},
        lambda d, r: d.sources[r] in ("gcide", "wordnet-example"),
    ),
    "nin": ({"source": {"$nin": ["gcide"]}}, lambda d, r: d.sources[r] != "gcide"),
    "lt-int": ({"row": {"$lt": 250}}, lambda d, r: r < 250),
    "gte-float": ({"row": {"$gte": 9800.5}}, lambda d, r: r >= 9800.5),
    "and": (
        {"$and": [{"source": "gcide"}, {"row": {"$gte": 5000}}]},
        lambda d, r: d.sources[r] == "gcide" and r >= 5000,
    ),
    "or": (
        {"$or": [{"source": "wordnet-gloss"}, {"row": {"$lte": 10}}]},
        lambda d, r: d.sources[r] == "wordnet-gloss" or r <= 10,
    ),
    "missing-key-ne": ({"absent": {"$ne": "x"}}, lambda d, r: True),
    "missing-key-eq": ({"absent": "x"}, lambda d, r: False),
}


@pytest.mark.parametrize("case", WHERE_CASES.keys())
def test_get_where(loaded, dataset, case):
    where, predicate = WHERE_CASES[case]

    result = loaded.get(where=where, include=["metadatas"])

    expected = ids_where(dataset, lambda row: predicate(dataset, row))
    assert len(result["ids"]) == len(expected)
    assert set(result["ids"]) == expected


@pytest.mark.parametrize(
    "where_document",
    [
        {"$contains": "water"},
        {"$not_contains": "the"},
        {"$and": [{"$contains": "a"}, {"$contains": "river"}]},
        {"$or": [{"$contains": "Latin"}, {"$contains": "verb"}]},
    ],
    ids=["contains", "not-contains", "and", "or"],
)
def test_get_where_document(loaded, dataset, where_document):
    def matches(document: str, clause: dict) -> bool:
        ((operator, operand),) = clause.items()
        if operator == "$contains":
            return operand in document
        if operator == "$not_contains":
            return operand not in document
        if operator == "$and":
            return all(matches(document, c) for c in operand)
        return any(matches(document, c) for c in operand)

    result = loaded.get(where_document=where_document, include=[])

    expected = ids_where(dataset, lambda row: matches(dataset.documents[row], where_document))
    assert expected, "the case should match some records"
    assert set(result["ids"]) == expected
    assert len(result["ids"]) == len(expected)


def test_get_where_and_where_document(loaded, dataset):
    result = loaded.get(
        where={"source": "gcide"}, where_document={"$contains": "water"}, include=[]
    )

    expected = ids_where(
        dataset, lambda row: dataset.sources[row] == "gcide" and "water" in dataset.documents[row]
    )
    assert set(result["ids"]) == expected


def test_where_document_case_sensitive(loaded, dataset):
    result = loaded.get(where_document={"$contains": "WATER"}, include=[])

    assert set(result["ids"]) == ids_where(dataset, lambda row: "WATER" in dataset.documents[row])


def test_get_limit_offset_pages(loaded, dataset):
    seen: List[str] = []
    for offset in range(0, len(dataset.ids), 1000):
        page = loaded.get(limit=1000, offset=offset, include=[])
        assert len(page["ids"]) == 1000, f"page at offset {offset}"
        seen.extend(page["ids"])

    assert len(seen) == len(set(seen)), "pages overlap"
    assert set(seen) == set(dataset.ids)


def test_get_offset_past_end(loaded):
    assert loaded.get(limit=10, offset=20_000, include=[])["ids"] == []


def test_get_limit_with_where(loaded, dataset):
    page = loaded.get(where={"source": "gcide"}, limit=7, offset=3, include=["metadatas"])

    assert len(page["ids"]) == 7
    assert all(m["source"] == "gcide" for m in page["metadatas"])


def test_include_embeddings_only(loaded, dataset):
    rows = list(range(30, 60))

    result = loaded.get(ids=[dataset.ids[row] for row in rows], include=["embeddings"])

    assert result["documents"] is None
    assert result["metadatas"] is None
    by_id = dict(zip(result["ids"], as_float32(result["embeddings"]), strict=True))
    for row in rows:
        np.testing.assert_array_equal(by_id[dataset.ids[row]], dataset.embeddings[row])


def test_include_nothing(loaded, dataset):
    result = loaded.get(ids=dataset.ids[:5], include=[])

    assert sorted(result["ids"]) == sorted(dataset.ids[:5])
    assert result["documents"] is None
    assert result["metadatas"] is None
    assert result["embeddings"] is None


def test_include_all_get(loaded, dataset):
    result = loaded.get(ids=[dataset.ids[9]], include=["embeddings", "documents", "metadatas"])

    assert result["documents"] == [dataset.documents[9]]
    assert result["metadatas"] == [dataset.metadata(9)]
    np.testing.assert_array_equal(as_float32(result["embeddings"])[0], dataset.embeddings[9])


def test_include_query_variants(loaded, dataset, row_of):
    only_distances = loaded.query(
        query_embeddings=dataset.queries[:2], n_results=3, include=["distances"]
    )
    everything = loaded.query(
        query_embeddings=dataset.queries[:2],
        n_results=3,
        include=["embeddings", "documents", "metadatas", "distances"],
    )

    assert only_distances["documents"] is None
    assert only_distances["metadatas"] is None
    assert only_distances["embeddings"] is None
    assert everything["ids"] == only_distances["ids"]
    for ids, documents, metadatas, embeddings in zip(
        everything["ids"],
        everything["documents"],
        everything["metadatas"],
        everything["embeddings"],
        strict=True,
    ):
        for record_id, document, metadata, embedding in zip(
            ids, documents, metadatas, embeddings, strict=True
        ):
            row = row_of[record_id]
            assert document == dataset.documents[row]
            assert metadata == dataset.metadata(row)
            np.testing.assert_array_equal(
                np.asarray(embedding, np.float32), dataset.embeddings[row]
            )


# Writes


def test_raw_float_list_add(e2e_server, client, dataset):
    collection = client.create_collection(
        unique_name("raw"), configuration=COSINE, embedding_function=None
    )
    body = {
        "ids": ["raw-0", "raw-1"],
        "embeddings": [dataset.embeddings[0].tolist(), dataset.embeddings[1].tolist()],
        "metadatas": [{"source": "raw"}, None],
        "documents": ["first raw document", None],
        "uris": None,
    }

    with e2e_server.http_client() as http:
        response = http.post(f"{DB_PATH}/collections/{collection.id}/add", json=body)

    assert response.status_code == 201, response.text
    assert response.json() == {}
    result = collection.get(
        ids=["raw-0", "raw-1"], include=["embeddings", "documents", "metadatas"]
    )
    by_id = {
        record_id: (document, metadata, embedding)
        for record_id, document, metadata, embedding in zip(
            result["ids"],
            result["documents"],
            result["metadatas"],
            as_float32(result["embeddings"]),
            strict=True,
        )
    }
    assert by_id["raw-0"][0] == "first raw document"
    assert by_id["raw-0"][1] == {"source": "raw"}
    assert by_id["raw-1"][0] is None
    assert by_id["raw-1"][1] is None
    np.testing.assert_array_equal(by_id["raw-0"][2], dataset.embeddings[0])
    np.testing.assert_array_equal(by_id["raw-1"][2], dataset.embeddings[1])


def test_add_existing_id_ignored(small, dataset):
    small.add(ids=[dataset.ids[0]], embeddings=dataset.embeddings[500:501], documents=["changed"])

    result = small.get(ids=[dataset.ids[0]])
    assert result["documents"] == [dataset.documents[0]]
    assert small.count() == 200


def test_update_documents_embeddings_metadata(small, dataset):
    ids = dataset.ids[:3]
    new_embeddings = dataset.embeddings[1000:1003]

    small.update(
        ids=ids,
        documents=["updated zero", "updated one", "updated two"],
        embeddings=new_embeddings,
        metadatas=[{"source": None, "note": "x"}, {"row": 99}, {"note": 2.5}],
    )

    result = small.get(ids=ids, include=["documents", "metadatas", "embeddings"])
    by_id = {
        record_id: (document, metadata, embedding)
        for record_id, document, metadata, embedding in zip(
            result["ids"],
            result["documents"],
            result["metadatas"],
            as_float32(result["embeddings"]),
            strict=True,
        )
    }
    assert by_id[ids[0]][0] == "updated zero"
    assert by_id[ids[0]][1] == {"row": 0, "note": "x"}, "a None value must delete the key"
    assert by_id[ids[1]][1] == {"source": dataset.sources[1], "row": 99}
    assert by_id[ids[2]][1] == {"source": dataset.sources[2], "row": 2, "note": 2.5}
    for index, record_id in enumerate(ids):
        np.testing.assert_array_equal(by_id[record_id][2], new_embeddings[index])

    nearest = small.query(query_embeddings=new_embeddings[:1], n_results=1, include=["distances"])
    assert nearest["ids"] == [[ids[0]]]
    assert nearest["distances"][0][0] == pytest.approx(0.0, abs=DISTANCE_TOLERANCE)


def test_update_unknown_id_ignored(small, dataset):
    small.update(ids=["no-such-id"], metadatas=[{"note": "nothing"}])

    assert small.count() == 200
    assert small.get(ids=["no-such-id"])["ids"] == []


def test_update_documents_only_keeps_embeddings(e2e_server, small, dataset):
    # The stock client rejects documents without embeddings when the collection
    # has no embedding function, so this update goes over raw HTTP.
    body = {
        "ids": [dataset.ids[5]],
        "embeddings": None,
        "metadatas": None,
        "documents": ["only the document changes"],
        "uris": None,
    }
    with e2e_server.http_client() as http:
        response = http.post(f"{DB_PATH}/collections/{small.id}/update", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {}

    result = small.get(ids=[dataset.ids[5]], include=["documents", "embeddings", "metadatas"])
    assert result["documents"] == ["only the document changes"]
    assert result["metadatas"] == [dataset.metadata(5)]
    np.testing.assert_array_equal(as_float32(result["embeddings"])[0], dataset.embeddings[5])


def test_upsert_new_and_existing(small, dataset):
    existing, new = dataset.ids[10], "upserted-new"

    small.upsert(
        ids=[existing, new],
        embeddings=dataset.embeddings[2000:2002],
        documents=["upserted existing", "upserted new"],
        metadatas=[{"source": "upsert"}, {"source": "upsert", "row": -1}],
    )

    assert small.count() == 201
    result = small.get(ids=[existing, new], include=["documents", "metadatas", "embeddings"])
    by_id = {
        record_id: (document, metadata, embedding)
        for record_id, document, metadata, embedding in zip(
            result["ids"],
            result["documents"],
            result["metadatas"],
            as_float32(result["embeddings"]),
            strict=True,
        )
    }
    assert by_id[existing][0] == "upserted existing"
    assert by_id[existing][1]["source"] == "upsert"
    assert by_id[new][0] == "upserted new"
    assert by_id[new][1] == {"source": "upsert", "row": -1}
    np.testing.assert_array_equal(by_id[existing][2], dataset.embeddings[2000])
    np.testing.assert_array_equal(by_id[new][2], dataset.embeddings[2001])


def test_delete_by_ids(small, dataset):
    doomed = dataset.ids[:10]

    small.delete(ids=doomed)

    assert small.count() == 190
    assert small.get(ids=doomed)["ids"] == []
    nearest = small.query(query_embeddings=dataset.embeddings[:10], n_results=5, include=[])
    for ids in nearest["ids"]:
        assert not set(ids) & set(doomed), "a deleted record was returned by query"


def test_delete_by_where(small, dataset):
    gcide = ids_where(dataset, lambda row: row < 200 and dataset.sources[row] == "gcide")
    assert gcide, "rows 0..199 should contain gcide records"

    small.delete(where={"source": "gcide"})

    assert small.count() == 200 - len(gcide)
    assert small.get(where={"source": "gcide"})["ids"] == []
    remaining = set(small.get(include=[])["ids"])
    assert remaining == set(dataset.ids[:200]) - gcide


def test_delete_by_where_document(small, dataset):
    matching = ids_where(dataset, lambda row: row < 200 and "water" in dataset.documents[row])

    small.delete(where_document={"$contains": "water"})

    assert set(small.get(include=[])["ids"]) == set(dataset.ids[:200]) - matching


# Behaviours where Chroma 1.5.9 is wrong and Ravelin returns the correct result


@pytest.fixture
def numbers(client):
    """A collection whose records have metadata n = 2 (int), 2.5 (float) and 3 (int)."""
    collection = client.create_collection(unique_name("numbers"), embedding_function=None)
    collection.add(
        ids=["two", "two-and-a-half", "three"],
        embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        metadatas=[{"n": 2}, {"n": 2.5}, {"n": 3}],
    )
    return collection


NUMERIC_CASES = [
    ({"n": {"$eq": 2.5}}, {"two-and-a-half"}),
    ({"n": {"$gte": 2.5}}, {"two-and-a-half", "three"}),
    ({"n": {"$lt": 2.5}}, {"two"}),
    ({"n": {"$ne": 2.5}}, {"two", "three"}),
    ({"n": {"$in": [2.5]}}, {"two-and-a-half"}),
    ({"n": {"$nin": [2.5]}}, {"two", "three"}),
    ({"n": {"$eq": 2.0}}, {"two"}),
    ({"n": {"$gt": 2}}, {"two-and-a-half", "three"}),
]


@pytest.mark.parametrize(
    "where, expected", NUMERIC_CASES, ids=[str(case[0]["n"]) for case in NUMERIC_CASES]
)
def test_numeric_filter_int_float(numbers, where, expected):
    # Chroma 1.5.9 truncates a non-integral float bound when comparing it with
    # int values, so {"$eq": 2.5} matches n = 2 there.
    assert set(numbers.get(where=where, include=[])["ids"]) == expected

    nearest = numbers.query(query_embeddings=[[1.0, 0.0]], n_results=3, where=where, include=[])
    assert set(nearest["ids"][0]) == expected


def test_numeric_filter_delete(numbers):
    numbers.delete(where={"n": {"$lt": 2.5}})

    assert sorted(numbers.get(include=[])["ids"]) == ["three", "two-and-a-half"]


def test_delete_reports_removed_count(e2e_server, numbers):
    # Chroma 1.5.9 reports the number of ids in the request instead.
    url = f"{DB_PATH}/collections/{numbers.id}/delete"
    with e2e_server.http_client() as http:
        first = http.post(url, json={"ids": ["two", "ghost"]})
        second = http.post(url, json={"ids": ["ghost-2"]})
        third = http.post(url, json={"ids": ["three", "three"]})

    assert first.status_code == 200, first.text
    assert first.json() == {"deleted": 1}
    assert second.json() == {"deleted": 0}
    assert third.json() == {"deleted": 1}
    assert numbers.get(include=[])["ids"] == ["two-and-a-half"]


@pytest.mark.parametrize("operation", ["add", "upsert", "update"])
def test_repeated_ids_rejected(e2e_server, numbers, operation):
    # The stock client rejects such batches before sending them. Chroma 1.5.9
    # itself silently keeps the first or the last copy.
    body = {
        "ids": ["repeated", "repeated"],
        "embeddings": [[0.5, 0.5], [0.25, 0.75]],
        "metadatas": [{"n": 10}, {"n": 11}],
        "documents": ["first copy", "second copy"],
        "uris": None,
    }
    if operation == "update":
        body["ids"] = ["two", "two"]

    with e2e_server.http_client() as http:
        response = http.post(f"{DB_PATH}/collections/{numbers.id}/{operation}", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidArgumentError"
    assert body["ids"][0] in response.json()["message"]
    assert numbers.count() == 3
    assert numbers.get(ids=["two"])["metadatas"] == [{"n": 2}]


# Collections, tenants and databases


def test_collection_lifecycle(client):
    name = unique_name("life")
    created = client.create_collection(
        name, metadata={"owner": "tests"}, configuration=COSINE, embedding_function=None
    )
    assert created.metadata == {"owner": "tests"}
    assert name in [c.name for c in client.list_collections()]
    count_before = client.count_collections()

    renamed = unique_name("renamed")
    created.modify(name=renamed, metadata={"owner": "tests", "stage": 2})
    fetched = client.get_collection(renamed, embedding_function=None)
    assert fetched.id == created.id
    assert fetched.metadata == {"owner": "tests", "stage": 2}
    with pytest.raises(chromadb.errors.NotFoundError):
        client.get_collection(name, embedding_function=None)

    again = client.get_or_create_collection(
        renamed, metadata={"ignored": True}, embedding_function=None
    )
    assert again.id == created.id
    assert again.metadata == {"owner": "tests", "stage": 2}

    client.delete_collection(renamed)
    assert client.count_collections() == count_before - 1
    assert renamed not in [c.name for c in client.list_collections()]
    with pytest.raises(chromadb.errors.NotFoundError):
        client.get_collection(renamed, embedding_function=None)


def test_rename_onto_existing_name_rejected(client):
    first = client.create_collection(unique_name("first"), embedding_function=None)
    second = client.create_collection(unique_name("second"), embedding_function=None)

    with pytest.raises(chromadb.errors.ChromaError, match=rf"\[{second.name}\] already exists"):
        first.modify(name=second.name)

    assert client.get_collection(first.name, embedding_function=None).id == first.id
    assert client.get_collection(second.name, embedding_function=None).id == second.id


def test_get_or_create_creates(client):
    name = unique_name("goc")

    collection = client.get_or_create_collection(
        name, configuration=COSINE, embedding_function=None
    )

    assert client.get_collection(name, embedding_function=None).id == collection.id
    assert collection.configuration_json["hnsw"]["space"] == "cosine"


def test_get_collection_by_id(client):
    collection = client.create_collection(unique_name("byid"), embedding_function=None)

    fetched = client.get_collection_by_id(collection.id, embedding_function=None)

    assert fetched.name == collection.name
    assert fetched.tenant == "default_tenant"
    assert fetched.database == "default_database"


def test_cosine_via_metadata(client, dataset):
    collection = client.create_collection(
        unique_name("legacy"), metadata={"hnsw:space": "cosine"}, embedding_function=None
    )
    add_rows(collection, dataset, range(50))

    result = collection.query(query_embeddings=dataset.embeddings[:1], n_results=1)

    assert collection.configuration_json["hnsw"]["space"] == "cosine"
    assert result["ids"] == [[dataset.ids[0]]]
    assert result["distances"][0][0] == pytest.approx(0.0, abs=DISTANCE_TOLERANCE)


def test_tenants_and_databases(e2e_server, dataset):
    admin = e2e_server.admin_connect()
    tenant = unique_name("tenant")
    database = unique_name("db")

    admin.create_tenant(tenant)
    assert admin.get_tenant(tenant)["name"] == tenant
    admin.create_database(database, tenant=tenant)
    assert admin.get_database(database, tenant=tenant)["name"] == database
    assert database in [d["name"] for d in admin.list_databases(tenant=tenant)]

    scoped = e2e_server.connect(tenant=tenant, database=database)
    collection = scoped.create_collection("scoped", configuration=COSINE, embedding_function=None)
    add_rows(collection, dataset, range(20))
    assert collection.count() == 20
    assert [c.name for c in scoped.list_collections()] == ["scoped"]
    default_names = [c.name for c in e2e_server.connect().list_collections()]
    assert "scoped" not in default_names

    with pytest.raises(chromadb.errors.ChromaError, match=r"already exists"):
        admin.create_tenant(tenant)
    with pytest.raises(chromadb.errors.ChromaError, match=r"already exists"):
        admin.create_database(database, tenant=tenant)

    admin.delete_database(database, tenant=tenant)
    with pytest.raises(chromadb.errors.NotFoundError):
        admin.get_database(database, tenant=tenant)


def test_missing_tenant_and_database(e2e_server):
    admin = e2e_server.admin_connect()

    with pytest.raises(chromadb.errors.NotFoundError):
        admin.get_tenant("no-such-tenant")
    with pytest.raises(chromadb.errors.NotFoundError):
        admin.get_database("no-such-database")
    with pytest.raises(chromadb.errors.NotFoundError):
        e2e_server.connect(database="no-such-database")


# Errors


def test_duplicate_collection_error(client):
    name = unique_name("dup")
    client.create_collection(name, embedding_function=None)

    with pytest.raises(chromadb.errors.ChromaError, match=rf"Collection \[{name}\] already exists"):
        client.create_collection(name, embedding_function=None)


def test_missing_collection_error(client):
    with pytest.raises(chromadb.errors.NotFoundError):
        client.get_collection("no-such-collection", embedding_function=None)
    with pytest.raises(chromadb.errors.NotFoundError):
        client.delete_collection("no-such-collection")


def test_dimension_mismatch_error(small):
    with pytest.raises(chromadb.errors.InvalidArgumentError, match="dimension"):
        small.add(ids=["short"], embeddings=[[0.5, 0.5, 0.5]])
    with pytest.raises(chromadb.errors.InvalidArgumentError, match="dimension"):
        small.query(query_embeddings=[[0.5, 0.5, 0.5]], n_results=1)

    assert small.count() == 200


def test_invalid_collection_name_error(client):
    with pytest.raises(chromadb.errors.InvalidArgumentError):
        client.create_collection("a", embedding_function=None)


def test_deleted_collection_writes_not_found(client, dataset):
    collection = client.create_collection(unique_name("gone"), embedding_function=None)
    client.delete_collection(collection.name)

    with pytest.raises(chromadb.errors.NotFoundError):
        collection.add(ids=["x"], embeddings=dataset.embeddings[:1])


def test_error_body_shape(e2e_server):
    with e2e_server.http_client() as http:
        response = http.get(f"{DB_PATH}/collections/no-such-collection")

    assert response.status_code == 404
    assert response.json()["error"] == "NotFoundError"
    assert "no-such-collection" in response.json()["message"]


def test_heartbeat_and_version(client):
    assert client.heartbeat() > 0
    assert isinstance(client.get_version(), str)


def test_helper_rejects_other_ca(e2e_server, tmp_path):
    import certs

    other_ca, _ = certs.new_ca("unrelated CA")
    other_ca_path = tmp_path / "other-ca.pem"
    other_ca_path.write_bytes(other_ca.public_bytes(certs.serialization.Encoding.PEM))

    with pytest.raises(ravelin_client.ServerConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        ravelin_client.connect(
            e2e_server.host, e2e_server.port, other_ca_path, e2e_server.cert, e2e_server.key
        )
