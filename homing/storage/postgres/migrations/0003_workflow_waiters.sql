-- Upstash Workflow waiters and the events kept for a run's next wait (mirrors SQLite's
-- 0004_workflow_waiters.sql).

CREATE TABLE workflow_waiters (
    id              text PRIMARY KEY,
    account_id      text NOT NULL,
    run_id          text NOT NULL,
    event_id        text NOT NULL,
    step_key        text NOT NULL,
    url             text NOT NULL,
    deadline_ms     bigint NOT NULL,
    headers         bytea NOT NULL,
    timeout_url     text NOT NULL,
    timeout_headers bytea NOT NULL,
    step            bytea NOT NULL,
    timeout         text NOT NULL,
    created_ms      bigint NOT NULL
);
CREATE UNIQUE INDEX workflow_waiters_step ON workflow_waiters (account_id, run_id, step_key);
CREATE INDEX workflow_waiters_event ON workflow_waiters (account_id, event_id, created_ms);
CREATE INDEX workflow_waiters_deadline ON workflow_waiters (deadline_ms);

CREATE TABLE workflow_events (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id text NOT NULL,
    run_id     text NOT NULL,
    event_id   text NOT NULL,
    data       bytea NOT NULL,
    created_ms bigint NOT NULL
);
CREATE INDEX workflow_events_key ON workflow_events (account_id, run_id, event_id, seq);
CREATE INDEX workflow_events_age ON workflow_events (created_ms);
