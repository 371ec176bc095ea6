// Creates and edits documents through a sync server with the official
// automerge-repo client, waits until the server holds every one of them, and
// writes what it made to a JSON file for read.mjs (or a Rust test) to check.
//
//   node write.mjs <ws-url> <out.json> [--docs N] [--token TOKEN] [--timeout SECONDS]
import { writeFileSync } from "node:fs";
import * as A from "@automerge/automerge";
import { clientRepo, closeRepo, die, parseArgs, plain, sameHeads, serverUrl, sleep } from "./lib.mjs";

const USAGE = "usage: node write.mjs <ws-url> <out.json> [--docs N] [--token TOKEN] [--timeout SECONDS]";
const args = parseArgs(process.argv.slice(2), ["url", "out"], ["docs", "token", "timeout"], USAGE);
const count = Number(args.docs ?? 5);
const timeoutMs = Number(args.timeout ?? 30) * 1000;
if (!Number.isInteger(count) || count < 1 || !(timeoutMs > 0)) die(USAGE, 2);
const url = serverUrl(args.url, args.token);
const deadline = Date.now() + timeoutMs;

// Every document gets its own shape so that no two are alike.
function initialContent(i) {
  const doc = {
    title: `doc ${i}`,
    count: i * 10,
    items: Array.from({ length: (i % 3) + 1 }, (_, k) => `item ${i}.${k}`),
    nested: { flag: i % 2 === 0, note: "Tiếng Việt có dấu" },
  };
  switch (i % 4) {
    case 0: doc.matrix = [[i, 1], [2, 3.5]]; break;
    case 1: doc.maybe = { nothing: null, half: 0.5, negative: -i }; break;
    case 2: doc.emoji = "🦀 ✓ 日本語"; break;
    case 3: doc.deep = { a: { b: { c: [true, false, `${i}`] } } }; break;
  }
  return doc;
}

// Separate rounds of edits, each its own `change`, with pauses so that the
// server receives the initial state and then incremental sync messages.
const edits = [
  (d, i) => { d.count += 1; },
  (d, i) => { d.items.push(`added to ${i}`); },
  (d, i) => { A.splice(d, ["title"], 0, 0, "edited "); }, // in-place text edit
  (d, i) => { d.nested.flag = !d.nested.flag; d.nested.edits = 4; d.items.splice(0, 1); },
];

const writer = clientRepo(url);
const handles = Array.from({ length: count }, (_, i) => writer.create(initialContent(i)));
for (const edit of edits) {
  await sleep(150);
  handles.forEach((handle, i) => handle.change(d => edit(d, i)));
}
const expected = handles.map(handle => ({
  url: handle.url,
  documentId: handle.documentId,
  heads: A.getHeads(handle.doc()), // hex change hashes
  content: plain(handle.doc()),
}));

/**
 * Asks the server for every document through a fresh repo (new connection,
 * no local data) and returns the URLs whose heads do not match yet.
 */
async function missingOnServer() {
  const checker = clientRepo(url);
  try {
    const found = await Promise.all(
      expected.map(({ url: docUrl }) =>
        // Rejects when the server answers doc-unavailable (it has not got it yet).
        checker.find(docUrl, { signal: AbortSignal.timeout(Math.max(deadline - Date.now(), 1)) }).catch(() => null),
      ),
    );
    // A handle is ready on the first data received; give the sync a moment to finish.
    const until = Math.min(Date.now() + 2000, deadline);
    for (;;) {
      const missing = expected
        .filter((e, i) => !found[i] || !sameHeads(A.getHeads(found[i].doc()), e.heads))
        .map(e => e.url);
      if (missing.length === 0 || found.includes(null) || Date.now() >= until) return missing;
      await sleep(50);
    }
  } finally {
    await closeRepo(checker);
  }
}

let missing;
for (let attempt = 1; ; attempt++) {
  missing = await missingOnServer();
  if (missing.length === 0) break;
  if (Date.now() >= deadline) {
    console.error(
      `write.mjs: timeout after ${timeoutMs / 1000}s: the server at ${args.url} does not have ` +
        `${missing.length} of ${count} documents at the written heads (after ${attempt} checks): ${missing.join(" ")}`,
    );
    await closeRepo(writer);
    process.exit(1);
  }
  await sleep(200);
}

writeFileSync(args.out, JSON.stringify(expected, null, 2) + "\n");
console.log(`wrote ${count} documents (created, then ${edits.length} edits each), all confirmed on the server, to ${args.out}`);
await closeRepo(writer);
process.exit(0);
