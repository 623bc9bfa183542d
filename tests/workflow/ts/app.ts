// An Upstash Workflow app (Hono on Node, the published @upstash/workflow) that the end-to-end
// tests run against Homing. One workflow per behaviour; the app records what each run saw so a
// test can assert what a user would notice. Configured only through the SDK's own environment
// variables (QSTASH_URL, QSTASH_TOKEN, QSTASH_*_SIGNING_KEY, UPSTASH_WORKFLOW_URL, or QSTASH_DEV).
import { serve as serveNode } from "@hono/node-server";
import { Receiver } from "@upstash/qstash";
import { Client, WorkflowMiddleware } from "@upstash/workflow";
import { createWorkflow, serve, serveMany } from "@upstash/workflow/hono";
import { Hono } from "hono";

const port = Number(process.env.PORT ?? 3000);
const baseUrl = process.env.UPSTASH_WORKFLOW_URL ?? `http://127.0.0.1:${port}`;
const devMode = process.env.QSTASH_DEV === "true" || process.env.QSTASH_DEV === "1";
// The third party that `context.call` reaches: the test's own receiver.
const thirdPartyUrl = process.env.THIRD_PARTY_URL ?? "http://127.0.0.1:9/third-party";

type Entry = Record<string, unknown> & { kind: string; at: number };
const events: Entry[] = [];
const deliveries: Entry[] = [];

function record(kind: string, fields: Record<string, unknown>): void {
  events.push({ kind, at: Date.now(), ...fields });
}

// The SDK already refuses unverified requests; this second, independent check records the
// verdict of every request that reaches a workflow route, so a test can show that each one was
// signed by Homing with the configured keys (not merely that nothing was refused).
const verifier = devMode
  ? new Receiver({ devMode: true })
  : process.env.QSTASH_CURRENT_SIGNING_KEY && process.env.QSTASH_NEXT_SIGNING_KEY
    ? new Receiver({
        currentSigningKey: process.env.QSTASH_CURRENT_SIGNING_KEY,
        nextSigningKey: process.env.QSTASH_NEXT_SIGNING_KEY,
      })
    : undefined;

const client = new Client({
  baseUrl: process.env.QSTASH_URL ?? "",
  token: process.env.QSTASH_TOKEN ?? "",
});

// Lifecycle and errors as the SDK reports them, per run.
const observer = new WorkflowMiddleware({
  name: "test-recorder",
  callbacks: {
    runCompleted: ({ context, result }) => {
      record("completed", { workflow: workflowOf(context.url), runId: context.workflowRunId, result });
    },
    onError: ({ workflowRunId, error }) => {
      record("error", { runId: workflowRunId, message: String(error?.message ?? error) });
    },
  },
});

function workflowOf(url: string): string {
  return new URL(url).pathname.replace(/^\/wf\//, "");
}

const app = new Hono();

// An SDK call refused by the server (trigger, cancel) comes back to the test with its text.
app.onError((error, c) => c.json({ error: String(error?.message ?? error) }, 500));

app.get("/health", (c) => c.text("ok"));
app.get("/__test/events", (c) => c.json({ events }));
app.get("/__test/deliveries", (c) => c.json({ deliveries }));

app.use("/wf/*", async (c, next) => {
  const signature = c.req.header("upstash-signature") ?? null;
  let verified: boolean | null = null;
  if (verifier && signature) {
    const body = await c.req.raw.clone().text();
    verified = await verifier.verify({ signature, body }).catch(() => false);
  }
  await next();
  deliveries.push({
    kind: "delivery",
    at: Date.now(),
    path: c.req.path,
    runId: c.req.header("upstash-workflow-runid") ?? null,
    messageId: c.req.header("upstash-message-id") ?? null,
    signed: signature !== null,
    verified,
    status: c.res.status,
  });
});

// The test starts every run through the SDK's client, as an app would: with the signing keys
// set, `serve` refuses a direct POST, so a run starts only from a delivery Homing signed.
app.post("/admin/trigger", async (c) => {
  const { workflow, body, retries, failureUrl } = await c.req.json();
  const answer = await client.trigger({
    url: `${baseUrl}/wf/${workflow}`,
    body,
    retries: retries ?? undefined,
    failureUrl: failureUrl ?? undefined,
  });
  return c.json(answer);
});

app.post("/admin/cancel", async (c) => {
  const { ids } = await c.req.json();
  return c.json(await client.cancel(ids));
});

const options = { middlewares: [observer] };

type Numbers = { n: number; pauseMs?: number };

// A step that takes a while, so a test can kill Homing while it runs.
const pause = (ms: number | undefined) => new Promise((resolve) => setTimeout(resolve, ms ?? 0));

app.post(
  "/wf/sequential",
  serve<Numbers>(async (context) => {
    const runId = context.workflowRunId;
    const { n, pauseMs } = context.requestPayload;
    const a = await context.run("add-one", async () => {
      record("step", { workflow: "sequential", runId, step: "add-one", input: n });
      await pause(pauseMs);
      return n + 1;
    });
    const b = await context.run("double", async () => {
      record("step", { workflow: "sequential", runId, step: "double", input: a });
      await pause(pauseMs);
      return a * 2;
    });
    const c = await context.run("describe", async () => {
      record("step", { workflow: "sequential", runId, step: "describe", input: b });
      await pause(pauseMs);
      return `result:${b}`;
    });
    return { a, b, c };
  }, options),
);

app.post(
  "/wf/parallel",
  serve<Numbers>(async (context) => {
    const runId = context.workflowRunId;
    const { n } = context.requestPayload;
    const branch = (name: string, value: number) =>
      context.run(name, () => {
        record("step", { workflow: "parallel", runId, step: name, input: n });
        return value;
      });
    const parts = await Promise.all([branch("p1", n + 1), branch("p2", n + 2), branch("p3", n + 3)]);
    const total = await context.run("sum", () => {
      record("step", { workflow: "parallel", runId, step: "sum", input: parts });
      return parts.reduce((x, y) => x + y, 0);
    });
    return { parts, total };
  }, options),
);

app.post(
  "/wf/sleepy",
  serve<{ seconds: number }>(async (context) => {
    const runId = context.workflowRunId;
    const { seconds } = context.requestPayload;
    const started = await context.run("before", () => {
      record("step", { workflow: "sleepy", runId, step: "before" });
      return Date.now();
    });
    await context.sleep("nap", seconds);
    const napped = await context.run("after-sleep", () => {
      record("step", { workflow: "sleepy", runId, step: "after-sleep", input: started });
      return Date.now();
    });
    // Derived from a stored step result, so every replay of the route sleeps until the same
    // instant; whole seconds, the precision of the Upstash-Not-Before header.
    const until = Math.ceil(napped / 1000) + seconds;
    await context.sleepUntil("until", until);
    const woke = await context.run("after-sleep-until", () => {
      record("step", { workflow: "sleepy", runId, step: "after-sleep-until", input: napped });
      return Date.now();
    });
    return { started, napped, until, woke };
  }, options),
);

app.post(
  "/wf/caller",
  serve<{ word: string }>(async (context) => {
    const runId = context.workflowRunId;
    const response = await context.call<{ echoed: boolean; greeting: string }>("call-third-party", {
      url: thirdPartyUrl,
      method: "POST",
      body: JSON.stringify({ word: context.requestPayload.word }),
      headers: { "X-Test-Header": "sent-by-workflow", "Content-Type": "application/json" },
    });
    await context.run("seen", () => {
      record("call-result", {
        workflow: "caller",
        runId,
        status: response.status,
        header: response.header,
        body: response.body,
      });
    });
    return response.status;
  }, options),
);

app.post(
  "/wf/failing",
  serve(
    async (context) => {
      const runId = context.workflowRunId;
      await context.run("explode", () => {
        record("step", { workflow: "failing", runId, step: "explode" });
        throw new Error(`boom in ${runId}`);
      });
    },
    {
      ...options,
      failureFunction: ({ context, failStatus, failResponse }) => {
        record("failure-function", {
          workflow: "failing",
          runId: context.workflowRunId,
          failStatus,
          failResponse,
        });
      },
    },
  ),
);

app.post(
  "/wf/cancelable",
  serve<{ seconds: number }>(async (context) => {
    const runId = context.workflowRunId;
    await context.run("first", () => {
      record("step", { workflow: "cancelable", runId, step: "first" });
    });
    await context.sleep("wait", context.requestPayload.seconds);
    await context.run("after-cancel", () => {
      record("step", { workflow: "cancelable", runId, step: "after-cancel" });
    });
  }, options),
);

// Waits for `event-<runId>` (the dev-mode test notifies it through the client).
app.post(
  "/wf/waiter",
  serve(
    async (context) => {
      const runId = context.workflowRunId;
      await context.run("before-wait", () => {
        record("step", { workflow: "waiter", runId, step: "before-wait" });
      });
      await context.waitForEvent("wait", `event-${runId}`, { timeout: "10s" });
      await context.run("after-wait", () => {
        record("step", { workflow: "waiter", runId, step: "after-wait" });
      });
    },
    {
      ...options,
      failureFunction: ({ context, failStatus, failResponse }) => {
        record("failure-function", {
          workflow: "waiter",
          runId: context.workflowRunId,
          failStatus,
          failResponse,
        });
      },
    },
  ),
);

// The workflow client's DLQ, as an operator's script would call it.
app.post("/admin/dlq", async (c) => {
  const { op, runId, dlqId } = await c.req.json();
  if (op === "list") return c.json(await client.dlq.list({ filter: { workflowRunId: runId } }));
  if (op === "resume") return c.json(await client.dlq.resume({ dlqId }));
  if (op === "restart") return c.json(await client.dlq.restart({ dlqId }));
  if (op === "callback") return c.json(await client.dlq.retryFailureFunction({ dlqId }));
  return c.json({ error: `unknown op ${op}` }, 400);
});

app.post("/admin/logs", async (c) => {
  const { runId } = await c.req.json();
  return c.json(await client.logs({ workflowRunId: runId }));
});

// Fails the first time its fragile step runs for a payload's tag, then succeeds: the first run
// fails (no retries) and lands in the workflow DLQ; a resumed or restarted run completes.
const brokenOnce = new Set<string>();
app.post(
  "/wf/flaky",
  serve<{ tag: string }>(
    async (context) => {
      const runId = context.workflowRunId;
      const { tag } = context.requestPayload;
      const prepared = await context.run("prepare", () => {
        record("step", { workflow: "flaky", runId, step: "prepare" });
        return `prepared-${tag}`;
      });
      const done = await context.run("fragile", () => {
        record("step", { workflow: "flaky", runId, step: "fragile" });
        if (!brokenOnce.has(tag)) {
          brokenOnce.add(tag);
          throw new Error(`fragile step broke for ${tag}`);
        }
        return `${prepared}-done`;
      });
      return done;
    },
    {
      ...options,
      // With a `failing-callback` tag the failure function itself fails the first time.
      failureFunction: ({ context, failStatus }) => {
        const runId = context.workflowRunId;
        record("failure-function", { workflow: "flaky", runId, failStatus });
        const { tag } = context.requestPayload;
        if (tag.startsWith("failing-callback") && !brokenOnce.has(`callback-${tag}`)) {
          brokenOnce.add(`callback-${tag}`);
          throw new Error(`failure function broke for ${tag}`);
        }
      },
    },
  ),
);

// context.invoke: the parent invokes a child that returns a value and one that fails; serveMany
// names each workflow by its last path segment, which is how the SDK derives a child's URL.
const invokeChild = createWorkflow<{ n: number }, { doubled: number }>(async (context) => {
  const doubled = await context.run("double", () => context.requestPayload.n * 2);
  return { doubled };
}, options);

const invokeFailing = createWorkflow<{ n: number }>(async (context) => {
  await context.run("explode", () => {
    throw new Error(`child refused ${context.requestPayload.n}`);
  });
}, options);

const invokeParent = createWorkflow<{ n: number }>(async (context) => {
  const runId = context.workflowRunId;
  const ok = await context.invoke("call-child", {
    workflow: invokeChild,
    body: { n: context.requestPayload.n },
    retries: 0,
  });
  const failed = await context.invoke("call-failing", {
    workflow: invokeFailing,
    body: { n: context.requestPayload.n },
    retries: 0,
  });
  await context.run("record", () => {
    record("invoke-results", { workflow: "invoke-parent", runId, ok, failed });
  });
}, options);

app.post(
  "/wf/invoke/:workflowId",
  serveMany({
    "invoke-parent": invokeParent,
    "invoke-child": invokeChild,
    "invoke-failing": invokeFailing,
  }),
);

// -- events: context.waitForEvent, client.notify, client.getWaiters, webhooks -----------------

app.post("/admin/notify", async (c) => {
  const { eventId, eventData, workflowRunId } = await c.req.json();
  return c.json(await client.notify({ eventId, eventData, workflowRunId: workflowRunId ?? undefined }));
});

app.post("/admin/waiters", async (c) => {
  const { eventId } = await c.req.json();
  return c.json(await client.getWaiters({ eventId }));
});

// Waits for the event named in its payload; records what the wait returned.
app.post(
  "/wf/event-waiter",
  serve<{ eventId: string; timeout: string; pauseMs?: number }>(async (context) => {
    const runId = context.workflowRunId;
    const { eventId, timeout, pauseMs } = context.requestPayload;
    await context.run("before-wait", async () => {
      record("step", { workflow: "event-waiter", runId, step: "before-wait" });
      await pause(pauseMs);
    });
    const { eventData, timeout: timedOut } = await context.waitForEvent("wait", eventId, { timeout });
    await context.run("after-wait", () => {
      record("step", { workflow: "event-waiter", runId, step: "after-wait" });
      record("wait-result", { workflow: "event-waiter", runId, eventData, timedOut });
    });
    return { eventData: eventData ?? null, timedOut };
  }, options),
);

// Creates a webhook, tells the test its URL, and waits for a call to it.
app.post(
  "/wf/webhook",
  serve(async (context) => {
    const runId = context.workflowRunId;
    const webhook = await context.createWebhook("create-webhook");
    await context.run("announce", () => {
      record("webhook", { workflow: "webhook", runId, url: webhook.webhookUrl });
    });
    const { request, timeout } = await context.waitForWebhook("wait-webhook", webhook, "10s");
    const seen = request
      ? { method: request.method, url: request.url, body: await request.text(), test: request.headers.get("x-test") }
      : null;
    await context.run("after-webhook", () => {
      record("webhook-call", { workflow: "webhook", runId, timeout, seen, sameUrl: seen?.url === webhook.webhookUrl });
    });
    return { timeout };
  }, options),
);

serveNode({ fetch: app.fetch, port, hostname: "127.0.0.1" }, () => {
  console.log(`workflow test app on ${baseUrl} (dev mode: ${devMode})`);
});
