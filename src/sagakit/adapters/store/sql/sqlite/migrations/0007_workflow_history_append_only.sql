-- 0007: the workflow history is append-only, like the saga step history: a
-- line once written is neither updated nor deleted. Instances are listed
-- newest first (sagakit workflows list), so created_at gets an index.
CREATE TRIGGER sagakit_workflow_history_no_update
    BEFORE UPDATE ON sagakit_workflow_history
BEGIN
    SELECT RAISE(ABORT, 'sagakit_workflow_history is append-only');
END;

CREATE TRIGGER sagakit_workflow_history_no_delete
    BEFORE DELETE ON sagakit_workflow_history
BEGIN
    SELECT RAISE(ABORT, 'sagakit_workflow_history is append-only');
END;

CREATE INDEX sagakit_workflow_created ON sagakit_workflow (created_at);
