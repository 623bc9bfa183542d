import { Hono } from "hono";
import { z } from "zod";
import { qstash } from "../lib/qstash.js";
import { TaskService } from "../services/task-service.js";

// Routes the front end calls; each one hands work to QStash/Homing and returns at once.
export const trigger = new Hono();
const service = new TaskService(qstash);

const userData = z.object({
  userId: z.string().min(1),
  operation: z.enum(["export", "analyze", "cleanup"]),
  fail: z.boolean().optional(),
  retries: z.number().int().min(0).max(20).optional(),
});

trigger.post("/immediate", async (c) => {
  const { retries, ...payload } = userData.parse(await c.req.json());
  return c.json(await service.processUserData(payload, { retries }), 202);
});

trigger.post("/delayed", async (c) => {
  const { delay, retries, ...payload } = userData
    .extend({ delay: z.number().int().min(1).default(60) })
    .parse(await c.req.json());
  return c.json(await service.processUserDataLater(payload, delay, { retries }), 202);
});

trigger.post("/scheduled", async (c) => {
  const { cron } = z
    .object({ cron: z.string().optional() })
    .parse(await c.req.json().catch(() => ({})));
  return c.json(await service.scheduleDailyCleanup(cron), 201);
});

trigger.delete("/scheduled", async (c) => {
  await service.cancelDailyCleanup();
  return c.json({ ok: true });
});

trigger.post("/fan-out", async (c) => {
  const event = z
    .object({ type: z.string().default("user.signed_up"), userId: z.string().min(1) })
    .parse(await c.req.json());
  return c.json({ messages: await service.publishUserEvent(event) }, 202);
});

trigger.post("/onboarding", async (c) => {
  const { userId, steps } = z
    .object({ userId: z.string().min(1), steps: z.number().int().min(1).max(20).default(3) })
    .parse(await c.req.json());
  return c.json(await service.startOnboarding(userId, steps), 202);
});
