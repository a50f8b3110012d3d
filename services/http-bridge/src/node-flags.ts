// The node flags http-bridge runs with. They go on node's command line,
// before the script: the Dockerfile's default CMD and
// kustomize/base/http-bridge.yaml's container args (the image's ENTRYPOINT is
// node). The bench starts the bridge with these same flags, and
// kustomize.test.ts and deploy/dockerfile.test.ts check that both do.
//
// --no-allocation-site-pretenuring: the rows of a streamed result are decoded
//   from query-grpc's messages 2,000 at a time and are garbage once encoded.
//   V8 saw many of them alive at a scavenge and began allocating them (the
//   decoder's Row objects and value arrays) straight in the old space, where
//   only a full mark-compact frees them. Streaming 1M rows as NDJSON, the
//   bridge then spent half its CPU in the garbage collector (Linux perf: 51%
//   of its samples, a third in major GC). Alternating runs on one
//   PostgreSQL, 3 pairs: 2.61-2.85 ms of the bridge's CPU per 1k rows with
//   pretenuring, 1.24-1.39 without; 310-348k rows/s against 445-487k. Peak
//   RSS 120 MiB against 108. Small lookups were unchanged (wrk, 3 pairs:
//   305-371 µs of the bridge per request with pretenuring, 299-343 without).
export const HTTP_BRIDGE_NODE_FLAGS: readonly string[] = ["--no-allocation-site-pretenuring"];
