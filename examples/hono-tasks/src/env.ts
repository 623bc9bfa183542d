import { z } from "zod";

// The only configuration the app needs. Point QSTASH_URL at Homing (or at QStash) and nothing
// else changes.
const schema = z.object({
  PORT: z.coerce.number().int().positive().default(3000),
  // Public base URL Homing/QStash calls back; defaults to this process on localhost.
  APP_URL: z.string().url().optional(),
  QSTASH_URL: z.string().url().optional(),
  QSTASH_TOKEN: z.string().min(1),
  QSTASH_CURRENT_SIGNING_KEY: z.string().min(1),
  QSTASH_NEXT_SIGNING_KEY: z.string().min(1),
  // Exposes GET/DELETE /__test/log; never enable in production.
  TASKS_TEST_LOG: z
    .string()
    .optional()
    .transform((v) => v === "1" || v === "true"),
});

const parsed = schema.parse(process.env);

export const env = {
  ...parsed,
  APP_URL: parsed.APP_URL ?? `http://localhost:${parsed.PORT}`,
};
