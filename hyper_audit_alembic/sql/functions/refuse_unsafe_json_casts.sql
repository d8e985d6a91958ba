-- Refuses a cast to json or jsonb whose function a non-superuser owns, or whose function
-- is polymorphic (see the check in enable_tracking_keys): CREATE CAST, and ALTER FUNCTION /
-- ALTER ROUTINE that give a cast's function to another owner. Only the casts and functions
-- the command touched are looked at. Casts with a superuser's function written for the
-- type (PostGIS's, say) stay allowed.
--
-- Why refuse rather than convert rows without casts: to_jsonb() is the audit's row
-- conversion (and the reference design's), fast and in C; one that ignored casts would
-- have to walk every value of every row in PL/pgSQL. A type owner may create a cast of its
-- type (CREATE CAST needs only that), and a polymorphic function such as
-- pg_catalog.to_json(anyelement) is owned by a superuser: to_jsonb() calls it without a
-- type to resolve anyelement from ("could not determine input data type"), so that every
-- write of a tracked table using the type would fail, the superuser's too.
create or replace function audit.refuse_unsafe_json_casts()
returns event_trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    unsafe record;
begin
    select c.castsource::regtype::text as source, c.casttarget::regtype::text as target,
        c.castfunc::regprocedure::text as function, o.rolname::text as owner,
        a.typtype = 'p' as polymorphic
    into unsafe
    from pg_event_trigger_ddl_commands() d
    join pg_cast c on (d.classid = 'pg_cast'::regclass and c.oid = d.objid)
        or (d.classid = 'pg_proc'::regclass and c.castfunc = d.objid)
    join pg_proc p on p.oid = c.castfunc
    join pg_roles o on o.oid = p.proowner
    join pg_type a on a.oid = p.proargtypes[0]
    where c.casttarget in ('json'::regtype, 'jsonb'::regtype)
        and (not o.rolsuper or a.typtype = 'p')
    order by c.castsource, c.casttarget
    limit 1;
    if found and unsafe.polymorphic then
        raise exception using
            errcode = 'insufficient_privilege',
            message = 'the cast (' || unsafe.source || ' as ' || unsafe.target
                || ') uses the function ' || unsafe.function || ', which is polymorphic:'
                || ' to_jsonb() in the audit triggers cannot call it, and every write of a'
                || ' tracked table using ' || unsafe.source || ' would fail',
            hint = 'While the audit trail is installed, a cast to json or jsonb needs a function'
                || ' owned by a superuser that takes ' || unsafe.source || ' itself: drop the'
                || ' cast (drop cast (' || unsafe.source || ' as ' || unsafe.target || ')).';
    elsif found then
        raise exception using
            errcode = 'insufficient_privilege',
            message = 'the cast (' || unsafe.source || ' as ' || unsafe.target
                || ') uses the function ' || unsafe.function || ' owned by '
                || quote_ident(unsafe.owner) || ', not a superuser: the audit triggers'
                || ' would run it with their owner''s rights',
            hint = 'While the audit trail is installed, a cast to json or jsonb may only use a'
                || ' function owned by a superuser: drop the cast (drop cast ('
                || unsafe.source || ' as ' || unsafe.target || ')) or have a superuser own '
                || unsafe.function || '.';
    end if;
end
$$;

revoke all on function audit.refuse_unsafe_json_casts() from public;

do $$
begin
    if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
        if not exists (
            select from pg_catalog.pg_event_trigger
            where evtname = 'audit_refuse_unsafe_json_casts'
        ) then
            create event trigger audit_refuse_unsafe_json_casts
                on ddl_command_end when tag in ('CREATE CAST', 'ALTER FUNCTION', 'ALTER ROUTINE')
                execute function audit.refuse_unsafe_json_casts();
        end if;
    elsif not exists (
        select from pg_catalog.pg_event_trigger where evtname = 'audit_refuse_unsafe_json_casts'
    ) then
        raise warning using
            message = 'install_audit: not a superuser, so casts to json that run code of other '
                || 'roles are only refused when a table is tracked',
            hint = 'The audit triggers run as the role that installed the audit trail: '
                || 'give it no more rights than it needs.';
    end if;
end
$$;

-- Casts made before this check existed (a polymorphic function passed it until version 3):
-- a tracked table whose values reach one fails on every write, so each is named.
do $$
declare
    unsafe record;
begin
    for unsafe in
        select c.castsource::pg_catalog.regtype::pg_catalog.text as source,
            c.casttarget::pg_catalog.regtype::pg_catalog.text as target,
            c.castfunc::pg_catalog.regprocedure::pg_catalog.text as function
        from pg_catalog.pg_cast c
        join pg_catalog.pg_proc p on p.oid = c.castfunc
        join pg_catalog.pg_type a on a.oid = p.proargtypes[0]
        where c.casttarget in ('pg_catalog.json'::pg_catalog.regtype,
                'pg_catalog.jsonb'::pg_catalog.regtype)
            and a.typtype operator(pg_catalog.=) 'p'
        order by 1, 2
    loop
        raise warning using
            message = 'install_audit: the cast (' || unsafe.source || ' as ' || unsafe.target
                || ') uses the polymorphic function ' || unsafe.function || ': every write of a'
                || ' tracked table using ' || unsafe.source || ' fails',
            hint = 'Drop the cast (drop cast (' || unsafe.source || ' as ' || unsafe.target
                || ')).';
    end loop;
end
$$;
