-- The function the WHEN clause of audit_key_change calls for tables whose primary key
-- has these columns (made if missing and create_it, else null if missing): true when the
-- text of a key column differs between the old and the new row (the text the record id
-- is made of). One function per set of key column names, shared by the tables that have
-- it; a SQL function the planner inlines, taking the whole rows, so the trigger depends
-- on no column (ALTER COLUMN ... TYPE on a key column stays possible).
create or replace function audit.key_change_function(pkey_cols text[], create_it boolean)
returns regprocedure
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    function_name text := 'key_changed_'
        || left(encode(sha256(audit.trigger_arguments(pkey_cols)), 'hex'), 40);
    found regprocedure;
begin
    found := to_regprocedure('audit.' || function_name || '(anyelement, anyelement)');
    if found is null and create_it then
        execute 'create function audit.' || function_name
            || '(old_row anyelement, new_row anyelement) returns boolean'
            || ' language sql stable parallel safe as '
            || quote_literal(
                'select ' || (
                    select string_agg(
                        '(old_row).' || quote_ident(c) || '::text operator(pg_catalog.<>) '
                            || '(new_row).' || quote_ident(c) || '::text',
                        ' or '
                    )
                    from unnest(pkey_cols) as c
                )
            );
        -- Whoever writes a tracked table evaluates the WHEN clause, so it calls this (the
        -- same privileges as install_audit gives it).
        execute 'revoke all on function audit.' || function_name
            || '(anyelement, anyelement) from public';
        execute 'grant execute on function audit.' || function_name
            || '(anyelement, anyelement) to public';
        execute 'comment on function audit.' || function_name || '(anyelement, anyelement) is '
            || quote_literal(
                'hyper_audit: did the primary key ('
                || array_to_string(pkey_cols, ', ')
                || ') change? Used by audit_key_change triggers.'
            );
        found := to_regprocedure('audit.' || function_name || '(anyelement, anyelement)');
    end if;
    return found;
end
$$;

revoke all on function audit.key_change_function(text[], boolean) from public;
