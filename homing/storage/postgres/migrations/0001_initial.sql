-- Homing's schema on PostgreSQL. Times are Unix milliseconds (bigint).
--
-- Mirrors the SQLite schema (homing/storage/sqlite/migrations); the differences are noted where
-- they are. Indexes are kept to what a query needs: every index costs each message insert.

CREATE TABLE accounts (
    id          text PRIMARY KEY,
    created_ms  bigint NOT NULL,
    current_key text NOT NULL,
    next_key    text NOT NULL
);

CREATE TABLE tokens (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id),
    token_hash  text NOT NULL UNIQUE,          -- sha256 hex; the token itself is never stored
    name        text,
    read_only   boolean NOT NULL DEFAULT false,
    created_ms  bigint NOT NULL,
    revoked_ms  bigint
);
-- Names are unique among unrevoked tokens, on every node at once.
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_ms IS NULL AND name IS NOT NULL;

CREATE TABLE messages (
    id               text PRIMARY KEY,
    seq              bigint GENERATED ALWAYS AS IDENTITY,  -- insertion order: FIFO order of queues
    account_id       text NOT NULL,
    state            text NOT NULL,
    due_ms           bigint,
    attempts         integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_until      bigint,
    lease_token      bigint,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_ms       bigint NOT NULL,
    not_before_ms    bigint NOT NULL,
    final_ms         bigint,
    url              text NOT NULL,
    url_host         text NOT NULL,
    url_path         text NOT NULL,
    caller_ip        text NOT NULL DEFAULT '',
    queue_name       text,
    queue_slot       text,          -- the queue whose slot this message holds (itself or a parent's)
    topic_name       text,
    endpoint_name    text,
    schedule_id      text,
    labels           jsonb,         -- JSON array of strings; NULL when none (filter: labels ?| ...)
    flow_key         text,
    flow             text,          -- JSON [parallelism, rate, period_s]
    spec             bytea NOT NULL, -- JSON DeliverySpec
    body             bytea NOT NULL,
    dlq_id           text,
    dlq_ms           bigint,
    last_response    bytea,         -- JSON Response
    response_status  integer        -- last_response's status, for the responseStatus filter
);
CREATE INDEX messages_ready ON messages (due_ms, seq) WHERE state = 'ready';
CREATE INDEX messages_active ON messages (lease_until) WHERE state = 'active';
CREATE INDEX messages_queued ON messages (account_id, queue_name, seq) WHERE state = 'queued';
CREATE INDEX messages_slots ON messages (account_id, queue_slot)
    WHERE state IN ('ready', 'waiting', 'active') AND queue_slot IS NOT NULL;
CREATE INDEX messages_waiting ON messages (account_id, flow_key, due_ms, seq) WHERE state = 'waiting';
CREATE INDEX messages_flow_active ON messages (account_id, flow_key)
    WHERE state = 'active' AND flow_key IS NOT NULL;
CREATE UNIQUE INDEX messages_dlq_id ON messages (dlq_id) WHERE dlq_id IS NOT NULL;
CREATE INDEX messages_dlq ON messages (account_id, seq) WHERE dlq_id IS NOT NULL;
CREATE INDEX messages_final ON messages (final_ms) WHERE final_ms IS NOT NULL;

CREATE TABLE dedup (
    account_id text NOT NULL,
    key        text NOT NULL,
    message_id text NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX dedup_expires ON dedup (expires_ms);

-- Event ids come from homing_event_seq, which every statement that logs events first advances
-- to the database clock (milliseconds * 1000) when it lags behind by more than 10 ms. So ids are
-- unique (they are sequence values), strictly increasing in the order events are written, and
-- `id / 1000` is the database time of the write in Unix ms (give or take 10 ms): a logs cursor
-- can be read as a time, as on SQLite (`time_ms * 1000 + n`). The advance is made by one
-- session at a time (an advisory lock), only forward, and only when the sequence lags by more
-- than 10000 values, so no value is handed out twice.
CREATE SEQUENCE homing_event_seq AS bigint;

CREATE TABLE events (
    id         bigint PRIMARY KEY,
    account_id text NOT NULL,
    message_id text NOT NULL,
    time_ms    bigint NOT NULL,
    state      text NOT NULL,
    info       text                  -- JSON: error, response, nextDeliveryTime
);
CREATE INDEX events_account ON events (account_id, id);
CREATE INDEX events_message ON events (message_id);
-- Purge deletes by time: a BRIN index costs almost nothing per insert on this append-only table.
CREATE INDEX events_time ON events USING brin (time_ms);

CREATE TABLE queues (
    account_id  text NOT NULL,
    name        text NOT NULL,
    parallelism integer NOT NULL,
    paused      boolean NOT NULL DEFAULT false,
    created_ms  bigint NOT NULL,
    updated_ms  bigint NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE url_groups (
    account_id text NOT NULL,
    name       text NOT NULL,
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    endpoints  text NOT NULL,  -- JSON [{url, name?}] in insertion order
    PRIMARY KEY (account_id, name)
);

CREATE TABLE schedules (
    account_id       text NOT NULL,
    id               text NOT NULL,
    cron             text NOT NULL,
    destination      text NOT NULL,
    body             bytea NOT NULL,
    spec             bytea NOT NULL,
    created_ms       bigint NOT NULL,
    version          integer NOT NULL,      -- changes on every overwrite or pause; a fire checks it
    caller_ip        text NOT NULL DEFAULT '',
    delay_s          integer NOT NULL DEFAULT 0,
    queue_name       text,
    labels           jsonb,
    flow_key         text,
    flow             text,
    paused           boolean NOT NULL DEFAULT false,
    last_fire_ms     bigint,
    next_fire_ms     bigint,
    last_message_ids text[],
    error            text,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX schedules_due ON schedules (next_fire_ms) WHERE NOT paused;

-- One row per (schedule, tick) ever fired: the unique key is what makes each tick fire once.
CREATE TABLE schedule_fires (
    account_id  text NOT NULL,
    schedule_id text NOT NULL,
    tick_ms     bigint NOT NULL,
    fired_ms    bigint NOT NULL,
    PRIMARY KEY (account_id, schedule_id, tick_ms)
);

CREATE TABLE flow_keys (
    account_id         text NOT NULL,
    key                text NOT NULL,
    parallelism        integer,
    rate               integer,
    period_s           integer NOT NULL DEFAULT 1,
    pinned_parallelism boolean NOT NULL DEFAULT false,
    pinned_rate        boolean NOT NULL DEFAULT false,
    paused             boolean NOT NULL DEFAULT false,
    rate_count         integer NOT NULL DEFAULT 0,
    window_start_ms    bigint NOT NULL DEFAULT 0,
    blocked_until_ms   bigint,             -- rate window end while messages wait for it
    created_ms         bigint NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX flow_keys_blocked ON flow_keys (blocked_until_ms) WHERE blocked_until_ms IS NOT NULL;
