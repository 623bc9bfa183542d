// In-memory record of the task handlers that ran, so end-to-end tests can observe them.
export type LogEntry = {
  task: string;
  at: number; // epoch milliseconds
  status: number; // what the handler answered
  messageId: string | null;
  retried: number;
  body: unknown;
};

const entries: LogEntry[] = [];

export const testLog = {
  record: (entry: LogEntry) => void entries.push(entry),
  all: () => entries.slice(),
  clear: () => void entries.splice(0),
};
