// An onboarding workflow, written as the Upstash Workflow docs write one, that runs unchanged on
// Homing: only the environment says where QStash is (see README.md).
import { serve as serveNode } from "@hono/node-server";
import { Client } from "@upstash/workflow";
import { serve } from "@upstash/workflow/hono";
import { Hono } from "hono";

const port = Number(process.env.PORT ?? 3000);
// The URL Homing calls back; UPSTASH_WORKFLOW_URL is also what `serve` uses for its own URL.
const appUrl = process.env.UPSTASH_WORKFLOW_URL ?? `http://localhost:${port}`;
const client = new Client({ baseUrl: process.env.QSTASH_URL, token: process.env.QSTASH_TOKEN ?? "" });

type Signup = { email: string };
const outcomes = new Map<string, unknown>();

const app = new Hono();

app.get("/health", (c) => c.text("ok"));

// The front door: start a run. With the signing keys set, `serve` accepts only deliveries
// signed by Homing, so runs are started through the client, never by calling /workflow directly.
app.post("/api/signup", async (c) => {
  const body = await c.req.json<Signup>();
  const { workflowRunId } = await client.trigger({ url: `${appUrl}/workflow/onboarding`, body, retries: 3 });
  return c.json({ workflowRunId }, 202);
});

app.get("/api/runs/:id", (c) => {
  const id = c.req.param("id");
  return outcomes.has(id) ? c.json({ done: true, result: outcomes.get(id) }) : c.json({ done: false });
});

// Stands in for a third-party API (an email provider, say) that `context.call` reaches.
app.post("/fake-mailer", async (c) => c.json({ queued: true, to: (await c.req.json()).to }, 202));

app.post(
  "/workflow/onboarding",
  serve<Signup>(
    async (context) => {
      const { email } = context.requestPayload;
      const user = await context.run("create-account", () => ({ id: `user-${email}`, email }));
      // Homing makes this HTTP call and calls the workflow back with the response.
      const mail = await context.call("send-welcome", {
        url: `${appUrl}/fake-mailer`,
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ to: email, template: "welcome" }),
      });
      await context.sleep("let-them-explore", Number(process.env.ONBOARDING_PAUSE_SECONDS ?? 2));
      const summary = await context.run("summarize", () => ({ user: user.id, mailStatus: mail.status }));
      outcomes.set(context.workflowRunId, summary);
      return summary;
    },
    {
      failureFunction: ({ context, failResponse }) => {
        outcomes.set(context.workflowRunId, { failed: failResponse });
      },
    },
  ),
);

serveNode({ fetch: app.fetch, port }, () => console.log(`workflow-hono on ${appUrl}`));
