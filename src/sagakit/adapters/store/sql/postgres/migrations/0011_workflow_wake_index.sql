-- 0011: one index serves both the workflow claim and "when is the next one
-- due": unfinished instances by app, definition version and wake-up time
-- (a pending one's due_at, a running one's lease end), then id. Queries
-- repeat the expression exactly, with the index's own WHERE, to use it.
CREATE INDEX sagakit_workflow_wake ON sagakit_workflow (
    app,
    definition_version,
    (CASE status WHEN 'pending' THEN due_at ELSE lease_until END),
    instance_id
) WHERE status IN ('pending', 'running');

-- Instances of an app in one status, newest first (`workflows list --app
-- --status`, and the idle worker's look for instances it cannot run). It
-- replaces (app, status, due_at), which only claims read.
DROP INDEX sagakit_workflow_due;

CREATE INDEX sagakit_workflow_status
    ON sagakit_workflow (app, status, created_at, instance_id);
