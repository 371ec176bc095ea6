// A debugging aid: a WebSocket proxy that prints every automerge-repo message
// passing through it, decoded from CBOR, one JSON line per message.
//
//   node wire-log.mjs <listen-port> <upstream-ws-url>
//
// Point a client at ws://127.0.0.1:<listen-port><path>; the path and query are
// forwarded to the upstream server unchanged.
import { WebSocketServer, WebSocket } from "ws";
import { cbor } from "@automerge/automerge-repo";
import * as A from "@automerge/automerge";

const [port, upstream] = process.argv.slice(2);
if (!port || !upstream) {
  console.error("usage: node wire-log.mjs <listen-port> <upstream-ws-url>");
  process.exit(2);
}

// Byte fields are shown by size; a sync payload is also decoded so that its
// heads, need and have and the number of changes it carries can be seen.
function describe(bytes) {
  const message = cbor.decode(bytes);
  const shown = {};
  for (const [key, value] of Object.entries(message)) {
    shown[key] = value instanceof Uint8Array ? `<${value.byteLength} bytes>` : value === undefined ? "<undefined>" : value;
  }
  if ((message.type === "sync" || message.type === "request") && message.data) {
    const sync = A.decodeSyncMessage(message.data);
    shown.sync = { heads: sync.heads, need: sync.need, have: sync.have.length, changes: sync.changes.length };
  }
  if (message.type === "join" || message.type === "peer") shown.cborHex = Buffer.from(bytes).toString("hex");
  return shown;
}

let next = 0;
const wss = new WebSocketServer({ port: Number(port), host: "127.0.0.1" }, () => console.log(`listening on ${port}`));
wss.on("connection", (client, req) => {
  const id = ++next;
  const server = new WebSocket(new URL(req.url, upstream).toString());
  const pending = [];
  const log = (dir, data) => {
    let entry;
    try {
      entry = describe(new Uint8Array(data));
    } catch (err) {
      entry = { undecodable: Buffer.from(data).toString("hex"), error: err.message };
    }
    console.log(JSON.stringify({ conn: id, dir, ...entry }));
  };
  client.on("message", data => {
    log("client->server", data);
    if (server.readyState === WebSocket.OPEN) server.send(data);
    else pending.push(data);
  });
  server.on("open", () => pending.splice(0).forEach(data => server.send(data)));
  server.on("message", data => {
    log("server->client", data);
    client.send(data);
  });
  server.on("close", () => client.close());
  server.on("error", err => { console.log(JSON.stringify({ conn: id, upstreamError: err.message })); client.terminate(); });
  client.on("close", () => server.close());
});
