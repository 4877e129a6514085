// The workerd peer of the stores scenario: Miniflare (workerd with local KV and D1, as
// `wrangler dev` runs them) serving the same requests as kv-counter and sql-todo.
// Usage: node stores.mjs HOST:PORT. `/` answers 200 once the data is seeded.
import { Miniflare } from "miniflare";

const [host, port] = process.argv[2].split(":");
const script = `
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/hello") return new Response("hello from workerd");
    if (url.pathname === "/get") {
      const value = await env.KV.get(url.searchParams.get("key"));
      return value === null ? new Response("not found", { status: 404 }) : new Response(value);
    }
    const todo = url.pathname.match(/^\\/todos\\/(\\d+)$/);
    if (todo) {
      const row = await env.DB.prepare("SELECT id, title, done, created_at FROM todos WHERE id = ?")
        .bind(Number(todo[1])).first();
      return row === null ? new Response("not found", { status: 404 }) : Response.json(row);
    }
    if (url.pathname === "/") {
      const seeded = await env.KV.get("seeded");
      return new Response(seeded ? "ready" : "seeding", { status: seeded ? 200 : 503 });
    }
    return new Response("not found", { status: 404 });
  },
};`;

const mf = new Miniflare({
  modules: true,
  script,
  kvNamespaces: ["KV"],
  d1Databases: ["DB"],
  host,
  port: Number(port),
});
await mf.ready;
const kv = await mf.getKVNamespace("KV");
await kv.put("greeting", "hello from kv");
const db = await mf.getD1Database("DB");
await db.exec(
  "CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL DEFAULT (unixepoch()))",
);
for (let i = 0; i < 100; i++) {
  await db.prepare("INSERT INTO todos (title) VALUES (?)").bind(`todo ${i}`).run();
}
await kv.put("seeded", "yes");
