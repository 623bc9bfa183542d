import { type Context, Hono } from "hono";
import { z } from "zod";
import { env } from "../env.js";
import { testLog } from "../lib/test-log.js";
import { verifySignature } from "../middleware/verify-signature.js";
import { USER_EVENT_ENDPOINTS } from "../services/task-service.js";

// Task handlers: called by QStash/Homing only, so every route checks the signature first.
export const tasks = new Hono();
tasks.use("*", verifySignature);

const processUserData = z.object({
  userId: z.string().min(1),
  operation: z.enum(["export", "analyze", "cleanup"]),
  fail: z.boolean().optional(),
});

const onboardingStep = z.object({
  userId: z.string().min(1),
  step: z.number().int().positive(),
  total: z.number().int().positive(),
});

/** Answer `status` and, when the test log is on, record that the task ran. */
function done(c: Context, task: string, body: unknown, status: 200 | 400 | 500 = 200) {
  if (env.TASKS_TEST_LOG) {
    testLog.record({
      task,
      at: Date.now(),
      status,
      messageId: c.req.header("Upstash-Message-Id") ?? null,
      retried: Number(c.req.header("Upstash-Retried") ?? 0),
      body,
    });
  }
  return c.json({ ok: status === 200, task }, status);
}

tasks.post("/process-user-data", async (c) => {
  const parsed = processUserData.safeParse(await c.req.json());
  if (!parsed.success) return done(c, "process-user-data", null, 400);
  const { userId, operation, fail } = parsed.data;
  // A real app would export, analyze or clean up the user's data here.
  if (operation === "cleanup" && fail) {
    return done(c, "process-user-data", parsed.data, 500); // QStash retries, then dead-letters
  }
  console.log(`process-user-data: ${operation} for ${userId}`);
  return done(c, "process-user-data", parsed.data);
});

tasks.post("/daily-cleanup", async (c) => {
  const body = await c.req.json().catch(() => null);
  console.log("daily-cleanup ran");
  return done(c, "daily-cleanup", body);
});

for (const name of USER_EVENT_ENDPOINTS) {
  tasks.post(`/user-events/${name}`, async (c) => done(c, `user-events/${name}`, await c.req.json()));
}

tasks.post("/onboarding-step", async (c) => {
  const parsed = onboardingStep.safeParse(await c.req.json());
  if (!parsed.success) return done(c, "onboarding-step", null, 400);
  const { userId, step, total } = parsed.data;
  console.log(`onboarding ${userId}: step ${step}/${total}`);
  return done(c, "onboarding-step", parsed.data);
});
