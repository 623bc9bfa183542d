-- Upstash Workflow runs and their step lists (mirrors SQLite's 0003_workflow_runs.sql).
--
-- A run id names one active run of an account at a time; once final, the same id may start a
-- new run, so a row is keyed by `seq` and the partial unique index keeps one active row per id
-- on every node at once.

CREATE TABLE workflow_runs (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text NOT NULL,
    run_id          text NOT NULL,
    url             text NOT NULL,
    state           text NOT NULL,
    created_ms      bigint NOT NULL,
    ended_ms        bigint,
    payload         bytea NOT NULL,
    init_message_id text NOT NULL,
    config          bytea NOT NULL,
    labels          jsonb,
    flow_key        text,
    caller_ip       text NOT NULL DEFAULT '',
    result          bytea,
    failure         text,
    step_count      integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX workflow_runs_active ON workflow_runs (account_id, run_id)
    WHERE state = 'RUN_STARTED';
CREATE INDEX workflow_runs_by_id ON workflow_runs (account_id, run_id, seq);
CREATE INDEX workflow_runs_by_account ON workflow_runs (account_id, seq);
CREATE INDEX workflow_runs_ended ON workflow_runs (ended_ms) WHERE ended_ms IS NOT NULL;

-- The step list: every message of a run in the order it was accepted (position 0: the init).
-- Appends lock the run's row, so positions follow acceptance on every node.
CREATE TABLE workflow_steps (
    run_seq    bigint NOT NULL,
    position   integer NOT NULL,
    message_id text NOT NULL,
    call_type  text NOT NULL,
    step_key   text,
    body       bytea NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (run_seq, position)
);
CREATE INDEX workflow_steps_message ON workflow_steps (message_id);
CREATE INDEX workflow_steps_key ON workflow_steps (run_seq, step_key) WHERE step_key IS NOT NULL;
