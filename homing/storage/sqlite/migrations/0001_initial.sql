-- Homing's schema on SQLite. Times are Unix milliseconds.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    current_key TEXT NOT NULL,
    next_key    TEXT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    token_hash  TEXT NOT NULL UNIQUE,          -- sha256 hex; the token itself is never stored
    name        TEXT,
    read_only   INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);

CREATE TABLE messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: FIFO order of queues
    id               TEXT NOT NULL UNIQUE,
    account_id       TEXT NOT NULL,
    state            TEXT NOT NULL,
    due_ms           INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      INTEGER,
    lease_token      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL,
    not_before_ms    INTEGER NOT NULL,
    final_ms         INTEGER,
    url              TEXT NOT NULL,
    url_host         TEXT NOT NULL,
    url_path         TEXT NOT NULL,
    caller_ip        TEXT NOT NULL DEFAULT '',
    queue_name       TEXT,
    queue_slot       TEXT,          -- the queue whose slot this message holds (itself or a parent's)
    topic_name       TEXT,
    endpoint_name    TEXT,
    schedule_id      TEXT,
    labels           TEXT,          -- JSON array
    flow_key         TEXT,
    flow             TEXT,          -- JSON {parallelism, rate, period_s}
    spec             BLOB NOT NULL, -- JSON DeliverySpec
    body             BLOB NOT NULL,
    dlq_id           TEXT UNIQUE,
    dlq_ms           INTEGER,
    last_response    BLOB           -- JSON Response
);
CREATE INDEX messages_ready ON messages (due_ms) WHERE state = 'ready';
CREATE INDEX messages_active ON messages (lease_until) WHERE state = 'active';
CREATE INDEX messages_account ON messages (account_id, seq);
CREATE INDEX messages_queued ON messages (account_id, queue_name, seq) WHERE state = 'queued';
CREATE INDEX messages_slots ON messages (account_id, queue_slot) WHERE state IN ('ready', 'active');
CREATE INDEX messages_dlq ON messages (account_id, dlq_id) WHERE dlq_id IS NOT NULL;
CREATE INDEX messages_final ON messages (final_ms) WHERE final_ms IS NOT NULL;

CREATE TABLE dedup (
    account_id TEXT NOT NULL,
    key        TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,  -- time_ms * 1000 + n: ordered, and usable as a time cursor
    account_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    time_ms    INTEGER NOT NULL,
    state      TEXT NOT NULL,
    info       BLOB                  -- JSON: error, response, nextDeliveryTime
);
CREATE INDEX events_account ON events (account_id, id);
CREATE INDEX events_message ON events (message_id);

CREATE TABLE queues (
    account_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    parallelism INTEGER NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

CREATE TABLE url_groups (
    account_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    endpoints  TEXT NOT NULL,  -- JSON [{url, name?}] in insertion order
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
