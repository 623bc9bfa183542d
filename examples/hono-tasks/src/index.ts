import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { ZodError } from "zod";
import { env } from "./env.js";
import { testLog } from "./lib/test-log.js";
import { tasks } from "./routes/tasks.js";
import { trigger } from "./routes/trigger.js";

const app = new Hono();

app.get("/health", (c) => c.json({ ok: true }));
app.route("/api/tasks", tasks);
app.route("/api/trigger", trigger);

if (env.TASKS_TEST_LOG) {
  app.get("/__test/log", (c) => c.json({ entries: testLog.all() }));
  app.delete("/__test/log", (c) => {
    testLog.clear();
    return c.json({ ok: true });
  });
}

app.onError((err, c) => {
  if (err instanceof ZodError) return c.json({ error: "invalid request", issues: err.issues }, 400);
  if (err instanceof SyntaxError) return c.json({ error: "invalid JSON" }, 400);
  if (err instanceof HTTPException) return err.getResponse();
  console.error(err);
  return c.json({ error: "internal error" }, 500);
});

serve({ fetch: app.fetch, port: env.PORT }, ({ port }) => {
  console.log(`hono-tasks listening on http://localhost:${port} (public URL ${env.APP_URL})`);
});
