-- Audit schema version 2 -> 1, keeping every recorded row and value.
--
-- The actor, context and transaction_id columns stay with the values recorded while
-- version 2 was installed (history() reads them; upgrading again keeps them). They stop
-- being filled: their defaults go, and so does the index of transaction ids (rows written
-- from now on have none; upgrading again rebuilds it). The version-1 function definitions
-- are restored by released/1.sql (version 1 as released, idempotent), which the downgrade
-- runs after this file.
-- The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 2.)
alter table audit.record_version
    alter column actor drop default,
    alter column context drop default,
    alter column transaction_id drop default;

drop index if exists audit.record_version_transaction_id;

-- Per-table options do not exist in version 1: the tracked tables keep being tracked, with
-- version 1's triggers (every column recorded, every UPDATE recorded).
do $$
declare
    tracked regclass;
begin
    if pg_catalog.to_regprocedure('audit.set_tracking_options(regclass, text[])') is not null then
        for tracked in
            select distinct t.tgrelid::regclass from pg_catalog.pg_trigger t
            where t.tgfoid = 'audit.record_row_change()'::regprocedure
                and position('\x0000'::bytea in t.tgargs) > 0
        loop
            perform audit.set_tracking_options(tracked, '{}');
        end loop;
    end if;
end
$$;

drop function if exists audit.enable_tracking(regclass, text[], boolean);

drop function if exists audit.set_tracking_options(regclass, text[]);

drop function if exists audit.tracking_options(regclass);

drop function if exists audit.trigger_argument_list(bytea);

-- Version 1's enable_tracking gets its name back (released/1.sql then restores its body,
-- and those of the trigger functions).
do $$
begin
    if pg_catalog.to_regprocedure('audit.enable_tracking_keys(regclass)') is not null then
        drop function if exists audit.enable_tracking(regclass);
        alter function audit.enable_tracking_keys(regclass) rename to enable_tracking;
    end if;
end
$$;

delete from audit.schema_version;

insert into audit.schema_version (version) values (1);
