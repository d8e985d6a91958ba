-- The record id is a UUID v5 from the contrib extension uuid-ossp. The extension may
-- already live in any schema (public, extensions on Supabase), so the call is bound to
-- that schema once, here, and every other function calls audit.uuid_v5.
do $$
declare
    ext_schema name;
begin
    select n.nspname into ext_schema
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'uuid-ossp';

    if ext_schema is null then
        if not exists (
            select from pg_catalog.pg_available_extensions where name = 'uuid-ossp'
        ) then
            raise exception using
                errcode = 'feature_not_supported',
                message = 'install_audit: the PostgreSQL extension "uuid-ossp" is not available on this server',
                hint = 'Install the PostgreSQL contrib package for this server version '
                    '(Debian/Ubuntu: postgresql-contrib), then run the migration again.';
        end if;
        create extension "uuid-ossp";
        select n.nspname into ext_schema
        from pg_catalog.pg_extension e
        join pg_catalog.pg_namespace n on n.oid = e.extnamespace
        where e.extname = 'uuid-ossp';
    end if;

    execute 'create or replace function audit.uuid_v5(namespace uuid, name text) '
        || 'returns uuid language sql immutable strict parallel safe as '
        || pg_catalog.quote_literal(
            'select ' || pg_catalog.quote_ident(ext_schema) || '.uuid_generate_v5(namespace, name)'
        );
end
$$;

revoke all on function audit.uuid_v5(uuid, text) from public;

grant execute on function audit.uuid_v5(uuid, text) to public;
