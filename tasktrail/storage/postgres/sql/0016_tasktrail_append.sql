-- tasktrail_append as revision 0016 made it: 0013's, with the key claimed by tasktrail_claim_key
-- (a key the caller claimed earlier in its transaction is its own) and every event's hash
-- returned, so that the service links the events it hands back without hashing them again; only
-- a 2xx answer is kept under the key.
-- Released: this text never changes; a later revision writes a file of its own.
CREATE FUNCTION tasktrail_append(
    p_user_id text,
    p_task_id uuid,
    p_base_version integer,
    p_occurred_at timestamptz,
    p_actor text,
    p_request_id text,
    p_schema_version smallint,
    p_types text[],
    p_data jsonb[],
    p_data_hashes text[],
    p_before_prev_hash bytea[],
    p_before_seq bytea[],
    p_after_seq bytea[],
    p_task jsonb,
    p_key text,
    p_fingerprint text,
    p_key_lifetime interval,
    p_key_wait_ms integer,
    p_status_code smallint,
    p_headers json,
    p_body bytea
) RETURNS TABLE (
    outcome text,
    seq_before bigint,
    hash_before text,
    hashes text[],
    stored_fingerprint text,
    stored_status_code smallint,
    stored_headers json,
    stored_body bytea
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_count integer := coalesce(array_length(p_types, 1), 0);
    v_seq bigint;
    v_hash text;
    v_seq_before bigint;
    v_hash_before text;
    v_last_occurred_at timestamptz;
    v_last_version integer;
    v_prev text;
    v_hashes text[] := ARRAY[]::text[];
    v_stored record;
BEGIN
    -- The user's scope (row security, 0012) for everything this call reads and writes.
    PERFORM set_config('tasktrail.user_id', p_user_id, true);
    IF p_key IS NOT NULL THEN
        SELECT * INTO v_stored
        FROM tasktrail_claim_key(p_user_id, p_key, p_fingerprint, p_key_lifetime, p_key_wait_ms);
        IF FOUND THEN
            RETURN QUERY
                SELECT 'replay', NULL::bigint, NULL::text, NULL::text[],
                       v_stored.stored_fingerprint, v_stored.stored_status_code,
                       v_stored.stored_headers, v_stored.stored_body;
            RETURN;
        END IF;
    END IF;

    IF v_count > 0 THEN
        -- The user's stream, held to the end of the transaction (as on the long path).
        INSERT INTO user_streams AS s (user_id, last_seq, head_hash, last_occurred_at)
        VALUES (p_user_id, 0, repeat('0', 64), NULL)
        ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id
        RETURNING s.last_seq, s.head_hash, s.last_occurred_at
        INTO v_seq_before, v_hash_before, v_last_occurred_at;

        -- Read after the lock, so in a snapshot that holds every earlier write of the user.
        SELECT e.version INTO v_last_version
        FROM events AS e WHERE e.task_id = p_task_id
        ORDER BY e.version DESC LIMIT 1;
        IF coalesce(v_last_version, 0) <> p_base_version
           OR v_last_occurred_at > p_occurred_at THEN
            RAISE EXCEPTION 'the snapshot this write was decided on has moved'
                USING ERRCODE = 'TT001';
        END IF;

        v_seq := v_seq_before;
        v_hash := v_hash_before;
        FOR i IN 1 .. v_count LOOP
            v_prev := v_hash;
            v_seq := v_seq + 1;
            v_hash := encode(
                sha256(
                    p_before_prev_hash[i] || convert_to(v_prev, 'UTF8')
                    || p_before_seq[i] || convert_to(v_seq::text, 'UTF8')
                    || p_after_seq[i]
                ),
                'hex'
            );
            v_hashes := v_hashes || v_hash;
            INSERT INTO events (
                user_id, seq, task_id, version, type, schema_version, data, data_hash,
                occurred_at, actor, request_id, prev_hash, hash
            ) VALUES (
                p_user_id, v_seq, p_task_id, p_base_version + i, p_types[i], p_schema_version,
                p_data[i], p_data_hashes[i], p_occurred_at, p_actor, p_request_id, v_prev, v_hash
            );
        END LOOP;

        UPDATE user_streams
        SET last_seq = v_seq, head_hash = v_hash, last_occurred_at = p_occurred_at
        WHERE user_id = p_user_id;

        INSERT INTO tasks
        SELECT * FROM jsonb_populate_record(
            NULL::tasks, p_task || jsonb_build_object('last_seq', v_seq)
        )
        -- Every column of `tasks` but the id, as this revision finds the table: a migration
        -- that adds a column to `tasks` replaces this function too.
        ON CONFLICT (id) DO UPDATE SET (
            user_id, title, title_folded, description, description_folded, completed, due_at,
            priority, tags, tags_folded, created_at, updated_at, completed_at, deleted_at,
            version, last_seq, body, etag
        ) = ROW(
            excluded.user_id, excluded.title, excluded.title_folded, excluded.description,
            excluded.description_folded, excluded.completed, excluded.due_at, excluded.priority,
            excluded.tags, excluded.tags_folded, excluded.created_at, excluded.updated_at,
            excluded.completed_at, excluded.deleted_at, excluded.version, excluded.last_seq,
            excluded.body, excluded.etag
        );
    END IF;

    -- Only a success is kept under the key; any other answer releases it.
    IF p_key IS NOT NULL AND p_status_code BETWEEN 200 AND 299 THEN
        UPDATE idempotency_keys
        SET status_code = p_status_code, headers = p_headers, body = p_body
        WHERE user_id = p_user_id AND key = p_key;
    ELSIF p_key IS NOT NULL THEN
        DELETE FROM idempotency_keys WHERE user_id = p_user_id AND key = p_key;
    END IF;

    RETURN QUERY SELECT 'written', v_seq_before, v_hash_before, v_hashes,
                        NULL::text, NULL::smallint, NULL::json, NULL::bytea;
END;
$$;
