-- Schedules and flow-control keys.

CREATE TABLE schedules (
    account_id       TEXT NOT NULL,
    id               TEXT NOT NULL,
    cron             TEXT NOT NULL,
    destination      TEXT NOT NULL,
    body             BLOB NOT NULL,
    spec             BLOB NOT NULL,
    created_ms       INTEGER NOT NULL,
    version          INTEGER NOT NULL,      -- changes on every overwrite; a fire checks it
    caller_ip        TEXT NOT NULL DEFAULT '',
    delay_s          INTEGER NOT NULL DEFAULT 0,
    queue_name       TEXT,
    labels           TEXT,
    flow_key         TEXT,
    flow             TEXT,
    paused           INTEGER NOT NULL DEFAULT 0,
    last_fire_ms     INTEGER,
    next_fire_ms     INTEGER,
    last_message_ids TEXT,
    error            TEXT,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
CREATE INDEX schedules_due ON schedules (next_fire_ms) WHERE paused = 0;

-- One row per (schedule, tick) ever fired: the unique key is what makes each tick fire once.
CREATE TABLE schedule_fires (
    account_id  TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    tick_ms     INTEGER NOT NULL,
    fired_ms    INTEGER NOT NULL,
    PRIMARY KEY (account_id, schedule_id, tick_ms)
) WITHOUT ROWID;

CREATE TABLE flow_keys (
    account_id         TEXT NOT NULL,
    key                TEXT NOT NULL,
    parallelism        INTEGER,
    rate               INTEGER,
    period_s           INTEGER NOT NULL DEFAULT 1,
    pinned_parallelism INTEGER NOT NULL DEFAULT 0,
    pinned_rate        INTEGER NOT NULL DEFAULT 0,
    paused             INTEGER NOT NULL DEFAULT 0,
    rate_count         INTEGER NOT NULL DEFAULT 0,
    window_start_ms    INTEGER NOT NULL DEFAULT 0,
    blocked_until_ms   INTEGER,             -- rate window end while messages wait for it
    created_ms         INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;
CREATE INDEX flow_keys_blocked ON flow_keys (blocked_until_ms) WHERE blocked_until_ms IS NOT NULL;

CREATE INDEX messages_waiting ON messages (account_id, flow_key, due_ms, seq) WHERE state = 'waiting';
CREATE INDEX messages_flow_active ON messages (account_id, flow_key)
    WHERE state = 'active' AND flow_key IS NOT NULL;
DROP INDEX messages_slots;
CREATE INDEX messages_slots ON messages (account_id, queue_slot)
    WHERE state IN ('ready', 'waiting', 'active');
