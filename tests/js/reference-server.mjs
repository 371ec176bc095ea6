// The reference automerge-repo sync server, built from the official packages:
// the baseline for benchmarks and a sanity check for write.mjs / read.mjs.
//
//   node reference-server.mjs <port> [<storage-dir>]
//
// Accepts WebSocket upgrades on any path (query strings such as ?token= are
// ignored). Without a storage dir it keeps documents in memory only.
import http from "node:http";
import { WebSocketServer } from "ws";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";

const [port, storageDir] = process.argv.slice(2);
if (!/^\d+$/.test(port ?? "")) {
  console.error("usage: node reference-server.mjs <port> [<storage-dir>]");
  process.exit(2);
}

const wss = new WebSocketServer({ noServer: true });
const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end("automerge-repo reference sync server\n");
});
server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, ws => wss.emit("connection", ws, req));
});

const repo = new Repo({
  network: [new WebSocketServerAdapter(wss)],
  storage: storageDir ? new NodeFSStorageAdapter(storageDir) : undefined,
  // A server never pushes documents on its own; it syncs those a peer asks for
  // or sends (clients announce their documents to it).
  sharePolicy: async () => false,
});

server.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});

// Exit cleanly on SIGTERM/SIGINT, writing pending documents first.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    wss.close();
    server.close();
    await Promise.race([repo.flush(), new Promise(r => setTimeout(r, 2000))]);
    process.exit(0);
  });
}
