-- Audit schema version 4 -> 3, keeping every recorded row and value.
--
-- Version 3 has no SNAPSHOT rows (its rules refuse them) and cannot map records across
-- column renames: while any SNAPSHOT row or recorded column change exists, the downgrade
-- refuses before changing anything, as both are history that would be lost. Otherwise the
-- rules of version 3 come back, and what only version 4 maintains goes: the completeness
-- marks (version 3 would not clear them at a gap), snapshot progress and the column names
-- last seen. The label SNAPSHOT stays in audit.operation (PostgreSQL cannot remove an enum
-- label; no row uses it). released/3.sql, run after this file, restores version 3's
-- functions. The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 4.)
do $$
declare
    changes bigint := 0;
begin
    if pg_catalog.to_regclass('audit.column_change') is not null then
        select pg_catalog.count(*) into changes from audit.column_change;
    end if;
    if exists (select from audit.record_version v where v.op::text = 'SNAPSHOT') then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 3: audit.record_version holds SNAPSHOT '
                || 'rows, which version 3 cannot keep',
            hint = 'Keep version 4, or delete them yourself first (delete from '
                || 'audit.record_version where op = ''SNAPSHOT''): the tables lose the baseline '
                || 'their trail was rebuilt from.';
    end if;
    if changes > 0 then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 3: audit.column_change records '
                || changes || ' column renames or drops of tracked tables, which version 3 '
                || 'cannot keep',
            hint = 'Keep version 4, or delete them yourself first (delete from '
                || 'audit.column_change): older records then keep their old column names.';
    end if;
end
$$;

alter table audit.record_version
    drop constraint if exists record_version_record_id_when_new,
    add constraint record_version_record_id_when_new
        check ((op in ('INSERT', 'UPDATE')) = (record_id is not null)),
    drop constraint if exists record_version_record_when_new,
    add constraint record_version_record_when_new
        check ((op in ('INSERT', 'UPDATE')) = (record is not null));

-- Functions version 4 added (released/3.sql restores version 3's own).
drop procedure if exists audit.snapshot(regclass, integer);
drop function if exists audit.snapshot_batch(regclass, integer);
drop function if exists audit.table_as_of(regclass, timestamptz);
drop function if exists audit.table_before(regclass, bigint);
drop function if exists audit.rebuilt_table(regclass, timestamptz, bigint);
drop function if exists audit.current_names(oid, jsonb, bigint);
drop function if exists audit.record_column_changes(regclass);
drop function if exists audit.note_trail_start(regclass);
drop function if exists audit.last_audit_id();
drop function if exists audit.records_every_change(regclass);

drop table if exists audit.column_change;
drop table if exists audit.tracked_column;
drop table if exists audit.snapshot_progress;
drop table if exists audit.trail_complete_since;

delete from audit.schema_version;

insert into audit.schema_version (version) values (3);
