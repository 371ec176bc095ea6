// Helpers shared by write.mjs and read.mjs.
import { basename } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

// The client adapter rethrows, from a socket event handler, every connection
// error but ECONNREFUSED, e.g. "Unexpected server response: 401" when the
// server refuses the upgrade. Report it on one line and fail.
process.on("uncaughtException", err => die(`${basename(process.argv[1])}: ${err.message}`));

/**
 * Parses `argv` into `names.length` positional arguments plus `--flag value`
 * options. Exits with code 2 and the usage line on a malformed command line.
 */
export function parseArgs(argv, names, flags, usage) {
  const positional = [];
  const options = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith("--")) {
      const name = arg.slice(2);
      if (!flags.includes(name) || i + 1 >= argv.length) die(usage, 2);
      options[name] = argv[++i];
    } else {
      positional.push(arg);
    }
  }
  if (positional.length !== names.length) die(usage, 2);
  names.forEach((name, i) => (options[name] = positional[i]));
  return options;
}

export function die(message, code = 1) {
  console.error(message);
  process.exit(code);
}

/** The server URL with the optional token as a `token` query parameter. */
export function serverUrl(url, token) {
  if (token === undefined) return url;
  const u = new URL(url);
  u.searchParams.set("token", token);
  return u.toString();
}

/**
 * A Repo with no storage adapter, talking to the server over one fresh
 * WebSocket connection. Without storage it announces itself as ephemeral
 * (peerMetadata `{ storageId: undefined, isEphemeral: true }`).
 */
export function clientRepo(url) {
  return new Repo({ network: [new WebSocketClientAdapter(url)] });
}

/** Shuts a repo down (closes its socket) without ever blocking the caller for long. */
export async function closeRepo(repo) {
  await Promise.race([repo.shutdown().catch(() => {}), sleep(1000)]);
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** A doc as plain JSON data, the form stored in the exchange file. */
export const plain = doc => JSON.parse(JSON.stringify(doc));

export const sameHeads = (a, b) => isDeepStrictEqual([...a].sort(), [...b].sort());

/**
 * The path and values of the first difference between two JSON values, or
 * null when they are deep-equal. Used to print a precise mismatch.
 */
export function firstDifference(expected, actual, path = "$") {
  if (isDeepStrictEqual(expected, actual)) return null;
  const bothObjects =
    expected !== null && actual !== null && typeof expected === "object" && typeof actual === "object" &&
    Array.isArray(expected) === Array.isArray(actual);
  if (bothObjects) {
    const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
    for (const key of keys) {
      const sub = Array.isArray(expected) ? `${path}[${key}]` : `${path}.${key}`;
      const diff = firstDifference(expected[key], actual[key], sub);
      if (diff) return diff;
    }
  }
  return `${path}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}
