-- The Citus functions of version 6 (citus_row_change.sql, citus_kind.sql), dropped by a
-- downgrade below version 6 once the released functions of the version it goes to no
-- longer name them (sql.downgrade_statements() runs this after released/<n>.sql).
-- steps/6.down.sql refused before if any table was tracked with them.

drop function if exists audit.citus_row_change();

drop function if exists audit.citus_kind(regclass);
