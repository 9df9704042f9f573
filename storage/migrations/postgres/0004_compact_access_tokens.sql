-- The SQLite schema's step 4 rebuilds access_tokens without a rowid; a
-- PostgreSQL table is a heap with no such cost, and dropping the
-- request_id index would slow the previous release's revocations during a
-- rolling upgrade. Nothing changes here; the step keeps the numbering of
-- both dialects the same.
SELECT 1;
