-- Audit schema version 2 -> 1, keeping every recorded row and value.
--
-- The actor, context and transaction_id columns stay with the values recorded while
-- version 2 was installed (history() reads them; upgrading again keeps them). They stop
-- being filled: their defaults go, and so does the index of transaction ids (rows written
-- from now on have none; upgrading again rebuilds it). The version-1 function definitions
-- are restored by install.sql's statements, which the downgrade runs after this file.
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

delete from audit.schema_version;

insert into audit.schema_version (version) values (1);
