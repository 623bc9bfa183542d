-- Less index work per message on the hot path.
--
-- A log entry found its message through an index on events (message_id). Message ids are
-- random, so each of a message's entries (CREATED, ACTIVE, DELIVERED, ...) went to a random
-- leaf of that index: a page dirtied, and written to the WAL, per entry. An entry now names its
-- message's `seq` as well: seqs grow with time (AUTOINCREMENT: never reused, so an entry never
-- names a later message), so the entries of a batch land on the index's last pages, and the log
-- joins its message by rowid. Entries whose message is gone have none, and are not listed
-- (as before: the log joins messages).
ALTER TABLE events ADD COLUMN message_seq INTEGER;
UPDATE events SET message_seq = (SELECT m.seq FROM messages m WHERE m.id = events.message_id);
DROP INDEX events_message;
CREATE INDEX events_message ON events (message_seq);

-- Only messages that hold a queue's slot are counted by it (queue_busy: queue_slot = ?); the
-- others were indexed, and moved in the index on every state change, for nothing.
DROP INDEX messages_slots;
CREATE INDEX messages_slots ON messages (account_id, queue_slot)
    WHERE state IN ('ready', 'waiting', 'active') AND queue_slot IS NOT NULL;
