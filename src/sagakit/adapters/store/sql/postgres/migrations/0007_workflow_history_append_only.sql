-- 0007: the workflow history is append-only, like the saga step history: a
-- line once written is neither updated nor deleted. Instances are listed
-- newest first (sagakit workflows list), so created_at gets an index.
CREATE FUNCTION sagakit_workflow_history_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'sagakit_workflow_history is append-only';
END;
$$;

CREATE TRIGGER sagakit_workflow_history_append_only
    BEFORE UPDATE OR DELETE ON sagakit_workflow_history
    FOR EACH ROW EXECUTE FUNCTION sagakit_workflow_history_append_only();

CREATE INDEX sagakit_workflow_created ON sagakit_workflow (created_at);
