-- Conversations of the chat service: one row per session, one per turn.
CREATE TABLE IF NOT EXISTS chat_sessions (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    title        TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Listing a caller's sessions page by page, and the TTL sweeper.
CREATE INDEX IF NOT EXISTS chat_sessions_owner_id ON chat_sessions (owner, id);
CREATE INDEX IF NOT EXISTS chat_sessions_last_used ON chat_sessions (last_used_at);

CREATE TABLE IF NOT EXISTS chat_turns (
    session_id TEXT NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    user_text  TEXT NOT NULL,
    reply_text TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
