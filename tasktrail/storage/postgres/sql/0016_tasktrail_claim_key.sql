-- tasktrail_claim_key as revision 0016 made it. Released: this text never changes; a later
-- revision writes a file of its own.
--
-- Claims an Idempotency-Key for the caller's transaction, on the database's clock: the key's
-- age, its expiry and the sweep's row security (0014) all read now(). Returns no row when the key
-- is the caller's (claimed here, or earlier in the same transaction), or one row, the answer its
-- first request kept, when another write committed it. A duplicate whose first request is still
-- running waits for it here, at most p_key_wait_ms, then gets SQLSTATE TT409; the caller's own
-- lock_timeout holds again for whatever it does next.
CREATE FUNCTION tasktrail_claim_key(
    p_user_id text,
    p_key text,
    p_fingerprint text,
    p_key_lifetime interval,
    p_key_wait_ms integer
) RETURNS TABLE (
    stored_fingerprint text,
    stored_status_code smallint,
    stored_headers json,
    stored_body bytea
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_lock_timeout text := current_setting('lock_timeout');
    v_found record;
    v_claimed boolean;
BEGIN
    -- The user's scope (row security, 0012) for everything this call reads and writes.
    PERFORM set_config('tasktrail.user_id', p_user_id, true);
    -- The user's expired keys go first, so that an old key can be used afresh.
    DELETE FROM idempotency_keys
    WHERE user_id = p_user_id AND created_at < now() - p_key_lifetime;
    LOOP
        -- Only this wait is bounded by p_key_wait_ms: the caller's own setting is put back.
        PERFORM set_config('lock_timeout', p_key_wait_ms::text, true);
        BEGIN
            INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at)
            VALUES (p_user_id, p_key, p_fingerprint, now())
            ON CONFLICT (user_id, key) DO NOTHING;
            v_claimed := FOUND;
        EXCEPTION WHEN lock_not_available THEN
            RAISE EXCEPTION 'a request with this Idempotency-Key is still being processed'
                USING ERRCODE = 'TT409';
        END;
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
        IF v_claimed THEN
            RETURN;
        END IF;
        SELECT k.fingerprint::text AS fingerprint, k.status_code, k.headers, k.body
        INTO v_found
        FROM idempotency_keys AS k
        WHERE k.user_id = p_user_id AND k.key = p_key;
        IF FOUND THEN
            -- A key with no answer yet was claimed earlier in this transaction, by this caller
            -- (a key commits only with its write's answer); one with an answer is another's.
            IF v_found.status_code IS NOT NULL THEN
                RETURN QUERY SELECT v_found.fingerprint, v_found.status_code, v_found.headers,
                                    v_found.body;
            END IF;
            RETURN;
        END IF;
        -- The key that was in the way is gone (it expired, and another transaction deleted
        -- it): claim it again.
    END LOOP;
END;
$$;
