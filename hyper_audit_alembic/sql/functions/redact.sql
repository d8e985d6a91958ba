-- Erases a record's values from the audit trail, lawfully and visibly: the given columns'
-- values (or, with columns null, the whole row image) go from every version of the record
-- of `target` whose primary key is `key` ({"id": 7}), following changes of its key, under
-- the column's older names too (audit.column_change). The record's REDACT audit row says
-- who (the actor, as for any audit row), why (reason) and which columns; a 'redaction'
-- link of the seal chain records which sealed segments changed, from which hash to which,
-- so audit.verify() reports them as redacted while any other change of a sealed row still
-- fails. Each changed segment is rehashed under a new salt and its old salt deleted: no
-- digest left anywhere can be recomputed from a guessed erased value.
--
-- Only roles granted it may call it (grant execute on function
-- audit.redact(regclass, jsonb, text[], text) to <role>): nobody can by default. A
-- segment that fails verification before the redaction stops it before anything changes.
-- The erased values stay in dead row versions until VACUUM (docs/compliance.md).
create or replace function audit.redact(
    target regclass, key jsonb, columns text[] default null, reason text default null
)
returns table (redaction_link bigint, rows_redacted bigint)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set jit = off
as $$
declare
    link bigint;
    shown text;
    key_columns text[];
    record_key uuid;
    record_ids uuid[];
    grown uuid[];
    names text[];
    missing text;
    changed bigint;
    audit_row bigint;
    segment record;
    state record;
    new_salt bytea;
    changes jsonb := '[]';
    app_context jsonb;
begin
    select pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) into shown
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = target;
    if reason is null or pg_catalog.btrim(reason) = '' then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): say why (reason => ''...''): the REDACT '
                || 'audit row records it';
    end if;
    key_columns := audit.primary_key_columns(target);
    if pg_catalog.cardinality(key_columns) = 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): the table has no primary key, so its '
                || 'audit rows have no record ids to find a record by';
    end if;
    if key is null or pg_catalog.jsonb_typeof(key) <> 'object'
        or not key ?& key_columns
        or exists (select from pg_catalog.unnest(key_columns) k where key -> k = 'null'::jsonb)
    then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): the key is the primary-key columns ('
                || pg_catalog.array_to_string(key_columns, ', ') || ') as a JSON object, such as '
                || (select pg_catalog.jsonb_object_agg(k, 'value') from pg_catalog.unnest(key_columns) k)::text
                || ', not ' || coalesce(key::text, 'null');
    end if;
    if columns is not null then
        if pg_catalog.cardinality(columns) = 0 or array_position(columns, null) is not null then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.redact(' || shown || '): columns is a list of column names, '
                    || 'or null for the whole row';
        end if;
        select c into missing from pg_catalog.unnest(columns) c
        where not exists (
            select from pg_catalog.pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped and a.attname = c
        )
        limit 1;
        if missing is not null then
            raise exception using
                errcode = 'undefined_column',
                message = 'audit.redact(' || shown || '): the table has no column '
                    || pg_catalog.quote_ident(missing) || ' (columns are named as in the table)';
        end if;
        -- The names each column had before renames: its older audit rows use them.
        names := array(
            select distinct x from (
                select c as x from pg_catalog.unnest(columns) c
                union all
                select h.old_name::text
                from audit.column_change h
                join pg_catalog.pg_attribute a on a.attrelid = h.table_oid and a.attnum = h.attnum
                where h.table_oid = target and a.attname = any (columns)
            ) y
        );
    end if;

    link := audit.lock_seal_chain();

    record_key := audit.to_record_id(target, key_columns, key);
    record_ids := array[record_key];
    loop
        grown := array(
            select distinct x from (
                select v.record_id as x from audit.record_version v
                where v.table_oid = target and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
                union all
                select v.old_record_id from audit.record_version v
                where v.table_oid = target and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            ) y
            where x is not null
        );
        exit when grown <@ record_ids;
        record_ids := array(select distinct x from pg_catalog.unnest(record_ids || grown) x);
    end loop;

    -- The sealed segments holding these rows must verify before anything changes.
    for segment in
        select distinct s.segment_id, s.link_id, s.row_count,
            coalesce((
                select e.value ->> 'new_hash'
                from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
                where r.kind = 'redaction' and e.value ->> 'segment' = s.segment_id::text
                order by r.link_id desc limit 1
            ), pg_catalog.encode(s.hash, 'hex')) as expected,
            st.salt
        from audit.record_version v
        join audit.seal_segment s on s.first_ts <= v.ts and s.last_ts >= v.ts
        join pg_catalog.unnest(s.ids) g on g @> v.id
        left join audit.seal_salt st on st.segment_id = s.segment_id
        where v.table_oid = target and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.op::text <> 'REDACT'
        order by s.segment_id
    loop
        select * into state from audit.segment_state(segment.segment_id, segment.salt);
        if segment.salt is null or state.row_count <> segment.row_count
            or pg_catalog.encode(state.hash, 'hex') <> segment.expected
        then
            raise exception using
                errcode = 'data_corrupted',
                message = 'audit.redact(' || shown || '): segment ' || segment.segment_id
                    || ' of seal link ' || segment.link_id || ' fails verification before '
                    || 'the redaction; nothing was redacted',
                hint = 'Run audit.verify() (or hyper-audit-alembic verify) to see what changed.';
        end if;
        changes := changes || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'segment', segment.segment_id, 'old_hash', segment.expected));
    end loop;

    update audit.record_version v set
        record = case
            when v.record is null then null
            when names is null then '{}'::jsonb
            else v.record - names
        end,
        old_record = case
            when v.old_record is null then null
            when names is null then '{}'::jsonb
            else v.old_record - names
        end
    where v.table_oid = target and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
        and v.op::text <> 'REDACT';
    get diagnostics changed = row_count;
    if changed = 0 then
        raise exception using
            errcode = 'no_data_found',
            message = 'audit.redact(' || shown || '): no audit row has the record of key '
                || key::text || '; nothing was redacted';
    end if;

    -- Rehash each changed segment under a new salt; the old salt goes.
    for segment in select (e.value ->> 'segment')::bigint as segment_id, e.value ->> 'old_hash' as old_hash
        from pg_catalog.jsonb_array_elements(changes) e
    loop
        new_salt := pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
            || pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
        select * into state from audit.segment_state(segment.segment_id, new_salt);
        update audit.seal_salt st set salt = new_salt where st.segment_id = segment.segment_id;
        changes := (
            select pg_catalog.jsonb_agg(case
                when (e.value ->> 'segment')::bigint = segment.segment_id
                then e.value || pg_catalog.jsonb_build_object('new_hash', pg_catalog.encode(state.hash, 'hex'))
                else e.value end order by e.ordinality)
            from pg_catalog.jsonb_array_elements(changes) with ordinality e
        );
    end loop;

    app_context := nullif(pg_catalog.current_setting('hyper_audit.context', true), '')::jsonb;
    insert into audit.record_version (record_id, op, table_oid, table_schema, table_name, context)
    select record_key, 'REDACT'::audit.operation, target, n.nspname, c.relname,
        case when pg_catalog.jsonb_typeof(app_context) = 'object' then app_context else '{}'::jsonb end
        || pg_catalog.jsonb_build_object('redaction', pg_catalog.jsonb_build_object(
            'columns', pg_catalog.to_jsonb(columns), 'reason', reason, 'link', link, 'rows', changed))
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = target
    returning id into audit_row;

    perform audit.append_seal_link(link, 'redaction', pg_catalog.jsonb_build_object(
        'table', shown,
        'record_ids', (select pg_catalog.jsonb_agg(x::text order by x::text) from pg_catalog.unnest(record_ids) x),
        'columns', pg_catalog.to_jsonb(names),
        'reason', reason,
        'rows', changed,
        'audit_row', audit_row,
        'segments', changes
    ));
    return query select link, changed;
end
$$;

revoke all on function audit.redact(regclass, jsonb, text[], text) from public;
