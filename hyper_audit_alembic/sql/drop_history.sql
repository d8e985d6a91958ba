-- Deletes the recorded history and the audit schema. Runs after remove_functions.sql.
-- The schema is dropped without cascade: objects of the user's own in it stop the
-- uninstall instead of vanishing with it.
-- The partitioned layout's maintenance and settings (sql/partitioned.sql) go with the
-- table they keep; uninstall_audit(keep_history=True) keeps them. Partitions detached by
-- the retention are tables of their own and stay (they stop the schema's drop).
drop function if exists audit.maintain_partitions();

drop function if exists audit.ensure_partitions(timestamptz, timestamptz);

drop function if exists audit.create_partition(timestamptz);

drop function if exists audit.partition_bucket(timestamptz, interval);

drop function if exists audit.partitions();

drop table if exists audit.settings;

drop table if exists audit.column_change;

-- The seal chain (version 5) seals the history that goes here.
drop table if exists audit.seal_salt;

drop table if exists audit.seal_segment;

drop table if exists audit.seal_log;

drop table if exists audit.tracked_column;

drop table if exists audit.record_version;

drop type if exists audit.operation;

drop schema if exists audit;
