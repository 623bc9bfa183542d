import type { Client } from "@upstash/qstash";
import { publicUrl } from "../lib/qstash.js";

export type Operation = "export" | "analyze" | "cleanup";

export type UserDataPayload = {
  userId: string;
  operation: Operation;
  fail?: boolean;
};

export type PublishOptions = { retries?: number };

export const USER_EVENTS_GROUP = "user-events";
export const USER_EVENT_ENDPOINTS = ["analytics", "notifications", "crm"] as const;
export const ONBOARDING_QUEUE = "onboarding";
export const DAILY_CLEANUP_SCHEDULE = "daily-cleanup";

const taskUrl = (name: string) => publicUrl(`/api/tasks/${name}`);

export class TaskService {
  constructor(private readonly client: Client) {}

  /** Run as soon as possible. */
  async processUserData(payload: UserDataPayload, options: PublishOptions = {}) {
    const { messageId } = await this.client.publishJSON({
      url: taskUrl("process-user-data"),
      body: payload,
      retries: options.retries,
    });
    return { messageId };
  }

  /** Run after `delaySeconds`. */
  async processUserDataLater(
    payload: UserDataPayload,
    delaySeconds: number,
    options: PublishOptions = {},
  ) {
    const { messageId } = await this.client.publishJSON({
      url: taskUrl("process-user-data"),
      body: payload,
      delay: delaySeconds,
      retries: options.retries,
    });
    return { messageId };
  }

  /** Every night at 02:00 UTC; creating it again replaces it (fixed schedule id). */
  async scheduleDailyCleanup(cron = "0 2 * * *") {
    return this.client.schedules.create({
      scheduleId: DAILY_CLEANUP_SCHEDULE,
      destination: taskUrl("daily-cleanup"),
      cron,
      body: JSON.stringify({ scope: "expired-sessions" }),
      headers: { "Content-Type": "application/json" },
    });
  }

  async cancelDailyCleanup() {
    await this.client.schedules.delete(DAILY_CLEANUP_SCHEDULE);
  }

  /** Fan out one event to every endpoint of the `user-events` URL group. */
  async publishUserEvent(event: { type: string; userId: string }) {
    await this.client.urlGroups.addEndpoints({
      name: USER_EVENTS_GROUP,
      endpoints: USER_EVENT_ENDPOINTS.map((name) => ({
        name,
        url: taskUrl(`user-events/${name}`),
      })),
    });
    const results = await this.client.publishJSON({ urlGroup: USER_EVENTS_GROUP, body: event });
    return results.map(({ messageId, url }) => ({ messageId, url }));
  }

  /** Enqueue `steps` onboarding steps; the queue delivers them one at a time, in order. */
  async startOnboarding(userId: string, steps: number) {
    const queue = this.client.queue({ queueName: ONBOARDING_QUEUE });
    await queue.upsert({ parallelism: 1 });
    const messageIds: string[] = [];
    for (let step = 1; step <= steps; step++) {
      const { messageId } = await queue.enqueueJSON({
        url: taskUrl("onboarding-step"),
        body: { userId, step, total: steps },
      });
      messageIds.push(messageId);
    }
    return { messageIds };
  }
}
