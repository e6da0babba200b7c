-- tasktrail_feed_horizon_held_seconds as revision 0015 made it: the one number /readyz needs from
-- pg_stat_activity, with the owner's rights. Released: this text never changes.
CREATE FUNCTION tasktrail_feed_horizon_held_seconds() RETURNS double precision
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- Every database of the cluster: transaction ids, and so the horizon, are shared.
    SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0)::double precision
    FROM pg_stat_activity WHERE backend_xid IS NOT NULL
$$;
