import { Client, Receiver } from "@upstash/qstash";
import { env } from "../env.js";

// In dev mode (QSTASH_DEV=true) the SDK picks the local server and its credentials itself.
export const qstash = env.QSTASH_DEV
  ? new Client()
  : new Client({ baseUrl: env.QSTASH_URL, token: env.QSTASH_TOKEN });

export const receiver = env.QSTASH_DEV
  ? new Receiver()
  : new Receiver({
      currentSigningKey: env.QSTASH_CURRENT_SIGNING_KEY,
      nextSigningKey: env.QSTASH_NEXT_SIGNING_KEY,
    });

/** The public URL of an app path, as published to (and signed by) QStash. */
export const publicUrl = (path: string): string => env.APP_URL.replace(/\/+$/, "") + path;
