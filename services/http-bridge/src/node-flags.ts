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
//   only a full mark-compact frees them. Streaming 1M rows as NDJSON from a
//   fresh bridge, it then spent half its CPU in the garbage collector (Linux
//   perf: 51% of its samples, a third in major GC): 2.33-2.85 ms of CPU per
//   1k rows over 6 runs, against 1.04-1.39 without pretenuring, and
//   310-370k rows/s against 445-516k. Small lookups were unchanged (wrk, 3
//   alternating pairs: 305-371 µs of the bridge per request with
//   pretenuring, 299-343 without).
// --max-semi-space-size=8 (MiB), as query-grpc: without pretenuring the
//   young generation grows to V8's default, and a buffered 1M-row JSON
//   result (65.6 MB) peaked the bridge at 239 MiB; with both flags 176 MiB,
//   against 191 with neither (the bench's formats phase, one run each).
//   Small lookups: 278-332 µs of the bridge per request with both flags,
//   284-350 with pretenuring off alone (wrk, 3 runs each).
export const HTTP_BRIDGE_NODE_FLAGS: readonly string[] = [
  "--max-semi-space-size=8",
  "--no-allocation-site-pretenuring",
];
