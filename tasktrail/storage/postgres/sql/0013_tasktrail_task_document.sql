-- tasktrail_task_document as revision 0013 made it: the single-task read, in the user's scope.
-- Released: this text never changes; a later revision writes a file of its own.
CREATE FUNCTION tasktrail_task_document(p_user_id text, p_task_id uuid)
RETURNS TABLE (body text, etag text)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM set_config('tasktrail.user_id', p_user_id, true);
    RETURN QUERY
        SELECT t.body, t.etag FROM tasks AS t
        WHERE t.id = p_task_id AND t.user_id = p_user_id AND t.deleted_at IS NULL;
END;
$$;
