-- Homing's SQL on SQLite, by concern, in the order of the modules that run it. Named blocks
-- are loaded by homing.storage.queries.load_queries. A name shared with PostgreSQL's
-- queries.sql does the same thing there (tests/unit/test_storage_layout.py keeps the two sets
-- in step). `{ids}` / `{seqs}` are filled with one `?` per value, `{filters}` with AND-ed
-- conditions of filters.py, `{order}` with ASC or DESC and `{limit}` with `LIMIT ?` or
-- nothing: constant SQL only, every value travels as a parameter.

-- == lifecycle (backend.py) ===================================================================

-- name: create_version_table
CREATE TABLE IF NOT EXISTS homing_schema_version (version INTEGER PRIMARY KEY)

-- name: applied_versions
SELECT version FROM homing_schema_version

-- name: record_version
INSERT INTO homing_schema_version VALUES (?)

-- name: last_event_id
SELECT coalesce(max(id), 0) FROM events

-- name: schema_version
SELECT max(version) FROM homing_schema_version

-- name: purge_dedup
DELETE FROM dedup WHERE expires_ms < ?

-- name: purge_dlq
UPDATE messages SET dlq_id = NULL WHERE dlq_id IS NOT NULL AND dlq_ms < ?

-- name: purge_events
DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time_ms < ? LIMIT 5000)

-- name: purge_run_steps
DELETE FROM workflow_steps WHERE run_seq IN (
    SELECT seq FROM workflow_runs WHERE ended_ms IS NOT NULL AND ended_ms < ? ORDER BY seq LIMIT 1000
)

-- name: purge_runs
DELETE FROM workflow_runs WHERE seq IN (
    SELECT seq FROM workflow_runs WHERE ended_ms IS NOT NULL AND ended_ms < ? ORDER BY seq LIMIT 1000
)

-- name: purge_messages
DELETE FROM messages WHERE seq IN (
    SELECT seq FROM messages
    WHERE final_ms IS NOT NULL AND final_ms < ? AND dlq_id IS NULL LIMIT 5000
)

-- == accounts (accounts.py) ===================================================================

-- name: ensure_account
INSERT OR IGNORE INTO accounts (id, created_ms, current_key, next_key) VALUES (?, ?, ?, ?)

-- name: reset_keys
UPDATE accounts SET current_key = ?, next_key = ? WHERE id = ?

-- name: put_token
INSERT INTO tokens (id, account_id, token_hash, read_only, created_ms) VALUES (?, ?, ?, 0, ?)
ON CONFLICT (token_hash) DO UPDATE SET
    account_id = excluded.account_id, revoked_ms = NULL, read_only = 0

-- name: token_principal
SELECT t.account_id, t.read_only, t.id FROM tokens t
WHERE t.token_hash = ? AND t.revoked_ms IS NULL

-- name: token_active
SELECT 1 FROM tokens WHERE id = ? AND revoked_ms IS NULL

-- name: account_keys
SELECT current_key, next_key FROM accounts WHERE id = ?

-- name: rotate_keys
UPDATE accounts SET current_key = next_key, next_key = ? WHERE id = ?
RETURNING current_key, next_key

-- name: token_name_taken
SELECT 1 FROM tokens WHERE name = ? AND revoked_ms IS NULL

-- name: create_token
INSERT INTO tokens (id, account_id, token_hash, name, read_only, created_ms)
VALUES (?, ?, ?, ?, ?, ?)

-- name: list_tokens
SELECT id, account_id, name, read_only, created_ms, revoked_ms FROM tokens
ORDER BY created_ms, id

-- name: revoke_token
UPDATE tokens SET revoked_ms = ? WHERE revoked_ms IS NULL AND (id = ? OR name = ?)
RETURNING id, account_id, name, read_only, created_ms

-- name: list_accounts
SELECT id FROM accounts ORDER BY id

-- == messages (messages.py) ===================================================================

-- name: insert_messages
INSERT INTO messages (
    id, account_id, state, due_ms, created_ms, not_before_ms, url, url_host, url_path, caller_ip,
    queue_name, queue_slot, topic_name, endpoint_name, schedule_id, labels, flow_key, flow, spec, body,
    lease_owner, lease_until, lease_token
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: log_events
-- The message's seq is looked up here rather than passed: its row is in the page cache, and
-- every writer of the log stays as it is. The last value is the message id again (a numbered
-- parameter would not survive `core.insert_rows` repeating the row).
INSERT INTO events (id, account_id, message_id, time_ms, state, info, message_seq)
VALUES (?, ?, ?, ?, ?, ?, (SELECT seq FROM messages WHERE id = ?))

-- name: find_dedup
SELECT message_id, expires_ms FROM dedup WHERE account_id = ? AND key = ?

-- name: put_dedup
INSERT OR REPLACE INTO dedup (account_id, key, message_id, expires_ms) VALUES (?, ?, ?, ?)

-- name: get_message
SELECT id, account_id, url, body, spec, state, created_ms, not_before_ms, due_ms, attempts,
       caller_ip, queue_name, topic_name, endpoint_name, schedule_id, labels, flow_key, flow,
       cancel_requested, dlq_id, dlq_ms, last_response, final_ms
FROM messages WHERE id = ? AND account_id = ?

-- name: cancel_candidates
SELECT m.id, m.state, m.queue_slot FROM messages m
WHERE m.account_id = ?
  AND (m.state IN ('queued', 'ready', 'waiting') OR (m.state = 'active' AND m.cancel_requested = 0))
  {filters}
ORDER BY m.seq
{limit}

-- name: cancel_mark_active
UPDATE messages SET cancel_requested = 1 WHERE id = ?

-- name: cancel_pending
UPDATE messages SET state = 'canceled', final_ms = ?, due_ms = NULL WHERE id = ?

-- name: list_dlq
SELECT m.id, m.account_id, m.url, m.body, m.spec, m.state, m.created_ms, m.not_before_ms,
       m.due_ms, m.attempts, m.caller_ip, m.queue_name, m.topic_name, m.endpoint_name,
       m.schedule_id, m.labels, m.flow_key, m.flow, m.cancel_requested, m.dlq_id, m.dlq_ms,
       m.last_response, m.final_ms, m.seq
FROM messages m
WHERE m.account_id = ? AND m.dlq_id IS NOT NULL {filters}
ORDER BY m.seq {order}
LIMIT ?

-- name: get_dlq
SELECT id, account_id, url, body, spec, state, created_ms, not_before_ms, due_ms, attempts,
       caller_ip, queue_name, topic_name, endpoint_name, schedule_id, labels, flow_key, flow,
       cancel_requested, dlq_id, dlq_ms, last_response, final_ms
FROM messages WHERE account_id = ? AND dlq_id = ?

-- name: take_dlq
-- Remove entries from the DLQ (the message itself stays, in its final state).
UPDATE messages SET dlq_id = NULL WHERE account_id = ? AND dlq_id IN ({ids})

-- name: list_logs
SELECT e.id, e.time_ms, e.state, e.info,
       m.id, m.account_id, m.url, m.body, m.spec, m.state, m.created_ms, m.not_before_ms,
       m.due_ms, m.attempts, m.caller_ip, m.queue_name, m.topic_name, m.endpoint_name,
       m.schedule_id, m.labels, m.flow_key, m.flow, m.cancel_requested, m.dlq_id, m.dlq_ms,
       m.last_response, m.final_ms
FROM events e JOIN messages m ON m.seq = e.message_seq
WHERE e.account_id = ? {filters}
ORDER BY e.id {order}
LIMIT ?

-- == delivery (delivery.py) ===================================================================

-- name: claim_candidates
-- Due now, or (no flow-control key) due by the second time: claimed ahead, sent when due.
SELECT seq, account_id, flow_key, length(body) FROM messages
WHERE state = 'ready' AND due_ms <= ?2 AND (due_ms <= ?1 OR flow_key IS NULL)
ORDER BY due_ms LIMIT ?3

-- name: cancel_requested
SELECT cancel_requested FROM messages WHERE id = ?

-- name: claim_seqs
-- Claim the chosen READY messages (flow-control decisions already taken).
UPDATE messages SET state = 'active', lease_owner = ?, lease_until = ?, lease_token = ?
WHERE seq IN ({seqs})
RETURNING id, account_id, url, body, spec, state, created_ms, not_before_ms, due_ms, attempts,
          caller_ip, queue_name, topic_name, endpoint_name, schedule_id, labels, flow_key, flow,
          cancel_requested, dlq_id, dlq_ms, last_response, final_ms

-- name: hold_waiting
UPDATE messages SET state = 'waiting' WHERE seq IN ({seqs})

-- name: next_due
SELECT (SELECT min(due_ms) FROM messages WHERE state = 'ready') AS due,
       (SELECT min(blocked_until_ms) FROM flow_keys WHERE blocked_until_ms IS NOT NULL) AS unblock

-- name: renew_leases
UPDATE messages SET lease_until = ? WHERE state = 'active' AND lease_owner = ?

-- name: outcome_targets
-- The active messages of a batch of outcomes ({ids}: their ids), with their lease tokens: an
-- outcome is recorded only while its token still matches (fencing).
SELECT id, lease_token, account_id, cancel_requested, queue_slot, flow_key FROM messages
WHERE id IN ({ids}) AND state = 'active'

-- name: record_attempt
-- Write what the outcome decided (homing.models.Effect) and end the lease.
UPDATE messages
SET state = ?, due_ms = ?, final_ms = ?, dlq_id = ?, dlq_ms = ?, attempts = attempts + 1,
    last_response = ?, lease_owner = NULL, lease_until = NULL, lease_token = NULL
WHERE id = ?

-- name: release_node
-- Every node's claims when the node is NULL.
UPDATE messages
SET state = 'ready', due_ms = ?, lease_owner = NULL, lease_until = NULL, lease_token = NULL
WHERE state = 'active' AND (? IS NULL OR lease_owner = ?)
RETURNING id, account_id

-- name: release_expired
UPDATE messages
SET state = 'ready', due_ms = ?, lease_owner = NULL, lease_until = NULL, lease_token = NULL
WHERE state = 'active' AND lease_until < ?
RETURNING id, account_id

-- == queues (queues.py) =======================================================================

-- name: ensure_queue
INSERT OR IGNORE INTO queues (account_id, name, parallelism, paused, created_ms, updated_ms)
VALUES (?, ?, 1, 0, ?, ?)

-- name: queue_settings
SELECT parallelism, paused FROM queues WHERE account_id = ? AND name = ?

-- name: queue_busy
SELECT count(*) FROM messages
WHERE account_id = ? AND queue_slot = ? AND state IN ('ready', 'waiting', 'active')

-- name: admit_queued
UPDATE messages SET state = 'ready'
WHERE seq IN (
    SELECT seq FROM messages
    WHERE account_id = ? AND queue_name = ? AND state = 'queued'
    ORDER BY seq LIMIT ?
)
RETURNING due_ms

-- name: demote_ready
UPDATE messages SET state = 'queued'
WHERE account_id = ? AND queue_name = ? AND state IN ('ready', 'waiting')

-- name: upsert_queue
INSERT INTO queues (account_id, name, parallelism, paused, created_ms, updated_ms)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (account_id, name) DO UPDATE SET
    parallelism = excluded.parallelism, paused = excluded.paused, updated_ms = excluded.updated_ms

-- name: queue_info
SELECT name, parallelism, paused, created_ms, updated_ms,
       (SELECT count(*) FROM messages m WHERE m.account_id = q.account_id
        AND m.queue_name = q.name AND m.state IN ('queued', 'ready', 'waiting', 'active'))
FROM queues q WHERE account_id = ? AND name = ?

-- name: queue_names
SELECT name FROM queues WHERE account_id = ? ORDER BY name

-- name: set_queue_paused
UPDATE queues SET paused = ?, updated_ms = ? WHERE account_id = ? AND name = ?

-- name: cancel_queue_messages
UPDATE messages SET state = 'canceled', final_ms = ?, due_ms = NULL
WHERE account_id = ? AND queue_name = ? AND state IN ('queued', 'ready', 'waiting')
RETURNING id

-- name: delete_queue
DELETE FROM queues WHERE account_id = ? AND name = ?

-- == URL groups (url_groups.py) ===============================================================

-- name: lock_url_group
-- (No lock on SQLite: the single writer serializes changes; the name matches PostgreSQL's.)
SELECT endpoints FROM url_groups WHERE account_id = ? AND name = ?

-- name: set_url_group
INSERT INTO url_groups (account_id, name, created_ms, updated_ms, endpoints)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (account_id, name) DO UPDATE SET
    endpoints = excluded.endpoints, updated_ms = excluded.updated_ms

-- name: url_groups
SELECT name, created_ms, updated_ms, endpoints FROM url_groups
WHERE account_id = ? AND (? IS NULL OR name = ?)
ORDER BY name

-- name: delete_url_group
DELETE FROM url_groups WHERE account_id = ? AND name = ?

-- == schedules (schedules.py) =================================================================

-- name: upsert_schedule
INSERT INTO schedules (
    account_id, id, cron, destination, body, spec, created_ms, version, caller_ip, delay_s,
    queue_name, labels, flow_key, flow, paused, next_fire_ms
) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account_id, id) DO UPDATE SET
    cron = excluded.cron, destination = excluded.destination, body = excluded.body,
    spec = excluded.spec, version = schedules.version + 1, caller_ip = excluded.caller_ip,
    delay_s = excluded.delay_s, queue_name = excluded.queue_name, labels = excluded.labels,
    flow_key = excluded.flow_key, flow = excluded.flow, paused = excluded.paused,
    next_fire_ms = excluded.next_fire_ms, error = NULL

-- name: schedules
SELECT id, account_id, cron, destination, body, spec, created_ms, caller_ip, delay_s, queue_name,
       labels, flow_key, flow, paused, last_fire_ms, next_fire_ms, last_message_ids, error, version
FROM schedules WHERE account_id = ? AND (? IS NULL OR id = ?)
ORDER BY created_ms, id

-- name: message_states
SELECT id, state FROM messages WHERE id IN ({ids})

-- name: delete_schedule
DELETE FROM schedules WHERE account_id = ? AND id = ?

-- name: set_schedule_paused
UPDATE schedules SET paused = ?, next_fire_ms = coalesce(?, next_fire_ms), version = version + 1
WHERE account_id = ? AND id = ?

-- name: due_schedules
SELECT id, account_id, cron, destination, body, spec, created_ms, caller_ip, delay_s, queue_name,
       labels, flow_key, flow, paused, last_fire_ms, next_fire_ms, last_message_ids, error, version
FROM schedules WHERE paused = 0 AND next_fire_ms <= ?
ORDER BY next_fire_ms LIMIT ?

-- name: next_schedule
SELECT min(next_fire_ms) FROM schedules WHERE paused = 0

-- name: lock_schedule
-- (No lock on SQLite: the single writer serializes fires; the name matches PostgreSQL's.)
SELECT version, paused FROM schedules WHERE account_id = ? AND id = ?

-- name: move_schedule
UPDATE schedules SET next_fire_ms = ? WHERE account_id = ? AND id = ?

-- name: insert_fire
INSERT OR IGNORE INTO schedule_fires (account_id, schedule_id, tick_ms, fired_ms)
VALUES (?, ?, ?, ?)

-- name: fired_schedule
UPDATE schedules SET last_fire_ms = ?, next_fire_ms = ?, last_message_ids = ?, error = ?
WHERE account_id = ? AND id = ?

-- == flow control (flow.py) ===================================================================

-- name: flow_ensure
-- A publish with a flow-control key creates the key, or updates what is not pinned.
INSERT INTO flow_keys (account_id, key, parallelism, rate, period_s, created_ms, window_start_ms)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account_id, key) DO UPDATE SET
    parallelism = CASE WHEN pinned_parallelism THEN parallelism ELSE excluded.parallelism END,
    rate = CASE WHEN pinned_rate THEN rate ELSE excluded.rate END,
    period_s = CASE WHEN pinned_rate THEN period_s ELSE excluded.period_s END

-- name: flow_key
SELECT parallelism, rate, period_s, paused, rate_count, window_start_ms, pinned_parallelism,
       pinned_rate
FROM flow_keys WHERE account_id = ? AND key = ?

-- name: flow_active
SELECT count(*) FROM messages WHERE account_id = ? AND flow_key = ? AND state = 'active'

-- name: flow_waiting
SELECT count(*) FROM messages WHERE account_id = ? AND flow_key = ? AND state = 'waiting'

-- name: flow_save_window
UPDATE flow_keys SET rate_count = ?, window_start_ms = ? WHERE account_id = ? AND key = ?

-- name: flow_started
UPDATE flow_keys SET rate_count = rate_count + ? WHERE account_id = ? AND key = ?

-- name: flow_block
UPDATE flow_keys SET blocked_until_ms = ? WHERE account_id = ? AND key = ?

-- name: flow_promote
UPDATE messages SET state = 'ready'
WHERE seq IN (
    SELECT seq FROM messages WHERE account_id = ? AND flow_key = ? AND state = 'waiting'
    ORDER BY due_ms, seq LIMIT ?
)

-- name: flow_unblocked
SELECT account_id, key FROM flow_keys
WHERE blocked_until_ms IS NOT NULL AND blocked_until_ms <= ?

-- name: flow_list
SELECT key FROM flow_keys WHERE account_id = ? AND instr(key, ?) > 0 ORDER BY key

-- name: flow_set_paused
UPDATE flow_keys SET paused = ? WHERE account_id = ? AND key = ?

-- name: flow_pin_parallelism
UPDATE flow_keys SET parallelism = ?, pinned_parallelism = 1 WHERE account_id = ? AND key = ?

-- name: flow_pin_rate
-- Pinning the rate restarts its window.
UPDATE flow_keys
SET rate = coalesce(?, rate), period_s = coalesce(?, period_s), pinned_rate = 1,
    rate_count = 0, window_start_ms = ?
WHERE account_id = ? AND key = ?

-- name: flow_unpin
UPDATE flow_keys SET
    pinned_parallelism = CASE WHEN ? THEN 0 ELSE pinned_parallelism END,
    pinned_rate = CASE WHEN ? THEN 0 ELSE pinned_rate END
WHERE account_id = ? AND key = ?

-- name: flow_reset_rate
UPDATE flow_keys SET rate_count = 0, window_start_ms = ? WHERE account_id = ? AND key = ?

-- name: active_count
SELECT count(*) FROM messages WHERE account_id = ? AND state = 'active'

-- == statistics (stats.py) ====================================================================

-- name: event_counts
-- An event's id is never below time_ms * 1000: the id bound narrows the index range, the time
-- condition makes it exact (ids follow write order, not event time).
SELECT (time_ms / ?) * ?, state, count(*) FROM events
WHERE id >= ? AND time_ms >= ? AND (? IS NULL OR account_id = ?)
GROUP BY 1, 2 ORDER BY 1

-- name: state_counts
SELECT state, count(*) FROM messages WHERE account_id = ? GROUP BY state

-- name: state_counts_all
SELECT state, count(*) FROM messages GROUP BY state

-- name: dlq_count
SELECT count(*) FROM messages WHERE dlq_id IS NOT NULL AND account_id = ?

-- name: dlq_count_all
SELECT count(*) FROM messages WHERE dlq_id IS NOT NULL

-- name: delivery_latencies
SELECT e.time_ms - m.not_before_ms FROM events e
JOIN messages m ON m.seq = e.message_seq
WHERE e.id >= ? AND e.time_ms >= ? AND e.state = 'DELIVERED' AND (? IS NULL OR e.account_id = ?)
ORDER BY e.id DESC LIMIT ?

-- == backup and restore (backup.py) ==========================================================

-- name: backup_tables
SELECT name FROM sqlite_master

-- name: backup_schema_version
SELECT coalesce(max(version), 0) FROM homing_schema_version

-- name: backup_message_count
SELECT count(*) FROM messages

-- == workflow runs (workflows.py) ===========================================================

-- name: run_active
SELECT seq, init_message_id, step_count FROM workflow_runs
WHERE account_id = ? AND run_id = ? AND state = 'RUN_STARTED'

-- name: insert_run
INSERT INTO workflow_runs (account_id, run_id, url, state, created_ms, payload, init_message_id,
                           config, labels, flow_key, caller_ip, step_count)
VALUES (?, ?, ?, 'RUN_STARTED', ?, ?, ?, ?, ?, ?, ?, 0)
RETURNING seq

-- name: insert_step
INSERT INTO workflow_steps (run_seq, position, message_id, call_type, step_key, body, created_ms)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: set_step_count
UPDATE workflow_runs SET step_count = ? WHERE seq = ?

-- name: step_by_key
SELECT message_id FROM workflow_steps WHERE run_seq = ? AND step_key = ?

-- name: step_position
SELECT position FROM workflow_steps WHERE run_seq = ? AND message_id = ?

-- name: run_steps
SELECT position, message_id, call_type, body, created_ms FROM workflow_steps
WHERE run_seq = ? AND position <= ?
ORDER BY position

-- name: latest_run
SELECT r.seq, r.account_id, r.run_id, r.url, r.state, r.created_ms, r.ended_ms, r.payload,
       r.init_message_id, r.config, r.labels, r.caller_ip, r.result, r.failure, r.step_count
FROM workflow_runs r
WHERE r.account_id = ? AND r.run_id = ?
ORDER BY r.seq DESC LIMIT 1

-- name: list_runs
SELECT r.seq, r.account_id, r.run_id, r.url, r.state, r.created_ms, r.ended_ms, r.payload,
       r.init_message_id, r.config, r.labels, r.caller_ip, r.result, r.failure, r.step_count
FROM workflow_runs r
WHERE r.account_id = ? AND r.seq < ? {filters}
ORDER BY r.seq DESC
LIMIT ?

-- name: end_run
UPDATE workflow_runs SET state = ?, ended_ms = ?, result = ?, failure = ?
WHERE seq = ? AND state = 'RUN_STARTED'

-- name: run_message_ids
SELECT message_id FROM workflow_steps WHERE run_seq = ? ORDER BY position

-- name: lock_latest_run
SELECT seq, state FROM workflow_runs
WHERE account_id = ? AND run_id = ?
ORDER BY seq DESC LIMIT 1

-- == workflow waiters (waiters.py) ==========================================================

-- name: insert_waiter
INSERT INTO workflow_waiters (id, account_id, run_id, event_id, step_key, url, deadline_ms,
    headers, timeout_url, timeout_headers, step, timeout, created_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account_id, run_id, step_key) DO NOTHING

-- name: waiter_at_step
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters WHERE account_id = ? AND run_id = ? AND step_key = ?

-- name: event_waiters
-- Waiters of runs that ended (canceled, failed) are not reached nor listed; the timeout
-- round forgets them at their deadline.
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters w WHERE account_id = ? AND event_id = ?
  AND EXISTS (SELECT 1 FROM workflow_runs r WHERE r.account_id = w.account_id
              AND r.run_id = w.run_id AND r.state = 'RUN_STARTED')
ORDER BY created_ms, id
LIMIT ?

-- name: run_event_waiters
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters w WHERE account_id = ? AND event_id = ? AND run_id = ?
  AND EXISTS (SELECT 1 FROM workflow_runs r WHERE r.account_id = w.account_id
              AND r.run_id = w.run_id AND r.state = 'RUN_STARTED')
ORDER BY created_ms, id

-- name: run_waiters
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters WHERE account_id = ? AND run_id = ?
ORDER BY created_ms, id
LIMIT ?

-- name: due_waiters
SELECT id, account_id, run_id, event_id, step_key, url, deadline_ms, headers, timeout_url,
       timeout_headers, step, timeout, created_ms
FROM workflow_waiters WHERE deadline_ms <= ?
ORDER BY deadline_ms
LIMIT ?

-- name: next_waiter_deadline
SELECT min(deadline_ms) FROM workflow_waiters

-- name: delete_waiter
DELETE FROM workflow_waiters WHERE id = ?

-- name: oldest_event
SELECT seq, data FROM workflow_events
WHERE account_id = ? AND run_id = ? AND event_id = ?
ORDER BY seq LIMIT 1

-- name: oldest_unmatched_event
SELECT seq, data FROM workflow_events
WHERE account_id = ? AND run_id = '' AND event_id = ? AND created_ms >= ?
ORDER BY seq LIMIT 1

-- name: delete_event
DELETE FROM workflow_events WHERE seq = ?

-- name: insert_event
INSERT INTO workflow_events (account_id, run_id, event_id, data, created_ms)
VALUES (?, ?, ?, ?, ?)

-- name: expire_events
DELETE FROM workflow_events WHERE created_ms < ?
