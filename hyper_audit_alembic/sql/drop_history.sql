-- Deletes the recorded history and the audit schema. Runs after remove_functions.sql.
-- The schema is dropped without cascade: objects of the user's own in it stop the
-- uninstall instead of vanishing with it.
drop table if exists audit.record_version;

drop type if exists audit.operation;

drop schema if exists audit;
