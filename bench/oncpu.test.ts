// How the bench splits a perf recording by who asked for the work, on
// `perf script` output in the shape perf 6 prints for a node process run
// with --perf-basic-prof: a wrong owner here would send the next change to
// the wrong place.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { foldPerfScript, sharesOf } from "./oncpu.js";

const t = suite("bench on-CPU profiles");

const sample = (frames: string[]) =>
  ["node 4440  6265.516205:     500250 cpu-clock:ppp: ", ...frames.map((frame) => `\t${frame}`), ""].join(
    "\n",
  );

const KERNEL_WRITE = sample([
  "ffffffff816dbc19 tcp_sendmsg+0x129 ([kernel.kallsyms])",
  "ffffffff8223c951 do_syscall_64+0x71 ([kernel.kallsyms])",
  "f82ec __GI___writev+0x4c (/usr/lib/x86_64-linux-gnu/libc.so.6)",
  "7f5720108a08 JS:*writevGeneric node:internal/stream_base_commons:123:23 (/tmp/perf-4440.map)",
  "7f5720108b17 JS:*write file:///srv/dist/services/query-grpc/src/postgres/exchange.js:274:10 (/tmp/perf-4440.map)",
]);
const DECODE = sample([
  "7bbbe6 v8::internal::Utf8DecoderBase<v8::internal::Utf8Decoder>::Utf8DecoderBase+0x16 (/usr/bin/node)",
  "86853f node::Buffer::(anonymous namespace)::StringSlice<(node::encoding)1>+0x58 (/usr/bin/node)",
  "7f5720108a0b JS:*toString node:buffer:836:46 (/tmp/perf-4440.map)",
  "7f57200f855c JS:*parseDataRowMessage /srv/node_modules/pg-protocol/dist/parser.js:280:24 (/tmp/perf-4440.map)",
  "7f57200f8600 JS:*deliver file:///srv/dist/services/query-grpc/src/postgres/engine.js:329:18 (/tmp/perf-4440.map)",
]);
const SCAVENGE = sample([
  "9069e1 v8::internal::Scavenger::ScavengeObject<v8::internal::FullHeapObjectSlot>+0x101 (/usr/bin/node)",
  "7f5720108a08 JS:*encode file:///srv/dist/proto/gen/querygate/v1/query.js:511:11 (/tmp/perf-4440.map)",
]);
const HPACK = sample([
  "14b8b90 nghttp2_hd_deflate_hd_bufs+0xa0 (/usr/bin/node)",
  "14c05fb node::http2::Http2Session::SendPendingData+0x4db (/usr/bin/node)",
  "14ac8a7 uv_run+0x187 (/usr/bin/node)",
]);
const EVENT_LOOP = sample([
  "7f5720108a08 JS:*processTicksAndRejections node:internal/process/task_queues:67:35 (/tmp/perf-4440.map)",
  "14ac8a7 uv_run+0x187 (/usr/bin/node)",
]);

t("each frame of a sample is read with its symbol and the object it is in, leaf first", () => {
  const [stack] = foldPerfScript(KERNEL_WRITE);
  assert.is(stack?.length, 5);
  assert.equal(stack?.[0], { symbol: "tcp_sendmsg", object: "[kernel.kallsyms]" });
  assert.is(
    stack?.[4]?.symbol,
    "JS:*write file:///srv/dist/services/query-grpc/src/postgres/exchange.js:274:10",
  );
});

t("node's own JS counts for the module that called it, kernel work and GC apart", () => {
  const shares = sharesOf(foldPerfScript([KERNEL_WRITE, DECODE, DECODE, SCAVENGE, HPACK].join("\n")));
  assert.equal(shares, {
    "pg-protocol": 0.4,
    "kernel (syscalls, TCP on loopback, wakeups)": 0.2,
    "V8 garbage collection": 0.2,
    "HTTP/2 (nghttp2, node's C++)": 0.2,
  });
});

t("a folder of ours is named with its service; node JS with nobody above it is the event loop's", () => {
  const callerless = sharesOf(foldPerfScript(EVENT_LOOP));
  assert.equal(Object.keys(callerless), [
    "node core JS with no caller above it (event loop, microtasks, socket reads)",
  ]);
  const ours = sharesOf(
    foldPerfScript(
      sample([
        "7f5720108a08 JS:*addEventListener node:internal/event_target:598:19 (/tmp/perf-4440.map)",
        "7f5720108b17 JS:*wait file:///srv/dist/services/query-grpc/src/postgres/engine.js:537:15 (/tmp/perf-4440.map)",
      ]),
    ),
  );
  assert.equal(Object.keys(ours), ["query-grpc: postgres/"]);
});

t.run();
