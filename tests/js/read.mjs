// Fetches every document listed in a file written by write.mjs from a sync
// server, through a fresh client with no local data, and checks that each one
// has exactly the expected content and heads.
//
//   node read.mjs <ws-url> <in.json> [--token TOKEN] [--timeout SECONDS]
import { readFileSync } from "node:fs";
import * as A from "@automerge/automerge";
import { clientRepo, closeRepo, die, firstDifference, parseArgs, plain, sameHeads, serverUrl, sleep } from "./lib.mjs";

const USAGE = "usage: node read.mjs <ws-url> <in.json> [--token TOKEN] [--timeout SECONDS]";
const args = parseArgs(process.argv.slice(2), ["url", "in"], ["token", "timeout"], USAGE);
const timeoutMs = Number(args.timeout ?? 30) * 1000;
if (!(timeoutMs > 0)) die(USAGE, 2);
const expected = JSON.parse(readFileSync(args.in, "utf8"));
const deadline = Date.now() + timeoutMs;

const repo = clientRepo(serverUrl(args.url, args.token));
const problems = [];

const handles = await Promise.all(
  expected.map(({ url }) =>
    repo.find(url, { signal: AbortSignal.timeout(timeoutMs) }).catch(err => {
      problems.push(`${url}: not fetched: ${err.name === "AbortError" ? "timeout" : err.message}`);
      return null;
    }),
  ),
);

// A handle turns ready with the first data it receives, possibly before the
// sync is complete; wait until the heads match, giving up at the deadline or
// once nothing has changed for 3 s (so that a real mismatch fails quickly).
const headsOf = handle => A.getHeads(handle.doc());
const allHeads = () => JSON.stringify(handles.map(h => h && headsOf(h)));
let last = allHeads();
let lastChange = Date.now();
while (Date.now() < deadline && Date.now() - lastChange < 3000) {
  if (handles.every((h, i) => !h || sameHeads(headsOf(h), expected[i].heads))) break;
  await sleep(50);
  const now = allHeads();
  if (now !== last) [last, lastChange] = [now, Date.now()];
}

handles.forEach((handle, i) => {
  if (!handle) return;
  const { url, heads, content } = expected[i];
  const diff = firstDifference(content, plain(handle.doc()));
  if (diff) problems.push(`${url}: content differs at ${diff}`);
  if (!sameHeads(headsOf(handle), heads)) {
    problems.push(`${url}: heads differ: expected ${JSON.stringify(heads)}, got ${JSON.stringify(headsOf(handle))}`);
  }
});

await closeRepo(repo);
if (problems.length > 0) {
  console.error(`read.mjs: ${problems.length} problem(s) with ${expected.length} documents from ${args.url}:`);
  problems.forEach(p => console.error(`  ${p}`));
  process.exit(1);
}
console.log(`ok ${expected.length} documents`);
process.exit(0);
