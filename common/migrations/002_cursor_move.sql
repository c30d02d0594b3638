-- A consumer moves its cursor only from where it last stored it. Only the
-- holder of the stream's advisory lock applies events, so this always holds;
-- if it ever did not (another instance moved the cursor meanwhile), the
-- transaction fails instead of applying events a second time.
CREATE FUNCTION consumer_cursor_move(p_stream text, p_from bigint, p_to bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE consumer_cursor SET position = p_to, updated_at = now()
     WHERE stream = p_stream AND position = p_from;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the cursor of stream % is no longer at %', p_stream, p_from
            USING ERRCODE = 'SH001';
    END IF;
END $$;
