import { createMiddleware } from "hono/factory";
import { publicUrl, receiver } from "../lib/qstash.js";

/**
 * Rejects requests that were not signed by QStash (or Homing) with 401.
 *
 * The signature covers the raw body and the URL the message was published to. The URL is
 * rebuilt from APP_URL rather than taken from the Host header, so verification also works
 * behind a proxy or tunnel.
 */
export const verifySignature = createMiddleware(async (c, next) => {
  const signature = c.req.header("Upstash-Signature");
  if (!signature) {
    return c.json({ error: "missing Upstash-Signature header" }, 401);
  }
  const { pathname, search } = new URL(c.req.url);
  const body = await c.req.text(); // cached by Hono; handlers can still call c.req.json()
  try {
    const valid = await receiver.verify({ signature, body, url: publicUrl(pathname + search) });
    if (!valid) return c.json({ error: "invalid signature" }, 401);
  } catch {
    return c.json({ error: "invalid signature" }, 401);
  }
  await next();
});
