-- Upstash Workflow runs and their step lists.
--
-- A run id names one active run of an account at a time; once final, the same id may start a
-- new run, so a row is keyed by `seq` and the partial unique index keeps one active row per id.

CREATE TABLE workflow_runs (
    seq             INTEGER PRIMARY KEY,
    account_id      TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    ended_ms        INTEGER,
    payload         BLOB NOT NULL,
    init_message_id TEXT NOT NULL,
    config          BLOB NOT NULL,
    labels          TEXT,
    flow_key        TEXT,
    caller_ip       TEXT NOT NULL DEFAULT '',
    result          BLOB,
    failure         TEXT,
    step_count      INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX workflow_runs_active ON workflow_runs (account_id, run_id)
    WHERE state = 'RUN_STARTED';
CREATE INDEX workflow_runs_by_id ON workflow_runs (account_id, run_id, seq);
CREATE INDEX workflow_runs_by_account ON workflow_runs (account_id, seq);
CREATE INDEX workflow_runs_ended ON workflow_runs (ended_ms) WHERE ended_ms IS NOT NULL;

-- The step list: every message of a run in the order it was accepted (position 0: the init).
CREATE TABLE workflow_steps (
    run_seq    INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    call_type  TEXT NOT NULL,
    step_key   TEXT,
    body       BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (run_seq, position)
) WITHOUT ROWID;
CREATE INDEX workflow_steps_message ON workflow_steps (message_id);
CREATE INDEX workflow_steps_key ON workflow_steps (run_seq, step_key) WHERE step_key IS NOT NULL;
