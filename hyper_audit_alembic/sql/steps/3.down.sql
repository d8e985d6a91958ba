-- Audit schema version 3 -> 2, keeping every recorded row and value.
--
-- The hand-off table of the key-change trigger goes (it holds nothing between
-- statements); released/2.sql, run after this file, restores version 2's functions, whose
-- key-change triggers hand off through a custom setting. The key-change conditions keep
-- version 3's body (binary images: right for version 2's triggers as well).
-- The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 3.)
-- Version 2 has no on_replica: refuse, before changing anything, while a table uses it
-- (its subscriber-side trail would stop without a word).
do $$
declare
    using_it text;
begin
    select pg_catalog.string_agg(t.tgrelid::regclass::text, ', ' order by t.tgrelid::regclass::text)
    into using_it
    from (
        select distinct tr.tgrelid from pg_catalog.pg_trigger tr
        where audit.is_tracking_function(tr.tgfoid)
            and 'on_replica' operator(pg_catalog.=) any (audit.tracking_options(tr.tgrelid))
    ) t;
    if using_it is not null then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit schema downgrade to version 2: tables tracked with on_replica: '
                || using_it,
            hint = 'Version 2 cannot record changes applied by logical replication: track '
                || 'them without on_replica first (op.alter_tracking(..., on_replica=False)).';
    end if;
end
$$;

drop table if exists audit.key_change_state;

-- Functions version 3 added (released/2.sql restores version 2's own).
drop function if exists audit.enable_tracking(regclass, text[], boolean, boolean);
drop function if exists audit.enable_tracking_keys(regclass, text[]);
drop function if exists audit.tracking_trigger_sql(regclass, text, text[]);
drop function if exists audit.refuse_squatted_trigger_names(regclass, text[]);
drop function if exists audit.is_tracking_function(oid);

delete from audit.schema_version;

insert into audit.schema_version (version) values (2);
