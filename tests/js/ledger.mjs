// A collector's phone written in JavaScript, from docs/schema.md alone: it creates hamlet
// ledgers offline (the deterministic skeleton, then responses with its own actor id), enrolls
// with a one-time code, and syncs them to the server with the device token it gets back.
//
//   node ledger.mjs write <http-url> <code> <campaign> <hamlet,hamlet> <responses> <out.json>
//   node ledger.mjs read <http-url> <in.json>
//
// `write` records <responses> responses in each hamlet (every other one submitted), waits until
// a fresh client with the token fetches them at the same heads, and writes
// { token, device, actor, ledgers: [{ url, hamlet, heads, content }] }. `read` fetches every
// ledger with the token and checks content and heads.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import * as A from "@automerge/automerge";
import { stringifyAutomergeUrl } from "@automerge/automerge-repo";
import { clientRepo, closeRepo, die, firstDifference, plain, sameHeads, serverUrl, sleep } from "./lib.mjs";

const usage =
  "usage: node ledger.mjs write <http-url> <code> <campaign> <hamlets> <responses> <out.json>\n" +
  "       node ledger.mjs read <http-url> <in.json>";

/** The ledger's document id: the first 16 bytes of SHA-256("hamlet/ledger/1" 0 campaign 0 hamlet). */
function ledgerId(campaign, hamlet) {
  const digest = createHash("sha256").update(`hamlet/ledger/1\0${campaign}\0${hamlet}`).digest();
  return new Uint8Array(digest.subarray(0, 16));
}

/** A scalar string: a plain JavaScript string would become a collaborative text object. */
const S = s => new A.ImmutableString(s);

/** The skeleton, exactly as the schema gives it: same actor, time, operations on every device. */
function skeleton(campaign, hamlet) {
  const actor = Buffer.from(ledgerId(campaign, hamlet)).toString("hex");
  return A.change(A.init({ actor }), { time: 0 }, doc => {
    doc.schema = S("hamlet-ledger/1");
    doc.campaign = S(campaign);
    doc.hamlet = S(hamlet);
    doc.responses = {};
    doc.tallies = {};
  });
}

const DAY = "2025-06-03";
const TIME = Date.UTC(2025, 5, 3) / 1000; // midnight UTC of DAY, in seconds
const LEVELS = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"];
const SUBJECTS = ["ong-an", "can-bo-01", "can-bo-02"];

function record(doc, collector, n) {
  const id = randomUUID();
  const answers = {};
  SUBJECTS.forEach((s, i) => (answers[`tin-nhiem/${s}`] = LEVELS[(n + i) % 3]));
  answers["du-hop"] = n % 2 === 0;
  const scalars = () =>
    Object.fromEntries(Object.entries(answers).map(([k, v]) => [k, typeof v === "string" ? S(v) : v]));
  doc = A.change(doc, { time: TIME }, d => {
    d.responses[id] = { form_version: 1, recorded_on: S(DAY), collector: S(collector), answers: scalars() };
  });
  if (n % 2 === 0) {
    doc = A.change(doc, { time: TIME }, d => {
      d.responses[id].seal = { on: S(DAY), by: S(collector), answers: scalars() };
    });
  }
  return doc;
}

async function post(base, path, body) {
  const response = await fetch(new URL(path, base), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) die(`POST ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

function wsUrl(base, token) {
  const u = new URL("/sync", base);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return serverUrl(u.toString(), token);
}

/** Fetches every ledger with a fresh client until all match `expected` (heads and content). */
async function fetchAll(url, ledgers, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let problems = ["not tried"];
  while (Date.now() < deadline) {
    const repo = clientRepo(url);
    problems = [];
    for (const ledger of ledgers) {
      try {
        const handle = await Promise.race([repo.find(ledger.url), sleep(5000).then(() => null)]);
        if (!handle) {
          problems.push(`${ledger.url}: not fetched in time`);
          continue;
        }
        const doc = handle.doc();
        const heads = A.getHeads(doc);
        if (!sameHeads(heads, ledger.heads)) problems.push(`${ledger.url}: heads differ`);
        const diff = firstDifference(ledger.content, plain(doc));
        if (diff) problems.push(`${ledger.url}: ${diff}`);
      } catch (e) {
        problems.push(`${ledger.url}: ${e.message}`);
      }
    }
    await closeRepo(repo);
    if (problems.length === 0) return;
    await sleep(300);
  }
  die(`ledgers not on the server as written:\n${problems.join("\n")}`);
}

async function write([base, code, campaign, hamletList, count, out]) {
  const actor = randomBytes(16).toString("hex");
  const collectorSuffix = actor.slice(0, 6);
  const ledgers = [];
  for (const hamlet of hamletList.split(",")) {
    let doc = A.clone(skeleton(campaign, hamlet), { actor });
    for (let n = 0; n < Number(count); n++) doc = record(doc, `js-${collectorSuffix}`, n);
    const url = stringifyAutomergeUrl({ documentId: ledgerId(campaign, hamlet) });
    ledgers.push({ url, hamlet, heads: A.getHeads(doc), content: plain(doc), binary: A.save(doc) });
  }
  // Enroll only now, after recording offline: the actor id is what the server checks.
  const enrolled = await post(base, "/api/enroll", { code, actor_ids: [actor], device_name: "js-collector" });
  const url = wsUrl(base, enrolled.token);
  const repo = clientRepo(url);
  for (const ledger of ledgers) repo.import(ledger.binary, { docId: ledger.url.slice("automerge:".length) });
  await fetchAll(url, ledgers, 30_000);
  await closeRepo(repo);
  const record_ = { token: enrolled.token, device: enrolled.device, actor, ledgers: ledgers.map(({ binary, ...l }) => l) };
  writeFileSync(out, JSON.stringify(record_, null, 2));
  console.log(`wrote ${ledgers.length} ledgers of ${count} responses as actor ${actor}, all on the server`);
}

async function read([base, file]) {
  const written = JSON.parse(readFileSync(file, "utf8"));
  await fetchAll(wsUrl(base, written.token), written.ledgers, 30_000);
  console.log(`ok ${written.ledgers.length} ledgers`);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "write" && args.length === 6) await write(args);
else if (mode === "read" && args.length === 2) await read(args);
else die(usage, 2);
process.exit(0);
