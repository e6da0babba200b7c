-- tasktrail_append as revision 0010 made it: a decided write applied in one call (see the
-- revision's docstring). Released: this text never changes; a later revision writes a file of its own.
CREATE OR REPLACE FUNCTION tasktrail_append(
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
    head_hash text,
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
BEGIN
    IF p_key IS NOT NULL THEN
        -- The user's expired keys go first, so that an old key can be used afresh. A duplicate
        -- whose first request is still running waits for it here, at most p_key_wait_ms.
        DELETE FROM idempotency_keys
        WHERE user_id = p_user_id AND created_at < now() - p_key_lifetime;
        PERFORM set_config('lock_timeout', p_key_wait_ms::text, true);
        BEGIN
            INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at)
            VALUES (p_user_id, p_key, p_fingerprint, now())
            ON CONFLICT (user_id, key) DO NOTHING;
        EXCEPTION WHEN lock_not_available THEN
            RAISE EXCEPTION 'a request with this Idempotency-Key is still being processed'
                USING ERRCODE = 'TT409';
        END;
        IF NOT FOUND THEN
            RETURN QUERY
                SELECT 'replay', NULL::bigint, NULL::text, NULL::text,
                       k.fingerprint::text, k.status_code, k.headers, k.body
                FROM idempotency_keys AS k
                WHERE k.user_id = p_user_id AND k.key = p_key;
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

    IF p_key IS NOT NULL THEN
        UPDATE idempotency_keys
        SET status_code = p_status_code, headers = p_headers, body = p_body
        WHERE user_id = p_user_id AND key = p_key;
    END IF;

    RETURN QUERY SELECT 'written', v_seq_before, v_hash_before, v_hash,
                        NULL::text, NULL::smallint, NULL::json, NULL::bytea;
END;
$$;
