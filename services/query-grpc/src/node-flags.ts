// The node flags query-grpc runs with. V8 sizes its heap when the process
// starts, so they cannot be set from main.ts: they go on node's command line,
// before the script, in kustomize/base/query-grpc.yaml's container args (the
// image's ENTRYPOINT is node). The bench starts query-grpc with these same
// flags, and kustomize.test.ts checks that the manifest does.
//
// While rows stream, each batch (pg's row arrays and strings, the encoded
// message) is garbage once it is written. Measured over 1M streamed rows,
// peak RSS of query-grpc, with /metrics' heap spaces sampled alongside:
//
// --no-allocation-site-pretenuring: when a scavenge happened to find many of
//   a batch's objects alive (more often on a busy machine, when the stream
//   waits on its reader), V8 started allocating those objects straight in the
//   old space, where only a full mark-compact frees them; old space then
//   swung between 40 and 90 MiB instead of staying near 20, and peak RSS was
//   180-200 MiB in about one run in three (every run with two spinning
//   processes beside it). Without pretenuring: old space 16-24 MiB in every
//   run, quiet or loaded.
// --max-semi-space-size=8 (MiB): half of V8's default young generation:
//   146 -> 128-130 MiB. 4 MiB and less were worse, since the batches still in
//   flight then outlive two scavenges and get promoted.
//
// CPU per row was unchanged by both.
export const QUERY_GRPC_NODE_FLAGS: readonly string[] = [
  "--max-semi-space-size=8",
  "--no-allocation-site-pretenuring",
];
