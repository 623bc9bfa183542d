-- Upstash Workflow waiters (`context.waitForEvent`) and the events kept for a run's next wait
-- (a run-scoped notify or a webhook call that found no waiter: "lookback").
--
-- A waiter is resolved (notified or timed out) by appending its result step to the run, which
-- the run's step keys accept once; the row is deleted afterwards.

CREATE TABLE workflow_waiters (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    step_key        TEXT NOT NULL,
    url             TEXT NOT NULL,
    deadline_ms     INTEGER NOT NULL,
    headers         BLOB NOT NULL,
    timeout_url     TEXT NOT NULL,
    timeout_headers BLOB NOT NULL,
    step            BLOB NOT NULL,
    timeout         TEXT NOT NULL,
    created_ms      INTEGER NOT NULL
);
CREATE UNIQUE INDEX workflow_waiters_step ON workflow_waiters (account_id, run_id, step_key);
CREATE INDEX workflow_waiters_event ON workflow_waiters (account_id, event_id, created_ms);
CREATE INDEX workflow_waiters_deadline ON workflow_waiters (deadline_ms);

CREATE TABLE workflow_events (
    seq        INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    data       BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX workflow_events_key ON workflow_events (account_id, run_id, event_id, seq);
CREATE INDEX workflow_events_age ON workflow_events (created_ms);
