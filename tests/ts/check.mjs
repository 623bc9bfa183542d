// Drives a running Homing with the official TypeScript SDK (@upstash/qstash).
//
// Environment:
//   HOMING_URL                 base URL of Homing (required)
//   RECEIVER_URL               base URL of a receiver the caller inspects afterwards (required)
//   HOMING_TOKEN               token (default: the dev user 1 token)
//   HOMING_CURRENT_SIGNING_KEY / HOMING_NEXT_SIGNING_KEY   keys for the TS Receiver
//
// Exits non-zero if any check fails. The last line of stdout is a JSON summary of what was
// published, so the caller can assert on what its receiver got.

import assert from "node:assert/strict";
import http from "node:http";
import { Client, Receiver } from "@upstash/qstash";

const DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=";
const baseUrl = process.env.HOMING_URL;
const receiverUrl = process.env.RECEIVER_URL;
const token = process.env.HOMING_TOKEN ?? DEV_TOKEN;
const currentSigningKey = process.env.HOMING_CURRENT_SIGNING_KEY ?? "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r";
const nextSigningKey = process.env.HOMING_NEXT_SIGNING_KEY ?? "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs";

if (!baseUrl || !receiverUrl) {
  console.error("HOMING_URL and RECEIVER_URL are required");
  process.exit(2);
}

const client = new Client({ baseUrl, token, enableTelemetry: true });
const summary = {};
const failures = [];

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (error) {
    failures.push(name);
    console.log(`FAIL ${name}: ${error?.stack ?? error}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(fn, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

// A tiny receiver of our own, so the TS Receiver can verify a real delivery.
const captured = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    captured.push({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end("ok");
  });
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const ownUrl = `http://127.0.0.1:${server.address().port}`;

await check("publishJSON is delivered and verified by the TS Receiver", async () => {
  const url = `${ownUrl}/verify?source=ts`;
  const { messageId } = await client.publishJSON({ url, body: { hello: "ts" } });
  const got = await eventually(() => {
    const found = captured.find((r) => r.headers["upstash-message-id"] === messageId);
    assert.ok(found, "not delivered yet");
    return found;
  });
  assert.equal(got.url, "/verify?source=ts");
  assert.equal(got.body, '{"hello":"ts"}');
  const receiver = new Receiver({ currentSigningKey, nextSigningKey });
  const signature = got.headers["upstash-signature"];
  assert.equal(await receiver.verify({ signature, body: got.body, url }), true);
  await assert.rejects(receiver.verify({ signature, body: '{"hello":"tampered"}', url }));
  await assert.rejects(receiver.verify({ signature, body: got.body, url: `${ownUrl}/elsewhere` }));
  // Only the next key still verifies (the receiver falls back to it).
  const rotated = new Receiver({ currentSigningKey: "sig_wrong", nextSigningKey: currentSigningKey });
  assert.equal(await rotated.verify({ signature, body: got.body }), true);
});

await check("schedules.create / get / list / pause / resume", async () => {
  const destination = `${receiverUrl}/ts-template`;
  const created = await client.schedules.create({
    destination,
    cron: "*/10 * * * * ",
    scheduleId: "ts-template",
    body: '{"hello":"world"}',
    headers: { "test-header": "test-value", "Upstash-Forward-bypass-tunnel-reminder": "client-test" },
    method: "GET",
    retries: 5,
    delay: 10,
    queueName: "ts-template-queue",
  });
  assert.deepEqual(created, { scheduleId: "ts-template" });
  const schedule = await client.schedules.get("ts-template");
  assert.equal(schedule.cron, "*/10 * * * *");
  assert.equal(schedule.destination, destination);
  assert.equal(schedule.method, "GET");
  assert.deepEqual(schedule.header, {
    "Bypass-Tunnel-Reminder": ["client-test"],
    "Content-Type": ["application/json"],
    "Test-Header": ["test-value"],
  });
  assert.equal(schedule.body, '{"hello":"world"}');
  assert.equal(schedule.retries, 5);
  assert.equal(schedule.delay, 10);
  assert.equal(schedule.queueName, "ts-template-queue");
  assert.equal(schedule.isPaused, false);

  await client.schedules.create({ destination, cron: "0 * * * *", scheduleId: "ts-template" });
  const overwritten = await client.schedules.get("ts-template");
  assert.equal(overwritten.body, undefined);
  assert.equal(overwritten.cron, "0 * * * *");

  await client.schedules.pause({ schedule: "ts-template" });
  assert.equal((await client.schedules.get("ts-template")).isPaused, true);
  await client.schedules.resume({ schedule: "ts-template" });
  assert.equal((await client.schedules.get("ts-template")).isPaused, false);

  const tick = await client.schedules.create({
    destination: `${receiverUrl}/ts-tick`,
    cron: "* * * * * *",
    body: "tick",
  });
  summary.tickScheduleId = tick.scheduleId;
  const ids = (await client.schedules.list()).map((s) => s.scheduleId).sort();
  assert.deepEqual(ids, [tick.scheduleId, "ts-template"].sort());
  await client.schedules.delete("ts-template");
  await assert.rejects(client.schedules.get("ts-template"));
});

await check("urlGroups.addEndpoints / get and a group publish", async () => {
  const endpoints = [
    { name: "a", url: `${receiverUrl}/ts-a` },
    { url: `${receiverUrl}/ts-b` },
  ];
  await client.urlGroups.addEndpoints({ name: "ts-group", endpoints });
  const group = await client.urlGroups.get("ts-group");
  assert.equal(group.name, "ts-group");
  assert.deepEqual(group.endpoints, endpoints);
  const results = await client.publishJSON({ urlGroup: "ts-group", body: { group: true } });
  assert.ok(Array.isArray(results));
  assert.deepEqual(results.map((r) => r.url), endpoints.map((e) => e.url));
  summary.groupMessageIds = results.map((r) => r.messageId);
});

await check("queue().upsert / get / enqueueJSON", async () => {
  const queue = client.queue({ queueName: "ts-queue" });
  await queue.upsert({ parallelism: 2 });
  const info = await queue.get();
  assert.equal(info.name, "ts-queue");
  assert.equal(info.parallelism, 2);
  assert.equal(typeof info.lag, "number");
  const { messageId } = await queue.enqueueJSON({ url: `${receiverUrl}/ts-queue`, body: { queued: 1 } });
  summary.queueMessageId = messageId;
  const message = await client.messages.get(messageId);
  assert.equal(message.queueName, "ts-queue");
});

await check("publishJSON with delay: 1", async () => {
  summary.delayedPublishedAt = Date.now();
  const { messageId } = await client.publishJSON({
    url: `${receiverUrl}/ts-delayed`,
    body: { delayed: true },
    delay: 1,
  });
  summary.delayedMessageId = messageId;
  const message = await client.messages.get(messageId);
  assert.ok(message.notBefore >= message.createdAt + 1000, JSON.stringify(message));
});

await check("messages.cancel on a delayed message", async () => {
  const { messageId } = await client.publishJSON({
    url: `${receiverUrl}/ts-cancelled`,
    body: { never: true },
    delay: 3600,
  });
  summary.cancelledMessageId = messageId;
  assert.deepEqual(await client.messages.cancel(messageId), { cancelled: 1 });
  await assert.rejects(client.messages.cancel(messageId));
});

await check("logs()", async () => {
  const { logs, events, cursor } = await client.logs({ filter: { messageId: summary.cancelledMessageId } });
  assert.equal(cursor, undefined);
  assert.deepEqual(logs, events);
  const states = logs.map((entry) => entry.state).sort();
  assert.deepEqual(states, ["CANCELED", "CANCEL_REQUESTED", "CREATED"]);
  assert.ok(logs.every((entry) => entry.messageId === summary.cancelledMessageId && typeof entry.time === "number"));
});

await check("dlq.listMessages()", async () => {
  const result = await client.dlq.listMessages();
  assert.ok(Array.isArray(result.messages));
  assert.equal(result.cursor, undefined);
});

await check("flowControl.get / getGlobalParallelism", async () => {
  await client.publishJSON({
    url: `${ownUrl}/flow`,
    body: {},
    flowControl: { key: "ts-key", parallelism: 2, rate: 10, period: "1m" },
  });
  const info = await client.flowControl.get("ts-key");
  assert.equal(info.flowControlKey, "ts-key");
  for (const key of ["waitListSize", "parallelismMax", "parallelismCount"]) {
    assert.equal(typeof info[key], "number", key);
  }
  const global = await client.flowControl.getGlobalParallelism();
  assert.equal(typeof global.parallelismMax, "number");
  assert.equal(typeof global.parallelismCount, "number");
});

server.close();
console.log(JSON.stringify(summary));
if (failures.length) {
  console.error(`${failures.length} check(s) failed: ${failures.join(", ")}`);
  process.exit(1);
}
