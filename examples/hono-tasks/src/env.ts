import { z } from "zod";

const flag = z
  .string()
  .optional()
  .transform((v) => v === "1" || v === "true");

// The only configuration the app needs. Point QSTASH_URL at Homing (or at QStash) and nothing
// else changes.
const schema = z
  .object({
    PORT: z.coerce.number().int().positive().default(3000),
    // Public base URL Homing/QStash calls back; defaults to this process on localhost.
    APP_URL: z.string().url().optional(),
    QSTASH_URL: z.string().url().optional(),
    QSTASH_TOKEN: z.string().min(1).optional(),
    QSTASH_CURRENT_SIGNING_KEY: z.string().min(1).optional(),
    QSTASH_NEXT_SIGNING_KEY: z.string().min(1).optional(),
    // SDK dev mode: use the local dev server (Homing on port 8080 or QSTASH_DEV_PORT) and
    // its public development credentials; the three secrets above are then not needed.
    QSTASH_DEV: flag,
    // Exposes GET/DELETE /__test/log; never enable in production.
    TASKS_TEST_LOG: flag,
  })
  .refine(
    (e) =>
      e.QSTASH_DEV ||
      (e.QSTASH_TOKEN && e.QSTASH_CURRENT_SIGNING_KEY && e.QSTASH_NEXT_SIGNING_KEY),
    "set QSTASH_TOKEN, QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY (or QSTASH_DEV=true)",
  );

const parsed = schema.parse(process.env);

export const env = {
  ...parsed,
  APP_URL: parsed.APP_URL ?? `http://localhost:${parsed.PORT}`,
};
