-- name: insert_message
INSERT INTO messages (
    id, account_id, state, due_ms, created_ms, not_before_ms, url, url_host, url_path, caller_ip,
    queue_name, queue_slot, topic_name, endpoint_name, schedule_id, labels, flow_key, flow, spec, body
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_event
INSERT INTO events (id, account_id, message_id, time_ms, state, info) VALUES (?, ?, ?, ?, ?, ?)

-- name: find_dedup
SELECT message_id, expires_ms FROM dedup WHERE account_id = ? AND key = ?

-- name: put_dedup
INSERT OR REPLACE INTO dedup (account_id, key, message_id, expires_ms) VALUES (?, ?, ?, ?)

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

-- name: claim_candidates
SELECT seq, account_id, flow_key, length(body) FROM messages
WHERE state = 'ready' AND due_ms <= ? ORDER BY due_ms LIMIT ?

-- name: next_due
SELECT min(due_ms) FROM messages WHERE state = 'ready'

-- name: renew_leases
UPDATE messages SET lease_until = ? WHERE state = 'active' AND lease_owner = ?

-- name: outcome_target
SELECT account_id, cancel_requested, queue_slot, flow_key FROM messages
WHERE id = ? AND state = 'active' AND lease_token = ?

-- name: record_attempt
-- Write what the outcome decided (homing.models.Effect) and end the lease.
UPDATE messages
SET state = ?, due_ms = ?, final_ms = ?, dlq_id = ?, dlq_ms = ?, attempts = attempts + 1,
    last_response = ?, lease_owner = NULL, lease_until = NULL, lease_token = NULL
WHERE id = ?

-- name: release_node
UPDATE messages
SET state = 'ready', due_ms = ?, lease_owner = NULL, lease_until = NULL, lease_token = NULL
WHERE state = 'active' AND lease_owner = ?
RETURNING id, account_id

-- name: release_all
UPDATE messages
SET state = 'ready', due_ms = ?, lease_owner = NULL, lease_until = NULL, lease_token = NULL
WHERE state = 'active'
RETURNING id, account_id

-- name: release_expired
UPDATE messages
SET state = 'ready', due_ms = ?, lease_owner = NULL, lease_until = NULL, lease_token = NULL
WHERE state = 'active' AND lease_until < ?
RETURNING id, account_id

-- name: account_keys
SELECT current_key, next_key FROM accounts WHERE id = ?

-- name: token_principal
SELECT t.account_id, t.read_only, t.id FROM tokens t
WHERE t.token_hash = ? AND t.revoked_ms IS NULL

-- name: purge_dedup
DELETE FROM dedup WHERE expires_ms < ?

-- name: purge_dlq
UPDATE messages SET dlq_id = NULL WHERE dlq_id IS NOT NULL AND dlq_ms < ?

-- name: purge_events
DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time_ms < ? LIMIT 5000)

-- name: purge_messages
DELETE FROM messages WHERE seq IN (
    SELECT seq FROM messages
    WHERE final_ms IS NOT NULL AND final_ms < ? AND dlq_id IS NULL LIMIT 5000
)
