-- The function the WHEN clause of audit_key_change calls for tables whose primary key
-- has these columns (made if missing and create_it, else null if missing): true when the
-- binary image of a key column differs between the old and the new row. One function per
-- set of key column names, shared by the tables that have it; a SQL function the planner
-- inlines, taking the whole rows, so the trigger depends on no column (ALTER COLUMN ...
-- TYPE on a key column stays possible).
--
-- The WHEN clause runs in the writer's session, so the condition names no type, cast,
-- collation or unqualified operator and reads no setting: pg_catalog.record_image_ne
-- compares the columns' bytes (called as a function: the operator *<> between two ROW()
-- constructors would be expanded column by column). A writer's search_path, pg_temp types,
-- a type owner's cast to text, a case-insensitive collation or extra_float_digits decide
-- nothing. Equal bytes give equal key text, so no key change is missed; different bytes
-- with equal key text (an array's lower bound) make audit_key_change fire for a row whose
-- key text did not change, and record_key_change leaves it to the statement trigger.
--
-- An existing function with another body (one made by an earlier version, which compared
-- key::text under the writer's session) is replaced under the same name and signature, so
-- the WHEN clauses that call it keep working; the statement at the end of this file does it
-- for every key-change trigger when an install or upgrade replays this file.
create or replace function audit.key_change_function(pkey_cols text[], create_it boolean)
returns regprocedure
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    function_name text := 'key_changed_'
        || left(encode(sha256(audit.trigger_arguments(pkey_cols)), 'hex'), 40);
    body text := 'select pg_catalog.record_image_ne(row('
        || (select string_agg('(old_row).' || quote_ident(c), ', ') from unnest(pkey_cols) as c)
        || '), row('
        || (select string_agg('(new_row).' || quote_ident(c), ', ') from unnest(pkey_cols) as c)
        || '))';
    -- The function's name, schema-qualified and quoted, and its signature.
    signature text := 'audit.' || quote_ident(function_name) || '(anyelement, anyelement)';
    found regprocedure;
begin
    found := to_regprocedure(signature);
    if found is null and not create_it then
        return null;
    end if;
    if found is not null
            and (select p.prosrc from pg_catalog.pg_proc as p where p.oid = found) = body then
        return found;
    end if;
    execute 'create or replace function ' || 'audit.' || quote_ident(function_name)
        || '(old_row anyelement, new_row anyelement) returns boolean'
        || ' language sql immutable parallel safe as ' || quote_literal(body);
    if found is null then
        -- Whoever writes a tracked table evaluates the WHEN clause, so it calls this (the
        -- same privileges as install_audit gives it).
        execute 'revoke all on function ' || signature || ' from public';
        execute 'grant execute on function ' || signature || ' to public';
        execute 'comment on function ' || signature || ' is '
            || quote_literal(
                'hyper_audit: did the primary key ('
                || array_to_string(pkey_cols, ', ')
                || ') change? Used by audit_key_change triggers.'
            );
    end if;
    return to_regprocedure(signature);
end
$$;

revoke all on function audit.key_change_function(text[], boolean) from public;

-- The key-change conditions of tables tracked by an earlier version get this version's
-- body (the key columns are the arguments of their audit_key_change trigger before the
-- empty one that starts the options).
do $$
declare
    keys text[];
begin
    for keys in
        select distinct a.args[1:coalesce(pg_catalog.array_position(a.args, '') - 1, a.n)]
        from pg_catalog.pg_trigger as t
        cross join lateral (
            select audit.trigger_argument_list(t.tgargs) as args, t.tgnargs as n
        ) as a
        where t.tgfoid = 'audit.record_key_change()'::pg_catalog.regprocedure
    loop
        perform audit.key_change_function(keys, false);
    end loop;
end
$$;
