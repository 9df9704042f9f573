-- The dashboard and the admin API filter the audit log by integration;
-- newest first within one integration is an index range scan.
CREATE INDEX audit_events_by_object ON audit_events (object_type, object, id);
