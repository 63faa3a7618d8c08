// The stock `chromadb` JavaScript client against the real `ravelin serve` binary over
// TLS 1.3 with a client certificate.
//
// The client sends every request through the global fetch (Node's bundled undici) and
// passes `fetchOptions` on to it, so an undici Agent given as `fetchOptions.dispatcher`
// sets the CA, the client certificate and its key.
//
// NOTE: the Agent comes from the undici package in package.json (7.x), which accepts the
// handlers of the undici 6 that Node 20 bundles. A Node that bundles a different undici
// major may need another undici pin.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ChromaClient, ChromaConnectionError, ChromaNotFoundError } from "chromadb";
import { Agent } from "undici";

import {
  makeTempRoot,
  readPki,
  removeTempRoot,
  startServer,
  stopAndCheckServer,
} from "./ravelin-server.mjs";

const TEST_TIMEOUT_MS = 60_000;
const DISTANCE_TOLERANCE = 1e-6;

// Three points and a query whose squared L2 distances are exact in float32:
// a: 0² + 0.5² + 0² = 0.25, b: 1² + 0.5² + 0² = 1.25, c: 1² + 0.5² + 2² = 5.25.
const RECORDS = {
  ids: ["a", "b", "c"],
  embeddings: [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 2],
  ],
  documents: ["apple", "bean", "carrot"],
  metadatas: [
    { kind: "fruit", rank: 1 },
    { kind: "legume", rank: 2 },
    { kind: "root", rank: 3 },
  ],
};
const QUERY_EMBEDDING = [1, 0.5, 0];
const EXPECTED_IDS = ["a", "b", "c"];
const EXPECTED_DISTANCES = [0.25, 1.25, 5.25];

function connect(server, dispatcher) {
  return new ChromaClient({
    host: "127.0.0.1",
    port: server.port,
    ssl: true,
    fetchOptions: { dispatcher },
  });
}

describe("chromadb client over mutual TLS", { timeout: 4 * TEST_TIMEOUT_MS }, () => {
  let root;
  let server;
  let adminAgent;
  let noCertificateAgent;

  before(async () => {
    root = makeTempRoot();
    server = await startServer(root);
    const { ca, cert, key } = readPki(server.pki);
    adminAgent = new Agent({ connect: { ca, cert, key } });
    noCertificateAgent = new Agent({ connect: { ca } });
  });

  after(async () => {
    await adminAgent?.close();
    await noCertificateAgent?.close();
    try {
      if (server) {
        const problems = await stopAndCheckServer(server);
        assert.deepEqual(
          problems,
          [],
          `\`${server.command}\` failed: ${problems.join("; ")}\noutput:\n${server.log.slice(-4000)}`,
        );
      }
    } finally {
      removeTempRoot(root);
    }
  });

  test("heartbeat with admin certificate", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = connect(server, adminAgent);

    const heartbeat = await client.heartbeat();

    assert.equal(typeof heartbeat, "number");
    assert.ok(heartbeat > 0, `heartbeat ${heartbeat} should be a positive nanosecond count`);
  });

  test("collection lifecycle with admin certificate", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = connect(server, adminAgent);
    const name = `js-mtls-${Date.now()}`;

    // embeddingFunction: null keeps the client from loading @chroma-core/default-embed.
    const collection = await client.createCollection({
      name,
      embeddingFunction: null,
      configuration: { hnsw: { space: "l2" } },
    });
    assert.equal(collection.name, name);
    assert.equal(collection.configuration.hnsw.space, "l2");

    await collection.add(RECORDS);
    assert.equal(await collection.count(), 3);

    const result = await collection.query({
      queryEmbeddings: [QUERY_EMBEDDING],
      nResults: 3,
      include: ["distances", "documents", "metadatas"],
    });
    assert.deepEqual(result.ids, [EXPECTED_IDS]);
    assert.equal(result.distances.length, 1);
    assert.equal(result.distances[0].length, EXPECTED_DISTANCES.length);
    EXPECTED_DISTANCES.forEach((expected, i) => {
      const actual = result.distances[0][i];
      assert.ok(
        Math.abs(actual - expected) <= DISTANCE_TOLERANCE,
        `distance of ${EXPECTED_IDS[i]} is ${actual}, expected ${expected}`,
      );
    });
    assert.deepEqual(result.documents, [["apple", "bean", "carrot"]]);
    assert.deepEqual(result.metadatas, [RECORDS.metadatas]);

    const legumes = await collection.get({ where: { kind: "legume" } });
    assert.deepEqual(legumes.ids, ["b"]);
    assert.deepEqual(legumes.documents, ["bean"]);
    assert.deepEqual(legumes.metadatas, [{ kind: "legume", rank: 2 }]);

    const rankedAtLeastTwo = await collection.get({ where: { rank: { $gte: 2 } } });
    assert.deepEqual([...rankedAtLeastTwo.ids].sort(), ["b", "c"]);

    await collection.delete({ ids: ["b"] });
    assert.equal(await collection.count(), 2);
    const deleted = await collection.get({ ids: ["b"] });
    assert.deepEqual(deleted.ids, []);

    await client.deleteCollection({ name });
    await assert.rejects(client.getCollection({ name }), ChromaNotFoundError);
  });

  test("client without certificate is rejected", { timeout: TEST_TIMEOUT_MS }, async () => {
    const client = connect(server, noCertificateAgent);

    await assert.rejects(client.heartbeat(), ChromaConnectionError);

    // The client error hides its cause. The server's log shows that the handshake got as
    // far as the certificate check, so the CA-only agent did trust the server.
    assert.ok(
      await server.waitForLog("peer sent no certificates"),
      `the server did not log a handshake without client certificate; output:\n` +
        server.log.slice(-4000),
    );
  });
});
