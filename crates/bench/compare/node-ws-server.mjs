// A minimal fan-out server on Node.js and the `ws` package, speaking the subset of the
// signalhub protocol that signalhub-bench uses (welcome, subscribe/subscribed, envelopes
// with per-channel seq, POST /api/v1/publish), the way teams hand-build it today: a
// connection set per channel and a broadcast loop. Each publication is serialized once.
// Usage: node node-ws-server.mjs PORT API_KEY   (prints "listening on 127.0.0.1:PORT")
import http from "node:http";
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] ?? 0);
const apiKey = process.argv[3] ?? "benchkey1234";
const channels = new Map(); // name -> { seq, subs: Set<WebSocket> }
const channel = (name) => {
  let c = channels.get(name);
  if (!c) channels.set(name, (c = { seq: 0, subs: new Set() }));
  return c;
};
let ids = 0;

const server = http.createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/api/v1/publish") {
    res.writeHead(404).end();
    return;
  }
  if (req.headers.authorization !== `Bearer ${apiKey}`) {
    res.writeHead(401).end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const c = channel(body.channel);
    c.seq += 1;
    const id = `pub_${++ids}`;
    const envelope = JSON.stringify({
      type: body.type, channel: body.channel, epoch: "e1", seq: c.seq, id,
      timestamp: new Date().toISOString(), data: body.data,
    });
    for (const ws of c.subs) ws.send(envelope);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ id, channel: body.channel, epoch: "e1", seq: c.seq }));
  });
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 65536 });
server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    const held = new Set();
    ws.send(JSON.stringify({ type: "welcome", connection_id: "c", auth: "anonymous", tier: "free" }));
    ws.on("message", (raw) => {
      const frame = JSON.parse(raw.toString());
      if (frame.type !== "subscribe") return;
      const positions = frame.channels.map((name) => {
        const c = channel(name);
        c.subs.add(ws);
        held.add(name);
        return { channel: name, epoch: "e1", seq: c.seq, recovered: false };
      });
      ws.send(JSON.stringify({ type: "subscribed", id: frame.id, channels: positions }));
    });
    ws.on("close", () => held.forEach((name) => channel(name).subs.delete(ws)));
  });
});

server.listen(port, "127.0.0.1", () => {
  process.stderr.write(`listening on 127.0.0.1:${server.address().port}\n`);
});
