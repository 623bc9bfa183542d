import { Client, Receiver } from "@upstash/qstash";
import { env } from "../env.js";

export const qstash = new Client({ baseUrl: env.QSTASH_URL, token: env.QSTASH_TOKEN });

export const receiver = new Receiver({
  currentSigningKey: env.QSTASH_CURRENT_SIGNING_KEY,
  nextSigningKey: env.QSTASH_NEXT_SIGNING_KEY,
});

/** The public URL of an app path, as published to (and signed by) QStash. */
export const publicUrl = (path: string): string => new URL(path, env.APP_URL).toString();
