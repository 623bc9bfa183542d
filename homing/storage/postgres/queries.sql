-- Homing's named queries on PostgreSQL (loaded by homing.storage.queries.load_queries).
--
-- Conventions:
-- * Batches travel as arrays and are unpacked with unnest(...) WITH ORDINALITY, so a batch is
--   one statement whatever its size.
-- * Every statement that logs events starts with the `clock` CTE: it advances homing_event_seq
--   to the database clock (ms * 1000) when the sequence lags by more than 10 ms. The advisory
--   lock lets one session at a time do it, and it only moves the sequence forward, by more than
--   10000, so it can never hand out a value twice (see migrations/0001_initial.sql).
-- * NOTIFY homing_work, '<due_ms>' is sent by the statement that makes work claimable, so it is
--   delivered when that work commits; a boolean `announce` parameter lets the caller leave it
--   to a coalesced NOTIFY right after commit instead (see listener.Announcer).
-- * Parameters whose type PostgreSQL cannot infer are cast where they first appear.

-- name: log_events
WITH clock AS MATERIALIZED (
    SELECT CASE
        WHEN s.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000
         AND pg_try_advisory_xact_lock(1752461, hashtext(current_schema()))
        THEN (SELECT setval('homing_event_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000)
              FROM homing_event_seq s2
              WHERE s2.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000)
    END AS advanced
    FROM homing_event_seq s
)
INSERT INTO events (id, account_id, message_id, time_ms, state, info)
SELECT nextval('homing_event_seq'), e.account_id, e.message_id, e.time_ms, e.state, e.info
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) WITH ORDINALITY
        AS e(account_id, message_id, time_ms, state, info, ord),
     clock
ORDER BY e.ord

-- name: insert_messages
WITH clock AS MATERIALIZED (
    SELECT CASE
        WHEN s.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000
         AND pg_try_advisory_xact_lock(1752461, hashtext(current_schema()))
        THEN (SELECT setval('homing_event_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000)
              FROM homing_event_seq s2
              WHERE s2.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000)
    END AS advanced
    FROM homing_event_seq s
),
ins AS (
    INSERT INTO messages (
        id, account_id, state, due_ms, created_ms, not_before_ms, url, url_host, url_path,
        caller_ip, queue_name, queue_slot, topic_name, endpoint_name, schedule_id, labels,
        flow_key, flow, spec, body, lease_owner, lease_until, lease_token
    )
    SELECT u.id, u.account_id, u.state, u.not_before_ms, u.created_ms, u.not_before_ms, u.url,
           u.url_host, u.url_path, u.caller_ip, u.queue_name, u.queue_slot, u.topic_name,
           u.endpoint_name, u.schedule_id, u.labels::jsonb, u.flow_key, u.flow, u.spec, u.body,
           CASE WHEN u.leased THEN $24::text END,
           CASE WHEN u.leased THEN $25::bigint END,
           CASE WHEN u.leased THEN $26::bigint END
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
        $15::text[], $16::text[], $17::text[], $18::bytea[], $19::bytea[], $23::bool[]
    ) AS u(
        id, account_id, state, created_ms, not_before_ms, url, url_host, url_path, caller_ip,
        queue_name, queue_slot, topic_name, endpoint_name, schedule_id, labels, flow_key, flow,
        spec, body, leased
    )
),
ev AS (
    -- CREATED for every message, then ACTIVE for those stored claimed (the local engine's).
    INSERT INTO events (id, account_id, message_id, time_ms, state, info)
    SELECT nextval('homing_event_seq'), e.account_id, e.id, e.t, e.state, e.info
    FROM (
        SELECT u.account_id, u.id, u.t, 'CREATED' AS state, u.info, u.ord, 0 AS step
        FROM unnest($1::text[], $2::text[], $20::text[], $21::bigint[]) WITH ORDINALITY
                AS u(id, account_id, info, t, ord)
        UNION ALL
        SELECT u.account_id, u.id, u.t, 'ACTIVE', NULL, u.ord, 1
        FROM unnest($1::text[], $2::text[], $21::bigint[], $23::bool[]) WITH ORDINALITY
                AS u(id, account_id, t, leased, ord)
        WHERE u.leased
    ) AS e,
         clock
    ORDER BY e.ord, e.step
)
SELECT pg_notify('homing_work', ($22::bigint)::text) WHERE $22::bigint IS NOT NULL

-- name: dedup_claim
-- Take each key unless a message used it and it has not expired; returns the keys taken.
-- (A conflicting row is locked even when it is not updated, so the follow-up read is current.)
INSERT INTO dedup AS d (account_id, key, message_id, expires_ms)
SELECT k.account_id, k.key, k.message_id, $4::bigint
FROM unnest($1::text[], $2::text[], $3::text[]) AS k(account_id, key, message_id)
ON CONFLICT (account_id, key) DO UPDATE
SET message_id = excluded.message_id, expires_ms = excluded.expires_ms
WHERE d.expires_ms <= $5::bigint
RETURNING d.account_id, d.key

-- name: dedup_originals
SELECT d.account_id, d.key, d.message_id
FROM dedup d JOIN unnest($1::text[], $2::text[]) AS k(account_id, key)
    ON d.account_id = k.account_id AND d.key = k.key

-- name: ensure_queues
INSERT INTO queues (account_id, name, parallelism, paused, created_ms, updated_ms)
SELECT q.account_id, q.name, 1, false, $3::bigint, $3::bigint
FROM unnest($1::text[], $2::text[]) AS q(account_id, name)
ON CONFLICT (account_id, name) DO NOTHING

-- name: lock_queues
-- Queue rows are locked in name order (no deadlock between two lockers) before any decision
-- about their messages: admission reads the queue's busy count only after it holds the lock.
SELECT q.account_id, q.name
FROM queues q JOIN unnest($1::text[], $2::text[]) AS k(account_id, name)
    ON q.account_id = k.account_id AND q.name = k.name
ORDER BY q.account_id, q.name
FOR UPDATE OF q

-- name: admit
-- Let queued messages start in FIFO order, up to each queue's free capacity (callers hold the
-- queue locks). Returns the earliest due time admitted, and notifies it.
WITH free AS (
    SELECT k.account_id, k.name,
           greatest(
               CASE WHEN q.paused THEN 0 ELSE q.parallelism END
               - (SELECT count(*) FROM messages b
                  WHERE b.account_id = k.account_id AND b.queue_slot = k.name
                    AND b.state IN ('ready', 'waiting', 'active')),
               0
           ) AS n
    FROM unnest($1::text[], $2::text[]) AS k(account_id, name)
    JOIN queues q ON q.account_id = k.account_id AND q.name = k.name
),
pick AS (
    SELECT p.id
    FROM free f, LATERAL (
        SELECT m.id FROM messages m
        WHERE m.account_id = f.account_id AND m.queue_name = f.name AND m.state = 'queued'
        ORDER BY m.seq LIMIT f.n
    ) p
),
upd AS (
    UPDATE messages m SET state = 'ready'
    FROM pick WHERE m.id = pick.id AND m.state = 'queued'
    RETURNING m.due_ms
)
SELECT min(due_ms) AS due,
       CASE WHEN count(*) > 0 AND $3::boolean THEN pg_notify('homing_work', min(due_ms)::text)
       END AS notified
FROM upd

-- name: demote_ready
UPDATE messages SET state = 'queued'
WHERE account_id = $1 AND queue_slot = $2 AND queue_name = $2 AND state IN ('ready', 'waiting')

-- name: claim
-- One statement per batch: lock the oldest due READY messages (skipping rows another claimer
-- holds), claim those without a flow-control key, and log ACTIVE for them. Rows of kind 'flow'
-- are due messages with a flow-control key, which the caller decides on under the key's lock;
-- the 'unblock' row gives the earliest time a rate-limited key reopens.
WITH clock AS MATERIALIZED (
    SELECT CASE
        WHEN s.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000
         AND pg_try_advisory_xact_lock(1752461, hashtext(current_schema()))
        THEN (SELECT setval('homing_event_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000)
              FROM homing_event_seq s2
              WHERE s2.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000)
    END AS advanced
    FROM homing_event_seq s
),
cand AS MATERIALIZED (
    SELECT id, account_id, flow_key, due_ms, seq FROM messages
    WHERE state = 'ready' AND due_ms <= $6::bigint
      AND (due_ms <= $1::bigint OR flow_key IS NULL)  -- claimed ahead: sent when due
    ORDER BY due_ms, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
upd AS (
    UPDATE messages m
    SET state = 'active', lease_owner = $3, lease_until = $4::bigint, lease_token = $5::bigint
    FROM cand c
    WHERE m.id = c.id AND c.flow_key IS NULL
    RETURNING m.seq, m.id, m.account_id, m.url, m.body, m.spec, m.state, m.created_ms,
              m.not_before_ms, m.due_ms, m.attempts, m.caller_ip, m.queue_name, m.topic_name,
              m.endpoint_name, m.schedule_id, m.labels, m.flow_key, m.flow, m.cancel_requested,
              m.dlq_id, m.dlq_ms, m.last_response, m.final_ms
),
ev AS (
    INSERT INTO events (id, account_id, message_id, time_ms, state)
    SELECT nextval('homing_event_seq'), u.account_id, u.id, $1::bigint, 'ACTIVE'
    FROM upd u, clock
    ORDER BY u.due_ms, u.seq
)
SELECT 'claimed' AS kind, u.seq, NULL::bigint AS unblock_ms,
       u.id, u.account_id, u.url, u.body, u.spec, u.state, u.created_ms, u.not_before_ms,
       u.due_ms, u.attempts, u.caller_ip, u.queue_name, u.topic_name, u.endpoint_name,
       u.schedule_id, u.labels, u.flow_key, u.flow, u.cancel_requested, u.dlq_id, u.dlq_ms,
       u.last_response, u.final_ms
FROM upd u
UNION ALL
SELECT 'flow', c.seq, NULL,
       c.id, c.account_id, NULL, NULL, NULL, NULL, NULL, NULL,
       c.due_ms, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, c.flow_key, NULL, NULL, NULL, NULL,
       NULL, NULL
FROM cand c WHERE c.flow_key IS NOT NULL
UNION ALL
SELECT 'unblock', NULL, min(f.blocked_until_ms),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL
FROM flow_keys f WHERE f.blocked_until_ms IS NOT NULL
HAVING min(f.blocked_until_ms) IS NOT NULL

-- name: claim_ids
-- Claim the given READY messages (flow-control decisions already taken under the key locks).
WITH clock AS MATERIALIZED (
    SELECT CASE
        WHEN s.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000
         AND pg_try_advisory_xact_lock(1752461, hashtext(current_schema()))
        THEN (SELECT setval('homing_event_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000)
              FROM homing_event_seq s2
              WHERE s2.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000)
    END AS advanced
    FROM homing_event_seq s
),
upd AS (
    UPDATE messages m
    SET state = 'active', lease_owner = $3, lease_until = $4::bigint, lease_token = $5::bigint
    WHERE m.id = ANY($1::text[]) AND m.state = 'ready'
    RETURNING m.seq, m.id, m.account_id, m.url, m.body, m.spec, m.state, m.created_ms,
              m.not_before_ms, m.due_ms, m.attempts, m.caller_ip, m.queue_name, m.topic_name,
              m.endpoint_name, m.schedule_id, m.labels, m.flow_key, m.flow, m.cancel_requested,
              m.dlq_id, m.dlq_ms, m.last_response, m.final_ms
),
ev AS (
    INSERT INTO events (id, account_id, message_id, time_ms, state)
    SELECT nextval('homing_event_seq'), u.account_id, u.id, $2::bigint, 'ACTIVE'
    FROM upd u, clock
    ORDER BY u.due_ms, u.seq
)
SELECT 'claimed' AS kind, u.seq, NULL::bigint AS unblock_ms,
       u.id, u.account_id, u.url, u.body, u.spec, u.state, u.created_ms, u.not_before_ms,
       u.due_ms, u.attempts, u.caller_ip, u.queue_name, u.topic_name, u.endpoint_name,
       u.schedule_id, u.labels, u.flow_key, u.flow, u.cancel_requested, u.dlq_id, u.dlq_ms,
       u.last_response, u.final_ms
FROM upd u

-- name: recheck_ready
SELECT id, account_id, flow_key FROM messages
WHERE id = ANY($1::text[]) AND state = 'ready' AND due_ms <= $2::bigint
ORDER BY due_ms, seq
FOR UPDATE SKIP LOCKED

-- name: hold_waiting
UPDATE messages SET state = 'waiting' WHERE id = ANY($1::text[]) AND state = 'ready'

-- name: next_due
SELECT (SELECT min(due_ms) FROM messages WHERE state = 'ready') AS due,
       (SELECT min(blocked_until_ms) FROM flow_keys WHERE blocked_until_ms IS NOT NULL) AS unblock

-- name: renew_leases
UPDATE messages SET lease_until = $1::bigint WHERE state = 'active' AND lease_owner = $2

-- name: record_outcomes
-- Apply a batch of outcomes where the lease token still matches an ACTIVE message (fencing).
-- Each outcome comes with both branches decided (homing.models.Effect: as decided, $6-$10, and
-- if a cancel was requested during the attempt, $11-$15) and its log entries ($16-$19, each
-- for one branch, or for both when the branch is NULL): the message's cancel flag picks one.
-- With $20 false, messages holding a queue slot or a flow-control key are left alone and
-- reported as `deferred`: the caller records them in a transaction that also frees the slot
-- or promotes the key's waitlist.
WITH clock AS MATERIALIZED (
    SELECT CASE
        WHEN s.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000
         AND pg_try_advisory_xact_lock(1752461, hashtext(current_schema()))
        THEN (SELECT setval('homing_event_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000)
              FROM homing_event_seq s2
              WHERE s2.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000)
    END AS advanced
    FROM homing_event_seq s
),
o AS MATERIALIZED (
    SELECT * FROM unnest(
        $1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::integer[],
        $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[],
        $11::text[], $12::bigint[], $13::bigint[], $14::text[], $15::bigint[]
    ) WITH ORDINALITY
        AS o(id, token, t, response, status,
             state, due_ms, final_ms, dlq_id, dlq_ms,
             c_state, c_due_ms, c_final_ms, c_dlq_id, c_dlq_ms, ord)
),
upd AS (
    UPDATE messages m SET
        state = CASE WHEN m.cancel_requested THEN o.c_state ELSE o.state END,
        due_ms = CASE WHEN m.cancel_requested THEN o.c_due_ms ELSE o.due_ms END,
        final_ms = CASE WHEN m.cancel_requested THEN o.c_final_ms ELSE o.final_ms END,
        dlq_id = CASE WHEN m.cancel_requested THEN o.c_dlq_id ELSE o.dlq_id END,
        dlq_ms = CASE WHEN m.cancel_requested THEN o.c_dlq_ms ELSE o.dlq_ms END,
        attempts = m.attempts + 1,
        last_response = o.response,
        response_status = o.status,
        lease_owner = NULL, lease_until = NULL, lease_token = NULL
    FROM o
    WHERE m.id = o.id AND m.state = 'active' AND m.lease_token = o.token
      AND ($20::boolean OR (m.queue_slot IS NULL AND m.flow_key IS NULL))
    RETURNING o.ord, o.t, m.id, m.account_id, m.cancel_requested, m.state, m.due_ms,
              m.queue_slot, m.flow_key
),
ev AS (
    INSERT INTO events (id, account_id, message_id, time_ms, state, info)
    SELECT nextval('homing_event_seq'), u.account_id, u.id, u.t, e.state, e.info
    FROM unnest($16::bigint[], $17::boolean[], $18::text[], $19::text[]) WITH ORDINALITY
            AS e(ord, if_canceled, state, info, n)
        JOIN upd u ON u.ord = e.ord AND (e.if_canceled IS NULL OR e.if_canceled = u.cancel_requested),
        clock
    ORDER BY e.n
)
SELECT o.ord, u.id IS NOT NULL AS applied, u.cancel_requested, u.state, u.due_ms,
       u.account_id, u.queue_slot, u.flow_key,
       (u.id IS NULL AND EXISTS (
            SELECT 1 FROM messages m
            WHERE m.id = o.id AND m.state = 'active' AND m.lease_token = o.token
       )) AS deferred,
       (SELECT pg_notify('homing_work', min(r.due_ms)::text) FROM upd r
        WHERE r.state = 'ready' AND $21::boolean HAVING count(*) > 0) AS notified
FROM o LEFT JOIN upd u ON u.ord = o.ord
ORDER BY o.ord

-- name: release_node
WITH clock AS MATERIALIZED (
    SELECT CASE
        WHEN s.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000
         AND pg_try_advisory_xact_lock(1752461, hashtext(current_schema()))
        THEN (SELECT setval('homing_event_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000)
              FROM homing_event_seq s2
              WHERE s2.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000)
    END AS advanced
    FROM homing_event_seq s
),
upd AS (
    UPDATE messages
    SET state = 'ready', due_ms = $1::bigint, lease_owner = NULL, lease_until = NULL,
        lease_token = NULL
    WHERE state = 'active' AND ($2::text IS NULL OR lease_owner = $2::text)
    RETURNING id, account_id, seq
),
ev AS (
    INSERT INTO events (id, account_id, message_id, time_ms, state, info)
    SELECT nextval('homing_event_seq'), u.account_id, u.id, $1::bigint, $3::text, $4::text
    FROM upd u, clock
    ORDER BY u.seq
)
SELECT count(*) AS n,
       CASE WHEN count(*) > 0 THEN pg_notify('homing_work', ($1::bigint)::text) END AS notified
FROM upd

-- name: release_expired
WITH clock AS MATERIALIZED (
    SELECT CASE
        WHEN s.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000
         AND pg_try_advisory_xact_lock(1752461, hashtext(current_schema()))
        THEN (SELECT setval('homing_event_seq', (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000)
              FROM homing_event_seq s2
              WHERE s2.last_value < (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 1000 - 10000)
    END AS advanced
    FROM homing_event_seq s
),
upd AS (
    UPDATE messages
    SET state = 'ready', due_ms = $1::bigint, lease_owner = NULL, lease_until = NULL,
        lease_token = NULL
    WHERE state = 'active' AND lease_until < $1::bigint
    RETURNING id, account_id, seq
),
ev AS (
    INSERT INTO events (id, account_id, message_id, time_ms, state, info)
    SELECT nextval('homing_event_seq'), u.account_id, u.id, $1::bigint, $2::text, $3::text
    FROM upd u, clock
    ORDER BY u.seq
)
SELECT count(*) AS n,
       CASE WHEN count(*) > 0 THEN pg_notify('homing_work', ($1::bigint)::text) END AS notified
FROM upd

-- name: cancel_mark_active
UPDATE messages SET cancel_requested = true
WHERE id = ANY($1::text[]) AND account_id = $2 AND state = 'active' AND NOT cancel_requested
RETURNING id, seq

-- name: cancel_pending
UPDATE messages SET state = 'canceled', final_ms = $3::bigint, due_ms = NULL
WHERE id = ANY($1::text[]) AND account_id = $2 AND state IN ('queued', 'ready', 'waiting')
RETURNING id, seq, queue_slot

-- name: cancel_queue_messages
UPDATE messages SET state = 'canceled', final_ms = $3::bigint, due_ms = NULL
WHERE account_id = $1 AND queue_name = $2 AND state IN ('queued', 'ready', 'waiting')
RETURNING id, seq

-- name: get_message
SELECT id, account_id, url, body, spec, state, created_ms, not_before_ms, due_ms, attempts,
       caller_ip, queue_name, topic_name, endpoint_name, schedule_id, labels, flow_key, flow,
       cancel_requested, dlq_id, dlq_ms, last_response, final_ms
FROM messages WHERE id = $1 AND account_id = $2

-- name: get_dlq
SELECT id, account_id, url, body, spec, state, created_ms, not_before_ms, due_ms, attempts,
       caller_ip, queue_name, topic_name, endpoint_name, schedule_id, labels, flow_key, flow,
       cancel_requested, dlq_id, dlq_ms, last_response, final_ms
FROM messages WHERE account_id = $1 AND dlq_id = $2

-- name: take_dlq
-- Remove entries from the DLQ; returns the ids that were there (RETURNING sees new values).
UPDATE messages m SET dlq_id = NULL
FROM (
    SELECT id, dlq_id FROM messages
    WHERE account_id = $1 AND dlq_id = ANY($2::text[])
    FOR UPDATE
) old
WHERE m.id = old.id AND m.dlq_id = old.dlq_id
RETURNING old.dlq_id

-- name: message_states
SELECT id, state FROM messages WHERE id = ANY($1::text[])

-- name: upsert_queue
INSERT INTO queues (account_id, name, parallelism, paused, created_ms, updated_ms)
VALUES ($1, $2, $3, $4, $5::bigint, $5::bigint)
ON CONFLICT (account_id, name) DO UPDATE
SET parallelism = excluded.parallelism, paused = excluded.paused, updated_ms = excluded.updated_ms

-- name: set_queue_paused
UPDATE queues SET paused = $3, updated_ms = $4::bigint WHERE account_id = $1 AND name = $2
RETURNING name

-- name: delete_queue
DELETE FROM queues WHERE account_id = $1 AND name = $2

-- name: queue_info
SELECT q.name, q.parallelism, q.paused, q.created_ms, q.updated_ms,
       (SELECT count(*) FROM messages m
        WHERE m.account_id = q.account_id AND m.queue_name = q.name AND m.state = 'queued')
       + (SELECT count(*) FROM messages m
          WHERE m.account_id = q.account_id AND m.queue_slot = q.name AND m.queue_name = q.name
            AND m.state IN ('ready', 'waiting', 'active')) AS lag
FROM queues q
WHERE q.account_id = $1 AND ($2::text IS NULL OR q.name = $2::text)
ORDER BY q.name

-- name: ensure_url_group
INSERT INTO url_groups (account_id, name, created_ms, updated_ms, endpoints)
VALUES ($1, $2, $3::bigint, $3::bigint, '[]')
ON CONFLICT (account_id, name) DO NOTHING

-- name: lock_url_group
SELECT endpoints FROM url_groups WHERE account_id = $1 AND name = $2 FOR UPDATE

-- name: set_url_group
UPDATE url_groups SET endpoints = $3, updated_ms = $4::bigint WHERE account_id = $1 AND name = $2

-- name: url_groups
SELECT name, created_ms, updated_ms, endpoints FROM url_groups
WHERE account_id = $1 AND ($2::text IS NULL OR name = $2::text)
ORDER BY name

-- name: delete_url_group
DELETE FROM url_groups WHERE account_id = $1 AND name = $2

-- name: ensure_account
INSERT INTO accounts (id, created_ms, current_key, next_key) VALUES ($1, $2::bigint, $3, $4)
ON CONFLICT (id) DO NOTHING

-- name: reset_keys
UPDATE accounts SET current_key = $2, next_key = $3 WHERE id = $1

-- name: put_token
INSERT INTO tokens (id, account_id, token_hash, read_only, created_ms)
VALUES ($1, $2, $3, false, $4::bigint)
ON CONFLICT (token_hash) DO UPDATE
SET account_id = excluded.account_id, revoked_ms = NULL, read_only = false

-- name: token_active
SELECT 1 FROM tokens WHERE id = $1 AND revoked_ms IS NULL

-- name: account_keys
SELECT current_key, next_key FROM accounts WHERE id = $1

-- name: rotate_keys
UPDATE accounts SET current_key = next_key, next_key = $2 WHERE id = $1
RETURNING current_key, next_key

-- name: token_principal
SELECT t.account_id, t.read_only, t.id FROM tokens t
WHERE t.token_hash = $1 AND t.revoked_ms IS NULL

-- name: active_count
SELECT count(*) FROM messages WHERE account_id = $1 AND state = 'active'

-- name: purge_dedup
DELETE FROM dedup WHERE expires_ms < $1::bigint

-- name: purge_dlq
UPDATE messages SET dlq_id = NULL WHERE dlq_id IS NOT NULL AND dlq_ms < $1::bigint

-- name: purge_events
DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time_ms < $1::bigint LIMIT 5000)

-- name: purge_run_steps
DELETE FROM workflow_steps WHERE run_seq IN (
    SELECT seq FROM workflow_runs WHERE ended_ms IS NOT NULL AND ended_ms < $1 ORDER BY seq LIMIT 1000
)

-- name: purge_runs
DELETE FROM workflow_runs WHERE seq IN (
    SELECT seq FROM workflow_runs WHERE ended_ms IS NOT NULL AND ended_ms < $1 ORDER BY seq LIMIT 1000
)

-- name: purge_messages
DELETE FROM messages WHERE id IN (
    SELECT id FROM messages
    WHERE final_ms IS NOT NULL AND final_ms < $1::bigint AND dlq_id IS NULL
    LIMIT 5000
)

-- name: notify
-- A NOTIFY of its own, sent after the work it announces committed: asynchronous commit is fine
-- for a hint, and keeps this short transaction from waiting on the WAL flush.
SELECT set_config('synchronous_commit', 'off', true), pg_notify('homing_work', $1::text)

-- name: db_now
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint

-- name: flow_ensure
-- A key exists from the first publish using it; later publishes change its configuration
-- unless pinned. Rows whose configuration does not change are not touched (nor locked).
WITH k AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[], $5::integer[])
        AS k(account_id, key, parallelism, rate, period_s)
),
ins AS (
    INSERT INTO flow_keys (account_id, key, parallelism, rate, period_s, created_ms, window_start_ms)
    SELECT k.account_id, k.key, k.parallelism, k.rate, k.period_s, $6::bigint, $6::bigint FROM k
    ON CONFLICT (account_id, key) DO NOTHING
    RETURNING account_id
)
UPDATE flow_keys f SET
    parallelism = CASE WHEN f.pinned_parallelism THEN f.parallelism ELSE k.parallelism END,
    rate = CASE WHEN f.pinned_rate THEN f.rate ELSE k.rate END,
    period_s = CASE WHEN f.pinned_rate THEN f.period_s ELSE k.period_s END
FROM k
WHERE f.account_id = k.account_id AND f.key = k.key
  AND ((NOT f.pinned_parallelism AND f.parallelism IS DISTINCT FROM k.parallelism)
       OR (NOT f.pinned_rate AND (f.rate IS DISTINCT FROM k.rate OR f.period_s <> k.period_s)))

-- name: flow_lock
-- Flow keys are locked in key order before any decision that counts their deliveries.
SELECT f.account_id, f.key, f.parallelism, f.rate, f.period_s, f.paused, f.rate_count,
       f.window_start_ms, f.blocked_until_ms
FROM flow_keys f JOIN unnest($1::text[], $2::text[]) AS k(account_id, key)
    ON f.account_id = k.account_id AND f.key = k.key
ORDER BY f.account_id, f.key
FOR UPDATE OF f

-- name: flow_active
SELECT m.account_id, m.flow_key, count(*) AS n
FROM messages m JOIN unnest($1::text[], $2::text[]) AS k(account_id, key)
    ON m.account_id = k.account_id AND m.flow_key = k.key
WHERE m.state = 'active'
GROUP BY m.account_id, m.flow_key

-- name: flow_save
UPDATE flow_keys f
SET rate_count = k.rate_count, window_start_ms = k.window_start_ms,
    blocked_until_ms = k.blocked_until_ms
FROM unnest($1::text[], $2::text[], $3::integer[], $4::bigint[], $5::bigint[])
    AS k(account_id, key, rate_count, window_start_ms, blocked_until_ms)
WHERE f.account_id = k.account_id AND f.key = k.key

-- name: flow_promote
-- Move up to n waiting messages of each key back to READY, oldest due first.
WITH pick AS (
    SELECT w.id
    FROM unnest($1::text[], $2::text[], $3::integer[]) AS k(account_id, key, n),
    LATERAL (
        SELECT m.id FROM messages m
        WHERE m.account_id = k.account_id AND m.flow_key = k.key AND m.state = 'waiting'
        ORDER BY m.due_ms, m.seq LIMIT k.n
    ) w
),
upd AS (
    UPDATE messages m SET state = 'ready'
    FROM pick WHERE m.id = pick.id AND m.state = 'waiting'
    RETURNING m.id
)
SELECT count(*) AS n,
       CASE WHEN count(*) > 0 THEN pg_notify('homing_work', ($4::bigint)::text) END AS notified
FROM upd

-- name: flow_unblocked
SELECT account_id, key FROM flow_keys
WHERE blocked_until_ms IS NOT NULL AND blocked_until_ms <= $1::bigint
ORDER BY account_id, key

-- name: flow_info
SELECT f.key, f.parallelism, f.rate, f.period_s, f.paused, f.rate_count, f.window_start_ms,
       f.pinned_parallelism, f.pinned_rate,
       (SELECT count(*) FROM messages m
        WHERE m.account_id = f.account_id AND m.flow_key = f.key AND m.state = 'waiting') AS waiting,
       (SELECT count(*) FROM messages m
        WHERE m.account_id = f.account_id AND m.flow_key = f.key AND m.state = 'active') AS active
FROM flow_keys f
WHERE f.account_id = $1 AND ($2::text IS NULL OR f.key = $2::text)
  AND ($3::text IS NULL OR strpos(f.key, $3::text) > 0)
ORDER BY f.key

-- name: flow_set_paused
UPDATE flow_keys SET paused = $3 WHERE account_id = $1 AND key = $2 RETURNING key

-- name: flow_pin_parallelism
UPDATE flow_keys SET parallelism = $3, pinned_parallelism = true
WHERE account_id = $1 AND key = $2

-- name: flow_pin_rate
UPDATE flow_keys
SET rate = coalesce($3::integer, rate), period_s = coalesce($4::integer, period_s),
    pinned_rate = true, rate_count = 0, window_start_ms = $5::bigint
WHERE account_id = $1 AND key = $2

-- name: flow_unpin
UPDATE flow_keys SET
    pinned_parallelism = CASE WHEN $3::boolean THEN false ELSE pinned_parallelism END,
    pinned_rate = CASE WHEN $4::boolean THEN false ELSE pinned_rate END
WHERE account_id = $1 AND key = $2
RETURNING key

-- name: flow_reset_rate
UPDATE flow_keys SET rate_count = 0, window_start_ms = $3::bigint
WHERE account_id = $1 AND key = $2
RETURNING key

-- name: upsert_schedule
INSERT INTO schedules (
    account_id, id, cron, destination, body, spec, created_ms, version, caller_ip, delay_s,
    queue_name, labels, flow_key, flow, paused, next_fire_ms
) VALUES ($1, $2, $3, $4, $5, $6, $7::bigint, 1, $8, $9, $10, $11::text::jsonb, $12, $13, $14,
          $15::bigint)
ON CONFLICT (account_id, id) DO UPDATE SET
    cron = excluded.cron, destination = excluded.destination, body = excluded.body,
    spec = excluded.spec, version = schedules.version + 1, caller_ip = excluded.caller_ip,
    delay_s = excluded.delay_s, queue_name = excluded.queue_name, labels = excluded.labels,
    flow_key = excluded.flow_key, flow = excluded.flow, paused = excluded.paused,
    next_fire_ms = excluded.next_fire_ms, error = NULL

-- name: schedules
SELECT id, account_id, cron, destination, body, spec, created_ms, caller_ip, delay_s,
       queue_name, labels, flow_key, flow, paused, last_fire_ms, next_fire_ms, last_message_ids,
       error, version
FROM schedules
WHERE account_id = $1 AND ($2::text IS NULL OR id = $2::text)
ORDER BY created_ms, id

-- name: due_schedules
SELECT id, account_id, cron, destination, body, spec, created_ms, caller_ip, delay_s,
       queue_name, labels, flow_key, flow, paused, last_fire_ms, next_fire_ms, last_message_ids,
       error, version
FROM schedules
WHERE NOT paused AND next_fire_ms <= $1::bigint
ORDER BY next_fire_ms
LIMIT $2

-- name: next_schedule
SELECT min(next_fire_ms) FROM schedules WHERE NOT paused

-- name: delete_schedule
DELETE FROM schedules WHERE account_id = $1 AND id = $2 RETURNING id

-- name: set_schedule_paused
UPDATE schedules
SET paused = $3, next_fire_ms = coalesce($4::bigint, next_fire_ms), version = version + 1
WHERE account_id = $1 AND id = $2
RETURNING id

-- name: lock_schedule
SELECT version, paused FROM schedules WHERE account_id = $1 AND id = $2 FOR UPDATE

-- name: move_schedule
UPDATE schedules SET next_fire_ms = $3::bigint WHERE account_id = $1 AND id = $2

-- name: insert_fire
INSERT INTO schedule_fires (account_id, schedule_id, tick_ms, fired_ms)
VALUES ($1, $2, $3::bigint, $4::bigint)
ON CONFLICT DO NOTHING
RETURNING tick_ms

-- name: fired_schedule
UPDATE schedules
SET last_fire_ms = $3::bigint, next_fire_ms = $4::bigint, last_message_ids = $5::text[],
    error = $6
WHERE account_id = $1 AND id = $2

-- name: token_name_taken
SELECT 1 FROM tokens WHERE name = $1 AND revoked_ms IS NULL

-- name: create_token
INSERT INTO tokens (id, account_id, token_hash, name, read_only, created_ms)
VALUES ($1, $2, $3, $4, $5, $6::bigint)

-- name: list_tokens
SELECT id, account_id, name, read_only, created_ms, revoked_ms FROM tokens ORDER BY created_ms, id

-- name: revoke_token
UPDATE tokens SET revoked_ms = $1::bigint
WHERE revoked_ms IS NULL AND (id = $2 OR name = $2)
RETURNING id, account_id, name, read_only, created_ms

-- name: list_accounts
SELECT id FROM accounts ORDER BY id

-- name: event_counts
SELECT (time_ms / $1::bigint) * $1::bigint AS bucket, state, count(*)
FROM events
WHERE time_ms >= $2::bigint AND ($3::text IS NULL OR account_id = $3::text)
GROUP BY 1, 2
ORDER BY 1, 2

-- name: state_counts
SELECT state, count(*) FROM messages
WHERE $1::text IS NULL OR account_id = $1::text
GROUP BY state

-- name: dlq_count
SELECT count(*) FROM messages
WHERE dlq_id IS NOT NULL AND ($1::text IS NULL OR account_id = $1::text)

-- name: delivery_latencies
SELECT e.time_ms - m.not_before_ms
FROM events e JOIN messages m ON m.id = e.message_id
WHERE e.time_ms >= $1::bigint AND e.state = 'DELIVERED'
  AND ($2::text IS NULL OR e.account_id = $2::text)
ORDER BY e.id DESC
LIMIT $3

-- name: migration_lock
-- Held by the migrating transaction: nodes starting together migrate one after the other.
SELECT pg_advisory_xact_lock(1752460, hashtext(current_schema()))

-- name: create_version_table
CREATE TABLE IF NOT EXISTS homing_schema_version (
    version    integer PRIMARY KEY,
    applied_ms bigint NOT NULL
)

-- name: applied_versions
SELECT version FROM homing_schema_version

-- name: record_version
INSERT INTO homing_schema_version (version, applied_ms)
VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)

-- name: schema_version
SELECT max(version) FROM homing_schema_version

-- name: fsync
SHOW fsync

-- Queries with a dynamic filter: `{filters}` receives only AND-ed constant fragments from
-- filters.py (values travel as $n parameters), `{order}` ASC or DESC, `{limit}` a $n.

-- name: cancel_candidates
SELECT m.id, m.state, m.queue_slot FROM messages m
WHERE m.account_id = $1
  AND (m.state IN ('queued', 'ready', 'waiting') OR (m.state = 'active' AND NOT m.cancel_requested))
  {filters}
ORDER BY m.seq
{limit}

-- name: list_dlq
SELECT m.id, m.account_id, m.url, m.body, m.spec, m.state, m.created_ms, m.not_before_ms,
       m.due_ms, m.attempts, m.caller_ip, m.queue_name, m.topic_name, m.endpoint_name,
       m.schedule_id, m.labels, m.flow_key, m.flow, m.cancel_requested, m.dlq_id, m.dlq_ms,
       m.last_response, m.final_ms, m.seq
FROM messages m
WHERE m.account_id = $1 AND m.dlq_id IS NOT NULL {filters}
ORDER BY m.seq {order}
LIMIT {limit}

-- name: list_logs
SELECT e.id, e.time_ms, e.state, e.info,
       m.id, m.account_id, m.url, m.body, m.spec, m.state, m.created_ms, m.not_before_ms,
       m.due_ms, m.attempts, m.caller_ip, m.queue_name, m.topic_name, m.endpoint_name,
       m.schedule_id, m.labels, m.flow_key, m.flow, m.cancel_requested, m.dlq_id, m.dlq_ms,
       m.last_response, m.final_ms
FROM events e JOIN messages m ON m.id = e.message_id
WHERE e.account_id = $1 {filters}
ORDER BY e.id {order}
LIMIT {limit}

-- == workflow runs (workflows.py) ===========================================================

-- name: run_active
SELECT seq, init_message_id, step_count FROM workflow_runs
WHERE account_id = $1 AND run_id = $2 AND state = 'RUN_STARTED'
FOR UPDATE

-- name: insert_run
INSERT INTO workflow_runs (account_id, run_id, url, state, created_ms, payload, init_message_id,
                           config, labels, flow_key, caller_ip, step_count)
VALUES ($1, $2, $3, 'RUN_STARTED', $4, $5, $6, $7, $8::jsonb, $9, $10, 0)
ON CONFLICT (account_id, run_id) WHERE state = 'RUN_STARTED' DO NOTHING
RETURNING seq

-- name: insert_step
INSERT INTO workflow_steps (run_seq, position, message_id, call_type, step_key, body, created_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: set_step_count
UPDATE workflow_runs SET step_count = $1 WHERE seq = $2

-- name: step_by_key
SELECT message_id FROM workflow_steps WHERE run_seq = $1 AND step_key = $2

-- name: step_position
SELECT position FROM workflow_steps WHERE run_seq = $1 AND message_id = $2

-- name: run_steps
SELECT position, message_id, call_type, body, created_ms FROM workflow_steps
WHERE run_seq = $1 AND position <= $2
ORDER BY position

-- name: latest_run
SELECT r.seq, r.account_id, r.run_id, r.url, r.state, r.created_ms, r.ended_ms, r.payload,
       r.init_message_id, r.config, r.labels::text, r.caller_ip, r.result, r.failure, r.step_count
FROM workflow_runs r
WHERE r.account_id = $1 AND r.run_id = $2
ORDER BY r.seq DESC LIMIT 1

-- name: list_runs
SELECT r.seq, r.account_id, r.run_id, r.url, r.state, r.created_ms, r.ended_ms, r.payload,
       r.init_message_id, r.config, r.labels::text, r.caller_ip, r.result, r.failure, r.step_count
FROM workflow_runs r
WHERE r.account_id = $1 AND r.seq < $2 {filters}
ORDER BY r.seq DESC
LIMIT {limit}

-- name: lock_latest_run
SELECT seq, state FROM workflow_runs
WHERE account_id = $1 AND run_id = $2
ORDER BY seq DESC LIMIT 1
FOR UPDATE

-- name: end_run
UPDATE workflow_runs SET state = $1, ended_ms = $2, result = $3, failure = $4
WHERE seq = $5 AND state = 'RUN_STARTED'

-- name: run_message_ids
SELECT message_id FROM workflow_steps WHERE run_seq = $1 ORDER BY position

-- == workflow waiters (waiters.py) ==========================================================

-- name: insert_waiter
INSERT INTO workflow_waiters (id, account_id, run_id, event_id, step_key, url, deadline_ms,
    headers, timeout_url, timeout_headers, step, timeout, created_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (account_id, run_id, step_key) DO NOTHING
RETURNING id

-- name: waiter_at_step
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters WHERE account_id = $1 AND run_id = $2 AND step_key = $3

-- name: event_waiters
-- Waiters of runs that ended (canceled, failed) are not reached nor listed; the timeout
-- round forgets them at their deadline.
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters w WHERE account_id = $1 AND event_id = $2
  AND EXISTS (SELECT 1 FROM workflow_runs r WHERE r.account_id = w.account_id
              AND r.run_id = w.run_id AND r.state = 'RUN_STARTED')
ORDER BY created_ms, id
LIMIT $3

-- name: run_event_waiters
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters w WHERE account_id = $1 AND event_id = $2 AND run_id = $3
  AND EXISTS (SELECT 1 FROM workflow_runs r WHERE r.account_id = w.account_id
              AND r.run_id = w.run_id AND r.state = 'RUN_STARTED')
ORDER BY created_ms, id

-- name: run_waiters
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters WHERE account_id = $1 AND run_id = $2
ORDER BY created_ms, id
LIMIT $3

-- name: due_waiters
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters WHERE deadline_ms <= $1
ORDER BY deadline_ms
LIMIT $2

-- name: next_waiter_deadline
SELECT min(deadline_ms) FROM workflow_waiters

-- name: delete_waiter
DELETE FROM workflow_waiters WHERE id = $1

-- name: lock_run_events
-- A run-scoped notify and a wait of the same (run, event) take turns, on every node: either
-- the wait sees the kept event, or the notify sees the waiter.
SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 0))

-- name: oldest_event
SELECT seq, data FROM workflow_events
WHERE account_id = $1 AND run_id = $2 AND event_id = $3
ORDER BY seq LIMIT 1

-- name: oldest_unmatched_event
SELECT seq, data FROM workflow_events
WHERE account_id = $1 AND run_id = '' AND event_id = $2 AND created_ms >= $3
ORDER BY seq LIMIT 1

-- name: delete_event
DELETE FROM workflow_events WHERE seq = $1

-- name: insert_event
INSERT INTO workflow_events (account_id, run_id, event_id, data, created_ms)
VALUES ($1, $2, $3, $4, $5)

-- name: expire_events
DELETE FROM workflow_events WHERE created_ms < $1

-- name: cancel_requested
SELECT cancel_requested FROM messages WHERE id = $1
