-- Audit schema version 2 -> 1, keeping every recorded row and value.
--
-- The actor, context and transaction_id columns stay with the values recorded while
-- version 2 was installed (history() reads them; upgrading again keeps them). They stop
-- being filled: their defaults go, and so does the index of transaction ids (rows written
-- from now on have none; upgrading again rebuilds it). The version-1 function definitions
-- are restored by released/1.sql (version 1 as released, idempotent), which the downgrade
-- runs after this file.
-- The text holds no '%' and no ':name'.

do $$
declare
    installed integer;
begin
    if pg_catalog.to_regclass('audit.schema_version') is not null then
        select max(v.version) into installed from audit.schema_version v;
    end if;
    if installed is distinct from 2 then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 1: the installed audit schema is '
                || coalesce('version ' || installed::text, 'missing') || ', not version 2',
            hint = case
                when installed is null then
                    'There is no audit schema to downgrade in this database.'
                when installed = 1 then
                    'The audit schema is at version 1 already: there is nothing to downgrade.'
                else
                    'Downgrade to version 2 first.'
            end;
    end if;
end
$$;

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
